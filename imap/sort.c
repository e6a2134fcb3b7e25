/* SORT (RFC 5256, with RFC 5957's DISPLAYFROM/DISPLAYTO) and ESEARCH (RFC 4731): the command
 * syntax, the sort keys of one message read back from its cached ENVELOPE text, base subject
 * extraction, and the ordering. Threading is in thread.c. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap.h"
#include "mime/mime.h"

/* ---------------------------------------------------------------------------------------- */
/* Command syntax */

static int parse_charset(const pi_arg *a, const char **err)
{
    const char *cs;
    size_t len;
    if (!pi_arg_astring(a, &cs, &len) || a->type == PI_NIL) {
        *err = "Missing charset";
        return -1;
    }
    if ((len == 5 && strncasecmp(cs, "UTF-8", 5) == 0) || (len == 8 && strncasecmp(cs, "US-ASCII", 8) == 0))
        return 0;
    *err = "Unsupported charset";
    return PI_SEARCH_BADCHARSET;
}

/* The program after the command's own charset: SEARCH's CHARSET prefix is not allowed
 * again, and at least one key must be there. */
static int parse_program(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_search **prog,
                         const char **err)
{
    if (nargs == 0) {
        *err = "Missing search criteria";
        return -1;
    }
    if (pi_arg_atom_is(&args[0], "CHARSET")) {
        *err = "Charset given twice";
        return -1;
    }
    return pi_search_parse(args, nargs, star_seq, star_uid, prog, err);
}

/* args[1] the charset, args[2..] the search program: the tail SORT and THREAD share */
static int parse_charset_and_program(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid,
                                     pi_search **prog, const char **err)
{
    if (nargs < 2) {
        *err = "Missing charset";
        return -1;
    }
    int rc = parse_charset(&args[1], err);
    if (rc != 0)
        return rc;
    return parse_program(args + 2, nargs - 2, star_seq, star_uid, prog, err);
}

int pi_sort_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_sort_crit *crit,
                  pi_search **prog, const char **err)
{
    static const struct {
        const char *name;
        pi_sort_key key;
    } names[] = {
        {"ARRIVAL", PI_SORT_ARRIVAL}, {"CC", PI_SORT_CC},           {"DATE", PI_SORT_DATE},
        {"FROM", PI_SORT_FROM},       {"SIZE", PI_SORT_SIZE},       {"SUBJECT", PI_SORT_SUBJECT},
        {"TO", PI_SORT_TO},           {"DISPLAYFROM", PI_SORT_DISPLAYFROM}, {"DISPLAYTO", PI_SORT_DISPLAYTO},
    };
    const char *dummy;
    if (!err)
        err = &dummy;
    *prog = NULL;
    memset(crit, 0, sizeof *crit);
    if (nargs < 1 || args[0].type != PI_LIST || args[0].count == 0) {
        *err = "SORT needs a parenthesised list of sort criteria";
        return -1;
    }
    bool reverse = false;
    for (size_t i = 0; i < args[0].count; i++) {
        const pi_arg *a = &args[0].list[i];
        if (a->type != PI_ATOM) {
            *err = "Invalid sort criterion";
            return -1;
        }
        if (!reverse && pi_arg_atom_is(a, "REVERSE")) {
            reverse = true;
            continue;
        }
        size_t k = 0;
        while (k < sizeof names / sizeof names[0] && !pi_arg_atom_is(a, names[k].name))
            k++;
        if (k == sizeof names / sizeof names[0]) {
            *err = "Unknown sort criterion";
            return -1;
        }
        if (crit->n == PI_SORT_MAX_KEYS) {
            *err = "Too many sort criteria";
            return -1;
        }
        crit->keys[crit->n] = names[k].key;
        crit->reverse[crit->n++] = reverse;
        reverse = false;
    }
    if (reverse) {
        *err = "REVERSE must be followed by a sort criterion";
        return -1;
    }
    return parse_charset_and_program(args, nargs, star_seq, star_uid, prog, err);
}

