/* config: postern.conf (INI, parsed with inih). Example in deploy/postern.conf.example.
 *
 *   [postern]
 *   prefix = postern                       ; newsgroup prefix, may be empty
 *   authority_public = /etc/postern/authority.pub   ; one or more files, comma-separated
 *   authority_secret = /etc/postern/authority.key   ; only on the admin host
 *   delivery_secret = /etc/postern/delivery.secret  ; only on delivery hosts
 *   writer_key = /etc/postern/writer.key   ; delivery hosts and gateways: signs the mail they post
 *   revoked_writers = 0123456789abcdef, ...  ; writer ids whose mail no gateway shows
 *   state_dir = /var/lib/postern
 *   kdf_opslimit = 2                       ; Argon2id for new records (INTERACTIVE)
 *   kdf_memlimit = 67108864
 *   min_password = 10
 *
 *   [deliver]
 *   min_copies = 1                         ; sites that must show the article before exit 0
 *   confirm_timeout = 5                    ; seconds a site that took the article may take to show it
 *   max_message_size = 104857600           ; also IMAP APPEND's limit (APPENDLIMIT)
 *   keyrecord_cache = 60                   ; seconds `postern lmtp` trusts a fetched key record
 *
 *   [site NAME]                            ; one per news server, in order of preference
 *   host = 127.0.0.1
 *   port = 119
 *   tls = none | implicit | starttls
 *   ca_file = /etc/postern/news-ca.pem     ; optional
 *   user = postern                         ; AUTHINFO user
 *   password_file = /etc/postern/nntp.secret
 *   innconf = /etc/news/inn.conf           ; local site: groups are made with ctlinnd
 *   connect_timeout = 5                    ; seconds for the TCP connection; a site whose
 *                                          ; attempt failed after that long is skipped a while
 *
 *   [repair]                               ; the repair pass `postern serve` runs (docs/design.md)
 *   interval = 30                          ; seconds between passes; 0: off. A gap is closed
 *                                          ; within about two intervals
 *
 *   [gateway]                              ; postern serve (IMAP); every key optional
 *   imap = 127.0.0.1:143, [::1]:143        ; plain + STARTTLS listeners; repeatable; default none
 *   imaps = 0.0.0.0:993                    ; implicit TLS listeners; repeatable; default none
 *   pop3 = 127.0.0.1:110                   ; POP3 plain + STLS listeners; repeatable; default none
 *   pop3s = 0.0.0.0:995                    ; POP3 implicit TLS listeners; repeatable; default none
 *   pop3_timeout = 600                     ; seconds without a POP3 command (>= 600)
 *   retention_days = 30                    ; announced in POP3 CAPA EXPIRE (INN's expire.ctl)
 *   article_cache = 1024                   ; MiB of ciphertext articles cached on disk; 0: off
 *   state_save_interval = 60               ; seconds: changed user states are written this often
 *   site_id = 1                            ; this gateway in the users' replicated state (1..65535)
 *   uid_claim_delay = 10                   ; seconds gateway k waits (times k - 1) to number new mail
 *   modseq_margin = 86400                  ; seconds taken off a client's CHANGEDSINCE / MODSEQ (late changes)
 *   tls_cert = /etc/postern/tls.pem        ; PEM chain, leaf first (needed for imaps/STARTTLS)
 *   public_name = mail.example.org         ; the name clients connect to (postern autoconfig)
 *   tls_key = /etc/postern/tls.key         ; PEM private key
 *   allow_plaintext_auth = no              ; yes: LOGIN/AUTHENTICATE without TLS
 *   user = postern                         ; the network process runs as this user
 *   vault_user = postern                   ; the key-holder process (may be the same)
 *   kdf_pool_memory = 268435456            ; bytes Argon2id may use at once in the vault
 *   login_grace = 30                       ; seconds an unlocked key outlives its last session
 *   keyrecord_cache = 60                   ; seconds a login trusts a fetched key record; 0: off
 *   preauth_timeout = 60                   ; seconds without a command before login
 *   preauth_deadline = 180                 ; seconds from connect to login (no command extends it)
 *   idle_timeout = 1800                    ; seconds without a command after login (>= 1800)
 *   max_connections = 10000
 *   max_connections_per_ip = 100           ; per client address (IPv6: per /64); 0: no limit
 *   max_line = 65536                       ; bytes in one IMAP command line
 *
 *   [metrics]                              ; postern serve's HTTP endpoint; off by default
 *   listen = 127.0.0.1:9187                ; GET /metrics (Prometheus text), GET /health
 * The gateway checks the files and users when it starts, not here: other commands load the
 * same file on hosts that have no certificate. */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PN_MAX_SITES 16
#define PN_MAX_AUTHORITIES 4
#define PN_MAX_REVOKED_WRITERS 64
#define PN_MAX_LISTEN 16

enum pn_tls { PN_TLS_NONE = 0, PN_TLS_IMPLICIT, PN_TLS_STARTTLS };

typedef struct pn_site {
    char name[64];
    char host[256];
    char port[16];
    enum pn_tls tls;
    char ca_file[PATH_MAX];
    char user[64];
    char password[256];         /* read from password_file; wiped by pn_config_free */
    char password_file[PATH_MAX]; /* where it came from, as configured ("": none) */
    char innconf[PATH_MAX];     /* empty: not locally administered */
    unsigned connect_timeout;   /* seconds for the TCP connection (greeting etc.: 30 s each) */
} pn_site;

/* A numeric listening address: addr is an IPv4 or IPv6 literal (brackets removed). */
typedef struct pn_listen {
    char addr[64];
    char port[8];
} pn_listen;

