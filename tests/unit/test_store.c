/* Unit tests for store's connection policy (store/pool.c): which failures are asked again on a
 * new connection, and which connections are not kept, against a scripted fake news server on
 * loopback that serves one script per accepted connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store/store.h"

#define HANG_UP "\001close" /* script entry: close the connection now */
#define MAX_CONNS 4

/* Each script: the greeting, then one reply per command line. QUIT is answered by itself. */
typedef struct fake_site {
    int lfd;
    char port[16];
    const char *const *scripts[MAX_CONNS + 1];
    int accepted;
    char got[8192]; /* every command line of every connection */
    size_t gotlen;
    pthread_t th;
} fake_site;

static size_t read_line(fake_site *f, int fd, char *line, size_t cap)
{
    size_t n = 0;
    char ch;
    while (recv(fd, &ch, 1, 0) == 1) {
        if (n + 1 < cap)
            line[n++] = ch;
        if (f->gotlen + 1 < sizeof f->got)
            f->got[f->gotlen++] = ch;
        if (ch == '\n')
            break;
    }
    line[n] = '\0';
    return n;
}

static void say(int fd, const char *s)
{
    ssize_t w = send(fd, s, strlen(s), MSG_NOSIGNAL);
    (void)w;
}

static void *serve(void *arg)
{
    fake_site *f = arg;
    for (int k = 0; k < MAX_CONNS && f->scripts[k]; k++) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            break;
        f->accepted++;
        const char *const *r = f->scripts[k];
        say(fd, *r++);
        char line[1024];
        for (;;) {
            if (*r && strcmp(*r, HANG_UP) == 0)
                break;
            if (read_line(f, fd, line, sizeof line) == 0)
                break;
            if (strncmp(line, "QUIT", 4) == 0) {
                say(fd, "205 bye\r\n");
                break;
            }
            if (!*r)
                break; /* script done: hang up on anything else */
            say(fd, *r++);
        }
        close(fd);
    }
    return NULL;
}

static pn_config cfg;

/* Serves site number idx of cfg (0 starts a new config). */
static void fake_start_at(fake_site *f, size_t idx)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(f->port, sizeof f->port, "%u", ntohs(sa.sin_port));
    if (idx == 0)
        memset(&cfg, 0, sizeof cfg);
    cfg.n_sites = idx + 1;
    pn_site *s = &cfg.sites[idx];
    snprintf(s->name, sizeof s->name, "%s", idx == 0 ? "one" : "two");
    snprintf(s->host, sizeof s->host, "127.0.0.1");
    snprintf(s->port, sizeof s->port, "%s", f->port);
    s->connect_timeout = 2;
    assert_int_equal(pthread_create(&f->th, NULL, serve, f), 0);
}

static void fake_start(fake_site *f)
{
    fake_start_at(f, 0);
}

