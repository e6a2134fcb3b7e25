/* mstate: the replicated mailbox state — CRDT, merge, UID rule, folders, codec and seal in one
 * file so that mstate.h is the module's whole public face (docs/formats.md section 6).
 *
 * Layout: a state holds a directory of folders (name, deletion and subscription registers per
 * folder id) and per folder a "space": that folder's entries (message memberships) with their
 * hash index, and its UID bookkeeping (highest UID named, horizon, dead ranges). The UID rule
 * runs per space exactly as it did for the single INBOX of format version 1. */
#include "mstate/mstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define SYSTEM_FLAGS 5 /* register ids 0..4: the system flag bits; 5 + k: keyword k */
#define MAGIC_PLAIN "PSTM"
#define MAGIC_SEALED "PSTS"
#define FORMAT_VERSION 3 /* 3: entries carry their filing stamp (a MODSEQ for unflagged mail) */
#define SEAL_VERSION 1 /* the sealed form did not change with the encoding */
#define SEAL_HEADER (4 + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#define PAD_MIN 1024u
#define MIN_ENTRY_BYTES (MSTATE_MSGKEY_BYTES + 3)
#define HLC_MS_MAX (1ull << 44) /* year 2527: keeps ms << 20 | count inside 64 bits */
#define COPY_MAX 0xffffu         /* incarnations of one message's membership in one folder */

typedef struct reg {
    uint16_t id;
    uint8_t val;
    mstate_hlc t;
} reg;

typedef struct entry {
    uint8_t key[MSTATE_MSGKEY_BYTES];
    uint32_t copy;   /* incarnation: a message expunged from a folder and filed there again */
    uint8_t tomb;    /* expunged: beats every register, forever */
    uint8_t claimed; /* has a UID claim (gen, uid); uid 0 = two claims of one gen disagreed */
    mstate_hlc tomb_t;
    mstate_hlc filed; /* the last time a site filed it (numbered, copied, appended, re-homed);
                         site 0: none (written before version 3, or expunged) */
    uint32_t gen;
    uint32_t uid;
    uint32_t born;   /* day (since 2020-01-01) a site first knew it; 0 unknown (never forgotten) */
    uint16_t nreg, capreg;
    reg *regs;
} entry;

typedef struct range {
    uint32_t lo, hi;
} range;

/* One folder's entries and UID space. */
typedef struct space {
    uint32_t folder;
    uint32_t hw;      /* highest UID any claim ever named: all of 1..hw are used up */
    uint32_t horizon; /* every UID in 1..horizon is known here (held or dead); only these show */
    entry *ent;
    size_t n, cap;
    uint32_t *slot; /* open addressing by message key, entry index + 1, 0 = empty */
    size_t nslot;
    range *dead; /* dead UIDs, ascending, neither overlapping nor adjacent */
    size_t ndead, capdead;
} space;

/* A directory record: a folder's registers. Fixed folders (ids below MSTATE_FIXED_FOLDERS)
 * have only the subscription register; user folders always a name. */
typedef struct folder_rec {
    uint32_t id;
    uint8_t named, deleted, has_sub, sub;
    char *name;
    mstate_hlc name_t, del_t, sub_t;
} folder_rec;

typedef struct cover {
    uint16_t site;
    uint8_t nextra;
    uint64_t upto; /* deltas 1..upto of site are in the state */
    uint64_t extra[MSTATE_EXTRA_MAX]; /* and these, all > upto + 1, ascending */
} cover;

struct mstate {
    uint16_t site;
    uint32_t uidvalidity;
    mstate_hlc clock;
    uint32_t floor;  /* a numbering begun here starts at this UID (local policy, not encoded) */
    space **sp;      /* ascending by folder id */
    size_t nsp, capsp;
    size_t nent;     /* entries in all spaces */
    folder_rec *dir; /* ascending by id */
    size_t ndir, capdir;
    char *kw[MSTATE_KEYWORD_MAX];
    unsigned nkw;
    cover cov[MSTATE_SITES_MAX];
    unsigned ncov;
    mstate *pending;  /* local changes since the last sealed delta (NULL: none) */
    int pending_all;  /* pending could not be kept up: the next delta is the whole state */
    uint16_t origin;  /* of a decoded delta or snapshot */
    uint64_t seq;     /* of a decoded delta */
};

static const char *const fixed_names[MSTATE_FIXED_FOLDERS] = {"INBOX", "Sent", "Drafts", "Trash", "Junk",
                                                              "Archive"};

const char *mstate_strerror(int status)
{
    switch (status) {
    case MSTATE_OK: return "ok";
    case MSTATE_EINVAL: return "invalid argument";
    case MSTATE_ENOMEM: return "out of memory";
    case MSTATE_ELIMIT: return "state limit reached";
    case MSTATE_EFORMAT: return "not a valid mailbox state";
    case MSTATE_EAUTH: return "mailbox state does not open (wrong key or tampered)";
    case MSTATE_EMISMATCH: return "mailbox states of different mailboxes";
    case MSTATE_EEXIST: return "a folder of that name exists";
    case MSTATE_ENOFOLDER: return "no such folder";
    case MSTATE_EFIXED: return "the INBOX and the special-use folders cannot be renamed or deleted";
    default: return "unknown error";
    }
}

int mstate_hlc_cmp(mstate_hlc a, mstate_hlc b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.count != b.count)
        return a.count < b.count ? -1 : 1;
    if (a.site != b.site)
        return a.site < b.site ? -1 : 1;
    return 0;
}

/* ---- keywords ---- */

static int kw_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > MSTATE_KEYWORD_LEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        /* IMAP atom-char minus the list, quoted, resp and flag specials */
        if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
            return 0;
    }
    return 1;
}

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y || !x)
            return x - y;
    }
}

static int kw_find(const mstate *st, const char *name)
{
    for (unsigned k = 0; k < st->nkw; k++)
        if (ascii_casecmp(st->kw[k], name) == 0)
            return (int)k;
    return -1;
}

/* ---- hash index of a space ---- */

static uint8_t hash_key[crypto_shorthash_KEYBYTES];

static size_t key_hash(const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    /* keyed, so a crafted set of keys cannot turn lookups quadratic; by message key only, so
     * the incarnations of one message lie on one probe chain */
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, MSTATE_MSGKEY_BYTES, hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)v;
}

static long find_entry(const space *sp, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t copy)
{
    if (!sp || !sp->nslot)
        return -1;
    size_t mask = sp->nslot - 1;
    for (size_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
        uint32_t s = sp->slot[i];
        if (!s)
            return -1;
        const entry *e = &sp->ent[s - 1];
        if (e->copy == copy && memcmp(e->key, key, MSTATE_MSGKEY_BYTES) == 0)
            return (long)(s - 1);
    }
}

/* The message's current entry in the space: its live incarnation (the highest, should a
 * partition have made two), else its highest expunged one; -1 if none. *max_copy (may be
 * NULL) gets the highest incarnation known, or -1. */
static long find_msg(const space *sp, const uint8_t key[MSTATE_MSGKEY_BYTES], long *max_copy)
{
    long best = -1, top = -1;
    if (sp && sp->nslot) {
        size_t mask = sp->nslot - 1;
        for (size_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
            uint32_t s = sp->slot[i];
            if (!s)
                break;
            const entry *e = &sp->ent[s - 1];
            if (memcmp(e->key, key, MSTATE_MSGKEY_BYTES) != 0)
                continue;
            if ((long)e->copy > top)
                top = (long)e->copy;
            if (best < 0) {
                best = (long)(s - 1);
                continue;
            }
            const entry *b = &sp->ent[best];
            if ((b->tomb && !e->tomb) || (b->tomb == e->tomb && e->copy > b->copy))
                best = (long)(s - 1);
        }
    }
    if (max_copy)
        *max_copy = top;
    return best;
}

static void slot_put(uint32_t *slot, size_t nslot, const entry *ent, uint32_t idx)
{
    size_t mask = nslot - 1;
    size_t i = key_hash(ent[idx].key) & mask;
    while (slot[i])
        i = (i + 1) & mask;
    slot[i] = idx + 1;
}

/* Grows *arr (elem bytes each, *cap of them) to hold need, doubling from first; nothing
 * changes on failure. */
static int grow(void **arr, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return MSTATE_OK;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *v = realloc(*arr, n * elem);
    if (!v)
        return MSTATE_ENOMEM;
    *arr = v;
    *cap = n;
    return MSTATE_OK;
}

/* Makes room for `more` entries in sp (array and index) without changing anything on
 * failure; the limit counts the entries of every space. */
static int reserve_entries(mstate *st, space *sp, size_t more)
{
    if (more > MSTATE_MESSAGES_MAX || st->nent + more > MSTATE_MESSAGES_MAX)
        return MSTATE_ELIMIT;
    size_t need = sp->n + more;
    void *ent = sp->ent;
    int rc = grow(&ent, &sp->cap, need, sizeof *sp->ent, 16);
    sp->ent = ent;
    if (rc != MSTATE_OK)
        return rc;
    if (need * 2 > sp->nslot) {
        size_t nslot = sp->nslot ? sp->nslot : 32;
        while (nslot < need * 2)
            nslot *= 2;
        uint32_t *slot = calloc(nslot, sizeof *slot);
        if (!slot)
            return MSTATE_ENOMEM;
        for (size_t i = 0; i < sp->n; i++)
            slot_put(slot, nslot, sp->ent, (uint32_t)i);
        free(sp->slot);
        sp->slot = slot;
        sp->nslot = nslot;
    }
    return MSTATE_OK;
}

/* now_ms as a day count since 2020-01-01 UTC (0 before it: unknown) */
static uint32_t day_of(uint64_t now_ms)
{
    const uint64_t epoch_day = 18262; /* 2020-01-01 in days since 1970 */
    uint64_t d = now_ms / 86400000u;
    return d > epoch_day && d - epoch_day < UINT32_MAX ? (uint32_t)(d - epoch_day) : 0;
}

/* Needs reserve_entries(st, sp, 1) first. */
static entry *add_entry(mstate *st, space *sp, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t copy)
{
    entry *e = &sp->ent[sp->n];
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, MSTATE_MSGKEY_BYTES);
    e->copy = copy;
    slot_put(sp->slot, sp->nslot, sp->ent, (uint32_t)sp->n);
    sp->n++;
    st->nent++;
    return e;
}

static int reserve_regs(entry *e, size_t more)
{
    /* registers have distinct ids, so there are never more than the ids (a join that
     * overlaps asks for more than it needs) */
    size_t need = (size_t)e->nreg + more;
    if (need > SYSTEM_FLAGS + MSTATE_KEYWORD_MAX)
        need = SYSTEM_FLAGS + MSTATE_KEYWORD_MAX;
    size_t cap = e->capreg;
    void *regs = e->regs;
    int rc = grow(&regs, &cap, need, sizeof *e->regs, 2);
    e->regs = regs;
    e->capreg = (uint16_t)cap; /* at most SYSTEM_FLAGS + MSTATE_KEYWORD_MAX rounded up: fits */
    return rc;
}

static reg *find_reg(const entry *e, uint16_t id)
{
    for (unsigned i = 0; i < e->nreg; i++)
        if (e->regs[i].id == id)
            return &e->regs[i];
    return NULL;
}

/* ---- spaces ---- */

static space *find_space(const mstate *st, uint32_t folder)
{
    size_t a = 0, b = st->nsp;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (st->sp[mid]->folder < folder)
            a = mid + 1;
        else
            b = mid;
    }
    return a < st->nsp && st->sp[a]->folder == folder ? st->sp[a] : NULL;
}

/* The folder's space, made if missing (NULL when memory or the folder limit runs out). */
static space *get_space(mstate *st, uint32_t folder)
{
    space *sp = find_space(st, folder);
    if (sp)
        return sp;
    if (st->nsp >= MSTATE_FOLDERS_MAX + MSTATE_FIXED_FOLDERS)
        return NULL;
    void *arr = st->sp;
    if (grow(&arr, &st->capsp, st->nsp + 1, sizeof *st->sp, 4) != MSTATE_OK)
        return NULL;
    st->sp = arr;
    if (!(sp = calloc(1, sizeof *sp)))
        return NULL;
    sp->folder = folder;
    size_t i = 0;
    while (i < st->nsp && st->sp[i]->folder < folder)
        i++;
    memmove(&st->sp[i + 1], &st->sp[i], (st->nsp - i) * sizeof *st->sp);
    st->sp[i] = sp;
    st->nsp++;
    return sp;
}

static void space_free(space *sp)
{
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->ent[i].regs)
            sodium_memzero(sp->ent[i].regs, sp->ent[i].capreg * sizeof(reg));
        free(sp->ent[i].regs);
    }
    if (sp->ent)
        sodium_memzero(sp->ent, sp->cap * sizeof *sp->ent);
    free(sp->ent);
    free(sp->slot);
    free(sp->dead);
    sodium_memzero(sp, sizeof *sp);
    free(sp);
}

