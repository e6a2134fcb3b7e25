/* config: postern.conf parsing and its error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <sys/stat.h>

#include "config/config.h"
#include "crypto/crypto.h"

static char dir[] = "/tmp/postern-test-config-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(p, 0600); /* secrets must be private; every file here may be one */
    return p;
}

static int load(const char *text, pn_config *cfg, char *err, size_t errlen)
{
    const char *path = write_file("postern.conf", text);
    return pn_config_load(path, cfg, err, errlen);
}

static void test_defaults_and_site(void **state)
{
    (void)state;
    write_file("nntp.secret", "s3cret\n");
    char text[2048];
    snprintf(text, sizeof text,
             "[postern]\nstate_dir = /var/lib/x\n\n[site one]\nhost = 127.0.0.1\nport = 1119\ntls = starttls\n"
             "user = postern\npassword_file = %s/nntp.secret\n\n[site two]\nhost = news.example.org\ntls = implicit\n",
             dir);
    pn_config cfg;
    char err[512];
    assert_int_equal(load(text, &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.prefix, "postern");
    assert_int_equal(cfg.kdf_opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);
    assert_int_equal(cfg.kdf_memlimit, crypto_pwhash_MEMLIMIT_INTERACTIVE);
    assert_int_equal(cfg.min_copies, 1);
    assert_int_equal(cfg.keyrecord_cache, 60);
    assert_int_equal(cfg.confirm_timeout, 5);
    assert_int_equal(cfg.n_sites, 2);
    assert_string_equal(cfg.sites[0].name, "one");
    assert_string_equal(cfg.sites[0].port, "1119");
    assert_int_equal(cfg.sites[0].tls, PN_TLS_STARTTLS);
    assert_string_equal(cfg.sites[0].password, "s3cret");
    assert_string_equal(cfg.sites[1].port, "119");
    assert_int_equal(cfg.sites[1].tls, PN_TLS_IMPLICIT);
    /* no authority configured: loading works, the reason is kept for verifiers */
    assert_int_equal(cfg.n_authorities, 0);
    assert_non_null(strstr(cfg.authority_error, "authority_public"));
    pn_config_free(&cfg);
    assert_int_equal(cfg.sites[0].password[0], 0);
}

static void test_authority_keys(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    char line[128], text[1024];
    assert_int_equal(pc_authority_generate(pk, sk), PC_OK);
    assert_int_equal(pc_authority_pk_format(pk, line, sizeof line), PC_OK);
    strcat(line, "\n");
    const char *pub = write_file("a.pub", line);
    snprintf(text, sizeof text, "[postern]\nauthority_public = %s, %s/missing.pub\n", pub, dir);
    pn_config cfg;
    char err[512];
    assert_int_equal(load(text, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_authorities, 1);
    assert_memory_equal(cfg.authority_pk[0], pk, 32);
    assert_non_null(strstr(cfg.authority_error, "missing.pub"));

    write_file("bad.pub", "not a key\n");
    snprintf(text, sizeof text, "[postern]\nauthority_public = %s/bad.pub\n", dir);
    assert_int_equal(load(text, &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a postern authority public key"));
}

static void expect_error(const char *text, const char *needle)
{
    pn_config cfg;
    char err[512] = "";
    assert_int_equal(load(text, &cfg, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    expect_error("[postern]\nprefix = postern\nbogus = 1\n", "postern.conf:3: unknown setting 'bogus'");
    expect_error("[nonsense]\nx = 1\n", "unknown section [nonsense]");
    expect_error("[site a]\nhost = h\ntls = maybe\n", "tls must be none, implicit or starttls");
    expect_error("[site a]\nhost = h\nport = 70000\n", "port must be a whole number from 1 to 65535");
    expect_error("[site a]\nport = 119\n", "[site a] has no host");
    expect_error("[site a]\nhost = h\n[deliver]\nmin_copies = 2\n", "min_copies is 2 but only 1");
    expect_error("[postern]\nprefix = Bad..Prefix\n", "prefix");
    expect_error("[postern]\nkdf_memlimit = 12\n", "kdf_memlimit must be a whole number");
    expect_error("[site a]\nhost = h\npassword_file = /nonexistent/pw\n", "has a password_file but no user");
    expect_error("[deliver]\nkeyrecord_cache = 3601\n", "keyrecord_cache must be a whole number from 0 to 3600");
    expect_error("[deliver]\nconfirm_timeout = 0\n", "confirm_timeout must be a whole number from 1 to 600");
    /* every bad setting, each with its own line (inih only gives the first error's line, and
     * the reason used to be the last one's) */
    const char *many = "[gateway]\nbogus_one = 1\nsite_id = 0\n; fine\nbogus_two = 2\n";
    expect_error(many, "postern.conf:2: unknown setting 'bogus_one' in [gateway]; ");
    expect_error(many, "postern.conf:3: site_id must be a whole number from 1 to 65535, not '0'; ");
    expect_error(many, "postern.conf:5: unknown setting 'bogus_two' in [gateway]");
    expect_error("[postern]\nprefix = postern\nno equals sign\n", "postern.conf:3: syntax error");
}

static void test_keyrecord_cache(void **state)
{
    (void)state;
    pn_config cfg;
    char err[512];
    assert_int_equal(load("[deliver]\nkeyrecord_cache = 0\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.keyrecord_cache, 0);
    assert_int_equal(load("[deliver]\nkeyrecord_cache = 300\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.keyrecord_cache, 300);
}

static void test_gateway(void **state)
{
    (void)state;
    pn_config cfg;
    char err[512];
    /* defaults: no listeners, users "postern", the documented limits */
    assert_int_equal(load("[postern]\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.gateway.n_imap, 0);
    assert_int_equal(cfg.gateway.n_imaps, 0);
    assert_string_equal(cfg.gateway.user, "postern");
    assert_string_equal(cfg.gateway.vault_user, "postern");
    assert_int_equal(cfg.gateway.allow_plaintext_auth, 0);
    assert_int_equal(cfg.gateway.kdf_pool_memory, 256ULL << 20);
    assert_int_equal(cfg.gateway.login_grace, 30);
    assert_int_equal(cfg.gateway.preauth_timeout, 60);
    assert_int_equal(cfg.gateway.idle_timeout, 1800);
    assert_int_equal(cfg.gateway.max_connections, 10000);
    assert_int_equal(cfg.gateway.max_line, 65536);

    const char *text = "[gateway]\nimap = 127.0.0.1:143, [::1]:1143\nimap = 10.0.0.1:143\n"
                       "imaps = 0.0.0.0:993\ntls_cert = /c.pem\ntls_key = /k.pem\n"
                       "allow_plaintext_auth = yes\nuser = nobody\nvault_user = daemon\n"
                       "kdf_pool_memory = 1073741824\nlogin_grace = 0\npreauth_timeout = 5\n"
                       "idle_timeout = 3600\nmax_connections = 20\nmax_line = 8192\n";
    assert_int_equal(load(text, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.gateway.n_imap, 3);
    assert_string_equal(cfg.gateway.imap[0].addr, "127.0.0.1");
    assert_string_equal(cfg.gateway.imap[0].port, "143");
    assert_string_equal(cfg.gateway.imap[1].addr, "::1");
    assert_string_equal(cfg.gateway.imap[1].port, "1143");
    assert_string_equal(cfg.gateway.imap[2].addr, "10.0.0.1");
    assert_int_equal(cfg.gateway.n_imaps, 1);
    assert_string_equal(cfg.gateway.imaps[0].addr, "0.0.0.0");
    assert_string_equal(cfg.gateway.tls_cert, "/c.pem");
    assert_string_equal(cfg.gateway.tls_key, "/k.pem");
    assert_int_equal(cfg.gateway.allow_plaintext_auth, 1);
    assert_string_equal(cfg.gateway.user, "nobody");
    assert_string_equal(cfg.gateway.vault_user, "daemon");
    assert_int_equal(cfg.gateway.kdf_pool_memory, 1ULL << 30);
    assert_int_equal(cfg.gateway.login_grace, 0);
    assert_int_equal(cfg.gateway.preauth_timeout, 5);
    assert_int_equal(cfg.gateway.idle_timeout, 3600);
    assert_int_equal(cfg.gateway.max_connections, 20);
    assert_int_equal(cfg.gateway.max_line, 8192);

    expect_error("[gateway]\nimap = localhost:143\n", "imap takes ADDR:PORT with a numeric address");
    expect_error("[gateway]\nimap = 127.0.0.1\n", "imap takes ADDR:PORT");
    expect_error("[gateway]\nimap = ::1:143\n", "[v6]:PORT for IPv6");
    expect_error("[gateway]\nimaps = 127.0.0.1:0\n", "imaps must be a whole number from 1 to 65535");
    expect_error("[gateway]\nimaps = 127.0.0.1:993\n", "imaps and pop3s need tls_cert and tls_key");
    expect_error("[gateway]\ntls_cert = /c.pem\n", "tls_cert and tls_key go together");
    expect_error("[gateway]\nallow_plaintext_auth = maybe\n", "allow_plaintext_auth must be yes or no");
    expect_error("[gateway]\nidle_timeout = 60\n", "idle_timeout must be a whole number from 1800");
    expect_error("[gateway]\nmax_line = 10\n", "max_line must be a whole number from 1024");
    expect_error("[gateway]\npop3s = 127.0.0.1:995\n", "imaps and pop3s need tls_cert and tls_key");
    expect_error("[gateway]\npop3 = 127.0.0.1\n", "pop3 takes ADDR:PORT");
    expect_error("[gateway]\npop3_timeout = 60\n", "pop3_timeout must be a whole number from 600");
    expect_error("[gateway]\nretention_days = 0\n", "retention_days must be a whole number from 1");
    expect_error("[gateway]\npop4 = 127.0.0.1:110\n", "postern.conf:2: unknown setting 'pop4' in [gateway]");
    char many[2048] = "[gateway]\n";
    for (int i = 0; i <= PN_MAX_LISTEN; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "imap = 127.0.0.1:%d\n", 1000 + i);
    expect_error(many, "more than 16 imap addresses");
}

/* [gateway] public_name: the name postern autoconfig hands to clients; a DNS name only. */
static void test_public_name(void **state)
{
    (void)state;
    pn_config cfg;
    char err[512];
    assert_int_equal(load("[postern]\n", &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.gateway.public_name, "");
    assert_int_equal(load("[gateway]\npublic_name = Mail-1.Example.org.\n", &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.gateway.public_name, "Mail-1.Example.org");
    assert_int_equal(load("[gateway]\npublic_name =\n", &cfg, err, sizeof err), 0);
    assert_string_equal(cfg.gateway.public_name, "");
    static const char *const bad[] = {"0.0.0.0", "127.0.0.1", "::1", "mail..example.org", "-mail.example.org",
                                      "mail-.example.org", "mail example.org", "mail.example.org/x", "<a>",
                                      "a.b&c", ".example.org"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[gateway]\npublic_name = %s\n", bad[i]);
        assert_int_equal(load(text, &cfg, err, sizeof err), -1);
        assert_non_null(strstr(err, "public_name must be a DNS host name"));
    }
}

/* [metrics] listen: off by default, one numeric address, written back by pn_config_write. */
static void test_metrics(void **state)
{
    (void)state;
    pn_config cfg;
    char err[512];
    assert_int_equal(load("[postern]\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_metrics, 0);
    assert_int_equal(load("[metrics]\nlisten = 127.0.0.1:9187\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_metrics, 1);
    assert_string_equal(cfg.metrics[0].addr, "127.0.0.1");
    assert_string_equal(cfg.metrics[0].port, "9187");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    pn_config_write(&cfg, 0, f);
    fclose(f);
    assert_non_null(strstr(text, "[metrics]\nlisten = 127.0.0.1:9187\n"));
    free(text);
    /* a later line replaces an earlier one; an empty one turns it off */
    assert_int_equal(load("[metrics]\nlisten = 127.0.0.1:1\nlisten = [::1]:2\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_metrics, 1);
    assert_string_equal(cfg.metrics[0].addr, "::1");
    assert_int_equal(load("[metrics]\nlisten = 127.0.0.1:1\nlisten =\n", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.n_metrics, 0);
    expect_error("[metrics]\nlisten = 127.0.0.1:1, 127.0.0.1:2\n", "more than 1 listen address");
    expect_error("[metrics]\nlisten = localhost:9187\n", "listen takes ADDR:PORT with a numeric address");
    expect_error("[metrics]\nport = 9187\n", "unknown setting 'port' in [metrics]");
}

static void test_missing_file(void **state)
{
    (void)state;
    pn_config cfg;
    char err[512];
    assert_int_equal(pn_config_load("/nonexistent/postern.conf", &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_delivery_secret(void **state)
{
    (void)state;
    char text[1024], err[512];
    pn_config cfg;
    write_file("d.secret", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    snprintf(text, sizeof text, "[postern]\ndelivery_secret = %s/d.secret\n", dir);
    assert_int_equal(load(text, &cfg, err, sizeof err), 0);
    uint8_t *secret = pn_load_delivery_secret(&cfg, err, sizeof err);
    assert_non_null(secret);
    assert_int_equal(secret[1], 0x11);
    assert_int_equal(secret[31], 0xff);
    sodium_free(secret);
    write_file("d.secret", "0011\n");
    assert_null(pn_load_delivery_secret(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "64 hex digits"));
}

/* Like sshd with private keys: a secret others may read is refused, with the fix in the
 * message (issue 9, item 4). */
static void test_secrets_others_can_read_are_refused(void **state)
{
    (void)state;
    char text[1400], err[512], path[600];
    pn_config cfg;
    write_file("d.secret", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    snprintf(path, sizeof path, "%s/d.secret", dir);
    snprintf(text, sizeof text, "[postern]\ndelivery_secret = %s\nauthority_secret = %s\n", path, path);
    assert_int_equal(load(text, &cfg, err, sizeof err), 0);
    const mode_t loose[] = {0644, 0640, 0604, 0620, 0602};
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        assert_int_equal(chmod(path, loose[i]), 0);
        err[0] = '\0';
        assert_null(pn_load_delivery_secret(&cfg, err, sizeof err));
        assert_non_null(strstr(err, "group or others"));
        assert_non_null(strstr(err, "chmod 600"));
        err[0] = '\0';
        assert_null(pn_load_authority_secret(&cfg, err, sizeof err));
        assert_non_null(strstr(err, "group or others"));
    }
    assert_int_equal(chmod(path, 0400), 0);
    uint8_t *secret = pn_load_delivery_secret(&cfg, err, sizeof err);
    assert_non_null(secret);
    sodium_free(secret);
    assert_int_equal(chmod(path, 0600), 0);
}

int main(void)
{
    if (sodium_init() < 0 || !mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_site),
        cmocka_unit_test(test_authority_keys),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_keyrecord_cache),
        cmocka_unit_test(test_gateway),
        cmocka_unit_test(test_public_name),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_delivery_secret),
        cmocka_unit_test(test_secrets_others_can_read_are_refused),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return failed;
}
