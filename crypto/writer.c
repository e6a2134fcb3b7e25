/* crypto: writers, the hosts that post mail (delivery hosts, and gateways filing APPENDs), their
 * certificates from the organisation authority and the signed trailer of a version-2 mail
 * envelope (docs/formats.md sections 3 and 4a). */
#include <stdio.h>

#include "crypto/internal.h"

#define CERT_CONTEXT "postern writer v1" /* signed with its NUL */
#define MAIL_CONTEXT "postern mail v2"
#define CERT_MAGIC "PSTW"
#define CERT_SIGNED_BYTES 96 /* [0, 96): everything but the authority's signature */
#define CERT_LINE "postern-writer-cert-1 "
#define SEED_LINE "postern-writer-sk-1 "

int pc_writer_issue(const uint8_t authority_sk[PC_AUTH_SK_BYTES], const char *name, int role, int64_t not_before,
                    int64_t not_after, uint8_t cert[PC_WRITER_CERT_BYTES], uint8_t sk[PC_WRITER_SK_BYTES])
{
    size_t nlen = name ? strlen(name) : 0;
    if (!authority_sk || !cert || !sk || nlen == 0 || nlen > PC_WRITER_NAME_MAX ||
        (role != PC_ROLE_DELIVERY && role != PC_ROLE_GATEWAY) || not_after <= not_before)
        return PC_EINVAL;
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
            return PC_EINVAL; /* printed in logs: visible ASCII only */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_keypair(pk, sk);
    memset(cert, 0, PC_WRITER_CERT_BYTES);
    memcpy(cert, CERT_MAGIC, 4);
    cert[4] = 1;
    cert[5] = (uint8_t)role;
    memcpy(cert + 8, pk, sizeof pk);
    pc_be64_put(cert + 40, (uint64_t)not_before);
    pc_be64_put(cert + 48, (uint64_t)not_after);
    memcpy(cert + 56, name, nlen);
    uint8_t apk[PC_AUTH_PK_BYTES];
    crypto_sign_ed25519_sk_to_pk(apk, authority_sk);
    pc_authority_keyid(apk, cert + 88);
    uint8_t m[sizeof CERT_CONTEXT + CERT_SIGNED_BYTES];
    memcpy(m, CERT_CONTEXT, sizeof CERT_CONTEXT);
    memcpy(m + sizeof CERT_CONTEXT, cert, CERT_SIGNED_BYTES);
    crypto_sign_detached(cert + CERT_SIGNED_BYTES, NULL, m, sizeof m, authority_sk);
    return PC_OK;
}

int pc_writer_cert_verify(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES],
                          size_t n_authorities, pc_writer_cert *out)
{
    if (!cert || !out || (n_authorities && !authority_pks))
        return PC_EINVAL;
    if (memcmp(cert, CERT_MAGIC, 4) != 0 || cert[4] != 1 ||
        (cert[5] != PC_ROLE_DELIVERY && cert[5] != PC_ROLE_GATEWAY) || cert[6] || cert[7])
        return PC_EFORMAT;
    int64_t nb = (int64_t)pc_be64_get(cert + 40), na = (int64_t)pc_be64_get(cert + 48);
    if (na <= nb)
        return PC_EFORMAT;
    size_t nlen = 0;
    while (nlen < PC_WRITER_NAME_MAX && cert[56 + nlen])
        nlen++;
    if (nlen == 0 || !sodium_is_zero(cert + 56 + nlen, PC_WRITER_NAME_MAX - nlen))
        return PC_EFORMAT;
    for (size_t i = 0; i < nlen; i++)
        if (cert[56 + i] < 0x21 || cert[56 + i] > 0x7e)
            return PC_EFORMAT;
    uint8_t m[sizeof CERT_CONTEXT + CERT_SIGNED_BYTES];
    memcpy(m, CERT_CONTEXT, sizeof CERT_CONTEXT);
    memcpy(m + sizeof CERT_CONTEXT, cert, CERT_SIGNED_BYTES);
    int rc = PC_ESIG;
    for (size_t i = 0; i < n_authorities && rc != PC_OK; i++) {
        uint8_t id[PC_AUTH_KEYID_BYTES];
        pc_authority_keyid(authority_pks[i], id);
        if (memcmp(id, cert + 88, sizeof id) == 0 &&
            crypto_sign_verify_detached(cert + CERT_SIGNED_BYTES, m, sizeof m, authority_pks[i]) == 0)
            rc = PC_OK;
    }
    if (rc != PC_OK)
        return rc;
    memset(out, 0, sizeof *out);
    out->role = cert[5];
    memcpy(out->pk, cert + 8, sizeof out->pk);
    out->not_before = nb;
    out->not_after = na;
    memcpy(out->name, cert + 56, nlen);
    pc_writer_id(out->pk, out->id);
    return PC_OK;
}

