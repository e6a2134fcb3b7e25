/* imap: SORT, THREAD (RFC 5256) and ESEARCH (RFC 4731). Base subjects of RFC 5256's rules,
 * keys read back from ENVELOPE text, sort orders with ties, both threading algorithms on a
 * hand-built corpus whose expected answers were worked out by hand (see each test), a reply
 * chain far deeper than any stack, the command syntax and the ESEARCH reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

/* ---- base subject ---- */

static void check_base(const char *subject, const char *want, bool want_refwd)
{
    pu_buf b = PU_BUF_INIT;
    bool refwd = !want_refwd;
    assert_int_equal(pi_base_subject(subject, &b, &refwd), 0);
    if (strcmp(b.data ? b.data : "", want) != 0)
        fail_msg("base subject of \"%s\": \"%s\", want \"%s\"", subject, b.data ? b.data : "", want);
    if (refwd != want_refwd)
        fail_msg("refwd of \"%s\": %d", subject, refwd);
    pu_buf_free(&b);
}

static void test_base_subject(void **state)
{
    (void)state;
    check_base("Hello", "HELLO", false);
    check_base("Re: test", "TEST", true);
    check_base("RE: Re: re: test", "TEST", true);
    check_base("Fwd: test", "TEST", true);
    check_base("fw: test", "TEST", true);
    check_base("test (fwd)", "TEST", true);
    check_base("test (fwd) (FWD)  ", "TEST", true);
    check_base("[PATCH] Re: foo", "FOO", true);         /* *subj-blob subj-refwd */
    check_base("Re[2]: foo", "FOO", true);              /* subj-refwd's optional blob */
    check_base("[list] foo", "FOO", false);             /* step 4: a leading blob goes */
    check_base("[only a blob]", "[ONLY A BLOB]", false); /* ... unless nothing is left */
    check_base("[fwd: Re: hi]", "HI", true);            /* step 6, then again from step 2 */
    check_base("Re: [fwd: test]", "TEST", true);
    check_base("Fwd: [list] Re: hello (fwd)", "HELLO", true);
    check_base("  Re:\t spaced \t  out  ", "SPACED OUT", true); /* white space runs are one space */
    check_base("Ref: x", "REF: X", false);              /* "re" must be followed by ":" */
    check_base("Review", "REVIEW", false);
    check_base("", "", false);
    check_base("Re:", "", true);
    /* RFC 2047 first; only ASCII is upper-cased (i;ascii-casemap) */
    check_base("=?UTF-8?Q?Re:_R=C3=A9sum=C3=A9?=", "R\xc3\xa9SUM\xc3\xa9", true);
}

/* ---- keys from ENVELOPE text ---- */

