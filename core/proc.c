/* mw.proc: child processes a task can wait on (tests and benchmarks start mw and helpers with it). */
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <sys/syscall.h>
#include "waiter.h"

#define PROC_MT "mw.process"

typedef struct {
    mw_waiter w;
    uv_process_t p;
    int exited;
    int64_t status;
    int term_signal;
} proc_t;

static int proc_ready(mw_waiter *w, lua_State *L)
{
    proc_t *p = (proc_t *)w;
    if (!p->exited) return 0;
    lua_pushinteger(L, p->status);
    if (p->term_signal) lua_pushinteger(L, p->term_signal);
    else lua_pushnil(L);
    return 2;
}

static void on_child_exit(uv_process_t *h, int64_t status, int sig)
{
    proc_t *p = h->data;
    p->exited = 1;
    p->status = status;
    p->term_signal = sig;
    mw_waiter_poke(&p->w);
}

static void proc_shut(proc_t *p)
{
    mw_waiter_close_handle(&p->w, (uv_handle_t *)&p->p);
    mw_waiter_close(&p->w, mw_waiter_free);
}

/* proc.spawn{ args = {...}, env = { "K=V", ... } | nil, out = path | nil, cwd = dir | nil } */
static int proc_spawn(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "args");
    luaL_checktype(L, -1, LUA_TTABLE);
    int n = (int)luaL_len(L, -1);
    if (n < 1) return luaL_error(L, "proc.spawn: args must not be empty");
    char **args = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        args[i] = (char *)luaL_checkstring(L, -1);   /* the args table keeps it alive */
        lua_pop(L, 1);
    }
    args[n] = NULL;
    char **env = NULL;
    lua_getfield(L, 1, "env");
    if (lua_istable(L, -1)) {
        int m = (int)luaL_len(L, -1);
        env = lua_newuserdatauv(L, sizeof(char *) * (m + 1), 0);
        for (int i = 0; i < m; i++) {
            lua_rawgeti(L, -2, i + 1);
            env[i] = (char *)luaL_checkstring(L, -1);
            lua_pop(L, 1);
        }
        env[m] = NULL;
    }
    lua_getfield(L, 1, "out");
    const char *out = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 1, "cwd");
    const char *cwd = luaL_optstring(L, -1, NULL);

    mw_box *b = mw_box_new(L, PROC_MT, 0);
    int fd = -1;
    if (out) {
        fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) return mw_fail(L, errno, "cannot open %s", out);
    }
    proc_t *p = calloc(1, sizeof *p);
    if (!p) {
        if (fd >= 0) close(fd);
        return luaL_error(L, "proc.spawn: out of memory");
    }
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    for (int i = 1; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = fd >= 0 ? fd : i;
    }
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = args[0];
    o.args = args;
    o.env = env;
    o.cwd = cwd;
    o.exit_cb = on_child_exit;
    o.stdio_count = 3;
    o.stdio = stdio;
    mw_waiter_init(&p->w, rt, proc_ready);
    int rc = uv_spawn(rt->loop, &p->p, &o);
    if (fd >= 0) close(fd);
    mw_waiter_own(&p->w, (uv_handle_t *)&p->p);
    if (rc != 0) {
        proc_shut(p);                         /* libuv wants it closed even so */
        return mw_uv_fail(L, rc, "cannot start %s", args[0]);
    }
    b->p = p;
    return 1;
}

static proc_t *check_proc(lua_State *L)
{
    return mw_box_check(L, 1, PROC_MT);
}

static int proc_wait(lua_State *L)
{
    proc_t *p = check_proc(L);
    return mw_waiter_wait(L, &p->w, luaL_optnumber(L, 2, -1), "process:wait");
}

static int proc_kill(lua_State *L)
{
    static const char *const names[] = { "TERM", "KILL", "INT", "HUP", "STOP", "CONT", NULL };
    static const int sigs[] = { SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGSTOP, SIGCONT };
    proc_t *p = check_proc(L);
    int sig = sigs[luaL_checkoption(L, 2, "TERM", names)];
    if (p->exited) { lua_pushboolean(L, 0); return 1; }
    lua_pushboolean(L, uv_process_kill(&p->p, sig) == 0);
    return 1;
}

static int proc_pid(lua_State *L)
{
    proc_t *p = check_proc(L);
    lua_pushinteger(L, p->p.pid);
    return 1;
}

