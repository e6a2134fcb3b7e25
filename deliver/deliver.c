#include "deliver/deliver.h"
#include "deliver/deliver_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "article/article.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/util.h"

#define READ_BLOCK 65536
/* A From_ line longer than this is not an mbox envelope line but the message's own text. */
#define MAX_FROM_LINE 4096

void pd_too_big(const pn_config *cfg, char *msg, size_t msglen)
{
    snprintf(msg, msglen, "message too big: larger than max_message_size (%llu bytes), so it cannot be stored",
             (unsigned long long)cfg->max_message_size);
}

size_t pd_mbox_from_len(const uint8_t *p, size_t len, int eof)
{
    static const char from[] = "From ";
    size_t k = len < 5 ? len : 5;
    if (memcmp(p, from, k) != 0)
        return 0;
    if (len < 5)
        return eof ? 0 : PD_FROM_MORE;
    const uint8_t *nl = memchr(p, '\n', len < MAX_FROM_LINE ? len : MAX_FROM_LINE);
    if (nl)
        return (size_t)(nl + 1 - p);
    return eof || len >= MAX_FROM_LINE ? 0 : PD_FROM_MORE;
}

static int spool_sink(void *arg, const uint8_t *data, size_t len)
{
    int fd = *(int *)arg;
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return 1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A spool file that vanishes when closed. Only ciphertext is ever written to one. */
int pd_open_spool(const pn_config *cfg)
{
    const char *dirs[] = {getenv("TMPDIR"), cfg->state_dir, "/tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

static int16_t local_tz_minutes(time_t t)
{
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return 0;
    return (int16_t)(tm.tm_gmtoff / 60);
}

typedef struct sealed {
    int fd;
    uint64_t cipher_len;
    uint8_t prefix[PC_MSG_PREFIX_BYTES];
    char msgid[PA_MSGID_MAX];
    char cancel_lock[2 * PC_CANCEL_TEXT_MAX + 32]; /* the article's Cancel-Lock header line */
} sealed;

/* rd until buf holds at least want bytes or the input ends: 0, or -1 with errno set. */
static int read_at_least(pd_read_fn rd, void *rd_arg, uint8_t *buf, size_t want, size_t *have, int *eof)
{
    while (*have < want && !*eof) {
        ssize_t got = rd(rd_arg, buf + *have, READ_BLOCK - *have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            *eof = 1;
        *have += (size_t)got;
    }
    return 0;
}

/* Reads the message from rd into a sealed ciphertext spool file. Returns a sysexits code.
 * Every byte sequence is a message that can be stored (no header, bare CR or LF, NUL, 8-bit,
 * lines of any length): the only refusal is the size limit. */
static int seal_input(const pn_config *cfg, const pn_delivery_keys *keys, const pc_keyrecord *rec, const char *group,
                      pd_read_fn rd, void *rd_arg, unsigned flags, sealed *out, char *msg, size_t msglen)
{
    uint8_t *buf = malloc(READ_BLOCK);
    pc_seal *s = NULL;
    int rc = PX_SOFTWARE;
    out->fd = pd_open_spool(cfg);
    if (!buf) {
        snprintf(msg, msglen, "out of memory");
        rc = PX_TEMPFAIL;
        goto out;
    }
    if (out->fd < 0) {
        snprintf(msg, msglen, "cannot create a spool file in $TMPDIR, %s or /tmp: %s", cfg->state_dir,
                 strerror(errno));
        rc = PX_TEMPFAIL;
        goto out;
    }
    time_t now = time(NULL);
    s = pc_seal_begin(rec->box_pk, rec->key_id, (int64_t)now, local_tz_minutes(now), spool_sink, &out->fd);
    if (!s) {
        snprintf(msg, msglen, "out of memory");
        rc = PX_TEMPFAIL;
        goto out;
    }
    uint64_t total = 0;
    size_t have = 0, skip = 0;
    int eof = 0;
    if (flags & PD_MBOX_FROM) {
        /* An mbox "From " envelope line (Postfix pipe flag F, procmail) is not part of the
         * message: drop it, as Dovecot's LDA does. Short reads must not decide it. */
        size_t want = 5;
        for (;;) {
            if (read_at_least(rd, rd_arg, buf, want, &have, &eof) != 0)
                goto read_error;
            skip = pd_mbox_from_len(buf, have, eof);
            if (skip != PD_FROM_MORE)
                break;
            want = have + 1;
        }
    }
    for (;;) {
        if (have == 0) {
            if (eof)
                break;
            if (read_at_least(rd, rd_arg, buf, 1, &have, &eof) != 0)
                goto read_error;
            continue;
        }
        const uint8_t *p = buf + skip;
        size_t len = have - skip;
        have = skip = 0;
        total += len;
        if (total > cfg->max_message_size) {
            pd_too_big(cfg, msg, msglen);
            rc = PX_UNAVAILABLE;
            goto out;
        }
        if (pc_seal_update(s, p, len) != PC_OK) {
            snprintf(msg, msglen, "writing the spool file: %s", strerror(errno));
            rc = PX_TEMPFAIL;
            goto out;
        }
    }
    uint8_t content_hash[32], tag[PC_TAG_BYTES];
    pc_msg_meta meta;
    if (pc_seal_finish(s, content_hash, &meta) != PC_OK) {
        snprintf(msg, msglen, "writing the spool file: %s", strerror(errno));
        rc = PX_TEMPFAIL;
        goto out;
    }
    pc_message_tag(keys->secret, rec->address, rec->key_id, content_hash, tag);
    if (pc_seal_prefix(s, tag, out->prefix) != PC_OK) {
        snprintf(msg, msglen, "sealing failed");
        goto out;
    }
    pa_mail_message_id(tag, out->msgid);
    /* the trailer: this host's certificate and signature, so a gateway shows only mail a
     * certified writer posted (docs/formats.md section 3), after the chunks in the spool */
    uint8_t chunks_hash[32], trailer[PC_MAIL_TRAILER_BYTES];
    if (pc_seal_chunks_hash(s, chunks_hash) != PC_OK ||
        pc_mail_sign(keys->writer_cert, keys->writer_sk, group, out->msgid, out->prefix, chunks_hash, trailer) !=
            PC_OK) {
        snprintf(msg, msglen, "signing failed");
        goto out;
    }
    if (spool_sink(&out->fd, trailer, sizeof trailer) != 0) {
        snprintf(msg, msglen, "writing the spool file: %s", strerror(errno));
        rc = PX_TEMPFAIL;
        goto out;
    }
    out->cipher_len = pc_envelope_size(meta.padded_size) - PC_MSG_PREFIX_BYTES + PC_MAIL_TRAILER_BYTES;
    /* RFC 8315: the recipient's gateway (from the stream key) and the admin (from the
     * delivery secret) can cancel the article; a cancel from anyone else removes nothing */
    uint8_t owner[PC_CANCEL_KEY_BYTES], admin[PC_CANCEL_KEY_BYTES];
    char lock_o[PC_CANCEL_TEXT_MAX], lock_a[PC_CANCEL_TEXT_MAX];
    if (pc_seal_cancel_key(s, out->msgid, owner) != PC_OK) {
        snprintf(msg, msglen, "sealing failed");
        goto out;
    }
    pc_cancel_admin_key(keys->secret, out->msgid, admin);
    pc_cancel_lock_text(owner, lock_o);
    pc_cancel_lock_text(admin, lock_a);
    sodium_memzero(owner, sizeof owner);
    sodium_memzero(admin, sizeof admin);
    snprintf(out->cancel_lock, sizeof out->cancel_lock, "Cancel-Lock: %s %s\r\n", lock_o, lock_a);
    rc = PX_OK;
    goto out;
read_error:
    snprintf(msg, msglen, "reading the message: %s", strerror(errno));
    rc = PX_IOERR;
out:
    if (s)
        pc_seal_free(s);
    if (buf) {
        sodium_memzero(buf, READ_BLOCK);
        free(buf);
    }
    return rc;
}

/* ---- the delivery context ---- */

/* Key records kept per ctx; an LMTP session rarely sees more distinct recipients than this
 * within keyrecord_cache seconds, and a miss only costs a lookup. */
#define CACHE_SLOTS 64

typedef struct cache_entry {
    char canon[PA_ADDRESS_MAX + 1];
    long long fetched_ms; /* monotonic: a clock step neither extends nor ends the TTL */
    pc_keyrecord rec;
} cache_entry;

struct pd_ctx {
    const pn_config *cfg;
    const pn_delivery_keys *keys;
    ps_pool *sites; /* kept for the ctx's life: an LMTP session's messages share them */
    size_t last_site; /* where the last key record came from: posting starts there */
    cache_entry *cache;
    size_t n_cache;
};

struct pd_recipient {
    char canon[PA_ADDRESS_MAX + 1];
    char group[PA_GROUP_MAX + 1];
    pc_keyrecord rec;
};


pd_ctx *pd_ctx_new(const pn_config *cfg, const pn_delivery_keys *keys)
{
    pd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->cfg = cfg;
    ctx->keys = keys;
    ctx->sites = ps_pool_new(cfg, 0);
    if (cfg->keyrecord_cache > 0)
        ctx->cache = calloc(CACHE_SLOTS, sizeof *ctx->cache);
    if (!ctx->sites || (cfg->keyrecord_cache > 0 && !ctx->cache)) {
        pd_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void pd_ctx_free(pd_ctx *ctx)
{
    if (!ctx)
        return;
    ps_pool_free(ctx->sites);
    if (ctx->cache) {
        sodium_memzero(ctx->cache, CACHE_SLOTS * sizeof *ctx->cache);
        free(ctx->cache);
    }
    free(ctx);
}

static cache_entry *cache_find(pd_ctx *ctx, const char *canon)
{
    if (!ctx->cache)
        return NULL;
    long long ttl_ms = (long long)ctx->cfg->keyrecord_cache * 1000, now = pu_now_ms();
    for (size_t i = 0; i < ctx->n_cache; i++)
        if (strcmp(ctx->cache[i].canon, canon) == 0)
            return now - ctx->cache[i].fetched_ms < ttl_ms ? &ctx->cache[i] : NULL;
    return NULL;
}

static void cache_put(pd_ctx *ctx, const char *canon, const pc_keyrecord *rec)
{
    if (!ctx->cache)
        return;
    cache_entry *slot = NULL;
    for (size_t i = 0; i < ctx->n_cache && !slot; i++)
        if (strcmp(ctx->cache[i].canon, canon) == 0)
            slot = &ctx->cache[i];
    if (!slot && ctx->n_cache < CACHE_SLOTS)
        slot = &ctx->cache[ctx->n_cache++];
    if (!slot) { /* full: replace the oldest */
        slot = &ctx->cache[0];
        for (size_t i = 1; i < ctx->n_cache; i++)
            if (ctx->cache[i].fetched_ms < slot->fetched_ms)
                slot = &ctx->cache[i];
    }
    snprintf(slot->canon, sizeof slot->canon, "%s", canon);
    slot->fetched_ms = pu_now_ms();
    slot->rec = *rec;
}

int pd_ctx_recipient(pd_ctx *ctx, const char *address, pd_recipient **out, char *msg, size_t msglen)
{
    char why[1024];
    *out = NULL;
    pd_recipient *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(msg, msglen, "out of memory");
        return PX_TEMPFAIL;
    }
    if (pa_address_to_group(ctx->cfg->prefix, address, r->group, sizeof r->group, why, sizeof why) != 0 ||
        pa_address_canonical(address, r->canon, sizeof r->canon, why, sizeof why) != 0) {
        snprintf(msg, msglen, "unknown recipient %s: %s", address, why);
        free(r);
        return PX_NOUSER;
    }
    cache_entry *hit = cache_find(ctx, r->canon);
    if (hit) {
        r->rec = hit->rec;
        *out = r;
        return PX_OK;
    }
    /* any site: an open connection first (sticking to a site after a failover), else the
     * first reachable in configured order */
    if (ps_pool_connect(ctx->sites, PS_ANY_SITE, why, sizeof why) != PS_OK) {
        snprintf(msg, msglen, "no news server reachable, try again later: %s", why);
        free(r);
        return PX_TEMPFAIL;
    }
    int st = ps_fetch_keyrecord(ctx->sites, PS_ANY_SITE, r->canon, &r->rec, NULL, why, sizeof why);
    if (st == PS_OK)
        ctx->last_site = ps_pool_site(ctx->sites);
    if (st == PS_OK) {
        cache_put(ctx, r->canon, &r->rec);
        *out = r;
        return PX_OK;
    }
    free(r);
    if (st == PS_NOUSER) {
        /* This text reaches the sender in the MTA's bounce: the news group and the state of
         * the key group are internal (issue 15); `postern user list` tells the admin. */
        snprintf(msg, msglen, "unknown recipient %s: no such user here", address);
        return PX_NOUSER;
    }
    snprintf(msg, msglen, "cannot read the recipient's key record, try again later: %s", why);
    return PX_TEMPFAIL;
}

const char *pd_recipient_address(const pd_recipient *r)
{
    return r->canon;
}

void pd_recipient_free(pd_recipient *r)
{
    if (r) {
        sodium_memzero(r, sizeof *r);
        free(r);
    }
}

/* ---- what the deliveries of this process did, for GET /metrics (pd_stats_write) ---- */
static const double confirm_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BUCKETS (sizeof confirm_buckets / sizeof confirm_buckets[0])
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER; /* lmtp: a thread per session */
typedef struct delivery_stats {
    uint64_t stored, deferred;
    uint64_t copies[PN_MAX_SITES]; /* per site: deliveries it confirmed (shows the article) */
    uint64_t le[N_BUCKETS];        /* confirmation times at most confirm_buckets[i] seconds */
    uint64_t count;
    double sum;
    uint64_t gen; /* changes with every delivery: a write is needed */
} delivery_stats;
static delivery_stats stats;

/* names is ps_store_copies' "a, b": the sites that show the article. */
static void count_delivery(const pn_config *cfg, unsigned copies, const char *names, double seconds)
{
    pthread_mutex_lock(&stats_lock);
    if (copies >= cfg->min_copies)
        stats.stored++;
    else
        stats.deferred++;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        size_t n = strlen(cfg->sites[i].name);
        for (const char *p = names; (p = strstr(p, cfg->sites[i].name)) != NULL; p += n)
            if ((p == names || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0')) {
                stats.copies[i]++;
                break;
            }
    }
    for (size_t b = 0; b < N_BUCKETS; b++)
        stats.le[b] += seconds <= confirm_buckets[b];
    stats.count++;
    stats.sum += seconds;
    stats.gen++;
    pthread_mutex_unlock(&stats_lock);
}

int pd_stats_write(const pn_config *cfg, uint64_t *written_gen)
{
    pthread_mutex_lock(&stats_lock);
    delivery_stats now = stats;
    pthread_mutex_unlock(&stats_lock);
    if (now.gen == *written_gen)
        return 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    fprintf(f, "# HELP postern_deliveries_total Messages the LMTP service delivered (stored: on min_copies sites; "
               "deferred: the MTA retries).\n# TYPE postern_deliveries_total counter\n"
               "postern_deliveries_total{result=\"stored\"} %llu\npostern_deliveries_total{result=\"deferred\"} %llu\n",
            (unsigned long long)now.stored, (unsigned long long)now.deferred);
    fprintf(f, "# HELP postern_delivery_copies_total Deliveries a site confirmed (it shows the article).\n"
               "# TYPE postern_delivery_copies_total counter\n");
    for (size_t i = 0; i < cfg->n_sites; i++)
        pu_prom_site(f, "postern_delivery_copies_total", cfg->sites[i].name, now.copies[i]);
    fprintf(f, "# HELP postern_delivery_confirm_seconds From the first post of a message to min_copies sites "
               "showing it.\n# TYPE postern_delivery_confirm_seconds histogram\n");
    for (size_t b = 0; b < N_BUCKETS; b++)
        fprintf(f, "postern_delivery_confirm_seconds_bucket{le=\"%g\"} %llu\n", confirm_buckets[b],
                (unsigned long long)now.le[b]);
    fprintf(f, "postern_delivery_confirm_seconds_bucket{le=\"+Inf\"} %llu\n"
               "postern_delivery_confirm_seconds_sum %.6f\npostern_delivery_confirm_seconds_count %llu\n",
            (unsigned long long)now.count, now.sum, (unsigned long long)now.count);
    int rc = pu_memstream_write(f, &text, &len, cfg->state_dir, "delivery.prom");
    if (rc == 0)
        *written_gen = now.gen;
    return rc;
}

static int deliver_to(pd_ctx *ctx, const pd_recipient *r, pd_read_fn rd, void *rd_arg, unsigned flags, char *msg,
                      size_t msglen)
{
    const pn_config *cfg = ctx->cfg;
    sealed m = {.fd = -1};
    int rc = seal_input(cfg, ctx->keys, &r->rec, r->group, rd, rd_arg, flags, &m, msg, msglen);
    if (rc != PX_OK) {
        if (m.fd >= 0)
            close(m.fd);
        return rc;
    }

    /* Post to sites in configured order, starting with the one the key record came from,
     * until min_copies of them show the article. */
    char failures[2048] = "", names[512] = "", headers[1024];
    unsigned copies = 0;
    if (!pa_mail_headers(r->group, m.msgid, m.cancel_lock, headers, sizeof headers))
        snprintf(failures, sizeof failures, "header block too long");
    else {
        long long t0 = pu_now_ms();
        copies = ps_store_copies(ctx->sites, ctx->last_site, headers, m.msgid, m.prefix, sizeof m.prefix, m.fd,
                                 m.cipher_len, names, sizeof names, failures, sizeof failures);
        count_delivery(cfg, copies, names, (double)(pu_now_ms() - t0) / 1000.0);
    }
    close(m.fd);
    if (copies >= cfg->min_copies) {
        snprintf(msg, msglen, "delivered to %s as %s on %u site%s (%s)", r->canon, m.msgid, copies,
                 copies == 1 ? "" : "s", names);
        return PX_OK;
    }
    snprintf(msg, msglen, "only %u of the required %u site%s show %s%s%s%s, try again later: %s", copies,
             cfg->min_copies, cfg->min_copies == 1 ? "" : "s", m.msgid, copies ? " (" : "", names,
             copies ? ")" : "", failures);
    return PX_TEMPFAIL;
}

int pd_ctx_deliver_to(pd_ctx *ctx, const pd_recipient *r, pd_read_fn rd, void *rd_arg, char *msg, size_t msglen)
{
    return deliver_to(ctx, r, rd, rd_arg, 0, msg, msglen);
}

static ssize_t fd_read(void *arg, uint8_t *buf, size_t cap)
{
    return read(*(const int *)arg, buf, cap);
}

int pd_ctx_deliver(pd_ctx *ctx, const char *address, int fd, unsigned flags, char *msg, size_t msglen)
{
    pd_recipient *r = NULL;
    int rc = pd_ctx_recipient(ctx, address, &r, msg, msglen);
    if (rc != PX_OK)
        return rc;
    rc = deliver_to(ctx, r, fd_read, &fd, flags, msg, msglen);
    pd_recipient_free(r);
    return rc;
}

int pd_deliver(const pn_config *cfg, const pn_delivery_keys *keys, const char *address, int in, unsigned flags, char *msg,
               size_t msglen)
{
    pd_ctx *ctx = pd_ctx_new(cfg, keys);
    if (!ctx) {
        snprintf(msg, msglen, "out of memory");
        return PX_TEMPFAIL;
    }
    int rc = pd_ctx_deliver(ctx, address, in, flags, msg, msglen);
    pd_ctx_free(ctx);
    return rc;
}
