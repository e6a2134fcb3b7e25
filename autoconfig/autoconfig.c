/* autoconfig: Mozilla autoconfig, Outlook Autodiscover and RFC 6186 SRV records from the
 * [gateway] listeners (autoconfig.h). */
#include "autoconfig/autoconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "util/util.h"

int ac_dns_name(const char *s)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return 0;
    size_t label = 0;
    int alpha = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(isalnum((unsigned char)c) || c == '-') || (label == 0 && c == '-'))
            return 0;
        alpha |= isalpha((unsigned char)c) != 0;
        label++;
    }
    return alpha;
}

static int loopback(const char *addr)
{
    unsigned char b[16];
    if (strchr(addr, ':'))
        return inet_pton(AF_INET6, addr, b) == 1 && memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
    return inet_pton(AF_INET, addr, b) == 1 && b[0] == 127;
}

/* One kind of listener: a server per distinct port, loopback-only ports skipped when
 * another address is configured. */
static size_t add_kind(const char *type, int implicit, const pn_listen *l, size_t nl, ac_server *out, size_t n,
                       size_t cap)
{
    int public = 0;
    for (size_t i = 0; i < nl; i++)
        public |= !loopback(l[i].addr);
    for (size_t i = 0; i < nl && n < cap; i++) {
        if (public && loopback(l[i].addr))
            continue;
        int seen = 0;
        for (size_t k = 0; k < n; k++)
            seen |= strcmp(out[k].type, type) == 0 && out[k].implicit_tls == implicit && strcmp(out[k].port, l[i].port) == 0;
        if (seen)
            continue;
        out[n] = (ac_server){.type = type, .implicit_tls = implicit};
        snprintf(out[n].port, sizeof out[n].port, "%s", l[i].port);
        n++;
    }
    return n;
}

size_t ac_servers(const pn_gateway *g, ac_server *out, size_t cap)
{
    size_t n = 0;
    int tls = g->tls_cert[0] != '\0'; /* the plain listeners offer STARTTLS only with a certificate */
    n = add_kind("imap", 1, g->imaps, g->n_imaps, out, n, cap);
    if (tls)
        n = add_kind("imap", 0, g->imap, g->n_imap, out, n, cap);
    n = add_kind("pop3", 1, g->pop3s, g->n_pop3s, out, n, cap);
    if (tls)
        n = add_kind("pop3", 0, g->pop3, g->n_pop3, out, n, cap);
    return n;
}

int ac_cert_names(const char *cert, const char *host, char *err, size_t errlen)
{
    FILE *f = fopen(cert, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", cert, strerror(errno));
        return -1;
    }
    X509 *leaf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!leaf) {
        snprintf(err, errlen, "%s: no PEM certificate", cert);
        return -1;
    }
    char name[256];
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') /* a certificate names hosts without the root's dot */
        n--;
    snprintf(name, sizeof name, "%.*s", (int)n, host);
    /* as mail clients check: subjectAltName DNS names (wildcards in the leftmost label), no CN
     * fallback when there are any */
    int rc = X509_check_host(leaf, name, 0, 0, NULL) == 1;
    X509_free(leaf);
    return rc;
}

/* Text as XML character data or an attribute value. */
static void xml_text(FILE *to, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", to); break;
        case '<': fputs("&lt;", to); break;
        case '>': fputs("&gt;", to); break;
        case '"': fputs("&quot;", to); break;
        case '\'': fputs("&apos;", to); break;
        default:
            /* control characters are not XML 1.0 characters: none can get here from a
             * checked name, but a file must stay well-formed whatever it is given */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                fputc('?', to);
            else
                fputc(*s, to);
        }
    }
}

static void xml_elem(FILE *to, const char *indent, const char *name, const char *text)
{
    fprintf(to, "%s<%s>", indent, name);
    xml_text(to, text);
    fprintf(to, "</%s>\n", name);
}

static const char no_smtp[] =
    "postern offers no SMTP submission: mail is sent through the organisation's own server";

