/* core.cond(): a wake-up flag one task waits on and any task (or loop callback) sets;
 * the orchestrator builds mailboxes and "state changed" notices from it. */
#include <stdlib.h>
#include "waiter.h"

#define COND_MT "mw.cond"

typedef struct {
    mw_waiter w;
    int set;
} cond_t;

static int cond_ready(mw_waiter *w, lua_State *L)
{
    cond_t *c = (cond_t *)w;
    if (!c->set) return 0;
    c->set = 0;
    lua_pushboolean(L, 1);
    return 1;
}

int mw_cond_new(lua_State *L)
{
    mw_box *b = mw_box_new(L, COND_MT, 0);
    cond_t *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "cond: out of memory");
    mw_waiter_init(&c->w, mw_rt_get(L), cond_ready);
    b->p = c;
    return 1;
}

/* c:wait([timeout]) -> true | nil, "timeout" */
static int cond_wait(lua_State *L)
{
    cond_t *c = mw_box_check(L, 1, COND_MT);
    return mw_waiter_wait(L, &c->w, luaL_optnumber(L, 2, -1), "cond:wait");
}

static int cond_notify(lua_State *L)
{
    cond_t *c = mw_box_check(L, 1, COND_MT);
    c->set = 1;
    mw_waiter_poke(&c->w);
    return 0;
}

static int cond_close(lua_State *L)
{
    cond_t *c = mw_box_take(L, 1, COND_MT);
    if (c) mw_waiter_close(&c->w, mw_waiter_free);
    return 0;
}

static int cond_describe(lua_State *L)
{
    cond_t *c = mw_box_peek(L, 1, COND_MT);
    if (!c) return 0;
    lua_pushstring(L, c->set ? "mw.cond (set)" : "mw.cond (clear)");
    return 1;
}

static const luaL_Reg methods[] = {
    { "wait", cond_wait }, { "notify", cond_notify }, { "close", cond_close }, { NULL, NULL }
};

void mw_cond_metatable(lua_State *L)
{
    mw_class(L, COND_MT, methods, cond_close, cond_describe);
}
