/* mw.yaml: decodes YAML (compose files) into Lua values through libyaml's event API. */
/* Events rather than libyaml's document API: only events tell a plain untagged scalar (8080,
 * the number) from a quoted or tagged one ("8080", the string), and they let the depth and
 * size limits act while parsing rather than after a whole document has been built. */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>
#include <lua.h>
#include <lauxlib.h>
#include "mw.h"

#define PARSER_MT "mw.yaml.parser"
#define MAX_DEPTH 200
#define MAX_NODES 1000000L
/* Text in the document once aliases are expanded (scalars and keys): an alias of a scalar costs
 * nothing here (a Lua string is shared), but whatever walks the result pays for every copy: a
 * 1 MB scalar aliased 100 times became a 106 MB stack.lua in 33 s. 16 MiB is ~1000 times the
 * largest compose file in tests/compose. */
#define MAX_BYTES (16L * 1024 * 1024)
#define MSG_MAX 320
#define STR_TAG "tag:yaml.org,2002:str"

/* yaml.null: a light userdata whose address is unique to this module. */
static const char null_sentinel;
#define YAML_NULL ((void *)&null_sentinel)

/* Everything libyaml allocates, in a userdata so that a Lua error half-way (out of memory)
 * still frees it when the userdata is collected. */
typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int parser_live, event_live;
} box;

typedef struct {
    lua_State *L;
    box *b;
    const char *text;
    size_t len;
    int anchors;            /* stack index: anchor name -> value */
    int sizes;              /* stack index: anchor name -> its node count */
    int weights;            /* stack index: anchor name -> its bytes of text */
    long nodes;             /* nodes made so far, aliases counted expanded */
    long bytes;             /* bytes of scalars and keys so far, aliases counted expanded */
    char err[MSG_MAX];
} reader;

static void box_release(box *b)
{
    if (b->event_live) {
        yaml_event_delete(&b->event);
        b->event_live = 0;
    }
    if (b->parser_live) {
        yaml_parser_delete(&b->parser);
        b->parser_live = 0;
    }
}

static int box_gc(lua_State *L)
{
    box_release(luaL_checkudata(L, 1, PARSER_MT));
    return 0;
}

static int box_describe(lua_State *L)
{
    box *b = luaL_checkudata(L, 1, PARSER_MT);
    if (!b->parser_live) return 0;
    lua_pushliteral(L, PARSER_MT " (open)");
    return 1;
}

/* ---- errors: always "line L, column C: problem" ---- */

static int vfail(reader *r, size_t line, size_t column, const char *fmt, va_list ap)
{
    int n = snprintf(r->err, sizeof r->err, "line %zu, column %zu: ", line + 1, column + 1);
    if (n > 0 && (size_t)n < sizeof r->err) vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
    return -1;
}

static int fail_at(reader *r, size_t line, size_t column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r, line, column, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_mark(reader *r, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r, m.line, m.column, fmt, ap);
    va_end(ap);
    return -1;
}

static int parser_error(reader *r)
{
    yaml_parser_t *p = &r->b->parser;
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    if (p->error == YAML_READER_ERROR) {
        /* The reader knows only a byte offset; count lines ourselves. */
        size_t off = p->problem_offset < r->len ? p->problem_offset : r->len, line = 0, bol = 0;
        for (size_t i = 0; i < off; i++)
            if (r->text[i] == '\n') {
                line++;
                bol = i + 1;
            }
        if (p->problem_value >= 0)
            return fail_at(r, line, off - bol, "%s (byte 0x%02x)", problem, p->problem_value & 0xff);
        return fail_at(r, line, off - bol, "%s", problem);
    }
    if (p->context && (p->context_mark.line != p->problem_mark.line ||
                       p->context_mark.column != p->problem_mark.column))
        return fail_mark(r, p->problem_mark, "%s (%s that starts at line %zu, column %zu)", problem,
                         p->context, p->context_mark.line + 1, p->context_mark.column + 1);
    return fail_mark(r, p->problem_mark, "%s", problem);
}

static int next(reader *r)
{
    box *b = r->b;
    if (b->event_live) {
        yaml_event_delete(&b->event);
        b->event_live = 0;
    }
    if (!yaml_parser_parse(&b->parser, &b->event)) return parser_error(r);
    b->event_live = 1;
    return 0;
}

/* Counts n nodes holding `bytes` bytes of text against the limits. */
static int count(reader *r, yaml_mark_t m, long n, long bytes)
{
    if (n > MAX_NODES - r->nodes)
        return fail_mark(r, m, "document too large: more than %ld nodes (an alias bomb?)", MAX_NODES);
    if (bytes > MAX_BYTES - r->bytes)
        return fail_mark(r, m, "document too large: more than %ld MiB of text once aliases are expanded "
                               "(an alias bomb?)", MAX_BYTES / (1024 * 1024));
    r->nodes += n;
    r->bytes += bytes;
    return 0;
}

