/* SELECT, EXAMINE (RFC 3501 6.3.1, 6.3.2) and STATUS (6.3.10). INBOX is the user's group; the
 * other folders (mailbox/folders.c) hold the messages the replicated state files there
 * (COPY, MOVE, APPEND). The group is scanned first, so what a folder shows includes mail
 * delivered (or copied at another site) just before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"

enum { ST_MESSAGES = 1, ST_RECENT = 2, ST_UIDNEXT = 4, ST_UIDVALIDITY = 8, ST_UNSEEN = 16, ST_HIGHESTMODSEQ = 32 };

/* 1 INBOX, 2 another folder (*f filled), 0 unknown (NO answered), -1 BAD answered. */
static int which_mailbox(session *s, const pi_arg *a, mb_folder *f)
{
    const char *name;
    size_t len;
    if (!pi_arg_astring(a, &name, &len) || strlen(name) != len) {
        gw_tagged(s, "BAD Missing or invalid mailbox name");
        return -1;
    }
    if (len == 5 && strncasecmp(name, "INBOX", 5) == 0)
        return 1;
    mb_folder_rc rc = mb_folder_find(s->account, name, f);
    if (rc != MB_FOLDER_OK) {
        gw_folder_answer(s, "SELECT", rc);
        return 0;
    }
    return 2;
}

static void deselect(session *s)
{
    gw_view_close(s);
    if (s->state == S_SELECTED)
        gw_session_enter(s, S_AUTH);
}

static void status_line(session *s, const char *name, size_t name_len, size_t messages, size_t recent,
                        uint64_t uidnext, uint32_t uidvalidity, size_t unseen, uint32_t folder)
{
    pu_buf b = PU_BUF_INIT;
    pu_buf_addstr(&b, "STATUS ");
    pi_write_astring(&b, name, name_len, 0);
    pu_buf_addstr(&b, " (");
    const char *sep = "";
    if (s->imap->status_items & ST_MESSAGES) {
        pu_buf_printf(&b, "%sMESSAGES %zu", sep, messages);
        sep = " ";
    }
    if (s->imap->status_items & ST_RECENT) {
        pu_buf_printf(&b, "%sRECENT %zu", sep, recent);
        sep = " ";
    }
    if (s->imap->status_items & ST_UIDNEXT) {
        pu_buf_printf(&b, "%sUIDNEXT %llu", sep, (unsigned long long)uidnext);
        sep = " ";
    }
    if (s->imap->status_items & ST_UIDVALIDITY) {
        pu_buf_printf(&b, "%sUIDVALIDITY %u", sep, uidvalidity);
        sep = " ";
    }
    if (s->imap->status_items & ST_UNSEEN) {
        pu_buf_printf(&b, "%sUNSEEN %zu", sep, unseen);
        sep = " ";
    }
    if (s->imap->status_items & ST_HIGHESTMODSEQ)
        pu_buf_printf(&b, "%sHIGHESTMODSEQ %llu", sep,
                      (unsigned long long)mb_folder_highestmodseq(s->account, folder));
    pu_buf_addstr(&b, ")");
    gw_untagged(s, "%s", b.data);
    pu_buf_free(&b);
}

static void status_reply(session *s)
{
    mb_account *a = s->account;
    const mb_mbox *m = mb_account_mbox(a);
    size_t messages = 0, unseen = 0, recent = 0;
    uint32_t claimed = userstate_recent_uid(mb_account_state(a), m->uidvalidity);
    for (size_t i = 0; i < m->n; i++) {
        userstate_msg st;
        userstate_get(mb_account_state(a), m->msgs[i].msgid, &st);
        if (st.removed)
            continue;
        messages++;
        unseen += !(st.flags & US_SEEN);
        recent += m->msgs[i].uid > claimed;
    }
    uint64_t next = m->uidnext ? m->uidnext : 1;
    if (m->n && m->msgs[m->n - 1].uid >= next)
        next = (uint64_t)m->msgs[m->n - 1].uid + 1;
    status_line(s, "INBOX", 5, messages, recent, next, m->uidvalidity, unseen, MB_INBOX_ID);
}

void gw_status_untagged(session *s, const mb_folder *f, unsigned items)
{
    unsigned saved = s->imap->status_items;
    s->imap->status_items = items;
    mb_folder counted = *f;
    if (f->special == MB_INBOX)
        status_reply(s); /* as the last scan left it: LIST-STATUS does not wait for a scan */
    else if (mb_folder_counts(s->account, &counted) == MB_FOLDER_OK)
        status_line(s, f->name, strlen(f->name), counted.messages, 0, f->uidnext, f->uidvalidity, counted.unseen,
                    f->id);
    s->imap->status_items = saved;
}