/* ---- dead UIDs (per space) ---- */

static int dead_has(const space *sp, uint32_t uid)
{
    size_t lo = 0, hi = sp->ndead;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sp->dead[mid].hi < uid)
            lo = mid + 1;
        else if (sp->dead[mid].lo > uid)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

static int reserve_dead(space *sp, size_t more)
{
    void *dead = sp->dead;
    int rc = grow(&dead, &sp->capdead, sp->ndead + more, sizeof *sp->dead, 8);
    sp->dead = dead;
    return rc;
}

/* Needs room for one more range. Keeps the set canonical (coalesced). */
static void dead_add(space *sp, uint32_t lo, uint32_t hi)
{
    size_t n = sp->ndead;
    /* first range that ends at or after lo - 1 (could touch or overlap) */
    size_t a = 0, b = n;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if ((uint64_t)sp->dead[mid].hi + 1 < lo)
            a = mid + 1;
        else
            b = mid;
    }
    size_t i = a, j = a;
    while (j < n && sp->dead[j].lo <= (uint64_t)hi + 1) {
        if (sp->dead[j].lo < lo)
            lo = sp->dead[j].lo;
        if (sp->dead[j].hi > hi)
            hi = sp->dead[j].hi;
        j++;
    }
    if (j == i) {
        memmove(&sp->dead[i + 1], &sp->dead[i], (n - i) * sizeof *sp->dead);
        sp->ndead++;
    } else if (j > i + 1) {
        memmove(&sp->dead[i + 1], &sp->dead[j], (n - j) * sizeof *sp->dead);
        sp->ndead -= j - i - 1;
    }
    sp->dead[i].lo = lo;
    sp->dead[i].hi = hi;
}

/* ---- the folder directory ---- */

static folder_rec *find_rec(const mstate *st, uint32_t id)
{
    size_t a = 0, b = st->ndir;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (st->dir[mid].id < id)
            a = mid + 1;
        else
            b = mid;
    }
    return a < st->ndir && st->dir[a].id == id ? &st->dir[a] : NULL;
}

/* The record of id, made empty if missing (NULL at the limit or out of memory). */
static folder_rec *get_rec(mstate *st, uint32_t id)
{
    folder_rec *r = find_rec(st, id);
    if (r)
        return r;
    if (st->ndir >= MSTATE_FOLDERS_MAX)
        return NULL;
    void *arr = st->dir;
    if (grow(&arr, &st->capdir, st->ndir + 1, sizeof *st->dir, 8) != MSTATE_OK)
        return NULL;
    st->dir = arr;
    size_t i = 0;
    while (i < st->ndir && st->dir[i].id < id)
        i++;
    memmove(&st->dir[i + 1], &st->dir[i], (st->ndir - i) * sizeof *st->dir);
    memset(&st->dir[i], 0, sizeof st->dir[i]);
    st->dir[i].id = id;
    st->ndir++;
    return &st->dir[i];
}

int mstate_folder_exists(const mstate *st, uint32_t id)
{
    if (!st)
        return 0;
    if (id < MSTATE_FIXED_FOLDERS)
        return 1;
    const folder_rec *r = find_rec(st, id);
    return r && r->named && !r->deleted;
}

static int folder_deleted(const mstate *st, uint32_t id)
{
    const folder_rec *r = id >= MSTATE_FIXED_FOLDERS ? find_rec(st, id) : NULL;
    return r && r->deleted;
}

/* ---- coverage of deltas ---- */

static cover *find_cover(const mstate *st, uint16_t site)
{
    for (unsigned i = 0; i < st->ncov; i++)
        if (st->cov[i].site == site)
            return (cover *)&st->cov[i];
    return NULL;
}

int mstate_covers(const mstate *st, uint16_t site, uint64_t seq)
{
    const cover *c = find_cover(st, site);
    if (!c || seq == 0)
        return 0;
    if (seq <= c->upto)
        return 1;
    for (unsigned i = 0; i < c->nextra; i++)
        if (c->extra[i] == seq)
            return 1;
    return 0;
}

static uint64_t cover_max(const cover *c)
{
    return c->nextra ? c->extra[c->nextra - 1] : c->upto;
}

/* Adds seq to c, keeps extras ascending; when they overflow the highest is forgotten (the
 * coverage is a lower bound: a forgotten delta is merely applied again, which is harmless). */
static void cover_add(cover *c, uint64_t seq)
{
    if (seq <= c->upto)
        return;
    unsigned i = 0;
    while (i < c->nextra && c->extra[i] < seq)
        i++;
    if (i < c->nextra && c->extra[i] == seq)
        return;
    if (c->nextra == MSTATE_EXTRA_MAX) {
        if (i == c->nextra)
            return;
        c->nextra--;
    }
    memmove(&c->extra[i + 1], &c->extra[i], (c->nextra - i) * sizeof c->extra[0]);
    c->extra[i] = seq;
    c->nextra++;
    while (c->nextra && c->extra[0] == c->upto + 1) {
        c->upto++;
        memmove(&c->extra[0], &c->extra[1], (c->nextra - 1) * sizeof c->extra[0]);
        c->nextra--;
    }
}

static void cover_join(cover *dst, const cover *src)
{
    if (src->upto > dst->upto) {
        unsigned k = 0;
        for (unsigned i = 0; i < dst->nextra; i++)
            if (dst->extra[i] > src->upto)
                dst->extra[k++] = dst->extra[i];
        dst->nextra = (uint8_t)k;
        dst->upto = src->upto;
        /* an extra of dst may now be next to upto */
        while (dst->nextra && dst->extra[0] == dst->upto + 1) {
            dst->upto++;
            memmove(&dst->extra[0], &dst->extra[1], (dst->nextra - 1) * sizeof dst->extra[0]);
            dst->nextra--;
        }
    }
    for (unsigned i = 0; i < src->nextra; i++)
        cover_add(dst, src->extra[i]);
}

static cover *get_cover(mstate *st, uint16_t site)
{
    cover *c = find_cover(st, site);
    if (c || st->ncov == MSTATE_SITES_MAX)
        return c;
    /* kept sorted by site so the encoding is canonical */
    unsigned i = 0;
    while (i < st->ncov && st->cov[i].site < site)
        i++;
    memmove(&st->cov[i + 1], &st->cov[i], (st->ncov - i) * sizeof st->cov[0]);
    memset(&st->cov[i], 0, sizeof st->cov[i]);
    st->cov[i].site = site;
    st->ncov++;
    return &st->cov[i];
}

/* ---- life cycle ---- */

mstate *mstate_new(uint16_t site, uint32_t uidvalidity)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            return NULL;
        randombytes_buf(hash_key, sizeof hash_key);
        ready = 1;
    }
    if (uidvalidity == 0 || site == 0)
        return NULL;
    mstate *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->site = site;
    st->uidvalidity = uidvalidity;
    st->clock.site = site;
    return st;
}

void mstate_free(mstate *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nsp; i++)
        space_free(st->sp[i]);
    free(st->sp);
    for (size_t i = 0; i < st->ndir; i++) {
        if (st->dir[i].name) {
            sodium_memzero(st->dir[i].name, strlen(st->dir[i].name));
            free(st->dir[i].name);
        }
    }
    if (st->dir)
        sodium_memzero(st->dir, st->capdir * sizeof *st->dir);
    free(st->dir);
    for (unsigned k = 0; k < st->nkw; k++) {
        sodium_memzero(st->kw[k], strlen(st->kw[k]));
        free(st->kw[k]);
    }
    mstate_free(st->pending);
    sodium_memzero(st, sizeof *st);
    free(st);
}

uint32_t mstate_uidvalidity_derive(const uint8_t state_key[MSTATE_KEY_BYTES], uint32_t epoch)
{
    uint8_t in[4] = {(uint8_t)(epoch >> 24), (uint8_t)(epoch >> 16), (uint8_t)(epoch >> 8), (uint8_t)epoch};
    uint8_t out[4];
    crypto_generichash_state h;
    crypto_generichash_init(&h, state_key, MSTATE_KEY_BYTES, sizeof out);
    crypto_generichash_update(&h, (const uint8_t *)"postern uidvalidity", 19);
    crypto_generichash_update(&h, in, sizeof in);
    crypto_generichash_final(&h, out, sizeof out);
    sodium_memzero(&h, sizeof h);
    uint32_t v = ((uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 | (uint32_t)out[2] << 8 | out[3]) & 0x7fffffffu;
    return v ? v : 1;
}

void mstate_msgkey(const char *msgid, size_t len, uint8_t out[MSTATE_MSGKEY_BYTES])
{
    static const uint8_t personal[crypto_generichash_blake2b_PERSONALBYTES] = "postern-msgkey";
    static const uint8_t salt[crypto_generichash_blake2b_SALTBYTES] = {0};
    crypto_generichash_blake2b_salt_personal(out, MSTATE_MSGKEY_BYTES, (const uint8_t *)msgid, len, NULL, 0, salt,
                                             personal);
}

/* BLAKE2b-32 of a label, two numbers and bytes, as an integer. */
static uint32_t hash32(const char *label, uint32_t a, uint32_t b, const char *bytes)
{
    uint8_t in[8] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a,
                     (uint8_t)(b >> 24), (uint8_t)(b >> 16), (uint8_t)(b >> 8), (uint8_t)b};
    uint8_t out[4];
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof out);
    crypto_generichash_update(&h, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&h, in, sizeof in);
    if (bytes)
        crypto_generichash_update(&h, (const uint8_t *)bytes, strlen(bytes));
    crypto_generichash_final(&h, out, sizeof out);
    return (uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 | (uint32_t)out[2] << 8 | out[3];
}

uint32_t mstate_folder_uidvalidity(const mstate *st, uint32_t id)
{
    if (!st)
        return 0;
    if (id == MSTATE_INBOX)
        return st->uidvalidity;
    uint32_t v = hash32("postern folder uidvalidity", st->uidvalidity, id, NULL) & 0x7fffffffu;
    return v ? v : 1;
}

/* ---- the join ---- */

/* Joins src entry s into dst entry d of space dsp; kwmap maps src register ids to dst ids.
 * Needs room for s->nreg more registers in d and for two more dead ranges in dsp. Cannot
 * fail. */
static void entry_join(space *dsp, entry *d, const entry *s, const uint16_t *kwmap)
{
    if (s->born && (!d->born || s->born < d->born))
        d->born = s->born; /* the earliest sighting, whatever the order */
    if (mstate_hlc_cmp(s->filed, d->filed) > 0)
        d->filed = s->filed; /* the latest filing: a MODSEQ only moves up */
    if (s->tomb) {
        if (!d->tomb || mstate_hlc_cmp(s->tomb_t, d->tomb_t) < 0)
            d->tomb_t = s->tomb_t; /* the first expunge, so the join does not depend on order */
        d->tomb = 1;
    }
    if (s->claimed) {
        if (!d->claimed) {
            d->claimed = 1;
            d->gen = s->gen;
            d->uid = s->uid;
        } else if (s->gen > d->gen) {
            if (d->uid)
                dead_add(dsp, d->uid, d->uid);
            d->gen = s->gen;
            d->uid = s->uid;
        } else if (s->gen < d->gen) {
            if (s->uid)
                dead_add(dsp, s->uid, s->uid);
        } else if (s->uid != d->uid) {
            if (d->uid)
                dead_add(dsp, d->uid, d->uid);
            if (s->uid)
                dead_add(dsp, s->uid, s->uid);
            d->uid = 0;
        }
    }
    if (d->tomb) {
        d->nreg = 0; /* a tombstone beats every flag: nothing to keep */
        d->filed = (mstate_hlc){0, 0, 0};
        return;
    }
    for (unsigned i = 0; i < s->nreg; i++) {
        const reg *r = &s->regs[i];
        uint16_t id = kwmap[r->id];
        reg *mine = find_reg(d, id);
        if (!mine) {
            mine = &d->regs[d->nreg++];
            *mine = *r;
            mine->id = id;
            continue;
        }
        int c = mstate_hlc_cmp(r->t, mine->t);
        /* equal stamps are one event; should a broken writer reuse one, "set" wins so the
         * result still does not depend on the order */
        if (c > 0 || (c == 0 && r->val > mine->val)) {
            mine->val = r->val;
            mine->t = r->t;
        }
    }
}

static void clock_see(mstate *st, mstate_hlc t)
{
    if (t.ms > st->clock.ms || (t.ms == st->clock.ms && t.count > st->clock.count)) {
        st->clock.ms = t.ms;
        st->clock.count = t.count;
    }
}

