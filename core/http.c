/* mw.http: HTTP over libcurl's multi interface driven by the libuv loop (after curl's
 * docs/examples/multi-uv.c); requests and line/raw streams that yield the calling task. */
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <stdint.h>
#include <curl/curl.h>
#include "mw.h"
#include "linebuf.h"

#define STREAM_MT "mw.stream"
/* What one answer of http.request may hold in memory (opts.max_body changes it). A stream
 * holds at most as much unread: past it the transfer is paused (CURL_WRITEFUNC_PAUSE, which
 * keeps the chunk and hands it over again once resumed) until its reader takes some, and in
 * lines mode one line longer than that ends it ("a line longer than ..."). */
#define DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)

enum { W_NONE, W_DONE, W_HEADERS, W_DATA };
enum { M_REQUEST, M_LINES, M_RAW };

typedef struct http_ctx http_ctx;

typedef struct req {
    mw_op op;
    http_ctx *h;
    CURL *easy;
    struct curl_slist *hdrs;
    mw_linebuf in;           /* response body, unread part */
    mw_linebuf hdr;          /* raw header lines of the final response */
    long status;
    char status_line[128];   /* "HTTP/1.1 404 Not Found" of the final response */
    int mode;
    int waiting;
    int headers_done;
    int done;                /* the transfer ended (ok or not) */
    CURLcode result;
    int oom;
    size_t max_body;         /* M_REQUEST: the body's cap */
    int too_large;           /* the answer went past max_body: the transfer was stopped */
    int paused;              /* a stream: its unread part reached max_body; resumed by a read */
    int attached;            /* the easy handle is in the multi */
    int on_dirty;
    int dead;                /* freed by flush() once off the dirty list */
    int owned;               /* a stream userdata points here */
    struct req *next_dirty;
    char errbuf[CURL_ERROR_SIZE];
} req;

struct http_ctx {
    mw_rt *rt;
    CURLM *multi;
    uv_timer_t timer;
    req *dirty;
    int in_flight;
};

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    http_ctx *h;
} sock_ctx;

/* ---- requests ---- */

static void req_free(req *r)
{
    if (r->easy) {
        if (r->attached) {
            curl_multi_remove_handle(r->h->multi, r->easy);
            r->h->in_flight--;
        }
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->hdrs);
    mw_linebuf_free(&r->in);
    mw_linebuf_free(&r->hdr);
    free(r);
}

/* Frees now, or marks for flush() when the dirty list still points at it. */
static void req_release(req *r)
{
    if (r->on_dirty) r->dead = 1;
    else req_free(r);
}

static void mark_dirty(req *r)
{
    if (r->on_dirty) return;
    r->on_dirty = 1;
    r->next_dirty = r->h->dirty;
    r->h->dirty = r;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t len = size * n;
    r->headers_done = 1;
    if (r->mode == M_REQUEST && mw_linebuf_unread(&r->in) + len > r->max_body) {
        r->too_large = 1;
        return 0;           /* curl stops the transfer (CURLE_WRITE_ERROR) */
    }
    size_t unread = mw_linebuf_unread(&r->in);
    if (r->mode != M_REQUEST && unread > 0 && unread + len > r->max_body) {
        /* a reader behind: wait for it, if it has something to take (a whole line) */
        if (r->mode == M_RAW || memchr(r->in.data + r->in.off, '\n', unread)) {
            r->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        /* the partial line ends in this chunk within the cap: taken whole (the cap is passed by
         * less than one chunk, CURL_MAX_WRITE_SIZE); else one line is bigger than the cap and
         * no read would make room */
        const char *lf = memchr(p, '\n', len);
        if (!lf || unread + (size_t)(lf - p) >= r->max_body) {
            r->too_large = 1;
            return 0;
        }
    }
    if (mw_linebuf_append(&r->in, p, len) != 0) {
        r->oom = 1;
        return 0;
    }
    if (r->waiting == W_DATA || r->waiting == W_HEADERS) mark_dirty(r);
    return len;
}

/* A paused stream whose reader took some: the transfer goes on (curl hands the kept chunk
 * to on_write again, possibly before this returns). Call only after the bytes just read are
 * copied out: the append may move the buffer. */
static void resume(req *r)
{
    r->paused = 0;
    CURLcode rc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
    if (rc == CURLE_OK || r->done) return;
    /* on_write refused the kept chunk (a line over the cap, no memory). libcurl 7.88 then
     * returns the write error without waking the transfer again (lib/easy.c, curl_easy_pause),
     * and a paused transfer's socket is no longer watched: it ends here, or never. */
    if (r->attached) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        r->h->in_flight--;
        r->attached = 0;
    }
    r->done = 1;
    r->result = rc;
}

