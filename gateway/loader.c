/* gateway: getting one message into memory as plaintext. Three hops, none on the loop's
 * critical path: a worker reads the article (ciphertext) from the news server; the vault,
 * which alone holds the private key, opens the 196-byte prefix and returns the message's
 * stream key; a worker decrypts the stream (into the served form: bare LF as CRLF, NUL as 0x80)
 * and parses the MIME structure. Decrypted messages stay in a small per-account cache in
 * memory (never on disk), because clients fetch the same message several times in a row
 * (headers, then the preview, then the body). A session that reads message after message in
 * order (mbsync, fetchmail, POP3 RETR) has the next few loaded ahead (gw_read_ahead): the
 * three hops overlap instead of adding up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "gateway/mailbox.h"
#include "imap/fetch.h"

#define CACHE_BYTES_MAX (48u << 20) /* per account: several big attachments */
#define CACHE_N_MAX 256
#define READ_AHEAD 8 /* messages loaded ahead of a client that reads in order */

typedef struct load_waiter {
    struct load_waiter *next;
    gw_load_fn cb;
    void *arg;
    bool mime; /* wants the MIME structure */
} load_waiter;

/* One message loading for one session; later gw_load calls of that session join it. */
struct gw_loading {
    struct gw_loading *next; /* the account's loads in flight */
    session *s;   /* referenced */
    gw_account *a; /* referenced */
    char msgid[PA_MSGID_MAX];
    load_waiter *waiters, **waiters_tail; /* none for a prefetch nobody asked for yet */
    bool prefetch; /* counted in s->prefetching */
    bool from_cache; /* env came from the article cache, not the news server */
    bool skip_cache; /* the cached copy failed: ask the news server */
    bool parse;      /* parse the MIME structure in the worker (decided on the loop) */
    pu_buf env; /* ciphertext envelope */
    pc_msg_meta meta;
    uint8_t stream_key[PC_STREAM_KEY_BYTES]; /* wiped when done */
    int status;
    char err[256];
    bool junk; /* the article can never open for this user (gw_load_junk) */
    gw_plain *plain;
    pu_buf envelope_str, bodystructure_str; /* for the state's cache */
};
typedef struct gw_loading load_ctx;

static void plain_free(gw_plain *p)
{
    if (p->data) {
        sodium_memzero(p->data, p->len);
        free(p->data);
    }
    mime_free(p->mime);
    sodium_memzero(p, sizeof *p);
    free(p);
}

void gw_plain_unref(gw_account *a, gw_plain *p)
{
    (void)a;
    if (p && --p->refs == 0)
        plain_free(p);
}

/* The cache is an LRU list plus a hash index by Message-ID: read-ahead looks a message up
 * for every message a client reads. */
#define CACHE_BUCKETS 512 /* a power of two, above CACHE_N_MAX */

static size_t bucket_of(const char *msgid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)msgid; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h & (CACHE_BUCKETS - 1);
}

static void cache_unlink(gw_account *a, gw_plain *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        a->cache = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        a->cache_tail = p->prev;
    p->prev = p->next = NULL;
    a->cache_bytes -= p->len;
    a->cache_n--;
}

static void cache_remove(gw_account *a, gw_plain *p)
{
    cache_unlink(a, p);
    for (gw_plain **pp = &a->cache_index[bucket_of(p->msgid)]; *pp; pp = &(*pp)->hnext)
        if (*pp == p) {
            *pp = p->hnext;
            break;
        }
    p->hnext = NULL;
    gw_plain_unref(a, p);
}

void gw_cache_free(gw_account *a)
{
    while (a->cache)
        cache_remove(a, a->cache);
    free(a->cache_index);
    a->cache_index = NULL;
}

static void cache_push_front(gw_account *a, gw_plain *p)
{
    p->prev = NULL;
    p->next = a->cache;
    if (a->cache)
        a->cache->prev = p;
    else
        a->cache_tail = p;
    a->cache = p;
    a->cache_bytes += p->len;
    a->cache_n++;
}

