/* mailbox: what the news server holds in a user's group — article numbers (the UIDs) and
 * Message-IDs (the key of the user's state) — kept per account and refreshed by scans in a
 * worker: GROUP, then OVER of the new numbers, or of the whole group when articles vanished
 * (expired, cancelled), which the group's low mark or count tells. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"
#include "store/store.h"

typedef struct scan_ctx {
    mb_account *a; /* referenced */
    char group[PA_GROUP_MAX + 1];
    bool first;
    size_t want_site;
    uint64_t old_low, old_high;
    size_t known, known_site; /* the messages the mailbox has, and the site they are from */
    uint64_t known_lines;     /* the overview lines of the group the mailbox has read (state articles too) */
    uint64_t known_gap;       /* what GROUP counts beyond those lines (cancelled, not expired yet) */
    /* results */
    int status; /* PS_* */
    char err[640];
    ps_group_info info;
    size_t site;
    bool full;
    mb_msg *msgs;
    size_t n, cap;
    bool nomem;
    uint64_t over_lines; /* overview lines read, postern's or not */
    bool confirmed;      /* a suspicious result was read again on a new connection */
    uint64_t gen;   /* the mailbox's scan number */
    mb_state_fetch states; /* the replicated state's articles */
} scan_ctx;

size_t mb_mbox_count_up_to(const mb_mbox *m, uint32_t uid)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->msgs[mid].uid <= uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long mb_mbox_find(const mb_mbox *m, uint32_t uid)
{
    size_t k = mb_mbox_count_up_to(m, uid);
    return k > 0 && m->msgs[k - 1].uid == uid ? (long)(k - 1) : -1;
}

static size_t msgid_hash(const char *msgid)
{
    uint32_t h = 2166136261u; /* FNV-1a: Message-IDs are postern's, of a hash already */
    for (const unsigned char *c = (const unsigned char *)msgid; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h;
}

/* The list changed: the index is built again when next asked. */
void mb_mbox_index_drop(mb_mbox *m)
{
    free(m->by_msgid);
    m->by_msgid = NULL;
    m->by_msgid_cap = 0;
}

long mb_mbox_find_msgid(mb_mbox *m, const char *msgid)
{
    if (!m->by_msgid && m->n) {
        size_t cap = 16;
        while (cap < 2 * m->n)
            cap *= 2;
        m->by_msgid = calloc(cap, sizeof *m->by_msgid);
        if (!m->by_msgid) { /* out of memory: the slow way */
            for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->msgs[i].msgid, msgid) == 0)
                    return (long)i;
            return -1;
        }
        m->by_msgid_cap = cap;
        for (size_t i = 0; i < m->n; i++) {
            size_t h = msgid_hash(m->msgs[i].msgid) & (cap - 1);
            while (m->by_msgid[h])
                h = (h + 1) & (cap - 1);
            m->by_msgid[h] = (uint32_t)i + 1;
        }
    }
    if (!m->by_msgid)
        return -1;
    for (size_t h = msgid_hash(msgid) & (m->by_msgid_cap - 1); m->by_msgid[h]; h = (h + 1) & (m->by_msgid_cap - 1))
        if (strcmp(m->msgs[m->by_msgid[h] - 1].msgid, msgid) == 0)
            return (long)m->by_msgid[h] - 1;
    return -1;
}

void mb_mbox_free(mb_mbox *m)
{
    if (!m)
        return;
    mb_mbox_index_drop(m);
    free(m->msgs);
    free(m->arts);
    free(m);
}

/* One overview line. Only postern mail articles are messages; anything else in the group is
 * not shown. */
static int over_line(void *arg, const char *line, size_t len)
{
    scan_ctx *x = arg;
    x->over_lines++;
    uint64_t num;
    const char *id_start;
    size_t idlen;
    if (pa_over_state(line, len, &num, &id_start, &idlen)) {
        mb_replica_fetch_note(&x->states, id_start, idlen);
        return 0;
    }
    if (!pa_over_mail(line, len, &num, &id_start, &idlen) || num > UINT32_MAX)
        return 0;
    if (x->n && x->msgs[x->n - 1].uid >= num)
        return 0; /* out of order: never from INN */
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 256;
        mb_msg *m = realloc(x->msgs, cap * sizeof *m);
        if (!m) {
            x->nomem = true;
            return 1;
        }
        x->msgs = m;
        x->cap = cap;
    }
    mb_msg *m = &x->msgs[x->n++];
    m->uid = (uint32_t)num;
    m->bytes = pa_over_bytes(line, len);
    const char *date;
    size_t date_len;
    int tz;
    if (!pa_over_date(line, len, &date, &date_len) || !mime_date_parse(date, date_len, &m->posted, &tz) ||
        m->posted < 0)
        m->posted = 0;
    memcpy(m->msgid, id_start, idlen);
    m->msgid[idlen] = '\0';
    mstate_msgkey(m->msgid, idlen, m->key);
    return 0;
}

