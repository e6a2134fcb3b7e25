/* imap: command parser (fed whole, byte by byte and in random slices), limits and recovery,
 * sequence sets, response strings, modified UTF-7 and dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "imap/imap.h"

/* ---- a driver that turns a byte stream into an event log ---- */

static void dump_arg(pu_buf *b, const pi_arg *a)
{
    switch (a->type) {
    case PI_ATOM:
    case PI_NIL:
        pu_buf_add(b, a->str, a->len);
        break;
    case PI_QUOTED:
        pu_buf_addstr(b, "\"");
        pu_buf_add(b, a->str, a->len);
        pu_buf_addstr(b, "\"");
        break;
    case PI_LITERAL:
        pu_buf_printf(b, "{%zu%s}", a->len, a->nonsync ? "+" : "");
        pu_buf_add(b, a->str, a->len);
        break;
    case PI_LIST:
        pu_buf_addstr(b, "(");
        for (size_t i = 0; i < a->count; i++) {
            if (i)
                pu_buf_addstr(b, "|");
            dump_arg(b, &a->list[i]);
        }
        pu_buf_addstr(b, ")");
        break;
    }
}

static void dump_cmd(pu_buf *b, const pi_command *c)
{
    pu_buf_printf(b, "%s %s:", c->tag, c->name);
    for (size_t i = 0; i < c->nargs; i++) {
        pu_buf_addstr(b, i ? "|" : " ");
        dump_arg(b, &c->args[i]);
    }
    pu_buf_addstr(b, "\n");
}

static unsigned rnd_state;
static unsigned rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) & 0x7fff;
}

enum { WHOLE, BYTES, RANDOM };

/* Feeds in according to mode; AUTHENTICATE without an initial response and IDLE are
 * followed by one raw line, as a server would read them. */
static char *run(const pi_limits *lim, const char *in, size_t len, int mode)
{
    pi_parser *p = pi_parser_new(lim);
    assert_non_null(p);
    pu_buf log = PU_BUF_INIT;
    pu_buf_addstr(&log, "");
    size_t pos = 0;
    bool dead = false;
    while (pos < len && !dead) {
        size_t n = mode == WHOLE ? len - pos : mode == BYTES ? 1 : 1 + rnd() % 17;
        if (n > len - pos)
            n = len - pos;
        size_t off = 0;
        while (off < n) {
            size_t used = 12345;
            pi_status st = pi_parse(p, in + pos + off, n - off, &used);
            assert_true(used <= n - off);
            off += used;
            if (st == PI_NEED_MORE) {
                assert_int_equal(off, n);
                break;
            }
            if (st == PI_CONTINUE) {
                pu_buf_addstr(&log, "+\n");
            } else if (st == PI_COMMAND) {
                const pi_command *c = pi_parser_command(p);
                assert_non_null(c);
                dump_cmd(&log, c);
                if ((strcmp(c->verb, "AUTHENTICATE") == 0 && c->nargs == 1) || strcmp(c->verb, "IDLE") == 0)
                    assert_int_equal(pi_parser_read_line(p), 0);
            } else if (st == PI_LINE) {
                size_t ll;
                const char *l = pi_parser_line(p, &ll);
                assert_non_null(l);
                assert_int_equal(strlen(l), ll);
                pu_buf_printf(&log, "LINE %s\n", l);
            } else {
                const pi_error *e = pi_parser_error(p);
                assert_non_null(e);
                pu_buf_printf(&log, "ERR %s %s%s\n", e->tag ? e->tag : "*", e->msg, e->fatal ? " FATAL" : "");
                if (e->fatal) {
                    size_t u2 = 1;
                    assert_int_equal(pi_parse(p, "x", 1, &u2), PI_ERROR);
                    assert_int_equal(u2, 0);
                    dead = true;
                    break;
                }
            }
        }
        pos += n;
    }
    pi_parser_free(p);
    return log.data;
}

/* The same log whole, byte by byte and in 40 random slicings. */
static void check_lim(const pi_limits *lim, const char *in, size_t len, const char *want)
{
    char *got = run(lim, in, len, WHOLE);
    if (strcmp(got, want) != 0)
        fail_msg("input:\n%.*s\nwant:\n%s\ngot:\n%s", (int)len, in, want, got);
    free(got);
    got = run(lim, in, len, BYTES);
    assert_string_equal(got, want);
    free(got);
    for (unsigned seed = 1; seed <= 40; seed++) {
        rnd_state = seed;
        got = run(lim, in, len, RANDOM);
        assert_string_equal(got, want);
        free(got);
    }
}

static void check(const char *in, const char *want)
{
    check_lim(NULL, in, strlen(in), want);
}

/* ---- what real clients send ---- */

static void test_thunderbird(void **state)
{
    (void)state;
    check("1 AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\n2 STARTTLS\r\n3 capability\r\n",
          "1 AUTHENTICATE: PLAIN\nLINE AHVzZXIAcGFzcw==\n2 STARTTLS:\n3 CAPABILITY:\n");
    check("4 namespace\r\n5 ID (\"name\" \"Thunderbird\" \"version\" \"153.0\")\r\n",
          "4 NAMESPACE:\n5 ID: (\"name\"|\"Thunderbird\"|\"version\"|\"153.0\")\n");
    check("6 LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n7 list \"\" \"INBOX\"\r\n",
          "6 LIST: (SUBSCRIBED)|\"\"|\"*\"|RETURN|(SPECIAL-USE)\n7 LIST: \"\"|\"INBOX\"\n");
    check("8 STATUS \"Drafts\" (UIDNEXT MESSAGES UNSEEN RECENT)\r\n9 select \"INBOX\"\r\n",
          "8 STATUS: \"Drafts\"|(UIDNEXT|MESSAGES|UNSEEN|RECENT)\n9 SELECT: \"INBOX\"\n");
    check("10 UID fetch 1:* (FLAGS)\r\n", "10 UID FETCH: 1:*|(FLAGS)\n");
    const char *hdr = "11 UID fetch 1:42 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject "
                      "Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type "
                      "Reply-To Received)])\r\n";
    check(hdr, "11 UID FETCH: 1:42|(UID|RFC822.SIZE|FLAGS|BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
               "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To "
               "Received)])\n");
    check("12 UID fetch 42 (UID RFC822.SIZE FLAGS BODY.PEEK[TEXT]<0.2048>)\r\n13 noop\r\n",
          "12 UID FETCH: 42|(UID|RFC822.SIZE|FLAGS|BODY.PEEK[TEXT]<0.2048>)\n13 NOOP:\n");
    check("14 UID fetch 43:* (FLAGS)\r\n15 IDLE\r\nDONE\r\n16 UID fetch 1:42 (UID RFC822.SIZE BODY.PEEK[])\r\n",
          "14 UID FETCH: 43:*|(FLAGS)\n15 IDLE:\nLINE DONE\n16 UID FETCH: 1:42|(UID|RFC822.SIZE|BODY.PEEK[])\n");
    check("17 uid store 5 +FLAGS (\\Seen)\r\n", "17 UID STORE: 5|+FLAGS|(\\Seen)\n");
    check("18 APPEND \"Sent\" (\\Seen) {21}\r\nSubject: hi\r\n\r\nbody\r\n\r\n",
          "+\n18 APPEND: \"Sent\"|(\\Seen)|{21}Subject: hi\r\n\r\nbody\r\n\n");
}

static void test_mbsync_pipelined(void **state)
{
    (void)state;
    check("1 AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n2 NAMESPACE\r\n3 LIST \"\" \"*\"\r\n4 SELECT \"INBOX\"\r\n"
          "5 UID FETCH 1:20 (UID FLAGS)\r\n6 UID FETCH 3 (BODY.PEEK[])\r\n7 UID FETCH 4 (BODY.PEEK[])\r\n"
          "8 LOGOUT\r\n",
          "1 AUTHENTICATE: PLAIN|AHVzZXIAcGFzcw==\n2 NAMESPACE:\n3 LIST: \"\"|\"*\"\n4 SELECT: \"INBOX\"\n"
          "5 UID FETCH: 1:20|(UID|FLAGS)\n6 UID FETCH: 3|(BODY.PEEK[])\n7 UID FETCH: 4|(BODY.PEEK[])\n8 LOGOUT:\n");
}

static void test_offlineimap_mutt_fetchmail(void **state)
{
    (void)state;
    check("A1 AUTHENTICATE PLAIN\r\n*\r\nA2 LIST \"\" \"\"\r\nA3 EXAMINE INBOX\r\n"
          "A4 FETCH 1:* (FLAGS UID INTERNALDATE)\r\n",
          "A1 AUTHENTICATE: PLAIN\nLINE *\nA2 LIST: \"\"|\"\"\nA3 EXAMINE: INBOX\n"
          "A4 FETCH: 1:*|(FLAGS|UID|INTERNALDATE)\n");
    check("a0001 ENABLE UTF8=ACCEPT\r\na0002 FETCH 1:9 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
          "(DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO "
          "REPLY-TO LINES LIST-POST X-LABEL)])\r\n",
          "a0001 ENABLE: UTF8=ACCEPT\na0002 FETCH: 1:9|(UID|FLAGS|INTERNALDATE|RFC822.SIZE|BODY.PEEK[HEADER.FIELDS "
          "(DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO "
          "REPLY-TO LINES LIST-POST X-LABEL)])\n");
    check("a0003 UID FETCH 7 BODY.PEEK[]\r\na0004 UID STORE 7 +FLAGS.SILENT (\\Seen)\r\na0005 CLOSE\r\n",
          "a0003 UID FETCH: 7|BODY.PEEK[]\na0004 UID STORE: 7|+FLAGS.SILENT|(\\Seen)\na0005 CLOSE:\n");
    check("A0001 LOGIN \"user\" \"p\\\"a\\\\ss\"\r\nA0002 FETCH 1:3 RFC822.SIZE\r\nA0003 FETCH 1 RFC822.HEADER\r\n"
          "A0004 FETCH 1 BODY.PEEK[TEXT]\r\nA0005 STORE 1 +FLAGS (\\Seen)\r\nA0006 SEARCH UNSEEN UNDELETED\r\n",
          "A0001 LOGIN: \"user\"|\"p\"a\\ss\"\nA0002 FETCH: 1:3|RFC822.SIZE\nA0003 FETCH: 1|RFC822.HEADER\n"
          "A0004 FETCH: 1|BODY.PEEK[TEXT]\nA0005 STORE: 1|+FLAGS|(\\Seen)\nA0006 SEARCH: UNSEEN|UNDELETED\n");
}

