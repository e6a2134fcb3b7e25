/* LIST and LSUB (RFC 3501 6.3.8, 6.3.9; LIST-EXTENDED RFC 5258 with LIST-STATUS RFC 5819)
 * over the user's folders (mailbox/folders.c): INBOX,
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

#define PATTERNS_MAX 16

/* What a LIST asks for (RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE). */
typedef struct list_req {
    bool lsub;
    bool sel_subscribed, sel_special, recursive; /* selection options */
    bool show_subscribed;                        /* \Subscribed in the attributes */
    unsigned status;                             /* RETURN (STATUS (...)) items; 0: none */
    char patterns[PATTERNS_MAX][PATTERN_MAX + 1]; /* reference + pattern, each */
    size_t npat;
} list_req;

static int list_line(pu_buf *b, session *s, const char *verb, const char *attrs, const char *special,
                     bool subscribed, const char *name, const char *extra)
{
    pu_buf_clear(b);
    int rc = pu_buf_printf(b, "* %s (%s%s%s) \"/\" ", verb, attrs, special, subscribed ? " \\Subscribed" : "");
    rc |= pi_write_astring(b, name, strlen(name), 0);
    if (extra)
        rc |= pu_buf_addstr(b, extra);
    rc |= pu_buf_addstr(b, "\r\n");
    if (!rc)
        gw_write(s, b->data, b->len);
    return rc;
}

static bool matches(const list_req *q, const char *name)
{
    for (size_t i = 0; i < q->npat; i++)
        if (gw_list_match(q->patterns[i], name))
            return true;
    return false;
}

/* Parses LIST's arguments into q; false with BAD (or the empty-pattern answer) written. */
static bool parse_list(session *s, const pi_command *cmd, list_req *q)
{
    size_t i = 0;
    if (cmd->args[0].type == PI_LIST) {
        if (q->lsub) {
            gw_tagged(s, "BAD LSUB takes no selection options");
            return false;
        }
        const pi_arg *opts = &cmd->args[0];
        for (size_t k = 0; k < opts->count; k++) {
            if (pi_arg_atom_is(&opts->list[k], "SUBSCRIBED"))
                q->sel_subscribed = true;
            else if (pi_arg_atom_is(&opts->list[k], "SPECIAL-USE"))
                q->sel_special = true;
            else if (pi_arg_atom_is(&opts->list[k], "RECURSIVEMATCH"))
                q->recursive = true;
            else if (!pi_arg_atom_is(&opts->list[k], "REMOTE")) { /* no remote mailboxes here */
                gw_tagged(s, "BAD Unknown LIST selection option");
                return false;
            }
        }
        if (q->recursive && !q->sel_subscribed && !q->sel_special) {
            gw_tagged(s, "BAD RECURSIVEMATCH needs another selection option"); /* RFC 5258 3 */
            return false;
        }
        i = 1;
    }
    const char *ref;
    size_t ref_len;
    if (i + 2 > cmd->nargs || !pi_arg_astring(&cmd->args[i], &ref, &ref_len) || strlen(ref) != ref_len) {
        gw_tagged(s, "BAD %s takes a reference and a mailbox pattern", cmd->verb);
        return false;
    }
    const pi_arg *pat = &cmd->args[i + 1];
    const pi_arg *pats = pat->type == PI_LIST && !q->lsub ? pat->list : pat;
    size_t npats = pat->type == PI_LIST && !q->lsub ? pat->count : 1;
    if (npats == 0 || npats > PATTERNS_MAX) {
        gw_tagged(s, "BAD Between 1 and %d mailbox patterns", PATTERNS_MAX);
        return false;
    }
    for (size_t k = 0; k < npats; k++) {
        const char *p;
        size_t len;
        if (!pi_arg_astring(&pats[k], &p, &len) || strlen(p) != len) {
            gw_tagged(s, "BAD %s takes a reference and a mailbox pattern", cmd->verb);
            return false;
        }
        if (ref_len + len > PATTERN_MAX) {
            gw_tagged(s, "BAD Mailbox pattern too long");
            return false;
        }
        if (len == 0 && npats == 1 && !q->sel_subscribed && !q->sel_special) {
            /* RFC 3501 6.3.8: an empty pattern asks for the hierarchy delimiter */
            if (!q->lsub)
                gw_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
            gw_tagged(s, "OK %s completed", cmd->verb);
            return false;
        }
        memcpy(q->patterns[q->npat], ref, ref_len);
        memcpy(q->patterns[q->npat] + ref_len, p, len);
        q->patterns[q->npat][ref_len + len] = '\0';
        q->npat++;
    }
    i += 2;
    if (i < cmd->nargs) {
        if (i + 2 != cmd->nargs || !pi_arg_atom_is(&cmd->args[i], "RETURN") || cmd->args[i + 1].type != PI_LIST) {
            gw_tagged(s, "BAD Expected RETURN (options) after the mailbox pattern");
            return false;
        }
        const pi_arg *opts = &cmd->args[i + 1];
        for (size_t k = 0; k < opts->count; k++) {
            const pi_arg *o = &opts->list[k];
            if (pi_arg_atom_is(o, "SUBSCRIBED")) {
                q->show_subscribed = true;
            } else if (pi_arg_atom_is(o, "STATUS") && k + 1 < opts->count) {
                if (!(q->status = gw_status_items(s, &opts->list[++k])))
                    return false;
            } else if (!pi_arg_atom_is(o, "CHILDREN") && !pi_arg_atom_is(o, "SPECIAL-USE")) {
                /* children and special-use attributes are always returned */
                gw_tagged(s, "BAD Unknown LIST return option");
                return false;
            }
        }
    }
    q->show_subscribed |= q->sel_subscribed;
    return true;
}

