/* repair: anti-entropy between the sites. Cheap when nothing is missing: one LIST COUNTS per
 * site, and Message-IDs are compared (one OVER per site) only for groups whose counts differ.
 * A copy is the envelope read from one site and posted unchanged, with the same headers and
 * Message-ID, to the other; it counts when the other site shows it (ps_await_shown), as for
 * delivery. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "article/article.h"
#include "crypto/crypto.h"
#include "repair/repair.h"
#include "store/store.h"
#include "util/util.h"

#define LOUD_ERRORS_PER_PASS 5 /* PR_SETTLED passes run every few seconds: a summary, not a flood */

/* One group as one site reports it in LIST COUNTS. */
typedef struct group_line {
    char name[PA_GROUP_MAX + 1];
    size_t site;
    uint64_t count, high;
} group_line;

typedef struct line_list {
    group_line *v;
    size_t n, cap;
    size_t site;
    const char *prefix;
    int nomem;
} line_list;

/* A group as the previous pass saw it (sorted by name): for PR_SETTLED. */
typedef struct memo {
    char name[PA_GROUP_MAX + 1];
    uint32_t reported;                   /* bit i: site i listed the group */
    uint64_t high[PN_MAX_SITES];         /* its high water mark there */
    int compared_clean;                  /* compared, and nothing was left to copy... */
    uint64_t compared[PN_MAX_SITES];     /* ...at these counts */
    uint32_t compared_reported;
} memo;

struct pr_repairer {
    const pn_config *cfg;
    memo *memos;
    size_t n_memos;
    int has_memory; /* a pass ran before */
};

typedef struct pass {
    pr_repairer *r;
    unsigned flags;
    ps_pool *pool; /* one per pass: each pass sees the sites afresh */
    int up[PN_MAX_SITES];
    pr_tally *t;
    FILE *out;
    unsigned long loud; /* errors printed this pass */
    unsigned long quiet;
    unsigned long posted; /* copies posted this pass: progress for a person waiting */
    struct pending *sent[PN_MAX_SITES]; /* posted, to be confirmed: all at once, not per group */
    size_t n_sent[PN_MAX_SITES], cap_sent[PN_MAX_SITES];
} pass;

#define PROGRESS_EVERY 250 /* copies between progress lines of an on-demand pass */

static void progress(pass *p, const char *address, const char *site)
{
    if (++p->posted % PROGRESS_EVERY == 0 && p->out && !pu_quiet)
        fprintf(stderr, "postern repair: %lu copies posted so far (now %s, to site %s)\n", p->posted, address, site);
}

static void say_error(pass *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_error(pass *p, const char *fmt, ...)
{
    if ((p->flags & PR_SETTLED) && p->loud >= LOUD_ERRORS_PER_PASS) {
        p->quiet++;
        return;
    }
    p->loud++;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pu_err("%s", line);
}

static int collect_count(void *arg, const char *line, size_t len)
{
    (void)len;
    line_list *l = arg;
    group_line g = {.site = l->site};
    uint64_t low;
    if (sscanf(line, "%250s %" SCNu64 " %" SCNu64 " %" SCNu64, g.name, &g.high, &low, &g.count) != 4)
        return 0;
    /* key groups too: a site set up again (a new host for a dead one) has none of the key
     * records, and without one nobody logs in there or gets mail delivered there */
    char base[sizeof g.name], address[PA_ADDRESS_MAX + 1];
    size_t nl = strlen(g.name), sl = strlen(PA_KEY_SUFFIX);
    snprintf(base, sizeof base, "%s", g.name);
    if (nl > sl && strcmp(g.name + nl - sl, PA_KEY_SUFFIX) == 0)
        base[nl - sl] = '\0';
    if (pa_group_to_address(l->prefix, base, address, sizeof address) != 0)
        return 0; /* not a user's group */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        group_line *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->nomem = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = g;
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    const group_line *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->site > y->site) - (x->site < y->site);
}

/* The postern Message-IDs of one group at one site, with their numbers there, sorted by ID. */
typedef struct id_entry {
    char id[PA_MSGID_MAX];
    uint64_t number;
} id_entry;

typedef struct id_set {
    id_entry *v;
    size_t n, cap;
    int nomem;
} id_set;

