/* libFuzzer: key record decoding and verification with a fixed authority key.
 * Byte 0 picks the route: bit 0 re-signs the record with the fixed authority key first (so
 * the fuzzer reaches the checks behind the signature), bit 1 feeds it through the armor
 * decoder as an article body would be. Never unlocks: a fuzzed memlimit may be 4 GiB. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

static uint8_t auth_pk[PC_AUTH_PK_BYTES], auth_sk[PC_AUTH_SK_BYTES];

typedef struct {
    uint8_t data[PC_KEYRECORD_MAX + 1];
    size_t len;
} recbuf;

static int collect(void *arg, const uint8_t *data, size_t len)
{
    recbuf *b = arg;
    if (len > sizeof b->data - b->len)
        return -1; /* longer than any record: refuse early */
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void check(const uint8_t *in, size_t len)
{
    pc_keyrecord rec;
    if (pc_keyrecord_decode(in, len, &rec) != PC_OK)
        return;
    /* decode is exact: what it accepts encodes back to the same bytes */
    uint8_t again[PC_KEYRECORD_MAX];
    size_t n = pc_keyrecord_encode(&rec, again, sizeof again);
    if (n != len || memcmp(again, in, len) != 0)
        abort();
    int rc = pc_keyrecord_verify(&rec, (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, rec.address);
    int rc2 = pc_keyrecord_verify(&rec, (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, "alice@example.jp");
    if (rc != PC_OK && rc != PC_ESIG && rc != PC_EFORMAT)
        abort();
    if (rc == PC_OK && rc2 != PC_OK && rc2 != PC_EADDR)
        abort();
    (void)pc_strerror(rc2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (pc_init() != PC_OK)
            abort();
        uint8_t seed[32];
        memset(seed, 0x5a, sizeof seed);
        crypto_sign_seed_keypair(auth_pk, auth_sk, seed);
        ready = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    recbuf b = {.len = 0};
    if (mode & 2) {
        pc_armor *a = pc_armor_decoder(collect, &b);
        if (!a)
            abort();
        int rc = pc_armor_update(a, data + 1, size - 1);
        if (rc == PC_OK)
            rc = pc_armor_finish(a);
        pc_armor_free(a);
        if (rc != PC_OK)
            return 0;
    } else {
        if (size - 1 > sizeof b.data)
            return 0;
        memcpy(b.data, data + 1, size - 1);
        b.len = size - 1;
    }
    if ((mode & 1) && b.len >= 64) {
        /* spec: sign "postern keyrecord v1" || 0 || bytes [0, len - 64); also set the
         * authority key id when the record is long enough to have one where we expect it */
        static const char ctx[] = "postern keyrecord v1";
        uint8_t msg[sizeof ctx + PC_KEYRECORD_MAX];
        if (b.len >= 72 && (mode & 4))
            pc_authority_keyid(auth_pk, b.data + b.len - 72);
        memcpy(msg, ctx, sizeof ctx);
        memcpy(msg + sizeof ctx, b.data, b.len - 64);
        crypto_sign_detached(b.data + b.len - 64, NULL, msg, sizeof ctx + b.len - 64, auth_sk);
    }
    check(b.data, b.len);
    return 0;
}
