/* postern deliver --to ADDRESS < message */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "deliver/deliver.h"
#include "util/util.h"

static const char usage[] =
    "usage: postern deliver --to ADDRESS [--verbose] < message\n"
    "Encrypts one message to ADDRESS and posts it to the news servers, byte for byte\n"
    "(a leading mbox 'From ' line is dropped).\n"
    "Exit codes (sysexits): 0 delivered, 67 unknown recipient, 69 larger than\n"
    "max_message_size, 75 temporary failure (the MTA keeps the message and retries).";

int pd_cmd_deliver(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *to = NULL;
    int verbose = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:vh", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            to = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            puts(usage);
            return PX_OK;
        default:
            fprintf(stderr, "%s\n", usage);
            return PX_USAGE;
        }
    }
    if (!to || optind != argc) {
        fprintf(stderr, "%s\n", usage);
        return PX_USAGE;
    }
    char err[256];
    uint8_t *secret = pn_load_delivery_secret(cfg, err, sizeof err);
    if (!secret) {
        /* Mis-configuration: keep the mail queued while the admin fixes it. */
        pu_err("%s", err);
        return PX_TEMPFAIL;
    }
    char msg[4096];
    int rc = pd_deliver(cfg, secret, to, STDIN_FILENO, PD_MBOX_FROM, msg, sizeof msg);
    sodium_free(secret);
    if (rc == PX_UNAVAILABLE) /* Postfix's pipe(8) takes a leading enhanced code for the bounce */
        fprintf(stderr, "5.3.4 postern: %s\n", msg);
    else if (rc != PX_OK)
        pu_err("%s", msg);
    else if (verbose)
        fprintf(stderr, "postern: %s\n", msg);
    return rc;
}
