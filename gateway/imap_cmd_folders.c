/* CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 9051 6.3.4-6.3.8) on the user's folders,
 * which live in the replicated state (mailbox/folders.c): what one site creates, every site
 * lists. Response codes from RFC 5530. */
#include <string.h>

#include "gateway/mailbox.h"

/* The folder name argument as a C string, or NULL (BAD already answered). */
static const char *folder_arg(session *s, const pi_command *cmd, size_t i)
{
    const char *name;
    size_t len;
    if (!pi_arg_astring(&cmd->args[i], &name, &len) || strlen(name) != len) {
        gw_tagged(s, "BAD %s takes a mailbox name", cmd->verb);
        return NULL;
    }
    return name;
}

void gw_folder_answer(session *s, const char *verb, mb_folder_rc rc)
{
    switch (rc) {
    case MB_FOLDER_OK: gw_tagged(s, "OK %s completed", verb); break;
    case MB_FOLDER_EXISTS: gw_tagged(s, "NO [ALREADYEXISTS] Mailbox exists"); break;
    case MB_FOLDER_NONEXISTENT: gw_tagged(s, "NO [NONEXISTENT] No such mailbox"); break;
    case MB_FOLDER_FIXED:
        gw_tagged(s, "NO [CANNOT] INBOX, Sent, Drafts, Trash, Junk and Archive cannot be renamed or deleted");
        break;
    case MB_FOLDER_BADNAME:
        gw_tagged(s, "NO [CANNOT] Invalid mailbox name: levels are separated by \"/\", none empty; no \"*\", \"%%\" "
                     "or control characters; at most 200 bytes");
        break;
    case MB_FOLDER_LIMIT: gw_tagged(s, "NO [LIMIT] Too many mailboxes"); break;
    case MB_FOLDER_NOMEM: gw_tagged(s, "NO [SERVERBUG] Out of memory"); break;
    case MB_FOLDER_UNAVAILABLE: gw_tagged(s, "NO [UNAVAILABLE] Mailboxes cannot be changed right now"); break;
    }
}

gw_result gw_cmd_create(session *s, const pi_command *cmd)
{
    const char *name = folder_arg(s, cmd, 0);
    if (!name)
        return GW_DONE;
    if (cmd->nargs > 1) { /* CREATE-SPECIAL-USE is not advertised: the special folders are fixed */
        gw_tagged(s, "NO [USEATTR] The special-use mailboxes are fixed: Sent, Drafts, Trash, Junk, Archive");
        return GW_DONE;
    }
    gw_folder_answer(s, cmd->verb, mb_folder_create(s->account, name));
    return GW_DONE;
}

gw_result gw_cmd_delete(session *s, const pi_command *cmd)
{
    const char *name = folder_arg(s, cmd, 0);
    if (name)
        gw_folder_answer(s, cmd->verb, mb_folder_delete(s->account, name));
    return GW_DONE;
}

gw_result gw_cmd_rename(session *s, const pi_command *cmd)
{
    const char *from = folder_arg(s, cmd, 0);
    const char *to = from ? folder_arg(s, cmd, 1) : NULL;
    if (to)
        gw_folder_answer(s, cmd->verb, mb_folder_rename(s->account, from, to));
    return GW_DONE;
}

gw_result gw_cmd_subscribe(session *s, const pi_command *cmd)
{
    const char *name = folder_arg(s, cmd, 0);
    if (name)
        gw_folder_answer(s, cmd->verb, mb_folder_subscribe(s->account, name, cmd->verb[0] == 'S'));
    return GW_DONE;
}
