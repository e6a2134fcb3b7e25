/* libFuzzer target for the overview lines postern reads from a news server (OVER): mail
 * articles (pa_over_mail), state articles (pa_over_state) and key records (pa_over_key). Anyone with the posting account
 * chooses what they say. Each accepted line must give a Message-ID inside the line's bounds
 * with the shape the parser promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "article/article.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *line = malloc(size ? size : 1);
    if (!line)
        return 0;
    memcpy(line, data, size); /* not NUL-terminated: the parsers take a length */
    uint64_t num, bytes;
    const char *id;
    size_t id_len;
    if (pa_over_mail(line, size, &num, &id, &id_len)) {
        if (num == 0 || id < line || id + id_len > line + size || id_len >= PA_MSGID_MAX ||
            strncmp(id, "<m.", 3) != 0 || id[id_len - 1] != '>')
            abort();
    }
    if (pa_over_state(line, size, &num, &id, &id_len)) {
        if (num == 0 || id < line || id + id_len > line + size || id_len >= PA_MSGID_MAX ||
            strncmp(id, "<s.", 3) != 0 || id[id_len - 1] != '>')
            abort();
    }
    uint32_t serial;
    char key_id[PA_MSGID_MAX];
    if (pa_over_key(line, size, &num, &serial, &bytes, key_id)) {
        size_t n = strlen(key_id);
        if (num == 0 || n >= PA_MSGID_MAX || strncmp(key_id, "<k.", 3) != 0 || key_id[n - 1] != '>' ||
            !memmem(line, size, key_id, n))
            abort();
    }
    free(line);
    return 0;
}
