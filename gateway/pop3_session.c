/* gateway: one POP3 connection (RFC 1939, 2449, 2595, 5034) over the same event loop,
 * login, vault, accounts and per-user state as IMAP. pop3/ parses and formats; this file
 * acts. The maildrop is the user's INBOX as the state has it: what IMAP expunged is gone here,
 * and DELE + QUIT removes messages from the IMAP INBOX too. UIDLs come from the Message-ID,
 * so they are the same at every site and after every restart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>

#include "gateway/mailbox.h"
#include "pop3/pop3.h"

struct gw_pop3 {
    session *s;
    pp_reader *reader;
    pp_state state;
    pp_offer offer;
    char user[PC_ADDRESS_MAX + 1];
    bool sasl_wait; /* AUTH PLAIN: the response line comes next */
    bool locked;    /* holds the account's maildrop lock */
    /* the maildrop */
    pp_maildrop *md;
    char (*msgids)[PA_MSGID_MAX];
    uint64_t *sizes;
    int64_t *arrival;
    size_t n;
    mb_walk *walk; /* the sizes the state does not have yet, loaded */
    /* RETR/TOP in progress */
    bool body_wait;
    mb_load_waiter body;
    pp_command cmd;
};



static void send_buf(session *s, pu_buf *b)
{
    if (b->len)
        gw_write(s, b->data, b->len);
    b->len = 0;
}

static void send_text(session *s, const char *text)
{
    gw_write(s, text, strlen(text));
}

/* The login's texts are IMAP's: "[UNAVAILABLE] Server busy" is "Server busy" here. */
static const char *without_code(const char *no_text)
{
    const char *end = no_text[0] == '[' ? strchr(no_text, ']') : NULL;
    return end ? end[1] == ' ' ? end + 2 : end + 1 : no_text;
}

static void gw_pop3_reply_err(session *s, const char *text)
{
    pu_buf b = {0};
    pp_write_err(&b, PP_RC_SYS_TEMP, text);
    send_buf(s, &b);
    pu_buf_free(&b);
}

static int gw_pop3_new(session *s)
{
    struct gw_pop3 *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->reader = pp_reader_new();
    if (!p->reader) {
        free(p);
        return -1;
    }
    p->s = s;
    s->pop = p;
    return 0;
}

static void set_offer(session *s)
{
    struct gw_pop3 *p = s->pop;
    pp_offer_init(&p->offer, s->tls, s->tls_available, s->net->cfg->gateway.allow_plaintext_auth);
    p->offer.expire = true;
    p->offer.expire_days = (long)s->net->cfg->gateway.retention_days;
    p->offer.implementation = "postern";
}

static void gw_pop3_greet(session *s)
{
    set_offer(s);
    send_text(s, PP_TXT_GREETING);
}

static void unlock(struct gw_pop3 *p)
{
    if (p->locked && p->s->account)
        mb_account_unlock(p->s->account);
    p->locked = false;
}

static void gw_pop3_free(session *s)
{
    struct gw_pop3 *p = s->pop;
    if (!p)
        return;
    unlock(p);
    pp_reader_free(p->reader);
    pp_maildrop_free(p->md);
    pp_command_wipe(&p->cmd);
    free(p->msgids);
    free(p->sizes);
    free(p->arrival);
    mb_walk_free(p->walk); /* loads in flight are cancelled */
    mb_load_cancel(&p->body);
    s->pop = NULL;
    free(p);
}

/* ---- the maildrop: every message of the view, with its exact size ---- */



/* Maildrop order: arrival time (seconds), then this site's article number. Article numbers
 * alone differ between sites when replication reordered articles; arrival time does not, so
 * after a failover the message numbers mostly agree too (UIDLs always do). */
static struct gw_pop3 *sorting;

static int by_arrival(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (sorting->arrival[i] != sorting->arrival[j])
        return sorting->arrival[i] < sorting->arrival[j] ? -1 : 1;
    return i < j ? -1 : i > j; /* msgids[] is in article-number order */
}

