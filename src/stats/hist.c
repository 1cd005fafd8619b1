/* hist.c -- HDR-style log-linear histogram: O(1) record, percentiles, exact serialisation. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "stats/stats_internal.h"

#define LATENCY_HIGHEST (1ull << 40)
#define LATENCY_SIGFIGS 3
#define HIST_JSON_VERSION 1
/* Percentiles are resolved to 1e-9 percent, so ranks are computed in integers (below). */
#define PCT_SCALE 100000000000ull

static inline size_t slot_index(unsigned sub_bits, uint64_t sub_mask, uint64_t v)
{
    /* OR-ing the mask keeps clz defined for 0 and folds every value below 2^sub_bits into
     * bucket 0 (b == 0), so the linear and the logarithmic ranges need no branch. */
    unsigned b = 64u - (unsigned)__builtin_clzll(v | sub_mask) - sub_bits;
    return ((size_t)b << (sub_bits - 1)) + (size_t)(v >> b);
}

static inline size_t slot_of(const zlb_hist_t *h, uint64_t v)
{
    return slot_index(h->sub_bits, h->sub_mask, v);
}

static unsigned slot_shift(const zlb_hist_t *h, size_t slot)
{
    size_t top = slot >> (h->sub_bits - 1);
    return top > 1 ? (unsigned)(top - 1) : 0;
}

static uint64_t slot_lowest(const zlb_hist_t *h, size_t slot)
{
    unsigned b = slot_shift(h, slot);
    return (uint64_t)(slot - ((size_t)b << (h->sub_bits - 1))) << b;
}

static uint64_t slot_highest(const zlb_hist_t *h, size_t slot)
{
    return slot_lowest(h, slot) + ((1ull << slot_shift(h, slot)) - 1);
}

int zlb_hist_create(uint64_t highest, int sigfigs, zlb_hist_t **out)
{
    *out = NULL;
    /* highest stays within int64 so that every value the histogram holds fits a JSON integer. */
    if (sigfigs < 1 || sigfigs > 5 || highest < 1 || highest > (uint64_t)INT64_MAX)
        return -EINVAL;

    uint64_t unit_range = 2;
    for (int i = 0; i < sigfigs; i++)
        unit_range *= 10;
    unsigned sub_bits = 64u - (unsigned)__builtin_clzll(unit_range - 1);
    uint64_t sub_mask = (1ull << sub_bits) - 1;
    size_t len = slot_index(sub_bits, sub_mask, highest) + 1;

    /* calloc of a large block maps fresh zero pages: slots never written are never faulted. */
    zlb_hist_t *h = calloc(1, sizeof(*h) + len * sizeof(h->counts[0]));
    if (!h)
        return -ENOMEM;
    h->highest = highest;
    h->sigfigs = sigfigs;
    h->sub_bits = sub_bits;
    h->sub_mask = sub_mask;
    h->len = len;
    h->min = UINT64_MAX;
    *out = h;
    return 0;
}

zlb_hist_t *zlb_hist_create_latency(void)
{
    zlb_hist_t *h;
    if (zlb_hist_create(LATENCY_HIGHEST, LATENCY_SIGFIGS, &h) != 0)
        zlb_fatal("out of memory for a latency histogram");
    return h;
}

void zlb_hist_destroy(zlb_hist_t *h)
{
    free(h);
}

static inline bool record(zlb_hist_t *h, uint64_t v, uint64_t n)
{
    bool in_range = true;
    if (ZLB_UNLIKELY(v > h->highest)) {
        v = h->highest;
        h->clamped += n;
        in_range = false;
    }
    h->counts[slot_of(h, v)] += n;
    h->total += n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->sum += (zlb_u128)v * n;
    h->sumsq += (zlb_u128)v * v * n;
    return in_range;
}

bool zlb_hist_record(zlb_hist_t *h, uint64_t value)
{
    return record(h, value, 1);
}

bool zlb_hist_record_n(zlb_hist_t *h, uint64_t value, uint64_t count)
{
    /* A zero count must not move min/max, which bound the slots that reset and add visit. */
    if (count == 0)
        return value <= h->highest;
    return record(h, value, count);
}

