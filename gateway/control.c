/* gateway: the admin control socket, state_dir/control (`postern who`, `postern kick`).
 * The network process creates it itself: it owns state_dir, and the parent (root, but in the
 * systemd unit without CAP_DAC_OVERRIDE) cannot write there. Mode 0600 and a peer check
 * (SO_PEERCRED: root or the process's own user) keep it the admin's. One request line per
 * connection (ctlproto.c), a few connections at once, each with a deadline: a stuck client
 * costs a slot for CTL_TIMEOUT_S, never the loop. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "article/article.h"
#include "gateway/session.h"

#define CTL_CONNS_MAX 8  /* admin connections at once; more are closed at accept */
#define CTL_TIMEOUT_S 5  /* to send the request, and to read the reply */

typedef struct ctl_conn {
    struct ctl_conn *prev, *next;
    struct gw_control *c;
    struct bufferevent *bev;
    bool answered;
} ctl_conn;

typedef struct gw_control {
    gw_net *net;
    struct evconnlistener *listener;
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    ctl_conn *conns; /* open connections, freed at stop too */
    unsigned n_conns;
} gw_control;

static void conn_free(ctl_conn *k)
{
    gw_control *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    c->n_conns--;
    bufferevent_free(k->bev);
    free(k);
}

static void reply(ctl_conn *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(ctl_conn *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(k->bev), fmt, ap);
    va_end(ap);
    evbuffer_add(bufferevent_get_output(k->bev), "\n", 1);
}

static bool logged_in(const session *s)
{
    return s->account != NULL && !s->dead;
}

static void row_of(const session *s, long long now_ms, gw_ctl_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = s->id;
    snprintf(r->proto, sizeof r->proto, "%s", gw_proto_index(s) ? "pop3" : "imap");
    snprintf(r->transport, sizeof r->transport, "%s",
             !s->tls ? "plain" : s->implicit_tls ? "tls" : "starttls");
    snprintf(r->state, sizeof r->state, "%s", gw_state_name(s->state));
    r->since = s->connected_at;
    r->idle = now_ms > s->last_input_ms ? (unsigned long long)(now_ms - s->last_input_ms) / 1000 : 0;
    snprintf(r->client, sizeof r->client, "%s", s->peer);
    snprintf(r->user, sizeof r->user, "%s", logged_in(s) && s->address[0] ? s->address : "-");
}

static void do_who(ctl_conn *k)
{
    long long now = pu_now_ms();
    unsigned n = 0;
    session *last = k->c->net->sessions;
    while (last && last->next)
        last = last->next;
    for (session *s = last; s; s = s->prev) { /* oldest first: new sessions go to the head */
        if (s->rejecting || s->dead)
            continue;
        gw_ctl_row r;
        char line[GW_CTL_REPLY_MAX];
        row_of(s, now, &r);
        if (gw_ctl_format_row(&r, line, sizeof line) < 0)
            continue;
        reply(k, "%s", line);
        n++;
    }
    reply(k, "OK %u", n);
}

