/* MIME structure of one message for IMAP FETCH/SEARCH. See mime.h.
 *
 * The tree is found by our own line scanner rather than libetpan's mailmime_parse: 1.9.4's
 * parser takes time quadratic in nesting depth and overflows the stack on deep nesting
 * (measured: 5,000 levels 3.7 s, 100,000 levels SIGSEGV after minutes), has no depth or part
 * limit, and does not give the exact RFC 2046 part ranges IMAP sizes must match. libetpan
 * still decodes what it is good at: RFC 2047 words, transfer encodings and charsets.
 */
#include "mime/mime.h"

#include <libetpan/libetpan.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Output helpers */

static int buf_puts(pu_buf *b, const char *s) { return pu_buf_add(b, s, strlen(s)); }

static int buf_putc(pu_buf *b, char c) { return pu_buf_add(b, &c, 1); }

static int buf_putu(pu_buf *b, size_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do
        tmp[--i] = (char)('0' + v % 10);
    while (v /= 10);
    return pu_buf_add(b, tmp + i, sizeof tmp - i);
}

/* ---------------------------------------------------------------------------------------- */
/* Parsed form */

typedef struct span {
    size_t off, len;
    bool present;
} span;

typedef struct param {
    char *name, *value; /* NUL-terminated, NUL bytes of the input dropped */
} param;

typedef struct params {
    param *v;
    size_t n;
} params;

enum { ENV_DATE, ENV_SUBJECT, ENV_FROM, ENV_SENDER, ENV_REPLY_TO, ENV_TO, ENV_CC, ENV_BCC,
       ENV_IN_REPLY_TO, ENV_MESSAGE_ID, ENV_COUNT };

static const char *const env_names[ENV_COUNT] = {
    "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To",
    "Message-ID"};

enum { CF_TYPE, CF_CTE, CF_ID, CF_DESC, CF_DISP, CF_LANG, CF_LOC, CF_MD5, CF_COUNT };

static const char *const cf_names[CF_COUNT] = {
    "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
    "Content-Disposition", "Content-Language", "Content-Location", "Content-MD5"};

enum part_kind { PART_LEAF, PART_MULTIPART, PART_MESSAGE };

typedef struct part part;
struct part {
    enum part_kind kind;
    bool opaque;   /* composite type cut off by a limit: served as application/octet-stream */
    bool is_msg;   /* this node is a message (root or embedded): has an envelope */
    size_t hdr_off, hdr_len, body_off, body_len, body_lines;
    char *type, *subtype; /* NULL: RFC 2045 default text/plain */
    params ctparams;
    char *disp;
    params dparams;
    span cf[CF_COUNT];
    span env[ENV_COUNT];
    part **children; /* PART_MULTIPART: nchildren parts; PART_MESSAGE: one, the message */
    size_t nchildren;
};

struct mime_message {
    const char *buf;
    size_t len;
    mime_limits lim;
    size_t nparts;
    part *root;
};

typedef struct ctx {
    mime_message *m;
    bool oom;
} ctx;

/* ---------------------------------------------------------------------------------------- */
/* Lines and header blocks */

static size_t next_line(const char *b, size_t pos, size_t end)
{
    const char *nl = memchr(b + pos, '\n', end - pos);
    return nl ? (size_t)(nl - b) + 1 : end;
}

static size_t count_lf(const char *b, size_t off, size_t len)
{
    size_t n = 0;
    const char *p = b + off, *e = b + off + len;
    while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL)
        n++, p++;
    return n;
}

static bool is_blank_line(const char *b, size_t pos, size_t end)
{
    return (pos < end && b[pos] == '\n') || (pos + 1 < end && b[pos] == '\r' && b[pos + 1] == '\n');
}

static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

static int ci_eq(const char *a, size_t alen, const char *b)
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

static int ci_str(const char *a, const char *b) { return a && ci_eq(a, strlen(a), b); }

/* Splits [start,end) into header (through the blank line) and body. No blank line: all
 * header, empty body, as in other servers. */
static void split_header(part *p, const char *b, size_t start, size_t end)
{
    size_t pos = start;
    while (pos < end) {
        if (is_blank_line(b, pos, end)) {
            pos = next_line(b, pos, end);
            break;
        }
        pos = next_line(b, pos, end);
    }
    p->hdr_off = start, p->hdr_len = pos - start;
    p->body_off = pos, p->body_len = end - pos;
}

/* Calls fn for each "Name: value" field of a header block (value excludes the final line
 * end, keeps inner folding). Lines that are no field (no colon, a continuation with nothing
 * before it) are skipped, as other parsers do, unless all is set: then fn gets them with
 * name NULL and the whole line as the value. */
typedef void (*field_fn)(void *arg, const char *name, size_t nlen, size_t voff, size_t vlen);

static void for_each_field(const char *b, size_t off, size_t len, bool all, field_fn fn, void *arg)
{
    size_t pos = off, end = off + len;
    while (pos < end && !is_blank_line(b, pos, end)) {
        size_t fstart = pos;
        pos = next_line(b, pos, end);
        while (pos < end && is_wsp(b[pos]))
            pos = next_line(b, pos, end);
        size_t fend = pos;
        if (fend > fstart && b[fend - 1] == '\n')
            fend--;
        if (fend > fstart && b[fend - 1] == '\r')
            fend--;
        const char *colon = is_wsp(b[fstart]) ? NULL : memchr(b + fstart, ':', fend - fstart);
        size_t nlen = colon ? (size_t)(colon - (b + fstart)) : 0;
        while (nlen && is_wsp(b[fstart + nlen - 1]))
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

struct collect {
    part *p;
};

static void collect_field(void *arg, const char *name, size_t nlen, size_t voff, size_t vlen)
{
    part *p = ((struct collect *)arg)->p;
    /* First occurrence wins: one well-defined value, whatever duplicates follow. */
    for (int i = 0; i < CF_COUNT; i++)
        if (!p->cf[i].present && ci_eq(name, nlen, cf_names[i])) {
            p->cf[i] = (span){voff, vlen, true};
            return;
        }
    if (p->is_msg)
        for (int i = 0; i < ENV_COUNT; i++)
            if (!p->env[i].present && ci_eq(name, nlen, env_names[i])) {
                p->env[i] = (span){voff, vlen, true};
                return;
            }
}

/* Unfolded value with surrounding whitespace trimmed and CR, LF, NUL removed. A bare CR (old
 * Mac line ends) ends the value, as Dovecot reads it: "To: a@x\rCc: b@x" is To a@x, not
 * a host "xCc"; for SEARCH (whole) it is a space, so no text after it is out of reach. */
static char *unfold_as(const char *b, size_t off, size_t len, bool whole)
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
    while (st < n && is_wsp(s[st]))
        st++;
    while (n > st && is_wsp(s[n - 1]))
        n--;
    memmove(s, s + st, n - st);
    s[n - st] = '\0';
    return s;
}

static char *unfold(const char *b, size_t off, size_t len) { return unfold_as(b, off, len, false); }

/* ---------------------------------------------------------------------------------------- */
/* RFC 2045 Content-Type / Content-Disposition with RFC 2231 parameters */

static bool is_tspecial(unsigned char c) { return c && strchr("()<>@,;:\\\"/[]?=", c) != NULL; }

static bool is_token_char(unsigned char c)
{
    /* 8-bit bytes accepted: raw UTF-8 in unquoted values is common and harmless here. */
    return c > ' ' && c != 0x7f && !is_tspecial(c);
}

static void skip_cfws(const char *s, size_t *i)
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

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static size_t token_len(const char *s) 
{
    size_t n = 0;
    while (is_token_char((unsigned char)s[n]))
        n++;
    return n;
}

static void params_free(params *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i].name), free(ps->v[i].value);
    free(ps->v);
    ps->v = NULL, ps->n = 0;
}

