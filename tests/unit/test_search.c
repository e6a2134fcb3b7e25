/* imap: SEARCH programs. Every RFC 3501 key against a fake message, NOT/OR/list nesting,
 * CHARSET, syntax errors, the size and depth limits, case-insensitive UTF-8 matching, and
 * which callbacks run (only those the program needs, each at most once per message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap.h"
#include "userstate/userstate.h"

/* The gateway hands userstate's flags straight to the evaluator. */
_Static_assert(PI_FLAG_SEEN == US_SEEN && PI_FLAG_ANSWERED == US_ANSWERED && PI_FLAG_FLAGGED == US_FLAGGED &&
                   PI_FLAG_DELETED == US_DELETED && PI_FLAG_DRAFT == US_DRAFT,
               "PI_FLAG_* must equal US_*");

/* ---- a fake message ---- */

#define MAX_CALLS 64

typedef struct fake {
    const char *fields[10][2]; /* name, decoded value; NULL name ends */
    const char *body;          /* NULL: empty */
    const char *keywords[4];
    bool has_date;
    int64_t date;
    int date_tz;
    int fail;                  /* 1 header, 2 headers, 3 body: that callback returns -1 */
    bool forbid_text;          /* header, headers, body_text and sent_date must not run */
    /* what was called */
    int n_header, n_headers, n_body, n_sent, n_kw;
    char asked[MAX_CALLS][64];
} fake;

static bool cb_keyword(void *arg, const char *kw, size_t len)
{
    fake *f = arg;
    f->n_kw++;
    for (size_t i = 0; i < 4 && f->keywords[i]; i++)
        if (strlen(f->keywords[i]) == len && strncasecmp(f->keywords[i], kw, len) == 0)
            return true;
    return false;
}

static int cb_header(void *arg, const char *name, pu_buf *out)
{
    fake *f = arg;
    assert_false(f->forbid_text);
    assert_int_equal(out->len, 0);
    /* Each field name at most once per evaluation. */
    for (int i = 0; i < f->n_header && i < MAX_CALLS; i++)
        if (strcasecmp(f->asked[i], name) == 0)
            fail_msg("header(%s) called twice", name);
    if (f->n_header < MAX_CALLS)
        snprintf(f->asked[f->n_header], sizeof f->asked[0], "%s", name);
    f->n_header++;
    if (f->fail == 1)
        return -1;
    int found = 0;
    for (size_t i = 0; i < 10 && f->fields[i][0]; i++) {
        if (strcasecmp(f->fields[i][0], name) != 0)
            continue;
        if (found++)
            assert_int_equal(pu_buf_addstr(out, "\n"), 0);
        assert_int_equal(pu_buf_addstr(out, f->fields[i][1]), 0);
    }
    return found > 0;
}

static int cb_headers(void *arg, pu_buf *out)
{
    fake *f = arg;
    assert_false(f->forbid_text);
    assert_int_equal(out->len, 0);
    assert_int_equal(f->n_headers++, 0);
    if (f->fail == 2)
        return -1;
    for (size_t i = 0; i < 10 && f->fields[i][0]; i++)
        assert_int_equal(pu_buf_printf(out, "%s: %s\n", f->fields[i][0], f->fields[i][1]), 0);
    return 0;
}

static int cb_body(void *arg, pu_buf *out)
{
    fake *f = arg;
    assert_false(f->forbid_text);
    assert_int_equal(out->len, 0);
    assert_int_equal(f->n_body++, 0);
    if (f->fail == 3)
        return -1;
    if (f->body)
        assert_int_equal(pu_buf_addstr(out, f->body), 0);
    return 0;
}

static int cb_sent(void *arg, int64_t *t, int *tz)
{
    fake *f = arg;
    assert_false(f->forbid_text);
    assert_int_equal(f->n_sent++, 0);
    if (!f->has_date)
        return 0;
    *t = f->date;
    *tz = f->date_tz;
    return 1;
}

static void reset_calls(fake *f)
{
    f->n_header = f->n_headers = f->n_body = f->n_sent = f->n_kw = 0;
}

/* Seq 3, UID 30, 2000 bytes, internal date 10-Mar-2024 23:30 -0500 (04:30 UTC on the 11th),
 * sent 12-Mar-2024 00:30 +1300 (11:30 UTC on the 11th). */
static fake base_fake(void)
{
    fake f = {
        .fields = {{"From", "Jörg Müller <joerg@example.org>"},
                   {"To", "Σοφία <sofia@example.gr>"},
                   {"Cc", "Иван <ivan@example.ru>"},
                   {"Subject", "Quarterly report"},
                   {"Received", "from a"},
                   {"Received", "from b"},
                   {"X-Empty", ""},
                   {"Date", "Tue, 12 Mar 2024 00:30:00 +1300"}},
        .body = "Hello,\nthe numbers are in. ПРИВЕТ from Łódź.\n",
        .keywords = {"$Forwarded", "Work"},
        .has_date = true,
        .date = 1710156600, /* 2024-03-11 11:30:00 UTC */
        .date_tz = 13 * 60,
    };
    return f;
}

