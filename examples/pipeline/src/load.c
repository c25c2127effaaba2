/* load: alerts when a host's 1-minute load average is above its core count times LOAD_FACTOR
 * (default 1.0): more runnable work than CPUs to run it. */
#include "handler.h"

#include <stdio.h>

static double factor;

static int judge(const struct metric *m, char *why, size_t n)
{
  double l1, l5, l15;
  int cores;
  if (sscanf(m->value, "%lf %lf %lf %d", &l1, &l5, &l15, &cores) != 4 || cores < 1 || l1 < 0) return -1;
  double limit = cores * factor;
  if (l1 <= limit) return 0;
  snprintf(why, n, "load %.2f > %.2f (%d cores x %.2f)", l1, limit, cores, factor);
  return 1;
}

static void settings(struct buf *b) { jdbl(b, "load_factor", factor); }

int main(int argc, char **argv)
{
  static const struct handler_kind k = { "load", "load", 7002, judge, settings };
  cfg_init(k.program);
  signals_init();
  factor = env_double("LOAD_FACTOR", 1.0, 0.01, 1000);
  return handler_main(argc, argv, &k);
}
