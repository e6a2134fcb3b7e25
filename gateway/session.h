/* gateway: the network process's objects — the process context and one session per
 * connection. Everything here runs on the event loop thread; the users' accounts, the
 * mailboxes and the worker pool are the mailbox layer's (mailbox/mailbox.h). */
#ifndef POSTERN_GATEWAY_SESSION_H
#define POSTERN_GATEWAY_SESSION_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "gateway/gw.h"
#include "mailbox/mailbox.h"
#include "store/store.h"
#include "userstate/userstate.h"
#include "vault/vault.h"

typedef struct gw_net gw_net;
typedef struct gw_keycache gw_keycache;
struct gw_imap;
struct gw_pop3;

/* ---- the network process ---- */
#define GW_VREQ_BUCKETS 256
typedef struct gw_vreq {
    struct gw_vreq *next;
    uint32_t id;
    session *s; /* NULL once the session is gone: a late LOGIN success is logged out */
    void (*fn)(void *arg, const vault_reply *r); /* set: not a login; gets every reply */
    void *arg;
} gw_vreq;

/* What the network process counts for GET /metrics (metrics.c); [0] IMAP, [1] POP3. */
typedef struct gw_stats {
    uint64_t connections[2];  /* accepted (refused ones not counted) */
    uint64_t refused;         /* over max_connections or max_connections_per_ip */
    uint64_t logins_ok[2], logins_failed[2];
    uint64_t kicked;          /* sessions ended by `postern kick` */
    uint64_t keyrecords_cached, keyrecords_fetched; /* logins' key records: keycache.c, or the news */
} gw_stats;

struct gw_net {
    const pn_config *cfg;
    struct event_base *base;
    SSL_CTX *ssl_ctx; /* NULL without a certificate; sessions hold their own reference */
    struct evconnlistener **listeners;
    const gw_listener *ls;
    size_t n_listeners;
    struct event *relisten; /* after EMFILE: pause accepting for a moment */
    vault_client *vc;
    struct event *vault_read, *vault_write;
    int ctl_fd;
    struct event *ctl_ev;
    uint8_t *ctl_buf; /* sodium_malloc'd: holds a private key while it arrives */
    size_t ctl_len;
    struct event *sig_term, *sig_int, *stop_timer;
    mb_store *store; /* accounts, mailboxes, the worker pool */
    session *sessions;
    unsigned n_sessions, n_rejecting;
    struct gw_peer **peers; /* peers.c: sessions per client address */
    uint8_t peer_hash_key[16];
    gw_vreq *vreqs[GW_VREQ_BUCKETS];
    gw_keycache *keycache;            /* keycache.c: verified key records (NULL: off) */
    unsigned vault_logins;            /* login.c: LOGIN requests the vault has not answered */
    mb_job *login_queue, *login_queue_tail; /* ... and logins waiting for a place there */
    bool stopping;
    int exit_code;
    uint64_t last_session_id;  /* sessions are numbered 1, 2, ... (WHO, KICK #id) */
    struct gw_control *control; /* control.c: state_dir/control, NULL without it */
    struct gw_metrics *metrics; /* metrics.c: [metrics] listen, NULL without it */
    gw_stats stats;
};

uint32_t gw_vault_login(gw_net *net, session *s, const char *address, const uint8_t *record, size_t record_len,
                        const char *pw, size_t pw_len);
void gw_vault_logout(gw_net *net, uint64_t vault_session);
/* OPEN of a message prefix: fn gets the reply (also when the vault connection is lost: then
 * a FAIL reply); 0 if it could not be sent. */
uint32_t gw_vault_open(void *net, uint64_t vault_session, const uint8_t prefix[PC_MSG_PREFIX_BYTES],
                       void (*fn)(void *arg, const vault_reply *r), void *arg);
void gw_vault_forget(gw_net *net, uint32_t id); /* the session of a request is gone */


/* ---- session.c ---- */
enum gw_timer { GW_T_TIMEOUT, GW_T_FAIL_DELAY, GW_T_CLOSE };

/* peers.c: at most [gateway] max_connections_per_ip sessions per address (a /64 for IPv6).
 * gw_peer_admit counts a session in (false: that address is full); gw_peer_release counts it
 * out. */
bool gw_peer_admit(gw_net *net, const uint8_t ip[VAULT_IP_BYTES]);
void gw_peer_release(gw_net *net, const uint8_t ip[VAULT_IP_BYTES]);
void gw_peers_free(gw_net *net);

/* What a protocol does with a connection (Dovecot's client_vfuncs): the core (session.c)
 * keeps the transport — bufferevent, TLS, timers, output — and the login, and calls these. */
