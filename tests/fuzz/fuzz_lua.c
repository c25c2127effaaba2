/* libFuzzer harness for mw's pure-Lua parsers: one Lua state with the source tree on
 * package.path, a driver (tests/fuzz/drivers/DRIVER.lua) that returns function(data), mw's
 * real mw.core (core/task.c, linked in: its budget, memory ceiling and guarded string
 * functions are what is fuzzed), and Lua line coverage fed to libFuzzer as extra counters
 * (the Debian liblua is not instrumented, so without them the fuzzer would be blind to which
 * Lua paths an input reached). Build with -DDRIVER='"frames"' and -DROOT='"/path/to/tree"'
 * (scripts/fuzz.sh). A Lua error escaping the driver, or fail(msg), is a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "mw.h"

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
    mw_rt rt;              /* the runtime core/task.c's budget reads and writes */
    uv_loop_t loop;
    int driver;            /* registry ref of the driver function */
    uintptr_t prev;        /* last line's key, for edge-like coverage */
    unsigned long runs;
} harness;

/* mw's allocator (core/task.c), with a ceiling for the whole state on top. */
static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mw_rt *rt = ud;
    size_t old = ptr ? osize : 0;
    if (nsize > old && rt->mem_used - old + nsize > HEAP_LIMIT) return NULL;
    return mw_alloc(ud, ptr, osize, nsize);
}

/* Coverage of mw's own Lua (outside budgets: the budget puts its own hook on user code). */
static void hook(lua_State *L, lua_Debug *ar)
{
    if (lua_getinfo(L, "S", ar) == 0) return;
    uintptr_t key = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline;
    uintptr_t edge = (key ^ (harness.prev >> 1)) * 2654435761u;
    harness.prev = key;
    counters[(edge >> 7) % COUNTERS]++;
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
    mw_rt *rt = &harness.rt;
    uv_loop_init(&harness.loop);
    rt->loop = &harness.loop;
    rt->user_memory = (size_t)64 << 20;
    lua_State *L = lua_newstate(alloc, rt);
    if (!L) abort();
    *(mw_rt **)lua_getextraspace(L) = rt;
    rt->L = L;
    luaL_openlibs(L);
    mw_pattern_install(L);
    mw_task_init(rt);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_mw_core);
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
    harness.driver = luaL_ref(L, LUA_REGISTRYINDEX);
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
    lua_sethook(L, hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = harness.rt.L;
    harness.prev = 0;
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, harness.driver);
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
    if (++harness.runs % 64 == 0 || harness.rt.mem_used > HEAP_LIMIT / 2) lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
