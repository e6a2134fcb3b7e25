/* vault: what the module's files share. Not part of the public face (vault/vault.h); the names
 * carry a vf_/vk_/vp_/vt_ prefix because C has no module-private linkage across files. */
#ifndef POSTERN_VAULT_INTERNAL_H
#define POSTERN_VAULT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vault/vault.h"

/* ---- frames (docs/design.md, "Vault protocol") ---- */
#define VF_VERSION 1
#define VF_HEADER 8 /* version, type, body length (16), request id (32) */
#define VF_LOGIN_MAX (1 + PC_ADDRESS_MAX + VAULT_IP_BYTES + 2 + PC_KEYRECORD_MAX + 2 + VAULT_PASSWORD_MAX)
#define VF_MAX (VF_HEADER + VF_LOGIN_MAX) /* the largest frame either side sends */

enum vf_type {
    VF_LOGIN = 1,
    VF_OPEN = 2,
    VF_LOGOUT = 3,
    VF_STATS = 4,
    VF_R_LOGIN = 0x81,
    VF_R_OPEN = 0x82,
    VF_R_LOGOUT = 0x83,
    VF_R_STATS = 0x84,
    VF_R_FAIL = 0xff,
};

#define VF_R_LOGIN_BODY (8 + PC_KEYID_BYTES + PC_BOX_PK_BYTES + VAULT_STATE_KEY_BYTES)
#define VF_R_OPEN_BODY (8 + 2 + 3 * 8 + PC_TAG_BYTES + PC_STREAM_KEY_BYTES)
#define VF_R_STATS_BODY (8 * VAULT_STATS_FIELDS)

/* A decoded request. Pointers point into the frame, which the caller wipes. */
typedef struct vf_request {
    uint8_t type;
    uint32_t id;
    char address[PC_ADDRESS_MAX + 1];
    uint8_t ip[VAULT_IP_BYTES];
    const uint8_t *record;
    size_t record_len;
    const char *password;
    size_t password_len;
    uint64_t session;
    const uint8_t *prefix;
} vf_request;

int vf_decode_request(const uint8_t *buf, size_t len, vf_request *rq); /* 0 or -1 */
int vf_decode_reply(const uint8_t *buf, size_t len, vault_reply *r);   /* 0 or -1 */

/* Encoders write into out (VF_MAX bytes) and return the frame length. */
size_t vf_encode_login(uint8_t *out, uint32_t id, const char *address, size_t address_len, const uint8_t *ip,
                       const uint8_t *record, size_t record_len, const char *password, size_t password_len);
size_t vf_encode_session(uint8_t *out, uint8_t type, uint32_t id, uint64_t session, const uint8_t *prefix);
size_t vf_encode_empty(uint8_t *out, uint8_t type, uint32_t id);
size_t vf_encode_login_ok(uint8_t *out, uint32_t id, uint64_t session, const uint8_t *key_id, const uint8_t *box_pk,
                          const uint8_t *state_key);
size_t vf_encode_open_ok(uint8_t *out, uint32_t id, const pc_msg_meta *meta, const uint8_t *stream_key);
size_t vf_encode_stats(uint8_t *out, uint32_t id, const vault_stats *st);
size_t vf_encode_fail(uint8_t *out, uint32_t id, enum vault_fail reason);

/* ---- the key cache and sessions (keys.c) ---- */
typedef struct vk_secret {
    uint8_t sk[PC_BOX_SK_BYTES];
    uint8_t state_key[VAULT_STATE_KEY_BYTES];
    uint8_t verifier[32]; /* BLAKE2b-32(key = per-process key; salt || password) */
} vk_secret;

typedef struct vk_entry {
    struct vk_entry *next;
    char address[PC_ADDRESS_MAX + 1];
    uint8_t key_id[PC_KEYID_BYTES];
    uint32_t serial;
    uint8_t salt[PC_SALT_BYTES];
    uint8_t box_pk[PC_BOX_PK_BYTES];
    vk_secret *sec; /* sodium_malloc'd */
    unsigned refs;   /* open sessions */
    int superseded;  /* a newer record replaced it: no new logins, wiped with its last session */
    int64_t expires; /* monotonic ms; meaningful when refs == 0 */
} vk_entry;

