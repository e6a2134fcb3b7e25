/* gateway: a login, step by step (docs/design.md, "Login and the key cache").
 *   1. the address is canonicalised; the password is kept in sodium memory;
 *   2. a worker fetches the user's key record from the news server (blocking NNTP, so never
 *      on the loop), unless keycache.c holds it from a login less than keyrecord_cache ago;
 *   3. record and password go to the vault, which answers from its key cache or runs
 *      Argon2id, and delays wrong passwords;
 *   4. the session attaches to the user's account (state loaded by a worker if it is the
 *      user's first session) and answers OK.
 * A wrong password, an unknown user and an invalid name get the same answer after the same
 * delay, so the reply does not tell which it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <event2/event.h>

#include "article/article.h"
#include "gateway/session.h"
#include "store/store.h"

/* The vault's default wrong-password delay: an unknown user must not answer faster. */
#define FAIL_DELAY_MS 1000
#define AUTH_FAILED "[AUTHENTICATIONFAILED] Authentication failed."

static void wipe_password(session *s)
{
    if (s->pw) {
        sodium_free(s->pw);
        s->pw = NULL;
    }
    s->pw_len = 0;
}

/* Sends a login whose key record was fetched to the vault (on failure the reply is written). */
static void send_to_vault(session *s, mb_job *j)
{
    s->vault_req = gw_vault_login(s->net, s, s->address, j->record, j->record_len, s->pw, s->pw_len);
    if (!s->record_cached || !s->vault_req)
        wipe_password(s); /* a cached record's login keeps it for one recheck (gw_login_vault_reply) */
    if (s->vault_req)
        s->net->vault_logins++;
    else
        gw_login_finish(s, false, "[UNAVAILABLE] Login is not possible now; try again later");
}

/* Logins waiting for a place at the vault, oldest first: the vault refuses more than its
 * queue holds (busy), so a storm of logins waits here instead, each holding its password in
 * sodium memory as during the key record fetch. Bounded by the sessions (one login each,
 * at most max_connections). */
static void queue_login(gw_net *net, mb_job *j)
{
    j->next = NULL;
    if (net->login_queue_tail)
        net->login_queue_tail->next = j;
    else
        net->login_queue = j;
    net->login_queue_tail = j;
}

static mb_job *dequeue_login(gw_net *net)
{
    mb_job *j = net->login_queue;
    if (j && !(net->login_queue = j->next))
        net->login_queue_tail = NULL;
    return j;
}

static void drop_login(mb_job *j)
{
    session *s = j->owner;
    wipe_password(s);
    gw_session_unref(s);
    sodium_memzero(j->record, j->record_len);
    free(j);
}

/* A vault login was answered: the next waiting ones go. */
static void vault_login_done(gw_net *net)
{
    if (net->vault_logins)
        net->vault_logins--;
    mb_job *j;
    while (net->vault_logins < GW_VAULT_LOGINS_MAX && (j = dequeue_login(net))) {
        session *s = j->owner;
        if (!s->dead && s->state != S_LOGOUT)
            send_to_vault(s, j);
        drop_login(j);
    }
}

void gw_login_queue_free(gw_net *net)
{
    mb_job *j;
    while ((j = dequeue_login(net)))
        drop_login(j);
}

static void record_digest(const mb_job *j, uint8_t out[16])
{
    crypto_generichash(out, 16, j->record, j->record_len, NULL, 0);
}

/* The fresh record of a recheck (a wrong password against a cached one): the same record
 * means the password is wrong, answered without asking the vault again, so the guess counts
 * once, as for a user who does not exist; a new one (the password changed) goes to the vault. */
static bool recheck_decides(session *s, mb_job *j)
{
    s->rechecking = false;
    uint8_t now[16];
    if (j->status == PS_OK) {
        gw_keycache_put(s->net->keycache, s->address, j->record, j->record_len);
        record_digest(j, now);
        if (sodium_memcmp(now, s->record_digest, sizeof now) != 0)
            return false; /* a new record: to the vault */
    } else {
        gw_keycache_drop(s->net->keycache, s->address);
    }
    pu_log(PU_INFO, "%s: login failed for %s: wrong password", s->peer, s->address);
    gw_login_finish(s, false, AUTH_FAILED);
    return true;
}