gw_result gw_cmd_list(session *s, const pi_command *cmd)
{
    list_req *q = calloc(1, sizeof *q);
    if (!q) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    q->lsub = strcmp(cmd->verb, "LSUB") == 0;
    if (!parse_list(s, cmd, q)) {
        free(q);
        return GW_DONE;
    }
    mb_folder *f;
    size_t n;
    mb_folder_rc frc = mb_folders(s->account, &f, &n);
    if (frc != MB_FOLDER_OK) {
        free(q);
        gw_folder_answer(s, cmd->verb, frc);
        return GW_DONE;
    }
    bool filtered = q->lsub || q->sel_subscribed || q->sel_special;
    pu_buf b = PU_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = strlen(f[i].name);
        bool children = false, subscribed_below = false;
        for (size_t j = 0; j < n; j++)
            if (strncmp(f[j].name, f[i].name, len) == 0 && f[j].name[len] == '/') {
                children = true;
                subscribed_below |= f[j].subscribed;
            }
        bool chosen = !filtered || ((!(q->lsub || q->sel_subscribed) || f[i].subscribed) &&
                                    (!q->sel_special || (f[i].special != MB_USER && f[i].special != MB_INBOX)));
        /* RECURSIVEMATCH: a folder left out whose subfolders are chosen is named, with why */
        bool via_child = !chosen && q->recursive && q->sel_subscribed && !q->sel_special && subscribed_below;
        if (!filtered) {
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
                if (matches(q, level))
                    rc |= list_line(&b, s, cmd->verb, "\\Noselect \\HasChildren", "", false, level, NULL);
            }
        }
        if ((!chosen && !via_child) || !matches(q, f[i].name))
            continue;
        rc |= list_line(&b, s, cmd->verb, children ? "\\HasChildren" : "\\HasNoChildren",
                        special_attr[f[i].special], q->show_subscribed && f[i].subscribed, f[i].name,
                        via_child ? " (\"CHILDINFO\" (\"SUBSCRIBED\"))" : NULL);
        if (q->status && !rc)
            gw_status_untagged(s, &f[i], q->status);
    }
    free(f);
    free(q);
    pu_buf_free(&b);
    if (rc)
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
    else
        gw_tagged(s, "OK %s completed", cmd->verb);
    return GW_DONE;
}