typedef struct pn_gateway {
    pn_listen imap[PN_MAX_LISTEN];
    size_t n_imap;
    pn_listen imaps[PN_MAX_LISTEN];
    size_t n_imaps;
    pn_listen pop3[PN_MAX_LISTEN];  /* plain + STLS */
    size_t n_pop3;
    pn_listen pop3s[PN_MAX_LISTEN]; /* implicit TLS */
    size_t n_pop3s;
    unsigned pop3_timeout;          /* seconds without a command (RFC 1939: >= 600) */
    unsigned retention_days;        /* CAPA EXPIRE; INN expires mail after this many days (mstate forgets at 2x) */
    unsigned article_cache_mb;      /* ciphertext articles kept in state_dir/articles; 0: none */
    unsigned plaintext_budget_mb;   /* decrypted messages in memory, all sessions together; 0: no limit */
    unsigned state_save_interval;   /* seconds between saves of changed user states */
    /* This gateway in its users' replicated state (1..65535, unique among the gateways that
     * serve the same users); the lowest gives UIDs to new mail at once, gateway k waits
     * (k - 1) * uid_claim_delay seconds for another's claim first (docs/design.md). */
    unsigned site_id;
    unsigned uid_claim_delay;       /* seconds */
    /* CONDSTORE: a MODSEQ is its writer's clock, so a change can reach this site after a client
     * saw a higher HIGHESTMODSEQ; every CHANGEDSINCE and SEARCH MODSEQ value is taken this many
     * seconds earlier (docs/design.md, "CONDSTORE"). */
    unsigned modseq_margin;         /* seconds */
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    /* The host name clients use to reach the gateway (a name in tls_cert), for the client
     * configurations `postern autoconfig` writes; "": not set (listen addresses are numeric
     * and often 0.0.0.0, no name a client can use). */
    char public_name[256];
    int allow_plaintext_auth;
    char user[64];
    char vault_user[64];
    uint64_t kdf_pool_memory;
    unsigned login_grace, preauth_timeout, idle_timeout; /* seconds */
    unsigned keyrecord_cache; /* seconds a verified key record serves logins (0: fetch every time) */
    unsigned preauth_deadline;        /* seconds from connect to login, whatever is sent */
    unsigned max_connections;
    unsigned max_connections_per_ip;  /* per address (IPv6: per /64); 0: no limit */
    size_t max_line;
} pn_gateway;

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
    char writer_key_path[PATH_MAX];
    char revoked_writers_text[PN_MAX_REVOKED_WRITERS * 18]; /* as configured */
    char revoked_writers[PN_MAX_REVOKED_WRITERS][17];      /* writer ids, 16 hex digits */
    size_t n_revoked_writers;
    char state_dir[PATH_MAX];
    uint64_t kdf_opslimit, kdf_memlimit;
    unsigned min_password;
    unsigned min_copies;
    uint64_t max_message_size;
    unsigned keyrecord_cache;   /* seconds; 0: look the key record up for every message */
    unsigned confirm_timeout;   /* seconds: a copy counts once STAT finds it, within this */
    unsigned repair_interval;   /* seconds between the gateway's repair passes; 0: none */
    size_t n_sites;
    pn_site sites[PN_MAX_SITES];
    pn_gateway gateway;
    /* [metrics] listen: where `postern serve` answers GET /metrics and GET /health; off
     * (n_metrics 0) unless set */
    pn_listen metrics[1];
    size_t n_metrics;
} pn_config;

/* Loads and checks the file; on failure returns -1 with "FILE:LINE: reason" in err. */
int pn_config_load(const char *path, pn_config *cfg, char *err, size_t errlen);
/* The built-in defaults, as if path were an empty file (for help texts, which need no file). */
void pn_config_defaults(const char *path, pn_config *cfg);
/* Wipes the NNTP passwords. */
void pn_config_free(pn_config *cfg);
/* Writes the configuration as postern.conf text that loads back to the same settings: every
 * setting that differs from its default (all != 0: every setting), sections in the usual
 * order, [site] sections always. Never a secret, only the files that hold them. */
void pn_config_write(const pn_config *cfg, int all, FILE *to);
/* Config path from -c, else $POSTERN_CONFIG, else /etc/postern/postern.conf. */
const char *pn_config_default_path(void);

/* Loads the 32-byte delivery secret (hex file) into sodium_malloc'd memory; NULL + err. */
uint8_t *pn_load_delivery_secret(const pn_config *cfg, char *err, size_t errlen);
/* Loads the writer key file (certificate and signing key, docs/formats.md section 4a) and
 * checks that an authority of the config certified it and that it is valid now; a
 * certificate that ends within 14 days is named in *warn (else warn is ""). -1 + err. */
int pn_load_writer(const pn_config *cfg, uint8_t cert[160], uint8_t sk[64], char *warn, size_t warnlen, char *err,
                   size_t errlen);

/* A writer key in one sodium_malloc'd block (sodium_free): pn_load_writer into it. */
typedef struct pn_writer_key {
    uint8_t cert[160];
    uint8_t sk[64];
} pn_writer_key;
pn_writer_key *pn_load_writer_key(const pn_config *cfg, char *warn, size_t warnlen, char *err, size_t errlen);

/* What a delivery host seals and signs with, in one sodium_malloc'd block (sodium_free). */
typedef struct pn_delivery_keys {
    uint8_t secret[32];
    uint8_t writer_cert[160];
    uint8_t writer_sk[64];
} pn_delivery_keys;
pn_delivery_keys *pn_load_delivery_keys(const pn_config *cfg, char *err, size_t errlen);

/* Loads the authority secret key file (sodium_malloc'd 64 bytes); NULL + err. */
uint8_t *pn_load_authority_secret(const pn_config *cfg, char *err, size_t errlen);

#endif
