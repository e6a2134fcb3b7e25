/* LMTP command parsing and DATA un-stuffing: no I/O, so unit tests and the fuzzer drive them
 * directly. */
#include "deliver/lmtp.h"

#include <string.h>
#include <strings.h>

#include "util/util.h"

static const char *const SYNTAX_MAIL = "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]";
static const char *const SYNTAX_RCPT = "501 5.5.4 Syntax: RCPT TO:<address>";

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* "<path>" (or a bare address, which some clients send) at p; the path without <> and any
 * source route goes to out. Returns the position after it, or NULL. */
static const char *parse_path(const char *p, const char *end, char *out, size_t cap)
{
    const char *start, *stop;
    if (p < end && *p == '<') {
        start = ++p;
        int quoted = 0;
        while (p < end && (quoted || *p != '>')) {
            if (*p == '\\' && quoted && p + 1 < end)
                p++;
            else if (*p == '"')
                quoted = !quoted;
            p++;
        }
        if (p == end)
            return NULL;
        stop = p++;
    } else {
        start = p;
        while (p < end && !is_space(*p))
            p++;
        stop = p;
        if (stop == start)
            return NULL;
    }
    /* An obsolete source route "@a,@b:user@c" (RFC 5321 4.1.2): only the mailbox counts. */
    if (start < stop && *start == '@') {
        const char *colon = memchr(start, ':', (size_t)(stop - start));
        if (!colon)
            return NULL;
        start = colon + 1;
    }
    size_t n = (size_t)(stop - start);
    if (n >= cap)
        return NULL;
    for (const char *q = start; q < stop; q++)
        if ((unsigned char)*q < 32 || *q == 127)
            return NULL;
    memcpy(out, start, n);
    out[n] = '\0';
    return p;
}

/* MAIL FROM:<path> params / RCPT TO:<path> params, after the verb. */
static int parse_mail_rcpt(const char *p, const char *end, lmtp_cmd *cmd, const char **reply)
{
    const char *keyword = cmd->verb == LMTP_MAIL ? "FROM:" : "TO:";
    const char *syntax = cmd->verb == LMTP_MAIL ? SYNTAX_MAIL : SYNTAX_RCPT;
    size_t klen = strlen(keyword);
    if (p == end || !is_space(*p)) {
        *reply = syntax;
        return -1;
    }
    while (p < end && is_space(*p))
        p++;
    if ((size_t)(end - p) < klen || strncasecmp(p, keyword, klen) != 0) {
        *reply = syntax;
        return -1;
    }
    p += klen;
    while (p < end && is_space(*p)) /* "FROM: <x>": not RFC 5321, but common */
        p++;
    p = parse_path(p, end, cmd->path, sizeof cmd->path);
    if (!p || (cmd->verb == LMTP_RCPT && !cmd->path[0])) {
        *reply = syntax;
        return -1;
    }
    for (;;) {
        if (p < end && !is_space(*p)) {
            *reply = syntax;
            return -1;
        }
        while (p < end && is_space(*p))
            p++;
        if (p == end)
            return 0;
        const char *param = p;
        while (p < end && !is_space(*p))
            p++;
        size_t n = (size_t)(p - param);
        const char *eq = memchr(param, '=', n);
        size_t name_len = eq ? (size_t)(eq - param) : n;
        const char *value = eq ? eq + 1 : p;
        size_t value_len = (size_t)(p - value);
        if (cmd->verb == LMTP_MAIL && name_len == 4 && strncasecmp(param, "SIZE", 4) == 0 && eq) {
            if (pu_parse_u64(value, value_len, &cmd->size) != 0) {
                *reply = "501 5.5.4 SIZE takes a number of bytes";
                return -1;
            }
            cmd->has_size = 1;
        } else if (cmd->verb == LMTP_MAIL && name_len == 4 && strncasecmp(param, "BODY", 4) == 0 && eq &&
                   ((value_len == 4 && strncasecmp(value, "7BIT", 4) == 0) ||
                    (value_len == 8 && strncasecmp(value, "8BITMIME", 8) == 0))) {
            /* Stored as received either way. */
        } else if (cmd->verb == LMTP_MAIL && !eq && n == 8 && strncasecmp(param, "SMTPUTF8", 8) == 0) {
            /* RFC 6531: UTF-8 in paths and headers, which are stored as received too. Without
             * it Postfix bounces such mail (5.6.7) rather than deliver it here. */
        } else {
            *reply = "555 5.5.4 unsupported parameter";
            return -1;
        }
    }
}