void zlb_hist_reset(zlb_hist_t *h)
{
    if (h->total) {
        size_t lo = slot_of(h, h->min), hi = slot_of(h, h->max);
        memset(&h->counts[lo], 0, (hi - lo + 1) * sizeof(h->counts[0]));
    }
    h->total = 0;
    h->clamped = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
    h->sumsq = 0;
}

static bool same_layout(const zlb_hist_t *a, const zlb_hist_t *b)
{
    return a->highest == b->highest && a->sigfigs == b->sigfigs;
}

int zlb_hist_add(zlb_hist_t *dst, const zlb_hist_t *src)
{
    if (!same_layout(dst, src))
        return -EINVAL;
    if (src->total == 0)
        return 0;
    size_t lo = slot_of(src, src->min), hi = slot_of(src, src->max);
    for (size_t i = lo; i <= hi; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->min = ZLB_MIN(dst->min, src->min);
    dst->max = ZLB_MAX(dst->max, src->max);
    dst->sum += src->sum;
    dst->sumsq += src->sumsq;
    return 0;
}

/* Ranges and sums subtract exactly. min/max stay dst's unless the remaining counts prove them
 * outside the difference: they are then narrowed to the first and last occupied slot, which
 * keeps every occupied slot between slot_of(min) and slot_of(max), as the walks and from_json
 * expect. */
int zlb_hist_sub(zlb_hist_t *dst, const zlb_hist_t *src)
{
    if (!same_layout(dst, src))
        return -EINVAL;
    if (src->total == 0)
        return 0;
    if (src->total > dst->total || src->clamped > dst->clamped || src->sum > dst->sum ||
        src->sumsq > dst->sumsq || src->min < dst->min || src->max > dst->max)
        return -EINVAL;
    size_t lo = slot_of(src, src->min), hi = slot_of(src, src->max);
    /* Checked before anything changes, so a refused subtraction leaves dst intact. */
    for (size_t i = lo; i <= hi; i++)
        if (src->counts[i] > dst->counts[i])
            return -EINVAL;
    for (size_t i = lo; i <= hi; i++)
        dst->counts[i] -= src->counts[i];
    dst->total -= src->total;
    dst->clamped -= src->clamped;
    dst->sum -= src->sum;
    dst->sumsq -= src->sumsq;
    if (dst->total == 0) {
        zlb_hist_reset(dst);
        return 0;
    }
    size_t first = slot_of(dst, dst->min), last = slot_of(dst, dst->max);
    while (dst->counts[first] == 0)
        first++;
    while (dst->counts[last] == 0)
        last--;
    dst->min = ZLB_MAX(dst->min, slot_lowest(dst, first));
    dst->max = ZLB_MIN(dst->max, slot_highest(dst, last));
    return 0;
}

int zlb_hist_copy(zlb_hist_t *dst, const zlb_hist_t *src)
{
    if (dst == src)
        return 0;
    if (!same_layout(dst, src))
        return -EINVAL;
    zlb_hist_reset(dst);
    return zlb_hist_add(dst, src);
}

uint64_t zlb_hist_count(const zlb_hist_t *h)
{
    return h->total;
}

uint64_t zlb_hist_clamped(const zlb_hist_t *h)
{
    return h->clamped;
}

uint64_t zlb_hist_min(const zlb_hist_t *h)
{
    return h->total ? h->min : 0;
}

uint64_t zlb_hist_max(const zlb_hist_t *h)
{
    return h->max;
}

double zlb_hist_mean(const zlb_hist_t *h)
{
    if (h->total == 0)
        return 0.0;
    return (double)((long double)h->sum / (long double)h->total);
}

/* Population variance from the exact sums. n * sumsq - sum^2 would overflow 128 bits at
 * realistic sizes, and sumsq / n - mean^2 in floating point leaves cancellation noise (a
 * constant series would show a stddev of a fraction of a ns). With sum = q n + r,
 * n * variance = (sumsq - n q^2 - 2 q r) - r^2 / n, where every term fits and the first is an
 * exact integer, so the only rounding happens after the cancellation. False when the sums are
 * inconsistent (only possible through corrupted input). */
static bool variance(const zlb_hist_t *h, long double *out)
{
    uint64_t n = h->total;
    *out = 0.0L;
    if (n == 0)
        return h->sum == 0 && h->sumsq == 0;
    zlb_u128 q = h->sum / n, r = h->sum % n, nq2, base;
    /* q <= max <= INT64_MAX in a consistent histogram, which bounds q^2 and 2 q r below 2^128. */
    if (q > INT64_MAX || __builtin_mul_overflow(q * q, (zlb_u128)n, &nq2) ||
        __builtin_add_overflow(nq2, 2 * q * r, &base) || base > h->sumsq)
        return false;
    zlb_u128 d = h->sumsq - base, rr = r * r, t = rr / n, f = rr % n;
    /* n * variance = (d - t) - f / n with 0 <= f < n: negative exactly when d - t < 1 and f > 0. */
    if (d < t || (d == t && f > 0))
        return false;
    long double v = ((long double)(d - t) - (long double)f / (long double)n) / (long double)n;
    *out = v > 0.0L ? v : 0.0L;
    return true;
}

double zlb_hist_stddev(const zlb_hist_t *h)
{
    long double v;
    variance(h, &v);
    return (double)sqrtl(v);
}

static uint64_t clamp_to_seen(const zlb_hist_t *h, uint64_t v)
{
    return ZLB_MIN(ZLB_MAX(v, h->min), h->max);
}

uint64_t zlb_hist_percentile(const zlb_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (!(p > 0.0)) /* NaN too */
        return h->min;
    if (p >= 100.0)
        return h->max;
    /* The rank is ceil(p / 100 * total), computed exactly: in floating point, 50% of 10 can
     * come out as 5.000000000000001 and pick the 6th value. */
    zlb_u128 scaled = (zlb_u128)(uint64_t)llround(p * 1e9) * h->total;
    uint64_t rank = (uint64_t)((scaled + PCT_SCALE - 1) / PCT_SCALE);
    if (rank == 0)
        rank = 1;
    uint64_t cum = 0;
    size_t lo = slot_of(h, h->min), hi = slot_of(h, h->max);
    for (size_t i = lo; i <= hi; i++) {
        cum += h->counts[i];
        if (cum >= rank)
            return clamp_to_seen(h, slot_highest(h, i));
    }
    return h->max;
}

uint64_t zlb_hist_lowest_equivalent(const zlb_hist_t *h, uint64_t v)
{
    return slot_lowest(h, slot_of(h, ZLB_MIN(v, h->highest)));
}

uint64_t zlb_hist_highest_equivalent(const zlb_hist_t *h, uint64_t v)
{
    return slot_highest(h, slot_of(h, ZLB_MIN(v, h->highest)));
}

/* The number of recorded values known to be <= v: the values of every slot whose highest
 * equivalent value is <= v, or all of them once v >= max. It never over-counts, so cumulative
 * Prometheus buckets stay honest; it under-counts by at most the values sharing v's own slot
 * (relative width 10^-sigfigs). Non-decreasing in v, and == count for v >= max (so for
 * v >= highest). */
uint64_t zlb_hist_count_le(const zlb_hist_t *h, uint64_t v)
{
    if (h->total == 0 || v < h->min)
        return 0;
    if (v >= h->max)
        return h->total;
    size_t s = slot_of(h, v);
    size_t end = slot_highest(h, s) == v ? s + 1 : s;
    uint64_t n = 0;
    for (size_t i = slot_of(h, h->min); i < end; i++)
        n += h->counts[i];
    return n;
}

void zlb_hist_count_le_sorted(const zlb_hist_t *h, const uint64_t *v, size_t n, uint64_t *out)
{
    uint64_t cum = 0;
    size_t s = h->total ? slot_of(h, h->min) : 0;
    for (size_t i = 0; i < n; i++) {
        if (h->total == 0 || v[i] < h->min) {
            out[i] = 0;
        } else if (v[i] >= h->max) {
            out[i] = h->total;
        } else {
            /* Same rule as zlb_hist_count_le: the slot holding v counts only when v is its top. */
            size_t vs = slot_of(h, v[i]);
            size_t end = slot_highest(h, vs) == v[i] ? vs + 1 : vs;
            while (s < end)
                cum += h->counts[s++];
            out[i] = cum;
        }
    }
}

/* ---- serialisation ------------------------------------------------------------------------ */

/* "counts" is a run-length encoding of the slots in order, as comma-separated tokens:
 *   "+k"   k >= 1 empty slots
 *   "n"    one slot holding n >= 1
 *   "n*r"  r >= 2 consecutive slots each holding n >= 1
 * Slots after the last token are empty, so an empty histogram is "" and a sparse one costs a
 * few bytes per occupied slot. The decoder also accepts "n*1" and adjacent "+k" tokens. */
static void encode_counts(const zlb_hist_t *h, zlb_buf_t *b)
{
    if (h->total == 0)
        return;
    size_t lo = slot_of(h, h->min), hi = slot_of(h, h->max);
    const char *sep = "";
    if (lo > 0) {
        zlb_buf_printf(b, "+%zu", lo);
        sep = ",";
    }
    for (size_t i = lo; i <= hi;) {
        uint64_t n = h->counts[i];
        size_t run = 1;
        while (i + run <= hi && h->counts[i + run] == n)
            run++;
        if (n == 0)
            zlb_buf_printf(b, "%s+%zu", sep, run);
        else if (run == 1)
            zlb_buf_printf(b, "%s%" PRIu64, sep, n);
        else
            zlb_buf_printf(b, "%s%" PRIu64 "*%zu", sep, n, run);
        sep = ",";
        i += run;
    }
}

static void u128_format(zlb_u128 v, char out[40])
{
    char rev[40];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
}

json_t *zlb_hist_to_json(const zlb_hist_t *h)
{
    char sum[40], sumsq[40];
    zlb_buf_t counts;
    json_t *o = json_object();

    u128_format(h->sum, sum);
    u128_format(h->sumsq, sumsq);
    zlb_buf_init(&counts);
    encode_counts(h, &counts);

    zlb_stats_put(o, "v", json_integer(HIST_JSON_VERSION));
    zlb_stats_put(o, "highest", json_integer((json_int_t)h->highest));
    zlb_stats_put(o, "sigfigs", json_integer(h->sigfigs));
    zlb_stats_put(o, "count", json_integer((json_int_t)h->total));
    zlb_stats_put(o, "min", json_integer((json_int_t)zlb_hist_min(h)));
    zlb_stats_put(o, "max", json_integer((json_int_t)h->max));
    /* 128-bit sums do not fit a JSON integer everywhere; decimal strings keep them exact. */
    zlb_stats_put(o, "sum", json_string(sum));
    zlb_stats_put(o, "sumsq", json_string(sumsq));
    zlb_stats_put(o, "clamped", json_integer((json_int_t)h->clamped));
    zlb_stats_put(o, "counts", json_stringn(counts.data, counts.len));
    zlb_buf_dispose(&counts);
    return o;
}

static bool get_u64(const json_t *j, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Parses at least one decimal digit at *s; false on no digit or overflow. */
static bool parse_u64(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
            return false;
    *s = p;
    *out = v;
    return true;
}

static bool get_u128(const json_t *j, const char *key, zlb_u128 *out)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        return false;
    const char *p = json_string_value(v);
    zlb_u128 r = 0;
    if (*p == '\0')
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || __builtin_mul_overflow(r, 10, &r) ||
            __builtin_add_overflow(r, (zlb_u128)(*p - '0'), &r))
            return false;
    }
    *out = r;
    return true;
}

