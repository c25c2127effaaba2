/* What every pipeline program shares: config from env, a text buffer with JSON helpers, clocks,
 * signals, TCP and a tiny HTTP/1.0 server and client, and the /debug/vars boilerplate. */
#ifndef PIPELINE_COMMON_H
#define PIPELINE_COMMON_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#define ATTR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* A growable text buffer. Allocation failure ends the program: these are demo services. */
struct buf {
  char *p;
  size_t len, cap;
};

void buf_reset(struct buf *b);
void buf_free(struct buf *b);
void buf_add(struct buf *b, const char *s, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes and escapes included. */
void buf_json_str(struct buf *b, const char *s);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);

/* Configuration: the program's name for messages, then env lookups that exit(2) on bad values. */
void cfg_init(const char *prog);
const char *prog_name(void);
long env_long(const char *name, long def, long min, long max);
double env_double(const char *name, double def, double min, double max);
const char *env_str(const char *name, const char *def);

void say(const char *fmt, ...) ATTR_PRINTF(1, 2);
_Noreturn void die(const char *fmt, ...) ATTR_PRINTF(1, 2);

int64_t now_ms(void);   /* monotonic */
int64_t wall_ms(void);  /* since the Unix epoch */

/* SIGTERM and SIGINT are blocked except inside wait_events(), so a stop request is seen at the
 * next wait and never lost between a check and a poll. */
void signals_init(void);
int stop_requested(void);
int wait_events(struct pollfd *fds, nfds_t n, int timeout_ms);

/* TCP. tcp_connect resolves host with getaddrinfo (component names are DNS aliases on the
 * stack network) and waits at most timeout_ms; on failure it returns -1 with a reason in err. */
int tcp_listen(int port);
int tcp_connect(const char *host, int port, int timeout_ms, char *err, size_t errlen);
/* Sends all of s, waiting at most timeout_ms in total; 0 on success, -1 on failure. */
int send_all(int fd, const char *s, size_t n, int timeout_ms);

/* HTTP/1.0 server side: accepts one connection on lfd, reads the request line and headers,
 * asks handler for a response and closes. */
struct http_response {
  int status;
  const char *content_type;
  struct buf body;
};
typedef void (*http_handler)(void *ctx, const char *method, const char *target, struct http_response *res);
void http_serve_one(int lfd, http_handler handler, void *ctx);

/* HTTP/1.0 client: GET http://host:port/target. Returns the status code with the body in body,
 * or -1 with a reason in err. */
int http_get(const char *host, int port, const char *target, int timeout_ms, struct buf *body,
             char *err, size_t errlen);

/* /debug/vars: the introspection endpoint on INTROSPECTION_PORT (8089 unless set; mw sets it
 * for components with an HTTP heartbeat). vars_begin writes "{" and the fields every program
 * has (cmdline, memstats, uptime); the program adds its own and vars_end closes the object. */
struct intro {
  int fd;
  int port;
  int argc;
  char **argv;
  int64_t started_ms;
  long requests;
};
void intro_init(struct intro *in, int argc, char **argv);
void vars_begin(struct intro *in, struct buf *b);
void vars_end(struct buf *b);
/* Fields for vars_fields functions: each writes ,"key":value (vars_begin leaves the object
 * open after its own fields, so every later field starts with a comma). */
void jint(struct buf *b, const char *key, long long v);
void jdbl(struct buf *b, const char *key, double v);
void jstr(struct buf *b, const char *key, const char *v);
void jbool(struct buf *b, const char *key, int v);
/* Serves one request on in->fd: GET /debug/vars answers vars_begin, fields(ctx, b), vars_end. */
typedef void (*vars_fields)(void *ctx, struct buf *b);
void intro_serve(struct intro *in, vars_fields fields, void *ctx);
/* From now on the blocking helpers above (tcp_connect, send_all, http_get) answer /debug/vars
 * while they wait, so a slow peer does not make this program miss its own heartbeats. */
void intro_while_waiting(struct intro *in, vars_fields fields, void *ctx);

/* A metric travels as one text line: "<kind> <host> <unix_ms> <value...>\n", for example
 *   cpu host-03 1712345678123 87.5
 *   load host-03 1712345678123 1.20 0.80 0.50 4      (load1 load5 load15 cores)
 *   kernel host-03 1712345678123 5.10.0-28
 * Lines longer than METRIC_LINE_MAX are malformed. */
#define METRIC_LINE_MAX 160
struct metric {
  char kind[16];
  char host[64];
  long long ts;
  char value[METRIC_LINE_MAX];
};
/* Parses one line without its newline; 0 on success, -1 if malformed. */
int metric_parse(const char *line, size_t n, struct metric *m);

/* Accumulates bytes from a stream and hands out complete lines. */
struct line_reader {
  char data[8192];
  size_t len;
  int overlong; /* skipping the rest of a line that did not fit */
};
/* Reads what fd has; calls on_line for each complete line (without "\n"). Returns 0 while the
 * connection is open, -1 once it is closed or failed. */
int read_lines(int fd, struct line_reader *r, void (*on_line)(void *ctx, const char *line, size_t n),
               void *ctx);

#endif
