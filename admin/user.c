/* postern user add|passwd|del|list|import: provisioning. A user is two newsgroups on every site (mail
 * and key record) and one signed key record; there is no other user database. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "article/article.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/util.h"

#define PASSWORD_MAX 1024

static const char usage[] =
    "usage: postern user add ADDRESS [--password-file FILE | --password-stdin] [--force]\n"
    "       postern user passwd ADDRESS [--password-file FILE | --password-stdin]\n"
    "       postern user del ADDRESS [--yes]\n"
    "       postern user list\n"
    "       postern user import [FILE | -] [--force]\n"
    "       postern user resign ADDRESS... | --all [--previous-secret FILE]\n"
    "Passwords are asked on the terminal (twice), or read from the first line of FILE or\n"
    "stdin (passwd reads the current password, then the new one, one per line).\n"
    "--force accepts a password shorter than min_password.\n"
    "del removes the user's articles and groups at every site administered here (innconf);\n"
    "add says \"added\" only when every configured site serves the new key record. del then\n"
    "add of one address (a forgotten password) starts an empty mailbox under a new key.\n"
    "import adds one user per line \"ADDRESS,PASSWORD\" (the password is the rest of the line;\n"
    "blank lines, # comments and an \"address,password\" header are skipped) from FILE or\n"
    "stdin, says [k/N] for each and why a line failed, and goes on with the next.\n"
    "resign signs the users' key records again with the authority_secret of postern.conf (an\n"
    "authority key rotation: authority_public must still list the old public key meanwhile);\n"
    "the passwords stay. --previous-secret (the old authority secret) lets each new record\n"
    "supersede the old one.";

typedef struct user_opts {
    const char *address;
    const char *password_file;
    int password_stdin;
    int force;
    int yes;
} user_opts;

static int parse_opts(int argc, char **argv, user_opts *o)
{
    static const struct option opts[] = {
        {"password-file", required_argument, NULL, 'f'},
        {"password-stdin", no_argument, NULL, 's'},
        {"force", no_argument, NULL, 'F'},
        {"yes", no_argument, NULL, 'y'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            o->password_file = optarg;
            break;
        case 's':
            o->password_stdin = 1;
            break;
        case 'F':
            o->force = 1;
            break;
        case 'y':
            o->yes = 1;
            break;
        default:
            return -1;
        }
    }
    if (optind < argc)
        o->address = argv[optind++];
    return optind == argc ? 0 : -1;
}

/* One password source for the whole command, so passwd can read two lines from it. */
static int password_fd(const user_opts *o)
{
    if (o->password_stdin)
        return STDIN_FILENO;
    if (o->password_file) {
        int fd = open(o->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            pu_err("%s: %s", o->password_file, strerror(errno));
        return fd < 0 ? -2 : fd;
    }
    return -1;
}

static int weak_password(const pn_config *cfg, const char *pw, size_t len, const char *address, int force)
{
    /* Count characters, not bytes: a UTF-8 passphrase is judged by what the user typed. */
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)pw[i] & 0xC0) != 0x80)
            chars++;
    const char *why = NULL;
    if (chars < cfg->min_password)
        why = "is too short";
    else if (strncasecmp(pw, address, strcspn(address, "@")) == 0 && len == strcspn(address, "@"))
        why = "is the user name";
    if (why && !force) {
        pu_err("the password %s (at least %u characters); choose another, or use --force", why, cfg->min_password);
        return 1;
    }
    if (why)
        pu_info("warning: the password %s; accepted because of --force", why);
    return 0;
}

/* Posts a signed key record to every site and reads it back; returns how many serve it.
 * supersedes (may be NULL) names the record it replaces, whose lock old_sk's cancel key
 * opens (the authority key that made it); resigned: the Message-ID of a re-signed record. */