static pi_search_msg base_msg(fake *f)
{
    pi_search_msg m = {
        .seq = 3,
        .uid = 30,
        .flags = PI_FLAG_SEEN | PI_FLAG_FLAGGED,
        .recent = false,
        .internaldate = 1710131400, /* 2024-03-11 04:30:00 UTC */
        .tz_minutes = -5 * 60,
        .size = 2000,
        .arg = f,
        .has_keyword = cb_keyword,
        .header = cb_header,
        .headers = cb_headers,
        .body_text = cb_body,
        .sent_date = cb_sent,
    };
    return m;
}

/* ---- parsing through the real command parser ---- */

typedef struct parsed {
    pi_parser *parser;
    pi_search *s;
    int rc;
    const char *err;
} parsed;

/* Runs "a SEARCH <text>\r\n" (synchronising literals fed straight on) through pi_parser and
 * the result through pi_search_parse. */
static parsed parse_n(const char *text, size_t len, uint32_t star_seq, uint32_t star_uid, const pi_limits *lim)
{
    parsed r = {.parser = pi_parser_new(lim)};
    assert_non_null(r.parser);
    pu_buf in = PU_BUF_INIT;
    assert_int_equal(pu_buf_addstr(&in, "a SEARCH "), 0);
    assert_int_equal(pu_buf_add(&in, text, len), 0);
    assert_int_equal(pu_buf_addstr(&in, "\r\n"), 0);
    size_t off = 0;
    for (;;) {
        size_t used;
        pi_status st = pi_parse(r.parser, in.data + off, in.len - off, &used);
        off += used;
        if (st == PI_CONTINUE)
            continue;
        if (st != PI_COMMAND) {
            const pi_error *e = pi_parser_error(r.parser);
            fail_msg("command parser: %d %s for %s", st, e ? e->msg : "", text);
        }
        break;
    }
    pu_buf_free(&in);
    const pi_command *c = pi_parser_command(r.parser);
    r.err = "unset";
    r.rc = pi_search_parse(c->args, c->nargs, star_seq, star_uid, &r.s, &r.err);
    if (r.rc == 0) {
        assert_non_null(r.s);
    } else {
        assert_null(r.s);
        assert_non_null(r.err);
        assert_true(strlen(r.err) > 0);
    }
    return r;
}

static parsed parse_lim(const char *text, uint32_t star_seq, uint32_t star_uid, const pi_limits *lim)
{
    return parse_n(text, strlen(text), star_seq, star_uid, lim);
}

static parsed parse(const char *text)
{
    return parse_lim(text, 10, 100, NULL);
}

static void done(parsed *r)
{
    pi_search_free(r->s);
    pi_parser_free(r->parser);
}

/* The program's answer for m; the parser's memory is gone before evaluation, so the program
 * must hold its own copies. */
static int eval_prog_n(const char *text, size_t len, const pi_search_msg *m)
{
    parsed r = parse_n(text, len, 10, 100, NULL);
    if (r.rc != 0)
        fail_msg("parse of \"%s\" failed: %d %s", text, r.rc, r.err);
    pi_parser_free(r.parser);
    r.parser = NULL;
    fake *f = m->arg;
    if (f)
        reset_calls(f);
    int v = pi_search_eval(r.s, m);
    pi_search_free(r.s);
    return v;
}

static int eval_prog(const char *text, const pi_search_msg *m)
{
    return eval_prog_n(text, strlen(text), m);
}

#define MATCH(text, m)                                                                                              \
    do {                                                                                                            \
        int v_ = eval_prog(text, m);                                                                                \
        if (v_ != 1)                                                                                                \
            fail_msg("expected \"%s\" to match, got %d", text, v_);                                                 \
    } while (0)
#define NOMATCH(text, m)                                                                                            \
    do {                                                                                                            \
        int v_ = eval_prog(text, m);                                                                                \
        if (v_ != 0)                                                                                                \
            fail_msg("expected \"%s\" not to match, got %d", text, v_);                                             \
    } while (0)

/* ---- keys ---- */

static void test_flag_keys(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    static const struct {
        const char *key;
        unsigned flag;
        bool set;
    } t[] = {
        {"ANSWERED", PI_FLAG_ANSWERED, true}, {"UNANSWERED", PI_FLAG_ANSWERED, false},
        {"DELETED", PI_FLAG_DELETED, true},   {"UNDELETED", PI_FLAG_DELETED, false},
        {"DRAFT", PI_FLAG_DRAFT, true},       {"UNDRAFT", PI_FLAG_DRAFT, false},
        {"FLAGGED", PI_FLAG_FLAGGED, true},   {"UNFLAGGED", PI_FLAG_FLAGGED, false},
        {"SEEN", PI_FLAG_SEEN, true},         {"UNSEEN", PI_FLAG_SEEN, false},
    };
    for (unsigned flags = 0; flags < 32; flags++) {
        m.flags = flags;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            bool want = ((flags & t[i].flag) != 0) == t[i].set;
            assert_int_equal(eval_prog(t[i].key, &m), want);
            /* the keyword spelling of a system flag tests the flag */
            char kw[64];
            snprintf(kw, sizeof kw, "%s \\%s", t[i].set ? "KEYWORD" : "UNKEYWORD", t[i].key + (t[i].set ? 0 : 2));
            assert_int_equal(eval_prog(kw, &m), want);
        }
        for (int recent = 0; recent < 2; recent++) {
            m.recent = recent;
            assert_int_equal(eval_prog("RECENT", &m), recent);
            assert_int_equal(eval_prog("OLD", &m), !recent);
            assert_int_equal(eval_prog("NEW", &m), recent && !(flags & PI_FLAG_SEEN));
            assert_int_equal(eval_prog("KEYWORD \\Recent", &m), recent);
            assert_int_equal(eval_prog("UNKEYWORD \\recent", &m), !recent);
            MATCH("ALL", &m);
        }
    }
    /* Keys in any case. */
    m.flags = PI_FLAG_SEEN;
    MATCH("seen", &m);
    MATCH("Seen unAnswered aLL", &m);
    NOMATCH("unseen", &m);
}

