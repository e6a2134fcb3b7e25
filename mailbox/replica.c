/* mailbox: the account's replicated state (docs/design.md "Replicated mailbox state",
 * docs/formats.md section 6). Flags, keywords, expunges and UIDs live in an mstate, a CRDT
 * every gateway holds for the user while they are logged in: local changes go into it and
 * out as sealed delta articles in the user's own group; every scan reads the state articles
 * it has not merged yet. The user's userstate stays what sessions read (flags, keywords,
 * modseq, removed): after a merge it is brought up to the mstate, which moves its modseq, so
 * idling sessions hear of another site's change as of a local one. The list of messages
 * clients see (mb_mbox.msgs) is the group's mail articles that have a UID in the state,
 * sorted by UID: the same numbers at every site. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <event2/event.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

/* A sealed state article waiting to be posted (or posted again). */
typedef struct rep_post {
    struct rep_post *next;
    char msgid[PA_MSGID_MAX];
    char headers[1024];
    uint8_t *bytes;
    size_t len;
    bool delta; /* its Message-ID comes from this site's delta number */
    bool state; /* a delta or snapshot (not a cancel): stored only once a site shows it */
} rep_post;

/* A new message this gateway leaves to another site to number, for a while. */
typedef struct rep_wait {
    uint8_t key[MSTATE_MSGKEY_BYTES];
    uint64_t since_ms;
} rep_wait;

#define SNAPSHOT_AFTER 64 /* deltas read or written since the last snapshot */
#define FLUSH_DELAY_MS 250 /* changes within this long go out as one delta */
/* ... or the newest snapshot is this old: INN expires state articles with the mail (30 days) */
#define SNAPSHOT_MAX_AGE_MS (7ull * 24 * 3600 * 1000)

/* The owner's cancel key of a message this account opened (the loader's hop 2 saw its
 * stream key): an expunge cancels the article with it, at every site. */
typedef struct rep_ckey {
    char msgid[PA_MSGID_MAX];
    uint8_t key[PC_CANCEL_KEY_BYTES];
} rep_ckey;
#define CKEYS_MAX 65536

/* An expunged message whose cancel key is not known yet: loaded to learn it. */
typedef struct rep_cancel_load {
    mb_load_waiter w;
    mb_account *a;
    char msgid[PA_MSGID_MAX];
} rep_cancel_load;

struct mb_replica {
    mstate *ms;
    uint8_t *key; /* sodium_malloc'd: the state key, then the cancel-lock key */
    char (*seen)[PA_MSGID_MAX]; /* state articles merged (or never to be), sorted */
    size_t nseen, capseen;
    char (*retry)[PA_MSGID_MAX]; /* state articles a scan could not read: the next one tries again */
    size_t nretry;
    rep_wait *wait; /* sorted by key */
    size_t nwait;
    struct event *flush_ev, *claim_timer;
    rep_post *posts, **posts_tail;
    bool posting;
    bool projected; /* the user's state was brought up to the mstate once */
    /* the list clients see is rebuilt only when what it is made of changed: the mstate's
     * UIDs and expunges (list_stale), or the group's articles (their fingerprint) */
    bool list_stale;
    bool relist_due; /* a message was filed in the INBOX here: rebuild its list before the watchers hear */
    uint64_t listed_fp[2];
    size_t listed_narts;
    unsigned deltas_since_snapshot;
    bool snapshot_due; /* the local copy held changes no site had seen */
    mstate *restored;  /* the local copy, until the first scan tells whether the group has it all */
    bool post_failed_logged;
    char (*live)[PA_MSGID_MAX]; /* state articles merged or posted since the last snapshot: it
                                   covers them, so it cancels them */
    size_t nlive, caplive;
    uint64_t newest_snapshot_ms; /* the writer's clock of the newest snapshot read or written */
    unsigned cancels_loading; /* rep_cancel_loads in flight */
    uint64_t held_vault;      /* a left client's vault session they still need (0: none) */
    rep_ckey *ckeys; /* in no order; ckslot finds them */
    size_t nckeys, capckeys;
    uint32_t *ckslot; /* open addressing by Message-ID: index + 1, 0 empty; 2 * capckeys slots */
};

#define KEY(r) ((r)->key)
#define CANCEL_KEY(r) ((r)->key + MSTATE_KEY_BYTES)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool seen_has(char (*seen)[PA_MSGID_MAX], size_t n, const char *msgid)
{
    return n && bsearch(msgid, seen, n, sizeof *seen, seen_cmp) != NULL;
}

static void seen_add(struct mb_replica *r, const char *msgid)
{
    size_t lo = 0, hi = r->nseen;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->seen[mid], msgid);
        if (c == 0)
            return;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (r->nseen == r->capseen) {
        size_t cap = r->capseen ? r->capseen * 2 : 16;
        void *p = realloc(r->seen, cap * sizeof *r->seen);
        if (!p)
            return; /* read and merged again next time: a merge is idempotent */
        r->seen = p;
        r->capseen = cap;
    }
    memmove(&r->seen[lo + 1], &r->seen[lo], (r->nseen - lo) * sizeof *r->seen);
    snprintf(r->seen[lo], PA_MSGID_MAX, "%s", msgid);
    r->nseen++;
    if (r->nlive == r->caplive) {
        size_t cap = r->caplive ? r->caplive * 2 : 16;
        void *p = realloc(r->live, cap * sizeof *r->live);
        if (!p)
            return; /* left on the spool until INN expires it */
        r->live = p;
        r->caplive = cap;
    }
    snprintf(r->live[r->nlive++], PA_MSGID_MAX, "%s", msgid);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void release_vault(mb_account *a);
static void claim_cb(evutil_socket_t fd, short what, void *arg);
static uint32_t uid_floor(uint64_t now);

int mb_replica_init(mb_account *a)
{
    struct mb_replica *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->key = sodium_malloc(2 * MSTATE_KEY_BYTES);
    if (!r->key) {
        free(r);
        return -1;
    }
    /* every site derives the same keys from the user's state key (itself from their key pair) */
    crypto_generichash(KEY(r), MSTATE_KEY_BYTES, (const uint8_t *)"postern replicated state v1", 27, a->state_key,
                       VAULT_STATE_KEY_BYTES);
    crypto_generichash(CANCEL_KEY(r), MSTATE_KEY_BYTES, (const uint8_t *)"postern state cancel-lock v1", 28,
                       a->state_key, VAULT_STATE_KEY_BYTES);
    r->ms = mstate_new((uint16_t)a->st->cfg->gateway.site_id, mstate_uidvalidity_derive(KEY(r), 0));
    r->flush_ev = evtimer_new(a->st->base, flush_cb, a);
    r->claim_timer = evtimer_new(a->st->base, claim_cb, a);
    r->posts_tail = &r->posts;
    r->list_stale = true;
    a->rep = r;
    if (!r->ms || !r->flush_ev || !r->claim_timer) {
        mb_replica_free(a);
        return -1;
    }
    /* once per account: a UIDNEXT announced for a folder that has no UIDs yet must be the
     * UID its first message gets (RFC 9051 2.3.1.1) */
    mstate_set_uid_floor(r->ms, uid_floor(now_ms()));
    a->mbox->uidvalidity = mstate_uidvalidity(r->ms);
    a->mbox->uidnext = 1; /* until the first scan */
    return 0;
}

