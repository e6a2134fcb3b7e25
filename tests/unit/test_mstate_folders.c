/* mstate's folders (issue 13): the directory (create, rename, delete, subscribe), a UID space
 * per folder, COPY/MOVE as membership changes, APPEND kept out of the INBOX, and the merge laws
 * with folder operations at three sites exchanging deltas in scrambled orders. Clocks are
 * injected; the random runs use a fixed seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mstate/mstate.h"

#define UV 7654321u
#define T0 1700000000000ull

static uint8_t key[MSTATE_KEY_BYTES];

static void msgkey(unsigned n, uint8_t out[MSTATE_MSGKEY_BYTES])
{
    char id[64];
    int len = snprintf(id, sizeof id, "<f%u@example.jp>", n);
    mstate_msgkey(id, (size_t)len, out);
}

static uint64_t rng_state;
static unsigned rndn(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static void deliver(mstate *st, unsigned n, uint64_t now)
{
    uint8_t k[1][MSTATE_MSGKEY_BYTES];
    msgkey(n, k[0]);
    assert_int_equal(mstate_assign(st, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])k, 1, now, NULL), MSTATE_OK);
}

static uint32_t uid_in(const mstate *st, uint32_t folder, unsigned n)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    mstate_view v;
    msgkey(n, k);
    mstate_get(st, folder, k, &v);
    return v.expunged ? 0 : v.uid;
}

static uint32_t folder_id(const mstate *st, const char *name)
{
    uint32_t id = 0;
    assert_int_equal(mstate_folder_find(st, name, &id), MSTATE_OK);
    return id;
}

static void digest_eq(const mstate *a, const mstate *b)
{
    uint8_t da[32], db[32];
    assert_int_equal(mstate_digest(a, da), MSTATE_OK);
    assert_int_equal(mstate_digest(b, db), MSTATE_OK);
    assert_memory_equal(da, db, 32);
}

/* seals a delta of from and merges it into each of to */
static void ship(mstate *from, mstate **to, unsigned nto)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_delta(from, key, &buf, &len, NULL), MSTATE_OK);
    if (!buf)
        return;
    mstate *d = NULL;
    assert_int_equal(mstate_open(buf, len, key, &d, NULL), MSTATE_OK);
    for (unsigned i = 0; i < nto; i++)
        assert_int_equal(mstate_merge(to[i], d), MSTATE_OK);
    mstate_free(d);
    free(buf);
}

