/* libFuzzer target for pop3/: the input (after two control bytes) is a client's byte stream,
 * fed to the line reader in slices chosen by the input and compared with feeding it whole;
 * each line goes through the parser (or the SASL PLAIN decoder after "+ ") and drives a
 * session whose maildrop commands are checked against a shadow model. Every reply must be
 * well-formed (one status line ending in CRLF, multi-line replies dot-stuffed and ended by
 * ".\r\n"), RETR must send exactly the octets LIST announced, and the input itself, taken as
 * a message, must convert to the same bytes whole and sliced, with pp_message_size() equal
 * to the converted length and TOP a prefix of RETR. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3.h"

#define NMSG 5

static const char *bodies[NMSG];
static size_t body_len[NMSG];

/* ---- checks on replies ---- */

static void check_status_line(const char *s, size_t n, size_t *line_end)
{
    const char *crlf = memmem(s, n, "\r\n", 2);
    if (!crlf)
        abort();
    size_t len = (size_t)(crlf - s);
    if (!((len >= 3 && memcmp(s, "+OK", 3) == 0 && (len == 3 || s[3] == ' ')) ||
          (len >= 4 && memcmp(s, "-ERR", 4) == 0 && (len == 4 || s[4] == ' ')) || (len == 1 && s[0] == '+')))
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
    *line_end = len + 2;
}

/* A whole multi-line body from s: every LF after CR, every line starting with '.' stuffed,
 * ends with ".\r\n". Returns the unstuffed body's length. */
static size_t check_multiline(const char *s, size_t n, char *unstuffed)
{
    if (n < 3 || memcmp(s + n - 3, ".\r\n", 3) != 0)
        abort();
    if (n > 3 && (s[n - 4] != '\n' || s[n - 5] != '\r'))
        abort();
    size_t k = 0;
    bool bol = true;
    for (size_t i = 0; i < n - 3; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            abort();
        if (bol && s[i] == '.') {
            if (i + 1 >= n - 3 || s[i + 1] != '.')
                abort();
            i++;
        }
        if (unstuffed)
            unstuffed[k] = s[i];
        k++;
        bol = s[i] == '\n';
    }
    return k;
}

static void check_err_text(const char *e)
{
    size_t n = strlen(e), end;
    if (n < 6 || memcmp(e, "-ERR ", 5) != 0)
        abort();
    check_status_line(e, n, &end);
    if (end != n)
        abort();
}

/* ---- the message conversion on arbitrary bytes ---- */

static void check_message(const uint8_t *d, size_t n, unsigned seed)
{
    pu_buf whole = {0}, sliced = {0}, stuffed = {0}, top = {0};
    if (pp_message_crlf(d, n, &whole) < 0)
        abort();
    uint64_t size = pp_message_size(d, n);
    if (size != whole.len)
        abort();
    pp_crlf c;
    pp_crlf_init(&c, 0, 0);
    size_t pos = 0, step = seed % 13 + 1;
    while (pos < n) {
        size_t k = n - pos < step ? n - pos : step;
        if (pp_crlf_add(&c, d + pos, k, &sliced) != 0)
            abort();
        pos += k;
        step = step % 11 + 1;
    }
    if (pp_crlf_end(&c, &sliced) != 0 || c.octets != size || sliced.len != whole.len ||
        (whole.len && memcmp(sliced.data, whole.data, whole.len) != 0))
        abort();
    if (pp_write_message(&stuffed, d, n, -1) < 0)
        abort();
    char *un = malloc(stuffed.len + 1);
    if (!un)
        abort();
    size_t ul = check_multiline(stuffed.data, stuffed.len, un);
    if (ul != whole.len || (ul && memcmp(un, whole.data, ul) != 0))
        abort();
    free(un);
    uint32_t lines = seed % 5;
    if (pp_write_message(&top, d, n, lines) < 0)
        abort();
    check_multiline(top.data, top.len, NULL);
    if (top.len > stuffed.len || memcmp(top.data, stuffed.data, top.len - 3) != 0)
        abort();
    /* Streamed TOP equals one-shot TOP. */
    pu_buf top2 = {0};
    pp_crlf t;
    pp_crlf_init(&t, PP_CRLF_STUFF | PP_CRLF_TOP, lines);
    pos = 0;
    int r = 0;
    while (pos < n && r == 0) {
        size_t k = n - pos < 3 ? n - pos : 3;
        r = pp_crlf_add(&t, d + pos, k, &top2);
        if (r < 0)
            abort();
        pos += k;
    }
    if (pp_crlf_end(&t, &top2) != 0 || top2.len != top.len || memcmp(top2.data, top.data, top.len) != 0)
        abort();
    pu_buf_free(&whole);
    pu_buf_free(&sliced);
    pu_buf_free(&stuffed);
    pu_buf_free(&top);
    pu_buf_free(&top2);
}