static void resume_if_room(req *r)
{
    if (!r->paused || r->done || mw_linebuf_unread(&r->in) > r->max_body / 2) return;
    resume(r);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {      /* a new response: 1xx before the real one */
        r->hdr.len = r->hdr.off = 0;
        size_t k = len;
        while (k > 0 && (p[k - 1] == '\r' || p[k - 1] == '\n')) k--;
        if (k >= sizeof r->status_line) k = sizeof r->status_line - 1;
        memcpy(r->status_line, p, k);
        r->status_line[k] = '\0';
        return len;
    }
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {  /* end of a header block */
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            r->status = code;
            r->headers_done = 1;
            if (r->waiting == W_HEADERS) mark_dirty(r);
        }
        return len;
    }
    if (mw_linebuf_append(&r->hdr, p, len) != 0) {
        r->oom = 1;
        return 0;
    }
    return len;
}

/* Pushes { lowercase-name = value } from the raw header lines. */
static void push_headers(lua_State *L, req *r)
{
    lua_newtable(L);
    size_t save = r->hdr.off;
    const char *line;
    size_t n;
    while (mw_linebuf_line(&r->hdr, &line, &n)) {
        const char *colon = memchr(line, ':', n);
        if (!colon) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *c = line; c < colon; c++) luaL_addchar(&b, (char)tolower((unsigned char)*c));
        luaL_pushresult(&b);
        const char *v = colon + 1;
        const char *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
        lua_pushlstring(L, v, (size_t)(end - v));
        lua_rawset(L, -3);
    }
    r->hdr.off = save;
}

static void push_error(lua_State *L, req *r)
{
    lua_pushnil(L);
    if (r->too_large && r->mode == M_LINES) {
        lua_pushfstring(L, "a line longer than %I bytes", (lua_Integer)r->max_body);
        lua_pushliteral(L, "too_large");
        return;
    }
    if (r->too_large) {
        if (r->max_body % (1024 * 1024) == 0)
            lua_pushfstring(L, "answer larger than %d MiB", (int)(r->max_body / (1024 * 1024)));
        else
            lua_pushfstring(L, "answer larger than %I bytes", (lua_Integer)r->max_body);
        lua_pushliteral(L, "too_large");
        return;
    }
    if (r->oom)
        lua_pushliteral(L, "out of memory");
    else if (r->errbuf[0])
        lua_pushstring(L, r->errbuf);
    else
        lua_pushstring(L, curl_easy_strerror(r->result));
    switch (r->result) {
    case CURLE_OPERATION_TIMEDOUT: lua_pushliteral(L, "timeout"); break;
    case CURLE_COULDNT_CONNECT: lua_pushliteral(L, "refused"); break;
    default: lua_pushliteral(L, "transport"); break;
    }
}

static void push_stream(lua_State *L, req *r)
{
    mw_box_new(L, STREAM_MT, 1)->p = r;
    r->owned = 1;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    push_headers(L, r);
    lua_setfield(L, -2, "headers");
    lua_setiuservalue(L, -2, 1);
}

