/* gateway: `postern serve`, the parent process (docs/design.md, "Processes"). As root it checks
 * the configuration, binds every listener and reads the certificate, then forks
 *   the vault    (vault_user): unlocked keys, Argon2id; talks only to the network process;
 *   the network  (user): IMAP sessions, NNTP, TLS;
 * and stays behind to forward SIGTERM/SIGINT, re-read the configuration and the certificate on
 * SIGHUP (gateway/reload.c) and notice a
 * child that dies (then it stops the other one and exits non-zero). Runs in the foreground
 * and logs to stderr, as systemd expects. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "gateway/gateway.h"
#include "gateway/gw.h"
#include "repair/repair.h"
#include "sandbox/sandbox.h"
#include "util/util.h"
#include "vault/vault.h"

#define KILL_AFTER_S 10 /* a child that ignores SIGTERM this long gets SIGKILL */

typedef struct identity {
    bool drop; /* false when not started as root */
    uid_t uid;
    gid_t gid;
    char name[64];
} identity;

static int lookup_identity(const char *name, const char *key, identity *id)
{
    snprintf(id->name, sizeof id->name, "%s", name);
    id->drop = geteuid() == 0;
    if (!id->drop)
        return 0;
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        pu_log(PU_ERROR, "[gateway] %s: no such user '%s'%s%s", key, name, errno ? ": " : " (create it, e.g. useradd --system)",
               errno ? strerror(errno) : "");
        return -1;
    }
    if (pw->pw_uid == 0) {
        pu_log(PU_ERROR, "[gateway] %s: '%s' is root; the gateway's processes must not run as root", key, name);
        return -1;
    }
    id->uid = pw->pw_uid;
    id->gid = pw->pw_gid;
    return 0;
}

