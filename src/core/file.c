/* file.c -- whole files written atomically: a reader sees the old file or the new, never half. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

int zlb_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    /* mkostemp: a unique name even for two threads writing the same path; fchmod: the mode
     * asked for, whatever the umask (a key file must be 0600, a report readable). */
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (fchmod(fd, (mode_t)mode) != 0)
        err = -errno;
    const char *p = data;
    size_t off = 0;
    while (!err && off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (!err && fsync(fd) != 0)
        err = -errno;
    if (close(fd) != 0 && !err)
        err = -errno;
    if (!err && rename(tmp, path) != 0)
        err = -errno;
    if (err) {
        unlink(tmp);
        return err;
    }
    /* The rename is durable only once the folder holding it is synced. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int zlb_remove_stale_temps(const char *path, double before_wall_s,
                           void (*removed)(const char *name, void *arg), void *arg)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    const char *base = path;
    char *slash = strrchr(dir, '/');
    if (slash) {
        base = path + (slash - dir) + 1;
        *(slash == dir ? slash + 1 : slash) = '\0';
    } else {
        snprintf(dir, sizeof(dir), ".");
    }
    size_t blen = strlen(base);
    if (blen == 0)
        return 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int err = -errno;
        close(dfd);
        return err;
    }
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strlen(n) != blen + 7 || strncmp(n, base, blen) != 0 || n[blen] != '.')
            continue;
        bool ours = true;
        for (size_t i = blen + 1; i < blen + 7; i++)
            ours = ours && isalnum((unsigned char)n[i]);
        struct stat st;
        /* Older than this run only: another process writing the same report right now keeps
         * its temporary. */
        if (!ours || fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9 >= before_wall_s)
            continue;
        if (unlinkat(dfd, n, 0) == 0) {
            count++;
            if (removed)
                removed(n, arg);
        }
    }
    closedir(d);
    return count;
}

int zlb_fd_table_reserve(unsigned nfds)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -errno;
    }
    if (rl.rlim_cur != RLIM_INFINITY && nfds > rl.rlim_cur)
        nfds = (unsigned)rl.rlim_cur;
    if (nfds < 2)
        return 0;
    /* The kernel doubles a process's fd table as fds are opened, and in a multi-threaded
     * process each growth waits for an RCU grace period with the table lock held: every thread
     * opening a socket stalls 10-20 ms (seen as schedule lag at 500, 1000, 2000 connections).
     * Growing the table once here, before any thread exists, costs nothing later. */
    int fd = dup2(STDERR_FILENO, (int)nfds - 1);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}
