/* token.c -- the control port's bearer token: reading it from a private file, comparing it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control_internal.h"
#include "core/core.h"

bool zlb_control_token_valid(const char *token, size_t len)
{
    if (len == 0 || len > ZLB_CONTROL_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)token[i];
        if (ch < 0x21 || ch > 0x7e)
            return false;
    }
    return true;
}

/* Walks the longer of the two strings in full and folds every difference (length included)
 * into one accumulator, so the time taken reveals neither the matching prefix nor, beyond the
 * longer length, anything about the secret. */
bool zlb_control_token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen > blen ? alen : blen;
    unsigned diff = alen != blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < alen ? (unsigned char)a[i] : 0;
        unsigned char cb = i < blen ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(ca ^ cb);
    }
    return diff == 0;
}

int zlb_control_read_token(const char *path, char **token, char *err, size_t errlen)
{
    char buf[ZLB_CONTROL_TOKEN_MAX + 1];
    size_t len = 0;
    struct stat st;
    int rc = 0;

    *token = NULL;
    /* O_NONBLOCK so that a FIFO given by mistake fails the regular-file check below instead of
     * blocking start-up in open(). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open token file %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat token file %s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "token file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = -EPERM;
        snprintf(err, errlen,
                 "token file %s must not be readable by group or others (mode %04o); chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    /* One byte past the cap tells "too long" apart from "exactly at the cap". */
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > ZLB_CONTROL_TOKEN_MAX) {
        rc = -EFBIG;
        snprintf(err, errlen, "token file %s is larger than %d bytes", path, ZLB_CONTROL_TOKEN_MAX);
        goto out;
    }
    /* Editors and `echo` leave a newline (or CRLF); it is never part of the secret. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    if (len == 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "token file %s is empty", path);
        goto out;
    }
    if (!zlb_control_token_valid(buf, len)) {
        rc = -EINVAL;
        snprintf(err, errlen,
                 "token file %s holds characters other than visible ASCII (spaces, control "
                 "characters or UTF-8 cannot travel in an Authorization header)",
                 path);
        goto out;
    }
    *token = zlb_xmalloc(len + 1);
    memcpy(*token, buf, len);
    (*token)[len] = '\0';
out:
    /* The secret should not outlive this call on the stack. */
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return rc;
}
