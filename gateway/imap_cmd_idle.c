/* IDLE (RFC 2177): the session waits for DONE; meanwhile new and vanished messages and flag
 * changes are pushed as they happen (the poller finds new articles within a second). */
#include <strings.h>

#include "gateway/mailbox.h"

gw_result gw_cmd_idle(session *s, const pi_command *cmd)
{
    (void)cmd;
    if (pi_parser_read_line(s->imap->parser) != 0) {
        gw_tagged(s, "BAD IDLE cannot start now");
        return GW_DONE;
    }
    s->imap->idle_prev = s->state;
    gw_session_enter(s, S_IDLE);
    gw_write(s, "+ idling\r\n", 10);
    gw_view_sync(s, true);
    return GW_DONE;
}

gw_result gw_idle_line(session *s, const char *line, size_t len)
{
    gw_session_enter(s, s->imap->idle_prev);
    if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
        gw_view_sync(s, true);
        gw_tagged(s, "OK IDLE terminated");
    } else {
        gw_tagged(s, "BAD Expected DONE");
    }
    return GW_DONE;
}
