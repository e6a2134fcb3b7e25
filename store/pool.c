/* store: the connections to the sites and their policy, in one place. A pool keeps at most
 * one connection per configured site, opens them when a verb needs one, chooses the site
 * (one named, the first that answers, or a preferred one), and runs each verb under one
 * rule: a failure on a kept connection is tried once more on a new one, a failure on a new
 * one is the answer. Kept connections fail in two ways a new one does not: the server closed
 * them while idle, and nnrpd (INN 2.7) answers from the view it had when it started — the
 * group list, each group's index, the negative history lookups. The conversations
 * themselves (store.c) know nothing of this. */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    nntp_conn *c;
    time_t since;                  /* connected at */
    char group[PA_GROUP_MAX + 1];  /* selected on c by GROUP or LISTGROUP; "" none known */
} slot;

struct ps_pool {
    const pn_config *cfg;
    unsigned max_age_s;
    slot s[PN_MAX_SITES];
    /* a second connection per site, only for asking whether a site shows an article before
     * posting it there: its nnrpd then remembers that miss, not the posting connection's */
    slot check[PN_MAX_SITES];
    size_t last;          /* the site of the last verb */
    unsigned long lines;  /* lines the running attempt passed to the caller */
    void (*on_any)(void *arg, int status, size_t site, const char *err);
    void *on_any_arg;
};

/* which ps_status values a verb retries or drops the connection on */
#define M(st) (1u << (st))
#define TEMP_OR_FAIL (M(PS_TEMP) | M(PS_FAIL))
/* A read by Message-ID of an article the caller saw listed: once expire has rewritten the
 * history file, a kept nnrpd (INN 2.7) still looks in the old one and answers 430 for every
 * article that arrived since, until the connection ends (measured: test_state_expiry). */
#define NOENT_AGAIN M(PS_NOENT)

ps_pool *ps_pool_new(const pn_config *cfg, unsigned max_age_s)
{
    ps_pool *p = calloc(1, sizeof *p);
    if (p) {
        p->cfg = cfg;
        p->max_age_s = max_age_s;
    }
    return p;
}

static void close_slot(slot *s)
{
    if (s->c)
        nntp_close(s->c);
    s->c = NULL;
    s->group[0] = '\0';
}

void ps_pool_drop(ps_pool *p, size_t site)
{
    for (size_t i = 0; i < PN_MAX_SITES; i++)
        if (site == PS_ANY_SITE || site == i) {
            close_slot(&p->s[i]);
            close_slot(&p->check[i]);
        }
}

void ps_pool_free(ps_pool *p)
{
    if (!p)
        return;
    ps_pool_drop(p, PS_ANY_SITE);
    free(p);
}

void ps_pool_on_connect_any(ps_pool *p, void (*fn)(void *arg, int status, size_t site, const char *err), void *arg)
{
    p->on_any = fn;
    p->on_any_arg = arg;
}

size_t ps_pool_site(const ps_pool *p)
{
    return p->last;
}

void ps_thread_done(void)
{
    nntp_thread_done();
}

static int open_site(ps_pool *p, size_t i, char *err, size_t errlen)
{
    slot *s = &p->s[i];
    s->group[0] = '\0';
    s->since = time(NULL);
    int st = ps_connect(&p->cfg->sites[i], &s->c, err, errlen);
    if (st != PS_OK)
        s->c = NULL;
    return st;
}

/* The first reachable site in configured order, keeping every site's reason in err: the
 * admin needs to see all of them. */
static int open_first(ps_pool *p, size_t *site, char *err, size_t errlen)
{
    const pn_config *cfg = p->cfg;
    if (cfg->n_sites == 0) {
        snprintf(err, errlen, "%s: no [site] sections: postern needs at least one news server", cfg->path);
        return PS_FAIL;
    }
    int st = PS_TEMP;
    size_t used = 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        char why[512];
        st = open_site(p, i, why, sizeof why);
        if (st == PS_OK) {
            *site = i;
            return PS_OK;
        }
        int n = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", why);
        if (n > 0 && (size_t)n < errlen - used)
            used += (size_t)n;
    }
    return st;
}

