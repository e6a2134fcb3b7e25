/* libFuzzer target for SORT, THREAD and ESEARCH. The first byte picks what the rest is:
 *   0  the arguments of SORT, through the command parser and pi_sort_parse
 *   1  the arguments of THREAD, through pi_thread_parse
 *   2  the arguments of SEARCH, through pi_esearch_parse and pi_esearch_write
 *   3  lines, each one message's ENVELOPE text (and, after a TAB, its References), read by
 *      pi_sort_msg_fill, then sorted by every key and threaded by both algorithms.
 * Checks: a failed parse leaves no program and gives a message; a sort is a permutation in
 * order of its first key; a THREAD answer has balanced parentheses, no empty list, and names
 * every message exactly once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"
#include "imap_args.h"

#define MAX_MSGS 64

static void check_parse(int mode, const pi_command *c)
{
    pi_search *prog = (pi_search *)&prog;
    const char *err = NULL;
    int rc;
    if (mode == 0) {
        pi_sort_crit crit;
        rc = pi_sort_parse(c->args, c->nargs, 5, 50, &crit, &prog, &err);
        if (rc == 0 && (crit.n < 1 || crit.n > PI_SORT_MAX_KEYS))
            abort();
    } else if (mode == 1) {
        pi_thread_alg alg;
        rc = pi_thread_parse(c->args, c->nargs, 5, 50, &alg, &prog, &err);
        if (rc == 0 && alg != PI_THREAD_REFERENCES && alg != PI_THREAD_ORDEREDSUBJECT)
            abort();
    } else {
        unsigned opts = 0;
        size_t skip = 0;
        rc = pi_esearch_parse(c->args, c->nargs, &opts, &skip, &err);
        if (rc != 0 && !err)
            abort();
        if (rc == 0 && (skip > c->nargs || (skip && !opts) || (opts & ~0xfu)))
            abort();
        static const uint32_t ids[] = {1, 2, 3, 7, 9, 10, 4000000000u};
        pu_buf b = PU_BUF_INIT;
        if (pi_esearch_write(&b, c->tag, c->uid, opts, ids, sizeof ids / sizeof ids[0]) < 0)
            abort();
        pu_buf_free(&b);
        return;
    }
    if (rc != 0) {
        if (prog || !err || !err[0] || (rc != -1 && rc != -2 && rc != PI_SEARCH_BADCHARSET))
            abort();
        return;
    }
    if (!prog)
        abort();
    pi_search_free(prog);
}

static void check_mode(const pi_command *c, void *ctx)
{
    check_parse(*(const int *)ctx, c);
}

static void parse_args(int mode, const uint8_t *data, size_t size)
{
    static const char *const prefix[] = {"a SORT ", "a THREAD ", "a SEARCH "};
    fuzz_imap_args(prefix[mode], data, size, check_mode, &mode);
}

/* Balanced, no "()", every id 1..n once. */
static void check_threads(const char *s, size_t n)
{
    unsigned seen[MAX_MSGS + 1] = {0};
    int depth = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == '(') {
            if (s[i + 1] == ')')
                abort();
            depth++;
            i++;
        } else if (s[i] == ')') {
            if (--depth < 0)
                abort();
            i++;
        } else if (s[i] == ' ') {
            i++;
        } else if (s[i] >= '1' && s[i] <= '9') {
            unsigned long v = strtoul(s + i, NULL, 10);
            if (v < 1 || v > n || seen[v]++)
                abort();
            while (s[i] >= '0' && s[i] <= '9')
                i++;
        } else {
            abort();
        }
    }
    if (depth)
        abort();
    for (size_t v = 1; v <= n; v++)
        if (seen[v] != 1)
            abort();
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A fill of only the fields some keys need gives those fields exactly as a full fill does. */
static void check_partial(const pi_sort_msg *full, const char *line, size_t len, const char *refs)
{
    static const unsigned needs[] = {PI_NEED_DATE, PI_NEED_SUBJECT, PI_NEED_ADDRESSES, PI_NEED_IDS};
    for (size_t k = 0; k < sizeof needs / sizeof needs[0]; k++) {
        pi_sort_msg p = {.seq = full->seq, .id = full->id, .size = full->size, .arrival = full->arrival};
        if (pi_sort_msg_fill_needed(&p, line, len, refs, needs[k]) < 0)
            continue;
        bool ok = true;
        if (needs[k] == PI_NEED_DATE)
            ok = p.date == full->date;
        else if (needs[k] == PI_NEED_SUBJECT)
            ok = same(p.subject, full->subject) && p.refwd == full->refwd;
        else if (needs[k] == PI_NEED_ADDRESSES)
            ok = same(p.from, full->from) && same(p.to, full->to) && same(p.cc, full->cc) &&
                 same(p.dfrom, full->dfrom) && same(p.dto, full->dto);
        else {
            ok = same(p.msgid, full->msgid) && p.nrefs == full->nrefs;
            for (size_t i = 0; ok && i < p.nrefs; i++)
                ok = same(p.refs[i], full->refs[i]);
        }
        if (!ok || !p.subject || !p.from || !p.dto)
            abort();
        pi_sort_msg_clear(&p);
    }
}