/* ---- the reader fed whole and sliced ---- */

typedef struct event {
    pp_read_status st;
    size_t consumed; /* stream offset after the event */
    char text[PP_AUTH_LINE_MAX + 8];
    size_t len;
} event;

/* Runs the reader over the stream, handing each event to fn. AUTH continuation lines are
 * enabled whenever fn returns 1. */
typedef int (*event_fn)(void *arg, const event *ev);

static void run_reader(const uint8_t *d, size_t n, size_t step0, event_fn fn, void *arg)
{
    pp_reader *r = pp_reader_new();
    if (!r)
        abort();
    size_t pos = 0, step = step0;
    static event ev;
    while (pos < n) {
        size_t k = step ? (n - pos < step ? n - pos : step) : n - pos;
        size_t off = 0;
        while (off < k) {
            size_t used = 0;
            pp_read_status st = pp_reader_feed(r, d + pos + off, k - off, &used);
            if (used > k - off || (st == PP_READ_MORE && used != k - off))
                abort();
            off += used;
            if (st == PP_READ_MORE)
                break;
            ev.st = st;
            ev.consumed = pos + off;
            if (st == PP_READ_LINE) {
                size_t ll;
                const char *line = pp_reader_line(r, &ll);
                if (ll >= PP_AUTH_LINE_MAX || memchr(line, '\0', ll) || line[ll] != '\0')
                    abort();
                memcpy(ev.text, line, ll + 1);
                ev.len = ll;
            } else {
                const char *e = pp_reader_error(r);
                check_err_text(e);
                ev.len = strlen(e);
                memcpy(ev.text, e, ev.len + 1);
            }
            if (fn(arg, &ev) == 1 && pp_reader_auth_line(r) != 0)
                abort();
            if (pp_reader_pending(r))
                abort(); /* right after an event nothing is buffered */
        }
        pos += k;
        if (step)
            step = step % 7 + 1;
    }
    pp_reader_free(r);
}

/* ---- the session ---- */

typedef struct session {
    pp_state state;
    pp_offer offer;
    pp_maildrop *md;
    bool deleted[NMSG]; /* DELE'd in this session */
    bool sasl_wait;
    unsigned flags;
    pu_buf out;        /* the current reply */
    pu_buf transcript; /* every reply, to compare a whole-fed run with a sliced one */
    size_t commands;
} session;

static void log_reply(session *s, const char *p, size_t n)
{
    if (s->transcript.len < 1000000 && pu_buf_add(&s->transcript, p, n) < 0)
        abort();
}

static const pp_msg fixed_msgs[NMSG] = {
    {0, "<in@put>", 8, false},
    {0, "b", 1, false},
    {0, "c", 1, false},
    {0, "d-gone", 6, true},
    {0, "e", 1, false},
};

static void login(session *s)
{
    pp_msg msgs[NMSG];
    memcpy(msgs, fixed_msgs, sizeof msgs);
    for (int i = 0; i < NMSG; i++)
        msgs[i].size = pp_message_size(bodies[i], body_len[i]);
    s->md = pp_maildrop_new(msgs, NMSG);
    if (!s->md)
        abort();
    memset(s->deleted, 0, sizeof s->deleted);
    s->state = PP_STATE_TRANSACTION;
}

static void end_session(session *s)
{
    pp_maildrop_free(s->md);
    s->md = NULL;
    s->state = PP_STATE_AUTHORIZATION;
}

static void check_model(session *s)
{
    size_t live = 0;
    uint64_t octets = 0;
    for (int i = 0; i < NMSG; i++) {
        if (!s->deleted[i] && !fixed_msgs[i].deleted) {
            live++;
            octets += pp_message_size(bodies[i], body_len[i]);
        }
    }
    if (pp_maildrop_count(s->md) != live || pp_maildrop_octets(s->md) != octets || pp_maildrop_total(s->md) != NMSG)
        abort();
    uint32_t nums[NMSG];
    size_t nd = pp_maildrop_deleted(s->md, nums, NMSG), k = 0;
    for (int i = 0; i < NMSG; i++)
        if (s->deleted[i] && nums[k++] != (uint32_t)i + 1)
            abort();
    if (nd != k)
        abort();
}

