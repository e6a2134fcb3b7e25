/* userstate: the in-memory model — entries in insertion order, a hash table over their
 * Message-IDs, the keyword table — and every lookup and change. */
#include "userstate/userstate_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *userstate_strerror(int status)
{
    switch (status) {
    case US_OK: return "ok";
    case US_EINVAL: return "invalid argument";
    case US_ENOMEM: return "out of memory";
    case US_ELIMIT: return "limit reached";
    case US_EIO: return "i/o error";
    case US_EFORMAT: return "state file malformed or of an unsupported version";
    case US_EAUTH: return "state file does not open (wrong key, tampered, truncated or another user's)";
    default: return "unknown userstate status";
    }
}

userstate *us_new(void)
{
    userstate *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    randombytes_buf(st->hash_key, sizeof st->hash_key);
    return st;
}

static void wipe_free(void *p, size_t n)
{
    if (p) {
        sodium_memzero(p, n);
        free(p);
    }
}

/* The cache holds plaintext mail headers (ENVELOPE): wipe it, not only free it. */
static void drop_meta(us_entry *e)
{
    wipe_free(e->env, e->env_len);
    wipe_free(e->bs, e->bs_len);
    wipe_free(e->hdr, e->hdr_len);
    e->env = e->bs = e->hdr = NULL;
    e->env_len = e->bs_len = e->hdr_len = 0;
    e->hdr_set = 0;
    e->arrival = 0;
    e->tz = 0;
    e->raw_size = e->crlf_size = 0;
    e->bits &= (uint8_t)~US_BIT_META;
}

static void free_entry(us_entry *e)
{
    drop_meta(e);
    wipe_free(e->msgid, (size_t)e->idlen + 1);
    memset(e, 0, sizeof *e);
}

void us_free(userstate *st)
{
    if (!st)
        return;
    for (uint32_t i = 0; i < st->n; i++)
        free_entry(&st->ent[i]);
    free(st->ent);
    free(st->slot);
    if (st->key)
        sodium_free(st->key);
    free(st->dir);
    free(st->path);
    sodium_memzero(st, sizeof *st);
    free(st);
}

/* RFC 3977 3.6: "<", printable ASCII without ">" , ">"; at most 250 octets. */
int us_msgid_ok(const char *id, size_t len)
{
    if (len < 3 || len > US_MSGID_MAX || id[0] != '<' || id[len - 1] != '>')
        return 0;
    for (size_t i = 1; i + 1 < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7e || c == '>')
            return 0;
    }
    return 1;
}

static size_t msgid_len(const char *id)
{
    return id ? strnlen(id, US_MSGID_MAX + 1) : 0;
}

static uint32_t hash_of(const userstate *st, const char *id, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)id, len, st->hash_key);
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

#define NOT_FOUND UINT32_MAX

static uint32_t find(const userstate *st, const char *id, size_t len)
{
    if (st->nslots == 0)
        return NOT_FOUND;
    uint32_t mask = st->nslots - 1;
    for (uint32_t i = hash_of(st, id, len) & mask;; i = (i + 1) & mask) {
        uint32_t s = st->slot[i];
        if (s == 0)
            return NOT_FOUND;
        const us_entry *e = &st->ent[s - 1];
        if (e->idlen == len && memcmp(e->msgid, id, len) == 0)
            return s - 1;
    }
}

static void slot_insert(userstate *st, uint32_t index)
{
    const us_entry *e = &st->ent[index];
    uint32_t mask = st->nslots - 1;
    uint32_t i = hash_of(st, e->msgid, e->idlen) & mask;
    while (st->slot[i] != 0)
        i = (i + 1) & mask;
    st->slot[i] = index + 1;
}

static void rehash(userstate *st)
{
    memset(st->slot, 0, (size_t)st->nslots * sizeof *st->slot);
    for (uint32_t i = 0; i < st->n; i++)
        slot_insert(st, i);
}

/* Room for want entries: the array grows by doubling, the table stays at most half full so
 * that linear probing stays short. */