/* The connection a verb runs on, by the rules of PS_ANY_SITE and PS_PREFER (store.h); *fresh
 * tells whether it was opened just now. */
static int pick(ps_pool *p, size_t where, size_t *site, int *fresh, char *err, size_t errlen)
{
    size_t n = p->cfg->n_sites;
    for (size_t k = 0; k < n; k++)
        if (p->s[k].c && p->max_age_s && time(NULL) - p->s[k].since > (time_t)p->max_age_s)
            close_slot(&p->s[k]);
    *fresh = 0;
    *site = 0;
    if (where < n) {
        *site = where;
        if (p->s[where].c)
            return PS_OK;
        *fresh = 1;
        return open_site(p, where, err, errlen);
    }
    size_t want = where >= PS_PREFER_BASE && where - PS_PREFER_BASE < n ? where - PS_PREFER_BASE : SIZE_MAX;
    if (want != SIZE_MAX) {
        *site = want;
        if (p->s[want].c)
            return PS_OK;
        char why[512];
        if (open_site(p, want, why, sizeof why) == PS_OK) {
            for (size_t k = 0; k < n; k++) /* back on the preferred site: the failover's go */
                if (k != want)
                    close_slot(&p->s[k]);
            *fresh = 1;
            return PS_OK;
        }
    }
    for (size_t k = 0; k < n; k++)
        if (p->s[k].c) {
            *site = k;
            return PS_OK;
        }
    *fresh = 1;
    int st = open_first(p, site, err, errlen);
    if (p->on_any)
        p->on_any(p->on_any_arg, st, *site, err);
    return st;
}

int ps_pool_connect(ps_pool *p, size_t where, char *err, size_t errlen)
{
    int fresh;
    return pick(p, where, &p->last, &fresh, err, errlen);
}

/* One verb's conversation on one connection: a ps_status, err set on failure. */
typedef int (*conv_fn)(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen);

/* Runs a conversation under the pool's rule: on a status in retry, from a kept connection and
 * before any line reached the caller, once more on a new connection. A status in drop
 * leaves the connection in a state not to reuse (mid-command, or gone). */
static int run(ps_pool *p, size_t where, conv_fn conv, void *arg, unsigned retry, unsigned drop, char *err,
               size_t errlen)
{
    int st = PS_TEMP;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t site;
        int fresh;
        st = pick(p, where, &site, &fresh, err, errlen);
        if (st != PS_OK)
            return st;
        p->last = site;
        p->lines = 0;
        st = conv(p, &p->s[site], site, arg, err, errlen);
        if (st == PS_OK)
            return PS_OK;
        int again = !fresh && (retry & M(st)) && p->lines == 0;
        if (again || (drop & M(st)))
            close_slot(&p->s[site]);
        if (!again)
            return st;
    }
    return st;
}

static void answer(nntp_conn *c, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", nntp_last_response(c));
}

/* GROUP on s unless it has the group selected already. */
static int select_group(slot *s, const char *group, ps_group_info *info, char *err, size_t errlen)
{
    if (!info && strcmp(s->group, group) == 0)
        return PS_OK;
    nntp_group_info gi = {0};
    s->group[0] = '\0';
    int st = nntp_group(s->c, group, &gi);
    if (st != NNTP_OK) {
        answer(s->c, err, errlen);
        return ps_map_nntp(st);
    }
    snprintf(s->group, sizeof s->group, "%s", group);
    if (info)
        *info = (ps_group_info){.count = gi.count, .low = gi.low, .high = gi.high};
    return PS_OK;
}

/* ---- GROUP ---- */

typedef struct group_args {
    const char *group;
    ps_group_info *info;
} group_args;

static int group_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    group_args *a = arg;
    return select_group(s, a->group, a->info, err, errlen);
}