/* ---- posting ---- */

typedef struct post_job {
    mb_account *a; /* referenced; NULL for the last job of a released account */
    char address[PC_ADDRESS_MAX + 1];
    rep_post *posts; /* in order */
    rep_post *failed, **failed_tail;
    size_t site;
    bool reused_number; /* a delta's number was used before: the server remembers its ID */
    char err[256];
} post_job;

static void post_free(rep_post *p)
{
    if (!p)
        return;
    if (p->bytes) {
        sodium_memzero(p->bytes, p->len);
        free(p->bytes);
    }
    free(p);
}

static void post_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    post_job *x = j->ctx;
    x->failed_tail = &x->failed;
    while (x->posts) {
        rep_post *p = x->posts;
        x->posts = p->next;
        p->next = NULL;
        int st = PS_TEMP;
        size_t site = x->site;
        /* the site scans read from first: the article is read there at once */
        for (size_t k = 0; k < cfg->n_sites && st != PS_OK && st != PS_DUP; k++) {
            site = (x->site + k) % cfg->n_sites;
            st = ps_post(sites, site, p->headers, p->bytes, p->len, -1, 0, x->err, sizeof x->err);
            /* a 240 proves nothing: nnrpd parks what innd cannot take now (paused, throttled)
             * and answers 240, and a parked change reaches no other site until someone runs
             * rnews -U there. Only a site that shows it has it; else the next site. */
            ps_copy shown = {.msgid = p->msgid};
            char last[128];
            if (st == PS_OK && p->state && ps_await_shown(&cfg->sites[site], cfg->confirm_timeout, &shown, 1, last, sizeof last)) {
                pu_log(PU_WARN, "%s: site %s answered 240 for %s but does not show it (parked?): %s; trying the next site",
                       x->address, cfg->sites[site].name, p->msgid, last);
                snprintf(x->err, sizeof x->err, "site %s did not show it", cfg->sites[site].name);
                st = PS_TEMP;
            }
        }
        /* a duplicate: an earlier try got through, or (the site does not show it) a delta number
         * this site used before its state was lost, which INN remembers after the article went */
        if (st == PS_DUP && p->delta && ps_stat(sites, site, p->msgid, x->err, sizeof x->err) == PS_NOENT) {
            pu_log(PU_WARN, "%s: %s: this site's delta number was used before (its state_dir lost?); "
                   "a snapshot carries the change instead", x->address, p->msgid);
            x->reused_number = true;
        }
        if (st == PS_OK || st == PS_DUP) {
            /* and to every other site, best effort: INN's feeds would carry it, but a feed
             * that stalls (innfeed backing off a peer, or holding its backlog) held one
             * site's changes from another for minutes; the copy a feed brings later is
             * refused there as a duplicate */
            for (size_t k = 0; k < cfg->n_sites; k++) {
                char err[128];
                int other = k == site ? PS_OK : ps_post(sites, k, p->headers, p->bytes, p->len, -1, 0, err, sizeof err);
                if (other != PS_OK && other != PS_DUP)
                    pu_log(PU_DEBUG, "%s: %s not posted to site %s too (its feed will bring it): %s", x->address,
                           p->msgid, cfg->sites[k].name, err);
            }
            post_free(p);
            continue;
        }
        if (st != PS_TEMP) { /* refused: trying again changes nothing (a snapshot carries a delta) */
            pu_log(PU_WARN, "%s: %s refused by the news server: %s", x->address, p->msgid, x->err);
            post_free(p);
            continue;
        }
        /* in order: a snapshot goes before the cancels of what it covers */
        *x->failed_tail = p;
        x->failed_tail = &p->next;
        while (x->posts) {
            p = x->posts;
            x->posts = p->next;
            p->next = NULL;
            *x->failed_tail = p;
            x->failed_tail = &p->next;
        }
    }
}

static void start_posting(mb_account *a);
static void touch(mb_account *a);

static void post_done(mb_job *j)
{
    post_job *x = j->ctx;
    mb_account *a = x->a;
    if (!a) {
        size_t lost = 0;
        for (rep_post *p = x->failed, *next; p; p = next, lost++) {
            next = p->next;
            post_free(p);
        }
        if (lost)
            pu_log(PU_WARN, "%s: %zu state changes could not be posted (%s); the other sites get them with "
                   "this site's next snapshot", x->address, lost, x->err);
        else
            pu_log(PU_DEBUG, "%s: state articles posted (all) after close", x->address);
        free(x);
        free(j);
        return;
    }
    struct mb_replica *r = a->rep;
    r->posting = false;
    if (x->reused_number) {
        /* numbers from the clock lie above any this site gave before (fewer than one a ms) */
        mstate_skip_deltas(r->ms, now_ms());
        r->snapshot_due = true;
        touch(a);
    }
    pu_log(PU_DEBUG, "%s: state articles posted (%s)", a->address, x->failed ? "some not yet" : "all");
    if (x->failed) { /* back in front, in order */
        rep_post *last = x->failed;
        while (last->next)
            last = last->next;
        last->next = r->posts;
        if (!r->posts)
            r->posts_tail = &last->next;
        r->posts = x->failed;
        if (!r->post_failed_logged)
            pu_log(PU_WARN, "%s: state change not posted yet: %s; tried again every %u s", a->address, x->err,
                   a->st->cfg->gateway.state_save_interval);
        r->post_failed_logged = true;
    } else {
        if (r->post_failed_logged)
            pu_log(PU_INFO, "%s: state changes posted again", a->address);
        r->post_failed_logged = false;
        if (r->posts)
            start_posting(a);
    }
    free(x);
    free(j);
    mb_account_release(a);
}

static post_job *post_job_take(mb_account *a)
{
    struct mb_replica *r = a->rep;
    post_job *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    snprintf(x->address, sizeof x->address, "%s", a->address);
    x->posts = r->posts;
    x->site = a->st->read_site;
    r->posts = NULL;
    r->posts_tail = &r->posts;
    return x;
}