void pc_writer_id(const uint8_t pk[PC_WRITER_PK_BYTES], char out[PC_WRITER_ID_TEXT])
{
    uint8_t h[8];
    crypto_generichash(h, sizeof h, pk, PC_WRITER_PK_BYTES, NULL, 0);
    sodium_bin2hex(out, PC_WRITER_ID_TEXT, h, sizeof h);
}

int pc_writer_allows(const pc_writer_cert *w, int64_t arrival, const char (*revoked)[PC_WRITER_ID_TEXT],
                     size_t n_revoked)
{
    if (!w || (n_revoked && !revoked))
        return PC_EINVAL;
    for (size_t i = 0; i < n_revoked; i++)
        if (strcmp(revoked[i], w->id) == 0)
            return PC_ESIG;
    /* a gateway seals the date the client gave with APPEND (mbsync uploads years-old mail) */
    if (w->role == PC_ROLE_GATEWAY)
        return PC_OK;
    return arrival >= w->not_before && arrival <= w->not_after ? PC_OK : PC_ESIG;
}

int pc_writer_format(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t sk[PC_WRITER_SK_BYTES], char *out,
                     size_t cap)
{
    /* two lines: base64 of 160 bytes is 216 characters, of the 32-byte seed 44 */
    if (!cert || !sk || !out || cap < PC_WRITER_FILE_MAX)
        return PC_EINVAL;
    char c64[sodium_base64_ENCODED_LEN(PC_WRITER_CERT_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    char s64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(c64, sizeof c64, cert, PC_WRITER_CERT_BYTES, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(s64, sizeof s64, sk, 32, sodium_base64_VARIANT_ORIGINAL); /* the seed half */
    int n = snprintf(out, cap, CERT_LINE "%s\n" SEED_LINE "%s\n", c64, s64);
    sodium_memzero(s64, sizeof s64);
    return n > 0 && (size_t)n < cap ? PC_OK : PC_EINVAL;
}

/* "<prefix><base64>" up to the end of the line at *p; advances *p past it. */
static int take_line(const char **p, const char *prefix, uint8_t *bin, size_t want)
{
    size_t plen = strlen(prefix);
    if (strncmp(*p, prefix, plen) != 0)
        return PC_EFORMAT;
    const char *b64 = *p + plen, *end = b64 + strcspn(b64, "\r\n");
    size_t got = 0;
    if (sodium_base642bin(bin, want, b64, (size_t)(end - b64), NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) !=
            0 ||
        got != want)
        return PC_EFORMAT;
    end += strspn(end, "\r\n");
    *p = end;
    return PC_OK;
}

int pc_writer_parse(const char *text, uint8_t cert[PC_WRITER_CERT_BYTES], uint8_t sk[PC_WRITER_SK_BYTES])
{
    if (!text || !cert || !sk)
        return PC_EINVAL;
    uint8_t seed[32], pk[crypto_sign_PUBLICKEYBYTES];
    const char *p = text;
    int rc = take_line(&p, CERT_LINE, cert, PC_WRITER_CERT_BYTES);
    if (rc == PC_OK)
        rc = take_line(&p, SEED_LINE, seed, sizeof seed);
    if (rc == PC_OK && *p)
        rc = PC_EFORMAT;
    if (rc == PC_OK) {
        crypto_sign_seed_keypair(pk, sk, seed);
        /* the secret key must be the one the certificate names */
        if (memcmp(pk, cert + 8, sizeof pk) != 0)
            rc = PC_EKEY;
    }
    sodium_memzero(seed, sizeof seed);
    if (rc != PC_OK)
        sodium_memzero(sk, PC_WRITER_SK_BYTES);
    return rc;
}

/* The signed message: context, group, Message-ID, prefix, hash of the chunks, certificate. */
static void mail_digest_input(crypto_generichash_state *st, const char *group, const char *msgid,
                              const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t chunks_hash[32],
                              const uint8_t cert[PC_WRITER_CERT_BYTES])
{
    crypto_generichash_init(st, NULL, 0, 64);
    crypto_generichash_update(st, (const uint8_t *)MAIL_CONTEXT, sizeof MAIL_CONTEXT);
    crypto_generichash_update(st, (const uint8_t *)group, strlen(group) + 1);
    crypto_generichash_update(st, (const uint8_t *)msgid, strlen(msgid) + 1);
    crypto_generichash_update(st, prefix, PC_MSG_PREFIX_BYTES);
    crypto_generichash_update(st, chunks_hash, 32);
    crypto_generichash_update(st, cert, PC_WRITER_CERT_BYTES);
}

int pc_mail_sign(const uint8_t cert[PC_WRITER_CERT_BYTES], const uint8_t sk[PC_WRITER_SK_BYTES], const char *group,
                 const char *msgid, const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t chunks_hash[32],
                 uint8_t trailer[PC_MAIL_TRAILER_BYTES])
{
    if (!cert || !sk || !group || !msgid || !prefix || !chunks_hash || !trailer || prefix[4] != 2)
        return PC_EINVAL;
    crypto_generichash_state st;
    uint8_t d[64];
    mail_digest_input(&st, group, msgid, prefix, chunks_hash, cert);
    crypto_generichash_final(&st, d, sizeof d);
    memcpy(trailer, cert, PC_WRITER_CERT_BYTES);
    crypto_sign_detached(trailer + PC_WRITER_CERT_BYTES, NULL, d, sizeof d, sk);
    return PC_OK;
}

int pc_mail_verify(const uint8_t prefix[PC_MSG_PREFIX_BYTES], const uint8_t chunks_hash[32],
                   const uint8_t trailer[PC_MAIL_TRAILER_BYTES], const char *group, const char *msgid,
                   const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES], size_t n_authorities, pc_writer_cert *who)
{
    if (!prefix || !chunks_hash || !trailer || !group || !msgid || !who)
        return PC_EINVAL;
    if (prefix[4] != 2)
        return PC_ESIG; /* version 1: unsigned */
    int rc = pc_writer_cert_verify(trailer, authority_pks, n_authorities, who);
    if (rc != PC_OK)
        return rc == PC_EFORMAT ? PC_ESIG : rc;
    crypto_generichash_state st;
    uint8_t d[64];
    mail_digest_input(&st, group, msgid, prefix, chunks_hash, trailer);
    crypto_generichash_final(&st, d, sizeof d);
    return crypto_sign_verify_detached(trailer + PC_WRITER_CERT_BYTES, d, sizeof d, who->pk) == 0 ? PC_OK
                                                                                                  : PC_ESIG;
}

int pc_envelope_verify(const uint8_t *envelope, size_t len, const char *group, const char *msgid,
                       const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES], size_t n_authorities, pc_writer_cert *who)
{
    if (!envelope || !group || !msgid || !who)
        return PC_EINVAL;
    if (len < PC_MSG_PREFIX_BYTES)
        return PC_EFORMAT;
    if (envelope[4] != 2)
        return PC_ESIG;
    if (len < PC_MSG_PREFIX_BYTES + PC_MAIL_TRAILER_BYTES)
        return PC_ETRUNC;
    size_t end = len - PC_MAIL_TRAILER_BYTES;
    uint8_t h[32];
    crypto_generichash(h, sizeof h, envelope + PC_MSG_PREFIX_BYTES, end - PC_MSG_PREFIX_BYTES, NULL, 0);
    return pc_mail_verify(envelope, h, envelope + end, group, msgid, authority_pks, n_authorities, who);
}