static void test_keywords(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    MATCH("KEYWORD Work", &m);
    MATCH("keyword $Forwarded", &m);
    NOMATCH("KEYWORD Home", &m);
    MATCH("UNKEYWORD Home", &m);
    NOMATCH("UNKEYWORD Work", &m);
    MATCH("KEYWORD \"Work\"", &m); /* astrings accepted */
    /* A name starting with "\" that is no system flag is never set. */
    NOMATCH("KEYWORD \\Junk", &m);
    MATCH("UNKEYWORD \\Junk", &m);
    NOMATCH("KEYWORD \"\"", &m);
    /* No callback: no keywords. */
    m.has_keyword = NULL;
    NOMATCH("KEYWORD Work", &m);
    MATCH("UNKEYWORD Work", &m);
}

static void test_seq_and_uid(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f); /* seq 3, uid 30; star 10 and 100 */
    MATCH("3", &m);
    MATCH("1:5", &m);
    MATCH("5:1", &m);
    MATCH("1,3,7", &m);
    NOMATCH("4:*", &m);
    NOMATCH("*", &m);
    MATCH("2:4,8:*", &m);
    MATCH("UID 30", &m);
    MATCH("uid 1:30", &m);
    NOMATCH("UID 31:*", &m);
    NOMATCH("UID 3", &m); /* UID, not sequence number */
    NOMATCH("UID 30000", &m); /* a UID that does not exist is no error */
    m.seq = 10;
    m.uid = 100;
    MATCH("*", &m);
    MATCH("UID *", &m);
    MATCH("9:*", &m);
    /* "*" means each star of its own kind. */
    parsed r = parse_lim("5:* UID 50:*", 7, 70, NULL);
    assert_int_equal(r.rc, 0);
    m.seq = 7;
    m.uid = 70;
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    m.seq = 8;
    assert_int_equal(pi_search_eval(r.s, &m), 0);
    done(&r);
    /* Empty mailbox: a sequence set is BAD (RFC 3501 section 9), "UID *" selects nothing. */
    r = parse_lim("1:*", 0, 0, NULL);
    assert_int_equal(r.rc, -1);
    done(&r);
    m.seq = 1;
    r = parse_lim("UID *", 0, 0, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 0);
    done(&r);
    /* a sequence number beyond EXISTS is an error (RFC 3501 section 9), wherever it is */
    const char *beyond[] = {"30", "1:11", "OR 1 11", "NOT 9,11", "(SEEN 11)"};
    for (size_t i = 0; i < sizeof beyond / sizeof beyond[0]; i++) {
        r = parse(beyond[i]);
        if (r.rc != -1 || strcmp(r.err, "Message sequence number beyond the last message") != 0)
            fail_msg("%s: %d %s", beyond[i], r.rc, r.err);
        done(&r);
    }
}

static void test_sizes(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f); /* 2000 bytes */
    MATCH("LARGER 1999", &m);
    NOMATCH("LARGER 2000", &m);
    MATCH("SMALLER 2001", &m);
    NOMATCH("SMALLER 2000", &m);
    MATCH("LARGER 0", &m);
    NOMATCH("SMALLER 0", &m);
    NOMATCH("LARGER 9223372036854775807", &m);
    m.size = 5000000000ull; /* beyond 32 bits */
    MATCH("LARGER 4294967295", &m);
    MATCH("SMALLER 5000000001", &m);
}

/* RFC 7162 3.1.5: MODSEQ n matches a MODSEQ of n or more; the per-flag entry form is checked
 * and compares the message's one MODSEQ; the margin lowers every MODSEQ key. */
static void test_modseq(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    m.modseq = 1000;
    MATCH("MODSEQ 1000", &m);
    MATCH("MODSEQ 0", &m);
    NOMATCH("MODSEQ 1001", &m);
    MATCH("modseq \"/flags/\\\\draft\" all 999", &m);
    NOMATCH("MODSEQ \"/flags/$Junk\" priv 5000", &m);
    MATCH("OR MODSEQ 5000 SEEN", &m);
    const char *bad[] = {"MODSEQ", "MODSEQ x", "MODSEQ -1", "MODSEQ 9223372036854775808",
                         "MODSEQ \"/flags/\\\\seen\" 5", "MODSEQ \"/other/x\" all 5",
                         "MODSEQ \"/flags/\\\\seen\" none 5", "MODSEQ \"/flags/\\\\seen\" all"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parsed r = parse(bad[i]);
        if (r.rc != -1)
            fail_msg("%s: %d", bad[i], r.rc);
        done(&r);
    }
    parsed r = parse("NOT MODSEQ 1500");
    assert_int_equal(r.rc, 0);
    assert_true(pi_search_has_modseq(r.s));
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    pi_search_modseq_margin(r.s, 600);
    assert_int_equal(pi_search_eval(r.s, &m), 0); /* now MODSEQ 900 */
    pi_search_modseq_margin(r.s, 5000);
    assert_int_equal(pi_search_eval(r.s, &m), 0); /* MODSEQ 0, never below */
    done(&r);
    r = parse("SEEN");
    assert_false(pi_search_has_modseq(r.s));
    done(&r);
}

