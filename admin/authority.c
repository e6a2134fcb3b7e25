/* postern authority init: the organisation's Ed25519 key that signs every key record. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "admin/admin.h"
#include "crypto/crypto.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern authority init [--force]\n"
    "Creates the authority key pair at the paths named by authority_secret and\n"
    "authority_public (the first file) in the configuration. --force replaces an\n"
    "existing pair: every key record signed by the old one stops verifying.";

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

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
out:
    if (sk)
        sodium_free(sk);
    if (line)
        sodium_free(line);
    if (rc == PX_SOFTWARE)
        pu_err("could not create the authority key");
    return rc;
}

int adm_cmd_authority(const pn_config *cfg, int argc, char **argv)
{
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
