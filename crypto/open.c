/* crypto: opening an envelope of docs/formats.md section 3, fed in arbitrary slices. Every
 * chunk is authenticated before its plaintext reaches the sink, but the stream as a whole is
 * only known to be complete when pc_open_finish returns PC_OK. */
#include <stdlib.h>

#include "crypto/internal.h"

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

struct open_secret {
    crypto_secretstream_xchacha20poly1305_state ss;
    uint8_t meta[PC_META_BYTES];
    uint8_t plain[]; /* one chunk of plaintext */
};

struct pc_open {
    pc_sink_fn sink;
    void *arg;
    uint64_t raw;     /* R: bytes the sink gets */
    uint64_t padded;  /* P */
    uint64_t nchunks; /* floor(P / C) + 1 */
    uint64_t idx;     /* chunks opened so far */
    uint64_t pos;     /* plaintext bytes opened so far */
    size_t chunk;     /* C */
    uint8_t clear[PC_CLEAR_PREFIX_BYTES]; /* prefix bytes [0, 24): every chunk's associated data */
    size_t want;      /* ciphertext size of the chunk being collected */
    size_t have;      /* bytes of it in cbuf */
    int done;         /* final chunk opened */
    int err;          /* sticky */
    struct open_secret *sec;
    uint8_t *cbuf;
    int version;      /* 2: a trailer follows the final chunk */
    crypto_generichash_state chunks; /* of the ciphertext chunks */
    uint8_t chunks_hash[32];
    uint8_t trailer[PC_MAIL_TRAILER_BYTES];
    size_t trailer_have;
};

/* Checks the cleartext part of a prefix; returns the chunk log2 or -1. */
static int check_prefix(const uint8_t *p)
{
    if (memcmp(p, "PSTM", 4) != 0 || (p[4] != 1 && p[4] != 2) || p[5] < PC_CHUNK_LOG2_MIN || p[5] > PC_CHUNK_LOG2_MAX ||
        p[6] != 0 || p[7] != 0)
        return -1;
    return p[5];
}

int pc_envelope_key_id(const uint8_t *prefix, size_t len, uint8_t key_id[PC_KEYID_BYTES])
{
    if (!prefix || !key_id)
        return PC_EINVAL;
    if (len < PC_MSG_PREFIX_BYTES || check_prefix(prefix) < 0)
        return PC_EFORMAT;
    memcpy(key_id, prefix + 8, PC_KEYID_BYTES);
    return PC_OK;
}

static size_t chunk_cipher_size(const pc_open *o)
{
    size_t plain = o->idx + 1 < o->nchunks ? o->chunk : (size_t)(o->padded % o->chunk);
    return plain + ABYTES;
}

static pc_open *fail(pc_open *o, int *status, int rc)
{
    pc_open_free(o);
    *status = rc;
    return NULL;
}

/* Opens the sealed metadata and checks it; m (PC_META_BYTES) is the caller's to wipe. */
static int open_meta(const uint8_t *prefix, const uint8_t *box_pk, const uint8_t *box_sk, uint8_t *m)
{
    if (check_prefix(prefix) < 0)
        return PC_EFORMAT;
    uint8_t kid[PC_KEYID_BYTES];
    crypto_generichash(kid, sizeof kid, box_pk, PC_BOX_PK_BYTES, NULL, 0);
    if (memcmp(kid, prefix + 8, sizeof kid) != 0)
        return PC_EKEY;
    if (crypto_box_seal_open(m, prefix + 24, PC_SEALED_META_BYTES, box_pk, box_sk) != 0)
        return PC_EKEY;
    uint64_t r = pc_be64_get(m + 12), n = pc_be64_get(m + 20), p = pc_be64_get(m + 28);
    /* N - R counts the bare LFs, so R <= N <= 2R; P is fully determined by R. */
    if (m[0] != 1 || m[1] != 0 || n < r || n - r > r || p == 0 || p != pc_padded_for(r))
        return PC_EFORMAT;
    return PC_OK;
}

int pc_envelope_open_meta(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t box_pk[PC_BOX_PK_BYTES],
                          const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta,
                          uint8_t stream_key[PC_STREAM_KEY_BYTES])
{
    if (!prefix || !box_pk || !box_sk || !meta || !stream_key)
        return PC_EINVAL;
    uint8_t m[PC_META_BYTES];
    int rc = open_meta(prefix, box_pk, box_sk, m);
    if (rc == PC_OK) {
        memset(meta, 0, sizeof *meta);
        meta->tz_minutes = (int16_t)pc_be16_get(m + 2);
        meta->arrival = (int64_t)pc_be64_get(m + 4);
        meta->raw_size = pc_be64_get(m + 12);
        meta->crlf_size = pc_be64_get(m + 20);
        meta->padded_size = pc_be64_get(m + 28);
        memcpy(stream_key, m + 36, PC_STREAM_KEY_BYTES);
        memcpy(meta->tag, m + 68, PC_TAG_BYTES);
    }
    sodium_memzero(m, sizeof m); /* holds the stream key */
    return rc;
}

