/* mstate: the replicated mailbox state. The merge laws (commutative, associative, idempotent)
 * are checked by replaying the same deltas in many orders with duplicates at simulated sites;
 * the UID rule by partitions with concurrent claims, with what an IMAP client at each site
 * sees checked after every step (a UID never names two messages, new UIDs only appear above
 * the UIDNEXT the site announced, an expunged message never comes back). Clocks are injected:
 * nothing here reads the time, the zone or depends on machine speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mstate/mstate.h"

#define UV 1234567u
#define T0 1700000000000ull /* an arbitrary fixed "now" in ms */

static uint8_t key[MSTATE_KEY_BYTES], key2[MSTATE_KEY_BYTES];

static void msgkey(unsigned n, uint8_t out[MSTATE_MSGKEY_BYTES])
{
    char id[64];
    int len = snprintf(id, sizeof id, "<m%u@example.jp>", n);
    mstate_msgkey(id, (size_t)len, out);
}

/* deterministic PRNG: the tests must give the same run everywhere */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static unsigned rndn(unsigned n) { return (unsigned)(rnd() % n); }

static void assign_one(mstate *st, unsigned n, uint64_t now)
{
    uint8_t k[1][MSTATE_MSGKEY_BYTES];
    msgkey(n, k[0]);
    assert_int_equal(mstate_assign(st, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])k, 1, now, NULL), MSTATE_OK);
}

static uint32_t uid_of(const mstate *st, unsigned n)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    mstate_view v;
    msgkey(n, k);
    mstate_get(st, MSTATE_INBOX, k, &v);
    return v.uid;
}

static unsigned flags_of(const mstate *st, unsigned n)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    mstate_view v;
    msgkey(n, k);
    mstate_get(st, MSTATE_INBOX, k, &v);
    return v.flags;
}

static void set_flags(mstate *st, unsigned n, unsigned set, unsigned clear, uint64_t now)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(n, k);
    assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, k, set, clear, now), MSTATE_OK);
}

static void expunge(mstate *st, unsigned n, uint64_t now)
{
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(n, k);
    assert_int_equal(mstate_expunge(st, MSTATE_INBOX, k, now), MSTATE_OK);
}

static void dump(const mstate *st)
{
    uint8_t *buf;
    size_t len;
    if (mstate_encode(st, MSTATE_SNAPSHOT, &buf, &len) != MSTATE_OK)
        return;
    for (size_t i = 0; i < len; i++)
        fprintf(stderr, "%02x%s", buf[i], i % 32 == 31 ? "\n" : " ");
    fprintf(stderr, "\n");
    free(buf);
}

static void digest_eq(const mstate *a, const mstate *b)
{
    uint8_t da[32], db[32];
    assert_int_equal(mstate_digest(a, da), MSTATE_OK);
    assert_int_equal(mstate_digest(b, db), MSTATE_OK);
    if (memcmp(da, db, 32) != 0) {
        dump(a);
        dump(b);
    }
    assert_memory_equal(da, db, 32);
}

static mstate *open_ok(const uint8_t *buf, size_t len)
{
    mstate *st = NULL;
    assert_int_equal(mstate_open(buf, len, key, &st, NULL), MSTATE_OK);
    return st;
}

/* seals a delta of st and merges it into each of the others */
static void ship(mstate *from, mstate **to, unsigned nto)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_delta(from, key, &buf, &len, NULL), MSTATE_OK);
    if (!buf)
        return;
    mstate *d = open_ok(buf, len);
    for (unsigned i = 0; i < nto; i++)
        assert_int_equal(mstate_merge(to[i], d), MSTATE_OK);
    mstate_free(d);
    free(buf);
}

static void exchange_snapshots(mstate **st, unsigned n)
{
    uint8_t *buf[8];
    size_t len[8];
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(mstate_seal_snapshot(st[i], key, &buf[i], &len[i]), MSTATE_OK);
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < n; j++) {
            mstate *d = open_ok(buf[j], len[j]);
            assert_int_equal(mstate_merge(st[i], d), MSTATE_OK);
            mstate_free(d);
        }
    for (unsigned i = 0; i < n; i++)
        free(buf[i]);
}

/* ---- basics ---- */

static void test_basics(void **unused)
{
    (void)unused;
    mstate *st = mstate_new(1, UV);
    assert_non_null(st);
    assert_null(mstate_new(0, UV));
    assert_null(mstate_new(1, 0));
    assert_int_equal(mstate_uid_next(st, MSTATE_INBOX), 1);
    uint8_t k[3][MSTATE_MSGKEY_BYTES];
    for (unsigned i = 0; i < 3; i++)
        msgkey(i, k[i]);
    size_t got;
    assert_int_equal(mstate_assign(st, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])k, 3, T0, &got), MSTATE_OK);
    assert_int_equal(got, 3);
    assert_int_equal(uid_of(st, 0), 1);
    assert_int_equal(uid_of(st, 2), 3);
    assert_int_equal(mstate_assign(st, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])k, 3, T0, &got), MSTATE_OK);
    assert_int_equal(got, 0); /* known messages keep their UID */
    assert_int_equal(mstate_uid_next(st, MSTATE_INBOX), 4);

    set_flags(st, 1, MSTATE_SEEN | MSTATE_FLAGGED, 0, T0 + 1);
    assert_int_equal(flags_of(st, 1), MSTATE_SEEN | MSTATE_FLAGGED);
    set_flags(st, 1, 0, MSTATE_FLAGGED, T0 + 2);
    assert_int_equal(flags_of(st, 1), MSTATE_SEEN);
    assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, k[1], 0x20, 0, T0), MSTATE_EINVAL);
    uint8_t unknown[MSTATE_MSGKEY_BYTES];
    msgkey(99, unknown);
    assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, unknown, MSTATE_SEEN, 0, T0), MSTATE_EINVAL);

    assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k[0], "$Junk", 1, T0 + 3), MSTATE_OK);
    assert_true(mstate_keyword_test(st, MSTATE_INBOX, k[0], "$junk"));
    assert_false(mstate_keyword_test(st, MSTATE_INBOX, k[1], "$Junk"));
    assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k[0], "bad\\name", 1, T0), MSTATE_EINVAL);
    assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k[0], "", 1, T0), MSTATE_EINVAL);
    assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k[0], "$JUNK", 0, T0 + 4), MSTATE_OK);
    assert_false(mstate_keyword_test(st, MSTATE_INBOX, k[0], "$Junk"));

    mstate_view v;
    assert_int_equal(mstate_get(st, MSTATE_INBOX, k[1], &v), 1);
    assert_true(v.modseq > 0);
    expunge(st, 1, T0 + 5);
    assert_int_equal(mstate_get(st, MSTATE_INBOX, k[1], &v), 1);
    assert_true(v.expunged);
    assert_int_equal(v.uid, 0);
    assert_int_equal(v.flags, 0);
    set_flags(st, 1, MSTATE_SEEN, 0, T0 + 6); /* no effect on an expunged message */
    assert_int_equal(flags_of(st, 1), 0);
    assert_int_equal(mstate_count(st), 3);
    assert_int_equal(mstate_homeless(st), 0);

    /* the clock is a HLC: a clock running backwards still gives increasing stamps */
    mstate_hlc before = mstate_clock(st);
    set_flags(st, 0, MSTATE_ANSWERED, 0, T0 - 100000);
    assert_true(mstate_hlc_cmp(mstate_clock(st), before) > 0);
    mstate_free(st);
}

static void test_uidvalidity_derive(void **unused)
{
    (void)unused;
    uint32_t a = mstate_uidvalidity_derive(key, 0);
    assert_int_not_equal(a, 0);
    assert_int_equal(a, mstate_uidvalidity_derive(key, 0)); /* every site alike */
    assert_int_not_equal(a, mstate_uidvalidity_derive(key, 1));
    assert_int_not_equal(a, mstate_uidvalidity_derive(key2, 0));
    mstate *x = mstate_new(1, a), *y = mstate_new(2, a + 1);
    assert_int_equal(mstate_merge(x, y), MSTATE_EMISMATCH);
    mstate_free(x);
    mstate_free(y);
}

