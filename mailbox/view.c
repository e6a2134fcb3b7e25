/* mailbox: one client's numbering of an account's mailbox. Sequence numbers belong to the
 * client: a message that vanished (expunged elsewhere, expired or cancelled by INN) keeps its
 * number until the client may be told (IMAP sends no EXPUNGE during FETCH, STORE or SEARCH),
 * and new messages are numbered only once announced. The view holds UIDs as runs of
 * consecutive numbers (INN numbers a group's articles one after another), so ten thousand
 * idling sessions on a big mailbox hold a few runs each, not a copy of every UID. */
#include <stdlib.h>
#include <string.h>

#include "mailbox/mb.h"

static bool hidden(const mb_account *a, const char *msgid)
{
    userstate_msg st;
    userstate_get(a->us, msgid, &st);
    return st.removed;
}

/* Appends uid, which is above every UID of the view. */
static int push(mb_view *v, uint32_t uid)
{
    if (v->nruns && v->runs[v->nruns - 1].hi + 1 == uid) {
        v->runs[v->nruns - 1].hi = uid;
        v->n++;
        return 0;
    }
    if (v->nruns == v->runs_cap) {
        size_t cap = v->runs_cap ? v->runs_cap * 2 : 4;
        mb_uid_run *p = realloc(v->runs, cap * sizeof *p);
        if (!p)
            return -1;
        v->runs = p;
        v->runs_cap = cap;
    }
    v->runs[v->nruns++] = (mb_uid_run){uid, uid, v->n};
    v->n++;
    return 0;
}

/* The run holding message i (i < v->n). */
static const mb_uid_run *run_of(const mb_view *v, size_t i)
{
    size_t lo = 0, hi = v->nruns;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->runs[mid].before <= i)
            lo = mid;
        else
            hi = mid;
    }
    return &v->runs[lo];
}

uint32_t mb_view_uid(const mb_view *v, size_t i)
{
    const mb_uid_run *r = run_of(v, i);
    return r->lo + (uint32_t)(i - r->before);
}

uint32_t mb_view_last_uid(const mb_view *v)
{
    return v->nruns ? v->runs[v->nruns - 1].hi : 0;
}

size_t mb_view_count_up_to(const mb_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->nruns; /* the first run that ends above uid */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->runs[mid].hi <= uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->nruns)
        return v->n;
    const mb_uid_run *r = &v->runs[lo];
    return uid < r->lo ? r->before : r->before + (uid - r->lo) + 1;
}

bool mb_view_recent(const mb_view *v, size_t i)
{
    uint32_t uid = mb_view_uid(v, i);
    for (size_t k = 0; k < v->nrecent; k++) /* nearly always one range */
        if (uid >= v->recent[k].lo && uid <= v->recent[k].hi)
            return true;
    return false;
}

/* Counted by two binary searches per range of \Recent UIDs (nearly always one), since every
 * idling session counts them again on new mail. */
size_t mb_view_count_recent(const mb_view *v)
{
    size_t n = 0;
    for (size_t k = 0; k < v->nrecent; k++)
        n += mb_view_count_up_to(v, v->recent[k].hi) - mb_view_count_up_to(v, v->recent[k].lo - 1);
    return n;
}

/* New UIDs above the user's \Recent mark become \Recent in this view (RFC 3501: in one
 * session only, once). The mark lives in the user's state, not in the mailbox, which is
 * freed when the user's last session ends. A view keeps what it was given when another
 * takes the next messages, so its \Recent UIDs are ranges. A read-only view sees them as
 * \Recent but leaves them to the next one (RFC 3501 2.3.2, 6.3.2). */
static void claim_recent(mb_view *v, mb_account *a, uint32_t last)
{
    uint32_t from = userstate_recent_uid(a->us, v->uidvalidity);
    if (v->nrecent && v->recent[v->nrecent - 1].hi > from)
        from = v->recent[v->nrecent - 1].hi; /* read-only: shown already, the mark did not move */
    if (last <= from)
        return;
    if (v->nrecent && v->recent[v->nrecent - 1].hi == from) {
        v->recent[v->nrecent - 1].hi = last;
    } else {
        if (v->nrecent == v->recent_cap) {
            size_t cap = v->recent_cap ? v->recent_cap * 2 : 2;
            mb_uid_range *p = realloc(v->recent, cap * sizeof *p);
            if (!p)
                return; /* left to the next view that looks, rather than to none */
            v->recent = p;
            v->recent_cap = cap;
        }
        v->recent[v->nrecent++] = (mb_uid_range){from + 1, last};
    }
    if (!v->readonly)
        userstate_recent_raise(a->us, v->uidvalidity, last);
}

