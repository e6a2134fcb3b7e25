/* mstate: the replicated mailbox state — CRDT, merge, UID rule, codec and seal in one file so
 * that mstate.h is the module's whole public face (docs/formats.md section 6). */
#include "mstate/mstate.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define SYSTEM_FLAGS 5 /* register ids 0..4: the system flag bits; 5 + k: keyword k */
#define MAGIC_PLAIN "PSTM"
#define MAGIC_SEALED "PSTS"
#define FORMAT_VERSION 1
#define SEAL_HEADER (4 + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#define PAD_MIN 1024u
#define MIN_ENTRY_BYTES (MSTATE_MSGKEY_BYTES + 3)
#define HLC_MS_MAX (1ull << 44) /* year 2527: keeps ms << 20 | count inside 64 bits */

typedef struct reg {
    uint16_t id;
    uint8_t val;
    mstate_hlc t;
} reg;

typedef struct entry {
    uint8_t key[MSTATE_MSGKEY_BYTES];
    uint32_t folder;
    uint8_t tomb;    /* expunged: beats every register, forever */
    uint8_t claimed; /* has a UID claim (gen, uid); uid 0 = two claims of one gen disagreed */
    mstate_hlc tomb_t;
    uint32_t gen;
    uint32_t uid;
    uint32_t born;   /* day (since 2020-01-01) a site first knew it; 0 unknown (never forgotten) */
    uint16_t nreg, capreg;
    reg *regs;
} entry;

typedef struct cover {
    uint16_t site;
    uint8_t nextra;
    uint64_t upto; /* deltas 1..upto of site are in the state */
    uint64_t extra[MSTATE_EXTRA_MAX]; /* and these, all > upto + 1, ascending */
} cover;

typedef struct range {
    uint32_t lo, hi;
} range;

struct mstate {
    uint16_t site;
    uint32_t uidvalidity;
    mstate_hlc clock;
    uint32_t hw; /* highest UID any claim ever named: all of 1..hw are used up */
    uint32_t horizon; /* every UID in 1..horizon is known here (held or dead); only these show */
    uint32_t floor;   /* a numbering begun here starts at this UID (local policy, not encoded) */
    entry *ent;
    size_t n, cap;
    uint32_t *slot; /* open addressing, entry index + 1, 0 = empty */
    size_t nslot;
    char *kw[MSTATE_KEYWORD_MAX];
    unsigned nkw;
    range *dead; /* dead UIDs, ascending, neither overlapping nor adjacent */
    size_t ndead, capdead;
    cover cov[MSTATE_SITES_MAX];
    unsigned ncov;
    mstate *pending;  /* local changes since the last sealed delta (NULL: none) */
    int pending_all;  /* pending could not be kept up: the next delta is the whole state */
    uint16_t origin;  /* of a decoded delta or snapshot */
    uint64_t seq;     /* of a decoded delta */
};

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

/* ---- hash index ---- */

static uint8_t hash_key[crypto_shorthash_KEYBYTES];

static size_t key_hash(const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    /* keyed, so a crafted set of keys cannot turn lookups quadratic */
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, MSTATE_MSGKEY_BYTES, hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)v;
}

