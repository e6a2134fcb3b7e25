/* Response writers: status lines with response codes, multi-line responses, CAPA, and the
 * CRLF form of a message (with dot-stuffing and TOP's cut) and its size. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3.h"

/* ---- status lines ---- */

static const char *const rc_text[] = {
    [PP_RC_NONE] = NULL,
    [PP_RC_IN_USE] = "[IN-USE] ",
    [PP_RC_AUTH] = "[AUTH] ",
    [PP_RC_SYS_TEMP] = "[SYS/TEMP] ",
    [PP_RC_SYS_PERM] = "[SYS/PERM] ",
};

/* Appends text with control bytes turned into '?'. */
static int add_clean(pu_buf *out, const char *s, size_t n)
{
    if (pu_buf_reserve(out, n) < 0)
        return -1;
    char *d = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        d[i] = b < 0x20 || b == 0x7f ? '?' : (char)b;
    }
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

static int add(pu_buf *out, const char *s)
{
    return pu_buf_add(out, s, strlen(s));
}

static int undo(pu_buf *out, size_t mark)
{
    out->len = mark;
    if (out->data)
        out->data[mark] = '\0';
    return PP_NOMEM;
}

static int status_line(pu_buf *out, const char *head, const char *text)
{
    size_t mark = out->len;
    if (add(out, head) < 0)
        return undo(out, mark);
    if (text && *text && (pu_buf_add(out, " ", 1) < 0 || add_clean(out, text, strlen(text)) < 0))
        return undo(out, mark);
    if (pu_buf_add(out, "\r\n", 2) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_write_ok(pu_buf *out, const char *text)
{
    return status_line(out, "+OK", text);
}

static int err_line(pu_buf *out, pp_rc code, const char *text)
{
    size_t mark = out->len;
    const char *rc = (unsigned)code < sizeof rc_text / sizeof rc_text[0] ? rc_text[code] : NULL;
    if (add(out, "-ERR ") < 0 || (rc && add(out, rc) < 0) ||
        (text && add_clean(out, text, strlen(text)) < 0))
        return undo(out, mark);
    /* Drop the space after "-ERR" (or the code) when there is no text. */
    if (out->data[out->len - 1] == ' ')
        out->len--;
    if (pu_buf_add(out, "\r\n", 2) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_write_err(pu_buf *out, pp_rc code, const char *text)
{
    return err_line(out, code, text);
}

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

int pp_write_okf(pu_buf *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    if (!s)
        return PP_NOMEM;
    int r = pp_write_ok(out, s);
    free(s);
    return r;
}

int pp_write_errf(pu_buf *out, pp_rc code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    if (!s)
        return PP_NOMEM;
    int r = pp_write_err(out, code, s);
    free(s);
    return r;
}

int pp_write_ml_line(pu_buf *out, const char *s, size_t len)
{
    size_t mark = out->len;
    if ((len && s[0] == '.' && pu_buf_add(out, ".", 1) < 0) || add_clean(out, s, len) < 0 ||
        pu_buf_add(out, "\r\n", 2) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_write_ml_end(pu_buf *out)
{
    return pu_buf_add(out, ".\r\n", 3) < 0 ? PP_NOMEM : PP_OK;
}

/* ---- CAPA ---- */

static int ml(pu_buf *out, const char *s)
{
    return pp_write_ml_line(out, s, strlen(s));
}

int pp_write_capa(pu_buf *out, const pp_offer *o, pp_state state)
{
    size_t mark = out->len;
    bool authz = state != PP_STATE_TRANSACTION;
    if (pp_write_ok(out, "Capability list follows") < 0 || ml(out, "TOP") < 0 ||
        (authz && o->user && ml(out, "USER") < 0) || ml(out, "UIDL") < 0 || ml(out, "RESP-CODES") < 0 ||
        ml(out, "AUTH-RESP-CODE") < 0 || ml(out, "PIPELINING") < 0 ||
        (authz && o->sasl_plain && ml(out, "SASL PLAIN") < 0) || (authz && o->stls && ml(out, "STLS") < 0))
        return undo(out, mark);
    if (o->expire) {
        char line[40];
        if (o->expire_days >= 0)
            snprintf(line, sizeof line, "EXPIRE %ld", o->expire_days);
        else
            snprintf(line, sizeof line, "EXPIRE NEVER");
        if (ml(out, line) < 0)
            return undo(out, mark);
    }
    if (o->implementation && *o->implementation) {
        size_t n = strnlen(o->implementation, 200); /* keeps the line well under 512 octets */
        if (pu_buf_add(out, "IMPLEMENTATION ", 15) < 0 || add_clean(out, o->implementation, n) < 0 ||
            pu_buf_add(out, "\r\n", 2) < 0)
            return undo(out, mark);
    }
    if (pp_write_ml_end(out) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_write_auth_mechs(pu_buf *out, const pp_offer *o)
{
    size_t mark = out->len;
    if (pp_write_ok(out, NULL) < 0 || (o->sasl_plain && ml(out, "PLAIN") < 0) || pp_write_ml_end(out) < 0)
        return undo(out, mark);
    return PP_OK;
}

/* ---- message bodies ---- */

void pp_crlf_init(pp_crlf *c, unsigned flags, uint32_t top_lines)
{
    memset(c, 0, sizeof *c);
    c->flags = flags;
    c->top_left = top_lines;
    c->bol = true;
}

/* A line ended (its LF was handled): TOP bookkeeping. */
static void line_done(pp_crlf *c, bool empty)
{
    if (!(c->flags & PP_CRLF_TOP))
        return;
    if (!c->body) {
        if (!empty)
            return;
        c->body = true; /* the blank line is sent, then top_left body lines */
    } else {
        c->top_left--;
    }
    if (c->top_left == 0)
        c->cut = true;
}

/* reserved: out already has room for everything this call writes (convert counted it). */
static int crlf_add(pp_crlf *c, const void *data, size_t len, pu_buf *out, bool reserved)
{
    if (c->cut)
        return 1;
    if (len == 0)
        return 0;
    if (out && !reserved) {
        /* Worst case: every byte is a LF (2 octets) or a '.' starting a line (2 octets). */
        if (len > (SIZE_MAX - 1) / 2 || pu_buf_reserve(out, 2 * len) < 0)
            return PP_NOMEM;
    }
    const char *p = data, *end = p + len;
    bool stuff = c->flags & PP_CRLF_STUFF;
    char *w = out ? out->data + out->len : NULL;
    c->any = true;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *seg_end = lf ? lf : end;
        size_t seg = (size_t)(seg_end - p);
        if (seg) {
            if (c->bol && stuff && p[0] == '.') {
                c->stuffed++;
                if (w)
                    *w++ = '.';
            }
            if (w) {
                memcpy(w, p, seg);
                w += seg;
            }
            c->octets += seg;
            c->cr = p[seg - 1] == '\r';
            c->line_len = seg >= 2 || c->line_len + seg >= 2 ? 2 : c->line_len + seg;
            c->bol = false;
        }
        if (!lf)
            break;
        bool had_cr = c->cr;
        bool empty = c->line_len == 0 || (c->line_len == 1 && had_cr);
        if (w) {
            if (!had_cr)
                *w++ = '\r';
            *w++ = '\n';
        }
        c->octets += had_cr ? 1 : 2;
        c->cr = false;
        c->line_len = 0;
        c->bol = true;
        p = lf + 1;
        line_done(c, empty);
        if (c->cut)
            break;
    }
    if (out) {
        out->len = (size_t)(w - out->data);
        out->data[out->len] = '\0';
    }
    return c->cut ? 1 : 0;
}

int pp_crlf_add(pp_crlf *c, const void *data, size_t len, pu_buf *out)
{
    return crlf_add(c, data, len, out, false);
}

int pp_crlf_end(pp_crlf *c, pu_buf *out)
{
    bool close_line = c->any && !c->bol && !c->cut;
    bool stuff = c->flags & PP_CRLF_STUFF;
    if (out) {
        size_t mark = out->len;
        if ((close_line && pu_buf_add(out, "\r\n", 2) < 0) || (stuff && pu_buf_add(out, ".\r\n", 3) < 0))
            return undo(out, mark);
    }
    if (close_line) {
        c->octets += 2;
        c->bol = true;
        c->cr = false;
        c->line_len = 0;
    }
    return PP_OK;
}

uint64_t pp_message_size(const void *msg, size_t len)
{
    pp_crlf c;
    pp_crlf_init(&c, 0, 0);
    pp_crlf_add(&c, msg, len, NULL);
    pp_crlf_end(&c, NULL);
    return c.octets;
}

static int convert(pu_buf *out, const void *msg, size_t len, unsigned flags, uint32_t top)
{
    size_t mark = out->len;
    pp_crlf c;
    /* the size first, then a buffer of that size: pp_crlf_add's worst case (twice the
     * message) rounded up to a power of two is 2-4 times it, all of which the wipe at free
     * touched, page faults included, for every RETR */
    pp_crlf_init(&c, flags, top);
    crlf_add(&c, msg, len, NULL, false);
    pp_crlf_end(&c, NULL);
    uint64_t need = c.octets + c.stuffed + 3; /* + ".\r\n" */
    if (need > SIZE_MAX - 1 || pu_buf_reserve_exact(out, (size_t)need) < 0)
        return PP_NOMEM;
    pp_crlf_init(&c, flags, top);
    if (crlf_add(&c, msg, len, out, true) < 0 || pp_crlf_end(&c, out) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_message_crlf(const void *msg, size_t len, pu_buf *out)
{
    return convert(out, msg, len, 0, 0);
}

int pp_write_message(pu_buf *out, const void *msg, size_t len, int64_t top)
{
    if (top < 0)
        return convert(out, msg, len, PP_CRLF_STUFF, 0);
    return convert(out, msg, len, PP_CRLF_STUFF | PP_CRLF_TOP, top > UINT32_MAX ? UINT32_MAX : (uint32_t)top);
}
