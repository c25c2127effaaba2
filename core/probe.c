/* mw.net's heartbeat probes: net.request (one exchange with 127.0.0.1, on the host or in a
 * container's network namespace), net.keep (a connection kept between them) and net.beat (a
 * heartbeat's steady probes, run in C). Split from core/net.c, whose namespaces they use. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <math.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "waiter.h"
#include "netns.h"

#define REQUEST_MT "mw.request"
#define KEEP_MT "mw.keep"
#define BEAT_MT "mw.beat"

/* ---- one request: connect, send, read the answer, in one wait (heartbeat probes) ----
 * A heartbeat probe is one short exchange with 127.0.0.1: connect, send a request made once,
 * read to the server's close. Done with libuv streams and mw.conn it was a connect, a write
 * request, a 64 KB read buffer a callback and four task resumes, each with its Lua values
 * (tests/bench/RESULTS.md: ~440 us of mw's CPU a probe at 100 components). Here it is plain
 * system calls on a non-blocking socket — connect, write at once (on loopback the handshake
 * has usually finished by the time connect returns; EAGAIN means not yet and the write waits
 * for EPOLLOUT), read until end of file — and one resume of the task at the end.
 * Readiness comes from one epoll instance of mw's own (epoll(7), edge-triggered), which the
 * loop watches as a single uv_poll_t: a socket is added once (one epoll_ctl) and leaves it
 * when closed. Events name a slot and its generation, not a pointer, so an event for a
 * request already closed (or a socket still held by a child between fork and exec) finds an
 * empty or newer slot and is dropped. */

typedef struct request {
    mw_waiter w;             /* the task waiting for the answer */
    int fd;
    int slot;
    int connecting;          /* the request is not yet written */
    int done;                /* the answer ended (eof), or went past limit, or failed */
    int whole;               /* as long as its Content-Length says: the close may come late */
    int err;                 /* errno of the failure, 0: none */
    const char *stage;       /* "connect" or "read" for a failure */
    char *req;
    size_t req_len, req_off;
    char *buf;
    size_t len, cap, limit;
    double grace;
    size_t head_end;         /* 0 until the blank line after the headers is here */
    long long want;          /* head and body per Content-Length, -1: not said */
    int may_keep;            /* the caller gave a keep: the connection may outlive the answer */
    int reused;              /* the socket came from a keep: a close before any byte is stale */
    int keepable;            /* a whole answer on a connection the server said it keeps */
    /* a beat's probe (net.beat) hears of its answer through these; net.request's are NULL:
     * the waiting task is poked, and a whole answer shortens its wait to grace */
    void (*finish)(struct request *r);
    void (*whole_hook)(struct request *r);
} request_t;

/* A connection kept between heartbeat probes (net.keep): a server that answers an HTTP/1.0
 * request carrying "Connection: keep-alive" with the same header and a Content-Length keeps
 * its socket open (RFC 9112 Appendix C.2.2; nginx and Go's net/http do), and the next probe
 * is one write and one read where a new connection costs a handshake, a close and, on this VM,
 * 134-215 us of kernel CPU. While kept, the socket stays in the request epoll under a slot
 * that was given back: whatever it reports then (the server's close) is dropped, and the next
 * request re-points it with EPOLL_CTL_MOD, which reports readiness already there. */
typedef struct { int fd; int port; } keep_t;

static int req_epfd = -1;
static uv_poll_t req_poll;
static request_t **req_slots;
static unsigned *req_gens;
static int req_nslots, req_free = -1;    /* the free slots, chained through req_next_free */
static int *req_next_free;

static void req_dispatch(uv_poll_t *h, int status, int events);

static int req_setup(mw_rt *rt)
{
    static int failed;      /* the poll handle was initialised but could not start: it is closed
                             * and not made again (libuv may still hold it until its close runs) */
    if (req_epfd >= 0) return 0;
    if (failed) return failed;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return errno;
    int rc = uv_poll_init(rt->loop, &req_poll, fd);
    if (rc != 0) {
        close(fd);
        return -rc;
    }
    rc = uv_poll_start(&req_poll, UV_READABLE, req_dispatch);
    if (rc != 0) {
        failed = -rc;
        uv_close((uv_handle_t *)&req_poll, NULL);
        close(fd);
        return failed;
    }
    req_poll.data = rt;
    uv_unref((uv_handle_t *)&req_poll);      /* no reason by itself to keep the loop running */
    req_epfd = fd;
    return 0;
}

