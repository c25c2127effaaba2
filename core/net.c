/* mw.net: TCP and unix-socket streams on the loop — servers that accept, connections that
 * read (yielding) and write (queued) — for TCP heartbeats, mw's own API, and test servers;
 * and network namespaces (mw.netns) that a connection's socket can be made in. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include "waiter.h"
#include "linebuf.h"
#include "netns.h"

#define SERVER_MT "mw.server"
#define CONN_MT "mw.conn"
/* Bytes read but not yet taken by conn:read before reading pauses: a peer that sends without
 * end (pipelined requests nobody answers yet) fills its own socket buffers, not mw's memory.
 * The next conn:read resumes. */
#define READ_BACKLOG (256 * 1024)

typedef union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
} any_stream;

typedef struct conn {
    mw_waiter w;             /* readers wait here */
    any_stream s;
    mw_linebuf in;
    int reading, eof, err;
    struct conn *next;       /* in a server's accept queue */
    /* a pending connect */
    uv_connect_t connect;
    int connecting;
    /* net.open: the fd whose file status flags go back as they were at close (libuv makes
     * it non-blocking, and the description is shared with whoever else holds it), -1: none */
    int restore_fd, restore_flags;
} conn_t;

typedef struct {
    mw_waiter w;             /* accepters wait here */
    any_stream s;
    conn_t *queue, *tail;
    int err;
    int port;
} server_t;

/* ---- connections ---- */

static void conn_free(mw_waiter *w)
{
    conn_t *c = (conn_t *)w;
    mw_linebuf_free(&c->in);
    free(c);
}

static void conn_shut(conn_t *c)
{
    if (c->reading) uv_read_stop(&c->s.stream);
    if (c->restore_fd >= 0) fcntl(c->restore_fd, F_SETFL, c->restore_flags);
    mw_waiter_close_handle(&c->w, &c->s.handle);
    mw_waiter_close(&c->w, conn_free);
}

static int conn_ready(mw_waiter *w, lua_State *L)
{
    conn_t *c = (conn_t *)w;
    if (c->connecting) return 0;
    if (mw_linebuf_unread(&c->in) > 0) {
        const char *p;
        size_t n = mw_linebuf_take(&c->in, &p);
        lua_pushlstring(L, p, n);
        return 1;
    }
    if (c->err) return mw_uv_fail(L, c->err, NULL);
    if (c->eof) {
        lua_pushnil(L);
        lua_pushliteral(L, "eof");
        return 2;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n > 0) {
        if (mw_linebuf_append(&c->in, buf->base, (size_t)n) != 0) c->err = UV_ENOMEM;
    } else if (n == UV_EOF) {
        c->eof = 1;
    } else if (n < 0) {
        c->err = (int)n;
    }
    free(buf->base);
    if (c->eof || c->err || mw_linebuf_unread(&c->in) >= READ_BACKLOG) {
        uv_read_stop(s);
        c->reading = 0;
    }
    mw_waiter_poke(&c->w);
}

/* A connection whose stream is initialised by the caller and given to mw_waiter_own. */
static conn_t *conn_new(mw_rt *rt)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    mw_waiter_init(&c->w, rt, conn_ready);
    c->restore_fd = -1;
    return c;
}

static void conn_start_reading(conn_t *c)
{
    if (c->reading || c->eof || c->err) return;
    if (uv_read_start(&c->s.stream, on_alloc, on_read) == 0) c->reading = 1;
}

static void push_conn(lua_State *L, conn_t *c)
{
    mw_box_new(L, CONN_MT, 0)->p = c;
}

static conn_t *check_conn(lua_State *L)
{
    return mw_box_check(L, 1, CONN_MT);
}

static int conn_read(lua_State *L)
{
    conn_t *c = check_conn(L);
    conn_start_reading(c);
    return mw_waiter_wait(L, &c->w, luaL_optnumber(L, 2, -1), "conn:read");
}