static void test_dates(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    /* Internal date: 10-Mar-2024 in its own zone (-0500), though the 11th in UTC. */
    MATCH("ON 10-Mar-2024", &m);
    NOMATCH("ON 11-Mar-2024", &m);
    MATCH("BEFORE 11-Mar-2024", &m);
    NOMATCH("BEFORE 10-Mar-2024", &m);
    MATCH("SINCE 10-Mar-2024", &m);
    NOMATCH("SINCE 11-Mar-2024", &m);
    MATCH("SINCE 1-Jan-1970", &m);
    MATCH("ON \"10-mar-2024\"", &m); /* quoted, month in any case */
    MATCH("BEFORE {11}\r\n11-Mar-2024", &m);
    /* The same instant in UTC is the 11th. */
    m.tz_minutes = 0;
    MATCH("ON 11-Mar-2024", &m);
    m.tz_minutes = 14 * 60;
    MATCH("ON 11-Mar-2024", &m);
    m.internaldate = 1710201599; /* 2024-03-11 23:59:59 UTC */
    m.tz_minutes = 1;
    MATCH("ON 12-Mar-2024", &m);
    m.internaldate = -1; /* 1969-12-31 23:59:59 UTC */
    m.tz_minutes = 0;
    MATCH("ON 31-Dec-1969", &m);
    MATCH("BEFORE 1-Jan-1970", &m);
    m.internaldate = INT64_MIN;
    m.tz_minutes = INT32_MIN / 60;
    NOMATCH("SINCE 1-Jan-0001", &m);
    m.internaldate = INT64_MAX;
    m.tz_minutes = INT32_MAX / 60;
    MATCH("SINCE 31-Dec-9999", &m);

    /* Sent date: 12-Mar-2024 in +1300, the Date: field's own zone. */
    m = base_msg(&f);
    MATCH("SENTON 12-Mar-2024", &m);
    NOMATCH("SENTON 11-Mar-2024", &m);
    MATCH("SENTBEFORE 13-Mar-2024", &m);
    NOMATCH("SENTBEFORE 12-Mar-2024", &m);
    MATCH("SENTSINCE 12-Mar-2024", &m);
    NOMATCH("SENTSINCE 13-Mar-2024", &m);
    /* The sent date is read once, however many keys use it. */
    MATCH("SENTSINCE 1-Mar-2024 SENTBEFORE 1-Apr-2024 NOT SENTON 1-Mar-2024", &m);
    assert_int_equal(f.n_sent, 1);
    /* No usable Date: field: no SENT* key matches, so NOT of one does. */
    f.has_date = false;
    NOMATCH("SENTON 12-Mar-2024", &m);
    NOMATCH("SENTBEFORE 1-Jan-9999", &m);
    NOMATCH("SENTSINCE 1-Jan-0001", &m);
    MATCH("NOT SENTON 12-Mar-2024", &m);
    m.sent_date = NULL;
    NOMATCH("SENTSINCE 1-Jan-0001", &m);
}

static void test_header_keys(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    MATCH("FROM joerg", &m);
    MATCH("FROM \"jörg müller\"", &m);
    NOMATCH("FROM sofia", &m);
    MATCH("TO sofia", &m);
    MATCH("CC ivan@", &m);
    NOMATCH("BCC ivan", &m);
    MATCH("SUBJECT \"quarterly REPORT\"", &m);
    NOMATCH("SUBJECT \"quarterly  report\"", &m);
    MATCH("HEADER Received \"from b\"", &m); /* every field of that name */
    MATCH("HEADER received \"from a\"", &m);
    MATCH("header RECEIVED {6}\r\na\nfrom", &m); /* values joined by "\n" */
    MATCH("HEADER X-Empty \"\"", &m);
    NOMATCH("HEADER X-Empty x", &m);
    NOMATCH("HEADER X-Missing \"\"", &m);
    /* An empty string: any message that has the field. */
    MATCH("FROM \"\"", &m);
    NOMATCH("BCC \"\"", &m);
    MATCH("NOT BCC \"\"", &m);
    /* Literal strings, 8-bit and with a NUL. */
    MATCH("FROM {7}\r\nMÜLLER", &m);
    static const char nul[] = "FROM {3}\r\nJ\0r";
    assert_int_equal(eval_prog_n(nul, sizeof nul - 1, &m), 0);
    f.fields[0][1] = "J"; /* matched up to the NUL only if compared as a C string */
    assert_int_equal(eval_prog_n(nul, sizeof nul - 1, &m), 0);
    static const char nul2[] = "FROM {1}\r\n\0";
    assert_int_equal(eval_prog_n(nul2, sizeof nul2 - 1, &m), 0);
    f = base_fake();
    MATCH("HEADER {7}\r\nSubject {9}\r\nQUARTERLY", &m);
    /* Field names no header field can have match nothing and load nothing. */
    NOMATCH("HEADER \"\" \"\"", &m);
    NOMATCH("HEADER \"Sub ject\" \"\"", &m);
    NOMATCH("HEADER Subject: \"\"", &m);
    assert_int_equal(f.n_header, 0);
    MATCH("NOT HEADER \"X Y\" x", &m);
    /* No header callback: no fields. */
    m.header = NULL;
    NOMATCH("FROM \"\"", &m);
    MATCH("NOT SUBJECT report", &m);
}