static void test_curl_python(void **state)
{
    (void)state;
    check("A003 UID FETCH 1 BODY[]\r\nA004 SEARCH ALL\r\n", "A003 UID FETCH: 1|BODY[]\nA004 SEARCH: ALL\n");
    /* imaplib sends non-ASCII search text as a literal. */
    check("ABCD5 UID SEARCH CHARSET UTF-8 SUBJECT {8}\r\nEntw\xc3\xbc" "rf\r\n",
          "+\nABCD5 UID SEARCH: CHARSET|UTF-8|SUBJECT|{8}Entw\xc3\xbcrf\n");
    check("ABCD6 LOGIN user {4+}\r\npass\r\n", "ABCD6 LOGIN: user|{4+}pass\n");
}

/* ---- literals ---- */

static void test_literals(void **state)
{
    (void)state;
    check("a LOGIN {4}\r\nuser {4}\r\npass\r\n", "+\n+\na LOGIN: {4}user|{4}pass\n");
    check("a LOGIN {4+}\r\nuser {4+}\r\npass\r\n", "a LOGIN: {4+}user|{4+}pass\n");
    check("a LOGIN {0}\r\n {0+}\r\n\r\n", "+\na LOGIN: {0}|{0+}\n");
    /* Literal data is data: CRLF, NUL and command-looking bytes inside are not parsed. */
    check_lim(NULL, "a X ({12}\r\nb LOGOUT\r\n\0Z)\r\n", 27, "+\na X: ({12}b LOGOUT\r\n\0Z)\n");
    /* A literal must be followed by a space, ")" or the end of the line. After the error the
     * announced {3+} is skipped; after a {3} the client waits, so what follows is new. */
    check("a X {3}\r\nabc{3+}\r\nxyz\r\nb NOOP\r\n", "+\nERR a Missing space between arguments\nb NOOP:\n");
    check("a X {3}\r\nabc{3}\r\nb NOOP\r\n", "+\nERR a Missing space between arguments\nb NOOP:\n");
}

static void test_literal_continue_timing(void **state)
{
    (void)state;
    pi_parser *p = pi_parser_new(NULL);
    assert_non_null(p);
    const char *in = "a1 LOGIN {4}\r\nuser {2}\r\npw\r\n";
    size_t used;
    /* The "+" is due right after the size line, before any literal byte is consumed. */
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_CONTINUE);
    assert_int_equal(used, 14);
    assert_int_equal(pi_parser_literal_size(p), 4);
    assert_string_equal(pi_parser_tag(p), "a1");
    size_t off = used;
    assert_int_equal(pi_parse(p, in + off, strlen(in) - off, &used), PI_CONTINUE);
    assert_int_equal(pi_parser_literal_size(p), 2);
    off += used;
    assert_int_equal(pi_parse(p, in + off, strlen(in) - off, &used), PI_COMMAND);
    off += used;
    assert_int_equal(off, strlen(in));
    const pi_command *c = pi_parser_command(p);
    assert_int_equal(c->nargs, 2);
    assert_int_equal(c->args[1].type, PI_LITERAL);
    assert_false(c->args[1].nonsync);
    assert_string_equal(c->args[1].str, "pw");

    /* Refusing a literal: the client will not send it; the next line is a new command. */
    in = "a2 APPEND INBOX {999}\r\na3 NOOP\r\n";
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_CONTINUE);
    assert_int_equal(pi_parser_literal_size(p), 999);
    pi_parser_reject_literal(p);
    off = used;
    assert_int_equal(pi_parse(p, in + off, strlen(in) - off, &used), PI_COMMAND);
    assert_string_equal(pi_parser_command(p)->tag, "a3");
    pi_parser_free(p);
}

static void test_nested_lists(void **state)
{
    (void)state;
    check("a X (1 (2 (3 \"4\")) () NIL nil) (a)\r\n", "a X: (1|(2|(3|\"4\"))|()|NIL|nil)|(a)\n");
    check("a X ((((((((((((((((x))))))))))))))))\r\n", "a X: ((((((((((((((((x))))))))))))))))\n");
    check("a X (((((((((((((((((x)))))))))))))))))\r\nb NOOP\r\n",
          "ERR a Lists nested too deeply\nb NOOP:\n");
    check("a X ( a )\r\n", "a X: (a)\n");

    pi_parser *p = pi_parser_new(NULL);
    const char *in = "t x (a (b c) \"d\" {1+}\r\ne NIL) f\r\n";
    size_t used;
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_COMMAND);
    const pi_command *c = pi_parser_command(p);
    assert_string_equal(c->tag, "t");
    assert_string_equal(c->name, "X");
    assert_false(c->uid);
    assert_int_equal(c->nargs, 2);
    const pi_arg *l = &c->args[0];
    assert_int_equal(l->type, PI_LIST);
    assert_int_equal(l->count, 5);
    assert_int_equal(l->list[0].type, PI_ATOM);
    assert_int_equal(l->list[1].type, PI_LIST);
    assert_int_equal(l->list[1].count, 2);
    assert_string_equal(l->list[1].list[1].str, "c");
    assert_int_equal(l->list[2].type, PI_QUOTED);
    assert_int_equal(l->list[3].type, PI_LITERAL);
    assert_true(l->list[3].nonsync);
    assert_int_equal(l->list[4].type, PI_NIL);
    assert_true(pi_arg_atom_is(&c->args[1], "F"));
    const char *s;
    size_t n;
    assert_true(pi_arg_astring(&l->list[0], &s, &n));
    assert_false(pi_arg_string(&l->list[0], &s, &n));
    assert_true(pi_arg_string(&l->list[3], &s, &n));
    assert_int_equal(n, 1);
    assert_true(pi_arg_nstring(&l->list[4], &s, &n));
    assert_null(s);
    assert_false(pi_arg_astring(l, &s, &n));
    pi_parser_free(p);
}

/* ---- malformed input and recovery ---- */

static void test_malformed(void **state)
{
    (void)state;
    check("a X (b\r\nz NOOP\r\n", "ERR a Unbalanced parentheses: missing ')'\nz NOOP:\n");
    check("a X b)\r\nz NOOP\r\n", "ERR a Unexpected ')'\nz NOOP:\n");
    check("a X {12\r\nz NOOP\r\n", "ERR a Invalid literal syntax\nz NOOP:\n");
    check("a X {-1}\r\nz NOOP\r\n", "ERR a Invalid literal syntax\nz NOOP:\n");
    check("a X {}\r\nz NOOP\r\n", "ERR a Invalid literal syntax\nz NOOP:\n");
    check("a X {1+x}\r\nz NOOP\r\n", "ERR a Invalid literal syntax\nz NOOP:\n");
    check("a X {3} \r\nz NOOP\r\n", "ERR a Literal size must end the line\nz NOOP:\n");
    check("a X {99999999999}\r\nz NOOP\r\n", "ERR a Literal size out of range\nz NOOP:\n");
    check(" NOOP\r\nz NOOP\r\n", "ERR * Missing or invalid tag\nz NOOP:\n");
    check("\r\nz NOOP\r\n", "ERR * Empty command line\nz NOOP:\n");
    check("\nz NOOP\n", "ERR * Empty command line\nz NOOP:\n");
    check("a\r\nz NOOP\r\n", "ERR a Missing command\nz NOOP:\n");
    check("a \r\nz NOOP\r\n", "ERR a Missing command\nz NOOP:\n");
    check("a+b NOOP\r\nz NOOP\r\n", "ERR * Invalid character in tag\nz NOOP:\n");
    check("a UID\r\nz NOOP\r\n", "ERR a Missing command after UID\nz NOOP:\n");
    check("a UID \r\nz NOOP\r\n", "ERR a Missing command after UID\nz NOOP:\n");
    check("a X \"b\\c\"\r\nz NOOP\r\n", "ERR a Invalid escape in quoted string\nz NOOP:\n");
    check("a X \"bc\r\nz NOOP\r\n", "ERR a Unterminated quoted string\nz NOOP:\n");
    check("a X \"b\"\"c\"\r\nz NOOP\r\n", "ERR a Missing space between arguments\nz NOOP:\n");
    check("a X b\"c\"\r\nz NOOP\r\n", "ERR a Missing space between arguments\nz NOOP:\n");
    check("a X (b)(c)\r\nz NOOP\r\n", "ERR a Missing space between arguments\nz NOOP:\n");
    check("a X b\rc\r\nz NOOP\r\n", "ERR a CR not followed by LF\nz NOOP:\n");
    check("a X b\r c\r\nz NOOP\r\n", "ERR a CR not followed by LF\nz NOOP:\n");
    check("a X \x01\r\nz NOOP\r\n", "ERR a Invalid character in command\nz NOOP:\n");
    check("a X b\xc3\xbc\r\nz NOOP\r\n", "ERR a Invalid character in atom\nz NOOP:\n");
    check("a X\xc3\xbc\r\nz NOOP\r\n", "ERR a Invalid character in command name\nz NOOP:\n");
    check_lim(NULL, "a X b\0c\r\nz NOOP\r\n", 17, "ERR a NUL byte in command\nz NOOP:\n");
    check_lim(NULL, "a X \"b\0c\"\r\nz NOOP\r\n", 19, "ERR a NUL byte in command\nz NOOP:\n");
    /* 8-bit (UTF-8) is fine in a quoted string. */
    check("a SELECT \"Entw\xc3\xbcrfe\"\r\n", "a SELECT: \"Entw\xc3\xbcrfe\"\n");
    /* A bare LF ends a line too; runs of spaces are tolerated; a trailing space as well. */
    check("a  X  b   c \nz NOOP\n", "a X: b|c\nz NOOP:\n");
    /* Brackets are plain atom characters outside FETCH, and need closing inside it. */
    check("a SELECT [Gmail]/Sent\r\nb SELECT foo[bar\r\n", "a SELECT: [Gmail]/Sent\nb SELECT: foo[bar\n");
    check("a FETCH 1 BODY[HEADER\r\nz NOOP\r\n", "ERR a Missing ']' in FETCH attribute\nz NOOP:\n");
    check("a FETCH 1 (BODY[HEADER.FIELDS (\"X]\" Y)] FLAGS)\r\n", "a FETCH: 1|(BODY[HEADER.FIELDS (\"X]\" Y)]|FLAGS)\n");
    check("a FETCH 1 BODY[{3}\r\nz NOOP\r\n", "ERR a Literal inside FETCH section not supported\nz NOOP:\n");
}

