/* mw.tar: packs a directory into an uncompressed tar build context, honouring .dockerignore. */
/* Our own writer rather than libarchive: a ustar+pax writer is ~200 lines and avoids a
 * dependency that pulls in a dozen compression libraries. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "mw.h"
#include "tar.h"

#define BOX_MT "mw.tar.buffer"
#define BLOCK 512
#define OCTAL11 077777777777ULL     /* largest value of a 12-byte ustar field: 8 GiB - 1 */
#define NAME_MAX_USTAR 100
/* A .dockerignore is a list of patterns: real ones are a few KiB; 1 MiB is far past any. */
#define MW_IGNORE_MAX (1024 * 1024)

/* ---- the matcher: pure C, no Lua ---- */

enum { T_LIT, T_ONE, T_CLASS, T_STAR, T_DIRS, T_REST };

typedef struct {
    unsigned char kind, byte;
    size_t at;                  /* T_CLASS: index just past its "[" */
} tok;

/* Decodes the UTF-8 character at s so "?" and classes see characters, not bytes;
 * an invalid byte stands for itself. */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0], v;
    size_t len = 1, i;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) len = 3;
    else if (c >= 0xf0 && c <= 0xf4) len = 4;
    if (len > n) len = 1;
    v = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) break;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (len == 1 || i < len) {
        *cp = c;
        return 1;
    }
    *cp = v;
    return len;
}

static int class_char(const char *p, size_t n, size_t *i, unsigned *cp)
{
    if (*i < n && p[*i] == '\\') (*i)++;
    if (*i >= n) return 0;
    *i += utf8_next((const unsigned char *)p + *i, n - *i, cp);
    return 1;
}

/* Scans the class whose body starts at p[i]; returns the index just past its "]",
 * or 0 when malformed (unterminated or empty). *hit tells whether cp is a member. */
static size_t class_scan(const char *p, size_t n, size_t i, unsigned cp, int *hit)
{
    int neg = 0, in = 0;
    size_t count = 0;
    if (i < n && (p[i] == '^' || p[i] == '!')) {
        neg = 1;
        i++;
    }
    for (;;) {
        unsigned lo, hi;
        if (i >= n) return 0;
        if (p[i] == ']') {
            if (count == 0) return 0;
            break;
        }
        if (!class_char(p, n, &i, &lo)) return 0;
        hi = lo;
        if (i + 1 < n && p[i] == '-' && p[i + 1] != ']') {
            i++;
            if (!class_char(p, n, &i, &hi)) return 0;
        }
        if (lo <= cp && cp <= hi) in = 1;
        count++;
    }
    *hit = in != neg;
    return i + 1;
}

/* Returns the number of tokens, or SIZE_MAX for a malformed pattern. "**" is Docker's:
 * at the end it takes the rest of the path, elsewhere any run of whole directories. */
static size_t tokenize(const char *p, size_t n, tok *t)
{
    size_t k = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c == '*' && i + 1 < n && p[i + 1] == '*') {
            i += 2;
            if (i < n && p[i] == '/') i++;
            t[k++].kind = i == n ? T_REST : T_DIRS;
        } else if (c == '*' || c == '?') {
            t[k++].kind = c == '*' ? T_STAR : T_ONE;
            i++;
        } else if (c == '[') {
            int hit;
            size_t end = class_scan(p, n, i + 1, 0, &hit);
            if (end == 0) return SIZE_MAX;
            t[k].kind = T_CLASS;
            t[k++].at = i + 1;
            i = end;
        } else {
            if (c == '\\' && ++i == n) return SIZE_MAX;
            t[k].kind = T_LIT;
            t[k++].byte = (unsigned char)p[i++];
        }
    }
    return k;
}

/* Dynamic programming from the end of the pattern, one row per token: linear in
 * pattern x path, so no pattern can make it backtrack exponentially. */
