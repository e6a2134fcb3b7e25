/* RFC 5322 3.4 address lists, leniently: tokens, then mailboxes and groups, handed to the
 * caller one by one (imap/ writes them as ENVELOPE address lists, decode.c as SEARCH text). */
#include <stdlib.h>
#include <string.h>

#include "mime/mime_int.h"

typedef struct addr_tok {
    char kind;        /* 'a' atom, 'q' quoted, 'c' comment, 'd' domain literal, or special */
    bool space_before;
    const char *s;    /* raw text for atoms/literals; content for quoted/comment */
    size_t n;
} addr_tok;

typedef struct addr_out {
    mime_addr_fn fn;
    void *arg;
} addr_out;

/* Quoted/comment content with quoted-pairs undone, into a fresh buffer segment. */
static int tok_text(pu_buf *b, const addr_tok *t)
{
    if (t->kind != 'q' && t->kind != 'c')
        return pu_buf_add(b, t->s, t->n);
    for (size_t i = 0; i < t->n; i++) {
        if (t->s[i] == '\\' && i + 1 < t->n)
            i++;
        if (mi_putc(b, t->s[i]) < 0)
            return -1;
    }
    return 0;
}

static size_t tokenize_addrs(const char *s, addr_tok *t, size_t max)
{
    size_t n = 0, i = 0;
    bool sp = false;
    while (s[i] && n < max) {
        char ch = s[i];
        if (mi_is_wsp(ch)) {
            sp = true, i++;
            continue;
        }
        addr_tok k = {ch, sp, s + i, 1};
        if (ch == '"' || ch == '(' || ch == '[') {
            char close = ch == '"' ? '"' : ch == '(' ? ')' : ']';
            int depth = 1;
            size_t j = i + 1;
            while (s[j]) {
                if (s[j] == '\\' && s[j + 1])
                    j++;
                else if (ch == '(' && s[j] == '(')
                    depth++;
                else if (s[j] == close && --depth == 0)
                    break;
                j++;
            }
            k.kind = ch == '"' ? 'q' : ch == '(' ? 'c' : 'd';
            if (k.kind == 'd')
                k.s = s + i, k.n = j - i + (s[j] ? 1 : 0);
            else
                k.s = s + i + 1, k.n = j - i - 1;
            i = s[j] ? j + 1 : j;
        } else if (strchr("<>@,;:.", ch)) {
            i++;
        } else {
            size_t j = i;
            while (s[j] && !mi_is_wsp(s[j]) && !strchr("<>@,;:.\"()[", s[j]))
                j++;
            k.kind = 'a', k.n = j - i;
            i = j;
        }
        sp = k.kind == 'c';
        t[n++] = k;
    }
    return n;
}

/* Joins tokens [i,j) of kinds atom/quoted/'.' into b: phrase mode puts single spaces where
 * the source had whitespace; local-part/domain mode concatenates. Comments are skipped. */
static int join_toks(pu_buf *b, const addr_tok *t, size_t i, size_t j, bool phrase)
{
    bool first = true;
    for (; i < j; i++) {
        if (t[i].kind == 'c')
            continue;
        if (phrase && !first && t[i].space_before && mi_putc(b, ' ') < 0)
            return -1;
        if (tok_text(b, &t[i]) < 0)
            return -1;
        first = false;
    }
    return 0;
}

static bool stop_tok(char k, const char *stops) { return k != 'a' && k != 'q' && k != 'c' && k != 'd' && strchr(stops, k); }

