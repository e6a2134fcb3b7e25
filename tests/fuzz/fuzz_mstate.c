/* libFuzzer: the decoder of a replicated mailbox state (docs/formats.md 6.2), fed arbitrary
 * bytes. What it accepts must encode back to exactly the same bytes (the format is
 * canonical; a version 1 input, written before folders, re-encodes as version 3 with the same
 * contents; a version 2 one, before filing stamps, as itself but for the version byte), and
 * the decoded state must then survive what a gateway does with it: merge it
 * into states of its own (with folders), assign UIDs, change flags, file messages in folders,
 * seal and open it again. The sealed opener gets the raw bytes too (it must refuse them
 * without reading past the end). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mstate/mstate.h"

static const uint8_t key[MSTATE_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};

typedef struct check_ctx {
    const mstate *st;
    uint32_t folder;
} check_ctx;

static int check_one(void *arg, uint32_t uid, const uint8_t k[MSTATE_MSGKEY_BYTES], const mstate_view *v)
{
    const check_ctx *c = arg;
    mstate_view again;
    if (!uid || v->expunged || v->folder != c->folder || mstate_get(c->st, c->folder, k, &again) != 1 ||
        again.uid != uid || again.flags != v->flags)
        abort();
    return 0;
}

/* every folder that shows lists only live entries, each under the UID the state gives it */
static void check_all(const mstate *st)
{
    mstate_folder *f;
    size_t n;
    if (mstate_folders(st, &f, &n) != MSTATE_OK)
        return; /* out of memory */
    for (size_t i = 0; i < n; i++) {
        check_ctx c = {st, f[i].id};
        if (mstate_foreach_uid(st, f[i].id, check_one, &c) != 0)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(f[i].name, f[j].name) == 0)
                abort();
    }
    free(f);
}

static void same_digest(const mstate *a, const mstate *b)
{
    uint8_t da[32], db[32];
    if (mstate_digest(a, da) != MSTATE_OK || mstate_digest(b, db) != MSTATE_OK || memcmp(da, db, 32) != 0)
        abort();
}

static int nothing_on_spool(void *arg, const uint8_t key[MSTATE_MSGKEY_BYTES])
{
    (void)arg, (void)key;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    mstate *opened = NULL;
    int rc = mstate_open(data, size, key, &opened, NULL);
    if (rc != MSTATE_EFORMAT && rc != MSTATE_EAUTH)
        abort();

    mstate *st = NULL;
    mstate_info info;
    rc = mstate_decode(data, size, &st, &info);
    if (rc != MSTATE_OK) {
        if ((rc != MSTATE_EFORMAT && rc != MSTATE_ENOMEM) || st)
            abort();
        return 0;
    }
    uint8_t *enc;
    size_t len;
    if (mstate_encode(st, info.kind, &enc, &len) != MSTATE_OK)
        abort();
    /* version 2 (no filing stamps) re-encodes as version 3 byte for byte but the version */
    if (data[4] != 1 && (len != size || enc[4] != 3 || memcmp(enc, data, 4) != 0 ||
                         memcmp(enc + 5, data + 5, size - 5) != 0))
        abort();
    if (data[4] == 1) { /* version 1: the version 3 form reads back to the same contents */
        mstate *v2 = NULL;
        if (mstate_decode(enc, len, &v2, NULL) != MSTATE_OK)
            abort();
        same_digest(st, v2);
        mstate_free(v2);
    }
    free(enc);
    check_all(st);

    /* a merge is idempotent and gives the same as the other way round */
    mstate *mine = mstate_new(info.origin == 1 ? 2 : 1, info.uidvalidity);
    if (!mine)
        abort();
    uint8_t k[2][MSTATE_MSGKEY_BYTES];
    mstate_msgkey("<a@fuzz>", 8, k[0]);
    mstate_msgkey("<b@fuzz>", 8, k[1]);
    if (mstate_assign(mine, (const uint8_t(*)[MSTATE_MSGKEY_BYTES])k, 2, 1000, NULL) != MSTATE_OK ||
        mstate_set_flags(mine, MSTATE_INBOX, k[0], MSTATE_SEEN, 0, 1001) != MSTATE_OK ||
        mstate_set_keyword(mine, MSTATE_INBOX, k[1], "$Fuzz", 1, 1002) != MSTATE_OK ||
        mstate_copy(mine, MSTATE_INBOX, k[1], MSTATE_TRASH, 1003, NULL) != MSTATE_OK ||
        mstate_expunge(mine, MSTATE_INBOX, k[1], 1003) != MSTATE_OK ||
        mstate_folder_create(mine, "fuzz/sub", 1004, NULL) != MSTATE_OK)
        abort();
    mstate *ab = mstate_clone(mine), *ba = mstate_clone(st);
    if (!ab || !ba)
        abort();
    int r1 = mstate_merge(ab, st), r2 = mstate_merge(ba, mine);
    if (r1 != r2)
        abort();
    if (r1 == MSTATE_OK) {
        same_digest(ab, ba);
        if (mstate_merge(ab, st) != MSTATE_OK)
            abort();
        same_digest(ab, ba);
        rc = mstate_assign(ab, NULL, 0, 2000, NULL);
        if (rc != MSTATE_OK && rc != MSTATE_ELIMIT)
            abort();
        if (rc == MSTATE_OK && mstate_homeless(ab) != 0)
            abort();
        check_all(ab);
    } else if (r1 != MSTATE_ELIMIT && r1 != MSTATE_ENOMEM) {
        abort();
    }

    /* forgetting whatever is old leaves a state whose UIDs are still consistent and whose
     * horizon still reaches every claim it keeps */
    size_t waiting = mstate_waiting(st);
    if (mstate_forget(st, nothing_on_spool, NULL, 40000ull * 86400000u, 60, NULL) == MSTATE_OK &&
        mstate_waiting(st) > waiting)
        abort();
    check_all(st);

    /* seal and open: the same contents */
    uint8_t *sealed;
    if (mstate_seal_snapshot(st, key, &sealed, &len) == MSTATE_OK) {
        mstate *back = NULL;
        if (mstate_open(sealed, len, key, &back, NULL) != MSTATE_OK)
            abort();
        same_digest(st, back);
        mstate_free(back);
        free(sealed);
    }
    mstate_free(ab);
    mstate_free(ba);
    mstate_free(mine);
    mstate_free(st);
    return 0;
}
