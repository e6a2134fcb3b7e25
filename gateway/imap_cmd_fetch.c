/* gateway: FETCH and UID FETCH (RFC 3501 6.4.5), with RFC 7162's MODSEQ item and
 * CHANGEDSINCE modifier. Items that need no plaintext (UID, FLAGS, MODSEQ, and
 * INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE and a message-list HEADER.FIELDS once
 * cached in the user's state)
 * are answered at once; the others wait for the message to be loaded (loader.c), a few at a
 * time, and responses go out in sequence order. Loading pauses while the client is slow to
 * read, so a big FETCH never piles plaintext up in memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/mailbox.h"
#include "imap/fetch.h"

#define OUTPUT_PAUSE (1u << 20) /* queued output above which no new load starts */

enum item_kind {
    IT_UID,
    IT_FLAGS,
    IT_INTERNALDATE,
    IT_SIZE,
    IT_ENVELOPE,
    IT_BODY,
    IT_BODYSTRUCTURE,
    IT_RFC822,
    IT_RFC822_HEADER,
    IT_RFC822_TEXT,
    IT_SECTION,
    IT_MODSEQ,
};

typedef struct fetch_item {
    enum item_kind kind;
    bool peek;
    char *spec; /* IT_SECTION: the text between the brackets, owned */
    pi_section sec;
    bool partial;
    uint32_t off, cnt;
    bool cacheable; /* IT_SECTION that the state's header cache answers (pi_header_set_covers) */
} fetch_item;

struct gw_fetch {
    session *s;
    fetch_item items[64];
    size_t nitems;
    bool need_content;  /* some item always needs the plaintext */
    bool need_meta;     /* INTERNALDATE / RFC822.SIZE / ENVELOPE / BODYSTRUCTURE / cached headers */
    bool need_mime;     /* some item needs the MIME structure, not just the bytes */
    bool sets_seen;
    size_t *idx;
    size_t n;
    mb_walk *walk;
    bool flags_changed;
};

static void item_free(fetch_item *it)
{
    if (it->kind == IT_SECTION) {
        pi_section_free(&it->sec);
        free(it->spec);
    }
}

static void fetch_free(struct gw_fetch *f)
{
    for (size_t i = 0; i < f->nitems; i++)
        item_free(&f->items[i]);
    mb_walk_free(f->walk);
    free(f->idx);
    free(f);
}

static int add_item(struct gw_fetch *f, enum item_kind k)
{
    for (size_t i = 0; i < f->nitems; i++)
        if (f->items[i].kind == k && k != IT_SECTION)
            return 0;
    if (f->nitems == sizeof f->items / sizeof f->items[0])
        return -1;
    f->items[f->nitems++] = (fetch_item){.kind = k};
    return 0;
}

