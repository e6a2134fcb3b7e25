/* postern mailbox ADDRESS [--show N]: unlocks the user's key with the password and lists or
 * prints the decrypted mail. Proof of the formats end to end, and an admin/debug tool. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>
#include <sodium.h>

#include "admin/admin.h"
#include "article/article.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/util.h"

#define PASSWORD_MAX 1024
#define HEADER_MAX 65536
#define MAX_LISTED 1000000

static const char usage[] =
    "usage: postern mailbox ADDRESS [--password-file FILE | --password-stdin] [--show N|<message-id>]\n"
    "Lists the user's mail (article number, arrival time, size, From, Subject), or\n"
    "writes message N exactly as delivered to stdout.";

typedef struct header_buf {
    char data[HEADER_MAX];
    size_t len;
} header_buf;

/* Keeps the header section only. The whole message is still read: only its end (the
 * writer's signature) tells delivered mail from a forgery. */
static int header_sink(void *arg, const uint8_t *data, size_t len)
{
    header_buf *h = arg;
    size_t room = sizeof h->data - 1 - h->len;
    size_t take = len < room ? len : room;
    memcpy(h->data + h->len, data, take);
    h->len += take;
    h->data[h->len] = '\0';
    return 0;
}

/* The unfolded, RFC 2047-decoded value of the first header field called name. */
static void header_value(const char *headers, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (const char *line = headers; *line && *line != '\r' && *line != '\n';) {
        const char *eol = strchr(line, '\n');
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            char raw[1024];
            size_t used = 0;
            const char *p = line + nlen + 1;
            for (;;) {
                const char *end = eol ? eol : p + strlen(p);
                for (; p < end && used < sizeof raw - 1; p++)
                    if (*p != '\r')
                        raw[used++] = *p == '\t' ? ' ' : *p;
                if (!eol || (eol[1] != ' ' && eol[1] != '\t'))
                    break;
                p = eol + 1;
                eol = strchr(p, '\n');
            }
            raw[used] = '\0';
            char *start = raw;
            while (*start == ' ')
                start++;
            size_t idx = 0;
            char *decoded = NULL;
            if (mailmime_encoded_phrase_parse("utf-8", start, strlen(start), &idx, "utf-8", &decoded) ==
                    MAILIMF_NO_ERROR &&
                decoded) {
                snprintf(out, cap, "%s", decoded);
                free(decoded);
            } else {
                snprintf(out, cap, "%s", start);
            }
            /* Terminal safety: no control characters from mail reach the admin's screen. */
            for (char *q = out; *q; q++)
                if ((unsigned char)*q < 32 || *q == 127)
                    *q = ' ';
            return;
        }
        if (!eol)
            break;
        line = eol + 1;
    }
}

typedef struct numbers {
    uint64_t *items;
    size_t n, cap;
} numbers;

static int collect_over(void *arg, const char *line, size_t len)
{
    numbers *nums = arg;
    uint64_t number;
    const char *id;
    size_t idlen;
    if (pa_over_state(line, len, &number, &id, &idlen))
        return 0; /* the user's replicated flags and UIDs, not mail */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(line, &end, 10);
    if (errno || end == line || *end != '\t' || nums->n == MAX_LISTED)
        return 0;
    if (nums->n == nums->cap) {
        size_t cap = nums->cap ? nums->cap * 2 : 256;
        uint64_t *grown = realloc(nums->items, cap * sizeof *grown);
        if (!grown)
            return 1;
        nums->items = grown;
        nums->cap = cap;
    }
    nums->items[nums->n++] = v;
    return 0;
}

static int buf_sink(void *arg, const uint8_t *data, size_t len)
{
    return pu_buf_add(arg, data, len) == 0 ? 0 : 1;
}

static void print_listing_line(uint64_t number, const pc_msg_meta *meta, const char *headers)
{
    char from[256], subject[512], when[32];
    header_value(headers, "From", from, sizeof from);
    header_value(headers, "Subject", subject, sizeof subject);
    time_t t = (time_t)meta->arrival;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
    printf("%6" PRIu64 "  %s  %9" PRIu64 "  %-30.30s  %s\n", number, when, meta->crlf_size, from, subject);
}

