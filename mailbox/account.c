/* mailbox: one account per logged-in user, shared by all their sessions (Thunderbird opens
 * four or five), so flags changed in one session are the state every other one sees and the
 * state file is written by one owner. The state is loaded and saved by workers: file I/O and
 * decryption of a large state never run on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <event2/event.h>

#include "mailbox/mb.h"

static void account_release(mb_account *a);
static void load_done(mb_job *j);

/* A state being saved by a worker. A login of the same user meanwhile must not load the old
 * file: its load job waits here until the save is done. */
struct mb_saving {
    struct mb_saving *next;
    char address[PC_ADDRESS_MAX + 1];
    mb_job *load; /* deferred */
};

/* The state of an account that is gone, whose last write failed (a full or read-only disk):
 * kept in memory, written again every state_save_interval, and taken up by the user's next
 * login instead of the older file. */
struct mb_unsaved {
    struct mb_unsaved *next;
    char address[PC_ADDRESS_MAX + 1];
    userstate *us;
    uint8_t *state_key; /* sodium_malloc'd: whose state it is */
    bool writing;
};

static struct mb_saving *saving_find(mb_store *st, const char *address)
{
    struct mb_saving *w = st->saving;
    while (w && strcmp(w->address, address) != 0)
        w = w->next;
    return w;
}

/* The last save of a state, when its user's last session has gone. */
typedef struct final_save {
    mb_store *st;
    uint8_t *state_key; /* sodium_malloc'd: to keep the state if the write fails */
    mb_msg *live; /* the last scan's articles, for the prune; NULL: no prune */
    size_t n_live;
    long pruned;
    char err[256];
} final_save;

/* Worker, before the write: nobody holds keyword indexes now, so the prune may renumber. */
static void prune_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    final_save *x = j->ctx;
    x->pruned = mb_state_prune(j->us, x->live, x->n_live, cfg, x->err, sizeof x->err);
}

static void keep_unsaved(mb_store *n, const char *address, userstate *us, uint8_t *state_key)
{
    struct mb_unsaved *u = calloc(1, sizeof *u);
    if (!u || !state_key) {
        pu_log(PU_ERROR, "state of %s lost: out of memory while keeping it", address);
        free(u);
        userstate_close(us);
        if (state_key)
            sodium_free(state_key);
        return;
    }
    snprintf(u->address, sizeof u->address, "%s", address);
    u->us = us;
    u->state_key = state_key;
    u->next = n->unsaved;
    n->unsaved = u;
}

static void save_done(mb_job *j)
{
    final_save *x = j->ctx;
    if (x->pruned < 0)
        pu_log(PU_WARN, "state of %s not pruned: %s", j->address, x->err);
    else if (x->pruned > 0)
        pu_log(PU_INFO, "state of %s: forgot %ld messages gone from every site", j->address, x->pruned);
    if (j->state_key)
        sodium_free(j->state_key);
    mb_store *n = x->st;
    struct mb_saving *w = NULL;
    for (struct mb_saving **p = &n->saving; *p; p = &(*p)->next)
        if (strcmp((*p)->address, j->address) == 0) {
            w = *p;
            *p = w->next;
            break;
        }
    if (j->status != US_OK) {
        pu_log(PU_ERROR, "state of %s not saved: %s; kept in memory and written again every %u s", j->address,
               j->err, n->cfg->gateway.state_save_interval);
        if (w && w->load && w->load->state_key && x->state_key &&
            sodium_memcmp(w->load->state_key, x->state_key, VAULT_STATE_KEY_BYTES) == 0) {
            /* the user is back already: the login takes this state, not the older file */
            w->load->us = j->us;
            w->load->status = US_OK;
            load_done(w->load);
            w->load = NULL;
            j->us = NULL;
            sodium_free(x->state_key);
        } else if (j->us) {
            keep_unsaved(n, j->address, j->us, x->state_key);
            j->us = NULL;
        } else if (x->state_key) {
            sodium_free(x->state_key);
        }
    } else if (x->state_key) {
        sodium_free(x->state_key);
    }
    free(x->live);
    free(x);
    free(j->replica);
    if (w) {
        if (w->load && mb_pool_submit(n->pool, w->load) != 0) {
            w->load->status = US_EIO;
            snprintf(w->load->err, sizeof w->load->err, "server busy");
            load_done(w->load);
        }
        free(w);
    }
    free(j);
}

