/* pop3: the POP3 protocol library of the gateway (RFC 1939, RFC 2449 CAPA and response codes,
 * RFC 3206 SYS/AUTH codes, RFC 2595 STLS, RFC 5034 AUTH with SASL PLAIN, RFC 4616). Syntax
 * and pure per-session logic: a bounded incremental line reader, a command parser driven by
 * one command table, the maildrop view (STAT, LIST, UIDL, DELE, RSET semantics), response
 * writers (dot-stuffing, the CRLF form RETR and TOP send and its exact size, CAPA) and the
 * SASL PLAIN replies (util/sasl.h decodes, as for IMAP). No sockets, no crypto beyond
 * memzero, no news server: the gateway feeds bytes in and sends what lands in a pu_buf.
 * Everything is in the pp_ namespace.
 *
 * A session on top of this library, as the event-driven gateway runs it:
 *   greeting PP_TXT_GREETING; state PP_STATE_AUTHORIZATION; pp_offer_init() from the
 *   connection (TLS or not, certificate loaded, the admin's plaintext flag).
 *   on input: pp_reader_feed() until PP_READ_MORE; for each PP_READ_LINE pp_parse() with the
 *   current state and offer. A parse error: send cmd.err (a whole "-ERR ...\r\n" line), stay
 *   in the state. Otherwise act on cmd.cmd:
 *     USER   -> "+OK" (PP_TXT_USER_OK), state PP_STATE_USER.
 *     PASS / AUTH PLAIN -> login (the caller's); success: build the maildrop
 *            (pp_maildrop_new), "+OK", state PP_STATE_TRANSACTION; wrong password:
 *            PP_TXT_AUTH_FAILED, state PP_STATE_AUTHORIZATION; maildrop locked by another
 *            session: PP_TXT_IN_USE; back end down: PP_TXT_SYS_TEMP.
 *     AUTH PLAIN without an initial response -> PP_TXT_AUTH_CONTINUE, pp_reader_auth_line(),
 *            and the next line goes to pp_sasl_plain() instead of pp_parse().
 *     AUTH without arguments -> pp_write_auth_mechs().
 *     STLS   -> PP_TXT_STLS_OK only if pp_reader_pending() is false and no unread input is
 *            left in the socket buffer (else drop the connection: plaintext injected before
 *            the handshake); after the handshake pp_reader_reset() and pp_offer_init() anew;
 *            the state goes back to PP_STATE_AUTHORIZATION (RFC 2595: forget the USER).
 *     CAPA   -> pp_write_capa(); QUIT in AUTHORIZATION -> PP_TXT_BYE, close.
 *     STAT, LIST, UIDL, DELE, RSET, NOOP, RETR, TOP -> pp_md_command(); PP_BODY means the
 *            "+OK" line is written and the message (numbered cmd.msg) follows through a
 *            pp_crlf converter with PP_CRLF_STUFF (and PP_CRLF_TOP, cmd.lines for TOP).
 *     QUIT in TRANSACTION -> remove pp_maildrop_deleted()'s messages (UPDATE state), then
 *            PP_TXT_BYE or PP_TXT_QUIT_FAILED, close. A connection that drops without QUIT
 *            removes nothing (RFC 1939).
 * Passwords pass through the reader's line buffer, pp_command and pp_plain: the reader
 * wipes its line when the next feed starts and on reset/free; wipe the others with
 * pp_command_wipe() and pp_plain_wipe() as soon as the login has the password.
 * ------------------------------------------------------------------------------------- */
#ifndef POSTERN_POP3_H
#define POSTERN_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Results of the writers and the maildrop commands. On PP_NOMEM the output buffer is left as
 * it was before the call. */
enum {
    PP_NOMEM = -1,
    PP_OK = 0,   /* a complete "+OK" reply was appended */
    PP_ERR = 1,  /* a complete "-ERR" reply was appended */
    PP_BODY = 2, /* pp_md_command: the "+OK" line of RETR or TOP was appended; the body follows */
    PP_PASS = 3  /* pp_md_command: not a maildrop command; nothing was appended */
};