static void cache_insert(gw_account *a, gw_plain *p)
{
    if (!a->cache_index && !(a->cache_index = calloc(CACHE_BUCKETS, sizeof *a->cache_index)))
        return; /* out of memory: not cached, still served */
    p->refs++;
    cache_push_front(a, p);
    size_t b = bucket_of(p->msgid);
    p->hnext = a->cache_index[b];
    a->cache_index[b] = p;
    /* evict the least recently used; p itself stays (its caller holds it anyway) */
    while ((a->cache_bytes > CACHE_BYTES_MAX || a->cache_n > CACHE_N_MAX) && a->cache_tail != p)
        cache_remove(a, a->cache_tail);
}

static gw_plain *cache_find(gw_account *a, const char *msgid)
{
    if (!a->cache_index)
        return NULL;
    for (gw_plain *p = a->cache_index[bucket_of(msgid)]; p; p = p->hnext)
        if (strcmp(p->msgid, msgid) == 0) {
            if (p != a->cache) { /* most recently used: to the front */
                cache_unlink(a, p);
                cache_push_front(a, p);
            }
            return p;
        }
    return NULL;
}

static void unlink_loading(load_ctx *x)
{
    for (load_ctx **pp = &x->a->loading; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    x->next = NULL;
}

/* A message loaded without its MIME structure (a body read, a read-ahead) and now asked for
 * a part: parsed here, on the loop — the rare case; loads that need it parse in the worker. */
static bool ensure_mime(gw_plain *p)
{
    if (!p->mime)
        p->mime = mime_parse(p->data, p->len, NULL);
    return p->mime != NULL;
}

const char gw_load_junk[] = "not this user's mail";

/* An article that does not open is an attacker's (a forged or re-posted article in the
 * user's group), never a reason to fail a login, a FETCH 1:* or a SEARCH: it leaves the
 * mailbox as an expunged message does, once, with a line for the admin. */
static void drop_junk(load_ctx *x)
{
    gw_account *a = x->a;
    gw_log(GW_WARN, "%s: article %s is not this user's mail (%s): removed from the mailbox", a->address, x->msgid,
           x->err[0] ? x->err : "does not open");
    if (a->us && userstate_remove(a->us, x->msgid) == US_OK)
        gw_view_changed(a);
}

static void finish(load_ctx *x)
{
    session *s = x->s;
    unlink_loading(x); /* callbacks may load again: that starts afresh or hits the cache */
    if (x->junk && !s->dead)
        drop_junk(x);
    if (x->prefetch)
        s->prefetching--;
    for (load_waiter *w = x->waiters, *next; w; w = next) {
        next = w->next;
        if (!s->dead) {
            if (x->plain && w->mime && !ensure_mime(x->plain)) {
                w->cb(w->arg, NULL, "out of memory");
            } else if (x->plain) {
                x->plain->refs++;
                w->cb(w->arg, x->plain, NULL);
            } else {
                w->cb(w->arg, NULL, x->junk ? gw_load_junk : x->err[0] ? x->err : "cannot read the message");
            }
        }
        free(w);
    }
    if (x->plain)
        gw_plain_unref(x->a, x->plain);
    sodium_memzero(x->stream_key, sizeof x->stream_key);
    pu_buf_free(&x->env);
    pu_buf_free(&x->envelope_str);
    pu_buf_free(&x->bodystructure_str);
    gw_account_unref(x->a);
    gw_session_unref(s);
    free(x);
}

static bool refetch(load_ctx *x);

/* ---- hop 3: decrypt and parse (worker) ---- */

typedef struct plain_buf {
    char *data;
    size_t len, cap;
    bool prev_cr;
} plain_buf;

static int plain_put(plain_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *d = malloc(cap);
        if (!d)
            return -1;
        if (b->data) { /* plaintext: never left behind by realloc */
            memcpy(d, b->data, b->len);
            sodium_memzero(b->data, b->len);
            free(b->data);
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Bare LF becomes CRLF; lines that end in CRLF already are copied in one run with what
 * follows them, so a message stored with CRLF costs one copy per decrypted chunk. */
static int to_crlf(void *arg, const uint8_t *data, size_t len)
{
    plain_buf *b = arg;
    const uint8_t *end = data + len, *p = data, *run = data; /* run: not copied yet */
    while (p < end) {
        const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            break;
        bool after_cr = lf == data ? b->prev_cr : lf[-1] == '\r';
        if (!after_cr) {
            if (plain_put(b, run, (size_t)(lf - run)) != 0 || plain_put(b, "\r\n", 2) != 0)
                return 1;
            run = lf + 1;
        }
        p = lf + 1;
    }
    if (run < end && plain_put(b, run, (size_t)(end - run)) != 0)
        return 1;
    if (len)
        b->prev_cr = end[-1] == '\r';
    return 0;
}

static void decrypt_work(gw_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    (void)cfg;
    load_ctx *x = j->ctx;
    plain_buf b = {0};
    if (x->meta.crlf_size < (64u << 20)) {
        b.cap = x->meta.crlf_size + 1; /* one allocation for the usual message */
        b.data = malloc(b.cap);
        if (!b.data)
            b.cap = 0;
    }
    x->status = ps_open_envelope((const uint8_t *)x->env.data, x->env.len, x->msgid, x->stream_key, &x->meta, to_crlf, &b, x->err,
                                 sizeof x->err);
    sodium_memzero(x->stream_key, sizeof x->stream_key);
    gw_artcache *cache = x->a->net->artcache;
    if (cache && x->status == PS_OK && !x->from_cache) /* authentic: worth keeping */
        gw_artcache_put(cache, x->msgid, &x->env, x->meta.arrival);
    else if (cache && x->status != PS_OK && x->from_cache)
        gw_artcache_drop(cache, x->msgid); /* damaged on disk: the next read asks the news server */
    pu_buf_free(&x->env);
    if (x->status != PS_OK) {
        if (b.data) {
            sodium_memzero(b.data, b.len);
            free(b.data);
        }
        return;
    }
    /* IMAP forbids NUL in a literal (RFC 3501 CHAR8); Dovecot serves 0x80 in its place, and
     * so do IMAP and POP3 here: one octet for one, so every size stays as it was. */
    for (size_t i = 0; b.data && i < b.len;) {
        char *z = memchr(b.data + i, '\0', b.len - i);
        if (!z)
            break;
        *z = (char)0x80;
        i = (size_t)(z - b.data) + 1;
    }
    /* A message must end with a line end (RFC 5322); one that does not gets CRLF, so that
     * IMAP's RFC822.SIZE, BODY[] and POP3's RETR and sizes all agree. */
    if (b.len && b.data[b.len - 1] != '\n' && plain_put(&b, "\r\n", 2) != 0) {
        sodium_memzero(b.data, b.len);
        free(b.data);
        b.data = NULL;
    }
    gw_plain *p = calloc(1, sizeof *p);
    if (!p || !b.data) {
        free(p);
        if (b.data) {
            sodium_memzero(b.data, b.len);
            free(b.data);
        }
        x->status = PS_FAIL;
        snprintf(x->err, sizeof x->err, "out of memory");
        return;
    }
    p->refs = 1;
    snprintf(p->msgid, sizeof p->msgid, "%s", x->msgid);
    p->data = b.data;
    p->len = b.len;
    p->meta = x->meta;
    if (!x->parse) { /* a body read whose metadata the state has: no MIME work */
        x->plain = p;
        return;
    }
    p->mime = mime_parse(p->data, p->len, NULL);
    if (!p->mime || pi_write_envelope(&x->envelope_str, p->mime) != 0 ||
        pi_write_bodystructure(&x->bodystructure_str, p->mime) != 0) {
        plain_free(p);
        x->status = PS_FAIL;
        snprintf(x->err, sizeof x->err, "out of memory");
        return;
    }
    x->plain = p;
}

static void decrypt_done(gw_job *j)
{
    load_ctx *x = j->ctx;
    free(j);
    if (x->plain) {
        gw_account *a = x->a;
        gw_plain *p = x->plain;
        if (a->us && x->parse) {
            userstate_meta m = {
                .arrival = p->meta.arrival,
                .tz_minutes = p->meta.tz_minutes,
                .raw_size = p->meta.raw_size,
                .crlf_size = p->len,
                .envelope = (const uint8_t *)x->envelope_str.data,
                .envelope_len = x->envelope_str.len < US_BLOB_MAX ? x->envelope_str.len : 0,
                .bodystructure = (const uint8_t *)x->bodystructure_str.data,
                .bodystructure_len = x->bodystructure_str.len < US_BLOB_MAX ? x->bodystructure_str.len : 0,
            };
            userstate_meta_set(a->us, p->msgid, &m);
        }
        cache_insert(a, p);
    } else if (refetch(x)) {
        return;
    } else if (x->status == PS_BADMSG) {
        x->junk = true; /* the news server's own copy: tampered with, or a replayed copy */
    } else {
        gw_log(GW_WARN, "%s: %s", x->a->address, x->err);
    }
    finish(x);
}

/* ---- hop 2: the vault opens the prefix (loop) ---- */

static void open_reply(void *arg, const vault_reply *r)
{
    load_ctx *x = arg;
    if (r->type != VAULT_REPLY_OPEN) {
        if (x->from_cache && r->type == VAULT_REPLY_FAIL && r->reason == VAULT_FAIL_ENVELOPE) {
            gw_artcache_drop(x->a->net->artcache, x->msgid); /* rare: one unlink on the loop */
            if (refetch(x))
                return;
        }
        snprintf(x->err, sizeof x->err, "the vault cannot open %s: %s", x->msgid,
                 r->type == VAULT_REPLY_FAIL ? vault_fail_str(r->reason) : "unexpected reply");
        if (r->type == VAULT_REPLY_FAIL && r->reason == VAULT_FAIL_ENVELOPE && !x->from_cache)
            x->junk = true; /* sealed to another key, or not an envelope at all */
        else if (!x->s->dead)
            gw_log(GW_WARN, "%s: %s", x->a->address, x->err);
        finish(x);
        return;
    }
    x->meta = r->u.open.meta;
    memcpy(x->stream_key, r->u.open.stream_key, PC_STREAM_KEY_BYTES);
    if (gw_pool_run(x->a->net->pool, decrypt_work, decrypt_done, x) != 0) {
        snprintf(x->err, sizeof x->err, "server busy");
        finish(x);
    }
}

/* ---- hop 1: the article (worker) ---- */

static void article_work(gw_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)cfg;
    load_ctx *x = j->ctx;
    char got[PA_MSGID_MAX];
    if (x->a->net->artcache && !x->skip_cache && gw_artcache_get(x->a->net->artcache, x->msgid, &x->env)) {
        x->from_cache = true;
        x->status = PS_OK;
        return;
    }
    x->status = ps_pool_connect(sites, PS_ANY_SITE, x->err, sizeof x->err);
    if (x->status == PS_OK)
        x->status = ps_read_envelope(sites, PS_ANY_SITE, x->msgid, &x->env, got, x->err, sizeof x->err);
    if (x->status == PS_OK && strcmp(got, x->msgid) != 0) {
        x->status = PS_TEMP; /* the server's mistake, not the article's */
        snprintf(x->err, sizeof x->err, "article %s came back as %s", x->msgid, got);
    }
}

static void article_done(gw_job *j)
{
    load_ctx *x = j->ctx;
    free(j);
    if (x->status != PS_OK || x->s->dead || !x->s->vault_session) {
        x->junk = x->status == PS_BADMSG; /* not a postern envelope */
        if (x->status != PS_OK && !x->junk && !x->s->dead)
            gw_log(GW_WARN, "%s: %s", x->a->address, x->err);
        if (x->status == PS_NOENT) /* cancelled or expired since the last scan */
            gw_mbox_article_gone(x->a);
        finish(x);
        return;
    }
    if (!gw_vault_open(x->a->net, x->s->vault_session, (const uint8_t *)x->env.data, open_reply, x)) {
        snprintf(x->err, sizeof x->err, "the vault is unreachable");
        finish(x);
    }
}

static void hit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg);
}

