/* string.find/match/gmatch/gsub that user code cannot stall: while a budget is active
 * (core.budget), Lua patterns run on this step-counted matcher, which checks the budget's
 * deadline as it goes; otherwise the standard library's own functions run unchanged.
 *
 * Lua's patterns backtrack: ("a"):rep(2000):find(("a*"):rep(12) .. "b") is one C call that
 * would run for years, and the instruction hook never fires inside it.  The matcher below is
 * written from the reference manual's description of patterns (§6.4.1), not from lstrlib.c;
 * plain searches go to memmem, which glibc runs in linear time (two-way algorithm). */
#include <ctype.h>
#include <string.h>
#include "mw.h"

#define MAX_DEPTH 200           /* nested items (captures, quantifiers), as Lua's own limit */
#define TICK_MASK 0xfff         /* look at the clock every 4096 steps */
#define MAX_CAPTURES 32        /* as LUA_MAXCAPTURES, which lauxlib keeps private */
#define CAP_OPEN (-1)
#define CAP_POS (-2)

typedef struct {
    lua_State *L;
    mw_rt *rt;
    const char *src, *src_end, *pat_end;
    unsigned long steps;
    int depth;
    int level;
    struct { const char *at; ptrdiff_t len; } cap[MAX_CAPTURES];
} matcher;

/* The library's own functions (rt->string_fns), called directly when no budget is active. */
enum { F_FIND, F_MATCH, F_GMATCH, F_GSUB, F_N };
static const char *const names[F_N] = { "find", "match", "gmatch", "gsub" };
#define ORIGINAL(L, f) (mw_rt_get(L)->string_fns[f](L))

static void tick(matcher *m)
{
    if ((++m->steps & TICK_MASK) != 0 || !m->rt->budget_active) return;
    if (uv_hrtime() >= m->rt->budget_deadline) {
        m->rt->budget_killed = 1;
        luaL_error(m->L, "budget exceeded");
    }
}

static int class_has(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    default: return cl == c;        /* %. %% %[ ...: the character itself */
    }
    if (isupper(cl)) r = !r;
    return r != 0;
}

/* [set] from p ('[') to close (its ']') */
static int set_has(int c, const char *p, const char *close)
{
    int yes = 1;
    p++;
    if (*p == '^') { yes = 0; p++; }
    while (p < close) {
        if (*p == '%' && p + 1 < close) {
            if (class_has(c, (unsigned char)p[1])) return yes;
            p += 2;
        } else if (p + 2 < close && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return yes;
            p += 3;
        } else {
            if ((unsigned char)*p == c) return yes;
            p++;
        }
    }
    return !yes;
}

/* The end of the single-character class that starts at p. */
static const char *item_end(matcher *m, const char *p)
{
    if (*p == '%') {
        if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 2;
    }
    if (*p != '[') return p + 1;
    p++;
    if (*p == '^') p++;
    for (int first = 1;; first = 0) {
        if (p >= m->pat_end) luaL_error(m->L, "malformed pattern (missing ']')");
        if (*p == ']' && !first) return p + 1;
        if (*p == '%') p++;
        p++;
    }
}

static int one(matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->src_end) return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *match(matcher *m, const char *s, const char *p);

static const char *greedy(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (one(m, s + n, p, ep)) { n++; tick(m); }
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r) return r;
    }
    return NULL;
}

static const char *lazy(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r) return r;
        if (!one(m, s, p, ep)) return NULL;
        s++;
    }
}

static const char *open_capture(matcher *m, const char *s, const char *p, ptrdiff_t kind)
{
    if (m->level >= MAX_CAPTURES) luaL_error(m->L, "too many captures");
    m->cap[m->level].at = s;
    m->cap[m->level].len = kind;
    m->level++;
    const char *r = match(m, s, p);
    if (!r) m->level--;
    return r;
}

static const char *close_capture(matcher *m, const char *s, const char *p)
{
    int i = m->level - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN) i--;
    if (i < 0) luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].at;
    const char *r = match(m, s, p);
    if (!r) m->cap[i].len = CAP_OPEN;
    return r;
}

static const char *balanced(matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != p[0]) return NULL;
    int depth = 1;
    while (++s < m->src_end) {
        tick(m);
        if (*s == p[1]) {
            if (--depth == 0) return s + 1;
        } else if (*s == p[0]) {
            depth++;
        }
    }
    return NULL;
}