static int collect_id(void *arg, const char *line, size_t len)
{
    id_set *s = arg;
    uint64_t num;
    const char *p;
    size_t n;
    char key_id[PA_MSGID_MAX];
    uint32_t serial;
    uint64_t bytes;
    /* postern's articles only: mail, state (without them a site set up again would number
     * every user's mail afresh) and key records */
    if (!pa_over_mail(line, len, &num, &p, &n) && !pa_over_state(line, len, &num, &p, &n)) {
        if (!pa_over_key(line, len, &num, &serial, &bytes, key_id))
            return 0;
        p = key_id;
        n = strlen(key_id);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        id_entry *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->nomem = 1;
            return 1;
        }
        s->v = v;
        s->cap = cap;
    }
    memcpy(s->v[s->n].id, p, n);
    s->v[s->n].id[n] = '\0';
    s->v[s->n].number = num;
    s->n++;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(((const id_entry *)a)->id, ((const id_entry *)b)->id);
}

/* bsearch's key is the Message-ID itself: no copy into an id_entry for every look-up (one per
 * article and site in a compared group). */
static int cmp_key_id(const void *key, const void *entry)
{
    return strcmp(key, ((const id_entry *)entry)->id);
}

static int has_id(const id_set *s, const char *id)
{
    return s->n && bsearch(id, s->v, s->n, sizeof *s->v, cmp_key_id) != NULL;
}

static int read_ids(ps_pool *pool, size_t site, const char *group, id_set *out)
{
    ps_group_info info;
    char err[512];
    int st = ps_group(pool, site, group, &info, err, sizeof err);
    if (st == PS_NOENT)
        return 0; /* the group is not there: every message is missing */
    if (st != PS_OK || info.count == 0)
        return st == PS_OK ? 0 : -1;
    char range[48];
    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, info.low, info.high);
    st = ps_over(pool, site, group, range, collect_id, out, err, sizeof err);
    if (out->nomem || (st != PS_OK && st != PS_NOENT))
        return -1;
    if (out->n)
        qsort(out->v, out->n, sizeof *out->v, cmp_id);
    return 0;
}

/* Posts one article read from src to dst: PS_OK (240) or PS_DUP (dst's history has the
 * Message-ID), else a failure. Whether dst shows it is checked afterwards (ps_await_shown).
 * Mail, state articles and key records each get their own header block back (formats.md 3,
 * 6, 2) around the same bytes. */
static int copy_article(ps_pool *pool, size_t src, size_t dst, const char *group, const char *msgid, char *err,
                        size_t errlen)
{
    bool mail = strncmp(msgid, "<m.", 3) == 0, state = strncmp(msgid, "<s.", 3) == 0;
    pu_buf env = {.public_data = 1}; /* ciphertext (or a signed public record), as on the spool */
    char got[PA_MSGID_MAX], lock[PA_CANCEL_LOCK_MAX] = "";
    int st = mail ? ps_read_envelope(pool, src, msgid, &env, got, lock, err, errlen)
                  : ps_read_armored(pool, src, msgid, state ? "state 1" : "keyrecord 1", &env, got, lock, err, errlen);
    if (st == PS_OK && (strcmp(got, msgid) != 0 || (mail && env.len < PC_MSG_PREFIX_BYTES) || env.len == 0)) {
        snprintf(err, errlen, "%s is not a postern article", msgid);
        st = PS_BADMSG;
    }
    size_t prefix = mail ? PC_MSG_PREFIX_BYTES : env.len; /* only mail streams from a file */
    int fd = st == PS_OK && mail ? memfd_create("postern-repair", MFD_CLOEXEC) : -1;
    size_t body = st == PS_OK && mail ? env.len - PC_MSG_PREFIX_BYTES : 0;
    if (st == PS_OK && mail && (fd < 0 || pu_write_all(fd, (const uint8_t *)env.data + prefix, body) != 0)) {
        snprintf(err, errlen, "cannot hold the article in memory");
        st = PS_TEMP;
    }
    /* the copy keeps postern's locks (mail: the owner's and the admin's, the first two,
     * docs/formats.md section 3; state articles and key records: one), without which their
     * owner could not cancel it there; the locks the source site's INN appended for its own
     * admin mean nothing elsewhere */
    char headers[1024], extra[PC_CANCEL_TEXT_MAX * 2 + 32] = "";
    size_t keep = 0;
    for (int spaces = 0; lock[keep] && !(lock[keep] == ' ' && ++spaces == (mail ? 2 : 1)); keep++)
        ;
    if (keep && keep < 2 * PC_CANCEL_TEXT_MAX)
        snprintf(extra, sizeof extra, "Cancel-Lock: %.*s\r\n", (int)keep, lock);
    size_t hl = 0;
    if (st == PS_OK)
        hl = mail    ? pa_mail_headers(group, msgid, extra, headers, sizeof headers)
             : state ? pa_state_headers(group, msgid, extra, headers, sizeof headers)
                     : pa_key_headers(group, msgid, extra, headers, sizeof headers);
    if (st == PS_OK && !hl) {
        snprintf(err, errlen, "header block too long");
        st = PS_FAIL;
    }
    if (st == PS_OK)
        st = ps_post(pool, dst, headers, (const uint8_t *)env.data, prefix, fd, body, err, errlen);
    if (fd >= 0)
        close(fd);
    pu_buf_free(&env);
    return st;
}

