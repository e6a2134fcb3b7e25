/* userstate: flags, keywords, removal, the metadata cache, pruning, and the encrypted file.
 * The file checks rebuild the name, header and plaintext layout from docs/formats.md
 * section 5 independently, so the code is tested against the spec and not only itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "userstate/userstate.h"
#include "userstate/userstate_internal.h"

#define ALICE "alice@example.jp"
#define BOB "bob@example.jp"

static char dir[] = "/tmp/postern-test-userstate-XXXXXX";
static uint8_t key[US_KEY_BYTES], key2[US_KEY_BYTES];

/* ---- helpers ---- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir + strlen(dir) - 6, "XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void msgid(unsigned i, char out[64])
{
    uint8_t h[20];
    crypto_generichash(h, sizeof h, (const uint8_t *)&i, sizeof i, NULL, 0);
    char hex[41];
    for (int k = 0; k < 20; k++)
        snprintf(hex + 2 * k, 3, "%02x", h[k]);
    snprintf(out, 64, "<m.%s@postern.invalid>", hex);
}

static userstate *open_ok(const char *address, const uint8_t *k)
{
    userstate *st = NULL;
    char err[512] = "";
    int rc = userstate_open(dir, address, k, &st, err, sizeof err);
    if (rc != US_OK)
        fail_msg("open: %s (%s)", userstate_strerror(rc), err);
    return st;
}

static int open_rc(const char *address, const uint8_t *k)
{
    userstate *st = NULL;
    char err[512] = "";
    int rc = userstate_open(dir, address, k, &st, err, sizeof err);
    if (rc == US_OK)
        userstate_close(st);
    else {
        assert_null(st);
        assert_true(err[0] != '\0');
    }
    return rc;
}

static void save_ok(userstate *st)
{
    char err[512] = "";
    int rc = userstate_save(st, err, sizeof err);
    if (rc != US_OK)
        fail_msg("save: %s (%s)", userstate_strerror(rc), err);
    assert_false(userstate_dirty(st));
}

/* The state file's path as the spec names it: BLAKE2b-16("postern userstate v1" 0 address). */
/* The file name of docs/formats.md 5.1: keyed with the state key k (v2), or unkeyed (k NULL,
 * the legacy v1 name). */
static void spec_path(const char *address, const uint8_t *k, char out[512], uint8_t hash[16])
{
    const char *ctx = k ? "postern userstate v2" : "postern userstate v1";
    uint8_t in[32 + 256];
    memcpy(in, ctx, strlen(ctx) + 1);
    memcpy(in + strlen(ctx) + 1, address, strlen(address));
    crypto_generichash(hash, 16, in, strlen(ctx) + 1 + strlen(address), k, k ? US_KEY_BYTES : 0);
    char hex[33];
    for (int k = 0; k < 16; k++)
        snprintf(hex + 2 * k, 3, "%02x", hash[k]);
    snprintf(out, 512, "%s/users/%s.state", dir, hex);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* Opens the file with nothing but the spec: returns the plaintext (malloc'd) or NULL. */
static uint8_t *spec_decrypt(const char *address, const uint8_t *k, size_t *plen)
{
    char path[512];
    uint8_t hash[16];
    spec_path(address, k, path, hash);
    size_t len;
    uint8_t *f = slurp(path, &len);
    assert_true(len >= 5 + 24 + 16);
    assert_memory_equal(f, "PSTU", 4);
    assert_int_equal(f[4], 3);
    uint8_t ad[21];
    memcpy(ad, f, 5);
    memcpy(ad + 5, hash, 16);
    uint8_t *plain = malloc(len);
    unsigned long long n;
    int r = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &n, NULL, f + 29, len - 29, ad, sizeof ad, f + 5, k);
    free(f);
    if (r != 0) {
        free(plain);
        return NULL;
    }
    *plen = (size_t)n;
    return plain;
}

static void fill_meta(userstate_meta *m, unsigned i, uint8_t *env, size_t envlen, uint8_t *bs, size_t bslen)
{
    for (size_t k = 0; k < envlen; k++)
        env[k] = (uint8_t)('a' + (i + k) % 26);
    for (size_t k = 0; k < bslen; k++)
        bs[k] = (uint8_t)('A' + (i * 7 + k) % 26);
    *m = (userstate_meta){
        .arrival = 1700000000 + (int64_t)i,
        .tz_minutes = (int16_t)(i % 2 ? -300 : 540),
        .raw_size = 1000 + i,
        .crlf_size = 1020 + i,
        .envelope = env,
        .envelope_len = envlen,
        .bodystructure = bs,
        .bodystructure_len = bslen,
    };
}

/* Every entry of a must read the same from b. */
typedef struct {
    const userstate *other;
    size_t seen;
} cmp_arg;

static int cmp_entry(void *arg, const char *id, const userstate_msg *m)
{
    cmp_arg *c = arg;
    userstate_msg o;
    assert_int_equal(userstate_get(c->other, id, &o), 1);
    assert_int_equal(m->flags, o.flags);
    assert_memory_equal(m->keywords, o.keywords, sizeof o.keywords);
    assert_int_equal(m->removed, o.removed);
    assert_int_equal(m->modseq, o.modseq);
    assert_int_equal(m->has_meta, o.has_meta);
    if (m->has_meta) {
        assert_int_equal(m->meta.arrival, o.meta.arrival);
        assert_int_equal(m->meta.tz_minutes, o.meta.tz_minutes);
        assert_int_equal(m->meta.raw_size, o.meta.raw_size);
        assert_int_equal(m->meta.crlf_size, o.meta.crlf_size);
        assert_int_equal(m->meta.envelope_len, o.meta.envelope_len);
        assert_int_equal(m->meta.bodystructure_len, o.meta.bodystructure_len);
        if (m->meta.envelope_len)
            assert_memory_equal(m->meta.envelope, o.meta.envelope, o.meta.envelope_len);
        if (m->meta.bodystructure_len)
            assert_memory_equal(m->meta.bodystructure, o.meta.bodystructure, o.meta.bodystructure_len);
    }
    c->seen++;
    return 0;
}

static void assert_same(const userstate *a, const userstate *b)
{
    assert_int_equal(userstate_count(a), userstate_count(b));
    assert_int_equal(userstate_modseq(a), userstate_modseq(b));
    assert_int_equal(userstate_keyword_count(a), userstate_keyword_count(b));
    for (unsigned k = 0; k < userstate_keyword_count(a); k++)
        assert_string_equal(userstate_keyword_name(a, k), userstate_keyword_name(b, k));
    cmp_arg c = {b, 0};
    assert_int_equal(userstate_foreach(a, cmp_entry, &c), 0);
    assert_int_equal(c.seen, userstate_count(a));
}

/* A small state with a bit of everything. */
static userstate *populate(void)
{
    userstate *st = open_ok(ALICE, key);
    unsigned junk, work;
    assert_int_equal(userstate_keyword(st, "$Junk", &junk), US_OK);
    assert_int_equal(userstate_keyword(st, "Work", &work), US_OK);
    char id[64];
    for (unsigned i = 0; i < 40; i++) {
        msgid(i, id);
        uint8_t kw[US_KEYWORD_SET_BYTES] = {0};
        us_kw_put(kw, i % 2 ? junk : work, 1);
        assert_int_equal(userstate_store(st, id, US_ADD, i % (US_FLAGS_ALL + 1), i % 3 ? kw : NULL), US_OK);
        if (i % 5 == 0) {
            uint8_t env[100], bs[50];
            userstate_meta m;
            fill_meta(&m, i, env, i % 10 ? sizeof env : 0, bs, sizeof bs);
            assert_int_equal(userstate_meta_set(st, id, &m), US_OK);
        }
        if (i % 7 == 3)
            assert_int_equal(userstate_remove(st, id), US_OK);
    }
    return st;
}

/* ---- tests ---- */

static void test_empty(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    assert_int_equal(userstate_count(st), 0);
    assert_int_equal(userstate_modseq(st), 0);
    assert_int_equal(userstate_keyword_count(st), 0);
    assert_false(userstate_dirty(st));
    userstate_msg m;
    memset(&m, 0xff, sizeof m);
    char id[64];
    msgid(1, id);
    assert_int_equal(userstate_get(st, id, &m), 0);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.removed, 0);
    assert_int_equal(m.modseq, 0);
    assert_int_equal(m.has_meta, 0);
    save_ok(st); /* not dirty: nothing written, not even the directory */
    struct stat sb;
    char users[600];
    snprintf(users, sizeof users, "%s/users", dir);
    assert_int_equal(stat(users, &sb), -1);
    userstate_close(st);
    userstate_close(NULL);
}

