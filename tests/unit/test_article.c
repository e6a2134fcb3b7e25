/* Unit tests for article/: address canonicalisation, address <-> group mapping, Message-IDs,
 * outer headers and the article reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "article/article.h"

static char g_err[256];

/* Mail group of address under prefix; fails the test if refused. */
static const char *group_of(const char *prefix, const char *address)
{
    static char g[PA_GROUP_MAX + 1];
    g_err[0] = '\0';
    if (pa_address_to_group(prefix, address, g, sizeof g, g_err, sizeof g_err) != 0)
        fail_msg("'%s' refused: %s", address, g_err);
    return g;
}

/* Reason address is refused for; fails the test if accepted. */
static const char *refusal(const char *prefix, const char *address)
{
    char g[PA_GROUP_MAX + 1];
    g_err[0] = '\0';
    if (pa_address_to_group(prefix, address, g, sizeof g, g_err, sizeof g_err) == 0)
        fail_msg("'%s' accepted as %s", address, g);
    return g_err;
}

static const char *address_of(const char *prefix, const char *group)
{
    static char a[PA_ADDRESS_MAX + 1];
    if (pa_group_to_address(prefix, group, a, sizeof a) != 0)
        fail_msg("group '%s' rejected", group);
    return a;
}

static int rejects(const char *prefix, const char *group)
{
    char a[PA_ADDRESS_MAX + 1];
    return pa_group_to_address(prefix, group, a, sizeof a) == -1;
}

static void test_paper_example(void **state)
{
    (void)state;
    assert_string_equal(group_of("postern", "user@sub.example.jp"), "postern.jp.example.sub.user");
    assert_string_equal(group_of(PA_DEFAULT_PREFIX, "user@sub.example.jp"), "postern.jp.example.sub.user");
    char k[PA_GROUP_MAX + 1];
    assert_int_equal(pa_address_to_key_group("postern", "user@sub.example.jp", k, sizeof k, g_err, sizeof g_err), 0);
    assert_string_equal(k, "postern.jp.example.sub.user.encrypt");
    assert_string_equal(address_of("postern", "postern.jp.example.sub.user"), "user@sub.example.jp");
    assert_string_equal(address_of("postern", k), "user@sub.example.jp");
    assert_string_equal(group_of("news.postern+mail", "user@localhost"), "news.postern+mail.localhost.user");
    assert_string_equal(address_of("news.postern+mail", "news.postern+mail.localhost.user"), "user@localhost");
}

static void test_empty_prefix(void **state)
{
    (void)state;
    assert_string_equal(group_of("", "user@sub.example.jp"), "jp.example.sub.user");
    assert_string_equal(group_of(NULL, "user@sub.example.jp"), "jp.example.sub.user");
    assert_string_equal(address_of("", "jp.example.sub.user"), "user@sub.example.jp");
    assert_string_equal(address_of(NULL, "jp.example.sub.user.encrypt"), "user@sub.example.jp");
    /* First components news servers reserve are escaped when there is no prefix. */
    assert_string_equal(group_of("", "user@example.to"), "_74o.example.user");
    assert_string_equal(group_of("", "user@control"), "_63ontrol.user");
    assert_string_equal(group_of("", "user@junk"), "_6aunk.user");
    assert_string_equal(group_of("postern", "user@example.to"), "postern.to.example.user");
    assert_string_equal(group_of("", "user@tokyo"), "tokyo.user");
    assert_string_equal(address_of("", "_74o.example.user"), "user@example.to");
    assert_true(rejects("", "to.example.user"));
    assert_true(rejects("postern", "postern._74o.example.user"));
}

static void test_collision_pair(void **state)
{
    (void)state;
    char a[PA_GROUP_MAX + 1];
    strcpy(a, group_of("postern", "a.b@example.jp"));
    assert_string_equal(a, "postern.jp.example.a_2eb");
    assert_string_equal(group_of("postern", "b@a.example.jp"), "postern.jp.example.a.b");
    assert_string_equal(address_of("postern", a), "a.b@example.jp");
    assert_string_equal(address_of("postern", "postern.jp.example.a.b"), "b@a.example.jp");
}

static void test_escapes(void **state)
{
    (void)state;
    assert_string_equal(group_of("postern", "a+tag@example.jp"), "postern.jp.example.a_2btag");
    assert_string_equal(group_of("postern", "a_b@example.jp"), "postern.jp.example.a_5fb");
    assert_string_equal(group_of("postern", "a_5fb@example.jp"), "postern.jp.example.a_5f5fb");
    assert_string_equal(group_of("postern", "x-y@ex-ample.jp"), "postern.jp.ex-ample.x-y");
    assert_string_equal(group_of("postern", "o'neil!#$%&*/=?^`{|}~@example.jp"),
                        "postern.jp.example.o_27neil_21_23_24_25_26_2a_2f_3d_3f_5e_60_7b_7c_7d_7e");
    /* Leading digits and '-' are escaped: no component is all digits or starts with '-'. */
    assert_string_equal(group_of("postern", "3com@example.jp"), "postern.jp.example._33com");
    assert_string_equal(group_of("postern", "user@3com.com"), "postern.com._33com.user");
    assert_string_equal(group_of("postern", "123@456.jp"), "postern.jp._3456._3123");
    assert_string_equal(group_of("postern", "-x@example.jp"), "postern.jp.example._2dx");
    assert_string_equal(group_of("postern", "a1-@example.jp"), "postern.jp.example.a1-");
    /* UTF-8 local parts (RFC 6531), byte by byte. */
    assert_string_equal(group_of("postern", "\xc3\xa9lise@example.jp"), "postern.jp.example._c3_a9lise");
    assert_string_equal(group_of("postern", "\xe5\xb1\xb1\xe7\x94\xb0@example.jp"),
                        "postern.jp.example._e5_b1_b1_e7_94_b0");
    assert_string_equal(address_of("postern", "postern.jp.example._c3_a9lise"), "\xc3\xa9lise@example.jp");
}

