/* gateway: [metrics] listen — GET /metrics in Prometheus's text format and GET /health,
 * served by libevent's evhttp on the network process's loop. Everything reported is what
 * this process counts or knows already (gw_stats, the mailbox layer's counters and its view
 * of the news sites): reading it costs a walk over the sessions, nothing more. Requests are
 * small and short-lived: headers are capped, bodies refused, and a connection that says
 * nothing for METRICS_TIMEOUT_S is closed. The address is loopback in the examples: the
 * numbers name sites, not users, but they are nobody else's business. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "gateway/session.h"

#define METRICS_TIMEOUT_S 10
#define METRICS_MAX_HEADERS 8192

typedef struct gw_metrics {
    struct evhttp *http;
    long long started; /* wall clock, for postern_start_time_seconds */
} gw_metrics;

/* A label value, escaped as the exposition format wants (\\, \", \n). */
static void label(struct evbuffer *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(b, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
}

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const proto_label[2] = {"imap", "pop3"};

#define PROM_FILE_MAX (64u << 10)
/* A metrics file another postern process of this host writes into state_dir (the repair
 * process: replication.prom; `postern lmtp`: delivery.prom), appended as it stands; only its
 * postern_ lines and their HELP/TYPE lines pass, so a damaged file cannot break the format
 * beyond its own lines. Missing is fine: that process does not run here. */
static void append_prom(struct evbuffer *b, const char *state_dir, const char *name)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", state_dir, name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    char *text = malloc(PROM_FILE_MAX + 1);
    ssize_t n = text ? read(fd, text, PROM_FILE_MAX) : -1;
    close(fd);
    if (n <= 0) {
        free(text);
        return;
    }
    text[n] = '\0';
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            break; /* a last line without its end: cut short, left out */
        if (strncmp(line, "postern_", 8) == 0 || strncmp(line, "# HELP postern_", 15) == 0 ||
            strncmp(line, "# TYPE postern_", 15) == 0)
            evbuffer_add(b, line, (size_t)(nl - line) + 1);
    }
    free(text);
}

static void write_metrics(gw_net *net, struct evbuffer *b)
{
    const gw_stats *st = &net->stats;
    unsigned sessions[2] = {0, 0}, authed[2] = {0, 0};
    for (const session *s = net->sessions; s; s = s->next) {
        if (s->rejecting || s->dead)
            continue;
        sessions[gw_proto_index(s)]++;
        authed[gw_proto_index(s)] += s->account != NULL;
    }
    mb_store_stats ms;
    mb_store_get_stats(net->store, &ms);

    head(b, "postern_sessions", "gauge", "Connections being served (refused ones not counted).");
    for (int p = 0; p < 2; p++)
        evbuffer_add_printf(b, "postern_sessions{protocol=\"%s\"} %u\n", proto_label[p], sessions[p]);
    head(b, "postern_sessions_authenticated", "gauge", "Connections with a logged-in user.");
    for (int p = 0; p < 2; p++)
        evbuffer_add_printf(b, "postern_sessions_authenticated{protocol=\"%s\"} %u\n", proto_label[p], authed[p]);
    head(b, "postern_connections_total", "counter", "Connections accepted and served.");
    for (int p = 0; p < 2; p++)
        evbuffer_add_printf(b, "postern_connections_total{protocol=\"%s\"} %llu\n", proto_label[p],
                            (unsigned long long)st->connections[p]);
    head(b, "postern_connections_refused_total", "counter",
         "Connections refused: over max_connections or max_connections_per_ip.");
    evbuffer_add_printf(b, "postern_connections_refused_total %llu\n", (unsigned long long)st->refused);
    head(b, "postern_logins_total", "counter", "Logins (LOGIN, AUTHENTICATE, POP3 PASS/AUTH) by result.");
    for (int p = 0; p < 2; p++)
        evbuffer_add_printf(b,
                            "postern_logins_total{protocol=\"%s\",result=\"ok\"} %llu\n"
                            "postern_logins_total{protocol=\"%s\",result=\"failed\"} %llu\n",
                            proto_label[p], (unsigned long long)st->logins_ok[p], proto_label[p],
                            (unsigned long long)st->logins_failed[p]);
    head(b, "postern_logins_pending", "gauge", "Logins the vault is working on (key derivation).");
    evbuffer_add_printf(b, "postern_logins_pending %u\n", net->vault_logins);
    head(b, "postern_sessions_kicked_total", "counter", "Sessions ended by `postern kick`.");
    evbuffer_add_printf(b, "postern_sessions_kicked_total %llu\n", (unsigned long long)st->kicked);
    head(b, "postern_accounts", "gauge", "Users whose mailbox state is open (logged in, or being saved).");
    evbuffer_add_printf(b, "postern_accounts %llu\n", (unsigned long long)ms.accounts);
    head(b, "postern_articles_read_total", "counter",
         "Sealed articles read, from the article cache (source=cache) or a news server (source=news).");
    evbuffer_add_printf(b, "postern_articles_read_total{source=\"cache\"} %llu\n",
                        (unsigned long long)ms.articles_from_cache);
    evbuffer_add_printf(b, "postern_articles_read_total{source=\"news\"} %llu\n",
                        (unsigned long long)ms.articles_from_news);
    head(b, "postern_keyrecord_lookups_total", "counter",
         "Logins' key records, from the gateway's key record cache (source=cache) or a news server (source=news).");
    evbuffer_add_printf(b, "postern_keyrecord_lookups_total{source=\"cache\"} %llu\n",
                        (unsigned long long)st->keyrecords_cached);
    evbuffer_add_printf(b, "postern_keyrecord_lookups_total{source=\"news\"} %llu\n",
                        (unsigned long long)st->keyrecords_fetched);
    head(b, "postern_messages_decrypted_total", "counter",
         "Messages decrypted for clients (a message still in memory is served without this).");
    evbuffer_add_printf(b, "postern_messages_decrypted_total %llu\n", (unsigned long long)ms.messages_decrypted);
    head(b, "postern_plaintext_bytes", "gauge", "Bytes of decrypted messages held in memory.");
    evbuffer_add_printf(b, "postern_plaintext_bytes %llu\n", (unsigned long long)ms.plaintext_bytes);
    head(b, "postern_plaintext_budget_bytes", "gauge", "[gateway] plaintext_budget in bytes (0: no limit).");
    evbuffer_add_printf(b, "postern_plaintext_budget_bytes %llu\n",
                        (unsigned long long)net->cfg->gateway.plaintext_budget_mb << 20);
    head(b, "postern_news_up", "gauge", "1 while a news site answers the gateway's polls and scans.");
    evbuffer_add_printf(b, "postern_news_up %d\n", ms.site_known && !ms.sites_down);
    head(b, "postern_read_site", "gauge", "1 for the site mailboxes are read from (index 0 is the preferred one).");
    for (size_t i = 0; i < net->cfg->n_sites; i++) {
        evbuffer_add_printf(b, "postern_read_site{site=\"");
        label(b, net->cfg->sites[i].name);
        evbuffer_add_printf(b, "\",index=\"%zu\"} %d\n", i, ms.site_known && !ms.sites_down && ms.read_site == i);
    }
    head(b, "postern_start_time_seconds", "gauge", "When the network process started (Unix time).");
    evbuffer_add_printf(b, "postern_start_time_seconds %lld\n", net->metrics->started);
    /* what other processes of this host count: the repair passes, the LMTP service */
    append_prom(b, net->cfg->state_dir, "replication.prom");
    append_prom(b, net->cfg->state_dir, "delivery.prom");
}

