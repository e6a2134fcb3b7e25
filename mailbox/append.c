/* mailbox: APPEND (issue 13), the write side of a user's own mail. A message the user files
 * (a draft, a copy of what they sent, a message synced up by mbsync) becomes an article like
 * delivered mail (docs/formats.md section 3): sealed to the user's own public key, posted to
 * their group until min_copies sites show it (store's ps_store_copies, the rule delivery
 * uses), in a worker; then, on the loop, filed in the folder in the replicated state, and
 * shown once a scan lists the article. Nothing is filed unless every message of the command
 * is stored (MULTIAPPEND is all or nothing, RFC 3502).
 *
 * There is no quota to be over: INN expires every article retention_days after it arrived,
 * whoever posted it, so a user's appends cannot fill the store for good; the one limit is
 * max_message_size, as for delivery. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

#define KEYWORD_MAX 64 /* mstate's longest keyword */

typedef struct append_item {
    uint8_t *plain; /* the message, wiped once sealed */
    size_t len;
    unsigned flags;
    char (*keywords)[KEYWORD_MAX + 1];
    size_t nkeywords;
    int64_t arrival;
    int16_t tz_minutes;
    uint8_t tag[PC_TAG_BYTES];
    char msgid[PA_MSGID_MAX];
    uint8_t ck[PC_CANCEL_KEY_BYTES]; /* owner's cancel key: a failed MULTIAPPEND takes it back */
    bool tried;
} append_item;

typedef struct mb_appending {
    mb_account *a; /* referenced */
    mb_append_waiter *w; /* NULL once cancelled */
    mb_append_fn fn;
    void *arg;
    uint32_t folder;
    append_item *items;
    size_t n;
    char group[PA_GROUP_MAX + 1];
    uint8_t key_id[PC_KEYID_BYTES];
    uint8_t box_pk[PC_BOX_PK_BYTES];
    size_t site;
    bool stored; /* worker: every message shows at min_copies sites */
    char err[2400];
    uint32_t uidvalidity;
    uint32_t *uids;
    mb_waiter scan_w;
    bool scanning; /* filed: waits for the scan that lists it */
} mb_appending;

void mb_account_set_owner_key(mb_account *a, const uint8_t key_id[PC_KEYID_BYTES],
                              const uint8_t box_pk[PC_BOX_PK_BYTES])
{
    memcpy(a->key_id, key_id, PC_KEYID_BYTES);
    memcpy(a->box_pk, box_pk, PC_BOX_PK_BYTES);
    a->has_owner_key = true;
}

static void job_free(mb_appending *x)
{
    for (size_t i = 0; i < x->n; i++) {
        append_item *it = &x->items[i];
        if (it->plain) {
            sodium_memzero(it->plain, it->len);
            free(it->plain);
        }
        free(it->keywords);
        sodium_memzero(it->ck, sizeof it->ck);
    }
    free(x->items);
    free(x->uids);
    free(x);
}

static int16_t local_tz_minutes(time_t t)
{
    struct tm tm;
    if (!localtime_r(&t, &tm))
        return 0;
    return (int16_t)(tm.tm_gmtoff / 60);
}

static int buf_sink(void *arg, const uint8_t *data, size_t len)
{
    return pu_buf_add(arg, data, len) == 0 ? 0 : 1;
}