/* Fills h->counts from the encoding above; returns an error message or NULL. Sets *sum to the
 * total of the counts and first/last to the first and last occupied slots. */
static const char *decode_counts(zlb_hist_t *h, const char *s, uint64_t *sum, size_t *first,
                                 size_t *last)
{
    size_t pos = 0;
    *sum = 0;
    *first = SIZE_MAX;
    *last = 0;
    if (*s == '\0')
        return NULL;
    for (;;) {
        uint64_t n, r = 1;
        if (*s == '+') {
            s++;
            if (!parse_u64(&s, &n) || n == 0)
                return "malformed histogram counts";
            if (n > h->len - pos)
                return "histogram counts beyond the layout";
            pos += n;
        } else {
            if (!parse_u64(&s, &n) || n == 0)
                return "malformed histogram counts";
            if (*s == '*') {
                s++;
                if (!parse_u64(&s, &r) || r == 0)
                    return "malformed histogram counts";
            }
            if (r > h->len - pos)
                return "histogram counts beyond the layout";
            uint64_t run_total;
            if (__builtin_mul_overflow(n, r, &run_total) ||
                __builtin_add_overflow(*sum, run_total, sum))
                return "histogram counts overflow";
            if (*first == SIZE_MAX)
                *first = pos;
            for (uint64_t i = 0; i < r; i++)
                h->counts[pos++] = n;
            *last = pos - 1;
        }
        if (*s == '\0')
            return NULL;
        if (*s != ',')
            return "malformed histogram counts";
        s++;
    }
}