int ps_group(ps_pool *p, size_t where, const char *group, ps_group_info *info, char *err, size_t errlen)
{
    group_args a = {group, info};
    int st = run(p, where, group_conv, &a, TEMP_OR_FAIL | M(PS_NOENT), TEMP_OR_FAIL, err, errlen);
    /* a group that was empty when this nnrpd first looked stays empty for it, even after
     * articles arrive: never keep a connection that has seen an empty group */
    if (st == PS_OK && (info->count == 0 || info->high < info->low))
        close_slot(&p->s[p->last]);
    return st;
}

/* ---- the multi-line verbs ---- */

typedef struct lines_args {
    const char *what; /* group or wildmat */
    const char *range;
    ps_line_fn fn;
    void *arg;
    int saw_empty; /* LIST ACTIVE: a listed group is empty */
    ps_line_fn counts_fn; /* LIST ACTIVE: then LIST COUNTS on the same connection */
    int *no_counts;
} lines_args;

typedef struct shim {
    ps_pool *p;
    lines_args *a;
} shim;

static int count_line(void *arg, const char *line, size_t len)
{
    shim *x = arg;
    x->p->lines++;
    return x->a->fn ? x->a->fn(x->a->arg, line, len) : 0;
}

static int over_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)site;
    lines_args *a = arg;
    int st = select_group(s, a->what, NULL, err, errlen);
    if (st != PS_OK)
        return st;
    st = nntp_over(s->c, a->range, count_line, &(shim){p, a});
    if (st != NNTP_OK)
        answer(s->c, err, errlen);
    return ps_map_nntp(st);
}

int ps_over(ps_pool *p, size_t site, const char *group, const char *range, ps_line_fn fn, void *arg, char *err,
            size_t errlen)
{
    lines_args a = {.what = group, .range = range, .fn = fn, .arg = arg};
    return run(p, site, over_conv, &a, TEMP_OR_FAIL, TEMP_OR_FAIL, err, errlen);
}

static int listgroup_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)site;
    lines_args *a = arg;
    s->group[0] = '\0';
    int st = nntp_listgroup(s->c, a->what, count_line, &(shim){p, a});
    if (st != NNTP_OK) {
        answer(s->c, err, errlen);
        return ps_map_nntp(st);
    }
    snprintf(s->group, sizeof s->group, "%s", a->what);
    return PS_OK;
}

int ps_listgroup(ps_pool *p, size_t where, const char *group, ps_line_fn fn, void *arg, char *err, size_t errlen)
{
    lines_args a = {.what = group, .fn = fn, .arg = arg};
    return run(p, where, listgroup_conv, &a, TEMP_OR_FAIL | M(PS_NOENT), TEMP_OR_FAIL, err, errlen);
}

static int active_line(void *arg, const char *line, size_t len)
{
    shim *x = arg;
    char group[PA_GROUP_MAX + 1];
    unsigned long long high, low;
    if (sscanf(line, "%250s %llu %llu", group, &high, &low) == 3 && (high < low || high == 0))
        x->a->saw_empty = 1;
    return count_line(arg, line, len);
}

static int counts_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)site;
    lines_args *a = arg;
    int st = nntp_list_counts(s->c, a->what, count_line, &(shim){p, a});
    if (st == NNTP_OK)
        return PS_OK;
    answer(s->c, err, errlen);
    return st == NNTP_EPERM ? PS_FAIL : PS_TEMP; /* 5xx: a server without LIST COUNTS */
}

static int active_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    lines_args *a = arg;
    int st = nntp_list_active(s->c, a->what, active_line, &(shim){p, a});
    if (st != NNTP_OK) {
        answer(s->c, err, errlen);
        return ps_map_nntp(st);
    }
    if (!a->counts_fn)
        return PS_OK;
    lines_args c = {.what = a->what, .fn = a->counts_fn, .arg = a->arg};
    st = counts_conv(p, s, site, &c, err, errlen);
    if (st == PS_FAIL) {
        *a->no_counts = 1;
        return PS_OK;
    }
    return st;
}