static int over(ps_pool *sites, scan_ctx *x, uint64_t from, uint64_t to)
{
    char range[48], why[256];
    snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, from, to);
    int st = ps_over(sites, x->site, x->group, range, over_line, x, why, sizeof why);
    if (x->nomem) {
        snprintf(x->err, sizeof x->err, "out of memory");
        return PS_FAIL;
    }
    if (st == PS_NOENT) /* 423: no articles in that range */
        return PS_OK;
    if (st != PS_OK) {
        snprintf(x->err, sizeof x->err, "OVER %s in %s: %s", range, x->group, why);
        return PS_TEMP;
    }
    return PS_OK;
}

static void scan_once(scan_ctx *x, ps_pool *sites)
{
    /* store asks a new connection when a kept one says the group is missing: nnrpd (INN 2.7)
     * keeps the group list and each group's index as it first saw them; and it closes one
     * that has seen the group empty, which that nnrpd would go on seeing empty */
    size_t where = PS_PREFER(x->want_site); /* a retry may fall back to another site */
    x->status = ps_pool_connect(sites, where, x->err, sizeof x->err);
    if (x->status != PS_OK)
        return;
    char why[256];
    int st = ps_group(sites, where, x->group, &x->info, why, sizeof why);
    if (st == PS_NOENT) {
        x->status = PS_NOUSER;
        snprintf(x->err, sizeof x->err, "the group %s does not exist on the news server", x->group);
        return;
    }
    if (st != PS_OK) {
        x->status = PS_TEMP;
        snprintf(x->err, sizeof x->err, "GROUP %s: %s", x->group, why);
        return;
    }
    x->site = ps_pool_site(sites);
    if (x->info.count == 0 || x->info.high < x->info.low) {
        x->full = true; /* nothing there (any more) */
        x->n = 0;
        x->status = PS_OK;
        return;
    }
    if (x->site != x->want_site)
        x->first = true; /* another site numbers the articles differently: read it all */
    x->full = x->first || x->info.low != x->old_low || x->info.high < x->old_high;
    if (!x->full) {
        if (x->info.high > x->old_high) {
            x->status = over(sites, x, x->old_high + 1, x->info.high);
            if (x->status != PS_OK)
                return;
        }
        /* articles vanished (a cancel, or expiry inside the range): the count does not add up.
         * INN goes on counting a cancelled article until expireover runs: the gap the last
         * full scan found is part of the sum, or every scan after one expunge (or one state
         * snapshot, which cancels the deltas it covers) read the whole group, twice */
        if (x->known_lines + x->over_lines + x->known_gap != x->info.count) {
            x->full = true;
            x->n = x->over_lines = 0;
        }
    }
    if (x->full && x->info.count > 0 && x->info.high >= x->info.low)
        x->status = over(sites, x, x->info.low, x->info.high);
    else
        x->status = PS_OK;
}

/* A full result that may come from a stale nnrpd: one that read the group's overview before
 * expiry rewrote it, when it was empty, or before a user was deleted and added again, goes
 * on reporting the group as it was then (empty, or articles missing) for as long as it
 * lives. Fewer messages than the mailbox had (from the same site), an empty group, or fewer
 * overview lines than the group's count: expiry and cancels do that too, so only a second
 * look, on a new connection, decides. */
static bool suspicious(const scan_ctx *x)
{
    if (x->status != PS_OK || !x->full)
        return false;
    uint64_t gap = x->site == x->known_site ? x->known_gap : 0;
    return (x->site == x->known_site && x->n < x->known) || x->info.count == 0 || x->over_lines + gap < x->info.count;
}

static void scan_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)cfg;
    scan_ctx *x = j->ctx;
    bool first = x->first;
    scan_once(x, sites);
    if (!suspicious(x))
        goto states;
    /* confirm on a new connection: a mailbox must never lose messages it did not lose */
    ps_pool_drop(sites, x->site);
    x->first = first;
    x->full = false;
    x->n = x->over_lines = 0;
    x->confirmed = true;
    scan_once(x, sites);
states:
    if (x->status == PS_OK)
        mb_replica_fetch_run(&x->states, sites, x->site);
}

static const char busy_text[] = "[UNAVAILABLE] Server busy; try again later";