static void on_written(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0 && c && !c->err) c->err = status;
    free(req);
}

/* Queues the bytes; a failure shows on a later read or write. */
static int conn_write(lua_State *L)
{
    conn_t *c = check_conn(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (c->err) return mw_uv_fail(L, c->err, NULL);
    uv_write_t *req = malloc(sizeof *req + n);
    if (!req) return luaL_error(L, "conn:write: out of memory");
    char *copy = (char *)(req + 1);
    memcpy(copy, p, n);
    req->data = c;
    uv_buf_t buf = uv_buf_init(copy, (unsigned)n);
    int rc = uv_write(req, &c->s.stream, &buf, 1, on_written);
    if (rc != 0) {
        free(req);
        return mw_uv_fail(L, rc, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Bytes written but not yet taken by the kernel: a server bounds a slow client with it. */
static int conn_queued(lua_State *L)
{
    conn_t *c = check_conn(L);
    lua_pushinteger(L, (lua_Integer)uv_stream_get_write_queue_size(&c->s.stream));
    return 1;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;            /* a failure shows on the next read */
    free(req);
}

/* Half-closes: no more writes (after the queued ones); the peer reads end of file while
 * this side still reads what it answers. -> true | nil, message, code */
static int conn_shutdown(lua_State *L)
{
    conn_t *c = check_conn(L);
    if (c->err) return mw_uv_fail(L, c->err, NULL);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) return luaL_error(L, "conn:shutdown: out of memory");
    int rc = uv_shutdown(req, &c->s.stream, on_shutdown);
    if (rc != 0) {
        free(req);
        return mw_uv_fail(L, rc, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_close(lua_State *L)
{
    conn_t *c = mw_box_take(L, 1, CONN_MT);
    if (c) conn_shut(c);
    return 0;
}

static int conn_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, CONN_MT)) return 0;
    lua_pushliteral(L, "mw.conn (open)");
    return 1;
}


/* ---- network namespaces ----
 * A socket belongs to the network namespace its creating thread was in when socket() ran,
 * and stays there (setns(2), network_namespaces(7)). So a connection into a container's
 * namespace is: setns(container) on this thread, socket(), setns(mw's own) — three system
 * calls on the loop's one thread, with nothing else running between them — then an ordinary
 * non-blocking connect on the loop. setns(CLONE_NEWNET) needs CAP_SYS_ADMIN (EPERM without).
 * mw's own namespace is opened once, before the first setns away from it. */

static int self_ns = -1;

static int open_self_ns(void)
{
    if (self_ns >= 0) return 0;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    self_ns = fd;
    return 0;
}

/* Back to mw's own namespace. Failing that, this thread (the loop's) would make every later
 * socket in a container's namespace: there is no safe way on, so mw stops here. */
static void return_home(void)
{
    if (setns(self_ns, CLONE_NEWNET) == 0) return;
    fprintf(stderr, "mw: cannot return to its own network namespace after a heartbeat socket (%s); stopping\n",
            strerror(errno));
    abort();
}

/* A TCP socket (IPv4) made inside the namespace nsfd -> fd, or -errno. The thread is back in
 * its own namespace on every return. */
int mw_netns_socket(int nsfd)
{
    int e = open_self_ns();
    if (e != 0) return -e;
    if (setns(nsfd, CLONE_NEWNET) != 0) return -errno;   /* refused: still at home */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int serr = errno;
    return_home();
    return fd >= 0 ? fd : -serr;
}


/* net.netns(path) -> a namespace (the open file /proc/<pid>/ns/net) | nil, message, code */
static int net_netns(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    mw_box *b = mw_box_new(L, NETNS_MT, 0);
    int e = open_self_ns();      /* before any namespace could be entered */
    if (e != 0) return mw_fail(L, e, "cannot open mw's own network namespace");
    netns_t *ns = malloc(sizeof *ns);
    if (!ns) return luaL_error(L, "net.netns: out of memory");
    ns->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ns->fd < 0) {
        e = errno;
        free(ns);
        return mw_fail(L, e, "cannot open %s", path);
    }
    b->p = ns;
    return 1;
}

/* net.can_setns() -> true | nil, message, code: whether this process may enter a network
 * namespace (it enters its own, which needs the same capability as any other). */
static int net_can_setns(lua_State *L)
{
    int e = open_self_ns();
    if (e != 0) return mw_fail(L, e, "cannot open mw's own network namespace");
    if (setns(self_ns, CLONE_NEWNET) != 0) return mw_fail(L, errno, "cannot enter a network namespace");
    lua_pushboolean(L, 1);
    return 1;
}

static int netns_close(lua_State *L)
{
    netns_t *ns = mw_box_take(L, 1, NETNS_MT);
    if (ns) {
        close(ns->fd);
        free(ns);
    }
    return 0;
}

static int netns_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, NETNS_MT)) return 0;
    lua_pushliteral(L, "mw.netns (open)");
    return 1;
}