static void start_posting(mb_account *a)
{
    struct mb_replica *r = a->rep;
    if (r->posting || !r->posts || a->st->stopping)
        return;
    post_job *x = post_job_take(a);
    if (!x)
        return;
    x->a = a;
    if (mb_pool_run(a->st->pool, post_work, post_done, x) != 0) { /* busy: the next tick */
        r->posts = x->posts;
        for (r->posts_tail = &r->posts; *r->posts_tail; r->posts_tail = &(*r->posts_tail)->next)
            ;
        free(x);
        return;
    }
    a->refs++;
    r->posting = true;
}

static void queue_post(mb_account *a, const char *msgid, uint8_t *bytes, size_t len, bool delta)
{
    struct mb_replica *r = a->rep;
    rep_post *p = calloc(1, sizeof *p);
    uint8_t ck[PC_CANCEL_KEY_BYTES];
    char lock[PC_CANCEL_TEXT_MAX], extra[PC_CANCEL_TEXT_MAX + 32];
    if (p) {
        /* only the user's gateways can cancel it once a snapshot covers it */
        pc_cancel_owner_key(CANCEL_KEY(r), msgid, ck);
        pc_cancel_lock_text(ck, lock);
        sodium_memzero(ck, sizeof ck);
        snprintf(extra, sizeof extra, "Cancel-Lock: %s\r\n", lock);
        if (pa_state_headers(a->mbox->group, msgid, extra, p->headers, sizeof p->headers) == 0) {
            free(p);
            p = NULL;
        }
    }
    if (!p) {
        pu_log(PU_ERROR, "%s: state change not posted: out of memory", a->address);
        sodium_memzero(bytes, len);
        free(bytes);
        return;
    }
    snprintf(p->msgid, sizeof p->msgid, "%s", msgid);
    p->bytes = bytes;
    p->len = len;
    p->delta = delta;
    p->state = true;
    *r->posts_tail = p;
    r->posts_tail = &p->next;
    seen_add(r, msgid); /* our own: nothing to merge when the scan finds it */
}

/* A delta's Message-ID names its origin and number, so a gateway that would post a second,
 * different delta under a number already used hears "duplicate" from the server (and then
 * numbers its deltas from the clock, post_done). */
static void delta_msgid(struct mb_replica *r, uint64_t seq, char out[PA_MSGID_MAX])
{
    uint8_t in[10], id[20];
    uint16_t site = mstate_site(r->ms);
    in[0] = (uint8_t)(site >> 8);
    in[1] = (uint8_t)site;
    for (int i = 0; i < 8; i++)
        in[2 + i] = (uint8_t)(seq >> (56 - 8 * i));
    crypto_generichash(id, sizeof id, in, sizeof in, KEY(r), MSTATE_KEY_BYTES);
    pa_state_message_id(id, out);
}

static void queue_cancel(mb_account *a, const char *target, const uint8_t key[PC_CANCEL_KEY_BYTES])
{
    struct mb_replica *r = a->rep;
    rep_post *p = calloc(1, sizeof *p);
    uint8_t id[20];
    char key_text[PC_CANCEL_TEXT_MAX];
    static const char body[] = "cancel";
    if (!p || !(p->bytes = malloc(sizeof body))) {
        free(p);
        pu_log(PU_ERROR, "%s: %s not cancelled: out of memory", a->address, target);
        return;
    }
    randombytes_buf(id, sizeof id);
    pa_cancel_message_id(id, p->msgid);
    pc_cancel_key_text(key, key_text);
    size_t ok = pa_cancel_headers(a->mbox->group, target, p->msgid, key_text, p->headers, sizeof p->headers);
    sodium_memzero(key_text, sizeof key_text);
    if (!ok) {
        free(p->bytes);
        free(p);
        return;
    }
    memcpy(p->bytes, body, sizeof body - 1);
    p->len = sizeof body - 1;
    *r->posts_tail = p;
    r->posts_tail = &p->next;
}

static void post_snapshot(mb_account *a)
{
    struct mb_replica *r = a->rep;
    uint8_t *bytes, id[20];
    size_t len;
    int rc = mstate_seal_snapshot(r->ms, KEY(r), &bytes, &len);
    if (rc != MSTATE_OK) {
        pu_log(PU_ERROR, "%s: state snapshot not written: %s", a->address, mstate_strerror(rc));
        return;
    }
    char msgid[PA_MSGID_MAX];
    randombytes_buf(id, sizeof id);
    pa_state_message_id(id, msgid);
    /* the snapshot holds everything merged or written so far: what it covers goes */
    char(*covered)[PA_MSGID_MAX] = r->live;
    size_t ncovered = r->nlive;
    r->live = NULL;
    r->nlive = r->caplive = 0;
    queue_post(a, msgid, bytes, len, false); /* the first of the next round's list */
    for (size_t i = 0; i < ncovered; i++) {
        uint8_t ck[PC_CANCEL_KEY_BYTES];
        pc_cancel_owner_key(CANCEL_KEY(r), covered[i], ck);
        queue_cancel(a, covered[i], ck);
        sodium_memzero(ck, sizeof ck);
    }
    free(covered);
    r->deltas_since_snapshot = 0;
    r->snapshot_due = false;
    r->newest_snapshot_ms = now_ms();
    pu_log(PU_DEBUG, "%s: state snapshot %s (%zu bytes)", a->address, msgid, len);
}

/* Seals what changed into the site's next delta and posts it: once per turn of the loop, so
 * a command's changes travel together. */
static void seal(mb_account *a)
{
    struct mb_replica *r = a->rep;
    if (mstate_has_pending(r->ms)) {
        uint8_t *bytes;
        size_t len;
        uint64_t seq;
        int rc = mstate_seal_delta(r->ms, KEY(r), &bytes, &len, &seq);
        if (rc != MSTATE_OK) {
            pu_log(PU_ERROR, "%s: state change not sealed: %s", a->address, mstate_strerror(rc));
        } else if (bytes) {
            char msgid[PA_MSGID_MAX];
            delta_msgid(r, seq, msgid);
            queue_post(a, msgid, bytes, len, true);
            r->deltas_since_snapshot++;
        }
    }
    if (r->deltas_since_snapshot >= SNAPSHOT_AFTER || r->snapshot_due ||
        (mstate_count(r->ms) && now_ms() - r->newest_snapshot_ms > SNAPSHOT_MAX_AGE_MS))
        post_snapshot(a);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    seal(arg);
    start_posting(arg);
}

static void touch(mb_account *a)
{
    /* changes close together travel in one delta: a POP3 download marks every message
     * \Seen, one RETR after another; the other sites poll once a second anyway */
    if (!evtimer_pending(a->rep->flush_ev, NULL)) {
        struct timeval tv = {0, FLUSH_DELAY_MS * 1000};
        evtimer_add(a->rep->flush_ev, &tv);
    }
}

uint64_t mb_replica_now_ms(void)
{
    return now_ms();
}

