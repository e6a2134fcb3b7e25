/* gateway: the IMAP command table and the capability list. Flags on each entry say in which
 * states a command is valid and whether it carries a password; the session checks them before
 * any handler runs, so handlers only see commands that may run now. */
#include <string.h>

#include "gateway/gw.h"

/* Only what works today: nothing is advertised before it is implemented. */
#define BASE_CAPS                                                                                              \
    "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE NAMESPACE IDLE UIDPLUS UNSELECT CHILDREN SPECIAL-USE SORT "           \
    "SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESEARCH LIST-EXTENDED LIST-STATUS MOVE MULTIAPPEND "         \
    "CONDSTORE QRESYNC"

unsigned gw_caps_for(enum session_state st, bool tls, bool tls_available, bool allow_plaintext_auth)
{
    bool logged_in = st == S_AUTH || st == S_SELECTED || st == S_IDLE;
    if (logged_in)
        return 0;
    unsigned caps = 0;
    if (!tls && tls_available)
        caps |= GW_CAP_STARTTLS;
    if (tls || allow_plaintext_auth)
        caps |= GW_CAP_AUTH_PLAIN;
    else
        caps |= GW_CAP_LOGINDISABLED;
    return caps;
}

int gw_caps_write(pu_buf *b, unsigned caps)
{
    int rc = pu_buf_addstr(b, BASE_CAPS);
    if (caps & GW_CAP_STARTTLS)
        rc |= pu_buf_addstr(b, " STARTTLS");
    if (caps & GW_CAP_LOGINDISABLED)
        rc |= pu_buf_addstr(b, " LOGINDISABLED");
    if (caps & GW_CAP_AUTH_PLAIN)
        rc |= pu_buf_addstr(b, " AUTH=PLAIN");
    return rc ? -1 : 0;
}

#define AUTHED (GW_CMD_AUTH | GW_CMD_SELECTED)

/* Every command in one table: its handler, the states it is valid in, its argument count. */
static const gw_command commands[] = {
    {"CAPABILITY", gw_cmd_capability, GW_CMD_ANY, 0, 0},
    {"NOOP", gw_cmd_noop, GW_CMD_ANY, 0, 0},
    {"LOGOUT", gw_cmd_logout, GW_CMD_ANY, 0, 0},
    {"ID", gw_cmd_id, GW_CMD_ANY, 1, 1},
    {"STARTTLS", gw_cmd_starttls, GW_CMD_NOT_AUTH, 0, 0},
    {"LOGIN", gw_cmd_login, GW_CMD_NOT_AUTH | GW_CMD_NEEDS_TLS, 2, 2},
    {"AUTHENTICATE", gw_cmd_authenticate, GW_CMD_NOT_AUTH | GW_CMD_NEEDS_TLS, 1, 2},
    {"NAMESPACE", gw_cmd_namespace, AUTHED, 0, 0},
    {"ENABLE", gw_cmd_enable, GW_CMD_AUTH, 1, GW_ARGS_ANY}, /* RFC 5161: before SELECT only */
    {"LIST", gw_cmd_list, AUTHED, 2, 5},
    {"LSUB", gw_cmd_list, AUTHED, 2, 2},
    {"SELECT", gw_cmd_select, AUTHED, 1, 2},
    {"EXAMINE", gw_cmd_examine, AUTHED, 1, 2},
    {"STATUS", gw_cmd_status, AUTHED, 2, 2},
    {"IDLE", gw_cmd_idle, AUTHED, 0, 0},
    {"CREATE", gw_cmd_create, AUTHED, 1, 2},
    {"DELETE", gw_cmd_delete, AUTHED, 1, 1},
    {"RENAME", gw_cmd_rename, AUTHED, 2, 3},
    {"SUBSCRIBE", gw_cmd_subscribe, AUTHED, 1, 1},
    {"UNSUBSCRIBE", gw_cmd_subscribe, AUTHED, 1, 1},
    {"APPEND", gw_cmd_append, AUTHED, 2, GW_ARGS_ANY}, /* MULTIAPPEND: any number of messages */
    {"CHECK", gw_cmd_noop, GW_CMD_SELECTED, 0, 0},
    {"CLOSE", gw_cmd_close, GW_CMD_SELECTED, 0, 0},
    {"UNSELECT", gw_cmd_unselect, GW_CMD_SELECTED, 0, 0},
    {"EXPUNGE", gw_cmd_expunge, GW_CMD_SELECTED | GW_CMD_UID, 0, 1},
    {"SEARCH", gw_cmd_search, GW_CMD_SELECTED | GW_CMD_UID, 1, GW_ARGS_ANY},
    {"SORT", gw_cmd_sort, GW_CMD_SELECTED | GW_CMD_UID, 3, GW_ARGS_ANY},
    {"THREAD", gw_cmd_thread, GW_CMD_SELECTED | GW_CMD_UID, 3, GW_ARGS_ANY},
    {"FETCH", gw_cmd_fetch, GW_CMD_SELECTED | GW_CMD_UID, 2, 3},
    {"STORE", gw_cmd_store, GW_CMD_SELECTED | GW_CMD_UID, 3, 4},
    {"COPY", gw_cmd_copy, GW_CMD_SELECTED | GW_CMD_UID, 2, 2},
    {"MOVE", gw_cmd_move, GW_CMD_SELECTED | GW_CMD_UID, 2, 2},
};

const gw_command *gw_command_find(const char *verb, bool uid)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, verb) == 0)
            return !uid || (commands[i].flags & GW_CMD_UID) ? &commands[i] : NULL;
    return NULL;
}

const char *gw_command_check(const gw_command *c, enum session_state st, bool tls, bool allow_plaintext_auth,
                             size_t nargs)
{
    unsigned need;
    switch (st) {
    case S_NOT_AUTH:
        need = GW_CMD_NOT_AUTH;
        break;
    case S_AUTH:
        need = GW_CMD_AUTH;
        break;
    case S_SELECTED:
        need = GW_CMD_SELECTED;
        break;
    default: /* no commands are read in the other states */
        return "BAD Command not valid now";
    }
    if (!(c->flags & need)) {
        if (st == S_NOT_AUTH)
            return "BAD Log in first";
        if (c->flags & GW_CMD_NOT_AUTH)
            return "BAD Already logged in";
        if (c->flags & GW_CMD_SELECTED)
            return "BAD No mailbox selected";
        return "BAD Command not valid with a mailbox selected";
    }
    if (nargs < c->min_args)
        return "BAD Missing arguments";
    if (nargs > c->max_args)
        return "BAD Too many arguments";
    /* RFC 3501 6.2.3 / 7.1: LOGINDISABLED means LOGIN is refused; AUTHENTICATE PLAIN too. */
    if ((c->flags & GW_CMD_NEEDS_TLS) && !tls && !allow_plaintext_auth)
        return "NO [PRIVACYREQUIRED] Plaintext authentication is not allowed without TLS; use STARTTLS";
    return NULL;
}