typedef struct uid_ref {
    uint32_t uid;
    uint32_t idx;
} uid_ref;

static int uid_ref_cmp(const void *a, const void *b)
{
    const uid_ref *x = a, *y = b;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Two different entries holding one UID: the UID is dead for both (both get re-homed). Only
 * a claim that appeared or moved can start such a share, so only the k moved UIDs are looked
 * for, in one pass over the entries. Needs room for k more dead ranges; reorders moved. */
static void burn_moved(space *sp, uint32_t *moved, size_t k, uint8_t *holders)
{
    if (!k)
        return;
    qsort(moved, k, sizeof *moved, u32_cmp);
    memset(holders, 0, k);
    for (size_t i = 0; i < sp->n; i++) {
        const entry *e = &sp->ent[i];
        if (!e->claimed || !e->uid)
            continue;
        uint32_t *hit = bsearch(&e->uid, moved, k, sizeof *moved, u32_cmp);
        if (hit && holders[hit - moved] < 2)
            holders[hit - moved]++; /* duplicates in moved: bsearch finds one of them, fine */
    }
    for (size_t j = 0; j < k; j++)
        if (holders[j] >= 2)
            dead_add(sp, moved[j], moved[j]);
}

/* The claimed UIDs above the horizon, ascending (*out malloc'd; NULL when there are none). */
static int uids_above_horizon(const space *sp, uint32_t **out, size_t *k)
{
    *out = NULL;
    *k = 0;
    size_t n = 0;
    for (size_t i = 0; i < sp->n; i++)
        n += sp->ent[i].claimed && sp->ent[i].uid > sp->horizon;
    if (!n)
        return MSTATE_OK;
    uint32_t *u = malloc(n * sizeof *u);
    if (!u)
        return MSTATE_ENOMEM;
    for (size_t i = 0; i < sp->n; i++)
        if (sp->ent[i].claimed && sp->ent[i].uid > sp->horizon)
            u[(*k)++] = sp->ent[i].uid;
    qsort(u, *k, sizeof *u, u32_cmp);
    *out = u;
    return MSTATE_OK;
}

/* The first dead range that ends at or after uid, or NULL. */
static const range *dead_from(const space *sp, uint32_t uid)
{
    size_t a = 0, b = sp->ndead;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (sp->dead[mid].hi < uid)
            a = mid + 1;
        else
            b = mid;
    }
    return a < sp->ndead ? &sp->dead[a] : NULL;
}

/* Walks the UIDs above the horizon. With kill set, every UID nobody is known to hold is made
 * dead (needs room for k + 1 more ranges) and the horizon reaches hw; without, the horizon
 * stops before the first such gap. A gap is a claim this site has not read yet (deltas
 * arrive in any order): until it is read or killed, what lies above stays hidden, so a
 * message never appears below a UIDNEXT the site already announced. */
static void walk_horizon(space *sp, const uint32_t *u, size_t k, int kill)
{
    uint32_t h = sp->horizon;
    size_t j = 0;
    while (h < sp->hw) {
        uint32_t next = h + 1;
        while (j < k && u[j] < next)
            j++;
        if (j < k && u[j] == next) {
            h = next;
            continue;
        }
        const range *r = dead_from(sp, next);
        if (r && r->lo <= next) {
            h = r->hi < sp->hw ? r->hi : sp->hw;
            continue;
        }
        if (!kill)
            break;
        /* the gap runs up to the next held or dead UID */
        uint32_t end = sp->hw;
        if (j < k && u[j] - 1 < end)
            end = u[j] - 1;
        if (r && r->lo - 1 < end)
            end = r->lo - 1;
        dead_add(sp, next, end);
        h = end;
    }
    sp->horizon = h;
}

/* Moves the horizon up as far as what is known allows. Out of memory it stays (hiding more
 * is safe). */
static void raise_horizon(space *sp)
{
    uint32_t *u;
    size_t k;
    if (sp->horizon == sp->hw || uids_above_horizon(sp, &u, &k) != MSTATE_OK)
        return;
    walk_horizon(sp, u, k, 0);
    free(u);
}

/* Maps src's keyword ids to dst's (kwmap), adding to dst the names it lacks among those
 * used[] marks; of two spellings of one name the bytewise smaller is kept, so every site ends
 * with the same spelling. On failure dst may have gained some names (harmless: a name is
 * only a table row until a register uses it). */
static int kw_map(mstate *dst, const mstate *src, const uint8_t *used, uint16_t *kwmap)
{
    for (unsigned f = 0; f < SYSTEM_FLAGS; f++)
        kwmap[f] = (uint16_t)f;
    for (unsigned k = 0; k < src->nkw; k++) {
        if (used && !used[k])
            continue;
        int at = kw_find(dst, src->kw[k]);
        if (at < 0) {
            if (dst->nkw == MSTATE_KEYWORD_MAX)
                return MSTATE_ELIMIT;
            if (!(dst->kw[dst->nkw] = strdup(src->kw[k])))
                return MSTATE_ENOMEM;
            at = (int)dst->nkw++;
        } else if (strcmp(src->kw[k], dst->kw[at]) < 0) {
            char *s = strdup(src->kw[k]);
            if (!s)
                return MSTATE_ENOMEM;
            free(dst->kw[at]);
            dst->kw[at] = s;
        }
        kwmap[SYSTEM_FLAGS + k] = (uint16_t)(SYSTEM_FLAGS + at);
    }
    return MSTATE_OK;
}

/* Joins entries idx[0..n) of src space ssp (all when idx is NULL) and, for a full join, the
 * space's UID bookkeeping into dst's space dsp. Everything that can fail is done before dsp
 * changes. */
static int join_space(mstate *dst, space *dsp, const space *ssp, const size_t *idx, size_t n,
                      const uint16_t *kwmap)
{
    if (!idx)
        n = ssp->n;
    int rc = MSTATE_OK;
    size_t add = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *s = &ssp->ent[idx ? idx[i] : i];
        long at = find_entry(dsp, s->key, s->copy);
        if (at < 0)
            add++;
        else if (!dsp->ent[at].tomb && !s->tomb && (rc = reserve_regs(&dsp->ent[at], s->nreg)) != MSTATE_OK)
            return rc;
    }
    if ((rc = reserve_entries(dst, dsp, add)) != MSTATE_OK)
        return rc;
    /* new entries' register arrays are allocated into a side table first, to keep the
     * no-failure rule */
    reg **newregs = calloc(add ? add : 1, sizeof *newregs);
    uint32_t *moved = malloc((n ? n : 1) * sizeof *moved);
    uint8_t *holders = malloc(n ? n : 1);
    size_t a = 0;
    if (!newregs || !moved || !holders || (rc = reserve_dead(dsp, (idx ? 0 : ssp->ndead) + 3 * n)) != MSTATE_OK) {
        if (rc == MSTATE_OK)
            rc = MSTATE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const entry *s = &ssp->ent[idx ? idx[i] : i];
        if (find_entry(dsp, s->key, s->copy) >= 0)
            continue;
        if (s->nreg && !s->tomb && !(newregs[a] = malloc(s->nreg * sizeof(reg)))) {
            rc = MSTATE_ENOMEM;
            goto out;
        }
        a++;
    }

    /* from here on nothing fails */
    size_t used = 0, nmoved = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *s = &ssp->ent[idx ? idx[i] : i];
        long at = find_entry(dsp, s->key, s->copy);
        entry *d;
        if (at < 0) {
            d = add_entry(dst, dsp, s->key, s->copy);
            d->regs = newregs[used];
            d->capreg = newregs[used] ? s->nreg : 0;
            newregs[used++] = NULL;
        } else {
            d = &dsp->ent[at];
        }
        uint32_t had_gen = d->gen, had_uid = d->uid;
        uint8_t had_claim = d->claimed;
        entry_join(dsp, d, s, kwmap);
        if ((d->claimed != had_claim || d->gen != had_gen || d->uid != had_uid) && d->uid)
            moved[nmoved++] = d->uid;
        if (s->tomb)
            clock_see(dst, s->tomb_t);
        if (s->filed.site)
            clock_see(dst, s->filed); /* a later change here then has a higher MODSEQ */
        for (unsigned r = 0; r < s->nreg; r++)
            clock_see(dst, s->regs[r].t);
    }
    if (!idx) {
        for (size_t r = 0; r < ssp->ndead; r++)
            dead_add(dsp, ssp->dead[r].lo, ssp->dead[r].hi);
        if (ssp->hw > dsp->hw)
            dsp->hw = ssp->hw;
        /* a pending delta (idx given) is never shown and gets the state's dead set when
         * sealed: skipping the scans keeps a local change O(1) however big it grows */
        burn_moved(dsp, moved, nmoved, holders);
        raise_horizon(dsp);
    }
out:
    for (size_t j = 0; newregs && j < a; j++)
        free(newregs[j]);
    free(newregs);
    free(moved);
    free(holders);
    return rc;
}

static int name_dup(char **dst, const char *src)
{
    char *s = strdup(src);
    if (!s)
        return MSTATE_ENOMEM;
    if (*dst) {
        sodium_memzero(*dst, strlen(*dst));
        free(*dst);
    }
    *dst = s;
    return MSTATE_OK;
}

/* Joins directory record s into dst's record of the same id. */
static int rec_join(mstate *dst, const folder_rec *s)
{
    folder_rec *d = get_rec(dst, s->id);
    if (!d)
        return dst->ndir >= MSTATE_FOLDERS_MAX ? MSTATE_ELIMIT : MSTATE_ENOMEM;
    if (s->named) {
        int c = d->named ? mstate_hlc_cmp(s->name_t, d->name_t) : 1;
        /* equal stamps are one event; a broken writer's tie goes to the smaller name */
        if (c > 0 || (c == 0 && strcmp(s->name, d->name) < 0)) {
            int rc = name_dup(&d->name, s->name);
            if (rc != MSTATE_OK)
                return rc;
            d->name_t = s->name_t;
            d->named = 1;
        }
        clock_see(dst, s->name_t);
    }
    if (s->deleted) {
        if (!d->deleted || mstate_hlc_cmp(s->del_t, d->del_t) < 0)
            d->del_t = s->del_t; /* the first delete */
        d->deleted = 1;
        clock_see(dst, s->del_t);
    }
    if (s->has_sub) {
        int c = d->has_sub ? mstate_hlc_cmp(s->sub_t, d->sub_t) : 1;
        if (c > 0 || (c == 0 && s->sub > d->sub)) {
            d->sub = s->sub;
            d->sub_t = s->sub_t;
        }
        d->has_sub = 1;
        clock_see(dst, s->sub_t);
    }
    return MSTATE_OK;
}

/* A deleted folder's entries are all expunged, at the first expunge or the delete, whichever
 * came first: the same result whichever of the two a site learnt first. */
static void bury(mstate *st)
{
    for (size_t s = 0; s < st->nsp; s++) {
        space *sp = st->sp[s];
        const folder_rec *r = sp->folder >= MSTATE_FIXED_FOLDERS ? find_rec(st, sp->folder) : NULL;
        if (!r || !r->deleted)
            continue;
        for (size_t i = 0; i < sp->n; i++) {
            entry *e = &sp->ent[i];
            if (!e->tomb || mstate_hlc_cmp(r->del_t, e->tomb_t) < 0)
                e->tomb_t = r->del_t;
            e->tomb = 1;
            e->nreg = 0;
            e->filed = (mstate_hlc){0, 0, 0};
        }
    }
}

/* dst := dst joined with all of src. */
static int join(mstate *dst, const mstate *src)
{
    if (dst->uidvalidity != src->uidvalidity)
        return MSTATE_EMISMATCH;
    uint16_t kwmap[SYSTEM_FLAGS + MSTATE_KEYWORD_MAX];
    int rc = kw_map(dst, src, NULL, kwmap);
    for (size_t i = 0; rc == MSTATE_OK && i < src->ndir; i++)
        rc = rec_join(dst, &src->dir[i]);
    for (size_t s = 0; rc == MSTATE_OK && s < src->nsp; s++) {
        space *dsp = get_space(dst, src->sp[s]->folder);
        rc = dsp ? join_space(dst, dsp, src->sp[s], NULL, 0, kwmap) : MSTATE_ENOMEM;
    }
    bury(dst);
    clock_see(dst, src->clock);
    if (rc != MSTATE_OK)
        return rc; /* what was joined stands; src's deltas are not recorded as covered */
    for (unsigned c = 0; c < src->ncov; c++) {
        cover *d = get_cover(dst, src->cov[c].site);
        if (d) /* beyond MSTATE_SITES_MAX coverage is not recorded: deltas are kept, not lost */
            cover_join(d, &src->cov[c]);
    }
    return MSTATE_OK;
}

