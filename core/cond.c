/* core.cond(): a wake-up flag one task waits on and any task (or loop callback) sets;
 * the orchestrator builds mailboxes and "state changed" notices from it. */
#include <stdlib.h>
#include "waiter.h"

#define COND_MT "mw.cond"

typedef struct {
    mw_waiter w;
    int set;
} cond_t;

typedef struct { cond_t *c; } cond_ud;

static int cond_ready(mw_waiter *w, lua_State *L)
{
    cond_t *c = (cond_t *)w;
    if (!c->set) return 0;
    c->set = 0;
    lua_pushboolean(L, 1);
    return 1;
}

static void cond_closed(mw_waiter *w)
{
    free(w);
}

int mw_cond_new(lua_State *L)
{
    cond_t *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "cond: out of memory");
    mw_waiter_init(&c->w, mw_rt_get(L), cond_ready);
    cond_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = c;
    luaL_setmetatable(L, COND_MT);
    return 1;
}

static cond_t *check(lua_State *L)
{
    cond_ud *u = luaL_checkudata(L, 1, COND_MT);
    if (!u->c) luaL_error(L, "cond: closed");
    return u->c;
}

/* c:wait([timeout]) -> true | nil, "timeout" */
static int cond_wait(lua_State *L)
{
    cond_t *c = check(L);
    return mw_waiter_wait(L, &c->w, luaL_optnumber(L, 2, -1), "cond:wait");
}

static int cond_notify(lua_State *L)
{
    cond_t *c = check(L);
    c->set = 1;
    mw_waiter_poke(&c->w);
    return 0;
}

static int cond_close(lua_State *L)
{
    cond_ud *u = luaL_checkudata(L, 1, COND_MT);
    if (!u->c) return 0;
    mw_waiter_close(&u->c->w, cond_closed);
    u->c = NULL;
    return 0;
}

static int cond_tostring(lua_State *L)
{
    cond_ud *u = luaL_checkudata(L, 1, COND_MT);
    lua_pushstring(L, u->c ? (u->c->set ? "cond (set)" : "cond (clear)") : "cond (closed)");
    return 1;
}

static const luaL_Reg methods[] = {
    { "wait", cond_wait }, { "notify", cond_notify }, { "close", cond_close }, { NULL, NULL }
};

void mw_cond_metatable(lua_State *L)
{
    mw_class(L, COND_MT, methods, cond_close, cond_tostring);
}
