/* mailbox: a user's mail as the news server holds it, for the network process — accounts
 * (the user's state, shared by all their sessions), scans of the user's group, the one
 * poller that watches every open group, decrypted messages (loaded through the worker pool
 * and the vault, kept in a per-account cache) and the article cache on disk.
 *
 * It knows no session and no protocol: IMAP and POP3 are its clients. Everything it reports
 * goes upward through callbacks its clients register — the model is Dovecot's lib-storage
 * (mailbox_notify_changes) and Redis's per-key lists of blocked clients:
 *   - an account's watchers (mb_watch) hear of every change to its mailbox or state;
 *   - a client waiting for the account's state (mb_account_open) or for a scan
 *     (mb_scan_wait) is on that account's list of waiters, never found by walking every
 *     connection;
 *   - a load (mb_load) is keyed per account, shared by every session of the user, and calls
 *     each of its waiters exactly once, failures included, unless the waiter was cancelled.
 * Waiter structs belong to the caller (embedded in its session or command), so reporting a
 * failure never needs memory. docs/design.md, "Mailbox", says why it is shaped this way. */
#ifndef POSTERN_MAILBOX_H
#define POSTERN_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "article/article.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "mime/mime.h"
#include "store/store.h"
#include "userstate/userstate.h"
#include "util/util.h"
#include "vault/vault.h"

struct event_base;
typedef struct mb_store mb_store;
typedef struct mb_account mb_account;

/* ---- workers.c: the worker pool ---- */
/* Blocking work (NNTP to INN, state files) runs on a few threads, each with its own site
 * connections (a store ps_pool is used by one thread at a time), renewed after 120 s so
 * nnrpd's view of the group list never gets older than that. done runs on the loop. */
typedef struct mb_pool mb_pool;

typedef enum mb_job_kind {
    MB_JOB_KEYRECORD,   /* address -> record bytes (status: a ps_status) */
    MB_JOB_STATE_OPEN,  /* address + state_key -> us (status: a us_status) */
    MB_JOB_STATE_SAVE,  /* work() if set, then save us and close it; a failed save keeps us */
    MB_JOB_WORK,        /* runs work(): mailbox scans, article reads, decryption */
} mb_job_kind;

typedef struct mb_job {
    struct mb_job *next;
    mb_job_kind kind;
    void (*done)(struct mb_job *j); /* on the loop, after the job ran; frees the job */
    void *owner;                    /* the submitter's (a login keeps its session here) */
    mb_account *a;                  /* holds a reference */
    char address[PC_ADDRESS_MAX + 1];
    int status;
    char err[256];
    uint8_t record[PC_KEYRECORD_MAX];
    size_t record_len;
    uint8_t *state_key; /* sodium_malloc'd, VAULT_STATE_KEY_BYTES */
    userstate *us;
    uint8_t *replica;   /* the replicated state, sealed, as kept on disk (malloc'd; NULL: none) */
    size_t replica_len;
    /* MB_JOB_WORK (and before an MB_JOB_STATE_SAVE): runs on a worker thread */
    void (*work)(struct mb_job *j, ps_pool *sites, const pn_config *cfg);
    void *ctx;
} mb_job;

/* Queues j: 0, or -1 when the queue is full. */
int mb_pool_submit(mb_pool *p, mb_job *j);
/* Queues an MB_JOB_WORK job: work(ctx) on a worker, then done on the loop (which frees the
 * job). 0, or -1 when out of memory or the queue is full: then nothing is queued. */
int mb_pool_run(mb_pool *p, void (*work)(mb_job *j, ps_pool *sites, const pn_config *cfg), void (*done)(mb_job *j),
                void *ctx);

/* ---- store.c: the process-wide side ---- */
/* What the store needs of the process that hosts it: the vault, which alone opens a
 * message's prefix. vault_open sends OPEN for a logged-in vault session; fn gets the reply
 * (a FAIL reply when the vault connection is lost); it returns 0 if nothing could be sent. */