static int slot_take(request_t *r)
{
    if (req_free < 0) {
        int n = req_nslots ? req_nslots * 2 : 64;
        request_t **s = realloc(req_slots, n * sizeof *s);
        if (!s) return -1;
        req_slots = s;
        unsigned *g = realloc(req_gens, n * sizeof *g);
        if (!g) return -1;
        req_gens = g;
        int *f = realloc(req_next_free, n * sizeof *f);
        if (!f) return -1;
        req_next_free = f;
        for (int i = n - 1; i >= req_nslots; i--) {
            req_slots[i] = NULL;
            req_gens[i] = 0;
            req_next_free[i] = req_free;
            req_free = i;
        }
        req_nslots = n;
    }
    int i = req_free;
    req_free = req_next_free[i];
    req_slots[i] = r;
    req_gens[i]++;
    return i;
}

static void slot_give(int i)
{
    if (i < 0) return;
    req_slots[i] = NULL;
    req_gens[i]++;
    req_next_free[i] = req_free;
    req_free = i;
}

/* The epoll registration of r's socket for events: its slot and that slot's generation, as
 * req_dispatch reads them back. */
static struct epoll_event slot_event(const request_t *r, uint32_t events)
{
    struct epoll_event ev = { .events = events };
    ev.data.u64 = (uint64_t)(unsigned)r->slot | ((uint64_t)req_gens[r->slot] << 32);
    return ev;
}

static void req_finish(request_t *r, const char *stage, int err)
{
    if (r->done) return;
    r->done = 1;
    r->stage = stage;
    r->err = err;
    if (r->finish) r->finish(r);
    else mw_waiter_poke(&r->w);
}

/* Whether the head (len bytes, its blank line included) has a Connection field whose
 * options include keep-alive, any case (RFC 9110 section 7.6.1). */
static int says_keep_alive(const char *head, size_t len)
{
    const char *end = head + len;
    for (const char *q = memchr(head, '\n', len); q && q < end; q = memchr(q, '\n', (size_t)(end - q))) {
        q++;
        if (end - q > 11 && strncasecmp(q, "connection:", 11) == 0) {
            const char *e = memchr(q, '\n', (size_t)(end - q));
            if (!e) return 0;
            for (const char *v = q + 11; v + 10 <= e; v++)
                if (strncasecmp(v, "keep-alive", 10) == 0) return 1;
            return 0;
        }
    }
    return 0;
}

/* After each read: is the head here, and how long does it say the answer is? */
static void req_measure(request_t *r)
{
    if (!r->head_end) {
        char *p = memmem(r->buf, r->len, "\r\n\r\n", 4);
        if (!p) return;
        r->head_end = (size_t)(p - r->buf) + 4;
        r->want = -1;
        /* Content-Length, any case (RFC 9110 section 5.1: field names are case-insensitive) */
        for (char *q = r->buf; q && q < p; q = memchr(q, '\n', (size_t)(p - q))) {
            q++;
            if (p - q > 15 && strncasecmp(q, "content-length:", 15) == 0) {
                /* digits after optional blanks, read within the head only (the buffer has no
                 * NUL, and an empty value must not take the body's digits); absurd lengths
                 * (over 2^40) are left unmeasured: the close or the limit ends the read */
                char *d = q + 15;
                while (d < p && (*d == ' ' || *d == '\t')) d++;
                long long v = 0;
                char *e = d;
                while (e < p && *e >= '0' && *e <= '9' && v < (1LL << 40)) v = v * 10 + (*e++ - '0');
                if (e != d && (e == p || *e == '\r' || *e == ' ' || *e == '\t') && v < (1LL << 40))
                    r->want = (long long)r->head_end + v;
                break;
            }
        }
    }
    if (r->want >= 0 && (long long)r->len >= r->want && !r->whole) {
        r->whole = 1;
        if (r->may_keep && (long long)r->len == r->want && says_keep_alive(r->buf, r->head_end)) {
            r->keepable = 1;         /* the answer is whole and the socket is the keep's */
            req_finish(r, NULL, 0);
            return;
        }
        /* a server that keeps the connection after a whole answer gets grace to close it */
        if (r->whole_hook) r->whole_hook(r);
        else mw_waiter_shorten(&r->w, r->grace);
    }
}