/* encode, decode, encode: the same bytes (the format is canonical) */
static void roundtrip(const mstate *st)
{
    uint8_t *a, *b;
    size_t la, lb;
    mstate *back = NULL;
    assert_int_equal(mstate_encode(st, MSTATE_SNAPSHOT, &a, &la), MSTATE_OK);
    assert_int_equal(mstate_decode(a, la, &back, NULL), MSTATE_OK);
    assert_int_equal(mstate_encode(back, MSTATE_SNAPSHOT, &b, &lb), MSTATE_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    digest_eq(st, back);
    mstate_free(back);
    free(a);
    free(b);
}

static void test_directory(void **unused)
{
    (void)unused;
    mstate *st = mstate_new(1, UV);
    mstate_folder *f;
    size_t n;
    assert_int_equal(mstate_folders(st, &f, &n), MSTATE_OK);
    assert_int_equal(n, 6); /* INBOX and the special-use folders exist from the start */
    assert_string_equal(f[0].name, "INBOX");
    assert_string_equal(f[1].name, "Sent");
    assert_string_equal(f[3].name, "Trash");
    assert_int_equal(f[0].uidvalidity, UV);
    for (size_t i = 1; i < n; i++) {
        assert_true(f[i].uidvalidity && f[i].uidvalidity < 0x80000000u && f[i].uidvalidity != UV);
        assert_true(f[i].subscribed);
    }
    free(f);
    assert_int_equal(folder_id(st, "inbox"), MSTATE_INBOX);
    assert_int_equal(folder_id(st, "Drafts"), MSTATE_DRAFTS);

    uint32_t work, sub;
    assert_int_equal(mstate_folder_create(st, "Work", T0, &work), MSTATE_OK);
    assert_true(work >= MSTATE_USER_FOLDER_MIN);
    assert_int_equal(mstate_folder_create(st, "Work/2026", T0 + 1, &sub), MSTATE_OK);
    assert_int_equal(mstate_folder_create(st, "Work", T0 + 2, NULL), MSTATE_EEXIST);
    assert_int_equal(mstate_folder_create(st, "trash", T0 + 2, NULL), MSTATE_EEXIST);
    assert_int_equal(mstate_folder_create(st, "INBOX", T0 + 2, NULL), MSTATE_EEXIST);
    const char *bad[] = {"", "/x", "x/", "a//b", "a*", "50%", "tab\there"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(mstate_folder_create(st, bad[i], T0 + 3, NULL), MSTATE_EINVAL);
    char longname[MSTATE_FOLDER_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(mstate_folder_create(st, longname, T0 + 3, NULL), MSTATE_EINVAL);

    assert_int_equal(mstate_folder_rename(st, MSTATE_INBOX, "Old", T0 + 4), MSTATE_EFIXED);
    assert_int_equal(mstate_folder_delete(st, MSTATE_TRASH, T0 + 4), MSTATE_EFIXED);
    assert_int_equal(mstate_folder_rename(st, work, "Work/2026", T0 + 4), MSTATE_EEXIST);
    uint32_t uv_before = mstate_folder_uidvalidity(st, work);
    assert_int_equal(mstate_folder_rename(st, work, "Projects", T0 + 5), MSTATE_OK);
    assert_int_equal(folder_id(st, "Projects"), work); /* same folder, same UIDVALIDITY */
    assert_int_equal(mstate_folder_uidvalidity(st, work), uv_before);
    uint32_t none;
    assert_int_equal(mstate_folder_find(st, "Work", &none), MSTATE_ENOFOLDER);

    assert_false(mstate_folders(st, &f, &n));
    assert_int_equal(n, 8);
    assert_false(f[6].subscribed || f[7].subscribed); /* CREATE does not subscribe */
    free(f);
    assert_int_equal(mstate_folder_subscribe(st, work, 1, T0 + 6), MSTATE_OK);
    assert_int_equal(mstate_folder_subscribe(st, MSTATE_JUNK, 0, T0 + 6), MSTATE_OK);
    assert_false(mstate_folders(st, &f, &n));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f[i].subscribed, f[i].id != MSTATE_JUNK && f[i].id != sub);
    free(f);

    /* a name deleted and created again is a new folder: a new id and UIDVALIDITY */
    assert_int_equal(mstate_folder_delete(st, work, T0 + 7), MSTATE_OK);
    assert_false(mstate_folder_exists(st, work));
    assert_int_equal(mstate_folder_delete(st, work, T0 + 8), MSTATE_ENOFOLDER);
    uint32_t again;
    assert_int_equal(mstate_folder_create(st, "Projects", T0 + 9, &again), MSTATE_OK);
    assert_int_not_equal(again, work);
    assert_int_not_equal(mstate_folder_uidvalidity(st, again), uv_before);
    roundtrip(st);
    mstate_free(st);
}

static void test_copy_move_expunge(void **unused)
{
    (void)unused;
    mstate *st = mstate_new(1, UV);
    for (unsigned i = 1; i <= 5; i++)
        deliver(st, i, T0 + i);
    uint8_t k3[MSTATE_MSGKEY_BYTES];
    msgkey(3, k3);
    assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, k3, MSTATE_SEEN | MSTATE_FLAGGED, 0, T0 + 10), MSTATE_OK);
    assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k3, "$label1", 1, T0 + 10), MSTATE_OK);

    /* COPY to Archive: its own numbering, the flags and keywords come along */
    uint32_t auid;
    assert_int_equal(mstate_copy(st, MSTATE_INBOX, k3, MSTATE_ARCHIVE, T0 + 11, &auid), MSTATE_OK);
    assert_int_equal(auid, 1);
    assert_int_equal(mstate_uid_next(st, MSTATE_ARCHIVE), 2);
    mstate_view v;
    assert_int_equal(mstate_get(st, MSTATE_ARCHIVE, k3, &v), 1);
    assert_int_equal(v.flags, MSTATE_SEEN | MSTATE_FLAGGED);
    assert_int_equal(v.folder, MSTATE_ARCHIVE);
    assert_true(mstate_keyword_test(st, MSTATE_ARCHIVE, k3, "$LABEL1"));
    /* a second COPY of the same message files nothing new */
    uint32_t again;
    assert_int_equal(mstate_copy(st, MSTATE_INBOX, k3, MSTATE_ARCHIVE, T0 + 12, &again), MSTATE_OK);
    assert_int_equal(again, 1);
    /* flags are per folder: \Seen cleared in the INBOX stays set in Archive */
    assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, k3, 0, MSTATE_SEEN, T0 + 13), MSTATE_OK);
    assert_int_equal(mstate_get(st, MSTATE_ARCHIVE, k3, &v), 1);
    assert_true(v.flags & MSTATE_SEEN);

    /* EXPUNGE in the INBOX leaves the Archive copy: the article must stay */
    assert_int_equal(mstate_expunge(st, MSTATE_INBOX, k3, T0 + 14), MSTATE_OK);
    assert_int_equal(uid_in(st, MSTATE_INBOX, 3), 0);
    assert_true(mstate_held(st, k3));
    assert_int_equal(uid_in(st, MSTATE_ARCHIVE, 3), 1);

    /* MOVE back (Thunderbird's undo): a new INBOX entry under a new, higher UID */
    assert_int_equal(mstate_copy(st, MSTATE_ARCHIVE, k3, MSTATE_INBOX, T0 + 15, &again), MSTATE_OK);
    assert_int_equal(mstate_expunge(st, MSTATE_ARCHIVE, k3, T0 + 15), MSTATE_OK);
    assert_int_equal(again, 6);
    assert_int_equal(uid_in(st, MSTATE_INBOX, 3), 6);
    assert_int_equal(uid_in(st, MSTATE_ARCHIVE, 3), 0);
    assert_true(mstate_held(st, k3));
    /* the message the delivery path sees again is not filed a second time */
    deliver(st, 3, T0 + 16);
    assert_int_equal(mstate_uid_next(st, MSTATE_INBOX), 7);

    /* gone from every folder: the article may go */
    assert_int_equal(mstate_expunge(st, MSTATE_INBOX, k3, T0 + 17), MSTATE_OK);
    assert_false(mstate_held(st, k3));

    uint8_t unknown[MSTATE_MSGKEY_BYTES];
    msgkey(99, unknown);
    assert_int_equal(mstate_copy(st, MSTATE_INBOX, unknown, MSTATE_TRASH, T0 + 18, NULL), MSTATE_EINVAL);
    uint8_t k1[MSTATE_MSGKEY_BYTES];
    msgkey(1, k1);
    assert_int_equal(mstate_copy(st, MSTATE_INBOX, k1, 12345678u, T0 + 18, NULL), MSTATE_ENOFOLDER);
    roundtrip(st);
    mstate_free(st);
}

