/* vault: failed-login counters per address and per client IP. After throttle_after failures
 * within the window, a key is in back-off for throttle_base_ms, doubling with each further
 * failure up to throttle_max_ms; logins during back-off are refused without any password
 * check, so guessing costs the attacker time, not the vault CPU. The table is bounded: when
 * full, the entry with the oldest last failure is forgotten. */
#include <stdlib.h>
#include <string.h>

#include "vault/internal.h"

#define VT_MAX 16384
#define VT_KEY_MAX PC_ADDRESS_MAX

typedef struct vt_entry {
    struct vt_entry *next;
    uint8_t kind;
    uint8_t len;
    uint8_t key[VT_KEY_MAX];
    unsigned fails;
    int64_t first, last;
} vt_entry;

struct vt_table {
    vt_entry *head;
    size_t n;
};

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

static int64_t backoff(const vault_config *cfg, unsigned fails)
{
    unsigned over = fails - cfg->throttle_after;
    int64_t d = cfg->throttle_base_ms;
    while (over-- > 0 && d < cfg->throttle_max_ms)
        d *= 2;
    return d < cfg->throttle_max_ms ? d : cfg->throttle_max_ms;
}

int vt_blocked(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    if (len == 0 || len > VT_KEY_MAX)
        return 0;
    vt_entry *e = *find(t, cfg, kind, key, len, now);
    if (!e || e->fails < cfg->throttle_after)
        return 0;
    return now - e->last < backoff(cfg, e->fails);
}

void vt_failed(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now)
{
    if (len == 0 || len > VT_KEY_MAX)
        return;
    vt_entry **pp = find(t, cfg, kind, key, len, now), *e = *pp;
    if (!e) {
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
            return; /* counting is best effort; the delay on each failure still applies */
        e->kind = (uint8_t)kind;
        e->len = (uint8_t)len;
        memcpy(e->key, key, len);
        e->first = now;
        e->next = t->head;
        t->head = e;
        t->n++;
    }
    e->fails++;
    e->last = now;
}

void vt_reset(vt_table *t, int kind, const void *key, size_t len)
{
    if (len == 0 || len > VT_KEY_MAX)
        return;
    vt_entry **pp = find(t, NULL, kind, key, len, 0), *e = *pp;
    if (e) {
        *pp = e->next;
        free(e);
        t->n--;
    }
}