/* ---- address announcements ----
 * When a container restarts, its interfaces are made again, and a peer that dialled it in
 * between (the engine's port proxy on the host dials as soon as the port is mapped, before the
 * container's side is up) is left with a neighbour entry still resolving: Linux retries ARP
 * once a second (net.ipv4.neigh.*.retrans_time_ms, 1000) and holds the peer's packets until
 * then. Measured here (docker.io 20.10, busybox httpd behind a published port): the endpoint
 * answered 0.6 s after the engine's start event with --restart=always, and 30 ms after it once
 * the host's entry was filled in by hand. An ARP announcement (RFC 5227 §2.3: a request whose
 * sender and target addresses are both the interface's own) sent from the container's side
 * fills in every such entry at once: Linux's arp_process updates an existing entry from a
 * gratuitous ARP and flushes the packets it held; it creates none (arp_accept is 0 by
 * default). It is one broadcast frame per interface on the container's own link, addressed to
 * no host. */

struct arp_announce {
    struct arphdr h;
    unsigned char sha[ETH_ALEN], spa[4], tha[ETH_ALEN], tpa[4];
} __attribute__((packed));

/* One announcement of addr on the interface name, from a socket of the current namespace. */
static int announce_one(const char *name, const struct sockaddr_in *addr)
{
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    int rc = 0;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) rc = -errno;
    else if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) rc = 1;        /* not Ethernet: nothing to say */
    struct arp_announce a;
    struct sockaddr_ll to;
    memset(&a, 0, sizeof a);
    memset(&to, 0, sizeof to);
    if (rc == 0) {
        a.h.ar_hrd = htons(ARPHRD_ETHER);
        a.h.ar_pro = htons(ETH_P_IP);
        a.h.ar_hln = ETH_ALEN;
        a.h.ar_pln = 4;
        a.h.ar_op = htons(ARPOP_REQUEST);
        memcpy(a.sha, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
        memcpy(a.spa, &addr->sin_addr, 4);
        memcpy(a.tpa, &addr->sin_addr, 4);
        if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) rc = -errno;
    }
    if (rc == 0) {
        to.sll_family = AF_PACKET;
        to.sll_protocol = htons(ETH_P_ARP);
        to.sll_ifindex = ifr.ifr_ifindex;
        to.sll_halen = ETH_ALEN;
        memset(to.sll_addr, 0xff, ETH_ALEN);
        if (sendto(fd, &a, sizeof a, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)sizeof a) rc = -errno;
    }
    close(fd);
    return rc;
}

/* net.announce(netns) -> the number of addresses announced | nil, message, code: an ARP
 * announcement for each IPv4 address of each interface that is up (loopback aside) in the
 * namespace. The thread is back in mw's own namespace on every return. */