/* A copy posted to a site, until the site shows it. Confirmed for the whole pass at once
 * (ps_await_shown: one new connection per round for all of them), not per group: a site
 * back from an outage lacks a few messages of every user, and a connection per group each
 * costs its AUTHINFO. */
#define PENDING_MAX 4096 /* confirmed early when this many wait for one site */

typedef struct pending {
    char msgid[PA_MSGID_MAX];
    memo *group; /* its group's entry for the next pass: not clean if the copy fails */
    int duplicate;
} pending;

static void confirm(pass *p, size_t dst);

static int pending_add(pass *p, size_t dst, const char *id, memo *group, int duplicate)
{
    if (p->n_sent[dst] == PENDING_MAX)
        confirm(p, dst);
    if (p->n_sent[dst] == p->cap_sent[dst]) {
        size_t cap = p->cap_sent[dst] ? p->cap_sent[dst] * 2 : 64;
        pending *v = realloc(p->sent[dst], cap * sizeof *v);
        if (!v)
            return -1;
        p->sent[dst] = v;
        p->cap_sent[dst] = cap;
    }
    pending *e = &p->sent[dst][p->n_sent[dst]++];
    snprintf(e->msgid, sizeof e->msgid, "%s", id);
    e->group = group;
    e->duplicate = duplicate;
    return 0;
}

/* A copy counts only when the site shows it, as for delivery. */
static void confirm(pass *p, size_t dst)
{
    const pn_config *cfg = p->r->cfg;
    size_t n = p->n_sent[dst];
    pending *v = p->sent[dst];
    if (!n)
        return;
    ps_copy *copies = calloc(n, sizeof *copies);
    if (n >= PROGRESS_EVERY && p->out && !pu_quiet)
        fprintf(stderr, "postern repair: checking that site %s shows the %zu copies\n", cfg->sites[dst].name, n);
    if (copies) {
        for (size_t i = 0; i < n; i++)
            copies[i] = (ps_copy){.msgid = v[i].msgid, .duplicate = v[i].duplicate};
        ps_await_shown(&cfg->sites[dst], cfg->confirm_timeout, copies, n, NULL, 0);
    }
    for (size_t i = 0; i < n; i++) {
        if (copies && copies[i].shown) {
            p->t->site[dst].copied++;
            continue;
        }
        if (v[i].duplicate) {
            p->t->site[dst].refused++;
        } else {
            p->t->site[dst].failed++;
            if (v[i].group)
                v[i].group->compared_clean = 0;
        }
        char address[PA_ADDRESS_MAX + 1] = "?";
        if (v[i].group)
            pa_group_to_address(cfg->prefix, v[i].group->name, address, sizeof address);
        say_error(p, "%s: %s not copied to site %s: %s", address, v[i].msgid, cfg->sites[dst].name,
                  !copies ? "out of memory" : v[i].duplicate ? "its history remembers the Message-ID (cancelled or expired there)"
                                                           : "it answered 240 but does not show the article");
    }
    free(copies);
    p->n_sent[dst] = 0;
}

