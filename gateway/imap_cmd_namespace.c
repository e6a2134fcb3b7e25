/* NAMESPACE (RFC 2342): one personal namespace, no prefix, "/" as hierarchy separator. */
#include "gateway/imap_session.h"

gw_result gw_cmd_namespace(session *s, const pi_command *cmd)
{
    (void)cmd;
    gw_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
    gw_tagged(s, "OK Namespace completed");
    return GW_DONE;
}