static int net_announce(lua_State *L)
{
    netns_t *ns = mw_box_check(L, 1, NETNS_MT);
    int e = open_self_ns();
    if (e != 0) return mw_fail(L, e, "cannot open mw's own network namespace");
    if (setns(ns->fd, CLONE_NEWNET) != 0) return mw_fail(L, errno, "cannot enter the container's network namespace");
    struct ifaddrs *list = NULL;
    int err = getifaddrs(&list) == 0 ? 0 : errno;
    int sent = 0;
    for (struct ifaddrs *i = list; i && err == 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_NOARP)) continue;
        int rc = announce_one(i->ifa_name, (const struct sockaddr_in *)i->ifa_addr);
        if (rc < 0) err = -rc;
        else if (rc == 0) sent++;
    }
    if (list) freeifaddrs(list);
    return_home();
    if (err != 0) return mw_fail(L, err, "cannot announce the container's addresses");
    lua_pushinteger(L, sent);
    return 1;
}

/* ---- connect ---- */

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    c->connecting = 0;
    if (status < 0) c->err = status;
    mw_waiter_poke(&c->w);
}

/* The waiter delivers "connected" as an empty read; connect() turns that into the conn. */
static int connect_ready(mw_waiter *w, lua_State *L)
{
    conn_t *c = (conn_t *)w;
    if (c->connecting) return 0;
    if (c->err) return mw_uv_fail(L, c->err, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int connect_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    mw_box *b = (mw_box *)ctx;
    conn_t *c = b->p;
    c->w.ready = conn_ready;
    if (lua_type(L, -1) == LUA_TBOOLEAN) {   /* connected */
        lua_settop(L, 0);
        lua_rawgetp(L, LUA_REGISTRYINDEX, b);   /* the pending userdata */
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, b);
        return 1;
    }
    /* nil, message, code from connect_ready, or nil, "timeout" | "closed" from the waiter */
    int n = 3;
    const char *last = lua_tostring(L, -1);
    if (!last) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        n = 2;
    } else if (strcmp(last, "timeout") == 0 || strcmp(last, "closed") == 0) {
        n = 2;
    }
    b->p = NULL;                               /* close now rather than at the next GC */
    conn_shut(c);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, b);
    return n;
}

/* net.connect(host, port[, timeout[, netns]]) or net.connect("unix:/path"[, nil, timeout])
 * -> conn | nil, message, code. With a namespace (net.netns), the socket is made in it, and
 * host is an address there (mw gives only 127.0.0.1: the container's own loopback). */
static int net_connect(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    const char *host = luaL_checkstring(L, 1);
    int unix_path = strncmp(host, "unix:", 5) == 0;
    int port = unix_path ? 0 : (int)luaL_checkinteger(L, 2);
    double timeout = luaL_optnumber(L, 3, 5);
    netns_t *ns = NULL;
    if (!unix_path && !lua_isnoneornil(L, 4)) ns = mw_box_check(L, 4, NETNS_MT);
    mw_task_check_current(L, "net.connect");
    mw_box *b = mw_box_new(L, CONN_MT, 0);
    conn_t *c = conn_new(rt);
    if (!c) return luaL_error(L, "net.connect: out of memory");
    b->p = c;
    int rc = 0;
    c->connect.data = c;
    if (unix_path) {
        uv_pipe_init(rt->loop, &c->s.pipe, 0);
        mw_waiter_own(&c->w, &c->s.handle);
        uv_pipe_connect(&c->connect, &c->s.pipe, host + 5, on_connect);
    } else {
        struct sockaddr_storage sa;
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
        if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
        uv_tcp_init(rt->loop, &c->s.tcp);
        mw_waiter_own(&c->w, &c->s.handle);
        if (rc == 0 && ns) {
            int fd = mw_netns_socket(ns->fd);
            if (fd < 0) {
                b->p = NULL;
                conn_shut(c);
                return mw_fail(L, -fd, "cannot make a socket in the container's network namespace");
            }
            rc = uv_tcp_open(&c->s.tcp, fd);
            if (rc != 0) close(fd);      /* not the handle's yet */
        }
        if (rc == 0) {
            uv_tcp_nodelay(&c->s.tcp, 1);
            rc = uv_tcp_connect(&c->connect, &c->s.tcp, (struct sockaddr *)&sa, on_connect);
        }
    }
    if (rc != 0) {
        b->p = NULL;
        conn_shut(c);
        return mw_uv_fail(L, rc, NULL);
    }
    c->connecting = 1;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, b);      /* keep it while the connect is pending */
    c->w.ready = connect_ready;
    return mw_waiter_waitk(L, &c->w, timeout, "net.connect", (lua_KContext)b, connect_done);
}