static void maildrop_command(session *s, const pp_command *c)
{
    pu_buf *out = &s->out;
    pu_buf_clear(out);
    int r = pp_md_command(s->md, c, out);
    if (r == PP_PASS)
        abort(); /* only maildrop commands get here */
    size_t end;
    check_status_line(out->data, out->len, &end);
    bool ok = out->data[0] == '+';
    if ((r == PP_ERR) == ok)
        abort();
    uint32_t m = c->msg;
    bool exists = m >= 1 && m <= NMSG && !fixed_msgs[m - 1].deleted && !s->deleted[m - 1];
    bool multi = (c->cmd == PP_CMD_LIST || c->cmd == PP_CMD_UIDL) && c->nargs == 0;
    switch (c->cmd) {
    case PP_CMD_DELE:
        if (ok != exists)
            abort();
        if (ok)
            s->deleted[m - 1] = true;
        break;
    case PP_CMD_RSET:
        memset(s->deleted, 0, sizeof s->deleted);
        break;
    case PP_CMD_RETR:
    case PP_CMD_TOP:
    case PP_CMD_LIST:
    case PP_CMD_UIDL:
        if (!multi && ok != exists)
            abort();
        break;
    default:
        break;
    }
    if (multi) {
        if (!ok)
            abort();
        check_multiline(out->data + end, out->len - end, NULL);
    } else if (r == PP_BODY) {
        /* Stream the body the way the gateway will and compare with what was announced. */
        pp_crlf cv;
        unsigned flags = PP_CRLF_STUFF | (c->cmd == PP_CMD_TOP ? PP_CRLF_TOP : 0);
        pp_crlf_init(&cv, flags, c->lines);
        const char *b = bodies[m - 1];
        size_t bl = body_len[m - 1], pos = 0;
        while (pos < bl) {
            size_t k = bl - pos < 5 ? bl - pos : 5;
            int a = pp_crlf_add(&cv, b + pos, k, out);
            if (a < 0)
                abort();
            if (a == 1)
                break;
            pos += k;
        }
        if (pp_crlf_end(&cv, out) != 0)
            abort();
        check_multiline(out->data + end, out->len - end, NULL);
        if (c->cmd == PP_CMD_RETR) {
            uint64_t size = pp_message_size(b, bl);
            if (cv.octets != size)
                abort();
            pu_buf want = {0};
            pp_write_okf(&want, "%llu octets", (unsigned long long)size);
            if (memcmp(out->data, want.data, want.len) != 0)
                abort();
            pu_buf_free(&want);
        }
    } else if (end != out->len) {
        abort(); /* single-line replies are one line */
    }
    log_reply(s, out->data, out->len);
    check_model(s);
}

static void on_parsed(session *s, pp_command *c)
{
    /* What the table says, independently. */
    bool in_trans = s->state == PP_STATE_TRANSACTION;
    switch (c->cmd) {
    case PP_CMD_STAT:
    case PP_CMD_LIST:
    case PP_CMD_RETR:
    case PP_CMD_DELE:
    case PP_CMD_NOOP:
    case PP_CMD_RSET:
    case PP_CMD_TOP:
    case PP_CMD_UIDL:
        if (!in_trans)
            abort();
        if ((c->cmd == PP_CMD_RETR || c->cmd == PP_CMD_DELE || c->cmd == PP_CMD_TOP) &&
            (c->msg < 1 || c->msg > PP_MSG_MAX))
            abort();
        maildrop_command(s, c);
        break;
    case PP_CMD_USER:
        if (in_trans || !s->offer.user || c->nargs != 1 || c->arg_len[0] != strlen(c->arg[0]))
            abort();
        s->state = PP_STATE_USER;
        log_reply(s, PP_TXT_USER_OK, strlen(PP_TXT_USER_OK));
        break;
    case PP_CMD_PASS:
        if (s->state != PP_STATE_USER || !s->offer.user || c->nargs != 1 || c->arg_len[0] == 0)
            abort();
        if (c->arg[0][0] == 'x') { /* a "wrong password" */
            s->state = PP_STATE_AUTHORIZATION;
            log_reply(s, PP_TXT_AUTH_FAILED, strlen(PP_TXT_AUTH_FAILED));
        } else {
            login(s);
            log_reply(s, PP_TXT_LOGGED_IN, strlen(PP_TXT_LOGGED_IN));
        }
        break;
    case PP_CMD_AUTH:
        if (in_trans)
            abort();
        if (c->nargs == 0) {
            pu_buf_clear(&s->out);
            if (pp_write_auth_mechs(&s->out, &s->offer) != 0)
                abort();
            size_t end;
            check_status_line(s->out.data, s->out.len, &end);
            check_multiline(s->out.data + end, s->out.len - end, NULL);
            log_reply(s, s->out.data, s->out.len);
        } else if (!s->offer.sasl_plain) {
            abort();
        } else if (c->nargs == 2) {
            pp_plain p;
            int r = pp_sasl_plain(c->arg[1], c->arg_len[1], &p);
            if (r == 0)
                login(s);
            log_reply(s, r == 0 ? PP_TXT_LOGGED_IN : p.err, strlen(r == 0 ? PP_TXT_LOGGED_IN : p.err));
            pp_plain_wipe(&p);
        } else {
            s->sasl_wait = true;
            log_reply(s, PP_TXT_AUTH_CONTINUE, strlen(PP_TXT_AUTH_CONTINUE));
        }
        break;
    case PP_CMD_STLS:
        if (in_trans || !s->offer.stls || s->offer.tls)
            abort();
        pp_offer_init(&s->offer, true, true, s->flags & 4);
        s->state = PP_STATE_AUTHORIZATION;
        log_reply(s, PP_TXT_STLS_OK, strlen(PP_TXT_STLS_OK));
        break;
    case PP_CMD_CAPA: {
        pu_buf_clear(&s->out);
        if (pp_write_capa(&s->out, &s->offer, s->state) != 0)
            abort();
        size_t end;
        check_status_line(s->out.data, s->out.len, &end);
        check_multiline(s->out.data + end, s->out.len - end, NULL);
        log_reply(s, s->out.data, s->out.len);
        break;
    }
    case PP_CMD_QUIT:
        if (s->md) {
            check_model(s);
            end_session(s);
        }
        s->state = PP_STATE_AUTHORIZATION;
        log_reply(s, PP_TXT_BYE, strlen(PP_TXT_BYE));
        break;
    case PP_CMD_APOP:
    case PP_CMD_NONE:
        abort(); /* never accepted */
    }
}

