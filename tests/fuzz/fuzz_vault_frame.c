/* libFuzzer: the vault protocol's frame decoders fed arbitrary bytes. Byte 0 picks the side:
 * even = a request as the vault reads it, odd = a reply as the network process reads it.
 * Neither may crash, and an accepted frame must satisfy what docs/design.md promises: version
 * 1, a known type for that side, a non-zero id, a body length equal to the rest of the frame;
 * so no proper prefix of an accepted frame, nor the frame with a byte appended, is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vault/vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int reply = data[0] & 1;
    const uint8_t *f = data + 1;
    size_t n = size - 1;
    int (*check)(const uint8_t *, size_t) = reply ? vault_frame_check_reply : vault_frame_check_request;
    if (check(f, n) != 0)
        return 0;
    if (n < 8 || f[0] != 1 || ((size_t)f[2] << 8 | f[3]) != n - 8 || (f[4] | f[5] | f[6] | f[7]) == 0)
        abort();
    int known = reply ? (f[1] >= 0x81 && f[1] <= 0x84) || f[1] == 0xff : f[1] >= 1 && f[1] <= 4;
    if (!known)
        abort();
    for (size_t k = 0; k < n; k++)
        if (check(f, k) == 0)
            abort();
    uint8_t *longer = malloc(n + 1);
    if (!longer)
        abort();
    memcpy(longer, f, n);
    longer[n] = 0;
    if (check(longer, n + 1) == 0)
        abort();
    free(longer);
    return 0;
}