static int match_dp(const char *p, size_t pn, const tok *t, size_t nt,
                    const unsigned char *s, size_t sn, unsigned char *rows)
{
    unsigned char *next = rows, *cur = rows + sn + 1, *tmp;
    size_t j = nt;
    memset(next, 0, sn + 1);
    next[sn] = 1;
    while (j-- > 0) {
        size_t i = sn + 1;
        int below = 0;
        while (i-- > 0) {
            unsigned cp;
            size_t len = i < sn ? utf8_next(s + i, sn - i, &cp) : 0;
            int m = 0, hit = 1;
            switch (t[j].kind) {
            case T_LIT:
                m = i < sn && s[i] == t[j].byte && next[i + 1];
                break;
            case T_ONE:
            case T_CLASS:
                if (i == sn || cp == '/') break;
                if (t[j].kind == T_CLASS) class_scan(p, pn, t[j].at, cp, &hit);
                m = hit && next[i + len];
                break;
            case T_STAR:
                m = next[i] || (i < sn && s[i] != '/' && cur[i + len]);
                break;
            case T_DIRS:
                if (i < sn && s[i] == '/' && next[i + 1]) below = 1;
                m = next[i] || below;
                break;
            default:
                m = 1;
            }
            cur[i] = (unsigned char)m;
        }
        tmp = next;
        next = cur;
        cur = tmp;
    }
    return next[0];
}

static int match_n(const char *p, size_t pn, const char *s, size_t sn)
{
    tok tstack[64], *t = pn <= 64 ? tstack : malloc(pn * sizeof *t);
    unsigned char rstack[512], *rows = sn < 256 ? rstack : malloc(2 * (sn + 1));
    size_t nt;
    int r = 0;
    if (t && rows && (nt = tokenize(p, pn, t)) != SIZE_MAX)
        r = match_dp(p, pn, t, nt, (const unsigned char *)s, sn, rows);
    if (t != tstack) free(t);
    if (rows != rstack) free(rows);
    return r;
}

static int match_self_or_parent(const char *p, size_t pn, const char *s, size_t sn)
{
    size_t i;
    for (i = 0; i < sn; i++)
        if (s[i] == '/' && match_n(p, pn, s, i)) return 1;
    return match_n(p, pn, s, sn);
}

/* Clean, then relative to the context as Docker makes it: "/x" is "x". */
static size_t clean_rel(char *out, const char *in, size_t n)
{
    size_t k = mw_tar_clean(out, in, n);
    if (k > 1 && out[0] == '/') memmove(out, out + 1, k--);
    return k;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* One .dockerignore line as Docker's reader cleans it; out needs n + 3 bytes.
 * Returns the length, 0 for no pattern. */
static size_t clean_pattern(char *out, const char *s, size_t n)
{
    size_t a = 0, w = 0;
    while (a < n && is_space((unsigned char)s[a])) a++;
    while (n > a && is_space((unsigned char)s[n - 1])) n--;
    if (a == n) return 0;
    if (s[a] == '!') {
        out[w++] = '!';
        a++;
        while (a < n && is_space((unsigned char)s[a])) a++;
    }
    if (a < n) w += clean_rel(out + w, s + a, n - a);
    out[w] = 0;
    return w;
}

/* ---- Lua helpers ---- */

static int push_pattern(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    size_t k = clean_pattern(luaL_buffinitsize(L, &b, n + 3), s, n);
    luaL_pushresultsize(&b, k);
    if (k > 0) return 1;
    lua_pop(L, 1);
    return 0;
}

static void push_rel(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    size_t k = clean_rel(luaL_buffinitsize(L, &b, n + 2), s, n);
    luaL_pushresultsize(&b, k);
}

static void push_ignore_list(lua_State *L, const char *s, size_t n)
{
    lua_Integer k = 0;
    size_t i = 0;
    lua_newtable(L);
    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        /* a comment is a "#" in column 1, before any trimming, as Docker reads it */
        if (s[i] != '#' && push_pattern(L, s + i, end - i)) lua_rawseti(L, -2, ++k);
        i = end + 1;
    }
}

/* Leaves on the stack a table of the cleaned patterns of the list at idx and a userdata
 * holding their C array (with room for `spare` more), which it returns. */
