/* postern lmtp: an LMTP server in front of pd_ctx, so NNTP connections and key records stay
 * warm between messages. One thread per connection (blocking I/O, each with its own pd_ctx:
 * an NNTP connection is used by one thread at a time), at most --max-sessions at once. */
#include "deliver/lmtp.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "store/store.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern lmtp (--listen unix:PATH | --listen inet:ADDR:PORT | --stdio)\n"
    "                    [--user USER] [--group GROUP] [--max-sessions N] [--verbose]\n"
    "Serves LMTP (RFC 2033): each message is encrypted to each recipient's key and posted.\n"
    "  --listen unix:/run/postern/lmtp   Unix socket, created mode 0660 (--group sets its group)\n"
    "  --listen inet:127.0.0.1:24        TCP ([v6]:PORT for IPv6)\n"
    "  --stdio                           one session on stdin/stdout (inetd, socket activation)\n"
    "  --user USER                       when started as root: run as USER after binding\n"
    "  --max-sessions N                  concurrent sessions (default 20); more wait in the backlog\n"
    "SIGTERM: stop accepting, finish open transactions, remove the socket, exit 0.";

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct server {
    const pn_config *cfg;
    const pn_delivery_keys *secret;
    char hostname[256];
    int verbose;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned running, max;
} server;

typedef struct backend_state {
    server *srv;
    pd_ctx *ctx;
} backend_state;

static int be_rcpt(void *arg, const char *address, void **handle, char *msg, size_t msglen)
{
    backend_state *b = arg;
    pd_recipient *r = NULL;
    int rc = pd_ctx_recipient(b->ctx, address, &r, msg, msglen);
    *handle = r;
    return rc;
}

static int be_deliver(void *arg, void *handle, pd_read_fn rd, void *rd_arg, char *msg, size_t msglen)
{
    backend_state *b = arg;
    return pd_ctx_deliver_to(b->ctx, handle, rd, rd_arg, msg, msglen);
}

static void be_release(void *arg, void *handle)
{
    (void)arg;
    pd_recipient_free(handle);
}

static void be_report(void *arg, const char *address, int code, const char *msg)
{
    backend_state *b = arg;
    if (code != PX_OK)
        pu_err("lmtp: <%s>: %s", address, msg);
    else if (b->srv->verbose)
        fprintf(stderr, "postern: lmtp: %s\n", msg);
}

/* One session with its own delivery context. */
static int serve(server *srv, int in_fd, int out_fd)
{
    backend_state st = {.srv = srv, .ctx = pd_ctx_new(srv->cfg, srv->secret)};
    if (!st.ctx) {
        static const char busy[] = "421 4.3.0 out of memory\r\n";
        if (write(out_fd, busy, sizeof busy - 1) < 0) {
            /* nothing more to tell a client we cannot serve */
        }
        return -1;
    }
    lmtp_backend be = {.arg = &st, .rcpt = be_rcpt, .deliver = be_deliver, .release = be_release, .report = be_report};
    lmtp_params p = {
        .in_fd = in_fd,
        .out_fd = out_fd,
        .cfg = srv->cfg,
        .backend = &be,
        .hostname = srv->hostname,
        .stop = &stop_requested,
    };
    int rc = lmtp_session(&p);
    pd_ctx_free(st.ctx);
    return rc;
}

typedef struct conn_arg {
    server *srv;
    int fd;
} conn_arg;