/* 200 "ok" while the first site is read; 503 and why otherwise. */
static int health(gw_net *net, char *why, size_t cap)
{
    mb_store_stats ms;
    mb_store_get_stats(net->store, &ms);
    const pn_config *cfg = net->cfg;
    if (net->stopping)
        snprintf(why, cap, "stopping");
    else if (!ms.site_known)
        snprintf(why, cap, "starting: no news site answered yet");
    else if (ms.sites_down)
        snprintf(why, cap, "DOWN: no news server answers; mailboxes cannot be read");
    else if (ms.read_site != 0)
        snprintf(why, cap, "FALLBACK: reading mailboxes from site %s; site %s does not answer",
                 cfg->sites[ms.read_site].name, cfg->sites[0].name);
    else
        return 200;
    return 503;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    gw_net *net = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    int code = 200;
    const char *reason = "OK";
    if (path && strcmp(path, "/metrics") == 0) {
        write_metrics(net, b);
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    } else if (path && strcmp(path, "/health") == 0) {
        char why[512];
        code = health(net, why, sizeof why);
        if (code == 200) {
            evbuffer_add_printf(b, "ok\n");
        } else {
            evbuffer_add_printf(b, "%s\n", why);
            reason = "Service Unavailable";
        }
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    } else {
        code = HTTP_NOTFOUND;
        reason = "Not Found";
        evbuffer_add_printf(b, "postern: GET /metrics or /health\n");
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    }
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

int gw_metrics_start(gw_net *net, int fd)
{
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->http = evhttp_new(net->base))) {
        free(m);
        return -1;
    }
    m->started = (long long)time(NULL);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(m->http, 0);
    evhttp_set_timeout(m->http, METRICS_TIMEOUT_S);
    evhttp_set_gencb(m->http, request_cb, net);
    evutil_make_socket_nonblocking(fd);
    if (evhttp_accept_socket(m->http, fd) != 0) {
        evhttp_free(m->http);
        free(m);
        return -1;
    }
    net->metrics = m;
    return 0;
}

void gw_metrics_stop(gw_net *net)
{
    if (!net->metrics)
        return;
    evhttp_free(net->metrics->http); /* closes its connections and its copy of the listener */
    free(net->metrics);
    net->metrics = NULL;
}
