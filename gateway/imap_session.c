/* gateway: the IMAP side of a connection (gw_imap_proto). Bytes from the core go into the
 * incremental parser (imap/), whole commands through the command table's checks to their
 * handler (imap_commands.c, imap_cmd_*.c); the continuation lines of IDLE and AUTHENTICATE
 * go to theirs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/imap_session.h"
#include "gateway/mailbox.h"

/* ---- output ---- */

static void reply(session *s, const char *prefix, const char *fmt, va_list ap)
{
    if (s->dead)
        return;
    /* the prefix is a tag the client chose: never part of a format */
    gw_write(s, prefix, strlen(prefix));
    gw_write(s, " ", 1);
    gw_vwritef(s, fmt, ap);
}

void gw_untagged(session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply(s, "*", fmt, ap);
    va_end(ap);
}

void gw_tagged(session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply(s, s->imap->tag, fmt, ap);
    va_end(ap);
}

unsigned gw_session_caps(const session *s)
{
    return gw_caps_for(s->state, s->tls, s->tls_available, s->net->cfg->gateway.allow_plaintext_auth);
}

/* The literal cap of an APPEND after login: the message size delivery takes too (no
 * literal of 2^32 bytes or more can be sent at all). */
static uint64_t append_limit(const session *s)
{
    uint64_t max = s->net->cfg->max_message_size;
    return max < UINT32_MAX ? max : UINT32_MAX;
}

int gw_session_caps_write(pu_buf *b, const session *s)
{
    if (gw_caps_write(b, gw_session_caps(s)) != 0)
        return -1;
    return pu_buf_printf(b, " APPENDLIMIT=%llu", (unsigned long long)append_limit(s));
}

/* ---- input ---- */

static gw_result dispatch(session *s, const pi_command *cmd)
{
    snprintf(s->imap->tag, sizeof s->imap->tag, "%s", cmd->tag);
    const gw_command *c = gw_command_find(cmd->verb, cmd->uid);
    const char *why = c ? gw_command_check(c, s->state, s->tls, s->net->cfg->gateway.allow_plaintext_auth,
                                           cmd->nargs)
                        : "BAD Unknown command";
    if (why) {
        gw_tagged(s, "%s", why);
        if (why[0] == 'B' && ++s->errors >= GW_MAX_ERRORS)
            return GW_CLOSE;
        return GW_DONE;
    }
    s->errors = 0;
    pu_log(PU_DEBUG, "%s: %s", s->peer, cmd->name); /* never the arguments: passwords */
    return c->fn(s, cmd);
}

/* LOGIN and AUTHENTICATE carry a password (or a response holding one): their bytes are
 * wiped as soon as the command ran (the handler keeps its own copy in sodium memory),
 * also when the command was refused before its handler saw it. */
static bool holds_secret(const pi_command *cmd)
{
    return !strcasecmp(cmd->verb, "LOGIN") || !strcasecmp(cmd->verb, "AUTHENTICATE");
}

static void imap_input(session *s)
{
    const void *data;
    size_t len;
    while ((data = gw_session_input(s, &len)) != NULL) {
        size_t used = 0;
        pi_status st = pi_parse(s->imap->parser, data, len, &used);
        gw_session_consumed(s, used);
        switch (st) {
        case PI_NEED_MORE:
            break;
        case PI_CONTINUE:
            gw_write(s, "+ Ready for literal data\r\n", 26);
            break;
        case PI_COMMAND: {
            evtimer_del(s->timer);
            const pi_command *cmd = pi_parser_command(s->imap->parser);
            bool secret = holds_secret(cmd);
            gw_result r = dispatch(s, cmd);
            if (secret && !s->dead)
                pi_parser_wipe(s->imap->parser);
            if (!gw_session_after(s, r))
                return;
            break;
        }
        case PI_LINE: {
            size_t len;
            const char *line = pi_parser_line(s->imap->parser, &len);
            evtimer_del(s->timer);
            gw_result r = s->state == S_IDLE ? gw_idle_line(s, line, len) : gw_authenticate_line(s, line, len);
            if (!s->dead)
                pi_parser_wipe(s->imap->parser); /* an AUTHENTICATE response */
            if (!gw_session_after(s, r))
                return;
            break;
        }
        case PI_ERROR: {
            const pi_error *e = pi_parser_error(s->imap->parser);
            pu_buf b = PU_BUF_INIT;
            pi_error_reply(e, &b);
            if (b.len)
                gw_write(s, b.data, b.len);
            pu_buf_free(&b);
            if (s->state == S_IDLE) /* the line after IDLE was refused: IDLE is over */
                gw_session_enter(s, s->imap->idle_prev);
            if (s->imap->sasl_wait) { /* the response line was refused: the exchange is over */
                s->imap->sasl_wait = false;
                gw_session_enter(s, S_NOT_AUTH);
            }
            if (e->fatal) {
                gw_session_close_after_flush(s); /* pi_error_reply wrote the BYE */
                return;
            }
            if (++s->errors >= GW_MAX_ERRORS) {
                gw_session_bye(s, "Too many invalid commands");
                return;
            }
            break;
        }
        }
    }
}