static void test_upper_case(void **state)
{
    (void)state;
    char c[PA_ADDRESS_MAX + 1];
    assert_int_equal(pa_address_canonical("Alice@Example.JP", c, sizeof c, g_err, sizeof g_err), 0);
    assert_string_equal(c, "alice@example.jp");
    assert_string_equal(group_of("postern", "Alice@Example.JP"), "postern.jp.example.alice");
    /* Only ASCII letters fold: É (C3 89) stays as it is. */
    assert_int_equal(pa_address_canonical("\xc3\x89Z@x.jp", c, sizeof c, g_err, sizeof g_err), 0);
    assert_string_equal(c, "\xc3\x89z@x.jp");
    assert_string_equal(group_of("postern", "ENCRYPT@X.JP"), "postern.jp.x._65ncrypt");
}

static void test_reserved(void **state)
{
    (void)state;
    char k[PA_GROUP_MAX + 1];
    assert_string_equal(group_of("postern", "encrypt@x.jp"), "postern.jp.x._65ncrypt");
    assert_int_equal(pa_address_to_key_group("postern", "x@jp", k, sizeof k, g_err, sizeof g_err), 0);
    assert_string_equal(k, "postern.jp.x.encrypt");
    assert_string_not_equal(k, group_of("postern", "encrypt@x.jp"));
    assert_string_equal(group_of("postern", "sent@x.jp"), "postern.jp.x._73ent");
    assert_string_equal(group_of("postern", "drafts@x.jp"), "postern.jp.x._64rafts");
    assert_string_equal(group_of("postern", "trash@x.jp"), "postern.jp.x._74rash");
    assert_string_equal(group_of("postern", "state@x.jp"), "postern.jp.x._73tate");
    /* Only whole local parts are reserved; domain labels never are (another component count). */
    assert_string_equal(group_of("postern", "encrypted@x.jp"), "postern.jp.x.encrypted");
    assert_string_equal(group_of("postern", "user@encrypt.jp"), "postern.jp.encrypt.user");
    assert_string_equal(address_of("postern", "postern.jp.x._65ncrypt"), "encrypt@x.jp");
    assert_string_equal(address_of("postern", "postern.jp.x.encrypt"), "x@jp");
    assert_string_equal(address_of("postern", "postern.jp.x._65ncrypt.encrypt"), "encrypt@x.jp");
}

static void test_refusals(void **state)
{
    (void)state;
    char c[PA_ADDRESS_MAX + 1];
    assert_string_equal(refusal("postern", "userexample.jp"), "address has no '@'");
    assert_string_equal(refusal("postern", "a@b@example.jp"), "address has more than one '@'");
    assert_string_equal(refusal("postern", "\"a b\"@example.jp"), "quoted local parts are not supported");
    assert_string_equal(refusal("postern", "a@[10.0.0.1]"), "domain literals like '[10.0.0.1]' are not supported");
    assert_string_equal(refusal("postern", "ex\xc3\xa4mple@ex\xc3\xa4mple.jp"),
                        "domain 'ex\xc3\xa4mple.jp' is not ASCII: give its xn-- form");
    assert_string_equal(refusal("postern", "a@ex_ample.jp"),
                        "domain label 'ex_ample' has a character other than a-z 0-9 -");
    assert_string_equal(refusal("postern", "a@-x.jp"), "domain label '-x' starts with '-'");
    assert_string_equal(refusal("postern", "a@x-.jp"), "domain label 'x-' ends with '-'");
    assert_string_equal(refusal("postern", "a@example.jp."), "domain 'example.jp.' has an empty label");
    assert_string_equal(refusal("postern", "a@example..jp"), "domain 'example..jp' has an empty label");
    assert_string_equal(refusal("postern", "a@"), "domain is empty");
    assert_string_equal(refusal("postern", "@example.jp"), "local part is empty");
    assert_string_equal(refusal("postern", ""), "address is empty");
    assert_string_equal(refusal("postern", NULL), "address is empty");
    assert_string_equal(refusal("postern", ".a@x.jp"), "local part starts with '.'");
    assert_string_equal(refusal("postern", "a.@x.jp"), "local part ends with '.'");
    assert_string_equal(refusal("postern", "a..b@x.jp"), "local part has '..'");
    assert_string_equal(refusal("postern", "a(b)@x.jp"), "local part has '(', which needs quoting (not supported)");
    assert_string_equal(refusal("postern", "a b@x.jp"), "local part has byte 0x20, which is not allowed");
    assert_string_equal(refusal("postern", "a\r\nb@x.jp"), "local part has byte 0x0d, which is not allowed");
    assert_string_equal(refusal("postern", "a\xc3@x.jp"), "local part 'a\\xc3' is not valid UTF-8");
    assert_string_equal(refusal("postern", "\xc0\xae@x.jp"), "local part '\\xc0\\xae' is not valid UTF-8");
    assert_string_equal(refusal("postern", "\xed\xa0\x80@x.jp"), "local part '\\xed\\xa0\\x80' is not valid UTF-8");

    char buf[400];
    memset(buf, 'a', 65);
    strcpy(buf + 65, "@x.jp");
    assert_string_equal(refusal("postern", buf), "local part longer than 64 octets (65)");
    strcpy(buf + 64, "@x.jp");
    assert_int_equal(pa_address_canonical(buf, c, sizeof c, g_err, sizeof g_err), 0);

    char label[70];
    memset(label, 'b', 64);
    label[64] = '\0';
    snprintf(buf, sizeof buf, "a@%s.jp", label);
    assert_string_equal(refusal("postern", buf),
                        "domain label 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' longer than 63 octets");
    label[63] = '\0';
    snprintf(buf, sizeof buf, "a@%s.jp", label);
    assert_int_equal(pa_address_canonical(buf, c, sizeof c, g_err, sizeof g_err), 0);

    /* Whole address: 254 octets accepted by canonical(), 255 refused. */
    snprintf(buf, sizeof buf, "%s@%s.%s.%.61s", "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu",
             label, label, label);
    assert_int_equal(strlen(buf), 254);
    assert_int_equal(pa_address_canonical(buf, c, sizeof c, g_err, sizeof g_err), 0);
    strcat(buf, "x");
    assert_int_equal(pa_address_canonical(buf, c, sizeof c, g_err, sizeof g_err), -1);
    assert_string_equal(g_err, "address is 255 octets (limit 254)");
    /* No room for the canonical form. */
    assert_int_equal(pa_address_canonical("a@x.jp", c, 6, g_err, sizeof g_err), -1);
    assert_int_equal(pa_address_canonical("a@x.jp", c, 7, g_err, sizeof g_err), 0);
}

