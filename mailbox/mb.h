/* mailbox: what the files of the module share; not part of its public face (mailbox.h). */
#ifndef POSTERN_MAILBOX_MB_H
#define POSTERN_MAILBOX_MB_H

#include "mailbox/mailbox.h"

struct event;

/* ---- workers.c ---- */
mb_pool *mb_pool_new(const pn_config *cfg, struct event_base *base, unsigned threads);
/* Runs the queued jobs to the end, joins the threads, calls the remaining done callbacks. */
void mb_pool_free(mb_pool *p);

/* ---- artcache.c: ciphertext articles on local disk (state_dir/articles) ---- */
typedef struct mb_artcache mb_artcache;
/* Creates the directory if needed. NULL with a reason. */
mb_artcache *mb_artcache_open(const char *state_dir, uint64_t max_bytes, unsigned max_age_days, char *err,
                              size_t errlen);
void mb_artcache_close(mb_artcache *c);
/* Worker threads. get: the envelope stored for msgid, if any (it still has to pass the
 * vault and the stream's authentication). put: takes an envelope that did (arrival: the
 * message's, for the age limit) for the cache's writer thread, leaving env empty; the writer
 * sweeps when over the size limit. drop: forgets one that did not. sweep: removes what is
 * past max_age_days, then the oldest over max_bytes. */
bool mb_artcache_get(mb_artcache *c, const char *msgid, pu_buf *out);
void mb_artcache_put(mb_artcache *c, const char *msgid, pu_buf *env, int64_t arrival);
void mb_artcache_drop(mb_artcache *c, const char *msgid);
void mb_artcache_sweep(mb_artcache *c);

/* ---- prune.c: the state of messages gone from every site (a worker, at logout) ---- */
/* Drops the entries of us whose Message-ID is neither among live (n_live articles of the
 * last scan) nor on any configured site (STAT at each). A site that cannot be asked keeps
 * everything. The number of entries dropped, or -1 with err. */
long mb_state_prune(userstate *us, const mb_msg *live, size_t n_live, const pn_config *cfg, char *err,
                    size_t errlen);

/* ---- store.c ---- */
struct mb_store {
    const pn_config *cfg;
    pn_writer_key *writer; /* signs what APPEND posts; NULL: APPEND is refused */
    struct event_base *base;
    mb_hooks hooks;
    mb_pool *pool;
    mb_artcache *artcache; /* NULL: no article cache */
    mb_account *accounts;
    struct mb_saving *saving;   /* account.c: states being written; their next load waits */
    struct mb_unsaved *unsaved; /* account.c: states of gone accounts whose write failed, retried */
    struct event *sweep_timer, *save_timer;
    /* poller.c */
    struct event *poll_timer;
    bool poll_inflight, poll_no_counts;
    unsigned idle_ticks; /* polls skipped since the last health check (nothing watched) */
    size_t read_site;    /* the site scans and polls read from: the first that answers */
    bool status_written;
    bool sites_down; /* the last poll or scan found no site answering (gateway.status says so) */
    bool stopping;
    bool freeing; /* mb_store_free: the vault's replies are gone for good */
    /* loader.c: the plaintext budget */
    uint64_t plain_budget, plain_used;
    struct mb_loading *budget_head, *budget_tail; /* loads waiting for budget, oldest first */
    size_t budget_waiting;
    bool budget_busy; /* budget_release is starting waiting loads */
    /* loader.c: counted for mb_store_get_stats */
    uint64_t articles_from_cache, articles_from_news, messages_decrypted;
};

/* A doubly linked list of waiters (account.c). */
typedef struct mb_waitlist {
    mb_waiter *head, *tail;
} mb_waitlist;
void mb_waitlist_add(mb_waitlist *l, mb_waiter *w);
/* Calls and takes off every waiter (with gen <= up_to): fn(arg, a, no_text). Waiters added
 * by the callbacks are left for the next call. */
void mb_waitlist_wake(mb_waitlist *l, uint64_t up_to, mb_account *a, const char *no_text);

/* ---- replica.c: the account's replicated state ---- */
struct mstate;
struct mb_replica;
/* At account creation (the state key is set) and release (a change not yet posted is posted
 * by a last job of its own). */
int mb_replica_init(mb_account *a);
void mb_replica_free(mb_account *a);
/* What a scan hands over (scan_ctx): the state articles to read, the key to open them, and
 * what it read. */