static long find_entry(const mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    if (!st->nslot)
        return -1;
    size_t mask = st->nslot - 1;
    for (size_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
        uint32_t s = st->slot[i];
        if (!s)
            return -1;
        if (memcmp(st->ent[s - 1].key, key, MSTATE_MSGKEY_BYTES) == 0)
            return (long)(s - 1);
    }
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

/* Makes room for `more` entries (array and index) without changing anything on failure. */
static int reserve_entries(mstate *st, size_t more)
{
    if (more > MSTATE_MESSAGES_MAX || st->n + more > MSTATE_MESSAGES_MAX)
        return MSTATE_ELIMIT;
    size_t need = st->n + more;
    void *ent = st->ent;
    int rc = grow(&ent, &st->cap, need, sizeof *st->ent, 16);
    st->ent = ent;
    if (rc != MSTATE_OK)
        return rc;
    if (need * 2 > st->nslot) {
        size_t nslot = st->nslot ? st->nslot : 32;
        while (nslot < need * 2)
            nslot *= 2;
        uint32_t *slot = calloc(nslot, sizeof *slot);
        if (!slot)
            return MSTATE_ENOMEM;
        for (size_t i = 0; i < st->n; i++)
            slot_put(slot, nslot, st->ent, (uint32_t)i);
        free(st->slot);
        st->slot = slot;
        st->nslot = nslot;
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

/* Needs reserve_entries(st, 1) first. */
static entry *add_entry(mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    entry *e = &st->ent[st->n];
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, MSTATE_MSGKEY_BYTES);
    slot_put(st->slot, st->nslot, st->ent, (uint32_t)st->n);
    st->n++;
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

/* ---- dead UIDs ---- */

static int dead_has(const mstate *st, uint32_t uid)
{
    size_t lo = 0, hi = st->ndead;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->dead[mid].hi < uid)
            lo = mid + 1;
        else if (st->dead[mid].lo > uid)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

static int reserve_dead(mstate *st, size_t more)
{
    void *dead = st->dead;
    int rc = grow(&dead, &st->capdead, st->ndead + more, sizeof *st->dead, 8);
    st->dead = dead;
    return rc;
}

/* Needs room for one more range. Keeps the set canonical (coalesced). */
static void dead_add(mstate *st, uint32_t lo, uint32_t hi)
{
    size_t n = st->ndead;
    /* first range that ends at or after lo - 1 (could touch or overlap) */
    size_t a = 0, b = n;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if ((uint64_t)st->dead[mid].hi + 1 < lo)
            a = mid + 1;
        else
            b = mid;
    }
    size_t i = a, j = a;
    while (j < n && st->dead[j].lo <= (uint64_t)hi + 1) {
        if (st->dead[j].lo < lo)
            lo = st->dead[j].lo;
        if (st->dead[j].hi > hi)
            hi = st->dead[j].hi;
        j++;
    }
    if (j == i) {
        memmove(&st->dead[i + 1], &st->dead[i], (n - i) * sizeof *st->dead);
        st->ndead++;
    } else if (j > i + 1) {
        memmove(&st->dead[i + 1], &st->dead[j], (n - j) * sizeof *st->dead);
        st->ndead -= j - i - 1;
    }
    st->dead[i].lo = lo;
    st->dead[i].hi = hi;
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
    for (size_t i = 0; i < st->n; i++) {
        if (st->ent[i].regs)
            sodium_memzero(st->ent[i].regs, st->ent[i].capreg * sizeof(reg));
        free(st->ent[i].regs);
    }
    if (st->ent)
        sodium_memzero(st->ent, st->cap * sizeof *st->ent);
    free(st->ent);
    free(st->slot);
    for (unsigned k = 0; k < st->nkw; k++) {
        sodium_memzero(st->kw[k], strlen(st->kw[k]));
        free(st->kw[k]);
    }
    free(st->dead);
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

/* ---- the join ---- */

/* Joins src entry s into dst entry d; kwmap maps src register ids to dst ids. Needs room for
 * s->nreg more registers in d and for two more dead ranges in dst. Cannot fail. */
static void entry_join(mstate *dst, entry *d, const entry *s, const uint16_t *kwmap)
{
    if (s->born && (!d->born || s->born < d->born))
        d->born = s->born; /* the earliest sighting, whatever the order */
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
                dead_add(dst, d->uid, d->uid);
            d->gen = s->gen;
            d->uid = s->uid;
        } else if (s->gen < d->gen) {
            if (s->uid)
                dead_add(dst, s->uid, s->uid);
        } else if (s->uid != d->uid) {
            if (d->uid)
                dead_add(dst, d->uid, d->uid);
            if (s->uid)
                dead_add(dst, s->uid, s->uid);
            d->uid = 0;
        }
    }
    if (d->tomb) {
        d->nreg = 0; /* a tombstone beats every flag: nothing to keep */
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

/* Two different messages holding one UID: the UID is dead for both (both get re-homed). Only
 * a claim that appeared or moved can start such a share, so only the k moved UIDs are looked
 * for, in one pass over the entries. Needs room for k more dead ranges; reorders moved. */
static void burn_moved(mstate *st, uint32_t *moved, size_t k, uint8_t *holders)
{
    if (!k)
        return;
    qsort(moved, k, sizeof *moved, u32_cmp);
    memset(holders, 0, k);
    for (size_t i = 0; i < st->n; i++) {
        const entry *e = &st->ent[i];
        if (!e->claimed || !e->uid)
            continue;
        uint32_t *hit = bsearch(&e->uid, moved, k, sizeof *moved, u32_cmp);
        if (hit && holders[hit - moved] < 2)
            holders[hit - moved]++; /* duplicates in moved: bsearch finds one of them, fine */
    }
    for (size_t j = 0; j < k; j++)
        if (holders[j] >= 2)
            dead_add(st, moved[j], moved[j]);
}

/* The claimed UIDs above the horizon, ascending (*out malloc'd; NULL when there are none). */
static int uids_above_horizon(const mstate *st, uint32_t **out, size_t *k)
{
    *out = NULL;
    *k = 0;
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += st->ent[i].claimed && st->ent[i].uid > st->horizon;
    if (!n)
        return MSTATE_OK;
    uint32_t *u = malloc(n * sizeof *u);
    if (!u)
        return MSTATE_ENOMEM;
    for (size_t i = 0; i < st->n; i++)
        if (st->ent[i].claimed && st->ent[i].uid > st->horizon)
            u[(*k)++] = st->ent[i].uid;
    qsort(u, *k, sizeof *u, u32_cmp);
    *out = u;
    return MSTATE_OK;
}

/* The first dead range that ends at or after uid, or NULL. */
static const range *dead_from(const mstate *st, uint32_t uid)
{
    size_t a = 0, b = st->ndead;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (st->dead[mid].hi < uid)
            a = mid + 1;
        else
            b = mid;
    }
    return a < st->ndead ? &st->dead[a] : NULL;
}

/* Walks the UIDs above the horizon. With kill set, every UID nobody is known to hold is made
 * dead (needs room for k + 1 more ranges) and the horizon reaches hw; without, the horizon
 * stops before the first such gap. A gap is a claim this site has not read yet (deltas
 * arrive in any order): until it is read or killed, what lies above stays hidden, so a
 * message never appears below a UIDNEXT the site already announced. */
static void walk_horizon(mstate *st, const uint32_t *u, size_t k, int kill)
{
    uint32_t h = st->horizon;
    size_t j = 0;
    while (h < st->hw) {
        uint32_t next = h + 1;
        while (j < k && u[j] < next)
            j++;
        if (j < k && u[j] == next) {
            h = next;
            continue;
        }
        const range *r = dead_from(st, next);
        if (r && r->lo <= next) {
            h = r->hi < st->hw ? r->hi : st->hw;
            continue;
        }
        if (!kill)
            break;
        /* the gap runs up to the next held or dead UID */
        uint32_t end = st->hw;
        if (j < k && u[j] - 1 < end)
            end = u[j] - 1;
        if (r && r->lo - 1 < end)
            end = r->lo - 1;
        dead_add(st, next, end);
        h = end;
    }
    st->horizon = h;
}

/* Moves the horizon up as far as what is known allows. Out of memory it stays (hiding more
 * is safe). */
static void raise_horizon(mstate *st)
{
    uint32_t *u;
    size_t k;
    if (st->horizon == st->hw || uids_above_horizon(st, &u, &k) != MSTATE_OK)
        return;
    walk_horizon(st, u, k, 0);
    free(u);
}

/* Joins the entries idx[0..n) of src (all when idx is NULL) and src's UID bookkeeping and
 * coverage into dst. Everything that can fail is done before dst changes. */
static int join(mstate *dst, const mstate *src, const size_t *idx, size_t n)
{
    if (dst->uidvalidity != src->uidvalidity)
        return MSTATE_EMISMATCH;
    if (!idx)
        n = src->n;
    /* keywords: map src ids to dst ids, adding names dst lacks; of two spellings of one
     * name the bytewise smaller is kept, so every site ends with the same spelling */
    uint16_t kwmap[SYSTEM_FLAGS + MSTATE_KEYWORD_MAX];
    char *fresh[MSTATE_KEYWORD_MAX] = {0};
    int respell[MSTATE_KEYWORD_MAX];
    unsigned nkw = dst->nkw;
    for (unsigned f = 0; f < SYSTEM_FLAGS; f++)
        kwmap[f] = (uint16_t)f;
    int rc = MSTATE_OK;
    /* a join of some entries (a local change into the pending delta) takes along only the
     * names those entries use, so a delta does not carry the whole keyword table */
    uint8_t used[MSTATE_KEYWORD_MAX];
    memset(used, idx ? 0 : 1, sizeof used);
    for (size_t i = 0; idx && i < n; i++) {
        const entry *s = &src->ent[idx[i]];
        for (unsigned r = 0; r < s->nreg; r++)
            if (s->regs[r].id >= SYSTEM_FLAGS)
                used[s->regs[r].id - SYSTEM_FLAGS] = 1;
    }
    for (unsigned k = 0; k < src->nkw; k++) {
        int at = -1;
        respell[k] = 0;
        if (!used[k])
            continue;
        for (unsigned j = 0; j < nkw; j++) {
            const char *have = j < dst->nkw ? dst->kw[j] : fresh[j];
            if (ascii_casecmp(have, src->kw[k]) == 0) {
                at = (int)j;
                break;
            }
        }
        if (at < 0) {
            if (nkw == MSTATE_KEYWORD_MAX) {
                rc = MSTATE_ELIMIT;
                goto fail;
            }
            if (!(fresh[nkw] = strdup(src->kw[k]))) {
                rc = MSTATE_ENOMEM;
                goto fail;
            }
            at = (int)nkw++;
        } else if ((unsigned)at < dst->nkw && strcmp(src->kw[k], dst->kw[at]) < 0) {
            respell[k] = 1;
        }
        kwmap[SYSTEM_FLAGS + k] = (uint16_t)(SYSTEM_FLAGS + at);
    }
    size_t add = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *s = &src->ent[idx ? idx[i] : i];
        long at = find_entry(dst, s->key);
        if (at < 0)
            add++;
        else if (!dst->ent[at].tomb && !s->tomb && (rc = reserve_regs(&dst->ent[at], s->nreg)) != MSTATE_OK)
            goto fail;
    }
    if ((rc = reserve_entries(dst, add)) != MSTATE_OK)
        goto fail;
    /* new entries' register arrays are allocated as they are added below, so allocate them
     * now into a side table to keep the no-failure rule */
    reg **newregs = calloc(add ? add : 1, sizeof *newregs);
    if (!newregs) {
        rc = MSTATE_ENOMEM;
        goto fail;
    }
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *s = &src->ent[idx ? idx[i] : i];
        if (find_entry(dst, s->key) >= 0)
            continue;
        if (s->nreg && !s->tomb && !(newregs[a] = malloc(s->nreg * sizeof(reg)))) {
            for (size_t j = 0; j < a; j++)
                free(newregs[j]);
            free(newregs);
            rc = MSTATE_ENOMEM;
            goto fail;
        }
        a++;
    }
    char *respelled[MSTATE_KEYWORD_MAX] = {0};
    for (unsigned k = 0; k < src->nkw; k++)
        if (respell[k] && !(respelled[k] = strdup(src->kw[k]))) {
            for (unsigned j = 0; j < k; j++)
                free(respelled[j]);
            for (size_t j = 0; j < a; j++)
                free(newregs[j]);
            free(newregs);
            rc = MSTATE_ENOMEM;
            goto fail;
        }
    /* each joined entry may retire two UIDs and burn one; src's own dead ranges come on top */
    uint32_t *moved = malloc((n ? n : 1) * sizeof *moved);
    uint8_t *holders = malloc(n ? n : 1);
    if (!moved || !holders || (rc = reserve_dead(dst, src->ndead + 3 * n)) != MSTATE_OK) {
        if (rc == MSTATE_OK)
            rc = MSTATE_ENOMEM;
        free(moved);
        free(holders);
        for (unsigned j = 0; j < src->nkw; j++)
            free(respelled[j]);
        for (size_t j = 0; j < a; j++)
            free(newregs[j]);
        free(newregs);
        goto fail;
    }

    /* from here on nothing fails */
    for (unsigned k = dst->nkw; k < nkw; k++)
        dst->kw[k] = fresh[k];
    dst->nkw = nkw;
    for (unsigned k = 0; k < src->nkw; k++)
        if (respelled[k]) {
            unsigned at = kwmap[SYSTEM_FLAGS + k] - SYSTEM_FLAGS;
            if (strcmp(respelled[k], dst->kw[at]) < 0) {
                free(dst->kw[at]);
                dst->kw[at] = respelled[k];
            } else {
                free(respelled[k]);
            }
        }
    a = 0;
    size_t nmoved = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *s = &src->ent[idx ? idx[i] : i];
        long at = find_entry(dst, s->key);
        entry *d;
        if (at < 0) {
            d = add_entry(dst, s->key);
            d->folder = s->folder;
            d->regs = newregs[a];
            d->capreg = newregs[a] ? s->nreg : 0;
            a++;
        } else {
            d = &dst->ent[at];
        }
        uint32_t had_gen = d->gen, had_uid = d->uid;
        uint8_t had_claim = d->claimed;
        entry_join(dst, d, s, kwmap);
        if ((d->claimed != had_claim || d->gen != had_gen || d->uid != had_uid) && d->uid)
            moved[nmoved++] = d->uid;
        if (s->tomb)
            clock_see(dst, s->tomb_t);
        for (unsigned r = 0; r < s->nreg; r++)
            clock_see(dst, s->regs[r].t);
    }
    free(newregs);
    for (size_t r = 0; r < src->ndead; r++)
        dead_add(dst, src->dead[r].lo, src->dead[r].hi);
    if (src->hw > dst->hw)
        dst->hw = src->hw;
    clock_see(dst, src->clock);
    for (unsigned c = 0; c < src->ncov; c++) {
        cover *d = get_cover(dst, src->cov[c].site);
        if (d) /* beyond MSTATE_SITES_MAX coverage is not recorded: deltas are kept, not lost */
            cover_join(d, &src->cov[c]);
    }
    /* a pending delta (idx given) is never shown and gets the state's dead set when sealed:
     * skipping the scans keeps a local change O(1) however big the pending delta grows */
    if (!idx) {
        burn_moved(dst, moved, nmoved, holders);
        raise_horizon(dst);
    }
    free(moved);
    free(holders);
    return MSTATE_OK;