struct mstate *mb_replica_state(mb_account *a)
{
    return a->rep ? a->rep->ms : NULL;
}

void mb_replica_changed(mb_account *a)
{
    if (!a->rep)
        return;
    /* no list_stale: folder changes leave the INBOX's numbering alone, so its list stands */
    touch(a);
    mb_account_changed(a);
}

void mb_replica_tick(mb_account *a)
{
    if (a->rep)
        start_posting(a);
}

void mb_replica_free(mb_account *a)
{
    struct mb_replica *r = a->rep;
    if (!r)
        return;
    if (r->ms && mstate_has_pending(r->ms))
        seal(a);
    if (r->posts) {
        size_t n = 0;
        for (const rep_post *p = r->posts; p; p = p->next)
            n++;
        pu_log(PU_DEBUG, "%s: posting %zu state articles after close", a->address, n);
        post_job *x = post_job_take(a);
        if (x && mb_pool_run(a->st->pool, post_work, post_done, x) != 0) {
            pu_log(PU_WARN, "%s: state changes not posted: server busy", a->address);
            for (rep_post *p = x->posts, *next; p; p = next) {
                next = p->next;
                post_free(p);
            }
            free(x);
        }
    }
    for (rep_post *p = r->posts, *next; p; p = next) {
        next = p->next;
        post_free(p);
    }
    release_vault(a);
    if (r->flush_ev)
        event_free(r->flush_ev);
    if (r->claim_timer)
        event_free(r->claim_timer);
    mstate_free(r->ms);
    mstate_free(r->restored);
    sodium_free(r->key);
    if (r->ckeys)
        sodium_memzero(r->ckeys, r->capckeys * sizeof *r->ckeys);
    free(r->ckeys);
    free(r->ckslot);
    free(r->seen);
    free(r->live);
    free(r->retry);
    free(r->wait);
    free(r);
    a->rep = NULL;
}

/* ---- cancelling expunged messages' articles (RFC 8315) ---- */

/* A hash, not a sorted array: a session that opens every message of a large mailbox (a POP3
 * download, a full pull) adds one key per message, and a sorted insert moved half the array
 * each time. */
static size_t ckey_hash(const char *msgid)
{
    size_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)msgid; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

/* The slot holding msgid, or the empty slot where it would go. */
static size_t ckey_slot(const struct mb_replica *r, const char *msgid)
{
    size_t mask = 2 * r->capckeys - 1;
    size_t i = ckey_hash(msgid) & mask;
    while (r->ckslot[i] && strcmp(r->ckeys[r->ckslot[i] - 1].msgid, msgid) != 0)
        i = (i + 1) & mask;
    return i;
}

static long ckey_find(const struct mb_replica *r, const char *msgid)
{
    if (!r->nckeys)
        return -1;
    uint32_t v = r->ckslot[ckey_slot(r, msgid)];
    return v ? (long)v - 1 : -1;
}

/* Empties slot hole; later entries of its probe run move up (no tombstones). */
static void ckey_slot_clear(struct mb_replica *r, size_t hole)
{
    size_t mask = 2 * r->capckeys - 1;
    for (size_t j = (hole + 1) & mask; r->ckslot[j]; j = (j + 1) & mask) {
        size_t home = ckey_hash(r->ckeys[r->ckslot[j] - 1].msgid) & mask;
        /* it stays when its home lies cyclically in (hole, j] */
        bool stays = hole < j ? home > hole && home <= j : home > hole || home <= j;
        if (!stays) {
            r->ckslot[hole] = r->ckslot[j];
            hole = j;
        }
    }
    r->ckslot[hole] = 0;
}

void mb_replica_cancel_key(mb_account *a, const char *msgid, const uint8_t stream_key[PC_STREAM_KEY_BYTES])
{
    struct mb_replica *r = a->rep;
    if (!r || ckey_find(r, msgid) >= 0)
        return;
    if (r->nckeys == r->capckeys) {
        if (r->capckeys >= CKEYS_MAX)
            return; /* an expunge of one of the rest loads it again */
        size_t cap = r->capckeys ? r->capckeys * 2 : 64;
        rep_ckey *p = malloc(cap * sizeof *p); /* not realloc: the old block is wiped */
        uint32_t *slot = calloc(2 * cap, sizeof *slot);
        if (!p || !slot) {
            free(p);
            free(slot);
            return;
        }
        if (r->ckeys) {
            memcpy(p, r->ckeys, r->nckeys * sizeof *p);
            sodium_memzero(r->ckeys, r->capckeys * sizeof *r->ckeys);
        }
        free(r->ckeys);
        free(r->ckslot);
        r->ckeys = p;
        r->ckslot = slot;
        r->capckeys = cap;
        for (size_t i = 0; i < r->nckeys; i++)
            r->ckslot[ckey_slot(r, r->ckeys[i].msgid)] = (uint32_t)i + 1;
    }
    size_t at = r->nckeys;
    snprintf(r->ckeys[at].msgid, sizeof r->ckeys[at].msgid, "%s", msgid);
    pc_cancel_owner_key(stream_key, msgid, r->ckeys[at].key);
    r->ckslot[ckey_slot(r, msgid)] = (uint32_t)at + 1;
    r->nckeys++;
}

/* Posts the cancel of msgid's article; false when its key is not known. */
static bool post_cancel(mb_account *a, const char *msgid)
{
    struct mb_replica *r = a->rep;
    long at = ckey_find(r, msgid);
    if (at < 0)
        return false;
    queue_cancel(a, msgid, r->ckeys[at].key);
    ckey_slot_clear(r, ckey_slot(r, msgid));
    /* the last entry fills the gap */
    size_t last = r->nckeys - 1;
    if ((size_t)at != last) {
        size_t s = ckey_slot(r, r->ckeys[last].msgid);
        r->ckeys[at] = r->ckeys[last];
        r->ckslot[s] = (uint32_t)at + 1;
    }
    /* the key is spent: it is in the cancel's headers now */
    sodium_memzero(&r->ckeys[last], sizeof r->ckeys[last]);
    r->nckeys--;
    pu_log(PU_DEBUG, "%s: cancelling %s (expunged)", a->address, msgid);
    touch(a);
    return true;
}

static void release_vault(mb_account *a)
{
    struct mb_replica *r = a->rep;
    if (r->held_vault && a->st->hooks.vault_logout)
        a->st->hooks.vault_logout(a->st->hooks.ctx, r->held_vault);
    r->held_vault = 0;
}

bool mb_replica_hold_vault(mb_account *a, uint64_t vault_session)
{
    struct mb_replica *r = a->rep;
    if (!r || !r->cancels_loading || r->held_vault || !vault_session || a->readers)
        return false;
    r->held_vault = vault_session;
    return true;
}