pc_open *pc_open_begin_key(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t stream_key[PC_STREAM_KEY_BYTES],
                           const pc_msg_meta *meta, pc_sink_fn sink, void *arg, int *status)
{
    int dummy;
    if (!status)
        status = &dummy;
    if (!prefix || !stream_key || !meta || !sink)
        return fail(NULL, status, PC_EINVAL);
    int log2 = check_prefix(prefix);
    if (log2 < 0)
        return fail(NULL, status, PC_EFORMAT);
    /* The sizes decide where the stream ends: the same rule as for sealed metadata. */
    uint64_t r = meta->raw_size, p = meta->padded_size;
    if (p == 0 || p != pc_padded_for(r))
        return fail(NULL, status, PC_EINVAL);

    pc_open *o = calloc(1, sizeof *o);
    if (!o)
        return fail(NULL, status, PC_ENOMEM);
    o->chunk = (size_t)1 << log2;
    /* Plain heap memory, wiped on free: the gateway opens one stream per message read, and
     * sodium_malloc's guard pages and mlock cost seven system calls (and TLB flushes) each
     * time, while the plaintext it decrypts lives in ordinary memory anyway. */
    o->sec = malloc(sizeof(struct open_secret) + o->chunk);
    if (!o->sec)
        return fail(o, status, PC_ENOMEM);
    if (crypto_secretstream_xchacha20poly1305_init_pull(&o->sec->ss, prefix + 24 + PC_SEALED_META_BYTES,
                                                        stream_key) != 0)
        return fail(o, status, PC_EFORMAT);
    o->cbuf = malloc(o->chunk + ABYTES);
    if (!o->cbuf)
        return fail(o, status, PC_ENOMEM);

    memcpy(o->clear, prefix, sizeof o->clear);
    o->version = prefix[4];
    crypto_generichash_init(&o->chunks, NULL, 0, 32);
    o->sink = sink;
    o->arg = arg;
    o->raw = r;
    o->padded = p;
    o->nchunks = p / o->chunk + 1;
    o->want = chunk_cipher_size(o);
    *status = PC_OK;
    return o;
}

pc_open *pc_open_begin(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t box_pk[PC_BOX_PK_BYTES],
                       const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta, pc_sink_fn sink, void *arg,
                       int *status)
{
    int dummy;
    if (!status)
        status = &dummy;
    if (!prefix || !box_pk || !box_sk || !meta || !sink)
        return fail(NULL, status, PC_EINVAL);
    uint8_t key[PC_STREAM_KEY_BYTES];
    int rc = pc_envelope_open_meta(prefix, box_pk, box_sk, meta, key);
    pc_open *o = rc == PC_OK ? pc_open_begin_key(prefix, key, meta, sink, arg, status) : fail(NULL, status, rc);
    sodium_memzero(key, sizeof key);
    return o;
}

/* Opens the collected chunk and hands its unpadded part to the sink. */
static int open_chunk(pc_open *o)
{
    crypto_generichash_update(&o->chunks, o->cbuf, o->want);
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&o->sec->ss, o->sec->plain, &mlen, &tag, o->cbuf, o->want,
                                                   o->clear, sizeof o->clear) != 0)
        return o->err = PC_EAUTH;
    int last = o->idx + 1 == o->nchunks;
    /* The chunk opened, so the sender wrote it: a wrong tag is a malformed stream, not tampering. */
    if (tag != (last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE))
        return o->err = PC_EFORMAT;
    size_t emit = 0;
    if (o->pos < o->raw)
        emit = o->raw - o->pos < mlen ? (size_t)(o->raw - o->pos) : (size_t)mlen;
    /* Padding must be zeros: anything else would be data the sink never sees. */
    if (emit < mlen && !sodium_is_zero(o->sec->plain + emit, (size_t)mlen - emit))
        return o->err = PC_EFORMAT;
    if (emit > 0 && o->sink(o->arg, o->sec->plain, emit) != 0)
        return o->err = PC_ESINK;
    sodium_memzero(o->sec->plain, (size_t)mlen);
    o->pos += mlen;
    o->idx++;
    o->have = 0;
    if (last) {
        o->done = 1;
        crypto_generichash_final(&o->chunks, o->chunks_hash, sizeof o->chunks_hash);
    } else
        o->want = chunk_cipher_size(o);
    return PC_OK;
}

int pc_open_update(pc_open *o, const uint8_t *cipher, size_t len)
{
    if (!o || (!cipher && len))
        return PC_EINVAL;
    if (o->err)
        return o->err;
    while (len > 0) {
        if (o->done) {
            size_t room = o->version == 2 ? sizeof o->trailer - o->trailer_have : 0;
            if (len > room)
                return o->err = PC_EFORMAT; /* bytes after the final chunk (and trailer) */
            memcpy(o->trailer + o->trailer_have, cipher, len);
            o->trailer_have += len;
            return PC_OK;
        }
        size_t n = o->want - o->have;
        if (n > len)
            n = len;
        memcpy(o->cbuf + o->have, cipher, n);
        o->have += n;
        cipher += n;
        len -= n;
        if (o->have == o->want && open_chunk(o) != PC_OK)
            return o->err;
    }
    return PC_OK;
}

int pc_open_finish(pc_open *o)
{
    if (!o)
        return PC_EINVAL;
    if (o->err)
        return o->err;
    int whole = o->version != 2 || o->trailer_have == sizeof o->trailer;
    return o->done && o->pos == o->padded && whole ? PC_OK : PC_ETRUNC;
}

int pc_open_signed_parts(const pc_open *o, uint8_t chunks_hash[32], uint8_t trailer[PC_MAIL_TRAILER_BYTES])
{
    if (!o || !chunks_hash || !trailer || !o->done || o->err)
        return PC_EINVAL;
    if (o->version != 2 || o->trailer_have != sizeof o->trailer)
        return PC_ESIG;
    memcpy(chunks_hash, o->chunks_hash, sizeof o->chunks_hash);
    memcpy(trailer, o->trailer, sizeof o->trailer);
    return PC_OK;
}

void pc_open_free(pc_open *o)
{
    if (!o)
        return;
    if (o->sec) {
        sodium_memzero(o->sec, sizeof(struct open_secret) + o->chunk);
        free(o->sec);
    }
    free(o->cbuf);
    sodium_memzero(o, sizeof *o);
    free(o);
}