fail:
    for (unsigned k = dst->nkw; k < nkw; k++)
        free(fresh[k]);
    return rc;
}

int mstate_merge(mstate *dst, const mstate *src)
{
    if (!dst || !src)
        return MSTATE_EINVAL;
    if (dst == src)
        return MSTATE_OK;
    return join(dst, src, NULL, 0);
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

/* Copies the current value of st's entry i into the pending delta. */
static void note_pending(mstate *st, size_t i)
{
    if (st->pending_all)
        return;
    if (!st->pending && !(st->pending = mstate_new(st->site, st->uidvalidity))) {
        st->pending_all = 1;
        return;
    }
    size_t idx[1] = {i};
    if (join(st->pending, st, idx, 1) != MSTATE_OK)
        st->pending_all = 1; /* the next delta then carries the whole state instead */
}

/* Live, and no valid claim: mstate_assign gives it a new UID. */
static int is_homeless(const mstate *st, const entry *e)
{
    return !e->tomb && (!e->claimed || !e->uid || dead_has(st, e->uid));
}

/* The UID a client is shown: a valid claim at or below the horizon. */
static uint32_t effective_uid(const mstate *st, const entry *e)
{
    if (e->tomb || is_homeless(st, e) || e->uid > st->horizon)
        return 0;
    return e->uid;
}

static int key_cmp_idx(const void *a, const void *b, void *arg)
{
    const mstate *st = arg;
    return memcmp(st->ent[*(const size_t *)a].key, st->ent[*(const size_t *)b].key, MSTATE_MSGKEY_BYTES);
}

int mstate_assign(mstate *st, const uint8_t (*keys)[MSTATE_MSGKEY_BYTES], size_t n, uint64_t now_ms,
                  size_t *assigned)
{
    if (assigned)
        *assigned = 0;
    if (!st || (n && !keys))
        return MSTATE_EINVAL;
    /* claims carry no stamp: the rule needs none (see mstate.h); now_ms dates new entries */
    size_t *homeless = malloc((st->n ? st->n : 1) * sizeof *homeless);
    if (!homeless)
        return MSTATE_ENOMEM;
    int rc = MSTATE_OK;
    size_t nh = 0;
    for (size_t i = 0; i < st->n; i++)
        if (is_homeless(st, &st->ent[i]))
            homeless[nh++] = i;
    /* canonical order, so two sites that know the same re-home the same way */
    qsort_r(homeless, nh, sizeof *homeless, key_cmp_idx, st);
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++)
        if (find_entry(st, keys[i]) < 0)
            fresh++;
    /* a numbering that begins here starts at the floor: 1..floor-1 are killed with the gaps */
    uint32_t base = !st->hw && st->floor > 1 ? st->floor - 1 : st->hw;
    if ((uint64_t)base + nh + fresh > MSTATE_UID_MAX) {
        rc = MSTATE_ELIMIT;
        goto out;
    }
    if (!nh && !fresh)
        goto out; /* nothing to claim: gaps may still fill by themselves */
    /* a new claim must show here at once, so the gaps below it (claims not read yet) are
     * killed: whoever holds such a UID elsewhere is re-homed, which is always safe */
    uint32_t *above;
    size_t nabove;
    if ((rc = uids_above_horizon(st, &above, &nabove)) != MSTATE_OK)
        goto out;
    if ((rc = reserve_entries(st, fresh)) != MSTATE_OK ||
        (rc = reserve_dead(st, nh + nabove + st->ndead + 1)) != MSTATE_OK) {
        free(above);
        goto out;
    }
    st->hw = base;
    walk_horizon(st, above, nabove, 1);
    free(above);
    size_t given = nh;
    for (size_t h = 0; h < nh; h++) {
        entry *e = &st->ent[homeless[h]];
        if (e->claimed && e->uid)
            dead_add(st, e->uid, e->uid);
        e->gen = e->claimed ? e->gen + 1 : 0;
        e->claimed = 1;
        e->uid = ++st->hw;
        note_pending(st, homeless[h]);
    }
    for (size_t i = 0; i < n; i++) {
        if (find_entry(st, keys[i]) >= 0)
            continue; /* known, or listed twice */
        entry *e = add_entry(st, keys[i]);
        e->born = day_of(now_ms);
        e->claimed = 1;
        e->uid = ++st->hw;
        note_pending(st, st->n - 1);
        given++;
    }
    st->horizon = st->hw;
    if (assigned)
        *assigned = given;
out:
    free(homeless);
    return rc;
}

