/* dispatcher: takes metric lines from ingestion on LISTEN_PORT and routes each by its kind to
 * a handler: cpu -> CPUUSAGE_HOST:CPUUSAGE_PORT, load -> LOAD_HOST:LOAD_PORT, kernel ->
 * KERNELUPGRADE_HOST:KERNELUPGRADE_PORT, over kept-open TCP connections. Each handler has a
 * queue of DISPATCH_QUEUE_SIZE metrics that holds what cannot be sent yet; a full queue drops
 * new metrics (counted). A handler that is down is retried every RETRY_DELAY_MS. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS_MAX 16

struct route {
  const char *kind, *name, *host;
  int port;
  int fd;
  struct buf queue; /* metric lines, each ending in "\n" */
  long queue_len;
  long long forwarded, dropped, connects, connect_failures, send_failures;
  int64_t next_connect;
  char error[256];
};

struct client {
  int fd;
  struct line_reader in;
};

struct dispatcher {
  struct intro intro;
  int lfd, port;
  long queue_cap, retry_delay, timeout;
  struct route routes[3];
  struct client clients[CLIENTS_MAX];
  long long received, forwarded, dropped, malformed, unknown_kind, accepted, refused;
  int64_t stall_since; /* when queued work last began waiting with nothing forwarded, or 0 */
};

static void route_init(struct route *r, const char *kind, const char *name, const char *host_env,
                       const char *port_env, int port)
{
  r->kind = kind;
  r->name = name;
  r->host = env_str(host_env, name);
  r->port = (int)env_long(port_env, port, 1, 65535);
  r->fd = -1;
}

static void route_fail(struct route *r, const char *what)
{
  if (strcmp(r->error, what) != 0) say("%s (retrying)", what);
  snprintf(r->error, sizeof r->error, "%s", what);
}

static void route_close(struct dispatcher *d, struct route *r)
{
  close(r->fd);
  r->fd = -1;
  r->next_connect = now_ms() + d->retry_delay;
}

static void route_connect(struct dispatcher *d, struct route *r)
{
  char err[256];
  r->fd = tcp_connect(r->host, r->port, (int)d->timeout, err, sizeof err);
  if (r->fd < 0) {
    r->connect_failures++;
    r->next_connect = now_ms() + d->retry_delay;
    route_fail(r, err);
    return;
  }
  r->connects++;
  r->error[0] = '\0';
  say("connected to %s at %s:%d", r->name, r->host, r->port);
}

static long long queued(struct dispatcher *d)
{
  long long n = 0;
  for (int i = 0; i < 3; i++) n += d->routes[i].queue_len;
  return n;
}

static void flush(struct dispatcher *d, struct route *r)
{
  if (r->fd < 0 || r->queue_len == 0) return;
  /* Short: a handler that stopped reading must not hold up the other two for long. */
  if (send_all(r->fd, r->queue.p, r->queue.len, 500) != 0) {
    char err[256];
    snprintf(err, sizeof err, "send to %s at %s:%d: %s", r->name, r->host, r->port, strerror(errno));
    r->send_failures++;
    route_close(d, r);
    route_fail(r, err);
    return;
  }
  r->forwarded += r->queue_len;
  d->forwarded += r->queue_len;
  r->queue_len = 0;
  buf_reset(&r->queue);
  d->stall_since = queued(d) > 0 ? now_ms() : 0;
}

static void on_line(void *ctx, const char *line, size_t n)
{
  struct dispatcher *d = ctx;
  struct metric m;
  if (metric_parse(line, n, &m) != 0) {
    d->malformed++;
    return;
  }
  d->received++;
  for (int i = 0; i < 3; i++) {
    struct route *r = &d->routes[i];
    if (strcmp(m.kind, r->kind) != 0) continue;
    if (r->queue_len >= d->queue_cap) {
      r->dropped++;
      d->dropped++;
      return;
    }
    if (queued(d) == 0) d->stall_since = now_ms();
    buf_add(&r->queue, line, n);
    buf_add(&r->queue, "\n", 1);
    r->queue_len++;
    return;
  }
  d->unknown_kind++;
}

static void accept_client(struct dispatcher *d)
{
  int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  for (int i = 0; i < CLIENTS_MAX; i++) {
    if (d->clients[i].fd >= 0) continue;
    d->clients[i].fd = fd;
    d->clients[i].in.len = 0;
    d->clients[i].in.overlong = 0;
    d->accepted++;
    return;
  }
  d->refused++;
  close(fd);
}

