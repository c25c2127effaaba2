/* libFuzzer target: the .dockerignore matcher of core/tar.c. Input: a path on the first
 * line, patterns (as tar.parse_ignore leaves them, "!" for exceptions) on the next ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tar.h"

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "fuzz_ignore: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)
#define MAX_PATTERNS 32

/* Cleans into a buffer of exactly the documented size, so ASan sees any overrun. */
static char *clean(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len + 2);
    CHECK(out != NULL, "no memory");
    size_t r = mw_tar_clean(out, s, len);
    CHECK(r <= len + 1, "clean wrote %zu for %zu bytes", r, len);
    CHECK(out[r] == 0, "clean's result is not terminated");
    CHECK(strlen(out) == r, "clean's length is wrong");
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    CHECK(text != NULL, "no memory");
    memcpy(text, data, size);
    text[size] = 0;
    const char *lines[MAX_PATTERNS + 1];
    size_t n = 0;
    char *s = text;
    while (n < MAX_PATTERNS + 1) {
        lines[n++] = s;
        char *nl = strchr(s, '\n');
        if (!nl) break;
        *nl = 0;
        s = nl + 1;
    }
    const char *path = lines[0];
    char *c1 = clean(path);
    char *c2 = clean(c1);
    CHECK(strcmp(c1, c2) == 0, "clean is not idempotent: \"%s\" -> \"%s\" -> \"%s\"", path, c1, c2);
    for (size_t i = 1; i < n; i++) {
        (void)mw_tar_match(lines[i], path);
        (void)mw_tar_match(lines[i], c1);
        char *pc = clean(lines[i][0] == '!' ? lines[i] + 1 : lines[i]);
        free(pc);
    }
    /* a pattern without metacharacters matches exactly itself */
    if (!strpbrk(path, "*?[]\\")) CHECK(mw_tar_match(path, path), "\"%s\" does not match itself", path);
    (void)mw_tar_excluded(lines + 1, n - 1, path);
    (void)mw_tar_excluded(lines + 1, n - 1, c1);
    free(c1);
    free(c2);
    free(text);
    return 0;
}