/* Takes ownership of name and value (freed on failure). */
static int params_add(params *ps, char *name, char *value)
{
    param *v = name && value ? realloc(ps->v, (ps->n + 1) * sizeof *v) : NULL;
    if (!v) {
        free(name), free(value);
        return -1;
    }
    ps->v = v;
    ps->v[ps->n++] = (param){name, value};
    return 0;
}

/* ";" attribute "=" value pairs. Malformed pairs are skipped to the next ';' so one bad
 * parameter does not cost the good ones (RFC 2045 parsers in the wild are this lenient). */
/* Real headers carry a handful of parameters; the cap keeps RFC 2231 joining (quadratic in
 * the count) cheap on hostile ones. */
#define MAX_PARAMS 128

static int parse_params(const char *s, size_t i, params *out)
{
    for (;;) {
        skip_cfws(s, &i);
        if (!s[i] || out->n >= MAX_PARAMS)
            return 0;
        if (s[i] != ';') { /* garbage: resync at the next ';' */
            while (s[i] && s[i] != ';') {
                if (s[i] == '"') {
                    for (i++; s[i] && s[i] != '"'; i++)
                        if (s[i] == '\\' && s[i + 1])
                            i++;
                    if (!s[i])
                        return 0;
                }
                i++;
            }
            continue;
        }
        i++;
        skip_cfws(s, &i);
        size_t an = token_len(s + i);
        if (!an)
            continue;
        const char *attr = s + i;
        i += an;
        skip_cfws(s, &i);
        if (s[i] != '=')
            continue;
        i++;
        skip_cfws(s, &i);
        char *val;
        if (s[i] == '"') {
            size_t j = i + 1, n = 0;
            val = malloc(strlen(s + j) + 1);
            if (!val)
                return -1;
            while (s[j] && s[j] != '"') {
                if (s[j] == '\\' && s[j + 1])
                    j++;
                val[n++] = s[j++];
            }
            val[n] = '\0';
            i = s[j] ? j + 1 : j;
        } else {
            size_t vn = token_len(s + i);
            if (!vn)
                continue;
            val = dup_n(s + i, vn);
            i += vn;
        }
        if (params_add(out, dup_n(attr, an), val) < 0)
            return -1;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Appends bytes as RFC 2047 B-encoded words. UTF-8 is split into words of at most 75
 * characters at character boundaries; other charsets have no safe split point, so they get
 * one word (decoders accept long words). */
static int append_encoded_words(pu_buf *o, const char *cs, const unsigned char *s, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bool utf8 = ci_str(cs, "utf-8");
    size_t maxraw = utf8 ? (75 - 12) / 4 * 3 : n; /* 12 = strlen("=?UTF-8?B??=") */
    size_t i = 0;
    while (i < n) {
        size_t take = n - i < maxraw ? n - i : maxraw;
        if (utf8 && i + take < n)
            while (take > 1 && (s[i + take] & 0xC0) == 0x80)
                take--;
        if ((i && buf_putc(o, ' ') < 0) || buf_puts(o, "=?") < 0 || buf_puts(o, cs) < 0 ||
            buf_puts(o, "?B?") < 0)
            return -1;
        for (size_t k = 0; k < take; k += 3) {
            unsigned v = (unsigned)s[i + k] << 16;
            if (k + 1 < take)
                v |= (unsigned)s[i + k + 1] << 8;
            if (k + 2 < take)
                v |= s[i + k + 2];
            char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], k + 1 < take ? b64[(v >> 6) & 63] : '=',
                         k + 2 < take ? b64[v & 63] : '='};
            if (pu_buf_add(o, q, 4) < 0)
                return -1;
        }
        if (buf_puts(o, "?=") < 0)
            return -1;
        i += take;
    }
    return 0;
}

/* RFC 2231: join name*0, name*1*, ... (and name*), percent-decode extended segments and
 * convert to UTF-8. Choice: IMAP clients build their attachment names from these values and
 * all of them decode RFC 2047 there, while none reads "name*" syntax in BODYSTRUCTURE; so a
 * decoded value is served under the plain name, as-is when ASCII, else as RFC 2047 words
 * (7-bit clean, no UTF8=ACCEPT needed). An unconvertible charset keeps its own label. */
static int rfc2231_decode(params *ps)
{
    params out = {0};
    for (size_t i = 0; i < ps->n; i++) {
        char *star = strchr(ps->v[i].name, '*');
        size_t base = star ? (size_t)(star - ps->v[i].name) : strlen(ps->v[i].name);
        bool seen = false, any2231 = false;
        for (size_t k = 0; k < out.n && !seen; k++)
            seen = ci_eq(ps->v[i].name, base, out.v[k].name);
        if (seen || !base)
            continue;
        /* Gather this base name's segments: index -1 = plain, 0.. = continuation. */
        pu_buf raw = {0};
        char *charset = NULL;
        const char *plain = NULL;
        for (unsigned seg = 0;; seg++) {
            const param *found = NULL;
            bool ext = false;
            for (size_t k = 0; k < ps->n; k++) {
                const char *nm = ps->v[k].name;
                if (strncasecmp(nm, ps->v[i].name, base) != 0 || nm[base] != '*')
                    continue;
                const char *r = nm + base + 1;
                if (*r == '\0') { /* name*: a single extended value, segment 0 */
                    if (seg == 0)
                        found = &ps->v[k], ext = true;
                    continue;
                }
                char *e;
                unsigned long idx = strtoul(r, &e, 10);
                if (e == r || (r[0] == '0' && r[1] >= '0' && r[1] <= '9') || idx != seg)
                    continue;
                if (*e == '\0' || (e[0] == '*' && e[1] == '\0')) {
                    found = &ps->v[k], ext = *e == '*';
                    break;
                }
            }
            if (!found)
                break;
            any2231 = true;
            const char *v = found->value;
            if (ext && seg == 0) { /* charset'language'value */
                const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
                if (q2) {
                    free(charset);
                    charset = dup_n(v, (size_t)(q1 - v));
                    if (!charset) {
                        pu_buf_free(&raw);
                        params_free(&out);
                        return -1;
                    }
                    v = q2 + 1;
                }
            }
            for (; *v; v++) {
                char c = *v;
                if (ext && c == '%' && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    c = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                    if (c == '\0')
                        continue;
                }
                if (buf_putc(&raw, c) < 0) {
                    free(charset);
                    pu_buf_free(&raw);
                    params_free(&out);
                    return -1;
                }
            }
            if (seg >= MAX_PARAMS)
                break;
        }
        if (!any2231) {
            for (size_t k = 0; k < ps->n; k++)
                if (ci_eq(ps->v[k].name, base, ps->v[i].name) && ps->v[k].name[base] == '\0') {
                    plain = ps->v[k].value;
                    break;
                }
            if (!plain) { /* only odd forms (e.g. name*x): pass through untouched */
                if (params_add(&out, strdup(ps->v[i].name), strdup(ps->v[i].value)) < 0) {
                    params_free(&out);
                    return -1;
                }
                continue;
            }
            if (params_add(&out, dup_n(ps->v[i].name, base), strdup(plain)) < 0) {
                params_free(&out);
                return -1;
            }
            continue;
        }
        /* Decoded bytes -> final value. */
        pu_buf val = {0};
        int rc = 0;
        const char *bytes = raw.data ? raw.data : "";
        if (is_ascii(bytes, raw.len)) {
            rc = pu_buf_add(&val, bytes, raw.len);
        } else {
            const char *cs = charset && *charset ? charset : "UTF-8";
            bool safe = token_len(cs) == strlen(cs) && !strchr(cs, '?');
            char *conv = NULL;
            if (safe && !ci_str(cs, "utf-8") && !ci_str(cs, "us-ascii") &&
                charconv("UTF-8", cs, bytes, raw.len, &conv) == MAIL_CHARCONV_NO_ERROR && conv) {
                rc = append_encoded_words(&val, "UTF-8", (const unsigned char *)conv, strlen(conv));
                free(conv);
            } else {
                free(conv);
                rc = append_encoded_words(&val, safe && !ci_str(cs, "us-ascii") ? cs : "UTF-8",
                                          (const unsigned char *)bytes, raw.len);
            }
        }
        free(charset);
        pu_buf_free(&raw);
        if (rc < 0 || params_add(&out, dup_n(ps->v[i].name, base), val.data ? val.data : strdup("")) < 0) {
            if (rc < 0)
                pu_buf_free(&val);
            params_free(&out);
            return -1;
        }
    }
    params_free(ps);
    *ps = out;
    return 0;
}

