/* Bounded, incremental splitter for articles read back from the news server. */
#include "article/article.h"

#include <string.h>
#include <strings.h>

#define HEADER_BYTES_MAX 65536
#define HEADER_LINES_MAX 1000

enum { F_NONE = 0, F_MSGID, F_FORMAT, F_NEWSGROUPS, F_CANCEL_LOCK };

void pa_reader_init(pa_reader *r, pa_body_fn body, void *arg)
{
    memset(r, 0, sizeof *r);
    r->body = body;
    r->arg = arg;
}

static int bad(pa_reader *r)
{
    r->error = 1;
    return -1;
}

/* Newsgroups: white space is not part of the value, and a value too long for the buffer
 * keeps only whole group names, so a cut name can never pass for another group. */
static void newsgroups_put(pa_reader *r, char c)
{
    char *d = r->newsgroups;
    if (r->ng_full || c == ' ' || c == '\t')
        return;
    size_t n = strlen(d);
    if (n + 1 < sizeof r->newsgroups) {
        d[n] = c;
        d[n + 1] = '\0';
        return;
    }
    r->ng_full = 1;
    if (c != ',') {
        char *comma = strrchr(d, ',');
        *(comma ? comma : d) = '\0';
    }
}

/* Appends value text (after the colon, or a continuation line) to the current kept field. */
static int value(pa_reader *r, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 && c != '\t')
            return bad(r); /* NUL, CR, LF and the like never belong in these fields */
        if (c == 0x7f)
            return bad(r);
        if (r->field == F_NEWSGROUPS) {
            newsgroups_put(r, c);
            continue;
        }
        if (r->field == F_CANCEL_LOCK && r->cl_full)
            continue;
        char *d = r->field == F_MSGID ? r->message_id : r->field == F_FORMAT ? r->format : r->cancel_lock;
        size_t cap = r->field == F_MSGID    ? sizeof r->message_id
                     : r->field == F_FORMAT ? sizeof r->format
                                            : sizeof r->cancel_lock;
        if (c == ' ' || c == '\t') {
            r->ws_pending = d[0] != '\0'; /* leading white space is dropped */
            continue;
        }
        size_t n = strlen(d), need = (size_t)r->ws_pending + 1;
        if (n + need >= cap && r->field == F_CANCEL_LOCK) {
            /* the locks INN sites appended: the first whole ones are postern's */
            char *sp = strrchr(d, ' ');
            if (!r->ws_pending)
                *(sp ? sp : d) = '\0';
            r->cl_full = 1;
            continue;
        }
        if (n + need >= cap)
            return bad(r); /* longer than anything postern writes */
        if (r->ws_pending)
            d[n++] = ' ';
        d[n++] = c;
        d[n] = '\0';
        r->ws_pending = 0;
    }
    return 0;
}

static int field_of(const char *name, size_t n)
{
    static const struct { const char *name; int field; } kept[] = {
        {"Message-ID", F_MSGID},
        {"Postern-Format", F_FORMAT},
        {"Newsgroups", F_NEWSGROUPS},
        {"Cancel-Lock", F_CANCEL_LOCK}};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        if (strlen(kept[i].name) == n && strncasecmp(kept[i].name, name, n) == 0)
            return kept[i].field;
    return F_NONE;
}

int pa_reader_line(void *reader, const char *line, size_t len)
{
    pa_reader *r = reader;
    if (r->error)
        return -1;
    if (r->in_body)
        return r->body ? r->body(r->arg, line, len) : 0;
    if (len == 0) {
        r->in_body = 1;
        r->field = F_NONE;
        return 0;
    }
    r->header_lines++;
    r->header_bytes += len + 2;
    if (r->header_lines > HEADER_LINES_MAX || r->header_bytes > HEADER_BYTES_MAX)
        return bad(r);
    if (line[0] == ' ' || line[0] == '\t') {
        if (r->header_lines == 1)
            return bad(r); /* a continuation of nothing */
        return r->field != F_NONE ? value(r, line, len) : 0;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return bad(r);
    size_t nn = (size_t)(colon - line);
    for (size_t i = 0; i < nn; i++)
        if ((unsigned char)line[i] <= 0x20 || (unsigned char)line[i] >= 0x7f)
            return bad(r); /* RFC 5322 field names are visible ASCII */
    r->field = field_of(line, nn);
    r->ws_pending = 0;
    if (r->field == F_NONE)
        return 0;
    if (r->seen & (1u << r->field))
        return bad(r); /* two values: which one would be true? */
    r->seen |= 1u << r->field;
    return value(r, colon + 1, len - nn - 1);
}
