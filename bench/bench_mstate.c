/* bench_mstate: size and merge cost of the replicated mailbox state (mstate) for a
 * 10,000-message mailbox after 30 simulated days of daily use at three sites, with a daily
 * snapshot. Built with the project (build/bench/bench_mstate), never run by the tests;
 * prints figures, asserts only that the sites agree. Simulated clocks, fixed seed.
 *
 * A day: 30 new messages (every site assigns them as its gateway sees them, after reading
 * the others' deltas, as the gateway will); 10 sessions, each at site 1 (on day 11..13 at
 * site 2: a failover), reading, flagging, answering, tagging, deleting; each session seals
 * one delta; the other sites merge it. At the end of the day site 1 writes a snapshot and
 * the deltas it covers are dropped from the "spool". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "mstate/mstate.h"

#define SITES 3
#define START_MESSAGES 10000
#define DAYS 30
#define PER_DAY_NEW 30
#define SESSIONS 10
#define DAY_MS 86400000ull

static uint8_t key[MSTATE_KEY_BYTES];
static uint64_t rng = 0x5eed;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void msgkey(unsigned n, uint8_t out[MSTATE_MSGKEY_BYTES])
{
    char id[64];
    int len = snprintf(id, sizeof id, "<%u.%08x@mail.example.jp>", n, n * 2654435761u);
    mstate_msgkey(id, (size_t)len, out);
}

static void must(int rc, const char *what)
{
    if (rc != MSTATE_OK) {
        fprintf(stderr, "bench_mstate: %s: %s\n", what, mstate_strerror(rc));
        exit(1);
    }
}

typedef struct article {
    uint8_t *buf;
    size_t len;
    uint16_t origin;
    uint64_t seq;
} article;

static article spool[4096];
static unsigned nspool;
static size_t delta_bytes_total, delta_count;

static void post(uint8_t *buf, size_t len, uint16_t origin, uint64_t seq)
{
    if (nspool == sizeof spool / sizeof spool[0]) {
        fprintf(stderr, "bench_mstate: spool full\n");
        exit(1);
    }
    spool[nspool++] = (article){buf, len, origin, seq};
}

static void merge_bytes(mstate *st, const article *a)
{
    mstate *d = NULL;
    must(mstate_open(a->buf, a->len, key, &d, NULL), "open");
    must(mstate_merge(st, d), "merge");
    mstate_free(d);
}

static void seal_delta(mstate *st, mstate **others, unsigned nothers)
{
    uint8_t *buf;
    size_t len;
    uint64_t seq;
    must(mstate_seal_delta(st, key, &buf, &len, &seq), "seal delta");
    if (!buf)
        return;
    delta_bytes_total += len;
    delta_count++;
    post(buf, len, mstate_site(st), seq);
    for (unsigned i = 0; i < nothers; i++)
        merge_bytes(others[i], &spool[nspool - 1]);
}

/* a uniformly random live message (by UID) of st, or 0 */
typedef struct pick {
    unsigned want, at;
    uint8_t key[MSTATE_MSGKEY_BYTES];
    int found;
} pick;
static int pick_nth(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    (void)uid;
    (void)v;
    pick *p = arg;
    if (p->at++ == p->want) {
        memcpy(p->key, k, MSTATE_MSGKEY_BYTES);
        p->found = 1;
        return 1;
    }
    return 0;
}
static int pick_live(mstate *st, unsigned live, int recent, uint8_t out[MSTATE_MSGKEY_BYTES])
{
    if (!live)
        return 0;
    /* most actions are on recent mail */
    unsigned n = recent && live > 200 ? live - 1 - rnd(200) : rnd(live);
    pick p = {.want = n};
    mstate_foreach_uid(st, MSTATE_INBOX, pick_nth, &p);
    if (p.found)
        memcpy(out, p.key, MSTATE_MSGKEY_BYTES);
    return p.found;
}

