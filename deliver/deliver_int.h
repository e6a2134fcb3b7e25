/* deliver's internal helpers, shared by deliver.c, spool.c and the LMTP server. */
#ifndef POSTERN_DELIVER_INT_H
#define POSTERN_DELIVER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

/* An anonymous O_TMPFILE in $TMPDIR, state_dir or /tmp (the first that works); -1 + errno.
 * Only ciphertext is ever written to one. */
int pd_open_spool(const pn_config *cfg);

/* The message as an LMTP session received it, spooled once for all its recipients. The file
 * holds it encrypted (crypto_secretstream) under a random key that lives only in this
 * process's locked memory, so plaintext never reaches the disk; each recipient's sealer
 * re-reads and decrypts it. Memory: two 64 KiB buffers whatever the message size. */
typedef struct pd_spool pd_spool;
pd_spool *pd_spool_new(const pn_config *cfg, char *err, size_t errlen);
/* Empties the spool for the next message, under a new key (saves re-allocating the locked
 * buffers and the file for every message of a session). 0, or -1 + errno. */
int pd_spool_reset(pd_spool *s);
int pd_spool_write(pd_spool *s, const uint8_t *data, size_t len); /* 0, or -1 + errno */
int pd_spool_finish(pd_spool *s);                                  /* 0, or -1 + errno */
uint64_t pd_spool_size(const pd_spool *s);                         /* plaintext bytes */
/* Starts (again) reading from the beginning; after pd_spool_finish. 0 or -1 + errno. */
int pd_spool_rewind(pd_spool *s);
/* A pd_read_fn over the spool (arg is the pd_spool): -1 with EIO if the file was altered. */
ssize_t pd_spool_read(void *arg, uint8_t *buf, size_t cap);
void pd_spool_free(pd_spool *s);

/* The one refusal of a message's content, worded once for deliver, lmtp and watch-maildir. */
void pd_too_big(const pn_config *cfg, char *msg, size_t msglen);

/* The mbox "From " envelope line at the start of p[0, len): its length with the LF (to be
 * dropped), 0 when there is none (also a "From " line with no LF in its first 4096 bytes:
 * that is the message's own text), or PD_FROM_MORE when more input must decide (eof: none
 * will come). */
#define PD_FROM_MORE ((size_t)-1)
size_t pd_mbox_from_len(const uint8_t *p, size_t len, int eof);

#endif