/* ---------------------------------------------------------------------------------------
 * Fixed replies, whole lines. The [CODE]s are RFC 2449's IN-USE and RFC 3206's AUTH and SYS.
 * ------------------------------------------------------------------------------------- */
#define PP_TXT_GREETING "+OK POP3 server ready\r\n"
#define PP_TXT_USER_OK "+OK Send PASS\r\n"
#define PP_TXT_LOGGED_IN "+OK Logged in\r\n"
#define PP_TXT_AUTH_CONTINUE "+ \r\n"
#define PP_TXT_STLS_OK "+OK Begin TLS negotiation\r\n"
#define PP_TXT_BYE "+OK Bye\r\n"
#define PP_TXT_QUIT_FAILED "-ERR [SYS/TEMP] Some deleted messages not removed\r\n"
#define PP_TXT_IN_USE "-ERR [IN-USE] Maildrop already in use\r\n"
#define PP_TXT_AUTH_FAILED "-ERR [AUTH] Invalid user name or password\r\n"
#define PP_TXT_SYS_TEMP "-ERR [SYS/TEMP] Temporary failure, try again later\r\n"
#define PP_TXT_SYS_PERM "-ERR [SYS/PERM] Maildrop cannot be opened\r\n"
#define PP_TXT_NOMEM "-ERR [SYS/TEMP] Out of memory\r\n"

/* ---------------------------------------------------------------------------------------
 * Line reader.
 *
 * Feed bytes in slices of any size with pp_reader_feed(); it stops at every line:
 *   PP_READ_MORE   every byte was used; call again when more arrive.
 *   PP_READ_LINE   pp_reader_line() holds the line without its line end (LF or CRLF; a bare
 *                  LF is tolerated, one CR right before the LF is removed, other CRs stay).
 *   PP_READ_ERROR  the bad line was discarded up to and including its LF; send
 *                  pp_reader_error() and keep feeding. Every error is recoverable:
 *                  PP_ERR_TXT_LINE_TOO_LONG or PP_ERR_TXT_NUL (whichever came first).
 * *used says how many bytes were consumed (up to and including the LF that ended the event);
 * feed the rest next. A line and error stay valid until the next feed, reset or free; the
 * next feed wipes the line (it may hold a password).
 *
 * A line is at most PP_LINE_MAX octets with its line end (RFC 2449: 255), except the one line
 * after pp_reader_auth_line(), which may have PP_AUTH_LINE_MAX octets (the base64 SASL
 * response after "+ "). Memory is fixed: one PP_AUTH_LINE_MAX buffer per reader; discarding
 * an over-long line costs nothing whatever its length (the caller's idle timeout bounds it).
 * ------------------------------------------------------------------------------------- */
#define PP_LINE_MAX 255
#define PP_AUTH_LINE_MAX 2048

#define PP_ERR_TXT_LINE_TOO_LONG "-ERR line too long\r\n"
#define PP_ERR_TXT_NUL "-ERR NUL byte in line\r\n"

typedef enum { PP_READ_MORE, PP_READ_LINE, PP_READ_ERROR } pp_read_status;

typedef struct pp_reader pp_reader;

pp_reader *pp_reader_new(void); /* NULL when out of memory */
void pp_reader_free(pp_reader *r); /* wipes; NULL is fine */
pp_read_status pp_reader_feed(pp_reader *r, const void *data, size_t len, size_t *used);
/* After PP_READ_LINE: the line, NUL-terminated (it holds no NUL), and its length. */
const char *pp_reader_line(const pp_reader *r, size_t *len);
/* After PP_READ_ERROR: the reply, a whole "-ERR ...\r\n" line. */
const char *pp_reader_error(const pp_reader *r);
/* The next line may be PP_AUTH_LINE_MAX octets (one line only; the limit returns to
 * PP_LINE_MAX after it, error or not). Only between lines (after PP_READ_LINE, or before
 * any byte of the next line was fed); -1 otherwise. */
