/* The .dockerignore matcher behind mw.tar, free of Lua so a fuzzer or another module can link it. */
#ifndef MW_TAR_H
#define MW_TAR_H

#include <stddef.h>

/* Whether one pattern (Go filepath.Match syntax plus "**") matches the whole of path.
 * A malformed pattern (unterminated "[", trailing "\") never matches. */
int mw_tar_match(const char *pattern, const char *path);

/* Whether path is excluded by a .dockerignore pattern list, already cleaned as
 * tar.parse_ignore returns it ("!" marks an exception): the last pattern matching
 * path or one of its parent directories decides. */
int mw_tar_excluded(const char *const *patterns, size_t n, const char *path);

/* Go's filepath.Clean for "/"-separated paths: writes at most len + 2 bytes
 * (NUL included) to out and returns the length written. */
size_t mw_tar_clean(char *out, const char *in, size_t len);

#endif
