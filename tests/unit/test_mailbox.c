/* mailbox: the layer's promises, against a real event loop and worker pool but no news
 * server (its one site is a closed port): waiter lists wake in order and only who is due;
 * watchers hear each change once; an account is shared, saved at its last release and
 * loaded again; a cancelled open costs nothing; every load calls each of its waiters exactly
 * once, failures included, and a cancelled waiter never; the walk hands messages over in
 * order; the cache evicts the least recently used; a view numbers the mailbox in runs, merges
 * what scans and other sessions changed in the order a client must hear it, and gives
 * \Recent to one session. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

/* ---- waiter lists ---- */

typedef struct wake_log {
    int order[8];
    size_t n;
    mb_waiter *cancel_on_first; /* the first callback cancels this one */
} wake_log;

typedef struct probe {
    wake_log *log;
    int id;
    mb_waiter w;
} probe;

static void woken(void *arg, mb_account *a, const char *no_text)
{
    (void)a;
    (void)no_text;
    probe *p = arg;
    wake_log *l = p->log;
    l->order[l->n++] = p->id;
    if (l->cancel_on_first) {
        mb_waiter_cancel(l->cancel_on_first);
        l->cancel_on_first = NULL;
    }
}

static void test_waitlist_wakes_due_in_order(void **state)
{
    (void)state;
    mb_waitlist list = {0};
    wake_log log = {0};
    probe p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (probe){.log = &log, .id = i};
        p[i].w.fn = woken;
        p[i].w.arg = &p[i];
        p[i].w.gen = i == 2 ? 9 : 1; /* waits for a later scan */
        mb_waitlist_add(&list, &p[i].w);
    }
    log.cancel_on_first = &p[3].w; /* cancelled while the list is being woken */
    mb_waitlist_wake(&list, 5, NULL, NULL);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 0);
    assert_int_equal(log.order[1], 1);
    assert_false(p[3].w.queued);
    assert_true(p[2].w.queued); /* still waiting, still on the list */
    assert_ptr_equal(list.head, &p[2].w);
    assert_ptr_equal(list.tail, &p[2].w);
    mb_waitlist_wake(&list, 9, NULL, NULL);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[2], 2);
    assert_null(list.head);
    mb_waiter_cancel(&p[2].w); /* not queued: nothing happens */
}

/* ---- a store with one unreachable site and a state directory of its own ---- */

static pn_config cfg;
static char state_dir[] = "/tmp/postern-test-mailbox-XXXXXX";
static struct event_base *base;

static uint32_t no_vault(void *ctx, uint64_t vault_session, const uint8_t prefix[PC_MSG_PREFIX_BYTES],
                         void (*fn)(void *arg, const vault_reply *r), void *arg)
{
    (void)ctx;
    (void)vault_session;
    (void)prefix;
    (void)fn;
    (void)arg;
    return 0;
}

static mb_store *store_new(void)
{
    pn_config_defaults(NULL, &cfg);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", state_dir);
    snprintf(cfg.prefix, sizeof cfg.prefix, "postern");
    cfg.n_sites = 1;
    snprintf(cfg.sites[0].name, sizeof cfg.sites[0].name, "closed");
    snprintf(cfg.sites[0].host, sizeof cfg.sites[0].host, "127.0.0.1");
    snprintf(cfg.sites[0].port, sizeof cfg.sites[0].port, "1"); /* nothing listens: refused at once */
    cfg.sites[0].connect_timeout = 2;
    cfg.gateway.article_cache_mb = 0;
    cfg.gateway.state_save_interval = 3600;
    base = event_base_new();
    assert_non_null(base);
    const mb_hooks hooks = {.vault_open = no_vault};
    char err[256];
    mb_store *st = mb_store_new(&cfg, base, 1, &hooks, err, sizeof err);
    assert_non_null(st);
    return st;
}