/* ---- scalars ---- */

static int is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

static int all_in(const char *s, size_t n, const char *set)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!memchr(set, s[i], strlen(set))) return 0;
    return 1;
}

/* [-+]? digits, with no leading zero (so "0755" and "01234" keep their text), 0x.., 0o.. */
static int push_int(lua_State *L, const char *s, size_t n)
{
    char buf[80];
    if (n >= sizeof buf) return 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        const char *digits = s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567";
        if (!all_in(s + 2, n - 2, digits)) return 0;
        memcpy(buf, s + 2, n - 2);
        buf[n - 2] = 0;
        errno = 0;
        unsigned long long v = strtoull(buf, NULL, s[1] == 'x' ? 16 : 8);
        if (errno || v > (unsigned long long)LUA_MAXINTEGER) return 0;
        lua_pushinteger(L, (lua_Integer)v);
        return 1;
    }
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (!all_in(s + i, n - i, "0123456789")) return 0;
    if (s[i] == '0' && n - i > 1) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE) lua_pushnumber(L, strtod(buf, NULL));
    else lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

/* [-+]? (.digits | digits[.digits]) [eE[-+]digits], with a point or an exponent; .inf, .nan */
static int push_float(lua_State *L, const char *s, size_t n)
{
    char buf[80];
    size_t i = 0, digits = 0;
    int point = 0, exp = 0;
    if (n == 0 || n >= sizeof buf) return 0;
    if (s[i] == '-' || s[i] == '+') i++;
    if (is(s + i, n - i, ".inf") || is(s + i, n - i, ".Inf") || is(s + i, n - i, ".INF")) {
        lua_pushnumber(L, s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
        return 1;
    }
    if (i == 0 && (is(s, n, ".nan") || is(s, n, ".NaN") || is(s, n, ".NAN"))) {
        lua_pushnumber(L, (double)NAN);
        return 1;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) digits++;
    if (i < n && s[i] == '.') {
        point = 1;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) digits++;
    }
    if (digits == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        exp = 1;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) e++;
        if (e == 0) return 0;
    }
    if (i != n || (!point && !exp)) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    lua_pushnumber(L, strtod(buf, NULL));
    return 1;
}

/* A plain untagged scalar, read the way compose reads one: null, true/false, a number, or
 * text. yes/no/on/off stay text: only the field that expects a boolean can tell. */
static void push_plain(lua_State *L, const char *s, size_t n)
{
    if (n == 0 || is(s, n, "~") || is(s, n, "null") || is(s, n, "Null") || is(s, n, "NULL")) {
        lua_pushlightuserdata(L, YAML_NULL);
    } else if (is(s, n, "true") || is(s, n, "True") || is(s, n, "TRUE")) {
        lua_pushboolean(L, 1);
    } else if (is(s, n, "false") || is(s, n, "False") || is(s, n, "FALSE")) {
        lua_pushboolean(L, 0);
    } else if (!push_int(L, s, n) && !push_float(L, s, n)) {
        lua_pushlstring(L, s, n);
    }
}

static void push_scalar(lua_State *L, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    /* Another tag on a plain scalar (!!int, compose's !reset) does not make it text. */
    if (plain && (ev->data.scalar.plain_implicit || (tag && strcmp(tag, STR_TAG) != 0)))
        push_plain(L, s, n);
    else
        lua_pushlstring(L, s, n);
}

/* ---- nodes ---- */

static int node(reader *r, int depth);

/* Replaces the table on top with a deep copy: an alias gives its own tree, not a shared one. */
static int copy(reader *r, int depth, yaml_mark_t m)
{
    lua_State *L = r->L;
    if (!lua_istable(L, -1)) return 0;
    if (depth >= MAX_DEPTH) return fail_mark(r, m, "nesting deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 6, "yaml: nesting");
    int src = lua_gettop(L);
    lua_createtable(L, (int)lua_rawlen(L, src), 0);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        if (copy(r, depth + 1, m) != 0) return -1;
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, src + 1);
    }
    lua_remove(L, src);
    return 0;
}

/* Records the value on top under the anchor at index a (if any), with its node count and
 * bytes (counted since `before` and `bytes_before`). */
static void remember(reader *r, int a, int value, long before, long bytes_before)
{
    lua_State *L = r->L;
    if (lua_isnil(L, a)) return;
    lua_pushvalue(L, a);
    lua_pushvalue(L, value);
    lua_rawset(L, r->anchors);
    lua_pushvalue(L, a);
    lua_pushinteger(L, r->nodes - before);
    lua_rawset(L, r->sizes);
    lua_pushvalue(L, a);
    lua_pushinteger(L, r->bytes - bytes_before);
    lua_rawset(L, r->weights);
}

