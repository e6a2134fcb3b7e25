/* store: sites that did not answer in time. A destroyed site usually drops packets instead of
 * refusing connections, so every connection to it costs the whole connect timeout; without a
 * memory of that, each message (and each gateway reconnect) would pay it again. A site whose
 * connection attempt timed out is not tried again for a while (30 s, doubling to 5 min); a
 * refused connection costs nothing and is not remembered. The memory is per process, and
 * shared through state_dir/site-health by the processes of one host (deliver runs once per
 * message); the file is a hint, never needed: when it cannot be read or written, each
 * process keeps its own. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_MAX 64 /* sites remembered: more than a config holds */
#define BACKOFF_FIRST_S 30
#define BACKOFF_MAX_S 300

typedef struct health {
    char key[280];     /* "host port" */
    int64_t until;     /* wall-clock seconds: not tried before this */
    unsigned failures; /* timeouts in a row */
} health;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static health table[HEALTH_MAX];
static size_t n_table;
static char file_path[4200];

void ps_health_use(const char *state_dir)
{
    pthread_mutex_lock(&mu);
    if (state_dir && *state_dir)
        snprintf(file_path, sizeof file_path, "%s/site-health", state_dir);
    else
        file_path[0] = '\0';
    pthread_mutex_unlock(&mu);
}

static void key_of(const pn_site *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s %s", s->host, s->port);
}

static health *find(const char *key, int create)
{
    for (size_t i = 0; i < n_table; i++)
        if (strcmp(table[i].key, key) == 0)
            return &table[i];
    if (!create || n_table == HEALTH_MAX)
        return NULL;
    health *h = &table[n_table++];
    memset(h, 0, sizeof *h);
    snprintf(h->key, sizeof h->key, "%s", key);
    return h;
}

/* Merges what other processes wrote: the later "until" wins. Lines: host port until failures */
static void load_file(void)
{
    if (!file_path[0])
        return;
    FILE *f = fopen(file_path, "re");
    if (!f)
        return;
    char line[400];
    while (fgets(line, sizeof line, f)) {
        char host[256], port[16];
        int64_t until;
        unsigned failures;
        if (sscanf(line, "%255s %15s %" SCNd64 " %u", host, port, &until, &failures) != 4)
            continue;
        char key[280];
        snprintf(key, sizeof key, "%s %s", host, port);
        health *h = find(key, 1);
        if (h && until > h->until) {
            h->until = until;
            h->failures = failures;
        }
    }
    fclose(f);
}

static void save_file(void)
{
    if (!file_path[0])
        return;
    char tmp[sizeof file_path + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld", file_path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    for (size_t i = 0; i < n_table; i++)
        if (table[i].failures)
            fprintf(f, "%s %" PRId64 " %u\n", table[i].key, table[i].until, table[i].failures);
    if (fclose(f) != 0 || rename(tmp, file_path) != 0)
        unlink(tmp);
}

int ps_health_skip(const pn_site *s, char *err, size_t errlen)
{
    char key[280];
    key_of(s, key, sizeof key);
    pthread_mutex_lock(&mu);
    load_file();
    health *h = find(key, 0);
    int64_t now = (int64_t)time(NULL);
    int skip = h && h->failures && now < h->until;
    if (skip)
        snprintf(err, errlen,
                 "site %s (%s:%s): not tried: it did not answer within %u s the last time; next try in %" PRId64 " s",
                 s->name, s->host, s->port, s->connect_timeout, h->until - now);
    pthread_mutex_unlock(&mu);
    return skip;
}

void ps_health_result(const pn_site *s, int answered, int timed_out)
{
    char key[280];
    key_of(s, key, sizeof key);
    pthread_mutex_lock(&mu);
    load_file();
    health *h = find(key, timed_out);
    if (h && answered && h->failures) {
        h->failures = 0;
        h->until = 0;
        save_file();
    } else if (h && timed_out) {
        unsigned backoff = BACKOFF_FIRST_S;
        for (unsigned i = 0; i < h->failures && backoff < BACKOFF_MAX_S; i++)
            backoff *= 2;
        h->failures++;
        h->until = (int64_t)time(NULL) + (backoff < BACKOFF_MAX_S ? backoff : BACKOFF_MAX_S);
        save_file();
    }
    pthread_mutex_unlock(&mu);
}
