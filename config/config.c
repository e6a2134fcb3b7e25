#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>
#include <time.h>

#include "article/article.h"
#include "crypto/crypto.h"
#include "util/util.h"

#define DEFAULT_PATH "/etc/postern/postern.conf"

typedef struct parse_ctx {
    pn_config *cfg;
    char password_files[PN_MAX_SITES][PATH_MAX];
    char err[256];            /* the reason of the setting being handled */
    FILE *f;
    int line, next_line;      /* the line being handled (the reader counts) */
    char errs[1024];          /* every setting's error, "path:line: reason; ..." */
    size_t errs_len;
    unsigned nerrs, errs_left_out;
} parse_ctx;

static int set_string(char *dst, size_t cap, const char *value, const char *key, parse_ctx *ctx)
{
    if (strlen(value) >= cap) {
        snprintf(ctx->err, sizeof ctx->err, "%s is longer than %zu characters", key, cap - 1);
        return 0;
    }
    strcpy(dst, value);
    return 1;
}

static int set_u64(uint64_t *dst, const char *value, uint64_t min, uint64_t max, const char *key, parse_ctx *ctx)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || v < min || v > max) {
        snprintf(ctx->err, sizeof ctx->err, "%s must be a whole number from %llu to %llu, not '%s'", key,
                 (unsigned long long)min, (unsigned long long)max, value);
        return 0;
    }
    *dst = v;
    return 1;
}

static int set_uint(unsigned *dst, const char *value, unsigned min, unsigned max, const char *key, parse_ctx *ctx);

/* "id, id, ...": writer ids as `postern authority writer` prints them (16 hex digits). */
static int set_revoked_writers(parse_ctx *ctx, const char *value)
{
    pn_config *cfg = ctx->cfg;
    if (!set_string(cfg->revoked_writers_text, sizeof cfg->revoked_writers_text, value, "revoked_writers", ctx))
        return 0;
    cfg->n_revoked_writers = 0;
    for (const char *p = value; *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (!n)
            break;
        if (cfg->n_revoked_writers == PN_MAX_REVOKED_WRITERS) {
            snprintf(ctx->err, sizeof ctx->err, "revoked_writers: more than %d ids", PN_MAX_REVOKED_WRITERS);
            return 0;
        }
        int hex = n == 16;
        for (size_t i = 0; hex && i < n; i++)
            hex = (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f');
        if (!hex) {
            snprintf(ctx->err, sizeof ctx->err,
                     "revoked_writers: '%.*s' is not a writer id (16 lower-case hex digits, as `postern authority "
                     "writer` prints it)",
                     (int)(n > 40 ? 40 : n), p);
            return 0;
        }
        memcpy(cfg->revoked_writers[cfg->n_revoked_writers], p, 16);
        cfg->revoked_writers[cfg->n_revoked_writers++][16] = 0;
        p += n;
    }
    return 1;
}

static pn_site *site_for(parse_ctx *ctx, const char *name, size_t *index)
{
    pn_config *cfg = ctx->cfg;
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (strcmp(cfg->sites[i].name, name) == 0) {
            *index = i;
            return &cfg->sites[i];
        }
    if (cfg->n_sites == PN_MAX_SITES) {
        snprintf(ctx->err, sizeof ctx->err, "more than %d [site] sections", PN_MAX_SITES);
        return NULL;
    }
    if (!*name || strlen(name) >= sizeof cfg->sites[0].name) {
        snprintf(ctx->err, sizeof ctx->err, "a [site NAME] section needs a name of 1 to 63 characters");
        return NULL;
    }
    pn_site *s = &cfg->sites[cfg->n_sites];
    memset(s, 0, sizeof *s);
    strcpy(s->name, name);
    strcpy(s->port, "119");
    s->connect_timeout = 5;
    *index = cfg->n_sites++;
    return s;
}

static int handle_site(parse_ctx *ctx, const char *name, const char *key, const char *value)
{
    size_t index;
    pn_site *s = site_for(ctx, name, &index);
    if (!s)
        return 0;
    if (!key) /* section header seen (inih reports it with INI_CALL_HANDLER_ON_NEW_SECTION) */
        return 1;
    if (strcmp(key, "host") == 0)
        return set_string(s->host, sizeof s->host, value, key, ctx);
    if (strcmp(key, "port") == 0) {
        uint64_t port;
        if (!set_u64(&port, value, 1, 65535, key, ctx))
            return 0;
        snprintf(s->port, sizeof s->port, "%u", (unsigned)port);
        return 1;
    }
    if (strcmp(key, "tls") == 0) {
        if (strcmp(value, "none") == 0)
            s->tls = PN_TLS_NONE;
        else if (strcmp(value, "implicit") == 0)
            s->tls = PN_TLS_IMPLICIT;
        else if (strcmp(value, "starttls") == 0)
            s->tls = PN_TLS_STARTTLS;
        else {
            snprintf(ctx->err, sizeof ctx->err, "tls must be none, implicit or starttls, not '%s'", value);
            return 0;
        }
        return 1;
    }
    if (strcmp(key, "ca_file") == 0)
        return set_string(s->ca_file, sizeof s->ca_file, value, key, ctx);
    if (strcmp(key, "user") == 0)
        return set_string(s->user, sizeof s->user, value, key, ctx);
    if (strcmp(key, "password_file") == 0)
        return set_string(ctx->password_files[index], sizeof ctx->password_files[index], value, key, ctx) &&
               set_string(s->password_file, sizeof s->password_file, value, key, ctx);
    if (strcmp(key, "innconf") == 0)
        return set_string(s->innconf, sizeof s->innconf, value, key, ctx);
    if (strcmp(key, "connect_timeout") == 0)
        return set_uint(&s->connect_timeout, value, 1, 300, key, ctx);
    snprintf(ctx->err, sizeof ctx->err, "unknown setting '%s' in [site %s]", key, name);
    return 0;
}

/* One "ADDR:PORT" ("[v6]:PORT" for IPv6) into l; 0 and a reason in ctx->err on error. */
static int parse_listen(pn_listen *l, const char *text, size_t len, const char *key, parse_ctx *ctx)
{
    char buf[128];
    if (len == 0 || len >= sizeof buf)
        goto bad;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *colon = strrchr(buf, ':');
    if (!colon)
        goto bad;
    *colon = '\0';
    char *addr = buf, *port = colon + 1;
    if (addr[0] == '[') {
        size_t n = strlen(addr);
        if (n < 3 || addr[n - 1] != ']')
            goto bad;
        addr[n - 1] = '\0';
        addr++;
    }
    unsigned char bin[16];
    int v6 = strchr(addr, ':') != NULL;
    if (strlen(addr) >= sizeof l->addr || inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1 ||
        (v6 && buf[0] != '['))
        goto bad;
    uint64_t p;
    if (!set_u64(&p, port, 1, 65535, key, ctx))
        return 0;
    strcpy(l->addr, addr);
    snprintf(l->port, sizeof l->port, "%u", (unsigned)p);
    return 1;
bad:
    snprintf(ctx->err, sizeof ctx->err,
             "%s takes ADDR:PORT with a numeric address ([v6]:PORT for IPv6), not '%.*s'", key, (int)len, text);
    return 0;
}

/* imap/imaps/pop3/pop3s: a comma list, and the key may repeat. */
static int add_listeners(pn_listen *list, size_t *n, size_t max, const char *value, const char *key, parse_ctx *ctx)
{
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ",");
        size_t end = len;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end) {
            if (*n == max) {
                snprintf(ctx->err, sizeof ctx->err, "more than %zu %s address%s", max, key, max == 1 ? "" : "es");
                return 0;
            }
            if (!parse_listen(&list[*n], p, end, key, ctx))
                return 0;
            (*n)++;
        }
        if (!p[len])
            return 1;
        p += len + 1;
    }
}

