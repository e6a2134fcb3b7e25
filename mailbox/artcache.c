/* mailbox: ciphertext articles on local disk, so a message read again (another device, a
 * second pull, a client that re-downloads) costs a file read instead of the news server's
 * ARTICLE, its base64 and our parsing of it. Only what the news spool holds anyway goes
 * here: the sealed envelope, never plaintext. Files are named by a hash of the Message-ID
 * and checked like any article when they are opened (the vault and the stream cipher
 * authenticate them, and the Message-ID is bound inside), so a damaged or planted file is
 * refused and dropped. Size and age are bounded: a sweep removes files past the retention
 * time (the news server's expiry must not be outlived here) and, oldest first, what is over
 * the size limit. Called from worker threads; the files' renames make them atomic. Files are
 * written by one thread of the cache's own: creating files from several workers at once
 * made them queue on the directory's lock (ext4), and a read should not wait for a write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "mailbox/mb.h"
#include "util/util.h"

#define NAME_HEX 64              /* BLAKE2b-256 of the Message-ID */
#define ENVELOPE_MAX (256u << 20) /* larger files are not ours */
#define TMP_PREFIX ".tmp."
#define QUEUE_MAX (64u << 20) /* envelopes waiting for the writer; more are not cached */

typedef struct pending {
    struct pending *next;
    char msgid[PA_MSGID_MAX];
    char *data;
    size_t len;
    int64_t arrival;
} pending;

struct mb_artcache {
    char dir[PATH_MAX - 128]; /* room for "/" and a file name in a PATH_MAX buffer */
    uint64_t max_bytes;
    unsigned max_age_days;
    _Atomic uint64_t bytes; /* the last sweep's count plus what was written since */
    atomic_flag sweeping;
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pending *head, *tail; /* guarded by mu */
    size_t queued;        /* bytes in the queue */
    bool stop;
};

static void write_file(mb_artcache *c, const char *msgid, const void *data, size_t len, int64_t arrival);

static void *writer_main(void *arg)
{
    mb_artcache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->head && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break; /* what is queued is dropped: it is only a cache */
        pending *p = c->head;
        c->head = p->next;
        if (!c->head)
            c->tail = NULL;
        pthread_mutex_unlock(&c->mu);
        write_file(c, p->msgid, p->data, p->len, p->arrival);
        pthread_mutex_lock(&c->mu);
        c->queued -= p->len;
        free(p->data);
        free(p);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void path_of(const mb_artcache *c, const char *msgid, char *out, size_t cap)
{
    uint8_t h[NAME_HEX / 2];
    char hex[NAME_HEX + 1];
    crypto_generichash(h, sizeof h, (const unsigned char *)msgid, strlen(msgid), NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, cap, "%s/%s", c->dir, hex);
}

mb_artcache *mb_artcache_open(const char *state_dir, uint64_t max_bytes, unsigned max_age_days, char *err,
                              size_t errlen)
{
    mb_artcache *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int n = snprintf(c->dir, sizeof c->dir, "%s/articles", state_dir);
    if (n < 0 || (size_t)n >= sizeof c->dir) {
        snprintf(err, errlen, "state_dir is too long");
        free(c);
        return NULL;
    }
    if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", c->dir, strerror(errno));
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    c->max_age_days = max_age_days;
    atomic_flag_clear(&c->sweeping);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
        snprintf(err, errlen, "cannot start the cache's writer thread");
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return NULL;
    }
    return c;
}