static void test_append_stays_out_of_inbox(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(500, k);
    uint32_t uid;
    assert_int_equal(mstate_append(a, MSTATE_DRAFTS, k, MSTATE_DRAFT | MSTATE_SEEN, T0, &uid), MSTATE_OK);
    assert_int_equal(uid, 1);
    mstate_view v;
    assert_int_equal(mstate_get(a, MSTATE_DRAFTS, k, &v), 1);
    assert_int_equal(v.flags, MSTATE_DRAFT | MSTATE_SEEN);
    /* site b gets the delta, then reads the article in the group like new mail */
    ship(a, &b, 1);
    deliver(b, 500, T0 + 1);
    deliver(a, 500, T0 + 1);
    assert_int_equal(uid_in(b, MSTATE_INBOX, 500), 0);
    assert_int_equal(uid_in(a, MSTATE_INBOX, 500), 0);
    assert_int_equal(uid_in(b, MSTATE_DRAFTS, 500), 1);
    assert_true(mstate_held(b, k));
    /* an APPEND to the INBOX is filed there */
    uint8_t k2[MSTATE_MSGKEY_BYTES];
    msgkey(501, k2);
    assert_int_equal(mstate_append(a, MSTATE_INBOX, k2, 0, T0 + 2, &uid), MSTATE_OK);
    assert_int_equal(uid, 1);
    assert_int_equal(mstate_append(a, 99999999u, k2, 0, T0 + 2, &uid), MSTATE_ENOFOLDER);
    mstate_free(a);
    mstate_free(b);
}

