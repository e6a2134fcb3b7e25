/* userstate: what the module's files share, and the entry points the unit tests and the
 * fuzz target use to reach the plaintext serialisation without a file. Not for the rest of
 * postern: userstate/userstate.h is the module's public face. */
#ifndef POSTERN_USERSTATE_INTERNAL_H
#define POSTERN_USERSTATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "userstate/userstate.h"

#define US_MAGIC "PSTU"
#define US_VERSION 3 /* written; versions 1 (no \Recent marks) and 2 (no header cache) are still read */
#include <limits.h>

#define US_NAME_HASH_BYTES 16
#define US_HEADER_BYTES (4 + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#define US_AD_BYTES (4 + 1 + US_NAME_HASH_BYTES)
#define US_MAC_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

#define US_BIT_REMOVED 0x01u
#define US_BIT_META 0x02u

typedef struct us_recent {
    uint32_t uidvalidity, uid;
} us_recent;

typedef struct us_entry {
    char *msgid; /* NUL-terminated copy */
    uint8_t idlen;
    uint8_t flags;
    uint8_t bits; /* US_BIT_* */
    uint64_t modseq;
    uint8_t kw[US_KEYWORD_SET_BYTES];
    int64_t arrival;
    int16_t tz;
    uint64_t raw_size, crlf_size;
    uint8_t *env, *bs, *hdr; /* NULL when the length is 0 */
    uint32_t env_len, bs_len, hdr_len;
    uint8_t hdr_set;
} us_entry;

struct userstate {
    /* entries in insertion order; the hash table maps Message-IDs to positions in it */
    us_entry *ent;
    uint32_t n, cap;
    uint32_t *slot; /* index + 1; 0 = empty. Power of two, at most half full */
    uint32_t nslots;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random per state: no chosen collisions */
    char kw[US_KEYWORD_MAX][US_KEYWORD_LEN_MAX + 1];
    unsigned nkw;
    uint64_t kw_gen; /* userstate_keyword_gen; not stored */
    uint64_t modseq;
    us_recent recent[US_RECENT_MAX]; /* oldest raised first */
    unsigned nrecent;
    int dirty;
    /* file side (file.c); unused by a state made with us_new */
    uint8_t *key; /* sodium_malloc'd */
    uint8_t name_hash[US_NAME_HASH_BYTES];
    char *dir;  /* state_dir/users */
    char *path; /* dir/<hex>.state */
    char warning[PATH_MAX + 256]; /* what opening it had to do, for the caller's log */
};

/* An empty state with no file behind it. NULL if out of memory. */
userstate *us_new(void);
/* Frees what us_new and the loaders allocated (wiping cached metadata). */
void us_free(userstate *st);
/* Exact size of the serialisation of st. */
size_t us_serialized_size(const userstate *st);
/* Writes the serialisation (docs/formats.md 5.2, version US_VERSION) into out, which has
 * us_serialized_size bytes. */
void us_serialize(const userstate *st, uint8_t *out);
/* Fills an empty state (from us_new) from a serialisation of the given version (1 to 3):
 * US_OK, US_EFORMAT (st is then partly filled; free it) or US_ENOMEM. Every count and
 * length is checked against the bytes that remain before anything is allocated for it. */
int us_parse(userstate *st, const uint8_t *in, size_t len, unsigned version);
/* The parser's ways in (state.c): room for want entries; a new entry for a checked
 * Message-ID (US_EFORMAT if already present); a new keyword (US_EFORMAT if not an atom or
 * already present, US_ELIMIT if the table is full). */
int us_reserve(userstate *st, uint32_t want);
int us_add_entry(userstate *st, const char *id, size_t len, uint32_t *index);
int us_keyword_add(userstate *st, const char *name, size_t len);
/* Message-ID check shared by lookups and the parser (docs/formats.md 5.2). */
int us_msgid_ok(const char *id, size_t len);

#endif