static void mozilla(const ac_request *r, const ac_server *s, size_t n, FILE *to)
{
    int smtp = 0;
    for (size_t i = 0; i < n; i++)
        smtp |= strcmp(s[i].type, "smtp") == 0;
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<!-- Mozilla autoconfig (clientConfig 1.1) written by postern autoconfig.\n"
          "     Serve it as https://autoconfig.DOMAIN/mail/config-v1.1.xml and\n"
          "     https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml (docs/clients.md). -->\n",
          to);
    if (!smtp)
        fprintf(to, "<!-- %s; there is no outgoingServer here (the smtp option of postern autoconfig,\n"
                    "     HOST[:PORT], adds it), and Thunderbird refuses a file without one. -->\n",
                no_smtp);
    fputs("<clientConfig version=\"1.1\">\n  <emailProvider id=\"", to);
    xml_text(to, r->domains[0]);
    fputs("\">\n", to);
    for (size_t i = 0; i < r->n_domains; i++)
        xml_elem(to, "    ", "domain", r->domains[i]);
    fputs("    <displayName>", to);
    xml_text(to, r->domains[0]);
    fputs(" mail (postern)</displayName>\n", to);
    xml_elem(to, "    ", "displayShortName", r->domains[0]);
    for (int out = 0; out < 2; out++)
        for (size_t i = 0; i < n; i++) {
            if ((strcmp(s[i].type, "smtp") == 0) != out)
                continue;
            const char *el = out ? "outgoingServer" : "incomingServer";
            fprintf(to, "    <%s type=\"%s\">\n", el, s[i].type);
            xml_elem(to, "      ", "hostname", s[i].host ? s[i].host : r->host);
            xml_elem(to, "      ", "port", s[i].port);
            xml_elem(to, "      ", "socketType", s[i].implicit_tls ? "SSL" : "STARTTLS");
            /* the login is the whole address (postern user add ADDRESS); the password is sent
             * as is, inside TLS, and unlocks the user's key in the gateway */
            xml_elem(to, "      ", "username", "%EMAILADDRESS%");
            xml_elem(to, "      ", "authentication", "password-cleartext");
            fprintf(to, "    </%s>\n", el);
        }
    fputs("  </emailProvider>\n</clientConfig>\n", to);
}

static void autodiscover(const ac_request *r, const ac_server *s, size_t n, FILE *to)
{
    int smtp = 0;
    for (size_t i = 0; i < n; i++)
        smtp |= strcmp(s[i].type, "smtp") == 0;
    fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
          "<!-- Outlook Autodiscover (POX) response written by postern autoconfig: the answer to a POST\n"
          "     to https://autodiscover.DOMAIN/autodiscover/autodiscover.xml (docs/clients.md). -->\n",
          to);
    if (!smtp)
        fprintf(to, "<!-- %s (the smtp option of postern autoconfig adds it). -->\n", no_smtp);
    if (!r->email)
        fputs("<!-- No LoginName (the email option of postern autoconfig writes one): Outlook then logs in\n"
              "     with the address the user typed, which is what postern expects. -->\n",
              to);
    fputs("<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n"
          "  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n"
          "    <Account>\n"
          "      <AccountType>email</AccountType>\n"
          "      <Action>settings</Action>\n",
          to);
    for (size_t i = 0; i < n; i++) {
        char type[8];
        size_t k = 0;
        for (; s[i].type[k] && k < sizeof type - 1; k++)
            type[k] = (char)toupper((unsigned char)s[i].type[k]);
        type[k] = '\0';
        fputs("      <Protocol>\n", to);
        xml_elem(to, "        ", "Type", type);
        xml_elem(to, "        ", "Server", s[i].host ? s[i].host : r->host);
        xml_elem(to, "        ", "Port", s[i].port);
        if (r->email)
            xml_elem(to, "        ", "LoginName", r->email);
        fputs("        <DomainRequired>off</DomainRequired>\n"
              "        <SPA>off</SPA>\n"
              "        <SSL>on</SSL>\n",
              to);
        xml_elem(to, "        ", "Encryption", s[i].implicit_tls ? "SSL" : "TLS");
        fputs("        <AuthRequired>on</AuthRequired>\n", to);
        if (strcmp(s[i].type, "smtp") == 0)
            fputs("        <UsePOPAuth>off</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n", to);
        fputs("      </Protocol>\n", to);
    }
    fputs("    </Account>\n  </Response>\n</Autodiscover>\n", to);
}

/* RFC 6186 SRV records: priorities order IMAP before POP3 and implicit TLS before STARTTLS
 * (RFC 8314 5.1), across the services, as 6186 section 3.4 lets a client compare them. A
 * service the gateway does not offer gets the "not available" record (target "."), so a
 * client does not go on to guess. */
