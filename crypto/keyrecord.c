/* crypto: user key records, binary format of docs/formats.md section 2. */
#include <time.h>

#include "crypto/internal.h"

#define KR_MAGIC "PSTK"
#define KR_VERSION 1
#define KR_ALG_ARGON2ID13 1
#define KR_SIG_CONTEXT "postern keyrecord v1" /* signed with its NUL */
#define KR_SIG_CONTEXT_BYTES (sizeof KR_SIG_CONTEXT)

/* Offsets relative to 8 + A, the end of the address. */
#define KR_OFF_KEYID 0
#define KR_OFF_SERIAL 16
#define KR_OFF_CREATED 20
#define KR_OFF_BOXPK 28
#define KR_OFF_OPS 60
#define KR_OFF_MEM 68
#define KR_OFF_SALT 76
#define KR_OFF_NONCE 92
#define KR_OFF_WRAPPED 116 /* = 124 + A: end of the wrapping associated data */
#define KR_OFF_AUTHID 164  /* = 172 + A */
#define KR_OFF_SIG 172     /* = 180 + A: end of the signed bytes */
#define KR_FIXED 236       /* total = 8 + A + 236 = 244 + A */

static size_t address_len(const pc_keyrecord *rec)
{
    const char *nul = memchr(rec->address, 0, sizeof rec->address);
    return nul ? (size_t)(nul - rec->address) : 0;
}

static int kdf_in_bounds(uint64_t ops, uint64_t mem)
{
    return ops >= PC_KR_OPS_MIN && ops <= PC_KR_OPS_MAX && mem >= PC_KR_MEM_MIN && mem <= PC_KR_MEM_MAX;
}

/* A struct we can serialise: terminated address of 1..254 octets and KDF limits in bounds. */
static int fields_ok(const pc_keyrecord *rec)
{
    size_t a = address_len(rec);
    return a >= 1 && a <= PC_ADDRESS_MAX && kdf_in_bounds(rec->opslimit, rec->memlimit);
}

/* Writes the whole record; the struct must satisfy fields_ok. Returns 244 + A. */
static size_t write_record(const pc_keyrecord *rec, uint8_t *out)
{
    size_t a = address_len(rec);
    memcpy(out, KR_MAGIC, 4);
    out[4] = KR_VERSION;
    out[5] = KR_ALG_ARGON2ID13;
    pc_be16_put(out + 6, (uint16_t)a);
    memcpy(out + 8, rec->address, a);
    uint8_t *p = out + 8 + a;
    memcpy(p + KR_OFF_KEYID, rec->key_id, PC_KEYID_BYTES);
    pc_be32_put(p + KR_OFF_SERIAL, rec->serial);
    pc_be64_put(p + KR_OFF_CREATED, rec->created);
    memcpy(p + KR_OFF_BOXPK, rec->box_pk, PC_BOX_PK_BYTES);
    pc_be64_put(p + KR_OFF_OPS, rec->opslimit);
    pc_be64_put(p + KR_OFF_MEM, rec->memlimit);
    memcpy(p + KR_OFF_SALT, rec->salt, PC_SALT_BYTES);
    memcpy(p + KR_OFF_NONCE, rec->nonce, sizeof rec->nonce);
    memcpy(p + KR_OFF_WRAPPED, rec->wrapped_sk, sizeof rec->wrapped_sk);
    memcpy(p + KR_OFF_AUTHID, rec->authority_id, PC_AUTH_KEYID_BYTES);
    memcpy(p + KR_OFF_SIG, rec->sig, sizeof rec->sig);
    return 8 + a + KR_FIXED;
}

