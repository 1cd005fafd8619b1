/* fatal.c -- fatal errors with file:line, and allocators that never return NULL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* Formats into a stack buffer and writes with one write(2): fatal runs on broken invariants,
 * possibly with the heap corrupted, so it must not allocate or go through stdio buffers. */
_Noreturn void zlb_fatal_at(const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "zlbench: fatal: %s:%d: ", file, line);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += ZLB_MIN(m, (int)(sizeof(buf) - (size_t)n - 2));
    buf[n++] = '\n';
    ssize_t rc;
    do {
        rc = write(STDERR_FILENO, buf, (size_t)n);
    } while (rc < 0 && errno == EINTR);
    abort();
}

/* malloc(0) may legally return NULL, which would read as an allocation failure. */
void *zlb_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        zlb_fatal("out of memory allocating %zu bytes", size);
    return p;
}

void *zlb_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        zlb_fatal("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *zlb_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        zlb_fatal("out of memory reallocating to %zu bytes", size);
    return q;
}

char *zlb_xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = zlb_xmalloc(len);
    memcpy(d, s, len);
    return d;
}
