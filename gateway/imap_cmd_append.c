/* APPEND and MULTIAPPEND (RFC 3501 6.3.11, RFC 3502) with UIDPLUS's APPENDUID (RFC 4315):
 * the message is stored as the user's own mail article and filed in the folder
 * (mailbox/append.c); the answer waits until enough news servers show it. */
#include <stdlib.h>
#include <string.h>

#include "gateway/mailbox.h"

typedef struct gw_append {
    session *s;
    mb_append_waiter w;
} gw_append;

/* "7", "7:9" or "7,9:10" (RFC 4315 uid-set; the UIDs of one command ascend) */
static void write_uid_set(pu_buf *b, const uint32_t *uids, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k + 1 < n && uids[k + 1] == uids[k] + 1)
            k++;
        if (k > i)
            pu_buf_printf(b, "%s%u:%u", i ? "," : "", uids[i], uids[k]);
        else
            pu_buf_printf(b, "%s%u", i ? "," : "", uids[i]);
        i = k + 1;
    }
}

static void appended(void *arg, mb_append_rc rc, uint32_t uidvalidity, const uint32_t *uids, size_t n,
                     const char *why)
{
    gw_append *q = arg;
    session *s = q->s;
    if (rc == MB_APPEND_OK) {
        if (s->imap->view)
            gw_view_sync(s, true); /* appended to the mailbox selected: its EXISTS first */
        pu_buf set = PU_BUF_INIT;
        write_uid_set(&set, uids, n);
        if (set.data)
            gw_tagged(s, "OK [APPENDUID %u %s] APPEND completed", uidvalidity, set.data);
        else
            gw_tagged(s, "OK APPEND completed");
        pu_buf_free(&set);
    } else {
        gw_tagged(s, "NO %s", why ? why : "[UNAVAILABLE] The message could not be stored; try again later");
    }
    gw_session_done(s);
    free(q);
}

/* The connection closes while the message is being stored: it is filed all the same. */
static void append_cancel(void *ctx)
{
    gw_append *q = ctx;
    mb_append_cancel(&q->w);
    free(q);
}

gw_result gw_cmd_append(session *s, const pi_command *cmd)
{
    const char *name;
    size_t name_len;
    if (!pi_arg_astring(&cmd->args[0], &name, &name_len) || strlen(name) != name_len) {
        gw_tagged(s, "BAD APPEND takes a mailbox name");
        return GW_DONE;
    }
    size_t max = cmd->nargs - 1, n = 0;
    pi_append_msg *m = calloc(max ? max : 1, sizeof *m);
    mb_append_msg *am = calloc(max ? max : 1, sizeof *am);
    gw_append *q = calloc(1, sizeof *q);
    if (!m || !am || !q) {
        free(m), free(am), free(q);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    const char *err = "Invalid arguments";
    int prc = pi_append_parse(cmd->args + 1, cmd->nargs - 1, m, max, &n, &err);
    /* syntax before the mailbox (RFC 3501 6.3.11: TRYCREATE only for a message that could be stored) */
    if (prc != 0) {
        gw_tagged(s, "BAD %s", err);
        goto done;
    }
    mb_folder f;
    mb_folder_rc frc = mb_folder_find(s->account, name, &f);
    if (frc == MB_FOLDER_NONEXISTENT || frc == MB_FOLDER_BADNAME) {
        gw_tagged(s, "NO [TRYCREATE] No such mailbox");
        goto done;
    }
    if (frc != MB_FOLDER_OK) {
        gw_folder_answer(s, cmd->verb, frc);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].len == 0) {
            gw_tagged(s, "NO Empty messages are not stored");
            goto done;
        }
        /* imap's flag bits are userstate's (imap.h) */
        am[i] = (mb_append_msg){.data = m[i].data,
                                .len = m[i].len,
                                .flags = m[i].flags,
                                .keywords = m[i].keywords,
                                .nkeywords = m[i].nkeywords,
                                .has_date = m[i].has_date,
                                .date = m[i].date,
                                .tz_minutes = m[i].tz_minutes};
    }
    q->s = s;
    switch (mb_append(s->account, f.id, am, n, &q->w, appended, q)) {
    case MB_APPEND_OK:
        gw_session_pending(s, NULL, append_cancel, q);
        q = NULL;
        free(m), free(am);
        return GW_PENDING;
    case MB_APPEND_TOOBIG:
        gw_tagged(s, "NO [TOOBIG] The message is larger than this server stores");
        break;
    case MB_APPEND_NONEXISTENT:
        gw_tagged(s, "NO [TRYCREATE] No such mailbox");
        break;
    case MB_APPEND_NOMEM:
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        break;
    case MB_APPEND_UNAVAILABLE:
        gw_tagged(s, "NO [UNAVAILABLE] Messages cannot be stored right now; try again later");
        break;
    }
done:
    free(m), free(am), free(q);
    return GW_DONE;
}
