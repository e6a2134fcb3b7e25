/* One LMTP session over blocking descriptors. Replies are buffered and flushed before the
 * session would wait for input (RFC 2920 PIPELINING), and after each per-recipient DATA
 * reply so a slow news server does not run the client's timer down for everyone. */
#include "deliver/lmtp.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "deliver/deliver_int.h"
#include "util/util.h"

#define IN_BUF 65536
#define OUT_BUF 16384
#define POLL_SLICE_MS 1000 /* how soon an idle session notices a stop request */

typedef struct session {
    const lmtp_params *p;
    uint8_t in[IN_BUF];
    size_t in_pos, in_len;
    char out[OUT_BUF];
    size_t out_len;
    int out_failed;
    char line[LMTP_MAX_COMMAND_LINE + 1];
    lmtp_cmd cmd;
    /* the transaction */
    int lhlo, mail;
    void *rcpt[LMTP_MAX_RECIPIENTS];
    char rcpt_addr[LMTP_MAX_RECIPIENTS][LMTP_MAX_PATH + 1];
    size_t n_rcpt;
    uint8_t unstuffed[IN_BUF + 1];
    pd_spool *spool; /* made at the first DATA, emptied for each message */
} session;

enum { GOT_DATA = 0, GOT_EOF = -1, GOT_TIMEOUT = -2, GOT_STOP = -3 };

