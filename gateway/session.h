/* gateway: the network process's objects — the process context, one session per connection,
 * one account per logged-in user, and the worker pool. Everything here runs on the event
 * loop thread except the job bodies in workers.c. */
#ifndef POSTERN_GATEWAY_SESSION_H
#define POSTERN_GATEWAY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "gateway/gw.h"
#include "store/store.h"
#include "userstate/userstate.h"
#include "vault/vault.h"

typedef struct gw_net gw_net;
typedef struct gw_account gw_account;
typedef struct gw_pool gw_pool;
struct gw_mbox;
struct gw_view;
struct gw_plain;
struct gw_fetch;
struct gw_search;
struct gw_saving;
struct gw_pop3;

/* ---- workers.c: a bounded pool of threads, each with its own connections (a ps_pool) ---- */
typedef enum gw_job_kind {
    GW_JOB_KEYRECORD,  /* address -> record bytes (status: a ps_status) */
    GW_JOB_STATE_OPEN, /* address + state_key -> us (status: a us_status) */
    GW_JOB_STATE_SAVE, /* work() if set, then save us and close it; a failed save keeps us */
    GW_JOB_WORK,       /* runs work(): mailbox scans, article reads, decryption */
} gw_job_kind;

/* Each worker thread has its own ps_pool (store/: a pool is used by one thread at a time),
 * with connections renewed after 120 s so nnrpd's view of the group list never gets older
 * than that. Work functions ask it for store's verbs. */
typedef struct gw_job {
    struct gw_job *next;
    gw_job_kind kind;
    void (*done)(struct gw_job *j); /* on the loop, after the job ran; frees the job */
    session *s;                     /* holds a reference; may be dead by then */
    gw_account *a;                  /* holds a reference */
    char address[PC_ADDRESS_MAX + 1];
    int status;
    char err[256];
    uint8_t record[PC_KEYRECORD_MAX];
    size_t record_len;
    uint8_t *state_key; /* sodium_malloc'd, VAULT_STATE_KEY_BYTES */
    userstate *us;
    /* GW_JOB_WORK (and before a GW_JOB_STATE_SAVE): runs on a worker thread; ctx is the
     * job's own payload */
    void (*work)(struct gw_job *j, ps_pool *sites, const pn_config *cfg);
    void *ctx;
} gw_job;

gw_pool *gw_pool_new(const pn_config *cfg, struct event_base *base, unsigned threads);
/* Queues j: 0, or -1 when the queue is full. */
int gw_pool_submit(gw_pool *p, gw_job *j);
/* Queues a GW_JOB_WORK job: work(ctx) on a worker, then done on the loop (which frees the
 * job). 0, or -1 when out of memory or the queue is full: then nothing is queued. */
int gw_pool_run(gw_pool *p, void (*work)(gw_job *j, ps_pool *sites, const pn_config *cfg), void (*done)(gw_job *j),
                void *ctx);
/* Runs the queued jobs to the end, joins the threads, calls the remaining done callbacks. */
void gw_pool_free(gw_pool *p);

/* ---- account.c: a user's state, shared by all their sessions ---- */
struct gw_account {
    gw_account *next;
    gw_net *net;
    char address[PC_ADDRESS_MAX + 1];
    unsigned refs;      /* sessions attached or waiting, plus a job in flight */
    bool ready;         /* state loaded */
    uint8_t *state_key; /* sodium_malloc'd */
    userstate *us;
    struct gw_mbox *mbox;       /* mailbox.h */
    struct gw_plain *cache;     /* decrypted messages, most recently used first */
    struct gw_plain *cache_tail; /* ... and the least recently used */
    struct gw_plain **cache_index; /* ... by Message-ID (loader.c) */
    size_t cache_bytes, cache_n;
    unsigned watched;           /* sessions with the mailbox selected: polled while > 0 */
    bool pop3_locked;           /* a POP3 session holds the maildrop (RFC 1939: one at a time) */
    bool writing;               /* a periodic save of the state is in flight */
    bool save_failed;           /* the last write of the state failed: sessions are told */
    struct gw_loading *loading; /* loader.c: messages being loaded for its sessions */
};

/* Attaches s (logged in at the vault) to its user's account, loading the state first if no
 * other session has it. Calls gw_login_finish(s, ...) now or when the state is loaded. */
