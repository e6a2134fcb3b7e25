/* SEARCH and UID SEARCH (RFC 3501 6.4.4): the program is parsed and evaluated by imap/
 * (pi_search); this file feeds it messages. Keys on flags, UIDs and sequence numbers cost
 * nothing; size and date keys use the state's cached metadata; header keys on fields of the
 * state's header cache (FROM, SUBJECT, TO, CC, BCC, SENT*, HEADER of such a field) read that
 * cache; other header keys and body keys decrypt the messages (a few at a time, as FETCH
 * does), so the server can search what the news server only holds encrypted. SEARCH RETURN (...) answers as ESEARCH (RFC 4731). A MODSEQ
 * key (RFC 7162 3.1.5) ends the reply with the highest MODSEQ of what it returned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"
#include "imap/fetch.h"

struct gw_search {
    session *s;
    pi_search *prog;
    unsigned needs;
    bool uid;
    mb_walk *walk;    /* over the view's messages at the start */
    unsigned failed;  /* evaluations that ran out of memory */
    pu_buf result;
    unsigned esearch; /* RETURN options (PI_ESEARCH_*); 0: a plain SEARCH reply */
    uint32_t *ids;    /* ESEARCH: the matches, ascending */
    size_t n, cap;
    bool modseq;      /* the program has a MODSEQ key */
    bool from_cache;  /* its header keys read only fields of the state's header cache */
    uint64_t max_modseq, first_modseq, last_modseq; /* of every match, the first, the last */
};

static void search_free(struct gw_search *q)
{
    mb_walk_free(q->walk);
    pi_search_free(q->prog);
    pu_buf_free(&q->result);
    free(q->ids);
    free(q);
}

typedef struct msg_ctx {
    session *s;
    userstate_msg *st;
    mb_plain *p;
} msg_ctx;

static bool has_keyword(void *arg, const char *kw, size_t len)
{
    msg_ctx *c = arg;
    char name[US_KEYWORD_LEN_MAX + 1];
    if (len == 0 || len > US_KEYWORD_LEN_MAX)
        return false;
    memcpy(name, kw, len);
    name[len] = '\0';
    int k = userstate_keyword_find(mb_account_state(c->s->account), name);
    return k >= 0 && us_kw_test(c->st->keywords, (unsigned)k);
}

/* Without the message, a field of the state's header cache (only fields it holds: a SEARCH
 * on others loads the message, see needs_load). */
static bool cached(const msg_ctx *c, const char *name)
{
    return c->st->has_meta && c->st->meta.header_set == PI_HEADER_SET &&
           pi_header_set_has(PI_HEADER_SET, name, strlen(name));
}

static int header(void *arg, const char *name, pu_buf *out)
{
    msg_ctx *c = arg;
    if (c->p)
        return mime_header_decoded(c->p->mime, name, out);
    return cached(c, name) ? mime_block_header_decoded((const char *)c->st->meta.headers, c->st->meta.headers_len,
                                                       name, out)
                           : 0;
}

static int headers(void *arg, pu_buf *out)
{
    msg_ctx *c = arg;
    return c->p ? mime_headers_decoded(c->p->mime, out) : 0;
}

static int body_text(void *arg, pu_buf *out)
{
    msg_ctx *c = arg;
    return c->p ? mime_body_text(c->p->mime, out) : 0;
}

static int sent_date(void *arg, int64_t *t, int *tz)
{
    msg_ctx *c = arg;
    if (c->p)
        return mime_sent_date(c->p->mime, t, tz);
    return cached(c, "Date") ? mime_block_sent_date((const char *)c->st->meta.headers, c->st->meta.headers_len, t, tz)
                             : 0;
}

static const char *search_msgid(void *ctx, size_t i)
{
    struct gw_search *q = ctx;
    return gw_view_msgid(q->s, i);
}

static bool needs_load(void *ctx, size_t i)
{
    struct gw_search *q = ctx;
    if (q->needs & PI_SEARCH_NEEDS_BODY)
        return true;
    if ((q->needs & PI_SEARCH_NEEDS_HEADERS) && !q->from_cache)
        return true;
    if (!(q->needs & (PI_SEARCH_NEEDS_META | PI_SEARCH_NEEDS_HEADERS)))
        return false;
    userstate_msg st;
    gw_view_state(q->s, i, &st);
    /* header keys on cached fields: a message whose cache is not filled yet is read once */
    return !st.has_meta || ((q->needs & PI_SEARCH_NEEDS_HEADERS) && st.meta.header_set != PI_HEADER_SET);
}

/* Whether every header field the program reads is in the state's header cache (FROM,
 * SUBJECT, TO, CC, BCC, SENT*, and HEADER of a cached field; TEXT reads them all). */
static bool fields_cached(const pi_search *prog)
{
    const char *const *names;
    bool all, date;
    size_t n = pi_search_fields(prog, &names, &all, &date);
    if (all || (date && !pi_header_set_has(PI_HEADER_SET, "Date", 4)))
        return false;
    for (size_t k = 0; k < n; k++)
        if (!pi_header_set_has(PI_HEADER_SET, names[k], strlen(names[k])))
            return false;
    return true;
}

