/* mailbox: the messages of a folder other than the INBOX (issue 13). The INBOX's list comes
 * from the scan and the user's state (replica.c's relist, userstate); a folder's comes from
 * the replicated state alone: its entries with a UID (mstate_foreach_uid) whose article this
 * site's group holds. One list per folder, shared by every view of it in the account, rebuilt
 * when the account changed since it was built (a scan, a merge, a local change), and kept
 * for the account's life so its change numbers (modseq) only grow. */
#include <stdlib.h>
#include <string.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

typedef struct art_key {
    uint8_t key[MSTATE_MSGKEY_BYTES];
    size_t idx; /* into the scan's arts */
} art_key;

static int art_key_cmp(const void *a, const void *b)
{
    return memcmp(((const art_key *)a)->key, ((const art_key *)b)->key, MSTATE_MSGKEY_BYTES);
}

typedef struct build {
    mb_account *a;
    const mstate *ms;
    uint32_t folder;
    art_key *arts; /* the scan's articles by key */
    size_t narts;
    mb_fmsg *m;
    size_t n, cap;
    bool nomem;
} build;

void mb_state_keywords(mb_account *a, uint32_t folder, const uint8_t key[MSTATE_MSGKEY_BYTES],
                       uint8_t kw[US_KEYWORD_SET_BYTES])
{
    const mstate *ms = mb_replica_state(a);
    memset(kw, 0, US_KEYWORD_SET_BYTES);
    unsigned nk = ms ? mstate_keyword_count(ms) : 0;
    for (unsigned k = 0; k < nk; k++) {
        const char *name = mstate_keyword_name(ms, k);
        unsigned idx;
        if (name && mstate_keyword_test(ms, folder, key, name) && userstate_keyword(a->us, name, &idx) == US_OK)
            us_kw_put(kw, idx, 1); /* a full table: left out */
    }
}

static int add_entry(void *arg, uint32_t uid, const uint8_t key[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    build *b = arg;
    art_key probe;
    memcpy(probe.key, key, sizeof probe.key);
    const art_key *hit = b->narts ? bsearch(&probe, b->arts, b->narts, sizeof *b->arts, art_key_cmp) : NULL;
    if (!hit)
        return 0; /* its article has not reached this site (or expired): not shown */
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        mb_fmsg *p = realloc(b->m, cap * sizeof *p);
        if (!p) {
            b->nomem = true;
            return 1;
        }
        b->m = p;
        b->cap = cap;
    }
    const mb_msg *art = &b->a->mbox->arts[hit->idx];
    mb_fmsg *f = &b->m[b->n++];
    memset(f, 0, sizeof *f);
    f->uid = uid;
    f->flags = (uint8_t)(v->flags & US_FLAGS_ALL);
    f->bytes = art->bytes;
    memcpy(f->key, key, sizeof f->key);
    memcpy(f->msgid, art->msgid, sizeof f->msgid);
    mb_state_keywords(b->a, b->folder, key, f->kw);
    return 0;
}

/* Carries the change numbers over from the old list (both ascend by UID): an entry whose
 * flags or keywords differ, or that is new, gets the next number; a UID that left bumps
 * gone (views look for vanished messages only then). */
static void carry(mb_flist *fl, mb_fmsg *m, size_t n)
{
    size_t k = 0;
    bool dropped = false;
    for (size_t i = 0; i < n; i++) {
        while (k < fl->n && fl->m[k].uid < m[i].uid) {
            dropped = true;
            k++;
        }
        const mb_fmsg *old = k < fl->n && fl->m[k].uid == m[i].uid ? &fl->m[k] : NULL;
        if (old && memcmp(old->key, m[i].key, sizeof old->key) != 0) {
            dropped = true; /* cannot happen: a UID never names two messages of a folder */
            old = NULL;
        }
        if (old && old->flags == m[i].flags && memcmp(old->kw, m[i].kw, sizeof old->kw) == 0)
            m[i].modseq = old->modseq;
        else
            m[i].modseq = ++fl->modseq;
        if (old)
            k++;
    }
    if (dropped || k < fl->n)
        fl->gone++;
}

