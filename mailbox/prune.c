/* mailbox: forgetting the state of messages that are gone from every site. A user's state
 * keeps an entry (flags, the \Deleted tombstone of an expunge, cached ENVELOPE) for each
 * message it has seen; INN expires the articles after 30 days, and without pruning the
 * file would grow with every message ever received. An entry is dropped only when its
 * message is neither in the last scan nor on any configured site: a lagging or partitioned
 * site must not bring expunged mail back by making its tombstone look stale. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox/mb.h"

typedef struct prune_ctx {
    const char **live; /* the last scan's Message-IDs, sorted */
    size_t n_live;
    const pn_config *cfg;
    ps_pool *sites; /* its own: connections opened when the first entry needs asking, new for
                     * this prune (a kept one may have cached a Message-ID's absence) */
    char *err;
    size_t errlen;
} prune_ctx;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 live, 0 gone from every site, -1 when some site cannot tell (the prune is off then) */
static int is_live(void *arg, const char *msgid)
{
    prune_ctx *x = arg;
    if (x->n_live && bsearch(&msgid, x->live, x->n_live, sizeof *x->live, cmp_str))
        return 1;
    for (size_t i = 0; i < x->cfg->n_sites; i++) {
        if (ps_pool_connect(x->sites, i, x->err, x->errlen) != PS_OK)
            return -1;
        char why[512];
        int st = ps_stat(x->sites, i, msgid, why, sizeof why);
        if (st == PS_OK)
            return 1;
        if (st != PS_NOENT) {
            snprintf(x->err, x->errlen, "at site %s: %s", x->cfg->sites[i].name, why);
            return -1;
        }
    }
    return 0;
}

long mb_state_prune(userstate *us, const mb_msg *live, size_t n_live, const pn_config *cfg, char *err,
                    size_t errlen)
{
    prune_ctx x = {.n_live = n_live, .cfg = cfg, .err = err, .errlen = errlen};
    if (userstate_count(us) <= n_live)
        return 0; /* every entry may be a message of the scan: nothing to ask */
    x.live = malloc((n_live ? n_live : 1) * sizeof *x.live);
    x.sites = ps_pool_new(cfg, 0);
    if (!x.live || !x.sites) {
        free(x.live);
        ps_pool_free(x.sites);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n_live; i++)
        x.live[i] = live[i].msgid;
    qsort(x.live, n_live, sizeof *x.live, cmp_str);
    size_t pruned = 0;
    int st = userstate_prune(us, is_live, &x, &pruned);
    ps_pool_free(x.sites);
    free(x.live);
    if (st != US_OK) {
        if (st != US_EIO)
            snprintf(err, errlen, "%s", userstate_strerror(st));
        return -1;
    }
    return (long)pruned;
}
