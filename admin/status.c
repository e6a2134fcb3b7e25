/* postern status: what the admin reads first — which site the gateway reads from (its
 * gateway.status) and whether every site holds every message (replication.status, written
 * by the repair pass). Both files are written by `postern serve`'s processes; this only
 * reads them, so it needs no privileges beyond reading state_dir. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "admin/admin.h"
#include "util/util.h"

static const char usage[] = "usage: postern status\n"
                            "Prints the gateway's state_dir/gateway.status (the site it reads from, FALLBACK or\n"
                            "DOWN) and replication.status (per site, what is missing; written by the repair\n"
                            "pass of `postern serve` every [repair] interval). Exit 0 when the gateway reads its\n"
                            "first site and every site holds every message, 1 otherwise.";

/* Prints one status file with its age; 0 when it reports no trouble. */
static int show(const char *dir, const char *name, const char *const *trouble, long stale_after, const char *absent)
{
    char path[PATH_MAX + 32], text[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    long n = stat(path, &st) == 0 ? pu_read_small_file(path, text, sizeof text) : -1;
    if (n < 0) {
        printf("%s: %s\n", name, errno == ENOENT ? absent : strerror(errno));
        return 1;
    }
    long age = (long)(time(NULL) - st.st_mtime);
    printf("%s (written %ld s ago):\n%s\n", name, age < 0 ? 0 : age, text);
    int bad = stale_after > 0 && age > stale_after;
    if (bad)
        printf("  STALE: not rewritten for %ld s; is `postern serve` running?\n", age);
    for (size_t i = 0; trouble[i]; i++)
        bad |= strstr(text, trouble[i]) != NULL;
    return bad;
}

int adm_cmd_status(const pn_config *cfg, int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr, "%s\n", usage);
        return help ? PX_OK : PX_USAGE;
    }
    static const char *const gw_trouble[] = {"DOWN", "FALLBACK", NULL};
    static const char *const repl_trouble[] = {"DEGRADED", "REPAIRING", NULL};
    int bad = show(cfg->state_dir, "gateway.status", gw_trouble, 0, "absent: the gateway has not run here");
    if (cfg->n_sites < 2)
        printf("replication.status: one site configured: nothing to replicate to\n");
    else if (cfg->repair_interval == 0)
        printf("replication.status: [repair] interval = 0: no periodic repair here (run `postern repair`)\n");
    else
        bad |= show(cfg->state_dir, "replication.status", repl_trouble, 3L * cfg->repair_interval + 60,
                    "absent: no repair pass has run yet (it runs inside `postern serve`)");
    return bad ? 1 : PX_OK;
}
