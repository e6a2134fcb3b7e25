/* THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES over messages already reduced to
 * their keys (pi_sort_msg). Containers live in one array and link by index; every walk is a
 * loop, never recursion, because anyone who can mail the user can make a reply chain as long
 * as the mailbox. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

#define NONE SIZE_MAX

typedef struct cont {
    pi_sort_msg *m; /* NULL: a dummy */
    const char *id; /* the Message-ID it stands for, NULL for none */
    size_t parent, child, sib, nchild;
} cont;

typedef struct tree {
    cont *c;
    size_t n, cap;
    size_t *hash; /* Message-ID -> container, open addressing; hmask + 1 slots */
    size_t hmask;
} tree;

#define ROOT 0

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t new_cont(tree *t, pi_sort_msg *m, const char *id)
{
    t->c[t->n] = (cont){m, id, NONE, NONE, NONE, 0};
    return t->n++;
}

/* The container of a Message-ID, made (a dummy) when new. */
static size_t lookup(tree *t, const char *id, bool *created)
{
    size_t h = (size_t)hash_str(id) & t->hmask;
    while (t->hash[h] != NONE) {
        if (strcmp(t->c[t->hash[h]].id, id) == 0) {
            *created = false;
            return t->hash[h];
        }
        h = (h + 1) & t->hmask;
    }
    *created = true;
    return t->hash[h] = new_cont(t, NULL, id);
}

static void unlink_c(tree *t, size_t x)
{
    size_t p = t->c[x].parent;
    if (p == NONE)
        return;
    size_t *at = &t->c[p].child;
    while (*at != x)
        at = &t->c[*at].sib;
    *at = t->c[x].sib;
    t->c[p].nchild--;
    t->c[x].parent = t->c[x].sib = NONE;
}

static void link_c(tree *t, size_t x, size_t p)
{
    t->c[x].parent = p;
    t->c[x].sib = t->c[p].child;
    t->c[p].child = x;
    t->c[p].nchild++;
}

/* Whether a is b or below it. Nothing is below a container without children, which is the
 * common case (mail arrives after what it answers), so a long chain costs no walk up it. */
static bool descends(const tree *t, size_t a, size_t b)
{
    if (t->c[b].nchild == 0)
        return a == b;
    for (; a != NONE; a = t->c[a].parent)
        if (a == b)
            return true;
    return false;
}

/* The message a container sorts by: its own, or its first child's for a dummy. */
static const pi_sort_msg *key_msg(const tree *t, size_t x)
{
    while (x != NONE && !t->c[x].m)
        x = t->c[x].child;
    return x == NONE ? NULL : t->c[x].m;
}

typedef struct skey {
    int64_t date;
    uint32_t seq;
    size_t x;
} skey;

/* RFC 5256's order inside a thread and between threads: sent date, then sequence number */
static int by_date_then_seq(int64_t da, uint32_t sa, int64_t db, uint32_t sb)
{
    if (da != db)
        return da < db ? -1 : 1;
    return sa < sb ? -1 : sa > sb;
}

static int cmp_skey(const void *pa, const void *pb)
{
    const skey *a = pa, *b = pb;
    return by_date_then_seq(a->date, a->seq, b->date, b->seq);
}

/* Sorts x's children by sent date, then sequence number. scratch holds n entries. */
static void sort_children(tree *t, size_t x, skey *scratch)
{
    size_t k = 0;
    for (size_t c = t->c[x].child; c != NONE; c = t->c[c].sib) {
        const pi_sort_msg *m = key_msg(t, c);
        scratch[k++] = (skey){m ? m->date : 0, m ? m->seq : 0, c};
    }
    if (k < 2)
        return;
    qsort(scratch, k, sizeof *scratch, cmp_skey);
    t->c[x].child = NONE;
    for (size_t i = k; i-- > 0;) { /* link_c prepends */
        t->c[scratch[i].x].sib = t->c[x].child;
        t->c[x].child = scratch[i].x;
    }
}

static int put_id(pu_buf *out, bool *wrote, uint32_t id)
{
    int rc = pu_buf_printf(out, *wrote ? " %u" : "%u", id);
    *wrote = true;
    return rc;
}

