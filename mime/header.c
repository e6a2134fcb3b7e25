/* Header fields of one header block: walking them, and choosing some as they stand. */
#include <string.h>
#include <strings.h>

#include "mime/mime_int.h"

void mi_for_each_field(const char *b, size_t off, size_t len, bool all, mi_field_fn fn, void *arg)
{
    size_t pos = off, end = off + len;
    while (pos < end && !mi_is_blank_line(b, pos, end)) {
        size_t fstart = pos;
        pos = mi_next_line(b, pos, end);
        while (pos < end && mi_is_wsp(b[pos]))
            pos = mi_next_line(b, pos, end);
        size_t fend = pos;
        if (fend > fstart && b[fend - 1] == '\n')
            fend--;
        if (fend > fstart && b[fend - 1] == '\r')
            fend--;
        const char *colon = mi_is_wsp(b[fstart]) ? NULL : memchr(b + fstart, ':', fend - fstart);
        size_t nlen = colon ? (size_t)(colon - (b + fstart)) : 0;
        while (nlen && mi_is_wsp(b[fstart + nlen - 1]))
            nlen--;
        if (!nlen) {
            if (all)
                fn(arg, NULL, 0, fstart, fend - fstart);
            continue;
        }
        size_t voff = (size_t)(colon - b) + 1;
        fn(arg, b + fstart, nlen, voff, fend - voff);
    }
}

static bool listed(const char *const *names, const size_t *lens, size_t n, const char *name, size_t nlen)
{
    for (size_t i = 0; i < n; i++)
        if (lens[i] == nlen && strncasecmp(names[i], name, nlen) == 0)
            return true;
    return false;
}

static int select_fields(const char *b, size_t pos, size_t end, const char *const *names, const size_t *lens,
                         size_t n, bool exclude, pu_buf *o)
{
    while (pos < end && !mi_is_blank_line(b, pos, end)) {
        size_t fstart = pos;
        pos = mi_next_line(b, pos, end);
        while (pos < end && mi_is_wsp(b[pos]))
            pos = mi_next_line(b, pos, end);
        const char *colon = memchr(b + fstart, ':', pos - fstart);
        if (!colon || mi_is_wsp(b[fstart])) {
            /* not a field (no colon, a continuation with nothing to continue): no name
             * matches it, so exclude keeps it, as Dovecot does */
            if (!exclude)
                continue;
        } else {
            size_t nlen = (size_t)(colon - (b + fstart));
            while (nlen && mi_is_wsp(b[fstart + nlen - 1]))
                nlen--;
            if (listed(names, lens, n, b + fstart, nlen) == exclude)
                continue;
        }
        if (pu_buf_add(o, b + fstart, pos - fstart) < 0)
            return -1;
        if (b[pos - 1] != '\n' && pu_buf_add(o, "\r\n", 2) < 0)
            return -1;
    }
    return 0;
}

int mime_header_select(const mime_message *m, const mime_part *p, const char *const *names,
                       const size_t *lens, size_t n, bool exclude, pu_buf *o)
{
    return select_fields(m->buf, p->hdr_off, p->hdr_off + p->hdr_len, names, lens, n, exclude, o);
}

int mime_block_select(const char *hdr, size_t len, const char *const *names, const size_t *lens, size_t n,
                      bool exclude, pu_buf *o)
{
    return select_fields(hdr, 0, len, names, lens, n, exclude, o);
}
