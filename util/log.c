/* util: the daemon's log lines on stderr. One write(2) per line so the three processes and the
 * worker threads do not interleave mid-line. Callers never pass passwords, keys or mail
 * contents.
 *
 * Two shapes, chosen once per process: when stderr is systemd's journal (JOURNAL_STREAM names
 * it, as systemd sets it for a service's output), each line starts with the syslog priority
 * ("<3>" ...), which journald turns into the entry's PRIORITY (journalctl -p warning works),
 * and carries no time stamp (the journal has one); anywhere else (a terminal, a file, a test's
 * log), each line starts with the UTC time to the millisecond. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

int pu_log_verbose;

/* -1 unknown, 0 plain, 1 journal */
static int to_journal = -1;

static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void pu_log_reset(void)
{
    to_journal = -1;
}

void pu_log(enum pu_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    static const char priority[] = {'3', '4', '6', '7'}; /* syslog's LOG_ERR .. LOG_DEBUG */
    if (level == PU_DEBUG && !pu_log_verbose)
        return;
    if (to_journal < 0)
        to_journal = stderr_is_journal(); /* racy between threads, but every answer is the same */
    char line[1024];
    int n;
    if (to_journal) {
        n = snprintf(line, sizeof line, "<%c>postern[%ld]: %s: ", priority[level], (long)getpid(), names[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ postern[%ld]: %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     (long)getpid(), names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2; /* truncated: still one line */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed log write */
}