static void req_read(request_t *r)
{
    while (!r->done) {
        if (r->cap - r->len < 2048) {
            size_t n = r->cap ? r->cap * 2 : 4096;
            char *b = realloc(r->buf, n);
            if (!b) {
                req_finish(r, "read", ENOMEM);
                return;
            }
            r->buf = b;
            r->cap = n;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n > 0) {
            r->len += (size_t)n;
            req_measure(r);
            if (r->len > r->limit) req_finish(r, NULL, 0);    /* enough to judge */
            continue;
        }
        if (n == 0) {
            /* a kept connection the server had closed before our request: not an answer */
            req_finish(r, r->reused && r->len == 0 ? "stale" : NULL, 0);
            return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            req_finish(r, r->reused && r->len == 0 && errno == ECONNRESET ? "stale" : "read", errno);
        return;
    }
}

/* Writes what is left of the request -> 1 written, 0 not yet (not connected), -1 failed. */
static int req_write(request_t *r)
{
    while (r->req_off < r->req_len) {
        ssize_t n = write(r->fd, r->req + r->req_off, r->req_len - r->req_off);
        if (n > 0) {
            r->req_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) return 0;
        return -1;
    }
    r->connecting = 0;
    return 1;
}

static void req_event(request_t *r, uint32_t ev)
{
    if (r->done) return;
    if (r->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
        if (soerr != 0) {
            req_finish(r, "connect", soerr);
            return;
        }
        int w = req_write(r);
        if (w < 0) req_finish(r, "read", errno);    /* after the connect: the answer's side */
        if (w <= 0) return;
    }
    req_read(r);
}

static void req_dispatch(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    if (status < 0) return;
    struct epoll_event evs[64];
    int n;
    do {
        n = epoll_wait(req_epfd, evs, 64, 0);
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            int slot = (int)(d & 0xffffffffu);
            unsigned gen = (unsigned)(d >> 32);
            if (slot < req_nslots && req_slots[slot] && req_gens[slot] == gen) req_event(req_slots[slot], evs[i].events);
        }
    } while (n == 64);
}

/* Whether nothing waits on a kept connection: the server's close, or an answer it sent unasked
 * (a 408 before an idle close), would be read as the next request's answer. */