/* STATUS items (RFC 3501 6.3.10) of a list, as GW_STATUS_* bits; 0 with BAD answered. */
unsigned gw_status_items(session *s, const pi_arg *items)
{
    if (items->type != PI_LIST || items->count == 0) {
        gw_tagged(s, "BAD STATUS needs a list of items");
        return 0;
    }
    unsigned want = 0;
    for (size_t i = 0; i < items->count; i++) {
        const pi_arg *it = &items->list[i];
        if (pi_arg_atom_is(it, "MESSAGES"))
            want |= ST_MESSAGES;
        else if (pi_arg_atom_is(it, "RECENT"))
            want |= ST_RECENT;
        else if (pi_arg_atom_is(it, "UIDNEXT"))
            want |= ST_UIDNEXT;
        else if (pi_arg_atom_is(it, "UIDVALIDITY"))
            want |= ST_UIDVALIDITY;
        else if (pi_arg_atom_is(it, "UNSEEN"))
            want |= ST_UNSEEN;
        else if (pi_arg_atom_is(it, "HIGHESTMODSEQ")) {
            want |= ST_HIGHESTMODSEQ;
            gw_condstore_enable(s); /* RFC 7162 3.1: a CONDSTORE enabling command */
        } else {
            gw_tagged(s, "BAD Unknown STATUS item");
            return 0;
        }
    }
    return want;
}

static void qresync_forget(session *s)
{
    pi_seqset_free(&s->imap->select_qr.known);
    memset(&s->imap->select_qr, 0, sizeof s->imap->select_qr);
}

/* SELECT (QRESYNC ...) of the folder the client knows (RFC 7162 3.2.5): what vanished since
 * (as a superset: every UID it may know that is not here), then every message changed after
 * its modseq, taken the margin earlier (a late change carries an older stamp). */
static void qresync_reply(session *s)
{
    const gw_view *v = s->imap->view;
    pi_range everything = {1, UINT32_MAX};
    pi_seqset all = {&everything, 1};
    const pi_seqset *known = s->imap->select_qr.has_known ? &s->imap->select_qr.known : &all;
    pu_buf b = PU_BUF_INIT;
    gw_view_vanished_earlier(s, known, &b);
    uint64_t margin = gw_modseq_margin(s), since = s->imap->select_qr.modseq;
    since = since > margin ? since - margin : 0;
    for (size_t i = 0; i < v->mv.n; i++) {
        uint32_t uid = gw_view_uid(v, i);
        uint64_t modseq = gw_view_modseq(s, i);
        if (modseq <= since || !pi_seqset_contains(known, uid) || !gw_view_msgid(s, i))
            continue;
        userstate_msg st;
        gw_view_state(s, i, &st);
        pu_buf_printf(&b, "* %zu FETCH (UID %u FLAGS ", i + 1, uid);
        gw_write_flags(&b, s, &st, gw_view_recent(s, i));
        pu_buf_printf(&b, " MODSEQ (%llu))\r\n", (unsigned long long)modseq);
        gw_write_above(s, &b, 64u << 10);
    }
    gw_write_above(s, &b, 0);
    pu_buf_free(&b);
}

static void select_reply(session *s, uint32_t folder, bool readonly)
{
    if (gw_view_open(s, folder, readonly) != 0) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return;
    }
    gw_session_enter(s, S_SELECTED);
    /* another UIDVALIDITY: the client's cache is void, the parameters are ignored */
    if (s->imap->select_qr.on && s->imap->select_qr.uidvalidity == s->imap->view->mv.uidvalidity)
        qresync_reply(s);
    gw_tagged(s, "OK [%s] %s completed", readonly ? "READ-ONLY" : "READ-WRITE", readonly ? "EXAMINE" : "SELECT");
}

void gw_select_scanned(session *s, const char *no_text)
{
    if (s->dead)
        return;
    if (no_text)
        gw_tagged(s, "NO %s", no_text);
    else if (s->imap->scan_status)
        status_reply(s), gw_tagged(s, "OK STATUS completed");
    else
        select_reply(s, s->imap->scan_folder, s->imap->scan_readonly);
    qresync_forget(s);
    gw_session_done(s);
}

/* Scans the user's group first, also when the poller watches it (it looks once a second):
 * mail delivered just before must be there. gw_select_scanned answers when the scan is done. */
static void scanned(void *arg, mb_account *a, const char *no_text)
{
    (void)a;
    gw_select_scanned(arg, no_text);
}

static gw_result wait_for_scan(session *s)
{
    if (mb_scan_wait(s->account, &s->scan_wait, scanned, s))
        return GW_PENDING;
    gw_tagged(s, "NO [UNAVAILABLE] Server busy; try again later");
    return GW_DONE;
}