static load_ctx *ctx_new(session *s, const char *msgid)
{
    load_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->s = s;
    s->refs++;
    x->a = s->account;
    x->a->refs++;
    x->waiters_tail = &x->waiters;
    snprintf(x->msgid, sizeof x->msgid, "%s", msgid);
    return x;
}

static int add_waiter(load_ctx *x, gw_load_fn cb, void *arg, bool mime)
{
    load_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->cb = cb;
    w->arg = arg;
    w->mime = mime;
    *x->waiters_tail = w;
    x->waiters_tail = &w->next;
    return 0;
}

/* Answers from the loop, not from inside gw_load: callers need not expect re-entry. */
static void finish_later(load_ctx *x, const char *err)
{
    if (err)
        snprintf(x->err, sizeof x->err, "%s", err);
    struct timeval zero = {0, 0};
    if (event_base_once(x->s->net->base, -1, EV_TIMEOUT, hit_cb, x, &zero) != 0) {
        gw_log(GW_ERROR, "out of memory: a FETCH may hang");
        for (load_waiter *w = x->waiters, *next; w; w = next) {
            next = w->next;
            free(w);
        }
        if (x->plain)
            gw_plain_unref(x->a, x->plain);
        gw_account_unref(x->a);
        gw_session_unref(x->s);
        free(x);
    }
}

