/* libFuzzer target for SEARCH programs. The input is the argument text of a command: the
 * stream "a SEARCH <input>\r\n" goes through the command parser (literals included), and
 * every command it yields through pi_search_parse, then each program is evaluated against
 * fixed fake messages. Checks: a failed parse leaves no program and gives a message; an
 * evaluation answers 0 or 1 (-1 only where a callback failed), the same twice running; no
 * callback runs that pi_search_needs() did not announce, none twice in one evaluation
 * (header() once per field name); and NOT (program) answers the opposite whenever the
 * limits let it parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap.h"
#include "imap_args.h"

#define MAX_NAMES 64

typedef struct fake {
    bool failing; /* every text callback returns -1 */
    unsigned needs;
    int n_headers, n_body, n_sent, n_names;
    const char *names[MAX_NAMES]; /* the program's own strings: valid while it lives */
} fake;

static const char *const fields[][2] = {
    {"From", "Jörg Müller <joerg@example.org>"},
    {"To", "Σοφία <sofia@example.gr>, undisclosed"},
    {"Cc", "Иван <ivan@example.ru>"},
    {"Subject", "Re: ĀĂĄ report for 1-Feb-1994"},
    {"Received", "from a"},
    {"Received", "from b"},
    {"X-Empty", ""},
    {"Date", "Tue, 1 Feb 1994 21:52:25 -0800"},
};

static bool cb_keyword(void *arg, const char *kw, size_t len)
{
    (void)arg;
    return (len == 4 && strncasecmp(kw, "Work", 4) == 0) || (len == 5 && strncmp(kw, "$Junk", 5) == 0);
}

static int cb_header(void *arg, const char *name, pu_buf *out)
{
    fake *f = arg;
    if (!(f->needs & PI_SEARCH_NEEDS_HEADERS) || out->len != 0)
        abort();
    for (int i = 0; i < f->n_names && i < MAX_NAMES; i++)
        if (strcasecmp(f->names[i], name) == 0)
            abort(); /* asked twice */
    if (f->n_names < MAX_NAMES)
        f->names[f->n_names] = name;
    f->n_names++;
    if (f->failing)
        return -1;
    int found = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strcasecmp(fields[i][0], name) != 0)
            continue;
        if ((found++ && pu_buf_addstr(out, "\n") < 0) || pu_buf_addstr(out, fields[i][1]) < 0)
            return -1;
    }
    return found > 0;
}

static int cb_headers(void *arg, pu_buf *out)
{
    fake *f = arg;
    if (!(f->needs & PI_SEARCH_NEEDS_HEADERS) || out->len != 0 || f->n_headers++)
        abort();
    if (f->failing)
        return -1;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (pu_buf_printf(out, "%s: %s\n", fields[i][0], fields[i][1]) < 0)
            return -1;
    return 0;
}

static int cb_body(void *arg, pu_buf *out)
{
    fake *f = arg;
    if (!(f->needs & PI_SEARCH_NEEDS_BODY) || out->len != 0 || f->n_body++)
        abort();
    if (f->failing)
        return -1;
    return pu_buf_addstr(out, "Hello ПРИВЕТ, straße ſt µ ΣΟΦΊΑ.\nLine two \xC3\x28 \xE2\x82\xAC end\n");
}

static int cb_sent(void *arg, int64_t *t, int *tz)
{
    fake *f = arg;
    if (!(f->needs & PI_SEARCH_NEEDS_HEADERS) || f->n_sent++)
        abort();
    if (f->failing)
        return 0;
    *t = 760168345; /* 1994-02-02 05:52:25 UTC */
    *tz = -8 * 60;
    return 1;
}

/* Three messages: a full one, a bare one (no callbacks), and one whose callbacks fail. */
static int eval_all(const pi_search *s, int out[3])
{
    fake f;
    pi_search_msg m[3] = {
        {.seq = 3, .uid = 30, .flags = PI_FLAG_SEEN | PI_FLAG_FLAGGED, .recent = true,
         .internaldate = 760168345, .tz_minutes = 60, .size = 4096, .modseq = 1000, .arg = &f, .has_keyword = cb_keyword,
         .header = cb_header, .headers = cb_headers, .body_text = cb_body, .sent_date = cb_sent},
        {.seq = 5, .uid = 50, .flags = PI_FLAG_DELETED | PI_FLAG_DRAFT | PI_FLAG_ANSWERED,
         .internaldate = -86401, .tz_minutes = -23 * 60, .size = 0, .modseq = 1},
        {.seq = 1, .uid = 1, .internaldate = INT64_MAX, .tz_minutes = 0, .size = UINT64_MAX, .modseq = INT64_MAX, .arg = &f,
         .has_keyword = cb_keyword, .header = cb_header, .headers = cb_headers, .body_text = cb_body,
         .sent_date = cb_sent},
    };
    unsigned needs = pi_search_needs(s);
    if (needs & ~(PI_SEARCH_NEEDS_META | PI_SEARCH_NEEDS_HEADERS | PI_SEARCH_NEEDS_BODY))
        abort();
    for (int i = 0; i < 3; i++) {
        for (int round = 0; round < 2; round++) {
            memset(&f, 0, sizeof f);
            f.failing = i == 2;
            f.needs = needs;
            int r = pi_search_eval(s, &m[i]);
            if (r < -1 || r > 1 || (r == -1 && i != 2) || (round && r != out[i]))
                abort();
            out[i] = r;
        }
    }
    return 0;
}

static void check_command(const pi_command *c)
{
    pi_search *s = (pi_search *)&s;
    const char *err = NULL;
    int rc = pi_search_parse(c->args, c->nargs, 5, 50, &s, &err);
    if (rc != 0) {
        if (s || !err || !err[0] || (rc != -1 && rc != -2 && rc != PI_SEARCH_BADCHARSET))
            abort();
        return;
    }
    if (!s)
        abort();
    int plain[3];
    eval_all(s, plain);
    pi_search_free(s);

    /* NOT (keys), the CHARSET prefix left out. */
    size_t skip = c->nargs >= 2 && pi_arg_atom_is(&c->args[0], "CHARSET") ? 2 : 0;
    pi_arg neg[2] = {{.type = PI_ATOM, .str = "NOT", .len = 3},
                     {.type = PI_LIST, .list = c->args + skip, .count = c->nargs - skip}};
    rc = pi_search_parse(neg, 2, 5, 50, &s, &err);
    if (rc == -1 && (strcmp(err, "Search program too long") == 0 || strcmp(err, "Search program nested too deeply") == 0))
        return;
    if (rc != 0)
        abort();
    int inverted[3];
    eval_all(s, inverted);
    for (int i = 0; i < 3; i++)
        if (inverted[i] != (plain[i] < 0 ? -1 : !plain[i]))
            abort();
    pi_search_free(s);
}

static void check_one(const pi_command *c, void *ctx)
{
    (void)ctx;
    check_command(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_imap_args("a SEARCH ", data, size, check_one, NULL);
    return 0;
}
