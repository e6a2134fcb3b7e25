/* Unit tests for nntp framing and status mapping, against a scripted in-process fake server
 * (a thread on the other end of a socketpair, or of a loopback TCP socket for nntp_connect).
 * The real-INN checks are done by hand against an INN 2.7 lab; see the commit messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nntp/nntp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- fake server ---- */

#define CLOSE_NOW "\001close" /* script entry: hang up instead of replying */
#define SILENCE "\001silence" /* script entry: read the command, never answer */

struct fake {
    int fd;
    const char *greeting;     /* sent first, may be NULL */
    const char *const *script; /* one reply per command line; NULL ends */
    int slow;                 /* write replies one byte at a time */
    char got[1 << 16];        /* every byte the client sent (data of huge POSTs is counted only) */
    size_t gotlen;
    size_t post_bytes;
    pthread_t th;
};

static void fake_write(struct fake *f, const char *s, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = send(f->fd, s + off, f->slow ? 1 : n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* Reads one line into got; returns its length (with CRLF) or 0 on EOF. */
static size_t fake_line(struct fake *f, char *line, size_t cap)
{
    size_t n = 0;
    char ch;
    while (recv(f->fd, &ch, 1, 0) == 1) {
        if (n + 1 < cap)
            line[n++] = ch;
        if (f->gotlen < sizeof f->got)
            f->got[f->gotlen++] = ch;
        if (ch == '\n')
            break;
    }
    line[n] = '\0';
    return n;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    char line[4096];
    if (f->greeting)
        fake_write(f, f->greeting, strlen(f->greeting));
    for (const char *const *r = f->script; r && *r; r++) {
        if (strcmp(*r, CLOSE_NOW) == 0)
            break;
        if (fake_line(f, line, sizeof line) == 0)
            break;
        if (strcmp(*r, SILENCE) == 0) {
            char buf[4096];
            while (recv(f->fd, buf, sizeof buf, 0) > 0)
                ;
            break;
        }
        fake_write(f, *r, strlen(*r));
        if (strcmp(line, "POST\r\n") == 0 && strncmp(*r, "340", 3) == 0) {
            if (r[1] != NULL && strcmp(r[1], CLOSE_NOW) == 0)
                break; /* hang up in the middle of the article */
            size_t n;
            while ((n = fake_line(f, line, sizeof line)) > 0 && strcmp(line, ".\r\n") != 0)
                f->post_bytes += n;
            /* the answer to the article follows without another command */
            if (n == 0 || r[1] == NULL || strcmp(r[1], CLOSE_NOW) == 0)
                break;
            r++;
            fake_write(f, *r, strlen(*r));
        }
    }
    shutdown(f->fd, SHUT_RDWR);
    return NULL;
}

static struct fake *fake_start(const char *greeting, const char *const *script, nntp_conn **c)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->fd = sv[1];
    f->greeting = greeting;
    f->script = script;
    assert_int_equal(nn_conn_from_fd(sv[0], 2000, c), NNTP_OK);
    return f;
}

static void fake_go(struct fake *f)
{
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_end(struct fake *f, nntp_conn *c)
{
    c->dead = 1; /* the script has ended: no QUIT */
    nntp_close(c);
    pthread_join(f->th, NULL);
    close(f->fd);
    free(f);
}

/* ---- status mapping ---- */

static void test_status_mapping(void **state)
{
    (void)state;
    /* duplicates: what INN 2.7.1 nnrpd really sends, and other spellings */
    assert_int_equal(nn_map_status(441, "441 435 Duplicate", NN_CTX_POST), NNTP_EDUP);
    assert_int_equal(nn_map_status(435, "435 Duplicate", NN_CTX_POST), NNTP_EDUP);
    assert_int_equal(nn_map_status(441, "441 Duplicate article", NN_CTX_POST), NNTP_EDUP);
    assert_int_equal(nn_map_status(441, "441 435 <x@y> already there", NN_CTX_POST), NNTP_EDUP);
    /* temporary refusals */
    assert_int_equal(nn_map_status(441, "441 400 Throttled", NN_CTX_POST), NNTP_ETEMP);
    assert_int_equal(nn_map_status(441, "441 Server paused", NN_CTX_POST), NNTP_ETEMP);
    assert_int_equal(nn_map_status(441, "441 No space left on device", NN_CTX_POST), NNTP_ETEMP);
    assert_int_equal(nn_map_status(441, "441 Load too high", NN_CTX_POST), NNTP_ETEMP);
    assert_int_equal(nn_map_status(400, "400 Service unavailable", NN_CTX_GENERIC), NNTP_ETEMP);
    assert_int_equal(nn_map_status(403, "403 Internal fault", NN_CTX_GENERIC), NNTP_ETEMP);
    assert_int_equal(nn_map_status(436, "436 Retry later", NN_CTX_POST), NNTP_ETEMP);
    /* permanent refusals, as INN 2.7.1 words them */
    assert_int_equal(nn_map_status(441, "441 You are not allowed to post to postern.test",
                                   NN_CTX_POST), NNTP_EPERM);
    assert_int_equal(nn_map_status(441, "441 Article is bigger than local limit of 268435456 bytes",
                                   NN_CTX_POST), NNTP_EPERM);
    assert_int_equal(nn_map_status(441, "441 No valid newsgroups in \"x.y\"", NN_CTX_POST),
                     NNTP_EPERM);
    assert_int_equal(nn_map_status(440, "440 Posting not allowed", NN_CTX_POST), NNTP_EPERM);
    assert_int_equal(nn_map_status(502, "502 Permission denied", NN_CTX_GENERIC), NNTP_EPERM);
    assert_int_equal(nn_map_status(500, "500 What?", NN_CTX_GENERIC), NNTP_EPERM);
    /* missing things */
    assert_int_equal(nn_map_status(411, "411 No such group x", NN_CTX_GENERIC), NNTP_ENOENT);
    assert_int_equal(nn_map_status(423, "423 No such article number 9", NN_CTX_GENERIC), NNTP_ENOENT);
    assert_int_equal(nn_map_status(430, "430 No such article", NN_CTX_GENERIC), NNTP_ENOENT);
    /* authentication */
    assert_int_equal(nn_map_status(480, "480 Read access denied", NN_CTX_GENERIC), NNTP_EAUTH);
    /* INN 2.7.1 to a reader without the P permission */
    assert_int_equal(nn_map_status(480, "480 Posting not allowed", NN_CTX_POST), NNTP_EAUTH);
    for (int code = 480; code <= 482; code++)
        assert_int_equal(nn_map_status(code, "4xx", NN_CTX_AUTH), NNTP_EAUTH);
    assert_int_equal(nn_map_status(502, "502 No", NN_CTX_AUTH), NNTP_EAUTH);
    assert_int_equal(nn_map_status(400, "400 Bye", NN_CTX_AUTH), NNTP_ETEMP);
    /* a success code where a failure is mapped is not NNTP we understand */
    assert_int_equal(nn_map_status(211, "211 x", NN_CTX_GENERIC), NNTP_EPROTO);
    for (int s = NNTP_OK; s <= NNTP_EINVAL; s++)
        assert_non_null(nntp_strerror(s));
}

/* ---- POST ---- */

static const char ARTICLE_IN[] =
    "Newsgroups: t\nSubject: dots\r\n\n.\n..x\r\n.leading\nmid.dle\n\r\n.\rx\nend.\nlast.";
static const char ARTICLE_WIRE[] =
    "Newsgroups: t\r\nSubject: dots\r\n\r\n..\r\n...x\r\n..leading\r\nmid.dle\r\n\r\n..\rx\r\n"
    "end.\r\nlast.\r\n.\r\n";

static void test_post_slices(void **state)
{
    (void)state;
    static const size_t slices[] = {1, 2, 3, 4, 5, 7, 11, sizeof ARTICLE_IN};
    enum { N = sizeof slices / sizeof slices[0] };
    const char *script[2 * N + 1];
    for (size_t i = 0; i < N; i++) {
        script[2 * i] = "340 send it\r\n";
        script[2 * i + 1] = "240 Article received <x@y>\r\n";
    }
    script[2 * N] = NULL;
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    /* post_bytes would count the data; we need the exact bytes, so record them via got */
    fake_go(f);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(nntp_post_begin(c), NNTP_OK);
        size_t len = sizeof ARTICLE_IN - 1;
        for (size_t off = 0; off < len; off += slices[i]) {
            size_t k = len - off < slices[i] ? len - off : slices[i];
            assert_int_equal(nntp_post_write(c, ARTICLE_IN + off, k), NNTP_OK);
        }
        assert_int_equal(nntp_post_end(c), NNTP_OK);
        assert_string_equal(nntp_last_response(c), "240 Article received <x@y>");
    }
    fake_end(f, c);
}

/* The fake only counts data lines; this variant checks the exact bytes on the wire. */
static void *raw_reader(void *arg)
{
    struct fake *f = arg;
    f->gotlen = 0;
    char buf[4096];
    ssize_t n;
    while ((n = recv(f->fd, buf, sizeof buf, 0)) > 0 && f->gotlen + (size_t)n <= sizeof f->got) {
        memcpy(f->got + f->gotlen, buf, (size_t)n);
        f->gotlen += (size_t)n;
        if (f->gotlen >= 5 && memcmp(f->got + f->gotlen - 5, "\r\n.\r\n", 5) == 0)
            break;
    }
    fake_write(f, "240 ok\r\n", 8);
    return NULL;
}

static void test_post_wire_bytes(void **state)
{
    (void)state;
    for (size_t slice = 1; slice <= sizeof ARTICLE_IN; slice++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        nntp_conn *c;
        assert_int_equal(nn_conn_from_fd(sv[0], 2000, &c), NNTP_OK);
        struct fake f = {.fd = sv[1]};
        fake_write(&f, "340 go\r\n", 8); /* answer to POST, read after it is sent */
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, raw_reader, &f), 0);
        assert_int_equal(nntp_post_begin(c), NNTP_OK);
        size_t len = sizeof ARTICLE_IN - 1;
        for (size_t off = 0; off < len; off += slice) {
            size_t k = len - off < slice ? len - off : slice;
            assert_int_equal(nntp_post_write(c, ARTICLE_IN + off, k), NNTP_OK);
        }
        assert_int_equal(nntp_post_end(c), NNTP_OK);
        pthread_join(th, NULL);
        char want[sizeof ARTICLE_WIRE + 8];
        snprintf(want, sizeof want, "POST\r\n%s", ARTICLE_WIRE);
        assert_int_equal(f.gotlen, strlen(want));
        assert_memory_equal(f.got, want, f.gotlen);
        c->dead = 1;
        nntp_close(c);
        close(sv[1]);
    }
}

