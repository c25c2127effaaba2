/* The wait-with-timeout logic and the close-then-free bookkeeping shared by every waitable. */
#include <stdlib.h>
#include "waiter.h"

/* One close callback for the timer and the owner's handles: the last one frees the owner. */
static void part_closed(uv_handle_t *h)
{
    mw_waiter *w = h->data;
    if (--w->closing == 0 && w->release) w->release(w);
}

void mw_waiter_init(mw_waiter *w, mw_rt *rt, int (*ready)(mw_waiter *, lua_State *))
{
    w->rt = rt;
    w->ready = ready;
    uv_timer_init(rt->loop, &w->timer);
    mw_waiter_own(w, (uv_handle_t *)&w->timer);
    w->timer_open = 1;
}

void mw_waiter_own(mw_waiter *w, uv_handle_t *h)
{
    h->data = w;
    mw_handle_opened(w->rt);
}

static void on_timeout(uv_timer_t *t)
{
    mw_waiter *w = t->data;
    if (!w->waiting || !mw_task_is_waiting(&w->op)) return;
    w->waiting = 0;
    lua_pushnil(w->rt->L);
    lua_pushliteral(w->rt->L, "timeout");
    mw_task_done(w->rt, &w->op, 2);
}

static void wait_cancel(mw_op *op)
{
    mw_waiter *w = (mw_waiter *)op;
    w->waiting = 0;
    uv_timer_stop(&w->timer);
}

int mw_waiter_wait(lua_State *L, mw_waiter *w, double timeout, const char *fn)
{
    return mw_waiter_waitk(L, w, timeout, fn, 0, NULL);
}

int mw_waiter_waitk(lua_State *L, mw_waiter *w, double timeout, const char *fn,
                    lua_KContext ctx, lua_KFunction k)
{
    int n = w->ready(w, L);
    if (n) return k ? k(L, LUA_OK, ctx) : n;
    mw_task_check_current(L, fn);
    if (w->waiting) return luaL_error(L, "%s: another task is already waiting", fn);
    w->waiting = 1;
    w->op.cancel = wait_cancel;
    if (timeout >= 0) uv_timer_start(&w->timer, on_timeout, (uint64_t)(timeout * 1000 + 0.5), 0);
    return mw_task_waitk(L, &w->op, ctx, k);
}

void mw_waiter_shorten(mw_waiter *w, double timeout)
{
    if (!w->waiting || !mw_task_is_waiting(&w->op) || timeout < 0) return;
    uint64_t ms = (uint64_t)(timeout * 1000 + 0.5);
    uint64_t left = uv_timer_get_due_in(&w->timer);
    if (uv_is_active((uv_handle_t *)&w->timer) && left <= ms) return;
    uv_timer_start(&w->timer, on_timeout, ms, 0);
}

void mw_waiter_poke(mw_waiter *w)
{
    if (!w->waiting || !mw_task_is_waiting(&w->op)) return;
    int n = w->ready(w, w->rt->L);
    if (!n) return;
    w->waiting = 0;
    uv_timer_stop(&w->timer);
    mw_task_done(w->rt, &w->op, n);
}

void mw_waiter_close_handle(mw_waiter *w, uv_handle_t *h)
{
    w->closing++;
    h->data = w;
    mw_close(w->rt, h, part_closed);
}

void mw_waiter_close(mw_waiter *w, void (*release)(mw_waiter *))
{
    if (w->waiting && mw_task_is_waiting(&w->op)) {
        lua_pushnil(w->rt->L);
        lua_pushliteral(w->rt->L, "closed");
        mw_task_done(w->rt, &w->op, 2);
    }
    w->waiting = 0;
    w->release = release;
    if (!w->timer_open) return;
    w->timer_open = 0;
    uv_timer_stop(&w->timer);
    mw_waiter_close_handle(w, (uv_handle_t *)&w->timer);
}

void mw_waiter_free(mw_waiter *w)
{
    free(w);
}