static void test_group_length(void **state)
{
    (void)state;
    /* 32 x "é" is 64 octets and encodes to 192: postern.jp.example.<30 x>.<192> is 242,
     * and its key group exactly 250. */
    char local[65] = "", addr[200], k[PA_GROUP_MAX + 1];
    for (int i = 0; i < 32; i++)
        strcat(local, "\xc3\xa9");
    snprintf(addr, sizeof addr, "%s@%s.example.jp", local, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(strlen(group_of("postern", addr)), 242);
    assert_int_equal(pa_address_to_key_group("postern", addr, k, sizeof k, g_err, sizeof g_err), 0);
    assert_int_equal(strlen(k), PA_GROUP_MAX);
    assert_string_equal(address_of("postern", k), addr);
    assert_int_equal(pa_address_to_key_group("postern", addr, k, PA_GROUP_MAX, g_err, sizeof g_err), -1);
    snprintf(addr, sizeof addr, "%s@%s.example.jp", local, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_string_equal(refusal("postern", addr), "group name would be 251 octets with its .encrypt suffix (limit 250)");
    snprintf(addr, sizeof addr, "%s@%s.example.jp", local, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_string_equal(refusal("postern", addr), "group name would be 263 octets with its .encrypt suffix (limit 250)");
}

static void test_prefix_check(void **state)
{
    (void)state;
    assert_int_equal(pa_prefix_check(NULL, g_err, sizeof g_err), 0);
    assert_int_equal(pa_prefix_check("", g_err, sizeof g_err), 0);
    assert_int_equal(pa_prefix_check("postern", g_err, sizeof g_err), 0);
    assert_int_equal(pa_prefix_check("corp.mail+store.p2", g_err, sizeof g_err), 0);
    const struct { const char *p, *why; } bad[] = {
        {"Postern", "prefix component 'Postern' has a character other than a-z 0-9 + -"},
        {"post_ern", "prefix component 'post_ern' has a character other than a-z 0-9 + -"},
        {"postern.", "prefix 'postern.' has an empty component"},
        {".postern", "prefix '.postern' has an empty component"},
        {"a..b", "prefix 'a..b' has an empty component"},
        {"a.123", "prefix component '123' is all digits"},
        {"-a", "prefix component '-a' starts with '-'"},
        {"to.mail", "prefix cannot start with 'to' (news servers reserve it)"},
        {"control", "prefix cannot start with 'control' (news servers reserve it)"},
        {"junk.x", "prefix cannot start with 'junk' (news servers reserve it)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(pa_prefix_check(bad[i].p, g_err, sizeof g_err), -1);
        assert_string_equal(g_err, bad[i].why);
        assert_true(rejects(bad[i].p, "postern.jp.example.user"));
        assert_string_equal(refusal(bad[i].p, "user@example.jp"), bad[i].why);
    }
    char p[300];
    memset(p, 'p', 239);
    p[239] = '\0';
    assert_int_equal(pa_prefix_check(p, g_err, sizeof g_err), -1);
    assert_string_equal(g_err, "prefix is 239 octets (limit 238)");
    p[238] = '\0';
    assert_int_equal(pa_prefix_check(p, g_err, sizeof g_err), 0);
    char a[PA_GROUP_MAX + 1];
    assert_int_equal(pa_address_to_key_group(p, "a@b", a, sizeof a, g_err, sizeof g_err), 0);
    assert_int_equal(strlen(a), 250);
}

static void test_group_to_address_rejects(void **state)
{
    (void)state;
    const char *bad[] = {
        "postern.JP.example.user",          /* upper case */
        "postern.jp.example.User",
        "postern.jp.example.a_",            /* '_' not followed by two lower-case hex digits */
        "postern.jp.example.a_4",
        "postern.jp.example.a_4g",
        "postern.jp.example.a_2E",
        "postern.jp.example._",
        "postern.jp.example.a_61",          /* needless escape of 'a' */
        "postern.jp.example._61",           /* needless escape of a leading letter */
        "postern.jp.example.a_31",          /* '1' needs no escape after the first byte */
        "postern.jp._65xample.user",
        "postern.jp.x.sent",                /* reserved local parts written plainly */
        "postern.jp.x.trash.encrypt",
        "postern.jp.x.encrypt.encrypt",
        "postern.jp.example.3com",          /* leading digit / '-' written plainly */
        "postern.jp.example.-x",
        "postern.jp.3com.user",
        "postern.jp.example.123",
        "other.jp.example.user",            /* wrong prefix */
        "posternx.jp.example.user",
        "postern",
        "postern.",
        "jp.example.user",
        "postern.user",                     /* no domain */
        "postern.encrypt",
        "postern.x.encrypt.encrypt",
        "postern.jp..user",                 /* empty components */
        "postern.jp.example.user.",
        "postern..jp.user",
        "postern.jp.example.a+b",           /* bytes postern escapes */
        "postern.jp.example.a_2bb_",
        "postern.jp.ex_5fample.user",       /* decodes to a domain postern refuses */
        "postern.jp.ex_2eample.user",       /* '.' inside a label */
        "postern.jp.example.a_40b",         /* '@' in the local part */
        "postern.jp.example.a_00b",         /* NUL */
        "postern.jp.example.a_20b",         /* space */
        "postern.jp.example._2ea",          /* leading '.' */
        "postern.jp.example._c3",           /* invalid UTF-8 */
        "postern.jp._c3_a9.user",           /* non-ASCII domain */
        "postern.jp.example.a b",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (!rejects("postern", bad[i]))
            fail_msg("'%s' accepted", bad[i]);
    assert_true(rejects("postern", NULL));
    char longname[300] = "postern.jp.";
    memset(longname + 11, 'a', 250);
    longname[261] = '\0';
    assert_true(rejects("postern", longname));
    /* Too small an output buffer. */
    char a[8];
    assert_int_equal(pa_group_to_address("postern", "postern.jp.example.user", a, sizeof a), -1);
    assert_int_equal(pa_group_to_address("postern", "postern.jp.ex.user", a, sizeof a), -1);
    assert_int_equal(pa_group_to_address("postern", "postern.jp.e.user", a, sizeof a), -1);
    assert_int_equal(pa_group_to_address("postern", "postern.jp.e.us", a, sizeof a), 0);
    assert_string_equal(a, "us@e.jp");
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 32) % n;
}

static void gen_address(char *out)
{
    static const char *local_bits[] = {"a", "b", "Z", "0", "7", "-", ".", "+", "_", "=", "'", "~",
                                       "encrypt", "sent", "to", "x", "\xc3\xa9", "\xe6\x97\xa5",
                                       "_2e", "_5f", "e", "q"};
    static const char *label_bits[] = {"a", "b", "x", "Y", "0", "9", "-", "to", "control", "junk",
                                       "encrypt", "jp", "e"};
    size_t o = 0;
    int n = 1 + (int)rnd(6);
    for (int i = 0; i < n; i++) {
        const char *b = local_bits[rnd(sizeof local_bits / sizeof *local_bits)];
        memcpy(out + o, b, strlen(b));
        o += strlen(b);
    }
    out[o++] = '@';
    int labels = 1 + (int)rnd(4);
    for (int l = 0; l < labels; l++) {
        if (l)
            out[o++] = '.';
        int parts = 1 + (int)rnd(3);
        for (int i = 0; i < parts; i++) {
            const char *b = label_bits[rnd(sizeof label_bits / sizeof *label_bits)];
            memcpy(out + o, b, strlen(b));
            o += strlen(b);
        }
    }
    out[o] = '\0';
}

struct pair {
    char group[PA_GROUP_MAX + 1];
    char canon[PA_ADDRESS_MAX + 1];
};

static int by_group(const void *a, const void *b)
{
    return strcmp(((const struct pair *)a)->group, ((const struct pair *)b)->group);
}

static void round_trip(const char *prefix)
{
    enum { N = 4000 };
    struct pair *p = calloc(N, sizeof *p);
    assert_non_null(p);
    size_t accepted = 0;
    for (int i = 0; i < N; i++) {
        char addr[200], back[PA_ADDRESS_MAX + 1], key[PA_GROUP_MAX + 1];
        gen_address(addr);
        struct pair *q = &p[accepted];
        if (pa_address_to_group(prefix, addr, q->group, sizeof q->group, g_err, sizeof g_err) != 0)
            continue;
        assert_int_equal(pa_address_canonical(addr, q->canon, sizeof q->canon, g_err, sizeof g_err), 0);
        assert_int_equal(pa_group_to_address(prefix, q->group, back, sizeof back), 0);
        assert_string_equal(back, q->canon);
        assert_int_equal(pa_address_to_key_group(prefix, addr, key, sizeof key, g_err, sizeof g_err), 0);
        assert_int_equal(pa_group_to_address(prefix, key, back, sizeof back), 0);
        assert_string_equal(back, q->canon);
        assert_string_not_equal(key, q->group);
        accepted++;
    }
    /* Plenty of both outcomes, so the generator exercises the mapping and the refusals. */
    assert_true(accepted > 600);
    assert_true(accepted < N - 600);
    qsort(p, accepted, sizeof *p, by_group);
    size_t distinct = 0;
    for (size_t i = 0; i < accepted; i++) {
        if (i > 0 && strcmp(p[i].group, p[i - 1].group) == 0) {
            if (strcmp(p[i].canon, p[i - 1].canon) != 0)
                fail_msg("collision: %s and %s both give %s", p[i].canon, p[i - 1].canon, p[i].group);
        } else {
            distinct++;
        }
    }
    assert_true(distinct > 300);
    free(p);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip("postern");
    round_trip("");
    round_trip("a.b+c");
}

static void test_message_ids(void **state)
{
    (void)state;
    uint8_t tag[32], kid[16];
    for (int i = 0; i < 32; i++)
        tag[i] = (uint8_t)(i * 17 + 3);
    for (int i = 0; i < 16; i++)
        kid[i] = (uint8_t)(0xf0 - i);
    char m[PA_MSGID_MAX];
    pa_mail_message_id(tag, m);
    assert_string_equal(m, "<m.031425364758697a8b9cadbecfe0f10213243546@postern.invalid>");
    assert_int_equal(pa_mail_message_id_matches(tag, m), 0);
    assert_int_equal(pa_mail_message_id_matches(tag, "<m.031425364758697A8B9CADBECFE0F10213243546@postern.invalid>"), -1);
    assert_int_equal(pa_mail_message_id_matches(tag, "<m.031425364758697a8b9cadbecfe0f10213243546@postern.invalid> "), -1);
    assert_int_equal(pa_mail_message_id_matches(tag, "<m.031425364758697a8b9cadbecfe0f102132435@postern.invalid>"), -1);
    assert_int_equal(pa_mail_message_id_matches(tag, NULL), -1);
    tag[31] ^= 1; /* beyond the 20 bytes in the ID */
    assert_int_equal(pa_mail_message_id_matches(tag, m), 0);
    tag[19] ^= 1;
    assert_int_equal(pa_mail_message_id_matches(tag, m), -1);

    pa_key_message_id(kid, 1, m);
    assert_string_equal(m, "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.1@postern.invalid>");
    pa_key_message_id(kid, UINT32_MAX, m);
    assert_string_equal(m, "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.4294967295@postern.invalid>");
    pa_key_message_id(kid, 0, m);
    assert_string_equal(m, "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.0@postern.invalid>");
}

/* Key record overview lines: the claimed serial, the size and the Message-ID, or nothing. */
static void test_over_key(void **state)
{
    (void)state;
    uint64_t num, bytes;
    uint32_t serial;
    char id[PA_MSGID_MAX];
    const char *good = "42\tpostern key record\tpostern <p@postern.invalid>\tWed, 02 Dec 2026 01:00:00 -0000\t"
                       "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7@postern.invalid>\t\t1534\t24";
    assert_int_equal(pa_over_key(good, strlen(good), &num, &serial, &bytes, id), 1);
    assert_int_equal(num, 42);
    assert_int_equal(serial, 7);
    assert_int_equal(bytes, 1534);
    assert_string_equal(id, "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7@postern.invalid>");
    const char *bad[] = {
        "42\ts\tf\td\t<m.f0efeeedecebeae9e8e7e6e5e4e3e2e1f0efeeed@postern.invalid>\t\t10\t1", /* mail */
        "42\ts\tf\td\t<k.F0efeeedecebeae9e8e7e6e5e4e3e2e1.7@postern.invalid>\t\t10\t1",    /* upper case */
        "42\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.@postern.invalid>\t\t10\t1",     /* no serial */
        "42\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.4294967296@postern.invalid>\t\t10\t1", /* > 32 bits */
        "42\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7x@postern.invalid>\t\t10\t1",
        "42\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7@example.org>\t\t10\t1",
        "0\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7@postern.invalid>\t\t10\t1", /* number 0 */
        "42\ts\tf\td",                                                                   /* cut short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pa_over_key(bad[i], strlen(bad[i]), &num, &serial, &bytes, id), 0);
    /* re-signed by another authority key (user resign): the same serial, the key's id after it */
    const char *resigned = "43\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7.a0011223344556677@postern.invalid>"
                           "\t\t1534\t24";
    assert_int_equal(pa_over_key(resigned, strlen(resigned), &num, &serial, &bytes, id), 1);
    assert_int_equal(serial, 7);
    assert_string_equal(id, "<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7.a0011223344556677@postern.invalid>");
    char made[PA_MSGID_MAX];
    const uint8_t kid[16] = {0xf0, 0xef, 0xee, 0xed, 0xec, 0xeb, 0xea, 0xe9, 0xe8, 0xe7, 0xe6, 0xe5, 0xe4, 0xe3, 0xe2, 0xe1};
    const uint8_t aid[8] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
    pa_key_message_id_resigned(kid, 7, aid, made);
    assert_string_equal(made, id);
    const char *bad_resigned[] = {
        "43\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7.a00112233445566@postern.invalid>\t\t1\t1",   /* short id */
        "43\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7.a00112233445566Z7@postern.invalid>\t\t1\t1", /* not hex */
        "43\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1..a0011223344556677@postern.invalid>\t\t1\t1", /* no serial */
        "43\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.7.b0011223344556677@postern.invalid>\t\t1\t1", /* not .a */
    };
    for (size_t i = 0; i < sizeof bad_resigned / sizeof bad_resigned[0]; i++)
        assert_int_equal(pa_over_key(bad_resigned[i], strlen(bad_resigned[i]), &num, &serial, &bytes, id), 0);
    const char *nosize = "9\ts\tf\td\t<k.f0efeeedecebeae9e8e7e6e5e4e3e2e1.1@postern.invalid>";
    assert_int_equal(pa_over_key(nosize, strlen(nosize), &num, &serial, &bytes, id), 1);
    assert_int_equal(bytes, 0);
}

static void test_headers(void **state)
{
    (void)state;
    char out[1024];
    const char *mail =
        "From: postern <postern@postern.invalid>\r\n"
        "Newsgroups: postern.jp.example.sub.user\r\n"
        "Subject: postern mail\r\n"
        "Message-ID: <m.00@postern.invalid>\r\n"
        "Postern-Format: message 1\r\n"
        "\r\n";
    size_t n = pa_mail_headers("postern.jp.example.sub.user", "<m.00@postern.invalid>", NULL, out, sizeof out);
    assert_int_equal(n, strlen(mail));
    assert_memory_equal(out, mail, n + 1);
    /* cap must hold the terminating NUL too. */
    assert_int_equal(pa_mail_headers("postern.jp.example.sub.user", "<m.00@postern.invalid>", NULL, out, n), 0);
    assert_int_equal(pa_mail_headers("postern.jp.example.sub.user", "<m.00@postern.invalid>", NULL, out, n + 1), n);
    size_t m = pa_mail_headers("g.x", "<m.00@postern.invalid>", "Cancel-Lock: sha256:AAAA sha256:BBBB\r\n", out,
                               sizeof out);
    assert_true(m > 0);
    assert_non_null(strstr(out, "\r\nCancel-Lock: sha256:AAAA sha256:BBBB\r\n\r\n"));

    const char *key =
        "From: postern <postern@postern.invalid>\r\n"
        "Newsgroups: postern.jp.example.sub.user.encrypt\r\n"
        "Subject: postern key record\r\n"
        "Message-ID: <k.ab.2@postern.invalid>\r\n"
        "Postern-Format: keyrecord 1\r\n"
        "Cancel-Lock: sha256:AAAA\r\n"
        "Supersedes: <k.ab.1@postern.invalid>\r\n"
        "\r\n";
    n = pa_key_headers("postern.jp.example.sub.user.encrypt", "<k.ab.2@postern.invalid>",
                       "Cancel-Lock: sha256:AAAA\r\nSupersedes: <k.ab.1@postern.invalid>\r\n", out, sizeof out);
    assert_int_equal(n, strlen(key));
    assert_memory_equal(out, key, n + 1);
    n = pa_key_headers("g.x", "<k.ab.1@postern.invalid>", NULL, out, sizeof out);
    assert_string_equal(out, "From: postern <postern@postern.invalid>\r\nNewsgroups: g.x\r\n"
                             "Subject: postern key record\r\nMessage-ID: <k.ab.1@postern.invalid>\r\n"
                             "Postern-Format: keyrecord 1\r\n\r\n");
    assert_int_equal(n, strlen(out));
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "", out, sizeof out), n - 19);

    /* Nothing that could break or extend the header block. */
    assert_int_equal(pa_mail_headers("g.x\r\nControl: cancel <x@y>", "<m@x>", NULL, out, sizeof out), 0);
    assert_int_equal(pa_mail_headers("g.x", "<m@x> y", NULL, out, sizeof out), 0);
    assert_int_equal(pa_mail_headers("", "<m@x>", NULL, out, sizeof out), 0);
    assert_int_equal(pa_mail_headers("g.x", NULL, NULL, out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "Cancel-Lock: x", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "Cancel-Lock: x\n", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "\r\nbody", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "A: b\r\n\r\n", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", " folded\r\n", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "no colon\r\n", out, sizeof out), 0);
    assert_int_equal(pa_key_headers("g.x", "<k@x>", "A: b\rc\r\n", out, sizeof out), 0);
}

/* Body collector for the reader tests. */
struct body {
    char text[4096];
    size_t lines;
    int stop_at;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct body *b = arg;
    size_t n = strlen(b->text);
    if (n + len + 2 < sizeof b->text) {
        memcpy(b->text + n, line, len);
        b->text[n + len] = '|';
        b->text[n + len + 1] = '\0';
    }
    b->lines++;
    return b->stop_at && (int)b->lines == b->stop_at ? 7 : 0;
}

static int feed(pa_reader *r, const char *text)
{
    int rc = 0;
    while (*text) {
        const char *eol = strchr(text, '\n');
        size_t len = eol ? (size_t)(eol - text) : strlen(text);
        rc = pa_reader_line(r, text, len);
        if (rc)
            return rc;
        text += len + (eol ? 1 : 0);
    }
    return rc;
}

static void test_reader(void **state)
{
    (void)state;
    pa_reader r;
    struct body b = {0};
    pa_reader_init(&r, collect, &b);
    assert_int_equal(feed(&r, "Path: site1.lab.test!not-for-mail\n"
                              "from: postern <postern@postern.invalid>\n"
                              "NEWSGROUPS: postern.jp.example.user,\n"
                              "\tpostern.jp.example.other\n"
                              "Subject: postern\n"
                              "  mail\n"
                              "message-id:\n"
                              " <m.abc@postern.invalid>  \n"
                              "Postern-Format:   message\n"
                              "\t  1 \n"
                              "X-Long: aaa\n"
                              "\n"
                              "QUJD\n"
                              "\n"
                              "Subject: not a header\n"),
                     0);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.in_body, 1);
    assert_string_equal(r.message_id, "<m.abc@postern.invalid>");
    assert_string_equal(r.format, "message 1");
    assert_string_equal(r.newsgroups, "postern.jp.example.user,postern.jp.example.other");
    assert_int_equal(r.header_lines, 11);
    assert_int_equal(b.lines, 3);
    assert_string_equal(b.text, "QUJD||Subject: not a header|");

    /* A body callback's non-zero answer stops the transfer and is passed back. */
    memset(&b, 0, sizeof b);
    b.stop_at = 2;
    pa_reader_init(&r, collect, &b);
    assert_int_equal(feed(&r, "Message-ID: <x@y>\n\nl1\nl2\nl3\n"), 7);
    assert_int_equal(b.lines, 2);

    /* No body callback: body lines are skipped. */
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(feed(&r, "Message-ID: <x@y>\n\nl1\n"), 0);
    assert_string_equal(r.message_id, "<x@y>");
    assert_string_equal(r.cancel_lock, "");

    /* the Cancel-Lock is kept (repair copies it), unfolded like the others; twice is an error */
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(feed(&r, "Cancel-Lock: sha256:AAAA\n sha256:BBBB\nMessage-ID: <x@y>\n\n"), 0);
    assert_string_equal(r.cancel_lock, "sha256:AAAA sha256:BBBB");
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(feed(&r, "Cancel-Lock: sha256:AAAA\nCancel-Lock: sha256:BBBB\n\n"), -1);
    /* every INN site a copy passed appends its admin's locks: a long value keeps its first
     * whole locks and the article stays readable */
    char big[4096] = "Cancel-Lock: sha256:FIRST sha256:SECOND";
    while (strlen(big) < 1500)
        strcat(big, "\n sha1:0123456789012345678901234567= sha256:0123456789012345678901234567890123456789012=");
    strcat(big, "\nMessage-ID: <x@y>\n\n");
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(feed(&r, big), 0);
    assert_int_equal(r.error, 0);
    assert_true(strlen(r.cancel_lock) < PA_CANCEL_LOCK_MAX && strlen(r.cancel_lock) > 900);
    assert_int_equal(strncmp(r.cancel_lock, "sha256:FIRST sha256:SECOND sha1:", 32), 0);
    const char *end = strrchr(r.cancel_lock, ' ');
    assert_true(strcmp(end, " sha1:0123456789012345678901234567=") == 0 ||
                strcmp(end, " sha256:0123456789012345678901234567890123456789012=") == 0); /* whole */
    assert_string_equal(r.message_id, "<x@y>");
}

static void test_reader_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        " continuation first\n",
        "no colon here\n",
        ": empty name\n",
        "Bad Name: x\n",
        "Message-ID: <a@b>\nmessage-id: <c@d>\n",
        "Postern-Format: message 1\nPOSTERN-FORMAT: message 1\n",
        "Newsgroups: a\nNewsgroups: b\n",
        "Message-ID: <a\x01@b>\n",
        "Postern-Format: message 1\n and more text to run past thirty-one octets\n",
        "Message-ID: <aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x>\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pa_reader r;
        struct body b = {0};
        pa_reader_init(&r, collect, &b);
        if (feed(&r, bad[i]) != -1 || !r.error)
            fail_msg("accepted: %s", bad[i]);
        /* Every later line is refused too, and nothing reaches the body callback. */
        assert_int_equal(pa_reader_line(&r, "", 0), -1);
        assert_int_equal(pa_reader_line(&r, "x", 1), -1);
        assert_int_equal(b.lines, 0);
    }
    /* NUL and CR inside a kept field, given by length. */
    pa_reader r;
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, "Newsgroups: a\0b", 15), -1);
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, "Message-ID: <a\rb>", 17), -1);
    /* ...but other fields are not examined. */
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, "Subject: a\0\rb", 13), 0);
    /* A Message-ID of exactly 95 octets fits. */
    char line[200] = "Message-ID: <";
    memset(line + 13, 'a', 91);
    strcpy(line + 104, "@x>");
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, line, strlen(line)), 0);
    assert_int_equal(strlen(r.message_id), PA_MSGID_MAX - 1);
}

