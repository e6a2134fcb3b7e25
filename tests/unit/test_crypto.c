/* Unit tests for crypto/: authority keys, key records, envelopes, padme and armor. Several
 * tests rebuild the wire formats independently from docs/formats.md, so that the code is
 * checked against the spec and not only against itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/crypto.h"

#define OPS crypto_pwhash_OPSLIMIT_MIN
#define MEM crypto_pwhash_MEMLIMIT_MIN
#define C 65536u
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

/* ---- helpers ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    size_t calls;
    int fail_after; /* >0: the n-th call fails */
} buf;

static int buf_sink(void *arg, const uint8_t *data, size_t len)
{
    buf *b = arg;
    b->calls++;
    if (b->fail_after > 0 && b->calls >= (size_t)b->fail_after)
        return -1;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void buf_free(buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t crlf_size(const uint8_t *m, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) ? 2 : 1;
    return n;
}

/* Deterministic message with a mix of bare LFs, CRLFs and lone CRs. */
static uint8_t *make_message(size_t len, uint32_t seed)
{
    uint8_t *m = malloc(len ? len : 1);
    uint8_t s[randombytes_SEEDBYTES] = {0};
    memcpy(s, &seed, sizeof seed);
    randombytes_buf_deterministic(m, len, s);
    for (size_t i = 0; i < len; i++) {
        if (m[i] < 8)
            m[i] = '\n';
        else if (m[i] < 12)
            m[i] = '\r';
    }
    return m;
}

typedef struct {
    uint8_t pk[PC_BOX_PK_BYTES], sk[PC_BOX_SK_BYTES], id[PC_KEYID_BYTES];
} boxkey;

static void boxkey_new(boxkey *k)
{
    crypto_box_keypair(k->pk, k->sk);
    crypto_generichash(k->id, sizeof k->id, k->pk, sizeof k->pk, NULL, 0);
}

/* Seals msg (fed in slices of `slice` bytes) into a whole envelope: prefix || chunks. */
static void seal_all(const boxkey *k, const uint8_t *msg, size_t len, size_t slice, buf *env, pc_msg_meta *meta,
                     uint8_t hash[32])
{
    buf chunks = {0};
    pc_seal *s = pc_seal_begin(k->pk, k->id, 1700000000, -300, buf_sink, &chunks);
    assert_non_null(s);
    for (size_t off = 0; off < len; off += slice)
        assert_int_equal(pc_seal_update(s, msg + off, len - off < slice ? len - off : slice), PC_OK);
    assert_int_equal(pc_seal_finish(s, hash, meta), PC_OK);
    uint8_t tag[PC_TAG_BYTES], secret[PC_DELIVERY_SECRET_BYTES] = {1, 2, 3};
    pc_message_tag(secret, "alice@example.jp", k->id, hash, tag);
    uint8_t prefix[PC_MSG_PREFIX_BYTES];
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_OK);
    pc_seal_free(s);
    memcpy(meta->tag, tag, sizeof tag);
    buf_sink(env, prefix, sizeof prefix);
    buf_sink(env, chunks.data, chunks.len);
    buf_free(&chunks);
}

/* Opens env (fed in slices); returns the first error, or pc_open_finish's status. */
static int open_all(const boxkey *k, const uint8_t *env, size_t len, size_t slice, buf *out, pc_msg_meta *meta)
{
    if (len < PC_MSG_PREFIX_BYTES)
        return PC_ETRUNC;
    int st = -1;
    pc_open *o = pc_open_begin(env, k->pk, k->sk, meta, buf_sink, out, &st);
    if (!o) {
        assert_int_not_equal(st, PC_OK);
        return st;
    }
    assert_int_equal(st, PC_OK);
    int rc = PC_OK;
    for (size_t off = PC_MSG_PREFIX_BYTES; off < len && rc == PC_OK; off += slice)
        rc = pc_open_update(o, env + off, len - off < slice ? len - off : slice);
    if (rc == PC_OK)
        rc = pc_open_finish(o);
    pc_open_free(o);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    return pc_init() == PC_OK ? 0 : -1;
}

/* ---- status ---- */

static void test_strerror(void **state)
{
    (void)state;
    assert_int_equal(pc_init(), PC_OK);
    assert_int_equal(pc_init(), PC_OK);
    for (int s = PC_OK; s <= PC_EINVAL; s++) {
        assert_non_null(pc_strerror(s));
        for (int t = PC_OK; t < s; t++)
            assert_string_not_equal(pc_strerror(s), pc_strerror(t));
    }
    assert_non_null(pc_strerror(12345));
}

/* ---- padme ---- */

static void test_padme_known(void **state)
{
    (void)state;
    assert_true(pc_padme(0) == 0);
    assert_true(pc_padme(1) == 1);
    assert_true(pc_padme(2) == 2);
    assert_true(pc_padme(3) == 3);
    assert_true(pc_padme(9) == 10);     /* E=3 S=2 mask=1 */
    assert_true(pc_padme(4096) == 4096);
    assert_true(pc_padme(4097) == 4352); /* E=12 S=4 mask=255 */
    assert_true(pc_padme(5000) == 5120);
    assert_true(pc_padme(65536) == 65536);
    assert_true(pc_padme(65537) == 67584); /* E=16 S=5 mask=2047 */
    assert_true(pc_padme(100000) == 100352);
    assert_true(pc_padme(200000) == 200704);
    assert_true(pc_padme(UINT64_MAX) == 0); /* does not fit */
    assert_true(pc_envelope_size(4096) == PC_MSG_PREFIX_BYTES + 4096 + ABYTES);
    assert_true(pc_envelope_size(65536) == PC_MSG_PREFIX_BYTES + 65536 + 2 * ABYTES);
    assert_true(pc_envelope_size(67584) == PC_MSG_PREFIX_BYTES + 67584 + 2 * ABYTES);
}

static void test_padme_monotonic(void **state)
{
    (void)state;
    uint64_t prev = 0;
    for (uint64_t l = 1; l <= 300000; l++) {
        uint64_t p = pc_padme(l);
        assert_true(p >= l);
        assert_true(p >= prev);
        assert_true(pc_padme(p) == p);
        if (l >= 4096)
            assert_true((p - l) * 100 <= l * 12); /* at most 12 % */
        prev = p;
    }
    for (int e = 12; e < 62; e++) {
        uint64_t l = (UINT64_C(1) << e) + 12345;
        assert_true(pc_padme(l) >= l && pc_padme(pc_padme(l)) == pc_padme(l));
    }
}

/* ---- authority ---- */

