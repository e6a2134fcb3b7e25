/* mailbox: getting one message into memory as plaintext. Three hops, none on the loop's
 * critical path: a worker reads the article (ciphertext) from the news server; the vault,
 * which alone holds the private key, opens the 196-byte prefix and returns the message's
 * stream key; a worker decrypts the stream (into the served form: bare LF as CRLF, NUL as 0x80)
 * and parses the MIME structure. Decrypted messages stay in a small per-account cache in
 * memory (never on disk), because clients fetch the same message several times in a row
 * (headers, then the preview, then the body). A session that reads message after message in
 * order (mbsync, fetchmail, POP3 RETR) has the next few loaded ahead (mb_read_ahead): the
 * three hops overlap instead of adding up. A load belongs to the account, not to a session:
 * two sessions of one user asking for one message share it, and it goes on when the session
 * that started it leaves (another reader lends its vault session). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "imap/fetch.h"
#include "mailbox/mb.h"

#define CACHE_BYTES_MAX (48u << 20) /* per account: several big attachments */
#define CACHE_N_MAX 256
#define READ_AHEAD 8 /* messages loaded ahead of a client that reads in order */

/* One message loading for the account; later mb_load calls for it join it. */
struct mb_loading {
    struct mb_loading *next; /* the account's loads in flight, or its finished ones */
    mb_account *a; /* referenced */
    mb_reader *reader;       /* whose vault session opens the prefix (NULL: any reader's) */
    mb_reader *prefetch_for; /* counted in its prefetching */
    uint64_t opened_with;    /* the vault session its OPEN went to */
    char msgid[PA_MSGID_MAX];
    mb_load_waiter *waiters, **waiters_tail; /* none for a prefetch nobody asked for yet */
    bool from_cache; /* env came from the article cache, not the news server */
    bool skip_cache; /* the cached copy failed: ask the news server */
    bool parse;      /* parse the MIME structure in the worker (decided on the loop) */
    pu_buf env; /* ciphertext envelope */
    pc_msg_meta meta;
    uint8_t stream_key[PC_STREAM_KEY_BYTES]; /* wiped when done */
    int status;
    char err[256];
    bool junk; /* the article can never open for this user (mb_load_junk) */
    mb_plain *plain;
    pu_buf envelope_str, bodystructure_str, headers_str; /* for the state's cache */
    unsigned header_set;
    uint64_t charge;         /* bytes of the store's plaintext budget it holds */
    struct mb_loading *budget_next; /* the store's loads waiting for budget */
};
typedef struct mb_loading load_ctx;

/* ---- the plaintext budget: decrypted messages in memory, shared by every session ----
 * A load reserves what it will hold (the article's ciphertext, then the plaintext) before
 * it reads the article, from the size the state or the overview gives; a decrypted message
 * holds its own size for as long as it lives (in the cache, in a command, in a session's
 * output). A load that does not fit waits in arrival order, after the least recently used
 * cached messages nobody else holds were given up; one load always runs, whatever its size,
 * so a message larger than the budget is still served. */

#define UNKNOWN_SIZE_CHARGE (1u << 20) /* a message whose size neither state nor overview knows */

static void budget_release(mb_store *st, uint64_t bytes);

static void plain_free(mb_plain *p)
{
    if (p->st)
        budget_release(p->st, p->charge);
    if (p->data) {
        sodium_memzero(p->data, p->len);
        free(p->data);
    }
    mime_free(p->mime);
    sodium_memzero(p, sizeof *p);
    free(p);
}