int pi_thread_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_thread_alg *alg,
                    pi_search **prog, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    *prog = NULL;
    if (nargs < 1 || args[0].type != PI_ATOM) {
        *err = "THREAD needs an algorithm";
        return -1;
    }
    if (pi_arg_atom_is(&args[0], "ORDEREDSUBJECT"))
        *alg = PI_THREAD_ORDEREDSUBJECT;
    else if (pi_arg_atom_is(&args[0], "REFERENCES"))
        *alg = PI_THREAD_REFERENCES;
    else {
        *err = "Unknown threading algorithm";
        return -1;
    }
    return parse_charset_and_program(args, nargs, star_seq, star_uid, prog, err);
}

bool pi_sort_needs_envelope(const pi_sort_crit *crit)
{
    for (size_t i = 0; i < crit->n; i++)
        if (crit->keys[i] != PI_SORT_ARRIVAL && crit->keys[i] != PI_SORT_SIZE)
            return true;
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading an ENVELOPE back: the text imap/bodystructure.c writes (quoted strings, literals,
 * NIL, lists). Bounded by its length; anything unexpected stops the reading. */

typedef struct env_rd {
    const char *s;
    size_t len, i;
    bool bad;
} env_rd;

/* RFC 2047 words decoded; a value without "=?" has none, and skipping libetpan for it made
 * reading 10,000 envelopes several times faster. */
static int decode(const char *s, pu_buf *out)
{
    return strstr(s, "=?") ? mime_decode_words(s, out) : pu_buf_addstr(out, s);
}

/* The buffer's string, handed over ("" for an empty buffer, which may hold no memory). */
static char *buf_take(pu_buf *b)
{
    if (b->data)
        return b->data;
    return strdup("");
}

static void rd_sp(env_rd *r)
{
    while (r->i < r->len && r->s[r->i] == ' ')
        r->i++;
}

static bool rd_ch(env_rd *r, char c)
{
    rd_sp(r);
    if (r->i < r->len && r->s[r->i] == c) {
        r->i++;
        return true;
    }
    return false;
}

static bool rd_skip(env_rd *r);

/* An nstring: *out malloc'd (NULL for NIL); out NULL: skipped, nothing allocated. false on
 * bad syntax or memory (r->bad). */
static bool rd_nstring(env_rd *r, char **out)
{
    if (!out)
        return rd_skip(r);
    *out = NULL;
    rd_sp(r);
    if (r->i + 3 <= r->len && strncasecmp(r->s + r->i, "NIL", 3) == 0) {
        r->i += 3;
        return true;
    }
    pu_buf b = PU_BUF_INIT;
    if (r->i < r->len && r->s[r->i] == '"') {
        r->i++;
        while (r->i < r->len && r->s[r->i] != '"') {
            /* a run without quote or backslash at once: octet by octet was most of a SORT */
            size_t j = r->i;
            while (j < r->len && r->s[j] != '"' && r->s[j] != '\\')
                j++;
            if (j > r->i && pu_buf_add(&b, r->s + r->i, j - r->i) < 0)
                goto bad;
            r->i = j;
            if (r->i < r->len && r->s[r->i] == '\\') {
                if (r->i + 1 < r->len)
                    r->i++; /* the quoted octet */
                if (pu_buf_add(&b, &r->s[r->i], 1) < 0)
                    goto bad;
                r->i++;
            }
        }
        if (r->i == r->len)
            goto bad;
        r->i++;
    } else if (r->i < r->len && r->s[r->i] == '{') {
        size_t n = 0, j = r->i + 1;
        while (j < r->len && r->s[j] >= '0' && r->s[j] <= '9' && n < r->len)
            n = n * 10 + (size_t)(r->s[j++] - '0');
        if (j + 3 > r->len || r->s[j] != '}' || r->s[j + 1] != '\r' || r->s[j + 2] != '\n' || n > r->len - j - 3)
            goto bad;
        j += 3;
        if (pu_buf_add(&b, r->s + j, n) < 0)
            goto bad;
        r->i = j + n;
    } else {
        goto bad;
    }
    for (size_t k = 0; k < b.len; k++)
        if (b.data[k] == '\0') /* never written so; would cut the string short */
            b.data[k] = ' ';
    if (!(*out = buf_take(&b)))
        goto bad;
    return true;
bad:
    pu_buf_free(&b);
    r->bad = true;
    return false;
}

/* An nstring passed over: the same syntax checks as rd_nstring, no copy. */
static bool rd_skip(env_rd *r)
{
    rd_sp(r);
    if (r->i + 3 <= r->len && strncasecmp(r->s + r->i, "NIL", 3) == 0) {
        r->i += 3;
        return true;
    }
    if (r->i < r->len && r->s[r->i] == '"') {
        for (r->i++; r->i < r->len && r->s[r->i] != '"'; r->i++)
            if (r->s[r->i] == '\\' && r->i + 1 < r->len)
                r->i++;
        if (r->i < r->len) {
            r->i++;
            return true;
        }
    } else if (r->i < r->len && r->s[r->i] == '{') {
        size_t n = 0, j = r->i + 1;
        while (j < r->len && r->s[j] >= '0' && r->s[j] <= '9' && n < r->len)
            n = n * 10 + (size_t)(r->s[j++] - '0');
        if (j + 3 <= r->len && r->s[j] == '}' && r->s[j + 1] == '\r' && r->s[j + 2] == '\n' && n <= r->len - j - 3) {
            r->i = j + 3 + n;
            return true;
        }
    }
    r->bad = true;
    return false;
}

static void free4(char *a[4])
{
    for (int k = 0; k < 4; k++) {
        free(a[k]);
        a[k] = NULL;
    }
}

/* An address list: keeps the first address that has a host (a real mailbox, not a group
 * marker) in first[4] (name, adl, mailbox, host). */
static bool rd_addresses(env_rd *r, char *first[4], bool skip)
{
    rd_sp(r);
    if (r->i + 3 <= r->len && strncasecmp(r->s + r->i, "NIL", 3) == 0) {
        r->i += 3;
        return true;
    }
    if (!rd_ch(r, '('))
        return r->bad = true, false;
    while (rd_ch(r, '(')) {
        char *a[4] = {NULL, NULL, NULL, NULL};
        for (int k = 0; k < 4; k++)
            if (!rd_nstring(r, skip ? NULL : &a[k])) {
                free4(a);
                return false;
            }
        if (!rd_ch(r, ')')) {
            free4(a);
            return r->bad = true, false;
        }
        if (!first[2] && a[3] && a[2])
            memcpy(first, a, sizeof a);
        else
            free4(a);
    }
    if (!rd_ch(r, ')'))
        return r->bad = true, false;
    return true;
}

static void upcase(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 32);
}

