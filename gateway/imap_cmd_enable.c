/* ENABLE (RFC 5161): CONDSTORE and QRESYNC (RFC 7162; QRESYNC implies CONDSTORE) are the
 * extensions that need enabling; RFC 5161 3.1 has the server ignore what it does not
 * support, and list only what this command enabled. */
#include <strings.h>

#include "gateway/mailbox.h"

gw_result gw_cmd_enable(session *s, const pi_command *cmd)
{
    for (size_t i = 0; i < cmd->nargs; i++)
        if (cmd->args[i].type != PI_ATOM) {
            gw_tagged(s, "BAD ENABLE takes capability names");
            return GW_DONE;
        }
    bool condstore = false, qresync = false;
    for (size_t i = 0; i < cmd->nargs; i++) {
        condstore |= strcasecmp(cmd->args[i].str, "CONDSTORE") == 0;
        qresync |= strcasecmp(cmd->args[i].str, "QRESYNC") == 0;
    }
    condstore = condstore && !s->imap->condstore;
    qresync = qresync && !s->imap->qresync;
    if (condstore || qresync)
        gw_condstore_enable(s);
    if (qresync)
        s->imap->qresync = true;
    gw_untagged(s, "ENABLED%s%s", condstore ? " CONDSTORE" : "", qresync ? " QRESYNC" : "");
    gw_tagged(s, "OK ENABLE completed");
    return GW_DONE;
}