static struct mb_unsaved *unsaved_take(mb_store *net, const char *address, const uint8_t *state_key)
{
    for (struct mb_unsaved **p = &net->unsaved; *p; p = &(*p)->next) {
        struct mb_unsaved *u = *p;
        if (!u->writing && strcmp(u->address, address) == 0 &&
            sodium_memcmp(u->state_key, state_key, VAULT_STATE_KEY_BYTES) == 0) {
            *p = u->next;
            return u;
        }
    }
    return NULL;
}

static void unsaved_done(mb_job *j)
{
    struct mb_unsaved *u = j->ctx;
    u->writing = false;
    if (j->status == US_OK) {
        pu_log(PU_INFO, "state of %s saved at last", u->address);
        u->us = NULL; /* closed by the worker */
    }
    free(j);
}

static void unsaved_retry(mb_store *net)
{
    for (struct mb_unsaved **p = &net->unsaved; *p;) {
        struct mb_unsaved *u = *p;
        if (!u->us && !u->writing) { /* written */
            *p = u->next;
            sodium_free(u->state_key);
            free(u);
            continue;
        }
        p = &u->next;
        if (u->writing)
            continue;
        mb_job *j = calloc(1, sizeof *j);
        if (!j)
            continue;
        j->kind = MB_JOB_STATE_SAVE;
        j->done = unsaved_done;
        j->us = u->us;
        j->ctx = u;
        snprintf(j->address, sizeof j->address, "%s", u->address);
        if (mb_pool_submit(net->pool, j) == 0)
            u->writing = true;
        else
            free(j);
    }
}

void mb_account_save_now(mb_account *a)
{
    char err[256];
    uint8_t *replica = NULL;
    size_t len = 0;
    if (!a->us || !a->ready)
        return;
    if (userstate_save(a->us, err, sizeof err) != US_OK) {
        pu_log(PU_ERROR, "state of %s lost at shutdown: %s", a->address, err);
        return;
    }
    if (mb_replica_seal_local(a, &replica, &len) == 0 && replica &&
        mb_replica_file_write(a->st->cfg, a->address, a->state_key, replica, len, err, sizeof err) != 0)
        pu_log(PU_WARN, "%s: %s", a->address, err);
    free(replica);
}

void mb_accounts_unsaved_free(mb_store *net)
{
    while (net->unsaved) {
        struct mb_unsaved *u = net->unsaved;
        net->unsaved = u->next;
        if (u->us) {
            char err[256];
            if (userstate_save(u->us, err, sizeof err) != US_OK)
                pu_log(PU_ERROR, "state of %s lost at shutdown: %s", u->address, err);
            userstate_close(u->us);
        }
        sodium_free(u->state_key);
        free(u);
    }
}

void mb_account_ref(mb_account *a)
{
    a->refs++;
}

void mb_account_release(mb_account *a)
{
    if (a && --a->refs == 0)
        account_release(a);
}

