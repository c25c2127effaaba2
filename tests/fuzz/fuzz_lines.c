/* libFuzzer target: core/lines.c's line buffer against a plain reference splitter, with the
 * input cut into chunks of sizes drawn from its first byte, and raw takes mixed in. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "linebuf.h"

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "fuzz_lines: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t x = data[0] * 2654435761u + 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1, fed = 0, pos = 0;    /* pos: what the reference has handed out */
    mw_linebuf b;
    memset(&b, 0, sizeof b);
    while (fed < n) {
        x = x * 1103515245u + 12345u;
        size_t k = 1 + (x >> 16) % 37;
        if (k > n - fed) k = n - fed;
        CHECK(mw_linebuf_append(&b, in + fed, k) == 0, "append failed");
        fed += k;
        const char *line;
        size_t len;
        while (mw_linebuf_line(&b, &line, &len)) {
            const char *nl = memchr(in + pos, '\n', fed - pos);
            CHECK(nl != NULL, "a line where the input has no newline (pos %zu)", pos);
            size_t want = (size_t)(nl - (in + pos));
            if (want > 0 && in[pos + want - 1] == '\r') want--;
            CHECK(len == want, "line length %zu, want %zu", len, want);
            CHECK(memcmp(line, in + pos, len) == 0, "line bytes differ at %zu", pos);
            pos = (size_t)(nl - in) + 1;
        }
        CHECK(memchr(in + pos, '\n', fed - pos) == NULL, "a complete line was not handed out");
        CHECK(mw_linebuf_unread(&b) == fed - pos, "unread %zu, want %zu", mw_linebuf_unread(&b), fed - pos);
        if (((x >> 8) & 15) == 0) {                /* now and then a raw read of everything */
            const char *p;
            size_t m = mw_linebuf_take(&b, &p);
            CHECK(m == fed - pos, "take %zu, want %zu", m, fed - pos);
            CHECK(m == 0 || memcmp(p, in + pos, m) == 0, "take bytes differ");
            pos = fed;
        }
    }
    const char *p;
    size_t m = mw_linebuf_take(&b, &p);
    CHECK(m == n - pos && (m == 0 || memcmp(p, in + pos, m) == 0), "rest differs");
    CHECK(mw_linebuf_unread(&b) == 0, "unread after take");
    mw_linebuf_free(&b);
    return 0;
}