typedef struct mb_state_fetch {
    char (*want)[PA_MSGID_MAX]; /* state articles not merged yet */
    size_t nwant, capwant;
    char (*seen)[PA_MSGID_MAX];  /* a copy of those merged already, sorted */
    size_t nseen;
    uint8_t *key;                /* sodium_malloc'd copy of the state key */
    struct mstate **opened;      /* ... read and opened */
    size_t nopened;
    uint64_t snapshot_ms;        /* the newest snapshot's writer clock among them */
    bool *done;                  /* want[i] needs no second read (opened, or never will) */
    bool nomem;
} mb_state_fetch;
/* Loop: a scan starts: which state articles it must read besides those its overview shows. */
int mb_replica_fetch_begin(mb_account *a, mb_state_fetch *f);
/* Worker: an overview line of a state article. */
void mb_replica_fetch_note(mb_state_fetch *f, const char *msgid, size_t len);
/* Worker: reads and opens f's articles at site. */
void mb_replica_fetch_run(mb_state_fetch *f, ps_pool *sites, size_t site);
/* Loop, after a scan (ok: it read the group): merges what f read, numbers new mail (or waits
 * for another site to), rebuilds the mailbox's list of messages by UID and brings the user's
 * state up to the merge. Frees f's contents. */
void mb_replica_scanned(mb_account *a, mb_state_fetch *f, bool ok);
/* folders.c's way in: the account's mstate (NULL when it has none), and "a folder changed":
 * the change goes out in the next delta and the watchers hear (the INBOX's list of messages
 * is not rebuilt: folder changes do not touch it). */
struct mstate *mb_replica_state(mb_account *a);
uint64_t mb_replica_now_ms(void); /* wall clock: the state's stamps are hybrid logical clocks */
void mb_replica_changed(mb_account *a);
/* Periodic: posts what could not be posted before. */
void mb_replica_tick(mb_account *a);
/* The local copy of the replicated state (state_dir/users/<hash>.state.mstate, sealed like a
 * snapshot): written with every save of the user's state, read at login, so changes not
 * posted yet (the last ones before a logout, or while no site takes posts) survive. seal:
 * loop, *out malloc'd (NULL: no state). write / read: workers (read: *out NULL when there is
 * no file). restore: loop, at login, before the first scan. */
int mb_replica_seal_local(mb_account *a, uint8_t **out, size_t *len);
int mb_replica_file_write(const pn_config *cfg, const char *address, const uint8_t *state_key,
                          const uint8_t *bytes, size_t len, char *err, size_t errlen);
int mb_replica_file_read(const pn_config *cfg, const char *address, const uint8_t *state_key, uint8_t **out,
                         size_t *len, char *err, size_t errlen);
void mb_replica_restore(mb_account *a, const uint8_t *bytes, size_t len);
/* A reader with vault_session leaves: true if the account keeps that session, because
 * expunged messages still wait for their cancel keys; the account logs it out when they
 * are done. held_vault: that session, or 0. */
bool mb_replica_hold_vault(mb_account *a, uint64_t vault_session);
uint64_t mb_replica_held_vault(const mb_account *a);
/* loader.c, hop 2: the vault opened msgid's prefix; its owner cancel key is kept for an
 * expunge. */
void mb_replica_cancel_key(mb_account *a, const char *msgid, const uint8_t stream_key[PC_STREAM_KEY_BYTES]);
void mb_mbox_index_drop(mb_mbox *m);
/* A message left a folder here (EXPUNGE, MOVE): its article is cancelled on every site unless
 * another folder still holds it. */
void mb_replica_unfiled(mb_account *a, const char *msgid);
/* Local changes to the mstate outside the INBOX go out in the next delta. */
void mb_replica_touch(mb_account *a);

/* ---- folderview.c: the messages of a folder other than the INBOX ---- */
typedef struct mb_fmsg {
    uint32_t uid;
    uint8_t flags;                   /* US_SEEN ... */
    bool expunged;                   /* here, since the last build (dropped at the next) */
    uint64_t modseq;                 /* this site's change number of its flags and keywords */
    uint64_t bytes;                  /* the article's, from the overview */
    uint8_t kw[US_KEYWORD_SET_BYTES]; /* indexes of the user's keyword table */
    uint8_t key[16];                 /* mstate_msgkey */
    char msgid[PA_MSGID_MAX];
} mb_fmsg;
typedef struct mb_flist {
    struct mb_flist *next;
    uint32_t folder, uidvalidity, uidnext;
    uint64_t gen;    /* the account's state_gen it was built at */
    uint64_t modseq; /* the highest change number given out */
    uint64_t gone;   /* bumped by each rebuild that dropped a UID */
    bool built;
    mb_fmsg *m;      /* ascending by UID */
    size_t n;
} mb_flist;
/* The folder's list as the state and the last scan have it now (rebuilt if the account
 * changed); NULL when there is no replicated state or no memory for a first build. */
mb_flist *mb_flist_get(mb_account *a, uint32_t folder);
long mb_flist_find(const mb_flist *fl, uint32_t uid); /* -1: none, or expunged */
size_t mb_flist_count_up_to(const mb_flist *fl, uint32_t uid);
/* A local STORE changed the entry with uid in folder: the list follows without a rebuild. */
void mb_flist_touched(mb_account *a, uint32_t folder, uint32_t uid);
void mb_flists_free(mb_account *a);
/* The keywords of a message's entry in folder as indexes of the user's keyword table (what
 * a session shows; names the table has no room for are left out). */