void mb_plain_unref(mb_plain *p)
{
    if (!p)
        return;
    if (--p->refs == 0)
        plain_free(p);
    else if (p->refs == 1 && p->st && p->st->budget_head)
        budget_release(p->st, 0); /* perhaps only the cache holds it now: a waiting load may evict it */
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

static void cache_unlink(mb_account *a, mb_plain *p)
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

static void cache_remove(mb_account *a, mb_plain *p)
{
    cache_unlink(a, p);
    for (mb_plain **pp = &a->cache_index[bucket_of(p->msgid)]; *pp; pp = &(*pp)->hnext)
        if (*pp == p) {
            *pp = p->hnext;
            break;
        }
    p->hnext = NULL;
    mb_plain_unref(p);
}


static void cache_push_front(mb_account *a, mb_plain *p)
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

void mb_cache_insert(mb_account *a, mb_plain *p)
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

mb_plain *mb_cache_lookup(mb_account *a, const char *msgid)
{
    if (!a->cache_index)
        return NULL;
    for (mb_plain *p = a->cache_index[bucket_of(msgid)]; p; p = p->hnext)
        if (strcmp(p->msgid, msgid) == 0) {
            if (p != a->cache) { /* most recently used: to the front */
                cache_unlink(a, p);
                cache_push_front(a, p);
            }
            return p;
        }
    return NULL;
}

/* Gives up cached messages that only the cache holds, least recently used first, until
 * bytes more fit in the budget; true if they do. */
static bool evict_for(mb_store *st, uint64_t bytes)
{
    for (mb_account *a = st->accounts; a && st->plain_used + bytes > st->plain_budget; a = a->next) {
        mb_plain *p = a->cache_tail;
        while (p && st->plain_used + bytes > st->plain_budget) {
            mb_plain *prev = p->prev;
            if (p->refs == 1)
                cache_remove(a, p);
            p = prev;
        }
    }
    return st->plain_used + bytes <= st->plain_budget;
}

static bool budget_take(mb_store *st, uint64_t bytes)
{
    if (st->plain_budget && st->plain_used && st->plain_used + bytes > st->plain_budget && !evict_for(st, bytes) &&
        st->plain_used)
        return false;
    st->plain_used += bytes;
    return true;
}

static void start_article(load_ctx *x);

static void budget_release(mb_store *st, uint64_t bytes)
{
    st->plain_used -= bytes < st->plain_used ? bytes : st->plain_used;
    if (st->budget_busy) /* evicting for the loop below frees messages: it goes on there */
        return;
    st->budget_busy = true;
    /* the waiting loads in arrival order, as many as now fit */
    while (st->budget_head && budget_take(st, st->budget_head->charge)) {
        load_ctx *x = st->budget_head;
        if (!(st->budget_head = x->budget_next))
            st->budget_tail = NULL;
        x->budget_next = NULL;
        st->budget_waiting--;
        start_article(x);
    }
    st->budget_busy = false;
}

/* What a load will hold at most: the article (base64 in the news server's copy, about 4/3 of
 * the envelope, decoded as it arrives) and the plaintext. */
static uint64_t charge_of(load_ctx *x)
{
    userstate_msg st;
    if (x->a->us && userstate_get(x->a->us, x->msgid, &st) == US_OK && st.has_meta && st.meta.crlf_size)
        return st.meta.crlf_size * 2 + (64u << 10);
    long k = mb_mbox_find_msgid(x->a->mbox, x->msgid);
    if (k >= 0 && x->a->mbox->msgs[k].bytes)
        return x->a->mbox->msgs[k].bytes * 7 / 4 + (64u << 10);
    return UNKNOWN_SIZE_CHARGE;
}

uint64_t mb_store_plaintext_used(const mb_store *st)
{
    return st->plain_used;
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

/* The vault session that opens x's prefix: its own reader's, or, when that one left, any
 * other reader's of the account; 0 when nobody is logged in any more. */
static uint64_t vault_session_of(load_ctx *x)
{
    if (!x->reader)
        x->reader = x->a->readers;
    return x->reader ? x->reader->vault_session : mb_replica_held_vault(x->a);
}

/* A message loaded without its MIME structure (a body read, a read-ahead) and now asked for
 * a part: parsed here, on the loop — the rare case; loads that need it parse in the worker. */
static bool ensure_mime(mb_plain *p)
{
    if (!p->mime)
        p->mime = mime_parse(p->data, p->len, NULL);
    return p->mime != NULL;
}

const char mb_load_junk[] = "not this user's mail";

/* An article that does not open is an attacker's (a forged or re-posted article in the
 * user's group), never a reason to fail a login, a FETCH 1:* or a SEARCH: it leaves the
 * mailbox as an expunged message does, once, with a line for the admin. */
static void drop_junk(load_ctx *x)
{
    mb_account *a = x->a;
    pu_log(PU_WARN, "%s: article %s is not this user's mail (%s): removed from the mailbox", a->address, x->msgid,
           x->err[0] ? x->err : "does not open");
    if (a->us && userstate_remove(a->us, x->msgid) == US_OK)
        mb_account_changed(a);
}

/* Every waiter hears exactly once. A callback may cancel a waiter further down the list
 * (a FETCH that ends frees its walk): each is taken off before its callback runs. */
static void finish(load_ctx *x)
{
    mb_account *a = x->a;
    unlink_loading(x); /* callbacks may load again: that starts afresh or hits the cache */
    if (x->junk)
        drop_junk(x);
    if (x->prefetch_for)
        x->prefetch_for->prefetching--;
    for (mb_load_waiter *w; (w = x->waiters);) {
        x->waiters = w->next;
        if (!x->waiters)
            x->waiters_tail = &x->waiters;
        w->next = NULL;
        w->load = NULL;
        if (x->plain && w->mime && !ensure_mime(x->plain)) {
            w->cb(w->arg, NULL, "out of memory");
        } else if (x->plain) {
            x->plain->refs++;
            w->cb(w->arg, x->plain, NULL);
        } else {
            w->cb(w->arg, NULL, x->junk ? mb_load_junk : x->err[0] ? x->err : "cannot read the message");
        }
    }
    if (x->plain)
        mb_plain_unref(x->plain);
    sodium_memzero(x->stream_key, sizeof x->stream_key);
    pu_buf_free(&x->env);
    pu_buf_free(&x->envelope_str);
    pu_buf_free(&x->bodystructure_str);
    pu_buf_free(&x->headers_str);
    uint64_t charge = x->charge;
    free(x);
    budget_release(a->st, charge); /* may start waiting loads */
    mb_account_release(a);
}

static bool refetch(load_ctx *x);
static bool send_open(load_ctx *x);

/* ---- hop 3: decrypt and parse (worker) ---- */

/* The plaintext as it is decrypted: pu_buf wipes every block it outgrows. */
typedef struct plain_buf {
    pu_buf b;
    bool prev_cr;
} plain_buf;

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
            if (pu_buf_add(&b->b, run, (size_t)(lf - run)) != 0 || pu_buf_add(&b->b, "\r\n", 2) != 0)
                return 1;
            run = lf + 1;
        }
        p = lf + 1;
    }
    if (run < end && pu_buf_add(&b->b, run, (size_t)(end - run)) != 0)
        return 1;
    if (len)
        b->prev_cr = end[-1] == '\r';
    return 0;
}

