/* crypto: sealing a message into the envelope of docs/formats.md section 3. The plaintext is
 * cut into chunks as it arrives, so memory stays at one plaintext and one ciphertext chunk. */
#include <stdlib.h>

#include "crypto/internal.h"

#define CHUNK ((size_t)1 << PC_CHUNK_LOG2)
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_CONTEXT "postern msgid v2" /* hashed with its NUL */

/* Everything secret, in one sodium_malloc'd block (guard pages, wiped by sodium_free). */
struct seal_secret {
    crypto_secretstream_xchacha20poly1305_state ss;
    crypto_generichash_state hash; /* of the raw message */
    uint8_t stream_key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    uint8_t meta[PC_META_BYTES];
    uint8_t plain[]; /* CHUNK bytes */
};

struct pc_seal {
    pc_sink_fn sink;
    void *arg;
    uint8_t box_pk[PC_BOX_PK_BYTES];
    uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    uint8_t clear[PC_CLEAR_PREFIX_BYTES]; /* prefix bytes [0, 24): every chunk's associated data */
    int64_t arrival;
    int16_t tz_minutes;
    uint64_t raw;    /* R so far */
    uint64_t crlf;   /* N so far */
    uint64_t padded; /* P, once finished */
    int prev_cr;     /* last byte seen was CR: an LF at the start of the next slice is not bare */
    int finished;
    int err;         /* sticky: once a call failed, the stream is unusable */
    size_t fill;     /* bytes in sec->plain */
    struct seal_secret *sec;
    uint8_t *cipher; /* CHUNK + ABYTES; ciphertext is not secret */
    crypto_generichash_state chunks; /* of the ciphertext chunks, for the writer's signature */
    uint8_t chunks_hash[32];
};

void pc_message_tag(const uint8_t delivery_secret[PC_DELIVERY_SECRET_BYTES], const char *address,
                    const uint8_t key_id[PC_KEYID_BYTES], const uint8_t content_hash[32], uint8_t tag[PC_TAG_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, delivery_secret, PC_DELIVERY_SECRET_BYTES, PC_TAG_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)TAG_CONTEXT, sizeof TAG_CONTEXT);
    crypto_generichash_update(&st, (const uint8_t *)address, strlen(address) + 1); /* with NUL */
    crypto_generichash_update(&st, key_id, PC_KEYID_BYTES);
    crypto_generichash_update(&st, content_hash, 32);
    crypto_generichash_final(&st, tag, PC_TAG_BYTES);
    sodium_memzero(&st, sizeof st);
}

pc_seal *pc_seal_begin(const uint8_t box_pk[PC_BOX_PK_BYTES], const uint8_t key_id[PC_KEYID_BYTES],
                       int64_t arrival, int16_t tz_minutes, pc_sink_fn sink, void *arg)
{
    if (!box_pk || !key_id || !sink)
        return NULL;
    /* A key id that does not name box_pk would give an envelope its recipient refuses. */
    uint8_t kid[PC_KEYID_BYTES];
    crypto_generichash(kid, sizeof kid, box_pk, PC_BOX_PK_BYTES, NULL, 0);
    if (memcmp(kid, key_id, sizeof kid) != 0)
        return NULL;
    /* Find out now, not after sealing 100 MB, whether the public key is one crypto_box
     * refuses (a low-order point). */
    uint8_t probe_in = 0, probe[1 + crypto_box_SEALBYTES];
    if (crypto_box_seal(probe, &probe_in, 1, box_pk) != 0)
        return NULL;

    pc_seal *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    /* Rounded to 64 so the hash state inside stays aligned (sodium_malloc aligns the end). */
    size_t secsize = (sizeof(struct seal_secret) + CHUNK + 63) & ~(size_t)63;
    s->sec = sodium_malloc(secsize);
    s->cipher = malloc(CHUNK + ABYTES);
    if (!s->sec || !s->cipher) {
        pc_seal_free(s);
        return NULL;
    }
    s->sink = sink;
    s->arg = arg;
    memcpy(s->box_pk, box_pk, PC_BOX_PK_BYTES);
    memcpy(s->clear, "PSTM", 4);
    s->clear[4] = 2; /* version 2: a signed trailer follows the stream */
    s->clear[5] = PC_CHUNK_LOG2;
    s->clear[6] = s->clear[7] = 0;
    memcpy(s->clear + 8, key_id, PC_KEYID_BYTES);
    s->arrival = arrival;
    s->tz_minutes = tz_minutes;
    crypto_secretstream_xchacha20poly1305_keygen(s->sec->stream_key);
    crypto_secretstream_xchacha20poly1305_init_push(&s->sec->ss, s->header, s->sec->stream_key);
    crypto_generichash_init(&s->sec->hash, NULL, 0, 32);
    crypto_generichash_init(&s->chunks, NULL, 0, 32);
    return s;
}

static int push(pc_seal *s, unsigned char tag)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(&s->sec->ss, s->cipher, &clen, s->sec->plain, s->fill, s->clear,
                                               sizeof s->clear, tag);
    s->fill = 0;
    crypto_generichash_update(&s->chunks, s->cipher, (size_t)clen);
    if (s->sink(s->arg, s->cipher, (size_t)clen) != 0)
        return s->err = PC_ESINK;
    return PC_OK;
}

