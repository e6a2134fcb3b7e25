/* autoconfig: what a mail client needs to find the gateway by itself, written from the
 * [gateway] section: Mozilla autoconfig (Thunderbird, K-9/Thunderbird for Android, ...),
 * Outlook's POX Autodiscover response and the RFC 6186 SRV records of a DNS zone
 * (`postern autoconfig`; serving them: docs/clients.md).
 *
 * Only TLS is offered: the implicit-TLS listeners (imaps, pop3s), and the plain ones (imap,
 * pop3) as STARTTLS when a certificate is configured; a plain listener without one is never
 * advertised (logins without TLS are refused unless allow_plaintext_auth). postern has no
 * SMTP submission: an outgoing server is written only when the caller names the
 * organisation's own (Thunderbird refuses an autoconfig file without one). */
#ifndef POSTERN_AUTOCONFIG_H
#define POSTERN_AUTOCONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"

enum ac_format { AC_MOZILLA, AC_AUTODISCOVER, AC_SRV };

typedef struct ac_server {
    const char *type;  /* "imap", "pop3" or "smtp" */
    const char *host;  /* NULL: the request's host */
    char port[8];
    int implicit_tls;  /* 1: TLS from the first byte (imaps, pop3s, port 465); 0: STARTTLS */
} ac_server;

#define AC_MAX_SERVERS (4 * PN_MAX_LISTEN + 1)

typedef struct ac_request {
    const char *host;                /* the gateway's public name */
    const char *const *domains;      /* the mail domains the file is for; at least one */
    size_t n_domains;
    const char *email;               /* Autodiscover LoginName; NULL: left out */
} ac_request;

/* The gateway's incoming servers in order of preference: IMAP before POP3, implicit TLS
 * before STARTTLS, one per distinct port. Listeners on loopback addresses are left out when
 * a listener of the same kind is on another address (they serve the host itself). Returns
 * how many were written to out (at most cap). */
size_t ac_servers(const pn_gateway *g, ac_server *out, size_t cap);

/* 1 if s is a DNS host name (letters, digits, '-', '.'; labels 1..63 octets; not all
 * digits, so no IPv4 literal), as [gateway] public_name must be. A trailing dot is allowed. */
int ac_dns_name(const char *s);

/* Whether the certificate in PEM file cert (its first one, the leaf) names host. Returns 1
 * yes, 0 no, -1 when the file cannot be read or holds no certificate (why in err). */
int ac_cert_names(const char *cert, const char *host, char *err, size_t errlen);

/* Writes the configuration in format f for servers s[0..n). Returns 0, or -1 on a write error. */
int ac_write(enum ac_format f, const ac_request *r, const ac_server *s, size_t n, FILE *to);

/* postern autoconfig [--format mozilla|autodiscover|srv] --domain D... [--host NAME]
 *                    [--smtp HOST[:PORT]] [--email ADDRESS]; a sysexits code. */
int ac_cmd_autoconfig(const pn_config *cfg, int argc, char **argv);

#endif
