/* The one way every core module builds a class, boxes a handle and reports a failure. */
#include <stdarg.h>
#include <string.h>
#include "mw.h"

static int class_tostring(lua_State *L)
{
    lua_CFunction describe = lua_tocfunction(L, lua_upvalueindex(2));
    lua_settop(L, 1);
    if (describe) {
        if (describe(L) > 0) return 1;
        lua_pushfstring(L, "%s (closed)", lua_tostring(L, lua_upvalueindex(1)));
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

void mw_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
              lua_CFunction describe)
{
    if (luaL_newmetatable(L, name)) {
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__close");
        lua_pushstring(L, name);
        if (describe) lua_pushcfunction(L, describe);
        else lua_pushnil(L);
        lua_pushcclosure(L, class_tostring, 2);
        lua_setfield(L, -2, "__tostring");
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

mw_box *mw_box_new(lua_State *L, const char *name, int nuv)
{
    mw_box *b = lua_newuserdatauv(L, sizeof *b, nuv);
    b->p = NULL;
    luaL_setmetatable(L, name);
    return b;
}

void *mw_box_peek(lua_State *L, int idx, const char *name)
{
    mw_box *b = luaL_checkudata(L, idx, name);
    return b->p;
}

void *mw_box_check(lua_State *L, int idx, const char *name)
{
    mw_box *b = luaL_checkudata(L, idx, name);
    if (!b->p) luaL_error(L, "attempt to use a closed %s", name);
    return b->p;
}

void *mw_box_take(lua_State *L, int idx, const char *name)
{
    mw_box *b = luaL_checkudata(L, idx, name);
    void *p = b->p;
    b->p = NULL;
    return p;
}

/* ---- errors ---- */

const char *mw_err_name(int uv_err)
{
    /* uv_err_name allocates (and leaks) a text for an error it does not know */
    char buf[64];
    uv_err_name_r(uv_err, buf, sizeof buf);
    if (strncmp(buf, "Unknown", 7) == 0) return "UNKNOWN";
    return uv_err_name(uv_err);
}

/* On Linux a libuv error is the negated errno (uv-errno.h: UV__ERR(x) is -(x)), so both
 * kinds of failure get the same names. */
const char *mw_errno_name(int e)
{
    return mw_err_name(-e);
}

static int push_failure(lua_State *L, const char *why, const char *code, const char *fmt, va_list ap)
{
    lua_pushnil(L);
    if (fmt) {
        lua_pushvfstring(L, fmt, ap);
        lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), why);
        lua_remove(L, -2);
    } else {
        lua_pushstring(L, why);
    }
    lua_pushstring(L, code);
    return 3;
}

int mw_fail(lua_State *L, int e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = push_failure(L, strerror(e), mw_errno_name(e), fmt, ap);
    va_end(ap);
    return n;
}

int mw_uv_fail(lua_State *L, int uv_err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = push_failure(L, uv_strerror(uv_err), mw_err_name(uv_err), fmt, ap);
    va_end(ap);
    return n;
}
