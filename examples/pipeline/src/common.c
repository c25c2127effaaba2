/* Shared plumbing of the pipeline programs; see common.h for the contract of each part. */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_MAX 8192
#define RESPONSE_MAX (4 * 1024 * 1024)

static const char *g_prog = "pipeline";
static volatile sig_atomic_t g_stop;
static sigset_t g_waitmask;

/* Text buffers ------------------------------------------------------------------------------ */

static void buf_grow(struct buf *b, size_t extra)
{
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) die("out of memory");
  b->p = p;
  b->cap = cap;
}

void buf_reset(struct buf *b)
{
  b->len = 0;
  if (b->p) b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

void buf_add(struct buf *b, const char *s, size_t n)
{
  buf_grow(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  buf_grow(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void buf_json_str(struct buf *b, const char *s)
{
  buf_add(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      char e[2] = { '\\', (char)*p };
      buf_add(b, e, 2);
    } else if (*p < 0x20) {
      buf_printf(b, "\\u%04x", *p);
    } else {
      buf_add(b, (const char *)p, 1);
    }
  }
  buf_add(b, "\"", 1);
}

void buf_consume(struct buf *b, size_t n)
{
  if (n >= b->len) {
    buf_reset(b);
    return;
  }
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
  b->p[b->len] = '\0';
}

/* Configuration and messages ------------------------------------------------------------------ */

void cfg_init(const char *prog) { g_prog = prog; }
const char *prog_name(void) { return g_prog; }

void say(const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", g_prog, msg);
}

void die(const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", g_prog, msg);
  exit(2);
}

long env_long(const char *name, long def, long min, long max)
{
  const char *s = getenv(name);
  if (!s || !*s) return def;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) {
    die("bad %s=%s: must be a whole number from %ld to %ld", name, s, min, max);
  }
  return v;
}

double env_double(const char *name, double def, double min, double max)
{
  const char *s = getenv(name);
  if (!s || !*s) return def;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !(v >= min && v <= max)) {
    die("bad %s=%s: must be a number from %g to %g", name, s, min, max);
  }
  return v;
}

const char *env_str(const char *name, const char *def)
{
  const char *s = getenv(name);
  return s && *s ? s : def;
}

/* Clocks ---------------------------------------------------------------------------------------- */

static int64_t clock_ms(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

/* Signals ---------------------------------------------------------------------------------------- */

static void on_stop(int sig)
{
  (void)sig;
  g_stop = 1;
}

void signals_init(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &g_waitmask);
  sigdelset(&g_waitmask, SIGTERM);
  sigdelset(&g_waitmask, SIGINT);
}

int stop_requested(void) { return g_stop != 0; }

int wait_events(struct pollfd *fds, nfds_t n, int timeout_ms)
{
  if (timeout_ms < 0) timeout_ms = 0;
  struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
  int r = ppoll(fds, n, &ts, &g_waitmask);
  if (r < 0) {
    if (errno != EINTR) say("poll: %s", strerror(errno));
    for (nfds_t i = 0; i < n; i++) fds[i].revents = 0;
    return 0;
  }
  return r;
}

/* TCP ------------------------------------------------------------------------------------------- */

int tcp_listen(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Set by intro_while_waiting: the endpoint wait_fd keeps answering. */
static struct {
  struct intro *in;
  vars_fields fields;
  void *ctx;
  int busy; /* serving one now: its own waits must not serve another */
} g_waiting;

/* Waits for events on one fd; 1 when ready, 0 on timeout. */
static int wait_fd(int fd, short events, int64_t deadline)
{
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = -1, .events = POLLIN } };
    if (g_waiting.in && !g_waiting.busy) p[1].fd = g_waiting.in->fd;
    int r = poll(p, 2, (int)left);
    if (r < 0 && errno != EINTR) return 0;
    if (r <= 0) continue;
    if (p[0].revents) return 1;
    if (p[1].revents) intro_serve(g_waiting.in, g_waiting.fields, g_waiting.ctx);
  }
}

int tcp_connect(const char *host, int port, int timeout_ms, char *err, size_t errlen)
{
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints, *res;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "resolve %s: %s", host, gai_strerror(rc));
    return -1;
  }
  int64_t deadline = now_ms() + timeout_ms;
  int fd = -1;
  snprintf(err, errlen, "connect %s:%d: no address", host, port);
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int e = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
      e = errno;
      if (e == EINPROGRESS) {
        if (wait_fd(fd, POLLOUT, deadline)) {
          socklen_t len = sizeof e;
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
        } else {
          e = ETIMEDOUT;
        }
      }
    }
    if (e == 0) break;
    snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(e));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  /* Unacknowledged data fails the connection after 5 s instead of TCP's many minutes, so a
   * peer whose container vanished is noticed and reconnected quickly. */
  unsigned int user_timeout = 5000;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
  return fd;
}

