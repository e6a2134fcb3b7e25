/* vault: the network process's side. Requests are queued as whole frames and written as the
 * socket takes them; with SOCK_SEQPACKET a frame goes out whole or not at all, so the only
 * "partial write" is a frame still in the queue. Queued frames may hold passwords: they are
 * wiped when sent or freed. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "vault/internal.h"

#define QUEUE_MAX 4096 /* unsent requests; more means the vault has stopped reading */

typedef struct req {
    struct req *next;
    size_t len;
    uint8_t buf[];
} req;

struct vault_client {
    int fd;
    int broken;
    uint32_t next_id;
    req *head, *tail;
    size_t n;
    uint8_t *rbuf; /* one reply (keys): sodium_malloc'd, wiped after each */
};

static void req_free(req *r)
{
    sodium_memzero(r->buf, r->len);
    free(r);
}

vault_client *vault_client_new(int fd)
{
    if (fd < 0)
        return NULL;
    vault_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rbuf = sodium_malloc(VF_MAX + 1);
    int fl = fcntl(fd, F_GETFL);
    if (!c->rbuf || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        if (c->rbuf)
            sodium_free(c->rbuf);
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->next_id = 1;
    return c;
}

void vault_client_free(vault_client *c)
{
    if (!c)
        return;
    while (c->head) {
        req *r = c->head;
        c->head = r->next;
        req_free(r);
    }
    sodium_free(c->rbuf);
    free(c);
}

int vault_client_fd(const vault_client *c)
{
    return c->fd;
}

int vault_client_wants_write(const vault_client *c)
{
    return c->head != NULL && !c->broken;
}

int vault_client_on_writable(vault_client *c)
{
    while (c->head && !c->broken) {
        req *r = c->head;
        ssize_t n = send(c->fd, r->buf, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            return 0;
        if (n < 0 || (size_t)n != r->len) {
            c->broken = 1;
            break;
        }
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->n--;
        req_free(r);
    }
    return c->broken ? -1 : 0;
}

/* Queues frame (wiped here) and tries to send; returns its id or 0. */
static uint32_t queue(vault_client *c, uint8_t *frame, size_t len, uint32_t id)
{
    req *r = NULL;
    if (!c->broken && c->n < QUEUE_MAX)
        r = malloc(sizeof *r + len);
    if (!r) {
        sodium_memzero(frame, len);
        return 0;
    }
    r->next = NULL;
    r->len = len;
    memcpy(r->buf, frame, len);
    sodium_memzero(frame, len);
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->n++;
    /* a broken connection is reported by the next on_writable/on_readable as well */
    return vault_client_on_writable(c) == 0 ? id : 0;
}

static uint32_t take_id(vault_client *c)
{
    uint32_t id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1; /* 0 means "no request" */
    return id;
}

uint32_t vault_client_send_login(vault_client *c, const char *address, const uint8_t ip[VAULT_IP_BYTES],
                                 const uint8_t *record, size_t record_len, const char *password,
                                 size_t password_len)
{
    if (!c || !address || (!record && record_len) || (!password && password_len))
        return 0;
    size_t a = strnlen(address, PC_ADDRESS_MAX + 1);
    if (a < 1 || a > PC_ADDRESS_MAX || record_len > PC_KEYRECORD_MAX ||
        password_len > VAULT_PASSWORD_MAX)
        return 0;
    uint8_t *f = sodium_malloc(VF_MAX);
    if (!f)
        return 0;
    uint32_t id = take_id(c);
    size_t len = vf_encode_login(f, id, address, a, ip, record, record_len, password, password_len);
    id = queue(c, f, len, id);
    sodium_free(f);
    return id;
}

uint32_t vault_client_send_open(vault_client *c, uint64_t session, const uint8_t prefix[PC_MSG_PREFIX_BYTES])
{
    if (!c || !prefix)
        return 0;
    uint8_t f[VF_HEADER + 8 + PC_MSG_PREFIX_BYTES];
    uint32_t id = take_id(c);
    return queue(c, f, vf_encode_session(f, VF_OPEN, id, session, prefix), id);
}

uint32_t vault_client_send_logout(vault_client *c, uint64_t session)
{
    if (!c)
        return 0;
    uint8_t f[VF_HEADER + 8];
    uint32_t id = take_id(c);
    return queue(c, f, vf_encode_session(f, VF_LOGOUT, id, session, NULL), id);
}

uint32_t vault_client_send_stats(vault_client *c)
{
    if (!c)
        return 0;
    uint8_t f[VF_HEADER];
    uint32_t id = take_id(c);
    return queue(c, f, vf_encode_empty(f, VF_STATS, id), id);
}

int vault_client_on_readable(vault_client *c, vault_reply_fn cb, void *arg)
{
    if (!c || c->broken)
        return -1;
    for (;;) {
        struct iovec iov = {c->rbuf, VF_MAX + 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        vault_reply r;
        if (n <= 0 || (mh.msg_flags & MSG_TRUNC) || vf_decode_reply(c->rbuf, (size_t)n, &r) != 0) {
            c->broken = 1; /* closed, failed, or garbage from the vault */
            if (n > 0)
                sodium_memzero(c->rbuf, (size_t)n);
            return -1;
        }
        sodium_memzero(c->rbuf, (size_t)n);
        if (cb)
            cb(arg, &r);
        sodium_memzero(&r, sizeof r);
    }
}
