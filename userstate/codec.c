/* userstate: the plaintext serialisation inside the encrypted file (docs/formats.md 5.2).
 * The parser trusts nothing: the bytes were authenticated, but a bug in an older writer or
 * a leaked state key must not turn into memory corruption. It is also canonical — it
 * accepts exactly what us_serialize writes — so the fuzz target can check a round trip. */
#include "userstate/userstate_internal.h"

#include <stdlib.h>
#include <string.h>

#define MIN_ENTRY_BYTES (1 + 3 + 1 + 1 + 8 + 2)
#define META_FIXED_BYTES (8 + 2 + 8 + 8 + 4 + 4 + 1 + 4)

/* Keyword sets are nearly always empty: look at whole bytes, not 256 single bits. */
static unsigned kw_count(const uint8_t set[US_KEYWORD_SET_BYTES])
{
    unsigned n = 0;
    for (unsigned b = 0; b < US_KEYWORD_SET_BYTES; b++)
        n += (unsigned)__builtin_popcount(set[b]);
    return n;
}

size_t us_serialized_size(const userstate *st)
{
    size_t n = 8 + 2 + 4;
    for (unsigned k = 0; k < st->nkw; k++)
        n += 1 + strlen(st->kw[k]);
    for (uint32_t i = 0; i < st->n; i++) {
        const us_entry *e = &st->ent[i];
        n += MIN_ENTRY_BYTES - 3 + e->idlen;
        n += kw_count(e->kw);
        if (e->bits & US_BIT_META)
            n += META_FIXED_BYTES + e->env_len + e->bs_len + e->hdr_len;
    }
    return n + 1 + 8 * (size_t)st->nrecent;
}

static uint8_t *put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
    return p + bytes;
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

void us_serialize(const userstate *st, uint8_t *out)
{
    uint8_t *p = put(out, st->modseq, 8);
    p = put(p, st->nkw, 2);
    for (unsigned k = 0; k < st->nkw; k++) {
        size_t len = strlen(st->kw[k]);
        p = put(p, len, 1);
        p = put_bytes(p, st->kw[k], len);
    }
    p = put(p, st->n, 4);
    for (uint32_t i = 0; i < st->n; i++) {
        const us_entry *e = &st->ent[i];
        p = put(p, e->idlen, 1);
        p = put_bytes(p, e->msgid, e->idlen);
        p = put(p, e->flags, 1);
        p = put(p, e->bits, 1);
        p = put(p, e->modseq, 8);
        p = put(p, kw_count(e->kw), 2);
        for (unsigned b = 0; b < US_KEYWORD_SET_BYTES; b++)
            for (unsigned bit = 0; e->kw[b] >> bit; bit++)
                if (e->kw[b] >> bit & 1)
                    p = put(p, b * 8 + bit, 1);
        if (e->bits & US_BIT_META) {
            p = put(p, (uint64_t)e->arrival, 8);
            p = put(p, (uint16_t)e->tz, 2);
            p = put(p, e->raw_size, 8);
            p = put(p, e->crlf_size, 8);
            p = put(p, e->env_len, 4);
            p = put_bytes(p, e->env, e->env_len);
            p = put(p, e->bs_len, 4);
            p = put_bytes(p, e->bs, e->bs_len);
            p = put(p, e->hdr_set, 1);
            p = put(p, e->hdr_len, 4);
            p = put_bytes(p, e->hdr, e->hdr_len);
        }
    }
    p = put(p, st->nrecent, 1);
    for (unsigned k = 0; k < st->nrecent; k++) {
        p = put(p, st->recent[k].uidvalidity, 4);
        p = put(p, st->recent[k].uid, 4);
    }
}

typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

/* Fixed-width big-endian integer; 0 if the bytes ran out. */
static int get(reader *r, int bytes, uint64_t *v)
{
    if (r->left < (size_t)bytes)
        return 0;
    *v = 0;
    for (int i = 0; i < bytes; i++)
        *v = *v << 8 | r->p[i];
    r->p += bytes;
    r->left -= (size_t)bytes;
    return 1;
}

