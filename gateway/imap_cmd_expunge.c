/* EXPUNGE, UID EXPUNGE (RFC 4315) and CLOSE (RFC 3501 6.4.1, 6.4.3): messages marked
 * \Deleted leave the folder for good, at every site (the replicated state's tombstone); a
 * message no other folder holds has its article cancelled on every news server. */
#include <stdlib.h>

#include "gateway/mailbox.h"

/* Removes the \Deleted messages of the view (of set, if given). */
static size_t remove_deleted(session *s, const size_t *idx, size_t n, bool all)
{
    size_t removed = 0;
    size_t count = all ? s->imap->view->mv.n : n;
    for (size_t k = 0; k < count; k++) {
        size_t i = all ? k : idx[k];
        if (!gw_view_msgid(s, i))
            continue;
        userstate_msg st;
        gw_view_state(s, i, &st);
        if ((st.flags & US_DELETED) && mb_view_expunge(&s->imap->view->mv, s->account, i) == US_OK)
            removed++;
    }
    return removed;
}

gw_result gw_cmd_expunge(session *s, const pi_command *cmd)
{
    if (s->imap->view->mv.readonly) {
        gw_tagged(s, "NO [READ-ONLY] The mailbox is read-only");
        return GW_DONE;
    }
    size_t *idx = NULL, n = 0;
    if (cmd->uid) {
        const char *err = NULL;
        if (cmd->nargs != 1 || gw_view_resolve(s, &cmd->args[0], true, &idx, &n, &err) != 0) {
            gw_tagged(s, "BAD %s", err ? err : "UID EXPUNGE takes a UID set");
            return GW_DONE;
        }
    } else if (cmd->nargs != 0) {
        gw_tagged(s, "BAD EXPUNGE takes no arguments");
        return GW_DONE;
    }
    if (remove_deleted(s, idx, n, !cmd->uid))
        mb_account_changed(s->account);
    free(idx);
    gw_view_sync(s, true); /* the EXPUNGE responses */
    gw_account_warn_unsaved(s);
    gw_tagged(s, "OK EXPUNGE completed");
    return GW_DONE;
}

gw_result gw_cmd_close(session *s, const pi_command *cmd)
{
    (void)cmd;
    mb_account *a = s->account;
    bool changed = !s->imap->view->mv.readonly && remove_deleted(s, NULL, 0, true);
    gw_view_close(s);
    gw_session_enter(s, S_AUTH);
    if (changed)
        mb_account_changed(a);
    gw_tagged(s, "OK CLOSE completed");
    return GW_DONE;
}
