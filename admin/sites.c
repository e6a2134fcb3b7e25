/* admin: the site side of user provisioning: groups made and removed with ctlinnd where a
 * site is administered from here, a deleted user's articles purged, and what every configured
 * site holds checked over NNTP. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "admin/admin_int.h"
#include "store/store.h"
#include "util/util.h"

#define CTLINND "/usr/lib/news/bin/ctlinnd"

/* Runs ctlinnd for a locally administered site; returns 0 on success. */
static int ctlinnd(const pn_site *site, const char *const args[], char *out, size_t outlen)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        setenv("INNCONF", site->innconf, 1);
        char *argv[8];
        size_t n = 0;
        argv[n++] = (char *)CTLINND;
        for (size_t i = 0; args[i] && n < 7; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(CTLINND, argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    for (;;) {
        ssize_t r = read(pipefd[0], out + used, outlen - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;
        if (used == outlen - 1)
            break;
    }
    out[used] = '\0';
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r'))
        out[--used] = '\0';
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

typedef struct id_list {
    pu_buf ids; /* Message-IDs, one per line */
    size_t n;
} id_list;

static int collect_msgid(void *arg, const char *line, size_t len)
{
    id_list *l = arg;
    /* OVER: number, subject, from, date, Message-ID, ... (RFC 3977 8.3) */
    const char *p = line, *end = line + len;
    for (int field = 0; field < 4 && p < end; field++) {
        p = memchr(p, '\t', (size_t)(end - p));
        if (!p)
            return 0;
        p++;
    }
    const char *tab = memchr(p, '\t', (size_t)(end - p));
    size_t n = tab ? (size_t)(tab - p) : (size_t)(end - p);
    if (n < 3 || p[0] != '<' || p[n - 1] != '>' || memchr(p, '\n', n))
        return 0;
    if (pu_buf_add(&l->ids, p, n) != 0 || pu_buf_add(&l->ids, "\n", 1) != 0)
        return -1;
    l->n++;
    return 0;
}

/* The Message-IDs of group's articles at site at (none when the group is missing or empty):
 * 0, or -1 with the reason reported. */
static int list_msgids(ps_pool *sites, size_t at, const char *site_name, const char *group, id_list *l)
{
    char err[512];
    ps_group_info info;
    int st = ps_group(sites, at, group, &info, err, sizeof err);
    if (st == PS_OK && info.count > 0)
        st = ps_over(sites, at, group, "1-", collect_msgid, l, err, sizeof err);
    if (st != PS_OK && st != PS_NOENT) { /* PS_NOENT: no such group, or no articles */
        pu_err("site %s: cannot list the articles of %s: %s", site_name, group, err);
        pu_buf_free(&l->ids);
        return -1;
    }
    return 0;
}

/* Removes every article of group at an administered site (ctlinnd cancel: the spool file and
 * the overview entry go). `ctlinnd rmgroup` alone leaves tradspool files behind, and a group
 * made again under the same name then collides with them at article 1: innd cannot store,
 * nnrpd still answers 240. Returns the number removed, or -1 with the reason reported. */
static long purge_group(const pn_config *cfg, const pn_site *site, const char *group)
{
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites) {
        pu_err("site %s: cannot list the articles of %s: out of memory", site->name, group);
        return -1;
    }
    id_list l = {0};
    int st = list_msgids(sites, (size_t)(site - cfg->sites), site->name, group, &l);
    ps_pool_free(sites);
    if (st != 0)
        return -1;
    long failed = 0;
    for (char *id = l.ids.data, *nl; id && *id; id = nl + 1) {
        nl = strchr(id, '\n');
        *nl = '\0';
        const char *cancel[] = {"-s", "cancel", id, NULL};
        char out[512];
        if (ctlinnd(site, cancel, out, sizeof out) != 0 && !strstr(out, "o such article")) {
            pu_err("site %s: ctlinnd cancel %s failed: %s", site->name, id, out[0] ? out : "no output");
            failed++;
        }
    }
    pu_buf_free(&l.ids);
    return failed ? -1 : (long)l.n;
}

int adm_inn_conf_get(const char *innconf, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen(innconf, "re");
    if (!f)
        return -1;
    char line[PATH_MAX + 64];
    size_t klen = strlen(key);
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, key, klen) != 0 || p[klen] != ':')
            continue;
        p += klen + 1;
        p += strspn(p, " \t");
        if (*p == '"') {
            p++;
            char *q = strchr(p, '"');
            if (q)
                *q = '\0';
            else
                p[strcspn(p, "\r\n")] = '\0';
        } else {
            p[strcspn(p, "#\r\n")] = '\0';
            for (size_t n = strlen(p); n && (p[n - 1] == ' ' || p[n - 1] == '\t');)
                p[--n] = '\0';
        }
        snprintf(out, cap, "%s", p);
        found = 1;
    }
    fclose(f);
    return found;
}

