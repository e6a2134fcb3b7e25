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
        cmocka_unit_test(test_plain_ok),
        cmocka_unit_test(test_plain_refused),
        cmocka_unit_test(test_plain_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
