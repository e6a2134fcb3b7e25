/* NOOP (RFC 3501 6.1.2). With a mailbox it will report new mail; now there is none to watch. */
#include "gateway/session.h"

gw_result gw_cmd_noop(session *s, const pi_command *cmd)
{
    (void)cmd;
    gw_tagged(s, "OK NOOP completed");
    return GW_DONE;
}