static void test_concurrent_directory(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    /* the same name created at two sites at once is one folder */
    uint32_t ia, ib;
    assert_int_equal(mstate_folder_create(a, "Lists", T0, &ia), MSTATE_OK);
    assert_int_equal(mstate_folder_create(b, "Lists", T0 + 5, &ib), MSTATE_OK);
    assert_int_equal(ia, ib);
    deliver(a, 1, T0);
    deliver(b, 1, T0);
    ship(a, &b, 1);
    ship(b, &a, 1);
    uint8_t k1[MSTATE_MSGKEY_BYTES];
    msgkey(1, k1);
    /* both file message 1 into it: one claim wins after the merge, same at both */
    assert_int_equal(mstate_copy(a, MSTATE_INBOX, k1, ia, T0 + 10, NULL), MSTATE_OK);
    assert_int_equal(mstate_copy(b, MSTATE_INBOX, k1, ib, T0 + 11, NULL), MSTATE_OK);
    ship(a, &b, 1);
    ship(b, &a, 1);
    digest_eq(a, b);
    mstate_folder *f;
    size_t n;
    assert_int_equal(mstate_folders(a, &f, &n), MSTATE_OK);
    assert_int_equal(n, 7);
    free(f);

    /* rename at a, delete at b, concurrently: the delete wins, everything in it is expunged */
    assert_int_equal(mstate_folder_rename(a, ia, "Mailing lists", T0 + 20), MSTATE_OK);
    assert_int_equal(mstate_folder_delete(b, ib, T0 + 19), MSTATE_OK);
    ship(a, &b, 1);
    ship(b, &a, 1);
    digest_eq(a, b);
    assert_false(mstate_folder_exists(a, ia));
    assert_int_equal(uid_in(a, ia, 1), 0);
    assert_true(mstate_held(a, k1)); /* still in the INBOX */

    /* two different folders renamed to one name at once: both show, the first named keeps it */
    uint32_t x, y;
    assert_int_equal(mstate_folder_create(a, "X", T0 + 30, &x), MSTATE_OK);
    assert_int_equal(mstate_folder_create(a, "Y", T0 + 31, &y), MSTATE_OK);
    ship(a, &b, 1);
    assert_int_equal(mstate_folder_rename(a, x, "Z", T0 + 40), MSTATE_OK);
    assert_int_equal(mstate_folder_rename(b, y, "Z", T0 + 41), MSTATE_OK);
    ship(a, &b, 1);
    ship(b, &a, 1);
    digest_eq(a, b);
    assert_int_equal(folder_id(a, "Z"), x);
    char other[64];
    snprintf(other, sizeof other, "Z~%08x", (unsigned)y);
    assert_int_equal(folder_id(b, other), y);
    roundtrip(a);
    mstate_free(a);
    mstate_free(b);
}

/* Three sites doing random folder work, deltas delivered late, out of order and twice: all end
 * with one digest; at every step a folder's UIDs name one message each. */
typedef struct post {
    uint8_t *buf;
    size_t len;
} post;

