/* mstate: one user's replicated mailbox state as a state-based CRDT (docs/design.md
 * "Replicated mailbox state", docs/formats.md section 6). Every gateway holds one, applies
 * its users' actions to it, writes what changed as sealed delta articles and now and then a
 * sealed snapshot, and merges what the other sites wrote. The merge is a join: commutative,
 * associative and idempotent, so any set of deltas and snapshots, in any order and with any
 * duplication, gives the same state — the same flags, the same expunges and the same UIDs.
 *
 *  - flags and keywords: one last-writer-wins register per (message, flag), stamped with a
 *    hybrid logical clock; a register exists only once the flag was ever set or cleared;
 *  - expunge (and POP3 DELE+QUIT): a tombstone that beats every flag change and never goes;
 *  - UIDs: a claim (generation, uid) per message; see mstate_assign for the rule;
 *  - folders: a directory of folders (name, deletion and subscription registers), and per
 *    folder its own UID space; a message in two folders is two entries (its memberships),
 *    each with its own flags, claim and tombstone.
 *
 * Pure library: no I/O, no clock (every change takes now_ms from the caller), no threads.
 * One mstate belongs to one thread. Messages are named by a 16-byte key (mstate_msgkey of
 * the Message-ID), so the state never holds a Message-ID in the clear even in memory dumps
 * of the encoded form. Folder id 0 is the INBOX, 1..5 the special-use folders (always there),
 * 16 and above the user's own. */
#ifndef POSTERN_MSTATE_H
#define POSTERN_MSTATE_H

#include <stddef.h>
#include <stdint.h>

enum mstate_status {
    MSTATE_OK = 0,
    MSTATE_EINVAL,    /* bad argument: keyword name, flag bits, unknown message, key size */
    MSTATE_ENOMEM,    /* out of memory (the state is unchanged) */
    MSTATE_ELIMIT,    /* too many messages, keywords, sites or UIDs (the state is unchanged) */
    MSTATE_EFORMAT,   /* not an encoded state: bad magic, version, limits, or contents */
    MSTATE_EAUTH,     /* does not open with this key: wrong key, tampered or truncated */
    MSTATE_EMISMATCH, /* the two states belong to different mailboxes (UIDVALIDITY) */
    MSTATE_EEXIST,    /* a folder of that name exists */
    MSTATE_ENOFOLDER, /* no such folder (never created, or deleted) */
    MSTATE_EFIXED,    /* the INBOX and the special-use folders cannot be renamed or deleted */
};
const char *mstate_strerror(int status);

/* IMAP system flags (RFC 9051 2.3.2), the same bits as userstate's US_SEEN ... */
#define MSTATE_SEEN 0x01u
#define MSTATE_ANSWERED 0x02u
#define MSTATE_FLAGGED 0x04u
#define MSTATE_DELETED 0x08u
#define MSTATE_DRAFT 0x10u
#define MSTATE_FLAGS_ALL 0x1fu

#define MSTATE_KEY_BYTES 32
#define MSTATE_MSGKEY_BYTES 16
#define MSTATE_KEYWORD_MAX 256     /* keyword names per user */
#define MSTATE_KEYWORD_LEN_MAX 64  /* bytes per keyword name */
#define MSTATE_MESSAGES_MAX (1u << 22)
#define MSTATE_SITES_MAX 64        /* gateways that ever wrote to one user's state */
#define MSTATE_DEAD_RANGES_MAX (1u << 20)
#define MSTATE_UID_MAX 0xfffffff0u /* a few UIDs kept back so uid_next never wraps */
#define MSTATE_ENCODED_MAX (64u << 20)

/* Folders. The INBOX and the RFC 6154 special-use folders have fixed ids and names and always
 * exist, so that two sites using "Sent" for the first time at once use one folder. A user
 * folder's id is derived from its name and an incarnation (how many folders of that name were
 * deleted before), so the same name created at two sites at once is one folder, and a name
 * created again after a delete is a new folder (new UIDVALIDITY, RFC 9051 2.3.1.1). */
