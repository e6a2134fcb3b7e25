/* SEARCH programs (RFC 3501 6.4.4). A program is a flat array of nodes in prefix order:
 * each node records the size of its subtree, so a sibling is found without walking, and
 * evaluation recurses only as deep as the nesting, which parsing bounds. Search strings are
 * case-folded once when parsed; message text is folded in place when fetched (the folding
 * never makes UTF-8 longer) and searched with memmem, which is linear in glibc, so a big
 * body costs one pass per key whatever the needle. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap.h"

enum kind {
    K_ALL,     /* matches every message */
    K_NONE,    /* matches none (a header field name no field can have, an empty keyword) */
    K_STATE,   /* system flags and \Recent: u.st */
    K_KEYWORD, /* str, want */
    K_SEQ,     /* u.set against the sequence number */
    K_UID,     /* u.set against the UID */
    K_LARGER,  /* u.num */
    K_SMALLER, /* u.num */
    K_MODSEQ,  /* u.num: the message's MODSEQ is at least this (RFC 7162 3.1.5) */
    K_DATE,    /* internal date; op, u.days */
    K_SENT,    /* Date: field; op, u.days */
    K_HEADER,  /* field aux, folded needle str */
    K_BODY,    /* folded needle str */
    K_TEXT,    /* folded needle str */
    K_NOT,     /* one child */
    K_OR,      /* two children */
    K_AND      /* aux children */
};

enum { D_BEFORE, D_ON, D_SINCE };

/* K_STATE's recent: */
enum { R_ANY, R_YES, R_NO };

typedef struct node {
    uint8_t kind, op;
    uint8_t needs; /* PI_SEARCH_NEEDS_* of the whole subtree */
    bool want;     /* K_KEYWORD: KEYWORD (true) or UNKEYWORD */
    uint32_t size; /* nodes in this subtree, itself included: the next sibling is at +size */
    uint32_t aux;  /* K_AND: children; K_HEADER: index into pi_search.fields */
    char *str;     /* K_KEYWORD: the keyword; K_HEADER, K_BODY, K_TEXT: the folded needle */
    size_t len;    /* bytes in str */
    union {
        struct {
            unsigned set, clear; /* flags that must be set, must be clear */
            int recent;
        } st;
        uint64_t num;
        int64_t days;
        pi_seqset set;
    } u;
} node;

struct pi_search {
    node *n;
    size_t nn, cap;
    char **fields; /* distinct header field names (case-insensitively), as first spelled */
    size_t nfields;
};

/* ---- case folding ---- */

/* Unicode simple case folding (CaseFolding.txt, C and S) of the blocks named in imap.h;
 * anything else maps to itself. Every result below U+0800 is a two-byte character, except
 * U+017F LATIN SMALL LETTER LONG S, which folds to ASCII 's'. */