/* Leaves out what the loads found not to be the user's mail (mb_load_junk). */
static void leave_out_junk(struct gw_pop3 *p)
{
    size_t kept = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!p->msgids[i][0])
            continue;
        if (kept != i) {
            memcpy(p->msgids[kept], p->msgids[i], PA_MSGID_MAX);
            p->sizes[kept] = p->sizes[i];
            p->arrival[kept] = p->arrival[i];
        }
        kept++;
    }
    p->n = kept;
}

static int sort_maildrop(struct gw_pop3 *p)
{
    size_t *order = malloc((p->n ? p->n : 1) * sizeof *order);
    char (*ids)[PA_MSGID_MAX] = malloc((p->n ? p->n : 1) * sizeof *ids);
    uint64_t *sizes = malloc((p->n ? p->n : 1) * sizeof *sizes);
    if (!order || !ids || !sizes) {
        free(order);
        free(ids);
        free(sizes);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        order[i] = i;
    sorting = p; /* the loop thread only */
    qsort(order, p->n, sizeof *order, by_arrival);
    sorting = NULL;
    for (size_t k = 0; k < p->n; k++) {
        memcpy(ids[k], p->msgids[order[k]], PA_MSGID_MAX);
        sizes[k] = p->sizes[order[k]];
    }
    free(p->msgids);
    free(p->sizes);
    p->msgids = ids;
    p->sizes = sizes;
    free(order);
    return 0;
}

#define SIZE_UNKNOWN UINT64_MAX /* each() never came: the article was not the user's mail */

static void finish_build(void *ctx, unsigned failed)
{
    struct gw_pop3 *p = ctx;
    session *s = p->s;
    mb_walk_free(p->walk);
    p->walk = NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->sizes[i] == SIZE_UNKNOWN)
            p->msgids[i][0] = '\0'; /* removed from the mailbox: left out of the maildrop */
    if (failed) {
        pu_log(PU_WARN, "%s: %s: %u messages could not be read for POP3", s->peer, s->address, failed);
        unlock(p);
        send_text(s, PP_TXT_SYS_TEMP);
        gw_session_close_after_flush(s);
        return;
    }
    leave_out_junk(p);
    pp_msg *msgs = sort_maildrop(p) == 0 ? calloc(p->n ? p->n : 1, sizeof *msgs) : NULL;
    char (*uidls)[PA_MSGID_MAX] = calloc(p->n ? p->n : 1, sizeof *uidls);
    if (msgs && uidls) {
        for (size_t i = 0; i < p->n; i++) {
            /* "<m.HEX@postern.invalid>" -> "m.HEX": short, printable, the same everywhere */
            const char *id = p->msgids[i] + 1;
            size_t len = strcspn(id, "@>");
            if (len > PP_UIDL_MAX)
                len = PP_UIDL_MAX;
            memcpy(uidls[i], id, len);
            msgs[i] = (pp_msg){.size = p->sizes[i], .uidl = uidls[i], .uidl_len = len};
        }
        p->md = pp_maildrop_new(msgs, p->n);
    }
    free(msgs);
    free(uidls);
    if (!p->md) {
        unlock(p);
        send_text(s, PP_TXT_SYS_TEMP);
        gw_session_close_after_flush(s);
        return;
    }
    p->state = PP_STATE_TRANSACTION;
    gw_session_enter(s, S_AUTH);
    pu_buf b = {0};
    pp_write_okf(&b, "Logged in; maildrop has %zu message%s (%llu octets)", pp_maildrop_count(p->md),
                 pp_maildrop_count(p->md) == 1 ? "" : "s", (unsigned long long)pp_maildrop_octets(p->md));
    send_buf(s, &b);
    pu_buf_free(&b);
    pu_log(PU_INFO, "%s: %s logged in (POP3)", s->peer, s->address);
    gw_session_done(s);
}

static const char *maildrop_msgid(void *ctx, size_t i)
{
    struct gw_pop3 *p = ctx;
    return p->msgids[i];
}