static void test_keyword_limits(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(1, k);
    assign_one(a, 1, T0);
    ship(a, &b, 1);
    char name[16];
    /* the same 250 keywords on one message at two sites: the join overlaps completely */
    for (unsigned i = 0; i < 250; i++) {
        snprintf(name, sizeof name, "kw%u", i);
        assert_int_equal(mstate_set_keyword(a, MSTATE_INBOX, k, name, 1, T0 + i), MSTATE_OK);
        assert_int_equal(mstate_set_keyword(b, MSTATE_INBOX, k, name, (int)(i % 2), T0 + 2 * i), MSTATE_OK);
    }
    ship(a, &b, 1);
    ship(b, &a, 1);
    digest_eq(a, b);
    assert_true(mstate_keyword_test(a, MSTATE_INBOX, k, "KW7"));
    for (unsigned i = 250; i < MSTATE_KEYWORD_MAX; i++) {
        snprintf(name, sizeof name, "kw%u", i);
        assert_int_equal(mstate_set_keyword(a, MSTATE_INBOX, k, name, 1, T0 + 1000), MSTATE_OK);
    }
    assert_int_equal(mstate_set_keyword(a, MSTATE_INBOX, k, "one-too-many", 1, T0 + 1001), MSTATE_ELIMIT);
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_snapshot(a, key, &buf, &len), MSTATE_OK);
    mstate *x = open_ok(buf, len);
    digest_eq(a, x);
    mstate_free(x);
    free(buf);
    mstate_free(a);
    mstate_free(b);
}

/* ---- flags: last writer wins by HLC; tombstones ---- */

static void test_lww_flags(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    assign_one(a, 1, T0);
    ship(a, &b, 1);
    assert_int_equal(uid_of(b, 1), 1);
    /* concurrent: a reads it at t+10, b marks it unread at t+20: b's is later */
    set_flags(a, 1, MSTATE_SEEN, 0, T0 + 10);
    set_flags(b, 1, MSTATE_SEEN, 0, T0 + 5);
    set_flags(b, 1, 0, MSTATE_SEEN, T0 + 20);
    mstate *ca = mstate_clone(a), *cb = mstate_clone(b);
    ship(a, &b, 1);
    ship(cb, &ca, 1);
    assert_int_equal(flags_of(b, 1), 0);
    assert_int_equal(flags_of(ca, 1), 0);
    digest_eq(b, ca);
    /* registers are per flag: concurrent changes of different flags both stay */
    set_flags(a, 1, MSTATE_FLAGGED, 0, T0 + 1000);
    set_flags(b, 1, MSTATE_ANSWERED, 0, T0 + 1000);
    ship(a, &b, 1);
    ship(b, &a, 1);
    assert_int_equal(flags_of(a, 1), MSTATE_FLAGGED | MSTATE_ANSWERED);
    digest_eq(a, b);
    /* equal milliseconds and counters: the site id decides, the same way everywhere */
    set_flags(a, 1, MSTATE_SEEN, 0, T0 + 6000);
    set_flags(a, 1, 0, MSTATE_SEEN, T0 + 9000);
    set_flags(b, 1, MSTATE_SEEN, 0, T0 + 9000);
    ship(a, &b, 1);
    ship(b, &a, 1);
    assert_int_equal(flags_of(a, 1) & MSTATE_SEEN, MSTATE_SEEN); /* b is site 2 */
    digest_eq(a, b);
    mstate_free(ca);
    mstate_free(cb);
    mstate_free(a);
    mstate_free(b);
}

static void test_tombstone_wins(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV), *c = mstate_new(3, UV);
    assign_one(a, 1, T0);
    mstate *bc[2] = {b, c};
    ship(a, bc, 2);
    uint8_t *old;
    size_t oldlen;
    set_flags(b, 1, MSTATE_FLAGGED, 0, T0 + 10);
    assert_int_equal(mstate_seal_delta(b, key, &old, &oldlen, NULL), MSTATE_OK);
    /* a expunges at t+5; b flags again at t+100 (later!): the tombstone still wins */
    expunge(a, 1, T0 + 5);
    set_flags(b, 1, MSTATE_SEEN, 0, T0 + 100);
    ship(b, &a, 1);
    ship(a, &b, 1);
    for (mstate *s = a; s; s = s == a ? b : NULL) {
        mstate_view v;
        uint8_t k[MSTATE_MSGKEY_BYTES];
        msgkey(1, k);
        mstate_get(s, MSTATE_INBOX, k, &v);
        assert_true(v.expunged);
        assert_int_equal(v.uid, 0);
    }
    digest_eq(a, b);
    /* an old delta from before the expunge does not bring it back, nor does a re-assign */
    mstate *d = open_ok(old, oldlen);
    assert_int_equal(mstate_merge(c, d), MSTATE_OK);
    assert_int_equal(mstate_merge(c, a), MSTATE_OK); /* a's state as a whole (a snapshot) */
    assert_int_equal(mstate_merge(a, d), MSTATE_OK);
    assign_one(a, 1, T0 + 200);
    assert_int_equal(uid_of(a, 1), 0);
    assert_int_equal(mstate_homeless(a), 0);
    digest_eq(a, c);
    mstate_free(d);
    free(old);
    /* an expunge of a message this site never saw: it never gets a UID here */
    expunge(c, 7, T0 + 300);
    assign_one(c, 7, T0 + 301);
    assert_int_equal(uid_of(c, 7), 0);
    mstate_free(a);
    mstate_free(b);
    mstate_free(c);
}

/* ---- UIDs ---- */

static int collect_uids(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    (void)k;
    (void)v;
    uint32_t *last = arg;
    assert_true(uid > *last); /* ascending, and no UID twice */
    *last = uid;
    return 0;
}

static void test_uid_conflict_two_messages(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    for (unsigned i = 1; i <= 3; i++)
        assign_one(a, i, T0);
    ship(a, &b, 1);
    /* partition: a gets m10, m11 as UIDs 4, 5; b gets m20 as UID 4 */
    assign_one(a, 10, T0 + 1);
    assign_one(a, 11, T0 + 2);
    assign_one(b, 20, T0 + 1);
    assert_int_equal(uid_of(a, 10), 4);
    assert_int_equal(uid_of(b, 20), 4);
    ship(a, &b, 1);
    ship(b, &a, 1);
    /* UID 4 named two messages: dead for both; UID 5 was a's alone and stays */
    assert_int_equal(uid_of(a, 10), 0);
    assert_int_equal(uid_of(a, 20), 0);
    assert_int_equal(uid_of(a, 11), 5);
    assert_int_equal(mstate_homeless(a), 2);
    size_t got;
    assert_int_equal(mstate_assign(a, NULL, 0, T0 + 3, &got), MSTATE_OK);
    assert_int_equal(got, 2);
    assert_int_equal(mstate_assign(b, NULL, 0, T0 + 3, &got), MSTATE_OK);
    assert_int_equal(got, 2);
    /* the same knowledge re-homes the same way, above everything seen (5) */
    for (mstate *s = a; s; s = s == a ? b : NULL) {
        uint32_t u10 = uid_of(s, 10), u20 = uid_of(s, 20);
        assert_true(u10 > 5 && u20 > 5 && u10 != u20);
        assert_int_equal(uid_of(s, 1), 1);
        assert_int_equal(uid_of(s, 11), 5);
    }
    assert_int_equal(uid_of(a, 10), uid_of(b, 10));
    assert_int_equal(uid_of(a, 20), uid_of(b, 20));
    ship(a, &b, 1);
    ship(b, &a, 1);
    assert_int_equal(mstate_homeless(a), 0);
    digest_eq(a, b);
    uint32_t last = 0;
    assert_int_equal(mstate_foreach_uid(a, MSTATE_INBOX, collect_uids, &last), 0);
    assert_int_equal(mstate_uid_next(a, MSTATE_INBOX), 8);
    mstate_free(a);
    mstate_free(b);
}