static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c < 0x100) {
        if (c == 0xB5)
            return 0x3BC; /* MICRO SIGN -> mu */
        return c >= 0xC0 && c <= 0xDE && c != 0xD7 ? c + 32 : c;
    }
    if (c < 0x180) { /* Latin Extended-A: pairs, upper case first, with a few exceptions */
        if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149)
            return c; /* dotted I and dotless i fold only in Turkic or full folding */
        if (c == 0x178)
            return 0xFF;
        if (c == 0x17F)
            return 's';
        if (c < 0x138 || (c >= 0x14A && c < 0x178))
            return c | 1;
        return c & 1 ? c + 1 : c; /* 0139..0148 and 0179..017E start odd */
    }
    if (c == 0x345)
        return 0x3B9; /* COMBINING GREEK YPOGEGRAMMENI -> iota */
    if (c >= 0x370 && c < 0x400) {
        switch (c) {
        case 0x370:
        case 0x372:
        case 0x376:
        case 0x3F7:
        case 0x3FA:
            return c + 1;
        case 0x37F:
            return 0x3F3;
        case 0x386:
            return 0x3AC;
        case 0x388:
        case 0x389:
        case 0x38A:
            return c + 0x25;
        case 0x38C:
            return 0x3CC;
        case 0x38E:
        case 0x38F:
            return c + 0x3F;
        case 0x3C2:
            return 0x3C3; /* final sigma */
        case 0x3CF:
            return 0x3D7;
        case 0x3D0:
            return 0x3B2;
        case 0x3D1:
        case 0x3F4:
            return 0x3B8;
        case 0x3D5:
            return 0x3C6;
        case 0x3D6:
            return 0x3C0;
        case 0x3F0:
            return 0x3BA;
        case 0x3F1:
            return 0x3C1;
        case 0x3F5:
            return 0x3B5;
        case 0x3F9:
            return 0x3F2;
        case 0x3FD:
        case 0x3FE:
        case 0x3FF:
            return c - 0x82;
        default:
            break;
        }
        if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB))
            return c + 32;
        if (c >= 0x3D8 && c <= 0x3EF)
            return c | 1;
        return c;
    }
    if (c >= 0x400 && c < 0x530) { /* Cyrillic and Cyrillic Supplement */
        if (c < 0x410)
            return c + 0x50;
        if (c < 0x430)
            return c + 32;
        if (c < 0x460)
            return c;
        if (c < 0x482 || (c >= 0x48A && c < 0x4C0) || c >= 0x4D0)
            return c | 1;
        if (c == 0x4C0)
            return 0x4CF;
        if (c >= 0x4C1 && c <= 0x4CE)
            return c & 1 ? c + 1 : c;
        return c;
    }
    if (c >= 0x531 && c <= 0x556) /* Armenian */
        return c + 0x30;
    return c;
}

/* Folds s in place; returns the new length (never more than len). Bytes that do not form a
 * valid two-byte UTF-8 sequence, other than ASCII, are kept as they are. */
static size_t fold_utf8(char *s, size_t len)
{
    unsigned char *b = (unsigned char *)s;
    size_t r = 0, w = 0;
    while (r < len) {
        unsigned c = b[r];
        if (c < 0x80) {
            b[w++] = (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            r++;
        } else if (c >= 0xC2 && c <= 0xDF && r + 1 < len && (b[r + 1] & 0xC0) == 0x80) {
            uint32_t f = fold_cp((c & 0x1Fu) << 6 | (b[r + 1] & 0x3Fu));
            if (f < 0x80) {
                b[w++] = (unsigned char)f;
            } else {
                b[w++] = (unsigned char)(0xC0 | f >> 6);
                b[w++] = (unsigned char)(0x80 | (f & 0x3F));
            }
            r += 2;
        } else {
            b[w++] = b[r++];
        }
    }
    return w;
}

static void fold_buf(pu_buf *b)
{
    if (b->len) {
        b->len = fold_utf8(b->data, b->len);
        b->data[b->len] = '\0';
    }
}

static bool contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0)
        return true;
    if (hlen < nlen)
        return false;
    return memmem(hay, hlen, needle, nlen) != NULL;
}

/* ---- parsing ---- */

enum { A_NONE, A_STRING, A_HEADER, A_DATE, A_NUMBER, A_KEYWORD, A_KEY, A_KEY2, A_MODSEQ };

