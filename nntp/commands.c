/* nntp commands: single-line commands, the multi-line readers, AUTHINFO and MODE READER. */
#include "nntp/nntp_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Arguments go into a command line; CR, LF or blanks inside them would smuggle a second
 * command or shift the arguments. */
static int bad_arg(const char *s)
{
    return s == NULL || *s == '\0' || strpbrk(s, " \t\r\n") != NULL;
}

static int usable(const nntp_conn *c)
{
    if (c == NULL)
        return NNTP_EINVAL;
    if (c->in_post)
        return NNTP_EINVAL; /* the article must be finished with nntp_post_end first */
    return c->dead ? NNTP_ETEMP : NNTP_OK;
}

int nntp_command(nntp_conn *c, const char *line, int *code)
{
    int st = usable(c);
    if (st != NNTP_OK)
        return st;
    if (line == NULL || code == NULL)
        return NNTP_EINVAL;
    st = nn_send_line(c, line);
    if (st == NNTP_OK)
        st = nn_read_status(c, code);
    if (st != NNTP_OK)
        return st;
    return *code < 400 ? NNTP_OK : nn_map_status(*code, c->last, NN_CTX_GENERIC);
}

int nn_read_multiline(nntp_conn *c, nntp_line_fn fn, void *arg)
{
    int stopped = 0;
    for (;;) {
        char *line;
        size_t len;
        int st = nn_read_line(c, &line, &len);
        if (st != NNTP_OK)
            return st;
        if (line[0] == '.') {
            if (len == 1)
                return NNTP_OK;
            line++; /* RFC 3977 3.1.1: undo the server's dot-stuffing */
            len--;
        }
        /* After the callback says stop we still read to the dot: the alternative, dropping
         * the connection, would cost a reconnect and AUTHINFO. */
        if (!stopped && fn != NULL && fn(arg, line, len) != 0)
            stopped = 1;
    }
}

static int multi(nntp_conn *c, const char *cmd, int want, nntp_line_fn fn, void *arg)
{
    int st = nn_simple(c, cmd, want, NN_CTX_GENERIC);
    if (st != NNTP_OK)
        return st;
    return nn_read_multiline(c, fn, arg);
}

int nntp_group(nntp_conn *c, const char *group, nntp_group_info *info)
{
    int st = usable(c);
    if (st != NNTP_OK)
        return st;
    if (bad_arg(group))
        return NNTP_EINVAL;
    char cmd[NN_MAX_CMD + 1];
    if (snprintf(cmd, sizeof cmd, "GROUP %s", group) >= (int)sizeof cmd)
        return NNTP_EINVAL;
    st = nn_simple(c, cmd, 211, NN_CTX_GENERIC);
    if (st != NNTP_OK)
        return st;
    nntp_group_info gi;
    if (sscanf(c->last, "211 %" SCNu64 " %" SCNu64 " %" SCNu64, &gi.count, &gi.low, &gi.high) != 3)
        return NNTP_EPROTO; /* the connection is fine, only this reply was malformed */
    if (info)
        *info = gi;
    return NNTP_OK;
}

int nntp_stat(nntp_conn *c, const char *id_or_number)
{
    int st = usable(c);
    if (st != NNTP_OK)
        return st;
    if (bad_arg(id_or_number))
        return NNTP_EINVAL;
    char cmd[NN_MAX_CMD + 1];
    if (snprintf(cmd, sizeof cmd, "STAT %s", id_or_number) >= (int)sizeof cmd)
        return NNTP_EINVAL;
    return nn_simple(c, cmd, 223, NN_CTX_GENERIC);
}

/* "VERB ARG" with ARG checked (one token, no CR/LF), then a multi-line reply with code want. */
static int multi_arg(nntp_conn *c, const char *verb, const char *arg_text, int want, nntp_line_fn fn, void *arg)
{
    int st = usable(c);
    if (st != NNTP_OK)
        return st;
    if (bad_arg(arg_text))
        return NNTP_EINVAL;
    char cmd[NN_MAX_CMD + 1];
    if (snprintf(cmd, sizeof cmd, "%s %s", verb, arg_text) >= (int)sizeof cmd)
        return NNTP_EINVAL;
    return multi(c, cmd, want, fn, arg);
}

int nntp_fetch(nntp_conn *c, const char *verb, const char *id_or_number, nntp_line_fn fn, void *arg)
{
    if (verb == NULL)
        return NNTP_EINVAL;
    if (strcmp(verb, "ARTICLE") == 0)
        return multi_arg(c, verb, id_or_number, 220, fn, arg);
    if (strcmp(verb, "HEAD") == 0)
        return multi_arg(c, verb, id_or_number, 221, fn, arg);
    if (strcmp(verb, "BODY") == 0)
        return multi_arg(c, verb, id_or_number, 222, fn, arg);
    return NNTP_EINVAL;
}

int nntp_list_active(nntp_conn *c, const char *wildmat, nntp_line_fn fn, void *arg)
{
    if (wildmat == NULL || *wildmat == '\0') {
        int st = usable(c);
        return st != NNTP_OK ? st : multi(c, "LIST ACTIVE", 215, fn, arg);
    }
    return multi_arg(c, "LIST ACTIVE", wildmat, 215, fn, arg);
}

int nntp_list_counts(nntp_conn *c, const char *wildmat, nntp_line_fn fn, void *arg)
{
    return multi_arg(c, "LIST COUNTS", wildmat, 215, fn, arg);
}

int nntp_over(nntp_conn *c, const char *range, nntp_line_fn fn, void *arg)
{
    return multi_arg(c, "OVER", range, 224, fn, arg);
}

int nntp_listgroup(nntp_conn *c, const char *group, nntp_line_fn fn, void *arg)
{
    return multi_arg(c, "LISTGROUP", group, 211, fn, arg);
}
