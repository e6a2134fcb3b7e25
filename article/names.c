/* Address canonicalisation and the address <-> newsgroup mapping (docs/formats.md section 1). */
#include "article/article.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Sub-groups hung below a mail group: a local part spelled like one is escaped so that
 * "encrypt@x.example.jp" cannot land in the key group of "x@example.jp". */
static const char *const reserved_local[] = {"encrypt", "sent", "drafts", "trash", "state"};
/* First components news servers treat specially (INN files control messages and unwanted
 * articles there, and sends to.* only to the named site); only reachable with no prefix. */
static const char *const reserved_first[] = {"control", "junk", "to"};

#define KEY_SUFFIX_LEN (sizeof PA_KEY_SUFFIX - 1)
/* A domain label or local part encodes to at most 3 octets per byte; the whole name, before
 * the length check, fits comfortably here. */
#define WORK_MAX 1024

static void fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, surrogates or code points
 * past U+10FFFF) at s, or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Copies s (n bytes) into dst for quoting in an error message: whole UTF-8 characters and
 * printable ASCII as they are, anything else as \xNN, cut with "..." so the message stays
 * one readable line. */
static const char *shown(char *dst, size_t cap, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t k = utf8_len(u + i, n - i);
        size_t need = (k == 1 && u[i] >= 0x20 && u[i] < 0x7f) ? 1 : k > 1 ? k : 4;
        if (o + need + 4 > cap) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (need == 4)
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", u[i]), k = 1;
        else
            memcpy(dst + o, u + i, need), o += need;
        i += k;
    }
    dst[o] = '\0';
    return dst;
}

static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int check_local(const unsigned char *l, size_t n, char *err, size_t errlen)
{
    char q[80];
    if (n == 0)
        return fail(err, errlen, "local part is empty"), -1;
    if (n > 64)
        return fail(err, errlen, "local part longer than 64 octets (%zu)", n), -1;
    if (l[0] == '.')
        return fail(err, errlen, "local part starts with '.'"), -1;
    if (l[n - 1] == '.')
        return fail(err, errlen, "local part ends with '.'"), -1;
    for (size_t i = 0; i < n;) {
        unsigned char c = l[i];
        if (c >= 0x80) {
            size_t k = utf8_len(l + i, n - i);
            if (k == 0)
                return fail(err, errlen, "local part '%s' is not valid UTF-8",
                            shown(q, sizeof q, (const char *)l, n)), -1;
            i += k;
            continue;
        }
        if (c == '.' && i + 1 < n && l[i + 1] == '.')
            return fail(err, errlen, "local part has '..'"), -1;
        if (c != '.' && !is_atext(c)) {
            if (c > 0x20 && c < 0x7f)
                fail(err, errlen, "local part has '%c', which needs quoting (not supported)", c);
            else
                fail(err, errlen, "local part has byte 0x%02x, which is not allowed", c);
            return -1;
        }
        i++;
    }
    return 0;
}

static int check_domain(const unsigned char *d, size_t n, char *err, size_t errlen)
{
    char q[80];
    if (n == 0)
        return fail(err, errlen, "domain is empty"), -1;
    if (d[0] == '[')
        return fail(err, errlen, "domain literals like '[10.0.0.1]' are not supported"), -1;
    for (size_t i = 0; i < n; i++)
        if (d[i] >= 0x80)
            return fail(err, errlen, "domain '%s' is not ASCII: give its xn-- form",
                        shown(q, sizeof q, (const char *)d, n)), -1;
    size_t labels = 0;
    for (size_t s = 0; s <= n;) {
        size_t e = s;
        while (e < n && d[e] != '.')
            e++;
        size_t len = e - s;
        const char *lab = (const char *)d + s;
        if (len == 0)
            return fail(err, errlen, "domain '%s' has an empty label",
                        shown(q, sizeof q, (const char *)d, n)), -1;
        if (len > 63)
            return fail(err, errlen, "domain label '%s' longer than 63 octets",
                        shown(q, sizeof q, lab, len)), -1;
        for (size_t i = 0; i < len; i++)
            if (!is_ldh(lower((unsigned char)lab[i])))
                return fail(err, errlen, "domain label '%s' has a character other than a-z 0-9 -",
                            shown(q, sizeof q, lab, len)), -1;
        if (lab[0] == '-' || lab[len - 1] == '-')
            return fail(err, errlen, "domain label '%s' %s with '-'", shown(q, sizeof q, lab, len),
                        lab[0] == '-' ? "starts" : "ends"), -1;
        if (++labels > 127)
            return fail(err, errlen, "domain has more than 127 labels"), -1;
        s = e + 1;
    }
    return 0;
}

