/* CAPABILITY (RFC 3501 6.1.1): what this connection can do in its state. */
#include "gateway/imap_session.h"

gw_result gw_cmd_capability(session *s, const pi_command *cmd)
{
    (void)cmd;
    pu_buf b = PU_BUF_INIT;
    if (gw_session_caps_write(&b, s) != 0) {
        pu_buf_free(&b);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    gw_untagged(s, "CAPABILITY %s", b.data);
    pu_buf_free(&b);
    gw_tagged(s, "OK Capability completed");
    return GW_DONE;
}
