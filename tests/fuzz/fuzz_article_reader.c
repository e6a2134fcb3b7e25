/* libFuzzer target for pa_reader: the input is split at LF into lines (as nntp_fetch hands
 * them over) and fed in; the kept fields must stay NUL-terminated within their buffers, the
 * counters within the limits, and nothing may reach the body callback after an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "article/article.h"

struct seen {
    size_t lines, bytes;
};

static int body(void *arg, const char *line, size_t len)
{
    struct seen *s = arg;
    s->lines++;
    s->bytes += len;
    /* Stop now and then, as a caller would, to cover that path. */
    return len == 1 && line[0] == 'S' ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_reader r;
    struct seen s = {0, 0};
    pa_reader_init(&r, body, &s);
    const char *p = (const char *)data, *end = p + size;
    int stopped = 0;
    while (p < end && !stopped) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
        /* Copy the line so ASan catches any read past its end. */
        char *line = malloc(len ? len : 1);
        if (!line)
            return 0;
        memcpy(line, p, len);
        size_t before = s.lines;
        int err_before = r.error;
        int rc = pa_reader_line(&r, line, len);
        free(line);
        if (err_before && (rc != -1 || s.lines != before))
            abort();
        if (rc != 0)
            stopped = 1;
        p += len + (eol ? 1 : 0);
    }
    if (strlen(r.message_id) >= sizeof r.message_id || strlen(r.format) >= sizeof r.format ||
        strlen(r.newsgroups) >= sizeof r.newsgroups)
        abort();
    if (!r.error && (r.header_lines > 1000 || r.header_bytes > 65536))
        abort();
    if (r.error && r.in_body)
        abort(); /* the header block either ended cleanly or was refused */
    return 0;
}