static void store_free(mb_store *st)
{
    mb_store_free(st);
    event_base_free(base);
    base = NULL;
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(state_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", state_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs the loop until *done or 10 s pass (a worker or a refused connection answers in
 * milliseconds; the limit only keeps a broken test from hanging). */
static void run_until(const int *done)
{
    struct timeval tick = {0, 10000};
    for (int i = 0; i < 1000 && !*done; i++) {
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
}

typedef struct opened {
    int calls;
    mb_account *a;
    char text[128];
} opened;

static void on_open(void *arg, mb_account *a, const char *no_text)
{
    opened *o = arg;
    o->calls++;
    o->a = a;
    snprintf(o->text, sizeof o->text, "%s", no_text ? no_text : "");
}

static uint8_t key1[VAULT_STATE_KEY_BYTES], key2[VAULT_STATE_KEY_BYTES];

static void test_account_shared_saved_and_loaded_again(void **state)
{
    (void)state;
    memset(key1, 1, sizeof key1);
    mb_store *st = store_new();
    opened o1 = {0}, o2 = {0}, o3 = {0};
    mb_waiter w1 = {0}, w2 = {0}, w3 = {0};
    mb_account_open(st, "alice@example.org", key1, &w1, on_open, &o1);
    assert_int_equal(o1.calls, 0); /* the state is read by a worker */
    run_until(&o1.calls);
    assert_int_equal(o1.calls, 1);
    assert_non_null(o1.a);
    assert_string_equal(mb_account_mbox(o1.a)->group, "postern.org.example.alice");
    /* a second session of the user gets the same account, at once */
    mb_account_open(st, "alice@example.org", key1, &w2, on_open, &o2);
    assert_int_equal(o2.calls, 1);
    assert_ptr_equal(o2.a, o1.a);
    /* another key for the address while the account is open: refused, nothing held */
    memset(key2, 2, sizeof key2);
    mb_account_open(st, "alice@example.org", key2, &w3, on_open, &o3);
    assert_int_equal(o3.calls, 1);
    assert_null(o3.a);
    assert_non_null(strstr(o3.text, "key changed"));
    assert_int_equal(userstate_store(mb_account_state(o1.a), "<m.1@postern.invalid>", US_ADD, US_FLAGGED, NULL),
                     US_OK);
    mb_account_release(o2.a);
    mb_account_release(o1.a); /* the last one: saved by a worker */
    store_free(st);           /* runs it */

    st = store_new();
    opened o4 = {0};
    mb_waiter w4 = {0};
    mb_account_open(st, "alice@example.org", key1, &w4, on_open, &o4);
    run_until(&o4.calls);
    assert_non_null(o4.a);
    userstate_msg m;
    userstate_get(mb_account_state(o4.a), "<m.1@postern.invalid>", &m);
    assert_true(m.flags & US_FLAGGED);
    mb_account_release(o4.a);
    store_free(st);
}

static void test_account_open_cancelled(void **state)
{
    (void)state;
    memset(key1, 1, sizeof key1);
    mb_store *st = store_new();
    opened o = {0};
    mb_waiter w = {0};
    mb_account_open(st, "bob@example.org", key1, &w, on_open, &o);
    assert_true(w.queued);
    mb_account_open_cancel(&w); /* the client left before its state was read */
    int never = 0;
    struct timeval t = {0, 200000};
    event_base_loopexit(base, &t);
    event_base_dispatch(base);
    assert_int_equal(o.calls, 0);
    (void)never;
    store_free(st); /* ASan: the account went with the load job's reference */
}

/* ---- loads, the walk and the cache: an account with a reader and some cached messages ---- */

static mb_plain *plain_new(const char *msgid, const char *text)
{
    mb_plain *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->refs = 1;
    snprintf(p->msgid, sizeof p->msgid, "%s", msgid);
    p->len = strlen(text);
    p->data = malloc(p->len + 1);
    memcpy(p->data, text, p->len + 1);
    return p;
}

static mb_account *open_account(mb_store *st, const char *address)
{
    memset(key1, 1, sizeof key1);
    opened o = {0};
    mb_waiter w = {0};
    mb_account_open(st, address, key1, &w, on_open, &o);
    run_until(&o.calls);
    assert_non_null(o.a);
    return o.a;
}

typedef struct load_probe {
    int calls;
    bool got;
    char err[128];
} load_probe;

static void loaded(void *arg, mb_plain *p, const char *err)
{
    load_probe *l = arg;
    l->calls++;
    l->got = p != NULL;
    snprintf(l->err, sizeof l->err, "%s", err ? err : "");
    mb_plain_unref(p);
}

static void test_load_calls_each_waiter_once(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "carol@example.org");
    mb_reader r1 = {0}, r2 = {0};
    mb_reader_attach(&r1, a, 7);
    mb_reader_attach(&r2, a, 8);
    mb_plain *cached = plain_new("<m.cached@postern.invalid>", "Subject: x\r\n\r\nbody\r\n");
    mb_cache_insert(a, cached);
    mb_plain_unref(cached); /* the cache holds its own */
    mb_plain_unref(mb_cache_lookup(a, "<m.nothing@postern.invalid>")); /* NULL: a no-op */

    load_probe hit = {0}, miss1 = {0}, miss2 = {0}, gone = {0};
    mb_load_waiter wh = {0}, w1 = {0}, w2 = {0}, w3 = {0};
    mb_load(&r1, "<m.cached@postern.invalid>", false, &wh, loaded, &hit);
    assert_int_equal(hit.calls, 0); /* never from inside mb_load */
    /* two sessions of the user ask for one message: one load, both hear */
    mb_load(&r1, "<m.elsewhere@postern.invalid>", false, &w1, loaded, &miss1);
    mb_load(&r2, "<m.elsewhere@postern.invalid>", false, &w2, loaded, &miss2);
    mb_load(&r2, "<m.elsewhere@postern.invalid>", false, &w3, loaded, &gone);
    mb_load_cancel(&w3);      /* its command ended: no callback */
    mb_reader_detach(&r1);    /* the session that started it leaves: the load goes on */
    run_until(&miss2.calls);
    int both = 0;
    for (int i = 0; i < 100 && !both; i++) {
        both = hit.calls && miss1.calls;
        if (!both)
            run_until(&both);
    }
    assert_int_equal(hit.calls, 1);
    assert_true(hit.got);
    assert_int_equal(miss1.calls, 1);
    assert_int_equal(miss2.calls, 1);
    assert_false(miss1.got); /* the only site refuses: a failure, reported */
    assert_true(miss1.err[0]);
    assert_int_equal(gone.calls, 0);
    mb_reader_detach(&r2);
    mb_account_release(a);
    store_free(st);
}

typedef struct walk_probe {
    size_t seen[40];
    size_t n;
    int done;
    unsigned failed;
    size_t issued, most_ahead; /* messages issued; the most issued and not yet handed over */
    bool pause;
} walk_probe;

static char ids[40][PA_MSGID_MAX];

static const char *walk_msgid(void *ctx, size_t k)
{
    (void)ctx;
    return ids[k];
}

static bool walk_need(void *ctx, size_t k)
{
    walk_probe *w = ctx;
    w->issued = k + 1;
    if (w->issued - w->n > w->most_ahead)
        w->most_ahead = w->issued - w->n;
    return k % 3 != 2; /* every third one needs no plaintext */
}

static bool walk_paused(void *ctx)
{
    return ((walk_probe *)ctx)->pause;
}

static void walk_each(void *ctx, size_t k, mb_plain *p)
{
    walk_probe *w = ctx;
    assert_true((p != NULL) == walk_need(ctx, k));
    if (p)
        assert_string_equal(p->msgid, ids[k]);
    w->seen[w->n++] = k;
}

static void walk_done(void *ctx, unsigned failed)
{
    walk_probe *w = ctx;
    w->done++;
    w->failed = failed;
}

static void test_walk_in_order_through_the_ring(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "dave@example.org");
    mb_reader r = {0};
    mb_reader_attach(&r, a, 9);
    for (size_t k = 0; k < 40; k++) { /* more than the walk's ring holds */
        snprintf(ids[k], sizeof ids[k], "<m.%zu@postern.invalid>", k);
        mb_plain *p = plain_new(ids[k], "x\r\n");
        mb_cache_insert(a, p);
        mb_plain_unref(p);
    }
    static const mb_walk_ops ops = {walk_msgid, walk_need, walk_each, walk_done, walk_paused};
    walk_probe probe = {0};
    mb_walk *w = mb_walk_new(&r, 40, false, &ops, &probe);
    assert_non_null(w);
    probe.pause = true; /* the client does not read its output: nothing is loaded */
    mb_walk_step(w);
    int never = 0;
    struct timeval t = {0, 50000};
    event_base_loopexit(base, &t);
    event_base_dispatch(base);
    assert_int_equal(probe.issued, 0);
    (void)never;
    probe.pause = false; /* it reads again: the owner steps the walk on */
    mb_walk_step(w);
    run_until(&probe.done);
    assert_true(probe.most_ahead <= 16); /* the ring: at most 16 issued ahead of each() */
    assert_true(probe.most_ahead > 4);   /* ... and more than the 4 loads in flight */
    assert_int_equal(probe.done, 1);
    assert_int_equal(probe.failed, 0);
    assert_int_equal(probe.n, 40);
    for (size_t k = 0; k < 40; k++)
        assert_int_equal(probe.seen[k], k);
    mb_walk_free(w);
    mb_reader_detach(&r);
    mb_account_release(a);
    store_free(st);
}

