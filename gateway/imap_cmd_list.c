/* LIST and LSUB (RFC 3501 6.3.8, 6.3.9; LIST-EXTENDED RFC 5258 with LIST-STATUS RFC 5819)
 * over the user's folders (mailbox/folders.c): INBOX,
 * the RFC 6154 special-use folders Sent, Drafts, Trash, Junk, Archive (always there, so clients
 * find them instead of creating their own) and the user's own, with "/" between levels. A level
 * that is not a folder itself but has folders below shows as \Noselect. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"

static const char *const special_attr[] = {
    [MB_USER] = "", [MB_INBOX] = "", [MB_SENT] = " \\Sent", [MB_DRAFTS] = " \\Drafts",
    [MB_TRASH] = " \\Trash", [MB_JUNK] = " \\Junk", [MB_ARCHIVE] = " \\Archive",
};

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

/* Parses LIST's arguments into q; false with the answer written (BAD, or the empty
 * pattern's delimiter). */
static bool parse_list(session *s, const pi_command *cmd, bool lsub, pi_list_req *q, unsigned *status)
{
    const char *err = NULL;
    int rc = pi_list_parse(cmd->args, cmd->nargs, lsub, q, &err);
    if (rc < 0) {
        gw_tagged(s, "BAD %s", err);
        return false;
    }
    if (rc == 1) {
        if (!lsub)
            gw_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
        gw_tagged(s, "OK %s completed", cmd->verb);
        return false;
    }
    *status = 0;
    return !q->status || (*status = gw_status_items(s, q->status)) != 0;
}

gw_result gw_cmd_list(session *s, const pi_command *cmd)
{
    pi_list_req *q = malloc(sizeof *q);
    unsigned status = 0;
    if (!q) {
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    if (!parse_list(s, cmd, strcmp(cmd->verb, "LSUB") == 0, q, &status)) {
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
                if (pi_list_matches(q, level))
                    rc |= list_line(&b, s, cmd->verb, "\\Noselect \\HasChildren", "", false, level, NULL);
            }
        }
        if ((!chosen && !via_child) || !pi_list_matches(q, f[i].name))
            continue;
        rc |= list_line(&b, s, cmd->verb, children ? "\\HasChildren" : "\\HasNoChildren",
                        special_attr[f[i].special], q->show_subscribed && f[i].subscribed, f[i].name,
                        via_child ? " (\"CHILDINFO\" (\"SUBSCRIBED\"))" : NULL);
        if (status && !rc)
            gw_status_untagged(s, &f[i], status);
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