static void do_kick(ctl_conn *k, const gw_ctl_req *q)
{
    gw_net *net = k->c->net;
    char want[PC_ADDRESS_MAX + 1] = "", why[160];
    if (q->verb == GW_CTL_KICK_USER && pa_address_canonical(q->user, want, sizeof want, why, sizeof why) != 0) {
        reply(k, "ERR %s", why);
        return;
    }
    unsigned n = 0;
    for (session *s = net->sessions; s; s = s->next) {
        if (s->rejecting || s->dead || s->state == S_LOGOUT)
            continue;
        if (q->verb == GW_CTL_KICK_ID ? s->id != q->id : !(logged_in(s) && strcmp(s->address, want) == 0))
            continue;
        pu_log(PU_INFO, "%s: %s session %llu of %s ended by the administrator", s->peer, s->proto->name,
               (unsigned long long)s->id, s->address[0] ? s->address : "(not logged in)");
        /* the BYE is queued and the session closes once it is flushed (its state is saved) */
        gw_session_bye(s, "Disconnected by the administrator");
        net->stats.kicked++;
        n++;
    }
    reply(k, "OK %u", n);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    ctl_conn *k = arg;
    if (k->answered)
        return;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = 0;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
    if (!line) {
        if (evbuffer_get_length(in) >= GW_CTL_LINE_MAX) {
            k->answered = true;
            reply(k, "ERR request too long");
        } else {
            return;
        }
    } else {
        k->answered = true;
        gw_ctl_req q;
        const char *why = "";
        if (memchr(line, '\0', len) || gw_ctl_parse_request(line, len, &q, &why) != 0)
            reply(k, "ERR %s", why[0] ? why : "malformed request");
        else if (q.verb == GW_CTL_WHO)
            do_who(k);
        else
            do_kick(k, &q);
        free(line);
    }
    /* answered: nothing more is read; the connection ends when the reply is out */
    bufferevent_disable(bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_enable(bev, EV_WRITE);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    ctl_conn *k = arg;
    if (k->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(k);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    ctl_conn *k = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (what & BEV_EVENT_TIMEOUT)
            pu_log(PU_DEBUG, "control socket: a client timed out");
        conn_free(k);
    }
}

static void control_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    gw_control *c = arg;
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || (cred.uid != 0 && cred.uid != geteuid())) {
        pu_log(PU_WARN, "control socket: refused a client of uid %ld (root or uid %ld only)",
               clen == sizeof cred ? (long)cred.uid : -1L, (long)geteuid());
        close(fd);
        return;
    }
    if (c->n_conns >= CTL_CONNS_MAX) {
        pu_log(PU_WARN, "control socket: %d clients at once already; one refused", CTL_CONNS_MAX);
        close(fd);
        return;
    }
    ctl_conn *k = calloc(1, sizeof *k);
    if (!k || !(k->bev = bufferevent_socket_new(c->net->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(k);
        close(fd);
        return;
    }
    k->c = c;
    k->next = c->conns;
    if (k->next)
        k->next->prev = k;
    c->conns = k;
    c->n_conns++;
    struct timeval tv = {CTL_TIMEOUT_S, 0};
    bufferevent_set_timeouts(k->bev, &tv, &tv);
    bufferevent_setcb(k->bev, conn_read, conn_write, conn_event, k);
    bufferevent_enable(k->bev, EV_READ);
}

int gw_control_start(gw_net *net)
{
    gw_control *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->net = net;
    int n = snprintf(c->path, sizeof c->path, "%s/%s", net->cfg->state_dir, GW_CTL_NAME);
    if (n < 0 || (size_t)n >= sizeof c->path) {
        pu_log(PU_WARN, "no control socket (postern who, kick): %s/%s is longer than a socket path may be",
               net->cfg->state_dir, GW_CTL_NAME);
        free(c);
        return -1;
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, c->path, (size_t)n + 1);
    /* one left by a network process that died (or an earlier run) is replaced, but not the
     * socket of another gateway that still answers there */
    struct stat st;
    if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        bool alive = probe >= 0 && (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN);
        if (probe >= 0)
            close(probe);
        if (alive) {
            pu_log(PU_ERROR, "no control socket (postern who, kick): another gateway answers on %s (two gateways "
                             "with one state_dir?)", c->path);
            free(c);
            return -1;
        }
        unlink(c->path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(0177); /* 0600 from the start: nobody else connects in between */
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    if (rc != 0 || listen(fd, 16) != 0) {
        pu_log(PU_WARN, "no control socket (postern who, kick): %s: %s", c->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(c);
        return -1;
    }
    c->listener = evconnlistener_new(net->base, control_accept, c, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!c->listener) {
        close(fd);
        unlink(c->path);
        free(c);
        return -1;
    }
    net->control = c;
    pu_log(PU_DEBUG, "control socket %s", c->path);
    return 0;
}

void gw_control_stop(gw_net *net)
{
    gw_control *c = net->control;
    if (!c)
        return;
    evconnlistener_free(c->listener);
    unlink(c->path);
    while (c->conns)
        conn_free(c->conns);
    free(c);
    net->control = NULL;
}