/* Drops the entries the rule names from st (and its pending delta): their UIDs go dead, so a
 * reader of what st writes next still finds 1..horizon known. */
static int forget_in(mstate *st, int (*present)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES]), void *arg,
                     uint32_t today, unsigned min_age_days, size_t *forgotten)
{
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++) {
        const entry *e = &st->ent[i];
        n += e->born && today >= e->born && today - e->born >= min_age_days && !present(arg, e->key);
    }
    if (!n)
        return MSTATE_OK;
    uint32_t *slot = calloc(st->nslot, sizeof *slot);
    int rc = slot ? reserve_dead(st, n) : MSTATE_ENOMEM;
    if (rc != MSTATE_OK) {
        free(slot);
        return rc;
    }
    size_t kept = 0;
    for (size_t i = 0; i < st->n; i++) {
        entry *e = &st->ent[i];
        if (e->born && today >= e->born && today - e->born >= min_age_days && !present(arg, e->key)) {
            if (e->claimed && e->uid)
                dead_add(st, e->uid, e->uid);
            free(e->regs);
            continue;
        }
        st->ent[kept] = *e;
        slot_put(slot, st->nslot, st->ent, (uint32_t)kept);
        kept++;
    }
    free(st->slot);
    st->slot = slot;
    st->n = kept;
    raise_horizon(st);
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
    int rc = forget_in(st, present, arg, today, min_age_days, &n);
    if (rc == MSTATE_OK && st->pending)
        rc = forget_in(st->pending, present, arg, today, min_age_days, &in_pending);
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