static void test_authority_roundtrip(void **state)
{
    (void)state;
    uint8_t pk[PC_AUTH_PK_BYTES], pk2[PC_AUTH_PK_BYTES], pk3[PC_AUTH_PK_BYTES];
    uint8_t *sk = sodium_malloc(PC_AUTH_SK_BYTES), *sk2 = sodium_malloc(PC_AUTH_SK_BYTES);
    assert_int_equal(pc_authority_generate(pk, sk), PC_OK);
    char line[80];
    assert_int_equal(pc_authority_pk_format(pk, line, sizeof line), PC_OK);
    assert_int_equal(strncmp(line, "postern-authority-pk-1 ", 23), 0);
    assert_int_equal(strlen(line), 23 + 44);
    assert_int_equal(pc_authority_pk_parse(line, pk2), PC_OK);
    assert_memory_equal(pk, pk2, sizeof pk);
    char nl[84];
    snprintf(nl, sizeof nl, "%s\r\n", line);
    assert_int_equal(pc_authority_pk_parse(nl, pk2), PC_OK);
    snprintf(nl, sizeof nl, "%s\n", line);
    assert_int_equal(pc_authority_pk_parse(nl, pk2), PC_OK);

    assert_int_equal(pc_authority_sk_format(sk, line, sizeof line), PC_OK);
    assert_int_equal(strncmp(line, "postern-authority-sk-1 ", 23), 0);
    /* the file holds the seed: base64 of the first 32 bytes */
    char b64[45];
    sodium_bin2base64(b64, sizeof b64, sk, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_string_equal(line + 23, b64);
    assert_int_equal(pc_authority_sk_parse(line, sk2, pk3), PC_OK);
    assert_memory_equal(sk, sk2, PC_AUTH_SK_BYTES);
    assert_memory_equal(pk, pk3, sizeof pk);
    assert_int_equal(pc_authority_sk_parse(line, sk2, NULL), PC_OK);

    uint8_t id[PC_AUTH_KEYID_BYTES], want[PC_AUTH_KEYID_BYTES];
    pc_authority_keyid(pk, id);
    crypto_generichash(want, sizeof want, pk, sizeof pk, NULL, 0);
    assert_memory_equal(id, want, sizeof id);
    assert_int_equal(pc_authority_pk_format(pk, line, 60), PC_EINVAL);
    sodium_free(sk);
    sodium_free(sk2);
}

static void test_authority_rejects(void **state)
{
    (void)state;
    uint8_t pk[PC_AUTH_PK_BYTES], sk[PC_AUTH_SK_BYTES];
    pc_authority_generate(pk, sk);
    char good[80], bad[128];
    pc_authority_pk_format(pk, good, sizeof good);
    const char *b = good + 23;
    const char *cases[] = {"", "postern-authority-pk-1", "postern-authority-pk-1 ", "postern-authority-pk-2 %s",
                           "postern-authority-sk-1 %s", "postern-authority-pk-1  %s", " postern-authority-pk-1 %s",
                           "postern-authority-pk-1 %s ", "postern-authority-pk-1 %s=", "postern-authority-pk-1 %sAAAA",
                           "postern-authority-pk-1 %s\n\n", "postern-authority-pk-1 %s\r",
                           "Postern-authority-pk-1 %s"};
    uint8_t out[PC_AUTH_PK_BYTES];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(bad, sizeof bad, cases[i], b);
        assert_int_equal(pc_authority_pk_parse(bad, out), PC_EFORMAT);
    }
    /* truncated base64, a bad character, and non-canonical trailing bits */
    snprintf(bad, sizeof bad, "postern-authority-pk-1 %.40s", b);
    assert_int_equal(pc_authority_pk_parse(bad, out), PC_EFORMAT);
    snprintf(bad, sizeof bad, "%s", good);
    bad[30] = '*';
    assert_int_equal(pc_authority_pk_parse(bad, out), PC_EFORMAT);
    snprintf(bad, sizeof bad, "postern-authority-pk-1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=");
    assert_int_equal(pc_authority_pk_parse(bad, out), PC_EFORMAT);
    snprintf(bad, sizeof bad, "postern-authority-pk-1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_int_equal(pc_authority_pk_parse(bad, out), PC_OK);
    /* a public line is not a secret line and vice versa */
    uint8_t sk2[PC_AUTH_SK_BYTES];
    assert_int_equal(pc_authority_sk_parse(good, sk2, NULL), PC_EFORMAT);
    pc_authority_sk_format(sk, bad, sizeof bad);
    assert_int_equal(pc_authority_pk_parse(bad, out), PC_EFORMAT);
    assert_int_equal(pc_authority_pk_parse(NULL, out), PC_EFORMAT);
    sodium_memzero(sk, sizeof sk);
}

static void test_cancel_key(void **state)
{
    (void)state;
    uint8_t pk[PC_AUTH_PK_BYTES], sk[PC_AUTH_SK_BYTES], pk2[PC_AUTH_PK_BYTES], sk2[PC_AUTH_SK_BYTES];
    pc_authority_generate(pk, sk);
    pc_authority_generate(pk2, sk2);
    const char *mid = "<k.00112233445566778899aabbccddeeff.1@postern.invalid>";
    char key[48], lock[64], key2[48], lock2[64];
    assert_int_equal(pc_cancel_key(sk, mid, key, sizeof key, lock, sizeof lock), PC_OK);

    /* spec: base64(BLAKE2b-32(key = seed; "postern cancel v1" || 0 || Message-ID)) */
    uint8_t msg[128], h[32];
    size_t n = sizeof "postern cancel v1";
    memcpy(msg, "postern cancel v1", n);
    memcpy(msg + n, mid, strlen(mid));
    crypto_generichash(h, 32, msg, n + strlen(mid), sk, 32);
    char want[64];
    sodium_bin2base64(want, sizeof want, h, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_string_equal(key, want);
    /* lock: "sha256:" base64(SHA-256(cancel key text)) */
    uint8_t sh[32];
    crypto_hash_sha256(sh, (const uint8_t *)key, strlen(key));
    strcpy(want, "sha256:");
    sodium_bin2base64(want + 7, sizeof want - 7, sh, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_string_equal(lock, want);

    assert_int_equal(pc_cancel_key(sk, mid, key2, sizeof key2, lock2, sizeof lock2), PC_OK);
    assert_string_equal(key, key2);
    assert_string_equal(lock, lock2);
    assert_int_equal(pc_cancel_key(sk2, mid, key2, sizeof key2, lock2, sizeof lock2), PC_OK);
    assert_string_not_equal(key, key2);
    assert_int_equal(pc_cancel_key(sk, "<other@postern.invalid>", key2, sizeof key2, NULL, 0), PC_OK);
    assert_string_not_equal(key, key2);
    assert_int_equal(pc_cancel_key(sk, mid, key2, 44, lock2, sizeof lock2), PC_EINVAL);
    assert_int_equal(pc_cancel_key(sk, mid, key2, sizeof key2, lock2, 40), PC_EINVAL);
    assert_int_equal(pc_cancel_key(sk, "", key2, sizeof key2, lock2, sizeof lock2), PC_EINVAL);
}

/* ---- key records ---- */

typedef struct {
    uint8_t apk[PC_AUTH_PK_BYTES];
    uint8_t *ask;
    pc_keyrecord rec;
    uint8_t sk[PC_BOX_SK_BYTES];
} krfix;

static const char ADDR[] = "alice@example.jp";
static const char PASS[] = "correct horse battery staple";

static void krfix_new(krfix *f)
{
    f->ask = sodium_malloc(PC_AUTH_SK_BYTES);
    assert_non_null(f->ask);
    pc_authority_generate(f->apk, f->ask);
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, strlen(PASS), OPS, MEM, f->ask, &f->rec, f->sk), PC_OK);
}

static void krfix_free(krfix *f)
{
    sodium_free(f->ask);
    sodium_memzero(f->sk, sizeof f->sk);
}

/* Signs record bytes the way the spec says, so tests can make authority-signed oddities. */
static void spec_sign(uint8_t *rec, size_t len, const uint8_t *ask)
{
    uint8_t msg[32 + PC_KEYRECORD_MAX];
    size_t n = sizeof "postern keyrecord v1";
    memcpy(msg, "postern keyrecord v1", n);
    memcpy(msg + n, rec, len - 64);
    crypto_sign_detached(rec + len - 64, NULL, msg, n + len - 64, ask);
}

static void test_keyrecord_roundtrip(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    const pc_keyrecord *r = &f.rec;
    assert_string_equal(r->address, ADDR);
    assert_int_equal(r->serial, 1);
    assert_true(r->opslimit == OPS && r->memlimit == MEM);
    assert_true(r->created > 1600000000);
    uint8_t pk[32], kid[16], aid[8];
    crypto_scalarmult_base(pk, f.sk);
    assert_memory_equal(pk, r->box_pk, 32);
    crypto_generichash(kid, 16, r->box_pk, 32, NULL, 0);
    assert_memory_equal(kid, r->key_id, 16);
    pc_authority_keyid(f.apk, aid);
    assert_memory_equal(aid, r->authority_id, 8);

    uint8_t enc[PC_KEYRECORD_MAX];
    size_t a = strlen(ADDR);
    size_t n = pc_keyrecord_encode(r, enc, sizeof enc);
    assert_int_equal(n, 244 + a);
    assert_int_equal(pc_keyrecord_encode(r, enc, n - 1), 0);
    /* header per spec */
    assert_memory_equal(enc, "PSTK\x01\x01", 6);
    assert_int_equal(enc[6] << 8 | enc[7], a);
    assert_memory_equal(enc + 8, ADDR, a);
    assert_memory_equal(enc + 8 + a, r->key_id, 16);
    assert_memory_equal(enc + 36 + a, r->box_pk, 32);

    pc_keyrecord d;
    assert_int_equal(pc_keyrecord_decode(enc, n, &d), PC_OK);
    assert_memory_equal(&d, r, sizeof d);
    uint8_t again[PC_KEYRECORD_MAX];
    assert_int_equal(pc_keyrecord_encode(&d, again, sizeof again), n);
    assert_memory_equal(again, enc, n);

    assert_int_equal(pc_keyrecord_verify(&d, (const uint8_t(*)[32])f.apk, 1, ADDR), PC_OK);
    /* the signature is over context || bytes [0, 180+A) */
    uint8_t msg[32 + PC_KEYRECORD_MAX];
    size_t cl = sizeof "postern keyrecord v1";
    memcpy(msg, "postern keyrecord v1", cl);
    memcpy(msg + cl, enc, 180 + a);
    assert_int_equal(crypto_sign_verify_detached(enc + 180 + a, msg, cl + 180 + a, f.apk), 0);

    /* the wrap is AEAD(sk, ad = bytes [0, 124+A), key = Argon2id(password, salt)) */
    uint8_t w[32], sk[32];
    unsigned long long ml;
    assert_int_equal(crypto_pwhash(w, 32, PASS, strlen(PASS), enc + 84 + a, OPS, MEM, crypto_pwhash_ALG_ARGON2ID13), 0);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(sk, &ml, NULL, enc + 124 + a, 48, enc, 124 + a,
                                                                enc + 100 + a, w),
                     0);
    assert_memory_equal(sk, f.sk, 32);

    uint8_t out[PC_BOX_SK_BYTES];
    assert_int_equal(pc_keyrecord_unlock(&d, PASS, strlen(PASS), out), PC_OK);
    assert_memory_equal(out, f.sk, sizeof out);
    pc_keyrecord d2;
    uint8_t sk2[32];
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, strlen(PASS), OPS, MEM, f.ask, &d2, NULL), PC_OK);
    assert_memory_not_equal(d2.box_pk, d.box_pk, 32);
    assert_int_equal(pc_keyrecord_unlock(&d2, PASS, strlen(PASS), sk2), PC_OK);
    krfix_free(&f);
}