/* What a waiting stream reader gets now, if anything: returns the number of values pushed. */
static int stream_ready(lua_State *L, req *r)
{
    const char *p;
    size_t n;
    if (r->mode == M_LINES && mw_linebuf_line(&r->in, &p, &n)) {
        lua_pushlstring(L, p, n);
        resume_if_room(r);
        return 1;
    }
    if (r->mode == M_RAW && mw_linebuf_unread(&r->in) > 0) {
        n = mw_linebuf_take(&r->in, &p);
        lua_pushlstring(L, p, n);
        resume_if_room(r);
        return 1;
    }
    if (!r->done) return 0;
    int whole = r->result == CURLE_OK && !r->oom && !r->too_large;
    if (whole && mw_linebuf_unread(&r->in) > 0) {     /* a last line without LF */
        n = mw_linebuf_take(&r->in, &p);
        lua_pushlstring(L, p, n);
        return 1;
    }
    if (whole) {
        lua_pushnil(L);
        lua_pushliteral(L, "eof");
        return 2;
    }
    push_error(L, r);
    return 3;
}

/* Delivers what a waiting task was waiting for; only called outside curl callbacks. */
static void deliver(http_ctx *h, req *r)
{
    lua_State *L = h->rt->L;
    if (!mw_task_is_waiting(&r->op)) return;
    switch (r->waiting) {
    case W_DONE:
        if (!r->done) return;
        r->waiting = W_NONE;
        if (r->result != CURLE_OK || r->oom) {
            push_error(L, r);
            mw_task_done(h->rt, &r->op, 3);
        } else {
            long code = 0;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
            lua_createtable(L, 0, 4);
            lua_pushinteger(L, code);
            lua_setfield(L, -2, "status");
            lua_pushstring(L, r->status_line);
            lua_setfield(L, -2, "status_line");
            push_headers(L, r);
            lua_setfield(L, -2, "headers");
            const char *p;
            size_t n = mw_linebuf_take(&r->in, &p);
            lua_pushlstring(L, p, n);
            lua_setfield(L, -2, "body");
            mw_task_done(h->rt, &r->op, 1);
        }
        req_release(r);
        return;
    case W_HEADERS:
        if (!r->headers_done && !r->done) return;
        r->waiting = W_NONE;
        if (!r->headers_done) {
            push_error(L, r);
            mw_task_done(h->rt, &r->op, 3);
            req_release(r);
            return;
        }
        if (!r->status) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        push_stream(L, r);
        mw_task_done(h->rt, &r->op, 1);
        return;
    case W_DATA: {
        int n = stream_ready(L, r);
        if (!n) return;
        r->waiting = W_NONE;
        mw_task_done(h->rt, &r->op, n);
        return;
    }
    }
}

static void check_done(http_ctx *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode res = m->data.result;    /* m is invalid after remove */
        curl_multi_remove_handle(h->multi, m->easy_handle);
        h->in_flight--;
        r->attached = 0;
        r->done = 1;
        r->result = res;
        mark_dirty(r);
    }
}

static void flush(http_ctx *h)
{
    while (h->dirty) {
        req *r = h->dirty;
        h->dirty = r->next_dirty;
        r->on_dirty = 0;
        if (r->dead) {
            req_free(r);
            continue;
        }
        deliver(h, r);
    }
}

