/* vault: failed-login counters. A key is a source (the address together with the client's
 * IP), an IP alone, or an address alone. After `after` failures within the window, a key is
 * in back-off for throttle_base_ms, doubling with each further failure up to
 * throttle_max_ms; logins during back-off are refused without any password check, so
 * guessing costs the attacker time, not the vault CPU. A guess counts from the moment it is
 * accepted (in flight), not when Argon2id has finished with it: otherwise many guesses sent
 * at once would all be checked before the first failure is counted. Trusted entries
 * (address + IP that logged in) last longer: they let the user past an address-wide
 * back-off that someone else's failures caused. The table is bounded: when full, the entry
 * with the oldest last use is forgotten. */
#include <stdlib.h>
#include <string.h>

#include "vault/internal.h"

#define VT_MAX 16384
#define VT_TRUSTED_MS (30LL * 24 * 3600 * 1000) /* a device that logged in stays known this long */

typedef struct vt_entry {
    struct vt_entry *next;
    uint8_t kind;
    uint16_t len;
    uint8_t key[VT_KEY_MAX];
    unsigned fails, inflight;
    int64_t first, last;
} vt_entry;

struct vt_table {
    vt_entry *head;
    size_t n;
};

void vault_ip_block(const uint8_t ip[VAULT_IP_BYTES], uint8_t out[VAULT_IP_BYTES])
{
    static const uint8_t v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    memcpy(out, ip, VAULT_IP_BYTES);
    if (memcmp(ip, v4_mapped, sizeof v4_mapped) != 0)
        memset(out + 8, 0, 8);
}

vt_table *vt_new(void)
{
    return calloc(1, sizeof(vt_table));
}

void vt_free(vt_table *t)
{
    if (!t)
        return;
    while (t->head) {
        vt_entry *e = t->head;
        t->head = e->next;
        free(e);
    }
    free(t);
}

static int expired(const vault_config *cfg, const vt_entry *e, int64_t now)
{
    if (e->inflight)
        return 0; /* its guesses are still being checked */
    if (e->kind == VT_TRUSTED)
        return now - e->last > VT_TRUSTED_MS;
    return now - e->first > (int64_t)cfg->throttle_window_s * 1000;
}

/* Finds the entry, forgetting expired entries passed on the way. */
static vt_entry **find(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    vt_entry **pp = &t->head;
    while (*pp) {
        vt_entry *e = *pp;
        if (cfg && expired(cfg, e, now)) {
            *pp = e->next;
            free(e);
            t->n--;
            continue;
        }
        if (e->kind == kind && e->len == len && memcmp(e->key, key, len) == 0)
            return pp;
        pp = &e->next;
    }
    return pp;
}

/* The entry, made when missing (NULL only when out of memory). */
static vt_entry *get(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    vt_entry **pp = find(t, cfg, kind, key, len, now), *e = *pp;
    if (e)
        return e;
    if (t->n >= VT_MAX) {
        vt_entry **oldest = &t->head;
        for (vt_entry **q = &t->head; *q; q = &(*q)->next)
            if ((*q)->last < (*oldest)->last)
                oldest = q;
        vt_entry *o = *oldest;
        *oldest = o->next;
        free(o);
        t->n--;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL; /* counting is best effort; the delay on each failure still applies */
    e->kind = (uint8_t)kind;
    e->len = (uint16_t)len;
    memcpy(e->key, key, len);
    e->first = e->last = now;
    e->next = t->head;
    t->head = e;
    t->n++;
    return e;
}

static int64_t backoff(const vault_config *cfg, unsigned fails, unsigned after)
{
    unsigned over = fails - after;
    int64_t d = cfg->throttle_base_ms;
    while (over-- > 0 && d < cfg->throttle_max_ms)
        d *= 2;
    return d < cfg->throttle_max_ms ? d : cfg->throttle_max_ms;
}

static int bad_key(size_t len)
{
    return len == 0 || len > VT_KEY_MAX;
}

int vt_blocked(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, unsigned after,
               int64_t now)
{
    if (bad_key(len))
        return 0;
    vt_entry *e = *find(t, cfg, kind, key, len, now);
    if (!e || e->fails < after)
        return 0;
    return now - e->last < backoff(cfg, e->fails, after);
}

int vt_room(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, unsigned after,
            int64_t now)
{
    if (bad_key(len))
        return 1;
    vt_entry *e = *find(t, cfg, kind, key, len, now);
    /* one guess at a time once in back-off; below the limit, as many as are left of it */
    return !e || e->inflight == 0 || e->fails + e->inflight < after;
}

void vt_begin(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    vt_entry *e = bad_key(len) ? NULL : get(t, cfg, kind, key, len, now);
    if (e)
        e->inflight++;
}

void vt_end(vt_table *t, int kind, const void *key, size_t len)
{
    vt_entry *e = bad_key(len) ? NULL : *find(t, NULL, kind, key, len, 0);
    if (e && e->inflight)
        e->inflight--;
}

void vt_failed(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    vt_entry *e = bad_key(len) ? NULL : get(t, cfg, kind, key, len, now);
    if (e) {
        e->fails++;
        e->last = now;
    }
}

void vt_touch(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    vt_entry *e = bad_key(len) ? NULL : get(t, cfg, kind, key, len, now);
    if (e)
        e->last = now;
}

int vt_known(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    return !bad_key(len) && *find(t, cfg, kind, key, len, now) != NULL;
}

void vt_reset(vt_table *t, int kind, const void *key, size_t len)
{
    if (bad_key(len))
        return;
    vt_entry **pp = find(t, NULL, kind, key, len, 0), *e = *pp;
    if (e && e->inflight) {
        e->fails = 0; /* its guesses in flight still count until they end */
    } else if (e) {
        *pp = e->next;
        free(e);
        t->n--;
    }
}
