/* Decoded text for SEARCH: header values (RFC 2047, addresses as text), the Date: field, and
 * the text of the body (transfer encodings, charsets). libetpan does the decoding. */
#include <libetpan/libetpan.h>

#include <stdlib.h>
#include <string.h>

#include "mime/mime_int.h"

/* RFC 2047 words -> UTF-8; raw 8-bit text is taken as UTF-8. Falls back to the raw value
 * when libetpan rejects it. */
int mi_append_decoded(pu_buf *o, const char *s)
{
    size_t idx = 0;
    char *res = NULL;
    if (*s && mailmime_encoded_phrase_parse("utf-8", s, strlen(s), &idx, "utf-8", &res) ==
                  MAILIMF_NO_ERROR && res) {
        int rc = mi_puts(o, res);
        free(res);
        return rc;
    }
    return mi_puts(o, s);
}

struct hdr_walk {
    const char *buf;
    pu_buf *o;
    const char *want; /* NULL: every field */
    bool first;       /* only the first field named want */
    int found;        /* 1 found, -1 out of memory */
};

static bool address_field(const char *name, size_t nlen)
{
    static const char *const names[] = {"From", "Sender", "Reply-To", "To", "Cc", "Bcc"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (mi_ci_eq(name, nlen, names[i]))
            return true;
    return false;
}

/* An address field's value as the addresses it holds ("name <mailbox@host>, ..."), after
 * the decoded value when it reads differently: comments, quoting and spaces around "@" and
 * "." are gone from it, so "user@domain.org" finds "<user (c)@ (c) domain.org>". */
struct addr_text {
    pu_buf *o;
    size_t count;
};

/* "name <mailbox@host>": group markers are not addresses. */
static int put_addr_text(void *arg, mime_addr_kind kind, const char *name, const char *adl, const char *mbox,
                         const char *host)
{
    struct addr_text *at = arg;
    (void)adl;
    if (kind != MIME_ADDR_MAILBOX)
        return 0;
    bool has_mbox = mbox != NULL, has_host = host != NULL;
    if ((at->count++ && mi_puts(at->o, ", ") < 0) ||
        (name && *name && (mi_append_decoded(at->o, name) < 0 || mi_putc(at->o, ' ') < 0)))
        return -1;
    return mi_putc(at->o, '<') < 0 || (has_mbox && mi_puts(at->o, mbox) < 0) ||
                   (has_host && (mi_putc(at->o, '@') < 0 || mi_puts(at->o, host) < 0)) ||
                   mi_putc(at->o, '>') < 0
               ? -1
               : 0;
}

static int append_address_text(pu_buf *o, const char *raw, size_t value_at)
{
    pu_buf t = {0};
    struct addr_text at = {&t, 0};
    int rc = mime_addresses(raw, put_addr_text, &at);
    if (rc == 0 && t.len &&
        (t.len != o->len - value_at || memcmp(t.data, o->data + value_at, t.len) != 0))
        rc = mi_putc(o, '\n') < 0 || pu_buf_add(o, t.data, t.len) < 0 ? -1 : 0;
    pu_buf_free(&t);
    return rc;
}

static void hdr_walk_field(void *arg, const char *name, size_t nlen, size_t voff, size_t vlen)
{
    struct hdr_walk *w = arg;
    if (w->found < 0 || (w->found && w->first) || (w->want && (!name || !mi_ci_eq(name, nlen, w->want))))
        return;
    char *s = mi_unfold_as(w->buf, voff, vlen, true);
    /* every field of that name (SEARCH HEADER looks at all of them), one per line */
    size_t at = w->o->len + (w->want && w->found);
    if (!s || (w->want && w->found && mi_putc(w->o, '\n') < 0) ||
        (!w->want && name && (pu_buf_add(w->o, name, nlen) < 0 || mi_puts(w->o, ": ") < 0)) ||
        mi_append_decoded(w->o, s) < 0 || (!w->want && mi_putc(w->o, '\n') < 0)) {
        free(s);
        w->found = -1;
        return;
    }
    free(s);
    if (w->want && !w->first && address_field(name, nlen)) {
        /* the addresses as ENVELOPE reads them (a bare CR ends the value there) */
        char *v = mi_unfold(w->buf, voff, vlen);
        int rc = v ? append_address_text(w->o, v, at) : -1;
        free(v);
        if (rc < 0) {
            w->found = -1;
            return;
        }
    }
    if (w->want)
        w->found = 1;
}

int mime_header_decoded(const mime_message *m, const char *name, pu_buf *out)
{
    struct hdr_walk w = {m->buf, out, name, false, 0};
    mi_for_each_field(m->buf, m->root->hdr_off, m->root->hdr_len, false, hdr_walk_field, &w);
    return w.found;
}

int mime_block_header_decoded(const char *hdr, size_t len, const char *name, pu_buf *out)
{
    struct hdr_walk w = {hdr, out, name, false, 0};
    mi_for_each_field(hdr, 0, len, false, hdr_walk_field, &w);
    return w.found;
}

int mime_headers_decoded(const mime_message *m, pu_buf *out)
{
    struct hdr_walk w = {m->buf, out, NULL, false, 0};
    /* every line, fields or not: TEXT means "in the header or body" (RFC 3501 6.4.4) */
    mi_for_each_field(m->buf, m->root->hdr_off, m->root->hdr_len, true, hdr_walk_field, &w);
    return w.found < 0 ? -1 : 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int mime_date_parse(const char *s, size_t len, int64_t *t, int *tz_minutes)
{
    size_t idx = 0;
    struct mailimf_date_time *dt = NULL;
    int rc = 0;
    if (len && mailimf_date_time_parse(s, len, &idx, &dt) == MAILIMF_NO_ERROR && dt) {
        int zone = dt->dt_zone; /* +0130 comes as 130 */
        int zmin = (zone / 100) * 60 + zone % 100;
        /* libetpan takes any digits for the time: out of range is unparseable, not an overflow */
        if (dt->dt_month >= 1 && dt->dt_month <= 12 && dt->dt_day >= 1 && dt->dt_day <= 31 &&
            dt->dt_hour >= 0 && dt->dt_hour <= 23 && dt->dt_min >= 0 && dt->dt_min <= 59 && dt->dt_sec >= 0 &&
            dt->dt_sec <= 60 && zmin > -24 * 60 && zmin < 24 * 60) {
            int64_t days = days_from_civil(dt->dt_year, (unsigned)dt->dt_month, (unsigned)dt->dt_day);
            *t = days * 86400 + (int64_t)dt->dt_hour * 3600 + dt->dt_min * 60 + dt->dt_sec - (int64_t)zmin * 60;
            *tz_minutes = zmin;
            rc = 1;
        }
        mailimf_date_time_free(dt);
    }
    return rc;
}

int mime_sent_date(const mime_message *m, int64_t *t, int *tz_minutes)
{
    return mime_block_sent_date(m->buf + m->root->hdr_off, m->root->hdr_len, t, tz_minutes);
}

int mime_block_sent_date(const char *hdr, size_t len, int64_t *t, int *tz_minutes)
{
    pu_buf b = {0};
    struct hdr_walk w = {hdr, &b, "Date", true, 0}; /* the first Date: field is the date */
    mi_for_each_field(hdr, 0, len, false, hdr_walk_field, &w);
    int rc = w.found == 1 && b.len ? mime_date_parse(b.data, b.len, t, tz_minutes) : 0;
    pu_buf_free(&b);
    return rc;
}

int mime_decode_words(const char *s, pu_buf *out)
{
    return mi_append_decoded(out, s);
}

static int leaf_text(const mime_message *m, const mime_part *p, pu_buf *o)
{
    int enc = MAILMIME_MECHANISM_8BIT;
    if (p->cf[MIME_CF_CTE].present) {
        char *cte = mi_unfold(m->buf, p->cf[MIME_CF_CTE].off, p->cf[MIME_CF_CTE].len);
        if (!cte)
            return -1;
        if (mi_ci_str(cte, "base64"))
            enc = MAILMIME_MECHANISM_BASE64;
        else if (mi_ci_str(cte, "quoted-printable"))
            enc = MAILMIME_MECHANISM_QUOTED_PRINTABLE;
        free(cte);
    }
    const char *raw = m->buf + p->body_off, *text = raw;
    size_t rlen = p->body_len, tlen = rlen, idx = 0;
    char *dec = NULL, *conv = NULL;
    if (enc != MAILMIME_MECHANISM_8BIT && rlen) {
        /* libetpan 1.9.4's quoted-printable decoder reads up to two bytes past the end when
         * the input ends in "=" or "=X" (found by fuzz_mime): decode from a NUL-padded copy. */
        char *pad = calloc(1, rlen + 4);
        if (!pad)
            return -1;
        memcpy(pad, raw, rlen);
        if (mailmime_part_parse(pad, rlen, &idx, enc, &dec, &tlen) == MAILIMF_NO_ERROR && dec)
            text = dec;
        else
            tlen = rlen;
        free(pad);
    }
    const char *cs = NULL;
    for (size_t i = 0; i < p->ctparams.n; i++)
        if (mi_ci_str(p->ctparams.v[i].name, "charset"))
            cs = p->ctparams.v[i].value;
    if (cs && *cs && !mi_ci_str(cs, "utf-8") && !mi_ci_str(cs, "us-ascii") && tlen &&
        charconv("utf-8", cs, text, tlen, &conv) == MAIL_CHARCONV_NO_ERROR && conv)
        text = conv, tlen = strlen(conv);
    int rc = pu_buf_add(o, text, tlen);
    if (rc == 0)
        rc = mi_putc(o, '\n');
    free(conv);
    if (dec)
        mailmime_decoded_part_free(dec);
    return rc;
}

static int walk_text(const mime_message *m, const mime_part *p, pu_buf *o)
{
    if (p->kind == MIME_PART_LEAF)
        return !p->opaque && (!p->type || mi_type_is(p, "text")) ? leaf_text(m, p, o) : 0;
    for (size_t i = 0; i < p->nchildren; i++)
        if (walk_text(m, p->children[i], o) < 0)
            return -1;
    return 0;
}

int mime_body_text(const mime_message *m, pu_buf *out) { return walk_text(m, m->root, out); }