#define VK_BUCKETS 4096
typedef struct vk_session {
    struct vk_session *next;
    uint64_t handle;
    vk_entry *e;
} vk_session;

typedef struct vk_keys {
    vk_entry *entries;
    vk_session *buckets[VK_BUCKETS];
    size_t n_entries, n_sessions;
    uint64_t wipes;
    int mlock_warned;
} vk_keys;

/* The current (not superseded) entry for an address, or NULL. */
vk_entry *vk_find(vk_keys *k, const char *address);
/* Takes the unlocked key (PC_BOX_SK_BYTES, wiped here) of rec and caches it; an older entry for
 * the address is superseded. NULL: out of memory (sk wiped anyway). */
vk_entry *vk_add(vk_keys *k, const pc_keyrecord *rec, uint8_t *sk, const uint8_t verifier[32]);
/* New session on e: its handle (never 0), or 0 when out of memory. */
uint64_t vk_session_new(vk_keys *k, vk_entry *e);
vk_entry *vk_session_entry(vk_keys *k, uint64_t handle);
/* Ends a session; the entry is wiped grace_ms after its last one. 0, or -1 if unknown. */
int vk_session_end(vk_keys *k, uint64_t handle, int64_t now, unsigned grace_ms);
/* Wipes entries whose grace ran out; returns the next deadline, or -1 if none. */
int64_t vk_expire(vk_keys *k, int64_t now);
void vk_clear(vk_keys *k);

/* ---- the Argon2id pool (pool.c) ---- */
typedef struct vp_job {
    struct vp_job *next;  /* the server's pending/running lists */
    struct vp_job *qnext; /* the pool's queues */
    uint32_t id;
    pc_keyrecord rec;
    char *pw; /* sodium_malloc'd */
    size_t pw_len;
    uint8_t verifier[32];
    uint8_t ip[VAULT_IP_BYTES];
    int counted;            /* a distinct guess, in flight in the throttle (vt_begin) */
    int64_t arrival;        /* when the vault accepted it (vk_now_ms) */
    int status;             /* the run's result (pc_status) */
    uint8_t *sk;            /* sodium_malloc'd, set by a PC_OK run */
    struct vp_job *waiters; /* logins for the same record, answered when this run ends */
} vp_job;

typedef struct vp_pool vp_pool;
vp_pool *vp_new(unsigned max_threads);
int vp_wake_fd(const vp_pool *p);
/* Hands a job to a thread (one is started if none is idle). 0, or -1 if none can be started. */
int vp_submit(vp_pool *p, vp_job *j);
/* Finished jobs (linked by qnext), after draining the wake pipe. */
vp_job *vp_take_done(vp_pool *p);
void vp_counters(vp_pool *p, uint64_t *runs, uint64_t *peak);
/* Lets running KDFs finish, stops the threads. Jobs stay the caller's. */
void vp_free(vp_pool *p);

/* ---- failed-login counters (throttle.c) ---- */
typedef struct vt_table vt_table;
/* VT_SOURCE and VT_TRUSTED keys are the address followed by the client's IP (vt_source_key). */
enum { VT_ADDRESS = 1, VT_IP = 2, VT_SOURCE = 3, VT_TRUSTED = 4 };
#define VT_KEY_MAX (PC_ADDRESS_MAX + VAULT_IP_BYTES)
vt_table *vt_new(void);
void vt_free(vt_table *t);
/* 1 if logins for this key must wait (after `after` failures, in back-off), else 0. */
int vt_blocked(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, unsigned after,
               int64_t now);
/* 1 if another guess may start now: failures plus guesses in flight stay below `after`, or
 * none is in flight. */
int vt_room(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, unsigned after,
            int64_t now);
void vt_begin(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now);
void vt_end(vt_table *t, int kind, const void *key, size_t len);
void vt_failed(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now);
/* Makes or refreshes an entry (VT_TRUSTED); vt_known says whether it is there. */
void vt_touch(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now);
int vt_known(vt_table *t, const vault_config *cfg, int kind, const void *key, size_t len, int64_t now);
void vt_reset(vt_table *t, int kind, const void *key, size_t len);

int64_t vk_now_ms(void); /* CLOCK_MONOTONIC */

#endif
