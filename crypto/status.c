/* crypto: status strings and library initialisation. */
#include "crypto/internal.h"

const char *pc_strerror(int status)
{
    switch (status) {
    case PC_OK: return "ok";
    case PC_EFORMAT: return "malformed or unsupported data";
    case PC_ESIG: return "bad or unknown signature";
    case PC_EADDR: return "key record is for another address";
    case PC_EPASS: return "wrong password";
    case PC_ENOMEM: return "out of memory";
    case PC_EAUTH: return "ciphertext failed authentication";
    case PC_ETRUNC: return "ciphertext truncated";
    case PC_EKEY: return "sealed to another key";
    case PC_ESINK: return "output callback failed";
    case PC_EINVAL: return "invalid argument";
    default: return "unknown crypto status";
    }
}

int pc_init(void)
{
    /* sodium_init returns 1 when already initialised, which is fine. */
    return sodium_init() < 0 ? PC_ENOMEM : PC_OK;
}
