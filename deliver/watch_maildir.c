/* postern watch-maildir: the paper's original intake. An MTA delivers into per-user Maildirs;
 * this command watches them and posts every message exactly once with pd_deliver.
 *
 * Identity: a message is its Maildir unique name (the file name up to the first ':'), so a
 * file moved from new/ to cur/ or given other flags ("name:2,S") is the same message.
 *
 * Exactly once: per Maildir, a journal in <state_dir>/watch/ lists the unique names already
 * posted, one per line, appended and fsync'd only after pd_deliver returned PX_OK. Losing
 * it (or crashing between the post and the fsync) re-posts, which is harmless while the
 * server still remembers the article: Message-IDs are deterministic (docs/formats.md,
 * section 3) and INN refuses a duplicate for as long as its history keeps the ID (about 60
 * days here). After that only the journal keeps an old message from being posted again.
 * Permanent failures go to a separate ".rejected" journal so they are not retried forever.
 *
 * Read-only: nothing in a Maildir is ever written, renamed or deleted. Files are opened
 * O_RDONLY|O_NOFOLLOW (and O_NOATIME where allowed), through descriptors of the Maildir
 * opened at start: a Maildir owner who swaps in a symlink cannot make this process, which
 * may have more rights than they do, read and post some other file to them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "article/article.h"
#include "deliver/deliver.h"
#include "deliver/deliver_int.h"
#include "util/util.h"

#define DEFAULT_RESCAN_S 60
#define DEFAULT_RETRY_S 10
#define MAX_RETRY_S 300      /* backoff doubles up to 5 minutes */
#define MAX_OPTION_S 86400
#define ONCE_TRIES 3         /* --once: attempts per Maildir before giving up with 75 */
#define MAX_NAME 255
#define LOCATE_TRIES 3       /* a message can move again while we look for it */

static const char usage[] =
    "usage: postern watch-maildir [--once] [--rescan SECONDS] [--retry SECONDS]\n"
    "                             MAILDIR=ADDRESS [MAILDIR=ADDRESS ...]\n"
    "Posts every message that appears in each MAILDIR (new/ and cur/) to ADDRESS, once.\n"
    "The Maildirs are only read, never changed. Posted messages are remembered in\n"
    "<state_dir>/watch/; permanently refused ones in a .rejected file beside it (remove\n"
    "that file to have them tried again).\n"
    "  --once            post what is pending and exit: 0 all done, 75 some still pending\n"
    "  --rescan SECONDS  full rescan interval besides inotify (default 60)\n"
    "  --retry SECONDS   first retry delay after a temporary failure, doubling up to\n"
    "                    5 minutes (default 10)\n"
    "SIGINT or SIGTERM finishes the current message and exits; a second one exits at once.";

static const char *const subdir_name[2] = {"new", "cur"};

enum state {
    ST_PENDING,  /* seen, not yet posted: in its Maildir's queue */
    ST_POSTED,   /* in the journal */
    ST_REJECTED, /* in the .rejected journal */
    ST_IGNORED,  /* not a message (symlink, FIFO, bad name): logged once, not journaled */
    ST_GONE,     /* vanished before it could be posted; found again if it reappears */
};

typedef struct entry {
    struct entry *next; /* pending queue */
    char *file;         /* "new/NAME" or "cur/NAME:2,S" where last seen; pending only */
    unsigned char state;
    unsigned short len;
    char name[];        /* unique name (or the whole file name of an ignored one) */
} entry;

/* Open-addressing set of entries by name. SipHash with a per-run random key, so names chosen
 * by whoever can deliver mail cannot be made to collide. */
typedef struct table {
    entry **slot;
    size_t mask, count;
    unsigned char key[crypto_shorthash_KEYBYTES];
} table;

typedef struct maildir {
    char path[PATH_MAX]; /* absolute */
    const char *address;
    int root;            /* the Maildir directory, fixed at start */
    int wd[2];           /* inotify watches on new/ and cur/, -1 if none */
    int journal_fd, rejected_fd;
    char journal[PATH_MAX], rejected[PATH_MAX];
    table seen;
    entry *head, *tail;  /* pending, oldest first */
    size_t pending, posted, rejected_n;
    unsigned backoff_s;  /* 0: no failure since the last success */
    long long next_try_ms;
    unsigned tries;      /* consecutive temporary failures */
    int given_up;        /* --once: tried ONCE_TRIES times */
} maildir;

