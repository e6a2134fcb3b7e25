/* deliver: what `postern deliver` keeps of its input. Everything is a message; only a leading
 * mbox "From " envelope line is dropped, and only when it really is one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "deliver/deliver_int.h"

static size_t from_len(const char *s, int eof)
{
    return pd_mbox_from_len((const uint8_t *)s, strlen(s), eof);
}

static void test_mbox_from_line(void **state)
{
    (void)state;
    /* an envelope line: dropped with its LF (CRLF too) */
    assert_int_equal(from_len("From a@b.example Mon Jan  1 00:00:00 2024\nSubject: x\n", 0), 42);
    assert_int_equal(from_len("From a@b Mon\r\nSubject: x\r\n", 1), 14);
    /* not one: mail without a header, or without the envelope line, is kept whole */
    assert_int_equal(from_len("Subject: x\n\nbody\n", 0), 0);
    assert_int_equal(from_len("this is not a header\n", 1), 0);
    assert_int_equal(from_len("From: a@b\n\nbody\n", 0), 0); /* a header field, not From_ */
    assert_int_equal(from_len("Fro", 1), 0);                  /* short message */
    assert_int_equal(from_len("", 1), 0);                     /* empty message */
    assert_int_equal(from_len("From the desk of no one", 1), 0); /* one line, no LF: text */
    /* short reads must not decide: a pipe may deliver "From" and the rest later */
    assert_int_equal(from_len("Fro", 0), PD_FROM_MORE);
    assert_int_equal(from_len("", 0), PD_FROM_MORE);
    assert_int_equal(from_len("From a@b Mon Jan", 0), PD_FROM_MORE);
    /* no LF in the first 4096 bytes: the message's own text (once refused as malformed) */
    static char longline[5000];
    memset(longline, 'x', sizeof longline - 1);
    memcpy(longline, "From ", 5);
    assert_int_equal(from_len(longline, 0), 0);
    longline[4094] = '\n';
    assert_int_equal(from_len(longline, 0), 4095);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mbox_from_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