static int proc_close(lua_State *L)
{
    proc_t *p = mw_box_take(L, 1, PROC_MT);
    if (p) proc_shut(p);
    return 0;
}

static int proc_describe(lua_State *L)
{
    proc_t *p = mw_box_peek(L, 1, PROC_MT);
    if (!p) return 0;
    lua_pushfstring(L, "mw.process %d (%s)", p->p.pid, p->exited ? "exited" : "running");
    return 1;
}

/* ---- watching a process mw did not start: a pidfd (Linux 5.3+) becomes readable when it
 * exits, about 2 ms after a kill here, where the engine's die event takes 70-100 ms
 * (shared/notes/footprint.md) ---- */

#define PIDWATCH_MT "mw.pidwatch"

typedef struct {
    mw_waiter w;
    uv_poll_t poll;
    int fd;
    int exited;
    int polling;             /* the uv_poll_t was initialised */
} pidwatch_t;

static int pidwatch_ready(mw_waiter *w, lua_State *L)
{
    pidwatch_t *p = (pidwatch_t *)w;
    if (!p->exited) return 0;
    lua_pushboolean(L, 1);
    return 1;
}

static void pidwatch_free(mw_waiter *w)
{
    pidwatch_t *p = (pidwatch_t *)w;
    if (p->fd >= 0) close(p->fd);
    free(p);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    (void)status; (void)events;
    pidwatch_t *p = h->data;
    p->exited = 1;
    uv_poll_stop(h);
    mw_waiter_poke(&p->w);
}

/* proc.watch(pid) -> watch | nil, err, code: w:wait([timeout]) -> true once the process is gone */
static int proc_watch(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    int pid = (int)luaL_checkinteger(L, 1);
    if (pid <= 0) return luaL_error(L, "proc.watch: bad pid %d", pid);
    mw_box *b = mw_box_new(L, PIDWATCH_MT, 0);
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    int gone = 0;
    if (fd < 0) {
        if (errno != ESRCH) return mw_fail(L, errno, "cannot watch pid %d", pid);
        gone = 1;       /* already exited: the watch is ready at once */
    }
    pidwatch_t *p = calloc(1, sizeof *p);
    if (!p) {
        if (fd >= 0) close(fd);
        return luaL_error(L, "proc.watch: out of memory");
    }
    p->fd = fd;
    p->exited = gone;
    mw_waiter_init(&p->w, rt, pidwatch_ready);
    if (!gone) {
        uv_poll_init(rt->loop, &p->poll, fd);
        mw_waiter_own(&p->w, (uv_handle_t *)&p->poll);
        p->polling = 1;
        uv_poll_start(&p->poll, UV_READABLE, on_pidfd);
    }
    b->p = p;
    return 1;
}

static int pidwatch_wait(lua_State *L)
{
    pidwatch_t *p = mw_box_check(L, 1, PIDWATCH_MT);
    return mw_waiter_wait(L, &p->w, luaL_optnumber(L, 2, -1), "pidwatch:wait");
}

static int pidwatch_close(lua_State *L)
{
    pidwatch_t *p = mw_box_take(L, 1, PIDWATCH_MT);
    if (!p) return 0;
    if (p->polling) {
        uv_poll_stop(&p->poll);
        mw_waiter_close_handle(&p->w, (uv_handle_t *)&p->poll);
    }
    mw_waiter_close(&p->w, pidwatch_free);
    return 0;
}

static int pidwatch_describe(lua_State *L)
{
    pidwatch_t *p = mw_box_peek(L, 1, PIDWATCH_MT);
    if (!p) return 0;
    lua_pushstring(L, p->exited ? "mw.pidwatch (exited)" : "mw.pidwatch (alive)");
    return 1;
}

static const luaL_Reg pidwatch_methods[] = {
    { "wait", pidwatch_wait }, { "close", pidwatch_close }, { NULL, NULL }
};

static const luaL_Reg funcs[] = { { "spawn", proc_spawn }, { "watch", proc_watch }, { NULL, NULL } };
static const luaL_Reg methods[] = {
    { "wait", proc_wait }, { "kill", proc_kill }, { "pid", proc_pid }, { "close", proc_close }, { NULL, NULL }
};

int luaopen_mw_proc(lua_State *L)
{
    mw_class(L, PROC_MT, methods, proc_close, proc_describe);
    mw_class(L, PIDWATCH_MT, pidwatch_methods, pidwatch_close, pidwatch_describe);
    luaL_newlib(L, funcs);
    return 1;
}