/* The maildrop's sizes and arrival times: from the state, else from the message itself. */
static bool size_needs_load(void *ctx, size_t i)
{
    struct gw_pop3 *p = ctx;
    userstate_msg st;
    userstate_get(mb_account_state(p->s->account), p->msgids[i], &st);
    return !st.has_meta;
}

static void size_known(void *ctx, size_t i, mb_plain *pl)
{
    struct gw_pop3 *p = ctx;
    if (pl) {
        p->sizes[i] = pp_message_size(pl->data, pl->len);
        p->arrival[i] = pl->meta.arrival;
        return;
    }
    userstate_msg st;
    userstate_get(mb_account_state(p->s->account), p->msgids[i], &st);
    /* the CRLF size; a message not ending in a line end gets one more CRLF in RETR */
    p->sizes[i] = st.meta.crlf_size;
    p->arrival[i] = st.meta.arrival;
}

static const mb_walk_ops size_ops = {maildrop_msgid, size_needs_load, size_known, finish_build, NULL};

/* After the scan: the messages not removed, in UID order. */
static void build(session *s)
{
    struct gw_pop3 *p = s->pop;
    const mb_mbox *m = mb_account_mbox(s->account);
    p->msgids = calloc(m->n ? m->n : 1, sizeof *p->msgids);
    p->sizes = calloc(m->n ? m->n : 1, sizeof *p->sizes);
    p->arrival = calloc(m->n ? m->n : 1, sizeof *p->arrival);
    if (!p->msgids || !p->sizes || !p->arrival) {
        unlock(p);
        send_text(s, PP_TXT_NOMEM);
        gw_session_close_after_flush(s);
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        userstate_msg st;
        userstate_get(mb_account_state(s->account), m->msgs[i].msgid, &st);
        if (!st.removed)
            memcpy(p->msgids[p->n++], m->msgs[i].msgid, PA_MSGID_MAX);
    }
    for (size_t i = 0; i < p->n; i++)
        p->sizes[i] = SIZE_UNKNOWN;
    p->walk = mb_walk_new(&s->reader, p->n, false, &size_ops, p);
    if (!p->walk) {
        unlock(p);
        send_text(s, PP_TXT_NOMEM);
        gw_session_close_after_flush(s);
        return;
    }
    mb_walk_step(p->walk); /* may finish at once: every size in the state */
}

static void scanned(void *arg, mb_account *a, const char *no_text)
{
    (void)a;
    session *s = arg;
    if (s->dead || !s->pop)
        return;
    if (no_text) {
        unlock(s->pop);
        pu_log(PU_WARN, "%s: %s: POP3 maildrop cannot be scanned", s->peer, s->address);
        send_text(s, PP_TXT_SYS_TEMP);
        gw_session_close_after_flush(s);
        return;
    }
    build(s);
}

static void gw_pop3_login_finish(session *s, bool ok, const char *no_text)
{
    struct gw_pop3 *p = s->pop;
    if (!ok) {
        p->state = PP_STATE_AUTHORIZATION;
        if (!no_text || strstr(no_text, "AUTHENTICATIONFAILED")) {
            send_text(s, PP_TXT_AUTH_FAILED);
        } else {
            gw_pop3_reply_err(s, without_code(no_text));
        }
        gw_session_done(s);
        return;
    }
    mb_account *a = s->account;
    if (!mb_account_lock(a)) {
        send_text(s, PP_TXT_IN_USE);
        pu_log(PU_INFO, "%s: %s: POP3 maildrop in use by another session", s->peer, s->address);
        gw_session_close_after_flush(s);
        return;
    }
    p->locked = true;
    if (!mb_scan_wait(a, &s->scan_wait, scanned, s)) { /* always fresh: POP3 sessions are short and see one snapshot */
        unlock(p);
        send_text(s, PP_TXT_SYS_TEMP);
        gw_session_close_after_flush(s);
    }
}

/* ---- commands ---- */

