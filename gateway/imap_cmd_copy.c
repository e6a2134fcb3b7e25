/* COPY, MOVE (RFC 6851) and their UID forms, answered with COPYUID (RFC 4315). A copy is a new
 * membership in the replicated state, never a re-upload: the article stays as it is, and is
 * cancelled only when no folder holds the message any more (mailbox/filing.c). That is what
 * Thunderbird's Delete (a MOVE to Trash) and Empty Trash rest on. */
#include <stdlib.h>
#include <string.h>

#include "gateway/mailbox.h"

static gw_result copy_or_move(session *s, const pi_command *cmd, bool move)
{
    const char *verb = move ? "MOVE" : "COPY";
    const char *name;
    size_t len;
    if (cmd->nargs != 2 || !pi_arg_astring(&cmd->args[1], &name, &len) || strlen(name) != len) {
        gw_tagged(s, "BAD %s takes a message set and a mailbox name", verb);
        return GW_DONE;
    }
    size_t *idx = NULL, n = 0;
    const char *err = NULL;
    if (gw_view_resolve(s, &cmd->args[0], cmd->uid, &idx, &n, &err) != 0) { /* BAD before NO */
        gw_tagged(s, "BAD %s", err);
        return GW_DONE;
    }
    mb_view *v = &s->imap->view->mv;
    mb_account *a = s->account;
    mb_folder to;
    mb_folder_rc rc = mb_folder_find(a, name, &to);
    if (rc != MB_FOLDER_OK) {
        free(idx);
        if (rc == MB_FOLDER_NONEXISTENT)
            gw_tagged(s, "NO [TRYCREATE] No such mailbox"); /* RFC 9051 6.4.7 */
        else
            gw_folder_answer(s, verb, rc);
        return GW_DONE;
    }
    if (move && v->readonly) {
        free(idx);
        gw_tagged(s, "NO [READ-ONLY] The mailbox is read-only: its messages can be copied, not moved");
        return GW_DONE;
    }
    if (move && to.id == v->folder) {
        free(idx);
        gw_tagged(s, "NO [CANNOT] The messages are in that mailbox already");
        return GW_DONE;
    }
    uint32_t *src = malloc((n ? n : 1) * sizeof *src), *dst = malloc((n ? n : 1) * sizeof *dst);
    size_t *moved = malloc((n ? n : 1) * sizeof *moved);
    if (!src || !dst || !moved) {
        free(idx), free(src), free(dst), free(moved);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    size_t copied = 0;
    for (size_t k = 0; k < n && rc == MB_FOLDER_OK; k++) {
        uint32_t uid = 0;
        rc = mb_view_copy(v, a, idx[k], to.id, &uid);
        if (rc == MB_FOLDER_OK && uid) {
            src[copied] = gw_view_uid(s->imap->view, idx[k]);
            dst[copied] = uid;
            moved[copied++] = idx[k];
        }
    }
    /* MOVE: the copies are made before any source message goes, so a failure half-way leaves
     * every message in at least one folder */
    if (move && rc == MB_FOLDER_OK)
        for (size_t k = 0; k < copied; k++)
            mb_view_expunge(v, a, moved[k]);
    free(idx);
    free(moved);
    pu_buf code = PU_BUF_INIT;
    if (copied) {
        pu_buf_printf(&code, "[COPYUID %u ", to.uidvalidity);
        pi_seqset_write(&code, src, copied);
        pu_buf_addstr(&code, " ");
        pi_seqset_write(&code, dst, copied);
        pu_buf_addstr(&code, "] ");
    }
    free(src);
    free(dst);
    if (copied)
        mb_account_changed(a); /* the other sessions of the user, here and in the destination */
    if (rc != MB_FOLDER_OK) {
        pu_buf_free(&code);
        gw_folder_answer(s, verb, rc); /* what was copied stays: a membership, nothing to undo */
        return GW_DONE;
    }
    if (move) { /* RFC 6851 4.3: COPYUID in an untagged OK before the EXPUNGEs */
        if (copied)
            gw_untagged(s, "OK %sMoved", code.data);
        gw_view_sync(s, true);
        gw_account_warn_unsaved(s);
        gw_tagged(s, "OK MOVE completed");
    } else {
        gw_account_warn_unsaved(s);
        gw_tagged(s, "OK %sCOPY completed", copied ? code.data : "");
    }
    pu_buf_free(&code);
    return GW_DONE;
}

gw_result gw_cmd_copy(session *s, const pi_command *cmd)
{
    return copy_or_move(s, cmd, false);
}

gw_result gw_cmd_move(session *s, const pi_command *cmd)
{
    return copy_or_move(s, cmd, true);
}