uint64_t mb_replica_held_vault(const mb_account *a)
{
    return a->rep ? a->rep->held_vault : 0;
}

static void cancel_loaded(void *arg, mb_plain *p, const char *err)
{
    rep_cancel_load *c = arg;
    mb_account *a = c->a;
    if (p)
        mb_plain_unref(p);
    if (!post_cancel(a, c->msgid))
        pu_log(PU_WARN, "%s: %s expunged but not cancelled: %s", a->address, c->msgid,
               err ? err : "its key is unknown");
    free(c);
    if (--a->rep->cancels_loading == 0)
        release_vault(a);
}

/* The user expunged msgid here: its article goes from every spool. */
static void cancel_expunged(mb_account *a, const char *msgid)
{
    if (post_cancel(a, msgid))
        return;
    /* never opened by this account: a load learns the key (the vault opens its prefix) */
    rep_cancel_load *c = a->readers ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        pu_log(PU_WARN, "%s: %s expunged but not cancelled: no session to open it", a->address, msgid);
        return;
    }
    c->a = a;
    snprintf(c->msgid, sizeof c->msgid, "%s", msgid);
    a->rep->cancels_loading++;
    mb_load(a->readers, msgid, false, &c->w, cancel_loaded, c);
}

void mb_replica_unfiled(mb_account *a, const char *msgid)
{
    uint8_t key[MSTATE_MSGKEY_BYTES];
    mstate_msgkey(msgid, strlen(msgid), key);
    if (a->rep && !mstate_held(a->rep->ms, key)) /* a copy in another folder keeps the article */
        cancel_expunged(a, msgid);
}

void mb_replica_touch(mb_account *a)
{
    if (a->rep)
        touch(a);
}

/* ---- local changes ---- */

/* The mstate follows what the user's state now says of msgid. */
static void mirror(mb_account *a, const char *msgid)
{
    struct mb_replica *r = a->rep;
    uint8_t key[MSTATE_MSGKEY_BYTES];
    mstate_msgkey(msgid, strlen(msgid), key);
    mstate_view v;
    userstate_msg u;
    userstate_get(a->us, msgid, &u);
    uint64_t now = now_ms();
    if (u.removed) {
        mstate_view before;
        bool was = mstate_get(r->ms, MSTATE_INBOX, key, &before) && before.expunged;
        if (mstate_expunge(r->ms, MSTATE_INBOX, key, now) == MSTATE_OK) {
            r->list_stale = true;
            touch(a);
        }
        if (!was)
            mb_replica_unfiled(a, msgid);
        return;
    }
    if (!mstate_get(r->ms, MSTATE_INBOX, key, &v) || v.expunged)
        return;
    unsigned set = u.flags & ~v.flags & MSTATE_FLAGS_ALL, clear = v.flags & ~u.flags & MSTATE_FLAGS_ALL;
    if (set | clear)
        mstate_set_flags(r->ms, MSTATE_INBOX, key, set, clear, now);
    unsigned nk = userstate_keyword_count(a->us);
    for (unsigned k = 0; k < nk; k++) {
        const char *name = userstate_keyword_name(a->us, k);
        int want = us_kw_test(u.keywords, k);
        if (name && want != mstate_keyword_test(r->ms, MSTATE_INBOX, key, name))
            mstate_set_keyword(r->ms, MSTATE_INBOX, key, name, want, now);
    }
    if (mstate_has_pending(r->ms))
        touch(a);
}

int mb_state_store(mb_account *a, const char *msgid, enum userstate_op op, unsigned flags, const uint8_t *keywords)
{
    int rc = userstate_store(a->us, msgid, op, flags, keywords);
    if (rc == US_OK && a->rep)
        mirror(a, msgid);
    return rc;
}

int mb_state_remove(mb_account *a, const char *msgid)
{
    int rc = userstate_remove(a->us, msgid);
    if (rc == US_OK && a->rep)
        mirror(a, msgid);
    return rc;
}

/* ---- reading the other sites' changes ---- */

int mb_replica_fetch_begin(mb_account *a, mb_state_fetch *f)
{
    struct mb_replica *r = a->rep;
    memset(f, 0, sizeof *f);
    f->key = sodium_malloc(MSTATE_KEY_BYTES);
    f->seen = malloc((r->nseen ? r->nseen : 1) * sizeof *f->seen);
    if (!f->key || !f->seen)
        return -1;
    memcpy(f->key, KEY(r), MSTATE_KEY_BYTES);
    if (r->nseen)
        memcpy(f->seen, r->seen, r->nseen * sizeof *f->seen);
    f->nseen = r->nseen;
    for (size_t i = 0; i < r->nretry; i++)
        mb_replica_fetch_note(f, r->retry[i], strlen(r->retry[i]));
    return f->nomem ? -1 : 0;
}

void mb_replica_fetch_note(mb_state_fetch *f, const char *msgid, size_t len)
{
    char id[PA_MSGID_MAX];
    if (len >= sizeof id)
        return;
    memcpy(id, msgid, len);
    id[len] = '\0';
    if (seen_has(f->seen, f->nseen, id))
        return;
    for (size_t i = 0; i < f->nwant; i++) /* a full scan after a new-article one lists it again */
        if (strcmp(f->want[i], id) == 0)
            return;
    if (f->nwant == f->capwant) {
        size_t cap = f->capwant ? f->capwant * 2 : 8;
        void *p = realloc(f->want, cap * sizeof *f->want);
        if (!p) {
            f->nomem = true;
            return;
        }
        f->want = p;
        f->capwant = cap;
    }
    memcpy(f->want[f->nwant++], id, len + 1);
}

void mb_replica_fetch_run(mb_state_fetch *f, ps_pool *sites, size_t site)
{
    if (!f->nwant)
        return;
    f->opened = calloc(f->nwant, sizeof *f->opened);
    f->done = calloc(f->nwant, sizeof *f->done);
    if (!f->opened || !f->done) {
        f->nomem = true;
        return;
    }
    pu_buf b = {0};
    for (size_t i = 0; i < f->nwant; i++) {
        char err[256];
        int st = ps_read_state(sites, PS_PREFER(site), f->want[i], &b, err, sizeof err);
        if (st == PS_NOENT || st == PS_BADMSG) { /* cancelled since, or not ours: never mind */
            f->done[i] = true;
            continue;
        }
        if (st != PS_OK)
            continue; /* the next scan tries again */
        mstate *o = NULL;
        mstate_info info;
        int rc = mstate_open((const uint8_t *)b.data, b.len, f->key, &o, &info);
        if (rc == MSTATE_OK && info.kind == MSTATE_SNAPSHOT) {
            /* a state that only ever numbered mail has no clock yet: taken as new */
            uint64_t ms = mstate_clock(o).ms ? mstate_clock(o).ms : now_ms();
            if (ms > f->snapshot_ms)
                f->snapshot_ms = ms;
        }
        f->done[i] = true;
        if (rc != MSTATE_OK) {
            pu_log(PU_WARN, "state article %s does not open: %s (forged, or another user's)", f->want[i],
                   mstate_strerror(rc));
            continue;
        }
        f->opened[f->nopened++] = o;
    }
    pu_buf_free(&b);
}

