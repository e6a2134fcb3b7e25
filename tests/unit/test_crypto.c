/* Unit tests for crypto/: authority keys, key records, writers, envelopes and their signed
 * trailers, padme and armor. Several tests rebuild the wire formats independently from
 * docs/formats.md, so that the code is checked against the spec and not only against itself. */
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

/* The writer that signs every envelope seal_all makes, certified by its own authority
 * (made once in setup), and the group and Message-ID it signs for. */
static uint8_t w_apk[PC_AUTH_PK_BYTES], w_ask[PC_AUTH_SK_BYTES], w_cert[PC_WRITER_CERT_BYTES], w_sk[PC_WRITER_SK_BYTES];
#define GROUP "postern.mail.alice"
#define MSGID "<t.0123@postern.invalid>"
#define TRAILER PC_MAIL_TRAILER_BYTES

/* Seals msg (fed in slices of `slice` bytes) into prefix || chunks, without a trailer;
 * chunks_hash gets what a signature covers. */
static void seal_unsigned(const boxkey *k, const uint8_t *msg, size_t len, size_t slice, buf *env, pc_msg_meta *meta,
                          uint8_t hash[32], uint8_t chunks_hash[32])
{
    buf chunks = {0};
    pc_seal *s = pc_seal_begin(k->pk, k->id, 1700000000, -300, buf_sink, &chunks);
    assert_non_null(s);
    for (size_t off = 0; off < len; off += slice)
        assert_int_equal(pc_seal_update(s, msg + off, len - off < slice ? len - off : slice), PC_OK);
    assert_int_equal(pc_seal_chunks_hash(s, chunks_hash), PC_EINVAL); /* not finished yet */
    assert_int_equal(pc_seal_finish(s, hash, meta), PC_OK);
    uint8_t tag[PC_TAG_BYTES], secret[PC_DELIVERY_SECRET_BYTES] = {1, 2, 3};
    pc_message_tag(secret, "alice@example.jp", k->id, hash, tag);
    uint8_t prefix[PC_MSG_PREFIX_BYTES], want[32];
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_OK);
    /* spec: BLAKE2b-32 of the stream chunks exactly as written */
    assert_int_equal(pc_seal_chunks_hash(s, chunks_hash), PC_OK);
    crypto_generichash(want, sizeof want, chunks.data, chunks.len, NULL, 0);
    assert_memory_equal(chunks_hash, want, 32);
    pc_seal_free(s);
    memcpy(meta->tag, tag, sizeof tag);
    buf_sink(env, prefix, sizeof prefix);
    buf_sink(env, chunks.data, chunks.len);
    buf_free(&chunks);
}

/* Seals msg into a whole version-2 envelope: prefix || chunks || trailer signed by the test
 * writer for GROUP and MSGID. */
static void seal_all(const boxkey *k, const uint8_t *msg, size_t len, size_t slice, buf *env, pc_msg_meta *meta,
                     uint8_t hash[32])
{
    uint8_t ch[32], trailer[TRAILER];
    size_t start = env->len;
    seal_unsigned(k, msg, len, slice, env, meta, hash, ch);
    assert_int_equal(pc_mail_sign(w_cert, w_sk, GROUP, MSGID, env->data + start, ch, trailer), PC_OK);
    buf_sink(env, trailer, sizeof trailer);
}

