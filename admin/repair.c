/* postern repair: anti-entropy between the sites. innfeed alone does not make every site hold
 * every message (a peer that lost a feed's articles never gets them again, a site that was
 * set up or restored later lacks what came before), so this compares what the sites hold and
 * copies what one lacks from one that has it. Ciphertext only: the envelope is read from one
 * site and posted unchanged, with the same headers and Message-ID, to the other; no user key
 * is needed. Cheap when nothing is missing: one LIST COUNTS per site, and Message-IDs are
 * compared only for groups whose counts differ. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "admin/admin.h"
#include "article/article.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern repair [--dry-run] [--user ADDRESS]\n"
    "Compares the mail groups of every configured site (by count, then by Message-ID where the\n"
    "counts differ; --user: that user's group by Message-ID) and copies each message a site\n"
    "lacks from a site that has it (ciphertext only). Prints what it finds per user and a\n"
    "summary per site. Exit 0 when every reachable site holds every message afterwards, 75 when\n"
    "a site could not be reached or a message could not be copied (run it again later).";

typedef struct site_conn {
    nntp_conn *c;
    char err[512];
    unsigned long missing, copied, refused, failed;
} site_conn;

/* One group as one site reports it in LIST COUNTS. */
typedef struct group_line {
    char name[PA_GROUP_MAX + 1];
    size_t site;
    uint64_t count;
} group_line;

typedef struct line_list {
    group_line *v;
    size_t n, cap;
    size_t site;
    const char *prefix;
    int nomem;
} line_list;

static int collect_count(void *arg, const char *line, size_t len)
{
    (void)len;
    line_list *l = arg;
    group_line g = {.site = l->site};
    uint64_t high, low;
    if (sscanf(line, "%250s %" SCNu64 " %" SCNu64 " %" SCNu64, g.name, &high, &low, &g.count) != 4)
        return 0;
    size_t nl = strlen(g.name);
    if (nl > 8 && strcmp(g.name + nl - 8, ".encrypt") == 0)
        return 0; /* key groups: user add reads their record back from every site */
    char address[PA_ADDRESS_MAX + 1];
    if (pa_group_to_address(l->prefix, g.name, address, sizeof address) != 0)
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

/* The postern Message-IDs of one group at one site, sorted. */
typedef struct id_set {
    char (*v)[PA_MSGID_MAX];
    size_t n, cap;
    int nomem;
} id_set;

static int collect_id(void *arg, const char *line, size_t len)
{
    id_set *s = arg;
    uint64_t num;
    const char *p;
    size_t n;
    if (!pa_over_mail(line, len, &num, &p, &n))
        return 0; /* only postern's mail articles */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        char(*v)[PA_MSGID_MAX] = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->nomem = 1;
            return 1;
        }
        s->v = v;
        s->cap = cap;
    }
    memcpy(s->v[s->n], p, n);
    s->v[s->n][n] = '\0';
    s->n++;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int has_id(const id_set *s, const char *id)
{
    return s->n && bsearch(id, s->v, s->n, sizeof *s->v, cmp_id) != NULL;
}

static int read_ids(site_conn *sc, const char *group, id_set *out)
{
    nntp_group_info info;
    int st = nntp_group(sc->c, group, &info);
    if (st == NNTP_ENOENT)
        return 0; /* the group is not there: every message is missing */
    if (st != NNTP_OK || info.count == 0)
        return st == NNTP_OK ? 0 : -1;
    char range[48];
    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, info.low, info.high);
    st = nntp_over(sc->c, range, collect_id, out);
    if (out->nomem || (st != NNTP_OK && st != NNTP_ENOENT))
        return -1;
    qsort(out->v, out->n, sizeof *out->v, cmp_id);
    return 0;
}

/* Posts one article read from src to dst: PS_OK (240) or PS_DUP (dst's history has the
 * Message-ID), else a failure. Whether dst shows it is checked afterwards (ps_await_shown). */