static int wait_cmp(const void *a, const void *b)
{
    return memcmp(((const rep_wait *)a)->key, ((const rep_wait *)b)->key, MSTATE_MSGKEY_BYTES);
}

static int uid_cmp(const void *a, const void *b)
{
    uint32_t x = ((const mb_msg *)a)->uid, y = ((const mb_msg *)b)->uid;
    return x < y ? -1 : x > y;
}

/* New mail: numbered here at once (site 1, or no delay), or after the other sites had
 * (site_id - 1) * uid_claim_delay seconds to number it (docs/design.md "Who assigns"). */
/* The first UID of a numbering begun afresh: the seconds since 2020-01-01 UTC. A user who
 * does not log in for 30 days leaves no state article on the spool (INN expired them with the
 * mail they numbered), and the state then begins anew under the same UIDVALIDITY; starting
 * at the clock keeps its UIDs above every UID an earlier state gave, as long as that one gave
 * fewer than one a second on average. */
static uint32_t uid_floor(uint64_t now)
{
    const uint64_t since = 1577836800; /* 2020-01-01T00:00:00Z */
    uint64_t s = now / 1000;
    return s > since ? (uint32_t)(s - since < MSTATE_UID_FLOOR_MAX ? s - since : MSTATE_UID_FLOOR_MAX) : 1;
}

static void assign(mb_account *a, uint64_t now)
{
    struct mb_replica *r = a->rep;
    const mb_mbox *m = a->mbox;
    const pn_gateway *g = &a->st->cfg->gateway;
    uint64_t delay = g->site_id <= 1 ? 0 : (uint64_t)(g->site_id - 1) * g->uid_claim_delay * 1000u;
    uint8_t(*keys)[MSTATE_MSGKEY_BYTES] = malloc((m->narts ? m->narts : 1) * sizeof *keys);
    rep_wait *wait = malloc((m->narts ? m->narts : 1) * sizeof *wait);
    size_t *seed = malloc((m->narts ? m->narts : 1) * sizeof *seed);
    if (!keys || !wait || !seed) {
        free(keys), free(wait), free(seed);
        return; /* the next scan */
    }
    size_t nkeys = 0, nwait = 0, nseed = 0;
    uint64_t next_due = 0;
    for (size_t i = 0; i < m->narts; i++) {
        const mb_msg *art = &m->arts[i];
        mstate_view v;
        if (mstate_get(r->ms, MSTATE_INBOX, art->key, &v))
            continue;
        userstate_msg u;
        /* a message the user's state knows but the replicated one does not: flags from before
         * the state was replicated, or changes of this site's never posted */
        if (userstate_get(a->us, art->msgid, &u) && (u.removed || u.flags || u.modseq)) {
            if (u.removed) {
                mstate_expunge(r->ms, MSTATE_INBOX, art->key, now);
                r->list_stale = true;
                continue;
            }
            seed[nseed++] = i;
        }
        if (delay) {
            rep_wait k;
            memcpy(k.key, art->key, sizeof k.key);
            rep_wait *old = r->nwait ? bsearch(&k, r->wait, r->nwait, sizeof *r->wait, wait_cmp) : NULL;
            /* from when the article was posted, not from when this account was opened: each
             * short session (a POP3 poll) opens it afresh, and the mail of a site that died
             * before it numbered anything would never show here */
            uint64_t posted = art->posted > 0 ? (uint64_t)art->posted * 1000u : now;
            k.since_ms = old ? old->since_ms : posted < now ? posted : now;
            if (now - k.since_ms < delay) {
                wait[nwait++] = k;
                uint64_t due = k.since_ms + delay;
                if (!next_due || due < next_due)
                    next_due = due;
                continue;
            }
        }
        memcpy(keys[nkeys++], art->key, MSTATE_MSGKEY_BYTES);
    }
    if (nkeys || mstate_homeless(r->ms)) {
        size_t assigned = 0;
        int rc = mstate_assign(r->ms, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])keys, nkeys, now, &assigned);
        r->list_stale = true;
        if (rc != MSTATE_OK)
            pu_log(PU_ERROR, "%s: new mail not numbered: %s", a->address, mstate_strerror(rc));
        else if (assigned)
            pu_log(PU_DEBUG, "%s: %zu UIDs given out", a->address, assigned);
    }
    for (size_t k = 0; k < nseed; k++) {
        const mb_msg *art = &m->arts[seed[k]];
        mstate_view v;
        if (mstate_get(r->ms, MSTATE_INBOX, art->key, &v))
            mirror(a, art->msgid);
    }
    qsort(wait, nwait, sizeof *wait, wait_cmp);
    free(r->wait);
    r->wait = wait;
    r->nwait = nwait;
    evtimer_del(r->claim_timer);
    if (next_due) {
        uint64_t in = next_due > now ? next_due - now : 0;
        struct timeval tv = {(time_t)(in / 1000), (suseconds_t)(in % 1000) * 1000};
        evtimer_add(r->claim_timer, &tv);
    }
    free(keys);
    free(seed);
    if (mstate_has_pending(r->ms))
        touch(a);
}

/* The messages clients see: the articles with a UID, by UID. A message that lost its UID
 * (a conflict) or was expunged elsewhere is gone from the list: views look (gone_gen). */
static void relist(mb_account *a)
{
    struct mb_replica *r = a->rep;
    mb_mbox *m = a->mbox;
    mb_msg *list = malloc((m->narts ? m->narts : 1) * sizeof *list);
    if (!list)
        return; /* the old list stays until the next scan */
    size_t n = 0;
    for (size_t i = 0; i < m->narts; i++) {
        mstate_view v;
        if (mstate_get(r->ms, MSTATE_INBOX, m->arts[i].key, &v) && v.uid && !v.expunged) {
            list[n] = m->arts[i];
            list[n++].uid = v.uid;
        }
    }
    qsort(list, n, sizeof *list, uid_cmp);
    bool gone = false;
    for (size_t i = 0, k = 0; i < m->n && !gone; i++) {
        while (k < n && list[k].uid < m->msgs[i].uid)
            k++;
        gone = k == n || list[k].uid != m->msgs[i].uid || strcmp(list[k].msgid, m->msgs[i].msgid) != 0;
    }
    if (gone)
        m->gone_gen++;
    free(m->msgs);
    m->msgs = list;
    m->n = n;
    m->cap = m->narts ? m->narts : 1;
    mb_mbox_index_drop(m);
    m->uidvalidity = mstate_uidvalidity(r->ms);
    m->uidnext = mstate_uid_next(r->ms, MSTATE_INBOX);
    if (n && list[n - 1].uid >= m->uidnext)
        m->uidnext = list[n - 1].uid + 1;
}

