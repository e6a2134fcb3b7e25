/* Unit tests for vault/: a real vault (vault_serve in a thread) on a SOCK_SEQPACKET socketpair,
 * driven through the client API with real key records and envelopes. KDF limits are small
 * (opslimit 1, 8 MiB) so the suite stays fast; the counters in STATS show whether Argon2id ran. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/crypto.h"
#include "vault/vault.h"

#define OPS 1
#define MEM (8192u * 1024)
#define MAXR 64

/* ---- fixtures ---- */

static uint8_t auth_pk[PC_AUTH_PK_BYTES], *auth_sk;
static uint8_t other_pk[PC_AUTH_PK_BYTES], *other_sk;
/* The writer seal_to signs with (version-2 envelopes end in its trailer), of the test authority. */
static uint8_t writer_cert[PC_WRITER_CERT_BYTES], writer_sk[PC_WRITER_SK_BYTES];

typedef struct user {
    char address[64];
    pc_keyrecord rec;
    uint8_t bytes[PC_KEYRECORD_MAX];
    size_t len;
    uint8_t sk[PC_BOX_SK_BYTES];
} user;

static void user_new(user *u, const char *address, const char *pw, uint64_t ops, uint64_t mem, const uint8_t *ask)
{
    memset(u, 0, sizeof *u);
    snprintf(u->address, sizeof u->address, "%s", address);
    assert_int_equal(pc_keyrecord_create(address, pw, strlen(pw), ops, mem, ask, &u->rec, u->sk), PC_OK);
    u->len = pc_keyrecord_encode(&u->rec, u->bytes, sizeof u->bytes);
    assert_true(u->len > 0);
}

typedef struct vfix {
    int sv[2];
    pthread_t th;
    int rc;
    vault_config cfg;
    vault_client *c;
    vault_reply got[MAXR];
    size_t ngot;
} vfix;

static void *serve_thread(void *arg)
{
    vfix *f = arg;
    f->rc = vault_serve(f->sv[0], &f->cfg);
    return NULL;
}

/* A config for tests: short delays, the test authority. */
static void cfg_test(vault_config *cfg)
{
    vault_config_init(cfg);
    cfg->authority_pks = (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk;
    cfg->n_authorities = 1;
    cfg->fail_delay_ms = 50;
    cfg->grace_ms = 60000;
    cfg->max_threads = 4;
}

static void vstart(vfix *f)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sv), 0);
    f->rc = -2;
    f->ngot = 0;
    assert_int_equal(pthread_create(&f->th, NULL, serve_thread, f), 0);
    f->c = vault_client_new(f->sv[1]);
    assert_non_null(f->c);
}

static int vstop(vfix *f)
{
    vault_client_free(f->c);
    close(f->sv[1]);
    pthread_join(f->th, NULL);
    close(f->sv[0]);
    for (size_t i = 0; i < f->ngot; i++)
        sodium_memzero(&f->got[i], sizeof f->got[i]);
    return f->rc;
}

static void collect(void *arg, const vault_reply *r)
{
    vfix *f = arg;
    assert_true(f->ngot < MAXR);
    f->got[f->ngot++] = *r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the client's event loop until the reply to id arrives; -1 if the vault hung up. */
static int wait_reply(vfix *f, uint32_t id, vault_reply *out)
{
    assert_int_not_equal(id, 0);
    double deadline = now_s() + 15;
    for (;;) {
        for (size_t i = 0; i < f->ngot; i++)
            if (f->got[i].id == id) {
                *out = f->got[i];
                f->got[i] = f->got[--f->ngot];
                return 0;
            }
        assert_true(now_s() < deadline);
        struct pollfd p = {vault_client_fd(f->c), (short)(POLLIN | (vault_client_wants_write(f->c) ? POLLOUT : 0)), 0};
        assert_true(poll(&p, 1, 1000) >= 0);
        if ((p.revents & POLLOUT) && vault_client_on_writable(f->c) != 0)
            return -1;
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && vault_client_on_readable(f->c, collect, f) != 0)
            return -1;
    }
}

static uint32_t send_login(vfix *f, const user *u, const char *pw, const uint8_t *ip)
{
    return vault_client_send_login(f->c, u->address, ip, u->bytes, u->len, pw, strlen(pw));
}

/* Logs in and returns the reply (any type). */
static vault_reply login(vfix *f, const user *u, const char *pw, const uint8_t *ip)
{
    vault_reply r;
    assert_int_equal(wait_reply(f, send_login(f, u, pw, ip), &r), 0);
    return r;
}

static vault_stats stats(vfix *f)
{
    vault_reply r;
    assert_int_equal(wait_reply(f, vault_client_send_stats(f->c), &r), 0);
    assert_int_equal(r.type, VAULT_REPLY_STATS);
    return r.u.stats;
}

static void expect_ok(const vault_reply *r, const user *u)
{
    assert_int_equal(r->type, VAULT_REPLY_LOGIN);
    assert_int_not_equal(r->u.login.session, 0);
    assert_memory_equal(r->u.login.box_pk, u->rec.box_pk, PC_BOX_PK_BYTES);
    assert_memory_equal(r->u.login.key_id, u->rec.key_id, PC_KEYID_BYTES);
    uint8_t want[32];
    crypto_kdf_derive_from_key(want, sizeof want, 1, "pstrstat", u->sk);
    assert_memory_equal(r->u.login.state_key, want, sizeof want);
}

