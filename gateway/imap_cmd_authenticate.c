/* AUTHENTICATE PLAIN (RFC 3501 6.2.2, RFC 4616), with the response on the command line
 * (SASL-IR, RFC 4959) or after a "+ " continuation; "*" cancels. */
#include <string.h>

#include <sodium.h>

#include "gateway/imap_session.h"

/* base64 of "authzid NUL authcid NUL password". */
static gw_result plain_response(session *s, const char *b64, size_t len)
{
    if (len == 1 && b64[0] == '=') /* RFC 4959: "=" is an empty initial response */
        len = 0;
    char *bin = sodium_malloc(len + 1);
    if (!bin) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    size_t n = 0;
    gw_result r = GW_DONE;
    if (sodium_base642bin((unsigned char *)bin, len + 1, b64, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) !=
        0) {
        gw_tagged(s, "BAD Invalid base64 in the authentication response");
        goto out;
    }
    char *nul1 = memchr(bin, '\0', n);
    char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - bin)) : NULL;
    if (!nul2 || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - bin))) {
        gw_tagged(s, "BAD Malformed PLAIN response");
        goto out;
    }
    const char *authzid = bin, *authcid = nul1 + 1, *pw = nul2 + 1;
    size_t pw_len = n - (size_t)(pw - bin);
    if (*authzid && strcmp(authzid, authcid) != 0) {
        gw_tagged(s, "NO [AUTHORIZATIONFAILED] Acting as another user is not supported");
        goto out;
    }
    r = gw_login_start(s, authcid, strlen(authcid), pw, pw_len);
out:
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