static const memo *find_memo(const pr_repairer *r, const char *name)
{
    size_t lo = 0, hi = r->n_memos;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->memos[mid].name);
        if (c == 0)
            return &r->memos[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* PR_SETTLED: the source held this article at the previous pass. */
static int settled(const pass *p, const memo *old, size_t src, uint64_t number)
{
    if (!(p->flags & PR_SETTLED))
        return 1;
    return old && (old->reported >> src & 1) && number <= old->high[src];
}

/* One group whose counts differ between sites: Message-IDs compared, what is missing copied.
 * Returns 1 when something is left to copy (a failure, or an article too new to copy). */
static int repair_group(pass *p, memo *m, const memo *old, const uint64_t count[PN_MAX_SITES])
{
    const pn_config *cfg = p->r->cfg;
    const char *group = m->name;
    pr_tally *t = p->t;
    id_set ids[PN_MAX_SITES] = {{0}};
    int readable[PN_MAX_SITES] = {0};
    for (size_t i = 0; i < cfg->n_sites; i++)
        /* a site whose LIST COUNTS says the group is empty or absent has none of its articles:
         * no GROUP there (store closes a connection that saw an empty group, so a site
         * that lacks a few users' mail would cost a connection per group) */
        if (p->up[i] && (count[i] == 0 || read_ids(p->pool, i, group, &ids[i]) == 0))
            readable[i] = 1;
    char address[PA_ADDRESS_MAX + 1] = "?";
    pa_group_to_address(cfg->prefix, group, address, sizeof address);
    t->compared++;
    int short_somewhere = 0, left = 0;
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (p->up[i] && !readable[i])
            left = 1; /* could not compare there: next pass */
    for (size_t src = 0; src < cfg->n_sites; src++) {
        if (!readable[src])
            continue;
        for (size_t k = 0; k < ids[src].n; k++) {
            const char *id = ids[src].v[k].id;
            int seen_before = 0; /* handled when an earlier site offered it */
            for (size_t e = 0; e < src && !seen_before; e++)
                seen_before = readable[e] && has_id(&ids[e], id);
            if (seen_before)
                continue;
            for (size_t dst = 0; dst < cfg->n_sites; dst++) {
                if (dst == src || !readable[dst] || has_id(&ids[dst], id))
                    continue;
                pr_site_tally *d = &t->site[dst];
                if (!settled(p, old, src, ids[src].v[k].number)) {
                    d->waiting++;
                    left = 1;
                    continue;
                }
                d->missing++;
                short_somewhere = 1;
                if (p->flags & PR_DRY_RUN)
                    continue;
                char err[512] = "";
                int st = copy_article(p->pool, src, dst, group, id, err, sizeof err);
                if ((st == PS_OK || st == PS_DUP) && pending_add(p, dst, id, m, st == PS_DUP) == 0) {
                    progress(p, address, cfg->sites[dst].name);
                    continue;
                }
                d->failed++;
                left = 1;
                say_error(p, "%s: %s not copied from site %s to %s: %s", address, id, cfg->sites[src].name,
                          cfg->sites[dst].name, st == PS_OK || st == PS_DUP ? "out of memory" : err);
            }
        }
    }
    if (short_somewhere) {
        t->users_short++;
        if (p->out) {
            fprintf(p->out, "%s:", address);
            for (size_t i = 0; i < cfg->n_sites; i++)
                if (readable[i])
                    fprintf(p->out, " %s %zu", cfg->sites[i].name, ids[i].n);
            fprintf(p->out, " messages%s\n", p->flags & PR_DRY_RUN ? " (dry run: nothing copied)" : "");
        }
    }
    for (size_t i = 0; i < cfg->n_sites; i++)
        free(ids[i].v);
    return left;
}

pr_repairer *pr_new(const pn_config *cfg)
{
    pr_repairer *r = calloc(1, sizeof *r);
    if (r)
        r->cfg = cfg;
    return r;
}

void pr_free(pr_repairer *r)
{
    if (r) {
        free(r->memos);
        free(r);
    }
}

/* Lists every site's user groups; unreachable sites are left out (their tally says why). */
static int list_sites(pass *p, line_list *lines)
{
    const pn_config *cfg = p->r->cfg;
    char wildmat[80];
    snprintf(wildmat, sizeof wildmat, "%s%s*", cfg->prefix, cfg->prefix[0] ? "." : "");
    for (size_t i = 0; i < cfg->n_sites; i++) {
        pr_site_tally *st = &p->t->site[i];
        lines->site = i;
        if (ps_list_counts(p->pool, i, wildmat, collect_count, lines, st->err, sizeof st->err) != PS_OK)
            continue;
        if (lines->nomem)
            return -1;
        p->up[i] = 1;
        st->reachable = 1;
        p->t->up++;
    }
    if (lines->n)
        qsort(lines->v, lines->n, sizeof *lines->v, cmp_line);
    return 0;
}

int pr_pass(pr_repairer *r, unsigned flags, const char *only_group, FILE *out, pr_tally *tally)
{
    const pn_config *cfg = r->cfg;
    memset(tally, 0, sizeof *tally);
    pass p = {.r = r, .flags = flags, .t = tally, .out = out, .pool = ps_pool_new(cfg, 0)};
    line_list lines = {.prefix = cfg->prefix};
    memo *next = NULL;
    size_t n_next = 0;
    int rc = 0;
    if (!p.pool || list_sites(&p, &lines) != 0) {
        rc = -1;
        goto done;
    }
    next = calloc(lines.n ? lines.n : 1, sizeof *next);
    if (!next) {
        rc = -1;
        goto done;
    }
    for (size_t a = 0; a < lines.n;) {
        size_t b = a;
        memo *m = &next[n_next++];
        snprintf(m->name, sizeof m->name, "%s", lines.v[a].name);
        uint64_t count[PN_MAX_SITES] = {0};
        for (; b < lines.n && strcmp(lines.v[b].name, lines.v[a].name) == 0; b++) {
            m->reported |= 1u << lines.v[b].site;
            m->high[lines.v[b].site] = lines.v[b].high;
            count[lines.v[b].site] = lines.v[b].count;
        }
        /* the same count everywhere it is reachable is taken as the same messages */
        int differ = b - a != tally->up;
        for (size_t k = a + 1; k < b && !differ; k++)
            differ = lines.v[k].count != lines.v[a].count;
        tally->groups++;
        const memo *old = r->has_memory ? find_memo(r, m->name) : NULL;
        if (only_group ? strcmp(only_group, m->name) == 0 : differ && tally->up >= 2) {
            if (!only_group && (flags & PR_SETTLED) && old && old->compared_clean &&
                old->compared_reported == m->reported && memcmp(old->compared, count, sizeof count) == 0) {
                /* as when last compared: nothing copyable then, nothing now */
                m->compared_clean = 1;
                m->compared_reported = old->compared_reported;
                memcpy(m->compared, old->compared, sizeof m->compared);
            } else {
                m->compared_clean = !(flags & PR_DRY_RUN); /* confirm() clears it for a failed copy */
                if (repair_group(&p, m, old, count))
                    m->compared_clean = 0;
                m->compared_reported = m->reported;
                memcpy(m->compared, count, sizeof count);
            }
        }
        a = b;
    }
    free(r->memos);
    r->memos = next;
    r->n_memos = n_next;
    r->has_memory = 1;
    next = NULL;
done:
    for (size_t i = 0; i < cfg->n_sites; i++) {
        confirm(&p, i); /* the memos they name are alive until next is freed below */
        free(p.sent[i]);
    }
    if (p.quiet)
        pu_err("... and %lu more copy errors in this pass", p.quiet);
    ps_pool_free(p.pool);
    free(lines.v);
    free(next);
    if (rc == 0) {
        int whole = tally->up == cfg->n_sites;
        for (size_t i = 0; i < cfg->n_sites && whole; i++) {
            const pr_site_tally *s = &tally->site[i];
            whole = s->missing == s->copied + s->refused && !s->waiting;
        }
        rc = whole ? 0 : 1;
    }
    return rc;
}

void pr_print_sites(const pn_config *cfg, const pr_tally *t, FILE *to)
{
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pr_site_tally *s = &t->site[i];
        fprintf(to, "  site %s: ", cfg->sites[i].name);
        if (!s->reachable)
            fprintf(to, "not reachable (%s)", s->err[0] ? s->err : "no answer");
        else if (!s->missing && !s->waiting)
            fprintf(to, "nothing missing");
        else if (!s->missing)
            fprintf(to, "%lu arrived elsewhere moments ago (checked again next pass)", s->waiting);
        else
            fprintf(to, "%lu missing, %lu copied, %lu refused (remembered there), %lu failed", s->missing,
                    s->copied, s->refused, s->failed);
        if (s->missing && s->waiting)
            fprintf(to, "; %lu newer ones next pass", s->waiting);
        fputc('\n', to);
    }
}

