/* mailbox: what a client does to the messages of its view, in the INBOX or any folder —
 * read their state, STORE, EXPUNGE, COPY (MOVE is a copy and an expunge). The INBOX keeps
 * its flags in the user's state (userstate, mirrored into the replicated state by
 * replica.c); every other folder has them only in the replicated state, whose entries are
 * the folder's memberships (docs/formats.md 6.4). A message leaving its last folder has its
 * article cancelled (replica.c). */
#include <stdio.h>
#include <string.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

void mb_view_state(const mb_view *v, mb_account *a, size_t i, userstate_msg *out)
{
    memset(out, 0, sizeof *out);
    const char *id = mb_view_msgid(v, a, i);
    if (!id)
        return;
    userstate_get(a->us, id, out);
    if (v->folder == MB_INBOX_ID)
        return;
    const mb_fmsg *f = mb_view_fmsg(v, a, i);
    if (!f)
        return;
    out->flags = f->flags; /* the metadata the INBOX cached stays, if it holds the message too */
    memcpy(out->keywords, f->kw, sizeof out->keywords);
    out->removed = 0;
    out->modseq = f->modseq;
}

uint64_t mb_view_modseq(const mb_view *v, mb_account *a)
{
    if (v->folder == MB_INBOX_ID)
        return userstate_modseq(a->us);
    const mb_flist *fl = mb_flist_get(a, v->folder);
    return fl ? fl->modseq : v->modseq_seen;
}

/* The replicated state's name of message i of the view. */
static bool view_key(const mb_view *v, mb_account *a, size_t i, uint8_t key[MSTATE_MSGKEY_BYTES])
{
    if (i >= v->n)
        return false;
    if (v->folder != MB_INBOX_ID) {
        const mb_fmsg *f = mb_view_fmsg(v, a, i);
        if (f)
            memcpy(key, f->key, MSTATE_MSGKEY_BYTES);
        return f != NULL;
    }
    long k = mb_mbox_find(a->mbox, mb_view_uid(v, i));
    if (k >= 0)
        memcpy(key, a->mbox->msgs[k].key, MSTATE_MSGKEY_BYTES);
    return k >= 0;
}

uint64_t mb_view_msg_modseq(const mb_view *v, mb_account *a, size_t i)
{
    mstate *ms = mb_replica_state(a);
    uint8_t key[MSTATE_MSGKEY_BYTES];
    mstate_view mv;
    if (!ms || !view_key(v, a, i, key) || !mstate_get(ms, v->folder, key, &mv))
        return 1;
    return mv.modseq;
}

uint64_t mb_folder_highestmodseq(mb_account *a, uint32_t folder)
{
    mstate *ms = mb_replica_state(a);
    return ms ? mstate_highest_modseq(ms, folder) : 1;
}

uint64_t mb_view_highestmodseq(mb_view *v, mb_account *a)
{
    uint64_t h = mb_folder_highestmodseq(a, v->folder);
    if (h > v->highestmodseq)
        v->highestmodseq = h;
    return v->highestmodseq;
}

uint64_t mb_modseq_margin(unsigned seconds)
{
    return seconds ? mstate_modseq_of_ms(seconds * 1000ull) : 0;
}