static void test_envelope_keys(void **state)
{
    (void)state;
    const char *env =
        "(\"Tue, 1 Feb 1994 21:52:25 -0800\" \"Re: Hello \\\"there\\\"\" "
        "((\"=?ISO-8859-1?Q?J=F6rg?=\" NIL \"joerg\" \"Example.org\")) "
        "((NIL NIL \"s\" \"x\")) ((NIL NIL \"r\" \"x\")) "
        "((NIL NIL \"team\" NIL)(NIL NIL \"bob\" \"example.com\")(NIL NIL NIL NIL)) "
        "NIL NIL \"<parent@x>\" {10}\r\n<\"me\"@x.y>)";
    pi_sort_msg m = {.seq = 3, .id = 30, .size = 10, .arrival = 5};
    assert_int_equal(pi_sort_msg_fill(&m, env, strlen(env), NULL), 0);
    assert_int_equal(m.date, 760168345); /* 1994-02-02 05:52:25 UTC */
    assert_string_equal(m.subject, "HELLO \"THERE\"");
    assert_true(m.refwd);
    assert_string_equal(m.from, "JOERG");
    assert_string_equal(m.dfrom, "J\xc3\xb6RG");
    assert_string_equal(m.to, "BOB"); /* the group marker is not an address */
    assert_string_equal(m.dto, "BOB@EXAMPLE.COM");
    assert_string_equal(m.cc, "");
    assert_string_equal(m.msgid, "me@x.y"); /* quotes normalised away */
    assert_int_equal(m.nrefs, 1);           /* no References: In-Reply-To */
    assert_string_equal(m.refs[0], "parent@x");
    pi_sort_msg_clear(&m);
    /* only the date (SORT (DATE)): the rest is passed over, its strings empty */
    m = (pi_sort_msg){.seq = 3, .id = 30, .size = 10, .arrival = 5};
    assert_int_equal(pi_sort_msg_fill_needed(&m, env, strlen(env), NULL, PI_NEED_DATE), 0);
    assert_int_equal(m.date, 760168345);
    assert_string_equal(m.subject, "");
    assert_string_equal(m.from, "");
    assert_string_equal(m.dto, "");
    assert_null(m.msgid);
    assert_int_equal(m.nrefs, 0);
    pi_sort_msg_clear(&m);
    /* only the addresses, after a literal and quoted strings passed over */
    m = (pi_sort_msg){.arrival = 5};
    assert_int_equal(pi_sort_msg_fill_needed(&m, env, strlen(env), NULL, PI_NEED_ADDRESSES), 0);
    assert_int_equal(m.date, 5);
    assert_string_equal(m.from, "JOERG");
    assert_string_equal(m.dto, "BOB@EXAMPLE.COM");
    assert_null(m.msgid);
    pi_sort_msg_clear(&m);
    pi_sort_crit by = {.keys = {PI_SORT_DATE, PI_SORT_DISPLAYFROM, PI_SORT_ARRIVAL}, .n = 3};
    assert_int_equal(pi_sort_needs(&by), PI_NEED_DATE | PI_NEED_ADDRESSES);

    /* References win over In-Reply-To; the last PI_THREAD_MAX_REFS are kept */
    pu_buf refs = PU_BUF_INIT;
    for (int i = 0; i < PI_THREAD_MAX_REFS + 5; i++)
        pu_buf_printf(&refs, "<r%d@x>\n ", i);
    m = (pi_sort_msg){.arrival = 5};
    assert_int_equal(pi_sort_msg_fill(&m, env, strlen(env), refs.data), 0);
    assert_int_equal(m.nrefs, PI_THREAD_MAX_REFS);
    assert_string_equal(m.refs[0], "r5@x");
    char last[16];
    snprintf(last, sizeof last, "r%d@x", PI_THREAD_MAX_REFS + 4);
    assert_string_equal(m.refs[PI_THREAD_MAX_REFS - 1], last);
    pi_sort_msg_clear(&m);
    pu_buf_free(&refs);

    /* no date, broken text: the arrival is the date, strings are empty */
    const char *bad[] = {"", "(NIL NIL", "(\"x\" \"unterminated", "({99}\r\nshort)", "garbage",
                         /* a time out of range is no date (it overflowed once: found by fuzzing) */
                         "(\"Mon, 2 Nov 2026 2072745096:00:00 +0000\" NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
                         "(\"Mon, 2 Nov 2026 24:00:00 +0000\" NIL NIL NIL NIL NIL NIL NIL NIL NIL)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (pi_sort_msg){.arrival = 42};
        assert_int_equal(pi_sort_msg_fill(&m, bad[i], strlen(bad[i]), NULL), 0);
        assert_int_equal(m.date, 42);
        assert_string_equal(m.from, "");
        assert_string_equal(m.dfrom, "");
        assert_null(m.msgid);
        pi_sort_msg_clear(&m);
    }
}

/* ---- command syntax: through the real command parser ---- */

typedef struct parsed {
    pi_parser *p;
    const pi_command *c;
} parsed;

static parsed parse_line(const char *line)
{
    parsed r = {pi_parser_new(NULL), NULL};
    assert_non_null(r.p);
    size_t used, len = strlen(line);
    pi_status st = pi_parse(r.p, line, len, &used);
    assert_int_equal(st, PI_COMMAND);
    r.c = pi_parser_command(r.p);
    return r;
}

static int sort_rc(const char *line, pi_sort_crit *crit)
{
    parsed r = parse_line(line);
    pi_search *prog = NULL;
    const char *err = NULL;
    pi_sort_crit dummy;
    int rc = pi_sort_parse(r.c->args, r.c->nargs, 5, 50, crit ? crit : &dummy, &prog, &err);
    if (rc == 0)
        assert_non_null(prog);
    else {
        assert_null(prog);
        if (rc == -1)
            assert_non_null(err);
    }
    pi_search_free(prog);
    pi_parser_free(r.p);
    return rc;
}

