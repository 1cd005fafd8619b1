/* buf.c -- a growable text buffer for documents built on cold paths (/metrics, histogram JSON). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define BUF_INITIAL 256

void zlb_buf_init(zlb_buf_t *b)
{
    /* Allocated up front so data is a valid string even when nothing is ever printed. */
    b->data = zlb_xmalloc(BUF_INITIAL);
    b->data[0] = '\0';
    b->len = 0;
    b->cap = BUF_INITIAL;
}

void zlb_buf_dispose(zlb_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static void reserve(zlb_buf_t *b, size_t need)
{
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : BUF_INITIAL;
    while (cap < need)
        cap *= 2;
    b->data = zlb_xrealloc(b->data, cap);
    b->cap = cap;
}

void zlb_buf_printf(zlb_buf_t *b, const char *fmt, ...)
{
    va_list ap, again;
    /* A zeroed, never-initialised buffer is accepted too. */
    reserve(b, b->len + 1);
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        zlb_fatal("vsnprintf failed for \"%s\"", fmt);
    if ((size_t)n >= b->cap - b->len) {
        reserve(b, b->len + (size_t)n + 1);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
}

void zlb_format_double(double v, char *out, size_t len)
{
    /* %.17g always reads back, but prints 6.4012960760000004 for 6.401296076: the shortest
     * precision that reads back is what a person (and a diff) expects. */
    /* Range first: converting NaN or a huge value to long long is undefined. */
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
        snprintf(out, len, "%lld", (long long)v); /* 200, not 2e+02 */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}
