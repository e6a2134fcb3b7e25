/* LMTP: the DATA un-stuffer (whole, byte by byte, terminator split anywhere), the command
 * parser, the encrypted spool, and whole sessions against a fake delivery backend over
 * in-memory files (pipelining, per-recipient replies, limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "deliver/deliver_int.h"
#include "deliver/lmtp.h"
#include "util/util.h"

/* ---- un-stuffing ---- */

typedef struct unstuffed {
    uint8_t *data;
    size_t len, consumed;
    int done;
} unstuffed;

/* Feeds in in slices of at most step bytes; stops after the terminator like the session. */
static unstuffed run_unstuff(const char *in, size_t len, size_t step)
{
    unstuffed r = {.data = malloc(len + 1)};
    assert_non_null(r.data);
    lmtp_unstuff u;
    lmtp_unstuff_init(&u);
    uint8_t *out = malloc(step + 1);
    assert_non_null(out);
    while (r.consumed < len && !u.done) {
        size_t n = len - r.consumed < step ? len - r.consumed : step, used = 0;
        size_t got = lmtp_unstuff_feed(&u, (const uint8_t *)in + r.consumed, n, &used, out);
        assert_true(got <= n + 1);
        assert_true(used <= n);
        if (!u.done)
            assert_int_equal(used, n);
        memcpy(r.data + r.len, out, got);
        r.len += got;
        r.consumed += used;
    }
    free(out);
    r.done = u.done;
    return r;
}

static void expect_unstuff(const char *in, const char *want, size_t want_consumed)
{
    size_t len = strlen(in);
    for (size_t step = 1; step <= len + 1; step++) {
        unstuffed r = run_unstuff(in, len, step);
        if (!r.done || r.len != strlen(want) || memcmp(r.data, want, r.len) != 0 || r.consumed != want_consumed)
            fail_msg("step %zu: got '%.*s' (done %d, consumed %zu) for '%s'", step, (int)r.len, r.data, r.done,
                     r.consumed, in);
        free(r.data);
    }
}

