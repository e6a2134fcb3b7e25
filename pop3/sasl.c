/* SASL PLAIN (RFC 4616) responses for AUTH PLAIN (RFC 5034). */
#include <string.h>

#include <sodium.h>

#include "pop3/pop3.h"

static int refuse(pp_plain *out, int r, const char *err)
{
    sodium_memzero(out, sizeof *out);
    out->err = err;
    return r;
}

int pp_sasl_plain(const char *b64, size_t len, pp_plain *out)
{
    sodium_memzero(out, sizeof *out);
    if (len == 1 && b64[0] == '*')
        return refuse(out, 1, PP_ERR_TXT_SASL_CANCELLED);
    if (len == 1 && b64[0] == '=') /* an empty response: no NULs, so malformed below */
        len = 0;
    if (len / 4 * 3 > PP_PLAIN_MAX)
        return refuse(out, -1, PP_ERR_TXT_SASL_MALFORMED);
    size_t n = 0;
    if (sodium_base642bin((unsigned char *)out->buf, PP_PLAIN_MAX, b64, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return refuse(out, -1, PP_ERR_TXT_SASL_BASE64);
    out->buf[n] = '\0';
    char *nul1 = memchr(out->buf, '\0', n);
    char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - out->buf)) : NULL;
    if (!nul2 || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - out->buf)))
        return refuse(out, -1, PP_ERR_TXT_SASL_MALFORMED);
    const char *authzid = out->buf, *authcid = nul1 + 1, *pw = nul2 + 1;
    size_t authzid_len = (size_t)(nul1 - out->buf), authcid_len = (size_t)(nul2 - authcid);
    size_t pw_len = n - (size_t)(pw - out->buf);
    if (authcid_len == 0 || pw_len == 0)
        return refuse(out, -1, PP_ERR_TXT_SASL_MALFORMED);
    if (authzid_len && (authzid_len != authcid_len || memcmp(authzid, authcid, authcid_len) != 0))
        return refuse(out, -1, PP_ERR_TXT_SASL_AUTHZID);
    out->authcid = authcid;
    out->authcid_len = authcid_len;
    out->password = pw;
    out->password_len = pw_len;
    return 0;
}

void pp_plain_wipe(pp_plain *p)
{
    sodium_memzero(p, sizeof *p);
}
