/* Lexical helpers of mime/: lines, ASCII case, unfolding, RFC 2045 tokens and comments. */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_int.h"

int mi_puts(pu_buf *b, const char *s) { return pu_buf_add(b, s, strlen(s)); }

int mi_putc(pu_buf *b, char c) { return pu_buf_add(b, &c, 1); }

size_t mi_next_line(const char *b, size_t pos, size_t end)
{
    const char *nl = memchr(b + pos, '\n', end - pos);
    return nl ? (size_t)(nl - b) + 1 : end;
}

bool mi_is_blank_line(const char *b, size_t pos, size_t end)
{
    return (pos < end && b[pos] == '\n') || (pos + 1 < end && b[pos] == '\r' && b[pos + 1] == '\n');
}

int mi_ci_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

int mi_ci_str(const char *a, const char *b) { return a && mi_ci_eq(a, strlen(a), b); }

bool mi_type_is(const mime_part *p, const char *t) { return p->type && mi_ci_str(p->type, t); }

/* Unfolded value with surrounding whitespace trimmed and CR, LF, NUL removed. A bare CR (old
 * Mac line ends) ends the value, as Dovecot reads it: "To: a@x\rCc: b@x" is To a@x, not
 * a host "xCc"; for SEARCH (whole) it is a space, so no text after it is out of reach. */
char *mi_unfold_as(const char *b, size_t off, size_t len, bool whole)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = b[off + i];
        if (c == '\r' && (i + 1 == len || b[off + i + 1] != '\n')) {
            if (!whole)
                break;
            c = ' ';
        }
        if (c != '\r' && c != '\n' && c != '\0')
            s[n++] = c;
    }
    size_t st = 0;
    while (st < n && mi_is_wsp(s[st]))
        st++;
    while (n > st && mi_is_wsp(s[n - 1]))
        n--;
    memmove(s, s + st, n - st);
    s[n - st] = '\0';
    return s;
}

char *mi_unfold(const char *b, size_t off, size_t len) { return mi_unfold_as(b, off, len, false); }

char *mime_span_text(const mime_message *m, const mime_span *sp)
{
    return mi_unfold(m->buf, sp->off, sp->len);
}

/* RFC 2045 tokens and comments */

static bool is_tspecial(unsigned char c) { return c && strchr("()<>@,;:\\\"/[]?=", c) != NULL; }

static bool is_token_char(unsigned char c)
{
    /* 8-bit bytes accepted: raw UTF-8 in unquoted values is common and harmless here. */
    return c > ' ' && c != 0x7f && !is_tspecial(c);
}

void mime_skip_cfws(const char *s, size_t *i)
{
    for (;;) {
        while (s[*i] == ' ' || s[*i] == '\t')
            (*i)++;
        if (s[*i] != '(')
            return;
        int depth = 0;
        while (s[*i]) {
            if (s[*i] == '\\' && s[*i + 1])
                (*i)++;
            else if (s[*i] == '(')
                depth++;
            else if (s[*i] == ')' && --depth == 0) {
                (*i)++;
                break;
            }
            (*i)++;
        }
    }
}

char *mi_dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

size_t mime_token_len(const char *s)
{
    size_t n = 0;
    while (is_token_char((unsigned char)s[n]))
        n++;
    return n;
}
