/* Internal to the nntp module: the connection object and the helpers the .c files share.
 * Not installed and not included outside nntp/. */
#ifndef POSTERN_NNTP_INT_H
#define POSTERN_NNTP_INT_H

#include "nntp/nntp.h"

#include <openssl/ssl.h>
#include <signal.h>
#include <stddef.h>

/* The read buffer must hold one maximal line plus its CRLF; the rest is read-ahead so a
 * 130 MB article costs ~2000 reads, not 130 million. */
#define NN_RBUF (NNTP_MAX_LINE + 2 + 65536)
#define NN_WBUF 65536
/* RFC 3977 3.1: a command line is at most 512 octets including the CRLF. */
#define NN_MAX_CMD 510

struct nntp_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int timeout_ms;
    int dead;              /* transport failed or framing lost: no further commands, no QUIT */
    int in_post;           /* between a 340 and nntp_post_end */
    int post_bol;          /* next article byte starts a line (dot-stuffing point) */
    int post_cr;           /* the previous slice ended in CR: CRLF may straddle slices */
    size_t rpos, rlen;     /* unread bytes are rbuf[rpos..rlen) */
    size_t wlen;
    char last[NNTP_MAX_LINE + 1];
    char rbuf[NN_RBUF];
    char wbuf[NN_WBUF];
};

/* io.c */
int nn_read_some(nntp_conn *c, char *buf, size_t cap, size_t *got);
int nn_write_all(nntp_conn *c, const void *data, size_t len);
/* One line, CRLF (or bare LF) removed and NUL-terminated in place; valid until the next
 * read. Over-long lines are NNTP_EPROTO and kill the connection. */
int nn_read_line(nntp_conn *c, char **line, size_t *len);
/* Sends line + CRLF in one write (no Nagle split between command and CRLF). */
int nn_send_line(nntp_conn *c, const char *line);
/* Waits for fd readiness (POLLIN/POLLOUT) until deadline_ms (CLOCK_MONOTONIC ms). */
int nn_wait(nntp_conn *c, short events, long long deadline_ms);
long long nn_now_ms(void);
void nn_quickack(nntp_conn *c);
/* Runs SSL calls with SIGPIPE blocked: OpenSSL's socket BIO uses write(), not
 * send(MSG_NOSIGNAL), and a library must not kill its host process on a dropped link. */
typedef struct nn_sigpipe { sigset_t old; int was_pending; } nn_sigpipe;
void nn_sigpipe_block(nn_sigpipe *s);
void nn_sigpipe_restore(const nn_sigpipe *s);

/* status.c */
enum nn_ctx { NN_CTX_GENERIC, NN_CTX_POST, NN_CTX_AUTH };
/* Maps a 4xx/5xx (or unexpected) status line to an nntp_status. */
int nn_map_status(int code, const char *line, enum nn_ctx ctx);
/* Reads a status line into c->last and parses its code; EPROTO if it is not "ddd[ text]". */
int nn_read_status(nntp_conn *c, int *code);
/* Sends line, reads the status; NNTP_OK iff the code equals want, else the mapped error. */
int nn_simple(nntp_conn *c, const char *line, int want, enum nn_ctx ctx);

/* conn.c: wraps an already connected stream socket (no greeting read), for the unit tests
 * and the fuzz target, which talk to an in-process fake server over socketpair(). */
int nn_conn_from_fd(int fd, int timeout_ms, nntp_conn **out);

/* commands.c */
int nn_read_multiline(nntp_conn *c, nntp_line_fn fn, void *arg);

#endif