static const struct key {
    const char *name;
    uint8_t kind, arg, op;
    bool want;
    unsigned set, clear;
    int recent;
    const char *field; /* the header field of BCC, CC, FROM, SUBJECT, TO */
} keys[] = {
    {.name = "ALL", .kind = K_ALL},
    {.name = "ANSWERED", .kind = K_STATE, .set = PI_FLAG_ANSWERED},
    {.name = "BCC", .kind = K_HEADER, .arg = A_STRING, .field = "Bcc"},
    {.name = "BEFORE", .kind = K_DATE, .arg = A_DATE, .op = D_BEFORE},
    {.name = "BODY", .kind = K_BODY, .arg = A_STRING},
    {.name = "CC", .kind = K_HEADER, .arg = A_STRING, .field = "Cc"},
    {.name = "DELETED", .kind = K_STATE, .set = PI_FLAG_DELETED},
    {.name = "DRAFT", .kind = K_STATE, .set = PI_FLAG_DRAFT},
    {.name = "FLAGGED", .kind = K_STATE, .set = PI_FLAG_FLAGGED},
    {.name = "FROM", .kind = K_HEADER, .arg = A_STRING, .field = "From"},
    {.name = "HEADER", .kind = K_HEADER, .arg = A_HEADER},
    {.name = "KEYWORD", .kind = K_KEYWORD, .arg = A_KEYWORD, .want = true},
    {.name = "LARGER", .kind = K_LARGER, .arg = A_NUMBER},
    {.name = "MODSEQ", .kind = K_MODSEQ, .arg = A_MODSEQ},
    {.name = "NEW", .kind = K_STATE, .clear = PI_FLAG_SEEN, .recent = R_YES},
    {.name = "NOT", .kind = K_NOT, .arg = A_KEY},
    {.name = "OLD", .kind = K_STATE, .recent = R_NO},
    {.name = "ON", .kind = K_DATE, .arg = A_DATE, .op = D_ON},
    {.name = "OR", .kind = K_OR, .arg = A_KEY2},
    {.name = "RECENT", .kind = K_STATE, .recent = R_YES},
    {.name = "SEEN", .kind = K_STATE, .set = PI_FLAG_SEEN},
    {.name = "SENTBEFORE", .kind = K_SENT, .arg = A_DATE, .op = D_BEFORE},
    {.name = "SENTON", .kind = K_SENT, .arg = A_DATE, .op = D_ON},
    {.name = "SENTSINCE", .kind = K_SENT, .arg = A_DATE, .op = D_SINCE},
    {.name = "SINCE", .kind = K_DATE, .arg = A_DATE, .op = D_SINCE},
    {.name = "SMALLER", .kind = K_SMALLER, .arg = A_NUMBER},
    {.name = "SUBJECT", .kind = K_HEADER, .arg = A_STRING, .field = "Subject"},
    {.name = "TEXT", .kind = K_TEXT, .arg = A_STRING},
    {.name = "TO", .kind = K_HEADER, .arg = A_STRING, .field = "To"},
    {.name = "UID", .kind = K_UID},
    {.name = "UNANSWERED", .kind = K_STATE, .clear = PI_FLAG_ANSWERED},
    {.name = "UNDELETED", .kind = K_STATE, .clear = PI_FLAG_DELETED},
    {.name = "UNDRAFT", .kind = K_STATE, .clear = PI_FLAG_DRAFT},
    {.name = "UNFLAGGED", .kind = K_STATE, .clear = PI_FLAG_FLAGGED},
    {.name = "UNKEYWORD", .kind = K_KEYWORD, .arg = A_KEYWORD, .want = false},
    {.name = "UNSEEN", .kind = K_STATE, .clear = PI_FLAG_SEEN},
};


typedef struct parser {
    pi_search *s;
    uint32_t star_seq, star_uid;
    const char *err;
} parser;

static int syntax(parser *p, const char *msg)
{
    p->err = msg;
    return -1;
}

static int nomem(parser *p)
{
    p->err = "Out of memory";
    return -2;
}

/* Appends a zeroed K_ALL node (it owns nothing, so freeing it is harmless until it is
 * filled in). Returns 0 with *idx, -1 over the node limit, -2 out of memory. */
static int new_node(parser *p, size_t *idx)
{
    pi_search *s = p->s;
    if (s->nn >= PI_SEARCH_MAX_NODES)
        return syntax(p, "Search program too long");
    if (s->nn == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        if (cap > PI_SEARCH_MAX_NODES)
            cap = PI_SEARCH_MAX_NODES;
        node *n = realloc(s->n, cap * sizeof *n);
        if (!n)
            return nomem(p);
        s->n = n;
        s->cap = cap;
    }
    *idx = s->nn++;
    memset(&s->n[*idx], 0, sizeof s->n[*idx]);
    s->n[*idx].kind = K_ALL;
    s->n[*idx].size = 1;
    return 0;
}

