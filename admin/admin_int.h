/* admin: what user provisioning does at the news sites (sites.c), shared inside the module. */
#ifndef POSTERN_ADMIN_INT_H
#define POSTERN_ADMIN_INT_H

#include "config/config.h"
#include "crypto/crypto.h"

/* Makes (create != 0) or, after purging their articles, removes the user's two groups on every
 * site administered here (innconf set), reporting each site; returns how many failed. */
int adm_groups_everywhere(const pn_config *cfg, const char *mail_group, const char *key_group,
                          int create);
/* Asks every configured site whether both groups exist and are empty; returns how many do not
 * (or cannot be asked), each reported. */
int adm_verify_groups(const pn_config *cfg, const char *address, const char *mail_group, const char *key_group);
/* user del at sites not administered here (no innconf): every article of the two groups that
 * a secret of this host can cancel (key records: the authority secret; delivered mail: the
 * delivery secret's admin lock) is cancelled over NNTP, at each such site. Returns the number
 * of sites where something failed. */
int adm_purge_remote(const pn_config *cfg, const char *mail_group, const char *key_group);
/* The value of key in an inn.conf ("key: value"; a quoted value unquoted, '#' starts a
 * comment outside quotes; the last line setting it wins, as INN reads it): 1 found, 0 absent
 * ("" in out), -1 unreadable (errno). */
int adm_inn_conf_get(const char *innconf, const char *key, char *out, size_t cap);
/* 1 when site serves rec as the address's current key record (read back and verified), within
 * a few seconds; else 0 with the reason in err. */
int adm_record_readable(const pn_config *cfg, const pn_site *site, const pc_keyrecord *rec, char *err,
                        size_t errlen);

#endif