static void test_post_refusals(void **state)
{
    (void)state;
    const char *script[] = {
        "340 ok\r\n", "441 435 Duplicate\r\n",
        "340 ok\r\n", "441 Article is bigger than local limit of 268435456 bytes\r\n",
        "340 ok\r\n", "441 400 Server throttled\r\n",
        "440 Posting not allowed\r\n",
        "340 ok\r\n", CLOSE_NOW, NULL,
    };
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    fake_go(f);
    static const int want[] = {NNTP_EDUP, NNTP_EPERM, NNTP_ETEMP};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(nntp_post_begin(c), NNTP_OK);
        assert_int_equal(nntp_post_write(c, "a: b\n\nx\n", 8), NNTP_OK);
        assert_int_equal(nntp_post_end(c), want[i]);
    }
    assert_string_equal(nntp_last_response(c), "441 400 Server throttled");
    assert_int_equal(nntp_post_begin(c), NNTP_EPERM);
    /* server gone in the middle of an article */
    assert_int_equal(nntp_post_begin(c), NNTP_OK);
    int st = NNTP_OK;
    static char blob[1 << 16];
    memset(blob, 'A', sizeof blob);
    for (int i = 0; i < 200 && st == NNTP_OK; i++)
        st = nntp_post_write(c, blob, sizeof blob);
    if (st == NNTP_OK)
        st = nntp_post_end(c);
    assert_int_equal(st, NNTP_ETEMP);
    assert_int_equal(nntp_stat(c, "1"), NNTP_ETEMP); /* the link is marked dead */
    fake_end(f, c);
}