static void test_uid_conflict_one_message(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    assign_one(a, 1, T0);
    ship(a, &b, 1);
    /* both sites see m5, a after m4: one message, two UIDs */
    assign_one(a, 4, T0 + 1);
    assign_one(a, 5, T0 + 2);
    assign_one(b, 5, T0 + 1);
    assert_int_equal(uid_of(a, 5), 3);
    assert_int_equal(uid_of(b, 5), 2);
    ship(a, &b, 1);
    ship(b, &a, 1);
    /* m4 at 2 clashes with m5 at 2 (b): both re-homed; UID 3 is retired with m5's old claim */
    assert_int_equal(uid_of(a, 5), 0);
    assert_int_equal(uid_of(a, 4), 0);
    assert_int_equal(mstate_assign(a, NULL, 0, T0 + 3, NULL), MSTATE_OK);
    assert_int_equal(mstate_assign(b, NULL, 0, T0 + 3, NULL), MSTATE_OK);
    ship(a, &b, 1);
    ship(b, &a, 1);
    digest_eq(a, b);
    assert_true(uid_of(a, 4) > 3 && uid_of(a, 5) > 3);
    assert_int_equal(uid_of(a, 4), uid_of(b, 4));
    assert_int_equal(uid_of(a, 5), uid_of(b, 5));
    /* both sites saw the same message first: the same claim, nothing to resolve */
    assign_one(a, 6, T0 + 10);
    assign_one(b, 6, T0 + 11);
    ship(a, &b, 1);
    ship(b, &a, 1);
    assert_int_equal(uid_of(a, 6), uid_of(b, 6));
    assert_int_not_equal(uid_of(a, 6), 0);
    assert_int_equal(mstate_homeless(a), 0);
    mstate_free(a);
    mstate_free(b);
}

/* Deltas out of order: what lies above an unread claim waits, so nothing appears below an
 * announced UIDNEXT; an assignment kills the gap, and the late claim's message is re-homed. */
/* A numbering begun afresh (INN expired every state article) starts at the floor, above every
 * UID an earlier state gave; other sites see the jump as one dead range, not as a gap that
 * hides the mail; a state that has numbered anything ignores the floor. */
static void test_uid_floor(void **unused)
{
    (void)unused;
    const uint32_t F1 = 100000000u, F2 = F1 + 30u * 86400u; /* 30 days later, in seconds */
    mstate *old = mstate_new(1, UV);
    mstate_set_uid_floor(old, F1);
    for (unsigned m = 0; m < 5; m++)
        assign_one(old, m, T0 + m);
    assert_int_equal(uid_of(old, 0), F1);
    assert_int_equal(uid_of(old, 4), F1 + 4);
    assert_int_equal(mstate_uid_next(old, MSTATE_INBOX), F1 + 5);
    mstate_set_uid_floor(old, F2); /* numbered already: the floor changes nothing */
    assign_one(old, 5, T0 + 5);
    assert_int_equal(uid_of(old, 5), F1 + 5);

    /* another site reads only the second delta: the jump is dead, nothing waits behind it */
    mstate *b = mstate_new(2, UV);
    mstate_set_uid_floor(b, F2);
    ship(old, &b, 1);
    assert_int_equal(mstate_waiting(b), 0);
    assert_int_equal(uid_of(b, 5), F1 + 5);
    assert_int_equal(mstate_uid_next(b, MSTATE_INBOX), F1 + 6);
    assign_one(b, 6, T0 + 6); /* b has numbered nothing, but knows UIDs: no new floor */
    assert_int_equal(uid_of(b, 6), F1 + 6);

    /* every state article expired: a fresh state, the same UIDVALIDITY, UIDs above the old */
    mstate *fresh = mstate_new(1, UV);
    assert_int_equal(mstate_uid_next(fresh, MSTATE_INBOX), 1);
    mstate_set_uid_floor(fresh, F2);
    assert_int_equal(mstate_uid_next(fresh, MSTATE_INBOX), F2); /* announced before it is given */
    assert_int_equal(mstate_uid_next(fresh, MSTATE_TRASH), F2);
    assign_one(fresh, 100, T0 + 1000);
    assert_int_equal(uid_of(fresh, 100), F2);
    assert_true(uid_of(fresh, 100) > uid_of(old, 5));
    assert_int_equal(mstate_uidvalidity(fresh), mstate_uidvalidity(old));
    mstate_set_uid_floor(fresh, UINT32_MAX); /* a clock gone wild is clamped */
    mstate *wild = mstate_new(1, UV);
    mstate_set_uid_floor(wild, UINT32_MAX);
    assign_one(wild, 1, T0);
    assert_int_equal(uid_of(wild, 1), MSTATE_UID_FLOOR_MAX);
    /* the round trip through a snapshot keeps the numbering; the floor is not encoded */
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_snapshot(fresh, key, &buf, &len), MSTATE_OK);
    mstate *copy = open_ok(buf, len);
    free(buf);
    assert_int_equal(uid_of(copy, 100), F2);
    assert_int_equal(mstate_uid_next(copy, MSTATE_INBOX), F2 + 1);
    digest_eq(copy, fresh);
    mstate_free(copy);
    mstate_free(wild);
    mstate_free(fresh);
    mstate_free(b);
    mstate_free(old);
}

static int present_below(void *arg, const uint8_t k[MSTATE_MSGKEY_BYTES])
{
    /* "on the spool": the messages numbered below *arg (keys recomputed: test sizes only) */
    unsigned limit = *(const unsigned *)arg;
    for (unsigned m = 0; m < limit; m++) {
        uint8_t km[MSTATE_MSGKEY_BYTES];
        msgkey(m, km);
        if (memcmp(km, k, MSTATE_MSGKEY_BYTES) == 0)
            return 1;
    }
    return 0;
}

/* Entries of messages gone from the spool leave the state once they are old enough; what is
 * still on the spool, or too young, stays; the UIDs of the forgotten ones are never given
 * again, and a reader of the smaller state still sees everything. */
static void test_forget(void **unused)
{
    (void)unused;
    const uint64_t DAY = 86400000ull;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    for (unsigned m = 0; m < 4; m++)
        assign_one(a, m, T0); /* m0..m3 on day 0 */
    set_flags(a, 1, MSTATE_FLAGGED, 0, T0 + 1);
    expunge(a, 2, T0 + 2);
    assign_one(a, 4, T0 + 40 * DAY); /* m4 on day 40 */
    ship(a, &b, 1);
    unsigned on_spool = 1; /* only m0 is still there (m4 too young to matter) */
    size_t n;
    assert_int_equal(mstate_forget(a, present_below, &on_spool, T0 + 59 * DAY, 60, &n), MSTATE_OK);
    assert_int_equal(n, 0); /* not old enough */
    assert_int_equal(mstate_forget(a, present_below, &on_spool, T0 + 60 * DAY, 60, &n), MSTATE_OK);
    assert_int_equal(n, 3); /* m1 (flagged), m2 (expunged), m3 */
    assert_int_equal(mstate_count(a), 2);
    assert_int_equal(uid_of(a, 0), 1);
    assert_int_equal(uid_of(a, 1), 0);
    assert_int_equal(uid_of(a, 4), 5);
    assign_one(a, 5, T0 + 60 * DAY);
    assert_int_equal(uid_of(a, 5), 6); /* nothing reused */
    assert_int_equal(mstate_uid_next(a, MSTATE_INBOX), 7);

    /* a fresh reader of a's snapshot sees m0, m4, m5 at once: no hole where m1..m3 were */
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_snapshot(a, key, &buf, &len), MSTATE_OK);
    mstate *c = open_ok(buf, len);
    assert_int_equal(mstate_waiting(c), 0);
    assert_int_equal(mstate_uid_next(c, MSTATE_INBOX), 7);
    assert_int_equal(uid_of(c, 4), 5);
    /* b still has m1..m3 and brings them back to a; the same rule drops them again, and the
     * earliest day of each entry wins whatever order the sites merge in */
    mstate *d = open_ok(buf, len);
    assert_int_equal(mstate_merge(b, d), MSTATE_OK);
    mstate_free(d);
    free(buf);
    assert_int_equal(mstate_seal_snapshot(b, key, &buf, &len), MSTATE_OK);
    d = open_ok(buf, len);
    free(buf);
    assert_int_equal(mstate_merge(a, d), MSTATE_OK);
    mstate_free(d);
    assert_int_equal(mstate_count(a), 6);
    assert_int_equal(uid_of(a, 1), 0); /* its UID is dead: it shows nowhere */
    assert_int_equal(mstate_forget(a, present_below, &on_spool, T0 + 61 * DAY, 60, &n), MSTATE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(mstate_forget(b, present_below, &on_spool, T0 + 61 * DAY, 60, &n), MSTATE_OK);
    assert_int_equal(n, 3);
    digest_eq(a, b);
    /* the homeless rule does not re-number a forgotten message that comes back via a merge */
    assert_int_equal(mstate_homeless(a), 0);
    assert_int_equal(mstate_forget(a, NULL, NULL, T0, 60, NULL), MSTATE_EINVAL);
    mstate_free(c);
    mstate_free(b);
    mstate_free(a);
}