static void keyrecord_done(mb_job *j)
{
    session *s = j->owner;
    if (!s->dead && s->state != S_LOGOUT && !(s->rechecking && recheck_decides(s, j))) {
        if (j->status == PS_NOUSER) {
            /* to the vault without a record: it counts the guess and answers as for a wrong
             * password, so throttling and timing look the same for a user who does not exist */
            pu_log(PU_INFO, "%s: login for %s: no key record", s->peer, s->address);
            sodium_memzero(j->record, j->record_len);
            j->record_len = 0;
        }
        if (j->status == PS_OK && !s->record_cached)
            gw_keycache_put(s->net->keycache, s->address, j->record, j->record_len);
        if (j->status == PS_OK || j->status == PS_NOUSER) {
            if (s->net->vault_logins >= GW_VAULT_LOGINS_MAX || s->net->login_queue) {
                queue_login(s->net, j); /* keeps the session's reference */
                return;
            }
            send_to_vault(s, j);
        } else {
            wipe_password(s);
            pu_log(PU_WARN, "%s: key record of %s not fetched: %s", s->peer, s->address, j->err);
            gw_login_finish(s, false, "[UNAVAILABLE] The mail store cannot be reached; try again later");
        }
    }
    gw_session_unref(s);
    free(j);
}

static void cached_record(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    keyrecord_done(arg);
}

/* Queues the key record lookup of s's login in a worker (j: zeroed or a spent job); 0, or -1
 * when the pool is full. */
static int fetch_record(session *s, mb_job *j)
{
    j->kind = MB_JOB_KEYRECORD;
    j->done = keyrecord_done;
    j->owner = s;
    snprintf(j->address, sizeof j->address, "%s", s->address);
    s->refs++;
    if (mb_pool_submit(mb_store_pool(s->net->store), j) != 0) {
        s->refs--;
        return -1;
    }
    return 0;
}

gw_result gw_login_start(session *s, const char *user, size_t user_len, const char *pw, size_t pw_len)
{
    gw_session_enter(s, S_AUTHENTICATING);
    char why[160];
    if (user_len == 0 || user_len > PC_ADDRESS_MAX || strlen(user) != user_len || pw_len > VAULT_PASSWORD_MAX ||
        pa_address_canonical(user, s->address, sizeof s->address, why, sizeof why) != 0) {
        pu_log(PU_INFO, "%s: login failed: the user name is not an address postern serves", s->peer);
        s->address[0] = '\0';
        gw_session_fail_later(s, FAIL_DELAY_MS);
        return GW_PENDING;
    }
    mb_job *j = calloc(1, sizeof *j);
    s->pw = sodium_malloc(pw_len + 1);
    if (!j || !s->pw) {
        free(j);
        wipe_password(s);
        gw_session_enter(s, S_NOT_AUTH);
        s->proto->refuse(s, "[SERVERBUG] Out of memory");
        return GW_DONE;
    }
    memcpy(s->pw, pw, pw_len);
    s->pw[pw_len] = '\0';
    s->pw_len = pw_len;
    s->rechecking = false;
    s->record_cached = gw_keycache_get(s->net->keycache, s->address, j->record, &j->record_len);
    if (s->record_cached)
        s->net->stats.keyrecords_cached++;
    else
        s->net->stats.keyrecords_fetched++;
    if (s->record_cached) {
        record_digest(j, s->record_digest);
        /* on the next turn of the loop, as a worker's answer would come: the reply must not be
         * written from inside the command's handler */
        static const struct timeval now = {0, 0};
        j->status = PS_OK;
        j->owner = s;
        s->refs++;
        if (event_base_once(s->net->base, -1, EV_TIMEOUT, cached_record, j, &now) == 0)
            return GW_PENDING;
        s->refs--;
        s->record_cached = false;
    }
    if (fetch_record(s, j) != 0) {
        free(j);
        wipe_password(s);
        gw_session_enter(s, S_NOT_AUTH);
        s->proto->refuse(s, "[UNAVAILABLE] Too many logins at once; try again later");
        return GW_DONE;
    }
    return GW_PENDING;
}