void gw_account_attach(session *s, const char *address, const uint8_t state_key[VAULT_STATE_KEY_BYTES]);
/* The session is done with its account; the last one saves the state (in a worker). */
void gw_account_detach(session *s);
void gw_account_unref(gw_account *a); /* for jobs holding an account: refs++ when queued */
/* Writes the states changed since their last save, while their users stay logged in: a
 * snapshot is sealed on the loop and written by a worker. Called every state_save_interval. */
void gw_accounts_save_changed(gw_net *net);
/* At shutdown: the states that could never be written, one last try, then logged as lost. */
void gw_accounts_unsaved_free(gw_net *net);
/* Before a command's tagged answer: when the user's state could not be written, an untagged
 * NO says so (the changes are kept in memory and written once the disk takes them). */
void gw_account_warn_unsaved(session *s);

/* ---- the network process ---- */
#define GW_VREQ_BUCKETS 256
typedef struct gw_vreq {
    struct gw_vreq *next;
    uint32_t id;
    session *s; /* NULL once the session is gone: a late LOGIN success is logged out */
    void (*fn)(void *arg, const vault_reply *r); /* set: not a login; gets every reply */
    void *arg;
} gw_vreq;

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
    gw_pool *pool;
    session *sessions;
    unsigned n_sessions, n_rejecting;
    struct gw_peer **peers; /* peers.c: sessions per client address */
    uint8_t peer_hash_key[16];
    gw_vreq *vreqs[GW_VREQ_BUCKETS];
    gw_account *accounts;
    struct gw_saving *saving; /* account.c: states being written; their next load waits */
    struct gw_unsaved *unsaved; /* account.c: states of gone accounts whose write failed, retried */
    struct event *poll_timer; /* poller.c */
    struct gw_artcache *artcache; /* NULL: no article cache */
    struct event *sweep_timer;
    struct event *save_timer; /* account.c: gw_accounts_save_changed */
    unsigned vault_logins;            /* login.c: LOGIN requests the vault has not answered */
    gw_job *login_queue, *login_queue_tail; /* ... and logins waiting for a place there */
    bool poll_inflight, poll_no_counts;
    size_t read_site; /* the site scans and polls read from: the first that answers */
    bool status_written;
    bool sites_down;    /* the last poll or scan found no site answering (gateway.status says so) */
    unsigned idle_ticks; /* polls skipped since the last health check (nothing watched) */
    bool stopping;
    int exit_code;
};

uint32_t gw_vault_login(gw_net *net, session *s, const char *address, const uint8_t *record, size_t record_len,
                        const char *pw, size_t pw_len);
void gw_vault_logout(gw_net *net, uint64_t vault_session);
/* OPEN of a message prefix: fn gets the reply (also when the vault connection is lost: then
 * a FAIL reply); 0 if it could not be sent. */
uint32_t gw_vault_open(gw_net *net, uint64_t vault_session, const uint8_t prefix[PC_MSG_PREFIX_BYTES],
                       void (*fn)(void *arg, const vault_reply *r), void *arg);
void gw_vault_forget(gw_net *net, uint32_t id); /* the session of a request is gone */

/* state_dir/gateway.status says which site mailboxes are read from, and since when, or that
 * none answers: a scan or poll that reached `site` reports it (logged when it changed), one
 * that reached none reports why (once per outage). */
void gw_status_site_answered(gw_net *net, size_t site);
void gw_status_sites_down(gw_net *net, const char *why);

/* ---- session.c ---- */
enum gw_timer { GW_T_TIMEOUT, GW_T_FAIL_DELAY, GW_T_CLOSE };

/* peers.c: at most [gateway] max_connections_per_ip sessions per address (a /64 for IPv6).
 * gw_peer_admit counts a session in (false: that address is full); gw_peer_release counts it
 * out. */
bool gw_peer_admit(gw_net *net, const uint8_t ip[VAULT_IP_BYTES]);
void gw_peer_release(gw_net *net, const uint8_t ip[VAULT_IP_BYTES]);
void gw_peers_free(gw_net *net);