typedef struct watch {
    const pn_config *cfg;
    const pn_delivery_keys *secret;
    maildir *md;
    size_t n_md;
    int once;
    unsigned rescan_s, retry_s;
    int inotify;         /* -1 without inotify (--once, or it is unavailable) */
    int stop_r;          /* self-pipe read end, readable once a stop was asked */
    size_t posted, rejected, journal_errors;
} watch;

/* ---- small helpers ------------------------------------------------------------------ */


/* A file name fit for a log line: control bytes shown as '?'. */
static const char *printable(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = ((unsigned char)in[i] < 0x20 || in[i] == 0x7f) ? '?' : in[i];
    out[i] = '\0';
    return out;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int parse_seconds(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < 1 || v > MAX_OPTION_S)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* ---- the set of known names --------------------------------------------------------- */

static int table_init(table *t)
{
    t->slot = calloc(1024, sizeof *t->slot);
    if (!t->slot)
        return -1;
    t->mask = 1023;
    t->count = 0;
    randombytes_buf(t->key, sizeof t->key);
    return 0;
}

static size_t table_hash(const table *t, const char *name, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)name, len, t->key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)v;
}

static entry *table_find(const table *t, const char *name, size_t len)
{
    for (size_t i = table_hash(t, name, len) & t->mask;; i = (i + 1) & t->mask) {
        entry *e = t->slot[i];
        if (!e)
            return NULL;
        if (e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
}

static void table_place(table *t, entry *e)
{
    size_t i = table_hash(t, e->name, e->len) & t->mask;
    while (t->slot[i])
        i = (i + 1) & t->mask;
    t->slot[i] = e;
}

/* Adds a new entry (the name must not be in the table). NULL when out of memory. */
static entry *table_add(table *t, const char *name, size_t len, unsigned char state)
{
    if ((t->count + 1) * 2 > t->mask + 1) {
        table bigger = *t;
        bigger.slot = calloc((t->mask + 1) * 2, sizeof *bigger.slot);
        if (!bigger.slot)
            return NULL;
        bigger.mask = t->mask * 2 + 1;
        for (size_t i = 0; i <= t->mask; i++)
            if (t->slot[i])
                table_place(&bigger, t->slot[i]);
        free(t->slot);
        *t = bigger;
    }
    entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return NULL;
    e->next = NULL;
    e->file = NULL;
    e->state = state;
    e->len = (unsigned short)len;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    table_place(t, e);
    t->count++;
    return e;
}

static void table_free(table *t)
{
    if (!t->slot)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slot[i]) {
            free(t->slot[i]->file);
            free(t->slot[i]);
        }
    }
    free(t->slot);
    t->slot = NULL;
}

/* ---- journals ----------------------------------------------------------------------- */

/* Loads one name per line. A last line without its newline is what a crash in the middle of
 * an append leaves: it is skipped, and a newline is added so the next append starts clean. */
static int journal_load(int fd, table *t, unsigned char state, size_t *count)
{
    char buf[65536], line[MAX_NAME];
    size_t ll = 0;
    int too_long = 0;
    char last = '\n';
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        for (ssize_t i = 0; i < got; i++) {
            char c = buf[i];
            last = c;
            if (c != '\n') {
                if (ll < sizeof line)
                    line[ll++] = c;
                else
                    too_long = 1;
                continue;
            }
            if (ll > 0 && !too_long && !table_find(t, line, ll)) {
                if (!table_add(t, line, ll, state)) {
                    errno = ENOMEM;
                    return -1;
                }
                (*count)++;
            }
            ll = 0;
            too_long = 0;
        }
    }
    if (last != '\n' && write_all(fd, "\n", 1) != 0)
        return -1;
    return 0;
}

static int journal_append(int fd, const char *name, size_t len)
{
    char line[MAX_NAME + 1];
    memcpy(line, name, len);
    line[len] = '\n';
    if (write_all(fd, line, len + 1) != 0)
        return -1;
    return fdatasync(fd);
}