typedef struct gw_proto {
    const char *name; /* "IMAP", "POP3": for log lines */
    /* at accept: the protocol's own state; 0, or -1 when out of memory */
    int (*init)(session *s);
    void (*greet)(session *s);
    /* input arrived, or the session may read on (gw_session_input gives it) */
    void (*input)(session *s);
    /* the last words before the connection closes (server shutdown, timeout, too busy) */
    void (*bye)(session *s, const char *text);
    /* a command could not even start (out of memory, too many logins): text without code */
    void (*refuse)(session *s, const char *text);
    /* a login ended: ok, or no_text as for an IMAP NO ("[UNAVAILABLE] Server busy") */
    void (*login_done)(session *s, bool ok, const char *no_text);
    /* at close: frees the protocol's state (a pending command was cancelled already) */
    void (*free)(session *s);
    /* seconds a logged-in client may stay silent */
    unsigned (*idle_timeout)(const pn_gateway *g);
} gw_proto;
extern const gw_proto gw_imap_proto, gw_pop3_proto;

/* A command that finishes later keeps its own continuation (Dovecot's cmd->func and
 * cmd->context): resume when the client has read what was queued, cancel when the
 * connection closes first. */
typedef struct gw_pending_cmd {
    void (*resume)(void *ctx);
    void (*cancel)(void *ctx);
    void *ctx;
} gw_pending_cmd;

struct session {
    enum session_state state; /* changed only by gw_session_enter */
    const gw_proto *proto;
    gw_net *net;
    session *prev, *next;
    unsigned refs;  /* 1 for the connection, 1 per job in flight */
    bool dead;      /* connection closed; memory freed when refs reach 0 */
    struct bufferevent *bev;
    int fd;
    bool tls;           /* TLS is up (or being negotiated) */
    bool tls_available; /* STARTTLS possible: a plain port and a certificate */
    bool pending;       /* a command finishes asynchronously: input waits */
    gw_pending_cmd cmd; /* ... and how it goes on (may be empty) */
    bool rejecting;     /* over max_connections: greeted with BYE */
    bool output_full;   /* reading paused until the output drains */
    struct event *timer;
    enum gw_timer timer_kind;
    struct event *resume;
    uint8_t ip[VAULT_IP_BYTES];
    bool counted_peer;     /* counted in by gw_peer_admit */
    long long login_by_ms; /* pre-auth deadline (pu_now_ms): no command extends it */
    char peer[64];
    uint64_t id;             /* WHO's session id, unique in this network process */
    bool implicit_tls;       /* TLS from the start (imaps, pop3s), not STARTTLS */
    long long connected_at;  /* wall clock (Unix time), for WHO */
    long long last_input_ms; /* pu_now_ms of the last bytes read, for WHO's idle time */
    uint64_t bytes_in, bytes_out; /* the protocol's bytes (inside TLS), for the logout line */
    long long login_at_ms;   /* pu_now_ms of the login; 0: not logged in */
    unsigned errors;    /* consecutive BAD commands */
    /* login in progress */
    char *pw;           /* sodium_malloc'd */
    size_t pw_len;
    char address[PC_ADDRESS_MAX + 1];
    uint32_t vault_req;
    bool record_cached;      /* the key record came from the cache: pw is kept for a recheck */
    bool rechecking;         /* ... the vault said wrong password: is there a newer record? */
    uint8_t record_digest[16]; /* BLAKE2b of the cached record */
    /* logged in */
    uint64_t vault_session; /* 0: none */
    uint8_t key_id[PC_KEYID_BYTES], box_pk[PC_BOX_PK_BYTES]; /* the user's, from the vault: APPEND seals to it */
    mb_waiter open_wait;    /* waits for the account (mb_account_open) */
    mb_account *account;
    mb_reader reader;       /* reads the account's messages (attached while logged in) */
    mb_waiter scan_wait;    /* SELECT/EXAMINE/STATUS/POP3 login waits for a scan */
    /* the protocol's own state: one of them is set (imap_session.h, pop3_session.c) */
    struct gw_imap *imap;
    struct gw_pop3 *pop;
};

/* The one place a session's state changes: logged at debug level, so a session's life can
 * be followed in the log (OpenSMTPD's smtp_enter_state). */
void gw_session_enter(session *s, enum session_state st);
/* A command finishes later (return GW_PENDING too): resume and cancel are its continuation;
 * gw_session_done forgets them. */
void gw_session_pending(session *s, void (*resume)(void *ctx), void (*cancel)(void *ctx), void *ctx);
/* What a handler's result means for the session: false when it must stop reading now
 * (closing, or a command pending). */