int pp_reader_auth_line(pp_reader *r);
/* True while part of a line is buffered or a bad line is being discarded. */
bool pp_reader_pending(const pp_reader *r);
/* Forgets (and wipes) everything buffered: a fresh reader, as after the STLS handshake. */
void pp_reader_reset(pp_reader *r);
/* Wipes the line pp_reader_line returned (a PASS or AUTH line holds a password) now rather
 * than at the next feed; bytes of the next line already buffered stay. */
void pp_reader_wipe_line(pp_reader *r);

/* ---------------------------------------------------------------------------------------
 * What a session offers, from which CAPA is built and by which the parser refuses USER,
 * PASS, AUTH and STLS. pp_offer_init() encodes the policy: login (USER/PASS and AUTH PLAIN)
 * only over TLS unless the admin allows plaintext; STLS while TLS is configured but not
 * active. expire/implementation are left unset (no EXPIRE or IMPLEMENTATION line).
 * ------------------------------------------------------------------------------------- */
#define PP_EXPIRE_NEVER (-1L)

typedef struct pp_offer {
    bool tls;            /* the connection is encrypted (POP3S, or after STLS) */
    bool stls;           /* STLS is offered */
    bool user;           /* USER/PASS allowed */
    bool sasl_plain;     /* AUTH PLAIN allowed */
    bool expire;         /* list EXPIRE (RFC 2449 6.7) ... */
    long expire_days;    /* ... with this many days (>= 0) or PP_EXPIRE_NEVER */
    const char *implementation; /* NULL or "": no IMPLEMENTATION line */
} pp_offer;

void pp_offer_init(pp_offer *o, bool tls_active, bool tls_available, bool plaintext_login);

/* ---------------------------------------------------------------------------------------
 * Command parser.
 *
 * The states: PP_STATE_AUTHORIZATION, PP_STATE_USER (still AUTHORIZATION, but USER was
 * accepted, so PASS may follow) and PP_STATE_TRANSACTION. The UPDATE state runs no commands.
 *
 * The command table (keyword case-insensitive; arguments separated by runs of spaces,
 * trailing spaces ignored, except PASS):
 *   keyword  states                arguments
 *   USER     AUTHORIZATION, USER   name: 1 token of bytes 0x21..0x7e or >= 0x80
 *   PASS     USER                  the rest of the line after "PASS ", spaces included
 *                                  (not empty; no CR)
 *   APOP     -                     always refused (PP_ERR_TXT_APOP)
 *   AUTH     AUTHORIZATION, USER   [mechanism [initial-response]]; the mechanism must be
 *                                  PLAIN; the response is 1 token, decoded by pp_sasl_plain()
 *   STLS     AUTHORIZATION, USER   none
 *   CAPA     any                   none
 *   QUIT     any                   none
 *   STAT     TRANSACTION           none
 *   LIST     TRANSACTION           [msg]
 *   RETR     TRANSACTION           msg
 *   DELE     TRANSACTION           msg
 *   NOOP     TRANSACTION           none
 *   RSET     TRANSACTION           none
 *   TOP      TRANSACTION           msg n        (n: lines, 0..2^31)
 *   UIDL     TRANSACTION           [msg]
 * msg is a message number 1..2^31 in decimal digits only (no sign, no spaces or other bytes;
 * leading zeros are digits). Whether the message exists is the maildrop's business.
 *
 * Checks, in order, and their replies (whole lines, in cmd->err):
 *   empty line                           PP_ERR_TXT_EMPTY
 *   a line longer than PP_LINE_MAX - 1   PP_ERR_TXT_LINE_TOO_LONG
 *   keyword not 3-4 letters / not known  PP_ERR_TXT_UNKNOWN
 *   APOP                                 PP_ERR_TXT_APOP
 *   wrong state                          PP_ERR_TXT_NEED_USER (PASS before USER),
 *                                        PP_ERR_TXT_IN_AUTHORIZATION, PP_ERR_TXT_IN_TRANSACTION
 *   USER, PASS not offered               PP_ERR_TXT_PLAINTEXT (no TLS) or PP_ERR_TXT_NO_USER
 *   STLS not offered                     PP_ERR_TXT_TLS_ACTIVE (in TLS) or PP_ERR_TXT_NO_STLS
 *   a control byte (PASS: a CR)          PP_ERR_TXT_BAD_CHAR
 *   argument count                       the command's "-ERR Syntax: ..." line
 *   message number, line count           PP_ERR_TXT_BAD_MSG, PP_ERR_TXT_BAD_LINES
 *   AUTH mechanism not PLAIN             PP_ERR_TXT_MECH
 *   AUTH PLAIN not offered               PP_ERR_TXT_PLAINTEXT (no TLS) or PP_ERR_TXT_NO_SASL
 * ------------------------------------------------------------------------------------- */