static void test_body_and_text(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    MATCH("BODY numbers", &m);
    MATCH("BODY \"NUMBERS ARE\"", &m);
    NOMATCH("BODY quarterly", &m); /* only in the Subject */
    MATCH("TEXT quarterly", &m);   /* TEXT: headers ... */
    MATCH("TEXT \"subject: quarterly\"", &m);
    MATCH("TEXT numbers", &m); /* ... or body */
    NOMATCH("TEXT nowhere", &m);
    assert_int_equal(f.n_headers, 1);
    assert_int_equal(f.n_body, 1);
    MATCH("TEXT received", &m); /* field names are part of the header text */
    NOMATCH("BODY received", &m);
    MATCH("BODY {5}\r\ndź.\n", &m);
    /* Empty strings match every message without loading anything. */
    f.forbid_text = true;
    f.body = NULL;
    MATCH("BODY \"\"", &m);
    MATCH("TEXT \"\"", &m);
    f.forbid_text = false;
    /* An empty body. */
    NOMATCH("BODY hello", &m);
    MATCH("NOT BODY hello", &m);
    m.body_text = NULL;
    m.headers = NULL;
    NOMATCH("TEXT quarterly", &m);
}

/* ---- case folding ---- */

static void test_utf8_case(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    static const struct {
        const char *text, *needle;
        bool match;
    } t[] = {
        {"Straße in Köln", "STRASSE", false}, /* simple folding only: ß stays ß */
        {"Straße in Köln", "STRAßE IN KÖLN", true},
        {"ÀÉÎÕÜ Ÿ Þ Ø", "àéîõü ÿ þ ø", true},
        {"àéîõü ÿ þ ø", "ÀÉÎÕÜ Ÿ Þ Ø", true},
        {"× ÷", "× ÷", true},
        {"5 µm", "5 Μm", true},       /* MICRO SIGN and capital mu */
        {"ĀĂĄĆĈĊČĎĐĒ", "āăąćĉċčďđē", true},
        {"ĹĻĽĿŁŃŅŇ", "ĺļľŀłńņň", true},
        {"ŊŌŎŐŒŔŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶ", "ŋōŏőœŕśŝşšţťŧũūŭůűųŵŷ", true},
        {"ŹŻŽ", "źżž", true},
        {"Łódź", "ŁÓDŹ", true},
        {"ſt", "ST", true},           /* long s folds to s */
        {"İstanbul", "istanbul", false}, /* dotted capital I has no simple folding */
        {"ı", "I", false},
        {"ΣΟΦΊΑ", "σοφία", true},
        {"σοφίας", "ΣΟΦΊΑΣ", true},   /* final sigma */
        {"ΆΈΉΊΌΎΏ", "άέήίόύώ", true},
        {"ϐϑϕϖϰϱϵ", "βθφπκρε", true},
        {"ПРИВЕТ, МИР", "привет, мир", true},
        {"ЁЂЃЄЅІЇЈЉЊЋЌЍЎЏ", "ёђѓєѕіїјљњћќѝўџ", true},
        {"ѠѢҊҌӀӁӃӐӒ", "ѡѣҋҍӏӂӄӑӓ", true},
        {"ԀԂ", "ԁԃ", true},
        {"ԱԲԳ", "աբգ", true},          /* Armenian */
        {"ǅ", "ǆ", false},              /* Latin Extended-B is outside the folded blocks */
        {"Ⅻ", "ⅻ", false},            /* three-byte characters match exactly */
        {"abc\xC3", "ABC\xC3", true},   /* a truncated sequence is kept byte for byte */
        {"\xC3\x28 x", "\xC3\x28 X", true},
        {"\xC0\x80", "\xC0\x80", true}, /* overlong: bytes */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        f.body = t[i].text;
        char prog[256];
        snprintf(prog, sizeof prog, "BODY {%zu}\r\n%s", strlen(t[i].needle), t[i].needle);
        int v = eval_prog(prog, &m);
        if (v != t[i].match)
            fail_msg("BODY \"%s\" in \"%s\": got %d", t[i].needle, t[i].text, v);
        /* CHARSET changes nothing about matching. */
        snprintf(prog, sizeof prog, "CHARSET utf-8 BODY {%zu}\r\n%s", strlen(t[i].needle), t[i].needle);
        assert_int_equal(eval_prog(prog, &m), t[i].match);
    }
}

/* ---- combinations ---- */

