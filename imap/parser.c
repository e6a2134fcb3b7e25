/* Incremental IMAP command parser: a byte-at-a-time state machine (literal data is copied
 * in bulk) that builds a flat node table while input trickles in and lays it out as a tree
 * of arrays once the command is complete. All strings live in one store buffer so a
 * command costs a bounded amount of memory: max_line + literal cap + a node per argument.
 * The store (and the tail kept to spot literals) holds LOGIN passwords and AUTHENTICATE
 * responses, so their bytes are wiped before the memory is reused, moved or freed (and on
 * request, pi_parser_wipe). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "imap/imap.h"

enum {
    S_TAG_START, S_TAG, S_NAME_START, S_NAME, S_ARGS, S_ATOM, S_QUOTED, S_QUOTED_ESC,
    S_LIT_HDR, S_LIT_CLOSE, S_LIT_CR, S_LIT_LF, S_LIT_DATA, S_CR, S_RAW,
    S_SKIP, S_SKIP_LIT, S_DONE, S_DEAD
};

/* step() results: consumed the byte; consumed it and an event is due; or an error with the
 * byte left unconsumed, so that skip mode sees it (and its LF ends the bad line). */
enum { R_OK, R_EV_CONTINUE, R_EV_COMMAND, R_EV_LINE, R_ERR };

typedef struct node {
    pi_arg_type type;
    bool nonsync;
    size_t off, len;
    int32_t parent, first, last, next;
    uint32_t count, cstart;
} node;

#define TAIL_MAX 24             /* longest "{4294967295+}" fits comfortably */
#define STORE_KEEP (1u << 20)   /* shrink the store back after a command bigger than this */

struct pi_parser {
    pi_limits lim, next_lim;
    int state;
    bool raw;                   /* this line is a raw line (no literal tails when skipping) */

    unsigned char *store;
    size_t slen, scap;
    node *nodes;
    size_t nn, ncap;
    uint32_t *order;
    pi_arg *out;
    size_t ocap;

    int32_t cur_list, cur;      /* innermost open list; argument being built */
    unsigned depth;
    size_t line_bytes;
    size_t tag_len;
    bool have_tag;
    char name[PI_NAME_MAX + 1];
    size_t name_len;
    bool uid, fetch, append, need_sep;
    bool cont;                  /* the last event was PI_CONTINUE */
    int bracket;                /* FETCH atom: 0 outside [..], 1 inside, 2 inside a quote, 3 after \ */

    uint64_t lit_n, lit_total, lit_left;
    unsigned lit_digits;
    bool lit_nonsync;

    unsigned char tail[TAIL_MAX];
    size_t tail_len;
    uint64_t skip_left;

    pi_command cmd;
    pi_error err;
    size_t line_off, line_len;
};

void pi_limits_default(pi_limits *lim)
{
    lim->max_line = 64 * 1024;
    lim->max_literal = 64 * 1024;
    lim->max_append_literal = 64u * 1024 * 1024;
    lim->max_depth = 16;
    lim->max_args = 10000;
    lim->max_tag = 64;
}

/* Bytes that may appear in an atom as the parser reads it: printable ASCII but the ones
 * that start or end other tokens. '%', '*', '\\' and ']' are allowed for LIST patterns,
 * flags and section text, as every server does. */
