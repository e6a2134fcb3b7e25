/* gateway: the pure parts — capability lists per state, the command table's lookups and
 * state/TLS/argument checks, LIST pattern matching, the parent's certificate frames, and the
 * ordered message walk of FETCH and SEARCH when nothing has to be loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/gw.h"
#include "gateway/mailbox.h"

static char *caps(enum session_state st, bool tls, bool tls_available, bool allow_plain)
{
    static char out[256];
    pu_buf b = PU_BUF_INIT;
    assert_int_equal(gw_caps_write(&b, gw_caps_for(st, tls, tls_available, allow_plain)), 0);
    snprintf(out, sizeof out, "%s", b.data);
    pu_buf_free(&b);
    return out;
}

#define BASE                                                                                                   \
    "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE NAMESPACE IDLE UIDPLUS UNSELECT CHILDREN SPECIAL-USE SORT SORT=DISPLAY " \
    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESEARCH LIST-EXTENDED LIST-STATUS MOVE MULTIAPPEND CONDSTORE QRESYNC"

static void test_capabilities(void **state)
{
    (void)state;
    /* plain port before STARTTLS: no password may be sent */
    assert_string_equal(caps(S_NOT_AUTH, false, true, false), BASE " STARTTLS LOGINDISABLED");
    /* ... unless the administrator allows it */
    assert_string_equal(caps(S_NOT_AUTH, false, true, true), BASE " STARTTLS AUTH=PLAIN");
    /* plain port without a certificate */
    assert_string_equal(caps(S_NOT_AUTH, false, false, true), BASE " AUTH=PLAIN");
    assert_string_equal(caps(S_NOT_AUTH, false, false, false), BASE " LOGINDISABLED");
    /* TLS (implicit or after STARTTLS) */
    assert_string_equal(caps(S_NOT_AUTH, true, false, false), BASE " AUTH=PLAIN");
    /* logged in: no login mechanisms and no STARTTLS */
    assert_string_equal(caps(S_AUTH, true, false, false), BASE);
    assert_string_equal(caps(S_AUTH, false, true, true), BASE);
    assert_string_equal(caps(S_SELECTED, true, false, false), BASE);
    /* nothing that is not built: no IMAP4rev2, CREATE-SPECIAL-USE */
    const char *all = caps(S_NOT_AUTH, false, true, true);
    assert_null(strstr(all, "IMAP4rev2"));
    assert_null(strstr(all, "CREATE-SPECIAL-USE"));
}

static void test_command_lookup(void **state)
{
    (void)state;
    const gw_command *c = gw_command_find("LOGIN", false);
    assert_non_null(c);
    assert_ptr_equal(c->fn, gw_cmd_login);
    assert_non_null(gw_command_find("CAPABILITY", false));
    assert_non_null(gw_command_find("AUTHENTICATE", false));
    assert_non_null(gw_command_find("FETCH", true));  /* UID FETCH */
    assert_null(gw_command_find("LOGIN", true));      /* there is no UID LOGIN */
    assert_null(gw_command_find("FROB", false));
    assert_null(gw_command_find("login", false));     /* the parser upper-cases names */
    assert_ptr_equal(gw_command_find("IDLE", false)->fn, gw_cmd_idle);
    assert_null(gw_command_find("IDLE", true));       /* no UID IDLE */
    assert_non_null(gw_command_find("EXPUNGE", true)); /* UIDPLUS */
}

static const char *check(const char *name, enum session_state st, bool tls, bool allow_plain, size_t nargs)
{
    const gw_command *c = gw_command_find(name, false);
    assert_non_null(c);
    return gw_command_check(c, st, tls, allow_plain, nargs);
}