static void test_not_or_lists(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f); /* \Seen \Flagged, seq 3 */
    MATCH("NOT DELETED", &m);
    NOMATCH("NOT SEEN", &m);
    MATCH("NOT NOT SEEN", &m);
    MATCH("OR DELETED SEEN", &m);
    MATCH("OR SEEN DELETED", &m);
    NOMATCH("OR DELETED DRAFT", &m);
    MATCH("OR DELETED OR DRAFT FLAGGED", &m);
    MATCH("OR OR DELETED DRAFT FLAGGED", &m);
    NOMATCH("SEEN DELETED", &m); /* top level: all keys */
    MATCH("SEEN FLAGGED UNDELETED", &m);
    MATCH("(SEEN FLAGGED)", &m);
    NOMATCH("(SEEN DELETED)", &m);
    MATCH("OR (SEEN DELETED) (FLAGGED 3)", &m);
    NOMATCH("OR (SEEN DELETED) (FLAGGED 4)", &m);
    MATCH("NOT (SEEN DELETED)", &m);
    MATCH("((((SEEN))))", &m);
    MATCH("NOT OR DELETED (DRAFT SEEN)", &m);
    MATCH("OR NOT SEEN NOT DELETED", &m);
    NOMATCH("OR NOT SEEN NOT FLAGGED", &m);
    MATCH("(OR 1 3 OR 3 4) NOT 1:2 UID 30", &m);
    MATCH("OR (FROM nobody) (SUBJECT report) NOT (TO nobody BODY nothing)", &m);
    NOMATCH("NOT OR (FROM nobody) (SUBJECT report)", &m);
}

static void test_charset(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    MATCH("CHARSET UTF-8 SEEN", &m);
    MATCH("charset utf-8 SEEN", &m);
    MATCH("CHARSET US-ASCII SEEN", &m);
    MATCH("CHARSET \"us-ascii\" FROM joerg", &m);
    MATCH("CHARSET {5}\r\nUTF-8 ALL", &m);
    static const char *bad[] = {"CHARSET ISO-8859-1 ALL", "CHARSET UTF8 ALL", "CHARSET KOI8-R FROM x",
                                "CHARSET \"\" ALL", "CHARSET UTF-16 SEEN"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parsed r = parse(bad[i]);
        assert_int_equal(r.rc, PI_SEARCH_BADCHARSET);
        done(&r);
    }
    static const char *syn[] = {"CHARSET", "CHARSET UTF-8", "CHARSET (UTF-8) ALL", "SEEN CHARSET UTF-8"};
    for (size_t i = 0; i < sizeof syn / sizeof syn[0]; i++) {
        parsed r = parse(syn[i]);
        if (r.rc != -1)
            fail_msg("\"%s\": %d", syn[i], r.rc);
        done(&r);
    }
}

