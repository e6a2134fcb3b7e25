/* libFuzzer target for the IMAP command parser. The first bytes pick the limits (tiny ones
 * reach every limit quickly), a slicing seed, and when to switch to raw-line mode or refuse
 * a literal; the rest is the client's byte stream. The stream is parsed twice, whole and in
 * input-driven slices, and both runs must give the same events. Each run checks:
 * used <= offered, NEED_MORE uses everything, no two events in a row without progress
 * (unless the second is fatal), a fatal error stays fatal, and every command's tree respects the limits;
 * an APPEND's arguments go through pi_append_parse, whose messages must be its literals. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

typedef struct run_state {
    uint64_t hash;
    size_t events;
} run_state;

static void mix(run_state *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        s->hash = (s->hash ^ b[i]) * 1099511628211ull;
}

static size_t check_arg(const pi_arg *a, unsigned depth, const pi_limits *lim, uint64_t *lit, run_state *s)
{
    mix(s, &a->type, sizeof a->type);
    if (a->type == PI_LIST) {
        if (depth >= lim->max_depth || (a->count && !a->list) || (!a->count && a->list))
            abort();
        size_t n = 1;
        for (size_t i = 0; i < a->count; i++)
            n += check_arg(&a->list[i], depth + 1, lim, lit, s);
        return n;
    }
    if (!a->str || a->str[a->len] != '\0')
        abort();
    if (a->type != PI_LITERAL && memchr(a->str, '\0', a->len))
        abort();
    if (a->type == PI_LITERAL)
        *lit += a->len;
    if (a->type == PI_ATOM || a->type == PI_NIL)
        for (size_t i = 0; i < a->len; i++)
            if (a->str[i] == '\r' || a->str[i] == '\n')
                abort();
    mix(s, a->str, a->len);
    return 1;
}

/* APPEND's messages as the gateway reads them: every message is one of the command's
 * literals, flags are system flag bits, keywords are atoms without a backslash. */
static void check_append(const pi_command *c, uint64_t lit, run_state *s)
{
    pi_append_msg m[8];
    size_t n = 99;
    const char *err = NULL;
    int rc = pi_append_parse(c->args + 1, c->nargs - 1, m, 8, &n, &err);
    mix(s, &rc, sizeof rc);
    if (rc == -1 && (!err || !err[0]))
        abort();
    if (rc != 0 && rc != -1 && rc != -2)
        abort();
    if (n > 8 || (rc == 0 && n == 0))
        abort();
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 1; k < c->nargs; k++)
            found |= c->args[k].type == PI_LITERAL && c->args[k].str == m[i].data && c->args[k].len == m[i].len;
        if (!found || m[i].flags & ~0x1fu || m[i].nkeywords > PI_APPEND_KEYWORDS_MAX)
            abort();
        for (size_t k = 0; k < m[i].nkeywords; k++)
            if (!m[i].keywords[k][0] || strchr(m[i].keywords[k], '\\'))
                abort();
        if (m[i].has_date && (m[i].tz_minutes <= -24 * 60 || m[i].tz_minutes >= 24 * 60))
            abort();
        total += m[i].len;
        mix(s, &m[i].flags, sizeof m[i].flags);
        mix(s, &m[i].len, sizeof m[i].len);
    }
    if (total > lit)
        abort();
}

static void check_command(const pi_command *c, const pi_limits *lim, run_state *s)
{
    if (!c || !c->tag[0] || strlen(c->tag) > lim->max_tag || !c->name[0] || strlen(c->name) > PI_NAME_MAX)
        abort();
    for (const char *q = c->name; *q; q++)
        if (*q >= 'a' && *q <= 'z')
            abort();
    if (c->uid != (strncmp(c->name, "UID ", 4) == 0) || (c->nargs && !c->args))
        abort();
    mix(s, c->tag, strlen(c->tag) + 1);
    mix(s, c->name, strlen(c->name) + 1);
    size_t n = 0;
    uint64_t lit = 0;
    for (size_t i = 0; i < c->nargs; i++)
        n += check_arg(&c->args[i], 0, lim, &lit, s);
    uint64_t cap = strcmp(c->verb, "APPEND") == 0 ? lim->max_append_literal : lim->max_literal;
    if (n > lim->max_args || lit > cap)
        abort();
    if (strcmp(c->verb, "APPEND") == 0 && c->nargs >= 1)
        check_append(c, lit, s);
}

