/* gateway: the network process. One libevent loop owns the listeners, every session, the
 * vault connection and the control socket from the parent (certificate reloads); blocking
 * work goes to the worker pool. It runs unprivileged and never holds a user's private key. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>
#include <sodium.h>

#include "gateway/mailbox.h"
#include "util/util.h"

#define WORKERS 4            /* NNTP connections to the news server; logins queue beyond */
#define STOP_GRACE_S 3       /* on SIGTERM, how long sessions get to flush their BYE */
#define CTL_MAX (GW_CTL_HEADER + 2 * (size_t)GW_PEM_MAX)

typedef struct lctx {
    gw_net *net;
    const gw_listener *l;
} lctx;

/* ---- vault ---- */

static void begin_stop(gw_net *net, const char *bye);

static void vault_failed(gw_net *net)
{
    if (net->exit_code == 0)
        pu_log(PU_ERROR, "the vault process closed its connection; stopping");
    net->exit_code = 1;
    event_del(net->vault_read); /* a closed socket stays readable */
    event_del(net->vault_write);
    /* the parent starts both processes again: sessions are told, and their state saved */
    begin_stop(net, "[UNAVAILABLE] Restarting after an internal error; please reconnect");
}

static void vault_flush(gw_net *net)
{
    if (vault_client_wants_write(net->vc))
        event_add(net->vault_write, NULL);
}

static gw_vreq **vreq_slot(gw_net *net, uint32_t id)
{
    gw_vreq **p = &net->vreqs[id % GW_VREQ_BUCKETS];
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    return p;
}

uint32_t gw_vault_login(gw_net *net, session *s, const char *address, const uint8_t *record, size_t record_len,
                        const char *pw, size_t pw_len)
{
    gw_vreq *q = calloc(1, sizeof *q);
    if (!q)
        return 0;
    uint32_t id = vault_client_send_login(net->vc, address, s->ip, record, record_len, pw, pw_len);
    if (!id) {
        free(q);
        return 0;
    }
    q->id = id;
    q->s = s;
    gw_vreq **slot = &net->vreqs[id % GW_VREQ_BUCKETS];
    q->next = *slot;
    *slot = q;
    vault_flush(net);
    return id;
}

uint32_t gw_vault_open(void *ctx, uint64_t vault_session, const uint8_t prefix[PC_MSG_PREFIX_BYTES],
                       void (*fn)(void *arg, const vault_reply *r), void *arg)
{
    gw_net *net = ctx;
    gw_vreq *q = calloc(1, sizeof *q);
    if (!q)
        return 0;
    uint32_t id = vault_client_send_open(net->vc, vault_session, prefix);
    if (!id) {
        free(q);
        return 0;
    }
    q->id = id;
    q->fn = fn;
    q->arg = arg;
    gw_vreq **slot = &net->vreqs[id % GW_VREQ_BUCKETS];
    q->next = *slot;
    *slot = q;
    vault_flush(net);
    return id;
}

void gw_vault_logout(gw_net *net, uint64_t vault_session)
{
    if (!vault_client_send_logout(net->vc, vault_session))
        pu_log(PU_WARN, "vault logout not sent");
    vault_flush(net);
}

static void vault_logout_hook(void *ctx, uint64_t vault_session)
{
    gw_vault_logout(ctx, vault_session);
}

void gw_vault_forget(gw_net *net, uint32_t id)
{
    gw_vreq *q = *vreq_slot(net, id);
    if (q)
        q->s = NULL;
}

static void on_vault_reply(void *arg, const vault_reply *r)
{
    gw_net *net = arg;
    gw_vreq **slot = vreq_slot(net, r->id);
    gw_vreq *q = *slot;
    if (!q)
        return; /* a LOGOUT's reply: nothing waits for it */
    *slot = q->next;
    session *s = q->s;
    void (*fn)(void *, const vault_reply *) = q->fn;
    void *fn_arg = q->arg;
    free(q);
    if (fn)
        fn(fn_arg, r);
    else
        gw_login_vault_reply(net, s, r);
}

static void vault_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_net *net = arg;
    if (vault_client_on_readable(net->vc, on_vault_reply, net) != 0)
        vault_failed(net);
    else
        vault_flush(net);
}

static void vault_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_net *net = arg;
    if (vault_client_on_writable(net->vc) != 0)
        vault_failed(net);
    else
        vault_flush(net);
}

/* ---- control socket: certificate and settings reloads from the parent ---- */

/* The settings a SIGHUP may change (gateway/reload.c), taken over on the loop thread, which
 * alone reads them: new connections, the next timers and the next UID claims use them. The
 * configuration is this process's own copy of the parent's. */
