/* libFuzzer: the parser of a decrypted userstate (docs/formats.md 5.2), fed arbitrary bytes.
 * What it accepts must serialise back to exactly the same bytes (the format is canonical),
 * and the parsed state must then survive lookups, changes, a prune and another round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "userstate/userstate.h"
#include "userstate/userstate_internal.h"

static int every_other(void *arg, const char *msgid)
{
    (void)msgid;
    return (*(unsigned *)arg)++ % 2;
}

static int visit(void *arg, const char *msgid, const userstate_msg *m)
{
    const userstate *st = arg;
    userstate_msg again;
    if (userstate_get(st, msgid, &again) != 1 || again.modseq != m->modseq || again.flags != m->flags ||
        m->modseq > userstate_modseq(st))
        abort();
    return 0;
}

static void round_trip(const userstate *st, const uint8_t *expect, size_t len)
{
    size_t n = us_serialized_size(st);
    if (expect && n != len)
        abort();
    uint8_t *out = malloc(n);
    if (!out)
        abort();
    us_serialize(st, out);
    if (expect && memcmp(out, expect, n) != 0)
        abort();
    userstate *back = us_new();
    if (!back || us_parse(back, out, n, US_VERSION) != US_OK) /* what we write, we read */
        abort();
    us_free(back);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    userstate *st = us_new();
    if (!st)
        abort();
    int rc = us_parse(st, data, size, US_VERSION);
    if (rc != US_OK) {
        if (rc != US_EFORMAT && rc != US_ENOMEM)
            abort();
        us_free(st);
        return 0;
    }
    round_trip(st, data, size);
    userstate_foreach(st, visit, st);

    /* change it a little, then check that it still round-trips */
    unsigned kw;
    if (userstate_keyword(st, "$Fuzzed", &kw) == US_OK) {
        uint8_t set[US_KEYWORD_SET_BYTES] = {0};
        us_kw_put(set, kw, 1);
        rc = userstate_store(st, "<fuzz@postern.invalid>", US_ADD, US_SEEN, set);
        if (rc != US_OK && !(rc == US_ELIMIT && userstate_modseq(st) == UINT64_MAX))
            abort();
    }
    userstate_meta m = {.arrival = 1, .raw_size = 2, .crlf_size = 3, .envelope = data,
                        .envelope_len = size < US_BLOB_MAX ? size : US_BLOB_MAX};
    if (userstate_meta_set(st, "<meta@postern.invalid>", &m) != US_OK)
        abort();
    rc = userstate_remove(st, "<gone@postern.invalid>");
    if (rc != US_OK && !(rc == US_ELIMIT && userstate_modseq(st) == UINT64_MAX)) /* the counter is spent */
        abort();
    round_trip(st, NULL, 0);
    unsigned calls = 0;
    size_t pruned;
    if (userstate_prune(st, every_other, &calls, &pruned) != US_OK)
        abort();
    userstate_foreach(st, visit, st);
    round_trip(st, NULL, 0);
    us_free(st);
    return 0;
}