int ps_list_active(ps_pool *p, size_t where, const char *wildmat, ps_line_fn fn, ps_line_fn counts_fn, void *arg,
                   int *no_counts, char *err, size_t errlen)
{
    lines_args a = {.what = wildmat, .fn = fn, .arg = arg, .counts_fn = counts_fn, .no_counts = no_counts};
    int st = run(p, where, active_conv, &a, TEMP_OR_FAIL, TEMP_OR_FAIL, err, errlen);
    /* nnrpd never notices the first article of a group that was empty when it first looked
     * (see ps_group): while a listed group is empty, each listing uses a new connection */
    if (st == PS_OK && a.saw_empty)
        close_slot(&p->s[p->last]);
    return st;
}

int ps_list_counts(ps_pool *p, size_t where, const char *wildmat, ps_line_fn fn, void *arg, char *err,
                   size_t errlen)
{
    lines_args a = {.what = wildmat, .fn = fn, .arg = arg};
    return run(p, where, counts_conv, &a, M(PS_TEMP), M(PS_TEMP), err, errlen);
}

/* ---- STAT, DATE ---- */

static int stat_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    int st = nntp_stat(s->c, arg);
    if (st == NNTP_OK)
        return PS_OK;
    if (st == NNTP_ENOENT)
        return PS_NOENT;
    snprintf(err, errlen, "STAT %s: %s", (const char *)arg, nntp_last_response(s->c));
    return PS_TEMP;
}

int ps_stat(ps_pool *p, size_t where, const char *msgid, char *err, size_t errlen)
{
    return run(p, where, stat_conv, (void *)msgid, M(PS_TEMP), M(PS_TEMP), err, errlen);
}

static int ping_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)arg;
    int code;
    if (nntp_command(s->c, "DATE", &code) == NNTP_OK)
        return PS_OK;
    snprintf(err, errlen, "site %s: %s", p->cfg->sites[site].name, nntp_last_response(s->c));
    return PS_TEMP;
}

int ps_ping(ps_pool *p, size_t where, char *err, size_t errlen)
{
    return run(p, where, ping_conv, NULL, M(PS_TEMP), M(PS_TEMP), err, errlen);
}

/* ---- key records ---- */

typedef struct keyrecord_args {
    const char *address;
    pc_keyrecord *rec;
    char *msgid;
} keyrecord_args;

static int keyrecord_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)site;
    keyrecord_args *a = arg;
    s->group[0] = '\0'; /* LISTGROUP selected the key group */
    return ps_conn_keyrecord(s->c, p->cfg, a->address, a->rec, a->msgid, err, errlen);
}

int ps_fetch_keyrecord(ps_pool *p, size_t where, const char *address, pc_keyrecord *rec, char *msgid, char *err,
                       size_t errlen)
{
    keyrecord_args a = {address, rec, msgid};
    /* nnrpd may not see a group created after the connection opened (INN 2.7 keeps the group
     * list it started with): a new user's key group needs a new connection */
    return run(p, where, keyrecord_conv, &a, TEMP_OR_FAIL | M(PS_NOUSER), TEMP_OR_FAIL, err, errlen);
}

/* ---- posting ---- */

typedef struct post_args {
    const char *headers, *msgid;
    const uint8_t *prefix;
    size_t prefix_len;
    int fd;
    uint64_t len;
    int duplicate; /* ps_store_copy: the POST was answered "duplicate" */
} post_args;

static int post_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    post_args *a = arg;
    return ps_post_envelope(s->c, a->headers, a->prefix, a->prefix_len, a->fd, a->len, err, errlen);
}

/* The link may be mid-article or gone after a failure: it is never reused then. The article's
 * fixed Message-ID makes the retry on a new connection safe. */
int ps_post(ps_pool *p, size_t site, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
            uint64_t len, char *err, size_t errlen)
{
    post_args a = {.headers = headers, .prefix = prefix, .prefix_len = prefix_len, .fd = fd, .len = len};
    return run(p, site, post_conv, &a, TEMP_OR_FAIL, TEMP_OR_FAIL, err, errlen);
}