static int set_bool(int *dst, const char *value, const char *key, parse_ctx *ctx)
{
    if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
        *dst = 1;
    else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
        *dst = 0;
    else {
        snprintf(ctx->err, sizeof ctx->err, "%s must be yes or no, not '%s'", key, value);
        return 0;
    }
    return 1;
}

static int set_uint(unsigned *dst, const char *value, unsigned min, unsigned max, const char *key, parse_ctx *ctx)
{
    uint64_t v;
    if (!set_u64(&v, value, min, max, key, ctx))
        return 0;
    *dst = (unsigned)v;
    return 1;
}

/* A DNS host name: letters, digits, '-' and '.', labels of 1..63 octets, as clients and
 * certificates name hosts (RFC 1123 2.1); a trailing dot is dropped. Not an address: an
 * IP literal is not what the autoconfig formats expect, nor what a certificate usually names. */
static int set_public_name(char *dst, size_t size, const char *value, const char *key, parse_ctx *ctx)
{
    size_t n = strlen(value);
    if (n == 0) { /* as `postern config --all` writes an unset one */
        dst[0] = '\0';
        return 1;
    }
    if (value[n - 1] == '.')
        n--;
    size_t label = 0;
    int alpha = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? value[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || value[i - 1] == '-')
                goto bad;
            label = 0;
            continue;
        }
        if (!(isalnum((unsigned char)c) || c == '-') || (label == 0 && c == '-'))
            goto bad;
        if (isalpha((unsigned char)c))
            alpha = 1;
        label++;
    }
    if (n == 0 || n >= size || n > 253 || !alpha)
        goto bad;
    memcpy(dst, value, n);
    dst[n] = '\0';
    return 1;