static int session_event(void *arg, const event *ev)
{
    session *s = arg;
    if (ev->st == PP_READ_ERROR) {
        s->sasl_wait = false;
        log_reply(s, ev->text, ev->len);
        return 0;
    }
    if (s->sasl_wait) {
        s->sasl_wait = false;
        pp_plain p;
        int r = pp_sasl_plain(ev->text, ev->len, &p);
        if (r == 0) {
            if (!p.authcid_len || !p.password_len || strlen(p.authcid) != p.authcid_len ||
                strlen(p.password) != p.password_len)
                abort();
            login(s);
            log_reply(s, PP_TXT_LOGGED_IN, strlen(PP_TXT_LOGGED_IN));
        } else {
            check_err_text(p.err);
            log_reply(s, p.err, strlen(p.err));
            if ((r == 1) != (ev->len == 1 && ev->text[0] == '*'))
                abort();
        }
        pp_plain_wipe(&p);
        return 0;
    }
    if (ev->len >= PP_LINE_MAX)
        abort(); /* the reader kept the command line limit */
    pp_command c;
    s->commands++;
    if (pp_parse(ev->text, ev->len, s->state, &s->offer, &c) < 0) {
        check_err_text(c.err);
        log_reply(s, c.err, strlen(c.err));
        pp_command_wipe(&c);
        return 0;
    }
    if (c.err || c.nargs > 2)
        abort();
    for (size_t i = 0; i < c.nargs; i++)
        if (!c.arg[i] || strlen(c.arg[i]) != c.arg_len[i])
            abort();
    on_parsed(s, &c);
    pp_command_wipe(&c);
    return s->sasl_wait ? 1 : 0;
}

static void init_session(session *s, unsigned flags)
{
    memset(s, 0, sizeof *s);
    s->flags = flags;
    pp_offer_init(&s->offer, flags & 1, flags & 2, flags & 4);
    s->offer.expire = flags & 8;
    s->offer.expire_days = flags & 16 ? PP_EXPIRE_NEVER : 30;
    s->offer.implementation = flags & 32 ? "postern" : NULL;
}

static void finish_session(session *s)
{
    if (s->md) {
        check_model(s);
        end_session(s);
    }
    pu_buf_free(&s->out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = data[0], seed = data[1];
    const uint8_t *d = data + 2;
    size_t n = size - 2;

    bodies[0] = (const char *)d;
    body_len[0] = n;
    bodies[1] = "Subject: x\r\n\r\n.body\r\n..\r\nend";
    bodies[2] = "";
    bodies[3] = "gone\n";
    bodies[4] = "no newline at all";
    for (int i = 1; i < NMSG; i++)
        body_len[i] = strlen(bodies[i]);

    check_message(d, n, seed);

    /* The same session fed whole and in slices must say exactly the same. */
    session whole, sliced;
    init_session(&whole, flags);
    init_session(&sliced, flags);
    run_reader(d, n, 0, session_event, &whole);
    run_reader(d, n, seed % 9 + 1, session_event, &sliced);
    if (whole.commands != sliced.commands || whole.transcript.len != sliced.transcript.len ||
        (whole.transcript.len && memcmp(whole.transcript.data, sliced.transcript.data, whole.transcript.len) != 0))
        abort();
    finish_session(&whole);
    finish_session(&sliced);
    pu_buf_free(&whole.transcript);
    pu_buf_free(&sliced.transcript);
    return 0;
}