void gw_login_finish(session *s, bool ok, const char *no_text)
{
    if (s->dead || s->state == S_LOGOUT) /* closing (server shutdown): no reply any more */
        return;
    wipe_password(s);
    if (ok) {
        s->net->stats.logins_ok[gw_proto_index(s)]++;
        s->login_at_ms = pu_now_ms();
    } else {
        s->net->stats.logins_failed[gw_proto_index(s)]++;
    }
    if (!ok) {
        gw_session_detach_account(s);
        if (s->vault_session)
            gw_vault_logout(s->net, s->vault_session);
        s->vault_session = 0;
        gw_session_enter(s, S_NOT_AUTH);
    }
    s->proto->login_done(s, ok, no_text);
}

void gw_session_detach_account(session *s)
{
    mb_account_open_cancel(&s->open_wait);
    mb_waiter_cancel(&s->scan_wait);
    if (s->account) {
        if (mb_reader_detach(&s->reader))
            s->vault_session = 0; /* the account logs it out once it is done with it */
        mb_account_release(s->account);
        s->account = NULL;
    }
}

/* Step 4: the user's account is there (or cannot be). */
static void account_opened(void *arg, mb_account *a, const char *no_text)
{
    session *s = arg;
    if (a) {
        s->account = a;
        mb_account_set_owner_key(a, s->key_id, s->box_pk);
        mb_reader_attach(&s->reader, a, s->vault_session);
    }
    gw_login_finish(s, a != NULL, no_text);
}

void gw_login_vault_reply(gw_net *net, session *s, const vault_reply *r)
{
    vault_login_done(net);
    if (!s) {
        /* the client left while the vault worked: give the session straight back */
        if (r->type == VAULT_REPLY_LOGIN)
            gw_vault_logout(net, r->u.login.session);
        return;
    }
    s->vault_req = 0;
    if (r->type == VAULT_REPLY_LOGIN) {
        s->vault_session = r->u.login.session; /* closing sessions log it out */
        memcpy(s->key_id, r->u.login.key_id, sizeof s->key_id);
        memcpy(s->box_pk, r->u.login.box_pk, sizeof s->box_pk);
        if (s->state == S_LOGOUT)
            return;
        mb_account_open(net->store, s->address, r->u.login.state_key, &s->open_wait, account_opened, s);
        return;
    }
    if (r->type != VAULT_REPLY_FAIL) {
        pu_log(PU_ERROR, "vault answered a login with reply type %d", (int)r->type);
        gw_login_finish(s, false, "[SERVERBUG] Internal error");
        return;
    }
    switch (r->reason) {
    case VAULT_FAIL_PASSWORD:
        if (s->record_cached && s->pw) {
            /* the password may have changed since the record was fetched (user passwd at
             * another site): once more if the news server has another record now */
            s->record_cached = false;
            s->rechecking = true;
            mb_job *j = calloc(1, sizeof *j);
            if (j && fetch_record(s, j) == 0)
                return;
            free(j);
            s->rechecking = false;
        }
        pu_log(PU_INFO, "%s: login failed for %s: wrong password", s->peer, s->address);
        gw_login_finish(s, false, AUTH_FAILED);
        break;
    case VAULT_FAIL_RECORD:
        gw_keycache_drop(net->keycache, s->address);
        pu_log(PU_WARN, "%s: login failed for %s: the vault refused the key record", s->peer, s->address);
        gw_login_finish(s, false, AUTH_FAILED);
        break;
    case VAULT_FAIL_THROTTLED:
        pu_log(PU_INFO, "%s: login for %s throttled after repeated failures", s->peer, s->address);
        gw_login_finish(s, false, "[UNAVAILABLE] Too many failed logins; try again later");
        break;
    case VAULT_FAIL_NOMEM:
    case VAULT_FAIL_BUSY:
        pu_log(PU_WARN, "%s: login for %s: vault busy (%s)", s->peer, s->address, vault_fail_str(r->reason));
        gw_login_finish(s, false, "[UNAVAILABLE] Server busy; try again later");
        break;
    default:
        pu_log(PU_ERROR, "%s: login for %s: vault: %s", s->peer, s->address, vault_fail_str(r->reason));
        gw_login_finish(s, false, "[SERVERBUG] Internal error");
        break;
    }
}
