/* gateway: `postern serve`, the IMAP gateway (docs/design.md, "The gateway"). A root parent
 * holds the listening sockets and the TLS certificate and forks two unprivileged processes:
 * the vault (unlocked user keys, vault/) and the network process (IMAP sessions on libevent). */
#ifndef POSTERN_GATEWAY_H
#define POSTERN_GATEWAY_H

#include "config/config.h"

/* The `serve` command: runs until SIGTERM/SIGINT (or a child dies); returns the exit code. */
int gw_cmd_serve(const pn_config *cfg, int argc, char **argv);
/* `postern who` and `postern kick`: ask the running gateway over state_dir/control. */
int gw_cmd_who(const pn_config *cfg, int argc, char **argv);
int gw_cmd_kick(const pn_config *cfg, int argc, char **argv);

#endif