static char *dup_up(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d)
        upcase(d);
    return d;
}

/* RFC 5957: the display name, decoded, when there is one; else the addr-spec. */
static char *display(char *a[4])
{
    pu_buf b = PU_BUF_INIT;
    int rc;
    if (a[0] && a[0][0])
        rc = decode(a[0], &b);
    else if (a[2])
        rc = pu_buf_printf(&b, "%s@%s", a[2], a[3] ? a[3] : "");
    else
        rc = 0;
    char *d = rc < 0 ? NULL : buf_take(&b);
    if (!d) {
        pu_buf_free(&b);
        return NULL;
    }
    upcase(d);
    return d;
}

/* A msg-id's text without "<>", quotes and white space dropped (RFC 5256 asks that
 * <"a"@b> and <a@b> be the same). *end is past the '>'. NULL when there is none. */
static char *next_msgid(const char *s, const char **end)
{
    const char *lt = strchr(s, '<');
    if (!lt)
        return NULL;
    const char *gt = strchr(lt + 1, '>');
    if (!gt)
        return NULL;
    *end = gt + 1;
    char *id = malloc((size_t)(gt - lt));
    if (!id)
        return NULL;
    size_t n = 0;
    for (const char *p = lt + 1; p < gt; p++)
        if (*p != '"' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '\\')
            id[n++] = *p;
    id[n] = '\0';
    return id;
}

