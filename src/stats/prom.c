/* prom.c -- histograms in the Prometheus text format 0.0.4, on a fine log-linear bucket ladder. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "stats/stats_internal.h"

/* Two-digit mantissas with every step at most 10 % of the lower bound (20 -> 22, 30 -> 33 and
 * 50 -> 55 are the widest). Round numbers, so a dashboard's le labels read as people write. */
static const uint8_t mantissa[] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28,
                                   30, 33, 36, 39, 42, 46, 50, 55, 60, 66, 72, 79, 86, 94};

/* ns as exact decimal seconds: 11000 -> "0.000011", 2500000000 -> "2.5". */
static void seconds_label(uint64_t ns, char *out, size_t len)
{
    char digits[32], frac[10];
    /* At least ten digits, so there is always a whole part before the last nine. */
    int n = snprintf(digits, sizeof(digits), "%010" PRIu64, ns);
    memcpy(frac, digits + n - 9, 9);
    size_t f = 9;
    while (f > 0 && frac[f - 1] == '0')
        f--;
    frac[f] = '\0';
    snprintf(out, len, "%.*s%s%s", n - 9, digits, f ? "." : "", frac);
}

int zlb_prom_buckets_init(zlb_prom_buckets_t *b, uint64_t min_ns, uint64_t max_ns)
{
    b->n = 0;
    if (min_ns < 10 || max_ns <= min_ns || max_ns > UINT64_MAX / 100)
        return -EINVAL;
    /* Decade d holds mantissa * 10^(d-1) ns, d >= 1. */
    uint64_t scale = 1;
    for (;;) {
        for (size_t i = 0; i < ZLB_ARRAY_LEN(mantissa); i++) {
            uint64_t v = mantissa[i] * scale;
            if (v < min_ns)
                continue;
            if (b->n == ZLB_PROM_BUCKETS_MAX) {
                b->n = 0;
                return -EINVAL;
            }
            b->ns[b->n] = v;
            seconds_label(v, b->le[b->n], sizeof(b->le[b->n]));
            b->n++;
            if (v >= max_ns)
                return 0;
        }
        scale *= 10;
    }
}

void zlb_prom_label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return;
    for (; *in; in++) {
        bool esc = *in == '\\' || *in == '"' || *in == '\n';
        if (o + (esc ? 2 : 1) >= len)
            break; /* never half an escape */
        if (esc)
            out[o++] = '\\';
        out[o++] = *in == '\n' ? 'n' : *in;
    }
    out[o] = '\0';
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
                        const zlb_hist_t *h, const zlb_prom_buckets_t *bk)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cum[ZLB_PROM_BUCKETS_MAX];
    char sum[40];

    zlb_buf_printf(b, "# HELP %s ", name);
    help_escaped(b, help);
    zlb_buf_printf(b, "\n# TYPE %s histogram\n", name);
    zlb_hist_count_le_sorted(h, bk->ns, bk->n, cum);
    for (size_t i = 0; i < bk->n; i++)
        zlb_buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, bk->le[i],
                       cum[i]);
    zlb_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, h->total);
    zlb_format_double((double)((long double)h->sum / 1e9L), sum, sizeof(sum));
    if (labels[0]) {
        zlb_buf_printf(b, "%s_sum{%s} %s\n", name, labels, sum);
        zlb_buf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, h->total);
    } else {
        zlb_buf_printf(b, "%s_sum %s\n", name, sum);
        zlb_buf_printf(b, "%s_count %" PRIu64 "\n", name, h->total);
    }
}
