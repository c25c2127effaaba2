/* mw.signal: SIGINT, SIGTERM, SIGHUP… as events a task waits on (libuv turns them into loop events). */
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include "waiter.h"

#define SIG_MT "mw.signal"
#define MAXSIG 8

/* WINCH: a terminal's new window size, which `mw exec -t` passes on */
static const char *const names[] = { "INT", "TERM", "HUP", "USR1", "USR2", "QUIT", "WINCH", NULL };
static const int numbers[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGWINCH };

typedef struct {
    mw_waiter w;
    uv_signal_t sig[MAXSIG];
    int which[MAXSIG];       /* index into names */
    int count[MAXSIG];       /* arrived, not yet taken */
    int n;
} sigset_t_;

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

static int signal_watch(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > MAXSIG) return luaL_error(L, "signal.watch: give 1 to %d signal names", MAXSIG);
    int which[MAXSIG];
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        which[i] = luaL_checkoption(L, -1, NULL, names);
        lua_pop(L, 1);
    }
    mw_box *b = mw_box_new(L, SIG_MT, 0);
    sigset_t_ *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "signal.watch: out of memory");
    mw_waiter_init(&s->w, rt, sig_ready);
    for (int i = 0; i < n; i++) {
        s->which[i] = which[i];
        uv_signal_init(rt->loop, &s->sig[i]);
        mw_waiter_own(&s->w, (uv_handle_t *)&s->sig[i]);
        uv_signal_start(&s->sig[i], on_signal, numbers[which[i]]);
    }
    s->n = n;
    b->p = s;
    return 1;
}

static int sig_wait(lua_State *L)
{
    sigset_t_ *s = mw_box_check(L, 1, SIG_MT);
    return mw_waiter_wait(L, &s->w, luaL_optnumber(L, 2, -1), "signal:wait");
}

static int sig_close(lua_State *L)
{
    sigset_t_ *s = mw_box_take(L, 1, SIG_MT);
    if (!s) return 0;
    for (int i = 0; i < s->n; i++) {
        uv_signal_stop(&s->sig[i]);
        mw_waiter_close_handle(&s->w, (uv_handle_t *)&s->sig[i]);
    }
    mw_waiter_close(&s->w, mw_waiter_free);
    return 0;
}

static int sig_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, SIG_MT)) return 0;
    lua_pushliteral(L, "mw.signal (open)");
    return 1;
}

static const luaL_Reg funcs[] = { { "watch", signal_watch }, { NULL, NULL } };
static const luaL_Reg methods[] = { { "wait", sig_wait }, { "close", sig_close }, { NULL, NULL } };

int luaopen_mw_signal(lua_State *L)
{
    mw_class(L, SIG_MT, methods, sig_close, sig_describe);
    luaL_newlib(L, funcs);
    return 1;
}