/* Closes the subtree that starts at idx: its size, and what it needs. */
static void finish(parser *p, size_t idx)
{
    node *n = p->s->n;
    n[idx].size = (uint32_t)(p->s->nn - idx);
    for (size_t j = idx + 1; j < p->s->nn; j++)
        n[idx].needs |= n[j].needs;
}

static char *copy(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    if (c) {
        if (len)
            memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

/* Whether a header field called name (len bytes) can exist: RFC 5322 ftext. */
static bool field_name_ok(const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 33 || (unsigned char)name[i] > 126 || name[i] == ':')
            return false;
    return true;
}

/* The index of field name in s->fields, added when new. -2 when out of memory. */
static int field_index(parser *p, const char *name, size_t len, uint32_t *idx)
{
    pi_search *s = p->s;
    for (size_t i = 0; i < s->nfields; i++) {
        if (strlen(s->fields[i]) == len && strncasecmp(s->fields[i], name, len) == 0) {
            *idx = (uint32_t)i;
            return 0;
        }
    }
    /* At most one new name per node, so the node limit bounds the table. */
    char **f = realloc(s->fields, (s->nfields + 1) * sizeof *f);
    if (!f)
        return nomem(p);
    s->fields = f;
    if (!(f[s->nfields] = copy(name, len)))
        return nomem(p);
    *idx = (uint32_t)s->nfields++;
    return 0;
}

/* A search string, folded for matching, into node n. */
static int take_string(parser *p, const pi_arg *a, node *n)
{
    const char *str;
    size_t len;
    if (!pi_arg_astring(a, &str, &len))
        return syntax(p, "Search key needs a string");
    char *c = copy(str, len);
    if (!c)
        return nomem(p);
    n->str = c;
    n->len = fold_utf8(c, len);
    c[n->len] = '\0';
    return 0;
}

static int parse_number(const pi_arg *a, uint64_t *v)
{
    if (a->type != PI_ATOM || a->len == 0)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (a->str[i] < '0' || a->str[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(a->str[i] - '0');
        if (n > INT64_MAX)
            return -1;
    }
    *v = n;
    return 0;
}

static int parse_key(parser *p, const pi_arg *a, size_t n, size_t *i, unsigned depth);

static int parse_seqset(parser *p, const pi_arg *a, uint8_t kind, uint32_t star)
{
    size_t idx;
    int r = new_node(p, &idx);
    if (r < 0)
        return r;
    pi_seqset set;
    const char *err = "Invalid sequence set";
    if (pi_seqset_parse(a->str, a->len, star, &set, &err) < 0) {
        if (err && strcmp(err, "Out of memory") == 0)
            return nomem(p);
        return syntax(p, err ? err : "Invalid sequence set");
    }
    if (kind == K_SEQ && (err = pi_seqset_check(&set, star))) {
        pi_seqset_free(&set);
        return syntax(p, err);
    }
    p->s->n[idx].kind = kind;
    p->s->n[idx].u.set = set;
    return 0;
}

/* KEYWORD or UNKEYWORD kw into node idx. */
static int parse_keyword(parser *p, const pi_arg *a, size_t idx, bool want)
{
    const char *kw;
    size_t len;
    node *n = &p->s->n[idx];
    if (!pi_arg_astring(a, &kw, &len))
        return syntax(p, "Search key needs a keyword");
    if (len == 0 || kw[0] == '\\') {
        /* KEYWORD \Seen and friends: the system flags a client may name as keywords */
        int flag = strlen(kw) == len ? pi_system_flag(kw) : -1;
        if (flag < 0) {
            n->kind = want ? K_NONE : K_ALL; /* no such keyword can be set */
            return 0;
        }
        n->kind = K_STATE;
        if (!flag)
            n->u.st.recent = want ? R_YES : R_NO;
        else if (want)
            n->u.st.set = (unsigned)flag;
        else
            n->u.st.clear = (unsigned)flag;
        return 0;
    }
    char *c = copy(kw, len);
    if (!c)
        return nomem(p);
    n->str = c;
    n->len = len;
    n->kind = K_KEYWORD;
    n->want = want;
    return 0;
}

static int parse_key(parser *p, const pi_arg *a, size_t n, size_t *i, unsigned depth)
{
    const pi_arg *k = &a[(*i)++];
    size_t idx;
    int r;
    if (k->type == PI_LIST) {
        if (depth > PI_SEARCH_MAX_DEPTH)
            return syntax(p, "Search program nested too deeply");
        if (k->count == 0)
            return syntax(p, "Empty list in search program");
        if ((r = new_node(p, &idx)) < 0)
            return r;
        p->s->n[idx].kind = K_AND;
        for (size_t j = 0; j < k->count; p->s->n[idx].aux++) /* keys, not arguments */
            if ((r = parse_key(p, k->list, k->count, &j, depth + 1)) < 0)
                return r;
        finish(p, idx);
        return 0;
    }
    if (k->type != PI_ATOM)
        return syntax(p, "Search key expected");
    char c0 = k->str[0];
    if ((c0 >= '0' && c0 <= '9') || c0 == '*' || c0 == '$')
        return parse_seqset(p, k, K_SEQ, p->star_seq);

    const struct key *key = NULL;
    for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
        if (strcasecmp(k->str, keys[j].name) == 0) {
            key = &keys[j];
            break;
        }
    }
    if (!key)
        return syntax(p, "Unknown search key");

    if (key->kind == K_UID) {
        if (*i >= n || a[*i].type != PI_ATOM)
            return syntax(p, "UID needs a sequence set");
        return parse_seqset(p, &a[(*i)++], K_UID, p->star_uid);
    }
    if (key->arg == A_KEY || key->arg == A_KEY2) {
        if (depth > PI_SEARCH_MAX_DEPTH)
            return syntax(p, "Search program nested too deeply");
        if ((r = new_node(p, &idx)) < 0)
            return r;
        p->s->n[idx].kind = key->kind;
        for (int c = 0; c < (key->arg == A_KEY2 ? 2 : 1); c++) {
            if (*i >= n)
                return syntax(p, key->arg == A_KEY2 ? "OR needs two search keys" : "NOT needs a search key");
            if ((r = parse_key(p, a, n, i, depth + 1)) < 0)
                return r;
        }
        finish(p, idx);
        return 0;
    }

    if ((r = new_node(p, &idx)) < 0)
        return r;
    node *x = &p->s->n[idx];
    if (key->arg == A_NONE) {
        x->kind = key->kind;
        x->u.st.set = key->set;
        x->u.st.clear = key->clear;
        x->u.st.recent = key->recent;
        return 0;
    }
    if (*i >= n || (key->arg == A_HEADER && *i + 1 >= n))
        return syntax(p, key->arg == A_DATE       ? "Search key needs a date"
                         : key->arg == A_NUMBER || key->arg == A_MODSEQ ? "Search key needs a number"
                         : key->arg == A_KEYWORD  ? "Search key needs a keyword"
                         : key->arg == A_HEADER   ? "HEADER needs a field name and a string"
                                                  : "Search key needs a string");
    const pi_arg *v = &a[(*i)++];
    switch (key->arg) {
    case A_DATE: {
        const char *s;
        size_t len;
        pi_date d;
        if (!pi_arg_astring(v, &s, &len) || pi_date_parse(s, len, &d) < 0)
            return syntax(p, "Invalid date in search");
        x->kind = key->kind;
        x->op = key->op;
        x->u.days = pi_date_days(&d);
        x->needs = key->kind == K_DATE ? PI_SEARCH_NEEDS_META : PI_SEARCH_NEEDS_HEADERS;
        return 0;
    }
    case A_NUMBER:
        if (parse_number(v, &x->u.num) < 0)
            return syntax(p, "Invalid number in search");
        x->kind = key->kind;
        x->needs = PI_SEARCH_NEEDS_META;
        return 0;
    case A_MODSEQ:
        /* MODSEQ ["/flags/<flag>" priv|shared|all] n: one MODSEQ per message is kept, not one
         * per flag, so the entry only has to be well-formed (RFC 7162 3.1.5 allows this) */
        if (v->type == PI_QUOTED || v->type == PI_LITERAL) {
            if (v->len <= 7 || strncasecmp(v->str, "/flags/", 7) != 0 || *i + 1 >= n ||
                !(pi_arg_atom_is(&a[*i], "priv") || pi_arg_atom_is(&a[*i], "shared") ||
                  pi_arg_atom_is(&a[*i], "all")))
                return syntax(p, "Invalid MODSEQ entry");
            v = &a[*i + 1];
            *i += 2;
        }
        if (parse_number(v, &x->u.num) < 0)
            return syntax(p, "Invalid number in search");
        x->kind = K_MODSEQ;
        return 0;
    case A_KEYWORD:
        return parse_keyword(p, v, idx, key->want);
    case A_HEADER:
    case A_STRING: {
        const char *name = key->field;
        size_t nlen = name ? strlen(name) : 0;
        if (key->arg == A_HEADER && !pi_arg_astring(v, &name, &nlen))
            return syntax(p, "HEADER needs a field name");
        if (key->arg == A_HEADER)
            v = &a[(*i)++];
        if ((r = take_string(p, v, x)) < 0)
            return r;
        if (key->kind == K_HEADER) {
            if (!field_name_ok(name, nlen)) {
                x->kind = K_NONE;
                return 0;
            }
            uint32_t f;
            if ((r = field_index(p, name, nlen, &f)) < 0)
                return r;
            x = &p->s->n[idx];
            x->aux = f;
            x->kind = K_HEADER;
            x->needs = PI_SEARCH_NEEDS_HEADERS;
        } else if (x->len == 0) {
            x->kind = K_ALL; /* BODY "" and TEXT "": every message; nothing to load */
        } else {
            x->kind = key->kind;
            x->needs = key->kind == K_BODY ? PI_SEARCH_NEEDS_BODY : PI_SEARCH_NEEDS_HEADERS | PI_SEARCH_NEEDS_BODY;
        }
        return 0;
    }
    default:
        return syntax(p, "Unknown search key");
    }
}

void pi_search_free(pi_search *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nn; i++) {
        node *n = &s->n[i];
        if (n->kind == K_SEQ || n->kind == K_UID)
            pi_seqset_free(&n->u.set);
        free(n->str);
    }
    for (size_t i = 0; i < s->nfields; i++)
        free(s->fields[i]);
    free(s->fields);
    free(s->n);
    free(s);
}

