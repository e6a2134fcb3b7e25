/* store: the one-conversation face, a caller holding its own nntp_conn. Transitional: only
 * admin/repair.c uses it (its build defines POSTERN_STORE_CONN) until it moves to the ps_pool
 * verbs of store.h, which offer all it does (ps_list_counts, ps_group, ps_over,
 * ps_read_envelope, ps_post, ps_await_shown). Everything else asks store for a verb. */
#ifndef POSTERN_STORE_CONN_H
#define POSTERN_STORE_CONN_H

#include "nntp/nntp.h"
#include "store/store.h"

/* Connects to one site with its TLS and AUTHINFO settings, within its connect_timeout. A
 * site that timed out recently is not tried (PS_TEMP at once, err says until when). */
int ps_connect(const pn_site *site, nntp_conn **out, char *err, size_t errlen);
/* ps_read_envelope and ps_post on a connection the caller holds; no retry. */
int ps_fetch_envelope(nntp_conn *c, const char *id_or_number, pu_buf *out, char msgid[PA_MSGID_MAX], char *err,
                      size_t errlen);
int ps_post_envelope(nntp_conn *c, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
                     uint64_t len, char *err, size_t errlen);

#endif
