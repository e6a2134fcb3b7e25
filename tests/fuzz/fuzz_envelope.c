/* libFuzzer: envelope opening and signature checking with a fixed key pair and a fixed
 * authority. Byte 0 picks the route:
 *   0: the rest is an envelope, opened in slices whose size comes from byte 1, and verified
 *      in memory (pc_envelope_verify) for GROUP and MSGID;
 *   1: the rest is an armored article body: dearmored, then opened and verified;
 *   2: the rest is a message: sealed and signed (version 2), then opened in fuzzed slices,
 *      compared and verified, then opened again with one fuzzed bit flipped or truncated,
 *      which must fail to open or (a flip in the trailer) fail to verify.
 * Routes 0 and 1 cannot forge the sealed box or a signature, so they exercise the parsing in
 * front of them; route 2 drives the stream code with real ciphertext. Whenever an envelope
 * opens, the streamed verdict (pc_open_signed_parts + pc_mail_verify) must be the in-memory
 * one. The seeds that start with 00 or 01 are real envelopes to the fixed key pair, signed by
 * a writer of the fixed authority (with a random writer key, which the trailer carries). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

#define MAX_ENV (4u << 20)

#define GROUP "postern.mail.fuzz"
#define MSGID "<fuzz@postern.invalid>"

static uint8_t box_pk[PC_BOX_PK_BYTES], box_sk[PC_BOX_SK_BYTES], key_id[PC_KEYID_BYTES];
static uint8_t auth_pk[PC_AUTH_PK_BYTES], auth_sk[PC_AUTH_SK_BYTES];
static uint8_t writer_cert[PC_WRITER_CERT_BYTES], writer_sk[PC_WRITER_SK_BYTES];

typedef struct {
    uint8_t *data;
    size_t len, cap;
} buf;

static int collect(void *arg, const uint8_t *data, size_t len)
{
    buf *b = arg;
    if (len > MAX_ENV - b->len)
        return -1;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            abort();
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static int envelope_verify(const uint8_t *env, size_t len)
{
    pc_writer_cert who;
    return pc_envelope_verify(env, len, GROUP, MSGID, (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, &who);
}

/* Opens env in slices; when it opens, *verdict (if not NULL) gets pc_mail_verify's verdict on
 * its signed parts, which must be pc_envelope_verify's on the same bytes. */
