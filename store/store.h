/* store: a user's mailbox as it lives on the news servers. Connects to configured sites,
 * finds and verifies key records, posts envelopes streamed from a ciphertext file, and reads
 * messages back, decrypting as the article streams in. Used by deliver, the admin commands
 * and the gateway. */
#ifndef POSTERN_STORE_H
#define POSTERN_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "article/article.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "nntp/nntp.h"
#include "util/util.h"

enum ps_status {
    PS_OK = 0,
    PS_NOUSER,     /* no key group, or no valid key record in it */
    PS_TEMP,       /* news server unreachable or refused for now */
    PS_FAIL,       /* permanent failure (see the message) */
    PS_DUP,        /* article already on the server */
    PS_NOENT,      /* no such article */
    PS_BADMSG,     /* article is not a postern envelope, or does not decrypt */
};

/* Remembers sites that did not answer within their connect_timeout in state_dir/site-health
 * too, so other processes of the host skip them as well (health.c); without it, per process. */
void ps_health_use(const char *state_dir);

/* Connects to one site with its TLS and AUTHINFO settings, within its connect_timeout. A
 * site that timed out recently is not tried (PS_TEMP at once, err says until when). */
int ps_connect(const pn_site *site, nntp_conn **out, char *err, size_t errlen);
/* Connects to the first reachable site, in configured order; *site_index says which. */
int ps_connect_any(const pn_config *cfg, nntp_conn **out, size_t *site_index, char *err, size_t errlen);

/* The valid key record with the highest serial in the address's key group, verified against
 * the configured authority keys. msgid (may be NULL, PA_MSGID_MAX bytes) gets its Message-ID.
 * PS_NOUSER when the group is missing or holds no valid record (err says which). */
int ps_fetch_keyrecord(nntp_conn *c, const pn_config *cfg, const char *address, pc_keyrecord *rec,
                       char *msgid, char *err, size_t errlen);

/* One article posted to a site, until the site shows it. */
typedef struct ps_copy {
    const char *msgid;
    int duplicate; /* the POST was answered "duplicate" (the site's history has the ID) */
    int shown;     /* set by ps_await_shown once STAT finds it */
} ps_copy;

/* Waits until the site shows every copy (STAT 223), for up to timeout_s seconds. A 240 or a
 * "duplicate" answer proves nothing on INN (nnrpd answers 240 for what it parks; 435 comes
 * while a peer's feed still carries the article), and nnrpd caches negative history lookups
 * per connection, so each round asks on a new connection, after a short growing pause.
 * Returns how many are still not shown; last (may be NULL) gets the last answer or
 * connection error. */
size_t ps_await_shown(const pn_site *site, unsigned timeout_s, ps_copy *copies, size_t n, char *last,
                      size_t lastlen);

/* Posts an article: the header block (CRLF lines, ending with an empty line), then the binary
 * prefix followed by the binary contents of fd from offset 0 to len, in base64 lines.
 * PS_OK on 240, PS_DUP when the server already has the Message-ID, PS_TEMP/PS_FAIL else. */
int ps_post_envelope(nntp_conn *c, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
                     uint64_t len, char *err, size_t errlen);

/* Reads one mail article (number or <message-id>) and decrypts it: the raw message goes to
 * sink. Stops early without error when sink returns PS_STOP_EARLY (e.g. after the headers). */
#define PS_STOP_EARLY 1000
int ps_read_message(nntp_conn *c, const char *id_or_number, const uint8_t box_pk[PC_BOX_PK_BYTES],
                    const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta, pc_sink_fn sink, void *arg,
                    char *err, size_t errlen);

/* The gateway's split read (its vault holds the private key, docs/design.md "Vault protocol"):
 * ps_fetch_envelope reads one mail article and appends its binary envelope (prefix, then
 * chunks) to out; msgid gets the article's Message-ID. PS_NOENT, PS_TEMP, PS_BADMSG (not a
 * postern message). */
int ps_fetch_envelope(nntp_conn *c, const char *id_or_number, pu_buf *out, char msgid[PA_MSGID_MAX], char *err,
                      size_t errlen);
/* Decrypts an envelope with the stream key the vault returned for its prefix (meta as the vault
 * returned it); the raw message goes to sink. Checks that the sealed tag matches msgid (a
 * re-posted copy is refused). PS_OK or PS_BADMSG. */
int ps_open_envelope(const uint8_t *envelope, size_t len, const char *msgid,
                     const uint8_t stream_key[PC_STREAM_KEY_BYTES], const pc_msg_meta *meta, pc_sink_fn sink,
                     void *arg, char *err, size_t errlen);

#endif