typedef enum { P_DONE, P_PENDING, P_CLOSE } p_result;

static p_result login(session *s, const char *user, size_t user_len, const char *pw, size_t pw_len)
{
    gw_result r = gw_login_start(s, user, user_len, pw, pw_len);
    return r == GW_PENDING ? P_PENDING : P_DONE;
}

static void body_loaded(void *arg, mb_plain *pl, const char *err)
{
    (void)err;
    session *s = arg;
    struct gw_pop3 *p = s->pop;
    p->body_wait = false;
    pu_buf b = {0};
    if (!pl) {
        pp_write_err(&b, PP_RC_SYS_TEMP, "The message cannot be read now; try again later");
    } else {
        pp_md_command(p->md, &p->cmd, &b); /* the "+OK" line */
        if (pp_write_message(&b, pl->data, pl->len, p->cmd.cmd == PP_CMD_TOP ? (int64_t)p->cmd.lines : -1) != PP_OK) {
            b.len = 0;
            pp_write_err(&b, PP_RC_SYS_TEMP, "Out of memory");
        }
        mb_plain_unref(pl);
    }
    if (pl && p->cmd.cmd == PP_CMD_RETR) {
        /* a downloaded message counts as read, as in other servers */
        const char *id = p->msgids[p->cmd.msg - 1];
        if (mb_state_store(s->account, id, US_ADD, US_SEEN, NULL) == US_OK)
            mb_account_changed(s->account);
    }
    send_buf(s, &b);
    pu_buf_free(&b);
    pp_command_wipe(&p->cmd);
    gw_session_done(s);
}

static p_result quit(session *s)
{
    struct gw_pop3 *p = s->pop;
    if (p->state != PP_STATE_TRANSACTION) {
        send_text(s, PP_TXT_BYE);
        return P_CLOSE;
    }
    size_t n = pp_maildrop_deleted(p->md, NULL, 0);
    uint32_t *nums = calloc(n ? n : 1, sizeof *nums);
    bool ok = nums != NULL;
    if (nums) {
        pp_maildrop_deleted(p->md, nums, n);
        for (size_t k = 0; k < n; k++)
            if (mb_state_remove(s->account, p->msgids[nums[k] - 1]) != US_OK)
                ok = false;
    }
    free(nums);
    if (n)
        mb_account_changed(s->account); /* IMAP sessions see the EXPUNGEs */
    unlock(p);
    send_text(s, ok ? PP_TXT_BYE : PP_TXT_QUIT_FAILED);
    pu_log(PU_INFO, "%s: %s: POP3 QUIT, %zu message%s removed", s->peer, s->address, n, n == 1 ? "" : "s");
    return P_CLOSE;
}