#define expect_fail(r, reason) expect_fail_at(r, reason, __LINE__)
static void expect_fail_at(const vault_reply *r, enum vault_fail reason, int line)
{
    if (r->type != VAULT_REPLY_FAIL || r->reason != reason)
        print_error("expected failure %d at line %d\n", reason, line); /* the caller's line */
    assert_int_equal(r->type, VAULT_REPLY_FAIL);
    assert_int_equal(r->reason, reason);
}

static int setup(void **state)
{
    (void)state;
    if (pc_init() != PC_OK)
        return -1;
    auth_sk = sodium_malloc(PC_AUTH_SK_BYTES);
    other_sk = sodium_malloc(PC_AUTH_SK_BYTES);
    if (!auth_sk || !other_sk)
        return -1;
    return pc_authority_generate(auth_pk, auth_sk) == PC_OK && pc_authority_generate(other_pk, other_sk) == PC_OK &&
                   pc_writer_issue(auth_sk, "mx.example.jp", PC_ROLE_DELIVERY, 1600000000, 1900000000, writer_cert,
                                   writer_sk) == PC_OK
               ? 0
               : -1;
}

static int teardown(void **state)
{
    (void)state;
    sodium_free(auth_sk);
    sodium_free(other_sk);
    return 0;
}

/* ---- tests ---- */

static void test_login_and_cache(void **state)
{
    (void)state;
    user u;
    user_new(&u, "alice@example.jp", "correct horse", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);

    double t0 = now_s();
    vault_reply r1 = login(&f, &u, "correct horse", NULL);
    double t1 = now_s();
    expect_ok(&r1, &u);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 1);
    assert_int_equal(st.cache_hits, 0);

    double t2 = now_s();
    vault_reply r2 = login(&f, &u, "correct horse", NULL);
    double t3 = now_s();
    expect_ok(&r2, &u);
    assert_int_not_equal(r1.u.login.session, r2.u.login.session);
    st = stats(&f);
    assert_int_equal(st.kdf_runs, 1); /* the verifier answered, not Argon2id */
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.logins_ok, 2);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.entries, 1);
    print_message("    KDF login (ops %d, %u KiB): %.2f ms; cached login: %.3f ms\n", OPS, MEM / 1024,
                  (t1 - t0) * 1e3, (t3 - t2) * 1e3);

    /* a password differing only in length or one byte is still wrong on the cached path */
    vault_reply r3 = login(&f, &u, "correct hors", NULL);
    expect_fail(&r3, VAULT_FAIL_PASSWORD);
    r3 = login(&f, &u, "correct horsE", NULL);
    expect_fail(&r3, VAULT_FAIL_PASSWORD);
    st = stats(&f);
    assert_int_equal(st.kdf_runs, 1);
    assert_int_equal(st.logins_failed, 2);
    assert_int_equal(vstop(&f), 0);
}

static void test_wrong_password_delay(void **state)
{
    (void)state;
    user u;
    user_new(&u, "bob@example.jp", "right", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.fail_delay_ms = 400;
    vstart(&f);

    double t0 = now_s();
    uint32_t id = send_login(&f, &u, "wrong", NULL);
    /* the delay does not block the loop: STATS sent later is answered first */
    vault_reply r;
    uint32_t sid = vault_client_send_stats(f.c);
    double ts0 = now_s();
    assert_int_equal(wait_reply(&f, sid, &r), 0);
    double ts = now_s() - ts0;
    assert_int_equal(wait_reply(&f, id, &r), 0);
    double t = now_s() - t0;
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    assert_true(t >= 0.4);
    assert_true(ts < 0.4);

    /* the cached path delays a wrong password too */
    vault_reply ok = login(&f, &u, "right", NULL);
    expect_ok(&ok, &u);
    t0 = now_s();
    r = login(&f, &u, "wrong", NULL);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    assert_true(now_s() - t0 >= 0.4);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 2);
    assert_int_equal(st.logins_failed, 2);
    assert_int_equal(vstop(&f), 0);
}

typedef struct buf {
    uint8_t *d;
    size_t n, cap;
} buf;

static int buf_sink(void *arg, const uint8_t *data, size_t len)
{
    buf *b = arg;
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->d = realloc(b->d, b->cap);
        assert_non_null(b->d);
    }
    memcpy(b->d + b->n, data, len);
    b->n += len;
    return 0;
}

/* A whole envelope (prefix || chunks || signed trailer) of msg sealed to u. */
static void seal_to(const user *u, const uint8_t *msg, size_t len, buf *env, pc_msg_meta *meta)
{
    buf chunks = {0};
    pc_seal *s = pc_seal_begin(u->rec.box_pk, u->rec.key_id, 1700000000, 540, buf_sink, &chunks);
    assert_non_null(s);
    assert_int_equal(pc_seal_update(s, msg, len), PC_OK);
    uint8_t hash[32], tag[PC_TAG_BYTES], secret[PC_DELIVERY_SECRET_BYTES] = {7};
    assert_int_equal(pc_seal_finish(s, hash, meta), PC_OK);
    pc_message_tag(secret, u->address, u->rec.key_id, hash, tag);
    memcpy(meta->tag, tag, sizeof tag);
    uint8_t prefix[PC_MSG_PREFIX_BYTES], ch[32], trailer[PC_MAIL_TRAILER_BYTES];
    assert_int_equal(pc_seal_prefix(s, tag, prefix), PC_OK);
    assert_int_equal(pc_seal_chunks_hash(s, ch), PC_OK);
    pc_seal_free(s);
    assert_int_equal(pc_mail_sign(writer_cert, writer_sk, "postern.mail.test", "<v.1@postern.invalid>", prefix, ch,
                                  trailer),
                     PC_OK);
    memset(env, 0, sizeof *env);
    buf_sink(env, prefix, sizeof prefix);
    buf_sink(env, chunks.d, chunks.n);
    buf_sink(env, trailer, sizeof trailer);
    free(chunks.d);
}