static int reserve(userstate *st, uint32_t want)
{
    if (want > US_MESSAGES_MAX)
        return US_ELIMIT;
    if (want > st->cap) {
        uint32_t cap = st->cap ? st->cap : 64;
        while (cap < want)
            cap *= 2;
        us_entry *ent = realloc(st->ent, (size_t)cap * sizeof *ent);
        if (!ent)
            return US_ENOMEM;
        st->ent = ent;
        st->cap = cap;
    }
    if ((uint64_t)want * 2 > st->nslots) {
        uint32_t ns = st->nslots ? st->nslots : 128;
        while ((uint64_t)want * 2 > ns)
            ns *= 2;
        uint32_t *slot = calloc(ns, sizeof *slot);
        if (!slot)
            return US_ENOMEM;
        free(st->slot);
        st->slot = slot;
        st->nslots = ns;
        rehash(st);
    }
    return US_OK;
}

/* Appends a fresh entry for a valid Message-ID not yet present; its index in *index. */
static int add_entry(userstate *st, const char *id, size_t len, uint32_t *index)
{
    int rc = reserve(st, st->n + 1);
    if (rc != US_OK)
        return rc;
    char *copy = malloc(len + 1);
    if (!copy)
        return US_ENOMEM;
    memcpy(copy, id, len);
    copy[len] = '\0';
    us_entry *e = &st->ent[st->n];
    memset(e, 0, sizeof *e);
    e->msgid = copy;
    e->idlen = (uint8_t)len;
    *index = st->n++;
    slot_insert(st, *index);
    return US_OK;
}

int us_add_entry(userstate *st, const char *id, size_t len, uint32_t *index)
{
    if (find(st, id, len) != NOT_FOUND)
        return US_EFORMAT;
    return add_entry(st, id, len, index);
}

int us_reserve(userstate *st, uint32_t want)
{
    return reserve(st, want);
}

static void fill_msg(const us_entry *e, userstate_msg *out)
{
    out->flags = e->flags;
    memcpy(out->keywords, e->kw, sizeof out->keywords);
    out->removed = (e->bits & US_BIT_REMOVED) != 0;
    out->modseq = e->modseq;
    out->has_meta = (e->bits & US_BIT_META) != 0;
    if (out->has_meta) {
        out->meta.arrival = e->arrival;
        out->meta.tz_minutes = e->tz;
        out->meta.raw_size = e->raw_size;
        out->meta.crlf_size = e->crlf_size;
        out->meta.envelope = e->env;
        out->meta.envelope_len = e->env_len;
        out->meta.bodystructure = e->bs;
        out->meta.bodystructure_len = e->bs_len;
        out->meta.header_set = e->hdr_set;
        out->meta.headers = e->hdr;
        out->meta.headers_len = e->hdr_len;
    }
}

int userstate_get(const userstate *st, const char *msgid, userstate_msg *out)
{
    memset(out, 0, sizeof *out);
    size_t len = msgid_len(msgid);
    if (!st || !us_msgid_ok(msgid, len))
        return 0;
    uint32_t i = find(st, msgid, len);
    if (i == NOT_FOUND)
        return 0;
    fill_msg(&st->ent[i], out);
    return 1;
}

size_t userstate_count(const userstate *st)
{
    return st ? st->n : 0;
}

uint64_t userstate_modseq(const userstate *st)
{
    return st ? st->modseq : 0;
}

int userstate_dirty(const userstate *st)
{
    return st ? st->dirty : 0;
}

/* Finds or (create != 0) adds the entry; NOT_FOUND in *index when absent and not created. */
static int lookup(userstate *st, const char *msgid, int create, uint32_t *index)
{
    size_t len = msgid_len(msgid);
    if (!us_msgid_ok(msgid, len))
        return US_EINVAL;
    *index = find(st, msgid, len);
    if (*index == NOT_FOUND && create)
        return add_entry(st, msgid, len, index);
    return US_OK;
}

/* One visible change: the counter moves and the message records it (CONDSTORE). */
static void changed(userstate *st, us_entry *e)
{
    e->modseq = ++st->modseq;
    st->dirty = 1;
}

