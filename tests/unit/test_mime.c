/* Unit tests for mime/ and imap/'s renderings of its tree (imap/fetch.h) over the corpus in
 * tests/data/mime/: ENVELOPE and BODYSTRUCTURE (expected outputs compared byte for byte;
 * checked against Dovecot 2.3.19, differences listed in tests/data/mime/DOVECOT.md),
 * BODY[section], the header cache, limits and SEARCH text. The section grammar and the string
 * writer alone are tested in test_imap.c. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "imap/fetch.h"
#include "mime/mime.h"

/* The data directory sits beside this file's directory, whatever the working directory. */
static const char *data_path(const char *name, const char *ext)
{
    static char path[4096];
    const char *src = __FILE__, *slash = strrchr(src, '/');
    int dirlen = slash ? (int)(slash - src) : 1;
    snprintf(path, sizeof path, "%.*s/../data/mime/%s%s", dirlen, slash ? src : ".", name, ext);
    return path;
}

static char *slurp(const char *name, const char *ext, size_t *len)
{
    const char *p = data_path(name, ext);
    FILE *f = fopen(p, "rb");
    if (!f)
        fail_msg("cannot open %s", p);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (!r)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* What the gateway hands mime_parse (docs/formats.md section 3): bare LF -> CRLF, NUL -> 0x80,
 * a CRLF added when the message does not end with LF. The CRLF corpus files stay as they are. */
static char *served(char *raw, size_t *len)
{
    size_t n = 0, extra = 2;
    for (size_t i = 0; i < *len; i++)
        extra += raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r');
    char *out = malloc(*len + extra + 1);
    assert_non_null(out);
    for (size_t i = 0; i < *len; i++) {
        if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
            out[n++] = '\r';
        out[n++] = raw[i] == '\0' ? (char)0x80 : raw[i];
    }
    if (n && out[n - 1] != '\n')
        out[n++] = '\r', out[n++] = '\n';
    out[n] = '\0';
    free(raw);
    *len = n;
    return out;
}

static mime_message *load(const char *name, char **buf)
{
    size_t len;
    *buf = slurp(name, ".eml", &len);
    *buf = served(*buf, &len);
    mime_message *m = mime_parse(*buf, len, NULL);
    assert_non_null(m);
    assert_int_equal(mime_size(m), len);
    return m;
}

static void assert_bytes(const char *what, const char *got, size_t glen, const char *want,
                         size_t wlen)
{
    if (glen != wlen || (wlen && memcmp(got, want, wlen) != 0)) /* an empty buffer may be NULL */
        fail_msg("%s:\n got  (%zu) [%.*s]\n want (%zu) [%.*s]", what, glen, (int)glen, got, wlen,
                 (int)wlen, want);
}

static const char *const corpus[] = {
    "simple",        "alternative",  "mixed_attach", "nested",     "rfc822_attach",
    "encoded_words", "rfc2231",      "no_ctype",     "no_subtype", "truncated",
    "raw8bit",       "groups",       "empty_body",   "crlf_only",  "digest",
    "header_only",   "no_boundary",  "rfc822_garbage", "edge_headers",
    /* shapes an MTA accepts: RFC 2045 defaults and Dovecot's reading (DOVECOT.md) */
    "no_header", "not_a_header", "continuation_first", "bare_lf", "bare_cr", "mixed_eol",
    "nul_bytes", "eight_bit_header", "long_lines", "empty", "dot_lines", "blank_first",
};

static void test_corpus(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        char *buf, *want;
        size_t wlen;
        mime_message *m = load(corpus[i], &buf);
        pu_buf out = {0};
        char what[128];

        want = slurp(corpus[i], ".envelope", &wlen);
        assert_int_equal(pi_write_envelope(&out, m), 0);
        snprintf(what, sizeof what, "%s ENVELOPE", corpus[i]);
        assert_bytes(what, out.data, out.len, want, wlen);
        free(want);

        pu_buf_clear(&out);
        want = slurp(corpus[i], ".bodystructure", &wlen);
        assert_int_equal(pi_write_bodystructure(&out, m), 0);
        snprintf(what, sizeof what, "%s BODYSTRUCTURE", corpus[i]);
        assert_bytes(what, out.data, out.len, want, wlen);
        free(want);

        /* The same input always gives the same bytes. */
        mime_message *again = mime_parse(buf, mime_size(m), NULL);
        pu_buf out2 = {0};
        assert_int_equal(pi_write_bodystructure(&out2, again), 0);
        assert_bytes(what, out2.data, out2.len, out.data, out.len);
        pu_buf_free(&out2);
        mime_free(again);

        pu_buf_free(&out);
        mime_free(m);
        free(buf);
    }
}