static void test_command_checks(void **state)
{
    (void)state;
    /* any state */
    assert_null(check("CAPABILITY", S_NOT_AUTH, false, false, 0));
    assert_null(check("NOOP", S_AUTH, true, false, 0));
    assert_null(check("LOGOUT", S_SELECTED, true, false, 0));
    assert_null(check("ID", S_NOT_AUTH, false, false, 1));
    /* not authenticated only */
    assert_null(check("STARTTLS", S_NOT_AUTH, false, false, 0));
    assert_string_equal(check("STARTTLS", S_AUTH, true, false, 0), "BAD Already logged in");
    assert_string_equal(check("LOGIN", S_AUTH, true, false, 2), "BAD Already logged in");
    /* passwords need TLS unless allowed */
    assert_string_equal(check("LOGIN", S_NOT_AUTH, false, false, 2),
                        "NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS; use STARTTLS");
    assert_non_null(strstr(check("AUTHENTICATE", S_NOT_AUTH, false, false, 1), "PRIVACYREQUIRED"));
    assert_null(check("LOGIN", S_NOT_AUTH, false, true, 2));
    assert_null(check("LOGIN", S_NOT_AUTH, true, false, 2));
    assert_null(check("AUTHENTICATE", S_NOT_AUTH, true, false, 2));
    /* argument counts come before the TLS refusal: a malformed command is BAD */
    assert_string_equal(check("LOGIN", S_NOT_AUTH, false, false, 1), "BAD Missing arguments");
    assert_string_equal(check("LOGIN", S_NOT_AUTH, true, false, 3), "BAD Too many arguments");
    assert_string_equal(check("AUTHENTICATE", S_NOT_AUTH, true, false, 3), "BAD Too many arguments");
    assert_string_equal(check("NOOP", S_NOT_AUTH, true, false, 1), "BAD Too many arguments");
    /* authenticated commands */
    assert_string_equal(check("NAMESPACE", S_NOT_AUTH, true, false, 0), "BAD Log in first");
    assert_string_equal(check("LIST", S_NOT_AUTH, true, false, 2), "BAD Log in first");
    assert_null(check("LIST", S_AUTH, true, false, 2));
    assert_null(check("LSUB", S_SELECTED, true, false, 2));
    assert_null(check("ENABLE", S_AUTH, true, false, 1));
    assert_string_equal(check("ENABLE", S_SELECTED, true, false, 1), "BAD Command not valid with a mailbox selected");
    /* selected-state commands */
    assert_string_equal(check("FETCH", S_NOT_AUTH, true, false, 2), "BAD Log in first");
    assert_string_equal(check("FETCH", S_AUTH, true, false, 2), "BAD No mailbox selected");
    assert_null(check("FETCH", S_SELECTED, true, false, 2));
    /* no commands are read in the transient states */
    assert_non_null(check("NOOP", S_LOGOUT, true, false, 0));
    assert_non_null(check("NOOP", S_AUTHENTICATING, true, false, 0));
}

/* SIGHUP: the settings frame round-trips; a reload names what it took and what needs a
 * restart, and a file that does not load changes nothing. */
static void test_reload(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pn_gateway g = {.idle_timeout = 1800, .max_connections_per_ip = 7, .uid_claim_delay = 10};
    assert_int_equal(gw_reload_send(sv[0], &g), 0);
    uint8_t buf[256];
    ssize_t n = read(sv[1], buf, sizeof buf);
    assert_true(n > 8);
    pn_gateway got = {0};
    size_t flen = 0;
    for (ssize_t k = 0; k < n; k++)
        assert_int_equal(gw_reload_parse(buf, (size_t)k, &got, &flen), 0); /* more bytes needed */
    assert_int_equal(gw_reload_parse(buf, (size_t)n, &got, &flen), 1);
    assert_int_equal(flen, (size_t)n);
    assert_int_equal(got.idle_timeout, 1800);
    assert_int_equal(got.max_connections_per_ip, 7);
    assert_int_equal(got.uid_claim_delay, 10);
    buf[4] ^= 1; /* another field count: not this build's frame */
    assert_int_equal(gw_reload_parse(buf, (size_t)n, &got, &flen), -1);
    assert_int_equal(gw_reload_parse((const uint8_t *)"PEM1", 4, &got, &flen), -1);
    close(sv[0]);
    close(sv[1]);

    char path[] = "/tmp/postern-reload-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *a = "[postern]\nstate_dir = /tmp\n\n[gateway]\nidle_timeout = 3600\nimap = 127.0.0.1:9143\n\n"
                    "[site one]\nhost = 127.0.0.1\n";
    assert_int_equal(write(fd, a, strlen(a)), (ssize_t)strlen(a));
    close(fd);
    pn_config *run = calloc(1, sizeof *run);
    char err[512];
    assert_non_null(run);
    if (pn_config_load(path, run, err, sizeof err) != 0)
        fail_msg("%s", err);
    FILE *f = fopen(path, "w");
    fputs("[postern]\nstate_dir = /tmp\n\n[gateway]\nidle_timeout = 1800\nimap = 127.0.0.1:9144\n\n"
          "[site one]\nhost = 127.0.0.2\n", f);
    fclose(f);
    pu_buf changed = PU_BUF_INIT, restart = PU_BUF_INIT;
    assert_int_equal(gw_reload_config(run, path, &changed, &restart, err, sizeof err), 0);
    assert_string_equal(changed.data, "idle_timeout 3600 -> 1800");
    assert_int_equal(run->gateway.idle_timeout, 1800);
    assert_non_null(strstr(restart.data, "gateway imap"));
    if (!strstr(restart.data, "site one host"))
        fail_msg("restart: %s", restart.data);
    assert_null(strstr(restart.data, "idle_timeout"));
    pu_buf_free(&changed);
    pu_buf_free(&restart);
    f = fopen(path, "w");
    fputs("[gateway]\nidle_timeout = soon\n", f);
    fclose(f);
    assert_int_equal(gw_reload_config(run, path, &changed, &restart, err, sizeof err), -1);
    assert_int_equal(run->gateway.idle_timeout, 1800); /* unchanged */
    assert_int_equal(changed.len, 0);
    unlink(path);
    pn_config_free(run);
    free(run);
}