static void srv(const ac_request *r, const ac_server *s, size_t n, FILE *to)
{
    static const struct {
        const char *service, *type;
        int implicit;
        unsigned priority;
    } svc[] = {
        {"_imaps", "imap", 1, 0}, {"_imap", "imap", 0, 10}, {"_pop3s", "pop3", 1, 20}, {"_pop3", "pop3", 0, 30},
        {"_submissions", "smtp", 1, 0}, {"_submission", "smtp", 0, 10},
    };
    int smtp = 0;
    for (size_t i = 0; i < n; i++)
        smtp |= strcmp(s[i].type, "smtp") == 0;
    fputs("; RFC 6186 SRV records written by postern autoconfig, for the zone of each domain\n", to);
    if (!smtp)
        fprintf(to, "; %s:\n; no _submission record here (postern autoconfig --smtp HOST[:PORT] adds it)\n",
                no_smtp);
    for (size_t d = 0; d < r->n_domains; d++) {
        const char *dom = r->domains[d];
        const char *dot = dom[strlen(dom) - 1] == '.' ? "" : ".";
        for (size_t k = 0; k < sizeof svc / sizeof svc[0]; k++) {
            int any = 0;
            for (size_t i = 0; i < n; i++) {
                if (strcmp(s[i].type, svc[k].type) != 0 || s[i].implicit_tls != svc[k].implicit)
                    continue;
                const char *host = s[i].host ? s[i].host : r->host;
                fprintf(to, "%s._tcp.%s%s 3600 IN SRV %u 1 %s %s%s\n", svc[k].service, dom, dot,
                        svc[k].priority, s[i].port, host, host[strlen(host) - 1] == '.' ? "" : ".");
                any = 1;
            }
            if (!any && (strcmp(svc[k].type, "smtp") != 0 || smtp))
                fprintf(to, "%s._tcp.%s%s 3600 IN SRV 0 0 0 .\n", svc[k].service, dom, dot);
        }
    }
}

int ac_write(enum ac_format f, const ac_request *r, const ac_server *s, size_t n, FILE *to)
{
    if (f == AC_MOZILLA)
        mozilla(r, s, n, to);
    else if (f == AC_AUTODISCOVER)
        autodiscover(r, s, n, to);
    else
        srv(r, s, n, to);
    return fflush(to) == 0 && !ferror(to) ? 0 : -1;
}

/* ---- the command ---- */

static const char usage[] =
    "usage: postern autoconfig [--format mozilla|autodiscover|srv] --domain DOMAIN... [--host NAME]\n"
    "                          [--smtp HOST[:PORT]] [--email ADDRESS]\n"
    "Writes to standard output what mail clients need to find the gateway by themselves, from\n"
    "the [gateway] listeners: the IMAP and POP3 servers over TLS (imaps, pop3s, and imap, pop3\n"
    "as STARTTLS when tls_cert is set), in order of preference. Formats:\n"
    "  mozilla       config-v1.1.xml (Thunderbird, K-9/Thunderbird for Android; the default)\n"
    "  autodiscover  Outlook's Autodiscover (POX) response, autodiscover.xml\n"
    "  srv           RFC 6186 SRV records (_imaps._tcp, _imap._tcp, _pop3s._tcp, _pop3._tcp)\n"
    "--domain   a mail domain the file is for (repeat for more); required for mozilla and srv:\n"
    "           postern maps any address to a newsgroup and keeps no list of domains\n"
    "--host     the name clients connect to, one the certificate names; default [gateway]\n"
    "           public_name (the listen addresses are no name a client can use)\n"
    "--smtp     the organisation's submission server (465: implicit TLS, else STARTTLS; default\n"
    "           port 587): postern has none, and Thunderbird refuses a file without one\n"
    "--email    autodiscover: the LoginName to write (one user's address)\n"
    "Where to serve the files and how to set up each client: docs/clients.md.";

static int usage_error(const char *what, const char *arg)
{
    pu_err("autoconfig: %s%s%s", what, arg ? " " : "", arg ? arg : "");
    fprintf(stderr, "%s\n", usage);
    return PX_USAGE;
}

