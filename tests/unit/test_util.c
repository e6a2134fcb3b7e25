/* util: the shared SASL PLAIN decoder in both of its callers' modes (POP3 refuses empty
 * parts, IMAP leaves them to the login) and its buffer handling. POP3's replies on top of it
 * are tested in test_pop3.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <regex.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/sasl.h"
#include "util/util.h"

static pu_plain_result plain(const char *raw, size_t rawlen, char *buf, size_t cap, unsigned flags,
                             pu_plain *p)
{
    char b64[4096];
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)raw, rawlen, sodium_base64_VARIANT_ORIGINAL);
    return pu_sasl_plain(b64, strlen(b64), buf, cap, flags, p);
}
#define PLAIN(lit, flags, p) plain(lit, sizeof(lit) - 1, buf, sizeof buf, flags, p)

static bool all_zero(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void test_plain_ok(void **state)
{
    (void)state;
    char buf[64];
    pu_plain p;
    assert_int_equal(PLAIN("\0alice@example.org\0pass word", PU_PLAIN_NONEMPTY, &p), PU_PLAIN_OK);
    assert_string_equal(p.authcid, "alice@example.org");
    assert_int_equal(p.authcid_len, 17);
    assert_string_equal(p.password, "pass word");
    assert_int_equal(p.password_len, 9);
    assert_true(p.authcid >= buf && p.password < buf + sizeof buf);
    assert_int_equal(PLAIN("bob\0bob\0pw", 0, &p), PU_PLAIN_OK); /* authzid = authcid */
    assert_string_equal(p.authcid, "bob");
    assert_int_equal(pu_sasl_plain("AHRlc3QAMTIzNA==", 16, buf, sizeof buf, 0, &p), PU_PLAIN_OK);
    assert_string_equal(p.authcid, "test");
    assert_string_equal(p.password, "1234");
}

/* One log line written with stderr on a pipe; journal: JOURNAL_STREAM names that pipe. */
static void log_line(bool journal, enum pu_level level, char *out, size_t outlen)
{
    int p[2], saved = dup(STDERR_FILENO);
    assert_int_equal(pipe(p), 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    struct stat st;
    assert_int_equal(fstat(p[1], &st), 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    if (journal)
        setenv("JOURNAL_STREAM", js, 1);
    else
        unsetenv("JOURNAL_STREAM");
    pu_log_reset();
    pu_log(level, "the %s message", "test");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    ssize_t n = read(p[0], out, outlen - 1);
    close(p[0]);
    assert_true(n > 0);
    out[n] = '\0';
    unsetenv("JOURNAL_STREAM");
    pu_log_reset();
}

static void matches(const char *re, const char *s)
{
    regex_t r;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&r, s, 0, NULL, 0);
    regfree(&r);
    if (rc != 0)
        fail_msg("'%s' does not match /%s/", s, re);
}

static void test_log_lines(void **state)
{
    (void)state;
    char line[256];
    /* anywhere but the journal: a UTC time stamp (its shape, not its value), then the level */
    log_line(false, PU_WARN, line, sizeof line);
    matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z postern\\[[0-9]+\\]: warning: "
            "the test message\n$", line);
    /* the journal: its priority first, no time stamp */
    log_line(true, PU_ERROR, line, sizeof line);
    matches("^<3>postern\\[[0-9]+\\]: error: the test message\n$", line);
    log_line(true, PU_INFO, line, sizeof line);
    matches("^<6>postern\\[[0-9]+\\]: info: ", line);
}

static void test_plain_refused(void **state)
{
    (void)state;
    char buf[64];
    pu_plain p;
    assert_int_equal(PLAIN("admin\0bob\0pw", 0, &p), PU_PLAIN_AUTHZID);
    assert_null(p.authcid);
    assert_true(all_zero(buf, sizeof buf)); /* wiped on failure */
    assert_int_equal(PLAIN("bo\0bob\0pw", 0, &p), PU_PLAIN_AUTHZID);
    assert_int_equal(PLAIN("bobpw", 0, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(PLAIN("\0bobpw", 0, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(PLAIN("\0bob\0p\0w", 0, &p), PU_PLAIN_MALFORMED);
    assert_true(all_zero(buf, sizeof buf));
    assert_int_equal(pu_sasl_plain("=", 1, buf, sizeof buf, 0, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(pu_sasl_plain("", 0, buf, sizeof buf, 0, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(pu_sasl_plain("!!!!", 4, buf, sizeof buf, 0, &p), PU_PLAIN_BASE64);
    assert_int_equal(pu_sasl_plain("*", 1, buf, sizeof buf, 0, &p), PU_PLAIN_BASE64); /* caller's */

    /* Empty parts: malformed for POP3, passed on for IMAP (the login refuses them). */
    assert_int_equal(PLAIN("\0bob\0", PU_PLAIN_NONEMPTY, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(PLAIN("\0\0pw", PU_PLAIN_NONEMPTY, &p), PU_PLAIN_MALFORMED);
    assert_int_equal(PLAIN("a\0\0pw", PU_PLAIN_NONEMPTY, &p), PU_PLAIN_MALFORMED); /* before authzid */
    assert_int_equal(PLAIN("\0bob\0", 0, &p), PU_PLAIN_OK);
    assert_int_equal(p.password_len, 0);
    assert_int_equal(PLAIN("\0\0pw", 0, &p), PU_PLAIN_OK);
    assert_int_equal(p.authcid_len, 0);
}

static void test_plain_buffer(void **state)
{
    (void)state;
    /* What fits in cap - 1 decoded bytes decodes; more is malformed, not truncated. */
    char raw[61];
    memset(raw, 'p', sizeof raw);
    raw[0] = '\0', raw[1] = 'u', raw[2] = '\0';
    char buf[64];
    pu_plain p;
    assert_int_equal(plain(raw, sizeof raw, buf, sizeof buf, 0, &p), PU_PLAIN_OK);
    assert_int_equal(p.password_len, sizeof raw - 3);
    char big[200];
    memset(big, 'p', sizeof big);
    big[0] = '\0', big[1] = 'u', big[2] = '\0';
    assert_int_equal(plain(big, sizeof big, buf, sizeof buf, 0, &p), PU_PLAIN_MALFORMED);
    char large[300];
    assert_int_equal(plain(big, sizeof big, large, sizeof large, 0, &p), PU_PLAIN_OK);
    assert_int_equal(p.password_len, sizeof big - 3);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_plain_ok),
        cmocka_unit_test(test_plain_refused),
        cmocka_unit_test(test_plain_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
