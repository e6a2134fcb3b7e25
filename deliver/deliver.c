#include "deliver/deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "article/article.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/util.h"

#define READ_BLOCK 65536
#define MAX_HEADER_BLOCK (1u << 20)   /* a header section larger than 1 MiB is not mail */
#define MAX_HEADER_LINE 65536         /* RFC 5322 says 998; real mail is sloppier */
#define MAX_FROM_LINE 4096

/* Checks the header section as it streams past: every line up to the empty line must be a
 * field ("name:" with printable name) or a continuation of one. */
typedef struct header_check {
    int done;            /* reached the empty line (or the end) */
    int error;
    char why[128];
    size_t block_bytes;
    size_t line_len;     /* bytes of the current line so far */
    char start[80];      /* the start of the current line, enough to judge its field name */
    size_t fields;
} header_check;

static void check_line(header_check *h)
{
    size_t n = h->line_len < sizeof h->start ? h->line_len : sizeof h->start;
    if (n > 0 && h->start[n - 1] == '\r' && h->line_len == n)
        n--;
    if (n == 0) {
        h->done = 1;
        return;
    }
    if (h->start[0] == ' ' || h->start[0] == '\t') {
        if (h->fields == 0) {
            h->error = 1;
            snprintf(h->why, sizeof h->why, "the message starts with a continuation line");
        }
        return;
    }
    size_t i = 0;
    while (i < n && h->start[i] != ':') {
        unsigned char ch = (unsigned char)h->start[i];
        if (ch < 33 || ch > 126) {
            h->error = 1;
            snprintf(h->why, sizeof h->why, "header line %zu is not a 'Name: value' field", h->fields + 1);
            return;
        }
        i++;
    }
    if (i == 0 || i == n) {
        h->error = 1;
        snprintf(h->why, sizeof h->why, "header line %zu is not a 'Name: value' field", h->fields + 1);
        return;
    }
    h->fields++;
}

static void header_feed(header_check *h, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len && !h->done && !h->error; i++) {
        if (++h->block_bytes > MAX_HEADER_BLOCK) {
            h->error = 1;
            snprintf(h->why, sizeof h->why, "header section larger than %u bytes", MAX_HEADER_BLOCK);
            return;
        }
        if (p[i] == '\n') {
            check_line(h);
            h->line_len = 0;
            continue;
        }
        if (p[i] == '\0') {
            h->error = 1;
            snprintf(h->why, sizeof h->why, "NUL byte in the header section");
            return;
        }
        if (h->line_len < sizeof h->start)
            h->start[h->line_len] = (char)p[i];
        if (++h->line_len > MAX_HEADER_LINE) {
            h->error = 1;
            snprintf(h->why, sizeof h->why, "a header line is longer than %u bytes", MAX_HEADER_LINE);
            return;
        }
    }
}

static void header_end(header_check *h)
{
    if (!h->done && !h->error && h->line_len > 0)
        check_line(h); /* a last header line without a newline */
    if (!h->error && h->fields == 0) {
        h->error = 1;
        snprintf(h->why, sizeof h->why, "no header fields: this is not an RFC 5322 message");
    }
}