/* ---- limits ---- */

static pi_limits small(void)
{
    pi_limits l;
    pi_limits_default(&l);
    l.max_line = 40;
    l.max_literal = 10;
    l.max_append_literal = 100;
    l.max_depth = 2;
    l.max_args = 5;
    l.max_tag = 4;
    return l;
}

static void check_small(const char *in, const char *want)
{
    pi_limits l = small();
    check_lim(&l, in, strlen(in), want);
}

static void test_limits(void **state)
{
    (void)state;
    pi_limits d;
    pi_limits_default(&d);
    assert_int_equal(d.max_line, 65536);
    assert_int_equal(d.max_literal, 65536);
    assert_int_equal(d.max_append_literal, 64 * 1024 * 1024);
    assert_int_equal(d.max_depth, 16);
    assert_int_equal(d.max_args, 10000);
    assert_int_equal(d.max_tag, 64);

    /* Line length: literal data does not count, the line segments around it do. */
    check_small("a X 0123456789012345678901234567890123456\r\nz NOOP\r\n",
                "ERR a Command line too long\nz NOOP:\n");
    check_small("a X 012345678901234567890123456789012345\r\n", "a X: 012345678901234567890123456789012345\n");
    check_small("a X {10}\r\n0123456789 0123456789012345678901234\r\n",
                "+\na X: {10}0123456789|0123456789012345678901234\n");
    check_small("a X {10}\r\n0123456789 01234567890123456789012345678901\r\nz NOOP\r\n",
                "+\nERR a Command line too long\nz NOOP:\n");
    check_small("abcd NOOP\r\nabcde NOOP\r\nz NOOP\r\n", "abcd NOOP:\nERR * Tag too long\nz NOOP:\n");
    check_small("a X (( a ))\r\na X (((a)))\r\nz NOOP\r\n", "a X: ((a))\nERR a Lists nested too deeply\nz NOOP:\n");
    check_small("a X 1 2 3 4 5\r\na X 1 2 3 (4 5)\r\nz NOOP\r\n",
                "a X: 1|2|3|4|5\nERR a Too many arguments\nz NOOP:\n");
    check_small("a X 1 2 3 4 {1+}\r\nx\r\nz NOOP\r\n", "a X: 1|2|3|4|{1+}x\nz NOOP:\n");
    check_small("a X 1 2 3 4 5 {1+}\r\nx\r\nz NOOP\r\n", "ERR a Too many arguments\nz NOOP:\n");
    check_small("a X 1 2 3 4 5 {1}\r\nz NOOP\r\n", "ERR a Too many arguments\nz NOOP:\n");
    check_small("a NAME45678901234567890123456789012 x\r\nz NOOP\r\n", "ERR a Command name too long\nz NOOP:\n");

    /* Literal caps: per command, all literals together; APPEND gets the bigger one. */
    check_small("a X {10}\r\n0123456789\r\n", "+\na X: {10}0123456789\n");
    check_small("a X {11}\r\nz NOOP\r\n", "ERR a Literal too big\nz NOOP:\n");
    check_small("a X {5}\r\n01234 {6}\r\nz NOOP\r\n", "+\nERR a Literal too big\nz NOOP:\n");
    check_small("a APPEND I {50}\r\n01234567890123456789012345678901234567890123456789\r\n",
                "+\na APPEND: I|{50}01234567890123456789012345678901234567890123456789\n");
    check_small("a APPEND I {101}\r\nz NOOP\r\n", "ERR a Literal too big\nz NOOP:\n");
    /* A refused non-synchronising literal: its bytes are on the way, read and dropped with
     * the rest of the command (and any further literal of it), then the session goes on. */
    check_small("a X {11+}\r\n01234567890\r\nz NOOP\r\n", "ERR a Literal too big\nz NOOP:\n");
    check_small("a APPEND I {101+}\r\n"
                "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789X"
                " {3+}\r\nabc\r\nz NOOP\r\n",
                "ERR a Literal too big\nz NOOP:\n");
    check_small("a X {5}\r\n01234 {6+}\r\nz NOOP\r\nz NOOP\r\n", "+\nERR a Literal too big\nz NOOP:\n");
    check("a X {99999999999+}\r\nz NOOP\r\n", "ERR a Literal size out of range FATAL\n");
}

/* After a bad line, a non-synchronising literal that line announced must be skipped, never
 * read as commands, whatever its size; one whose size cannot be known ends the connection. */
static void test_recovery_skips_literals(void **state)
{
    (void)state;
    check("a X ) {10+}\r\nb LOGOUT\r\n {3+}\r\nc D\r\nz NOOP\r\n", "ERR a Unexpected ')'\nz NOOP:\n");
    check("a X ) {10}\r\nz NOOP\r\n", "ERR a Unexpected ')'\nz NOOP:\n");
    check_small("a X 0123456789012345678901234567890123456789 {10+}\r\nb LOGOUT\r\n\r\nz NOOP\r\n",
                "ERR a Command line too long\nz NOOP:\n");
    check_small("a X ) {101+}\r\n"
                "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789X"
                "\r\nz NOOP\r\n",
                "ERR a Unexpected ')'\nz NOOP:\n");
    check("a X ) {0000000000000000000000000000001+}\r\nz NOOP\r\n",
          "ERR a Unexpected ')'\nERR a Non-synchronizing literal too big FATAL\n");
    /* Digits past what the tail keeps: the size cannot be known, so it cannot be skipped. */
    check("a X (123456789012345678901234+}\r\nz NOOP\r\n",
          "ERR a Unbalanced parentheses: missing ')'\nERR a Non-synchronizing literal too big FATAL\n");
    /* A quoted string that merely ends in something literal-like at the end of a good line. */
    check("a X \"{3+}\"\r\nz NOOP\r\n", "a X: \"{3+}\"\nz NOOP:\n");
}

static void test_raw_lines(void **state)
{
    (void)state;
    check("1 AUTHENTICATE PLAIN\r\n\r\n2 NOOP\r\n", "1 AUTHENTICATE: PLAIN\nLINE \n2 NOOP:\n");
    check("1 IDLE\r\ndone\n2 NOOP\r\n", "1 IDLE:\nLINE done\n2 NOOP:\n");
    /* A raw line is not parsed: literal-looking text in it means nothing. */
    check("1 IDLE\r\nx {5+}\r\n2 NOOP\r\n", "1 IDLE:\nLINE x {5+}\n2 NOOP:\n");
    check_lim(NULL, "1 IDLE\r\nDO\0NE\r\n2 NOOP\r\n", 23, "1 IDLE:\nERR * NUL byte in line\n2 NOOP:\n");
    check_small("1 IDLE\r\n01234567890123456789012345678901234567890 {3+}\r\n2 NOOP\r\n",
                "1 IDLE:\nERR * Command line too long\n2 NOOP:\n");

    pi_parser *p = pi_parser_new(NULL);
    size_t used;
    assert_int_equal(pi_parser_read_line(p), 0);
    assert_int_equal(pi_parse(p, "abc\r\n", 5, &used), PI_LINE);
    size_t n;
    assert_string_equal(pi_parser_line(p, &n), "abc");
    assert_null(pi_parser_command(p));
    assert_int_equal(pi_parse(p, "a NOO", 5, &used), PI_NEED_MORE);
    assert_int_equal(pi_parser_read_line(p), -1); /* not at a command boundary */
    assert_null(pi_parser_line(p, &n));
    pi_parser_free(p);
}

static bool all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i])
            return false;
    return true;
}