static const char **check_patterns(lua_State *L, int idx, int arg, size_t spare, size_t *count)
{
    lua_Integer n = luaL_len(L, idx), i;
    size_t k = 0;
    const char **a;
    int t;
    lua_newtable(L);
    t = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        if (lua_geti(L, idx, i) != LUA_TSTRING)
            luaL_argerror(L, arg, lua_pushfstring(L, "pattern %I is not a string", i));
        s = lua_tolstring(L, -1, &len);
        if (push_pattern(L, s, len)) lua_rawseti(L, t, (lua_Integer)++k);
        lua_pop(L, 1);
    }
    a = lua_newuserdatauv(L, (k + spare) * sizeof *a + 1, 0);
    for (i = 1; i <= (lua_Integer)k; i++) {
        lua_rawgeti(L, t, i);
        a[i - 1] = lua_tostring(L, -1);   /* anchored by the table */
        lua_pop(L, 1);
    }
    *count = k;
    return a;
}

/* ---- the tar writer ---- */

/* The output and the context's descriptor, owned by a userdata so an error raised
 * half-way frees them. */
typedef struct {
    char *p;
    size_t len, cap;
    int fd;
} box;

typedef struct {
    const char *name, *data;
    size_t len;
    int mode;
} extra;

typedef struct {
    box *out;
    const char *root;
    const char *const *pats;
    size_t npats;
    const extra *extras;
    size_t nextras;
    char err[4096];
    const char *code;           /* the failure's name ("ENOENT"...), as mw_fail gives */
} packer;

/* A directory being walked; an excluded one entered only for its exceptions stays
 * pending until something inside it is written. */
typedef struct frame {
    struct frame *up;
    int fd;
    char *rel;          /* has room for a trailing "/" */
    size_t len;
    unsigned mode;
    long long mtime;
    int pending;
} frame;

static void box_free(box *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    if (b->fd >= 0) close(b->fd);
    b->fd = -1;
}

static int box_gc(lua_State *L)
{
    box_free(luaL_checkudata(L, 1, BOX_MT));
    return 0;
}

/* Records "<root>/<rel>: <why>" and its code; returns -1. */
static int fail_code(packer *pk, const char *rel, const char *code, const char *why)
{
    pk->code = code;
    if (!pk->root) {       /* tar.pack(false, ...): the extras alone, no directory to name */
        snprintf(pk->err, sizeof pk->err, "%s%s%s", rel, *rel ? ": " : "", why);
        return -1;
    }
    size_t n = strlen(pk->root);
    while (n > 1 && pk->root[n - 1] == '/') n--;
    snprintf(pk->err, sizeof pk->err, "%.*s%s%s: %s", (int)n, pk->root,
             *rel && n > 0 && pk->root[n - 1] != '/' ? "/" : "", rel, why);
    return -1;
}

static int fail(packer *pk, const char *rel, int e)
{
    return fail_code(pk, rel, mw_errno_name(e), strerror(e));
}

/* Grows the output by n bytes and returns them, or NULL when out of memory. */
static char *reserve(packer *pk, size_t n)
{
    box *b = pk->out;
    char *at;
    if (n > SIZE_MAX - b->len) return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        char *p;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        if (!(p = realloc(b->p, cap))) return NULL;
        b->p = p;
        b->cap = cap;
    }
    at = b->p + b->len;
    b->len += n;
    return at;
}

static size_t padded(size_t n)
{
    return (n + BLOCK - 1) / BLOCK * BLOCK;
}