int zlb_hist_from_json(const json_t *j, zlb_hist_t **out, const char **err)
{
    const char *e = NULL;
    zlb_hist_t *h = NULL;
    uint64_t version, highest, sigfigs, count, min, max, clamped, counted;
    zlb_u128 sum, sumsq;
    size_t first, last;
    long double var;
    int rc = -EINVAL;

    *out = NULL;
    if (!json_is_object(j)) {
        e = "histogram is not a JSON object";
        goto fail;
    }
    if (!get_u64(j, "v", &version) || version != HIST_JSON_VERSION) {
        e = "unsupported histogram version";
        goto fail;
    }
    if (!get_u64(j, "highest", &highest) || !get_u64(j, "sigfigs", &sigfigs) || sigfigs > 5) {
        e = "invalid histogram layout";
        goto fail;
    }
    if (!get_u64(j, "count", &count) || !get_u64(j, "min", &min) || !get_u64(j, "max", &max) ||
        !get_u64(j, "clamped", &clamped) || !get_u128(j, "sum", &sum) ||
        !get_u128(j, "sumsq", &sumsq) || !json_is_string(json_object_get(j, "counts"))) {
        e = "histogram field missing or of the wrong type";
        goto fail;
    }
    rc = zlb_hist_create(highest, (int)sigfigs, &h);
    if (rc != 0) {
        e = rc == -ENOMEM ? "out of memory" : "invalid histogram layout";
        goto fail;
    }
    rc = -EINVAL;
    e = decode_counts(h, json_string_value(json_object_get(j, "counts")), &counted, &first, &last);
    if (e)
        goto fail;
    if (counted != count) {
        e = "histogram counts do not sum to count";
        goto fail;
    }
    if (count == 0) {
        if (min != 0 || max != 0 || clamped != 0 || sum != 0 || sumsq != 0) {
            e = "empty histogram with non-zero fields";
            goto fail;
        }
    } else {
        if (min > max || max > highest || first != slot_of(h, min) || last != slot_of(h, max)) {
            e = "histogram min/max do not match its counts";
            goto fail;
        }
        /* Clamped values are recorded as highest, so they make max == highest. */
        if (clamped > count || (clamped && max != highest)) {
            e = "histogram clamped count inconsistent";
            goto fail;
        }
        h->total = count;
        h->clamped = clamped;
        h->min = min;
        h->max = max;
        h->sum = sum;
        h->sumsq = sumsq;
        if (sum < (zlb_u128)min * count || sum > (zlb_u128)max * count || !variance(h, &var)) {
            e = "histogram sums inconsistent with its values";
            goto fail;
        }
    }
    *out = h;
    return 0;

fail:
    zlb_hist_destroy(h);
    if (err)
        *err = e;
    return rc;
}

