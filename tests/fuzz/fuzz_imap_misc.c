/* libFuzzer target for the rest of imap/: the first byte picks a routine, the rest is its
 * input. Sequence sets must come out sorted, merged and re-parse to themselves; modified
 * UTF-7 must decode only canonical text (decode then encode gives the input back) and
 * encode/decode must round-trip; strings written in any form must parse back to the same
 * bytes; dates that parse must format and parse back to the same instant; FETCH attribute
 * and section parsing must stay inside their input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

static void fuzz_seqset(const uint8_t *d, size_t n)
{
    if (n < 4)
        return;
    uint32_t star = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)(d[3] & 1) << 24;
    if (d[3] & 2)
        star = UINT32_MAX - d[0];
    const char *s = (const char *)d + 4;
    n -= 4;
    pi_seqset set;
    const char *err = NULL;
    if (pi_seqset_parse(s, n, star, &set, &err) < 0) {
        if (!err || !err[0])
            abort();
        return;
    }
    uint64_t count = 0;
    for (size_t i = 0; i < set.n; i++) {
        if (set.r[i].lo == 0 || set.r[i].lo > set.r[i].hi)
            abort();
        if (i && (uint64_t)set.r[i - 1].hi + 1 >= set.r[i].lo)
            abort(); /* not merged */
        if (!pi_seqset_contains(&set, set.r[i].lo) || !pi_seqset_contains(&set, set.r[i].hi))
            abort();
        if (set.r[i].lo > 1 && pi_seqset_contains(&set, set.r[i].lo - 1))
            abort();
        count += (uint64_t)set.r[i].hi - set.r[i].lo + 1;
    }
    if (count != pi_seqset_count(&set))
        abort();
    if (count < 100000) {
        pi_seqset_iter it = {0};
        uint32_t v, prev = 0;
        uint64_t seen = 0;
        while (pi_seqset_next(&set, &it, &v)) {
            if ((seen && v <= prev) || !pi_seqset_contains(&set, v))
                abort();
            prev = v;
            seen++;
        }
        if (seen != count)
            abort();
    }
    if (set.n) {
        pu_buf b = PU_BUF_INIT;
        pi_seqset again;
        if (pi_write_seqset(&b, &set) < 0 || pi_seqset_parse(b.data, b.len, star, &again, &err) < 0 ||
            again.n != set.n || memcmp(again.r, set.r, set.n * sizeof *set.r) != 0)
            abort();
        pi_seqset_free(&again);
        pu_buf_free(&b);
    }
    pi_seqset_free(&set);
}

static void fuzz_mutf7(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    pu_buf a = PU_BUF_INIT, b = PU_BUF_INIT;
    if (pi_mutf7_decode(s, n, &a) == 0) {
        if (strlen(a.data) != a.len || pi_mutf7_encode(a.data, a.len, &b) < 0 || b.len != n ||
            memcmp(b.data, s, n) != 0)
            abort();
    } else if (a.len != 0) {
        abort();
    }
    pu_buf_clear(&a);
    pu_buf_clear(&b);
    if (pi_mutf7_encode(s, n, &a) == 0) {
        for (size_t i = 0; i < a.len; i++)
            if (a.data[i] < 0x20 || a.data[i] > 0x7e)
                abort();
        if (pi_mutf7_decode(a.data, a.len, &b) < 0 || b.len != n || memcmp(b.data, s, n) != 0)
            abort();
    }
    pu_buf_free(&a);
    pu_buf_free(&b);
}

static void fuzz_string(const uint8_t *d, size_t n)
{
    if (n < 1)
        return;
    unsigned how = d[0] % 3, flags = (d[0] >> 2) & PI_W_UTF8;
    const char *s = (const char *)d + 1;
    n--;
    pu_buf b = PU_BUF_INIT;
    pu_buf_addstr(&b, "t X ");
    int r = how == 0 ? pi_write_string(&b, s, n, flags)
            : how == 1 ? pi_write_astring(&b, s, n, flags)
                       : pi_write_nstring(&b, s, n, flags);
    if (r < 0 || pu_buf_addstr(&b, "\r\n") < 0)
        abort();
    pi_parser *p = pi_parser_new(NULL);
    if (!p)
        abort();
    size_t off = 0, used;
    pi_status st;
    while ((st = pi_parse(p, b.data + off, b.len - off, &used)) == PI_CONTINUE)
        off += used;
    const pi_command *c = pi_parser_command(p);
    const char *got;
    size_t gl;
    if (st != PI_COMMAND || off + used != b.len || c->nargs != 1 || !pi_arg_astring(&c->args[0], &got, &gl) ||
        gl != n || memcmp(got, s, n) != 0)
        abort();
    if (how != 1 && !pi_arg_string(&c->args[0], &got, &gl))
        abort();
    pi_parser_free(p);
    pu_buf_free(&b);
}

static void fuzz_dates(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    int64_t t;
    int tz;
    char out[PI_DATE_TIME_SIZE];
    if (pi_date_time_parse(s, n, &t, &tz) == 0) {
        int64_t t2;
        int tz2;
        if (pi_date_time_format(t, tz, out) < 0)
            return; /* a valid year 1 date in a zone east of UTC lands in year 0 */
        if (strlen(out) != PI_DATE_TIME_SIZE - 1 || pi_date_time_parse(out + 1, strlen(out) - 2, &t2, &tz2) < 0 ||
            tz2 != tz)
            abort();
        /* A leap second (:60) is the next minute's :00. */
        if (t2 != t)
            abort();
    }
    pi_date dt;
    if (pi_date_parse(s, n, &dt) == 0 &&
        (dt.month < 1 || dt.month > 12 || dt.day < 1 || dt.day > 31 || dt.year < 1 || dt.year > 9999))
        abort();
    if (n >= 8) {
        int64_t x;
        memcpy(&x, d, 8);
        if (pi_date_time_format(x, (int)(x % 1500), out) == 0 &&
            (pi_date_time_parse(out + 1, strlen(out) - 2, &t, &tz) < 0 || t != x))
            abort();
    }
}

static void fuzz_fetch(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    pi_fetch_att f;
    if (pi_fetch_att_split(s, n, &f) == 0) {
        if (f.name != s || f.name_len == 0 || f.name_len > n)
            abort();
        if (f.has_section && (f.section < s || f.section + f.section_len > s + n))
            abort();
        if (f.has_section) {
            pi_section sec;
            int rc = pi_section_parse(f.section, f.section_len, &sec);
            if (rc < -1 || rc > 1 || (rc == 0 && sec.npath > PI_SECTION_MAX_PATH))
                abort();
            for (size_t i = 0; rc == 0 && i < sec.nfields; i++)
                if (sec.field_lens[i] == 0 || sec.fields[i] < f.section ||
                    sec.fields[i] + sec.field_lens[i] > f.section + f.section_len)
                    abort(); /* names point into the spec */
            if (rc == 0)
                pi_section_free(&sec);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
        fuzz_seqset(data + 1, size - 1);
        break;
    case 1:
        fuzz_mutf7(data + 1, size - 1);
        break;
    case 2:
        fuzz_string(data + 1, size - 1);
        break;
    case 3:
        fuzz_dates(data + 1, size - 1);
        break;
    default:
        fuzz_fetch(data + 1, size - 1);
        break;
    }
    return 0;
}