static void test_keyrecord_wrong_password(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    uint8_t out[PC_BOX_SK_BYTES];
    assert_int_equal(pc_keyrecord_unlock(&f.rec, "wrong", 5, out), PC_EPASS);
    assert_int_equal(pc_keyrecord_unlock(&f.rec, PASS, strlen(PASS) - 1, out), PC_EPASS);
    assert_int_equal(pc_keyrecord_unlock(&f.rec, "", 0, out), PC_EPASS);
    /* an empty password is a password */
    pc_keyrecord r;
    assert_int_equal(pc_keyrecord_create(ADDR, "", 0, OPS, MEM, f.ask, &r, NULL), PC_OK);
    assert_int_equal(pc_keyrecord_unlock(&r, NULL, 0, out), PC_OK);
    assert_int_equal(pc_keyrecord_unlock(&r, "x", 1, out), PC_EPASS);
    krfix_free(&f);
}

static void test_keyrecord_default_limits(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    pc_keyrecord r;
    uint8_t sk[32], out[32];
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, strlen(PASS), 0, 0, f.ask, &r, sk), PC_OK);
    assert_true(r.opslimit == crypto_pwhash_OPSLIMIT_INTERACTIVE);
    assert_true(r.memlimit == crypto_pwhash_MEMLIMIT_INTERACTIVE);
    assert_int_equal(pc_keyrecord_unlock(&r, PASS, strlen(PASS), out), PC_OK);
    assert_memory_equal(sk, out, 32);
    krfix_free(&f);
}

static void test_keyrecord_create_rejects(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    pc_keyrecord r;
    char longaddr[300];
    memset(longaddr, 'a', sizeof longaddr);
    longaddr[255] = 0;
    assert_int_equal(pc_keyrecord_create(longaddr, PASS, 4, OPS, MEM, f.ask, &r, NULL), PC_EINVAL);
    longaddr[254] = 0;
    assert_int_equal(pc_keyrecord_create(longaddr, PASS, 4, OPS, MEM, f.ask, &r, NULL), PC_OK);
    uint8_t enc[PC_KEYRECORD_MAX];
    assert_int_equal(pc_keyrecord_encode(&r, enc, sizeof enc), PC_KEYRECORD_MAX);
    assert_int_equal(pc_keyrecord_create("", PASS, 4, OPS, MEM, f.ask, &r, NULL), PC_EINVAL);
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, 4, 0, MEM, f.ask, &r, NULL), PC_EINVAL);
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, 4, 17, MEM, f.ask, &r, NULL), PC_EINVAL);
    assert_int_equal(pc_keyrecord_create(ADDR, PASS, 4, OPS, 8191, f.ask, &r, NULL), PC_EINVAL);
    assert_int_equal(pc_keyrecord_create(ADDR, NULL, 4, OPS, MEM, f.ask, &r, NULL), PC_EINVAL);
    krfix_free(&f);
}

static void test_keyrecord_forged(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    uint8_t enc[PC_KEYRECORD_MAX], bad[PC_KEYRECORD_MAX];
    size_t n = pc_keyrecord_encode(&f.rec, enc, sizeof enc), a = strlen(ADDR);
    /* a flipped bit anywhere is refused, by decode or by verify */
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(bad, enc, n);
            bad[i] ^= (uint8_t)(1u << bit);
            pc_keyrecord d;
            int rc = pc_keyrecord_decode(bad, n, &d);
            if (rc == PC_OK)
                rc = pc_keyrecord_verify(&d, (const uint8_t(*)[32])f.apk, 1, ADDR);
            if (rc == PC_OK)
                fail_msg("flip at byte %zu bit %d accepted", i, bit);
            assert_true(rc == PC_EFORMAT || rc == PC_ESIG);
            /* fields under the wrap's associated data, and the wrap itself, stop the unlock */
            int aead_only = i >= 8 + a && i < 172 + a && !(i >= 68 + a && i < 84 + a);
            if (rc == PC_ESIG && aead_only) {
                uint8_t out[32];
                assert_int_equal(pc_keyrecord_unlock(&d, PASS, strlen(PASS), out), PC_EPASS);
            }
        }
    }
    krfix_free(&f);
}

static void test_keyrecord_decode_strict(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    uint8_t enc[PC_KEYRECORD_MAX + 8], bad[PC_KEYRECORD_MAX + 8];
    size_t n = pc_keyrecord_encode(&f.rec, enc, sizeof enc), a = strlen(ADDR);
    pc_keyrecord d;
    for (size_t len = 0; len < n + 4; len++)
        assert_int_equal(pc_keyrecord_decode(enc, len, &d), len == n ? PC_OK : PC_EFORMAT);
#define MUT(stmt)                                                                                                    \
    do {                                                                                                             \
        memcpy(bad, enc, n);                                                                                         \
        stmt;                                                                                                        \
        assert_int_equal(pc_keyrecord_decode(bad, n, &d), PC_EFORMAT);                                               \
    } while (0)
    MUT(bad[0] = 'X');
    MUT(bad[4] = 2);
    MUT(bad[5] = 2);
    MUT(bad[6] = 0; bad[7] = 0);
    MUT(bad[7] = (uint8_t)(a + 1));
    MUT(bad[8 + 3] = 0);             /* NUL in the address */
    MUT(be64(bad + 68 + a, 0));       /* opslimit */
    MUT(be64(bad + 68 + a, 17));
    MUT(be64(bad + 76 + a, 8191));    /* memlimit */
    MUT(be64(bad + 76 + a, (4ull << 30) + 1));
    memcpy(bad, enc, n);
    be64(bad + 68 + a, 16);
    be64(bad + 76 + a, 4ull << 30);
    assert_int_equal(pc_keyrecord_decode(bad, n, &d), PC_OK); /* bounds are inclusive */
    /* a 255-octet address would need 499 bytes */
    uint8_t big[PC_KEYRECORD_MAX + 1];
    memset(big, 'a', sizeof big);
    memcpy(big, "PSTK\x01\x01\x00\xff", 8);
    assert_int_equal(pc_keyrecord_decode(big, sizeof big, &d), PC_EFORMAT);
#undef MUT
    krfix_free(&f);
}

