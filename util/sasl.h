/* The SASL PLAIN (RFC 4616) response decoder that IMAP AUTHENTICATE and POP3 AUTH share:
 * one reading of "authzid NUL authcid NUL password", so both protocols accept the same. */
#ifndef POSTERN_UTIL_SASL_H
#define POSTERN_UTIL_SASL_H

#include <stddef.h>

typedef enum pu_plain_result {
    PU_PLAIN_OK = 0,
    PU_PLAIN_BASE64,    /* not base64 */
    PU_PLAIN_MALFORMED, /* not exactly two NULs, empty parts under PU_PLAIN_NONEMPTY, or
                           more than the buffer holds */
    PU_PLAIN_AUTHZID,   /* an authzid other than the authcid: acting as another user */
} pu_plain_result;

/* Refuse an empty authcid or password as malformed (POP3 does; IMAP leaves it to the
 * login, which fails it). */
#define PU_PLAIN_NONEMPTY 1u

typedef struct pu_plain {
    const char *authcid; /* NUL-terminated, into the caller's buffer */
    size_t authcid_len;
    const char *password; /* NUL-terminated, into the caller's buffer */
    size_t password_len;
} pu_plain;

/* Decodes the base64 response (len bytes; "=" is an empty response, RFC 4959 and 5034) into
 * buf (cap bytes; a response that decodes to cap bytes or more is malformed). On success out
 * points into buf, which the caller wipes after use (sodium_memzero, or sodium_free); on
 * failure buf and out are wiped here. "*" (cancel) is the caller's to check first. */
pu_plain_result pu_sasl_plain(const char *b64, size_t len, char *buf, size_t cap, unsigned flags,
                              pu_plain *out);

#endif
