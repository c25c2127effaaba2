/* mw.core: tasks (coroutines) on the libuv loop, the one resume function, sleep, join,
 * cancel, and the instruction/time budget for calls into user code. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include "mw.h"

enum { T_QUEUED, T_WAITING, T_RUNNING, T_DONE, T_FAILED, T_CANCELLED };

typedef struct join_op {
    mw_op op;
    mw_task *target;
    struct join_op *next;
} join_op;

struct mw_task {
    mw_rt *rt;
    lua_State *co;
    int co_ref;          /* anchors the coroutine while the task lives */
    int self_ref;        /* anchors the userdata while the task lives */
    int results_ref;     /* after the end: a table { n =, ... } or the error message */
    mw_op *pending;
    join_op *joiners;
    int state;
    char name[64];
};

typedef struct {
    mw_op op;
    uv_timer_t timer;
} sleep_op;

#define TASK_MT "mw.task"

mw_rt *mw_rt_get(lua_State *L)
{
    return *(mw_rt **)lua_getextraspace(L);
}

void mw_handle_opened(mw_rt *rt) { rt->handles++; }
void mw_close(mw_rt *rt, uv_handle_t *h, uv_close_cb cb)
{
    rt->handles--;
    uv_close(h, cb);
}

int mw_ref(mw_rt *rt, lua_State *L)
{
    rt->anchored++;
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void mw_unref(mw_rt *rt, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
    rt->anchored--;
    luaL_unref(rt->L, LUA_REGISTRYINDEX, ref);
}

/* ---- the ready queue: completions recorded by callbacks, resumed by drain() ---- */

static void push_task(mw_rt *rt, mw_task *t)
{
    lua_rawgeti(rt->L, LUA_REGISTRYINDEX, t->self_ref);
}

static void drain(uv_idle_t *idle);

/* Queues t to be resumed with the n values on top of rt->L (popped). */
static void queue_resume(mw_rt *rt, mw_task *t, int n)
{
    lua_State *L = rt->L;
    int base = lua_gettop(L) - n;
    lua_createtable(L, n + 1, 1);
    lua_insert(L, base + 1);
    for (int i = n; i >= 1; i--) lua_rawseti(L, base + 1, i + 1);
    push_task(rt, t);
    lua_rawseti(L, base + 1, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, base + 1, "n");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ready_ref);
    lua_insert(L, -2);
    lua_rawseti(L, -2, rt->ready_tail++);
    lua_pop(L, 1);
    t->state = T_QUEUED;
    if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, drain);
}

void mw_task_done(mw_rt *rt, mw_op *op, int n)
{
    mw_task *t = op->task;
    if (!t || t->pending != op) {       /* nobody waits any more: drop the values */
        lua_pop(rt->L, n);
        return;
    }
    t->pending = NULL;
    queue_resume(rt, t, n);
}

int mw_task_is_waiting(mw_op *op)
{
    return op->task && op->task->pending == op;
}

static mw_task *task_of(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    if (lua_pushthread(L)) {            /* the main thread is never a task */
        lua_pop(L, 1);
        return NULL;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
    lua_insert(L, -2);
    lua_rawget(L, -2);
    mw_task *t = lua_isnil(L, -1) ? NULL : luaL_checkudata(L, -1, TASK_MT);
    lua_pop(L, 2);
    return t;
}

mw_task *mw_task_check_current(lua_State *L, const char *fn)
{
    mw_task *t = task_of(L);
    if (!t || !lua_isyieldable(L)) luaL_error(L, "%s: called outside a task", fn);
    return t;
}

int mw_task_waitk(lua_State *L, mw_op *op, lua_KContext ctx, lua_KFunction k)
{
    mw_task *t = task_of(L);
    op->task = t;
    t->pending = op;
    t->state = T_WAITING;
    return lua_yieldk(L, 0, ctx, k);
}

int mw_task_wait(lua_State *L, mw_op *op)
{
    return mw_task_waitk(L, op, 0, NULL);
}

static int push_outcome(lua_State *L, mw_task *t);

static void wake_joiners(mw_rt *rt, mw_task *t)
{
    while (t->joiners) {
        join_op *j = t->joiners;
        t->joiners = j->next;
        int n = push_outcome(rt->L, t);
        mw_task_done(rt, &j->op, n);
        free(j);
    }
}

/* Ends a task: keeps its results, drops its anchors, wakes whoever joined it. */
static void finish(mw_rt *rt, mw_task *t, int state)
{
    lua_State *L = rt->L;
    t->state = state;
    t->results_ref = mw_ref(rt, L);              /* results table or message on top */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    mw_unref(rt, t->co_ref);
    t->co_ref = LUA_NOREF;
    t->co = NULL;
    rt->live_tasks--;
    wake_joiners(rt, t);
    if (t == rt->main_task) {
        if (state == T_DONE) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, t->results_ref);
            lua_rawgeti(L, -1, 1);
            rt->exit_code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
            lua_pop(L, 2);
        } else {
            rt->exit_code = 1;
        }
        rt->main_task = NULL;
        rt->stopping = 1;
        uv_stop(rt->loop);
    }
    mw_unref(rt, t->self_ref);
    t->self_ref = LUA_NOREF;
}