static void push_anchor(lua_State *L, const yaml_char_t *anchor)
{
    if (anchor) lua_pushstring(L, (const char *)anchor);
    else lua_pushnil(L);
}

static int alias(reader *r, int depth)
{
    lua_State *L = r->L;
    const yaml_event_t *ev = &r->b->event;
    yaml_mark_t m = ev->start_mark;
    const char *name = (const char *)ev->data.alias.anchor;
    if (lua_getfield(L, r->anchors, name) == LUA_TNIL)
        return fail_mark(r, m, "unknown anchor '%.60s' (an alias must follow its anchor)", name);
    lua_getfield(L, r->sizes, name);
    long n = (long)lua_tointeger(L, -1);
    lua_getfield(L, r->weights, name);
    long bytes = (long)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (count(r, m, n, bytes) != 0) return -1;
    return copy(r, depth, m);
}

static int sequence(reader *r, int depth)
{
    lua_State *L = r->L;
    const yaml_event_t *ev = &r->b->event;
    yaml_mark_t m = ev->start_mark;
    if (depth >= MAX_DEPTH) return fail_mark(r, m, "nesting deeper than %d levels", MAX_DEPTH);
    if (count(r, m, 1, 0) != 0) return -1;
    luaL_checkstack(L, 8, "yaml: nesting");
    long before = r->nodes - 1, bytes_before = r->bytes;
    push_anchor(L, ev->data.sequence_start.anchor);
    int a = lua_gettop(L);
    lua_newtable(L);
    for (lua_Integer i = 1;; i++) {
        if (next(r) != 0) return -1;
        if (r->b->event.type == YAML_SEQUENCE_END_EVENT) break;
        if (node(r, depth + 1) != 0) return -1;
        lua_rawseti(L, a + 1, i);
    }
    remember(r, a, a + 1, before, bytes_before);
    lua_remove(L, a);
    return 0;
}

/* A table is a mapping when it has no list items: mapping keys are always strings. */
static int is_mapping(lua_State *L, int i)
{
    return lua_istable(L, i) && lua_rawlen(L, i) == 0;
}

/* Checks the value of a "<<" key and appends the mappings it names to the list at index ml. */
static int add_merge(reader *r, int ml, yaml_mark_t m)
{
    lua_State *L = r->L;
    int v = lua_gettop(L);
    if (is_mapping(L, v)) {
        lua_rawseti(L, ml, (lua_Integer)lua_rawlen(L, ml) + 1);
        return 0;
    }
    if (lua_istable(L, v)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, v);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, v, i);
            if (!is_mapping(L, -1))
                return fail_mark(r, m, "merge key '<<' needs a mapping or a list of mappings");
            lua_rawseti(L, ml, (lua_Integer)lua_rawlen(L, ml) + 1);
        }
        lua_pop(L, 1);
        return 0;
    }
    return fail_mark(r, m, "merge key '<<' needs a mapping or a list of mappings");
}

