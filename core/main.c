/* Boots mw: one loop, one Lua state, the embedded Lua modules (bytecode), and lua/mw/cli.lua as the main task. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <curl/curl.h>
#include <lualib.h>
#include <lua-cjson.h>
#include "mw.h"
#include "embedded.h"

/* Finds mw.* modules: in MW_LUA_PATH's lua/ and stdlib/ when set (development), else embedded. */
static int searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dev = getenv("MW_LUA_PATH");
    if (dev && *dev) {
        const char *rel = luaL_gsub(L, name, ".", "/");
        static const char *const dirs[] = { "lua", "stdlib" };
        for (int i = 0; i < 2; i++) {
            lua_pushfstring(L, "%s/%s/%s.lua", dev, dirs[i], rel);
            const char *path = lua_tostring(L, -1);
            FILE *f = fopen(path, "r");
            if (!f) { lua_pop(L, 1); continue; }
            fclose(f);
            if (luaL_loadfilex(L, path, "t") != LUA_OK)
                return luaL_error(L, "error loading module '%s': %s", name, lua_tostring(L, -1));
            lua_insert(L, -2);    /* loader, path */
            return 2;
        }
    }
    for (const struct mw_embedded *e = mw_embedded; e->module; e++) {
        if (strcmp(e->module, name) != 0) continue;
        /* bytecode, compiled at build time by tools/embed.c (its debug information kept) */
        if (luaL_loadbufferx(L, e->source, e->len, e->chunkname, "b") != LUA_OK)
            return luaL_error(L, "error loading module '%s': %s", name, lua_tostring(L, -1));
        lua_pushstring(L, e->chunkname + 1);
        return 2;
    }
    lua_pushfstring(L, "no mw module '%s'", name);
    return 1;
}

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* require "mw.holderbin" -> the network holder's static binary, as a string (mw.holder) */
static int open_holderbin(lua_State *L)
{
    lua_pushlstring(L, (const char *)mw_holder, mw_holder_len);
    return 1;
}

static void setup_package(lua_State *L)
{
    preload(L, "mw.holderbin", open_holderbin);
    preload(L, "mw.core", luaopen_mw_core);
    preload(L, "mw.http", luaopen_mw_http);
    preload(L, "mw.lines", luaopen_mw_lines);
    preload(L, "mw.fs", luaopen_mw_fs);
    preload(L, "mw.signal", luaopen_mw_signal);
    preload(L, "mw.tar", luaopen_mw_tar);
    preload(L, "mw.proc", luaopen_mw_proc);
    preload(L, "mw.net", luaopen_mw_net);
    preload(L, "mw.yaml", luaopen_mw_yaml);
    preload(L, "mw.httpparse", luaopen_mw_httpparse);
    preload(L, "mw.dgram", luaopen_mw_dgram);
    preload(L, "mw.tty", luaopen_mw_tty);
    preload(L, "cjson", luaopen_cjson);
    /* searchers: preload, ours, then Lua files on package.path (empty unless a script sets it) */
    lua_getglobal(L, "package");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "searchers");
    lua_rawgeti(L, -1, 2);                 /* the Lua-file searcher */
    lua_pushcfunction(L, searcher);
    lua_rawseti(L, -3, 2);
    lua_rawseti(L, -2, 3);
    lua_pushnil(L);
    lua_rawseti(L, -2, 4);
    lua_pop(L, 2);
}

static int boot(lua_State *L)
{
    /* require("mw.cli").main(argv...) as the main task; errors reach the task logger */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "mw.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    return 1;
}

static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "mw: unprotected Lua error: %s\n", msg ? msg : "?");
    return 0;
}

/* MW_USER_MEMORY: "64M", "512K", "1G" or bytes; the ceiling for one call into user code. */
static size_t user_memory(void)
{
    const char *v = getenv("MW_USER_MEMORY");
    size_t dflt = (size_t)64 << 20;
    if (!v || !*v) return dflt;
    char *end;
    double n = strtod(v, &end);
    double unit = 1;
    if (*end == 'k' || *end == 'K') unit = 1024, end++;
    else if (*end == 'm' || *end == 'M') unit = 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G') unit = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end || !(n * unit >= 1 << 20) || n * unit > 1e15) {
        fprintf(stderr, "mw: MW_USER_MEMORY=%s is not a size of at least 1M (like 64M or 1G); using 64M\n", v);
        return dflt;
    }
    return (size_t)(n * unit);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    mw_rt rt;
    uv_loop_t loop;
    memset(&rt, 0, sizeof rt);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    loop.data = &rt;
    rt.loop = &loop;
    curl_global_init(CURL_GLOBAL_DEFAULT);

    rt.user_memory = user_memory();
    lua_State *L = lua_newstate(mw_alloc, &rt);
    if (!L) { fputs("mw: cannot create a Lua state\n", stderr); return 1; }
    lua_atpanic(L, panic);
    *(mw_rt **)lua_getextraspace(L) = &rt;
    rt.L = L;
    luaL_openlibs(L);
    mw_pattern_install(L);
    setup_package(L);
    mw_task_init(&rt);

    lua_pushcfunction(L, boot);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "mw: %s\n", lua_tostring(L, -1));
        return 1;
    }
    luaL_checkstack(L, argc + 2, "argv");
    for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
    mw_task_spawn_main(&rt, argc - 1);

    uv_run(&loop, UV_RUN_DEFAULT);
    if (rt.main_task) {
        fputs("mw: internal error: every task is waiting and nothing can wake them\n", stderr);
        rt.exit_code = 1;
    }
    fflush(stdout);
    /* Tear down in order: tasks release their operations, Lua frees its handles,
     * curl lets go of its sockets, then the loop closes what is left. */
    mw_task_shutdown(&rt);
    lua_close(L);
    mw_http_shutdown(&rt);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, close_any, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    curl_global_cleanup();
    return rt.exit_code;
}
