/* gateway: one account per logged-in user, shared by all their sessions (Thunderbird opens
 * four or five), so flags changed in one session are the state every other one sees and the
 * state file is written by one owner. The state is loaded and saved by workers: file I/O and
 * decryption of a large state never run on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gateway/mailbox.h"

static void account_release(gw_account *a);
static void load_done(gw_job *j);

/* A state being saved by a worker. A login of the same user meanwhile must not load the old
 * file: its load job waits here until the save is done. */
struct gw_saving {
    struct gw_saving *next;
    char address[PC_ADDRESS_MAX + 1];
    gw_job *load; /* deferred */
};

/* The state of an account that is gone, whose last write failed (a full or read-only disk):
 * kept in memory, written again every state_save_interval, and taken up by the user's next
 * login instead of the older file. */
struct gw_unsaved {
    struct gw_unsaved *next;
    char address[PC_ADDRESS_MAX + 1];
    userstate *us;
    uint8_t *state_key; /* sodium_malloc'd: whose state it is */
    bool writing;
};

static struct gw_saving *saving_find(gw_net *net, const char *address)
{
    struct gw_saving *w = net->saving;
    while (w && strcmp(w->address, address) != 0)
        w = w->next;
    return w;
}

/* The last save of a state, when its user's last session has gone. */
typedef struct final_save {
    gw_net *net;
    uint8_t *state_key; /* sodium_malloc'd: to keep the state if the write fails */
    gw_msg *live; /* the last scan's articles, for the prune; NULL: no prune */
    size_t n_live;
    long pruned;
    char err[256];
} final_save;

/* Worker, before the write: nobody holds keyword indexes now, so the prune may renumber. */
static void prune_work(gw_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    final_save *x = j->ctx;
    x->pruned = gw_state_prune(j->us, x->live, x->n_live, cfg, x->err, sizeof x->err);
}

