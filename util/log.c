/* util: the daemon's log lines on stderr (systemd's journal takes them from there). One write(2) per
 * line so the three processes and the worker threads do not interleave mid-line. Callers
 * never pass passwords, keys or mail contents. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "util/util.h"

int pu_log_verbose;

void pu_log(enum pu_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level == PU_DEBUG && !pu_log_verbose)
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "postern[%ld]: %s: ", (long)getpid(), names[level]);
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
