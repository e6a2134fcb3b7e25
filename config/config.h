/* config: postern.conf (INI, parsed with inih). Example in deploy/postern.conf.example.
 *
 *   [postern]
 *   prefix = postern                       ; newsgroup prefix, may be empty
 *   authority_public = /etc/postern/authority.pub   ; one or more files, comma-separated
 *   authority_secret = /etc/postern/authority.key   ; only on the admin host
 *   delivery_secret = /etc/postern/delivery.secret  ; only on delivery hosts
 *   state_dir = /var/lib/postern
 *   kdf_opslimit = 2                       ; Argon2id for new records (INTERACTIVE)
 *   kdf_memlimit = 67108864
 *   min_password = 10
 *
 *   [deliver]
 *   min_copies = 1                         ; sites that must answer 240 before exit 0
 *   max_message_size = 104857600
 *
 *   [site NAME]                            ; one per news server, in order of preference
 *   host = 127.0.0.1
 *   port = 119
 *   tls = none | implicit | starttls
 *   ca_file = /etc/postern/news-ca.pem     ; optional
 *   user = postern                         ; AUTHINFO user
 *   password_file = /etc/postern/nntp.secret
 *   innconf = /etc/news/inn.conf           ; local site: groups are made with ctlinnd
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define PN_MAX_SITES 16
#define PN_MAX_AUTHORITIES 4

enum pn_tls { PN_TLS_NONE = 0, PN_TLS_IMPLICIT, PN_TLS_STARTTLS };

typedef struct pn_site {
    char name[64];
    char host[256];
    char port[16];
    enum pn_tls tls;
    char ca_file[PATH_MAX];
    char user[64];
    char password[256];         /* read from password_file; wiped by pn_config_free */
    char innconf[PATH_MAX];     /* empty: not locally administered */
} pn_site;

typedef struct pn_config {
    char path[PATH_MAX];
    char prefix[64];
    char authority_public_paths[1024]; /* as configured: comma-separated files */
    uint8_t authority_pk[PN_MAX_AUTHORITIES][32];
    size_t n_authorities;
    /* Why no authority key could be loaded (e.g. before `authority init`); commands that
     * verify key records report it. Loading the rest of the config still succeeds. */
    char authority_error[512];
    char authority_secret_path[PATH_MAX];
    char delivery_secret_path[PATH_MAX];
    char state_dir[PATH_MAX];
    uint64_t kdf_opslimit, kdf_memlimit;
    unsigned min_password;
    unsigned min_copies;
    uint64_t max_message_size;
    size_t n_sites;
    pn_site sites[PN_MAX_SITES];
} pn_config;

/* Loads and checks the file; on failure returns -1 with "FILE:LINE: reason" in err. */
int pn_config_load(const char *path, pn_config *cfg, char *err, size_t errlen);
/* Wipes the NNTP passwords. */
void pn_config_free(pn_config *cfg);
/* Config path from -c, else $POSTERN_CONFIG, else /etc/postern/postern.conf. */
const char *pn_config_default_path(void);

/* Loads the 32-byte delivery secret (hex file) into sodium_malloc'd memory; NULL + err. */
uint8_t *pn_load_delivery_secret(const pn_config *cfg, char *err, size_t errlen);
/* Loads the authority secret key file (sodium_malloc'd 64 bytes); NULL + err. */
uint8_t *pn_load_authority_secret(const pn_config *cfg, char *err, size_t errlen);

#endif
