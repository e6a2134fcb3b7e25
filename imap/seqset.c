/* Sequence sets: parsed into sorted, merged ranges with '*' already resolved, so FETCH,
 * STORE and SEARCH only ever see plain numbers. */
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

/* nz-number or '*'. Advances *i. Returns 0, or -1 with *err set. */
static int number(const char *s, size_t len, size_t *i, uint32_t star, uint32_t *v, bool *used_star,
                  const char **err)
{
    if (*i < len && s[*i] == '*') {
        (*i)++;
        *v = star;
        *used_star = true;
        return 0;
    }
    if (*i < len && s[*i] == '$') {
        *err = "Saved search results ($) not supported";
        return -1;
    }
    if (*i >= len || s[*i] < '1' || s[*i] > '9') {
        *err = (*i < len && s[*i] == '0') ? "Message numbers start at 1" : "Invalid sequence set";
        return -1;
    }
    uint64_t n = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        n = n * 10 + (uint64_t)(s[*i] - '0');
        if (n > UINT32_MAX) {
            *err = "Number in sequence set too big";
            return -1;
        }
        (*i)++;
    }
    *v = (uint32_t)n;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const pi_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int pi_seqset_parse(const char *s, size_t len, uint32_t star, pi_seqset *out, const char **err)
{
    out->r = NULL;
    out->n = 0;
    if (len == 0) {
        *err = "Empty sequence set";
        return -1;
    }
    size_t elems = 1;
    for (size_t i = 0; i < len; i++)
        elems += s[i] == ',';
    if (elems > PI_SEQSET_MAX) {
        *err = "Too many elements in sequence set";
        return -1;
    }
    pi_range *r = malloc(elems * sizeof *r);
    if (!r) {
        *err = "Out of memory";
        return -1;
    }
    size_t n = 0, i = 0;
    for (;;) {
        uint32_t a, b;
        bool used_star = false;
        if (number(s, len, &i, star, &a, &used_star, err) < 0)
            goto fail;
        b = a;
        if (i < len && s[i] == ':') {
            i++;
            if (number(s, len, &i, star, &b, &used_star, err) < 0)
                goto fail;
        }
        if (a > b) {
            uint32_t t = a;
            a = b;
            b = t;
        }
        /* In an empty mailbox there is no "*", so "1:*" selects nothing. */
        if (!(used_star && star == 0))
            r[n++] = (pi_range){a, b};
        if (i == len)
            break;
        if (s[i] != ',') {
            *err = "Invalid sequence set";
            goto fail;
        }
        i++;
    }
    qsort(r, n, sizeof *r, cmp_range);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        /* Merge overlapping and adjacent ranges; hi + 1 cannot overflow past a lo. */
        if (m && (uint64_t)r[m - 1].hi + 1 >= r[k].lo) {
            if (r[k].hi > r[m - 1].hi)
                r[m - 1].hi = r[k].hi;
        } else {
            r[m++] = r[k];
        }
    }
    if (m == 0) {
        free(r);
        r = NULL;
    }
    out->r = r;
    out->n = m;
    return 0;
fail:
    free(r);
    return -1;
}

const char *pi_seqset_check(const pi_seqset *set, uint32_t exists)
{
    if (exists == 0) /* no number exists, "*" neither (pi_seqset_parse dropped its ranges) */
        return "No messages: the mailbox is empty";
    /* sorted and merged: the last range holds the highest number */
    return set->n && set->r[set->n - 1].hi > exists ? "Message sequence number beyond the last message" : NULL;
}

void pi_seqset_free(pi_seqset *set)
{
    free(set->r);
    set->r = NULL;
    set->n = 0;
}

bool pi_seqset_contains(const pi_seqset *set, uint32_t v)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v < set->r[mid].lo)
            hi = mid;
        else if (v > set->r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

uint64_t pi_seqset_count(const pi_seqset *set)
{
    uint64_t c = 0;
    for (size_t i = 0; i < set->n; i++)
        c += (uint64_t)set->r[i].hi - set->r[i].lo + 1;
    return c;
}

bool pi_seqset_next(const pi_seqset *set, pi_seqset_iter *it, uint32_t *v)
{
    if (!it->started) {
        it->started = true;
        it->i = 0;
        if (set->n)
            it->next = set->r[0].lo;
    }
    if (it->i >= set->n)
        return false;
    *v = it->next;
    if (it->next == set->r[it->i].hi) {
        if (++it->i < set->n)
            it->next = set->r[it->i].lo;
    } else {
        it->next++;
    }
    return true;
}

int pi_seqset_write(pu_buf *out, const uint32_t *ids, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && ids[j] != UINT32_MAX && ids[j + 1] == ids[j] + 1)
            j++;
        rc |= pu_buf_printf(out, i ? ",%u" : "%u", ids[i]);
        if (j > i)
            rc |= pu_buf_printf(out, ":%u", ids[j]);
        i = j + 1;
    }
    return rc ? -1 : 0;
}

bool pi_arg_modseq(const pi_arg *a, bool zero, uint64_t *v)
{
    if (a->type != PI_ATOM || a->len == 0 || a->len > 19)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (a->str[i] < '0' || a->str[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(a->str[i] - '0'); /* 19 digits never wrap 64 bits */
    }
    if (n > INT64_MAX || (!zero && n == 0))
        return false;
    *v = n;
    return true;
}
