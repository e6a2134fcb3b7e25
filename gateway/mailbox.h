/* gateway: what one IMAP session sees of its user's mailbox (gw_view: its own sequence
 * numbers, mailbox/'s mb_view, rendered as IMAP responses). */
#ifndef POSTERN_GATEWAY_MAILBOX_H
#define POSTERN_GATEWAY_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/imap_session.h"
#include "mailbox/mailbox.h"

/* ---- view.c: one session's numbering of the mailbox, rendered as IMAP ---- */
typedef struct gw_view {
    mb_view mv;            /* the numbering (mailbox/view.c) */
    uint64_t keywords_gen; /* the keyword table's generation at the last FLAGS sent */
} gw_view;

/* SELECT/EXAMINE once the first scan is there: builds s->view, writes the untagged replies. */
int gw_view_open(session *s, uint32_t folder, bool readonly);
void gw_view_close(session *s);
/* s hears of the account's changes while a mailbox is selected (gw_view_open does it). */
void gw_view_watch(session *s);
/* Reports changes to the client: new messages (EXISTS, RECENT), flag changes by others
 * (FETCH FLAGS) and, when expunges are allowed (not during FETCH, STORE, SEARCH: RFC 3501
 * 7.4.1), messages removed by others or expired (EXPUNGE). */
void gw_view_sync(session *s, bool expunges);
/* Sends FLAGS and PERMANENTFLAGS again when the user's keywords changed since the session
 * last heard them: call before any response that may show a keyword (RFC 3501 7.2.6). */
void gw_view_announce_flags(session *s);
/* The UID of message i (sequence number i + 1), and the highest UID (0 if empty). */
static inline uint32_t gw_view_uid(const gw_view *v, size_t i)
{
    return mb_view_uid(&v->mv, i);
}
static inline uint32_t gw_view_last_uid(const gw_view *v)
{
    return mb_view_last_uid(&v->mv);
}
/* The state of message i of the view (zeroed if the state has no entry). */
void gw_view_state(session *s, size_t i, userstate_msg *out);
const char *gw_view_msgid(session *s, size_t i); /* NULL if the message is gone from the server */
bool gw_view_recent(const session *s, size_t i);
/* Resolves a sequence set or UID set argument to view indexes (ascending). Returns 0, or -1
 * with *err (static text for a BAD). UIDs not in the view are skipped silently. */
int gw_view_resolve(session *s, const pi_arg *arg, bool uid, size_t **idx, size_t *n, const char **err);
/* CONDSTORE (RFC 7162). enable: the first CONDSTORE enabling command (ENABLE, SELECT
 * (CONDSTORE), FETCH MODSEQ or CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE, STATUS
 * HIGHESTMODSEQ): from then on every FETCH response with FLAGS carries MODSEQ. The margin
 * ([gateway] modseq_margin) in MODSEQ's scale, to take off a client's CHANGEDSINCE or MODSEQ
 * search value: a late change carries an older stamp. */
void gw_condstore_enable(session *s);
uint64_t gw_view_modseq(session *s, size_t i);
uint64_t gw_modseq_margin(const session *s);
/* QRESYNC: "* VANISHED (EARLIER) set" (nothing when empty) of the UIDs of known below
 * UIDNEXT that the view does not hold — a superset of what the client had and lost, as RFC
 * 7162 3.2.5.1 allows. */
void gw_view_vanished_earlier(session *s, const pi_seqset *known, pu_buf *b);
/* UIDs, ascending, written as a set ("1:3,7") into set. */
typedef struct gw_uid_runs {
    pu_buf set;
    uint32_t lo, hi;
    bool have;
} gw_uid_runs;
void gw_uid_runs_add(gw_uid_runs *r, uint32_t lo, uint32_t hi);
void gw_uid_runs_flush(gw_uid_runs *r);
/* Sends what b holds once it is more than above bytes (0: anything), and empties it: a reply
 * of many lines goes out in pieces instead of piling up. */
void gw_write_above(session *s, pu_buf *b, size_t above);
/* " MODSEQ (n)" of message i, when CONDSTORE is on. */
int gw_write_modseq(pu_buf *b, session *s, size_t i);
/* "(\Seen \Flagged kw)" of a message. */
int gw_write_flags(pu_buf *b, session *s, const userstate_msg *m, bool recent);
/* Marks a message \Seen (a non-PEEK body fetch) unless read-only; true if it changed. */
bool gw_view_mark_seen(session *s, size_t i);
/* A search program over message i of the view (imap_cmd_search.c): p is the loaded message
 * or NULL (keys from the state's metadata). 1 match, 0 not (or gone from the server), -1
 * out of memory. *st (may be NULL) gets the message's state. SORT and THREAD use it too. */
int gw_search_eval(session *s, const pi_search *prog, size_t i, mb_plain *p, userstate_msg *st);
/* The tagged answer of a folder command (imap_cmd_folders.c): OK, or NO with RFC 5530's code. */
void gw_folder_answer(session *s, const char *verb, mb_folder_rc rc);
/* STATUS (imap_cmd_select.c): the items of a list as bits (0: BAD answered), and the untagged
 * STATUS line of a folder (LIST-STATUS uses both). */
unsigned gw_status_items(session *s, const pi_arg *items);
void gw_status_untagged(session *s, const mb_folder *f, unsigned items);

#endif