/* The end of a match of pattern p at s, or NULL. */
static const char *match(matcher *m, const char *s, const char *p)
{
    if (++m->depth > MAX_DEPTH) luaL_error(m->L, "pattern too complex");
    for (;;) {
        tick(m);
        if (p >= m->pat_end) break;
        if (*p == '(') {
            s = p[1] == ')' ? open_capture(m, s, p + 2, CAP_POS) : open_capture(m, s, p + 1, CAP_OPEN);
            break;
        }
        if (*p == ')') { s = close_capture(m, s, p + 1); break; }
        if (*p == '$' && p + 1 == m->pat_end) {
            if (s != m->src_end) s = NULL;
            break;
        }
        if (*p == '%' && p + 1 < m->pat_end && p[1] == 'b') {
            s = balanced(m, s, p + 2);
            if (!s) break;
            p += 4;
            continue;
        }
        if (*p == '%' && p + 1 < m->pat_end && p[1] == 'f') {
            p += 2;
            if (*p != '[') luaL_error(m->L, "missing '[' after '%%f' in pattern");
            const char *ep = item_end(m, p);
            int before = s == m->src ? 0 : (unsigned char)s[-1];
            int at = s < m->src_end ? (unsigned char)*s : 0;
            if (set_has(before, p, ep - 1) || !set_has(at, p, ep - 1)) { s = NULL; break; }
            p = ep;
            continue;
        }
        if (*p == '%' && p + 1 < m->pat_end && isdigit((unsigned char)p[1])) {
            int i = p[1] - '1';
            if (i < 0 || i >= m->level || m->cap[i].len == CAP_OPEN)
                luaL_error(m->L, "invalid capture index %%%d", i + 1);
            ptrdiff_t len = m->cap[i].len;
            if (len < 0 || m->src_end - s < len || memcmp(m->cap[i].at, s, (size_t)len) != 0) {
                s = NULL;
                break;
            }
            s += len;
            p += 2;
            continue;
        }
        const char *ep = item_end(m, p);
        int ok = one(m, s, p, ep);
        char q = ep < m->pat_end ? *ep : '\0';
        if (q == '?') {
            const char *r;
            if (ok && (r = match(m, s + 1, ep + 1)) != NULL) { s = r; break; }
            p = ep + 1;
            continue;
        }
        if (q == '+') { s = ok ? greedy(m, s + 1, p, ep) : NULL; break; }
        if (q == '*') { s = greedy(m, s, p, ep); break; }
        if (q == '-') { s = lazy(m, s, p, ep); break; }
        if (!ok) { s = NULL; break; }
        s++;
        p = ep;
    }
    m->depth--;
    return s;
}

static void start(matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->rt = mw_rt_get(L);
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = p + lp;
    m->steps = 0;
}

static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0) luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_OPEN) luaL_error(m->L, "unfinished capture");
    if (len == CAP_POS) lua_pushinteger(m->L, (m->cap[i].at - m->src) + 1);
    else lua_pushlstring(m->L, m->cap[i].at, (size_t)len);
}

/* The captures, or the whole match (s..e) when there are none and s is given. */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = (m->level == 0 && s) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) push_capture(m, i, s, e);
    return n;
}

static size_t start_index(lua_Integer pos, size_t len)
{
    if (pos > 0) return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len) return 0;
    return len + (size_t)pos;
}

static int plain(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] != '\0' && strchr("^$*+?.([%-", p[i])) return 0;
    return 1;
}

/* memmem in windows of 256 KiB, with a look at the clock between them: linear, but a scan of
 * 64 MiB for a periodic needle still takes most of a second. */
static const char *search(matcher *m, const char *s, size_t ls, const char *p, size_t lp)
{
    const size_t window = 256 * 1024;
    for (size_t at = 0; at + lp <= ls; at += window) {
        size_t len = ls - at < window + lp ? ls - at : window + lp;
        const char *r = memmem(s + at, len, p, lp);
        if (r) return r;
        m->steps |= TICK_MASK;
        tick(m);
    }
    return NULL;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) { luaL_pushfail(L); return 1; }
    matcher m;
    if (find && (lua_toboolean(L, 4) || plain(p, lp))) {
        start(&m, L, s, ls, p, lp);
        const char *r = search(&m, s + init, ls - init, p, lp);
        if (!r) { luaL_pushfail(L); return 1; }
        lua_pushinteger(L, (r - s) + 1);
        lua_pushinteger(L, (lua_Integer)((size_t)(r - s) + lp));
        return 2;
    }
    int anchored = lp > 0 && *p == '^';
    if (anchored) { p++; lp--; }
    start(&m, L, s, ls, p, lp);
    const char *at = s + init;
    do {
        m.level = 0;
        m.depth = 0;
        const char *e = match(&m, at, p);
        if (e) {
            if (!find) return push_captures(&m, at, e);
            lua_pushinteger(L, (at - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&m, NULL, NULL) + 2;
        }
    } while (at++ < m.src_end && !anchored);
    luaL_pushfail(L);
    return 1;
}

