/* vault: the key cache (unlocked keys in sodium_malloc'd, mlock'd memory) and the session
 * table that references it. Only the vault's main thread touches these. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "vault/internal.h"

#define STATE_KEY_CONTEXT "pstrstat" /* crypto_kdf context: 8 bytes, subkey id 1 */

int64_t vk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void entry_wipe(vk_keys *k, vk_entry *e)
{
    sodium_free(e->sec); /* wipes it */
    sodium_memzero(e, sizeof *e);
    free(e);
    k->n_entries--;
    k->wipes++;
}

static void entry_unlink(vk_keys *k, vk_entry *e)
{
    for (vk_entry **pp = &k->entries; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            return;
        }
}

vk_entry *vk_find(vk_keys *k, const char *address)
{
    for (vk_entry *e = k->entries; e; e = e->next)
        if (!e->superseded && strcmp(e->address, address) == 0)
            return e;
    return NULL;
}

vk_entry *vk_add(vk_keys *k, const pc_keyrecord *rec, uint8_t *sk, const uint8_t verifier[32])
{
    vk_entry *e = calloc(1, sizeof *e);
    vk_secret *sec = sodium_malloc(sizeof *sec);
    if (!e || !sec) {
        free(e);
        if (sec)
            sodium_free(sec);
        sodium_memzero(sk, PC_BOX_SK_BYTES);
        return NULL;
    }
    /* sodium_malloc already tries mlock and ignores a failure; asking again is how we learn it */
    if (sodium_mlock(sec, sizeof *sec) != 0 && !k->mlock_warned) {
        fprintf(stderr, "postern vault: cannot mlock unlocked keys (RLIMIT_MEMLOCK?); they may be swapped\n");
        k->mlock_warned = 1;
    }
    memcpy(sec->sk, sk, PC_BOX_SK_BYTES);
    sodium_memzero(sk, PC_BOX_SK_BYTES);
    crypto_kdf_derive_from_key(sec->state_key, sizeof sec->state_key, 1, STATE_KEY_CONTEXT, sec->sk);
    memcpy(sec->verifier, verifier, sizeof sec->verifier);
    memcpy(e->address, rec->address, sizeof e->address);
    memcpy(e->key_id, rec->key_id, sizeof e->key_id);
    e->serial = rec->serial;
    memcpy(e->salt, rec->salt, sizeof e->salt);
    memcpy(e->box_pk, rec->box_pk, sizeof e->box_pk);
    e->sec = sec;

    /* The new record (a password change, or a new key) replaces the old one for new logins;
     * the old key stays only as long as sessions opened with it. */
    for (vk_entry **pp = &k->entries; *pp;) {
        vk_entry *old = *pp;
        if (!old->superseded && strcmp(old->address, e->address) == 0) {
            old->superseded = 1;
            if (old->refs == 0) {
                *pp = old->next;
                entry_wipe(k, old);
                continue;
            }
        }
        pp = &old->next;
    }
    e->next = k->entries;
    k->entries = e;
    k->n_entries++;
    return e;
}

static vk_session **bucket(vk_keys *k, uint64_t handle)
{
    return &k->buckets[handle % VK_BUCKETS]; /* handles are random */
}

vk_entry *vk_session_entry(vk_keys *k, uint64_t handle)
{
    for (vk_session *s = *bucket(k, handle); s; s = s->next)
        if (s->handle == handle)
            return s->e;
    return NULL;
}

uint64_t vk_session_new(vk_keys *k, vk_entry *e)
{
    vk_session *s = calloc(1, sizeof *s);
    if (!s)
        return 0;
    /* Random handles: a confused or compromised network process cannot walk other sessions
     * by counting. */
    uint64_t h;
    do
        randombytes_buf(&h, sizeof h);
    while (h == 0 || vk_session_entry(k, h));
    s->handle = h;
    s->e = e;
    s->next = *bucket(k, h);
    *bucket(k, h) = s;
    e->refs++;
    k->n_sessions++;
    return h;
}

int vk_session_end(vk_keys *k, uint64_t handle, int64_t now, unsigned grace_ms)
{
    for (vk_session **pp = bucket(k, handle); *pp; pp = &(*pp)->next) {
        vk_session *s = *pp;
        if (s->handle != handle)
            continue;
        *pp = s->next;
        vk_entry *e = s->e;
        free(s);
        k->n_sessions--;
        if (--e->refs == 0) {
            if (e->superseded) {
                entry_unlink(k, e);
                entry_wipe(k, e);
            } else {
                e->expires = now + grace_ms;
            }
        }
        return 0;
    }
    return -1;
}

int64_t vk_expire(vk_keys *k, int64_t now)
{
    int64_t next = -1;
    for (vk_entry **pp = &k->entries; *pp;) {
        vk_entry *e = *pp;
        if (e->refs == 0 && e->expires <= now) {
            *pp = e->next;
            entry_wipe(k, e);
            continue;
        }
        if (e->refs == 0 && (next < 0 || e->expires < next))
            next = e->expires;
        pp = &e->next;
    }
    return next;
}

void vk_clear(vk_keys *k)
{
    for (size_t i = 0; i < VK_BUCKETS; i++)
        while (k->buckets[i]) {
            vk_session *s = k->buckets[i];
            k->buckets[i] = s->next;
            free(s);
        }
    k->n_sessions = 0;
    while (k->entries) {
        vk_entry *e = k->entries;
        k->entries = e->next;
        entry_wipe(k, e);
    }
}
