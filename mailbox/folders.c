/* mailbox: the user's folders (issue 13). The directory lives in the replicated state
 * (mstate's folder records, the same at every site); this file turns IMAP's view of it —
 * names with levels, CREATE of missing superiors, RENAME of a subtree — into mstate's
 * one-folder operations, and reports what changed like every other state change. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailbox/mb.h"
#include "mstate/mstate.h"

static mb_folder_rc from_mstate(int rc)
{
    switch (rc) {
    case MSTATE_OK: return MB_FOLDER_OK;
    case MSTATE_EEXIST: return MB_FOLDER_EXISTS;
    case MSTATE_ENOFOLDER: return MB_FOLDER_NONEXISTENT;
    case MSTATE_EFIXED: return MB_FOLDER_FIXED;
    case MSTATE_EINVAL: return MB_FOLDER_BADNAME;
    case MSTATE_ELIMIT: return MB_FOLDER_LIMIT;
    default: return MB_FOLDER_NOMEM;
    }
}

static const mb_special specials[MSTATE_FIXED_FOLDERS] = {MB_INBOX, MB_SENT,  MB_DRAFTS,
                                                          MB_TRASH, MB_JUNK, MB_ARCHIVE};

static void fill(const mstate_folder *f, mb_folder *out)
{
    memset(out, 0, sizeof *out);
    out->id = f->id;
    size_t len = strlen(f->name);
    if (len > MB_FOLDER_NAME_MAX)
        len = MB_FOLDER_NAME_MAX; /* cannot happen: names are at most 200 bytes plus "~id" */
    memcpy(out->name, f->name, len);
    out->special = f->id < MSTATE_FIXED_FOLDERS ? specials[f->id] : MB_USER;
    out->subscribed = f->subscribed;
    out->uidvalidity = f->uidvalidity;
    out->uidnext = f->uid_next;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const mb_folder *)a)->name, ((const mb_folder *)b)->name);
}

mb_folder_rc mb_folders(mb_account *a, mb_folder **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    mstate_folder *f;
    size_t k;
    int rc = mstate_folders(ms, &f, &k);
    if (rc != MSTATE_OK)
        return from_mstate(rc);
    mb_folder *list = calloc(k ? k : 1, sizeof *list);
    if (!list) {
        free(f);
        return MB_FOLDER_NOMEM;
    }
    for (size_t i = 0; i < k; i++)
        fill(&f[i], &list[i]);
    free(f);
    if (k > MSTATE_FIXED_FOLDERS)
        qsort(list + MSTATE_FIXED_FOLDERS, k - MSTATE_FIXED_FOLDERS, sizeof *list, by_name);
    *out = list;
    *n = k;
    return MB_FOLDER_OK;
}

mb_folder_rc mb_folder_find(mb_account *a, const char *name, mb_folder *out)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    uint32_t id;
    int rc = mstate_folder_find(ms, name, &id);
    if (rc != MSTATE_OK)
        return from_mstate(rc);
    mstate_folder *f;
    size_t k;
    if ((rc = mstate_folders(ms, &f, &k)) != MSTATE_OK)
        return from_mstate(rc);
    for (size_t i = 0; i < k; i++)
        if (f[i].id == id)
            fill(&f[i], out);
    free(f);
    return mb_folder_counts(a, out);
}

mb_folder_rc mb_folder_counts(mb_account *a, mb_folder *f)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    if (f->special == MB_INBOX)
        return MB_FOLDER_OK;
    /* what SELECT would show: the entries whose articles this site holds (folderview.c);
     * before the account's first scan (a STATUS right after login) the state's own count */
    const mb_flist *fl = a->mbox->scanned ? mb_flist_get(a, f->id) : NULL;
    if (!fl)
        return from_mstate(mstate_folder_count(ms, f->id, &f->messages, &f->unseen));
    f->messages = f->unseen = 0;
    for (size_t i = 0; i < fl->n; i++)
        if (!fl->m[i].expunged) {
            f->messages++;
            f->unseen += !(fl->m[i].flags & US_SEEN);
        }
    return MB_FOLDER_OK;
}

mb_folder_rc mb_folder_create(mb_account *a, const char *name)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    char buf[MB_FOLDER_NAME_MAX + 2];
    size_t len = strlen(name);
    if (len > MSTATE_FOLDER_NAME_MAX + 1)
        return MB_FOLDER_BADNAME;
    memcpy(buf, name, len + 1);
    if (len > 1 && buf[len - 1] == MSTATE_FOLDER_SEP)
        buf[--len] = '\0'; /* "foo/": the client means to put folders below it */
    uint32_t id;
    if (mstate_folder_find(ms, buf, &id) == MSTATE_OK)
        return MB_FOLDER_EXISTS;
    uint64_t now = mb_replica_now_ms();
    /* superior levels first, those that exist are left as they are */
    bool changed = false;
    int rc = MSTATE_OK;
    for (size_t i = 1; i < len && rc == MSTATE_OK; i++) {
        if (buf[i] != MSTATE_FOLDER_SEP)
            continue;
        buf[i] = '\0';
        if (mstate_folder_find(ms, buf, &id) != MSTATE_OK && strcasecmp(buf, "INBOX") != 0) {
            rc = mstate_folder_create(ms, buf, now, NULL);
            changed |= rc == MSTATE_OK;
        }
        buf[i] = MSTATE_FOLDER_SEP;
    }
    if (rc == MSTATE_OK)
        rc = mstate_folder_create(ms, buf, now, NULL);
    if (rc == MSTATE_OK || changed)
        mb_replica_changed(a);
    return from_mstate(rc);
}