static void close_coroutine(mw_rt *rt, lua_State *co);

static void resume(mw_rt *rt, mw_task *t, int nargs)
{
    lua_State *L = rt->L;
    int nres = 0;
    t->state = T_RUNNING;
    int st = lua_resume(t->co, L, nargs, &nres);
    if (st == LUA_YIELD) {
        lua_pop(t->co, nres);
        if (t->state == T_RUNNING) queue_resume(rt, t, 0);   /* a bare coroutine.yield */
        return;
    }
    if (st == LUA_OK) {
        lua_createtable(L, nres, 1);
        for (int i = nres; i >= 1; i--) {
            lua_xmove(t->co, L, 1);
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, nres);
        lua_setfield(L, -2, "n");
        finish(rt, t, T_DONE);
        return;
    }
    const char *msg = lua_tostring(t->co, -1);
    if (!msg) msg = luaL_typename(t->co, -1);
    luaL_traceback(L, t->co, msg, 0);
    fprintf(stderr, "mw: task %s failed: %s\n", t->name, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
    lua_pushstring(L, msg);
    /* a coroutine dead by an error is not unwound (Lua 5.4 manual 3.3.8): its pending
     * to-be-closed variables are closed here, as a cancel closes them */
    close_coroutine(rt, t->co);
    finish(rt, t, T_FAILED);
}

static void drain(uv_idle_t *idle)
{
    mw_rt *rt = idle->data;
    lua_State *L = rt->L;
    int end = rt->ready_tail;       /* what was queued before now; later entries wait a turn */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ready_ref);
    while (rt->ready_head < end) {
        int q = lua_gettop(L);
        lua_rawgeti(L, q, rt->ready_head);
        lua_pushnil(L);
        lua_rawseti(L, q, rt->ready_head++);
        lua_rawgeti(L, -1, 1);
        mw_task *t = lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (t->state != T_QUEUED || !t->co) {
            lua_settop(L, q);
            continue;
        }
        lua_getfield(L, -1, "n");
        int n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 1, "resume");
        luaL_checkstack(t->co, n + 1, "resume");
        for (int i = 1; i <= n; i++) lua_rawgeti(L, q + 1, i + 1);
        lua_xmove(L, t->co, n);
        lua_settop(L, q);
        resume(rt, t, n);
        lua_settop(L, q);
        if (rt->stopping) break;
    }
    lua_pop(L, 1);
    if (rt->ready_head == rt->ready_tail) {
        uv_idle_stop(&rt->idle);
        rt->ready_head = rt->ready_tail = 1;
    }
}

/* ---- Lua functions ---- */

static mw_task *new_task(lua_State *L, mw_rt *rt, const char *name)
{
    lua_State *co = lua_newthread(L);
    mw_task *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->rt = rt;
    t->co = co;
    t->results_ref = LUA_NOREF;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "task");
    luaL_setmetatable(L, TASK_MT);
    /* stack: thread, ud */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    t->self_ref = mw_ref(rt, L);
    lua_pushvalue(L, -2);
    t->co_ref = mw_ref(rt, L);
    lua_remove(L, -2);             /* leave the userdata */
    rt->live_tasks++;
    return t;
}

static int core_spawn(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *name = luaL_optstring(L, 2, "task");
    int nargs = lua_gettop(L) - 2;
    if (nargs < 0) nargs = 0;
    mw_task *t = new_task(L, rt, name);            /* ud on top */
    lua_pushvalue(L, 1);
    lua_xmove(L, t->co, 1);
    /* queue_resume works on rt->L: copy the args there */
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, 3 + i);
    if (L != rt->L) lua_xmove(L, rt->L, nargs);
    queue_resume(rt, t, nargs);
    return 1;
}