static void random_op(mstate *st, uint64_t now)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(rndn(30), k);
    mstate_folder *f;
    size_t n;
    assert_int_equal(mstate_folders(st, &f, &n), MSTATE_OK);
    uint32_t from = f[rndn((unsigned)n)].id, to = f[rndn((unsigned)n)].id;
    free(f);
    static const char *const names[] = {"a", "b", "a/b", "c"};
    switch (rndn(9)) {
    case 0:
    case 1: deliver(st, rndn(30), now); break;
    case 2: (void)mstate_copy(st, from, k, to, now, NULL); break;
    case 3:
        if (mstate_copy(st, from, k, to, now, NULL) == MSTATE_OK && from != to)
            assert_int_equal(mstate_expunge(st, from, k, now), MSTATE_OK);
        break;
    case 4: (void)mstate_expunge(st, from, k, now); break;
    case 5: (void)mstate_set_flags(st, from, k, 1u << rndn(5), 1u << rndn(5), now); break;
    case 6: (void)mstate_folder_create(st, names[rndn(4)], now, NULL); break;
    case 7:
        if (from >= MSTATE_USER_FOLDER_MIN)
            (void)mstate_folder_rename(st, from, names[rndn(4)], now);
        break;
    case 8:
        if (from >= MSTATE_USER_FOLDER_MIN && rndn(3) == 0)
            (void)mstate_folder_delete(st, from, now);
        break;
    }
}

static int check_uid(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    uint32_t *last = arg;
    (void)k;
    assert_true(uid > *last); /* ascending and unique within the folder */
    assert_false(v->expunged);
    *last = uid;
    return 0;
}

static void check_folders(const mstate *st)
{
    mstate_folder *f;
    size_t n;
    assert_int_equal(mstate_folders(st, &f, &n), MSTATE_OK);
    for (size_t i = 0; i < n; i++) {
        uint32_t last = 0;
        assert_int_equal(mstate_foreach_uid(st, f[i].id, check_uid, &last), 0);
        assert_true(last < f[i].uid_next);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(f[i].name, f[j].name);
    }
    free(f);
}

static void test_sim_folders(void **unused)
{
    (void)unused;
    rng_state = 0x5eed0f01de55ull;
    for (unsigned trial = 0; trial < 20; trial++) {
        mstate *st[3];
        for (unsigned i = 0; i < 3; i++)
            st[i] = mstate_new((uint16_t)(i + 1), UV);
        post posts[3][64];
        unsigned np[3] = {0};
        uint64_t now = T0;
        for (unsigned step = 0; step < 150; step++) {
            unsigned i = rndn(3);
            now += rndn(5);
            random_op(st[i], now);
            if (rndn(3) == 0 && np[i] < 64) {
                post *p = &posts[i][np[i]];
                assert_int_equal(mstate_seal_delta(st[i], key, &p->buf, &p->len, NULL), MSTATE_OK);
                if (p->buf)
                    np[i]++;
            }
            /* now and then a site reads some of what the others posted, in any order */
            if (rndn(4) == 0) {
                unsigned from = rndn(3);
                if (from != i && np[from]) {
                    post *p = &posts[from][rndn(np[from])];
                    mstate *d = NULL;
                    assert_int_equal(mstate_open(p->buf, p->len, key, &d, NULL), MSTATE_OK);
                    assert_int_equal(mstate_merge(st[i], d), MSTATE_OK);
                    mstate_free(d);
                    assert_int_equal(mstate_assign(st[i], NULL, 0, now, NULL), MSTATE_OK);
                }
            }
            check_folders(st[i]);
        }
        /* the end: everyone posts the rest and reads everything, in reverse, twice */
        for (unsigned i = 0; i < 3; i++) {
            post *p = &posts[i][np[i]];
            assert_int_equal(mstate_seal_delta(st[i], key, &p->buf, &p->len, NULL), MSTATE_OK);
            if (p->buf)
                np[i]++;
        }
        for (unsigned round = 0; round < 2; round++)
            for (unsigned i = 0; i < 3; i++)
                for (unsigned from = 0; from < 3; from++)
                    for (unsigned j = np[from]; j-- > 0;) {
                        mstate *d = NULL;
                        assert_int_equal(mstate_open(posts[from][j].buf, posts[from][j].len, key, &d, NULL),
                                         MSTATE_OK);
                        assert_int_equal(mstate_merge(st[i], d), MSTATE_OK);
                        mstate_free(d);
                    }
        digest_eq(st[0], st[1]);
        digest_eq(st[0], st[2]);
        for (unsigned i = 0; i < 3; i++) {
            check_folders(st[i]);
            roundtrip(st[i]);
        }
        for (unsigned i = 0; i < 3; i++) {
            for (unsigned j = 0; j < np[i]; j++)
                free(posts[i][j].buf);
            mstate_free(st[i]);
        }
    }
}