#define MSTATE_INBOX 0u
#define MSTATE_SENT 1u
#define MSTATE_DRAFTS 2u
#define MSTATE_TRASH 3u
#define MSTATE_JUNK 4u
#define MSTATE_ARCHIVE 5u
#define MSTATE_FIXED_FOLDERS 6u    /* ids 0..5 */
#define MSTATE_USER_FOLDER_MIN 16u /* user folder ids: 16 .. 2^31 - 1 */
#define MSTATE_FOLDERS_MAX 4096    /* directory records per user, deleted ones included */
#define MSTATE_FOLDER_NAME_MAX 200 /* bytes (IMAP's modified UTF-7, as the client sends it) */
#define MSTATE_FOLDER_SEP '/'

/* Hybrid logical clock: wall milliseconds, a counter for events within one millisecond (or
 * while the wall clock is behind what was already seen), and the site as the last tiebreak,
 * so two stamps are never equal unless they are the same event. */
typedef struct mstate_hlc {
    uint64_t ms;
    uint32_t count;
    uint16_t site;
} mstate_hlc;
int mstate_hlc_cmp(mstate_hlc a, mstate_hlc b);

typedef struct mstate mstate;

/* A new, empty state for the gateway whose site id is site (1..65535, unique among the
 * sites that serve the user) and the mailbox whose UIDVALIDITY is uidvalidity (nonzero;
 * see mstate_uidvalidity_derive). NULL when memory runs out or an argument is bad. */
mstate *mstate_new(uint16_t site, uint32_t uidvalidity);
/* Frees the state and wipes it. NULL is fine. */
void mstate_free(mstate *st);
/* A deep copy (with its pending delta), or NULL. */
mstate *mstate_clone(const mstate *st);

/* The same UIDVALIDITY at every site without coordination: derived from the user's state
 * key and an epoch (0 for the first state; an administrator's reset of a lost state picks a
 * new one, so a rebuilt numbering never reuses the old UIDVALIDITY). Never 0, and below 2^31
 * (some clients keep it in a signed int). */
uint32_t mstate_uidvalidity_derive(const uint8_t state_key[MSTATE_KEY_BYTES], uint32_t epoch);

/* The key that names a message in the state: BLAKE2b-128 of its Message-ID (as in the
 * article, angle brackets included), personalised so it is no hash used elsewhere. */
void mstate_msgkey(const char *msgid, size_t len, uint8_t out[MSTATE_MSGKEY_BYTES]);

/* ---- local changes (each is also added to the pending delta, see mstate_seal_delta) ---- */

/* UID assignment. keys are messages this gateway has just seen in the user's group, in
 * arrival order; they are filed in the INBOX, except those the INBOX already knows (claimed
 * or expunged: mail moved out of it, or APPENDed elsewhere, is never filed there again).
 * Before them, every live entry of any folder that has no valid UID after a merge
 * ("homeless", below) is given a new one in its folder, in ascending key order. New UIDs
 * follow the highest UID the folder has seen, so the numbering stays ascending in arrival
 * order. *assigned (may be NULL) gets the number of UIDs given out. Call it after a merge
 * that left messages homeless, and for new mail.
 *
 * The horizon. Deltas arrive in any order, so a site may know a claim for UID 7 before the
 * one for UID 5. Only UIDs up to a folder's horizon — the end of the run 1..h of UIDs all
 * known (held by a message or dead) — are shown and announced (mstate_uid_next), so a message
 * never appears below a UIDNEXT the site announced. Messages above a gap wait
 * (mstate_waiting) for the missing claim. An assignment that gives out UIDs in a folder first
 * kills every gap below (makes those UIDs dead: whoever holds one at another site is re-homed
 * there, which is safe), so what it assigns shows at once; a gateway should therefore not
 * claim mail another site is expected to claim before that site's delta had time to arrive
 * (docs/design.md).
 *
 * The rule. A claim is (gen, uid); gen 0 for a first assignment, gen + 1 for a re-home.
 * Merging two claims of one entry: the higher gen wins; at equal gen the same uid stays,
 * two different uids leave the entry with no uid (conflict). Every uid an entry held and
 * lost joins its folder's set of dead UIDs, as does every uid that two different entries of
 * the folder hold. An entry's UID is its claim's uid unless that is dead or it has none: then
 * it is homeless and the next mstate_assign re-homes it above every UID its folder has seen.
 * Dead UIDs are never given to anyone again, so a UID never names two different messages in
 * a folder, at any site, at any time; the loser of a conflict reappears under a new, higher
 * UID. */
int mstate_assign(mstate *st, const uint8_t (*keys)[MSTATE_MSGKEY_BYTES], size_t n, uint64_t now_ms,
                  size_t *assigned);
