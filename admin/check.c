/* postern check: everything an admin should know before starting (or while running) a
 * site, one verdict per item, as `nginx -t` or `postfix check` do: the configuration, the
 * modes of every secret, the authority key, each news site (reachable, logged in, its postern
 * groups open for posting), the INN configuration of each site administered here (inn.conf,
 * expire.ctl) and the gateway's certificate (the key matches, the public name is in it, how
 * long it is valid). Exit 0 when nothing failed, 1 otherwise. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "autoconfig/autoconfig.h"
#include "store/store.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern check\n"
    "Checks the configuration, the modes of the secrets it names, the authority key, every\n"
    "[site] (reachable, logged in, the postern groups open for posting), the inn.conf and\n"
    "expire.ctl of every [site] with innconf, and the gateway's certificate (key, public_name,\n"
    "expiry). One line per item: ok, warn or FAIL.\n"
    "Exit 0 when nothing failed, 1 otherwise.";

#define CERT_WARN_DAYS 14

typedef struct verdicts {
    unsigned failed, warned;
} verdicts;

static void say(verdicts *v, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(verdicts *v, const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%-5s ", level);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    if (strcmp(level, "FAIL") == 0)
        v->failed++;
    else if (strcmp(level, "warn") == 0)
        v->warned++;
}

static void check_secret(verdicts *v, const char *key, const char *path)
{
    if (!path[0])
        return;
    char why[PATH_MAX * 2 + 128];
    if (pu_secret_path_private(path, why, sizeof why) != 0)
        say(v, "FAIL", "secret %s: %s", key, why);
    else
        say(v, "ok", "secret %s: %s (mode 0600 or stricter)", key, path);
}

static void check_secrets(verdicts *v, const pn_config *cfg)
{
    check_secret(v, "authority_secret", cfg->authority_secret_path);
    check_secret(v, "delivery_secret", cfg->delivery_secret_path);
    check_secret(v, "writer_key", cfg->writer_key_path);
    check_secret(v, "[gateway] tls_key", cfg->gateway.tls_key);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        char key[64 + 32];
        snprintf(key, sizeof key, "[site %s] password_file", cfg->sites[i].name);
        check_secret(v, key, cfg->sites[i].password_file);
    }
}

static void check_authority(verdicts *v, const pn_config *cfg)
{
    if (!cfg->n_authorities) {
        say(v, "FAIL", "authority: %s", cfg->authority_error);
        return;
    }
    say(v, "ok", "authority: %zu public key%s (%s)", cfg->n_authorities, cfg->n_authorities == 1 ? "" : "s",
        cfg->authority_public_paths);
    if (!cfg->authority_secret_path[0])
        return; /* not the admin host: nothing signs here */
    char err[512];
    uint8_t *sk = pn_load_authority_secret(cfg, err, sizeof err);
    if (!sk) {
        say(v, "FAIL", "authority_secret: %s", err);
        return;
    }
    /* an Ed25519 secret key holds its public key in its second half */
    size_t match = cfg->n_authorities;
    for (size_t i = 0; i < cfg->n_authorities; i++)
        if (sodium_memcmp(sk + 32, cfg->authority_pk[i], 32) == 0)
            match = i;
    sodium_free(sk);
    if (match == cfg->n_authorities)
        say(v, "FAIL", "authority_secret %s is not the secret of any authority_public key: users added here "
            "would get key records no site accepts", cfg->authority_secret_path);
    else
        say(v, "ok", "authority_secret matches authority_public key %zu", match + 1);
}

/* The key this host signs the mail it posts with (delivery, APPEND): certified, valid, not
 * revoked; its id is what revoked_writers would name. */
