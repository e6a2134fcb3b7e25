#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

int pu_quiet;

void pu_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postern: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pu_info(const char *fmt, ...)
{
    if (pu_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reads one line from fd byte by byte: a password line is short, and reading no further
 * than the newline leaves the rest of a script's stdin for whoever reads it next. */
static long read_line_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (ch == '\n')
            break;
        if (n + 1 >= cap) {
            sodium_memzero(buf, cap);
            pu_err("password longer than %zu bytes", cap - 1);
            return -1;
        }
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

static long prompt_tty(int tty, const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    if (tcgetattr(tty, &old) != 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    if (write(tty, prompt, strlen(prompt)) < 0 || tcsetattr(tty, TCSAFLUSH, &quiet) != 0)
        return -1;
    long n = read_line_fd(tty, buf, cap);
    tcsetattr(tty, TCSAFLUSH, &old);
    return n;
}

long pu_read_password(const char *prompt, int confirm, int from_fd, char *buf, size_t cap)
{
    long n;
    if (from_fd >= 0) {
        n = read_line_fd(from_fd, buf, cap);
    } else {
        int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
        if (tty < 0) {
            pu_err("no terminal to ask for the password: use --password-file FILE or --password-stdin");
            return -1;
        }
        n = prompt_tty(tty, prompt, buf, cap);
        if (n >= 0 && confirm) {
            char *again = sodium_malloc(cap);
            if (!again) {
                close(tty);
                return -1;
            }
            long m = prompt_tty(tty, "Repeat the password: ", again, cap);
            if (m != n || sodium_memcmp(again, buf, (size_t)n) != 0) {
                pu_err("the passwords do not match; nothing was changed");
                n = -2;
            }
            sodium_free(again);
        }
        close(tty);
        if (n == -2) {
            sodium_memzero(buf, cap);
            return -1;
        }
    }
    if (n == 0) {
        pu_err("empty password");
        return -1;
    }
    return n;
}

static long read_small_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            errno = EFBIG;
            return -1;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    return (long)n;
}

long pu_read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = read_small_fd(fd, buf, cap);
    int e = errno;
    close(fd);
    errno = e;
    return n;
}

int pu_secret_fd_private(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen, "%s is readable or writable by group or others (mode %04o): chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    return 0;
}

int pu_secret_path_private(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    int rc = pu_secret_fd_private(fd, path, err, errlen);
    close(fd);
    return rc;
}

long pu_read_secret_file(const char *path, char *buf, size_t cap, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    long n = -1;
    if (pu_secret_fd_private(fd, path, err, errlen) == 0) {
        n = read_small_fd(fd, buf, cap);
        if (n < 0)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
    }
    close(fd);
    return n;
}

int pu_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int pu_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -1;
    if (pu_write_all(fd, data, len) != 0)
        goto fail;
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}

void pu_buf_free(pu_buf *b)
{
    if (b->data && !b->public_data)
        sodium_memzero(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void pu_buf_clear(pu_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int buf_grow(pu_buf *b, size_t cap);

int pu_buf_reserve(pu_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len - 1)
        return -1;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    return buf_grow(b, cap);
}

int pu_buf_reserve_exact(pu_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len - 1)
        return -1;
    size_t need = b->len + n + 1;
    return need <= b->cap ? 0 : buf_grow(b, need);
}

static int buf_grow(pu_buf *b, size_t cap)
{
    if (b->public_data) {
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
        return 0;
    }
    /* not realloc: the old block may hold plaintext (a message, a header), wiped before it
     * goes back to the allocator */
    char *d = malloc(cap);
    if (!d)
        return -1;
    if (b->data) {
        memcpy(d, b->data, b->len + 1 <= b->cap ? b->len + 1 : b->len);
        sodium_memzero(b->data, b->cap);
        free(b->data);
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

int pu_buf_add(pu_buf *b, const void *p, size_t n)
{
    if (pu_buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int pu_buf_addstr(pu_buf *b, const char *s)
{
    return pu_buf_add(b, s, strlen(s));
}

int pu_buf_printf(pu_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || pu_buf_reserve(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void pu_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int pu_parse_u64(const char *p, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

long long pu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pu_memstream_write(FILE *f, char **text, size_t *len, const char *dir, const char *name)
{
    int rc = fclose(f) == 0 ? 0 : -1;
    if (rc == 0) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        rc = pu_write_file_atomic(path, *text, *len, 0644);
    }
    free(*text);
    *text = NULL;
    return rc;
}

void pu_prom_site(FILE *f, const char *metric, const char *site, unsigned long long value)
{
    fprintf(f, "%s{site=\"", metric);
    for (const char *v = site; *v; v++)
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    fprintf(f, "\"} %llu\n", value);
}