static int kept_quiet(int fd)
{
    char peek;
    ssize_t waiting = recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
    return waiting < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* A new connection for r to 127.0.0.1:port (inside the namespace nsfd; -1: the host's), its
 * request written as far as the socket takes it (on loopback the handshake is usually over by
 * the time connect returns), its socket in the request epoll under a new slot and generation
 * -> 0 | an errno (r->fd, if open, is the caller's to close) | -1: no memory for a slot. */
static int req_connect(request_t *r, int port, int nsfd)
{
    r->reused = 0;
    r->req_off = 0;
    r->connecting = 1;
    r->fd = nsfd >= 0 ? mw_netns_socket(nsfd) : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r->fd < 0) {
        int e = nsfd >= 0 ? -r->fd : errno;
        r->fd = -1;
        return e;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((connect(r->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) || req_write(r) < 0)
        return errno;
    /* a new socket, a new generation: an event for an earlier one (held by a child between
     * fork and exec) finds nothing */
    slot_give(r->slot);
    r->slot = slot_take(r);
    if (r->slot < 0) return -1;
    struct epoll_event ev = slot_event(r, EPOLLIN | EPOLLRDHUP | EPOLLET | (r->connecting ? EPOLLOUT : 0));
    if (epoll_ctl(req_epfd, EPOLL_CTL_ADD, r->fd, &ev) != 0) return errno;
    return 0;
}

static int request_ready(mw_waiter *w, lua_State *L)
{
    request_t *r = (request_t *)w;
    if (!r->done) return 0;
    lua_pushboolean(L, 1);
    return 1;
}

static void request_shut(request_t *r)
{
    slot_give(r->slot);
    r->slot = -1;
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    free(r->buf);
    r->buf = NULL;
    free(r->req);
    r->req = NULL;
    mw_waiter_close(&r->w, mw_waiter_free);
}

static int request_close(lua_State *L)
{
    request_t *r = mw_box_take(L, 1, REQUEST_MT);
    if (r) request_shut(r);
    return 0;
}

/* data | nil, stage ("connect" | "read"), message, size read */
static int request_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int box = (int)ctx;
    request_t *r = mw_box_take(L, box, REQUEST_MT);
    if (!r) return luaL_error(L, "net.request: closed while waiting");
    int n;
    if (r->keepable && r->fd >= 0) {
        keep_t *k = lua_isnoneornil(L, 7) ? NULL : mw_box_peek(L, 7, KEEP_MT);
        if (k) {
            if (k->fd >= 0) close(k->fd);        /* one kept a keep: the newer answer's */
            k->fd = r->fd;
            k->port = (int)lua_tointeger(L, 1);
            r->fd = -1;                          /* the keep's now: request_shut leaves it */
        }
    }
    if (r->stage && strcmp(r->stage, "stale") == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "stale");
        lua_pushliteral(L, "the kept connection was closed");
        lua_pushinteger(L, 0);
        request_shut(r);
        return 4;
    }
    /* a whole answer stands even if the server then reset the connection (an abortive close) */
    if (r->whole || (r->err == 0 && r->done)) {
        lua_pushlstring(L, r->buf ? r->buf : "", r->len);
        n = 1;
    } else {
        lua_pushnil(L);
        lua_pushstring(L, r->stage ? r->stage : (r->connecting ? "connect" : "read"));
        if (r->err) lua_pushstring(L, uv_strerror(uv_translate_sys_error(r->err)));   /* as mw.conn says it */
        else lua_pushliteral(L, "timeout");
        lua_pushinteger(L, (lua_Integer)r->len);
        n = 4;
    }
    request_shut(r);
    return n;
}

/* net.request(port, request, timeout[, netns[, limit[, grace]]]) -> the answer's bytes |
 * nil, stage, message, bytes read: sends request to 127.0.0.1:port (in netns: the
 * namespace's own loopback) and reads until the server closes, the answer is as long as its
 * Content-Length says and grace seconds more passed, or more than limit bytes came. One
 * timeout for all of it. */
static int net_request(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    int port = (int)luaL_checkinteger(L, 1);
    size_t qlen;
    const char *q = luaL_checklstring(L, 2, &qlen);
    double timeout = luaL_checknumber(L, 3);
    netns_t *ns = lua_isnoneornil(L, 4) ? NULL : mw_box_check(L, 4, NETNS_MT);
    lua_Integer limit = luaL_optinteger(L, 5, 65536 + 16384);
    double grace = luaL_optnumber(L, 6, 0.05);
    keep_t *keep = lua_isnoneornil(L, 7) ? NULL : mw_box_peek(L, 7, KEEP_MT);   /* a closed one: none */
    mw_task_check_current(L, "net.request");
    lua_settop(L, 7);
    int e = req_setup(rt);
    if (e != 0) return mw_fail(L, e, "net.request: cannot watch sockets");
    mw_box *b = mw_box_new(L, REQUEST_MT, 0);        /* index 8: closes the request if the task is cancelled */
    request_t *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "net.request: out of memory");
    r->req = malloc(qlen ? qlen : 1);
    if (!r->req) {
        free(r);
        return luaL_error(L, "net.request: out of memory");
    }
    memcpy(r->req, q, qlen);
    r->req_len = qlen;
    r->limit = limit > 0 ? (size_t)limit : 1;
    r->grace = grace;
    r->fd = -1;
    r->slot = -1;
    r->want = -1;
    r->connecting = 1;
    r->may_keep = keep != NULL;
    mw_waiter_init(&r->w, rt, request_ready);
    b->p = r;
    if (keep && keep->fd >= 0 && keep->port != port) {
        close(keep->fd);
        keep->fd = -1;
    }
    if (keep && keep->fd >= 0) {
        /* the kept connection: the request goes at once; a close found there is "stale".
         * Anything already waiting on it (the server's close, or an answer it sent unasked,
         * as a 408 before an idle close) makes it stale too: it would be read as our answer */
        r->fd = keep->fd;
        keep->fd = -1;
        r->reused = 1;
        r->connecting = 0;
        if (!kept_quiet(r->fd) || req_write(r) <= 0) {
            r->stage = "stale";
            r->done = 1;
            return request_done(L, LUA_OK, 8);
        }
        r->slot = slot_take(r);
        if (r->slot < 0) return luaL_error(L, "net.request: out of memory");
        struct epoll_event ev = slot_event(r, EPOLLIN | EPOLLRDHUP | EPOLLET);
        if (epoll_ctl(req_epfd, EPOLL_CTL_MOD, r->fd, &ev) != 0 &&
            (errno != ENOENT || epoll_ctl(req_epfd, EPOLL_CTL_ADD, r->fd, &ev) != 0)) {
            r->err = errno;
            r->stage = "read";
            r->done = 1;
            return request_done(L, LUA_OK, 8);
        }
        req_read(r);         /* an answer (or the close) may be here already */
        /* a whole answer read just now, not kept: the grace starts now (shorten needs a wait) */
        if (r->whole && !r->done && timeout > r->grace) timeout = r->grace;
        return mw_waiter_waitk(L, &r->w, timeout, "net.request", 8, request_done);
    }
    e = req_connect(r, port, ns ? ns->fd : -1);
    if (e < 0) return luaL_error(L, "net.request: out of memory");
    if (e > 0) {
        r->err = e;
        r->stage = "connect";
        r->done = 1;
        return request_done(L, LUA_OK, 8);
    }
    return mw_waiter_waitk(L, &r->w, timeout, "net.request", 8, request_done);
}

/* net.keep() -> a place for one kept connection (empty); keep:close() closes what it holds */
static int net_keep(lua_State *L)
{
    mw_box *b = mw_box_new(L, KEEP_MT, 0);
    keep_t *k = malloc(sizeof *k);
    if (!k) return luaL_error(L, "net.keep: out of memory");
    k->fd = -1;
    k->port = 0;
    b->p = k;
    return 1;
}

static int keep_close(lua_State *L)
{
    keep_t *k = mw_box_take(L, 1, KEEP_MT);
    if (k) {
        if (k->fd >= 0) close(k->fd);
        free(k);
    }
    return 0;
}

/* keep:held() -> whether a connection is kept (tests and status) */
static int keep_held(lua_State *L)
{
    keep_t *k = mw_box_peek(L, 1, KEEP_MT);
    lua_pushboolean(L, k && k->fd >= 0);
    return 1;
}

static int keep_describe(lua_State *L)
{
    keep_t *k = mw_box_peek(L, 1, KEEP_MT);
    if (!k) return 0;
    lua_pushstring(L, k->fd >= 0 ? "mw.keep (a connection kept)" : "mw.keep (empty)");
    return 1;
}

static int request_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, REQUEST_MT)) return 0;
    lua_pushliteral(L, "mw.request (open)");
    return 1;
}