typedef struct mb_hooks {
    uint32_t (*vault_open)(void *ctx, uint64_t vault_session, const uint8_t prefix[PC_MSG_PREFIX_BYTES],
                           void (*fn)(void *arg, const vault_reply *r), void *arg);
    /* Ends a vault session the mailbox kept after its client left (mb_reader_detach). */
    void (*vault_logout)(void *ctx, uint64_t vault_session);
    void *ctx;
} mb_hooks;

/* The worker pool (threads), the article cache (when configured), the periodic state
 * saves, the cache sweep and the poller, all on base. NULL with a reason. */
mb_store *mb_store_new(const pn_config *cfg, struct event_base *base, unsigned threads, const mb_hooks *hooks,
                       char *err, size_t errlen);
mb_pool *mb_store_pool(mb_store *st);
/* The writer key APPEND signs with (copied; NULL: none, APPEND answers NO [UNAVAILABLE]). */
int mb_store_set_writer(mb_store *st, const pn_writer_key *key);
/* Bytes of decrypted messages held now, and of the [gateway] plaintext_budget (0: none). */
uint64_t mb_store_plaintext_used(const mb_store *st);
/* What the store has counted since it started, and what it knows now (GET /metrics and
 * GET /health of the gateway). Loop thread only. */
typedef struct mb_store_stats {
    uint64_t articles_from_cache; /* sealed articles read from the article cache */
    uint64_t articles_from_news;  /* ... read from a news server */
    uint64_t messages_decrypted;  /* messages opened and decrypted (a per-account cache hit is none) */
    uint64_t plaintext_bytes;     /* decrypted messages held now */
    uint64_t accounts;            /* users with an open account (logged in, or state being saved) */
    size_t read_site;             /* index of the site mailboxes are read from */
    bool site_known;              /* a poll or scan has reached a site (or found none) */
    bool sites_down;              /* the last poll or scan found no site answering */
} mb_store_stats;
void mb_store_get_stats(const mb_store *st, mb_store_stats *out);
/* The process stops: no more polls. Accounts still open are saved as their users leave. */
void mb_store_stopping(mb_store *st);
/* Runs the queued jobs and the last saves; the states that could never be written get one
 * last try, then are logged as lost. Every account must have been released. */
void mb_store_free(mb_store *st);

/* ---- the articles of the user's group on the news server (mbox.c) ---- */
typedef struct mb_msg {
    uint32_t uid;   /* msgs: the message's UID in the replicated state; arts: the article number */
    uint64_t bytes; /* the article's size from the overview (0: unknown) */
    int64_t posted; /* its Date from the overview, Unix seconds (0: unknown) */
    char msgid[PA_MSGID_MAX];
    uint8_t key[16]; /* the message's name in the replicated state (mstate_msgkey) */
} mb_msg;

typedef struct mb_mbox {
    char group[PA_GROUP_MAX + 1];
    uint32_t uidvalidity;  /* the replicated state's (the same at every site); 0 until the first scan */
    uint32_t uidnext;      /* the UIDNEXT to announce */
    size_t site;           /* the site the article numbers belong to */
    mb_msg *msgs;          /* what clients see: the messages with a UID, sorted by UID */
    size_t n, cap;
    mb_msg *arts;          /* the group's mail articles at the last scan, by article number */
    size_t narts, capa;
    uint64_t lines;        /* overview lines of the group read (mail, state and other articles) */
    uint64_t gap;          /* GROUP's count less the overview lines at the last full scan: INN
                              counts a cancelled article until its index is expired */
    uint64_t low, high, count; /* the group's numbers at the last scan */
    bool scanned, scanning, rescan;
    bool force_full; /* the next scan reads the whole group (an article was found missing) */
    uint64_t gone_gen; /* bumped by each scan that may have dropped articles (a full scan) */
    uint64_t scans_started; /* scans are numbered 1, 2, ... */
    uint32_t *by_msgid;     /* mb_mbox_find_msgid's hash index (index + 1; 0: empty), or NULL */
    size_t by_msgid_cap;    /* its slots, a power of two */
} mb_mbox;