/* Every msg-id of s, keeping the last PI_THREAD_MAX_REFS. 0 or -1. */
static int parse_refs(pi_sort_msg *m, const char *s)
{
    const char *end;
    char *id;
    while (s && (id = next_msgid(s, &end)) != NULL) {
        s = end;
        if (!id[0]) {
            free(id);
            continue;
        }
        if (!m->refs) {
            m->refs = calloc(PI_THREAD_MAX_REFS, sizeof *m->refs);
            if (!m->refs) {
                free(id);
                return -1;
            }
        }
        if (m->nrefs == PI_THREAD_MAX_REFS) {
            free(m->refs[0]);
            memmove(m->refs, m->refs + 1, (PI_THREAD_MAX_REFS - 1) * sizeof *m->refs);
            m->nrefs--;
        }
        m->refs[m->nrefs++] = id;
    }
    return 0;
}

void pi_sort_msg_clear(pi_sort_msg *m)
{
    free(m->subject);
    free(m->from);
    free(m->to);
    free(m->cc);
    free(m->dfrom);
    free(m->dto);
    free(m->msgid);
    for (size_t i = 0; i < m->nrefs; i++)
        free(m->refs[i]);
    free(m->refs);
    m->subject = m->from = m->to = m->cc = m->dfrom = m->dto = m->msgid = NULL;
    m->refs = NULL;
    m->nrefs = 0;
}

unsigned pi_sort_needs(const pi_sort_crit *crit)
{
    unsigned need = 0;
    for (size_t i = 0; i < crit->n; i++)
        switch (crit->keys[i]) {
        case PI_SORT_DATE:
            need |= PI_NEED_DATE;
            break;
        case PI_SORT_SUBJECT:
            need |= PI_NEED_SUBJECT;
            break;
        case PI_SORT_CC:
        case PI_SORT_FROM:
        case PI_SORT_TO:
        case PI_SORT_DISPLAYFROM:
        case PI_SORT_DISPLAYTO:
            need |= PI_NEED_ADDRESSES;
            break;
        case PI_SORT_ARRIVAL:
        case PI_SORT_SIZE:
            break;
        }
    return need;
}

int pi_sort_msg_fill(pi_sort_msg *m, const char *env, size_t env_len, const char *refs)
{
    return pi_sort_msg_fill_needed(m, env, env_len, refs, PI_NEED_ALL);
}

