/* For the fuzz targets of imap/'s argument parsers: feeds prefix, the fuzzer's bytes and CRLF
 * through the command parser as one command line, and calls check(command, ctx) for every
 * command that comes out (the bytes may hold CRLF and so make several). Raw-line mode is
 * never asked for, so a PI_LINE is a bug. */
#ifndef POSTERN_FUZZ_IMAP_ARGS_H
#define POSTERN_FUZZ_IMAP_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap.h"

static inline void fuzz_imap_args(const char *prefix, const uint8_t *data, size_t size,
                                  void (*check)(const pi_command *c, void *ctx), void *ctx)
{
    pi_parser *p = pi_parser_new(NULL);
    if (!p)
        return;
    const struct {
        const void *d;
        size_t n;
    } parts[] = {{prefix, strlen(prefix)}, {data, size}, {"\r\n", 2}};
    bool dead = false;
    for (size_t k = 0; k < 3 && !dead; k++) {
        const char *d = parts[k].d;
        size_t n = parts[k].n, off = 0;
        while (off < n && !dead) {
            size_t used = 0;
            pi_status st = pi_parse(p, d + off, n - off, &used);
            off += used;
            if (st == PI_NEED_MORE)
                break;
            if (st == PI_COMMAND)
                check(pi_parser_command(p), ctx);
            else if (st == PI_ERROR && pi_parser_error(p)->fatal)
                dead = true;
            else if (st == PI_LINE)
                abort();
        }
    }
    pi_parser_free(p);
}

#endif
