/* gateway: `postern who` and `postern kick`, clients of the running gateway's control socket
 * (state_dir/control, control.c). Exit codes: 0 done, 1 no such session, 2 the gateway is not
 * running or cannot be reached, 3 it refused or answered nonsense, 64 usage. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "article/article.h"
#include "gateway/gateway.h"
#include "gateway/gw.h"
#include "util/util.h"

#define EXIT_NONE 1
#define EXIT_DOWN 2
#define EXIT_REFUSED 3
#define CLIENT_TIMEOUT_S 10

static const char who_usage[] =
    "usage: postern who [ADDRESS]\n"
    "Lists the sessions of the running `postern serve` (all, or ADDRESS's): session id, user\n"
    "(- before login), protocol, TLS (tls, starttls or plain), client address, connected since\n"
    "(UTC), seconds since the client last sent anything, and the session's state. It asks the\n"
    "gateway over its control socket, state_dir/control (root only).\n"
    "Exit 0 when sessions are listed, 1 when there are none, 2 when the gateway is not running,\n"
    "3 when it refused.";

static const char kick_usage[] =
    "usage: postern kick ADDRESS | postern kick --id ID\n"
    "Ends every session of ADDRESS (or the session ID from `postern who`) in the running\n"
    "`postern serve`: IMAP clients get `* BYE`, POP3 clients `-ERR`, then the connection closes\n"
    "(the user's state is saved as at a logout). Says how many sessions were ended. Root only.\n"
    "Exit 0 when sessions were ended, 1 when there were none, 2 when the gateway is not\n"
    "running, 3 when it refused.";

/* Connects to the control socket: the descriptor, or -1 with the exit code in *rc. */
static int ctl_connect(const pn_config *cfg, int *rc)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", cfg->state_dir, GW_CTL_NAME);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        pu_err("%s: path too long for a socket", path);
        *rc = EXIT_DOWN;
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        pu_err("socket: %s", strerror(errno));
        *rc = EXIT_DOWN;
        return -1;
    }
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        int e = errno;
        if (e == ENOENT || e == ECONNREFUSED)
            pu_err("the gateway is not running (no one listens on %s)", path);
        else if (e == EACCES || e == EPERM)
            pu_err("%s: %s (only root and the gateway's user may use it)", path, strerror(e));
        else
            pu_err("%s: %s", path, strerror(e));
        close(fd);
        *rc = EXIT_DOWN;
        return -1;
    }
    return fd;
}

/* Sends the request and reads the reply line by line: each "S" row goes to row(), the
 * final "OK n" sets *count. 0, or the exit code. */
static int ctl_ask(const pn_config *cfg, const char *request, int (*row)(const gw_ctl_row *r, void *arg),
                   void *arg, unsigned long *count)
{
    int rc = 0;
    int fd = ctl_connect(cfg, &rc);
    if (fd < 0)
        return rc;
    size_t len = strlen(request);
    if (send(fd, request, len, MSG_NOSIGNAL) != (ssize_t)len || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
        pu_err("cannot send to the gateway: %s", strerror(errno));
        close(fd);
        return EXIT_DOWN;
    }
    FILE *in = fdopen(fd, "r");
    if (!in) {
        close(fd);
        return EXIT_DOWN;
    }
    char line[GW_CTL_REPLY_MAX + 2];
    rc = EXIT_REFUSED;
    bool done = false;
    while (!done && fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            pu_err("the gateway's answer has an overlong or unfinished line");
            break;
        }
        line[--n] = '\0';
        gw_ctl_row r;
        char *end;
        if (strncmp(line, "S ", 2) == 0) {
            if (gw_ctl_parse_row(line, &r) != 0) {
                pu_err("the gateway sent a line this postern does not understand: %.80s", line);
                break;
            }
            if (row)
                row(&r, arg);
        } else if (strncmp(line, "OK ", 3) == 0 && line[3] >= '0' && line[3] <= '9' &&
                   (errno = 0, *count = strtoul(line + 3, &end, 10), errno == 0 && !*end)) {
            rc = 0;
            done = true;
        } else if (strncmp(line, "ERR ", 4) == 0) {
            pu_err("the gateway says: %s", line + 4);
            done = true;
        } else {
            pu_err("the gateway sent a line this postern does not understand: %.80s", line);
            break;
        }
    }
    if (!done && rc == EXIT_REFUSED && !ferror(in) && feof(in))
        pu_err("the gateway closed the connection without an answer (only root and the gateway's user may ask)");
    else if (!done && ferror(in))
        pu_err("reading the gateway's answer: %s", strerror(errno));
    fclose(in);
    return rc;
}