static void test_open(void **state)
{
    (void)state;
    user u, v;
    user_new(&u, "carol@example.jp", "pw-carol", OPS, MEM, auth_sk);
    user_new(&v, "dave@example.jp", "pw-dave", OPS, MEM, auth_sk);
    size_t mlen = 150000;
    uint8_t *msg = malloc(mlen);
    for (size_t i = 0; i < mlen; i++)
        msg[i] = i % 77 == 76 ? '\n' : (uint8_t)('a' + i % 26);
    buf env, envv;
    pc_msg_meta m, mv;
    seal_to(&u, msg, mlen, &env, &m);
    seal_to(&v, msg, 100, &envv, &mv);

    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    vault_reply lr = login(&f, &u, "pw-carol", NULL);
    expect_ok(&lr, &u);
    uint64_t sess = lr.u.login.session;

    vault_reply r;
    assert_int_equal(wait_reply(&f, vault_client_send_open(f.c, sess, env.d), &r), 0);
    assert_int_equal(r.type, VAULT_REPLY_OPEN);
    assert_int_equal(r.u.open.meta.arrival, 1700000000);
    assert_int_equal(r.u.open.meta.tz_minutes, 540);
    assert_int_equal(r.u.open.meta.raw_size, mlen);
    assert_int_equal(r.u.open.meta.crlf_size, m.crlf_size);
    assert_int_equal(r.u.open.meta.padded_size, m.padded_size);
    assert_memory_equal(r.u.open.meta.tag, m.tag, PC_TAG_BYTES);

    /* the network process decrypts the stream with the stream key alone */
    buf out = {0};
    int st = -1;
    pc_open *o = pc_open_begin_key(env.d, r.u.open.stream_key, &r.u.open.meta, buf_sink, &out, &st);
    assert_non_null(o);
    assert_int_equal(pc_open_update(o, env.d + PC_MSG_PREFIX_BYTES, env.n - PC_MSG_PREFIX_BYTES), PC_OK);
    assert_int_equal(pc_open_finish(o), PC_OK);
    pc_open_free(o);
    assert_int_equal(out.n, mlen);
    assert_memory_equal(out.d, msg, mlen);
    assert_int_equal(env.n, pc_envelope_size(m.padded_size) + PC_MAIL_TRAILER_BYTES);
    assert_int_equal(env.d[4], 2);
    pc_writer_cert who;
    assert_int_equal(pc_envelope_verify(env.d, env.n, "postern.mail.test", "<v.1@postern.invalid>",
                                        (const uint8_t(*)[PC_AUTH_PK_BYTES])auth_pk, 1, &who),
                     PC_OK);

    /* another user's message, a damaged prefix, an unknown session */
    assert_int_equal(wait_reply(&f, vault_client_send_open(f.c, sess, envv.d), &r), 0);
    expect_fail(&r, VAULT_FAIL_ENVELOPE);
    env.d[40] ^= 1; /* inside the sealed box */
    assert_int_equal(wait_reply(&f, vault_client_send_open(f.c, sess, env.d), &r), 0);
    expect_fail(&r, VAULT_FAIL_ENVELOPE);
    assert_int_equal(wait_reply(&f, vault_client_send_open(f.c, sess ^ 1, envv.d), &r), 0);
    expect_fail(&r, VAULT_FAIL_SESSION);
    assert_int_equal(stats(&f).opens, 1);

    /* after LOGOUT the handle opens nothing */
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, sess), &r), 0);
    assert_int_equal(r.type, VAULT_REPLY_LOGOUT);
    env.d[40] ^= 1;
    assert_int_equal(wait_reply(&f, vault_client_send_open(f.c, sess, env.d), &r), 0);
    expect_fail(&r, VAULT_FAIL_SESSION);
    assert_int_equal(vstop(&f), 0);
    free(msg);
    free(out.d);
    free(env.d);
    free(envv.d);
}

static void test_forged_records(void **state)
{
    (void)state;
    user u, forged;
    user_new(&u, "erin@example.jp", "pw", OPS, MEM, auth_sk);
    user_new(&forged, "erin@example.jp", "pw", OPS, MEM, other_sk);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    vault_reply r = login(&f, &forged, "pw", NULL);
    expect_fail(&r, VAULT_FAIL_RECORD);
    /* a good record presented for another address */
    user as_other = u;
    strcpy(as_other.address, "mallory@example.jp");
    r = login(&f, &as_other, "pw", NULL);
    expect_fail(&r, VAULT_FAIL_RECORD);
    /* one flipped bit anywhere in the record */
    for (size_t i = 0; i < u.len; i += 13) {
        user bad = u;
        bad.bytes[i] ^= 0x10;
        r = login(&f, &bad, "pw", NULL);
        expect_fail(&r, VAULT_FAIL_RECORD);
    }
    user cut = u;
    cut.len--;
    r = login(&f, &cut, "pw", NULL);
    expect_fail(&r, VAULT_FAIL_RECORD);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 0); /* refused before any KDF */
    assert_true(st.bad_records >= 3);
    r = login(&f, &u, "pw", NULL);
    expect_ok(&r, &u);
    assert_int_equal(vstop(&f), 0);
}