static void test_unstuff(void **state)
{
    (void)state;
    expect_unstuff(".\r\n", "", 3);
    expect_unstuff("a\r\n.\r\n", "a\r\n", 6);
    expect_unstuff("..\r\n.\r\n", ".\r\n", 7);
    expect_unstuff("..hidden\r\nx.y\r\n...\r\n.\r\n", ".hidden\r\nx.y\r\n..\r\n", 23);
    /* what follows the terminator is the next command */
    expect_unstuff("m\r\n.\r\nQUIT\r\n", "m\r\n", 6);
    /* a stuffed line with a bare CR, and CRs before the end */
    expect_unstuff(".\rx\r\n.\r\n", "\rx\r\n", 8);
    expect_unstuff("a\r\r\n.\r\n", "a\r\r\n", 7);
    /* bare LF does not end a line: "\n.\n" is data, not the end (no smuggling) */
    expect_unstuff("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 10);
    expect_unstuff("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", 11);
}

static void test_unstuff_unterminated(void **state)
{
    (void)state;
    const char *in = "abc\r\n.\r";
    unstuffed r = run_unstuff(in, strlen(in), 3);
    assert_false(r.done);
    assert_int_equal(r.len, 5);
    assert_int_equal(r.consumed, strlen(in));
    free(r.data);
}

/* ---- command parsing ---- */

static lmtp_cmd cmd;

static int parse(const char *line, const char **reply)
{
    *reply = NULL;
    return lmtp_parse_command(line, strlen(line), &cmd, reply);
}

static void expect_reply(const char *line, const char *code)
{
    const char *reply;
    assert_int_equal(parse(line, &reply), -1);
    if (strncmp(reply, code, strlen(code)) != 0)
        fail_msg("'%s': reply '%s', wanted %s", line, reply, code);
}

static void test_parse_commands(void **state)
{
    (void)state;
    const char *reply;
    assert_int_equal(parse("LHLO mx.example.org", &reply), 0);
    assert_int_equal(cmd.verb, LMTP_LHLO);
    assert_string_equal(cmd.arg, "mx.example.org");
    assert_int_equal(parse("mail from:<a@b.example> SIZE=1234 BODY=8BITMIME", &reply), 0);
    assert_int_equal(cmd.verb, LMTP_MAIL);
    assert_string_equal(cmd.path, "a@b.example");
    assert_int_equal(cmd.has_size, 1);
    assert_int_equal(cmd.size, 1234);
    /* RFC 6531: without it, Postfix bounces mail with UTF-8 addresses or headers */
    assert_int_equal(parse("MAIL FROM:<j\xc3\xbcrgen@b.example> BODY=8BITMIME SMTPUTF8", &reply), 0);
    assert_string_equal(cmd.path, "j\xc3\xbcrgen@b.example");
    assert_int_equal(parse("MAIL FROM:<>", &reply), 0);
    assert_string_equal(cmd.path, "");
    assert_int_equal(cmd.has_size, 0);
    assert_int_equal(parse("MAIL FROM: <x@y>  ", &reply), 0); /* tolerated */
    assert_string_equal(cmd.path, "x@y");
    assert_int_equal(parse("RCPT TO:<alice@example.org>", &reply), 0);
    assert_int_equal(cmd.verb, LMTP_RCPT);
    assert_string_equal(cmd.path, "alice@example.org");
    assert_int_equal(parse("RCPT TO:alice@example.org", &reply), 0);
    assert_string_equal(cmd.path, "alice@example.org");
    assert_int_equal(parse("RCPT TO:<@relay.example,@b.example:bob@example.org>", &reply), 0);
    assert_string_equal(cmd.path, "bob@example.org");
    assert_int_equal(parse("RCPT TO:<\"odd>local\"@example.org>", &reply), 0);
    assert_string_equal(cmd.path, "\"odd>local\"@example.org");
    assert_int_equal(parse("DATA", &reply), 0);
    assert_int_equal(cmd.verb, LMTP_DATA);
    assert_int_equal(parse("rset", &reply), 0);
    assert_int_equal(parse("NOOP anything", &reply), 0);
    assert_int_equal(parse("QUIT", &reply), 0);
    assert_int_equal(parse("VRFY alice", &reply), 0);
    assert_int_equal(cmd.verb, LMTP_VRFY);

    expect_reply("HELO x", "500 5.5.1");
    expect_reply("EHLO x", "500 5.5.1");
    expect_reply("LHLO", "501");
    expect_reply("MAILFROM:<a@b>", "500");
    expect_reply("MAIL TO:<a@b>", "501");
    expect_reply("MAIL FROM:<a@b", "501");
    expect_reply("MAIL FROM:<a@b>SIZE=1", "501");
    expect_reply("MAIL FROM:<a@b> SIZE=x", "501");
    expect_reply("MAIL FROM:<a@b> SIZE=99999999999999999999999", "501");
    expect_reply("MAIL FROM:<a@b> BODY=BINARYMIME", "555");
    expect_reply("MAIL FROM:<a@b> SMTPUTF8=yes", "555");
    expect_reply("RCPT TO:<>", "501");
    expect_reply("RCPT TO:<a@b> NOTIFY=NEVER", "555");
    expect_reply("RCPT TO:<a\x01@b>", "501");
    expect_reply("DATA now", "501");
    expect_reply("QUIT please", "501");
    expect_reply("", "500");
    expect_reply("STARTTLS", "500 5.5.2");

    char nul[] = "NOOP a\0b";
    assert_int_equal(lmtp_parse_command(nul, sizeof nul - 1, &cmd, &reply), -1);
    char *longline = malloc(LMTP_MAX_COMMAND_LINE + 2);
    assert_non_null(longline);
    memset(longline, 'a', LMTP_MAX_COMMAND_LINE + 1);
    memcpy(longline, "NOOP ", 5);
    assert_int_equal(lmtp_parse_command(longline, LMTP_MAX_COMMAND_LINE + 1, &cmd, &reply), -1);
    assert_string_equal(reply, "500 5.5.2 line too long");
    assert_int_equal(lmtp_parse_command(longline, LMTP_MAX_COMMAND_LINE, &cmd, &reply), 0);
    free(longline);
}

/* ---- the encrypted spool ---- */

static pn_config cfg;

static void spool_round_trip(size_t size, size_t slice)
{
    char err[256];
    pd_spool *s = pd_spool_new(&cfg, err, sizeof err);
    assert_non_null(s);
    uint8_t *data = malloc(size + 1), *back = malloc(size + 1);
    assert_non_null(data);
    assert_non_null(back);
    randombytes_buf(data, size);
    for (size_t off = 0; off < size; off += slice)
        assert_int_equal(pd_spool_write(s, data + off, size - off < slice ? size - off : slice), 0);
    assert_int_equal(pd_spool_finish(s), 0);
    assert_int_equal(pd_spool_size(s), size);
    for (int pass = 0; pass < 2; pass++) { /* every recipient reads it again */
        assert_int_equal(pd_spool_rewind(s), 0);
        size_t got = 0;
        for (;;) {
            ssize_t n = pd_spool_read(s, back + got, size + 1 - got < 7000 ? size + 1 - got : 7000);
            assert_true(n >= 0);
            if (n == 0)
                break;
            got += (size_t)n;
        }
        assert_int_equal(got, size);
        assert_memory_equal(back, data, size);
    }
    pd_spool_free(s);
    free(data);
    free(back);
}

static void test_spool(void **state)
{
    (void)state;
    spool_round_trip(0, 1);
    spool_round_trip(1, 1);
    spool_round_trip(65535, 4096);
    spool_round_trip(65536, 65536);
    spool_round_trip(65537, 1000);
    spool_round_trip(3 * 65536, 100000);
    spool_round_trip(1000000, 65536 + 3);

    char err[256];
    pd_spool *s = pd_spool_new(&cfg, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(pd_spool_rewind(s), -1); /* not finished yet */
    assert_int_equal(pd_spool_finish(s), 0);
    assert_int_equal(pd_spool_write(s, (const uint8_t *)"x", 1), -1);
    pd_spool_free(s);
}

/* ---- sessions against a fake backend ---- */

typedef struct fake {
    char delivered[8][64];
    uint8_t bodies[8][4096]; /* the first 4096 bytes of each */
    size_t body_len[8];      /* all of it */
    size_t n;
    int released, rcpts, accepted;
} fake;

static int fake_rcpt(void *arg, const char *address, void **handle, char *msg, size_t msglen)
{
    fake *f = arg;
    f->rcpts++;
    if (strncmp(address, "unknown", 7) == 0) {
        snprintf(msg, msglen, "unknown recipient %s", address);
        return PX_NOUSER;
    }
    if (strncmp(address, "down", 4) == 0) {
        snprintf(msg, msglen, "no news server reachable, try again later");
        return PX_TEMPFAIL;
    }
    *handle = strdup(address);
    assert_non_null(*handle);
    f->accepted++;
    return PX_OK;
}

static int fake_deliver(void *arg, void *handle, pd_read_fn rd, void *rd_arg, char *msg, size_t msglen)
{
    fake *f = arg;
    const char *a = handle;
    size_t len = 0;
    uint8_t rest[4096];
    for (;;) {
        size_t room = sizeof f->bodies[0] - (len < sizeof f->bodies[0] ? len : sizeof f->bodies[0]);
        ssize_t n = room ? rd(rd_arg, f->bodies[f->n] + len, room) : rd(rd_arg, rest, sizeof rest);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (strncmp(a, "big", 3) == 0) {
        snprintf(msg, msglen, "message too big");
        return PX_UNAVAILABLE;
    }
    if (strncmp(a, "slow", 4) == 0) {
        snprintf(msg, msglen, "only 0 of the required 1 site accepted it");
        return PX_TEMPFAIL;
    }
    snprintf(f->delivered[f->n], sizeof f->delivered[0], "%s", a);
    f->body_len[f->n++] = len;
    snprintf(msg, msglen, "delivered to %s", a);
    return PX_OK;
}

static void fake_release(void *arg, void *handle)
{
    fake *f = arg;
    f->released++;
    free(handle);
}

/* Runs a session on input, returns what it wrote (malloc'd, NUL-terminated). */
static char *session(fake *f, const char *input, size_t input_len, int *rc)
{
    int in = memfd_create("lmtp-in", 0), out = memfd_create("lmtp-out", 0);
    assert_true(in >= 0 && out >= 0);
    assert_int_equal(write(in, input, input_len), (ssize_t)input_len);
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    lmtp_backend be = {.arg = f, .rcpt = fake_rcpt, .deliver = fake_deliver, .release = fake_release};
    lmtp_params p = {.in_fd = in, .out_fd = out, .cfg = &cfg, .backend = &be, .hostname = "test.host",
                     .command_timeout_ms = 2000, .data_timeout_ms = 2000};
    *rc = lmtp_session(&p);
    off_t len = lseek(out, 0, SEEK_END);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(out, text, (size_t)len, 0), len);
    text[len] = '\0';
    close(in);
    close(out);
    return text;
}

static void expect_session(const char *input, const char *want)
{
    fake f = {0};
    int rc;
    char *got = session(&f, input, strlen(input), &rc);
    if (strcmp(got, want) != 0)
        fail_msg("session output:\n%s\nwanted:\n%s", got, want);
    assert_int_equal(f.released, f.accepted); /* every accepted recipient is released */
    free(got);
}

#define GREETING "220 test.host LMTP postern ready\r\n"
#define LHLO_REPLY "250-test.host\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 1000\r\n"

static void test_session_pipelined_multi_recipient(void **state)
{
    (void)state;
    fake f = {0};
    const char *in = "LHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<unknown@x>\r\nRCPT TO:<big@x>\r\n"
                     "RCPT TO:<down@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<slow@x>\r\nDATA\r\n"
                     "Subject: t\r\n\r\n..dot\r\n.\r\nNOOP\r\nQUIT\r\n";
    int rc;
    char *got = session(&f, in, strlen(in), &rc);
    const char *want = GREETING LHLO_REPLY "250 2.1.0 OK\r\n"
                       "250 2.1.5 <a@x> OK\r\n"
                       "550 5.1.1 <unknown@x> no such user here\r\n"
                       "250 2.1.5 <big@x> OK\r\n"
                       "451 4.4.1 <down@x> mail store temporarily unavailable, try again later\r\n"
                       "250 2.1.5 <b@x> OK\r\n"
                       "250 2.1.5 <slow@x> OK\r\n"
                       "354 end data with <CR><LF>.<CR><LF>\r\n"
                       "250 2.0.0 <a@x> delivered to a@x\r\n"
                       "552 5.3.4 <big@x> message too big\r\n"
                       "250 2.0.0 <b@x> delivered to b@x\r\n"
                       "451 4.4.1 <slow@x> mail store temporarily unavailable, try again later\r\n"
                       "250 2.0.0 OK\r\n"
                       "221 2.0.0 test.host closing\r\n";
    if (strcmp(got, want) != 0)
        fail_msg("session output:\n%s", got);
    assert_int_equal(rc, 0);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.delivered[0], "a@x");
    assert_string_equal(f.delivered[1], "b@x");
    /* every recipient read the same unstuffed message */
    assert_int_equal(f.body_len[0], 20);
    assert_memory_equal(f.bodies[0], "Subject: t\r\n\r\n.dot\r\n", 20);
    assert_memory_equal(f.bodies[1], f.bodies[0], 20);
    assert_int_equal(f.released, 4);
    free(got);
}

static void test_session_order_and_limits(void **state)
{
    (void)state;
    expect_session("MAIL FROM:<a@b>\r\nQUIT\r\n", GREETING "503 5.5.1 LHLO first\r\n221 2.0.0 test.host closing\r\n");
    expect_session("LHLO c\r\nRCPT TO:<a@x>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\nRSET\r\nVRFY a\r\n"
                   "MAIL FROM:<a@b> SIZE=1001\r\nQUIT\r\n",
                   GREETING LHLO_REPLY "503 5.5.1 MAIL first\r\n503 5.5.1 MAIL first\r\n250 2.1.0 OK\r\n"
                                       "503 5.5.1 nested MAIL command\r\n503 5.5.1 no valid recipients\r\n"
                                       "250 2.0.0 OK\r\n252 2.5.2 cannot VRFY; send the message and see\r\n"
                                       "552 5.3.4 message size exceeds the limit of 1000 bytes\r\n"
                                       "221 2.0.0 test.host closing\r\n");
    /* the message outgrows max_message_size: read to the end, 552 per recipient, session goes on */
    char in[4096];
    int n = snprintf(in, sizeof in, "LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nS: x\r\n\r\n");
    for (int i = 0; i < 30; i++)
        n += snprintf(in + n, sizeof in - (size_t)n, "%s\r\n", "0123456789012345678901234567890123456789");
    n += snprintf(in + n, sizeof in - (size_t)n, ".\r\nQUIT\r\n");
    fake f = {0};
    int rc;
    char *got = session(&f, in, (size_t)n, &rc);
    const char *tail = "354 end data with <CR><LF>.<CR><LF>\r\n"
                       "552 5.3.4 <a@x> message too big: larger than max_message_size (1000 bytes), so it cannot be stored\r\n"
                       "552 5.3.4 <b@x> message too big: larger than max_message_size (1000 bytes), so it cannot be stored\r\n"
                       "221 2.0.0 test.host closing\r\n";
    if (!strstr(got, tail))
        fail_msg("session output:\n%s", got);
    assert_int_equal(f.n, 0);
    free(got);
    /* an over-long command line */
    char *longin = malloc(LMTP_MAX_COMMAND_LINE + 100);
    assert_non_null(longin);
    memset(longin, 'x', LMTP_MAX_COMMAND_LINE + 50);
    memcpy(longin + LMTP_MAX_COMMAND_LINE + 50, "\r\nQUIT\r\n", 9);
    memset(&f, 0, sizeof f);
    got = session(&f, longin, strlen(longin), &rc);
    assert_string_equal(got, GREETING "500 5.5.2 line too long\r\n221 2.0.0 test.host closing\r\n");
    free(got);
    free(longin);
}

/* Whatever the MTA accepted is delivered as it came: no header, bare CR and LF, NUL, 8-bit,
 * a line of 2 MiB (once refused as "a line longer than 1 MiB"). */
static void test_session_hostile_shapes_delivered(void **state)
{
    (void)state;
    static const char head[] = "LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@x>\r\nDATA\r\n";
    static const char tail[] = "\r\n.\r\nQUIT\r\n";
    static const char odd[] = "not a header\rbare CR\nbare LF\0NUL \xff\x80 8-bit\r\n";
    size_t line = 2u << 20, msg_len = sizeof odd - 1 + line + 2;
    size_t n = sizeof head - 1 + msg_len + sizeof tail - 1 - 2;
    char *in = malloc(n);
    assert_non_null(in);
    char *w = in;
    memcpy(w, head, sizeof head - 1), w += sizeof head - 1;
    memcpy(w, odd, sizeof odd - 1), w += sizeof odd - 1;
    memset(w, 'x', line), w += line;
    memcpy(w, tail, sizeof tail - 1), w += sizeof tail - 1;
    assert_int_equal((size_t)(w - in), n);
    uint64_t saved = cfg.max_message_size;
    cfg.max_message_size = 4u << 20;
    fake f = {0};
    int rc;
    char *got = session(&f, in, n, &rc);
    cfg.max_message_size = saved;
    if (!strstr(got, "354 end data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <a@x> delivered to a@x\r\n"))
        fail_msg("session output:\n%s", got);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.body_len[0], msg_len); /* the CRLF before the dot belongs to the message */
    assert_memory_equal(f.bodies[0], odd, sizeof odd - 1);
    free(got);
    free(in);
}