int mstate_merge(mstate *dst, const mstate *src)
{
    if (!dst || !src)
        return MSTATE_EINVAL;
    if (dst == src)
        return MSTATE_OK;
    return join(dst, src);
}

/* ---- local changes ---- */

static mstate_hlc tick(mstate *st, uint64_t now_ms)
{
    if (now_ms >= HLC_MS_MAX - 1)
        now_ms = HLC_MS_MAX - 2; /* a wild clock must not make the state unreadable */
    if (now_ms > st->clock.ms) {
        st->clock.ms = now_ms;
        st->clock.count = 0;
    } else if (st->clock.count == UINT32_MAX) {
        st->clock.ms++; /* never repeat a stamp, even at a billion changes per millisecond */
        st->clock.count = 0;
    } else {
        st->clock.count++;
    }
    st->clock.site = st->site;
    return st->clock;
}

static int pending_ready(mstate *st)
{
    if (st->pending_all)
        return 0;
    if (!st->pending && !(st->pending = mstate_new(st->site, st->uidvalidity))) {
        st->pending_all = 1;
        return 0;
    }
    return 1;
}

/* Copies the current value of entry i of st's space sp into the pending delta. */
static void note_pending(mstate *st, const space *sp, size_t i)
{
    if (!pending_ready(st))
        return;
    uint16_t kwmap[SYSTEM_FLAGS + MSTATE_KEYWORD_MAX];
    uint8_t used[MSTATE_KEYWORD_MAX] = {0};
    const entry *e = &sp->ent[i];
    for (unsigned r = 0; r < e->nreg; r++)
        if (e->regs[r].id >= SYSTEM_FLAGS)
            used[e->regs[r].id - SYSTEM_FLAGS] = 1;
    space *psp = get_space(st->pending, sp->folder);
    size_t idx[1] = {i};
    if (!psp || kw_map(st->pending, st, used, kwmap) != MSTATE_OK ||
        join_space(st->pending, psp, sp, idx, 1, kwmap) != MSTATE_OK)
        st->pending_all = 1; /* the next delta then carries the whole state instead */
}

/* Copies st's directory record of id into the pending delta. */
static void note_rec(mstate *st, uint32_t id)
{
    const folder_rec *r = find_rec(st, id);
    if (r && pending_ready(st) && rec_join(st->pending, r) != MSTATE_OK)
        st->pending_all = 1;
}

/* Live, and no valid claim: mstate_assign gives it a new UID. */
static int is_homeless(const space *sp, const entry *e)
{
    return !e->tomb && (!e->claimed || !e->uid || dead_has(sp, e->uid));
}

/* The UID a client is shown: a valid claim at or below the horizon. */
static uint32_t effective_uid(const space *sp, const entry *e)
{
    if (e->tomb || is_homeless(sp, e) || e->uid > sp->horizon)
        return 0;
    return e->uid;
}

static int entry_cmp_idx(const void *a, const void *b, void *arg)
{
    const space *sp = arg;
    const entry *x = &sp->ent[*(const size_t *)a], *y = &sp->ent[*(const size_t *)b];
    int c = memcmp(x->key, y->key, MSTATE_MSGKEY_BYTES);
    if (c)
        return c;
    return (x->copy > y->copy) - (x->copy < y->copy);
}

/* Readies sp to give out `count` new UIDs above everything it has seen: the gaps below are
 * killed (claims not read yet: whoever holds such a UID elsewhere is re-homed, always safe),
 * a numbering that begins here starts at the floor. Then sp->hw + 1 .. sp->hw + count are
 * free; the caller takes them and sets the horizon to the new hw. Needs `extra` more dead
 * ranges on top (for the caller's re-homes). */
static int open_numbering(mstate *st, space *sp, size_t count, size_t extra)
{
    uint32_t base = !sp->hw && st->floor > 1 ? st->floor - 1 : sp->hw;
    if ((uint64_t)base + count > MSTATE_UID_MAX)
        return MSTATE_ELIMIT;
    uint32_t *above;
    size_t nabove;
    int rc = uids_above_horizon(sp, &above, &nabove);
    if (rc != MSTATE_OK)
        return rc;
    if ((rc = reserve_dead(sp, extra + nabove + sp->ndead + 1)) != MSTATE_OK) {
        free(above);
        return rc;
    }
    sp->hw = base;
    walk_horizon(sp, above, nabove, 1);
    free(above);
    return MSTATE_OK;
}

/* Re-homes the homeless entries of sp and, for the INBOX, files the fresh keys. */
static int assign_in(mstate *st, space *sp, const uint8_t (*keys)[MSTATE_MSGKEY_BYTES], size_t n,
                     uint64_t now_ms, size_t *given)
{
    size_t *homeless = malloc((sp->n ? sp->n : 1) * sizeof *homeless);
    if (!homeless)
        return MSTATE_ENOMEM;
    int rc = MSTATE_OK;
    size_t nh = 0;
    for (size_t i = 0; i < sp->n; i++)
        if (is_homeless(sp, &sp->ent[i]))
            homeless[nh++] = i;
    /* canonical order, so two sites that know the same re-home the same way */
    qsort_r(homeless, nh, sizeof *homeless, entry_cmp_idx, sp);
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++)
        if (find_msg(sp, keys[i], NULL) < 0)
            fresh++;
    if (!nh && !fresh)
        goto out; /* nothing to claim: gaps may still fill by themselves */
    if ((rc = reserve_entries(st, sp, fresh)) != MSTATE_OK || (rc = open_numbering(st, sp, nh + fresh, nh)) != MSTATE_OK)
        goto out;
    for (size_t h = 0; h < nh; h++) {
        entry *e = &sp->ent[homeless[h]];
        if (e->claimed && e->uid)
            dead_add(sp, e->uid, e->uid);
        e->gen = e->claimed ? e->gen + 1 : 0;
        e->claimed = 1;
        e->uid = ++sp->hw;
        e->filed = tick(st, now_ms);
        note_pending(st, sp, homeless[h]);
    }
    *given += nh;
    for (size_t i = 0; i < n; i++) {
        if (find_msg(sp, keys[i], NULL) >= 0)
            continue; /* known, or listed twice */
        entry *e = add_entry(st, sp, keys[i], 0);
        e->born = day_of(now_ms);
        e->claimed = 1;
        e->uid = ++sp->hw;
        e->filed = tick(st, now_ms);
        note_pending(st, sp, sp->n - 1);
        (*given)++;
    }
    sp->horizon = sp->hw;
out:
    free(homeless);
    return rc;
}

int mstate_assign(mstate *st, const uint8_t (*keys)[MSTATE_MSGKEY_BYTES], size_t n, uint64_t now_ms,
                  size_t *assigned)
{
    if (assigned)
        *assigned = 0;
    if (!st || (n && !keys))
        return MSTATE_EINVAL;
    /* claims carry no stamp: the rule needs none (see mstate.h); now_ms dates new entries */
    size_t given = 0;
    int rc = MSTATE_OK;
    if (n && !get_space(st, MSTATE_INBOX))
        return MSTATE_ENOMEM;
    for (size_t s = 0; s < st->nsp && rc == MSTATE_OK; s++) {
        space *sp = st->sp[s];
        int inbox = sp->folder == MSTATE_INBOX;
        if (!inbox && folder_deleted(st, sp->folder))
            continue; /* buried: nothing in it is live */
        rc = assign_in(st, sp, inbox ? keys : NULL, inbox ? n : 0, now_ms, &given);
    }
    if (assigned)
        *assigned = given;
    return rc;
}

/* Drops the entries the rule names from sp: their UIDs go dead, so a reader of what st writes
 * next still finds 1..horizon known. */
static int forget_in(mstate *st, space *sp, int (*present)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES]),
                     void *arg, uint32_t today, unsigned min_age_days, size_t *forgotten)
{
    size_t n = 0;
    for (size_t i = 0; i < sp->n; i++) {
        const entry *e = &sp->ent[i];
        n += e->born && today >= e->born && today - e->born >= min_age_days && !present(arg, e->key);
    }
    if (!n)
        return MSTATE_OK;
    uint32_t *slot = calloc(sp->nslot, sizeof *slot);
    int rc = slot ? reserve_dead(sp, n) : MSTATE_ENOMEM;
    if (rc != MSTATE_OK) {
        free(slot);
        return rc;
    }
    size_t kept = 0;
    for (size_t i = 0; i < sp->n; i++) {
        entry *e = &sp->ent[i];
        if (e->born && today >= e->born && today - e->born >= min_age_days && !present(arg, e->key)) {
            if (e->claimed && e->uid)
                dead_add(sp, e->uid, e->uid);
            free(e->regs);
            continue;
        }
        sp->ent[kept] = *e;
        slot_put(slot, sp->nslot, sp->ent, (uint32_t)kept);
        kept++;
    }
    free(sp->slot);
    sp->slot = slot;
    st->nent -= sp->n - kept;
    sp->n = kept;
    raise_horizon(sp);
    *forgotten += n;
    return MSTATE_OK;
}

int mstate_forget(mstate *st, int (*present)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES]), void *arg,
                  uint64_t now_ms, unsigned min_age_days, size_t *forgotten)
{
    if (forgotten)
        *forgotten = 0;
    if (!st || !present || !min_age_days)
        return MSTATE_EINVAL;
    uint32_t today = day_of(now_ms);
    size_t n = 0, in_pending = 0;
    int rc = MSTATE_OK;
    for (size_t s = 0; s < st->nsp && rc == MSTATE_OK; s++)
        rc = forget_in(st, st->sp[s], present, arg, today, min_age_days, &n);
    for (size_t s = 0; st->pending && s < st->pending->nsp && rc == MSTATE_OK; s++)
        rc = forget_in(st->pending, st->pending->sp[s], present, arg, today, min_age_days, &in_pending);
    if (forgotten)
        *forgotten = n;
    return rc;
}

int mstate_skip_deltas(mstate *st, uint64_t next)
{
    if (!st || !next)
        return MSTATE_EINVAL;
    cover *own = get_cover(st, st->site);
    if (!own)
        return MSTATE_ELIMIT;
    /* as if 1..next-1 were in: out-of-order extras would overflow and repeat a number */
    if (next - 1 > cover_max(own)) {
        own->upto = next - 1;
        own->nextra = 0;
    }
    return MSTATE_OK;
}

void mstate_set_uid_floor(mstate *st, uint32_t floor)
{
    if (st)
        st->floor = floor < MSTATE_UID_FLOOR_MAX ? floor : MSTATE_UID_FLOOR_MAX;
}

static int set_reg(mstate *st, entry *e, uint16_t id, uint8_t val, uint64_t now_ms)
{
    reg *r = find_reg(e, id);
    if (r && r->val == val)
        return MSTATE_OK;
    if (!r && val == 0)
        return MSTATE_OK; /* never set: already clear everywhere we know of */
    if (!r) {
        int rc = reserve_regs(e, 1);
        if (rc != MSTATE_OK)
            return rc;
        r = &e->regs[e->nreg++];
        r->id = id;
    }
    r->val = val;
    r->t = tick(st, now_ms);
    return MSTATE_OK;
}

/* The live entry of key in folder (and its space), or -1. */
static long live_entry(const mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], space **out)
{
    space *sp = find_space(st, folder);
    long i = sp ? find_msg(sp, key, NULL) : -1;
    *out = sp;
    return i >= 0 && !sp->ent[i].tomb ? i : -1;
}

static int apply_flags(mstate *st, space *sp, size_t i, unsigned set_mask, unsigned clear_mask, uint64_t now_ms)
{
    int changed = 0, rc = MSTATE_OK;
    for (unsigned f = 0; f < SYSTEM_FLAGS && rc == MSTATE_OK; f++) {
        unsigned bit = 1u << f;
        if (!((set_mask | clear_mask) & bit))
            continue;
        entry *e = &sp->ent[i];
        reg *r = find_reg(e, (uint16_t)f);
        uint8_t want = (set_mask & bit) ? 1 : 0;
        if (r ? r->val == want : !want)
            continue;
        if ((rc = set_reg(st, e, (uint16_t)f, want, now_ms)) == MSTATE_OK)
            changed = 1;
    }
    if (changed)
        note_pending(st, sp, i);
    return rc;
}

int mstate_set_flags(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], unsigned set_mask,
                     unsigned clear_mask, uint64_t now_ms)
{
    if (!st || !key || (set_mask | clear_mask) & ~MSTATE_FLAGS_ALL)
        return MSTATE_EINVAL;
    space *sp = find_space(st, folder);
    long i = sp ? find_msg(sp, key, NULL) : -1;
    if (i < 0)
        return MSTATE_EINVAL;
    if (sp->ent[i].tomb)
        return MSTATE_OK;
    return apply_flags(st, sp, (size_t)i, set_mask, clear_mask, now_ms);
}