static void test_pool_bound(void **state)
{
    (void)state;
    /* slower KDF: 2 passes over 16 MiB; memory for two at once, room for four in the queue */
    enum { N = 6, SLOW_MEM = 16u << 20 };
    user u[N];
    for (int i = 0; i < N; i++) {
        char a[32];
        snprintf(a, sizeof a, "user%d@example.jp", i);
        user_new(&u[i], a, "pw", 2, SLOW_MEM, auth_sk);
    }
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.kdf_pool_memory = 2ull * SLOW_MEM + SLOW_MEM / 2;
    f.cfg.queue_max = 4;
    vstart(&f);
    uint32_t ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = send_login(&f, &u[i], "pw", NULL);
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        vault_reply r;
        assert_int_equal(wait_reply(&f, ids[i], &r), 0);
        if (r.type == VAULT_REPLY_LOGIN) {
            expect_ok(&r, &u[i]);
            ok++;
        } else {
            expect_fail(&r, VAULT_FAIL_BUSY);
            busy++;
        }
    }
    assert_int_equal(ok, 4);
    assert_int_equal(busy, 2);
    vault_stats st = stats(&f);
    assert_int_equal(st.pool_size, 2);
    assert_true(st.kdf_peak >= 1 && st.kdf_peak <= 2);
    assert_int_equal(st.kdf_runs, 4);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.kdf_running, 0);
    assert_int_equal(st.kdf_queued, 0);
    assert_int_equal(vstop(&f), 0);

    /* memory for one: runs are strictly one at a time */
    cfg_test(&f.cfg);
    f.cfg.kdf_pool_memory = SLOW_MEM;
    vstart(&f);
    for (int i = 0; i < 3; i++)
        ids[i] = send_login(&f, &u[i], "pw", NULL);
    for (int i = 0; i < 3; i++) {
        vault_reply r;
        assert_int_equal(wait_reply(&f, ids[i], &r), 0);
        expect_ok(&r, &u[i]);
    }
    st = stats(&f);
    assert_int_equal(st.pool_size, 1);
    assert_int_equal(st.kdf_peak, 1);
    assert_int_equal(vstop(&f), 0);
}

/* Several logins for one record at once (a client opening connections) share one KDF run;
 * one with another password gets its own run. */
static void test_concurrent_logins_coalesce(void **state)
{
    (void)state;
    user u;
    user_new(&u, "frank@example.jp", "pw-frank", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    uint32_t bad = send_login(&f, &u, "not it", NULL);
    uint32_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = send_login(&f, &u, "pw-frank", NULL);
    vault_reply r;
    assert_int_equal(wait_reply(&f, bad, &r), 0);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(wait_reply(&f, ids[i], &r), 0);
        expect_ok(&r, &u);
    }
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 2);
    assert_int_equal(st.cache_hits, 3);
    assert_int_equal(st.sessions, 4);

    /* the right password first, a wrong one waiting on it */
    user w;
    user_new(&w, "grace@example.jp", "pw-grace", OPS, MEM, auth_sk);
    uint32_t a = send_login(&f, &w, "pw-grace", NULL), b = send_login(&f, &w, "pw-grac", NULL);
    assert_int_equal(wait_reply(&f, a, &r), 0);
    expect_ok(&r, &w);
    assert_int_equal(wait_reply(&f, b, &r), 0);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    assert_int_equal(stats(&f).kdf_runs, 3);
    assert_int_equal(vstop(&f), 0);
}

static void test_grace_and_wipe(void **state)
{
    (void)state;
    user u;
    user_new(&u, "heidi@example.jp", "pw", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.grace_ms = 300;
    vstart(&f);
    vault_reply r = login(&f, &u, "pw", NULL), lo;
    expect_ok(&r, &u);
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, r.u.login.session), &lo), 0);
    assert_int_equal(lo.type, VAULT_REPLY_LOGOUT);
    /* a reconnect within the grace period is a cache hit */
    r = login(&f, &u, "pw", NULL);
    expect_ok(&r, &u);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 1);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, r.u.login.session), &lo), 0);
    st = stats(&f);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.sessions, 0);
    usleep(600 * 1000);
    st = stats(&f);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.wipes, 1);
    /* gone: the next login runs Argon2id again */
    r = login(&f, &u, "pw", NULL);
    expect_ok(&r, &u);
    assert_int_equal(stats(&f).kdf_runs, 2);
    assert_int_equal(vstop(&f), 0);
}

static void test_password_change(void **state)
{
    (void)state;
    user u;
    user_new(&u, "ivan@example.jp", "old password", OPS, MEM, auth_sk);
    user n = u;
    assert_int_equal(pc_keyrecord_rewrap(&n.rec, u.sk, "new password", 12, OPS, MEM, auth_sk), PC_OK);
    n.len = pc_keyrecord_encode(&n.rec, n.bytes, sizeof n.bytes);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    vault_reply old = login(&f, &u, "old password", NULL), r;
    expect_ok(&old, &u);
    /* the newer record replaces the cached entry: it needs the new password and a KDF run */
    r = login(&f, &n, "old password", NULL);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    r = login(&f, &n, "new password", NULL);
    expect_ok(&r, &n);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, 3);
    assert_int_equal(st.entries, 2); /* the old one lives on for its session */
    /* the older record is now a rollback */
    r = login(&f, &u, "old password", NULL);
    expect_fail(&r, VAULT_FAIL_RECORD);
    /* the old session's last logout wipes its key at once */
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, old.u.login.session), &r), 0);
    st = stats(&f);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.wipes, 1);
    assert_int_equal(vstop(&f), 0);
}