/* Argon2id wrapping key into a sodium_malloc'd buffer; NULL when Argon2id cannot run. */
static uint8_t *derive_wrapping_key(const pc_keyrecord *rec, const char *password, size_t password_len)
{
#if SIZE_MAX < UINT64_MAX
    if (rec->memlimit > SIZE_MAX)
        return NULL;
#endif
    uint8_t *w = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    if (!w)
        return NULL;
    if (crypto_pwhash(w, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, password ? password : "", password_len,
                      rec->salt, rec->opslimit, (size_t)rec->memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_free(w); /* sodium_free wipes */
        return NULL;
    }
    return w;
}

/* The signed message: context || record bytes [0, 180 + A). */
static size_t signed_message(const pc_keyrecord *rec, uint8_t *msg)
{
    memcpy(msg, KR_SIG_CONTEXT, KR_SIG_CONTEXT_BYTES);
    size_t n = write_record(rec, msg + KR_SIG_CONTEXT_BYTES);
    return KR_SIG_CONTEXT_BYTES + n - 64;
}

static int resolve_limits(uint64_t *ops, uint64_t *mem)
{
    if (*ops == 0 && *mem == 0) {
        *ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    }
    return kdf_in_bounds(*ops, *mem) ? PC_OK : PC_EINVAL;
}

static uint64_t now(void)
{
    time_t t = time(NULL);
    return t < 0 ? 0 : (uint64_t)t;
}

/* The authority key's id and signature over the record. */
static int sign_record(pc_keyrecord *rec, const uint8_t authority_sk[PC_AUTH_SK_BYTES])
{
    uint8_t buf[KR_SIG_CONTEXT_BYTES + PC_KEYRECORD_MAX];
    uint8_t auth_pk[PC_AUTH_PK_BYTES];
    crypto_sign_ed25519_sk_to_pk(auth_pk, authority_sk);
    pc_authority_keyid(auth_pk, rec->authority_id);
    size_t mlen = signed_message(rec, buf);
    crypto_sign_detached(rec->sig, NULL, buf, mlen, authority_sk);
    return PC_OK;
}

/* Fresh salt and nonce, wraps sk under the password, then signs. rec's address, key id,
 * serial, created and box_pk must already be set. */
static int wrap_and_sign(pc_keyrecord *rec, const uint8_t sk[PC_BOX_SK_BYTES], const char *password,
                         size_t password_len, uint64_t ops, uint64_t mem, const uint8_t authority_sk[PC_AUTH_SK_BYTES])
{
    uint8_t buf[KR_SIG_CONTEXT_BYTES + PC_KEYRECORD_MAX];
    rec->opslimit = ops;
    rec->memlimit = mem;
    randombytes_buf(rec->salt, sizeof rec->salt);
    randombytes_buf(rec->nonce, sizeof rec->nonce);

    uint8_t *w = derive_wrapping_key(rec, password, password_len);
    if (!w)
        return PC_ENOMEM;
    size_t a = address_len(rec);
    write_record(rec, buf);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(rec->wrapped_sk, &clen, sk, PC_BOX_SK_BYTES, buf,
                                               8 + a + KR_OFF_WRAPPED, NULL, rec->nonce, w);
    sodium_free(w);

    return sign_record(rec, authority_sk);
}

int pc_keyrecord_create(const char *address, const char *password, size_t password_len, uint64_t opslimit,
                        uint64_t memlimit, const uint8_t authority_sk[PC_AUTH_SK_BYTES], pc_keyrecord *rec,
                        uint8_t sk_out[PC_BOX_SK_BYTES])
{
    if (!address || (!password && password_len) || !authority_sk || !rec)
        return PC_EINVAL;
    size_t a = strnlen(address, PC_ADDRESS_MAX + 1);
    if (a < 1 || a > PC_ADDRESS_MAX || resolve_limits(&opslimit, &memlimit) != PC_OK)
        return PC_EINVAL;

    uint8_t *sk = sodium_malloc(PC_BOX_SK_BYTES);
    if (!sk)
        return PC_ENOMEM;
    pc_keyrecord t;
    memset(&t, 0, sizeof t);
    memcpy(t.address, address, a);
    crypto_box_keypair(t.box_pk, sk);
    crypto_generichash(t.key_id, PC_KEYID_BYTES, t.box_pk, PC_BOX_PK_BYTES, NULL, 0);
    t.serial = 1;
    t.created = now();
    int rc = wrap_and_sign(&t, sk, password, password_len, opslimit, memlimit, authority_sk);
    if (rc == PC_OK) {
        *rec = t;
        if (sk_out)
            memcpy(sk_out, sk, PC_BOX_SK_BYTES);
    }
    sodium_free(sk);
    return rc;
}

int pc_keyrecord_rewrap(pc_keyrecord *rec, const uint8_t sk[PC_BOX_SK_BYTES], const char *password,
                        size_t password_len, uint64_t opslimit, uint64_t memlimit,
                        const uint8_t authority_sk[PC_AUTH_SK_BYTES])
{
    if (!rec || !sk || (!password && password_len) || !authority_sk || !fields_ok(rec) ||
        rec->serial == UINT32_MAX || resolve_limits(&opslimit, &memlimit) != PC_OK)
        return PC_EINVAL;
    /* Refuse a secret key that does not belong to the record: re-signing it would publish a
     * record nobody can open. */
    uint8_t pk[PC_BOX_PK_BYTES];
    crypto_scalarmult_base(pk, sk);
    if (sodium_memcmp(pk, rec->box_pk, sizeof pk) != 0)
        return PC_EINVAL;

    pc_keyrecord t = *rec;
    t.serial++;
    t.created = now();
    int rc = wrap_and_sign(&t, sk, password, password_len, opslimit, memlimit, authority_sk);
    if (rc == PC_OK)
        *rec = t;
    return rc;
}

size_t pc_keyrecord_encode(const pc_keyrecord *rec, uint8_t *out, size_t cap)
{
    if (!rec || !out || !fields_ok(rec) || cap < 8 + address_len(rec) + KR_FIXED)
        return 0;
    return write_record(rec, out);
}

int pc_keyrecord_decode(const uint8_t *in, size_t len, pc_keyrecord *rec)
{
    if (!in || !rec)
        return PC_EINVAL;
    if (len < 8 || memcmp(in, KR_MAGIC, 4) != 0 || in[4] != KR_VERSION || in[5] != KR_ALG_ARGON2ID13)
        return PC_EFORMAT;
    size_t a = pc_be16_get(in + 6);
    if (a < 1 || a > PC_ADDRESS_MAX || len != 8 + a + KR_FIXED || memchr(in + 8, 0, a))
        return PC_EFORMAT;

    pc_keyrecord t;
    memset(&t, 0, sizeof t);
    memcpy(t.address, in + 8, a);
    const uint8_t *p = in + 8 + a;
    memcpy(t.key_id, p + KR_OFF_KEYID, PC_KEYID_BYTES);
    t.serial = pc_be32_get(p + KR_OFF_SERIAL);
    t.created = pc_be64_get(p + KR_OFF_CREATED);
    memcpy(t.box_pk, p + KR_OFF_BOXPK, PC_BOX_PK_BYTES);
    t.opslimit = pc_be64_get(p + KR_OFF_OPS);
    t.memlimit = pc_be64_get(p + KR_OFF_MEM);
    memcpy(t.salt, p + KR_OFF_SALT, PC_SALT_BYTES);
    memcpy(t.nonce, p + KR_OFF_NONCE, sizeof t.nonce);
    memcpy(t.wrapped_sk, p + KR_OFF_WRAPPED, sizeof t.wrapped_sk);
    memcpy(t.authority_id, p + KR_OFF_AUTHID, PC_AUTH_KEYID_BYTES);
    memcpy(t.sig, p + KR_OFF_SIG, sizeof t.sig);
    if (!kdf_in_bounds(t.opslimit, t.memlimit))
        return PC_EFORMAT;
    *rec = t;
    return PC_OK;
}

int pc_keyrecord_verify(const pc_keyrecord *rec, const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES],
                        size_t n_authorities, const char *expected_address)
{
    if (!rec || (!authority_pks && n_authorities) || !expected_address)
        return PC_EINVAL;
    if (!fields_ok(rec))
        return PC_EFORMAT;

    uint8_t msg[KR_SIG_CONTEXT_BYTES + PC_KEYRECORD_MAX];
    size_t mlen = signed_message(rec, msg);
    int signed_ok = 0;
    /* Key ids are only 8 bytes: try every authority that matches, not just the first. */
    for (size_t i = 0; i < n_authorities && !signed_ok; i++) {
        uint8_t id[PC_AUTH_KEYID_BYTES];
        pc_authority_keyid(authority_pks[i], id);
        if (memcmp(id, rec->authority_id, sizeof id) == 0 &&
            crypto_sign_verify_detached(rec->sig, msg, mlen, authority_pks[i]) == 0)
            signed_ok = 1;
    }
    if (!signed_ok)
        return PC_ESIG;

    uint8_t kid[PC_KEYID_BYTES];
    crypto_generichash(kid, sizeof kid, rec->box_pk, PC_BOX_PK_BYTES, NULL, 0);
    if (memcmp(kid, rec->key_id, sizeof kid) != 0)
        return PC_EFORMAT;
    if (strcmp(rec->address, expected_address) != 0)
        return PC_EADDR;
    return PC_OK;
}