static void messages(const uint8_t *data, size_t size)
{
    pi_sort_msg msgs[MAX_MSGS];
    size_t n = 0;
    size_t off = 0;
    while (off <= size && n < MAX_MSGS) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t end = nl ? (size_t)(nl - data) : size;
        char *line = malloc(end - off + 1);
        if (!line)
            break;
        memcpy(line, data + off, end - off);
        line[end - off] = '\0';
        size_t len = strlen(line); /* a NUL ends it: the blob never holds one */
        char *tab = strchr(line, '\t');
        if (tab) {
            *tab = '\0';
            len = (size_t)(tab - line);
        }
        msgs[n] = (pi_sort_msg){.seq = (uint32_t)(n + 1), .id = (uint32_t)(n + 1), .size = (uint64_t)len % 7,
                                .arrival = (int64_t)(n % 3)};
        int rc = pi_sort_msg_fill(&msgs[n], line, len, tab ? tab + 1 : NULL);
        if (rc == 0)
            check_partial(&msgs[n], line, len, tab ? tab + 1 : NULL);
        free(line);
        if (rc < 0)
            break;
        if (!msgs[n].subject || !msgs[n].from || !msgs[n].to || !msgs[n].cc || !msgs[n].dfrom || !msgs[n].dto ||
            msgs[n].nrefs > PI_THREAD_MAX_REFS)
            abort();
        n++;
        if (!nl)
            break;
        off = end + 1;
    }
    pi_sort_msg *v[MAX_MSGS];
    for (int k = 0; k <= PI_SORT_DISPLAYTO; k++) {
        pi_sort_crit c = {.keys = {(pi_sort_key)k}, .reverse = {k & 1}, .n = 1};
        for (size_t i = 0; i < n; i++)
            v[i] = &msgs[i];
        if (pi_sort_order(&c, v, n) < 0)
            continue;
        unsigned seen[MAX_MSGS + 1] = {0};
        for (size_t i = 0; i < n; i++)
            if (seen[v[i]->seq]++)
                abort();
        for (size_t i = 1; i < n; i++) {
            const pi_sort_msg *a = v[i - 1], *b = v[i];
            int r = 0;
            bool known = true; /* the keys whose order is checked here */
            switch (k) {
            case PI_SORT_ARRIVAL: r = (a->arrival > b->arrival) - (a->arrival < b->arrival); break;
            case PI_SORT_DATE: r = (a->date > b->date) - (a->date < b->date); break;
            case PI_SORT_SIZE: r = (a->size > b->size) - (a->size < b->size); break;
            case PI_SORT_SUBJECT: r = strcmp(a->subject, b->subject); break;
            case PI_SORT_FROM: r = strcmp(a->from, b->from); break;
            default: known = false; break;
            }
            if (k & 1)
                r = -r;
            if (known && (r > 0 || (r == 0 && a->seq > b->seq)))
                abort();
        }
    }
    for (int alg = 0; alg < 2; alg++) {
        pu_buf out = PU_BUF_INIT;
        if (pi_thread_write((pi_thread_alg)alg, msgs, n, &out) == 0)
            check_threads(out.data ? out.data : "", n);
        pu_buf_free(&out);
    }
    for (size_t i = 0; i < n; i++)
        pi_sort_msg_clear(&msgs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    if (mode < 3)
        parse_args(mode, data + 1, size - 1);
    else
        messages(data + 1, size - 1);
    return 0;
}