static int count_live(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    (void)uid;
    (void)k;
    (void)v;
    (*(unsigned *)arg)++;
    return 0;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    memset(key, 0x42, sizeof key);
    uint32_t uv = mstate_uidvalidity_derive(key, 0);
    mstate *st[SITES];
    for (unsigned i = 0; i < SITES; i++)
        st[i] = mstate_new((uint16_t)(i + 1), uv);
    uint64_t t = 1700000000000ull;
    unsigned next_msg = 0;

    /* day 0: the mailbox as it is, 10,000 messages, most read, some flagged */
    uint8_t(*keys)[MSTATE_MSGKEY_BYTES] = malloc(START_MESSAGES * MSTATE_MSGKEY_BYTES);
    for (unsigned m = 0; m < START_MESSAGES; m++)
        msgkey(next_msg++, keys[m]);
    double import_start = now_s();
    must(mstate_assign(st[0], (const uint8_t(*)[MSTATE_MSGKEY_BYTES])keys, START_MESSAGES, t, NULL), "assign");
    for (unsigned m = 0; m < START_MESSAGES; m++) {
        if (rnd(100) < 85)
            must(mstate_set_flags(st[0], MSTATE_INBOX, keys[m], MSTATE_SEEN, 0, t), "seen");
        if (rnd(100) < 4)
            must(mstate_set_flags(st[0], MSTATE_INBOX, keys[m], MSTATE_FLAGGED, 0, t), "flag");
        if (rnd(100) < 10)
            must(mstate_set_flags(st[0], MSTATE_INBOX, keys[m], MSTATE_ANSWERED, 0, t), "answered");
    }
    free(keys);
    double import_s = now_s() - import_start;
    seal_delta(st[0], &st[1], 2);
    size_t first_delta = spool[0].len;
    size_t snapshots_total = 0, snapshot_last = 0, spool_after_snapshot = 0;
    unsigned dropped = 0, spool_peak = 0, expunged = 0;
    double merge_delta_s = 0, delta_times[DAYS * SESSIONS];
    unsigned merged_deltas = 0;

    for (unsigned day = 1; day <= DAYS; day++) {
        uint64_t day0 = t + day * DAY_MS;
        unsigned active = (day >= 11 && day <= 13) ? 1 : 0; /* failover to site 2 */
        for (unsigned s = 0; s < SESSIONS; s++) {
            uint64_t now = day0 + s * 3600000ull + 8 * 3600000ull;
            /* new mail in this hour: every gateway sees the article, after the other sites'
             * deltas (INN brings the claim with the mail), so only the first claims it */
            unsigned nnew = PER_DAY_NEW / SESSIONS;
            uint8_t nk[PER_DAY_NEW][MSTATE_MSGKEY_BYTES];
            for (unsigned i = 0; i < nnew; i++)
                msgkey(next_msg++, nk[i]);
            mstate *me = st[active];
            mstate *others[SITES - 1];
            for (unsigned i = 0, j = 0; i < SITES; i++)
                if (i != active)
                    others[j++] = st[i];
            must(mstate_assign(me, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])nk, nnew, now, NULL), "assign new");
            unsigned live = 0;
            mstate_foreach_uid(me, MSTATE_INBOX, count_live, &live);
            uint8_t k[MSTATE_MSGKEY_BYTES];
            /* a session: read the new mail and a few old ones, flag, answer, tag, delete */
            for (unsigned i = 0; i < 3; i++)
                if (pick_live(me, live, 1, k))
                    must(mstate_set_flags(me, MSTATE_INBOX, k, MSTATE_SEEN, 0, now + i), "read");
            if (rnd(2) && pick_live(me, live, 1, k))
                must(mstate_set_flags(me, MSTATE_INBOX, k, MSTATE_ANSWERED, 0, now + 10), "answer");
            if (rnd(3) == 0 && pick_live(me, live, 0, k))
                must(mstate_set_flags(me, MSTATE_INBOX, k, MSTATE_FLAGGED, 0, now + 11), "flag");
            if (rnd(5) == 0 && pick_live(me, live, 1, k))
                must(mstate_set_keyword(me, MSTATE_INBOX, k, rnd(2) ? "$Junk" : "$label1", 1, now + 12), "keyword");
            for (unsigned i = 0; i < 3; i++) /* delete: \Deleted then EXPUNGE */
                if (pick_live(me, live, 0, k)) {
                    must(mstate_set_flags(me, MSTATE_INBOX, k, MSTATE_DELETED, 0, now + 20), "deleted");
                    must(mstate_expunge(me, MSTATE_INBOX, k, now + 21), "expunge");
                    expunged++;
                }
            size_t before = nspool;
            mstate *probe = mstate_clone(others[0]); /* as it was before this delta */
            seal_delta(me, others, SITES - 1);
            if (nspool > before) {
                /* the cost of one more delta at a gateway holding the whole mailbox */
                double a = now_s();
                merge_bytes(probe, &spool[nspool - 1]);
                must(mstate_assign(probe, NULL, 0, now, NULL), "assign");
                double took = now_s() - a;
                merge_delta_s += took;
                delta_times[merged_deltas++] = took;
            }
            mstate_free(probe);
            for (unsigned i = 0; i < SITES - 1; i++)
                must(mstate_assign(others[i], (const uint8_t(*)[MSTATE_MSGKEY_BYTES])nk, nnew, now, NULL),
                     "assign elsewhere");
        }
        if (nspool > spool_peak)
            spool_peak = nspool;
        /* the daily snapshot by the site in use; what it covers leaves the spool */
        uint8_t *snap;
        size_t snaplen;
        mstate *writer = st[(day >= 11 && day <= 13) ? 1 : 0];
        must(mstate_seal_snapshot(writer, key, &snap, &snaplen), "snapshot");
        snapshots_total += snaplen;
        snapshot_last = snaplen;
        mstate *s = NULL;
        must(mstate_open(snap, snaplen, key, &s, NULL), "open snapshot");
        unsigned keep = 0;
        for (unsigned i = 0; i < nspool; i++) {
            if (spool[i].seq && mstate_covers(s, spool[i].origin, spool[i].seq)) {
                free(spool[i].buf);
                dropped++;
            } else if (spool[i].seq) {
                spool[keep++] = spool[i];
            } else {
                free(spool[i].buf); /* an older snapshot: superseded */
            }
        }
        nspool = keep;
        mstate_free(s);
        post(snap, snaplen, mstate_site(writer), 0);
        spool_after_snapshot = nspool;
    }

    /* agreement */
    uint8_t d0[32], d1[32];
    for (unsigned i = 1; i < SITES; i++) {
        mstate_digest(st[0], d0);
        mstate_digest(st[i], d1);
        if (memcmp(d0, d1, 32) != 0) {
            fprintf(stderr, "bench_mstate: sites disagree\n");
            return 1;
        }
    }
    unsigned live = 0;
    mstate_foreach_uid(st[0], MSTATE_INBOX, count_live, &live);

    /* cold start: open and merge the last snapshot (and nothing else is on the spool) */
    article *last = &spool[nspool - 1];
    const int reps = 20;
    /* the best of 20: the machine is shared, and the best run is the cost of the code */
    double cold_s = 1e9, seal_s = 1e9, full_merge_s = 1e9;
    for (int r = 0; r < reps; r++) {
        double a = now_s();
        mstate *cold = mstate_new(9, uv);
        merge_bytes(cold, last);
        must(mstate_assign(cold, NULL, 0, t, NULL), "assign");
        mstate_free(cold);
        if (now_s() - a < cold_s)
            cold_s = now_s() - a;
        a = now_s();
        uint8_t *b;
        size_t l;
        must(mstate_seal_snapshot(st[0], key, &b, &l), "snapshot");
        free(b);
        if (now_s() - a < seal_s)
            seal_s = now_s() - a;
        mstate *c = mstate_clone(st[1]);
        a = now_s();
        must(mstate_merge(c, st[0]), "merge");
        if (now_s() - a < full_merge_s)
            full_merge_s = now_s() - a;
        mstate_free(c);
    }
    uint8_t *plain;
    size_t plain_len;
    must(mstate_encode(st[0], MSTATE_SNAPSHOT, &plain, &plain_len), "encode");
    free(plain);

    printf("mailbox: %u messages live, %zu known (%u expunged in 30 days), UIDNEXT %u\n", live, mstate_count(st[0]),
           expunged, mstate_uid_next(st[0], MSTATE_INBOX));
    printf("snapshot: %zu bytes encoded, %zu bytes sealed and padded (%.1f bytes per message)\n", plain_len,
           snapshot_last, (double)plain_len / (double)mstate_count(st[0]));
    printf("first delta (10,000 messages imported with flags): %zu bytes sealed; the import took %.1f ms\n",
           first_delta, import_s * 1e3);
    printf("deltas: %zu in 30 days, %.0f bytes each on average (sealed, padded)\n", delta_count - 1,
           (double)(delta_bytes_total - first_delta) / (double)(delta_count - 1));
    printf("spool: %u state articles at most before a snapshot, %zu after (the snapshot alone);"
           " %u deltas dropped as covered; snapshots %.1f MB in 30 days\n",
           spool_peak, spool_after_snapshot, dropped, snapshots_total / 1e6);
    qsort(delta_times, merged_deltas, sizeof delta_times[0], cmp_double);
    printf("merge one delta into the full state (open + merge + assign): median %.3f ms, mean %.3f ms\n",
           delta_times[merged_deltas / 2] * 1e3, merge_delta_s / merged_deltas * 1e3);
    printf("cold start (open + merge + assign the snapshot into an empty state): %.2f ms\n", cold_s * 1e3);
    printf("seal a snapshot (encode + pad + encrypt): %.2f ms\n", seal_s * 1e3);
    printf("merge two full states (the other site's into a copy of one): %.2f ms\n", full_merge_s * 1e3);
    for (unsigned i = 0; i < SITES; i++)
        mstate_free(st[i]);
    for (unsigned i = 0; i < nspool; i++)
        free(spool[i].buf);
    return 0;
}