static void check_body(const char *name, const char *want)
{
    char *buf;
    mime_message *m = load(name, &buf);
    pu_buf out = {0};
    assert_int_equal(pi_write_body(&out, m), 0);
    assert_bytes(name, out.data, out.len, want, strlen(want));
    pu_buf_free(&out);
    mime_free(m);
    free(buf);
}

static void test_body_non_extensible(void **state)
{
    (void)state;
    /* As Dovecot 2.3 answers FETCH BODY for these. */
    check_body("mixed_attach",
               "((\"text\" \"plain\" (\"charset\" \"us-ascii\" \"format\" \"flowed\") NIL NIL "
               "\"7bit\" 15 1)(\"application\" \"pdf\" (\"name\" \"report.pdf\") "
               "\"<part2@example.com>\" \"Quarterly report\" \"BASE64\" 20)(\"image\" \"png\" NIL "
               "NIL NIL \"base64\" 12) \"Mixed\")");
    /* Dovecot says 380 and 17 for the message/rfc822 part: it counts the CRLF that RFC 2046
     * gives to the following boundary; see DOVECOT.md. */
    check_body("rfc822_attach",
               "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 24 0)(\"message\" "
               "\"rfc822\" NIL NIL \"original message\" \"7bit\" 378 (\"Fri, 5 Jan 2024 23:59:59 "
               "-0800\" \"original\" ((\"Original Author\" NIL \"orig\" \"example.org\")) "
               "((\"Original Author\" NIL \"orig\" \"example.org\")) ((\"Original Author\" NIL "
               "\"orig\" \"example.org\")) ((NIL NIL \"fwd\" \"example.com\")) NIL NIL NIL "
               "\"<orig-0@example.org>\") ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
               "\"7bit\" 13 0)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 15 0) "
               "\"alternative\") 16) \"mixed\")");
    check_body("crlf_only", "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
    check_body("no_boundary", "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) "
                              "\"mixed\")");
}

/* One BODY[spec] check. want == NULL: the section does not exist. Otherwise want is either
 * the literal bytes, or (from != NULL) the span of the message from the first occurrence of
 * `from` through the end of the first later occurrence of `to`. */
typedef struct sect_case {
    const char *file, *spec, *want, *from, *to;
} sect_case;

static const sect_case sect_cases[] = {
    {"simple", "1", "Hi Bob,\r\n\r\nThis is a simple message.\r\n-- \r\nAlice\r\n", NULL, NULL},
    {"simple", "TEXT", "Hi Bob,\r\n\r\nThis is a simple message.\r\n-- \r\nAlice\r\n", NULL, NULL},
    {"simple", "HEADER", "", "Return-Path:", "7bit\r\n\r\n"},
    {"simple", "1.MIME", "", "Return-Path:", "7bit\r\n\r\n"},
    {"simple", "header.fields (Subject FROM x-none)",
     "From: Alice Example <alice@example.org>\r\nSubject: Hello\r\n folded subject line\r\n\r\n",
     NULL, NULL},
    {"simple", "HEADER.FIELDS.NOT (Return-Path Received Date From To Subject Message-ID)",
     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 7bit\r\n\r\n", NULL, NULL},
    {"simple", "HEADER.FIELDS (\"Message-ID\")", "Message-ID: <simple-1@example.org>\r\n\r\n",
     NULL, NULL},
    {"simple", "HEADER.FIELDS (X-Absent)", "\r\n", NULL, NULL},
    {"simple", "2", NULL, NULL, NULL},
    {"simple", "1.HEADER", NULL, NULL, NULL},
    {"rfc822_attach", "1", "Forwarded message below.", NULL, NULL},
    {"rfc822_attach", "2", "", "From: Original Author", "--orig-b--"},
    {"rfc822_attach", "2.HEADER", "", "From: Original Author", "\"orig-b\"\r\n\r\n"},
    {"rfc822_attach", "2.TEXT", "", "--orig-b\r\nContent-Type: text/plain", "--orig-b--"},
    {"rfc822_attach", "2.MIME",
     "Content-Type: message/rfc822\r\nContent-Description: original message\r\n\r\n", NULL, NULL},
    {"rfc822_attach", "2.HEADER.FIELDS (subject)", "Subject: original\r\n\r\n", NULL, NULL},
    {"rfc822_attach", "2.1", "original text", NULL, NULL},
    {"rfc822_attach", "2.2", "<b>original</b>", NULL, NULL},
    {"rfc822_attach", "2.2.MIME", "Content-Type: text/html; charset=utf-8\r\n\r\n", NULL, NULL},
    {"rfc822_attach", "2.3", NULL, NULL, NULL},
    {"rfc822_attach", "1.TEXT", NULL, NULL, NULL},
    {"rfc822_attach", "3", NULL, NULL, NULL},
    {"nested", "1.1", "plain body", NULL, NULL},
    {"nested", "1.2.1", "<p>html <img src=\"cid:img1\"></p>", NULL, NULL},
    {"nested", "1.2.2", "R0lGODlhAQABAAAAACw=", NULL, NULL},
    {"nested", "1.2.2.MIME",
     "Content-Type: image/gif\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\n",
     NULL, NULL},
    {"nested", "2", "--- a\r\n+++ b", NULL, NULL},
    {"nested", "2.TEXT", NULL, NULL, NULL},
    {"nested", "1.2.3", NULL, NULL, NULL},
    {"header_only", "HEADER.FIELDS (Subject)", "Subject: Header only, no blank line\r\n\r\n",
     NULL, NULL},
    {"header_only", "TEXT", "", NULL, NULL},
    {"header_only", "HEADER", "", "From:", "blank line\r\n"},
    {"rfc822_garbage", "1", "this is not a message\r\nat all", NULL, NULL},
    {"rfc822_garbage", "1.HEADER", "this is not a message\r\nat all", NULL, NULL},
    {"rfc822_garbage", "1.TEXT", "", NULL, NULL},
    {"rfc822_garbage", "2", "", NULL, NULL},
    {"digest", "1.HEADER.FIELDS (subject)", "Subject: first\r\n\r\n", NULL, NULL},
    {"digest", "1.TEXT", "one", NULL, NULL},
    {"digest", "1.MIME", "\r\n", NULL, NULL},
    {"digest", "2", "not a message", NULL, NULL},
    {"no_boundary", "1", NULL, NULL, NULL},
    {"truncated", "2", "AAAAAAAA\r\nAAAA\r\n", NULL, NULL},
    {"crlf_only", "HEADER", "\r\n", NULL, NULL},
    {"crlf_only", "TEXT", "", NULL, NULL},
    {"crlf_only", "1", "", NULL, NULL},
    {"empty_body", "TEXT", "", NULL, NULL},
    /* no header at all: everything up to a blank line is the header, as Dovecot has it */
    {"no_header", "HEADER", "Just a line of text, no header at all.\r\nA second line.\r\n", NULL, NULL},
    {"no_header", "TEXT", "", NULL, NULL},
    {"not_a_header", "TEXT", "body line\r\n", NULL, NULL},
    {"not_a_header", "1", "body line\r\n", NULL, NULL},
    /* lines that are no field match no name, so .NOT keeps them (Dovecot does) */
    {"not_a_header", "HEADER.FIELDS.NOT (Subject)", "this is not a header\r\n\r\n", NULL, NULL},
    {"not_a_header", "HEADER.FIELDS (Subject)", "\r\n", NULL, NULL},
    {"continuation_first", "HEADER.FIELDS.NOT (Subject From)", " continuation first: x\r\n\r\n", NULL, NULL},
    {"continuation_first", "HEADER.FIELDS (Subject)", "Subject: after a continuation\r\n\r\n", NULL, NULL},
    /* bare CR is no line end: a bare-CR message is one header line */
    {"bare_cr", "HEADER.FIELDS (From)",
     "From: cr@example.com\rSubject: old Mac line ends\r\rbody line one\rbody line two\r\r\n\r\n", NULL, NULL},
    {"bare_cr", "TEXT", "", NULL, NULL},
    {"mixed_eol", "TEXT", "CRLF line\r\nLF line\r\nCR line\rlast line without end\r\n", NULL, NULL},
    {"nul_bytes", "TEXT", "body\x80with a NUL\r\n\x80\r\n", NULL, NULL},
    {"blank_first", "HEADER", "\r\n", NULL, NULL},
    {"blank_first", "TEXT", "1\r\n\r\n", NULL, NULL},
    {"empty", "HEADER", "", NULL, NULL},
    {"empty", "TEXT", "", NULL, NULL},
    {"empty", "1", "", NULL, NULL},
};

static void test_sections(void **state)
{
    (void)state;
    pu_buf scratch = {0};
    for (size_t i = 0; i < sizeof sect_cases / sizeof *sect_cases; i++) {
        const sect_case *c = &sect_cases[i];
        char *buf, what[160];
        mime_message *m = load(c->file, &buf);
        pi_section sec;
        snprintf(what, sizeof what, "%s BODY[%s]", c->file, c->spec);
        if (pi_section_parse(c->spec, strlen(c->spec), &sec) != 0)
            fail_msg("%s: does not parse", what);
        const char *d;
        size_t n;
        pi_section_result r = pi_section_get(m, &sec, &scratch, &d, &n);
        if (!c->want) {
            if (r != PI_SECTION_NONE)
                fail_msg("%s: exists, [%.*s]", what, (int)n, d);
        } else {
            if (r != PI_SECTION_OK)
                fail_msg("%s: result %d", what, (int)r);
            if (c->from) {
                const char *a = strstr(buf, c->from), *b = a ? strstr(a, c->to) : NULL;
                assert_non_null(b);
                assert_bytes(what, d, n, a, (size_t)(b + strlen(c->to) - a));
            } else {
                assert_bytes(what, d, n, c->want, strlen(c->want));
            }
        }
        pi_section_free(&sec);
        mime_free(m);
        free(buf);
    }
    /* BODY[] is the whole buffer, in place. */
    char *buf;
    mime_message *m = load("nested", &buf);
    pi_section sec;
    assert_int_equal(pi_section_parse("", 0, &sec), 0);
    const char *d;
    size_t n;
    assert_int_equal(pi_section_get(m, &sec, &scratch, &d, &n), PI_SECTION_OK);
    assert_ptr_equal(d, buf);
    assert_int_equal(n, mime_size(m));
    mime_free(m);
    free(buf);
    pu_buf_free(&scratch);
}

/* The header cache (imap/fetch.h): a HEADER.FIELDS that pi_header_set_covers answers from
 * the block pi_header_set_write keeps must be the bytes pi_section_get gives from the whole
 * message, and every field of the set (References for THREAD above all) must decode the
 * same from the block as from the message: a difference shows only after a restart. */
static const char *const cache_specs[] = {
    /* Thunderbird's message list */
    "HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
    "In-Reply-To Content-Type Reply-To Received)",
    /* mutt's */
    "HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
    "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)",
    "HEADER.FIELDS (References)",
    "header.fields (subject)",
    "HEADER.FIELDS (RECEIVED)",
    "HEADER.FIELDS (x-priority)",
    "HEADER.FIELDS (\"From\" \"list-id\")",
    "HEADER.FIELDS (\"IMPORTANCE\" From Importance)",
    "HEADER.FIELDS (Content-Type Lines List-Post)",
};

static void check_header_cache(const char *what, const char *msg, size_t len)
{
    mime_message *m = mime_parse(msg, len, NULL);
    assert_non_null(m);
    pu_buf cache = {0}, got = {0}, scratch = {0}, a = {0}, b = {0};
    char w[256];
    assert_int_equal(pi_header_set_write(&cache, m), 0);
    for (size_t i = 0; i < sizeof cache_specs / sizeof *cache_specs; i++) {
        pi_section sec;
        assert_int_equal(pi_section_parse(cache_specs[i], strlen(cache_specs[i]), &sec), 0);
        snprintf(w, sizeof w, "%s BODY[%.120s] from the cache", what, cache_specs[i]);
        if (!pi_header_set_covers(PI_HEADER_SET, &sec))
            fail_msg("%s: not covered", w);
        const char *d;
        size_t n;
        assert_int_equal(pi_section_get(m, &sec, &scratch, &d, &n), PI_SECTION_OK);
        assert_int_equal(pi_header_set_section(cache.data, cache.len, &sec, &got), 0);
        assert_bytes(w, got.data, got.len, d, n);
        pi_section_free(&sec);
    }
    const char *const *names;
    const size_t *lens;
    size_t nnames = pi_header_set_fields(&names, &lens);
    for (size_t i = 0; i < nnames; i++) {
        pu_buf_clear(&a), pu_buf_clear(&b);
        int ra = mime_header_decoded(m, names[i], &a);
        int rb = mime_block_header_decoded(cache.data, cache.len, names[i], &b);
        snprintf(w, sizeof w, "%s %s decoded from the cache", what, names[i]);
        if (ra != rb)
            fail_msg("%s: found %d, from the message %d", w, rb, ra);
        assert_bytes(w, b.data, b.len, a.data, a.len);
    }
    pu_buf_free(&cache), pu_buf_free(&got), pu_buf_free(&scratch), pu_buf_free(&a), pu_buf_free(&b);
    mime_free(m);
}

/* msg as it stands and in served form (CRLF, no NUL: what the gateway parses) */
static void check_header_cache_both(const char *what, const char *msg, size_t len)
{
    char w[160];
    snprintf(w, sizeof w, "%s (raw)", what);
    check_header_cache(w, msg, len);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, msg, len);
    copy = served(copy, &len);
    snprintf(w, sizeof w, "%s (served)", what);
    check_header_cache(w, copy, len);
    free(copy);
}

#define HC(name, text) {name, text, sizeof text - 1}
static const struct {
    const char *name, *msg;
    size_t len;
} cache_cases[] = {
    HC("folded", "Subject: a\r\n folded\r\n\tagain\r\nFrom: x@y\r\nReferences: <1@x>\r\n <2@x>\r\n"
                 "\r\nbody\r\n"),
    HC("repeated", "Received: a\r\nReceived: b\r\nReferences: <1@x>\r\nX-Other: o\r\nreferences: <2@x>\r\n"
                   "Subject: one\r\nSubject: two\r\n\r\n"),
    HC("mixed case", "fROM: a@b\r\nsUbJeCt: s\r\nMESSAGE-id: <m@x>\r\nx-PRIORITY: 1\r\n"
                     "rEfErEnCeS: <r@x>\r\n\r\n"),
    HC("space before colon", "Subject : s\r\nFrom\t: a@b\r\nReferences \t : <r@x>\r\nTo  :\r\n c@d\r\n\r\n"),
    HC("no colon", "From: a@b\r\nno colon here\r\nSubject: s\r\nReferences\r\n : <x@y>\r\n\r\n"),
    HC("colon only", ": value\r\n :x\r\nFrom: a@b\r\n\r\n"),
    HC("continuation first", " leading: cont\r\nSubject: s\r\n\r\n"),
    HC("continuation first 2", "\tReferences: <x@y>\r\n more\r\nReferences: <y@z>\r\n\r\n"),
    HC("bare lf mix", "From: a@b\nSubject: s\r\n folded\n\tmore\r\nReferences: <a@x>\n <b@x>\r\n\nbody"),
    HC("bare lf only", "From: a@b\nReferences: <a@x>\n\n"),
    HC("bare cr", "From: a@b\rSubject: s\r\nReferences: <a@x>\r<b@x>\r\nDate: d\r\r\n\r\n"),
    HC("no blank line, no body", "From: a@b\r\nReferences: <a@x>\r\n <b@x>\r\nSubject: last"),
    HC("no blank line, folded last", "Subject: s\r\nReferences: <a@x>\r\n <b@x>"),
    HC("ends in bare cr", "From: a@b\r\nReferences: <a@x>\r"),
    HC("ends in continuation cr", "References: <a@x>\r\n \r"),
    HC("ends in lf", "Subject: s\n"),
    HC("nul", "From: a@b\r\nSub\0ject: s\r\nSubject: x\0y\r\nReferences: <a\0@x>\r\n\0From: c@d\r\n\r\n\0"),
    HC("empty header", "\r\nbody\r\n"),
    HC("empty header lf", "\nbody"),
    HC("empty message", ""),
    HC("only cr", "\r"),
    HC("whitespace line", "From: a@b\r\n   \r\nSubject: b\r\n\t\r\n\r\n"),
    HC("empty values", "Subject:\r\nReferences:\r\nFrom: \r\n\r\n"),
    HC("cr cr lf", "Subject: a\r\r\nFrom: b\r\n\r\r\nReferences: <c@d>\r\n\r\n"),
    HC("blank line ends it", "Subject: a\r\n\r\nReferences: <not@header>\r\n\r\n"),
    HC("part headers", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nSubject: inner\r\n"
                       "References: <in@x>\r\n\r\nx\r\n--b--\r\n"),
    HC("encoded", "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
                  "From: =?utf-8?q?J=C3=BCrgen?= <j (x) @ example . de>\r\n"
                  "References: <a@x> (comment)\r\n\t<b@x>\r\n\r\n"),
};

static void test_header_cache(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cache_cases / sizeof *cache_cases; i++)
        check_header_cache_both(cache_cases[i].name, cache_cases[i].msg, cache_cases[i].len);
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        size_t len;
        char *raw = slurp(corpus[i], ".eml", &len);
        check_header_cache_both(corpus[i], raw, len);
        free(raw);
    }

    /* not vacuous: the block holds the set's fields as they stand, and only those */
    static const char msg[] = "Subject : a\r\n b\r\nX-Other: o\r\nreferences: <1@x>\r\nReferences: <2@x>\r\n"
                              "\r\nbody\r\n";
    static const char want[] = "Subject : a\r\n b\r\nreferences: <1@x>\r\nReferences: <2@x>\r\n";
    mime_message *m = mime_parse(msg, sizeof msg - 1, NULL);
    pu_buf cache = {0}, o = {0};
    assert_int_equal(pi_header_set_write(&cache, m), 0);
    assert_bytes("cache", cache.data, cache.len, want, sizeof want - 1);
    assert_int_equal(mime_block_header_decoded(cache.data, cache.len, "References", &o), 1);
    assert_string_equal(o.data, "<1@x>\n<2@x>");
    pu_buf_free(&o);
    pu_buf_free(&cache);
    mime_free(m);
}