/* A site that lost its state numbers its deltas from 1 again; told that a number was used
 * before, it jumps ahead and keeps counting up from there, never repeating one (the
 * out-of-order coverage list would overflow after 32 and hand out a number twice). */
static void test_skip_deltas(void **unused)
{
    (void)unused;
    mstate *st = mstate_new(1, UV);
    uint8_t *buf;
    size_t len;
    uint64_t seq;
    assign_one(st, 1, T0);
    assert_int_equal(mstate_seal_delta(st, key, &buf, &len, &seq), MSTATE_OK);
    free(buf);
    assert_int_equal(seq, 1);
    assert_int_equal(mstate_skip_deltas(st, 1000000), MSTATE_OK);
    uint64_t last = 999999;
    for (unsigned i = 0; i < 40; i++) {
        set_flags(st, 1, i % 2 ? 0 : MSTATE_SEEN, i % 2 ? MSTATE_SEEN : 0, T0 + 1 + i);
        assert_int_equal(mstate_seal_delta(st, key, &buf, &len, &seq), MSTATE_OK);
        free(buf);
        assert_int_equal(seq, last + 1);
        last = seq;
    }
    assert_int_equal(mstate_skip_deltas(st, 5), MSTATE_OK); /* below: nothing changes */
    set_flags(st, 1, MSTATE_FLAGGED, 0, T0 + 100);
    assert_int_equal(mstate_seal_delta(st, key, &buf, &len, &seq), MSTATE_OK);
    free(buf);
    assert_int_equal(seq, last + 1);
    assert_int_equal(mstate_skip_deltas(st, 0), MSTATE_EINVAL);
    mstate_free(st);
}

static void test_horizon(void **unused)
{
    (void)unused;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV), *c = mstate_new(3, UV);
    uint8_t *d1, *d2;
    size_t l1, l2;
    assign_one(a, 1, T0);
    assert_int_equal(mstate_seal_delta(a, key, &d1, &l1, NULL), MSTATE_OK);
    assign_one(a, 2, T0 + 1);
    assert_int_equal(mstate_seal_delta(a, key, &d2, &l2, NULL), MSTATE_OK);
    mstate *x = open_ok(d2, l2);
    assert_int_equal(mstate_merge(b, x), MSTATE_OK);
    assert_int_equal(mstate_merge(c, x), MSTATE_OK);
    mstate_free(x);
    assert_int_equal(uid_of(b, 2), 0); /* UID 2 is known, UID 1 is not yet */
    assert_int_equal(mstate_waiting(b), 1);
    assert_int_equal(mstate_homeless(b), 0);
    assert_int_equal(mstate_uid_next(b, MSTATE_INBOX), 1);
    assert_int_equal(mstate_assign(b, NULL, 0, T0 + 2, NULL), MSTATE_OK); /* nothing to claim: */
    assert_int_equal(mstate_uid_next(b, MSTATE_INBOX), 1);                              /* the gap stays */
    x = open_ok(d1, l1);
    assert_int_equal(mstate_merge(b, x), MSTATE_OK);
    mstate_free(x);
    assert_int_equal(uid_of(b, 1), 1);
    assert_int_equal(uid_of(b, 2), 2);
    assert_int_equal(mstate_uid_next(b, MSTATE_INBOX), 3);
    assert_int_equal(mstate_waiting(b), 0);
    /* c claims new mail while UID 1 is still unread: UID 1 dies, and m1 moves above */
    assign_one(c, 3, T0 + 3);
    assert_int_equal(uid_of(c, 3), 3);
    assert_int_equal(uid_of(c, 2), 2);
    assert_int_equal(mstate_uid_next(c, MSTATE_INBOX), 4);
    x = open_ok(d1, l1);
    assert_int_equal(mstate_merge(c, x), MSTATE_OK);
    mstate_free(x);
    assert_int_equal(uid_of(c, 1), 0);
    assert_int_equal(mstate_homeless(c), 1);
    assert_int_equal(mstate_assign(c, NULL, 0, T0 + 4, NULL), MSTATE_OK);
    assert_int_equal(uid_of(c, 1), 4);
    mstate *to[2] = {a, b};
    ship(c, to, 2);
    assert_int_equal(uid_of(a, 1), 4); /* a and b follow: UID 1 is dead everywhere */
    assert_int_equal(uid_of(b, 1), 4);
    digest_eq(a, c);
    digest_eq(b, c);
    free(d1);
    free(d2);
    mstate_free(a);
    mstate_free(b);
    mstate_free(c);
}

/* ---- the simulation: three sites, partitions, random traffic ---- */

#define SITES 3
#define MAXMSG 400
#define MAXPOST 4000

typedef struct post {
    uint8_t *buf;
    size_t len;
} post;

typedef struct site_view {
    /* what clients at the site were shown */
    unsigned uid_msg[MAXMSG * 4]; /* uid -> message number + 1 */
    uint32_t shown_next;          /* UIDNEXT last announced */
    uint8_t expunged[MAXMSG];
    uint32_t msg_uid[MAXMSG]; /* the UID each message was last shown under */
} site_view;

typedef struct sim {
    mstate *st[SITES];
    site_view view[SITES];
    uint64_t now[SITES];
    post posts[MAXPOST];
    unsigned nposts;
    unsigned inbox[SITES][MAXMSG]; /* mail articles a site's gateway has not assigned yet */
    unsigned ninbox[SITES];
    unsigned unseen_post[SITES]; /* index of the first post not yet read ... */
    uint8_t read_post[SITES][MAXPOST];
    unsigned nmsg;
    int group[SITES]; /* partition: sites with the same group reach each other */
    int one_assigner; /* the gateway policy: only the lowest-numbered reachable site claims */
} sim;

static unsigned long sim_rehomed, sim_messages, sim_churn; /* so a run shows what it tested */
static unsigned sim_rounds_max; /* rounds of exchange after the heal until nobody had news */

typedef struct view_check {
    sim *s;
    unsigned site;
    int seen[MAXMSG];
} view_check;

static unsigned msg_of_key(const uint8_t k[MSTATE_MSGKEY_BYTES], unsigned nmsg)
{
    for (unsigned n = 0; n < nmsg; n++) {
        uint8_t kk[MSTATE_MSGKEY_BYTES];
        msgkey(n, kk);
        if (memcmp(kk, k, MSTATE_MSGKEY_BYTES) == 0)
            return n;
    }
    fail_msg("unknown message key");
    return 0;
}

static int check_visible(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    view_check *c = arg;
    site_view *sv = &c->s->view[c->site];
    unsigned m = msg_of_key(k, c->s->nmsg);
    assert_false(v->expunged);
    assert_false(sv->expunged[m]); /* never resurrected */
    assert_true(uid < MAXMSG * 4);
    if (sv->uid_msg[uid] == 0) {
        /* a UID new to this site's clients is above the UIDNEXT they were told */
        assert_true(uid >= sv->shown_next);
        sv->uid_msg[uid] = m + 1;
    }
    assert_int_equal(sv->uid_msg[uid], m + 1); /* a UID never names two messages */
    if (sv->msg_uid[m] && sv->msg_uid[m] != uid)
        sim_churn++; /* the client saw EXPUNGE and the message again under a new UID */
    sv->msg_uid[m] = uid;
    assert_false(c->seen[m]);                    /* a message has one UID at a time */
    c->seen[m] = 1;
    return 0;
}