static void apply_settings(gw_net *net, const pn_gateway *fresh)
{
    pn_gateway *g = (pn_gateway *)&net->cfg->gateway;
    bool cache = g->keyrecord_cache != fresh->keyrecord_cache;
    gw_reload_apply(g, fresh);
    if (cache) { /* a new cache with the new lifetime: the records in the old one go */
        gw_keycache_free(net->keycache);
        net->keycache = gw_keycache_new(g->keyrecord_cache, 1024);
    }
    pu_log(PU_INFO, "settings reloaded: new connections and timers use them");
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    gw_net *net = arg;
    ssize_t n = read(fd, net->ctl_buf + net->ctl_len, CTL_MAX - net->ctl_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        pu_log(PU_ERROR, "the parent process is gone; stopping");
        net->exit_code = 1;
        event_base_loopbreak(net->base);
        return;
    }
    net->ctl_len += (size_t)n;
    for (;;) {
        gw_pem pem;
        size_t flen = 0;
        if (net->ctl_len && net->ctl_buf[0] == 'C') { /* "CFG1": settings after a SIGHUP */
            pn_gateway fresh = net->cfg->gateway;
            int rc = gw_reload_parse(net->ctl_buf, net->ctl_len, &fresh, &flen);
            if (rc == 0)
                return;
            if (rc < 0) {
                pu_log(PU_ERROR, "malformed settings message from the parent; dropped");
                sodium_memzero(net->ctl_buf, net->ctl_len);
                net->ctl_len = 0;
                return;
            }
            apply_settings(net, &fresh);
            memmove(net->ctl_buf, net->ctl_buf + flen, net->ctl_len - flen);
            net->ctl_len -= flen;
            continue;
        }
        int rc = gw_pem_parse(net->ctl_buf, net->ctl_len, &pem, &flen);
        if (rc == 0 && net->ctl_len < CTL_MAX)
            return;
        if (rc <= 0) {
            pu_log(PU_ERROR, "malformed certificate message from the parent; dropped");
            sodium_memzero(net->ctl_buf, net->ctl_len);
            net->ctl_len = 0;
            return;
        }
        char err[512];
        SSL_CTX *ctx = gw_tls_ctx_new(&pem, err, sizeof err);
        if (ctx) {
            /* sessions hold their own reference: open ones keep the old certificate */
            SSL_CTX_free(net->ssl_ctx);
            net->ssl_ctx = ctx;
            pu_log(PU_INFO, "certificate reloaded: new connections use it");
        } else {
            pu_log(PU_ERROR, "certificate reload failed: %s", err);
        }
        memmove(net->ctl_buf, net->ctl_buf + flen, net->ctl_len - flen);
        sodium_memzero(net->ctl_buf + net->ctl_len - flen, flen);
        net->ctl_len -= flen;
    }
}

/* ---- listeners ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    lctx *c = arg;
    gw_session_accept(c->net, fd, sa, salen, c->l->implicit_tls, c->l->pop3 ? &gw_pop3_proto : &gw_imap_proto);
}

static void relisten_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_net *net = arg;
    if (net->stopping)
        return;
    for (size_t i = 0; i < net->n_listeners; i++)
        evconnlistener_enable(net->listeners[i]);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    lctx *c = arg;
    gw_net *net = c->net;
    int e = EVUTIL_SOCKET_ERROR();
    pu_log(PU_WARN, "accept on %s: %s; pausing for a second", c->l->name, strerror(e));
    /* out of descriptors: accepting again at once would spin */
    for (size_t i = 0; i < net->n_listeners; i++)
        evconnlistener_disable(net->listeners[i]);
    struct timeval tv = {1, 0};
    evtimer_add(net->relisten, &tv);
}

/* ---- stopping ---- */

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(((gw_net *)arg)->base);
}

/* Stops accepting, says BYE to every session and ends the loop once they are gone (or after
 * STOP_GRACE_S); the sessions' state is saved on the way out. */