static void test_header_set_covers(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        bool covered;
    } cases[] = {
        {"HEADER.FIELDS (From)", true},
        {"HEADER.FIELDS (from)", true},
        {"HEADER.FIELDS (fRoM REFERENCES list-ID importance)", true},
        {"HEADER.FIELDS (\"Message-Id\" \"x-label\")", true},
        {"HEADER.FIELDS.NOT (From)", false},
        {"HEADER.FIELDS.NOT (From To Cc Bcc Subject)", false},
        {"1.HEADER.FIELDS (From)", false},
        {"2.HEADER.FIELDS (Subject)", false},
        {"1.2.HEADER.FIELDS (References)", false},
        {"HEADER.FIELDS (From X-Other)", false},
        {"HEADER.FIELDS (X-Other From)", false},
        {"HEADER.FIELDS (Fro)", false},
        {"HEADER.FIELDS (Fromm)", false},
        {"HEADER.FIELDS (\"From \")", false},
        {"HEADER.FIELDS (From:)", false},
        {"HEADER.FIELDS (Content-Transfer-Encoding)", false},
        {"HEADER.FIELDS (MIME-Version)", false},
        {"HEADER", false},
        {"TEXT", false},
        {"", false},
        {"1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pi_section sec;
        assert_int_equal(pi_section_parse(cases[i].spec, strlen(cases[i].spec), &sec), 0);
        if (pi_header_set_covers(PI_HEADER_SET, &sec) != cases[i].covered)
            fail_msg("BODY[%s]: covered %d", cases[i].spec, !cases[i].covered);
        /* another set, or a message too big for the cache, answers nothing */
        assert_false(pi_header_set_covers(0, &sec));
        assert_false(pi_header_set_covers(PI_HEADER_SET + 1, &sec));
        assert_false(pi_header_set_covers(PI_HEADER_SET_TOO_BIG, &sec));
        pi_section_free(&sec);
    }
    /* every field of the set, in upper and lower case */
    const char *const *names;
    const size_t *lens;
    size_t n = pi_header_set_fields(&names, &lens);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strlen(names[i]), lens[i]);
        for (int up = 0; up < 2; up++) {
            char spec[128];
            int sl = snprintf(spec, sizeof spec, "HEADER.FIELDS (%s)", names[i]);
            for (int k = 15; k < sl - 1; k++)
                spec[k] = (char)(up ? toupper((unsigned char)spec[k]) : tolower((unsigned char)spec[k]));
            pi_section sec;
            assert_int_equal(pi_section_parse(spec, (size_t)sl, &sec), 0);
            if (!pi_header_set_covers(PI_HEADER_SET, &sec))
                fail_msg("BODY[%s]: not covered", spec);
            pi_section_free(&sec);
        }
    }
}

