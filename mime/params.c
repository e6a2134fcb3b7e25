/* RFC 2045 parameters of Content-Type and Content-Disposition, with RFC 2231 continuations
 * and charsets. */
#include <libetpan/libetpan.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_int.h"

void mi_params_free(mime_params *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i].name), free(ps->v[i].value);
    free(ps->v);
    ps->v = NULL, ps->n = 0;
}

/* Takes ownership of name and value (freed on failure). */
static int params_add(mime_params *ps, char *name, char *value)
{
    mime_param *v = name && value ? realloc(ps->v, (ps->n + 1) * sizeof *v) : NULL;
    if (!v) {
        free(name), free(value);
        return -1;
    }
    ps->v = v;
    ps->v[ps->n++] = (mime_param){name, value};
    return 0;
}

/* ";" attribute "=" value pairs. Malformed pairs are skipped to the next ';' so one bad
 * parameter does not cost the good ones (RFC 2045 parsers in the wild are this lenient). */
/* Real headers carry a handful of parameters; the cap keeps RFC 2231 joining (quadratic in
 * the count) cheap on hostile ones. */
#define MAX_PARAMS 128

int mi_parse_params(const char *s, size_t i, mime_params *out)
{
    for (;;) {
        mime_skip_cfws(s, &i);
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
        mime_skip_cfws(s, &i);
        size_t an = mime_token_len(s + i);
        if (!an)
            continue;
        const char *attr = s + i;
        i += an;
        mime_skip_cfws(s, &i);
        if (s[i] != '=')
            continue;
        i++;
        mime_skip_cfws(s, &i);
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
            size_t vn = mime_token_len(s + i);
            if (!vn)
                continue;
            val = mi_dup_n(s + i, vn);
            i += vn;
        }
        if (params_add(out, mi_dup_n(attr, an), val) < 0)
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
    bool utf8 = mi_ci_str(cs, "utf-8");
    size_t maxraw = utf8 ? (75 - 12) / 4 * 3 : n; /* 12 = strlen("=?UTF-8?B??=") */
    size_t i = 0;
    while (i < n) {
        size_t take = n - i < maxraw ? n - i : maxraw;
        if (utf8 && i + take < n)
            while (take > 1 && (s[i + take] & 0xC0) == 0x80)
                take--;
        if ((i && mi_putc(o, ' ') < 0) || mi_puts(o, "=?") < 0 || mi_puts(o, cs) < 0 ||
            mi_puts(o, "?B?") < 0)
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
        if (mi_puts(o, "?=") < 0)
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
int mi_rfc2231_decode(mime_params *ps)
{
    mime_params out = {0};
    for (size_t i = 0; i < ps->n; i++) {
        char *star = strchr(ps->v[i].name, '*');
        size_t base = star ? (size_t)(star - ps->v[i].name) : strlen(ps->v[i].name);
        bool seen = false, any2231 = false;
        for (size_t k = 0; k < out.n && !seen; k++)
            seen = mi_ci_eq(ps->v[i].name, base, out.v[k].name);
        if (seen || !base)
            continue;
        /* Gather this base name's segments: index -1 = plain, 0.. = continuation. */
        pu_buf raw = {0};
        char *charset = NULL;
        const char *plain = NULL;
        for (unsigned seg = 0;; seg++) {
            const mime_param *found = NULL;
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
                    charset = mi_dup_n(v, (size_t)(q1 - v));
                    if (!charset) {
                        pu_buf_free(&raw);
                        mi_params_free(&out);
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
                if (mi_putc(&raw, c) < 0) {
                    free(charset);
                    pu_buf_free(&raw);
                    mi_params_free(&out);
                    return -1;
                }
            }
            if (seg >= MAX_PARAMS)
                break;
        }
        if (!any2231) {
            for (size_t k = 0; k < ps->n; k++)
                if (mi_ci_eq(ps->v[k].name, base, ps->v[i].name) && ps->v[k].name[base] == '\0') {
                    plain = ps->v[k].value;
                    break;
                }
            if (!plain) { /* only odd forms (e.g. name*x): pass through untouched */
                if (params_add(&out, strdup(ps->v[i].name), strdup(ps->v[i].value)) < 0) {
                    mi_params_free(&out);
                    return -1;
                }
                continue;
            }
            if (params_add(&out, mi_dup_n(ps->v[i].name, base), strdup(plain)) < 0) {
                mi_params_free(&out);
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
            bool safe = mime_token_len(cs) == strlen(cs) && !strchr(cs, '?');
            char *conv = NULL;
            if (safe && !mi_ci_str(cs, "utf-8") && !mi_ci_str(cs, "us-ascii") &&
                charconv("UTF-8", cs, bytes, raw.len, &conv) == MAIL_CHARCONV_NO_ERROR && conv) {
                rc = append_encoded_words(&val, "UTF-8", (const unsigned char *)conv, strlen(conv));
                free(conv);
            } else {
                free(conv);
                rc = append_encoded_words(&val, safe && !mi_ci_str(cs, "us-ascii") ? cs : "UTF-8",
                                          (const unsigned char *)bytes, raw.len);
            }
        }
        free(charset);
        pu_buf_free(&raw);
        if (rc < 0 || params_add(&out, mi_dup_n(ps->v[i].name, base), val.data ? val.data : strdup("")) < 0) {
            if (rc < 0)
                pu_buf_free(&val);
            mi_params_free(&out);
            return -1;
        }
    }
    mi_params_free(ps);
    *ps = out;
    return 0;
}