int mstate_set_keyword(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], const char *name,
                       int on, uint64_t now_ms)
{
    if (!st || !key || !kw_valid(name))
        return MSTATE_EINVAL;
    space *sp = find_space(st, folder);
    long i = sp ? find_msg(sp, key, NULL) : -1;
    if (i < 0)
        return MSTATE_EINVAL;
    if (sp->ent[i].tomb)
        return MSTATE_OK;
    int k = kw_find(st, name), added = 0;
    if (k < 0) {
        if (!on)
            return MSTATE_OK;
        added = 1;
        if (st->nkw == MSTATE_KEYWORD_MAX)
            return MSTATE_ELIMIT;
        if (!(st->kw[st->nkw] = strdup(name)))
            return MSTATE_ENOMEM;
        k = (int)st->nkw++;
    }
    reg *r = find_reg(&sp->ent[i], (uint16_t)(SYSTEM_FLAGS + k));
    uint8_t want = on ? 1 : 0;
    if (r ? r->val == want : !want)
        return MSTATE_OK;
    int rc = set_reg(st, &sp->ent[i], (uint16_t)(SYSTEM_FLAGS + k), want, now_ms);
    if (rc == MSTATE_OK) {
        note_pending(st, sp, (size_t)i);
    } else if ((unsigned)k == st->nkw - 1 && added) {
        free(st->kw[--st->nkw]); /* a name no register uses would never reach a delta */
        st->kw[st->nkw] = NULL;
    }
    return rc;
}

int mstate_expunge(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], uint64_t now_ms)
{
    if (!st || !key)
        return MSTATE_EINVAL;
    if (!mstate_folder_exists(st, folder))
        return folder_deleted(st, folder) ? MSTATE_OK : MSTATE_ENOFOLDER; /* buried already */
    space *sp = get_space(st, folder);
    if (!sp)
        return MSTATE_ENOMEM;
    long i = find_msg(sp, key, NULL);
    if (i >= 0 && sp->ent[i].tomb)
        return MSTATE_OK;
    if (i < 0) {
        int rc = reserve_entries(st, sp, 1);
        if (rc != MSTATE_OK)
            return rc;
        add_entry(st, sp, key, 0)->born = day_of(now_ms);
        i = (long)sp->n - 1;
    }
    entry *e = &sp->ent[i];
    e->tomb = 1;
    e->tomb_t = tick(st, now_ms);
    e->nreg = 0;
    e->filed = (mstate_hlc){0, 0, 0};
    note_pending(st, sp, (size_t)i);
    return MSTATE_OK;
}

/* A new live entry of key in sp (the next incarnation after what sp knows), with the next
 * UID. *at gets its index. */
static int file_new(mstate *st, space *sp, const uint8_t key[MSTATE_MSGKEY_BYTES], uint64_t now_ms, size_t *at)
{
    long top;
    find_msg(sp, key, &top);
    if (top >= (long)COPY_MAX)
        return MSTATE_ELIMIT;
    int rc = reserve_entries(st, sp, 1);
    if (rc == MSTATE_OK)
        rc = open_numbering(st, sp, 1, 0);
    if (rc != MSTATE_OK)
        return rc;
    entry *e = add_entry(st, sp, key, (uint32_t)(top + 1));
    e->born = day_of(now_ms);
    e->claimed = 1;
    e->uid = ++sp->hw;
    e->filed = tick(st, now_ms);
    sp->horizon = sp->hw;
    *at = sp->n - 1;
    return MSTATE_OK;
}

int mstate_copy(mstate *st, uint32_t from, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t to, uint64_t now_ms,
                uint32_t *uid)
{
    if (uid)
        *uid = 0;
    if (!st || !key)
        return MSTATE_EINVAL;
    space *ssp, *dsp;
    long si = mstate_folder_exists(st, from) ? live_entry(st, from, key, &ssp) : -1;
    if (si < 0)
        return MSTATE_EINVAL;
    if (!mstate_folder_exists(st, to))
        return MSTATE_ENOFOLDER;
    if (!get_space(st, to)) /* spaces are allocated one by one: ssp stays valid */
        return MSTATE_ENOMEM;
    long have = live_entry(st, to, key, &dsp);
    if (have >= 0) {
        if (uid)
            *uid = effective_uid(dsp, &dsp->ent[have]);
        return MSTATE_OK;
    }
    size_t at;
    int rc = file_new(st, dsp, key, now_ms, &at);
    if (rc != MSTATE_OK)
        return rc;
    /* the flags and keywords as they are now, stamped anew: the copy is a new entry, and its
     * registers must beat nothing but what is done to it later (from != to here: a copy into
     * its own folder found itself above, so ssp's entries did not move) */
    const entry *s = &ssp->ent[si];
    entry *d = &dsp->ent[at];
    if (s->nreg && (rc = reserve_regs(d, s->nreg)) == MSTATE_OK) {
        for (unsigned r = 0; r < s->nreg; r++)
            if (s->regs[r].val) {
                d->regs[d->nreg].id = s->regs[r].id;
                d->regs[d->nreg].val = 1;
                d->regs[d->nreg].t = tick(st, now_ms);
                d->nreg++;
            }
    }
    note_pending(st, dsp, at);
    if (uid)
        *uid = d->uid;
    return rc; /* out of memory for the flags: the copy stands, without them */
}

int mstate_append(mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], unsigned flags,
                  uint64_t now_ms, uint32_t *uid)
{
    if (uid)
        *uid = 0;
    if (!st || !key || flags & ~MSTATE_FLAGS_ALL)
        return MSTATE_EINVAL;
    if (!mstate_folder_exists(st, folder))
        return MSTATE_ENOFOLDER;
    int rc;
    if (folder != MSTATE_INBOX) {
        space *in = find_space(st, MSTATE_INBOX);
        if ((!in || find_msg(in, key, NULL) < 0) && (rc = mstate_expunge(st, MSTATE_INBOX, key, now_ms)) != MSTATE_OK)
            return rc;
    }
    space *sp = get_space(st, folder);
    if (!sp)
        return MSTATE_ENOMEM;
    long have = live_entry(st, folder, key, &sp);
    size_t at;
    if (have >= 0)
        at = (size_t)have;
    else if ((rc = file_new(st, sp, key, now_ms, &at)) != MSTATE_OK)
        return rc;
    else
        note_pending(st, sp, at);
    rc = apply_flags(st, sp, at, flags, 0, now_ms);
    if (uid)
        *uid = effective_uid(sp, &sp->ent[at]);
    return rc;
}

/* ---- folders ---- */

static int is_fixed_name(const char *name)
{
    for (unsigned i = 0; i < MSTATE_FIXED_FOLDERS; i++)
        if (ascii_casecmp(name, fixed_names[i]) == 0)
            return 1;
    return 0;
}

static int folder_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (!len || len > MSTATE_FOLDER_NAME_MAX || name[0] == MSTATE_FOLDER_SEP || name[len - 1] == MSTATE_FOLDER_SEP)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c > 0x7e || c == '*' || c == '%' ||
            (c == MSTATE_FOLDER_SEP && name[i + 1] == MSTATE_FOLDER_SEP))
            return 0;
    }
    return !is_fixed_name(name);
}

int mstate_folder_create(mstate *st, const char *name, uint64_t now_ms, uint32_t *id)
{
    if (id)
        *id = 0;
    if (!st || !folder_name_valid(name))
        return st && name && is_fixed_name(name) ? MSTATE_EEXIST : MSTATE_EINVAL;
    uint32_t have;
    if (mstate_folder_find(st, name, &have) == MSTATE_OK)
        return MSTATE_EEXIST;
    /* the id of (name, incarnation): the first incarnation whose id no record holds, so two
     * sites that know the same history pick the same one */
    uint32_t fid = 0;
    for (uint32_t inc = 0; inc < 4 * MSTATE_FOLDERS_MAX; inc++) {
        uint32_t v = hash32("postern folder id", st->uidvalidity, inc, name) & 0x7fffffffu;
        if (v >= MSTATE_USER_FOLDER_MIN && !find_rec(st, v)) {
            fid = v;
            break;
        }
    }
    if (!fid)
        return MSTATE_ELIMIT;
    char *copy = strdup(name);
    if (!copy)
        return MSTATE_ENOMEM;
    folder_rec *r = get_rec(st, fid);
    if (!r) {
        free(copy);
        return st->ndir >= MSTATE_FOLDERS_MAX ? MSTATE_ELIMIT : MSTATE_ENOMEM;
    }
    r->name = copy;
    r->named = 1;
    r->name_t = tick(st, now_ms);
    note_rec(st, fid);
    if (id)
        *id = fid;
    return MSTATE_OK;
}

int mstate_folder_rename(mstate *st, uint32_t id, const char *name, uint64_t now_ms)
{
    if (!st)
        return MSTATE_EINVAL;
    if (id < MSTATE_FIXED_FOLDERS)
        return MSTATE_EFIXED;
    if (!mstate_folder_exists(st, id))
        return MSTATE_ENOFOLDER;
    if (!folder_name_valid(name))
        return name && is_fixed_name(name) ? MSTATE_EEXIST : MSTATE_EINVAL;
    uint32_t have;
    if (mstate_folder_find(st, name, &have) == MSTATE_OK)
        return have == id ? MSTATE_OK : MSTATE_EEXIST;
    folder_rec *r = find_rec(st, id);
    int rc = name_dup(&r->name, name);
    if (rc != MSTATE_OK)
        return rc;
    r->name_t = tick(st, now_ms);
    note_rec(st, id);
    return MSTATE_OK;
}

int mstate_folder_delete(mstate *st, uint32_t id, uint64_t now_ms)
{
    if (!st)
        return MSTATE_EINVAL;
    if (id < MSTATE_FIXED_FOLDERS)
        return MSTATE_EFIXED;
    if (!mstate_folder_exists(st, id))
        return MSTATE_ENOFOLDER;
    folder_rec *r = find_rec(st, id);
    r->deleted = 1;
    r->del_t = tick(st, now_ms);
    note_rec(st, id);
    bury(st); /* every site does the same when it reads the record: the delta needs no entries */
    return MSTATE_OK;
}

int mstate_folder_subscribe(mstate *st, uint32_t id, int on, uint64_t now_ms)
{
    if (!st)
        return MSTATE_EINVAL;
    if (!mstate_folder_exists(st, id))
        return MSTATE_ENOFOLDER;
    const folder_rec *have = find_rec(st, id);
    int now = have && have->has_sub ? have->sub : id < MSTATE_FIXED_FOLDERS;
    if (now == !!on)
        return MSTATE_OK; /* no new stamp for what is already so (as for flags) */
    folder_rec *r = get_rec(st, id);
    if (!r)
        return st->ndir >= MSTATE_FOLDERS_MAX ? MSTATE_ELIMIT : MSTATE_ENOMEM;
    r->has_sub = 1;
    r->sub = !!on;
    r->sub_t = tick(st, now_ms);
    note_rec(st, id);
    return MSTATE_OK;
}

int mstate_folder_count(const mstate *st, uint32_t id, size_t *messages, size_t *unseen)
{
    *messages = *unseen = 0;
    if (!mstate_folder_exists(st, id))
        return MSTATE_ENOFOLDER;
    const space *sp = find_space(st, id);
    for (size_t i = 0; sp && i < sp->n; i++) {
        const entry *e = &sp->ent[i];
        if (!effective_uid(sp, e) || find_msg(sp, e->key, NULL) != (long)i)
            continue; /* as mstate_foreach_uid: the current incarnation only */
        (*messages)++;
        const reg *seen = find_reg(e, 0);
        *unseen += !(seen && seen->val);
    }
    return MSTATE_OK;
}

static int folder_id_cmp(const void *a, const void *b)
{
    uint32_t x = ((const mstate_folder *)a)->id, y = ((const mstate_folder *)b)->id;
    return (x > y) - (x < y);
}

typedef struct name_ref {
    const folder_rec *r;
} name_ref;

static int name_ref_cmp(const void *a, const void *b)
{
    const folder_rec *x = ((const name_ref *)a)->r, *y = ((const name_ref *)b)->r;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if ((c = mstate_hlc_cmp(x->name_t, y->name_t)))
        return c;
    return (x->id > y->id) - (x->id < y->id);
}