/* ---- a heartbeat's steady probes, in C (net.beat) ----
 * A healthy instance's heartbeat is the same exchange every interval, answered the same way.
 * In Lua each probe was a task spawned, two resumes, the answer parsed into a table and a good
 * beat's bookkeeping: ~30 % of mw's CPU at 100 components (perf, tests/bench/RESULTS.md). A
 * beat makes the probes of one heartbeat itself — the tick on mw.heartbeat's grid, the request
 * on the connection it keeps, the answer's status line — and the heartbeat's task hears, as
 * news, only what it must judge: a probe still out at a tick, an answer that is not plainly
 * good (its bytes or its failure, as net.request gives them), and the good ones, which it
 * takes in batches while the instance is healthy (a quiet wait) and one by one otherwise.
 * The beat holds one request_t for its whole life: one slot in the request epoll, one
 * buffer, and the connection kept in it between probes (its events while no probe is out are
 * dropped: the next probe's MSG_PEEK finds a close). */

#define BEAT_QUEUE 64        /* news held for the task */
#define BEAT_FULL 48         /* a quiet wait ends when this many goods wait */
#define BEAT_EARLY 0.002     /* as mw.heartbeat's EARLY: a tick may fire this much before its time */

enum { NEWS_GOOD, NEWS_LATE, NEWS_ANSWER };

typedef struct {
    int kind;
    double latency, sent, at;     /* a good answer: how long it took, when sent, when judged */
    char *data;                   /* an answer's bytes (malloc'd), NULL when it failed */
    size_t len;
    const char *stage;            /* a failure's "connect" | "read" */
    int err;                      /* its errno, 0: timeout */
} news_t;

typedef struct beat {
    mw_waiter w;                  /* the heartbeat's task waits here for news */
    uv_timer_t tick;              /* the next tick, or the probe's deadline if sooner */
    request_t r;                  /* the probe; r.fd is the connection, kept between probes */
    int armed, out, quiet;
    int epollout;                 /* the socket was registered with EPOLLOUT (it was connecting) */
    int nsfd;                     /* a dup of the namespace's fd, -1: the host's loopback */
    int port;
    double interval, phase, timeout, next_tick, sent, deadline;
    news_t q[BEAT_QUEUE];
    int qhead, qlen, urgent;      /* urgent: news other than good ones */
} beat_t;

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* The first tick of the grid (interval i, phase ph x i) after now: mw.heartbeat's grid_after. */
static double grid_after(double now, double i, double ph)
{
    double off = ph * i;
    return (floor((now + BEAT_EARLY - off) / i) + 1) * i + off;
}

static beat_t *beat_of(request_t *r)
{
    return (beat_t *)((char *)r - offsetof(beat_t, r));
}

static void news_free(news_t *n)
{
    free(n->data);
    n->data = NULL;
}

static void beat_push(beat_t *b, news_t n)
{
    if (b->qlen == BEAT_QUEUE) {         /* a task that does not take its news: the oldest goes */
        news_t *old = &b->q[b->qhead];
        if (old->kind != NEWS_GOOD) b->urgent--;
        news_free(old);
        b->qhead = (b->qhead + 1) % BEAT_QUEUE;
        b->qlen--;
    }
    b->q[(b->qhead + b->qlen) % BEAT_QUEUE] = n;
    b->qlen++;
    if (n.kind != NEWS_GOOD) b->urgent++;
    mw_waiter_poke(&b->w);
}

static int beat_ready(mw_waiter *w, lua_State *L)
{
    beat_t *b = (beat_t *)w;
    if (b->qlen == 0) return 0;
    if (b->quiet && b->urgent == 0 && b->qlen < BEAT_FULL) return 0;
    lua_pushboolean(L, 1);
    return 1;
}