static int thread_rc(const char *line, pi_thread_alg *alg)
{
    parsed r = parse_line(line);
    pi_search *prog = NULL;
    const char *err = NULL;
    pi_thread_alg dummy;
    int rc = pi_thread_parse(r.c->args, r.c->nargs, 5, 50, alg ? alg : &dummy, &prog, &err);
    assert_true(rc == 0 ? prog != NULL : prog == NULL);
    pi_search_free(prog);
    pi_parser_free(r.p);
    return rc;
}

static void test_syntax(void **state)
{
    (void)state;
    pi_sort_crit c;
    assert_int_equal(sort_rc("a SORT (REVERSE DATE subject) UTF-8 ALL\r\n", &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.keys[0], PI_SORT_DATE);
    assert_true(c.reverse[0]);
    assert_int_equal(c.keys[1], PI_SORT_SUBJECT);
    assert_false(c.reverse[1]);
    assert_false(pi_sort_needs_envelope(&c) == false);
    assert_int_equal(sort_rc("a SORT (ARRIVAL REVERSE SIZE) us-ascii UNSEEN 1:3\r\n", &c), 0);
    assert_false(pi_sort_needs_envelope(&c));
    assert_int_equal(sort_rc("a SORT (DISPLAYFROM DISPLAYTO CC FROM TO) UTF-8 OR SEEN FLAGGED\r\n", &c), 0);
    assert_int_equal(c.n, 5);
    /* errors: BAD, or NO [BADCHARSET] for an unknown charset */
    assert_int_equal(sort_rc("a SORT () UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (REVERSE) UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (BOGUS) UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (\"DATE\") UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT DATE UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (DATE) UTF-8\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (DATE)\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (DATE) UTF-8 CHARSET UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (DATE) UTF-8 NOSUCHKEY\r\n", NULL), -1);
    assert_int_equal(sort_rc("a SORT (DATE) KOI8-R ALL\r\n", NULL), PI_SEARCH_BADCHARSET);
    assert_int_equal(sort_rc("a SORT (DATE) NIL ALL\r\n", NULL), -1);
    /* PI_SORT_MAX_KEYS */
    pu_buf b = PU_BUF_INIT;
    pu_buf_addstr(&b, "a SORT (");
    for (int i = 0; i <= PI_SORT_MAX_KEYS; i++)
        pu_buf_addstr(&b, i ? " SIZE" : "SIZE");
    pu_buf_addstr(&b, ") UTF-8 ALL\r\n");
    assert_int_equal(sort_rc(b.data, NULL), -1);
    pu_buf_free(&b);

    pi_thread_alg alg;
    assert_int_equal(thread_rc("a THREAD REFERENCES UTF-8 ALL\r\n", &alg), 0);
    assert_int_equal(alg, PI_THREAD_REFERENCES);
    assert_int_equal(thread_rc("a THREAD orderedsubject US-ASCII SINCE 1-Feb-1994\r\n", &alg), 0);
    assert_int_equal(alg, PI_THREAD_ORDEREDSUBJECT);
    assert_int_equal(thread_rc("a THREAD REFS UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(thread_rc("a THREAD (REFERENCES) UTF-8 ALL\r\n", NULL), -1);
    assert_int_equal(thread_rc("a THREAD REFERENCES UTF-8\r\n", NULL), -1);
    assert_int_equal(thread_rc("a THREAD REFERENCES X-UNKNOWN ALL\r\n", NULL), PI_SEARCH_BADCHARSET);
}

/* ---- sorting ---- */

static pi_sort_msg mk(uint32_t seq, const char *subject, int64_t date, uint64_t size, int64_t arrival,
                      const char *from)
{
    pi_sort_msg m = {.seq = seq, .id = seq, .size = size, .arrival = arrival, .date = date};
    m.subject = strdup(subject);
    m.from = strdup(from);
    m.to = strdup("");
    m.cc = strdup("");
    m.dfrom = strdup(from);
    m.dto = strdup("");
    assert_true(m.subject && m.from && m.to && m.cc && m.dfrom && m.dto);
    return m;
}

static void sorted(const char *line, pi_sort_msg *msgs, size_t n, const char *want)
{
    pi_sort_crit c;
    assert_int_equal(sort_rc(line, &c), 0);
    pi_sort_msg *v[16];
    for (size_t i = 0; i < n; i++)
        v[n - 1 - i] = &msgs[i]; /* given backwards: the order must not come from the input */
    assert_int_equal(pi_sort_order(&c, v, n), 0);
    char got[128] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), i ? " %u" : "%u", v[i]->id);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", line, got, want);
}

static void test_sort_orders(void **state)
{
    (void)state;
    pi_sort_msg m[6] = {
        mk(1, "B", 300, 10, 5, "ZED"),
        mk(2, "A", 100, 30, 4, "AMY"),
        mk(3, "B", 100, 10, 3, "amy"), /* keys are compared as given: the fill upper-cases */
        mk(4, "", 200, 20, 2, "AMY"),
        mk(5, "A", 300, 30, 1, ""),
        mk(6, "B", 200, 10, 6, "BOB"),
    };
    sorted("a SORT (SUBJECT) UTF-8 ALL\r\n", m, 6, "4 2 5 1 3 6"); /* ties: sequence order */
    sorted("a SORT (REVERSE SUBJECT) UTF-8 ALL\r\n", m, 6, "1 3 6 2 5 4"); /* ties stay ascending */
    sorted("a SORT (DATE) UTF-8 ALL\r\n", m, 6, "2 3 4 6 1 5");
    sorted("a SORT (REVERSE DATE) UTF-8 ALL\r\n", m, 6, "1 5 4 6 2 3");
    sorted("a SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n", m, 6, "4 5 2 1 6 3");
    sorted("a SORT (SIZE) UTF-8 ALL\r\n", m, 6, "1 3 6 4 2 5");
    sorted("a SORT (REVERSE SIZE ARRIVAL) UTF-8 ALL\r\n", m, 6, "5 2 4 3 1 6");
    sorted("a SORT (ARRIVAL) UTF-8 ALL\r\n", m, 6, "5 4 3 2 1 6");
    sorted("a SORT (FROM) UTF-8 ALL\r\n", m, 6, "5 2 4 6 1 3");
    sorted("a SORT (DISPLAYFROM SIZE) UTF-8 ALL\r\n", m, 6, "5 4 2 6 1 3");
    sorted("a SORT (CC TO) UTF-8 ALL\r\n", m, 6, "1 2 3 4 5 6");
    for (int i = 0; i < 6; i++)
        pi_sort_msg_clear(&m[i]);
}

/* ---- threading ---- */

typedef struct tmsg {
    const char *msgid, *refs, *subject;
    int64_t date;
} tmsg;

/* Messages numbered 1.. in the order given, filled through pi_sort_msg_fill from a minimal
 * envelope, as the gateway does. */
static void threads(pi_thread_alg alg, const tmsg *t, size_t n, const char *want)
{
    pi_sort_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
    assert_non_null(msgs);
    for (size_t i = 0; i < n; i++) {
        char env[512];
        snprintf(env, sizeof env, "(NIL \"%s\" NIL NIL NIL NIL NIL NIL NIL %s%s%s)", t[i].subject,
                 t[i].msgid ? "\"" : "", t[i].msgid ? t[i].msgid : "NIL", t[i].msgid ? "\"" : "");
        msgs[i] = (pi_sort_msg){.seq = (uint32_t)(i + 1), .id = (uint32_t)(i + 1) * 10, .arrival = t[i].date};
        assert_int_equal(pi_sort_msg_fill(&msgs[i], env, strlen(env), t[i].refs), 0);
    }
    /* the input order must not matter: hand them over reversed */
    for (size_t i = 0; i < n / 2; i++) {
        pi_sort_msg x = msgs[i];
        msgs[i] = msgs[n - 1 - i];
        msgs[n - 1 - i] = x;
    }
    pu_buf out = PU_BUF_INIT;
    assert_int_equal(pi_thread_write(alg, msgs, n, &out), 0);
    if (strcmp(out.data ? out.data : "", want) != 0)
        fail_msg("threads: got %s, want %s", out.data ? out.data : "", want);
    pu_buf_free(&out);
    for (size_t i = 0; i < n; i++)
        pi_sort_msg_clear(&msgs[i]);
    free(msgs);
}

/* The corpus (ids are ten times the sequence numbers):
 *   1 <1@x>                       "Hello"            100
 *   2 <2@x> refs 1                "Re: Hello"        200
 *   3 <3@x> refs 1 2              "Re: Hello"        300
 *   4 <4@x>                       "Other"            150
 *   5 <5@x> refs 1                "Re: Hello"        250
 *   6 <6@x> refs <gone>           "Lost parent"       50
 *   7 <7@x> refs <gone>           "Re: Lost parent"   60
 *   8 <8@x>                       "Re: Other"        400
 *   9 <2@x> (a duplicate ID)      "Dup"              500
 * REFERENCES, by hand: step 1 gives 1 > (2 > 3, 5), a dummy <gone> > (6, 7), and 4, 8, 9
 * alone (9's ID is taken: it counts as none). Step 3 keeps the dummy (two children at the
 * top). Step 4: dummy (50, from 6), 1 (100), 4 (150), 8 (400), 9 (500). Step 5: 8 "OTHER" is
 * a reply and 4 is not, so 8 goes under 4. Step 6 orders siblings by date: 2 before 5, 6
 * before 7. A dummy has no number: its children follow as nested lists. */
static const tmsg corpus[] = {
    {"<1@x>", NULL, "Hello", 100},
    {"<2@x>", "<1@x>", "Re: Hello", 200},
    {"<3@x>", "<1@x> <2@x>", "Re: Hello", 300},
    {"<4@x>", NULL, "Other", 150},
    {"<5@x>", "<1@x>", "Re: Hello", 250},
    {"<6@x>", "<gone@x>", "Lost parent", 50},
    {"<7@x>", "<gone@x>", "Re: Lost parent", 60},
    {"<8@x>", NULL, "Re: Other", 400},
    {"<2@x>", NULL, "Dup", 500},
};

static void test_thread_references(void **state)
{
    (void)state;
    threads(PI_THREAD_REFERENCES, corpus, 9, "((60)(70))(10 (20 30)(50))(40 80)(90)");
    threads(PI_THREAD_REFERENCES, corpus, 0, "");
    /* A References loop (each names the other) is not followed: 11 found 10 under it. */
    const tmsg loop[] = {{"<a@y>", "<b@y>", "Loop", 10}, {"<b@y>", "<a@y>", "Loop", 20}};
    threads(PI_THREAD_REFERENCES, loop, 2, "(20 10)");
    /* A dummy below a message goes, its child moving up; a top-level dummy with one child
     * goes too. */
    const tmsg prune[] = {{"<p@z>", NULL, "P", 10}, {"<c@z>", "<p@z> <gone@z>", "Re: P", 20},
                          {"<o@z>", "<gone2@z>", "Q", 5}};
    threads(PI_THREAD_REFERENCES, prune, 3, "(30)(10 20)");
    /* Same subject, neither a reply: a new dummy holds both; dates tie, so sequence order. */
    const tmsg same[] = {{"<s1@z>", NULL, "Same", 10}, {"<s2@z>", NULL, "same", 10}, {NULL, NULL, "", 1}};
    threads(PI_THREAD_REFERENCES, same, 3, "(30)((10)(20))");
    /* In-Reply-To when there are no References: the envelope carries it */
}

static void test_thread_orderedsubject(void **state)
{
    (void)state;
    /* By base subject, each thread's messages by date under its first; the threads by the
     * date of their first message: LOST PARENT (50), HELLO (100), OTHER (150), DUP (500). */
    threads(PI_THREAD_ORDEREDSUBJECT, corpus, 9, "(60 70)(10 (20)(50)(30))(40 80)(90)");
    threads(PI_THREAD_ORDEREDSUBJECT, corpus, 0, "");
}

/* A reply chain of 100,000: no recursion, so no stack to run out of. */
static void test_thread_deep_chain(void **state)
{
    (void)state;
    enum { N = 100000 };
    pi_sort_msg *msgs = calloc(N, sizeof *msgs);
    assert_non_null(msgs);
    pu_buf want = PU_BUF_INIT;
    pu_buf_addstr(&want, "(");
    for (int i = 0; i < N; i++) {
        char env[128], refs[32];
        snprintf(env, sizeof env, "(NIL \"Re: chain\" NIL NIL NIL NIL NIL NIL NIL \"<c%d@x>\")", i);
        snprintf(refs, sizeof refs, "<c%d@x>", i - 1);
        msgs[i] = (pi_sort_msg){.seq = (uint32_t)(i + 1), .id = (uint32_t)(i + 1), .arrival = i};
        assert_int_equal(pi_sort_msg_fill(&msgs[i], env, strlen(env), i ? refs : NULL), 0);
        pu_buf_printf(&want, i ? " %d" : "%d", i + 1);
    }
    pu_buf_addstr(&want, ")");
    pu_buf out = PU_BUF_INIT;
    assert_int_equal(pi_thread_write(PI_THREAD_REFERENCES, msgs, N, &out), 0);
    assert_true(strcmp(out.data, want.data) == 0);
    pu_buf_free(&out);
    pu_buf_free(&want);
    for (int i = 0; i < N; i++)
        pi_sort_msg_clear(&msgs[i]);
    free(msgs);
}

/* ---- ESEARCH ---- */

static void esearch_parse(const char *line, int want_rc, unsigned want_opts, size_t want_skip)
{
    parsed r = parse_line(line);
    unsigned opts = 99;
    size_t skip = 99;
    const char *err = NULL;
    int rc = pi_esearch_parse(r.c->args, r.c->nargs, &opts, &skip, &err);
    assert_int_equal(rc, want_rc);
    if (rc == 0) {
        assert_int_equal(opts, want_opts);
        assert_int_equal(skip, want_skip);
    } else {
        assert_non_null(err);
    }
    pi_parser_free(r.p);
}

static void test_esearch(void **state)
{
    (void)state;
    esearch_parse("a SEARCH ALL\r\n", 0, 0, 0);
    esearch_parse("a SEARCH RETURN (MIN max) ALL\r\n", 0, PI_ESEARCH_MIN | PI_ESEARCH_MAX, 2);
    esearch_parse("a SEARCH RETURN () ALL\r\n", 0, PI_ESEARCH_ALL, 2);
    esearch_parse("a SEARCH RETURN (COUNT ALL) CHARSET UTF-8 ALL\r\n", 0, PI_ESEARCH_COUNT | PI_ESEARCH_ALL, 2);
    esearch_parse("a SEARCH RETURN (SAVE) ALL\r\n", -1, 0, 0);
    esearch_parse("a SEARCH RETURN MIN ALL\r\n", -1, 0, 0);
    esearch_parse("a SEARCH RETURN\r\n", -1, 0, 0);

    const uint32_t ids[] = {1, 2, 3, 5, 7, 8, 10};
    pu_buf b = PU_BUF_INIT;
    unsigned all = PI_ESEARCH_MIN | PI_ESEARCH_MAX | PI_ESEARCH_COUNT | PI_ESEARCH_ALL;
    assert_int_equal(pi_esearch_write(&b, "a1", false, all, ids, 7), 0);
    assert_string_equal(b.data, "(TAG \"a1\") MIN 1 MAX 10 COUNT 7 ALL 1:3,5,7:8,10");
    pu_buf_clear(&b);
    assert_int_equal(pi_esearch_write(&b, "t", true, PI_ESEARCH_COUNT | PI_ESEARCH_MAX, ids + 6, 1), 0);
    assert_string_equal(b.data, "(TAG \"t\") UID MAX 10 COUNT 1");
    pu_buf_clear(&b);
    /* nothing matched: only COUNT has anything to say */
    assert_int_equal(pi_esearch_write(&b, "z", true, all, NULL, 0), 0);
    assert_string_equal(b.data, "(TAG \"z\") UID COUNT 0");
    pu_buf_clear(&b);
    assert_int_equal(pi_esearch_write(&b, "z", false, PI_ESEARCH_ALL, NULL, 0), 0);
    assert_string_equal(b.data, "(TAG \"z\")");
    pu_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_subject),       cmocka_unit_test(test_envelope_keys),
        cmocka_unit_test(test_syntax),             cmocka_unit_test(test_sort_orders),
        cmocka_unit_test(test_thread_references),  cmocka_unit_test(test_thread_orderedsubject),
        cmocka_unit_test(test_thread_deep_chain),  cmocka_unit_test(test_esearch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