static void test_cache_evicts_least_recently_used(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "erin@example.org");
    char id[PA_MSGID_MAX];
    for (int k = 0; k < 256; k++) { /* the cache holds 256 */
        snprintf(id, sizeof id, "<m.%d@postern.invalid>", k);
        mb_plain *p = plain_new(id, "x\r\n");
        mb_cache_insert(a, p);
        mb_plain_unref(p);
    }
    assert_non_null(mb_cache_lookup(a, "<m.0@postern.invalid>")); /* used: now the most recent */
    mb_plain *p = plain_new("<m.new@postern.invalid>", "x\r\n");
    mb_cache_insert(a, p);
    mb_plain_unref(p);
    assert_non_null(mb_cache_lookup(a, "<m.0@postern.invalid>"));
    assert_null(mb_cache_lookup(a, "<m.1@postern.invalid>")); /* the least recently used went */
    assert_non_null(mb_cache_lookup(a, "<m.2@postern.invalid>"));
    assert_non_null(mb_cache_lookup(a, "<m.new@postern.invalid>"));
    mb_account_release(a);
    store_free(st);
}


/* ---- views: one client's numbering, against a mailbox filled by hand (a fake scan) ---- */

static void fake_scan(mb_account *a, const uint32_t *uids, size_t n, bool full)
{
    mb_mbox *m = a->mbox;
    free(m->by_msgid); /* what a scan's end does: the Message-ID index is built again */
    m->by_msgid = NULL;
    m->by_msgid_cap = 0;
    free(m->msgs);
    m->msgs = calloc(n ? n : 1, sizeof *m->msgs);
    assert_non_null(m->msgs);
    for (size_t i = 0; i < n; i++) {
        m->msgs[i].uid = uids[i];
        snprintf(m->msgs[i].msgid, sizeof m->msgs[i].msgid, "<m.%u@postern.invalid>", uids[i]);
    }
    m->n = m->cap = n;
    m->high = n ? uids[n - 1] : 0;
    m->uidvalidity = 4242;
    m->scanned = true;
    if (full)
        m->gone_gen++; /* what a full scan does: views look for vanished messages */
}

