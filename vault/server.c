/* vault: the key-holder's event loop. One thread polls the socket to the network process and
 * the pool's wake pipe; everything but Argon2id runs here, so the cache, sessions and counters
 * need no locks. A KDF never blocks the loop, and neither does a delayed reply: replies wait in
 * a timer list. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "vault/internal.h"

#define READ_BURST 64 /* frames read per wake-up, so finished KDFs are not starved */
#define OUT_MAX 4096  /* queued replies beyond which we stop reading requests (back-pressure) */

typedef struct out_frame {
    struct out_frame *next;
    int64_t at; /* delayed replies: when to send */
    size_t len;
    uint8_t buf[]; /* may hold a state or stream key: wiped before free */
} out_frame;

typedef struct server {
    const vault_config *cfg;
    int fd;
    vp_pool *pool;
    vk_keys keys;
    vt_table *thr;
    uint8_t *vkey;   /* verifier key, random per process, sodium_malloc'd */
    uint8_t *rbuf;   /* one received frame (passwords): sodium_malloc'd, wiped after each */
    vp_job *pending, *pending_tail;
    vp_job *running;
    size_t n_pending, n_waiting, n_running;
    uint64_t max_mem;
    unsigned pool_size;
    out_frame *out, *out_tail;
    size_t n_out;
    out_frame *delayed; /* sorted by at */
    vault_stats st;
    int64_t kdf_ms; /* recent time from accepting a login to its KDF's end (moving average) */
    int broken; /* the peer is gone: stop */
} server;

void vault_config_init(vault_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->kdf_pool_memory = 256ull << 20;
    cfg->max_threads = cores > 0 ? (unsigned)cores : 1;
    cfg->queue_max = 64;
    cfg->max_sessions = 65536;
    cfg->grace_ms = 30000;
    cfg->fail_delay_ms = 1000;
    cfg->throttle_after = 5;
    cfg->throttle_window_s = 900;
    cfg->throttle_base_ms = 1000;
    cfg->throttle_max_ms = 30000;
}

/* ---- replies ---- */

static void frame_free(out_frame *f)
{
    sodium_memzero(f->buf, f->len);
    free(f);
}

