/* mailbox: a command's messages in order (FETCH, SEARCH, a POP3 maildrop's sizes). A few
 * loads run at once, and each() gets the messages strictly in order. The walk holds a small
 * ring of slots, not one per message: a FETCH 1:* of a large mailbox costs the same memory
 * as one of ten messages, and at most WALK_RING decrypted messages wait for a slow one. */
#include <stdlib.h>

#include "mailbox/mb.h"

#define WALK_WINDOW 4 /* messages loading at once per command */
#define WALK_RING 16  /* messages issued and not yet given to each() */

enum slot_state {
    SLOT_WAITING, /* loading */
    SLOT_LOADED,
    SLOT_FAILED,
    SLOT_NO_LOAD, /* the command needs no plaintext of it */
    SLOT_GONE,    /* gone from the server when issued: each() is not called for it */
};

typedef struct walk_slot {
    mb_walk *w;
    mb_plain *p;
    enum slot_state st;
    mb_load_waiter wait;
} walk_slot;

struct mb_walk {
    mb_reader *r;
    size_t n;
    bool mime;
    const mb_walk_ops *ops;
    void *ctx;
    walk_slot slots[WALK_RING];
    size_t next_issue, next_each;
    unsigned inflight, failed;
};

mb_walk *mb_walk_new(mb_reader *r, size_t n, bool mime, const mb_walk_ops *ops, void *ctx)
{
    mb_walk *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    for (size_t k = 0; k < WALK_RING; k++)
        w->slots[k].w = w;
    w->r = r;
    w->n = n;
    w->mime = mime;
    w->ops = ops;
    w->ctx = ctx;
    return w;
}

void mb_walk_free(mb_walk *w)
{
    if (!w)
        return;
    for (size_t k = 0; k < WALK_RING; k++) {
        mb_load_cancel(&w->slots[k].wait);
        mb_plain_unref(w->slots[k].p);
    }
    free(w);
}

static void walk_loaded(void *arg, mb_plain *p, const char *err)
{
    walk_slot *sl = arg;
    mb_walk *w = sl->w;
    w->inflight--;
    if (p) {
        sl->p = p;
        sl->st = SLOT_LOADED;
    } else if (err == mb_load_junk) {
        sl->st = SLOT_GONE; /* removed from the mailbox: as if expunged before the command */
    } else {
        sl->st = SLOT_FAILED;
        w->failed++;
    }
    mb_walk_step(w);
}

void mb_walk_step(mb_walk *w)
{
    for (;;) {
        while (w->next_each < w->next_issue && w->slots[w->next_each % WALK_RING].st != SLOT_WAITING) {
            walk_slot *sl = &w->slots[w->next_each % WALK_RING];
            /* A message gone when issued gets no each(), even if it is back by now (a scan
             * that saw it again): nothing was loaded for it, and each() may need that. */
            if (sl->st == SLOT_LOADED || sl->st == SLOT_NO_LOAD)
                w->ops->each(w->ctx, w->next_each, sl->p);
            mb_plain_unref(sl->p);
            sl->p = NULL;
            w->next_each++;
        }
        if (w->next_each == w->n && w->inflight == 0) {
            w->ops->done(w->ctx, w->failed); /* may free w */
            return;
        }
        if (w->next_issue >= w->n || w->inflight >= WALK_WINDOW || w->next_issue - w->next_each >= WALK_RING ||
            (w->ops->paused && w->ops->paused(w->ctx)))
            return; /* walk_loaded() or the owner's mb_walk_step goes on */
        size_t k = w->next_issue++;
        walk_slot *sl = &w->slots[k % WALK_RING];
        const char *id = w->ops->msgid(w->ctx, k);
        if (!id || !w->ops->need(w->ctx, k)) {
            sl->st = id ? SLOT_NO_LOAD : SLOT_GONE;
            continue;
        }
        sl->st = SLOT_WAITING;
        w->inflight++;
        mb_load(w->r, id, w->mime, &sl->wait, walk_loaded, sl);
    }
}