/* ---- the protocol ---- */

/* The parser's limits; append_cap 0: APPEND literals as small as any other. */
static pi_limits parser_limits(const pn_gateway *g, uint64_t append_cap)
{
    pi_limits lim;
    pi_limits_default(&lim);
    lim.max_line = g->max_line;
    lim.max_append_literal = append_cap ? append_cap : lim.max_literal;
    return lim;
}

static int imap_init(session *s)
{
    const pn_gateway *g = &s->net->cfg->gateway;
    s->imap = calloc(1, sizeof *s->imap);
    if (!s->imap)
        return -1;
    /* before login an APPEND is refused anyway: no need to hold a big literal for it */
    pi_limits lim = parser_limits(g, 0);
    s->imap->parser = pi_parser_new(&lim);
    return s->imap->parser ? 0 : -1;
}

static void imap_greet(session *s)
{
    pu_buf caps = PU_BUF_INIT;
    if (gw_session_caps_write(&caps, s) != 0) {
        pu_buf_free(&caps);
        gw_session_bye(s, "Out of memory");
        return;
    }
    gw_untagged(s, "OK [CAPABILITY %s] postern ready", caps.data);
    pu_buf_free(&caps);
}

static void imap_bye(session *s, const char *text)
{
    gw_untagged(s, "BYE %s", text);
}

static void imap_refuse(session *s, const char *text)
{
    gw_tagged(s, "NO %s", text);
}

static void imap_login_done(session *s, bool ok, const char *no_text)
{
    if (ok) {
        gw_session_enter(s, S_AUTH);
        /* from the next command on, APPEND takes messages up to APPENDLIMIT */
        pi_limits lim = parser_limits(&s->net->cfg->gateway, append_limit(s));
        pi_parser_set_limits(s->imap->parser, &lim);
        pu_buf caps = PU_BUF_INIT;
        if (gw_session_caps_write(&caps, s) == 0)
            gw_tagged(s, "OK [CAPABILITY %s] Logged in", caps.data);
        else
            gw_tagged(s, "OK Logged in");
        pu_buf_free(&caps);
        pu_log(PU_INFO, "%s: %s logged in", s->peer, s->address);
    } else {
        gw_tagged(s, "NO %s", no_text);
    }
    gw_session_done(s);
}

static void imap_free(session *s)
{
    if (!s->imap)
        return;
    gw_view_close(s);
    pi_parser_free(s->imap->parser);
    pi_seqset_free(&s->imap->select_qr.known);
    free(s->imap);
    s->imap = NULL;
}

static unsigned imap_idle_timeout(const pn_gateway *g)
{
    return g->idle_timeout;
}

const gw_proto gw_imap_proto = {
    .name = "IMAP",
    .init = imap_init,
    .greet = imap_greet,
    .input = imap_input,
    .bye = imap_bye,
    .refuse = imap_refuse,
    .login_done = imap_login_done,
    .free = imap_free,
    .idle_timeout = imap_idle_timeout,
};