static int set_reg(mstate *st, size_t i, uint16_t id, uint8_t val, uint64_t now_ms)
{
    entry *e = &st->ent[i];
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

int mstate_set_flags(mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES], unsigned set_mask, unsigned clear_mask,
                     uint64_t now_ms)
{
    if (!st || !key || (set_mask | clear_mask) & ~MSTATE_FLAGS_ALL)
        return MSTATE_EINVAL;
    long i = find_entry(st, key);
    if (i < 0)
        return MSTATE_EINVAL;
    if (st->ent[i].tomb)
        return MSTATE_OK;
    int changed = 0;
    for (unsigned f = 0; f < SYSTEM_FLAGS; f++) {
        unsigned bit = 1u << f;
        if (!((set_mask | clear_mask) & bit))
            continue;
        reg *r = find_reg(&st->ent[i], (uint16_t)f);
        uint8_t want = (set_mask & bit) ? 1 : 0;
        if (r ? r->val == want : !want)
            continue;
        int rc = set_reg(st, (size_t)i, (uint16_t)f, want, now_ms);
        if (rc != MSTATE_OK)
            return rc;
        changed = 1;
    }
    if (changed)
        note_pending(st, (size_t)i);
    return MSTATE_OK;
}

int mstate_set_keyword(mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES], const char *name, int on,
                       uint64_t now_ms)
{
    if (!st || !key || !kw_valid(name))
        return MSTATE_EINVAL;
    long i = find_entry(st, key);
    if (i < 0)
        return MSTATE_EINVAL;
    if (st->ent[i].tomb)
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
    reg *r = find_reg(&st->ent[i], (uint16_t)(SYSTEM_FLAGS + k));
    uint8_t want = on ? 1 : 0;
    if (r ? r->val == want : !want)
        return MSTATE_OK;
    int rc = set_reg(st, (size_t)i, (uint16_t)(SYSTEM_FLAGS + k), want, now_ms);
    if (rc == MSTATE_OK) {
        note_pending(st, (size_t)i);
    } else if ((unsigned)k == st->nkw - 1 && added) {
        free(st->kw[--st->nkw]); /* a name no register uses would never reach a delta */
        st->kw[st->nkw] = NULL;
    }
    return rc;
}