static void decrypt_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    load_ctx *x = j->ctx;
    plain_buf pb = {0};
    if (x->meta.crlf_size < (64u << 20))
        (void)pu_buf_reserve(&pb.b, x->meta.crlf_size); /* one allocation for the usual message */
    x->status = ps_open_envelope(cfg, x->a->mbox->group, (const uint8_t *)x->env.data, x->env.len, x->msgid, x->stream_key, &x->meta, to_crlf, &pb,
                                 x->err, sizeof x->err);
    pu_buf b = pb.b;
    sodium_memzero(x->stream_key, sizeof x->stream_key);
    mb_artcache *cache = x->a->st->artcache;
    if (cache && x->status == PS_OK && !x->from_cache) /* authentic: worth keeping */
        mb_artcache_put(cache, x->msgid, &x->env, x->meta.arrival);
    else if (cache && x->status != PS_OK && x->from_cache)
        mb_artcache_drop(cache, x->msgid); /* damaged on disk: the next read asks the news server */
    pu_buf_free(&x->env);
    if (x->status != PS_OK) {
        pu_buf_free(&b);
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
    if (b.len && b.data[b.len - 1] != '\n' && pu_buf_add(&b, "\r\n", 2) != 0)
        pu_buf_free(&b);
    mb_plain *p = calloc(1, sizeof *p);
    if (!p || !b.data) {
        free(p);
        pu_buf_free(&b);
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
        pi_write_bodystructure(&x->bodystructure_str, p->mime) != 0 ||
        pi_header_set_write(&x->headers_str, p->mime) != 0) {
        plain_free(p);
        x->status = PS_FAIL;
        snprintf(x->err, sizeof x->err, "out of memory");
        return;
    }
    x->header_set = x->headers_str.len <= PI_HEADER_CACHE_MAX ? PI_HEADER_SET : PI_HEADER_SET_TOO_BIG;
    x->plain = p;
}

