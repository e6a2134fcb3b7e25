/* SASL PLAIN responses (RFC 4616). See sasl.h. */
#include "util/sasl.h"

#include <string.h>

#include <sodium.h>

static pu_plain_result refuse(char *buf, size_t cap, pu_plain *out, pu_plain_result r)
{
    sodium_memzero(buf, cap);
    sodium_memzero(out, sizeof *out);
    return r;
}

pu_plain_result pu_sasl_plain(const char *b64, size_t len, char *buf, size_t cap, unsigned flags,
                              pu_plain *out)
{
    sodium_memzero(out, sizeof *out);
    if (cap == 0)
        return PU_PLAIN_MALFORMED;
    if (len == 1 && b64[0] == '=') /* an empty response: no NULs, so malformed below */
        len = 0;
    if (len / 4 * 3 > cap - 1)
        return refuse(buf, cap, out, PU_PLAIN_MALFORMED);
    size_t n = 0;
    if (sodium_base642bin((unsigned char *)buf, cap - 1, b64, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return refuse(buf, cap, out, PU_PLAIN_BASE64);
    buf[n] = '\0';
    char *nul1 = memchr(buf, '\0', n);
    char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - buf)) : NULL;
    if (!nul2 || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - buf)))
        return refuse(buf, cap, out, PU_PLAIN_MALFORMED);
    const char *authzid = buf, *authcid = nul1 + 1, *pw = nul2 + 1;
    size_t authzid_len = (size_t)(nul1 - buf), authcid_len = (size_t)(nul2 - authcid);
    size_t pw_len = n - (size_t)(pw - buf);
    if ((flags & PU_PLAIN_NONEMPTY) && (authcid_len == 0 || pw_len == 0))
        return refuse(buf, cap, out, PU_PLAIN_MALFORMED);
    if (authzid_len && (authzid_len != authcid_len || memcmp(authzid, authcid, authcid_len) != 0))
        return refuse(buf, cap, out, PU_PLAIN_AUTHZID);
    out->authcid = authcid;
    out->authcid_len = authcid_len;
    out->password = pw;
    out->password_len = pw_len;
    return PU_PLAIN_OK;
}