int pa_address_canonical(const char *address, char *out, size_t cap, char *err, size_t errlen)
{
    if (!address || !*address)
        return fail(err, errlen, "address is empty"), -1;
    if (strchr(address, '"'))
        return fail(err, errlen, "quoted local parts are not supported"), -1;
    const char *at = strchr(address, '@');
    if (!at)
        return fail(err, errlen, "address has no '@'"), -1;
    if (strchr(at + 1, '@'))
        return fail(err, errlen, "address has more than one '@'"), -1;
    size_t n = strlen(address), ln = (size_t)(at - address);
    if (check_local((const unsigned char *)address, ln, err, errlen) < 0 ||
        check_domain((const unsigned char *)at + 1, n - ln - 1, err, errlen) < 0)
        return -1;
    if (n > PA_ADDRESS_MAX)
        return fail(err, errlen, "address is %zu octets (limit %d)", n, PA_ADDRESS_MAX), -1;
    if (!out || n >= cap)
        return fail(err, errlen, "no room for the canonical address"), -1;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)lower((unsigned char)address[i]);
    return 0;
}

static int in_list(const char *s, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0)
            return 1;
    return 0;
}

/* Appends the encoding of one component; escape_first forces the first byte into _hh (a
 * reserved name), which the plain rules never do for a letter. */
static size_t encode(char *w, size_t o, const char *s, size_t n, int escape_first)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = (c >= 'a' && c <= 'z') || (i > 0 && is_ldh(c));
        if (plain && !(i == 0 && escape_first)) {
            w[o++] = (char)c;
        } else {
            w[o++] = '_';
            w[o++] = hex[c >> 4];
            w[o++] = hex[c & 15];
        }
    }
    return o;
}

int pa_prefix_check(const char *prefix, char *err, size_t errlen)
{
    char q[80];
    if (!prefix || !*prefix)
        return 0;
    size_t n = strlen(prefix);
    /* Room for the shortest name below it, "<prefix>.a.b.encrypt". */
    size_t limit = PA_GROUP_MAX - 4 - KEY_SUFFIX_LEN;
    if (n > limit)
        return fail(err, errlen, "prefix is %zu octets (limit %zu)", n, limit), -1;
    for (size_t s = 0; s <= n;) {
        size_t e = s;
        while (e < n && prefix[e] != '.')
            e++;
        const char *c = prefix + s;
        size_t len = e - s, digits = 0;
        if (len == 0)
            return fail(err, errlen, "prefix '%s' has an empty component",
                        shown(q, sizeof q, prefix, n)), -1;
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (!is_ldh(ch) && ch != '+')
                return fail(err, errlen, "prefix component '%s' has a character other than a-z 0-9 + -",
                            shown(q, sizeof q, c, len)), -1;
            digits += ch >= '0' && ch <= '9';
        }
        if (digits == len)
            return fail(err, errlen, "prefix component '%s' is all digits", shown(q, sizeof q, c, len)), -1;
        if (c[0] == '-')
            return fail(err, errlen, "prefix component '%s' starts with '-'", shown(q, sizeof q, c, len)), -1;
        if (s == 0 && in_list(c, len, reserved_first, sizeof reserved_first / sizeof *reserved_first))
            return fail(err, errlen, "prefix cannot start with '%.*s' (news servers reserve it)",
                        (int)len, c), -1;
        s = e + 1;
    }
    return 0;
}

/* Builds the mail group of a canonical address into w (WORK_MAX); returns its length. */
static size_t build_group(const char *prefix, const char *canon, char *w)
{
    size_t o = 0, pn = strlen(prefix);
    memcpy(w, prefix, pn);
    o = pn;
    const char *at = strchr(canon, '@');
    const char *dom = at + 1, *end = dom + strlen(dom);
    /* Domain labels right to left. */
    while (end > dom) {
        const char *s = end;
        while (s > dom && s[-1] != '.')
            s--;
        size_t len = (size_t)(end - s);
        int first = o == 0;
        if (!first)
            w[o++] = '.';
        o = encode(w, o, s, len,
                   first && in_list(s, len, reserved_first, sizeof reserved_first / sizeof *reserved_first));
        end = s > dom ? s - 1 : s;
    }
    size_t ln = (size_t)(at - canon);
    w[o++] = '.';
    o = encode(w, o, canon, ln, in_list(canon, ln, reserved_local, sizeof reserved_local / sizeof *reserved_local));
    w[o] = '\0';
    return o;
}