static void test_keyrecord_other_authority_and_address(void **state)
{
    (void)state;
    krfix f, g;
    krfix_new(&f);
    krfix_new(&g);
    uint8_t pks[2][PC_AUTH_PK_BYTES];
    memcpy(pks[0], g.apk, 32);
    memcpy(pks[1], f.apk, 32);
    assert_int_equal(pc_keyrecord_verify(&f.rec, (const uint8_t(*)[32])g.apk, 1, ADDR), PC_ESIG);
    assert_int_equal(pc_keyrecord_verify(&f.rec, pks, 2, ADDR), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&f.rec, pks, 0, ADDR), PC_ESIG);
    assert_int_equal(pc_keyrecord_verify(&f.rec, pks, 2, "bob@example.jp"), PC_EADDR);
    assert_int_equal(pc_keyrecord_verify(&f.rec, pks, 2, "alice@example.j"), PC_EADDR);

    /* signed by g but claiming f's authority id */
    uint8_t enc[PC_KEYRECORD_MAX];
    size_t n = pc_keyrecord_encode(&f.rec, enc, sizeof enc), a = strlen(ADDR);
    spec_sign(enc, n, g.ask);
    pc_keyrecord d;
    assert_int_equal(pc_keyrecord_decode(enc, n, &d), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&d, pks, 2, ADDR), PC_ESIG);
    /* properly re-signed by g (id and signature): accepted under g only */
    pc_authority_keyid(g.apk, enc + 172 + a);
    spec_sign(enc, n, g.ask);
    assert_int_equal(pc_keyrecord_decode(enc, n, &d), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&d, pks, 2, ADDR), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&d, (const uint8_t(*)[32])f.apk, 1, ADDR), PC_ESIG);
    /* signed by the authority, but the key id does not name the public key */
    enc[8 + a] ^= 1;
    spec_sign(enc, n, g.ask);
    assert_int_equal(pc_keyrecord_decode(enc, n, &d), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&d, pks, 2, ADDR), PC_EFORMAT);
    /* a record for bob, validly signed, is not alice's */
    pc_keyrecord b;
    assert_int_equal(pc_keyrecord_create("bob@example.jp", PASS, strlen(PASS), OPS, MEM, f.ask, &b, NULL), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&b, pks, 2, ADDR), PC_EADDR);
    assert_int_equal(pc_keyrecord_verify(&b, pks, 2, "bob@example.jp"), PC_OK);
    krfix_free(&f);
    krfix_free(&g);
}

static void test_keyrecord_rewrap(void **state)
{
    (void)state;
    krfix f;
    krfix_new(&f);
    pc_keyrecord r = f.rec;
    const char *np = "new password";
    assert_int_equal(pc_keyrecord_rewrap(&r, f.sk, np, strlen(np), OPS, MEM, f.ask), PC_OK);
    assert_int_equal(r.serial, 2);
    assert_memory_equal(r.box_pk, f.rec.box_pk, 32);
    assert_memory_equal(r.key_id, f.rec.key_id, 16);
    assert_memory_not_equal(r.salt, f.rec.salt, 16);
    assert_memory_not_equal(r.nonce, f.rec.nonce, 24);
    assert_int_equal(pc_keyrecord_verify(&r, (const uint8_t(*)[32])f.apk, 1, ADDR), PC_OK);
    uint8_t out[32];
    assert_int_equal(pc_keyrecord_unlock(&r, PASS, strlen(PASS), out), PC_EPASS);
    assert_int_equal(pc_keyrecord_unlock(&r, np, strlen(np), out), PC_OK);
    assert_memory_equal(out, f.sk, 32);
    /* round trip through the binary form */
    uint8_t enc[PC_KEYRECORD_MAX];
    pc_keyrecord d;
    assert_int_equal(pc_keyrecord_decode(enc, pc_keyrecord_encode(&r, enc, sizeof enc), &d), PC_OK);
    assert_int_equal(pc_keyrecord_unlock(&d, np, strlen(np), out), PC_OK);
    /* someone else's secret key is refused and the record is left alone */
    uint8_t other[32];
    randombytes_buf(other, sizeof other);
    pc_keyrecord keep = r;
    assert_int_equal(pc_keyrecord_rewrap(&r, other, np, strlen(np), OPS, MEM, f.ask), PC_EINVAL);
    assert_memory_equal(&keep, &r, sizeof r);
    assert_int_equal(pc_keyrecord_rewrap(&r, f.sk, np, strlen(np), 99, MEM, f.ask), PC_EINVAL);
    assert_int_equal(pc_keyrecord_rewrap(&r, f.sk, np, strlen(np), OPS, MEM, f.ask), PC_OK);
    assert_int_equal(r.serial, 3);
    krfix_free(&f);
}

/* ---- envelopes ---- */

static void test_message_tag(void **state)
{
    (void)state;
    uint8_t secret[32] = {9}, hash[32] = {7}, id[16] = {5}, tag[32], t2[32];
    pc_message_tag(secret, ADDR, id, hash, tag);
    uint8_t msg[160];
    size_t n = sizeof "postern msgid v2", a = strlen(ADDR);
    memcpy(msg, "postern msgid v2", n);
    memcpy(msg + n, ADDR, a + 1);
    memcpy(msg + n + a + 1, id, 16);
    memcpy(msg + n + a + 1 + 16, hash, 32);
    crypto_generichash(t2, 32, msg, n + a + 1 + 16 + 32, secret, 32);
    assert_memory_equal(tag, t2, 32);
    pc_message_tag(secret, "bob@example.jp", id, hash, t2);
    assert_memory_not_equal(tag, t2, 32);
    /* the same message to a re-added address (a new key pair) is a new article */
    id[0] = 6;
    pc_message_tag(secret, ADDR, id, hash, t2);
    assert_memory_not_equal(tag, t2, 32);
    id[0] = 5;
    secret[0] = 8;
    pc_message_tag(secret, ADDR, id, hash, t2);
    assert_memory_not_equal(tag, t2, 32);
}

static void roundtrip(size_t len, size_t seal_slice, size_t open_slice)
{
    boxkey k;
    boxkey_new(&k);
    uint8_t *msg = make_message(len, (uint32_t)len);
    buf env = {0}, out = {0};
    pc_msg_meta m, mo;
    uint8_t hash[32], want[32];
    seal_all(&k, msg, len, seal_slice, &env, &m, hash);
    crypto_generichash(want, 32, msg, len, NULL, 0);
    assert_memory_equal(hash, want, 32);
    uint64_t p = pc_padme(len < 4096 ? 4096 : len);
    assert_true(m.raw_size == len);
    assert_true(m.crlf_size == crlf_size(msg, len));
    assert_true(m.padded_size == p);
    assert_true(env.len == pc_envelope_size(p));
    assert_true(env.len == PC_MSG_PREFIX_BYTES + p + (p / C + 1) * ABYTES);
    assert_memory_equal(env.data, "PSTM\x01\x10\x00\x00", 8);
    assert_memory_equal(env.data + 8, k.id, 16);

    assert_int_equal(open_all(&k, env.data, env.len, open_slice, &out, &mo), PC_OK);
    assert_true(out.len == len);
    if (len)
        assert_memory_equal(out.data, msg, len);
    assert_true(mo.raw_size == m.raw_size && mo.crlf_size == m.crlf_size && mo.padded_size == p);
    assert_true(mo.arrival == 1700000000 && mo.tz_minutes == -300);
    assert_memory_equal(mo.tag, m.tag, 32);
    buf_free(&env);
    buf_free(&out);
    free(msg);
}

static void test_seal_open_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 200000, 3 * 65536};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        roundtrip(sizes[i], 65536, 65536 + 17);
        roundtrip(sizes[i], 1000, 4093);
    }
}

static void test_seal_open_bytewise(void **state)
{
    (void)state;
    roundtrip(4095, 1, 1);
    roundtrip(65537, 7, 1);
    roundtrip(140000, 65536 * 2 + 3, 1);
}