static int mkdir_private(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

/* Opens (creating) the two journals of m, locks them against a second watcher, loads them. */
static int open_journals(const pn_config *cfg, maildir *m, int dirfd, const char *dir)
{
    unsigned char h[32];
    char hex[65];
    crypto_generichash(h, sizeof h, (const unsigned char *)m->path, strlen(m->path), NULL, 0);
    pu_hex(h, sizeof h, hex);
    char info[PATH_MAX];
    if (snprintf(m->journal, sizeof m->journal, "%s/%s.journal", dir, hex) >= (int)sizeof m->journal ||
        snprintf(m->rejected, sizeof m->rejected, "%s/%s.rejected", dir, hex) >= (int)sizeof m->rejected ||
        snprintf(info, sizeof info, "%s/%s.path", dir, hex) >= (int)sizeof info) {
        pu_err("state_dir %s: path too long", cfg->state_dir);
        return PX_CONFIG;
    }
    m->journal_fd = open(m->journal, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    m->rejected_fd = open(m->rejected, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (m->journal_fd < 0 || m->rejected_fd < 0) {
        pu_err("cannot open the journal %s: %s", m->journal_fd < 0 ? m->journal : m->rejected, strerror(errno));
        return PX_CANTCREAT;
    }
    if (flock(m->journal_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            pu_err("%s is already being watched by another postern watch-maildir (journal %s is locked)",
                   m->path, m->journal);
            return PX_TEMPFAIL;
        }
        pu_err("cannot lock %s: %s", m->journal, strerror(errno));
        return PX_IOERR;
    }
    /* The hashed file names say nothing about which Maildir they belong to; this does. */
    struct stat st;
    if (fstatat(dirfd, strrchr(info, '/') + 1, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        char line[PATH_MAX + 1];
        int n = snprintf(line, sizeof line, "%s\n", m->path);
        if (n < 0 || (size_t)n >= sizeof line || pu_write_file_atomic(info, line, (size_t)n, 0600) != 0)
            pu_err("warning: cannot write %s: %s", info, strerror(errno));
    }
    if (journal_load(m->journal_fd, &m->seen, ST_POSTED, &m->posted) != 0 ||
        journal_load(m->rejected_fd, &m->seen, ST_REJECTED, &m->rejected_n) != 0) {
        pu_err("cannot read the journals %s and %s: %s", m->journal, m->rejected, strerror(errno));
        return errno == ENOMEM ? PX_OSERR : PX_IOERR;
    }
    /* Make the journals' directory entries durable before anything is recorded in them. */
    if (fsync(dirfd) != 0) {
        pu_err("cannot sync %s: %s", dir, strerror(errno));
        return PX_IOERR;
    }
    return PX_OK;
}

/* ---- finding messages --------------------------------------------------------------- */

/* Classifies a directory entry name: 1 a message (*ulen = length of its unique name), 0 to
 * skip silently (dot files: editors, NFS, other tools' state), -1 not a valid message name. */
static int classify(const char *fname, size_t *ulen)
{
    if (fname[0] == '.')
        return 0;
    size_t len = strnlen(fname, MAX_NAME + 1);
    if (len > MAX_NAME)
        return -1;
    size_t u = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)fname[i];
        /* A newline could not be journaled as one line; other control bytes have no
         * business in a Maildir name either. */
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (c == ':' && u == len)
            u = i;
    }
    if (u == 0)
        return -1;
    *ulen = u;
    return 1;
}

static void enqueue(maildir *m, entry *e)
{
    e->next = NULL;
    if (m->tail)
        m->tail->next = e;
    else
        m->head = e;
    m->tail = e;
    m->pending++;
}

static entry *dequeue(maildir *m)
{
    entry *e = m->head;
    m->head = e->next;
    if (!m->head)
        m->tail = NULL;
    e->next = NULL;
    m->pending--;
    return e;
}

static char *join_file(int sub, const char *fname)
{
    size_t n = strlen(fname);
    char *s = malloc(4 + n + 1);
    if (s) {
        memcpy(s, subdir_name[sub], 3);
        s[3] = '/';
        memcpy(s + 4, fname, n + 1);
    }
    return s;
}

/* Notes a file seen in new/ or cur/. New messages join the queue; a pending one that moved
 * is remembered at its new place; posted or rejected ones stay as they are. */
static void consider(maildir *m, int sub, const char *fname, unsigned char d_type)
{
    size_t ulen = 0;
    int c = classify(fname, &ulen);
    if (c == 0)
        return;
    const char *why = c < 0 ? "not a Maildir message name"
                    : d_type == DT_LNK ? "a symbolic link, not a message"
                    : d_type != DT_UNKNOWN && d_type != DT_REG ? "not a regular file"
                    : NULL;
    size_t klen = c < 0 ? strnlen(fname, MAX_NAME + 1) : ulen;
    if (klen > MAX_NAME)
        return; /* no file system here allows it, and it could not be journaled */
    entry *e = table_find(&m->seen, fname, klen);
    if (why) {
        /* Logged once per run; not journaled, so a fixed file is looked at after a restart. */
        if (e)
            return;
        char shown[MAX_NAME + 1];
        pu_err("ignoring %s/%s/%s: %s", m->path, subdir_name[sub], printable(fname, shown, sizeof shown), why);
        if (!table_add(&m->seen, fname, klen, ST_IGNORED))
            pu_err("out of memory");
        return;
    }
    if (e && e->state != ST_PENDING && e->state != ST_GONE)
        return;
    char *file = join_file(sub, fname);
    int fresh = !e;
    if (!file || (fresh && !(e = table_add(&m->seen, fname, ulen, ST_PENDING)))) {
        free(file);
        pu_err("out of memory: %s/%s/%s will be picked up by a later rescan", m->path, subdir_name[sub], fname);
        return;
    }
    free(e->file);
    e->file = file;
    /* A pending entry is already queued; a new or reappeared one joins the queue. */
    if (fresh || e->state == ST_GONE) {
        e->state = ST_PENDING;
        enqueue(m, e);
    }
}

static DIR *open_subdir(const maildir *m, int sub)
{
    int fd = openat(m->root, subdir_name[sub], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

typedef struct found {
    char *name;
    int sub;
    unsigned char d_type;
} found;

static int found_cmp(const void *a, const void *b)
{
    return strcmp(((const found *)a)->name, ((const found *)b)->name);
}

/* Reads new/ and cur/ and queues every message not known yet, sorted by name: Maildir names
 * start with the delivery time, so the oldest mail is posted first. */
static void scan_maildir(maildir *m)
{
    found *list = NULL;
    size_t n = 0, cap = 0;
    for (int sub = 0; sub < 2; sub++) {
        DIR *d = open_subdir(m, sub);
        if (!d) {
            pu_err("cannot read %s/%s: %s", m->path, subdir_name[sub], strerror(errno));
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_type == DT_DIR || de->d_name[0] == '.')
                continue;
            size_t ulen = 0;
            if (classify(de->d_name, &ulen) == 1) {
                const entry *e = table_find(&m->seen, de->d_name, ulen);
                if (e && e->state != ST_PENDING && e->state != ST_GONE)
                    continue; /* the common case in a big Maildir: already posted */
            }
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 256;
                found *bigger = realloc(list, ncap * sizeof *list);
                if (!bigger)
                    break;
                list = bigger;
                cap = ncap;
            }
            if (!(list[n].name = strdup(de->d_name)))
                break;
            list[n].d_type = de->d_type;
            list[n++].sub = sub;
        }
        closedir(d);
    }
    if (n > 1)
        qsort(list, n, sizeof *list, found_cmp);
    for (size_t i = 0; i < n; i++) {
        consider(m, list[i].sub, list[i].name, list[i].d_type);
        free(list[i].name);
    }
    free(list);
}

/* Looks for a pending message by its unique name after its file vanished: a mail reader
 * moves new/NAME to cur/NAME:2,S, or changes flags, at any moment. 1 found, 0 gone. */
static int locate(maildir *m, entry *e)
{
    for (int sub = 0; sub < 2; sub++) {
        DIR *d = open_subdir(m, sub);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, e->name, e->len) != 0 || (de->d_name[e->len] != '\0' && de->d_name[e->len] != ':'))
                continue;
            char *file = join_file(sub, de->d_name);
            if (!file)
                continue;
            free(e->file);
            e->file = file;
            closedir(d);
            return 1;
        }
        closedir(d);
    }
    return 0;
}

