/* ingestion: every POLL_DELAY_MS asks the source (SOURCE_HOST:SOURCE_PORT, GET /metrics) for
 * at most MAX_METRICS metrics, keeps them in a buffer of INGESTION_BUFFER_SIZE metrics and
 * pushes the buffer to the dispatcher (DISPATCHER_HOST:DISPATCHER_PORT, one metric per line
 * over a kept-open TCP connection). A full buffer stops the polling (the source keeps, then
 * drops, what is not fetched); an unreachable peer is retried every RETRY_DELAY_MS and counted,
 * never fatal. Delivery is at least once: a push that fails half-way is sent again whole. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ingestion {
  struct intro intro;
  const char *src_host, *dst_host;
  int src_port, dst_port;
  long poll_delay, max_metrics, cap, retry_delay, timeout;
  struct buf buffer; /* metric lines, each ending in "\n" */
  long buffer_len;   /* metrics in buffer */
  int fd;            /* to the dispatcher, -1 when not connected */
  int64_t next_poll, next_connect, last_poll_at;
  long long polls, poll_failures, skipped_polls, received, malformed, forwarded, dropped;
  long long pushes, push_failures, connects, disconnects;
  long last_poll_ms;
  char poll_error[256], push_error[256]; /* the last failure of each, "" once it works again */
  struct buf body;
};

/* A failure is logged when it first happens, counted every time. */
static void fail(char *slot, const char *what)
{
  if (strcmp(slot, what) != 0) say("%s (retrying)", what);
  snprintf(slot, 256, "%s", what);
}

static void recovered(char *slot, const char *what)
{
  if (*slot) say("%s works again", what);
  *slot = '\0';
}

static void poll_source(struct ingestion *g)
{
  long room = g->cap - g->buffer_len;
  if (room <= 0) {
    g->skipped_polls++;
    return;
  }
  long max = g->max_metrics < room ? g->max_metrics : room;
  char target[64], err[256];
  snprintf(target, sizeof target, "/metrics?max=%ld", max);
  int64_t t0 = now_ms();
  g->polls++;
  int status = http_get(g->src_host, g->src_port, target, (int)g->timeout, &g->body, err, sizeof err);
  g->last_poll_ms = (long)(now_ms() - t0);
  if (status != 200) {
    g->poll_failures++;
    if (status > 0) snprintf(err, sizeof err, "poll %s:%d: HTTP %d", g->src_host, g->src_port, status);
    fail(g->poll_error, err);
    return;
  }
  recovered(g->poll_error, "polling the source");
  g->last_poll_at = wall_ms();
  char *line = g->body.p;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) : strlen(line);
    struct metric m;
    if (metric_parse(line, n, &m) != 0) {
      g->malformed++;
    } else if (g->buffer_len >= g->cap) {
      g->dropped++;
    } else {
      buf_add(&g->buffer, line, n);
      buf_add(&g->buffer, "\n", 1);
      g->buffer_len++;
      g->received++;
    }
    line = nl ? nl + 1 : NULL;
  }
}

static void disconnect(struct ingestion *g)
{
  if (g->fd < 0) return;
  close(g->fd);
  g->fd = -1;
  g->disconnects++;
}

static void push(struct ingestion *g)
{
  if (g->buffer_len == 0) return;
  int64_t now = now_ms();
  char err[256];
  if (g->fd < 0) {
    if (now < g->next_connect) return;
    g->fd = tcp_connect(g->dst_host, g->dst_port, (int)g->timeout, err, sizeof err);
    if (g->fd < 0) {
      g->push_failures++;
      g->next_connect = now + g->retry_delay;
      fail(g->push_error, err);
      return;
    }
    g->connects++;
    say("connected to the dispatcher at %s:%d", g->dst_host, g->dst_port);
  }
  g->pushes++;
  if (send_all(g->fd, g->buffer.p, g->buffer.len, (int)g->timeout) != 0) {
    snprintf(err, sizeof err, "push to %s:%d: %s", g->dst_host, g->dst_port, strerror(errno));
    g->push_failures++;
    g->next_connect = now + g->retry_delay;
    disconnect(g);
    fail(g->push_error, err);
    return;
  }
  recovered(g->push_error, "pushing to the dispatcher");
  g->forwarded += g->buffer_len;
  g->buffer_len = 0;
  buf_reset(&g->buffer);
}