static int bounded_find(lua_State *L)
{
    if (!mw_rt_get(L)->budget_active) return ORIGINAL(L, F_FIND);
    return find_or_match(L, 1);
}

static int bounded_match(lua_State *L)
{
    if (!mw_rt_get(L)->budget_active) return ORIGINAL(L, F_MATCH);
    return find_or_match(L, 0);
}

/* upvalues: subject, pattern, next position (0-based), end of the last match (-1: none) */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    matcher m;
    start(&m, L, s, ls, p, lp);
    for (const char *at = s + pos; at <= m.src_end; at++) {
        m.level = 0;
        m.depth = 0;
        const char *e = match(&m, at, p);
        if (e && e - s != last) {
            lua_pushinteger(L, e - s);
            lua_pushvalue(L, -1);
            lua_replace(L, lua_upvalueindex(3));
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&m, at, e);
        }
    }
    lua_pushinteger(L, (lua_Integer)ls + 1);
    lua_replace(L, lua_upvalueindex(3));
    return 0;
}

static int bounded_gmatch(lua_State *L)
{
    if (!mw_rt_get(L)->budget_active) return ORIGINAL(L, F_GMATCH);
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) init = ls + 1;
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* One replacement of gsub: the match is s..e, the replacement is argument 3. */
static void replace(matcher *m, luaL_Buffer *b, const char *s, const char *e, int kind)
{
    lua_State *L = m->L;
    if (kind == LUA_TSTRING || kind == LUA_TNUMBER) {
        size_t lr;
        const char *r = lua_tolstring(L, 3, &lr);
        for (size_t i = 0; i < lr; i++) {
            if (r[i] != '%') { luaL_addchar(b, r[i]); continue; }
            i++;
            if (i < lr && r[i] == '%') { luaL_addchar(b, '%'); continue; }
            if (i >= lr || !isdigit((unsigned char)r[i]))
                luaL_error(L, "invalid use of '%%' in replacement string");
            if (r[i] == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_capture(m, r[i] - '1', s, e);
                luaL_tolstring(L, -1, NULL);
                lua_remove(L, -2);
                luaL_addvalue(b);
            }
        }
        return;
    }
    if (kind == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int bounded_gsub(lua_State *L)
{
    if (!mw_rt_get(L)->budget_active) return ORIGINAL(L, F_GSUB);
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int kind = lua_type(L, 3);
    lua_Integer most = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
                     kind == LUA_TTABLE, 3, "string/function/table");
    int anchored = lp > 0 && *p == '^';
    if (anchored) { p++; lp--; }
    matcher m;
    start(&m, L, s, ls, p, lp);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *at = s, *last = NULL;
    lua_Integer n = 0;
    while (n < most) {
        m.level = 0;
        m.depth = 0;
        const char *e = match(&m, at, p);
        if (e && e != last) {
            n++;
            replace(&m, &b, at, e, kind);
            at = last = e;
        } else if (at < m.src_end) {
            tick(&m);
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchored) break;
    }
    luaL_addlstring(&b, at, (size_t)(m.src_end - at));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

static const lua_CFunction bounded[F_N] = { bounded_find, bounded_match, bounded_gmatch, bounded_gsub };

/* Puts the bounded functions into the string table, which is also the strings' __index, so
 * ("x"):find(...) is covered too.  Called once at start-up, after luaL_openlibs. */
void mw_pattern_install(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    lua_getglobal(L, "string");
    for (int i = 0; i < F_N; i++) {
        lua_getfield(L, -1, names[i]);
        rt->string_fns[i] = lua_tocfunction(L, -1);
        lua_pop(L, 1);
        if (!rt->string_fns[i]) luaL_error(L, "string.%s is not a C function", names[i]);
        lua_pushcfunction(L, bounded[i]);
        lua_setfield(L, -2, names[i]);
    }
    lua_pop(L, 1);
}
