/* LIST and LSUB (RFC 3501 6.3.8, 6.3.9) over the user's folders (mailbox/folders.c): INBOX,
 * the RFC 6154 special-use folders Sent, Drafts, Trash, Junk, Archive (always there, so clients
 * find them instead of creating their own) and the user's own, with "/" between levels. A level
 * that is not a folder itself but has folders below shows as \Noselect. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"

#define PATTERN_MAX 1024

static const char *const special_attr[] = {
    [MB_USER] = "", [MB_INBOX] = "", [MB_SENT] = " \\Sent", [MB_DRAFTS] = " \\Drafts",
    [MB_TRASH] = " \\Trash", [MB_JUNK] = " \\Junk", [MB_ARCHIVE] = " \\Archive",
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

static int list_line(pu_buf *b, session *s, const char *verb, const char *attrs, const char *special,
                     const char *name)
{
    pu_buf_clear(b);
    int rc = pu_buf_printf(b, "* %s (%s%s) \"/\" ", verb, attrs, special);
    rc |= pi_write_astring(b, name, strlen(name), 0);
    rc |= pu_buf_addstr(b, "\r\n");
    if (!rc)
        gw_write(s, b->data, b->len);
    return rc;
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
    mb_folder *f;
    size_t n;
    mb_folder_rc frc = mb_folders(s->account, &f, &n);
    if (frc != MB_FOLDER_OK) {
        gw_folder_answer(s, cmd->verb, frc);
        return GW_DONE;
    }
    pu_buf b = PU_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (lsub && !f[i].subscribed)
            continue;
        size_t len = strlen(f[i].name);
        bool children = false;
        for (size_t j = 0; j < n && !children; j++)
            children = strncmp(f[j].name, f[i].name, len) == 0 && f[j].name[len] == '/';
        /* levels above it that are no folder: once each, before the first folder below */
        for (size_t k = 1; k < len && !rc; k++) {
            if (f[i].name[k] != '/')
                continue;
            bool exists = false, earlier = false;
            for (size_t j = 0; j < n; j++) {
                bool under = strncmp(f[j].name, f[i].name, k) == 0;
                exists |= under && f[j].name[k] == '\0';
                earlier |= under && j < i && f[j].name[k] == '/';
            }
            if (exists || earlier)
                continue;
            char level[MB_FOLDER_NAME_MAX + 1];
            memcpy(level, f[i].name, k);
            level[k] = '\0';
            if (gw_list_match(full, level))
                rc |= list_line(&b, s, cmd->verb, "\\Noselect \\HasChildren", "", level);
        }
        if (gw_list_match(full, f[i].name))
            rc |= list_line(&b, s, cmd->verb, children ? "\\HasChildren" : "\\HasNoChildren",
                            special_attr[f[i].special], f[i].name);
    }
    free(f);
    pu_buf_free(&b);
    if (rc)
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
    else
        gw_tagged(s, "OK %s completed", cmd->verb);
    return GW_DONE;
}
