/* gateway: what the files of the module share; not part of the public face (gateway.h).
 * Names carry a gw_ prefix because C has no module-private linkage across files. */
#ifndef POSTERN_GATEWAY_GW_H
#define POSTERN_GATEWAY_GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "imap/imap.h"
#include "util/util.h"


/* wipe.c: libevent and OpenSSL wipe every block they free. Before their first use; -1 if
 * OpenSSL had allocated already. */
int gw_wipe_library_memory(void);

/* ---- tls.c ---- */
#define GW_PEM_MAX (512u << 10) /* per file; a long chain is a few KiB */

/* The certificate chain and private key as read from their files. sodium_malloc'd (the key
 * is a secret) and wiped by gw_pem_free. */
typedef struct gw_pem {
    char *cert;
    size_t cert_len;
    char *key;
    size_t key_len;
} gw_pem;

int gw_pem_read(const char *cert_path, const char *key_path, gw_pem *out, char *err, size_t errlen);
void gw_pem_free(gw_pem *p);
/* A server SSL_CTX from the PEM: TLS 1.2+, server cipher preference, no compression, no
 * renegotiation, no session resumption. NULL with a reason (bad PEM, key does not match). */
SSL_CTX *gw_tls_ctx_new(const gw_pem *p, char *err, size_t errlen);

/* Parent -> network control frames on a SOCK_STREAM socketpair: "PEM1", cert length and key
 * length (32-bit big-endian), then the bytes. gw_pem_send blocks until all is written. */
#define GW_CTL_HEADER 12
int gw_pem_send(int fd, const gw_pem *p);
/* Parses a complete frame at buf (len bytes so far): 1 and *frame_len when complete (p points
 * into buf), 0 when more bytes are needed, -1 when the header is bad. */
int gw_pem_parse(const uint8_t *buf, size_t len, gw_pem *p, size_t *frame_len);

/* ---- reload.c: SIGHUP ---- */
/* The parent reads path again into run: the settings the network process can take while it
 * runs are taken over and named in changed ("idle_timeout 1800 -> 600"), the others that
 * differ are left and named in restart ("gateway imaps"). -1 with err (a config that does not
 * load): nothing changes. */
int gw_reload_config(pn_config *run, const char *path, pu_buf *changed, pu_buf *restart, char *err, size_t errlen);
/* Parent -> network: the reloadable settings of g as a "CFG1" control frame (blocking). */
int gw_reload_send(int fd, const pn_gateway *g);
/* The frame at buf: 1 (those settings written into g, *frame_len set), 0 for more bytes,
 * -1 when it is not one. */
int gw_reload_parse(const uint8_t *buf, size_t len, pn_gateway *g, size_t *frame_len);
/* Copies the settings a SIGHUP may change (those of the frame) from fresh into run. */
void gw_reload_apply(pn_gateway *run, const pn_gateway *fresh);

/* ---- serve.c / net.c ---- */
typedef struct gw_listener {
    int fd;
    bool implicit_tls;
    bool pop3; /* POP3 (110/995) instead of IMAP */
    char name[80]; /* "127.0.0.1:993", for messages */
} gw_listener;

/* The network process: runs the event loop until SIGTERM/SIGINT or the parent or the vault
 * goes away. metrics_fd: the [metrics] listener, or -1. pem (may be empty) is wiped. writer:
 * APPEND's signing key (copied into the store), or NULL.
 * Returns the process exit code. */
int gw_net_run(const pn_config *cfg, const gw_listener *ls, size_t n_listeners, int vault_fd, int ctl_fd,
               int metrics_fd, gw_pem *pem, const pn_writer_key *writer);

/* ---- ctlproto.c: the admin control socket's protocol (control.c serves it in the network
 * process, who.c is `postern who` and `postern kick`). One request line per connection, at
 * most GW_CTL_LINE_MAX bytes with its LF; the gateway answers and closes:
 *   WHO              -> "S ..." per session (gw_ctl_row), then "OK <count>"
 *   KICK <address>   -> "OK <count>": that user's sessions were told BYE and closed
 *   KICK #<id>       -> "OK 0" or "OK 1": the session with that id
 *   otherwise        -> "ERR <reason>"
 * Reply lines are at most GW_CTL_REPLY_MAX bytes. */
#define GW_CTL_NAME "control"   /* state_dir/control */
#define GW_CTL_LINE_MAX 512
#define GW_CTL_REPLY_MAX 512

typedef enum gw_ctl_verb { GW_CTL_WHO, GW_CTL_KICK_USER, GW_CTL_KICK_ID } gw_ctl_verb;
typedef struct gw_ctl_req {
    gw_ctl_verb verb;
    char user[PC_ADDRESS_MAX + 1]; /* KICK <address>, as sent (not canonical yet) */
    uint64_t id;                   /* KICK #<id> */
} gw_ctl_req;
/* Parses one request line (len bytes, without its LF; a CR before it is allowed). 0, or -1
 * with a reason for the ERR reply. Untrusted bytes: every length is checked. */
int gw_ctl_parse_request(const char *line, size_t len, gw_ctl_req *out, const char **why);

/* One session as WHO lists it:
 *   S <id> <imap|pop3> <tls|starttls|plain> <state> <since> <idle> <client> <user|->
 * since: connected at (Unix time); idle: seconds since its last input; state: the session
 * state's name ("selected"). No field holds a space. */
