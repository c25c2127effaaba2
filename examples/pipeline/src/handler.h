/* The part the three handlers share: take metric lines on LISTEN_PORT, count them per host, let
 * the handler judge each one, and serve it all on /debug/vars. */
#ifndef PIPELINE_HANDLER_H
#define PIPELINE_HANDLER_H

#include "common.h"

struct handler_kind {
  const char *program; /* also the name in messages */
  const char *kind;    /* the metric kind it takes: "cpu", "load", "kernel" */
  int default_port;
  /* Returns 1 when the metric calls for an alert, writing why into why; 0 when fine; -1 when
   * the value does not parse. */
  int (*judge)(const struct metric *m, char *why, size_t n);
  /* Its settings for /debug/vars, written with jint/jstr/... */
  void (*settings)(struct buf *b);
};

int handler_main(int argc, char **argv, const struct handler_kind *k);

#endif