int mstate_expunge(mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES], uint64_t now_ms)
{
    if (!st || !key)
        return MSTATE_EINVAL;
    long i = find_entry(st, key);
    if (i >= 0 && st->ent[i].tomb)
        return MSTATE_OK;
    if (i < 0) {
        int rc = reserve_entries(st, 1);
        if (rc != MSTATE_OK)
            return rc;
        add_entry(st, key)->born = day_of(now_ms);
        i = (long)st->n - 1;
    }
    entry *e = &st->ent[i];
    e->tomb = 1;
    e->tomb_t = tick(st, now_ms);
    e->nreg = 0;
    note_pending(st, (size_t)i);
    return MSTATE_OK;
}

/* ---- queries ---- */

static void fill_view(const mstate *st, const entry *e, mstate_view *v)
{
    memset(v, 0, sizeof *v);
    v->uid = effective_uid(st, e);
    v->expunged = e->tomb;
    v->folder = e->folder;
    mstate_hlc last = e->tomb ? e->tomb_t : (mstate_hlc){0, 0, 0};
    for (unsigned r = 0; r < e->nreg; r++) {
        if (e->regs[r].id < SYSTEM_FLAGS && e->regs[r].val)
            v->flags |= 1u << e->regs[r].id;
        if (mstate_hlc_cmp(e->regs[r].t, last) > 0)
            last = e->regs[r].t;
    }
    v->modseq = last.ms << 20 | (last.count < 0xfffffu ? last.count : 0xfffffu);
}

int mstate_get(const mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES], mstate_view *out)
{
    long i = st && key ? find_entry(st, key) : -1;
    if (i < 0) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    fill_view(st, &st->ent[i], out);
    return 1;
}

int mstate_keyword_test(const mstate *st, const uint8_t key[MSTATE_MSGKEY_BYTES], const char *name)
{
    long i = st && key && name ? find_entry(st, key) : -1;
    int k = i >= 0 ? kw_find(st, name) : -1;
    if (k < 0)
        return 0;
    const reg *r = find_reg(&st->ent[i], (uint16_t)(SYSTEM_FLAGS + k));
    return r && r->val;
}

int mstate_foreach_uid(const mstate *st,
                       int (*fn)(void *arg, uint32_t uid, const uint8_t key[MSTATE_MSGKEY_BYTES],
                                 const mstate_view *v),
                       void *arg)
{
    uid_ref *refs = malloc((st->n ? st->n : 1) * sizeof *refs);
    if (!refs)
        return MSTATE_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < st->n; i++) {
        uint32_t uid = effective_uid(st, &st->ent[i]);
        if (uid)
            refs[k++] = (uid_ref){uid, (uint32_t)i};
    }
    qsort(refs, k, sizeof *refs, uid_ref_cmp);
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++) {
        /* two live holders of one UID (a burn that ran out of memory): show neither */
        if ((i + 1 < k && refs[i + 1].uid == refs[i].uid) || (i > 0 && refs[i - 1].uid == refs[i].uid))
            continue;
        mstate_view v;
        fill_view(st, &st->ent[refs[i].idx], &v);
        rc = fn(arg, refs[i].uid, st->ent[refs[i].idx].key, &v);
    }
    free(refs);
    return rc;
}

int mstate_foreach_expunged(const mstate *st,
                            int (*fn)(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES], uint32_t uid), void *arg)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->ent[i].tomb) {
            int rc = fn(arg, st->ent[i].key, st->ent[i].claimed ? st->ent[i].uid : 0);
            if (rc)
                return rc;
        }
    return 0;
}

uint32_t mstate_uidvalidity(const mstate *st) { return st->uidvalidity; }
unsigned mstate_keyword_count(const mstate *st) { return st->nkw; }
const char *mstate_keyword_name(const mstate *st, unsigned k) { return k < st->nkw ? st->kw[k] : NULL; }
uint32_t mstate_uid_next(const mstate *st) { return st->horizon + 1; }
size_t mstate_count(const mstate *st) { return st->n; }
uint16_t mstate_site(const mstate *st) { return st->site; }
mstate_hlc mstate_clock(const mstate *st) { return st->clock; }
int mstate_has_pending(const mstate *st) { return st->pending_all || (st->pending && st->pending->n); }

size_t mstate_homeless(const mstate *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += is_homeless(st, &st->ent[i]);
    return n;
}

size_t mstate_waiting(const mstate *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += !is_homeless(st, &st->ent[i]) && !st->ent[i].tomb && st->ent[i].uid > st->horizon;
    return n;
}