int mstate_folders(const mstate *st, mstate_folder **out, size_t *n)
{
    if (!st || !out || !n)
        return MSTATE_EINVAL;
    *out = NULL;
    *n = 0;
    size_t live = 0;
    for (size_t i = 0; i < st->ndir; i++)
        live += st->dir[i].id >= MSTATE_FIXED_FOLDERS && st->dir[i].named && !st->dir[i].deleted;
    mstate_folder *f = calloc(MSTATE_FIXED_FOLDERS + live, sizeof *f);
    name_ref *refs = malloc((live ? live : 1) * sizeof *refs);
    if (!f || !refs) {
        free(f);
        free(refs);
        return MSTATE_ENOMEM;
    }
    size_t k = 0;
    for (uint32_t id = 0; id < MSTATE_FIXED_FOLDERS; id++) {
        const folder_rec *r = find_rec(st, id);
        f[k].id = id;
        snprintf(f[k].name, sizeof f[k].name, "%s", fixed_names[id]);
        f[k].subscribed = r && r->has_sub ? r->sub : 1;
        k++;
    }
    size_t nref = 0;
    for (size_t i = 0; i < st->ndir; i++)
        if (st->dir[i].id >= MSTATE_FIXED_FOLDERS && st->dir[i].named && !st->dir[i].deleted)
            refs[nref++].r = &st->dir[i];
    /* one name shows once: the folder named first keeps it, a later one gets its id */
    qsort(refs, nref, sizeof *refs, name_ref_cmp);
    for (size_t i = 0; i < nref; i++) {
        const folder_rec *r = refs[i].r;
        int clash = is_fixed_name(r->name) || (i && strcmp(refs[i - 1].r->name, r->name) == 0);
        f[k].id = r->id;
        if (clash)
            snprintf(f[k].name, sizeof f[k].name, "%s~%08x", r->name, (unsigned)r->id);
        else
            snprintf(f[k].name, sizeof f[k].name, "%s", r->name);
        f[k].subscribed = r->has_sub && r->sub;
        k++;
    }
    free(refs);
    for (size_t i = 0; i < k; i++) {
        f[i].uidvalidity = mstate_folder_uidvalidity(st, f[i].id);
        f[i].uid_next = mstate_uid_next(st, f[i].id);
    }
    /* fixed folders first, then user folders by id */
    qsort(f + MSTATE_FIXED_FOLDERS, k - MSTATE_FIXED_FOLDERS, sizeof *f, folder_id_cmp);
    *out = f;
    *n = k;
    return MSTATE_OK;
}

int mstate_folder_find(const mstate *st, const char *name, uint32_t *id)
{
    if (!st || !name || !id)
        return MSTATE_EINVAL;
    if (ascii_casecmp(name, "INBOX") == 0) {
        *id = MSTATE_INBOX;
        return MSTATE_OK;
    }
    mstate_folder *f;
    size_t n;
    int rc = mstate_folders(st, &f, &n);
    if (rc != MSTATE_OK)
        return rc;
    rc = MSTATE_ENOFOLDER;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].name, name) == 0) {
            *id = f[i].id;
            rc = MSTATE_OK;
            break;
        }
    free(f);
    return rc;
}

/* ---- queries ---- */

/* 63 bits (RFC 7162's mod-sequence-value): clocks stay below 2^43 ms until the year 2248. A
 * stamp of 0 (an entry written before version 3 that no change ever touched) is 1. */
static uint64_t pack_modseq(mstate_hlc t)
{
    uint64_t ms = t.ms < (1ull << 43) ? t.ms : (1ull << 43) - 1;
    uint64_t m = ms << 20 | (t.count < 0xfffffu ? t.count : 0xfffffu);
    return m ? m : 1;
}

static void fill_view(const space *sp, const entry *e, mstate_view *v)
{
    memset(v, 0, sizeof *v);
    v->uid = effective_uid(sp, e);
    v->expunged = e->tomb;
    v->folder = sp->folder;
    mstate_hlc last = e->tomb ? e->tomb_t : e->filed;
    for (unsigned r = 0; r < e->nreg; r++) {
        if (e->regs[r].id < SYSTEM_FLAGS && e->regs[r].val)
            v->flags |= 1u << e->regs[r].id;
        if (mstate_hlc_cmp(e->regs[r].t, last) > 0)
            last = e->regs[r].t;
    }
    v->modseq = pack_modseq(last);
}

int mstate_get(const mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES], mstate_view *out)
{
    const space *sp = st && key ? find_space(st, folder) : NULL;
    long i = sp ? find_msg(sp, key, NULL) : -1;
    if (i < 0) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    fill_view(sp, &sp->ent[i], out);
    return 1;
}

uint64_t mstate_highest_modseq(const mstate *st, uint32_t folder)
{
    const space *sp = st ? find_space(st, folder) : NULL;
    uint64_t hi = 1;
    for (size_t i = 0; sp && i < sp->n; i++) {
        mstate_view v;
        fill_view(sp, &sp->ent[i], &v);
        if (v.modseq > hi)
            hi = v.modseq;
    }
    return hi;
}

uint64_t mstate_modseq_of_ms(uint64_t ms) { return pack_modseq((mstate_hlc){ms, 0, 1}); }

int mstate_held(const mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    for (size_t s = 0; st && key && s < st->nsp; s++) {
        const space *sp = st->sp[s];
        long i = find_msg(sp, key, NULL);
        if (i >= 0 && !sp->ent[i].tomb && mstate_folder_exists(st, sp->folder))
            return 1;
    }
    return 0;
}

int mstate_keyword_test(const mstate *st, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES],
                        const char *name)
{
    const space *sp = st && key && name ? find_space(st, folder) : NULL;
    long i = sp ? find_msg(sp, key, NULL) : -1;
    int k = i >= 0 ? kw_find(st, name) : -1;
    if (k < 0)
        return 0;
    const reg *r = find_reg(&sp->ent[i], (uint16_t)(SYSTEM_FLAGS + k));
    return r && r->val;
}

int mstate_foreach_uid(const mstate *st, uint32_t folder,
                       int (*fn)(void *arg, uint32_t uid, const uint8_t key[MSTATE_MSGKEY_BYTES],
                                 const mstate_view *v),
                       void *arg)
{
    const space *sp = find_space(st, folder);
    if (!sp)
        return 0;
    uid_ref *refs = malloc((sp->n ? sp->n : 1) * sizeof *refs);
    if (!refs)
        return MSTATE_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < sp->n; i++) {
        uint32_t uid = effective_uid(sp, &sp->ent[i]);
        /* a message is in a folder once: a partition can leave two live incarnations (a copy
         * made at two sites), and only the current one (find_msg, what mstate_get reports)
         * shows; the other keeps its UID, so it is never given again */
        if (uid && find_msg(sp, sp->ent[i].key, NULL) == (long)i)
            refs[k++] = (uid_ref){uid, (uint32_t)i};
    }
    qsort(refs, k, sizeof *refs, uid_ref_cmp);
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++) {
        /* two live holders of one UID (a burn that ran out of memory): show neither */
        if ((i + 1 < k && refs[i + 1].uid == refs[i].uid) || (i > 0 && refs[i - 1].uid == refs[i].uid))
            continue;
        mstate_view v;
        fill_view(sp, &sp->ent[refs[i].idx], &v);
        rc = fn(arg, refs[i].uid, sp->ent[refs[i].idx].key, &v);
    }
    free(refs);
    return rc;
}

int mstate_foreach_expunged(const mstate *st, uint32_t folder,
                            int (*fn)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t uid), void *arg)
{
    const space *sp = find_space(st, folder);
    for (size_t i = 0; sp && i < sp->n; i++)
        if (sp->ent[i].tomb) {
            int rc = fn(arg, sp->ent[i].key, sp->ent[i].claimed ? sp->ent[i].uid : 0);
            if (rc)
                return rc;
        }
    return 0;
}

uint32_t mstate_uidvalidity(const mstate *st) { return st->uidvalidity; }
unsigned mstate_keyword_count(const mstate *st) { return st->nkw; }
const char *mstate_keyword_name(const mstate *st, unsigned k) { return k < st->nkw ? st->kw[k] : NULL; }
size_t mstate_count(const mstate *st) { return st->nent; }
uint16_t mstate_site(const mstate *st) { return st->site; }
mstate_hlc mstate_clock(const mstate *st) { return st->clock; }

uint32_t mstate_uid_next(const mstate *st, uint32_t folder)
{
    const space *sp = find_space(st, folder);
    if ((!sp || !sp->hw) && st->floor > 1)
        return st->floor; /* what the first UID of a numbering begun here will be */
    return sp ? sp->horizon + 1 : 1;
}

int mstate_has_pending(const mstate *st)
{
    return st->pending_all || (st->pending && (st->pending->nent || st->pending->ndir));
}

size_t mstate_homeless(const mstate *st)
{
    size_t n = 0;
    for (size_t s = 0; s < st->nsp; s++)
        for (size_t i = 0; i < st->sp[s]->n; i++)
            n += is_homeless(st->sp[s], &st->sp[s]->ent[i]);
    return n;
}

size_t mstate_waiting(const mstate *st)
{
    size_t n = 0;
    for (size_t s = 0; s < st->nsp; s++) {
        const space *sp = st->sp[s];
        for (size_t i = 0; i < sp->n; i++)
            n += !is_homeless(sp, &sp->ent[i]) && !sp->ent[i].tomb && sp->ent[i].uid > sp->horizon;
    }
    return n;
}

mstate *mstate_clone(const mstate *st)
{
    mstate *c = mstate_new(st->site, st->uidvalidity);
    if (!c)
        return NULL;
    if (join(c, st) != MSTATE_OK) {
        mstate_free(c);
        return NULL;
    }
    c->clock = st->clock;
    c->floor = st->floor;
    c->pending_all = st->pending_all;
    c->origin = st->origin;
    c->seq = st->seq;
    if (st->pending && !(c->pending = mstate_clone(st->pending))) {
        mstate_free(c);
        return NULL;
    }
    return c;
}

/* ---- plaintext codec (docs/formats.md 6.2) ---- */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 1024;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->oom = 1;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }

static void w_var(wbuf *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    w_bytes(w, b, n);
}

static void w_hlc(wbuf *w, mstate_hlc t)
{
    w_var(w, t.ms);
    w_var(w, t.count);
    w_var(w, t.site);
}

static int kw_sort_cmp(const void *a, const void *b, void *arg)
{
    char *const *kw = arg;
    return strcmp(kw[*(const unsigned *)a], kw[*(const unsigned *)b]);
}