static void *conn_thread(void *arg)
{
    conn_arg *a = arg;
    server *srv = a->srv;
    serve(srv, a->fd, a->fd);
    close(a->fd);
    free(a);
    ps_thread_done();
    pthread_mutex_lock(&srv->lock);
    srv->running--;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* "unix:PATH" or "inet:ADDR:PORT" ("inet:[v6]:PORT"): a listening socket, or -1 with err. */
static int listen_on(const char *spec, const char *group, char *err, size_t errlen)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        if (!*path || strlen(path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
            snprintf(err, errlen, "%s: the socket path is empty or too long", spec);
            return -1;
        }
        struct stat st;
        /* A socket left by a previous run is replaced; anything else at that path is not ours. */
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                snprintf(err, errlen, "%s exists and is not a socket", path);
                return -1;
            }
            unlink(path);
        }
        gid_t gid = (gid_t)-1;
        if (group) {
            struct group *g = getgrnam(group);
            if (!g) {
                snprintf(err, errlen, "no such group '%s'", group);
                return -1;
            }
            gid = g->gr_gid;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            return -1;
        }
        /* Bound under a temporary name and renamed once listening, so a client never finds
         * the path refusing connections; created 0660: no window in which others may connect. */
        struct sockaddr_un tmp = {.sun_family = AF_UNIX};
        if (snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s.%ld", path, (long)getpid()) >=
            (int)sizeof tmp.sun_path) {
            snprintf(err, errlen, "%s: the socket path is too long", spec);
            close(fd);
            return -1;
        }
        unlink(tmp.sun_path);
        mode_t old = umask(0117);
        int b = bind(fd, (struct sockaddr *)&tmp, sizeof tmp);
        umask(old);
        if (b != 0 || chmod(tmp.sun_path, 0660) != 0 ||
            (group && chown(tmp.sun_path, (uid_t)-1, gid) != 0) || listen(fd, 128) != 0 ||
            rename(tmp.sun_path, path) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            unlink(tmp.sun_path);
            close(fd);
            return -1;
        }
        return fd;
    }
    if (strncmp(spec, "inet:", 5) == 0) {
        char host[128];
        const char *hp = spec + 5, *colon = strrchr(hp, ':');
        if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof host || !colon[1]) {
            snprintf(err, errlen, "%s: expected inet:ADDR:PORT", spec);
            return -1;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = '\0';
        char *h = host;
        size_t hl = strlen(h);
        if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
            h[hl - 1] = '\0';
            h++;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        int gai = getaddrinfo(h, colon + 1, &hints, &ai);
        if (gai != 0) {
            snprintf(err, errlen, "%s: %s", spec, gai_strerror(gai));
            return -1;
        }
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            snprintf(err, errlen, "%s: %s", spec, strerror(errno));
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
        freeaddrinfo(ai);
        return fd;
    }
    snprintf(err, errlen, "--listen takes unix:PATH or inet:ADDR:PORT, not '%s'", spec);
    return -1;
}

static int drop_privileges(const char *user, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "no such user '%s'", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must be impossible now */
        snprintf(err, errlen, "could still regain root after becoming %s", user);
        return -1;
    }
    return 0;
}

/* Removes the socket at path if it is still the one we made: a newer server may have
 * replaced it (listen_on renames over a stale one) and keeps its own. */
static void remove_own_socket(const char *path, const struct stat *made)
{
    struct stat now;
    if (lstat(path, &now) == 0 && now.st_dev == made->st_dev && now.st_ino == made->st_ino)
        unlink(path);
}

/* The root parent of a server that dropped privileges: once unprivileged the server cannot
 * remove a socket in a directory only root or Postfix may write (Postfix's private/ is
 * postfix's, mode 0700), so this process waits for it, passes SIGTERM/SIGINT on, and
 * removes the socket when it has exited. Returns the server's exit status. */
static int supervise(pid_t child, const char *path, const struct stat *made)
{
    int status = 0;
    /* Polls: a blocking waitpid would miss a SIGTERM that came just before it. */
    for (;;) {
        if (stop_requested) {
            kill(child, SIGTERM);
            stop_requested = 0;
        }
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child)
            break;
        if (w < 0 && errno != EINTR) {
            status = PX_SOFTWARE << 8;
            break;
        }
        struct timespec nap = {.tv_nsec = 200 * 1000 * 1000};
        nanosleep(&nap, NULL); /* a signal cuts it short */
    }
    remove_own_socket(path, made);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    pu_err("lmtp: the server process ended by signal %d", WTERMSIG(status));
    return PX_SOFTWARE;
}

/* The deliveries' counters for GET /metrics, at most once a second (each write is a file
 * replaced whole); a state_dir that cannot be written is said once. */
static void write_stats(server *srv)
{
    static uint64_t gen;
    static long long last;
    static bool said;
    long long now = pu_now_ms();
    if (now - last < 1000)
        return;
    last = now;
    if (pd_stats_write(srv->cfg, &gen) != 0 && !said) {
        said = true;
        pu_log(PU_WARN, "lmtp: cannot write %s/delivery.prom (%s): no delivery metrics", srv->cfg->state_dir,
               strerror(errno));
    }
}