/* A LOGIN password (quoted or a literal) and an AUTHENTICATE response are zeroed when the
 * caller wipes the command, and when the next command reuses the store. */
static void test_passwords_wiped(void **state)
{
    (void)state;
    static const char *const logins[] = {
        "a LOGIN user \"secret password\"\r\n",
        "a LOGIN user {15+}\r\nsecret password\r\n",
        "a LOGIN user secret-password\r\n",
    };
    for (size_t i = 0; i < sizeof logins / sizeof logins[0]; i++) {
        pi_parser *p = pi_parser_new(NULL);
        size_t used;
        assert_int_equal(pi_parse(p, logins[i], strlen(logins[i]), &used), PI_COMMAND);
        const pi_command *c = pi_parser_command(p);
        const char *pw = c->args[1].str;
        size_t n = c->args[1].len;
        assert_int_equal(n, 15);
        assert_memory_equal(pw, "secret", 6);
        pi_parser_wipe(p);
        assert_true(all_zero(pw, n));
        pi_parser_free(p);
    }
    /* without an explicit wipe: the next command's turn wipes the store it reuses (the
     * store is not reallocated for a short command, so the old bytes can be looked at) */
    pi_parser *p = pi_parser_new(NULL);
    size_t used;
    const char *in = "a LOGIN user \"secret password\"\r\n";
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_COMMAND);
    const char *pw = pi_parser_command(p)->args[1].str;
    assert_int_equal(pi_parse(p, "b", 1, &used), PI_NEED_MORE);
    assert_true(all_zero(pw, 15));
    pi_parser_free(p);
    /* an AUTHENTICATE PLAIN response line */
    p = pi_parser_new(NULL);
    in = "a AUTHENTICATE PLAIN\r\n";
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_COMMAND);
    assert_int_equal(pi_parser_read_line(p), 0);
    in = "AHVzZXIAc2VjcmV0IHBhc3N3b3Jk\r\n";
    assert_int_equal(pi_parse(p, in, strlen(in), &used), PI_LINE);
    size_t n;
    const char *line = pi_parser_line(p, &n);
    assert_int_equal(n, 28);
    pi_parser_wipe(p);
    assert_true(all_zero(line, n));
    pi_parser_free(p);
}

static void test_error_reply(void **state)
{
    (void)state;
    pu_buf b = PU_BUF_INIT;
    pi_error e = {PI_ERR_SYNTAX, "a1", "Unexpected ')'", false};
    assert_int_equal(pi_error_reply(&e, &b), 0);
    assert_string_equal(b.data, "a1 BAD Unexpected ')'\r\n");
    pu_buf_clear(&b);
    e = (pi_error){PI_ERR_TAG_TOO_LONG, NULL, "Tag too long", false};
    pi_error_reply(&e, &b);
    assert_string_equal(b.data, "* BAD Tag too long\r\n");
    pu_buf_clear(&b);
    e = (pi_error){PI_ERR_LITERAL_TOO_BIG, "a", "Literal too big", false};
    pi_error_reply(&e, &b);
    assert_string_equal(b.data, "a NO [TOOBIG] Literal too big\r\n");
    pu_buf_clear(&b);
    e = (pi_error){PI_ERR_LITERAL_TOO_BIG, "a", "Non-synchronizing literal too big", true};
    pi_error_reply(&e, &b);
    assert_string_equal(b.data, "a BAD [TOOBIG] Non-synchronizing literal too big\r\n"
                                "* BYE Non-synchronizing literal too big\r\n");
    pu_buf_free(&b);
}

/* A big APPEND arrives in pieces; the store grows with it and shrinks back afterwards. */
static void test_big_append(void **state)
{
    (void)state;
    pi_parser *p = pi_parser_new(NULL);
    size_t len = 5 * 1024 * 1024;
    char *msg = malloc(len);
    assert_non_null(msg);
    for (size_t i = 0; i < len; i++)
        msg[i] = (char)(i * 7);
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "A APPEND INBOX (\\Seen) \"1-Feb-1994 00:00:00 +0000\" {%zu+}\r\n", len);
    size_t used;
    assert_int_equal(pi_parse(p, hdr, (size_t)hl, &used), PI_NEED_MORE);
    for (size_t off = 0; off < len; off += 65536)
        assert_int_equal(pi_parse(p, msg + off, 65536, &used), PI_NEED_MORE);
    assert_int_equal(pi_parse(p, "\r\n", 2, &used), PI_COMMAND);
    const pi_command *c = pi_parser_command(p);
    assert_string_equal(c->verb, "APPEND");
    assert_int_equal(c->nargs, 4);
    assert_int_equal(c->args[3].len, len);
    assert_memory_equal(c->args[3].str, msg, len);
    assert_int_equal(pi_parse(p, "B NOOP\r\n", 8, &used), PI_COMMAND);
    free(msg);
    pi_parser_free(p);
}

/* A {n+} APPEND over the cap is read and dropped, never held: a literal of 1 GiB passes
 * through a parser whose process may not map more than 512 MiB, answered NO [TOOBIG], and
 * the session goes on with a MULTIAPPEND's further literals skipped too. */
static void test_append_discard_bounded(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan reserves terabytes of address space: the limit would stop it */
#else
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
    struct rlimit lim = old;
    lim.rlim_cur = 512u << 20;
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur)
        lim.rlim_cur = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
    pi_limits l;
    pi_limits_default(&l);
    l.max_append_literal = 1u << 20;
    pi_parser *p = pi_parser_new(&l);
    assert_non_null(p);
    size_t chunk = 1u << 20;
    char *buf = calloc(1, chunk);
    assert_non_null(buf);
    const char *hdr = "A1 APPEND Drafts (\\Draft) {1073741824+}\r\n";
    size_t used;
    assert_int_equal(pi_parse(p, hdr, strlen(hdr), &used), PI_ERROR);
    const pi_error *e = pi_parser_error(p);
    assert_int_equal(e->kind, PI_ERR_LITERAL_TOO_BIG);
    assert_false(e->fatal);
    assert_string_equal(e->tag, "A1");
    size_t off = used;
    while (off < strlen(hdr)) { /* the rest of the line after the error */
        pi_status st = pi_parse(p, hdr + off, strlen(hdr) - off, &used);
        assert_int_equal(st, PI_NEED_MORE);
        off += used;
    }
    for (size_t k = 0; k < 1024; k++) {
        assert_int_equal(pi_parse(p, buf, chunk, &used), PI_NEED_MORE);
        assert_int_equal(used, chunk);
    }
    const char *tail = " {5+}\r\nabcde\r\nA2 NOOP\r\n";
    off = 0;
    pi_status st;
    do {
        st = pi_parse(p, tail + off, strlen(tail) - off, &used);
        off += used;
    } while (st == PI_NEED_MORE && off < strlen(tail));
    assert_int_equal(st, PI_COMMAND);
    assert_string_equal(pi_parser_command(p)->tag, "A2");
    assert_string_equal(pi_parser_command(p)->verb, "NOOP");
    free(buf);
    pi_parser_free(p);
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
#endif
}

/* Parses one command (whole) and its APPEND arguments after the mailbox. */
static int append_args(const char *in, pi_append_msg *out, size_t max, size_t *n, const char **err)
{
    pi_parser *p = pi_parser_new(NULL);
    size_t used, off = 0;
    pi_status st;
    while ((st = pi_parse(p, in + off, strlen(in) - off, &used)) == PI_CONTINUE)
        off += used;
    assert_int_equal(st, PI_COMMAND);
    const pi_command *c = pi_parser_command(p);
    assert_true(c->nargs >= 1);
    int rc = pi_append_parse(c->args + 1, c->nargs - 1, out, max, n, err);
    /* what the results point to dies with the parser: copy the lengths only */
    for (size_t i = 0; i < *n; i++) {
        out[i].data = NULL;
        for (size_t k = 0; k < out[i].nkeywords; k++)
            out[i].keywords[k] = NULL;
    }
    pi_parser_free(p);
    return rc;
}