int lmtp_parse_command(const char *line, size_t len, lmtp_cmd *cmd, const char **reply)
{
    static const struct {
        const char *name;
        enum lmtp_verb verb;
    } verbs[] = {
        {"LHLO", LMTP_LHLO}, {"MAIL", LMTP_MAIL}, {"RCPT", LMTP_RCPT}, {"DATA", LMTP_DATA},
        {"RSET", LMTP_RSET}, {"NOOP", LMTP_NOOP}, {"QUIT", LMTP_QUIT}, {"VRFY", LMTP_VRFY},
    };
    memset(cmd, 0, sizeof *cmd);
    if (len > LMTP_MAX_COMMAND_LINE) {
        *reply = "500 5.5.2 line too long";
        return -1;
    }
    if (memchr(line, '\0', len) || memchr(line, '\r', len) || memchr(line, '\n', len)) {
        *reply = "500 5.5.2 control characters in the command";
        return -1;
    }
    const char *end = line + len;
    while (end > line && is_space(end[-1])) /* trailing blanks: tolerated */
        end--;
    size_t vlen = 0;
    while (line + vlen < end && !is_space(line[vlen]))
        vlen++;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (vlen != 4 || strncasecmp(line, verbs[i].name, 4) != 0)
            continue;
        cmd->verb = verbs[i].verb;
        const char *p = line + 4;
        switch (cmd->verb) {
        case LMTP_MAIL:
        case LMTP_RCPT:
            return parse_mail_rcpt(p, end, cmd, reply);
        case LMTP_LHLO:
        case LMTP_VRFY:
            while (p < end && is_space(*p))
                p++;
            if (p == end) {
                *reply = cmd->verb == LMTP_LHLO ? "501 5.5.4 Syntax: LHLO hostname" : "501 5.5.4 Syntax: VRFY address";
                return -1;
            }
            memcpy(cmd->arg, p, (size_t)(end - p));
            cmd->arg[end - p] = '\0';
            return 0;
        case LMTP_NOOP: /* NOOP may carry a string, which is ignored */
            return 0;
        default:
            if (p != end) {
                *reply = "501 5.5.4 this command takes no arguments";
                return -1;
            }
            return 0;
        }
    }
    if (vlen == 4 && (strncasecmp(line, "HELO", 4) == 0 || strncasecmp(line, "EHLO", 4) == 0)) {
        *reply = "500 5.5.1 this is LMTP: say LHLO";
        return -1;
    }
    *reply = "500 5.5.2 command not recognised";
    return -1;
}

enum { U_LINE_START = 0, U_MID, U_CR, U_DOT, U_DOT_CR, U_DONE };

void lmtp_unstuff_init(lmtp_unstuff *u)
{
    memset(u, 0, sizeof *u);
    u->state = U_LINE_START;
}

static void emit(lmtp_unstuff *u, uint8_t *out, size_t *n, uint8_t b)
{
    out[(*n)++] = b;
    u->out_bytes++;
}

size_t lmtp_unstuff_feed(lmtp_unstuff *u, const uint8_t *in, size_t len, size_t *consumed, uint8_t *out)
{
    size_t n = 0, i = 0;
    for (; i < len && u->state != U_DONE; i++) {
        uint8_t b = in[i];
        switch (u->state) {
        case U_LINE_START:
            if (b == '.') {
                u->state = U_DOT;
                break;
            }
            emit(u, out, &n, b);
            u->state = b == '\r' ? U_CR : U_MID;
            break;
        case U_MID: {
            /* Fast path: everything up to the next CR is message text (bare LF included). */
            const uint8_t *cr = memchr(in + i, '\r', len - i);
            size_t run = cr ? (size_t)(cr - (in + i)) : len - i;
            if (run > 1) {
                memcpy(out + n, in + i, run);
                n += run;
                u->out_bytes += run;
                i += run - 1; /* the loop's i++ steps past the run */
                break;
            }
            emit(u, out, &n, b);
            if (b == '\r')
                u->state = U_CR;
            break;
        }
        case U_CR:
            emit(u, out, &n, b);
            u->state = b == '\n' ? U_LINE_START : b == '\r' ? U_CR : U_MID;
            break;
        case U_DOT: /* the dot was stuffing unless CRLF follows */
            if (b == '\r') {
                u->state = U_DOT_CR;
                break;
            }
            emit(u, out, &n, b);
            u->state = U_MID;
            break;
        case U_DOT_CR:
            if (b == '\n') {
                u->state = U_DONE;
                u->done = 1;
                break;
            }
            /* ".\rX": a stuffed line holding a bare CR; out has room for the held CR */
            emit(u, out, &n, '\r');
            emit(u, out, &n, b);
            u->state = b == '\r' ? U_CR : U_MID;
            break;
        }
    }
    *consumed = i;
    return n;
}
