/* APPEND and MULTIAPPEND arguments (RFC 3501 6.3.11, RFC 3502): the syntax only; what a
 * message is filed as is the gateway's business. And the names of the system flags. */
#include <string.h>
#include <strings.h>

#include "imap/imap.h"

static const struct {
    const char *name;
    unsigned bit; /* 0: \Recent */
} system_flags[] = {
    {"\\Seen", PI_FLAG_SEEN},       {"\\Answered", PI_FLAG_ANSWERED}, {"\\Flagged", PI_FLAG_FLAGGED},
    {"\\Deleted", PI_FLAG_DELETED}, {"\\Draft", PI_FLAG_DRAFT},       {"\\Recent", 0},
};

int pi_system_flag(const char *name)
{
    for (size_t k = 0; k < sizeof system_flags / sizeof system_flags[0]; k++)
        if (strcasecmp(name, system_flags[k].name) == 0)
            return (int)system_flags[k].bit;
    return -1;
}

static bool keyword_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (strchr("%*\\]", s[i]))
            return false;
    return true;
}

static int parse_flags(const pi_arg *list, pi_append_msg *m, const char **err)
{
    for (size_t i = 0; i < list->count; i++) {
        const pi_arg *f = &list->list[i];
        if (f->type != PI_ATOM) {
            *err = "Flags are atoms";
            return -1;
        }
        if (f->str[0] == '\\') {
            int bit = pi_system_flag(f->str);
            if (bit <= 0) {
                *err = bit == 0 ? "\\Recent cannot be set" : "Unknown system flag";
                return -1;
            }
            m->flags |= (unsigned)bit;
            continue;
        }
        if (!keyword_ok(f->str, f->len)) {
            *err = "Invalid keyword";
            return -1;
        }
        size_t k = 0;
        while (k < m->nkeywords && strcasecmp(m->keywords[k], f->str) != 0)
            k++;
        if (k < m->nkeywords)
            continue; /* the same keyword twice is one */
        if (m->nkeywords == PI_APPEND_KEYWORDS_MAX) {
            *err = "Too many keywords";
            return -1;
        }
        m->keywords[m->nkeywords++] = f->str;
    }
    return 0;
}

int pi_append_parse(const pi_arg *args, size_t nargs, pi_append_msg *out, size_t max, size_t *n, const char **err)
{
    *n = 0;
    size_t i = 0;
    if (nargs == 0) {
        *err = "Missing message";
        return -1;
    }
    while (i < nargs) {
        pi_append_msg m;
        memset(&m, 0, sizeof m);
        if (args[i].type == PI_LIST) {
            if (parse_flags(&args[i], &m, err) != 0)
                return -1;
            i++;
        }
        if (i < nargs && args[i].type == PI_QUOTED) {
            if (pi_date_time_parse(args[i].str, args[i].len, &m.date, &m.tz_minutes) != 0) {
                *err = "Invalid date-time";
                return -1;
            }
            m.has_date = true;
            i++;
        }
        if (i >= nargs || args[i].type != PI_LITERAL) {
            *err = i >= nargs ? "Missing message literal" : "The message must be a literal";
            return -1;
        }
        m.data = args[i].str;
        m.len = args[i].len;
        i++;
        if (*n == max)
            return -2;
        out[(*n)++] = m;
    }
    return 0;
}