static void decrypt_done(mb_job *j)
{
    load_ctx *x = j->ctx;
    free(j);
    if (x->plain) {
        mb_account *a = x->a;
        mb_plain *p = x->plain;
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
                .header_set = x->header_set,
                .headers = (const uint8_t *)x->headers_str.data,
                .headers_len = x->header_set == PI_HEADER_SET ? x->headers_str.len : 0,
            };
            userstate_meta_set(a->us, p->msgid, &m);
        }
        /* the message holds its own share now, for as long as it lives */
        p->st = a->st;
        p->charge = p->len;
        a->st->plain_used += p->charge;
        a->st->messages_decrypted++;
        mb_cache_insert(a, p);
    } else if (refetch(x)) {
        return;
    } else if (x->status == PS_BADMSG) {
        x->junk = true; /* the news server's own copy: tampered with, or a replayed copy */
    } else {
        pu_log(PU_WARN, "%s: %s", x->a->address, x->err);
    }
    finish(x);
}

/* ---- hop 2: the vault opens the prefix (loop) ---- */

static void open_reply(void *arg, const vault_reply *r)
{
    load_ctx *x = arg;
    if (r->type != VAULT_REPLY_OPEN) {
        if (x->from_cache && r->type == VAULT_REPLY_FAIL && r->reason == VAULT_FAIL_ENVELOPE) {
            mb_artcache_drop(x->a->st->artcache, x->msgid); /* rare: one unlink on the loop */
            if (refetch(x))
                return;
        }
        if (r->type == VAULT_REPLY_FAIL && r->reason == VAULT_FAIL_SESSION) {
            /* the session that lent its vault session left meanwhile (and was detached, or
             * not yet): another one of the user's, still logged in, opens it */
            x->reader = NULL;
            for (mb_reader *o = x->a->readers; o && !x->reader; o = o->next)
                if (o->vault_session && o->vault_session != x->opened_with)
                    x->reader = o;
            if (x->reader && send_open(x))
                return;
        }
        snprintf(x->err, sizeof x->err, "the vault cannot open %s: %s", x->msgid,
                 r->type == VAULT_REPLY_FAIL ? vault_fail_str(r->reason) : "unexpected reply");
        if (r->type == VAULT_REPLY_FAIL && r->reason == VAULT_FAIL_ENVELOPE && !x->from_cache)
            x->junk = true; /* sealed to another key, or not an envelope at all */
        else
            pu_log(PU_WARN, "%s: %s", x->a->address, x->err);
        finish(x);
        return;
    }
    x->meta = r->u.open.meta;
    memcpy(x->stream_key, r->u.open.stream_key, PC_STREAM_KEY_BYTES);
    mb_replica_cancel_key(x->a, x->msgid, x->stream_key);
    if (mb_pool_run(x->a->st->pool, decrypt_work, decrypt_done, x) != 0) {
        snprintf(x->err, sizeof x->err, "server busy");
        finish(x);
    }
}

