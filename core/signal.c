/* mw.signal: SIGINT, SIGTERM, SIGHUP… as events a task waits on (libuv turns them into loop events). */
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include "waiter.h"

#define SIG_MT "mw.signal"
#define MAXSIG 8

static const char *const names[] = { "INT", "TERM", "HUP", "USR1", "USR2", "QUIT", NULL };
static const int numbers[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT };

typedef struct {
    mw_waiter w;
    uv_signal_t sig[MAXSIG];
    int which[MAXSIG];       /* index into names */
    int count[MAXSIG];       /* arrived, not yet taken */
    int n;
    int closing;
} sigset_t_;

typedef struct { sigset_t_ *s; } sig_ud;

static int sig_ready(mw_waiter *w, lua_State *L)
{
    sigset_t_ *s = (sigset_t_ *)w;
    for (int i = 0; i < s->n; i++) {
        if (s->count[i] > 0) {
            s->count[i]--;
            lua_pushstring(L, names[s->which[i]]);
            return 1;
        }
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    sigset_t_ *s = h->data;
    for (int i = 0; i < s->n; i++)
        if (numbers[s->which[i]] == signum) s->count[i]++;
    mw_waiter_poke(&s->w);
}

static void part_closed(sigset_t_ *s)
{
    if (--s->closing == 0) free(s);
}

static void handle_closed(uv_handle_t *h)
{
    sigset_t_ *s = h->data;
    part_closed(s);
}

static void waiter_closed(mw_waiter *w)
{
    part_closed((sigset_t_ *)w);
}

static int signal_watch(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > MAXSIG) return luaL_error(L, "signal.watch: give 1 to %d signal names", MAXSIG);
    sigset_t_ *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "signal.watch: out of memory");
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        s->which[i] = luaL_checkoption(L, -1, NULL, names);
        lua_pop(L, 1);
    }
    for (int i = 0; i < n; i++) {
        uv_signal_init(rt->loop, &s->sig[i]);
        s->sig[i].data = s;
        uv_signal_start(&s->sig[i], on_signal, numbers[s->which[i]]);
        mw_handle_opened(rt);
    }
    s->n = n;
    mw_waiter_init(&s->w, rt, sig_ready);
    sig_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = s;
    luaL_setmetatable(L, SIG_MT);
    return 1;
}

static int sig_wait(lua_State *L)
{
    sig_ud *u = luaL_checkudata(L, 1, SIG_MT);
    if (!u->s) return luaL_error(L, "signal:wait: closed");
    return mw_waiter_wait(L, &u->s->w, luaL_optnumber(L, 2, -1), "signal:wait");
}

static int sig_close(lua_State *L)
{
    sig_ud *u = luaL_checkudata(L, 1, SIG_MT);
    sigset_t_ *s = u->s;
    if (!s) return 0;
    u->s = NULL;
    s->closing = s->n + 1;
    for (int i = 0; i < s->n; i++) {
        uv_signal_stop(&s->sig[i]);
        mw_close(s->w.rt, (uv_handle_t *)&s->sig[i], handle_closed);
    }
    mw_waiter_close(&s->w, waiter_closed);
    return 0;
}

static int sig_tostring(lua_State *L)
{
    sig_ud *u = luaL_checkudata(L, 1, SIG_MT);
    lua_pushstring(L, u->s ? "signal watch (open)" : "signal watch (closed)");
    return 1;
}

static const luaL_Reg funcs[] = { { "watch", signal_watch }, { NULL, NULL } };
static const luaL_Reg methods[] = { { "wait", sig_wait }, { "close", sig_close }, { NULL, NULL } };

int luaopen_mw_signal(lua_State *L)
{
    mw_class(L, SIG_MT, methods, sig_close, sig_tostring);
    luaL_newlib(L, funcs);
    return 1;
}
