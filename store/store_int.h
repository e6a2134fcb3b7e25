/* store: what the files of the module share; not part of its public face (store.h). */
#ifndef POSTERN_STORE_INT_H
#define POSTERN_STORE_INT_H

#include "store/store.h"

/* health.c: 1 (with err) when the site timed out recently and is not to be tried yet. */
int ps_health_skip(const pn_site *s, char *err, size_t errlen);
/* After a connection attempt: answered (connected), or timed out (cost the whole timeout). */
void ps_health_result(const pn_site *s, int answered, int timed_out);

#endif
