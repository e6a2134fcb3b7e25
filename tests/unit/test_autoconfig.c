/* autoconfig: which listeners become client-visible servers, and the three formats written
 * from them (names escaped, comments that stay comments, SRV lines for a zone file). The
 * whole command, parsed with a real XML parser, is tests/integration/test_autoconfig.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "autoconfig/autoconfig.h"

static void listen_on(pn_listen *l, size_t *n, const char *addr, const char *port)
{
    snprintf(l[*n].addr, sizeof l[*n].addr, "%s", addr);
    snprintf(l[*n].port, sizeof l[*n].port, "%s", port);
    (*n)++;
}

/* A gateway as deploy/postern.conf.example has it, plus STARTTLS and loopback extras. */
static void gateway(pn_gateway *g, int cert)
{
    memset(g, 0, sizeof *g);
    listen_on(g->imaps, &g->n_imaps, "0.0.0.0", "993");
    listen_on(g->imaps, &g->n_imaps, "::", "993");
    listen_on(g->imaps, &g->n_imaps, "127.0.0.1", "10993"); /* the host's own: not advertised */
    listen_on(g->imap, &g->n_imap, "192.0.2.1", "143");
    listen_on(g->pop3s, &g->n_pop3s, "127.0.0.1", "995"); /* loopback only: that is the server */
    listen_on(g->pop3, &g->n_pop3, "192.0.2.1", "110");
    if (cert)
        strcpy(g->tls_cert, "/etc/postern/tls.pem");
}

static char *render(enum ac_format f, const ac_request *r, const ac_server *s, size_t n)
{
    /* the memstream's pointer lives in the heap, not on this frame: GCC 12's
     * -Wdangling-pointer took the returned text for a pointer to a local (Release builds) */
    char **buf = calloc(1, sizeof *buf);
    size_t len = 0;
    assert_non_null(buf);
    FILE *to = open_memstream(buf, &len);
    assert_non_null(to);
    assert_int_equal(ac_write(f, r, s, n, to), 0);
    fclose(to);
    char *text = *buf;
    free(buf);
    return text;
}

/* Every "<!--" has its "-->", and no "--" in between (XML 1.0, 2.5). */
static void assert_comments_well_formed(const char *xml)
{
    for (const char *p = strstr(xml, "<!--"); p; p = strstr(p, "<!--")) {
        const char *end = strstr(p + 4, "-->");
        assert_non_null(end);
        const char *dash = strstr(p + 4, "--");
        assert_true(dash == end);
        p = end + 3;
    }
}