/* Index of uid in m->msgs, or -1; and how many articles have a UID up to uid (the index of
 * the first one above it). */
long mb_mbox_find(const mb_mbox *m, uint32_t uid);
size_t mb_mbox_count_up_to(const mb_mbox *m, uint32_t uid);
/* Index of the article with that Message-ID, or -1 (a hash index, built at the first lookup
 * after each scan). */
long mb_mbox_find_msgid(mb_mbox *m, const char *msgid);

/* ---- waiting ---- */
/* A client's place on one of an account's waiter lists: embedded in the client's own
 * struct, zeroed (or never used) before the first wait. */
typedef struct mb_waiter {
    struct mb_waiter *prev, *next;
    struct mb_waitlist *list;
    mb_account *a; /* what it waits for */
    bool queued;
    uint64_t gen; /* scans: the first scan number that satisfies it */
    void (*fn)(void *arg, mb_account *a, const char *no_text);
    void *arg;
} mb_waiter;

/* Takes w off the list it is on, if any: its callback will not be called. */
void mb_waiter_cancel(mb_waiter *w);
/* The same for a waiter of mb_account_open: the reference it was to get is dropped. */
void mb_account_open_cancel(mb_waiter *w);

/* ---- account.c: a user's state and mailbox, shared by all their sessions ---- */
/* The state of the logged-in user address (state_key from the vault): fn(arg, a, NULL) once
 * it is loaded, or fn(arg, NULL, text) with the text of a NO ("[UNAVAILABLE] ..."). fn runs
 * now when the account is at hand (another session has it) or the open fails at once, else
 * from the loop; exactly once, unless mb_account_open_cancel(w) comes first. On success the
 * caller holds one reference, given back with mb_account_release. */
void mb_account_open(mb_store *st, const char *address, const uint8_t state_key[VAULT_STATE_KEY_BYTES],
                     mb_waiter *w, void (*fn)(void *arg, mb_account *a, const char *no_text), void *arg);
/* Drops a reference; the last one saves the state (in a worker) and frees the account. */
void mb_account_release(mb_account *a);
void mb_account_ref(mb_account *a);

const char *mb_account_address(const mb_account *a);
/* The user's flags, keywords and message metadata: read and changed by the clients, who
 * then call mb_account_changed. */
userstate *mb_account_state(mb_account *a);
const mb_mbox *mb_account_mbox(const mb_account *a);
/* The last write of the state failed: clients say so to the user (the changes are kept in
 * memory and written once the disk takes them). */
bool mb_account_save_failed(const mb_account *a);
/* One holder at a time (RFC 1939's maildrop lock): true if the caller got it. */
bool mb_account_lock(mb_account *a);
void mb_account_unlock(mb_account *a);

/* The account's mailbox or state changed (a client stored flags, expunged, a scan found mail
 * or an article gone): every watcher hears, now. */
void mb_account_changed(mb_account *a);

/* A watcher: a client that wants to hear of changes while a mailbox is open (an IMAP session
 * with it selected). A watched account's group is polled; unwatched ones are not. */
typedef struct mb_watcher {
    struct mb_watcher *prev, *next;
    bool on;
    void (*fn)(void *arg);
    void *arg;
} mb_watcher;
void mb_watch(mb_account *a, mb_watcher *w, void (*fn)(void *arg), void *arg);
void mb_unwatch(mb_account *a, mb_watcher *w);

/* ---- replica.c: the user's flags, deletions and UIDs, the same at every site ---- */
/* A client's STORE or EXPUNGE / POP3 DELE+QUIT: applied to the user's state (as
 * userstate_store / userstate_remove, same results) and to the replicated state, whose
 * change is posted to the news server for every other site to merge. */
int mb_state_store(mb_account *a, const char *msgid, enum userstate_op op, unsigned flags, const uint8_t *keywords);
int mb_state_remove(mb_account *a, const char *msgid);