static int copy_article(site_conn *src, site_conn *dst, const char *group, const char *msgid, char *err,
                        size_t errlen)
{
    pu_buf env = {0};
    char got[PA_MSGID_MAX];
    int st = ps_fetch_envelope(src->c, msgid, &env, got, err, errlen);
    if (st == PS_OK && (env.len < PC_MSG_PREFIX_BYTES || strcmp(got, msgid) != 0)) {
        snprintf(err, errlen, "%s is not a postern envelope", msgid);
        st = PS_BADMSG;
    }
    int fd = st == PS_OK ? memfd_create("postern-repair", MFD_CLOEXEC) : -1;
    size_t body = st == PS_OK ? env.len - PC_MSG_PREFIX_BYTES : 0;
    if (st == PS_OK && (fd < 0 || pu_write_all(fd, (const uint8_t *)env.data + PC_MSG_PREFIX_BYTES, body) != 0)) {
        snprintf(err, errlen, "cannot hold the article in memory");
        st = PS_TEMP;
    }
    char headers[1024];
    if (st == PS_OK && !pa_mail_headers(group, msgid, headers, sizeof headers)) {
        snprintf(err, errlen, "header block too long");
        st = PS_FAIL;
    }
    if (st == PS_OK)
        st = ps_post_envelope(dst->c, headers, (const uint8_t *)env.data, PC_MSG_PREFIX_BYTES, fd, body, err, errlen);
    if (fd >= 0)
        close(fd);
    pu_buf_free(&env);
    return st;
}

/* The articles posted to one site for one group, until it shows them. */
typedef struct posted {
    ps_copy *v;
    size_t n, cap;
} posted;

static int posted_add(posted *p, const char *id, int duplicate)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        ps_copy *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (ps_copy){.msgid = id, .duplicate = duplicate}; /* id lives in the group's id_set */
    return 0;
}

typedef struct repair {
    const pn_config *cfg;
    site_conn sites[PN_MAX_SITES];
    int dry_run;
    unsigned long groups, compared, users_short;
} repair;

/* One group whose counts differ between sites: Message-IDs compared, what is missing copied. */
static void repair_group(repair *r, const char *group)
{
    const pn_config *cfg = r->cfg;
    id_set ids[PN_MAX_SITES] = {{0}};
    posted sent[PN_MAX_SITES] = {{0}};
    int readable[PN_MAX_SITES] = {0};
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (r->sites[i].c && read_ids(&r->sites[i], group, &ids[i]) == 0)
            readable[i] = 1;
    char address[PA_ADDRESS_MAX + 1] = "?";
    pa_group_to_address(cfg->prefix, group, address, sizeof address);
    r->compared++;
    int short_somewhere = 0;
    for (size_t src = 0; src < cfg->n_sites; src++) {
        if (!readable[src])
            continue;
        for (size_t k = 0; k < ids[src].n; k++) {
            const char *id = ids[src].v[k];
            int seen_before = 0; /* handled when an earlier site offered it */
            for (size_t e = 0; e < src && !seen_before; e++)
                seen_before = readable[e] && has_id(&ids[e], id);
            if (seen_before)
                continue;
            for (size_t dst = 0; dst < cfg->n_sites; dst++) {
                if (dst == src || !readable[dst] || has_id(&ids[dst], id))
                    continue;
                site_conn *d = &r->sites[dst];
                d->missing++;
                short_somewhere = 1;
                if (r->dry_run)
                    continue;
                char err[512] = "";
                int st = copy_article(&r->sites[src], d, group, id, err, sizeof err);
                if ((st == PS_OK || st == PS_DUP) && posted_add(&sent[dst], id, st == PS_DUP) == 0)
                    continue;
                d->failed++;
                pu_err("%s: %s not copied from site %s to %s: %s", address, id, cfg->sites[src].name,
                       cfg->sites[dst].name, st == PS_OK || st == PS_DUP ? "out of memory" : err);
            }
        }
    }
    for (size_t dst = 0; dst < cfg->n_sites; dst++) {
        posted *p = &sent[dst];
        /* a copy counts only when the site shows it, as for delivery */
        if (p->n)
            ps_await_shown(&cfg->sites[dst], cfg->confirm_timeout, p->v, p->n, NULL, 0);
        for (size_t i = 0; i < p->n; i++) {
            if (p->v[i].shown) {
                r->sites[dst].copied++;
                continue;
            }
            if (p->v[i].duplicate)
                r->sites[dst].refused++;
            else
                r->sites[dst].failed++;
            pu_err("%s: %s not copied to site %s: %s", address, p->v[i].msgid, cfg->sites[dst].name,
                   p->v[i].duplicate ? "its history remembers the Message-ID (cancelled or expired there)"
                                     : "it answered 240 but does not show the article");
        }
        free(p->v);
    }
    if (short_somewhere) {
        r->users_short++;
        printf("%s:", address);
        for (size_t i = 0; i < cfg->n_sites; i++)
            if (readable[i])
                printf(" %s %zu", cfg->sites[i].name, ids[i].n);
        printf(" messages%s\n", r->dry_run ? " (dry run: nothing copied)" : "");
    }
    for (size_t i = 0; i < cfg->n_sites; i++)
        free(ids[i].v);
}

