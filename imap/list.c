/* LIST and LSUB syntax (RFC 3501 6.3.8-9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
 * SPECIAL-USE RFC 6154) and mailbox pattern matching: what the gateway's LIST command needs
 * of its arguments, with no session, so it can be fuzzed on its own. */
#include <string.h>

#include "imap/imap.h"

static bool eq(char a, char b, bool ci)
{
    if (ci && a >= 'a' && a <= 'z')
        a = (char)(a - 32);
    if (ci && b >= 'a' && b <= 'z')
        b = (char)(b - 32);
    return a == b;
}

/* One row of booleans per pattern character over the name: time |pattern| x |name|, space
 * 2 x |name|. Backtracking over the wildcards was exponential in their number (a pattern
 * like "*a*a*a...b" against a long name of a's held the network process, and every user's
 * session with it, for as long as it ran). */
bool pi_list_match(const char *pattern, const char *name)
{
    size_t n = strlen(name), plen = strlen(pattern);
    if (n > PI_LIST_NAME_MAX || plen > PI_LIST_PATTERN_MAX)
        return false;
    bool ci = strcmp(name, "INBOX") == 0; /* INBOX in any case; other names as they are */
    bool rows[2][PI_LIST_NAME_MAX + 1];
    bool *prev = rows[0], *cur = rows[1];
    prev[0] = true;
    for (size_t j = 1; j <= n; j++)
        prev[j] = false;
    for (size_t i = 0; i < plen; i++) {
        char c = pattern[i];
        if (c == '*') {
            cur[0] = prev[0];
            for (size_t j = 1; j <= n; j++)
                cur[j] = prev[j] || cur[j - 1];
        } else if (c == '%') { /* anything but the hierarchy delimiter */
            cur[0] = prev[0];
            for (size_t j = 1; j <= n; j++)
                cur[j] = prev[j] || (cur[j - 1] && name[j - 1] != '/');
        } else {
            cur[0] = false;
            for (size_t j = 1; j <= n; j++)
                cur[j] = prev[j - 1] && eq(c, name[j - 1], ci);
        }
        bool *t = prev;
        prev = cur;
        cur = t;
    }
    return prev[n];
}

static const char *astring(const pi_arg *a, size_t *len)
{
    const char *s;
    if (!pi_arg_astring(a, &s, len) || strlen(s) != *len)
        return NULL;
    return s;
}

int pi_list_parse(const pi_arg *args, size_t nargs, bool lsub, pi_list_req *q, const char **err)
{
    memset(q, 0, sizeof *q);
    q->lsub = lsub;
    size_t i = 0;
    if (nargs && args[0].type == PI_LIST) {
        if (lsub) {
            *err = "LSUB takes no selection options";
            return -1;
        }
        for (size_t k = 0; k < args[0].count; k++) {
            const pi_arg *o = &args[0].list[k];
            if (pi_arg_atom_is(o, "SUBSCRIBED"))
                q->sel_subscribed = true;
            else if (pi_arg_atom_is(o, "SPECIAL-USE"))
                q->sel_special = true;
            else if (pi_arg_atom_is(o, "RECURSIVEMATCH"))
                q->recursive = true;
            else if (!pi_arg_atom_is(o, "REMOTE")) { /* no remote mailboxes here */
                *err = "Unknown LIST selection option";
                return -1;
            }
        }
        if (q->recursive && !q->sel_subscribed && !q->sel_special) {
            *err = "RECURSIVEMATCH needs another selection option"; /* RFC 5258 3 */
            return -1;
        }
        i = 1;
    }
    size_t ref_len;
    const char *ref = i + 2 <= nargs ? astring(&args[i], &ref_len) : NULL;
    if (!ref) {
        *err = lsub ? "LSUB takes a reference and a mailbox pattern" : "LIST takes a reference and a mailbox pattern";
        return -1;
    }
    const pi_arg *pat = &args[i + 1];
    bool many = pat->type == PI_LIST && !lsub;
    const pi_arg *pats = many ? pat->list : pat;
    size_t npats = many ? pat->count : 1;
    if (npats == 0 || npats > PI_LIST_PATTERNS_MAX) {
        *err = "Between 1 and 8 mailbox patterns";
        return -1;
    }
    for (size_t k = 0; k < npats; k++) {
        size_t len;
        const char *p = astring(&pats[k], &len);
        if (!p) {
            *err = lsub ? "LSUB takes a reference and a mailbox pattern" : "LIST takes a reference and a mailbox pattern";
            return -1;
        }
        if (ref_len + len > PI_LIST_PATTERN_MAX) {
            *err = "Mailbox pattern too long";
            return -1;
        }
        if (len == 0 && npats == 1 && !q->sel_subscribed && !q->sel_special)
            return 1; /* RFC 3501 6.3.8: an empty pattern asks for the hierarchy delimiter */
        memcpy(q->patterns[q->npat], ref, ref_len);
        memcpy(q->patterns[q->npat] + ref_len, p, len);
        q->patterns[q->npat][ref_len + len] = '\0';
        q->npat++;
    }
    i += 2;
    if (i < nargs) {
        if (i + 2 != nargs || !pi_arg_atom_is(&args[i], "RETURN") || args[i + 1].type != PI_LIST) {
            *err = "Expected RETURN (options) after the mailbox pattern";
            return -1;
        }
        const pi_arg *opts = &args[i + 1];
        for (size_t k = 0; k < opts->count; k++) {
            const pi_arg *o = &opts->list[k];
            if (pi_arg_atom_is(o, "SUBSCRIBED")) {
                q->show_subscribed = true;
            } else if (pi_arg_atom_is(o, "STATUS") && k + 1 < opts->count && opts->list[k + 1].type == PI_LIST) {
                q->status = &opts->list[++k];
            } else if (!pi_arg_atom_is(o, "CHILDREN") && !pi_arg_atom_is(o, "SPECIAL-USE")) {
                /* children and special-use attributes are always returned */
                *err = "Unknown LIST return option";
                return -1;
            }
        }
    }
    q->show_subscribed |= q->sel_subscribed;
    return 0;
}

bool pi_list_matches(const pi_list_req *q, const char *name)
{
    for (size_t i = 0; i < q->npat; i++)
        if (pi_list_match(q->patterns[i], name))
            return true;
    return false;
}