void mb_state_keywords(mb_account *a, uint32_t folder, const uint8_t key[16], uint8_t kw[US_KEYWORD_SET_BYTES]);
/* Local changes the list follows without a rebuild (an EXPUNGE of 10,000 messages must not
 * rebuild it 10,000 times): message uid expunged; folder's list rebuilt at its next use. */
void mb_flist_expunged(mb_account *a, uint32_t folder, uint32_t uid);
void mb_flist_invalidate(mb_account *a, uint32_t folder);
/* view.c: the folder list's entry of message i of a folder's view, or NULL (gone). */
const mb_fmsg *mb_view_fmsg(const mb_view *v, mb_account *a, size_t i);
/* replica.c: a message was filed in the INBOX again: its list of messages is rebuilt once,
 * when the watchers are next told (mb_account_changed calls relist_due), not per message of
 * a MOVE of thousands. */
void mb_replica_relist(mb_account *a);
void mb_replica_relist_due(mb_account *a);
/* append.c: a message the user appended (its article stored) is filed in folder with its
 * flags and keywords under the folder's next UID (*uid); the INBOX's is also the user's state.
 * An mstate status. */
int mb_replica_append(mb_account *a, uint32_t folder, const char *msgid, unsigned flags, const char *const *keywords,
                      size_t nkeywords, uint32_t *uid);

struct mb_account {
    mb_account *next;
    mb_store *st;
    char address[PC_ADDRESS_MAX + 1];
    unsigned refs;      /* clients holding it, plus a job in flight */
    bool ready;         /* state loaded */
    uint8_t *state_key; /* sodium_malloc'd */
    userstate *us;
    struct mb_replica *rep; /* replica.c */
    mb_mbox *mbox;
    mb_waitlist opening;  /* mb_account_open callers waiting for the state */
    mb_waitlist scanning; /* mb_scan_wait callers */
    mb_watcher *watchers; /* clients with the mailbox open: polled while any */
    unsigned n_watchers;
    mb_reader *readers;
    struct mb_plain *cache;        /* decrypted messages, most recently used first */
    struct mb_plain *cache_tail;   /* ... and the least recently used */
    struct mb_plain **cache_index; /* ... by Message-ID (loader.c) */
    size_t cache_bytes, cache_n;
    bool locked;                   /* mb_account_lock */
    bool writing;                  /* a periodic save of the state is in flight */
    bool save_failed;              /* the last write of the state failed: sessions are told */
    struct mb_loading *loading;    /* loader.c: messages being loaded */
    struct event *deliver;         /* loader.c: finished loads are answered from the loop */
    struct mb_loading *finished;   /* ... these */
    mb_load_waiter *failed;        /* ... and waiters whose load could not even start */
    uint64_t state_gen;            /* bumped by every change the watchers hear of */
    struct mb_flist *flists;       /* folderview.c: the folders' lists, once a view used them */
    bool has_owner_key;            /* append.c: the user's box public key, for APPEND */
    uint8_t key_id[PC_KEYID_BYTES], box_pk[PC_BOX_PK_BYTES];
};

void mb_accounts_save_changed(mb_store *st);
/* Writes the account's state and the replicated state's local copy now, on this thread (at
 * exit, for an account still referenced). */
void mb_account_save_now(mb_account *a);
void mb_accounts_unsaved_free(mb_store *st);
void mb_mbox_free(mb_mbox *m);
/* An article of the group is gone (430 on reading it): rescan the whole group, so the
 * sessions learn it (EXPUNGE) even when the server's counts did not move. */
void mb_mbox_article_gone(mb_account *a);
/* The poller saw the group's numbers: scans when they differ from the last scan's. */
void mb_mbox_poll_result(mb_account *a, uint64_t high, uint64_t low, uint64_t count);
/* loader.c: the loads still waiting for budget end with an error (the process stops): now,
 * or from the loop. flush: answers the finished loads the loop did not (it has ended). */
void mb_budget_drain(mb_store *st, bool now);
void mb_loader_flush(mb_store *st);
/* loader.c: at account creation and release */
int mb_loader_init(mb_account *a);
void mb_loader_free(mb_account *a);
/* The account's cache of decrypted messages: an LRU list (at most 256 messages, 48 MiB) with
 * a hash index. insert takes a reference of its own; lookup makes p the most recent. */
void mb_cache_insert(mb_account *a, mb_plain *p);
mb_plain *mb_cache_lookup(mb_account *a, const char *msgid);

/* ---- poller.c: one LIST ACTIVE for every watched group, and gateway.status ---- */
void mb_poller_start(mb_store *st);
void mb_poller_stop(mb_store *st);
/* state_dir/gateway.status says which site mailboxes are read from, and since when, or that
 * none answers: a scan or poll that reached `site` reports it (logged when it changed), one
 * that reached none reports why (once per outage). */
void mb_status_site_answered(mb_store *st, size_t site);
void mb_status_sites_down(mb_store *st, const char *why);

#endif
