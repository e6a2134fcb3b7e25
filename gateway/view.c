/* gateway: one IMAP session's view of the mailbox — mailbox/'s numbering (mb_view) rendered
 * as IMAP: FLAGS and PERMANENTFLAGS, EXISTS, RECENT, EXPUNGE and FETCH FLAGS, and sequence
 * and UID sets resolved against it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/mailbox.h"

bool gw_view_recent(const session *s, size_t i)
{
    return mb_view_recent(&s->imap->view->mv, i);
}

const char *gw_view_msgid(session *s, size_t i)
{
    return mb_view_msgid(&s->imap->view->mv, s->account, i);
}

void gw_view_state(session *s, size_t i, userstate_msg *out)
{
    mb_view_state(&s->imap->view->mv, s->account, i, out);
}

void gw_condstore_enable(session *s)
{
    s->imap->condstore = true;
}

uint64_t gw_view_modseq(session *s, size_t i)
{
    return mb_view_msg_modseq(&s->imap->view->mv, s->account, i);
}

uint64_t gw_modseq_margin(const session *s)
{
    return mb_modseq_margin(s->net->cfg->gateway.modseq_margin);
}

int gw_write_modseq(pu_buf *b, session *s, size_t i)
{
    if (!s->imap->condstore)
        return 0;
    return pu_buf_printf(b, " MODSEQ (%llu)", (unsigned long long)gw_view_modseq(s, i)) < 0 ? -1 : 0;
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
    userstate *us = mb_account_state(s->account);
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

void gw_write_above(session *s, pu_buf *b, size_t above)
{
    if (b->len > above) {
        gw_write(s, b->data, b->len);
        pu_buf_clear(b);
    }
}

static void write_buf(session *s, pu_buf *b)
{
    gw_write_above(s, b, 0);
}

/* FLAGS and PERMANENTFLAGS: the system flags and the user's keywords (RFC 3501 7.2.6). */
static void flags_lines(session *s, pu_buf *b)
{
    userstate *us = mb_account_state(s->account);
    pu_buf kws = PU_BUF_INIT;
    unsigned nk = userstate_keyword_count(us);
    for (unsigned k = 0; k < nk; k++) {
        const char *name = userstate_keyword_name(us, k);
        if (name)
            pu_buf_printf(&kws, " %s", name);
    }
    const char *names = kws.len ? kws.data : "";
    pu_buf_printf(b, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s)\r\n", names);
    if (s->imap->view->mv.readonly)
        pu_buf_addstr(b, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else
        pu_buf_printf(b,
                      "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s \\*)] Flags "
                      "permitted\r\n",
                      names);
    pu_buf_free(&kws);
    s->imap->view->keywords_gen = userstate_keyword_gen(us);
}

void gw_view_announce_flags(session *s)
{
    if (!s->imap->view || !s->account ||
        userstate_keyword_gen(mb_account_state(s->account)) == s->imap->view->keywords_gen)
        return;
    pu_buf b = PU_BUF_INIT;
    flags_lines(s, &b);
    write_buf(s, &b);
    pu_buf_free(&b);
}

int gw_view_open(session *s, uint32_t folder, bool readonly)
{
    mb_account *a = s->account;
    gw_view *v = calloc(1, sizeof *v);
    if (!v || mb_view_open(&v->mv, a, folder, readonly) != 0) {
        free(v);
        return -1;
    }
    s->imap->view = v;
    gw_view_watch(s);
    const mb_view *mv = &v->mv;
    pu_buf b = PU_BUF_INIT;
    flags_lines(s, &b);
    pu_buf_printf(&b, "* %zu EXISTS\r\n* %zu RECENT\r\n", mv->n, mb_view_count_recent(mv));
    for (size_t i = 0; i < mv->n; i++) {
        userstate_msg st;
        gw_view_state(s, i, &st);
        if (!(st.flags & US_SEEN)) {
            pu_buf_printf(&b, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
            break;
        }
    }
    pu_buf_printf(&b, "* OK [UIDVALIDITY %u] UIDs valid\r\n", mv->uidvalidity);
    pu_buf_printf(&b, "* OK [UIDNEXT %llu] Predicted next UID\r\n", (unsigned long long)mb_view_uidnext(mv, a));
    /* every SELECT and EXAMINE, CONDSTORE enabled or not (RFC 7162 3.1.2.1) */
    pu_buf_printf(&b, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)mb_view_highestmodseq(&v->mv, a));
    write_buf(s, &b);
    pu_buf_free(&b);
    return 0;
}

void gw_view_close(session *s)
{
    if (!s->imap || !s->imap->view)
        return;
    if (s->account)
        mb_unwatch(s->account, &s->imap->watcher);
    mb_view_free(&s->imap->view->mv);
    free(s->imap->view);
    s->imap->view = NULL;
}

void gw_uid_runs_add(gw_uid_runs *r, uint32_t lo, uint32_t hi)
{
    if (r->have && lo == r->hi + 1) {
        r->hi = hi;
        return;
    }
    gw_uid_runs_flush(r);
    r->lo = lo;
    r->hi = hi;
    r->have = true;
}

void gw_uid_runs_flush(gw_uid_runs *r)
{
    if (!r->have)
        return;
    pu_buf_addstr(&r->set, r->set.len ? "," : "");
    if (r->lo == r->hi)
        pu_buf_printf(&r->set, "%u", r->lo);
    else
        pu_buf_printf(&r->set, "%u:%u", r->lo, r->hi);
    r->have = false;
}

/* "* VANISHED [(EARLIER) ]set" of what r holds, then r is empty. */
static void vanished_line(pu_buf *b, gw_uid_runs *r, bool earlier)
{
    gw_uid_runs_flush(r);
    if (r->set.len)
        pu_buf_printf(b, "* VANISHED %s%s\r\n", earlier ? "(EARLIER) " : "", r->set.data);
    pu_buf_free(&r->set);
}

void gw_view_vanished_earlier(session *s, const pi_seqset *known, pu_buf *b)
{
    const mb_view *v = &s->imap->view->mv;
    uint64_t next = mb_view_uidnext(v, s->account);
    gw_uid_runs r = {.set = PU_BUF_INIT};
    for (size_t k = 0; k < known->n; k++) {
        uint64_t lo = known->r[k].lo ? known->r[k].lo : 1, hi = known->r[k].hi;
        if (hi >= next)
            hi = next - 1; /* never given out: not vanished */
        /* the view's UIDs in lo..hi ascend: the gaps between them are gone */
        for (size_t i = mb_view_count_up_to(v, (uint32_t)lo - 1); lo <= hi; i++) {
            uint64_t at = i < v->n ? mb_view_uid(v, i) : hi + 1;
            if (at > hi)
                at = hi + 1;
            if (at > lo)
                gw_uid_runs_add(&r, (uint32_t)lo, (uint32_t)(at - 1));
            lo = at + 1;
        }
    }
    vanished_line(b, &r, true);
}

typedef struct sync_out {
    session *s;
    pu_buf *b;
    gw_uid_runs gone; /* QRESYNC: expunges as one VANISHED, told before what follows them */
} sync_out;

static void out_expunge(void *ctx, size_t seq, uint32_t uid)
{
    sync_out *o = ctx;
    if (o->s->imap->qresync)
        gw_uid_runs_add(&o->gone, uid, uid);
    else
        pu_buf_printf(o->b, "* %zu EXPUNGE\r\n", seq);
}

static void out_exists(void *ctx, size_t n, size_t recent)
{
    sync_out *o = ctx;
    vanished_line(o->b, &o->gone, false);
    pu_buf_printf(o->b, "* %zu EXISTS\r\n* %zu RECENT\r\n", n, recent);
}

static void out_flags(void *ctx, size_t i, const userstate_msg *m)
{
    sync_out *o = ctx;
    vanished_line(o->b, &o->gone, false);
    pu_buf_printf(o->b, "* %zu FETCH (UID %u FLAGS ", i + 1, gw_view_uid(o->s->imap->view, i));
    gw_write_flags(o->b, o->s, m, gw_view_recent(o->s, i));
    gw_write_modseq(o->b, o->s, i);
    pu_buf_addstr(o->b, ")\r\n");
}

static const mb_view_sink imap_sink = {out_expunge, out_exists, out_flags};

void gw_view_sync(session *s, bool expunges)
{
    gw_view *v = s->imap ? s->imap->view : NULL;
    if (!v || s->dead || !s->account)
        return;
    gw_view_announce_flags(s); /* a keyword new to the mailbox, before a FETCH shows it */
    pu_buf b = PU_BUF_INIT;
    sync_out o = {s, &b, {.set = PU_BUF_INIT}};
    int rc = mb_view_sync(&v->mv, s->account, expunges, &imap_sink, &o);
    vanished_line(&b, &o.gone, false);
    if (rc != 0) {
        /* the numbers changed under the client (the mailbox now comes from another site):
         * it must start over, and says so best after a reconnect */
        pu_buf_free(&b);
        gw_session_bye(s, "[UNAVAILABLE] Mailbox renumbered after a news server failover; reconnect");
        return;
    }
    write_buf(s, &b);
    pu_buf_free(&b);
}

/* The account's mailbox or state changed: an idling session hears at once; the others at
 * their next command (gw_view_sync). */
static void view_changed(void *arg)
{
    session *s = arg;
    if (s->imap->view && s->state == S_IDLE && !s->dead)
        gw_view_sync(s, true);
}

void gw_view_watch(session *s)
{
    mb_watch(s->account, &s->imap->watcher, view_changed, s);
}

int gw_view_resolve(session *s, const pi_arg *arg, bool uid, size_t **idx, size_t *n, const char **err)
{
    const mb_view *v = &s->imap->view->mv;
    *idx = NULL;
    *n = 0;
    if (arg->type != PI_ATOM) {
        *err = "Invalid sequence set";
        return -1;
    }
    uint32_t star = uid ? mb_view_last_uid(v) : (uint32_t)v->n;
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
            size_t end = mb_view_count_up_to(v, set.r[r].hi);
            for (size_t i = set.r[r].lo ? mb_view_count_up_to(v, set.r[r].lo - 1) : 0; i < end; i++)
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
    const mb_view *v = &s->imap->view->mv;
    if (v->readonly || !gw_view_msgid(s, i))
        return false;
    userstate_msg st;
    mb_view_state(v, s->account, i, &st);
    if (st.flags & US_SEEN)
        return false;
    return mb_view_store(v, s->account, i, US_ADD, US_SEEN, NULL) == US_OK;
}