static void begin_stop(gw_net *net, const char *bye)
{
    if (net->stopping)
        return;
    net->stopping = true;
    mb_store_stopping(net->store);
    for (size_t i = 0; i < net->n_listeners; i++)
        evconnlistener_disable(net->listeners[i]);
    for (session *s = net->sessions; s; s = s->next)
        gw_session_bye(s, bye);
    if (!net->sessions) {
        event_base_loopbreak(net->base);
        return;
    }
    struct timeval tv = {STOP_GRACE_S, 0};
    evtimer_add(net->stop_timer, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    gw_net *net = arg;
    if (net->stopping)
        return;
    pu_log(PU_INFO, "network process stopping (signal %d)", (int)sig);
    begin_stop(net, "Server shutting down");
}

int gw_net_run(const pn_config *cfg, const gw_listener *ls, size_t n_listeners, int vault_fd, int ctl_fd,
               int metrics_fd, gw_pem *pem, const pn_writer_key *writer)
{
    gw_net *net = calloc(1, sizeof *net);
    lctx *lc = calloc(n_listeners, sizeof *lc);
    int rc = PX_OSERR;
    char err[512];
    if (!net || !lc) {
        gw_pem_free(pem);
        free(net);
        free(lc);
        return PX_OSERR;
    }
    /* Big buffers (articles, decrypted messages) are mapped and unmapped whole: freed, they go
     * back to the system instead of staying in a worker thread's arena, so the plaintext
     * budget bounds what is resident, not only what is in use. A fixed threshold: glibc's
     * dynamic one rises to the largest block freed, and then keeps big blocks in the heap.
     * 4 MiB: nearly all mail is smaller and stays in the heap, without a page fault per page
     * each time. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    net->cfg = cfg;
    net->ctl_fd = ctl_fd;
    net->ls = ls;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* the parent handles reloads */
    net->base = event_base_new();
    if (!net->base)
        goto fail;
    if (pem->cert) {
        net->ssl_ctx = gw_tls_ctx_new(pem, err, sizeof err);
        gw_pem_free(pem);
        if (!net->ssl_ctx) {
            pu_log(PU_ERROR, "%s", err);
            rc = PX_CONFIG;
            goto out;
        }
    }
    net->vc = vault_client_new(vault_fd);
    net->vault_read = event_new(net->base, vault_fd, EV_READ | EV_PERSIST, vault_read_cb, net);
    net->vault_write = event_new(net->base, vault_fd, EV_WRITE, vault_write_cb, net);
    net->ctl_buf = sodium_malloc(CTL_MAX);
    net->ctl_ev = event_new(net->base, ctl_fd, EV_READ | EV_PERSIST, ctl_cb, net);
    net->relisten = evtimer_new(net->base, relisten_cb, net);
    net->stop_timer = evtimer_new(net->base, stop_timer_cb, net);
    net->sig_term = evsignal_new(net->base, SIGTERM, signal_cb, net);
    net->sig_int = evsignal_new(net->base, SIGINT, signal_cb, net);
    const mb_hooks hooks = {.vault_open = gw_vault_open, .vault_logout = vault_logout_hook, .ctx = net};
    net->store = mb_store_new(cfg, net->base, WORKERS, &hooks, err, sizeof err);
    if (!net->store)
        pu_log(PU_ERROR, "%s", err);
    else if (mb_store_set_writer(net->store, writer) != 0)
        pu_log(PU_ERROR, "out of memory for the writer key: APPEND will be refused");
    net->keycache = gw_keycache_new(cfg->gateway.keyrecord_cache, 1024);
    net->listeners = calloc(n_listeners, sizeof *net->listeners);
    if (!net->vc || !net->vault_read || !net->vault_write || !net->ctl_buf || !net->ctl_ev || !net->relisten ||
        !net->stop_timer || !net->sig_term || !net->sig_int || !net->store || !net->listeners ||
        event_add(net->vault_read, NULL) || event_add(net->ctl_ev, NULL) || event_add(net->sig_term, NULL) ||
        event_add(net->sig_int, NULL))
        goto fail;
    evutil_make_socket_nonblocking(ctl_fd);
    for (size_t i = 0; i < n_listeners; i++) {
        lc[i].net = net;
        lc[i].l = &ls[i];
        evutil_make_socket_nonblocking(ls[i].fd);
        /* backlog 0: the parent already called listen() */
        net->listeners[i] = evconnlistener_new(net->base, accept_cb, &lc[i], LEV_OPT_CLOSE_ON_FREE, 0, ls[i].fd);
        if (!net->listeners[i])
            goto fail;
        evconnlistener_set_error_cb(net->listeners[i], accept_error_cb);
        net->n_listeners++;
    }
    gw_control_start(net); /* without it mail is still served: a warning was logged */
    if (metrics_fd >= 0 && gw_metrics_start(net, metrics_fd) != 0)
        goto fail;
    pu_log(PU_INFO, "network process ready (uid %u): %zu listeners, %u workers", (unsigned)getuid(), n_listeners,
           WORKERS);
    event_base_dispatch(net->base);
    rc = net->exit_code;
    goto out;
fail:
    pu_log(PU_ERROR, "network process cannot start: out of memory or descriptors");
    rc = PX_OSERR;
out:
    for (size_t i = 0; i < net->n_listeners; i++)
        evconnlistener_free(net->listeners[i]);
    gw_control_stop(net);
    gw_metrics_stop(net);
    net->stopping = true;
    while (net->sessions)
        gw_session_close(net->sessions);
    gw_login_queue_free(net);
    gw_keycache_free(net->keycache);
    net->keycache = NULL;
    gw_peers_free(net);
    /* the requests of loads in flight fail: the loads end, their accounts go, and the
     * last saves are queued before the pool runs them */
    for (size_t b = 0; b < GW_VREQ_BUCKETS; b++)
        while (net->vreqs[b]) {
            gw_vreq *q = net->vreqs[b];
            net->vreqs[b] = q->next;
            if (q->fn) { /* its waiter frees what it holds */
                vault_reply fail = {.id = q->id, .type = VAULT_REPLY_FAIL, .reason = VAULT_FAIL_SESSION};
                q->fn(q->arg, &fail);
            }
            free(q);
        }
    mb_store_free(net->store); /* runs the last saves */
    if (net->vc) {
        vault_client_on_writable(net->vc); /* the last logouts, best effort */
        vault_client_free(net->vc);
    }
    if (net->ctl_buf)
        sodium_free(net->ctl_buf);
    struct event *evs[] = {net->vault_read, net->vault_write, net->ctl_ev, net->relisten,
                           net->stop_timer, net->sig_term, net->sig_int};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    SSL_CTX_free(net->ssl_ctx);
    if (net->base)
        event_base_free(net->base);
    free(net->listeners);
    free(net);
    free(lc);
    return rc;
}