/* POST, then the first check on the posting connection: PS_OK shown, PS_NOENT not yet. */
static int copy_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    post_args *a = arg;
    int st = post_conv(p, s, site, arg, err, errlen);
    if (st != PS_OK && st != PS_DUP)
        return st;
    a->duplicate = st == PS_DUP;
    return stat_conv(p, s, site, (void *)a->msgid, err, errlen);
}

/* An answer to the POST proves nothing: nnrpd answers 240 for an article it parked because
 * innd could not take it (paused, throttled, stopping), and "435"/"441 435" duplicates come
 * also while a peer's innfeed is still carrying the article, or for one cancelled since.
 * nnrpd caches history lookups, the negative ones too: a Message-ID looked up before the
 * article arrived stays "430" on that connection. So nothing is looked up on the posting
 * connection before the POST (a retry re-sends the article and hears 435; a site that may
 * have it from a peer is asked on its check connection instead), the first check runs on the
 * posting connection, and the re-checks are ps_await_shown's, each on a new one. */
/* Does the site show msgid already? Asked on the site's check connection (made when first
 * needed, renewed after max_age_s like the others); any failure is a "no": the caller posts. */
static int shown_already(ps_pool *p, size_t site, const char *msgid)
{
    slot *c = &p->check[site];
    if (c->c && p->max_age_s && time(NULL) - c->since > (time_t)p->max_age_s)
        close_slot(c);
    char err[256];
    if (!c->c) {
        c->since = time(NULL);
        if (ps_connect(&p->cfg->sites[site], &c->c, err, sizeof err) != PS_OK) {
            c->c = NULL;
            return 0;
        }
    }
    int st = nntp_stat(c->c, msgid);
    if (st != NNTP_OK && st != NNTP_ENOENT)
        close_slot(c);
    return st == NNTP_OK;
}

int ps_store_copy(ps_pool *p, size_t site, const char *headers, const char *msgid, const uint8_t *prefix,
                  size_t prefix_len, int fd, uint64_t len, unsigned confirm_timeout, bool fed, char *err,
                  size_t errlen)
{
    /* Another site holds it, and its innfeed is often faster than this upload: a site that
     * shows it already has its copy (a 223 is proof), and is not sent a second one. */
    if (fed && site < p->cfg->n_sites && shown_already(p, site, msgid)) {
        p->last = site;
        return PS_OK;
    }
    post_args a = {.headers = headers,
                   .msgid = msgid,
                   .prefix = prefix,
                   .prefix_len = prefix_len,
                   .fd = fd,
                   .len = len};
    /* PS_NOENT: the site took it and does not show it; asking again won't */
    int st = run(p, site, copy_conv, &a, TEMP_OR_FAIL, TEMP_OR_FAIL, err, errlen);
    if (st != PS_NOENT)
        return st;
    ps_copy copy = {.msgid = msgid, .duplicate = a.duplicate};
    char last[256];
    if (ps_await_shown(&p->cfg->sites[site], confirm_timeout, &copy, 1, last, sizeof last) == 0)
        return PS_OK;
    snprintf(err, errlen,
             "%s but did not show %s within %u s (parked by nnrpd, or only in flight; last check: %s): not a copy",
             copy.duplicate ? "refused it as a duplicate" : "answered 240", msgid, confirm_timeout, last);
    return PS_NOENT;
}

static void list_add(char *out, size_t cap, size_t *used, const char *sep, const char *fmt, const char *a,
                     const char *b)
{
    if (!out || !cap)
        return;
    int n = snprintf(out + *used, cap - *used, fmt, *used ? sep : "", a, b);
    if (n > 0 && (size_t)n < cap - *used)
        *used += (size_t)n;
}

