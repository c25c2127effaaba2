/* The handlers' common loop: LISTEN_PORT takes metric lines (from the dispatcher), each is judged
 * by the handler's rule; an alert is counted every time and logged when a host starts alerting.
 * CRASH_AFTER_N > 0 makes the handler exit with status 3 after that many metrics, so the stack
 * can show mw bringing a crashed component back. */
#include "handler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS_MAX 16
#define HOSTS_MAX 256

struct host_state {
  char name[64];
  char last[METRIC_LINE_MAX];
  long long received, alerts;
  int alerting;
};

struct handler {
  const struct handler_kind *k;
  struct intro intro;
  int lfd, port;
  long crash_after;
  int clients[CLIENTS_MAX];
  struct line_reader in[CLIENTS_MAX];
  struct host_state hosts[HOSTS_MAX];
  int nhosts;
  long long received, alerts, alerts_raised, malformed, misrouted, other_hosts;
};

static struct host_state *host(struct handler *h, const char *name)
{
  for (int i = 0; i < h->nhosts; i++) {
    if (strcmp(h->hosts[i].name, name) == 0) return &h->hosts[i];
  }
  if (h->nhosts == HOSTS_MAX) return NULL;
  struct host_state *s = &h->hosts[h->nhosts++];
  snprintf(s->name, sizeof s->name, "%s", name);
  return s;
}

static void on_line(void *ctx, const char *line, size_t n)
{
  struct handler *h = ctx;
  struct metric m;
  if (metric_parse(line, n, &m) != 0) {
    h->malformed++;
    return;
  }
  if (strcmp(m.kind, h->k->kind) != 0) {
    h->misrouted++;
    return;
  }
  char why[256] = "";
  int verdict = h->k->judge(&m, why, sizeof why);
  if (verdict < 0) {
    h->malformed++;
    return;
  }
  h->received++;
  struct host_state *s = host(h, m.host);
  if (!s) h->other_hosts++;
  if (s) {
    s->received++;
    snprintf(s->last, sizeof s->last, "%s", m.value);
  }
  if (verdict > 0) {
    h->alerts++;
    if (s) s->alerts++;
    if (!s || !s->alerting) {
      h->alerts_raised++;
      printf("ALERT %s: %s\n", m.host, why);
      fflush(stdout);
    }
  } else if (s && s->alerting) {
    printf("ok    %s: back to normal (%s)\n", m.host, m.value);
    fflush(stdout);
  }
  if (s) s->alerting = verdict > 0;
  if (h->crash_after > 0 && h->received >= h->crash_after) {
    say("CRASH_AFTER_N=%ld metrics reached: exiting with status 3 (a simulated crash)", h->crash_after);
    exit(3);
  }
}

static void fields(void *ctx, struct buf *b)
{
  struct handler *h = ctx;
  int clients = 0;
  for (int i = 0; i < CLIENTS_MAX; i++) clients += h->clients[i] >= 0;
  jstr(b, "kind", h->k->kind);
  jint(b, "received", h->received);
  jint(b, "alerts", h->alerts);
  jint(b, "alerts_raised", h->alerts_raised);
  jint(b, "malformed", h->malformed);
  jint(b, "misrouted", h->misrouted);
  jint(b, "clients", clients);
  jint(b, "crash_after", h->crash_after);
  h->k->settings(b);
  buf_printf(b, ",\"hosts\":{");
  for (int i = 0; i < h->nhosts; i++) {
    struct host_state *s = &h->hosts[i];
    buf_printf(b, "%s", i ? "," : "");
    buf_json_str(b, s->name);
    buf_printf(b, ":{\"received\":%lld,\"alerts\":%lld,\"alerting\":%s,\"last\":", s->received, s->alerts,
               s->alerting ? "true" : "false");
    buf_json_str(b, s->last);
    buf_printf(b, "}");
  }
  buf_printf(b, "}");
}

static void accept_client(struct handler *h)
{
  int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  for (int i = 0; i < CLIENTS_MAX; i++) {
    if (h->clients[i] >= 0) continue;
    h->clients[i] = fd;
    h->in[i].len = 0;
    h->in[i].overlong = 0;
    return;
  }
  close(fd);
}

int handler_main(int argc, char **argv, const struct handler_kind *k)
{
  static struct handler h;
  h.k = k;
  h.port = (int)env_long("LISTEN_PORT", k->default_port, 1, 65535);
  h.crash_after = env_long("CRASH_AFTER_N", 0, 0, 1000000000);
  for (int i = 0; i < CLIENTS_MAX; i++) h.clients[i] = -1;
  intro_init(&h.intro, argc, argv);
  intro_while_waiting(&h.intro, fields, &h);
  h.lfd = tcp_listen(h.port);
  if (h.lfd < 0) die("cannot listen on LISTEN_PORT %d: %s", h.port, strerror(errno));
  if (h.crash_after > 0) {
    say("taking %s metrics on :%d; will crash after %ld of them (CRASH_AFTER_N)", k->kind, h.port, h.crash_after);
  } else {
    say("taking %s metrics on :%d", k->kind, h.port);
  }

  struct pollfd fds[2 + CLIENTS_MAX];
  while (!stop_requested()) {
    fds[0] = (struct pollfd){ .fd = h.intro.fd, .events = POLLIN };
    fds[1] = (struct pollfd){ .fd = h.lfd, .events = POLLIN };
    for (int i = 0; i < CLIENTS_MAX; i++) fds[2 + i] = (struct pollfd){ .fd = h.clients[i], .events = POLLIN };
    wait_events(fds, 2 + CLIENTS_MAX, 1000);
    if (fds[0].revents) intro_serve(&h.intro, fields, &h);
    if (fds[1].revents) accept_client(&h);
    for (int i = 0; i < CLIENTS_MAX; i++) {
      if (h.clients[i] < 0 || !fds[2 + i].revents) continue;
      if (read_lines(h.clients[i], &h.in[i], on_line, &h) != 0) {
        close(h.clients[i]);
        h.clients[i] = -1;
      }
    }
  }
  say("stopping (SIGTERM); %lld metrics, %lld alerts", h.received, h.alerts);
  return 0;
}
