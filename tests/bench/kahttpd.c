/* kahttpd: the heartbeat benchmark's keep-alive endpoint. A static HTTP server for a FROM
 * scratch image that, as nginx or Go's net/http do, keeps a connection whose request asks for
 * it (HTTP/1.0 "Connection: keep-alive", or HTTP/1.1 without "Connection: close") and answers
 * every request with {"ok":true,"accepts":A,"requests":R} (the connections it accepted and
 * the requests it answered so far, this one included) and a Content-Length. Busybox httpd closes every connection,
 * so a heartbeat to it is a new TCP connection each time; this one lets the benchmark measure
 * what mw's kept connection saves. One thread, epoll, no allocation per request.
 * usage: kahttpd [port]   (default 8089, on every address) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 4096
#define BUFSZ 4096

static char bufs[MAXFD][BUFSZ];
static size_t lens[MAXFD];

static unsigned long accepts, requests;

/* whether the request head asks to keep the connection */
static int wants_keep(const char *head, size_t n)
{
    int http11 = n > 8 && memmem(head, n, "HTTP/1.1", 8) != NULL;
    for (const char *q = memchr(head, '\n', n); q && q < head + n; q = memchr(q, '\n', (size_t)(head + n - q))) {
        q++;
        if (head + n - q > 11 && strncasecmp(q, "connection:", 11) == 0) {
            const char *e = memchr(q, '\n', (size_t)(head + n - q));
            size_t vlen = e ? (size_t)(e - q) : (size_t)(head + n - q);
            for (size_t i = 11; i + 10 <= vlen; i++)
                if (strncasecmp(q + i, "keep-alive", 10) == 0) return 1;
            for (size_t i = 11; i + 5 <= vlen; i++)
                if (strncasecmp(q + i, "close", 5) == 0) return 0;
        }
    }
    return http11;
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    lens[fd] = 0;
}

/* answers every whole request in fd's buffer -> 0 keep the connection, -1 close it */
static int serve(int fd)
{
    for (;;) {
        char *end = memmem(bufs[fd], lens[fd], "\r\n\r\n", 4);
        if (!end) return lens[fd] == BUFSZ ? -1 : 0;
        size_t head = (size_t)(end - bufs[fd]) + 4;
        int keep = wants_keep(bufs[fd], head);
        char body[64], out[256];
        requests++;
        int blen = snprintf(body, sizeof body, "{\"ok\":true,\"accepts\":%lu,\"requests\":%lu}\n", accepts, requests);
        int n = snprintf(out, sizeof out, "HTTP/1.%c 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\nConnection: %s\r\n\r\n%s",
                         memmem(bufs[fd], head, "HTTP/1.1", 8) ? '1' : '0', blen,
                         keep ? "keep-alive" : "close", body);
        if (write(fd, out, (size_t)n) != n) return -1;
        memmove(bufs[fd], bufs[fd] + head, lens[fd] - head);
        lens[fd] -= head;
        if (!keep) return -1;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8089;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 128) != 0) {
        perror("kahttpd: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAXFD) { close(c); continue; }
                    accepts++;
                    lens[c] = 0;
                    struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t r = read(fd, bufs[fd] + lens[fd], BUFSZ - lens[fd]);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                drop(ep, fd);
                continue;
            }
            lens[fd] += (size_t)r;
            if (serve(fd) < 0) drop(ep, fd);
        }
    }
}