static const char *id_of(uint32_t uid)
{
    static char id[PA_MSGID_MAX];
    snprintf(id, sizeof id, "<m.%u@postern.invalid>", uid);
    return id;
}

typedef struct sink_log {
    char text[512];
} sink_log;

static void log_expunge(void *ctx, size_t seq, uint32_t uid)
{
    sink_log *l = ctx;
    (void)uid;
    snprintf(l->text + strlen(l->text), sizeof l->text - strlen(l->text), "X%zu ", seq);
}

static void log_exists(void *ctx, size_t n, size_t recent)
{
    sink_log *l = ctx;
    snprintf(l->text + strlen(l->text), sizeof l->text - strlen(l->text), "E%zu/R%zu ", n, recent);
}

static void log_flags(void *ctx, size_t i, const userstate_msg *m)
{
    sink_log *l = ctx;
    snprintf(l->text + strlen(l->text), sizeof l->text - strlen(l->text), "F%zu:%u ", i + 1, m->flags);
}

static const mb_view_sink log_sink = {log_expunge, log_exists, log_flags};

/* The articles of a scan (what folders are made of), each with its state key. */
static void fake_arts(mb_account *a, const uint32_t *nums, size_t n)
{
    mb_mbox *m = a->mbox;
    free(m->arts);
    m->arts = calloc(n ? n : 1, sizeof *m->arts);
    assert_non_null(m->arts);
    for (size_t i = 0; i < n; i++) {
        m->arts[i].uid = nums[i];
        snprintf(m->arts[i].msgid, sizeof m->arts[i].msgid, "<m.%u@postern.invalid>", nums[i]);
        mstate_msgkey(m->arts[i].msgid, strlen(m->arts[i].msgid), m->arts[i].key);
    }
    m->narts = m->capa = n;
    m->scanned = true;
}

/* A folder's view: its messages from the replicated state (not the INBOX's list), flags
 * stored there reach a second view of it, an expunge there is reported as one, and a copy
 * keeps its flags and leaves the source alone. */