mw_task *mw_task_spawn_main(mw_rt *rt, int nargs)
{
    lua_State *L = rt->L;
    int fn = lua_gettop(L) - nargs;
    mw_task *t = new_task(L, rt, "main");
    lua_pushvalue(L, fn);
    lua_xmove(L, t->co, 1);
    for (int i = 1; i <= nargs; i++) lua_pushvalue(L, fn + i);
    queue_resume(rt, t, nargs);
    lua_pop(L, 1 + nargs + 1);
    rt->main_task = t;
    return t;
}

static void sleep_closed(uv_handle_t *h)
{
    sleep_op *s = h->data;
    free(s);
}

static void sleep_fired(uv_timer_t *tm)
{
    sleep_op *s = tm->data;
    mw_task_done(tm->loop->data, &s->op, 0);
    mw_close(tm->loop->data, (uv_handle_t *)tm, sleep_closed);
}

static void sleep_cancel(mw_op *op)
{
    sleep_op *s = (sleep_op *)op;
    uv_timer_stop(&s->timer);
    mw_close(s->timer.loop->data, (uv_handle_t *)&s->timer, sleep_closed);
}

static int core_sleep(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    double sec = luaL_checknumber(L, 1);
    mw_task_check_current(L, "sleep");
    if (sec < 0) sec = 0;
    sleep_op *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "sleep: out of memory");
    s->op.cancel = sleep_cancel;
    uv_timer_init(rt->loop, &s->timer);
    mw_handle_opened(rt);
    s->timer.data = s;
    uv_timer_start(&s->timer, sleep_fired, (uint64_t)(sec * 1000.0 + 0.5), 0);
    return mw_task_wait(L, &s->op);
}

static int core_yield(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    mw_task *t = mw_task_check_current(L, "yield");
    queue_resume(rt, t, 0);
    return lua_yield(L, 0);
}

static int core_now(lua_State *L)
{
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static int core_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int core_current(lua_State *L)
{
    mw_task *t = task_of(L);
    if (!t) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    return 1;
}

static int core_in_task(lua_State *L)
{
    lua_pushboolean(L, task_of(L) != NULL && lua_isyieldable(L));
    return 1;
}

static void join_cancel(mw_op *op)
{
    join_op *j = (join_op *)op;
    for (join_op **p = &j->target->joiners; *p; p = &(*p)->next) {
        if (*p == j) { *p = j->next; break; }
    }
    free(j);
}

static int push_outcome(lua_State *L, mw_task *t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->results_ref);
    if (t->state != T_DONE) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    int tbl = lua_gettop(L);
    lua_getfield(L, tbl, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 1, "join");
    lua_pushboolean(L, 1);
    for (int i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
    lua_remove(L, tbl);
    return n + 1;
}

static int core_join(lua_State *L)
{
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    mw_task *self = mw_task_check_current(L, "join");
    if (t == self) return luaL_error(L, "join: a task cannot join itself");
    if (t->state >= T_DONE) return push_outcome(L, t);
    join_op *j = calloc(1, sizeof *j);
    if (!j) return luaL_error(L, "join: out of memory");
    j->op.cancel = join_cancel;
    j->target = t;
    j->next = t->joiners;
    t->joiners = j;
    return mw_task_wait(L, &j->op);
}

static void close_coroutine(mw_rt *rt, lua_State *co)
{
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, rt->L);
#else
    (void)rt;
    lua_resetthread(co);
#endif
}

static void cancel_task(mw_rt *rt, mw_task *t)
{
    if (t->pending) {
        mw_op *op = t->pending;
        t->pending = NULL;
        op->task = NULL;
        op->cancel(op);
    }
    close_coroutine(rt, t->co);
    lua_pushstring(rt->L, "cancelled");
    finish(rt, t, T_CANCELLED);
}

static int core_cancel(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    if (t->state >= T_DONE) { lua_pushboolean(L, 0); return 1; }
    if (t->co == L || t->state == T_RUNNING)
        return luaL_error(L, "cancel: a task cannot cancel itself (return instead)");
    cancel_task(rt, t);
    lua_pushboolean(L, 1);
    return 1;
}

static int core_exit(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    rt->exit_code = (int)luaL_optinteger(L, 1, 0);
    rt->stopping = 1;
    uv_stop(rt->loop);
    return 0;
}