static void test_session_client_vanishes(void **state)
{
    (void)state;
    /* EOF in the middle of DATA: no delivery, no reply for it, recipients released */
    fake f = {0};
    int rc;
    const char *in = "LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@x>\r\nDATA\r\nSubject: cut\r\n";
    char *got = session(&f, in, strlen(in), &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(f.n, 0);
    assert_int_equal(f.released, 1);
    assert_non_null(strstr(got, "354 "));
    free(got);
    /* 100 recipients at most */
    char *many = malloc(200 * 32 + 100);
    assert_non_null(many);
    size_t n = (size_t)sprintf(many, "LHLO c\r\nMAIL FROM:<a@b>\r\n");
    for (int i = 0; i < 101; i++)
        n += (size_t)sprintf(many + n, "RCPT TO:<r%d@x>\r\n", i);
    n += (size_t)sprintf(many + n, "QUIT\r\n");
    memset(&f, 0, sizeof f);
    got = session(&f, many, n, &rc);
    assert_non_null(strstr(got, "452 4.5.3 too many recipients"));
    assert_int_equal(f.released, 100);
    free(got);
    free(many);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    strcpy(cfg.state_dir, "/tmp");
    cfg.max_message_size = 1000;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unstuff),
        cmocka_unit_test(test_unstuff_unterminated),
        cmocka_unit_test(test_parse_commands),
        cmocka_unit_test(test_spool),
        cmocka_unit_test(test_session_pipelined_multi_recipient),
        cmocka_unit_test(test_session_order_and_limits),
        cmocka_unit_test(test_session_hostile_shapes_delivered),
        cmocka_unit_test(test_session_client_vanishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