static void account_release(mb_account *a)
{
    mb_store *net = a->st;
    for (mb_account **p = &net->accounts; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    mb_mbox *m = a->mbox;
    /* entries beyond the scan's messages: some may be of messages expired everywhere */
    bool prune = a->us && m && m->scanned && userstate_count(a->us) > m->narts;
    if (a->us && (userstate_dirty(a->us) || prune)) {
        mb_job *j = calloc(1, sizeof *j);
        struct mb_saving *w = calloc(1, sizeof *w);
        final_save *x = calloc(1, sizeof *x);
        if (j && w && x) {
            j->kind = MB_JOB_STATE_SAVE;
            j->done = save_done;
            j->us = a->us;
            if (mb_replica_seal_local(a, &j->replica, &j->replica_len) == 0 && j->replica &&
                (j->state_key = sodium_malloc(VAULT_STATE_KEY_BYTES)))
                memcpy(j->state_key, a->state_key, VAULT_STATE_KEY_BYTES);
            x->st = net;
            x->state_key = sodium_malloc(VAULT_STATE_KEY_BYTES);
            if (x->state_key)
                memcpy(x->state_key, a->state_key, VAULT_STATE_KEY_BYTES);
            if (prune) { /* the mailbox goes with the account: the job takes its list */
                j->work = prune_work;
                x->live = m->arts;
                x->n_live = m->narts;
                m->arts = NULL;
                m->narts = m->capa = 0;
            }
            j->ctx = x;
            snprintf(j->address, sizeof j->address, "%s", a->address);
            snprintf(w->address, sizeof w->address, "%s", a->address);
            if (mb_pool_submit(net->pool, j) == 0) {
                a->us = NULL;
                w->next = net->saving;
                net->saving = w;
                j = NULL;
                w = NULL;
                x = NULL;
            }
        }
        if (x) {
            free(x->live);
            if (x->state_key)
                sodium_free(x->state_key);
        }
        free(x);
        if (j) {
            free(j->replica);
            if (j->state_key)
                sodium_free(j->state_key);
        }
        free(j);
        free(w);
        if (a->us) { /* no worker to take it (shutting down, queue full): save here */
            char err[256];
            if (userstate_save(a->us, err, sizeof err) != US_OK) {
                pu_log(PU_ERROR, "state of %s not saved: %s; kept in memory and written again", a->address, err);
                uint8_t *key = sodium_malloc(VAULT_STATE_KEY_BYTES);
                if (key)
                    memcpy(key, a->state_key, VAULT_STATE_KEY_BYTES);
                keep_unsaved(net, a->address, a->us, key);
                a->us = NULL;
            }
        }
    }
    mb_replica_free(a);
    userstate_close(a->us);
    sodium_free(a->state_key);
    mb_loader_free(a);
    mb_flists_free(a);
    mb_mbox_free(a->mbox);
    pu_log(PU_DEBUG, "%s: account closed", a->address);
    free(a);
}

/* ---- periodic saves: a crash of the network process loses at most an interval ---- */

typedef struct periodic_save {
    mb_account *a; /* referenced: the final save at release waits for this write */
    userstate_sealed *snap;
    uint8_t *replica; /* the replicated state's local copy, sealed */
    size_t replica_len;
    int status;
    char err[256];
} periodic_save;

static void periodic_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    periodic_save *x = j->ctx;
    x->status = userstate_sealed_write(x->snap, x->err, sizeof x->err);
    char err[256];
    if (x->status == US_OK && x->replica &&
        mb_replica_file_write(cfg, x->a->address, x->a->state_key, x->replica, x->replica_len, err, sizeof err) != 0)
        pu_log(PU_WARN, "%s: %s", x->a->address, err);
}

static void periodic_done(mb_job *j)
{
    periodic_save *x = j->ctx;
    mb_account *a = x->a;
    if (x->status != US_OK) {
        pu_log(PU_ERROR, "state of %s not saved: %s", a->address, x->err);
        userstate_mark_dirty(a->us); /* the next save writes it */
    } else if (a->save_failed) {
        pu_log(PU_INFO, "state of %s saved again", a->address);
    }
    a->save_failed = x->status != US_OK;
    a->writing = false;
    userstate_sealed_free(x->snap);
    free(x->replica);
    free(x);
    free(j);
    mb_account_release(a);
}

void mb_accounts_save_changed(mb_store *net)
{
    unsaved_retry(net);
    for (mb_account *a = net->accounts; a; a = a->next) {
        mb_replica_tick(a);
        if (!a->ready || !a->us || a->writing || !userstate_dirty(a->us))
            continue;
        periodic_save *x = calloc(1, sizeof *x);
        char err[256] = "";
        if (!x || userstate_seal(a->us, &x->snap, err, sizeof err) != US_OK || !x->snap) {
            if (x && !x->snap)
                pu_log(PU_ERROR, "state of %s not saved: %s", a->address, err);
            free(x);
            continue;
        }
        x->a = a;
        mb_replica_seal_local(a, &x->replica, &x->replica_len);
        if (mb_pool_run(net->pool, periodic_work, periodic_done, x) != 0) {
            userstate_mark_dirty(a->us); /* busy: the next round tries again */
            userstate_sealed_free(x->snap);
            free(x->replica);
            free(x);
            continue;
        }
        a->refs++;
        a->writing = true;
    }
}