typedef struct gw_ctl_row {
    uint64_t id;
    char proto[8];
    char transport[12];
    char state[24];
    long long since;
    unsigned long long idle;
    char client[64];
    char user[PC_ADDRESS_MAX + 1]; /* "-": not logged in */
} gw_ctl_row;
/* Writes r as a line (no LF) into out: its length, or -1 if it does not fit. */
int gw_ctl_format_row(const gw_ctl_row *r, char *out, size_t cap);
/* Parses a line written by gw_ctl_format_row: 0, or -1. */
int gw_ctl_parse_row(const char *line, gw_ctl_row *out);

/* ---- imap_commands.c: capabilities and the command table (pure logic, unit-tested) ---- */
enum session_state {
    S_GREETING,       /* accepted, greeting not sent yet */
    S_NOT_AUTH,       /* RFC 3501 not authenticated */
    S_AUTHENTICATING, /* LOGIN/AUTHENTICATE in progress (SASL exchange or key lookup) */
    S_AUTH,           /* authenticated, no mailbox */
    S_SELECTED,       /* a mailbox is selected */
    S_IDLE,           /* in IDLE */
    S_LOGOUT,         /* closing: output is flushed, input ignored */
};

#define GW_CAP_STARTTLS 0x01u      /* plain connection, certificate available */
#define GW_CAP_LOGINDISABLED 0x02u /* plain connection, plaintext auth refused */
#define GW_CAP_AUTH_PLAIN 0x04u    /* not logged in and allowed to */

/* The capability flags for a connection in a state. */
unsigned gw_caps_for(enum session_state st, bool tls, bool tls_available, bool allow_plaintext_auth);
/* Appends the capability list ("IMAP4rev1 SASL-IR ...", no prefix, no CRLF). */
int gw_caps_write(pu_buf *b, unsigned caps);

typedef struct session session;
typedef enum gw_result {
    GW_DONE,    /* reply written; go on with the next command */
    GW_PENDING, /* finishes later (gw_session_done): stop reading until then */
    GW_CLOSE,   /* reply written; close once it is flushed */
} gw_result;
typedef gw_result (*gw_cmd_fn)(session *s, const pi_command *cmd);

#define GW_CMD_NOT_AUTH 0x01u  /* valid before login */
#define GW_CMD_AUTH 0x02u      /* valid after login */
#define GW_CMD_SELECTED 0x04u  /* valid with a mailbox selected */
#define GW_CMD_ANY (GW_CMD_NOT_AUTH | GW_CMD_AUTH | GW_CMD_SELECTED)
#define GW_CMD_NEEDS_TLS 0x08u /* sends a password: refused without TLS unless allowed */
#define GW_CMD_UID 0x10u       /* has a UID form */
#define GW_ARGS_ANY 0xffffu

typedef struct gw_command {
    const char *name;
    gw_cmd_fn fn;
    unsigned flags;
    unsigned min_args, max_args; /* top-level arguments, checked before the handler runs */
} gw_command;

/* The table entry for a parsed command name ("FETCH" with uid for "UID FETCH"), or NULL. */
const gw_command *gw_command_find(const char *verb, bool uid);
/* NULL if the command may run now, else the tagged reply's text ("BAD Log in first"). */
const char *gw_command_check(const gw_command *c, enum session_state st, bool tls, bool allow_plaintext_auth,
                             size_t nargs);

/* Before a command's tagged answer: when the user's state could not be written, an untagged
 * NO says so; the changes are kept in memory and written once the disk takes them
 * (imap_cmd_store.c). */
void gw_account_warn_unsaved(session *s);

/* ---- the command handlers, one file each ---- */
gw_result gw_cmd_capability(session *s, const pi_command *cmd);
gw_result gw_cmd_noop(session *s, const pi_command *cmd);
gw_result gw_cmd_logout(session *s, const pi_command *cmd);
gw_result gw_cmd_starttls(session *s, const pi_command *cmd);
gw_result gw_cmd_login(session *s, const pi_command *cmd);
gw_result gw_cmd_authenticate(session *s, const pi_command *cmd);
gw_result gw_cmd_id(session *s, const pi_command *cmd);
gw_result gw_cmd_namespace(session *s, const pi_command *cmd);
gw_result gw_cmd_enable(session *s, const pi_command *cmd);
gw_result gw_cmd_list(session *s, const pi_command *cmd);
gw_result gw_cmd_select(session *s, const pi_command *cmd);
gw_result gw_cmd_examine(session *s, const pi_command *cmd);
gw_result gw_cmd_status(session *s, const pi_command *cmd);
gw_result gw_cmd_unselect(session *s, const pi_command *cmd);
gw_result gw_cmd_idle(session *s, const pi_command *cmd);
gw_result gw_cmd_close(session *s, const pi_command *cmd);
gw_result gw_cmd_expunge(session *s, const pi_command *cmd);
gw_result gw_cmd_search(session *s, const pi_command *cmd);
gw_result gw_cmd_sort(session *s, const pi_command *cmd);
gw_result gw_cmd_thread(session *s, const pi_command *cmd);
gw_result gw_cmd_fetch(session *s, const pi_command *cmd);
gw_result gw_cmd_store(session *s, const pi_command *cmd);
gw_result gw_cmd_copy(session *s, const pi_command *cmd);
gw_result gw_cmd_move(session *s, const pi_command *cmd);
gw_result gw_cmd_append(session *s, const pi_command *cmd);
gw_result gw_cmd_subscribe(session *s, const pi_command *cmd); /* and UNSUBSCRIBE */
gw_result gw_cmd_create(session *s, const pi_command *cmd);
gw_result gw_cmd_delete(session *s, const pi_command *cmd);
gw_result gw_cmd_rename(session *s, const pi_command *cmd);

#endif