static void test_append_args(void **state)
{
    (void)state;
    pi_append_msg m[3];
    size_t n;
    const char *err = NULL;
    /* Thunderbird's shapes */
    assert_int_equal(append_args("5 append \"Drafts\" (\\Draft) {3+}\r\nabc\r\n", m, 3, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].flags, PI_FLAG_DRAFT);
    assert_false(m[0].has_date);
    assert_int_equal(m[0].len, 3);
    assert_int_equal(append_args("6 append \"Sent\" (\\Seen) {2+}\r\nab\r\n", m, 3, &n, &err), 0);
    assert_int_equal(m[0].flags, PI_FLAG_SEEN);
    /* no flags, a date, a keyword, flags in any case, an empty list */
    assert_int_equal(append_args("a APPEND INBOX \"05-Mar-2026 10:11:12 +0130\" {1}\r\nx\r\n", m, 3, &n, &err), 0);
    assert_true(m[0].has_date);
    assert_int_equal(m[0].tz_minutes, 90);
    assert_int_equal(m[0].date, 1772705472 - 90 * 60);
    assert_int_equal(append_args("a APPEND INBOX (\\SEEN \\flagged $Label1 \\Answered \\Deleted $label1) {1}\r\nx\r\n",
                                 m, 3, &n, &err),
                     0);
    assert_int_equal(m[0].flags, PI_FLAG_SEEN | PI_FLAG_FLAGGED | PI_FLAG_ANSWERED | PI_FLAG_DELETED);
    assert_int_equal(m[0].nkeywords, 1);
    assert_int_equal(append_args("a APPEND INBOX () {1}\r\nx\r\n", m, 3, &n, &err), 0);
    assert_int_equal(m[0].flags, 0);
    /* MULTIAPPEND */
    assert_int_equal(append_args("a APPEND INBOX (\\Seen) {1}\r\nx {2}\r\nyy \"1-Jan-2020 00:00:00 +0000\" {0}\r\n\r\n",
                                 m, 3, &n, &err),
                     0);
    assert_int_equal(n, 3);
    assert_int_equal(m[0].flags, PI_FLAG_SEEN);
    assert_int_equal(m[1].flags, 0);
    assert_int_equal(m[1].len, 2);
    assert_true(m[2].has_date);
    assert_int_equal(m[2].date, 1577836800);
    assert_int_equal(m[2].len, 0);
    assert_int_equal(append_args("a APPEND INBOX {1}\r\nx {1}\r\ny {1}\r\nz {1}\r\nw\r\n", m, 3, &n, &err), -2);
    /* errors: BAD */
    assert_int_equal(append_args("a APPEND INBOX (\\Recent) {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_string_equal(err, "\\Recent cannot be set");
    assert_int_equal(append_args("a APPEND INBOX (\\Bogus) {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_string_equal(err, "Unknown system flag");
    assert_int_equal(append_args("a APPEND INBOX (a%b) {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_int_equal(append_args("a APPEND INBOX ((x)) {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_int_equal(append_args("a APPEND INBOX \"32-Jan-2020 00:00:00 +0000\" {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_string_equal(err, "Invalid date-time");
    assert_int_equal(append_args("a APPEND INBOX \"hello\"\r\n", m, 3, &n, &err), -1);
    assert_int_equal(append_args("a APPEND INBOX (\\Seen)\r\n", m, 3, &n, &err), -1);
    assert_string_equal(err, "Missing message literal");
    assert_int_equal(append_args("a APPEND INBOX\r\n", m, 3, &n, &err), -1);
    assert_int_equal(append_args("a APPEND INBOX {1}\r\nx (\\Seen)\r\n", m, 3, &n, &err), -1);
    assert_int_equal(append_args("a APPEND INBOX atom {1}\r\nx\r\n", m, 3, &n, &err), -1);
    assert_string_equal(err, "The message must be a literal");
}

/* The default argument cap, exactly reached and then passed; tables shrink back after. */
static void test_many_args(void **state)
{
    (void)state;
    pu_buf in = PU_BUF_INIT;
    pu_buf_addstr(&in, "a X (");
    for (int i = 0; i < 9999; i++)
        pu_buf_addstr(&in, i ? " 1" : "1");
    pu_buf_addstr(&in, ")\r\nb X (");
    for (int i = 0; i < 10000; i++)
        pu_buf_addstr(&in, i ? " 1" : "1");
    pu_buf_addstr(&in, ")\r\nc NOOP\r\n");
    pi_parser *p = pi_parser_new(NULL);
    size_t off = 0, used;
    assert_int_equal(pi_parse(p, in.data, in.len, &used), PI_COMMAND);
    const pi_command *c = pi_parser_command(p);
    assert_int_equal(c->nargs, 1);
    assert_int_equal(c->args[0].count, 9999);
    assert_string_equal(c->args[0].list[9998].str, "1");
    off += used;
    assert_int_equal(pi_parse(p, in.data + off, in.len - off, &used), PI_ERROR);
    assert_int_equal(pi_parser_error(p)->kind, PI_ERR_TOO_MANY_ARGS);
    off += used;
    assert_int_equal(pi_parse(p, in.data + off, in.len - off, &used), PI_COMMAND);
    assert_string_equal(pi_parser_command(p)->tag, "c");
    assert_int_equal(off + used, in.len);
    pi_parser_free(p);
    pu_buf_free(&in);
}

/* ---- FETCH attributes ---- */

static void test_fetch_att(void **state)
{
    (void)state;
    pi_fetch_att f;
    const char *s = "BODY.PEEK[HEADER.FIELDS (From To)]<0.2048>";
    assert_int_equal(pi_fetch_att_split(s, strlen(s), &f), 0);
    assert_int_equal(f.name_len, 9);
    assert_memory_equal(f.name, "BODY.PEEK", 9);
    assert_true(f.has_section);
    assert_int_equal(f.section_len, strlen("HEADER.FIELDS (From To)"));
    assert_true(f.has_partial);
    assert_int_equal(f.partial_offset, 0);
    assert_int_equal(f.partial_count, 2048);
    s = "FLAGS";
    assert_int_equal(pi_fetch_att_split(s, 5, &f), 0);
    assert_false(f.has_section);
    assert_false(f.has_partial);
    s = "BODY[]";
    assert_int_equal(pi_fetch_att_split(s, 6, &f), 0);
    assert_true(f.has_section);
    assert_int_equal(f.section_len, 0);
    const char *bad[] = {"BODY[", "BODY[]<", "BODY[]<1>", "BODY[]<1.0>", "BODY[]<1.2>x", "[1]", "BODY[]]",
                         "BODY[]<4294967296.1>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pi_fetch_att_split(bad[i], strlen(bad[i]), &f), -1);

}

/* The one BODY[section] grammar (the FETCH handler's): what it accepts is what production
 * serves, so these cases pin it. */
static void test_section_parse(void **state)
{
    (void)state;
    pi_section sec;
    const char *s = "1.2.MIME";
    assert_int_equal(pi_section_parse(s, strlen(s), &sec), 0);
    assert_int_equal(sec.npath, 2);
    assert_int_equal(sec.path[0], 1);
    assert_int_equal(sec.path[1], 2);
    assert_int_equal(sec.kind, PI_SECTION_MIME);
    pi_section_free(&sec);
    assert_int_equal(pi_section_parse("2", 1, &sec), 0);
    assert_int_equal(sec.kind, PI_SECTION_BODY);
    assert_int_equal(pi_section_parse("", 0, &sec), 0);
    assert_int_equal(sec.npath, 0);
    assert_int_equal(sec.kind, PI_SECTION_BODY);
    const char *ok = "1.22.3.HEADER.FIELDS.NOT (From \"X-A\" to)";
    assert_int_equal(pi_section_parse(ok, strlen(ok), &sec), 0);
    assert_int_equal(sec.npath, 3);
    assert_int_equal(sec.path[1], 22);
    assert_int_equal(sec.kind, PI_SECTION_HEADER_FIELDS_NOT);
    assert_int_equal(sec.nfields, 3);
    assert_int_equal(sec.field_lens[1], 3);
    assert_memory_equal(sec.fields[1], "X-A", 3);
    assert_ptr_equal(sec.fields[0], ok + 26); /* names point into the spec */
    pi_section_free(&sec);
    s = "1.HEADER.FIELDS (From To Cc)";
    assert_int_equal(pi_section_parse(s, strlen(s), &sec), 0);
    assert_int_equal(sec.kind, PI_SECTION_HEADER_FIELDS);
    assert_int_equal(sec.nfields, 3);
    pi_section_free(&sec);
    assert_int_equal(pi_section_parse("TEXT", 4, &sec), 0);
    assert_int_equal(sec.kind, PI_SECTION_TEXT);
    assert_int_equal(pi_section_parse("HEADER", 6, &sec), 0);
    assert_int_equal(sec.kind, PI_SECTION_HEADER);
    /* Names no field can have are accepted and then match nothing. */
    static const char *const good[] = {"", "TEXT", "header", "3", "3.MIME", "1.TEXT", "HEADER.FIELDS (A)",
                                       "HEADER.FIELDS (a:b)", "HEADER.FIELDS (\"a b\")", "4294967295"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        if (pi_section_parse(good[i], strlen(good[i]), &sec) != 0)
            fail_msg("'%s' refused", good[i]);
        pi_section_free(&sec);
    }
    static const char *const bad[] = {"0", "1.", ".1", "1..2", "MIME", "1.MIMEX", "TEXTX", "1.TEXT.",
                                      "HEADER.FIELDS", "HEADER.FIELDS ()", "HEADER.FIELDS (A",
                                      "HEADER.FIELDS (A  B)", "HEADER.FIELDS (\"\")", "01", "99999999999",
                                      "4294967296", "1.X", "HEADER.FIELDS (A )", "HEADER.FIELDS (a) x",
                                      "HEADER.FIELDS (\"X-\\\"Q\")" /* no escapes in names */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (pi_section_parse(bad[i], strlen(bad[i]), &sec) != 1)
            fail_msg("'%s' accepted", bad[i]);
    /* A path deeper than any parse produces is BAD, not truncated. */
    char deep[2 * PI_SECTION_MAX_PATH + 2];
    size_t n = 0;
    for (size_t i = 0; i <= PI_SECTION_MAX_PATH; i++)
        deep[n++] = '1', deep[n++] = '.';
    assert_int_equal(pi_section_parse(deep, n - 3, &sec), 0); /* MAX_PATH numbers */
    assert_int_equal(sec.npath, PI_SECTION_MAX_PATH);
    assert_int_equal(pi_section_parse(deep, n - 1, &sec), 1);
}

static void test_partial(void **state)
{
    (void)state;
    const char *d = "0123456789", *o;
    size_t n;
    pi_partial(d, 10, 0, 4, &o, &n);
    assert_ptr_equal(o, d);
    assert_int_equal(n, 4);
    pi_partial(d, 10, 8, 100, &o, &n);
    assert_ptr_equal(o, d + 8);
    assert_int_equal(n, 2);
    pi_partial(d, 10, 10, 5, &o, &n);
    assert_int_equal(n, 0);
    pi_partial(d, 10, UINT64_MAX, 5, &o, &n);
    assert_int_equal(n, 0);
    pi_partial(d, 10, 3, SIZE_MAX, &o, &n);
    assert_int_equal(n, 7);
    pi_partial(d, 10, 3, 0, &o, &n);
    assert_int_equal(n, 0);
}

/* ---- sequence sets ---- */

static char *seqstr(const char *in, uint32_t star)
{
    pi_seqset set;
    const char *err = NULL;
    pu_buf b = PU_BUF_INIT;
    if (pi_seqset_parse(in, strlen(in), star, &set, &err) < 0) {
        assert_non_null(err);
        pu_buf_printf(&b, "ERR %s", err);
        return b.data;
    }
    pu_buf_addstr(&b, "");
    assert_int_equal(pi_write_seqset(&b, &set), 0);
    pi_seqset_free(&set);
    return b.data;
}

static void check_seq(const char *in, uint32_t star, const char *want)
{
    char *got = seqstr(in, star);
    if (strcmp(got, want) != 0)
        fail_msg("%s (star %u): want %s got %s", in, star, want, got);
    free(got);
}

/* RFC 7162 mod-sequence-value: digits, 1..2^63-1 (0 too where a valzer is allowed). */
static void test_modseq_value(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        pi_arg_type type;
        bool zero, ok;
        uint64_t v;
    } cases[] = {
        {"1", PI_ATOM, false, true, 1},
        {"0", PI_ATOM, false, false, 0},
        {"0", PI_ATOM, true, true, 0},
        {"9223372036854775807", PI_ATOM, false, true, 9223372036854775807ull},
        {"9223372036854775808", PI_ATOM, false, false, 0},
        {"18446744073709551616", PI_ATOM, true, false, 0},
        {"12a", PI_ATOM, false, false, 0},
        {"-1", PI_ATOM, true, false, 0},
        {"", PI_ATOM, true, false, 0},
        {"5", PI_QUOTED, false, false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pi_arg a = {.type = cases[i].type, .str = cases[i].s, .len = strlen(cases[i].s)};
        uint64_t v = 77;
        bool ok = pi_arg_modseq(&a, cases[i].zero, &v);
        if (ok != cases[i].ok || (ok && v != cases[i].v))
            fail_msg("%s: %d %llu", cases[i].s, ok, (unsigned long long)v);
    }
}

static void test_seqset(void **state)
{
    (void)state;
    check_seq("1:5,7,9:*", 20, "1:5,7,9:20");
    check_seq("5:1,3,2,10:8,6", 99, "1:6,8:10");
    check_seq("1:*", 0, "");
    check_seq("*", 0, "");
    check_seq("*", 7, "7");
    check_seq("5:*", 3, "3:5");
    check_seq("*:4", 9, "4:9");
    check_seq("4294967295", 1, "4294967295");
    check_seq("1,1,1,2", 1, "1:2");
    check_seq("3,1", 1, "1,3");
    check_seq("1:4294967295,4294967295", 1, "1:4294967295");
    check_seq("", 1, "ERR Empty sequence set");
    check_seq("0", 1, "ERR Message numbers start at 1");
    check_seq("1:0", 1, "ERR Message numbers start at 1");
    check_seq("01", 1, "ERR Message numbers start at 1");
    check_seq("$", 1, "ERR Saved search results ($) not supported");
    check_seq("1:", 1, "ERR Invalid sequence set");
    check_seq(",1", 1, "ERR Invalid sequence set");
    check_seq("1,,2", 1, "ERR Invalid sequence set");
    check_seq("1,", 1, "ERR Invalid sequence set");
    check_seq("1:2:3", 1, "ERR Invalid sequence set");
    check_seq("a", 1, "ERR Invalid sequence set");
    check_seq("1 2", 1, "ERR Invalid sequence set");
    check_seq("4294967296", 1, "ERR Number in sequence set too big");

    /* sequence numbers beyond EXISTS (RFC 3501 section 9), "*" of an empty mailbox too */
    const struct {
        const char *in;
        uint32_t exists;
        bool ok;
    } within[] = {{"1:5", 5, true}, {"1:6", 5, false}, {"99", 2, false}, {"2,3", 2, false}, {"1,2", 2, true},
                  {"*", 2, true},   {"1:*", 0, false}, {"*", 0, false}, {"1", 0, false}, {"3:*", 2, false},
                  {"2:*", 2, true}};
    for (size_t i = 0; i < sizeof within / sizeof within[0]; i++) {
        pi_seqset ws;
        const char *werr;
        assert_int_equal(pi_seqset_parse(within[i].in, strlen(within[i].in), within[i].exists, &ws, &werr), 0);
        if ((pi_seqset_check(&ws, within[i].exists) == NULL) != within[i].ok)
            fail_msg("%s with %u messages", within[i].in, within[i].exists);
        pi_seqset_free(&ws);
    }

    pu_buf big = PU_BUF_INIT;
    for (int i = 0; i < PI_SEQSET_MAX; i++)
        pu_buf_printf(&big, "%s%d", i ? "," : "", 2 * i + 1);
    pi_seqset set;
    const char *err;
    assert_int_equal(pi_seqset_parse(big.data, big.len, 1, &set, &err), 0);
    assert_int_equal(set.n, PI_SEQSET_MAX);
    assert_int_equal(pi_seqset_count(&set), PI_SEQSET_MAX);
    assert_true(pi_seqset_contains(&set, 19999));
    assert_false(pi_seqset_contains(&set, 20000));
    pi_seqset_free(&set);
    pu_buf_addstr(&big, ",1");
    assert_int_equal(pi_seqset_parse(big.data, big.len, 1, &set, &err), -1);
    assert_string_equal(err, "Too many elements in sequence set");
    pu_buf_free(&big);

    assert_int_equal(pi_seqset_parse("2:4,9,7,*", 9, 12, &set, &err), 0);
    assert_int_equal(pi_seqset_count(&set), 6);
    uint32_t want[] = {2, 3, 4, 7, 9, 12}, v;
    pi_seqset_iter it = {0};
    size_t k = 0;
    while (pi_seqset_next(&set, &it, &v)) {
        assert_true(k < 6);
        assert_int_equal(v, want[k++]);
    }
    assert_int_equal(k, 6);
    assert_false(pi_seqset_next(&set, &it, &v));
    for (uint32_t x = 0; x < 15; x++) {
        bool in = false;
        for (size_t j = 0; j < 6; j++)
            in |= want[j] == x;
        assert_int_equal(pi_seqset_contains(&set, x), in);
    }
    pi_seqset_free(&set);

    /* The top of the number space iterates without wrapping. */
    assert_int_equal(pi_seqset_parse("4294967294:*", 12, UINT32_MAX, &set, &err), 0);
    it = (pi_seqset_iter){0};
    k = 0;
    while (pi_seqset_next(&set, &it, &v))
        k++;
    assert_int_equal(k, 2);
    pi_seqset_free(&set);
    assert_int_equal(pi_seqset_parse("*", 1, 0, &set, &err), 0);
    it = (pi_seqset_iter){0};
    assert_false(pi_seqset_next(&set, &it, &v));
    assert_false(pi_seqset_contains(&set, 0));
    pi_seqset_free(&set);
}

/* ---- response strings ---- */

static char *wr(int (*fn)(pu_buf *, const void *, size_t, unsigned), const void *s, size_t n, unsigned flags)
{
    pu_buf b = PU_BUF_INIT;
    assert_int_equal(fn(&b, s, n, flags), 0);
    return b.data;
}

static void check_wr(int (*fn)(pu_buf *, const void *, size_t, unsigned), const char *s, size_t n, unsigned flags,
                     const char *want, size_t wantlen)
{
    pu_buf b = PU_BUF_INIT;
    assert_int_equal(fn(&b, s, n, flags), 0);
    assert_int_equal(b.len, wantlen);
    assert_memory_equal(b.data, want, wantlen);
    pu_buf_free(&b);
}

#define CW(fn, s, flags, want) check_wr(fn, s, sizeof(s) - 1, flags, want, sizeof(want) - 1)

/* Writing a string then parsing it as an argument gives the same bytes back. */
static void roundtrip(const char *s, size_t n, unsigned flags, bool astring)
{
    pu_buf b = PU_BUF_INIT;
    pu_buf_addstr(&b, "t X ");
    if (astring)
        assert_int_equal(pi_write_astring(&b, s, n, flags), 0);
    else
        assert_int_equal(pi_write_string(&b, s, n, flags), 0);
    pu_buf_addstr(&b, "\r\n");
    pi_parser *p = pi_parser_new(NULL);
    size_t off = 0, used;
    pi_status st;
    while ((st = pi_parse(p, b.data + off, b.len - off, &used)) == PI_CONTINUE)
        off += used;
    assert_int_equal(st, PI_COMMAND);
    const pi_command *c = pi_parser_command(p);
    assert_int_equal(c->nargs, 1);
    const char *got;
    size_t gl;
    assert_true(pi_arg_astring(&c->args[0], &got, &gl));
    assert_int_equal(gl, n);
    assert_memory_equal(got, s, n);
    if (!astring)
        assert_true(pi_arg_string(&c->args[0], &got, &gl));
    pi_parser_free(p);
    pu_buf_free(&b);
}

static void test_write_strings(void **state)
{
    (void)state;
    CW(pi_write_string, "INBOX", 0, "\"INBOX\"");
    CW(pi_write_string, "", 0, "\"\"");
    CW(pi_write_string, "a\"b\\c", 0, "\"a\\\"b\\\\c\"");
    CW(pi_write_string, "a\r\nb", 0, "{4}\r\na\r\nb");
    CW(pi_write_string, "a\rb", 0, "{3}\r\na\rb");
    CW(pi_write_string, "a\0b", 0, "{3}\r\na\0b");
    CW(pi_write_string, "Entw\xc3\xbcrfe", 0, "{9}\r\nEntw\xc3\xbcrfe");
    CW(pi_write_string, "Entw\xc3\xbcrfe", PI_W_UTF8, "\"Entw\xc3\xbcrfe\"");
    CW(pi_write_string, "bad\xc3", PI_W_UTF8, "{4}\r\nbad\xc3");
    CW(pi_write_string, "\xed\xa0\x80", PI_W_UTF8, "{3}\r\n\xed\xa0\x80"); /* a surrogate is not UTF-8 */
    CW(pi_write_string, "tab\there", 0, "\"tab\there\"");
    CW(pi_write_astring, "INBOX", 0, "INBOX");
    CW(pi_write_astring, "Sent/2026", 0, "Sent/2026");
    CW(pi_write_astring, "NIL", 0, "\"NIL\"");
    CW(pi_write_astring, "nil", 0, "\"nil\"");
    CW(pi_write_astring, "", 0, "\"\"");
    CW(pi_write_astring, "a b", 0, "\"a b\"");
    CW(pi_write_astring, "[Gmail]", 0, "\"[Gmail]\"");
    CW(pi_write_astring, "50%", 0, "\"50%\"");
    CW(pi_write_astring, "a\nb", 0, "{3}\r\na\nb");
    CW(pi_write_nstring, "x", 0, "\"x\"");
    char *got = wr(pi_write_nstring, NULL, 0, 0);
    assert_string_equal(got, "NIL");
    free(got);

    char big[1001];
    memset(big, 'x', sizeof big);
    got = wr(pi_write_string, big, 999, 0);
    assert_int_equal(got[0], '"');
    assert_int_equal(strlen(got), 1001);
    free(got);
    got = wr(pi_write_string, big, 1000, 0);
    assert_memory_equal(got, "{1000}\r\n", 8);
    assert_int_equal(strlen(got), 1008);
    free(got);

    /* PI_W_HEADER, the form of ENVELOPE and BODYSTRUCTURE strings: CR, LF, NUL dropped,
     * a literal only for 8-bit, '"' and '\\', never for length. */
    pu_buf h = PU_BUF_INIT;
    assert_int_equal(pi_write_nstring(&h, NULL, 0, PI_W_HEADER), 0);
    assert_int_equal(pi_write_nstring(&h, "", 0, PI_W_HEADER), 0);
    assert_int_equal(pi_write_nstring(&h, "a b", 3, PI_W_HEADER), 0);
    assert_int_equal(pi_write_nstring(&h, "say \"hi\"", 8, PI_W_HEADER), 0);
    assert_int_equal(pi_write_nstring(&h, "x\r\n y\0", 6, PI_W_HEADER), 0);
    assert_int_equal(pi_write_nstring(&h, "\xc3\xa9", 2, PI_W_HEADER), 0);
    assert_int_equal(pi_write_string(&h, "\xc3\xa9", 2, PI_W_HEADER | PI_W_UTF8), 0);
    assert_string_equal(h.data, "NIL\"\"\"a b\"{8}\r\nsay \"hi\"\"x y\"{2}\r\n\xc3\xa9{2}\r\n\xc3\xa9");
    pu_buf_clear(&h);
    assert_int_equal(pi_write_string(&h, big, 1000, PI_W_HEADER), 0);
    assert_int_equal(h.data[0], '"');
    assert_int_equal(h.len, 1002);
    pu_buf_free(&h);

    pu_buf b = PU_BUF_INIT;
    const char *flags[] = {"\\Seen", "\\Answered", "$Forwarded"};
    assert_int_equal(pi_write_atom_list(&b, flags, 3), 0);
    assert_string_equal(b.data, "(\\Seen \\Answered $Forwarded)");
    pu_buf_clear(&b);
    assert_int_equal(pi_write_atom_list(&b, flags, 0), 0);
    assert_string_equal(b.data, "()");
    pu_buf_clear(&b);
    pi_write_list_begin(&b);
    pi_write_list_sep(&b);
    pu_buf_addstr(&b, "UID 4");
    pi_write_list_sep(&b);
    pu_buf_addstr(&b, "FLAGS ");
    pi_write_list_begin(&b);
    pi_write_list_end(&b);
    pi_write_list_end(&b);
    assert_string_equal(b.data, "(UID 4 FLAGS ())");
    pu_buf_free(&b);

    const char *tricky[] = {"", "a", "NIL", "a b", "\"", "\\", "\\\"\\", "{3}", "{3+}", "(x)", "a\r\nb", "\r",
                            "Entw\xc3\xbcrfe", "\xff\xfe", "[x]", "*%", ")"};
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        for (unsigned f = 0; f <= PI_W_UTF8; f++) {
            roundtrip(tricky[i], strlen(tricky[i]), f, false);
            roundtrip(tricky[i], strlen(tricky[i]), f, true);
        }
    }
    roundtrip(big, 1000, 0, false);
    roundtrip("a\0b", 3, 0, false);
}

/* ---- modified UTF-7 ---- */

static void check_utf7(const char *utf8, const char *mutf7)
{
    pu_buf b = PU_BUF_INIT;
    assert_int_equal(pi_mutf7_encode(utf8, strlen(utf8), &b), 0);
    assert_string_equal(b.data, mutf7);
    pu_buf_clear(&b);
    assert_int_equal(pi_mutf7_decode(mutf7, strlen(mutf7), &b), 0);
    assert_string_equal(b.data, utf8);
    pu_buf_free(&b);
}

static void test_mutf7(void **state)
{
    (void)state;
    check_utf7("", "");
    check_utf7("INBOX", "INBOX");
    check_utf7("&", "&-");
    check_utf7("a&b&&", "a&-b&-&-");
    check_utf7("Entw\xc3\xbcrfe", "Entw&APw-rfe");
    check_utf7("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-");
    check_utf7("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
               "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    check_utf7("\xf0\x9f\x98\x80", "&2D3eAA-");
    check_utf7("a\tb", "a&AAk-b");
    check_utf7("\xc3\xbc\xc3\xbc\xc3\xbc", "&APwA,AD8-");

    pu_buf b = PU_BUF_INIT;
    const char *bad_utf8[] = {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "a\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        pu_buf_addstr(&b, "keep");
        assert_int_equal(pi_mutf7_encode(bad_utf8[i], strlen(bad_utf8[i]), &b), -1);
        assert_string_equal(b.data, "keep"); /* output untouched on failure */
        pu_buf_clear(&b);
    }
    assert_int_equal(pi_mutf7_encode("a\0b", 3, &b), -1);
    const char *bad[] = {"&", "&Jjo", "&AGE-", "&APw-&APw-", "&2D0-", "&3gA-", "&APx-", "&AP-", "&A-",
                         "&AAA-", "&AP!-", "a\tb", "\xc3\xbc", "&2D3eAA", "&2D0AQQ-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (pi_mutf7_decode(bad[i], strlen(bad[i]), &b) != -1)
            fail_msg("decoded %s", bad[i]);
        assert_int_equal(b.len, 0);
    }
    pu_buf_free(&b);

    /* Every BMP character and some astral ones survive a round trip. */
    pu_buf u = PU_BUF_INIT, m = PU_BUF_INIT, back = PU_BUF_INIT;
    for (uint32_t cp = 1; cp < 0x11000; cp += (cp < 0x10000 ? 1 : 97)) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        unsigned char e[4];
        size_t n;
        if (cp < 0x80) {
            e[0] = (unsigned char)cp, n = 1;
        } else if (cp < 0x800) {
            e[0] = (unsigned char)(0xc0 | (cp >> 6)), e[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
        } else if (cp < 0x10000) {
            e[0] = (unsigned char)(0xe0 | (cp >> 12)), e[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
            e[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
        } else {
            e[0] = (unsigned char)(0xf0 | (cp >> 18)), e[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f)),
            e[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)), e[3] = (unsigned char)(0x80 | (cp & 0x3f)), n = 4;
        }
        pu_buf_clear(&u);
        pu_buf_add(&u, "x", 1);
        pu_buf_add(&u, e, n);
        pu_buf_add(&u, e, n);
        pu_buf_clear(&m);
        pu_buf_clear(&back);
        assert_int_equal(pi_mutf7_encode(u.data, u.len, &m), 0);
        for (size_t i = 0; i < m.len; i++)
            assert_true(m.data[i] >= 0x20 && m.data[i] < 0x7f);
        assert_int_equal(pi_mutf7_decode(m.data, m.len, &back), 0);
        assert_int_equal(back.len, u.len);
        assert_memory_equal(back.data, u.data, u.len);
    }
    pu_buf_free(&u);
    pu_buf_free(&m);
    pu_buf_free(&back);
}

/* ---- dates ---- */

static void test_dates(void **state)
{
    (void)state;
    char out[PI_DATE_TIME_SIZE];
    assert_int_equal(pi_date_time_format(1795427029, 0, out), 0);
    assert_string_equal(out, "\"23-Nov-2026 09:43:49 +0000\"");
    assert_int_equal(pi_date_time_format(1795427029, 60, out), 0);
    assert_string_equal(out, "\"23-Nov-2026 10:43:49 +0100\"");
    assert_int_equal(pi_date_time_format(1795427029, -(9 * 60 + 30), out), 0);
    assert_string_equal(out, "\"23-Nov-2026 00:13:49 -0930\"");
    assert_int_equal(pi_date_time_format(0, 0, out), 0);
    assert_string_equal(out, "\" 1-Jan-1970 00:00:00 +0000\"");
    assert_int_equal(pi_date_time_format(-1, 0, out), 0);
    assert_string_equal(out, "\"31-Dec-1969 23:59:59 +0000\"");
    assert_int_equal(pi_date_time_format(951868799, 0, out), 0);
    assert_string_equal(out, "\"29-Feb-2000 23:59:59 +0000\"");
    assert_int_equal(pi_date_time_format(0, 24 * 60, out), -1);
    assert_int_equal(pi_date_time_format(INT64_MAX, 0, out), -1);
    assert_int_equal(pi_date_time_format(INT64_MIN, 0, out), -1);
    assert_int_equal(pi_date_time_format(253402300800LL, 0, out), -1); /* year 10000 */

    pi_date d;
    assert_int_equal(pi_date_parse("1-Feb-1994", 10, &d), 0);
    assert_int_equal(d.year, 1994);
    assert_int_equal(d.month, 2);
    assert_int_equal(d.day, 1);
    assert_int_equal(pi_date_days(&d) * 86400, 760060800);
    assert_int_equal(pi_date_parse("01-feb-1994", 11, &d), 0);
    assert_int_equal(d.day, 1);
    assert_int_equal(pi_date_parse("29-FEB-2024", 11, &d), 0);
    const char *bad[] = {"29-Feb-2023", "32-Jan-2000", "0-Jan-2000", "1-Foo-1994", "1-Feb-94", "1-Feb-19944",
                         " 1-Feb-1994", "1 Feb 1994", "", "1-Feb-0000", "123-Feb-1994", "1-Feb-1994 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pi_date_parse(bad[i], strlen(bad[i]), &d), -1);

    int64_t t;
    int tz;
    const char *s = "23-Nov-2026 09:43:49 +0000";
    assert_int_equal(pi_date_time_parse(s, strlen(s), &t, &tz), 0);
    assert_int_equal(t, 1795427029);
    assert_int_equal(tz, 0);
    s = " 1-Feb-1994 00:00:00 -0800";
    assert_int_equal(pi_date_time_parse(s, strlen(s), &t, &tz), 0);
    assert_int_equal(t, 760089600);
    assert_int_equal(tz, -480);
    s = "1-Feb-1994 00:00:00 -0800";
    assert_int_equal(pi_date_time_parse(s, strlen(s), &t, &tz), 0);
    assert_int_equal(t, 760089600);
    const char *badt[] = {"23-Nov-2026 24:00:00 +0000", "23-Nov-2026 09:60:00 +0000", "23-Nov-2026 09:43:49",
                          "23-Nov-2026 09:43:49 0000", "23-Nov-2026 09:43:49 +000", "23-Nov-2026 9:43:49 +0000",
                          "23-Nov-2026 09:43:49 +0060", "23-Nov-2026 09:43:49 +00000", "23-Nov-2026  09:43:49 +0000"};
    for (size_t i = 0; i < sizeof badt / sizeof badt[0]; i++)
        assert_int_equal(pi_date_time_parse(badt[i], strlen(badt[i]), &t, &tz), -1);

    /* Format and parse agree across the range, in several zones. */
    rnd_state = 7;
    for (int i = 0; i < 20000; i++) {
        int64_t x = ((int64_t)rnd() << 30 | (int64_t)rnd() << 15 | rnd()) % 253402000000LL - 62135000000LL;
        int z = (int)(rnd() % (2 * 24 * 60 - 1)) - (24 * 60 - 1);
        if (pi_date_time_format(x, z, out) < 0)
            continue;
        assert_int_equal(strlen(out), PI_DATE_TIME_SIZE - 1);
        assert_int_equal(pi_date_time_parse(out + 1, strlen(out) - 2, &t, &tz), 0);
        assert_int_equal(t, x);
        assert_int_equal(tz, z);
    }
}

static void test_list_match(void **state)
{
    (void)state;
    assert_true(pi_list_match("*", "INBOX"));
    assert_true(pi_list_match("%", "Sent"));
    assert_true(pi_list_match("inbox", "INBOX"));   /* INBOX in any case */
    assert_true(pi_list_match("InBo%", "INBOX"));
    assert_false(pi_list_match("sent", "Sent"));    /* other names are case-sensitive */
    assert_true(pi_list_match("S*", "Sent"));
    assert_true(pi_list_match("*t", "Sent"));
    assert_true(pi_list_match("*a*", "Drafts"));
    assert_false(pi_list_match("*a*", "Sent"));
    assert_true(pi_list_match("D%s", "Drafts"));
    assert_false(pi_list_match("Trash/%", "Trash"));
    assert_false(pi_list_match("%", "a/b"));        /* % stops at the separator */
    assert_true(pi_list_match("*", "a/b"));
    assert_true(pi_list_match("a/%", "a/b"));
    assert_false(pi_list_match("", "INBOX"));
    assert_true(pi_list_match("Sent", "Sent"));
    assert_false(pi_list_match("Sen", "Sent"));
    assert_false(pi_list_match("Sentx", "Sent"));
    /* long runs of wildcards collapse: no exponential backtracking */
    char many[PI_LIST_PATTERN_MAX + 2];
    for (int i = 0; i < PI_LIST_PATTERN_MAX; i++)
        many[i] = i % 3 ? '*' : '%';
    many[PI_LIST_PATTERN_MAX] = '\0';
    assert_true(pi_list_match(many, "Drafts"));
    many[PI_LIST_PATTERN_MAX] = '*';
    many[PI_LIST_PATTERN_MAX + 1] = '\0';
    assert_false(pi_list_match(many, "Drafts")); /* over the limit: matches nothing */
    /* "*a*a*a...*ab" against 200 a's: exponential for a backtracking matcher (this ran for
     * hours before), a few hundred thousand steps here */
    for (int i = 0; i < 400; i++)
        many[i] = i % 2 ? 'a' : '*';
    many[400] = 'b';
    many[401] = '\0';
    char name[201];
    memset(name, 'a', 200);
    name[200] = '\0';
    assert_false(pi_list_match(many, name));
    many[400] = '\0';
    assert_true(pi_list_match(many, name));
}

/* LIST's arguments (RFC 5258): selection options, several patterns, RETURN options */
static void test_list_parse(void **state)
{
    (void)state;
    pi_parser *p = pi_parser_new(NULL);
    assert_non_null(p);
    static const struct {
        const char *line;
        int rc;
    } cases[] = {
        {"a LIST \"\" \"*\"\r\n", 0},
        {"a LIST \"\" \"\"\r\n", 1},
        {"a LIST (SUBSCRIBED) \"\" \"\"\r\n", 0},
        {"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN STATUS (MESSAGES))\r\n", 0},
        {"a LIST (RECURSIVEMATCH) \"\" \"*\"\r\n", -1},
        {"a LIST (FROB) \"\" \"*\"\r\n", -1},
        {"a LIST \"\" (\"INBOX\" \"Lists/*\")\r\n", 0},
        {"a LIST \"\" ()\r\n", -1},
        {"a LIST \"\" (a b c d e f g h i)\r\n", -1},
        {"a LIST \"\" \"*\" RETURN (FROB)\r\n", -1},
        {"a LIST \"\" \"*\" RETURN\r\n", -1},
        {"a LIST \"\"\r\n", -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t used = 0;
        assert_int_equal(pi_parse(p, cases[k].line, strlen(cases[k].line), &used), PI_COMMAND);
        const pi_command *c = pi_parser_command(p);
        pi_list_req q;
        const char *err = NULL;
        int rc = pi_list_parse(c->args, c->nargs, false, &q, &err);
        if (rc != cases[k].rc)
            fail_msg("%s: %d, not %d (%s)", cases[k].line, rc, cases[k].rc, err ? err : "");
        if (rc < 0)
            assert_non_null(err);
        if (k == 3) {
            assert_true(q.sel_subscribed && q.recursive && q.show_subscribed);
            assert_non_null(q.status);
            assert_int_equal(q.npat, 1);
        }
        if (k == 6) {
            assert_int_equal(q.npat, 2);
            assert_string_equal(q.patterns[1], "Lists/*");
            assert_true(pi_list_matches(&q, "Lists/Work") && !pi_list_matches(&q, "Sent"));
        }
    }
    pi_parser_free(p);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_match),
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_thunderbird),
        cmocka_unit_test(test_mbsync_pipelined),
        cmocka_unit_test(test_offlineimap_mutt_fetchmail),
        cmocka_unit_test(test_curl_python),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_literal_continue_timing),
        cmocka_unit_test(test_nested_lists),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_recovery_skips_literals),
        cmocka_unit_test(test_raw_lines),
        cmocka_unit_test(test_passwords_wiped),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_big_append),
        cmocka_unit_test(test_append_discard_bounded),
        cmocka_unit_test(test_append_args),
        cmocka_unit_test(test_many_args),
        cmocka_unit_test(test_fetch_att),
        cmocka_unit_test(test_seqset),
        cmocka_unit_test(test_modseq_value),
        cmocka_unit_test(test_write_strings),
        cmocka_unit_test(test_section_parse),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_mutf7),
        cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
