/* sandbox: in a child process (the filter cannot be taken back), each role's denied calls
 * answer EPERM and what the role needs still works. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

#include "sandbox/sandbox.h"

/* Runs fn in a child (confined first unless role < 0); its wait status. */
static int run_child(int role, int (*fn)(void))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[160];
        if (role >= 0 && ps_sandbox_enter((enum ps_sandbox_role)role, err, sizeof err) != 0) {
            fprintf(stderr, "sandbox: %s\n", err);
            _exit(100);
        }
        _exit(fn());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* fn in a child after ps_sandbox_enter(role); the child's exit code (0: all held). */
static int in_child(enum ps_sandbox_role role, int (*fn)(void))
{
    int status = run_child((int)role, fn);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int denied(int rc)
{
    return rc == -1 && errno == EPERM;
}

static int common_denials(void)
{
    char *argv[] = {"/bin/true", NULL};
    if (!denied(execve("/bin/true", argv, NULL)))
        return 1;
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        return 2;
    int p[2];
    if (pipe(p) != 0 || write(p[1], "x", 1) != 1) /* ordinary work goes on */
        return 3;
    return 0;
}

/* the vault's own denials first: unconfined, the execve of common_denials would succeed */
static int vault_checks(void)
{
    if (!denied(socket(AF_INET, SOCK_STREAM, 0)) || !denied(socket(AF_UNIX, SOCK_STREAM, 0)))
        return 10;
    int sv[2];
    if (!denied(socketpair(AF_UNIX, SOCK_STREAM, 0, sv)))
        return 11;
#ifndef __SANITIZE_ADDRESS__ /* sandbox.c keeps open for the leak check there */
    if (!denied(open("/etc/passwd", O_RDONLY)) || !denied(openat(AT_FDCWD, "/etc/passwd", O_RDONLY)))
        return 12;
#endif
    if (!denied(creat("/tmp/postern-sandbox-test", 0600)))
        return 14;
    void *m = malloc(1 << 20); /* memory still comes */
    if (!m)
        return 13;
    free(m);
    return common_denials();
}

static int network_checks(void)
{
    int rc = common_denials();
    if (rc)
        return rc;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 20;
    close(s);
    int fd = open("/etc/passwd", O_RDONLY);
    if (fd < 0)
        return 21;
    close(fd);
    return 0;
}

static void test_vault(void **unused)
{
    (void)unused;
    assert_int_equal(in_child(PS_SANDBOX_VAULT, vault_checks), 0);
}

static void test_network(void **unused)
{
    (void)unused;
    assert_int_equal(in_child(PS_SANDBOX_NETWORK, network_checks), 0);
}

/* Without the filter, the same checks fail: they can tell. */
static void test_checks_can_fail(void **unused)
{
    (void)unused;
    int status = run_child(-1, vault_checks);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

/* Under systemd's SystemCallFilter=@system-service (the units') the seccomp(2) call kills the
 * process: entering the sandbox there must get by with prctl. */
static int under_system_service_filter(void)
{
    /* raw BPF, not libseccomp, so that the library's own state is what the sandbox sets */
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_seccomp, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0)
        return 50;
    char err[160];
    if (ps_sandbox_enter(PS_SANDBOX_VAULT, err, sizeof err) != 0)
        return 51;
    return denied(socket(AF_INET, SOCK_STREAM, 0)) ? 0 : 52;
}

static void test_inside_systemd_filter(void **unused)
{
    (void)unused;
    int status = run_child(-1, under_system_service_filter);
    if (WIFSIGNALED(status))
        fail_msg("killed by signal %d (seccomp(2) called under a filter that forbids it)", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vault),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_checks_can_fail),
        cmocka_unit_test(test_inside_systemd_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