/* A version 1 encoding (before folders: the INBOX only) still reads, as the INBOX. */
static void test_reads_version_1(void **unused)
{
    (void)unused;
    /* PSTM 1, snapshot, UIDVALIDITY 7654321, origin 1, clock (1000, 0, 1), H = 2, no coverage,
     * no keywords, no dead ranges, two messages (keys 0x01.. and 0x02..) with UIDs 1 and 2 */
    uint8_t v1[] = {'P', 'S', 'T', 'M', 1, 1, 0x00, 0x74, 0xcb, 0xb1, 1, 0xe8, 0x07, 0, 1, 2, 0, 0, 0, 2};
    size_t base = sizeof v1;
    uint8_t buf[128];
    memcpy(buf, v1, base);
    for (unsigned m = 1; m <= 2; m++) {
        memset(buf + base, (int)m, MSTATE_MSGKEY_BYTES);
        base += MSTATE_MSGKEY_BYTES;
        buf[base++] = 0;         /* folder 0 */
        buf[base++] = 2;         /* claimed */
        buf[base++] = 0;         /* gen */
        buf[base++] = (uint8_t)m; /* uid */
        buf[base++] = 0;         /* no registers */
    }
    mstate *st = NULL;
    assert_int_equal(mstate_decode(buf, base, &st, NULL), MSTATE_OK);
    assert_int_equal(mstate_uid_next(st, MSTATE_INBOX), 3);
    uint8_t k[MSTATE_MSGKEY_BYTES];
    memset(k, 2, sizeof k);
    mstate_view v;
    assert_int_equal(mstate_get(st, MSTATE_INBOX, k, &v), 1);
    assert_int_equal(v.uid, 2);
    mstate_free(st);
    buf[sizeof v1 + MSTATE_MSGKEY_BYTES] = 1; /* a folder other than 0 in version 1: refused */
    assert_int_equal(mstate_decode(buf, base, &st, NULL), MSTATE_EFORMAT);
}

static uint64_t modseq_of(const mstate *st, uint32_t folder, unsigned n)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    mstate_view v;
    msgkey(n, k);
    assert_int_equal(mstate_get(st, folder, k, &v), 1);
    return v.modseq;
}

/* CONDSTORE's MODSEQ (RFC 7162): never 0, moved by the filing (numbering, COPY, APPEND) as by
 * flag changes and the expunge, carried in the encoding, the same at a second site after a
 * merge, and HIGHESTMODSEQ is the maximum over live and expunged entries. */