/* ---- folders.c: the user's folders (issue 13), in the replicated state ---- */
/* The INBOX and Sent, Drafts, Trash, Junk, Archive always exist; user folders are created,
 * renamed and deleted here, the same at every site (docs/formats.md 6.4a). Names are as the
 * client sends them (modified UTF-7), '/' between levels. */
#define MB_FOLDER_NAME_MAX 215
typedef enum mb_special { MB_USER = 0, MB_INBOX, MB_SENT, MB_DRAFTS, MB_TRASH, MB_JUNK, MB_ARCHIVE } mb_special;
typedef struct mb_folder {
    uint32_t id;
    char name[MB_FOLDER_NAME_MAX + 1];
    mb_special special;
    bool subscribed;
    uint32_t uidvalidity, uidnext;
    size_t messages, unseen; /* mb_folder_find and mb_folder_counts only, and never for the
                                INBOX: its figures come from the mailbox (mb_mbox) */
} mb_folder;
typedef enum mb_folder_rc {
    MB_FOLDER_OK = 0,
    MB_FOLDER_EXISTS,      /* CREATE / RENAME to a name in use */
    MB_FOLDER_NONEXISTENT, /* no folder of that name */
    MB_FOLDER_FIXED,       /* the INBOX and special-use folders cannot be renamed or deleted */
    MB_FOLDER_BADNAME,     /* empty level, '*' or '%', control characters, too long */
    MB_FOLDER_LIMIT,       /* too many folders */
    MB_FOLDER_NOMEM,
    MB_FOLDER_UNAVAILABLE, /* the account has no replicated state (it could not be set up) */
} mb_folder_rc;
/* Every folder, INBOX and special-use ones first, then user folders sorted by name, without
 * their counts (a LIST needs none); *out malloc'd (free it). */
mb_folder_rc mb_folders(mb_account *a, mb_folder **out, size_t *n);
/* The folder shown under name ("INBOX" in any case), its counts included. */
mb_folder_rc mb_folder_find(mb_account *a, const char *name, mb_folder *out);
/* Fills f->messages and f->unseen (a folder of mb_folders, which leaves them 0). */
mb_folder_rc mb_folder_counts(mb_account *a, mb_folder *f);
/* CREATE (a trailing '/' is dropped; missing superior levels are created too, RFC 9051 6.3.4). */
mb_folder_rc mb_folder_create(mb_account *a, const char *name);
/* DELETE of a user folder: its messages leave it (those in no other folder are cancelled);
 * folders below it stay. */
mb_folder_rc mb_folder_delete(mb_account *a, const char *name);
/* RENAME of a user folder and every folder below it. */
mb_folder_rc mb_folder_rename(mb_account *a, const char *from, const char *to);
mb_folder_rc mb_folder_subscribe(mb_account *a, const char *name, bool on);

/* ---- mbox.c: scans ---- */
/* Starts a scan of the account's group in a worker unless one runs (then one more follows);
 * its end tells the watchers. */
void mb_scan(mb_account *a);
/* w waits for a scan that starts after this call, so that what the caller shows includes
 * every message the news server had when it asked (SELECT right after a delivery sees that
 * delivery): fn(arg, a, NULL) when it ended, fn(arg, a, text) when the mailbox could not be
 * read at all (text for a NO). false (and no wait, no callback) when no scan can start now
 * (server busy). */
bool mb_scan_wait(mb_account *a, mb_waiter *w, void (*fn)(void *arg, mb_account *a, const char *no_text),
                  void *arg);

/* ---- loader.c: decrypted messages ---- */
typedef struct mb_plain {
    struct mb_plain *prev, *next; /* the account's cache, most recent first */
    struct mb_plain *hnext;       /* the cache's hash bucket */
    unsigned refs;
    char msgid[PA_MSGID_MAX];
    char *data; /* the message with CRLF line ends, as IMAP serves it */
    size_t len;
    mime_message *mime; /* NULL unless a loader asked for it (mb_load's mime) */
    pc_msg_meta meta;
    mb_store *st;    /* whose plaintext budget it is charged to (NULL: none) */
    uint64_t charge; /* ... this much */
} mb_plain;