static void test_dns_names(void **state)
{
    (void)state;
    static const char *const good[] = {"mail.example.org", "mail.example.org.", "localhost", "a-b.c9", "x1.example"};
    static const char *const bad[] = {"", ".", "0.0.0.0", "127.0.0.1", "::1", "a..b", "-a.b", "a-.b", "a b",
                                      "<a>", "a&b", "a.b/", "mail.example.org..", "x\"y"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(ac_dns_name(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(ac_dns_name(bad[i]));
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".org");
    assert_false(ac_dns_name(label)); /* a label is at most 63 octets */
    strcpy(label + 63, ".org");
    assert_true(ac_dns_name(label));
}

static void test_servers(void **state)
{
    (void)state;
    pn_gateway g;
    ac_server s[AC_MAX_SERVERS];
    gateway(&g, 1);
    size_t n = ac_servers(&g, s, AC_MAX_SERVERS);
    /* IMAP before POP3, implicit TLS first; one per port; loopback dropped beside a public
     * address, kept when it is all there is */
    assert_int_equal(n, 4);
    assert_string_equal(s[0].type, "imap");
    assert_string_equal(s[0].port, "993");
    assert_int_equal(s[0].implicit_tls, 1);
    assert_string_equal(s[1].type, "imap");
    assert_string_equal(s[1].port, "143");
    assert_int_equal(s[1].implicit_tls, 0);
    assert_string_equal(s[2].type, "pop3");
    assert_string_equal(s[2].port, "995");
    assert_int_equal(s[2].implicit_tls, 1);
    assert_string_equal(s[3].type, "pop3");
    assert_string_equal(s[3].port, "110");
    assert_int_equal(s[3].implicit_tls, 0);
    for (size_t i = 0; i < n; i++)
        assert_null(s[i].host);
    /* no certificate: the plain listeners have no STARTTLS, and are not advertised */
    gateway(&g, 0);
    g.n_imaps = g.n_pop3s = 0;
    assert_int_equal(ac_servers(&g, s, AC_MAX_SERVERS), 0);
    gateway(&g, 1);
    assert_int_equal(ac_servers(&g, s, 2), 2); /* cap respected */
}

static void test_mozilla(void **state)
{
    (void)state;
    pn_gateway g;
    ac_server s[AC_MAX_SERVERS + 1];
    gateway(&g, 1);
    size_t n = ac_servers(&g, s, AC_MAX_SERVERS);
    const char *domains[] = {"example.org", "example.net"};
    ac_request r = {.host = "mail.example.org", .domains = domains, .n_domains = 2};
    char *xml = render(AC_MOZILLA, &r, s, n);
    assert_comments_well_formed(xml);
    assert_non_null(strstr(xml, "<clientConfig version=\"1.1\">"));
    assert_non_null(strstr(xml, "<emailProvider id=\"example.org\">"));
    assert_non_null(strstr(xml, "<domain>example.org</domain>\n    <domain>example.net</domain>"));
    assert_non_null(strstr(xml, "<incomingServer type=\"imap\">\n      <hostname>mail.example.org</hostname>\n"
                                "      <port>993</port>\n      <socketType>SSL</socketType>\n"
                                "      <username>%EMAILADDRESS%</username>\n"
                                "      <authentication>password-cleartext</authentication>"));
    assert_non_null(strstr(xml, "<port>143</port>\n      <socketType>STARTTLS</socketType>"));
    assert_non_null(strstr(xml, "<incomingServer type=\"pop3\">"));
    assert_null(strstr(xml, "<outgoingServer"));
    assert_non_null(strstr(xml, "no SMTP submission"));
    /* the order of the file is the order of preference */
    assert_true(strstr(xml, "<port>993</port>") < strstr(xml, "<port>143</port>"));
    assert_true(strstr(xml, "<port>143</port>") < strstr(xml, "<port>995</port>"));
    free(xml);

    s[n] = (ac_server){.type = "smtp", .host = "smtp.example.org", .port = "465", .implicit_tls = 1};
    xml = render(AC_MOZILLA, &r, s, n + 1);
    assert_comments_well_formed(xml);
    assert_non_null(strstr(xml, "<outgoingServer type=\"smtp\">\n      <hostname>smtp.example.org</hostname>\n"
                                "      <port>465</port>\n      <socketType>SSL</socketType>"));
    assert_true(strstr(xml, "<outgoingServer") > strstr(xml, "<port>110</port>")); /* after every incoming */
    assert_null(strstr(xml, "no SMTP submission"));
    free(xml);
}

static void test_autodiscover(void **state)
{
    (void)state;
    pn_gateway g;
    ac_server s[AC_MAX_SERVERS];
    gateway(&g, 1);
    size_t n = ac_servers(&g, s, AC_MAX_SERVERS);
    /* a local part may hold what XML must escape (RFC 5322 atext has & ' and more) */
    ac_request r = {.host = "mail.example.org", .email = "o'brien&co<x>\"@example.org"};
    char *xml = render(AC_AUTODISCOVER, &r, s, n);
    assert_comments_well_formed(xml);
    assert_non_null(strstr(xml, "responseschema/2006\">"));
    assert_non_null(strstr(xml, "<Action>settings</Action>"));
    assert_non_null(strstr(xml, "<Type>IMAP</Type>\n        <Server>mail.example.org</Server>\n"
                                "        <Port>993</Port>\n"
                                "        <LoginName>o&apos;brien&amp;co&lt;x&gt;&quot;@example.org</LoginName>"));
    assert_non_null(strstr(xml, "<Port>143</Port>"));
    assert_non_null(strstr(xml, "<Encryption>TLS</Encryption>"));
    assert_non_null(strstr(xml, "<Type>POP3</Type>"));
    assert_null(strstr(xml, "o'brien"));
    assert_null(strstr(xml, "<Type>SMTP</Type>"));
    free(xml);
    r.email = NULL;
    xml = render(AC_AUTODISCOVER, &r, s, n);
    assert_null(strstr(xml, "<LoginName>"));
    assert_comments_well_formed(xml);
    free(xml);
}

static void test_srv(void **state)
{
    (void)state;
    pn_gateway g;
    ac_server s[AC_MAX_SERVERS + 1];
    gateway(&g, 1);
    g.n_pop3 = 0;
    size_t n = ac_servers(&g, s, AC_MAX_SERVERS);
    const char *domains[] = {"example.org", "example.net."};
    ac_request r = {.host = "mail.example.org", .domains = domains, .n_domains = 2};
    char *zone = render(AC_SRV, &r, s, n);
    assert_non_null(strstr(zone, "\n_imaps._tcp.example.org. 3600 IN SRV 0 1 993 mail.example.org.\n"));
    assert_non_null(strstr(zone, "\n_imap._tcp.example.org. 3600 IN SRV 10 1 143 mail.example.org.\n"));
    assert_non_null(strstr(zone, "\n_pop3s._tcp.example.org. 3600 IN SRV 20 1 995 mail.example.org.\n"));
    assert_non_null(strstr(zone, "\n_pop3._tcp.example.org. 3600 IN SRV 0 0 0 .\n")); /* not offered */
    assert_non_null(strstr(zone, "\n_imaps._tcp.example.net. 3600 IN SRV 0 1 993 mail.example.org.\n"));
    assert_null(strstr(zone, "\n_submission")); /* only the comment names it */
    free(zone);
    s[n] = (ac_server){.type = "smtp", .host = "smtp.example.org", .port = "587"};
    zone = render(AC_SRV, &r, s, n + 1);
    assert_non_null(strstr(zone, "\n_submission._tcp.example.org. 3600 IN SRV 10 1 587 smtp.example.org.\n"));
    assert_non_null(strstr(zone, "\n_submissions._tcp.example.org. 3600 IN SRV 0 0 0 .\n"));
    free(zone);
}

/* A throwaway self-signed certificate with these subjectAltNames, as a PEM file. */
static void write_cert(const char *path, const char *san)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    /* a CN that names a host the SANs do not: clients ignore it, and so must the check */
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"cn.example.org", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void test_cert_names(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_autoconfig.XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.pem", dir);
    write_cert(path, "DNS:mail.example.org,DNS:*.example.net,IP:192.0.2.1");
    assert_int_equal(ac_cert_names(path, "mail.example.org", err, sizeof err), 1);
    assert_int_equal(ac_cert_names(path, "MAIL.Example.org.", err, sizeof err), 1); /* case, root dot */
    assert_int_equal(ac_cert_names(path, "imap.example.net", err, sizeof err), 1);
    assert_int_equal(ac_cert_names(path, "a.b.example.net", err, sizeof err), 0); /* one label only */
    assert_int_equal(ac_cert_names(path, "imap.example.org", err, sizeof err), 0);
    assert_int_equal(ac_cert_names(path, "cn.example.org", err, sizeof err), 0);   /* not the CN */
    remove(path);
    assert_int_equal(ac_cert_names(path, "mail.example.org", err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    FILE *f = fopen(path, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_equal(ac_cert_names(path, "mail.example.org", err, sizeof err), -1);
    assert_non_null(strstr(err, "no PEM certificate"));
    remove(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns_names),
        cmocka_unit_test(test_servers),
        cmocka_unit_test(test_mozilla),
        cmocka_unit_test(test_autodiscover),
        cmocka_unit_test(test_srv),
        cmocka_unit_test(test_cert_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