static unsigned post_record(const pn_config *cfg, const pc_keyrecord *rec, const uint8_t *auth_sk,
                            const char *supersedes, const uint8_t *old_sk, int resigned)
{
    char group[PA_GROUP_MAX + 1], msgid[PA_MSGID_MAX], why[256];
    if (pa_address_to_key_group(cfg->prefix, rec->address, group, sizeof group, why, sizeof why) != 0)
        return 0;
    if (resigned)
        pa_key_message_id_resigned(rec->key_id, rec->serial, rec->authority_id, msgid);
    else
        pa_key_message_id(rec->key_id, rec->serial, msgid);
    char key[64], lock[96], extra[512];
    if (pc_cancel_key(auth_sk, msgid, key, sizeof key, lock, sizeof lock) != PC_OK)
        return 0;
    int n = snprintf(extra, sizeof extra, "Cancel-Lock: %s\r\n", lock);
    if (supersedes) {
        char old_key[64], old_lock[96];
        if (pc_cancel_key(old_sk, supersedes, old_key, sizeof old_key, old_lock, sizeof old_lock) != PC_OK)
            return 0;
        snprintf(extra + n, sizeof extra - (size_t)n, "Supersedes: %s\r\nCancel-Key: sha256:%s\r\n", supersedes,
                 old_key);
    }
    char headers[2048];
    uint8_t bin[PC_KEYRECORD_MAX];
    size_t len = pc_keyrecord_encode(rec, bin, sizeof bin);
    if (!len || !pa_key_headers(group, msgid, extra, headers, sizeof headers))
        return 0;
    unsigned copies = 0;
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites)
        return 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        char err[512];
        int st = ps_post(sites, i, headers, bin, len, -1, 0, err, sizeof err);
        ps_pool_drop(sites, i); /* one post per site, then the read-back on a new connection */
        int served = (st == PS_OK || st == PS_DUP) && adm_record_readable(cfg, &cfg->sites[i], rec, err, sizeof err);
        if ((st == PS_OK || st == PS_DUP) && !served) {
            /* 240 without a copy: innd failed to store it (a file an rmgroup left where the
             * article goes) and nnrpd parked it, or innd is paused. A second post gets the next
             * article number, or is parked too; a parked copy that comes in later is refused as
             * a duplicate once one is stored. */
            pu_info("  site %s: key record %s not served after posting (%s); posting it again", cfg->sites[i].name,
                    msgid, err);
            st = ps_post(sites, i, headers, bin, len, -1, 0, err, sizeof err);
            ps_pool_drop(sites, i);
            served = (st == PS_OK || st == PS_DUP) && adm_record_readable(cfg, &cfg->sites[i], rec, err, sizeof err);
        }
        if (st != PS_OK && st != PS_DUP) {
            pu_err("site %s: posting the key record failed: %s", cfg->sites[i].name, err);
        } else if (!served) {
            pu_err("site %s: the news server accepted key record %s but does not serve it: %s; if it parked "
                   "it (innd paused or throttled), it may still appear there later",
                   cfg->sites[i].name, msgid, err);
        } else {
            copies++;
            pu_info("  site %s: key record %s posted and read back", cfg->sites[i].name, msgid);
        }
    }
    ps_pool_free(sites);
    sodium_memzero(key, sizeof key);
    return copies;
}

/* Adds one user with the password given: the check that it does not exist, the groups on
 * every site, the key record (Argon2id) and its post and read-back at every site. A sysexits
 * code; what went wrong is said (pu_err) with the address. */
