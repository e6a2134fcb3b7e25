/* LOGOUT (RFC 3501 6.1.3). The BYE carries text: Outlook cannot parse a bare "* BYE". */
#include "gateway/imap_session.h"

gw_result gw_cmd_logout(session *s, const pi_command *cmd)
{
    (void)cmd;
    gw_account_warn_unsaved(s);
    gw_untagged(s, "BYE Logging out");
    gw_tagged(s, "OK Logout completed");
    return GW_CLOSE;
}
