/* nntp connections: TCP connect with a timeout, implicit TLS or STARTTLS (RFC 4642) with
 * OpenSSL 3, AUTHINFO USER/PASS (RFC 4643), MODE READER, QUIT. */
#include "nntp/nntp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000
/* QUIT is a courtesy; closing must not hang for the full I/O timeout on a stuck server. */
#define QUIT_TIMEOUT_MS 2000

static int seterr(char *err, size_t errlen, int st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int st, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

static void nodelay(int fd)
{
    int one = 1;
    /* We write each command in one piece and then wait for the answer: Nagle could only add
     * delay, e.g. holding the final ".\r\n" of a POST until the previous segment is ACKed. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

/* Tries every address getaddrinfo returns, each with the full timeout. */
static int tcp_connect(nntp_conn *c, const nntp_params *p, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(p->host, p->port, &hints, &res);
    if (r != 0) {
        /* A bad port string is our caller's mistake; a name that does not resolve may be a
         * resolver outage, and bouncing mail over that would be worse than retrying. */
        int st = (r == EAI_SERVICE || r == EAI_BADFLAGS || r == EAI_SOCKTYPE) ? NNTP_EINVAL
                                                                            : NNTP_ETEMP;
        return seterr(err, errlen, st, "resolve %s port %s: %s", p->host, p->port,
                      r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    }
    int last_errno = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (nn_wait(c, POLLOUT, nn_now_ms() + c->timeout_ms) != NNTP_OK)
                soerr = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                soerr = errno;
            if (soerr == 0) {
                freeaddrinfo(res);
                nodelay(fd);
                return NNTP_OK;
            }
            last_errno = soerr;
        } else {
            last_errno = errno;
        }
        close(fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    return seterr(err, errlen, NNTP_ETEMP, "connect %s port %s: %s", p->host, p->port,
                  strerror(last_errno ? last_errno : EHOSTUNREACH));
}

static int is_ip_literal(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static int tls_fail(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return seterr(err, errlen, NNTP_ETLS, "TLS: %s%s%s", what, *buf ? ": " : "", buf);
}

static int tls_start(nntp_conn *c, const nntp_params *p, char *err, size_t errlen)
{
    const char *name = p->tls_name ? p->tls_name : p->host;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return tls_fail(err, errlen, "SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (p->ca_file) {
        if (SSL_CTX_load_verify_file(c->ctx, p->ca_file) != 1)
            return tls_fail(err, errlen, "cannot load CA file");
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        return tls_fail(err, errlen, "cannot load the system CA store");
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return tls_fail(err, errlen, "SSL_new");
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip_literal(name)) {
        /* RFC 6066: SNI carries host names only; an address is matched against IP SANs. */
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1)
            return tls_fail(err, errlen, "bad IP address to verify");
    } else if (SSL_set1_host(c->ssl, name) != 1 || SSL_set_tlsext_host_name(c->ssl, name) != 1) {
        return tls_fail(err, errlen, "bad host name to verify");
    }
    long long deadline = nn_now_ms() + c->timeout_ms;
    for (;;) {
        nn_sigpipe sp;
        nn_sigpipe_block(&sp);
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
        nn_sigpipe_restore(&sp);
        if (r == 1)
            return NNTP_OK;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (nn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) != NNTP_OK)
                return seterr(err, errlen, NNTP_ETEMP, "TLS handshake with %s timed out", name);
            continue;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            ERR_clear_error();
            return seterr(err, errlen, NNTP_ETLS, "TLS: certificate of %s not accepted: %s", name,
                          X509_verify_cert_error_string(vr));
        }
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            return seterr(err, errlen, NNTP_ETEMP, "TLS handshake with %s: connection lost", name);
        return tls_fail(err, errlen, "handshake failed");
    }
}

static int greeting(nntp_conn *c, const char *what, char *err, size_t errlen)
{
    int code = 0;
    int st = nn_read_status(c, &code);
    if (st != NNTP_OK)
        return seterr(err, errlen, st, "%s: no NNTP greeting (%s)", what,
                      st == NNTP_EPROTO ? "not NNTP" : "connection closed or timed out");
    if (code == 200 || code == 201)
        return NNTP_OK;
    st = code == 400 ? NNTP_ETEMP : code >= 400 ? NNTP_EPERM : NNTP_EPROTO;
    return seterr(err, errlen, st, "%s: %s", what, c->last);
}

static int starttls(nntp_conn *c, const nntp_params *p, char *err, size_t errlen)
{
    int code = 0;
    int st = nn_send_line(c, "STARTTLS");
    if (st == NNTP_OK)
        st = nn_read_status(c, &code);
    if (st != NNTP_OK)
        return seterr(err, errlen, st, "STARTTLS: connection lost");
    if (code != 382) {
        /* 580/502/483/500: the server cannot or will not; we never fall back to plaintext. */
        st = (code == 400 || code == 403) ? NNTP_ETEMP : NNTP_ETLS;
        return seterr(err, errlen, st, "STARTTLS refused: %s", c->last);
    }
    /* Bytes after the 382 came in plaintext and could have been injected by anyone on the
     * path (the "STARTTLS command injection" class of bug INN itself fixed in nnrpd); they
     * must not be read as if they came over TLS. */
    if (c->rpos != c->rlen) {
        c->dead = 1;
        return seterr(err, errlen, NNTP_EPROTO, "STARTTLS: unexpected plaintext after 382");
    }
    return tls_start(c, p, err, errlen);
}

static int bad_credential(const char *s)
{
    return s == NULL || *s == '\0' || strpbrk(s, " \t\r\n") != NULL;
}

static int authinfo(nntp_conn *c, const nntp_params *p, char *err, size_t errlen)
{
    char cmd[NN_MAX_CMD + 1];
    int code = 0;
    if (bad_credential(p->user) || p->password == NULL || strpbrk(p->password, "\r\n"))
        return seterr(err, errlen, NNTP_EINVAL, "AUTHINFO: user or password unusable");
    if (snprintf(cmd, sizeof cmd, "AUTHINFO USER %s", p->user) >= (int)sizeof cmd)
        return seterr(err, errlen, NNTP_EINVAL, "AUTHINFO: user name too long");
    int st = nn_send_line(c, cmd);
    if (st == NNTP_OK)
        st = nn_read_status(c, &code);
    if (st == NNTP_OK && code == 381) {
        int n = snprintf(cmd, sizeof cmd, "AUTHINFO PASS %s", p->password);
        st = n >= (int)sizeof cmd ? NNTP_EINVAL : nn_send_line(c, cmd);
        explicit_bzero(cmd, sizeof cmd);
        if (st == NNTP_EINVAL)
            return seterr(err, errlen, st, "AUTHINFO: password too long");
        if (st == NNTP_OK)
            st = nn_read_status(c, &code);
    }
    if (st != NNTP_OK)
        return seterr(err, errlen, st, "AUTHINFO: connection lost");
    if (code == 281)
        return NNTP_OK;
    st = code < 400 ? NNTP_EPROTO : nn_map_status(code, c->last, NN_CTX_AUTH);
    return seterr(err, errlen, st, "AUTHINFO as %s rejected: %s", p->user, c->last);
}

int nntp_connect(const nntp_params *p, nntp_conn **out, char *err, size_t errlen)
{
    if (err && errlen)
        *err = '\0';
    if (out)
        *out = NULL;
    if (p == NULL || out == NULL || p->host == NULL || p->port == NULL || p->timeout_ms < 0 ||
        p->connect_timeout_ms < 0 ||
        (p->tls != NNTP_TLS_NONE && p->tls != NNTP_TLS_IMPLICIT && p->tls != NNTP_TLS_STARTTLS))
        return seterr(err, errlen, NNTP_EINVAL, "invalid connection parameters");
    nntp_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return seterr(err, errlen, NNTP_ETEMP, "out of memory");
    c->fd = -1;
    int io_timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    /* a site that does not answer (packets dropped) must cost the short timeout, not the long one */
    c->timeout_ms = p->connect_timeout_ms ? p->connect_timeout_ms : io_timeout_ms;

    char what[300];
    snprintf(what, sizeof what, "%s port %s", p->host, p->port);
    int st = tcp_connect(c, p, err, errlen);
    if (st == NNTP_OK && p->tls == NNTP_TLS_IMPLICIT)
        st = tls_start(c, p, err, errlen);
    if (st == NNTP_OK)
        st = greeting(c, what, err, errlen);
    if (st == NNTP_OK && p->tls == NNTP_TLS_STARTTLS)
        st = starttls(c, p, err, errlen);
    /* MODE READER before AUTHINFO: RFC 4643 2.2 forbids MODE READER after authentication (and
     * INN's nnrpd is already a reader, so it just answers 200/201 again). Anything but 5xx is
     * tolerated: a reader-only server may not know the command. */
    if (st == NNTP_OK) {
        int code = 0;
        st = nn_send_line(c, "MODE READER");
        if (st == NNTP_OK)
            st = nn_read_status(c, &code);
        if (st != NNTP_OK)
            seterr(err, errlen, st, "MODE READER: connection lost");
        else if (code == 400)
            st = seterr(err, errlen, NNTP_ETEMP, "MODE READER: %s", c->last);
    }
    if (st == NNTP_OK && p->user)
        st = authinfo(c, p, err, errlen);
    if (st != NNTP_OK) {
        c->dead = 1; /* no QUIT on a half-set-up link */
        nntp_close(c);
        return st;
    }
    c->timeout_ms = io_timeout_ms;
    *out = c;
    return NNTP_OK;
}

int nn_conn_from_fd(int fd, int timeout_ms, nntp_conn **out)
{
    nntp_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NNTP_ETEMP;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(c);
        return NNTP_EINVAL;
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    *out = c;
    return NNTP_OK;
}

void nntp_close(nntp_conn *c)
{
    if (c == NULL)
        return;
    if (!c->dead && !c->in_post && c->fd >= 0) {
        int code;
        c->timeout_ms = QUIT_TIMEOUT_MS;
        if (nn_send_line(c, "QUIT") == NNTP_OK)
            (void)nn_read_status(c, &code);
    }
    if (c->ssl) {
        if (!c->dead) {
            /* close_notify only; waiting for the peer's would add a round trip for nothing. */
            nn_sigpipe sp;
            nn_sigpipe_block(&sp);
            (void)SSL_shutdown(c->ssl);
            nn_sigpipe_restore(&sp);
        }
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

const char *nntp_last_response(const nntp_conn *c)
{
    return c ? c->last : "";
}

void nntp_thread_done(void)
{
    OPENSSL_thread_stop();
}