void mb_replica_relist(mb_account *a)
{
    if (a->rep)
        a->rep->relist_due = a->rep->list_stale = true;
}

void mb_replica_relist_due(mb_account *a)
{
    if (a->rep && a->rep->relist_due && a->mbox->scanned) {
        a->rep->relist_due = false;
        relist(a);
    }
}

/* The user's state (what sessions read) is brought up to the mstate. */
static void project(mb_account *a)
{
    struct mb_replica *r = a->rep;
    const mb_mbox *m = a->mbox;
    /* keywords enter the user's table only when a message has them: the mstate's table only
     * grows, the user's forgets names no message uses (userstate_prune) */
    for (size_t i = 0; i < m->narts; i++) {
        const mb_msg *art = &m->arts[i];
        mstate_view v;
        if (!mstate_get(r->ms, MSTATE_INBOX, art->key, &v))
            continue;
        userstate_msg u;
        userstate_get(a->us, art->msgid, &u);
        if (v.expunged) {
            if (!u.removed)
                userstate_remove(a->us, art->msgid);
            continue;
        }
        if (u.removed) { /* removed here, never posted: it is now */
            mstate_expunge(r->ms, MSTATE_INBOX, art->key, now_ms());
            r->list_stale = true;
            touch(a);
            continue;
        }
        uint8_t kw[US_KEYWORD_SET_BYTES];
        mb_state_keywords(a, MSTATE_INBOX, art->key, kw);
        if (u.flags == v.flags && memcmp(u.keywords, kw, sizeof kw) == 0)
            continue;
        userstate_store(a->us, art->msgid, US_REPLACE, v.flags, kw);
    }
}

typedef struct spool_keys {
    const mb_mbox *m;
    uint8_t (*keys)[MSTATE_MSGKEY_BYTES]; /* the scan's, sorted: built at the first question */
    bool built;
} spool_keys;

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, MSTATE_MSGKEY_BYTES);
}

static int on_spool(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    spool_keys *k = arg;
    if (!k->built) {
        k->built = true;
        if (!(k->keys = malloc((k->m->narts ? k->m->narts : 1) * MSTATE_MSGKEY_BYTES)))
            return 1; /* out of memory: keep everything */
        for (size_t i = 0; i < k->m->narts; i++)
            memcpy(k->keys[i], k->m->arts[i].key, MSTATE_MSGKEY_BYTES);
        qsort(k->keys, k->m->narts, MSTATE_MSGKEY_BYTES, key_cmp);
    }
    return !k->keys || (k->m->narts && bsearch(key, k->keys, k->m->narts, MSTATE_MSGKEY_BYTES, key_cmp));
}

/* Entries of messages this site's group no longer holds leave the mstate once INN has surely
 * expired them everywhere, or the state would grow with every message
 * ever received. Before the numbering, so a forgotten message another site's older snapshot
 * brings back is dropped again rather than given a UID. */
static void forget_expired(mb_account *a, uint64_t now)
{
    if (!a->mbox->scanned)
        return; /* no listing to go by */
    /* INN expires mail retention_days after it arrived at a site; twice that leaves room for
     * a site that got an article late (a long partition) */
    unsigned days = 2 * a->st->cfg->gateway.retention_days;
    spool_keys k = {.m = a->mbox};
    size_t n = 0;
    int rc = mstate_forget(a->rep->ms, on_spool, &k, now, days, &n);
    free(k.keys);
    if (rc != MSTATE_OK)
        pu_log(PU_WARN, "%s: expired messages not forgotten: %s", a->address, mstate_strerror(rc));
    else if (n)
        pu_log(PU_INFO, "replicated state of %s: forgot %zu messages gone for %u days", a->address, n, days);
    if (n)
        a->rep->list_stale = true;
}

/* Order-free, so a full scan that read the same articles again matches. */
static void arts_fingerprint(const mb_mbox *m, uint64_t fp[2])
{
    fp[0] = fp[1] = 0;
    for (size_t i = 0; i < m->narts; i++) {
        uint64_t x, y;
        memcpy(&x, m->arts[i].key, 8);
        memcpy(&y, m->arts[i].key + 8, 8);
        fp[0] += x ^ m->arts[i].bytes; /* the sizes are copied into the list too */
        fp[1] ^= y;
    }
}

static void settle(mb_account *a, bool merged)
{
    struct mb_replica *r = a->rep;
    uint64_t now = now_ms();
    forget_expired(a, now);
    assign(a, now);
    if (merged || !r->projected) {
        project(a);
        r->projected = true;
    }
    /* most scans (every session's SELECT, our own deltas coming back) change nothing:
     * rebuilding and sorting the list each time allocated and freed the whole list, which
     * showed as memory during a login storm */
    uint64_t fp[2];
    arts_fingerprint(a->mbox, fp);
    if (!r->list_stale && a->mbox->narts == r->listed_narts && fp[0] == r->listed_fp[0] && fp[1] == r->listed_fp[1])
        return;
    relist(a);
    r->list_stale = false;
    r->listed_narts = a->mbox->narts;
    memcpy(r->listed_fp, fp, sizeof fp);
}

static void claim_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    mb_account *a = arg;
    settle(a, false);
    mb_account_changed(a);
}

static void check_restored(mb_account *a, const mb_state_fetch *f);

void mb_replica_scanned(mb_account *a, mb_state_fetch *f, bool ok)
{
    struct mb_replica *r = a->rep;
    size_t merged = 0;
    free(r->retry);
    r->retry = NULL;
    r->nretry = 0;
    if (r->restored && ok)
        check_restored(a, f);
    for (size_t i = 0; i < f->nopened; i++) {
        int rc = mstate_merge(r->ms, f->opened[i]);
        r->list_stale = true; /* a failed merge may have joined part of it */
        if (rc == MSTATE_OK)
            merged++;
        else
            pu_log(PU_WARN, "%s: a state article does not merge: %s", a->address, mstate_strerror(rc));
        mstate_free(f->opened[i]);
    }
    size_t nretry = 0;
    for (size_t i = 0; i < f->nwant; i++)
        if (f->done && f->done[i])
            seen_add(r, f->want[i]);
        else
            nretry++;
    if (nretry && (r->retry = malloc(nretry * sizeof *r->retry)))
        for (size_t i = 0; i < f->nwant; i++)
            if (!(f->done && f->done[i]))
                memcpy(r->retry[r->nretry++], f->want[i], PA_MSGID_MAX);
    r->deltas_since_snapshot += (unsigned)merged;
    if (f->snapshot_ms > r->newest_snapshot_ms)
        r->newest_snapshot_ms = f->snapshot_ms;
    if (f->snapshot_ms)
        r->deltas_since_snapshot = 0; /* another site compacted: one snapshot a round, not one per site */
    if (merged)
        pu_log(PU_DEBUG, "%s: merged %zu state articles", a->address, merged);
    if (ok) {
        settle(a, merged > 0);
        if (merged)
            touch(a); /* a snapshot may be due */
    }
    free(f->want);
    free(f->opened);
    free(f->done);
    free(f->seen);
    if (f->key)
        sodium_free(f->key);
    memset(f, 0, sizeof *f);
}

