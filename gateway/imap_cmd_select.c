/* SELECT, EXAMINE (RFC 3501 6.3.1, 6.3.2) and STATUS (6.3.10). INBOX is the user's group;
 * Sent, Drafts and Trash exist (clients insist) and are empty until folders are stored. The
 * group is scanned first, so the counts include mail delivered just before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"

enum { ST_MESSAGES = 1, ST_RECENT = 2, ST_UIDNEXT = 4, ST_UIDVALIDITY = 8, ST_UNSEEN = 16 };

/* 1 INBOX, 2 one of the empty special folders, 0 unknown. */
static int which_mailbox(const pi_arg *a)
{
    const char *name;
    size_t len;
    if (!pi_arg_astring(a, &name, &len) || len > 64)
        return 0;
    if (len == 5 && strncasecmp(name, "INBOX", 5) == 0)
        return 1;
    static const char *const special[] = {"Sent", "Drafts", "Trash"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(special[i]) == len && memcmp(special[i], name, len) == 0)
            return 2;
    return 0;
}

static void deselect(session *s)
{
    gw_view_close(s);
    if (s->state == S_SELECTED)
        gw_session_enter(s, S_AUTH);
}

static void status_line(session *s, const char *name, size_t name_len, size_t messages, size_t recent,
                        uint64_t uidnext, uint32_t uidvalidity, size_t unseen)
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
    if (s->imap->status_items & ST_UNSEEN)
        pu_buf_printf(&b, "%sUNSEEN %zu", sep, unseen);
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
    status_line(s, "INBOX", 5, messages, recent, next, m->uidvalidity, unseen);
}

static void select_reply(session *s, bool readonly)
{
    if (gw_view_open(s, readonly) != 0) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return;
    }
    gw_session_enter(s, S_SELECTED);
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
        select_reply(s, s->imap->scan_readonly);
    gw_session_done(s);
}

/* An empty special folder: a view with no messages that never changes. */
static void select_empty(session *s, const pi_arg *name, bool readonly)
{
    gw_view *v = calloc(1, sizeof *v);
    if (!v) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return;
    }
    v->mv.readonly = readonly;
    v->empty_folder = true;
    v->mv.uidvalidity = 1;
    s->imap->view = v;
    gw_view_watch(s);
    gw_session_enter(s, S_SELECTED);
    gw_untagged(s, "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    gw_untagged(s, "OK [PERMANENTFLAGS ()] Nothing can be stored here yet");
    gw_untagged(s, "0 EXISTS");
    gw_untagged(s, "0 RECENT");
    gw_untagged(s, "OK [UIDVALIDITY 1] UIDs valid");
    gw_untagged(s, "OK [UIDNEXT 1] Predicted next UID");
    (void)name;
    gw_tagged(s, "OK [READ-ONLY] %s completed", readonly ? "EXAMINE" : "SELECT");
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

static gw_result select_or_examine(session *s, const pi_command *cmd, bool readonly)
{
    deselect(s);
    int kind = which_mailbox(&cmd->args[0]);
    if (kind == 0) {
        gw_tagged(s, "NO [NONEXISTENT] No such mailbox");
        return GW_DONE;
    }
    if (kind == 2) {
        select_empty(s, &cmd->args[0], readonly);
        return GW_DONE;
    }
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
    int kind = which_mailbox(&cmd->args[0]);
    const pi_arg *items = &cmd->args[1];
    if (items->type != PI_LIST || items->count == 0) {
        gw_tagged(s, "BAD STATUS needs a list of items");
        return GW_DONE;
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
        else {
            gw_tagged(s, "BAD Unknown STATUS item");
            return GW_DONE;
        }
    }
    if (kind == 0) {
        gw_tagged(s, "NO [NONEXISTENT] No such mailbox");
        return GW_DONE;
    }
    s->imap->status_items = want;
    if (kind == 2) {
        const char *name;
        size_t len;
        pi_arg_astring(&cmd->args[0], &name, &len);
        status_line(s, name, len, 0, 0, 1, 1, 0);
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