bad:
    snprintf(ctx->err, sizeof ctx->err, "%s must be a DNS host name (mail.example.org), not '%s'", key, value);
    return 0;
}

static int handle_gateway(parse_ctx *ctx, const char *key, const char *value)
{
    pn_gateway *g = &ctx->cfg->gateway;
    if (strcmp(key, "imap") == 0)
        return add_listeners(g->imap, &g->n_imap, PN_MAX_LISTEN, value, key, ctx);
    if (strcmp(key, "imaps") == 0)
        return add_listeners(g->imaps, &g->n_imaps, PN_MAX_LISTEN, value, key, ctx);
    if (strcmp(key, "pop3") == 0)
        return add_listeners(g->pop3, &g->n_pop3, PN_MAX_LISTEN, value, key, ctx);
    if (strcmp(key, "pop3s") == 0)
        return add_listeners(g->pop3s, &g->n_pop3s, PN_MAX_LISTEN, value, key, ctx);
    if (strcmp(key, "pop3_timeout") == 0) /* RFC 1939 3: the autologout timer is at least 10 minutes */
        return set_uint(&g->pop3_timeout, value, 600, 86400, key, ctx);
    if (strcmp(key, "retention_days") == 0) /* what CAPA EXPIRE announces: INN's expire.ctl */
        return set_uint(&g->retention_days, value, 1, 36500, key, ctx);
    if (strcmp(key, "article_cache") == 0) /* MiB */
        return set_uint(&g->article_cache_mb, value, 0, 1u << 24, key, ctx);
    if (strcmp(key, "plaintext_budget") == 0) /* MiB */
        return set_uint(&g->plaintext_budget_mb, value, 0, 1u << 20, key, ctx);
    if (strcmp(key, "site_id") == 0) /* names this gateway in users' replicated state */
        return set_uint(&g->site_id, value, 1, 65535, key, ctx);
    if (strcmp(key, "uid_claim_delay") == 0)
        return set_uint(&g->uid_claim_delay, value, 0, 3600, key, ctx);
    if (strcmp(key, "modseq_margin") == 0) /* how late a change may reach this site and still be reported */
        return set_uint(&g->modseq_margin, value, 0, 90 * 86400, key, ctx);
    if (strcmp(key, "state_save_interval") == 0) /* what a crash of the network process may lose */
        return set_uint(&g->state_save_interval, value, 1, 86400, key, ctx);
    if (strcmp(key, "tls_cert") == 0)
        return set_string(g->tls_cert, sizeof g->tls_cert, value, key, ctx);
    if (strcmp(key, "tls_key") == 0)
        return set_string(g->tls_key, sizeof g->tls_key, value, key, ctx);
    if (strcmp(key, "public_name") == 0)
        return set_public_name(g->public_name, sizeof g->public_name, value, key, ctx);
    if (strcmp(key, "allow_plaintext_auth") == 0)
        return set_bool(&g->allow_plaintext_auth, value, key, ctx);
    if (strcmp(key, "user") == 0)
        return set_string(g->user, sizeof g->user, value, key, ctx);
    if (strcmp(key, "vault_user") == 0)
        return set_string(g->vault_user, sizeof g->vault_user, value, key, ctx);
    if (strcmp(key, "kdf_pool_memory") == 0)
        return set_u64(&g->kdf_pool_memory, value, 1ULL << 20, 1ULL << 40, key, ctx);
    if (strcmp(key, "login_grace") == 0)
        return set_uint(&g->login_grace, value, 0, 3600, key, ctx);
    if (strcmp(key, "keyrecord_cache") == 0)
        return set_uint(&g->keyrecord_cache, value, 0, 3600, key, ctx);
    if (strcmp(key, "preauth_timeout") == 0)
        return set_uint(&g->preauth_timeout, value, 1, 3600, key, ctx);
    if (strcmp(key, "preauth_deadline") == 0)
        return set_uint(&g->preauth_deadline, value, 1, 3600, key, ctx);
    if (strcmp(key, "max_connections_per_ip") == 0)
        return set_uint(&g->max_connections_per_ip, value, 0, 1000000, key, ctx);
    if (strcmp(key, "idle_timeout") == 0) /* RFC 3501 5.4: the autologout timer is at least 30 minutes */
        return set_uint(&g->idle_timeout, value, 1800, 86400, key, ctx);
    if (strcmp(key, "max_connections") == 0)
        return set_uint(&g->max_connections, value, 1, 1000000, key, ctx);
    if (strcmp(key, "max_line") == 0) {
        uint64_t v;
        if (!set_u64(&v, value, 1024, 16ULL << 20, key, ctx))
            return 0;
        g->max_line = (size_t)v;
        return 1;
    }
    snprintf(ctx->err, sizeof ctx->err, "unknown setting '%s' in [gateway]", key);
    return 0;
}

