/* The command parser: one table says which keyword is valid in which state with how many
 * arguments of which kind; pp_parse() checks a line against it and gives the exact reply
 * for every refusal. */
#include <string.h>

#include <sodium.h>

#include "pop3/pop3.h"

enum arg_kind {
    A_NONE,      /* no arguments */
    A_NAME,      /* USER name */
    A_REST,      /* PASS: the rest of the line */
    A_MSG,       /* [msg] or msg */
    A_MSG_LINES, /* TOP msg n */
    A_AUTH       /* AUTH [mechanism [initial-response]] */
};

#define S_AUTHZ (1u << PP_STATE_AUTHORIZATION)
#define S_USER (1u << PP_STATE_USER)
#define S_TRANS (1u << PP_STATE_TRANSACTION)

static const struct cmd_def {
    const char *name;
    pp_cmd cmd;
    unsigned states;   /* S_ bits; 0: always refused */
    unsigned char min_args, max_args;
    enum arg_kind kind;
    const char *syntax; /* the reply for a wrong argument count */
} table[] = {
    {"USER", PP_CMD_USER, S_AUTHZ | S_USER, 1, 1, A_NAME, "-ERR Syntax: USER name\r\n"},
    {"PASS", PP_CMD_PASS, S_USER, 1, 1, A_REST, "-ERR Syntax: PASS password\r\n"},
    {"APOP", PP_CMD_APOP, 0, 0, 0, A_NONE, PP_ERR_TXT_APOP},
    {"AUTH", PP_CMD_AUTH, S_AUTHZ | S_USER, 0, 2, A_AUTH, "-ERR Syntax: AUTH [mechanism [initial-response]]\r\n"},
    {"STLS", PP_CMD_STLS, S_AUTHZ | S_USER, 0, 0, A_NONE, "-ERR Syntax: STLS\r\n"},
    {"CAPA", PP_CMD_CAPA, S_AUTHZ | S_USER | S_TRANS, 0, 0, A_NONE, "-ERR Syntax: CAPA\r\n"},
    {"QUIT", PP_CMD_QUIT, S_AUTHZ | S_USER | S_TRANS, 0, 0, A_NONE, "-ERR Syntax: QUIT\r\n"},
    {"STAT", PP_CMD_STAT, S_TRANS, 0, 0, A_NONE, "-ERR Syntax: STAT\r\n"},
    {"LIST", PP_CMD_LIST, S_TRANS, 0, 1, A_MSG, "-ERR Syntax: LIST [msg]\r\n"},
    {"RETR", PP_CMD_RETR, S_TRANS, 1, 1, A_MSG, "-ERR Syntax: RETR msg\r\n"},
    {"DELE", PP_CMD_DELE, S_TRANS, 1, 1, A_MSG, "-ERR Syntax: DELE msg\r\n"},
    {"NOOP", PP_CMD_NOOP, S_TRANS, 0, 0, A_NONE, "-ERR Syntax: NOOP\r\n"},
    {"RSET", PP_CMD_RSET, S_TRANS, 0, 0, A_NONE, "-ERR Syntax: RSET\r\n"},
    {"TOP", PP_CMD_TOP, S_TRANS, 2, 2, A_MSG_LINES, "-ERR Syntax: TOP msg n\r\n"},
    {"UIDL", PP_CMD_UIDL, S_TRANS, 0, 1, A_MSG, "-ERR Syntax: UIDL [msg]\r\n"},
};
#define NCMDS (sizeof table / sizeof table[0])

static char upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static const struct cmd_def *lookup(const char *kw, size_t n)
{
    if (n < 3 || n > 4)
        return NULL;
    char up[5];
    for (size_t i = 0; i < n; i++) {
        if (!is_alpha(kw[i]))
            return NULL;
        up[i] = upper(kw[i]);
    }
    up[n] = '\0';
    for (size_t i = 0; i < NCMDS; i++)
        if (strcmp(table[i].name, up) == 0)
            return &table[i];
    return NULL;
}

const char *pp_cmd_name(pp_cmd cmd)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (table[i].cmd == cmd)
            return table[i].name;
    return NULL;
}

/* Decimal digits only, value lo..PP_MSG_MAX. */
static bool parse_number(const char *s, size_t n, uint32_t lo, uint32_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > PP_MSG_MAX)
            return false;
    }
    if (v < lo)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool ieq(const char *a, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (upper(a[i]) != word[i])
            return false;
    return true;
}

static int fail(pp_command *c, const char *err)
{
    c->err = err;
    return -1;
}