int pr_write_status(const pn_config *cfg, const pr_tally *t, unsigned interval)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    time_t now = time(NULL);
    struct tm tm;
    char when[64];
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    unsigned long still = 0;
    for (size_t i = 0; i < cfg->n_sites; i++)
        still += t->site[i].missing - t->site[i].copied - t->site[i].refused;
    fprintf(f, "replication checked %s (a pass every %u s): %zu of %zu sites reachable, %s\n", when, interval, t->up,
            cfg->n_sites, t->up < cfg->n_sites ? "DEGRADED" : still ? "REPAIRING" : "every site holds every message");
    pr_print_sites(cfg, t, f);
    return pu_memstream_write(f, &text, &len, cfg->state_dir, "replication.status");
}

int pr_write_metrics(const pn_config *cfg, const pr_tally *t, const unsigned long long copied_total[PN_MAX_SITES])
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    fprintf(f, "# HELP postern_replication_pass_time_seconds When the last repair pass ended (Unix time).\n"
               "# TYPE postern_replication_pass_time_seconds gauge\n"
               "postern_replication_pass_time_seconds %lld\n",
            (long long)time(NULL));
    fprintf(f, "# HELP postern_replication_site_up 1 when the last repair pass reached the site.\n"
               "# TYPE postern_replication_site_up gauge\n");
    for (size_t i = 0; i < cfg->n_sites; i++)
        pu_prom_site(f, "postern_replication_site_up", cfg->sites[i].name, t->site[i].reachable != 0);
    fprintf(f, "# HELP postern_replication_missing Messages another site holds and the site still lacked after "
               "the last pass (the replication gap).\n"
               "# TYPE postern_replication_missing gauge\n");
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pr_site_tally *x = &t->site[i];
        unsigned long left = x->missing - x->copied - x->refused;
        pu_prom_site(f, "postern_replication_missing", cfg->sites[i].name, left + x->waiting);
    }
    fprintf(f, "# HELP postern_replication_copied_total Messages the repair passes copied to the site.\n"
               "# TYPE postern_replication_copied_total counter\n");
    for (size_t i = 0; i < cfg->n_sites; i++)
        pu_prom_site(f, "postern_replication_copied_total", cfg->sites[i].name, copied_total[i]);
    return pu_memstream_write(f, &text, &len, cfg->state_dir, "replication.prom");
}