static void after_action(http_ctx *h)
{
    check_done(h);
    flush(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *sc = p->data;
    http_ctx *h = sc->h;
    int flags = 0;
    /* libuv reports POLLERR (a refused connect, say) as a status and stops the handle; let
     * curl read the socket's own error so the failure says "Connection refused", not
     * "select/poll returned error" */
    if (status < 0) flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(h->multi, sc->fd, flags, &running);
    after_action(h);
}

static void on_timer(uv_timer_t *t)
{
    http_ctx *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    after_action(h);
}

static void sock_closed(uv_handle_t *hd)
{
    free(hd->data);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    http_ctx *h = userp;
    sock_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            uv_poll_stop(&sc->poll);
            curl_multi_assign(h->multi, s, NULL);
            uv_close((uv_handle_t *)&sc->poll, sock_closed);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc) return -1;
        sc->fd = s;
        sc->h = h;
        if (uv_poll_init_socket(h->rt->loop, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        curl_multi_assign(h->multi, s, sc);
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    uv_poll_start(&sc->poll, ev, on_poll);
    return 0;
}

static int on_curl_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    http_ctx *h = userp;
    if (ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

static http_ctx *ctx_get(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    if (rt->http) return rt->http;
    http_ctx *h = calloc(1, sizeof *h);
    if (!h) luaL_error(L, "http: out of memory");
    h->rt = rt;
    h->multi = curl_multi_init();
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    uv_timer_init(rt->loop, &h->timer);
    h->timer.data = h;
    rt->http = h;
    return h;
}

/* ---- building a request from the Lua options table ---- */

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);    /* the string stays alive in the options table */
    return s;
}

static double opt_number(lua_State *L, int t, const char *k, double d)
{
    lua_getfield(L, t, k);
    double v = luaL_optnumber(L, -1, d);
    lua_pop(L, 1);
    return v;
}

static req *req_new(lua_State *L, int mode)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    http_ctx *h = ctx_get(L);
    const char *url = opt_string(L, 1, "url");
    if (!url) luaL_error(L, "http: option 'url' is required");
    double max_body = opt_number(L, 1, "max_body", (double)DEFAULT_MAX_BODY);
    if (!(max_body >= 0 && max_body <= (double)SIZE_MAX / 2)) luaL_error(L, "http: bad max_body");
    req *r = calloc(1, sizeof *r);
    if (!r) luaL_error(L, "http: out of memory");
    r->h = h;
    r->max_body = (size_t)max_body;
    r->mode = mode;
    r->easy = curl_easy_init();
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");

    const char *unix_path = opt_string(L, 1, "unix");
    if (unix_path) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, unix_path);

    const char *method = opt_string(L, 1, "method");
    if (!method) method = "GET";
    size_t blen = 0;
    lua_getfield(L, 1, "body");
    const char *body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &blen);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0 || body) {
        if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
        }
    }
    lua_pop(L, 1);

    /* Expect: off — the engine answers 100-continue waits with a needless round trip */
    r->hdrs = curl_slist_append(r->hdrs, "Expect:");
    lua_getfield(L, 1, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushfstring(L, "%s: %s", luaL_checkstring(L, -2), luaL_checkstring(L, -1));
            r->hdrs = curl_slist_append(r->hdrs, lua_tostring(L, -1));
            lua_pop(L, 2);
        }
    }
    lua_pop(L, 1);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);

    double timeout = opt_number(L, 1, "timeout", 0);
    if (timeout > 0 && mode == M_REQUEST)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    double ctimeout = opt_number(L, 1, "connect_timeout", timeout > 0 && timeout < 5 ? timeout : 5);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(ctimeout * 1000));
    if (!unix_path) curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);

    lua_getfield(L, 1, "tls");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        const char *ca = opt_string(L, t, "ca"), *cert = opt_string(L, t, "cert"), *key = opt_string(L, t, "key");
        if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
        if (cert) curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
        if (key) curl_easy_setopt(e, CURLOPT_SSLKEY, key);
        lua_getfield(L, t, "verify");
        if (!lua_isnil(L, -1) && !lua_toboolean(L, -1)) {
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return r;
}

static void req_start(lua_State *L, req *r)
{
    CURLMcode rc = curl_multi_add_handle(r->h->multi, r->easy);
    if (rc != CURLM_OK) {
        req_free(r);
        luaL_error(L, "http: %s", curl_multi_strerror(rc));
    }
    r->attached = 1;
    r->h->in_flight++;
}

static void req_cancel(mw_op *op)
{
    req *r = (req *)op;
    r->waiting = W_NONE;
    if (!r->owned) req_release(r);
}

static int http_request(lua_State *L)
{
    mw_task_check_current(L, "http.request");
    req *r = req_new(L, M_REQUEST);
    r->op.cancel = req_cancel;
    r->waiting = W_DONE;
    req_start(L, r);
    return mw_task_wait(L, &r->op);
}

