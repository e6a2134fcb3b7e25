/* deliver: the intake side. `postern deliver` encrypts one message from an MTA and posts it;
 * `postern watch-maildir` does the same for messages appearing in Maildirs; `postern lmtp`
 * serves LMTP and keeps NNTP connections and key records warm between messages. */
#ifndef POSTERN_DELIVER_H
#define POSTERN_DELIVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

/* pd_deliver flags: drop a leading mbox "From " envelope line (what an MTA's pipe may add). */
#define PD_MBOX_FROM 1u

/* Encrypts the message read from fd to the recipient and posts it to at least
 * cfg->min_copies sites. Any bytes are a message (no header, bare CR/LF, NUL, long lines are
 * stored as they are); only one over max_message_size is refused (PX_UNAVAILABLE). Returns
 * a sysexits code (PX_OK, PX_NOUSER, PX_UNAVAILABLE, PX_TEMPFAIL, ...) and a one-line
 * explanation in msg. Success is reported only after the news servers answered 240 or
 * already held the article. A one-shot pd_ctx. */
int pd_deliver(const pn_config *cfg, const pn_delivery_keys *keys, const char *address, int fd, unsigned flags,
               char *msg, size_t msglen);

/* A reusable delivery context: one NNTP connection per site, opened on first use and kept
 * (a connection found dead is replaced once, transparently), and verified key records cached
 * per address for cfg->keyrecord_cache seconds. One ctx is used by one thread at a time;
 * cfg and keys must outlive it (NULL keys: lookups only). */
typedef struct pd_ctx pd_ctx;
pd_ctx *pd_ctx_new(const pn_config *cfg, const pn_delivery_keys *keys);
void pd_ctx_free(pd_ctx *ctx); /* closes the connections, wipes the cache */
/* Writes state_dir/delivery.prom (Prometheus text: deliveries stored and deferred, the
 * copies each site confirmed, the confirmation time histogram) for this process's
 * deliveries so far, when something changed since *written_gen; the gateway's GET /metrics
 * includes it. 0, or -1 with errno. */
int pd_stats_write(const pn_config *cfg, uint64_t *written_gen);

/* Message source: fills buf with up to cap bytes; returns the count, 0 at the end, or -1
 * with errno set. */
typedef ssize_t (*pd_read_fn)(void *arg, uint8_t *buf, size_t cap);

/* A recipient whose key record was found and verified: canonical address, mail group, key. */
typedef struct pd_recipient pd_recipient;
/* Looks the address up (cache first). PX_OK with *out set, PX_NOUSER, or PX_TEMPFAIL. */
int pd_ctx_recipient(pd_ctx *ctx, const char *address, pd_recipient **out, char *msg, size_t msglen);
const char *pd_recipient_address(const pd_recipient *r); /* canonical */
void pd_recipient_free(pd_recipient *r);

/* Seals the message from read() to r, exactly as read, and posts it; sysexits code as pd_deliver. */
int pd_ctx_deliver_to(pd_ctx *ctx, const pd_recipient *r, pd_read_fn read, void *arg, char *msg, size_t msglen);
/* pd_ctx_recipient + pd_ctx_deliver_to reading fd. */
int pd_ctx_deliver(pd_ctx *ctx, const char *address, int fd, unsigned flags, char *msg, size_t msglen);

/* Command-line entry points (argv[0] is the command name). */
int pd_cmd_deliver(const pn_config *cfg, int argc, char **argv);
int pd_cmd_watch_maildir(const pn_config *cfg, int argc, char **argv);
int pd_cmd_lmtp(const pn_config *cfg, int argc, char **argv);
int pd_cmd_verify_recipient(const pn_config *cfg, int argc, char **argv);

#endif
