#include "store/store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "article/article.h"

/* A key group normally holds one or two records; more than this is someone flooding it. */
/* base64 of the largest record plus line breaks and slack */
#define KEY_ARMOR_MAX 2048
#define POST_BLOCK (57 * 1024) /* a multiple of 57 bytes = whole 76-character lines */

int ps_map_nntp(int st)
{
    switch (st) {
    case NNTP_OK:
        return PS_OK;
    case NNTP_EDUP:
        return PS_DUP;
    case NNTP_ENOENT:
        return PS_NOENT;
    case NNTP_ETEMP:
    case NNTP_ETLS:
        return PS_TEMP;
    default:
        return PS_FAIL;
    }
}

int ps_connect(const pn_site *site, nntp_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    if (ps_health_skip(site, err, errlen))
        return PS_TEMP;
    int connect_ms = (int)(site->connect_timeout ? site->connect_timeout : 5) * 1000;
    nntp_params p = {
        .host = site->host,
        .port = site->port,
        .tls = site->tls == PN_TLS_IMPLICIT   ? NNTP_TLS_IMPLICIT
               : site->tls == PN_TLS_STARTTLS ? NNTP_TLS_STARTTLS
                                              : NNTP_TLS_NONE,
        .ca_file = site->ca_file[0] ? site->ca_file : NULL,
        .user = site->user[0] ? site->user : NULL,
        .password = site->user[0] ? site->password : NULL,
        .connect_timeout_ms = connect_ms,
    };
    char why[256] = "";
    long long t0 = pu_now_ms();
    int st = nntp_connect(&p, out, why, sizeof why);
    /* a failure that took the whole connect timeout or longer: the site drops packets, or
     * hangs after accepting; remember it. A slow success or a refusal is not held against it. */
    ps_health_result(site, st == NNTP_OK, st != NNTP_OK && pu_now_ms() - t0 >= connect_ms - 50);
    if (st == NNTP_OK)
        return PS_OK;
    snprintf(err, errlen, "site %s (%s:%s): %s", site->name, site->host, site->port,
             why[0] ? why : nntp_strerror(st));
    /* A rejected login is a configuration problem that retrying will not fix, but the MTA
     * must keep the mail until the admin fixes it: report it as temporary. */
    return st == NNTP_EAUTH ? PS_TEMP : ps_map_nntp(st);
}

size_t ps_await_shown(const pn_site *site, unsigned timeout_s, ps_copy *copies, size_t n, char *last,
                      size_t lastlen)
{
    char scratch[256];
    if (!last || !lastlen) {
        last = scratch;
        lastlen = sizeof scratch;
    }
    snprintf(last, lastlen, "430 No such article");
    long long deadline = pu_now_ms() + (long long)timeout_s * 1000;
    size_t left = 0;
    for (size_t i = 0; i < n; i++)
        left += !copies[i].shown;
    for (unsigned wait_ms = 20; left && pu_now_ms() < deadline; wait_ms = wait_ms < 500 ? wait_ms * 2 : 500) {
        struct timespec ts = {0, (long)wait_ms * 1000000L};
        nanosleep(&ts, NULL);
        nntp_conn *q = NULL;
        if (ps_connect(site, &q, last, lastlen) != PS_OK)
            continue; /* innd paused or restarting refuses readers: it may be back in time */
        for (size_t i = 0; i < n; i++) {
            if (copies[i].shown)
                continue;
            int st = nntp_stat(q, copies[i].msgid);
            if (st == NNTP_OK) {
                copies[i].shown = 1;
                left--;
            } else if (st == NNTP_ENOENT) {
                snprintf(last, lastlen, "430 No such article");
            } else {
                snprintf(last, lastlen, "STAT %s: %s", copies[i].msgid, nntp_last_response(q));
                break;
            }
        }
        nntp_close(q);
    }
    return left;
}

/* ---- key records ---- */

/* A key group may hold anything anyone with the posting account put there. Candidates are
 * the articles whose overview shows a key record's Message-ID shape and size; they are tried
 * in the order of the serial their Message-ID claims, highest first, and the first that
 * verifies and whose key id and serial give its Message-ID is the current record: a genuine
 * record with a higher serial would have come earlier. A flood of junk costs a lookup one
 * overview line per article, and a fetch only for junk that claims a higher serial. */
#define KEY_ARTICLE_BYTES_MAX 16384     /* a key record article is about 1.5 KB */
#define KEY_CANDIDATES_MAX (1u << 18)   /* beyond this the group is flooded: fail loudly */

