/* gateway: one session's view of the mailbox. IMAP sequence numbers belong to the session:
 * a message that vanished (expunged elsewhere, expired or cancelled by INN) keeps its number
 * until the session may be told (EXPUNGE is not allowed during FETCH, STORE or SEARCH), and
 * new messages are numbered only once announced with EXISTS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "gateway/mailbox.h"

static bool hidden(gw_account *a, const char *msgid)
{
    userstate_msg st;
    userstate_get(a->us, msgid, &st);
    return st.removed;
}

/* Appends uid, which is above every UID of the view. */
static int push(gw_view *v, uint32_t uid)
{
    if (v->nruns && v->runs[v->nruns - 1].hi + 1 == uid) {
        v->runs[v->nruns - 1].hi = uid;
        v->n++;
        return 0;
    }
    if (v->nruns == v->runs_cap) {
        size_t cap = v->runs_cap ? v->runs_cap * 2 : 4;
        gw_uid_run *p = realloc(v->runs, cap * sizeof *p);
        if (!p)
            return -1;
        v->runs = p;
        v->runs_cap = cap;
    }
    v->runs[v->nruns++] = (gw_uid_run){uid, uid, v->n};
    v->n++;
    return 0;
}

/* The run holding message i (i < v->n). */
static const gw_uid_run *run_of(const gw_view *v, size_t i)
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

uint32_t gw_view_uid(const gw_view *v, size_t i)
{
    const gw_uid_run *r = run_of(v, i);
    return r->lo + (uint32_t)(i - r->before);
}

uint32_t gw_view_last_uid(const gw_view *v)
{
    return v->nruns ? v->runs[v->nruns - 1].hi : 0;
}

bool gw_view_recent(const session *s, size_t i)
{
    return pi_seqset_contains(&s->view->recent, gw_view_uid(s->view, i));
}

/* How many messages of the view have a UID up to uid (the index of the first one above). */
static size_t count_up_to(const gw_view *v, uint32_t uid)
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
    const gw_uid_run *r = &v->runs[lo];
    return uid < r->lo ? r->before : r->before + (uid - r->lo) + 1;
}

/* Counted by two binary searches per range of \Recent UIDs (nearly always one), since every
 * idling session counts them again on new mail. */
static size_t count_recent(const session *s)
{
    const gw_view *v = s->view;
    size_t n = 0;
    for (size_t k = 0; k < v->recent.n; k++)
        n += count_up_to(v, v->recent.r[k].hi) - count_up_to(v, v->recent.r[k].lo - 1);
    return n;
}

/* New UIDs above the user's \Recent mark become \Recent in this session (RFC 3501: in one
 * session only, once). The mark lives in the user's state, not in the mailbox, which is
 * freed when the user's last session ends. A session keeps what it was given when another
 * session takes the next messages, so its \Recent UIDs are ranges. A read-only session
 * sees them as \Recent but leaves them to the next session (RFC 3501 2.3.2, 6.3.2). */
static void claim_recent(session *s, uint32_t last)
{
    gw_account *a = s->account;
    gw_view *v = s->view;
    pi_seqset *r = &v->recent;
    uint32_t from = userstate_recent_uid(a->us, v->uidvalidity);
    if (r->n && r->r[r->n - 1].hi > from)
        from = r->r[r->n - 1].hi; /* read-only: shown already, the mark did not move */
    if (last <= from)
        return;
    if (r->n && r->r[r->n - 1].hi == from) {
        r->r[r->n - 1].hi = last;
    } else {
        if (r->n == v->recent_cap) {
            size_t cap = v->recent_cap ? v->recent_cap * 2 : 2;
            pi_range *p = realloc(r->r, cap * sizeof *p);
            if (!p)
                return; /* left to the next session that looks, rather than to none */
            r->r = p;
            v->recent_cap = cap;
        }
        r->r[r->n++] = (pi_range){from + 1, last};
    }
    if (!v->readonly)
        userstate_recent_raise(a->us, v->uidvalidity, last);
}

const char *gw_view_msgid(session *s, size_t i)
{
    if (i >= s->view->n)
        return NULL;
    gw_mbox *m = s->account->mbox;
    long k = gw_mbox_find(m, gw_view_uid(s->view, i));
    return k < 0 ? NULL : m->msgs[k].msgid;
}

void gw_view_state(session *s, size_t i, userstate_msg *out)
{
    const char *id = gw_view_msgid(s, i);
    if (!id) {
        memset(out, 0, sizeof *out);
        return;
    }
    userstate_get(s->account->us, id, out);
}

static const char *const system_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"};