static void check_writer(verdicts *v, const pn_config *cfg)
{
    if (!cfg->writer_key_path[0]) {
        if (cfg->delivery_secret_path[0])
            say(v, "FAIL", "writer_key is not set: deliver cannot sign what it posts, and gateways show no "
                "unsigned mail (make one with `postern authority writer NAME` on the admin host)");
        else
            say(v, "warn", "writer_key is not set: a gateway here answers IMAP APPEND with NO");
        return;
    }
    uint8_t cert[PC_WRITER_CERT_BYTES], *sk = sodium_malloc(PC_WRITER_SK_BYTES);
    char warn[512], err[PATH_MAX + 512];
    if (!sk) {
        say(v, "FAIL", "writer_key: out of memory");
        return;
    }
    int rc = pn_load_writer(cfg, cert, sk, warn, sizeof warn, err, sizeof err);
    sodium_free(sk);
    if (rc != 0) {
        say(v, "FAIL", "%s", err);
        return;
    }
    pc_writer_cert w;
    (void)pc_writer_cert_verify(cert, (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk, cfg->n_authorities, &w);
    char until[32];
    struct tm tm;
    strftime(until, sizeof until, "%Y-%m-%d", gmtime_r(&(time_t){(time_t)w.not_after}, &tm));
    say(v, warn[0] ? "warn" : "ok", "writer_key %s: writer %s (id %s, %s), valid until %s UTC%s%s",
        cfg->writer_key_path, w.name, w.id, w.role == PC_ROLE_GATEWAY ? "gateway" : "delivery host", until,
        warn[0] ? ": " : "", warn[0] ? "issue a new one soon" : "");
}

typedef struct group_count {
    const char *prefix;
    size_t groups, closed;
    char closed_name[256];
} group_count;

/* "group high low flag" */
static int count_group(void *arg, const char *line, size_t len)
{
    group_count *g = arg;
    const char *sp = memchr(line, ' ', len);
    if (!sp)
        return 0;
    g->groups++;
    char flag = line[len - 1];
    if (flag != 'y') { /* 'y': local posting allowed; n, m, x, j, = refuse a gateway's post */
        if (!g->closed++)
            snprintf(g->closed_name, sizeof g->closed_name, "%.*s (flag %c)", (int)(sp - line), line, flag);
    }
    return 0;
}

static void check_sites(verdicts *v, const pn_config *cfg)
{
    if (!cfg->n_sites) {
        say(v, "FAIL", "sites: no [site] section: postern keeps mail on news servers");
        return;
    }
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites) {
        say(v, "FAIL", "sites: out of memory");
        return;
    }
    char wildmat[sizeof cfg->prefix + 8];
    snprintf(wildmat, sizeof wildmat, "%s.*", cfg->prefix);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pn_site *s = &cfg->sites[i];
        char err[512];
        if (ps_pool_connect(sites, i, err, sizeof err) != PS_OK) {
            say(v, "FAIL", "site %s (%s:%s): %s", s->name, s->host, s->port, err);
            continue;
        }
        group_count g = {.prefix = cfg->prefix};
        int no_counts = 0;
        if (ps_list_active(sites, i, wildmat, count_group, NULL, &g, &no_counts, err, sizeof err) != PS_OK) {
            say(v, "FAIL", "site %s (%s:%s): LIST ACTIVE %s: %s", s->name, s->host, s->port, wildmat, err);
            continue;
        }
        if (g.closed)
            say(v, "FAIL", "site %s (%s:%s): %zu of %zu %s groups refuse local posts, e.g. %s: set them to 'y' "
                "(ctlinnd changegroup GROUP y)", s->name, s->host, s->port, g.closed, g.groups, cfg->prefix,
                g.closed_name);
        else
            say(v, "ok", "site %s (%s:%s): reachable and logged in, %zu %s groups", s->name, s->host, s->port,
                g.groups, cfg->prefix);
    }
    ps_pool_free(sites);
}

