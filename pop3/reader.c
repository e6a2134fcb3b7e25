/* The bounded, incremental line reader: one fixed buffer, lines handed out whole, bad lines
 * (too long, NUL) discarded up to their LF and reported once. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pop3/pop3.h"

struct pp_reader {
    size_t max;        /* octets allowed for the current line, line end included */
    size_t len;        /* bytes of the current line buffered (a CR before LF included) */
    size_t line_len;   /* the returned line's length */
    bool returned;     /* buf holds a returned line, to be wiped on the next feed */
    bool discard;      /* skipping a bad line up to its LF */
    const char *err;   /* why it is being discarded; then the error to report */
    char buf[PP_AUTH_LINE_MAX];
};

pp_reader *pp_reader_new(void)
{
    pp_reader *r = calloc(1, sizeof *r);
    if (r)
        r->max = PP_LINE_MAX;
    return r;
}

void pp_reader_free(pp_reader *r)
{
    if (!r)
        return;
    sodium_memzero(r, sizeof *r);
    free(r);
}

void pp_reader_reset(pp_reader *r)
{
    sodium_memzero(r->buf, sizeof r->buf);
    r->len = r->line_len = 0;
    r->returned = r->discard = false;
    r->err = NULL;
    r->max = PP_LINE_MAX;
}

static void forget_returned(pp_reader *r)
{
    if (!r->returned)
        return;
    sodium_memzero(r->buf, r->line_len + 1); /* the line and its NUL (which replaced a CR) */
    r->returned = false;
    r->line_len = 0;
}

void pp_reader_wipe_line(pp_reader *r)
{
    forget_returned(r);
}

pp_read_status pp_reader_feed(pp_reader *r, const void *data, size_t len, size_t *used)
{
    const unsigned char *d = data;
    forget_returned(r);
    if (r->err && !r->discard)
        r->err = NULL; /* the error was reported by the previous call */
    for (size_t i = 0; i < len; i++) {
        unsigned char b = d[i];
        if (b == '\n') {
            *used = i + 1;
            if (r->discard) {
                r->discard = false;
                r->len = 0;
                r->max = PP_LINE_MAX;
                return PP_READ_ERROR;
            }
            size_t n = r->len;
            if (n && r->buf[n - 1] == '\r')
                n--;
            r->buf[n] = '\0';
            r->line_len = n;
            r->len = 0;
            r->returned = true;
            r->max = PP_LINE_MAX;
            return PP_READ_LINE;
        }
        if (r->discard)
            continue;
        if (b == '\0' || r->len + 1 > r->max - 1) {
            /* A NUL, or a byte that leaves no room for the LF within max octets. */
            r->err = b == '\0' ? PP_ERR_TXT_NUL : PP_ERR_TXT_LINE_TOO_LONG;
            r->discard = true;
            sodium_memzero(r->buf, r->len);
            r->len = 0;
            continue;
        }
        r->buf[r->len++] = (char)b;
    }
    *used = len;
    return PP_READ_MORE;
}

const char *pp_reader_line(const pp_reader *r, size_t *len)
{
    if (len)
        *len = r->returned ? r->line_len : 0;
    return r->returned ? r->buf : "";
}

const char *pp_reader_error(const pp_reader *r)
{
    return r->err ? r->err : PP_ERR_TXT_LINE_TOO_LONG;
}

int pp_reader_auth_line(pp_reader *r)
{
    if (r->len || r->discard)
        return -1;
    r->max = PP_AUTH_LINE_MAX;
    return 0;
}

bool pp_reader_pending(const pp_reader *r)
{
    return r->len > 0 || r->discard;
}