/* What the log says after a pass: only news (something missing, or a site's reachability
 * changed), so a healthy mesh logs nothing every interval. */
static void log_pass(const pn_config *cfg, const pr_tally *t, uint32_t *was_down)
{
    uint32_t down = 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pr_site_tally *s = &t->site[i];
        if (!s->reachable)
            down |= 1u << i;
        if (!s->reachable && !(*was_down >> i & 1))
            pu_err("repair: site %s not reachable: %s", cfg->sites[i].name, s->err);
        else if (s->reachable && (*was_down >> i & 1))
            pu_err("repair: site %s reachable again", cfg->sites[i].name);
        if (s->missing)
            pu_err("repair: site %s lacked %lu messages: %lu copied, %lu refused (remembered there), %lu failed",
                   cfg->sites[i].name, s->missing, s->copied, s->refused, s->failed);
    }
    *was_down = down;
}

void pr_run_periodic(const pn_config *cfg, unsigned interval, volatile const int *stop)
{
    pr_repairer *r = pr_new(cfg);
    uint32_t was_down = 0;
    unsigned long long copied_total[PN_MAX_SITES] = {0};
    /* several gateways run this against the same sites: spread their passes */
    unsigned jitter_ms = interval * 100u; /* up to a tenth of the interval */
    long long next = pu_now_ms() + 1000 + (long long)randombytes_uniform(jitter_ms + 1);
    while (!*stop) {
        long long now = pu_now_ms();
        if (now < next) {
            long long wait = next - now;
            struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
            nanosleep(&ts, NULL); /* a signal ends it early; *stop says why */
            continue;
        }
        pr_tally t;
        if (!r) {
            r = pr_new(cfg);
        } else if (pr_pass(r, PR_SETTLED, NULL, NULL, &t) < 0) {
            pu_err("repair: out of memory; next pass in %u s", interval);
            pr_free(r);
            r = NULL; /* start over with no memory */
        } else {
            log_pass(cfg, &t, &was_down);
            if (pr_write_status(cfg, &t, interval) != 0)
                pu_err("repair: cannot write %s/replication.status: %s", cfg->state_dir, strerror(errno));
            for (size_t i = 0; i < cfg->n_sites; i++)
                copied_total[i] += t.site[i].copied;
            if (pr_write_metrics(cfg, &t, copied_total) != 0)
                pu_err("repair: cannot write %s/replication.prom: %s", cfg->state_dir, strerror(errno));
        }
        next = pu_now_ms() + (long long)interval * 1000 + (long long)randombytes_uniform(jitter_ms + 1);
    }
    pr_free(r);
}