/* Opens a pending message read-only, finding it again if it moved. -1 with errno. */
static int open_message(maildir *m, entry *e)
{
    for (int attempt = 0; attempt < LOCATE_TRIES; attempt++) {
        int sub = strncmp(e->file, "new/", 4) == 0 ? 0 : 1;
        int dfd = openat(m->root, subdir_name[sub], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0 && errno != ENOENT)
            return -1;
        if (dfd < 0) {
            if (!locate(m, e))
                return -1; /* errno is still ENOENT */
            continue;
        }
        const char *fname = e->file + 4;
        /* O_NOFOLLOW: a symlink is not mail. O_NONBLOCK: a FIFO must not hang us. O_NOATIME:
         * leave even the access time alone where the kernel lets us. */
        int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        int fd = openat(dfd, fname, flags | O_NOATIME);
        if (fd < 0 && errno == EPERM)
            fd = openat(dfd, fname, flags);
        int saved = errno;
        close(dfd);
        if (fd >= 0)
            return fd;
        if (saved != ENOENT) {
            errno = saved;
            return -1;
        }
        if (!locate(m, e)) {
            errno = ENOENT;
            return -1;
        }
    }
    errno = ENOENT;
    return -1;
}

/* ---- posting ------------------------------------------------------------------------ */

static void msgid_of(const char *msg, char *out, size_t cap)
{
    const char *a = strchr(msg, '<');
    const char *b = a ? strchr(a, '>') : NULL;
    if (a && b && (size_t)(b - a) + 1 < cap) {
        memcpy(out, a, (size_t)(b - a) + 1);
        out[b - a + 1] = '\0';
    } else {
        snprintf(out, cap, "(%s)", msg);
    }
}

