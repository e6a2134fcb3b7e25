/* ENABLE (RFC 5161): CONDSTORE (RFC 7162) is the one extension that needs enabling; RFC 5161
 * 3.1 has the server ignore what it does not support, and list only what it enabled now. */
#include <strings.h>

#include "gateway/mailbox.h"

gw_result gw_cmd_enable(session *s, const pi_command *cmd)
{
    for (size_t i = 0; i < cmd->nargs; i++)
        if (cmd->args[i].type != PI_ATOM) {
            gw_tagged(s, "BAD ENABLE takes capability names");
            return GW_DONE;
        }
    bool condstore = false;
    for (size_t i = 0; i < cmd->nargs; i++)
        if (strcasecmp(cmd->args[i].str, "CONDSTORE") == 0)
            condstore = true;
    if (condstore && !s->imap->condstore) {
        gw_condstore_enable(s);
        gw_untagged(s, "ENABLED CONDSTORE");
    } else {
        gw_untagged(s, "ENABLED");
    }
    gw_tagged(s, "OK ENABLE completed");
    return GW_DONE;
}