static void octal(char *field, size_t width, unsigned long long v)
{
    size_t i = width - 1;
    field[i] = 0;
    while (i-- > 0) {
        field[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void fill_header(char *h, const char *name, size_t nlen, char type, unsigned mode,
                        unsigned long long size, long long mtime, const char *link, size_t llen)
{
    unsigned sum = 0;
    size_t i;
    memset(h, 0, BLOCK);
    memcpy(h, name, nlen < NAME_MAX_USTAR ? nlen : NAME_MAX_USTAR);
    octal(h + 100, 8, mode);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, size);
    octal(h + 136, 12, mtime < 0 ? 0 : (unsigned long long)mtime > OCTAL11 ? OCTAL11
                                                                           : (unsigned long long)mtime);
    h[156] = type;
    memcpy(h + 157, link, llen < NAME_MAX_USTAR ? llen : NAME_MAX_USTAR);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    octal(h + 329, 8, 0);
    octal(h + 337, 8, 0);
    memset(h + 148, ' ', 8);
    for (i = 0; i < BLOCK; i++) sum += (unsigned char)h[i];
    octal(h + 148, 7, sum);
}

/* A pax record is "<len> key=value\n" where <len> counts its own digits. */
static size_t pax_size(const char *key, size_t vlen)
{
    size_t body = strlen(key) + vlen + 3, digits = 1;
    for (;;) {
        size_t total = body + digits, t = total, d = 0;
        do {
            d++;
            t /= 10;
        } while (t);
        if (d == digits) return total;
        digits = d;
    }
}

static char *pax_put(char *at, const char *key, const char *val, size_t vlen)
{
    size_t total = pax_size(key, vlen);
    int d = sprintf(at, "%zu %s=", total, key);
    memcpy(at + d, val, vlen);
    at[d + vlen] = '\n';
    return at + total;
}

static int put_header(packer *pk, const char *rel, const char *name, size_t nlen, char type,
                      unsigned mode, unsigned long long size, long long mtime,
                      const char *link, size_t llen)
{
    char *h;
    if (nlen > NAME_MAX_USTAR || llen > NAME_MAX_USTAR) {
        size_t body = 0, base = nlen;
        char pname[NAME_MAX_USTAR + 1];
        if (nlen > NAME_MAX_USTAR) body += pax_size("path", nlen);
        if (llen > NAME_MAX_USTAR) body += pax_size("linkpath", llen);
        if (!(h = reserve(pk, BLOCK + padded(body)))) return fail(pk, rel, ENOMEM);
        while (base > 0 && name[base - 1] == '/') base--;
        while (base > 0 && name[base - 1] != '/') base--;
        snprintf(pname, sizeof pname, "PaxHeaders/%.*s", (int)(nlen - base), name + base);
        fill_header(h, pname, strlen(pname), 'x', 0644, body, mtime, "", 0);
        memset(h + BLOCK, 0, padded(body));
        h += BLOCK;
        if (nlen > NAME_MAX_USTAR) h = pax_put(h, "path", name, nlen);
        if (llen > NAME_MAX_USTAR) pax_put(h, "linkpath", link, llen);
    }
    if (!(h = reserve(pk, BLOCK))) return fail(pk, rel, ENOMEM);
    fill_header(h, name, nlen, type, mode, size, mtime, link, llen);
    return 0;
}

static int put_dir(packer *pk, frame *f)
{
    int r;
    f->rel[f->len] = '/';
    r = put_header(pk, f->rel, f->rel, f->len + 1, '5', f->mode, 0, f->mtime, "", 0);
    f->rel[f->len] = 0;
    return r;
}

/* Writes the pending directories above an entry about to be written. */
static int flush(packer *pk, frame *f)
{
    if (!f || !f->pending) return 0;
    if (flush(pk, f->up) < 0) return -1;
    f->pending = 0;
    return put_dir(pk, f);
}

static int put_file(packer *pk, frame *f, const char *name, const char *rel, size_t len)
{
    struct stat st;
    size_t size, got = 0;
    char *at;
    int fd = openat(f->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), r = -1;
    if (fd < 0) return fail(pk, rel, errno);
    if (fstat(fd, &st) < 0) {
        fail(pk, rel, errno);
    } else if (!S_ISREG(st.st_mode)) {
        fail_code(pk, rel, "EAGAIN", "changed while packing");
    } else if ((unsigned long long)st.st_size > OCTAL11) {
        fail_code(pk, rel, "EFBIG", "larger than the 8 GiB a tar entry can hold here");
    } else if (put_header(pk, rel, rel, len, '0', st.st_mode & 07777, (unsigned long long)st.st_size,
                          (long long)st.st_mtime, "", 0) == 0) {
        size = (size_t)st.st_size;
        if (!(at = reserve(pk, padded(size)))) {
            fail(pk, rel, ENOMEM);
        } else {
            int err = 0;
            while (got < size) {
                ssize_t k = read(fd, at + got, size - got);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) err = errno;
                if (k <= 0) break;
                got += (size_t)k;
            }
            memset(at + got, 0, padded(size) - got);
            if (got == size) r = 0;
            else if (err) fail(pk, rel, err);
            else fail_code(pk, rel, "EAGAIN", "shrank while packing");
        }
    }
    close(fd);
    return r;
}

static int put_link(packer *pk, frame *f, const char *name, const char *rel, size_t len,
                    const struct stat *st)
{
    size_t cap = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;
    for (;;) {
        char *buf = malloc(cap);
        ssize_t k;
        int r = 0;
        if (!buf) return fail(pk, rel, ENOMEM);
        k = readlinkat(f->fd, name, buf, cap);
        if (k >= 0 && (size_t)k < cap)
            r = put_header(pk, rel, rel, len, '2', st->st_mode & 07777, 0, (long long)st->st_mtime,
                           buf, (size_t)k);
        else if (k < 0)
            r = fail(pk, rel, errno);
        free(buf);
        if (k < 0 || (size_t)k < cap) return r;
        cap *= 2;
    }
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_extra(const void *a, const void *b)
{
    return strcmp(((const extra *)a)->name, ((const extra *)b)->name);
}

static int is_extra(const packer *pk, const char *rel)
{
    extra key = { rel, NULL, 0, 0 };
    return pk->nextras && bsearch(&key, pk->extras, pk->nextras, sizeof key, cmp_extra);
}

/* Whether pattern p (no "!") could match something beneath dir: the conservative
 * answer is yes, as that only costs a walk. */
static int could_match_below(const char *p, const char *d)
{
    for (;;) {
        size_t pn = 0, dn = 0, i;
        if (!*p || !*d) return 1;
        while (p[pn] && p[pn] != '/') pn += p[pn] == '\\' && p[pn + 1] ? 2 : 1;
        while (d[dn] && d[dn] != '/') dn++;
        for (i = 0; i + 1 < pn; i++)
            if (p[i] == '*' && p[i + 1] == '*') return 1;
        if (!match_n(p, pn, d, dn)) return 0;
        p += pn + (p[pn] == '/');
        d += dn + (d[dn] == '/');
    }
}

static int exception_below(const packer *pk, const char *rel)
{
    size_t i;
    for (i = 0; i < pk->npats; i++)
        if (pk->pats[i][0] == '!' && pk->pats[i][1] && could_match_below(pk->pats[i] + 1, rel)) return 1;
    return 0;
}

static int walk(packer *pk, frame *f);

static int enter(packer *pk, frame *up, const char *name, char *rel, size_t len,
                 const struct stat *st, int pending)
{
    frame f = { up, -1, rel, len, st->st_mode & 07777, (long long)st->st_mtime, pending };
    int r;
    if (!pending && put_dir(pk, &f) < 0) return -1;
    f.fd = openat(up->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (f.fd < 0) return fail(pk, rel, errno);
    r = walk(pk, &f);
    close(f.fd);
    return r;
}

static int visit(packer *pk, frame *f, const char *name)
{
    size_t nl = strlen(name), len = f->len ? f->len + 1 + nl : nl;
    char *rel = malloc(len + 2);
    struct stat st;
    int r = 0, excluded;
    if (!rel) return fail(pk, f->rel, ENOMEM);
    if (f->len) {
        memcpy(rel, f->rel, f->len);
        rel[f->len] = '/';
    }
    memcpy(rel + len - nl, name, nl);
    rel[len] = rel[len + 1] = 0;
    if (is_extra(pk, rel)) goto done;           /* replaced by opts.extra */
    if (fstatat(f->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = fail(pk, rel, errno);
        goto done;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) goto done;
    excluded = mw_tar_excluded(pk->pats, pk->npats, rel);
    if (excluded && (!S_ISDIR(st.st_mode) || !exception_below(pk, rel))) goto done;
    if (!excluded && flush(pk, f) < 0) {
        r = -1;
        goto done;
    }
    if (S_ISDIR(st.st_mode)) r = enter(pk, f, name, rel, len, &st, excluded);
    else if (S_ISLNK(st.st_mode)) r = put_link(pk, f, name, rel, len, &st);
    else r = put_file(pk, f, name, rel, len);
done:
    free(rel);
    return r;
}

static int walk(packer *pk, frame *f)
{
    char **names = NULL, **grown;
    size_t n = 0, cap = 0, i;
    struct dirent *e;
    int r = 0, fd = openat(f->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        r = fail(pk, f->rel, errno);
        if (fd >= 0) close(fd);
        return r;
    }
    for (errno = 0; (e = readdir(d)) != NULL; errno = 0) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            if (!(grown = realloc(names, cap * sizeof *names))) break;
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    if (e || errno) r = fail(pk, f->rel, e ? ENOMEM : errno);
    closedir(d);
    if (r == 0 && n > 1) qsort(names, n, sizeof *names, cmp_name);
    for (i = 0; i < n && r == 0; i++) r = visit(pk, f, names[i]);
    for (i = 0; i < n; i++) free(names[i]);
    free(names);
    return r;
}

/* Reads dir/.dockerignore into the output buffer; 0 when absent. Only a regular file of at
 * most MW_IGNORE_MAX bytes: not through a symlink (one to /dev/zero would read without end),
 * and the opened descriptor is what is checked, so a swap after a check changes nothing. */
static int read_ignore_file(packer *pk)
{
    struct stat st;
    size_t total = 0;
    int fd = openat(pk->out->fd, ".dockerignore", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), r = 0;
    if (fd < 0 && errno == ELOOP) return fail_code(pk, ".dockerignore", "ELOOP", "is a symbolic link (mw reads only a regular file)");
    if (fd < 0) return errno == ENOENT ? 0 : fail(pk, ".dockerignore", errno);
    if (fstat(fd, &st) < 0) r = fail(pk, ".dockerignore", errno);
    else if (!S_ISREG(st.st_mode)) r = fail_code(pk, ".dockerignore", "EINVAL", "is not a regular file (mw reads only a regular file)");
    if (r < 0) {
        close(fd);
        return r;
    }
    for (;;) {
        char *at = reserve(pk, 4096);
        ssize_t k;
        if (!at) {
            r = fail(pk, ".dockerignore", ENOMEM);
            break;
        }
        k = read(fd, at, 4096);
        pk->out->len -= 4096 - (k > 0 ? (size_t)k : 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) r = fail(pk, ".dockerignore", errno);
        if (k <= 0) break;
        total += (size_t)k;
        if (total > MW_IGNORE_MAX) {
            r = fail_code(pk, ".dockerignore", "EFBIG", "is larger than 1 MiB");
            break;
        }
    }
    close(fd);
    return r;
}

/* Collects opts.extra into a sorted array left (with its name table) on the stack. */
static extra *check_extras(lua_State *L, size_t *count)
{
    size_t n = 0, i = 0;
    extra *ex;
    int src = lua_gettop(L), names;
    lua_pushnil(L);
    while (lua_next(L, src)) {
        /* a name maps to its content, or to { data = content, mode = 0755 } */
        if (lua_type(L, -2) != LUA_TSTRING
            || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TTABLE))
            luaL_argerror(L, 2, "opts.extra must map names to content strings");
        if (lua_type(L, -1) == LUA_TTABLE) {
            int mode_ok;
            lua_Integer mode;
            if (lua_getfield(L, -1, "data") != LUA_TSTRING)
                luaL_argerror(L, 2, "opts.extra: a table entry needs data (a string)");
            lua_pop(L, 1);
            lua_getfield(L, -1, "mode");
            mode = lua_tointegerx(L, -1, &mode_ok);
            if (!lua_isnil(L, -1) && (!mode_ok || mode < 0 || mode > 07777))
                luaL_argerror(L, 2, "opts.extra: mode must be a permission number (0 to 07777)");
            lua_pop(L, 1);
        }
        n++;
        lua_pop(L, 1);
    }
    lua_newtable(L);
    names = lua_gettop(L);
    ex = lua_newuserdatauv(L, n * sizeof *ex + 1, 0);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen), *name;
        push_rel(L, k, klen);
        name = lua_tostring(L, -1);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strncmp(name, "../", 3) == 0
            || strcmp(name, "/") == 0)
            luaL_argerror(L, 2, lua_pushfstring(L, "opts.extra: bad name '%s'", k));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, names) != LUA_TNIL)
            luaL_argerror(L, 2, lua_pushfstring(L, "opts.extra: '%s' given twice", name));
        lua_pop(L, 1);
        ex[i].name = name;
        ex[i].mode = 0644;
        if (lua_type(L, -2) == LUA_TTABLE) {
            lua_getfield(L, -2, "mode");
            if (!lua_isnil(L, -1)) ex[i].mode = (int)lua_tointeger(L, -1);
            lua_getfield(L, -3, "data");        /* anchored by the caller's table */
            ex[i].data = lua_tolstring(L, -1, &ex[i].len);
            lua_pop(L, 2);
        } else {
            ex[i].data = lua_tolstring(L, -2, &ex[i].len);
        }
        lua_pushvalue(L, -2);
        lua_rawset(L, names);                   /* anchors the cleaned name */
        lua_pop(L, 1);
        i++;
    }
    if (n > 1) qsort(ex, n, sizeof *ex, cmp_extra);
    *count = n;
    return ex;
}