static void test_throttling(void **state)
{
    (void)state;
    user u;
    user_new(&u, "judy@example.jp", "pw-judy", OPS, MEM, auth_sk);
    uint8_t ip1[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 192, [13] = 0, [14] = 2, [15] = 1};
    uint8_t ip2[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 192, [13] = 0, [14] = 2, [15] = 2};
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.throttle_after = 3;
    f.cfg.throttle_base_ms = 500;
    f.cfg.fail_delay_ms = 10;
    vstart(&f);
    vault_reply r;
    for (int i = 0; i < 3; i++) {
        r = login(&f, &u, "guess", NULL);
        expect_fail(&r, VAULT_FAIL_PASSWORD);
    }
    /* in back-off: refused at once, even with the right password, without a KDF */
    vault_stats before = stats(&f);
    r = login(&f, &u, "pw-judy", NULL);
    expect_fail(&r, VAULT_FAIL_THROTTLED);
    vault_stats st = stats(&f);
    assert_int_equal(st.kdf_runs, before.kdf_runs);
    assert_int_equal(st.throttled, 1);
    usleep(600 * 1000);
    r = login(&f, &u, "pw-judy", NULL);
    expect_ok(&r, &u);
    /* success reset the user's counter: one more failure is not throttled */
    r = login(&f, &u, "guess", NULL);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    r = login(&f, &u, "pw-judy", NULL);
    expect_ok(&r, &u);

    /* per IP: failures against different users from one address add up, but a NAT address
     * is shared: throttle_after of them (3) lock no other user out; 4 x throttle_after (12)
     * do, except for a source that logged in before */
    enum { NV = 14 };
    user v[NV];
    for (int i = 0; i < NV; i++) {
        char a[32];
        snprintf(a, sizeof a, "ip%d@example.jp", i);
        user_new(&v[i], a, "pw", OPS, MEM, auth_sk);
    }
    r = login(&f, &v[13], "pw", ip1); /* an office colleague, known at this address */
    expect_ok(&r, &v[13]);
    for (int i = 0; i < 3; i++) {
        r = login(&f, &v[i], "guess", ip1);
        expect_fail(&r, VAULT_FAIL_PASSWORD);
    }
    r = login(&f, &v[12], "pw", ip1); /* was THROTTLED when the IP-wide limit was 3 */
    expect_ok(&r, &v[12]);
    for (int i = 3; i < 12; i++) {
        r = login(&f, &v[i], "guess", ip1);
        expect_fail(&r, VAULT_FAIL_PASSWORD);
    }
    r = login(&f, &v[11], "pw", ip1); /* a sprayed address: 12 failures, a source never seen */
    expect_fail(&r, VAULT_FAIL_THROTTLED);
    r = login(&f, &v[11], "pw", ip2);
    expect_ok(&r, &v[11]);
    r = login(&f, &v[13], "pw", ip1); /* the known source still gets in */
    expect_ok(&r, &v[13]);
    /* a success from the IP does not clear the IP's count */
    r = login(&f, &v[10], "pw", ip1);
    expect_fail(&r, VAULT_FAIL_THROTTLED);

    /* the back-off doubles: two more failures after it ends mean 1 s, not 0.5 s */
    usleep(600 * 1000);
    r = login(&f, &v[0], "guess", ip1);
    expect_fail(&r, VAULT_FAIL_PASSWORD);
    usleep(600 * 1000);
    r = login(&f, &v[0], "pw", ip1);
    expect_fail(&r, VAULT_FAIL_THROTTLED);
    assert_int_equal(vstop(&f), 0);
}

/* Issue 14: guesses sent at once must not all be checked. A guess counts from the moment the
 * vault accepts it, so of 20 different wrong passwords sent together only throttle_after are
 * checked; the same password on several connections at once (Thunderbird) is one guess. */
