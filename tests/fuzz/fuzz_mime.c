/* libFuzzer: arbitrary bytes -> mime_parse -> ENVELOPE/BODY/BODYSTRUCTURE must be balanced
 * RFC 3501 syntax, every part path that exists must yield in-bounds sections, and the header
 * cache (imap/fetch.h) must answer as the message does. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/fetch.h"
#include "mime/mime.h"

/* Parentheses balance outside strings; quoted strings close; literals {n}CRLF are skipped. */
static void check_syntax(const pu_buf *o)
{
    long depth = 0;
    size_t i = 0;
    while (i < o->len) {
        char c = o->data[i];
        if (c == '"') {
            for (i++; i < o->len && o->data[i] != '"'; i++)
                if (o->data[i] == '\\' || o->data[i] == '\r' || o->data[i] == '\n')
                    abort(); /* never escaped, never a line end: those go in literals */
            if (i == o->len)
                abort();
            i++;
        } else if (c == '{') {
            size_t n = 0;
            for (i++; i < o->len && o->data[i] >= '0' && o->data[i] <= '9'; i++)
                n = n * 10 + (size_t)(o->data[i] - '0');
            if (i + 3 > o->len || memcmp(o->data + i, "}\r\n", 3) != 0 || n > o->len - i - 3)
                abort();
            i += 3 + n;
        } else {
            if (c == '(')
                depth++;
            else if (c == ')' && --depth < 0)
                abort();
            else if (c == '\r' || c == '\n' || c == '\0')
                abort();
            i++;
        }
    }
    if (depth != 0 || o->len == 0)
        abort();
}

static const mime_message *g_m;
static const uint8_t *g_buf;
static size_t g_len, g_visited;
static pu_buf g_scratch;

static int get(const char *spec, const char **d, size_t *n)
{
    pi_section sec;
    int rc = pi_section_parse(spec, strlen(spec), &sec);
    if (rc != 0)
        abort(); /* our own specs are valid; -1 (OOM) does not happen under libFuzzer's cap */
    pi_section_result r = pi_section_get(g_m, &sec, &g_scratch, d, n);
    pi_section_free(&sec);
    if (r == PI_SECTION_NOMEM)
        abort();
    if (r == PI_SECTION_OK) {
        const uint8_t *p = (const uint8_t *)*d;
        bool in_msg = p >= g_buf && p + *n <= g_buf + g_len;
        bool in_scratch = *d == g_scratch.data && *n == g_scratch.len;
        if (!in_msg && !in_scratch && *n)
            abort();
        const char *o;
        size_t on;
        pi_partial(*d, *n, *n / 3, *n / 2 + 1, &o, &on);
        if (o < *d || o + on > *d + *n)
            abort();
    }
    return r == PI_SECTION_OK;
}

static void visit(char *path, size_t plen, unsigned depth)
{
    static const char *const suffixes[] = {
        ".MIME", ".HEADER", ".TEXT", ".HEADER.FIELDS (From Subject Content-Type)",
        ".HEADER.FIELDS.NOT (To Received)"};
    const char *d;
    size_t n, pn = 0;
    const char *pd = NULL;
    if (plen) {
        path[plen] = '\0';
        if (!get(path, &pd, &pn))
            return;
    }
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        char spec[160];
        snprintf(spec, sizeof spec, "%s%s", path, plen ? suffixes[i] : suffixes[i] + 1);
        if (plen || i != 0)
            get(spec, &d, &n);
    }
    if (depth >= PI_SECTION_MAX_PATH - 1 || plen > 80)
        return;
    for (unsigned k = 1; k < 100000 && g_visited < 3000; k++) {
        g_visited++;
        int w = snprintf(path + plen, 16, "%s%u", plen ? "." : "", k);
        path[plen + (size_t)w] = '\0';
        if (!get(path, &d, &n))
            break;
        /* part 1 of a non-multipart is the part itself: stop where that repeats */
        if (k == 1 && d == pd && n == pn)
            break;
        visit(path, plen + (size_t)w, depth + 1);
    }
    path[plen] = '\0';
}

/* The header cache: Thunderbird's and mutt's list fetches answered from the block that
 * pi_header_set_write keeps are pi_section_get's bytes, and References (THREAD) decodes the
 * same from it; a difference would show only after the gateway restarts. */
static void check_header_cache(const mime_message *m)
{
    static const char *const specs[] = {
        "HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
        "In-Reply-To Content-Type Reply-To Received)",
        "HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE "
        "CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)"};
    pu_buf cache = {0}, got = {0}, scratch = {0}, a = {0}, b = {0};
    if (pi_header_set_write(&cache, m) < 0)
        abort();
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        pi_section sec;
        if (pi_section_parse(specs[i], strlen(specs[i]), &sec) != 0 ||
            !pi_header_set_covers(PI_HEADER_SET, &sec))
            abort();
        const char *d;
        size_t n;
        if (pi_section_get(m, &sec, &scratch, &d, &n) != PI_SECTION_OK ||
            pi_header_set_section(cache.data, cache.len, &sec, &got) < 0 || got.len != n ||
            (n && memcmp(got.data, d, n) != 0))
            abort();
        pi_section_free(&sec);
    }
    /* what THREAD and SEARCH read from the cache: the decoded fields, and the sent date */
    static const char *const fields[] = {"References", "From", "Subject", "To", "Cc"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        pu_buf_clear(&a);
        pu_buf_clear(&b);
        int ra = mime_header_decoded(m, fields[i], &a);
        int rb = mime_block_header_decoded(cache.data, cache.len, fields[i], &b);
        if (ra < 0 || ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
            abort();
    }
    int64_t ta = 0, tb = 0;
    int za = 0, zb = 0;
    int da = mime_sent_date(m, &ta, &za), db = mime_block_sent_date(cache.data, cache.len, &tb, &zb);
    if (da != db || (da == 1 && (ta != tb || za != zb)))
        abort();
    pu_buf_free(&cache), pu_buf_free(&got), pu_buf_free(&scratch), pu_buf_free(&a), pu_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy so ASan catches any read past the message. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    mime_limits lim = {.max_depth = 8, .max_parts = 300, .max_header = 4096};
    mime_message *m = mime_parse(buf, size, size & 1 ? &lim : NULL);
    if (!m)
        abort();
    pu_buf o = {0};
    if (pi_write_envelope(&o, m) < 0)
        abort();
    check_syntax(&o);
    pu_buf_clear(&o);
    if (pi_write_body(&o, m) < 0)
        abort();
    check_syntax(&o);
    pu_buf_clear(&o);
    if (pi_write_bodystructure(&o, m) < 0)
        abort();
    check_syntax(&o);
    pu_buf_clear(&o);
    if (mime_header_decoded(m, "Subject", &o) < 0 || mime_headers_decoded(m, &o) < 0 ||
        mime_body_text(m, &o) < 0)
        abort();
    pu_buf_free(&o);
    check_header_cache(m);

    g_m = m, g_buf = (const uint8_t *)buf, g_len = size, g_visited = 0;
    char path[256] = "";
    visit(path, 0, 0);
    pu_buf_free(&g_scratch);
    mime_free(m);
    free(buf);
    return 0;
}
