/* mw-fault-proxy: a unix-socket proxy in front of the Docker engine that injects faults
 * (errors, resets, delays, truncated responses, an engine that goes away) on chosen paths.
 *
 * usage: mw-fault-proxy -l LISTEN.sock [-u UPSTREAM.sock] [-c CONTROL.sock] [-f RULES]
 *                       [-r RULE]... [-s SEED] [-v]
 *
 * A rule is one line:  ACTION [path=SUBSTR] [method=M] [prob=P] [count=N] [skip=N]
 *                              [status=CODE] [ms=D] [bytes=K]
 *   error     answer status (500) with a JSON message, then close the connection
 *   reset     close the client connection abruptly (RST where the transport has one)
 *   delay     hold the request ms milliseconds, then forward it
 *   truncate  forward, then cut the response after K bytes of its body
 *   hang      swallow the request and never answer
 * path matches a substring of the request target; the first rule that fires decides.
 * prob fires with that probability; count stops a rule after N firings; skip lets the
 * first N matches through.  Rules come from -r and from the -f file, which is read again
 * on SIGHUP.  The control socket takes one command per line and answers "ok ..." or
 * "err ...": add RULE | clear | load | down | up | kill | stats | quit.  down closes the
 * listening socket and every connection (the engine is away), up listens again, kill
 * drops the connections but keeps listening (the engine restarted).
 *
 * One upstream connection per client connection; each request head is parsed (and its
 * body framed by Content-Length or chunked encoding) so keep-alive connections are
 * judged request by request.  Single thread, poll(2), signals through signalfd: no
 * global state. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 64
#define MAX_CONNS 512
#define MAX_CTL 16
#define MAX_HEAD (64 * 1024)
#define BUF_HIGH (256 * 1024)       /* stop reading a side while the other lags this much */

enum action { A_ERROR, A_RESET, A_DELAY, A_TRUNCATE, A_HANG };
static const char *const action_names[] = { "error", "reset", "delay", "truncate", "hang" };

typedef struct {
    enum action action;
    char path[256];
    char method[16];
    double prob;
    long count;            /* firings left; -1 = unlimited */
    long skip;             /* matches to let through first */
    int status;
    long ms;
    long bytes;
    long matched, fired;
    int from_file;
} rule;

typedef struct {
    char *data;
    size_t len, cap;
} buf;

enum body { B_NONE, B_LENGTH, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_CRLF, B_TRAILER };

typedef struct {
    int cfd, ufd;              /* client, upstream; -1 when closed */
    buf in;                    /* from the client, not yet judged or forwarded */
    buf up;                    /* to the upstream */
    buf down;                  /* to the client */
    /* request framing on the client side */
    int in_body;               /* 0: waiting for a head */
    enum body body;
    unsigned long long left;   /* bytes left of a length body or chunk */
    int discard;               /* the current request's body is swallowed, not forwarded */
    int hang;                  /* swallow everything from now on */
    long long hold_until;      /* delay: ms on the monotonic clock, 0 = none */
    size_t held;               /* length of a judged head waiting for its delay */
    /* truncation of the current response */
    long trunc;                /* body bytes still allowed; -1 = no truncation */
    int trunc_head;            /* still inside the response head */
    int head_match;            /* bytes of "\r\n\r\n" matched so far */
    int close_after;           /* close once down is flushed (after an injected error) */
    int client_eof, up_eof;
    unsigned long id;
} conn;

typedef struct {
    int fd;
    buf in, out;
} ctl;