int adm_cmd_repair(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    repair *r = calloc(1, sizeof *r);
    if (!r)
        return PX_OSERR;
    r->cfg = cfg;
    const char *only = NULL;
    char only_group[PA_GROUP_MAX + 1] = "";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
        if (c == 'n') {
            r->dry_run = 1;
        } else if (c == 'u') {
            only = optarg;
        } else if (c == 'h') {
            puts(usage);
            free(r);
            return PX_OK;
        } else {
            fprintf(stderr, "%s\n", usage);
            free(r);
            return PX_USAGE;
        }
    }
    char why[256];
    if (only && pa_address_to_group(cfg->prefix, only, only_group, sizeof only_group, why, sizeof why) != 0) {
        pu_err("--user %s: %s", only, why);
        free(r);
        return PX_USAGE;
    }
    if (cfg->n_sites < 2) {
        printf("postern repair: one site configured: nothing to compare\n");
        free(r);
        return PX_OK;
    }
    char wildmat[80];
    snprintf(wildmat, sizeof wildmat, "%s%s*", cfg->prefix, cfg->prefix[0] ? "." : "");
    line_list lines = {.prefix = cfg->prefix};
    size_t up = 0;
    int rc = PX_OK;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        site_conn *sc = &r->sites[i];
        if (ps_connect(&cfg->sites[i], &sc->c, sc->err, sizeof sc->err) != PS_OK) {
            pu_err("site %s left out: %s", cfg->sites[i].name, sc->err);
            sc->c = NULL;
            rc = PX_TEMPFAIL;
            continue;
        }
        lines.site = i;
        if (nntp_list_counts(sc->c, wildmat, collect_count, &lines) != NNTP_OK || lines.nomem) {
            pu_err("site %s left out: LIST COUNTS %s: %s", cfg->sites[i].name, wildmat, nntp_last_response(sc->c));
            nntp_close(sc->c);
            sc->c = NULL;
            rc = PX_TEMPFAIL;
            continue;
        }
        up++;
    }
    if (!pu_quiet)
        printf("postern repair: %zu of %zu sites reachable%s\n", up, cfg->n_sites, r->dry_run ? " (dry run)" : "");
    qsort(lines.v, lines.n, sizeof *lines.v, cmp_line);
    for (size_t a = 0; a < lines.n && up >= 2;) {
        size_t b = a;
        while (b < lines.n && strcmp(lines.v[b].name, lines.v[a].name) == 0)
            b++;
        /* the same count everywhere it is reachable is taken as the same messages */
        int differ = b - a != up;
        for (size_t k = a + 1; k < b && !differ; k++)
            differ = lines.v[k].count != lines.v[a].count;
        r->groups++;
        if (only ? strcmp(only_group, lines.v[a].name) == 0 : differ)
            repair_group(r, lines.v[a].name); /* --user: by Message-ID, whatever the counts */
        a = b;
    }
    unsigned long left = 0;
    int say = !pu_quiet || r->users_short || rc != PX_OK; /* -q (from a timer): only news */
    for (size_t i = 0; i < cfg->n_sites; i++) {
        site_conn *sc = &r->sites[i];
        left += sc->missing - sc->copied;
        if (say && !sc->c)
            printf("  site %s: not reachable\n", cfg->sites[i].name);
        else if (say && !sc->missing)
            printf("  site %s: nothing missing\n", cfg->sites[i].name);
        else if (say)
            printf("  site %s: %lu missing, %lu copied, %lu refused (remembered there), %lu failed\n",
                   cfg->sites[i].name, sc->missing, sc->copied, sc->refused, sc->failed);
        if (sc->c)
            nntp_close(sc->c);
    }
    if (say)
        printf("postern repair: %lu groups, %lu compared by Message-ID, %lu users short somewhere\n", r->groups,
               r->compared, r->users_short);
    if (left && !r->dry_run)
        rc = PX_TEMPFAIL;
    free(lines.v);
    free(r);
    return rc;
}
