/* nntp: a small blocking NNTP client (RFC 3977, 4642 STARTTLS, 4643 AUTHINFO) over plain TCP
 * or OpenSSL TLS, streaming in both directions so a 100 MB article never sits in memory.
 * Why not libetpan's newsnntp: it keeps whole articles in one buffer, offers implicit TLS only
 * (GnuTLS), and cannot stream a POST. One connection is used by one thread at a time. */
#ifndef POSTERN_NNTP_H
#define POSTERN_NNTP_H

#include <stddef.h>
#include <stdint.h>

enum nntp_status {
    NNTP_OK = 0,
    NNTP_ETEMP,    /* unreachable, timed out, dropped, or a 4xx that may pass: retry later */
    NNTP_EPERM,    /* the server refused for good (5xx, or 4xx that will not change) */
    NNTP_EDUP,     /* POST/IHAVE refused because the Message-ID is already there */
    NNTP_ENOENT,   /* no such group / article (411, 423, 430) */
    NNTP_EAUTH,    /* AUTHINFO rejected (481/482/502) */
    NNTP_ETLS,     /* TLS handshake or certificate verification failed */
    NNTP_EPROTO,   /* the server sent something that is not NNTP (over-long line, bad code) */
    NNTP_EINVAL,
};
const char *nntp_strerror(int status);

enum nntp_tls { NNTP_TLS_NONE = 0, NNTP_TLS_IMPLICIT, NNTP_TLS_STARTTLS };

typedef struct nntp_params {
    const char *host;
    const char *port;
    enum nntp_tls tls;
    const char *ca_file;        /* NULL: system store */
    const char *tls_name;       /* name to verify; NULL: host */
    const char *user;           /* NULL: no AUTHINFO */
    const char *password;
    int timeout_ms;             /* per read/write; 0: 30000 */
    int connect_timeout_ms;     /* per step of setting up (connect, greeting, TLS, login); 0: timeout_ms */
} nntp_params;

typedef struct nntp_conn nntp_conn;

/* Connects, reads the greeting, does STARTTLS as configured, MODE READER, then AUTHINFO as
 * configured (MODE READER first: RFC 4643 forbids it after authentication).
 * err (may be NULL) gets a one-line human-readable reason on failure; never the password. */
int nntp_connect(const nntp_params *p, nntp_conn **out, char *err, size_t errlen);
void nntp_close(nntp_conn *c); /* sends QUIT if the link is healthy, frees */
/* A thread that used connections calls this before it ends: it frees the TLS library's
 * per-thread state now, not in a thread-exit handler that can race the process's exit. */
void nntp_thread_done(void);

/* The last status line the server sent (for error messages). */
const char *nntp_last_response(const nntp_conn *c);

/* Sends one command line (no CRLF) and reads the status line; code gets the 3-digit code.
 * For commands whose answer is a single line. Returns NNTP_OK for 1xx-3xx, the mapped
 * status for 4xx/5xx, NNTP_EINVAL for a line with CR/LF or over 510 octets. */
int nntp_command(nntp_conn *c, const char *line, int *code);

/* POST, streamed: begin sends POST and expects 340; write takes article bytes (headers,
 * blank line, body) in any slicing with LF or CRLF line ends and does the dot-stuffing;
 * end terminates and maps the answer: 240 → NNTP_OK, "duplicate" refusals (435/441 with
 * a 435 or "duplicate" text) → NNTP_EDUP, other 4xx → NNTP_ETEMP or NNTP_EPERM. */
int nntp_post_begin(nntp_conn *c);
int nntp_post_write(nntp_conn *c, const void *data, size_t len);
int nntp_post_end(nntp_conn *c);

typedef struct nntp_group_info {
    uint64_t count, low, high;
} nntp_group_info;
int nntp_group(nntp_conn *c, const char *group, nntp_group_info *info);

/* STAT <message-id> or number: NNTP_OK if present (223), NNTP_ENOENT if not. */
int nntp_stat(nntp_conn *c, const char *id_or_number);

/* Multi-line readers. The callback gets each line without its CRLF (NUL-terminated, valid
 * only during the call) and with the leading dot of a stuffed line removed; returning non-zero
 * stops the transfer (the rest of the response is drained so the connection stays usable, and
 * the reader still returns NNTP_OK). fn may be NULL to discard the lines. */
typedef int (*nntp_line_fn)(void *arg, const char *line, size_t len);

/* ARTICLE, HEAD or BODY (verb) by number or <message-id>. */
int nntp_fetch(nntp_conn *c, const char *verb, const char *id_or_number, nntp_line_fn fn, void *arg);
/* LIST ACTIVE [wildmat]: fn gets each raw line "group high low flag". */
int nntp_list_active(nntp_conn *c, const char *wildmat, nntp_line_fn fn, void *arg);
/* LIST COUNTS wildmat (INN): fn gets "group high low count flag". Not every server has it:
 * a 5xx answer comes back as NNTP_EPERM. */
int nntp_list_counts(nntp_conn *c, const char *wildmat, nntp_line_fn fn, void *arg);
/* OVER range (e.g. "1-"): fn gets each raw tab-separated overview line. */
int nntp_over(nntp_conn *c, const char *range, nntp_line_fn fn, void *arg);
/* LISTGROUP group: fn gets each article number as text. */
int nntp_listgroup(nntp_conn *c, const char *group, nntp_line_fn fn, void *arg);

/* Limits: a response line longer than this is NNTP_EPROTO. */
#define NNTP_MAX_LINE 16384

#endif
