/* sandbox: a process's own view of the file system (sandbox.h, ps_sandbox_view). A private
 * mount namespace whose root is a small read-only tmpfs holding bind mounts of the paths the
 * role needs, each at its usual absolute place, so no path in the program changes; the rest
 * of the host (/etc/postern with its secrets, /home, /var, /root) is simply not there. */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Where the new root is put together, in the private namespace only: on the host it stays an
 * empty directory (reused by every gateway: each mounts over it in its own namespace). */
#define STAGING "/run/postern-view"
#define STAGING_FALLBACK "/tmp/postern-view"
#define OLD_ROOT "/.old-root"

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

/* mkdir -p of path (absolute) below root; the last component too. */
static int make_dirs(const char *root, const char *path)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof p, "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = p + strlen(root) + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* One path into the view: a symlink is copied (/lib -> usr/lib), a directory or file is bound. */
static int add_path(const char *root, const ps_view_path *v, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(v->path, &st) != 0)
        return 0; /* not on this host (/lib64 on some architectures, /etc/gai.conf): nothing to show */
    char target[PATH_MAX];
    int n = snprintf(target, sizeof target, "%s%s", root, v->path);
    if (n < 0 || (size_t)n >= sizeof target) {
        errno = ENAMETOOLONG;
        return fail(err, errlen, "view: path", v->path);
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", v->path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        if (make_dirs(root, parent) != 0)
            return fail(err, errlen, "view: making the directories of", v->path);
    }
    if (S_ISLNK(st.st_mode)) {
        char to[PATH_MAX];
        ssize_t len = readlink(v->path, to, sizeof to - 1);
        if (len < 0)
            return fail(err, errlen, "view: readlink", v->path);
        to[len] = 0;
        if (symlink(to, target) != 0 && errno != EEXIST)
            return fail(err, errlen, "view: symlink", v->path);
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(target, 0755) != 0 && errno != EEXIST)
            return fail(err, errlen, "view: mkdir", v->path);
    } else {
        int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return fail(err, errlen, "view: a mount point for", v->path);
        close(fd);
    }
    if (mount(v->path, target, NULL, MS_BIND | MS_REC, NULL) != 0)
        return fail(err, errlen, "view: bind mount of", v->path);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (v->writable ? 0 : MS_RDONLY);
    if (S_ISCHR(st.st_mode) == 0)
        flags |= MS_NODEV;
    if (mount(NULL, target, NULL, flags, NULL) != 0)
        return fail(err, errlen, "view: remounting", v->path);
    return 0;
}

int ps_sandbox_view(const ps_view_path *paths, size_t n, char *err, size_t errlen)
{
    if (unshare(CLONE_NEWNS) != 0)
        return fail(err, errlen, "view:", "unshare(CLONE_NEWNS)");
    /* nothing mounted from here on may reach the host's namespace */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return fail(err, errlen, "view: making the mounts private:", "/");
    const char *root = STAGING;
    if (mkdir(root, 0700) != 0 && errno != EEXIST) {
        root = STAGING_FALLBACK;
        if (mkdir(root, 0700) != 0 && errno != EEXIST)
            return fail(err, errlen, "view: mkdir", root);
    }
    if (mount("postern-view", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") != 0)
        return fail(err, errlen, "view: tmpfs on", root);
    for (size_t i = 0; i < n; i++)
        if (add_path(root, &paths[i], err, errlen) != 0)
            return -1;
    char old[PATH_MAX];
    snprintf(old, sizeof old, "%s%s", root, OLD_ROOT);
    if (mkdir(old, 0700) != 0 && errno != EEXIST)
        return fail(err, errlen, "view: mkdir", old);
    if (syscall(SYS_pivot_root, root, old) != 0)
        return fail(err, errlen, "view: pivot_root to", root);
    if (chdir("/") != 0)
        return fail(err, errlen, "view: chdir", "/");
    if (umount2(OLD_ROOT, MNT_DETACH) != 0)
        return fail(err, errlen, "view: detaching the host's root", OLD_ROOT);
    rmdir(OLD_ROOT);
    /* the tmpfs itself read-only: nothing new appears beside the bound paths */
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0 &&
        mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") != 0)
        return fail(err, errlen, "view: remounting read-only", "/");
    return 0;
}
