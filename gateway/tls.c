/* gateway: the TLS certificate. The root parent reads the PEM files (at start and on SIGHUP)
 * and hands the bytes to the unprivileged network process, which builds its SSL_CTX from
 * memory: it can never read the key file itself. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "gateway/gw.h"
#include "util/util.h"

/* secret: the private key, which nobody but its owner may read (as sshd demands). */
static char *read_pem(const char *path, bool secret, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char why[PATH_MAX * 2 + 128];
    if (secret && pu_secret_fd_private(fd, path, why, sizeof why) != 0) {
        snprintf(err, errlen, "tls_key %s", why);
        close(fd);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (off_t)GW_PEM_MAX) {
        snprintf(err, errlen, "%s: not a regular file of 1 to %u bytes", path, GW_PEM_MAX);
        close(fd);
        return NULL;
    }
    char *buf = sodium_malloc((size_t)st.st_size + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "file shrank while read");
            sodium_free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

int gw_pem_read(const char *cert_path, const char *key_path, gw_pem *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->cert = read_pem(cert_path, false, &out->cert_len, err, errlen);
    if (!out->cert)
        return -1;
    out->key = read_pem(key_path, true, &out->key_len, err, errlen);
    if (!out->key) {
        gw_pem_free(out);
        return -1;
    }
    return 0;
}

void gw_pem_free(gw_pem *p)
{
    if (p->cert)
        sodium_free(p->cert); /* sodium_free wipes */
    if (p->key)
        sodium_free(p->key);
    memset(p, 0, sizeof *p);
}

static void ssl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s: %s", what, buf);
    ERR_clear_error();
}

/* The leaf, then any chain certificates, from one PEM buffer. */
static int use_chain(SSL_CTX *ctx, const gw_pem *p, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(p->cert, (int)p->cert_len);
    if (!bio) {
        ssl_reason(err, errlen, "tls_cert");
        return -1;
    }
    int rc = -1;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        ssl_reason(err, errlen, "tls_cert holds no usable PEM certificate");
        goto out;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            ssl_reason(err, errlen, "tls_cert chain");
            goto out;
        }
    }
    /* the loop ends with "no start line" at the end of the buffer: not an error */
    ERR_clear_error();
    rc = 0;
out:
    X509_free(leaf);
    BIO_free(bio);
    return rc;
}

static int use_key(SSL_CTX *ctx, const gw_pem *p, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(p->key, (int)p->key_len);
    if (!bio) {
        ssl_reason(err, errlen, "tls_key");
        return -1;
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!key) {
        ssl_reason(err, errlen, "tls_key holds no usable PEM private key (an encrypted key is not supported)");
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        ssl_reason(err, errlen, "tls_key does not match the certificate in tls_cert");
        return -1;
    }
    return 0;
}

SSL_CTX *gw_tls_ctx_new(const gw_pem *p, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_reason(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No compression (CRIME), no renegotiation (a client-driven CPU drain), and no session
     * resumption at all: no ticket key to rotate or leak, and a full handshake is cheap next
     * to the Argon2id behind a login. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Mozilla "intermediate" for TLS 1.2: forward secrecy and AEAD only */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
        ssl_reason(err, errlen, "cipher list");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (use_chain(ctx, p, err, errlen) != 0 || use_key(ctx, p, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int gw_pem_send(int fd, const gw_pem *p)
{
    uint8_t h[GW_CTL_HEADER] = {'P', 'E', 'M', '1'};
    put32(h + 4, (uint32_t)p->cert_len);
    put32(h + 8, (uint32_t)p->key_len);
    if (pu_write_all(fd, h, sizeof h) != 0 || pu_write_all(fd, p->cert, p->cert_len) != 0 ||
        pu_write_all(fd, p->key, p->key_len) != 0)
        return -1;
    return 0;
}

int gw_pem_parse(const uint8_t *buf, size_t len, gw_pem *p, size_t *frame_len)
{
    if (len < GW_CTL_HEADER)
        return memcmp(buf, "PEM1", len < 4 ? len : 4) == 0 ? 0 : -1;
    if (memcmp(buf, "PEM1", 4) != 0)
        return -1;
    uint32_t c = get32(buf + 4), k = get32(buf + 8);
    if (c == 0 || k == 0 || c > GW_PEM_MAX || k > GW_PEM_MAX)
        return -1;
    if (len < GW_CTL_HEADER + (size_t)c + k)
        return 0;
    p->cert = (char *)buf + GW_CTL_HEADER;
    p->cert_len = c;
    p->key = p->cert + c;
    p->key_len = k;
    *frame_len = GW_CTL_HEADER + (size_t)c + k;
    return 1;
}
