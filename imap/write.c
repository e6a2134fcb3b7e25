/* Response formatting: IMAP strings in the right form for their bytes (the one string
 * writer, for responses and for message header values alike), lists, sequence sets, and the
 * modified UTF-7 mailbox name codec. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap.h"

/* ---- strings ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. Overlong
 * forms, surrogates and values past U+10FFFF are invalid. Sets *cp. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool quotable(const unsigned char *s, size_t len, unsigned flags)
{
    if (len >= 1000)
        return false;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c == 0 || c == '\r' || c == '\n')
            return false;
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = (flags & PI_W_UTF8) ? utf8_seq(s + i, len - i, &cp) : 0;
            if (!k)
                return false;
            i += k;
            continue;
        }
        i++;
    }
    return true;
}

/* PI_W_HEADER: CR, LF and NUL dropped; quoted unless 8-bit, '"' or '\\' remain. */
static int write_header_string(pu_buf *b, const unsigned char *s, size_t len)
{
    size_t kept = 0;
    bool literal = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0')
            continue;
        kept++;
        if (ch >= 0x80 || ch == '"' || ch == '\\')
            literal = true;
    }
    if (literal ? pu_buf_printf(b, "{%zu}\r\n", kept) < 0 : pu_buf_add(b, "\"", 1) < 0)
        return -1;
    if (pu_buf_reserve(b, kept + 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '\r' && s[i] != '\n' && s[i] != '\0')
            b->data[b->len++] = (char)s[i];
    b->data[b->len] = '\0';
    return literal ? 0 : pu_buf_add(b, "\"", 1);
}

int pi_write_string(pu_buf *b, const void *sv, size_t len, unsigned flags)
{
    const unsigned char *s = sv;
    if (flags & PI_W_HEADER)
        return write_header_string(b, s, len);
    if (!quotable(s, len, flags)) {
        if (pu_buf_printf(b, "{%zu}\r\n", len) < 0)
            return -1;
        return pu_buf_add(b, s, len);
    }
    size_t esc = 0;
    for (size_t i = 0; i < len; i++)
        esc += s[i] == '"' || s[i] == '\\';
    if (pu_buf_reserve(b, len + esc + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *o++ = '\\';
        *o++ = (char)s[i];
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

/* RFC 3501 ATOM-CHAR: no atom-specials ( ) { SP CTL % * " \ ]. */
static bool strict_atom_char(unsigned c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", (int)c);
}

int pi_write_astring(pu_buf *b, const void *sv, size_t len, unsigned flags)
{
    const unsigned char *s = sv;
    bool atom = len > 0 && len < 1000 && !(len == 3 && strncasecmp((const char *)s, "NIL", 3) == 0);
    for (size_t i = 0; atom && i < len; i++)
        atom = strict_atom_char(s[i]);
    if (atom)
        return pu_buf_add(b, s, len);
    return pi_write_string(b, s, len, flags);
}

int pi_write_nstring(pu_buf *b, const void *s, size_t len, unsigned flags)
{
    if (!s)
        return pu_buf_add(b, "NIL", 3);
    return pi_write_string(b, s, len, flags);
}

int pi_write_list_begin(pu_buf *b)
{
    return pu_buf_add(b, "(", 1);
}

int pi_write_list_sep(pu_buf *b)
{
    if (b->len && b->data[b->len - 1] == '(')
        return 0;
    return pu_buf_add(b, " ", 1);
}

int pi_write_list_end(pu_buf *b)
{
    return pu_buf_add(b, ")", 1);
}

int pi_write_atom_list(pu_buf *b, const char *const *atoms, size_t n)
{
    if (pi_write_list_begin(b) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((i && pu_buf_add(b, " ", 1) < 0) || pu_buf_addstr(b, atoms[i]) < 0)
            return -1;
    return pi_write_list_end(b);
}

int pi_write_seqset(pu_buf *b, const pi_seqset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        const pi_range *r = &set->r[i];
        int e = r->lo == r->hi ? pu_buf_printf(b, "%s%u", i ? "," : "", (unsigned)r->lo)
                               : pu_buf_printf(b, "%s%u:%u", i ? "," : "", (unsigned)r->lo, (unsigned)r->hi);
        if (e < 0)
            return -1;
    }
    return 0;
}

/* ---- modified UTF-7 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned c)
{
    if (c >= 'A' && c <= 'Z')
        return (int)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (int)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (int)(c - '0' + 52);
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

int pi_mutf7_encode(const char *utf8, size_t len, pu_buf *out)
{
    const unsigned char *s = (const unsigned char *)utf8;
    size_t start = out->len;
    for (size_t i = 0; i < len;) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            if (pu_buf_add(out, s[i] == '&' ? "&-" : (const char *)s + i, s[i] == '&' ? 2 : 1) < 0)
                goto fail;
            i++;
            continue;
        }
        /* A run of non-printable characters goes into one shifted base64 block of UTF-16. */
        if (pu_buf_add(out, "&", 1) < 0)
            goto fail;
        uint32_t bits = 0;
        int nbits = 0;
        while (i < len && !(s[i] >= 0x20 && s[i] < 0x7f)) {
            uint32_t cp;
            size_t k = utf8_seq(s + i, len - i, &cp);
            if (!k || cp == 0) /* NUL has no place in a mailbox name */
                goto fail;
            i += k;
            uint16_t units[2];
            int nu = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[0] = (uint16_t)(0xd800 | (cp >> 10));
                units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
                nu = 2;
            } else {
                units[0] = (uint16_t)cp;
            }
            for (int u = 0; u < nu; u++) {
                bits = (bits << 16) | units[u];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    if (pu_buf_add(out, &b64[(bits >> nbits) & 0x3f], 1) < 0)
                        goto fail;
                }
                bits &= (1u << nbits) - 1;
            }
        }
        if (nbits && pu_buf_add(out, &b64[(bits << (6 - nbits)) & 0x3f], 1) < 0)
            goto fail;
        if (pu_buf_add(out, "-", 1) < 0)
            goto fail;
    }
    return pu_buf_add(out, "", 0);
