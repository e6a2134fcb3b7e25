/* APPEND until it is built on the folders (issue 13): a client's own messages cannot be
 * stored in postern's mailboxes yet, which RFC 3501 lets a server refuse: clients get a clear
 * NO [CANNOT] instead of an error they cannot explain. */
#include <stdlib.h>
#include <strings.h>

#include "gateway/mailbox.h"

gw_result gw_cmd_cannot(session *s, const pi_command *cmd)
{
    if (cmd->nargs == 0) {
        gw_tagged(s, "BAD Missing arguments");
        return GW_DONE;
    }
    bool copy = !strcasecmp(cmd->verb, "COPY") || !strcasecmp(cmd->verb, "MOVE");
    if (copy && s->imap->view) { /* a bad message set is BAD before it is NO (RFC 3501 section 9) */
        size_t *idx = NULL, n = 0;
        const char *err = NULL;
        int rc = gw_view_resolve(s, &cmd->args[0], cmd->uid, &idx, &n, &err);
        free(idx);
        if (rc != 0) {
            gw_tagged(s, "BAD %s", err);
            return GW_DONE;
        }
    }
    gw_tagged(s, "NO [CANNOT] This failover mail store is read-only: messages cannot be stored here");
    return GW_DONE;
}