int pc_keyrecord_unlock(const pc_keyrecord *rec, const char *password, size_t password_len,
                        uint8_t sk_out[PC_BOX_SK_BYTES])
{
    if (!rec || (!password && password_len) || !sk_out || !fields_ok(rec))
        return PC_EINVAL;
    uint8_t ad[PC_KEYRECORD_MAX];
    size_t adlen = write_record(rec, ad) - (KR_FIXED - KR_OFF_WRAPPED);

    uint8_t *w = derive_wrapping_key(rec, password, password_len);
    if (!w)
        return PC_ENOMEM;
    uint8_t *sk = sodium_malloc(PC_BOX_SK_BYTES);
    if (!sk) {
        sodium_free(w);
        return PC_ENOMEM;
    }
    unsigned long long mlen = 0;
    int rc = PC_OK;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(sk, &mlen, NULL, rec->wrapped_sk, sizeof rec->wrapped_sk, ad,
                                                   adlen, rec->nonce, w) != 0) {
        rc = PC_EPASS;
    } else {
        /* Only someone who knew the password could wrap a key that does not match box_pk;
         * such a record is malformed, not a wrong password. */
        uint8_t pk[PC_BOX_PK_BYTES];
        crypto_scalarmult_base(pk, sk);
        if (sodium_memcmp(pk, rec->box_pk, sizeof pk) != 0)
            rc = PC_EFORMAT;
        else
            memcpy(sk_out, sk, PC_BOX_SK_BYTES);
    }
    sodium_free(sk);
    sodium_free(w);
    return rc;
}

int pc_keyrecord_resign(pc_keyrecord *rec, const uint8_t authority_sk[PC_AUTH_SK_BYTES])
{
    /* the authority id and signature lie outside the wrapped key's associated data: the
     * password still opens the record, with no serial change */
    return sign_record(rec, authority_sk);
}
