/* Internal to mime/: what its files share. Not for other modules (see mime.h). */
#ifndef POSTERN_MIME_INT_H
#define POSTERN_MIME_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "mime/mime.h"

struct mime_message {
    const char *buf;
    size_t len;
    mime_limits lim;
    size_t nparts;
    mime_part *root;
};

/* lex.c */
size_t mi_next_line(const char *b, size_t pos, size_t end);
bool mi_is_blank_line(const char *b, size_t pos, size_t end);
static inline bool mi_is_wsp(char c) { return c == ' ' || c == '\t'; }
int mi_ci_eq(const char *a, size_t alen, const char *b); /* ASCII case-insensitive */
int mi_ci_str(const char *a, const char *b);             /* a may be NULL */
bool mi_type_is(const mime_part *p, const char *t);
/* Unfolded value of [off, off+len) of b: see mime_span_text. whole: a bare CR is a space
 * instead of the end (SEARCH must reach text after it). */
char *mi_unfold_as(const char *b, size_t off, size_t len, bool whole);
char *mi_unfold(const char *b, size_t off, size_t len);
char *mi_dup_n(const char *s, size_t n);
int mi_puts(pu_buf *b, const char *s);
int mi_putc(pu_buf *b, char c);

/* header.c: calls fn for each "Name: value" field of a header block (value excludes the
 * final line end, keeps inner folding). Lines that are no field (no colon, a continuation
 * with nothing before it) are skipped, as other parsers do, unless all is set: then fn gets
 * them with name NULL and the whole line as the value. */
typedef void (*mi_field_fn)(void *arg, const char *name, size_t nlen, size_t voff, size_t vlen);
void mi_for_each_field(const char *b, size_t off, size_t len, bool all, mi_field_fn fn, void *arg);

/* params.c: ";" attribute "=" value pairs from s[i..]; RFC 2231 joining and decoding. */
int mi_parse_params(const char *s, size_t i, mime_params *out);
int mi_rfc2231_decode(mime_params *ps);
void mi_params_free(mime_params *ps);

/* decode.c: RFC 2047 words -> UTF-8, appended; the raw value when libetpan rejects it. */
int mi_append_decoded(pu_buf *o, const char *s);

#endif