void mb_plain_unref(mb_plain *p);

/* A client that reads messages: one per session, attached to the session's account. It
 * lends the loads its vault session (which opens message prefixes) and is counted for
 * read-ahead: a client that reads message after message in order has the next few loaded
 * ahead, so the three hops of a load overlap instead of adding up. */
typedef struct mb_reader {
    struct mb_reader *prev, *next; /* the account's readers */
    mb_account *a;
    uint64_t vault_session;
    size_t read_next;     /* where a client reading in order asks next */
    unsigned prefetching; /* loads ahead of its requests in flight */
} mb_reader;
/* r (zeroed) reads a's messages with vault_session. */
void mb_reader_attach(mb_reader *r, mb_account *a, uint64_t vault_session);
/* r is done: the loads it started go on with another reader's vault session, or fail. True
 * when the account keeps r's vault session (an expunged message still needs the vault to be
 * cancelled): the caller must not log it out; the mailbox does, through the hooks. */
bool mb_reader_detach(mb_reader *r);

/* A load's callback: p (one reference, mb_plain_unref) or NULL with err. err is mb_load_junk
 * when the article can never open for this user: it has been removed from the mailbox. */
typedef void (*mb_load_fn)(void *arg, mb_plain *p, const char *err);
extern const char mb_load_junk[];
typedef struct mb_load_waiter {
    struct mb_load_waiter *next;
    struct mb_loading *load; /* NULL when not waiting */
    mb_account *a;
    bool failed; /* on the account's list of waiters answered "out of memory" */
    mb_load_fn cb;
    void *arg;
    bool mime; /* wants the MIME structure */
} mb_load_waiter;

/* Loads a message: from the cache, or the article from the news server in a worker, the
 * vault opens its prefix, a worker decrypts and parses. A load of the same message already
 * in flight for the account is joined. cb runs from the loop, never from inside mb_load,
 * exactly once unless mb_load_cancel(w) comes first. mime: p->mime is set. */
void mb_load(mb_reader *r, const char *msgid, bool mime, mb_load_waiter *w, mb_load_fn cb, void *arg);
void mb_load_cancel(mb_load_waiter *w);
/* A client read messages first..last (indexes into its own numbering of n messages) in this
 * order: if it reads in order, the next few are loaded ahead. msgid_at(ctx, i): the
 * Message-ID of message i, or NULL. */
void mb_read_ahead(mb_reader *r, size_t first, size_t last, size_t n, const char *(*msgid_at)(void *ctx, size_t i),
                   void *ctx);

/* ---- walk.c: a command's messages in order (FETCH, SEARCH, a POP3 maildrop) ---- */
/* A few loads at a time; each() gets the messages strictly in order. */
typedef struct mb_walk mb_walk;
typedef struct mb_walk_ops {
    const char *(*msgid)(void *ctx, size_t k); /* NULL: gone from the server, skipped */
    bool (*need)(void *ctx, size_t k);         /* needs the plaintext (false: each(k, NULL)) */
    void (*each)(void *ctx, size_t k, mb_plain *p);
    void (*done)(void *ctx, unsigned failed); /* loads that failed (each() was not called) */
    /* true: stop issuing loads until mb_walk_step (a client that does not read its output) */
    bool (*paused)(void *ctx);
} mb_walk_ops;
mb_walk *mb_walk_new(mb_reader *r, size_t n, bool mime, const mb_walk_ops *ops, void *ctx);
void mb_walk_step(mb_walk *w);
void mb_walk_free(mb_walk *w); /* loads in flight are cancelled: no callback */

/* ---- view.c: one client's numbering of the mailbox ---- */
/* A run of consecutive UIDs: lo is sequence number before + 1. */
typedef struct mb_uid_run {
    uint32_t lo, hi;
    size_t before; /* messages in the runs before this one */
} mb_uid_run;
typedef struct mb_uid_range {
    uint32_t lo, hi;
} mb_uid_range;

