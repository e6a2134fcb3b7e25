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
    pn_delivery_keys *secret = pn_load_delivery_keys(cfg, err, sizeof err);
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

static const char verify_usage[] =
    "usage: postern verify-recipient [--verbose] ADDRESS\n"
    "Looks ADDRESS up on the news servers as `postern lmtp` does at RCPT, for an MTA's\n"
    "recipient check during the SMTP dialogue (docs/deliver.md, Exim). Needs postern.conf\n"
    "and the NNTP password, not the delivery secret. Prints nothing; --verbose says why.\n"
    "Exit codes: 0 a user here, 67 unknown recipient, 75 temporary failure (no news server\n"
    "reachable: the MTA should answer 4xx).";

int pd_cmd_verify_recipient(const pn_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int verbose = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'v':
            verbose = 1;
            break;
        case 'h':
            puts(verify_usage);
            return PX_OK;
        default:
            fprintf(stderr, "%s\n", verify_usage);
            return PX_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "%s\n", verify_usage);
        return PX_USAGE;
    }
    /* A lookup seals nothing: no delivery secret, so the MTA's user need not read it. */
    pd_ctx *ctx = pd_ctx_new(cfg, NULL);
    if (!ctx) {
        pu_err("out of memory");
        return PX_TEMPFAIL;
    }
    char msg[2048];
    pd_recipient *r = NULL;
    int rc = pd_ctx_recipient(ctx, argv[optind], &r, msg, sizeof msg);
    pd_recipient_free(r);
    pd_ctx_free(ctx);
    if (rc == PX_OK)
        snprintf(msg, sizeof msg, "%s: a user here", argv[optind]);
    else if (rc != PX_NOUSER)
        rc = PX_TEMPFAIL; /* anything but a clear "unknown" must not reject mail for good */
    if (verbose)
        fprintf(stderr, "postern: %s\n", msg);
    return rc;
}