static int http_stream(lua_State *L)
{
    mw_task_check_current(L, "http.stream");
    lua_getfield(L, 1, "mode");
    const char *mode = luaL_optstring(L, -1, "lines");
    int m = strcmp(mode, "raw") == 0 ? M_RAW : M_LINES;
    if (m == M_LINES && strcmp(mode, "lines") != 0) luaL_error(L, "http.stream: mode must be 'lines' or 'raw'");
    lua_pop(L, 1);
    req *r = req_new(L, m);
    r->op.cancel = req_cancel;
    r->waiting = W_HEADERS;
    req_start(L, r);
    return mw_task_wait(L, &r->op);
}

/* ---- stream methods ---- */

static void stream_data_cancel(mw_op *op)
{
    ((req *)op)->waiting = W_NONE;
}

static int stream_read(lua_State *L)
{
    req *r = mw_box_peek(L, 1, STREAM_MT);
    if (!r) {                                 /* a closed stream reads as one that was closed */
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    int n = stream_ready(L, r);
    if (n) return n;
    if (r->paused && !r->done) {      /* nothing whole left to take: the transfer must go on */
        resume(r);
        n = stream_ready(L, r);
        if (n) return n;
    }
    mw_task_check_current(L, "stream:read");
    if (r->waiting != W_NONE) return luaL_error(L, "stream:read: another task is already reading");
    r->op.cancel = stream_data_cancel;
    r->waiting = W_DATA;
    return mw_task_wait(L, &r->op);
}

static int stream_close(lua_State *L)
{
    req *r = mw_box_take(L, 1, STREAM_MT);
    if (!r) return 0;
    r->owned = 0;
    if (r->waiting == W_DATA && mw_task_is_waiting(&r->op)) {
        mw_rt *rt = r->h->rt;
        lua_pushnil(rt->L);
        lua_pushliteral(rt->L, "closed");
        mw_task_done(rt, &r->op, 2);
    }
    r->waiting = W_NONE;
    req_release(r);
    return 0;
}

/* Methods first, then the answer's fields (status, headers) kept as the user value. */
static int stream_index(lua_State *L)
{
    luaL_checkudata(L, 1, STREAM_MT);
    if (luaL_getmetafield(L, 1, "methods") != LUA_TNIL) {
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
        if (!lua_isnil(L, -1)) return 1;
        lua_pop(L, 2);
    }
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int stream_describe(lua_State *L)
{
    req *r = mw_box_peek(L, 1, STREAM_MT);
    if (!r) return 0;
    lua_pushstring(L, r->done ? "mw.stream (ended)" : "mw.stream (open)");
    return 1;
}

static int http_stats(lua_State *L)
{
    mw_rt *rt = mw_rt_get(L);
    http_ctx *h = rt->http;
    lua_pushinteger(L, h ? h->in_flight : 0);
    return 1;
}

static int http_version(lua_State *L)
{
    curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_pushstring(L, v->version);
    return 1;
}

static void ctx_closed(uv_handle_t *hd)
{
    free(hd->data);
}

void mw_http_shutdown(mw_rt *rt)
{
    http_ctx *h = rt->http;
    if (!h) return;
    flush(h);
    curl_multi_cleanup(h->multi);
    uv_close((uv_handle_t *)&h->timer, ctx_closed);
    rt->http = NULL;
}

static const luaL_Reg http_funcs[] = {
    { "request", http_request }, { "stream", http_stream },
    { "in_flight", http_stats }, { "curl_version", http_version }, { NULL, NULL }
};

static const luaL_Reg stream_methods[] = {
    { "read", stream_read }, { "close", stream_close }, { NULL, NULL }
};

int luaopen_mw_http(lua_State *L)
{
    mw_class(L, STREAM_MT, stream_methods, stream_close, stream_describe);
    luaL_getmetatable(L, STREAM_MT);        /* the answer's fields come after the methods */
    if (lua_getfield(L, -1, "methods") == LUA_TNIL) {
        lua_getfield(L, -2, "__index");
        lua_setfield(L, -3, "methods");
        lua_pushcfunction(L, stream_index);
        lua_setfield(L, -3, "__index");
    }
    lua_pop(L, 2);
    luaL_newlib(L, http_funcs);
    return 1;
}