static void test_syntax_errors(void **state)
{
    (void)state;
    static const struct {
        const char *prog, *err;
    } t[] = {
        {"FOO", "Unknown search key"},
        {"SEEN BOGUS", "Unknown search key"},
        {"\"SEEN\"", "Search key expected"},
        {"NIL", "Search key expected"},
        {"()", "Empty list in search program"},
        {"(SEEN ())", "Empty list in search program"},
        {"NOT", "NOT needs a search key"},
        {"OR SEEN", "OR needs two search keys"},
        {"OR", "OR needs two search keys"},
        {"(NOT)", "NOT needs a search key"},
        {"(OR SEEN) DELETED", "OR needs two search keys"},
        {"FROM", "Search key needs a string"},
        {"FROM (x)", "Search key needs a string"},
        {"BODY", "Search key needs a string"},
        {"TEXT", "Search key needs a string"},
        {"SUBJECT", "Search key needs a string"},
        {"HEADER", "HEADER needs a field name and a string"},
        {"HEADER Subject", "HEADER needs a field name and a string"},
        {"HEADER (Subject) x", "HEADER needs a field name"},
        {"HEADER Subject (x)", "Search key needs a string"},
        {"KEYWORD", "Search key needs a keyword"},
        {"UNKEYWORD (x)", "Search key needs a keyword"},
        {"BEFORE", "Search key needs a date"},
        {"SINCE 32-Jan-2024", "Invalid date in search"},
        {"ON 1-Foo-2024", "Invalid date in search"},
        {"SENTON 29-Feb-2023", "Invalid date in search"},
        {"SENTBEFORE 2024-01-01", "Invalid date in search"},
        {"SENTSINCE (1-Jan-2024)", "Invalid date in search"},
        {"BEFORE \" 1-Jan-2024\"", "Invalid date in search"},
        {"LARGER", "Search key needs a number"},
        {"LARGER x", "Invalid number in search"},
        {"LARGER -1", "Invalid number in search"},
        {"SMALLER 1k", "Invalid number in search"},
        {"SMALLER \"10\"", "Invalid number in search"},
        {"LARGER 9223372036854775808", "Invalid number in search"},
        {"SMALLER 99999999999999999999999", "Invalid number in search"},
        {"UID", "UID needs a sequence set"},
        {"UID \"1\"", "UID needs a sequence set"},
        {"UID x", "Invalid sequence set"},
        {"UID 0", "Message numbers start at 1"},
        {"0", "Message numbers start at 1"},
        {"1:", "Invalid sequence set"},
        {"1,,2", "Invalid sequence set"},
        {"1x", "Invalid sequence set"},
        {"$", "Saved search results ($) not supported"},
        {"4294967296", "Number in sequence set too big"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        parsed r = parse(t[i].prog);
        if (r.rc != -1 || strcmp(r.err, t[i].err) != 0)
            fail_msg("\"%s\": got %d \"%s\", want \"%s\"", t[i].prog, r.rc, r.rc ? r.err : "", t[i].err);
        done(&r);
    }
    /* No arguments at all. */
    const char *err = NULL;
    pi_search *s = (pi_search *)1;
    assert_int_equal(pi_search_parse(NULL, 0, 1, 1, &s, &err), -1);
    assert_null(s);
    assert_string_equal(err, "Search program is empty");
    /* err may be NULL. */
    parsed r = parse("ALL");
    assert_int_equal(pi_search_parse(pi_parser_command(r.parser)->args, 0, 1, 1, &s, NULL), -1);
    done(&r);
}

static void test_limits(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    pu_buf b = PU_BUF_INIT;

    /* Nodes: the implicit top-level list counts as one. */
    for (int i = 0; i < PI_SEARCH_MAX_NODES - 1; i++)
        assert_int_equal(pu_buf_addstr(&b, i ? " SEEN" : "SEEN"), 0);
    parsed r = parse(b.data);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    done(&r);
    assert_int_equal(pu_buf_addstr(&b, " SEEN"), 0);
    r = parse(b.data);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "Search program too long");
    done(&r);

    /* Depth: PI_SEARCH_MAX_DEPTH nested NOTs are fine, one more is not. */
    pu_buf_clear(&b);
    for (int i = 0; i < PI_SEARCH_MAX_DEPTH; i++)
        pu_buf_addstr(&b, "NOT ");
    pu_buf_addstr(&b, "SEEN");
    r = parse(b.data);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 1); /* an even number of NOTs */
    done(&r);
    pu_buf_clear(&b);
    for (int i = 0; i <= PI_SEARCH_MAX_DEPTH; i++)
        pu_buf_addstr(&b, "NOT ");
    pu_buf_addstr(&b, "DELETED");
    r = parse(b.data);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "Search program nested too deeply");
    done(&r);

    /* OR chains nest in the second key. */
    pu_buf_clear(&b);
    for (int i = 0; i < PI_SEARCH_MAX_DEPTH; i++)
        pu_buf_addstr(&b, "OR DELETED ");
    pu_buf_addstr(&b, "SEEN");
    r = parse(b.data);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    done(&r);
    pu_buf_clear(&b);
    for (int i = 0; i <= PI_SEARCH_MAX_DEPTH; i++)
        pu_buf_addstr(&b, "OR DELETED ");
    pu_buf_addstr(&b, "SEEN");
    r = parse(b.data);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "Search program nested too deeply");
    done(&r);

    /* Lists, when the command parser allows them that deep; mixed with NOT. */
    pi_limits lim;
    pi_limits_default(&lim);
    lim.max_depth = 1000;
    pu_buf_clear(&b);
    for (int i = 0; i < PI_SEARCH_MAX_DEPTH / 2; i++)
        pu_buf_addstr(&b, "(NOT ");
    pu_buf_addstr(&b, "SEEN");
    for (int i = 0; i < PI_SEARCH_MAX_DEPTH / 2; i++)
        pu_buf_addstr(&b, ")");
    r = parse_lim(b.data, 10, 100, &lim);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    done(&r);
    pu_buf_clear(&b);
    for (int i = 0; i < 500; i++)
        pu_buf_addstr(&b, "(");
    pu_buf_addstr(&b, "SEEN");
    for (int i = 0; i < 500; i++)
        pu_buf_addstr(&b, ")");
    r = parse_lim(b.data, 10, 100, &lim);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "Search program nested too deeply");
    done(&r);

    /* A long but flat program evaluates fine. */
    pu_buf_clear(&b);
    for (int i = 0; i < 300; i++)
        pu_buf_printf(&b, "NOT %d ", 1000 + i);
    pu_buf_addstr(&b, "(OR 1 3)");
    r = parse_lim(b.data, 2000, 2000, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    done(&r);
    pu_buf_free(&b);
}

/* ---- callbacks ---- */

