/* LOGIN (RFC 3501 6.2.3). The state and TLS checks ran before (gw_command_check). */
#include "gateway/imap_session.h"

gw_result gw_cmd_login(session *s, const pi_command *cmd)
{
    const char *user, *pw;
    size_t user_len, pw_len;
    if (!pi_arg_astring(&cmd->args[0], &user, &user_len) || !pi_arg_astring(&cmd->args[1], &pw, &pw_len)) {
        gw_tagged(s, "BAD LOGIN takes a user name and a password");
        return GW_DONE;
    }
    return gw_login_start(s, user, user_len, pw, pw_len);
}