const mb_fmsg *mb_view_fmsg(const mb_view *v, mb_account *a, size_t i)
{
    if (i >= v->n)
        return NULL;
    const mb_flist *fl = mb_flist_get(a, v->folder);
    long k = fl ? mb_flist_find(fl, mb_view_uid(v, i)) : -1;
    return k < 0 ? NULL : &fl->m[k];
}

const char *mb_view_msgid(const mb_view *v, mb_account *a, size_t i)
{
    if (i >= v->n)
        return NULL;
    if (v->folder != MB_INBOX_ID) {
        const mb_fmsg *f = mb_view_fmsg(v, a, i);
        return f ? f->msgid : NULL;
    }
    const mb_mbox *m = a->mbox;
    long k = mb_mbox_find(m, mb_view_uid(v, i));
    return k < 0 ? NULL : m->msgs[k].msgid;
}

uint64_t mb_view_uidnext(const mb_view *v, mb_account *a)
{
    uint64_t next = a->mbox->uidnext ? a->mbox->uidnext : 1;
    if (v->folder != MB_INBOX_ID) {
        const mb_flist *fl = mb_flist_get(a, v->folder);
        next = fl && fl->uidnext ? fl->uidnext : 1;
    }
    if (v->n && mb_view_last_uid(v) >= next)
        next = (uint64_t)mb_view_last_uid(v) + 1;
    return next;
}

static int open_folder(mb_view *v, mb_account *a)
{
    const mb_flist *fl = mb_flist_get(a, v->folder);
    if (!fl)
        return -1;
    v->uidvalidity = fl->uidvalidity;
    for (size_t i = 0; i < fl->n; i++)
        if (push(v, fl->m[i].uid) != 0) {
            mb_view_free(v);
            return -1;
        }
    v->expunge_gone = fl->gone;
    v->modseq_seen = fl->modseq;
    return 0;
}

int mb_view_open(mb_view *v, mb_account *a, uint32_t folder, bool readonly)
{
    const mb_mbox *m = a->mbox;
    memset(v, 0, sizeof *v);
    v->readonly = readonly;
    v->folder = folder;
    if (folder != MB_INBOX_ID)
        return open_folder(v, a); /* no \Recent outside the INBOX (RFC 9051 drops it) */
    v->uidvalidity = m->uidvalidity;
    for (size_t i = 0; i < m->n; i++)
        if (!hidden(a, m->msgs[i].msgid) && push(v, m->msgs[i].uid) != 0) {
            mb_view_free(v);
            return -1;
        }
    v->expunge_modseq = userstate_modseq(a->us);
    v->expunge_gone = m->gone_gen;
    if (v->n)
        claim_recent(v, a, mb_view_last_uid(v));
    v->modseq_seen = userstate_modseq(a->us);
    return 0;
}

void mb_view_free(mb_view *v)
{
    free(v->runs);
    free(v->recent);
    memset(v, 0, sizeof *v);
}

/* The messages of v gone from the mailbox (or removed in the state), walked beside the
 * mailbox's list: both are sorted by UID. keep: the view without them, or NULL to only
 * report them (to the sink, with the sequence numbers as they are at that moment). */
static int vanished(const mb_view *v, const mb_account *a, mb_view *keep, const mb_view_sink *sink, void *ctx)
{
    const mb_mbox *m = a->mbox;
    size_t removed = 0, i = 0, k = 0;
    for (size_t r = 0; r < v->nruns; r++)
        for (uint64_t uid = v->runs[r].lo; uid <= v->runs[r].hi; uid++, i++) {
            while (k < m->n && m->msgs[k].uid < uid)
                k++;
            bool gone = k == m->n || m->msgs[k].uid != uid || hidden(a, m->msgs[k].msgid);
            if (gone) {
                if (!keep && sink->expunge)
                    sink->expunge(ctx, i + 1 - removed, (uint32_t)uid);
                removed++;
            } else if (keep && push(keep, (uint32_t)uid) != 0) {
                return -1;
            }
        }
    return 0;
}