int gw_write_flags(pu_buf *b, session *s, const userstate_msg *m, bool recent)
{
    int rc = pu_buf_addstr(b, "(");
    bool first = true;
    for (unsigned f = 0; f < 5; f++)
        if (m->flags & (1u << f)) {
            rc |= pu_buf_printf(b, "%s%s", first ? "" : " ", system_flags[f]);
            first = false;
        }
    userstate *us = s->account->us;
    unsigned nk = userstate_keyword_count(us);
    for (unsigned k = 0; k < nk; k++)
        if (us_kw_test(m->keywords, k)) {
            const char *name = userstate_keyword_name(us, k);
            if (name) {
                rc |= pu_buf_printf(b, "%s%s", first ? "" : " ", name);
                first = false;
            }
        }
    if (recent)
        rc |= pu_buf_printf(b, "%s\\Recent", first ? "" : " ");
    rc |= pu_buf_addstr(b, ")");
    return rc ? -1 : 0;
}

static void write_buf(session *s, pu_buf *b)
{
    if (b->len)
        gw_write(s, b->data, b->len);
    pu_buf_clear(b);
}

/* FLAGS and PERMANENTFLAGS: the system flags and the user's keywords (RFC 3501 7.2.6). */
static void flags_lines(session *s, pu_buf *b)
{
    userstate *us = s->account->us;
    pu_buf kws = PU_BUF_INIT;
    unsigned nk = userstate_keyword_count(us);
    for (unsigned k = 0; k < nk; k++) {
        const char *name = userstate_keyword_name(us, k);
        if (name)
            pu_buf_printf(&kws, " %s", name);
    }
    const char *names = kws.len ? kws.data : "";
    pu_buf_printf(b, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s)\r\n", names);
    if (s->view->readonly)
        pu_buf_addstr(b, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else
        pu_buf_printf(b,
                      "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s \\*)] Flags "
                      "permitted\r\n",
                      names);
    pu_buf_free(&kws);
    s->view->keywords_gen = userstate_keyword_gen(us);
}

void gw_view_announce_flags(session *s)
{
    if (!s->view || s->view->empty_folder || !s->account ||
        userstate_keyword_gen(s->account->us) == s->view->keywords_gen)
        return;
    pu_buf b = PU_BUF_INIT;
    flags_lines(s, &b);
    write_buf(s, &b);
    pu_buf_free(&b);
}

int gw_view_open(session *s, bool readonly)
{
    gw_account *a = s->account;
    gw_mbox *m = a->mbox;
    gw_view *v = calloc(1, sizeof *v);
    if (!v)
        return -1;
    v->readonly = readonly;
    v->uidvalidity = m->uidvalidity;
    for (size_t i = 0; i < m->n; i++)
        if (!hidden(a, m->msgs[i].msgid) && push(v, m->msgs[i].uid) != 0) {
            free(v->runs);
            free(v);
            return -1;
        }
    s->view = v;
    a->watched++;
    v->expunge_modseq = userstate_modseq(a->us);
    v->expunge_gone = m->gone_gen;
    if (v->n)
        claim_recent(s, gw_view_last_uid(v));
    v->modseq_seen = userstate_modseq(a->us);

    pu_buf b = PU_BUF_INIT;
    flags_lines(s, &b);
    pu_buf_printf(&b, "* %zu EXISTS\r\n* %zu RECENT\r\n", v->n, count_recent(s));
    for (size_t i = 0; i < v->n; i++) {
        userstate_msg st;
        gw_view_state(s, i, &st);
        if (!(st.flags & US_SEEN)) {
            pu_buf_printf(&b, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
            break;
        }
    }
    pu_buf_printf(&b, "* OK [UIDVALIDITY %u] UIDs valid\r\n", v->uidvalidity);
    uint64_t next = m->high + 1;
    if (v->n && gw_view_last_uid(v) >= next)
        next = (uint64_t)gw_view_last_uid(v) + 1;
    pu_buf_printf(&b, "* OK [UIDNEXT %llu] Predicted next UID\r\n", (unsigned long long)next);
    write_buf(s, &b);
    pu_buf_free(&b);
    return 0;
}

void gw_view_close(session *s)
{
    if (!s->view)
        return;
    if (s->account && s->account->watched)
        s->account->watched--;
    free(s->view->runs);
    free(s->view->recent.r);
    free(s->view);
    s->view = NULL;
}

void gw_view_sync(session *s, bool expunges)
{
    gw_view *v = s->view;
    if (!v || v->empty_folder || s->dead || !s->account)
        return;
    gw_account *a = s->account;
    gw_mbox *m = a->mbox;
    if (v->uidvalidity != m->uidvalidity) {
        /* the numbers changed under the client (the mailbox now comes from another site):
         * it must start over, and says so best after a reconnect */
        gw_session_bye(s, "[UNAVAILABLE] Mailbox renumbered after a news server failover; reconnect");
        return;
    }
    gw_view_announce_flags(s); /* a keyword new to the mailbox, before a FETCH shows it */
    pu_buf b = PU_BUF_INIT;
    uint64_t now = userstate_modseq(a->us);
    /* Looking for vanished messages costs a lookup per message, and every idling session of
     * the account does it when the mailbox changes: only when something may have vanished
     * (a full scan, or a removal in the state, which moves its modseq). */
    if (expunges && (v->expunge_retry || now != v->expunge_modseq || m->gone_gen != v->expunge_gone)) {
        v->expunge_retry = false;
        v->expunge_modseq = now;
        v->expunge_gone = m->gone_gen;
        gw_view kept = {0};
        size_t removed = 0, i = 0, k = 0; /* both sorted by UID: walked side by side */
        bool nomem = false;
        for (size_t r = 0; r < v->nruns; r++)
            for (uint64_t uid = v->runs[r].lo; uid <= v->runs[r].hi; uid++, i++) {
                while (k < m->n && m->msgs[k].uid < uid)
                    k++;
                bool gone = k == m->n || m->msgs[k].uid != uid || hidden(a, m->msgs[k].msgid);
                if (!nomem && gone) {
                    pu_buf_printf(&b, "* %zu EXPUNGE\r\n", i + 1 - removed);
                    removed++;
                } else if (push(&kept, (uint32_t)uid) != 0) {
                    nomem = true; /* keeps the rest numbered as they were: looked at again later */
                }
            }
        if (nomem) {
            free(kept.runs);
            v->expunge_retry = true; /* at the next sync */
            gw_log(GW_ERROR, "out of memory: expunges not reported yet");
            pu_buf_clear(&b);
        } else {
            free(v->runs);
            v->runs = kept.runs;
            v->nruns = kept.nruns;
            v->runs_cap = kept.runs_cap;
            v->n = kept.n;
        }
    }
    /* new messages: everything above the last UID the view knows */
    uint32_t last = gw_view_last_uid(v);
    size_t before = v->n;
    for (size_t i = gw_mbox_count_up_to(m, last); i < m->n; i++)
        if (!hidden(a, m->msgs[i].msgid) && push(v, m->msgs[i].uid) != 0)
            break;
    if (v->n != before) {
        claim_recent(s, gw_view_last_uid(v));
        pu_buf_printf(&b, "* %zu EXISTS\r\n* %zu RECENT\r\n", v->n, count_recent(s));
    }
    /* flags changed by other sessions */
    if (now > v->modseq_seen) {
        for (size_t i = 0; i < before && i < v->n; i++) {
            userstate_msg st;
            gw_view_state(s, i, &st);
            if (st.modseq > v->modseq_seen && !st.removed) {
                pu_buf_printf(&b, "* %zu FETCH (UID %u FLAGS ", i + 1, gw_view_uid(v, i));
                gw_write_flags(&b, s, &st, gw_view_recent(s, i));
                pu_buf_addstr(&b, ")\r\n");
            }
        }
        v->modseq_seen = now;
    }
    write_buf(s, &b);
    pu_buf_free(&b);
}

void gw_view_changed(gw_account *a)
{
    for (session *s = a->net->sessions; s; s = s->next)
        if (s->account == a && s->view && s->state == S_IDLE && !s->dead)
            gw_view_sync(s, true);
}

int gw_view_resolve(session *s, const pi_arg *arg, bool uid, size_t **idx, size_t *n, const char **err)
{
    gw_view *v = s->view;
    *idx = NULL;
    *n = 0;
    if (arg->type != PI_ATOM) {
        *err = "Invalid sequence set";
        return -1;
    }
    uint32_t star = uid ? gw_view_last_uid(v) : (uint32_t)v->n;
    pi_seqset set = {0};
    if (pi_seqset_parse(arg->str, arg->len, star, &set, err) != 0)
        return -1;
    if (!uid && (*err = pi_seqset_check(&set, star))) {
        pi_seqset_free(&set);
        return -1;
    }
    /* the ranges are sorted and disjoint, so every view index comes at most once */
    size_t *out = malloc((v->n ? v->n : 1) * sizeof *out);
    if (!out) {
        pi_seqset_free(&set);
        *err = "Out of memory";
        return -1;
    }
    for (size_t r = 0; r < set.n; r++) {
        if (uid) { /* UIDs ascend in the view: find the range's start, walk to its end */
            size_t end = count_up_to(v, set.r[r].hi);
            for (size_t i = set.r[r].lo ? count_up_to(v, set.r[r].lo - 1) : 0; i < end; i++)
                out[(*n)++] = i;
        } else {
            uint64_t hi = set.r[r].hi < v->n ? set.r[r].hi : v->n;
            for (uint64_t q = set.r[r].lo; q <= hi; q++)
                out[(*n)++] = (size_t)q - 1;
        }
    }
    pi_seqset_free(&set);
    *idx = out;
    return 0;
}

bool gw_view_mark_seen(session *s, size_t i)
{
    if (s->view->readonly)
        return false;
    const char *id = gw_view_msgid(s, i);
    if (!id)
        return false;
    userstate_msg st;
    userstate_get(s->account->us, id, &st);
    if (st.flags & US_SEEN)
        return false;
    return userstate_store(s->account->us, id, US_ADD, US_SEEN, NULL) == US_OK;
}