static int note_expunged(void *arg, const uint8_t k[MSTATE_MSGKEY_BYTES], uint32_t uid)
{
    (void)uid;
    view_check *c = arg;
    c->s->view[c->site].expunged[msg_of_key(k, c->s->nmsg)] = 1;
    return 0;
}

static void sim_check(sim *s, unsigned i)
{
    view_check c = {.s = s, .site = i};
    assert_int_equal(mstate_foreach_uid(s->st[i], MSTATE_INBOX, check_visible, &c), 0);
    assert_int_equal(mstate_foreach_expunged(s->st[i], MSTATE_INBOX, note_expunged, &c), 0);
    s->view[i].shown_next = mstate_uid_next(s->st[i], MSTATE_INBOX);
}

static void sim_post(sim *s, uint8_t *buf, size_t len)
{
    assert_true(s->nposts < MAXPOST);
    s->posts[s->nposts++] = (post){buf, len};
}

static void sim_seal(sim *s, unsigned i, int snapshot)
{
    uint8_t *buf;
    size_t len;
    if (snapshot)
        assert_int_equal(mstate_seal_snapshot(s->st[i], key, &buf, &len), MSTATE_OK);
    else
        assert_int_equal(mstate_seal_delta(s->st[i], key, &buf, &len, NULL), MSTATE_OK);
    if (buf)
        sim_post(s, buf, len);
}

/* the gateway's loop at one site: read what INN brought, merge, assign, check the view */
static void sim_read(sim *s, unsigned i, int all)
{
    for (unsigned p = 0; p < s->nposts; p++) {
        unsigned q = all ? p : rndn(s->nposts); /* out of order, and again */
        if (!all && rndn(3) == 0)
            continue;
        mstate *d = open_ok(s->posts[q].buf, s->posts[q].len);
        assert_int_equal(mstate_merge(s->st[i], d), MSTATE_OK);
        mstate_free(d);
        s->read_post[i][q] = 1;
    }
    if (s->one_assigner) {
        /* the policy: only the lowest-numbered site a site reaches claims and re-homes */
        for (unsigned j = 0; j < i; j++)
            if (s->group[j] == s->group[i]) {
                sim_check(s, i);
                return;
            }
    }
    uint8_t (*keys)[MSTATE_MSGKEY_BYTES] = malloc((s->ninbox[i] + 1) * MSTATE_MSGKEY_BYTES);
    assert_non_null(keys);
    for (unsigned m = 0; m < s->ninbox[i]; m++)
        msgkey(s->inbox[i][m], keys[m]);
    size_t before = mstate_count(s->st[i]), got;
    assert_int_equal(mstate_assign(s->st[i], (const uint8_t(*)[MSTATE_MSGKEY_BYTES])keys, s->ninbox[i], s->now[i],
                                   &got),
                     MSTATE_OK);
    sim_rehomed += got - (mstate_count(s->st[i]) - before);
    free(keys);
    s->ninbox[i] = 0;
    sim_check(s, i);
}

static int pick_visible(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    (void)uid;
    (void)v;
    uint8_t *out = arg;
    if (rndn(4) == 0) {
        memcpy(out, k, MSTATE_MSGKEY_BYTES);
        return 1;
    }
    return 0;
}

static const char *const kwnames[] = {"$Junk", "$NotJunk", "$Forwarded", "$label1", "$LABEL1", "Work"};

static void sim_step(sim *s)
{
    unsigned i = rndn(SITES);
    s->now[i] += 1 + rndn(50);
    unsigned action = rndn(100);
    if (action < 15 && s->nmsg < MAXMSG) {
        /* new mail: INN brings the article to the sites this one reaches */
        unsigned m = s->nmsg++;
        for (unsigned j = 0; j < SITES; j++)
            if (s->group[j] == s->group[i]) {
                s->inbox[j][s->ninbox[j]++] = m;
                if (s->one_assigner)
                    break; /* the others wait for its claim */
            }
    } else if (action < 60) {
        uint8_t k[MSTATE_MSGKEY_BYTES];
        if (mstate_foreach_uid(s->st[i], MSTATE_INBOX, pick_visible, k) == 1) {
            unsigned what = rndn(10);
            if (what < 6)
                assert_int_equal(mstate_set_flags(s->st[i], MSTATE_INBOX, k, 1u << rndn(5), 1u << rndn(5), s->now[i]),
                                 MSTATE_OK);
            else if (what < 9)
                assert_int_equal(mstate_set_keyword(s->st[i], MSTATE_INBOX, k, kwnames[rndn(6)], (int)rndn(2), s->now[i]),
                                 MSTATE_OK);
            else
                assert_int_equal(mstate_expunge(s->st[i], MSTATE_INBOX, k, s->now[i]), MSTATE_OK);
        }
    } else if (action < 80) {
        sim_seal(s, i, rndn(10) == 0);
    } else {
        /* read posts, but only those from sites this one reaches (others come after heal) */
        unsigned saved = s->nposts;
        post keep[MAXPOST];
        unsigned nkeep = 0;
        for (unsigned p = 0; p < s->nposts; p++) {
            mstate_info info;
            mstate *d = NULL;
            assert_int_equal(mstate_open(s->posts[p].buf, s->posts[p].len, key, &d, &info), MSTATE_OK);
            mstate_free(d);
            if (s->group[info.origin - 1] == s->group[i])
                keep[nkeep++] = s->posts[p];
        }
        post *all = malloc(saved * sizeof *all + 1);
        assert_non_null(all);
        memcpy(all, s->posts, saved * sizeof *all);
        memcpy(s->posts, keep, nkeep * sizeof *keep);
        s->nposts = nkeep;
        sim_read(s, i, 0);
        memcpy(s->posts, all, saved * sizeof *all);
        s->nposts = saved;
        free(all);
    }
}

static void sim_heal_and_settle(sim *s, unsigned *articles_missing)
{
    for (unsigned j = 0; j < SITES; j++)
        s->group[j] = 0;
    /* after the heal INN brings every site every article it lacks (with one assigner, only
     * the assigner claims what nobody claimed; the others wait for its delta) */
    for (unsigned j = 0; j < (s->one_assigner ? 1 : SITES); j++) {
        unsigned have[MAXMSG] = {0};
        for (unsigned m = 0; m < s->ninbox[j]; m++)
            have[s->inbox[j][m]] = 1;
        for (unsigned m = 0; m < s->nmsg; m++) {
            uint8_t k[MSTATE_MSGKEY_BYTES];
            mstate_view v;
            msgkey(m, k);
            if (!have[m] && !mstate_get(s->st[j], MSTATE_INBOX, k, &v)) {
                s->inbox[j][s->ninbox[j]++] = m;
                (*articles_missing)++;
            }
        }
    }
    /* rounds of read everything, assign, seal, until no site has anything new to say */
    for (unsigned round = 0; round < 10; round++) {
        for (unsigned j = 0; j < SITES; j++)
            sim_read(s, j, 1);
        int said = 0;
        for (unsigned j = 0; j < SITES; j++) {
            said |= mstate_has_pending(s->st[j]);
            sim_seal(s, j, 0);
        }
        if (!said) {
            if (round > sim_rounds_max)
                sim_rounds_max = round;
            return;
        }
    }
    fail_msg("no convergence after 10 rounds");
}

static void sim_free(sim *s)
{
    for (unsigned j = 0; j < SITES; j++)
        mstate_free(s->st[j]);
    for (unsigned p = 0; p < s->nposts; p++)
        free(s->posts[p].buf);
    free(s);
}