static int to_group(const char *prefix, const char *address, const char *suffix, char *group,
                    size_t cap, char *err, size_t errlen)
{
    char canon[PA_ADDRESS_MAX + 1], w[WORK_MAX];
    if (!prefix)
        prefix = "";
    if (pa_prefix_check(prefix, err, errlen) < 0)
        return -1;
    if (pa_address_canonical(address, canon, sizeof canon, err, errlen) < 0)
        return -1;
    size_t n = build_group(prefix, canon, w);
    /* The key group is the longest name an address needs; refuse the address unless it fits. */
    if (n + KEY_SUFFIX_LEN > PA_GROUP_MAX)
        return fail(err, errlen, "group name would be %zu octets with its %s suffix (limit %d)",
                    n + KEY_SUFFIX_LEN, PA_KEY_SUFFIX, PA_GROUP_MAX), -1;
    size_t sn = strlen(suffix);
    if (!group || n + sn >= cap)
        return fail(err, errlen, "no room for the group name"), -1;
    memcpy(group, w, n);
    memcpy(group + n, suffix, sn + 1);
    return 0;
}

int pa_address_to_group(const char *prefix, const char *address, char *group, size_t cap,
                        char *err, size_t errlen)
{
    return to_group(prefix, address, "", group, cap, err, errlen);
}

int pa_address_to_key_group(const char *prefix, const char *address, char *group, size_t cap,
                            char *err, size_t errlen)
{
    return to_group(prefix, address, PA_KEY_SUFFIX, group, cap, err, errlen);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper-case hex is never written, so never read */
}

/* Decodes one component (n bytes) into out; -1 on a byte postern never writes. */
static int decode(const char *s, size_t n, char *out, size_t *outn)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '_') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (char)(hi << 4 | lo);
            i += 3;
        } else if (is_ldh((unsigned char)s[i])) {
            out[o++] = s[i++];
        } else {
            return -1;
        }
    }
    *outn = o;
    return 0;
}

int pa_group_to_address(const char *prefix, const char *group, char *address, size_t cap)
{
    if (!prefix)
        prefix = "";
    if (!group || pa_prefix_check(prefix, NULL, 0) < 0)
        return -1;
    size_t gn = strlen(group), pn = strlen(prefix);
    if (gn > PA_GROUP_MAX)
        return -1;
    const char *g = group;
    if (pn) {
        if (gn <= pn || memcmp(group, prefix, pn) != 0 || group[pn] != '.')
            return -1;
        g += pn + 1;
    }
    size_t n = strlen(g);
    /* A plain last component "encrypt" is never a local part, so it marks a key group. */
    if (n > KEY_SUFFIX_LEN && memcmp(g + n - KEY_SUFFIX_LEN, PA_KEY_SUFFIX, KEY_SUFFIX_LEN) == 0)
        n -= KEY_SUFFIX_LEN;
    char mail[PA_GROUP_MAX + 1];
    memcpy(mail, group, (size_t)(g - group) + n);
    mail[(size_t)(g - group) + n] = '\0';

    /* Decode the components; the last is the local part, the rest the domain reversed. */
    const char *comp[PA_GROUP_MAX];
    size_t clen[PA_GROUP_MAX], k = 0;
    for (size_t s = 0; s <= n;) {
        size_t e = s;
        while (e < n && g[e] != '.')
            e++;
        if (e == s)
            return -1;
        comp[k] = g + s;
        clen[k++] = e - s;
        s = e + 1;
    }
    if (k < 2)
        return -1;
    char addr[WORK_MAX];
    size_t o = 0, dn;
    if (decode(comp[k - 1], clen[k - 1], addr, &dn) < 0)
        return -1;
    o = dn;
    addr[o++] = '@';
    for (size_t i = k - 1; i-- > 0;) {
        if (decode(comp[i], clen[i], addr + o, &dn) < 0)
            return -1;
        o += dn;
        if (i > 0)
            addr[o++] = '.';
    }
    addr[o] = '\0';
    if (memchr(addr, '\0', o) != NULL)
        return -1; /* an escaped NUL */
    /* Accept exactly the names the forward mapping makes: re-encode and compare. This
     * rejects needless escapes, plain reserved names, upper case and invalid addresses. */
    char canon[PA_ADDRESS_MAX + 1], again[PA_GROUP_MAX + 1];
    if (pa_address_canonical(addr, canon, sizeof canon, NULL, 0) < 0 || strcmp(canon, addr) != 0)
        return -1;
    if (pa_address_to_group(prefix, canon, again, sizeof again, NULL, 0) < 0 || strcmp(again, mail) != 0)
        return -1;
    size_t an = strlen(canon);
    if (!address || an >= cap)
        return -1;
    memcpy(address, canon, an + 1);
    return 0;
}