static int core_stats(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, rt->handles);
    lua_setfield(L, -2, "handles");
    lua_pushinteger(L, rt->anchored);
    lua_setfield(L, -2, "anchored");
    lua_pushinteger(L, rt->live_tasks);
    lua_setfield(L, -2, "tasks");
    return 1;
}

/* ---- the budget: Redis-style count hook that re-arms every instruction once tripped ---- */

#define BUDGET_STEP 1000

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    mw_rt *rt = mw_rt_get(L);
    if (!rt->budget_active) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    if (!rt->budget_killed) {
        rt->budget_left -= BUDGET_STEP;
        if (rt->budget_left > 0 && uv_hrtime() < rt->budget_deadline) return;
        rt->budget_killed = 1;
    }
    lua_sethook(L, budget_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
    luaL_error(L, "budget exceeded");
}

static int core_budget(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    double instr = 1e7, secs = 0.5, mem = (double)rt->user_memory;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "instructions");
        instr = luaL_optnumber(L, -1, instr);
        lua_getfield(L, 2, "seconds");
        secs = luaL_optnumber(L, -1, secs);
        lua_getfield(L, 2, "memory");
        mem = luaL_optnumber(L, -1, mem);
        lua_pop(L, 3);
    }
    if (!(mem >= 1)) mem = 1;
    int nargs = lua_gettop(L) - 2;
    if (nargs < 0) nargs = 0;
    /* save an outer budget: budgets nest */
    int s_active = rt->budget_active, s_killed = rt->budget_killed;
    long s_left = rt->budget_left;
    uint64_t s_deadline = rt->budget_deadline;
    size_t s_limit = rt->mem_limit;

    lua_State *co = lua_newthread(L);
    int co_idx = lua_gettop(L);
    lua_pushvalue(L, 1);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, 3 + i);
    lua_xmove(L, co, nargs + 1);
    rt->budget_active = 1;
    rt->budget_killed = 0;
    rt->budget_left = (long)instr;
    rt->budget_deadline = uv_hrtime() + (uint64_t)(secs * 1e9);
    /* The memory ceiling counts from here: what mw holds is not the user's.  A nested
     * budget never loosens the outer one. */
    size_t limit = mem >= (double)(SIZE_MAX - rt->mem_used) ? SIZE_MAX : rt->mem_used + (size_t)mem;
    if (s_limit && s_limit < limit) limit = s_limit;
    rt->mem_limit = limit;
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
    int nres = 0;
    int st = lua_resume(co, L, nargs, &nres);
    int killed = rt->budget_killed;
    rt->mem_limit = s_limit;
    rt->budget_active = s_active;
    rt->budget_killed = s_killed;
    rt->budget_left = s_left;
    rt->budget_deadline = s_deadline;
    if (st == LUA_OK) {
        luaL_checkstack(L, nres + 1, "budget results");
        lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        lua_remove(L, co_idx);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    if (killed)
        lua_pushfstring(L, "budget exceeded (%I instructions or %f s)", (lua_Integer)instr, secs);
    else if (st == LUA_YIELD)
        lua_pushliteral(L, "user code must not wait or yield");
    else if (st == LUA_ERRMEM)
        lua_pushfstring(L, "out of memory (user code may use %d MiB more; MW_USER_MEMORY)",
                        (int)(mem / 1048576));
    else {
        /* lua_tostring, not luaL_tolstring: a __tostring would be user code outside the budget */
        const char *msg = lua_tostring(co, -1);
        if (msg) lua_pushstring(L, msg);
        else lua_pushfstring(L, "(error object is a %s value)", luaL_typename(co, -1));
    }
    close_coroutine(rt, co);
    lua_remove(L, co_idx);
    return 2;
}

/* ---- small OS helpers the orchestrator needs ---- */

/* core.memory() -> bytes the Lua state holds, the current ceiling (or nil), the default
 * ceiling of a budget */
static int core_memory(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    lua_pushinteger(L, (lua_Integer)rt->mem_used);
    if (rt->mem_limit) lua_pushinteger(L, (lua_Integer)rt->mem_limit);
    else lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)rt->user_memory);
    return 3;
}

/* core.in_budget() -> whether user code is running (a budget is active) */
static int core_in_budget(lua_State *L)
{
    lua_pushboolean(L, mw_rt_get(L)->budget_active);
    return 1;
}