int mb_view_store(const mb_view *v, mb_account *a, size_t i, enum userstate_op op, unsigned flags,
                  const uint8_t *keywords)
{
    const char *id = mb_view_msgid(v, a, i);
    if (!id)
        return US_OK; /* gone from the server: nothing to store on */
    if (v->folder == MB_INBOX_ID)
        return mb_state_store(a, id, op, flags, keywords);
    mstate *ms = mb_replica_state(a);
    const mb_fmsg *f = mb_view_fmsg(v, a, i);
    if (!ms || !f || (flags & ~US_FLAGS_ALL))
        return US_EINVAL;
    uint8_t key[MSTATE_MSGKEY_BYTES];
    memcpy(key, f->key, sizeof key);
    uint32_t uid = f->uid;
    unsigned old = f->flags, now_flags = op == US_ADD ? old | flags : op == US_REMOVE ? old & ~flags : flags;
    uint8_t kw_old[US_KEYWORD_SET_BYTES];
    memcpy(kw_old, f->kw, sizeof kw_old);
    uint64_t now = mb_replica_now_ms();
    int rc = MSTATE_OK;
    if (now_flags != old)
        rc = mstate_set_flags(ms, v->folder, key, now_flags & ~old, old & ~now_flags, now);
    unsigned nk = userstate_keyword_count(a->us);
    for (unsigned k = 0; k < nk && rc == MSTATE_OK; k++) {
        int had = us_kw_test(kw_old, k), given = keywords && us_kw_test(keywords, k);
        int want = op == US_ADD ? had || given : op == US_REMOVE ? had && !given : given;
        const char *name = userstate_keyword_name(a->us, k);
        if (name && want != had)
            rc = mstate_set_keyword(ms, v->folder, key, name, want, now);
    }
    mb_flist_touched(a, v->folder, uid);
    mb_replica_touch(a);
    return rc == MSTATE_OK ? US_OK : rc == MSTATE_ENOMEM ? US_ENOMEM : rc == MSTATE_ELIMIT ? US_ELIMIT : US_EINVAL;
}

int mb_view_expunge(const mb_view *v, mb_account *a, size_t i)
{
    const char *id = mb_view_msgid(v, a, i);
    if (!id)
        return US_OK;
    if (v->folder == MB_INBOX_ID)
        return mb_state_remove(a, id);
    mstate *ms = mb_replica_state(a);
    const mb_fmsg *f = mb_view_fmsg(v, a, i);
    if (!ms || !f)
        return US_EINVAL;
    char msgid[PA_MSGID_MAX];
    memcpy(msgid, f->msgid, sizeof msgid);
    uint32_t uid = f->uid;
    int rc = mstate_expunge(ms, v->folder, f->key, mb_replica_now_ms());
    if (rc != MSTATE_OK)
        return rc == MSTATE_ENOMEM ? US_ENOMEM : US_EINVAL;
    mb_flist_expunged(a, v->folder, uid);
    mb_replica_touch(a);
    mb_replica_unfiled(a, msgid);
    return US_OK;
}

mb_folder_rc mb_view_copy(const mb_view *v, mb_account *a, size_t i, uint32_t to, uint32_t *uid)
{
    *uid = 0;
    mstate *ms = mb_replica_state(a);
    const char *id = mb_view_msgid(v, a, i);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    if (!id)
        return MB_FOLDER_OK; /* gone from the server meanwhile: nothing to copy (RFC 9051 7.4.1) */
    char msgid[PA_MSGID_MAX];
    snprintf(msgid, sizeof msgid, "%s", id);
    uint8_t key[MSTATE_MSGKEY_BYTES];
    mstate_msgkey(msgid, strlen(msgid), key);
    int rc = mstate_copy(ms, v->folder, key, to, mb_replica_now_ms(), uid);
    if (rc == MSTATE_ENOFOLDER)
        return MB_FOLDER_NONEXISTENT;
    if (rc == MSTATE_EINVAL)
        return MB_FOLDER_OK; /* expunged from the source by another session meanwhile */
    if (rc != MSTATE_OK)
        return rc == MSTATE_ELIMIT ? MB_FOLDER_LIMIT : MB_FOLDER_NOMEM;
    if (to == MB_INBOX_ID) {
        /* back in the INBOX (a MOVE out of Trash): the user's state, which hid it as removed,
         * shows it again with the flags it was copied with */
        mstate_view mv;
        mstate_get(ms, MSTATE_INBOX, key, &mv);
        uint8_t kw[US_KEYWORD_SET_BYTES];
        mb_state_keywords(a, MSTATE_INBOX, key, kw);
        userstate_restore(a->us, msgid, mv.flags & US_FLAGS_ALL, kw);
        mb_replica_relist(a);
    } else {
        mb_flist_invalidate(a, to);
    }
    mb_replica_touch(a);
    return MB_FOLDER_OK;
}