int gw_search_eval(session *s, const pi_search *prog, size_t i, mb_plain *p, userstate_msg *out)
{
    if (!gw_view_msgid(s, i))
        return 0;
    userstate_msg st;
    gw_view_state(s, i, &st);
    if (out)
        *out = st;
    msg_ctx c = {s, &st, p};
    pi_search_msg m = {
        .seq = (uint32_t)(i + 1),
        .uid = gw_view_uid(s->imap->view, i),
        .flags = st.flags,
        .recent = gw_view_recent(s, i),
        .internaldate = p ? p->meta.arrival : st.meta.arrival,
        .tz_minutes = p ? p->meta.tz_minutes : st.meta.tz_minutes,
        .size = p ? p->len : st.meta.crlf_size,
        .modseq = pi_search_has_modseq(prog) ? gw_view_modseq(s, i) : 0,
        .arg = &c,
        .has_keyword = has_keyword,
        .header = header,
        .headers = headers,
        .body_text = body_text,
        .sent_date = sent_date,
    };
    return pi_search_eval(prog, &m);
}

static void each(void *ctx, size_t i, mb_plain *p)
{
    struct gw_search *q = ctx;
    int r = gw_search_eval(q->s, q->prog, i, p, NULL);
    uint32_t id = q->uid ? gw_view_uid(q->s->imap->view, i) : (uint32_t)(i + 1);
    if (r == 1 && q->modseq) {
        uint64_t m = gw_view_modseq(q->s, i);
        if (!q->max_modseq)
            q->first_modseq = m;
        q->last_modseq = m;
        if (m > q->max_modseq)
            q->max_modseq = m;
    }
    if (r == 1 && q->esearch) {
        if (q->n == q->cap) {
            size_t cap = q->cap ? 2 * q->cap : 256;
            uint32_t *v = realloc(q->ids, cap * sizeof *v);
            if (!v) {
                q->failed++;
                return;
            }
            q->ids = v;
            q->cap = cap;
        }
        q->ids[q->n++] = id; /* the walk goes in sequence order, and UIDs ascend with it */
    } else if (r == 1) {
        pu_buf_printf(&q->result, " %u", id);
    } else if (r < 0) {
        q->failed++;
    }
}

static void finish(void *ctx, unsigned load_failed)
{
    struct gw_search *q = ctx;
    session *s = q->s;
    unsigned failed = load_failed + q->failed;
    s->imap->search = NULL;
    uint64_t modseq = q->max_modseq;
    if (q->esearch && !(q->esearch & (PI_ESEARCH_ALL | PI_ESEARCH_COUNT))) { /* only MIN and/or MAX: of those */
        modseq = q->esearch & PI_ESEARCH_MIN ? q->first_modseq : 0;
        if (q->esearch & PI_ESEARCH_MAX && q->last_modseq > modseq)
            modseq = q->last_modseq;
    }
    if (q->esearch) {
        pu_buf b = PU_BUF_INIT;
        if (pi_esearch_write(&b, s->imap->tag, q->uid, q->esearch, q->ids, q->n) == 0) {
            if (modseq) /* RFC 7162 3.1.5: nothing found, no MODSEQ */
                pu_buf_printf(&b, " MODSEQ %llu", (unsigned long long)modseq);
            gw_untagged(s, "ESEARCH %s", b.data);
        } else {
            failed++;
        }
        pu_buf_free(&b);
    } else if (q->result.len && modseq)
        gw_untagged(s, "SEARCH%s (MODSEQ %llu)", q->result.data, (unsigned long long)modseq);
    else if (q->result.len)
        gw_untagged(s, "SEARCH%s", q->result.data);
    else
        gw_untagged(s, "SEARCH");
    gw_view_sync(s, false);
    if (failed)
        gw_tagged(s, "NO [UNAVAILABLE] %u message%s could not be read from the mail store; try again", failed,
                  failed == 1 ? "" : "s");
    else
        gw_tagged(s, "OK SEARCH completed");
    search_free(q);
    gw_session_done(s);
}

static const mb_walk_ops search_ops = {search_msgid, needs_load, each, finish, NULL};

/* The connection closes while the SEARCH runs: freeing the walk cancels its loads. */
static void search_cancel(void *ctx)
{
    struct gw_search *q = ctx;
    q->s->imap->search = NULL;
    search_free(q);
}

gw_result gw_cmd_search(session *s, const pi_command *cmd)
{
    gw_view *v = s->imap->view;
    struct gw_search *q = calloc(1, sizeof *q);
    if (!q) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    q->s = s;
    q->uid = cmd->uid;
    const char *err = NULL;
    size_t skip = 0;
    int rc = pi_esearch_parse(cmd->args, cmd->nargs, &q->esearch, &skip, &err);
    if (rc == 0 && skip == cmd->nargs) {
        rc = -1;
        err = "Missing search criteria";
    }
    if (rc == 0)
        rc = pi_search_parse(cmd->args + skip, cmd->nargs - skip, (uint32_t)v->mv.n, gw_view_last_uid(v), &q->prog,
                             &err);
    if (rc != 0) {
        search_free(q);
        if (rc == PI_SEARCH_BADCHARSET)
            gw_tagged(s, "NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are searched");
        else if (rc == -2)
            gw_tagged(s, "NO [SERVERBUG] Out of memory");
        else
            gw_tagged(s, "BAD %s", err ? err : "Invalid search program");
        return GW_DONE;
    }
    q->needs = pi_search_needs(q->prog);
    q->from_cache = fields_cached(q->prog);
    if ((q->modseq = pi_search_has_modseq(q->prog))) {
        gw_condstore_enable(s); /* RFC 7162 3.1 */
        pi_search_modseq_margin(q->prog, gw_modseq_margin(s));
    }
    q->walk = mb_walk_new(&s->reader, v->mv.n, true, &search_ops, q);
    if (!q->walk) {
        search_free(q);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    s->imap->search = q;
    gw_session_pending(s, NULL, search_cancel, q);
    mb_walk_step(q->walk);
    return s->imap->search ? GW_PENDING : GW_DONE;
}