/* One thread, "(" ... ")", without recursion: stack[] holds, per open nested list, the next
 * sibling to write. */
typedef struct wr {
    tree *t;
    pu_buf *out;
    size_t *stack, depth;
} wr;

/* Writes "(" and the chain from x down to a node with other than one child; pushes its
 * children when it has several. */
static int open_group(wr *w, size_t x)
{
    tree *t = w->t;
    bool wrote = false;
    int rc = pu_buf_addstr(w->out, "(");
    for (;;) {
        if (t->c[x].m)
            rc |= put_id(w->out, &wrote, t->c[x].m->id);
        if (t->c[x].nchild == 0)
            return rc | pu_buf_addstr(w->out, ")");
        if (t->c[x].nchild == 1) {
            x = t->c[x].child;
            continue;
        }
        if (wrote)
            rc |= pu_buf_addstr(w->out, " ");
        w->stack[w->depth++] = t->c[x].child;
        return rc;
    }
}

static int write_tree(tree *t, pu_buf *out)
{
    wr w = {t, out, malloc(t->n * sizeof(size_t)), 0};
    if (!w.stack)
        return -1;
    int rc = 0;
    for (size_t r = t->c[ROOT].child; r != NONE && !rc; r = t->c[r].sib) {
        rc |= open_group(&w, r);
        while (w.depth && !rc) {
            size_t next = w.stack[w.depth - 1];
            if (next == NONE) {
                w.depth--;
                rc |= pu_buf_addstr(out, ")");
                continue;
            }
            w.stack[w.depth - 1] = t->c[next].sib;
            rc |= open_group(&w, next);
        }
    }
    free(w.stack);
    return rc ? -1 : 0;
}