static int add_one(const pn_config *cfg, const uint8_t *auth_sk, const char *address, const char *pw, size_t len,
                   int force)
{
    char canon[PA_ADDRESS_MAX + 1], mail_group[PA_GROUP_MAX + 1], key_group[PA_GROUP_MAX + 1], why[256];
    if (pa_address_canonical(address, canon, sizeof canon, why, sizeof why) != 0 ||
        pa_address_to_group(cfg->prefix, canon, mail_group, sizeof mail_group, why, sizeof why) != 0 ||
        pa_address_to_key_group(cfg->prefix, canon, key_group, sizeof key_group, why, sizeof why) != 0) {
        pu_err("cannot add %s: %s", address, why);
        return PX_DATAERR;
    }
    if (weak_password(cfg, pw, len, canon, force))
        return PX_DATAERR;
    char err[1024];
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites)
        return PX_OSERR;
    if (ps_pool_connect(sites, PS_ANY_SITE, err, sizeof err) != PS_OK) {
        ps_pool_free(sites);
        pu_err("no news server reachable: %s", err);
        return PX_TEMPFAIL;
    }
    pc_keyrecord *rec = sodium_malloc(sizeof *rec);
    if (!rec) {
        ps_pool_free(sites);
        return PX_OSERR;
    }
    int st = ps_fetch_keyrecord(sites, PS_ANY_SITE, canon, rec, NULL, err, sizeof err);
    ps_pool_free(sites);
    int rc = PX_SOFTWARE;
    if (st == PS_OK) {
        pu_err("%s already exists (use `postern user passwd` to change its password)", canon);
        rc = PX_CANTCREAT;
        goto out;
    }
    if (st != PS_NOUSER) {
        pu_err("cannot check whether %s exists: %s", canon, err);
        rc = st == PS_TEMP ? PX_TEMPFAIL : PX_SOFTWARE;
        goto out;
    }
    pu_info("adding %s (groups %s, %s)", canon, mail_group, key_group);
    if (adm_groups_everywhere(cfg, mail_group, key_group, 1) != 0 || adm_verify_groups(cfg, canon, mail_group, key_group) != 0) {
        pu_err("the groups of %s are not on every site; nothing was posted. Fix the site(s) above and add it "
               "again", canon);
        rc = PX_TEMPFAIL;
        goto out;
    }
    pu_info("  deriving the key-wrapping key (Argon2id, %llu MiB)...",
            (unsigned long long)(cfg->kdf_memlimit >> 20));
    st = pc_keyrecord_create(canon, pw, len, cfg->kdf_opslimit, cfg->kdf_memlimit, auth_sk, rec, NULL);
    if (st != PC_OK) {
        pu_err("creating the key record of %s failed: %s", canon, pc_strerror(st));
        goto out;
    }
    unsigned serving = post_record(cfg, rec, auth_sk, NULL, NULL, 0);
    if (serving < cfg->n_sites) {
        /* a site without the record would bounce the user's mail (deliver: unknown user) */
        pu_err("%s was NOT added: %u of %zu sites serve its key record. Look at the site(s) above (their "
               "news server's log), then run `postern user del %s --yes` and add it again",
               canon, serving, cfg->n_sites, canon);
        rc = PX_TEMPFAIL;
        goto out;
    }
    printf("added %s\n", canon);
    fflush(stdout);
    rc = PX_OK;
out:
    sodium_free(rec);
    return rc;
}

static int cmd_add(const pn_config *cfg, const user_opts *o)
{
    char err[1024];
    uint8_t *auth_sk = pn_load_authority_secret(cfg, err, sizeof err);
    if (!auth_sk) {
        pu_err("%s", err);
        return PX_CONFIG;
    }
    char *pw = sodium_malloc(PASSWORD_MAX);
    int rc = PX_SOFTWARE;
    int fd = pw ? password_fd(o) : -1;
    if (!pw)
        goto out;
    if (fd == -2) {
        rc = PX_NOINPUT;
        goto out;
    }
    long len = pu_read_password("New password: ", 1, fd, pw, PASSWORD_MAX);
    if (fd > STDIN_FILENO)
        close(fd);
    rc = len < 0 ? PX_DATAERR : add_one(cfg, auth_sk, o->address, pw, (size_t)len, o->force);
out:
    sodium_free(auth_sk);
    if (pw)
        sodium_free(pw);
    return rc;
}

/* ---- user import: many users from "address,password" lines ---- */

#define IMPORT_MAX (64u << 20) /* bytes of input: a million users at ~60 bytes a line */