/* After rmgroup: article files of group still in its tradspool directory (left by a plain
 * `ctlinnd rmgroup`, by hand or by an older postern) are removed, since a group of that name
 * made later would collide with them. Only all-digit names directly in the directory: a
 * sub-group's directory (.encrypt) is left alone. Returns the number removed. */
static long sweep_tradspool(const pn_site *site, const char *group)
{
    char articles[PATH_MAX + 16], spool[PATH_MAX], dir[PATH_MAX * 2];
    adm_inn_conf_get(site->innconf, "patharticles", articles, sizeof articles);
    if (!articles[0]) {
        adm_inn_conf_get(site->innconf, "pathspool", spool, sizeof spool);
        if (!spool[0])
            return 0; /* not a layout we can tell; the purge by cancel is all there is */
        snprintf(articles, sizeof articles, "%s/articles", spool);
    }
    int n = snprintf(dir, sizeof dir, "%s/%s", articles, group);
    if (n < 0 || (size_t)n >= sizeof dir)
        return 0;
    for (char *p = dir + strlen(articles) + 1; *p; p++)
        if (*p == '.')
            *p = '/';
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    long removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!e->d_name[0] || strspn(e->d_name, "0123456789") != strlen(e->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

/* Makes (or, after purging their articles, removes) the user's two groups on every site we
 * administer, reporting per site; returns the number of sites where it failed. */
int adm_groups_everywhere(const pn_config *cfg, const char *mail_group,
                             const char *key_group, int create)
{
    int failed = 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pn_site *site = &cfg->sites[i];
        if (!site->innconf[0]) {
            if (create)
                pu_info("  site %s: not administered from here (no innconf): create the groups there", site->name);
            continue; /* a deletion cancels there (adm_purge_remote) */
        }
        const char *groups[] = {key_group, mail_group};
        long removed = 0;
        for (size_t g = 0; g < 2; g++) {
            long n = create ? 0 : purge_group(cfg, site, groups[g]);
            if (n < 0) {
                failed++;
                break;
            }
            removed += n;
            const char *add[] = {"-s", "newgroup", groups[g], "y", "postern", NULL};
            const char *del[] = {"-s", "rmgroup", groups[g], NULL};
            char out[512];
            int ctl = ctlinnd(site, create ? add : del, out, sizeof out);
            if (!create)
                removed += sweep_tradspool(site, groups[g]);
            if (ctl != 0) {
                /* Removing a group that is not there is what we wanted anyway. */
                if (!create && strstr(out, "o such group"))
                    continue;
                pu_err("site %s: ctlinnd %s %s failed: %s", site->name, create ? "newgroup" : "rmgroup",
                       groups[g], out[0] ? out : "no output");
                failed++;
                break;
            }
        }
        if (create)
            pu_info("  site %s: groups ready", site->name);
        else
            pu_info("  site %s: %ld article%s and the groups removed", site->name, removed, removed == 1 ? "" : "s");
    }
    return failed;
}

static int count_line(void *arg, const char *line, size_t len)
{
    (void)line;
    (void)len;
    (*(size_t *)arg)++;
    return 0;
}

/* Asks every configured site, administered here or not, whether it has both groups, and
 * whether they are empty: a site without them would refuse the user's mail (and remember the
 * refusal), and articles already there are a deleted user's, which must not come back into
 * the new mailbox. Reports each site; returns the number of sites that fail or cannot be asked. */
int adm_verify_groups(const pn_config *cfg, const char *address, const char *mail_group, const char *key_group)
{
    int bad = 0;
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites) {
        pu_err("cannot check the groups: out of memory");
        return (int)cfg->n_sites;
    }
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const pn_site *site = &cfg->sites[i];
        char err[512];
        if (ps_pool_connect(sites, i, err, sizeof err) != PS_OK) {
            pu_err("site %s: cannot check the groups: %s", site->name, err);
            bad++;
            continue;
        }
        const char *groups[] = {key_group, mail_group};
        const char *missing = NULL, *full = NULL;
        size_t articles = 0;
        int st = PS_OK;
        for (size_t g = 0; g < 2 && st == PS_OK && !full; g++) {
            st = ps_listgroup(sites, i, groups[g], count_line, &articles, err, sizeof err);
            if (st != PS_OK)
                missing = groups[g];
            else if (articles)
                full = groups[g];
        }
        ps_pool_drop(sites, i);
        if (missing && st != PS_NOENT) {
            pu_err("site %s: cannot check group %s: %s", site->name, missing, err);
            bad++;
        } else if (missing) {
            pu_err("site %s: group %s is missing; create it there (ctlinnd newgroup %s y postern) and run "
                   "`postern user add` again",
                   site->name, missing, missing);
            bad++;
        } else if (full) {
            pu_err("site %s: group %s still holds %zu article%s of a deleted user; run `postern user del %s "
                   "--yes` where that site is administered, then `postern user add` again",
                   site->name, full, articles, articles == 1 ? "" : "s", address);
            bad++;
        } else {
            pu_info("  site %s: groups verified", site->name);
        }
    }
    ps_pool_free(sites);
    return bad;
}