static bool atom_char(unsigned c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

static bool tag_char(unsigned c)
{
    return atom_char(c) && c != '%' && c != '*' && c != '\\' && c != '+';
}

static void begin(pi_parser *p)
{
    p->lim = p->next_lim;
    pi_parser_wipe(p);
    if (p->scap > STORE_KEEP) {
        free(p->store);
        p->store = NULL;
        p->scap = 0;
    }
    /* Likewise the argument tables after a command with thousands of arguments. A failed
     * shrink just keeps the bigger block. */
    if (p->ncap > 1024) {
        node *n = realloc(p->nodes, 16 * sizeof *n);
        if (n) {
            p->nodes = n;
            p->ncap = 16;
        }
    }
    if (p->ocap > 1024) {
        free(p->out);
        free(p->order);
        p->out = NULL;
        p->order = NULL;
        p->ocap = 0;
    }
    p->slen = 0;
    p->nn = 1;                  /* node 0 is the root list, always allocated */
    memset(&p->nodes[0], 0, sizeof p->nodes[0]);
    p->nodes[0].type = PI_LIST;
    p->nodes[0].parent = p->nodes[0].first = p->nodes[0].last = p->nodes[0].next = -1;
    p->cur_list = 0;
    p->cur = -1;
    p->depth = 0;
    p->line_bytes = 0;
    p->tag_len = 0;
    p->have_tag = false;
    p->name_len = 0;
    p->name[0] = '\0';
    p->uid = p->fetch = p->append = p->need_sep = false;
    p->bracket = 0;
    p->lit_total = 0;
    p->tail_len = 0;
    p->raw = false;
    p->cont = false;
    memset(&p->cmd, 0, sizeof p->cmd);
    memset(&p->err, 0, sizeof p->err);
    p->state = S_TAG_START;
}

pi_parser *pi_parser_new(const pi_limits *lim)
{
    pi_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (lim)
        p->next_lim = *lim;
    else
        pi_limits_default(&p->next_lim);
    p->ncap = 16;
    p->nodes = malloc(p->ncap * sizeof *p->nodes);
    if (!p->nodes) {
        free(p);
        return NULL;
    }
    begin(p);
    return p;
}

void pi_parser_free(pi_parser *p)
{
    if (!p)
        return;
    pi_parser_wipe(p);
    free(p->store);
    free(p->nodes);
    free(p->order);
    free(p->out);
    free(p);
}

void pi_parser_set_limits(pi_parser *p, const pi_limits *lim)
{
    p->next_lim = *lim;
}

const pi_command *pi_parser_command(const pi_parser *p)
{
    return p->state == S_DONE && !p->raw ? &p->cmd : NULL;
}

const pi_error *pi_parser_error(const pi_parser *p)
{
    return p->err.kind ? &p->err : NULL;
}

uint64_t pi_parser_literal_size(const pi_parser *p)
{
    return p->lit_n;
}

const char *pi_parser_tag(const pi_parser *p)
{
    return p->have_tag ? (const char *)p->store : NULL;
}

void pi_parser_wipe(pi_parser *p)
{
    if (p->store)
        sodium_memzero(p->store, p->slen);
    sodium_memzero(p->tail, sizeof p->tail); /* the line's last bytes: a password's end */
}

void pi_parser_reject_literal(pi_parser *p)
{
    if (p->cont)
        begin(p);
}

int pi_parser_read_line(pi_parser *p)
{
    if (p->state == S_DONE || (p->state == S_TAG_START && p->slen == 0)) {
        begin(p);
        p->raw = true;
        p->line_off = p->line_len = 0;
        p->state = S_RAW;
        return 0;
    }
    return -1;
}

const char *pi_parser_line(const pi_parser *p, size_t *len)
{
    if (p->state != S_DONE || !p->raw)
        return NULL;
    if (len)
        *len = p->line_len;
    return (const char *)p->store + p->line_off;
}

/* ---- errors ---- */

static int fail(pi_parser *p, pi_err_kind kind, const char *msg)
{
    p->err.kind = kind;
    p->err.msg = msg;
    p->err.tag = p->have_tag ? (const char *)p->store : NULL;
    p->err.fatal = false;
    p->state = S_SKIP;
    return R_ERR;
}

static int die(pi_parser *p, pi_err_kind kind, const char *msg)
{
    fail(p, kind, msg);
    p->err.fatal = true;
    p->state = S_DEAD;
    return R_ERR;
}

/* ---- storage ---- */

/* Makes room for extra more bytes. For literal data the growth is clamped to what the
 * literal still needs, so a 60 MiB APPEND does not allocate 128 MiB. */
static int reserve(pi_parser *p, size_t extra, size_t clamp)
{
    if (p->scap - p->slen >= extra)
        return 0;
    size_t need = p->slen + extra;
    size_t cap = p->scap ? p->scap * 2 : 256;
    if (clamp && cap > p->slen + clamp)
        cap = p->slen + clamp;
    if (cap < need)
        cap = need;
    /* not realloc: the old block may hold a password, and realloc would free it unwiped */
    unsigned char *s = malloc(cap);
    if (!s)
        return -1;
    if (p->store) {
        memcpy(s, p->store, p->slen);
        sodium_memzero(p->store, p->slen);
        free(p->store);
    }
    p->store = s;
    p->scap = cap;
    return 0;
}

static int put(pi_parser *p, unsigned char c)
{
    if (p->slen == p->scap && reserve(p, 1, 0) < 0)
        return die(p, PI_ERR_NOMEM, "Out of memory");
    p->store[p->slen++] = c;
    return R_OK;
}

/* Adds an argument to the innermost open list. */
static int add_node(pi_parser *p, pi_arg_type type)
{
    if (p->nn - 1 >= p->lim.max_args)
        return fail(p, PI_ERR_TOO_MANY_ARGS, "Too many arguments");
    if (p->nn == p->ncap) {
        size_t cap = p->ncap * 2;
        node *n = realloc(p->nodes, cap * sizeof *n);
        if (!n)
            return die(p, PI_ERR_NOMEM, "Out of memory");
        p->nodes = n;
        p->ncap = cap;
    }
    int32_t i = (int32_t)p->nn++;
    node *n = &p->nodes[i];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->off = p->slen;
    n->parent = p->cur_list;
    n->first = n->last = n->next = -1;
    node *par = &p->nodes[p->cur_list];
    if (par->last >= 0)
        p->nodes[par->last].next = i;
    else
        par->first = i;
    par->last = i;
    par->count++;
    p->cur = i;
    return R_OK;
}

/* Closes the string argument being built: NUL-terminates it in the store. */
static int end_string(pi_parser *p)
{
    node *n = &p->nodes[p->cur];
    n->len = p->slen - n->off;
    if (n->type == PI_ATOM && n->len == 3 && strncasecmp((char *)p->store + n->off, "NIL", 3) == 0)
        n->type = PI_NIL;
    p->cur = -1;
    return put(p, '\0');
}

/* Lays the node table out as arrays: breadth first, so each list's elements are adjacent. */
static int finish_command(pi_parser *p)
{
    size_t nargs = p->nn - 1;
    if (nargs > p->ocap) {
        pi_arg *o = realloc(p->out, nargs * sizeof *o);
        if (!o)
            return die(p, PI_ERR_NOMEM, "Out of memory");
        p->out = o;
        uint32_t *ord = realloc(p->order, (nargs + 1) * sizeof *ord);
        if (!ord)
            return die(p, PI_ERR_NOMEM, "Out of memory");
        p->order = ord;
        p->ocap = nargs;
    }
    if (!p->order) {
        p->order = malloc(sizeof *p->order);
        if (!p->order)
            return die(p, PI_ERR_NOMEM, "Out of memory");
    }
    size_t head = 0, tailn = 1;
    p->order[0] = 0;
    while (head < tailn) {
        node *n = &p->nodes[p->order[head++]];
        n->cstart = (uint32_t)tailn;
        for (int32_t c = n->first; c >= 0; c = p->nodes[c].next)
            p->order[tailn++] = (uint32_t)c;
    }
    for (size_t k = 1; k < tailn; k++) {
        const node *n = &p->nodes[p->order[k]];
        pi_arg *a = &p->out[k - 1];
        memset(a, 0, sizeof *a);
        a->type = n->type;
        a->nonsync = n->nonsync;
        if (n->type == PI_LIST) {
            a->count = n->count;
            a->list = n->count ? &p->out[n->cstart - 1] : NULL;
        } else {
            a->str = (const char *)p->store + n->off;
            a->len = n->len;
        }
    }
    const char *base = (const char *)p->store;
    p->cmd.tag = base;
    p->cmd.name = p->name;
    p->cmd.uid = p->uid;
    p->cmd.verb = p->uid ? p->name + 4 : p->name;
    p->cmd.nargs = p->nodes[0].count;
    p->cmd.args = p->cmd.nargs ? p->out : NULL;
    p->state = S_DONE;
    return R_EV_COMMAND;
}

/* ---- the state machine ---- */

static int end_of_line(pi_parser *p)
{
    if (p->cur_list != 0)
        return fail(p, PI_ERR_SYNTAX, "Unbalanced parentheses: missing ')'");
    return finish_command(p);
}

static int end_name(pi_parser *p)
{
    p->name[p->name_len] = '\0';
    const char *verb = p->uid ? p->name + 4 : p->name;
    p->fetch = strcmp(verb, "FETCH") == 0;
    p->append = strcmp(verb, "APPEND") == 0;
    return R_OK;
}

static int literal_close(pi_parser *p)
{
    if (p->lit_n > UINT32_MAX)
        return p->lit_nonsync ? die(p, PI_ERR_LITERAL_TOO_BIG, "Literal size out of range")
                              : fail(p, PI_ERR_SYNTAX, "Literal size out of range");
    uint64_t cap = p->append ? p->lim.max_append_literal : p->lim.max_literal;
    /* a non-synchronising one is on its way already: the skipping of the failed line reads
     * its bytes (the '}' is read again there) and drops them, and the session goes on
     * (RFC 7888: NO, not BAD and a closed connection) */
    if (p->lit_n > cap || p->lit_total + p->lit_n > cap)
        return fail(p, PI_ERR_LITERAL_TOO_BIG, "Literal too big");
    p->state = S_LIT_CR;
    return R_OK;
}

static int literal_start(pi_parser *p)
{
    int r = add_node(p, PI_LITERAL);
    if (r != R_OK)
        return r;
    p->nodes[p->cur].nonsync = p->lit_nonsync;
    p->lit_total += p->lit_n;
    p->lit_left = p->lit_n;
    p->state = S_LIT_DATA;
    if (p->lit_n == 0) {
        if ((r = end_string(p)) != R_OK)
            return r;
        p->state = S_ARGS;
        p->need_sep = true;
    }
    return p->lit_nonsync ? R_OK : R_EV_CONTINUE;
}

/* Parses "{digits}" or "{digits+}" at the end of the tail of a skipped line. Returns 1 for
 * a non-synchronising literal (size in *n), 0 otherwise. Sizes past 32 bits count as
 * "too big" so the caller gives up on the connection rather than read data as commands. */
static int tail_nonsync(const pi_parser *p, uint64_t *n)
{
    size_t i = p->tail_len;
    if (i < 4 || p->tail[i - 1] != '}' || p->tail[i - 2] != '+')
        return 0;
    i -= 2;
    size_t end = i;
    while (i > 0 && p->tail[i - 1] >= '0' && p->tail[i - 1] <= '9')
        i--;
    if (i == end)
        return 0;
    if (i == 0 && p->tail_len == TAIL_MAX) {
        /* More digits than the tail holds: a size no sane client sends; refuse it. */
        *n = UINT64_MAX;
        return 1;
    }
    if (i == 0 || p->tail[i - 1] != '{')
        return 0;
    uint64_t v = 0;
    for (size_t k = i; k < end; k++) {
        v = v * 10 + (p->tail[k] - '0');
        if (v > UINT32_MAX) {
            v = UINT64_MAX;
            break;
        }
    }
    *n = v;
    return 1;
}

static int dispatch(pi_parser *p, unsigned c);

static int args_byte(pi_parser *p, unsigned c)
{
    int r;
    switch (c) {
    case ' ':
        p->need_sep = false;
        return R_OK;
    case '\r':
        p->state = S_CR;
        return R_OK;
    case '\n':
        return end_of_line(p);
    case ')':
        if (p->cur_list == 0)
            return fail(p, PI_ERR_SYNTAX, "Unexpected ')'");
        p->cur_list = p->nodes[p->cur_list].parent;
        p->depth--;
        p->need_sep = true;
        return R_OK;
    }
    if (p->need_sep)
        return fail(p, PI_ERR_SYNTAX, "Missing space between arguments");
    switch (c) {
    case '(':
        if (p->depth >= p->lim.max_depth)
            return fail(p, PI_ERR_TOO_DEEP, "Lists nested too deeply");
        if ((r = add_node(p, PI_LIST)) != R_OK)
            return r;
        p->cur_list = p->cur;
        p->cur = -1;
        p->depth++;
        return R_OK;
    case '"':
        if ((r = add_node(p, PI_QUOTED)) != R_OK)
            return r;
        p->state = S_QUOTED;
        return R_OK;
    case '{':
        p->lit_n = 0;
        p->lit_digits = 0;
        p->lit_nonsync = false;
        p->state = S_LIT_HDR;
        return R_OK;
    }
    if (c == 0)
        return fail(p, PI_ERR_NUL, "NUL byte in command");
    if (!atom_char(c))
        return fail(p, PI_ERR_SYNTAX, "Invalid character in command");
    if ((r = add_node(p, PI_ATOM)) != R_OK)
        return r;
    p->state = S_ATOM;
    p->bracket = 0;
    return dispatch(p, c);
}

static int atom_byte(pi_parser *p, unsigned c)
{
    int r;
    if (p->bracket) {
        /* Inside a FETCH section: everything up to the closing ']' belongs to the atom. */
        if (c == '\r' || c == '\n')
            return fail(p, PI_ERR_SYNTAX, "Missing ']' in FETCH attribute");
        if (c == 0)
            return fail(p, PI_ERR_NUL, "NUL byte in command");
        if (p->bracket == 3) {
            p->bracket = 2;
        } else if (p->bracket == 2) {
            if (c == '\\')
                p->bracket = 3;
            else if (c == '"')
                p->bracket = 1;
        } else if (c == ']') {
            p->bracket = 0;
        } else if (c == '"') {
            p->bracket = 2;
        } else if (c == '{') {
            return fail(p, PI_ERR_SYNTAX, "Literal inside FETCH section not supported");
        } else if (c != ' ' && (c < 0x20 || c >= 0x7f)) {
            return fail(p, PI_ERR_SYNTAX, "Invalid character in FETCH section");
        }
        return put(p, (unsigned char)c);
    }
    if (atom_char(c)) {
        if (c == '[' && p->fetch)
            p->bracket = 1;
        return put(p, (unsigned char)c);
    }
    if (c == ' ' || c == '\r' || c == '\n' || c == ')') {
        if ((r = end_string(p)) != R_OK)
            return r;
        p->state = S_ARGS;
        p->need_sep = true;
        return dispatch(p, c);
    }
    if (c == 0)
        return fail(p, PI_ERR_NUL, "NUL byte in command");
    if (c == '(' || c == '"' || c == '{')
        return fail(p, PI_ERR_SYNTAX, "Missing space between arguments");
    return fail(p, PI_ERR_SYNTAX, "Invalid character in atom");
}

static int dispatch(pi_parser *p, unsigned c)
{
    int r;
    switch (p->state) {
    case S_TAG_START:
        if (c == '\r' || c == '\n')
            return fail(p, PI_ERR_SYNTAX, "Empty command line");
        if (!tag_char(c))
            return fail(p, PI_ERR_SYNTAX, "Missing or invalid tag");
        p->state = S_TAG;
        __attribute__((fallthrough));
    case S_TAG:
        if (c == ' ' || c == '\r' || c == '\n') {
            if ((r = put(p, '\0')) != R_OK)
                return r;
            p->have_tag = true;
            if (c != ' ')
                return fail(p, PI_ERR_SYNTAX, "Missing command");
            p->state = S_NAME_START;
            return R_OK;
        }
        if (!tag_char(c))
            return fail(p, PI_ERR_SYNTAX, "Invalid character in tag");
        if (p->tag_len >= p->lim.max_tag)
            return fail(p, PI_ERR_TAG_TOO_LONG, "Tag too long");
        p->tag_len++;
        return put(p, (unsigned char)c);
    case S_NAME_START:
        if (c == ' ')
            return R_OK;
        if (c == '\r' || c == '\n')
            return fail(p, PI_ERR_SYNTAX, p->uid ? "Missing command after UID" : "Missing command");
        if (!atom_char(c))
            return fail(p, PI_ERR_SYNTAX, "Invalid command name");
        p->state = S_NAME;
        __attribute__((fallthrough));
    case S_NAME:
        if (atom_char(c)) {
            if (p->name_len >= PI_NAME_MAX)
                return fail(p, PI_ERR_SYNTAX, "Command name too long");
            p->name[p->name_len++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
            return R_OK;
        }
        if (c != ' ' && c != '\r' && c != '\n')
            return fail(p, PI_ERR_SYNTAX, "Invalid character in command name");
        p->name[p->name_len] = '\0';
        if (!p->uid && strcmp(p->name, "UID") == 0) {
            if (c != ' ')
                return fail(p, PI_ERR_SYNTAX, "Missing command after UID");
            p->uid = true;
            p->name[p->name_len++] = ' ';
            p->state = S_NAME_START;
            return R_OK;
        }
        end_name(p);
        p->state = S_ARGS;
        p->need_sep = false;
        return c == ' ' ? R_OK : args_byte(p, c);
    case S_ARGS:
        return args_byte(p, c);
    case S_ATOM:
        return atom_byte(p, c);
    case S_QUOTED:
        if (c == '"') {
            if ((r = end_string(p)) != R_OK)
                return r;
            p->state = S_ARGS;
            p->need_sep = true;
            return R_OK;
        }
        if (c == '\\') {
            p->state = S_QUOTED_ESC;
            return R_OK;
        }
        if (c == '\r' || c == '\n')
            return fail(p, PI_ERR_SYNTAX, "Unterminated quoted string");
        if (c == 0)
            return fail(p, PI_ERR_NUL, "NUL byte in command");
        return put(p, (unsigned char)c);
    case S_QUOTED_ESC:
        if (c != '"' && c != '\\')
            return fail(p, PI_ERR_SYNTAX, "Invalid escape in quoted string");
        p->state = S_QUOTED;
        return put(p, (unsigned char)c);
    case S_LIT_HDR:
        if (c >= '0' && c <= '9') {
            /* Up to 11 digits: enough to see a value is past 32 bits, without overflow. */
            if (p->lit_digits >= 11)
                return fail(p, PI_ERR_SYNTAX, "Literal size out of range");
            p->lit_n = p->lit_n * 10 + (c - '0');
            p->lit_digits++;
            return R_OK;
        }
        if (p->lit_digits == 0)
            return fail(p, PI_ERR_SYNTAX, "Invalid literal syntax");
        if (c == '+') {
            p->lit_nonsync = true;
            p->state = S_LIT_CLOSE;
            return R_OK;
        }
        if (c == '}')
            return literal_close(p);
        return fail(p, PI_ERR_SYNTAX, "Invalid literal syntax");
    case S_LIT_CLOSE:
        if (c != '}')
            return fail(p, PI_ERR_SYNTAX, "Invalid literal syntax");
        return literal_close(p);
    case S_LIT_CR:
        if (c == '\r') {
            p->state = S_LIT_LF;
            return R_OK;
        }
        if (c == '\n')
            return literal_start(p);
        return fail(p, PI_ERR_SYNTAX, "Literal size must end the line");
    case S_LIT_LF:
        if (c != '\n')
            return fail(p, PI_ERR_SYNTAX, "Literal size must end the line");
        return literal_start(p);
    case S_CR:
        if (c != '\n')
            return fail(p, PI_ERR_SYNTAX, "CR not followed by LF");
        return end_of_line(p);
    case S_RAW:
        if (c == '\n') {
            p->line_len = p->slen;
            if (p->line_len && p->store[p->line_len - 1] == '\r')
                p->line_len--;
            if ((r = put(p, '\0')) != R_OK)
                return r;
            p->store[p->line_len] = '\0';
            p->state = S_DONE;
            return R_EV_LINE;
        }
        if (c == 0)
            return fail(p, PI_ERR_NUL, "NUL byte in line");
        return put(p, (unsigned char)c);
    case S_SKIP:
        if (c == '\n') {
            uint64_t n = 0;
            if (!p->raw && tail_nonsync(p, &n)) {
                /* skipping costs no memory: any size that can be counted is read and dropped */
                if (n > UINT32_MAX)
                    return die(p, PI_ERR_LITERAL_TOO_BIG, "Non-synchronizing literal too big");
                p->skip_left = n;
                p->state = n ? S_SKIP_LIT : S_SKIP;
                return R_OK;
            }
            begin(p);
        }
        return R_OK;
    }
    return R_OK; /* S_LIT_DATA, S_SKIP_LIT are handled in bulk; S_DONE, S_DEAD never get here */
}

/* Line length accounting and the bad-line tail; CR and LF are not counted. */
static int step(pi_parser *p, unsigned c)
{
    int st = p->state;
    if (st != S_SKIP && c != '\r' && c != '\n' && ++p->line_bytes > p->lim.max_line)
        return fail(p, PI_ERR_LINE_TOO_LONG, "Command line too long");
    int r = dispatch(p, c);
    if (r == R_ERR)
        return r;
    if (c == '\n') {
        p->tail_len = 0;
    } else if (c != '\r') {
        if (p->tail_len == TAIL_MAX) {
            memmove(p->tail, p->tail + 1, TAIL_MAX - 1);
            p->tail_len--;
        }
        p->tail[p->tail_len++] = (unsigned char)c;
    }
    return r;
}

pi_status pi_parse(pi_parser *p, const void *data, size_t len, size_t *used)
{
    const unsigned char *d = data;
    size_t i = 0;
    if (p->state == S_DEAD) {
        *used = 0;
        return PI_ERROR;
    }
    if (p->state == S_DONE)
        begin(p);
    p->err.kind = 0;
    p->cont = false;
    while (i < len) {
        if (p->state == S_LIT_DATA) {
            size_t k = len - i;
            if (k > p->lit_left)
                k = (size_t)p->lit_left;
            if (reserve(p, k + 1, (size_t)p->lit_left + 1) < 0) {
                die(p, PI_ERR_NOMEM, "Out of memory");
                *used = i;
                return PI_ERROR;
            }
            memcpy(p->store + p->slen, d + i, k);
            p->slen += k;
            p->lit_left -= k;
            i += k;
            if (p->lit_left == 0) {
                if (end_string(p) != R_OK) {
                    *used = i;
                    return PI_ERROR;
                }
                p->state = S_ARGS;
                p->need_sep = true;
            }
            continue;
        }
        if (p->state == S_SKIP_LIT) {
            size_t k = len - i;
            if (k > p->skip_left)
                k = (size_t)p->skip_left;
            p->skip_left -= k;
            i += k;
            if (p->skip_left == 0)
                p->state = S_SKIP;
            continue;
        }
        int r = step(p, d[i]);
        if (r == R_ERR) {
            *used = i;
            return PI_ERROR;
        }
        i++;
        if (r != R_OK) {
            *used = i;
            p->cont = r == R_EV_CONTINUE;
            return r == R_EV_CONTINUE ? PI_CONTINUE : r == R_EV_COMMAND ? PI_COMMAND : PI_LINE;
        }
    }
    *used = i;
    return PI_NEED_MORE;
}

int pi_error_reply(const pi_error *e, pu_buf *out)
{
    const char *tag = e->tag ? e->tag : "*";
    int r;
    if (e->kind == PI_ERR_LITERAL_TOO_BIG)
        r = pu_buf_printf(out, "%s %s [TOOBIG] %s\r\n", tag, e->fatal ? "BAD" : "NO", e->msg);
    else
        r = pu_buf_printf(out, "%s BAD %s\r\n", tag, e->msg);
    if (r == 0 && e->fatal)
        r = pu_buf_printf(out, "* BYE %s\r\n", e->msg);
    return r;
}

/* ---- argument accessors ---- */

bool pi_arg_atom_is(const pi_arg *a, const char *word)
{
    return (a->type == PI_ATOM || a->type == PI_NIL) && strcasecmp(a->str, word) == 0;
}

bool pi_arg_astring(const pi_arg *a, const char **s, size_t *len)
{
    if (a->type == PI_LIST)
        return false;
    *s = a->str;
    if (len)
        *len = a->len;
    return true;
}

bool pi_arg_string(const pi_arg *a, const char **s, size_t *len)
{
    if (a->type != PI_QUOTED && a->type != PI_LITERAL)
        return false;
    *s = a->str;
    if (len)
        *len = a->len;
    return true;
}

bool pi_arg_nstring(const pi_arg *a, const char **s, size_t *len)
{
    if (a->type == PI_NIL) {
        *s = NULL;
        if (len)
            *len = 0;
        return true;
    }
    return pi_arg_string(a, s, len);
}