static void test_needs_and_laziness(void **state)
{
    (void)state;
    static const struct {
        const char *prog;
        unsigned needs;
    } t[] = {
        {"ALL", 0},
        {"SEEN UNDELETED NEW OLD RECENT 1:* UID 1:5 KEYWORD x UNKEYWORD y", 0},
        {"BODY \"\" TEXT \"\"", 0},
        {"HEADER \"a b\" x", 0},
        {"LARGER 5", PI_SEARCH_NEEDS_META},
        {"SMALLER 5", PI_SEARCH_NEEDS_META},
        {"BEFORE 1-Jan-2020", PI_SEARCH_NEEDS_META},
        {"ON 1-Jan-2020", PI_SEARCH_NEEDS_META},
        {"NOT SINCE 1-Jan-2020", PI_SEARCH_NEEDS_META},
        {"FROM x", PI_SEARCH_NEEDS_HEADERS},
        {"TO x", PI_SEARCH_NEEDS_HEADERS},
        {"CC x", PI_SEARCH_NEEDS_HEADERS},
        {"BCC x", PI_SEARCH_NEEDS_HEADERS},
        {"SUBJECT \"\"", PI_SEARCH_NEEDS_HEADERS},
        {"HEADER X-Y z", PI_SEARCH_NEEDS_HEADERS},
        {"SENTON 1-Jan-2020", PI_SEARCH_NEEDS_HEADERS},
        {"SENTBEFORE 1-Jan-2020", PI_SEARCH_NEEDS_HEADERS},
        {"SENTSINCE 1-Jan-2020", PI_SEARCH_NEEDS_HEADERS},
        {"BODY x", PI_SEARCH_NEEDS_BODY},
        {"TEXT x", PI_SEARCH_NEEDS_HEADERS | PI_SEARCH_NEEDS_BODY},
        {"OR (NOT LARGER 5) (SEEN (BODY x))", PI_SEARCH_NEEDS_META | PI_SEARCH_NEEDS_BODY},
        {"NOT NOT (FROM a) ON 1-Jan-2000", PI_SEARCH_NEEDS_META | PI_SEARCH_NEEDS_HEADERS},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        parsed r = parse(t[i].prog);
        assert_int_equal(r.rc, 0);
        if (pi_search_needs(r.s) != t[i].needs)
            fail_msg("\"%s\": needs %u, want %u", t[i].prog, pi_search_needs(r.s), t[i].needs);
        done(&r);
    }

    fake f = base_fake();
    pi_search_msg m = base_msg(&f); /* \Seen */
    /* A program that needs no text never calls a text callback (cb_* assert this). */
    f.forbid_text = true;
    MATCH("SEEN 3 UID 30 LARGER 10 ON 10-Mar-2024 KEYWORD Work", &m);
    /* Cheap keys go first, whatever their place: no text is loaded once they fail. */
    NOMATCH("TEXT quarterly BODY numbers FROM joerg UNSEEN", &m);
    NOMATCH("(BODY numbers) (SENTON 12-Mar-2024) 4", &m);
    MATCH("OR BODY numbers SEEN", &m);
    MATCH("OR (FROM x) FLAGGED", &m);
    MATCH("OR (TEXT x) (OR DELETED FLAGGED)", &m);
    NOMATCH("NOT OR TEXT x SEEN", &m);
    f.forbid_text = false;
    /* Headers before the body: a failing header key spares the body. */
    NOMATCH("BODY numbers FROM nobody", &m);
    assert_int_equal(f.n_body, 0);
    assert_int_equal(f.n_header, 1);
    /* Every text callback at most once per evaluation (cb_header checks repeated names,
     * whatever their case). */
    MATCH("FROM joerg from \"müller\" HEADER FROM \"jörg\" Subject report SUBJECT quarterly TEXT in. TEXT hello "
          "BODY numbers BODY \"łódź\" TEXT Received HEADER received b",
          &m);
    assert_int_equal(f.n_header, 3);
    assert_int_equal(f.n_headers, 1);
    assert_int_equal(f.n_body, 1);
    /* The cache lives for one evaluation only. */
    parsed r = parse("FROM joerg BODY numbers");
    assert_int_equal(r.rc, 0);
    for (int i = 0; i < 2; i++) {
        reset_calls(&f);
        assert_int_equal(pi_search_eval(r.s, &m), 1);
        assert_int_equal(f.n_header, 1);
        assert_int_equal(f.n_body, 1);
    }
    done(&r);
}

static void test_callback_failure(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    f.fail = 1;
    assert_int_equal(eval_prog("FROM joerg", &m), -1);
    assert_int_equal(eval_prog("NOT FROM joerg", &m), -1);
    assert_int_equal(eval_prog("OR FROM joerg SEEN", &m), 1); /* SEEN first: no header needed */
    assert_int_equal(eval_prog("OR FROM joerg DELETED", &m), -1);
    f.fail = 2;
    assert_int_equal(eval_prog("TEXT x", &m), -1);
    assert_int_equal(eval_prog("BODY numbers", &m), 1);
    f.fail = 3;
    assert_int_equal(eval_prog("BODY x", &m), -1);
    assert_int_equal(eval_prog("TEXT numbers", &m), -1);
    assert_int_equal(eval_prog("TEXT quarterly", &m), 1); /* found in the headers */
    assert_int_equal(eval_prog("BODY x DELETED", &m), 0);
}

/* The program keeps nothing of the parser's: parse, free the parser, then evaluate. */
static void test_program_owns_its_data(void **state)
{
    (void)state;
    fake f = base_fake();
    pi_search_msg m = base_msg(&f);
    parsed r = parse("HEADER {7}\r\nSubject {9}\r\nquarterly KEYWORD Work UID 30 2:4");
    assert_int_equal(r.rc, 0);
    pi_parser_free(r.parser);
    r.parser = NULL;
    assert_int_equal(pi_search_eval(r.s, &m), 1);
    m.uid = 31;
    assert_int_equal(pi_search_eval(r.s, &m), 0);
    pi_search_free(r.s);
    pi_search_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_keys),
        cmocka_unit_test(test_keywords),
        cmocka_unit_test(test_seq_and_uid),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_modseq),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_header_keys),
        cmocka_unit_test(test_body_and_text),
        cmocka_unit_test(test_utf8_case),
        cmocka_unit_test(test_not_or_lists),
        cmocka_unit_test(test_charset),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_needs_and_laziness),
        cmocka_unit_test(test_callback_failure),
        cmocka_unit_test(test_program_owns_its_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