static void check_certificate(verdicts *v, const pn_config *cfg)
{
    const pn_gateway *g = &cfg->gateway;
    if (!g->tls_cert[0]) {
        if (g->n_imaps || g->n_pop3s || ((g->n_imap || g->n_pop3) && !g->allow_plaintext_auth))
            say(v, "FAIL", "[gateway] tls_cert is not set, but the listeners need TLS");
        return;
    }
    FILE *f = fopen(g->tls_cert, "re");
    X509 *leaf = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!leaf) {
        say(v, "FAIL", "certificate %s: %s", g->tls_cert, f ? "no PEM certificate in it" : strerror(errno));
        return;
    }
    f = g->tls_key[0] ? fopen(g->tls_key, "re") : NULL;
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!key)
        say(v, "FAIL", "tls_key %s: no PEM private key readable in it", g->tls_key[0] ? g->tls_key : "(not set)");
    else if (X509_check_private_key(leaf, key) != 1)
        say(v, "FAIL", "tls_key %s does not belong to the certificate in %s", g->tls_key, g->tls_cert);
    EVP_PKEY_free(key);

    int days = 0, secs = 0;
    const ASN1_TIME *not_after = X509_get0_notAfter(leaf), *not_before = X509_get0_notBefore(leaf);
    char until[64] = "?";
    struct tm tm;
    if (ASN1_TIME_to_tm(not_after, &tm) == 1)
        strftime(until, sizeof until, "%Y-%m-%d %H:%M UTC", &tm);
    if (X509_cmp_current_time(not_before) > 0)
        say(v, "FAIL", "certificate %s: not valid yet", g->tls_cert);
    else if (!ASN1_TIME_diff(&days, &secs, NULL, not_after) || days < 0 || secs < 0)
        say(v, "FAIL", "certificate %s: expired on %s", g->tls_cert, until);
    else if (days < CERT_WARN_DAYS)
        say(v, "warn", "certificate %s: expires in %d days (%s)", g->tls_cert, days, until);
    else
        say(v, "ok", "certificate %s: valid until %s (%d days)", g->tls_cert, until, days);
    X509_free(leaf);

    if (g->public_name[0]) {
        char err[512];
        int named = ac_cert_names(g->tls_cert, g->public_name, err, sizeof err);
        if (named == 1)
            say(v, "ok", "certificate names public_name %s", g->public_name);
        else
            say(v, "FAIL", "certificate %s does not name public_name %s: clients would refuse it%s%s", g->tls_cert,
                g->public_name, named < 0 ? ": " : "", named < 0 ? err : "");
    }
}

static void check_state_dir(verdicts *v, const pn_config *cfg)
{
    struct stat st;
    if (stat(cfg->state_dir, &st) != 0)
        say(v, "FAIL", "state_dir %s: %s", cfg->state_dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        say(v, "FAIL", "state_dir %s: not a directory", cfg->state_dir);
    else if (st.st_mode & S_IWOTH)
        say(v, "FAIL", "state_dir %s: writable by others (mode %04o)", cfg->state_dir, (unsigned)(st.st_mode & 07777));
    else
        say(v, "ok", "state_dir %s", cfg->state_dir);
}

/* The INN side of a site administered here (innconf set): what postern relies on that INN's
 * defaults or an old configuration get wrong. */
#define INN_MIN_ARTSIZE 268435456ULL /* 256 MiB on the wire: a 100 MB mail is ~140 MB of base64 */

/* uwildmat: a comma-separated list of patterns, '!' (or '@') negating; the last one that
 * matches decides. */
static int wildmat_list(const char *list, const char *name)
{
    int match = 0;
    char pat[256];
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        int neg = *p == '!' || *p == '@';
        if (n - (size_t)neg < sizeof pat) {
            memcpy(pat, p + neg, n - (size_t)neg);
            pat[n - (size_t)neg] = '\0';
            if (fnmatch(pat, name, 0) == 0)
                match = !neg;
        }
        p += n + (p[n] == ',');
    }
    return match;
}

/* The last line of expire.ctl whose pattern matches group and whose flag covers unmoderated
 * groups (postern's are 'y'): its line number (0: none), purge field and whole line. */
typedef struct expire_rule {
    unsigned lineno;
    char purge[32], line[1024];
} expire_rule;