static void fake_end(fake_site *f)
{
    shutdown(f->lfd, SHUT_RDWR); /* an unused script's accept returns */
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static int count_lines(void *arg, const char *line, size_t len)
{
    (void)line, (void)len;
    ++*(int *)arg;
    return 0;
}

/* A kept connection the server closed while idle: the verb runs again on a new one. */
static void test_retry_when_kept_dropped(void **state)
{
    (void)state;
    static const char *const first[] = {"200 hi\r\n", "200 reader\r\n", "211 3 1 3 g\r\n", HANG_UP, NULL};
    static const char *const second[] = {"200 hi\r\n", "200 reader\r\n", "211 4 1 4 g\r\n", NULL};
    static fake_site f = {.scripts = {first, second}};
    fake_start(&f);
    ps_pool *p = ps_pool_new(&cfg, 0);
    ps_group_info info;
    char err[256];
    assert_int_equal(ps_group(p, PS_ANY_SITE, "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 3);
    usleep(50 * 1000); /* let the hang-up arrive */
    assert_int_equal(ps_group(p, 0, "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 4);
    assert_int_equal(ps_pool_site(p), 0);
    ps_pool_free(p);
    fake_end(&f);
    assert_int_equal(f.accepted, 2);
}

/* nnrpd keeps the group list it started with: a group missing on a kept connection is asked
 * again on a new one; missing on a new connection is the answer (and that one is kept). */
static void test_missing_group_asked_again(void **state)
{
    (void)state;
    static const char *const first[] = {"200 hi\r\n", "200 reader\r\n", "211 3 1 3 g\r\n",
                                        "411 No such group h\r\n", NULL};
    static const char *const second[] = {"200 hi\r\n", "200 reader\r\n", "211 1 1 1 h\r\n",
                                         "411 No such group x\r\n", NULL};
    static fake_site f = {.scripts = {first, second}};
    fake_start(&f);
    ps_pool *p = ps_pool_new(&cfg, 0);
    ps_group_info info;
    char err[256];
    assert_int_equal(ps_group(p, 0, "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(ps_group(p, 0, "h", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 1);
    ps_pool_drop(p, 0);
    ps_pool_free(p);
    fake_end(&f);
    assert_int_equal(f.accepted, 2);

    static const char *const only[] = {"200 hi\r\n", "200 reader\r\n", "411 No such group x\r\n", NULL};
    static fake_site g = {.scripts = {only}};
    fake_start(&g);
    p = ps_pool_new(&cfg, 0);
    assert_int_equal(ps_group(p, 0, "x", &info, err, sizeof err), PS_NOENT);
    assert_string_equal(err, "411 No such group x");
    ps_pool_free(p);
    fake_end(&g);
    assert_int_equal(g.accepted, 1);
    assert_non_null(strstr(g.got, "GROUP x\r\nQUIT\r\n")); /* kept until the pool went */
}

/* A connection that saw a group empty would go on seeing it empty: it is not kept. */
static void test_empty_group_not_kept(void **state)
{
    (void)state;
    static const char *const first[] = {"200 hi\r\n", "200 reader\r\n", "211 0 1 0 g\r\n", NULL};
    static const char *const second[] = {"200 hi\r\n", "200 reader\r\n", "211 2 1 2 g\r\n", NULL};
    static fake_site f = {.scripts = {first, second}};
    fake_start(&f);
    ps_pool *p = ps_pool_new(&cfg, 0);
    ps_group_info info;
    char err[256];
    assert_int_equal(ps_group(p, 0, "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 0);
    assert_int_equal(ps_group(p, 0, "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 2);
    ps_pool_free(p);
    fake_end(&f);
    assert_int_equal(f.accepted, 2);
}

/* OVER on a connection without the group selected selects it first; a failure after a line
 * reached the caller is not retried (the caller would see the line twice). */
static void test_over_selects_and_no_retry_after_lines(void **state)
{
    (void)state;
    static const char *const first[] = {"200 hi\r\n", "200 reader\r\n", "211 3 1 3 g\r\n",
                                        "224 Overview\r\n1\tSubject\r\n.\r\n", "224 Overview\r\n2\tSubject\r\n",
                                        HANG_UP, NULL};
    static const char *const unused[] = {"200 hi\r\n", "200 reader\r\n", NULL};
    static fake_site f = {.scripts = {first, unused}};
    fake_start(&f);
    ps_pool *p = ps_pool_new(&cfg, 0);
    char err[256];
    int lines = 0;
    assert_int_equal(ps_over(p, 0, "g", "1-", count_lines, &lines, err, sizeof err), PS_OK);
    assert_int_equal(lines, 1);
    lines = 0;
    assert_int_equal(ps_over(p, 0, "g", "2-", count_lines, &lines, err, sizeof err), PS_TEMP);
    assert_int_equal(lines, 1);
    ps_pool_free(p);
    fake_end(&f);
    assert_int_equal(f.accepted, 1);
    assert_non_null(strstr(f.got, "GROUP g\r\nOVER 1-\r\nOVER 2-\r\n"));
}

/* A site that refuses connections: the verb's answer is the connection error, and PS_ANY_SITE
 * names every site's reason. */
static void test_unreachable(void **state)
{
    (void)state;
    static fake_site f = {.scripts = {NULL}};
    fake_start(&f);
    fake_end(&f); /* nothing listens on the port any more */
    ps_pool *p = ps_pool_new(&cfg, 0);
    char err[512];
    assert_int_equal(ps_stat(p, PS_ANY_SITE, "<a@b>", err, sizeof err), PS_TEMP);
    assert_non_null(strstr(err, "site one (127.0.0.1:"));
    assert_int_equal(ps_pool_connect(p, PS_PREFER(0), err, sizeof err), PS_TEMP);
    ps_pool_free(p);
}

/* The preferred site's kept connection fails and the site is down: the retry goes through the
 * site choice again and lands on the other site (a gateway whose INN stopped). */
static void test_retry_falls_back_to_another_site(void **state)
{
    (void)state;
    static const char *const first[] = {"200 hi\r\n", "200 reader\r\n", "211 3 1 3 g\r\n", HANG_UP, NULL};
    static const char *const other[] = {"200 hi\r\n", "200 reader\r\n", "211 5 1 5 g\r\n", NULL};
    static fake_site a = {.scripts = {first}}, b = {.scripts = {other}};
    fake_start_at(&a, 0);
    fake_start_at(&b, 1);
    ps_pool *p = ps_pool_new(&cfg, 0);
    ps_group_info info;
    char err[512];
    assert_int_equal(ps_group(p, PS_PREFER(0), "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(ps_pool_site(p), 0);
    fake_end(&a); /* site one goes away: its connection hangs up, new ones are refused */
    usleep(50 * 1000);
    assert_int_equal(ps_group(p, PS_PREFER(0), "g", &info, err, sizeof err), PS_OK);
    assert_int_equal(info.count, 5);
    assert_int_equal(ps_pool_site(p), 1);
    ps_pool_free(p);
    fake_end(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_when_kept_dropped),
        cmocka_unit_test(test_missing_group_asked_again),
        cmocka_unit_test(test_empty_group_not_kept),
        cmocka_unit_test(test_over_selects_and_no_retry_after_lines),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_retry_falls_back_to_another_site),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