typedef enum {
    PP_STATE_AUTHORIZATION,
    PP_STATE_USER,
    PP_STATE_TRANSACTION
} pp_state;

typedef enum {
    PP_CMD_NONE = 0,
    PP_CMD_USER,
    PP_CMD_PASS,
    PP_CMD_APOP,
    PP_CMD_AUTH,
    PP_CMD_STLS,
    PP_CMD_CAPA,
    PP_CMD_QUIT,
    PP_CMD_STAT,
    PP_CMD_LIST,
    PP_CMD_RETR,
    PP_CMD_DELE,
    PP_CMD_NOOP,
    PP_CMD_RSET,
    PP_CMD_TOP,
    PP_CMD_UIDL
} pp_cmd;

#define PP_MSG_MAX 2147483648u /* 2^31: the highest message number and TOP line count */

#define PP_ERR_TXT_EMPTY "-ERR Empty command line\r\n"
#define PP_ERR_TXT_UNKNOWN "-ERR Unknown command\r\n"
#define PP_ERR_TXT_APOP "-ERR APOP is not supported\r\n"
#define PP_ERR_TXT_NEED_USER "-ERR Send USER first\r\n"
#define PP_ERR_TXT_IN_AUTHORIZATION "-ERR Command not valid in AUTHORIZATION state\r\n"
#define PP_ERR_TXT_IN_TRANSACTION "-ERR Command not valid in TRANSACTION state\r\n"
#define PP_ERR_TXT_PLAINTEXT "-ERR [AUTH] Plaintext authentication disallowed without TLS, use STLS\r\n"
#define PP_ERR_TXT_NO_USER "-ERR [AUTH] USER/PASS is disabled\r\n"
#define PP_ERR_TXT_NO_SASL "-ERR [AUTH] AUTH PLAIN is disabled\r\n"
#define PP_ERR_TXT_TLS_ACTIVE "-ERR Command not permitted when TLS active\r\n"
#define PP_ERR_TXT_NO_STLS "-ERR STLS not available\r\n"
#define PP_ERR_TXT_BAD_CHAR "-ERR Invalid character in command line\r\n"
#define PP_ERR_TXT_BAD_MSG "-ERR Invalid message number\r\n"
#define PP_ERR_TXT_BAD_LINES "-ERR Invalid number of lines\r\n"
#define PP_ERR_TXT_MECH "-ERR Unsupported authentication mechanism\r\n"
/* The syntax lines, one per command with arguments or none: "-ERR Syntax: USER name\r\n",
 * "-ERR Syntax: PASS password\r\n", "-ERR Syntax: AUTH [mechanism [initial-response]]\r\n",
 * "-ERR Syntax: LIST [msg]\r\n", "-ERR Syntax: UIDL [msg]\r\n", "-ERR Syntax: RETR msg\r\n",
 * "-ERR Syntax: DELE msg\r\n", "-ERR Syntax: TOP msg n\r\n", and "-ERR Syntax: STAT\r\n"
 * (likewise STLS, CAPA, QUIT, NOOP, RSET) for arguments where none belong. */

