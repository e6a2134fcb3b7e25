/* nntp status lines: parsing, and mapping NNTP reply codes to nntp_status. */
#include "nntp/nntp_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *nntp_strerror(int status)
{
    switch (status) {
    case NNTP_OK: return "success";
    case NNTP_ETEMP: return "temporary failure (server unreachable, timed out, dropped or busy)";
    case NNTP_EPERM: return "refused by the news server";
    case NNTP_EDUP: return "duplicate Message-ID";
    case NNTP_ENOENT: return "no such group or article";
    case NNTP_EAUTH: return "authentication rejected";
    case NNTP_ETLS: return "TLS handshake or certificate verification failed";
    case NNTP_EPROTO: return "protocol error (server response is not NNTP)";
    case NNTP_EINVAL: return "invalid argument";
    default: return "unknown nntp status";
    }
}

static int has_word(const char *text, const char *word)
{
    return strcasestr(text, word) != NULL;
}

/* A refusal of a POST, decided from its text. INN's nnrpd answers every refusal with 441 and
 * passes innd's answer in the text. Observed with INN 2.7.1 (Debian inn2 2.7.1-1+deb12u1):
 * a Message-ID that is already in history gets "441 435 Duplicate" (nnrpd offers the article
 * to innd with IHAVE and relays innd's 435); other INN versions and servers say
 * "441 Duplicate" / "435 Duplicate" / "441 437 Duplicate article". */
static int map_post_refusal(int code, const char *text)
{
    if (code == 435 || has_word(text, "duplicate"))
        return NNTP_EDUP;
    /* An embedded innd code ("441 400 ...", "441 436 ...") says more than our 441. */
    if (isdigit((unsigned char)text[0]) && isdigit((unsigned char)text[1]) &&
        isdigit((unsigned char)text[2]) && (text[3] == ' ' || text[3] == '\0')) {
        int inner = atoi(text);
        if (inner == 435)
            return NNTP_EDUP;
        if (inner == 400 || inner == 403 || inner == 436)
            return NNTP_ETEMP;
    }
    /* innd throttled/paused (by ctlinnd, or by itself when the spool or history fills up), a
     * load limit, or nnrpd unable to reach innd: all pass without any change on our side. */
    static const char *const temp[] = {
        "throttl", "paused", "pause ", "no space", "space left", "disk full", "load",
        "try again", "later", "can't connect", "cannot connect", "connection refused",
        "timed out", "timeout", "unavailable", "out of memory", "resource",
    };
    for (size_t i = 0; i < sizeof temp / sizeof temp[0]; i++)
        if (has_word(text, temp[i]))
            return NNTP_ETEMP;
    return NNTP_EPERM;
}

int nn_map_status(int code, const char *line, enum nn_ctx ctx)
{
    const char *text = strlen(line) > 4 ? line + 4 : "";
    if (code < 400 || code > 599)
        return NNTP_EPROTO; /* a success code other than the one the command expects */
    if (code == 400 || code == 403 || code == 436)
        return NNTP_ETEMP;
    if (ctx == NN_CTX_AUTH)
        return NNTP_EAUTH; /* 480, 481, 482, 483, 502, or AUTHINFO not understood (500/501) */
    switch (code) {
    case 411: case 412: case 420: case 423: case 430:
        return NNTP_ENOENT;
    case 480: case 481: case 482: case 483:
        return NNTP_EAUTH;
    case 435:
        return NNTP_EDUP;
    case 441:
        return map_post_refusal(code, text);
    case 440: case 437:
        return NNTP_EPERM;
    default:
        break;
    }
    if (ctx == NN_CTX_POST && code / 100 == 4)
        return map_post_refusal(code, text);
    /* Other 4xx are failures RFC 3977 does not call permanent; 5xx are. */
    return code / 100 == 4 ? NNTP_ETEMP : NNTP_EPERM;
}

int nn_read_status(nntp_conn *c, int *code)
{
    char *line;
    size_t len;
    int st = nn_read_line(c, &line, &len);
    if (st != NNTP_OK)
        return st;
    memcpy(c->last, line, len + 1);
    if (len < 3 || !(line[0] >= '1' && line[0] <= '5') || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ')) {
        c->dead = 1; /* not NNTP: we cannot know where the next reply starts */
        return NNTP_EPROTO;
    }
    *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    return NNTP_OK;
}

int nn_simple(nntp_conn *c, const char *line, int want, enum nn_ctx ctx)
{
    int code = 0;
    int st = nn_send_line(c, line);
    if (st == NNTP_OK)
        st = nn_read_status(c, &code);
    if (st != NNTP_OK)
        return st;
    return code == want ? NNTP_OK : nn_map_status(code, c->last, ctx);
}