static int handle_line(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx *ctx = user;
    pn_config *cfg = ctx->cfg;
    if (strncmp(section, "site ", 5) == 0)
        return handle_site(ctx, section + 5, key, value);
    if (!key)
        return 1;
    if (strcmp(section, "postern") == 0) {
        if (strcmp(key, "prefix") == 0)
            return set_string(cfg->prefix, sizeof cfg->prefix, value, key, ctx);
        if (strcmp(key, "authority_public") == 0)
            return set_string(ctx->cfg->authority_public_paths, sizeof ctx->cfg->authority_public_paths, value, key, ctx);
        if (strcmp(key, "authority_secret") == 0)
            return set_string(cfg->authority_secret_path, sizeof cfg->authority_secret_path, value, key, ctx);
        if (strcmp(key, "delivery_secret") == 0)
            return set_string(cfg->delivery_secret_path, sizeof cfg->delivery_secret_path, value, key, ctx);
        if (strcmp(key, "writer_key") == 0)
            return set_string(cfg->writer_key_path, sizeof cfg->writer_key_path, value, key, ctx);
        if (strcmp(key, "revoked_writers") == 0)
            return set_revoked_writers(ctx, value);
        if (strcmp(key, "state_dir") == 0)
            return set_string(cfg->state_dir, sizeof cfg->state_dir, value, key, ctx);
        if (strcmp(key, "kdf_opslimit") == 0)
            return set_u64(&cfg->kdf_opslimit, value, 1, 16, key, ctx);
        if (strcmp(key, "kdf_memlimit") == 0)
            return set_u64(&cfg->kdf_memlimit, value, 8192, 4ULL << 30, key, ctx);
        if (strcmp(key, "min_password") == 0) {
            uint64_t v;
            if (!set_u64(&v, value, 1, 1024, key, ctx))
                return 0;
            cfg->min_password = (unsigned)v;
            return 1;
        }
    } else if (strcmp(section, "deliver") == 0) {
        if (strcmp(key, "min_copies") == 0) {
            uint64_t v;
            if (!set_u64(&v, value, 1, PN_MAX_SITES, key, ctx))
                return 0;
            cfg->min_copies = (unsigned)v;
            return 1;
        }
        if (strcmp(key, "max_message_size") == 0)
            return set_u64(&cfg->max_message_size, value, 1024, 1ULL << 40, key, ctx);
        if (strcmp(key, "keyrecord_cache") == 0)
            return set_uint(&cfg->keyrecord_cache, value, 0, 3600, key, ctx);
        if (strcmp(key, "confirm_timeout") == 0)
            return set_uint(&cfg->confirm_timeout, value, 1, 600, key, ctx);
    } else if (strcmp(section, "gateway") == 0) {
        return handle_gateway(ctx, key, value);
    } else if (strcmp(section, "metrics") == 0) {
        if (strcmp(key, "listen") == 0) {
            cfg->n_metrics = 0; /* one address; a later line replaces it */
            return add_listeners(cfg->metrics, &cfg->n_metrics, 1, value, key, ctx);
        }
    } else if (strcmp(section, "repair") == 0) {
        if (strcmp(key, "interval") == 0) {
            if (!set_uint(&cfg->repair_interval, value, 0, 3600, key, ctx))
                return 0;
            if (cfg->repair_interval == 1) {
                snprintf(ctx->err, sizeof ctx->err, "interval = 1: use 0 (off) or at least 2 seconds");
                return 0;
            }
            return 1;
        }
    } else {
        snprintf(ctx->err, sizeof ctx->err, "unknown section [%s]", section);
        return 0;
    }
    snprintf(ctx->err, sizeof ctx->err, "unknown setting '%s' in [%s]", key, section);
    return 0;
}

/* inih stops at nothing and gives only the first error's line: every bad setting is listed,
 * with its own line, so an admin fixes them in one round */
static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx *ctx = user;
    ctx->err[0] = '\0';
    if (handle_line(user, section, key, value))
        return 1;
    int n = snprintf(ctx->errs + ctx->errs_len, sizeof ctx->errs - ctx->errs_len, "%s%s:%d: %s",
                     ctx->nerrs ? "; " : "", ctx->cfg->path, ctx->line, ctx->err[0] ? ctx->err : "invalid");
    if (n > 0 && (size_t)n < sizeof ctx->errs - ctx->errs_len - 32) /* room for "(and N more)" */
        ctx->errs_len += (size_t)n;
    else
        ctx->errs_left_out++;
    ctx->errs[ctx->errs_len] = '\0';
    ctx->nerrs++;
    return 1;
}

/* fgets for inih, counting lines (a line longer than the buffer arrives in pieces) */
static char *read_line(char *str, int num, void *stream)
{
    parse_ctx *ctx = stream;
    char *p = fgets(str, num, ctx->f);
    ctx->line = ctx->next_line;
    if (p && strchr(p, '\n'))
        ctx->next_line++;
    return p;
}