static int submit_article(load_ctx *x)
{
    return gw_pool_run(x->s->net->pool, article_work, article_done, x);
}

/* Hop 1 for a new load, which joins the account's loads in flight. The MIME structure is
 * parsed when asked for, or when the state lacks the message's ENVELOPE and BODYSTRUCTURE
 * (the first load of a message fills that cache). */
static void start(load_ctx *x, bool mime)
{
    userstate_msg st;
    if (x->a->us)
        userstate_get(x->a->us, x->msgid, &st);
    x->parse = mime || !x->a->us || !st.has_meta || !st.meta.envelope_len || !st.meta.bodystructure_len;
    if (submit_article(x) != 0) {
        finish_later(x, "server busy");
        return;
    }
    x->next = x->a->loading;
    x->a->loading = x;
}

/* The cached copy of the article failed (damaged on disk): once more from the news server. */
static bool refetch(load_ctx *x)
{
    if (!x->from_cache || x->s->dead)
        return false;
    gw_log(GW_WARN, "%s: cached article %s is damaged; reading it from the news server", x->a->address, x->msgid);
    x->from_cache = false;
    x->skip_cache = true;
    x->status = PS_OK;
    x->err[0] = '\0';
    pu_buf_free(&x->env);
    return submit_article(x) == 0;
}