static int put_extras(packer *pk)
{
    size_t i;
    for (i = 0; i < pk->nextras; i++) {
        const extra *x = &pk->extras[i];
        char *at;
        if (put_header(pk, x->name, x->name, strlen(x->name), '0', (unsigned)x->mode, x->len, 0, "", 0) < 0)
            return -1;
        if (!(at = reserve(pk, padded(x->len)))) return fail(pk, x->name, ENOMEM);
        memcpy(at, x->data, x->len);
        memset(at + x->len, 0, padded(x->len) - x->len);
    }
    return 0;
}

static int push_failure(lua_State *L, box *b, const packer *pk)
{
    box_free(b);
    lua_pushnil(L);
    lua_pushstring(L, pk->err);
    lua_pushstring(L, pk->code ? pk->code : "EIO");
    return 3;
}

/* ---- the module ---- */

/* the two zero blocks that end an archive; pushes it */
static int finish_pack(lua_State *L, box *b, packer *pk)
{
    if (!reserve(pk, 2 * BLOCK)) {
        fail(pk, "", ENOMEM);
        return push_failure(L, b, pk);
    }
    memset(b->p + b->len - 2 * BLOCK, 0, 2 * BLOCK);
    lua_pushlstring(L, b->p, b->len);
    box_free(b);
    return 1;
}