static int flush(session *s)
{
    size_t off = 0;
    while (off < s->out_len && !s->out_failed) {
        ssize_t w = write(s->p->out_fd, s->out + off, s->out_len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            s->out_failed = 1; /* the client is gone; reading will notice the EOF */
        else
            off += (size_t)w;
    }
    s->out_len = 0;
    return s->out_failed ? -1 : 0;
}

static void __attribute__((format(printf, 2, 3))) reply(session *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
    /* Explanations come from news servers and the OS: keep the reply one clean line. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 32 || line[i] == 127)
            line[i] = ' ';
    memcpy(line + len, "\r\n", 2);
    len += 2;
    if (s->out_len + len > sizeof s->out)
        flush(s);
    memcpy(s->out + s->out_len, line, len);
    s->out_len += len;
}

/* Refills the input buffer; the buffer must be empty. Flushes pending replies first. */
static int fill(session *s, int timeout_ms, int idle)
{
    if (flush(s) != 0)
        return GOT_EOF;
    long long deadline = pu_now_ms() + timeout_ms;
    for (;;) {
        if (idle && s->p->stop && *s->p->stop)
            return GOT_STOP;
        long long left = deadline - pu_now_ms();
        if (left <= 0)
            return GOT_TIMEOUT;
        struct pollfd pfd = {.fd = s->p->in_fd, .events = POLLIN};
        int r = poll(&pfd, 1, left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS);
        if (r < 0 && errno != EINTR)
            return GOT_EOF;
        if (r <= 0)
            continue;
        ssize_t got = read(s->p->in_fd, s->in, sizeof s->in);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return GOT_EOF;
        s->in_pos = 0;
        s->in_len = (size_t)got;
        return GOT_DATA;
    }
}

/* One command line without its line end into s->line; *len may exceed the limit (the rest
 * of the line was skipped). Accepts a bare LF as the end too: commands are not smuggled. */
static int read_line(session *s, size_t *len, int idle)
{
    size_t n = 0;
    for (;;) {
        if (s->in_pos == s->in_len) {
            int r = fill(s, s->p->command_timeout_ms, idle && n == 0);
            if (r != GOT_DATA)
                return r;
        }
        uint8_t *start = s->in + s->in_pos;
        size_t avail = s->in_len - s->in_pos;
        uint8_t *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        if (n < LMTP_MAX_COMMAND_LINE + 1) {
            size_t room = LMTP_MAX_COMMAND_LINE + 1 - n;
            memcpy(s->line + n, start, take < room ? take : room);
        }
        n += take;
        s->in_pos += take + (nl ? 1 : 0);
        if (nl) {
            if (n <= LMTP_MAX_COMMAND_LINE && n > 0 && s->line[n - 1] == '\r')
                n--;
            if (n <= LMTP_MAX_COMMAND_LINE)
                s->line[n] = '\0';
            *len = n;
            return GOT_DATA;
        }
    }
}

static void reset_transaction(session *s)
{
    for (size_t i = 0; i < s->n_rcpt; i++)
        s->p->backend->release(s->p->backend->arg, s->rcpt[i]);
    s->n_rcpt = 0;
    s->mail = 0;
}

/* A refused or deferred recipient. The reply reaches the sender (in the MTA's bounce, or in
 * its SMTP answer when the MTA verifies recipients through us), so it says only what class of
 * failure it is: the details (group names, news servers' answers) go to the log through
 * report (issue 15). */
static void refusal(session *s, const char *address, int rc)
{
    switch (rc) {
    case PX_NOUSER:
        reply(s, "550 5.1.1 <%s> no such user here", address);
        break;
    case PX_TEMPFAIL:
        reply(s, "451 4.4.1 <%s> mail store temporarily unavailable, try again later", address);
        break;
    default:
        reply(s, "451 4.3.0 <%s> temporary failure, try again later", address);
        break;
    }
}

static void do_rcpt(session *s)
{
    const lmtp_backend *b = s->p->backend;
    if (!s->mail) {
        reply(s, "503 5.5.1 MAIL first");
        return;
    }
    if (s->n_rcpt == LMTP_MAX_RECIPIENTS) {
        reply(s, "452 4.5.3 too many recipients (at most %d per transaction)", LMTP_MAX_RECIPIENTS);
        return;
    }
    char msg[1024] = "";
    void *h = NULL;
    int rc = b->rcpt(b->arg, s->cmd.path, &h, msg, sizeof msg);
    switch (rc) {
    case PX_OK:
        s->rcpt[s->n_rcpt] = h;
        snprintf(s->rcpt_addr[s->n_rcpt], sizeof s->rcpt_addr[0], "%s", s->cmd.path);
        s->n_rcpt++;
        reply(s, "250 2.1.5 <%s> OK", s->cmd.path);
        break;
    default:
        refusal(s, s->cmd.path, rc);
        break;
    }
    if (rc != PX_OK && b->report)
        b->report(b->arg, s->cmd.path, rc, msg);
}

/* The final reply for one recipient, from its sysexits code. */
static void data_reply(session *s, size_t i, int rc, const char *msg)
{
    const char *a = s->rcpt_addr[i];
    switch (rc) {
    case PX_OK:
        reply(s, "250 2.0.0 <%s> %s", a, msg);
        break;
    case PX_UNAVAILABLE: /* over max_message_size: the one permanent refusal of content */
        reply(s, "552 5.3.4 <%s> %s", a, msg);
        break;
    default:
        refusal(s, a, rc);
        break;
    }
    if (s->p->backend->report)
        s->p->backend->report(s->p->backend->arg, a, rc, msg);
    flush(s);
}

/* DATA: 354, the message into an encrypted spool, then one reply per recipient. -1 when the
 * client went away mid-message (no replies are owed then). */
static int do_data(session *s)
{
    const pn_config *cfg = s->p->cfg;
    if (!s->mail) {
        reply(s, "503 5.5.1 MAIL first");
        return 0;
    }
    if (s->n_rcpt == 0) {
        reply(s, "503 5.5.1 no valid recipients");
        return 0;
    }
    char err[512];
    if (s->spool && pd_spool_reset(s->spool) != 0) {
        pd_spool_free(s->spool);
        s->spool = NULL;
    }
    if (!s->spool)
        s->spool = pd_spool_new(cfg, err, sizeof err);
    if (!s->spool) {
        reply(s, "451 4.3.0 %s", err);
        return 0;
    }
    pd_spool *spool = s->spool;
    reply(s, "354 end data with <CR><LF>.<CR><LF>");
    lmtp_unstuff u;
    lmtp_unstuff_init(&u);
    int write_errno = 0, too_big = 0;
    while (!u.done) {
        if (s->in_pos == s->in_len) {
            int r = fill(s, s->p->data_timeout_ms, 0);
            if (r != GOT_DATA) {
                if (r == GOT_TIMEOUT) {
                    reply(s, "421 4.4.2 timeout waiting for message data");
                    flush(s);
                }
                return -1;
            }
        }
        size_t used = 0;
        size_t n = lmtp_unstuff_feed(&u, s->in + s->in_pos, s->in_len - s->in_pos, &used, s->unstuffed);
        s->in_pos += used;
        if (u.out_bytes > cfg->max_message_size)
            too_big = 1;
        /* Past a limit the rest is read and dropped: the replies come after the terminator. */
        if (!too_big && !write_errno && pd_spool_write(spool, s->unstuffed, n) != 0)
            write_errno = errno ? errno : EIO;
    }
    sodium_memzero(s->unstuffed, sizeof s->unstuffed);
    if (!too_big && !write_errno && pd_spool_finish(spool) != 0)
        write_errno = errno ? errno : EIO;
    for (size_t i = 0; i < s->n_rcpt; i++) {
        char msg[4096] = "";
        int rc;
        if (too_big) {
            pd_too_big(cfg, msg, sizeof msg);
            rc = PX_UNAVAILABLE;
        } else if (write_errno) {
            snprintf(msg, sizeof msg, "writing the spool file: %s", strerror(write_errno));
            rc = PX_TEMPFAIL;
        } else if (pd_spool_rewind(spool) != 0) {
            snprintf(msg, sizeof msg, "reading the spool file: %s", strerror(errno));
            rc = PX_TEMPFAIL;
        } else {
            rc = s->p->backend->deliver(s->p->backend->arg, s->rcpt[i], pd_spool_read, spool, msg, sizeof msg);
        }
        data_reply(s, i, rc, msg);
    }
    /* Truncated now rather than at the next DATA: no ciphertext lingers while idle. */
    if (pd_spool_reset(spool) != 0) {
        pd_spool_free(s->spool);
        s->spool = NULL;
    }
    reset_transaction(s);
    return 0;
}

int lmtp_session(const lmtp_params *params)
{
    session *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->p = params;
    lmtp_params defaults = *params;
    if (!defaults.command_timeout_ms)
        defaults.command_timeout_ms = 5 * 60 * 1000;
    if (!defaults.data_timeout_ms)
        defaults.data_timeout_ms = 10 * 60 * 1000;
    s->p = &defaults;
    const char *host = params->hostname ? params->hostname : "localhost";
    int rc = -1;
    reply(s, "220 %s LMTP postern ready", host);
    for (;;) {
        size_t len = 0;
        int r = read_line(s, &len, !s->mail);
        if (r == GOT_STOP) {
            reply(s, "421 4.3.2 %s shutting down", host);
            flush(s);
            rc = 0;
            break;
        }
        if (r == GOT_TIMEOUT) {
            reply(s, "421 4.4.2 %s timeout, closing", host);
            flush(s);
            break;
        }
        if (r != GOT_DATA)
            break;
        const char *err = NULL;
        if (lmtp_parse_command(s->line, len, &s->cmd, &err) != 0) {
            reply(s, "%s", err);
            continue;
        }
        switch (s->cmd.verb) {
        case LMTP_LHLO:
            reset_transaction(s);
            s->lhlo = 1;
            reply(s, "250-%s", host);
            reply(s, "250-PIPELINING");
            reply(s, "250-ENHANCEDSTATUSCODES");
            reply(s, "250-8BITMIME");
            reply(s, "250-SMTPUTF8");
            reply(s, "250 SIZE %llu", (unsigned long long)s->p->cfg->max_message_size);
            break;
        case LMTP_MAIL:
            if (!s->lhlo)
                reply(s, "503 5.5.1 LHLO first");
            else if (s->mail)
                reply(s, "503 5.5.1 nested MAIL command");
            else if (s->cmd.has_size && s->cmd.size > s->p->cfg->max_message_size)
                reply(s, "552 5.3.4 message size exceeds the limit of %llu bytes",
                      (unsigned long long)s->p->cfg->max_message_size);
            else {
                s->mail = 1;
                reply(s, "250 2.1.0 OK");
            }
            break;
        case LMTP_RCPT:
            do_rcpt(s);
            break;
        case LMTP_DATA:
            if (do_data(s) != 0)
                goto out;
            break;
        case LMTP_RSET:
            reset_transaction(s);
            reply(s, "250 2.0.0 OK");
            break;
        case LMTP_NOOP:
            reply(s, "250 2.0.0 OK");
            break;
        case LMTP_VRFY:
            reply(s, "252 2.5.2 cannot VRFY; send the message and see");
            break;
        case LMTP_QUIT:
            reply(s, "221 2.0.0 %s closing", host);
            flush(s);
            rc = 0;
            goto out;
        }
    }
out:
    reset_transaction(s);
    flush(s);
    pd_spool_free(s->spool);
    sodium_memzero(s, sizeof *s);
    free(s);
    return rc;
}