/* Whether site serves rec as the address's current key record: read back over NNTP, verified
 * and compared, because an answer of 240 does not mean stored (nnrpd says it also when innd
 * could not store the article). Retried for a few seconds: a site may take a moment. */
#define READBACK_SECONDS 5
int adm_record_readable(const pn_config *cfg, const pn_site *site, const pc_keyrecord *rec, char *err,
                           size_t errlen)
{
    pc_keyrecord *got = sodium_malloc(sizeof *got);
    if (!got) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites) {
        sodium_free(got);
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    size_t at = (size_t)(site - cfg->sites);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int ok = 0;
    for (;;) {
        /* each try on a new connection: the last one may have cached the record's absence */
        int st = ps_fetch_keyrecord(sites, at, rec->address, got, NULL, err, errlen);
        ps_pool_drop(sites, at);
        if (st == PS_OK && sodium_memcmp(got->key_id, rec->key_id, sizeof rec->key_id) == 0 &&
            got->serial == rec->serial) {
            ok = 1;
            break;
        }
        if (st == PS_OK)
            snprintf(err, errlen, "it serves another key record (serial %" PRIu32 ")", got->serial);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= READBACK_SECONDS)
            break;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    ps_pool_free(sites);
    sodium_free(got);
    return ok;
}

/* One cancel for target at a site not administered here, with the key its lock wants: a key
 * record's from the authority secret, delivered mail's admin lock from the delivery secret.
 * Returns 1 posted (or the site had this cancel already), 0 no key for it, -1 failed. */