static void keep_unsaved(gw_net *n, const char *address, userstate *us, uint8_t *state_key)
{
    struct gw_unsaved *u = calloc(1, sizeof *u);
    if (!u || !state_key) {
        gw_log(GW_ERROR, "state of %s lost: out of memory while keeping it", address);
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

static void save_done(gw_job *j)
{
    final_save *x = j->ctx;
    if (x->pruned < 0)
        gw_log(GW_WARN, "state of %s not pruned: %s", j->address, x->err);
    else if (x->pruned > 0)
        gw_log(GW_INFO, "state of %s: forgot %ld messages gone from every site", j->address, x->pruned);
    if (j->state_key)
        sodium_free(j->state_key);
    gw_net *n = x->net;
    struct gw_saving *w = NULL;
    for (struct gw_saving **p = &n->saving; *p; p = &(*p)->next)
        if (strcmp((*p)->address, j->address) == 0) {
            w = *p;
            *p = w->next;
            break;
        }
    if (j->status != US_OK) {
        gw_log(GW_ERROR, "state of %s not saved: %s; kept in memory and written again every %u s", j->address,
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
    if (w) {
        if (w->load && gw_pool_submit(n->pool, w->load) != 0) {
            w->load->status = US_EIO;
            snprintf(w->load->err, sizeof w->load->err, "server busy");
            load_done(w->load);
        }
        free(w);
    }
    free(j);
}

static struct gw_unsaved *unsaved_take(gw_net *net, const char *address, const uint8_t *state_key)
{
    for (struct gw_unsaved **p = &net->unsaved; *p; p = &(*p)->next) {
        struct gw_unsaved *u = *p;
        if (!u->writing && strcmp(u->address, address) == 0 &&
            sodium_memcmp(u->state_key, state_key, VAULT_STATE_KEY_BYTES) == 0) {
            *p = u->next;
            return u;
        }
    }
    return NULL;
}

static void unsaved_done(gw_job *j)
{
    struct gw_unsaved *u = j->ctx;
    u->writing = false;
    if (j->status == US_OK) {
        gw_log(GW_INFO, "state of %s saved at last", u->address);
        u->us = NULL; /* closed by the worker */
    }
    free(j);
}

static void unsaved_retry(gw_net *net)
{
    for (struct gw_unsaved **p = &net->unsaved; *p;) {
        struct gw_unsaved *u = *p;
        if (!u->us && !u->writing) { /* written */
            *p = u->next;
            sodium_free(u->state_key);
            free(u);
            continue;
        }
        p = &u->next;
        if (u->writing)
            continue;
        gw_job *j = calloc(1, sizeof *j);
        if (!j)
            continue;
        j->kind = GW_JOB_STATE_SAVE;
        j->done = unsaved_done;
        j->us = u->us;
        j->ctx = u;
        snprintf(j->address, sizeof j->address, "%s", u->address);
        if (gw_pool_submit(net->pool, j) == 0)
            u->writing = true;
        else
            free(j);
    }
}

void gw_accounts_unsaved_free(gw_net *net)
{
    while (net->unsaved) {
        struct gw_unsaved *u = net->unsaved;
        net->unsaved = u->next;
        if (u->us) {
            char err[256];
            if (userstate_save(u->us, err, sizeof err) != US_OK)
                gw_log(GW_ERROR, "state of %s lost at shutdown: %s", u->address, err);
            userstate_close(u->us);
        }
        sodium_free(u->state_key);
        free(u);
    }
}

void gw_account_warn_unsaved(session *s)
{
    if (s->account && s->account->save_failed && !s->pop)
        gw_untagged(s, "NO [UNAVAILABLE] Your flag changes cannot be written to disk now; they are kept and "
                       "written when the server can");
}

void gw_account_unref(gw_account *a)
{
    if (--a->refs == 0)
        account_release(a);
}

static void account_release(gw_account *a)
{
    gw_net *net = a->net;
    for (gw_account **p = &net->accounts; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    gw_mbox *m = a->mbox;
    /* entries beyond the scan's messages: some may be of messages expired everywhere */
    bool prune = a->us && m && m->scanned && userstate_count(a->us) > m->n;
    if (a->us && (userstate_dirty(a->us) || prune)) {
        gw_job *j = calloc(1, sizeof *j);
        struct gw_saving *w = calloc(1, sizeof *w);
        final_save *x = calloc(1, sizeof *x);
        if (j && w && x) {
            j->kind = GW_JOB_STATE_SAVE;
            j->done = save_done;
            j->us = a->us;
            x->net = net;
            x->state_key = sodium_malloc(VAULT_STATE_KEY_BYTES);
            if (x->state_key)
                memcpy(x->state_key, a->state_key, VAULT_STATE_KEY_BYTES);
            if (prune) { /* the mailbox goes with the account: the job takes its list */
                j->work = prune_work;
                x->live = m->msgs;
                x->n_live = m->n;
                m->msgs = NULL;
                m->n = m->cap = 0;
            }
            j->ctx = x;
            snprintf(j->address, sizeof j->address, "%s", a->address);
            snprintf(w->address, sizeof w->address, "%s", a->address);
            if (gw_pool_submit(net->pool, j) == 0) {
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
        free(j);
        free(w);
        if (a->us) { /* no worker to take it (shutting down, queue full): save here */
            char err[256];
            if (userstate_save(a->us, err, sizeof err) != US_OK) {
                gw_log(GW_ERROR, "state of %s not saved: %s; kept in memory and written again", a->address, err);
                uint8_t *key = sodium_malloc(VAULT_STATE_KEY_BYTES);
                if (key)
                    memcpy(key, a->state_key, VAULT_STATE_KEY_BYTES);
                keep_unsaved(net, a->address, a->us, key);
                a->us = NULL;
            }
        }
    }
    userstate_close(a->us);
    sodium_free(a->state_key);
    gw_cache_free(a);
    gw_mbox_free(a->mbox);
    free(a);
}

/* ---- periodic saves: a crash of the network process loses at most an interval ---- */

typedef struct periodic_save {
    gw_account *a; /* referenced: the final save at release waits for this write */
    userstate_sealed *snap;
    int status;
    char err[256];
} periodic_save;

static void periodic_work(gw_job *j, ps_pool *sites, const pn_config *cfg)
{
    (void)sites;
    (void)cfg;
    periodic_save *x = j->ctx;
    x->status = userstate_sealed_write(x->snap, x->err, sizeof x->err);
}

static void periodic_done(gw_job *j)
{
    periodic_save *x = j->ctx;
    gw_account *a = x->a;
    if (x->status != US_OK) {
        gw_log(GW_ERROR, "state of %s not saved: %s", a->address, x->err);
        userstate_mark_dirty(a->us); /* the next save writes it */
    } else if (a->save_failed) {
        gw_log(GW_INFO, "state of %s saved again", a->address);
    }
    a->save_failed = x->status != US_OK;
    a->writing = false;
    userstate_sealed_free(x->snap);
    free(x);
    free(j);
    gw_account_unref(a);
}

void gw_accounts_save_changed(gw_net *net)
{
    unsaved_retry(net);
    for (gw_account *a = net->accounts; a; a = a->next) {
        if (!a->ready || !a->us || a->writing || !userstate_dirty(a->us))
            continue;
        periodic_save *x = calloc(1, sizeof *x);
        char err[256] = "";
        if (!x || userstate_seal(a->us, &x->snap, err, sizeof err) != US_OK || !x->snap) {
            if (x && !x->snap)
                gw_log(GW_ERROR, "state of %s not saved: %s", a->address, err);
            free(x);
            continue;
        }
        x->a = a;
        if (gw_pool_run(net->pool, periodic_work, periodic_done, x) != 0) {
            userstate_mark_dirty(a->us); /* busy: the next round tries again */
            userstate_sealed_free(x->snap);
            free(x);
            continue;
        }
        a->refs++;
        a->writing = true;
    }
}

static void load_done(gw_job *j)
{
    gw_account *a = j->a;
    gw_net *net = a->net;
    if (j->status == US_OK) {
        a->us = j->us;
        a->ready = true;
        if (userstate_warning(a->us))
            gw_log(GW_WARN, "state of %s: %s", a->address, userstate_warning(a->us));
    } else {
        gw_log(GW_ERROR, "state of %s cannot be opened: %s", a->address, j->err);
        /* unlink now so that the next login tries again */
        for (gw_account **p = &net->accounts; *p; p = &(*p)->next)
            if (*p == a) {
                *p = a->next;
                a->next = NULL;
                break;
            }
    }
    for (session *s = net->sessions, *next; s; s = next) {
        next = s->next;
        if (s->account != a || s->state != S_AUTHENTICATING)
            continue;
        if (a->ready)
            gw_login_finish(s, true, NULL);
        else
            gw_login_finish(s, false, "[UNAVAILABLE] Your mail state cannot be read; the administrator must look "
                                      "at the server log");
    }
    sodium_free(j->state_key);
    free(j);
    gw_account_unref(a); /* the job's reference */
}

void gw_account_attach(session *s, const char *address, const uint8_t state_key[VAULT_STATE_KEY_BYTES])
{
    gw_net *net = s->net;
    gw_account *a = net->accounts;
    while (a && strcmp(a->address, address) != 0)
        a = a->next;
    if (a) {
        if (sodium_memcmp(a->state_key, state_key, VAULT_STATE_KEY_BYTES) != 0) {
            /* a new key pair for this address while old sessions still run */
            gw_log(GW_WARN, "%s: %s has a new key while older sessions are open", s->peer, address);
            gw_login_finish(s, false, "[UNAVAILABLE] Your key changed; log out everywhere and log in again");
            return;
        }
        a->refs++;
        s->account = a;
        if (a->ready)
            gw_login_finish(s, true, NULL);
        return; /* else load_done finishes it */
    }
    a = calloc(1, sizeof *a);
    gw_job *j = calloc(1, sizeof *j);
    uint8_t *key = sodium_malloc(VAULT_STATE_KEY_BYTES);
    uint8_t *jkey = sodium_malloc(VAULT_STATE_KEY_BYTES);
    if (!a || !j || !key || !jkey) {
        free(a);
        free(j);
        if (key)
            sodium_free(key);
        if (jkey)
            sodium_free(jkey);
        gw_login_finish(s, false, "[SERVERBUG] Out of memory");
        return;
    }
    memcpy(key, state_key, VAULT_STATE_KEY_BYTES);
    memcpy(jkey, state_key, VAULT_STATE_KEY_BYTES);
    char err[256];
    a->mbox = calloc(1, sizeof *a->mbox);
    if (!a->mbox || pa_address_to_group(net->cfg->prefix, address, a->mbox->group, sizeof a->mbox->group, err,
                                        sizeof err) != 0) {
        gw_log(GW_ERROR, "%s: no mailbox group: %s", address, a->mbox ? err : "out of memory");
        gw_mbox_free(a->mbox);
        free(a);
        free(j);
        sodium_free(key);
        sodium_free(jkey);
        gw_login_finish(s, false, "[SERVERBUG] Internal error");
        return;
    }
    a->net = net;
    snprintf(a->address, sizeof a->address, "%s", address);
    a->state_key = key;
    struct gw_unsaved *u = unsaved_take(net, address, state_key);
    if (u) { /* the state its last write could not store: newer than the file */
        a->us = u->us;
        userstate_mark_dirty(a->us);
        a->ready = true;
        a->save_failed = true;
        a->refs = 1;
        sodium_free(u->state_key);
        free(u);
        sodium_free(jkey);
        free(j);
        a->next = net->accounts;
        net->accounts = a;
        s->account = a;
        gw_login_finish(s, true, NULL);
        return;
    }
    a->refs = 2; /* this session and the load job */
    j->kind = GW_JOB_STATE_OPEN;
    j->done = load_done;
    j->a = a;
    j->state_key = jkey;
    snprintf(j->address, sizeof j->address, "%s", address);
    struct gw_saving *w = saving_find(net, address);
    if (w && !w->load) {
        w->load = j; /* submitted when the save is done */
    } else if (gw_pool_submit(net->pool, j) != 0) {
        sodium_free(jkey);
        free(j);
        sodium_free(key);
        gw_mbox_free(a->mbox);
        free(a);
        gw_login_finish(s, false, "[UNAVAILABLE] Server busy; try again later");
        return;
    }
    a->next = net->accounts;
    net->accounts = a;
    s->account = a;
}

void gw_account_detach(session *s)
{
    gw_account *a = s->account;
    s->account = NULL;
    if (a)
        gw_account_unref(a);
}
