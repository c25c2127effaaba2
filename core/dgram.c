/* mw.dgram: unix datagram sockets — the transport of systemd's notify protocol (sd_notify),
 * and a receiver so tests can play systemd. A name starting with "@" is abstract. */
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "waiter.h"

#define DGRAM_MT "mw.dgram"
#define MAX_DATAGRAM 65536

typedef struct {
    mw_waiter w;             /* receivers wait here */
    uv_poll_t poll;          /* armed only while a task waits */
    int polling;
    int fd;
    int err;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    char buf[MAX_DATAGRAM];
} dgram_t;

/* Fills a unix address for a path or "@abstract" name -> its length, or 0 when it is too long. */
static socklen_t make_addr(struct sockaddr_un *sa, const char *name, size_t n)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof sa->sun_path) return 0;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') {
        sa->sun_path[0] = '\0';              /* abstract: no terminator, the length says where it ends */
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int fail(lua_State *L, const char *what, const char *name, int e)
{
    return mw_fail(L, e, "%s %s", what, name);
}

/* dgram.send(path | "@name", text) -> true | nil, message, code.  Never waits: a full receiver is an error. */
static int dgram_send(lua_State *L)
{
    size_t n, len;
    const char *name = luaL_checklstring(L, 1, &n);
    const char *text = luaL_checklstring(L, 2, &len);
    struct sockaddr_un sa;
    socklen_t salen = make_addr(&sa, name, n);
    if (!salen) return fail(L, "cannot send to", name, ENAMETOOLONG);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(L, "cannot send to", name, errno);
    ssize_t sent = sendto(fd, text, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int e = errno;
    close(fd);
    if (sent < 0) return fail(L, "cannot send to", name, e);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- the receiver ---- */

static void dgram_free(mw_waiter *w)
{
    dgram_t *d = (dgram_t *)w;
    close(d->fd);
    free(d);
}

static int recv_ready(mw_waiter *w, lua_State *L)
{
    dgram_t *d = (dgram_t *)w;
    ssize_t n = recv(d->fd, d->buf, sizeof d->buf, MSG_DONTWAIT);
    if (n >= 0) {
        lua_pushlstring(L, d->buf, (size_t)n);
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    return mw_fail(L, errno, NULL);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    dgram_t *d = h->data;
    if (status < 0) d->err = status;
    mw_waiter_poke(&d->w);
    /* level-triggered: stop watching once nobody waits, or the loop would spin */
    if (!d->w.waiting && d->polling) {
        uv_poll_stop(&d->poll);
        d->polling = 0;
    }
}

static dgram_t *check_dgram(lua_State *L)
{
    return mw_box_check(L, 1, DGRAM_MT);
}

/* dgram.bind(path | "@name") -> socket | nil, message, code.  A path must not exist yet. */
static int dgram_bind(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    struct sockaddr_un sa;
    socklen_t salen = make_addr(&sa, name, n);
    if (!salen) return fail(L, "cannot bind", name, ENAMETOOLONG);
    mw_box *b = mw_box_new(L, DGRAM_MT, 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(L, "cannot bind", name, errno);
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
        int e = errno;
        close(fd);
        return fail(L, "cannot bind", name, e);
    }
    dgram_t *d = calloc(1, sizeof *d);
    if (!d) {
        close(fd);
        if (name[0] != '@') unlink(name);
        return luaL_error(L, "dgram.bind: out of memory");
    }
    d->fd = fd;
    memcpy(d->path, name, n);
    mw_waiter_init(&d->w, rt, recv_ready);
    uv_poll_init(rt->loop, &d->poll, fd);
    mw_waiter_own(&d->w, (uv_handle_t *)&d->poll);
    b->p = d;
    return 1;
}

/* socket:recv([timeout]) -> datagram | nil, "timeout" | nil, "closed" | nil, err */
static int dgram_recv(lua_State *L)
{
    dgram_t *d = check_dgram(L);
    double timeout = luaL_optnumber(L, 2, -1);
    if (d->err) return mw_uv_fail(L, d->err, NULL);
    if (!d->polling && uv_poll_start(&d->poll, UV_READABLE, on_readable) == 0) d->polling = 1;
    return mw_waiter_wait(L, &d->w, timeout, "socket:recv");
}

static int dgram_path(lua_State *L)
{
    lua_pushstring(L, check_dgram(L)->path);
    return 1;
}

/* Closes the socket and removes the path it bound (never an abstract name's). */
static int dgram_close(lua_State *L)
{
    dgram_t *d = mw_box_take(L, 1, DGRAM_MT);
    if (!d) return 0;
    if (d->path[0] != '@') unlink(d->path);
    if (d->polling) uv_poll_stop(&d->poll);
    mw_waiter_close_handle(&d->w, (uv_handle_t *)&d->poll);
    mw_waiter_close(&d->w, dgram_free);
    return 0;
}

static int dgram_describe(lua_State *L)
{
    dgram_t *d = mw_box_peek(L, 1, DGRAM_MT);
    if (!d) return 0;
    lua_pushfstring(L, "mw.dgram %s", d->path);
    return 1;
}

static const luaL_Reg funcs[] = { { "send", dgram_send }, { "bind", dgram_bind }, { NULL, NULL } };

static const luaL_Reg methods[] = {
    { "recv", dgram_recv }, { "path", dgram_path }, { "close", dgram_close }, { NULL, NULL }
};

int luaopen_mw_dgram(lua_State *L)
{
    mw_class(L, DGRAM_MT, methods, dgram_close, dgram_describe);
    luaL_newlib(L, funcs);
    return 1;
}