typedef struct {
    const char *listen_path, *upstream_path, *control_path, *rules_file;
    int verbose;
    int lfd, cfd, sfd;          /* listener, control listener, signalfd */
    int down;
    rule rules[MAX_RULES];
    int nrules;
    conn *conns[MAX_CONNS];
    ctl *ctls[MAX_CTL];
    uint64_t rng;
    unsigned long next_id;
    long requests, injected;
    int quit;
} proxy;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(proxy *p, const char *fmt, ...)
{
    if (!p->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fault-proxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double rnd(proxy *p)
{
    /* xorshift64*: reproducible with -s */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return (double)((p->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* ---- buffers ---- */

static int buf_add(buf *b, const char *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *x = realloc(b->data, cap);
        if (!x) return -1;
        b->data = x;
        b->cap = cap;
    }
    memcpy(b->data + b->len, d, n);
    b->len += n;
    return 0;
}

static void buf_drop(buf *b, size_t n)
{
    if (n >= b->len) { b->len = 0; return; }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- rules ---- */

static int parse_rule(const char *line, rule *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->count = -1;
    r->prob = 1.0;
    r->status = 500;
    r->ms = 1000;
    r->bytes = 0;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", line);
    char *save = NULL;
    char *tok = strtok_r(copy, " \t\r\n", &save);
    if (!tok) { snprintf(err, errlen, "empty rule"); return -1; }
    int found = 0;
    for (int i = 0; i < (int)(sizeof action_names / sizeof *action_names); i++) {
        if (strcmp(tok, action_names[i]) == 0) { r->action = (enum action)i; found = 1; }
    }
    if (!found) { snprintf(err, errlen, "unknown action %s", tok); return -1; }
    while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) { snprintf(err, errlen, "want key=value, got %s", tok); return -1; }
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        char *end = NULL;
        if (strcmp(k, "path") == 0) snprintf(r->path, sizeof r->path, "%s", v);
        else if (strcmp(k, "method") == 0) snprintf(r->method, sizeof r->method, "%s", v);
        else if (strcmp(k, "prob") == 0) r->prob = strtod(v, &end);
        else if (strcmp(k, "count") == 0) r->count = strtol(v, &end, 10);
        else if (strcmp(k, "skip") == 0) r->skip = strtol(v, &end, 10);
        else if (strcmp(k, "status") == 0) r->status = (int)strtol(v, &end, 10);
        else if (strcmp(k, "ms") == 0) r->ms = strtol(v, &end, 10);
        else if (strcmp(k, "bytes") == 0) r->bytes = strtol(v, &end, 10);
        else { snprintf(err, errlen, "unknown key %s", k); return -1; }
        if (end && *end) { snprintf(err, errlen, "bad number for %s: %s", k, v); return -1; }
    }
    if (r->status < 100 || r->status > 599) { snprintf(err, errlen, "bad status"); return -1; }
    return 0;
}

static int add_rule(proxy *p, const char *line, int from_file, char *err, size_t errlen)
{
    if (p->nrules >= MAX_RULES) { snprintf(err, errlen, "too many rules"); return -1; }
    rule r;
    if (parse_rule(line, &r, err, errlen) != 0) return -1;
    r.from_file = from_file;
    p->rules[p->nrules++] = r;
    return p->nrules - 1;
}

static int load_file(proxy *p)
{
    if (!p->rules_file) return 0;
    /* drop what the file gave before, keep command-line and control rules */
    int j = 0;
    for (int i = 0; i < p->nrules; i++)
        if (!p->rules[i].from_file) p->rules[j++] = p->rules[i];
    p->nrules = j;
    FILE *f = fopen(p->rules_file, "r");
    if (!f) { say(p, "cannot read %s: %s", p->rules_file, strerror(errno)); return -1; }
    char line[1024];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '#' || *s == '\n' || *s == 0) continue;
        char err[128];
        if (add_rule(p, s, 1, err, sizeof err) < 0) { fprintf(stderr, "fault-proxy: %s: %s\n", p->rules_file, err); bad++; }
        else n++;
    }
    fclose(f);
    say(p, "loaded %d rules from %s", n, p->rules_file);
    return bad ? -1 : 0;
}

/* The rule that fires for this request, or NULL. */
static rule *judge(proxy *p, const char *method, const char *target)
{
    for (int i = 0; i < p->nrules; i++) {
        rule *r = &p->rules[i];
        if (r->path[0] && !strstr(target, r->path)) continue;
        if (r->method[0] && strcasecmp(method, r->method) != 0) continue;
        if (r->count == 0) continue;
        r->matched++;
        if (r->skip > 0) { r->skip--; continue; }
        if (r->prob < 1.0 && rnd(p) >= r->prob) continue;
        if (r->count > 0) r->count--;
        r->fired++;
        return r;
    }
    return NULL;
}

/* ---- sockets ---- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int unix_listen(const char *path)
{
    struct sockaddr_un a;
    if (strlen(path) >= sizeof a.sun_path) { errno = ENAMETOOLONG; return -1; }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a;
    if (strlen(path) >= sizeof a.sun_path) { errno = ENAMETOOLONG; return -1; }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nonblock(fd);
    return fd;
}

/* Closes abruptly: SO_LINGER 0 makes a TCP peer see a reset; a unix peer sees the end. */
static void close_hard(int fd)
{
    struct linger l = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void conn_free(proxy *p, int i, int hard)
{
    conn *c = p->conns[i];
    if (!c) return;
    if (c->cfd >= 0) { if (hard) close_hard(c->cfd); else close(c->cfd); }
    if (c->ufd >= 0) close(c->ufd);
    buf_free(&c->in);
    buf_free(&c->up);
    buf_free(&c->down);
    free(c);
    p->conns[i] = NULL;
}

static void drop_all(proxy *p)
{
    for (int i = 0; i < MAX_CONNS; i++) conn_free(p, i, 1);
}

/* ---- requests ---- */

static void respond_error(conn *c, int status, const char *target)
{
    char safe[256], body[512], head[512];
    size_t i = 0;
    for (; target[i] && i < sizeof safe - 1; i++) {
        unsigned char ch = (unsigned char)target[i];
        safe[i] = (ch < 32 || ch >= 127 || ch == '"' || ch == '\\') ? '_' : (char)ch;
    }
    safe[i] = 0;
    int bn = snprintf(body, sizeof body, "{\"message\":\"fault-proxy: injected %d for %s\"}\n", status, safe);
    int hn = snprintf(head, sizeof head,
        "HTTP/1.1 %d Injected\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n"
        "Content-Length: %d\r\nConnection: close\r\n\r\n", status, bn);
    buf_add(&c->down, head, (size_t)hn);
    buf_add(&c->down, body, (size_t)bn);
    c->close_after = 1;
}

/* Reads a header's value from a request head (case-insensitive name), or NULL. */
static const char *header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *s = strstr(head, "\r\n");
    while (s && s[2] != '\r' && s[2] != 0) {
        s += 2;
        const char *e = strstr(s, "\r\n");
        if (!e) break;
        if ((size_t)(e - s) > nl && strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            const char *v = s + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t n = (size_t)(e - v);
            if (n >= outlen) n = outlen - 1;
            memcpy(out, v, n);
            out[n] = 0;
            while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t')) out[--n] = 0;
            return out;
        }
        s = e;
    }
    return NULL;
}

/* Moves n bytes of c->in to the upstream, or swallows them for a judged request. */
static void pass(conn *c, size_t n)
{
    if (!c->discard && !c->hang) buf_add(&c->up, c->in.data, n);
    buf_drop(&c->in, n);
}

/* Works through what the client sent: judges each new request head, frames bodies.
 * Returns -1 when the connection is to be reset now. */
static int process(proxy *p, conn *c)
{
    while (c->in.len > 0) {
        if (c->hold_until) {
            if (now_ms() < c->hold_until) return 0;
            c->hold_until = 0;
        }
        if (c->hang) { buf_drop(&c->in, c->in.len); return 0; }
        if (c->held) {
            size_t hl = c->held;
            c->held = 0;
            pass(c, hl);
            c->in_body = c->body != B_NONE;
            continue;
        }
        if (!c->in_body) {
            char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
            if (!end) {
                if (c->in.len > MAX_HEAD) return -1;
                return 0;
            }
            size_t hl = (size_t)(end - c->in.data) + 4;
            char *head = malloc(hl + 1);
            if (!head) return -1;
            memcpy(head, c->in.data, hl);
            head[hl] = 0;
            char method[16] = "", target[2048] = "";
            if (sscanf(head, "%15s %2047s", method, target) != 2) { free(head); return -1; }
            char v[64];
            c->body = B_NONE;
            c->left = 0;
            if (header(head, "Transfer-Encoding", v, sizeof v) && strcasestr(v, "chunked")) c->body = B_CHUNK_SIZE;
            else if (header(head, "Content-Length", v, sizeof v)) {
                c->left = strtoull(v, NULL, 10);
                if (c->left > 0) c->body = B_LENGTH;
            }
            free(head);
            p->requests++;
            rule *r = judge(p, method, target);
            c->discard = 0;
            c->trunc = -1;
            if (r) {
                p->injected++;
                say(p, "#%lu %s %s -> %s", c->id, method, target, action_names[r->action]);
                switch (r->action) {
                case A_RESET:
                    return -1;
                case A_ERROR:
                    c->discard = 1;
                    respond_error(c, r->status, target);
                    break;
                case A_HANG:
                    c->hang = 1;
                    buf_drop(&c->in, c->in.len);
                    return 0;
                case A_DELAY:
                    c->hold_until = now_ms() + r->ms;
                    c->held = hl;
                    return 0;
                case A_TRUNCATE:
                    c->trunc = r->bytes;
                    c->trunc_head = 1;
                    c->head_match = 0;
                    break;
                }
            } else {
                say(p, "#%lu %s %s", c->id, method, target);
            }
            pass(c, hl);
            c->in_body = c->body != B_NONE;
            continue;
        }
        /* inside a body */
        switch (c->body) {
        case B_LENGTH:
        case B_CHUNK_DATA: {
            size_t n = c->in.len < c->left ? c->in.len : (size_t)c->left;
            pass(c, n);
            c->left -= n;
            if (c->left == 0) {
                if (c->body == B_LENGTH) c->in_body = 0;
                else c->body = B_CHUNK_CRLF;
            }
            break;
        }
        case B_CHUNK_SIZE:
        case B_CHUNK_CRLF:
        case B_TRAILER: {
            char *nl = memchr(c->in.data, '\n', c->in.len);
            if (!nl) {
                if (c->in.len > 4096) return -1;
                return 0;
            }
            size_t n = (size_t)(nl - c->in.data) + 1;
            if (c->body == B_CHUNK_SIZE) {
                char tmp[32];
                size_t k = n < sizeof tmp ? n : sizeof tmp - 1;
                memcpy(tmp, c->in.data, k);
                tmp[k] = 0;
                c->left = strtoull(tmp, NULL, 16);
                c->body = c->left ? B_CHUNK_DATA : B_TRAILER;
            } else if (c->body == B_CHUNK_CRLF) {
                c->body = B_CHUNK_SIZE;
            } else if (n <= 2) {          /* the empty line that ends the trailers */
                c->in_body = 0;
            }
            pass(c, n);
            break;
        }
        case B_NONE:
            c->in_body = 0;
            break;
        }
    }
    return 0;
}

/* Bytes from the upstream for the client, honouring a truncation. Returns -1 to cut now. */
static int from_upstream(conn *c, const char *d, size_t n)
{
    if (c->trunc < 0) return buf_add(&c->down, d, n);
    size_t i = 0;
    while (c->trunc_head && i < n) {
        static const char end[] = "\r\n\r\n";
        if (d[i] == end[c->head_match]) c->head_match++;
        else c->head_match = d[i] == '\r' ? 1 : 0;
        i++;
        if (c->head_match == 4) c->trunc_head = 0;
    }
    size_t keep = i;
    if (!c->trunc_head) {
        size_t more = n - i;
        if ((long)more > c->trunc) more = (size_t)c->trunc;
        keep += more;
        c->trunc -= (long)more;
    }
    buf_add(&c->down, d, keep);
    if (!c->trunc_head && c->trunc == 0) return -1;
    return 0;
}

/* ---- control ---- */

static void ctl_reply(ctl *k, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    buf_add(&k->out, line, (size_t)n);
}

static void go_down(proxy *p)
{
    if (p->lfd >= 0) { close(p->lfd); p->lfd = -1; unlink(p->listen_path); }
    drop_all(p);
    p->down = 1;
}

static int go_up(proxy *p)
{
    if (p->lfd >= 0) return 0;
    p->lfd = unix_listen(p->listen_path);
    if (p->lfd < 0) return -1;
    p->down = 0;
    return 0;
}

static void ctl_command(proxy *p, ctl *k, char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = 0;
    char err[160];
    if (strncmp(line, "add ", 4) == 0) {
        int i = add_rule(p, line + 4, 0, err, sizeof err);
        if (i < 0) ctl_reply(k, "err %s\n", err); else ctl_reply(k, "ok %d\n", i);
    } else if (strcmp(line, "clear") == 0) {
        p->nrules = 0;
        ctl_reply(k, "ok\n");
    } else if (strcmp(line, "load") == 0) {
        if (load_file(p) == 0) ctl_reply(k, "ok %d\n", p->nrules); else ctl_reply(k, "err cannot load rules\n");
    } else if (strcmp(line, "down") == 0) {
        go_down(p);
        say(p, "down");
        ctl_reply(k, "ok\n");
    } else if (strcmp(line, "up") == 0) {
        if (go_up(p) == 0) { say(p, "up"); ctl_reply(k, "ok\n"); }
        else ctl_reply(k, "err listen: %s\n", strerror(errno));
    } else if (strcmp(line, "kill") == 0) {
        drop_all(p);
        ctl_reply(k, "ok\n");
    } else if (strcmp(line, "stats") == 0) {
        int live = 0;
        for (int i = 0; i < MAX_CONNS; i++) live += p->conns[i] != NULL;
        ctl_reply(k, "requests=%ld injected=%ld connections=%d down=%d\n", p->requests, p->injected, live, p->down);
        for (int i = 0; i < p->nrules; i++)
            ctl_reply(k, "rule %d %s path=%s matched=%ld fired=%ld\n", i, action_names[p->rules[i].action],
                      p->rules[i].path, p->rules[i].matched, p->rules[i].fired);
        ctl_reply(k, "ok\n");
    } else if (strcmp(line, "quit") == 0) {
        p->quit = 1;
        ctl_reply(k, "ok\n");
    } else {
        ctl_reply(k, "err unknown command\n");
    }
}

/* ---- the loop ---- */

static void accept_client(proxy *p)
{
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        int slot = -1;
        for (int i = 0; i < MAX_CONNS; i++) if (!p->conns[i]) { slot = i; break; }
        int ufd = slot >= 0 ? unix_connect(p->upstream_path) : -1;
        if (ufd < 0) {
            say(p, "cannot reach %s: %s", p->upstream_path, slot < 0 ? "too many connections" : strerror(errno));
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); close(ufd); continue; }
        c->cfd = fd;
        c->ufd = ufd;
        c->trunc = -1;
        c->id = ++p->next_id;
        p->conns[slot] = c;
    }
}