static void finish(maildir *m, entry *e, unsigned char state)
{
    dequeue(m);
    e->state = state;
    free(e->file);
    e->file = NULL;
    m->backoff_s = 0;
    m->tries = 0;
}

/* Keeps the message pending and pauses its Maildir: most temporary failures (server down,
 * key record unreadable) hit every message for that recipient alike. The message goes to the
 * back of the queue so that one message failing for a reason of its own does not hold up the
 * others. */
static void temp_failure(watch *w, maildir *m, const char *why)
{
    entry *e = m->head;
    char shown[MAX_NAME + 8];
    printable(e->file, shown, sizeof shown);
    if (m->pending > 1)
        enqueue(m, dequeue(m));
    unsigned cap = w->retry_s > MAX_RETRY_S ? w->retry_s : MAX_RETRY_S;
    m->backoff_s = m->backoff_s == 0 ? w->retry_s : (m->backoff_s > cap / 2 ? cap : m->backoff_s * 2);
    m->next_try_ms = pu_now_ms() + (long long)m->backoff_s * 1000;
    m->tries++;
    if (w->once && m->tries >= ONCE_TRIES) {
        m->given_up = 1;
        pu_err("%s/%s for %s: %s; giving up for now after %u tries", m->path, shown, m->address, why, m->tries);
    } else {
        pu_err("%s/%s for %s: %s; retrying in %u s", m->path, shown, m->address, why, m->backoff_s);
    }
}

static void reject(watch *w, maildir *m, entry *e, const char *why)
{
    char shown[MAX_NAME + 8];
    pu_err("rejected %s/%s for %s: %s (not retried; listed in %s)", m->path, printable(e->file, shown, sizeof shown),
           m->address, why, m->rejected);
    if (journal_append(m->rejected_fd, e->name, e->len) != 0) {
        pu_err("cannot write %s: %s", m->rejected, strerror(errno));
        w->journal_errors++;
    }
    m->rejected_n++;
    w->rejected++;
    finish(m, e, ST_REJECTED);
}

static void ignore(maildir *m, entry *e, const char *why)
{
    char shown[MAX_NAME + 8];
    pu_err("ignoring %s/%s: %s", m->path, printable(e->file, shown, sizeof shown), why);
    finish(m, e, ST_IGNORED);
}

/* Posts the oldest pending message of m (one attempt). */
static void post_next(watch *w, maildir *m)
{
    entry *e = m->head;
    int fd = open_message(m, e);
    if (fd < 0) {
        if (errno == ENOENT) {
            char shown[MAX_NAME + 8];
            pu_info("%s/%s vanished before it could be posted", m->path, printable(e->file, shown, sizeof shown));
            finish(m, e, ST_GONE);
        } else if (errno == ELOOP) {
            ignore(m, e, "a symbolic link, not a message");
        } else {
            char why[256];
            snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
            temp_failure(w, m, why);
        }
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot stat: %s", strerror(errno));
        close(fd);
        temp_failure(w, m, why);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        ignore(m, e, "not a regular file");
        return;
    }
    if ((uint64_t)st.st_size > w->cfg->max_message_size) {
        /* pd_deliver would refuse it only after reading all of it: say so without reading. */
        char why[128];
        pd_too_big(w->cfg, why, sizeof why);
        close(fd);
        reject(w, m, e, why);
        return;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);

    char msg[4096] = "";
    int rc = pd_deliver(w->cfg, w->secret, m->address, fd, 0, msg, sizeof msg);
    close(fd);
    if (rc == PX_OK) {
        char msgid[PA_MSGID_MAX + 8], shown[MAX_NAME + 8];
        msgid_of(msg, msgid, sizeof msgid);
        if (journal_append(m->journal_fd, e->name, e->len) != 0) {
            /* Still remembered in memory: no second post in this run. After a restart the
             * deterministic Message-ID makes the server refuse the repeat. */
            pu_err("cannot write %s: %s", m->journal, strerror(errno));
            w->journal_errors++;
        }
        pu_info("posted %s as %s for %s", printable(e->file, shown, sizeof shown), msgid, m->address);
        m->posted++;
        w->posted++;
        finish(m, e, ST_POSTED);
    } else if (rc == PX_UNAVAILABLE || rc == PX_NOUSER) {
        reject(w, m, e, msg);
    } else {
        temp_failure(w, m, msg[0] ? msg : "temporary failure");
    }
}