static void test_modseq(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    assert_int_equal(mstate_highest_modseq(a, MSTATE_INBOX), 1); /* empty: 1, never 0 */
    deliver(a, 1, T0);
    deliver(a, 2, T0 + 10);
    uint64_t m1 = modseq_of(a, MSTATE_INBOX, 1), m2 = modseq_of(a, MSTATE_INBOX, 2);
    assert_true(m1 >= mstate_modseq_of_ms(T0) && m1 < mstate_modseq_of_ms(T0 + 1));
    assert_true(m2 > m1);
    assert_int_equal(mstate_highest_modseq(a, MSTATE_INBOX), m2);
    uint8_t k1[MSTATE_MSGKEY_BYTES];
    msgkey(1, k1);
    assert_int_equal(mstate_set_flags(a, MSTATE_INBOX, k1, MSTATE_SEEN, 0, T0 + 20), MSTATE_OK);
    uint64_t m1b = modseq_of(a, MSTATE_INBOX, 1);
    assert_true(m1b > m2);
    /* a STORE that changes nothing moves nothing */
    assert_int_equal(mstate_set_flags(a, MSTATE_INBOX, k1, MSTATE_SEEN, 0, T0 + 30), MSTATE_OK);
    assert_int_equal(modseq_of(a, MSTATE_INBOX, 1), m1b);
    assert_int_equal(mstate_copy(a, MSTATE_INBOX, k1, MSTATE_TRASH, T0 + 40, NULL), MSTATE_OK);
    uint64_t mt = modseq_of(a, MSTATE_TRASH, 1);
    assert_true(mt >= mstate_modseq_of_ms(T0 + 40));
    assert_int_equal(mstate_highest_modseq(a, MSTATE_TRASH), mt);
    uint8_t k3[MSTATE_MSGKEY_BYTES];
    msgkey(3, k3);
    assert_int_equal(mstate_append(a, MSTATE_DRAFTS, k3, 0, T0 + 50, NULL), MSTATE_OK); /* no flags */
    assert_true(modseq_of(a, MSTATE_DRAFTS, 3) >= mstate_modseq_of_ms(T0 + 50));
    assert_int_equal(mstate_expunge(a, MSTATE_INBOX, k1, T0 + 60), MSTATE_OK);
    uint64_t mx = modseq_of(a, MSTATE_INBOX, 1);
    assert_true(mx >= mstate_modseq_of_ms(T0 + 60));
    assert_int_equal(mstate_highest_modseq(a, MSTATE_INBOX), mx); /* expunged entries count */
    /* through the encoding, and at another site */
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_snapshot(a, key, &buf, &len), MSTATE_OK);
    mstate *s = NULL;
    assert_int_equal(mstate_open(buf, len, key, &s, NULL), MSTATE_OK);
    free(buf);
    assert_int_equal(mstate_merge(b, s), MSTATE_OK);
    mstate_free(s);
    for (uint32_t f = 0; f < MSTATE_FIXED_FOLDERS; f++)
        assert_int_equal(mstate_highest_modseq(b, f), mstate_highest_modseq(a, f));
    assert_int_equal(modseq_of(b, MSTATE_INBOX, 2), m2);
    assert_int_equal(modseq_of(b, MSTATE_TRASH, 1), mt);
    /* b's wall clock lags a's: a change at b after it merged a's filing still moves the
     * message's MODSEQ up (the merge advances b's clock past filing stamps too) */
    deliver(a, 9, T0 + 100000);
    uint64_t filed9 = modseq_of(a, MSTATE_INBOX, 9);
    assert_int_equal(mstate_seal_snapshot(a, key, &buf, &len), MSTATE_OK);
    assert_int_equal(mstate_open(buf, len, key, &s, NULL), MSTATE_OK);
    free(buf);
    assert_int_equal(mstate_merge(b, s), MSTATE_OK);
    mstate_free(s);
    uint8_t k9[MSTATE_MSGKEY_BYTES];
    msgkey(9, k9);
    assert_int_equal(mstate_set_flags(b, MSTATE_INBOX, k9, MSTATE_FLAGGED, 0, T0 + 70), MSTATE_OK);
    assert_true(modseq_of(b, MSTATE_INBOX, 9) > filed9);
    mstate_free(a);
    mstate_free(b);
}

int main(void)
{
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_copy_move_expunge),
        cmocka_unit_test(test_append_stays_out_of_inbox),
        cmocka_unit_test(test_concurrent_directory),
        cmocka_unit_test(test_sim_folders),
        cmocka_unit_test(test_reads_version_1),
        cmocka_unit_test(test_modseq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
