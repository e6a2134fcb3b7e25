/* libFuzzer target for LMTP: the command parser on each input line, the DATA un-stuffer fed
 * whole and in slices chosen by the input (both must produce the same message and stop at the
 * same byte), and a whole session against a fake backend that counts handles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "deliver/lmtp.h"
#include "util/util.h"

static int outstanding;

static int fake_rcpt(void *arg, const char *address, void **handle, char *msg, size_t msglen)
{
    (void)arg;
    (void)msg;
    (void)msglen;
    if (address[0] == 'u')
        return PX_NOUSER;
    *handle = &outstanding;
    outstanding++;
    return PX_OK;
}

static int fake_deliver(void *arg, void *handle, pd_read_fn rd, void *rd_arg, char *msg, size_t msglen)
{
    (void)arg;
    (void)handle;
    uint8_t buf[4096];
    ssize_t n;
    while ((n = rd(rd_arg, buf, sizeof buf)) > 0)
        ;
    if (n < 0)
        abort(); /* the spool must always read back */
    msg[0] = '\0';
    (void)msglen;
    return PX_OK;
}

static void fake_release(void *arg, void *handle)
{
    (void)arg;
    if (handle != &outstanding)
        abort();
    outstanding--;
}

static void check_unstuff(const uint8_t *data, size_t size)
{
    uint8_t *whole = malloc(size + 1), *sliced = malloc(size + 1), *tmp = malloc(size + 1);
    if (!whole || !sliced || !tmp)
        abort();
    lmtp_unstuff a, b;
    lmtp_unstuff_init(&a);
    lmtp_unstuff_init(&b);
    size_t used_a = 0;
    size_t n_a = lmtp_unstuff_feed(&a, data, size, &used_a, whole);
    memcpy(tmp, whole, n_a);
    size_t n_b = 0, used_b = 0, step = size ? (size_t)data[0] % 7 + 1 : 1;
    while (used_b < size && !b.done) {
        size_t len = size - used_b < step ? size - used_b : step, used = 0;
        size_t got = lmtp_unstuff_feed(&b, data + used_b, len, &used, sliced + n_b);
        if (got > len + 1 || used > len || (!b.done && used != len))
            abort();
        n_b += got;
        used_b += used;
        step = step % 5 + 1;
    }
    if (a.done != b.done || used_a != used_b || n_a != n_b || memcmp(tmp, sliced, n_a) != 0 ||
        n_a != a.out_bytes)
        abort();
    if (!a.done && used_a != size)
        abort();
    free(whole);
    free(sliced);
    free(tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        if (sodium_init() < 0)
            abort();
        init = 1;
    }
    if (size > 65536)
        return 0;
    /* every line through the command parser */
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            lmtp_cmd cmd;
            const char *reply = NULL;
            if (lmtp_parse_command((const char *)data + start, i - start, &cmd, &reply) != 0) {
                if (!reply || strlen(reply) < 4 || (reply[0] != '5' && reply[0] != '4') || strchr(reply, '\r'))
                    abort();
            } else if ((cmd.verb == LMTP_RCPT && !cmd.path[0]) || strlen(cmd.path) > LMTP_MAX_PATH) {
                abort();
            }
            start = i + 1;
        }
    }
    check_unstuff(data, size);

    /* a whole session: input from an in-memory file, output discarded */
    int in = memfd_create("fuzz-lmtp-in", 0), out = memfd_create("fuzz-lmtp-out", 0);
    if (in < 0 || out < 0)
        abort();
    if (size && write(in, data, size) != (ssize_t)size)
        abort();
    lseek(in, 0, SEEK_SET);
    static pn_config cfg;
    strcpy(cfg.state_dir, "/tmp");
    cfg.max_message_size = 2048;
    lmtp_backend be = {.rcpt = fake_rcpt, .deliver = fake_deliver, .release = fake_release};
    lmtp_params p = {.in_fd = in, .out_fd = out, .cfg = &cfg, .backend = &be, .hostname = "fuzz",
                     .command_timeout_ms = 1000, .data_timeout_ms = 1000};
    lmtp_session(&p);
    if (outstanding != 0)
        abort(); /* a recipient handle leaked */
    close(in);
    close(out);
    return 0;
}
