/* pop3: the line reader (whole, byte by byte, random slices, limits, recovery, wiping), the
 * command parser (every command in every state, every refusal text, numbers), the writers
 * (codes, sanitising, dot-stuffing, CAPA), the CRLF form and its size, TOP, the maildrop
 * view and SASL PLAIN; a pipelined session ties them together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pop3/pop3.h"

static unsigned rnd_state = 1;
static unsigned rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) & 0x7fff;
}

static void buf_str(pu_buf *b, const char *s)
{
    assert_int_equal(pu_buf_add(b, s, strlen(s)), 0);
}

/* ---- reader driver: the events of a byte stream as text, "L<line>|" and "E<reply>|" ---- */

/* step 0: whole; step 1: byte by byte; else random slices of 1..step bytes. */
static void run_reader(pp_reader *r, const char *data, size_t len, size_t step, pu_buf *log)
{
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos;
        if (step == 1)
            n = 1;
        else if (step > 1 && n > 1)
            n = 1 + rnd() % (n < step ? n : step);
        size_t off = 0;
        while (off < n) {
            size_t used = 99999;
            pp_read_status st = pp_reader_feed(r, data + pos + off, n - off, &used);
            assert_true(used <= n - off);
            off += used;
            if (st == PP_READ_LINE) {
                size_t ll;
                const char *line = pp_reader_line(r, &ll);
                assert_int_equal(strlen(line), ll);
                buf_str(log, "L");
                pu_buf_add(log, line, ll);
                buf_str(log, "|");
            } else if (st == PP_READ_ERROR) {
                buf_str(log, "E");
                buf_str(log, pp_reader_error(r));
                buf_str(log, "|");
            } else {
                assert_int_equal(off, n);
            }
        }
        pos += n;
    }
}

static void expect_reader(const char *data, size_t len, const char *want)
{
    for (size_t step = 0; step < 6; step++) {
        pp_reader *r = pp_reader_new();
        assert_non_null(r);
        pu_buf log = {0};
        buf_str(&log, "");
        run_reader(r, data, len, step == 5 ? 17 : step, &log);
        assert_string_equal(log.data, want);
        pu_buf_free(&log);
        pp_reader_free(r);
    }
}
#define EXPECT_READER(lit, want) expect_reader(lit, sizeof(lit) - 1, want)

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static void test_reader_basic(void **state)
{
    (void)state;
    EXPECT_READER("USER a\r\nPASS b c\r\n", "LUSER a|LPASS b c|");
    EXPECT_READER("STAT\nLIST\r\n", "LSTAT|LLIST|");                    /* bare LF */
    EXPECT_READER("\r\n\n", "L|L|");                                     /* empty lines */
    EXPECT_READER("a\rb\r\n", "La\rb|");                                 /* lone CR stays */
    EXPECT_READER("a\r\r\n", "La\r|");                                   /* only one CR goes */
    EXPECT_READER("NOOP", "");                                           /* incomplete */
    EXPECT_READER("NOOP\r", "");
    EXPECT_READER("\xc3\xa4\xff\r\n", "L\xc3\xa4\xff|");                 /* 8-bit passes */

    /* An incomplete line is kept and finished by the next feed. */
    pp_reader *r = pp_reader_new();
    size_t used;
    assert_int_equal(pp_reader_feed(r, "QU", 2, &used), PP_READ_MORE);
    assert_int_equal(used, 2);
    assert_true(pp_reader_pending(r));
    assert_int_equal(pp_reader_feed(r, "IT\r\nSTAT\r\n", 10, &used), PP_READ_LINE);
    assert_int_equal(used, 4);
    size_t ll;
    assert_string_equal(pp_reader_line(r, &ll), "QUIT");
    assert_int_equal(ll, 4);
    assert_false(pp_reader_pending(r));
    assert_int_equal(pp_reader_feed(r, "STAT\r\n", 6, &used), PP_READ_LINE);
    assert_string_equal(pp_reader_line(r, NULL), "STAT");
    /* Nothing fed: nothing happens. */
    assert_int_equal(pp_reader_feed(r, "", 0, &used), PP_READ_MORE);
    assert_int_equal(used, 0);
    assert_string_equal(pp_reader_line(r, &ll), "");
    assert_int_equal(ll, 0);
    /* a PASS line is wiped at once on request, not only at the next feed */
    assert_int_equal(pp_reader_feed(r, "PASS secret-pw\r\n", 16, &used), PP_READ_LINE);
    const char *line = pp_reader_line(r, &ll);
    assert_int_equal(ll, 14);
    pp_reader_wipe_line(r);
    for (size_t i = 0; i < 14; i++)
        assert_int_equal(line[i], 0);
    assert_string_equal(pp_reader_line(r, &ll), "");
    pp_reader_free(r);
    pp_reader_free(NULL);
}

