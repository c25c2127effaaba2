/* mw.httpparse: HTTP/1.x requests parsed by Debian's libhttp-parser, for mw's own API server.
 * A parser is fed the bytes of one connection as they come and hands back each request once
 * it is complete, so pipelined requests come out in order. */
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <http_parser.h>
#include "mw.h"

#define PARSER_MT "mw.httpparser"
#define DEFAULT_MAX_BODY (1024 * 1024)

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

typedef struct {
    http_parser hp;
    lua_State *L;            /* set only while feed() runs */
    int out;                 /* stack index of feed()'s result list */
    int nout;
    buf_t url, field, value, body;
    int in_value;            /* the last header callback was a value */
    int begun;               /* a request has begun and is not complete */
    size_t max_body;
    const char *why;         /* our own reason for stopping, with its status */
    int why_status;
    int dead;                /* an error or an upgrade: no more requests on this stream */
} parser_t;


/* ---- buffers ---- */

static int buf_add(buf_t *b, const char *at, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, at, n);
    b->len += n;
    return 0;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- callbacks: they only collect; the Lua values are made at the end of each part ---- */

static parser_t *of(http_parser *hp) { return hp->data; }

static int fail_with(parser_t *p, const char *why, int status)
{
    p->why = why;
    p->why_status = status;
    return -1;
}

/* The current request's headers table lives in the userdata's user value. */
static void push_headers(parser_t *p)
{
    lua_getiuservalue(p->L, 1, 1);
}

/* Moves the collected header into the headers table: names lowercased, repeats joined by ", ". */
static void flush_header(parser_t *p)
{
    if (p->field.len == 0) return;
    lua_State *L = p->L;
    for (size_t i = 0; i < p->field.len; i++) p->field.p[i] = (char)tolower((unsigned char)p->field.p[i]);
    push_headers(p);
    lua_pushlstring(L, p->field.p, p->field.len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, p->value.p ? p->value.p : "", p->value.len);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushlstring(L, p->value.p ? p->value.p : "", p->value.len);
    }
    lua_rawset(L, -3);
    lua_pop(L, 1);
    p->field.len = p->value.len = 0;
}

static int on_message_begin(http_parser *hp)
{
    parser_t *p = of(hp);
    p->url.len = p->field.len = p->value.len = p->body.len = 0;
    p->in_value = 0;
    p->begun = 1;
    lua_newtable(p->L);
    lua_setiuservalue(p->L, 1, 1);
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = of(hp);
    return buf_add(&p->url, at, n) ? fail_with(p, "out of memory", 500) : 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = of(hp);
    if (p->in_value) {
        flush_header(p);
        p->in_value = 0;
    }
    return buf_add(&p->field, at, n) ? fail_with(p, "out of memory", 500) : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = of(hp);
    p->in_value = 1;
    return buf_add(&p->value, at, n) ? fail_with(p, "out of memory", 500) : 0;
}

static int on_headers_complete(http_parser *hp)
{
    parser_t *p = of(hp);
    flush_header(p);
    p->in_value = 0;
    /* refuse a body too large before it arrives (a chunked one is checked as it comes) */
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->max_body)
        return fail_with(p, "request body too large", 413);
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    parser_t *p = of(hp);
    if (p->body.len + n > p->max_body) return fail_with(p, "request body too large", 413);
    return buf_add(&p->body, at, n) ? fail_with(p, "out of memory", 500) : 0;
}

static void set_str(lua_State *L, const char *key, const char *s, size_t n)
{
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, key);
}

