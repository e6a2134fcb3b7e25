/* crypto: authority (Ed25519) keys, their text lines and RFC 8315 cancel keys
 * (docs/formats.md sections 2 and 4). */
#include "crypto/internal.h"

#define PK_PREFIX "postern-authority-pk-1 "
#define SK_PREFIX "postern-authority-sk-1 "
#define B64_32_LEN 44 /* base64 of 32 bytes, with padding */
#define CANCEL_CONTEXT "postern cancel v1"
#define LOCK_PREFIX "sha256:"

int pc_authority_generate(uint8_t pk[PC_AUTH_PK_BYTES], uint8_t sk[PC_AUTH_SK_BYTES])
{
    if (!pk || !sk)
        return PC_EINVAL;
    crypto_sign_keypair(pk, sk);
    return PC_OK;
}

static int format_line(const char *prefix, const uint8_t key[32], char *out, size_t cap)
{
    size_t plen = strlen(prefix);
    if (!key || !out || cap < plen + B64_32_LEN + 1)
        return PC_EINVAL;
    memcpy(out, prefix, plen);
    sodium_bin2base64(out + plen, cap - plen, key, 32, sodium_base64_VARIANT_ORIGINAL);
    return PC_OK;
}

/* Decodes "<prefix><44 base64 chars>" into 32 bytes. One trailing LF or CRLF is tolerated so
 * that a line read with fgets can be passed as is; anything else is refused. */
static int parse_line(const char *prefix, const char *line, uint8_t key[32])
{
    size_t plen = strlen(prefix);
    if (!line || strncmp(line, prefix, plen) != 0)
        return PC_EFORMAT;
    const char *b64 = line + plen;
    size_t len = strlen(b64);
    if (len > 0 && b64[len - 1] == '\n') {
        len--;
        if (len > 0 && b64[len - 1] == '\r')
            len--;
    }
    size_t got = 0;
    if (len != B64_32_LEN ||
        sodium_base642bin(key, 32, b64, len, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != 32)
        return PC_EFORMAT;
    return PC_OK;
}

int pc_authority_pk_format(const uint8_t pk[PC_AUTH_PK_BYTES], char *out, size_t cap)
{
    return format_line(PK_PREFIX, pk, out, cap);
}

int pc_authority_pk_parse(const char *line, uint8_t pk[PC_AUTH_PK_BYTES])
{
    if (!pk)
        return PC_EINVAL;
    uint8_t tmp[PC_AUTH_PK_BYTES];
    int rc = parse_line(PK_PREFIX, line, tmp);
    if (rc == PC_OK)
        memcpy(pk, tmp, sizeof tmp);
    return rc;
}

int pc_authority_sk_format(const uint8_t sk[PC_AUTH_SK_BYTES], char *out, size_t cap)
{
    /* libsodium's 64-byte secret key is seed || public key; the file holds only the seed. */
    return format_line(SK_PREFIX, sk, out, cap);
}

int pc_authority_sk_parse(const char *line, uint8_t sk[PC_AUTH_SK_BYTES], uint8_t pk[PC_AUTH_PK_BYTES])
{
    if (!sk)
        return PC_EINVAL;
    uint8_t seed[PC_AUTH_SEED_BYTES];
    uint8_t pk_tmp[PC_AUTH_PK_BYTES];
    int rc = parse_line(SK_PREFIX, line, seed);
    if (rc == PC_OK) {
        crypto_sign_seed_keypair(pk_tmp, sk, seed);
        if (pk)
            memcpy(pk, pk_tmp, sizeof pk_tmp);
    }
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void pc_authority_keyid(const uint8_t pk[PC_AUTH_PK_BYTES], uint8_t id[PC_AUTH_KEYID_BYTES])
{
    crypto_generichash(id, PC_AUTH_KEYID_BYTES, pk, PC_AUTH_PK_BYTES, NULL, 0);
}

int pc_cancel_key(const uint8_t sk[PC_AUTH_SK_BYTES], const char *message_id, char *key, size_t keycap,
                  char *lock, size_t lockcap)
{
    if (!sk || !message_id || !*message_id || !key || keycap < B64_32_LEN + 1 ||
        (lock && lockcap < sizeof LOCK_PREFIX - 1 + B64_32_LEN + 1))
        return PC_EINVAL;

    crypto_generichash_state st;
    uint8_t ck[32];
    crypto_generichash_init(&st, sk, PC_AUTH_SEED_BYTES, sizeof ck);
    crypto_generichash_update(&st, (const uint8_t *)CANCEL_CONTEXT, sizeof CANCEL_CONTEXT); /* with NUL */
    crypto_generichash_update(&st, (const uint8_t *)message_id, strlen(message_id));
    crypto_generichash_final(&st, ck, sizeof ck);
    sodium_memzero(&st, sizeof st);
    sodium_bin2base64(key, keycap, ck, sizeof ck, sodium_base64_VARIANT_ORIGINAL);
    if (lock) { /* RFC 8315, as for mail articles (cancel.c) */
        char text[PC_CANCEL_TEXT_MAX];
        pc_cancel_lock_text(ck, text);
        memcpy(lock, text, strlen(text) + 1);
    }
    sodium_memzero(ck, sizeof ck);
    return PC_OK;
}