static void test_seal_crlf_counting(void **state)
{
    (void)state;
    boxkey k;
    boxkey_new(&k);
    struct {
        const char *m;
        uint64_t n;
    } cases[] = {{"", 0},         {"\n", 2},        {"\r\n", 2},     {"\r", 1},      {"a\nb\r\nc\n", 9},
                 {"\n\n\r\n", 6}, {"\r\r\n\n", 5},  {"x\r", 2},      {"\n\r", 3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = strlen(cases[i].m);
        for (size_t slice = 1; slice <= 2; slice++) {
            buf env = {0};
            pc_msg_meta m;
            uint8_t h[32];
            seal_all(&k, (const uint8_t *)cases[i].m, len, slice, &env, &m, h);
            assert_true(m.raw_size == len);
            assert_true(m.crlf_size == cases[i].n);
            buf_free(&env);
        }
    }
    /* CR at the end of one chunk, LF at the start of the next, in every slicing */
    size_t len = 2 * C + 10;
    uint8_t *msg = calloc(1, len);
    memset(msg, 'a', len);
    msg[C - 1] = '\r';
    msg[C] = '\n';
    msg[2 * C - 1] = 'x';
    msg[2 * C] = '\n';
    const size_t slices[] = {1, 3, C - 1, C, C + 1, len};
    for (size_t i = 0; i < sizeof slices / sizeof *slices; i++) {
        buf env = {0};
        pc_msg_meta m;
        uint8_t h[32];
        seal_all(&k, msg, len, slices[i], &env, &m, h);
        assert_true(m.crlf_size == len + 1);
        assert_true(m.crlf_size == crlf_size(msg, len));
        buf_free(&env);
    }
    free(msg);
}

typedef struct {
    boxkey k;
    uint8_t *msg;
    size_t len;
    buf env;
    pc_msg_meta m;
} envfix;

static void envfix_new(envfix *e, size_t len)
{
    boxkey_new(&e->k);
    e->len = len;
    e->msg = make_message(len, 42);
    memset(&e->env, 0, sizeof e->env);
    uint8_t h[32];
    seal_all(&e->k, e->msg, len, 4096, &e->env, &e->m, h);
}

static void envfix_free(envfix *e)
{
    free(e->msg);
    buf_free(&e->env);
}

static int open_env(envfix *e, const uint8_t *env, size_t len, size_t slice)
{
    buf out = {0};
    pc_msg_meta m;
    int rc = open_all(&e->k, env, len, slice, &out, &m);
    buf_free(&out);
    return rc;
}

static void test_open_tampered(void **state)
{
    (void)state;
    envfix e;
    envfix_new(&e, 150000); /* P = 151552: chunks of 65536, 65536, 20480 */
    size_t n = e.env.len;
    uint8_t *bad = malloc(n);
    const size_t chunk_offsets[] = {PC_MSG_PREFIX_BYTES, PC_MSG_PREFIX_BYTES + 100, PC_MSG_PREFIX_BYTES + C + 17 + 5,
                                    n - 17, n - 1, n - 20000};
    for (size_t i = 0; i < sizeof chunk_offsets / sizeof *chunk_offsets; i++) {
        memcpy(bad, e.env.data, n);
        bad[chunk_offsets[i]] ^= 0x20;
        assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
        assert_int_equal(open_env(&e, bad, n, 777), PC_EAUTH);
    }
    /* prefix fields */
    memcpy(bad, e.env.data, n);
    bad[0] = 'X';
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[4] = 2;
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[6] = 1;
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[5] = 11;
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[5] = 21;
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[5] = 15; /* chunk boundaries move: the first chunk no longer opens */
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
    free(bad);
    envfix_free(&e);
    /* a one-chunk stream fits any chunk size: only the associated data catches the change */
    envfix_new(&e, 100);
    n = e.env.len;
    bad = malloc(n);
    for (uint8_t l = 12; l <= 20; l++) {
        memcpy(bad, e.env.data, n);
        bad[5] = l;
        assert_int_equal(open_env(&e, bad, n, 65536), l == 16 ? PC_OK : PC_EAUTH);
    }
    free(bad);
    envfix_free(&e);
    envfix_new(&e, 150000);
    bad = malloc(n = e.env.len);
    memcpy(bad, e.env.data, n);
    bad[8] ^= 1; /* key id */
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EKEY);
    for (size_t off = 24; off < 172; off += 37) { /* sealed metadata */
        memcpy(bad, e.env.data, n);
        bad[off] ^= 1;
        assert_int_equal(open_env(&e, bad, n, 65536), PC_EKEY);
    }
    memcpy(bad, e.env.data, n);
    bad[180] ^= 1; /* secretstream header */
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
    /* chunks swapped */
    memcpy(bad, e.env.data, n);
    memcpy(bad + PC_MSG_PREFIX_BYTES, e.env.data + PC_MSG_PREFIX_BYTES + C + 17, C + 17);
    memcpy(bad + PC_MSG_PREFIX_BYTES + C + 17, e.env.data + PC_MSG_PREFIX_BYTES, C + 17);
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
    free(bad);
    envfix_free(&e);
}

static void test_open_truncated_and_extra(void **state)
{
    (void)state;
    envfix e;
    envfix_new(&e, 150000);
    size_t n = e.env.len, last = (151552 % C) + 17;
    assert_int_equal(open_env(&e, e.env.data, n, 65536), PC_OK);
    assert_int_equal(open_env(&e, e.env.data, n - last, 65536), PC_ETRUNC); /* no final chunk */
    assert_int_equal(open_env(&e, e.env.data, n - last, 1), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, n - 1, 65536), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, n - 1, 3), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, PC_MSG_PREFIX_BYTES, 1), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, PC_MSG_PREFIX_BYTES + 17, 1), PC_ETRUNC);

    uint8_t *more = malloc(n + 5);
    memcpy(more, e.env.data, n);
    memset(more + n, 0, 5);
    assert_int_equal(open_env(&e, more, n + 1, 65536), PC_EFORMAT);
    assert_int_equal(open_env(&e, more, n + 5, 1), PC_EFORMAT);
    free(more);
    /* an empty final chunk (P a multiple of C) can be dropped too */
    envfix f;
    envfix_new(&f, 65536);
    assert_int_equal(open_env(&f, f.env.data, f.env.len, 1000), PC_OK);
    assert_int_equal(open_env(&f, f.env.data, f.env.len - 17, 1000), PC_ETRUNC);
    envfix_free(&f);
    envfix_free(&e);
}

static void test_open_wrong_recipient(void **state)
{
    (void)state;
    envfix e;
    envfix_new(&e, 5000);
    boxkey other;
    boxkey_new(&other);
    buf out = {0};
    pc_msg_meta m;
    assert_int_equal(open_all(&other, e.env.data, e.env.len, 4096, &out, &m), PC_EKEY);
    /* right key id, wrong secret key: the sealed box does not open */
    memcpy(other.pk, e.k.pk, 32);
    assert_int_equal(open_all(&other, e.env.data, e.env.len, 4096, &out, &m), PC_EKEY);
    assert_int_equal(out.len, 0);
    uint8_t kid[16];
    assert_int_equal(pc_envelope_key_id(e.env.data, e.env.len, kid), PC_OK);
    assert_memory_equal(kid, e.k.id, 16);
    assert_int_equal(pc_envelope_key_id(e.env.data, PC_MSG_PREFIX_BYTES - 1, kid), PC_EFORMAT);
    uint8_t bad[PC_MSG_PREFIX_BYTES];
    memcpy(bad, e.env.data, sizeof bad);
    bad[3] = 'K';
    assert_int_equal(pc_envelope_key_id(bad, sizeof bad, kid), PC_EFORMAT);
    buf_free(&out);
    envfix_free(&e);
}

/* The vault opens the metadata with the private key; the network process decrypts the stream
 * from the stream key alone. Both halves must agree with pc_open_begin. */
/* RFC 8315 texts: c-key = base64(K), c-lock = base64(SHA-256(c-key)) (values from Python's
 * base64 and hashlib); the owner's key of a sealed message is the one its stream key gives
 * the recipient, so the gateway that opens it can cancel it; the admin's comes from the
 * delivery secret; both name one Message-ID only. */