static void expire_rule_for(FILE *f, const char *group, expire_rule *r)
{
    memset(r, 0, sizeof *r);
    rewind(f);
    char line[1024];
    for (unsigned no = 1; fgets(line, sizeof line, f); no++) {
        line[strcspn(line, "\r\n")] = '\0';
        char copy[sizeof line], *fld[5], *save = NULL;
        snprintf(copy, sizeof copy, "%s", line);
        size_t n = 0;
        if (copy[0] == '#' || copy[0] == '/') /* comments, /remember/ */
            continue;
        for (char *t = strtok_r(copy, ":", &save); t && n < 5; t = strtok_r(NULL, ":", &save))
            fld[n++] = t;
        if (n < 5 || (!strchr(fld[1], 'A') && !strchr(fld[1], 'U')) || !wildmat_list(fld[0], group))
            continue;
        r->lineno = no;
        snprintf(r->purge, sizeof r->purge, "%s", fld[4]);
        snprintf(r->line, sizeof r->line, "%s", line);
    }
}

/* Whether one of the line's comma-separated patterns is exactly pat. */
static int expire_names(const char *line, const char *pat)
{
    size_t plen = strlen(pat), end = strcspn(line, ":");
    for (const char *p = line; p < line + end;) {
        size_t n = strcspn(p, ",:");
        if (n == plen && memcmp(p, pat, n) == 0)
            return 1;
        p += n + 1;
    }
    return 0;
}

/* maxartsize or localmaxartsize: 0 (no limit) or room for a large mail; 1 when it fits. */
static int check_artsize(verdicts *v, const pn_site *s, const char *key)
{
    char val[64];
    uint64_t n = 1000000; /* INN's default */
    if (adm_inn_conf_get(s->innconf, key, val, sizeof val) == 1 && pu_parse_u64(val, strlen(val), &n) != 0) {
        say(v, "warn", "site %s: %s '%s' in %s is not a number", s->name, key, val, s->innconf);
        return 0;
    }
    if (n == 0 || n >= INN_MIN_ARTSIZE)
        return 1;
    say(v, "warn", "site %s: %s %" PRIu64 "%s in %s: mail larger than about %" PRIu64 " bytes is refused "
        "(set it to 0 or at least %llu, or run postern inn-setup)", s->name, key, n, val[0] ? "" : " (INN's default)",
        s->innconf, n * 3 / 4, INN_MIN_ARTSIZE);
    return 0;
}