static void beat_close_fd(beat_t *b)
{
    if (b->r.fd >= 0) close(b->r.fd);
    b->r.fd = -1;
}

/* The status line says 2xx or 3xx, the head is whole and the body is not chunked (whose
 * coding mw.probe checks): a good answer without a look at the rest. */
static int plainly_good(const request_t *r)
{
    const char *s = r->buf;
    if (!r->head_end || r->len < 13 || memcmp(s, "HTTP/", 5) != 0) return 0;
    if (s[5] < '0' || s[5] > '9' || s[6] != '.' || s[7] < '0' || s[7] > '9' || s[8] != ' ') return 0;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 200 || status >= 400) return 0;
    for (const char *q = memchr(s, '\n', r->head_end); q && q < s + r->head_end;
         q = memchr(q, '\n', (size_t)(s + r->head_end - q))) {
        q++;
        if (s + r->head_end - q > 18 && strncasecmp(q, "transfer-encoding:", 18) == 0) return 0;
    }
    return 1;
}

/* The probe is over: judged good, or handed to the task as net.request would have answered.
 * timed_out: its deadline passed (a whole answer still stands). */
static void beat_judge(beat_t *b, int timed_out)
{
    request_t *r = &b->r;
    double now = now_s();
    b->out = 0;
    r->done = 1;
    int answered = r->whole || (!timed_out && r->err == 0);
    news_t n = { .latency = now - b->sent, .sent = b->sent, .at = now };
    if (answered && plainly_good(r)) {
        n.kind = NEWS_GOOD;
        if (!r->keepable) {
            beat_close_fd(b);
        } else if (b->epollout) {
            /* kept: writability would wake the loop at every ACK of a request */
            struct epoll_event ev = slot_event(r, EPOLLIN | EPOLLRDHUP | EPOLLET);
            if (epoll_ctl(req_epfd, EPOLL_CTL_MOD, r->fd, &ev) == 0) b->epollout = 0;
        }
    } else {
        n.kind = NEWS_ANSWER;
        if (answered) {
            n.data = r->buf;             /* the buffer goes with the news; the next probe makes one */
            n.len = r->len;
            r->buf = NULL;
            r->cap = 0;
        } else {
            n.stage = r->stage ? r->stage : (r->connecting ? "connect" : "read");
            n.err = timed_out ? 0 : r->err;
            n.len = r->len;
        }
        beat_close_fd(b);
    }
    beat_push(b, n);
}

static void beat_schedule(beat_t *b);

/* A new connection for the probe out (a request already written on it is written again). */
static void beat_connect(beat_t *b)
{
    request_t *r = &b->r;
    int e = req_connect(r, b->port, b->nsfd);
    if (e != 0) {
        r->err = e < 0 ? ENOMEM : e;
        r->stage = "connect";
        beat_judge(b, 0);
        return;
    }
    b->epollout = r->connecting;
}

/* Sends the probe: on the kept connection when the server has not closed it (nothing waits
 * on it), else on a new one. */
static void beat_send(beat_t *b)
{
    request_t *r = &b->r;
    r->len = 0;
    r->head_end = 0;
    r->want = -1;
    r->whole = r->keepable = r->done = r->err = 0;
    r->stage = NULL;
    r->req_off = 0;
    b->out = 1;
    b->sent = now_s();
    b->deadline = b->sent + b->timeout;
    if (r->fd >= 0) {
        if (kept_quiet(r->fd)) {
            r->reused = 1;
            r->connecting = 0;
            if (req_write(r) > 0) return;
        }
        beat_close_fd(b);
    }
    beat_connect(b);
}

/* request_t's finish: the answer ended (or failed). A kept connection the server had closed
 * is not an answer: the probe goes again on a new one. */
static void beat_finished(request_t *r)
{
    beat_t *b = beat_of(r);
    if (!b->out) return;
    if (r->stage && strcmp(r->stage, "stale") == 0) {
        beat_close_fd(b);
        r->done = 0;
        r->stage = NULL;
        r->err = 0;
        beat_connect(b);
        return;
    }
    beat_judge(b, 0);
}

/* request_t's whole: a whole answer on a connection not kept; the server's close gets grace */
static void beat_whole(request_t *r)
{
    beat_t *b = beat_of(r);
    double until = now_s() + r->grace;
    if (until < b->deadline) {
        b->deadline = until;
        beat_schedule(b);
    }
}