/* Keys given in the mapping win over merged ones; an earlier merged mapping wins over a later. */
static void apply_merges(lua_State *L, int t, int ml)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, ml);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, ml, i);
        int src = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, src)) {
            lua_pushvalue(L, -2);
            if (lua_rawget(L, t) == LUA_TNIL) {
                lua_pop(L, 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, t);
            } else {
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
}

static int mapping(reader *r, int depth)
{
    lua_State *L = r->L;
    const yaml_event_t *ev = &r->b->event;
    yaml_mark_t m = ev->start_mark;
    if (depth >= MAX_DEPTH) return fail_mark(r, m, "nesting deeper than %d levels", MAX_DEPTH);
    if (count(r, m, 1, 0) != 0) return -1;
    luaL_checkstack(L, 10, "yaml: nesting");
    long before = r->nodes - 1, bytes_before = r->bytes;
    push_anchor(L, ev->data.mapping_start.anchor);
    int a = lua_gettop(L), t = a + 1, ml = a + 2;
    lua_newtable(L);
    lua_pushnil(L);                                   /* the merge list, made when needed */
    for (;;) {
        if (next(r) != 0) return -1;
        ev = &r->b->event;
        if (ev->type == YAML_MAPPING_END_EVENT) break;
        yaml_mark_t km = ev->start_mark;
        if (ev->type != YAML_SCALAR_EVENT)
            return fail_mark(r, km, ev->type == YAML_ALIAS_EVENT
                                        ? "aliases as mapping keys are not supported"
                                        : "only text can be a mapping key");
        if (count(r, km, 1, (long)ev->data.scalar.length) != 0) return -1;
        int merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit &&
                    is((const char *)ev->data.scalar.value, ev->data.scalar.length, "<<");
        lua_pushlstring(L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
        if (ev->data.scalar.anchor) {
            lua_pushstring(L, (const char *)ev->data.scalar.anchor);
            lua_pushvalue(L, -2);
            lua_rawset(L, r->anchors);
            lua_pushstring(L, (const char *)ev->data.scalar.anchor);
            lua_pushinteger(L, 1);
            lua_rawset(L, r->sizes);
            lua_pushstring(L, (const char *)ev->data.scalar.anchor);
            lua_pushinteger(L, (lua_Integer)ev->data.scalar.length);
            lua_rawset(L, r->weights);
        }
        if (next(r) != 0) return -1;
        if (node(r, depth + 1) != 0) return -1;
        if (merge) {
            if (lua_isnil(L, ml)) {
                lua_newtable(L);
                lua_replace(L, ml);
            }
            if (add_merge(r, ml, km) != 0) return -1;
            lua_pop(L, 1);                            /* the key */
            continue;
        }
        lua_pushvalue(L, -2);
        if (lua_rawget(L, t) != LUA_TNIL) {
            size_t kn;
            const char *k = lua_tolstring(L, -3, &kn);
            return fail_mark(r, km, "duplicate key '%.60s'", k);
        }
        lua_pop(L, 1);
        lua_rawset(L, t);
    }
    if (!lua_isnil(L, ml)) apply_merges(L, t, ml);
    lua_pop(L, 1);
    remember(r, a, t, before, bytes_before);
    lua_remove(L, a);
    return 0;
}

/* Pushes the node whose first event is the current one. */
static int node(reader *r, int depth)
{
    lua_State *L = r->L;
    const yaml_event_t *ev = &r->b->event;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return alias(r, depth);
    case YAML_SCALAR_EVENT: {
        long len = (long)ev->data.scalar.length;
        if (count(r, ev->start_mark, 1, len) != 0) return -1;
        luaL_checkstack(L, 4, "yaml: nesting");
        push_anchor(L, ev->data.scalar.anchor);
        push_scalar(L, ev);
        remember(r, lua_gettop(L) - 1, lua_gettop(L), r->nodes - 1, r->bytes - len);
        lua_remove(L, -2);
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
        return sequence(r, depth);
    case YAML_MAPPING_START_EVENT:
        return mapping(r, depth);
    default:
        return fail_mark(r, ev->start_mark, "unexpected YAML event");
    }
}

/* The first document's root; an empty stream is null. Later documents are not read. */
static int document(reader *r)
{
    if (next(r) != 0) return -1;                      /* stream start */
    if (next(r) != 0) return -1;
    if (r->b->event.type == YAML_STREAM_END_EVENT) {
        lua_pushlightuserdata(r->L, YAML_NULL);
        return 0;
    }
    if (next(r) != 0) return -1;                      /* past document start */
    if (node(r, 0) != 0) return -1;
    /* Reading the document's end reports trouble right after the root node. */
    return next(r);
}

static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, PARSER_MT);
    if (!yaml_parser_initialize(&b->parser)) return luaL_error(L, "yaml.decode: out of memory");
    b->parser_live = 1;
    yaml_parser_set_input_string(&b->parser, (const unsigned char *)text, len);
    lua_newtable(L);
    lua_newtable(L);
    lua_newtable(L);
    reader r = { .L = L, .b = b, .text = text, .len = len, .anchors = lua_gettop(L) - 2,
                 .sizes = lua_gettop(L) - 1, .weights = lua_gettop(L), .nodes = 0, .bytes = 0, .err = "" };
    int rc = document(&r);
    box_release(b);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, r.err);
        return 2;
    }
    return 1;
}

static const luaL_Reg yaml_funcs[] = {
    { "decode", l_decode },
    { NULL, NULL },
};

static const luaL_Reg box_methods[] = { { NULL, NULL } };

int luaopen_mw_yaml(lua_State *L)
{
    mw_class(L, PARSER_MT, box_methods, box_gc, box_describe);
    luaL_newlib(L, yaml_funcs);
    lua_pushlightuserdata(L, YAML_NULL);
    lua_setfield(L, -2, "null");
    lua_pushinteger(L, MAX_DEPTH);
    lua_setfield(L, -2, "max_depth");
    lua_pushinteger(L, MAX_NODES);
    lua_setfield(L, -2, "max_nodes");
    lua_pushinteger(L, MAX_BYTES);
    lua_setfield(L, -2, "max_bytes");
    return 1;
}
