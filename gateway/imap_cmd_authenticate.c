/* AUTHENTICATE PLAIN (RFC 3501 6.2.2, RFC 4616), with the response on the command line
 * (SASL-IR, RFC 4959) or after a "+ " continuation; "*" cancels. */
#include <string.h>

#include <sodium.h>

#include "gateway/imap_session.h"
#include "util/sasl.h"

/* base64 of "authzid NUL authcid NUL password", decoded by util's shared reader. */
static gw_result plain_response(session *s, const char *b64, size_t len)
{
    char *bin = sodium_malloc(len + 1);
    if (!bin) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    pu_plain p;
    gw_result r = GW_DONE;
    switch (pu_sasl_plain(b64, len, bin, len + 1, 0, &p)) {
    case PU_PLAIN_OK:
        r = gw_login_start(s, p.authcid, p.authcid_len, p.password, p.password_len);
        break;
    case PU_PLAIN_BASE64:
        gw_tagged(s, "BAD Invalid base64 in the authentication response");
        break;
    case PU_PLAIN_AUTHZID:
        gw_tagged(s, "NO [AUTHORIZATIONFAILED] Acting as another user is not supported");
        break;
    case PU_PLAIN_MALFORMED:
    default:
        gw_tagged(s, "BAD Malformed PLAIN response");
        break;
    }
    sodium_memzero(&p, sizeof p);
    sodium_free(bin); /* wipes the password */
    return r;
}

gw_result gw_cmd_authenticate(session *s, const pi_command *cmd)
{
    const pi_arg *mech = &cmd->args[0];
    if (mech->type != PI_ATOM) {
        gw_tagged(s, "BAD AUTHENTICATE takes a mechanism name");
        return GW_DONE;
    }
    if (!pi_arg_atom_is(mech, "PLAIN")) {
        gw_tagged(s, "NO [CANNOT] Unsupported authentication mechanism");
        return GW_DONE;
    }
    if (cmd->nargs == 2) {
        if (cmd->args[1].type != PI_ATOM) {
            gw_tagged(s, "BAD The initial response must be base64");
            return GW_DONE;
        }
        return plain_response(s, cmd->args[1].str, cmd->args[1].len);
    }
    if (pi_parser_read_line(s->imap->parser) != 0) {
        gw_tagged(s, "NO [SERVERBUG] Cannot read the response");
        return GW_DONE;
    }
    s->imap->sasl_wait = true;
    gw_session_enter(s, S_AUTHENTICATING);
    gw_write(s, "+ \r\n", 4);
    return GW_DONE;
}

gw_result gw_authenticate_line(session *s, const char *line, size_t len)
{
    s->imap->sasl_wait = false;
    gw_session_enter(s, S_NOT_AUTH);
    if (len == 1 && line[0] == '*') {
        gw_tagged(s, "BAD Authentication cancelled");
        return GW_DONE;
    }
    return plain_response(s, line, len);
}
