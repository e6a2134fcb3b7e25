/* SORT, THREAD and their UID forms (RFC 5256): imap/ parses the command and orders the
 * messages; this file walks the mailbox as SEARCH does, evaluates the program, and reads each
 * match's keys from the ENVELOPE cached in the user's state. A message is decrypted only when
 * the program needs its text or its envelope is not cached yet; REFERENCES reads the
 * References field (not part of ENVELOPE) from the state's header cache, or, for a message
 * not cached yet, from the message (through the same walk and plaintext budget as FETCH). */
#include <stdlib.h>
#include <string.h>

#include "gateway/mailbox.h"
#include "imap/fetch.h"

struct gw_sort {
    session *s;
    bool thread;
    pi_thread_alg alg;
    pi_sort_crit crit;
    pi_search *prog;
    unsigned needs;    /* the program's */
    uint64_t modseq;   /* a MODSEQ key: the highest MODSEQ of the matches (RFC 7162 3.1.5); else 0 */
    bool need_env;     /* the keys read the envelope */
    unsigned fill;     /* which of its fields (PI_NEED_*) */
    bool uid;
    mb_walk *walk;
    unsigned failed;
    pi_sort_msg *msgs; /* the matches */
    size_t n, cap;
};

static void sort_free(struct gw_sort *q)
{
    mb_walk_free(q->walk);
    pi_search_free(q->prog);
    for (size_t i = 0; i < q->n; i++)
        pi_sort_msg_clear(&q->msgs[i]);
    free(q->msgs);
    free(q);
}

static const char *sort_msgid(void *ctx, size_t i)
{
    struct gw_sort *q = ctx;
    return gw_view_msgid(q->s, i);
}

static bool needs_load(void *ctx, size_t i)
{
    struct gw_sort *q = ctx;
    if (q->needs & (PI_SEARCH_NEEDS_HEADERS | PI_SEARCH_NEEDS_BODY))
        return true;
    userstate_msg st;
    gw_view_state(q->s, i, &st);
    if (!st.has_meta)
        return true; /* size and arrival come with the envelope */
    if (q->thread && q->alg == PI_THREAD_REFERENCES && st.meta.header_set != PI_HEADER_SET)
        return true; /* References is in the header cache, not in ENVELOPE */
    return q->need_env && !st.meta.envelope_len;
}

/* The message's keys, from the loaded message when there is one, else from the state. */
static int add_match(struct gw_sort *q, size_t i, const userstate_msg *st, mb_plain *p)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        pi_sort_msg *v = realloc(q->msgs, cap * sizeof *v);
        if (!v)
            return -1;
        q->msgs = v;
        q->cap = cap;
    }
    pi_sort_msg *m = &q->msgs[q->n];
    memset(m, 0, sizeof *m);
    m->seq = (uint32_t)(i + 1);
    m->id = q->uid ? gw_view_uid(q->s->imap->view, i) : m->seq;
    m->size = p ? p->len : st->meta.crlf_size;
    m->arrival = p ? p->meta.arrival : st->meta.arrival;
    pu_buf env = PU_BUF_INIT, refs = PU_BUF_INIT;
    const char *e = (const char *)st->meta.envelope;
    size_t elen = st->meta.envelope_len;
    int rc = 0;
    if (p && p->mime) {
        rc = pi_write_envelope(&env, p->mime);
        e = env.data;
        elen = env.len;
        if (rc == 0 && q->thread && q->alg == PI_THREAD_REFERENCES)
            rc = mime_header_decoded(p->mime, "References", &refs) < 0 ? -1 : 0;
    } else if (q->thread && q->alg == PI_THREAD_REFERENCES) {
        rc = mime_block_header_decoded((const char *)st->meta.headers, st->meta.headers_len, "References", &refs) < 0
                 ? -1
                 : 0;
    }
    if (rc == 0 && (q->need_env || q->thread))
        rc = pi_sort_msg_fill_needed(m, e, elen, refs.data, q->fill);
    else if (rc == 0)
        rc = pi_sort_msg_fill(m, NULL, 0, NULL); /* ARRIVAL and SIZE only: empty strings */
    pu_buf_free(&env);
    pu_buf_free(&refs);
    if (rc < 0)
        return -1;
    q->n++;
    return 0;
}

static void each(void *ctx, size_t i, mb_plain *p)
{
    struct gw_sort *q = ctx;
    userstate_msg st;
    int r = gw_search_eval(q->s, q->prog, i, p, &st);
    if (r == 1 && add_match(q, i, &st, p) < 0)
        r = -1;
    if (r == 1 && q->modseq && gw_view_modseq(q->s, i) > q->modseq)
        q->modseq = gw_view_modseq(q->s, i);
    if (r < 0)
        q->failed++;
}

