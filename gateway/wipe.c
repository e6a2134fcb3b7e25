/* gateway: memory that held plaintext is wiped when it is freed, also inside the libraries.
 * libevent's output buffers carry every FETCH and RETR response and OpenSSL's record buffers
 * every TLS record; both free them without clearing, so a message read an hour ago stayed in
 * the heap of the network process (issue 14). Both libraries take replacement allocators:
 * these wipe a block (its whole usable size) before handing it back to malloc. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <sodium.h>

#include "gateway/gw.h"

static void wipe_free(void *p)
{
    if (p) {
        sodium_memzero(p, malloc_usable_size(p));
        free(p);
    }
}

/* Never realloc(): a block that moves would leave its old copy unwiped. */
static void *wipe_realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) {
        wipe_free(p);
        return NULL;
    }
    size_t old = malloc_usable_size(p);
    if (n <= old)
        return p;
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old);
    wipe_free(p);
    return q;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return wipe_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    wipe_free(p);
}

int gw_wipe_library_memory(void)
{
    /* OpenSSL refuses once it has allocated anything: this runs before the first TLS use */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
        return -1;
    event_set_mem_functions(malloc, wipe_realloc, wipe_free);
    return 0;
}