/* One fetch-att; "text" for a BAD on failure. */
static const char *parse_att(struct gw_fetch *f, const pi_arg *a)
{
    if (a->type != PI_ATOM)
        return "Invalid fetch attribute";
    pi_fetch_att fa;
    if (pi_fetch_att_split(a->str, a->len, &fa) != 0)
        return "Invalid fetch attribute";
    char name[32];
    if (fa.name_len >= sizeof name)
        return "Unknown fetch attribute";
    for (size_t i = 0; i < fa.name_len; i++)
        name[i] = (char)(fa.name[i] >= 'a' && fa.name[i] <= 'z' ? fa.name[i] - 32 : fa.name[i]);
    name[fa.name_len] = '\0';
    if (!fa.has_section) {
        if (fa.has_partial)
            return "Invalid fetch attribute";
        static const struct {
            const char *name;
            enum item_kind k;
        } simple[] = {
            {"UID", IT_UID},           {"FLAGS", IT_FLAGS},
            {"INTERNALDATE", IT_INTERNALDATE}, {"RFC822.SIZE", IT_SIZE},
            {"ENVELOPE", IT_ENVELOPE}, {"BODY", IT_BODY},
            {"BODYSTRUCTURE", IT_BODYSTRUCTURE}, {"RFC822", IT_RFC822},
            {"RFC822.HEADER", IT_RFC822_HEADER}, {"RFC822.TEXT", IT_RFC822_TEXT},
            {"MODSEQ", IT_MODSEQ},
        };
        for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
            if (strcmp(name, simple[i].name) == 0)
                return add_item(f, simple[i].k) ? "Too many fetch attributes" : NULL;
        if (strcmp(name, "FAST") == 0 || strcmp(name, "ALL") == 0 || strcmp(name, "FULL") == 0) {
            if (add_item(f, IT_FLAGS) || add_item(f, IT_INTERNALDATE) || add_item(f, IT_SIZE))
                return "Too many fetch attributes";
            if (name[1] != 'A' && add_item(f, IT_ENVELOPE))
                return "Too many fetch attributes";
            if (name[1] == 'U' && add_item(f, IT_BODY))
                return "Too many fetch attributes";
            return NULL;
        }
        return "Unknown fetch attribute";
    }
    bool peek;
    if (strcmp(name, "BODY") == 0)
        peek = false;
    else if (strcmp(name, "BODY.PEEK") == 0)
        peek = true;
    else
        return "Unknown fetch attribute";
    if (f->nitems == sizeof f->items / sizeof f->items[0])
        return "Too many fetch attributes";
    fetch_item *it = &f->items[f->nitems];
    memset(it, 0, sizeof *it);
    it->kind = IT_SECTION;
    it->peek = peek;
    it->spec = malloc(fa.section_len + 1);
    if (!it->spec)
        return "Out of memory";
    memcpy(it->spec, fa.section, fa.section_len);
    it->spec[fa.section_len] = '\0';
    if (pi_section_parse(it->spec, fa.section_len, &it->sec) != 0) {
        free(it->spec);
        return "Invalid section";
    }
    it->partial = fa.has_partial;
    it->off = fa.partial_offset;
    it->cnt = fa.partial_count;
    f->nitems++;
    return NULL;
}

/* BODY[] (and BODY[]<partial>): the message's bytes, no structure needed */
static bool whole_message(const pi_section *sec)
{
    return sec->kind == PI_SECTION_BODY && sec->npath == 0;
}

static void classify(struct gw_fetch *f)
{
    for (size_t i = 0; i < f->nitems; i++) {
        switch (f->items[i].kind) {
        case IT_UID:
        case IT_FLAGS:
        case IT_MODSEQ:
            break;
        case IT_INTERNALDATE:
        case IT_SIZE:
            f->need_meta = true;
            break;
        case IT_ENVELOPE:
        case IT_BODYSTRUCTURE:
            f->need_meta = f->need_mime = true;
            break;
        case IT_RFC822:
            f->need_content = true;
            f->sets_seen = true;
            break;
        case IT_RFC822_TEXT:
            f->need_content = f->need_mime = true;
            f->sets_seen = true;
            break;
        case IT_SECTION:
            /* a message-list header fetch: from the state's header cache once it is filled */
            f->items[i].cacheable = pi_header_set_covers(PI_HEADER_SET, &f->items[i].sec);
            if (f->items[i].cacheable)
                f->need_meta = true;
            else
                f->need_content = true;
            if (!whole_message(&f->items[i].sec))
                f->need_mime = true;
            if (!f->items[i].peek)
                f->sets_seen = true;
            break;
        case IT_BODY:
        case IT_RFC822_HEADER:
            f->need_content = f->need_mime = true;
            break;
        }
    }
}

/* Whether message k needs its plaintext (else the state's cache answers). */
static bool needs_load(void *ctx, size_t k)
{
    struct gw_fetch *f = ctx;
    if (f->need_content)
        return true;
    if (!f->need_meta)
        return false;
    userstate_msg st;
    gw_view_state(f->s, f->idx[k], &st);
    if (!st.has_meta)
        return true;
    for (size_t i = 0; i < f->nitems; i++) {
        if (f->items[i].kind == IT_ENVELOPE && !st.meta.envelope_len)
            return true;
        if (f->items[i].kind == IT_BODYSTRUCTURE && !st.meta.bodystructure_len)
            return true;
        if (f->items[i].cacheable && st.meta.header_set != PI_HEADER_SET)
            return true;
    }
    return false;
}

