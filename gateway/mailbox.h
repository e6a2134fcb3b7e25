/* gateway: the mailbox side of the network process — what the news server holds for a user
 * (gw_mbox, one per account), what one session sees of it (gw_view: its own sequence
 * numbers), decrypted messages (gw_plain, loaded through the worker pool and the vault, kept
 * in a small per-account cache) and the one poller that watches every open group.
 * docs/design.md, "Mailbox", says why it is shaped this way. */
#ifndef POSTERN_GATEWAY_MAILBOX_H
#define POSTERN_GATEWAY_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "article/article.h"
#include "gateway/session.h"
#include "mime/mime.h"
#include "store/store.h"

/* ---- mbox.c: the articles of the user's group on the news server ---- */
typedef struct gw_msg {
    uint32_t uid; /* the site's article number */
    char msgid[PA_MSGID_MAX];
} gw_msg;

typedef struct gw_mbox {
    char group[PA_GROUP_MAX + 1];
    uint32_t uidvalidity;  /* 0 until the first scan */
    size_t site;           /* the site the article numbers belong to */
    gw_msg *msgs;          /* sorted by uid */
    size_t n, cap;
    uint64_t low, high, count; /* the group's numbers at the last scan */
    bool scanned, scanning, rescan;
    bool force_full; /* the next scan reads the whole group (an article was found missing) */
    uint64_t gone_gen; /* bumped by each scan that may have dropped articles (a full scan) */
    uint64_t scans_started; /* scans are numbered 1, 2, ... */
} gw_mbox;

/* Starts a scan of the account's group in a worker unless one runs (then one more follows).
 * When it ends, every session of the account that waits for it (s->scan_wait) is resumed
 * through gw_view_scanned and every selected session learns the news (gw_view_changed). */
void gw_mbox_scan(gw_account *a);
/* s waits (s->scan_wait) for a scan that starts after this call, so that what it shows
 * includes every message the news server had when it asked: SELECT right after a delivery
 * sees that delivery. gw_select_scanned resumes it. false (and no wait) when no scan can
 * start now (server busy). */
bool gw_mbox_scan_wait(session *s);
/* An article of the group is gone (430 on reading it): rescan the whole group, so the
 * sessions learn it (EXPUNGE) even when the server's counts did not move. */
void gw_mbox_article_gone(gw_account *a);
/* The poller saw the group's numbers: scans when they differ from the last scan's. */
void gw_mbox_poll_result(gw_account *a, uint64_t high, uint64_t low, uint64_t count);
/* Index of uid in mbox->msgs, or -1; and how many articles have a UID up to uid (the index
 * of the first one above it). */
long gw_mbox_find(const gw_mbox *m, uint32_t uid);
size_t gw_mbox_count_up_to(const gw_mbox *m, uint32_t uid);
void gw_mbox_free(gw_mbox *m);

/* ---- prune.c: the state of messages gone from every site (a worker, at logout) ---- */
/* Drops the entries of us whose Message-ID is neither among live (n_live articles of the
 * last scan) nor on any configured site (STAT at each). A site that cannot be asked keeps
 * everything. The number of entries dropped, or -1 with err. */
long gw_state_prune(userstate *us, const gw_msg *live, size_t n_live, const pn_config *cfg, char *err,
                    size_t errlen);

/* ---- poller.c: one LIST ACTIVE for every group with a selected session ---- */
void gw_poller_start(gw_net *net);
void gw_poller_stop(gw_net *net);

/* ---- view.c: one session's numbering of the mailbox ---- */
/* A run of consecutive UIDs: INN numbers a group's articles one after another, so a view of
 * thousands of messages is a few runs (gaps come from expunges, cancels and expiry), and ten
 * thousand idling sessions do not hold ten thousand copies of the numbers. */
typedef struct gw_uid_run {
    uint32_t lo, hi;
    size_t before; /* messages in the runs before this one: lo is sequence number before + 1 */
} gw_uid_run;

typedef struct gw_view {
    bool readonly;
    bool empty_folder; /* Sent, Drafts, Trash: nothing stored there yet */
    uint32_t uidvalidity;
    gw_uid_run *runs; /* ascending */
    size_t nruns, runs_cap;
    size_t n; /* messages */
    uint64_t modseq_seen;       /* flag changes up to here were reported */
    uint64_t expunge_modseq, expunge_gone; /* the state's modseq and the mbox's gone_gen at
                                               the last look for vanished messages */
    bool expunge_retry;                    /* that look ran out of memory */
    pi_seqset recent;              /* UIDs shown as \Recent in this session (ascending) */
    size_t recent_cap;
    uint64_t keywords_gen;         /* the keyword table's generation at the last FLAGS sent */
} gw_view;

/* SELECT/EXAMINE once the first scan is there: builds s->view, writes the untagged replies. */
int gw_view_open(session *s, bool readonly);
void gw_view_close(session *s);
/* Reports changes to the client: new messages (EXISTS, RECENT), flag changes by others
 * (FETCH FLAGS) and, when expunges are allowed (not during FETCH, STORE, SEARCH: RFC 3501
 * 7.4.1), messages removed by others or expired (EXPUNGE). */
void gw_view_sync(session *s, bool expunges);
/* Sends FLAGS and PERMANENTFLAGS again when the user's keywords changed since the session
 * last heard them: call before any response that may show a keyword (RFC 3501 7.2.6). */