static void test_mail_cancel_lock(void **state)
{
    (void)state;
    uint8_t k[PC_CANCEL_KEY_BYTES];
    memset(k, 1, sizeof k);
    char text[PC_CANCEL_TEXT_MAX];
    pc_cancel_key_text(k, text);
    assert_string_equal(text, "sha256:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
    pc_cancel_lock_text(k, text);
    assert_string_equal(text, "sha256:xXzDtV05+ab3cvUI44IeCigIIjUsDQ8NJZ+6Y7dNqaA=");

    boxkey bk;
    boxkey_new(&bk);
    buf chunks = {0};
    pc_seal *s = pc_seal_begin(bk.pk, bk.id, 1700000000, 0, buf_sink, &chunks);
    assert_non_null(s);
    const char *mid = "<m.0123@postern.invalid>";
    uint8_t owner[PC_CANCEL_KEY_BYTES], again[PC_CANCEL_KEY_BYTES], other[PC_CANCEL_KEY_BYTES];
    assert_int_equal(pc_seal_cancel_key(s, mid, owner), PC_EINVAL); /* not finished yet */
    assert_int_equal(pc_seal_update(s, (const uint8_t *)"hello\n", 6), PC_OK);
    uint8_t hash[32], tag[PC_TAG_BYTES] = {7}, prefix[PC_MSG_PREFIX_BYTES], sk[PC_STREAM_KEY_BYTES];
    pc_msg_meta meta;
    assert_int_equal(pc_seal_finish(s, hash, &meta), PC_OK);
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_OK);
    assert_int_equal(pc_seal_cancel_key(s, mid, owner), PC_OK);
    pc_seal_free(s);
    buf_free(&chunks);
    assert_int_equal(pc_envelope_open_meta(prefix, bk.pk, bk.sk, &meta, sk), PC_OK);
    pc_cancel_owner_key(sk, mid, again);
    assert_memory_equal(owner, again, sizeof owner);
    pc_cancel_owner_key(sk, "<m.0124@postern.invalid>", other);
    assert_memory_not_equal(owner, other, sizeof owner);

    uint8_t secret[PC_DELIVERY_SECRET_BYTES] = {1, 2, 3}, admin[PC_CANCEL_KEY_BYTES], want[PC_CANCEL_KEY_BYTES];
    pc_cancel_admin_key(secret, mid, admin);
    /* spec: BLAKE2b-32(key = delivery secret; "postern cancel-lock admin v1" || 0 || Message-ID) */
    crypto_generichash_state st;
    crypto_generichash_init(&st, secret, sizeof secret, sizeof want);
    crypto_generichash_update(&st, (const uint8_t *)"postern cancel-lock admin v1", 29);
    crypto_generichash_update(&st, (const uint8_t *)mid, strlen(mid));
    crypto_generichash_final(&st, want, sizeof want);
    assert_memory_equal(admin, want, sizeof want);
    assert_memory_not_equal(admin, owner, sizeof owner);
}

static void test_open_split(void **state)
{
    (void)state;
    envfix e;
    envfix_new(&e, 150000);
    pc_msg_meta m, mref;
    uint8_t key[PC_STREAM_KEY_BYTES];
    assert_int_equal(pc_envelope_open_meta(e.env.data, e.k.pk, e.k.sk, &m, key), PC_OK);
    assert_int_equal(m.raw_size, e.m.raw_size);
    assert_int_equal(m.crlf_size, e.m.crlf_size);
    assert_int_equal(m.padded_size, e.m.padded_size);
    assert_int_equal(m.arrival, 1700000000);
    assert_int_equal(m.tz_minutes, -300);
    assert_memory_equal(m.tag, e.m.tag, PC_TAG_BYTES);
    buf ref = {0};
    assert_int_equal(open_all(&e.k, e.env.data, e.env.len, 7777, &ref, &mref), PC_OK);
    assert_memory_equal(&m, &mref, sizeof m);

    /* the stream key alone opens the stream, in any slicing */
    buf out = {0};
    int st = -1;
    pc_open *o = pc_open_begin_key(e.env.data, key, &m, buf_sink, &out, &st);
    assert_non_null(o);
    assert_int_equal(st, PC_OK);
    for (size_t off = PC_MSG_PREFIX_BYTES; off < e.env.len; off += 1000)
        assert_int_equal(pc_open_update(o, e.env.data + off, e.env.len - off < 1000 ? e.env.len - off : 1000), PC_OK);
    assert_int_equal(pc_open_finish(o), PC_OK);
    pc_open_free(o);
    assert_int_equal(out.len, e.len);
    assert_memory_equal(out.data, e.msg, e.len);
    buf_free(&out);

    /* another key: the first chunk fails to authenticate */
    uint8_t bad[PC_STREAM_KEY_BYTES];
    memcpy(bad, key, sizeof bad);
    bad[0] ^= 1;
    o = pc_open_begin_key(e.env.data, bad, &m, buf_sink, &out, &st);
    assert_non_null(o);
    assert_int_equal(pc_open_update(o, e.env.data + PC_MSG_PREFIX_BYTES, e.env.len - PC_MSG_PREFIX_BYTES), PC_EAUTH);
    pc_open_free(o);
    assert_int_equal(out.len, 0);

    /* sizes that padme cannot give, a bad prefix, missing arguments */
    pc_msg_meta odd = m;
    odd.padded_size++;
    assert_null(pc_open_begin_key(e.env.data, key, &odd, buf_sink, &out, &st));
    assert_int_equal(st, PC_EINVAL);
    odd = m;
    odd.padded_size = 0;
    odd.raw_size = 0;
    assert_null(pc_open_begin_key(e.env.data, key, &odd, buf_sink, &out, &st));
    assert_int_equal(st, PC_EINVAL);
    uint8_t pfx[PC_MSG_PREFIX_BYTES];
    memcpy(pfx, e.env.data, sizeof pfx);
    pfx[4] = 2;
    assert_null(pc_open_begin_key(pfx, key, &m, buf_sink, &out, &st));
    assert_int_equal(st, PC_EFORMAT);
    assert_int_equal(pc_envelope_open_meta(pfx, e.k.pk, e.k.sk, &m, key), PC_EFORMAT);
    assert_null(pc_open_begin_key(e.env.data, key, &m, NULL, &out, &st));
    assert_int_equal(st, PC_EINVAL);
    assert_int_equal(pc_envelope_open_meta(e.env.data, e.k.pk, e.k.sk, NULL, key), PC_EINVAL);

    /* another recipient, or the right key id with the wrong secret key */
    boxkey other;
    boxkey_new(&other);
    assert_int_equal(pc_envelope_open_meta(e.env.data, other.pk, other.sk, &m, key), PC_EKEY);
    assert_int_equal(pc_envelope_open_meta(e.env.data, e.k.pk, other.sk, &m, key), PC_EKEY);
    buf_free(&ref);
    envfix_free(&e);
}

static void test_sink_failures(void **state)
{
    (void)state;
    boxkey k;
    boxkey_new(&k);
    uint8_t *msg = make_message(200000, 1);
    buf b = {.fail_after = 2};
    pc_seal *s = pc_seal_begin(k.pk, k.id, 0, 0, buf_sink, &b);
    assert_non_null(s);
    assert_int_equal(pc_seal_update(s, msg, 65536), PC_OK);
    assert_int_equal(pc_seal_update(s, msg, 65536), PC_ESINK);
    assert_int_equal(pc_seal_update(s, msg, 1), PC_ESINK);
    uint8_t h[32];
    pc_msg_meta m;
    assert_int_equal(pc_seal_finish(s, h, &m), PC_ESINK);
    pc_seal_free(s);
    buf_free(&b);

    /* padding chunks go through the sink too */
    b.fail_after = 1;
    s = pc_seal_begin(k.pk, k.id, 0, 0, buf_sink, &b);
    assert_int_equal(pc_seal_update(s, msg, 10), PC_OK);
    assert_int_equal(pc_seal_finish(s, h, &m), PC_ESINK);
    uint8_t tag[32] = {0}, prefix[PC_MSG_PREFIX_BYTES];
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_EINVAL);
    pc_seal_free(s);
    buf_free(&b);

    envfix e;
    envfix_new(&e, 200000);
    int st;
    buf out = {.fail_after = 2};
    pc_open *o = pc_open_begin(e.env.data, e.k.pk, e.k.sk, &m, buf_sink, &out, &st);
    assert_non_null(o);
    assert_int_equal(pc_open_update(o, e.env.data + PC_MSG_PREFIX_BYTES, e.env.len - PC_MSG_PREFIX_BYTES), PC_ESINK);
    assert_int_equal(pc_open_finish(o), PC_ESINK);
    pc_open_free(o);
    buf_free(&out);
    envfix_free(&e);
    free(msg);
}

