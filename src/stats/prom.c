/* prom.c -- a growable text buffer and histograms in the Prometheus text format 0.0.4. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "stats/stats_internal.h"

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

/* Bucket bounds: the usual latency ladder from 10 µs to 10 s. The label text is spelled out so
 * it reads as the decimal people expect; the ns value is what the histogram is asked about. */
static const struct {
    uint64_t ns;
    const char *le;
} bounds[] = {
    {10000ull, "0.00001"},  {25000ull, "0.000025"}, {50000ull, "0.00005"},  {100000ull, "0.0001"},
    {250000ull, "0.00025"}, {500000ull, "0.0005"},  {1000000ull, "0.001"},  {2500000ull, "0.0025"},
    {5000000ull, "0.005"},  {10000000ull, "0.01"},  {25000000ull, "0.025"}, {50000000ull, "0.05"},
    {100000000ull, "0.1"},  {250000000ull, "0.25"}, {500000000ull, "0.5"},  {1000000000ull, "1"},
    {2500000000ull, "2.5"}, {5000000000ull, "5"},   {10000000000ull, "10"},
};

/* The shortest %g form that reads back as the same double. */
static void format_double(double v, char *out, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void help_escaped(zlb_buf_t *b, const char *s)
{
    /* HELP text escapes only backslash and newline in this format version. */
    for (; *s; s++) {
        if (*s == '\\')
            zlb_buf_printf(b, "\\\\");
        else if (*s == '\n')
            zlb_buf_printf(b, "\\n");
        else
            zlb_buf_printf(b, "%c", *s);
    }
}

void zlb_prom_histogram(zlb_buf_t *b, const char *name, const char *help, const char *labels,
                        const zlb_hist_t *h)
{
    const char *sep = labels[0] ? "," : "";
    char sum[32];

    zlb_buf_printf(b, "# HELP %s ", name);
    help_escaped(b, help);
    zlb_buf_printf(b, "\n# TYPE %s histogram\n", name);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bounds); i++)
        zlb_buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, bounds[i].le,
                       zlb_hist_count_le(h, bounds[i].ns));
    zlb_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, h->total);
    format_double((double)((long double)h->sum / 1e9L), sum, sizeof(sum));
    if (labels[0]) {
        zlb_buf_printf(b, "%s_sum{%s} %s\n", name, labels, sum);
        zlb_buf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, h->total);
    } else {
        zlb_buf_printf(b, "%s_sum %s\n", name, sum);
        zlb_buf_printf(b, "%s_count %" PRIu64 "\n", name, h->total);
    }
}