static int reg_sort_cmp(const void *a, const void *b)
{
    const reg *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int space_empty(const space *sp) { return !sp->n && !sp->hw && !sp->ndead; }
static int rec_empty(const folder_rec *r) { return !r->named && !r->deleted && !r->has_sub; }

/* One space: its UID bookkeeping, then its entries in (key, incarnation) order. */
static int encode_space(wbuf *w, const space *sp, const unsigned *rank)
{
    size_t *idx = malloc((sp->n ? sp->n : 1) * sizeof *idx);
    reg *regs = malloc((SYSTEM_FLAGS + MSTATE_KEYWORD_MAX) * sizeof *regs);
    if (!idx || !regs) {
        free(idx);
        free(regs);
        return MSTATE_ENOMEM;
    }
    w_var(w, sp->folder);
    w_var(w, sp->hw);
    w_var(w, sp->ndead);
    for (size_t r = 0; r < sp->ndead; r++) {
        w_var(w, r ? sp->dead[r].lo - sp->dead[r - 1].hi - 2 : sp->dead[r].lo - 1);
        w_var(w, sp->dead[r].hi - sp->dead[r].lo);
    }
    for (size_t i = 0; i < sp->n; i++)
        idx[i] = i;
    qsort_r(idx, sp->n, sizeof *idx, entry_cmp_idx, (void *)sp);
    w_var(w, sp->n);
    for (size_t i = 0; i < sp->n; i++) {
        const entry *e = &sp->ent[idx[i]];
        w_bytes(w, e->key, MSTATE_MSGKEY_BYTES);
        w_var(w, e->copy);
        int filed = !e->tomb && e->filed.site;
        w_u8(w, (uint8_t)(e->tomb | e->claimed << 1 | (e->born != 0) << 2 | filed << 3));
        if (e->born)
            w_var(w, e->born);
        if (filed)
            w_hlc(w, e->filed);
        if (e->tomb)
            w_hlc(w, e->tomb_t);
        if (e->claimed) {
            w_var(w, e->gen);
            w_var(w, e->uid);
        }
        unsigned nreg = e->tomb ? 0 : e->nreg;
        for (unsigned r = 0; r < nreg; r++) {
            regs[r] = e->regs[r];
            if (regs[r].id >= SYSTEM_FLAGS)
                regs[r].id = (uint16_t)(SYSTEM_FLAGS + rank[regs[r].id - SYSTEM_FLAGS]);
        }
        qsort(regs, nreg, sizeof *regs, reg_sort_cmp);
        w_var(w, nreg);
        for (unsigned r = 0; r < nreg; r++) {
            w_var(w, regs[r].id);
            w_u8(w, regs[r].val);
            w_hlc(w, regs[r].t);
        }
    }
    free(idx);
    free(regs);
    return MSTATE_OK;
}

/* digest: the same bytes without what differs between sites holding the same contents */
static int encode(const mstate *st, enum mstate_kind kind, int digest, uint8_t **out, size_t *out_len)
{
    for (size_t s = 0; s < st->nsp; s++)
        if (st->sp[s]->ndead > MSTATE_DEAD_RANGES_MAX)
            return MSTATE_ELIMIT; /* never write what no reader accepts */
    wbuf w = {0};
    unsigned order[MSTATE_KEYWORD_MAX], rank[MSTATE_KEYWORD_MAX];
    w_bytes(&w, MAGIC_PLAIN, 4);
    w_u8(&w, FORMAT_VERSION);
    w_u8(&w, digest ? MSTATE_SNAPSHOT : (uint8_t)kind);
    uint8_t uv[4] = {(uint8_t)(st->uidvalidity >> 24), (uint8_t)(st->uidvalidity >> 16),
                     (uint8_t)(st->uidvalidity >> 8), (uint8_t)st->uidvalidity};
    w_bytes(&w, uv, 4);
    w_var(&w, digest ? 0 : st->site);
    w_hlc(&w, digest ? (mstate_hlc){0, 0, 0} : (mstate_hlc){st->clock.ms, st->clock.count, st->site});
    /* coverage is bookkeeping about deltas, not mailbox contents: not in the digest (and a
     * reader short of room for out-of-order numbers may record less than it holds) */
    unsigned ncov = 0, ncov_all = digest ? 0 : st->ncov;
    for (unsigned c = 0; c < ncov_all; c++)
        ncov += st->cov[c].upto || st->cov[c].nextra;
    w_var(&w, ncov);
    for (unsigned c = 0; c < ncov_all; c++) {
        const cover *cv = &st->cov[c];
        if (!cv->upto && !cv->nextra)
            continue;
        w_var(&w, cv->site);
        w_var(&w, cv->upto);
        w_var(&w, cv->nextra);
        for (unsigned i = 0; i < cv->nextra; i++)
            w_var(&w, cv->extra[i]);
    }
    for (unsigned k = 0; k < st->nkw; k++)
        order[k] = k;
    qsort_r(order, st->nkw, sizeof *order, kw_sort_cmp, (void *)st->kw);
    for (unsigned k = 0; k < st->nkw; k++)
        rank[order[k]] = k;
    w_var(&w, st->nkw);
    for (unsigned k = 0; k < st->nkw; k++) {
        size_t len = strlen(st->kw[order[k]]);
        w_u8(&w, (uint8_t)len);
        w_bytes(&w, st->kw[order[k]], len);
    }
    size_t ndir = 0;
    for (size_t i = 0; i < st->ndir; i++)
        ndir += !rec_empty(&st->dir[i]);
    w_var(&w, ndir);
    for (size_t i = 0; i < st->ndir; i++) {
        const folder_rec *r = &st->dir[i];
        if (rec_empty(r))
            continue;
        w_var(&w, r->id);
        w_u8(&w, (uint8_t)(r->named | r->deleted << 1 | r->has_sub << 2 | (r->has_sub && r->sub) << 3));
        if (r->named) {
            size_t len = strlen(r->name);
            w_u8(&w, (uint8_t)len);
            w_bytes(&w, r->name, len);
            w_hlc(&w, r->name_t);
        }
        if (r->deleted)
            w_hlc(&w, r->del_t);
        if (r->has_sub)
            w_hlc(&w, r->sub_t);
    }
    size_t nsp = 0;
    for (size_t s = 0; s < st->nsp; s++)
        nsp += !space_empty(st->sp[s]);
    w_var(&w, nsp);
    int rc = MSTATE_OK;
    for (size_t s = 0; s < st->nsp && rc == MSTATE_OK; s++)
        if (!space_empty(st->sp[s]))
            rc = encode_space(&w, st->sp[s], rank);
    if (rc != MSTATE_OK || w.oom || w.len > MSTATE_ENCODED_MAX - 4) {
        free(w.p);
        return rc != MSTATE_OK ? rc : w.oom ? MSTATE_ENOMEM : MSTATE_ELIMIT;
    }
    *out = w.p;
    *out_len = w.len;
    return MSTATE_OK;
}

int mstate_encode(const mstate *st, enum mstate_kind kind, uint8_t **out, size_t *out_len)
{
    if (!st || !out || !out_len || (kind != MSTATE_SNAPSHOT && kind != MSTATE_DELTA))
        return MSTATE_EINVAL;
    return encode(st, kind, 0, out, out_len);
}

int mstate_digest(const mstate *st, uint8_t out[32])
{
    uint8_t *buf;
    size_t len;
    int rc = encode(st, MSTATE_SNAPSHOT, 1, &buf, &len);
    if (rc != MSTATE_OK)
        return rc;
    crypto_generichash(out, 32, buf, len, NULL, 0);
    sodium_memzero(buf, len);
    free(buf);
    return MSTATE_OK;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t left;
    int bad;
} rbuf;

static const uint8_t *r_bytes(rbuf *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint8_t r_u8(rbuf *r)
{
    const uint8_t *p = r_bytes(r, 1);
    return p ? *p : 0;
}

/* LEB128, minimal length only (so the encoding is canonical), at most max. */
static uint64_t r_var(rbuf *r, uint64_t max)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        const uint8_t *p = r_bytes(r, 1);
        if (!p)
            return 0;
        if (shift == 63 && *p > 1) {
            r->bad = 1;
            return 0;
        }
        v |= (uint64_t)(*p & 0x7f) << shift;
        if (!(*p & 0x80)) {
            if ((shift && *p == 0) || v > max)
                r->bad = 1;
            return r->bad ? 0 : v;
        }
    }
}

static mstate_hlc r_hlc(rbuf *r)
{
    mstate_hlc t;
    t.ms = r_var(r, HLC_MS_MAX - 1);
    t.count = (uint32_t)r_var(r, UINT32_MAX);
    t.site = (uint16_t)r_var(r, UINT16_MAX);
    if (t.site == 0)
        r->bad = 1;
    return t;
}

static int r_cover(rbuf *r, mstate *st)
{
    unsigned ncov = (unsigned)r_var(r, MSTATE_SITES_MAX);
    for (unsigned c = 0; c < ncov && !r->bad; c++) {
        cover *cv = &st->cov[c];
        cv->site = (uint16_t)r_var(r, UINT16_MAX);
        cv->upto = r_var(r, UINT64_MAX - 1);
        cv->nextra = (uint8_t)r_var(r, MSTATE_EXTRA_MAX);
        if (!cv->site || (c && cv->site <= st->cov[c - 1].site))
            return MSTATE_EFORMAT;
        uint64_t prev = cv->upto + 1;
        for (unsigned i = 0; i < cv->nextra && !r->bad; i++) {
            cv->extra[i] = r_var(r, UINT64_MAX);
            if (cv->extra[i] <= prev) /* canonical: above upto + 1, ascending */
                return MSTATE_EFORMAT;
            prev = cv->extra[i];
        }
        if (!cv->upto && !cv->nextra)
            return MSTATE_EFORMAT;
        st->ncov++;
    }
    return r->bad ? MSTATE_EFORMAT : MSTATE_OK;
}

static int r_keywords(rbuf *r, mstate *st)
{
    unsigned nkw = (unsigned)r_var(r, MSTATE_KEYWORD_MAX);
    for (unsigned k = 0; k < nkw && !r->bad; k++) {
        uint8_t len = r_u8(r);
        const uint8_t *name = r_bytes(r, len);
        if (!name)
            return MSTATE_EFORMAT;
        char buf[MSTATE_KEYWORD_LEN_MAX + 1];
        if (len > MSTATE_KEYWORD_LEN_MAX || memchr(name, 0, len))
            return MSTATE_EFORMAT;
        memcpy(buf, name, len);
        buf[len] = 0;
        if (!kw_valid(buf) || (k && strcmp(st->kw[k - 1], buf) >= 0) || kw_find(st, buf) >= 0)
            return MSTATE_EFORMAT;
        if (!(st->kw[k] = strdup(buf)))
            return MSTATE_ENOMEM;
        st->nkw++;
    }
    return r->bad ? MSTATE_EFORMAT : MSTATE_OK;
}

static int r_directory(rbuf *r, mstate *st)
{
    uint64_t ndir = r_var(r, MSTATE_FOLDERS_MAX);
    if (r->bad || ndir > r->left / 3)
        return MSTATE_EFORMAT;
    for (uint64_t i = 0; i < ndir && !r->bad; i++) {
        uint32_t id = (uint32_t)r_var(r, 0x7fffffffu);
        uint8_t bits = r_u8(r);
        if (r->bad || (st->ndir && id <= st->dir[st->ndir - 1].id) || bits & ~15u || !(bits & 7) ||
            (bits & 8 && !(bits & 4)))
            return MSTATE_EFORMAT;
        /* fixed folders carry only a subscription; user folders always a name */
        if (id < MSTATE_FIXED_FOLDERS ? (bits & 3) != 0 : id < MSTATE_USER_FOLDER_MIN || !(bits & 1))
            return MSTATE_EFORMAT;
        folder_rec *f = get_rec(st, id);
        if (!f)
            return MSTATE_ENOMEM;
        if (bits & 1) {
            uint8_t len = r_u8(r);
            const uint8_t *name = r_bytes(r, len);
            char buf[MSTATE_FOLDER_NAME_MAX + 1];
            if (!name || len > MSTATE_FOLDER_NAME_MAX || memchr(name, 0, len))
                return MSTATE_EFORMAT;
            memcpy(buf, name, len);
            buf[len] = 0;
            if (!folder_name_valid(buf))
                return MSTATE_EFORMAT;
            if (!(f->name = strdup(buf)))
                return MSTATE_ENOMEM;
            f->named = 1;
            f->name_t = r_hlc(r);
        }
        if (bits & 2) {
            f->deleted = 1;
            f->del_t = r_hlc(r);
        }
        if (bits & 4) {
            f->has_sub = 1;
            f->sub = bits >> 3 & 1;
            f->sub_t = r_hlc(r);
        }
    }
    return r->bad ? MSTATE_EFORMAT : MSTATE_OK;
}

/* A space's dead ranges and entries (hw already read); version 1 entries carry a folder
 * number that must be 0. */
static int r_space(rbuf *r, mstate *st, space *sp, int version)
{
    uint64_t ndead = r_var(r, MSTATE_DEAD_RANGES_MAX);
    if (r->bad || ndead > r->left / 2)
        return MSTATE_EFORMAT;
    int rc = reserve_dead(sp, ndead);
    if (rc != MSTATE_OK)
        return rc;
    uint64_t prev_hi = 0;
    for (uint64_t i = 0; i < ndead && !r->bad; i++) {
        uint64_t gap = r_var(r, MSTATE_UID_MAX), span = r_var(r, MSTATE_UID_MAX);
        uint64_t lo = i ? prev_hi + 2 + gap : 1 + gap, hi = lo + span;
        if (hi > sp->hw)
            return MSTATE_EFORMAT;
        sp->dead[sp->ndead++] = (range){(uint32_t)lo, (uint32_t)hi};
        prev_hi = hi;
    }
    uint64_t nmsg = r_var(r, MSTATE_MESSAGES_MAX);
    if (r->bad || nmsg > r->left / MIN_ENTRY_BYTES)
        return MSTATE_EFORMAT;
    if ((rc = reserve_entries(st, sp, nmsg)) != MSTATE_OK)
        return rc;
    const folder_rec *fr = sp->folder >= MSTATE_FIXED_FOLDERS ? find_rec(st, sp->folder) : NULL;
    for (uint64_t i = 0; i < nmsg && !r->bad; i++) {
        const uint8_t *key = r_bytes(r, MSTATE_MSGKEY_BYTES);
        if (!key)
            return MSTATE_EFORMAT;
        /* version 1 wrote a folder number, always 0, where version 2 has the incarnation */
        uint32_t copy = (uint32_t)r_var(r, version == 1 ? 0 : COPY_MAX);
        if (i) {
            const entry *p = &sp->ent[sp->n - 1];
            int c = memcmp(p->key, key, MSTATE_MSGKEY_BYTES);
            if (c > 0 || (c == 0 && p->copy >= copy))
                return MSTATE_EFORMAT;
        }
        entry *e = add_entry(st, sp, key, copy);
        uint8_t bits = r_u8(r);
        if (bits & ~(version >= 3 ? 15u : 7u) || (bits & 9) == 9)
            return MSTATE_EFORMAT; /* an expunged entry has no filing stamp */
        e->tomb = bits & 1;
        e->claimed = bits >> 1 & 1;
        if (bits & 4 && !(e->born = (uint32_t)r_var(r, UINT32_MAX)))
            return MSTATE_EFORMAT; /* written only when known */
        if (bits & 8)
            e->filed = r_hlc(r); /* its site is never 0 */
        bits &= 3;
        if (e->tomb)
            e->tomb_t = r_hlc(r);
        if (e->claimed) {
            e->gen = (uint32_t)r_var(r, UINT32_MAX);
            e->uid = (uint32_t)r_var(r, sp->hw);
        }
        /* a deleted folder's entries are buried (the writer ran the same rule) */
        if (fr && fr->deleted && (!e->tomb || mstate_hlc_cmp(e->tomb_t, fr->del_t) > 0))
            return MSTATE_EFORMAT;
        uint64_t nreg = r_var(r, e->tomb ? 0 : SYSTEM_FLAGS + st->nkw);
        if (r->bad || (!bits && !nreg) || nreg > r->left / 4)
            return MSTATE_EFORMAT;
        if (nreg && (rc = reserve_regs(e, nreg)) != MSTATE_OK)
            return rc;
        for (uint64_t k = 0; k < nreg && !r->bad; k++) {
            reg *g = &e->regs[e->nreg];
            g->id = (uint16_t)r_var(r, SYSTEM_FLAGS + st->nkw - 1);
            g->val = r_u8(r);
            g->t = r_hlc(r);
            if (g->val > 1 || (k && g->id <= e->regs[e->nreg - 1].id))
                return MSTATE_EFORMAT;
            e->nreg++;
        }
    }
    if (r->bad)
        return MSTATE_EFORMAT;
    /* the encoder never writes two holders of a live UID (merges burn them) */
    uid_ref *refs = malloc((sp->n ? sp->n : 1) * sizeof *refs);
    if (!refs)
        return MSTATE_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < sp->n; i++)
        if (sp->ent[i].claimed && sp->ent[i].uid && !dead_has(sp, sp->ent[i].uid))
            refs[k++] = (uid_ref){sp->ent[i].uid, (uint32_t)i};
    qsort(refs, k, sizeof *refs, uid_ref_cmp);
    rc = MSTATE_OK;
    for (size_t i = 1; i < k; i++)
        if (refs[i].uid == refs[i - 1].uid)
            rc = MSTATE_EFORMAT;
    free(refs);
    if (rc == MSTATE_OK)
        raise_horizon(sp);
    return rc;
}

