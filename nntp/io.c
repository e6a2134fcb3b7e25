/* nntp I/O: every read and write is bounded by timeout_ms via poll() on a non-blocking
 * socket, for plain TCP and for OpenSSL alike. */
#include "nntp/nntp_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

long long nn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int nn_wait(nntp_conn *c, short events, long long deadline_ms)
{
    for (;;) {
        long long left = deadline_ms - nn_now_ms();
        if (left <= 0)
            return NNTP_ETEMP;
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int r = poll(&pfd, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (r > 0)
            return NNTP_OK; /* POLLERR/POLLHUP too: the next I/O call reports the error */
        if (r < 0 && errno != EINTR)
            return NNTP_ETEMP;
    }
}

/* nnrpd writes status line and data separately without TCP_NODELAY, and its Nagle waits for
 * our ACK; a delayed ACK there stalls every multi-line reply by ~40 ms. Setting QUICKACK sends
 * an ACK the kernel is holding back, so it is done whenever we are about to wait for more
 * (the kernel re-enables delayed ACKs after each ACK, so once per connection is not enough;
 * once per read was a syscall per 64 KiB for nothing). */
void nn_quickack(nntp_conn *c)
{
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

void nn_sigpipe_block(nn_sigpipe *s)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    s->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &s->old);
}

void nn_sigpipe_restore(const nn_sigpipe *s)
{
    if (!s->was_pending) {
        /* Swallow a SIGPIPE our write raised, so unblocking does not deliver it. */
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) == -1 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

static int fail(nntp_conn *c, int status)
{
    c->dead = 1;
    return status;
}

/* Reads at least one byte. We always call SSL_read before poll(): decrypted bytes already held
 * by OpenSSL (SSL_pending) or a buffered record are invisible to poll() on the socket. */
int nn_read_some(nntp_conn *c, char *buf, size_t cap, size_t *got)
{
    if (c->dead)
        return NNTP_ETEMP;
    long long deadline = nn_now_ms() + c->timeout_ms;
    for (;;) {
        if (c->ssl) {
            size_t n = 0;
            nn_sigpipe sp;
            nn_sigpipe_block(&sp);
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, buf, cap, &n);
            int e = r ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
            nn_sigpipe_restore(&sp);
            if (r) {
                *got = n;
                return NNTP_OK;
            }
            short ev;
            if (e == SSL_ERROR_WANT_READ)
                ev = POLLIN;
            else if (e == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else
                return fail(c, NNTP_ETEMP); /* close_notify, EOF, reset, or a broken record */
            nn_quickack(c);
            if (nn_wait(c, ev, deadline) != NNTP_OK)
                return fail(c, NNTP_ETEMP);
        } else {
            ssize_t n = recv(c->fd, buf, cap, 0);
            if (n > 0) {
                *got = (size_t)n;
                return NNTP_OK;
            }
            if (n == 0)
                return fail(c, NNTP_ETEMP);
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return fail(c, NNTP_ETEMP);
            nn_quickack(c);
            if (nn_wait(c, POLLIN, deadline) != NNTP_OK)
                return fail(c, NNTP_ETEMP);
        }
    }
}

int nn_write_all(nntp_conn *c, const void *data, size_t len)
{
    if (c->dead)
        return NNTP_ETEMP;
    const char *p = data;
    while (len > 0) {
        /* The timeout bounds each stall, not the whole 130 MB transfer. */
        long long deadline = nn_now_ms() + c->timeout_ms;
        size_t n = 0;
        if (c->ssl) {
            nn_sigpipe sp;
            nn_sigpipe_block(&sp);
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, p, len, &n);
            int e = r ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
            nn_sigpipe_restore(&sp);
            if (!r) {
                short ev;
                if (e == SSL_ERROR_WANT_WRITE)
                    ev = POLLOUT;
                else if (e == SSL_ERROR_WANT_READ)
                    ev = POLLIN;
                else
                    return fail(c, NNTP_ETEMP);
                if (nn_wait(c, ev, deadline) != NNTP_OK)
                    return fail(c, NNTP_ETEMP);
                continue; /* retry with the same buffer, as OpenSSL requires */
            }
        } else {
            ssize_t r = send(c->fd, p, len, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return fail(c, NNTP_ETEMP);
                if (nn_wait(c, POLLOUT, deadline) != NNTP_OK)
                    return fail(c, NNTP_ETEMP);
                continue;
            }
            n = (size_t)r;
        }
        p += n;
        len -= n;
    }
    return NNTP_OK;
}

int nn_read_line(nntp_conn *c, char **line, size_t *len)
{
    size_t scanned = 0; /* bytes of the pending line already searched for LF */
    for (;;) {
        char *start = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        char *nl = memchr(start + scanned, '\n', avail - scanned);
        if (nl) {
            size_t n = (size_t)(nl - start);
            c->rpos += n + 1;
            if (n > 0 && start[n - 1] == '\r')
                n--;
            if (n > NNTP_MAX_LINE)
                return fail(c, NNTP_EPROTO);
            start[n] = '\0';
            *line = start;
            *len = n;
            return NNTP_OK;
        }
        scanned = avail;
        /* Without a LF this line already exceeds the bound (+ its CR): give up now rather than
         * buffer an unbounded line from a hostile or broken server. */
        if (avail > NNTP_MAX_LINE + 1)
            return fail(c, NNTP_EPROTO);
        if (c->rpos > 0) {
            memmove(c->rbuf, start, avail);
            c->rpos = 0;
            c->rlen = avail;
        }
        size_t got = 0;
        int st = nn_read_some(c, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, &got);
        if (st != NNTP_OK)
            return st;
        c->rlen += got;
    }
}

int nn_send_line(nntp_conn *c, const char *line)
{
    size_t n = strlen(line);
    char buf[NN_MAX_CMD + 2];
    if (n > NN_MAX_CMD || strpbrk(line, "\r\n"))
        return NNTP_EINVAL;
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 2);
    int st = nn_write_all(c, buf, n + 2);
    /* The buffer may have held AUTHINFO PASS. */
    explicit_bzero(buf, sizeof buf);
    return st;
}
