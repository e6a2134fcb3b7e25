/* gateway: the connection core, for IMAP and POP3 alike — the transport (bufferevent, TLS,
 * STARTTLS), the timers, output and its back-pressure, and the session's life. The protocol
 * is reached only through s->proto (imap_session.c, pop3_session.c). A command that must
 * wait returns GW_PENDING: the session stops reading until it is done, so pipelined
 * commands keep their order; reading also pauses while too much output is queued. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <sodium.h>

#include "gateway/mailbox.h"

#define OUT_HIGH (256u << 10) /* queued output above which commands wait (a slow reader) */
#define MAX_REJECTING 64      /* connections being told "too many" at once; beyond: closed */
#define CLOSE_TIMEOUT_S 10    /* a client that does not read its BYE */

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- state ---- */

static const char *const state_names[] = {"greeting", "not-authenticated", "authenticating", "authenticated",
                                          "selected", "idle", "logout"};

const char *gw_state_name(enum session_state st)
{
    return (size_t)st < sizeof state_names / sizeof state_names[0] ? state_names[st] : "?";
}

void gw_session_enter(session *s, enum session_state st)
{
    if (s->state == st)
        return;
    pu_log(PU_DEBUG, "%s: %s %s -> %s", s->peer, s->proto ? s->proto->name : "", state_names[s->state],
           state_names[st]);
    s->state = st;
}

void gw_session_pending(session *s, void (*resume)(void *ctx), void (*cancel)(void *ctx), void *ctx)
{
    s->cmd = (gw_pending_cmd){resume, cancel, ctx};
}

/* ---- output ---- */

void gw_write(session *s, const void *data, size_t len)
{
    if (s->dead)
        return;
    s->bytes_out += len;
    bufferevent_write(s->bev, data, len);
}

static void plain_sent(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    mb_plain_unref(arg);
}

void gw_write_plain(session *s, const char *data, size_t len, mb_plain *p)
{
    if (s->dead)
        return;
    s->bytes_out += len;
    p->refs++; /* the output's, given back once the bytes are sent (or the connection gone) */
    if (evbuffer_add_reference(bufferevent_get_output(s->bev), data, len, plain_sent, p) != 0) {
        p->refs--;
        bufferevent_write(s->bev, data, len);
    }
}

void gw_vwritef(session *s, const char *fmt, va_list ap)
{
    if (s->dead)
        return;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    int n = evbuffer_add_vprintf(out, fmt, ap);
    evbuffer_add(out, "\r\n", 2);
    s->bytes_out += (n > 0 ? (uint64_t)n : 0) + 2;
}

/* ---- timers ---- */