/* Adds the LF-to-CRLF growth of one slice to N. */
static void count_crlf(pc_seal *s, const uint8_t *p, size_t len)
{
    s->crlf += len;
    const uint8_t *end = p + len, *lf = p;
    while ((lf = memchr(lf, '\n', (size_t)(end - lf))) != NULL) {
        int after_cr = lf == p ? s->prev_cr : lf[-1] == '\r';
        if (!after_cr)
            s->crlf++;
        lf++;
    }
    s->prev_cr = p[len - 1] == '\r';
}

int pc_seal_update(pc_seal *s, const uint8_t *plain, size_t len)
{
    if (!s || (!plain && len))
        return PC_EINVAL;
    if (s->err)
        return s->err;
    if (s->finished)
        return PC_EINVAL;
    if (len == 0)
        return PC_OK;
    if (len > UINT64_MAX / 2 - s->raw) /* keeps N = at most 2R representable */
        return s->err = PC_EINVAL;
    count_crlf(s, plain, len);
    s->raw += len;
    crypto_generichash_update(&s->sec->hash, plain, len);
    while (len > 0) {
        size_t n = CHUNK - s->fill;
        if (n > len)
            n = len;
        memcpy(s->sec->plain + s->fill, plain, n);
        s->fill += n;
        plain += n;
        len -= n;
        /* The final chunk always holds fewer than C bytes, so a full buffer is never final. */
        if (s->fill == CHUNK && push(s, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) != PC_OK)
            return s->err;
    }
    return PC_OK;
}

int pc_seal_finish(pc_seal *s, uint8_t content_hash[32], pc_msg_meta *meta)
{
    if (!s || !content_hash || !meta)
        return PC_EINVAL;
    if (s->err)
        return s->err;
    if (s->finished)
        return PC_EINVAL;
    uint64_t padded = pc_padded_for(s->raw);
    if (padded == 0)
        return s->err = PC_EINVAL;
    /* Zero padding, a chunk's worth at a time. */
    for (uint64_t left = padded - s->raw; left > 0;) {
        size_t n = CHUNK - s->fill;
        if (n > left)
            n = (size_t)left;
        memset(s->sec->plain + s->fill, 0, n);
        s->fill += n;
        left -= n;
        if (s->fill == CHUNK && push(s, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) != PC_OK)
            return s->err;
    }
    if (push(s, crypto_secretstream_xchacha20poly1305_TAG_FINAL) != PC_OK)
        return s->err;
    sodium_memzero(s->sec->plain, CHUNK);

    uint8_t h[32];
    crypto_generichash_final(&s->sec->hash, h, sizeof h);
    memcpy(content_hash, h, sizeof h);
    crypto_generichash_final(&s->chunks, s->chunks_hash, sizeof s->chunks_hash);
    s->padded = padded;
    s->finished = 1;
    memset(meta, 0, sizeof *meta);
    meta->arrival = s->arrival;
    meta->tz_minutes = s->tz_minutes;
    meta->raw_size = s->raw;
    meta->crlf_size = s->crlf;
    meta->padded_size = padded;
    return PC_OK;
}

int pc_seal_prefix(pc_seal *s, const uint8_t tag[PC_TAG_BYTES], uint8_t prefix[PC_MSG_PREFIX_BYTES])
{
    if (!s || !tag || !prefix || !s->finished || s->err)
        return PC_EINVAL;
    uint8_t *m = s->sec->meta;
    m[0] = 1; /* metadata version */
    m[1] = 0; /* flags */
    pc_be16_put(m + 2, (uint16_t)s->tz_minutes);
    pc_be64_put(m + 4, (uint64_t)s->arrival);
    pc_be64_put(m + 12, s->raw);
    pc_be64_put(m + 20, s->crlf);
    pc_be64_put(m + 28, s->padded);
    memcpy(m + 36, s->sec->stream_key, sizeof s->sec->stream_key);
    memcpy(m + 68, tag, PC_TAG_BYTES);

    memcpy(prefix, s->clear, sizeof s->clear);
    int rc = crypto_box_seal(prefix + 24, m, PC_META_BYTES, s->box_pk) == 0 ? PC_OK : PC_EINVAL;
    memcpy(prefix + 24 + PC_SEALED_META_BYTES, s->header, sizeof s->header);
    sodium_memzero(m, PC_META_BYTES);
    return rc;
}

int pc_seal_cancel_key(const pc_seal *s, const char *msgid, uint8_t out[PC_CANCEL_KEY_BYTES])
{
    if (!s || !msgid || !out || !s->finished || s->err)
        return PC_EINVAL;
    pc_cancel_owner_key(s->sec->stream_key, msgid, out);
    return PC_OK;
}

int pc_seal_chunks_hash(const pc_seal *s, uint8_t out[32])
{
    if (!s || !out || !s->finished || s->err)
        return PC_EINVAL;
    memcpy(out, s->chunks_hash, sizeof s->chunks_hash);
    return PC_OK;
}

void pc_seal_free(pc_seal *s)
{
    if (!s)
        return;
    if (s->sec)
        sodium_free(s->sec);
    free(s->cipher);
    sodium_memzero(s, sizeof *s);
    free(s);
}