static void test_reader_limits(void **state)
{
    (void)state;
    pa_reader r;
    pa_reader_init(&r, NULL, NULL);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pa_reader_line(&r, "X: y", 4), 0);
    assert_int_equal(r.header_lines, 1000);
    assert_int_equal(r.header_bytes, 6000);
    assert_int_equal(pa_reader_line(&r, "", 0), 0);
    assert_int_equal(r.in_body, 1);

    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, " y", 2), -1);
    pa_reader_init(&r, NULL, NULL);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pa_reader_line(&r, "X: y", 4), 0);
    assert_int_equal(pa_reader_line(&r, "X: y", 4), -1);
    assert_int_equal(r.error, 1);

    /* 64 KiB of header: 65536 octets with CRLFs is fine, one more is not. */
    static char big[70000];
    memset(big, 'v', sizeof big);
    memcpy(big, "X: ", 3);
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, big, 65536 - 2 - 100), 0);
    assert_int_equal(pa_reader_line(&r, big, 98), 0);
    assert_int_equal(r.header_bytes, 65536);
    assert_int_equal(pa_reader_line(&r, "", 0), 0);
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, big, 65536 - 2 - 100), 0);
    assert_int_equal(pa_reader_line(&r, big, 99), -1);
}

static void test_reader_newsgroups_truncation(void **state)
{
    (void)state;
    /* Names that do not fit whole are dropped, never cut. */
    char line[2000] = "Newsgroups: ";
    char name[PA_GROUP_MAX + 1];
    memset(name, 'g', 100);
    name[100] = '\0';
    snprintf(line + 12, sizeof line - 12, "a.%s,b.%s,c.%s", name, name, name);
    pa_reader r;
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, line, strlen(line)), 0);
    assert_int_equal(r.error, 0);
    char want[600];
    snprintf(want, sizeof want, "a.%s,b.%s", name, name);
    assert_string_equal(r.newsgroups, want);

    /* One name longer than the buffer: nothing kept. */
    memset(line + 12, 'z', 300);
    line[312] = '\0';
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, line, strlen(line)), 0);
    assert_string_equal(r.newsgroups, "");

    /* Exactly 250 octets then a comma: the 250 are one whole name. */
    memset(line + 12, 'y', 250);
    strcpy(line + 262, ",");
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, line, 263), 0);
    assert_int_equal(strlen(r.newsgroups), 250);
    /* Exactly 250 octets then more of the same name: dropped. */
    strcpy(line + 262, "y");
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, line, 263), 0);
    assert_string_equal(r.newsgroups, "");
    /* Folded white space does not count. */
    pa_reader_init(&r, NULL, NULL);
    assert_int_equal(pa_reader_line(&r, "Newsgroups:  a.b ,", 18), 0);
    assert_int_equal(pa_reader_line(&r, "\t c.d  ", 7), 0);
    assert_string_equal(r.newsgroups, "a.b,c.d");
}