static void test_pem_frames(void **state)
{
    (void)state;
    uint8_t buf[64] = {'P', 'E', 'M', '1', 0, 0, 0, 3, 0, 0, 0, 2, 'c', 'r', 't', 'k', 'y', 'X'};
    gw_pem p;
    size_t flen = 0;
    for (size_t n = 0; n < 17; n++)
        assert_int_equal(gw_pem_parse(buf, n, &p, &flen), 0); /* incomplete */
    assert_int_equal(gw_pem_parse(buf, 18, &p, &flen), 1);
    assert_int_equal(flen, 17);
    assert_int_equal(p.cert_len, 3);
    assert_memory_equal(p.cert, "crt", 3);
    assert_int_equal(p.key_len, 2);
    assert_memory_equal(p.key, "ky", 2);
    /* bad magic, empty parts and over-long parts are refused */
    buf[0] = 'X';
    assert_int_equal(gw_pem_parse(buf, 2, &p, &flen), -1);
    assert_int_equal(gw_pem_parse(buf, 18, &p, &flen), -1);
    buf[0] = 'P';
    buf[7] = 0;
    assert_int_equal(gw_pem_parse(buf, 18, &p, &flen), -1);
    buf[7] = 3;
    buf[8] = 0x7f;
    assert_int_equal(gw_pem_parse(buf, 18, &p, &flen), -1);
}

static void test_tls_ctx_rejects_garbage(void **state)
{
    (void)state;
    char cert[] = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    char key[] = "nothing";
    gw_pem p = {cert, sizeof cert - 1, key, sizeof key - 1};
    char err[512];
    assert_null(gw_tls_ctx_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "tls_cert"));
}

/* A walk whose messages need no load: message 1 is gone from the server when the walk
 * reaches it and back (a later scan saw it again) before each() would run. each() must not
 * be called for it: FETCH's emit() then had no plaintext and crashed (issue 9). */
typedef struct walk_probe {
    int msgid_calls[3];
    bool each_called[3];
    bool done;
    unsigned failed;
} walk_probe;

static const char *probe_msgid(void *ctx, size_t k)
{
    walk_probe *w = ctx;
    return k == 1 && w->msgid_calls[k]++ == 0 ? NULL : "<m.x@postern.invalid>";
}

static bool probe_need(void *ctx, size_t k)
{
    (void)ctx;
    (void)k;
    return false;
}

static void probe_each(void *ctx, size_t k, mb_plain *p)
{
    walk_probe *w = ctx;
    assert_null(p);
    w->each_called[k] = true;
}

static void probe_done(void *ctx, unsigned failed)
{
    walk_probe *w = ctx;
    w->done = true;
    w->failed = failed;
}

static void test_walk_skips_gone_messages(void **state)
{
    (void)state;
    static const mb_walk_ops ops = {probe_msgid, probe_need, probe_each, probe_done, NULL};
    mb_reader r;
    memset(&r, 0, sizeof r);
    walk_probe probe = {0};
    mb_walk *w = mb_walk_new(&r, 3, false, &ops, &probe);
    assert_non_null(w);
    mb_walk_step(w);
    assert_true(probe.done);
    assert_int_equal(probe.failed, 0);
    assert_true(probe.each_called[0]);
    assert_false(probe.each_called[1]);
    assert_true(probe.each_called[2]);
    mb_walk_free(w);
}