/* The envelope (prefix, then the stream) of one message, in env; the article's headers. */
static int seal_item(mb_appending *x, append_item *it, pu_buf *env, char *headers, size_t cap)
{
    uint8_t zero[PC_MSG_PREFIX_BYTES] = {0};
    pu_buf_clear(env);
    if (pu_buf_reserve_exact(env, PC_MSG_PREFIX_BYTES + it->len + it->len / 8 + 65536) != 0 ||
        pu_buf_add(env, zero, sizeof zero) != 0)
        return -1;
    pc_seal *s = pc_seal_begin(x->box_pk, x->key_id, it->arrival, it->tz_minutes, buf_sink, env);
    if (!s)
        return -1;
    uint8_t content_hash[32], prefix[PC_MSG_PREFIX_BYTES], chunks_hash[32];
    pc_msg_meta meta;
    int rc = pc_seal_update(s, it->plain, it->len) == PC_OK && pc_seal_finish(s, content_hash, &meta) == PC_OK &&
                     pc_seal_prefix(s, it->tag, prefix) == PC_OK && pc_seal_cancel_key(s, it->msgid, it->ck) == PC_OK &&
                     pc_seal_chunks_hash(s, chunks_hash) == PC_OK
                 ? 0
                 : -1;
    pc_seal_free(s);
    sodium_memzero(content_hash, sizeof content_hash); /* would confirm a guessed message */
    /* sealed: the plaintext is not needed any more, and its memory is the post's */
    sodium_memzero(it->plain, it->len);
    free(it->plain);
    it->plain = NULL;
    if (rc != 0)
        return -1;
    memcpy(env->data, prefix, sizeof prefix);
    /* signed by this gateway's writer key, as delivered mail is by its delivery host's */
    uint8_t trailer[PC_MAIL_TRAILER_BYTES];
    const pn_writer_key *w = x->a->st->writer;
    if (pc_mail_sign(w->cert, w->sk, x->group, it->msgid, prefix, chunks_hash, trailer) != PC_OK ||
        pu_buf_add(env, trailer, sizeof trailer) != 0)
        return -1;
    /* The owner's lock, then a second one as delivered mail carries (the admin's there): a
     * lock of a random key nobody keeps, so the headers do not tell appended mail from
     * delivered mail. The administrator cannot cancel an appended article (threat-model.md). */
    uint8_t decoy[PC_CANCEL_KEY_BYTES];
    char lock_o[PC_CANCEL_TEXT_MAX], lock_d[PC_CANCEL_TEXT_MAX], line[2 * PC_CANCEL_TEXT_MAX + 32];
    randombytes_buf(decoy, sizeof decoy);
    pc_cancel_lock_text(it->ck, lock_o);
    pc_cancel_lock_text(decoy, lock_d);
    sodium_memzero(decoy, sizeof decoy);
    snprintf(line, sizeof line, "Cancel-Lock: %s %s\r\n", lock_o, lock_d);
    return pa_mail_headers(x->group, it->msgid, line, headers, cap) ? 0 : -1;
}

/* What a failed MULTIAPPEND had posted goes again (RFC 3502: none of the messages is
 * appended); also a message some sites took but fewer than min_copies show. */
static void take_back(mb_appending *x, ps_pool *sites, const pn_config *cfg)
{
    for (size_t i = 0; i < x->n; i++) {
        append_item *it = &x->items[i];
        if (!it->tried)
            continue;
        uint8_t id[20];
        char cid[PA_MSGID_MAX], key_text[PC_CANCEL_TEXT_MAX], headers[1024], err[256];
        static const char body[] = "cancel";
        randombytes_buf(id, sizeof id);
        pa_cancel_message_id(id, cid);
        pc_cancel_key_text(it->ck, key_text);
        size_t ok = pa_cancel_headers(x->group, it->msgid, cid, key_text, headers, sizeof headers);
        sodium_memzero(key_text, sizeof key_text);
        int st = PS_TEMP;
        for (size_t k = 0; ok && k < cfg->n_sites && st != PS_OK && st != PS_DUP; k++)
            st = ps_post(sites, (x->site + k) % cfg->n_sites, headers, (const uint8_t *)body, sizeof body - 1, -1,
                         0, err, sizeof err);
        if (st != PS_OK && st != PS_DUP)
            pu_log(PU_WARN, "%s: appended article %s not taken back: %s", x->a->address, it->msgid,
                   ok ? err : "header block too long");
        sodium_memzero(headers, sizeof headers);
    }
}