int send_all(int fd, const char *s, size_t n, int timeout_ms)
{
  int64_t deadline = now_ms() + timeout_ms;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w > 0) {
      s += w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) {
        errno = ETIMEDOUT;
        return -1;
      }
    } else {
      return -1;
    }
  }
  return 0;
}

/* HTTP -------------------------------------------------------------------------------------------- */

static const char *status_text(int status)
{
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  default: return "Error";
  }
}

void http_serve_one(int lfd, http_handler handler, void *ctx)
{
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  /* A request is a few hundred bytes from a local client: read it whole or give up soon, since
   * the program does nothing else meanwhile. */
  char req[REQUEST_MAX + 1];
  size_t got = 0;
  int64_t deadline = now_ms() + 1000;
  while (got < REQUEST_MAX) {
    ssize_t r = recv(fd, req + got, REQUEST_MAX - got, 0);
    if (r > 0) {
      got += (size_t)r;
      req[got] = '\0';
      if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLIN, deadline)) break;
    } else {
      break;
    }
  }
  req[got] = '\0';
  struct http_response res = { .status = 200, .content_type = "application/json" };
  char method[16], target[1024];
  if (sscanf(req, "%15s %1023s HTTP/%*d.%*d", method, target) == 2) {
    handler(ctx, method, target, &res);
  } else {
    res.status = 400;
    res.content_type = "text/plain";
    buf_printf(&res.body, "bad request\n");
  }
  struct buf out = { 0 };
  buf_printf(&out, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             res.status, status_text(res.status), res.content_type, res.body.len);
  if (res.body.len) buf_add(&out, res.body.p, res.body.len);
  send_all(fd, out.p, out.len, 1000);
  buf_free(&out);
  buf_free(&res.body);
  shutdown(fd, SHUT_WR);
  close(fd);
}

int http_get(const char *host, int port, const char *target, int timeout_ms, struct buf *body,
             char *err, size_t errlen)
{
  buf_reset(body);
  int64_t deadline = now_ms() + timeout_ms;
  int fd = tcp_connect(host, port, timeout_ms, err, errlen);
  if (fd < 0) return -1;
  struct buf req = { 0 };
  buf_printf(&req, "GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: %s\r\n\r\n", target, host, port, g_prog);
  int64_t left = deadline - now_ms();
  int rc = send_all(fd, req.p, req.len, left > 0 ? (int)left : 1);
  buf_free(&req);
  if (rc < 0) {
    snprintf(err, errlen, "send to %s:%d: %s", host, port, strerror(errno));
    close(fd);
    return -1;
  }
  struct buf in = { 0 };
  char chunk[16384];
  for (;;) {
    ssize_t r = recv(fd, chunk, sizeof chunk, 0);
    if (r > 0) {
      if (in.len + (size_t)r > RESPONSE_MAX) {
        snprintf(err, errlen, "response from %s:%d is over %d bytes", host, port, RESPONSE_MAX);
        goto fail;
      }
      buf_add(&in, chunk, (size_t)r);
    } else if (r == 0) {
      break;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_fd(fd, POLLIN, deadline)) {
        snprintf(err, errlen, "read from %s:%d: timed out", host, port);
        goto fail;
      }
    } else {
      snprintf(err, errlen, "read from %s:%d: %s", host, port, strerror(errno));
      goto fail;
    }
  }
  close(fd);
  int status;
  char *sep = in.p ? strstr(in.p, "\r\n\r\n") : NULL;
  if (!sep || sscanf(in.p, "HTTP/%*d.%*d %d", &status) != 1) {
    snprintf(err, errlen, "bad HTTP response from %s:%d", host, port);
    buf_free(&in);
    return -1;
  }
  sep += 4;
  buf_add(body, sep, in.len - (size_t)(sep - in.p));
  buf_free(&in);
  return status;
fail:
  close(fd);
  buf_free(&in);
  return -1;
}

/* /debug/vars ------------------------------------------------------------------------------------ */

void intro_init(struct intro *in, int argc, char **argv)
{
  memset(in, 0, sizeof *in);
  in->argc = argc;
  in->argv = argv;
  in->started_ms = now_ms();
  in->port = (int)env_long("INTROSPECTION_PORT", 8089, 1, 65535);
  in->fd = tcp_listen(in->port);
  if (in->fd < 0) die("cannot listen on INTROSPECTION_PORT %d: %s", in->port, strerror(errno));
}

void jint(struct buf *b, const char *key, long long v) { buf_printf(b, ",\"%s\":%lld", key, v); }
void jdbl(struct buf *b, const char *key, double v) { buf_printf(b, ",\"%s\":%.3f", key, v); }
void jbool(struct buf *b, const char *key, int v) { buf_printf(b, ",\"%s\":%s", key, v ? "true" : "false"); }

void jstr(struct buf *b, const char *key, const char *v)
{
  buf_printf(b, ",\"%s\":", key);
  buf_json_str(b, v);
}

/* Real figures from the kernel, in bytes: /proc/self/status for the address space and the
 * resident set (VmHWM is this program's peak; getrusage's ru_maxrss would also count whatever
 * ran before the exec that started it), getrusage for page faults and CPU time. */
