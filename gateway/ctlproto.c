/* gateway: the control socket's request and reply lines (gw.h, "ctlproto.c"). Pure text
 * handling, shared by the network process and `postern who`, unit-tested. The socket is
 * local and root's, but a parser still trusts no length it did not check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/gw.h"

/* A token: printable ASCII without spaces. */
static bool token_ok(const char *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return false;
    return true;
}

int gw_ctl_parse_request(const char *line, size_t len, gw_ctl_req *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len >= GW_CTL_LINE_MAX) {
        *why = "request too long";
        return -1;
    }
    const char *sp = memchr(line, ' ', len);
    size_t vlen = sp ? (size_t)(sp - line) : len;
    const char *arg = sp ? sp + 1 : NULL;
    size_t alen = sp ? len - vlen - 1 : 0;
    if (vlen == 3 && strncasecmp(line, "WHO", 3) == 0) {
        if (arg) {
            *why = "WHO takes no argument";
            return -1;
        }
        out->verb = GW_CTL_WHO;
        return 0;
    }
    if (vlen == 4 && strncasecmp(line, "KICK", 4) == 0) {
        if (!arg || !token_ok(arg, alen)) {
            *why = "KICK takes one address or #id";
            return -1;
        }
        if (arg[0] == '#') {
            if (pu_parse_u64(arg + 1, alen - 1, &out->id) != 0 || out->id == 0) {
                *why = "KICK #id takes a session id (a number from WHO)";
                return -1;
            }
            out->verb = GW_CTL_KICK_ID;
            return 0;
        }
        if (alen > PC_ADDRESS_MAX) {
            *why = "address too long";
            return -1;
        }
        memcpy(out->user, arg, alen);
        out->user[alen] = '\0';
        out->verb = GW_CTL_KICK_USER;
        return 0;
    }
    *why = "unknown request (WHO, KICK address, KICK #id)";
    return -1;
}

int gw_ctl_format_row(const gw_ctl_row *r, char *out, size_t cap)
{
    const char *fields[] = {r->proto, r->transport, r->state, r->client, r->user};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!token_ok(fields[i], strlen(fields[i])))
            return -1;
    int n = snprintf(out, cap, "S %llu %s %s %s %lld %llu %s %s", (unsigned long long)r->id, r->proto, r->transport,
                     r->state, r->since, r->idle, r->client, r->user);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* The next space-separated field of *p into out (cap bytes with its NUL): 0, or -1. */
static int field(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t len = strcspn(s, " ");
    if (!token_ok(s, len) || len >= cap)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    *p = s[len] ? s + len + 1 : s + len;
    return 0;
}

int gw_ctl_parse_row(const char *line, gw_ctl_row *out)
{
    memset(out, 0, sizeof *out);
    size_t len = strnlen(line, GW_CTL_REPLY_MAX);
    if (len >= GW_CTL_REPLY_MAX || strncmp(line, "S ", 2) != 0 || line[len - 1] == ' ')
        return -1;
    const char *p = line + 2;
    char num[3][24];
    uint64_t since, idle;
    if (field(&p, num[0], sizeof num[0]) != 0 || pu_parse_u64(num[0], strlen(num[0]), &out->id) != 0 ||
        field(&p, out->proto, sizeof out->proto) != 0 || field(&p, out->transport, sizeof out->transport) != 0 ||
        field(&p, out->state, sizeof out->state) != 0 || field(&p, num[1], sizeof num[1]) != 0 ||
        pu_parse_u64(num[1], strlen(num[1]), &since) != 0 || since > (uint64_t)1 << 62 ||
        field(&p, num[2], sizeof num[2]) != 0 ||
        pu_parse_u64(num[2], strlen(num[2]), &idle) != 0 ||
        field(&p, out->client, sizeof out->client) != 0 || field(&p, out->user, sizeof out->user) != 0 || *p)
        return -1;
    out->since = (long long)since;
    out->idle = idle;
    return 0;
}
