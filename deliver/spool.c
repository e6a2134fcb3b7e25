/* The encrypted plaintext spool of an LMTP transaction (see deliver_int.h). Layout: the
 * 24-byte secretstream header, then chunks of CHUNK plaintext bytes (+17 bytes each), the last
 * one shorter and tagged FINAL, so truncation or reordering is detected on reading. */
#include "deliver/deliver_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#define CHUNK 65536
#define CIPHER_CHUNK (CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES)

struct pd_spool {
    int fd;
    uint8_t *key;                                        /* sodium_malloc'd */
    crypto_secretstream_xchacha20poly1305_state *state; /* sodium_malloc'd: holds key material */
    uint8_t *plain;                                      /* sodium_malloc'd, CHUNK bytes */
    uint8_t *cipher;                                     /* CIPHER_CHUNK bytes */
    size_t plain_len;  /* writing: bytes buffered; reading: bytes decrypted in plain */
    size_t plain_pos;  /* reading: bytes of plain already handed out */
    uint64_t size;     /* plaintext bytes written */
    uint64_t file_len; /* after finish */
    uint64_t read_off; /* reading: file offset of the next chunk */
    int finished, at_end;
};

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

pd_spool *pd_spool_new(const pn_config *cfg, char *err, size_t errlen)
{
    pd_spool *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fd = -1;
    s->key = sodium_malloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
    s->state = sodium_malloc(sizeof *s->state);
    s->plain = sodium_malloc(CHUNK);
    s->cipher = malloc(CIPHER_CHUNK);
    if (!s->key || !s->state || !s->plain || !s->cipher) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->fd = pd_open_spool(cfg);
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot create a spool file in $TMPDIR, %s or /tmp: %s", cfg->state_dir,
                 strerror(errno));
        goto fail;
    }
    if (pd_spool_reset(s) != 0) {
        snprintf(err, errlen, "writing the spool file: %s", strerror(errno));
        goto fail;
    }
    return s;
fail:
    pd_spool_free(s);
    return NULL;
}

int pd_spool_reset(pd_spool *s)
{
    /* A fresh key for every message: nothing links two messages' spool contents. */
    uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    if (ftruncate(s->fd, 0) != 0 || lseek(s->fd, 0, SEEK_SET) != 0)
        return -1;
    s->plain_len = s->plain_pos = 0;
    s->size = s->file_len = s->read_off = 0;
    s->finished = s->at_end = 0;
    crypto_secretstream_xchacha20poly1305_keygen(s->key);
    crypto_secretstream_xchacha20poly1305_init_push(s->state, header, s->key);
    return write_all(s->fd, header, sizeof header);
}

static int push(pd_spool *s, unsigned char tag)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(s->state, s->cipher, &clen, s->plain, s->plain_len, NULL, 0, tag);
    s->plain_len = 0;
    return write_all(s->fd, s->cipher, (size_t)clen);
}

int pd_spool_write(pd_spool *s, const uint8_t *data, size_t len)
{
    if (s->finished) {
        errno = EINVAL;
        return -1;
    }
    while (len > 0) {
        size_t take = CHUNK - s->plain_len < len ? CHUNK - s->plain_len : len;
        memcpy(s->plain + s->plain_len, data, take);
        s->plain_len += take;
        s->size += take;
        data += take;
        len -= take;
        /* Only full chunks go out here: every chunk but the FINAL one is exactly CHUNK. */
        if (s->plain_len == CHUNK && push(s, 0) != 0)
            return -1;
    }
    return 0;
}

int pd_spool_finish(pd_spool *s)
{
    if (s->finished) {
        errno = EINVAL;
        return -1;
    }
    if (push(s, crypto_secretstream_xchacha20poly1305_TAG_FINAL) != 0)
        return -1;
    s->finished = 1;
    off_t end = lseek(s->fd, 0, SEEK_END);
    if (end < 0)
        return -1;
    s->file_len = (uint64_t)end;
    return 0;
}

uint64_t pd_spool_size(const pd_spool *s)
{
    return s->size;
}

int pd_spool_rewind(pd_spool *s)
{
    uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    if (!s->finished) {
        errno = EINVAL;
        return -1;
    }
    ssize_t got = pread(s->fd, header, sizeof header, 0);
    if (got != (ssize_t)sizeof header ||
        crypto_secretstream_xchacha20poly1305_init_pull(s->state, header, s->key) != 0) {
        errno = EIO;
        return -1;
    }
    s->read_off = sizeof header;
    s->plain_len = s->plain_pos = 0;
    s->at_end = 0;
    return 0;
}

/* Decrypts the next chunk into plain; 0, or -1 with errno. */
static int pull(pd_spool *s)
{
    uint64_t left = s->file_len - s->read_off;
    size_t want = left < CIPHER_CHUNK ? (size_t)left : CIPHER_CHUNK;
    size_t have = 0;
    while (have < want) {
        ssize_t got = pread(s->fd, s->cipher + have, want - have, (off_t)(s->read_off + have));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = EIO;
            return -1;
        }
        have += (size_t)got;
    }
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (want < crypto_secretstream_xchacha20poly1305_ABYTES ||
        crypto_secretstream_xchacha20poly1305_pull(s->state, s->plain, &mlen, &tag, s->cipher, want, NULL, 0) != 0) {
        errno = EIO;
        return -1;
    }
    s->read_off += want;
    int final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    /* FINAL exactly on the last chunk, nowhere else: anything else is a damaged file. */
    if (final != (s->read_off == s->file_len)) {
        errno = EIO;
        return -1;
    }
    s->at_end = final;
    s->plain_len = (size_t)mlen;
    s->plain_pos = 0;
    return 0;
}

ssize_t pd_spool_read(void *arg, uint8_t *buf, size_t cap)
{
    pd_spool *s = arg;
    while (s->plain_pos == s->plain_len) {
        if (s->at_end)
            return 0;
        if (pull(s) != 0)
            return -1;
    }
    size_t n = s->plain_len - s->plain_pos < cap ? s->plain_len - s->plain_pos : cap;
    memcpy(buf, s->plain + s->plain_pos, n);
    s->plain_pos += n;
    return (ssize_t)n;
}

void pd_spool_free(pd_spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->key)
        sodium_free(s->key); /* sodium_free wipes */
    if (s->state)
        sodium_free(s->state);
    if (s->plain)
        sodium_free(s->plain);
    free(s->cipher);
    free(s);
}
