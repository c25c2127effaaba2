/* mw.lines: splits a byte stream into lines however it was cut into chunks. */
#include <stdlib.h>
#include <string.h>
#include "mw.h"
#include "linebuf.h"

#define LINES_MT "mw.lines"

int mw_linebuf_append(mw_linebuf *b, const char *p, size_t n)
{
    if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off > 0) {                 /* reclaim what was read before growing */
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 256;
            while (cap < b->len + n) cap *= 2;
            char *d = realloc(b->data, cap);
            if (!d) return -1;
            b->data = d;
            b->cap = cap;
        }
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int mw_linebuf_line(mw_linebuf *b, const char **line, size_t *n)
{
    if (b->off >= b->len) return 0;
    const char *start = b->data + b->off;
    const char *nl = memchr(start, '\n', b->len - b->off);
    if (!nl) return 0;
    size_t len = (size_t)(nl - start);
    b->off += len + 1;
    if (len > 0 && start[len - 1] == '\r') len--;
    *line = start;
    *n = len;
    return 1;
}

size_t mw_linebuf_take(mw_linebuf *b, const char **p)
{
    size_t n = b->len - b->off;
    *p = b->data ? b->data + b->off : "";
    b->off = b->len;
    return n;
}

size_t mw_linebuf_unread(const mw_linebuf *b)
{
    return b->len - b->off;
}

void mw_linebuf_free(mw_linebuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int lines_new(lua_State *L)
{
    mw_linebuf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, LINES_MT);
    return 1;
}

static int lines_feed(lua_State *L)
{
    mw_linebuf *b = luaL_checkudata(L, 1, LINES_MT);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (mw_linebuf_append(b, p, n) != 0) return luaL_error(L, "lines: out of memory");
    lua_newtable(L);
    const char *line;
    size_t len;
    for (int i = 1; mw_linebuf_line(b, &line, &len); i++) {
        lua_pushlstring(L, line, len);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int lines_rest(lua_State *L)
{
    mw_linebuf *b = luaL_checkudata(L, 1, LINES_MT);
    lua_pushlstring(L, b->data ? b->data + b->off : "", b->len - b->off);
    return 1;
}

/* Drops what is buffered: a splitter holds memory, not a handle, and stays usable. */
static int lines_gc(lua_State *L)
{
    mw_linebuf_free(luaL_checkudata(L, 1, LINES_MT));
    return 0;
}

static const luaL_Reg lines_methods[] = {
    { "feed", lines_feed }, { "rest", lines_rest }, { "close", lines_gc }, { NULL, NULL }
};

static const luaL_Reg lines_funcs[] = { { "new", lines_new }, { NULL, NULL } };

int luaopen_mw_lines(lua_State *L)
{
    mw_class(L, LINES_MT, lines_methods, lines_gc, NULL);
    luaL_newlib(L, lines_funcs);
    return 1;
}