/* The dispatcher never writes; readable means it closed (or reset) the connection. */
static void check_peer(struct ingestion *g)
{
  char scratch[512];
  ssize_t r = recv(g->fd, scratch, sizeof scratch, 0);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    say("the dispatcher closed the connection");
    disconnect(g);
  }
}

static void fields(void *ctx, struct buf *b)
{
  struct ingestion *g = ctx;
  jint(b, "buffer_len", g->buffer_len);
  jint(b, "buffer_cap", g->cap);
  jint(b, "received", g->received);
  jint(b, "forwarded", g->forwarded);
  jint(b, "dropped", g->dropped);
  jint(b, "malformed", g->malformed);
  jint(b, "polls", g->polls);
  jint(b, "poll_failures", g->poll_failures);
  jint(b, "skipped_polls", g->skipped_polls);
  jint(b, "pushes", g->pushes);
  jint(b, "push_failures", g->push_failures);
  jint(b, "connects", g->connects);
  jint(b, "disconnects", g->disconnects);
  jbool(b, "connected", g->fd >= 0);
  jint(b, "last_poll_ms", g->last_poll_ms);
  jint(b, "last_poll_unix_ms", g->last_poll_at);
  jint(b, "poll_delay_ms", g->poll_delay);
  jint(b, "max_metrics", g->max_metrics);
  jstr(b, "source", g->src_host);
  jstr(b, "dispatcher", g->dst_host);
  jstr(b, "poll_error", g->poll_error);
  jstr(b, "push_error", g->push_error);
}

int main(int argc, char **argv)
{
  cfg_init("ingestion");
  signals_init();
  static struct ingestion g;
  g.src_host = env_str("SOURCE_HOST", "demoware");
  g.src_port = (int)env_long("SOURCE_PORT", 8080, 1, 65535);
  g.dst_host = env_str("DISPATCHER_HOST", "dispatcher");
  g.dst_port = (int)env_long("DISPATCHER_PORT", 7000, 1, 65535);
  g.poll_delay = env_long("POLL_DELAY_MS", 500, 1, 3600000);
  g.max_metrics = env_long("MAX_METRICS", 100, 1, 1000000);
  g.cap = env_long("INGESTION_BUFFER_SIZE", 1000, 1, 10000000);
  g.retry_delay = env_long("RETRY_DELAY_MS", 1000, 1, 3600000);
  g.timeout = env_long("TIMEOUT_MS", 2000, 1, 60000);
  g.fd = -1;
  intro_init(&g.intro, argc, argv);
  intro_while_waiting(&g.intro, fields, &g);
  say("polling %s:%d every %ld ms (at most %ld metrics, buffer %ld), pushing to %s:%d",
      g.src_host, g.src_port, g.poll_delay, g.max_metrics, g.cap, g.dst_host, g.dst_port);

  g.next_poll = now_ms();
  while (!stop_requested()) {
    int64_t now = now_ms();
    if (now >= g.next_poll) {
      poll_source(&g);
      g.next_poll += g.poll_delay;
      if (g.next_poll < now) g.next_poll = now + g.poll_delay;
      push(&g);
    } else if (g.fd < 0 && g.buffer_len > 0 && now >= g.next_connect) {
      push(&g);
    }
    int64_t wake = g.next_poll;
    if (g.fd < 0 && g.buffer_len > 0 && g.next_connect < wake) wake = g.next_connect;
    struct pollfd fds[2] = { { .fd = g.intro.fd, .events = POLLIN }, { .fd = g.fd, .events = POLLIN } };
    wait_events(fds, g.fd >= 0 ? 2 : 1, (int)(wake - now_ms()));
    if (fds[0].revents) intro_serve(&g.intro, fields, &g);
    if (g.fd >= 0 && fds[1].revents) check_peer(&g);
  }
  say("stopping (SIGTERM); %lld received, %lld forwarded, %lld still buffered", g.received, g.forwarded,
      (long long)g.buffer_len);
  return 0;
}
