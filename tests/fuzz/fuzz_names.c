/* libFuzzer target for the address <-> newsgroup mapping. The input is used twice: as an
 * address (if accepted, the group must map back to its canonical form, and the key group
 * too) and as a group name (if accepted, the address must map forward to the same name).
 * The first byte picks the prefix, so the empty-prefix escapes are covered as well. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "article/article.h"

static const char *const prefixes[] = {"postern", "", "a.b+c"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 1024)
        return 0;
    const char *prefix = prefixes[data[0] % 3];
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    char canon[PA_ADDRESS_MAX + 1], group[PA_GROUP_MAX + 1], key[PA_GROUP_MAX + 1];
    char back[PA_ADDRESS_MAX + 1], again[PA_GROUP_MAX + 1], err[200];
    if (pa_address_to_group(prefix, s, group, sizeof group, err, sizeof err) == 0) {
        if (pa_address_canonical(s, canon, sizeof canon, err, sizeof err) != 0)
            abort();
        if (pa_group_to_address(prefix, group, back, sizeof back) != 0 || strcmp(back, canon) != 0)
            abort();
        if (pa_address_to_key_group(prefix, s, key, sizeof key, err, sizeof err) != 0 ||
            pa_group_to_address(prefix, key, back, sizeof back) != 0 || strcmp(back, canon) != 0)
            abort();
        /* Canonicalising is idempotent. */
        if (pa_address_canonical(canon, back, sizeof back, err, sizeof err) != 0 || strcmp(back, canon) != 0)
            abort();
    } else if (memchr(err, '\n', strlen(err)) || err[0] == '\0') {
        abort(); /* every refusal has a one-line reason */
    }

    if (pa_group_to_address(prefix, s, back, sizeof back) == 0) {
        if (pa_address_to_group(prefix, back, again, sizeof again, err, sizeof err) != 0)
            abort();
        size_t n = strlen(again);
        /* Same name back: the mail group, or the key group when s was one. */
        if (strcmp(again, s) != 0 && !(strncmp(again, s, n) == 0 && strcmp(s + n, PA_KEY_SUFFIX) == 0))
            abort();
    }
    free(s);
    return 0;
}