typedef struct who_ctx {
    const char *only; /* canonical address, or NULL */
    unsigned long shown;
} who_ctx;

static int print_row(const gw_ctl_row *r, void *arg)
{
    who_ctx *w = arg;
    if (w->only && strcmp(r->user, w->only) != 0)
        return 0;
    if (w->shown++ == 0)
        printf("%-6s %-30s %-5s %-8s %-24s %-20s %6s  %s\n", "ID", "USER", "PROTO", "TLS", "CLIENT", "SINCE (UTC)",
               "IDLE", "STATE");
    char since[32] = "?";
    time_t t = (time_t)r->since;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm);
    char proto[8];
    size_t i = 0;
    for (; r->proto[i] && i < sizeof proto - 1; i++)
        proto[i] = (char)(r->proto[i] >= 'a' && r->proto[i] <= 'z' ? r->proto[i] - 32 : r->proto[i]);
    proto[i] = '\0';
    printf("%-6llu %-30s %-5s %-8s %-24s %-20s %5llus  %s\n", (unsigned long long)r->id, r->user, proto,
           r->transport, r->client, since, r->idle, r->state);
    return 0;
}

static int canonical(const char *address, char *out, size_t cap)
{
    char why[160];
    if (pa_address_canonical(address, out, cap, why, sizeof why) != 0) {
        pu_err("%s: %s", address, why);
        return -1;
    }
    return 0;
}

int gw_cmd_who(const pn_config *cfg, int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s\n", who_usage);
        return PX_OK;
    }
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "%s\n", who_usage);
        return PX_USAGE;
    }
    char want[PC_ADDRESS_MAX + 1];
    who_ctx w = {0};
    if (argc == 2) {
        if (canonical(argv[1], want, sizeof want) != 0)
            return PX_USAGE;
        w.only = want;
    }
    unsigned long total = 0;
    int rc = ctl_ask(cfg, "WHO", print_row, &w, &total);
    if (rc != 0)
        return rc;
    if (w.shown == 0) {
        if (w.only)
            printf("no session of %s\n", w.only);
        else
            printf("no sessions\n");
        return EXIT_NONE;
    }
    return PX_OK;
}

int gw_cmd_kick(const pn_config *cfg, int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s\n", kick_usage);
        return PX_OK;
    }
    char request[GW_CTL_LINE_MAX], want[PC_ADDRESS_MAX + 1];
    const char *what;
    if (argc == 3 && strcmp(argv[1], "--id") == 0) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(argv[2], &end, 10);
        if (argv[2][0] < '0' || argv[2][0] > '9' || *end || errno || id == 0) {
            pu_err("--id takes a session id from `postern who`, not '%s'", argv[2]);
            return PX_USAGE;
        }
        snprintf(request, sizeof request, "KICK #%llu", id);
        what = argv[2];
    } else if (argc == 2 && argv[1][0] != '-') {
        if (canonical(argv[1], want, sizeof want) != 0)
            return PX_USAGE;
        snprintf(request, sizeof request, "KICK %s", want);
        what = want;
    } else {
        fprintf(stderr, "%s\n", kick_usage);
        return PX_USAGE;
    }
    unsigned long n = 0;
    int rc = ctl_ask(cfg, request, NULL, NULL, &n);
    if (rc != 0)
        return rc;
    if (argc == 3)
        printf(n ? "ended session %s\n" : "no session %s\n", what);
    else
        printf("ended %lu session%s of %s\n", n, n == 1 ? "" : "s", what);
    return n ? PX_OK : EXIT_NONE;
}
