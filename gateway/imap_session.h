/* gateway: the IMAP side of a connection — its state beyond the transport, its output, and
 * what its command handlers share. session.c knows none of it: it reaches IMAP through
 * gw_imap_proto (imap_session.c). */
#ifndef POSTERN_GATEWAY_IMAP_SESSION_H
#define POSTERN_GATEWAY_IMAP_SESSION_H

#include "gateway/session.h"

struct gw_view;
struct gw_fetch;
struct gw_search;
struct gw_sort;

struct gw_imap {
    pi_parser *parser;
    char tag[72]; /* the command in progress (pi_limits.max_tag is 64) */
    char cmd_name[PI_NAME_MAX + 1];
    bool sasl_wait; /* AUTHENTICATE waits for the client's response line */
    /* mailbox */
    struct gw_view *view;  /* selected (mailbox.h) */
    mb_watcher watcher;    /* the account's changes, while a mailbox is selected */
    bool scan_readonly;    /* SELECT/EXAMINE/STATUS waits for a scan: as EXAMINE */
    bool scan_status;      /* ... as STATUS */
    uint32_t scan_folder;  /* ... of this folder (mb_folder.id) */
    unsigned status_items; /* STATUS: which items (imap_cmd_select.c) */
    enum session_state idle_prev; /* IDLE: the state to return to */
    bool idle_done_wait;   /* IDLE: waiting for DONE */
    struct gw_fetch *fetch;   /* FETCH in progress */
    struct gw_search *search; /* SEARCH in progress */
    struct gw_sort *sort;     /* SORT or THREAD in progress */
    bool condstore;           /* RFC 7162: a CONDSTORE enabling command was given */
    bool qresync;             /* ... ENABLE QRESYNC: expunges are told as VANISHED */
    /* SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids ...])) waiting for its scan */
    struct {
        bool on, has_known;
        uint32_t uidvalidity;
        uint64_t modseq;
        pi_seqset known; /* the client's known UIDs (owned) */
    } select_qr;
};

/* Output: the tagged one uses the command's tag. Text without CRLF. */
void gw_untagged(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_tagged(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The capability flags of s now. */
unsigned gw_session_caps(const session *s);
/* The capability list of s now, with APPENDLIMIT (RFC 7889), as gw_caps_write writes it. */
int gw_session_caps_write(pu_buf *b, const session *s);

/* imap_cmd_idle.c: the line that ends IDLE */
gw_result gw_idle_line(session *s, const char *line, size_t len);
/* imap_cmd_authenticate.c: the client's response line after "+ " */
gw_result gw_authenticate_line(session *s, const char *line, size_t len);

#endif