static void test_parallel_guesses_count_at_once(void **state)
{
    (void)state;
    user u;
    user_new(&u, "kate@example.jp", "pw-kate", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.throttle_after = 3;
    f.cfg.throttle_base_ms = 60000; /* no back-off ends during the test */
    f.cfg.fail_delay_ms = 10;
    vstart(&f);
    uint32_t ids[20];
    for (int i = 0; i < 20; i++) {
        char pw[16];
        snprintf(pw, sizeof pw, "guess %d", i);
        ids[i] = send_login(&f, &u, pw, NULL);
    }
    int checked = 0, throttled = 0;
    for (int i = 0; i < 20; i++) {
        vault_reply r;
        assert_int_equal(wait_reply(&f, ids[i], &r), 0);
        assert_int_equal(r.type, VAULT_REPLY_FAIL);
        checked += r.reason == VAULT_FAIL_PASSWORD;
        throttled += r.reason == VAULT_FAIL_THROTTLED;
    }
    assert_int_equal(checked, 3);
    assert_int_equal(throttled, 17);
    assert_true(stats(&f).kdf_runs <= 3);

    /* five connections with the right password at once: one guess, all in */
    user w;
    user_new(&w, "lena@example.jp", "pw-lena", OPS, MEM, auth_sk);
    for (int i = 0; i < 5; i++)
        ids[i] = send_login(&f, &w, "pw-lena", NULL);
    for (int i = 0; i < 5; i++) {
        vault_reply r;
        assert_int_equal(wait_reply(&f, ids[i], &r), 0);
        expect_ok(&r, &w);
    }
    assert_int_equal(vstop(&f), 0);
}

/* Someone else's failures do not lock the user out: back-off is per source (address + IP);
 * the address-wide limit (20 x throttle_after, from many IPs) spares a source that logged in
 * before. */
static void test_other_sources_failures(void **state)
{
    (void)state;
    user u;
    user_new(&u, "mona@example.jp", "pw-mona", OPS, MEM, auth_sk);
    uint8_t home[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 198, [13] = 51, [14] = 100, [15] = 1};
    uint8_t cafe[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 198, [13] = 51, [14] = 100, [15] = 2};
    uint8_t bad[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 203, [13] = 0, [14] = 113};
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.throttle_after = 2;
    f.cfg.throttle_base_ms = 60000;
    f.cfg.fail_delay_ms = 1;
    vstart(&f);
    vault_reply r = login(&f, &u, "pw-mona", home);
    expect_ok(&r, &u);
    /* one attacker: blocked after 2, the user at another IP is not */
    for (int i = 0; i < 2; i++) {
        r = login(&f, &u, "guess", bad);
        expect_fail(&r, VAULT_FAIL_PASSWORD);
    }
    r = login(&f, &u, "pw-mona", bad);
    expect_fail(&r, VAULT_FAIL_THROTTLED);
    r = login(&f, &u, "pw-mona", cafe);
    expect_ok(&r, &u);
    /* many attackers (40 failures = 20 x 2, each IP twice): the address is closed to new
     * sources, not to the ones that logged in */
    uint8_t ip[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 10};
    for (int i = 1; i < 20; i++) {
        ip[15] = (uint8_t)i;
        for (int k = 0; k < 2; k++) {
            r = login(&f, &u, "guess", ip);
            expect_fail(&r, VAULT_FAIL_PASSWORD);
        }
    }
    uint8_t fresh[VAULT_IP_BYTES] = {[10] = 0xff, [11] = 0xff, [12] = 192, [13] = 0, [14] = 2, [15] = 77};
    r = login(&f, &u, "pw-mona", fresh);
    expect_fail(&r, VAULT_FAIL_THROTTLED);
    r = login(&f, &u, "pw-mona", home);
    expect_ok(&r, &u);
    r = login(&f, &u, "pw-mona", cafe);
    expect_ok(&r, &u);
    assert_int_equal(vstop(&f), 0);
}

/* A user who does not exist (the gateway found no key record) is throttled and answered as a
 * wrong password is, after the same time: neither tells an attacker which names exist. */
static void test_unknown_user_looks_like_a_wrong_password(void **state)
{
    (void)state;
    user u;
    user_new(&u, "nina@example.jp", "pw-nina", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    f.cfg.throttle_after = 3;
    f.cfg.throttle_base_ms = 60000;
    f.cfg.fail_delay_ms = 200;
    vstart(&f);
    vault_reply known[4], unknown[4];
    double t_known = 0, t_unknown = 0;
    for (int i = 0; i < 4; i++) {
        double t0 = now_s();
        known[i] = login(&f, &u, "guess", NULL);
        t_known += i < 3 ? now_s() - t0 : 0;
        t0 = now_s();
        uint32_t id = vault_client_send_login(f.c, "ghost@example.jp", NULL, NULL, 0, "guess", 5);
        assert_int_equal(wait_reply(&f, id, &unknown[i]), 0);
        t_unknown += i < 3 ? now_s() - t0 : 0;
    }
    for (int i = 0; i < 3; i++) {
        expect_fail(&known[i], VAULT_FAIL_PASSWORD);
        expect_fail(&unknown[i], VAULT_FAIL_PASSWORD);
    }
    expect_fail(&known[3], VAULT_FAIL_THROTTLED);
    expect_fail(&unknown[3], VAULT_FAIL_THROTTLED);
    /* both at least the delay plus a KDF run's time (the unknown one is padded to it); no
     * upper bound: the machine's speed must not decide the test */
    assert_true(t_unknown / 3 >= 0.2);
    assert_true(t_known / 3 >= 0.2);
    assert_int_equal(vstop(&f), 0);
}

static void test_logout_unknown(void **state)
{
    (void)state;
    user u;
    user_new(&u, "ken@example.jp", "pw", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    vault_reply r;
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, 0x1234567890abcdefull), &r), 0);
    expect_fail(&r, VAULT_FAIL_SESSION);
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, 0), &r), 0);
    expect_fail(&r, VAULT_FAIL_SESSION);
    vault_reply l = login(&f, &u, "pw", NULL);
    expect_ok(&l, &u);
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, l.u.login.session), &r), 0);
    assert_int_equal(r.type, VAULT_REPLY_LOGOUT);
    assert_int_equal(wait_reply(&f, vault_client_send_logout(f.c, l.u.login.session), &r), 0);
    expect_fail(&r, VAULT_FAIL_SESSION);
    vault_stats st = stats(&f);
    assert_int_equal(st.sessions, 0);
    assert_int_equal(st.entries, 1); /* in its grace period */
    assert_int_equal(vstop(&f), 0);
}

