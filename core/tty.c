/* mw.tty: mw's own terminal for `mw exec -t` — raw mode while attached (restored by the
 * handle's close, which __gc and __close also run, so every way out restores it) and the
 * window size to pass on to the command's pseudo-terminal. */
#include <stdlib.h>
#include <errno.h>
#include <termios.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include "mw.h"

#define RAW_MT "mw.tty_raw"

typedef struct {
    int fd;
    struct termios saved;
} raw_t;

/* tty.raw(fd) -> handle | nil, message, code. The terminal stays raw until handle:close():
 * no echo, no line editing, no signals from ^C (the bytes go to the command), no output
 * processing — termios(3)'s cfmakeraw, as the docker CLI's raw mode (moby/term MakeRaw). */
static int tty_raw(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    mw_box *b = mw_box_new(L, RAW_MT, 0);
    raw_t *r = malloc(sizeof *r);
    if (!r) return luaL_error(L, "tty.raw: out of memory");
    r->fd = fd;
    if (tcgetattr(fd, &r->saved) != 0) {
        int e = errno;
        free(r);
        return mw_fail(L, e, "tty.raw: fd %d", fd);
    }
    struct termios t = r->saved;
    cfmakeraw(&t);
    if (tcsetattr(fd, TCSADRAIN, &t) != 0) {
        int e = errno;
        free(r);
        return mw_fail(L, e, "tty.raw: fd %d", fd);
    }
    b->p = r;
    return 1;
}

/* Puts the terminal back as it was; a second close does nothing. */
static int raw_close(lua_State *L)
{
    raw_t *r = mw_box_take(L, 1, RAW_MT);
    if (!r) return 0;
    tcsetattr(r->fd, TCSADRAIN, &r->saved);
    free(r);
    return 0;
}

static int raw_describe(lua_State *L)
{
    raw_t *r = mw_box_peek(L, 1, RAW_MT);
    if (!r) return 0;
    lua_pushfstring(L, "mw.tty_raw (fd %d raw)", r->fd);
    return 1;
}

/* tty.size(fd) -> columns, rows | nil, message, code */
static int tty_size(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return mw_fail(L, errno, "tty.size: fd %d", fd);
    lua_pushinteger(L, ws.ws_col);
    lua_pushinteger(L, ws.ws_row);
    return 2;
}

static const luaL_Reg tty_funcs[] = { { "raw", tty_raw }, { "size", tty_size }, { NULL, NULL } };
static const luaL_Reg raw_methods[] = { { "close", raw_close }, { NULL, NULL } };

int luaopen_mw_tty(lua_State *L)
{
    mw_class(L, RAW_MT, raw_methods, raw_close, raw_describe);
    luaL_newlib(L, tty_funcs);
    return 1;
}
