/* The maildrop view of one TRANSACTION state: fixed numbering, DELE marks, RSET, and the
 * STAT/LIST/UIDL/RETR/TOP replies computed from the sizes and unique-ids the caller gave. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3.h"

enum { LIVE, MARKED, GONE }; /* GONE: deleted before the session */

struct ent {
    uint64_t size;
    const char *uidl; /* into pool, NUL-terminated */
    unsigned char state;
};

struct pp_maildrop {
    size_t n;
    struct ent *e;
    char *pool;
    size_t live;
    uint64_t live_octets;
};

bool pp_uidl_valid(const char *s, size_t len)
{
    if (!s || len < 1 || len > PP_UIDL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static int cmp_uidl(const void *a, const void *b)
{
    const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;
    return strcmp(x->uidl, y->uidl);
}

pp_maildrop *pp_maildrop_new(const pp_msg *msgs, size_t n)
{
    if (n > PP_MSG_MAX) {
        errno = EINVAL;
        return NULL;
    }
    size_t pool_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pp_uidl_valid(msgs[i].uidl, msgs[i].uidl_len)) {
            errno = EINVAL;
            return NULL;
        }
        pool_len += msgs[i].uidl_len + 1;
    }
    pp_maildrop *md = calloc(1, sizeof *md);
    struct ent **sorted = NULL;
    if (!md)
        goto nomem;
    md->n = n;
    md->e = calloc(n ? n : 1, sizeof *md->e);
    md->pool = malloc(pool_len ? pool_len : 1);
    sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!md->e || !md->pool || !sorted)
        goto nomem;
    char *w = md->pool;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, msgs[i].uidl, msgs[i].uidl_len);
        w[msgs[i].uidl_len] = '\0';
        md->e[i].uidl = w;
        md->e[i].size = msgs[i].size;
        md->e[i].state = msgs[i].deleted ? GONE : LIVE;
        w += msgs[i].uidl_len + 1;
        sorted[i] = &md->e[i];
        if (!msgs[i].deleted) {
            if (msgs[i].size > UINT64_MAX - md->live_octets) {
                free(sorted);
                pp_maildrop_free(md);
                errno = EINVAL;
                return NULL;
            }
            md->live++;
            md->live_octets += msgs[i].size;
        }
    }
    /* RFC 1939: a unique-id is unique within the maildrop, deleted messages included. */
    qsort(sorted, n, sizeof *sorted, cmp_uidl);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->uidl, sorted[i]->uidl) == 0) {
            free(sorted);
            pp_maildrop_free(md);
            errno = EINVAL;
            return NULL;
        }
    }
    free(sorted);
    return md;
nomem:
    free(sorted);
    pp_maildrop_free(md);
    errno = ENOMEM;
    return NULL;
}

void pp_maildrop_free(pp_maildrop *md)
{
    if (!md)
        return;
    free(md->e);
    free(md->pool);
    free(md);
}

size_t pp_maildrop_total(const pp_maildrop *md)
{
    return md->n;
}

size_t pp_maildrop_count(const pp_maildrop *md)
{
    return md->live;
}

uint64_t pp_maildrop_octets(const pp_maildrop *md)
{
    return md->live_octets;
}

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

/* PP_OK when msg names a message not deleted; else the -ERR reply is appended (PP_ERR or
 * PP_NOMEM). */
static int check(const pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    if (msg == 0 || msg > md->n) {
        int r = pp_write_errf(out, PP_RC_NONE, "no such message, only %zu message%s in maildrop", md->n,
                              plural(md->n));
        return r < 0 ? r : PP_ERR;
    }
    if (md->e[msg - 1].state != LIVE) {
        int r = pp_write_errf(out, PP_RC_NONE, "message %" PRIu32 " already deleted", msg);
        return r < 0 ? r : PP_ERR;
    }
    return PP_OK;
}

int pp_md_stat(const pp_maildrop *md, pu_buf *out)
{
    return pp_write_okf(out, "%zu %" PRIu64, md->live, md->live_octets);
}

static int undo(pu_buf *out, size_t mark)
{
    out->len = mark;
    if (out->data)
        out->data[mark] = '\0';
    return PP_NOMEM;
}