static void test_folder_views(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "folders@example.org");
    static const uint32_t nums[] = {11, 12, 13};
    fake_arts(a, nums, 3);
    mstate *ms = mb_replica_state(a);
    assert_non_null(ms);
    uint32_t uid[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(mstate_append(ms, MSTATE_TRASH, a->mbox->arts[i].key, i == 1 ? MSTATE_SEEN : 0,
                                       1000 + (uint64_t)i, &uid[i]), MSTATE_OK);
    mb_account_changed(a);
    mb_view v, w;
    assert_int_equal(mb_view_open(&v, a, MSTATE_TRASH, false), 0);
    assert_int_equal(mb_view_open(&w, a, MSTATE_TRASH, false), 0);
    assert_int_equal(v.n, 3);
    assert_int_equal(mb_view_uid(&v, 0), uid[0]);
    assert_int_equal(v.uidvalidity, mstate_folder_uidvalidity(ms, MSTATE_TRASH));
    assert_string_equal(mb_view_msgid(&v, a, 2), "<m.13@postern.invalid>");
    userstate_msg m;
    mb_view_state(&v, a, 1, &m);
    assert_int_equal(m.flags, US_SEEN);
    assert_int_equal(mb_view_recent(&v, 0), false); /* no \Recent outside the INBOX */

    uint64_t before = mb_view_modseq(&v, a);
    assert_int_equal(mb_view_store(&v, a, 0, US_ADD, US_FLAGGED | US_DELETED, NULL), US_OK);
    assert_true(mb_view_modseq(&v, a) > before);
    v.modseq_seen = mb_view_modseq(&v, a);
    mb_account_changed(a);
    sink_log l = {{0}};
    assert_int_equal(mb_view_sync(&w, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "F1:12 "); /* \Flagged \Deleted, seen by the other view */
    memset(&l, 0, sizeof l);
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, ""); /* its own change is not echoed */

    /* COPY to Archive keeps the flags; the Trash still holds it */
    uint32_t copied = 0;
    assert_int_equal(mb_view_copy(&v, a, 0, MSTATE_ARCHIVE, &copied), MB_FOLDER_OK);
    assert_true(copied > 0);
    mstate_view got;
    assert_int_equal(mstate_get(ms, MSTATE_ARCHIVE, a->mbox->arts[0].key, &got), 1);
    assert_int_equal(got.flags, MSTATE_FLAGGED | MSTATE_DELETED);
    assert_int_equal(mb_view_copy(&v, a, 0, 4711, &copied), MB_FOLDER_NONEXISTENT);

    /* EXPUNGE in the Trash: both views hear it, numbered as each has it */
    assert_int_equal(mb_view_expunge(&v, a, 0), US_OK);
    assert_null(mb_view_msgid(&v, a, 0)); /* gone from the list at once */
    assert_int_equal(mstate_held(ms, a->mbox->arts[0].key), 1); /* Archive keeps the article */
    mb_account_changed(a);
    memset(&l, 0, sizeof l);
    assert_int_equal(mb_view_sync(&w, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "X1 ");
    assert_int_equal(w.n, 2);
    assert_int_equal(mb_view_uid(&w, 0), uid[1]);
    memset(&l, 0, sizeof l);
    assert_int_equal(mb_view_sync(&v, a, false, &log_sink, &l), 0); /* not now (FETCH, STORE) */
    assert_string_equal(l.text, "");
    assert_int_equal(v.n, 3);
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "X1 ");

    /* a message filed there by another site's change: new to both views */
    assert_int_equal(mstate_copy(ms, MSTATE_ARCHIVE, a->mbox->arts[0].key, MSTATE_TRASH, 5000, &copied), MSTATE_OK);
    mb_account_changed(a);
    memset(&l, 0, sizeof l);
    assert_int_equal(mb_view_sync(&w, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "E3/R0 ");
    assert_int_equal(mb_view_uid(&w, 2), copied);
    assert_true(copied > uid[2]);
    mb_view_free(&v);
    mb_view_free(&w);
    mb_account_release(a);
    store_free(st);
}

static void test_view_numbers_in_runs(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "gina@example.org");
    static const uint32_t uids[] = {1, 2, 3, 7, 8, 10};
    fake_scan(a, uids, 6, true);
    assert_int_equal(userstate_remove(a->us, id_of(7)), US_OK); /* expunged before: not shown */
    mb_view v;
    assert_int_equal(mb_view_open(&v, a, MB_INBOX_ID, false), 0);
    assert_int_equal(v.n, 5);
    assert_int_equal(v.nruns, 3); /* 1-3, 8, 10 */
    assert_int_equal(mb_view_uid(&v, 0), 1);
    assert_int_equal(mb_view_uid(&v, 2), 3);
    assert_int_equal(mb_view_uid(&v, 3), 8);
    assert_int_equal(mb_view_uid(&v, 4), 10);
    assert_int_equal(mb_view_last_uid(&v), 10);
    assert_int_equal(mb_view_count_up_to(&v, 0), 0);
    assert_int_equal(mb_view_count_up_to(&v, 7), 3);
    assert_int_equal(mb_view_count_up_to(&v, 9), 4);
    assert_int_equal(mb_view_count_up_to(&v, 99), 5);
    assert_string_equal(mb_view_msgid(&v, a, 3), id_of(8));
    assert_null(mb_view_msgid(&v, a, 5));
    assert_int_equal(mb_view_uidnext(&v, a), 11);
    mb_view_free(&v);
    mb_account_release(a);
    store_free(st);
}

