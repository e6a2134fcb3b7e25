/* vault: the gateway's key-holder process and the client the network process talks to it with
 * (docs/design.md, "Vault protocol").
 *
 * The vault holds unlocked user keys; the network process never sees a private key. It sends
 * LOGIN (address, client IP, key record, password), OPEN (session, 196-byte envelope prefix),
 * LOGOUT (session) and STATS requests over an AF_UNIX SOCK_SEQPACKET socketpair and gets one
 * reply per request, matched by request id, so many requests can be in flight.
 *
 * Replies carry secrets (the user's state key, a message's stream key): the client wipes its
 * copy of each reply when the callback returns, so a callback copies what it keeps. */
#ifndef POSTERN_VAULT_H
#define POSTERN_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

#define VAULT_PASSWORD_MAX 1024
#define VAULT_IP_BYTES 16 /* IPv6, or IPv4-mapped (::ffff:a.b.c.d); all zeros = unknown */

/* The block of addresses one client holds, as throttles and slot limits count it: an IPv4
 * address whole, an IPv6 address as its /64 (one host gets a whole one). */
void vault_ip_block(const uint8_t ip[VAULT_IP_BYTES], uint8_t out[VAULT_IP_BYTES]);
#define VAULT_STATE_KEY_BYTES 32

/* ---- the vault process ---- */

typedef struct vault_config {
    const uint8_t (*authority_pks)[PC_AUTH_PK_BYTES]; /* key records must be signed by one */
    size_t n_authorities;
    uint64_t kdf_pool_memory; /* bytes Argon2id may use at once (pool = this / largest memlimit) */
    unsigned max_threads;     /* upper bound of the pool; vault_config_init: online cores */
    unsigned queue_max;       /* logins in or waiting for a KDF run; beyond it: FAIL busy */
    unsigned max_sessions;    /* open sessions; beyond it: FAIL busy */
    unsigned grace_ms;        /* an unlocked key outlives its last session by this much */
    unsigned fail_delay_ms;   /* a wrong password is answered this much later */
    unsigned throttle_after;  /* failures (per address+IP, per IP; x20 per address) before backing off */
    unsigned throttle_window_s; /* failures older than this are forgotten */
    unsigned throttle_base_ms;  /* first back-off; doubles per further failure */
    unsigned throttle_max_ms;   /* back-off cap */
} vault_config;

/* Defaults: 256 MiB of KDF memory, cores threads, queue 64, 65536 sessions, grace 30 s,
 * 1 s wrong-password delay, throttle after 5 failures in 15 min, back-off 1 s doubling to 30 s.
 * The authority keys are left for the caller. */
void vault_config_init(vault_config *cfg);

/* Runs the vault on fd (one end of a SOCK_SEQPACKET socketpair; made non-blocking) until the
 * peer closes it: returns 0 then, or -1 if the peer sent a malformed frame (it is dropped,
 * with a line on stderr) or on a system error. Every key is wiped before returning. Does not
 * close fd. Call pc_init() first. */
int vault_serve(int fd, const vault_config *cfg);

/* ---- counters (STATS reply; for the gateway's status and for tests) ---- */
typedef struct vault_stats {
    uint64_t kdf_runs;    /* Argon2id runs finished */
    uint64_t kdf_running; /* running now */
    uint64_t kdf_queued;  /* waiting for a thread now */
    uint64_t kdf_peak;    /* most runs ever at once */
    uint64_t pool_size;   /* current bound on concurrent runs */
    uint64_t cache_hits;  /* logins answered by the cached verifier, without Argon2id */
    uint64_t logins_ok;
    uint64_t logins_failed; /* wrong passwords */
    uint64_t throttled;
    uint64_t busy;
    uint64_t bad_records;
    uint64_t opens;
    uint64_t entries;  /* unlocked keys held now */
    uint64_t sessions; /* open now */
    uint64_t wipes;    /* unlocked keys wiped so far */
} vault_stats;
#define VAULT_STATS_FIELDS 15