static sim *sim_new(uint64_t seed)
{
    sim *s = calloc(1, sizeof *s);
    assert_non_null(s);
    rng_state = seed;
    for (unsigned j = 0; j < SITES; j++) {
        s->st[j] = mstate_new((uint16_t)(j + 1), UV);
        assert_non_null(s->st[j]);
        s->now[j] = T0 + 1000 * j; /* skewed clocks */
        s->view[j].shown_next = 1;
    }
    return s;
}

static int same_map(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    const mstate *other = arg;
    mstate_view w;
    assert_int_equal(mstate_get(other, MSTATE_INBOX, k, &w), 1);
    assert_int_equal(w.uid, uid);
    assert_int_equal(w.flags, v->flags);
    return 0;
}

/* every message ever delivered is either visible with a UID or expunged, at every site */
static void check_nothing_lost(const sim *s)
{
    for (unsigned m = 0; m < s->nmsg; m++) {
        uint8_t k[MSTATE_MSGKEY_BYTES];
        msgkey(m, k);
        for (unsigned j = 0; j < SITES; j++) {
            mstate_view v;
            assert_int_equal(mstate_get(s->st[j], MSTATE_INBOX, k, &v), 1);
            assert_true(v.expunged || v.uid != 0);
        }
    }
}

/* The same set of posts, applied in many orders with duplicates, at fresh sites: one state. */
static void check_order_independent(const sim *s)
{
    uint8_t ref[32];
    assert_int_equal(mstate_digest(s->st[0], ref), MSTATE_OK);
    unsigned *order = malloc(2 * s->nposts * sizeof *order + 1);
    assert_non_null(order);
    for (unsigned trial = 0; trial < 6; trial++) {
        unsigned n = 0;
        for (unsigned p = 0; p < s->nposts; p++)
            order[n++] = p;
        for (unsigned p = 0; p < s->nposts / 4; p++)
            order[n++] = rndn(s->nposts); /* duplicates */
        for (unsigned p = n - 1; p > 0; p--) {
            unsigned q = rndn(p + 1), t = order[p];
            order[p] = order[q];
            order[q] = t;
        }
        mstate *fresh = mstate_new(7, UV);
        for (unsigned p = 0; p < n; p++) {
            mstate *d = open_ok(s->posts[order[p]].buf, s->posts[order[p]].len);
            assert_int_equal(mstate_merge(fresh, d), MSTATE_OK);
            mstate_free(d);
        }
        uint8_t got[32];
        assert_int_equal(mstate_digest(fresh, got), MSTATE_OK);
        assert_memory_equal(got, ref, 32);
        assert_int_equal(mstate_homeless(fresh), 0);
        mstate_free(fresh);
    }
    free(order);
}

static void run_sim(uint64_t seed, unsigned steps, int partitioned, int one_assigner)
{
    sim *s = sim_new(seed);
    s->one_assigner = one_assigner;
    if (partitioned) {
        s->group[0] = 1; /* {1} | {2,3} */
        s->group[1] = s->group[2] = 2;
    }
    for (unsigned t = 0; t < steps; t++)
        sim_step(s);
    unsigned missing = 0;
    sim_heal_and_settle(s, &missing);
    for (unsigned j = 1; j < SITES; j++)
        digest_eq(s->st[0], s->st[j]);
    for (unsigned j = 1; j < SITES; j++) {
        assert_int_equal(mstate_uid_next(s->st[0], MSTATE_INBOX), mstate_uid_next(s->st[j], MSTATE_INBOX));
        assert_int_equal(mstate_foreach_uid(s->st[0], MSTATE_INBOX, same_map, s->st[j]), 0);
    }
    check_nothing_lost(s);
    check_order_independent(s);
    sim_messages += s->nmsg;
    sim_free(s);
}

static void test_sim_connected(void **unused)
{
    (void)unused;
    sim_rehomed = sim_messages = sim_churn = 0;
    for (uint64_t seed = 1; seed <= 12; seed++)
        run_sim(seed * 0x9e3779b97f4a7c15ull, 300, 0, 0);
    print_message("connected, every site claims: %lu messages, %lu re-homes (all sites), %lu UID changes seen by "
                  "clients\n",
                  sim_messages, sim_rehomed, sim_churn);
    /* with one assigner at a time nothing conflicts while the sites reach each other */
    sim_rehomed = sim_messages = sim_churn = 0;
    for (uint64_t seed = 1; seed <= 12; seed++)
        run_sim(seed * 0x9e3779b97f4a7c15ull, 300, 0, 1);
    print_message("connected, one assigner: %lu messages, %lu re-homes, %lu UID changes seen by clients\n",
                  sim_messages, sim_rehomed, sim_churn);
    assert_int_equal(sim_rehomed, 0);
    assert_int_equal(sim_churn, 0);
}

static void test_sim_partition(void **unused)
{
    (void)unused;
    sim_rehomed = sim_messages = sim_churn = 0;
    for (uint64_t seed = 1; seed <= 12; seed++)
        run_sim(seed * 0x2545f4914f6cdd1dull, 300, 1, 0);
    print_message("{1}|{2,3}, every site claims: %lu messages, %lu re-homes (all sites), %lu UID changes seen by "
                  "clients\n",
                  sim_messages, sim_rehomed, sim_churn);
    assert_true(sim_rehomed > 0);
    sim_rehomed = sim_messages = sim_churn = 0;
    for (uint64_t seed = 1; seed <= 12; seed++)
        run_sim(seed * 0x2545f4914f6cdd1dull, 300, 1, 1);
    print_message("{1}|{2,3}, one assigner per side: %lu messages, %lu re-homes (all sites), %lu UID changes seen "
                  "by clients\n",
                  sim_messages, sim_rehomed, sim_churn);
    print_message("rounds of exchange with news after a heal: at most %u\n", sim_rounds_max);
}

/* The partition of the issue, by hand: new mail and flags on both sides of {1} | {2,3}. */
static void test_partition_scenario(void **unused)
{
    (void)unused;
    mstate *s1 = mstate_new(1, UV), *s2 = mstate_new(2, UV), *s3 = mstate_new(3, UV);
    mstate *to23[2] = {s2, s3}, *to13[2] = {s1, s3}, *to12[2] = {s1, s2};
    for (unsigned m = 0; m < 10; m++)
        assign_one(s1, m, T0 + m);
    set_flags(s1, 2, MSTATE_SEEN, 0, T0 + 20);
    ship(s1, to23, 2);
    /* partition: site 1 alone gets m10..m12, reads m3, expunges m4; sites 2 and 3 get
     * m20, m21, flag m3, read m5, and site 3 expunges m6 */
    for (unsigned m = 10; m < 13; m++)
        assign_one(s1, m, T0 + 100 + m);
    set_flags(s1, 3, MSTATE_SEEN, 0, T0 + 110);
    expunge(s1, 4, T0 + 111);
    assign_one(s2, 20, T0 + 105);
    assign_one(s2, 21, T0 + 106);
    ship(s2, &s3, 1);
    set_flags(s3, 3, MSTATE_FLAGGED, 0, T0 + 120);
    set_flags(s2, 5, MSTATE_SEEN, 0, T0 + 121);
    expunge(s3, 6, T0 + 122);
    ship(s3, &s2, 1);
    ship(s2, &s3, 1);
    /* heal: every site reads what the others wrote during the partition (their snapshots
     * here; the simulation below does it with the deltas themselves) */
    mstate *all[3] = {s1, s2, s3};
    exchange_snapshots(all, 3);
    for (unsigned j = 0; j < 3; j++)
        assert_int_equal(mstate_assign(all[j], NULL, 0, T0 + 200, NULL), MSTATE_OK);
    ship(s1, to23, 2);
    ship(s2, to13, 2);
    ship(s3, to12, 2);
    digest_eq(s1, s2);
    digest_eq(s1, s3);
    assert_int_equal(flags_of(s2, 3), MSTATE_SEEN | MSTATE_FLAGGED);
    assert_int_equal(flags_of(s1, 5), MSTATE_SEEN);
    assert_int_equal(flags_of(s3, 2), MSTATE_SEEN);
    assert_int_equal(uid_of(s1, 4), 0);
    assert_int_equal(uid_of(s1, 6), 0);
    /* m10 (site 1) and m20 (site 2) both took UID 11, m11 and m21 UID 12: all re-homed above
     * 13; m12 kept UID 13, which only site 1 gave out */
    assert_int_equal(uid_of(s1, 12), 13);
    for (unsigned m = 10; m <= 11; m++)
        assert_true(uid_of(s2, m) > 13 && uid_of(s2, m + 10) > 13);
    for (unsigned m = 0; m < 10; m++)
        if (m != 4 && m != 6)
            assert_int_equal(uid_of(s3, m), m + 1);
    uint32_t last = 0;
    assert_int_equal(mstate_foreach_uid(s3, MSTATE_INBOX, collect_uids, &last), 0);
    assert_int_equal(mstate_uid_next(s1, MSTATE_INBOX), 18);
    mstate_free(s1);
    mstate_free(s2);
    mstate_free(s3);
}