static int l_pack(lua_State *L)
{
    /* false: no directory, the extras alone (mw.holder's image) */
    const char *root = lua_isboolean(L, 1) && !lua_toboolean(L, 1) ? NULL : luaL_checkstring(L, 1);
    const char *dockerfile;
    char empty[2] = "";
    const char **pats;
    size_t npats = 0;
    packer pk;
    frame top;
    box *b;
    int t, ignore;
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    memset(&pk, 0, sizeof pk);
    pk.root = root;

    if (lua_getfield(L, 2, "dockerfile") == LUA_TNIL) lua_pushliteral(L, "Dockerfile");
    else if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 2, "opts.dockerfile must be a string");
    push_rel(L, lua_tostring(L, -1), lua_rawlen(L, -1));
    dockerfile = lua_tostring(L, -1);

    t = lua_getfield(L, 2, "extra");
    if (t == LUA_TTABLE) pk.extras = check_extras(L, &pk.nextras);
    else if (t != LUA_TNIL) luaL_argerror(L, 2, "opts.extra must be a table");

    t = lua_getfield(L, 2, "ignore");
    if (t != LUA_TTABLE && t != LUA_TNIL) luaL_argerror(L, 2, "opts.ignore must be a list of strings");
    ignore = t == LUA_TTABLE ? lua_gettop(L) : 0;

    b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->len = b->cap = 0;
    b->fd = -1;
    luaL_setmetatable(L, BOX_MT);
    pk.out = b;
    if (root && (b->fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(&pk, "", errno);
        return push_failure(L, b, &pk);
    }
    if (!root) {
        if (put_extras(&pk) < 0) return push_failure(L, b, &pk);
        return finish_pack(L, b, &pk);
    }
    if (!ignore) {
        if (read_ignore_file(&pk) < 0) return push_failure(L, b, &pk);
        push_ignore_list(L, b->p ? b->p : "", b->len);
        b->len = 0;
        ignore = lua_gettop(L);
    }
    pats = check_patterns(L, ignore, 2, 2, &npats);
    /* Docker sends these even when a pattern excludes them */
    if (mw_tar_excluded(pats, npats, ".dockerignore")) pats[npats++] = "!.dockerignore";
    if (mw_tar_excluded(pats, npats, dockerfile)) {
        lua_pushfstring(L, "!%s", dockerfile);
        pats[npats++] = lua_tostring(L, -1);    /* anchored: stays on the stack */
    }
    pk.pats = pats;
    pk.npats = npats;

    top.up = NULL;
    top.fd = b->fd;
    top.rel = empty;
    top.len = 0;
    top.pending = 0;
    if (put_extras(&pk) < 0 || walk(&pk, &top) < 0) return push_failure(L, b, &pk);
    return finish_pack(L, b, &pk);
}