/* ---- summaries ---------------------------------------------------------------------------- */

static json_t *us(double ns)
{
    /* Whole ns = three decimals of µs; rounding first keeps a mean from carrying noise digits
     * past the resolution the histogram has. */
    return json_real(rint(ns) / 1000.0);
}

json_t *zlb_hist_summary_json(const zlb_hist_t *h, const double *percentiles, size_t n)
{
    static const struct {
        const char *key;
        double p;
    } fixed[] = {{"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}, {"p999", 99.9}};
    json_t *o = json_object();

    zlb_stats_put(o, "count", json_integer((json_int_t)h->total));
    zlb_stats_put(o, "min", us((double)zlb_hist_min(h)));
    zlb_stats_put(o, "mean", us(zlb_hist_mean(h)));
    for (size_t i = 0; i < ZLB_ARRAY_LEN(fixed); i++)
        zlb_stats_put(o, fixed[i].key, us((double)zlb_hist_percentile(h, fixed[i].p)));
    zlb_stats_put(o, "max", us((double)h->max));
    for (size_t i = 0; i < n; i++) {
        char key[40];
        zlb_percentile_key(percentiles[i], key, sizeof(key));
        zlb_stats_put(o, key, us((double)zlb_hist_percentile(h, percentiles[i])));
    }
    return o;
}

/* ---- binary image (between processes of one build) ------------------------------------------ */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static bool get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Header: total, clamped, min, max, sum and sumsq (two halves each), slot count; then the
 * occupied slots as (gap from the previous one, count) pairs. */
#define IMAGE_HEADER_MAX (11 * 10)

size_t zlb_hist_image_max(const zlb_hist_t *h)
{
    if (h->total == 0)
        return IMAGE_HEADER_MAX;
    return IMAGE_HEADER_MAX + (slot_of(h, h->max) - slot_of(h, h->min) + 1) * 20;
}

size_t zlb_hist_image(const zlb_hist_t *h, uint8_t *out)
{
    size_t n = 0, occupied = 0, lo = 0, hi = 0;
    if (h->total) {
        lo = slot_of(h, h->min);
        hi = slot_of(h, h->max);
        for (size_t i = lo; i <= hi; i++)
            occupied += h->counts[i] != 0;
    }
    n += put_varint(out + n, h->total);
    n += put_varint(out + n, h->clamped);
    n += put_varint(out + n, h->total ? h->min : 0);
    n += put_varint(out + n, h->max);
    n += put_varint(out + n, (uint64_t)h->sum);
    n += put_varint(out + n, (uint64_t)(h->sum >> 64));
    n += put_varint(out + n, (uint64_t)h->sumsq);
    n += put_varint(out + n, (uint64_t)(h->sumsq >> 64));
    n += put_varint(out + n, occupied);
    size_t prev = 0;
    for (size_t i = lo; h->total && i <= hi; i++) {
        if (!h->counts[i])
            continue;
        n += put_varint(out + n, i - prev);
        n += put_varint(out + n, h->counts[i]);
        prev = i;
    }
    return n;
}

int zlb_hist_from_image(zlb_hist_t *h, const uint8_t *p, size_t len, size_t *used)
{
    uint64_t total, clamped, min, max, s0, s1, q0, q1, occupied;
    size_t pos = 0;
    if (!get_varint(p, len, &pos, &total) || !get_varint(p, len, &pos, &clamped) ||
        !get_varint(p, len, &pos, &min) || !get_varint(p, len, &pos, &max) ||
        !get_varint(p, len, &pos, &s0) || !get_varint(p, len, &pos, &s1) ||
        !get_varint(p, len, &pos, &q0) || !get_varint(p, len, &pos, &q1) ||
        !get_varint(p, len, &pos, &occupied))
        return -EINVAL;
    if (min > max || max > h->highest || clamped > total || occupied > h->len ||
        (total == 0) != (occupied == 0))
        return -EINVAL;
    zlb_hist_reset(h);
    size_t slot = 0, first = SIZE_MAX, last = 0;
    uint64_t counted = 0;
    for (uint64_t k = 0; k < occupied; k++) {
        uint64_t gap, count;
        if (!get_varint(p, len, &pos, &gap) || !get_varint(p, len, &pos, &count) || count == 0 ||
            gap > h->len || (k > 0 && gap == 0) || slot + gap >= h->len)
            goto bad;
        slot += gap;
        h->counts[slot] = count;
        counted += count;
        first = ZLB_MIN(first, slot);
        last = slot;
    }
    if (counted != total || (total && (first != slot_of(h, min) || last != slot_of(h, max))))
        goto bad;
    h->total = total;
    h->clamped = clamped;
    h->min = total ? min : UINT64_MAX;
    h->max = max;
    h->sum = (zlb_u128)s1 << 64 | s0;
    h->sumsq = (zlb_u128)q1 << 64 | q0;
    *used = pos;
    return 0;
bad:
    /* The slots written so far lie between 0 and slot: clear them, leaving h empty. */
    memset(h->counts, 0, ZLB_MIN(slot + 1, h->len) * sizeof(h->counts[0]));
    zlb_hist_reset(h);
    return -EINVAL;
}
