/* A waitable with an optional timeout: the shape shared by file watches, signals and processes. */
#ifndef MW_WAITER_H
#define MW_WAITER_H
#include "mw.h"

typedef struct mw_waiter {
    mw_op op;
    mw_rt *rt;
    uv_timer_t timer;        /* the timeout of the current wait */
    int timer_open;
    int waiting;
    /* pushes the values for a waiting task onto L, or returns 0 when nothing is ready */
    int (*ready)(struct mw_waiter *w, lua_State *L);
    void (*on_closed)(struct mw_waiter *w);   /* frees the owner once libuv let go */
} mw_waiter;

void mw_waiter_init(mw_waiter *w, mw_rt *rt, int (*ready)(mw_waiter *, lua_State *));
int mw_waiter_wait(lua_State *L, mw_waiter *w, double timeout, const char *fn);
/* the same with a continuation that runs on the values when the wait ends or was not needed */
int mw_waiter_waitk(lua_State *L, mw_waiter *w, double timeout, const char *fn,
                    lua_KContext ctx, lua_KFunction k);
void mw_waiter_poke(mw_waiter *w);          /* something happened: deliver if a task waits */
void mw_waiter_close(mw_waiter *w, void (*closed)(mw_waiter *));   /* closed() runs when libuv is done */
#endif