static int cancel_remote(ps_pool *sites, size_t at, const char *group, const char *target, const uint8_t *auth_sk,
                         const uint8_t *delivery_secret, char *err, size_t errlen)
{
    char key_text[PC_CANCEL_TEXT_MAX + 8];
    if (strncmp(target, "<k.", 3) == 0 && auth_sk) {
        char key[64], lock[96];
        if (pc_cancel_key(auth_sk, target, key, sizeof key, lock, sizeof lock) != PC_OK)
            return 0;
        snprintf(key_text, sizeof key_text, "sha256:%s", key);
        sodium_memzero(key, sizeof key);
    } else if (strncmp(target, "<m.", 3) == 0 && delivery_secret) {
        uint8_t k[PC_CANCEL_KEY_BYTES];
        pc_cancel_admin_key(delivery_secret, target, k);
        pc_cancel_key_text(k, key_text);
        sodium_memzero(k, sizeof k);
    } else {
        return 0; /* state articles and appended mail carry the owner's lock only */
    }
    /* one Message-ID per target: the copy a peer feeds a site that got it already is a duplicate */
    uint8_t h[32], id[20];
    crypto_generichash(h, sizeof h, (const uint8_t *)target, strlen(target), (const uint8_t *)"postern purge", 13);
    memcpy(id, h, sizeof id);
    char cid[PA_MSGID_MAX], headers[1024];
    pa_cancel_message_id(id, cid);
    size_t ok = pa_cancel_headers(group, target, cid, key_text, headers, sizeof headers);
    sodium_memzero(key_text, sizeof key_text);
    if (!ok) {
        snprintf(err, errlen, "header block too long");
        return -1;
    }
    static const char body[] = "cancel";
    int st = ps_post(sites, at, headers, (const uint8_t *)body, sizeof body - 1, -1, 0, err, errlen);
    sodium_memzero(headers, sizeof headers);
    return st == PS_OK || st == PS_DUP ? 1 : -1;
}

int adm_purge_remote(const pn_config *cfg, const char *mail_group, const char *key_group)
{
    size_t remote = 0;
    for (size_t i = 0; i < cfg->n_sites; i++)
        remote += !cfg->sites[i].innconf[0];
    if (!remote)
        return 0;
    /* whichever of the two secrets this host holds: each cancels its own kind of article */
    char err[512];
    uint8_t *auth_sk = cfg->authority_secret_path[0] ? pn_load_authority_secret(cfg, err, sizeof err) : NULL;
    if (!auth_sk)
        pu_info("  no authority secret here: key records at sites administered elsewhere cannot be cancelled");
    uint8_t *ds = cfg->delivery_secret_path[0] ? pn_load_delivery_secret(cfg, err, sizeof err) : NULL;
    if (!ds)
        pu_info("  no delivery secret here: mail at sites administered elsewhere cannot be cancelled");
    int failed = 0;
    ps_pool *sites = ps_pool_new(cfg, 0);
    for (size_t i = 0; sites && i < cfg->n_sites; i++) {
        const pn_site *site = &cfg->sites[i];
        if (site->innconf[0])
            continue;
        const char *groups[] = {key_group, mail_group};
        long cancelled = 0, left = 0, bad = 0;
        for (size_t g = 0; g < 2; g++) {
            id_list l = {0};
            if (list_msgids(sites, i, site->name, groups[g], &l) != 0) {
                bad++;
                break;
            }
            for (char *id = l.ids.data, *nl; id && *id; id = nl + 1) {
                nl = strchr(id, '\n');
                *nl = '\0';
                int r = cancel_remote(sites, i, groups[g], id, auth_sk, ds, err, sizeof err);
                if (r > 0) {
                    cancelled++;
                } else if (r == 0) {
                    left++;
                } else {
                    pu_err("site %s: cancel of %s not posted: %s", site->name, id, err);
                    bad++;
                }
            }
            pu_buf_free(&l.ids);
        }
        ps_pool_drop(sites, i);
        pu_info("  site %s (administered elsewhere): %ld article%s cancelled%s", site->name, cancelled,
                cancelled == 1 ? "" : "s", bad ? ", some not: see above" : "");
        if (left)
            pu_info("  site %s: %ld article%s left that no secret of this host can cancel (state articles and "
                    "appended mail carry their owner's lock only); they expire by themselves, and the groups stay "
                    "until that site's admin runs `postern user del` there",
                    site->name, left, left == 1 ? "" : "s");
        failed += bad > 0;
    }
    if (!sites) {
        pu_err("cannot reach the sites administered elsewhere: out of memory");
        failed++;
    }
    ps_pool_free(sites);
    if (auth_sk)
        sodium_free(auth_sk);
    if (ds)
        sodium_free(ds);
    return failed;
}
