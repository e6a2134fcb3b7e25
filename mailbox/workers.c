/* mailbox: the worker pool. Blocking work — NNTP to INN, state files — runs on a few threads,
 * each with its own connections (a store ps_pool is used by one thread at a time), so the event loop
 * never waits. Finished jobs are queued back and the loop is woken through a pipe; their done
 * callbacks run on the loop thread, which owns every session and account. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <event2/event.h>

#include "mailbox/mb.h"
#include "store/store.h"

#define QUEUE_MAX 1024 /* waiting jobs; beyond it logins are refused as busy */

typedef struct mb_worker {
    struct mb_pool *pool;
    ps_pool *sites; /* this thread's connections */
} mb_worker;

struct mb_pool {
    const pn_config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mb_job *head, *tail;
    size_t queued;
    mb_job *done_head, *done_tail;
    bool stop;
    pthread_t *threads;
    mb_worker *workers;
    unsigned n_workers, n_threads;
    int wake[2];
    struct event *ev;
};

/* Connections are renewed after this long, so nnrpd's view of the group list (fixed when it
 * started) never gets older than that. */
#define WCONN_MAX_AGE_S 120

/* A worker connected in configured order (its preferred site did not answer, or it had none). */
static void connected_any(void *arg, int status, size_t site, const char *err)
{
    const pn_config *cfg = arg;
    if (status != PS_OK)
        pu_log(PU_WARN, "no news server reachable: %s", err);
    else if (site > 0) /* the preferred (first, usually local) site is down: say where mail comes from now */
        pu_log(PU_WARN, "news server %s unreachable: reading from site %s", cfg->sites[0].name,
               cfg->sites[site].name);
}

static void fetch_keyrecord(mb_job *j, ps_pool *sites)
{
    pc_keyrecord rec;
    j->status = ps_fetch_keyrecord(sites, PS_ANY_SITE, j->address, &rec, NULL, j->err, sizeof j->err);
    if (j->status == PS_OK) {
        j->record_len = pc_keyrecord_encode(&rec, j->record, sizeof j->record);
        if (!j->record_len) {
            j->status = PS_FAIL;
            strcpy(j->err, "key record does not encode");
        }
    }
}

static void run(mb_pool *p, mb_job *j, ps_pool *c)
{
    switch (j->kind) {
    case MB_JOB_KEYRECORD:
        fetch_keyrecord(j, c);
        break;
    case MB_JOB_WORK:
        j->work(j, c, p->cfg);
        break;
    case MB_JOB_STATE_OPEN:
        j->status = userstate_open(p->cfg->state_dir, j->address, j->state_key, &j->us, j->err, sizeof j->err);
        if (j->status == US_OK &&
            mb_replica_file_read(p->cfg, j->address, j->state_key, &j->replica, &j->replica_len, j->err,
                                 sizeof j->err) != 0)
            pu_log(PU_WARN, "%s: %s (the state is read from the news server)", j->address, j->err);
        break;
    case MB_JOB_STATE_SAVE:
        if (j->work) /* the owner's step before the write (account.c prunes) */
            j->work(j, c, p->cfg);
        j->status = userstate_save(j->us, j->err, sizeof j->err);
        if (j->status == US_OK && j->replica && j->state_key &&
            mb_replica_file_write(p->cfg, j->address, j->state_key, j->replica, j->replica_len, j->err,
                                  sizeof j->err) != 0)
            pu_log(PU_WARN, "%s: %s", j->address, j->err);
        if (j->status == US_OK) { /* a state not written stays the owner's (account.c keeps it) */
            userstate_close(j->us);
            j->us = NULL;
        }
        break;
    }
}

static void *worker(void *arg)
{
    mb_worker *w = arg;
    mb_pool *p = w->pool;
    ps_pool *c = w->sites;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head) /* stopping, and the queue is empty */
            break;
        mb_job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);

        j->next = NULL;
        run(p, j, c);

        pthread_mutex_lock(&p->mu);
        if (p->done_tail)
            p->done_tail->next = j;
        else
            p->done_head = j;
        p->done_tail = j;
        /* a full pipe already holds a wake-up: EAGAIN is fine */
        ssize_t w = write(p->wake[1], "", 1);
        (void)w;
    }
    pthread_mutex_unlock(&p->mu);
    ps_pool_drop(c, PS_ANY_SITE);
    ps_thread_done();
    return NULL;
}

static void run_done(mb_pool *p)
{
    pthread_mutex_lock(&p->mu);
    mb_job *j = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        mb_job *next = j->next;
        j->done(j);
        j = next;
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    run_done(arg);
}

mb_pool *mb_pool_new(const pn_config *cfg, struct event_base *base, unsigned threads)
{
    mb_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = cfg;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc(threads, sizeof *p->threads);
    p->workers = calloc(threads, sizeof *p->workers);
    if (!p->threads || !p->workers || pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        goto fail;
    p->n_workers = threads;
    for (unsigned i = 0; i < threads; i++) {
        p->workers[i].pool = p;
        p->workers[i].sites = ps_pool_new(cfg, WCONN_MAX_AGE_S);
        if (!p->workers[i].sites)
            goto fail;
        ps_pool_on_connect_any(p->workers[i].sites, connected_any, (void *)cfg);
    }
    p->ev = event_new(base, p->wake[0], EV_READ | EV_PERSIST, wake_cb, p);
    if (!p->ev || event_add(p->ev, NULL) != 0)
        goto fail;
    for (; p->n_threads < threads; p->n_threads++)
        if (pthread_create(&p->threads[p->n_threads], NULL, worker, &p->workers[p->n_threads]) != 0)
            goto fail;
    return p;
fail:
    mb_pool_free(p);
    return NULL;
}

int mb_pool_submit(mb_pool *p, mb_job *j)
{
    if (!p)
        return -1;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int mb_pool_run(mb_pool *p, void (*work)(mb_job *j, ps_pool *sites, const pn_config *cfg), void (*done)(mb_job *j),
                void *ctx)
{
    mb_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->kind = MB_JOB_WORK;
    j->work = work;
    j->done = done;
    j->ctx = ctx;
    if (mb_pool_submit(p, j) != 0) {
        free(j);
        return -1;
    }
    return 0;
}

void mb_pool_free(mb_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    run_done(p); /* done callbacks may queue saves: submit refuses, they save inline */
    if (p->ev)
        event_free(p->ev);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    for (unsigned i = 0; p->workers && i < p->n_workers; i++)
        ps_pool_free(p->workers[i].sites);
    free(p->workers);
    free(p->threads);
    free(p);
}