/* A frame built by hand from docs/design.md, "Vault protocol". */
static size_t hand_login(uint8_t *b, const user *u, const char *pw)
{
    size_t a = strlen(u->address), p = strlen(pw), off = 8;
    b[off++] = (uint8_t)a;
    memcpy(b + off, u->address, a);
    off += a;
    memset(b + off, 0, 16);
    off += 16;
    b[off++] = (uint8_t)(u->len >> 8);
    b[off++] = (uint8_t)u->len;
    memcpy(b + off, u->bytes, u->len);
    off += u->len;
    b[off++] = (uint8_t)(p >> 8);
    b[off++] = (uint8_t)p;
    memcpy(b + off, pw, p);
    off += p;
    size_t body = off - 8;
    uint8_t h[8] = {1, 1, (uint8_t)(body >> 8), (uint8_t)body, 0, 0, 0, 9};
    memcpy(b, h, 8);
    return off;
}

static void test_frame_decoder(void **state)
{
    (void)state;
    user u;
    user_new(&u, "leo@example.jp", "pw", OPS, MEM, auth_sk);
    uint8_t b[4096];
    size_t n = hand_login(b, &u, "secret");
    assert_int_equal(vault_frame_check_request(b, n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(vault_frame_check_request(b, i), -1); /* every truncation */
    uint8_t c[4096];
    memcpy(c, b, n);
    c[0] = 2; /* version */
    assert_int_equal(vault_frame_check_request(c, n), -1);
    memcpy(c, b, n);
    c[1] = 9; /* type */
    assert_int_equal(vault_frame_check_request(c, n), -1);
    memcpy(c, b, n);
    c[7] = 0; /* id 0 */
    assert_int_equal(vault_frame_check_request(c, n), -1);
    memcpy(c, b, n);
    c[8] = 0; /* empty address */
    assert_int_equal(vault_frame_check_request(c, n), -1);
    memcpy(c, b, n);
    c[9] = 0; /* NUL in the address */
    assert_int_equal(vault_frame_check_request(c, n), -1);
    memcpy(c, b, n);
    c[n] = 0; /* one byte too many */
    assert_int_equal(vault_frame_check_request(c, n + 1), -1);
    /* a password over the limit */
    char *big = malloc(VAULT_PASSWORD_MAX + 2);
    memset(big, 'x', VAULT_PASSWORD_MAX + 1);
    big[VAULT_PASSWORD_MAX + 1] = 0;
    n = hand_login(b, &u, big);
    assert_int_equal(vault_frame_check_request(b, n), -1);
    big[VAULT_PASSWORD_MAX] = 0;
    n = hand_login(b, &u, big);
    assert_int_equal(vault_frame_check_request(b, n), 0);
    free(big);
    /* OPEN, LOGOUT, STATS by hand */
    uint8_t o[8 + 8 + PC_MSG_PREFIX_BYTES] = {1, 2, 0, 8 + PC_MSG_PREFIX_BYTES, 0, 0, 0, 1};
    assert_int_equal(vault_frame_check_request(o, sizeof o), 0);
    assert_int_equal(vault_frame_check_request(o, sizeof o - 1), -1);
    uint8_t lo[16] = {1, 3, 0, 8, 0, 0, 0, 1};
    assert_int_equal(vault_frame_check_request(lo, sizeof lo), 0);
    uint8_t sts[8] = {1, 4, 0, 0, 0, 0, 0, 1};
    assert_int_equal(vault_frame_check_request(sts, sizeof sts), 0);
    /* replies are not requests, and the other way round */
    uint8_t fail[9] = {1, 0xff, 0, 1, 0, 0, 0, 1, VAULT_FAIL_BUSY};
    assert_int_equal(vault_frame_check_request(fail, sizeof fail), -1);
    assert_int_equal(vault_frame_check_reply(fail, sizeof fail), 0);
    fail[8] = 0;
    assert_int_equal(vault_frame_check_reply(fail, sizeof fail), -1);
    fail[8] = VAULT_FAIL_ENVELOPE + 1;
    assert_int_equal(vault_frame_check_reply(fail, sizeof fail), -1);
    assert_int_equal(vault_frame_check_reply(sts, sizeof sts), -1);
    assert_int_equal(vault_frame_check_request(NULL, 0), -1);
    assert_string_equal(vault_fail_str(VAULT_FAIL_PASSWORD), "wrong password");
}

/* Whatever the network process sends that is not a well-formed request ends the connection. */
static void test_malformed_drops_peer(void **state)
{
    (void)state;
    user u;
    user_new(&u, "mia@example.jp", "pw", OPS, MEM, auth_sk);
    uint8_t good[4096];
    size_t gn = hand_login(good, &u, "pw");
    uint8_t frames[6][4096];
    size_t lens[6];
    memcpy(frames[0], good, gn);
    frames[0][0] = 0; /* version */
    lens[0] = gn;
    memcpy(frames[1], good, gn);
    lens[1] = gn - 1; /* truncated */
    uint8_t unk[8] = {1, 0x42, 0, 0, 0, 0, 0, 1};
    memcpy(frames[2], unk, 8);
    lens[2] = 8;
    memset(frames[3], 'A', 3000); /* longer than any frame */
    lens[3] = 3000;
    memcpy(frames[4], good, 3);
    lens[4] = 3;
    uint8_t reply[9] = {1, 0xff, 0, 1, 0, 0, 0, 1, 1}; /* a reply sent as a request */
    memcpy(frames[5], reply, 9);
    lens[5] = 9;
    for (int i = 0; i < 6; i++) {
        vfix f;
        cfg_test(&f.cfg);
        vstart(&f);
        /* a session first, so the drop is seen to wipe keys too */
        vault_reply r = login(&f, &u, "pw", NULL);
        expect_ok(&r, &u);
        assert_int_equal(send(f.sv[1], frames[i], lens[i], MSG_NOSIGNAL), (ssize_t)lens[i]);
        pthread_join(f.th, NULL);
        assert_int_equal(f.rc, -1);
        /* the vault has stopped reading: the client sees the end */
        assert_int_equal(close(f.sv[0]), 0);
        assert_int_equal(vault_client_on_readable(f.c, collect, &f), -1);
        assert_int_equal(vault_client_send_stats(f.c), 0);
        vault_client_free(f.c);
        close(f.sv[1]);
    }
}

typedef struct inflight {
    uint32_t next; /* id expected next: replies come in request order */
    size_t seen;
    int bad;
} inflight;

static void count_open(void *arg, const vault_reply *r)
{
    inflight *in = arg;
    if (r->type != VAULT_REPLY_OPEN || r->id != in->next)
        in->bad++;
    in->next++;
    in->seen++;
}

/* Requests written faster than the vault answers, and replies left unread for a while: the
 * queues on both sides absorb it and every request gets exactly one reply. */
static void test_many_in_flight(void **state)
{
    (void)state;
    user u;
    user_new(&u, "nina@example.jp", "pw", OPS, MEM, auth_sk);
    vfix f;
    cfg_test(&f.cfg);
    vstart(&f);
    vault_reply l = login(&f, &u, "pw", NULL);
    expect_ok(&l, &u);
    buf env;
    pc_msg_meta m;
    uint8_t msg[10] = "hello\n";
    seal_to(&u, msg, 6, &env, &m);
    enum { K = 2000 };
    uint32_t first = 0, last = 0;
    for (int i = 0; i < K; i++) {
        uint32_t id = vault_client_send_open(f.c, l.u.login.session, env.d);
        assert_int_not_equal(id, 0);
        if (!first)
            first = id;
        last = id;
    }
    inflight in = {first, 0, 0};
    double deadline = now_s() + 15;
    while (in.seen < K) {
        assert_true(now_s() < deadline);
        struct pollfd p = {vault_client_fd(f.c), (short)(POLLIN | (vault_client_wants_write(f.c) ? POLLOUT : 0)), 0};
        assert_true(poll(&p, 1, 1000) >= 0);
        if (p.revents & POLLOUT)
            assert_int_equal(vault_client_on_writable(f.c), 0);
        if (p.revents & POLLIN)
            assert_int_equal(vault_client_on_readable(f.c, count_open, &in), 0);
    }
    assert_int_equal(in.bad, 0);
    assert_int_equal(last, first + K - 1);
    assert_int_equal(stats(&f).opens, K);
    assert_int_equal(vstop(&f), 0);
    free(env.d);
}

static void test_client_bounds(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    vault_client *c = vault_client_new(sv[1]);
    assert_non_null(c);
    uint8_t rec[PC_KEYRECORD_MAX + 1] = {0};
    char addr[300];
    memset(addr, 'a', sizeof addr - 1);
    addr[sizeof addr - 1] = 0;
    assert_int_equal(vault_client_send_login(c, addr, NULL, rec, 10, "pw", 2), 0);
    assert_int_equal(vault_client_send_login(c, "", NULL, rec, 10, "pw", 2), 0);
    assert_int_equal(vault_client_send_login(c, "a@b", NULL, NULL, 10, "pw", 2), 0); /* 0 bytes: no such user */
    assert_int_equal(vault_client_send_login(c, "a@b", NULL, rec, sizeof rec, "pw", 2), 0);
    assert_int_equal(vault_client_send_login(c, "a@b", NULL, rec, 10, "pw", VAULT_PASSWORD_MAX + 1), 0);
    uint32_t id = vault_client_send_login(c, "a@b", NULL, rec, 10, "", 0);
    assert_int_not_equal(id, 0);
    /* what went out is a well-formed request */
    uint8_t b[4096];
    ssize_t n = recv(sv[0], b, sizeof b, 0);
    assert_true(n > 0);
    assert_int_equal(vault_frame_check_request(b, (size_t)n), 0);
    /* the vault's end closes: sends fail, reads report it */
    close(sv[0]);
    assert_int_equal(vault_client_send_stats(c), 0);
    assert_int_equal(vault_client_on_readable(c, NULL, NULL), -1);
    vault_client_free(c);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_and_cache),
        cmocka_unit_test(test_wrong_password_delay),
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_forged_records),
        cmocka_unit_test(test_pool_bound),
        cmocka_unit_test(test_concurrent_logins_coalesce),
        cmocka_unit_test(test_grace_and_wipe),
        cmocka_unit_test(test_password_change),
        cmocka_unit_test(test_throttling),
        cmocka_unit_test(test_parallel_guesses_count_at_once),
        cmocka_unit_test(test_other_sources_failures),
        cmocka_unit_test(test_unknown_user_looks_like_a_wrong_password),
        cmocka_unit_test(test_logout_unknown),
        cmocka_unit_test(test_frame_decoder),
        cmocka_unit_test(test_malformed_drops_peer),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_client_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
