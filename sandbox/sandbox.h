/* sandbox: what a process of `postern serve` may still do after it dropped privileges
 * (docs/design.md, "Processes"; issue 14, item 12). Each call sets no_new_privs (no setuid
 * binary, no file capability can give the process more than it has) and installs a seccomp
 * filter that answers EPERM to the system calls the role never needs, so a compromised
 * process cannot use them:
 *   - every role: execve/execveat, ptrace and reading or writing other processes' memory,
 *     mounting, loading kernel modules or a new kernel, changing the system's clock,
 *     swap, reboot, keyrings, BPF, perf events, userfaultfd, personality;
 *   - the vault also: socket, socketpair, connect, bind, listen, accept, accept4 (it talks
 *     only over the socket it was born with), and opening files (it reads none after start).
 * A deny list (not an allow list): the libraries underneath (glibc, OpenSSL, libsodium,
 * libevent) change which calls they make between versions, and a call they need and an
 * allow list forgot would kill the daemon in production. */
#ifndef POSTERN_SANDBOX_H
#define POSTERN_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

enum ps_sandbox_role {
    PS_SANDBOX_NETWORK, /* sessions, NNTP, state files: everything but the list above */
    PS_SANDBOX_VAULT,   /* keys only: no sockets, no files */
};

/* 0, or -1 with err (e.g. the kernel has no seccomp). Irreversible; call after the drop. */
int ps_sandbox_enter(enum ps_sandbox_role role, char *err, size_t errlen);

/* A process's own file system view (view.c): a private mount namespace whose root holds only
 * these paths, at their usual places (missing ones are skipped; a symlink such as /lib ->
 * usr/lib is copied), read-only unless writable. Needs root (CAP_SYS_ADMIN): call it before
 * dropping privileges and before ps_sandbox_enter, which denies mount. 0, or -1 with err
 * (a kernel or container that forbids unshare, a unit without the capability): the process
 * then still sees the host's file system, and the caller says so. */
typedef struct ps_view_path {
    const char *path;
    bool writable;
} ps_view_path;
int ps_sandbox_view(const ps_view_path *paths, size_t n, char *err, size_t errlen);

#endif
