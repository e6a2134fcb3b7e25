/* sandbox: no_new_privs and a seccomp deny list per role (sandbox.h says which calls, and why
 * a deny list). */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include <seccomp.h>

/* AddressSanitizer's leak check stops the process's threads with ptrace and reads
 * /proc/self/maps when the process exits: a sanitizer build (the test suite's) keeps those
 * two, everything else is denied as in production. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifndef SANITIZER_BUILD
#define SANITIZER_BUILD 0
#endif

/* Never needed by any process of the gateway once it runs. */
static const char *const everyone[] = {
#if !SANITIZER_BUILD
    "ptrace",
#endif
    "execve", "execveat", "process_vm_readv", "process_vm_writev", "mount", "umount2",
    "pivot_root", "chroot", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "swapon",
    "swapoff", "reboot", "add_key", "request_key", "keyctl", "bpf", "perf_event_open",
    "userfaultfd", "personality", "acct", "quotactl", "setns", "unshare", "open_by_handle_at",
    "name_to_handle_at", "lookup_dcookie", "iopl", "ioperm", "syslog", "vhangup",
};

/* The vault keeps keys and talks over the socket pair it was born with; it opens nothing. */
static const char *const vault_also[] = {
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
#if !SANITIZER_BUILD
    "open", "openat", "openat2",
#endif
    "creat", "link", "linkat", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "mkdir", "mkdirat", "truncate", "chmod", "fchmodat", "chown",
    "fchownat", "lchown",
};

static int deny(scmp_filter_ctx ctx, const char *const *names, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture (open, creat on arm64): nothing to deny */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (rc < 0) {
            snprintf(err, errlen, "seccomp rule for %s: %s", names[i], strerror(-rc));
            return -1;
        }
    }
    return 0;
}

int ps_sandbox_enter(enum ps_sandbox_role role, char *err, size_t errlen)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
        return -1;
    }
    /* API level 1: load with prctl(PR_SET_SECCOMP) and never probe with seccomp(2), which
     * systemd's SystemCallFilter=@system-service (our units) does not allow and answers by
     * killing the process; prctl is in @process. No thread exists yet, so no TSYNC needed. */
    if (seccomp_api_set(1) != 0) {
        snprintf(err, errlen, "seccomp: cannot select the prctl interface");
        return -1;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(err, errlen, "seccomp: cannot start a filter");
        return -1;
    }
    int rc = deny(ctx, everyone, sizeof everyone / sizeof *everyone, err, errlen);
    if (rc == 0 && role == PS_SANDBOX_VAULT)
        rc = deny(ctx, vault_also, sizeof vault_also / sizeof *vault_also, err, errlen);
    if (rc == 0) {
        int lrc = seccomp_load(ctx);
        if (lrc < 0) {
            snprintf(err, errlen, "seccomp: the kernel refused the filter: %s", strerror(-lrc));
            rc = -1;
        }
    }
    seccomp_release(ctx);
    return rc;
}
