/* SASL PLAIN (RFC 4616) responses for AUTH PLAIN (RFC 5034): util's decoder, POP3's replies. */
#include <string.h>

#include <sodium.h>

#include "pop3/pop3.h"
#include "util/sasl.h"

int pp_sasl_plain(const char *b64, size_t len, pp_plain *out)
{
    sodium_memzero(out, sizeof *out);
    if (len == 1 && b64[0] == '*') {
        out->err = PP_ERR_TXT_SASL_CANCELLED;
        return 1;
    }
    pu_plain p;
    switch (pu_sasl_plain(b64, len, out->buf, sizeof out->buf, PU_PLAIN_NONEMPTY, &p)) {
    case PU_PLAIN_OK:
        out->authcid = p.authcid;
        out->authcid_len = p.authcid_len;
        out->password = p.password;
        out->password_len = p.password_len;
        sodium_memzero(&p, sizeof p);
        return 0;
    case PU_PLAIN_BASE64:
        out->err = PP_ERR_TXT_SASL_BASE64;
        return -1;
    case PU_PLAIN_AUTHZID:
        out->err = PP_ERR_TXT_SASL_AUTHZID;
        return -1;
    case PU_PLAIN_MALFORMED:
    default:
        out->err = PP_ERR_TXT_SASL_MALFORMED;
        return -1;
    }
}

void pp_plain_wipe(pp_plain *p)
{
    sodium_memzero(p, sizeof *p);
}
