/* crypto: the RFC 8315 Cancel-Lock keys of a mail article (docs/formats.md section 3). Two
 * locks: the owner's, whose key comes from the message's stream key, which only the
 * recipient's vault can unseal, so only the recipient's gateway can cancel; and the admin's,
 * from the delivery secret, for purging a deleted user's mail at sites not administered from
 * here. Anyone else who can post — every spool reader with the posting account — can forge
 * nothing: INN refuses a cancel whose key does not hash to a lock. */
#include <string.h>

#include "crypto/internal.h"

#define OWNER_CONTEXT "postern cancel-lock owner v1" /* hashed with its NUL */
#define ADMIN_CONTEXT "postern cancel-lock admin v1"

static void derive(const uint8_t *key, size_t keylen, const char *context, size_t ctxlen, const char *msgid,
                   uint8_t out[PC_CANCEL_KEY_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, keylen, PC_CANCEL_KEY_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)context, ctxlen);
    crypto_generichash_update(&st, (const uint8_t *)msgid, strlen(msgid));
    crypto_generichash_final(&st, out, PC_CANCEL_KEY_BYTES);
    sodium_memzero(&st, sizeof st);
}

void pc_cancel_owner_key(const uint8_t stream_key[PC_STREAM_KEY_BYTES], const char *msgid,
                         uint8_t out[PC_CANCEL_KEY_BYTES])
{
    derive(stream_key, PC_STREAM_KEY_BYTES, OWNER_CONTEXT, sizeof OWNER_CONTEXT, msgid, out);
}

void pc_cancel_admin_key(const uint8_t delivery_secret[PC_DELIVERY_SECRET_BYTES], const char *msgid,
                         uint8_t out[PC_CANCEL_KEY_BYTES])
{
    derive(delivery_secret, PC_DELIVERY_SECRET_BYTES, ADMIN_CONTEXT, sizeof ADMIN_CONTEXT, msgid, out);
}

/* c-key = base64(K) (RFC 4648 with padding), as RFC 8315 section 4 has it */
static void c_key(const uint8_t key[PC_CANCEL_KEY_BYTES], char out[PC_CANCEL_TEXT_MAX])
{
    sodium_bin2base64(out, PC_CANCEL_TEXT_MAX, key, PC_CANCEL_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
}

void pc_cancel_key_text(const uint8_t key[PC_CANCEL_KEY_BYTES], char out[PC_CANCEL_TEXT_MAX])
{
    char k[PC_CANCEL_TEXT_MAX];
    c_key(key, k);
    memcpy(out, "sha256:", 7);
    memcpy(out + 7, k, strlen(k) + 1);
    sodium_memzero(k, sizeof k);
}

void pc_cancel_lock_text(const uint8_t key[PC_CANCEL_KEY_BYTES], char out[PC_CANCEL_TEXT_MAX])
{
    char k[PC_CANCEL_TEXT_MAX];
    uint8_t h[crypto_hash_sha256_BYTES];
    c_key(key, k);
    crypto_hash_sha256(h, (const uint8_t *)k, strlen(k)); /* c-lock = base64(SHA-256(c-key)) */
    memcpy(out, "sha256:", 7);
    sodium_bin2base64(out + 7, PC_CANCEL_TEXT_MAX - 7, h, sizeof h, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(k, sizeof k);
}
