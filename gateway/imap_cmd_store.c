/* STORE and UID STORE (RFC 3501 6.4.6): system flags and keywords, kept in the user's
 * encrypted state and shared with every other session of the user at once; with RFC 7162's
 * UNCHANGEDSINCE, a message changed after the client's MODSEQ is left alone and named in
 * [MODIFIED]. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/mailbox.h"

static const struct {
    const char *name;
    unsigned bit;
} system_flags[] = {
    {"\\Seen", US_SEEN}, {"\\Answered", US_ANSWERED}, {"\\Flagged", US_FLAGGED},
    {"\\Deleted", US_DELETED}, {"\\Draft", US_DRAFT},
};

/* Flags from the argument (a list or a single atom): 0, or -1 with *err. */
static int parse_flags(session *s, const pi_arg *a, unsigned *flags, uint8_t kw[US_KEYWORD_SET_BYTES],
                       const char **err)
{
    const pi_arg *list = a->type == PI_LIST ? a->list : a;
    size_t count = a->type == PI_LIST ? a->count : 1;
    for (size_t i = 0; i < count; i++) {
        const pi_arg *f = &list[i];
        if (f->type != PI_ATOM) {
            *err = "Flags are atoms";
            return -1;
        }
        if (f->str[0] == '\\') {
            size_t k = 0;
            while (k < 5 && strcasecmp(f->str, system_flags[k].name) != 0)
                k++;
            if (k < 5)
                *flags |= system_flags[k].bit;
            else if (strcasecmp(f->str, "\\Recent") != 0) { /* \Recent cannot be stored: ignored */
                *err = "Unknown system flag";
                return -1;
            }
            continue;
        }
        unsigned index;
        int rc = userstate_keyword(mb_account_state(s->account), f->str, &index);
        if (rc == US_ELIMIT) {
            *err = "[LIMIT] Too many keywords";
            return -1;
        }
        if (rc != US_OK) {
            *err = "Invalid keyword";
            return -1;
        }
        us_kw_put(kw, index, 1);
    }
    return 0;
}

void gw_account_warn_unsaved(session *s)
{
    if (s->account && mb_account_save_failed(s->account))
        gw_untagged(s, "NO [UNAVAILABLE] Your flag changes cannot be written to disk now; they are kept and "
                       "written when the server can");
}

