/* repair: anti-entropy between the sites (docs/design.md, "Repair"). innfeed alone does not
 * make every site hold every message: a peer that lost a feed's articles never gets them
 * again, a site set up or restored later lacks what came before. A pass compares what the
 * sites hold and copies what one lacks from one that has it, ciphertext only (no user key).
 * Used by `postern repair` (on demand) and by `postern serve`, which runs a pass every
 * [repair] interval so that a gap closes without an admin. */
#ifndef POSTERN_REPAIR_H
#define POSTERN_REPAIR_H

#include <stdio.h>

#include "config/config.h"

/* What one pass found and did at one site. */
typedef struct pr_site_tally {
    int reachable;
    char err[256]; /* why not, when not reachable */
    unsigned long missing; /* messages another site has and this one lacked */
    unsigned long copied;  /* ... that it shows now */
    unsigned long refused; /* ... that its history refuses (cancelled or expired there) */
    unsigned long failed;  /* ... whose copy failed; tried again next pass */
    unsigned long waiting; /* ... too new to copy yet (PR_SETTLED: next pass) */
} pr_site_tally;

typedef struct pr_tally {
    size_t up; /* reachable sites */
    unsigned long groups, compared, users_short;
    pr_site_tally site[PN_MAX_SITES];
} pr_tally;

/* A repairer keeps what the last pass saw, which PR_SETTLED passes need. */
typedef struct pr_repairer pr_repairer;

enum {
    PR_DRY_RUN = 1, /* find and report, copy nothing */
    /* For the periodic pass: copy only articles the source already held at the previous
     * pass (newer ones are most likely still in innfeed's hands, and copying them would
     * double the traffic for new mail), and skip a group whose counts are what they were
     * when it was last compared and nothing was left to copy then (a copy the other site's
     * history refuses stays refused; comparing again would cost an OVER each pass). */
    PR_SETTLED = 2,
};

pr_repairer *pr_new(const pn_config *cfg);
void pr_free(pr_repairer *r);

/* One pass over the groups whose counts differ between sites, or only over only_group (by
 * Message-ID whatever the counts). Each user found short somewhere gets a line on out (may
 * be NULL); errors go to stderr. Returns 0 when every site was reachable and nothing is
 * missing any more, 1 otherwise (something to try again), -1 when out of memory. */
int pr_pass(pr_repairer *r, unsigned flags, const char *only_group, FILE *out, pr_tally *tally);

/* The per-site lines of a tally ("  site a: nothing missing"), for a person to read. */
void pr_print_sites(const pn_config *cfg, const pr_tally *tally, FILE *to);

/* Writes state_dir/replication.status (what `postern status` shows): when the pass ran,
 * and per site what is missing. 0, or -1 with errno. */
int pr_write_status(const pn_config *cfg, const pr_tally *tally, unsigned interval);
/* Writes state_dir/replication.prom: the same pass in Prometheus's text format (site
 * reachable, messages still missing per site, copies made since the process started), which
 * the gateway's GET /metrics includes. 0, or -1 with errno. */
int pr_write_metrics(const pn_config *cfg, const pr_tally *tally, const unsigned long long copied_total[PN_MAX_SITES]);

/* `postern serve`'s repair process: a pass every interval seconds (first one soon after
 * the start) until *stop is set; logs only what changes. Never returns an error. */
void pr_run_periodic(const pn_config *cfg, unsigned interval, volatile const int *stop);

#endif