static int l_parse_ignore(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    push_ignore_list(L, s, n);
    return 1;
}

static int l_ignored(lua_State *L)
{
    size_t n, len;
    const char **pats;
    const char *path;
    luaL_checktype(L, 1, LUA_TTABLE);
    path = luaL_checklstring(L, 2, &len);
    pats = check_patterns(L, 1, 1, 0, &n);
    push_rel(L, path, len);
    lua_pushboolean(L, mw_tar_excluded(pats, n, lua_tostring(L, -1)));
    return 1;
}

/* ---- the C API of tar.h ---- */

int mw_tar_match(const char *pattern, const char *path)
{
    return match_n(pattern, strlen(pattern), path, strlen(path));
}

int mw_tar_excluded(const char *const *patterns, size_t n, const char *path)
{
    size_t sn = strlen(path);
    if (sn == 0 || strcmp(path, ".") == 0) return 0;    /* as Docker: never the whole context */
    while (n-- > 0) {
        const char *p = patterns[n];
        int exception = p[0] == '!';
        p += exception;
        if (*p && match_self_or_parent(p, strlen(p), path, sn)) return !exception;
    }
    return 0;
}

size_t mw_tar_clean(char *out, const char *in, size_t n)
{
    size_t r = 0, w = 0, dotdot = 0;
    int rooted = n > 0 && in[0] == '/';
    if (rooted) {
        out[w++] = '/';
        r = dotdot = 1;
    }
    while (r < n) {
        if (in[r] == '/') {
            r++;
        } else if (in[r] == '.' && (r + 1 == n || in[r + 1] == '/')) {
            r++;
        } else if (in[r] == '.' && r + 1 < n && in[r + 1] == '.' && (r + 2 == n || in[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/') w--;
            } else if (!rooted) {
                if (w > 0) out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if (w != (size_t)rooted) out[w++] = '/';
            while (r < n && in[r] != '/') out[w++] = in[r++];
        }
    }
    if (w == 0) out[w++] = '.';
    out[w] = 0;
    return w;
}

static const luaL_Reg tar_funcs[] = {
    { "pack", l_pack },
    { "parse_ignore", l_parse_ignore },
    { "ignored", l_ignored },
    { NULL, NULL },
};

static int box_describe(lua_State *L)
{
    box *b = luaL_checkudata(L, 1, BOX_MT);
    if (!b->p && b->fd < 0) return 0;
    lua_pushfstring(L, "%s (%d bytes)", BOX_MT, (int)b->len);
    return 1;
}

static const luaL_Reg box_methods[] = { { NULL, NULL } };

int luaopen_mw_tar(lua_State *L)
{
    mw_class(L, BOX_MT, box_methods, box_gc, box_describe);
    luaL_newlib(L, tar_funcs);
    return 1;
}