static void test_view_sync_merges_scans_in_order(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "hank@example.org");
    static const uint32_t first[] = {1, 2, 3, 4, 5};
    fake_scan(a, first, 5, true);
    mb_view v;
    assert_int_equal(mb_view_open(&v, a, MB_INBOX_ID, false), 0);
    assert_int_equal(mb_view_count_recent(&v), 5); /* the first view of new mail */

    /* a full scan lost 2 and 4 (cancelled, expired), found 6 and 7; another session flagged 3 */
    static const uint32_t second[] = {1, 3, 5, 6, 7};
    fake_scan(a, second, 5, true);
    assert_int_equal(userstate_store(a->us, id_of(3), US_ADD, US_FLAGGED, NULL), US_OK);
    sink_log l = {""};
    /* during a FETCH: no EXPUNGE; the vanished keep their numbers, the new are numbered after */
    assert_int_equal(mb_view_sync(&v, a, false, &log_sink, &l), 0);
    assert_string_equal(l.text, "E7/R7 F3:4 ");
    assert_int_equal(v.n, 7);
    assert_null(mb_view_msgid(&v, a, 1)); /* uid 2: gone, still numbered */
    /* then, when the client may be told: in order, each number as it is at that moment */
    l.text[0] = '\0';
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "X2 X3 ");
    assert_int_equal(v.n, 5);
    assert_int_equal(mb_view_uid(&v, 1), 3);
    assert_int_equal(mb_view_uid(&v, 4), 7);
    /* nothing new: nothing said */
    l.text[0] = '\0';
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "");
    /* an expunge in the state (another session) is found without a full scan */
    assert_int_equal(userstate_remove(a->us, id_of(5)), US_OK);
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "X3 ");
    /* renumbered under the client (the mailbox came from another site): it must start over */
    a->mbox->uidvalidity = 4343;
    assert_int_equal(mb_view_sync(&v, a, true, &log_sink, &l), -1);
    mb_view_free(&v);
    mb_account_release(a);
    store_free(st);
}

static void test_view_recent_goes_to_one_session(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "ivy@example.org");
    static const uint32_t first[] = {1, 2};
    fake_scan(a, first, 2, true);
    mb_view ro, rw, later;
    assert_int_equal(mb_view_open(&ro, a, MB_INBOX_ID, true), 0); /* EXAMINE sees \Recent, leaves it */
    assert_int_equal(mb_view_count_recent(&ro), 2);
    assert_int_equal(mb_view_open(&rw, a, MB_INBOX_ID, false), 0);
    assert_int_equal(mb_view_count_recent(&rw), 2);
    assert_int_equal(mb_view_open(&later, a, MB_INBOX_ID, false), 0);
    assert_int_equal(mb_view_count_recent(&later), 0); /* rw took them */
    static const uint32_t second[] = {1, 2, 3};
    fake_scan(a, second, 3, false);
    sink_log l = {""};
    assert_int_equal(mb_view_sync(&later, a, true, &log_sink, &l), 0); /* later looks first */
    assert_string_equal(l.text, "E3/R1 ");
    l.text[0] = '\0';
    assert_int_equal(mb_view_sync(&rw, a, true, &log_sink, &l), 0);
    assert_string_equal(l.text, "E3/R2 "); /* keeps what it was given, gets nothing more */
    assert_true(mb_view_recent(&rw, 0));
    assert_false(mb_view_recent(&rw, 2));
    mb_view_free(&ro);
    mb_view_free(&rw);
    mb_view_free(&later);
    mb_account_release(a);
    store_free(st);
}