/* Where a numbering begun here starts: a folder that has never named a UID gives its first
 * at floor instead of 1 (clamped to MSTATE_UID_FLOOR_MAX; 0 or 1: from 1). Claims read from
 * other sites are not affected. Local policy, not part of the state: the mailbox layer sets
 * the seconds since 2020, so that a state built afresh after INN expired every state article
 * (nobody logged in for 30 days) never hands out a UID an earlier state gave to another
 * message (docs/formats.md 6.5). */
#define MSTATE_UID_FLOOR_MAX 0x80000000u
void mstate_set_uid_floor(mstate *st, uint32_t floor);
/* STORE: sets the system flags in set_mask and clears those in clear_mask (a flag in both is
 * set) on the message's entry in folder. Each changed flag gets a new register value; a flag
 * already so is left alone (no new stamp, so a repeated STORE does not win against a
 * concurrent one it did not see). A message the folder does not hold is MSTATE_EINVAL; an
 * expunged one is silently unchanged. */
int mstate_set_flags(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], unsigned set_mask,
                     unsigned clear_mask, uint64_t now_ms);
/* STORE of one keyword (1..MSTATE_KEYWORD_LEN_MAX IMAP atom characters, no '\'); names
 * compare ASCII-case-insensitively. The keyword table is one per user. */
int mstate_set_keyword(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], const char *name,
                       int on, uint64_t now_ms);
/* EXPUNGE (or POP3 DELE+QUIT in the INBOX): the tombstone of the message's entry in folder.
 * A message the folder has never held may be expunged too (it then never gets a UID there:
 * that is how mail that must not be filed in the INBOX is kept out). Expunging twice does
 * nothing. The message stays in the other folders that hold it (mstate_held). */
int mstate_expunge(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], uint64_t now_ms);
/* COPY: files the message that folder from holds into folder to, with the same flags and
 * keywords (stamped anew) and the next UID of to (*uid, may be NULL). A message to already
 * holds live keeps its entry and UID there (one message is in a folder at most once). After
 * an expunge from to, a copy back is a new entry (a new incarnation of the membership), so
 * MOVE there and back works. MOVE is a copy and an expunge from the source.
 * MSTATE_EINVAL: from does not hold it live; MSTATE_ENOFOLDER: to does not exist. */
int mstate_copy(mstate *st, uint32_t from, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t to, uint64_t now_ms,
                uint32_t *uid);
/* APPEND: files a message the user wrote (its article posted by the caller) in folder with
 * the system flags given, under the next UID (*uid may be NULL). In any folder but the INBOX
 * it also expunges the message's INBOX entry, so that no site files the article in the INBOX
 * when it reads it. A message the folder already holds live keeps its entry (flags added). */
int mstate_append(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], unsigned flags,
                  uint64_t now_ms, uint32_t *uid);

/* ---- folders ---- */

/* CREATE. name: 1..MSTATE_FOLDER_NAME_MAX bytes 0x20..0x7e (modified UTF-7 is ASCII), no
 * empty hierarchy level (no leading, trailing or doubled '/'), not "INBOX" or a special-use
 * name in any case. MSTATE_EEXIST when a folder shows under that name. *id may be NULL. */
int mstate_folder_create(mstate *st, const char *name, uint64_t now_ms, uint32_t *id);
/* RENAME of one folder (the caller renames the folders below it one by one). The id, its
 * UIDVALIDITY and its UIDs stay. Concurrent renames: the later one wins. */
int mstate_folder_rename(mstate *st, uint32_t id, const char *name, uint64_t now_ms);
/* DELETE: final (it beats a concurrent rename, and a folder never comes back); every message
 * in it is expunged from it. */
int mstate_folder_delete(mstate *st, uint32_t id, uint64_t now_ms);
/* SUBSCRIBE / UNSUBSCRIBE (a register per folder; the INBOX and the special-use folders are
 * subscribed until unsubscribed, user folders not until subscribed). */
int mstate_folder_subscribe(mstate *st, uint32_t id, int on, uint64_t now_ms);

typedef struct mstate_folder {
    uint32_t id;
    char name[MSTATE_FOLDER_NAME_MAX + 16]; /* as shown: unique (a clash gets "~id" appended) */
    int subscribed;
    uint32_t uidvalidity;
    uint32_t uid_next;
} mstate_folder;
/* The folders that exist, INBOX and special-use ones first, then user folders by id; *out
 * malloc'd (free it), *n of them. Two live user folders of one name (concurrent create of a
 * name after a delete, or renames) both show: the one named first keeps the name. */