static load_ctx *find_loading(session *s, const char *msgid)
{
    for (load_ctx *x = s->account->loading; x; x = x->next)
        if (x->s == s && strcmp(x->msgid, msgid) == 0)
            return x;
    return NULL;
}

void gw_load(session *s, const char *msgid, bool mime, gw_load_fn cb, void *arg)
{
    load_ctx *x = find_loading(s, msgid);
    if (x && add_waiter(x, cb, arg, mime) == 0)
        return; /* loading already, maybe ahead of time: wait for that */
    x = ctx_new(s, msgid);
    if (!x) {
        gw_log(GW_ERROR, "out of memory: a FETCH may hang");
        return;
    }
    if (add_waiter(x, cb, arg, mime) != 0) {
        finish_later(x, "out of memory"); /* no waiter: nobody hears, nothing hangs on it */
        gw_log(GW_ERROR, "out of memory: a FETCH may hang");
        return;
    }
    gw_plain *p = cache_find(x->a, msgid);
    if (p) {
        p->refs++;
        x->plain = p;
        finish_later(x, NULL);
        return;
    }
    start(x, mime);
}

/* Loads a message nobody asked for yet, unless it is cached, loading, or READ_AHEAD such
 * loads are in flight already. */
static void prefetch(session *s, const char *msgid)
{
    if (s->prefetching >= READ_AHEAD || find_loading(s, msgid) || cache_find(s->account, msgid))
        return;
    load_ctx *x = ctx_new(s, msgid);
    if (!x)
        return;
    x->prefetch = true;
    s->prefetching++;
    start(x, false);
}