void gw_view_announce_flags(session *s);
/* Called when the account's mailbox or state changed: an idling session hears at once. */
void gw_view_changed(gw_account *a);
/* The UID of message i (sequence number i + 1), and the highest UID (0 if empty). */
uint32_t gw_view_uid(const gw_view *v, size_t i);
uint32_t gw_view_last_uid(const gw_view *v);
/* The state of message i of the view (zeroed if the state has no entry). */
void gw_view_state(session *s, size_t i, userstate_msg *out);
const char *gw_view_msgid(session *s, size_t i); /* NULL if the message is gone from the server */
bool gw_view_recent(const session *s, size_t i);
/* Resolves a sequence set or UID set argument to view indexes (ascending). Returns 0, or -1
 * with *err (static text for a BAD). UIDs not in the view are skipped silently. */
int gw_view_resolve(session *s, const pi_arg *arg, bool uid, size_t **idx, size_t *n, const char **err);
/* "(\Seen \Flagged kw)" of a message. */
int gw_write_flags(pu_buf *b, session *s, const userstate_msg *m, bool recent);
/* Marks a message \Seen (a non-PEEK body fetch) unless read-only; true if it changed. */
bool gw_view_mark_seen(session *s, size_t i);

/* ---- artcache.c: ciphertext articles on local disk (state_dir/articles) ---- */
typedef struct gw_artcache gw_artcache;
/* Creates the directory if needed. NULL with a reason. */
gw_artcache *gw_artcache_open(const char *state_dir, uint64_t max_bytes, unsigned max_age_days, char *err,
                              size_t errlen);
void gw_artcache_close(gw_artcache *c);
/* Worker threads. get: the envelope stored for msgid, if any (it still has to pass the
 * vault and the stream's authentication). put: takes an envelope that did (arrival: the
 * message's, for the age limit) for the cache's writer thread, leaving env empty; the writer
 * sweeps when over the size limit. drop: forgets one that did not. sweep: removes what is
 * past max_age_days, then the oldest over max_bytes. */
bool gw_artcache_get(gw_artcache *c, const char *msgid, pu_buf *out);
void gw_artcache_put(gw_artcache *c, const char *msgid, pu_buf *env, int64_t arrival);
void gw_artcache_drop(gw_artcache *c, const char *msgid);
void gw_artcache_sweep(gw_artcache *c);

/* ---- loader.c: decrypted messages ---- */
typedef struct gw_plain {
    struct gw_plain *prev, *next; /* the account's cache, most recent first */
    struct gw_plain *hnext;       /* the cache's hash bucket */
    unsigned refs;
    char msgid[PA_MSGID_MAX];
    char *data; /* the message with CRLF line ends, as IMAP serves it */
    size_t len;
    mime_message *mime; /* NULL unless a loader asked for it (gw_load's mime) */
    pc_msg_meta meta;
} gw_plain;

/* Loads a message (from the cache, or: article from the news server in a worker, the vault
 * opens its prefix, a worker decrypts and parses). cb runs on the loop, never from inside
 * gw_load; p is NULL with err on failure. The callback owns one reference (gw_plain_unref).
 * s must stay referenced: gw_load takes its own reference and the callback is not made if s
 * died meanwhile (the reference is simply dropped). */
/* err is gw_load_junk when the article is not this user's mail at all (not a postern envelope,
 * sealed to another key, a copy re-posted under another Message-ID, tampered with): it is then
 * removed from the user's mailbox, logged, and to be skipped, not reported as a failure. */
extern const char gw_load_junk[];
typedef void (*gw_load_fn)(void *arg, gw_plain *p, const char *err);
void gw_load(session *s, const char *msgid, bool mime, gw_load_fn cb, void *arg);
void gw_plain_unref(gw_account *a, gw_plain *p);
/* A client asked for messages first..last of its n (its own numbering: view indexes, the
 * POP3 maildrop). When first follows what it asked for last, it reads in order (mbsync,
 * fetchmail, POP3 RETR): the next few messages start loading, and its later gw_load joins
 * them. msgid_at gives message i's Message-ID, or NULL for one gone. */
void gw_read_ahead(session *s, size_t first, size_t last, size_t n, const char *(*msgid_at)(void *ctx, size_t i),
                   void *ctx);
void gw_cache_free(gw_account *a); /* wipes every cached message */

/* A command's messages 0..n-1, loaded a few at a time and handed to each() strictly in
 * order: with the plaintext when need() said so, else with NULL. A message gone from the
 * server when its turn came (msgid() NULL) is skipped, also if it is back by the time
 * each() would run; a failed load is skipped and counted; done() comes last
 * and may free the walk. New loads wait while more than output_pause bytes (0: no limit)
 * are queued for the client; gw_walk_step() goes on, also as the output drains. */
typedef struct gw_walk gw_walk;
typedef struct gw_walk_ops {
    const char *(*msgid)(void *ctx, size_t k);
    bool (*need)(void *ctx, size_t k);
    void (*each)(void *ctx, size_t k, gw_plain *p);
    void (*done)(void *ctx, unsigned failed);
} gw_walk_ops;
gw_walk *gw_walk_new(session *s, size_t n, size_t output_pause, bool mime, const gw_walk_ops *ops, void *ctx);
void gw_walk_step(gw_walk *w);
void gw_walk_free(gw_walk *w); /* loads in flight see a dead session and never call back */

/* ---- command state shared by FETCH and SEARCH: one asynchronous job per session ---- */
void gw_fetch_kick(session *s); /* output drained: a waiting FETCH goes on */
void gw_fetch_abort(session *s); /* the session closes */
void gw_search_abort(session *s);

#endif
