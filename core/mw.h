/* The runtime every core module shares: one loop, one Lua state, the task scheduler's hooks. */
#ifndef MW_H
#define MW_H

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

typedef struct mw_rt mw_rt;
typedef struct mw_op mw_op;
typedef struct mw_task mw_task;

/* A pending operation of a waiting task.  The module that owns it embeds it in its own
 * request struct; cancel() must stop the I/O and arrange for that struct to be freed. */
struct mw_op {
    void (*cancel)(mw_op *op);
    mw_task *task;
};

struct mw_rt {
    uv_loop_t *loop;
    lua_State *L;
    uv_idle_t idle;          /* keeps the loop turning while completions wait */
    int ready_ref;           /* registry: queue of { task, results } to resume */
    int ready_head, ready_tail;
    int tasks_ref;           /* registry: thread -> task userdata, for live tasks */
    int handles;             /* libuv handles modules hold open for Lua */
    int anchored;            /* registry references held on behalf of Lua */
    int live_tasks;
    mw_task *main_task;      /* its return value is the exit code */
    int stopping;
    int exit_code;
    /* budget for calls into user code (core.budget) */
    int budget_active;
    long budget_left;
    uint64_t budget_deadline;
    int budget_killed;
    /* memory of the Lua state (core/main.c's allocator); while a budget is active an
     * allocation that would pass mem_limit fails, 0: no limit */
    size_t mem_used;
    size_t mem_limit;
    size_t user_memory;      /* the ceiling a budget gets: MW_USER_MEMORY, default 64 MiB */
    lua_CFunction string_fns[4];   /* string.find/match/gmatch/gsub as lstrlib has them */
    /* the http module's multi handle and its timer; owned by http.c */
    void *http;
};

mw_rt *mw_rt_get(lua_State *L);

/* Task side, for modules (core/task.c). */
mw_task *mw_task_check_current(lua_State *L, const char *fn);   /* raises outside a task */
int mw_task_wait(lua_State *L, mw_op *op);                      /* returns lua_yield(...) */
int mw_task_waitk(lua_State *L, mw_op *op, lua_KContext ctx, lua_KFunction k);
void mw_task_done(mw_rt *rt, mw_op *op, int nresults);          /* pops nresults from rt->L */
int mw_task_is_waiting(mw_op *op);

/* Handle accounting: modules count the libuv handles they open for Lua; a handle stops
 * counting when its close is asked for (its memory still lives until the close callback). */
void mw_handle_opened(mw_rt *rt);
void mw_close(mw_rt *rt, uv_handle_t *h, uv_close_cb cb);
/* A userdata class "mw.<type>": methods as __index, one function for __gc and __close
 * (handles may be closed twice), and __tostring from describe, which pushes the open
 * handle's description and returns 1, or returns 0 for a closed one: the class then says
 * "mw.<type> (closed)". describe may be NULL: the class's name is all there is to say. */
void mw_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
              lua_CFunction describe);

/* A handle's userdata: a pointer to its C memory, NULL while closed.  A handle is pushed
 * closed before anything is acquired (a failure half-way leaves nothing half-open), then
 * opened by setting p; its close takes p back exactly once. */
typedef struct { void *p; } mw_box;
mw_box *mw_box_new(lua_State *L, const char *name, int nuv);     /* pushes a closed handle */
void *mw_box_check(lua_State *L, int idx, const char *name);     /* raises on a closed one */
void *mw_box_take(lua_State *L, int idx, const char *name);      /* NULL when already closed */
void *mw_box_peek(lua_State *L, int idx, const char *name);      /* NULL when closed */

/* The error convention: trouble in the world returns nil, message, code, where code is
 * libuv's name for the error ("ENOENT", "ECONNREFUSED"...).  mw_err_name takes a libuv
 * error (negative), mw_errno_name an errno; mw_fail pushes the three values for an errno. */
const char *mw_err_name(int uv_err);
const char *mw_errno_name(int e);
int mw_fail(lua_State *L, int e, const char *fmt, ...);
int mw_uv_fail(lua_State *L, int uv_err, const char *fmt, ...);

/* The Lua allocator, counting rt->mem_used; past rt->mem_limit (set while user code runs
 * under a budget) a growing allocation fails.  ud is the mw_rt. */
void *mw_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

int mw_ref(mw_rt *rt, lua_State *L);           /* luaL_ref in the registry, counted */
void mw_unref(mw_rt *rt, int ref);

int mw_cond_new(lua_State *L);
void mw_cond_metatable(lua_State *L);

int luaopen_mw_core(lua_State *L);
int luaopen_mw_http(lua_State *L);
int luaopen_mw_lines(lua_State *L);
int luaopen_mw_fs(lua_State *L);
int luaopen_mw_signal(lua_State *L);
int luaopen_mw_tar(lua_State *L);
int luaopen_mw_proc(lua_State *L);
int luaopen_mw_net(lua_State *L);
int luaopen_mw_yaml(lua_State *L);
int luaopen_mw_httpparse(lua_State *L);
int luaopen_mw_dgram(lua_State *L);
int luaopen_mw_tty(lua_State *L);

void mw_http_shutdown(mw_rt *rt);
void mw_task_init(mw_rt *rt);
void mw_pattern_install(lua_State *L);
void mw_task_shutdown(mw_rt *rt);
mw_task *mw_task_spawn_main(mw_rt *rt, int nargs);   /* function and args on rt->L */

#endif