int mstate_folders(const mstate *st, mstate_folder **out, size_t *n);
/* The messages a folder shows (with a UID, not expunged) and those of them without \Seen:
 * one pass over its entries, so a LIST or STATUS pays it only for the folders it reports. */
int mstate_folder_count(const mstate *st, uint32_t id, size_t *messages, size_t *unseen);
/* The folder shown under name ("INBOX" in any case), into *id; MSTATE_ENOFOLDER if none. */
int mstate_folder_find(const mstate *st, const char *name, uint32_t *id);
/* 1 if the folder exists (the fixed ones always do). */
int mstate_folder_exists(const mstate *st, uint32_t id);
/* The folder's UIDVALIDITY: the state's own for the INBOX, derived from it and the id for
 * the others (so identical at every site); never 0, below 2^31. */
uint32_t mstate_folder_uidvalidity(const mstate *st, uint32_t id);

/* ---- forgetting ---- */

/* INN expires mail after 30 days, but a join never removes an entry: without this the state
 * would keep every message ever received. Drops each entry (of any folder) first known
 * min_age_days or more before now_ms (each entry keeps the earliest day any site knew it) for
 * which present() returns 0 — the caller's test "this site's group holds the article". Its
 * UID goes dead, so it is never given again. Not a merge law: every site applies it to its
 * own state, and an entry another site's older snapshot brings back is dropped again by the
 * same rule. A message still on some site's spool after min_age_days (a partition longer
 * than the expiry) may lose its flags and come back under a new UID there; pick
 * min_age_days well above the expiry (the gateway: 60). *forgotten (may be NULL): entries
 * dropped. */
int mstate_forget(mstate *st, int (*present)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES]), void *arg,
                  uint64_t now_ms, unsigned min_age_days, size_t *forgotten);

/* ---- merge ---- */

/* dst := dst joined with src (a delta or a snapshot, from mstate_open, or another state).
 * Also advances dst's clock past everything in src (HLC receive). On error dst may hold part
 * of src (every part is itself a valid join) but does not record src's deltas as covered, so
 * a later merge of src completes it. src's pending delta is ignored; dst's pending delta does
 * not grow (a merge is no change of this site's). Call mstate_assign afterwards to re-home
 * messages that lost their UID. */
int mstate_merge(mstate *dst, const mstate *src);

/* ---- queries ---- */

typedef struct mstate_view {
    uint32_t uid;     /* 0: none (homeless, expunged, never assigned, or waiting above the horizon) */
    unsigned flags;   /* MSTATE_SEEN ... */
    int expunged;
    uint32_t folder;
    /* RFC 7162 MODSEQ, the same at every site: the packed stamp (ms << 20 | count, 63 bits,
     * never 0) of the entry's last change — a flag or keyword register, its filing (numbered,
     * copied, appended, re-homed) or its expunge */
    uint64_t modseq;
} mstate_view;

/* 1 and *out filled if the folder knows the message (its live entry, else its last expunged
 * one), 0 (out zeroed) if not. */
int mstate_get(const mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], mstate_view *out);
/* HIGHESTMODSEQ: the highest modseq of the folder's entries, live and expunged; 1 when it
 * has none. A merge can lower it only where a tombstone drops a concurrent later flag
 * change (docs/design.md, "CONDSTORE"). O(entries). */
uint64_t mstate_highest_modseq(const mstate *st, uint32_t folder);
/* The modseq of a stamp at wall time ms (count 0): to take a margin off a client's modseq. */
uint64_t mstate_modseq_of_ms(uint64_t ms);
/* 1 if some folder that exists holds the message live: its article must stay. */
int mstate_held(const mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES]);
/* 1 if the message's entry in folder has the keyword set, 0 if not. */
int mstate_keyword_test(const mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES],
                        const char *name);
/* Calls fn for every entry of folder that has a UID at or below the horizon and is not
 * expunged, ascending by UID, until fn returns nonzero (returned). MSTATE_ENOMEM if the index
 * cannot be built. */
int mstate_foreach_uid(const mstate *st, uint32_t folder,
                       int (*fn)(void *arg, uint32_t uid, const uint8_t key[MSTATE_MSGKEY_BYTES],
                                 const mstate_view *v),
                       void *arg);