/* A parsed command. It points into itself: do not copy it by value. */
typedef struct pp_command {
    pp_cmd cmd;
    const char *name;     /* upper case keyword, static ("RETR") */
    size_t nargs;         /* 0..2 */
    const char *arg[2];   /* NUL-terminated, into text: USER name, PASS password,
                             AUTH mechanism and response, the numbers as sent */
    size_t arg_len[2];
    uint32_t msg;         /* LIST/UIDL with an argument, RETR, DELE, TOP; else 0 */
    uint32_t lines;       /* TOP's n */
    const char *err;      /* after -1: the reply, a whole "-ERR ...\r\n" line */
    char text[PP_LINE_MAX];
} pp_command;

/* Parses one line from the reader (no line end; len < PP_LINE_MAX). 0, or -1 with c->err;
 * c->cmd is set whenever the keyword was recognised. */
int pp_parse(const char *line, size_t len, pp_state state, const pp_offer *offer, pp_command *c);
void pp_command_wipe(pp_command *c); /* sodium_memzero: PASS and AUTH carry secrets */
const char *pp_cmd_name(pp_cmd cmd); /* "RETR"; NULL for PP_CMD_NONE */

/* ---------------------------------------------------------------------------------------
 * Response writers. Texts are sanitised: bytes below 0x20 and 0x7f become '?', so no text
 * can end a line early. Every writer appends, and returns PP_OK (0), or PP_NOMEM with the
 * buffer unchanged.
 * ------------------------------------------------------------------------------------- */
typedef enum {
    PP_RC_NONE,
    PP_RC_IN_USE,    /* [IN-USE] */
    PP_RC_AUTH,      /* [AUTH] */
    PP_RC_SYS_TEMP,  /* [SYS/TEMP] */
    PP_RC_SYS_PERM   /* [SYS/PERM] */
} pp_rc;