int pi_search_parse(const pi_arg *args, size_t nargs, uint32_t star_seq, uint32_t star_uid, pi_search **out,
                    const char **err)
{
    *out = NULL;
    const char *dummy;
    if (!err)
        err = &dummy;
    size_t i = 0;
    if (nargs && pi_arg_atom_is(&args[0], "CHARSET")) {
        const char *cs;
        size_t len;
        if (nargs < 2 || !pi_arg_astring(&args[1], &cs, &len)) {
            *err = "CHARSET needs a charset name";
            return -1;
        }
        if (!((len == 5 && strncasecmp(cs, "UTF-8", 5) == 0) || (len == 8 && strncasecmp(cs, "US-ASCII", 8) == 0))) {
            *err = "Unsupported charset";
            return PI_SEARCH_BADCHARSET;
        }
        i = 2;
    }
    if (i >= nargs) {
        *err = "Search program is empty";
        return -1;
    }
    parser p = {.star_seq = star_seq, .star_uid = star_uid};
    if (!(p.s = calloc(1, sizeof *p.s))) {
        *err = "Out of memory";
        return -2;
    }
    size_t root;
    int r = new_node(&p, &root);
    if (r == 0) {
        p.s->n[root].kind = K_AND; /* the top-level keys: all must match */
        while (i < nargs && r == 0) {
            r = parse_key(&p, args, nargs, &i, 1);
            p.s->n[root].aux++;
        }
    }
    if (r < 0) {
        *err = p.err;
        pi_search_free(p.s);
        return r;
    }
    finish(&p, root);
    *out = p.s;
    return 0;
}