static size_t count_sub(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p++)
        n++;
    return n;
}

/* depth nested multiparts, each holding the next, with a text leaf at the bottom. */
static char *deep_message(size_t depth, size_t *len)
{
    pu_buf b = {0};
    char line[128];
    for (size_t i = 0; i < depth; i++) {
        snprintf(line, sizeof line, "Content-Type: multipart/mixed; boundary=b%zu\r\n\r\n--b%zu\r\n",
                 i, i);
        assert_int_equal(pu_buf_add(&b, line, strlen(line)), 0);
    }
    assert_int_equal(pu_buf_add(&b, "\r\nleaf\r\n", 8), 0);
    *len = b.len;
    return b.data;
}

static void test_depth_limit(void **state)
{
    (void)state;
    size_t len;
    char *msg = deep_message(100, &len);
    mime_message *m = mime_parse(msg, len, NULL);
    assert_non_null(m);
    pu_buf out = {0};
    assert_int_equal(pi_write_bodystructure(&out, m), 0);
    /* 32 levels of multipart, then one opaque leaf instead of the remaining ones. */
    assert_int_equal(count_sub(out.data, "\"mixed\""), MIME_DEFAULT_MAX_DEPTH);
    assert_int_equal(count_sub(out.data, "(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\""), 1);
    assert_int_equal(count_sub(out.data, "\"text\""), 0);
    pu_buf_free(&out);
    mime_free(m);

    mime_limits lim = {.max_depth = 3};
    m = mime_parse(msg, len, &lim);
    assert_int_equal(pi_write_body(&out, m), 0);
    assert_int_equal(count_sub(out.data, "\"mixed\""), 3);
    pu_buf_free(&out);
    mime_free(m);
    free(msg);

    /* Far deeper than anything real: still quick, still bounded (libetpan's parser takes
     * seconds at 5,000 levels and crashes at 100,000). */
    msg = deep_message(200000, &len);
    clock_t t0 = clock();
    m = mime_parse(msg, len, NULL);
    assert_non_null(m);
    assert_int_equal(pi_write_bodystructure(&out, m), 0);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 5.0);
    assert_int_equal(count_sub(out.data, "\"mixed\""), MIME_DEFAULT_MAX_DEPTH);
    pu_buf_free(&out);
    mime_free(m);
    free(msg);
}