/* ---- hop 1: the article (worker) ---- */

static void article_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)cfg;
    load_ctx *x = j->ctx;
    char got[PA_MSGID_MAX];
    mb_artcache *cache = x->a->st->artcache;
    if (cache && !x->skip_cache && mb_artcache_get(cache, x->msgid, &x->env)) {
        x->from_cache = true;
        x->status = PS_OK;
        return;
    }
    x->status = ps_pool_connect(sites, PS_ANY_SITE, x->err, sizeof x->err);
    if (x->status == PS_OK)
        x->status = ps_read_envelope(sites, PS_ANY_SITE, x->msgid, &x->env, got, NULL, x->err, sizeof x->err);
    if (x->status == PS_OK && strcmp(got, x->msgid) != 0) {
        x->status = PS_TEMP; /* the server's mistake, not the article's */
        snprintf(x->err, sizeof x->err, "article %s came back as %s", x->msgid, got);
    }
}

static bool send_open(load_ctx *x)
{
    mb_store *st = x->a->st;
    x->opened_with = vault_session_of(x);
    return st->hooks.vault_open(st->hooks.ctx, x->opened_with, (const uint8_t *)x->env.data, open_reply, x) != 0;
}

static void article_done(mb_job *j)
{
    load_ctx *x = j->ctx;
    free(j);
    if (x->status == PS_OK) {
        if (x->from_cache)
            x->a->st->articles_from_cache++;
        else
            x->a->st->articles_from_news++;
    }
    if (x->status != PS_OK || !vault_session_of(x)) {
        x->junk = x->status == PS_BADMSG; /* not a postern envelope */
        if (x->status != PS_OK && !x->junk)
            pu_log(PU_WARN, "%s: %s", x->a->address, x->err);
        else if (x->status == PS_OK)
            snprintf(x->err, sizeof x->err, "logged out");
        if (x->status == PS_NOENT) /* cancelled or expired since the last scan */
            mb_mbox_article_gone(x->a);
        finish(x);
        return;
    }
    /* the store is being freed (mb_pool_free runs the finished jobs' callbacks): no vault
     * reply would ever come, and the request would be left behind */
    if (x->a->st->freeing) {
        snprintf(x->err, sizeof x->err, "the server is stopping");
        finish(x);
        return;
    }
    if (!send_open(x)) {
        snprintf(x->err, sizeof x->err, "the vault is unreachable");
        finish(x);
    }
}

/* Finished loads (cache hits, loads that could not start) and waiters whose load could not
 * even be made are answered from the loop, not from inside mb_load: callers need not expect
 * re-entry. The event is the account's own, made with it, so this needs no memory. */
static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mb_account *a = arg;
    mb_account_ref(a); /* the last load's release must not free the account under us */
    while (a->finished) {
        load_ctx *x = a->finished;
        a->finished = x->next;
        x->next = NULL;
        finish(x);
    }
    while (a->failed) {
        mb_load_waiter *w = a->failed;
        a->failed = w->next;
        w->next = NULL;
        w->failed = false;
        w->cb(w->arg, NULL, "out of memory");
    }
    mb_account_release(a);
}

static void finish_later(load_ctx *x, const char *err)
{
    if (err)
        snprintf(x->err, sizeof x->err, "%s", err);
    unlink_loading(x);
    x->next = x->a->finished;
    x->a->finished = x;
    event_active(x->a->deliver, EV_TIMEOUT, 0);
}

static load_ctx *ctx_new(mb_reader *r, const char *msgid)
{
    load_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->reader = r;
    x->a = r->a;
    x->a->refs++;
    x->waiters_tail = &x->waiters;
    x->env.public_data = 1; /* the sealed envelope: what the news spool holds anyway */
    snprintf(x->msgid, sizeof x->msgid, "%s", msgid);
    return x;
}

