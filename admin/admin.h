/* admin: the organisation authority, user provisioning, the mailbox reader (an admin and
 * debug tool that proves the formats end to end) and the repair between sites. Command-line entry points; argv[0] is the
 * command name. Each returns a sysexits code. */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include "config/config.h"

int adm_cmd_authority(const pn_config *cfg, int argc, char **argv);  /* authority init */
int adm_cmd_user(const pn_config *cfg, int argc, char **argv);       /* user add|passwd|del|list */
int adm_cmd_mailbox(const pn_config *cfg, int argc, char **argv);    /* mailbox ADDRESS [--show N] */
int adm_cmd_repair(const pn_config *cfg, int argc, char **argv);     /* repair [--dry-run] [--user A] */
int adm_cmd_status(const pn_config *cfg, int argc, char **argv);     /* status: gateway and replication */
int adm_cmd_config(const pn_config *cfg, int argc, char **argv);     /* config [-a]: the effective settings */
int adm_cmd_check(const pn_config *cfg, int argc, char **argv);      /* check: a verdict per item */
int adm_cmd_inn_setup(const pn_config *cfg, int argc, char **argv);  /* inn-setup: the system INN for postern */
/* `postern check` when the configuration does not load: the verdict for that (returns 1). */
int adm_check_unloadable(const char *path, const char *err);

#endif