static void test_seal_misuse(void **state)
{
    (void)state;
    boxkey k;
    boxkey_new(&k);
    buf b = {0};
    uint8_t wrong[16];
    memcpy(wrong, k.id, 16);
    wrong[0] ^= 1;
    assert_null(pc_seal_begin(k.pk, wrong, 0, 0, buf_sink, &b));
    assert_null(pc_seal_begin(k.pk, k.id, 0, 0, NULL, &b));
    uint8_t zero[32] = {0}, zid[16];
    crypto_generichash(zid, 16, zero, 32, NULL, 0);
    assert_null(pc_seal_begin(zero, zid, 0, 0, buf_sink, &b)); /* low-order key */
    pc_seal *s = pc_seal_begin(k.pk, k.id, 0, 0, buf_sink, &b);
    uint8_t tag[32] = {0}, prefix[PC_MSG_PREFIX_BYTES], h[32];
    pc_msg_meta m;
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_EINVAL); /* before finish */
    assert_int_equal(pc_seal_finish(s, h, &m), PC_OK);
    assert_int_equal(pc_seal_finish(s, h, &m), PC_EINVAL);
    assert_int_equal(pc_seal_update(s, h, 1), PC_EINVAL);
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_OK);
    pc_seal_free(s);
    pc_seal_free(NULL);
    pc_open_free(NULL);
    buf_free(&b);
}

/* Builds an envelope from scratch per the spec, with any metadata and chunk layout. */
typedef struct {
    uint8_t version, flags;
    uint64_t r, n, p;
    const uint8_t *plain; /* P bytes */
    size_t nchunks;
    const size_t *sizes;
    const unsigned char *tags;
} craft;

static void craft_env(const boxkey *k, const craft *c, buf *env)
{
    uint8_t meta[100] = {0}, key[32];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    meta[0] = c->version;
    meta[1] = c->flags;
    be64(meta + 12, c->r);
    be64(meta + 20, c->n);
    be64(meta + 28, c->p);
    memcpy(meta + 36, key, 32);
    uint8_t prefix[PC_MSG_PREFIX_BYTES];
    memcpy(prefix, "PSTM\x01\x10\x00\x00", 8);
    memcpy(prefix + 8, k->id, 16);
    crypto_box_seal(prefix + 24, meta, 100, k->pk);
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_init_push(&st, prefix + 172, key);
    buf_sink(env, prefix, sizeof prefix);
    size_t off = 0;
    uint8_t *cbuf = malloc(C + 17);
    for (size_t i = 0; i < c->nchunks; i++) {
        crypto_secretstream_xchacha20poly1305_push(&st, cbuf, NULL, c->plain + off, c->sizes[i], prefix, 24,
                                                   c->tags[i]);
        buf_sink(env, cbuf, c->sizes[i] + 17);
        off += c->sizes[i];
    }
    free(cbuf);
}

static int craft_open(const boxkey *k, const craft *c, size_t *out_len)
{
    buf env = {0}, out = {0};
    craft_env(k, c, &env);
    pc_msg_meta m;
    int rc = open_all(k, env.data, env.len, 5000, &out, &m);
    if (out_len)
        *out_len = out.len;
    buf_free(&env);
    buf_free(&out);
    return rc;
}

static void test_open_crafted(void **state)
{
    (void)state;
    boxkey k;
    boxkey_new(&k);
    const unsigned char M = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
                        F = crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    uint8_t *plain = calloc(1, 2 * C);
    memset(plain, 'x', 100);
    size_t one[] = {4096}, len;
    unsigned char fin[] = {F}, msg1[] = {M};
    craft c = {1, 0, 100, 100, 4096, plain, 1, one, fin};
    /* an independently built envelope opens */
    assert_int_equal(craft_open(&k, &c, &len), PC_OK);
    assert_int_equal(len, 100);
    c.n = 200;
    assert_int_equal(craft_open(&k, &c, NULL), PC_OK);
    c.n = 201; /* N > 2R */
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.n = 99; /* N < R */
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.n = 100;
    c.p = 4097; /* P is not padme(max(R, 4096)) */
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.p = 4096;
    c.version = 2;
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.version = 1;
    c.flags = 1;
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.flags = 0;
    c.tags = msg1; /* last chunk without TAG_FINAL */
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    c.tags = fin;
    plain[4000] = 1; /* non-zero padding */
    assert_int_equal(craft_open(&k, &c, NULL), PC_EFORMAT);
    plain[4000] = 0;
    /* a FINAL chunk before the end */
    size_t two[] = {C, 4096};
    unsigned char ff[] = {F, F}, mf[] = {M, F};
    craft d = {1, 0, 69000, 69000, pc_padme(69000), plain, 2, two, ff};
    assert_true(d.p == 69632);
    two[1] = 69632 - C;
    assert_int_equal(craft_open(&k, &d, NULL), PC_EFORMAT);
    d.tags = mf;
    memset(plain, 'y', 69000);
    assert_int_equal(craft_open(&k, &d, &len), PC_OK);
    assert_int_equal(len, 69000);
    free(plain);
}

/* ---- armor ---- */

static void armor_encode(const uint8_t *in, size_t len, size_t slice, buf *out)
{
    pc_armor *a = pc_armor_encoder(buf_sink, out);
    assert_non_null(a);
    for (size_t off = 0; off < len; off += slice)
        assert_int_equal(pc_armor_update(a, in + off, len - off < slice ? len - off : slice), PC_OK);
    assert_int_equal(pc_armor_finish(a), PC_OK);
    pc_armor_free(a);
}

static int armor_decode(const uint8_t *in, size_t len, size_t slice, buf *out)
{
    pc_armor *a = pc_armor_decoder(buf_sink, out);
    assert_non_null(a);
    int rc = PC_OK;
    for (size_t off = 0; off < len && rc == PC_OK; off += slice)
        rc = pc_armor_update(a, in + off, len - off < slice ? len - off : slice);
    if (rc == PC_OK)
        rc = pc_armor_finish(a);
    pc_armor_free(a);
    return rc;
}