/* OVER lines: the article number and a postern mail Message-ID, nothing else */
static void test_over_mail(void **state)
{
    (void)state;
    uint64_t num = 0;
    const char *id = NULL;
    size_t n = 0;
    const char ok[] = "42\tsubj\tfrom\tdate\t<m.abc@postern.invalid>\trefs\t7\t1";
    assert_int_equal(pa_over_mail(ok, strlen(ok), &num, &id, &n), 1);
    assert_true(num == 42);
    assert_int_equal(n, strlen("<m.abc@postern.invalid>"));
    assert_memory_equal(id, "<m.abc@postern.invalid>", n);
    const char last[] = "7\ts\tf\td\t<m.x@postern.invalid>"; /* the Message-ID as the last field */
    assert_int_equal(pa_over_mail(last, strlen(last), &num, &id, &n), 1);
    assert_int_equal(n, strlen("<m.x@postern.invalid>"));
    assert_int_equal(pa_over_bytes(ok, strlen(ok)), 7); /* the Bytes field */
    assert_int_equal(pa_over_bytes(last, strlen(last)), 0); /* none */
    assert_int_equal(pa_over_bytes("x\ty", 3), 0);
    const char *date = NULL;
    size_t date_len = 0;
    assert_int_equal(pa_over_date(ok, strlen(ok), &date, &date_len), 1); /* the Date field */
    assert_int_equal(date_len, 4);
    assert_memory_equal(date, "date", 4);
    const char empty[] = "9\ts\tf\t\t<m.x@postern.invalid>";
    assert_int_equal(pa_over_date(empty, strlen(empty), &date, &date_len), 0); /* empty */
    assert_int_equal(pa_over_date("9\ts\tf", 6, &date, &date_len), 0); /* none */
    static const char *const bad[] = {
        "42\tsubj\tfrom\tdate\t<k.key@postern.invalid>\t", /* a key record, not mail */
        "0\tsubj\tfrom\tdate\t<m.abc@postern.invalid>",      /* number 0 */
        "x\tsubj\tfrom\tdate\t<m.abc@postern.invalid>",      /* no number */
        "42\tsubj\tfrom\t<m.abc@postern.invalid>",            /* too few fields */
        "42\tsubj\tfrom\tdate\t<m.abc@postern.invalid",       /* no closing bracket */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pa_over_mail(bad[i], strlen(bad[i]), &num, &id, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paper_example),
        cmocka_unit_test(test_empty_prefix),
        cmocka_unit_test(test_collision_pair),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_upper_case),
        cmocka_unit_test(test_reserved),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_group_length),
        cmocka_unit_test(test_prefix_check),
        cmocka_unit_test(test_group_to_address_rejects),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_message_ids),
        cmocka_unit_test(test_over_key),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_over_mail),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_reader_malformed),
        cmocka_unit_test(test_reader_limits),
        cmocka_unit_test(test_reader_newsgroups_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