/* The folders at or below name, their ids and names (*ids, *names malloc'd). The order does
 * not matter: RENAME checks every new name before it renames any. */
static mb_folder_rc subtree(mstate *ms, const char *name, uint32_t **ids, char ***names, size_t *n)
{
    mstate_folder *f;
    size_t k;
    int rc = mstate_folders(ms, &f, &k);
    if (rc != MSTATE_OK)
        return from_mstate(rc);
    size_t len = strlen(name), m = 0;
    *ids = malloc((k ? k : 1) * sizeof **ids);
    *names = calloc(k ? k : 1, sizeof **names);
    if (!*ids || !*names) {
        free(*ids), free(*names), free(f);
        return MB_FOLDER_NOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        bool self = strcmp(f[i].name, name) == 0;
        bool below = strncmp(f[i].name, name, len) == 0 && f[i].name[len] == MSTATE_FOLDER_SEP;
        if (!self && !below)
            continue;
        if (!((*names)[m] = strdup(f[i].name))) {
            for (size_t j = 0; j < m; j++)
                free((*names)[j]);
            free(*ids), free(*names), free(f);
            return MB_FOLDER_NOMEM;
        }
        (*ids)[m++] = f[i].id;
    }
    free(f);
    *n = m;
    return MB_FOLDER_OK;
}

mb_folder_rc mb_folder_delete(mb_account *a, const char *name)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    uint32_t id;
    int rc = mstate_folder_find(ms, name, &id);
    if (rc == MSTATE_OK)
        rc = mstate_folder_delete(ms, id, mb_replica_now_ms());
    if (rc == MSTATE_OK)
        mb_replica_changed(a);
    return from_mstate(rc);
}

mb_folder_rc mb_folder_rename(mb_account *a, const char *from, const char *to)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    uint32_t id;
    int rc = mstate_folder_find(ms, from, &id);
    if (rc != MSTATE_OK)
        return from_mstate(rc);
    if (id < MSTATE_FIXED_FOLDERS)
        return MB_FOLDER_FIXED;
    size_t flen = strlen(from), tlen = strlen(to);
    if (tlen > flen && strncmp(to, from, flen) == 0 && to[flen] == MSTATE_FOLDER_SEP)
        return MB_FOLDER_BADNAME; /* into itself */
    uint32_t *ids = NULL;
    char **names = NULL;
    size_t n = 0;
    mb_folder_rc r = subtree(ms, from, &ids, &names, &n);
    if (r != MB_FOLDER_OK)
        return r;
    /* every new name is checked before anything is renamed */
    char (*fresh)[MSTATE_FOLDER_NAME_MAX + 1] = calloc(n ? n : 1, sizeof *fresh);
    rc = fresh ? MSTATE_OK : MSTATE_ENOMEM;
    for (size_t i = 0; i < n && rc == MSTATE_OK; i++) {
        size_t rest = strlen(names[i]) - flen;
        if (tlen + rest > MSTATE_FOLDER_NAME_MAX)
            rc = MSTATE_EINVAL;
        else {
            memcpy(fresh[i], to, tlen);
            memcpy(fresh[i] + tlen, names[i] + flen, rest + 1);
            uint32_t have;
            if (mstate_folder_find(ms, fresh[i], &have) == MSTATE_OK)
                rc = MSTATE_EEXIST;
        }
    }
    uint64_t now = mb_replica_now_ms();
    size_t done = 0;
    for (size_t i = 0; i < n && rc == MSTATE_OK; i++)
        if ((rc = mstate_folder_rename(ms, ids[i], fresh[i], now)) == MSTATE_OK)
            done++;
    /* a superior level of the new name that does not exist yet is created, as CREATE would */
    if (rc == MSTATE_OK) {
        char buf[MSTATE_FOLDER_NAME_MAX + 1];
        memcpy(buf, to, tlen + 1);
        for (size_t i = 1; i < tlen; i++) {
            if (buf[i] != MSTATE_FOLDER_SEP)
                continue;
            buf[i] = '\0';
            uint32_t have;
            if (mstate_folder_find(ms, buf, &have) != MSTATE_OK && mstate_folder_create(ms, buf, now, NULL) == MSTATE_OK)
                done++;
            buf[i] = MSTATE_FOLDER_SEP;
        }
    }
    if (done)
        mb_replica_changed(a);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(ids);
    free(fresh);
    return from_mstate(rc);
}

mb_folder_rc mb_folder_subscribe(mb_account *a, const char *name, bool on)
{
    mstate *ms = mb_replica_state(a);
    if (!ms)
        return MB_FOLDER_UNAVAILABLE;
    uint32_t id;
    int rc = mstate_folder_find(ms, name, &id);
    if (rc == MSTATE_OK && (rc = mstate_folder_subscribe(ms, id, on, mb_replica_now_ms())) == MSTATE_OK)
        mb_replica_changed(a);
    return from_mstate(rc);
}