/* ---- multi-line ---- */

struct lines {
    char buf[8][64];
    size_t n, calls;
    size_t stop_after;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    l->calls++;
    assert_int_equal(strlen(line), len); /* NUL-terminated, no CRLF */
    if (l->n < 8)
        snprintf(l->buf[l->n++], sizeof l->buf[0], "%s", line);
    return l->stop_after && l->calls >= l->stop_after;
}

static void multiline_unstuff(int slow)
{
    const char *script[] = {
        "220 1 <a@b> article\r\nH: v\r\n\r\n..\r\n...x\r\n..y.\r\nplain\r\nlf only\n.\r\n",
        NULL,
    };
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    f->slow = slow;
    fake_go(f);
    struct lines l = {0};
    assert_int_equal(nntp_fetch(c, "ARTICLE", "<a@b>", collect, &l), NNTP_OK);
    assert_int_equal(l.n, 7);
    assert_string_equal(l.buf[0], "H: v");
    assert_string_equal(l.buf[1], "");
    assert_string_equal(l.buf[2], ".");
    assert_string_equal(l.buf[3], "..x");
    assert_string_equal(l.buf[4], ".y.");
    assert_string_equal(l.buf[5], "plain");
    assert_string_equal(l.buf[6], "lf only");
    assert_memory_equal(f->got, "ARTICLE <a@b>\r\n", 15);
    fake_end(f, c);
}