static void test_part_limit(void **state)
{
    (void)state;
    pu_buf b = {0};
    const char *head = "Content-Type: multipart/mixed; boundary=x\r\n\r\n";
    assert_int_equal(pu_buf_add(&b, head, strlen(head)), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(pu_buf_add(&b, "--x\r\n\r\np\r\n", 10), 0);
    assert_int_equal(pu_buf_add(&b, "--x--\r\n", 7), 0);
    mime_limits lim = {.max_parts = 10};
    mime_message *m = mime_parse(b.data, b.len, &lim);
    pu_buf out = {0};
    assert_int_equal(pi_write_body(&out, m), 0);
    /* the root counts as one part */
    assert_int_equal(count_sub(out.data, "(\"text\" \"plain\""), 9);
    pu_buf_free(&out);
    mime_free(m);
    m = mime_parse(b.data, b.len, NULL);
    assert_int_equal(pi_write_body(&out, m), 0);
    assert_int_equal(count_sub(out.data, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                         "\"7bit\" 1 0)"), 50);
    pu_buf_free(&out);
    mime_free(m);
    pu_buf_free(&b);
}

static void test_bare_lf_and_binary(void **state)
{
    (void)state;
    /* Not what the gateway hands over, but it must not matter for safety or syntax. */
    const char msg[] = "Subject: a\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nx\0y\n--q--\n";
    mime_message *m = mime_parse(msg, sizeof msg - 1, NULL);
    pu_buf out = {0};
    assert_int_equal(pi_write_bodystructure(&out, m), 0);
    assert_string_equal(out.data, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 "
                                  "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"q\") NIL NIL NIL)");
    pu_buf_free(&out);
    mime_free(m);
    m = mime_parse(NULL, 0, NULL);
    assert_non_null(m);
    assert_int_equal(pi_write_envelope(&out, m), 0);
    assert_string_equal(out.data, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    pu_buf_free(&out);
    mime_free(m);
}

static void expect_field(const mime_message *m, const char *name, const char *want)
{
    pu_buf o = {0};
    assert_int_equal(mime_header_decoded(m, name, &o), 1);
    assert_string_equal(o.data, want);
    pu_buf_free(&o);
}

static void test_search_text(void **state)
{
    (void)state;
    char *buf;
    mime_message *m = load("encoded_words", &buf);
    pu_buf o = {0};
    assert_int_equal(mime_header_decoded(m, "subject", &o), 1);
    assert_string_equal(o.data, "Grüße aus München and 日本語");
    pu_buf_clear(&o);
    assert_int_equal(mime_header_decoded(m, "To", &o), 1);
    assert_string_equal(o.data, "こんにちは <taro@example.jp>");
    pu_buf_clear(&o);
    assert_int_equal(mime_header_decoded(m, "X-Nothing", &o), 0);
    assert_int_equal(mime_body_text(m, &o), 0);
    assert_string_equal(o.data, "こんにちは\r\n\n");
    pu_buf_clear(&o);
    assert_int_equal(mime_headers_decoded(m, &o), 0);
    assert_non_null(strstr(o.data, "From: Jürgen Müller <juergen@example.de>\n"));
    pu_buf_free(&o);
    mime_free(m);
    free(buf);

    /* TEXT sees a header that holds no field, and text after a bare CR */
    const struct {
        const char *file, *field, *want;
    } text_cases[] = {
        {"no_header", NULL, "Just a line of text, no header at all.\nA second line.\n"},
        {"bare_cr", NULL, "From: cr@example.com Subject: old Mac line ends body line one body line two\n"},
        {"bare_cr", "from", "cr@example.com Subject: old Mac line ends body line one body line two\n"
                            "<cr@example.com>"}, /* and the address, as ENVELOPE reads it */
    };
    for (size_t i = 0; i < sizeof text_cases / sizeof *text_cases; i++) {
        m = load(text_cases[i].file, &buf);
        if (text_cases[i].field)
            assert_int_equal(mime_header_decoded(m, text_cases[i].field, &o), 1);
        else
            assert_int_equal(mime_headers_decoded(m, &o), 0);
        assert_string_equal(o.data, text_cases[i].want);
        pu_buf_clear(&o);
        mime_free(m);
        free(buf);
    }

    m = load("alternative", &buf);
    assert_int_equal(mime_body_text(m, &o), 0);
    assert_string_equal(o.data, "Café crème\r\nsoft line break\n"
                                "<html><body>Café crème</body></html>\n\n");
    pu_buf_free(&o);
    mime_free(m);
    free(buf);

    m = load("raw8bit", &buf);
    assert_int_equal(mime_header_decoded(m, "Subject", &o), 1);
    assert_string_equal(o.data, "Grüße aus München");
    pu_buf_free(&o);
    mime_free(m);
    free(buf);

    /* every field of a name; address fields also as plain addresses (imaptest's cases) */
    static const char two[] = "From: <user-from (comment)@ (comment) domain.org>\r\n"
                              "Cc: =?utf-8?q?J=C3=BCrgen?= <j (x) @ example . de>, b@c.d (Bee)\r\n"
                              "X-Extra: first\r\nx-extra: another\r\nTo: root, undisclosed:;\r\n"
                              "Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nDate: Tue, 3 Nov 2026 10:00:00 +0100\r\n"
                              "\r\nbody\r\n";
    m = mime_parse(two, sizeof two - 1, NULL);
    assert_non_null(m);
    expect_field(m, "X-EXTRA", "first\nanother");
    expect_field(m, "To", "root, undisclosed:;\n<root>"); /* no placeholder domain */
    expect_field(m, "From", "<user-from (comment)@ (comment) domain.org>\n<user-from@domain.org>");
    expect_field(m, "cc", "Jürgen <j (x) @ example . de>, b@c.d (Bee)\nJürgen <j@example.de>, Bee <b@c.d>");
    int64_t t;
    int tz;
    assert_int_equal(mime_sent_date(m, &t, &tz), 1); /* the first Date: */
    assert_int_equal(t, 1793610000);
    mime_free(m);

    /* text inside an attached message is searchable too; attachments are not */
    m = load("rfc822_attach", &buf);
    assert_int_equal(mime_body_text(m, &o), 0);
    assert_string_equal(o.data, "Forwarded message below.\noriginal text\n<b>original</b>\n");
    pu_buf_free(&o);
    mime_free(m);
    free(buf);
}

/* libetpan 1.9.4 reads past the end of a quoted-printable body ending in "=X": the body
 * here ends exactly at the end of its own allocation, so ASan builds catch a regression. */
static void test_qp_at_end_of_buffer(void **state)
{
    (void)state;
    static const char src[] = "Content-Type: text/plain\r\n"
                              "Content-Transfer-Encoding: quoted-printable\r\n\r\nab=C3=A9=";
    for (size_t cut = 0; cut < 4; cut++) {
        size_t len = sizeof src - 1 - cut;
        char *msg = malloc(len);
        assert_non_null(msg);
        memcpy(msg, src, len);
        mime_message *m = mime_parse(msg, len, NULL);
        pu_buf o = {0};
        assert_int_equal(mime_body_text(m, &o), 0);
        assert_memory_equal(o.data, "ab", 2);
        pu_buf_free(&o);
        mime_free(m);
        free(msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_body_non_extensible),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_header_cache),
        cmocka_unit_test(test_header_set_covers),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_part_limit),
        cmocka_unit_test(test_bare_lf_and_binary),
        cmocka_unit_test(test_search_text),
        cmocka_unit_test(test_qp_at_end_of_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