/* Content-Type: type "/" subtype params. Invalid (including a type without subtype) leaves
 * type NULL: RFC 2045 section 5.2 says to assume text/plain; charset=us-ascii then. */
static int parse_content_type(ctx *c, part *p)
{
    if (!p->cf[CF_TYPE].present)
        return 0;
    char *s = unfold(c->m->buf, p->cf[CF_TYPE].off, p->cf[CF_TYPE].len);
    if (!s)
        return -1;
    size_t i = 0;
    skip_cfws(s, &i);
    size_t tn = token_len(s + i), ts = i;
    i += tn;
    skip_cfws(s, &i);
    if (tn && s[i] == '/') {
        i++;
        skip_cfws(s, &i);
        size_t sn = token_len(s + i);
        if (sn) {
            p->type = dup_n(s + ts, tn);
            p->subtype = dup_n(s + i, sn);
            if (!p->type || !p->subtype || parse_params(s, i + sn, &p->ctparams) < 0 ||
                rfc2231_decode(&p->ctparams) < 0) {
                free(s);
                return -1;
            }
        }
    }
    free(s);
    return 0;
}

static int parse_disposition(ctx *c, part *p)
{
    if (!p->cf[CF_DISP].present)
        return 0;
    char *s = unfold(c->m->buf, p->cf[CF_DISP].off, p->cf[CF_DISP].len);
    if (!s)
        return -1;
    size_t i = 0;
    skip_cfws(s, &i);
    size_t tn = token_len(s + i);
    int rc = 0;
    if (tn) {
        p->disp = dup_n(s + i, tn);
        if (!p->disp || parse_params(s, i + tn, &p->dparams) < 0 || rfc2231_decode(&p->dparams) < 0)
            rc = -1;
    }
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Tree */

static bool type_is(const part *p, const char *t) { return p->type && ci_str(p->type, t); }

static bool is_boundary_line(const char *b, size_t pos, size_t end, const char *bd, size_t bl,
                             bool *close)
{
    if (end - pos < 2 + bl || b[pos] != '-' || b[pos + 1] != '-' || memcmp(b + pos + 2, bd, bl))
        return false;
    size_t q = pos + 2 + bl;
    *close = false;
    if (q + 1 < end && b[q] == '-' && b[q + 1] == '-')
        *close = true, q += 2;
    /* RFC 2046: only linear whitespace may follow, so "--b1" is not a delimiter of "b". */
    while (q < end && (is_wsp(b[q]) || b[q] == '\r'))
        q++;
    return q == end || b[q] == '\n';
}

static part *new_part(ctx *c)
{
    part *p = calloc(1, sizeof *p);
    if (!p)
        c->oom = true;
    else
        c->m->nparts++;
    return p;
}

static void parse_entity(ctx *c, part *p, size_t start, size_t end, unsigned depth,
                         bool digest_child);

static void parse_multipart(ctx *c, part *p, unsigned depth)
{
    const char *b = c->m->buf, *bd = NULL;
    for (size_t i = 0; i < p->ctparams.n; i++)
        if (ci_str(p->ctparams.v[i].name, "boundary"))
            bd = p->ctparams.v[i].value;
    p->kind = PART_MULTIPART;
    size_t bl = bd ? strlen(bd) : 0, end = p->body_off + p->body_len, pos = p->body_off;
    if (!bl)
        return; /* no parts: written as one empty text/plain, like Dovecot */
    bool close = false, found = false;
    for (; pos < end; pos = next_line(b, pos, end))
        if ((found = is_boundary_line(b, pos, end, bd, bl, &close)))
            break;
    bool digest = ci_str(p->subtype, "digest");
    while (found && !close && !c->oom) {
        size_t cstart = next_line(b, pos, end), q = cstart;
        found = false;
        for (; q < end; q = next_line(b, q, end))
            if ((found = is_boundary_line(b, q, end, bd, bl, &close)))
                break;
        size_t cend = q;
        if (found && cend > cstart) { /* the line end before a delimiter belongs to it */
            cend--;
            if (cend > cstart && b[cend - 1] == '\r')
                cend--;
        }
        if (c->m->nparts >= c->m->lim.max_parts)
            return;
        part **ch = realloc(p->children, (p->nchildren + 1) * sizeof *ch);
        if (!ch) {
            c->oom = true;
            return;
        }
        p->children = ch;
        part *k = new_part(c);
        if (!k)
            return;
        p->children[p->nchildren++] = k;
        parse_entity(c, k, cstart, cend, depth + 1, digest);
        pos = q;
    }
}

/* One MIME entity (header + body) in [start,end). depth counts enclosing composites. */
static void parse_entity(ctx *c, part *p, size_t start, size_t end, unsigned depth,
                         bool digest_child)
{
    const mime_message *m = c->m;
    split_header(p, m->buf, start, end);
    size_t hl = p->hdr_len < m->lim.max_header ? p->hdr_len : m->lim.max_header;
    struct collect col = {p};
    for_each_field(m->buf, p->hdr_off, hl, false, collect_field, &col);
    p->body_lines = count_lf(m->buf, p->body_off, p->body_len);
    if (parse_content_type(c, p) < 0 || parse_disposition(c, p) < 0) {
        c->oom = true;
        return;
    }
    if (!p->type && digest_child && !p->cf[CF_TYPE].present) {
        /* RFC 2046 5.1.5: a digest's parts default to message/rfc822 */
        p->type = strdup("message"), p->subtype = strdup("rfc822");
        if (!p->type || !p->subtype) {
            c->oom = true;
            return;
        }
    }
    bool composite = type_is(p, "multipart") || (type_is(p, "message") && ci_str(p->subtype, "rfc822"));
    if (!composite)
        return;
    if (depth >= m->lim.max_depth || m->nparts >= m->lim.max_parts) {
        p->opaque = true; /* bounded work: the rest is one opaque leaf */
        return;
    }
    if (type_is(p, "multipart")) {
        parse_multipart(c, p, depth);
        return;
    }
    part *e = new_part(c);
    if (!e || !(p->children = malloc(sizeof *p->children))) {
        free(e);
        c->oom = true;
        return;
    }
    p->kind = PART_MESSAGE;
    p->children[0] = e, p->nchildren = 1;
    e->is_msg = true;
    parse_entity(c, e, p->body_off, p->body_off + p->body_len, depth + 1, false);
}

static void part_free(part *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nchildren; i++)
        part_free(p->children[i]);
    free(p->children);
    free(p->type), free(p->subtype), free(p->disp);
    params_free(&p->ctparams);
    params_free(&p->dparams);
    free(p);
}