static void memstats(struct buf *b)
{
  static const char *const FIELDS[][2] = {
    { "VmSize:", "vm_size" }, { "VmPeak:", "vm_peak" }, { "VmRSS:", "rss" },
    { "VmHWM:", "max_rss" },  { "VmData:", "data" },    { "VmStk:", "stack" },
  };
  enum { NFIELDS = sizeof FIELDS / sizeof FIELDS[0] };
  long long kb[NFIELDS] = { 0 };
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      for (int i = 0; i < NFIELDS; i++) {
        size_t n = strlen(FIELDS[i][0]);
        if (strncmp(line, FIELDS[i][0], n) == 0) kb[i] = strtoll(line + n, NULL, 10);
      }
    }
    fclose(f);
  }
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  getrusage(RUSAGE_SELF, &ru);
  buf_add(b, "\"memstats\":{", 12);
  for (int i = 0; i < NFIELDS; i++) buf_printf(b, "\"%s\":%lld,", FIELDS[i][1], kb[i] * 1024);
  buf_printf(b, "\"minor_faults\":%ld,\"major_faults\":%ld}", ru.ru_minflt, ru.ru_majflt);
  buf_printf(b, ",\"cpu\":{\"user_ms\":%lld,\"sys_ms\":%lld}",
             (long long)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000,
             (long long)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000);
}

void vars_begin(struct intro *in, struct buf *b)
{
  buf_add(b, "{\"cmdline\":[", 12);
  for (int i = 0; i < in->argc; i++) {
    if (i) buf_add(b, ",", 1);
    buf_json_str(b, in->argv[i]);
  }
  buf_add(b, "],", 2);
  memstats(b);
  jstr(b, "program", g_prog);
  jint(b, "pid", (long long)getpid());
  jint(b, "uptime_ms", now_ms() - in->started_ms);
  jint(b, "introspection_requests", in->requests);
}

void vars_end(struct buf *b) { buf_add(b, "}\n", 2); }

struct vars_ctx {
  struct intro *in;
  vars_fields fields;
  void *ctx;
};

static void vars_handler(void *p, const char *method, const char *target, struct http_response *res)
{
  struct vars_ctx *v = p;
  v->in->requests++;
  size_t n = strcspn(target, "?");
  if (n != strlen("/debug/vars") || strncmp(target, "/debug/vars", n) != 0) {
    res->status = 404;
    res->content_type = "text/plain";
    buf_printf(&res->body, "only /debug/vars here\n");
    return;
  }
  if (strcmp(method, "GET") != 0) {
    res->status = 405;
    res->content_type = "text/plain";
    buf_printf(&res->body, "GET only\n");
    return;
  }
  vars_begin(v->in, &res->body);
  v->fields(v->ctx, &res->body);
  vars_end(&res->body);
}

void intro_serve(struct intro *in, vars_fields fields, void *ctx)
{
  struct vars_ctx v = { in, fields, ctx };
  int busy = g_waiting.busy;
  g_waiting.busy = 1;
  http_serve_one(in->fd, vars_handler, &v);
  g_waiting.busy = busy;
}

void intro_while_waiting(struct intro *in, vars_fields fields, void *ctx)
{
  g_waiting.in = in;
  g_waiting.fields = fields;
  g_waiting.ctx = ctx;
}

/* Metrics on the wire ----------------------------------------------------------------------------- */

int metric_parse(const char *line, size_t n, struct metric *m)
{
  char tmp[METRIC_LINE_MAX + 1];
  if (n == 0 || n > METRIC_LINE_MAX) return -1;
  memcpy(tmp, line, n);
  tmp[n] = '\0';
  if (n && tmp[n - 1] == '\r') tmp[--n] = '\0';
  int off = 0;
  if (sscanf(tmp, "%15s %63s %lld %n", m->kind, m->host, &m->ts, &off) != 3 || off == 0) return -1;
  const char *v = tmp + off;
  if (!*v) return -1;
  snprintf(m->value, sizeof m->value, "%s", v);
  return 0;
}

int read_lines(int fd, struct line_reader *r, void (*on_line)(void *ctx, const char *line, size_t n),
               void *ctx)
{
  for (;;) {
    ssize_t got = recv(fd, r->data + r->len, sizeof r->data - r->len, 0);
    if (got == 0) return -1;
    if (got < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    r->len += (size_t)got;
    size_t start = 0;
    for (size_t i = 0; i < r->len; i++) {
      if (r->data[i] != '\n') continue;
      if (!r->overlong) on_line(ctx, r->data + start, i - start);
      r->overlong = 0;
      start = i + 1;
    }
    memmove(r->data, r->data + start, r->len - start);
    r->len -= start;
    if (r->len == sizeof r->data) {
      /* No newline in a full buffer: report it as malformed and skip to the next newline. */
      on_line(ctx, r->data, r->len);
      r->len = 0;
      r->overlong = 1;
    }
  }
}