/* ---- the local copy ---- */

int mb_replica_seal_local(mb_account *a, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!a->rep || !mstate_count(a->rep->ms))
        return 0;
    return mstate_seal_snapshot(a->rep->ms, KEY(a->rep), out, len) == MSTATE_OK ? 0 : -1;
}

static int local_path(const pn_config *cfg, const char *address, const uint8_t *state_key, char *out, size_t cap,
                      char *err, size_t errlen)
{
    char base[PATH_MAX];
    if (userstate_path(cfg->state_dir, address, state_key, base, sizeof base, err, errlen) != US_OK)
        return -1;
    if ((size_t)snprintf(out, cap, "%s.mstate", base) >= cap) {
        snprintf(err, errlen, "state path too long");
        return -1;
    }
    return 0;
}

int mb_replica_file_write(const pn_config *cfg, const char *address, const uint8_t *state_key, const uint8_t *bytes,
                          size_t len, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    if (local_path(cfg, address, state_key, path, sizeof path, err, errlen) != 0)
        return -1;
    /* the old copy or the new one, never half of one */
    if (pu_write_file_atomic(path, bytes, len, 0600) != 0) {
        snprintf(err, errlen, "replicated state not kept locally: %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int mb_replica_file_read(const pn_config *cfg, const char *address, const uint8_t *state_key, uint8_t **out,
                         size_t *len, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    *out = NULL;
    *len = 0;
    if (local_path(cfg, address, state_key, path, sizeof path, err, errlen) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    uint8_t *b = NULL;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || (uint64_t)sb.st_size > MSTATE_ENCODED_MAX + 4096 ||
        !(b = malloc((size_t)sb.st_size))) {
        snprintf(err, errlen, "%s: cannot be read", path);
        close(fd);
        return -1;
    }
    size_t off = 0, want = (size_t)sb.st_size;
    while (off < want) {
        ssize_t n = read(fd, b + off, want - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    if (off != want) {
        free(b);
        snprintf(err, errlen, "%s: short read", path);
        return -1;
    }
    *out = b;
    *len = want;
    return 0;
}

void mb_replica_restore(mb_account *a, const uint8_t *bytes, size_t len)
{
    struct mb_replica *r = a->rep;
    mstate *o = NULL;
    if (!r || !bytes)
        return;
    int rc = mstate_open(bytes, len, KEY(r), &o, NULL);
    if (rc == MSTATE_OK)
        rc = mstate_merge(r->ms, o);
    r->list_stale = true;
    if (rc != MSTATE_OK)
        pu_log(PU_WARN, "%s: the local copy of the replicated state is not used: %s", a->address,
               mstate_strerror(rc));
    /* whether it holds what no site has seen (changes not posted before the last exit) the
     * first scan tells: a snapshot at every cold login would be a full copy each time */
    if (rc == MSTATE_OK) {
        mstate_free(r->restored);
        r->restored = o;
    } else {
        mstate_free(o);
    }
}

/* After the first scan since the local copy was restored: a snapshot is due when the copy
 * holds something the group's state articles do not (all of them were read: the scan reads
 * every state article the account has not merged, and a new account has merged none). */
static void check_restored(mb_account *a, const mb_state_fetch *f)
{
    struct mb_replica *r = a->rep;
    size_t nretry = 0;
    for (size_t i = 0; i < f->nwant; i++)
        nretry += !(f->done && f->done[i]);
    mstate *spool = mstate_new(mstate_site(r->ms), mstate_uidvalidity(r->ms)), *both = NULL;
    bool due = true;
    if (spool && !nretry) {
        int rc = MSTATE_OK;
        for (size_t i = 0; i < f->nopened && rc == MSTATE_OK; i++)
            rc = mstate_merge(spool, f->opened[i]);
        uint8_t d1[32], d2[32];
        if (rc == MSTATE_OK && (both = mstate_clone(spool)) && mstate_merge(both, r->restored) == MSTATE_OK &&
            mstate_digest(spool, d1) == MSTATE_OK && mstate_digest(both, d2) == MSTATE_OK)
            due = memcmp(d1, d2, sizeof d1) != 0;
    }
    if (due) {
        r->snapshot_due = true;
        pu_log(PU_DEBUG, "%s: the local copy holds changes the group does not: a snapshot is due", a->address);
    }
    mstate_free(both);
    mstate_free(spool);
    mstate_free(r->restored);
    r->restored = NULL;
}

/* ---- APPEND (append.c) ---- */

int mb_replica_append(mb_account *a, uint32_t folder, const char *msgid, unsigned flags, const char *const *keywords,
                      size_t nkeywords, uint32_t *uid)
{
    struct mb_replica *r = a->rep;
    *uid = 0;
    if (!r)
        return MSTATE_EINVAL;
    uint8_t key[MSTATE_MSGKEY_BYTES];
    mstate_msgkey(msgid, strlen(msgid), key);
    uint64_t now = now_ms();
    int rc = mstate_append(r->ms, folder, key, flags & MSTATE_FLAGS_ALL, now, uid);
    for (size_t k = 0; rc == MSTATE_OK && k < nkeywords; k++)
        if (mstate_set_keyword(r->ms, folder, key, keywords[k], 1, now) != MSTATE_OK)
            pu_log(PU_INFO, "%s: keyword %s of an appended message not kept", a->address, keywords[k]);
    if (rc == MSTATE_OK && folder == MSTATE_INBOX) {
        /* sessions read the INBOX's flags from the user's state */
        uint8_t kw[US_KEYWORD_SET_BYTES] = {0};
        for (size_t k = 0; k < nkeywords; k++) {
            unsigned idx;
            if (mstate_keyword_test(r->ms, folder, key, keywords[k]) && userstate_keyword(a->us, keywords[k], &idx) == US_OK)
                us_kw_put(kw, idx, 1);
        }
        userstate_store(a->us, msgid, US_REPLACE, flags & MSTATE_FLAGS_ALL, kw);
    }
    r->list_stale = true;
    touch(a);
    mb_account_changed(a);
    return rc;
}