bool gw_session_after(session *s, gw_result r);

void gw_session_accept(gw_net *net, int fd, const struct sockaddr *sa, int salen, bool implicit_tls,
                       const gw_proto *proto);
void gw_write(session *s, const void *data, size_t len);
/* Bytes inside a decrypted message, queued without a copy: the output holds p until they are
 * sent (or the connection closes). */
void gw_write_plain(session *s, const char *data, size_t len, mb_plain *p);
/* Text and CRLF (the protocols' formatted replies). */
void gw_vwritef(session *s, const char *fmt, va_list ap);
/* An asynchronous command has written its reply: read on (from the loop, not right now). */
void gw_session_done(session *s);
#define GW_MAX_ERRORS 20 /* consecutive bad commands before the connection is dropped */
/* Input for the protocol's parser: the next slice, or NULL when there is none or the session
 * must not read now (closing, a command pending, or the client not reading its output:
 * reading resumes when it drains). gw_session_consumed drops what the parser used. */
const void *gw_session_input(session *s, size_t *len);
void gw_session_consumed(session *s, size_t used);
/* A command finishes later: stop reading until gw_session_done. */
void gw_session_wait(session *s);
/* Close once the queued output is flushed (after a final reply). */
void gw_session_close_after_flush(session *s);
/* The protocol's last words (IMAP "* BYE text", POP3 "-ERR text") and close once flushed. */
void gw_session_bye(session *s, const char *text);
/* Closes at once (connection lost); the memory goes when the last reference does. */
void gw_session_close(session *s);
void gw_session_unref(session *s);
/* Arms the timer: the fail delay (ms) after a failed login. */
void gw_session_fail_later(session *s, unsigned ms);
/* STARTTLS: switch s to TLS after "OK Begin TLS" was queued; discards pipelined input. */
int gw_session_starttls(session *s);

/* Output queued and not yet sent, in bytes. */
size_t gw_session_output_len(session *s);

/* Protocol index of gw_stats: 0 IMAP, 1 POP3. */
static inline unsigned gw_proto_index(const session *s)
{
    return s->proto == &gw_pop3_proto;
}
/* state names for log lines and WHO ("selected") */
const char *gw_state_name(enum session_state st);

/* ---- control.c: state_dir/control, `postern who` and `postern kick` ---- */
/* Creates the socket (mode 0600, our user) and serves it on net->base: 0, or -1 (logged;
 * the gateway runs without it). */
int gw_control_start(gw_net *net);
void gw_control_stop(gw_net *net);

/* ---- metrics.c: [metrics] listen, GET /metrics and GET /health ---- */
/* Serves HTTP on fd (bound and listening, by the parent): 0, or -1. */
int gw_metrics_start(gw_net *net, int fd);
void gw_metrics_stop(gw_net *net);

/* ---- login.c ---- */
/* Starts a login (LOGIN, AUTHENTICATE). Takes a copy of the password; the caller wipes its
 * own. Returns GW_PENDING, or GW_DONE when the reply is already written. */
gw_result gw_login_start(session *s, const char *user, size_t user_len, const char *pw, size_t pw_len);
/* The end of a login: ok, or no_text (an IMAP NO's text); the protocol answers
 * (gw_proto.login_done). */
void gw_login_finish(session *s, bool ok, const char *no_text);
/* A vault reply for a login request of s (s may be NULL: its session is gone). */
void gw_login_vault_reply(gw_net *net, session *s, const vault_reply *r);
/* Logins in flight at the vault at most; it queues 64 (vault_config.queue_max) and refuses
 * beyond, so more wait in the network process in arrival order. */
#define GW_VAULT_LOGINS_MAX 32
/* The session leaves its account: stops waiting for it and for scans, stops watching and
 * reading it, and gives its reference back. */
void gw_session_detach_account(session *s);
/* Drops the logins still waiting (the process stops). */
void gw_login_queue_free(gw_net *net);

/* ---- keycache.c: verified key records by address, for [gateway] keyrecord_cache seconds ---- */
/* A wrong password against a cached record is checked once more against a fresh one. */
gw_keycache *gw_keycache_new(unsigned ttl_s, size_t max); /* NULL: off (ttl 0) or no memory */
void gw_keycache_free(gw_keycache *c);
bool gw_keycache_get(gw_keycache *c, const char *address, uint8_t *record, size_t *len);
void gw_keycache_put(gw_keycache *c, const char *address, const uint8_t *record, size_t len);
void gw_keycache_drop(gw_keycache *c, const char *address);

#endif