int pp_md_list(const pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    if (msg) {
        int r = check(md, msg, out);
        if (r != PP_OK)
            return r;
        return pp_write_okf(out, "%" PRIu32 " %" PRIu64, msg, md->e[msg - 1].size);
    }
    size_t mark = out->len;
    if (pp_write_okf(out, "%zu message%s (%" PRIu64 " octets)", md->live, plural(md->live), md->live_octets) < 0)
        return undo(out, mark);
    char line[48];
    for (size_t i = 0; i < md->n; i++) {
        if (md->e[i].state != LIVE)
            continue;
        int n = snprintf(line, sizeof line, "%zu %" PRIu64 "\r\n", i + 1, md->e[i].size);
        if (pu_buf_add(out, line, (size_t)n) < 0)
            return undo(out, mark);
    }
    if (pp_write_ml_end(out) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_md_uidl(const pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    if (msg) {
        int r = check(md, msg, out);
        if (r != PP_OK)
            return r;
        return pp_write_okf(out, "%" PRIu32 " %s", msg, md->e[msg - 1].uidl);
    }
    size_t mark = out->len;
    if (pp_write_ok(out, "unique-id listing follows") < 0)
        return undo(out, mark);
    char line[16 + PP_UIDL_MAX + 4];
    for (size_t i = 0; i < md->n; i++) {
        if (md->e[i].state != LIVE)
            continue;
        int n = snprintf(line, sizeof line, "%zu %s\r\n", i + 1, md->e[i].uidl);
        if (pu_buf_add(out, line, (size_t)n) < 0)
            return undo(out, mark);
    }
    if (pp_write_ml_end(out) < 0)
        return undo(out, mark);
    return PP_OK;
}

int pp_md_dele(pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    int r = check(md, msg, out);
    if (r != PP_OK)
        return r;
    r = pp_write_okf(out, "message %" PRIu32 " deleted", msg);
    if (r < 0)
        return r;
    md->e[msg - 1].state = MARKED;
    md->live--;
    md->live_octets -= md->e[msg - 1].size;
    return PP_OK;
}

int pp_md_rset(pp_maildrop *md, pu_buf *out)
{
    size_t live = md->live;
    uint64_t octets = md->live_octets;
    for (size_t i = 0; i < md->n; i++) {
        if (md->e[i].state == MARKED) {
            live++;
            octets += md->e[i].size;
        }
    }
    int r = pp_write_okf(out, "maildrop has %zu message%s (%" PRIu64 " octets)", live, plural(live), octets);
    if (r < 0)
        return r;
    for (size_t i = 0; i < md->n; i++)
        if (md->e[i].state == MARKED)
            md->e[i].state = LIVE;
    md->live = live;
    md->live_octets = octets;
    return PP_OK;
}

int pp_md_retr(const pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    int r = check(md, msg, out);
    if (r != PP_OK)
        return r;
    r = pp_write_okf(out, "%" PRIu64 " octets", md->e[msg - 1].size);
    return r < 0 ? r : PP_BODY;
}

int pp_md_top(const pp_maildrop *md, uint32_t msg, pu_buf *out)
{
    int r = check(md, msg, out);
    if (r != PP_OK)
        return r;
    r = pp_write_ok(out, "top of message follows");
    return r < 0 ? r : PP_BODY;
}

int pp_md_command(pp_maildrop *md, const pp_command *c, pu_buf *out)
{
    switch (c->cmd) {
    case PP_CMD_STAT:
        return pp_md_stat(md, out);
    case PP_CMD_LIST:
        return pp_md_list(md, c->nargs ? c->msg : 0, out);
    case PP_CMD_UIDL:
        return pp_md_uidl(md, c->nargs ? c->msg : 0, out);
    case PP_CMD_DELE:
        return pp_md_dele(md, c->msg, out);
    case PP_CMD_RSET:
        return pp_md_rset(md, out);
    case PP_CMD_NOOP:
        return pp_write_ok(out, NULL);
    case PP_CMD_RETR:
        return pp_md_retr(md, c->msg, out);
    case PP_CMD_TOP:
        return pp_md_top(md, c->msg, out);
    default:
        return PP_PASS;
    }
}

size_t pp_maildrop_deleted(const pp_maildrop *md, uint32_t *nums, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < md->n; i++) {
        if (md->e[i].state != MARKED)
            continue;
        if (k < cap)
            nums[k] = (uint32_t)(i + 1);
        k++;
    }
    return k;
}
