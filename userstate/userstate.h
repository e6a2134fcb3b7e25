/* userstate: one user's mutable mailbox state for the gateway — IMAP flags and keywords,
 * removed (expunged / POP3-deleted) messages, a per-message metadata cache and a change
 * counter — keyed by Message-ID and persisted encrypted (docs/formats.md section 5).
 *
 * Not thread-safe: one userstate belongs to one thread (the gateway's network thread).
 * Different userstate objects may be used from different threads.
 *
 * "Removed" is the one flag for both IMAP EXPUNGE and POP3 DELE+QUIT (RFC 1939 removes the
 * message from the maildrop): a removed message is hidden from every view of the user's
 * mailbox but stays on the news server until INN expires it. It cannot be undone. */
#ifndef POSTERN_USERSTATE_H
#define POSTERN_USERSTATE_H

#include <stddef.h>
#include <stdint.h>

enum us_status {
    US_OK = 0,
    US_EINVAL,  /* bad argument: Message-ID, keyword name, flag bits, blob too long */
    US_ENOMEM,  /* out of memory */
    US_ELIMIT,  /* keyword table full, too many messages, or the file would be too large */
    US_EIO,     /* file system error (errno is kept), or a prune's is_live check failed */
    US_EFORMAT, /* state file too short, bad magic, unsupported version, or bad contents */
    US_EAUTH,   /* state file does not open: wrong key, tampered, truncated or another user's */
};
const char *userstate_strerror(int status);

/* IMAP system flags (RFC 9051 2.3.2). \Recent is not stored: it is per session. */
#define US_SEEN 0x01u
#define US_ANSWERED 0x02u
#define US_FLAGGED 0x04u
#define US_DELETED 0x08u
#define US_DRAFT 0x10u
#define US_FLAGS_ALL 0x1fu

#define US_KEYWORD_MAX 256     /* keywords per user */
#define US_KEYWORD_LEN_MAX 64  /* bytes per keyword name */
#define US_KEYWORD_SET_BYTES (US_KEYWORD_MAX / 8)
#define US_MSGID_MAX 250       /* RFC 3977 3.6 */
#define US_BLOB_MAX 65536      /* envelope / bodystructure / header cache strings */
#define US_HEADER_SET_MAX 255
#define US_MESSAGES_MAX (1u << 24)
#define US_FILE_MAX (512ull << 20)
#define US_KEY_BYTES 32