static int core_pid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int core_hostname(lua_State *L)
{
    char buf[256];
    if (gethostname(buf, sizeof buf) != 0) strcpy(buf, "localhost");
    buf[sizeof buf - 1] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

static int core_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int core_kill(lua_State *L)
{
    static const char *const names[] = { "TERM", "KILL", "INT", "HUP", "STOP", "CONT", "0", NULL };
    static const int sigs[] = { SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGSTOP, SIGCONT, 0 };
    int pid = (int)luaL_checkinteger(L, 1);
    int sig = sigs[luaL_checkoption(L, 2, "TERM", names)];
    if (kill(pid, sig) != 0) return mw_fail(L, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int core_versions(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
    lua_pushstring(L, uv_version_string());
    lua_setfield(L, -2, "uv");
    return 1;
}

/* core.hash(s) -> 16 hex digits of FNV-1a 64: config hashes and build-context identities */
static int core_hash(lua_State *L)
{
    size_t n;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
    lua_pushstring(L, buf);
    return 1;
}

static const char *const state_names[] = { "queued", "waiting", "running", "done", "failed", "cancelled" };

/* A task is never closed: it says its name and state. */
static int task_describe(lua_State *L)
{
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    lua_pushfstring(L, "mw.task %s (%s)", t->name, state_names[t->state]);
    return 1;
}

/* Drops the results nobody joined; the task itself lives on while it runs. */
static int task_gc(lua_State *L)
{
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    if (t->results_ref != LUA_NOREF) mw_unref(t->rt, t->results_ref);
    t->results_ref = LUA_NOREF;
    return 0;
}

static int task_name(lua_State *L)
{
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    lua_pushstring(L, t->name);
    return 1;
}

static int task_status(lua_State *L)
{
    mw_task *t = luaL_checkudata(L, 1, TASK_MT);
    lua_pushstring(L, state_names[t->state]);
    return 1;
}

static void task_metatable(lua_State *L);

/* ---- set-up and shutdown, called by main.c ---- */

void mw_task_init(mw_rt *rt)
{
    lua_State *L = rt->L;
    lua_newtable(L);
    rt->ready_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    rt->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rt->ready_head = rt->ready_tail = 1;
    task_metatable(L);
    uv_idle_init(rt->loop, &rt->idle);
    rt->idle.data = rt;
}

/* Cancels every live task so their pending operations release what they hold. */
void mw_task_shutdown(mw_rt *rt)
{
    lua_State *L = rt->L;
    for (;;) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
        lua_pushnil(L);
        if (!lua_next(L, -2)) { lua_pop(L, 1); break; }
        mw_task *t = lua_touserdata(L, -1);
        lua_pop(L, 3);
        if (t->state == T_RUNNING) {   /* cannot happen outside a resume; be safe */
            t->state = T_WAITING;
        }
        cancel_task(rt, t);
    }
    uv_close((uv_handle_t *)&rt->idle, NULL);
}

static const luaL_Reg core_funcs[] = {
    { "spawn", core_spawn },       { "sleep", core_sleep },     { "yield", core_yield },
    { "now", core_now },           { "time", core_time },       { "current", core_current },
    { "in_task", core_in_task },   { "join", core_join },       { "cancel", core_cancel },
    { "exit", core_exit },         { "stats", core_stats },     { "budget", core_budget },
    { "pid", core_pid },           { "hostname", core_hostname }, { "isatty", core_isatty },
    { "kill", core_kill },         { "cond", mw_cond_new },     { "hash", core_hash },
    { "memory", core_memory },     { "in_budget", core_in_budget },       { "versions", core_versions },
    { NULL, NULL }
};

static const luaL_Reg task_methods[] = {
    { "name", task_name }, { "status", task_status }, { NULL, NULL }
};

static void task_metatable(lua_State *L)
{
    mw_class(L, TASK_MT, task_methods, task_gc, task_describe);
}

/* Lua's allocator, counting: while user code runs under a budget, an allocation that would
 * take the state past rt->mem_limit fails, and Lua raises "not enough memory" in that code
 * (after one emergency collection).  Shrinking and freeing never fail. */
void *mw_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mw_rt *rt = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        rt->mem_used -= old;
        return NULL;
    }
    if (nsize > old && rt->mem_limit && rt->mem_used - old + nsize > rt->mem_limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) rt->mem_used = rt->mem_used - old + nsize;
    return p;
}

int luaopen_mw_core(lua_State *L)
{
    task_metatable(L);
    mw_cond_metatable(L);
    luaL_newlib(L, core_funcs);
    return 1;
}