unsigned pi_search_needs(const pi_search *s)
{
    return s->n[0].needs;
}

size_t pi_search_fields(const pi_search *s, const char *const **names, bool *all, bool *date)
{
    *all = *date = false;
    for (size_t i = 0; i < s->nn; i++) {
        *all |= s->n[i].kind == K_TEXT;
        *date |= s->n[i].kind == K_SENT;
    }
    *names = (const char *const *)s->fields;
    return s->nfields;
}

/* ---- evaluation ---- */

enum { T_UNKNOWN, T_PRESENT, T_ABSENT };

typedef struct text {
    int state;
    pu_buf b; /* folded */
} text;

typedef struct eval_ctx {
    const pi_search *s;
    const pi_search_msg *m;
    text *field; /* per s->fields entry */
    text all, body;
    int sent;    /* T_* */
    int64_t sent_days;
} eval_ctx;

/* Days since 1970-01-01 of t seen in the zone tz minutes east of UTC; no overflow for any
 * int64_t and int. */
static int64_t local_days(int64_t t, int tz)
{
    int64_t d = t / 86400, rem = t % 86400;
    if (rem < 0) {
        d--;
        rem += 86400;
    }
    rem += (int64_t)tz * 60;
    int64_t e = rem / 86400;
    if (rem % 86400 < 0)
        e--;
    return d + e;
}