/* A set of keyword indexes: keyword i is bit (i % 8) of byte i / 8. */
static inline int us_kw_test(const uint8_t set[US_KEYWORD_SET_BYTES], unsigned i)
{
    return i < US_KEYWORD_MAX && (set[i >> 3] >> (i & 7) & 1);
}
static inline void us_kw_put(uint8_t set[US_KEYWORD_SET_BYTES], unsigned i, int on)
{
    if (i >= US_KEYWORD_MAX)
        return;
    if (on)
        set[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        set[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

/* Cached facts about one message, so a cold login need not decrypt every message again.
 * envelope and bodystructure are opaque bytes (at most US_BLOB_MAX each; may be empty). */
typedef struct userstate_meta {
    int64_t arrival;    /* Unix seconds (INTERNALDATE) */
    int16_t tz_minutes; /* arrival zone, minutes east of UTC */
    uint64_t raw_size;  /* as delivered */
    uint64_t crlf_size; /* RFC822.SIZE */
    const uint8_t *envelope;
    size_t envelope_len;
    const uint8_t *bodystructure;
    size_t bodystructure_len;
    /* Some of the message's header fields as they stand (a header block, each field ending
     * in CRLF): which ones is header_set's choice, numbered by the caller (0: none cached,
     * then headers_len is 0), so a later choice of fields does not misread an older cache. */
    unsigned header_set;
    const uint8_t *headers;
    size_t headers_len;
} userstate_meta;

/* What the state says about one message. A message the state has never heard of reads as
 * all zero: no flags, no keywords, not removed, modseq 0, no cache. */
typedef struct userstate_msg {
    unsigned flags;  /* US_SEEN ... */
    uint8_t keywords[US_KEYWORD_SET_BYTES];
    int removed;
    uint64_t modseq; /* counter value at its last flag, keyword or removed change; 0: never */
    int has_meta;
    userstate_meta meta; /* valid if has_meta; pointers live until the state next changes */
} userstate_msg;

typedef struct userstate userstate;

/* Loads the state of address (canonicalised as in docs/formats.md section 1) from
 * state_dir/users/<hash>.state, the hash keyed with state_key (a new key pair for the address
 * has a new file); a missing file is an empty state. A file that does not open (tampered,
 * truncated, another user's) is an error: nothing is reset silently (see userstate_reset).
 * A legacy (v1-named) file is migrated, or, when it does not open with this key, renamed to
 * .stale with a userstate_warning. state_key is copied; the caller keeps and wipes its own. */
int userstate_open(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES],
                   userstate **out, char *err, size_t errlen);
/* What userstate_open had to do that the log should show (a stale file set aside), or NULL. */
const char *userstate_warning(const userstate *st);
/* Writes the state if it changed since it was opened or last saved (otherwise does
 * nothing): encrypted with a fresh nonce, temp file + fsync + rename + fsync of the
 * directory, so the file is always either the old or the new state. Creates users/ (0700).
 * On failure the state stays dirty, so a later save tries again. */
int userstate_save(userstate *st, char *err, size_t errlen);
/* The same save in two steps, for a state that stays in use while it is written: seal
 * serialises and encrypts a snapshot (*out NULL when nothing changed) and counts the state
 * as saved from then on; sealed_write writes the snapshot the way userstate_save does and
 * touches no state, so it may run on another thread. After a failed write, mark_dirty
 * makes the next save try again. */
typedef struct userstate_sealed userstate_sealed;
int userstate_seal(userstate *st, userstate_sealed **out, char *err, size_t errlen);
int userstate_sealed_write(const userstate_sealed *s, char *err, size_t errlen);
void userstate_sealed_free(userstate_sealed *s);
void userstate_mark_dirty(userstate *st);
/* Frees the state without saving; wipes what it held. NULL is fine. */
void userstate_close(userstate *st);
/* Deletes a user's state file (for an administrator who has confirmed that a state which
 * no longer opens may be discarded). A missing file is not an error. */
int userstate_reset(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES], char *err,
                    size_t errlen);
/* The state file's path for address. */
int userstate_path(const char *state_dir, const char *address, const uint8_t state_key[US_KEY_BYTES], char *out,
                   size_t cap, char *err, size_t errlen);

/* Lookups, O(1) on average. Returns 1 if the state has an entry for msgid (out filled),
 * 0 if not (out zeroed as described at userstate_msg). */
int userstate_get(const userstate *st, const char *msgid, userstate_msg *out);
size_t userstate_count(const userstate *st);      /* entries, removed ones included */
uint64_t userstate_modseq(const userstate *st);   /* highest modseq given out so far */
int userstate_dirty(const userstate *st);         /* 1 if save would write */

enum userstate_op { US_ADD, US_REMOVE, US_REPLACE };
/* IMAP STORE on one message: adds, removes or replaces the system flags (flags) and the
 * keywords (set of keyword indexes from userstate_keyword; NULL = none). If anything
 * changes, the change counter goes up by one and becomes the message's modseq; a STORE
 * that changes nothing changes nothing (not even dirty). */
int userstate_store(userstate *st, const char *msgid, enum userstate_op op, unsigned flags,
                    const uint8_t *keywords);
/* Marks a message removed (EXPUNGE, or DELE then QUIT) and drops its cached metadata.
 * Counts as a change like a STORE; removing a removed message does nothing. */
int userstate_remove(userstate *st, const char *msgid);
/* A removed message is filed again (COPY or MOVE back into the INBOX): not removed, with
 * these flags and keywords; counts as a change. On a message not removed it is a
 * US_REPLACE store. */
int userstate_restore(userstate *st, const char *msgid, unsigned flags, const uint8_t *keywords);
/* Replaces the message's cached metadata (copied). Not a change a client can see, so the
 * counter does not move; the state is dirty unless the cache already held the same.
 * A removed message keeps no cache: this is then a no-op. */
int userstate_meta_set(userstate *st, const char *msgid, const userstate_meta *meta);

/* Keywords: a per-user table of up to US_KEYWORD_MAX names, each 1..US_KEYWORD_LEN_MAX
 * bytes of IMAP atom characters (no \ so never a system flag). Names compare
 * ASCII-case-insensitively; the first spelling is kept. userstate_keyword gives the index
 * of the name, adding it if new (which makes the state dirty but does not move the counter;
 * US_ELIMIT when the table is full). */
int userstate_keyword(userstate *st, const char *name, unsigned *index);
int userstate_keyword_find(const userstate *st, const char *name); /* index or -1 */
unsigned userstate_keyword_count(const userstate *st);
const char *userstate_keyword_name(const userstate *st, unsigned index); /* NULL if none */
/* Changes whenever the keyword table does (a name added, or a prune renumbering it), so a
 * client can be told the table again (IMAP FLAGS). Not stored: counts from the load. */
uint64_t userstate_keyword_gen(const userstate *st);

/* \Recent (RFC 3501: a message is recent in one session only, and only once): the highest
 * UID some session has been shown as \Recent, per UIDVALIDITY, because UIDs are one site's
 * article numbers and a mailbox read from another site has another UIDVALIDITY. 0: none. */
#define US_RECENT_MAX 8 /* UIDVALIDITYs remembered: the sites a user's mailbox was read from */
uint32_t userstate_recent_uid(const userstate *st, uint32_t uidvalidity);
/* Raises the mark to uid (never lowers it; uidvalidity 0 is ignored). Beyond US_RECENT_MAX
 * UIDVALIDITYs the one raised longest ago is forgotten. Makes the state dirty when it moves;
 * the change counter does not move (no flag changed). */
void userstate_recent_raise(userstate *st, uint32_t uidvalidity, uint32_t uid);

/* Calls fn for each entry in a stable order (oldest entry first) until fn returns nonzero,
 * which is then returned. The state must not be changed from fn. */
int userstate_foreach(const userstate *st, int (*fn)(void *arg, const char *msgid, const userstate_msg *m),
                      void *arg);

/* Forgets the entries of messages that no longer exist on the news servers (INN expired or
 * cancelled them), so the file does not grow forever. is_live returns 1 for a Message-ID
 * that still exists, 0 for one that does not, -1 on error; an error (or any value other
 * than 0 and 1) aborts the prune with US_EIO and the state unchanged, so a failed LISTGROUP
 * cannot wipe it. Pass what the news servers hold, not one lagging site's view. Keywords that no message uses any more are dropped too, which renumbers the
 * keyword table: indexes obtained before a prune are void after it. *pruned (may be NULL)
 * gets the number of entries dropped. */
int userstate_prune(userstate *st, int (*is_live)(void *arg, const char *msgid), void *arg,
                    size_t *pruned);

#endif