/* pc_envelope_verify under the test writer's authority only. */
static int verify_env(const uint8_t *env, size_t len, const char *group, const char *msgid)
{
    pc_writer_cert who;
    return pc_envelope_verify(env, len, group, msgid, (const uint8_t(*)[PC_AUTH_PK_BYTES])w_apk, 1, &who);
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
    if (pc_init() != PC_OK || pc_authority_generate(w_apk, w_ask) != PC_OK)
        return -1;
    return pc_writer_issue(w_ask, "mx1.example.jp", PC_ROLE_DELIVERY, 1600000000, 1900000000, w_cert, w_sk) == PC_OK
               ? 0
               : -1;
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

/* An authority rotation: the record signed by another authority key verifies under that
 * key only, and the same password opens it (the signature is outside the wrapped key's AD). */
static void test_keyrecord_resign(void **state)
{
    (void)state;
    krfix f, g;
    krfix_new(&f);
    krfix_new(&g);
    pc_keyrecord r = f.rec;
    assert_int_equal(pc_keyrecord_resign(&r, g.ask), PC_OK);
    assert_int_equal(r.serial, f.rec.serial);
    assert_int_equal(r.created, f.rec.created);
    assert_memory_not_equal(r.authority_id, f.rec.authority_id, sizeof r.authority_id);
    assert_int_equal(pc_keyrecord_verify(&r, (const uint8_t(*)[32])g.apk, 1, ADDR), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&r, (const uint8_t(*)[32])f.apk, 1, ADDR), PC_ESIG);
    uint8_t out[32];
    assert_int_equal(pc_keyrecord_unlock(&r, PASS, strlen(PASS), out), PC_OK);
    assert_memory_equal(out, f.sk, 32);
    uint8_t enc[PC_KEYRECORD_MAX];
    pc_keyrecord d;
    assert_int_equal(pc_keyrecord_decode(enc, pc_keyrecord_encode(&r, enc, sizeof enc), &d), PC_OK);
    assert_int_equal(pc_keyrecord_verify(&d, (const uint8_t(*)[32])g.apk, 1, ADDR), PC_OK);
    krfix_free(&f);
    krfix_free(&g);
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
    /* pc_envelope_size counts prefix and chunks; the trailer comes on top */
    assert_true(env.len == pc_envelope_size(p) + TRAILER);
    assert_true(env.len == PC_MSG_PREFIX_BYTES + p + (p / C + 1) * ABYTES + TRAILER);
    assert_memory_equal(env.data, "PSTM\x02\x10\x00\x00", 8);
    assert_memory_equal(env.data + 8, k.id, 16);
    assert_memory_equal(env.data + env.len - TRAILER, w_cert, PC_WRITER_CERT_BYTES);
    assert_int_equal(verify_env(env.data, env.len, GROUP, MSGID), PC_OK);

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
    size_t n = e.env.len, end = n - TRAILER; /* end of the chunks */
    uint8_t *bad = malloc(n);
    const size_t chunk_offsets[] = {PC_MSG_PREFIX_BYTES, PC_MSG_PREFIX_BYTES + 100, PC_MSG_PREFIX_BYTES + C + 17 + 5,
                                    end - 17, end - 1, end - 20000};
    for (size_t i = 0; i < sizeof chunk_offsets / sizeof *chunk_offsets; i++) {
        memcpy(bad, e.env.data, n);
        bad[chunk_offsets[i]] ^= 0x20;
        assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
        assert_int_equal(open_env(&e, bad, n, 777), PC_EAUTH);
        assert_int_equal(verify_env(bad, n, GROUP, MSGID), PC_ESIG);
    }
    /* the opener does not check the trailer (pc_mail_verify does): a damaged one still opens */
    const size_t trailer_offsets[] = {end, end + 8, end + 100, end + PC_WRITER_CERT_BYTES, n - 1};
    for (size_t i = 0; i < sizeof trailer_offsets / sizeof *trailer_offsets; i++) {
        memcpy(bad, e.env.data, n);
        bad[trailer_offsets[i]] ^= 0x20;
        assert_int_equal(open_env(&e, bad, n, 65536), PC_OK);
        assert_int_equal(verify_env(bad, n, GROUP, MSGID), PC_ESIG);
    }
    /* prefix fields */
    memcpy(bad, e.env.data, n);
    bad[0] = 'X';
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[4] = 3; /* no such version */
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EFORMAT);
    memcpy(bad, e.env.data, n);
    bad[4] = 1; /* a downgrade to the unsigned version: the chunks' associated data catches it */
    assert_int_equal(open_env(&e, bad, n, 65536), PC_EAUTH);
    assert_int_equal(verify_env(bad, n, GROUP, MSGID), PC_ESIG);
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
    size_t n = e.env.len, end = n - TRAILER, last = (151552 % C) + 17;
    assert_int_equal(open_env(&e, e.env.data, n, 65536), PC_OK);
    assert_int_equal(open_env(&e, e.env.data, end - last, 65536), PC_ETRUNC); /* no final chunk */
    assert_int_equal(open_env(&e, e.env.data, end - last, 1), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, end - 1, 65536), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, end - 1, 3), PC_ETRUNC);
    /* the final chunk whole but the trailer missing, or any part of it */
    const size_t cut[] = {end, end + 1, end + PC_WRITER_CERT_BYTES, n - 1};
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
        assert_int_equal(open_env(&e, e.env.data, cut[i], 65536), PC_ETRUNC);
        assert_int_equal(open_env(&e, e.env.data, cut[i], 7), PC_ETRUNC);
        assert_int_not_equal(verify_env(e.env.data, cut[i], GROUP, MSGID), PC_OK);
    }
    assert_int_equal(open_env(&e, e.env.data, PC_MSG_PREFIX_BYTES, 1), PC_ETRUNC);
    assert_int_equal(open_env(&e, e.env.data, PC_MSG_PREFIX_BYTES + 17, 1), PC_ETRUNC);
    assert_int_equal(verify_env(e.env.data, PC_MSG_PREFIX_BYTES + TRAILER - 1, GROUP, MSGID), PC_ETRUNC);
    assert_int_equal(verify_env(e.env.data, PC_MSG_PREFIX_BYTES - 1, GROUP, MSGID), PC_EFORMAT);

    /* bytes after the trailer, in the update that completes it or in a later one */
    uint8_t *more = malloc(n + 5);
    memcpy(more, e.env.data, n);
    memset(more + n, 0, 5);
    assert_int_equal(open_env(&e, more, n + 1, 65536), PC_EFORMAT);
    assert_int_equal(open_env(&e, more, n + 5, 1), PC_EFORMAT);
    assert_int_equal(open_env(&e, more, n + 5, TRAILER), PC_EFORMAT);
    assert_int_equal(verify_env(more, n + 1, GROUP, MSGID), PC_ESIG);
    free(more);
    /* an empty final chunk (P a multiple of C) can be dropped too, with or without the trailer */
    envfix f;
    envfix_new(&f, 65536);
    size_t fend = f.env.len - TRAILER;
    assert_int_equal(open_env(&f, f.env.data, f.env.len, 1000), PC_OK);
    assert_int_equal(open_env(&f, f.env.data, fend - 17, 1000), PC_ETRUNC);
    uint8_t *cutf = malloc(f.env.len - 17);
    memcpy(cutf, f.env.data, fend - 17);
    memcpy(cutf + fend - 17, f.env.data + fend, TRAILER);
    assert_int_not_equal(open_env(&f, cutf, f.env.len - 17, 1000), PC_OK); /* the trailer is not a chunk */
    assert_int_equal(verify_env(cutf, f.env.len - 17, GROUP, MSGID), PC_ESIG);
    free(cutf);
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
    pfx[4] = 3;
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
    uint8_t envelope_version; /* prefix offset 4; 0 means 1 */
    int sign;                 /* append a trailer by the test writer for GROUP and MSGID */
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
    if (c->envelope_version)
        prefix[4] = c->envelope_version;
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
    if (c->sign) { /* the trailer built from the spec's parts, signed through the API */
        uint8_t ch[32], trailer[TRAILER];
        crypto_generichash(ch, sizeof ch, env->data + PC_MSG_PREFIX_BYTES, env->len - PC_MSG_PREFIX_BYTES, NULL, 0);
        assert_int_equal(pc_mail_sign(w_cert, w_sk, GROUP, MSGID, env->data, ch, trailer),
                         prefix[4] == 2 ? PC_OK : PC_EINVAL);
        buf_sink(env, trailer, sizeof trailer);
    }
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
    craft c = {1, 0, 100, 100, 4096, plain, 1, one, fin, 1, 0};
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
    craft d = {1, 0, 69000, 69000, pc_padme(69000), plain, 2, two, ff, 1, 0};
    assert_true(d.p == 69632);
    two[1] = 69632 - C;
    assert_int_equal(craft_open(&k, &d, NULL), PC_EFORMAT);
    d.tags = mf;
    memset(plain, 'y', 69000);
    assert_int_equal(craft_open(&k, &d, &len), PC_OK);
    assert_int_equal(len, 69000);
    /* version 1 has no trailer: it opens (above) but nothing verifies it */
    buf env = {0};
    craft_env(&k, &d, &env);
    assert_int_equal(verify_env(env.data, env.len, GROUP, MSGID), PC_ESIG);
    buf_free(&env);
    /* version 2 needs its trailer, and then opens and verifies */
    d.envelope_version = 2;
    assert_int_equal(craft_open(&k, &d, NULL), PC_ETRUNC);
    d.sign = 1;
    assert_int_equal(craft_open(&k, &d, &len), PC_OK);
    assert_int_equal(len, 69000);
    craft_env(&k, &d, &env);
    assert_int_equal(verify_env(env.data, env.len, GROUP, MSGID), PC_OK);
    buf_free(&env);
    /* a version-1 envelope followed by a trailer-sized tail: data after the final chunk */
    d.envelope_version = 1;
    assert_int_equal(craft_open(&k, &d, NULL), PC_EFORMAT);
    free(plain);
}