/* Calls fn for every expunged entry of folder (to tell a session). */
int mstate_foreach_expunged(const mstate *st, uint32_t folder,
                            int (*fn)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t uid), void *arg);
/* The keyword names the state knows, k < mstate_keyword_count (for a client's FLAGS list). */
unsigned mstate_keyword_count(const mstate *st);
const char *mstate_keyword_name(const mstate *st, unsigned k);
uint32_t mstate_uidvalidity(const mstate *st);           /* the INBOX's; names the state */
/* The UIDNEXT to announce: horizon + 1; in a folder that has never named a UID, the floor
 * (mstate_set_uid_floor) its first UID will get. */
uint32_t mstate_uid_next(const mstate *st, uint32_t folder);
size_t mstate_count(const mstate *st);      /* entries known in every folder, expunged ones included */
size_t mstate_homeless(const mstate *st);   /* live entries waiting for mstate_assign */
size_t mstate_waiting(const mstate *st);    /* live entries with a UID above their folder's horizon */
uint16_t mstate_site(const mstate *st);
mstate_hlc mstate_clock(const mstate *st);  /* the last stamp issued or seen */
/* The merged contents (folders, messages, flags, keywords, UIDs, dead UIDs; not the
 * coverage) as a BLAKE2b-256 digest, independent of which site holds the state and of its
 * clock: two states with equal digests present the same mailboxes. */
int mstate_digest(const mstate *st, uint8_t out[32]);

/* ---- deltas and snapshots ----
 * Every site numbers its deltas 1, 2, 3, ...; a state records which deltas of which site it
 * contains (a contiguous prefix per site plus up to MSTATE_EXTRA_MAX out-of-order ones), so a
 * reader of a snapshot knows that a delta (site, seq) it covers may be dropped. */
#define MSTATE_EXTRA_MAX 32
enum mstate_kind { MSTATE_SNAPSHOT = 1, MSTATE_DELTA = 2 };
typedef struct mstate_info {
    enum mstate_kind kind;
    uint16_t origin; /* the site that wrote it */
    uint64_t seq;    /* a delta's number at its site; 0 for a snapshot */
    uint32_t uidvalidity;
    size_t padded_len; /* what the spool sees */
} mstate_info;

/* 1 if st contains delta number seq of site (it may be dropped when st is a snapshot). */
int mstate_covers(const mstate *st, uint16_t site, uint64_t seq);
/* 1 if the state has local changes not yet sealed into a delta. */
int mstate_has_pending(const mstate *st);

/* The next delta this site seals gets number next or above (nothing changes if it would
 * anyway). For a site that lost its state (state_dir) after every state article expired: its
 * numbers restart at 1, and the news server refuses those it still remembers. */
int mstate_skip_deltas(mstate *st, uint64_t next);

/* Seals the full state (kind MSTATE_SNAPSHOT). *out is malloc'd (free it with free). */
int mstate_seal_snapshot(const mstate *st, const uint8_t state_key[MSTATE_KEY_BYTES], uint8_t **out,
                         size_t *out_len);
/* Seals the pending local changes as the site's next delta and empties the pending set;
 * *out NULL (MSTATE_OK) when there is nothing pending. The caller must post the bytes (and
 * keep them until posted): the state already counts the delta as its own. *seq may be NULL. */
int mstate_seal_delta(mstate *st, const uint8_t state_key[MSTATE_KEY_BYTES], uint8_t **out, size_t *out_len,
                      uint64_t *seq);
/* Opens a sealed delta or snapshot into a new state (to be merged). The sealed form has
 * only a fixed header outside the AEAD; everything else is checked after it opened.
 * info (may be NULL) describes it. */
int mstate_open(const uint8_t *in, size_t in_len, const uint8_t state_key[MSTATE_KEY_BYTES], mstate **out,
                mstate_info *info);
/* The size bucket a plaintext of len bytes is padded to (for the threat model and bench). */
size_t mstate_padded_size(size_t len);

/* The plaintext codec inside the seal, exposed for the fuzz target and the tests. The
 * decoder accepts exactly what the encoder writes (canonical form), with every count and
 * length checked against limits and against the bytes that remain. encode: *out malloc'd. */
int mstate_encode(const mstate *st, enum mstate_kind kind, uint8_t **out, size_t *out_len);
int mstate_decode(const uint8_t *in, size_t in_len, mstate **out, mstate_info *info);

#endif
