/* cpuusage: alerts when a host's CPU use is above CPU_THRESHOLD percent (default 90). */
#include "handler.h"

#include <stdio.h>
#include <stdlib.h>

static double threshold;

static int judge(const struct metric *m, char *why, size_t n)
{
  char *end;
  double cpu = strtod(m->value, &end);
  if (end == m->value || cpu < 0 || cpu > 100) return -1;
  if (cpu <= threshold) return 0;
  snprintf(why, n, "cpu %.1f%% > %.1f%%", cpu, threshold);
  return 1;
}

static void settings(struct buf *b) { jdbl(b, "cpu_threshold", threshold); }

int main(int argc, char **argv)
{
  static const struct handler_kind k = { "cpuusage", "cpu", 7001, judge, settings };
  cfg_init(k.program);
  signals_init();
  threshold = env_double("CPU_THRESHOLD", 90, 0, 100);
  return handler_main(argc, argv, &k);
}
