/* postern authority init: the organisation's Ed25519 key that signs every key record;
 * postern authority writer: a certified signing key for a host that posts mail. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "admin/admin.h"
#include "crypto/crypto.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern authority init [--force]\n"
    "       postern authority writer NAME [--gateway] [--days N] [--out FILE]\n"
    "init creates the authority key pair at the paths named by authority_secret and\n"
    "authority_public (the first file) in the configuration. --force replaces an\n"
    "existing pair: every key record signed by the old one stops verifying. When\n"
    "writer_key names a file that is not there (or with --force), init also makes\n"
    "this host's writer key, of a gateway's kind.\n"
    "writer makes a signing key for one host that posts mail, certified by the\n"
    "authority (run it on the admin host): a delivery host's, which signs only\n"
    "arrival times inside its validity, or with --gateway a gateway's (IMAP APPEND\n"
    "files mail with the client's date). Gateways show only mail a writer signed.\n"
    "NAME (1-32 visible ASCII characters) names the host in logs. The key is valid\n"
    "for N days (default 400) and written to FILE (default: writer_key of the\n"
    "configuration), mode 0600; copy it to the host's writer_key path. It prints the\n"
    "writer's id: list it in revoked_writers to revoke the key.";

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int issue_writer(const uint8_t *ask, const char *name, int role, long days, const char *out);

static int init(const pn_config *cfg, int force)
{
    if (!cfg->authority_secret_path[0]) {
        pu_err("%s: set [postern] authority_secret to where the secret key should go", cfg->path);
        return PX_CONFIG;
    }
    const char *pub = cfg->authority_public_paths[0] ? cfg->authority_public_paths : NULL;
    char pub_path[PATH_MAX];
    if (!pub) {
        pu_err("%s: set [postern] authority_public to where the public key should go", cfg->path);
        return PX_CONFIG;
    }
    /* The first file of the comma-separated list is ours to write. */
    snprintf(pub_path, sizeof pub_path, "%.*s", (int)strcspn(pub, ","), pub);
    if (!force && (exists(cfg->authority_secret_path) || exists(pub_path))) {
        pu_err("an authority key already exists (%s, %s); --force replaces it and invalidates every "
               "key record signed with it",
               cfg->authority_secret_path, pub_path);
        return PX_CANTCREAT;
    }
    uint8_t pk[PC_AUTH_PK_BYTES];
    uint8_t *sk = sodium_malloc(PC_AUTH_SK_BYTES);
    char *line = sodium_malloc(256);
    int rc = PX_SOFTWARE;
    if (!sk || !line)
        goto out;
    if (pc_authority_generate(pk, sk) != PC_OK || pc_authority_sk_format(sk, line, 256) != PC_OK)
        goto out;
    size_t n = strlen(line);
    line[n++] = '\n';
    if (pu_write_file_atomic(cfg->authority_secret_path, line, n, 0600) != 0) {
        pu_err("writing %s: %s", cfg->authority_secret_path, strerror(errno));
        rc = PX_CANTCREAT;
        goto out;
    }
    char publine[128];
    if (pc_authority_pk_format(pk, publine, sizeof publine - 1) != PC_OK)
        goto out;
    n = strlen(publine);
    publine[n++] = '\n';
    if (pu_write_file_atomic(pub_path, publine, n, 0644) != 0) {
        pu_err("writing %s: %s", pub_path, strerror(errno));
        rc = PX_CANTCREAT;
        goto out;
    }
    publine[n - 1] = '\0';
    printf("authority key created\n  secret: %s (keep it on the admin host only)\n  public: %s\n  %s\n",
           cfg->authority_secret_path, pub_path, publine);
    rc = PX_OK;
    /* this host's own writer key, when the config names one that is not there yet (or was
     * certified by the key just replaced): a one-host setup signs its mail at once. A
     * gateway's kind, since such a host often serves IMAP too (APPEND seals the client's
     * dates, which a delivery host's key may not sign) */
    if (cfg->writer_key_path[0] && (force || !exists(cfg->writer_key_path))) {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        size_t k = 0;
        for (size_t i = 0; host[i] && k < PC_WRITER_NAME_MAX; i++)
            if ((unsigned char)host[i] > 0x20 && (unsigned char)host[i] < 0x7f)
                host[k++] = host[i];
        host[k] = 0;
        rc = issue_writer(sk, k ? host : "postern", PC_ROLE_GATEWAY, 400, cfg->writer_key_path);
    }