static bool date_cmp(int op, int64_t days, int64_t want)
{
    return op == D_BEFORE ? days < want : op == D_ON ? days == want : days >= want;
}

static int get_field(eval_ctx *e, uint32_t f, const text **out)
{
    text *t = &e->field[f];
    if (t->state == T_UNKNOWN) {
        int r = e->m->header ? e->m->header(e->m->arg, e->s->fields[f], &t->b) : 0;
        if (r < 0)
            return -1;
        t->state = r > 0 ? T_PRESENT : T_ABSENT;
        fold_buf(&t->b);
    }
    *out = t;
    return 0;
}

/* headers() or body_text() into t, once. */
static int get_text(eval_ctx *e, text *t, int (*cb)(void *, pu_buf *))
{
    if (t->state == T_UNKNOWN) {
        if (cb && cb(e->m->arg, &t->b) < 0)
            return -1;
        t->state = T_PRESENT;
        fold_buf(&t->b);
    }
    return 0;
}

/* 0 no cost, 1 metadata, 2 headers, 3 body. */
static int cost(const node *n)
{
    return n->needs & PI_SEARCH_NEEDS_BODY      ? 3
           : n->needs & PI_SEARCH_NEEDS_HEADERS ? 2
           : n->needs & PI_SEARCH_NEEDS_META    ? 1
                                                : 0;
}

