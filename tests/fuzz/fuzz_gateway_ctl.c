/* libFuzzer: the control socket's request parser (the network process reads it) and WHO's row
 * parser (`postern who` reads it) fed arbitrary bytes. Byte 0 picks which. Neither may crash;
 * an accepted request must be one of the three with its argument in bounds, and an accepted
 * row must format back to the very same line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        char line[GW_CTL_REPLY_MAX + 8];
        if (n >= sizeof line)
            return 0;
        memcpy(line, p, n);
        line[n] = '\0';
        gw_ctl_row r;
        if (gw_ctl_parse_row(line, &r) != 0)
            return 0;
        char back[GW_CTL_REPLY_MAX];
        if (gw_ctl_format_row(&r, back, sizeof back) < 0 || strcmp(back, line) != 0) {
            /* numbers may be written with leading zeros; anything else must round-trip */
            gw_ctl_row again;
            if (gw_ctl_parse_row(back, &again) != 0 || memcmp(&again, &r, sizeof r) != 0)
                abort();
        }
        return 0;
    }
    gw_ctl_req q;
    const char *why = NULL;
    if (gw_ctl_parse_request(p, n, &q, &why) != 0) {
        if (!why)
            abort();
        return 0;
    }
    if (n > GW_CTL_LINE_MAX)
        abort();
    if (q.verb == GW_CTL_KICK_USER && (strlen(q.user) == 0 || strlen(q.user) > PC_ADDRESS_MAX))
        abort();
    if (q.verb == GW_CTL_KICK_ID && q.id == 0)
        abort();
    return 0;
}