mstate *mstate_clone(const mstate *st)
{
    mstate *c = mstate_new(st->site, st->uidvalidity);
    if (!c)
        return NULL;
    if (join(c, st, NULL, 0) != MSTATE_OK) {
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


/* digest: the same bytes without what differs between sites holding the same contents */
static int encode(const mstate *st, enum mstate_kind kind, int digest, uint8_t **out, size_t *out_len)
{
    if (st->ndead > MSTATE_DEAD_RANGES_MAX)
        return MSTATE_ELIMIT; /* never write what no reader accepts */
    wbuf w = {0};
    unsigned order[MSTATE_KEYWORD_MAX], rank[MSTATE_KEYWORD_MAX];
    size_t *idx = malloc((st->n ? st->n : 1) * sizeof *idx);
    reg *regs = malloc((SYSTEM_FLAGS + MSTATE_KEYWORD_MAX) * sizeof *regs);
    if (!idx || !regs) {
        free(idx);
        free(regs);
        return MSTATE_ENOMEM;
    }
    w_bytes(&w, MAGIC_PLAIN, 4);
    w_u8(&w, FORMAT_VERSION);
    w_u8(&w, digest ? MSTATE_SNAPSHOT : (uint8_t)kind);
    uint8_t uv[4] = {(uint8_t)(st->uidvalidity >> 24), (uint8_t)(st->uidvalidity >> 16),
                     (uint8_t)(st->uidvalidity >> 8), (uint8_t)st->uidvalidity};
    w_bytes(&w, uv, 4);
    w_var(&w, digest ? 0 : st->site);
    w_hlc(&w, digest ? (mstate_hlc){0, 0, 0} : (mstate_hlc){st->clock.ms, st->clock.count, st->site});
    w_var(&w, st->hw);
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
    w_var(&w, st->ndead);
    for (size_t r = 0; r < st->ndead; r++) {
        w_var(&w, r ? st->dead[r].lo - st->dead[r - 1].hi - 2 : st->dead[r].lo - 1);
        w_var(&w, st->dead[r].hi - st->dead[r].lo);
    }
    for (size_t i = 0; i < st->n; i++)
        idx[i] = i;
    qsort_r(idx, st->n, sizeof *idx, key_cmp_idx, (void *)st);
    w_var(&w, st->n);
    for (size_t i = 0; i < st->n; i++) {
        const entry *e = &st->ent[idx[i]];
        w_bytes(&w, e->key, MSTATE_MSGKEY_BYTES);
        w_var(&w, e->folder);
        w_u8(&w, (uint8_t)(e->tomb | e->claimed << 1 | (e->born != 0) << 2));
        if (e->born)
            w_var(&w, e->born);
        if (e->tomb)
            w_hlc(&w, e->tomb_t);
        if (e->claimed) {
            w_var(&w, e->gen);
            w_var(&w, e->uid);
        }
        unsigned nreg = e->tomb ? 0 : e->nreg;
        for (unsigned r = 0; r < nreg; r++) {
            regs[r] = e->regs[r];
            if (regs[r].id >= SYSTEM_FLAGS)
                regs[r].id = (uint16_t)(SYSTEM_FLAGS + rank[regs[r].id - SYSTEM_FLAGS]);
        }
        qsort(regs, nreg, sizeof *regs, reg_sort_cmp);
        w_var(&w, nreg);
        for (unsigned r = 0; r < nreg; r++) {
            w_var(&w, regs[r].id);
            w_u8(&w, regs[r].val);
            w_hlc(&w, regs[r].t);
        }
    }
    free(idx);
    free(regs);
    if (w.oom || w.len > MSTATE_ENCODED_MAX - 4) {
        free(w.p);
        return w.oom ? MSTATE_ENOMEM : MSTATE_ELIMIT;
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

static int decode(const uint8_t *in, size_t in_len, mstate **out, mstate_info *info)
{
    rbuf r = {in, in_len, 0};
    const uint8_t *magic = r_bytes(&r, 4);
    if (!magic || memcmp(magic, MAGIC_PLAIN, 4) != 0 || r_u8(&r) != FORMAT_VERSION)
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
    st->hw = (uint32_t)r_var(&r, MSTATE_UID_MAX);
    unsigned ncov = (unsigned)r_var(&r, MSTATE_SITES_MAX);
    for (unsigned c = 0; c < ncov && !r.bad; c++) {
        cover *cv = &st->cov[c];
        cv->site = (uint16_t)r_var(&r, UINT16_MAX);
        cv->upto = r_var(&r, UINT64_MAX - 1);
        cv->nextra = (uint8_t)r_var(&r, MSTATE_EXTRA_MAX);
        if (!cv->site || (c && cv->site <= st->cov[c - 1].site))
            goto bad;
        uint64_t prev = cv->upto + 1;
        for (unsigned i = 0; i < cv->nextra && !r.bad; i++) {
            cv->extra[i] = r_var(&r, UINT64_MAX);
            if (cv->extra[i] <= prev) /* canonical: above upto + 1, ascending */
                goto bad;
            prev = cv->extra[i];
        }
        if (!cv->upto && !cv->nextra)
            goto bad;
        st->ncov++;
    }
    if (kind == MSTATE_DELTA) {
        /* a delta covers exactly itself */
        if (r.bad || ncov != 1 || st->cov[0].site != origin || st->cov[0].upto + st->cov[0].nextra != 1)
            goto bad;
        st->seq = st->cov[0].nextra ? st->cov[0].extra[0] : 1;
    }
    unsigned nkw = (unsigned)r_var(&r, MSTATE_KEYWORD_MAX);
    for (unsigned k = 0; k < nkw && !r.bad; k++) {
        uint8_t len = r_u8(&r);
        const uint8_t *name = r_bytes(&r, len);
        if (!name)
            goto bad;
        char buf[MSTATE_KEYWORD_LEN_MAX + 1];
        if (len > MSTATE_KEYWORD_LEN_MAX || memchr(name, 0, len))
            goto bad;
        memcpy(buf, name, len);
        buf[len] = 0;
        if (!kw_valid(buf) || (k && strcmp(st->kw[k - 1], buf) >= 0) || kw_find(st, buf) >= 0)
            goto bad;
        if (!(st->kw[k] = strdup(buf))) {
            rc = MSTATE_ENOMEM;
            goto bad;
        }
        st->nkw++;
    }
    uint64_t ndead = r_var(&r, MSTATE_DEAD_RANGES_MAX);
    if (r.bad || ndead > r.left / 2)
        goto bad;
    if ((rc = reserve_dead(st, ndead)) != MSTATE_OK)
        goto bad;
    rc = MSTATE_EFORMAT;
    uint64_t prev_hi = 0;
    for (uint64_t i = 0; i < ndead && !r.bad; i++) {
        uint64_t gap = r_var(&r, MSTATE_UID_MAX), span = r_var(&r, MSTATE_UID_MAX);
        uint64_t lo = i ? prev_hi + 2 + gap : 1 + gap, hi = lo + span;
        if (hi > st->hw)
            goto bad;
        st->dead[st->ndead++] = (range){(uint32_t)lo, (uint32_t)hi};
        prev_hi = hi;
    }
    uint64_t nmsg = r_var(&r, MSTATE_MESSAGES_MAX);
    if (r.bad || nmsg > r.left / MIN_ENTRY_BYTES)
        goto bad;
    if ((rc = reserve_entries(st, nmsg)) != MSTATE_OK)
        goto bad;
    rc = MSTATE_EFORMAT;
    for (uint64_t i = 0; i < nmsg && !r.bad; i++) {
        const uint8_t *key = r_bytes(&r, MSTATE_MSGKEY_BYTES);
        if (!key || (i && memcmp(st->ent[st->n - 1].key, key, MSTATE_MSGKEY_BYTES) >= 0))
            goto bad;
        entry *e = add_entry(st, key);
        e->folder = (uint32_t)r_var(&r, 0); /* folders are issue 13: only the INBOX for now */
        uint8_t bits = r_u8(&r);
        if (bits & ~7u)
            goto bad;
        e->tomb = bits & 1;
        e->claimed = bits >> 1 & 1;
        if (bits & 4 && !(e->born = (uint32_t)r_var(&r, UINT32_MAX)))
            goto bad; /* written only when known */
        bits &= 3;
        if (e->tomb)
            e->tomb_t = r_hlc(&r);
        if (e->claimed) {
            e->gen = (uint32_t)r_var(&r, UINT32_MAX);
            e->uid = (uint32_t)r_var(&r, st->hw);
        }
        uint64_t nreg = r_var(&r, e->tomb ? 0 : SYSTEM_FLAGS + st->nkw);
        if (r.bad || (!bits && !nreg) || nreg > r.left / 4)
            goto bad;
        if (nreg && (rc = reserve_regs(e, nreg)) != MSTATE_OK)
            goto bad;
        rc = MSTATE_EFORMAT;
        for (uint64_t k = 0; k < nreg && !r.bad; k++) {
            reg *g = &e->regs[e->nreg];
            g->id = (uint16_t)r_var(&r, SYSTEM_FLAGS + st->nkw - 1);
            g->val = r_u8(&r);
            g->t = r_hlc(&r);
            if (g->val > 1 || (k && g->id <= e->regs[e->nreg - 1].id))
                goto bad;
            e->nreg++;
        }
    }
    if (r.bad || r.left)
        goto bad;
    /* the encoder never writes two holders of a live UID (merges burn them) */
    uid_ref *refs = malloc((st->n ? st->n : 1) * sizeof *refs);
    if (!refs) {
        rc = MSTATE_ENOMEM;
        goto bad;
    }
    size_t k = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->ent[i].claimed && st->ent[i].uid && !dead_has(st, st->ent[i].uid))
            refs[k++] = (uid_ref){st->ent[i].uid, (uint32_t)i};
    qsort(refs, k, sizeof *refs, uid_ref_cmp);
    for (size_t i = 1; i < k; i++)
        if (refs[i].uid == refs[i - 1].uid) {
            free(refs);
            goto bad;
        }
    free(refs);
    raise_horizon(st);
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
    sealed[4] = FORMAT_VERSION;
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
     * UID bookkeeping of the whole state (small) and only its own number as coverage */
    mstate *d = mstate_new(st->site, st->uidvalidity);
    if (!d)
        return MSTATE_ENOMEM;
    int rc = join(d, st->pending_all || !st->pending ? st : st->pending, NULL, 0);
    if (rc == MSTATE_OK && st->pending_all)
        d->ncov = 0;
    if (rc == MSTATE_OK && !st->pending_all) {
        d->ncov = 0;
        if ((rc = reserve_dead(d, st->ndead)) == MSTATE_OK)
            for (size_t i = 0; i < st->ndead; i++)
                dead_add(d, st->dead[i].lo, st->dead[i].hi);
        d->hw = st->hw;
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
        memcmp(in, MAGIC_SEALED, 4) != 0 || in[4] != FORMAT_VERSION)
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