int ac_cmd_autoconfig(const pn_config *cfg, int argc, char **argv)
{
    enum ac_format f = AC_MOZILLA;
    const char *domains[32];
    size_t n_domains = 0;
    const char *host = NULL, *email = NULL;
    char smtp_host[256] = "", smtp_port[8] = "587";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("%s\n", usage);
            return PX_OK;
        }
        int has = i + 1 < argc;
        if (strcmp(a, "--format") == 0 && has) {
            const char *v = argv[++i];
            if (strcmp(v, "mozilla") == 0)
                f = AC_MOZILLA;
            else if (strcmp(v, "autodiscover") == 0)
                f = AC_AUTODISCOVER;
            else if (strcmp(v, "srv") == 0)
                f = AC_SRV;
            else
                return usage_error("--format is mozilla, autodiscover or srv, not", v);
        } else if (strcmp(a, "--domain") == 0 && has) {
            const char *v = argv[++i];
            if (!ac_dns_name(v))
                return usage_error("--domain takes a DNS domain (example.org), not", v);
            if (n_domains == sizeof domains / sizeof domains[0])
                return usage_error("too many --domain", NULL);
            domains[n_domains++] = v;
        } else if (strcmp(a, "--host") == 0 && has) {
            host = argv[++i];
            if (!ac_dns_name(host))
                return usage_error("--host takes the DNS name clients connect to (mail.example.org), not", host);
        } else if (strcmp(a, "--smtp") == 0 && has) {
            const char *v = argv[++i];
            const char *colon = strchr(v, ':');
            size_t len = colon ? (size_t)(colon - v) : strlen(v);
            char *end = NULL;
            unsigned long p = colon ? strtoul(colon + 1, &end, 10) : 587;
            if (len == 0 || len >= sizeof smtp_host || (colon && (!colon[1] || *end || p == 0 || p > 65535)))
                return usage_error("--smtp takes HOST or HOST:PORT, not", v);
            memcpy(smtp_host, v, len);
            smtp_host[len] = '\0';
            if (!ac_dns_name(smtp_host))
                return usage_error("--smtp takes a DNS host name, not", v);
            snprintf(smtp_port, sizeof smtp_port, "%lu", p);
        } else if (strcmp(a, "--email") == 0 && has) {
            email = argv[++i];
            const char *at = strrchr(email, '@');
            if (!at || at == email || !ac_dns_name(at + 1))
                return usage_error("--email takes a mail address (user@example.org), not", email);
        } else {
            return usage_error("unexpected argument", a);
        }
    }
    if (n_domains == 0 && f != AC_AUTODISCOVER)
        return usage_error("give the mail domain(s) with --domain DOMAIN: postern maps any address to a "
                           "newsgroup and keeps no list of domains to take them from",
                           NULL);
    if (!host) {
        if (!cfg->gateway.public_name[0]) {
            pu_err("autoconfig: no host name for the clients: set [gateway] public_name in %s, or give "
                   "--host NAME (the listen addresses are numeric, 0.0.0.0 is no name a client can use)",
                   cfg->path);
            return PX_CONFIG;
        }
        host = cfg->gateway.public_name;
    }
    ac_server s[AC_MAX_SERVERS + 1];
    size_t n = ac_servers(&cfg->gateway, s, AC_MAX_SERVERS);
    if (n == 0) {
        pu_err("autoconfig: %s: [gateway] offers no TLS listener to advertise (imaps, pop3s, or imap, pop3 "
               "with tls_cert)",
               cfg->path);
        return PX_CONFIG;
    }
    /* The files are useless if clients refuse the certificate for that name: say so (but
     * write them: the certificate may be renewed before they are published, and the
     * admin host need not hold it). */
    if (cfg->gateway.tls_cert[0]) {
        char why[PATH_MAX + 64];
        int named = ac_cert_names(cfg->gateway.tls_cert, host, why, sizeof why);
        if (named == 0)
            pu_err("autoconfig: warning: %s is not a name in the certificate %s: clients checking the host "
                   "name will refuse it",
                   host, cfg->gateway.tls_cert);
        else if (named < 0)
            pu_info("autoconfig: not checked against the certificate (%s)", why);
    }
    if (smtp_host[0]) {
        s[n] = (ac_server){.type = "smtp", .host = smtp_host, .implicit_tls = strcmp(smtp_port, "465") == 0};
        snprintf(s[n].port, sizeof s[n].port, "%s", smtp_port);
        n++;
    }
    ac_request r = {.host = host, .domains = domains, .n_domains = n_domains, .email = email};
    if (ac_write(f, &r, s, n, stdout) != 0) {
        pu_err("autoconfig: writing the output failed");
        return PX_IOERR;
    }
    return PX_OK;
}