static int load_authorities(parse_ctx *ctx)
{
    pn_config *cfg = ctx->cfg;
    char list[sizeof cfg->authority_public_paths];
    strcpy(list, ctx->cfg->authority_public_paths);
    char *save = NULL;
    for (char *path = strtok_r(list, ",", &save); path; path = strtok_r(NULL, ",", &save)) {
        while (*path == ' ' || *path == '\t')
            path++;
        size_t len = strlen(path);
        while (len > 0 && (path[len - 1] == ' ' || path[len - 1] == '\t'))
            path[--len] = '\0';
        if (!len)
            continue;
        if (cfg->n_authorities == PN_MAX_AUTHORITIES) {
            snprintf(ctx->err, sizeof ctx->err, "more than %d authority_public files", PN_MAX_AUTHORITIES);
            return -1;
        }
        char line[256];
        if (pu_read_small_file(path, line, sizeof line) < 0) {
            snprintf(cfg->authority_error, sizeof cfg->authority_error,
                     "authority_public %s: %s (run `postern authority init` on the admin host)", path,
                     strerror(errno));
            continue;
        }
        if (pc_authority_pk_parse(line, cfg->authority_pk[cfg->n_authorities]) != PC_OK) {
            snprintf(ctx->err, sizeof ctx->err, "authority_public %s is not a postern authority public key", path);
            return -1;
        }
        cfg->n_authorities++;
    }
    return 0;
}

void pn_config_defaults(const char *path, pn_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    strcpy(cfg->prefix, PA_DEFAULT_PREFIX);
    strcpy(cfg->state_dir, "/var/lib/postern");
    /* libsodium's INTERACTIVE: 0.12 s and 64 MiB per derivation on a 2-core machine. */
    cfg->kdf_opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    cfg->kdf_memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    cfg->min_password = 10;
    cfg->min_copies = 1;
    cfg->max_message_size = 100ULL << 20;
    cfg->keyrecord_cache = 60;
    cfg->confirm_timeout = 5;
    cfg->repair_interval = 30;
    pn_gateway *g = &cfg->gateway;
    strcpy(g->user, "postern");
    strcpy(g->vault_user, "postern");
    g->kdf_pool_memory = 256ULL << 20;
    g->login_grace = 30;
    g->keyrecord_cache = 60;
    g->preauth_timeout = 60;
    g->preauth_deadline = 180;
    g->max_connections_per_ip = 100;
    g->idle_timeout = 1800;
    g->pop3_timeout = 600;
    g->retention_days = 30;
    g->article_cache_mb = 1024;
    g->plaintext_budget_mb = 256;
    g->state_save_interval = 60;
    g->site_id = 1;
    g->uid_claim_delay = 10;
    g->modseq_margin = 86400;
    g->max_connections = 10000;
    g->max_line = 65536;
}

