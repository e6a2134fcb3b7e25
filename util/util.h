/* util: the few helpers every postern command shares: sysexits codes, messages on stderr,
 * reading passwords without echo, and reading small secret files. */
#ifndef POSTERN_UTIL_H
#define POSTERN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* sysexits(3) values, spelled out so the MTA-facing meaning is visible where they are used. */
enum {
    PX_OK = 0,
    PX_USAGE = 64,
    PX_DATAERR = 65,
    PX_NOINPUT = 66,
    PX_NOUSER = 67,
    PX_UNAVAILABLE = 69, /* deliver: too big to store (permanent for Postfix and Exim alike) */
    PX_SOFTWARE = 70,
    PX_OSERR = 71,
    PX_CANTCREAT = 73,
    PX_IOERR = 74,
    PX_TEMPFAIL = 75,
    PX_NOPERM = 77,
    PX_CONFIG = 78,
};

/* "postern: <message>\n" on stderr. Never pass secrets. */
void pu_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Progress/info on stderr, silenced by pu_quiet = 1. */
extern int pu_quiet;
void pu_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The daemon's log (log.c): "postern[pid]: level: message" on stderr, one write per line, so
 * processes and threads never interleave mid-line; led by the UTC time, or by the syslog
 * priority when stderr is the journal. */
enum pu_level { PU_ERROR, PU_WARN, PU_INFO, PU_DEBUG };
extern int pu_log_verbose; /* 1: PU_DEBUG lines too */
void pu_log(enum pu_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Looks again whether stderr is the journal (log.c): after stderr was redirected (tests). */
void pu_log_reset(void);

/* Reads a password: from the terminal without echo (prompt, and a second prompt to confirm
 * when confirm != 0), or, when from_fd >= 0, the first line of that descriptor (no prompt).
 * buf should be sodium_malloc'd; the trailing newline is removed. Returns the length or -1
 * with a reason on stderr (mismatch, empty, too long, no terminal). */
long pu_read_password(const char *prompt, int confirm, int from_fd, char *buf, size_t cap);

/* Reads a whole small file (at most cap-1 bytes, NUL-terminated, trailing whitespace
 * trimmed) into buf. Returns length or -1 with errno set. */
long pu_read_small_file(const char *path, char *buf, size_t cap);

/* Secrets must be private, as sshd demands of private keys: returns 0 when fd's file gives
 * group and others no access, else -1 with "PATH is readable or writable by group or others
 * (mode 0644): chmod 600 PATH" in err. */
int pu_secret_fd_private(int fd, const char *path, char *err, size_t errlen);
/* The same for a path; a file that does not exist is not judged here (returns 0). */
int pu_secret_path_private(const char *path, char *err, size_t errlen);
/* pu_read_small_file for a secret: refuses (-1, reason in err) one that is not private. */
long pu_read_secret_file(const char *path, char *buf, size_t cap, char *err, size_t errlen);

/* Writes all len bytes to fd, resuming after EINTR and short writes; 0, or -1 with errno. */
int pu_write_all(int fd, const void *data, size_t len);
/* Milliseconds of CLOCK_MONOTONIC: for timeouts and TTLs a clock step neither ends nor extends. */
long long pu_now_ms(void);
/* A decimal number of len bytes (1 to 20 digits, nothing else) that fits 64 bits, into *out:
 * 0, or -1 (out untouched). For bounded protocol parsers: no sign, no spaces, no locale. */
int pu_parse_u64(const char *p, size_t len, uint64_t *out);

/* Writes data to path atomically (temp file + rename) with the given mode; 0 or -1. */
int pu_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* Closes f, an open_memstream(text, len), and writes what it holds to dir/name atomically
 * (mode 0644, pu_write_file_atomic); frees the text either way. 0, or -1 with errno. For the
 * status and metrics files of state_dir. */
int pu_memstream_write(FILE *f, char **text, size_t *len, const char *dir, const char *name);
/* One sample with a site label in Prometheus's text format, `metric{site="..."} value`, the
 * label escaped (\\, " and newline) as the format wants. */
void pu_prom_site(FILE *f, const char *metric, const char *site, unsigned long long value);

/* Growable byte buffer, always NUL-terminated after a successful append (the NUL is not
 * counted in len). Zero-initialise it. Appends return 0, or -1 when memory runs out (the
 * buffer then keeps its earlier contents). The one buffer type of every writer (IMAP, MIME,
 * POP3), so it often holds plaintext: a block is wiped before it goes back to the allocator,
 * when the buffer grows (no realloc) and when it is freed. */
typedef struct pu_buf {
    char *data;
    size_t len, cap;
    int public_data; /* set by its owner: ciphertext only, grown by realloc and never wiped */
} pu_buf;
#define PU_BUF_INIT {NULL, 0, 0, 0}
void pu_buf_free(pu_buf *b);
void pu_buf_clear(pu_buf *b); /* len = 0, memory kept */
/* Room for n more bytes plus the NUL. */
int pu_buf_reserve(pu_buf *b, size_t n);
/* The same, growing to exactly that when it grows (no doubling): for a writer that knows
 * the final size, so the wipe at free touches no page the writer did not. */
int pu_buf_reserve_exact(pu_buf *b, size_t n);
int pu_buf_add(pu_buf *b, const void *p, size_t n);
int pu_buf_addstr(pu_buf *b, const char *s);
int pu_buf_printf(pu_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void pu_hex(const unsigned char *in, size_t n, char *out);

#endif