/* ---- the client, in the network process ---- */

enum vault_reply_type {
    VAULT_REPLY_LOGIN = 1,
    VAULT_REPLY_OPEN,
    VAULT_REPLY_LOGOUT,
    VAULT_REPLY_STATS,
    VAULT_REPLY_FAIL,
};

enum vault_fail {
    VAULT_FAIL_PASSWORD = 1, /* wrong password (answered after the delay) */
    VAULT_FAIL_RECORD,       /* record malformed, forged, for another address, or older than a known one */
    VAULT_FAIL_NOMEM,        /* out of memory (Argon2id included) */
    VAULT_FAIL_THROTTLED,    /* too many failures for this address or IP: try later */
    VAULT_FAIL_BUSY,         /* KDF queue or session table full */
    VAULT_FAIL_SESSION,      /* unknown session handle */
    VAULT_FAIL_ENVELOPE,     /* the prefix is malformed or sealed to another key */
};
const char *vault_fail_str(int reason);

typedef struct vault_reply {
    uint32_t id; /* the request's id */
    enum vault_reply_type type;
    enum vault_fail reason; /* VAULT_REPLY_FAIL */
    union {
        struct {
            uint64_t session;
            uint8_t key_id[PC_KEYID_BYTES];
            uint8_t box_pk[PC_BOX_PK_BYTES];
            uint8_t state_key[VAULT_STATE_KEY_BYTES]; /* crypto_kdf(sk, 1, "pstrstat") */
        } login;
        struct {
            pc_msg_meta meta;
            uint8_t stream_key[PC_STREAM_KEY_BYTES]; /* for pc_open_begin_key */
        } open;
        vault_stats stats;
    } u;
} vault_reply;

typedef void (*vault_reply_fn)(void *arg, const vault_reply *reply);

typedef struct vault_client vault_client;

/* Wraps fd (the network process's end; made non-blocking, not closed by free). NULL: no memory. */
vault_client *vault_client_new(int fd);
/* Wipes and frees unsent requests (passwords included). */
void vault_client_free(vault_client *c);
int vault_client_fd(const vault_client *c);
/* Non-zero while requests wait to be sent: poll for writability then. */
int vault_client_wants_write(const vault_client *c);

/* Each send queues one request, writes what the socket takes now, and returns its id (never 0),
 * or 0 if the arguments are out of bounds (address 1..254 octets without NUL, record 0..
 * PC_KEYRECORD_MAX, password <= VAULT_PASSWORD_MAX), memory ran out, or the connection is
 * broken. A login without a record is one for a user that does not exist: the vault throttles
 * and answers it exactly as a wrong password. ip may be NULL (unknown). The client keeps no pointer to the arguments. */
uint32_t vault_client_send_login(vault_client *c, const char *address, const uint8_t ip[VAULT_IP_BYTES],
                                 const uint8_t *record, size_t record_len, const char *password,
                                 size_t password_len);
uint32_t vault_client_send_open(vault_client *c, uint64_t session, const uint8_t prefix[PC_MSG_PREFIX_BYTES]);
uint32_t vault_client_send_logout(vault_client *c, uint64_t session);
uint32_t vault_client_send_stats(vault_client *c);

/* Writes queued requests: 0, or -1 if the connection is broken. */
int vault_client_on_writable(vault_client *c);
/* Reads every reply available now and calls cb for each: 0, or -1 if the vault closed the
 * connection or sent a malformed reply (then the client is unusable). */
int vault_client_on_readable(vault_client *c, vault_reply_fn cb, void *arg);

/* ---- frame checks (the decoders both ends use; for fuzzing) ---- */
/* 0 if buf is one well-formed request (as the vault accepts it), -1 otherwise. */
int vault_frame_check_request(const uint8_t *buf, size_t len);
/* 0 if buf is one well-formed reply (as the client accepts it), -1 otherwise. */
int vault_frame_check_reply(const uint8_t *buf, size_t len);

#endif