/* The finished request becomes { method, url, path, query, version, headers, body, keep_alive }. */
static int on_message_complete(http_parser *hp)
{
    parser_t *p = of(hp);
    lua_State *L = p->L;
    lua_createtable(L, 0, 9);
    lua_pushstring(L, http_method_str((enum http_method)hp->method));
    lua_setfield(L, -2, "method");
    const char *url = p->url.p ? p->url.p : "";
    set_str(L, "url", url, p->url.len);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (p->url.len > 0 && http_parser_parse_url(url, p->url.len, 0, &u) == 0) {
        if (u.field_set & (1 << UF_PATH))
            set_str(L, "path", url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        if (u.field_set & (1 << UF_QUERY))
            set_str(L, "query", url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    }
    lua_pushfstring(L, "%d.%d", (int)hp->http_major, (int)hp->http_minor);
    lua_setfield(L, -2, "version");
    push_headers(p);
    lua_setfield(L, -2, "headers");
    set_str(L, "body", p->body.p ? p->body.p : "", p->body.len);
    lua_pushboolean(L, http_should_keep_alive(hp));
    lua_setfield(L, -2, "keep_alive");
    if (hp->upgrade) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "upgrade");
    }
    lua_rawseti(L, p->out, ++p->nout);
    p->begun = 0;
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the parser object ---- */

static parser_t *check_parser(lua_State *L)
{
    return mw_box_check(L, 1, PARSER_MT);
}

/* httpparse.new([{ max_body = bytes }]) -> parser */
static int hp_new(lua_State *L)
{
    size_t max_body = DEFAULT_MAX_BODY;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "max_body");
        if (!lua_isnil(L, -1)) {
            lua_Integer n = luaL_checkinteger(L, -1);
            luaL_argcheck(L, n >= 0, 1, "max_body must not be negative");
            max_body = (size_t)n;
        }
        lua_pop(L, 1);
    }
    mw_box *u = mw_box_new(L, PARSER_MT, 1);
    parser_t *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "httpparse.new: out of memory");
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    p->max_body = max_body;
    u->p = p;
    return 1;
}

static int feed_error(lua_State *L, parser_t *p)
{
    lua_pushnil(L);
    if (p->why) {
        lua_pushstring(L, p->why);
        lua_pushinteger(L, p->why_status);
    } else if (p->hp.upgrade) {
        lua_pushliteral(L, "protocol upgrade is not supported");
        lua_pushinteger(L, 400);
    } else {
        enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
        lua_pushfstring(L, "bad request: %s", http_errno_description(e));
        lua_pushinteger(L, e == HPE_HEADER_OVERFLOW ? 431 : 400);
    }
    return 3;
}

/* parser:feed(bytes) -> { request... } (possibly empty) | nil, message, http_status.
 * After an error (or a protocol upgrade) the stream can carry no more requests: every later
 * feed returns the same error. */
static int hp_feed(lua_State *L)
{
    parser_t *p = check_parser(L);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    lua_settop(L, 2);
    if (p->dead) return feed_error(L, p);
    lua_newtable(L);
    if (n == 0) return 1;                      /* to the library, no bytes would mean the end */
    p->L = L;
    p->out = lua_gettop(L);
    p->nout = 0;
    size_t used = http_parser_execute(&p->hp, &settings, data, n);
    p->L = NULL;
    if (HTTP_PARSER_ERRNO(&p->hp) != HPE_OK || p->why) {
        p->dead = 1;
        return feed_error(L, p);
    }
    if (p->hp.upgrade) {
        p->dead = 1;                           /* the request itself is returned, nothing after */
    } else if (used != n) {
        p->dead = 1;
        return feed_error(L, p);
    }
    return 1;
}

/* parser:busy() -> true while a request has begun but is not complete */
static int hp_busy(lua_State *L)
{
    parser_t *p = check_parser(L);
    lua_pushboolean(L, p->begun);
    return 1;
}

static int hp_close(lua_State *L)
{
    parser_t *p = mw_box_take(L, 1, PARSER_MT);
    if (!p) return 0;
    buf_free(&p->url);
    buf_free(&p->field);
    buf_free(&p->value);
    buf_free(&p->body);
    free(p);
    return 0;
}

static int hp_describe(lua_State *L)
{
    parser_t *p = mw_box_peek(L, 1, PARSER_MT);
    if (!p) return 0;
    lua_pushstring(L, p->dead ? "mw.httpparser (stopped)" : "mw.httpparser (open)");
    return 1;
}

/* httpparse.status_text(200) -> "OK" (the library's reason phrases) */
static int hp_status_text(lua_State *L)
{
    lua_Integer code = luaL_checkinteger(L, 1);
    lua_pushstring(L, code >= 100 && code <= 599 ? http_status_str((enum http_status)code) : "<unknown>");
    return 1;
}

static int hp_version(lua_State *L)
{
    unsigned long v = http_parser_version();
    lua_pushfstring(L, "%d.%d.%d", (int)((v >> 16) & 255), (int)((v >> 8) & 255), (int)(v & 255));
    return 1;
}

static const luaL_Reg funcs[] = {
    { "new", hp_new }, { "status_text", hp_status_text }, { "version", hp_version }, { NULL, NULL }
};

static const luaL_Reg methods[] = {
    { "feed", hp_feed }, { "busy", hp_busy }, { "close", hp_close }, { NULL, NULL }
};

int luaopen_mw_httpparse(lua_State *L)
{
    mw_class(L, PARSER_MT, methods, hp_close, hp_describe);
    luaL_newlib(L, funcs);
    return 1;
}