static int decode(const uint8_t *in, size_t in_len, mstate **out, mstate_info *info)
{
    rbuf r = {in, in_len, 0};
    const uint8_t *magic = r_bytes(&r, 4);
    int version = r_u8(&r);
    if (!magic || memcmp(magic, MAGIC_PLAIN, 4) != 0 || version < 1 || version > FORMAT_VERSION)
        return MSTATE_EFORMAT;
    uint8_t kind = r_u8(&r);
    const uint8_t *uv = r_bytes(&r, 4);
    if (r.bad || (kind != MSTATE_SNAPSHOT && kind != MSTATE_DELTA))
        return MSTATE_EFORMAT;
    uint32_t uidvalidity = (uint32_t)uv[0] << 24 | (uint32_t)uv[1] << 16 | (uint32_t)uv[2] << 8 | uv[3];
    uint16_t origin = (uint16_t)r_var(&r, UINT16_MAX);
    if (r.bad || !origin || !uidvalidity)
        return MSTATE_EFORMAT;
    mstate *st = mstate_new(origin, uidvalidity);
    if (!st)
        return MSTATE_ENOMEM;
    int rc = MSTATE_EFORMAT;
    st->origin = origin;
    st->clock = r_hlc(&r);
    if (st->clock.site != origin)
        goto bad;
    uint32_t v1_hw = version == 1 ? (uint32_t)r_var(&r, MSTATE_UID_MAX) : 0;
    if ((rc = r_cover(&r, st)) != MSTATE_OK)
        goto bad;
    rc = MSTATE_EFORMAT;
    if (kind == MSTATE_DELTA) {
        /* a delta covers exactly itself */
        if (st->ncov != 1 || st->cov[0].site != origin || st->cov[0].upto + st->cov[0].nextra != 1)
            goto bad;
        st->seq = st->cov[0].nextra ? st->cov[0].extra[0] : 1;
    }
    if ((rc = r_keywords(&r, st)) != MSTATE_OK)
        goto bad;
    if (version == 1) {
        /* one space, the INBOX, written before folders existed */
        space *sp = get_space(st, MSTATE_INBOX);
        if (!sp) {
            rc = MSTATE_ENOMEM;
            goto bad;
        }
        sp->hw = v1_hw;
        if ((rc = r_space(&r, st, sp, 1)) != MSTATE_OK)
            goto bad;
    } else {
        if ((rc = r_directory(&r, st)) != MSTATE_OK)
            goto bad;
        rc = MSTATE_EFORMAT;
        uint64_t nsp = r_var(&r, MSTATE_FOLDERS_MAX + MSTATE_FIXED_FOLDERS);
        if (r.bad || nsp > r.left / 4)
            goto bad;
        for (uint64_t s = 0; s < nsp; s++) {
            uint32_t folder = (uint32_t)r_var(&r, 0x7fffffffu);
            if (r.bad || (st->nsp && folder <= st->sp[st->nsp - 1]->folder) ||
                (folder >= MSTATE_FIXED_FOLDERS && folder < MSTATE_USER_FOLDER_MIN)) {
                rc = MSTATE_EFORMAT;
                goto bad;
            }
            space *sp = get_space(st, folder);
            if (!sp) {
                rc = MSTATE_ENOMEM;
                goto bad;
            }
            sp->hw = (uint32_t)r_var(&r, MSTATE_UID_MAX);
            if ((rc = r_space(&r, st, sp, version)) != MSTATE_OK)
                goto bad;
            if (space_empty(sp)) {
                rc = MSTATE_EFORMAT; /* never written */
                goto bad;
            }
        }
    }
    rc = MSTATE_EFORMAT;
    if (r.bad || r.left)
        goto bad;
    if (info) {
        memset(info, 0, sizeof *info);
        info->kind = (enum mstate_kind)kind;
        info->origin = origin;
        info->seq = st->seq;
        info->uidvalidity = uidvalidity;
    }
    *out = st;
    return MSTATE_OK;
bad:
    mstate_free(st);
    return rc;
}

int mstate_decode(const uint8_t *in, size_t in_len, mstate **out, mstate_info *info)
{
    if (!out || (!in && in_len))
        return MSTATE_EINVAL;
    *out = NULL;
    if (in_len > MSTATE_ENCODED_MAX)
        return MSTATE_EFORMAT;
    return decode(in, in_len, out, info);
}

/* ---- seal (docs/formats.md 6.1) ---- */

size_t mstate_padded_size(size_t len)
{
    size_t b = PAD_MIN;
    while (b < len && b <= MSTATE_ENCODED_MAX / 2)
        b *= 2;
    return b >= len ? b : 0;
}

static int seal(const uint8_t *body, size_t len, const uint8_t key[MSTATE_KEY_BYTES], uint8_t **out,
                size_t *out_len)
{
    size_t plen = mstate_padded_size(len + 4);
    if (!plen)
        return MSTATE_ELIMIT;
    uint8_t *plain = calloc(1, plen);
    uint8_t *sealed = malloc(SEAL_HEADER + plen + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    if (!plain || !sealed) {
        free(plain);
        free(sealed);
        return MSTATE_ENOMEM;
    }
    plain[0] = (uint8_t)(len >> 24);
    plain[1] = (uint8_t)(len >> 16);
    plain[2] = (uint8_t)(len >> 8);
    plain[3] = (uint8_t)len;
    memcpy(plain + 4, body, len);
    memcpy(sealed, MAGIC_SEALED, 4);
    sealed[4] = SEAL_VERSION;
    randombytes_buf(sealed + 5, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + SEAL_HEADER, &clen, plain, plen, sealed, 5, NULL,
                                               sealed + 5, key);
    sodium_memzero(plain, plen);
    free(plain);
    *out = sealed;
    *out_len = SEAL_HEADER + (size_t)clen;
    return MSTATE_OK;
}

int mstate_seal_snapshot(const mstate *st, const uint8_t state_key[MSTATE_KEY_BYTES], uint8_t **out,
                         size_t *out_len)
{
    if (!st || !state_key || !out || !out_len)
        return MSTATE_EINVAL;
    uint8_t *body;
    size_t len;
    int rc = encode(st, MSTATE_SNAPSHOT, 0, &body, &len);
    if (rc != MSTATE_OK)
        return rc;
    rc = seal(body, len, state_key, out, out_len);
    sodium_memzero(body, len);
    free(body);
    return rc;
}

/* The UID bookkeeping of every space of st (small) into d, so that a reader of a delta moves
 * its horizons as far as the writer's. */
static int add_bookkeeping(mstate *d, const mstate *st)
{
    for (size_t s = 0; s < st->nsp; s++) {
        const space *ssp = st->sp[s];
        if (!ssp->hw && !ssp->ndead)
            continue;
        space *dsp = get_space(d, ssp->folder);
        int rc = dsp ? reserve_dead(dsp, ssp->ndead) : MSTATE_ENOMEM;
        if (rc != MSTATE_OK)
            return rc;
        for (size_t i = 0; i < ssp->ndead; i++)
            dead_add(dsp, ssp->dead[i].lo, ssp->dead[i].hi);
        if (ssp->hw > dsp->hw)
            dsp->hw = ssp->hw;
    }
    return MSTATE_OK;
}

int mstate_seal_delta(mstate *st, const uint8_t state_key[MSTATE_KEY_BYTES], uint8_t **out, size_t *out_len,
                      uint64_t *seq)
{
    if (!st || !state_key || !out || !out_len)
        return MSTATE_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (!mstate_has_pending(st))
        return MSTATE_OK;
    cover *own = get_cover(st, st->site);
    if (!own)
        return MSTATE_ELIMIT;
    uint64_t next = cover_max(own) + 1;
    /* the delta: pending changes (or everything, when they could not be tracked), with the
     * UID bookkeeping of the whole state and only its own number as coverage */
    mstate *d = mstate_new(st->site, st->uidvalidity);
    if (!d)
        return MSTATE_ENOMEM;
    int rc = join(d, st->pending_all || !st->pending ? st : st->pending);
    if (rc == MSTATE_OK) {
        d->ncov = 0;
        if (!st->pending_all)
            rc = add_bookkeeping(d, st);
    }
    if (rc == MSTATE_OK) {
        d->clock = st->clock;
        cover_add(get_cover(d, st->site), next);
        uint8_t *body;
        size_t len;
        if ((rc = encode(d, MSTATE_DELTA, 0, &body, &len)) == MSTATE_OK) {
            rc = seal(body, len, state_key, out, out_len);
            sodium_memzero(body, len);
            free(body);
        }
    }
    mstate_free(d);
    if (rc != MSTATE_OK)
        return rc;
    cover_add(own, next);
    mstate_free(st->pending);
    st->pending = NULL;
    st->pending_all = 0;
    if (seq)
        *seq = next;
    return MSTATE_OK;
}

int mstate_open(const uint8_t *in, size_t in_len, const uint8_t state_key[MSTATE_KEY_BYTES], mstate **out,
                mstate_info *info)
{
    if (!out || !state_key || (!in && in_len))
        return MSTATE_EINVAL;
    *out = NULL;
    if (in_len < SEAL_HEADER + crypto_aead_xchacha20poly1305_ietf_ABYTES + PAD_MIN ||
        memcmp(in, MAGIC_SEALED, 4) != 0 || in[4] != SEAL_VERSION)
        return MSTATE_EFORMAT;
    size_t plen = in_len - SEAL_HEADER - crypto_aead_xchacha20poly1305_ietf_ABYTES;
    if (plen > MSTATE_ENCODED_MAX || mstate_padded_size(plen) != plen)
        return MSTATE_EFORMAT;
    uint8_t *plain = malloc(plen);
    if (!plain)
        return MSTATE_ENOMEM;
    unsigned long long got;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &got, NULL, in + SEAL_HEADER, in_len - SEAL_HEADER, in, 5,
                                                   in + 5, state_key) != 0) {
        free(plain);
        return MSTATE_EAUTH;
    }
    size_t len = (size_t)plain[0] << 24 | (size_t)plain[1] << 16 | (size_t)plain[2] << 8 | plain[3];
    int rc = MSTATE_EFORMAT;
    if (len <= plen - 4) {
        int pad_ok = 1;
        for (size_t i = 4 + len; i < plen; i++)
            pad_ok &= plain[i] == 0;
        if (pad_ok)
            rc = decode(plain + 4, len, out, info);
        if (rc == MSTATE_OK && info)
            info->padded_len = in_len;
    }
    sodium_memzero(plain, plen);
    free(plain);
    return rc;
}