static int open_env(const uint8_t *env, size_t len, size_t slice, buf *out, pc_msg_meta *meta, int *verdict)
{
    if (len < PC_MSG_PREFIX_BYTES)
        return PC_ETRUNC;
    uint8_t kid[PC_KEYID_BYTES];
    if (pc_envelope_key_id(env, len, kid) != PC_OK)
        return PC_EFORMAT;
    int st = -1;
    pc_open *o = pc_open_begin(env, box_pk, box_sk, meta, collect, out, &st);
    if (!o) {
        if (st == PC_OK)
            abort();
        return st;
    }
    int rc = PC_OK;
    for (size_t off = PC_MSG_PREFIX_BYTES; off < len && rc == PC_OK; off += slice)
        rc = pc_open_update(o, env + off, len - off < slice ? len - off : slice);
    if (rc == PC_OK)
        rc = pc_open_finish(o);
    if (rc == PC_OK) {
        uint8_t ch[32], trailer[PC_MAIL_TRAILER_BYTES];
        pc_writer_cert who;
        int v = pc_open_signed_parts(o, ch, trailer);
        if (v == PC_OK) {
            if (env[4] != 2 || memcmp(trailer, env + len - sizeof trailer, sizeof trailer) != 0)
                abort();
            v = pc_mail_verify(env, ch, trailer, GROUP, MSGID, (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, &who);
        } else if (v != PC_ESIG || env[4] != 1) {
            abort(); /* only version 1 opens without signed parts */
        }
        if (v != envelope_verify(env, len))
            abort();
        if (verdict)
            *verdict = v;
    } else if (verdict) {
        *verdict = -1;
    }
    pc_open_free(o);
    if (rc == PC_OK && out->len != meta->raw_size)
        abort();
    return rc;
}

static void roundtrip(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    /* plaintext = the rest, repeated, so that multi-chunk streams are reached */
    size_t reps = 1 + data[0] % 40, seal_slice = 1 + (size_t)data[1] * 613, open_slice = 1 + (size_t)data[2] * 389;
    uint32_t where = 0;
    if (size >= 7)
        memcpy(&where, data + size - 4, sizeof where);
    const uint8_t *msg = data + 3;
    size_t mlen = size - 3, total = mlen * reps;

    buf chunks = {0}, out = {0};
    pc_seal *s = pc_seal_begin(box_pk, key_id, -1, -720, collect, &chunks);
    if (!s)
        abort();
    uint8_t *whole = malloc(total ? total : 1);
    for (size_t r = 0; r < reps; r++)
        memcpy(whole + r * mlen, msg, mlen);
    for (size_t off = 0; off < total; off += seal_slice)
        if (pc_seal_update(s, whole + off, total - off < seal_slice ? total - off : seal_slice) != PC_OK)
            abort();
    uint8_t hash[32], tag[PC_TAG_BYTES], secret[PC_DELIVERY_SECRET_BYTES] = {0};
    pc_msg_meta m, mo;
    if (pc_seal_finish(s, hash, &m) != PC_OK)
        abort();
    pc_message_tag(secret, "fuzz@example.jp", key_id, hash, tag);
    buf env = {0};
    uint8_t prefix[PC_MSG_PREFIX_BYTES], ch[32], trailer[PC_MAIL_TRAILER_BYTES];
    if (pc_seal_prefix(s, tag, prefix) != PC_OK || pc_seal_chunks_hash(s, ch) != PC_OK ||
        pc_mail_sign(writer_cert, writer_sk, GROUP, MSGID, prefix, ch, trailer) != PC_OK ||
        collect(&env, prefix, sizeof prefix) || collect(&env, chunks.data, chunks.len) ||
        collect(&env, trailer, sizeof trailer))
        abort();
    pc_seal_free(s);
    if (env.len != pc_envelope_size(m.padded_size) + PC_MAIL_TRAILER_BYTES || env.data[4] != 2)
        abort();
    pc_writer_cert who;
    if (pc_envelope_verify(env.data, env.len, GROUP, "<other@postern.invalid>",
                           (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, &who) != PC_ESIG)
        abort(); /* a signature names one Message-ID */
    if (pc_envelope_verify(env.data, env.len, GROUP, MSGID, (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, &who) !=
            PC_OK ||
        pc_writer_allows(&who, m.arrival, NULL, 0) != PC_OK ||
        pc_writer_allows(&who, m.arrival, (const char(*)[PC_WRITER_ID_TEXT])who.id, 1) != PC_ESIG)
        abort();

    int verdict = -1;
    if (open_env(env.data, env.len, open_slice, &out, &mo, &verdict) != PC_OK || verdict != PC_OK ||
        out.len != total ||
        (total && memcmp(out.data, whole, total) != 0) || mo.raw_size != m.raw_size ||
        mo.crlf_size != m.crlf_size || memcmp(mo.tag, tag, sizeof tag) != 0 || mo.arrival != -1 ||
        mo.tz_minutes != -720)
        abort();

    /* one flipped bit anywhere, or any truncation, must be refused: by the opener, or for a
     * flip in the trailer (which the opener does not read) by the signature check */
    size_t pos = where % env.len;
    out.len = 0;
    if (where & 0x80000000u) {
        if (open_env(env.data, pos, open_slice, &out, &mo, NULL) == PC_OK || envelope_verify(env.data, pos) == PC_OK)
            abort();
    } else {
        env.data[pos] ^= (uint8_t)(1u << (where >> 24 & 7));
        int rc = open_env(env.data, env.len, open_slice, &out, &mo, &verdict);
        if (pos < env.len - PC_MAIL_TRAILER_BYTES ? rc == PC_OK : rc != PC_OK || verdict == PC_OK)
            abort();
        if (envelope_verify(env.data, env.len) == PC_OK)
            abort();
    }
    free(whole);
    free(env.data);
    free(chunks.data);
    free(out.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (pc_init() != PC_OK)
            abort();
        uint8_t seed[crypto_box_SEEDBYTES];
        memset(seed, 0xa5, sizeof seed);
        crypto_box_seed_keypair(box_pk, box_sk, seed);
        crypto_generichash(key_id, sizeof key_id, box_pk, sizeof box_pk, NULL, 0);
        /* a fixed authority, so that signed seeds verify in every run */
        memset(seed, 0x5a, sizeof seed);
        crypto_sign_seed_keypair(auth_pk, auth_sk, seed);
        if (pc_writer_issue(auth_sk, "fuzz.example.jp", PC_ROLE_DELIVERY, INT64_MIN / 2, INT64_MAX / 2, writer_cert,
                            writer_sk) != PC_OK)
            abort();
        ready = 1;
    }
    if (size < 2)
        return 0;
    buf out = {0}, bin = {0};
    pc_msg_meta meta;
    size_t slice = 1 + (size_t)data[1] * 257;
    switch (data[0] % 3) {
    case 0:
        (void)open_env(data + 2, size - 2, slice, &out, &meta, NULL);
        (void)envelope_verify(data + 2, size - 2); /* also what does not open */
        break;
    case 1: {
        pc_armor *a = pc_armor_decoder(collect, &bin);
        if (!a)
            abort();
        int rc = pc_armor_update(a, data + 2, size - 2);
        if (rc == PC_OK)
            rc = pc_armor_finish(a);
        pc_armor_free(a);
        if (rc == PC_OK) {
            (void)open_env(bin.data, bin.len, slice, &out, &meta, NULL);
            if (bin.len)
                (void)envelope_verify(bin.data, bin.len);
        }
        break;
    }
    default:
        roundtrip(data + 1, size - 1);
        break;
    }
    free(out.data);
    free(bin.data);
    return 0;
}
