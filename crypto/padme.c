/* crypto: Padmé padding sizes and envelope size arithmetic (docs/formats.md section 3). */
#include "crypto/internal.h"

static unsigned floor_log2(uint64_t v)
{
    unsigned r = 0;
    while (v >>= 1)
        r++;
    return r;
}

uint64_t pc_padme(uint64_t len)
{
    /* The formula needs log2(log2 L); for L < 2 there is nothing to round. */
    if (len < 2)
        return len;
    unsigned e = floor_log2(len);
    unsigned s = floor_log2(e) + 1;
    uint64_t mask = (UINT64_C(1) << (e - s)) - 1;
    if (len > UINT64_MAX - mask)
        return 0; /* unrepresentable: callers treat 0 as "too large" */
    return (len + mask) & ~mask;
}

uint64_t pc_envelope_size(uint64_t padded_size)
{
    const uint64_t c = UINT64_C(1) << PC_CHUNK_LOG2;
    uint64_t chunks = padded_size / c + 1;
    uint64_t over = chunks * crypto_secretstream_xchacha20poly1305_ABYTES;
    if (padded_size > UINT64_MAX - PC_MSG_PREFIX_BYTES - over)
        return 0;
    return PC_MSG_PREFIX_BYTES + padded_size + over;
}