struct session {
    enum session_state state;
    gw_net *net;
    session *prev, *next;
    unsigned refs;  /* 1 for the connection, 1 per job in flight */
    bool dead;      /* connection closed; memory freed when refs reach 0 */
    struct bufferevent *bev;
    int fd;
    bool tls;           /* TLS is up (or being negotiated) */
    bool tls_available; /* STARTTLS possible: a plain port and a certificate */
    bool pending;       /* a command finishes asynchronously: input waits */
    bool sasl_wait;     /* AUTHENTICATE waits for the client's response line */
    bool rejecting;     /* over max_connections: greeted with BYE */
    bool output_full;   /* reading paused until the output drains */
    pi_parser *parser;
    char tag[72];       /* the command in progress (pi_limits.max_tag is 64) */
    char cmd_name[PI_NAME_MAX + 1];
    struct event *timer;
    enum gw_timer timer_kind;
    struct event *resume;
    uint8_t ip[VAULT_IP_BYTES];
    bool counted_peer;     /* counted in by gw_peer_admit */
    long long login_by_ms; /* pre-auth deadline (pu_now_ms): no command extends it */
    char peer[64];
    unsigned errors;    /* consecutive BAD commands */
    /* login in progress */
    char *pw;           /* sodium_malloc'd */
    size_t pw_len;
    char address[PC_ADDRESS_MAX + 1];
    uint32_t vault_req;
    /* logged in */
    uint64_t vault_session; /* 0: none */
    gw_account *account;
    /* mailbox */
    struct gw_view *view;   /* selected (mailbox.h) */
    bool scan_wait;         /* SELECT/EXAMINE/STATUS/POP3 login waits for a scan ... */
    uint64_t scan_gen;      /* ... numbered this or later (gw_mbox_scan_wait) */
    bool scan_readonly;     /* ... as EXAMINE */
    bool scan_status;       /* ... as STATUS */
    bool scan_pop3;         /* ... as a POP3 login building its maildrop */
    unsigned status_items;  /* STATUS: which items (imap_cmd_select.c) */
    enum session_state idle_prev; /* IDLE: the state to return to */
    struct gw_fetch *fetch; /* FETCH in progress */
    size_t read_next;       /* where a client reading in order asks next (loader.c) */
    unsigned prefetching;   /* loads ahead of the client's requests in flight (loader.c) */
    struct gw_search *search; /* SEARCH in progress */
    bool idle_done_wait;    /* IDLE: waiting for DONE */
    struct gw_pop3 *pop;    /* a POP3 session (pop3_session.c); NULL for IMAP */
};

void gw_session_accept(gw_net *net, int fd, const struct sockaddr *sa, int salen, bool implicit_tls, bool pop3);
/* Output helpers: the tagged one uses s->tag. Text without CRLF. */
void gw_untagged(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_tagged(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_write(session *s, const void *data, size_t len);
/* The capability flags of s now. */
unsigned gw_session_caps(const session *s);
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
/* "* BYE text" (POP3: "-ERR text") and close once flushed. */
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

/* ---- pop3_session.c ---- */
int gw_pop3_new(session *s);  /* at accept: 0, or -1 out of memory */
void gw_pop3_greet(session *s);
void gw_pop3_process(session *s); /* input arrived or the session may read on */
void gw_pop3_login_finish(session *s, bool ok, const char *no_text);
void gw_pop3_reply_err(session *s, const char *text); /* "-ERR [SYS/TEMP] text" */
void gw_pop3_free(session *s);  /* at close: unlocks the maildrop, deletes nothing */
void gw_pop3_kick(session *s);  /* output drained */
void gw_pop3_scanned(session *s, const char *no_text); /* the maildrop's scan is done */

/* ---- imap_cmd_idle.c: the line that ends IDLE ---- */
gw_result gw_idle_line(session *s, const char *line, size_t len);

/* ---- imap_cmd_authenticate.c: the client's response line after "+ " ---- */
gw_result gw_authenticate_line(session *s, const char *line, size_t len);

/* ---- login.c ---- */
/* Starts a login (LOGIN, AUTHENTICATE). Takes a copy of the password; the caller wipes its
 * own. Returns GW_PENDING, or GW_DONE when the reply is already written. */
gw_result gw_login_start(session *s, const char *user, size_t user_len, const char *pw, size_t pw_len);
/* The end of a login: ok, or a tagged NO with text. Resumes the session. */
void gw_login_finish(session *s, bool ok, const char *no_text);
/* A vault reply for a login request of s (s may be NULL: its session is gone). */
void gw_login_vault_reply(gw_net *net, session *s, const vault_reply *r);
/* Logins in flight at the vault at most; it queues 64 (vault_config.queue_max) and refuses
 * beyond, so more wait in the network process in arrival order. */
#define GW_VAULT_LOGINS_MAX 32
/* Drops the logins still waiting (the process stops). */
void gw_login_queue_free(gw_net *net);

#endif
