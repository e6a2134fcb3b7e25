/* STARTTLS (RFC 3501 6.2.1). The tagged OK goes out in plaintext, then TLS starts over the
 * same connection. Anything the client pipelined after the command is dropped unread
 * (RFC 3501 11.1; the CVE-2011-0411 class of command injection). */
#include "gateway/imap_session.h"

gw_result gw_cmd_starttls(session *s, const pi_command *cmd)
{
    (void)cmd;
    if (s->tls) {
        gw_tagged(s, "BAD TLS is already active");
        return GW_DONE;
    }
    if (!s->tls_available) {
        gw_tagged(s, "BAD TLS is not available on this server");
        return GW_DONE;
    }
    gw_tagged(s, "OK Begin TLS negotiation now");
    if (gw_session_starttls(s) != 0) {
        pu_log(PU_ERROR, "%s: cannot start TLS", s->peer);
        return GW_CLOSE;
    }
    return GW_DONE;
}
