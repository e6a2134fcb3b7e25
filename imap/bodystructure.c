/* FETCH ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 7.4.2) of a message parsed by mime/. Every
 * string comes from a header and goes out as pi_write_string's PI_W_HEADER form; the corpus
 * in tests/data/mime (checked against Dovecot, see DOVECOT.md there) fixes the bytes. */
#include <stdlib.h>
#include <string.h>

#include "imap/fetch.h"

static int putc_(pu_buf *b, char c) { return pu_buf_add(b, &c, 1); }

/* ASCII case-insensitive equality; a may be NULL. */
static bool ci_str(const char *a, const char *b)
{
    if (!a)
        return false;
    for (; *a && *b; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return *a == *b;
}

static int put_str(pu_buf *o, const char *s)
{
    return pi_write_nstring(o, s, s ? strlen(s) : 0, PI_W_HEADER);
}

static int put_span(const mime_message *m, pu_buf *o, const mime_span *sp)
{
    if (!sp->present)
        return pu_buf_addstr(o, "NIL");
    char *s = mime_span_text(m, sp);
    if (!s)
        return -1;
    int rc = put_str(o, s);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Address lists, with the RFC 3501 group encoding */

struct env_addrs {
    pu_buf *o;
    size_t count;
};

static int put_addr(void *arg, mime_addr_kind kind, const char *name, const char *adl, const char *mbox,
                    const char *host)
{
    struct env_addrs *ea = arg;
    pu_buf *o = ea->o;
    if (kind == MIME_ADDR_GROUP_START) /* (NIL NIL "group name" NIL) */
        mbox = name, name = NULL;
    else if (kind == MIME_ADDR_MAILBOX) {
        /* RFC 3501 has no way to say "no host" outside groups: mark it like Dovecot does. */
        mbox = mbox ? mbox : "MISSING_MAILBOX";
        host = host ? host : "MISSING_DOMAIN";
    }
    if (ea->count++ == 0 && putc_(o, '(') < 0)
        return -1;
    if (putc_(o, '(') < 0 || put_str(o, name) < 0 || putc_(o, ' ') < 0 || put_str(o, adl) < 0 ||
        putc_(o, ' ') < 0 || put_str(o, mbox) < 0 || putc_(o, ' ') < 0 || put_str(o, host) < 0 ||
        putc_(o, ')') < 0)
        return -1;
    return 0;
}

/* Writes an address list (or NIL). *count gets the number of address structures. */
static int put_addresses(const mime_message *m, pu_buf *o, const mime_span *sp, size_t *count)
{
    *count = 0;
    if (!sp->present)
        return pu_buf_addstr(o, "NIL");
    char *s = mime_span_text(m, sp);
    if (!s)
        return -1;
    struct env_addrs ea = {o, 0};
    int rc = mime_addresses(s, put_addr, &ea);
    free(s);
    if (rc < 0)
        return -1;
    *count = ea.count;
    return ea.count ? putc_(o, ')') : pu_buf_addstr(o, "NIL");
}

/* ---------------------------------------------------------------------------------------- */
/* ENVELOPE, BODY, BODYSTRUCTURE */

int pi_write_envelope_of(pu_buf *o, const mime_message *m, const mime_part *p)
{
    size_t mark, cnt;
    if (putc_(o, '(') < 0 || put_span(m, o, &p->env[MIME_ENV_DATE]) < 0 || putc_(o, ' ') < 0 ||
        put_span(m, o, &p->env[MIME_ENV_SUBJECT]) < 0 || putc_(o, ' ') < 0)
        return -1;
    size_t from_at = o->len;
    if (put_addresses(m, o, &p->env[MIME_ENV_FROM], &cnt) < 0)
        return -1;
    size_t from_len = o->len - from_at;
    for (int f = MIME_ENV_SENDER; f <= MIME_ENV_BCC; f++) {
        if (putc_(o, ' ') < 0)
            return -1;
        mark = o->len;
        if (put_addresses(m, o, &p->env[f], &cnt) < 0)
            return -1;
        if (cnt == 0 && (f == MIME_ENV_SENDER || f == MIME_ENV_REPLY_TO)) {
            /* RFC 3501: sender and reply-to default to from */
            o->len = mark;
            if (pu_buf_reserve(o, from_len) < 0)
                return -1;
            memcpy(o->data + o->len, o->data + from_at, from_len);
            o->len += from_len;
            o->data[o->len] = '\0';
        }
    }
    if (putc_(o, ' ') < 0 || put_span(m, o, &p->env[MIME_ENV_IN_REPLY_TO]) < 0 ||
        putc_(o, ' ') < 0 || put_span(m, o, &p->env[MIME_ENV_MESSAGE_ID]) < 0)
        return -1;
    return putc_(o, ')');
}

int pi_write_envelope(pu_buf *out, const mime_message *m)
{
    return pi_write_envelope_of(out, m, mime_root(m));
}

static int put_params(pu_buf *o, const mime_params *ps, bool add_charset)
{
    if (!ps->n && !add_charset)
        return pu_buf_addstr(o, "NIL");
    if (putc_(o, '(') < 0)
        return -1;
    for (size_t i = 0; i < ps->n; i++)
        if ((i && putc_(o, ' ') < 0) || put_str(o, ps->v[i].name) < 0 ||
            putc_(o, ' ') < 0 || put_str(o, ps->v[i].value) < 0)
            return -1;
    if (add_charset && pu_buf_addstr(o, ps->n ? " \"charset\" \"us-ascii\"" : "\"charset\" \"us-ascii\"") < 0)
        return -1;
    return putc_(o, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static int put_ext_tail(const mime_message *m, pu_buf *o, const mime_part *p)
{
    if (p->disp) {
        if (putc_(o, '(') < 0 || put_str(o, p->disp) < 0 || putc_(o, ' ') < 0 ||
            put_params(o, &p->dparams, false) < 0 || putc_(o, ')') < 0)
            return -1;
    } else if (pu_buf_addstr(o, "NIL") < 0)
        return -1;
    if (putc_(o, ' ') < 0)
        return -1;
    /* Content-Language: a list of tags, always as a parenthesised list */
    size_t nl = 0;
    if (p->cf[MIME_CF_LANG].present) {
        char *s = mime_span_text(m, &p->cf[MIME_CF_LANG]);
        if (!s)
            return -1;
        size_t i = 0;
        for (;;) {
            mime_skip_cfws(s, &i);
            while (s[i] == ',')
                i++, mime_skip_cfws(s, &i);
            size_t tn = mime_token_len(s + i);
            if (!tn)
                break;
            if ((pu_buf_addstr(o, nl++ ? " " : "(") < 0) || pi_write_nstring(o, s + i, tn, PI_W_HEADER) < 0) {
                free(s);
                return -1;
            }
            i += tn;
        }
        free(s);
    }
    if (pu_buf_addstr(o, nl ? ")" : "NIL") < 0 || putc_(o, ' ') < 0)
        return -1;
    return put_span(m, o, &p->cf[MIME_CF_LOC]);
}

static int write_part(const mime_message *m, const mime_part *p, pu_buf *o, bool ext);

#define EMPTY_PART "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

static int write_part(const mime_message *m, const mime_part *p, pu_buf *o, bool ext)
{
    if (p->kind == MIME_PART_MULTIPART) {
        if (putc_(o, '(') < 0)
            return -1;
        if (!p->nchildren && pu_buf_addstr(o, ext ? EMPTY_PART " NIL NIL NIL NIL)" : EMPTY_PART ")") < 0)
            return -1;
        for (size_t i = 0; i < p->nchildren; i++)
            if (write_part(m, p->children[i], o, ext) < 0)
                return -1;
        if (putc_(o, ' ') < 0 || put_str(o, p->subtype) < 0)
            return -1;
        if (ext && (putc_(o, ' ') < 0 || put_params(o, &p->ctparams, false) < 0 ||
                    putc_(o, ' ') < 0 || put_ext_tail(m, o, p) < 0))
            return -1;
        return putc_(o, ')');
    }
    bool deflt = !p->type;
    const char *type = p->opaque ? "application" : deflt ? "text" : p->type;
    const char *sub = p->opaque ? "octet-stream" : deflt ? "plain" : p->subtype;
    bool text = ci_str(type, "text");
    bool has_cs = false;
    for (size_t i = 0; i < p->ctparams.n; i++)
        has_cs |= ci_str(p->ctparams.v[i].name, "charset");
    static const mime_params none = {0};
    if (putc_(o, '(') < 0 || put_str(o, type) < 0 || putc_(o, ' ') < 0 ||
        put_str(o, sub) < 0 || putc_(o, ' ') < 0 ||
        put_params(o, p->opaque ? &none : &p->ctparams, text && !has_cs) < 0 ||
        putc_(o, ' ') < 0 || put_span(m, o, &p->cf[MIME_CF_ID]) < 0 || putc_(o, ' ') < 0 ||
        put_span(m, o, &p->cf[MIME_CF_DESC]) < 0 || putc_(o, ' ') < 0)
        return -1;
    /* body-fld-enc: the first token of the header, 7bit when absent or empty */
    char *cte = p->cf[MIME_CF_CTE].present ? mime_span_text(m, &p->cf[MIME_CF_CTE]) : NULL;
    if (p->cf[MIME_CF_CTE].present && !cte)
        return -1;
    size_t i = 0, tn = 0;
    if (cte) {
        mime_skip_cfws(cte, &i);
        tn = mime_token_len(cte + i);
    }
    int rc = tn ? pi_write_nstring(o, cte + i, tn, PI_W_HEADER) : pu_buf_addstr(o, "\"7bit\"");
    free(cte);
    if (rc < 0 || putc_(o, ' ') < 0 || pu_buf_printf(o, "%zu", p->body_len) < 0)
        return -1;
    if (p->kind == MIME_PART_MESSAGE) {
        const mime_part *e = p->children[0];
        if (putc_(o, ' ') < 0 || pi_write_envelope_of(o, m, e) < 0 || putc_(o, ' ') < 0 ||
            write_part(m, e, o, ext) < 0 || putc_(o, ' ') < 0 || pu_buf_printf(o, "%zu", p->body_lines) < 0)
            return -1;
    } else if (text && (putc_(o, ' ') < 0 || pu_buf_printf(o, "%zu", p->body_lines) < 0)) {
        return -1;
    }
    if (ext && (putc_(o, ' ') < 0 || put_span(m, o, &p->cf[MIME_CF_MD5]) < 0 ||
                putc_(o, ' ') < 0 || put_ext_tail(m, o, p) < 0))
        return -1;
    return putc_(o, ')');
}

int pi_write_body(pu_buf *out, const mime_message *m) { return write_part(m, mime_root(m), out, false); }

int pi_write_bodystructure(pu_buf *out, const mime_message *m)
{
    return write_part(m, mime_root(m), out, true);
}