/* net.open(fd) -> conn | nil, message, code: reads (and writes) an fd mw inherited, such as
 * its stdin, on the loop. A terminal or a pipe or socket only: a regular file or /dev/null
 * cannot be polled ("ENOTSUP"), and never blocks, so the caller reads it plainly. The conn
 * holds a duplicate: closing it leaves fd itself open. */
static int net_open(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    int fd = (int)luaL_checkinteger(L, 1);
    uv_handle_type kind = uv_guess_handle(fd);
    if (kind != UV_TTY && kind != UV_NAMED_PIPE && kind != UV_TCP)
        return mw_uv_fail(L, UV_ENOTSUP, "net.open: fd %d is not a terminal, pipe or stream socket", fd);
    mw_box *b = mw_box_new(L, CONN_MT, 0);
    int flags = fcntl(fd, F_GETFL);
    int dfd = flags < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dfd < 0) return mw_fail(L, errno, "net.open: fd %d", fd);
    conn_t *c = conn_new(rt);
    if (!c) {
        close(dfd);
        return luaL_error(L, "net.open: out of memory");
    }
    int rc;
    if (kind == UV_TTY) {
        /* libuv reopens a terminal's slave side by name, so its non-blocking mode stays
         * off the description the shell shares */
        rc = uv_tty_init(rt->loop, &c->s.tty, dfd, 1);
    } else {
        uv_pipe_init(rt->loop, &c->s.pipe, 0);
        rc = uv_pipe_open(&c->s.pipe, dfd);
    }
    if (kind != UV_TTY || rc == 0) mw_waiter_own(&c->w, &c->s.handle);
    if (rc != 0) {
        close(dfd);
        if (kind == UV_TTY) mw_waiter_close(&c->w, conn_free);   /* no handle was made */
        else conn_shut(c);
        return mw_uv_fail(L, rc, "net.open: fd %d", fd);
    }
    uv_os_fd_t used;
    if (kind == UV_TTY && uv_fileno(&c->s.handle, &used) == 0 && used != dfd)
        close(dfd);          /* libuv reopened the terminal and reads its own fd */
    c->restore_fd = fd;
    c->restore_flags = flags;
    b->p = c;
    return 1;
}

/* ---- servers ---- */

static void server_free(mw_waiter *w)
{
    server_t *s = (server_t *)w;
    while (s->queue) {       /* never handed out: close and free */
        conn_t *c = s->queue;
        s->queue = c->next;
        conn_shut(c);
    }
    free(s);
}

static void server_shut(server_t *s)
{
    mw_waiter_close_handle(&s->w, &s->s.handle);
    mw_waiter_close(&s->w, server_free);
}

static int server_ready(mw_waiter *w, lua_State *L)
{
    server_t *s = (server_t *)w;
    if (s->queue) {
        conn_t *c = s->queue;
        s->queue = c->next;
        if (!s->queue) s->tail = NULL;
        c->next = NULL;
        push_conn(L, c);
        return 1;
    }
    if (s->err) return mw_uv_fail(L, s->err, NULL);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    server_t *s = server->data;
    if (status < 0) {
        s->err = status;
        mw_waiter_poke(&s->w);
        return;
    }
    conn_t *c = conn_new(s->w.rt);
    if (!c) return;
    if (server->type == UV_TCP) uv_tcp_init(s->w.rt->loop, &c->s.tcp);
    else uv_pipe_init(s->w.rt->loop, &c->s.pipe, 0);
    mw_waiter_own(&c->w, &c->s.handle);
    if (uv_accept(server, &c->s.stream) != 0) {
        conn_shut(c);
        return;
    }
    if (server->type == UV_TCP) uv_tcp_nodelay(&c->s.tcp, 1);
    if (s->tail) s->tail->next = c;
    else s->queue = c;
    s->tail = c;
    mw_waiter_poke(&s->w);
}

