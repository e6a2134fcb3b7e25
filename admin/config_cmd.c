/* postern config: the effective configuration, as `postconf -n` shows Postfix's: the settings
 * that differ from their defaults (-a: all of them), as postern.conf text that loads back to
 * the same settings. Secrets are never printed, only the files that hold them. */
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "util/util.h"

static const char usage[] = "usage: postern config [-a|--all]\n"
                            "Prints the configuration postern runs with, as postern.conf text: the settings that\n"
                            "differ from their defaults, or with --all every setting. [site] sections always.\n"
                            "Passwords are not printed, only the files they are read from.";

int adm_cmd_config(const pn_config *cfg, int argc, char **argv)
{
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--all") == 0) {
            all = 1;
        } else {
            int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            fprintf(help ? stdout : stderr, "%s\n", usage);
            return help ? PX_OK : PX_USAGE;
        }
    }
    printf("; %s%s\n", cfg->path, all ? " (every setting)" : " (settings that differ from the defaults)");
    pn_config_write(cfg, all, stdout);
    return fflush(stdout) == 0 ? PX_OK : PX_IOERR;
}