/* A literal. Bytes of the decrypted message itself are not copied into the output: the
 * output holds the message (and its share of the plaintext budget) until they are sent. */
static void add_literal(session *s, pu_buf *b, const char *data, size_t len, mb_plain *p)
{
    pu_buf_printf(b, "{%zu}\r\n", len);
    gw_write(s, b->data, b->len);
    pu_buf_clear(b);
    if (!len)
        return;
    if (p && data >= p->data && data + len <= p->data + p->len)
        gw_write_plain(s, data, len, p);
    else
        gw_write(s, data, len);
}

static const char *fetch_msgid(void *ctx, size_t k)
{
    struct gw_fetch *f = ctx;
    return gw_view_msgid(f->s, f->idx[k]);
}

static void emit(void *ctx, size_t k, mb_plain *p)
{
    struct gw_fetch *f = ctx;
    session *s = f->s;
    size_t i = f->idx[k];
    if (!gw_view_msgid(s, i))
        return; /* gone from the server; its EXPUNGE comes when allowed */
    if (!p && needs_load(ctx, k))
        return; /* nothing was loaded for it (never the case today): answer nothing, not crash */
    gw_view_announce_flags(s); /* a keyword another session just made: FLAGS first */
    bool seen_now = f->sets_seen && gw_view_mark_seen(s, i);
    if (seen_now)
        f->flags_changed = true;
    userstate_msg st;
    gw_view_state(s, i, &st);
    pu_buf b = PU_BUF_INIT;
    pu_buf_printf(&b, "* %zu FETCH (", i + 1);
    bool first = true;
    bool flags_written = false, modseq_written = false, uid_written = false;
#define SEP() (first ? (void)(first = false) : (void)pu_buf_addstr(&b, " "))
    for (size_t n = 0; n < f->nitems; n++) {
        fetch_item *it = &f->items[n];
        SEP();
        switch (it->kind) {
        case IT_UID:
            pu_buf_printf(&b, "UID %u", gw_view_uid(s->imap->view, i));
            uid_written = true;
            break;
        case IT_FLAGS:
            pu_buf_addstr(&b, "FLAGS ");
            gw_write_flags(&b, s, &st, gw_view_recent(s, i));
            flags_written = true;
            break;
        case IT_MODSEQ:
            pu_buf_printf(&b, "MODSEQ (%llu)", (unsigned long long)gw_view_modseq(s, i));
            modseq_written = true;
            break;
        case IT_INTERNALDATE: {
            char date[PI_DATE_TIME_SIZE];
            int64_t t = p ? p->meta.arrival : st.meta.arrival;
            int tz = p ? p->meta.tz_minutes : st.meta.tz_minutes;
            if (pi_date_time_format(t, tz, date) != 0)
                pi_date_time_format(t, 0, date);
            pu_buf_printf(&b, "INTERNALDATE %s", date);
            break;
        }
        case IT_SIZE:
            pu_buf_printf(&b, "RFC822.SIZE %llu", (unsigned long long)(p ? p->len : st.meta.crlf_size));
            break;
        case IT_ENVELOPE:
            pu_buf_addstr(&b, "ENVELOPE ");
            if (p)
                pi_write_envelope(&b, p->mime);
            else
                pu_buf_add(&b, st.meta.envelope, st.meta.envelope_len);
            break;
        case IT_BODYSTRUCTURE:
            pu_buf_addstr(&b, "BODYSTRUCTURE ");
            if (p)
                pi_write_bodystructure(&b, p->mime);
            else
                pu_buf_add(&b, st.meta.bodystructure, st.meta.bodystructure_len);
            break;
        case IT_BODY:
            pu_buf_addstr(&b, "BODY ");
            pi_write_body(&b, p->mime);
            break;
        case IT_RFC822:
            pu_buf_addstr(&b, "RFC822 ");
            add_literal(s, &b, p->data, p->len, p);
            break;
        case IT_RFC822_HEADER:
        case IT_RFC822_TEXT: {
            pi_section sec = {.kind = it->kind == IT_RFC822_HEADER ? PI_SECTION_HEADER : PI_SECTION_TEXT};
            pu_buf scratch = {0};
            const char *data = "";
            size_t len = 0;
            if (pi_section_get(p->mime, &sec, &scratch, &data, &len) != PI_SECTION_OK) {
                data = "";
                len = 0;
            }
            pu_buf_addstr(&b, it->kind == IT_RFC822_HEADER ? "RFC822.HEADER " : "RFC822.TEXT ");
            add_literal(s, &b, data, len, p);
            pu_buf_free(&scratch);
            break;
        }
        case IT_SECTION: {
            pu_buf scratch = {0};
            const char *data = "";
            size_t len = 0;
            if (!p && it->cacheable) {
                if (pi_header_set_section((const char *)st.meta.headers, st.meta.headers_len, &it->sec, &scratch) == 0)
                    data = scratch.data, len = scratch.len;
            } else if (whole_message(&it->sec)) {
                data = p->data;
                len = p->len;
            } else if (pi_section_get(p->mime, &it->sec, &scratch, &data, &len) != PI_SECTION_OK) {
                data = "";
                len = 0;
            }
            const char *slice = data;
            size_t slen = len;
            if (it->partial)
                pi_partial(data, len, it->off, it->cnt, &slice, &slen);
            pu_buf_printf(&b, "BODY[%s]", it->spec);
            if (it->partial)
                pu_buf_printf(&b, "<%u>", it->off);
            pu_buf_addstr(&b, " ");
            add_literal(s, &b, slice, slen, p);
            pu_buf_free(&scratch);
            break;
        }
        }
    }
    if (seen_now && !flags_written) {
        SEP();
        pu_buf_addstr(&b, "FLAGS ");
        gw_write_flags(&b, s, &st, gw_view_recent(s, i));
        flags_written = true;
        if (s->imap->condstore && !uid_written) /* RFC 7162 3.1: a \Seen set by FETCH: UID and MODSEQ */
            pu_buf_printf(&b, " UID %u", gw_view_uid(s->imap->view, i));
    }
    if (flags_written && !modseq_written)
        gw_write_modseq(&b, s, i); /* once CONDSTORE is on, FLAGS come with their MODSEQ */
#undef SEP
    pu_buf_addstr(&b, ")\r\n");
    gw_write(s, b.data, b.len);
    pu_buf_free(&b);
}