int userstate_store(userstate *st, const char *msgid, enum userstate_op op, unsigned flags,
                    const uint8_t *keywords)
{
    if (!st || (flags & ~US_FLAGS_ALL) || (op != US_ADD && op != US_REMOVE && op != US_REPLACE))
        return US_EINVAL;
    uint8_t want_kw[US_KEYWORD_SET_BYTES] = {0};
    if (keywords) {
        for (unsigned i = st->nkw; i < US_KEYWORD_MAX; i++)
            if (us_kw_test(keywords, i))
                return US_EINVAL; /* an index the table does not have */
        memcpy(want_kw, keywords, sizeof want_kw);
    }
    uint32_t i;
    int rc = lookup(st, msgid, 0, &i);
    if (rc != US_OK)
        return rc;
    unsigned old_flags = i == NOT_FOUND ? 0 : st->ent[i].flags;
    uint8_t kw[US_KEYWORD_SET_BYTES] = {0};
    if (i != NOT_FOUND)
        memcpy(kw, st->ent[i].kw, sizeof kw);
    unsigned new_flags;
    uint8_t new_kw[US_KEYWORD_SET_BYTES];
    for (size_t b = 0; b < sizeof kw; b++) {
        switch (op) {
        case US_ADD: new_kw[b] = kw[b] | want_kw[b]; break;
        case US_REMOVE: new_kw[b] = kw[b] & (uint8_t)~want_kw[b]; break;
        default: new_kw[b] = want_kw[b]; break;
        }
    }
    new_flags = op == US_ADD ? (old_flags | flags) : op == US_REMOVE ? (old_flags & ~flags) : flags;
    if (new_flags == old_flags && memcmp(new_kw, kw, sizeof kw) == 0)
        return US_OK;
    if (st->modseq == UINT64_MAX)
        return US_ELIMIT;
    if (i == NOT_FOUND && (rc = lookup(st, msgid, 1, &i)) != US_OK)
        return rc;
    us_entry *e = &st->ent[i];
    e->flags = (uint8_t)new_flags;
    memcpy(e->kw, new_kw, sizeof new_kw);
    changed(st, e);
    return US_OK;
}

int userstate_remove(userstate *st, const char *msgid)
{
    if (!st)
        return US_EINVAL;
    uint32_t i;
    int rc = lookup(st, msgid, 0, &i);
    if (rc != US_OK)
        return rc;
    if (i != NOT_FOUND && (st->ent[i].bits & US_BIT_REMOVED))
        return US_OK;
    if (st->modseq == UINT64_MAX)
        return US_ELIMIT;
    if (i == NOT_FOUND && (rc = lookup(st, msgid, 1, &i)) != US_OK)
        return rc;
    us_entry *e = &st->ent[i];
    drop_meta(e);
    e->bits |= US_BIT_REMOVED;
    changed(st, e);
    return US_OK;
}

int userstate_restore(userstate *st, const char *msgid, unsigned flags, const uint8_t *keywords)
{
    if (!st || (flags & ~US_FLAGS_ALL))
        return US_EINVAL;
    if (keywords)
        for (unsigned k = st->nkw; k < US_KEYWORD_MAX; k++)
            if (us_kw_test(keywords, k))
                return US_EINVAL;
    uint32_t i;
    int rc = lookup(st, msgid, 0, &i);
    if (rc != US_OK)
        return rc;
    if (i == NOT_FOUND || !(st->ent[i].bits & US_BIT_REMOVED))
        return userstate_store(st, msgid, US_REPLACE, flags, keywords);
    if (st->modseq == UINT64_MAX)
        return US_ELIMIT;
    us_entry *e = &st->ent[i];
    e->bits &= (uint8_t)~US_BIT_REMOVED;
    e->flags = (uint8_t)flags;
    memset(e->kw, 0, sizeof e->kw);
    if (keywords)
        memcpy(e->kw, keywords, sizeof e->kw);
    changed(st, e);
    return US_OK;
}

static int blob_same(const uint8_t *a, uint32_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (blen == 0 || memcmp(a, b, blen) == 0);
}

static uint8_t *blob_copy(const uint8_t *p, size_t len, int *rc)
{
    if (len == 0)
        return NULL;
    uint8_t *c = malloc(len);
    if (!c)
        *rc = US_ENOMEM;
    else
        memcpy(c, p, len);
    return c;
}