/* ---- inotify ------------------------------------------------------------------------ */

static void add_watches(watch *w, maildir *m)
{
    for (int sub = 0; sub < 2; sub++) {
        if (w->inotify < 0 || m->wd[sub] >= 0)
            continue;
        char p[PATH_MAX + 8];
        snprintf(p, sizeof p, "%s/%s", m->path, subdir_name[sub]);
        /* Deliveries are written in tmp/ and renamed into new/ (IN_MOVED_TO); mail readers
         * move new/ -> cur/ and rename to change flags (IN_MOVED_TO). IN_CLOSE_WRITE covers
         * tools that write in place. IN_CREATE would fire before the content is there. */
        m->wd[sub] = inotify_add_watch(w->inotify, p, IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR | IN_DONT_FOLLOW);
        if (m->wd[sub] < 0)
            pu_err("cannot watch %s (%s): relying on the rescan every %u s", p, strerror(errno), w->rescan_s);
    }
}

/* Handles queued events; returns 1 if a full rescan is needed now. */
static int read_events(watch *w)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    int rescan = 0;
    for (;;) {
        ssize_t got = read(w->inotify, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno == EAGAIN)
            return rescan;
        if (got <= 0) {
            pu_err("reading inotify events: %s; relying on the rescan every %u s", got < 0 ? strerror(errno) : "end of file",
                   w->rescan_s);
            close(w->inotify);
            w->inotify = -1;
            for (size_t i = 0; i < w->n_md; i++)
                w->md[i].wd[0] = w->md[i].wd[1] = -1;
            return 1;
        }
        for (char *p = buf; p < buf + got;) {
            const struct inotify_event *ev = (const void *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                rescan = 1; /* events were dropped: only a full scan knows what came in */
                continue;
            }
            for (size_t i = 0; i < w->n_md; i++) {
                maildir *m = &w->md[i];
                for (int sub = 0; sub < 2; sub++) {
                    if (m->wd[sub] != ev->wd)
                        continue;
                    if (ev->mask & IN_IGNORED) {
                        pu_err("%s/%s was removed or unmounted; watching it again at the next rescan", m->path,
                               subdir_name[sub]);
                        m->wd[sub] = -1;
                    } else if (ev->len > 0 && !(ev->mask & IN_ISDIR)) {
                        consider(m, sub, ev->name, DT_UNKNOWN);
                    }
                }
            }
        }
    }
}

/* ---- signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_requested;
static int stop_pipe_w = -1;

static void on_stop(int sig)
{
    int saved = errno;
    if (stop_requested) {
        /* Second signal: the user means it. At worst the message being posted is posted
         * again at the next start, which the deterministic Message-ID makes harmless. */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
    if (stop_pipe_w >= 0) {
        ssize_t r = write(stop_pipe_w, "", 1);
        (void)r;
    }
    errno = saved;
}

/* ---- setup -------------------------------------------------------------------------- */

