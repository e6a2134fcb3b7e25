/* NOOP and CHECK (RFC 3501 6.1.2, 6.4.1): report what changed in the selected mailbox. */
#include "gateway/mailbox.h"

gw_result gw_cmd_noop(session *s, const pi_command *cmd)
{
    gw_view_sync(s, true);
    gw_tagged(s, "OK %s completed", cmd->verb);
    return GW_DONE;
}
