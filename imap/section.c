/* FETCH attribute syntax: the parser hands "BODY.PEEK[...]<...>" over as one atom, and
 * these helpers take it apart for the FETCH handler. */
#include <string.h>
#include <strings.h>

#include "imap/imap.h"

/* Unsigned 32-bit decimal; nz requires a non-zero first digit. Advances *i. */
static int num32(const char *s, size_t len, size_t *i, bool nz, uint32_t *v)
{
    if (*i >= len || s[*i] < '0' || s[*i] > '9' || (nz && s[*i] == '0'))
        return -1;
    uint64_t n = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        n = n * 10 + (uint64_t)(s[(*i)++] - '0');
        if (n > UINT32_MAX)
            return -1;
    }
    *v = (uint32_t)n;
    return 0;
}

int pi_fetch_att_split(const char *s, size_t len, pi_fetch_att *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len && s[i] != '[' && s[i] != '<')
        i++;
    if (i == 0)
        return -1;
    out->name = s;
    out->name_len = i;
    if (i < len && s[i] == '[') {
        size_t start = ++i;
        bool quoted = false, esc = false;
        for (; i < len; i++) {
            if (esc)
                esc = false;
            else if (quoted && s[i] == '\\')
                esc = true;
            else if (s[i] == '"')
                quoted = !quoted;
            else if (!quoted && s[i] == ']')
                break;
        }
        if (i == len)
            return -1;
        out->has_section = true;
        out->section = s + start;
        out->section_len = i - start;
        i++;
    }
    if (i < len && s[i] == '<') {
        i++;
        if (num32(s, len, &i, false, &out->partial_offset) < 0 || i >= len || s[i++] != '.' ||
            num32(s, len, &i, true, &out->partial_count) < 0 || i >= len || s[i++] != '>')
            return -1;
        out->has_partial = true;
    }
    return i == len ? 0 : -1;
}

static bool word_at(const char *s, size_t len, size_t i, const char *w)
{
    size_t n = strlen(w);
    return len - i >= n && strncasecmp(s + i, w, n) == 0;
}

/* RFC 5322 field-name characters: printable ASCII but ':'. */
static bool field_char(char c)
{
    return c > 0x20 && c < 0x7f && c != ':';
}

/* A header field name in a header-list: an atom, or a quoted string (unescaped). */
static int field(const char *s, size_t len, size_t *i, pu_buf *fields)
{
    size_t start = *i;
    if (s[*i] == '"') {
        for ((*i)++; *i < len && s[*i] != '"'; (*i)++) {
            if (s[*i] == '\\' && ++*i >= len)
                return -1;
            if (!field_char(s[*i]) || pu_buf_add(fields, s + *i, 1) < 0)
                return -1;
        }
        if (*i == start + 1)
            return -1; /* "" names no field */
        if (*i >= len)
            return -1;
        (*i)++;
        return pu_buf_add(fields, "", 1);
    }
    while (*i < len && field_char(s[*i]) && s[*i] != ')' && s[*i] != '(' && s[*i] != '"')
        (*i)++;
    if (*i == start)
        return -1;
    if (pu_buf_add(fields, s + start, *i - start) < 0 || pu_buf_add(fields, "", 1) < 0)
        return -1;
    return 0;
}

int pi_section_parse(const char *s, size_t len, pi_section *sec, pu_buf *fields)
{
    memset(sec, 0, sizeof *sec);
    size_t i = 0;
    sec->kind = PI_SEC_ALL;
    if (len == 0)
        return 0;
    /* section-part: nz-number *("." nz-number) */
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (sec->nparts == PI_SECTION_MAX_PARTS || num32(s, len, &i, true, &sec->part[sec->nparts]) < 0)
            return -1;
        sec->nparts++;
        if (i == len)
            return 0;
        if (s[i++] != '.')
            return -1;
    }
    if (i == len)
        return -1; /* trailing "." */
    if (word_at(s, len, i, "HEADER.FIELDS.NOT ")) {
        sec->kind = PI_SEC_HEADER_FIELDS_NOT;
        i += 18;
    } else if (word_at(s, len, i, "HEADER.FIELDS ")) {
        sec->kind = PI_SEC_HEADER_FIELDS;
        i += 14;
    } else if (len - i == 6 && word_at(s, len, i, "HEADER")) {
        sec->kind = PI_SEC_HEADER;
        return 0;
    } else if (len - i == 4 && word_at(s, len, i, "TEXT")) {
        sec->kind = PI_SEC_TEXT;
        return 0;
    } else if (len - i == 4 && word_at(s, len, i, "MIME") && sec->nparts) {
        sec->kind = PI_SEC_MIME;
        return 0;
    } else {
        return -1;
    }
    if (i >= len || s[i++] != '(')
        return -1;
    for (;;) {
        if (i >= len || field(s, len, &i, fields) < 0)
            return -1;
        sec->nfields++;
        if (i < len && s[i] == ' ') {
            i++;
            continue;
        }
        break;
    }
    if (i >= len || s[i++] != ')' || i != len)
        return -1;
    return 0;
}