static void append_work(mb_job *j, ps_pool *sites, const pn_config *cfg)
{
    mb_appending *x = j->ctx;
    pu_buf env = PU_BUF_INIT;
    env.public_data = 1; /* ciphertext: grown by realloc, not wiped */
    char headers[1024];
    x->stored = true;
    if (!x->a->st->writer) {
        snprintf(x->err, sizeof x->err, "this gateway has no writer key ([postern] writer_key) to sign it with");
        x->stored = false;
    }
    for (size_t i = 0; i < x->n && x->stored; i++) {
        append_item *it = &x->items[i];
        if (seal_item(x, it, &env, headers, sizeof headers) != 0) {
            snprintf(x->err, sizeof x->err, "sealing failed (out of memory?)");
            x->stored = false;
            break;
        }
        /* the envelope whole as the "prefix": it is in memory, no spool file */
        char names[512], failures[2048];
        it->tried = true;
        unsigned copies = ps_store_copies(sites, x->site, headers, it->msgid, (const uint8_t *)env.data, env.len, -1,
                                          0, names, sizeof names, failures, sizeof failures);
        if (copies < cfg->min_copies) {
            snprintf(x->err, sizeof x->err, "only %u of the required %u sites show %s: %s", copies, cfg->min_copies,
                     it->msgid, failures);
            x->stored = false;
        } else {
            pu_log(PU_DEBUG, "%s: appended %s on %u sites (%s)", x->a->address, it->msgid, copies, names);
        }
    }
    pu_buf_free(&env);
    if (!x->stored)
        take_back(x, sites, cfg);
}

static void finish(mb_appending *x, mb_append_rc rc, const char *why)
{
    if (x->w) {
        x->w->job = NULL;
        x->fn(x->arg, rc, x->uidvalidity, x->uids, x->n, why);
    }
    mb_account *a = x->a;
    job_free(x);
    mb_account_release(a);
}

static void scanned(void *arg, mb_account *a, const char *no_text)
{
    (void)a, (void)no_text; /* filed either way: the next scan shows it */
    finish(arg, MB_APPEND_OK, NULL);
}

static void append_done(mb_job *j)
{
    mb_appending *x = j->ctx;
    free(j);
    mb_account *a = x->a;
    if (!x->stored) {
        pu_log(PU_WARN, "%s: APPEND failed: %s", a->address, x->err);
        finish(x, MB_APPEND_UNAVAILABLE, "[UNAVAILABLE] The message could not be stored at enough news servers; "
                                         "try again later");
        return;
    }
    /* stored: filed even when the client has gone meanwhile, or a scan would put it in the
     * INBOX as new mail */
    for (size_t i = 0; i < x->n; i++) {
        append_item *it = &x->items[i];
        const char *kw[MB_APPEND_KEYWORDS_MAX];
        for (size_t k = 0; k < it->nkeywords; k++)
            kw[k] = it->keywords[k];
        int rc = mb_replica_append(a, x->folder, it->msgid, it->flags, kw, it->nkeywords, &x->uids[i]);
        if (rc != MSTATE_OK) {
            pu_log(PU_WARN, "%s: appended %s not filed: %s", a->address, it->msgid, mstate_strerror(rc));
            finish(x, rc == MSTATE_ENOFOLDER ? MB_APPEND_NONEXISTENT : MB_APPEND_UNAVAILABLE,
                   rc == MSTATE_ENOFOLDER ? "[TRYCREATE] The mailbox was deleted meanwhile"
                                          : "[UNAVAILABLE] The message could not be filed");
            return;
        }
    }
    mstate *ms = mb_replica_state(a);
    x->uidvalidity = ms ? mstate_folder_uidvalidity(ms, x->folder) : 0;
    if (x->w && mb_scan_wait(a, &x->scan_w, scanned, x))
        x->scanning = true;
    else
        finish(x, MB_APPEND_OK, NULL);
}

