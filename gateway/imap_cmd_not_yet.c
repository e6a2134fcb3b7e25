/* Mailbox commands (SELECT, FETCH, ...) arrive with the mailbox model; until then they are
 * refused honestly, in the states where RFC 3501 makes them valid. */
#include "gateway/session.h"

gw_result gw_cmd_not_yet(session *s, const pi_command *cmd)
{
    gw_tagged(s, "NO [UNAVAILABLE] %s is not implemented yet", cmd->name);
    return GW_DONE;
}