static int spool_sink(void *arg, const uint8_t *data, size_t len)
{
    int fd = *(int *)arg;
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return 1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A ciphertext spool file that vanishes when closed. Only ciphertext is ever written here. */
static int open_spool(const pn_config *cfg)
{
    const char *dirs[] = {getenv("TMPDIR"), cfg->state_dir, "/tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

static int16_t local_tz_minutes(time_t t)
{
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return 0;
    return (int16_t)(tm.tm_gmtoff / 60);
}

typedef struct sealed {
    int fd;
    uint64_t cipher_len;
    uint8_t prefix[PC_MSG_PREFIX_BYTES];
    char msgid[PA_MSGID_MAX];
} sealed;

/* Reads the message from fd into a sealed ciphertext spool file. Returns a sysexits code. */
static int seal_input(const pn_config *cfg, const uint8_t *secret, const pc_keyrecord *rec, int in, sealed *out,
                      char *msg, size_t msglen)
{
    uint8_t *buf = malloc(READ_BLOCK);
    header_check *h = calloc(1, sizeof *h);
    pc_seal *s = NULL;
    int rc = PX_SOFTWARE;
    out->fd = open_spool(cfg);
    if (!buf || !h) {
        snprintf(msg, msglen, "out of memory");
        rc = PX_TEMPFAIL;
        goto out;
    }
    if (out->fd < 0) {
        snprintf(msg, msglen, "cannot create a spool file in $TMPDIR, %s or /tmp: %s", cfg->state_dir,
                 strerror(errno));
        rc = PX_TEMPFAIL;
        goto out;
    }
    time_t now = time(NULL);
    s = pc_seal_begin(rec->box_pk, rec->key_id, (int64_t)now, local_tz_minutes(now), spool_sink, &out->fd);
    if (!s) {
        snprintf(msg, msglen, "out of memory");
        rc = PX_TEMPFAIL;
        goto out;
    }
    uint64_t total = 0;
    int first = 1;
    for (;;) {
        ssize_t got = read(in, buf, READ_BLOCK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(msg, msglen, "reading the message: %s", strerror(errno));
            rc = PX_IOERR;
            goto out;
        }
        if (got == 0)
            break;
        uint8_t *p = buf;
        size_t len = (size_t)got;
        if (first) {
            first = 0;
            /* An mbox "From " envelope line (Postfix pipe flag F, procmail) is not part of
             * the message: drop it. */
            if (len >= 5 && memcmp(p, "From ", 5) == 0) {
                uint8_t *nl = memchr(p, '\n', len < MAX_FROM_LINE ? len : MAX_FROM_LINE);
                if (!nl) {
                    snprintf(msg, msglen, "malformed input: an over-long mbox 'From ' line");
                    rc = PX_DATAERR;
                    goto out;
                }
                len -= (size_t)(nl + 1 - p);
                p = nl + 1;
            }
        }
        total += len;
        if (total > cfg->max_message_size) {
            snprintf(msg, msglen, "message larger than max_message_size (%llu bytes)",
                     (unsigned long long)cfg->max_message_size);
            rc = PX_DATAERR;
            goto out;
        }
        header_feed(h, p, len);
        if (h->error) {
            snprintf(msg, msglen, "malformed message: %s", h->why);
            rc = PX_DATAERR;
            goto out;
        }
        if (pc_seal_update(s, p, len) != PC_OK) {
            snprintf(msg, msglen, "writing the spool file: %s", strerror(errno));
            rc = PX_TEMPFAIL;
            goto out;
        }
    }
    if (total == 0) {
        snprintf(msg, msglen, "malformed message: empty input");
        rc = PX_DATAERR;
        goto out;
    }
    header_end(h);
    if (h->error) {
        snprintf(msg, msglen, "malformed message: %s", h->why);
        rc = PX_DATAERR;
        goto out;
    }
    uint8_t content_hash[32], tag[PC_TAG_BYTES];
    pc_msg_meta meta;
    if (pc_seal_finish(s, content_hash, &meta) != PC_OK) {
        snprintf(msg, msglen, "writing the spool file: %s", strerror(errno));
        rc = PX_TEMPFAIL;
        goto out;
    }
    pc_message_tag(secret, rec->address, content_hash, tag);
    if (pc_seal_prefix(s, tag, out->prefix) != PC_OK) {
        snprintf(msg, msglen, "sealing failed");
        goto out;
    }
    pa_mail_message_id(tag, out->msgid);
    out->cipher_len = pc_envelope_size(meta.padded_size) - PC_MSG_PREFIX_BYTES;
    rc = PX_OK;
out:
    if (s)
        pc_seal_free(s);
    if (buf) {
        sodium_memzero(buf, READ_BLOCK);
        free(buf);
    }
    free(h);
    return rc;
}

/* Posts to one site; PS_OK also when the site already had it. */
static int post_to_site(nntp_conn *c, const char *group, const sealed *m, char *err, size_t errlen)
{
    /* A retry after a partial success finds the article already there: skip the upload. */
    if (nntp_stat(c, m->msgid) == NNTP_OK)
        return PS_OK;
    char headers[1024];
    if (!pa_mail_headers(group, m->msgid, headers, sizeof headers)) {
        snprintf(err, errlen, "header block too long");
        return PS_FAIL;
    }
    int st = ps_post_envelope(c, headers, m->prefix, sizeof m->prefix, m->fd, m->cipher_len, err, errlen);
    return st == PS_DUP ? PS_OK : st;
}

int pd_deliver(const pn_config *cfg, const uint8_t *secret, const char *address, int in, char *msg, size_t msglen)
{
    char canon[PA_ADDRESS_MAX + 1], group[PA_GROUP_MAX + 1], why[1024];
    if (pa_address_to_group(cfg->prefix, address, group, sizeof group, why, sizeof why) != 0 ||
        pa_address_canonical(address, canon, sizeof canon, why, sizeof why) != 0) {
        snprintf(msg, msglen, "unknown recipient %s: %s", address, why);
        return PX_NOUSER;
    }
    nntp_conn *c = NULL;
    size_t first_site = 0;
    int st = ps_connect_any(cfg, &c, &first_site, why, sizeof why);
    if (st != PS_OK) {
        snprintf(msg, msglen, "no news server reachable, try again later: %s", why);
        return PX_TEMPFAIL;
    }
    pc_keyrecord *rec = malloc(sizeof *rec);
    if (!rec) {
        nntp_close(c);
        snprintf(msg, msglen, "out of memory");
        return PX_TEMPFAIL;
    }
    st = ps_fetch_keyrecord(c, cfg, canon, rec, NULL, why, sizeof why);
    if (st != PS_OK) {
        nntp_close(c);
        free(rec);
        if (st == PS_NOUSER) {
            snprintf(msg, msglen, "unknown recipient: %s", why);
            return PX_NOUSER;
        }
        snprintf(msg, msglen, "cannot read the recipient's key record, try again later: %s", why);
        return PX_TEMPFAIL;
    }

    sealed m = {.fd = -1};
    int rc = seal_input(cfg, secret, rec, in, &m, msg, msglen);
    free(rec);
    if (rc != PX_OK) {
        nntp_close(c);
        if (m.fd >= 0)
            close(m.fd);
        return rc;
    }

    /* Post to sites in configured order, starting with the one already connected, until
     * min_copies of them hold the article. */
    unsigned copies = 0;
    size_t used = 0;
    char failures[2048] = "";
    for (size_t k = 0; k < cfg->n_sites && copies < cfg->min_copies; k++) {
        size_t i = (first_site + k) % cfg->n_sites;
        const pn_site *site = &cfg->sites[i];
        char err[512] = "";
        if (!c)
            st = ps_connect(site, &c, err, sizeof err);
        else
            st = PS_OK;
        if (st == PS_OK) {
            st = post_to_site(c, group, &m, err, sizeof err);
            nntp_close(c);
            c = NULL;
        }
        if (st == PS_OK) {
            copies++;
            continue;
        }
        int n = snprintf(failures + used, sizeof failures - used, "%s%s: %s", used ? "; " : "", site->name, err);
        if (n > 0 && (size_t)n < sizeof failures - used)
            used += (size_t)n;
    }
    if (c)
        nntp_close(c);
    close(m.fd);
    if (copies >= cfg->min_copies) {
        snprintf(msg, msglen, "delivered to %s as %s on %u site%s", canon, m.msgid, copies, copies == 1 ? "" : "s");
        return PX_OK;
    }
    snprintf(msg, msglen, "only %u of the required %u site%s accepted %s, try again later: %s", copies,
             cfg->min_copies, cfg->min_copies == 1 ? "" : "s", m.msgid, failures);
    return PX_TEMPFAIL;
}