int userstate_meta_set(userstate *st, const char *msgid, const userstate_meta *m)
{
    if (!st || !m || m->envelope_len > US_BLOB_MAX || m->bodystructure_len > US_BLOB_MAX ||
        m->headers_len > US_BLOB_MAX || m->header_set > US_HEADER_SET_MAX || (!m->header_set && m->headers_len) ||
        (m->envelope_len && !m->envelope) || (m->bodystructure_len && !m->bodystructure) ||
        (m->headers_len && !m->headers))
        return US_EINVAL;
    uint32_t i;
    int rc = lookup(st, msgid, 0, &i);
    if (rc != US_OK)
        return rc;
    if (i != NOT_FOUND) {
        const us_entry *e = &st->ent[i];
        if (e->bits & US_BIT_REMOVED)
            return US_OK;
        /* a gateway re-caches at every cold login: unchanged facts must not force a write */
        if ((e->bits & US_BIT_META) && e->arrival == m->arrival && e->tz == m->tz_minutes &&
            e->raw_size == m->raw_size && e->crlf_size == m->crlf_size &&
            blob_same(e->env, e->env_len, m->envelope, m->envelope_len) &&
            blob_same(e->bs, e->bs_len, m->bodystructure, m->bodystructure_len) && e->hdr_set == m->header_set &&
            blob_same(e->hdr, e->hdr_len, m->headers, m->headers_len))
            return US_OK;
    }
    /* copies first, so that running out of memory leaves the old cache in place */
    rc = US_OK;
    uint8_t *env = blob_copy(m->envelope, m->envelope_len, &rc);
    uint8_t *bs = blob_copy(m->bodystructure, m->bodystructure_len, &rc);
    uint8_t *hdr = blob_copy(m->headers, m->headers_len, &rc);
    if (rc == US_OK && i == NOT_FOUND)
        rc = lookup(st, msgid, 1, &i);
    if (rc != US_OK) {
        wipe_free(env, m->envelope_len);
        wipe_free(bs, m->bodystructure_len);
        wipe_free(hdr, m->headers_len);
        return rc;
    }
    us_entry *e = &st->ent[i];
    drop_meta(e);
    e->bits |= US_BIT_META;
    e->arrival = m->arrival;
    e->tz = m->tz_minutes;
    e->raw_size = m->raw_size;
    e->crlf_size = m->crlf_size;
    e->env = env;
    e->env_len = (uint32_t)m->envelope_len;
    e->bs = bs;
    e->bs_len = (uint32_t)m->bodystructure_len;
    e->hdr = hdr;
    e->hdr_len = (uint32_t)m->headers_len;
    e->hdr_set = (uint8_t)m->header_set;
    st->dirty = 1;
    return US_OK;
}

/* ---- keywords ---- */

/* RFC 9051 atom: CHAR except atom-specials ( ) { SP CTL % * " \ ]. */
static int keyword_ok(const char *name, size_t len)
{
    if (len == 0 || len > US_KEYWORD_LEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c > 0x7e || strchr("(){%*\"\\]", c))
            return 0;
    }
    return 1;
}

static int keyword_index(const userstate *st, const char *name, size_t len)
{
    for (unsigned i = 0; i < st->nkw; i++)
        if (strlen(st->kw[i]) == len && strncasecmp(st->kw[i], name, len) == 0)
            return (int)i;
    return -1;
}

/* Adds a checked, new name (the parser's way in, which refuses duplicates itself). */
int us_keyword_add(userstate *st, const char *name, size_t len)
{
    if (!keyword_ok(name, len) || keyword_index(st, name, len) >= 0)
        return US_EFORMAT;
    if (st->nkw >= US_KEYWORD_MAX)
        return US_ELIMIT;
    memcpy(st->kw[st->nkw], name, len);
    st->kw[st->nkw][len] = '\0';
    st->nkw++;
    st->kw_gen++;
    return US_OK;
}

int userstate_keyword(userstate *st, const char *name, unsigned *index)
{
    size_t len = name ? strnlen(name, US_KEYWORD_LEN_MAX + 1) : 0;
    if (!st || !index || !keyword_ok(name, len))
        return US_EINVAL;
    int i = keyword_index(st, name, len);
    if (i >= 0) {
        *index = (unsigned)i;
        return US_OK;
    }
    int rc = us_keyword_add(st, name, len);
    if (rc != US_OK)
        return rc;
    *index = st->nkw - 1;
    st->dirty = 1;
    return US_OK;
}

int userstate_keyword_find(const userstate *st, const char *name)
{
    size_t len = name ? strnlen(name, US_KEYWORD_LEN_MAX + 1) : 0;
    if (!st || !keyword_ok(name, len))
        return -1;
    return keyword_index(st, name, len);
}

unsigned userstate_keyword_count(const userstate *st)
{
    return st ? st->nkw : 0;
}

uint64_t userstate_keyword_gen(const userstate *st)
{
    return st ? st->kw_gen : 0;
}