static void finish(void *ctx, unsigned failed)
{
    struct gw_fetch *f = ctx;
    session *s = f->s;
    bool changed = f->flags_changed;
    s->imap->fetch = NULL;
    fetch_free(f);
    if (changed) {
        s->imap->view->mv.modseq_seen = mb_view_modseq(&s->imap->view->mv, s->account);
        mb_account_changed(s->account);
    }
    gw_view_sync(s, false);
    if (failed)
        gw_tagged(s, "NO [UNAVAILABLE] %u message%s could not be read from the mail store; try again", failed,
                  failed == 1 ? "" : "s");
    else
        gw_tagged(s, "OK Fetch completed");
    gw_session_done(s);
}

/* New loads wait while the client is slow to read what was sent. */
static bool output_paused(void *ctx)
{
    struct gw_fetch *f = ctx;
    return gw_session_output_len(f->s) > OUTPUT_PAUSE;
}

static const mb_walk_ops fetch_ops = {fetch_msgid, needs_load, emit, finish, output_paused};

/* The client read what was queued: loads paused for it go on. */
static void fetch_resume(void *ctx)
{
    struct gw_fetch *f = ctx;
    mb_walk_step(f->walk);
}

/* The connection closes while the FETCH runs: freeing the walk cancels its loads in flight,
 * which call nobody back. */
static void fetch_cancel(void *ctx)
{
    struct gw_fetch *f = ctx;
    f->s->imap->fetch = NULL;
    fetch_free(f);
}

static const char *view_msgid(void *ctx, size_t i)
{
    return gw_view_msgid(ctx, i);
}