static void scan_done(mb_job *j)
{
    scan_ctx *x = j->ctx;
    mb_account *a = x->a;
    mb_mbox *m = a->mbox;
    mb_store *st = a->st;
    m->scanning = false;
    a->state_gen++; /* the articles and the state change now: the folders' lists are stale
                       for the waiters woken below, before the watchers hear */
    const char *no_text = NULL;
    char text[300];
    if (x->status == PS_OK) {
        m->lines = x->full ? x->over_lines : m->lines + x->over_lines;
        if (x->full)
            m->gap = x->info.count > x->over_lines ? x->info.count - x->over_lines : 0;
        if (x->full) {
            free(m->arts);
            m->arts = x->msgs;
            m->narts = x->n;
            m->capa = x->cap;
            x->msgs = NULL;
        } else {
            for (size_t i = 0; i < x->n; i++) {
                if (m->narts && m->arts[m->narts - 1].uid >= x->msgs[i].uid)
                    continue;
                if (m->narts == m->capa) {
                    size_t cap = m->capa ? m->capa * 2 : 256;
                    mb_msg *p = realloc(m->arts, cap * sizeof *p);
                    if (!p)
                        break; /* the rest comes with the next scan */
                    m->arts = p;
                    m->capa = cap;
                }
                m->arts[m->narts++] = x->msgs[i];
            }
        }
        m->low = x->info.low;
        m->high = x->info.high;
        m->count = x->info.count;
        pu_log(PU_DEBUG, "%s: %s scan: %zu articles (group %llu-%llu, count %llu)%s", a->address,
               x->full ? "full" : "new-article", m->narts, (unsigned long long)m->low, (unsigned long long)m->high,
               (unsigned long long)m->count, x->confirmed ? ", read twice" : "");
        m->site = x->site;
        mb_status_site_answered(st, x->site);
        mb_replica_scanned(a, &x->states, true);
        m->scanned = true;
    } else {
        pu_log(PU_WARN, "%s: mailbox scan failed: %s", a->address, x->err);
        snprintf(text, sizeof text, "[UNAVAILABLE] The mail store cannot be reached; try again later");
        if (x->status == PS_NOUSER)
            snprintf(text, sizeof text, "[NONEXISTENT] Your mailbox does not exist on this server");
        no_text = m->scanned ? NULL : text;
        mb_replica_scanned(a, &x->states, false);
    }
    mb_account_ref(a); /* the waiters' callbacks may release their references */
    mb_waitlist_wake(&a->scanning, x->gen, a, no_text);
    if (m->rescan) {
        m->rescan = false;
        mb_scan(a);
        if (!m->scanning) /* could not start: nobody may wait for it forever */
            mb_waitlist_wake(&a->scanning, UINT64_MAX, a, m->scanned ? NULL : busy_text);
    }
    mb_account_changed(a);
    free(x->msgs);
    free(x);
    free(j);
    mb_account_release(a); /* the callbacks' guard */
    mb_account_release(a); /* the job's reference */
}

void mb_scan(mb_account *a)
{
    mb_mbox *m = a->mbox;
    if (m->scanning) {
        m->rescan = true;
        return;
    }
    scan_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return;
    x->a = a;
    snprintf(x->group, sizeof x->group, "%s", m->group);
    x->first = !m->scanned || m->force_full;
    x->want_site = a->st->read_site;
    m->force_full = false;
    x->old_low = m->low;
    x->old_high = m->high;
    x->known = m->narts;
    x->known_lines = m->lines;
    x->known_gap = m->gap;
    x->known_site = m->site;
    x->gen = m->scans_started + 1;
    if (mb_replica_fetch_begin(a, &x->states) != 0 || mb_pool_run(a->st->pool, scan_work, scan_done, x) != 0) {
        mb_replica_scanned(a, &x->states, false);
        free(x);
        return;
    }
    m->scans_started = x->gen;
    a->refs++;
    m->scanning = true;
}

bool mb_scan_wait(mb_account *a, mb_waiter *w, void (*fn)(void *arg, mb_account *a, const char *no_text),
                  void *arg)
{
    mb_mbox *m = a->mbox;
    /* a scan in flight may have read the group before the caller's mail arrived: the one
     * after it is the first that surely starts later */
    w->gen = m->scans_started + 1;
    w->a = a;
    w->fn = fn;
    w->arg = arg;
    mb_scan(a);
    if (!m->scanning)
        return false;
    mb_waitlist_add(&a->scanning, w);
    return true;
}

void mb_mbox_article_gone(mb_account *a)
{
    a->mbox->force_full = true;
    mb_scan(a);
}

void mb_mbox_poll_result(mb_account *a, uint64_t high, uint64_t low, uint64_t count)
{
    mb_mbox *m = a->mbox;
    if (!m->scanned || m->scanning)
        return;
    if (high != m->high || low != m->low || count != m->count)
        mb_scan(a);
}