mime_message *mime_parse(const char *buf, size_t len, const mime_limits *limits)
{
    mime_message *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->buf = buf ? buf : "", m->len = buf ? len : 0;
    m->lim.max_depth = limits && limits->max_depth ? limits->max_depth : MIME_DEFAULT_MAX_DEPTH;
    m->lim.max_parts = limits && limits->max_parts ? limits->max_parts : MIME_DEFAULT_MAX_PARTS;
    m->lim.max_header = limits && limits->max_header ? limits->max_header : MIME_DEFAULT_MAX_HEADER;
    if (m->lim.max_depth > 1000) /* recursion is one C frame per level */
        m->lim.max_depth = 1000;
    ctx c = {m, false};
    m->root = new_part(&c);
    if (m->root) {
        m->root->is_msg = true;
        parse_entity(&c, m->root, 0, m->len, 0, false);
    }
    if (c.oom) {
        mime_free(m);
        return NULL;
    }
    return m;
}

void mime_free(mime_message *m)
{
    if (!m)
        return;
    part_free(m->root);
    free(m);
}

size_t mime_size(const mime_message *m) { return m->len; }

/* ---------------------------------------------------------------------------------------- */
/* IMAP strings */

int mime_write_nstring(pu_buf *out, const char *s, size_t n)
{
    if (!s)
        return buf_puts(out, "NIL");
    size_t kept = 0;
    bool literal = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            continue;
        kept++;
        if (ch >= 0x80 || ch == '"' || ch == '\\')
            literal = true;
    }
    if (literal) {
        if (buf_putc(out, '{') < 0 || buf_putu(out, kept) < 0 || buf_puts(out, "}\r\n") < 0)
            return -1;
    } else if (buf_putc(out, '"') < 0)
        return -1;
    if (pu_buf_reserve(out, kept + 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\r' && s[i] != '\n' && s[i] != '\0')
            out->data[out->len++] = s[i];
    out->data[out->len] = '\0';
    return literal ? 0 : buf_putc(out, '"');
}

static int put_str(pu_buf *o, const char *s) { return mime_write_nstring(o, s, s ? strlen(s) : 0); }

static int put_span(const mime_message *m, pu_buf *o, const span *sp)
{
    if (!sp->present)
        return buf_puts(o, "NIL");
    char *s = unfold(m->buf, sp->off, sp->len);
    if (!s)
        return -1;
    int rc = put_str(o, s);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Addresses (RFC 5322 3.4, leniently, with the RFC 3501 group encoding) */

typedef struct addr_tok {
    char kind;        /* 'a' atom, 'q' quoted, 'c' comment, 'd' domain literal, or special */
    bool space_before;
    const char *s;    /* raw text for atoms/literals; content for quoted/comment */
    size_t n;
} addr_tok;

typedef struct addr_out {
    pu_buf *o;
    size_t count;
    bool text; /* "name <mailbox@host>, ..." for SEARCH, instead of the ENVELOPE's lists */
} addr_out;

static int append_decoded(pu_buf *o, const char *s);

static int put_addr(addr_out *ao, const char *name, const char *adl, const char *mbox,
                    const char *host)
{
    if (ao->text) { /* group markers (no host) are not addresses; no placeholders either */
        if (!host)
            return 0;
        bool has_mbox = strcmp(mbox, "MISSING_MAILBOX") != 0, has_host = strcmp(host, "MISSING_DOMAIN") != 0;
        if ((ao->count++ && buf_puts(ao->o, ", ") < 0) ||
            (name && *name && (append_decoded(ao->o, name) < 0 || buf_putc(ao->o, ' ') < 0)))
            return -1;
        return buf_putc(ao->o, '<') < 0 || (has_mbox && buf_puts(ao->o, mbox) < 0) ||
                       (has_host && (buf_putc(ao->o, '@') < 0 || buf_puts(ao->o, host) < 0)) ||
                       buf_putc(ao->o, '>') < 0
                   ? -1
                   : 0;
    }
    if (ao->count++ == 0 && buf_putc(ao->o, '(') < 0)
        return -1;
    if (buf_putc(ao->o, '(') < 0 || put_str(ao->o, name) < 0 || buf_putc(ao->o, ' ') < 0 ||
        put_str(ao->o, adl) < 0 || buf_putc(ao->o, ' ') < 0 || put_str(ao->o, mbox) < 0 ||
        buf_putc(ao->o, ' ') < 0 || put_str(ao->o, host) < 0 || buf_putc(ao->o, ')') < 0)
        return -1;
    return 0;
}

/* Quoted/comment content with quoted-pairs undone, into a fresh buffer segment. */
static int tok_text(pu_buf *b, const addr_tok *t)
{
    if (t->kind != 'q' && t->kind != 'c')
        return pu_buf_add(b, t->s, t->n);
    for (size_t i = 0; i < t->n; i++) {
        if (t->s[i] == '\\' && i + 1 < t->n)
            i++;
        if (buf_putc(b, t->s[i]) < 0)
            return -1;
    }
    return 0;
}

static size_t tokenize_addrs(const char *s, addr_tok *t, size_t max)
{
    size_t n = 0, i = 0;
    bool sp = false;
    while (s[i] && n < max) {
        char ch = s[i];
        if (is_wsp(ch)) {
            sp = true, i++;
            continue;
        }
        addr_tok k = {ch, sp, s + i, 1};
        if (ch == '"' || ch == '(' || ch == '[') {
            char close = ch == '"' ? '"' : ch == '(' ? ')' : ']';
            int depth = 1;
            size_t j = i + 1;
            while (s[j]) {
                if (s[j] == '\\' && s[j + 1])
                    j++;
                else if (ch == '(' && s[j] == '(')
                    depth++;
                else if (s[j] == close && --depth == 0)
                    break;
                j++;
            }
            k.kind = ch == '"' ? 'q' : ch == '(' ? 'c' : 'd';
            if (k.kind == 'd')
                k.s = s + i, k.n = j - i + (s[j] ? 1 : 0);
            else
                k.s = s + i + 1, k.n = j - i - 1;
            i = s[j] ? j + 1 : j;
        } else if (strchr("<>@,;:.", ch)) {
            i++;
        } else {
            size_t j = i;
            while (s[j] && !is_wsp(s[j]) && !strchr("<>@,;:.\"()[", s[j]))
                j++;
            k.kind = 'a', k.n = j - i;
            i = j;
        }
        sp = k.kind == 'c';
        t[n++] = k;
    }
    return n;
}

/* Joins tokens [i,j) of kinds atom/quoted/'.' into b: phrase mode puts single spaces where
 * the source had whitespace; local-part/domain mode concatenates. Comments are skipped. */
static int join_toks(pu_buf *b, const addr_tok *t, size_t i, size_t j, bool phrase)
{
    bool first = true;
    for (; i < j; i++) {
        if (t[i].kind == 'c')
            continue;
        if (phrase && !first && t[i].space_before && buf_putc(b, ' ') < 0)
            return -1;
        if (tok_text(b, &t[i]) < 0)
            return -1;
        first = false;
    }
    return 0;
}

static bool stop_tok(char k, const char *stops) { return k != 'a' && k != 'q' && k != 'c' && k != 'd' && strchr(stops, k); }

/* One mailbox starting at *pi; emits it. Returns -1 on OOM. */
static int parse_mailbox(const addr_tok *t, size_t n, size_t *pi, addr_out *ao, bool in_group,
                         bool *group_start, size_t *name_end)
{
    size_t i = *pi, ps = i;
    while (i < n && !stop_tok(t[i].kind, "<:@,;>"))
        i++;
    pu_buf name = {0}, adl = {0}, mbox = {0}, host = {0};
    int rc = 0;
    bool angle = false;
    *group_start = false;
    if (i < n && t[i].kind == ':' && !in_group) {
        *group_start = true, *name_end = i, *pi = i + 1;
        return 0;
    }
    if (i < n && t[i].kind == '<') {
        angle = true; /* even "<>" is an address: the null reverse-path */
        rc |= join_toks(&name, t, ps, i, true);
        i++;
        size_t rs = i;
        /* obs-route: "@a,@b:" before the addr-spec */
        if (i < n && t[i].kind == '@') {
            size_t j = i;
            while (j < n && !stop_tok(t[j].kind, ":>"))
                j++;
            if (j < n && t[j].kind == ':') {
                rc |= join_toks(&adl, t, rs, j, false);
                i = j + 1;
            }
        }
        size_t ls = i;
        while (i < n && !stop_tok(t[i].kind, "@>"))
            i++;
        rc |= join_toks(&mbox, t, ls, i, false);
        if (i < n && t[i].kind == '@') {
            size_t ds = ++i;
            while (i < n && !stop_tok(t[i].kind, ">,;"))
                i++;
            rc |= join_toks(&host, t, ds, i, false);
        }
        while (i < n && !stop_tok(t[i].kind, ",;"))
            i++;
    } else {
        rc |= join_toks(&mbox, t, ps, i, false);
        if (i < n && t[i].kind == '@') {
            size_t ds = ++i;
            while (i < n && !stop_tok(t[i].kind, ",;<>:"))
                i++;
            rc |= join_toks(&host, t, ds, i, false);
            for (size_t k = ds; k < i; k++)
                if (t[k].kind == 'c' && k + 1 == i) /* "addr (Name)": the comment names it */
                    rc |= tok_text(&name, &t[k]);
        }
        while (i < n && !stop_tok(t[i].kind, ",;"))
            i++;
    }
    *pi = i;
    if (rc < 0 || (!angle && name.len == 0 && mbox.len == 0 && host.len == 0 && adl.len == 0)) {
        pu_buf_free(&name), pu_buf_free(&adl), pu_buf_free(&mbox), pu_buf_free(&host);
        return rc < 0 ? -1 : 0;
    }
    /* RFC 3501 has no way to say "no host" outside groups: mark it like Dovecot does. */
    rc = put_addr(ao, name.len ? name.data : NULL, adl.len ? adl.data : NULL,
                  mbox.len ? mbox.data : "MISSING_MAILBOX", host.len ? host.data : "MISSING_DOMAIN");
    pu_buf_free(&name), pu_buf_free(&adl), pu_buf_free(&mbox), pu_buf_free(&host);
    return rc;
}

/* Parses the unfolded address list s into ao. */
static int addr_list(const char *s, addr_out *ao)
{
    size_t cap = strlen(s) + 1;
    addr_tok *t = malloc(cap * sizeof *t);
    if (!t)
        return -1;
    size_t n = tokenize_addrs(s, t, cap), i = 0;
    int rc = 0;
    bool in_group = false;
    while (i < n && rc == 0) {
        if (t[i].kind == ',' || (t[i].kind == ';' && !in_group) || t[i].kind == '>' || t[i].kind == 'c') {
            i++;
            continue;
        }
        if (t[i].kind == ';') {
            rc = put_addr(ao, NULL, NULL, NULL, NULL);
            in_group = false, i++;
            continue;
        }
        bool gs;
        size_t ne, before = i;
        rc = parse_mailbox(t, n, &i, ao, in_group, &gs, &ne);
        if (rc == 0 && gs) {
            pu_buf g = {0};
            rc = join_toks(&g, t, before, ne, true);
            if (rc == 0)
                rc = put_addr(ao, NULL, NULL, g.len ? g.data : "", NULL);
            pu_buf_free(&g);
            in_group = true;
        } else if (i == before) {
            i++; /* a stray ':' inside a group: skip it */
        }
    }
    if (rc == 0 && in_group)
        rc = put_addr(ao, NULL, NULL, NULL, NULL);
    free(t);
    return rc;
}

/* Writes an address list (or NIL). *count gets the number of address structures. */
static int put_addresses(const mime_message *m, pu_buf *o, const span *sp, size_t *count)
{
    *count = 0;
    if (!sp->present)
        return buf_puts(o, "NIL");
    char *s = unfold(m->buf, sp->off, sp->len);
    if (!s)
        return -1;
    addr_out ao = {o, 0, false};
    int rc = addr_list(s, &ao);
    free(s);
    if (rc < 0)
        return -1;
    *count = ao.count;
    return ao.count ? buf_putc(o, ')') : buf_puts(o, "NIL");
}

/* ---------------------------------------------------------------------------------------- */
/* ENVELOPE, BODY, BODYSTRUCTURE */

static int write_envelope(const mime_message *m, const part *p, pu_buf *o)
{
    size_t mark, cnt;
    if (buf_putc(o, '(') < 0 || put_span(m, o, &p->env[ENV_DATE]) < 0 || buf_putc(o, ' ') < 0 ||
        put_span(m, o, &p->env[ENV_SUBJECT]) < 0 || buf_putc(o, ' ') < 0)
        return -1;
    size_t from_at = o->len;
    if (put_addresses(m, o, &p->env[ENV_FROM], &cnt) < 0)
        return -1;
    size_t from_len = o->len - from_at;
    for (int f = ENV_SENDER; f <= ENV_BCC; f++) {
        if (buf_putc(o, ' ') < 0)
            return -1;
        mark = o->len;
        if (put_addresses(m, o, &p->env[f], &cnt) < 0)
            return -1;
        if (cnt == 0 && (f == ENV_SENDER || f == ENV_REPLY_TO)) {
            /* RFC 3501: sender and reply-to default to from */
            o->len = mark;
            if (pu_buf_reserve(o, from_len) < 0)
                return -1;
            memcpy(o->data + o->len, o->data + from_at, from_len);
            o->len += from_len;
            o->data[o->len] = '\0';
        }
    }
    if (buf_putc(o, ' ') < 0 || put_span(m, o, &p->env[ENV_IN_REPLY_TO]) < 0 ||
        buf_putc(o, ' ') < 0 || put_span(m, o, &p->env[ENV_MESSAGE_ID]) < 0)
        return -1;
    return buf_putc(o, ')');
}

int mime_write_envelope(const mime_message *m, pu_buf *out)
{
    return write_envelope(m, m->root, out);
}

static int put_params(pu_buf *o, const params *ps, bool add_charset)
{
    if (!ps->n && !add_charset)
        return buf_puts(o, "NIL");
    if (buf_putc(o, '(') < 0)
        return -1;
    for (size_t i = 0; i < ps->n; i++)
        if ((i && buf_putc(o, ' ') < 0) || put_str(o, ps->v[i].name) < 0 ||
            buf_putc(o, ' ') < 0 || put_str(o, ps->v[i].value) < 0)
            return -1;
    if (add_charset && buf_puts(o, ps->n ? " \"charset\" \"us-ascii\"" : "\"charset\" \"us-ascii\"") < 0)
        return -1;
    return buf_putc(o, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static int put_ext_tail(const mime_message *m, pu_buf *o, const part *p)
{
    if (p->disp) {
        if (buf_putc(o, '(') < 0 || put_str(o, p->disp) < 0 || buf_putc(o, ' ') < 0 ||
            put_params(o, &p->dparams, false) < 0 || buf_putc(o, ')') < 0)
            return -1;
    } else if (buf_puts(o, "NIL") < 0)
        return -1;
    if (buf_putc(o, ' ') < 0)
        return -1;
    /* Content-Language: a list of tags, always as a parenthesised list */
    size_t nl = 0;
    if (p->cf[CF_LANG].present) {
        char *s = unfold(m->buf, p->cf[CF_LANG].off, p->cf[CF_LANG].len);
        if (!s)
            return -1;
        size_t i = 0;
        for (;;) {
            skip_cfws(s, &i);
            while (s[i] == ',')
                i++, skip_cfws(s, &i);
            size_t tn = token_len(s + i);
            if (!tn)
                break;
            if ((buf_puts(o, nl++ ? " " : "(") < 0) || mime_write_nstring(o, s + i, tn) < 0) {
                free(s);
                return -1;
            }
            i += tn;
        }
        free(s);
    }
    if (buf_puts(o, nl ? ")" : "NIL") < 0 || buf_putc(o, ' ') < 0)
        return -1;
    return put_span(m, o, &p->cf[CF_LOC]);
}

static int write_part(const mime_message *m, const part *p, pu_buf *o, bool ext);

#define EMPTY_PART "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

static int write_part(const mime_message *m, const part *p, pu_buf *o, bool ext)
{
    if (p->kind == PART_MULTIPART) {
        if (buf_putc(o, '(') < 0)
            return -1;
        if (!p->nchildren && buf_puts(o, ext ? EMPTY_PART " NIL NIL NIL NIL)" : EMPTY_PART ")") < 0)
            return -1;
        for (size_t i = 0; i < p->nchildren; i++)
            if (write_part(m, p->children[i], o, ext) < 0)
                return -1;
        if (buf_putc(o, ' ') < 0 || put_str(o, p->subtype) < 0)
            return -1;
        if (ext && (buf_putc(o, ' ') < 0 || put_params(o, &p->ctparams, false) < 0 ||
                    buf_putc(o, ' ') < 0 || put_ext_tail(m, o, p) < 0))
            return -1;
        return buf_putc(o, ')');
    }
    bool deflt = !p->type;
    const char *type = p->opaque ? "application" : deflt ? "text" : p->type;
    const char *sub = p->opaque ? "octet-stream" : deflt ? "plain" : p->subtype;
    bool text = ci_str(type, "text");
    bool has_cs = false;
    for (size_t i = 0; i < p->ctparams.n; i++)
        has_cs |= ci_str(p->ctparams.v[i].name, "charset");
    static const params none = {0};
    if (buf_putc(o, '(') < 0 || put_str(o, type) < 0 || buf_putc(o, ' ') < 0 ||
        put_str(o, sub) < 0 || buf_putc(o, ' ') < 0 ||
        put_params(o, p->opaque ? &none : &p->ctparams, text && !has_cs) < 0 ||
        buf_putc(o, ' ') < 0 || put_span(m, o, &p->cf[CF_ID]) < 0 || buf_putc(o, ' ') < 0 ||
        put_span(m, o, &p->cf[CF_DESC]) < 0 || buf_putc(o, ' ') < 0)
        return -1;
    /* body-fld-enc: the first token of the header, 7bit when absent or empty */
    char *cte = p->cf[CF_CTE].present ? unfold(m->buf, p->cf[CF_CTE].off, p->cf[CF_CTE].len) : NULL;
    if (p->cf[CF_CTE].present && !cte)
        return -1;
    size_t i = 0, tn = 0;
    if (cte) {
        skip_cfws(cte, &i);
        tn = token_len(cte + i);
    }
    int rc = tn ? mime_write_nstring(o, cte + i, tn) : buf_puts(o, "\"7bit\"");
    free(cte);
    if (rc < 0 || buf_putc(o, ' ') < 0 || buf_putu(o, p->body_len) < 0)
        return -1;
    if (p->kind == PART_MESSAGE) {
        const part *e = p->children[0];
        if (buf_putc(o, ' ') < 0 || write_envelope(m, e, o) < 0 || buf_putc(o, ' ') < 0 ||
            write_part(m, e, o, ext) < 0 || buf_putc(o, ' ') < 0 || buf_putu(o, p->body_lines) < 0)
            return -1;
    } else if (text && (buf_putc(o, ' ') < 0 || buf_putu(o, p->body_lines) < 0)) {
        return -1;
    }
    if (ext && (buf_putc(o, ' ') < 0 || put_span(m, o, &p->cf[CF_MD5]) < 0 ||
                buf_putc(o, ' ') < 0 || put_ext_tail(m, o, p) < 0))
        return -1;
    return buf_putc(o, ')');
}

int mime_write_body(const mime_message *m, pu_buf *out) { return write_part(m, m->root, out, false); }

int mime_write_bodystructure(const mime_message *m, pu_buf *out)
{
    return write_part(m, m->root, out, true);
}

/* ---------------------------------------------------------------------------------------- */
/* BODY[section]<partial> */

static bool ci_prefix(const char *s, size_t n, const char *word, size_t *used)
{
    size_t wl = strlen(word);
    if (n < wl || strncasecmp(s, word, wl) != 0)
        return false;
    *used = wl;
    return true;
}

void mime_section_free(mime_section *sec)
{
    free(sec->fields);
    free(sec->field_lens);
    sec->fields = NULL, sec->field_lens = NULL, sec->nfields = 0;
}

int mime_section_parse(const char *spec, size_t len, mime_section *sec)
{
    memset(sec, 0, sizeof *sec);
    size_t i = 0, used;
    sec->kind = MIME_SECTION_BODY;
    while (i < len && spec[i] >= '0' && spec[i] <= '9') {
        if (spec[i] == '0' || sec->npath == MIME_SECTION_MAX_PATH)
            return 1; /* nz-number; deeper paths than any parse could produce are BAD */
        unsigned long v = 0;
        while (i < len && spec[i] >= '0' && spec[i] <= '9') {
            v = v * 10 + (unsigned long)(spec[i++] - '0');
            if (v > 0xffffffffUL)
                return 1;
        }
        sec->path[sec->npath++] = (unsigned)v;
        if (i == len)
            return 0;
        if (spec[i++] != '.')
            return 1;
        if (i == len)
            return 1;
    }
    if (i == len)
        return 0; /* "" */
    const char *s = spec + i;
    size_t n = len - i;
    if (sec->npath && n == 4 && ci_prefix(s, n, "MIME", &used)) {
        sec->kind = MIME_SECTION_MIME;
        return 0;
    }
    if (n == 4 && ci_prefix(s, n, "TEXT", &used)) {
        sec->kind = MIME_SECTION_TEXT;
        return 0;
    }
    if (n == 6 && ci_prefix(s, n, "HEADER", &used)) {
        sec->kind = MIME_SECTION_HEADER;
        return 0;
    }
    if (ci_prefix(s, n, "HEADER.FIELDS.NOT ", &used))
        sec->kind = MIME_SECTION_HEADER_FIELDS_NOT;
    else if (ci_prefix(s, n, "HEADER.FIELDS ", &used))
        sec->kind = MIME_SECTION_HEADER_FIELDS;
    else
        return 1;
    s += used, n -= used;
    if (n < 2 || s[0] != '(' || s[n - 1] != ')')
        return 1;
    s++, n -= 2;
    size_t cap = n / 2 + 1;
    sec->fields = malloc(cap * sizeof *sec->fields);
    sec->field_lens = malloc(cap * sizeof *sec->field_lens);
    if (!sec->fields || !sec->field_lens) {
        mime_section_free(sec);
        return -1;
    }
    size_t k = 0;
    while (k < n) {
        const char *f;
        size_t fl;
        if (s[k] == '"') {
            size_t j = k + 1;
            while (j < n && s[j] != '"' && s[j] != '\\')
                j++;
            if (j == n || s[j] != '"' || j == k + 1)
                goto bad;
            f = s + k + 1, fl = j - k - 1;
            k = j + 1;
        } else {
            size_t j = k;
            while (j < n && s[j] != ' ' && (unsigned char)s[j] > ' ' && (unsigned char)s[j] < 0x7f &&
                   !strchr("(){%*\"\\]", s[j]))
                j++;
            if (j == k)
                goto bad;
            f = s + k, fl = j - k;
            k = j;
        }
        sec->fields[sec->nfields] = f;
        sec->field_lens[sec->nfields++] = fl;
        if (k < n && (s[k++] != ' ' || k == n))
            goto bad;
    }
    if (!sec->nfields)
        goto bad;
    return 0;
bad:
    mime_section_free(sec);
    return 1;
}

/* Walks a part path per RFC 3501 6.4.5: numbers index multipart children; a non-multipart
 * part has only part 1, itself; a message/rfc822 part followed by more numbers continues in
 * the message it encloses. */
static const part *resolve(const mime_message *m, const mime_section *sec)
{
    const part *cur = m->root;
    for (size_t k = 0; k < sec->npath; k++) {
        unsigned n = sec->path[k];
        if (cur->kind == PART_MULTIPART) {
            if (n < 1 || n > cur->nchildren)
                return NULL;
            cur = cur->children[n - 1];
        } else if (n != 1) {
            return NULL;
        }
        if (k + 1 < sec->npath && cur->kind == PART_MESSAGE)
            cur = cur->children[0];
    }
    return cur;
}

static bool field_listed(const mime_section *sec, const char *name, size_t nlen)
{
    for (size_t i = 0; i < sec->nfields; i++)
        if (sec->field_lens[i] == nlen && strncasecmp(sec->fields[i], name, nlen) == 0)
            return true;
    return false;
}

/* HEADER.FIELDS[.NOT]: the chosen fields as they appear (folding kept), then the blank line
 * that IMAP servers always end this section with. */
static int header_fields(const mime_message *m, const part *p, const mime_section *sec,
                         pu_buf *o)
{
    const char *b = m->buf;
    size_t pos = p->hdr_off, end = p->hdr_off + p->hdr_len;
    bool not = sec->kind == MIME_SECTION_HEADER_FIELDS_NOT;
    while (pos < end && !is_blank_line(b, pos, end)) {
        size_t fstart = pos;
        pos = next_line(b, pos, end);
        while (pos < end && is_wsp(b[pos]))
            pos = next_line(b, pos, end);
        const char *colon = memchr(b + fstart, ':', pos - fstart);
        if (!colon || is_wsp(b[fstart])) {
            /* not a field (no colon, a continuation with nothing to continue): no name
             * matches it, so .NOT keeps it, as Dovecot does */
            if (!not)
                continue;
        } else {
            size_t nlen = (size_t)(colon - (b + fstart));
            while (nlen && is_wsp(b[fstart + nlen - 1]))
                nlen--;
            if (field_listed(sec, b + fstart, nlen) == not)
                continue;
        }
        if (pu_buf_add(o, b + fstart, pos - fstart) < 0)
            return -1;
        if (b[pos - 1] != '\n' && pu_buf_add(o, "\r\n", 2) < 0)
            return -1;
    }
    return pu_buf_add(o, "\r\n", 2);
}

mime_section_result mime_section_get(const mime_message *m, const mime_section *sec,
                                     pu_buf *scratch, const char **data, size_t *len)
{
    *data = m->buf, *len = 0;
    const part *p = resolve(m, sec);
    if (!p)
        return MIME_SECTION_NONE;
    if (sec->kind == MIME_SECTION_BODY) {
        if (!sec->npath)
            *len = m->len;
        else
            *data = m->buf + p->body_off, *len = p->body_len;
        return MIME_SECTION_OK;
    }
    if (sec->kind == MIME_SECTION_MIME) {
        if (!sec->npath)
            return MIME_SECTION_NONE;
        *data = m->buf + p->hdr_off, *len = p->hdr_len;
        return MIME_SECTION_OK;
    }
    if (sec->npath) {
        if (p->kind != PART_MESSAGE)
            return MIME_SECTION_NONE;
        p = p->children[0];
    }
    switch (sec->kind) {
    case MIME_SECTION_HEADER:
        *data = m->buf + p->hdr_off, *len = p->hdr_len;
        return MIME_SECTION_OK;
    case MIME_SECTION_TEXT:
        *data = m->buf + p->body_off, *len = p->body_len;
        return MIME_SECTION_OK;
    default:
        pu_buf_clear(scratch);
        if (header_fields(m, p, sec, scratch) < 0)
            return MIME_SECTION_NOMEM;
        *data = scratch->data, *len = scratch->len;
        return MIME_SECTION_OK;
    }
}

void mime_partial(const char *data, size_t len, uint64_t start, uint64_t count,
                  const char **out, size_t *out_len)
{
    if (start >= len) {
        *out = data + len, *out_len = 0;
        return;
    }
    size_t rest = len - (size_t)start;
    *out = data + start;
    *out_len = count < rest ? (size_t)count : rest;
}

/* ---------------------------------------------------------------------------------------- */
/* SEARCH text */

/* RFC 2047 words -> UTF-8; raw 8-bit text is taken as UTF-8. Falls back to the raw value
 * when libetpan rejects it. */
static int append_decoded(pu_buf *o, const char *s)
{
    size_t idx = 0;
    char *res = NULL;
    if (*s && mailmime_encoded_phrase_parse("utf-8", s, strlen(s), &idx, "utf-8", &res) ==
                  MAILIMF_NO_ERROR && res) {
        int rc = buf_puts(o, res);
        free(res);
        return rc;
    }
    return buf_puts(o, s);
}

struct hdr_walk {
    const mime_message *m;
    pu_buf *o;
    const char *want; /* NULL: every field */
    bool first;       /* only the first field named want */
    int found;        /* 1 found, -1 out of memory */
};

static bool address_field(const char *name, size_t nlen)
{
    static const char *const names[] = {"From", "Sender", "Reply-To", "To", "Cc", "Bcc"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (ci_eq(name, nlen, names[i]))
            return true;
    return false;
}

/* An address field's value as the addresses it holds ("name <mailbox@host>, ..."), after
 * the decoded value when it reads differently: comments, quoting and spaces around "@" and
 * "." are gone from it, so "user@domain.org" finds "<user (c)@ (c) domain.org>". */
static int append_address_text(pu_buf *o, const char *raw, size_t value_at)
{
    pu_buf t = {0};
    addr_out ao = {&t, 0, true};
    int rc = addr_list(raw, &ao);
    if (rc == 0 && t.len &&
        (t.len != o->len - value_at || memcmp(t.data, o->data + value_at, t.len) != 0))
        rc = buf_putc(o, '\n') < 0 || pu_buf_add(o, t.data, t.len) < 0 ? -1 : 0;
    pu_buf_free(&t);
    return rc;
}

static void hdr_walk_field(void *arg, const char *name, size_t nlen, size_t voff, size_t vlen)
{
    struct hdr_walk *w = arg;
    if (w->found < 0 || (w->found && w->first) || (w->want && (!name || !ci_eq(name, nlen, w->want))))
        return;
    char *s = unfold_as(w->m->buf, voff, vlen, true);
    /* every field of that name (SEARCH HEADER looks at all of them), one per line */
    size_t at = w->o->len + (w->want && w->found);
    if (!s || (w->want && w->found && buf_putc(w->o, '\n') < 0) ||
        (!w->want && name && (pu_buf_add(w->o, name, nlen) < 0 || buf_puts(w->o, ": ") < 0)) ||
        append_decoded(w->o, s) < 0 || (!w->want && buf_putc(w->o, '\n') < 0)) {
        free(s);
        w->found = -1;
        return;
    }
    free(s);
    if (w->want && !w->first && address_field(name, nlen)) {
        /* the addresses as ENVELOPE reads them (a bare CR ends the value there) */
        char *v = unfold(w->m->buf, voff, vlen);
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
    struct hdr_walk w = {m, out, name, false, 0};
    for_each_field(m->buf, m->root->hdr_off, m->root->hdr_len, false, hdr_walk_field, &w);
    return w.found;
}

int mime_headers_decoded(const mime_message *m, pu_buf *out)
{
    struct hdr_walk w = {m, out, NULL, false, 0};
    /* every line, fields or not: TEXT means "in the header or body" (RFC 3501 6.4.4) */
    for_each_field(m->buf, m->root->hdr_off, m->root->hdr_len, true, hdr_walk_field, &w);
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

int mime_sent_date(const mime_message *m, int64_t *t, int *tz_minutes)
{
    pu_buf b = {0};
    struct hdr_walk w = {m, &b, "Date", true, 0}; /* the first Date: field is the date */
    for_each_field(m->buf, m->root->hdr_off, m->root->hdr_len, false, hdr_walk_field, &w);
    int found = w.found;
    int rc = 0;
    if (found == 1 && b.len) {
        size_t idx = 0;
        struct mailimf_date_time *dt = NULL;
        if (mailimf_date_time_parse(b.data, b.len, &idx, &dt) == MAILIMF_NO_ERROR && dt) {
            int zone = dt->dt_zone; /* +0130 comes as 130 */
            int zmin = (zone / 100) * 60 + zone % 100;
            if (dt->dt_month >= 1 && dt->dt_month <= 12 && dt->dt_day >= 1 && dt->dt_day <= 31 &&
                zmin > -24 * 60 && zmin < 24 * 60) {
                int64_t days = days_from_civil(dt->dt_year, (unsigned)dt->dt_month, (unsigned)dt->dt_day);
                *t = days * 86400 + dt->dt_hour * 3600 + dt->dt_min * 60 + dt->dt_sec - (int64_t)zmin * 60;
                *tz_minutes = zmin;
                rc = 1;
            }
            mailimf_date_time_free(dt);
        }
    }
    pu_buf_free(&b);
    return rc;
}

static int leaf_text(const mime_message *m, const part *p, pu_buf *o)
{
    int enc = MAILMIME_MECHANISM_8BIT;
    if (p->cf[CF_CTE].present) {
        char *cte = unfold(m->buf, p->cf[CF_CTE].off, p->cf[CF_CTE].len);
        if (!cte)
            return -1;
        if (ci_str(cte, "base64"))
            enc = MAILMIME_MECHANISM_BASE64;
        else if (ci_str(cte, "quoted-printable"))
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
        if (ci_str(p->ctparams.v[i].name, "charset"))
            cs = p->ctparams.v[i].value;
    if (cs && *cs && !ci_str(cs, "utf-8") && !ci_str(cs, "us-ascii") && tlen &&
        charconv("utf-8", cs, text, tlen, &conv) == MAIL_CHARCONV_NO_ERROR && conv)
        text = conv, tlen = strlen(conv);
    int rc = pu_buf_add(o, text, tlen);
    if (rc == 0)
        rc = buf_putc(o, '\n');
    free(conv);
    if (dec)
        mailmime_decoded_part_free(dec);
    return rc;
}

static int walk_text(const mime_message *m, const part *p, pu_buf *o)
{
    if (p->kind == PART_LEAF)
        return !p->opaque && (!p->type || type_is(p, "text")) ? leaf_text(m, p, o) : 0;
    for (size_t i = 0; i < p->nchildren; i++)
        if (walk_text(m, p->children[i], o) < 0)
            return -1;
    return 0;
}

int mime_body_text(const mime_message *m, pu_buf *out) { return walk_text(m, m->root, out); }