static int drop_privileges(const identity *id, const char *role)
{
    if (!id->drop)
        return 0;
    if (setgroups(1, &id->gid) != 0 || setresgid(id->gid, id->gid, id->gid) != 0 ||
        setresuid(id->uid, id->uid, id->uid) != 0) {
        pu_log(PU_ERROR, "%s process: cannot become user %s: %s", role, id->name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() != id->uid || getegid() != id->gid) {
        pu_log(PU_ERROR, "%s process: privileges were not dropped", role);
        return -1;
    }
    /* no core dumps, no ptrace by other processes of the same user */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return 0;
}

/* Before the drop: the child's own file system view (sandbox.h, ps_sandbox_view). The network
 * process sees the libraries, what name lookups and TLS verification read, state_dir and
 * the sites' CA files, and nothing else: not /etc/postern (the delivery secret, the writer
 * key, NNTP passwords), not the rest of the host. The vault sees next to nothing. Where the
 * kernel or the service manager forbids it (systemd's RestrictNamespaces; the unit's own
 * ProtectSystem view applies there), the child goes on and the log says so. */
static void enter_view(const pn_config *cfg, enum ps_sandbox_role role, const identity *id, const char *name)
{
    if (!id->drop)
        return; /* not root: no namespace to make, and no privilege to drop either */
    static const char *const system[] = {
        "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc/resolv.conf", "/etc/hosts",
        "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf", "/etc/services", "/etc/protocols",
        "/etc/localtime", "/etc/ssl", "/dev/null", "/dev/urandom", "/dev/random", "/proc",
    };
    ps_view_path v[sizeof system / sizeof system[0] + 1 + PN_MAX_SITES];
    size_t n = 0;
    if (role == PS_SANDBOX_VAULT) {
        /* the sanitizer's leak check reads /proc/self/maps at exit */
        v[n++] = (ps_view_path){"/dev/null", false};
        v[n++] = (ps_view_path){"/proc", false};
    } else {
        for (size_t i = 0; i < sizeof system / sizeof system[0]; i++)
            v[n++] = (ps_view_path){system[i], false};
        v[n++] = (ps_view_path){cfg->state_dir, true};
        for (size_t i = 0; i < cfg->n_sites; i++)
            if (cfg->sites[i].ca_file[0])
                v[n++] = (ps_view_path){cfg->sites[i].ca_file, false};
    }
    char err[PATH_MAX + 128];
    if (ps_sandbox_view(v, n, err, sizeof err) != 0)
        pu_log(PU_WARN, "%s process: no private file system view (%s): it sees the host's files", name, err);
    else
        pu_log(PU_DEBUG, "%s process: private file system view of %zu paths", name, n);
}

/* After the drop: no_new_privs and the role's seccomp deny list (sandbox.h). */
static int confine(enum ps_sandbox_role role, const char *name)
{
    char err[160];
    if (ps_sandbox_enter(role, err, sizeof err) != 0) {
        pu_log(PU_ERROR, "%s process: cannot confine it: %s", name, err);
        return -1;
    }
    return 0;
}

/* The network process needs state_dir (and the users/ and articles/ it keeps there): tried as
 * that user, in a throwaway child that drops privileges exactly as the network process will,
 * so that --check and the start refuse the same directories. */
static int check_state_dir(const pn_config *cfg, const identity *net_id)
{
    pid_t pid = fork();
    if (pid < 0) {
        pu_log(PU_ERROR, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (drop_privileges(net_id, "network") != 0)
            _exit(1);
        const char *subs[] = {"", "/users", "/articles"};
        for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
            char path[PATH_MAX + 16];
            snprintf(path, sizeof path, "%s%s", cfg->state_dir, subs[i]);
            struct stat st;
            if (i > 0 && stat(path, &st) != 0 && errno == ENOENT)
                continue; /* made when first needed */
            if (access(path, R_OK | W_OK | X_OK) != 0) {
                pu_log(PU_ERROR, "%s %s is not usable by the network process (user %s, uid %u): %s",
                       i ? "directory" : "state_dir", path, net_id->name, (unsigned)getuid(), strerror(errno));
                _exit(1);
            }
        }
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The gateway does not read these, but a copy others can read is worth a loud word. */
static void warn_loose_secrets(const pn_config *cfg)
{
    const char *paths[] = {cfg->delivery_secret_path, cfg->authority_secret_path};
    const char *keys[] = {"delivery_secret", "authority_secret"};
    for (size_t i = 0; i < 2; i++) {
        char why[PATH_MAX * 2 + 128];
        if (paths[i][0] && pu_secret_path_private(paths[i], why, sizeof why) != 0)
            pu_log(PU_WARN, "WARNING: UNPROTECTED SECRET: %s %s", keys[i], why);
    }
}

static int bind_listener(const pn_listen *a, bool tls, bool pop3, gw_listener *out)
{
    out->pop3 = pop3;
    snprintf(out->name, sizeof out->name, strchr(a->addr, ':') ? "[%s]:%s" : "%s:%s", a->addr, a->port);
    out->implicit_tls = tls;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(a->addr, a->port, &hints, &ai);
    if (rc != 0) {
        pu_log(PU_ERROR, "cannot listen on %s: %s", out->name, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 511) != 0) {
        pu_log(PU_ERROR, "cannot listen on %s: %s", out->name, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    out->fd = fd;
    return 0;
}

/* 10000 sessions need 10000 descriptors and a few for NNTP, the vault and the listeners. */
static void raise_fd_limit(unsigned max_connections)
{
    rlim_t want = (rlim_t)max_connections + 256;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    struct rlimit nrl = {want, rl.rlim_max >= want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &nrl) != 0) {
        nrl.rlim_cur = nrl.rlim_max = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nrl);
        getrlimit(RLIMIT_NOFILE, &rl);
        pu_log(PU_WARN, "only %llu file descriptors: fewer than max_connections = %u sessions fit",
               (unsigned long long)rl.rlim_cur, max_connections);
    }
}

static int check_config(const pn_config *cfg)
{
    const pn_gateway *g = &cfg->gateway;
    if (g->n_imap + g->n_imaps + g->n_pop3 + g->n_pop3s == 0) {
        pu_log(PU_ERROR, "%s: [gateway] has no imap, imaps, pop3 or pop3s address to listen on", cfg->path);
        return -1;
    }
    if (cfg->n_sites == 0) {
        pu_log(PU_ERROR, "%s: no [site] section: the gateway reads mail from the news servers", cfg->path);
        return -1;
    }
    if (cfg->n_authorities == 0) {
        pu_log(PU_ERROR, "%s", cfg->authority_error);
        return -1;
    }
    if ((g->n_imap || g->n_pop3) && !g->tls_cert[0] && !g->allow_plaintext_auth) {
        pu_log(PU_ERROR, "%s: [gateway] imap or pop3 without tls_cert and allow_plaintext_auth = no: nobody "
                         "could log in",
               cfg->path);
        return -1;
    }
    struct stat st;
    if (stat(cfg->state_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        pu_log(PU_ERROR, "state_dir %s: %s", cfg->state_dir, errno ? strerror(errno) : "not a directory");
        return -1;
    }
    return 0;
}

static int load_pem(const pn_config *cfg, gw_pem *pem)
{
    memset(pem, 0, sizeof *pem);
    if (!cfg->gateway.tls_cert[0])
        return 0;
    char err[512];
    if (gw_pem_read(cfg->gateway.tls_cert, cfg->gateway.tls_key, pem, err, sizeof err) != 0) {
        pu_log(PU_ERROR, "%s", err);
        return -1;
    }
    SSL_CTX *ctx = gw_tls_ctx_new(pem, err, sizeof err);
    if (!ctx) {
        pu_log(PU_ERROR, "%s", err);
        gw_pem_free(pem);
        return -1;
    }
    SSL_CTX_free(ctx);
    return 0;
}

static void reload_certificate(const pn_config *cfg, int ctl_fd)
{
    if (!cfg->gateway.tls_cert[0]) {
        pu_log(PU_INFO, "SIGHUP: no tls_cert configured, nothing to reload");
        return;
    }
    gw_pem pem;
    if (load_pem(cfg, &pem) != 0) {
        pu_log(PU_ERROR, "SIGHUP: keeping the old certificate");
        return;
    }
    if (gw_pem_send(ctl_fd, &pem) != 0)
        pu_log(PU_ERROR, "SIGHUP: cannot pass the certificate to the network process: %s", strerror(errno));
    else
        pu_log(PU_INFO, "SIGHUP: certificate re-read from %s", cfg->gateway.tls_cert);
    gw_pem_free(&pem);
}

static void describe_exit(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, cap, "stopped (status %#x)", (unsigned)status);
}

static void usage(FILE *to)
{
    fprintf(to, "usage: postern serve [--foreground] [--verbose] [--check]\n"
                "  Runs the IMAP gateway of [gateway] in postern.conf in the foreground, logging to stderr.\n"
                "  --verbose  also log debug lines (connections, command names; never arguments)\n"
                "  --check    check the configuration, certificate and users, then exit\n"
                "  SIGHUP re-reads the configuration (timeouts, connection limits, keyrecord_cache,\n"
                "  uid_claim_delay; says what needs a restart) and tls_cert/tls_key; SIGTERM or SIGINT stops.\n"
                "  `postern who` and `postern kick` talk to it over state_dir/control; with\n"
                "  [metrics] listen it answers GET /metrics (Prometheus) and GET /health there.\n");
}

/* The children end through exit(), not _exit(): the sanitizer builds check for leaks then. */
static void __attribute__((noreturn)) child_exit(int rc)
{
    exit(rc);
}

#define QUICK_DEATH_S 10        /* a pair that dies this soon after starting... */
#define QUICK_DEATHS_MAX 3      /* ...this many times in a row stops the gateway */
#define RESTART_DELAY_MAX_S 60  /* back-off between restarts: 1 s doubling to this */

/* What the parent keeps to (re)start its children: the listeners stay open in the parent so
 * that connections wait in the backlog while the network process restarts. */
typedef struct children {
    const pn_config *cfg;
    const identity *vault_id, *net_id;
    gw_listener *ls;
    size_t n;
    int metrics_fd; /* [metrics] listen, or -1 */
    const sigset_t *old;
    pid_t vault, net;
    int ctl; /* the parent's end of the control socket to the network process */
    time_t started;
    const pn_writer_key *writer; /* APPEND's signing key, or NULL */
} children;

static void close_listeners(children *k)
{
    for (size_t i = 0; i < k->n; i++)
        close(k->ls[i].fd);
    free(k->ls);
    k->ls = NULL;
    k->n = 0;
    if (k->metrics_fd >= 0)
        close(k->metrics_fd);
    k->metrics_fd = -1;
}

/* Forks the vault and the network process, connected by a new socketpair. 0, or -1 (nothing
 * left running). pem is the network process's certificate; the caller frees its copy. */
static int start_pair(children *k, gw_pem *pem)
{
    const pn_config *cfg = k->cfg;
    const pn_gateway *g = &cfg->gateway;
    int vault_sp[2] = {-1, -1}, ctl_sp[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, vault_sp) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl_sp) != 0) {
        pu_log(PU_ERROR, "socketpair: %s", strerror(errno));
        if (vault_sp[0] >= 0) {
            close(vault_sp[0]);
            close(vault_sp[1]);
        }
        return -1;
    }
    pid_t vault_pid = fork();
    if (vault_pid == 0) {
        close_listeners(k);
        close(vault_sp[1]);
        close(ctl_sp[0]);
        close(ctl_sp[1]);
        gw_pem_free(pem);
        /* the vault never talks NNTP: drop its copy of the news server passwords */
        pn_config_free((pn_config *)cfg);
        enter_view(cfg, PS_SANDBOX_VAULT, k->vault_id, "vault");
        if (drop_privileges(k->vault_id, "vault") != 0 || confine(PS_SANDBOX_VAULT, "vault") != 0)
            child_exit(PX_OSERR);
        /* it stops when the network process closes the socket, after wiping every key */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        sigprocmask(SIG_SETMASK, k->old, NULL);
        vault_config vc;
        vault_config_init(&vc);
        vc.authority_pks = (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk;
        vc.n_authorities = cfg->n_authorities;
        vc.kdf_pool_memory = g->kdf_pool_memory;
        vc.grace_ms = g->login_grace * 1000u;
        pu_log(PU_INFO, "vault process ready (uid %u)", (unsigned)getuid());
        child_exit(vault_serve(vault_sp[0], &vc) == 0 ? PX_OK : PX_SOFTWARE);
    }
    pid_t net_pid = vault_pid < 0 ? -1 : fork();
    if (net_pid == 0) {
        close(vault_sp[0]);
        close(ctl_sp[0]);
        enter_view(cfg, PS_SANDBOX_NETWORK, k->net_id, "network");
        if (drop_privileges(k->net_id, "network") != 0 || confine(PS_SANDBOX_NETWORK, "network") != 0)
            child_exit(PX_OSERR);
        sigprocmask(SIG_SETMASK, k->old, NULL);
        child_exit(gw_net_run(cfg, k->ls, k->n, vault_sp[1], ctl_sp[1], k->metrics_fd, pem, k->writer));
    }
    close(vault_sp[0]);
    close(vault_sp[1]);
    close(ctl_sp[1]);
    if (net_pid < 0) {
        pu_log(PU_ERROR, "fork: %s", strerror(errno));
        if (vault_pid > 0) {
            kill(vault_pid, SIGKILL);
            waitpid(vault_pid, NULL, 0);
        }
        close(ctl_sp[0]);
        return -1;
    }
    k->vault = vault_pid;
    k->net = net_pid;
    k->ctl = ctl_sp[0];
    k->started = time(NULL);
    pu_log(PU_INFO, "serving: vault pid %ld, network pid %ld", (long)vault_pid, (long)net_pid);
    return 0;
}

static volatile sig_atomic_t repair_stop;

static void repair_stop_handler(int sig)
{
    (void)sig;
    repair_stop = 1;
}

/* The repair process (repair/): a pass over every site each [repair] interval, so that a
 * site that lost articles or comes back after an outage is made whole without an admin.
 * It holds only the news servers' credentials, as the network process does, and runs as its
 * user. */
static pid_t start_repairer(children *k)
{
    const pn_config *cfg = k->cfg;
    pid_t pid = fork();
    if (pid != 0) {
        if (pid < 0)
            pu_log(PU_ERROR, "fork (repair process): %s", strerror(errno));
        return pid;
    }
    close_listeners(k);
    if (k->ctl >= 0)
        close(k->ctl);
    enter_view(cfg, PS_SANDBOX_NETWORK, k->net_id, "repair"); /* the network process's view */
    if (drop_privileges(k->net_id, "repair") != 0 || confine(PS_SANDBOX_NETWORK, "repair") != 0)
        child_exit(PX_OSERR);
    struct sigaction sa = {.sa_handler = repair_stop_handler}; /* no SA_RESTART: wakes its sleep */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    sigprocmask(SIG_SETMASK, k->old, NULL);
    pu_log(PU_INFO, "repair process ready (a pass every %u s over %zu sites)", cfg->repair_interval, cfg->n_sites);
    pr_run_periodic(cfg, cfg->repair_interval, (volatile const int *)&repair_stop);
    child_exit(PX_OK);
}

/* SIGHUP: the configuration again (what the running processes can take), then the
 * certificate. */
static void reload(pn_config *run, int ctl_fd, bool net_running)
{
    pu_buf changed = PU_BUF_INIT, restart = PU_BUF_INIT;
    char err[512];
    if (gw_reload_config(run, run->path, &changed, &restart, err, sizeof err) != 0) {
        pu_log(PU_ERROR, "SIGHUP: %s; the configuration stays as it was", err);
    } else {
        if (net_running && changed.len && gw_reload_send(ctl_fd, &run->gateway) != 0)
            pu_log(PU_ERROR, "SIGHUP: cannot pass the settings to the network process: %s", strerror(errno));
        if (changed.len)
            pu_log(PU_INFO, "SIGHUP: configuration reloaded: %s", changed.data);
        else
            pu_log(PU_INFO, "SIGHUP: configuration re-read; no setting that can change while running changed");
        if (restart.len)
            pu_log(PU_WARN, "SIGHUP: not applied until postern serve restarts: %s", restart.data);
    }
    pu_buf_free(&changed);
    pu_buf_free(&restart);
    if (net_running)
        reload_certificate(run, ctl_fd);
}

static int serve(pn_config *cfg, int argc, char **argv);

int gw_cmd_serve(const pn_config *cfg, int argc, char **argv)
{
    /* the parent's own copy: SIGHUP changes it, and children started later get the change */
    pn_config *run = malloc(sizeof *run);
    if (!run)
        return PX_OSERR;
    memcpy(run, cfg, sizeof *run);
    int rc = serve(run, argc, argv);
    pn_config_free(run);
    free(run);
    return rc;
}

static int serve(pn_config *cfg, int argc, char **argv)
{
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--foreground") == 0)
            continue; /* the only mode: systemd and supervisors want it */
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0)
            pu_log_verbose = 1;
        else if (strcmp(argv[i], "--check") == 0)
            check = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return PX_OK;
        } else {
            usage(stderr);
            return PX_USAGE;
        }
    }
    if (gw_wipe_library_memory() != 0) /* before anything touches OpenSSL or libevent */
        pu_log(PU_WARN, "OpenSSL was in use already: its freed buffers are not wiped");
    const pn_gateway *g = &cfg->gateway;
    identity net_id, vault_id;
    if (check_config(cfg) != 0 || lookup_identity(g->user, "user", &net_id) != 0 ||
        lookup_identity(g->vault_user, "vault_user", &vault_id) != 0 || check_state_dir(cfg, &net_id) != 0)
        return PX_CONFIG;
    warn_loose_secrets(cfg);
    gw_pem pem;
    if (load_pem(cfg, &pem) != 0)
        return PX_CONFIG;
    /* APPEND signs what it posts (docs/formats.md section 3); without a key the gateway still
     * serves mail, and APPEND says it cannot store */
    char wwarn[512], werr[PATH_MAX + 512];
    pn_writer_key *writer = pn_load_writer_key(cfg, wwarn, sizeof wwarn, werr, sizeof werr);
    if (!writer)
        pu_log(PU_WARN, "APPEND will be refused: %s", werr);
    else if (wwarn[0])
        pu_log(PU_WARN, "%s", wwarn);
    if (check) {
        gw_pem_free(&pem);
        if (writer)
            sodium_free(writer);
        printf("configuration OK\n");
        return PX_OK;
    }
    if (!net_id.drop)
        pu_log(PU_WARN, "not started as root: the gateway's processes keep uid %u (no privilege separation)",
               (unsigned)getuid());
    raise_fd_limit(g->max_connections);

    size_t n = g->n_imap + g->n_imaps + g->n_pop3 + g->n_pop3s;
    gw_listener *ls = calloc(n, sizeof *ls);
    if (!ls) {
        gw_pem_free(&pem);
        return PX_OSERR;
    }
    size_t bound = 0;
    size_t want = 0;
    for (size_t i = 0; i < g->n_imap && bound == want; i++, want++)
        bound += bind_listener(&g->imap[i], false, false, &ls[bound]) == 0;
    for (size_t i = 0; i < g->n_imaps && bound == want; i++, want++)
        bound += bind_listener(&g->imaps[i], true, false, &ls[bound]) == 0;
    for (size_t i = 0; i < g->n_pop3 && bound == want; i++, want++)
        bound += bind_listener(&g->pop3[i], false, true, &ls[bound]) == 0;
    for (size_t i = 0; i < g->n_pop3s && bound == want; i++, want++)
        bound += bind_listener(&g->pop3s[i], true, true, &ls[bound]) == 0;
    /* the metrics port too, here: it may be a privileged one, and it stays open across a
     * restart of the network process like the others */
    gw_listener metrics = {.fd = -1};
    bool metrics_failed = bound == n && cfg->n_metrics && bind_listener(&cfg->metrics[0], false, false, &metrics) != 0;
    if (bound < n || metrics_failed) {
        for (size_t i = 0; i < bound; i++)
            close(ls[i].fd);
        free(ls);
        gw_pem_free(&pem);
        return PX_CONFIG;
    }

    /* Signals wait in the mask until sigtimedwait takes them; children restore the old mask. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);

    children kids = {.cfg = cfg, .vault_id = &vault_id, .net_id = &net_id, .ls = ls, .n = n,
                     .metrics_fd = metrics.fd, .old = &old, .vault = -1, .net = -1, .ctl = -1,
                     .writer = writer};
    int rc = start_pair(&kids, &pem);
    gw_pem_free(&pem);
    if (rc != 0) {
        close_listeners(&kids);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return PX_OSERR;
    }
    /* no repair without two sites to compare, or when the admin runs it elsewhere */
    bool repairs = cfg->repair_interval > 0 && cfg->n_sites >= 2;
    pid_t repair_pid = repairs ? start_repairer(&kids) : -1;
    time_t repair_started = time(NULL), repair_due = 0;

    bool stopping = false, failed = false, restarting = false;
    time_t kill_at = 0, restart_at = 0;
    unsigned restart_delay = 1, quick_deaths = 0;
    bool cause_logged = false; /* this restart's cause is in the log */
    while (kids.vault > 0 || kids.net > 0 || repair_pid > 0 || (restart_at && !stopping)) {
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping)
                pu_log(PU_INFO, "stopping (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            stopping = true;
            /* the vault ignores it and ends when the network process closes its socket */
            pid_t all[] = {kids.net, kids.vault, repair_pid};
            for (size_t i = 0; i < 3; i++)
                if (all[i] > 0)
                    kill(all[i], SIGTERM);
            if (!kill_at)
                kill_at = time(NULL) + KILL_AFTER_S;
        } else if (sig == SIGHUP && !stopping) {
            reload(cfg, kids.ctl, kids.net > 0);
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            char how[96];
            describe_exit(status, how, sizeof how);
            if (pid == repair_pid) {
                /* mail is served without it: restart it, not the gateway (at most every 30 s) */
                repair_pid = -1;
                if (!stopping) {
                    pu_log(PU_ERROR, "the repair process (pid %ld) %s; starting it again", (long)pid, how);
                    repair_due = repair_started + 30;
                }
                continue;
            }
            const char *who = pid == kids.net ? "network" : pid == kids.vault ? "vault" : NULL;
            if (!who)
                continue;
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (stopping) {
                if (!clean)
                    pu_log(PU_WARN, "the %s process (pid %ld) %s", who, (long)pid, how);
            } else {
                if (!restarting) {
                    /* Sessions die with the network process, keys with the vault; the other
                     * one follows (the network process says BYE to its sessions and saves
                     * their state when the vault goes), then both start again. */
                    restarting = true;
                    kill_at = time(NULL) + KILL_AFTER_S;
                    if (pid == kids.vault && kids.net > 0)
                        kill(kids.net, SIGTERM);
                }
                /* the cause is the first death that was not clean: a vault whose network
                 * process went away ends cleanly, and may be reaped before it */
                if (!clean)
                    pu_log(PU_ERROR, "the %s process (pid %ld) %s%s", who, (long)pid, how,
                           cause_logged ? "" : "; restarting the vault and network processes");
                else
                    pu_log(PU_INFO, "the %s process (pid %ld) %s", who, (long)pid, how);
                cause_logged |= !clean;
            }
            if (pid == kids.net) {
                kids.net = -1;
                /* the vault follows the network process; make sure it is not waiting on us */
                if (kids.vault > 0)
                    kill(kids.vault, SIGTERM);
            } else {
                kids.vault = -1;
            }
        }
        time_t now = time(NULL);
        if (restarting && kids.vault <= 0 && kids.net <= 0) {
            if (!cause_logged && !stopping)
                pu_log(PU_ERROR, "the vault and network processes ended; restarting them");
            cause_logged = false;
            restarting = false;
            kill_at = 0;
            close(kids.ctl);
            kids.ctl = -1;
            /* a pair that dies soon after it started is not helped by starting it again */
            if (now - kids.started < QUICK_DEATH_S) {
                quick_deaths++;
            } else {
                quick_deaths = 0;
                restart_delay = 1;
            }
            if (quick_deaths >= QUICK_DEATHS_MAX) {
                pu_log(PU_ERROR, "the gateway's processes died %u times within %d s of starting; giving up",
                       quick_deaths, QUICK_DEATH_S);
                failed = stopping = true;
                if (repair_pid > 0)
                    kill(repair_pid, SIGTERM);
                kill_at = now + KILL_AFTER_S;
            } else if (!stopping) {
                restart_at = now + restart_delay;
                restart_delay = restart_delay * 2 > RESTART_DELAY_MAX_S ? RESTART_DELAY_MAX_S : restart_delay * 2;
            }
        }
        if (restart_at && !stopping && now >= restart_at) {
            restart_at = 0;
            gw_pem fresh;
            if (load_pem(cfg, &fresh) != 0 || start_pair(&kids, &fresh) != 0) {
                pu_log(PU_ERROR, "cannot restart the vault and network processes; stopping");
                failed = stopping = true;
                if (repair_pid > 0)
                    kill(repair_pid, SIGTERM);
                kill_at = now + KILL_AFTER_S;
            }
            gw_pem_free(&fresh);
        }
        if (!stopping && repair_due && now >= repair_due) {
            repair_due = 0;
            repair_started = now;
            repair_pid = start_repairer(&kids);
        }
        if ((stopping || restarting) && kill_at && now >= kill_at) {
            pu_log(PU_WARN, "children still running after %d s: killing them", KILL_AFTER_S);
            pid_t all[] = {kids.net, kids.vault, stopping ? repair_pid : -1};
            for (size_t i = 0; i < 3; i++)
                if (all[i] > 0)
                    kill(all[i], SIGKILL);
            kill_at = 0;
        }
    }
    if (kids.ctl >= 0)
        close(kids.ctl);
    close_listeners(&kids);
    if (writer)
        sodium_free(writer);
    sigprocmask(SIG_SETMASK, &old, NULL);
    pu_log(failed ? PU_ERROR : PU_INFO, "gateway stopped%s", failed ? " after a failure" : "");
    return failed ? PX_SOFTWARE : PX_OK;
}