static void load_done(mb_job *j)
{
    mb_account *a = j->a;
    mb_store *st = a->st;
    if (j->status == US_OK) {
        a->us = j->us;
        a->ready = true;
        mb_replica_restore(a, j->replica, j->replica_len);
        if (userstate_warning(a->us))
            pu_log(PU_WARN, "state of %s: %s", a->address, userstate_warning(a->us));
    } else {
        pu_log(PU_ERROR, "state of %s cannot be opened: %s", a->address, j->err);
        /* unlink now so that the next login tries again */
        for (mb_account **p = &st->accounts; *p; p = &(*p)->next)
            if (*p == a) {
                *p = a->next;
                a->next = NULL;
                break;
            }
    }
    /* each waiter holds a reference, counted at mb_account_open: a failed one gives it back */
    if (a->ready) {
        mb_waitlist_wake(&a->opening, UINT64_MAX, a, NULL);
    } else {
        for (mb_waiter *w; (w = a->opening.head);) {
            mb_waiter_cancel(w);
            w->fn(w->arg, NULL, "[UNAVAILABLE] Your mail state cannot be read; the administrator must look at the "
                               "server log");
            mb_account_release(a);
        }
    }
    sodium_free(j->state_key);
    free(j->replica);
    free(j);
    mb_account_release(a); /* the job's reference */
}