int pi_sort_msg_fill_needed(pi_sort_msg *m, const char *env, size_t env_len, const char *refs, unsigned need)
{
    env_rd r = {env ? env : "", env ? env_len : 0, 0, false};
    char *date = NULL, *subject = NULL, *irt = NULL, *mid = NULL;
    char *addr[6][4];
    memset(addr, 0, sizeof addr);
    int rc = -1;
    m->date = m->arrival;
    /* what the keys do not need is passed over, not copied (a SORT by DATE reads one field) */
    bool ids = need & PI_NEED_IDS;
    if (env_len && rd_ch(&r, '(') && rd_nstring(&r, need & PI_NEED_DATE ? &date : NULL) &&
        rd_nstring(&r, need & PI_NEED_SUBJECT ? &subject : NULL)) {
        for (int f = 0; f < 6 && !r.bad; f++) /* from sender reply-to to cc bcc */
            rd_addresses(&r, addr[f], !(need & PI_NEED_ADDRESSES));
        if (!r.bad && rd_nstring(&r, ids ? &irt : NULL))
            rd_nstring(&r, ids ? &mid : NULL);
    }
    /* A malformed blob still gives what was read before the fault. */
    int64_t t;
    int tz;
    if (date && mime_date_parse(date, strlen(date), &t, &tz) == 1)
        m->date = t;
    pu_buf b = PU_BUF_INIT;
    if (pi_base_subject(subject ? subject : "", &b, &m->refwd) < 0 || !(m->subject = buf_take(&b))) {
        pu_buf_free(&b);
        goto out;
    }
    m->from = dup_up(addr[0][2]);
    m->to = dup_up(addr[3][2]);
    m->cc = dup_up(addr[4][2]);
    m->dfrom = display(addr[0]);
    m->dto = display(addr[3]);
    if (!m->from || !m->to || !m->cc || !m->dfrom || !m->dto)
        goto out;
    const char *end;
    if (mid && (m->msgid = next_msgid(mid, &end)) != NULL && !m->msgid[0]) {
        free(m->msgid);
        m->msgid = NULL;
    }
    /* RFC 5256 REFERENCES: the References field, or else the first msg-id of In-Reply-To. */
    if (ids && parse_refs(m, refs) < 0)
        goto out;
    if (!m->nrefs && irt) {
        char *one = next_msgid(irt, &end);
        if (one && one[0]) {
            m->refs = calloc(PI_THREAD_MAX_REFS, sizeof *m->refs);
            if (!m->refs) {
                free(one);
                goto out;
            }
            m->refs[m->nrefs++] = one;
        } else {
            free(one);
        }
    }
    rc = 0;
out:
    if (rc < 0)
        pi_sort_msg_clear(m);
    free(date);
    free(subject);
    free(irt);
    free(mid);
    for (int f = 0; f < 6; f++)
        free4(addr[f]);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Base subject (RFC 5256 section 2.1) */

static bool ci_prefix(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && strncasecmp(s, p, n) == 0;
}

/* Length of a subj-blob at s ("[" *BLOBCHAR "]" *WSP), 0 if none. */
static size_t blob_len(const char *s, size_t len)
{
    if (!len || s[0] != '[')
        return 0;
    size_t i = 1;
    while (i < len && s[i] != '[' && s[i] != ']')
        i++;
    if (i == len || s[i] != ']')
        return 0;
    i++;
    while (i < len && s[i] == ' ')
        i++;
    return i;
}

/* Length of *subj-blob subj-refwd at s, 0 if none. */
static size_t leader_len(const char *s, size_t len)
{
    size_t i = 0, b;
    while ((b = blob_len(s + i, len - i)) > 0)
        i += b;
    if (ci_prefix(s + i, len - i, "fwd"))
        i += 3;
    else if (ci_prefix(s + i, len - i, "fw") || ci_prefix(s + i, len - i, "re"))
        i += 2;
    else
        return 0;
    while (i < len && s[i] == ' ')
        i++;
    i += blob_len(s + i, len - i);
    return i < len && s[i] == ':' ? i + 1 : 0;
}

int pi_base_subject(const char *subject, pu_buf *out, bool *refwd)
{
    pu_buf d = PU_BUF_INIT;
    *refwd = false;
    if (decode(subject, &d) < 0) {
        pu_buf_free(&d);
        return -1;
    }
    /* (1) white space of any kind, in runs, becomes one space */
    size_t len = 0;
    for (size_t i = 0; i < d.len; i++) {
        char c = d.data[i];
        if (c == '\t' || c == '\r' || c == '\n')
            c = ' ';
        if (c == ' ' && len && d.data[len - 1] == ' ')
            continue;
        d.data[len++] = c;
    }
    const char *s = d.data ? d.data : "";
    size_t start = 0;
    for (;;) {
        /* (2) trailing white space and "(fwd)" */
        for (;;) {
            if (len > start && s[len - 1] == ' ')
                len--;
            else if (len - start >= 5 && strncasecmp(s + len - 5, "(fwd)", 5) == 0) {
                len -= 5;
                *refwd = true;
            } else
                break;
        }
        /* (3)-(5) leaders and leading blobs, until neither is left */
        for (bool changed = true; changed;) {
            changed = false;
            size_t n;
            while (start < len) {
                if (s[start] == ' ')
                    n = 1;
                else if ((n = leader_len(s + start, len - start)) > 0)
                    *refwd = true;
                else
                    break;
                start += n;
                changed = true;
            }
            n = blob_len(s + start, len - start);
            if (n > 0 && start + n < len) {
                start += n;
                changed = true;
            }
        }
        /* (6) "[fwd: ...]" */
        if (len - start >= 6 && ci_prefix(s + start, len - start, "[fwd:") && s[len - 1] == ']') {
            start += 5;
            len--;
            *refwd = true;
            continue;
        }
        break;
    }
    size_t at = out->len;
    int rc = pu_buf_add(out, s + start, len - start);
    if (rc == 0 && out->data)
        upcase(out->data + at);
    pu_buf_free(&d);
    return rc < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Ordering: a merge sort (stable, no global comparator context, n log n). */

static int cmp_num(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_msgs(const pi_sort_crit *c, const pi_sort_msg *a, const pi_sort_msg *b)
{
    for (size_t k = 0; k < c->n; k++) {
        int r = 0;
        switch (c->keys[k]) {
        case PI_SORT_ARRIVAL: r = cmp_num(a->arrival, b->arrival); break;
        case PI_SORT_DATE: r = cmp_num(a->date, b->date); break;
        case PI_SORT_SIZE: r = a->size < b->size ? -1 : a->size > b->size; break;
        case PI_SORT_CC: r = strcmp(a->cc, b->cc); break;
        case PI_SORT_FROM: r = strcmp(a->from, b->from); break;
        case PI_SORT_TO: r = strcmp(a->to, b->to); break;
        case PI_SORT_SUBJECT: r = strcmp(a->subject, b->subject); break;
        case PI_SORT_DISPLAYFROM: r = strcmp(a->dfrom, b->dfrom); break;
        case PI_SORT_DISPLAYTO: r = strcmp(a->dto, b->dto); break;
        }
        if (r)
            return c->reverse[k] ? -r : r;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int pi_sort_order(const pi_sort_crit *crit, pi_sort_msg **msgs, size_t n)
{
    if (n < 2)
        return 0;
    pi_sort_msg **tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return -1;
    pi_sort_msg **src = msgs, **dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = cmp_msgs(crit, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        pi_sort_msg **t = src;
        src = dst;
        dst = t;
    }
    if (src != msgs)
        memcpy(msgs, src, n * sizeof *msgs);
    free(tmp);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* ESEARCH (RFC 4731) */

int pi_esearch_parse(const pi_arg *args, size_t nargs, unsigned *opts, size_t *skip, const char **err)
{
    *opts = 0;
    *skip = 0;
    if (nargs == 0 || !pi_arg_atom_is(&args[0], "RETURN"))
        return 0;
    if (nargs < 2 || args[1].type != PI_LIST) {
        *err = "RETURN needs a parenthesised list of options";
        return -1;
    }
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"MIN", PI_ESEARCH_MIN}, {"MAX", PI_ESEARCH_MAX}, {"COUNT", PI_ESEARCH_COUNT}, {"ALL", PI_ESEARCH_ALL}};
    for (size_t i = 0; i < args[1].count; i++) {
        size_t k = 0;
        while (k < 4 && !pi_arg_atom_is(&args[1].list[i], names[k].name))
            k++;
        if (k == 4) {
            *err = "Unknown RETURN option";
            return -1;
        }
        *opts |= names[k].bit;
    }
    if (!*opts)
        *opts = PI_ESEARCH_ALL; /* RFC 4731 3.1: RETURN () means ALL */
    *skip = 2;
    return 0;
}

int pi_esearch_write(pu_buf *out, const char *tag, bool uid, unsigned opts, const uint32_t *ids, size_t n)
{
    int rc = pu_buf_addstr(out, "(TAG ");
    rc |= pi_write_string(out, tag, strlen(tag), 0);
    rc |= pu_buf_addstr(out, ")");
    if (uid)
        rc |= pu_buf_addstr(out, " UID");
    if (n && (opts & PI_ESEARCH_MIN))
        rc |= pu_buf_printf(out, " MIN %u", ids[0]);
    if (n && (opts & PI_ESEARCH_MAX))
        rc |= pu_buf_printf(out, " MAX %u", ids[n - 1]);
    if (opts & PI_ESEARCH_COUNT)
        rc |= pu_buf_printf(out, " COUNT %zu", n);
    if (n && (opts & PI_ESEARCH_ALL)) {
        rc |= pu_buf_addstr(out, " ALL ");
        rc |= pi_seqset_write(out, ids, n);
    }
    return rc ? -1 : 0;
}