const char *userstate_keyword_name(const userstate *st, unsigned index)
{
    return st && index < st->nkw ? st->kw[index] : NULL;
}

/* ---- walking and forgetting ---- */

int userstate_foreach(const userstate *st, int (*fn)(void *arg, const char *msgid, const userstate_msg *m),
                      void *arg)
{
    if (!st || !fn)
        return 0;
    for (uint32_t i = 0; i < st->n; i++) {
        userstate_msg m;
        memset(&m, 0, sizeof m);
        fill_msg(&st->ent[i], &m);
        int r = fn(arg, st->ent[i].msgid, &m);
        if (r)
            return r;
    }
    return 0;
}

/* Drops keywords no entry uses and renumbers the rest, keeping their order. */
static int compact_keywords(userstate *st)
{
    uint8_t used[US_KEYWORD_SET_BYTES] = {0};
    for (uint32_t i = 0; i < st->n; i++)
        for (size_t b = 0; b < sizeof used; b++)
            used[b] |= st->ent[i].kw[b];
    unsigned map[US_KEYWORD_MAX], kept = 0;
    for (unsigned k = 0; k < st->nkw; k++) {
        if (us_kw_test(used, k)) {
            map[k] = kept;
            if (kept != k)
                memcpy(st->kw[kept], st->kw[k], sizeof st->kw[kept]);
            kept++;
        }
    }
    if (kept == st->nkw)
        return 0;
    for (unsigned k = kept; k < st->nkw; k++)
        memset(st->kw[k], 0, sizeof st->kw[k]);
    st->nkw = kept;
    st->kw_gen++;
    for (uint32_t i = 0; i < st->n; i++) {
        uint8_t old[US_KEYWORD_SET_BYTES];
        memcpy(old, st->ent[i].kw, sizeof old);
        memset(st->ent[i].kw, 0, sizeof old);
        for (unsigned k = 0; k < US_KEYWORD_MAX; k++)
            if (us_kw_test(old, k))
                us_kw_put(st->ent[i].kw, map[k], 1);
    }
    return 1;
}

int userstate_prune(userstate *st, int (*is_live)(void *arg, const char *msgid), void *arg,
                    size_t *pruned)
{
    if (pruned)
        *pruned = 0;
    if (!st || !is_live)
        return US_EINVAL;
    /* ask about every entry before touching any, so a failing check changes nothing */
    uint8_t *dead = calloc(st->n ? st->n : 1, 1);
    if (!dead)
        return US_ENOMEM;
    size_t ndead = 0;
    for (uint32_t i = 0; i < st->n; i++) {
        int r = is_live(arg, st->ent[i].msgid);
        if (r != 0 && r != 1) {
            free(dead);
            return US_EIO;
        }
        dead[i] = r == 0;
        ndead += r == 0;
    }
    if (ndead > 0) {
        uint32_t j = 0;
        for (uint32_t i = 0; i < st->n; i++) {
            if (dead[i])
                free_entry(&st->ent[i]);
            else
                st->ent[j++] = st->ent[i];
        }
        st->n = j;
        rehash(st);
        st->dirty = 1;
    }
    free(dead);
    if (compact_keywords(st))
        st->dirty = 1;
    if (pruned)
        *pruned = ndead;
    return US_OK;
}

uint32_t userstate_recent_uid(const userstate *st, uint32_t uidvalidity)
{
    for (unsigned i = 0; st && i < st->nrecent; i++)
        if (st->recent[i].uidvalidity == uidvalidity)
            return st->recent[i].uid;
    return 0;
}

void userstate_recent_raise(userstate *st, uint32_t uidvalidity, uint32_t uid)
{
    if (!st || uidvalidity == 0 || uid == 0)
        return;
    unsigned i = 0;
    while (i < st->nrecent && st->recent[i].uidvalidity != uidvalidity)
        i++;
    if (i < st->nrecent && st->recent[i].uid >= uid)
        return;
    if (i == st->nrecent && st->nrecent == US_RECENT_MAX)
        i = 0; /* forget the one raised longest ago */
    else if (i == st->nrecent)
        st->nrecent++;
    /* the raised one moves to the end: the list stays ordered by when each was raised */
    memmove(&st->recent[i], &st->recent[i + 1], (st->nrecent - 1 - i) * sizeof st->recent[0]);
    st->recent[st->nrecent - 1] = (us_recent){uidvalidity, uid};
    st->dirty = 1;
}