static run_state run(const pi_limits *lim, const uint8_t *d, size_t n, const uint8_t *slices, size_t nslices,
                     uint8_t policy)
{
    run_state s = {1469598103934665603ull, 0};
    pi_parser *p = pi_parser_new(lim);
    if (!p)
        abort();
    size_t pos = 0, k = 0;
    int idle_events = 0;
    while (pos < n) {
        size_t want = nslices ? 1 + slices[k++ % nslices] % 64 : n - pos;
        if (want > n - pos)
            want = n - pos;
        size_t used = SIZE_MAX;
        pi_status st = pi_parse(p, d + pos, want, &used);
        if (used > want)
            abort();
        pos += used;
        if (st == PI_NEED_MORE) {
            if (used != want)
                abort();
            idle_events = 0;
            continue;
        }
        /* An error may use no bytes (the offending one is left for the skip), and a fatal
         * error may follow it at once; anything else must move on. */
        idle_events = used ? 0 : idle_events + 1;
        if (idle_events > 1 && !(st == PI_ERROR && pi_parser_error(p)->fatal))
            abort();
        s.events++;
        mix(&s, &st, sizeof st);
        bool flip = (policy >> (s.events % 8)) & 1;
        if (st == PI_CONTINUE) {
            if (!pi_parser_tag(p))
                abort();
            uint64_t sz = pi_parser_literal_size(p);
            mix(&s, &sz, sizeof sz);
            if (flip && s.events % 3 == 0)
                pi_parser_reject_literal(p);
        } else if (st == PI_COMMAND) {
            check_command(pi_parser_command(p), lim, &s);
            if (flip && pi_parser_read_line(p) != 0)
                abort();
        } else if (st == PI_LINE) {
            size_t ll;
            const char *l = pi_parser_line(p, &ll);
            if (!l || l[ll] != '\0' || memchr(l, '\0', ll) || memchr(l, '\n', ll))
                abort();
            size_t counted = 0; /* CR is not counted against max_line */
            for (size_t i = 0; i < ll; i++)
                counted += l[i] != '\r';
            if (counted > lim->max_line)
                abort();
            mix(&s, l, ll);
        } else {
            const pi_error *e = pi_parser_error(p);
            if (!e || !e->msg[0] || strchr(e->msg, '\n'))
                abort();
            pu_buf b = PU_BUF_INIT;
            if (pi_error_reply(e, &b) < 0 || b.len < 2 || memcmp(b.data + b.len - 2, "\r\n", 2) != 0)
                abort();
            pu_buf_free(&b);
            mix(&s, e->msg, strlen(e->msg));
            mix(&s, &e->fatal, sizeof e->fatal);
            if (e->fatal) {
                size_t u2 = 1;
                if (pi_parse(p, "a", 1, &u2) != PI_ERROR || u2 != 0 || !pi_parser_error(p)->fatal)
                    abort();
                break;
            }
        }
    }
    pi_parser_free(p);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    pi_limits lim;
    pi_limits_default(&lim);
    if (data[0] & 1) {
        lim.max_line = 16 + data[1] % 64;
        lim.max_literal = data[1] % 32;
        lim.max_append_literal = 32 + data[2] % 64;
        lim.max_depth = 1 + data[2] % 4;
        lim.max_args = 1 + data[1] % 8;
        lim.max_tag = 1 + data[2] % 8;
    }
    uint8_t policy = data[3];
    data += 4;
    size_t n = size - 4;
    /* The slicing pattern comes from the stream itself, read backwards, so every input both
     * drives the parser and cuts it up differently. */
    size_t ns = n < 32 ? n : 32;
    uint8_t slices[32];
    for (size_t i = 0; i < ns; i++)
        slices[i] = data[n - 1 - i];
    run_state whole = run(&lim, data, n, NULL, 0, policy);
    run_state cut = run(&lim, data, n, slices, ns, policy);
    run_state bytes = run(&lim, data, n, (const uint8_t *)"\0", 1, policy);
    if (whole.hash != cut.hash || whole.events != cut.events || whole.hash != bytes.hash)
        abort();
    return 0;
}