/* "+OK text\r\n" ("+OK\r\n" for NULL or ""). */
int pp_write_ok(pu_buf *out, const char *text);
int pp_write_okf(pu_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "-ERR [CODE] text\r\n"; the code and its space only when not PP_RC_NONE. */
int pp_write_err(pu_buf *out, pp_rc code, const char *text);
int pp_write_errf(pu_buf *out, pp_rc code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* One line of a multi-line response: dot-stuffed (a leading '.' doubled), CRLF added.
 * The line itself must hold no CR or LF (they are sanitised like texts). */
int pp_write_ml_line(pu_buf *out, const char *s, size_t len);
int pp_write_ml_end(pu_buf *out); /* ".\r\n" */

/* CAPA (RFC 2449): "+OK Capability list follows", then TOP, USER (if o->user), UIDL,
 * RESP-CODES, AUTH-RESP-CODE, PIPELINING, SASL PLAIN (if o->sasl_plain), STLS (if o->stls),
 * EXPIRE n|NEVER (if o->expire), IMPLEMENTATION text (if set), ".". In TRANSACTION the
 * AUTHORIZATION-only USER, SASL and STLS lines are left out. */
int pp_write_capa(pu_buf *out, const pp_offer *o, pp_state state);
/* The answer to AUTH without arguments: "+OK\r\n", "PLAIN\r\n" if o->sasl_plain, ".\r\n". */
int pp_write_auth_mechs(pu_buf *out, const pp_offer *o);

/* ---------------------------------------------------------------------------------------
 * Message bodies: the CRLF form RETR sends and its size.
 *
 * The conversion (the same as the sealed CRLF size N in docs/formats.md, plus the last rule):
 * every LF not preceded by CR becomes CRLF; CRLF and lone CRs stay as they are; a message
 * that does not end in LF gets a CRLF after its last byte (RETR must end the line before
 * "."). An empty message stays empty. pp_message_size() is the octet count of that form:
 * what LIST, STAT and "+OK n octets" must report (RFC 1939: dot-stuffing and the
 * terminating ".\r\n" are not counted). It equals the sealed N except for a message not
 * ending in LF, where it is N + 2.
 *
 * Streaming, for messages decrypted in chunks: pp_crlf_init(), pp_crlf_add() for each chunk
 * in any slicing, pp_crlf_end(). With PP_CRLF_STUFF the output is a multi-line response
 * body: lines starting with '.' get another '.', and pp_crlf_end() appends ".\r\n". With
 * PP_CRLF_TOP only the header lines, the blank line ending them and the first top_lines body
 * lines are sent (RFC 1939 TOP); a message without a blank line is all headers and is sent
 * whole; pp_crlf_add() returns 1 once the cut is reached (later bytes are ignored, so the
 * caller may stop decrypting). out NULL counts without writing. octets counts what was (or
 * would have been) written, dot-stuffing and terminator excluded; after pp_crlf_end()
 * without PP_CRLF_TOP it equals pp_message_size() of the whole input.
 * ------------------------------------------------------------------------------------- */
#define PP_CRLF_STUFF 1u
#define PP_CRLF_TOP 2u

typedef struct pp_crlf {
    uint64_t octets;
    /* private */
    uint64_t stuffed; /* dots added in front of lines (not in octets) */
    unsigned flags;
    uint32_t top_left;
    size_t line_len;     /* bytes of the current line so far, saturating */
    bool cr;             /* the last byte seen was CR */
    bool bol;            /* the next byte starts a line */
    bool body;           /* TOP: past the blank line */
    bool cut;            /* TOP: everything wanted was sent */
    bool any;
} pp_crlf;

void pp_crlf_init(pp_crlf *c, unsigned flags, uint32_t top_lines);
/* 0 (more wanted), 1 (TOP cut reached), or PP_NOMEM (nothing written, state unchanged). */
int pp_crlf_add(pp_crlf *c, const void *data, size_t len, pu_buf *out);
int pp_crlf_end(pp_crlf *c, pu_buf *out); /* PP_OK or PP_NOMEM (state unchanged) */

uint64_t pp_message_size(const void *msg, size_t len);
/* The CRLF form (no stuffing, no terminator), appended. */
int pp_message_crlf(const void *msg, size_t len, pu_buf *out);
/* The whole multi-line body of RETR (top < 0) or TOP n (top = n): stuffed, with ".\r\n". */
int pp_write_message(pu_buf *out, const void *msg, size_t len, int64_t top);

/* ---------------------------------------------------------------------------------------
 * Maildrop view (RFC 1939 TRANSACTION state). Built once per session from the messages in
 * order: message number n is msgs[n - 1] for the whole session (numbers never change).
 * size is the octet count as served (pp_message_size()); uidl its unique-id (1..70 bytes of
 * 0x21..0x7e, unique in the maildrop; the gateway derives it from the Message-ID); deleted
 * marks a message removed before the session (hidden like a DELE'd one, but RSET does not
 * bring it back and it is not in pp_maildrop_deleted()).
 *
 * Replies (message numbers as decimal):
 *   STAT        "+OK <count> <octets>"                      (messages not deleted)
 *   LIST        "+OK <count> message(s) (<octets> octets)", "<n> <size>" lines, "."
 *   LIST n      "+OK <n> <size>"
 *   UIDL        "+OK unique-id listing follows", "<n> <uidl>" lines, "."
 *   UIDL n      "+OK <n> <uidl>"
 *   DELE n      "+OK message <n> deleted"
 *   RSET        "+OK maildrop has <count> message(s) (<octets> octets)"
 *   NOOP        "+OK"
 *   RETR n      "+OK <size> octets"                         then the body (PP_BODY)
 *   TOP n l     "+OK top of message follows"                then the body (PP_BODY)
 *   n > the number of messages: "-ERR no such message, only <total> message(s) in maildrop"
 *   n deleted (LIST n, UIDL n, DELE, RETR, TOP): "-ERR message <n> already deleted"
 * ------------------------------------------------------------------------------------- */
#define PP_UIDL_MAX 70

typedef struct pp_msg {
    uint64_t size;
    const char *uidl;   /* copied */
    size_t uidl_len;
    bool deleted;
} pp_msg;

typedef struct pp_maildrop pp_maildrop;

bool pp_uidl_valid(const char *s, size_t len);
/* NULL with errno EINVAL (a bad or repeated UIDL, more than PP_MSG_MAX messages, sizes
 * summing past 2^64) or ENOMEM. */
pp_maildrop *pp_maildrop_new(const pp_msg *msgs, size_t n);
void pp_maildrop_free(pp_maildrop *md);
size_t pp_maildrop_total(const pp_maildrop *md);      /* numbering: deleted ones included */
size_t pp_maildrop_count(const pp_maildrop *md);      /* not deleted */
uint64_t pp_maildrop_octets(const pp_maildrop *md);   /* sum of sizes not deleted */

/* Each returns PP_OK, PP_ERR or PP_NOMEM. msg 0 means "no argument" for LIST and UIDL. */
int pp_md_stat(const pp_maildrop *md, pu_buf *out);
int pp_md_list(const pp_maildrop *md, uint32_t msg, pu_buf *out);
int pp_md_uidl(const pp_maildrop *md, uint32_t msg, pu_buf *out);
int pp_md_dele(pp_maildrop *md, uint32_t msg, pu_buf *out);
int pp_md_rset(pp_maildrop *md, pu_buf *out);
/* RETR and TOP: on success the "+OK" line is appended and PP_BODY returned. */
int pp_md_retr(const pp_maildrop *md, uint32_t msg, pu_buf *out);
int pp_md_top(const pp_maildrop *md, uint32_t msg, pu_buf *out);
/* Dispatches a parsed STAT, LIST, UIDL, DELE, RSET, NOOP, RETR or TOP; PP_PASS otherwise. */
int pp_md_command(pp_maildrop *md, const pp_command *c, pu_buf *out);

/* The message numbers DELE marked in this session, ascending: the ones QUIT removes. Fills
 * up to cap of them and returns how many there are. */
size_t pp_maildrop_deleted(const pp_maildrop *md, uint32_t *nums, size_t cap);

/* ---------------------------------------------------------------------------------------
 * SASL PLAIN (RFC 4616) for AUTH PLAIN (RFC 5034): the base64 response, from AUTH's second
 * argument or the line after "+ ". "=" is an empty response; "*" cancels. The decoded
 * response must be authzid NUL authcid NUL password with exactly two NULs, a non-empty
 * authcid and password, and an authzid that is empty or equal to authcid.
 * Returns 0 with out filled, 1 for "*" (out->err = PP_ERR_TXT_SASL_CANCELLED), or -1 with
 * out->err: PP_ERR_TXT_SASL_BASE64, PP_ERR_TXT_SASL_MALFORMED or PP_ERR_TXT_SASL_AUTHZID.
 * Decoded by util/sasl.h (shared with IMAP AUTHENTICATE). Anything decoded is wiped on
 * failure; on success wipe with pp_plain_wipe() after use.
 * ------------------------------------------------------------------------------------- */
#define PP_PLAIN_MAX 1536 /* decoded bytes: 3/4 of the longest AUTH line */

#define PP_ERR_TXT_SASL_CANCELLED "-ERR Authentication cancelled\r\n"
#define PP_ERR_TXT_SASL_BASE64 "-ERR Invalid base64 in the authentication response\r\n"
#define PP_ERR_TXT_SASL_MALFORMED "-ERR Malformed PLAIN response\r\n"
#define PP_ERR_TXT_SASL_AUTHZID "-ERR [AUTH] Acting as another user is not supported\r\n"

typedef struct pp_plain {
    const char *authcid;   /* NUL-terminated, into buf */
    size_t authcid_len;
    const char *password;  /* NUL-terminated, into buf */
    size_t password_len;
    const char *err;
    char buf[PP_PLAIN_MAX + 1];
} pp_plain;

int pp_sasl_plain(const char *b64, size_t len, pp_plain *out);
void pp_plain_wipe(pp_plain *p);

#endif