out:
    if (sk)
        sodium_free(sk);
    if (line)
        sodium_free(line);
    if (rc == PX_SOFTWARE)
        pu_err("could not create the authority key");
    return rc;
}

/* Issues a writer key with the authority secret ask and writes it to out; prints what it did. */
static int issue_writer(const uint8_t *ask, const char *name, int role, long days, const char *out)
{
    uint8_t cert[PC_WRITER_CERT_BYTES];
    uint8_t *sk = sodium_malloc(PC_WRITER_SK_BYTES);
    char *text = sodium_malloc(PC_WRITER_FILE_MAX);
    int rc = PX_SOFTWARE;
    time_t now = time(NULL);
    /* a little before now: a host whose clock is behind the admin's can sign at once */
    int64_t from = (int64_t)now - 3600, until = (int64_t)now + (int64_t)days * 86400;
    if (!sk || !text)
        goto done;
    int st = pc_writer_issue(ask, name, role, from, until, cert, sk);
    if (st == PC_EINVAL) {
        pu_err("'%s' is not a writer name: 1 to %d visible ASCII characters, no spaces", name, PC_WRITER_NAME_MAX);
        rc = PX_DATAERR;
        goto done;
    }
    if (st != PC_OK || pc_writer_format(cert, sk, text, PC_WRITER_FILE_MAX) != PC_OK)
        goto done;
    if (pu_write_file_atomic(out, text, strlen(text), 0600) != 0) {
        pu_err("writing %s: %s", out, strerror(errno));
        rc = PX_CANTCREAT;
        goto done;
    }
    pc_writer_cert w;
    uint8_t apk[PC_AUTH_PK_BYTES];
    crypto_sign_ed25519_sk_to_pk(apk, ask);
    if (pc_writer_cert_verify(cert, (const uint8_t(*)[PC_AUTH_PK_BYTES])apk, 1, &w) != PC_OK)
        goto done;
    char a[32], b[32];
    struct tm tm;
    strftime(a, sizeof a, "%Y-%m-%d", gmtime_r(&(time_t){(time_t)from}, &tm));
    strftime(b, sizeof b, "%Y-%m-%d", gmtime_r(&(time_t){(time_t)until}, &tm));
    printf("writer key for %s (%s) written to %s\n  id: %s (list it in revoked_writers to revoke it)\n"
           "  valid: %s to %s UTC; issue a new one before then\n",
           w.name, role == PC_ROLE_GATEWAY ? "gateway" : "delivery host", out, w.id, a, b);
    rc = PX_OK;
done:
    if (sk)
        sodium_free(sk);
    if (text)
        sodium_free(text);
    if (rc == PX_SOFTWARE)
        pu_err("could not make the writer key");
    return rc;
}

static int writer(const pn_config *cfg, int argc, char **argv)
{
    const char *name = NULL, *out = cfg->writer_key_path[0] ? cfg->writer_key_path : NULL;
    int role = PC_ROLE_DELIVERY;
    long days = 400;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--gateway") == 0) {
            role = PC_ROLE_GATEWAY;
        } else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
            char *end;
            days = strtol(argv[++i], &end, 10);
            if (*end || days < 1 || days > 3660) {
                pu_err("--days must be a whole number from 1 to 3660, not '%s'", argv[i]);
                return PX_USAGE;
            }
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    if (!name) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    if (!out) {
        pu_err("where should the key go? give --out FILE (or set [postern] writer_key)");
        return PX_USAGE;
    }
    char err[512];
    uint8_t *ask = pn_load_authority_secret(cfg, err, sizeof err);
    if (!ask) {
        pu_err("%s", err);
        return PX_CONFIG;
    }
    int rc = issue_writer(ask, name, role, days, out);
    sodium_free(ask);
    return rc;
}

int adm_cmd_authority(const pn_config *cfg, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "writer") == 0)
        return writer(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        int force = argc == 3 && strcmp(argv[2], "--force") == 0;
        if (argc > 3 || (argc == 3 && !force)) {
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
        return init(cfg, force);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        puts(usage);
        return PX_OK;
    }
    fprintf(stderr, "%s\n", usage);
    return PX_USAGE;
}
