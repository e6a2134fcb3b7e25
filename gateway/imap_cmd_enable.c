/* ENABLE (RFC 5161): no extension that needs enabling exists yet, so nothing is enabled;
 * RFC 5161 3.1 has the server ignore what it does not support. */
#include "gateway/imap_session.h"

gw_result gw_cmd_enable(session *s, const pi_command *cmd)
{
    for (size_t i = 0; i < cmd->nargs; i++)
        if (cmd->args[i].type != PI_ATOM) {
            gw_tagged(s, "BAD ENABLE takes capability names");
            return GW_DONE;
        }
    gw_untagged(s, "ENABLED");
    gw_tagged(s, "OK ENABLE completed");
    return GW_DONE;
}