/* ---- the plaintext budget ---- */

static void test_budget_queues_loads_and_evicts_the_cache(void **state)
{
    (void)state;
    mb_store *st = store_new();
    st->plain_budget = 5u << 19; /* 2.5 MiB: two and a half messages of unknown size (1 MiB each) */
    mb_account *a = open_account(st, "jack@example.org");
    mb_reader r = {0};
    mb_reader_attach(&r, a, 7);
    /* a cached message of 1.5 MiB that only the cache holds: charged while it lives */
    mb_plain *big = plain_new("<m.big@postern.invalid>", "x\r\n");
    big->st = st;
    big->charge = 3u << 19;
    st->plain_used += big->charge;
    mb_cache_insert(a, big);
    mb_plain_unref(big);
    assert_int_equal(mb_store_plaintext_used(st), 3u << 19);

    load_probe l[3] = {{0}};
    mb_load_waiter w[3] = {{0}};
    char id[3][PA_MSGID_MAX];
    for (int i = 0; i < 3; i++)
        snprintf(id[i], sizeof id[i], "<m.q%d@postern.invalid>", i);
    mb_load(&r, id[0], false, &w[0], loaded, &l[0]); /* fits beside the cached one */
    assert_int_equal(st->budget_waiting, 0);
    mb_load(&r, id[1], false, &w[1], loaded, &l[1]); /* does not: the cached one is given up */
    assert_int_equal(st->budget_waiting, 0);
    assert_null(mb_cache_lookup(a, "<m.big@postern.invalid>"));
    assert_int_equal(mb_store_plaintext_used(st), 2u << 20);
    mb_load(&r, id[2], false, &w[2], loaded, &l[2]); /* nothing left to give up: it waits */
    assert_int_equal(st->budget_waiting, 1);
    /* the first two end (the only site refuses): the third starts, and ends too */
    run_until(&l[2].calls);
    for (int i = 0; i < 3; i++)
        assert_int_equal(l[i].calls, 1);
    assert_int_equal(st->budget_waiting, 0);
    assert_int_equal(mb_store_plaintext_used(st), 0);
    mb_reader_detach(&r);
    mb_account_release(a);
    store_free(st);
}

static void test_budget_drained_when_stopping(void **state)
{
    (void)state;
    mb_store *st = store_new();
    st->plain_budget = 1u << 20;
    mb_account *a = open_account(st, "kate@example.org");
    mb_reader r = {0};
    mb_reader_attach(&r, a, 7);
    load_probe l[2] = {{0}};
    mb_load_waiter w[2] = {{0}};
    mb_load(&r, "<m.s0@postern.invalid>", false, &w[0], loaded, &l[0]);
    mb_load(&r, "<m.s1@postern.invalid>", false, &w[1], loaded, &l[1]);
    assert_int_equal(st->budget_waiting, 1);
    mb_store_stopping(st); /* the waiting one ends with an error, from the loop */
    assert_int_equal(st->budget_waiting, 0);
    run_until(&l[1].calls);
    assert_int_equal(l[1].calls, 1);
    assert_false(l[1].got);
    run_until(&l[0].calls);
    mb_reader_detach(&r);
    mb_account_release(a);
    store_free(st);
}

/* ---- watchers ---- */

static void counted(void *arg)
{
    (*(int *)arg)++;
}

static void test_watchers_hear_each_change_once(void **state)
{
    (void)state;
    mb_store *st = store_new();
    mb_account *a = open_account(st, "frank@example.org");
    int n1 = 0, n2 = 0;
    mb_watcher w1 = {0}, w2 = {0};
    mb_watch(a, &w1, counted, &n1);
    mb_watch(a, &w2, counted, &n2);
    mb_watch(a, &w2, counted, &n2); /* twice: still once */
    mb_account_changed(a);
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 1);
    mb_unwatch(a, &w1);
    mb_account_changed(a);
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 2);
    mb_unwatch(a, &w2);
    mb_unwatch(a, &w2);
    mb_account_release(a);
    store_free(st);
}