static void add_waiter(load_ctx *x, mb_load_waiter *w, mb_load_fn cb, void *arg, bool mime)
{
    w->cb = cb;
    w->arg = arg;
    w->mime = mime;
    w->load = x;
    w->next = NULL;
    *x->waiters_tail = w;
    x->waiters_tail = &w->next;
}

void mb_load_cancel(mb_load_waiter *w)
{
    if (w->failed) {
        for (mb_load_waiter **p = &w->a->failed; *p; p = &(*p)->next)
            if (*p == w) {
                *p = w->next;
                break;
            }
        w->failed = false;
        w->next = NULL;
        return;
    }
    load_ctx *x = w->load;
    if (!x)
        return;
    mb_load_waiter **p = &x->waiters;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p) {
        *p = w->next;
        if (x->waiters_tail == &w->next)
            x->waiters_tail = p;
    }
    w->next = NULL;
    w->load = NULL; /* the load goes on: its result fills the cache */
}

static int submit_article(load_ctx *x)
{
    return mb_pool_run(x->a->st->pool, article_work, article_done, x);
}

/* Hop 1 for a new load, which joins the account's loads in flight. The MIME structure is
 * parsed when asked for, or when the state lacks the message's ENVELOPE and BODYSTRUCTURE
 * (the first load of a message fills that cache). */
static void start(load_ctx *x, bool mime)
{
    userstate_msg st;
    if (x->a->us)
        userstate_get(x->a->us, x->msgid, &st);
    x->parse = mime || !x->a->us || !st.has_meta || !st.meta.envelope_len || !st.meta.bodystructure_len ||
               (st.meta.header_set != PI_HEADER_SET && st.meta.header_set != PI_HEADER_SET_TOO_BIG);
    x->next = x->a->loading;
    x->a->loading = x;
    mb_store *s = x->a->st;
    x->charge = charge_of(x);
    if (!s->budget_head && budget_take(s, x->charge)) {
        start_article(x);
        return;
    }
    if (s->budget_tail) /* waits for budget: budget_release starts it */
        s->budget_tail->budget_next = x;
    else
        s->budget_head = x;
    s->budget_tail = x;
    s->budget_waiting++;
}

static void start_article(load_ctx *x)
{
    if (submit_article(x) != 0)
        finish_later(x, "server busy");
}

void mb_budget_drain(mb_store *st, bool now)
{
    while (st->budget_head) {
        load_ctx *x = st->budget_head;
        if (!(st->budget_head = x->budget_next))
            st->budget_tail = NULL;
        x->budget_next = NULL;
        x->charge = 0;
        st->budget_waiting--;
        snprintf(x->err, sizeof x->err, "the server is stopping");
        if (now) {
            finish(x);
        } else {
            finish_later(x, NULL);
        }
    }
}

void mb_loader_flush(mb_store *st)
{
    /* the loop has ended: what it would have answered is answered here; a finish may
     * release its account, so the list is walked again from its head each time */
    for (bool again = true; again;) {
        again = false;
        for (mb_account *a = st->accounts; a; a = a->next)
            if (a->finished || a->failed) {
                deliver_cb(-1, 0, a);
                again = true;
                break;
            }
    }
}

/* The cached copy of the article failed (damaged on disk): once more from the news server. */
static bool refetch(load_ctx *x)
{
    if (!x->from_cache)
        return false;
    pu_log(PU_WARN, "%s: cached article %s is damaged; reading it from the news server", x->a->address, x->msgid);
    x->from_cache = false;
    x->skip_cache = true;
    x->status = PS_OK;
    x->err[0] = '\0';
    pu_buf_free(&x->env);
    return submit_article(x) == 0;
}

