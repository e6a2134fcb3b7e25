/* postern: one program, git-style subcommands, one explicit command table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "admin/admin.h"
#include "autoconfig/autoconfig.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "deliver/deliver.h"
#include "gateway/gateway.h"
#include "store/store.h"
#include "util/util.h"

typedef int (*command_fn)(const pn_config *cfg, int argc, char **argv);

static const struct command {
    const char *name;
    command_fn run;
    const char *summary;
} commands[] = {
    {"authority", adm_cmd_authority, "init: the organisation key that signs key records; writer: a host's key that signs its mail"},
    {"user", adm_cmd_user, "add|passwd|del|list|import|resign: provision users"},
    {"deliver", pd_cmd_deliver, "--to ADDRESS < message: encrypt and post one message (MTA hook)"},
    {"watch-maildir", pd_cmd_watch_maildir, "MAILDIR=ADDRESS...: post messages appearing in Maildirs"},
    {"lmtp", pd_cmd_lmtp, "--listen unix:PATH|inet:ADDR:PORT | --stdio: LMTP delivery service"},
    {"verify-recipient", pd_cmd_verify_recipient, "ADDRESS: exit 0 known, 67 unknown, 75 try later (MTA recipient check)"},
    {"mailbox", adm_cmd_mailbox, "ADDRESS [--show N]: list or print a user's decrypted mail"},
    {"repair", adm_cmd_repair, "[--dry-run] [--user ADDRESS]: copy messages a site lacks from one that has them"},
    {"config", adm_cmd_config, "[-a]: the settings that differ from the defaults (postconf -n)"},
    {"status", adm_cmd_status, "which site the gateway reads, and what each site is missing"},
    {"check", adm_cmd_check, "config, secrets, authority key, sites, certificate: a verdict per item"},
    {"inn-setup", adm_cmd_inn_setup, "[--peer NAME=HOST[:PORT]]... [--remove]: Debian's INN (/etc/news) as a postern site"},
    {"autoconfig", ac_cmd_autoconfig, "--domain D [--format mozilla|autodiscover|srv]: client setup files"},
    {"serve", gw_cmd_serve, "[--verbose] [--check]: run the IMAP gateway ([gateway] in the config)"},
    {"who", gw_cmd_who, "[ADDRESS]: the running gateway's sessions (user, protocol, client, since)"},
    {"kick", gw_cmd_kick, "ADDRESS | --id ID: end a user's sessions in the running gateway"},
};

static void usage(FILE *to)
{
    fprintf(to, "usage: postern [-c CONFIG] [-q] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(to, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(to, "\nCONFIG defaults to $POSTERN_CONFIG or /etc/postern/postern.conf.\n"
                "`postern COMMAND --help` explains a command.\n");
}

/* `postern CMD ... --help` anywhere among the command's arguments (before a "--"). */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            config_path = argv[++i];
        else if (strcmp(argv[i], "-q") == 0)
            pu_quiet = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return PX_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("postern 0.1.0");
            return PX_OK;
        } else {
            usage(stderr);
            return PX_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return PX_USAGE;
    }
    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(commands[k].name, argv[i]) == 0)
            cmd = &commands[k];
    if (!cmd) {
        pu_err("unknown command '%s'", argv[i]);
        usage(stderr);
        return PX_USAGE;
    }
    /* Secrets live in this process's memory: keep them out of core dumps. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (pc_init() != PC_OK) {
        pu_err("libsodium failed to initialise");
        return PX_SOFTWARE;
    }
    pn_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return PX_OSERR;
    char err[1024];
    if (!config_path)
        config_path = pn_config_default_path();
    if (wants_help(argc - i, argv + i)) {
        /* Help never needs a config: an admin reads it before writing one. */
        char *help_argv[] = {argv[i], "--help", NULL};
        pn_config_defaults(config_path, cfg);
        int rc = cmd->run(cfg, 2, help_argv);
        free(cfg);
        return rc;
    }
    if (pn_config_load(config_path, cfg, err, sizeof err) != 0) {
        if (cmd->run == adm_cmd_check) {
            int rc = adm_check_unloadable(cfg->path[0] ? cfg->path : config_path ? config_path : "", err);
            free(cfg);
            return rc;
        }
        pu_err("%s", err);
        free(cfg);
        /* deliver's and verify-recipient's caller is an MTA: a broken config must keep mail
         * queued (or the SMTP client retrying), not bounce or reject it. */
        return strcmp(cmd->name, "deliver") == 0 || strcmp(cmd->name, "verify-recipient") == 0 ? PX_TEMPFAIL
                                                                                                : PX_CONFIG;
    }
    ps_health_use(cfg->state_dir); /* sites that time out are skipped by every command of the host */
    int rc = cmd->run(cfg, argc - i, argv + i);
    pn_config_free(cfg);
    free(cfg);
    return rc;
}
