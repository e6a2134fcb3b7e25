/* FETCH attribute syntax: the parser hands "BODY.PEEK[...]<...>" over as one atom, and
 * these helpers take it apart for the FETCH handler: the attribute, its section-spec (the
 * one BODY[section] grammar), the partial, and the bytes a section names in a message
 * parsed by mime/. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/fetch.h"

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

static bool ci_prefix(const char *s, size_t n, const char *word, size_t *used)
{
    size_t wl = strlen(word);
    if (n < wl || strncasecmp(s, word, wl) != 0)
        return false;
    *used = wl;
    return true;
}

void pi_section_free(pi_section *sec)
{
    free(sec->fields);
    free(sec->field_lens);
    sec->fields = NULL, sec->field_lens = NULL, sec->nfields = 0;
}

int pi_section_parse(const char *spec, size_t len, pi_section *sec)
{
    memset(sec, 0, sizeof *sec);
    size_t i = 0, used;
    sec->kind = PI_SECTION_BODY;
    while (i < len && spec[i] >= '0' && spec[i] <= '9') {
        if (spec[i] == '0' || sec->npath == PI_SECTION_MAX_PATH)
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
        sec->kind = PI_SECTION_MIME;
        return 0;
    }
    if (n == 4 && ci_prefix(s, n, "TEXT", &used)) {
        sec->kind = PI_SECTION_TEXT;
        return 0;
    }
    if (n == 6 && ci_prefix(s, n, "HEADER", &used)) {
        sec->kind = PI_SECTION_HEADER;
        return 0;
    }
    if (ci_prefix(s, n, "HEADER.FIELDS.NOT ", &used))
        sec->kind = PI_SECTION_HEADER_FIELDS_NOT;
    else if (ci_prefix(s, n, "HEADER.FIELDS ", &used))
        sec->kind = PI_SECTION_HEADER_FIELDS;
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
        pi_section_free(sec);
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
    pi_section_free(sec);
    return 1;
}

/* Walks a part path per RFC 3501 6.4.5: numbers index multipart children; a non-multipart
 * part has only part 1, itself; a message/rfc822 part followed by more numbers continues in
 * the message it encloses. */
static const mime_part *resolve(const mime_message *m, const pi_section *sec)
{
    const mime_part *cur = mime_root(m);
    for (size_t k = 0; k < sec->npath; k++) {
        unsigned n = sec->path[k];
        if (cur->kind == MIME_PART_MULTIPART) {
            if (n < 1 || n > cur->nchildren)
                return NULL;
            cur = cur->children[n - 1];
        } else if (n != 1) {
            return NULL;
        }
        if (k + 1 < sec->npath && cur->kind == MIME_PART_MESSAGE)
            cur = cur->children[0];
    }
    return cur;
}

/* HEADER.FIELDS[.NOT]: the chosen fields as they appear (folding kept), then the blank line
 * that IMAP servers always end this section with. */
static int header_fields(const mime_message *m, const mime_part *p, const pi_section *sec, pu_buf *o)
{
    if (mime_header_select(m, p, sec->fields, sec->field_lens, sec->nfields,
                           sec->kind == PI_SECTION_HEADER_FIELDS_NOT, o) < 0)
        return -1;
    return pu_buf_add(o, "\r\n", 2);
}

pi_section_result pi_section_get(const mime_message *m, const pi_section *sec, pu_buf *scratch,
                                 const char **data, size_t *len)
{
    const char *buf = mime_data(m);
    *data = buf, *len = 0;
    const mime_part *p = resolve(m, sec);
    if (!p)
        return PI_SECTION_NONE;
    if (sec->kind == PI_SECTION_BODY) {
        if (!sec->npath)
            *len = mime_size(m);
        else
            *data = buf + p->body_off, *len = p->body_len;
        return PI_SECTION_OK;
    }
    if (sec->kind == PI_SECTION_MIME) {
        if (!sec->npath)
            return PI_SECTION_NONE;
        *data = buf + p->hdr_off, *len = p->hdr_len;
        return PI_SECTION_OK;
    }
    if (sec->npath) {
        if (p->kind != MIME_PART_MESSAGE)
            return PI_SECTION_NONE;
        p = p->children[0];
    }
    switch (sec->kind) {
    case PI_SECTION_HEADER:
        *data = buf + p->hdr_off, *len = p->hdr_len;
        return PI_SECTION_OK;
    case PI_SECTION_TEXT:
        *data = buf + p->body_off, *len = p->body_len;
        return PI_SECTION_OK;
    default:
        pu_buf_clear(scratch);
        if (header_fields(m, p, sec, scratch) < 0)
            return PI_SECTION_NOMEM;
        *data = scratch->data, *len = scratch->len;
        return PI_SECTION_OK;
    }
}

void pi_partial(const char *data, size_t len, uint64_t start, uint64_t count, const char **out,
                size_t *out_len)
{
    if (start >= len) {
        *out = data + len, *out_len = 0;
        return;
    }
    size_t rest = len - (size_t)start;
    *out = data + start;
    *out_len = count < rest ? (size_t)count : rest;
}

/* What Thunderbird's and mutt's message-list fetches name, plus what other common clients
 * show in a list (docs/design.md, "header cache"). Changing it means a new PI_HEADER_SET. */
#define HEADER_SET_1(X)                                                                                     \
    X("From") X("To") X("Cc") X("Bcc") X("Subject") X("Date") X("Message-ID") X("Priority") X("X-Priority")    \
        X("References") X("Newsgroups") X("In-Reply-To") X("Content-Type") X("Reply-To") X("Received")       \
            X("Sender") X("Content-Description") X("Lines") X("List-Post") X("X-Label") X("List-Id")        \
                X("Importance")
#define AS_NAME(s) s,
#define AS_LEN(s) sizeof(s) - 1,
static const char *const header_set_1[] = {HEADER_SET_1(AS_NAME)};
static const size_t header_set_1_lens[] = {HEADER_SET_1(AS_LEN)};
#define HEADER_SET_1_N (sizeof header_set_1 / sizeof header_set_1[0])

size_t pi_header_set_fields(const char *const **names, const size_t **lens)
{
    *names = header_set_1;
    *lens = header_set_1_lens;
    return HEADER_SET_1_N;
}

bool pi_header_set_has(unsigned set, const char *name, size_t len)
{
    if (set != PI_HEADER_SET)
        return false;
    for (size_t i = 0; i < HEADER_SET_1_N; i++)
        if (len == header_set_1_lens[i] && strncasecmp(name, header_set_1[i], len) == 0)
            return true;
    return false;
}

bool pi_header_set_covers(unsigned set, const pi_section *sec)
{
    if (set != PI_HEADER_SET || sec->kind != PI_SECTION_HEADER_FIELDS || sec->npath)
        return false;
    for (size_t k = 0; k < sec->nfields; k++)
        if (!pi_header_set_has(set, sec->fields[k], sec->field_lens[k]))
            return false;
    return true;
}

int pi_header_set_write(pu_buf *out, const mime_message *m)
{
    const char *const *names;
    const size_t *lens;
    size_t n = pi_header_set_fields(&names, &lens);
    return mime_header_select(m, mime_root(m), names, lens, n, false, out);
}

int pi_header_set_section(const char *cache, size_t len, const pi_section *sec, pu_buf *out)
{
    pu_buf_clear(out);
    if (mime_block_select(cache, len, sec->fields, sec->field_lens, sec->nfields, false, out) < 0)
        return -1;
    return pu_buf_add(out, "\r\n", 2);
}
