/* gateway: verified key records by address (issue 14, item 7). Every login used to fetch the
 * user's key record from the news server, throttled and hopeless ones included, so a flood of
 * guesses (or of junk in a key group) cost a lookup each. A record the store verified is kept
 * for [gateway] keyrecord_cache seconds. A wrong password against a cached record is checked
 * once more against a fresh one (login.c), so a password changed at another site works at
 * once; guesses then cost a lookup each as before, until the vault throttles them, and a
 * throttled login costs none. Loop thread only. Records are public (they sit in
 * the key group), but wiped when dropped all the same. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gateway/session.h"

typedef struct slot {
    char address[PC_ADDRESS_MAX + 1]; /* "" = free */
    uint8_t record[PC_KEYRECORD_MAX];
    size_t len;
    long long fetched_ms;
} slot;

struct gw_keycache {
    unsigned ttl_ms;
    size_t n; /* slots: a power of two */
    slot *slots;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

gw_keycache *gw_keycache_new(unsigned ttl_s, size_t max)
{
    if (!ttl_s || !max)
        return NULL; /* off */
    gw_keycache *c = calloc(1, sizeof *c);
    size_t n = 16;
    while (n < max && n < (1u << 20))
        n *= 2;
    if (!c || !(c->slots = calloc(n, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    c->n = n;
    c->ttl_ms = ttl_s * 1000u;
    randombytes_buf(c->hash_key, sizeof c->hash_key);
    return c;
}

void gw_keycache_free(gw_keycache *c)
{
    if (!c)
        return;
    sodium_memzero(c->slots, c->n * sizeof *c->slots);
    free(c->slots);
    free(c);
}

/* One slot per hash bucket: a newer address simply takes the place (a miss costs a lookup,
 * nothing else), and a flood of addresses cannot grow the cache. */
static slot *bucket(gw_keycache *c, const char *address)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const uint8_t *)address, strlen(address), c->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return &c->slots[v & (c->n - 1)];
}

bool gw_keycache_get(gw_keycache *c, const char *address, uint8_t *record, size_t *len)
{
    if (!c)
        return false;
    slot *s = bucket(c, address);
    long long now = pu_now_ms();
    if (!s->address[0] || strcmp(s->address, address) != 0)
        return false;
    if (now - s->fetched_ms >= c->ttl_ms) {
        sodium_memzero(s, sizeof *s);
        return false;
    }
    memcpy(record, s->record, s->len);
    *len = s->len;
    return true;
}

void gw_keycache_put(gw_keycache *c, const char *address, const uint8_t *record, size_t len)
{
    if (!c || !len || len > PC_KEYRECORD_MAX || strlen(address) > PC_ADDRESS_MAX)
        return;
    slot *s = bucket(c, address);
    sodium_memzero(s, sizeof *s);
    strcpy(s->address, address);
    memcpy(s->record, record, len);
    s->len = len;
    s->fetched_ms = pu_now_ms();
}

void gw_keycache_drop(gw_keycache *c, const char *address)
{
    if (!c)
        return;
    slot *s = bucket(c, address);
    if (s->address[0] && strcmp(s->address, address) == 0)
        sodium_memzero(s, sizeof *s);
}