static void arm_timeout(session *s)
{
    const pn_gateway *g = &s->net->cfg->gateway;
    bool authed = s->state == S_AUTH || s->state == S_SELECTED || s->state == S_IDLE;
    long long ms = 1000LL * (authed ? s->proto->idle_timeout(g) : g->preauth_timeout);
    if (!authed) {
        /* before login, commands (NOOP, CAPABILITY) reset the idle timer but never the
         * deadline: a connection cannot hold a slot for ever without logging in */
        long long left = s->login_by_ms - pu_now_ms();
        if (left < ms)
            ms = left > 0 ? left : 0;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    s->timer_kind = GW_T_TIMEOUT;
    evtimer_add(s->timer, &tv);
}

void gw_session_fail_later(session *s, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    s->timer_kind = GW_T_FAIL_DELAY;
    evtimer_add(s->timer, &tv);
}

static void close_after_flush(session *s)
{
    gw_session_enter(s, S_LOGOUT);
    s->pending = false;
    bufferevent_disable(s->bev, EV_READ);
    struct timeval tv = {CLOSE_TIMEOUT_S, 0};
    s->timer_kind = GW_T_CLOSE;
    evtimer_add(s->timer, &tv);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        event_active(s->resume, EV_TIMEOUT, 1);
}

void gw_session_close_after_flush(session *s)
{
    if (!s->dead && s->state != S_LOGOUT)
        close_after_flush(s);
}

void gw_session_bye(session *s, const char *text)
{
    if (s->dead || s->state == S_LOGOUT)
        return;
    s->proto->bye(s, text);
    close_after_flush(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session *s = arg;
    switch (s->timer_kind) {
    case GW_T_TIMEOUT:
        if (s->state == S_AUTH || s->state == S_SELECTED || s->state == S_IDLE) {
            pu_log(PU_INFO, "%s: %s idle for too long", s->peer, s->address);
            gw_session_bye(s, "Autologout; idle for too long");
        } else {
            pu_log(PU_INFO, "%s: no login in time", s->peer);
            gw_session_bye(s, "Disconnected for inactivity");
        }
        break;
    case GW_T_FAIL_DELAY:
        gw_login_finish(s, false, "[AUTHENTICATIONFAILED] Authentication failed.");
        break;
    case GW_T_CLOSE:
        gw_session_close(s);
        break;
    }
}

/* Runs on the loop after an asynchronous command finished (never from inside the caller's
 * stack, so callers may go on using s). */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session *s = arg;
    if (s->dead)
        return;
    if (s->state == S_LOGOUT) {
        if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
            gw_session_close(s);
        return;
    }
    if (s->pending)
        return;
    arm_timeout(s);
    bufferevent_enable(s->bev, EV_READ);
    s->proto->input(s);
}

void gw_session_done(session *s)
{
    s->pending = false;
    s->cmd = (gw_pending_cmd){0};
    if (!s->dead)
        event_active(s->resume, EV_TIMEOUT, 1);
}

/* ---- lifetime ---- */

void gw_session_unref(session *s)
{
    if (--s->refs == 0)
        free(s);
}

/* Writes what the socket takes now of out, without waiting: the last bytes of a closing
 * STARTTLS session (its BYE, close_notify) still sit in the plain bufferevent's output, and
 * evbuffer_write() fails on that buffer (libevent 2.1.12), so they are sent from here. */
static void flush_plain(struct evbuffer *out, int fd)
{
    struct evbuffer_iovec v[8];
    int n = evbuffer_peek(out, -1, NULL, v, 8);
    for (int i = 0; i < n && i < 8; i++) {
        ssize_t w = send(fd, v[i].iov_base, v[i].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 || (size_t)w < v[i].iov_len)
            return;
    }
}

void gw_session_close(session *s)
{
    if (s->dead)
        return;
    gw_net *net = s->net;
    s->dead = true;
    if (s->login_at_ms) /* the counterpart of "logged in", with what the session moved */
        pu_log(PU_INFO, "%s: %s logged out (%s) after %.1f s: %llu bytes in, %llu out", s->peer, s->address,
               s->proto ? s->proto->name : "?", (double)(pu_now_ms() - s->login_at_ms) / 1000.0,
               (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out);
    if (s->vault_req)
        gw_vault_forget(net, s->vault_req);
    gw_pending_cmd cmd = s->cmd;
    s->cmd = (gw_pending_cmd){0};
    if (cmd.cancel)
        cmd.cancel(cmd.ctx);
    if (s->proto)
        s->proto->free(s);
    gw_session_detach_account(s); /* before the logout: no load takes its vault session now */
    if (s->vault_session)
        gw_vault_logout(net, s->vault_session);
    s->vault_session = 0;
    if (s->pw) {
        sodium_free(s->pw);
        s->pw = NULL;
    }
    if (s->bev) {
        SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
        if (ssl && SSL_is_init_finished(ssl)) {
            /* close_notify, best effort: a socket bufferevent's SSL writes to the socket
             * itself; a STARTTLS filter writes into the plain bufferevent's output */
            SSL_shutdown(ssl);
            struct bufferevent *u = bufferevent_get_underlying(s->bev);
            if (u)
                flush_plain(bufferevent_get_output(u), s->fd);
        }
        ERR_clear_error();
        gw_session_consumed(s, evbuffer_get_length(bufferevent_get_input(s->bev))); /* unread input: wiped */
        bufferevent_free(s->bev); /* closes the socket */
        s->bev = NULL;
    }
    event_free(s->timer);
    event_free(s->resume);
    if (s->prev)
        s->prev->next = s->next;
    else
        net->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->rejecting)
        net->n_rejecting--;
    else
        net->n_sessions--;
    if (s->counted_peer)
        gw_peer_release(net, s->ip);
    pu_log(PU_DEBUG, "%s: closed", s->peer);
    if (net->stopping && !net->sessions)
        event_base_loopbreak(net->base);
    gw_session_unref(s);
}

static void peer_name(session *s, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    memset(s->ip, 0, sizeof s->ip);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        s->ip[10] = s->ip[11] = 0xff; /* IPv4-mapped, as the vault's throttle expects */
        memcpy(s->ip + 12, &in->sin_addr, 4);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(s->peer, sizeof s->peer, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(s->ip, &in6->sin6_addr, 16);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(s->peer, sizeof s->peer, "[%s]:%u", host, port);
    } else {
        snprintf(s->peer, sizeof s->peer, "unknown");
    }
}

void gw_session_accept(gw_net *net, int fd, const struct sockaddr *sa, int salen, bool implicit_tls,
                       const gw_proto *proto)
{
    (void)salen;
    const pn_gateway *g = &net->cfg->gateway;
    bool reject = net->n_sessions >= g->max_connections || net->stopping;
    if ((reject && net->n_rejecting >= MAX_REJECTING) || (implicit_tls && !net->ssl_ctx)) {
        net->stats.refused += reject;
        close(fd);
        return;
    }
    session *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return;
    }
    s->net = net;
    s->refs = 1;
    s->fd = fd;
    s->implicit_tls = implicit_tls;
    s->connected_at = (long long)time(NULL);
    s->last_input_ms = pu_now_ms();
    peer_name(s, sa);
    bool crowded = false; /* this address holds its share of the slots already */
    if (!reject) {
        s->counted_peer = gw_peer_admit(net, s->ip);
        crowded = reject = !s->counted_peer;
    }
    if (reject && net->n_rejecting >= MAX_REJECTING) {
        net->stats.refused++;
        free(s);
        close(fd);
        return;
    }
    s->rejecting = reject;
    s->login_by_ms = pu_now_ms() + 1000LL * g->preauth_deadline;
    s->proto = proto;
    if (proto->init(s) != 0) {
        proto->free(s);
        if (s->counted_peer)
            gw_peer_release(net, s->ip);
        free(s);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* replies are small and awaited */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);

    s->timer = evtimer_new(net->base, timer_cb, s);
    s->resume = event_new(net->base, -1, 0, resume_cb, s);
    SSL *ssl = NULL;
    if (s->timer && s->resume) {
        if (implicit_tls) {
            ssl = SSL_new(net->ssl_ctx);
            if (ssl)
                s->bev = bufferevent_openssl_socket_new(net->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        } else {
            s->bev = bufferevent_socket_new(net->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        }
    }
    if (!s->bev) {
        pu_log(PU_ERROR, "%s: out of memory for a new connection", s->peer);
        if (ssl)
            SSL_free(ssl);
        if (s->timer)
            event_free(s->timer);
        if (s->resume)
            event_free(s->resume);
        proto->free(s);
        if (s->counted_peer)
            gw_peer_release(net, s->ip);
        free(s);
        close(fd);
        return;
    }
    if (implicit_tls) {
        s->tls = true;
        bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    }
    s->tls_available = !implicit_tls && net->ssl_ctx;
    s->next = net->sessions;
    if (s->next)
        s->next->prev = s;
    net->sessions = s;
    if (reject) {
        net->n_rejecting++;
        net->stats.refused++;
    } else {
        net->n_sessions++;
        s->id = ++net->last_session_id;
        net->stats.connections[gw_proto_index(s)]++;
    }
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    bufferevent_enable(s->bev, EV_READ);
    pu_log(PU_DEBUG, "%s: connected%s", s->peer, implicit_tls ? " (TLS)" : "");
    if (crowded) {
        pu_log(PU_WARN, "%s: refused: %u connections from this address already", s->peer,
               g->max_connections_per_ip);
        gw_session_bye(s, "Too many connections from your address");
        return;
    }
    if (reject) {
        pu_log(PU_WARN, "%s: refused: %u connections already", s->peer, net->n_sessions);
        gw_session_bye(s, "Too many connections");
        return;
    }
    gw_session_enter(s, S_NOT_AUTH);
    s->proto->greet(s);
    if (!s->dead && s->state != S_LOGOUT)
        arm_timeout(s);
}

int gw_session_starttls(session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        pu_log(PU_INFO, "%s: dropped %zu bytes sent after STARTTLS before the handshake", s->peer, junk);
        gw_session_consumed(s, junk); /* wiped: a careless client may have sent its LOGIN */
    }
    SSL *ssl = SSL_new(s->net->ssl_ctx);
    if (!ssl)
        return -1;
    /* The OK still waits in the plain bufferevent's output; the filter writes after it. */
    struct bufferevent *t = bufferevent_openssl_filter_new(s->net->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!t) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(t, 1);
    s->bev = t;
    s->tls = true;
    s->tls_available = false;
    bufferevent_setcb(t, read_cb, write_cb, event_cb, s);
    bufferevent_enable(t, EV_READ);
    return 0;
}

/* ---- input ---- */

const void *gw_session_input(session *s, size_t *len)
{
    if (s->dead || s->pending || s->state == S_LOGOUT)
        return NULL;
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUT_HIGH) {
        /* the client is not reading: stop reading its commands too (write_cb resumes) */
        s->output_full = true;
        bufferevent_disable(s->bev, EV_READ);
        return NULL;
    }
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct evbuffer_iovec v;
    if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
        return NULL;
    *len = v.iov_len;
    return v.iov_base;
}