/* Sequence numbers are the client's: a message that vanished keeps its number until the
 * client may be told (mb_view_sync with expunges), new ones are numbered once announced. */
#define MB_INBOX_ID 0u /* mb_folder.id of the INBOX */
typedef struct mb_view {
    uint32_t folder;       /* mb_folder.id: MB_INBOX_ID, or a folder of the replicated state */
    bool readonly;         /* claims no \Recent for later views */
    uint32_t uidvalidity;
    mb_uid_run *runs;      /* ascending */
    size_t nruns, runs_cap;
    size_t n;              /* messages */
    uint64_t modseq_seen;  /* flag changes up to here were reported */
    uint64_t expunge_modseq, expunge_gone; /* the state's modseq and the mailbox's gone_gen at the
                                              last look for vanished messages */
    bool expunge_retry;    /* that look ran out of memory */
    uint64_t highestmodseq; /* the highest HIGHESTMODSEQ this view reported (it never goes down) */
    mb_uid_range *recent;  /* UIDs that are \Recent in this view (ascending) */
    size_t nrecent, recent_cap;
} mb_view;

/* v: the folder (MB_INBOX_ID: the account's mailbox as scanned, without what the state
 * removed; the new UIDs above the user's \Recent mark become this view's \Recent and,
 * read-write, the mark moves; another folder: its entries in the replicated state whose
 * articles this site holds, none \Recent). 0, or -1 when out of memory. */
int mb_view_open(mb_view *v, mb_account *a, uint32_t folder, bool readonly);
void mb_view_free(mb_view *v);
uint32_t mb_view_uid(const mb_view *v, size_t i); /* of message i (sequence number i + 1) */
uint32_t mb_view_last_uid(const mb_view *v);      /* 0 if empty */
size_t mb_view_count_up_to(const mb_view *v, uint32_t uid); /* messages with a UID up to uid */
bool mb_view_recent(const mb_view *v, size_t i);
size_t mb_view_count_recent(const mb_view *v);
const char *mb_view_msgid(const mb_view *v, mb_account *a, size_t i); /* NULL: gone from the server */
uint64_t mb_view_uidnext(const mb_view *v, mb_account *a);
/* What a sync found, in the order a client must be told. */
typedef struct mb_view_sink {
    /* seq: numbered as it is at that moment; uid: its UID (QRESYNC's VANISHED) */
    void (*expunge)(void *ctx, size_t seq, uint32_t uid);
    void (*exists)(void *ctx, size_t n, size_t recent);
    void (*flags)(void *ctx, size_t i, const userstate_msg *m); /* changed since the last sync */
} mb_view_sink;
/* Brings v up to the mailbox: vanished messages (only when expunges: not during FETCH, STORE
 * or SEARCH, RFC 3501 7.4.1), then new ones, then flag changes. -1 when the mailbox was
 * renumbered (its UIDVALIDITY changed: the client must start over); else 0. */
int mb_view_sync(mb_view *v, mb_account *a, bool expunges, const mb_view_sink *sink, void *ctx);

/* ---- filing.c: what a client does to the messages of its view ---- */
/* The state of message i (zeroed if none): flags and keywords of its entry in the view's
 * folder; the INBOX's metadata cache (has_meta) when the INBOX holds it too. */
void mb_view_state(const mb_view *v, mb_account *a, size_t i, userstate_msg *out);
/* The change number flag changes of the view's folder have reached (a view that stored
 * flags itself sets its modseq_seen to it, so it does not hear its own change again). */
uint64_t mb_view_modseq(const mb_view *v, mb_account *a);
/* CONDSTORE (RFC 7162; docs/design.md "CONDSTORE"). The MODSEQ of message i: the replicated
 * state's stamp of the last change of its entry in the view's folder, so the same at every
 * site (1 when the state has no entry). HIGHESTMODSEQ of a folder: the highest over its
 * entries, live and expunged, never 0; a view's never goes down while it is open. The margin:
 * seconds in MODSEQ's scale, to take off a client's CHANGEDSINCE or MODSEQ search. */
