/* deliver: the intake side. `postern deliver` encrypts one message from an MTA and posts it;
 * `postern watch-maildir` does the same for messages appearing in Maildirs. */
#ifndef POSTERN_DELIVER_H
#define POSTERN_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Encrypts the RFC 5322 message read from fd to the recipient and posts it to at least
 * cfg->min_copies sites. Returns a sysexits code (PX_OK, PX_NOUSER, PX_DATAERR,
 * PX_TEMPFAIL, ...) and a one-line explanation in msg. Success is reported only after
 * the news servers answered 240 or already held the article. */
int pd_deliver(const pn_config *cfg, const uint8_t *delivery_secret, const char *address, int fd, char *msg,
               size_t msglen);

/* Command-line entry points (argv[0] is the command name). */
int pd_cmd_deliver(const pn_config *cfg, int argc, char **argv);
int pd_cmd_watch_maildir(const pn_config *cfg, int argc, char **argv);

#endif