void mb_artcache_close(mb_artcache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->writer, NULL);
    while (c->head) {
        pending *p = c->head;
        c->head = p->next;
        free(p->data);
        free(p);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void mb_artcache_put(mb_artcache *c, const char *msgid, pu_buf *env, int64_t arrival)
{
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return;
    snprintf(p->msgid, sizeof p->msgid, "%s", msgid);
    p->data = env->data;
    p->len = env->len;
    p->arrival = arrival;
    *env = (pu_buf){0};
    pthread_mutex_lock(&c->mu);
    bool room = !c->stop && c->queued + p->len <= QUEUE_MAX;
    if (room) {
        if (c->tail)
            c->tail->next = p;
        else
            c->head = p;
        c->tail = p;
        c->queued += p->len;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (!room) { /* the disk is slower than the news server: this one is not cached */
        free(p->data);
        free(p);
    }
}

bool mb_artcache_get(mb_artcache *c, const char *msgid, pu_buf *out)
{
    char path[PATH_MAX];
    path_of(c, msgid, path, sizeof path);
    out->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= PC_MSG_PREFIX_BYTES &&
              (uint64_t)st.st_size <= ENVELOPE_MAX && pu_buf_reserve(out, (size_t)st.st_size) == 0;
    size_t want = ok ? (size_t)st.st_size : 0;
    while (ok && out->len < want) {
        ssize_t r = read(fd, out->data + out->len, want - out->len);
        if (r < 0 && errno == EINTR)
            continue;
        ok = r > 0;
        if (ok)
            out->len += (size_t)r;
    }
    close(fd);
    if (!ok)
        out->len = 0;
    return ok;
}

static void write_file(mb_artcache *c, const char *msgid, const void *data, size_t len, int64_t arrival)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    uint8_t r[8];
    char rhex[17];
    path_of(c, msgid, path, sizeof path);
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(rhex, sizeof rhex, r, sizeof r);
    snprintf(tmp, sizeof tmp, "%s/" TMP_PREFIX "%s", c->dir, rhex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return; /* a full or read-only disk: the cache is only an optimisation */
    bool written = pu_write_all(fd, data, len) == 0;
    /* The file's time is the message's arrival, so the age sweep follows the news server's
     * expiry, however late the message was first read. */
    struct timespec times[2] = {{.tv_nsec = UTIME_NOW}, {.tv_sec = (time_t)arrival}};
    (void)futimens(fd, times);
    /* No fsync: a file torn by a crash fails authentication and is dropped. */
    if (close(fd) != 0 || !written || rename(tmp, path) != 0) {
        unlink(tmp);
        return;
    }
    if (atomic_fetch_add(&c->bytes, len) + len > c->max_bytes)
        mb_artcache_sweep(c);
}

void mb_artcache_drop(mb_artcache *c, const char *msgid)
{
    char path[PATH_MAX];
    path_of(c, msgid, path, sizeof path);
    unlink(path);
}

typedef struct entry {
    char name[NAME_HEX + 1];
    time_t mtime;
    uint64_t size;
} entry;

static int older_first(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

static void remove_entry(const mb_artcache *c, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", c->dir, name);
    unlink(path);
}

void mb_artcache_sweep(mb_artcache *c)
{
    if (atomic_flag_test_and_set(&c->sweeping))
        return; /* another worker sweeps already */
    DIR *d = opendir(c->dir);
    entry *es = NULL;
    size_t n = 0, cap = 0, expired = 0, evicted = 0;
    uint64_t total = 0;
    time_t now = time(NULL), max_age = (time_t)c->max_age_days * 86400;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.' && strncmp(de->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1) != 0)
            continue; /* "." and ".." */
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        bool tmp = de->d_name[0] == '.';
        if ((tmp && now - st.st_mtime > 3600) || (!tmp && now - st.st_mtime > max_age) ||
            (!tmp && strlen(de->d_name) != NAME_HEX)) {
            remove_entry(c, de->d_name); /* a crashed writer's leftover; or expired on the news server */
            expired++;
            continue;
        }
        if (tmp)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            entry *ne = realloc(es, ncap * sizeof *ne);
            if (!ne)
                break;
            es = ne;
            cap = ncap;
        }
        memcpy(es[n].name, de->d_name, NAME_HEX + 1);
        es[n].mtime = st.st_mtime;
        es[n].size = (uint64_t)st.st_size;
        total += es[n].size;
        n++;
    }
    if (d)
        closedir(d);
    if (total > c->max_bytes) {
        /* oldest first, down to 90 % so that the next sweep is not the next write */
        qsort(es, n, sizeof *es, older_first);
        for (size_t i = 0; i < n && total > c->max_bytes / 10 * 9; i++) {
            remove_entry(c, es[i].name);
            total -= es[i].size;
            evicted++;
        }
    }
    free(es);
    atomic_store(&c->bytes, total);
    if (expired || evicted)
        pu_log(PU_INFO, "article cache: %zu expired, %zu evicted for space, %llu MiB kept", expired, evicted,
               (unsigned long long)(total >> 20));
    atomic_flag_clear(&c->sweeping);
}