/* The QRESYNC parameter's list: (uidvalidity modseq [known-uids] [(known-seqs known-uids)]).
 * NULL, or the text of a BAD. The sequence match data is checked, not used: the VANISHED
 * answer is a superset anyway. */
static const char *qresync_param(session *s, const pi_arg *q)
{
    uint64_t uidvalidity;
    if (q->type != PI_LIST || q->count < 2 || q->count > 4 || !pi_arg_modseq(&q->list[0], false, &uidvalidity) ||
        uidvalidity > UINT32_MAX || !pi_arg_modseq(&q->list[1], true, &s->imap->select_qr.modseq))
        return "Invalid QRESYNC parameters";
    s->imap->select_qr.uidvalidity = (uint32_t)uidvalidity;
    size_t k = 2;
    const char *err = NULL;
    if (k < q->count && q->list[k].type == PI_ATOM) {
        if (pi_seqset_parse(q->list[k].str, q->list[k].len, UINT32_MAX, &s->imap->select_qr.known, &err) != 0)
            return "Invalid known UIDs";
        s->imap->select_qr.has_known = true;
        k++;
    }
    if (k < q->count) {
        const pi_arg *m = &q->list[k];
        pi_seqset a = {0}, b = {0};
        bool ok = m->type == PI_LIST && m->count == 2 && m->list[0].type == PI_ATOM && m->list[1].type == PI_ATOM &&
                  pi_seqset_parse(m->list[0].str, m->list[0].len, UINT32_MAX, &a, &err) == 0 &&
                  pi_seqset_parse(m->list[1].str, m->list[1].len, UINT32_MAX, &b, &err) == 0;
        pi_seqset_free(&a);
        pi_seqset_free(&b);
        if (!ok || ++k != q->count)
            return "Invalid QRESYNC sequence match data";
    }
    s->imap->select_qr.on = true;
    return NULL;
}

/* select-param list (RFC 4466): CONDSTORE, QRESYNC (...) (RFC 7162). NULL or a BAD text. */
static const char *select_params(session *s, const pi_arg *p)
{
    if (p->type != PI_LIST || p->count == 0)
        return "Invalid parameters";
    for (size_t i = 0; i < p->count; i++) {
        if (pi_arg_atom_is(&p->list[i], "CONDSTORE")) {
            gw_condstore_enable(s);
            continue;
        }
        if (!pi_arg_atom_is(&p->list[i], "QRESYNC") || i + 1 == p->count || s->imap->select_qr.on)
            return "Unknown parameter";
        if (!s->imap->qresync)
            return "QRESYNC is not enabled"; /* RFC 7162 3.2.5 */
        const char *bad = qresync_param(s, &p->list[++i]);
        if (bad)
            return bad;
    }
    return NULL;
}

static gw_result select_or_examine(session *s, const pi_command *cmd, bool readonly)
{
    if (s->imap->view && s->imap->qresync)
        gw_untagged(s, "OK [CLOSED] Previous mailbox closed"); /* RFC 7162 3.2.11 */
    deselect(s);
    qresync_forget(s);
    const char *bad = cmd->nargs == 2 ? select_params(s, &cmd->args[1]) : NULL;
    if (bad) {
        qresync_forget(s);
        gw_tagged(s, "BAD %s %s", readonly ? "EXAMINE" : "SELECT", bad);
        return GW_DONE;
    }
    mb_folder f;
    int kind = which_mailbox(s, &cmd->args[0], &f);
    if (kind <= 0)
        return GW_DONE;
    s->imap->scan_folder = kind == 2 ? f.id : MB_INBOX_ID;
    s->imap->scan_readonly = readonly;
    s->imap->scan_status = false;
    return wait_for_scan(s);
}

gw_result gw_cmd_select(session *s, const pi_command *cmd)
{
    return select_or_examine(s, cmd, false);
}

gw_result gw_cmd_examine(session *s, const pi_command *cmd)
{
    return select_or_examine(s, cmd, true);
}

gw_result gw_cmd_status(session *s, const pi_command *cmd)
{
    unsigned want = gw_status_items(s, &cmd->args[1]);
    if (!want)
        return GW_DONE;
    mb_folder f;
    int kind = which_mailbox(s, &cmd->args[0], &f);
    if (kind <= 0)
        return GW_DONE;
    s->imap->status_items = want;
    if (kind == 2) {
        status_line(s, f.name, strlen(f.name), f.messages, 0, f.uidnext, f.uidvalidity, f.unseen, f.id);
        gw_tagged(s, "OK STATUS completed");
        return GW_DONE;
    }
    s->imap->scan_status = true;
    return wait_for_scan(s);
}

gw_result gw_cmd_unselect(session *s, const pi_command *cmd)
{
    (void)cmd;
    deselect(s);
    gw_tagged(s, "OK UNSELECT completed");
    return GW_DONE;
}