fail:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}

static int put_utf8(pu_buf *out, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6)), u[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12)), u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18)), u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (unsigned char)(0x80 | (cp & 0x3f)), n = 4;
    }
    return pu_buf_add(out, u, n);
}

int pi_mutf7_decode(const char *mutf7, size_t len, pu_buf *out)
{
    const unsigned char *s = (const unsigned char *)mutf7;
    size_t start = out->len;
    bool prev_shift = false; /* a shift just ended: another one right away is not canonical */
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x20 || c >= 0x7f)
            goto fail;
        if (c != '&') {
            if (pu_buf_add(out, s + i, 1) < 0)
                goto fail;
            i++;
            prev_shift = false;
            continue;
        }
        i++;
        if (i < len && s[i] == '-') {
            if (pu_buf_add(out, "&", 1) < 0)
                goto fail;
            i++;
            prev_shift = false;
            continue;
        }
        if (prev_shift)
            goto fail;
        uint32_t bits = 0, high = 0;
        int nbits = 0;
        size_t nchars = 0;
        for (;; i++) {
            if (i >= len)
                goto fail; /* unterminated shift */
            if (s[i] == '-')
                break;
            int v = b64val(s[i]);
            if (v < 0)
                goto fail;
            nchars++;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            if (nbits < 16)
                continue;
            nbits -= 16;
            uint32_t u = (bits >> nbits) & 0xffff;
            bits &= (1u << nbits) - 1;
            if (high) {
                if (u < 0xdc00 || u > 0xdfff)
                    goto fail;
                if (put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00)) < 0)
                    goto fail;
                high = 0;
            } else if (u >= 0xd800 && u <= 0xdbff) {
                high = u;
            } else if ((u >= 0xdc00 && u <= 0xdfff) || (u >= 0x20 && u < 0x7f) || u == 0) {
                goto fail; /* lone low surrogate, printable ASCII that must not be shifted, NUL */
            } else if (put_utf8(out, u) < 0) {
                goto fail;
            }
        }
        /* Leftover bits must be fewer than 6 and zero; an empty shift "&-" was handled above. */
        if (nchars == 0 || high || nbits >= 6 || bits != 0)
            goto fail;
        i++; /* the '-' */
        prev_shift = true;
    }
    return pu_buf_add(out, "", 0);
fail:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}