/* The whole input into sodium_malloc'd memory (it holds passwords): *len bytes, NUL after. */
static char *read_all_secret(int fd, size_t *len)
{
    size_t cap = 1u << 16, n = 0;
    char *buf = sodium_malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            if (cap >= IMPORT_MAX) {
                pu_err("the input is larger than %u MiB; split it", IMPORT_MAX >> 20);
                sodium_free(buf);
                return NULL;
            }
            char *bigger = sodium_malloc(cap * 2 + 1);
            if (bigger)
                memcpy(bigger, buf, n);
            sodium_free(buf);
            buf = bigger;
            cap *= 2;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            pu_err("reading the user list: %s", strerror(errno));
            sodium_free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* The next line of text (CR LF or LF, the CR dropped) as [*line, *line + *len); false at the end. */
static bool next_line(char **p, char *end, char **line, size_t *len)
{
    if (*p >= end)
        return false;
    char *nl = memchr(*p, '\n', (size_t)(end - *p));
    char *stop = nl ? nl : end;
    *line = *p;
    *len = (size_t)(stop - *p);
    if (*len && (*line)[*len - 1] == '\r')
        (*len)--;
    *p = nl ? nl + 1 : end;
    return true;
}

static bool skipped_line(const char *line, size_t len, unsigned lineno)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len || line[i] == '#')
        return true; /* blank, or a comment */
    return lineno == 1 && len >= 9 && strncasecmp(line, "address,", 8) == 0; /* a CSV header */
}

static int cmd_import(const pn_config *cfg, int argc, char **argv)
{
    const char *path = NULL;
    int force = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    int fd = STDIN_FILENO;
    if (path && strcmp(path, "-") != 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            pu_err("%s: %s", path, strerror(errno));
            return PX_NOINPUT;
        }
        struct stat stt;
        if (fstat(fd, &stt) == 0 && (stt.st_mode & 077))
            pu_info("warning: %s holds passwords and is readable by others (mode %03o); chmod 600 it",
                    path, (unsigned)(stt.st_mode & 0777));
    }
    size_t size = 0;
    char *text = read_all_secret(fd, &size);
    if (fd != STDIN_FILENO)
        close(fd);
    if (!text)
        return PX_DATAERR;
    char err[1024];
    uint8_t *auth_sk = pn_load_authority_secret(cfg, err, sizeof err);
    if (!auth_sk) {
        pu_err("%s", err);
        sodium_free(text);
        return PX_CONFIG;
    }
    /* count first, so every line can say how far the import is */
    unsigned total = 0, lineno = 0;
    char *p = text, *end = text + size, *line;
    size_t len;
    while (next_line(&p, end, &line, &len))
        total += !skipped_line(line, len, ++lineno);
    unsigned done = 0, added = 0, bad = 0, temp = 0;
    int rc = PX_OK;
    p = text;
    lineno = 0;
    while (next_line(&p, end, &line, &len)) {
        if (skipped_line(line, len, ++lineno))
            continue;
        done++;
        char *comma = memchr(line, ',', len);
        char address[PA_ADDRESS_MAX + 2];
        size_t alen = comma ? (size_t)(comma - line) : len;
        while (alen && (line[alen - 1] == ' ' || line[alen - 1] == '\t'))
            alen--;
        size_t start = 0;
        while (start < alen && (line[start] == ' ' || line[start] == '\t'))
            start++;
        int one;
        if (!comma || alen - start == 0 || alen - start > PA_ADDRESS_MAX) {
            pu_err("[%u/%u] line %u: expected ADDRESS,PASSWORD", done, total, lineno);
            one = PX_DATAERR;
        } else {
            memcpy(address, line + start, alen - start);
            address[alen - start] = '\0';
            char *pw = comma + 1; /* the rest of the line: a password may hold commas */
            size_t pwlen = (size_t)(line + len - pw);
            pu_info("[%u/%u] line %u: %s", done, total, lineno, address);
            one = pwlen ? add_one(cfg, auth_sk, address, pw, pwlen, force) : PX_DATAERR;
            if (!pwlen)
                pu_err("line %u: %s: empty password", lineno, address);
        }
        if (one == PX_OK)
            added++;
        else if (one == PX_TEMPFAIL)
            temp++;
        else
            bad++;
    }
    sodium_free(auth_sk);
    sodium_free(text);
    printf("imported %u of %u user%s", added, total, total == 1 ? "" : "s");
    if (bad || temp)
        printf(" (%u refused, %u failed for now: run the import again for those lines; users already "
               "added are refused as existing)", bad, temp);
    printf("\n");
    if (temp)
        rc = PX_TEMPFAIL;
    else if (bad)
        rc = PX_DATAERR;
    return rc;
}

