/* LMTP (RFC 2033) for `postern lmtp`: the command parser and the DATA un-stuffer (pure, no
 * I/O: unit-tested and fuzzed on their own), and one session over a pair of descriptors with
 * the delivery behind a small backend interface (pd_ctx in the server, a fake in tests). */
#ifndef POSTERN_LMTP_H
#define POSTERN_LMTP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "deliver/deliver.h"

/* RFC 5321 allows 512 bytes per command line; clients with long parameters exist. */
#define LMTP_MAX_COMMAND_LINE 4096
/* A forward-path is at most 256 octets (RFC 5321 4.5.3.1.3); a little slack. */
#define LMTP_MAX_PATH 512
#define LMTP_MAX_RECIPIENTS 100

enum lmtp_verb {
    LMTP_LHLO = 1,
    LMTP_MAIL,
    LMTP_RCPT,
    LMTP_DATA,
    LMTP_RSET,
    LMTP_NOOP,
    LMTP_QUIT,
    LMTP_VRFY,
};

typedef struct lmtp_cmd {
    enum lmtp_verb verb;
    char path[LMTP_MAX_PATH + 1]; /* MAIL/RCPT: the address without <> (MAIL may have "") */
    int has_size;                 /* MAIL: SIZE= was given */
    uint64_t size;
    char arg[LMTP_MAX_COMMAND_LINE]; /* LHLO/VRFY: the argument as sent */
} lmtp_cmd;

/* Parses one command line (without its CRLF). 0 on success, else -1 with the complete reply
 * line (code, enhanced code, text; no CRLF) in *reply, a static string. */
int lmtp_parse_command(const char *line, size_t len, lmtp_cmd *cmd, const char **reply);

/* The DATA un-stuffer (RFC 5321 4.5.2): removes the leading dot of each line and finds the
 * terminating CRLF.CRLF. Lines end only with CRLF: a bare LF is data, which keeps a bare-LF
 * "." from ending the message early (SMTP smuggling). */
typedef struct lmtp_unstuff {
    int state;
    uint64_t out_bytes; /* message bytes produced so far */
    int done;           /* the terminator was seen */
} lmtp_unstuff;
void lmtp_unstuff_init(lmtp_unstuff *u);
/* Consumes input up to and including the terminator; writes the message bytes to out, which
 * must hold len + 1 bytes. Returns the bytes written; *consumed the input used (less than len
 * only when the terminator was reached: the rest is the next command). */
size_t lmtp_unstuff_feed(lmtp_unstuff *u, const uint8_t *in, size_t len, size_t *consumed, uint8_t *out);

/* What a session delivers with. Return values are sysexits codes (PX_OK, PX_NOUSER, ...). */
typedef struct lmtp_backend {
    void *arg;
    /* RCPT: look the recipient up now; *handle is passed to deliver and release. */
    int (*rcpt)(void *arg, const char *address, void **handle, char *msg, size_t msglen);
    /* One recipient's copy of the message, read through rd; called once per accepted RCPT. */
    int (*deliver)(void *arg, void *handle, pd_read_fn rd, void *rd_arg, char *msg, size_t msglen);
    void (*release)(void *arg, void *handle);
    /* Optional: told each recipient's outcome (for the log). */
    void (*report)(void *arg, const char *address, int code, const char *msg);
} lmtp_backend;

typedef struct lmtp_params {
    int in_fd, out_fd;
    const pn_config *cfg;       /* max_message_size, and where spool files go */
    const lmtp_backend *backend;
    const char *hostname;       /* for the greeting and LHLO */
    int command_timeout_ms;     /* waiting for a command line; 0: 5 minutes */
    int data_timeout_ms;        /* waiting for message bytes; 0: 10 minutes */
    /* When set, an idle session (no transaction open) says 421 and ends; one in a
     * transaction finishes it first. May be NULL. */
    volatile sig_atomic_t *stop;
} lmtp_params;

/* Runs one session: greeting to QUIT, EOF, timeout or stop. 0 after QUIT or stop, -1 when the
 * client vanished or timed out (nothing is left half done: replies are only sent for
 * deliveries that completed). */
int lmtp_session(const lmtp_params *p);

#endif
