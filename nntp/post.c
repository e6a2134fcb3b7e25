/* nntp POST, streamed: the article passes through a fixed buffer, so its size does not matter.
 * Line ends are normalised to CRLF and lines starting with '.' are dot-stuffed (RFC 3977
 * 3.1.1), with state kept across nntp_post_write calls so any slicing gives the same bytes. */
#include "nntp/nntp_int.h"

#include <string.h>

static int flush(nntp_conn *c)
{
    int st = nn_write_all(c, c->wbuf, c->wlen);
    c->wlen = 0;
    return st;
}

static int emit(nntp_conn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (c->wlen == sizeof c->wbuf) {
            int st = flush(c);
            if (st != NNTP_OK)
                return st;
        }
        size_t k = sizeof c->wbuf - c->wlen;
        if (k > n)
            k = n;
        memcpy(c->wbuf + c->wlen, p, k);
        c->wlen += k;
        p += k;
        n -= k;
    }
    return NNTP_OK;
}

int nntp_post_begin(nntp_conn *c)
{
    if (c == NULL || c->in_post)
        return NNTP_EINVAL;
    if (c->dead)
        return NNTP_ETEMP;
    int st = nn_simple(c, "POST", 340, NN_CTX_POST);
    if (st != NNTP_OK)
        return st;
    c->in_post = 1;
    c->post_bol = 1;
    c->post_cr = 0;
    c->wlen = 0;
    return NNTP_OK;
}

static int post_fail(nntp_conn *c, int st)
{
    /* Half an article has been sent: the only way out of the data phase is the dot, and
     * sending it would post a truncated article, so the link is abandoned. */
    c->in_post = 0;
    c->dead = 1;
    return st;
}

int nntp_post_write(nntp_conn *c, const void *data, size_t len)
{
    if (c == NULL || !c->in_post || (data == NULL && len > 0))
        return NNTP_EINVAL;
    const char *p = data;
    int st = NNTP_OK;
    while (len > 0 && st == NNTP_OK) {
        if (c->post_cr) {
            c->post_cr = 0;
            if (*p == '\n') {
                st = emit(c, "\r\n", 2);
                c->post_bol = 1;
                p++;
                len--;
                continue;
            }
            st = emit(c, "\r", 1); /* a bare CR is data; the line continues */
            if (st != NNTP_OK)
                break;
            c->post_bol = 0;
        }
        if (c->post_bol && *p == '.') {
            st = emit(c, ".", 1);
            if (st != NNTP_OK)
                break;
        }
        c->post_bol = 0;
        const char *nl = memchr(p, '\n', len);
        size_t span = nl ? (size_t)(nl - p) : len;
        size_t seg = span;
        if (seg > 0 && p[seg - 1] == '\r') {
            seg--; /* CR of a CRLF, or a CR whose LF may start the next slice */
            if (!nl)
                c->post_cr = 1;
        }
        st = emit(c, p, seg);
        if (st != NNTP_OK)
            break;
        if (nl) {
            st = emit(c, "\r\n", 2);
            c->post_bol = 1;
            span++;
        }
        p += span;
        len -= span;
    }
    return st == NNTP_OK ? NNTP_OK : post_fail(c, st);
}

int nntp_post_end(nntp_conn *c)
{
    if (c == NULL || !c->in_post)
        return NNTP_EINVAL;
    int st = NNTP_OK;
    if (c->post_cr || !c->post_bol) /* the last line lacked its line end */
        st = emit(c, "\r\n", 2);
    if (st == NNTP_OK)
        st = emit(c, ".\r\n", 3);
    if (st == NNTP_OK)
        st = flush(c);
    if (st != NNTP_OK)
        return post_fail(c, st);
    c->in_post = 0;
    int code = 0;
    st = nn_read_status(c, &code);
    if (st != NNTP_OK)
        return st; /* dropped before answering: the article may or may not be stored */
    return code == 240 ? NNTP_OK : nn_map_status(code, c->last, NN_CTX_POST);
}