/* The control socket's request lines (ctlproto.c): the three requests, and every malformed
 * or overlong line refused with a reason. */
static void test_ctl_requests(void **state)
{
    (void)state;
    gw_ctl_req q;
    const char *why = NULL;
    assert_int_equal(gw_ctl_parse_request("WHO", 3, &q, &why), 0);
    assert_int_equal(q.verb, GW_CTL_WHO);
    assert_int_equal(gw_ctl_parse_request("who\r", 4, &q, &why), 0);
    assert_int_equal(gw_ctl_parse_request("KICK a@example.org", 18, &q, &why), 0);
    assert_int_equal(q.verb, GW_CTL_KICK_USER);
    assert_string_equal(q.user, "a@example.org");
    assert_int_equal(gw_ctl_parse_request("KICK #42", 8, &q, &why), 0);
    assert_int_equal(q.verb, GW_CTL_KICK_ID);
    assert_int_equal(q.id, 42);
    const char *bad[] = {"", "WHO ", "WHO x", "KICK", "KICK ", "KICK a b", "KICK #", "KICK #0", "KICK #1x",
                         "KICK #99999999999999999999", "KICK a\tb", "KICK \x7f", "KICK caf\xc3\xa9", "HELLO",
                         "WHOM", " WHO"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(gw_ctl_parse_request(bad[i], strlen(bad[i]), &q, &why), -1);
        assert_non_null(why);
    }
    /* a NUL inside the line is not a terminator */
    assert_int_equal(gw_ctl_parse_request("KICK a\0b", 8, &q, &why), -1);
    char big[GW_CTL_LINE_MAX + 8];
    memset(big, 'a', sizeof big);
    memcpy(big, "KICK ", 5);
    assert_int_equal(gw_ctl_parse_request(big, sizeof big, &q, &why), -1);
    assert_int_equal(gw_ctl_parse_request(big, 5 + PC_ADDRESS_MAX + 1, &q, &why), -1);
    assert_int_equal(gw_ctl_parse_request(big, 5 + PC_ADDRESS_MAX, &q, &why), 0);
}

/* WHO's rows go through text and back unchanged; a row with a space or a missing or extra
 * field is refused on either side. */
static void test_ctl_rows(void **state)
{
    (void)state;
    gw_ctl_row r = {.id = 7, .proto = "imap", .transport = "starttls", .state = "selected", .since = 1700000000,
                    .idle = 12, .client = "[::1]:4321", .user = "a@example.org"};
    char line[GW_CTL_REPLY_MAX];
    assert_true(gw_ctl_format_row(&r, line, sizeof line) > 0);
    assert_string_equal(line, "S 7 imap starttls selected 1700000000 12 [::1]:4321 a@example.org");
    gw_ctl_row back;
    assert_int_equal(gw_ctl_parse_row(line, &back), 0);
    assert_memory_equal(&r, &back, sizeof r);
    snprintf(r.user, sizeof r.user, "a b");
    assert_int_equal(gw_ctl_format_row(&r, line, sizeof line), -1);
    assert_int_equal(gw_ctl_format_row(&back, line, 20), -1); /* does not fit */
    const char *bad[] = {"S 7 imap tls selected 1 2 c", "S 7 imap tls selected 1 2 c u x", "S x imap tls s 1 2 c u",
                         "S 7 imap tls s -1 2 c u", "S 7 imapimap tls s 1 2 c u", "T 7 imap tls s 1 2 c u",
                         "S 7 imap tls s 1 2 c u ", "S 7  imap tls s 1 2 c u", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(gw_ctl_parse_row(bad[i], &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capabilities),     cmocka_unit_test(test_command_lookup),
        cmocka_unit_test(test_command_checks),
        cmocka_unit_test(test_reload), cmocka_unit_test(test_pem_frames),       cmocka_unit_test(test_tls_ctx_rejects_garbage),
        cmocka_unit_test(test_walk_skips_gone_messages),
        cmocka_unit_test(test_ctl_requests),     cmocka_unit_test(test_ctl_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