static void fields(void *ctx, struct buf *b)
{
  struct dispatcher *d = ctx;
  int64_t now = now_ms();
  int clients = 0, connected = 0;
  for (int i = 0; i < CLIENTS_MAX; i++) clients += d->clients[i].fd >= 0;
  for (int i = 0; i < 3; i++) connected += d->routes[i].fd >= 0;
  /* Totals first: a check that picks "forwarded" out of the text finds this one. */
  jint(b, "received", d->received);
  jint(b, "forwarded", d->forwarded);
  jint(b, "dropped", d->dropped);
  jint(b, "malformed", d->malformed);
  jint(b, "unknown_kind", d->unknown_kind);
  jint(b, "buffer_len", queued(d));
  jint(b, "buffer_cap", d->queue_cap * 3);
  jint(b, "stalled_ms", d->stall_since ? now - d->stall_since : 0);
  jint(b, "clients", clients);
  jint(b, "accepted", d->accepted);
  jint(b, "refused", d->refused);
  jint(b, "handlers_connected", connected);
  buf_printf(b, ",\"handlers\":{");
  for (int i = 0; i < 3; i++) {
    struct route *r = &d->routes[i];
    buf_printf(b, "%s\"%s\":{\"kind\":\"%s\",\"address\":", i ? "," : "", r->name, r->kind);
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", r->host, r->port);
    buf_json_str(b, addr);
    jbool(b, "connected", r->fd >= 0);
    jint(b, "forwarded", r->forwarded);
    jint(b, "dropped", r->dropped);
    jint(b, "queue_len", r->queue_len);
    jint(b, "queue_cap", d->queue_cap);
    jint(b, "connects", r->connects);
    jint(b, "connect_failures", r->connect_failures);
    jint(b, "send_failures", r->send_failures);
    jstr(b, "error", r->error);
    buf_printf(b, "}");
  }
  buf_printf(b, "}");
}

int main(int argc, char **argv)
{
  cfg_init("dispatcher");
  signals_init();
  static struct dispatcher d;
  d.port = (int)env_long("LISTEN_PORT", 7000, 1, 65535);
  d.queue_cap = env_long("DISPATCH_QUEUE_SIZE", 1000, 1, 10000000);
  d.retry_delay = env_long("RETRY_DELAY_MS", 1000, 1, 3600000);
  d.timeout = env_long("TIMEOUT_MS", 2000, 1, 60000);
  route_init(&d.routes[0], "cpu", "cpuusage", "CPUUSAGE_HOST", "CPUUSAGE_PORT", 7001);
  route_init(&d.routes[1], "load", "load", "LOAD_HOST", "LOAD_PORT", 7002);
  route_init(&d.routes[2], "kernel", "kernelupgrade", "KERNELUPGRADE_HOST", "KERNELUPGRADE_PORT", 7003);
  for (int i = 0; i < CLIENTS_MAX; i++) d.clients[i].fd = -1;
  intro_init(&d.intro, argc, argv);
  intro_while_waiting(&d.intro, fields, &d);
  d.lfd = tcp_listen(d.port);
  if (d.lfd < 0) die("cannot listen on LISTEN_PORT %d: %s", d.port, strerror(errno));
  say("routing metrics from :%d to %s:%d, %s:%d, %s:%d", d.port, d.routes[0].host, d.routes[0].port,
      d.routes[1].host, d.routes[1].port, d.routes[2].host, d.routes[2].port);

  struct pollfd fds[2 + 3 + CLIENTS_MAX];
  while (!stop_requested()) {
    int64_t now = now_ms();
    int64_t wake = now + 1000;
    for (int i = 0; i < 3; i++) {
      struct route *r = &d.routes[i];
      if (r->fd < 0 && now >= r->next_connect) route_connect(&d, r);
      flush(&d, r);
      if (r->fd < 0 && r->next_connect < wake) wake = r->next_connect;
    }
    nfds_t n = 0;
    fds[n++] = (struct pollfd){ .fd = d.intro.fd, .events = POLLIN };
    fds[n++] = (struct pollfd){ .fd = d.lfd, .events = POLLIN };
    /* Handlers never write; readable means the handler closed the connection. */
    for (int i = 0; i < 3; i++) fds[n++] = (struct pollfd){ .fd = d.routes[i].fd, .events = POLLIN };
    for (int i = 0; i < CLIENTS_MAX; i++) fds[n++] = (struct pollfd){ .fd = d.clients[i].fd, .events = POLLIN };
    wait_events(fds, n, (int)(wake - now_ms()));
    if (fds[0].revents) intro_serve(&d.intro, fields, &d);
    if (fds[1].revents) accept_client(&d);
    for (int i = 0; i < 3; i++) {
      struct route *r = &d.routes[i];
      if (r->fd < 0 || !fds[2 + i].revents) continue;
      char scratch[512];
      ssize_t got = recv(r->fd, scratch, sizeof scratch, 0);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        char err[256];
        snprintf(err, sizeof err, "%s at %s:%d closed the connection", r->name, r->host, r->port);
        route_close(&d, r);
        route_fail(r, err);
      }
    }
    for (int i = 0; i < CLIENTS_MAX; i++) {
      struct client *c = &d.clients[i];
      if (c->fd < 0 || !fds[5 + i].revents) continue;
      if (read_lines(c->fd, &c->in, on_line, &d) != 0) {
        close(c->fd);
        c->fd = -1;
      }
    }
  }
  say("stopping (SIGTERM); %lld received, %lld forwarded, %lld dropped", d.received, d.forwarded, d.dropped);
  return 0;
}
