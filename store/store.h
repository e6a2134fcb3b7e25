/* store: a user's mailbox as it lives on the news servers. Connects to configured sites,
 * finds and verifies key records, posts envelopes streamed from a ciphertext file, and reads
 * messages back, decrypting as the article streams in. Used by deliver, the admin commands
 * and the gateway. store is the one owner of the connections to the sites and of their policy
 * (which site, a retry on a fresh connection, timeouts, remembered failures, INN 2.7's quirks):
 * callers ask for a verb on a ps_pool and never speak NNTP themselves. */
#ifndef POSTERN_STORE_H
#define POSTERN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "article/article.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "util/util.h"

enum ps_status {
    PS_OK = 0,
    PS_NOUSER,     /* no key group, or no valid key record in it */
    PS_TEMP,       /* news server unreachable or refused for now */
    PS_FAIL,       /* permanent failure (see the message) */
    PS_DUP,        /* article already on the server */
    PS_NOENT,      /* no such article */
    PS_BADMSG,     /* article is not a postern envelope, or does not decrypt */
};

/* Remembers sites that did not answer within their connect_timeout in state_dir/site-health
 * too, so other processes of the host skip them as well (health.c); without it, per process. */
void ps_health_use(const char *state_dir);

/* ---- connections: a pool, at most one connection per configured site ----
 * Connections open lazily, on the first verb that needs one, within the site's
 * connect_timeout; a site that timed out recently is not tried (health.c). A verb that fails
 * on a kept connection (the server may have closed it while idle, or nnrpd's view of a group
 * list or a group is the one it had when it started) is tried once more on a new connection;
 * a failure on a connection opened for the verb is the answer. A pool is used by one thread at
 * a time. */
typedef struct ps_pool ps_pool;

/* Where a verb runs: a site index (that site only), PS_ANY_SITE (a connection already open,
 * sticking to a site after a failover, else the first site that answers, in configured order)
 * or PS_PREFER(i) (site i if it answers, else as PS_ANY_SITE). Article numbers are per site:
 * what reads by number names the site that gave them. */
#define PS_ANY_SITE SIZE_MAX
#define PS_PREFER_BASE (SIZE_MAX / 2)
#define PS_PREFER(site) (PS_PREFER_BASE + (site))

/* max_age_s: a kept connection older than this is renewed before use (0: kept for the pool's
 * life), so nnrpd's view of the group list never gets older than that. */
ps_pool *ps_pool_new(const pn_config *cfg, unsigned max_age_s);
void ps_pool_free(ps_pool *p); /* closes the connections */
/* Called each time a PS_ANY_SITE/PS_PREFER choice had to connect in configured order: status
 * PS_OK with the site reached, or the failure with every site's reason in err. Lets the
 * gateway say where mail comes from now. */
void ps_pool_on_connect_any(ps_pool *p, void (*fn)(void *arg, int status, size_t site, const char *err),
                            void *arg);
/* Connects now (if not yet connected): for commands that report an unreachable news server
 * before they start. */
int ps_pool_connect(ps_pool *p, size_t where, char *err, size_t errlen);
/* The site the last verb (or ps_pool_connect) ran at. */
size_t ps_pool_site(const ps_pool *p);
/* Closes the site's connection (PS_ANY_SITE: all): the next verb asks a new one, e.g. to
 * confirm a suspicious answer. */
void ps_pool_drop(ps_pool *p, size_t site);
/* A thread that used pools calls this before it ends (frees the TLS library's thread state). */
void ps_thread_done(void);

/* ---- verbs ----
 * err gets a one-line reason on failure: the connection error, or the server's answer. */

typedef struct ps_group_info {
    uint64_t count, low, high;
} ps_group_info;
/* GROUP: PS_OK, PS_NOENT (no such group), PS_TEMP. nnrpd never notices articles arriving in a
 * group that was empty when it first looked at it: after an empty answer the connection is
 * closed, so the next look is a new one's. */
int ps_group(ps_pool *p, size_t where, const char *group, ps_group_info *info, char *err, size_t errlen);