static int rebuild(mb_account *a, mb_flist *fl)
{
    const mstate *ms = mb_replica_state(a);
    const mb_mbox *mb = a->mbox;
    build b = {.a = a, .ms = ms, .folder = fl->folder};
    if (!ms)
        return -1;
    if (mb->narts && !(b.arts = malloc(mb->narts * sizeof *b.arts)))
        return -1;
    for (size_t i = 0; i < mb->narts; i++) {
        memcpy(b.arts[i].key, mb->arts[i].key, MSTATE_MSGKEY_BYTES);
        b.arts[i].idx = i;
    }
    b.narts = mb->narts;
    qsort(b.arts, b.narts, sizeof *b.arts, art_key_cmp);
    int rc = mstate_folder_exists(ms, fl->folder) ? mstate_foreach_uid(ms, fl->folder, add_entry, &b) : MSTATE_OK;
    free(b.arts);
    if (rc != MSTATE_OK || b.nomem) {
        free(b.m);
        return -1; /* the old list stays until the next change */
    }
    carry(fl, b.m, b.n);
    free(fl->m);
    fl->m = b.m;
    fl->n = b.n;
    fl->gen = a->state_gen;
    fl->uidvalidity = mstate_folder_uidvalidity(ms, fl->folder);
    fl->uidnext = mstate_uid_next(ms, fl->folder);
    if (fl->n && fl->m[fl->n - 1].uid >= fl->uidnext)
        fl->uidnext = fl->m[fl->n - 1].uid + 1;
    return 0;
}

static mb_flist *flist_of(mb_account *a, uint32_t folder);

mb_flist *mb_flist_get(mb_account *a, uint32_t folder)
{
    mb_flist *fl = a->flists;
    while (fl && fl->folder != folder)
        fl = fl->next;
    if (!fl) {
        if (!mb_replica_state(a) || !(fl = calloc(1, sizeof *fl)))
            return NULL;
        fl->folder = folder;
        fl->gen = a->state_gen - 1; /* built below */
        fl->next = a->flists;
        a->flists = fl;
    }
    if (fl->gen != a->state_gen && rebuild(a, fl) != 0 && !fl->built)
        return NULL; /* never built: nothing to show yet (out of memory) */
    fl->built = true;
    return fl;
}

long mb_flist_find(const mb_flist *fl, uint32_t uid)
{
    size_t lo = 0, hi = fl->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fl->m[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < fl->n && fl->m[lo].uid == uid && !fl->m[lo].expunged ? (long)lo : -1;
}

size_t mb_flist_count_up_to(const mb_flist *fl, uint32_t uid)
{
    size_t lo = 0, hi = fl->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fl->m[mid].uid <= uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void mb_flist_touched(mb_account *a, uint32_t folder, uint32_t uid)
{
    mb_flist *fl = flist_of(a, folder);
    const mstate *ms = mb_replica_state(a);
    if (!fl || !ms || fl->gen != a->state_gen)
        return; /* rebuilt at its next use anyway */
    long i = mb_flist_find(fl, uid);
    mstate_view v;
    if (i < 0 || !mstate_get(ms, folder, fl->m[i].key, &v) || v.expunged || v.uid != uid) {
        a->state_gen++; /* new, gone or renumbered: a rebuild tells */
        return;
    }
    mb_fmsg *f = &fl->m[i];
    uint8_t kw[US_KEYWORD_SET_BYTES];
    mb_state_keywords(a, folder, f->key, kw);
    if (f->flags != (v.flags & US_FLAGS_ALL) || memcmp(f->kw, kw, sizeof kw) != 0) {
        f->flags = (uint8_t)(v.flags & US_FLAGS_ALL);
        memcpy(f->kw, kw, sizeof kw);
        f->modseq = ++fl->modseq;
    }
}

static mb_flist *flist_of(mb_account *a, uint32_t folder)
{
    mb_flist *fl = a->flists;
    while (fl && fl->folder != folder)
        fl = fl->next;
    return fl;
}

void mb_flist_expunged(mb_account *a, uint32_t folder, uint32_t uid)
{
    mb_flist *fl = flist_of(a, folder);
    long i = fl ? mb_flist_find(fl, uid) : -1;
    if (i >= 0) {
        fl->m[i].expunged = true;
        fl->gone++;
    }
}

void mb_flist_invalidate(mb_account *a, uint32_t folder)
{
    mb_flist *fl = flist_of(a, folder);
    if (fl)
        fl->gen = a->state_gen - 1;
}

void mb_flists_free(mb_account *a)
{
    for (mb_flist *fl = a->flists, *next; fl; fl = next) {
        next = fl->next;
        free(fl->m);
        free(fl);
    }
    a->flists = NULL;
}
