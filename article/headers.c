/* Message-IDs and outer headers of postern's articles (docs/formats.md sections 2-3). */
#include "article/article.h"

#include <stdio.h>
#include <string.h>

#define MSGID_DOMAIN "@postern.invalid>"
#define FROM_LINE "From: postern <postern@postern.invalid>\r\n"

static void hex(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void pa_mail_message_id(const uint8_t tag[32], char out[PA_MSGID_MAX])
{
    char h[41];
    hex(h, tag, 20); /* 160 bits: collision-free in practice, and a shorter line */
    snprintf(out, PA_MSGID_MAX, "<m.%s" MSGID_DOMAIN, h);
}

void pa_state_message_id(const uint8_t id[20], char out[PA_MSGID_MAX])
{
    char h[41];
    hex(h, id, 20);
    snprintf(out, PA_MSGID_MAX, "<s.%s" MSGID_DOMAIN, h);
}

void pa_cancel_message_id(const uint8_t id[20], char out[PA_MSGID_MAX])
{
    char h[41];
    hex(h, id, 20);
    snprintf(out, PA_MSGID_MAX, "<c.%s" MSGID_DOMAIN, h);
}

void pa_key_message_id(const uint8_t key_id[16], uint32_t serial, char out[PA_MSGID_MAX])
{
    char h[33];
    hex(h, key_id, 16);
    snprintf(out, PA_MSGID_MAX, "<k.%s.%lu" MSGID_DOMAIN, h, (unsigned long)serial);
}

void pa_key_message_id_resigned(const uint8_t key_id[16], uint32_t serial, const uint8_t authority_id[8],
                                char out[PA_MSGID_MAX])
{
    char h[33], a[17];
    hex(h, key_id, 16);
    hex(a, authority_id, 8);
    snprintf(out, PA_MSGID_MAX, "<k.%s.%lu.a%s" MSGID_DOMAIN, h, (unsigned long)serial, a);
}

/* An overview line's fields (RFC 3977 8.3: number, subject, from, date, message-id,
 * references, bytes, lines), as pointers into the line: 0, or -1 when it does not start with
 * a non-zero article number and a tab. Missing fields are NULL. */
typedef struct over_fields {
    uint64_t number;
    const char *at[8];
    size_t len[8];
} over_fields;

static int over_split(const char *line, size_t len, over_fields *f)
{
    const char *end = line + len, *p = line;
    uint64_t num = 0;
    while (p < end && *p >= '0' && *p <= '9' && num <= UINT64_MAX / 10 - 1)
        num = num * 10 + (uint64_t)(*p++ - '0');
    if (p == line || p == end || *p != '\t' || num == 0)
        return -1;
    memset(f, 0, sizeof *f);
    f->number = num;
    for (int i = 1; i < 8; i++) {
        p = memchr(p, '\t', (size_t)(end - p));
        if (!p)
            break;
        p++;
        const char *e = memchr(p, '\t', (size_t)(end - p));
        f->at[i] = p;
        f->len[i] = (size_t)((e ? e : end) - p);
    }
    return 0;
}

static int over_prefixed(const char *line, size_t len, const char *prefix, uint64_t *number, const char **msgid,
                         size_t *msgid_len)
{
    over_fields f;
    if (over_split(line, len, &f) != 0 || !f.at[4])
        return 0;
    const char *p = f.at[4];
    size_t n = f.len[4];
    if (n < 4 || n >= PA_MSGID_MAX || strncmp(p, prefix, 3) != 0 || p[n - 1] != '>')
        return 0;
    *number = f.number;
    *msgid = p;
    *msgid_len = n;
    return 1;
}

int pa_over_mail(const char *line, size_t len, uint64_t *number, const char **msgid, size_t *msgid_len)
{
    return over_prefixed(line, len, "<m.", number, msgid, msgid_len);
}

int pa_over_state(const char *line, size_t len, uint64_t *number, const char **msgid, size_t *msgid_len)
{
    return over_prefixed(line, len, "<s.", number, msgid, msgid_len);
}

static uint64_t field_number(const over_fields *f, int i)
{
    uint64_t b = 0;
    for (size_t k = 0; f->at[i] && k < f->len[i] && f->at[i][k] >= '0' && f->at[i][k] <= '9' && b < UINT64_MAX / 10;
         k++)
        b = b * 10 + (uint64_t)(f->at[i][k] - '0');
    return b;
}

uint64_t pa_over_bytes(const char *line, size_t len)
{
    over_fields f;
    return over_split(line, len, &f) == 0 ? field_number(&f, 6) : 0;
}

int pa_over_date(const char *line, size_t len, const char **date, size_t *date_len)
{
    over_fields f;
    if (over_split(line, len, &f) != 0 || !f.at[3] || !f.len[3])
        return 0;
    *date = f.at[3];
    *date_len = f.len[3];
    return 1;
}

int pa_over_key(const char *line, size_t len, uint64_t *number, uint32_t *serial, uint64_t *bytes,
                char msgid[PA_MSGID_MAX])
{
    over_fields f;
    if (over_split(line, len, &f) != 0)
        return 0;
    const char *id = f.at[4];
    size_t n = f.len[4];
    static const char domain[] = MSGID_DOMAIN;
    size_t dl = sizeof domain - 1;
    /* "<k." 32 hex "." serial "@postern.invalid>" */
    if (!id || n >= PA_MSGID_MAX || n < 3 + 32 + 2 + dl || strncmp(id, "<k.", 3) != 0 || id[35] != '.' ||
        memcmp(id + n - dl, domain, dl) != 0)
        return 0;
    for (size_t i = 3; i < 35; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    uint64_t sv = 0;
    size_t digits = 0;
    const char *end = id + n - dl;
    /* a record re-signed by another authority key: ".a" and that key's 16-hex id follow */
    if (end - (id + 36) > 18 && end[-18] == '.' && end[-17] == 'a') {
        for (const char *q = end - 16; q < end; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')))
                return 0;
        end -= 18;
    }
    for (const char *q = id + 36; q < end; q++, digits++) {
        if (*q < '0' || *q > '9' || digits >= 10)
            return 0;
        sv = sv * 10 + (uint64_t)(*q - '0');
    }
    if (digits == 0 || sv > UINT32_MAX)
        return 0;
    *number = f.number;
    *serial = (uint32_t)sv;
    *bytes = field_number(&f, 6); /* 0 when the server gives none */
    memcpy(msgid, id, n);
    msgid[n] = '\0';
    return 1;
}

int pa_mail_message_id_matches(const uint8_t tag[32], const char *msgid)
{
    char want[PA_MSGID_MAX];
    if (!msgid)
        return -1;
    pa_mail_message_id(tag, want);
    return strcmp(want, msgid) == 0 ? 0 : -1; /* Message-IDs compare case-sensitively */
}

/* A header value we put on a line by itself must be one visible token: anything else could
 * fold into, or inject, another header line. */
static int token_ok(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !*s)
        return 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
            return 0;
    return n <= max;
}

/* extra: zero or more "Name: value" lines, each ending in CRLF, no other CR or LF, no empty
 * line (which would end the header block early), none starting with white space. */
static int extra_ok(const char *e)
{
    while (*e) {
        const char *eol = strstr(e, "\r\n");
        if (!eol || eol == e || *e == ' ' || *e == '\t')
            return 0;
        const char *colon = memchr(e, ':', (size_t)(eol - e));
        if (!colon || colon == e)
            return 0;
        for (const char *p = e; p < eol; p++)
            if (*p == '\r' || *p == '\n')
                return 0;
        e = eol + 2;
    }
    return 1;
}

static size_t emit(char *out, size_t cap, const char *subject, const char *format,
                   const char *group, const char *msgid, const char *extra)
{
    if (!out || !token_ok(group, PA_GROUP_MAX) || !token_ok(msgid, PA_MSGID_MAX - 1) ||
        (extra && !extra_ok(extra)))
        return 0;
    int n = snprintf(out, cap,
                     FROM_LINE
                     "Newsgroups: %s\r\n"
                     "Subject: %s\r\n"
                     "Message-ID: %s\r\n"
                     "Postern-Format: %s\r\n"
                     "%s\r\n",
                     group, subject, msgid, format, extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

size_t pa_mail_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap)
{
    return emit(out, cap, "postern mail", "message 1", group, msgid, extra);
}

size_t pa_state_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap)
{
    return emit(out, cap, "postern state", "state 1", group, msgid, extra);
}

size_t pa_cancel_headers(const char *group, const char *target, const char *cancel_id, const char *key_text,
                         char *out, size_t cap)
{
    if (!out || !token_ok(group, PA_GROUP_MAX) || !token_ok(target, PA_MSGID_MAX - 1) ||
        !token_ok(cancel_id, PA_MSGID_MAX - 1) || !token_ok(key_text, 128))
        return 0;
    int n = snprintf(out, cap,
                     FROM_LINE
                     "Newsgroups: %s\r\n"
                     "Subject: cmsg cancel %s\r\n"
                     "Control: cancel %s\r\n"
                     "Message-ID: %s\r\n"
                     "Cancel-Key: %s\r\n"
                     "\r\n",
                     group, target, target, cancel_id, key_text);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

size_t pa_key_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap)
{
    return emit(out, cap, "postern key record", "keyrecord 1", group, msgid, extra);
}