void gw_read_ahead(session *s, size_t first, size_t last, size_t n, const char *(*msgid_at)(void *ctx, size_t i),
                   void *ctx)
{
    bool in_order = first == s->read_next;
    s->read_next = last + 1;
    for (size_t i = last + 1; in_order && i < n && i <= last + READ_AHEAD; i++) {
        const char *id = msgid_at(ctx, i);
        if (id)
            prefetch(s, id);
    }
}

/* ---- a command's messages in order (FETCH, SEARCH) ---- */

#define WALK_WINDOW 4 /* messages loading at once per command */

enum slot_state {
    SLOT_WAITING, /* not issued yet, or loading */
    SLOT_LOADED,
    SLOT_FAILED,
    SLOT_NO_LOAD, /* the command needs no plaintext of it */
    SLOT_GONE,    /* gone from the server when issued: each() is not called for it */
};

typedef struct walk_slot {
    gw_walk *w;
    gw_plain *p;
    enum slot_state st;
} walk_slot;

struct gw_walk {
    session *s;
    size_t n, output_pause;
    bool mime;
    const gw_walk_ops *ops;
    void *ctx;
    walk_slot *slots;
    size_t next_issue, next_each;
    unsigned inflight, failed;
};

gw_walk *gw_walk_new(session *s, size_t n, size_t output_pause, bool mime, const gw_walk_ops *ops, void *ctx)
{
    gw_walk *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->slots = calloc(n ? n : 1, sizeof *w->slots);
    if (!w->slots) {
        free(w);
        return NULL;
    }
    for (size_t k = 0; k < n; k++)
        w->slots[k].w = w;
    w->s = s;
    w->n = n;
    w->output_pause = output_pause;
    w->mime = mime;
    w->ops = ops;
    w->ctx = ctx;
    return w;
}

void gw_walk_free(gw_walk *w)
{
    if (!w)
        return;
    for (size_t k = 0; k < w->n; k++)
        if (w->slots[k].p)
            gw_plain_unref(w->s->account, w->slots[k].p);
    free(w->slots);
    free(w);
}

static void walk_loaded(void *arg, gw_plain *p, const char *err)
{
    walk_slot *sl = arg;
    gw_walk *w = sl->w;
    w->inflight--;
    if (p) {
        sl->p = p;
        sl->st = SLOT_LOADED;
    } else if (err == gw_load_junk) {
        sl->st = SLOT_GONE; /* removed from the mailbox: as if expunged before the command */
    } else {
        sl->st = SLOT_FAILED;
        w->failed++;
    }
    gw_walk_step(w);
}

void gw_walk_step(gw_walk *w)
{
    session *s = w->s;
    for (;;) {
        while (w->next_each < w->n && w->slots[w->next_each].st != SLOT_WAITING) {
            walk_slot *sl = &w->slots[w->next_each];
            /* A message gone when issued gets no each(), even if it is back by now (a scan
             * that saw it again): nothing was loaded for it, and each() may need that. */
            if (sl->st == SLOT_LOADED || sl->st == SLOT_NO_LOAD)
                w->ops->each(w->ctx, w->next_each, sl->p);
            if (sl->p) {
                gw_plain_unref(s->account, sl->p);
                sl->p = NULL;
            }
            w->next_each++;
        }
        if (w->next_each == w->n && w->inflight == 0) {
            w->ops->done(w->ctx, w->failed); /* may free w */
            return;
        }
        if (w->next_issue >= w->n || w->inflight >= WALK_WINDOW ||
            (w->output_pause && gw_session_output_len(s) > w->output_pause))
            return; /* walk_loaded() or the owner's kick goes on */
        size_t k = w->next_issue++;
        const char *id = w->ops->msgid(w->ctx, k);
        if (!id || !w->ops->need(w->ctx, k)) {
            w->slots[k].st = id ? SLOT_NO_LOAD : SLOT_GONE;
            continue;
        }
        w->inflight++;
        gw_load(s, id, w->mime, walk_loaded, &w->slots[k]);
    }
}
