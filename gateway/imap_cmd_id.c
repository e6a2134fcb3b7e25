/* ID (RFC 2971): the client's list is checked for shape and otherwise ignored. */
#include "gateway/imap_session.h"

gw_result gw_cmd_id(session *s, const pi_command *cmd)
{
    const pi_arg *a = &cmd->args[0];
    bool ok = a->type == PI_NIL || (a->type == PI_LIST && a->count % 2 == 0 && a->count <= 60);
    for (size_t i = 0; ok && a->type == PI_LIST && i < a->count; i++) {
        const char *str;
        size_t len;
        /* field names are strings, values nstrings */
        ok = i % 2 ? pi_arg_nstring(&a->list[i], &str, &len) : pi_arg_string(&a->list[i], &str, &len);
    }
    if (!ok) {
        gw_tagged(s, "BAD ID takes NIL or a list of field/value string pairs");
        return GW_DONE;
    }
    gw_untagged(s, "ID (\"name\" \"postern\")");
    gw_tagged(s, "OK ID completed");
    return GW_DONE;
}
