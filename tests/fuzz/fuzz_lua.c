/* libFuzzer harness for mw's pure-Lua parsers: one Lua state with the source tree on
 * package.path, a driver (tests/fuzz/drivers/DRIVER.lua) that returns function(data), a stub
 * mw.core whose budget() is an instruction count hook, and Lua line coverage fed to libFuzzer
 * as extra counters (the Debian liblua is not instrumented, so without them the fuzzer would be
 * blind to which Lua paths an input reached). Build with -DDRIVER='"frames"' and
 * -DROOT='"/path/to/tree"'. A Lua error escaping the driver, or fail(msg), is a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef DRIVER
#error "build with -DDRIVER='\"name\"'"
#endif
#ifndef ROOT
#define ROOT "."
#endif

#define COUNTERS 65536
#define HEAP_LIMIT ((size_t)512 << 20)

__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t counters[COUNTERS];

/* libFuzzer calls in with no context, so the harness keeps its one state here. */
static struct {
    lua_State *L;
    int driver;            /* registry ref of the driver function */
    size_t heap;
    int in_budget;
    long budget_left;
    uintptr_t prev;        /* last line's key, for edge-like coverage */
    unsigned long runs;
} H;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (ptr == NULL) osize = 0;
    if (nsize == 0) {
        free(ptr);
        H.heap -= osize;
        return NULL;
    }
    if (nsize > osize && H.heap + (nsize - osize) > HEAP_LIMIT) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) H.heap = H.heap - osize + nsize;
    return p;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    /* Once the budget is spent, every count tick and every new line raises again (as Redis
     * does), so a pcall in a loop cannot swallow the abort: the loop's own line raises too. */
    if (H.in_budget && H.budget_left < 0) luaL_error(L, "budget exceeded");
    if (ar->event == LUA_HOOKCOUNT) {
        if (!H.in_budget) return;
        H.budget_left -= 1000;
        if (H.budget_left < 0) luaL_error(L, "budget exceeded");
        return;
    }
    if (lua_getinfo(L, "S", ar) == 0) return;
    uintptr_t key = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline;
    uintptr_t edge = (key ^ (H.prev >> 1)) * 2654435761u;
    H.prev = key;
    counters[(edge >> 7) % COUNTERS]++;
}

/* core.budget(fn, opts, ...) -> true, ... | false, err: fn in its own coroutine with an
 * instruction budget (capped low: the fuzzer wants many runs, not long ones). */
static int l_budget(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    long instr = 10000000;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "instructions");
        if (lua_isnumber(L, -1)) instr = (long)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    if (instr > 2000000) instr = 2000000;
    int nargs = lua_gettop(L) - 2;
    if (nargs < 0) nargs = 0;
    lua_State *co = lua_newthread(L);
    lua_sethook(co, hook, LUA_MASKLINE | LUA_MASKCOUNT, 1000);
    lua_pushvalue(L, 1);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, 3 + i);
    lua_xmove(L, co, nargs + 1);
    int saved_in = H.in_budget;
    long saved_left = H.budget_left;
    H.in_budget = 1;
    H.budget_left = instr;
    int nres = 0;
    int st = lua_resume(co, L, nargs, &nres);
    H.in_budget = saved_in;
    H.budget_left = saved_left;
    if (st == LUA_OK) {
        lua_pushboolean(L, 1);
        luaL_checkstack(L, nres, "budget results");
        lua_xmove(co, L, nres);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    if (st == LUA_YIELD) lua_pushliteral(L, "the budgeted function yielded");
    else if (lua_type(co, -1) == LUA_TSTRING) lua_xmove(co, L, 1);
    else lua_pushfstring(L, "(error object is a %s value)", luaL_typename(co, -1));
    return 2;
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int open_core(lua_State *L)
{
    static const luaL_Reg f[] = { { "budget", l_budget }, { "now", l_now }, { "time", l_now }, { NULL, NULL } };
    luaL_newlib(L, f);
    return 1;
}

/* mw.fs as the stack loader sees it here: nothing exists (every path is under /nonexistent-fuzz). */
static int l_nofile(lua_State *L)
{
    lua_pushnil(L);
    lua_pushfstring(L, "cannot stat %s: No such file or directory", luaL_checkstring(L, 1));
    lua_pushliteral(L, "ENOENT");
    return 3;
}

static int open_fs(lua_State *L)
{
    static const luaL_Reg f[] = { { "stat", l_nofile }, { "read", l_nofile }, { NULL, NULL } };
    luaL_newlib(L, f);
    return 1;
}

static int l_fail(lua_State *L)
{
    fprintf(stderr, "fuzz_lua(%s): invariant broken: %s\n", DRIVER, luaL_tolstring(L, 1, NULL));
    abort();
}

/* What the sandbox must never reach: if a stack file gets here, that is an escape. */
static int l_escape(lua_State *L)
{
    fprintf(stderr, "fuzz_lua(%s): sandbox escape: %s called\n", DRIVER, lua_tostring(L, lua_upvalueindex(1)));
    abort();
}

static void deny(lua_State *L, const char *lib, const char *name)
{
    lua_getglobal(L, lib);
    lua_pushfstring(L, "%s.%s", lib, name);
    lua_pushcclosure(L, l_escape, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lua_State *L = lua_newstate(alloc, NULL);
    if (!L) abort();
    H.L = L;
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "mw.core");
    lua_pushcfunction(L, open_fs);
    lua_setfield(L, -2, "mw.fs");
    lua_pop(L, 1);
    const char *root = getenv("MW_FUZZ_ROOT");
    if (!root || !*root) root = ROOT;
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/stdlib/?.lua;%s/tests/fuzz/drivers/?.lua", root, root, root);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_fail);
    lua_setglobal(L, "fail");
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, DRIVER);
    if (lua_pcall(L, 1, 1, -3) != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz_lua: cannot load driver %s: %s\n", DRIVER, lua_tostring(L, -1));
        abort();
    }
    H.driver = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    /* modules are loaded: from here on nothing may run a program or write a file */
    deny(L, "os", "execute");
    deny(L, "os", "remove");
    deny(L, "os", "rename");
    deny(L, "os", "exit");
    deny(L, "os", "tmpname");
    deny(L, "io", "popen");
    deny(L, "io", "output");
    deny(L, "package", "loadlib");
    lua_sethook(L, hook, LUA_MASKLINE | LUA_MASKCOUNT, 1000);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = H.L;
    H.prev = 0;
    H.in_budget = 0;
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, H.driver);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg || !strstr(msg, "not enough memory")) {
            fprintf(stderr, "fuzz_lua(%s): a Lua error escaped: %s\n", DRIVER, msg ? msg : "(not a string)");
            abort();
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (++H.runs % 64 == 0 || H.heap > HEAP_LIMIT / 2) lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