static void test_multiline_unstuff(void **state)
{
    (void)state;
    multiline_unstuff(0);
}

static void test_multiline_unstuff_bytewise(void **state)
{
    (void)state;
    multiline_unstuff(1);
}

static void test_stop_drains(void **state)
{
    (void)state;
    const char *script[] = {
        "224 overview\r\n1\ta\r\n2\tb\r\n3\tc\r\n.\r\n",
        "223 0 <a@b> status\r\n",
        "215 list\r\npostern.a 2 1 y\r\n.\r\n",
        "211 2 1 2 postern.a\r\n1\r\n2\r\n.\r\n",
        NULL,
    };
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    fake_go(f);
    struct lines l = {.stop_after = 1};
    assert_int_equal(nntp_over(c, "1-", collect, &l), NNTP_OK);
    assert_int_equal(l.calls, 1);
    assert_string_equal(l.buf[0], "1\ta");
    /* the rest was drained: the next reply is read in step */
    assert_int_equal(nntp_stat(c, "<a@b>"), NNTP_OK);
    assert_string_equal(nntp_last_response(c), "223 0 <a@b> status");
    struct lines l2 = {0};
    assert_int_equal(nntp_list_active(c, "postern.*", collect, &l2), NNTP_OK);
    assert_int_equal(l2.n, 1);
    assert_string_equal(l2.buf[0], "postern.a 2 1 y");
    struct lines l3 = {0};
    assert_int_equal(nntp_listgroup(c, "postern.a", collect, &l3), NNTP_OK);
    assert_int_equal(l3.n, 2);
    assert_string_equal(l3.buf[1], "2");
    assert_non_null(strstr(f->got, "OVER 1-\r\nSTAT <a@b>\r\nLIST ACTIVE postern.*\r\nLISTGROUP postern.a\r\n"));
    fake_end(f, c);
}

/* ---- line bounds and broken servers ---- */

static char *long_reply(const char *prefix, size_t linelen, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + linelen + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    memset(s + pl, 'x', linelen);
    memcpy(s + pl + linelen, suffix, sl + 1);
    return s;
}

static void test_line_limit(void **state)
{
    (void)state;
    /* exactly NNTP_MAX_LINE is fine, one more is not NNTP */
    char *ok = long_reply("222 body\r\n", NNTP_MAX_LINE, "\r\n.\r\n");
    char *bad = long_reply("222 body\r\n", NNTP_MAX_LINE + 1, "\r\n.\r\n");
    const char *script[] = {ok, bad, NULL};
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    fake_go(f);
    struct lines l = {0};
    assert_int_equal(nntp_fetch(c, "BODY", "1", collect, &l), NNTP_OK);
    assert_int_equal(l.calls, 1);
    assert_int_equal(nntp_fetch(c, "BODY", "2", collect, &l), NNTP_EPROTO);
    assert_int_equal(l.calls, 1);
    assert_int_equal(nntp_stat(c, "1"), NNTP_ETEMP); /* framing is lost: the link is dead */
    fake_end(f, c);
    free(ok);
    free(bad);

    /* an endless line without LF is refused without buffering it */
    char *endless = long_reply("", 3 * NNTP_MAX_LINE, "");
    const char *script2[] = {endless, NULL};
    f = fake_start(NULL, script2, &c);
    fake_go(f);
    int code;
    assert_int_equal(nntp_command(c, "HELP", &code), NNTP_EPROTO);
    fake_end(f, c);
    free(endless);
}

