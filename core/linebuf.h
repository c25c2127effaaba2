/* A growable byte buffer that hands out complete lines; shared by http streams and mw.lines. */
#ifndef MW_LINEBUF_H
#define MW_LINEBUF_H
#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap, off;     /* bytes [off, len) are unread */
} mw_linebuf;

int mw_linebuf_append(mw_linebuf *b, const char *p, size_t n);   /* 0 ok, -1 no memory */
/* Next complete line without its LF (and a CR before it); 1 when one was found. */
int mw_linebuf_line(mw_linebuf *b, const char **line, size_t *n);
/* Everything unread (for raw reads and a last line without LF). */
size_t mw_linebuf_take(mw_linebuf *b, const char **p);
size_t mw_linebuf_unread(const mw_linebuf *b);
void mw_linebuf_free(mw_linebuf *b);
#endif