void gw_session_consumed(session *s, size_t used)
{
    /* The input may hold a password (LOGIN, AUTHENTICATE, POP3 PASS): the parser has its
     * own copy, so the bytes are wiped before libevent frees or reuses their chain. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    s->bytes_in += used;
    while (used) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t w = v.iov_len < used ? v.iov_len : used;
        sodium_memzero(v.iov_base, w);
        evbuffer_drain(in, w);
        used -= w;
    }
    if (used)
        evbuffer_drain(in, used);
}

void gw_session_wait(session *s)
{
    s->pending = true;
    bufferevent_disable(s->bev, EV_READ);
}

bool gw_session_after(session *s, gw_result r)
{
    if (s->dead)
        return false;
    if (r == GW_CLOSE) {
        if (s->errors >= GW_MAX_ERRORS)
            gw_session_bye(s, "Too many invalid commands");
        else
            close_after_flush(s);
        return false;
    }
    if (r == GW_PENDING) {
        gw_session_wait(s);
        return false;
    }
    arm_timeout(s);
    return true;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session *s = arg;
    s->last_input_ms = pu_now_ms();
    s->proto->input(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session *s = arg;
    if (s->state == S_LOGOUT) {
        gw_session_close(s);
        return;
    }
    if (s->output_full) {
        s->output_full = false;
        if (!s->pending) {
            bufferevent_enable(s->bev, EV_READ);
            s->proto->input(s);
        }
    }
    if (!s->dead && s->cmd.resume) /* a command that paused for the client to catch up */
        s->cmd.resume(s->cmd.ctx);
}

size_t gw_session_output_len(session *s)
{
    return s->dead ? 0 : evbuffer_get_length(bufferevent_get_output(s->bev));
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl)
            pu_log(PU_DEBUG, "%s: %s %s", s->peer, SSL_get_version(ssl), SSL_get_cipher_name(ssl));
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        while ((e = bufferevent_get_openssl_error(bev)) != 0) {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            pu_log(PU_DEBUG, "%s: TLS: %s", s->peer, buf);
        }
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        gw_session_close(s);
}
