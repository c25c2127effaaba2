/* demoware: the metrics source. It makes up host metrics (cpu %, load averages, kernel
 * versions) for HOSTS fake hosts every SAMPLE_INTERVAL_MS, keeps them in a ring of
 * DEMOWARE_BUFFER_SIZE lines (the oldest go when it is full), and hands them out on
 * GET /metrics?max=N (plain text, one metric per line, oldest first) on LISTEN_PORT. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOSTS_MAX 256

static const char *const KERNELS[] = { "4.19.0-26", "5.10.0-28", "6.1.0-18", "6.1.0-21" };
#define NKERNELS (sizeof KERNELS / sizeof KERNELS[0])

struct host {
  char name[32];
  int cores;
  double cpu, load1, load5, load15;
  size_t kernel;
};

struct demoware {
  struct intro intro;
  int lfd, port;
  int nhosts;
  struct host hosts[HOSTS_MAX];
  uint64_t rng;
  long interval_ms;
  double spike_rate;
  /* the ring of metric lines */
  char (*ring)[METRIC_LINE_MAX + 1];
  long cap, head, len;
  long batch_default, batch_max;
  /* counters */
  long long samples, generated, served, dropped, requests;
  int64_t next_sample;
};

/* xorshift64*: enough randomness for fake metrics, and repeatable from SEED. */
static double uniform(struct demoware *d)
{
  d->rng ^= d->rng >> 12;
  d->rng ^= d->rng << 25;
  d->rng ^= d->rng >> 27;
  return (double)((d->rng * 0x2545F4914F6CDD1DULL) >> 11) * 0x1p-53;
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static void push_line(struct demoware *d, const char *line)
{
  if (d->len == d->cap) {
    d->head = (d->head + 1) % d->cap;
    d->len--;
    d->dropped++;
  }
  long slot = (d->head + d->len) % d->cap;
  snprintf(d->ring[slot], METRIC_LINE_MAX + 1, "%s", line);
  d->len++;
  d->generated++;
}

/* One sample of every host: cpu and load drift around a mean with the odd spike; a kernel is
 * now and then upgraded to the newest or reinstalled with any. */
static void sample(struct demoware *d)
{
  long long ts = wall_ms();
  char line[METRIC_LINE_MAX + 1];
  for (int i = 0; i < d->nhosts; i++) {
    struct host *h = &d->hosts[i];
    h->cpu = clamp(h->cpu + (40 - h->cpu) * 0.2 + (uniform(d) - 0.5) * 20, 0, 100);
    if (uniform(d) < d->spike_rate) h->cpu = 92 + uniform(d) * 8;
    double target = h->cores * 0.6;
    h->load1 = clamp(h->load1 + (target - h->load1) * 0.3 + (uniform(d) - 0.5) * h->cores * 0.3, 0, 1e3);
    if (uniform(d) < d->spike_rate) h->load1 = h->cores * (1.2 + uniform(d));
    h->load5 += (h->load1 - h->load5) * 0.1;
    h->load15 += (h->load1 - h->load15) * 0.04;
    double k = uniform(d);
    if (k < 0.005) h->kernel = NKERNELS - 1;
    else if (k < 0.007) h->kernel = (size_t)(uniform(d) * NKERNELS) % NKERNELS;

    snprintf(line, sizeof line, "cpu %s %lld %.1f", h->name, ts, h->cpu);
    push_line(d, line);
    snprintf(line, sizeof line, "load %s %lld %.2f %.2f %.2f %d", h->name, ts, h->load1, h->load5,
             h->load15, h->cores);
    push_line(d, line);
    snprintf(line, sizeof line, "kernel %s %lld %s", h->name, ts, KERNELS[h->kernel]);
    push_line(d, line);
  }
  d->samples++;
}

static void on_request(void *ctx, const char *method, const char *target, struct http_response *res)
{
  struct demoware *d = ctx;
  d->requests++;
  res->content_type = "text/plain";
  if (strncmp(target, "/metrics", 8) != 0 || (target[8] != '\0' && target[8] != '?')) {
    res->status = 404;
    buf_printf(&res->body, "try GET /metrics?max=N\n");
    return;
  }
  if (strcmp(method, "GET") != 0) {
    res->status = 405;
    buf_printf(&res->body, "GET only\n");
    return;
  }
  long max = d->batch_default;
  const char *q = strstr(target, "max=");
  if (q) {
    char *end;
    long v = strtol(q + 4, &end, 10);
    if (end == q + 4 || v < 0) {
      res->status = 400;
      buf_printf(&res->body, "max must be a whole number >= 0\n");
      return;
    }
    max = v;
  }
  if (max > d->batch_max) max = d->batch_max;
  long n = 0;
  while (n < max && d->len > 0) {
    buf_printf(&res->body, "%s\n", d->ring[d->head]);
    d->head = (d->head + 1) % d->cap;
    d->len--;
    n++;
  }
  d->served += n;
}

static void fields(void *ctx, struct buf *b)
{
  struct demoware *d = ctx;
  jint(b, "hosts", d->nhosts);
  jint(b, "sample_interval_ms", d->interval_ms);
  jint(b, "samples", d->samples);
  jint(b, "generated", d->generated);
  jint(b, "served", d->served);
  jint(b, "dropped", d->dropped);
  jint(b, "requests", d->requests);
  jint(b, "buffer_len", d->len);
  jint(b, "buffer_cap", d->cap);
  jint(b, "listen_port", d->port);
}

int main(int argc, char **argv)
{
  cfg_init("demoware");
  signals_init();
  static struct demoware d;
  d.port = (int)env_long("LISTEN_PORT", 8080, 1, 65535);
  d.nhosts = (int)env_long("HOSTS", 8, 1, HOSTS_MAX);
  d.interval_ms = env_long("SAMPLE_INTERVAL_MS", 1000, 10, 3600000);
  d.cap = env_long("DEMOWARE_BUFFER_SIZE", 10000, 1, 1000000);
  d.batch_default = env_long("DEMOWARE_BATCH", 100, 1, 1000000);
  d.batch_max = env_long("DEMOWARE_BATCH_MAX", 10000, 1, 1000000);
  d.spike_rate = env_double("SPIKE_RATE", 0.03, 0, 1);
  d.rng = (uint64_t)env_long("SEED", 1, 1, 0x7fffffff) * 0x9E3779B97F4A7C15ULL;
  d.ring = calloc((size_t)d.cap, sizeof *d.ring);
  if (!d.ring) die("out of memory for DEMOWARE_BUFFER_SIZE=%ld", d.cap);
  static const int CORES[] = { 2, 4, 8, 16 };
  for (int i = 0; i < d.nhosts; i++) {
    struct host *h = &d.hosts[i];
    snprintf(h->name, sizeof h->name, "host-%02d", i + 1);
    h->cores = CORES[i % 4];
    h->cpu = 20 + uniform(&d) * 40;
    h->load1 = h->load5 = h->load15 = h->cores * 0.5;
    h->kernel = (size_t)i % NKERNELS;
  }
  intro_init(&d.intro, argc, argv);
  intro_while_waiting(&d.intro, fields, &d);
  d.lfd = tcp_listen(d.port);
  if (d.lfd < 0) die("cannot listen on LISTEN_PORT %d: %s", d.port, strerror(errno));
  say("serving %d hosts' metrics on :%d/metrics every %ld ms, introspection on :%d/debug/vars",
      d.nhosts, d.port, d.interval_ms, d.intro.port);

  d.next_sample = now_ms();
  while (!stop_requested()) {
    int64_t now = now_ms();
    if (now >= d.next_sample) {
      sample(&d);
      d.next_sample += d.interval_ms;
      if (d.next_sample < now) d.next_sample = now + d.interval_ms;  /* fell behind: skip */
    }
    struct pollfd fds[2] = { { .fd = d.intro.fd, .events = POLLIN }, { .fd = d.lfd, .events = POLLIN } };
    wait_events(fds, 2, (int)(d.next_sample - now_ms()));
    if (fds[0].revents) intro_serve(&d.intro, fields, &d);
    if (fds[1].revents) http_serve_one(d.lfd, on_request, &d);
  }
  say("stopping (SIGTERM); %lld metrics generated, %lld served", d.generated, d.served);
  return 0;
}