static int cmd_passwd(const pn_config *cfg, const user_opts *o)
{
    char canon[PA_ADDRESS_MAX + 1], why[256], err[1024], old_msgid[PA_MSGID_MAX];
    if (pa_address_canonical(o->address, canon, sizeof canon, why, sizeof why) != 0) {
        pu_err("%s: %s", o->address, why);
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
    pc_keyrecord *rec = sodium_malloc(sizeof *rec);
    uint8_t *sk = sodium_malloc(PC_BOX_SK_BYTES);
    char *old_pw = sodium_malloc(PASSWORD_MAX), *new_pw = sodium_malloc(PASSWORD_MAX);
    uint8_t *auth_sk = NULL;
    int rc = PX_SOFTWARE;
    if (!rec || !sk || !old_pw || !new_pw) {
        ps_pool_free(sites);
        goto out;
    }
    int st = ps_fetch_keyrecord(sites, PS_ANY_SITE, canon, rec, old_msgid, err, sizeof err);
    ps_pool_free(sites);
    if (st != PS_OK) {
        pu_err("%s", err);
        rc = st == PS_NOUSER ? PX_NOUSER : PX_TEMPFAIL;
        goto out;
    }
    auth_sk = pn_load_authority_secret(cfg, err, sizeof err);
    if (!auth_sk) {
        pu_err("%s", err);
        rc = PX_CONFIG;
        goto out;
    }
    int fd = password_fd(o);
    if (fd == -2) {
        rc = PX_NOINPUT;
        goto out;
    }
    long old_len = pu_read_password("Current password: ", 0, fd, old_pw, PASSWORD_MAX);
    if (old_len < 0) {
        rc = PX_DATAERR;
        goto close_fd;
    }
    pu_info("checking the current password (Argon2id)...");
    st = pc_keyrecord_unlock(rec, old_pw, (size_t)old_len, sk);
    if (st != PC_OK) {
        pu_err("%s", st == PC_EPASS ? "the current password is wrong; nothing was changed" : pc_strerror(st));
        rc = st == PC_EPASS ? PX_NOPERM : PX_OSERR;
        goto close_fd;
    }
    long new_len = pu_read_password("New password: ", 1, fd, new_pw, PASSWORD_MAX);
    if (new_len < 0 || weak_password(cfg, new_pw, (size_t)new_len, canon, o->force)) {
        rc = PX_DATAERR;
        goto close_fd;
    }
    pu_info("re-wrapping the key of %s (Argon2id)...", canon);
    st = pc_keyrecord_rewrap(rec, sk, new_pw, (size_t)new_len, cfg->kdf_opslimit, cfg->kdf_memlimit, auth_sk);
    if (st != PC_OK) {
        pu_err("re-wrapping failed: %s", pc_strerror(st));
        goto close_fd;
    }
    if (post_record(cfg, rec, auth_sk, old_msgid, auth_sk, 0) == 0) {
        pu_err("no site accepted the new key record; the old password still works");
        rc = PX_TEMPFAIL;
        goto close_fd;
    }
    printf("password of %s changed (key record serial %" PRIu32 "); old mail stays readable\n", canon, rec->serial);
    rc = PX_OK;
close_fd:
    if (fd > STDIN_FILENO)
        close(fd);
out:
    if (rec)
        sodium_free(rec);
    if (sk)
        sodium_free(sk);
    if (old_pw)
        sodium_free(old_pw);
    if (new_pw)
        sodium_free(new_pw);
    if (auth_sk)
        sodium_free(auth_sk);
    return rc;
}

static int cmd_del(const pn_config *cfg, const user_opts *o)
{
    char canon[PA_ADDRESS_MAX + 1], mail_group[PA_GROUP_MAX + 1], key_group[PA_GROUP_MAX + 1], why[256];
    if (pa_address_canonical(o->address, canon, sizeof canon, why, sizeof why) != 0 ||
        pa_address_to_group(cfg->prefix, canon, mail_group, sizeof mail_group, why, sizeof why) != 0 ||
        pa_address_to_key_group(cfg->prefix, canon, key_group, sizeof key_group, why, sizeof why) != 0) {
        pu_err("%s: %s", o->address, why);
        return PX_NOUSER;
    }
    if (!o->yes) {
        if (!isatty(STDIN_FILENO)) {
            pu_err("deleting %s removes its mailbox on every site; add --yes to confirm", canon);
            return PX_USAGE;
        }
        fprintf(stderr, "Delete %s and its mail on every administered site? Type the address to confirm: ", canon);
        char answer[PA_ADDRESS_MAX + 2];
        if (!fgets(answer, sizeof answer, stdin) || strncmp(answer, canon, strlen(canon)) != 0 ||
            (answer[strlen(canon)] != '\n' && answer[strlen(canon)] != '\0')) {
            pu_err("not confirmed; nothing was deleted");
            return PX_USAGE;
        }
    }
    pu_info("deleting %s", canon);
    if (adm_groups_everywhere(cfg, mail_group, key_group, 0) != 0)
        return PX_TEMPFAIL;
    if (adm_purge_remote(cfg, mail_group, key_group) != 0) {
        pu_err("%s: not every article at the sites administered elsewhere was cancelled; run `postern user del "
               "%s --yes` again",
               canon, canon);
        return PX_TEMPFAIL;
    }
    size_t elsewhere = 0;
    for (size_t i = 0; i < cfg->n_sites; i++)
        elsewhere += !cfg->sites[i].innconf[0];
    if (elsewhere)
        printf("deleted %s: groups removed at the %zu site%s administered here, articles cancelled at the %zu "
               "other%s\n",
               canon, cfg->n_sites - elsewhere, cfg->n_sites - elsewhere == 1 ? "" : "s", elsewhere,
               elsewhere == 1 ? "" : "s");
    else
        printf("deleted %s\n", canon);
    return PX_OK;
}

typedef struct list_ctx {
    const pn_config *cfg;
    size_t users;
    pu_buf addresses; /* resign --all: one per line */
} list_ctx;

/* The address whose key group a LIST ACTIVE line names: 1, or 0 for any other group
 * (a mail group, or one postern did not make). */
static int key_group_address(const pn_config *cfg, const char *line, size_t len, char address[PA_ADDRESS_MAX + 1])
{
    char group[PA_GROUP_MAX + 1];
    size_t g = strcspn(line, " ");
    if (g > len || g >= sizeof group)
        return 0;
    memcpy(group, line, g);
    group[g] = '\0';
    size_t suffix = strlen(PA_KEY_SUFFIX);
    return g > suffix && strcmp(group + g - suffix, PA_KEY_SUFFIX) == 0 &&
           pa_group_to_address(cfg->prefix, group, address, PA_ADDRESS_MAX + 1) == 0;
}

static int list_line(void *arg, const char *line, size_t len)
{
    list_ctx *l = arg;
    char address[PA_ADDRESS_MAX + 1];
    if (!key_group_address(l->cfg, line, len, address))
        return 0;
    printf("%s\n", address);
    l->users++;
    return 0;
}

static int cmd_list(const pn_config *cfg)
{
    char err[1024], wildmat[96];
    ps_pool *sites = ps_pool_new(cfg, 0);
    if (!sites)
        return PX_OSERR;
    if (ps_pool_connect(sites, PS_ANY_SITE, err, sizeof err) != PS_OK) {
        ps_pool_free(sites);
        pu_err("no news server reachable: %s", err);
        return PX_TEMPFAIL;
    }
    snprintf(wildmat, sizeof wildmat, "%s%s*%s", cfg->prefix, cfg->prefix[0] ? "." : "", PA_KEY_SUFFIX);
    list_ctx l = {.cfg = cfg};
    int st = ps_list_active(sites, PS_ANY_SITE, wildmat, list_line, NULL, &l, NULL, err, sizeof err);
    ps_pool_free(sites);
    if (st != PS_OK) {
        pu_err("LIST ACTIVE failed: %s", err);
        return PX_TEMPFAIL;
    }
    pu_info("%zu user%s", l.users, l.users == 1 ? "" : "s");
    return PX_OK;
}

static int collect_address(void *arg, const char *line, size_t len)
{
    list_ctx *l = arg;
    char address[PA_ADDRESS_MAX + 1];
    if (!key_group_address(l->cfg, line, len, address))
        return 0;
    if (pu_buf_addstr(&l->addresses, address) != 0 || pu_buf_add(&l->addresses, "\n", 1) != 0)
        return -1;
    l->users++;
    return 0;
}

/* A second authority secret file (the previous key of a rotation). */
static uint8_t *load_previous_secret(const pn_config *cfg, const char *path, char *err, size_t errlen)
{
    pn_config *c = malloc(sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(c, cfg, sizeof *c);
    snprintf(c->authority_secret_path, sizeof c->authority_secret_path, "%s", path);
    uint8_t *sk = pn_load_authority_secret(c, err, errlen);
    free(c);
    return sk;
}

/* One user's record signed again by the current authority key: 0 done or nothing to do,
 * PX_NOUSER, PX_TEMPFAIL. */
static int resign_one(const pn_config *cfg, const char *address, const uint8_t *auth_sk,
                      const uint8_t auth_id[PC_AUTH_KEYID_BYTES], const uint8_t *prev_sk)
{
    char canon[PA_ADDRESS_MAX + 1], why[256], err[1024], old_msgid[PA_MSGID_MAX];
    if (pa_address_canonical(address, canon, sizeof canon, why, sizeof why) != 0) {
        pu_err("%s: %s", address, why);
        return PX_NOUSER;
    }
    pc_keyrecord *rec = sodium_malloc(sizeof *rec);
    if (!rec)
        return PX_OSERR;
    int rc = PX_TEMPFAIL;
    ps_pool *sites = ps_pool_new(cfg, 0);
    int st = sites ? ps_fetch_keyrecord(sites, PS_ANY_SITE, canon, rec, old_msgid, err, sizeof err) : PS_FAIL;
    ps_pool_free(sites);
    if (st != PS_OK) {
        pu_err("%s", sites ? err : "out of memory");
        rc = st == PS_NOUSER ? PX_NOUSER : PX_TEMPFAIL;
        goto out;
    }
    if (memcmp(rec->authority_id, auth_id, PC_AUTH_KEYID_BYTES) == 0) {
        pu_info("  %s: already signed by the current authority key", canon);
        rc = PX_OK;
        goto out;
    }
    pc_keyrecord_resign(rec, auth_sk);
    unsigned copies = post_record(cfg, rec, auth_sk, prev_sk ? old_msgid : NULL, prev_sk, 1);
    if (copies == cfg->n_sites) {
        pu_info("  %s: re-signed (serial %u, the same password)", canon, (unsigned)rec->serial);
        rc = PX_OK;
    } else {
        pu_err("%s: the re-signed record is served by %u of %zu sites; run `postern user resign %s` again", canon,
               copies, cfg->n_sites, canon);
    }
out:
    sodium_free(rec);
    return rc;
}

static int cmd_resign(const pn_config *cfg, int argc, char **argv)
{
    const char *previous = NULL;
    int all = 0;
    list_ctx l = {.cfg = cfg}; /* the addresses given, or (--all) every user's */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0) {
            all = 1;
        } else if (strcmp(argv[i], "--previous-secret") == 0 && i + 1 < argc) {
            previous = argv[++i];
        } else if (argv[i][0] == '-' || pu_buf_addstr(&l.addresses, argv[i]) != 0 ||
                   pu_buf_add(&l.addresses, "\n", 1) != 0) {
            pu_buf_free(&l.addresses);
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        } else {
            l.users++;
        }
    }
    if (all == (l.users > 0)) { /* one of the two */
        pu_buf_free(&l.addresses);
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    char err[1024];
    uint8_t *auth_sk = pn_load_authority_secret(cfg, err, sizeof err), *prev_sk = NULL;
    if (!auth_sk || (previous && !(prev_sk = load_previous_secret(cfg, previous, err, sizeof err)))) {
        pu_err("%s%s", auth_sk ? "--previous-secret: " : "", err);
        if (auth_sk)
            sodium_free(auth_sk);
        pu_buf_free(&l.addresses);
        return PX_CONFIG;
    }
    uint8_t auth_pk[PC_AUTH_PK_BYTES], auth_id[PC_AUTH_KEYID_BYTES];
    crypto_sign_ed25519_sk_to_pk(auth_pk, auth_sk);
    pc_authority_keyid(auth_pk, auth_id);
    int rc = PX_OK;
    if (all) {
        char wildmat[96];
        ps_pool *sites = ps_pool_new(cfg, 0);
        int st = sites ? ps_pool_connect(sites, PS_ANY_SITE, err, sizeof err) : PS_FAIL;
        snprintf(wildmat, sizeof wildmat, "%s%s*%s", cfg->prefix, cfg->prefix[0] ? "." : "", PA_KEY_SUFFIX);
        if (st == PS_OK)
            st = ps_list_active(sites, PS_ANY_SITE, wildmat, collect_address, NULL, &l, NULL, err, sizeof err);
        ps_pool_free(sites);
        if (st != PS_OK) {
            pu_err("cannot list the users: %s", sites ? err : "out of memory");
            rc = PX_TEMPFAIL;
        }
    }
    size_t k = 0, done = 0;
    for (char *a = l.addresses.data, *nl; rc == PX_OK && a && *a; a = nl + 1) {
        nl = strchr(a, '\n');
        *nl = '\0';
        pu_info("[%zu/%zu] %s", ++k, l.users, a);
        int r = resign_one(cfg, a, auth_sk, auth_id, prev_sk);
        if (r == PX_OK)
            done++;
        else if (r != PX_NOUSER || !all)
            rc = r == PX_NOUSER ? PX_NOUSER : PX_TEMPFAIL;
    }
    if (rc == PX_OK || done)
        printf("%zu of %zu user%s signed by the current authority key\n", done, l.users, l.users == 1 ? "" : "s");
    pu_buf_free(&l.addresses);
    sodium_free(auth_sk);
    if (prev_sk)
        sodium_free(prev_sk);
    return rc;
}

int adm_cmd_user(const pn_config *cfg, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        puts(usage);
        return PX_OK;
    }
    if (strcmp(sub, "import") == 0)
        return cmd_import(cfg, argc, argv);
    if (strcmp(sub, "resign") == 0)
        return cmd_resign(cfg, argc, argv);
    user_opts o;
    if (parse_opts(argc - 1, argv + 1, &o) != 0) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    if (strcmp(sub, "list") == 0 && !o.address)
        return cmd_list(cfg);
    if (!o.address) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    if (strcmp(sub, "add") == 0)
        return cmd_add(cfg, &o);
    if (strcmp(sub, "passwd") == 0)
        return cmd_passwd(cfg, &o);
    if (strcmp(sub, "del") == 0)
        return cmd_del(cfg, &o);
    fprintf(stderr, "%s\n", usage);
    return PX_USAGE;
}