static int list_mailbox(ps_pool *sites, const char *group, const pc_keyrecord *rec, const uint8_t *sk)
{
    ps_group_info info;
    char err[512];
    int st = ps_group(sites, PS_ANY_SITE, group, &info, err, sizeof err);
    if (st != PS_OK) {
        pu_err("GROUP %s: %s", group, err);
        return st == PS_NOENT ? PX_NOUSER : PX_TEMPFAIL;
    }
    size_t site = ps_pool_site(sites); /* the numbers are this site's */
    numbers nums = {0};
    if (info.count > 0) {
        char range[64];
        snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, info.low, info.high);
        st = ps_over(sites, site, group, range, collect_over, &nums, err, sizeof err);
        if (st != PS_OK) {
            free(nums.items);
            pu_err("OVER %s: %s", range, err);
            return PX_TEMPFAIL;
        }
    }
    header_buf *h = malloc(sizeof *h);
    if (!h) {
        free(nums.items);
        return PX_OSERR;
    }
    int progress = isatty(STDERR_FILENO);
    size_t bad = 0;
    printf("%6s  %-20s  %9s  %-30s  %s\n", "NUM", "ARRIVED", "SIZE", "FROM", "SUBJECT");
    for (size_t i = 0; i < nums.n; i++) {
        char number[24];
        snprintf(number, sizeof number, "%" PRIu64, nums.items[i]);
        if (progress)
            fprintf(stderr, "\rreading %zu/%zu", i + 1, nums.n);
        h->len = 0;
        h->data[0] = '\0';
        pc_msg_meta meta;
        st = ps_read_message(sites, site, group, number, rec->box_pk, sk, &meta, header_sink, h, err, sizeof err);
        if (progress)
            fprintf(stderr, "\r\033[K");
        if (st == PS_NOENT)
            continue; /* expired or cancelled since OVER */
        if (st != PS_OK) {
            bad++;
            printf("%6s  %s\n", number, err);
            continue;
        }
        print_listing_line(nums.items[i], &meta, h->data);
    }
    fflush(stdout);
    pu_info("%zu message%s%s", nums.n - bad, nums.n - bad == 1 ? "" : "s",
            bad ? " (and some that could not be read: see above)" : "");
    free(h);
    free(nums.items);
    return bad ? PX_DATAERR : PX_OK;
}

int adm_cmd_mailbox(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"password-file", required_argument, NULL, 'f'},
        {"password-stdin", no_argument, NULL, 's'},
        {"show", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *password_file = NULL, *show = NULL;
    int from_stdin = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            password_file = optarg;
            break;
        case 's':
            from_stdin = 1;
            break;
        case 'n':
            show = optarg;
            break;
        case 'h':
            puts(usage);
            return PX_OK;
        default:
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    char canon[PA_ADDRESS_MAX + 1], group[PA_GROUP_MAX + 1], why[256], err[1024];
    if (pa_address_canonical(argv[optind], canon, sizeof canon, why, sizeof why) != 0 ||
        pa_address_to_group(cfg->prefix, canon, group, sizeof group, why, sizeof why) != 0) {
        pu_err("%s: %s", argv[optind], why);
        return PX_NOUSER;
    }
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites)
        return PX_OSERR;
    if (ps_pool_connect(sites, PS_ANY_SITE, err, sizeof err) != PS_OK) {
        ps_pool_free(sites);
        pu_err("no news server reachable: %s", err);
        return PX_TEMPFAIL;
    }
    pc_keyrecord rec;
    int st = ps_fetch_keyrecord(sites, PS_ANY_SITE, canon, &rec, NULL, err, sizeof err);
    if (st != PS_OK) {
        ps_pool_free(sites);
        pu_err("%s", err);
        return st == PS_NOUSER ? PX_NOUSER : PX_TEMPFAIL;
    }
    char *pw = sodium_malloc(PASSWORD_MAX);
    uint8_t *sk = sodium_malloc(PC_BOX_SK_BYTES);
    int rc = PX_OSERR;
    if (!pw || !sk)
        goto out;
    int fd = from_stdin ? STDIN_FILENO : -1;
    if (password_file && (fd = open(password_file, O_RDONLY | O_CLOEXEC)) < 0) {
        pu_err("%s: %s", password_file, strerror(errno));
        rc = PX_NOINPUT;
        goto out;
    }
    long len = pu_read_password("Password: ", 0, fd, pw, PASSWORD_MAX);
    if (fd > STDIN_FILENO)
        close(fd);
    if (len < 0) {
        rc = PX_DATAERR;
        goto out;
    }
    st = pc_keyrecord_unlock(&rec, pw, (size_t)len, sk);
    if (st != PC_OK) {
        pu_err("%s", st == PC_EPASS ? "wrong password" : pc_strerror(st));
        rc = st == PC_EPASS ? PX_NOPERM : PX_OSERR;
        goto out;
    }
    if (show) {
        if (ps_group(sites, PS_ANY_SITE, group, &(ps_group_info){0}, err, sizeof err) != PS_OK) {
            pu_err("GROUP %s: %s", group, err);
            rc = PX_TEMPFAIL;
            goto out;
        }
        pc_msg_meta meta;
        /* held until the signature at its end has been checked: a forgery is never written */
        pu_buf msg = PU_BUF_INIT;
        st = ps_read_message(sites, ps_pool_site(sites), show[0] == '<' ? NULL : group, show, rec.box_pk, sk, &meta,
                             buf_sink, &msg, err, sizeof err);
        if (st == PS_OK && msg.len && fwrite(msg.data, 1, msg.len, stdout) != msg.len)
            st = PS_FAIL, snprintf(err, sizeof err, "writing the message: %s", strerror(errno));
        pu_buf_free(&msg);
        if (fflush(stdout) != 0 && st == PS_OK) {
            pu_err("writing the message: %s", strerror(errno));
            rc = PX_IOERR;
            goto out;
        }
        if (st != PS_OK)
            pu_err("%s", err);
        rc = st == PS_OK ? PX_OK : st == PS_NOENT ? PX_NOINPUT : st == PS_TEMP ? PX_TEMPFAIL : PX_DATAERR;
    } else {
        rc = list_mailbox(sites, group, &rec, sk);
    }
out:
    ps_pool_free(sites);
    if (pw)
        sodium_free(pw);
    if (sk)
        sodium_free(sk);
    return rc;
}
