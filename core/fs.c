/* mw.fs: the file operations mw needs — atomic writes, directories, advisory locks and
 * inotify watches (libuv fs events) a task can wait on. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/random.h>
#include "waiter.h"

#define WATCH_MT "mw.watch"
#define LOCK_MT "mw.lock"

/* nil, "<what> <path>: <strerror>", "<ENAME>" for the errno at hand */
static int fail(lua_State *L, const char *what, const char *path)
{
    return mw_fail(L, errno, "%s %s", what, path);
}

static const char *kind_of(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "link" : S_ISSOCK(m) ? "socket"
         : S_ISFIFO(m) ? "fifo" : S_ISCHR(m) ? "char" : S_ISBLK(m) ? "block" : "other";
}

/* fs.read(path[, max]) -> text | nil, message, code.  Only a regular file is read: the open
 * does not wait for a FIFO's writer (O_NONBLOCK) and the opened descriptor is checked, so a
 * file swapped for a FIFO or a device between a check and the open cannot block the loop or
 * stream without end. max bounds the bytes read ("EFBIG" beyond it). */
static int fs_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, -1);
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return fail(L, "cannot read", path);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return fail(L, "cannot read", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        lua_pushnil(L);
        const char *k = kind_of(st.st_mode);
        lua_pushfstring(L, "cannot read %s: not a regular file (%s)", path,
                        strcmp(k, "fifo") == 0 ? "a FIFO" : strcmp(k, "char") == 0 ? "a character device"
                        : strcmp(k, "block") == 0 ? "a block device" : strcmp(k, "socket") == 0 ? "a socket"
                        : strcmp(k, "dir") == 0 ? "a directory" : "a special file");
        lua_pushliteral(L, "EINVAL");
        return 3;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char buf[8192];
    lua_Integer total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return fail(L, "cannot read", path);
        }
        if (n == 0) break;
        total += n;
        if (max >= 0 && total > max) {     /* checked as read: the file may grow after fstat */
            close(fd);
            lua_pushnil(L);
            lua_pushfstring(L, "cannot read %s: larger than %I bytes", path, max);
            lua_pushliteral(L, "EFBIG");
            return 3;
        }
        luaL_addlstring(&b, buf, (size_t)n);
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
}

/* temp name, fsync, rename: readers see the old file or the new one, never half of one.
 * A fourth argument false skips the fsync: still atomic for readers, not durable across a
 * crash; for files that describe a live process (mw run's status file, rewritten at every
 * change while a stack comes up), where an fsync on the loop's thread held every task for
 * 1-70 ms on ext4 (docs/internals.md, "Cold start"). */
static int fs_write_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    int mode = (int)luaL_optinteger(L, 3, 0600);
    int sync = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
    char tmp[4096];
    int fd = -1;
    /* An unpredictable name, created exclusively and never through a link: a name planted in
     * advance (a symlink to a file of the user's) is not written through. */
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) return fail(L, "cannot write", path);
        int k = snprintf(tmp, sizeof tmp, "%s.tmp.%d.", path, (int)getpid());
        if (k < 0 || (size_t)k + 2 * sizeof rnd >= sizeof tmp) {
            errno = ENAMETOOLONG;
            return fail(L, "cannot write", path);
        }
        for (size_t i = 0; i < sizeof rnd; i++) snprintf(tmp + k + 2 * i, 3, "%02x", rnd[i]);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0 && errno != EEXIST) return fail(L, "cannot write", tmp);
    }
    if (fd < 0) return fail(L, "cannot write", tmp);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return fail(L, "cannot write", tmp);
        }
        off += (size_t)w;
    }
    if ((sync && fsync(fd) != 0) || close(fd) != 0) {
        unlink(tmp);
        return fail(L, "cannot write", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return fail(L, "cannot rename to", path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int fs_mkdirp(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int mode = (int)luaL_optinteger(L, 2, 0700);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST) return fail(L, "cannot create", buf);
            *p = c;
            if (c == '\0') break;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int fs_list(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) return fail(L, "cannot list", path);
    lua_newtable(L);
    int i = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, i++);
    }
    closedir(d);
    return 1;
}

/* fs.stat(path[, follow]): a final symlink is described itself unless follow is true. */
static int fs_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if ((lua_toboolean(L, 2) ? stat(path, &st) : lstat(path, &st)) != 0) return fail(L, "cannot stat", path);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind_of(st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    lua_setfield(L, -2, "ino");
    return 1;
}

static int fs_remove(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (remove(path) != 0) return fail(L, "cannot remove", path);
    lua_pushboolean(L, 1);
    return 1;
}

static int fs_realpath(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *r = realpath(path, NULL);
    if (!r) return fail(L, "cannot resolve", path);
    lua_pushstring(L, r);
    free(r);
    return 1;
}

static int fs_chmod(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (chmod(path, (mode_t)luaL_checkinteger(L, 2)) != 0) return fail(L, "cannot chmod", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- advisory locks: held while the process lives, released by the kernel when it dies ---- */

typedef struct { int fd; } lock_ud;

/* fs.lock(path[, content]) -> lock | nil, "locked" | nil, err.  Creates the file when missing. */
static int fs_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n = 0;
    const char *content = luaL_optlstring(L, 2, NULL, &n);
    lock_ud *k = lua_newuserdatauv(L, sizeof *k, 0);
    k->fd = -1;                          /* closed until the lock is held */
    luaL_setmetatable(L, LOCK_MT);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return fail(L, "cannot open", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            lua_pushnil(L);
            lua_pushliteral(L, "locked");
            return 2;
        }
        errno = e;
        return fail(L, "cannot lock", path);
    }
    if (content) {
        if (ftruncate(fd, 0) != 0 || pwrite(fd, content, n, 0) != (ssize_t)n) {
            int e = errno;
            close(fd);
            errno = e;
            return fail(L, "cannot write", path);
        }
    }
    k->fd = fd;
    return 1;
}

