/* store: what the files of the module share; not part of its public face (store.h). */
#ifndef POSTERN_STORE_INT_H
#define POSTERN_STORE_INT_H

#include "nntp/nntp.h"
#include "store/store.h"

/* One conversation on a connection the caller (pool.c) holds: connect to one site with its
 * TLS and AUTHINFO settings within its connect_timeout (a site that timed out recently is not
 * tried: PS_TEMP at once, err says until when), read an envelope, post one. No retry. */
int ps_connect(const pn_site *site, nntp_conn **out, char *err, size_t errlen);
int ps_fetch_envelope(nntp_conn *c, const char *id_or_number, pu_buf *out, char msgid[PA_MSGID_MAX],
                      char cancel_lock[PA_CANCEL_LOCK_MAX], char *err,
                      size_t errlen);
int ps_fetch_state(nntp_conn *c, const char *msgid, pu_buf *out, char *err, size_t errlen);
/* Any postern article of that Postern-Format, its binary body at least min_len bytes. */
int ps_fetch_armored(nntp_conn *c, const char *msgid, const char *format, size_t min_len, pu_buf *out,
                     char got[PA_MSGID_MAX], char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen);
int ps_post_envelope(nntp_conn *c, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
                     uint64_t len, char *err, size_t errlen);

/* health.c: 1 (with err) when the site timed out recently and is not to be tried yet. */
int ps_health_skip(const pn_site *s, char *err, size_t errlen);
/* After a connection attempt: answered (connected), or timed out (cost the whole timeout). */
void ps_health_result(const pn_site *s, int answered, int timed_out);

/* store.c: an nntp_status as a ps_status. */
int ps_map_nntp(int st);
/* store.c: the conversations behind the verbs of the same name, on one connection. */
int ps_conn_keyrecord(nntp_conn *c, const pn_config *cfg, const char *address, pc_keyrecord *rec, char *msgid,
                      char *err, size_t errlen);
int ps_conn_read_message(nntp_conn *c, const pn_config *cfg, const char *id_or_number, const uint8_t box_pk[PC_BOX_PK_BYTES],
                         const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta, pc_sink_fn sink, void *arg,
                         char *err, size_t errlen);

#endif