static const uint8_t *get_bytes(reader *r, size_t n)
{
    if (r->left < n)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static int get_blob(reader *r, uint8_t **out, uint32_t *len)
{
    uint64_t n;
    if (!get(r, 4, &n) || n > US_BLOB_MAX || n > r->left)
        return US_EFORMAT;
    const uint8_t *src = get_bytes(r, (size_t)n);
    *len = (uint32_t)n;
    *out = NULL;
    if (n == 0)
        return US_OK;
    *out = malloc((size_t)n);
    if (!*out)
        return US_ENOMEM;
    memcpy(*out, src, (size_t)n);
    return US_OK;
}

static int parse_entry(userstate *st, reader *r, unsigned version)
{
    uint64_t idlen, flags, bits, modseq, nk;
    if (!get(r, 1, &idlen))
        return US_EFORMAT;
    const uint8_t *id = get_bytes(r, (size_t)idlen);
    if (!id || !us_msgid_ok((const char *)id, (size_t)idlen))
        return US_EFORMAT;
    if (!get(r, 1, &flags) || (flags & ~(uint64_t)US_FLAGS_ALL) || !get(r, 1, &bits) ||
        (bits & ~(uint64_t)(US_BIT_REMOVED | US_BIT_META)) ||
        (bits & US_BIT_REMOVED && bits & US_BIT_META) || /* removal drops the cache */
        !get(r, 8, &modseq) || modseq > st->modseq || !get(r, 2, &nk) || nk > st->nkw)
        return US_EFORMAT;
    uint32_t i;
    int rc = us_add_entry(st, (const char *)id, (size_t)idlen, &i);
    if (rc != US_OK)
        return rc;
    us_entry *e = &st->ent[i];
    e->flags = (uint8_t)flags;
    e->bits = (uint8_t)bits;
    e->modseq = modseq;
    int prev = -1;
    for (uint64_t k = 0; k < nk; k++) {
        uint64_t idx;
        /* strictly increasing: one spelling per set */
        if (!get(r, 1, &idx) || idx >= st->nkw || (int)idx <= prev)
            return US_EFORMAT;
        us_kw_put(e->kw, (unsigned)idx, 1);
        prev = (int)idx;
    }
    if (bits & US_BIT_META) {
        uint64_t arrival, tz;
        if (!get(r, 8, &arrival) || !get(r, 2, &tz) || !get(r, 8, &e->raw_size) || !get(r, 8, &e->crlf_size))
            return US_EFORMAT;
        e->arrival = (int64_t)arrival;
        e->tz = (int16_t)(uint16_t)tz;
        if ((rc = get_blob(r, &e->env, &e->env_len)) != US_OK)
            return rc;
        if ((rc = get_blob(r, &e->bs, &e->bs_len)) != US_OK)
            return rc;
        uint64_t set;
        if (version >= 3) {
            if (!get(r, 1, &set))
                return US_EFORMAT;
            e->hdr_set = (uint8_t)set;
            if ((rc = get_blob(r, &e->hdr, &e->hdr_len)) != US_OK)
                return rc;
            if (!set && e->hdr_len) /* no field set, no fields */
                return US_EFORMAT;
        }
    }
    return US_OK;
}

/* Version 2's \Recent marks: nonzero, one per UIDVALIDITY. */
static int parse_recent(userstate *st, reader *r)
{
    uint64_t n;
    if (!get(r, 1, &n) || n > US_RECENT_MAX)
        return US_EFORMAT;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t v, uid;
        if (!get(r, 4, &v) || !get(r, 4, &uid) || v == 0 || uid == 0 || userstate_recent_uid(st, (uint32_t)v))
            return US_EFORMAT;
        st->recent[st->nrecent++] = (us_recent){(uint32_t)v, (uint32_t)uid};
    }
    return US_OK;
}

int us_parse(userstate *st, const uint8_t *in, size_t len, unsigned version)
{
    if (version < 1 || version > US_VERSION)
        return US_EFORMAT;
    reader r = {in, len};
    uint64_t nkw, n;
    if (!get(&r, 8, &st->modseq) || !get(&r, 2, &nkw) || nkw > US_KEYWORD_MAX)
        return US_EFORMAT;
    for (uint64_t k = 0; k < nkw; k++) {
        uint64_t klen;
        if (!get(&r, 1, &klen))
            return US_EFORMAT;
        const uint8_t *name = get_bytes(&r, (size_t)klen);
        if (!name)
            return US_EFORMAT;
        int rc = us_keyword_add(st, (const char *)name, (size_t)klen);
        if (rc != US_OK)
            return US_EFORMAT;
    }
    /* the count must fit in what is left before anything is allocated for it */
    if (!get(&r, 4, &n) || n > US_MESSAGES_MAX || n > r.left / MIN_ENTRY_BYTES)
        return US_EFORMAT;
    int rc = us_reserve(st, (uint32_t)n);
    if (rc != US_OK)
        return rc == US_ELIMIT ? US_EFORMAT : rc;
    for (uint64_t i = 0; i < n; i++)
        if ((rc = parse_entry(st, &r, version)) != US_OK)
            return rc;
    if (version >= 2 && (rc = parse_recent(st, &r)) != US_OK)
        return rc;
    return r.left == 0 ? US_OK : US_EFORMAT;
}