static void beat_tick(uv_timer_t *t)
{
    beat_t *b = (beat_t *)t->data;
    double now = now_s();
    /* an answer may wait unread: libuv runs timers before it polls, and a starved mw wakes late
     * (a socket still connecting has nothing to read, and a read there would fail it) */
    if (b->out && !b->r.connecting && (now >= b->deadline || now >= b->next_tick - BEAT_EARLY)) req_read(&b->r);
    if (b->out && now >= b->deadline) beat_judge(b, 1);
    if (!b->armed) return;
    if (now >= b->next_tick - BEAT_EARLY) {
        if (b->out) {
            news_t n = { .kind = NEWS_LATE, .at = now };
            beat_push(b, n);
        } else {
            beat_send(b);
        }
        b->next_tick = grid_after(now, b->interval, b->phase);
    }
    beat_schedule(b);
}

static void beat_schedule(beat_t *b)
{
    if (!b->armed) return;
    double due = b->next_tick;
    if (b->out && b->deadline < due) due = b->deadline;
    double left = due - now_s();
    uint64_t ms = left > 0 ? (uint64_t)ceil(left * 1000) : 0;
    uv_timer_start(&b->tick, beat_tick, ms, 0);
}

static void beat_disarm(beat_t *b)
{
    b->armed = 0;
    uv_timer_stop(&b->tick);
    b->out = 0;                   /* a probe out is abandoned */
    b->r.done = 1;
    beat_close_fd(b);             /* and the kept connection closed: the Lua probes make their own */
    while (b->qlen) {
        news_free(&b->q[b->qhead]);
        b->qhead = (b->qhead + 1) % BEAT_QUEUE;
        b->qlen--;
    }
    b->urgent = 0;
}

static void beat_release(mw_waiter *w)
{
    beat_t *b = (beat_t *)w;
    free(b->r.buf);
    free(b->r.req);
    free(b);
}

static int beat_close(lua_State *L)
{
    beat_t *b = mw_box_take(L, 1, BEAT_MT);
    if (!b) return 0;
    beat_disarm(b);
    beat_close_fd(b);
    slot_give(b->r.slot);
    b->r.slot = -1;
    if (b->nsfd >= 0) close(b->nsfd);
    b->nsfd = -1;
    mw_waiter_close_handle(&b->w, (uv_handle_t *)&b->tick);
    mw_waiter_close(&b->w, beat_release);
    return 0;
}

/* net.beat() -> a heartbeat's probes, not yet armed */
static int net_beat(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    int e = req_setup(rt);
    if (e != 0) return mw_fail(L, e, "net.beat: cannot watch sockets");
    mw_box *box = mw_box_new(L, BEAT_MT, 0);
    beat_t *b = calloc(1, sizeof *b);
    if (!b) return luaL_error(L, "net.beat: out of memory");
    b->r.fd = -1;
    b->r.slot = slot_take(&b->r);
    if (b->r.slot < 0) {
        free(b);
        return luaL_error(L, "net.beat: out of memory");
    }
    b->r.done = 1;
    b->r.finish = beat_finished;
    b->r.whole_hook = beat_whole;
    b->nsfd = -1;
    mw_waiter_init(&b->w, rt, beat_ready);
    uv_timer_init(rt->loop, &b->tick);
    mw_waiter_own(&b->w, (uv_handle_t *)&b->tick);
    box->p = b;
    return 1;
}

/* beat:arm(port, request, interval, phase, timeout[, netns[, limit[, grace]]]) -> true |
 * nil, message, code (the namespace could not be kept): probes
 * 127.0.0.1:port (in netns: its own loopback) with request at each tick of the grid (interval
 * seconds at phase x interval), each given timeout seconds; as net.request for limit and
 * grace. A connection kept from before is closed: the target may have changed. */
static int beat_arm(lua_State *L)
{
    beat_t *b = mw_box_check(L, 1, BEAT_MT);
    int port = (int)luaL_checkinteger(L, 2);
    size_t qlen;
    const char *q = luaL_checklstring(L, 3, &qlen);
    double interval = luaL_checknumber(L, 4);
    double phase = luaL_checknumber(L, 5);
    double timeout = luaL_checknumber(L, 6);
    netns_t *ns = lua_isnoneornil(L, 7) ? NULL : mw_box_check(L, 7, NETNS_MT);
    lua_Integer limit = luaL_optinteger(L, 8, 65536 + 16384);
    double grace = luaL_optnumber(L, 9, 0.05);
    luaL_argcheck(L, interval > 0, 4, "interval must be positive");
    int nsfd = -1;
    if (ns && (nsfd = fcntl(ns->fd, F_DUPFD_CLOEXEC, 0)) < 0) return mw_fail(L, errno, "beat:arm: namespace");
    char *req = malloc(qlen ? qlen : 1);
    if (!req) {
        if (nsfd >= 0) close(nsfd);
        return luaL_error(L, "beat:arm: out of memory");
    }
    memcpy(req, q, qlen);
    beat_disarm(b);
    beat_close_fd(b);
    free(b->r.req);
    b->r.req = req;
    b->r.req_len = qlen;
    b->r.limit = limit > 0 ? (size_t)limit : 1;
    b->r.grace = grace;
    b->r.may_keep = 1;
    if (b->nsfd >= 0) close(b->nsfd);
    b->nsfd = nsfd;
    b->port = port;
    b->interval = interval;
    b->phase = phase;
    b->timeout = timeout;
    b->armed = 1;
    b->next_tick = now_s();          /* armed at a tick (mw.heartbeat): the first probe goes now */
    beat_schedule(b);
    lua_pushboolean(L, 1);
    return 1;
}