uint64_t mb_view_msg_modseq(const mb_view *v, mb_account *a, size_t i);
uint64_t mb_view_highestmodseq(mb_view *v, mb_account *a);
uint64_t mb_folder_highestmodseq(mb_account *a, uint32_t folder);
uint64_t mb_modseq_margin(unsigned seconds);
/* STORE on message i, as userstate_store (a US_* status); also in the replicated state. */
int mb_view_store(const mb_view *v, mb_account *a, size_t i, enum userstate_op op, unsigned flags,
                  const uint8_t *keywords);
/* EXPUNGE of message i from the view's folder (a US_* status); its article is cancelled on
 * every site when no other folder holds the message. */
int mb_view_expunge(const mb_view *v, mb_account *a, size_t i);
/* COPY of message i into folder to (its flags and keywords go along): *uid its UID there
 * (0 when the message was gone meanwhile: nothing copied, MB_FOLDER_OK). A message to holds
 * already keeps its UID there. Never a re-upload: a membership in the replicated state. */
mb_folder_rc mb_view_copy(const mb_view *v, mb_account *a, size_t i, uint32_t to, uint32_t *uid);

/* ---- the article cache (artcache.c) and the state's pruning (prune.c) are internal ---- */

/* ---- append.c: APPEND, a message the user files in a folder (issue 13) ---- */
/* The user's own box public key, from the key record the vault unlocked at login: APPEND
 * seals to it. Not a secret; every login sets it again. */
void mb_account_set_owner_key(mb_account *a, const uint8_t key_id[PC_KEYID_BYTES],
                              const uint8_t box_pk[PC_BOX_PK_BYTES]);
#define MB_APPEND_KEYWORDS_MAX 64 /* keywords kept per message */
typedef enum mb_append_rc {
    MB_APPEND_OK = 0,
    MB_APPEND_TOOBIG,      /* larger than max_message_size */
    MB_APPEND_NONEXISTENT, /* no such folder (TRYCREATE) */
    MB_APPEND_UNAVAILABLE, /* fewer than min_copies sites show it, no key or state, server busy */
    MB_APPEND_NOMEM,
} mb_append_rc;
typedef struct mb_append_msg {
    const void *data; /* the message as the client sent it; copied */
    size_t len;
    unsigned flags;   /* US_SEEN .. US_DRAFT */
    const char *const *keywords; /* copied */
    size_t nkeywords;
    bool has_date;    /* else now */
    int64_t date;     /* Unix seconds: the internal date, sealed as the arrival */
    int tz_minutes;
} mb_append_msg;
typedef struct mb_append_waiter {
    struct mb_appending *job;
} mb_append_waiter;
/* rc, the folder's UIDVALIDITY and the UIDs of the n messages (MB_APPEND_OK), or why (text
 * for a NO, with its response code). */
typedef void (*mb_append_fn)(void *arg, mb_append_rc rc, uint32_t uidvalidity, const uint32_t *uids, size_t n,
                             const char *why);
/* Seals each message to the user's own key in the article format of delivered mail
 * (docs/formats.md 3), posts it to the user's group until min_copies sites show it (a
 * worker), then on the loop files it in folder with its flags under the folder's next UID
 * (the replicated state's change goes out as a delta) and waits for a scan that lists the
 * new articles, so clients see them at once. All or none: a MULTIAPPEND that cannot store
 * every message files none and takes back what it posted. MB_APPEND_OK: fn runs exactly
 * once, from the loop, unless mb_append_cancel(w) comes first (the messages are filed all
 * the same if they were stored). Any other value: refused now, fn never runs. */
mb_append_rc mb_append(mb_account *a, uint32_t folder, const mb_append_msg *msgs, size_t n, mb_append_waiter *w,
                       mb_append_fn fn, void *arg);
void mb_append_cancel(mb_append_waiter *w);

#endif
