/* libFuzzer target for LIST's syntax and mailbox patterns (imap/list.c). The first byte picks
 * what the rest is:
 *   0  the arguments of LIST, through the command parser and pi_list_parse
 *   1  the arguments of LSUB, the same way
 *   2  a pattern, a NUL, a name: pi_list_match against a reference matcher on short inputs
 * Checks: a failed parse gives a message; a parsed request has 1..PI_LIST_PATTERNS_MAX
 * patterns, each NUL-terminated within bounds; matching never takes more than the pattern's
 * length times the name's (libFuzzer's -timeout catches a blow-up); on inputs short enough
 * for plain recursion both matchers agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"
#include "imap_args.h"

static const char *const names[] = {"INBOX", "Sent", "Drafts", "Lists/Work", "a/b/c", "Trash", "x%y*z", ""};

static void check_parse(const pi_command *c, bool lsub)
{
    pi_list_req q;
    const char *err = NULL;
    int rc = pi_list_parse(c->args, c->nargs, lsub, &q, &err);
    if (rc < 0) {
        if (!err || !err[0])
            abort();
        return;
    }
    if (rc == 1)
        return;
    if (rc != 0 || q.npat < 1 || q.npat > PI_LIST_PATTERNS_MAX || (lsub && (q.sel_subscribed || q.sel_special)))
        abort();
    for (size_t i = 0; i < q.npat; i++)
        if (strnlen(q.patterns[i], PI_LIST_PATTERN_MAX + 1) > PI_LIST_PATTERN_MAX)
            abort();
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        (void)pi_list_matches(&q, names[k]);
}

static void check_list(const pi_command *c, void *ctx)
{
    (void)ctx;
    check_parse(c, false);
}

static void check_lsub(const pi_command *c, void *ctx)
{
    (void)ctx;
    check_parse(c, true);
}

/* The obvious recursive matcher: exponential in the wildcards, so only for short inputs. */
static bool slow(const char *p, const char *n, bool ci)
{
    if (!*p)
        return !*n;
    if (*p == '*' || *p == '%')
        for (const char *t = n;; t++) {
            if (slow(p + 1, t, ci))
                return true;
            if (!*t || (*p == '%' && *t == '/'))
                return false;
        }
    char a = *p, b = *n;
    if (ci && a >= 'a' && a <= 'z')
        a = (char)(a - 32);
    if (ci && b >= 'a' && b <= 'z')
        b = (char)(b - 32);
    return *n && a == b && slow(p + 1, n + 1, ci);
}

static void match_pair(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul)
        return;
    size_t plen = (size_t)(nul - data), nlen = size - plen - 1;
    char *pat = malloc(plen + 1), *name = malloc(nlen + 1);
    if (!pat || !name)
        abort();
    memcpy(pat, data, plen);
    pat[plen] = '\0';
    memcpy(name, nul + 1, nlen);
    name[nlen] = '\0';
    bool got = pi_list_match(pat, name);
    size_t wild = 0;
    for (size_t i = 0; pat[i]; i++)
        wild += pat[i] == '*' || pat[i] == '%';
    /* strings with a NUL inside end there for both; compare where the slow one stays fast */
    if (wild <= 4 && strlen(name) <= 32 && strlen(pat) <= PI_LIST_PATTERN_MAX &&
        got != slow(pat, name, strcmp(name, "INBOX") == 0))
        abort();
    free(pat);
    free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0: fuzz_imap_args("a LIST ", data + 1, size - 1, check_list, NULL); break;
    case 1: fuzz_imap_args("a LSUB ", data + 1, size - 1, check_lsub, NULL); break;
    default: match_pair(data + 1, size - 1); break;
    }
    return 0;
}
