/* mailbox: new mail and vanished mail for every selected mailbox, from one poll of the news
 * server each second — LIST COUNTS (LIST ACTIVE where the server lacks it) with a wildmat of
 * the watched groups — never one poll per session. A group whose numbers moved is scanned
 * (mbox.c), and its watchers hear of it at once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "mailbox/mb.h"
#include "util/util.h"

#define POLL_INTERVAL_MS 1000
#define HEALTH_EVERY_TICKS 3 /* polls: a dead site shows in gateway.status within seconds */
#define WILDMAT_MAX 400 /* NNTP lines stop at 512 octets */

typedef struct poll_line {
    char group[PA_GROUP_MAX + 1];
    uint64_t high, low, count;
    bool has_count;
} poll_line;

/* LIST COUNTS adds the count (it moves on a cancel) to the numbers LIST ACTIVE gives. Its
 * high and low come from nnrpd's per-process group index, which INN 2.7 does not refresh for
 * a group that was empty when first seen; the active file's are always current. */

typedef struct poll_ctx {
    mb_store *net;
    char wildmat[WILDMAT_MAX + 1];
    bool no_counts;
    bool sorted; /* lines, by group name */
    size_t want_site, site;
    poll_line *lines;
    size_t n, cap;
    bool nomem;
    int status;
    char err[256];
} poll_ctx;

/* The lines are sorted by group name once LIST ACTIVE is in, so that matching the counts and
 * the watched accounts costs a binary search each: with the "<prefix>.*" wildmat a poll may
 * list every user's group, every second. */
static int line_cmp(const void *a, const void *b)
{
    return strcmp(((const poll_line *)a)->group, ((const poll_line *)b)->group);
}

static int key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const poll_line *)elem)->group);
}

/* LIST COUNTS follows LIST ACTIVE on the same connection: the lines are sorted when the first
 * count comes. */
static void sort_lines(poll_ctx *x)
{
    if (!x->sorted && x->n)
        qsort(x->lines, x->n, sizeof *x->lines, line_cmp);
    x->sorted = true;
}

static poll_line *find_line(const poll_ctx *x, const char *group)
{
    return x->n ? bsearch(group, x->lines, x->n, sizeof *x->lines, key_cmp) : NULL;
}

static int collect_counts(void *arg, const char *line, size_t len)
{
    (void)len;
    poll_ctx *x = arg;
    char group[PA_GROUP_MAX + 1];
    uint64_t high, low, count;
    sort_lines(x);
    if (sscanf(line, "%250s %" SCNu64 " %" SCNu64 " %" SCNu64, group, &high, &low, &count) != 4)
        return 0;
    poll_line *l = find_line(x, group);
    if (l) {
        /* a count from a stale index (its high lags the active file's) is not used */
        l->count = count;
        l->has_count = high == l->high && low == l->low;
    }
    return 0;
}

static int collect(void *arg, const char *line, size_t len)
{
    (void)len;
    poll_ctx *x = arg;
    poll_line l = {0};
    char flag[8];
    if (sscanf(line, "%250s %" SCNu64 " %" SCNu64 " %7s", l.group, &l.high, &l.low, flag) < 3)
        return 0;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        poll_line *p = realloc(x->lines, cap * sizeof *p);
        if (!p) {
            x->nomem = true;
            return 1;
        }
        x->lines = p;
        x->cap = cap;
    }
    x->lines[x->n++] = l;
    return 0;
}

static void poll_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)cfg;
    poll_ctx *x = j->ctx;
    x->n = 0;
    size_t where = PS_PREFER(x->want_site); /* a retry may fall back to another site */
    x->status = ps_pool_connect(sites, where, x->err, sizeof x->err);
    if (x->status != PS_OK)
        return;
    x->site = ps_pool_site(sites);
    if (!x->wildmat[0]) { /* health check only: does the site still answer? */
        x->status = ps_ping(sites, where, x->err, sizeof x->err);
        x->site = ps_pool_site(sites);
        return;
    }
    /* store retries on a new connection, and closes one that listed an empty group: nnrpd
     * (INN 2.7) never notices the first article of a group that was empty when it first
     * looked, so while a watched group is empty each poll uses a new connection */
    char why[512];
    int refused = 0;
    x->sorted = false;
    int st = ps_list_active(sites, where, x->wildmat, collect, x->no_counts ? NULL : collect_counts, x, &refused,
                            why, sizeof why);
    x->site = ps_pool_site(sites);
    sort_lines(x);
    if (st == PS_OK && refused) {
        snprintf(x->err, sizeof x->err, "LIST COUNTS refused (%.190s): cancels show at the next scan", why);
        x->no_counts = true; /* not INN: high and low only */
    }
    if (st == PS_OK) {
        x->status = x->nomem ? PS_FAIL : PS_OK;
        return;
    }
    snprintf(x->err, sizeof x->err, "LIST: %.240s", why);
    x->status = PS_TEMP;
}

