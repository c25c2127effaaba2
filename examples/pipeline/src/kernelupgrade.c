/* kernelupgrade: alerts when a host runs a kernel older than MIN_KERNEL (default "5.10"),
 * comparing the dotted numbers of the version left to right ("4.19.0-26" < "5.10"). */
#include "handler.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 4

static const char *min_kernel;
static long min_parts[PARTS];

/* "5.10.0-28" -> {5, 10, 0, 28}; missing parts are 0. -1 if it does not start with a digit. */
static int parse_version(const char *s, long out[PARTS])
{
  memset(out, 0, sizeof(long) * PARTS);
  if (!isdigit((unsigned char)*s)) return -1;
  for (int i = 0; i < PARTS && *s; i++) {
    char *end;
    out[i] = strtol(s, &end, 10);
    if (end == s) break;
    s = end;
    if (*s != '.' && *s != '-') break;
    s++;
  }
  return 0;
}

static int judge(const struct metric *m, char *why, size_t n)
{
  long v[PARTS];
  if (parse_version(m->value, v) != 0) return -1;
  for (int i = 0; i < PARTS; i++) {
    if (v[i] > min_parts[i]) return 0;
    if (v[i] < min_parts[i]) {
      snprintf(why, n, "kernel %s is older than %s: upgrade it", m->value, min_kernel);
      return 1;
    }
  }
  return 0;
}

static void settings(struct buf *b) { jstr(b, "min_kernel", min_kernel); }

int main(int argc, char **argv)
{
  static const struct handler_kind k = { "kernelupgrade", "kernel", 7003, judge, settings };
  cfg_init(k.program);
  signals_init();
  min_kernel = env_str("MIN_KERNEL", "5.10");
  if (parse_version(min_kernel, min_parts) != 0) die("bad MIN_KERNEL=%s: expected a version like 5.10", min_kernel);
  return handler_main(argc, argv, &k);
}