/* ---- APPEND ---- */

typedef struct append_probe {
    int calls;
    mb_append_rc rc;
    size_t n;
    char why[256];
} append_probe;

static void appended(void *arg, mb_append_rc rc, uint32_t uidvalidity, const uint32_t *uids, size_t n,
                     const char *why)
{
    (void)uidvalidity;
    (void)uids;
    append_probe *p = arg;
    p->calls++;
    p->rc = rc;
    p->n = n;
    snprintf(p->why, sizeof p->why, "%s", why ? why : "");
}

/* The news server cannot be reached: the APPEND is answered UNAVAILABLE once, from the loop,
 * and nothing is filed; refusals that need no server come at once, without a callback. */
static void test_append_unstored_files_nothing(void **state)
{
    (void)state;
    mb_store *st = store_new();
    cfg.max_message_size = 4096;
    mb_account *a = open_account(st, "anna@example.org");
    static const char text[] = "From: anna@example.org\r\nSubject: draft\r\n\r\nhello\r\n";
    mb_append_msg m = {.data = text, .len = sizeof text - 1, .flags = US_DRAFT};
    mb_append_waiter w = {0};
    append_probe p = {0};
    /* no key yet (no login set it): refused */
    assert_int_equal(mb_append(a, 2, &m, 1, &w, appended, &p), MB_APPEND_UNAVAILABLE);
    uint8_t pk[PC_BOX_PK_BYTES], sk[PC_BOX_SK_BYTES], id[PC_KEYID_BYTES] = {0};
    crypto_box_keypair(pk, sk);
    mb_account_set_owner_key(a, id, pk);
    assert_int_equal(mb_append(a, 99, &m, 1, &w, appended, &p), MB_APPEND_NONEXISTENT);
    char *big = calloc(1, 4097);
    mb_append_msg b = {.data = big, .len = 4097};
    assert_int_equal(mb_append(a, 2, &b, 1, &w, appended, &p), MB_APPEND_TOOBIG);
    free(big);
    assert_int_equal(p.calls, 0);
    mb_folder f;
    assert_int_equal(mb_folder_find(a, "Drafts", &f), MB_FOLDER_OK);
    uint32_t uidnext = f.uidnext;
    /* the closed port: nothing shows the article, so nothing is filed */
    mb_append_msg two[2] = {m, m};
    assert_int_equal(mb_append(a, 2, two, 2, &w, appended, &p), MB_APPEND_OK);
    assert_int_equal(p.calls, 0); /* never from inside mb_append */
    run_until(&p.calls);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.rc, MB_APPEND_UNAVAILABLE);
    assert_non_null(strstr(p.why, "[UNAVAILABLE]"));
    assert_int_equal(mb_folder_find(a, "Drafts", &f), MB_FOLDER_OK);
    assert_int_equal(f.messages, 0);
    assert_int_equal(f.uidnext, uidnext);
    /* cancelled while the worker posts: no callback, the job ends by itself */
    append_probe q = {0};
    assert_int_equal(mb_append(a, 2, &m, 1, &w, appended, &q), MB_APPEND_OK);
    mb_append_cancel(&w);
    mb_append_cancel(&w); /* twice is nothing */
    int never = 0;
    struct timeval tick = {0, 10000};
    for (int i = 0; i < 50; i++) {
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
    assert_int_equal(q.calls, never);
    sodium_memzero(sk, sizeof sk);
    mb_account_release(a);
    store_free(st);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    pu_log_verbose = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waitlist_wakes_due_in_order),
        cmocka_unit_test(test_account_shared_saved_and_loaded_again),
        cmocka_unit_test(test_account_open_cancelled),
        cmocka_unit_test(test_load_calls_each_waiter_once),
        cmocka_unit_test(test_walk_in_order_through_the_ring),
        cmocka_unit_test(test_cache_evicts_least_recently_used),
        cmocka_unit_test(test_watchers_hear_each_change_once),
        cmocka_unit_test(test_view_numbers_in_runs),
        cmocka_unit_test(test_folder_views),
        cmocka_unit_test(test_view_sync_merges_scans_in_order),
        cmocka_unit_test(test_view_recent_goes_to_one_session),
        cmocka_unit_test(test_budget_queues_loads_and_evicts_the_cache),
        cmocka_unit_test(test_budget_drained_when_stopping),
        cmocka_unit_test(test_append_unstored_files_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