static void flush(server *s)
{
    while (s->out && !s->broken) {
        out_frame *f = s->out;
        /* SOCK_SEQPACKET: a send is all or nothing, so there are no partial frames to track */
        ssize_t n = send(s->fd, f->buf, f->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            return;
        if (n < 0) {
            s->broken = 1; /* EPIPE, ECONNRESET: the network process is gone */
            return;
        }
        s->out = f->next;
        if (!s->out)
            s->out_tail = NULL;
        s->n_out--;
        frame_free(f);
    }
}

/* Queues frame (len bytes of buf, wiped here) now or delay_ms later. */
static void reply(server *s, uint8_t *buf, size_t len, unsigned delay_ms)
{
    out_frame *f = malloc(sizeof *f + len);
    if (!f) {
        /* Without memory for the reply the request would hang in the network process forever;
         * dropping the connection makes it fail loudly instead. */
        fprintf(stderr, "postern vault: out of memory for a reply\n");
        s->broken = 1;
        sodium_memzero(buf, len);
        return;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->buf, buf, len);
    sodium_memzero(buf, len);
    if (delay_ms) {
        f->at = vk_now_ms() + delay_ms;
        out_frame **pp = &s->delayed;
        while (*pp && (*pp)->at <= f->at)
            pp = &(*pp)->next;
        f->next = *pp;
        *pp = f;
        return;
    }
    if (s->out_tail)
        s->out_tail->next = f;
    else
        s->out = f;
    s->out_tail = f;
    s->n_out++;
}

static void reply_fail(server *s, uint32_t id, enum vault_fail reason, unsigned delay_ms)
{
    uint8_t b[VF_HEADER + 1];
    reply(s, b, vf_encode_fail(b, id, reason), delay_ms);
}

/* Moves due delayed replies to the send queue; returns the next due time or -1. */
static int64_t release_delayed(server *s, int64_t now)
{
    while (s->delayed && s->delayed->at <= now) {
        out_frame *f = s->delayed;
        s->delayed = f->next;
        f->next = NULL;
        if (s->out_tail)
            s->out_tail->next = f;
        else
            s->out = f;
        s->out_tail = f;
        s->n_out++;
    }
    return s->delayed ? s->delayed->at : -1;
}

/* ---- logins ---- */

static void job_free(vp_job *j)
{
    while (j->waiters) {
        vp_job *w = j->waiters;
        j->waiters = w->next;
        job_free(w);
    }
    if (j->pw)
        sodium_free(j->pw);
    if (j->sk)
        sodium_free(j->sk);
    sodium_memzero(j, sizeof *j);
    free(j);
}

/* Guesses from one source (an address, together with the client's IP: a /64 for IPv6, as
 * one attacker holds a whole one) are throttled after throttle_after failures; guesses at one
 * address from everywhere only after ADDRESS_WIDE_FACTOR times that, and guesses from one IP
 * at any addresses (a password sprayed over many users) after IP_WIDE_FACTOR times that —
 * an office behind one NAT address shares it, so one user's typos must not lock out the
 * others. Neither wide count ever stops a source that logged in before (VT_TRUSTED):
 * someone else's failures do not lock the user out. */
#define ADDRESS_WIDE_FACTOR 20
#define IP_WIDE_FACTOR 4

static size_t source_key(const char *address, const uint8_t *ip, uint8_t out[VT_KEY_MAX])
{
    size_t n = strlen(address);
    memcpy(out, address, n);
    vault_ip_block(ip, out + n);
    return n + VAULT_IP_BYTES;
}

static int throttled(server *s, const char *address, const uint8_t *ip, int64_t now)
{
    const vault_config *c = s->cfg;
    uint8_t src[VT_KEY_MAX];
    size_t srclen = source_key(address, ip, src);
    if (vt_blocked(s->thr, c, VT_SOURCE, src, srclen, c->throttle_after, now))
        return 1;
    if (vt_known(s->thr, c, VT_TRUSTED, src, srclen, now))
        return 0;
    if (!sodium_is_zero(ip, VAULT_IP_BYTES) &&
        vt_blocked(s->thr, c, VT_IP, ip, VAULT_IP_BYTES, c->throttle_after * IP_WIDE_FACTOR, now))
        return 1;
    return vt_blocked(s->thr, c, VT_ADDRESS, address, strlen(address), c->throttle_after * ADDRESS_WIDE_FACTOR, now);
}

/* May one more distinct guess start, with those already in flight? Counting at the start is
 * what keeps a burst of parallel guesses from being checked all at once. */
static int guess_room(server *s, const char *address, const uint8_t *ip, int64_t now)
{
    const vault_config *c = s->cfg;
    uint8_t src[VT_KEY_MAX];
    size_t srclen = source_key(address, ip, src);
    bool trusted = vt_known(s->thr, c, VT_TRUSTED, src, srclen, now);
    return vt_room(s->thr, c, VT_SOURCE, src, srclen, c->throttle_after, now) &&
           (trusted || sodium_is_zero(ip, VAULT_IP_BYTES) ||
            vt_room(s->thr, c, VT_IP, ip, VAULT_IP_BYTES, c->throttle_after * IP_WIDE_FACTOR, now)) &&
           vt_room(s->thr, c, VT_ADDRESS, address, strlen(address), c->throttle_after * ADDRESS_WIDE_FACTOR, now);
}

static void guess_begin(server *s, vp_job *j, int64_t now)
{
    uint8_t src[VT_KEY_MAX];
    size_t srclen = source_key(j->rec.address, j->ip, src);
    vt_begin(s->thr, s->cfg, VT_SOURCE, src, srclen, now);
    if (!sodium_is_zero(j->ip, VAULT_IP_BYTES))
        vt_begin(s->thr, s->cfg, VT_IP, j->ip, VAULT_IP_BYTES, now);
    vt_begin(s->thr, s->cfg, VT_ADDRESS, j->rec.address, strlen(j->rec.address), now);
    j->counted = 1;
}

/* After the job's answer (which counted a failure, if it was one). */
static void guess_end(server *s, vp_job *j)
{
    if (!j->counted)
        return;
    uint8_t src[VT_KEY_MAX];
    size_t srclen = source_key(j->rec.address, j->ip, src);
    vt_end(s->thr, VT_SOURCE, src, srclen);
    if (!sodium_is_zero(j->ip, VAULT_IP_BYTES))
        vt_end(s->thr, VT_IP, j->ip, VAULT_IP_BYTES);
    vt_end(s->thr, VT_ADDRESS, j->rec.address, strlen(j->rec.address));
    j->counted = 0;
}

static void login_ok(server *s, uint32_t id, vk_entry *e, int cached, const uint8_t *ip)
{
    int64_t now = vk_now_ms();
    if (s->keys.n_sessions >= s->cfg->max_sessions) {
        s->st.busy++;
        reply_fail(s, id, VAULT_FAIL_BUSY, 0);
    } else {
        uint64_t h = vk_session_new(&s->keys, e);
        if (!h) {
            reply_fail(s, id, VAULT_FAIL_NOMEM, 0);
        } else {
            uint8_t b[VF_HEADER + VF_R_LOGIN_BODY];
            reply(s, b, vf_encode_login_ok(b, id, h, e->key_id, e->box_pk, e->sec->state_key), 0);
            s->st.logins_ok++;
            s->st.cache_hits += cached != 0;
            /* Only this source's counter: resetting the IP's would let an attacker with one
             * valid account clear their IP's record between guesses at other accounts, and
             * the address-wide one counts everyone's guesses. */
            uint8_t src[VT_KEY_MAX];
            size_t srclen = source_key(e->address, ip, src);
            vt_reset(s->thr, VT_SOURCE, src, srclen);
            vt_touch(s->thr, s->cfg, VT_TRUSTED, src, srclen, now);
        }
    }
    if (e->refs == 0) /* no session came of it: keep the key only for the grace period */
        e->expires = now + s->cfg->grace_ms;
}

/* A failure is answered fail_delay_ms plus what a KDF run takes now after the login arrived
 * (elapsed ms ago): a wrong password answered from the key cache, an unknown user and a
 * wrong password that needed Argon2id then take the same time, so timing does not tell
 * whether the user exists or is logged in. */
static void login_wrong(server *s, uint32_t id, const char *address, const uint8_t *ip, int64_t elapsed)
{
    int64_t now = vk_now_ms();
    int64_t pad = s->kdf_ms > elapsed ? s->kdf_ms - elapsed : 0;
    s->st.logins_failed++;
    uint8_t src[VT_KEY_MAX];
    size_t srclen = source_key(address, ip, src);
    vt_failed(s->thr, s->cfg, VT_SOURCE, src, srclen, now);
    vt_failed(s->thr, s->cfg, VT_ADDRESS, address, strlen(address), now);
    if (!sodium_is_zero(ip, VAULT_IP_BYTES))
        vt_failed(s->thr, s->cfg, VT_IP, ip, VAULT_IP_BYTES, now);
    reply_fail(s, id, VAULT_FAIL_PASSWORD, s->cfg->fail_delay_ms + (unsigned)pad);
}

static int same_record(const pc_keyrecord *a, const pc_keyrecord *b)
{
    return strcmp(a->address, b->address) == 0 && memcmp(a->key_id, b->key_id, sizeof a->key_id) == 0 &&
           a->serial == b->serial && memcmp(a->salt, b->salt, sizeof a->salt) == 0;
}

/* Starts as many queued runs as the memory bound allows. */
static void dispatch(server *s)
{
    while (s->pending && s->n_running < s->pool_size) {
        vp_job *j = s->pending;
        if (vp_submit(s->pool, j) != 0)
            break; /* no thread at all: retried on the next request or completion */
        s->pending = j->next;
        if (!s->pending)
            s->pending_tail = NULL;
        s->n_pending--;
        j->next = s->running;
        s->running = j;
        s->n_running++;
    }
}

static void enqueue(server *s, vp_job *j, int front)
{
    /* pool size = KDF memory / the largest memlimit seen, at least 1, at most max_threads */
    if (j->rec.memlimit > s->max_mem) {
        s->max_mem = j->rec.memlimit;
        uint64_t n = s->cfg->kdf_pool_memory / s->max_mem;
        s->pool_size = n < 1 ? 1 : n > s->cfg->max_threads ? s->cfg->max_threads : (unsigned)n;
    }
    if (front) {
        j->next = s->pending;
        s->pending = j;
        if (!s->pending_tail)
            s->pending_tail = j;
    } else {
        j->next = NULL;
        if (s->pending_tail)
            s->pending_tail->next = j;
        else
            s->pending = j;
        s->pending_tail = j;
    }
    s->n_pending++;
}

static void handle_login(server *s, const vf_request *rq)
{
    int64_t now = vk_now_ms();
    if (throttled(s, rq->address, rq->ip, now)) {
        s->st.throttled++;
        reply_fail(s, rq->id, VAULT_FAIL_THROTTLED, 0);
        return;
    }
    if (rq->record_len == 0) {
        /* The gateway found no key record: no such user. Counted and answered exactly as a
         * wrong password, so neither the throttle nor the timing tells the difference. */
        if (!guess_room(s, rq->address, rq->ip, now)) {
            s->st.throttled++;
            reply_fail(s, rq->id, VAULT_FAIL_THROTTLED, 0);
        } else {
            login_wrong(s, rq->id, rq->address, rq->ip, 0);
        }
        return;
    }
    pc_keyrecord rec;
    if (pc_keyrecord_decode(rq->record, rq->record_len, &rec) != PC_OK ||
        pc_keyrecord_verify(&rec, s->cfg->authority_pks, s->cfg->n_authorities, rq->address) != PC_OK) {
        s->st.bad_records++;
        reply_fail(s, rq->id, VAULT_FAIL_RECORD, 0);
        return;
    }
    uint8_t v[32];
    crypto_generichash_state h;
    crypto_generichash_init(&h, s->vkey, 32, sizeof v);
    crypto_generichash_update(&h, rec.salt, sizeof rec.salt);
    crypto_generichash_update(&h, (const uint8_t *)rq->password, rq->password_len);
    crypto_generichash_final(&h, v, sizeof v);
    sodium_memzero(&h, sizeof h);

    vk_entry *e = vk_find(&s->keys, rq->address);
    if (e && memcmp(e->key_id, rec.key_id, sizeof rec.key_id) == 0) {
        /* The vault has seen a newer record of this key: an older one is a rollback (it may
         * still open with a previous password). */
        if (rec.serial < e->serial) {
            s->st.bad_records++;
            reply_fail(s, rq->id, VAULT_FAIL_RECORD, 0);
            goto out;
        }
        if (rec.serial == e->serial && memcmp(rec.salt, e->salt, sizeof rec.salt) == 0) {
            if (sodium_memcmp(v, e->sec->verifier, sizeof v) == 0)
                login_ok(s, rq->id, e, 1, rq->ip);
            else
                login_wrong(s, rq->id, rq->address, rq->ip, 0);
            goto out;
        }
    }
    if (s->n_waiting >= s->cfg->queue_max) {
        s->st.busy++;
        reply_fail(s, rq->id, VAULT_FAIL_BUSY, 0);
        goto out;
    }
    /* the same password as a login in flight (a client opening several connections) is not
     * another guess: it waits for that one's answer */
    vp_job *same = NULL;
    for (vp_job *lists[2] = {s->running, s->pending}, **l = lists; l < lists + 2 && !same; l++)
        for (vp_job *r = *l; r && !same; r = r->next)
            if (same_record(&r->rec, &rec))
                for (vp_job *w = r; w && !same; w = w == r ? r->waiters : w->next)
                    if (sodium_memcmp(w->verifier, v, sizeof v) == 0)
                        same = r;
    if (!same && !guess_room(s, rq->address, rq->ip, now)) {
        s->st.throttled++;
        reply_fail(s, rq->id, VAULT_FAIL_THROTTLED, 0);
        goto out;
    }
    vp_job *j = calloc(1, sizeof *j);
    if (!j || !(j->pw = sodium_malloc(rq->password_len ? rq->password_len : 1))) {
        free(j);
        reply_fail(s, rq->id, VAULT_FAIL_NOMEM, 0);
        goto out;
    }
    j->id = rq->id;
    j->rec = rec;
    memcpy(j->pw, rq->password, rq->password_len);
    j->pw_len = rq->password_len;
    memcpy(j->verifier, v, sizeof v);
    memcpy(j->ip, rq->ip, sizeof j->ip);
    j->arrival = now;
    if (!same)
        guess_begin(s, j, now);
    s->n_waiting++;
    /* A client opening several connections at once (Thunderbird does) costs one run: the
     * others wait for it and are answered with the verifier it leaves. */
    for (vp_job *lists[2] = {s->running, s->pending}, **l = lists; l < lists + 2; l++)
        for (vp_job *r = *l; r; r = r->next)
            if (same_record(&r->rec, &rec)) {
                j->next = r->waiters;
                r->waiters = j;
                goto out;
            }
    enqueue(s, j, 0);
    dispatch(s);
out:
    sodium_memzero(v, sizeof v);
}

/* A run finished: answer it and the logins that waited for it. */
static void finished(server *s, vp_job *j)
{
    int64_t now = vk_now_ms(), elapsed = now - j->arrival;
    if (j->status == PC_OK || j->status == PC_EPASS)
        s->kdf_ms = s->kdf_ms ? (7 * s->kdf_ms + elapsed) / 8 : elapsed;
    s->n_waiting--;
    vp_job *waiters = j->waiters, *retry = NULL;
    j->waiters = NULL;
    vk_entry *e = NULL;
    if (j->status == PC_OK) {
        e = vk_add(&s->keys, &j->rec, j->sk, j->verifier);
        if (e)
            login_ok(s, j->id, e, 0, j->ip);
        else
            reply_fail(s, j->id, VAULT_FAIL_NOMEM, 0);
    } else if (j->status == PC_EPASS) {
        login_wrong(s, j->id, j->rec.address, j->ip, elapsed);
    } else {
        /* PC_EFORMAT: the wrapped key does not match the record's public key */
        if (j->status == PC_EFORMAT)
            s->st.bad_records++;
        reply_fail(s, j->id, j->status == PC_EFORMAT ? VAULT_FAIL_RECORD : VAULT_FAIL_NOMEM, 0);
    }
    guess_end(s, j);
    while (waiters) {
        vp_job *w = waiters;
        waiters = w->next;
        int same_pw = sodium_memcmp(w->verifier, j->verifier, sizeof w->verifier) == 0;
        if (j->status == PC_OK && e) {
            if (same_pw)
                login_ok(s, w->id, e, 1, w->ip);
            else
                login_wrong(s, w->id, w->rec.address, w->ip, now - w->arrival);
        } else if (j->status == PC_EPASS && !same_pw) {
            w->next = retry; /* another password: it needs its own run */
            retry = w;
            continue;
        } else if (j->status == PC_EPASS) {
            login_wrong(s, w->id, w->rec.address, w->ip, now - w->arrival);
        } else {
            reply_fail(s, w->id, j->status == PC_EFORMAT ? VAULT_FAIL_RECORD : VAULT_FAIL_NOMEM, 0);
        }
        s->n_waiting--;
        guess_end(s, w);
        job_free(w);
    }
    if (retry) {
        /* first of them runs next, ahead of the queue (they have waited already) */
        vp_job *first = retry;
        retry = retry->next;
        first->waiters = retry;
        first->next = NULL;
        enqueue(s, first, 1);
    }
    job_free(j);
}

static void completions(server *s)
{
    for (vp_job *d = vp_take_done(s->pool); d;) {
        vp_job *next = d->qnext;
        for (vp_job **pp = &s->running; *pp; pp = &(*pp)->next)
            if (*pp == d) {
                *pp = d->next;
                break;
            }
        s->n_running--;
        finished(s, d);
        d = next;
    }
    dispatch(s);
}

/* ---- other requests ---- */

static void handle_open(server *s, const vf_request *rq)
{
    vk_entry *e = vk_session_entry(&s->keys, rq->session);
    if (!e) {
        reply_fail(s, rq->id, VAULT_FAIL_SESSION, 0);
        return;
    }
    pc_msg_meta m;
    uint8_t key[PC_STREAM_KEY_BYTES];
    if (pc_envelope_open_meta(rq->prefix, e->box_pk, e->sec->sk, &m, key) != PC_OK) {
        reply_fail(s, rq->id, VAULT_FAIL_ENVELOPE, 0);
        return;
    }
    s->st.opens++;
    uint8_t b[VF_HEADER + VF_R_OPEN_BODY];
    reply(s, b, vf_encode_open_ok(b, rq->id, &m, key), 0);
    sodium_memzero(key, sizeof key);
}

static void handle_stats(server *s, uint32_t id)
{
    vault_stats st = s->st;
    vp_counters(s->pool, &st.kdf_runs, &st.kdf_peak);
    st.kdf_running = s->n_running;
    st.kdf_queued = s->n_pending;
    st.pool_size = s->pool_size;
    st.entries = s->keys.n_entries;
    st.sessions = s->keys.n_sessions;
    st.wipes = s->keys.wipes;
    uint8_t b[VF_HEADER + VF_R_STATS_BODY];
    reply(s, b, vf_encode_stats(b, id, &st), 0);
}

/* Reads and handles up to READ_BURST frames: 1 = go on, 0 = peer closed, -1 = malformed. */
static int read_requests(server *s)
{
    for (int i = 0; i < READ_BURST; i++) {
        struct iovec iov = {s->rbuf, VF_MAX + 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        if (n < 0)
            return errno == ECONNRESET ? 0 : -1;
        if (n == 0)
            return 0;
        vf_request rq;
        int bad = (mh.msg_flags & MSG_TRUNC) || vf_decode_request(s->rbuf, (size_t)n, &rq) != 0;
        if (bad) {
            /* The network process builds every frame itself; garbage means a bug or a
             * compromise, and either way it must not keep talking to the keys. */
            fprintf(stderr, "postern vault: malformed frame (%zd bytes, type %u) from the network process: "
                            "dropping it\n", n, n >= 2 ? s->rbuf[1] : 0u);
            sodium_memzero(s->rbuf, VF_MAX + 1);
            return -1;
        }
        switch (rq.type) {
        case VF_LOGIN:
            handle_login(s, &rq);
            break;
        case VF_OPEN:
            handle_open(s, &rq);
            break;
        case VF_LOGOUT:
            if (vk_session_end(&s->keys, rq.session, vk_now_ms(), s->cfg->grace_ms) == 0) {
                uint8_t b[VF_HEADER];
                reply(s, b, vf_encode_empty(b, VF_R_LOGOUT, rq.id), 0);
            } else {
                reply_fail(s, rq.id, VAULT_FAIL_SESSION, 0);
            }
            break;
        default:
            handle_stats(s, rq.id);
            break;
        }
        sodium_memzero(&rq, sizeof rq);
        sodium_memzero(s->rbuf, (size_t)n);
        if (s->n_out >= OUT_MAX)
            return 1;
    }
    return 1;
}

static void teardown(server *s)
{
    vp_free(s->pool); /* lets running KDFs finish: their jobs are still on s->running */
    for (vp_job *lists[2] = {s->running, s->pending}, **l = lists; l < lists + 2; l++)
        while (*l) {
            vp_job *j = *l;
            *l = j->next;
            job_free(j);
        }
    for (out_frame *lists[2] = {s->out, s->delayed}, **l = lists; l < lists + 2; l++)
        while (*l) {
            out_frame *f = *l;
            *l = f->next;
            frame_free(f);
        }
    vk_clear(&s->keys);
    vt_free(s->thr);
    if (s->vkey)
        sodium_free(s->vkey);
    if (s->rbuf)
        sodium_free(s->rbuf);
}

int vault_serve(int fd, const vault_config *cfg)
{
    if (fd < 0 || !cfg || !cfg->authority_pks || cfg->n_authorities == 0 || cfg->kdf_pool_memory == 0) {
        fprintf(stderr, "postern vault: bad configuration\n");
        return -1;
    }
    server *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->cfg = cfg;
    s->fd = fd;
    s->pool_size = 1;
    s->pool = vp_new(cfg->max_threads);
    s->thr = vt_new();
    s->vkey = sodium_malloc(32);
    s->rbuf = sodium_malloc(VF_MAX + 1);
    int rc = -1;
    if (!s->pool || !s->thr || !s->vkey || !s->rbuf || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        fprintf(stderr, "postern vault: cannot start: %s\n", strerror(errno ? errno : ENOMEM));
        goto done;
    }
    randombytes_buf(s->vkey, 32);

    for (;;) {
        int64_t now = vk_now_ms();
        int64_t t1 = release_delayed(s, now), t2 = vk_expire(&s->keys, now), next = t1;
        if (t2 >= 0 && (next < 0 || t2 < next))
            next = t2;
        flush(s);
        if (s->broken) {
            rc = 0;
            break;
        }
        struct pollfd pfd[2] = {
            {fd, (short)((s->n_out < OUT_MAX ? POLLIN : 0) | (s->out ? POLLOUT : 0)), 0},
            {vp_wake_fd(s->pool), POLLIN, 0},
        };
        int timeout = next < 0 ? -1 : next - now > 60000 ? 60000 : (int)(next - now);
        if (poll(pfd, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "postern vault: poll: %s\n", strerror(errno));
            break;
        }
        if (pfd[1].revents & POLLIN)
            completions(s);
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = read_requests(s);
            if (r <= 0) {
                rc = r;
                break;
            }
        }
    }
done:
    teardown(s);
    sodium_memzero(s, sizeof *s);
    free(s);
    return rc;
}