unsigned ps_store_copies(ps_pool *p, size_t first, const char *headers, const char *msgid, const uint8_t *prefix,
                         size_t prefix_len, int fd, uint64_t len, char *names, size_t nameslen, char *failures,
                         size_t failureslen)
{
    const pn_config *cfg = p->cfg;
    unsigned copies = 0;
    size_t nused = 0, fused = 0;
    if (names && nameslen)
        names[0] = '\0';
    if (failures && failureslen)
        failures[0] = '\0';
    for (size_t k = 0; k < cfg->n_sites && copies < cfg->min_copies; k++) {
        size_t i = (first + k) % cfg->n_sites;
        char err[512] = "";
        /* counts only once the site shows it */
        int st = ps_store_copy(p, i, headers, msgid, prefix, prefix_len, fd, len, cfg->confirm_timeout, copies > 0,
                               err, sizeof err);
        if (st == PS_OK) {
            copies++;
            list_add(names, nameslen, &nused, ", ", "%s%s%s", cfg->sites[i].name, "");
        } else {
            list_add(failures, failureslen, &fused, "; ", "%s%s: %s", cfg->sites[i].name, err);
        }
    }
    return copies;
}

/* ---- reading ---- */

typedef struct read_args {
    const char *group, *id;
    const char *format; /* ps_read_armored */
    size_t min_len;
    const uint8_t *pk, *sk;
    pc_msg_meta *meta;
    pc_sink_fn sink;
    void *arg;
    pu_buf *out;
    char *got;
    char *cancel_lock;
} read_args;

static int read_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)site;
    read_args *a = arg;
    int st = a->group ? select_group(s, a->group, NULL, err, errlen) : PS_OK;
    if (st != PS_OK)
        return st;
    return ps_conn_read_message(s->c, p->cfg, a->id, a->pk, a->sk, a->meta, a->sink, a->arg, err, errlen);
}

int ps_read_message(ps_pool *p, size_t where, const char *group, const char *id_or_number,
                    const uint8_t box_pk[PC_BOX_PK_BYTES], const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta,
                    pc_sink_fn sink, void *arg, char *err, size_t errlen)
{
    read_args a = {.group = group, .id = id_or_number, .pk = box_pk, .sk = box_sk, .meta = meta, .sink = sink,
                   .arg = arg};
    /* the sink has seen part of the message after a failure mid-article: no retry then; a 430
     * comes before any of it (NOENT_AGAIN) */
    return run(p, where, read_conv, &a, NOENT_AGAIN, TEMP_OR_FAIL, err, errlen);
}

static int envelope_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    read_args *a = arg;
    a->out->len = 0;
    return ps_fetch_envelope(s->c, a->id, a->out, a->got, a->cancel_lock, err, errlen);
}

static int state_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    read_args *a = arg;
    a->out->len = 0;
    return ps_fetch_state(s->c, a->id, a->out, err, errlen);
}

int ps_read_state(ps_pool *p, size_t where, const char *msgid, pu_buf *out, char *err, size_t errlen)
{
    read_args a = {.id = msgid, .out = out};
    return run(p, where, state_conv, &a, M(PS_TEMP) | NOENT_AGAIN, M(PS_TEMP), err, errlen);
}

static int armored_conv(ps_pool *p, slot *s, size_t site, void *arg, char *err, size_t errlen)
{
    (void)p, (void)site;
    read_args *a = arg;
    a->out->len = 0;
    return ps_fetch_armored(s->c, a->id, a->format, a->min_len, a->out, a->got, a->cancel_lock, err, errlen);
}

int ps_read_armored(ps_pool *p, size_t where, const char *msgid, const char *format, pu_buf *out,
                    char got[PA_MSGID_MAX], char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen)
{
    read_args a = {.id = msgid, .format = format, .min_len = 1, .out = out, .got = got, .cancel_lock = cancel_lock};
    return run(p, where, armored_conv, &a, M(PS_TEMP) | NOENT_AGAIN, M(PS_TEMP), err, errlen);
}

int ps_read_envelope(ps_pool *p, size_t where, const char *msgid, pu_buf *out, char got[PA_MSGID_MAX],
                     char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen)
{
    read_args a = {.id = msgid, .out = out, .got = got, .cancel_lock = cancel_lock};
    return run(p, where, envelope_conv, &a, M(PS_TEMP) | NOENT_AGAIN, M(PS_TEMP), err, errlen);
}