static load_ctx *find_loading(mb_account *a, const char *msgid)
{
    for (load_ctx *x = a->loading; x; x = x->next)
        if (strcmp(x->msgid, msgid) == 0)
            return x;
    return NULL;
}

void mb_load(mb_reader *r, const char *msgid, bool mime, mb_load_waiter *w, mb_load_fn cb, void *arg)
{
    mb_account *a = r->a;
    w->a = a;
    load_ctx *x = find_loading(a, msgid);
    if (x) { /* loading already, maybe ahead of time or for another session: wait for that */
        add_waiter(x, w, cb, arg, mime);
        return;
    }
    x = ctx_new(r, msgid);
    if (!x) { /* answered from the loop all the same: nothing hangs on it */
        pu_log(PU_ERROR, "%s: out of memory loading %s", a->address, msgid);
        w->cb = cb;
        w->arg = arg;
        w->load = NULL;
        w->failed = true;
        w->next = a->failed;
        a->failed = w;
        event_active(a->deliver, EV_TIMEOUT, 0);
        return;
    }
    add_waiter(x, w, cb, arg, mime);
    mb_plain *p = mb_cache_lookup(a, msgid);
    if (p) {
        p->refs++;
        x->plain = p;
        x->next = a->loading; /* finish_later takes it off again */
        a->loading = x;
        finish_later(x, NULL);
        return;
    }
    start(x, mime);
}

/* Loads a message nobody asked for yet, unless it is cached, loading, or READ_AHEAD such
 * loads are in flight already. */
static void prefetch(mb_reader *r, const char *msgid)
{
    if (r->prefetching >= READ_AHEAD || find_loading(r->a, msgid) || mb_cache_lookup(r->a, msgid))
        return;
    load_ctx *x = ctx_new(r, msgid);
    if (!x)
        return;
    x->prefetch_for = r;
    r->prefetching++;
    start(x, false);
}

void mb_read_ahead(mb_reader *r, size_t first, size_t last, size_t n, const char *(*msgid_at)(void *ctx, size_t i),
                   void *ctx)
{
    bool in_order = first == r->read_next;
    r->read_next = last + 1;
    for (size_t i = last + 1; in_order && i < n && i <= last + READ_AHEAD; i++) {
        const char *id = msgid_at(ctx, i);
        if (id)
            prefetch(r, id);
    }
}

/* ---- readers, and the account's side of the loader ---- */

void mb_reader_attach(mb_reader *r, mb_account *a, uint64_t vault_session)
{
    r->a = a;
    r->vault_session = vault_session;
    r->read_next = 0;
    r->prefetching = 0;
    r->prev = NULL;
    r->next = a->readers;
    if (a->readers)
        a->readers->prev = r;
    a->readers = r;
}

static void forget_reader(load_ctx *list, const mb_reader *r)
{
    for (load_ctx *x = list; x; x = x->next) {
        if (x->reader == r)
            x->reader = NULL; /* the next hop takes another reader's vault session */
        if (x->prefetch_for == r)
            x->prefetch_for = NULL;
    }
}

bool mb_reader_detach(mb_reader *r)
{
    mb_account *a = r->a;
    if (!a)
        return false;
    if (r->prev)
        r->prev->next = r->next;
    else
        a->readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    forget_reader(a->loading, r);
    forget_reader(a->finished, r);
    r->prefetching = 0;
    r->prev = r->next = NULL;
    r->a = NULL;
    return mb_replica_hold_vault(a, r->vault_session);
}

int mb_loader_init(mb_account *a)
{
    a->deliver = event_new(a->st->base, -1, 0, deliver_cb, a);
    return a->deliver ? 0 : -1;
}

void mb_loader_free(mb_account *a)
{
    while (a->cache)
        cache_remove(a, a->cache);
    free(a->cache_index);
    a->cache_index = NULL;
    if (a->deliver)
        event_free(a->deliver);
    a->deliver = NULL;
}