static void test_broken_servers(void **state)
{
    (void)state;
    const char *script[] = {"hello there\r\n", NULL};
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    fake_go(f);
    assert_int_equal(nntp_stat(c, "1"), NNTP_EPROTO);
    assert_string_equal(nntp_last_response(c), "hello there");
    fake_end(f, c);

    /* EOF in the middle of a multi-line reply */
    const char *script2[] = {"220 1 <a@b>\r\nline\r\n", CLOSE_NOW, NULL};
    f = fake_start(NULL, script2, &c);
    fake_go(f);
    assert_int_equal(nntp_fetch(c, "ARTICLE", "1", NULL, NULL), NNTP_ETEMP);
    fake_end(f, c);

    /* silence: bounded by the timeout */
    const char *script3[] = {SILENCE, NULL};
    f = fake_start(NULL, script3, &c);
    c->timeout_ms = 200;
    fake_go(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(nntp_group(c, "x", NULL), NNTP_ETEMP);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 190 && ms < 2000);
    fake_end(f, c);
}

static void test_commands_and_args(void **state)
{
    (void)state;
    const char *script[] = {
        "211 1234 3 1236 postern.test\r\n",
        "411 No such group postern.nosuch\r\n",
        "430 No such article\r\n",
        "423 No such article number 9\r\n",
        "111 20260101000000\r\n",
        "500 What?\r\n",
        NULL,
    };
    nntp_conn *c;
    struct fake *f = fake_start(NULL, script, &c);
    fake_go(f);
    nntp_group_info gi = {0};
    assert_int_equal(nntp_group(c, "postern.test", &gi), NNTP_OK);
    assert_int_equal(gi.count, 1234);
    assert_int_equal(gi.low, 3);
    assert_int_equal(gi.high, 1236);
    assert_int_equal(nntp_group(c, "postern.nosuch", &gi), NNTP_ENOENT);
    assert_int_equal(nntp_stat(c, "<no@such>"), NNTP_ENOENT);
    assert_int_equal(nntp_fetch(c, "HEAD", "9", NULL, NULL), NNTP_ENOENT);
    int code = 0;
    assert_int_equal(nntp_command(c, "DATE", &code), NNTP_OK);
    assert_int_equal(code, 111);
    assert_int_equal(nntp_command(c, "FOO", &code), NNTP_EPERM);
    assert_int_equal(code, 500);
    /* nothing of these reaches the wire */
    assert_int_equal(nntp_command(c, "STAT 1\r\nQUIT", &code), NNTP_EINVAL);
    assert_int_equal(nntp_stat(c, "1 2"), NNTP_EINVAL);
    assert_int_equal(nntp_fetch(c, "XOVER", "1", NULL, NULL), NNTP_EINVAL);
    assert_int_equal(nntp_group(c, "", NULL), NNTP_EINVAL);
    assert_int_equal(nntp_post_write(c, "x", 1), NNTP_EINVAL);
    assert_int_equal(nntp_post_end(c), NNTP_EINVAL);
    fake_end(f, c);
}

/* ---- nntp_connect over loopback TCP ---- */

struct listener {
    int lfd;
    char port[16];
    struct fake f;
};

static void *accept_one(void *arg)
{
    struct listener *l = arg;
    l->f.fd = accept(l->lfd, NULL, NULL);
    if (l->f.fd >= 0) {
        fake_main(&l->f);
        close(l->f.fd);
    }
    return NULL;
}