static void poll_done(mb_job *j)
{
    poll_ctx *x = j->ctx;
    mb_store *net = x->net;
    net->poll_inflight = false;
    if (x->no_counts && !net->poll_no_counts)
        pu_log(PU_WARN, "%s", x->err);
    net->poll_no_counts = x->no_counts;
    if (x->status != PS_OK) {
        pu_log(PU_DEBUG, "poll failed: %s", x->err);
        mb_status_sites_down(net, x->err);
    } else if (!x->wildmat[0]) {
        mb_status_site_answered(net, x->site); /* a health check: nothing is watched */
    } else {
        mb_status_site_answered(net, x->site);
        pu_log(PU_DEBUG, "poll: %zu groups for %s", x->n, x->wildmat);
        for (mb_account *a = net->accounts; a; a = a->next) {
            const poll_line *l = a->n_watchers && a->mbox ? find_line(x, a->mbox->group) : NULL;
            if (!l)
                continue;
            if (a->mbox->site != x->site) /* other numbers: rescan from the poll's site */
                mb_scan(a);
            else /* without counts, a cancel shows only when the numbers move */
                mb_mbox_poll_result(a, l->high, l->low, l->has_count ? l->count : a->mbox->count);
        }
    }
    free(x->lines);
    free(x);
    free(j);
}

static void build_wildmat(mb_store *net, char *out, size_t cap)
{
    size_t len = 0;
    bool first = true;
    out[0] = '\0';
    for (mb_account *a = net->accounts; a; a = a->next) {
        if (!a->n_watchers || !a->mbox)
            continue;
        size_t g = strlen(a->mbox->group);
        if (len + g + 2 > cap || strpbrk(a->mbox->group, "*?[\\,")) {
            /* too many for one line: the whole hierarchy, filtered here */
            const char *prefix = net->cfg->prefix;
            snprintf(out, cap, "%s%s*", prefix, *prefix ? "." : "");
            return;
        }
        if (!first)
            out[len++] = ',';
        memcpy(out + len, a->mbox->group, g + 1);
        len += g;
        first = false;
    }
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mb_store *net = arg;
    if (net->poll_inflight || net->stopping)
        return;
    poll_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return;
    build_wildmat(net, x->wildmat, sizeof x->wildmat);
    /* nothing selected anywhere: a health check every few seconds keeps gateway.status true */
    if (!x->wildmat[0] && ++net->idle_ticks < HEALTH_EVERY_TICKS) {
        free(x);
        return;
    }
    net->idle_ticks = 0;
    x->net = net;
    x->no_counts = net->poll_no_counts;
    x->want_site = net->read_site;
    if (mb_pool_run(net->pool, poll_work, poll_done, x) != 0) {
        free(x);
        return;
    }
    net->poll_inflight = true;
}

void mb_poller_start(mb_store *net)
{
    net->poll_timer = event_new(net->base, -1, EV_PERSIST, poll_cb, net);
    struct timeval tv = {POLL_INTERVAL_MS / 1000, (POLL_INTERVAL_MS % 1000) * 1000};
    if (net->poll_timer)
        event_add(net->poll_timer, &tv);
}

void mb_poller_stop(mb_store *net)
{
    if (net->poll_timer)
        event_free(net->poll_timer);
    net->poll_timer = NULL;
}

static void status_write(mb_store *net, const char *why)
{
    const pn_config *cfg = net->cfg;
    const pn_site *site = &cfg->sites[net->read_site];
    char path[PATH_MAX + 32], text[1024];
    time_t now = time(NULL);
    struct tm tm;
    char when[64];
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n;
    if (why)
        n = snprintf(text, sizeof text, "DOWN: no news server answers since %s; mailboxes cannot be read (%s)\n",
                     when, why);
    else
        n = snprintf(text, sizeof text, "reading mailboxes from site %s (%s port %s) since %s%s\n", site->name,
                     site->host, site->port, when,
                     net->read_site == 0 ? "" : " -- FALLBACK: the preferred site does not answer");
    snprintf(path, sizeof path, "%s/gateway.status", cfg->state_dir);
    if (n > 0 && pu_write_file_atomic(path, text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1),
                                      0644) == 0)
        net->status_written = true;
    else
        pu_log(PU_WARN, "cannot write %s", path);
}

void mb_status_site_answered(mb_store *net, size_t site)
{
    if (site == net->read_site && net->status_written && !net->sites_down)
        return;
    if (net->sites_down)
        pu_log(PU_INFO, "site %s answers again: reading mailboxes from it", net->cfg->sites[site].name);
    else if (site != net->read_site)
        pu_log(PU_WARN, "reading mailboxes from site %s now (site %s did not answer)", net->cfg->sites[site].name,
               net->cfg->sites[net->read_site].name);
    net->read_site = site;
    net->sites_down = false;
    status_write(net, NULL);
}

void mb_status_sites_down(mb_store *net, const char *why)
{
    if (net->sites_down)
        return;
    pu_log(PU_ERROR, "no news server answers: %s", why);
    net->sites_down = true;
    status_write(net, why);
}