typedef struct key_candidate {
    uint64_t number;
    uint32_t serial;
} key_candidate;

typedef struct key_candidates {
    key_candidate *v;
    size_t n, cap;
    int nomem, flooded;
} key_candidates;

static int collect_candidate(void *arg, const char *line, size_t len)
{
    key_candidates *l = arg;
    key_candidate k;
    uint64_t bytes;
    char id[PA_MSGID_MAX];
    if (!pa_over_key(line, len, &k.number, &k.serial, &bytes, id) || bytes > KEY_ARTICLE_BYTES_MAX)
        return 0;
    if (l->n == l->cap) {
        if (l->cap >= KEY_CANDIDATES_MAX) {
            l->flooded = 1;
            return 1;
        }
        size_t cap = l->cap ? l->cap * 2 : 16;
        key_candidate *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->nomem = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = k;
    return 0;
}

static int by_claimed_serial(const void *a, const void *b)
{
    const key_candidate *x = a, *y = b;
    if (x->serial != y->serial)
        return x->serial < y->serial ? 1 : -1;
    return (x->number < y->number) - (x->number > y->number); /* newest first */
}

typedef struct text_buf {
    char data[KEY_ARMOR_MAX];
    size_t len;
    int overflow;
} text_buf;

static int collect_body(void *arg, const char *line, size_t len)
{
    text_buf *b = arg;
    if (b->len + len + 1 > sizeof b->data) {
        b->overflow = 1;
        return 1;
    }
    memcpy(b->data + b->len, line, len);
    b->len += len;
    b->data[b->len++] = '\n';
    return 0;
}

typedef struct bin_buf {
    uint8_t data[PC_KEYRECORD_MAX + 64];
    size_t len;
} bin_buf;

static int collect_bin(void *arg, const uint8_t *data, size_t len)
{
    bin_buf *b = arg;
    if (b->len + len > sizeof b->data)
        return 1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

/* Set by read_one_record: a well-formed record for the address signed by an authority key
 * this host is not configured with (an authority rotation half done, or a host not yet given
 * the new public key): reason to wait, not to bounce. */
#define PS_UNKNOWN_AUTHORITY (-100)

static int authority_configured(const pn_config *cfg, const uint8_t id[PC_AUTH_KEYID_BYTES])
{
    for (size_t i = 0; i < cfg->n_authorities; i++) {
        uint8_t k[PC_AUTH_KEYID_BYTES];
        pc_authority_keyid(cfg->authority_pk[i], k);
        if (memcmp(k, id, sizeof k) == 0)
            return 1;
    }
    return 0;
}

/* Reads one article of a key group and turns it into a verified record: 0 on success. */
static int read_one_record(nntp_conn *c, const pn_config *cfg, uint64_t number, const char *address,
                           pc_keyrecord *rec, char *msgid, int *why)
{
    text_buf *text = calloc(1, sizeof *text);
    bin_buf *bin = calloc(1, sizeof *bin);
    int rc = -1;
    if (!text || !bin)
        goto out;
    pa_reader r;
    pa_reader_init(&r, collect_body, text);
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, number);
    int st = nntp_fetch(c, "ARTICLE", num, pa_reader_line, &r);
    if (st != NNTP_OK) {
        *why = ps_map_nntp(st);
        goto out;
    }
    if (r.error || text->overflow || strcmp(r.format, "keyrecord 1") != 0)
        goto out;
    pc_armor *dec = pc_armor_decoder(collect_bin, bin);
    if (!dec)
        goto out;
    int ok = pc_armor_update(dec, (const uint8_t *)text->data, text->len) == PC_OK && pc_armor_finish(dec) == PC_OK;
    pc_armor_free(dec);
    if (!ok || pc_keyrecord_decode(bin->data, bin->len, rec) != PC_OK)
        goto out;
    if (pc_keyrecord_verify(rec, (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk, cfg->n_authorities,
                            address) != PC_OK) {
        if (!authority_configured(cfg, rec->authority_id) && strcmp(rec->address, address) == 0)
            *why = PS_UNKNOWN_AUTHORITY;
        goto out;
    }
    char want[PA_MSGID_MAX], resigned[PA_MSGID_MAX];
    pa_key_message_id(rec->key_id, rec->serial, want);
    pa_key_message_id_resigned(rec->key_id, rec->serial, rec->authority_id, resigned);
    if (strcmp(want, r.message_id) != 0 && strcmp(resigned, r.message_id) != 0)
        goto out; /* a genuine record re-posted under another Message-ID: its claim is false */
    if (msgid)
        snprintf(msgid, PA_MSGID_MAX, "%s", r.message_id);
    rc = 0;
out:
    free(text);
    free(bin);
    return rc;
}

int ps_conn_keyrecord(nntp_conn *c, const pn_config *cfg, const char *address, pc_keyrecord *best, char *msgid,
                      char *err, size_t errlen)
{
    char group[PA_GROUP_MAX + 1], why[256];
    if (cfg->n_authorities == 0) {
        snprintf(err, errlen, "no authority public key to verify key records with: %s", cfg->authority_error);
        return PS_FAIL;
    }
    if (pa_address_to_key_group(cfg->prefix, address, group, sizeof group, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", address, why);
        return PS_NOUSER;
    }
    nntp_group_info info;
    int st = nntp_group(c, group, &info);
    if (st == NNTP_ENOENT) {
        snprintf(err, errlen, "%s: no such user (newsgroup %s does not exist)", address, group);
        return PS_NOUSER;
    }
    if (st != NNTP_OK) {
        snprintf(err, errlen, "%s: reading %s: %s", address, group, nntp_last_response(c));
        return ps_map_nntp(st);
    }
    key_candidates list = {0};
    if (info.count > 0) {
        char range[48];
        snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, info.low, info.high);
        st = nntp_over(c, range, collect_candidate, &list);
        if (list.nomem || list.flooded || (st != NNTP_OK && st != NNTP_ENOENT)) {
            free(list.v);
            if (list.flooded)
                snprintf(err, errlen, "%s: %s holds more than %u key-record-like articles: flooded", address, group,
                         KEY_CANDIDATES_MAX);
            else if (list.nomem)
                snprintf(err, errlen, "out of memory");
            else
                snprintf(err, errlen, "%s: reading %s: %s", address, group, nntp_last_response(c));
            return list.nomem ? PS_FAIL : PS_TEMP;
        }
    }
    if (list.n) /* qsort must not see NULL, even for nothing */
        qsort(list.v, list.n, sizeof *list.v, by_claimed_serial);
    int found = 0, temp = 0;
    size_t rejected = 0, unknown_authority = 0;
    uint8_t unknown_id[PC_AUTH_KEYID_BYTES] = {0};
    pc_keyrecord *rec = malloc(sizeof *rec);
    if (!rec) {
        free(list.v);
        snprintf(err, errlen, "out of memory");
        return PS_FAIL;
    }
    for (size_t i = 0; i < list.n; i++) {
        if (found && list.v[i].serial < best->serial)
            break; /* nothing genuine below can beat it */
        char id[PA_MSGID_MAX];
        int fetch_status = PS_OK;
        if (read_one_record(c, cfg, list.v[i].number, address, rec, id, &fetch_status) != 0) {
            if (fetch_status == PS_TEMP)
                temp = 1;
            else if (fetch_status == PS_UNKNOWN_AUTHORITY && unknown_authority++ == 0)
                memcpy(unknown_id, rec->authority_id, sizeof unknown_id);
            else if (fetch_status == PS_OK)
                rejected++; /* forged, other address, or not a record: never trusted */
            continue;
        }
        if (!found || rec->serial > best->serial || (rec->serial == best->serial && rec->created > best->created)) {
            *best = *rec;
            if (msgid)
                snprintf(msgid, PA_MSGID_MAX, "%s", id);
            found = 1;
        }
    }
    free(rec);
    free(list.v);
    if (found)
        return PS_OK;
    if (temp) {
        snprintf(err, errlen, "%s: the news server failed while reading the key record", address);
        return PS_TEMP;
    }
    if (unknown_authority) {
        char hex[2 * PC_AUTH_KEYID_BYTES + 1];
        sodium_bin2hex(hex, sizeof hex, unknown_id, sizeof unknown_id);
        snprintf(err, errlen,
                 "%s: the key record is signed by authority key %s, which is not in authority_public here (a "
                 "rotation: add its public key, or run `postern user resign` with the new one)",
                 address, hex);
        return PS_TEMP;
    }
    snprintf(err, errlen, "%s: no valid key record in %s (%zu article%s rejected: unsigned, forged or for another address)",
             address, group, rejected, rejected == 1 ? "" : "s");
    return PS_NOUSER;
}

/* ---- posting ---- */

static int post_sink(void *arg, const uint8_t *data, size_t len)
{
    return nntp_post_write(arg, data, len) == NNTP_OK ? 0 : 1;
}

int ps_post_envelope(nntp_conn *c, const char *headers, const uint8_t *prefix, size_t prefix_len, int fd,
                     uint64_t len, char *err, size_t errlen)
{
    int st = nntp_post_begin(c);
    if (st != NNTP_OK) {
        snprintf(err, errlen, "POST refused: %s", nntp_last_response(c));
        return ps_map_nntp(st);
    }
    uint8_t *block = malloc(POST_BLOCK);
    pc_armor *enc = pc_armor_encoder(post_sink, c);
    int failed = !block || !enc;
    if (!failed)
        failed = nntp_post_write(c, headers, strlen(headers)) != NNTP_OK ||
                 pc_armor_update(enc, prefix, prefix_len) != PC_OK;
    for (uint64_t off = 0; !failed && off < len;) {
        size_t want = len - off < POST_BLOCK ? (size_t)(len - off) : POST_BLOCK;
        ssize_t got = pread(fd, block, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(err, errlen, "reading the ciphertext spool file: %s", got < 0 ? strerror(errno) : "short file");
            failed = 2;
            break;
        }
        failed = pc_armor_update(enc, block, (size_t)got) != PC_OK;
        off += (uint64_t)got;
    }
    if (!failed)
        failed = pc_armor_finish(enc) != PC_OK;
    pc_armor_free(enc);
    free(block);
    if (failed) {
        /* The connection is mid-article; it cannot be reused, and the server will drop the
         * partial article when we disconnect. */
        if (failed != 2)
            snprintf(err, errlen, "sending the article failed: %s", nntp_last_response(c));
        return PS_TEMP;
    }
    st = nntp_post_end(c);
    if (st != NNTP_OK)
        snprintf(err, errlen, "%s", nntp_last_response(c));
    return ps_map_nntp(st);
}

/* ---- reading ---- */

/* An article read through the header reader and the base64 decoder: both reads below. */
typedef struct armored {
    pa_reader reader;
    pc_armor *armor;
    int bad; /* a body line did not decode, or the decoder's sink refused it */
} armored;

static int armored_line(void *arg, const char *line, size_t len)
{
    armored *a = arg;
    if (pc_armor_update(a->armor, (const uint8_t *)line, len) != PC_OK) { /* line ends carry nothing */
        a->bad = 1;
        return 1;
    }
    return 0;
}

/* ARTICLE id_or_number, its body decoded into sink. PS_OK (headers in a->reader), PS_FAIL
 * when out of memory, or the NNTP failure; err says which. The caller frees a->armor. */
static int read_armored(nntp_conn *c, const char *id_or_number, armored *a, pc_sink_fn sink, void *arg, char *err,
                        size_t errlen)
{
    pa_reader_init(&a->reader, armored_line, a);
    a->armor = pc_armor_decoder(sink, arg);
    if (!a->armor) {
        snprintf(err, errlen, "out of memory");
        return PS_FAIL;
    }
    int st = nntp_fetch(c, "ARTICLE", id_or_number, pa_reader_line, &a->reader);
    if (st != NNTP_OK) {
        snprintf(err, errlen, "article %s: %s", id_or_number, nntp_last_response(c));
        return ps_map_nntp(st);
    }
    return PS_OK;
}

typedef struct read_ctx {
    armored in;
    uint8_t prefix[PC_MSG_PREFIX_BYTES];
    size_t prefix_len;
    pc_open *open;
    const uint8_t *pk, *sk;
    pc_msg_meta *meta;
    pc_sink_fn sink;
    void *sink_arg;
    int status;       /* first failure, as a pc_status */
    int stopped;      /* the caller's sink asked to stop */
} read_ctx;

static int user_sink(void *arg, const uint8_t *data, size_t len)
{
    read_ctx *x = arg;
    int r = x->sink(x->sink_arg, data, len);
    if (r == PS_STOP_EARLY)
        x->stopped = 1;
    return r;
}

static int envelope_sink(void *arg, const uint8_t *data, size_t len)
{
    read_ctx *x = arg;
    if (!x->open) {
        size_t take = PC_MSG_PREFIX_BYTES - x->prefix_len;
        if (take > len)
            take = len;
        memcpy(x->prefix + x->prefix_len, data, take);
        x->prefix_len += take;
        data += take;
        len -= take;
        if (x->prefix_len < PC_MSG_PREFIX_BYTES)
            return 0;
        int st = PC_OK;
        x->open = pc_open_begin(x->prefix, x->pk, x->sk, x->meta, user_sink, x, &st);
        if (!x->open) {
            x->status = st;
            return 1;
        }
    }
    if (len == 0)
        return 0;
    int st = pc_open_update(x->open, data, len);
    if (st != PC_OK) {
        if (!x->stopped)
            x->status = st;
        return 1;
    }
    return 0;
}

/* The writer's signature (docs/formats.md section 3): a certified writer posted this envelope
 * to this group under this Message-ID, and may have written mail arriving when it says. */
static int check_writer(const pn_config *cfg, const char *group, const char *msgid, int verified,
                        const pc_writer_cert *who, const pc_msg_meta *meta, char *err, size_t errlen)
{
    if (verified != PC_OK) {
        snprintf(err, errlen, "article %s carries no valid writer signature (forged, or not posted by postern)",
                 msgid);
        return PS_BADMSG;
    }
    (void)group;
    if (pc_writer_allows(who, meta->arrival, (const char(*)[PC_WRITER_ID_TEXT])cfg->revoked_writers,
                         cfg->n_revoked_writers) != PC_OK) {
        snprintf(err, errlen, "article %s: writer %s (id %s) may not have written it (%s)", msgid, who->name, who->id,
                 meta->arrival < who->not_before || meta->arrival > who->not_after
                     ? "its arrival time lies outside the writer's certificate"
                     : "the writer is revoked");
        return PS_BADMSG;
    }
    return PS_OK;
}

int ps_conn_read_message(nntp_conn *c, const pn_config *cfg, const char *id_or_number, const uint8_t box_pk[PC_BOX_PK_BYTES],
                         const uint8_t box_sk[PC_BOX_SK_BYTES], pc_msg_meta *meta, pc_sink_fn sink, void *arg,
                         char *err, size_t errlen)
{
    read_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return PS_FAIL;
    }
    x->pk = box_pk;
    x->sk = box_sk;
    x->meta = meta;
    x->sink = sink;
    x->sink_arg = arg;
    int rc = read_armored(c, id_or_number, &x->in, envelope_sink, x, err, errlen);
    if (rc != PS_OK)
        goto out;
    rc = PS_FAIL;
    if (x->in.bad && !x->status && !x->stopped) /* not the sink's own failure */
        x->status = PC_EFORMAT;
    if (x->in.reader.error || strcmp(x->in.reader.format, "message 1") != 0) {
        rc = PS_BADMSG;
        snprintf(err, errlen, "article %s is not a postern message", id_or_number);
        goto out;
    }
    /* A small message sits entirely in the final chunk, which is only opened by the
     * finishing calls: the caller's sink may ask to stop inside either of them. */
    if (!x->status && !x->stopped && pc_armor_finish(x->in.armor) != PC_OK && !x->stopped)
        x->status = PC_EFORMAT;
    if (!x->status && !x->stopped && !x->open)
        x->status = PC_ETRUNC;
    if (!x->status && !x->stopped) {
        int finished = pc_open_finish(x->open);
        if (!x->stopped)
            x->status = finished;
    }
    if (x->stopped && x->open)
        goto check_id; /* the caller has what it wanted; the prefix was authenticated */
    if (x->status != PC_OK) {
        rc = PS_BADMSG;
        snprintf(err, errlen, "article %s: %s", id_or_number, pc_strerror(x->status));
        goto out;
    }
check_id:
    /* The sealed tag ties the ciphertext to its Message-ID: a copy re-posted under another
     * Message-ID (a replay by someone with spool access) is refused. */
    if (pa_mail_message_id_matches(meta->tag, x->in.reader.message_id) != 0) {
        rc = PS_BADMSG;
        snprintf(err, errlen, "article %s: its Message-ID does not match the sealed one (replayed copy?)",
                 id_or_number);
        goto out;
    }
    if (!x->stopped) { /* a caller that stopped early (headers only) reads no trailer */
        uint8_t h[32], trailer[PC_MAIL_TRAILER_BYTES];
        pc_writer_cert who;
        int v = pc_open_signed_parts(x->open, h, trailer);
        if (v == PC_OK)
            v = pc_mail_verify(x->prefix, h, trailer, x->in.reader.newsgroups, x->in.reader.message_id,
                               (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk, cfg->n_authorities, &who);
        rc = check_writer(cfg, x->in.reader.newsgroups, x->in.reader.message_id, v, &who, meta, err, errlen);
        if (rc != PS_OK)
            goto out;
    }
    rc = PS_OK;
out:
    if (x->open)
        pc_open_free(x->open);
    if (x->in.armor)
        pc_armor_free(x->in.armor);
    sodium_memzero(x->prefix, sizeof x->prefix);
    free(x);
    return rc;
}

/* ---- the gateway's split read ---- */

static int buf_sink(void *arg, const uint8_t *data, size_t len)
{
    return pu_buf_add(arg, data, len) == 0 ? 0 : 1;
}

/* An armored article of one Postern-Format, decoded into out. */
static int fetch_armored(nntp_conn *c, const char *id_or_number, const char *format, size_t min_len, pu_buf *out,
                         char msgid[PA_MSGID_MAX], char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen)
{
    armored *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return PS_FAIL;
    }
    int rc = read_armored(c, id_or_number, x, buf_sink, out, err, errlen);
    if (rc != PS_OK)
        goto out;
    if (x->bad || x->reader.error || strcmp(x->reader.format, format) != 0 ||
        pc_armor_finish(x->armor) != PC_OK || out->len < min_len) {
        rc = PS_BADMSG;
        snprintf(err, errlen, "article %s is not a postern %s", id_or_number, format);
        goto out;
    }
    snprintf(msgid, PA_MSGID_MAX, "%s", x->reader.message_id);
    if (cancel_lock)
        snprintf(cancel_lock, PA_CANCEL_LOCK_MAX, "%s", x->reader.cancel_lock);
    rc = PS_OK;
out:
    if (x->armor)
        pc_armor_free(x->armor);
    free(x);
    return rc;
}

int ps_fetch_envelope(nntp_conn *c, const char *id_or_number, pu_buf *out, char msgid[PA_MSGID_MAX],
                      char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen)
{
    return fetch_armored(c, id_or_number, "message 1", PC_MSG_PREFIX_BYTES, out, msgid, cancel_lock, err, errlen);
}

int ps_fetch_armored(nntp_conn *c, const char *msgid, const char *format, size_t min_len, pu_buf *out,
                     char got[PA_MSGID_MAX], char cancel_lock[PA_CANCEL_LOCK_MAX], char *err, size_t errlen)
{
    return fetch_armored(c, msgid, format, min_len, out, got, cancel_lock, err, errlen);
}

int ps_fetch_state(nntp_conn *c, const char *msgid, pu_buf *out, char *err, size_t errlen)
{
    char got[PA_MSGID_MAX];
    int rc = fetch_armored(c, msgid, "state 1", 1, out, got, NULL, err, errlen);
    if (rc == PS_OK && strcmp(got, msgid) != 0) {
        snprintf(err, errlen, "article %s came back as %s", msgid, got);
        return PS_BADMSG;
    }
    return rc;
}

int ps_open_envelope(const pn_config *cfg, const char *group, const uint8_t *envelope, size_t len, const char *msgid,
                     const uint8_t stream_key[PC_STREAM_KEY_BYTES], const pc_msg_meta *meta, pc_sink_fn sink,
                     void *arg, char *err, size_t errlen)
{
    if (len < PC_MSG_PREFIX_BYTES || pa_mail_message_id_matches(meta->tag, msgid) != 0) {
        snprintf(err, errlen, "article %s: its Message-ID does not match the sealed one (replayed copy?)", msgid);
        return PS_BADMSG;
    }
    /* before one byte is decrypted: a forgery is never opened */
    pc_writer_cert who;
    int v = pc_envelope_verify(envelope, len, group, msgid, (const uint8_t(*)[PC_AUTH_PK_BYTES])cfg->authority_pk,
                               cfg->n_authorities, &who);
    int rc = check_writer(cfg, group, msgid, v, &who, meta, err, errlen);
    if (rc != PS_OK)
        return rc;
    int st = PC_OK;
    pc_open *o = pc_open_begin_key(envelope, stream_key, meta, sink, arg, &st);
    if (o) {
        st = pc_open_update(o, envelope + PC_MSG_PREFIX_BYTES, len - PC_MSG_PREFIX_BYTES);
        if (st == PC_OK)
            st = pc_open_finish(o);
        pc_open_free(o);
    }
    if (st != PC_OK) {
        snprintf(err, errlen, "article %s: %s", msgid, pc_strerror(st));
        /* memory, or the sink's own failure, says nothing about the article */
        return st == PC_ENOMEM || st == PC_ESINK ? PS_FAIL : PS_BADMSG;
    }
    return PS_OK;
}