static int is_maildir(const char *path)
{
    struct stat st;
    char p[PATH_MAX + 8];
    for (int sub = 0; sub < 2; sub++) {
        if (snprintf(p, sizeof p, "%s/%s", path, subdir_name[sub]) >= (int)sizeof p || stat(p, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            return 0;
    }
    return 1;
}

/* MAILDIR=ADDRESS. A local part may contain '=' (RFC 5322 atext), and so may a path: the
 * split is at the first '=' whose left side is a Maildir. */
static int parse_pair(char *arg, maildir *m, const pn_config *cfg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        pu_err("'%s': expected MAILDIR=ADDRESS", arg);
        return PX_USAGE;
    }
    for (char *q = eq; q; q = strchr(q + 1, '=')) {
        *q = '\0';
        int ok = is_maildir(arg);
        *q = '=';
        if (ok) {
            eq = q;
            break;
        }
    }
    *eq = '\0';
    const char *dir = arg;
    m->address = eq + 1;
    char why[512], group[PA_GROUP_MAX + 1], canon[PA_ADDRESS_MAX + 1];
    if (pa_address_canonical(m->address, canon, sizeof canon, why, sizeof why) != 0 ||
        pa_address_to_group(cfg->prefix, m->address, group, sizeof group, why, sizeof why) != 0) {
        pu_err("'%s' is not an address postern can deliver to: %s", m->address, why);
        return PX_USAGE;
    }
    if (!realpath(dir, m->path)) {
        pu_err("Maildir %s: %s", dir, strerror(errno));
        return PX_CONFIG;
    }
    if (!is_maildir(m->path)) {
        pu_err("%s is not a Maildir: it needs new/ and cur/ subdirectories", dir);
        return PX_CONFIG;
    }
    if (strlen(m->path) + 4 + MAX_NAME + 1 >= PATH_MAX) {
        pu_err("Maildir path too long: %s", m->path);
        return PX_CONFIG;
    }
    m->root = open(m->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m->root < 0) {
        pu_err("Maildir %s: %s", m->path, strerror(errno));
        return PX_CONFIG;
    }
    return PX_OK;
}

/* Opens <state_dir>/watch (creating both 0700) and every Maildir's journals. */
static int open_state(watch *w)
{
    const pn_config *cfg = w->cfg;
    char dir[PATH_MAX];
    if (!cfg->state_dir[0]) {
        pu_err("%s: [postern] state_dir is not set", cfg->path);
        return PX_CONFIG;
    }
    if (snprintf(dir, sizeof dir, "%s/watch", cfg->state_dir) >= (int)sizeof dir) {
        pu_err("state_dir %s: path too long", cfg->state_dir);
        return PX_CONFIG;
    }
    if (mkdir_private(cfg->state_dir) != 0 || mkdir_private(dir) != 0) {
        pu_err("cannot create %s: %s", dir, strerror(errno));
        return PX_CANTCREAT;
    }
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        pu_err("cannot open %s: %s", dir, strerror(errno));
        return PX_CANTCREAT;
    }
    int rc = PX_OK;
    for (size_t i = 0; i < w->n_md && rc == PX_OK; i++)
        rc = open_journals(cfg, &w->md[i], dirfd, dir);
    close(dirfd);
    return rc;
}

/* ---- main loop ---------------------------------------------------------------------- */

static size_t total_pending(const watch *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n_md; i++)
        n += w->md[i].pending;
    return n;
}

static int run(watch *w)
{
    long long next_rescan = pu_now_ms() + (long long)w->rescan_s * 1000;
    size_t rr = 0; /* round robin over Maildirs, so one busy Maildir does not starve another */
    while (!stop_requested) {
        long long now = pu_now_ms(), wake = w->once ? LLONG_MAX : next_rescan;
        maildir *due = NULL;
        int active = 0;
        for (size_t k = 0; k < w->n_md; k++) {
            maildir *m = &w->md[(rr + k) % w->n_md];
            if (!m->head || m->given_up)
                continue;
            active = 1;
            if (m->next_try_ms <= now) {
                if (!due) {
                    due = m;
                    rr = (rr + k + 1) % w->n_md;
                }
            } else if (m->next_try_ms < wake) {
                wake = m->next_try_ms;
            }
        }
        if (w->once && !active)
            break;
        if (due) {
            post_next(w, due);
            wake = now; /* look at new events, then go on with the queue */
        }
        struct pollfd pfd[2] = {{.fd = w->stop_r, .events = POLLIN}, {.fd = w->inotify, .events = POLLIN}};
        long long left = wake - pu_now_ms();
        int timeout = left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
        int r = poll(pfd, w->inotify >= 0 ? 2 : 1, timeout);
        if (r < 0 && errno != EINTR) {
            pu_err("poll: %s", strerror(errno));
            return PX_OSERR;
        }
        int rescan = 0;
        if (r > 0 && w->inotify >= 0 && (pfd[1].revents & POLLIN))
            rescan = read_events(w);
        if (!w->once && (rescan || pu_now_ms() >= next_rescan)) {
            for (size_t i = 0; i < w->n_md; i++) {
                add_watches(w, &w->md[i]);
                scan_maildir(&w->md[i]);
            }
            next_rescan = pu_now_ms() + (long long)w->rescan_s * 1000;
        }
    }
    size_t pending = total_pending(w);
    if (w->once) {
        pu_info("posted %zu, rejected %zu, %zu still pending", w->posted, w->rejected, pending);
        if (pending)
            return PX_TEMPFAIL;
        return w->journal_errors ? PX_IOERR : PX_OK;
    }
    pu_info("stopping: posted %zu, rejected %zu, %zu pending%s", w->posted, w->rejected, pending,
            pending ? " (posted after the next start)" : "");
    return PX_OK;
}