/* One mailbox starting at *pi; emits it. Returns -1 on OOM. */
static int parse_mailbox(const addr_tok *t, size_t n, size_t *pi, addr_out *ao, bool in_group,
                         bool *group_start, size_t *name_end)
{
    size_t i = *pi, ps = i;
    while (i < n && !stop_tok(t[i].kind, "<:@,;>"))
        i++;
    pu_buf name = {0}, adl = {0}, mbox = {0}, host = {0};
    int rc = 0;
    bool angle = false;
    *group_start = false;
    if (i < n && t[i].kind == ':' && !in_group) {
        *group_start = true, *name_end = i, *pi = i + 1;
        return 0;
    }
    if (i < n && t[i].kind == '<') {
        angle = true; /* even "<>" is an address: the null reverse-path */
        rc |= join_toks(&name, t, ps, i, true);
        i++;
        size_t rs = i;
        /* obs-route: "@a,@b:" before the addr-spec */
        if (i < n && t[i].kind == '@') {
            size_t j = i;
            while (j < n && !stop_tok(t[j].kind, ":>"))
                j++;
            if (j < n && t[j].kind == ':') {
                rc |= join_toks(&adl, t, rs, j, false);
                i = j + 1;
            }
        }
        size_t ls = i;
        while (i < n && !stop_tok(t[i].kind, "@>"))
            i++;
        rc |= join_toks(&mbox, t, ls, i, false);
        if (i < n && t[i].kind == '@') {
            size_t ds = ++i;
            while (i < n && !stop_tok(t[i].kind, ">,;"))
                i++;
            rc |= join_toks(&host, t, ds, i, false);
        }
        while (i < n && !stop_tok(t[i].kind, ",;"))
            i++;
    } else {
        rc |= join_toks(&mbox, t, ps, i, false);
        if (i < n && t[i].kind == '@') {
            size_t ds = ++i;
            while (i < n && !stop_tok(t[i].kind, ",;<>:"))
                i++;
            rc |= join_toks(&host, t, ds, i, false);
            for (size_t k = ds; k < i; k++)
                if (t[k].kind == 'c' && k + 1 == i) /* "addr (Name)": the comment names it */
                    rc |= tok_text(&name, &t[k]);
        }
        while (i < n && !stop_tok(t[i].kind, ",;"))
            i++;
    }
    *pi = i;
    if (rc < 0 || (!angle && name.len == 0 && mbox.len == 0 && host.len == 0 && adl.len == 0)) {
        pu_buf_free(&name), pu_buf_free(&adl), pu_buf_free(&mbox), pu_buf_free(&host);
        return rc < 0 ? -1 : 0;
    }
    rc = ao->fn(ao->arg, MIME_ADDR_MAILBOX, name.len ? name.data : NULL, adl.len ? adl.data : NULL,
                mbox.len ? mbox.data : NULL, host.len ? host.data : NULL);
    pu_buf_free(&name), pu_buf_free(&adl), pu_buf_free(&mbox), pu_buf_free(&host);
    return rc;
}

int mime_addresses(const char *s, mime_addr_fn fn, void *arg)
{
    addr_out out = {fn, arg}, *ao = &out;
    size_t cap = strlen(s) + 1;
    addr_tok *t = malloc(cap * sizeof *t);
    if (!t)
        return -1;
    size_t n = tokenize_addrs(s, t, cap), i = 0;
    int rc = 0;
    bool in_group = false;
    while (i < n && rc == 0) {
        if (t[i].kind == ',' || (t[i].kind == ';' && !in_group) || t[i].kind == '>' || t[i].kind == 'c') {
            i++;
            continue;
        }
        if (t[i].kind == ';') {
            rc = ao->fn(ao->arg, MIME_ADDR_GROUP_END, NULL, NULL, NULL, NULL);
            in_group = false, i++;
            continue;
        }
        bool gs;
        size_t ne, before = i;
        rc = parse_mailbox(t, n, &i, ao, in_group, &gs, &ne);
        if (rc == 0 && gs) {
            pu_buf g = {0};
            rc = join_toks(&g, t, before, ne, true);
            if (rc == 0)
                rc = ao->fn(ao->arg, MIME_ADDR_GROUP_START, g.len ? g.data : "", NULL, NULL, NULL);
            pu_buf_free(&g);
            in_group = true;
        } else if (i == before) {
            i++; /* a stray ':' inside a group: skip it */
        }
    }
    if (rc == 0 && in_group)
        rc = ao->fn(ao->arg, MIME_ADDR_GROUP_END, NULL, NULL, NULL, NULL);
    free(t);
    return rc;
}