/* mb_view_sync of a folder: the same three steps against the folder's list. */
static int sync_folder(mb_view *v, mb_account *a, bool expunges, const mb_view_sink *sink, void *ctx)
{
    const mb_flist *fl = mb_flist_get(a, v->folder);
    if (!fl)
        return 0; /* out of memory: looked at again at the next sync */
    if (fl->uidvalidity != v->uidvalidity)
        return -1;
    if (expunges && (v->expunge_retry || fl->gone != v->expunge_gone)) {
        mb_view kept = {.folder = v->folder};
        size_t removed = 0, i = 0, k = 0;
        bool nomem = false;
        for (size_t pass = 0; pass < 2 && !nomem; pass++) { /* numbered first, told after */
            removed = i = k = 0;
            for (size_t r = 0; r < v->nruns && !nomem; r++)
                for (uint64_t uid = v->runs[r].lo; uid <= v->runs[r].hi; uid++, i++) {
                    while (k < fl->n && fl->m[k].uid < uid)
                        k++;
                    if (k == fl->n || fl->m[k].uid != uid || fl->m[k].expunged) {
                        if (pass == 1 && sink->expunge)
                            sink->expunge(ctx, i + 1 - removed, (uint32_t)uid);
                        removed++;
                    } else if (pass == 0 && push(&kept, (uint32_t)uid) != 0) {
                        nomem = true;
                    }
                }
            if (pass == 0 && !removed)
                break;
        }
        if (nomem) {
            free(kept.runs);
            v->expunge_retry = true;
            pu_log(PU_ERROR, "out of memory: expunges not reported yet");
        } else {
            v->expunge_retry = false;
            v->expunge_gone = fl->gone;
            free(v->runs);
            v->runs = kept.runs;
            v->nruns = kept.nruns;
            v->runs_cap = kept.runs_cap;
            v->n = kept.n;
        }
    }
    size_t before = v->n;
    for (size_t i = mb_flist_count_up_to(fl, mb_view_last_uid(v)); i < fl->n; i++)
        if (!fl->m[i].expunged && push(v, fl->m[i].uid) != 0)
            break;
    if (v->n != before && sink->exists)
        sink->exists(ctx, v->n, 0);
    if (fl->modseq > v->modseq_seen) {
        for (size_t i = 0; i < before && i < v->n; i++) {
            long k = mb_flist_find(fl, mb_view_uid(v, i));
            if (k < 0 || fl->m[k].modseq <= v->modseq_seen || !sink->flags)
                continue;
            userstate_msg st;
            mb_view_state(v, a, i, &st);
            sink->flags(ctx, i, &st);
        }
        v->modseq_seen = fl->modseq;
    }
    return 0;
}

int mb_view_sync(mb_view *v, mb_account *a, bool expunges, const mb_view_sink *sink, void *ctx)
{
    if (v->folder != MB_INBOX_ID)
        return sync_folder(v, a, expunges, sink, ctx);
    const mb_mbox *m = a->mbox;
    if (v->uidvalidity != m->uidvalidity)
        return -1; /* the numbers changed under the client: it must start over */
    uint64_t now = userstate_modseq(a->us);
    /* Looking for vanished messages costs a lookup per message, and every idling view of the
     * account does it when the mailbox changes: only when something may have vanished (a
     * full scan, or a removal in the state, which moves its modseq). */
    if (expunges && (v->expunge_retry || now != v->expunge_modseq || m->gone_gen != v->expunge_gone)) {
        v->expunge_retry = false;
        v->expunge_modseq = now;
        v->expunge_gone = m->gone_gen;
        mb_view kept = {0};
        if (vanished(v, a, &kept, sink, ctx) != 0) {
            free(kept.runs);
            v->expunge_retry = true; /* numbered as they were: looked at again at the next sync */
            pu_log(PU_ERROR, "out of memory: expunges not reported yet");
        } else {
            if (kept.n != v->n)
                vanished(v, a, NULL, sink, ctx); /* told only once the new numbering is there */
            free(v->runs);
            v->runs = kept.runs;
            v->nruns = kept.nruns;
            v->runs_cap = kept.runs_cap;
            v->n = kept.n;
        }
    }
    /* new messages: everything above the last UID the view knows */
    uint32_t last = mb_view_last_uid(v);
    size_t before = v->n;
    for (size_t i = mb_mbox_count_up_to(m, last); i < m->n; i++)
        if (!hidden(a, m->msgs[i].msgid) && push(v, m->msgs[i].uid) != 0)
            break;
    if (v->n != before) {
        claim_recent(v, a, mb_view_last_uid(v));
        if (sink->exists)
            sink->exists(ctx, v->n, mb_view_count_recent(v));
    }
    /* flags changed by other clients */
    if (now > v->modseq_seen) {
        for (size_t i = 0; i < before && i < v->n; i++) {
            const char *id = mb_view_msgid(v, a, i);
            userstate_msg st;
            if (!id)
                continue;
            userstate_get(a->us, id, &st);
            if (st.modseq > v->modseq_seen && !st.removed && sink->flags)
                sink->flags(ctx, i, &st);
        }
        v->modseq_seen = now;
    }
    return 0;
}
