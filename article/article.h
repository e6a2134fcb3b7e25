/* article: how postern's mail and key records look as news articles (docs/formats.md,
 * sections 1-3): address <-> newsgroup mapping, outer headers, Message-IDs, and a bounded
 * splitter that finds the header fields and body of an article read back from the server. */
#ifndef POSTERN_ARTICLE_H
#define POSTERN_ARTICLE_H

#include <stddef.h>
#include <stdint.h>

#define PA_GROUP_MAX 250
#define PA_ADDRESS_MAX 254
#define PA_MSGID_MAX 96
#define PA_DEFAULT_PREFIX "postern"
#define PA_KEY_SUFFIX ".encrypt"

/* Canonical form of an address (docs/formats.md section 1). Returns 0, or -1 with a
 * one-line reason in err ("domain label 'ex_ample' has a character other than a-z 0-9 -"). */
int pa_address_canonical(const char *address, char *out, size_t cap, char *err, size_t errlen);
/* Mail group for an address (canonicalised first). prefix may be "" or NULL for none. */
int pa_address_to_group(const char *prefix, const char *address, char *group, size_t cap,
                        char *err, size_t errlen);
/* Key group: mail group + ".encrypt". */
int pa_address_to_key_group(const char *prefix, const char *address, char *group, size_t cap,
                            char *err, size_t errlen);
/* Inverse of pa_address_to_group; also accepts a key group (the suffix is dropped).
 * Returns 0, or -1 if the name is not one postern makes under that prefix. */
int pa_group_to_address(const char *prefix, const char *group, char *address, size_t cap);
/* Validates a configured prefix: 0 ok, -1 with reason. */
int pa_prefix_check(const char *prefix, char *err, size_t errlen);

/* Message-IDs (with angle brackets). */
void pa_mail_message_id(const uint8_t tag[32], char out[PA_MSGID_MAX]);
void pa_key_message_id(const uint8_t key_id[16], uint32_t serial, char out[PA_MSGID_MAX]);
/* The same record re-signed by another authority key (`postern user resign`, formats.md §2):
 * "<k.KEYID.SERIAL.aAUTHID@postern.invalid>", AUTHID the new key's 8-byte id in hex. */
void pa_key_message_id_resigned(const uint8_t key_id[16], uint32_t serial, const uint8_t authority_id[8],
                                char out[PA_MSGID_MAX]);
/* A replicated-state article's Message-ID "<s.HEX40@postern.invalid>" (docs/formats.md 6.5). */
void pa_state_message_id(const uint8_t id[20], char out[PA_MSGID_MAX]);
/* A cancel's own Message-ID "<c.HEX40@postern.invalid>". */
void pa_cancel_message_id(const uint8_t id[20], char out[PA_MSGID_MAX]);
/* Checks that msgid is the mail Message-ID for tag: 0 yes, -1 no. */
int pa_mail_message_id_matches(const uint8_t tag[32], const char *msgid);
/* An overview line (OVER: "number \t subject \t from \t date \t message-id \t ...") of a
 * postern mail article ("<m....>"): 1 with its number and Message-ID (not NUL-terminated,
 * shorter than PA_MSGID_MAX), else 0 (another article in the group, or malformed). */
int pa_over_mail(const char *line, size_t len, uint64_t *number, const char **msgid, size_t *msgid_len);
/* The same for a state article ("<s....>"). */
int pa_over_state(const char *line, size_t len, uint64_t *number, const char **msgid, size_t *msgid_len);
/* The article's size in octets from an overview line (its Bytes field), 0 if it has none. */
uint64_t pa_over_bytes(const char *line, size_t len);
/* Its Date field as it stands (the news server's posting time), not NUL-terminated: 1, or 0
 * when the line has none. */
int pa_over_date(const char *line, size_t len, const char **date, size_t *date_len);

/* An overview line of a key record article ("<k.KEYID.SERIAL@postern.invalid>", or re-signed
 * "<k.KEYID.SERIAL.aAUTHID@postern.invalid>"): 1 with its
 * number, the serial its Message-ID claims, its size in octets (0 if the line has none) and
 * the Message-ID (NUL-terminated); else 0. The claim is only a claim: the record must still
 * verify, and its key id and serial must give this Message-ID. */
int pa_over_key(const char *line, size_t len, uint64_t *number, uint32_t *serial, uint64_t *bytes,
                char msgid[PA_MSGID_MAX]);

/* Outer headers, each line CRLF-terminated, ending with the empty line, NUL-terminated in
 * out. extra may be NULL or CRLF-terminated header lines (Cancel-Lock, Supersedes, ...).
 * Returns length, 0 if cap is too small or an argument could break the header block (group
 * or msgid not one visible token, extra not "Name: value" CRLF lines). */
size_t pa_mail_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap);
size_t pa_state_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap);
/* A cancel control message (RFC 5537 5.3) for target, with RFC 8315's Cancel-Key (key_text:
 * "sha256:..."); its own Message-ID is cancel_id. */
size_t pa_cancel_headers(const char *group, const char *target, const char *cancel_id, const char *key_text,
                         char *out, size_t cap);
size_t pa_key_headers(const char *group, const char *msgid, const char *extra, char *out, size_t cap);

/* Incremental reader for an article arriving line by line (nntp_fetch's callback): keeps
 * the few header fields postern needs and passes body lines on. Header block limited to
 * 64 KiB and 1000 lines (each line counted with its CRLF, the empty line ending the block
 * not counted); a longer one is an error. Field names are case-insensitive, folded lines
 * are unfolded, runs of white space in a value become one space (none in Newsgroups). A
 * header line without a colon, a continuation line first, a control byte or a repeat in a
 * kept field, or a Message-ID / Postern-Format too long for its buffer is an error (a Cancel-Lock
 * too long keeps its first whole locks). A
 * Newsgroups value too long for its buffer keeps only the group names that fit whole.
 * pa_reader_line returns 0 to go on, -1 on error (and for every line after one), or the
 * body callback's non-zero value. */
typedef int (*pa_body_fn)(void *arg, const char *line, size_t len);
/* A Cancel-Lock value: postern writes two locks (owner's, admin's: 103 octets), and each
 * INN site that takes a post appends its own admin's two (86 more). Longer values keep their
 * first whole locks only. */
#define PA_CANCEL_LOCK_MAX 1024
typedef struct pa_reader {
    int in_body;
    int error;                       /* set on a malformed header block */
    size_t header_bytes, header_lines;
    char message_id[PA_MSGID_MAX];
    char format[32];                 /* Postern-Format value, e.g. "message 1" */
    char newsgroups[PA_GROUP_MAX + 1];
    char cancel_lock[PA_CANCEL_LOCK_MAX]; /* Cancel-Lock value ("sha256:... sha256:..."), or "" */
    pa_body_fn body;
    void *arg;
    /* internal state, for unfolding */
    int field;                       /* kept field being read, or 0 */
    int ws_pending;                  /* white space seen after the value's last octet */
    int ng_full;                     /* Newsgroups buffer full: the rest is dropped */
    int cl_full;                     /* Cancel-Lock buffer full: the rest is dropped */
    unsigned seen;                   /* one bit per kept field, to spot repeats */
} pa_reader;
void pa_reader_init(pa_reader *r, pa_body_fn body, void *arg);
int pa_reader_line(void *reader, const char *line, size_t len); /* an nntp_line_fn */

#endif
