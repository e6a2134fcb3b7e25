/* postern repair: one pass of the repair between sites (repair/), on demand. `postern serve`
 * runs the same pass every [repair] interval; this is for an admin who wants it now, a
 * dry run, or one user compared by Message-ID whatever the counts say. */
#include <getopt.h>
#include <stdio.h>

#include "admin/admin.h"
#include "article/article.h"
#include "repair/repair.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern repair [--dry-run] [--user ADDRESS]\n"
    "Compares the mail groups of every configured site (by count, then by Message-ID where the\n"
    "counts differ; --user: that user's group by Message-ID) and copies each message a site\n"
    "lacks from a site that has it (ciphertext only). Prints what it finds per user and a\n"
    "summary per site. Exit 0 when every reachable site holds every message afterwards, 75 when\n"
    "a site could not be reached or a message could not be copied (run it again later).\n"
    "`postern serve` runs this pass by itself every [repair] interval (default 30 s).";

int adm_cmd_repair(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned flags = 0;
    const char *only = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
        if (c == 'n') {
            flags |= PR_DRY_RUN;
        } else if (c == 'u') {
            only = optarg;
        } else if (c == 'h') {
            puts(usage);
            return PX_OK;
        } else {
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    char why[256], only_group[PA_GROUP_MAX + 1] = "";
    if (only && pa_address_to_group(cfg->prefix, only, only_group, sizeof only_group, why, sizeof why) != 0) {
        pu_err("--user %s: %s", only, why);
        return PX_USAGE;
    }
    if (cfg->n_sites < 2) {
        printf("postern repair: one site configured: nothing to compare\n");
        return PX_OK;
    }
    pr_repairer *r = pr_new(cfg);
    pr_tally t;
    int rc = r ? pr_pass(r, flags, only ? only_group : NULL, stdout, &t) : -1;
    pr_free(r);
    if (rc < 0) {
        pu_err("out of memory");
        return PX_OSERR;
    }
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (!t.site[i].reachable)
            pu_err("site %s left out: %s", cfg->sites[i].name, t.site[i].err);
    int say = !pu_quiet || t.users_short || t.up < cfg->n_sites; /* -q (from a timer): only news */
    if (say) {
        printf("postern repair: %zu of %zu sites reachable%s\n", t.up, cfg->n_sites,
               flags & PR_DRY_RUN ? " (dry run)" : "");
        pr_print_sites(cfg, &t, stdout);
        printf("postern repair: %lu groups, %lu compared by Message-ID, %lu users short somewhere\n", t.groups,
               t.compared, t.users_short);
    }
    if (!(flags & PR_DRY_RUN) && pr_write_status(cfg, &t, cfg->repair_interval) != 0)
        pu_err("cannot write %s/replication.status", cfg->state_dir);
    /* a dry run's findings are not failures; a real pass that left something is */
    return rc && !(flags & PR_DRY_RUN) ? PX_TEMPFAIL : t.up < cfg->n_sites ? PX_TEMPFAIL : PX_OK;
}
