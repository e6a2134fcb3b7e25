/* crypto: helpers shared by the module's files. Everything here is static inline so that the
 * module exports nothing beyond crypto/crypto.h. */
#ifndef POSTERN_CRYPTO_INTERNAL_H
#define POSTERN_CRYPTO_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

/* Version 1 envelopes: chunk size C = 2^16 (docs/formats.md section 3). */
#define PC_CHUNK_LOG2 16
#define PC_CHUNK_LOG2_MIN 12
#define PC_CHUNK_LOG2_MAX 20
#define PC_MIN_PADDED 4096u
#define PC_META_BYTES 100
#define PC_SEALED_META_BYTES (PC_META_BYTES + crypto_box_SEALBYTES)
#define PC_CLEAR_PREFIX_BYTES 24 /* magic .. key id, the associated data of every chunk */

/* Key record field bounds (docs/formats.md section 2). */
#define PC_KR_OPS_MIN 1u
#define PC_KR_OPS_MAX 16u
#define PC_KR_MEM_MIN 8192u
#define PC_KR_MEM_MAX (4ull << 30)

static inline void pc_be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint16_t pc_be16_get(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline void pc_be32_put(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint32_t pc_be32_get(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void pc_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t pc_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* P for a raw size R; 0 if R is too large to pad (cannot happen for real messages). */
static inline uint64_t pc_padded_for(uint64_t raw)
{
    return pc_padme(raw < PC_MIN_PADDED ? PC_MIN_PADDED : raw);
}

#endif