static void test_reader_limits(void **state)
{
    (void)state;
    pu_buf in = {0}, want = {0};
    char *a254 = repeat('a', 254), *a253 = repeat('a', 253), *a255 = repeat('a', 255);

    /* 255 octets with the line end are fine, either line end. */
    buf_str(&in, a254);
    buf_str(&in, "\n");
    buf_str(&in, a253);
    buf_str(&in, "\r\n");
    buf_str(&want, "L");
    buf_str(&want, a254);
    buf_str(&want, "|L");
    buf_str(&want, a253);
    buf_str(&want, "|");
    expect_reader(in.data, in.len, want.data);

    /* 256 octets are not; the next line is read normally. */
    pu_buf_clear(&in);
    buf_str(&in, a254);
    buf_str(&in, "\r\nNOOP\r\n");
    buf_str(&in, a255);
    buf_str(&in, "\nSTAT\r\n");
    expect_reader(in.data, in.len, "E-ERR line too long\r\n|LNOOP|E-ERR line too long\r\n|LSTAT|");

    /* A very long line costs nothing and reports once, at its end. */
    pp_reader *r = pp_reader_new();
    char *big = repeat('x', 100000);
    size_t used;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pp_reader_feed(r, big, 100000, &used), PP_READ_MORE);
        assert_int_equal(used, 100000);
        assert_true(pp_reader_pending(r));
    }
    assert_int_equal(pp_reader_feed(r, "\r\nQUIT\r\n", 8, &used), PP_READ_ERROR);
    assert_int_equal(used, 2);
    assert_string_equal(pp_reader_error(r), PP_ERR_TXT_LINE_TOO_LONG);
    assert_false(pp_reader_pending(r));
    assert_int_equal(pp_reader_feed(r, "QUIT\r\n", 6, &used), PP_READ_LINE);
    assert_string_equal(pp_reader_line(r, NULL), "QUIT");
    free(big);

    /* NUL: refused, the line discarded, the next one read. */
    EXPECT_READER("US\0ER a\r\nNOOP\r\n", "E-ERR NUL byte in line\r\n|LNOOP|");
    EXPECT_READER("\0\n", "E-ERR NUL byte in line\r\n|");
    /* Whichever came first is reported. */
    pu_buf_clear(&in);
    pu_buf_add(&in, "\0", 1);
    buf_str(&in, a255);
    buf_str(&in, "\n");
    expect_reader(in.data, in.len, "E-ERR NUL byte in line\r\n|");
    pu_buf_clear(&in);
    buf_str(&in, a255);
    pu_buf_add(&in, "\0\n", 2);
    expect_reader(in.data, in.len, "E-ERR line too long\r\n|");

    /* The AUTH continuation line: up to 2048 octets, once. */
    char *b2047 = repeat('Q', 2047), *b2046 = repeat('Q', 2046), *b2048 = repeat('Q', 2048);
    assert_int_equal(pp_reader_feed(r, "AUTH PLAIN\r\n", 12, &used), PP_READ_LINE);
    assert_int_equal(pp_reader_auth_line(r), 0);
    assert_int_equal(pp_reader_feed(r, b2047, 2047, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_LINE);
    size_t ll;
    assert_int_equal(strlen(pp_reader_line(r, &ll)), 2047);
    assert_int_equal(ll, 2047);
    /* Back to 255 for the next line. */
    assert_int_equal(pp_reader_feed(r, a255, 255, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_ERROR);
    assert_string_equal(pp_reader_error(r), PP_ERR_TXT_LINE_TOO_LONG);
    /* 2046 + CRLF = 2048: fine; 2047 + CRLF and 2048 + LF: too long. */
    assert_int_equal(pp_reader_auth_line(r), 0);
    assert_int_equal(pp_reader_feed(r, b2046, 2046, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\r\n", 2, &used), PP_READ_LINE);
    assert_int_equal(pp_reader_auth_line(r), 0);
    assert_int_equal(pp_reader_feed(r, b2047, 2047, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\r\n", 2, &used), PP_READ_ERROR);
    assert_int_equal(pp_reader_auth_line(r), 0);
    assert_int_equal(pp_reader_feed(r, b2048, 2048, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\nQUIT\n", 6, &used), PP_READ_ERROR);
    assert_int_equal(used, 1);
    /* After the error the limit is 255 again. */
    assert_int_equal(pp_reader_feed(r, a254, 254, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\r\n", 2, &used), PP_READ_ERROR);
    /* Only between lines. */
    assert_int_equal(pp_reader_feed(r, "AU", 2, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_auth_line(r), -1);
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_LINE);
    assert_int_equal(pp_reader_feed(r, a255, 255, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_auth_line(r), -1); /* discarding */
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_ERROR);
    assert_int_equal(pp_reader_auth_line(r), 0); /* right after an error is a boundary too */
    assert_int_equal(pp_reader_feed(r, b2046, 2046, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_LINE);

    free(b2046);
    free(b2047);
    free(b2048);
    pp_reader_free(r);
    free(a253);
    free(a254);
    free(a255);
    pu_buf_free(&in);
    pu_buf_free(&want);
}

static void test_reader_slicing(void **state)
{
    (void)state;
    /* Random streams of lines (some long, some with NUL), fed whole and sliced, must give
     * the same events. */
    for (int round = 0; round < 200; round++) {
        pu_buf in = {0}, a = {0}, b = {0}, c = {0};
        buf_str(&a, "");
        buf_str(&b, "");
        buf_str(&c, "");
        int lines = 1 + (int)(rnd() % 8);
        for (int i = 0; i < lines; i++) {
            size_t n = rnd() % 5 == 0 ? 200 + rnd() % 120 : rnd() % 20;
            for (size_t j = 0; j < n; j++) {
                unsigned v = rnd() % 100;
                char ch = v == 0 ? '\0' : v == 1 ? '\r' : (char)('a' + v % 26);
                pu_buf_add(&in, &ch, 1);
            }
            buf_str(&in, rnd() % 2 ? "\r\n" : "\n");
        }
        pp_reader *r1 = pp_reader_new(), *r2 = pp_reader_new(), *r3 = pp_reader_new();
        run_reader(r1, in.data, in.len, 0, &a);
        run_reader(r2, in.data, in.len, 1, &b);
        run_reader(r3, in.data, in.len, 7, &c);
        assert_string_equal(a.data, b.data);
        assert_string_equal(a.data, c.data);
        pp_reader_free(r1);
        pp_reader_free(r2);
        pp_reader_free(r3);
        pu_buf_free(&in);
        pu_buf_free(&a);
        pu_buf_free(&b);
        pu_buf_free(&c);
    }
}

static void test_reader_wipe_reset(void **state)
{
    (void)state;
    pp_reader *r = pp_reader_new();
    size_t used, ll;
    assert_int_equal(pp_reader_feed(r, "PASS secret\r\n", 13, &used), PP_READ_LINE);
    const char *line = pp_reader_line(r, &ll);
    assert_string_equal(line, "PASS secret");
    /* The next feed wipes the line it handed out, whatever it is fed. */
    assert_int_equal(pp_reader_feed(r, "", 0, &used), PP_READ_MORE);
    for (size_t i = 0; i < 13; i++)
        assert_int_equal(line[i], 0);
    /* A discarded line is wiped as well. */
    assert_int_equal(pp_reader_feed(r, "PASS x\0y", 8, &used), PP_READ_MORE);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(line[i], 0);
    /* reset forgets the partial line, the discard and the AUTH limit. */
    pp_reader_reset(r);
    assert_false(pp_reader_pending(r));
    assert_int_equal(pp_reader_feed(r, "STLS\r\n", 6, &used), PP_READ_LINE);
    assert_int_equal(pp_reader_feed(r, "CA", 2, &used), PP_READ_MORE);
    assert_true(pp_reader_pending(r));
    pp_reader_reset(r);
    assert_false(pp_reader_pending(r));
    assert_int_equal(pp_reader_feed(r, "PA\r\n", 4, &used), PP_READ_LINE);
    assert_string_equal(pp_reader_line(r, NULL), "PA");
    assert_int_equal(pp_reader_auth_line(r), 0);
    pp_reader_reset(r);
    char *a300 = repeat('a', 300);
    assert_int_equal(pp_reader_feed(r, a300, 300, &used), PP_READ_MORE);
    assert_int_equal(pp_reader_feed(r, "\n", 1, &used), PP_READ_ERROR);
    free(a300);
    pp_reader_free(r);
}

/* ---- parser ---- */

static pp_offer offer_all(void)
{
    pp_offer o;
    pp_offer_init(&o, true, true, false);
    return o;
}

static pp_command cmd;

static int parse(const char *line, pp_state st, const pp_offer *o)
{
    return pp_parse(line, strlen(line), st, o, &cmd);
}

#define A PP_STATE_AUTHORIZATION
#define U PP_STATE_USER
#define T PP_STATE_TRANSACTION

static void expect_err(const char *line, pp_state st, const char *err)
{
    pp_offer o = offer_all();
    assert_int_equal(parse(line, st, &o), -1);
    assert_non_null(cmd.err);
    assert_string_equal(cmd.err, err);
}

static void expect_ok(const char *line, pp_state st, pp_cmd c, size_t nargs)
{
    pp_offer o = offer_all();
    if (parse(line, st, &o) != 0)
        fail_msg("\"%s\": %s", line, cmd.err);
    assert_int_equal(cmd.cmd, c);
    assert_int_equal(cmd.nargs, nargs);
    assert_null(cmd.err);
    assert_string_equal(cmd.name, pp_cmd_name(c));
}

static void test_parse_commands(void **state)
{
    (void)state;
    expect_ok("USER alice@example.org", A, PP_CMD_USER, 1);
    assert_string_equal(cmd.arg[0], "alice@example.org");
    assert_int_equal(cmd.arg_len[0], 17);
    expect_ok("user Bob", U, PP_CMD_USER, 1); /* USER again replaces the name */
    assert_string_equal(cmd.arg[0], "Bob");
    expect_ok("USER j\xc3\xb6rg@example.org", A, PP_CMD_USER, 1);
    expect_ok("PASS secret", U, PP_CMD_PASS, 1);
    assert_string_equal(cmd.arg[0], "secret");
    expect_ok("STAT", T, PP_CMD_STAT, 0);
    expect_ok("LIST", T, PP_CMD_LIST, 0);
    assert_int_equal(cmd.msg, 0);
    expect_ok("LIST 3", T, PP_CMD_LIST, 1);
    assert_int_equal(cmd.msg, 3);
    assert_string_equal(cmd.arg[0], "3");
    expect_ok("RETR 1", T, PP_CMD_RETR, 1);
    assert_int_equal(cmd.msg, 1);
    expect_ok("DELE 12", T, PP_CMD_DELE, 1);
    assert_int_equal(cmd.msg, 12);
    expect_ok("NOOP", T, PP_CMD_NOOP, 0);
    expect_ok("RSET", T, PP_CMD_RSET, 0);
    expect_ok("QUIT", A, PP_CMD_QUIT, 0);
    expect_ok("QUIT", U, PP_CMD_QUIT, 0);
    expect_ok("QUIT", T, PP_CMD_QUIT, 0);
    expect_ok("TOP 2 10", T, PP_CMD_TOP, 2);
    assert_int_equal(cmd.msg, 2);
    assert_int_equal(cmd.lines, 10);
    expect_ok("TOP 2 0", T, PP_CMD_TOP, 2);
    assert_int_equal(cmd.lines, 0);
    expect_ok("UIDL", T, PP_CMD_UIDL, 0);
    expect_ok("UIDL 7", T, PP_CMD_UIDL, 1);
    assert_int_equal(cmd.msg, 7);
    expect_ok("CAPA", A, PP_CMD_CAPA, 0);
    expect_ok("CAPA", T, PP_CMD_CAPA, 0);
    pp_offer plain;
    pp_offer_init(&plain, false, true, false);
    assert_int_equal(parse("STLS", A, &plain), 0);
    assert_int_equal(cmd.cmd, PP_CMD_STLS);
    assert_int_equal(parse("STLS", U, &plain), 0);
    expect_ok("AUTH", A, PP_CMD_AUTH, 0);
    expect_ok("AUTH PLAIN", A, PP_CMD_AUTH, 1);
    assert_string_equal(cmd.arg[0], "PLAIN");
    expect_ok("AUTH plain AGFsaWNlAHB3", U, PP_CMD_AUTH, 2);
    assert_string_equal(cmd.arg[1], "AGFsaWNlAHB3");
    assert_int_equal(cmd.arg_len[1], 12);
    expect_ok("AUTH PLAIN =", A, PP_CMD_AUTH, 2);

    /* Case-insensitive keywords, runs of spaces and trailing spaces. */
    expect_ok("sTaT", T, PP_CMD_STAT, 0);
    expect_ok("stat ", T, PP_CMD_STAT, 0);
    expect_ok("top  1   5  ", T, PP_CMD_TOP, 2);
    assert_int_equal(cmd.msg, 1);
    assert_int_equal(cmd.lines, 5);
    assert_string_equal(cmd.arg[0], "1");
    assert_string_equal(cmd.arg[1], "5");
    expect_ok("LIST  2", T, PP_CMD_LIST, 1);

    /* pp_cmd_name */
    assert_string_equal(pp_cmd_name(PP_CMD_TOP), "TOP");
    assert_string_equal(pp_cmd_name(PP_CMD_APOP), "APOP");
    assert_null(pp_cmd_name(PP_CMD_NONE));
    pp_command_wipe(&cmd);
    assert_int_equal(cmd.cmd, PP_CMD_NONE);
}

static void test_parse_pass(void **state)
{
    (void)state;
    expect_ok("PASS two words", U, PP_CMD_PASS, 1);
    assert_string_equal(cmd.arg[0], "two words");
    expect_ok("PASS  leading and trailing ", U, PP_CMD_PASS, 1);
    assert_string_equal(cmd.arg[0], " leading and trailing ");
    assert_int_equal(cmd.arg_len[0], 22);
    expect_ok("pass \ttab\x7f", U, PP_CMD_PASS, 1); /* anything but CR */
    assert_string_equal(cmd.arg[0], "\ttab\x7f");
    expect_ok("PASS \xc3\xa9t\xc3\xa9", U, PP_CMD_PASS, 1);
    expect_ok("PASS  ", U, PP_CMD_PASS, 1);
    assert_string_equal(cmd.arg[0], " ");
    expect_err("PASS", U, "-ERR Syntax: PASS password\r\n");
    expect_err("PASS ", U, "-ERR Syntax: PASS password\r\n");
    expect_err("PASS a\rb", U, PP_ERR_TXT_BAD_CHAR);
    expect_err("PASS x", A, "-ERR Send USER first\r\n");
    expect_err("PASS x", T, "-ERR Command not valid in TRANSACTION state\r\n");
    /* The password is in the command; wipe clears it. */
    expect_ok("PASS hunter2", U, PP_CMD_PASS, 1);
    pp_command_wipe(&cmd);
    for (size_t i = 0; i < sizeof cmd.text; i++)
        assert_int_equal(cmd.text[i], 0);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_err("", A, "-ERR Empty command line\r\n");
    expect_err("", T, "-ERR Empty command line\r\n");
    expect_err("FOO", A, "-ERR Unknown command\r\n");
    expect_err("LISTX", T, "-ERR Unknown command\r\n");
    expect_err("LI", T, "-ERR Unknown command\r\n");
    expect_err(" STAT", T, "-ERR Unknown command\r\n");
    expect_err("ST4T", T, "-ERR Unknown command\r\n");
    expect_err("STAT\t", T, "-ERR Unknown command\r\n");
    expect_err("STAT\r", T, "-ERR Unknown command\r\n");
    expect_err("XTND XMIT", T, "-ERR Unknown command\r\n");
    expect_err("APOP mrose c4c9334bac560ecc979e58001b3e22fb", A, "-ERR APOP is not supported\r\n");
    expect_err("apop", T, "-ERR APOP is not supported\r\n");
    assert_int_equal(cmd.cmd, PP_CMD_APOP);

    /* Wrong state. */
    const char *trans_only[] = {"STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL"};
    for (size_t i = 0; i < sizeof trans_only / sizeof *trans_only; i++) {
        expect_err(trans_only[i], A, "-ERR Command not valid in AUTHORIZATION state\r\n");
        expect_err(trans_only[i], U, "-ERR Command not valid in AUTHORIZATION state\r\n");
        assert_int_not_equal(cmd.cmd, PP_CMD_NONE);
    }
    const char *authz_only[] = {"USER a", "STLS", "AUTH", "AUTH PLAIN"};
    for (size_t i = 0; i < sizeof authz_only / sizeof *authz_only; i++)
        expect_err(authz_only[i], T, "-ERR Command not valid in TRANSACTION state\r\n");
    /* The state is checked before the arguments. */
    expect_err("RETR", A, PP_ERR_TXT_IN_AUTHORIZATION);
    expect_err("STAT x y", U, PP_ERR_TXT_IN_AUTHORIZATION);

    /* Argument counts. */
    expect_err("USER", A, "-ERR Syntax: USER name\r\n");
    expect_err("USER ", A, "-ERR Syntax: USER name\r\n");
    expect_err("USER a b", A, "-ERR Syntax: USER name\r\n");
    expect_err("STAT 1", T, "-ERR Syntax: STAT\r\n");
    expect_err("LIST 1 2", T, "-ERR Syntax: LIST [msg]\r\n");
    expect_err("RETR", T, "-ERR Syntax: RETR msg\r\n");
    expect_err("RETR 1 2", T, "-ERR Syntax: RETR msg\r\n");
    expect_err("DELE", T, "-ERR Syntax: DELE msg\r\n");
    expect_err("NOOP x", T, "-ERR Syntax: NOOP\r\n");
    expect_err("RSET x", T, "-ERR Syntax: RSET\r\n");
    expect_err("QUIT now", T, "-ERR Syntax: QUIT\r\n");
    expect_err("TOP 1", T, "-ERR Syntax: TOP msg n\r\n");
    expect_err("TOP", T, "-ERR Syntax: TOP msg n\r\n");
    expect_err("TOP 1 2 3", T, "-ERR Syntax: TOP msg n\r\n");
    expect_err("UIDL 1 2", T, "-ERR Syntax: UIDL [msg]\r\n");
    expect_err("CAPA x", A, "-ERR Syntax: CAPA\r\n");
    pp_offer plain;
    pp_offer_init(&plain, false, true, false);
    assert_int_equal(parse("STLS now", A, &plain), -1);
    assert_string_equal(cmd.err, "-ERR Syntax: STLS\r\n");
    expect_err("AUTH PLAIN abc def", A, "-ERR Syntax: AUTH [mechanism [initial-response]]\r\n");
    assert_null(cmd.arg[0]);
    assert_int_equal(cmd.nargs, 0);

    /* Control bytes. */
    expect_err("USER a\tb", A, "-ERR Invalid character in command line\r\n");
    expect_err("USER a\rb", A, PP_ERR_TXT_BAD_CHAR);
    expect_err("USER a\x7f", A, PP_ERR_TXT_BAD_CHAR);
    expect_err("LIST \x01", T, PP_ERR_TXT_BAD_CHAR);

    /* Mechanisms. */
    expect_err("AUTH LOGIN", A, "-ERR Unsupported authentication mechanism\r\n");
    expect_err("AUTH CRAM-MD5", U, PP_ERR_TXT_MECH);
    expect_err("AUTH PLAINX", A, PP_ERR_TXT_MECH);
    expect_err("AUTH PLAIN\xc3", A, PP_ERR_TXT_MECH);

    /* Over-long text handed to the parser directly. */
    char *a255 = repeat('a', 255);
    memcpy(a255, "USER ", 5);
    expect_err(a255, A, "-ERR line too long\r\n");
    a255[254] = '\0';
    expect_ok(a255, A, PP_CMD_USER, 1);
    assert_int_equal(cmd.arg_len[0], 249);
    free(a255);

    /* Out-of-range states accept nothing. */
    pp_offer o = offer_all();
    assert_int_equal(parse("QUIT", (pp_state)7, &o), -1);
    assert_string_equal(cmd.err, PP_ERR_TXT_IN_AUTHORIZATION);
}

static void test_parse_numbers(void **state)
{
    (void)state;
    expect_ok("RETR 2147483648", T, PP_CMD_RETR, 1);
    assert_int_equal(cmd.msg, 2147483648u);
    expect_ok("RETR 2147483647", T, PP_CMD_RETR, 1);
    assert_int_equal(cmd.msg, 2147483647u);
    expect_ok("RETR 007", T, PP_CMD_RETR, 1);
    assert_int_equal(cmd.msg, 7);
    expect_ok("DELE 0000000000000001", T, PP_CMD_DELE, 1);
    assert_int_equal(cmd.msg, 1);
    const char *bad[] = {"0", "00", "2147483649", "4294967296", "4294967297", "99999999999999999999999", "+1",
                         "-1", "1a", "a1", "0x1", "1.", "1e3", "\xd9\xa1", "1,2", "1:2"};
    const char *cmds[] = {"RETR ", "DELE ", "LIST ", "UIDL ", "TOP "};
    for (size_t c = 0; c < sizeof cmds / sizeof *cmds; c++) {
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            char line[128];
            snprintf(line, sizeof line, "%s%s%s", cmds[c], bad[i], c == 4 ? " 1" : "");
            expect_err(line, T, "-ERR Invalid message number\r\n");
        }
    }
    expect_ok("TOP 1 2147483648", T, PP_CMD_TOP, 2);
    assert_int_equal(cmd.lines, 2147483648u);
    expect_ok("TOP 1 00", T, PP_CMD_TOP, 2);
    assert_int_equal(cmd.lines, 0);
    expect_err("TOP 1 2147483649", T, "-ERR Invalid number of lines\r\n");
    expect_err("TOP 1 -1", T, PP_ERR_TXT_BAD_LINES);
    expect_err("TOP 1 x", T, PP_ERR_TXT_BAD_LINES);
    expect_err("TOP 0 x", T, PP_ERR_TXT_BAD_MSG); /* the message number first */
}

static void test_parse_state_table(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        bool in[3]; /* AUTHORIZATION, USER, TRANSACTION */
    } rows[] = {
        {"USER a", {1, 1, 0}},      {"PASS a", {0, 1, 0}},     {"APOP a b", {0, 0, 0}},
        {"AUTH", {1, 1, 0}},        {"AUTH PLAIN", {1, 1, 0}}, {"STLS", {1, 1, 0}},
        {"CAPA", {1, 1, 1}},        {"QUIT", {1, 1, 1}},       {"STAT", {0, 0, 1}},
        {"LIST", {0, 0, 1}},        {"LIST 1", {0, 0, 1}},     {"RETR 1", {0, 0, 1}},
        {"DELE 1", {0, 0, 1}},      {"NOOP", {0, 0, 1}},       {"RSET", {0, 0, 1}},
        {"TOP 1 0", {0, 0, 1}},     {"UIDL", {0, 0, 1}},       {"UIDL 1", {0, 0, 1}},
    };
    pp_offer o;
    pp_offer_init(&o, false, true, true); /* everything offered, STLS too */
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        for (int st = 0; st < 3; st++)
            if ((parse(rows[i].line, (pp_state)st, &o) == 0) != rows[i].in[st])
                fail_msg("\"%s\" in state %d: %s", rows[i].line, st, cmd.err ? cmd.err : "accepted");
}

static void test_parse_offer(void **state)
{
    (void)state;
    pp_offer o;
    /* Plain connection, plaintext login not allowed: USER, PASS, AUTH PLAIN refused. */
    pp_offer_init(&o, false, true, false);
    assert_true(o.stls);
    assert_false(o.user);
    assert_false(o.sasl_plain);
    assert_false(o.tls);
    assert_false(o.expire);
    assert_null(o.implementation);
    const char *plaintext = "-ERR [AUTH] Plaintext authentication disallowed without TLS, use STLS\r\n";
    assert_int_equal(parse("USER a", A, &o), -1);
    assert_string_equal(cmd.err, plaintext);
    assert_int_equal(parse("USER", A, &o), -1); /* before the syntax */
    assert_string_equal(cmd.err, plaintext);
    assert_int_equal(parse("PASS a", U, &o), -1);
    assert_string_equal(cmd.err, plaintext);
    assert_int_equal(parse("AUTH PLAIN", A, &o), -1);
    assert_string_equal(cmd.err, plaintext);
    assert_int_equal(parse("AUTH PLAIN AGEAYg==", A, &o), -1);
    assert_string_equal(cmd.err, plaintext);
    assert_int_equal(parse("AUTH", A, &o), 0); /* listing the mechanisms is harmless */
    assert_int_equal(parse("AUTH LOGIN", A, &o), -1);
    assert_string_equal(cmd.err, PP_ERR_TXT_MECH);
    assert_int_equal(parse("STLS", A, &o), 0);
    assert_int_equal(parse("CAPA", A, &o), 0);

    /* The admin allows plaintext. */
    pp_offer_init(&o, false, true, true);
    assert_true(o.user && o.sasl_plain && o.stls);
    assert_int_equal(parse("USER a", A, &o), 0);
    assert_int_equal(parse("AUTH PLAIN", A, &o), 0);

    /* No certificate: no STLS. */
    pp_offer_init(&o, false, false, true);
    assert_false(o.stls);
    assert_int_equal(parse("STLS", A, &o), -1);
    assert_string_equal(cmd.err, "-ERR STLS not available\r\n");

    /* In TLS: login allowed, STLS refused. */
    pp_offer_init(&o, true, true, false);
    assert_true(o.tls && o.user && o.sasl_plain);
    assert_false(o.stls);
    assert_int_equal(parse("USER a", A, &o), 0);
    assert_int_equal(parse("STLS", A, &o), -1);
    assert_string_equal(cmd.err, "-ERR Command not permitted when TLS active\r\n");
    assert_int_equal(parse("STLS", T, &o), -1); /* the state comes first */
    assert_string_equal(cmd.err, PP_ERR_TXT_IN_TRANSACTION);

    /* In TLS with a mechanism switched off by hand. */
    o.user = false;
    o.sasl_plain = false;
    assert_int_equal(parse("USER a", A, &o), -1);
    assert_string_equal(cmd.err, "-ERR [AUTH] USER/PASS is disabled\r\n");
    assert_int_equal(parse("PASS a", U, &o), -1);
    assert_string_equal(cmd.err, PP_ERR_TXT_NO_USER);
    assert_int_equal(parse("AUTH PLAIN", A, &o), -1);
    assert_string_equal(cmd.err, "-ERR [AUTH] AUTH PLAIN is disabled\r\n");
}

/* ---- writers ---- */

static void test_writers(void **state)
{
    (void)state;
    pu_buf b = {0};
    assert_int_equal(pp_write_ok(&b, NULL), PP_OK);
    assert_int_equal(pp_write_ok(&b, ""), PP_OK);
    assert_int_equal(pp_write_ok(&b, "fine"), PP_OK);
    assert_string_equal(b.data, "+OK\r\n+OK\r\n+OK fine\r\n");
    pu_buf_clear(&b);
    assert_int_equal(pp_write_err(&b, PP_RC_NONE, "no"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_IN_USE, "Maildrop already in use"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_AUTH, "bad"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_SYS_TEMP, "later"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_SYS_PERM, "never"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_NONE, NULL), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_AUTH, ""), PP_OK);
    assert_int_equal(pp_write_err(&b, (pp_rc)99, "x"), PP_OK);
    assert_string_equal(b.data, "-ERR no\r\n"
                                "-ERR [IN-USE] Maildrop already in use\r\n"
                                "-ERR [AUTH] bad\r\n"
                                "-ERR [SYS/TEMP] later\r\n"
                                "-ERR [SYS/PERM] never\r\n"
                                "-ERR\r\n"
                                "-ERR [AUTH]\r\n"
                                "-ERR x\r\n");
    /* The fixed texts match what the writer makes. */
    pu_buf_clear(&b);
    pp_write_err(&b, PP_RC_IN_USE, "Maildrop already in use");
    assert_string_equal(b.data, PP_TXT_IN_USE);
    assert_string_equal(PP_TXT_IN_USE, "-ERR [IN-USE] Maildrop already in use\r\n");
    assert_string_equal(PP_TXT_AUTH_FAILED, "-ERR [AUTH] Invalid user name or password\r\n");
    assert_string_equal(PP_TXT_SYS_TEMP, "-ERR [SYS/TEMP] Temporary failure, try again later\r\n");

    /* Sanitising: nothing ends a line early. */
    pu_buf_clear(&b);
    assert_int_equal(pp_write_ok(&b, "a\r\nb\0"), PP_OK);
    assert_int_equal(pp_write_err(&b, PP_RC_NONE, "x\ny\x7f\t"), PP_OK);
    assert_string_equal(b.data, "+OK a??b\r\n-ERR x?y??\r\n");
    pu_buf_clear(&b);
    assert_int_equal(pp_write_okf(&b, "%d messages (%s)", 3, "x\r"), PP_OK);
    assert_int_equal(pp_write_errf(&b, PP_RC_SYS_TEMP, "try %s", "later\n"), PP_OK);
    assert_string_equal(b.data, "+OK 3 messages (x?)\r\n-ERR [SYS/TEMP] try later?\r\n");

    /* Multi-line lines: dot-stuffed. */
    pu_buf_clear(&b);
    assert_int_equal(pp_write_ok(&b, NULL), PP_OK);
    assert_int_equal(pp_write_ml_line(&b, ".", 1), PP_OK);
    assert_int_equal(pp_write_ml_line(&b, "..x", 3), PP_OK);
    assert_int_equal(pp_write_ml_line(&b, "a.b", 3), PP_OK);
    assert_int_equal(pp_write_ml_line(&b, "", 0), PP_OK);
    assert_int_equal(pp_write_ml_line(&b, "c\rd", 3), PP_OK);
    assert_int_equal(pp_write_ml_end(&b), PP_OK);
    assert_string_equal(b.data, "+OK\r\n..\r\n...x\r\na.b\r\n\r\nc?d\r\n.\r\n");
    pu_buf_free(&b);
}

static void test_capa(void **state)
{
    (void)state;
    pu_buf b = {0};
    pp_offer o;
    /* Port 110 before STLS, plaintext refused: no USER, no SASL. */
    pp_offer_init(&o, false, true, false);
    o.expire = true;
    o.expire_days = 30;
    assert_int_equal(pp_write_capa(&b, &o, A), PP_OK);
    assert_string_equal(b.data, "+OK Capability list follows\r\n"
                                "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                                "STLS\r\nEXPIRE 30\r\n.\r\n");
    /* After STLS (or on 995). */
    pu_buf_clear(&b);
    pp_offer_init(&o, true, true, false);
    o.expire = true;
    o.expire_days = PP_EXPIRE_NEVER;
    o.implementation = "postern 0.1.0";
    assert_int_equal(pp_write_capa(&b, &o, U), PP_OK);
    assert_string_equal(b.data, "+OK Capability list follows\r\n"
                                "TOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                                "SASL PLAIN\r\nEXPIRE NEVER\r\nIMPLEMENTATION postern 0.1.0\r\n.\r\n");
    /* In TRANSACTION the login capabilities are gone. */
    pu_buf_clear(&b);
    assert_int_equal(pp_write_capa(&b, &o, T), PP_OK);
    assert_string_equal(b.data, "+OK Capability list follows\r\n"
                                "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                                "EXPIRE NEVER\r\nIMPLEMENTATION postern 0.1.0\r\n.\r\n");
    /* Everything, EXPIRE 0, no implementation, a sanitised implementation. */
    pu_buf_clear(&b);
    pp_offer_init(&o, false, true, true);
    o.expire = true;
    o.expire_days = 0;
    o.implementation = "";
    assert_int_equal(pp_write_capa(&b, &o, A), PP_OK);
    assert_string_equal(b.data, "+OK Capability list follows\r\n"
                                "TOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                                "SASL PLAIN\r\nSTLS\r\nEXPIRE 0\r\n.\r\n");
    pu_buf_clear(&b);
    o.expire = false;
    o.implementation = "evil\r\n.\r\n";
    assert_int_equal(pp_write_capa(&b, &o, T), PP_OK);
    assert_string_equal(b.data, "+OK Capability list follows\r\n"
                                "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                                "IMPLEMENTATION evil??.??\r\n.\r\n");
    /* A long implementation string is cut. */
    pu_buf_clear(&b);
    char *longimpl = repeat('i', 1000);
    o.implementation = longimpl;
    assert_int_equal(pp_write_capa(&b, &o, T), PP_OK);
    assert_non_null(strstr(b.data, "IMPLEMENTATION iiii"));
    assert_true(b.len < 400);
    free(longimpl);

    /* AUTH without arguments. */
    pu_buf_clear(&b);
    pp_offer_init(&o, true, false, false);
    assert_int_equal(pp_write_auth_mechs(&b, &o), PP_OK);
    assert_string_equal(b.data, "+OK\r\nPLAIN\r\n.\r\n");
    pu_buf_clear(&b);
    pp_offer_init(&o, false, true, false);
    assert_int_equal(pp_write_auth_mechs(&b, &o), PP_OK);
    assert_string_equal(b.data, "+OK\r\n.\r\n");
    pu_buf_free(&b);
}

/* ---- the CRLF form, its size, dot-stuffing ---- */

static char *crlf_of(const char *msg, size_t len, size_t *out_len)
{
    pu_buf b = {0};
    assert_int_equal(pp_message_crlf(msg, len, &b), PP_OK);
    *out_len = b.len;
    if (!b.data)
        return strdup("");
    return b.data;
}

static void expect_crlf(const char *msg, size_t len, const char *want, size_t want_len)
{
    size_t n;
    char *got = crlf_of(msg, len, &n);
    assert_int_equal(n, want_len);
    assert_memory_equal(got, want, n);
    assert_int_equal(pp_message_size(msg, len), want_len);
    free(got);
}
#define EXPECT_CRLF(m, w) expect_crlf(m, sizeof(m) - 1, w, sizeof(w) - 1)

static void test_crlf(void **state)
{
    (void)state;
    EXPECT_CRLF("", "");
    EXPECT_CRLF("a\n", "a\r\n");
    EXPECT_CRLF("a\r\n", "a\r\n");
    EXPECT_CRLF("a", "a\r\n");                         /* final line without newline */
    EXPECT_CRLF("a\nb", "a\r\nb\r\n");
    EXPECT_CRLF("\n", "\r\n");
    EXPECT_CRLF("\n\n\r\n", "\r\n\r\n\r\n");
    EXPECT_CRLF("a\rb\n", "a\rb\r\n");                 /* lone CR stays */
    EXPECT_CRLF("\r", "\r\r\n");
    EXPECT_CRLF("a\r", "a\r\r\n");
    EXPECT_CRLF("\r\r\n", "\r\r\n");
    EXPECT_CRLF("\n\r", "\r\n\r\r\n");
    EXPECT_CRLF(".\n..\r\n", ".\r\n..\r\n");           /* no stuffing in the CRLF form */
    EXPECT_CRLF("x\0y\n", "x\0y\r\n");                 /* bytes pass */
    EXPECT_CRLF("Subject: hi\r\nFrom: a\n\nbody\n.\nend",
                "Subject: hi\r\nFrom: a\r\n\r\nbody\r\n.\r\nend\r\n");
    EXPECT_CRLF("\xff\xfe\n", "\xff\xfe\r\n");

    /* The stuffed multi-line body. */
    pu_buf b = {0};
    assert_int_equal(pp_write_message(&b, ".\n..x\r\na.\n.", 11, -1), PP_OK);
    assert_string_equal(b.data, "..\r\n...x\r\na.\r\n..\r\n.\r\n");
    pu_buf_clear(&b);
    assert_int_equal(pp_write_message(&b, "", 0, -1), PP_OK);
    assert_string_equal(b.data, ".\r\n");
    pu_buf_clear(&b);
    assert_int_equal(pp_write_message(&b, "a\r.b\n", 5, -1), PP_OK); /* CR does not start a line */
    assert_string_equal(b.data, "a\r.b\r\n.\r\n");
    pu_buf_clear(&b);
    assert_int_equal(pp_write_message(&b, "\n.\n", 3, -1), PP_OK);
    assert_string_equal(b.data, "\r\n..\r\n.\r\n");
    pu_buf_free(&b);
}

/* Undoes dot-stuffing and checks the terminator; returns the body. */
static void unstuff(const char *s, size_t n, pu_buf *out)
{
    assert_true(n >= 3);
    assert_memory_equal(s + n - 3, ".\r\n", 3);
    n -= 3;
    size_t i = 0;
    bool bol = true;
    while (i < n) {
        if (bol) {
            if (s[i] == '.') {
                assert_true(i + 1 < n);
                assert_int_equal(s[i + 1], '.'); /* every line starting with '.' is stuffed */
                i++;
            }
        }
        pu_buf_add(out, s + i, 1);
        bol = s[i] == '\n';
        i++;
    }
    assert_true(n == 0 || s[n - 1] == '\n');
}

static void random_message(pu_buf *m, size_t max)
{
    static const char alphabet[] = "\n\n\n\r\r..ab :";
    size_t n = rnd() % (max + 1);
    for (size_t i = 0; i < n; i++) {
        char ch = rnd() % 4 ? alphabet[rnd() % (sizeof alphabet - 1)] : (char)rnd();
        pu_buf_add(m, &ch, 1);
    }
}

/* Feeds msg in random slices through a converter; returns the output. */
static uint64_t stream(const char *msg, size_t len, unsigned flags, uint32_t top, pu_buf *out, bool count_only)
{
    pp_crlf c;
    pp_crlf_init(&c, flags, top);
    size_t pos = 0;
    bool cut = false;
    while (pos < len) {
        size_t n = 1 + rnd() % 9;
        if (n > len - pos)
            n = len - pos;
        int r = pp_crlf_add(&c, msg + pos, n, count_only ? NULL : out);
        assert_true(r == 0 || r == 1);
        if (cut)
            assert_int_equal(r, 1); /* once cut, always cut */
        cut = r == 1;
        pos += n;
    }
    assert_int_equal(pp_crlf_end(&c, count_only ? NULL : out), PP_OK);
    return c.octets;
}

static void test_size_equality(void **state)
{
    (void)state;
    static const char *fixed[] = {"",       "\r",       "\n",      "\r\n",      "a",        ".",
                                  "..",     ".\r",      "\r.",     "\n.",       ".\n.",     "a\rb",
                                  "a\r\rb", "\r\r\n\n", "x\n\r\n", "a\n\nb\n.", "\r\n.\r\n"};
    for (int round = 0; round < 3000; round++) {
        pu_buf m = {0};
        if (round < (int)(sizeof fixed / sizeof *fixed))
            pu_buf_add(&m, fixed[round], strlen(fixed[round]));
        else
            random_message(&m, round % 10 == 0 ? 2000 : 40);
        const char *msg = m.data ? m.data : "";
        size_t len = m.len;

        size_t n;
        char *conv = crlf_of(msg, len, &n);
        uint64_t size = pp_message_size(msg, len);
        assert_int_equal(size, n);
        /* Every LF in the CRLF form follows a CR, and it ends with CRLF unless empty. */
        for (size_t i = 0; i < n; i++)
            if (conv[i] == '\n')
                assert_true(i > 0 && conv[i - 1] == '\r');
        assert_true(n == 0 || (n >= 2 && conv[n - 2] == '\r' && conv[n - 1] == '\n'));

        /* Streamed: same bytes, same count, with or without output. */
        pu_buf s = {0};
        assert_int_equal(stream(msg, len, 0, 0, &s, false), size);
        assert_int_equal(s.len, n);
        assert_memory_equal(s.data ? s.data : "", conv, n);
        assert_int_equal(stream(msg, len, 0, 0, NULL, true), size);

        /* Stuffed: unstuffing gives the CRLF form back; octets exclude stuffing. */
        pu_buf st = {0}, un = {0};
        assert_int_equal(stream(msg, len, PP_CRLF_STUFF, 0, &st, false), size);
        unstuff(st.data, st.len, &un);
        assert_int_equal(un.len, n);
        assert_memory_equal(un.data ? un.data : "", conv, n);
        pu_buf whole = {0};
        assert_int_equal(pp_write_message(&whole, msg, len, -1), PP_OK);
        assert_int_equal(whole.len, st.len);
        assert_memory_equal(whole.data, st.data, st.len);

        /* TOP with a huge n is the whole message. */
        pu_buf top = {0};
        assert_int_equal(pp_write_message(&top, msg, len, INT64_MAX), PP_OK);
        if (memmem(msg, len, "\n\n", 2) == NULL && memmem(msg, len, "\n\r\n", 3) == NULL &&
            !(len && msg[0] == '\n') && !(len > 1 && msg[0] == '\r' && msg[1] == '\n')) {
            /* No blank line: all headers, all sent. */
            assert_int_equal(top.len, whole.len);
            assert_memory_equal(top.data, whole.data, top.len);
        }
        /* TOP output is always a prefix of RETR's, then the terminator. */
        assert_true(top.len <= whole.len);
        assert_memory_equal(top.data, whole.data, top.len - 3);
        assert_memory_equal(top.data + top.len - 3, ".\r\n", 3);

        free(conv);
        pu_buf_free(&m);
        pu_buf_free(&s);
        pu_buf_free(&st);
        pu_buf_free(&un);
        pu_buf_free(&whole);
        pu_buf_free(&top);
    }
}

static void expect_top(const char *msg, int64_t n, const char *want)
{
    pu_buf b = {0};
    assert_int_equal(pp_write_message(&b, msg, strlen(msg), n), PP_OK);
    assert_string_equal(b.data, want);
    /* Streamed in slices: the same. */
    if (n >= 0) {
        for (int k = 0; k < 20; k++) {
            pu_buf s = {0};
            stream(msg, strlen(msg), PP_CRLF_STUFF | PP_CRLF_TOP, (uint32_t)n, &s, false);
            assert_string_equal(s.data, want);
            pu_buf_free(&s);
        }
    }
    pu_buf_free(&b);
}

static void test_top(void **state)
{
    (void)state;
    const char *m = "From: a\nSubject: s\n\nline1\n.line2\nline3\n";
    expect_top(m, 0, "From: a\r\nSubject: s\r\n\r\n.\r\n");
    expect_top(m, 1, "From: a\r\nSubject: s\r\n\r\nline1\r\n.\r\n");
    expect_top(m, 2, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\n.\r\n");
    expect_top(m, 3, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    expect_top(m, 100, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    expect_top(m, UINT32_MAX, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    expect_top(m, -1, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    /* CRLF input, a final body line without newline. */
    const char *c = "A: 1\r\nB: 2\r\n\r\nx\r\n\r\ny";
    expect_top(c, 0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
    expect_top(c, 1, "A: 1\r\nB: 2\r\n\r\nx\r\n.\r\n");
    expect_top(c, 2, "A: 1\r\nB: 2\r\n\r\nx\r\n\r\n.\r\n"); /* an empty body line counts */
    expect_top(c, 3, "A: 1\r\nB: 2\r\n\r\nx\r\n\r\ny\r\n.\r\n");
    expect_top(c, 4, "A: 1\r\nB: 2\r\n\r\nx\r\n\r\ny\r\n.\r\n");
    /* No body: headers and the blank line. */
    expect_top("A: 1\n\n", 0, "A: 1\r\n\r\n.\r\n");
    expect_top("A: 1\n\n", 5, "A: 1\r\n\r\n.\r\n");
    /* No blank line at all: everything is header, sent whole. */
    expect_top("A: 1\nB: 2\n", 0, "A: 1\r\nB: 2\r\n.\r\n");
    expect_top("A: 1\nB: 2", 3, "A: 1\r\nB: 2\r\n.\r\n");
    /* Empty message; blank first line (no headers). */
    expect_top("", 0, ".\r\n");
    expect_top("", 10, ".\r\n");
    expect_top("\nbody\nmore\n", 0, "\r\n.\r\n");
    expect_top("\r\nbody\nmore\n", 1, "\r\nbody\r\n.\r\n");
    /* A line holding only a lone CR is not blank, nor is " ". */
    expect_top("A: 1\n\r\r\nB\n \nC\n\nbody\n", 0, "A: 1\r\n\r\r\nB\r\n \r\nC\r\n\r\n.\r\n");
    /* A dot header line is stuffed too. */
    expect_top(".A\n\n.\n", 1, "..A\r\n\r\n..\r\n.\r\n");

    /* pp_crlf_add says when the cut is reached, and ignores what follows. */
    pp_crlf cv;
    pu_buf b = {0};
    pp_crlf_init(&cv, PP_CRLF_STUFF | PP_CRLF_TOP, 1);
    assert_int_equal(pp_crlf_add(&cv, "H: v\n", 5, &b), 0);
    assert_int_equal(pp_crlf_add(&cv, "\nbody1\nbo", 9, &b), 1);
    assert_int_equal(pp_crlf_add(&cv, "dy2\n", 4, &b), 1);
    assert_int_equal(pp_crlf_end(&cv, &b), PP_OK);
    assert_string_equal(b.data, "H: v\r\n\r\nbody1\r\n.\r\n");
    assert_int_equal(cv.octets, 15);
    pu_buf_free(&b);
}

/* ---- maildrop ---- */

static pp_maildrop *sample(void)
{
    pp_msg msgs[] = {
        {120, "uid-one", 7, false},
        {200, "uid-two", 7, false},
        {5, "gone", 4, true}, /* removed before the session */
        {1000, "~!x", 3, false},
    };
    pp_maildrop *md = pp_maildrop_new(msgs, 4);
    assert_non_null(md);
    return md;
}

static void reply(int want, int got, pu_buf *b, const char *text)
{
    assert_int_equal(got, want);
    assert_string_equal(b->data, text);
    pu_buf_clear(b);
}

static void test_maildrop(void **state)
{
    (void)state;
    pp_maildrop *md = sample();
    pu_buf b = {0};
    assert_int_equal(pp_maildrop_total(md), 4);
    assert_int_equal(pp_maildrop_count(md), 3);
    assert_int_equal(pp_maildrop_octets(md), 1320);

    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 3 1320\r\n");
    reply(PP_OK, pp_md_list(md, 0, &b), &b, "+OK 3 messages (1320 octets)\r\n1 120\r\n2 200\r\n4 1000\r\n.\r\n");
    reply(PP_OK, pp_md_list(md, 2, &b), &b, "+OK 2 200\r\n");
    reply(PP_ERR, pp_md_list(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");
    reply(PP_ERR, pp_md_list(md, 5, &b), &b, "-ERR no such message, only 4 messages in maildrop\r\n");
    reply(PP_OK, pp_md_uidl(md, 0, &b), &b,
          "+OK unique-id listing follows\r\n1 uid-one\r\n2 uid-two\r\n4 ~!x\r\n.\r\n");
    reply(PP_OK, pp_md_uidl(md, 4, &b), &b, "+OK 4 ~!x\r\n");
    reply(PP_ERR, pp_md_uidl(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");
    reply(PP_ERR, pp_md_uidl(md, 2147483648u, &b), &b, "-ERR no such message, only 4 messages in maildrop\r\n");
    reply(PP_BODY, pp_md_retr(md, 1, &b), &b, "+OK 120 octets\r\n");
    reply(PP_BODY, pp_md_top(md, 4, &b), &b, "+OK top of message follows\r\n");
    reply(PP_ERR, pp_md_retr(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");
    reply(PP_ERR, pp_md_top(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");
    reply(PP_ERR, pp_md_retr(md, 0, &b), &b, "-ERR no such message, only 4 messages in maildrop\r\n");
    reply(PP_ERR, pp_md_dele(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");

    /* DELE: hidden from STAT, LIST, UIDL; refused by RETR, TOP, DELE; numbering stays. */
    reply(PP_OK, pp_md_dele(md, 2, &b), &b, "+OK message 2 deleted\r\n");
    reply(PP_ERR, pp_md_dele(md, 2, &b), &b, "-ERR message 2 already deleted\r\n");
    reply(PP_ERR, pp_md_retr(md, 2, &b), &b, "-ERR message 2 already deleted\r\n");
    reply(PP_ERR, pp_md_top(md, 2, &b), &b, "-ERR message 2 already deleted\r\n");
    reply(PP_ERR, pp_md_list(md, 2, &b), &b, "-ERR message 2 already deleted\r\n");
    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 2 1120\r\n");
    reply(PP_OK, pp_md_list(md, 0, &b), &b, "+OK 2 messages (1120 octets)\r\n1 120\r\n4 1000\r\n.\r\n");
    reply(PP_OK, pp_md_uidl(md, 0, &b), &b, "+OK unique-id listing follows\r\n1 uid-one\r\n4 ~!x\r\n.\r\n");
    reply(PP_BODY, pp_md_retr(md, 4, &b), &b, "+OK 1000 octets\r\n");
    reply(PP_OK, pp_md_dele(md, 4, &b), &b, "+OK message 4 deleted\r\n");
    reply(PP_OK, pp_md_dele(md, 1, &b), &b, "+OK message 1 deleted\r\n");
    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 0 0\r\n");
    reply(PP_OK, pp_md_list(md, 0, &b), &b, "+OK 0 messages (0 octets)\r\n.\r\n");
    reply(PP_OK, pp_md_uidl(md, 0, &b), &b, "+OK unique-id listing follows\r\n.\r\n");

    uint32_t nums[8] = {0};
    assert_int_equal(pp_maildrop_deleted(md, nums, 8), 3);
    assert_int_equal(nums[0], 1);
    assert_int_equal(nums[1], 2);
    assert_int_equal(nums[2], 4);
    assert_int_equal(pp_maildrop_deleted(md, nums, 1), 3); /* counts past cap */
    assert_int_equal(pp_maildrop_deleted(md, NULL, 0), 3);

    /* RSET brings back this session's deletions, not the earlier one. */
    reply(PP_OK, pp_md_rset(md, &b), &b, "+OK maildrop has 3 messages (1320 octets)\r\n");
    assert_int_equal(pp_maildrop_deleted(md, nums, 8), 0);
    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 3 1320\r\n");
    reply(PP_ERR, pp_md_retr(md, 3, &b), &b, "-ERR message 3 already deleted\r\n");
    reply(PP_OK, pp_md_rset(md, &b), &b, "+OK maildrop has 3 messages (1320 octets)\r\n");
    reply(PP_OK, pp_md_dele(md, 4, &b), &b, "+OK message 4 deleted\r\n");
    assert_int_equal(pp_maildrop_deleted(md, nums, 8), 1);
    assert_int_equal(nums[0], 4);
    pp_maildrop_free(md);
    pp_maildrop_free(NULL);

    /* One message, and an empty maildrop. */
    pp_msg one = {7, "a", 1, false};
    md = pp_maildrop_new(&one, 1);
    reply(PP_OK, pp_md_list(md, 0, &b), &b, "+OK 1 message (7 octets)\r\n1 7\r\n.\r\n");
    reply(PP_ERR, pp_md_retr(md, 2, &b), &b, "-ERR no such message, only 1 message in maildrop\r\n");
    reply(PP_OK, pp_md_dele(md, 1, &b), &b, "+OK message 1 deleted\r\n");
    reply(PP_OK, pp_md_rset(md, &b), &b, "+OK maildrop has 1 message (7 octets)\r\n");
    pp_maildrop_free(md);
    md = pp_maildrop_new(NULL, 0);
    assert_non_null(md);
    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 0 0\r\n");
    reply(PP_OK, pp_md_list(md, 0, &b), &b, "+OK 0 messages (0 octets)\r\n.\r\n");
    reply(PP_ERR, pp_md_list(md, 1, &b), &b, "-ERR no such message, only 0 messages in maildrop\r\n");
    reply(PP_ERR, pp_md_dele(md, 1, &b), &b, "-ERR no such message, only 0 messages in maildrop\r\n");
    reply(PP_OK, pp_md_rset(md, &b), &b, "+OK maildrop has 0 messages (0 octets)\r\n");
    pp_maildrop_free(md);

    /* Huge sizes print exactly. */
    pp_msg big[] = {{UINT64_MAX - 1, "a", 1, false}, {1, "b", 1, false}};
    md = pp_maildrop_new(big, 2);
    reply(PP_OK, pp_md_stat(md, &b), &b, "+OK 2 18446744073709551615\r\n");
    reply(PP_BODY, pp_md_retr(md, 1, &b), &b, "+OK 18446744073709551614 octets\r\n");
    pp_maildrop_free(md);
    pu_buf_free(&b);
}

static void test_maildrop_invalid(void **state)
{
    (void)state;
    char u70[71], u71[72];
    memset(u70, 'u', 70);
    u70[70] = '\0';
    memset(u71, 'u', 71);
    u71[71] = '\0';
    assert_true(pp_uidl_valid(u70, 70));
    assert_false(pp_uidl_valid(u71, 71));
    assert_false(pp_uidl_valid("", 0));
    assert_false(pp_uidl_valid(NULL, 0));
    assert_false(pp_uidl_valid("a b", 3));
    assert_false(pp_uidl_valid("a\x7f", 2));
    assert_false(pp_uidl_valid("\x80", 1));
    assert_false(pp_uidl_valid("a\0", 2));
    assert_true(pp_uidl_valid("!~", 2));

    pp_msg ok70 = {1, u70, 70, false};
    pp_maildrop *md = pp_maildrop_new(&ok70, 1);
    assert_non_null(md);
    pu_buf b = {0};
    assert_int_equal(pp_md_uidl(md, 1, &b), PP_OK);
    assert_int_equal(b.len, strlen("+OK 1 ") + 70 + 2);
    pu_buf_free(&b);
    pp_maildrop_free(md);

    const char *bad[] = {u71, "", "has space", "tab\t"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pp_msg m[2] = {{1, "fine", 4, false}, {2, bad[i], strlen(bad[i]), false}};
        errno = 0;
        assert_null(pp_maildrop_new(m, 2));
        assert_int_equal(errno, EINVAL);
    }
    /* Duplicates, deleted ones included. */
    pp_msg dup[3] = {{1, "x", 1, false}, {2, "y", 1, false}, {3, "x", 1, true}};
    errno = 0;
    assert_null(pp_maildrop_new(dup, 3));
    assert_int_equal(errno, EINVAL);
    /* Sizes that overflow the total. */
    pp_msg over[2] = {{UINT64_MAX, "x", 1, false}, {1, "y", 1, false}};
    errno = 0;
    assert_null(pp_maildrop_new(over, 2));
    assert_int_equal(errno, EINVAL);
    /* Too many messages for the numbering. */
    errno = 0;
    assert_null(pp_maildrop_new(dup, (size_t)PP_MSG_MAX + 1));
    assert_int_equal(errno, EINVAL);
}

static void test_md_command(void **state)
{
    (void)state;
    pp_maildrop *md = sample();
    pu_buf b = {0};
    pp_offer o = offer_all();
    static const struct {
        const char *line;
        int result;
        const char *reply;
    } rows[] = {
        {"STAT", PP_OK, "+OK 3 1320\r\n"},
        {"LIST", PP_OK, "+OK 3 messages (1320 octets)\r\n1 120\r\n2 200\r\n4 1000\r\n.\r\n"},
        {"LIST 1", PP_OK, "+OK 1 120\r\n"},
        {"UIDL", PP_OK, "+OK unique-id listing follows\r\n1 uid-one\r\n2 uid-two\r\n4 ~!x\r\n.\r\n"},
        {"UIDL 2", PP_OK, "+OK 2 uid-two\r\n"},
        {"NOOP", PP_OK, "+OK\r\n"},
        {"RETR 1", PP_BODY, "+OK 120 octets\r\n"},
        {"TOP 2 5", PP_BODY, "+OK top of message follows\r\n"},
        {"DELE 1", PP_OK, "+OK message 1 deleted\r\n"},
        {"RETR 1", PP_ERR, "-ERR message 1 already deleted\r\n"},
        {"DELE 9", PP_ERR, "-ERR no such message, only 4 messages in maildrop\r\n"},
        {"RSET", PP_OK, "+OK maildrop has 3 messages (1320 octets)\r\n"},
        {"QUIT", PP_PASS, ""},
        {"CAPA", PP_PASS, ""},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        assert_int_equal(parse(rows[i].line, T, &o), 0);
        pu_buf_clear(&b);
        buf_str(&b, "");
        assert_int_equal(pp_md_command(md, &cmd, &b), rows[i].result);
        assert_string_equal(b.data, rows[i].reply);
    }
    pu_buf_free(&b);
    pp_maildrop_free(md);
}

/* ---- SASL PLAIN ---- */

static int plain(const char *raw, size_t rawlen, pp_plain *p)
{
    char b64[4096];
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)raw, rawlen, sodium_base64_VARIANT_ORIGINAL);
    return pp_sasl_plain(b64, strlen(b64), p);
}
#define PLAIN(lit, p) plain(lit, sizeof(lit) - 1, p)

static void test_sasl_plain(void **state)
{
    (void)state;
    pp_plain p;
    assert_int_equal(PLAIN("\0alice@example.org\0pass word", &p), 0);
    assert_string_equal(p.authcid, "alice@example.org");
    assert_int_equal(p.authcid_len, 17);
    assert_string_equal(p.password, "pass word");
    assert_int_equal(p.password_len, 9);
    assert_null(p.err);
    pp_plain_wipe(&p);
    for (size_t i = 0; i < sizeof p.buf; i++)
        assert_int_equal(p.buf[i], 0);
    assert_null(p.authcid);

    assert_int_equal(PLAIN("bob\0bob\0pw", &p), 0); /* authzid = authcid */
    assert_string_equal(p.authcid, "bob");
    assert_string_equal(p.password, "pw");
    /* The well-known example, as a client sends it. */
    assert_int_equal(pp_sasl_plain("AHRlc3QAMTIzNA==", 16, &p), 0);
    assert_string_equal(p.authcid, "test");
    assert_string_equal(p.password, "1234");

    assert_int_equal(PLAIN("admin\0bob\0pw", &p), -1);
    assert_string_equal(p.err, "-ERR [AUTH] Acting as another user is not supported\r\n");
    assert_null(p.authcid);
    assert_int_equal(PLAIN("bo\0bob\0pw", &p), -1);
    assert_string_equal(p.err, PP_ERR_TXT_SASL_AUTHZID);
    assert_int_equal(PLAIN("bobb\0bob\0pw", &p), -1);
    assert_string_equal(p.err, PP_ERR_TXT_SASL_AUTHZID);

    const char *malformed = "-ERR Malformed PLAIN response\r\n";
    assert_int_equal(PLAIN("\0bob\0", &p), -1); /* empty password */
    assert_string_equal(p.err, malformed);
    assert_int_equal(PLAIN("\0\0pw", &p), -1); /* empty authcid */
    assert_string_equal(p.err, malformed);
    assert_int_equal(PLAIN("bobpw", &p), -1);
    assert_string_equal(p.err, malformed);
    assert_int_equal(PLAIN("\0bobpw", &p), -1);
    assert_string_equal(p.err, malformed);
    assert_int_equal(PLAIN("\0bob\0p\0w", &p), -1); /* three NULs */
    assert_string_equal(p.err, malformed);
    for (size_t i = 0; i < sizeof p.buf; i++)
        assert_int_equal(p.buf[i], 0); /* wiped on failure */
    assert_int_equal(pp_sasl_plain("=", 1, &p), -1); /* empty response */
    assert_string_equal(p.err, malformed);
    assert_int_equal(pp_sasl_plain("", 0, &p), -1);
    assert_string_equal(p.err, malformed);

    assert_int_equal(pp_sasl_plain("*", 1, &p), 1);
    assert_string_equal(p.err, "-ERR Authentication cancelled\r\n");

    const char *b64err = "-ERR Invalid base64 in the authentication response\r\n";
    const char *bad[] = {"AHRlc3QAMTIzNA=", "AHRlc3QAMTIzNA", "AHRlc3QAMTIzNA==x", "AHRl c3QAMTIzNA==",
                         "AHRlc3QAMTIzNA=\r", "!!!!", "AHRlc3QAMTIzNA===", "==", "*x", "AHRlc3QAMTIzNB=="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(pp_sasl_plain(bad[i], strlen(bad[i]), &p), -1);
        if (strcmp(p.err, b64err) != 0)
            fail_msg("\"%s\": %s", bad[i], p.err);
    }

    /* The longest continuation line decodes; anything longer cannot be valid. */
    char raw[1533];
    memset(raw, 'p', sizeof raw);
    raw[0] = '\0';
    memcpy(raw + 1, "u", 1);
    raw[2] = '\0';
    assert_int_equal(plain(raw, sizeof raw, &p), 0);
    assert_int_equal(p.password_len, sizeof raw - 3);
    char *longb64 = repeat('A', 2100);
    assert_int_equal(pp_sasl_plain(longb64, 2100, &p), -1);
    assert_string_equal(p.err, malformed);
    free(longb64);
    pp_plain_wipe(&p);
}

/* ---- a whole pipelined session through reader, parser, maildrop and writers ---- */

static void test_session(void **state)
{
    (void)state;
    const char *client = "CAPA\r\n"
                         "USER alice\r\n"
                         "STLS\r\n"
                         "AUTH PLAIN\r\n"
                         "AGFsaWNlAHNlY3JldA==\r\n" /* \0alice\0secret */
                         "STAT\r\n"
                         "LIST\r\n"
                         "UIDL 2\r\n"
                         "RETR 1\r\n"
                         "TOP 2 0\r\n"
                         "DELE 1\r\n"
                         "RETR 1\r\n"
                         "LIST 1\r\n"
                         "bogus\r\n"
                         "QUIT\r\n";
    const char *bodies[] = {"Subject: one\n\nHello\n.\n", "Subject: two\r\n\r\nBye"};
    const char *want = "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
                       "PIPELINING\r\nSASL PLAIN\r\nEXPIRE 30\r\nIMPLEMENTATION postern\r\n.\r\n"
                       "+OK Send PASS\r\n"
                       "-ERR Command not permitted when TLS active\r\n"
                       "+ \r\n"
                       "+OK Logged in\r\n"
                       "+OK 2 47\r\n"
                       "+OK 2 messages (47 octets)\r\n1 26\r\n2 21\r\n.\r\n"
                       "+OK 2 <two@x>\r\n"
                       "+OK 26 octets\r\nSubject: one\r\n\r\nHello\r\n..\r\n.\r\n"
                       "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n"
                       "+OK message 1 deleted\r\n"
                       "-ERR message 1 already deleted\r\n"
                       "-ERR message 1 already deleted\r\n"
                       "-ERR Unknown command\r\n"
                       "+OK Bye\r\n";
    assert_int_equal(pp_message_size(bodies[0], strlen(bodies[0])), 26);
    assert_int_equal(pp_message_size(bodies[1], strlen(bodies[1])), 21);

    for (size_t step = 0; step < 4; step++) {
        pp_reader *r = pp_reader_new();
        pp_offer o;
        pp_offer_init(&o, true, true, false);
        o.expire = true;
        o.expire_days = 30;
        o.implementation = "postern";
        pp_state st = PP_STATE_AUTHORIZATION;
        bool sasl_wait = false;
        pp_maildrop *md = NULL;
        pu_buf out = {0};
        uint32_t deleted[4];
        size_t ndel = 0;
        size_t len = strlen(client), pos = 0;
        while (pos < len) {
            size_t n = step == 0 ? len - pos : 1 + rnd() % (step * 5);
            if (n > len - pos)
                n = len - pos;
            size_t off = 0;
            while (off < n) {
                size_t used;
                pp_read_status rs = pp_reader_feed(r, client + pos + off, n - off, &used);
                off += used;
                if (rs == PP_READ_MORE)
                    break;
                assert_int_equal(rs, PP_READ_LINE);
                size_t ll;
                const char *line = pp_reader_line(r, &ll);
                if (sasl_wait) {
                    sasl_wait = false;
                    pp_plain p;
                    assert_int_equal(pp_sasl_plain(line, ll, &p), 0);
                    assert_string_equal(p.authcid, "alice");
                    assert_string_equal(p.password, "secret");
                    pp_plain_wipe(&p);
                    pp_msg msgs[2] = {{26, "<one@x>", 7, false}, {21, "<two@x>", 7, false}};
                    md = pp_maildrop_new(msgs, 2);
                    buf_str(&out, PP_TXT_LOGGED_IN);
                    st = PP_STATE_TRANSACTION;
                    continue;
                }
                pp_command c;
                if (pp_parse(line, ll, st, &o, &c) < 0) {
                    buf_str(&out, c.err);
                    continue;
                }
                switch (c.cmd) {
                case PP_CMD_CAPA:
                    pp_write_capa(&out, &o, st);
                    break;
                case PP_CMD_USER:
                    buf_str(&out, PP_TXT_USER_OK);
                    st = PP_STATE_USER;
                    break;
                case PP_CMD_AUTH:
                    assert_int_equal(pp_reader_auth_line(r), 0);
                    buf_str(&out, PP_TXT_AUTH_CONTINUE);
                    sasl_wait = true;
                    break;
                case PP_CMD_QUIT:
                    ndel = pp_maildrop_deleted(md, deleted, 4);
                    buf_str(&out, PP_TXT_BYE);
                    break;
                default: {
                    int res = pp_md_command(md, &c, &out);
                    if (res == PP_BODY) {
                        const char *m = bodies[c.msg - 1];
                        pp_crlf cv;
                        pp_crlf_init(&cv, PP_CRLF_STUFF | (c.cmd == PP_CMD_TOP ? PP_CRLF_TOP : 0), c.lines);
                        pp_crlf_add(&cv, m, strlen(m), &out);
                        pp_crlf_end(&cv, &out);
                        if (c.cmd == PP_CMD_RETR)
                            assert_int_equal(cv.octets, pp_message_size(m, strlen(m)));
                    }
                    break;
                }
                }
                pp_command_wipe(&c);
            }
            pos += n;
        }
        assert_string_equal(out.data, want);
        assert_int_equal(ndel, 1);
        assert_int_equal(deleted[0], 1);
        pu_buf_free(&out);
        pp_maildrop_free(md);
        pp_reader_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_basic),
        cmocka_unit_test(test_reader_limits),
        cmocka_unit_test(test_reader_slicing),
        cmocka_unit_test(test_reader_wipe_reset),
        cmocka_unit_test(test_parse_commands),
        cmocka_unit_test(test_parse_pass),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_parse_state_table),
        cmocka_unit_test(test_parse_offer),
        cmocka_unit_test(test_writers),
        cmocka_unit_test(test_capa),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_size_equality),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_maildrop),
        cmocka_unit_test(test_maildrop_invalid),
        cmocka_unit_test(test_md_command),
        cmocka_unit_test(test_sasl_plain),
        cmocka_unit_test(test_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
