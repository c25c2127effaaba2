/* A waitable with an optional timeout: the shape shared by conds, file watches, signals,
 * processes, pid watches, sockets and datagram receivers. */
#ifndef MW_WAITER_H
#define MW_WAITER_H
#include "mw.h"

/* The owner's struct starts with its mw_waiter, so a pointer to either is a pointer to both
 * and the owner's libuv handles carry it as their data. */
typedef struct mw_waiter {
    mw_op op;
    mw_rt *rt;
    uv_timer_t timer;        /* the timeout of the current wait */
    int timer_open;
    int waiting;
    /* pushes the values for a waiting task onto L, or returns 0 when nothing is ready */
    int (*ready)(struct mw_waiter *w, lua_State *L);
    /* frees the owner once libuv let go of the timer and every handle given to
     * mw_waiter_close_handle */
    void (*release)(struct mw_waiter *w);
    int closing;             /* handles whose close callback is still to come */
} mw_waiter;

void mw_waiter_init(mw_waiter *w, mw_rt *rt, int (*ready)(mw_waiter *, lua_State *));
/* An owner's libuv handle, initialised: its data becomes w and it counts as open. */
void mw_waiter_own(mw_waiter *w, uv_handle_t *h);
int mw_waiter_wait(lua_State *L, mw_waiter *w, double timeout, const char *fn);
/* the same with a continuation that runs on the values when the wait ends or was not needed */
int mw_waiter_waitk(lua_State *L, mw_waiter *w, double timeout, const char *fn,
                    lua_KContext ctx, lua_KFunction k);
/* the current wait ends in at most timeout seconds (sooner if it already would) */
void mw_waiter_shorten(mw_waiter *w, double timeout);
void mw_waiter_poke(mw_waiter *w);          /* something happened: deliver if a task waits */
/* Closing: first each handle the owner holds (stopped as its kind needs), then the waiter,
 * all in one go; a waiting task gets nil, "closed" and release(w) runs when libuv is done. */
void mw_waiter_close_handle(mw_waiter *w, uv_handle_t *h);
void mw_waiter_close(mw_waiter *w, void (*release)(mw_waiter *));
void mw_waiter_free(mw_waiter *w);          /* a release for owners with nothing else to free */
#endif