/* net.listen(host, port[, backlog]) or net.listen("unix:/path") -> server | nil, message, code */
static int net_listen(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    const char *host = luaL_checkstring(L, 1);
    int unix_path = strncmp(host, "unix:", 5) == 0;
    int port = unix_path ? 0 : (int)luaL_checkinteger(L, 2);
    int backlog = (int)luaL_optinteger(L, 3, 1024);
    mw_box *b = mw_box_new(L, SERVER_MT, 0);
    server_t *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "net.listen: out of memory");
    mw_waiter_init(&s->w, rt, server_ready);
    int rc;
    if (unix_path) {
        uv_pipe_init(rt->loop, &s->s.pipe, 0);
        rc = uv_pipe_bind(&s->s.pipe, host + 5);
    } else {
        struct sockaddr_storage sa;
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
        if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
        uv_tcp_init(rt->loop, &s->s.tcp);
        if (rc == 0) rc = uv_tcp_bind(&s->s.tcp, (struct sockaddr *)&sa, 0);
    }
    mw_waiter_own(&s->w, &s->s.handle);
    if (rc == 0) rc = uv_listen(&s->s.stream, backlog, on_connection);
    if (rc != 0) {
        server_shut(s);
        return mw_uv_fail(L, rc, "cannot listen on %s", host);
    }
    if (s->s.handle.type == UV_TCP) {
        struct sockaddr_storage sa;
        int len = sizeof sa;
        uv_tcp_getsockname(&s->s.tcp, (struct sockaddr *)&sa, &len);
        s->port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    b->p = s;
    return 1;
}

static server_t *check_server(lua_State *L)
{
    return mw_box_check(L, 1, SERVER_MT);
}

static int server_accept(lua_State *L)
{
    server_t *s = check_server(L);
    return mw_waiter_wait(L, &s->w, luaL_optnumber(L, 2, -1), "server:accept");
}

static int server_port(lua_State *L)
{
    lua_pushinteger(L, check_server(L)->port);
    return 1;
}

static int server_close(lua_State *L)
{
    server_t *s = mw_box_take(L, 1, SERVER_MT);
    if (s) server_shut(s);
    return 0;
}

static int server_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, SERVER_MT)) return 0;
    lua_pushliteral(L, "mw.server (listening)");
    return 1;
}

static const luaL_Reg net_funcs[] = {
    { "listen", net_listen }, { "connect", net_connect }, { "open", net_open }, { "netns", net_netns },
    { "can_setns", net_can_setns }, { "announce", net_announce }, { NULL, NULL }
};
static const luaL_Reg netns_methods[] = { { "close", netns_close }, { NULL, NULL } };
static const luaL_Reg conn_methods[] = {
    { "read", conn_read }, { "write", conn_write }, { "queued", conn_queued }, { "shutdown", conn_shutdown },
    { "close", conn_close },
    { NULL, NULL }
};
static const luaL_Reg server_methods[] = {
    { "accept", server_accept }, { "port", server_port }, { "close", server_close }, { NULL, NULL }
};

int luaopen_mw_net(lua_State *L)
{
    mw_class(L, CONN_MT, conn_methods, conn_close, conn_describe);
    mw_class(L, SERVER_MT, server_methods, server_close, server_describe);
    mw_class(L, NETNS_MT, netns_methods, netns_close, netns_describe);
    luaL_newlib(L, net_funcs);
    mw_probe_open(L);
    return 1;
}