static int lock_close(lua_State *L)
{
    lock_ud *k = luaL_checkudata(L, 1, LOCK_MT);
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    return 0;
}

static int lock_describe(lua_State *L)
{
    lock_ud *k = luaL_checkudata(L, 1, LOCK_MT);
    if (k->fd < 0) return 0;
    lua_pushliteral(L, "mw.lock (held)");
    return 1;
}

/* ---- watches ---- */

typedef struct {
    char *name;
    int events;
} fs_event;

typedef struct {
    mw_waiter w;            /* first: the waiter's op is the watch's op */
    uv_fs_event_t ev;
    fs_event *q;
    int qn, qcap;
    int error;
} watch_t;

static void watch_free(mw_waiter *mw)
{
    watch_t *w = (watch_t *)mw;
    for (int i = 0; i < w->qn; i++) free(w->q[i].name);
    free(w->q);
    free(w);
}

static int watch_ready(mw_waiter *mw, lua_State *L)
{
    watch_t *w = (watch_t *)mw;
    if (w->qn == 0) {
        if (!w->error) return 0;
        return mw_uv_fail(L, w->error, NULL);
    }
    lua_createtable(L, w->qn, 0);
    for (int i = 0; i < w->qn; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, w->q[i].name ? w->q[i].name : "");
        lua_setfield(L, -2, "name");
        lua_pushboolean(L, (w->q[i].events & UV_RENAME) != 0);
        lua_setfield(L, -2, "rename");
        lua_pushboolean(L, (w->q[i].events & UV_CHANGE) != 0);
        lua_setfield(L, -2, "change");
        lua_rawseti(L, -2, i + 1);
        free(w->q[i].name);
    }
    w->qn = 0;
    return 1;
}

static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status)
{
    watch_t *w = h->data;
    if (status < 0) {
        w->error = status;
    } else {
        /* coalesce repeats of one name: a burst of writes is one entry */
        int i;
        for (i = 0; i < w->qn; i++) {
            if ((name == NULL && w->q[i].name == NULL) ||
                (name && w->q[i].name && strcmp(name, w->q[i].name) == 0)) {
                w->q[i].events |= events;
                break;
            }
        }
        if (i == w->qn && w->qn < 4096) {
            if (w->qn == w->qcap) {
                int cap = w->qcap ? w->qcap * 2 : 8;
                fs_event *q = realloc(w->q, sizeof *q * cap);
                if (!q) return;
                w->q = q;
                w->qcap = cap;
            }
            w->q[w->qn].name = name ? strdup(name) : NULL;
            w->q[w->qn].events = events;
            w->qn++;
        }
    }
    mw_waiter_poke(&w->w);
}

static void watch_shut(watch_t *w)
{
    uv_fs_event_stop(&w->ev);
    mw_waiter_close_handle(&w->w, (uv_handle_t *)&w->ev);
    mw_waiter_close(&w->w, watch_free);
}

static int fs_watch(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    const char *path = luaL_checkstring(L, 1);
    mw_box *b = mw_box_new(L, WATCH_MT, 0);
    watch_t *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "watch: out of memory");
    mw_waiter_init(&w->w, rt, watch_ready);
    uv_fs_event_init(rt->loop, &w->ev);    /* cannot fail on Linux: the inotify fd is made on start */
    mw_waiter_own(&w->w, (uv_handle_t *)&w->ev);
    int rc = uv_fs_event_start(&w->ev, on_fs_event, path, 0);
    if (rc != 0) {
        watch_shut(w);
        return mw_uv_fail(L, rc, "cannot watch %s", path);
    }
    b->p = w;
    return 1;
}

static int watch_wait(lua_State *L)
{
    watch_t *w = mw_box_check(L, 1, WATCH_MT);
    return mw_waiter_wait(L, &w->w, luaL_optnumber(L, 2, -1), "watch:wait");
}

static int watch_close(lua_State *L)
{
    watch_t *w = mw_box_take(L, 1, WATCH_MT);
    if (w) watch_shut(w);
    return 0;
}

static int watch_describe(lua_State *L)
{
    if (!mw_box_peek(L, 1, WATCH_MT)) return 0;
    lua_pushliteral(L, "mw.watch (open)");
    return 1;
}

/* fs.cwd() -> the working directory (physical, as getcwd) | nil, message, code */
static int fs_cwd(lua_State *L)
{
    char buf[4096];
    size_t n = sizeof buf;
    int r = uv_cwd(buf, &n);
    if (r < 0) return mw_uv_fail(L, r, "cannot read the working directory");
    lua_pushlstring(L, buf, n);
    return 1;
}

static const luaL_Reg fs_funcs[] = {
    { "read", fs_read },       { "write_atomic", fs_write_atomic }, { "mkdirp", fs_mkdirp },
    { "list", fs_list },       { "stat", fs_stat },                 { "remove", fs_remove },
    { "realpath", fs_realpath }, { "chmod", fs_chmod },             { "lock", fs_lock },
    { "watch", fs_watch },     { "cwd", fs_cwd },                   { NULL, NULL }
};

static const luaL_Reg watch_methods[] = {
    { "wait", watch_wait }, { "close", watch_close }, { NULL, NULL }
};

static const luaL_Reg lock_methods[] = { { "close", lock_close }, { NULL, NULL } };

int luaopen_mw_fs(lua_State *L)
{
    mw_class(L, WATCH_MT, watch_methods, watch_close, watch_describe);
    mw_class(L, LOCK_MT, lock_methods, lock_close, lock_describe);
    luaL_newlib(L, fs_funcs);
    return 1;
}