/* ---- writers and signed mail ---- */

/* A fresh authority and one writer certificate of it. */
typedef struct {
    uint8_t apk[PC_AUTH_PK_BYTES], ask[PC_AUTH_SK_BYTES];
    uint8_t cert[PC_WRITER_CERT_BYTES], sk[PC_WRITER_SK_BYTES];
} wfix;

#define NB INT64_C(1700000000)
#define NA INT64_C(1731536000)

static void wfix_new(wfix *w, const char *name, int role)
{
    assert_int_equal(pc_authority_generate(w->apk, w->ask), PC_OK);
    assert_int_equal(pc_writer_issue(w->ask, name, role, NB, NA, w->cert, w->sk), PC_OK);
}

static int cert_verify(const uint8_t *cert, const uint8_t *apk, pc_writer_cert *out)
{
    return pc_writer_cert_verify(cert, (const uint8_t(*)[PC_AUTH_PK_BYTES])apk, 1, out);
}

static void test_writer_issue_verify(void **state)
{
    (void)state;
    wfix a, b;
    wfix_new(&a, "mx1.example.jp", PC_ROLE_DELIVERY);
    wfix_new(&b, "gw.example.jp", PC_ROLE_GATEWAY);
    pc_writer_cert w;
    assert_int_equal(cert_verify(a.cert, a.apk, &w), PC_OK);
    assert_int_equal(w.role, PC_ROLE_DELIVERY);
    assert_memory_equal(w.pk, a.sk + 32, 32); /* libsodium's secret key is seed || public key */
    assert_true(w.not_before == NB && w.not_after == NA);
    assert_string_equal(w.name, "mx1.example.jp");
    /* spec: the id is the lower-case hex of BLAKE2b-8(public key) */
    uint8_t h[8];
    char hex[17], id[PC_WRITER_ID_TEXT];
    crypto_generichash(h, sizeof h, w.pk, 32, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    assert_string_equal(w.id, hex);
    pc_writer_id(w.pk, id);
    assert_string_equal(id, hex);

    /* spec layout, and the authority's signature over context || certificate[0, 96) */
    uint8_t want[PC_WRITER_CERT_BYTES] = {'P', 'S', 'T', 'W', 1, PC_ROLE_DELIVERY, 0, 0};
    memcpy(want + 8, w.pk, 32);
    be64(want + 40, NB);
    be64(want + 48, NA);
    memcpy(want + 56, "mx1.example.jp", 14);
    pc_authority_keyid(a.apk, want + 88);
    assert_memory_equal(a.cert, want, 96);
    uint8_t m[sizeof "postern writer v1" + 96];
    memcpy(m, "postern writer v1", sizeof "postern writer v1");
    memcpy(m + sizeof "postern writer v1", a.cert, 96);
    assert_int_equal(crypto_sign_verify_detached(a.cert + 96, m, sizeof m, a.apk), 0);

    /* only its own authority: alone, among others, not with none */
    assert_int_equal(cert_verify(a.cert, b.apk, &w), PC_ESIG);
    uint8_t pks[2][PC_AUTH_PK_BYTES];
    memcpy(pks[0], b.apk, 32);
    memcpy(pks[1], a.apk, 32);
    assert_int_equal(pc_writer_cert_verify(a.cert, pks, 2, &w), PC_OK);
    assert_int_equal(pc_writer_cert_verify(b.cert, pks, 2, &w), PC_OK);
    assert_int_equal(w.role, PC_ROLE_GATEWAY);
    assert_string_equal(w.name, "gw.example.jp");
    assert_int_equal(pc_writer_cert_verify(a.cert, pks, 0, &w), PC_ESIG);
    /* signed by b but naming a's key id, and signed by b under its own id but checked against a */
    uint8_t bad[PC_WRITER_CERT_BYTES];
    memcpy(bad, a.cert, sizeof bad);
    memcpy(m + sizeof "postern writer v1", bad, 96);
    crypto_sign_detached(bad + 96, NULL, m, sizeof m, b.ask);
    assert_int_equal(pc_writer_cert_verify(bad, pks, 2, &w), PC_ESIG);
    pc_authority_keyid(b.apk, bad + 88);
    memcpy(m + sizeof "postern writer v1", bad, 96);
    crypto_sign_detached(bad + 96, NULL, m, sizeof m, b.ask);
    assert_int_equal(cert_verify(bad, b.apk, &w), PC_OK);
    assert_int_equal(cert_verify(bad, a.apk, &w), PC_ESIG);
    /* any flipped bit is refused */
    for (size_t i = 0; i < sizeof bad; i++) {
        memcpy(bad, a.cert, sizeof bad);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        int rc = cert_verify(bad, a.apk, &w);
        if (rc != PC_EFORMAT && rc != PC_ESIG)
            fail_msg("flip at byte %zu: %d", i, rc);
    }
    /* a full 32-octet name fits; two issues make two key pairs */
    const char *n32 = "abcdefghijklmnopqrstuvwxyz012345";
    uint8_t c2[PC_WRITER_CERT_BYTES], s2[PC_WRITER_SK_BYTES];
    assert_int_equal(pc_writer_issue(a.ask, n32, PC_ROLE_GATEWAY, -5, 5, c2, s2), PC_OK);
    assert_int_equal(cert_verify(c2, a.apk, &w), PC_OK);
    assert_string_equal(w.name, n32);
    assert_true(w.not_before == -5 && w.not_after == 5);
    assert_memory_not_equal(s2, a.sk, 64);
}

static void test_writer_issue_rejects(void **state)
{
    (void)state;
    wfix a;
    wfix_new(&a, "mx1", PC_ROLE_DELIVERY);
    uint8_t cert[PC_WRITER_CERT_BYTES], sk[PC_WRITER_SK_BYTES];
    const char *names[] = {"", "abcdefghijklmnopqrstuvwxyz0123456", "mx 1", "mx\t1", "mx1\n", "\x7f", "m\xc3\xa9"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (pc_writer_issue(a.ask, names[i], PC_ROLE_DELIVERY, NB, NA, cert, sk) != PC_EINVAL)
            fail_msg("name %zu accepted", i);
    assert_int_equal(pc_writer_issue(a.ask, NULL, PC_ROLE_DELIVERY, NB, NA, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(a.ask, "mx1", 0, NB, NA, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(a.ask, "mx1", 3, NB, NA, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(a.ask, "mx1", PC_ROLE_DELIVERY, NB, NB, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(a.ask, "mx1", PC_ROLE_DELIVERY, NA, NB, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(NULL, "mx1", PC_ROLE_DELIVERY, NB, NA, cert, sk), PC_EINVAL);
    assert_int_equal(pc_writer_issue(a.ask, "mx1", PC_ROLE_DELIVERY, NB, NB + 1, cert, sk), PC_OK);
    /* the reader holds certificates to the same rules, even when the authority signed them */
    pc_writer_cert w;
    uint8_t m[sizeof "postern writer v1" + 96];
    memcpy(m, "postern writer v1", sizeof "postern writer v1");
#define RESIGNED(stmt)                                                                                               \
    do {                                                                                                             \
        memcpy(cert, a.cert, sizeof cert);                                                                           \
        stmt;                                                                                                        \
        memcpy(m + sizeof "postern writer v1", cert, 96);                                                            \
        crypto_sign_detached(cert + 96, NULL, m, sizeof m, a.ask);                                                   \
        assert_int_equal(cert_verify(cert, a.apk, &w), PC_EFORMAT);                                                  \
    } while (0)
    RESIGNED(cert[4] = 2);
    RESIGNED(cert[5] = 3);
    RESIGNED(cert[6] = 1);
    RESIGNED(be64(cert + 48, NB));
    RESIGNED(cert[56] = 0);
    RESIGNED(cert[57] = ' ');
    RESIGNED(cert[87] = 'x'); /* after the name's NUL padding began */
#undef RESIGNED
    memcpy(cert, a.cert, sizeof cert);
    memcpy(m + sizeof "postern writer v1", cert, 96);
    crypto_sign_detached(cert + 96, NULL, m, sizeof m, a.ask);
    assert_int_equal(cert_verify(cert, a.apk, &w), PC_OK); /* the re-signing itself is sound */
}

static void test_writer_file(void **state)
{
    (void)state;
    wfix a, b;
    wfix_new(&a, "mx1.example.jp", PC_ROLE_DELIVERY);
    wfix_new(&b, "mx2.example.jp", PC_ROLE_DELIVERY);
    char text[PC_WRITER_FILE_MAX], other[PC_WRITER_FILE_MAX], bad[2 * PC_WRITER_FILE_MAX];
    assert_int_equal(pc_writer_format(a.cert, a.sk, text, sizeof text), PC_OK);
    assert_int_equal(pc_writer_format(a.cert, a.sk, text, PC_WRITER_FILE_MAX - 1), PC_EINVAL);
    /* spec: two lines, base64 of the certificate and of the 32-byte seed */
    char c64[sodium_base64_ENCODED_LEN(PC_WRITER_CERT_BYTES, sodium_base64_VARIANT_ORIGINAL)], s64[45];
    sodium_bin2base64(c64, sizeof c64, a.cert, sizeof a.cert, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(s64, sizeof s64, a.sk, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(bad, sizeof bad, "postern-writer-cert-1 %s\npostern-writer-sk-1 %s\n", c64, s64);
    assert_string_equal(text, bad);

    uint8_t cert[PC_WRITER_CERT_BYTES], sk[PC_WRITER_SK_BYTES];
    assert_int_equal(pc_writer_parse(text, cert, sk), PC_OK);
    assert_memory_equal(cert, a.cert, sizeof cert);
    assert_memory_equal(sk, a.sk, sizeof sk);
    snprintf(bad, sizeof bad, "postern-writer-cert-1 %s\r\npostern-writer-sk-1 %s", c64, s64);
    assert_int_equal(pc_writer_parse(bad, cert, sk), PC_OK); /* CRLF, no final newline */
    assert_memory_equal(sk, a.sk, sizeof sk);

    /* another writer's seed under this certificate */
    assert_int_equal(pc_writer_format(a.cert, b.sk, other, sizeof other), PC_OK);
    assert_int_equal(pc_writer_parse(other, cert, sk), PC_EKEY);
    uint8_t zero[PC_WRITER_SK_BYTES] = {0};
    assert_memory_equal(sk, zero, sizeof sk); /* nothing half-usable is left behind */

    /* garbage: lines missing, swapped, renamed, cut short, padded or followed by more */
#define GARBAGE(...)                                                                                                 \
    do {                                                                                                             \
        snprintf(bad, sizeof bad, __VA_ARGS__);                                                                      \
        if (pc_writer_parse(bad, cert, sk) != PC_EFORMAT)                                                            \
            fail_msg("accepted: %s", bad);                                                                           \
    } while (0)
    GARBAGE("%s", "");
    GARBAGE("hello\n");
    GARBAGE("postern-writer-cert-1 %s\n", c64);
    GARBAGE("postern-writer-sk-1 %s\npostern-writer-cert-1 %s\n", s64, c64);
    GARBAGE("postern-writer-cert-1 %s\npostern-writer-sk-1 %s\nmore\n", c64, s64);
    GARBAGE("postern-writer-cert-2 %s\npostern-writer-sk-1 %s\n", c64, s64);
    GARBAGE("postern-writer-cert-1 %s\npostern-writer-sk-1 %.40s\n", c64, s64);
    GARBAGE("postern-writer-cert-1 %.200s\npostern-writer-sk-1 %s\n", c64, s64);
    GARBAGE("postern-writer-cert-1  %s\npostern-writer-sk-1 %s\n", c64, s64);
    GARBAGE("postern-writer-cert-1 %s \npostern-writer-sk-1 %s\n", c64, s64);
    GARBAGE("postern-writer-cert-1 %s\npostern-writer-sk-1 %sAAAA\n", c64, s64);
    GARBAGE(" postern-writer-cert-1 %s\npostern-writer-sk-1 %s\n", c64, s64);
    GARBAGE("postern-writer-cert-1 %s\npostern-writer-sk-1 %s\n", s64, c64);
#undef GARBAGE
    memcpy(bad, text, sizeof text);
    bad[30] = '*';
    assert_int_equal(pc_writer_parse(bad, cert, sk), PC_EFORMAT);
    assert_int_equal(pc_writer_parse(NULL, cert, sk), PC_EINVAL);
    /* parse does not check the authority: that is pc_writer_cert_verify's job */
    pc_writer_cert w;
    assert_int_equal(pc_writer_parse(text, cert, sk), PC_OK);
    assert_int_equal(cert_verify(cert, b.apk, &w), PC_ESIG);
    assert_int_equal(cert_verify(cert, a.apk, &w), PC_OK);
}

static void test_writer_allows(void **state)
{
    (void)state;
    wfix a, b;
    wfix_new(&a, "mx1", PC_ROLE_DELIVERY);
    wfix_new(&b, "mx2", PC_ROLE_DELIVERY);
    pc_writer_cert w, v;
    assert_int_equal(cert_verify(a.cert, a.apk, &w), PC_OK);
    assert_int_equal(cert_verify(b.cert, b.apk, &v), PC_OK);
    assert_int_equal(pc_writer_allows(&w, NB, NULL, 0), PC_OK); /* both ends are inside */
    assert_int_equal(pc_writer_allows(&w, NA, NULL, 0), PC_OK);
    assert_int_equal(pc_writer_allows(&w, (NB + NA) / 2, NULL, 0), PC_OK);
    assert_int_equal(pc_writer_allows(&w, NB - 1, NULL, 0), PC_ESIG);
    assert_int_equal(pc_writer_allows(&w, NA + 1, NULL, 0), PC_ESIG);
    assert_int_equal(pc_writer_allows(&w, INT64_MIN, NULL, 0), PC_ESIG);
    assert_int_equal(pc_writer_allows(&w, INT64_MAX, NULL, 0), PC_ESIG);
    char revoked[3][PC_WRITER_ID_TEXT] = {"0000000000000000", "", ""};
    memcpy(revoked[1], v.id, sizeof revoked[1]);
    assert_int_equal(pc_writer_allows(&w, NB, (const char(*)[PC_WRITER_ID_TEXT])revoked, 2), PC_OK);
    assert_int_equal(pc_writer_allows(&v, NB, (const char(*)[PC_WRITER_ID_TEXT])revoked, 2), PC_ESIG);
    memcpy(revoked[2], w.id, sizeof revoked[2]);
    assert_int_equal(pc_writer_allows(&w, NB, (const char(*)[PC_WRITER_ID_TEXT])revoked, 2), PC_OK);
    assert_int_equal(pc_writer_allows(&w, NB + 1, (const char(*)[PC_WRITER_ID_TEXT])revoked, 3), PC_ESIG);
    assert_int_equal(pc_writer_allows(&w, NB, NULL, 1), PC_EINVAL);
    assert_int_equal(pc_writer_allows(NULL, NB, NULL, 0), PC_EINVAL);
}

/* One envelope signed by a writer of a, for the signature tests. */
typedef struct {
    boxkey k;
    wfix a;
    buf env; /* prefix || chunks || trailer */
    size_t end; /* where the trailer starts */
    uint8_t ch[32];
    pc_msg_meta m;
} sigfix;

static void sigfix_new(sigfix *f, size_t len)
{
    memset(f, 0, sizeof *f);
    boxkey_new(&f->k);
    wfix_new(&f->a, "mx1.example.jp", PC_ROLE_DELIVERY);
    uint8_t *msg = make_message(len, 9), h[32], trailer[TRAILER];
    seal_unsigned(&f->k, msg, len, 10000, &f->env, &f->m, h, f->ch);
    free(msg);
    f->end = f->env.len;
    assert_int_equal(pc_mail_sign(f->a.cert, f->a.sk, GROUP, MSGID, f->env.data, f->ch, trailer), PC_OK);
    buf_sink(&f->env, trailer, sizeof trailer);
}

static int sig_verify(const sigfix *f, const uint8_t *env, size_t len, const char *group, const char *msgid)
{
    pc_writer_cert who;
    return pc_envelope_verify(env, len, group, msgid, (const uint8_t(*)[PC_AUTH_PK_BYTES])f->a.apk, 1, &who);
}

static void test_mail_sign_verify(void **state)
{
    (void)state;
    sigfix f;
    sigfix_new(&f, 70000); /* two chunks */
    size_t n = f.env.len;
    pc_writer_cert who;
    assert_int_equal(n, pc_envelope_size(f.m.padded_size) + TRAILER);
    assert_int_equal(pc_envelope_verify(f.env.data, n, GROUP, MSGID, (const uint8_t(*)[PC_AUTH_PK_BYTES])f.a.apk, 1,
                                        &who),
                     PC_OK);
    assert_string_equal(who.name, "mx1.example.jp");
    assert_int_equal(who.role, PC_ROLE_DELIVERY);
    assert_int_equal(pc_writer_allows(&who, f.m.arrival, NULL, 0), PC_OK);

    /* spec: the trailer is the certificate, then Ed25519 of BLAKE2b-64("postern mail v2" || 0 ||
     * group || 0 || Message-ID || 0 || prefix || BLAKE2b-32(chunks) || certificate) */
    const uint8_t *cert = f.env.data + f.end, *sig = cert + PC_WRITER_CERT_BYTES;
    assert_memory_equal(cert, f.a.cert, PC_WRITER_CERT_BYTES);
    crypto_generichash_state st;
    uint8_t d[64];
    crypto_generichash_init(&st, NULL, 0, sizeof d);
    crypto_generichash_update(&st, (const uint8_t *)"postern mail v2", 16);
    crypto_generichash_update(&st, (const uint8_t *)GROUP, sizeof GROUP);
    crypto_generichash_update(&st, (const uint8_t *)MSGID, sizeof MSGID);
    crypto_generichash_update(&st, f.env.data, PC_MSG_PREFIX_BYTES);
    crypto_generichash_update(&st, f.ch, 32);
    crypto_generichash_update(&st, cert, PC_WRITER_CERT_BYTES);
    crypto_generichash_final(&st, d, sizeof d);
    assert_int_equal(crypto_sign_verify_detached(sig, d, sizeof d, f.a.sk + 32), 0);

    /* another group or Message-ID, also one that only moves the separator */
    assert_int_equal(sig_verify(&f, f.env.data, n, "postern.mail.bob", MSGID), PC_ESIG);
    assert_int_equal(sig_verify(&f, f.env.data, n, GROUP, "<t.0124@postern.invalid>"), PC_ESIG);
    assert_int_equal(sig_verify(&f, f.env.data, n, "", MSGID), PC_ESIG);
    assert_int_equal(sig_verify(&f, f.env.data, n, GROUP "<t.0123@postern.invalid", ">"), PC_ESIG);

    /* one byte of the prefix (every one), of a chunk, of the certificate or of the signature */
    uint8_t *bad = malloc(n);
    for (size_t i = 0; i < n; i += i < PC_MSG_PREFIX_BYTES || i >= f.end ? 1 : 997) {
        memcpy(bad, f.env.data, n);
        bad[i] ^= 0x01;
        int rc = sig_verify(&f, bad, n, GROUP, MSGID);
        if (rc != PC_ESIG)
            fail_msg("byte %zu changed: %d", i, rc);
    }
    /* a certificate by another authority, even with its own valid signature over the rest */
    wfix b;
    wfix_new(&b, "mx1.example.jp", PC_ROLE_DELIVERY);
    memcpy(bad, f.env.data, n);
    assert_int_equal(pc_mail_sign(b.cert, b.sk, GROUP, MSGID, bad, f.ch, bad + f.end), PC_OK);
    assert_int_equal(sig_verify(&f, bad, n, GROUP, MSGID), PC_ESIG);
    uint8_t pks[2][PC_AUTH_PK_BYTES];
    memcpy(pks[0], f.a.apk, 32);
    memcpy(pks[1], b.apk, 32);
    assert_int_equal(pc_envelope_verify(bad, n, GROUP, MSGID, pks, 2, &who), PC_OK); /* once it is trusted */
    /* a's certificate with b's writer key signing: the key is not the certificate's */
    memcpy(bad, f.env.data, n);
    assert_int_equal(pc_mail_sign(f.a.cert, b.sk, GROUP, MSGID, bad, f.ch, bad + f.end), PC_OK);
    assert_int_equal(pc_envelope_verify(bad, n, GROUP, MSGID, pks, 2, &who), PC_ESIG);
    /* a trailer moved to another envelope sealed by the same writer */
    sigfix g;
    sigfix_new(&g, 100);
    uint8_t *moved = malloc(g.env.len);
    memcpy(moved, g.env.data, g.end);
    memcpy(moved + g.end, f.env.data + f.end, TRAILER);
    assert_int_equal(sig_verify(&f, moved, g.env.len, GROUP, MSGID), PC_ESIG);
    free(moved);

    /* version 1: no trailer, never verified, whatever follows the chunks */
    memcpy(bad, f.env.data, n);
    bad[4] = 1;
    assert_int_equal(sig_verify(&f, bad, f.end, GROUP, MSGID), PC_ESIG);
    assert_int_equal(sig_verify(&f, bad, n, GROUP, MSGID), PC_ESIG);
    assert_int_equal(sig_verify(&f, bad, PC_MSG_PREFIX_BYTES, GROUP, MSGID), PC_ESIG);
    uint8_t t2[TRAILER];
    assert_int_equal(pc_mail_sign(f.a.cert, f.a.sk, GROUP, MSGID, bad, f.ch, t2), PC_EINVAL); /* nor signed */
    assert_int_equal(pc_mail_verify(bad, f.ch, f.env.data + f.end, GROUP, MSGID,
                                    (const uint8_t(*)[PC_AUTH_PK_BYTES])f.a.apk, 1, &who),
                     PC_ESIG);
    /* too short for a trailer, or for a prefix */
    assert_int_equal(sig_verify(&f, f.env.data, PC_MSG_PREFIX_BYTES + TRAILER - 1, GROUP, MSGID), PC_ETRUNC);
    assert_int_equal(sig_verify(&f, f.env.data, PC_MSG_PREFIX_BYTES - 1, GROUP, MSGID), PC_EFORMAT);
    assert_int_equal(sig_verify(&f, f.env.data, n - 1, GROUP, MSGID), PC_ESIG);
    assert_int_equal(pc_envelope_verify(f.env.data, n, GROUP, MSGID, pks, 0, &who), PC_ESIG);
    assert_int_equal(pc_envelope_verify(f.env.data, n, NULL, MSGID, pks, 2, &who), PC_EINVAL);
    free(bad);
    buf_free(&f.env);
    buf_free(&g.env);
}

/* Opens env in slices through pc_open_begin (or, key != NULL, pc_open_begin_key) and checks
 * its signed parts; returns pc_mail_verify's verdict, or the opener's error. */
static int open_and_verify(const sigfix *f, const uint8_t *env, size_t len, size_t slice, const uint8_t *key,
                           const char *group, const char *msgid)
{
    buf out = {0};
    pc_msg_meta m;
    int st = -1;
    pc_open *o = key ? pc_open_begin_key(env, key, &f->m, buf_sink, &out, &st)
                     : pc_open_begin(env, f->k.pk, f->k.sk, &m, buf_sink, &out, &st);
    assert_non_null(o);
    uint8_t ch[32], trailer[TRAILER];
    int rc = PC_OK;
    for (size_t off = PC_MSG_PREFIX_BYTES; off < len && rc == PC_OK; off += slice) {
        /* the parts exist only once the final chunk has opened */
        if (off < len - TRAILER)
            assert_int_equal(pc_open_signed_parts(o, ch, trailer), PC_EINVAL);
        rc = pc_open_update(o, env + off, len - off < slice ? len - off : slice);
    }
    if (rc == PC_OK)
        rc = pc_open_finish(o);
    if (rc == PC_OK) {
        assert_int_equal(pc_open_signed_parts(o, ch, trailer), PC_OK);
        assert_memory_equal(trailer, env + len - TRAILER, TRAILER);
        pc_writer_cert who;
        rc = pc_mail_verify(env, ch, trailer, group, msgid, (const uint8_t(*)[PC_AUTH_PK_BYTES])f->a.apk, 1, &who);
    }
    pc_open_free(o);
    buf_free(&out);
    return rc;
}

static void test_mail_verify_streamed(void **state)
{
    (void)state;
    sigfix f;
    sigfix_new(&f, 150000); /* three chunks */
    size_t n = f.env.len;
    uint8_t key[PC_STREAM_KEY_BYTES];
    pc_msg_meta m;
    assert_int_equal(pc_envelope_open_meta(f.env.data, f.k.pk, f.k.sk, &m, key), PC_OK);
    const size_t slices[] = {1, 1000, TRAILER, 65536 + 17, n};
    uint8_t *bad = malloc(n);
    /* the streamed verdict is the in-memory one: for the envelope as sealed, and with the
     * trailer or the names changed (a changed prefix or chunk does not open at all) */
    const size_t flips[] = {0, f.end, f.end + 88, f.end + PC_WRITER_CERT_BYTES, n - 1};
    for (size_t s = 0; s < sizeof slices / sizeof *slices; s++) {
        for (size_t i = 0; i < sizeof flips / sizeof *flips; i++) {
            memcpy(bad, f.env.data, n);
            if (i > 0)
                bad[flips[i]] ^= 0x40;
            int want = sig_verify(&f, bad, n, GROUP, MSGID);
            assert_int_equal(want, i == 0 ? PC_OK : PC_ESIG);
            assert_int_equal(open_and_verify(&f, bad, n, slices[s], NULL, GROUP, MSGID), want);
            assert_int_equal(open_and_verify(&f, bad, n, slices[s], key, GROUP, MSGID), want);
        }
        assert_int_equal(open_and_verify(&f, f.env.data, n, slices[s], NULL, "postern.mail.bob", MSGID), PC_ESIG);
        assert_int_equal(open_and_verify(&f, f.env.data, n, slices[s], key, GROUP, "<x@y>"), PC_ESIG);
    }
    /* the chunks' hash the opener computes is the sealer's */
    buf out = {0};
    int st;
    pc_open *o = pc_open_begin(f.env.data, f.k.pk, f.k.sk, &m, buf_sink, &out, &st);
    assert_non_null(o);
    uint8_t ch[32], trailer[TRAILER];
    assert_int_equal(pc_open_update(o, f.env.data + PC_MSG_PREFIX_BYTES, f.end - PC_MSG_PREFIX_BYTES), PC_OK);
    assert_int_equal(pc_open_finish(o), PC_ETRUNC); /* the trailer is still to come */
    assert_int_not_equal(pc_open_signed_parts(o, ch, trailer), PC_OK);
    assert_int_equal(pc_open_update(o, f.env.data + f.end, TRAILER), PC_OK);
    assert_int_equal(pc_open_finish(o), PC_OK);
    assert_int_equal(pc_open_signed_parts(o, ch, trailer), PC_OK);
    assert_memory_equal(ch, f.ch, 32);
    assert_int_equal(pc_open_update(o, f.env.data, 1), PC_EFORMAT); /* nothing after it */
    assert_int_equal(pc_open_signed_parts(o, ch, trailer), PC_EINVAL);
    pc_open_free(o);
    buf_free(&out);

    /* a version-1 envelope opens, but has no signed parts */
    boxkey k;
    boxkey_new(&k);
    const unsigned char F = crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    uint8_t plain[4096] = {'x'};
    size_t one[] = {4096};
    unsigned char fin[] = {F};
    craft c = {1, 0, 1, 1, 4096, plain, 1, one, fin, 1, 0};
    buf env = {0};
    craft_env(&k, &c, &env);
    o = pc_open_begin(env.data, k.pk, k.sk, &m, buf_sink, &out, &st);
    assert_non_null(o);
    assert_int_equal(pc_open_update(o, env.data + PC_MSG_PREFIX_BYTES, env.len - PC_MSG_PREFIX_BYTES), PC_OK);
    assert_int_equal(pc_open_finish(o), PC_OK);
    assert_int_equal(pc_open_signed_parts(o, ch, trailer), PC_ESIG);
    pc_open_free(o);
    assert_int_equal(verify_env(env.data, env.len, GROUP, MSGID), PC_ESIG);
    buf_free(&env);
    buf_free(&out);
    free(bad);
    buf_free(&f.env);
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
    assert_true(text.len == pc_armor_encoded_size(pc_envelope_size(e.m.padded_size) + TRAILER));
    assert_int_equal(armor_decode(text.data, text.len, 1, &bin), PC_OK);
    assert_true(bin.len == e.env.len);
    pc_msg_meta m;
    assert_int_equal(open_all(&e.k, bin.data, bin.len, 1, &out, &m), PC_OK);
    assert_true(out.len == e.len);
    assert_memory_equal(out.data, e.msg, e.len);
    assert_int_equal(verify_env(bin.data, bin.len, GROUP, MSGID), PC_OK);
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
        cmocka_unit_test(test_keyrecord_resign),
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
        cmocka_unit_test(test_writer_issue_verify),
        cmocka_unit_test(test_writer_issue_rejects),
        cmocka_unit_test(test_writer_file),
        cmocka_unit_test(test_writer_allows),
        cmocka_unit_test(test_mail_sign_verify),
        cmocka_unit_test(test_mail_verify_streamed),
        cmocka_unit_test(test_armor_roundtrip),
        cmocka_unit_test(test_armor_rejects),
        cmocka_unit_test(test_armor_agrees_with_libsodium),
        cmocka_unit_test(test_full_pipeline),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
