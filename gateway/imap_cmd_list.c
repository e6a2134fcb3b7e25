/* LIST and LSUB (RFC 3501 6.3.8, 6.3.9) over the fixed folder set: INBOX (the user's mail
 * group) and Sent, Drafts, Trash with their RFC 6154 special-use attributes, so clients find
 * them instead of creating their own. None has children; all count as subscribed. */
#include <string.h>
#include <strings.h>

#include "gateway/imap_session.h"

#define PATTERN_MAX 1024

static const struct {
    const char *name;
    const char *attrs;
} folders[] = {
    {"INBOX", "\\HasNoChildren"},
    {"Sent", "\\HasNoChildren \\Sent"},
    {"Drafts", "\\HasNoChildren \\Drafts"},
    {"Trash", "\\HasNoChildren \\Trash"},
};

static bool eq(char a, char b, bool ci)
{
    if (ci && a >= 'a' && a <= 'z')
        a = (char)(a - 32);
    if (ci && b >= 'a' && b <= 'z')
        b = (char)(b - 32);
    return a == b;
}

/* p has no runs of wildcards (see gw_list_match), so the backtracking stays small: every
 * wildcard is followed by a literal character that must consume a name character. */
static bool match(const char *p, const char *n, bool ci)
{
    while (*p) {
        if (*p == '*' || *p == '%') {
            char w = *p++;
            if (!*p)
                return w == '*' || !strchr(n, '/');
            for (const char *t = n;; t++) {
                if (match(p, t, ci))
                    return true;
                if (!*t || (w == '%' && *t == '/'))
                    return false;
            }
        }
        if (!*n || !eq(*p, *n, ci))
            return false;
        p++;
        n++;
    }
    return !*n;
}

bool gw_list_match(const char *pattern, const char *name)
{
    char p[PATTERN_MAX + 1];
    size_t k = 0;
    /* collapse each run of wildcards into one: '*' if the run has one, else '%' */
    for (const char *s = pattern; *s && k < PATTERN_MAX; s++) {
        bool wild = *s == '*' || *s == '%';
        if (wild && k && (p[k - 1] == '*' || p[k - 1] == '%')) {
            if (*s == '*')
                p[k - 1] = '*';
            continue;
        }
        p[k++] = *s;
    }
    p[k] = '\0';
    return match(p, name, strcmp(name, "INBOX") == 0);
}

gw_result gw_cmd_list(session *s, const pi_command *cmd)
{
    bool lsub = strcmp(cmd->verb, "LSUB") == 0;
    const char *ref, *pat;
    size_t ref_len, pat_len;
    if (cmd->args[0].type == PI_LIST) {
        gw_tagged(s, "BAD LIST selection options (LIST-EXTENDED) are not supported");
        return GW_DONE;
    }
    if (!pi_arg_astring(&cmd->args[0], &ref, &ref_len) || !pi_arg_astring(&cmd->args[1], &pat, &pat_len) ||
        strlen(ref) != ref_len || strlen(pat) != pat_len) {
        gw_tagged(s, "BAD %s takes a reference and a mailbox pattern", cmd->verb);
        return GW_DONE;
    }
    if (ref_len + pat_len > PATTERN_MAX) {
        gw_tagged(s, "BAD Mailbox pattern too long");
        return GW_DONE;
    }
    if (pat_len == 0) {
        /* RFC 3501 6.3.8: an empty pattern asks for the hierarchy delimiter */
        if (!lsub)
            gw_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
        gw_tagged(s, "OK %s completed", cmd->verb);
        return GW_DONE;
    }
    char full[PATTERN_MAX + 1];
    memcpy(full, ref, ref_len);
    memcpy(full + ref_len, pat, pat_len);
    full[ref_len + pat_len] = '\0';
    pu_buf b = PU_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        if (!gw_list_match(full, folders[i].name))
            continue;
        pu_buf_clear(&b);
        rc |= pu_buf_printf(&b, "* %s (%s) \"/\" ", cmd->verb, folders[i].attrs);
        rc |= pi_write_astring(&b, folders[i].name, strlen(folders[i].name), 0);
        rc |= pu_buf_addstr(&b, "\r\n");
        if (rc)
            break;
        gw_write(s, b.data, b.len);
    }
    pu_buf_free(&b);
    if (rc)
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
    else
        gw_tagged(s, "OK %s completed", cmd->verb);
    return GW_DONE;
}