int pd_cmd_watch_maildir(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"once", no_argument, NULL, 'o'},
        {"rescan", required_argument, NULL, 'r'},
        {"retry", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    watch w = {.cfg = cfg, .rescan_s = DEFAULT_RESCAN_S, .retry_s = DEFAULT_RETRY_S, .inotify = -1, .stop_r = -1};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o':
            w.once = 1;
            break;
        case 'r':
        case 'R':
            if (parse_seconds(optarg, ch == 'r' ? &w.rescan_s : &w.retry_s) != 0) {
                pu_err("--%s wants a number of seconds from 1 to %d, not '%s'", ch == 'r' ? "rescan" : "retry",
                       MAX_OPTION_S, optarg);
                return PX_USAGE;
            }
            break;
        case 'h':
            puts(usage);
            return PX_OK;
        default:
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    if (sodium_init() < 0) {
        pu_err("libsodium failed to initialise");
        return PX_SOFTWARE;
    }

    int rc = PX_OK;
    pn_delivery_keys *secret = NULL;
    int pipefd[2] = {-1, -1};
    struct sigaction old_int, old_term, sa;
    int handlers = 0;
    w.n_md = (size_t)(argc - optind);
    w.md = calloc(w.n_md, sizeof *w.md);
    if (!w.md) {
        pu_err("out of memory");
        return PX_OSERR;
    }
    for (size_t i = 0; i < w.n_md; i++) {
        maildir *m = &w.md[i];
        m->root = m->journal_fd = m->rejected_fd = m->wd[0] = m->wd[1] = -1;
        if (table_init(&m->seen) != 0) {
            pu_err("out of memory");
            rc = PX_OSERR;
            goto out;
        }
    }
    for (size_t i = 0; i < w.n_md; i++) {
        if ((rc = parse_pair(argv[optind + (int)i], &w.md[i], cfg)) != PX_OK)
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(w.md[j].path, w.md[i].path) == 0) {
                pu_err("Maildir %s is given twice", w.md[i].path);
                rc = PX_USAGE;
                goto out;
            }
        }
    }
    char err[256];
    secret = pn_load_delivery_keys(cfg, err, sizeof err);
    if (!secret) {
        pu_err("%s", err);
        rc = PX_CONFIG;
        goto out;
    }
    w.secret = secret;
    if ((rc = open_state(&w)) != PX_OK)
        goto out;

    if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        pu_err("pipe: %s", strerror(errno));
        rc = PX_OSERR;
        goto out;
    }
    w.stop_r = pipefd[0];
    stop_pipe_w = pipefd[1];
    stop_requested = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* network code retries on EINTR, but need not */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = 1;

    if (!w.once) {
        /* Watch before the first scan, so nothing delivered in between is missed. */
        w.inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w.inotify < 0)
            pu_err("inotify: %s; relying on the rescan every %u s", strerror(errno), w.rescan_s);
        for (size_t i = 0; i < w.n_md; i++)
            add_watches(&w, &w.md[i]);
    }
    size_t done = 0, rejected = 0;
    for (size_t i = 0; i < w.n_md; i++) {
        scan_maildir(&w.md[i]);
        done += w.md[i].posted;
        rejected += w.md[i].rejected_n;
    }
    char rejected_note[64] = "";
    if (rejected)
        snprintf(rejected_note, sizeof rejected_note, ", %zu rejected earlier", rejected);
    pu_info("%s %zu Maildir%s, %zu already posted%s, %zu pending", w.once ? "checking" : "watching", w.n_md,
            w.n_md == 1 ? "" : "s", done, rejected_note, total_pending(&w));
    rc = run(&w);

out:
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    stop_pipe_w = -1;
    for (int i = 0; i < 2; i++)
        if (pipefd[i] >= 0)
            close(pipefd[i]);
    if (w.inotify >= 0)
        close(w.inotify);
    for (size_t i = 0; i < w.n_md; i++) {
        maildir *m = &w.md[i];
        if (m->root >= 0)
            close(m->root);
        if (m->journal_fd >= 0)
            close(m->journal_fd); /* releases the lock */
        if (m->rejected_fd >= 0)
            close(m->rejected_fd);
        table_free(&m->seen);
    }
    free(w.md);
    if (secret)
        sodium_free(secret);
    return rc;
}