static void check_inn(verdicts *v, const pn_config *cfg)
{
    /* Sample groups of a user alice@example.org: "<prefix>.org.example.alice" and its key group. */
    char mail[sizeof cfg->prefix + 32], key[sizeof mail + 16], mail_pat[sizeof cfg->prefix + 8],
        key_pat[sizeof mail_pat + 16];
    const char *dot = cfg->prefix[0] ? "." : "";
    snprintf(mail, sizeof mail, "%s%sorg.example.alice", cfg->prefix, dot);
    snprintf(key, sizeof key, "%s.encrypt", mail);
    snprintf(mail_pat, sizeof mail_pat, "%s%s*", cfg->prefix, dot);
    snprintf(key_pat, sizeof key_pat, "%s.encrypt", mail_pat);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pn_site *s = &cfg->sites[i];
        if (!s->innconf[0])
            continue; /* administered elsewhere: its admin runs check there */
        char val[PATH_MAX];
        if (adm_inn_conf_get(s->innconf, "artcutoff", val, sizeof val) < 0) {
            say(v, "FAIL", "site %s: innconf %s: %s", s->name, s->innconf, strerror(errno));
            continue;
        }
        int good = 1;
        /* repair copies mail up to 30 days old to the sites that lack it; INN refuses an
         * article whose Date: is older than artcutoff days (default 10) */
        uint64_t cutoff = 10;
        if (val[0] && pu_parse_u64(val, strlen(val), &cutoff) != 0)
            cutoff = 1; /* not a number: not 0 either */
        if (cutoff != 0) {
            say(v, "FAIL", "site %s: artcutoff %s in %s: INN refuses mail older than that many days, so repair cannot copy "
                "it here: set artcutoff: 0 in %s, or run postern inn-setup", s->name, val[0] ? val : "10 (INN's default)",
                s->innconf, s->innconf);
            good = 0;
        }
        good &= check_artsize(v, s, "maxartsize");
        good &= check_artsize(v, s, "localmaxartsize");

        char etc[PATH_MAX], ctl[PATH_MAX + 16];
        if (adm_inn_conf_get(s->innconf, "pathetc", etc, sizeof etc) != 1 || !etc[0]) {
            snprintf(etc, sizeof etc, "%s", s->innconf); /* INN's default: inn.conf's directory */
            char *slash = strrchr(etc, '/');
            if (!slash)
                snprintf(etc, sizeof etc, ".");
            else
                slash[slash == etc] = '\0';
        }
        snprintf(ctl, sizeof ctl, "%s/expire.ctl", etc);
        FILE *f = fopen(ctl, "re");
        if (!f) {
            say(v, "FAIL", "site %s: %s: %s", s->name, ctl, strerror(errno));
            continue;
        }
        expire_rule kr, mr;
        expire_rule_for(f, key, &kr);
        expire_rule_for(f, mail, &mr);
        fclose(f);
        /* key records live in the key groups: expired, the users they publish vanish */
        if (strcmp(kr.purge, "never") != 0) {
            if (kr.lineno && expire_names(kr.line, key_pat))
                say(v, "FAIL", "site %s: %s line %u (%s) expires the key groups: key records would expire and "
                    "users vanish: make it %s:A:never:never:never", s->name, ctl, kr.lineno, kr.line, key_pat);
            else if (kr.lineno)
                say(v, "FAIL", "site %s: %s: the key groups follow line %u (%s), not a line %s:A:never:never:never "
                    "below it (the last matching line wins): key records would expire and users vanish", s->name,
                    ctl, kr.lineno, kr.line, key_pat);
            else
                say(v, "FAIL", "site %s: %s has no line %s:A:never:never:never: key records would expire and "
                    "users vanish", s->name, ctl, key_pat);
            good = 0;
        }
        if (!mr.lineno || !expire_names(mr.line, mail_pat)) {
            say(v, "warn", "site %s: %s has no line for %s: mail follows %s%s", s->name, ctl, mail_pat,
                mr.lineno ? "the general rule " : "no rule and is never deleted", mr.line);
            good = 0;
        } else if (strcmp(mr.purge, "never") == 0) {
            say(v, "warn", "site %s: %s line %u (%s) never deletes mail", s->name, ctl, mr.lineno, mr.line);
            good = 0;
        }
        if (good) {
            char arts[64];
            if (adm_inn_conf_get(s->innconf, "maxartsize", arts, sizeof arts) != 1)
                snprintf(arts, sizeof arts, "1000000");
            say(v, "ok", "site %s: inn.conf and expire.ctl fit postern (artcutoff 0, maxartsize %s, key groups never "
                "expire)", s->name, arts);
        }
    }
}

int adm_check_unloadable(const char *path, const char *err)
{
    printf("FAIL  config %s: %s\n1 problem: the other checks need a configuration that loads.\n", path, err);
    fflush(stdout);
    return 1;
}

int adm_cmd_check(const pn_config *cfg, int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr, "%s\n", usage);
        return help ? PX_OK : PX_USAGE;
    }
    verdicts v = {0};
    say(&v, "ok", "config %s: loads (%zu site%s)", cfg->path, cfg->n_sites, cfg->n_sites == 1 ? "" : "s");
    check_secrets(&v, cfg);
    check_state_dir(&v, cfg);
    check_authority(&v, cfg);
    check_writer(&v, cfg);
    check_sites(&v, cfg);
    check_inn(&v, cfg);
    check_certificate(&v, cfg);
    if (v.failed)
        printf("%u problem%s, %u warning%s.\n", v.failed, v.failed == 1 ? "" : "s", v.warned, v.warned == 1 ? "" : "s");
    else
        printf("all good%s.\n", v.warned ? " but for the warnings" : "");
    return fflush(stdout) == 0 && !v.failed ? PX_OK : 1;
}