/* ---- merge laws directly, on random states ---- */

static mstate *random_state(uint16_t site, unsigned nmsg, uint64_t now)
{
    mstate *st = mstate_new(site, UV);
    for (unsigned i = 0; i < nmsg; i++) {
        unsigned m = rndn(40);
        assign_one(st, m, now);
        uint8_t k[MSTATE_MSGKEY_BYTES];
        msgkey(m, k);
        now += rndn(3);
        if (rndn(8) == 0)
            assert_int_equal(mstate_expunge(st, MSTATE_INBOX, k, now), MSTATE_OK);
        else if (rndn(2))
            assert_int_equal(mstate_set_flags(st, MSTATE_INBOX, k, 1u << rndn(5), 1u << rndn(5), now), MSTATE_OK);
        else
            assert_int_equal(mstate_set_keyword(st, MSTATE_INBOX, k, kwnames[rndn(6)], (int)rndn(2), now), MSTATE_OK);
    }
    return st;
}

static void test_merge_laws(void **unused)
{
    (void)unused;
    rng_state = 0x1234567890abcdefull;
    for (unsigned trial = 0; trial < 60; trial++) {
        mstate *a = random_state(1, 30, T0), *b = random_state(2, 30, T0 + 5), *c = random_state(3, 30, T0 + 2);
        /* (a b) c == a (b c) == (c a) b; a a == a */
        mstate *ab_c = mstate_clone(a);
        assert_int_equal(mstate_merge(ab_c, b), MSTATE_OK);
        assert_int_equal(mstate_merge(ab_c, c), MSTATE_OK);
        mstate *bc = mstate_clone(b);
        assert_int_equal(mstate_merge(bc, c), MSTATE_OK);
        mstate *a_bc = mstate_clone(a);
        assert_int_equal(mstate_merge(a_bc, bc), MSTATE_OK);
        mstate *ca_b = mstate_clone(c);
        assert_int_equal(mstate_merge(ca_b, a), MSTATE_OK);
        assert_int_equal(mstate_merge(ca_b, b), MSTATE_OK);
        digest_eq(ab_c, a_bc);
        digest_eq(ab_c, ca_b);
        mstate *aa = mstate_clone(a);
        assert_int_equal(mstate_merge(aa, a), MSTATE_OK);
        digest_eq(aa, a);
        assert_int_equal(mstate_merge(ab_c, b), MSTATE_OK); /* again: nothing changes */
        digest_eq(ab_c, a_bc);
        /* the keyword spelling chosen ($label1 / $LABEL1) is the same from every side */
        uint8_t k[MSTATE_MSGKEY_BYTES];
        msgkey(1, k);
        assert_int_equal(mstate_keyword_test(ab_c, MSTATE_INBOX, k, "$label1"), mstate_keyword_test(ca_b, MSTATE_INBOX, k, "$LABEL1"));
        mstate *all[] = {a, b, c, ab_c, bc, a_bc, ca_b, aa};
        for (unsigned i = 0; i < 8; i++)
            mstate_free(all[i]);
    }
}

/* ---- snapshots ---- */

static void test_snapshot_supersedes(void **unused)
{
    (void)unused;
    rng_state = 77;
    mstate *a = mstate_new(1, UV), *b = mstate_new(2, UV);
    post early[20], late[20];
    unsigned ne = 0, nl = 0;
    uint64_t seqs[20];
    for (unsigned i = 0; i < 20; i++) {
        mstate *w = i % 2 ? b : a;
        assign_one(w, i, T0 + i);
        set_flags(w, i, MSTATE_SEEN, 0, T0 + i);
        uint8_t k[MSTATE_MSGKEY_BYTES];
        msgkey(i - 3, k);
        if (i > 3) /* unknown at w when i - 3 is the other site's: then refused, which is fine */
            (void)mstate_set_flags(w, MSTATE_INBOX, k, 0, MSTATE_SEEN, T0 + i);
        post *p = i < 12 ? &early[ne++] : &late[nl++];
        assert_int_equal(mstate_seal_delta(w, key, &p->buf, &p->len, &seqs[i]), MSTATE_OK);
        assert_int_equal(seqs[i], i / 2 + 1);
    }
    /* a reader of the early deltas writes a snapshot */
    mstate *r = mstate_new(3, UV);
    for (unsigned i = 0; i < ne; i++) {
        mstate *d = open_ok(early[i].buf, early[i].len);
        assert_int_equal(mstate_merge(r, d), MSTATE_OK);
        mstate_free(d);
    }
    uint8_t *snap;
    size_t snaplen;
    assert_int_equal(mstate_seal_snapshot(r, key, &snap, &snaplen), MSTATE_OK);
    mstate_info info;
    mstate *s = NULL;
    assert_int_equal(mstate_open(snap, snaplen, key, &s, &info), MSTATE_OK);
    assert_int_equal(info.kind, MSTATE_SNAPSHOT);
    /* it says which deltas it covers, so a reader may drop them */
    for (unsigned i = 0; i < 20; i++) {
        mstate_info di;
        mstate *d = NULL;
        post *p = i < 12 ? &early[i] : &late[i - 12];
        assert_int_equal(mstate_open(p->buf, p->len, key, &d, &di), MSTATE_OK);
        assert_int_equal(di.kind, MSTATE_DELTA);
        assert_int_equal(di.seq, seqs[i]);
        assert_int_equal(mstate_covers(s, di.origin, di.seq), i < 12);
        mstate_free(d);
    }
    /* snapshot + later deltas == all deltas */
    mstate *all = mstate_new(4, UV);
    for (unsigned i = 0; i < 20; i++) {
        post *p = i < 12 ? &early[i] : &late[i - 12];
        mstate *d = open_ok(p->buf, p->len);
        assert_int_equal(mstate_merge(all, d), MSTATE_OK);
        mstate_free(d);
    }
    mstate *via = mstate_new(5, UV);
    assert_int_equal(mstate_merge(via, s), MSTATE_OK);
    for (int i = (int)nl - 1; i >= 0; i--) { /* and in reverse */
        mstate *d = open_ok(late[i].buf, late[i].len);
        assert_int_equal(mstate_merge(via, d), MSTATE_OK);
        mstate_free(d);
    }
    digest_eq(all, via);
    /* out of order: delta 3 of a site before 2 is covered only once 2 is in */
    mstate *o = mstate_new(6, UV);
    mstate *d5 = open_ok(early[4].buf, early[4].len); /* a's seq 3 */
    assert_int_equal(mstate_merge(o, d5), MSTATE_OK);
    assert_true(mstate_covers(o, 1, 3));
    assert_false(mstate_covers(o, 1, 2));
    mstate_free(d5);
    for (unsigned i = 0; i < ne; i++)
        free(early[i].buf);
    for (unsigned i = 0; i < nl; i++)
        free(late[i].buf);
    free(snap);
    mstate *frees[] = {a, b, r, s, all, via, o};
    for (unsigned i = 0; i < 7; i++)
        mstate_free(frees[i]);
}

/* ---- codec and seal ---- */