static p_result command(session *s, const char *line, size_t len)
{
    struct gw_pop3 *p = s->pop;
    pu_buf b = {0};
    p_result r = P_DONE;
    if (p->sasl_wait) {
        p->sasl_wait = false;
        pp_plain plain;
        int rc = pp_sasl_plain(line, len, &plain);
        if (rc != 0) {
            send_text(s, plain.err);
            return P_DONE;
        }
        r = login(s, plain.authcid, plain.authcid_len, plain.password, plain.password_len);
        pp_plain_wipe(&plain);
        return r;
    }
    pp_command *c = &p->cmd;
    if (pp_parse(line, len, p->state, &p->offer, c) != 0) {
        send_text(s, c->err);
        pp_command_wipe(c);
        return P_DONE;
    }
    switch (c->cmd) {
    case PP_CMD_USER:
        snprintf(p->user, sizeof p->user, "%s", c->arg[0]);
        p->state = PP_STATE_USER;
        send_text(s, PP_TXT_USER_OK);
        break;
    case PP_CMD_PASS:
        p->state = PP_STATE_AUTHORIZATION; /* a failed PASS needs USER again */
        r = login(s, p->user, strlen(p->user), c->arg[0], c->arg_len[0]);
        break;
    case PP_CMD_AUTH:
        if (c->nargs == 0) {
            pp_write_auth_mechs(&b, &p->offer);
        } else if (c->nargs == 2) {
            pp_plain plain;
            if (pp_sasl_plain(c->arg[1], c->arg_len[1], &plain) != 0) {
                send_text(s, plain.err);
            } else {
                r = login(s, plain.authcid, plain.authcid_len, plain.password, plain.password_len);
                pp_plain_wipe(&plain);
            }
        } else if (pp_reader_auth_line(p->reader) == 0) {
            p->sasl_wait = true;
            send_text(s, PP_TXT_AUTH_CONTINUE);
        } else {
            gw_pop3_reply_err(s, "Cannot start the exchange now");
        }
        break;
    case PP_CMD_STLS:
        if (pp_reader_pending(p->reader) ||
            evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
            pu_log(PU_INFO, "%s: bytes after STLS before the handshake: dropped", s->peer);
            r = P_CLOSE;
            break;
        }
        send_text(s, PP_TXT_STLS_OK);
        if (gw_session_starttls(s) != 0) {
            r = P_CLOSE;
            break;
        }
        pp_reader_reset(p->reader);
        p->state = PP_STATE_AUTHORIZATION;
        p->user[0] = '\0';
        set_offer(s);
        break;
    case PP_CMD_CAPA:
        pp_write_capa(&b, &p->offer, p->state);
        break;
    case PP_CMD_QUIT:
        r = quit(s);
        break;
    default: {
        int rc = pp_md_command(p->md, c, &b);
        if (rc == PP_BODY) { /* RETR/TOP: the message first, then the "+OK" line with it */
            b.len = 0;
            p->body_wait = true;
            size_t i = c->msg - 1;
            mb_load(&s->reader, p->msgids[i], false, &p->body, body_loaded, s);
            mb_read_ahead(&s->reader, i, i, p->n, maildrop_msgid, p);
            pu_buf_free(&b);
            return P_PENDING; /* cmd is wiped when the body went out */
        }
        if (rc == PP_NOMEM)
            send_text(s, PP_TXT_NOMEM);
        break;
    }
    }
    send_buf(s, &b);
    pu_buf_free(&b);
    pp_command_wipe(c);
    return r;
}

static void gw_pop3_process(session *s)
{
    struct gw_pop3 *p = s->pop;
    const void *data;
    size_t avail;
    while ((data = gw_session_input(s, &avail)) != NULL) {
        size_t used = 0;
        pp_read_status st = pp_reader_feed(p->reader, data, avail, &used);
        gw_session_consumed(s, used);
        if (st == PP_READ_MORE)
            continue;
        if (st == PP_READ_ERROR) {
            send_text(s, pp_reader_error(p->reader));
            if (++s->errors >= GW_MAX_ERRORS) {
                gw_session_bye(s, "Too many invalid commands");
                return;
            }
            continue;
        }
        size_t len;
        const char *line = pp_reader_line(p->reader, &len);
        s->errors = 0;
        p_result r = command(s, line, len);
        if (s->dead)
            return;
        pp_reader_wipe_line(p->reader); /* PASS, AUTH: the password is copied by now */
        if (r == P_CLOSE) {
            gw_session_close_after_flush(s);
            return;
        }
        if (r == P_PENDING) {
            gw_session_wait(s);
            return;
        }
    }
}


/* ---- the protocol ---- */

static void pop3_refuse(session *s, const char *text)
{
    gw_pop3_reply_err(s, without_code(text));
}

static unsigned pop3_idle_timeout(const pn_gateway *g)
{
    return g->pop3_timeout;
}

const gw_proto gw_pop3_proto = {
    .name = "POP3",
    .init = gw_pop3_new,
    .greet = gw_pop3_greet,
    .input = gw_pop3_process,
    .bye = gw_pop3_reply_err,
    .refuse = pop3_refuse,
    .login_done = gw_pop3_login_finish,
    .free = gw_pop3_free,
    .idle_timeout = pop3_idle_timeout,
};