static void test_flags(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    char id[64];
    msgid(1, id);
    userstate_msg m;
    assert_int_equal(userstate_store(st, id, US_ADD, US_SEEN | US_FLAGGED, NULL), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_int_equal(m.flags, US_SEEN | US_FLAGGED);
    assert_int_equal(m.modseq, 1);
    assert_true(userstate_dirty(st));
    assert_int_equal(userstate_store(st, id, US_REMOVE, US_SEEN | US_DRAFT, NULL), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_int_equal(m.flags, US_FLAGGED);
    assert_int_equal(m.modseq, 2);
    assert_int_equal(userstate_store(st, id, US_REPLACE, US_ANSWERED | US_DELETED, NULL), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_int_equal(m.flags, US_ANSWERED | US_DELETED);
    assert_int_equal(userstate_modseq(st), 3);
    /* a STORE that changes nothing moves nothing */
    save_ok(st);
    assert_int_equal(userstate_store(st, id, US_ADD, US_ANSWERED, NULL), US_OK);
    assert_int_equal(userstate_store(st, id, US_REMOVE, US_SEEN, NULL), US_OK);
    assert_false(userstate_dirty(st));
    assert_int_equal(userstate_modseq(st), 3);
    /* clearing flags on an unknown message creates no entry */
    msgid(2, id);
    assert_int_equal(userstate_store(st, id, US_REMOVE, US_SEEN, NULL), US_OK);
    assert_int_equal(userstate_count(st), 1);
    /* bad arguments */
    assert_int_equal(userstate_store(st, id, US_ADD, 0x20, NULL), US_EINVAL);
    assert_int_equal(userstate_store(st, id, (enum userstate_op)7, US_SEEN, NULL), US_EINVAL);
    const char *bad[] = {"", "m@x", "<>", "<a b@x>", "<a>b@x>", "<a@x", "a@x>", "<a\x7f@x>", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(userstate_store(st, bad[i], US_ADD, US_SEEN, NULL), US_EINVAL);
        assert_int_equal(userstate_remove(st, bad[i]), US_EINVAL);
        assert_int_equal(userstate_get(st, bad[i], &m), 0);
    }
    assert_int_equal(userstate_store(st, NULL, US_ADD, US_SEEN, NULL), US_EINVAL);
    char longid[US_MSGID_MAX + 2];
    memset(longid, 'a', sizeof longid);
    longid[0] = '<';
    longid[US_MSGID_MAX - 1] = '>';
    longid[US_MSGID_MAX] = '\0';
    assert_int_equal(userstate_store(st, longid, US_ADD, US_SEEN, NULL), US_OK); /* 250 bytes */
    longid[US_MSGID_MAX - 1] = 'a';
    longid[US_MSGID_MAX] = '>';
    longid[US_MSGID_MAX + 1] = '\0';
    assert_int_equal(userstate_store(st, longid, US_ADD, US_SEEN, NULL), US_EINVAL); /* 251 */
    assert_int_equal(userstate_count(st), 2);
    userstate_close(st);
}

static void test_keywords(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    unsigned a, b, c;
    assert_int_equal(userstate_keyword(st, "$Forwarded", &a), US_OK);
    assert_int_equal(userstate_keyword(st, "NonJunk", &b), US_OK);
    assert_int_equal(userstate_keyword(st, "$forwarded", &c), US_OK); /* case-insensitive */
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(c, a);
    assert_string_equal(userstate_keyword_name(st, a), "$Forwarded"); /* first spelling kept */
    assert_int_equal(userstate_keyword_find(st, "NONJUNK"), 1);
    assert_int_equal(userstate_keyword_find(st, "other"), -1);
    assert_null(userstate_keyword_name(st, 2));
    const char *bad[] = {"", "a b", "\\Seen", "a(", "a)", "a{", "a%", "a*", "a\"", "a]", "\x01", "caf\xc3\xa9", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(userstate_keyword(st, bad[i], &c), US_EINVAL);
        assert_int_equal(userstate_keyword_find(st, bad[i]), -1);
    }
    assert_int_equal(userstate_keyword(st, "a[b]", &c), US_EINVAL);
    assert_int_equal(userstate_keyword(st, "a[b", &c), US_OK); /* '[' is an atom char */

    char id[64];
    msgid(1, id);
    uint8_t set[US_KEYWORD_SET_BYTES] = {0};
    us_kw_put(set, a, 1);
    us_kw_put(set, b, 1);
    assert_int_equal(userstate_store(st, id, US_ADD, 0, set), US_OK);
    userstate_msg m;
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_true(us_kw_test(m.keywords, a));
    assert_true(us_kw_test(m.keywords, b));
    assert_int_equal(m.flags, 0);
    memset(set, 0, sizeof set);
    us_kw_put(set, a, 1);
    assert_int_equal(userstate_store(st, id, US_REMOVE, 0, set), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_false(us_kw_test(m.keywords, a));
    assert_true(us_kw_test(m.keywords, b));
    assert_int_equal(userstate_store(st, id, US_REPLACE, US_SEEN, NULL), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_false(us_kw_test(m.keywords, b));
    assert_int_equal(m.flags, US_SEEN);
    assert_int_equal(m.modseq, 3);
    /* an index the table does not have */
    memset(set, 0, sizeof set);
    us_kw_put(set, 3, 1);
    assert_int_equal(userstate_store(st, id, US_ADD, 0, set), US_EINVAL);
    userstate_close(st);
}

static void test_keyword_limits(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    char name[US_KEYWORD_LEN_MAX + 2];
    memset(name, 'k', sizeof name);
    name[US_KEYWORD_LEN_MAX + 1] = '\0';
    unsigned idx;
    assert_int_equal(userstate_keyword(st, name, &idx), US_EINVAL); /* 65 bytes */
    name[US_KEYWORD_LEN_MAX] = '\0';
    for (unsigned i = 0; i < US_KEYWORD_MAX; i++) {
        snprintf(name + US_KEYWORD_LEN_MAX - 4, 5, "%04u", i); /* 64 bytes each */
        assert_int_equal(userstate_keyword(st, name, &idx), US_OK);
        assert_int_equal(idx, i);
    }
    assert_int_equal(userstate_keyword_count(st), US_KEYWORD_MAX);
    assert_int_equal(userstate_keyword(st, "one-too-many", &idx), US_ELIMIT);
    assert_int_equal(userstate_keyword(st, name, &idx), US_OK); /* existing ones still resolve */
    assert_int_equal(idx, US_KEYWORD_MAX - 1);
    /* every keyword on one message, through a save */
    char id[64];
    msgid(9, id);
    uint8_t all[US_KEYWORD_SET_BYTES];
    memset(all, 0xff, sizeof all);
    assert_int_equal(userstate_store(st, id, US_ADD, US_FLAGS_ALL, all), US_OK);
    save_ok(st);
    userstate *again = open_ok(ALICE, key);
    assert_same(st, again);
    userstate_msg m;
    assert_int_equal(userstate_get(again, id, &m), 1);
    assert_memory_equal(m.keywords, all, sizeof all);
    userstate_close(again);
    userstate_close(st);
}

static void test_remove(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    char id[64];
    msgid(1, id);
    uint8_t env[10] = "envelope", bs[10] = "body";
    userstate_meta meta;
    fill_meta(&meta, 1, env, sizeof env, bs, sizeof bs);
    assert_int_equal(userstate_store(st, id, US_ADD, US_SEEN, NULL), US_OK);
    assert_int_equal(userstate_meta_set(st, id, &meta), US_OK);
    assert_int_equal(userstate_remove(st, id), US_OK);
    userstate_msg m;
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_true(m.removed);
    assert_false(m.has_meta); /* removal drops the cache */
    assert_int_equal(m.modseq, 2);
    assert_int_equal(m.flags, US_SEEN);
    save_ok(st);
    assert_int_equal(userstate_remove(st, id), US_OK); /* again: nothing changes */
    assert_int_equal(userstate_meta_set(st, id, &meta), US_OK); /* no cache for removed ones */
    assert_false(userstate_dirty(st));
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_false(m.has_meta);
    /* removing a message the state has never seen (POP3 DELE of an untouched message) */
    msgid(2, id);
    assert_int_equal(userstate_remove(st, id), US_OK);
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_true(m.removed);
    assert_int_equal(m.modseq, 3);
    save_ok(st);
    userstate *again = open_ok(ALICE, key);
    assert_same(st, again);
    userstate_close(again);
    userstate_close(st);
}

static void test_meta(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    char id[64];
    msgid(1, id);
    uint8_t *env = malloc(US_BLOB_MAX + 1), *bs = malloc(US_BLOB_MAX + 1);
    userstate_meta meta;
    fill_meta(&meta, 7, env, US_BLOB_MAX, bs, 300);
    meta.arrival = -1; /* before 1970 and negative zones survive */
    meta.tz_minutes = -720;
    meta.raw_size = UINT64_MAX;
    assert_int_equal(userstate_meta_set(st, id, &meta), US_OK);
    assert_int_equal(userstate_modseq(st), 0); /* a cache, not a change */
    assert_true(userstate_dirty(st));
    userstate_msg m;
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_true(m.has_meta);
    assert_int_equal(m.modseq, 0);
    assert_int_equal(m.meta.arrival, -1);
    assert_int_equal(m.meta.tz_minutes, -720);
    assert_int_equal(m.meta.raw_size, UINT64_MAX);
    assert_int_equal(m.meta.crlf_size, 1027);
    assert_int_equal(m.meta.envelope_len, US_BLOB_MAX);
    assert_memory_equal(m.meta.envelope, env, US_BLOB_MAX);
    assert_memory_equal(m.meta.bodystructure, bs, 300);
    save_ok(st);
    /* the same facts again do not make the state dirty; different ones do */
    assert_int_equal(userstate_meta_set(st, id, &meta), US_OK);
    assert_false(userstate_dirty(st));
    meta.bodystructure_len = 0;
    assert_int_equal(userstate_meta_set(st, id, &meta), US_OK);
    assert_true(userstate_dirty(st));
    assert_int_equal(userstate_get(st, id, &m), 1);
    assert_int_equal(m.meta.bodystructure_len, 0);
    /* bounds */
    meta.envelope_len = US_BLOB_MAX + 1;
    assert_int_equal(userstate_meta_set(st, id, &meta), US_EINVAL);
    meta.envelope_len = 5;
    meta.envelope = NULL;
    assert_int_equal(userstate_meta_set(st, id, &meta), US_EINVAL);
    assert_int_equal(userstate_meta_set(st, "bad", &meta), US_EINVAL);
    assert_int_equal(userstate_meta_set(st, id, NULL), US_EINVAL);
    save_ok(st);
    userstate *again = open_ok(ALICE, key);
    assert_same(st, again);
    userstate_close(again);
    userstate_close(st);
    free(env);
    free(bs);
}

static void test_save_reopen(void **state)
{
    (void)state;
    userstate *st = populate();
    assert_int_equal(userstate_count(st), 40);
    save_ok(st);
    userstate *again = open_ok(ALICE, key);
    assert_same(st, again);
    assert_same(again, st);
    assert_false(userstate_dirty(again));
    /* the address is canonicalised: another spelling is the same state */
    userstate *upper = open_ok("Alice@Example.JP", key);
    assert_same(st, upper);
    char a[600], b[600], err[256];
    assert_int_equal(userstate_path(dir, "ALICE@example.jp", key, a, sizeof a, err, sizeof err), US_OK);
    uint8_t hash[16];
    spec_path(ALICE, key, b, hash);
    assert_string_equal(a, b);
    assert_int_equal(userstate_path(dir, "ALICE@example.jp", key, a, 10, err, sizeof err), US_EINVAL);
    assert_int_equal(open_rc("not an address", key), US_EINVAL);
    assert_int_equal(open_rc("a@[10.0.0.1]", key), US_EINVAL);
    userstate_close(upper);
    userstate_close(again);
    userstate_close(st);
}

static void test_spec_layout(void **state)
{
    (void)state;
    userstate *st = open_ok(ALICE, key);
    unsigned kw;
    assert_int_equal(userstate_keyword(st, "Work", &kw), US_OK);
    uint8_t set[US_KEYWORD_SET_BYTES] = {0};
    us_kw_put(set, kw, 1);
    assert_int_equal(userstate_store(st, "<a@b>", US_ADD, US_SEEN | US_DRAFT, set), US_OK);
    uint8_t env[3] = {'E', 'N', 'V'}, hdr[2] = {'H', 'D'};
    userstate_meta m = {.arrival = 0x0102030405060708, .tz_minutes = -60, .raw_size = 5, .crlf_size = 6,
                        .envelope = env, .envelope_len = 3, .header_set = 7, .headers = hdr, .headers_len = 2};
    assert_int_equal(userstate_meta_set(st, "<a@b>", &m), US_OK);
    assert_int_equal(userstate_remove(st, "<c@d>"), US_OK);
    userstate_recent_raise(st, 0x01020304, 9);
    save_ok(st);
    size_t plen;
    uint8_t *plain = spec_decrypt(ALICE, key, &plen);
    assert_non_null(plain);
    static const uint8_t want[] = {
        0, 0, 0, 0, 0, 0, 0, 2,        /* modseq */
        0, 1, 4, 'W', 'o', 'r', 'k',   /* keywords */
        0, 0, 0, 2,                    /* entries */
        5, '<', 'a', '@', 'b', '>', 0x11, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0,
        1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xc4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 6,
        0, 0, 0, 3, 'E', 'N', 'V', 0, 0, 0, 0, /* envelope, bodystructure */
        7, 0, 0, 0, 2, 'H', 'D',              /* header set, header cache (version 3) */
        5, '<', 'c', '@', 'd', '>', 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0,
        1, 1, 2, 3, 4, 0, 0, 0, 9,     /* \Recent marks: UIDVALIDITY, UID */
    };
    assert_int_equal(plen, sizeof want);
    assert_memory_equal(plain, want, sizeof want);
    free(plain);
    /* a fresh nonce on every save */
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    size_t l1, l2;
    uint8_t *f1 = slurp(path, &l1);
    assert_int_equal(userstate_store(st, "<a@b>", US_ADD, US_FLAGGED, NULL), US_OK);
    assert_int_equal(userstate_store(st, "<a@b>", US_REMOVE, US_FLAGGED, NULL), US_OK);
    save_ok(st);
    uint8_t *f2 = slurp(path, &l2);
    assert_int_equal(l1, l2);
    assert_memory_not_equal(f1 + 5, f2 + 5, 24);
    free(f1);
    free(f2);
    userstate_close(st);
}

static void test_no_write_when_clean(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    st = open_ok(ALICE, key);
    char id[64];
    msgid(1, id);
    assert_int_equal(userstate_store(st, id, US_ADD, 0, NULL), US_OK); /* a no-op STORE */
    save_ok(st);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_mtim.tv_sec, 1000000000);
    assert_int_equal(after.st_ino, before.st_ino);
    /* a real change is written (a new inode through the rename) */
    assert_int_equal(userstate_store(st, id, US_REPLACE, US_DRAFT, NULL), US_OK);
    save_ok(st);
    assert_int_equal(stat(path, &after), 0);
    assert_true(after.st_mtim.tv_sec > 1000000000);
    assert_true(after.st_ino != before.st_ino);
    userstate_close(st);
}

/* A new key pair for the address (user del, then user add) has its own file: the old key's
 * state neither locks the user out nor comes back (issue 9, item 2). */
static void test_new_key_new_state(void **state)
{
    (void)state;
    userstate *st = populate();
    uint32_t n = userstate_count(st);
    assert_true(n > 0);
    save_ok(st);
    userstate_close(st);
    st = open_ok(ALICE, key2);
    assert_int_equal(userstate_count(st), 0);
    assert_null(userstate_warning(st));
    userstate_close(st);
    st = open_ok(ALICE, key);
    assert_int_equal(userstate_count(st), n);
    userstate_close(st);
}

/* Writes an empty state (counter 0, no keywords, no entries) under the v1 name with key k. */
static void write_legacy(const char *address, const uint8_t *k, char path[512])
{
    uint8_t hash[16], plain[14] = {0}, file[29 + sizeof plain + 16], ad[21];
    spec_path(address, NULL, path, hash);
    memcpy(file, "PSTU", 4);
    file[4] = 1;
    randombytes_buf(file + 5, 24);
    memcpy(ad, file, 5);
    memcpy(ad + 5, hash, 16);
    crypto_aead_xchacha20poly1305_ietf_encrypt(file + 29, NULL, plain, sizeof plain, ad, sizeof ad, NULL, file + 5, k);
    char users[600];
    snprintf(users, sizeof users, "%s/users", dir);
    mkdir(users, 0700);
    spit(path, file, sizeof file);
}

static void test_legacy_file(void **state)
{
    (void)state;
    char legacy[512], v2[512], stale[600];
    uint8_t hash[16];
    /* this key's state from before v2 names: migrated */
    write_legacy(ALICE, key, legacy);
    userstate *st = open_ok(ALICE, key);
    assert_null(userstate_warning(st));
    userstate_close(st);
    spec_path(ALICE, key, v2, hash);
    assert_int_equal(access(v2, F_OK), 0);
    assert_int_equal(access(legacy, F_OK), -1);
    /* a previous key's: set aside, with a warning, and the user starts empty */
    write_legacy(ALICE, key, legacy);
    st = open_ok(ALICE, key2);
    assert_int_equal(userstate_count(st), 0);
    assert_non_null(userstate_warning(st));
    assert_non_null(strstr(userstate_warning(st), ".stale"));
    userstate_close(st);
    snprintf(stale, sizeof stale, "%s.stale", legacy);
    assert_int_equal(access(stale, F_OK), 0);
    assert_int_equal(access(legacy, F_OK), -1);
    unlink(stale);
}

static void test_tampered(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    size_t len;
    uint8_t *orig = slurp(path, &len);
    for (size_t i = 0; i < len; i++) {
        orig[i] ^= (uint8_t)(1u << (i % 8));
        spit(path, orig, len);
        int rc = open_rc(ALICE, key);
        if (rc != (i < 5 ? US_EFORMAT : US_EAUTH))
            fail_msg("byte %zu flipped: %s", i, userstate_strerror(rc));
        orig[i] ^= (uint8_t)(1u << (i % 8));
    }
    /* appended garbage */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, orig, len);
    longer[len] = 0;
    spit(path, longer, len + 1);
    assert_int_equal(open_rc(ALICE, key), US_EAUTH);
    free(longer);
    spit(path, orig, len);
    assert_int_equal(open_rc(ALICE, key), US_OK);
    free(orig);
}

static void test_truncated(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    size_t len;
    uint8_t *orig = slurp(path, &len);
    for (size_t n = 0; n < len; n++) {
        spit(path, orig, n);
        int rc = open_rc(ALICE, key);
        if (rc != (n < 5 + 24 + 16 ? US_EFORMAT : US_EAUTH))
            fail_msg("truncated to %zu: %s", n, userstate_strerror(rc));
    }
    free(orig);
}

static void test_other_users_file(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    char a[512], b[512];
    uint8_t hash[16];
    spec_path(ALICE, key, a, hash);
    spec_path(BOB, key, b, hash);
    assert_int_equal(rename(a, b), 0);
    /* even under the same key: the file name's hash is in the associated data */
    assert_int_equal(open_rc(BOB, key), US_EAUTH);
    assert_int_equal(open_rc(ALICE, key), US_OK); /* Alice's file is gone: empty */
}

static void test_bad_header_and_reset(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    size_t len;
    uint8_t *f = slurp(path, &len);
    f[4] = US_VERSION + 1; /* a later version this build does not know */
    spit(path, f, len);
    free(f);
    userstate *out = (userstate *)1;
    char err[512] = "";
    assert_int_equal(userstate_open(dir, ALICE, key, &out, err, sizeof err), US_EFORMAT);
    assert_null(out);
    assert_non_null(strstr(err, "version"));
    /* the administrator's reset; a second reset of nothing is fine */
    assert_int_equal(userstate_reset(dir, ALICE, key, err, sizeof err), US_OK);
    assert_int_equal(userstate_reset(dir, ALICE, key, err, sizeof err), US_OK);
    st = open_ok(ALICE, key);
    assert_int_equal(userstate_count(st), 0);
    userstate_close(st);
    /* a directory where the file should be */
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(open_rc(ALICE, key), US_EIO);
    rmdir(path);
}

static void test_save_failure_stays_dirty(void **state)
{
    (void)state;
    char users[600];
    snprintf(users, sizeof users, "%s/users", dir);
    userstate *st = populate();
    spit(users, (const uint8_t *)"x", 1); /* users/ is a file: nothing can be created in it */
    char err[512] = "";
    assert_int_equal(userstate_save(st, err, sizeof err), US_EIO);
    assert_true(err[0] != '\0');
    assert_true(userstate_dirty(st));
    assert_int_equal(unlink(users), 0);
    save_ok(st);
    userstate_close(st);
}

/* Sealing in one place, writing in another (the gateway's periodic save): the snapshot is
 * what gets written, changes made after it stay dirty, a failed write is retried. */
static void test_seal_then_write(void **state)
{
    (void)state;
    char err[512] = "";
    userstate *st = populate();
    userstate_sealed *snap = NULL;
    assert_int_equal(userstate_seal(st, &snap, err, sizeof err), US_OK);
    assert_non_null(snap);
    assert_false(userstate_dirty(st));
    userstate_sealed *none = NULL; /* nothing changed since: nothing to write */
    assert_int_equal(userstate_seal(st, &none, err, sizeof err), US_OK);
    assert_null(none);
    char m[64];
    msgid(3, m);
    assert_int_equal(userstate_store(st, m, US_ADD, US_FLAGGED, NULL), US_OK); /* after the snapshot */
    assert_true(userstate_dirty(st));
    assert_int_equal(userstate_sealed_write(snap, err, sizeof err), US_OK);
    userstate_sealed_free(snap);
    userstate *disk = open_ok(ALICE, key);
    userstate_msg got;
    userstate_get(disk, m, &got);
    assert_false(got.flags & US_FLAGGED); /* the snapshot, not the later change */
    userstate_close(disk);
    /* a failed write: marked dirty again, and the next save writes everything */
    char users[600], aside[620];
    snprintf(users, sizeof users, "%s/users", dir);
    snprintf(aside, sizeof aside, "%s/users.aside", dir);
    assert_int_equal(userstate_seal(st, &snap, err, sizeof err), US_OK);
    assert_int_equal(rename(users, aside), 0);
    spit(users, (const uint8_t *)"x", 1); /* users/ is a file: the write cannot create anything */
    assert_int_equal(userstate_sealed_write(snap, err, sizeof err), US_EIO);
    assert_true(err[0] != '\0');
    userstate_sealed_free(snap);
    assert_int_equal(unlink(users), 0);
    assert_int_equal(rename(aside, users), 0);
    assert_false(userstate_dirty(st));
    userstate_mark_dirty(st);
    assert_true(userstate_dirty(st));
    save_ok(st);
    disk = open_ok(ALICE, key);
    userstate_get(disk, m, &got);
    assert_true(got.flags & US_FLAGGED);
    assert_same(st, disk);
    userstate_close(disk);
    userstate_close(st);
}

static int live_even(void *arg, const char *id)
{
    (void)arg;
    for (unsigned i = 0; i < 40; i++) {
        char m[64];
        msgid(i, m);
        if (strcmp(m, id) == 0)
            return i % 2 == 0;
    }
    return 0;
}

static int live_fails(void *arg, const char *id)
{
    (void)id;
    return ++*(int *)arg > 10 ? -1 : 0;
}

static void test_prune(void **state)
{
    (void)state;
    userstate *st = populate();
    save_ok(st);
    uint64_t modseq = userstate_modseq(st);
    /* a failing check changes nothing */
    int calls = 0;
    size_t pruned = 99;
    assert_int_equal(userstate_prune(st, live_fails, &calls, &pruned), US_EIO);
    assert_int_equal(pruned, 0);
    assert_int_equal(userstate_count(st), 40);
    assert_false(userstate_dirty(st));
    /* all live: nothing to do */
    userstate *copy = open_ok(ALICE, key);
    /* odd messages go; they held every $Junk, so the keyword goes and Work renumbers to 0 */
    assert_int_equal(userstate_prune(st, live_even, NULL, &pruned), US_OK);
    assert_int_equal(pruned, 20);
    assert_int_equal(userstate_count(st), 20);
    assert_true(userstate_dirty(st));
    assert_int_equal(userstate_modseq(st), modseq);
    assert_int_equal(userstate_keyword_count(st), 1);
    assert_string_equal(userstate_keyword_name(st, 0), "Work");
    char id[64];
    for (unsigned i = 0; i < 40; i++) {
        msgid(i, id);
        userstate_msg m, o;
        int found = userstate_get(st, id, &m);
        assert_int_equal(found, i % 2 == 0);
        if (!found)
            continue;
        assert_int_equal(userstate_get(copy, id, &o), 1);
        assert_int_equal(m.flags, o.flags);
        assert_int_equal(m.modseq, o.modseq);
        assert_int_equal(m.removed, o.removed);
        assert_int_equal(m.has_meta, o.has_meta);
        assert_int_equal(us_kw_test(m.keywords, 0), us_kw_test(o.keywords, 1)); /* Work was 1 */
    }
    /* the table still finds everything after the compaction, and takes new entries */
    msgid(1000, id);
    assert_int_equal(userstate_store(st, id, US_ADD, US_SEEN, NULL), US_OK);
    assert_int_equal(userstate_count(st), 21);
    save_ok(st);
    userstate *again = open_ok(ALICE, key);
    assert_same(st, again);
    /* pruning against an empty live set empties the state and the keyword table */
    assert_int_equal(userstate_prune(again, live_fails, &(int){-1000}, &pruned), US_OK);
    assert_int_equal(pruned, 21);
    assert_int_equal(userstate_count(again), 0);
    assert_int_equal(userstate_keyword_count(again), 0);
    userstate_close(again);
    userstate_close(copy);
    userstate_close(st);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_many_messages(void **state)
{
    (void)state;
    enum { N = 50000 };
    userstate *st = open_ok(ALICE, key);
    unsigned kw;
    assert_int_equal(userstate_keyword(st, "$Label1", &kw), US_OK);
    uint8_t set[US_KEYWORD_SET_BYTES] = {0};
    us_kw_put(set, kw, 1);
    static uint8_t env[400], bs[200];
    char id[64];
    double t0 = now_s();
    for (unsigned i = 0; i < N; i++) {
        msgid(i, id);
        userstate_meta m;
        fill_meta(&m, i, env, 300 + i % 100, bs, 100 + i % 100);
        assert_int_equal(userstate_meta_set(st, id, &m), US_OK);
        if (i % 3 == 0)
            assert_int_equal(userstate_store(st, id, US_ADD, US_SEEN, i % 9 ? NULL : set), US_OK);
        if (i % 50 == 0)
            assert_int_equal(userstate_remove(st, id), US_OK);
    }
    double t1 = now_s();
    save_ok(st);
    double t2 = now_s();
    userstate *again = open_ok(ALICE, key);
    double t3 = now_s();
    for (unsigned i = 0; i < N; i++) {
        msgid(i, id);
        userstate_msg m;
        assert_int_equal(userstate_get(again, id, &m), 1);
    }
    double t4 = now_s();
    assert_same(st, again);
    char path[512];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    printf("[ userstate ] %d messages (~500 B cached each): build %.3f s, save %.3f s, load %.3f s, "
           "%d lookups %.3f s, file %lld bytes\n",
           N, t1 - t0, t2 - t1, t3 - t2, N, t4 - t3, (long long)sb.st_size);
    assert_int_equal(userstate_count(again), N);
    userstate_close(again);
    userstate_close(st);
}

static void test_modes(void **state)
{
    (void)state;
    /* whatever the umask, the directory is 0700 and the file 0600 */
    mode_t old = umask(0777);
    userstate *st = populate();
    save_ok(st);
    userstate_close(st);
    umask(0);
    char path[512], users[600];
    uint8_t hash[16];
    spec_path(ALICE, key, path, hash);
    snprintf(users, sizeof users, "%s/users", dir);
    struct stat sb;
    assert_int_equal(stat(users, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    /* a later save under a lax umask keeps 0600; no temp file is left behind */
    assert_int_equal(chmod(path, 0644), 0);
    st = open_ok(ALICE, key);
    char id[64];
    msgid(500, id);
    assert_int_equal(userstate_store(st, id, US_ADD, US_SEEN, NULL), US_OK);
    save_ok(st);
    userstate_close(st);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(stat(tmp, &sb), -1);
    umask(old);
}

/* A version 2 file's cache (no header cache) reads as no header set, and is written back as
 * version 3 with an empty one; a cache that names no set cannot hold fields. */
static void test_reads_version_2_cache(void **state)
{
    (void)state;
    static const uint8_t v2[] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,                     /* modseq, no keywords, 1 entry */
        5, '<', 'a', '@', 'b', '>', 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* metadata follows */
        0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 6,
        0, 0, 0, 1, 'E', 0, 0, 0, 1, 'B', /* envelope, bodystructure: the end of a version 2 entry */
        0,                                 /* no \Recent marks */
    };
    userstate *st = us_new();
    assert_int_equal(us_parse(st, v2, sizeof v2, 2), US_OK);
    userstate_msg m;
    assert_int_equal(userstate_get(st, "<a@b>", &m), 1);
    assert_true(m.has_meta);
    assert_int_equal(m.meta.arrival, 9);
    assert_int_equal(m.meta.envelope_len, 1);
    assert_int_equal(m.meta.header_set, 0);
    assert_int_equal(m.meta.headers_len, 0);
    assert_int_equal(us_serialized_size(st), sizeof v2 + 5);
    uint8_t v3[sizeof v2 + 5];
    us_serialize(st, v3);
    us_free(st);
    static const uint8_t tail[] = {0, 0, 0, 0, 0, 0};
    assert_memory_equal(v3 + sizeof v2 - 1, tail, sizeof tail);
    st = us_new();
    assert_int_equal(us_parse(st, v3, sizeof v3, US_VERSION), US_OK);
    us_free(st);
    st = us_new(); /* the same bytes are not version 3 */
    assert_int_equal(us_parse(st, v2, sizeof v2, US_VERSION), US_EFORMAT);
    us_free(st);
    v3[sizeof v2 - 1 + 4] = 1; /* set 0 with one byte of fields */
    uint8_t bad[sizeof v3 + 1];
    memcpy(bad, v3, sizeof v2 + 4);
    bad[sizeof v2 + 4] = 'x';
    bad[sizeof v2 + 5] = 0;
    st = us_new();
    assert_int_equal(us_parse(st, bad, sizeof bad, US_VERSION), US_EFORMAT);
    us_free(st);
}

/* The parser refuses what no writer makes (the encrypted file keeps these out anyway). */
#define V1_BYTES 38 /* ok[] up to the end of its entries: a version 1 serialisation */
static void test_parse_rejects(void **state)
{
    (void)state;
    static const uint8_t ok[] = {
        0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 1, 'a', 1, 'b', 0, 0, 0, 1,
        5, '<', 'a', '@', 'b', '>', 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 1,
        2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 1, /* version 2: two \Recent marks */
    };
    userstate *st = us_new();
    assert_int_equal(us_parse(st, ok, sizeof ok, US_VERSION), US_OK);
    assert_int_equal(userstate_recent_uid(st, 7), 3);
    assert_int_equal(userstate_recent_uid(st, 9), 1);
    assert_int_equal(userstate_recent_uid(st, 8), 0);
    uint8_t again[sizeof ok];
    assert_int_equal(us_serialized_size(st), sizeof ok);
    us_serialize(st, again);
    assert_memory_equal(again, ok, sizeof ok);
    us_free(st);
    /* version 1 has no marks; it reads as none, and is written back as version 2 */
    st = us_new();
    assert_int_equal(us_parse(st, ok, V1_BYTES, 1), US_OK);
    assert_int_equal(userstate_recent_uid(st, 7), 0);
    assert_int_equal(us_serialized_size(st), V1_BYTES + 1);
    us_free(st);
    st = us_new();
    assert_int_equal(us_parse(st, ok, V1_BYTES, US_VERSION + 1), US_EFORMAT);
    us_free(st);
    struct {
        size_t at;
        uint8_t value;
        const char *what;
    } cases[] = {
        {7, 1, "entry modseq above the state's"},
        {10, 0, "empty keyword"},
        {12, 0, "empty keyword"},
        {13, 'A', "duplicate keyword (case-insensitive)"},
        {11, ' ', "keyword not an atom"},
        {17, 2, "more entries than bytes"},
        {18, 0, "Message-ID length 0"},
        {20, ' ', "Message-ID with a space"},
        {24, 0x20, "unknown system flag bit"},
        {25, 0x04, "unknown entry bit"},
        {25, 0x03, "removed with a cache"},
        {35, 3, "more keywords than the table"},
        {37, 0, "keyword indexes not increasing"},
        {37, 2, "keyword index outside the table"},
        {38, US_RECENT_MAX + 1, "more \\Recent marks than kept"},
        {42, 0, "\\Recent mark for UIDVALIDITY 0"},
        {46, 0, "\\Recent mark of UID 0"},
        {50, 7, "two \\Recent marks for one UIDVALIDITY"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[sizeof ok];
        memcpy(b, ok, sizeof ok);
        b[cases[i].at] = cases[i].value;
        st = us_new();
        if (us_parse(st, b, sizeof b, US_VERSION) != US_EFORMAT)
            fail_msg("accepted: %s", cases[i].what);
        us_free(st);
    }
    for (size_t n = 0; n < sizeof ok; n++) {
        st = us_new();
        assert_int_equal(us_parse(st, ok, n, US_VERSION), US_EFORMAT);
        us_free(st);
    }
    uint8_t longer[sizeof ok + 1];
    memcpy(longer, ok, sizeof ok);
    longer[sizeof ok] = 0;
    st = us_new();
    assert_int_equal(us_parse(st, longer, sizeof longer, US_VERSION), US_EFORMAT);
    us_free(st);
    /* two entries with one Message-ID */
    uint8_t dup[V1_BYTES + 20];
    memcpy(dup, ok, V1_BYTES);
    memcpy(dup + V1_BYTES, ok + 18, 20);
    dup[17] = 2;
    st = us_new();
    assert_int_equal(us_parse(st, dup, sizeof dup, 1), US_EFORMAT);
    us_free(st);
}

static int none_live(void *arg, const char *msgid)
{
    (void)arg;
    (void)msgid;
    return 0;
}

/* The keyword table's generation moves with every change to the table, a prune's too. */
static void test_keyword_gen(void **state)
{
    (void)state;
    userstate *st = us_new();
    assert_non_null(st);
    uint64_t g0 = userstate_keyword_gen(st);
    unsigned k;
    assert_int_equal(userstate_keyword(st, "$One", &k), US_OK);
    uint64_t g1 = userstate_keyword_gen(st);
    assert_true(g1 != g0);
    assert_int_equal(userstate_keyword(st, "$one", &k), US_OK); /* known already */
    assert_true(userstate_keyword_gen(st) == g1);
    uint8_t set[US_KEYWORD_SET_BYTES] = {0};
    us_kw_put(set, k, 1);
    assert_int_equal(userstate_store(st, "<a@b>", US_ADD, 0, set), US_OK);
    size_t pruned;
    assert_int_equal(userstate_prune(st, none_live, NULL, &pruned), US_OK);
    assert_int_equal(userstate_keyword_count(st), 0);
    assert_true(userstate_keyword_gen(st) != g1);
    us_free(st);
}

/* \Recent marks: raised only, one per UIDVALIDITY, the oldest forgotten beyond the limit,
 * and kept by a save and a load. */
static void test_recent_marks(void **state)
{
    (void)state;
    char dir[] = "/tmp/us-recent-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint8_t key[US_KEY_BYTES] = {1};
    userstate *st;
    assert_int_equal(userstate_open(dir, "r@example.org", key, &st, NULL, 0), US_OK);
    assert_int_equal(userstate_recent_uid(st, 5), 0);
    userstate_recent_raise(st, 5, 10);
    assert_true(userstate_dirty(st));
    userstate_recent_raise(st, 5, 4); /* never lowered */
    assert_int_equal(userstate_recent_uid(st, 5), 10);
    userstate_recent_raise(st, 0, 4); /* no UIDVALIDITY: ignored */
    assert_int_equal(userstate_recent_uid(st, 0), 0);
    assert_int_equal(userstate_modseq(st), 0);
    assert_int_equal(userstate_save(st, NULL, 0), US_OK);
    userstate_close(st);
    assert_int_equal(userstate_open(dir, "r@example.org", key, &st, NULL, 0), US_OK);
    assert_int_equal(userstate_recent_uid(st, 5), 10);
    assert_false(userstate_dirty(st));
    for (uint32_t v = 100; v < 100 + US_RECENT_MAX - 1; v++)
        userstate_recent_raise(st, v, v);
    userstate_recent_raise(st, 5, 11); /* 5 is now the newest: 100 goes first */
    userstate_recent_raise(st, 999, 1);
    assert_int_equal(userstate_recent_uid(st, 100), 0);
    assert_int_equal(userstate_recent_uid(st, 5), 11);
    assert_int_equal(userstate_recent_uid(st, 101), 101);
    assert_int_equal(userstate_recent_uid(st, 999), 1);
    userstate_close(st);
    char path[600];
    assert_int_equal(userstate_path(dir, "r@example.org", key, path, sizeof path, NULL, 0), US_OK);
    unlink(path);
    char users[600];
    snprintf(users, sizeof users, "%s/users", dir);
    rmdir(users);
    rmdir(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(key, sizeof key);
    randombytes_buf(key2, sizeof key2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keywords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyword_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_write_when_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_key_new_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_users_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_header_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_failure_stays_dirty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_reads_version_2_cache),
        cmocka_unit_test(test_recent_marks),
        cmocka_unit_test(test_keyword_gen),
        cmocka_unit_test_setup_teardown(test_seal_then_write, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