static int eval(eval_ctx *e, size_t i)
{
    const node *n = e->s->n;
    const node *x = &n[i];
    const pi_search_msg *m = e->m;
    switch (x->kind) {
    case K_ALL:
        return 1;
    case K_NONE:
        return 0;
    case K_STATE:
        return (m->flags & x->u.st.set) == x->u.st.set && (m->flags & x->u.st.clear) == 0 &&
               (x->u.st.recent == R_ANY || (x->u.st.recent == R_YES) == m->recent);
    case K_KEYWORD: {
        bool has = m->has_keyword && m->has_keyword(m->arg, x->str, x->len);
        return has == x->want;
    }
    case K_SEQ:
        return pi_seqset_contains(&x->u.set, m->seq);
    case K_UID:
        return pi_seqset_contains(&x->u.set, m->uid);
    case K_LARGER:
        return m->size > x->u.num;
    case K_SMALLER:
        return m->size < x->u.num;
    case K_MODSEQ:
        return m->modseq >= x->u.num;
    case K_DATE:
        return date_cmp(x->op, local_days(m->internaldate, m->tz_minutes), x->u.days);
    case K_SENT:
        if (e->sent == T_UNKNOWN) {
            int64_t t;
            int tz;
            e->sent = T_ABSENT;
            if (m->sent_date && m->sent_date(m->arg, &t, &tz) > 0) {
                e->sent = T_PRESENT;
                e->sent_days = local_days(t, tz);
            }
        }
        return e->sent == T_PRESENT && date_cmp(x->op, e->sent_days, x->u.days);
    case K_HEADER: {
        const text *t;
        if (get_field(e, x->aux, &t) < 0)
            return -1;
        return t->state == T_PRESENT && contains(t->b.data, t->b.len, x->str, x->len);
    }
    case K_TEXT:
        if (get_text(e, &e->all, m->headers) < 0)
            return -1;
        if (contains(e->all.b.data, e->all.b.len, x->str, x->len))
            return 1;
        if (get_text(e, &e->body, m->body_text) < 0)
            return -1;
        return contains(e->body.b.data, e->body.b.len, x->str, x->len);
    case K_BODY:
        if (get_text(e, &e->body, m->body_text) < 0)
            return -1;
        return contains(e->body.b.data, e->body.b.len, x->str, x->len);
    case K_NOT: {
        int r = eval(e, i + 1);
        return r < 0 ? r : !r;
    }
    case K_OR: {
        size_t a = i + 1, b = a + n[a].size;
        if (cost(&n[b]) < cost(&n[a])) {
            size_t t = a;
            a = b;
            b = t;
        }
        int r = eval(e, a);
        return r != 0 ? r : eval(e, b);
    }
    case K_AND:
        /* The order does not change the answer, so cheap children go first: a message that
         * fails on its flags is never opened for its body. */
        for (int level = 0; level <= 3; level++) {
            size_t c = i + 1;
            for (uint32_t k = 0; k < x->aux; k++, c += n[c].size) {
                if (cost(&n[c]) != level)
                    continue;
                int r = eval(e, c);
                if (r <= 0)
                    return r;
            }
        }
        return 1;
    default:
        return 0;
    }
}

bool pi_search_has_modseq(const pi_search *s)
{
    for (size_t i = 0; s && i < s->nn; i++)
        if (s->n[i].kind == K_MODSEQ)
            return true;
    return false;
}

void pi_search_modseq_margin(pi_search *s, uint64_t margin)
{
    for (size_t i = 0; s && i < s->nn; i++)
        if (s->n[i].kind == K_MODSEQ)
            s->n[i].u.num = s->n[i].u.num > margin ? s->n[i].u.num - margin : 0;
}

int pi_search_eval(const pi_search *s, const pi_search_msg *m)
{
    eval_ctx e = {.s = s, .m = m, .all = {T_UNKNOWN, PU_BUF_INIT}, .body = {T_UNKNOWN, PU_BUF_INIT}};
    if (s->nfields && !(e.field = calloc(s->nfields, sizeof *e.field)))
        return -1;
    int r = eval(&e, 0);
    for (size_t i = 0; i < s->nfields; i++)
        pu_buf_free(&e.field[i].b);
    free(e.field);
    pu_buf_free(&e.all.b);
    pu_buf_free(&e.body.b);
    return r;
}