/* beat:disarm(): no more probes; one out is abandoned and untaken news dropped */
static int beat_disarm_l(lua_State *L)
{
    beat_t *b = mw_box_peek(L, 1, BEAT_MT);
    if (b) beat_disarm(b);
    return 0;
}

/* beat:wait(quiet[, timeout]) -> true when there is news to take | nil, "timeout" | "closed".
 * Quiet, good answers alone wake the task only by the BEAT_FULL. */
static int beat_wait(lua_State *L)
{
    beat_t *b = mw_box_check(L, 1, BEAT_MT);
    b->quiet = lua_toboolean(L, 2);
    double timeout = luaL_optnumber(L, 3, -1);
    return mw_waiter_wait(L, &b->w, timeout, "beat:wait");
}

/* beat:next() -> the oldest news, taken: kind, latency, sent, at[, answer...] | nil, where
 * kind is "good" | "late" (latency and sent nil: the probe is still out) | "answer", and an
 * answer is its bytes, or nil, stage, message, bytes read (as net.request gives them) */
static int beat_next(lua_State *L)
{
    beat_t *b = mw_box_check(L, 1, BEAT_MT);
    if (b->qlen == 0) return 0;
    news_t *n = &b->q[b->qhead];     /* taken once its values are pushed (a push may raise) */
    int nret;
    if (n->kind == NEWS_LATE) {
        lua_pushliteral(L, "late");
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushnumber(L, n->at);
        nret = 4;
    } else {
        lua_pushstring(L, n->kind == NEWS_GOOD ? "good" : "answer");
        lua_pushnumber(L, n->latency);
        lua_pushnumber(L, n->sent);
        lua_pushnumber(L, n->at);
        nret = 4;
        if (n->kind == NEWS_ANSWER && n->data) {
            lua_pushlstring(L, n->data, n->len);
            nret = 5;
        } else if (n->kind == NEWS_ANSWER) {
            lua_pushnil(L);
            lua_pushstring(L, n->stage);
            if (n->err) lua_pushstring(L, uv_strerror(uv_translate_sys_error(n->err)));
            else lua_pushliteral(L, "timeout");
            lua_pushinteger(L, (lua_Integer)n->len);
            nret = 8;
        }
    }
    if (n->kind != NEWS_GOOD) b->urgent--;
    news_free(n);
    b->qhead = (b->qhead + 1) % BEAT_QUEUE;
    b->qlen--;
    return nret;
}

/* beat:held() -> whether a connection is kept (tests) */
static int beat_held(lua_State *L)
{
    beat_t *b = mw_box_peek(L, 1, BEAT_MT);
    lua_pushboolean(L, b && !b->out && b->r.fd >= 0);
    return 1;
}

static int beat_describe(lua_State *L)
{
    beat_t *b = mw_box_peek(L, 1, BEAT_MT);
    if (!b) return 0;
    lua_pushfstring(L, "mw.beat (%s, port %d)", b->armed ? "armed" : "not armed", b->port);
    return 1;
}

static const luaL_Reg probe_funcs[] = {
    { "request", net_request }, { "keep", net_keep }, { "beat", net_beat }, { NULL, NULL }
};
static const luaL_Reg request_methods[] = { { NULL, NULL } };
static const luaL_Reg keep_methods[] = { { "close", keep_close }, { "held", keep_held }, { NULL, NULL } };
static const luaL_Reg beat_methods[] = {
    { "arm", beat_arm }, { "disarm", beat_disarm_l }, { "wait", beat_wait }, { "next", beat_next },
    { "held", beat_held }, { "close", beat_close }, { NULL, NULL }
};

void mw_probe_open(lua_State *L)
{
    mw_class(L, REQUEST_MT, request_methods, request_close, request_describe);
    mw_class(L, KEEP_MT, keep_methods, keep_close, keep_describe);
    mw_class(L, BEAT_MT, beat_methods, beat_close, beat_describe);
    luaL_setfuncs(L, probe_funcs, 0);
}
