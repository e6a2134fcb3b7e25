/* mailbox: the process-wide side — the worker pool, the article cache and its hourly sweep,
 * the periodic saves of the users' states and the poller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <event2/event.h>

#include "mailbox/mb.h"

#define SWEEP_INTERVAL 3600 /* seconds between article cache sweeps */

static void sweep_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    (void)cfg;
    mb_artcache_sweep(j->ctx);
}

static void sweep_done(mb_job *j)
{
    free(j);
}

/* The article cache's age limit is kept by a sweep each hour (and at start). */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mb_store *st = arg;
    if (!st->artcache)
        return;
    (void)mb_pool_run(st->pool, sweep_work, sweep_done, st->artcache); /* busy: the next hour */
    struct timeval tv = {SWEEP_INTERVAL, 0};
    evtimer_add(st->sweep_timer, &tv);
}

/* A crash of the network process loses at most an interval of flag changes. */
static void save_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mb_accounts_save_changed(arg);
}

mb_store *mb_store_new(const pn_config *cfg, struct event_base *base, unsigned threads, const mb_hooks *hooks,
                       char *err, size_t errlen)
{
    mb_store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->cfg = cfg;
    st->base = base;
    st->hooks = *hooks;
    st->plain_budget = (uint64_t)cfg->gateway.plaintext_budget_mb << 20;
    st->pool = mb_pool_new(cfg, base, threads);
    if (cfg->gateway.article_cache_mb) {
        char why[512];
        st->artcache = mb_artcache_open(cfg->state_dir, (uint64_t)cfg->gateway.article_cache_mb << 20,
                                        cfg->gateway.retention_days, why, sizeof why);
        if (!st->artcache) /* serving on without it is better than not serving */
            pu_log(PU_WARN, "article cache off: %s", why);
    }
    st->sweep_timer = evtimer_new(base, sweep_cb, st);
    st->save_timer = event_new(base, -1, EV_PERSIST, save_cb, st);
    struct timeval save_every = {cfg->gateway.state_save_interval, 0};
    if (!st->pool || !st->sweep_timer || !st->save_timer || evtimer_add(st->save_timer, &save_every) != 0) {
        snprintf(err, errlen, "out of memory or threads");
        mb_store_free(st);
        return NULL;
    }
    sweep_cb(-1, 0, st); /* the first sweep at start: expiry may have passed while we were down */
    mb_poller_start(st);
    return st;
}

mb_pool *mb_store_pool(mb_store *st)
{
    return st->pool;
}

void mb_store_stopping(mb_store *st)
{
    st->stopping = true;
    mb_budget_drain(st, false);
}

int mb_store_set_writer(mb_store *st, const pn_writer_key *key)
{
    if (st->writer)
        sodium_free(st->writer);
    st->writer = NULL;
    if (!key)
        return 0;
    if (!(st->writer = sodium_malloc(sizeof *st->writer)))
        return -1;
    memcpy(st->writer, key, sizeof *st->writer);
    return 0;
}

void mb_store_free(mb_store *st)
{
    if (!st)
        return;
    st->stopping = true;
    st->freeing = true;
    mb_budget_drain(st, true);
    mb_loader_flush(st);
    mb_poller_stop(st);
    mb_pool_free(st->pool); /* runs the queued jobs and their callbacks, the last saves among them */
    st->pool = NULL;        /* saves from now on are made here (account.c) */
    mb_loader_flush(st);
    mb_accounts_unsaved_free(st);
    if (st->sweep_timer)
        event_free(st->sweep_timer);
    if (st->save_timer)
        event_free(st->save_timer);
    mb_artcache_close(st->artcache);
    while (st->accounts) {
        /* a load that waited for the vault when it stopped (a cancel's, whose session has
         * gone) holds it: its state is written here, or the last changes would be lost */
        mb_account_save_now(st->accounts);
        pu_log(PU_ERROR, "account of %s still referenced at exit", st->accounts->address);
        st->accounts = st->accounts->next;
    }
    if (st->writer)
        sodium_free(st->writer);
    free(st);
}

void mb_store_get_stats(const mb_store *st, mb_store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->articles_from_cache = st->articles_from_cache;
    out->articles_from_news = st->articles_from_news;
    out->messages_decrypted = st->messages_decrypted;
    out->plaintext_bytes = st->plain_used;
    for (const mb_account *a = st->accounts; a; a = a->next)
        out->accounts++;
    out->read_site = st->read_site;
    out->site_known = st->status_written || st->sites_down;
    out->sites_down = st->sites_down;
}