static mb_account *account_new(mb_store *st, const char *address, const uint8_t *state_key, char *err,
                               size_t errlen)
{
    mb_account *a = calloc(1, sizeof *a);
    uint8_t *key = sodium_malloc(VAULT_STATE_KEY_BYTES);
    if (!a || !key || !(a->mbox = calloc(1, sizeof *a->mbox))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (pa_address_to_group(st->cfg->prefix, address, a->mbox->group, sizeof a->mbox->group, err, errlen) != 0)
        goto fail;
    a->st = st;
    a->state_key = key;
    memcpy(key, state_key, VAULT_STATE_KEY_BYTES);
    snprintf(a->address, sizeof a->address, "%s", address);
    if (mb_loader_init(a) != 0 || mb_replica_init(a) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return a;
fail:
    if (a) {
        mb_replica_free(a);
        mb_loader_free(a);
        mb_mbox_free(a->mbox);
    }
    free(a);
    if (key)
        sodium_free(key);
    return NULL;
}

static void account_drop_new(mb_account *a)
{
    mb_replica_free(a);
    sodium_free(a->state_key);
    mb_loader_free(a);
    mb_mbox_free(a->mbox);
    free(a);
}

void mb_account_open(mb_store *st, const char *address, const uint8_t state_key[VAULT_STATE_KEY_BYTES],
                     mb_waiter *w, void (*fn)(void *arg, mb_account *a, const char *no_text), void *arg)
{
    w->fn = fn;
    w->arg = arg;
    mb_account *a = st->accounts;
    while (a && strcmp(a->address, address) != 0)
        a = a->next;
    if (a) {
        if (sodium_memcmp(a->state_key, state_key, VAULT_STATE_KEY_BYTES) != 0) {
            /* a new key pair for this address while old sessions still run */
            pu_log(PU_WARN, "%s has a new key while older sessions are open", address);
            fn(arg, NULL, "[UNAVAILABLE] Your key changed; log out everywhere and log in again");
            return;
        }
        a->refs++;
        if (a->ready) {
            fn(arg, a, NULL);
        } else {
            w->a = a;
            mb_waitlist_add(&a->opening, w); /* load_done answers */
        }
        return;
    }
    char err[256];
    a = account_new(st, address, state_key, err, sizeof err);
    if (!a) {
        pu_log(PU_ERROR, "%s: no mailbox: %s", address, err);
        fn(arg, NULL, "[SERVERBUG] Internal error");
        return;
    }
    struct mb_unsaved *u = unsaved_take(st, address, state_key);
    if (u) { /* the state its last write could not store: newer than the file */
        a->us = u->us;
        userstate_mark_dirty(a->us);
        a->ready = true;
        a->save_failed = true;
        a->refs = 1;
        sodium_free(u->state_key);
        free(u);
        a->next = st->accounts;
        st->accounts = a;
        fn(arg, a, NULL);
        return;
    }
    mb_job *j = calloc(1, sizeof *j);
    uint8_t *jkey = sodium_malloc(VAULT_STATE_KEY_BYTES);
    if (!j || !jkey) {
        free(j);
        if (jkey)
            sodium_free(jkey);
        account_drop_new(a);
        fn(arg, NULL, "[SERVERBUG] Out of memory");
        return;
    }
    memcpy(jkey, state_key, VAULT_STATE_KEY_BYTES);
    a->refs = 2; /* this caller and the load job */
    j->kind = MB_JOB_STATE_OPEN;
    j->done = load_done;
    j->a = a;
    j->state_key = jkey;
    snprintf(j->address, sizeof j->address, "%s", address);
    struct mb_saving *sv = saving_find(st, address);
    if (sv && !sv->load) {
        sv->load = j; /* submitted when the save is done */
    } else if (mb_pool_submit(st->pool, j) != 0) {
        sodium_free(jkey);
        free(j);
        account_drop_new(a);
        fn(arg, NULL, "[UNAVAILABLE] Server busy; try again later");
        return;
    }
    a->next = st->accounts;
    st->accounts = a;
    w->a = a;
    mb_waitlist_add(&a->opening, w);
}

void mb_account_open_cancel(mb_waiter *w)
{
    if (!w->queued)
        return;
    mb_waiter_cancel(w);
    mb_account_release(w->a);
}

const char *mb_account_address(const mb_account *a)
{
    return a->address;
}

userstate *mb_account_state(mb_account *a)
{
    return a->us;
}

const mb_mbox *mb_account_mbox(const mb_account *a)
{
    return a->mbox;
}

bool mb_account_save_failed(const mb_account *a)
{
    return a->save_failed;
}

bool mb_account_lock(mb_account *a)
{
    if (a->locked)
        return false;
    a->locked = true;
    return true;
}

void mb_account_unlock(mb_account *a)
{
    a->locked = false;
}

/* ---- waiters and watchers: each account knows who waits on it, so an event costs the
 * clients it concerns, not every connection of the process ---- */

void mb_waitlist_add(mb_waitlist *l, mb_waiter *w)
{
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    w->queued = true;
    w->list = l;
}

void mb_waiter_cancel(mb_waiter *w)
{
    if (!w->queued)
        return;
    mb_waitlist *l = w->list;
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    w->list = NULL;
}

void mb_waitlist_wake(mb_waitlist *l, uint64_t up_to, mb_account *a, const char *no_text)
{
    /* the callbacks may cancel other waiters or add new ones: take the list first */
    mb_waitlist now = *l, later = {0};
    l->head = l->tail = NULL;
    for (mb_waiter *w = now.head; w; w = w->next)
        w->list = &now;
    for (mb_waiter *w; (w = now.head);) {
        mb_waiter_cancel(w);
        if (w->gen > up_to) {
            mb_waitlist_add(&later, w);
            continue;
        }
        w->fn(w->arg, a, no_text);
    }
    /* those still waiting go back in front of any added meanwhile */
    for (mb_waiter *w = later.head; w; w = w->next)
        w->list = l;
    if (later.head) {
        later.tail->next = l->head;
        if (l->head)
            l->head->prev = later.tail;
        else
            l->tail = later.tail;
        l->head = later.head;
    }
}

void mb_watch(mb_account *a, mb_watcher *w, void (*fn)(void *arg), void *arg)
{
    if (w->on)
        return;
    w->fn = fn;
    w->arg = arg;
    w->prev = NULL;
    w->next = a->watchers;
    if (a->watchers)
        a->watchers->prev = w;
    a->watchers = w;
    w->on = true;
    a->n_watchers++;
}

void mb_unwatch(mb_account *a, mb_watcher *w)
{
    if (!w->on)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        a->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->on = false;
    a->n_watchers--;
}

void mb_account_changed(mb_account *a)
{
    a->state_gen++; /* the folders' lists are rebuilt when next used */
    mb_replica_relist_due(a); /* and the INBOX's now, if something was filed there */
    /* a watcher's callback may unwatch itself (a session that closes): next is read first.
     * It must not unwatch another one. */
    for (mb_watcher *w = a->watchers, *next; w; w = next) {
        next = w->next;
        w->fn(w->arg);
    }
}
