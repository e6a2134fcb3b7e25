/* vault: the Argon2id thread pool. The server decides how many runs may overlap (memory
 * bound); the pool only runs what it is handed, starting a thread when none is idle, and
 * reports each finished job through a pipe the server's poll loop watches. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <sodium.h>

#include "vault/internal.h"

struct vp_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vp_job *todo, *todo_tail;
    vp_job *done;
    pthread_t *threads;
    unsigned nthreads, max_threads, idle;
    unsigned active; /* KDFs running now */
    int stop;
    uint64_t runs, peak;
    int wake[2]; /* [0] polled by the server, [1] written by workers */
};

static void run(vp_job *j)
{
    j->sk = sodium_malloc(PC_BOX_SK_BYTES);
    if (!j->sk) {
        j->status = PC_ENOMEM;
        return;
    }
    j->status = pc_keyrecord_unlock(&j->rec, j->pw, j->pw_len, j->sk);
}

static void *worker(void *arg)
{
    vp_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->todo && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        vp_job *j = p->todo;
        p->todo = j->qnext;
        if (!p->todo)
            p->todo_tail = NULL;
        p->idle--;
        if (++p->active > p->peak)
            p->peak = p->active;
        pthread_mutex_unlock(&p->mu);

        run(j);

        pthread_mutex_lock(&p->mu);
        p->active--;
        p->runs++;
        p->idle++;
        j->qnext = p->done;
        p->done = j;
        /* A full pipe already holds a wake-up; the server drains it and then takes every job. */
        ssize_t w;
        do
            w = write(p->wake[1], "", 1);
        while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

vp_pool *vp_new(unsigned max_threads)
{
    vp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max_threads = max_threads ? max_threads : 1;
    p->threads = calloc(p->max_threads, sizeof *p->threads);
    if (!p->threads || pipe(p->wake) != 0) {
        free(p->threads);
        free(p);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(p->wake[i], F_SETFL, fcntl(p->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

int vp_wake_fd(const vp_pool *p)
{
    return p->wake[0];
}

int vp_submit(vp_pool *p, vp_job *j)
{
    pthread_mutex_lock(&p->mu);
    /* Threads are started lazily: a vault that only ever sees cached logins runs none. */
    if (p->idle == 0 && p->nthreads < p->max_threads) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) == 0) {
            p->nthreads++;
            p->idle++;
        }
    }
    if (p->nthreads == 0) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    j->qnext = NULL;
    if (p->todo_tail)
        p->todo_tail->qnext = j;
    else
        p->todo = j;
    p->todo_tail = j;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

vp_job *vp_take_done(vp_pool *p)
{
    char drain[64];
    while (read(p->wake[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&p->mu);
    vp_job *d = p->done;
    p->done = NULL;
    pthread_mutex_unlock(&p->mu);
    /* oldest first, so replies keep the order the runs finished in */
    vp_job *rev = NULL;
    while (d) {
        vp_job *n = d->qnext;
        d->qnext = rev;
        rev = d;
        d = n;
    }
    return rev;
}

void vp_counters(vp_pool *p, uint64_t *runs, uint64_t *peak)
{
    pthread_mutex_lock(&p->mu);
    *runs = p->runs;
    *peak = p->peak;
    pthread_mutex_unlock(&p->mu);
}

void vp_free(vp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p->threads);
    free(p);
}