/* The line callback of the multi-line verbs: each line without its CRLF, NUL-terminated and
 * valid during the call; non-zero stops the transfer (the verb still returns PS_OK). A verb
 * is retried on a new connection only before its first line: fn never sees a line twice. */
typedef int (*ps_line_fn)(void *arg, const char *line, size_t len);

/* OVER range (e.g. "1-" or "5-9") of group at one site (GROUP first unless that connection
 * has it selected): fn gets each raw tab-separated overview line. PS_NOENT: no articles in
 * the range, or no such group. */
int ps_over(ps_pool *p, size_t site, const char *group, const char *range, ps_line_fn fn, void *arg, char *err,
            size_t errlen);
/* LISTGROUP group: fn gets each article number as text. PS_NOENT: no such group. */
int ps_listgroup(ps_pool *p, size_t where, const char *group, ps_line_fn fn, void *arg, char *err,
                 size_t errlen);
/* LIST ACTIVE wildmat: fn gets "group high low flag". Then, when counts_fn is not NULL, LIST
 * COUNTS wildmat on the same connection (the numbers of one nnrpd): counts_fn gets "group high
 * low count flag"; a server that refuses it for good (not INN) sets *no_counts, with its
 * answer in err, and the verb still succeeds. When a listed group is empty, the connection is
 * closed afterwards (see ps_group). */
int ps_list_active(ps_pool *p, size_t where, const char *wildmat, ps_line_fn fn, ps_line_fn counts_fn, void *arg,
                   int *no_counts, char *err, size_t errlen);
/* LIST COUNTS wildmat (INN) alone: fn gets "group high low count flag". PS_FAIL when the
 * server refuses it for good (not INN: err has its answer), PS_TEMP else. */
int ps_list_counts(ps_pool *p, size_t where, const char *wildmat, ps_line_fn fn, void *arg, char *err,
                   size_t errlen);
/* STAT <message-id>: PS_OK (223), PS_NOENT (430), PS_TEMP with err "STAT <id>: answer". nnrpd
 * caches negative lookups per connection: what must not miss an article that just arrived
 * asks on a new connection (ps_pool_drop, or ps_await_shown). */
int ps_stat(ps_pool *p, size_t where, const char *msgid, char *err, size_t errlen);
/* DATE: does the site still answer? PS_OK, or PS_TEMP with err "site NAME: answer". */
int ps_ping(ps_pool *p, size_t where, char *err, size_t errlen);

/* The valid key record with the highest serial in the address's key group, verified against
 * the configured authority keys. msgid (may be NULL, PA_MSGID_MAX bytes) gets its Message-ID.
 * PS_NOUSER when the group is missing or holds no valid record (err says which); a kept
 * connection's PS_NOUSER is asked again on a new one (a new user's group). */
int ps_fetch_keyrecord(ps_pool *p, size_t where, const char *address, pc_keyrecord *rec, char *msgid, char *err,
                       size_t errlen);

/* One article posted to a site, until the site shows it. */
typedef struct ps_copy {
    const char *msgid;
    int duplicate; /* the POST was answered "duplicate" (the site's history has the ID) */
    int shown;     /* set by ps_await_shown once STAT finds it */
} ps_copy;

/* Waits until the site shows every copy (STAT 223), for up to timeout_s seconds. A 240 or a
 * "duplicate" answer proves nothing on INN (nnrpd answers 240 for what it parks; 435 comes
 * while a peer's feed still carries the article), and nnrpd caches negative history lookups
 * per connection, so each round asks on a new connection, after a short growing pause.
 * Returns how many are still not shown; last (may be NULL) gets the last answer or
 * connection error. */
size_t ps_await_shown(const pn_site *site, unsigned timeout_s, ps_copy *copies, size_t n, char *last,
                      size_t lastlen);

/* Posts an article at one site: the header block (CRLF lines, ending with an empty line), then
 * the binary prefix followed by the binary contents of fd from offset 0 to len, in base64
 * lines. PS_OK on 240, PS_DUP when the server already has the Message-ID, PS_TEMP/PS_FAIL
 * else. Neither answer means the site holds it: see ps_store_copy. */