static void finish(void *ctx, unsigned load_failed)
{
    struct gw_sort *q = ctx;
    session *s = q->s;
    unsigned failed = load_failed + q->failed;
    s->imap->sort = NULL;
    pu_buf b = PU_BUF_INIT;
    int rc = pu_buf_addstr(&b, q->thread ? "* THREAD" : "* SORT");
    if (q->thread) {
        if (q->n)
            rc |= pu_buf_addstr(&b, " ");
        rc |= pi_thread_write(q->alg, q->msgs, q->n, &b);
    } else {
        pi_sort_msg **v = malloc((q->n ? q->n : 1) * sizeof *v);
        if (!v)
            rc = -1;
        for (size_t i = 0; v && i < q->n; i++)
            v[i] = &q->msgs[i];
        if (v && pi_sort_order(&q->crit, v, q->n) < 0)
            rc = -1;
        for (size_t i = 0; v && rc == 0 && i < q->n; i++)
            rc |= pu_buf_printf(&b, " %u", v[i]->id);
        free(v);
        if (q->n && q->modseq > 1)
            rc |= pu_buf_printf(&b, " (MODSEQ %llu)", (unsigned long long)q->modseq);
    }
    rc |= pu_buf_addstr(&b, "\r\n");
    if (rc == 0)
        gw_write(s, b.data, b.len);
    pu_buf_free(&b);
    gw_view_sync(s, false);
    if (rc != 0)
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
    else if (failed)
        gw_tagged(s, "NO [UNAVAILABLE] %u message%s could not be read from the mail store; try again", failed,
                  failed == 1 ? "" : "s");
    else
        gw_tagged(s, "OK %s completed", q->thread ? "THREAD" : "SORT");
    sort_free(q);
    gw_session_done(s);
}

static const mb_walk_ops sort_ops = {sort_msgid, needs_load, each, finish, NULL};

static void sort_cancel(void *ctx)
{
    struct gw_sort *q = ctx;
    q->s->imap->sort = NULL;
    sort_free(q);
}

static gw_result start(session *s, const pi_command *cmd, bool thread)
{
    gw_view *v = s->imap->view;
    struct gw_sort *q = calloc(1, sizeof *q);
    if (!q) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    q->s = s;
    q->uid = cmd->uid;
    q->thread = thread;
    const char *err = NULL;
    int rc = thread ? pi_thread_parse(cmd->args, cmd->nargs, (uint32_t)v->mv.n, gw_view_last_uid(v), &q->alg,
                                      &q->prog, &err)
                    : pi_sort_parse(cmd->args, cmd->nargs, (uint32_t)v->mv.n, gw_view_last_uid(v), &q->crit,
                                    &q->prog, &err);
    if (rc != 0) {
        sort_free(q);
        if (rc == PI_SEARCH_BADCHARSET)
            gw_tagged(s, "NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are supported");
        else if (rc == -2)
            gw_tagged(s, "NO [SERVERBUG] Out of memory");
        else
            gw_tagged(s, "BAD %s", err ? err : "Invalid arguments");
        return GW_DONE;
    }
    q->needs = pi_search_needs(q->prog);
    if (pi_search_has_modseq(q->prog)) {
        gw_condstore_enable(s); /* RFC 7162 3.1 */
        pi_search_modseq_margin(q->prog, gw_modseq_margin(s));
        q->modseq = 1; /* raised by the matches */
    }
    q->need_env = thread || pi_sort_needs_envelope(&q->crit);
    q->fill = !thread ? pi_sort_needs(&q->crit)
              : PI_NEED_DATE | PI_NEED_SUBJECT | (q->alg == PI_THREAD_REFERENCES ? PI_NEED_IDS : 0);
    q->walk = mb_walk_new(&s->reader, v->mv.n, true, &sort_ops, q);
    if (!q->walk) {
        sort_free(q);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    s->imap->sort = q;
    gw_session_pending(s, NULL, sort_cancel, q);
    mb_walk_step(q->walk);
    return s->imap->sort ? GW_PENDING : GW_DONE;
}

gw_result gw_cmd_sort(session *s, const pi_command *cmd)
{
    return start(s, cmd, false);
}

gw_result gw_cmd_thread(session *s, const pi_command *cmd)
{
    return start(s, cmd, true);
}