void mb_append_cancel(mb_append_waiter *w)
{
    mb_appending *x = w->job;
    if (!x)
        return;
    w->job = NULL;
    x->w = NULL; /* in a worker: its end files the messages and frees the job, quietly */
    if (x->scanning) {
        mb_waiter_cancel(&x->scan_w);
        mb_account *a = x->a;
        job_free(x);
        mb_account_release(a);
    }
}

mb_append_rc mb_append(mb_account *a, uint32_t folder, const mb_append_msg *msgs, size_t n, mb_append_waiter *w,
                       mb_append_fn fn, void *arg)
{
    w->job = NULL;
    const pn_config *cfg = a->st->cfg;
    mstate *ms = mb_replica_state(a);
    if (!ms || !a->has_owner_key || n == 0)
        return MB_APPEND_UNAVAILABLE;
    if (!mstate_folder_exists(ms, folder))
        return MB_APPEND_NONEXISTENT;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].len > cfg->max_message_size)
            return MB_APPEND_TOOBIG;
    mb_appending *x = calloc(1, sizeof *x);
    if (!x || !(x->items = calloc(n, sizeof *x->items)) || !(x->uids = calloc(n, sizeof *x->uids))) {
        if (x)
            free(x->items);
        free(x);
        return MB_APPEND_NOMEM;
    }
    x->n = n;
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        append_item *it = &x->items[i];
        const mb_append_msg *m = &msgs[i];
        it->len = m->len;
        it->flags = m->flags;
        it->arrival = m->has_date ? m->date : (int64_t)now;
        it->tz_minutes = m->has_date ? (int16_t)m->tz_minutes : local_tz_minutes(now);
        it->plain = malloc(m->len ? m->len : 1);
        it->keywords = calloc(m->nkeywords ? m->nkeywords : 1, sizeof *it->keywords);
        if (!it->plain || !it->keywords) {
            job_free(x);
            return MB_APPEND_NOMEM;
        }
        memcpy(it->plain, m->data, m->len);
        /* The gateway has no delivery secret, so no deterministic tag: a random one
         * (formats.md section 3, "Appended mail"); a retried APPEND is a second article. */
        randombytes_buf(it->tag, sizeof it->tag);
        pa_mail_message_id(it->tag, it->msgid);
        for (size_t k = 0; k < m->nkeywords && k < MB_APPEND_KEYWORDS_MAX; k++) {
            if (strlen(m->keywords[k]) > KEYWORD_MAX)
                continue; /* no keyword can be that long: not kept (mstate refuses it) */
            snprintf(it->keywords[it->nkeywords++], KEYWORD_MAX + 1, "%s", m->keywords[k]);
        }
    }
    /* Kept out of the INBOX before the article exists: a scan that lists it before it is
     * filed must not take it for new mail (mstate_append leaves an INBOX entry alone), and
     * the tombstone's delta usually reaches the other sites ahead of the article. */
    if (folder != MSTATE_INBOX) {
        uint64_t ms_now = mb_replica_now_ms();
        for (size_t i = 0; i < n; i++) {
            uint8_t key[MSTATE_MSGKEY_BYTES];
            mstate_msgkey(x->items[i].msgid, strlen(x->items[i].msgid), key);
            mstate_expunge(ms, MSTATE_INBOX, key, ms_now);
        }
        mb_replica_changed(a);
    }
    x->a = a;
    x->w = w;
    x->fn = fn;
    x->arg = arg;
    x->folder = folder;
    x->site = a->st->read_site; /* where scans read: the new article is listed there first */
    snprintf(x->group, sizeof x->group, "%s", a->mbox->group);
    memcpy(x->key_id, a->key_id, sizeof x->key_id);
    memcpy(x->box_pk, a->box_pk, sizeof x->box_pk);
    if (mb_pool_run(a->st->pool, append_work, append_done, x) != 0) {
        job_free(x);
        return MB_APPEND_UNAVAILABLE;
    }
    a->refs++;
    w->job = x;
    return MB_APPEND_OK;
}