int ps_post(ps_pool *p, size_t site, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
            uint64_t len, char *err, size_t errlen);
/* Posts as ps_post and counts it only once the site shows msgid (STAT 223), waiting up to
 * confirm_timeout seconds (ps_await_shown): PS_OK shown; PS_NOENT the site took it and does
 * not show it (err says so: not a copy); else the failure. fed: another site holds it
 * already, so a peer's feed may have brought it: asked first, and not posted if shown. */
int ps_store_copy(ps_pool *p, size_t site, const char *headers, const char *msgid, const uint8_t *prefix,
                  size_t prefix_len, int fd, uint64_t len, unsigned confirm_timeout, bool fed, char *err,
                  size_t errlen);

/* A mail article posted as ps_store_copy does, to the sites in configured order from site
 * first on, until the configured min_copies of them show it (the later ones are asked
 * first whether a peer's feed brought it): how many sites show it. names gets their names
 * ("a, b"), failures the others' reasons ("c: why; d: why"); both may be NULL. The one rule
 * for "stored", shared by delivery and the gateway's APPEND. */
unsigned ps_store_copies(ps_pool *p, size_t first, const char *headers, const char *msgid, const uint8_t *prefix,
                         size_t prefix_len, int fd, uint64_t len, char *names, size_t nameslen, char *failures,
                         size_t failureslen);

/* Reads one mail article and decrypts it: the raw message goes to sink. By <message-id>, or
 * by number in group (NULL for a message-id) at one site. Stops early without error when
 * sink returns PS_STOP_EARLY (e.g. after the headers). */
#define PS_STOP_EARLY 1000
int ps_read_message(ps_pool *p, size_t where, const char *group, const char *id_or_number,
                    const uint8_t box_pk[PC_BOX_PK_BYTES], const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta,
                    pc_sink_fn sink, void *arg, char *err, size_t errlen);

/* The gateway's split read (its vault holds the private key, docs/design.md "Vault protocol"):
 * ps_read_envelope reads one mail article by <message-id> and appends its binary envelope
 * (prefix, then chunks) to out (emptied first); got gets the article's Message-ID, and
 * cancel_lock (may be NULL) its Cancel-Lock value ("" if none). PS_NOENT, PS_TEMP, PS_BADMSG
 * (not a postern message). These reads take a 430 from a kept connection as stale and ask a
 * new one (nnrpd keeps the history file it opened, expire replaces it). */
int ps_read_envelope(ps_pool *p, size_t where, const char *msgid, pu_buf *out, char got[PA_MSGID_MAX],
                     char cancel_lock[PA_CANCEL_LOCK_MAX], char *err,
                     size_t errlen);
/* The same for any postern article of that Postern-Format ("state 1", "keyrecord 1"): its
 * binary body, exactly as posted (repair copies it). */
int ps_read_armored(ps_pool *p, size_t where, const char *msgid, const char *format, pu_buf *out,
                    char got[PA_MSGID_MAX], char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen);
/* Reads one replicated-state article (Postern-Format "state 1") by <message-id>: its sealed
 * bytes go to out (emptied first), still to be opened with the user's state key (mstate).
 * PS_NOENT, PS_TEMP, PS_BADMSG. */
int ps_read_state(ps_pool *p, size_t where, const char *msgid, pu_buf *out, char *err, size_t errlen);
/* Decrypts an envelope with the stream key the vault returned for its prefix (meta as the vault
 * returned it); the raw message goes to sink. Checks that the sealed tag matches msgid (a
 * re-posted copy is refused), and the writer's signature for group (docs/formats.md section
 * 3) before anything is decrypted. PS_OK or PS_BADMSG. */
int ps_open_envelope(const pn_config *cfg, const char *group, const uint8_t *envelope, size_t len, const char *msgid,
                     const uint8_t stream_key[PC_STREAM_KEY_BYTES], const pc_msg_meta *meta, pc_sink_fn sink,
                     void *arg, char *err, size_t errlen);

#endif