static void test_codec_roundtrip(void **unused)
{
    (void)unused;
    rng_state = 4242;
    mstate *st = random_state(9, 200, T0);
    uint8_t *enc, *enc2;
    size_t len, len2;
    assert_int_equal(mstate_encode(st, MSTATE_SNAPSHOT, &enc, &len), MSTATE_OK);
    mstate *back = NULL;
    mstate_info info;
    assert_int_equal(mstate_decode(enc, len, &back, &info), MSTATE_OK);
    assert_int_equal(info.origin, 9);
    assert_int_equal(info.uidvalidity, UV);
    assert_int_equal(mstate_encode(back, MSTATE_SNAPSHOT, &enc2, &len2), MSTATE_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(enc, enc2, len); /* canonical */
    digest_eq(st, back);
    /* every strict prefix is rejected cleanly, and so is any appended byte */
    for (size_t cut = 0; cut < len; cut++) {
        mstate *x = (mstate *)1;
        assert_int_equal(mstate_decode(enc, cut, &x, NULL), MSTATE_EFORMAT);
        assert_null(x);
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, enc, len);
    longer[len] = 0;
    mstate *x;
    assert_int_equal(mstate_decode(longer, len + 1, &x, NULL), MSTATE_EFORMAT);
    free(longer);
    /* single bit flips: rejected or decoded into a state that re-encodes to the same bytes */
    for (size_t i = 0; i < len; i += 3) {
        enc[i] ^= (uint8_t)(1u << (i % 8));
        if (mstate_decode(enc, len, &x, NULL) == MSTATE_OK) {
            uint8_t *e3;
            size_t l3;
            assert_int_equal(mstate_encode(x, MSTATE_SNAPSHOT, &e3, &l3), MSTATE_OK);
            assert_int_equal(l3, len);
            assert_memory_equal(e3, enc, len);
            free(e3);
            mstate_free(x);
        }
        enc[i] ^= (uint8_t)(1u << (i % 8));
    }
    /* a huge claimed count with few bytes behind it is refused before any allocation */
    static const uint8_t huge[] = {'P', 'S', 'T', 'M', 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0,
                                   0x80, 0x80, 0x80, 0x02};
    assert_int_equal(mstate_decode(huge, sizeof huge, &x, NULL), MSTATE_EFORMAT);
    /* more than the size limit is refused before a byte is read (huge is far shorter) */
    assert_int_equal(mstate_decode(huge, (size_t)MSTATE_ENCODED_MAX + 1, &x, NULL), MSTATE_EFORMAT);
    /* the empty state, and the same with an overlong varint (0x80 0x00 for 0) */
    static const uint8_t empty[] = {'P', 'S', 'T', 'M', 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0};
    static const uint8_t overlong[] = {'P', 'S', 'T', 'M', 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0,
                                       0x80, 0};
    assert_int_equal(mstate_decode(empty, sizeof empty, &x, NULL), MSTATE_OK);
    mstate_free(x);
    assert_int_equal(mstate_decode(overlong, sizeof overlong, &x, NULL), MSTATE_EFORMAT);
    /* two messages holding UID 1, which is not dead: no writer produces that */
    uint8_t two[19 + 2 * 21];
    memcpy(two, empty, sizeof empty);
    two[14] = 1;  /* H = 1 */
    two[18] = 2;  /* N = 2 */
    size_t at = sizeof empty;
    for (unsigned m = 0; m < 2; m++) {
        memset(two + at, 0, 16);
        two[at + 15] = (uint8_t)m; /* keys ascending */
        at += 16;
        two[at++] = 0;             /* folder */
        two[at++] = 2;             /* claimed */
        two[at++] = 0;             /* gen */
        two[at++] = 1;             /* uid 1 */
        two[at++] = 0;             /* no registers */
    }
    assert_int_equal(mstate_decode(two, at, &x, NULL), MSTATE_EFORMAT);
    two[at - 2] = 0; /* the second one's claim in conflict (UID 0) instead: fine */
    assert_int_equal(mstate_decode(two, at, &x, NULL), MSTATE_OK);
    assert_int_equal(mstate_homeless(x), 1);
    mstate_free(x);
    free(enc);
    free(enc2);
    mstate_free(st);
    mstate_free(back);
}

static void test_seal(void **unused)
{
    (void)unused;
    rng_state = 99;
    mstate *st = random_state(1, 100, T0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(mstate_seal_snapshot(st, key, &buf, &len), MSTATE_OK);
    mstate_info info;
    mstate *x = NULL;
    assert_int_equal(mstate_open(buf, len, key, &x, &info), MSTATE_OK);
    assert_int_equal(info.padded_len, len);
    digest_eq(st, x);
    mstate_free(x);
    /* padded to a bucket: the size says only which power of two */
    size_t body = len - 4 - 1 - 24 - 16;
    assert_int_equal(mstate_padded_size(body), body);
    assert_true(body >= 1024 && (body & (body - 1)) == 0);
    assert_int_equal(mstate_padded_size(1), 1024);
    assert_int_equal(mstate_padded_size(1025), 2048);
    assert_int_equal(mstate_padded_size((size_t)MSTATE_ENCODED_MAX + 1), 0);
    /* wrong key, tampering anywhere, truncation, garbage */
    assert_int_equal(mstate_open(buf, len, key2, &x, NULL), MSTATE_EAUTH);
    assert_null(x);
    for (size_t i = 5; i < len; i += len / 40 + 1) {
        buf[i] ^= 0x40;
        assert_int_equal(mstate_open(buf, len, key, &x, NULL), MSTATE_EAUTH);
        buf[i] ^= 0x40;
    }
    buf[0] ^= 1; /* the magic is outside the AEAD but checked first */
    assert_int_equal(mstate_open(buf, len, key, &x, NULL), MSTATE_EFORMAT);
    buf[0] ^= 1;
    buf[4] = 2; /* version */
    assert_int_equal(mstate_open(buf, len, key, &x, NULL), MSTATE_EFORMAT);
    buf[4] = 1;
    assert_int_equal(mstate_open(buf, len - 1, key, &x, NULL), MSTATE_EFORMAT);
    assert_int_not_equal(mstate_open(buf, len - 1024, key, &x, NULL), MSTATE_OK);
    assert_int_equal(mstate_open(buf, 10, key, &x, NULL), MSTATE_EFORMAT);
    uint8_t *garbage = malloc(len);
    randombytes_buf(garbage, len);
    memcpy(garbage, "PSTS\1", 5);
    assert_int_equal(mstate_open(garbage, len, key, &x, NULL), MSTATE_EAUTH);
    free(garbage);
    /* a sealed non-state (right key, wrong contents) is a format error, not a crash */
    free(buf);
    /* deltas of one change and of many land in the same small bucket */
    uint8_t k[MSTATE_MSGKEY_BYTES];
    msgkey(1, k);
    mstate *y = mstate_new(2, UV);
    assign_one(y, 1, T0);
    assert_int_equal(mstate_seal_delta(y, key, &buf, &len, NULL), MSTATE_OK);
    size_t one = len;
    free(buf);
    for (unsigned i = 2; i < 20; i++)
        assign_one(y, i, T0);
    assert_int_equal(mstate_seal_delta(y, key, &buf, &len, NULL), MSTATE_OK);
    assert_int_equal(len, one);
    free(buf);
    assert_int_equal(mstate_seal_delta(y, key, &buf, &len, NULL), MSTATE_OK);
    assert_null(buf); /* nothing pending */
    mstate_free(y);
    mstate_free(st);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    memset(key, 0x11, sizeof key);
    memset(key2, 0x22, sizeof key2);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_uidvalidity_derive),
        cmocka_unit_test(test_keyword_limits),
        cmocka_unit_test(test_lww_flags),
        cmocka_unit_test(test_tombstone_wins),
        cmocka_unit_test(test_uid_conflict_two_messages),
        cmocka_unit_test(test_uid_conflict_one_message),
        cmocka_unit_test(test_partition_scenario),
        cmocka_unit_test(test_horizon),
        cmocka_unit_test(test_uid_floor),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_skip_deltas),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_sim_connected),
        cmocka_unit_test(test_sim_partition),
        cmocka_unit_test(test_snapshot_supersedes),
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_seal),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