gw_result gw_cmd_fetch(session *s, const pi_command *cmd)
{
    struct gw_fetch *f = calloc(1, sizeof *f);
    if (!f) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    f->s = s;
    const char *bad = NULL;
    if (cmd->uid)
        add_item(f, IT_UID);
    const pi_arg *atts = &cmd->args[1];
    bool changedsince = false, vanished = false;
    uint64_t since = 0;
    if (cmd->nargs == 3) { /* fetch modifiers (RFC 4466): (CHANGEDSINCE n) */
        const pi_arg *m = &cmd->args[2];
        if (m->type != PI_LIST || m->count == 0)
            bad = "Invalid FETCH modifiers";
        for (size_t i = 0; !bad && i < m->count; i++) {
            if (pi_arg_atom_is(&m->list[i], "CHANGEDSINCE") && !changedsince && i + 1 < m->count &&
                pi_arg_modseq(&m->list[i + 1], true, &since)) {
                changedsince = true;
                i++;
            } else if (pi_arg_atom_is(&m->list[i], "VANISHED") && !vanished && cmd->uid && s->imap->qresync) {
                vanished = true; /* RFC 7162 3.2.6: UID FETCH only, QRESYNC enabled */
            } else {
                bad = "Unknown or invalid FETCH modifier";
            }
        }
        if (!bad && vanished && !changedsince)
            bad = "VANISHED needs CHANGEDSINCE";
        if (!bad && add_item(f, IT_MODSEQ))
            bad = "Too many fetch attributes";
    }
    if (!bad && atts->type == PI_LIST) {
        if (atts->count == 0)
            bad = "Empty attribute list";
        for (size_t i = 0; !bad && i < atts->count; i++)
            bad = parse_att(f, &atts->list[i]);
    } else if (!bad) {
        bad = parse_att(f, atts);
    }
    size_t *idx = NULL, n = 0;
    if (!bad && gw_view_resolve(s, &cmd->args[0], cmd->uid, &idx, &n, &bad) != 0 && !bad)
        bad = "Invalid sequence set";
    if (bad) {
        fetch_free(f);
        gw_tagged(s, "BAD %s", bad);
        return GW_DONE;
    }
    for (size_t i = 0; i < f->nitems; i++)
        if (f->items[i].kind == IT_MODSEQ)
            gw_condstore_enable(s); /* RFC 7162 3.1: FETCH MODSEQ and CHANGEDSINCE enable it */
    if (changedsince) {
        /* only what changed after since, taken the margin earlier: a change that reached this
         * site late carries its writer's older stamp */
        uint64_t margin = gw_modseq_margin(s), from = since > margin ? since - margin : 0;
        size_t kept = 0;
        for (size_t k = 0; k < n; k++)
            if (gw_view_modseq(s, idx[k]) > from)
                idx[kept++] = idx[k];
        n = kept;
    }
    f->idx = idx;
    f->n = n;
    classify(f);
    f->walk = mb_walk_new(&s->reader, n, f->need_mime, &fetch_ops, f);
    if (!f->walk) {
        fetch_free(f);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    if (s->imap->view->mv.readonly)
        f->sets_seen = false;
    gw_view_sync(s, false); /* others' flag changes first */
    if (vanished) {
        pi_seqset set = {0};
        const char *err = NULL;
        if (pi_seqset_parse(cmd->args[0].str, cmd->args[0].len, gw_view_last_uid(s->imap->view), &set, &err) == 0) {
            pu_buf b = PU_BUF_INIT;
            gw_view_vanished_earlier(s, &set, &b);
            if (b.len)
                gw_write(s, b.data, b.len);
            pu_buf_free(&b);
        }
        pi_seqset_free(&set);
    }
    s->imap->fetch = f;
    gw_session_pending(s, fetch_resume, fetch_cancel, f);
    mb_walk_step(f->walk); /* finishes right away when nothing needs loading: the reply is written */
    if (s->imap->fetch && f->need_content && f->n) /* after the command's own loads: those come first */
        mb_read_ahead(&s->reader, f->idx[0], f->idx[f->n - 1], s->imap->view->mv.n, view_msgid, s);
    return s->imap->fetch ? GW_PENDING : GW_DONE;
}