int pp_parse(const char *line, size_t len, pp_state state, const pp_offer *offer, pp_command *c)
{
    memset(c, 0, sizeof *c);
    if (len == 0)
        return fail(c, PP_ERR_TXT_EMPTY);
    if (len >= PP_LINE_MAX)
        return fail(c, PP_ERR_TXT_LINE_TOO_LONG);

    size_t k = 0;
    while (k < len && line[k] != ' ')
        k++;
    const struct cmd_def *def = lookup(line, k);
    if (!def)
        return fail(c, PP_ERR_TXT_UNKNOWN);
    c->cmd = def->cmd;
    c->name = def->name;
    if (def->states == 0)
        return fail(c, def->syntax);

    unsigned st = (unsigned)state;
    if (st > PP_STATE_TRANSACTION || !(def->states & (1u << st))) {
        if (def->cmd == PP_CMD_PASS && st == PP_STATE_AUTHORIZATION)
            return fail(c, PP_ERR_TXT_NEED_USER);
        return fail(c, st == PP_STATE_TRANSACTION ? PP_ERR_TXT_IN_TRANSACTION : PP_ERR_TXT_IN_AUTHORIZATION);
    }
    if ((def->cmd == PP_CMD_USER || def->cmd == PP_CMD_PASS) && !offer->user)
        return fail(c, offer->tls ? PP_ERR_TXT_NO_USER : PP_ERR_TXT_PLAINTEXT);
    if (def->cmd == PP_CMD_STLS && !offer->stls)
        return fail(c, offer->tls ? PP_ERR_TXT_TLS_ACTIVE : PP_ERR_TXT_NO_STLS);

    const char *rest = k < len ? line + k + 1 : line + len; /* past the keyword's space */
    size_t rest_len = k < len ? len - k - 1 : 0;
    memcpy(c->text, rest, rest_len);
    c->text[rest_len] = '\0';

    if (def->kind == A_REST) {
        if (memchr(rest, '\r', rest_len))
            return fail(c, PP_ERR_TXT_BAD_CHAR);
        if (rest_len == 0)
            return fail(c, def->syntax);
        c->nargs = 1;
        c->arg[0] = c->text;
        c->arg_len[0] = rest_len;
        return 0;
    }

    for (size_t i = 0; i < rest_len; i++) {
        unsigned char b = (unsigned char)rest[i];
        if (b < 0x20 || b == 0x7f)
            return fail(c, PP_ERR_TXT_BAD_CHAR);
    }
    /* Tokens: runs of spaces separate, leading and trailing ones are ignored. */
    size_t ntok = 0;
    for (size_t i = 0; i < rest_len;) {
        if (c->text[i] == ' ') {
            c->text[i++] = '\0';
            continue;
        }
        size_t start = i;
        while (i < rest_len && c->text[i] != ' ')
            i++;
        if (ntok < 2) {
            c->arg[ntok] = c->text + start;
            c->arg_len[ntok] = i - start;
        }
        ntok++;
    }
    if (ntok < def->min_args || ntok > def->max_args) {
        c->arg[0] = c->arg[1] = NULL;
        c->arg_len[0] = c->arg_len[1] = 0;
        return fail(c, def->syntax);
    }
    c->nargs = ntok;

    switch (def->kind) {
    case A_MSG:
        if (ntok && !parse_number(c->arg[0], c->arg_len[0], 1, &c->msg))
            return fail(c, PP_ERR_TXT_BAD_MSG);
        break;
    case A_MSG_LINES:
        if (!parse_number(c->arg[0], c->arg_len[0], 1, &c->msg))
            return fail(c, PP_ERR_TXT_BAD_MSG);
        if (!parse_number(c->arg[1], c->arg_len[1], 0, &c->lines))
            return fail(c, PP_ERR_TXT_BAD_LINES);
        break;
    case A_AUTH:
        if (ntok == 0)
            break;
        if (!ieq(c->arg[0], c->arg_len[0], "PLAIN"))
            return fail(c, PP_ERR_TXT_MECH);
        if (!offer->sasl_plain)
            return fail(c, offer->tls ? PP_ERR_TXT_NO_SASL : PP_ERR_TXT_PLAINTEXT);
        break;
    case A_NAME:
    case A_REST:
    case A_NONE:
        break;
    }
    return 0;
}

void pp_command_wipe(pp_command *c)
{
    sodium_memzero(c, sizeof *c);
}

void pp_offer_init(pp_offer *o, bool tls_active, bool tls_available, bool plaintext_login)
{
    memset(o, 0, sizeof *o);
    o->tls = tls_active;
    o->stls = tls_available && !tls_active;
    o->user = o->sasl_plain = tls_active || plaintext_login;
}