static void accept_ctl(proxy *p)
{
    for (;;) {
        int fd = accept4(p->cfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        int slot = -1;
        for (int i = 0; i < MAX_CTL; i++) if (!p->ctls[i]) { slot = i; break; }
        ctl *k = slot >= 0 ? calloc(1, sizeof *k) : NULL;
        if (!k) { close(fd); continue; }
        k->fd = fd;
        p->ctls[slot] = k;
    }
}

static void ctl_free(proxy *p, int i)
{
    ctl *k = p->ctls[i];
    close(k->fd);
    buf_free(&k->in);
    buf_free(&k->out);
    free(k);
    p->ctls[i] = NULL;
}

static void ctl_io(proxy *p, int i, short rev)
{
    ctl *k = p->ctls[i];
    if (rev & (POLLIN | POLLHUP | POLLERR)) {
        char tmp[4096];
        ssize_t n = read(k->fd, tmp, sizeof tmp);
        if (n <= 0 && !(n < 0 && errno == EAGAIN)) { ctl_free(p, i); return; }
        if (n > 0) buf_add(&k->in, tmp, (size_t)n);
        char *nl;
        while (k->in.len && (nl = memchr(k->in.data, '\n', k->in.len))) {
            size_t len = (size_t)(nl - k->in.data);
            char line[1200];
            if (len >= sizeof line) len = sizeof line - 1;
            memcpy(line, k->in.data, len);
            line[len] = 0;
            buf_drop(&k->in, (size_t)(nl - k->in.data) + 1);
            ctl_command(p, k, line);
        }
    }
    if (k->out.len) {
        ssize_t n = write(k->fd, k->out.data, k->out.len);
        if (n > 0) buf_drop(&k->out, (size_t)n);
        else if (n < 0 && errno != EAGAIN) ctl_free(p, i);
    }
}

/* One round of I/O on a connection; returns -1 (reset), 1 (close cleanly) or 0. */
static int conn_io(proxy *p, conn *c, short crev, short urev)
{
    char tmp[65536];
    if ((crev & (POLLIN | POLLHUP | POLLERR)) && !c->client_eof) {
        ssize_t n = read(c->cfd, tmp, sizeof tmp);
        if (n > 0) buf_add(&c->in, tmp, (size_t)n);
        else if (n == 0 || errno != EAGAIN) c->client_eof = 1;
    }
    if (process(p, c) < 0) return -1;
    if ((urev & (POLLIN | POLLHUP | POLLERR)) && !c->up_eof) {
        ssize_t n = read(c->ufd, tmp, sizeof tmp);
        if (n > 0) {
            if (c->close_after || c->hang) { /* after an injected answer the real one is dropped */ }
            else if (from_upstream(c, tmp, (size_t)n) < 0) {
                /* flush what is allowed, then cut */
                while (c->down.len) {
                    ssize_t w = write(c->cfd, c->down.data, c->down.len);
                    if (w <= 0) break;
                    buf_drop(&c->down, (size_t)w);
                }
                return -1;
            }
        } else if (n == 0 || errno != EAGAIN) c->up_eof = 1;
    }
    if (c->up.len && c->ufd >= 0) {
        ssize_t n = write(c->ufd, c->up.data, c->up.len);
        if (n > 0) buf_drop(&c->up, (size_t)n);
        else if (n < 0 && errno != EAGAIN) c->up_eof = 1;
    }
    if (c->down.len) {
        ssize_t n = write(c->cfd, c->down.data, c->down.len);
        if (n > 0) buf_drop(&c->down, (size_t)n);
        else if (n < 0 && errno != EAGAIN) return 1;
    }
    if (c->close_after && c->down.len == 0 && !c->in_body) return 1;
    if (c->client_eof && c->up.len == 0 && c->in.len == 0 && c->down.len == 0) return 1;
    if (c->up_eof && c->down.len == 0 && !c->hang) return 1;
    return 0;
}

static void usage(void)
{
    fputs("usage: mw-fault-proxy -l LISTEN.sock [-u UPSTREAM.sock] [-c CONTROL.sock] [-f RULES] "
          "[-r RULE]... [-s SEED] [-v]\n", stderr);
}

int main(int argc, char **argv)
{
    proxy *p = calloc(1, sizeof *p);
    if (!p) return 1;
    p->upstream_path = "/var/run/docker.sock";
    p->lfd = p->cfd = p->sfd = -1;
    p->rng = 0x9E3779B97F4A7C15ULL;
    const char *cli_rules[MAX_RULES];
    int ncli = 0;
    int opt;
    while ((opt = getopt(argc, argv, "l:u:c:f:r:s:vh")) != -1) {
        switch (opt) {
        case 'l': p->listen_path = optarg; break;
        case 'u': p->upstream_path = optarg; break;
        case 'c': p->control_path = optarg; break;
        case 'f': p->rules_file = optarg; break;
        case 'r': if (ncli < MAX_RULES) cli_rules[ncli++] = optarg; break;
        case 's': p->rng = strtoull(optarg, NULL, 10) * 2654435761ULL + 1; break;
        case 'v': p->verbose = 1; break;
        default: usage(); return 2;
        }
    }
    if (!p->listen_path) { usage(); return 2; }
    for (int i = 0; i < ncli; i++) {
        char err[160];
        if (add_rule(p, cli_rules[i], 0, err, sizeof err) < 0) {
            fprintf(stderr, "fault-proxy: rule \"%s\": %s\n", cli_rules[i], err);
            return 2;
        }
    }
    if (p->rules_file && load_file(p) != 0) return 2;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    p->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (p->sfd < 0) { perror("fault-proxy: signalfd"); return 1; }

    if (go_up(p) != 0) { fprintf(stderr, "fault-proxy: listen %s: %s\n", p->listen_path, strerror(errno)); return 1; }
    if (p->control_path) {
        p->cfd = unix_listen(p->control_path);
        if (p->cfd < 0) { fprintf(stderr, "fault-proxy: listen %s: %s\n", p->control_path, strerror(errno)); return 1; }
    }
    say(p, "listening on %s, forwarding to %s, %d rules", p->listen_path, p->upstream_path, p->nrules);

    struct pollfd *fds = calloc(3 + MAX_CTL + 2 * MAX_CONNS, sizeof *fds);
    if (!fds) return 1;
    while (!p->quit) {
        int n = 0;
        fds[n++] = (struct pollfd){ .fd = p->sfd, .events = POLLIN };
        fds[n++] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
        fds[n++] = (struct pollfd){ .fd = p->cfd, .events = POLLIN };
        for (int i = 0; i < MAX_CTL; i++) {
            ctl *k = p->ctls[i];
            fds[n++] = (struct pollfd){ .fd = k ? k->fd : -1, .events = (short)(POLLIN | (k && k->out.len ? POLLOUT : 0)) };
        }
        long long wake = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = p->conns[i];
            short ce = 0, ue = 0;
            if (c) {
                if (!c->client_eof && c->up.len < BUF_HIGH && c->in.len < BUF_HIGH) ce |= POLLIN;
                if (c->down.len) ce |= POLLOUT;
                if (!c->up_eof && c->down.len < BUF_HIGH) ue |= POLLIN;
                if (c->up.len) ue |= POLLOUT;
                if (c->hold_until && (wake < 0 || c->hold_until < wake)) wake = c->hold_until;
            }
            /* a side that ended and has nothing more to take is left out: its HUP would spin */
            fds[n++] = (struct pollfd){ .fd = c && !(c->client_eof && !c->down.len) ? c->cfd : -1, .events = ce };
            fds[n++] = (struct pollfd){ .fd = c && !(c->up_eof && !c->up.len) ? c->ufd : -1, .events = ue };
        }
        int timeout = 1000;
        if (wake >= 0) {
            long long d = wake - now_ms();
            timeout = d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
        }
        int r = poll(fds, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR) { perror("fault-proxy: poll"); break; }
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(p->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGHUP) load_file(p);
                else p->quit = 1;
            }
        }
        int base = 3 + MAX_CTL;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = p->conns[i];
            if (!c) continue;
            short crev = fds[base + 2 * i].revents, urev = fds[base + 2 * i + 1].revents;
            if (!crev && !urev && !c->hold_until) continue;
            int st = conn_io(p, c, crev, urev);
            if (st < 0) conn_free(p, i, 1);
            else if (st > 0) conn_free(p, i, 0);
        }
        for (int i = 0; i < MAX_CTL; i++) {
            if (p->ctls[i] && (fds[3 + i].revents || p->ctls[i]->out.len)) ctl_io(p, i, fds[3 + i].revents);
        }
        if (p->lfd >= 0 && (fds[1].revents & POLLIN)) accept_client(p);
        if (p->cfd >= 0 && (fds[2].revents & POLLIN)) accept_ctl(p);
    }
    /* let the last control answer go out */
    for (int i = 0; i < MAX_CTL; i++) {
        if (p->ctls[i]) {
            if (p->ctls[i]->out.len) (void)!write(p->ctls[i]->fd, p->ctls[i]->out.data, p->ctls[i]->out.len);
            ctl_free(p, i);
        }
    }
    drop_all(p);
    if (p->lfd >= 0) { close(p->lfd); unlink(p->listen_path); }
    if (p->cfd >= 0) { close(p->cfd); unlink(p->control_path); }
    close(p->sfd);
    free(fds);
    free(p);
    return 0;
}