static int accept_loop(server *srv, int lfd)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (!stop_requested) {
        /* At the limit, wait for a slot: further clients queue in the kernel's backlog. */
        pthread_mutex_lock(&srv->lock);
        while (srv->running >= srv->max && !stop_requested) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&srv->changed, &srv->lock, &until);
        }
        pthread_mutex_unlock(&srv->lock);
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int r = poll(&pfd, 1, 1000); /* wakes up to notice SIGTERM */
        write_stats(srv);
        if (r <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* the client gave up, or a transient shortage (EMFILE): keep serving */
        conn_arg *a = malloc(sizeof *a);
        pthread_t t;
        if (!a) {
            close(fd);
            continue;
        }
        a->srv = srv;
        a->fd = fd;
        pthread_mutex_lock(&srv->lock);
        srv->running++;
        pthread_mutex_unlock(&srv->lock);
        if (pthread_create(&t, &attr, conn_thread, a) != 0) {
            static const char busy[] = "421 4.3.2 too busy, try again later\r\n";
            if (write(fd, busy, sizeof busy - 1) < 0) {
                /* the client is gone as well */
            }
            close(fd);
            free(a);
            pthread_mutex_lock(&srv->lock);
            srv->running--;
            pthread_mutex_unlock(&srv->lock);
        }
    }
    pthread_attr_destroy(&attr);
    close(lfd);
    /* Sessions notice the flag within a second when idle, and finish their transaction
     * otherwise. */
    pthread_mutex_lock(&srv->lock);
    while (srv->running > 0)
        pthread_cond_wait(&srv->changed, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    uint64_t never = UINT64_MAX; /* the last deliveries too, whatever the second */
    pd_stats_write(srv->cfg, &never);
    return PX_OK;
}

int pd_cmd_lmtp(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"stdio", no_argument, NULL, 's'},
        {"user", required_argument, NULL, 'u'},
        {"group", required_argument, NULL, 'g'},
        {"max-sessions", required_argument, NULL, 'm'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_spec = NULL, *user = NULL, *group = NULL;
    int stdio = 0, verbose = 0, ch;
    unsigned long max = 20;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "l:su:g:m:vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_spec = optarg;
            break;
        case 's':
            stdio = 1;
            break;
        case 'u':
            user = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'm': {
            char *end;
            max = strtoul(optarg, &end, 10);
            if (*end || max < 1 || max > 10000) {
                pu_err("--max-sessions takes a number from 1 to 10000");
                return PX_USAGE;
            }
            break;
        }
        case 'v':
            verbose = 1;
            break;
        case 'h':
            puts(usage);
            return PX_OK;
        default:
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    if (optind != argc || !listen_spec == !stdio) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return PX_OSERR;
    srv->cfg = cfg;
    srv->verbose = verbose;
    srv->max = (unsigned)max;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->changed, NULL);
    if (gethostname(srv->hostname, sizeof srv->hostname - 1) != 0 || !srv->hostname[0])
        strcpy(srv->hostname, "localhost");

    /* A client vanishing mid-reply must not kill the server; writes report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char err[512];
    int rc = PX_OK, lfd = -1;
    pn_delivery_keys *secret = pn_load_delivery_keys(cfg, err, sizeof err);
    if (!secret) {
        pu_err("%s", err);
        rc = PX_CONFIG;
        goto out;
    }
    srv->secret = secret;
    const char *sock_path = listen_spec && strncmp(listen_spec, "unix:", 5) == 0 ? listen_spec + 5 : NULL;
    struct stat made = {0};
    int supervised = 0; /* a root parent removes the socket */
    if (listen_spec) {
        lfd = listen_on(listen_spec, group, err, sizeof err);
        if (lfd < 0) {
            pu_err("%s", err);
            rc = PX_OSERR;
            goto out;
        }
        if (sock_path && lstat(sock_path, &made) != 0) {
            pu_err("%s: %s", sock_path, strerror(errno));
            rc = PX_OSERR;
            goto out;
        }
    }
    if (sock_path && user && geteuid() == 0) {
        pid_t child = fork();
        if (child < 0) {
            pu_err("fork: %s", strerror(errno));
            rc = PX_OSERR;
            goto out;
        }
        if (child > 0) {
            close(lfd);
            lfd = -1;
            sodium_free(secret);
            secret = NULL;
            rc = supervise(child, sock_path, &made);
            goto out;
        }
        supervised = 1;
    }
    if (user && geteuid() == 0 && drop_privileges(user, err, sizeof err) != 0) {
        pu_err("%s", err);
        rc = PX_OSERR;
        goto out;
    }
    if (stdio) {
        rc = serve(srv, STDIN_FILENO, STDOUT_FILENO) == 0 ? PX_OK : PX_IOERR;
        goto out;
    }
    pu_info("lmtp: listening on %s (at most %u sessions)", listen_spec, srv->max);
    rc = accept_loop(srv, lfd);
    lfd = -1;
    if (sock_path && !supervised)
        remove_own_socket(sock_path, &made);
out:
    if (lfd >= 0)
        close(lfd);
    if (secret)
        sodium_free(secret);
    pthread_cond_destroy(&srv->changed);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return rc;
}