gw_result gw_cmd_store(session *s, const pi_command *cmd)
{
    const char *item;
    size_t item_len;
    bool conditional = false;
    uint64_t unchangedsince = 0;
    const pi_arg *args = cmd->args; /* args[1] is the item, args[2] the flags */
    if (cmd->nargs == 4) {          /* store modifiers (RFC 4466): (UNCHANGEDSINCE n) */
        const pi_arg *m = &cmd->args[1];
        if (m->type != PI_LIST || m->count != 2 || !pi_arg_atom_is(&m->list[0], "UNCHANGEDSINCE") ||
            !pi_arg_modseq(&m->list[1], true, &unchangedsince)) {
            gw_tagged(s, "BAD Unknown or invalid STORE modifier");
            return GW_DONE;
        }
        conditional = true;
        args++;
    }
    if (!pi_arg_astring(&args[1], &item, &item_len) || args[1].type != PI_ATOM) {
        gw_tagged(s, "BAD STORE takes a set, an item and flags");
        return GW_DONE;
    }
    enum userstate_op op = US_REPLACE;
    const char *p = item;
    if (*p == '+' || *p == '-') {
        op = *p == '+' ? US_ADD : US_REMOVE;
        p++;
    }
    bool silent;
    if (strcasecmp(p, "FLAGS") == 0)
        silent = false;
    else if (strcasecmp(p, "FLAGS.SILENT") == 0)
        silent = true;
    else {
        gw_tagged(s, "BAD Unknown STORE item");
        return GW_DONE;
    }
    size_t *idx = NULL, n = 0;
    const char *err = NULL;
    if (gw_view_resolve(s, &cmd->args[0], cmd->uid, &idx, &n, &err) != 0) {
        gw_tagged(s, "BAD %s", err);
        return GW_DONE;
    }
    if (s->imap->view->mv.readonly) {
        free(idx);
        gw_tagged(s, "NO [READ-ONLY] The mailbox is read-only");
        return GW_DONE;
    }
    unsigned flags = 0;
    uint8_t kw[US_KEYWORD_SET_BYTES] = {0};
    if (parse_flags(s, &args[2], &flags, kw, &err) != 0) {
        free(idx);
        gw_tagged(s, "%s %s", err[0] == '[' ? "NO" : "BAD", err);
        return GW_DONE;
    }
    /* others' changes first: then own ones are not echoed twice; a new keyword is announced
     * there (FLAGS) before the FETCH responses below show it */
    if (conditional)
        gw_condstore_enable(s); /* RFC 7162 3.1 */
    gw_view_sync(s, false);
    mb_account *a = s->account;
    bool changed = false;
    pu_buf b = PU_BUF_INIT;
    const mb_view *v = &s->imap->view->mv;
    uint32_t *modified = NULL; /* UNCHANGEDSINCE failed: sequence numbers, or UIDs for UID STORE */
    size_t nmodified = 0;
    if (conditional && n && !(modified = malloc(n * sizeof *modified))) {
        free(idx);
        gw_tagged(s, "NO [SERVERBUG] Out of memory");
        return GW_DONE;
    }
    for (size_t k = 0; k < n; k++) {
        if (!gw_view_msgid(s, idx[k]))
            continue;
        uint64_t msg_before = s->imap->condstore ? gw_view_modseq(s, idx[k]) : 0;
        if (conditional && msg_before > unchangedsince) {
            modified[nmodified++] = cmd->uid ? gw_view_uid(s->imap->view, idx[k]) : (uint32_t)(idx[k] + 1);
            continue;
        }
        uint64_t before = mb_view_modseq(v, a);
        if (mb_view_store(v, a, idx[k], op, flags, kw) != US_OK)
            continue;
        changed |= mb_view_modseq(v, a) != before;
        /* RFC 7162 3.2: with CONDSTORE a .SILENT STORE still tells the new MODSEQ */
        bool moved = s->imap->condstore && gw_view_modseq(s, idx[k]) != msg_before;
        if (silent && !moved)
            continue;
        userstate_msg st;
        gw_view_state(s, idx[k], &st);
        pu_buf_printf(&b, "* %zu FETCH (", idx[k] + 1);
        if (cmd->uid || s->imap->condstore)
            pu_buf_printf(&b, "UID %u ", gw_view_uid(s->imap->view, idx[k]));
        if (silent) {
            pu_buf_printf(&b, "MODSEQ (%llu)", (unsigned long long)gw_view_modseq(s, idx[k]));
        } else {
            pu_buf_addstr(&b, "FLAGS ");
            gw_write_flags(&b, s, &st, gw_view_recent(s, idx[k]));
            gw_write_modseq(&b, s, idx[k]);
        }
        pu_buf_addstr(&b, ")\r\n");
        gw_write_above(s, &b, 64u << 10);
    }
    gw_write_above(s, &b, 0);
    pu_buf_free(&b);
    free(idx);
    s->imap->view->mv.modseq_seen = mb_view_modseq(v, a);
    if (changed)
        mb_account_changed(a);
    gw_account_warn_unsaved(s);
    if (nmodified) {
        pu_buf set = PU_BUF_INIT;
        pi_seqset_write(&set, modified, nmodified); /* ascending: idx is */
        gw_tagged(s, "OK [MODIFIED %s] Conditional STORE failed", set.data ? set.data : "");
        pu_buf_free(&set);
    } else {
        gw_tagged(s, "OK STORE completed");
    }
    free(modified);
    return GW_DONE;
}