static void test_armor_roundtrip(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 2, 3, 4, 56, 57, 58, 113, 114, 115, 3072, 3073, 10000, 100000};
    const size_t slices[] = {1, 5, 57, 4096, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint8_t *bin = make_message(sizes[i], 7);
        char *ref = malloc(sodium_base64_ENCODED_LEN(sizes[i], sodium_base64_VARIANT_ORIGINAL));
        sodium_bin2base64(ref, sodium_base64_ENCODED_LEN(sizes[i], sodium_base64_VARIANT_ORIGINAL), bin, sizes[i],
                          sodium_base64_VARIANT_ORIGINAL);
        for (size_t j = 0; j < sizeof slices / sizeof *slices; j++) {
            buf t = {0}, back = {0};
            armor_encode(bin, sizes[i], slices[j], &t);
            assert_true(t.len == pc_armor_encoded_size(sizes[i]));
            /* 76-column lines, CRLF, only the last may be shorter; joined they are plain base64 */
            size_t line = 0, r = 0;
            for (size_t p = 0; p < t.len; p++) {
                if (t.data[p] == '\r') {
                    assert_true(p + 1 < t.len && t.data[p + 1] == '\n');
                    assert_true(line == 76 || p + 2 == t.len);
                    assert_true(line > 0);
                    line = 0;
                    p++;
                } else {
                    assert_true(t.data[p] == (uint8_t)ref[r]);
                    r++;
                    line++;
                    assert_true(line <= 76);
                }
            }
            assert_int_equal(line, 0);
            assert_int_equal(r, strlen(ref));
            assert_int_equal(armor_decode(t.data, t.len, slices[j], &back), PC_OK);
            assert_true(back.len == sizes[i]);
            if (sizes[i])
                assert_memory_equal(back.data, bin, sizes[i]);
            /* LF-only line ends and blank lines are fine too */
            buf lf = {0}, back2 = {0};
            buf_sink(&lf, (const uint8_t *)"\n\r\n", 3);
            for (size_t p = 0; p < t.len; p++)
                if (t.data[p] != '\r') {
                    buf_sink(&lf, t.data + p, 1);
                    if (t.data[p] == '\n' && p % 3 == 0)
                        buf_sink(&lf, (const uint8_t *)"\n", 1);
                }
            assert_int_equal(armor_decode(lf.data, lf.len, slices[j], &back2), PC_OK);
            assert_true(back2.len == sizes[i]);
            if (sizes[i])
                assert_memory_equal(back2.data, bin, sizes[i]);
            buf_free(&t);
            buf_free(&back);
            buf_free(&lf);
            buf_free(&back2);
        }
        free(ref);
        free(bin);
    }
    /* any wrap width is accepted */
    buf back = {0};
    const char *odd = "QUJD\r\nREVG\r\nR0g=\r\n";
    assert_int_equal(armor_decode((const uint8_t *)odd, strlen(odd), 1, &back), PC_OK);
    assert_int_equal(back.len, 8);
    assert_memory_equal(back.data, "ABCDEFGH", 8);
    buf_free(&back);
    const char *odd2 = "QU\r\nJDR\nEVG\nR0\ng=";
    assert_int_equal(armor_decode((const uint8_t *)odd2, strlen(odd2), 2, &back), PC_OK);
    assert_int_equal(back.len, 8);
    buf_free(&back);
}

static void test_armor_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"QQ",       "QQ=",       "QUJ",        "QQ==QQ==", "QQ==\r\nQUJD\r\n", "QU*D",
                         "QUJD QUJD", "QUJD\t",   "====",       "QR==",     "Q===",             "QQ==\r\nQ"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        for (size_t slice = 1; slice <= 4096; slice *= 4096) {
            buf out = {0};
            assert_int_equal(armor_decode((const uint8_t *)bad[i], strlen(bad[i]), slice, &out), PC_EFORMAT);
            buf_free(&out);
        }
    }
    /* data after padding, far apart (separate decode rounds) */
    size_t n = 9000;
    uint8_t *t = malloc(n);
    memset(t, '\n', n);
    memcpy(t, "QQ==", 4);
    memcpy(t + n - 4, "QUJD", 4);
    buf out = {0};
    assert_int_equal(armor_decode(t, n, 100, &out), PC_EFORMAT);
    buf_free(&out);
    free(t);
    /* empty input decodes to nothing */
    assert_int_equal(armor_decode((const uint8_t *)"\r\n\r\n", 4, 1, &out), PC_OK);
    assert_int_equal(out.len, 0);
    /* failing sink */
    out.fail_after = 1;
    uint8_t bin[100] = {0};
    pc_armor *a = pc_armor_encoder(buf_sink, &out);
    assert_int_equal(pc_armor_update(a, bin, sizeof bin), PC_OK);
    assert_int_equal(pc_armor_finish(a), PC_ESINK);
    pc_armor_free(a);
    buf_free(&out);
    assert_true(pc_armor_encoded_size(0) == 0);
    assert_true(pc_armor_encoded_size(1) == 6);
    assert_true(pc_armor_encoded_size(57) == 78);
    assert_true(pc_armor_encoded_size(58) == 84);
}

/* The table decoder accepts exactly what libsodium's strict decoder accepts, and decodes it
 * to the same bytes: random strings over the alphabet plus '=' and line ends, and mutated
 * valid encodings. */
static void test_armor_agrees_with_libsodium(void **state)
{
    (void)state;
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n*";
    char txt[64];
    uint8_t ref[64];
    for (unsigned round = 0; round < 200000; round++) {
        size_t len = randombytes_uniform(20);
        if (round % 2) { /* a valid encoding, then one character changed */
            uint8_t bin[12];
            size_t blen = randombytes_uniform(sizeof bin + 1);
            randombytes_buf(bin, blen);
            sodium_bin2base64(txt, sizeof txt, bin, blen, sodium_base64_VARIANT_ORIGINAL);
            len = strlen(txt);
            if (len && randombytes_uniform(2))
                txt[randombytes_uniform((uint32_t)len)] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
        } else {
            for (size_t i = 0; i < len; i++)
                txt[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
        }
        size_t ref_len = 0;
        const char *end = NULL;
        int ref_rc = sodium_base642bin(ref, sizeof ref, txt, len, "\r\n", &ref_len, &end,
                                       sodium_base64_VARIANT_ORIGINAL);
        if (ref_rc == 0 && end != txt + len)
            ref_rc = -1; /* stopped early: the rest is not base64 */
        buf out = {0};
        int rc = armor_decode((const uint8_t *)txt, len, 1 + randombytes_uniform(8), &out);
        if ((rc == PC_OK) != (ref_rc == 0))
            fail_msg("\"%.*s\": armor %d, libsodium %d", (int)len, txt, rc, ref_rc);
        if (rc == PC_OK) {
            assert_int_equal(out.len, ref_len);
            assert_memory_equal(out.data ? out.data : ref, ref, ref_len);
        }
        buf_free(&out);
    }
}

static void test_full_pipeline(void **state)
{
    (void)state;
    /* seal -> armor -> dearmor (byte by byte) -> open, as an article body travels */
    envfix e;
    envfix_new(&e, 70000);
    buf text = {0}, bin = {0}, out = {0};
    armor_encode(e.env.data, e.env.len, 1000, &text);
    assert_true(text.len == pc_armor_encoded_size(pc_envelope_size(e.m.padded_size)));
    assert_int_equal(armor_decode(text.data, text.len, 1, &bin), PC_OK);
    assert_true(bin.len == e.env.len);
    pc_msg_meta m;
    assert_int_equal(open_all(&e.k, bin.data, bin.len, 1, &out, &m), PC_OK);
    assert_true(out.len == e.len);
    assert_memory_equal(out.data, e.msg, e.len);
    buf_free(&text);
    buf_free(&bin);
    buf_free(&out);
    envfix_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_padme_known),
        cmocka_unit_test(test_padme_monotonic),
        cmocka_unit_test(test_authority_roundtrip),
        cmocka_unit_test(test_authority_rejects),
        cmocka_unit_test(test_cancel_key),
        cmocka_unit_test(test_keyrecord_roundtrip),
        cmocka_unit_test(test_keyrecord_wrong_password),
        cmocka_unit_test(test_keyrecord_default_limits),
        cmocka_unit_test(test_keyrecord_create_rejects),
        cmocka_unit_test(test_keyrecord_forged),
        cmocka_unit_test(test_keyrecord_decode_strict),
        cmocka_unit_test(test_keyrecord_other_authority_and_address),
        cmocka_unit_test(test_keyrecord_rewrap),
        cmocka_unit_test(test_message_tag),
        cmocka_unit_test(test_seal_open_sizes),
        cmocka_unit_test(test_seal_open_bytewise),
        cmocka_unit_test(test_seal_crlf_counting),
        cmocka_unit_test(test_open_tampered),
        cmocka_unit_test(test_open_truncated_and_extra),
        cmocka_unit_test(test_open_wrong_recipient),
        cmocka_unit_test(test_open_split),
        cmocka_unit_test(test_mail_cancel_lock),
        cmocka_unit_test(test_sink_failures),
        cmocka_unit_test(test_seal_misuse),
        cmocka_unit_test(test_open_crafted),
        cmocka_unit_test(test_armor_roundtrip),
        cmocka_unit_test(test_armor_rejects),
        cmocka_unit_test(test_armor_agrees_with_libsodium),
        cmocka_unit_test(test_full_pipeline),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