int pn_config_load(const char *path, pn_config *cfg, char *err, size_t errlen)
{
    parse_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pn_config_defaults(path, cfg);
    ctx->cfg = cfg;
    const pn_gateway *g = &cfg->gateway;

    int rc = -1;
    if (!(ctx->f = fopen(path, "re"))) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    ctx->next_line = 1;
    int line = ini_parse_stream(read_line, ctx, handler, ctx);
    fclose(ctx->f);
    if (line == -2) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (line > 0) { /* the handler never fails: a line inih could not parse */
        snprintf(ctx->err, sizeof ctx->err, "syntax error (not [section], name = value or a ; comment)");
        int n = snprintf(ctx->errs + ctx->errs_len, sizeof ctx->errs - ctx->errs_len, "%s%s:%d: %s",
                         ctx->nerrs ? "; " : "", path, line, ctx->err);
        if (n > 0 && (size_t)n < sizeof ctx->errs - ctx->errs_len)
            ctx->errs_len += (size_t)n;
        ctx->nerrs++;
    }
    if (ctx->nerrs) {
        if (ctx->errs_left_out)
            snprintf(err, errlen, "%s (and %u more)", ctx->errs, ctx->errs_left_out);
        else
            snprintf(err, errlen, "%s", ctx->errs);
        goto out;
    }
    char why[160];
    if (pa_prefix_check(cfg->prefix, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: prefix: %s", path, why);
        goto out;
    }
    if (!cfg->authority_public_paths[0])
        snprintf(cfg->authority_error, sizeof cfg->authority_error, "%s: [postern] authority_public is not set",
                 path);
    if (load_authorities(ctx) != 0) {
        snprintf(err, errlen, "%s: %s", path, ctx->err);
        goto out;
    }
    for (size_t i = 0; i < cfg->n_sites; i++) {
        pn_site *s = &cfg->sites[i];
        if (!s->host[0]) {
            snprintf(err, errlen, "%s: [site %s] has no host", path, s->name);
            goto out;
        }
        if (ctx->password_files[i][0]) {
            if (!s->user[0]) {
                snprintf(err, errlen, "%s: [site %s] has a password_file but no user", path, s->name);
                goto out;
            }
            if (pu_read_small_file(ctx->password_files[i], s->password, sizeof s->password) < 0) {
                snprintf(err, errlen, "%s: [site %s] password_file %s: %s", path, s->name,
                         ctx->password_files[i], strerror(errno));
                goto out;
            }
        }
    }
    if (!g->tls_cert[0] != !g->tls_key[0]) {
        snprintf(err, errlen, "%s: [gateway] tls_cert and tls_key go together", path);
        goto out;
    }
    if ((g->n_imaps || g->n_pop3s) && !g->tls_cert[0]) {
        snprintf(err, errlen, "%s: [gateway] imaps and pop3s need tls_cert and tls_key", path);
        goto out;
    }
    if (cfg->min_copies > cfg->n_sites && cfg->n_sites > 0) {
        snprintf(err, errlen, "%s: min_copies is %u but only %zu [site] sections are configured", path,
                 cfg->min_copies, cfg->n_sites);
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(ctx, sizeof *ctx);
    free(ctx);
    if (rc != 0)
        pn_config_free(cfg);
    return rc;
}

void pn_config_free(pn_config *cfg)
{
    for (size_t i = 0; i < PN_MAX_SITES; i++)
        sodium_memzero(cfg->sites[i].password, sizeof cfg->sites[i].password);
}

const char *pn_config_default_path(void)
{
    const char *env = getenv("POSTERN_CONFIG");
    return env && *env ? env : DEFAULT_PATH;
}

uint8_t *pn_load_delivery_secret(const pn_config *cfg, char *err, size_t errlen)
{
    if (!cfg->delivery_secret_path[0]) {
        snprintf(err, errlen, "%s: [postern] delivery_secret is not set", cfg->path);
        return NULL;
    }
    char *hex = sodium_malloc(256);
    uint8_t *secret = sodium_malloc(PC_DELIVERY_SECRET_BYTES);
    size_t bin_len = 0;
    if (!hex || !secret) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char why[PATH_MAX * 2 + 128];
    long n = pu_read_secret_file(cfg->delivery_secret_path, hex, 256, why, sizeof why);
    if (n < 0) {
        snprintf(err, errlen, "delivery_secret %s", why);
        goto fail;
    }
    if (sodium_hex2bin(secret, PC_DELIVERY_SECRET_BYTES, hex, (size_t)n, NULL, &bin_len, NULL) != 0 ||
        bin_len != PC_DELIVERY_SECRET_BYTES) {
        snprintf(err, errlen, "delivery_secret %s must hold 64 hex digits", cfg->delivery_secret_path);
        goto fail;
    }
    sodium_free(hex);
    return secret;
fail:
    if (hex)
        sodium_free(hex);
    if (secret)
        sodium_free(secret);
    return NULL;
}

int pn_load_writer(const pn_config *cfg, uint8_t cert[PC_WRITER_CERT_BYTES], uint8_t sk[PC_WRITER_SK_BYTES],
                   char *warn, size_t warnlen, char *err, size_t errlen)
{
    if (warn && warnlen)
        warn[0] = 0;
    if (!cfg->writer_key_path[0]) {
        snprintf(err, errlen,
                 "%s: [postern] writer_key is not set: the mail this host posts must be signed (make one with "
                 "`postern authority writer NAME` on the admin host)",
                 cfg->path);
        return -1;
    }
    char *text = sodium_malloc(PC_WRITER_FILE_MAX + 64);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char why[PATH_MAX * 2 + 128];
    int rc = -1;
    long n = pu_read_secret_file(cfg->writer_key_path, text, PC_WRITER_FILE_MAX + 64, why, sizeof why);
    pc_writer_cert w;
    if (n < 0) {
        snprintf(err, errlen, "writer_key %s", why);
    } else if (pc_writer_parse(text, cert, sk) != PC_OK) {
        snprintf(err, errlen, "writer_key %s is not a postern writer key file (from `postern authority writer`)",
                 cfg->writer_key_path);
    } else if (pc_writer_cert_verify(cert, (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk, cfg->n_authorities,
                                     &w) != PC_OK) {
        snprintf(err, errlen, "writer_key %s: its certificate is not from the authority in authority_public%s%s",
                 cfg->writer_key_path, cfg->n_authorities ? "" : ": ", cfg->n_authorities ? "" : cfg->authority_error);
    } else {
        time_t now = time(NULL);
        if (pc_writer_allows(&w, (int64_t)now, (const char(*)[PC_WRITER_ID_TEXT])cfg->revoked_writers,
                             cfg->n_revoked_writers) != PC_OK) {
            snprintf(err, errlen, "writer_key %s (writer %s, id %s) is %s", cfg->writer_key_path, w.name, w.id,
                     (int64_t)now > w.not_after    ? "expired: issue a new one"
                     : (int64_t)now < w.not_before ? "not valid yet"
                                                   : "revoked (revoked_writers)");
        } else {
            if (warn && (int64_t)now + 14 * 86400 > w.not_after)
                snprintf(warn, warnlen, "writer_key %s (writer %s) expires in %lld days: issue a new one",
                         cfg->writer_key_path, w.name, (long long)((w.not_after - (int64_t)now) / 86400));
            rc = 0;
        }
    }
    if (rc != 0)
        sodium_memzero(sk, PC_WRITER_SK_BYTES);
    sodium_free(text);
    return rc;
}

pn_writer_key *pn_load_writer_key(const pn_config *cfg, char *warn, size_t warnlen, char *err, size_t errlen)
{
    pn_writer_key *k = sodium_malloc(sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (pn_load_writer(cfg, k->cert, k->sk, warn, warnlen, err, errlen) != 0) {
        sodium_free(k);
        return NULL;
    }
    return k;
}

_Static_assert(sizeof(((pn_delivery_keys *)0)->writer_cert) == PC_WRITER_CERT_BYTES &&
                   sizeof(((pn_delivery_keys *)0)->writer_sk) == PC_WRITER_SK_BYTES &&
                   sizeof(((pn_delivery_keys *)0)->secret) == PC_DELIVERY_SECRET_BYTES,
               "config.h spells the crypto sizes out");

pn_delivery_keys *pn_load_delivery_keys(const pn_config *cfg, char *err, size_t errlen)
{
    pn_delivery_keys *k = sodium_malloc(sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    uint8_t *secret = pn_load_delivery_secret(cfg, err, errlen);
    if (!secret || pn_load_writer(cfg, k->writer_cert, k->writer_sk, NULL, 0, err, errlen) != 0) {
        if (secret)
            sodium_free(secret);
        sodium_free(k);
        return NULL;
    }
    memcpy(k->secret, secret, sizeof k->secret);
    sodium_free(secret);
    return k;
}

uint8_t *pn_load_authority_secret(const pn_config *cfg, char *err, size_t errlen)
{
    if (!cfg->authority_secret_path[0]) {
        snprintf(err, errlen, "%s: [postern] authority_secret is not set (it is needed on the admin host only)",
                 cfg->path);
        return NULL;
    }
    char *line = sodium_malloc(256);
    uint8_t *sk = sodium_malloc(PC_AUTH_SK_BYTES);
    if (!line || !sk) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char why[PATH_MAX * 2 + 128];
    if (pu_read_secret_file(cfg->authority_secret_path, line, 256, why, sizeof why) < 0) {
        snprintf(err, errlen, "authority_secret %s", why);
        goto fail;
    }
    if (pc_authority_sk_parse(line, sk, NULL) != PC_OK) {
        snprintf(err, errlen, "authority_secret %s is not a postern authority secret key",
                 cfg->authority_secret_path);
        goto fail;
    }
    sodium_free(line);
    return sk;
fail:
    if (line)
        sodium_free(line);
    if (sk)
        sodium_free(sk);
    return NULL;
}

/* ---- writing it back (postern config) ---- */

typedef struct writer {
    FILE *to;
    int all;
    const char *section; /* printed before the first setting under it */
    int printed, any;
} writer;

static void w_section(writer *w, const char *name)
{
    w->section = name;
    w->printed = 0;
}

static void w_head(writer *w)
{
    if (!w->printed) {
        fprintf(w->to, "%s[%s]\n", w->any ? "\n" : "", w->section);
        w->printed = w->any = 1;
    }
}

static void w_str(writer *w, const char *key, const char *v, const char *def)
{
    if (w->all || strcmp(v, def) != 0) {
        w_head(w);
        fprintf(w->to, "%s = %s\n", key, v);
    }
}

static void w_u64(writer *w, const char *key, uint64_t v, uint64_t def)
{
    if (w->all || v != def) {
        w_head(w);
        fprintf(w->to, "%s = %llu\n", key, (unsigned long long)v);
    }
}

static void w_listen(writer *w, const char *key, const pn_listen *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        w_head(w);
        fprintf(w->to, strchr(l[i].addr, ':') ? "%s = [%s]:%s\n" : "%s = %s:%s\n", key, l[i].addr, l[i].port);
    }
}

void pn_config_write(const pn_config *cfg, int all, FILE *to)
{
    pn_config *d = calloc(1, sizeof *d);
    if (!d)
        return;
    pn_config_defaults(cfg->path, d);
    writer w = {.to = to, .all = all};
    w_section(&w, "postern");
    w_str(&w, "prefix", cfg->prefix, d->prefix);
    w_str(&w, "authority_public", cfg->authority_public_paths, d->authority_public_paths);
    w_str(&w, "authority_secret", cfg->authority_secret_path, d->authority_secret_path);
    w_str(&w, "delivery_secret", cfg->delivery_secret_path, d->delivery_secret_path);
    w_str(&w, "writer_key", cfg->writer_key_path, d->writer_key_path);
    w_str(&w, "revoked_writers", cfg->revoked_writers_text, d->revoked_writers_text);
    w_str(&w, "state_dir", cfg->state_dir, d->state_dir);
    w_u64(&w, "kdf_opslimit", cfg->kdf_opslimit, d->kdf_opslimit);
    w_u64(&w, "kdf_memlimit", cfg->kdf_memlimit, d->kdf_memlimit);
    w_u64(&w, "min_password", cfg->min_password, d->min_password);
    w_section(&w, "deliver");
    w_u64(&w, "min_copies", cfg->min_copies, d->min_copies);
    w_u64(&w, "confirm_timeout", cfg->confirm_timeout, d->confirm_timeout);
    w_u64(&w, "max_message_size", cfg->max_message_size, d->max_message_size);
    w_u64(&w, "keyrecord_cache", cfg->keyrecord_cache, d->keyrecord_cache);
    w_section(&w, "repair");
    w_u64(&w, "interval", cfg->repair_interval, d->repair_interval);
    static const char *const tls[] = {"none", "implicit", "starttls"};
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pn_site *s = &cfg->sites[i];
        char name[80];
        snprintf(name, sizeof name, "site %s", s->name);
        w_section(&w, name);
        w_head(&w); /* a site is there even with every default */
        w_str(&w, "host", s->host, "");
        w_str(&w, "port", s->port, "119");
        w_str(&w, "tls", tls[s->tls], "none");
        w_str(&w, "ca_file", s->ca_file, "");
        w_str(&w, "user", s->user, "");
        w_str(&w, "password_file", s->password_file, "");
        w_str(&w, "innconf", s->innconf, "");
        w_u64(&w, "connect_timeout", s->connect_timeout, 5);
    }
    const pn_gateway *g = &cfg->gateway, *dg = &d->gateway;
    w_section(&w, "gateway");
    w_listen(&w, "imap", g->imap, g->n_imap);
    w_listen(&w, "imaps", g->imaps, g->n_imaps);
    w_listen(&w, "pop3", g->pop3, g->n_pop3);
    w_listen(&w, "pop3s", g->pop3s, g->n_pop3s);
    w_u64(&w, "pop3_timeout", g->pop3_timeout, dg->pop3_timeout);
    w_u64(&w, "retention_days", g->retention_days, dg->retention_days);
    w_u64(&w, "article_cache", g->article_cache_mb, dg->article_cache_mb);
    w_u64(&w, "plaintext_budget", g->plaintext_budget_mb, dg->plaintext_budget_mb);
    w_u64(&w, "state_save_interval", g->state_save_interval, dg->state_save_interval);
    w_u64(&w, "site_id", g->site_id, dg->site_id);
    w_u64(&w, "uid_claim_delay", g->uid_claim_delay, dg->uid_claim_delay);
    w_u64(&w, "modseq_margin", g->modseq_margin, dg->modseq_margin);
    w_str(&w, "tls_cert", g->tls_cert, dg->tls_cert);
    w_str(&w, "tls_key", g->tls_key, dg->tls_key);
    w_str(&w, "public_name", g->public_name, dg->public_name);
    w_str(&w, "allow_plaintext_auth", g->allow_plaintext_auth ? "yes" : "no", dg->allow_plaintext_auth ? "yes" : "no");
    w_str(&w, "user", g->user, dg->user);
    w_str(&w, "vault_user", g->vault_user, dg->vault_user);
    w_u64(&w, "kdf_pool_memory", g->kdf_pool_memory, dg->kdf_pool_memory);
    w_u64(&w, "login_grace", g->login_grace, dg->login_grace);
    w_u64(&w, "keyrecord_cache", g->keyrecord_cache, dg->keyrecord_cache);
    w_u64(&w, "preauth_timeout", g->preauth_timeout, dg->preauth_timeout);
    w_u64(&w, "preauth_deadline", g->preauth_deadline, dg->preauth_deadline);
    w_u64(&w, "idle_timeout", g->idle_timeout, dg->idle_timeout);
    w_u64(&w, "max_connections", g->max_connections, dg->max_connections);
    w_u64(&w, "max_connections_per_ip", g->max_connections_per_ip, dg->max_connections_per_ip);
    w_u64(&w, "max_line", g->max_line, dg->max_line);
    w_section(&w, "metrics");
    w_listen(&w, "listen", cfg->metrics, cfg->n_metrics);
    free(d);
}