static void listen_lo(struct listener *l)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    l->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l->lfd >= 0);
    assert_int_equal(bind(l->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l->lfd, 1), 0);
    assert_int_equal(getsockname(l->lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(l->port, sizeof l->port, "%u", ntohs(sa.sin_port));
}

static int connect_with(const char *greeting, const char *const *script, const nntp_params *tmpl,
                        struct listener *l, nntp_conn **c, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    listen_lo(l);
    l->f.greeting = greeting;
    l->f.script = script;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, accept_one, l), 0);
    nntp_params p = *tmpl;
    p.host = "127.0.0.1";
    p.port = l->port;
    int st = nntp_connect(&p, c, err, errlen);
    if (st == NNTP_OK)
        nntp_close(*c);
    pthread_join(th, NULL);
    close(l->lfd);
    return st;
}

static void test_connect(void **state)
{
    (void)state;
    static struct listener l;
    nntp_conn *c;
    char err[256];
    const nntp_params auth = {.user = "gateway", .password = "s3cret pw", .timeout_ms = 2000};

    const char *ok[] = {"200 reader\r\n", "381 more\r\n", "281 Authentication succeeded\r\n",
                        "205 bye\r\n", NULL};
    assert_int_equal(connect_with("200 hi\r\n", ok, &auth, &l, &c, err, sizeof err), NNTP_OK);
    assert_non_null(strstr(l.f.got, "MODE READER\r\nAUTHINFO USER gateway\r\n"
                                    "AUTHINFO PASS s3cret pw\r\nQUIT\r\n"));

    const char *bad[] = {"200 reader\r\n", "381 more\r\n", "481 Authentication failed\r\n", NULL};
    assert_int_equal(connect_with("200 hi\r\n", bad, &auth, &l, &c, err, sizeof err), NNTP_EAUTH);
    assert_non_null(strstr(err, "481 Authentication failed"));
    assert_null(strstr(err, "s3cret"));

    const char *none[] = {NULL};
    assert_int_equal(connect_with("400 too busy\r\n", none, &auth, &l, &c, err, sizeof err),
                     NNTP_ETEMP);
    assert_int_equal(connect_with("502 go away\r\n", none, &auth, &l, &c, err, sizeof err),
                     NNTP_EPERM);
    assert_int_equal(connect_with("SSH-2.0-OpenSSH\r\n", none, &auth, &l, &c, err, sizeof err),
                     NNTP_EPROTO);

    /* STARTTLS refused: never fall back to plaintext */
    const nntp_params tls = {.tls = NNTP_TLS_STARTTLS, .timeout_ms = 2000};
    const char *notls[] = {"580 Can not initiate TLS negotiation\r\n", NULL};
    assert_int_equal(connect_with("200 hi\r\n", notls, &tls, &l, &c, err, sizeof err), NNTP_ETLS);
    /* plaintext pipelined after 382 is an injection attempt */
    const char *inject[] = {"382 Begin TLS negotiation now\r\n281 injected\r\n", NULL};
    assert_int_equal(connect_with("200 hi\r\n", inject, &tls, &l, &c, err, sizeof err), NNTP_EPROTO);
    /* a peer that does not speak TLS */
    const char *notreally[] = {"382 Begin TLS negotiation now\r\n", NULL};
    int st = connect_with("200 hi\r\n", notreally, &tls, &l, &c, err, sizeof err);
    assert_true(st == NNTP_ETLS || st == NNTP_ETEMP);

    /* nothing listening */
    listen_lo(&l);
    close(l.lfd);
    nntp_params p = auth;
    p.host = "127.0.0.1";
    p.port = l.port;
    assert_int_equal(nntp_connect(&p, &c, err, sizeof err), NNTP_ETEMP);
    assert_null(c);
    p.port = "no-such-service-name";
    assert_int_equal(nntp_connect(&p, &c, err, sizeof err), NNTP_EINVAL);
    assert_int_equal(nntp_connect(NULL, &c, err, sizeof err), NNTP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_post_slices),
        cmocka_unit_test(test_post_wire_bytes),
        cmocka_unit_test(test_post_refusals),
        cmocka_unit_test(test_multiline_unstuff),
        cmocka_unit_test(test_multiline_unstuff_bytewise),
        cmocka_unit_test(test_stop_drains),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_broken_servers),
        cmocka_unit_test(test_commands_and_args),
        cmocka_unit_test(test_connect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