static int cmp_seq(const void *pa, const void *pb)
{
    const pi_sort_msg *a = *(pi_sort_msg *const *)pa, *b = *(pi_sort_msg *const *)pb;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

typedef struct dkey {
    size_t depth, x;
} dkey;

static int cmp_depth(const void *pa, const void *pb)
{
    const dkey *a = pa, *b = pb;
    if (a->depth != b->depth)
        return a->depth > b->depth ? -1 : 1; /* deepest first */
    return a->x < b->x ? -1 : a->x > b->x;
}

/* RFC 5256 step 3: dummies go, their children moving up; one at the top stays when it holds
 * several. Children are handled before their parents (deepest first), so a dummy counts
 * the children that are left. */
static int prune(tree *t)
{
    size_t *depth = malloc(t->n * sizeof *depth);
    size_t *path = malloc(t->n * sizeof *path);
    dkey *d = malloc(t->n * sizeof *d);
    if (!depth || !path || !d) {
        free(depth);
        free(path);
        free(d);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++)
        depth[i] = NONE;
    depth[ROOT] = 0;
    size_t nd = 0;
    for (size_t i = 1; i < t->n; i++) {
        size_t np = 0, x = i;
        while (x != NONE && depth[x] == NONE) {
            path[np++] = x;
            x = t->c[x].parent;
        }
        size_t base = x == NONE ? 0 : depth[x]; /* unlinked dummies are not in the tree */
        while (np--)
            depth[path[np]] = ++base;
        if (!t->c[i].m && t->c[i].parent != NONE)
            d[nd++] = (dkey){depth[i], i};
    }
    qsort(d, nd, sizeof *d, cmp_depth);
    for (size_t k = 0; k < nd; k++) {
        size_t x = d[k].x, p = t->c[x].parent;
        if (t->c[x].nchild == 0) {
            unlink_c(t, x);
        } else if (p != ROOT || t->c[x].nchild == 1) {
            unlink_c(t, x);
            size_t c;
            while ((c = t->c[x].child) != NONE) {
                unlink_c(t, c);
                link_c(t, c, p);
            }
        }
    }
    free(depth);
    free(path);
    free(d);
    return 0;
}

/* Subject table of step 5: base subject -> container, open addressing. The subject is kept
 * beside the container because merging changes which child a dummy sorts by. */
typedef struct subj_tab {
    size_t *cont;
    const char **subj;
    size_t mask;
} subj_tab;

static size_t subj_slot(subj_tab *st, const char *subj)
{
    size_t h = (size_t)hash_str(subj) & st->mask;
    while (st->cont[h] != NONE && strcmp(st->subj[h], subj) != 0)
        h = (h + 1) & st->mask;
    st->subj[h] = subj;
    return h;
}

static int gather_subjects(tree *t)
{
    size_t nroots = t->c[ROOT].nchild;
    subj_tab st;
    size_t cap = 16;
    while (cap < 2 * nroots + 2)
        cap *= 2;
    st.cont = malloc(cap * sizeof *st.cont);
    st.subj = malloc(cap * sizeof *st.subj);
    size_t *roots = malloc((nroots + 1) * sizeof *roots);
    if (!st.cont || !st.subj || !roots) {
        free(st.cont);
        free(st.subj);
        free(roots);
        return -1;
    }
    st.mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        st.cont[i] = NONE;
    size_t nr = 0;
    for (size_t r = t->c[ROOT].child; r != NONE; r = t->c[r].sib)
        roots[nr++] = r;
    /* (B) one container per subject: a dummy before a message, a message that is not a
     * reply before one that is */
    for (size_t k = 0; k < nr; k++) {
        size_t r = roots[k];
        const pi_sort_msg *m = key_msg(t, r);
        if (!m || !m->subject[0])
            continue;
        size_t *s = &st.cont[subj_slot(&st, m->subject)];
        if (*s == NONE)
            *s = r;
        else if (t->c[*s].m && (!t->c[r].m || (t->c[*s].m->refwd && !m->refwd)))
            *s = r;
    }
    /* (C) merge the others into it */
    for (size_t k = 0; k < nr; k++) {
        size_t r = roots[k];
        const pi_sort_msg *m = key_msg(t, r);
        if (!m || !m->subject[0])
            continue;
        size_t *s = &st.cont[subj_slot(&st, m->subject)];
        size_t x = *s;
        if (x == r)
            continue;
        if (!t->c[x].m && !t->c[r].m) {
            size_t c;
            while ((c = t->c[r].child) != NONE) {
                unlink_c(t, c);
                link_c(t, c, x);
            }
            unlink_c(t, r);
        } else if (!t->c[x].m) {
            unlink_c(t, r);
            link_c(t, r, x);
        } else if (!t->c[r].m) {
            unlink_c(t, x);
            link_c(t, x, r);
            *s = r;
        } else if (t->c[r].m->refwd && !t->c[x].m->refwd) {
            unlink_c(t, r);
            link_c(t, r, x);
        } else {
            size_t d = new_cont(t, NULL, NULL);
            unlink_c(t, x);
            unlink_c(t, r);
            link_c(t, d, ROOT);
            link_c(t, x, d);
            link_c(t, r, d);
            *s = d;
        }
    }
    free(st.cont);
    free(st.subj);
    free(roots);
    return 0;
}

static int references(pi_sort_msg *msgs, size_t n, pu_buf *out)
{
    size_t refs = 0;
    for (size_t i = 0; i < n; i++)
        refs += msgs[i].nrefs;
    tree t = {0};
    t.cap = 1 + 2 * n + refs; /* the root, messages, referenced ids, merge dummies */
    size_t hcap = 16;
    while (hcap < 2 * (n + refs))
        hcap *= 2;
    t.c = malloc(t.cap * sizeof *t.c);
    t.hash = malloc(hcap * sizeof *t.hash);
    pi_sort_msg **order = malloc((n ? n : 1) * sizeof *order);
    skey *scratch = NULL;
    int rc = -1;
    if (!t.c || !t.hash || !order)
        goto out;
    t.hmask = hcap - 1;
    for (size_t i = 0; i < hcap; i++)
        t.hash[i] = NONE;
    new_cont(&t, NULL, NULL); /* ROOT */
    for (size_t i = 0; i < n; i++)
        order[i] = &msgs[i];
    qsort(order, n, sizeof *order, cmp_seq); /* a duplicate Message-ID belongs to the first */

    /* (1) link by References */
    for (size_t i = 0; i < n; i++) {
        pi_sort_msg *m = order[i];
        size_t me;
        bool created = true;
        if (m->msgid) {
            me = lookup(&t, m->msgid, &created);
            if (!created && t.c[me].m)
                me = new_cont(&t, m, NULL); /* duplicate: as if it had none */
            t.c[me].m = m;
        } else {
            me = new_cont(&t, m, NULL);
        }
        size_t prev = NONE;
        for (size_t k = 0; k < m->nrefs; k++) {
            size_t c = lookup(&t, m->refs[k], &created);
            if (prev != NONE && c != prev && t.c[c].parent == NONE && !descends(&t, prev, c))
                link_c(&t, c, prev);
            prev = c;
        }
        /* the message's own parent is its last reference, whatever was guessed before */
        unlink_c(&t, me);
        if (prev != NONE && !descends(&t, prev, me))
            link_c(&t, me, prev);
    }
    /* (2) the root set */
    for (size_t i = 1; i < t.n; i++)
        if (t.c[i].parent == NONE && (t.c[i].m || t.c[i].nchild))
            link_c(&t, i, ROOT);
    /* (3) */
    if (prune(&t) < 0)
        goto out;
    scratch = malloc(t.cap * sizeof *scratch);
    if (!scratch)
        goto out;
    /* (4) the root set by date (a dummy by its first child's) */
    for (size_t r = t.c[ROOT].child; r != NONE; r = t.c[r].sib)
        if (!t.c[r].m)
            sort_children(&t, r, scratch);
    sort_children(&t, ROOT, scratch);
    /* (5) */
    if (gather_subjects(&t) < 0)
        goto out;
    /* (6) every set of siblings; the root last, as its dummies sort by their first child */
    for (size_t i = 1; i < t.n; i++)
        sort_children(&t, i, scratch);
    sort_children(&t, ROOT, scratch);
    rc = write_tree(&t, out);
out:
    free(t.c);
    free(t.hash);
    free(order);
    free(scratch);
    return rc;
}

static int cmp_ordered(const void *pa, const void *pb)
{
    const pi_sort_msg *a = *(pi_sort_msg *const *)pa, *b = *(pi_sort_msg *const *)pb;
    int r = strcmp(a->subject, b->subject);
    if (r)
        return r;
    return by_date_then_seq(a->date, a->seq, b->date, b->seq);
}

typedef struct group {
    size_t first, n;
    int64_t date;
    uint32_t seq;
} group;

static int cmp_group(const void *pa, const void *pb)
{
    const group *a = pa, *b = pb;
    return by_date_then_seq(a->date, a->seq, b->date, b->seq);
}

/* ORDEREDSUBJECT: one thread per base subject, its messages by date under the first; the
 * threads by the date of their first message. */
static int ordered_subject(pi_sort_msg *msgs, size_t n, pu_buf *out)
{
    if (!n)
        return 0;
    pi_sort_msg **v = malloc(n * sizeof *v);
    group *g = malloc(n * sizeof *g);
    if (!v || !g) {
        free(v);
        free(g);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = &msgs[i];
    qsort(v, n, sizeof *v, cmp_ordered);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (!i || strcmp(v[i]->subject, v[i - 1]->subject) != 0)
            g[ng++] = (group){i, 1, v[i]->date, v[i]->seq};
        else
            g[ng - 1].n++;
    qsort(g, ng, sizeof *g, cmp_group);
    int rc = 0;
    for (size_t k = 0; k < ng; k++) {
        rc |= pu_buf_printf(out, "(%u", v[g[k].first]->id);
        if (g[k].n == 2)
            rc |= pu_buf_printf(out, " %u", v[g[k].first + 1]->id);
        else if (g[k].n > 2) {
            rc |= pu_buf_addstr(out, " ");
            for (size_t i = 1; i < g[k].n; i++)
                rc |= pu_buf_printf(out, "(%u)", v[g[k].first + i]->id);
        }
        rc |= pu_buf_addstr(out, ")");
    }
    free(v);
    free(g);
    return rc ? -1 : 0;
}

int pi_thread_write(pi_thread_alg alg, pi_sort_msg *msgs, size_t n, pu_buf *out)
{
    return alg == PI_THREAD_REFERENCES ? references(msgs, n, out) : ordered_subject(msgs, n, out);
}
