/* test_stats.c -- histogram accuracy against exact samples, serialisation, counters, Prometheus. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "stats/stats.h"
#include "stats/stats_internal.h"
#include "test.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) /* splitmix64: deterministic, so failures reproduce */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd_unit(void) /* (0, 1) */
{
    return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void assert_same_hist(const zlb_hist_t *a, const zlb_hist_t *b)
{
    ASSERT_UEQ(a->highest, b->highest);
    ASSERT_EQ(a->sigfigs, b->sigfigs);
    ASSERT_UEQ(a->len, b->len);
    ASSERT_UEQ(a->total, b->total);
    ASSERT_UEQ(a->clamped, b->clamped);
    ASSERT_UEQ(zlb_hist_min(a), zlb_hist_min(b));
    ASSERT_UEQ(a->max, b->max);
    ASSERT(a->sum == b->sum);
    ASSERT(a->sumsq == b->sumsq);
    for (size_t i = 0; i < a->len; i++)
        if (a->counts[i] != b->counts[i])
            ZLB_TEST_FAIL("slot %zu: %" PRIu64 " vs %" PRIu64, i, a->counts[i], b->counts[i]);
}

static double pow10i(int e)
{
    double r = 1.0;
    while (e-- > 0)
        r *= 10.0;
    return r;
}

/* ---- layout --------------------------------------------------------------------------------- */

static void test_create_args(void)
{
    zlb_hist_t *h = (zlb_hist_t *)1;
    ASSERT_EQ(zlb_hist_create(1000, 0, &h), -EINVAL);
    ASSERT(h == NULL);
    ASSERT_EQ(zlb_hist_create(1000, 6, &h), -EINVAL);
    ASSERT_EQ(zlb_hist_create(0, 3, &h), -EINVAL);
    ASSERT_EQ(zlb_hist_create(UINT64_MAX, 3, &h), -EINVAL);
    ASSERT_EQ(zlb_hist_create(INT64_MAX, 3, &h), 0);
    ASSERT_UEQ(zlb_hist_highest_equivalent(h, INT64_MAX) >= (uint64_t)INT64_MAX, 1);
    zlb_hist_destroy(h);
    zlb_hist_destroy(NULL);

    /* 2 * 10^3 rounds up to 2048 sub-buckets; 2^40 lands in bucket 30: 31 * 1024 + 1 slots. */
    h = zlb_hist_create_latency();
    ASSERT_UEQ(h->highest, 1ull << 40);
    ASSERT_EQ(h->sigfigs, 3);
    ASSERT_UEQ(h->sub_bits, 11);
    ASSERT_UEQ(h->len, 31u * 1024 + 1);
    ASSERT_LE(h->len * sizeof(uint64_t), 256 * 1024);
    zlb_hist_destroy(h);
}

static void test_equivalents(void)
{
    for (int s = 1; s <= 5; s++) {
        zlb_hist_t *h;
        ASSERT_EQ(zlb_hist_create(1ull << 40, s, &h), 0);
        double tol = 1.0 / pow10i(s);
        /* Slots tile the range: the top of one slot plus one is the bottom of the next. */
        uint64_t v = 0;
        size_t slots = 0;
        while (v <= h->highest) {
            uint64_t lo = zlb_hist_lowest_equivalent(h, v), hi = zlb_hist_highest_equivalent(h, v);
            ASSERT_UEQ(lo, v);
            ASSERT_CMP_UINT(hi, >=, lo);
            if (lo > 0)
                ASSERT_CMP_DBL((double)(hi - lo), <=, (double)lo * tol);
            ASSERT_UEQ(zlb_hist_highest_equivalent(h, hi), hi);
            ASSERT_UEQ(zlb_hist_lowest_equivalent(h, hi), lo);
            v = hi + 1;
            slots++;
        }
        ASSERT_UEQ(slots, h->len);
        /* Random values: bucket bounds bracket the value within the relative error. */
        for (int i = 0; i < 100000; i++) {
            uint64_t x = (rnd() >> (rnd() % 64)) & ((1ull << 40) - 1);
            uint64_t lo = zlb_hist_lowest_equivalent(h, x), hi = zlb_hist_highest_equivalent(h, x);
            ASSERT_CMP_UINT(lo, <=, x);
            ASSERT_CMP_UINT(hi, >=, x);
            ASSERT_CMP_DBL((double)(hi - x), <=, (double)x * tol);
        }
        /* Above highest behaves as highest. */
        ASSERT_UEQ(zlb_hist_highest_equivalent(h, UINT64_MAX),
                   zlb_hist_highest_equivalent(h, h->highest));
        zlb_hist_destroy(h);
    }
}

/* ---- accuracy against exact samples ------------------------------------------------------------
 */

enum dist { UNIFORM, LOGNORMAL, CONSTANT, FULL_RANGE, TINY };

static uint64_t draw(enum dist d)
{
    switch (d) {
    case UNIFORM: /* 1 µs .. 1 s */
        return 1000 + rnd() % (1000000000ull - 1000 + 1);
    case LOGNORMAL: { /* median 1 ms, sigma 1.5: a long right tail */
        double z = sqrt(-2.0 * log(rnd_unit())) * cos(2.0 * M_PI * rnd_unit());
        double x = exp(log(1e6) + 1.5 * z);
        return x < 1.0 ? 1 : x > 1e12 ? 1000000000000ull : (uint64_t)x;
    }
    case CONSTANT:
        return 123456789;
    case FULL_RANGE: { /* log-uniform over 1 .. 2^40, both ends included */
        unsigned e = (unsigned)(rnd() % 41);
        uint64_t x = (1ull << e) + (e ? rnd() % (1ull << e) : 0);
        return x > (1ull << 40) ? 1ull << 40 : x;
    }
    case TINY: /* exercises the linear bucket, zero included */
        return rnd() % 3000;
    }
    return 0;
}

static const char *dist_name[] = {"uniform", "lognormal", "constant", "full_range", "tiny"};

/* Percentiles in thousandths of a percent, so the expected rank is exact integer arithmetic. */
static const uint64_t pct_milli[] = {0,     1000,  10000, 25000, 50000, 75000,
                                     90000, 99000, 99900, 99990, 100000};

static void check_against_samples(zlb_hist_t *h, uint64_t *x, size_t n, const char *what)
{
    double tol = 1.0 / pow10i(h->sigfigs);
    qsort(x, n, sizeof(x[0]), cmp_u64);
    ASSERT_UEQ(zlb_hist_count(h), n);
    ASSERT_UEQ(zlb_hist_min(h), x[0]);
    ASSERT_UEQ(zlb_hist_max(h), x[n - 1]);

    for (size_t k = 0; k < ZLB_ARRAY_LEN(pct_milli); k++) {
        double p = (double)pct_milli[k] / 1000.0;
        uint64_t rank = (pct_milli[k] * n + 99999) / 100000;
        uint64_t exact = x[rank ? rank - 1 : 0];
        uint64_t got = zlb_hist_percentile(h, p);
        /* The bucket rule: the top of the exact value's slot, kept within [min, max]; p0 is min. */
        uint64_t want = zlb_hist_highest_equivalent(h, exact);
        want = want > x[n - 1] ? x[n - 1] : want < x[0] ? x[0] : want;
        if (rank == 0)
            want = x[0];
        if (got != want)
            ZLB_TEST_FAIL("%s p%g: got %" PRIu64 " want %" PRIu64 " (exact %" PRIu64 ")", what, p,
                          got, want, exact);
        ASSERT_CMP_DBL(fabs((double)got - (double)exact), <=, (double)exact * tol);
    }

    long double sum = 0, dev = 0;
    for (size_t i = 0; i < n; i++)
        sum += (long double)x[i];
    long double mean = sum / (long double)n;
    for (size_t i = 0; i < n; i++)
        dev += ((long double)x[i] - mean) * ((long double)x[i] - mean);
    double sd = (double)sqrtl(dev / (long double)n);
    ASSERT_CMP_DBL(fabs(zlb_hist_mean(h) - (double)mean), <=, 1e-9 * (double)mean);
    ASSERT_CMP_DBL(fabs(zlb_hist_stddev(h) - sd), <=, 1e-9 * sd);
}

static void test_percentiles(void)
{
    const size_t n = 200000;
    uint64_t *x = malloc(n * sizeof(*x));
    ASSERT(x != NULL);
    for (int s = 2; s <= 4; s++) {
        for (enum dist d = UNIFORM; d <= TINY; d++) {
            zlb_hist_t *h;
            ASSERT_EQ(zlb_hist_create(1ull << 40, s, &h), 0);
            for (size_t i = 0; i < n; i++) {
                x[i] = draw(d);
                ASSERT(zlb_hist_record(h, x[i]));
            }
            char what[64];
            snprintf(what, sizeof(what), "%s/sigfigs %d", dist_name[d], s);
            check_against_samples(h, x, n, what);
            zlb_hist_destroy(h);
        }
    }
    /* Small counts, where rank rounding matters most: 1..12 values, every percentile. */
    for (size_t m = 1; m <= 12; m++) {
        zlb_hist_t *h = zlb_hist_create_latency();
        for (size_t i = 0; i < m; i++) {
            x[i] = 1000 * (i + 1) + i;
            zlb_hist_record(h, x[i]);
        }
        check_against_samples(h, x, m, "small");
        zlb_hist_destroy(h);
    }
    free(x);
}

static void test_empty_and_zero(void)
{
    zlb_hist_t *h = zlb_hist_create_latency();
    ASSERT_UEQ(zlb_hist_count(h), 0);
    ASSERT_UEQ(zlb_hist_min(h), 0);
    ASSERT_UEQ(zlb_hist_max(h), 0);
    ASSERT_UEQ(zlb_hist_percentile(h, 50), 0);
    ASSERT_CMP_DBL(zlb_hist_mean(h), ==, 0.0);
    ASSERT_CMP_DBL(zlb_hist_stddev(h), ==, 0.0);
    ASSERT_UEQ(zlb_hist_count_le(h, 1ull << 40), 0);

    ASSERT(zlb_hist_record(h, 0));
    ASSERT(zlb_hist_record(h, 0));
    ASSERT(zlb_hist_record(h, 7));
    ASSERT_UEQ(h->counts[0], 2);
    ASSERT_UEQ(zlb_hist_min(h), 0);
    ASSERT_UEQ(zlb_hist_percentile(h, 0), 0);
    ASSERT_UEQ(zlb_hist_percentile(h, 50), 0);
    ASSERT_UEQ(zlb_hist_percentile(h, 100), 7);
    ASSERT_UEQ(zlb_hist_count_le(h, 0), 2);

    /* record_n(…, 0) changes nothing, in particular not min/max. */
    ASSERT(zlb_hist_record_n(h, 1000000, 0));
    ASSERT_UEQ(zlb_hist_max(h), 7);
    ASSERT(zlb_hist_record_n(h, 1000000, 4));
    ASSERT_UEQ(zlb_hist_count(h), 7);
    ASSERT_CMP_DBL(zlb_hist_mean(h), ==, 4000007.0 / 7.0);

    zlb_hist_reset(h);
    ASSERT_UEQ(zlb_hist_count(h), 0);
    ASSERT_UEQ(zlb_hist_max(h), 0);
    for (size_t i = 0; i < h->len; i++)
        ASSERT_UEQ(h->counts[i], 0);
    zlb_hist_destroy(h);
}

static void test_clamp(void)
{
    zlb_hist_t *h;
    ASSERT_EQ(zlb_hist_create(100000, 3, &h), 0);
    ASSERT(zlb_hist_record(h, 100000));
    ASSERT_UEQ(zlb_hist_clamped(h), 0);
    ASSERT(!zlb_hist_record(h, 100001));
    ASSERT(!zlb_hist_record(h, UINT64_MAX));
    ASSERT(!zlb_hist_record_n(h, 5000000, 3));
    ASSERT(zlb_hist_record_n(h, 50, 2));
    ASSERT_UEQ(zlb_hist_clamped(h), 5);
    ASSERT_UEQ(zlb_hist_count(h), 8);
    ASSERT_UEQ(zlb_hist_max(h), 100000);
    ASSERT_UEQ(zlb_hist_percentile(h, 100), 100000);
    ASSERT_UEQ(zlb_hist_count_le(h, 100000), 8);
    ASSERT_UEQ(zlb_hist_count_le(h, 99999), 2);
    /* Clamped values count as highest in the sums. */
    ASSERT_CMP_DBL(zlb_hist_mean(h), ==, (6.0 * 100000 + 100) / 8.0);
    zlb_hist_destroy(h);
}

static void test_count_le(void)
{
    const size_t n = 50000;
    uint64_t *x = malloc(n * sizeof(*x));
    ASSERT(x != NULL);
    zlb_hist_t *h = zlb_hist_create_latency();
    for (size_t i = 0; i < n; i++) {
        x[i] = draw(LOGNORMAL);
        zlb_hist_record(h, x[i]);
    }
    qsort(x, n, sizeof(x[0]), cmp_u64);

    uint64_t prev = 0;
    size_t below = 0; /* samples <= v, maintained as v grows */
    for (uint64_t v = 0; v < (1ull << 41); v = v < 16 ? v + 1 : v + v / 7 + 3) {
        uint64_t c = zlb_hist_count_le(h, v);
        ASSERT_CMP_UINT(c, >=, prev);
        prev = c;
        while (below < n && x[below] <= v)
            below++;
        /* Never over-counts; under-counts at most the samples sharing v's slot. */
        ASSERT_CMP_UINT(c, <=, below);
        uint64_t lo = zlb_hist_lowest_equivalent(h, v);
        size_t strictly_below = 0;
        while (strictly_below < n && x[strictly_below] < lo)
            strictly_below++;
        if (v < (1ull << 40))
            ASSERT_CMP_UINT(c, >=, strictly_below);
        /* Exact at the top of a slot. */
        uint64_t top = zlb_hist_highest_equivalent(h, v);
        if (top <= (1ull << 40)) {
            size_t at_top = 0;
            while (at_top < n && x[at_top] <= top)
                at_top++;
            ASSERT_UEQ(zlb_hist_count_le(h, top), at_top);
        }
    }
    ASSERT_UEQ(zlb_hist_count_le(h, 1ull << 40), n);
    ASSERT_UEQ(zlb_hist_count_le(h, zlb_hist_max(h)), n);
    ASSERT_UEQ(zlb_hist_count_le(h, UINT64_MAX), n);
    ASSERT_UEQ(zlb_hist_count_le(h, zlb_hist_min(h) - 1), 0);
    zlb_hist_destroy(h);
    free(x);
}

/* ---- merge and serialisation -------------------------------------------------------------------
 */

static void test_merge(void)
{
    zlb_hist_t *all = zlb_hist_create_latency(), *a = zlb_hist_create_latency(),
               *b = zlb_hist_create_latency(), *c = zlb_hist_create_latency();
    for (int i = 0; i < 100000; i++) {
        uint64_t v = draw(i % 2 ? FULL_RANGE : LOGNORMAL);
        zlb_hist_record(all, v);
        zlb_hist_record(i < 37000 ? a : b, v);
    }
    zlb_hist_record(all, UINT64_MAX); /* clamps travel through the merge too */
    zlb_hist_record(b, UINT64_MAX);
    ASSERT_EQ(zlb_hist_add(c, a), 0);
    ASSERT_EQ(zlb_hist_add(c, b), 0);
    assert_same_hist(c, all);
    ASSERT_UEQ(zlb_hist_percentile(c, 99.9), zlb_hist_percentile(all, 99.9));

    /* Adding an empty histogram changes nothing; copy reproduces. */
    zlb_hist_reset(a);
    ASSERT_EQ(zlb_hist_add(c, a), 0);
    assert_same_hist(c, all);
    ASSERT_EQ(zlb_hist_copy(a, all), 0);
    assert_same_hist(a, all);
    ASSERT_EQ(zlb_hist_copy(a, a), 0);

    zlb_hist_t *other;
    ASSERT_EQ(zlb_hist_create(1ull << 40, 2, &other), 0);
    ASSERT_EQ(zlb_hist_add(other, all), -EINVAL);
    ASSERT_EQ(zlb_hist_copy(other, all), -EINVAL);
    zlb_hist_destroy(other);
    zlb_hist_destroy(all);
    zlb_hist_destroy(a);
    zlb_hist_destroy(b);
    zlb_hist_destroy(c);
}

static void round_trip(const zlb_hist_t *h, size_t max_len);

static void test_sub(void)
{
    zlb_hist_t *now = zlb_hist_create_latency(), *start = zlb_hist_create_latency(),
               *period = zlb_hist_create_latency(), *d = zlb_hist_create_latency();
    /* The period's values sit in the middle of the earlier ones, so min/max must narrow. */
    for (int i = 0; i < 50000; i++)
        zlb_hist_record(now, i % 2 ? 100 + rnd() % 1000 : 5000000000ull + rnd() % 1000000);
    zlb_hist_record(now, UINT64_MAX);
    ASSERT_EQ(zlb_hist_copy(start, now), 0);
    for (int i = 0; i < 30000; i++) {
        uint64_t v = 100000 + rnd() % 9000000;
        zlb_hist_record(now, v);
        zlb_hist_record(period, v);
    }
    ASSERT_EQ(zlb_hist_copy(d, now), 0);
    ASSERT_EQ(zlb_hist_sub(d, start), 0);
    for (size_t i = 0; i < d->len; i++)
        ASSERT_UEQ(d->counts[i], period->counts[i]);
    ASSERT_UEQ(zlb_hist_count(d), 30000);
    ASSERT_UEQ(zlb_hist_clamped(d), 0);
    ASSERT(d->sum == period->sum && d->sumsq == period->sumsq);
    ASSERT_CMP_DBL(zlb_hist_stddev(d), ==, zlb_hist_stddev(period));
    ASSERT_CMP_UINT(zlb_hist_min(d), <=, zlb_hist_min(period));
    ASSERT_CMP_UINT(zlb_hist_min(d), >=, zlb_hist_lowest_equivalent(d, zlb_hist_min(period)));
    ASSERT_CMP_UINT(zlb_hist_max(d), >=, zlb_hist_max(period));
    ASSERT_CMP_UINT(zlb_hist_max(d), <=, zlb_hist_highest_equivalent(d, zlb_hist_max(period)));
    /* Same slot at every percentile; only the clamp to [min, max] may differ at the ends. */
    for (size_t k = 0; k < ZLB_ARRAY_LEN(pct_milli); k++) {
        double p = (double)pct_milli[k] / 1000.0;
        ASSERT_UEQ(zlb_hist_highest_equivalent(d, zlb_hist_percentile(d, p)),
                   zlb_hist_highest_equivalent(period, zlb_hist_percentile(period, p)));
    }
    ASSERT_UEQ(zlb_hist_percentile(d, 50), zlb_hist_percentile(period, 50));
    round_trip(d, 0); /* a difference must serialise like any histogram */

    /* Subtracting everything leaves an empty histogram; a later state is refused untouched. */
    ASSERT_EQ(zlb_hist_copy(d, now), 0);
    ASSERT_EQ(zlb_hist_sub(d, now), 0);
    ASSERT_UEQ(zlb_hist_count(d), 0);
    ASSERT_UEQ(zlb_hist_max(d), 0);
    round_trip(d, 120);
    ASSERT_EQ(zlb_hist_sub(start, now), -EINVAL);
    ASSERT_EQ(zlb_hist_sub(period, start), -EINVAL);
    ASSERT_UEQ(zlb_hist_count(start), 50001);
    ASSERT_UEQ(zlb_hist_count(period), 30000);
    zlb_hist_t *other;
    ASSERT_EQ(zlb_hist_create(1000, 3, &other), 0);
    ASSERT_EQ(zlb_hist_sub(other, start), -EINVAL);
    zlb_hist_destroy(other);
    zlb_hist_destroy(now);
    zlb_hist_destroy(start);
    zlb_hist_destroy(period);
    zlb_hist_destroy(d);
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    ASSERT(s != NULL);
    return s;
}

static void round_trip(const zlb_hist_t *h, size_t max_len)
{
    json_t *j = zlb_hist_to_json(h);
    char *text = dump(j);
    if (max_len)
        ASSERT_CMP_UINT(strlen(text), <, max_len);
    json_error_t jerr;
    json_t *back = json_loads(text, 0, &jerr);
    ASSERT(back != NULL);
    zlb_hist_t *h2 = NULL;
    const char *err = NULL;
    int rc = zlb_hist_from_json(back, &h2, &err);
    if (rc != 0)
        ZLB_TEST_FAIL("from_json: %d %s\n%s", rc, err ? err : "(null)", text);
    assert_same_hist(h, h2);
    ASSERT_CMP_DBL(zlb_hist_stddev(h), ==, zlb_hist_stddev(h2));
    zlb_hist_destroy(h2);
    json_decref(back);
    json_decref(j);
    free(text);
}

static void test_serialise(void)
{
    zlb_hist_t *h = zlb_hist_create_latency();
    round_trip(h, 120);

    zlb_hist_record(h, 1500);
    zlb_hist_record_n(h, 2000000, 3);
    zlb_hist_record(h, 0);
    round_trip(h, 200);

    for (int i = 0; i < 200000; i++)
        zlb_hist_record(h, draw(i % 3 ? FULL_RANGE : UNIFORM));
    zlb_hist_record(h, UINT64_MAX);
    round_trip(h, 0);
    zlb_hist_destroy(h);

    ASSERT_EQ(zlb_hist_create(5000, 5, &h), 0);
    for (uint64_t v = 0; v < 6000; v++)
        zlb_hist_record(h, v);
    round_trip(h, 0);
    zlb_hist_destroy(h);

    /* Equal neighbours, up to the last occupied slot, make one run. */
    h = zlb_hist_create_latency();
    for (uint64_t v = 0; v < 10; v++)
        zlb_hist_record(h, v);
    zlb_hist_record_n(h, 10, 2);
    json_t *jr = zlb_hist_to_json(h);
    ASSERT_STREQ(json_string_value(json_object_get(jr, "counts")), "1*10,2");
    json_decref(jr);
    zlb_hist_record(h, 11);
    zlb_hist_record(h, 12);
    jr = zlb_hist_to_json(h);
    ASSERT_STREQ(json_string_value(json_object_get(jr, "counts")), "1*10,2,1*2");
    json_decref(jr);
    zlb_hist_destroy(h);

    /* Two in-range values only: the encoding is a skip, a count, a skip, a count. */
    h = zlb_hist_create_latency();
    zlb_hist_record(h, 100);
    zlb_hist_record(h, 1000000);
    json_t *j = zlb_hist_to_json(h);
    char want[64];
    size_t s2 = 101;
    while (h->counts[s2] == 0)
        s2++;
    snprintf(want, sizeof(want), "+100,1,+%zu,1", s2 - 101);
    ASSERT_STREQ(json_string_value(json_object_get(j, "counts")), want);
    json_decref(j);
    zlb_hist_destroy(h);
}

/* Serialises a small histogram, lets `mutate` corrupt it, and expects a clean rejection. */
static void expect_rejected(void (*mutate)(json_t *j), const char *what, const char *why)
{
    zlb_hist_t *h = zlb_hist_create_latency(), *out = (zlb_hist_t *)1;
    zlb_hist_record_n(h, 5000, 3);
    zlb_hist_record(h, 70000);
    zlb_hist_record(h, 71000);
    json_t *j = zlb_hist_to_json(h);
    const char *err = NULL;
    ASSERT_EQ(zlb_hist_from_json(j, &out, &err), 0); /* the unmutated one is fine */
    zlb_hist_destroy(out);
    mutate(j);
    out = (zlb_hist_t *)1;
    int rc = zlb_hist_from_json(j, &out, &err);
    if (rc != -EINVAL) {
        char *text = dump(j);
        ZLB_TEST_FAIL("%s: accepted (rc %d): %s", what, rc, text);
    }
    ASSERT(out == NULL);
    ASSERT(err != NULL && err[0] != '\0');
    if (why && !strstr(err, why))
        ZLB_TEST_FAIL("%s: rejected for \"%s\", expected \"%s\"", what, err, why);
    json_decref(j);
    zlb_hist_destroy(h);
}

static void set_int(json_t *j, const char *k, json_int_t v)
{
    json_object_set_new(j, k, json_integer(v));
}
static void set_str(json_t *j, const char *k, const char *v)
{
    json_object_set_new(j, k, json_string(v));
}
static const char *counts_of(json_t *j)
{
    return json_string_value(json_object_get(j, "counts"));
}

static void m_version(json_t *j)
{
    set_int(j, "v", 2);
}
static void m_no_version(json_t *j)
{
    json_object_del(j, "v");
}
static void m_sigfigs(json_t *j)
{
    set_int(j, "sigfigs", 6);
}
static void m_highest_neg(json_t *j)
{
    set_int(j, "highest", -1);
}
static void m_highest_small(json_t *j)
{
    set_int(j, "highest", 1000); /* the counts run past this layout */
}
static void m_count(json_t *j)
{
    set_int(j, "count", json_integer_value(json_object_get(j, "count")) + 1);
}
static void m_count_str(json_t *j)
{
    set_str(j, "count", "5");
}
static void m_counts_int(json_t *j)
{
    set_int(j, "counts", 5);
}
static void m_sum_int(json_t *j)
{
    set_int(j, "sum", 100);
}
static void m_sum_bad(json_t *j)
{
    set_str(j, "sum", "12x");
}
static void m_sum_wrong(json_t *j)
{
    set_str(j, "sum", "1");
}
static void m_sumsq_wrong(json_t *j)
{
    set_str(j, "sumsq", "1");
}
static void m_min(json_t *j)
{
    set_int(j, "min", 4000);
}
static void m_max(json_t *j)
{
    set_int(j, "max", 90000);
}
static void m_clamped(json_t *j)
{
    set_int(j, "clamped", 1); /* max != highest */
}
static void m_truncated(json_t *j)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", counts_of(j));
    buf[strlen(buf) - 2] = '\0';
    set_str(j, "counts", buf);
}
static void m_trailing_comma(json_t *j)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s,", counts_of(j));
    set_str(j, "counts", buf);
}
static void m_garbage(json_t *j)
{
    set_str(j, "counts", "+4,3*x");
}
static void m_zero_skip(json_t *j)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "+0,%s", counts_of(j));
    set_str(j, "counts", buf);
}
static void m_beyond(json_t *j)
{
    set_str(j, "counts", "+99999999,5");
}
static void m_overflow(json_t *j)
{
    set_str(j, "counts", "99999999999999999999999");
}
static void m_empty_counts(json_t *j)
{
    set_str(j, "counts", "");
}
static void m_skip_beyond(json_t *j)
{
    set_str(j, "counts", "+31000,+1000,1");
}
static void m_separator(json_t *j)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", counts_of(j));
    *strchr(buf, ',') = ';';
    set_str(j, "counts", buf);
}
static void test_from_json_rejects(void)
{
    zlb_hist_t *out = (zlb_hist_t *)1;
    const char *err = NULL;
    ASSERT_EQ(zlb_hist_from_json(NULL, &out, &err), -EINVAL);
    ASSERT(out == NULL && err != NULL);
    json_t *arr = json_array();
    ASSERT_EQ(zlb_hist_from_json(arr, &out, &err), -EINVAL);
    json_decref(arr);

    /* A truncated document never even parses into something from_json would accept. */
    zlb_hist_t *h = zlb_hist_create_latency();
    zlb_hist_record(h, 1234);
    json_t *j = zlb_hist_to_json(h);
    char *text = dump(j);
    text[strlen(text) / 2] = '\0';
    json_t *half = json_loads(text, 0, NULL);
    ASSERT_EQ(zlb_hist_from_json(half, &out, &err), -EINVAL);
    json_decref(half);
    free(text);
    json_decref(j);
    zlb_hist_destroy(h);

#define REJECT(m, why) expect_rejected(m, #m, why)
    REJECT(m_version, "version");
    REJECT(m_no_version, "version");
    REJECT(m_sigfigs, "layout");
    REJECT(m_highest_neg, "layout");
    REJECT(m_highest_small, "beyond the layout");
    REJECT(m_count, "do not sum to count");
    REJECT(m_count_str, "wrong type");
    REJECT(m_counts_int, "wrong type");
    REJECT(m_sum_int, "wrong type");
    REJECT(m_sum_bad, "wrong type");
    REJECT(m_sum_wrong, "sums inconsistent");
    REJECT(m_sumsq_wrong, "sums inconsistent");
    REJECT(m_min, "min/max");
    REJECT(m_max, "min/max");
    REJECT(m_clamped, "clamped");
    REJECT(m_truncated, NULL);
    REJECT(m_trailing_comma, "malformed");
    REJECT(m_garbage, "malformed");
    REJECT(m_separator, "malformed");
    REJECT(m_zero_skip, "malformed");
    REJECT(m_beyond, "beyond the layout");
    REJECT(m_skip_beyond, "beyond the layout");
    REJECT(m_overflow, "malformed");
    REJECT(m_empty_counts, "do not sum to count");
#undef REJECT

    /* 1, 2, 2: no three values summing to 5 have squares summing below 25/3, so 7 and 8 are
     * impossible claims (either would make the variance negative); 9 is the truth. */
    h = zlb_hist_create_latency();
    zlb_hist_record(h, 1);
    zlb_hist_record_n(h, 2, 2);
    j = zlb_hist_to_json(h);
    const char *sumsq[] = {"7", "8", "9"};
    for (int i = 0; i < 3; i++) {
        json_object_set_new(j, "sumsq", json_string(sumsq[i]));
        err = NULL;
        ASSERT_EQ(zlb_hist_from_json(j, &out, &err), i < 2 ? -EINVAL : 0);
        if (i < 2)
            ASSERT(err && strstr(err, "sums inconsistent"));
    }
    ASSERT_CMP_DBL(fabs(zlb_hist_stddev(out) - sqrt(2.0 / 9.0)), <, 1e-15);
    zlb_hist_destroy(out);
    json_decref(j);

    /* More clamped values than values, though max == highest as clamping requires. */
    zlb_hist_record(h, UINT64_MAX);
    j = zlb_hist_to_json(h);
    ASSERT_EQ(zlb_hist_from_json(j, &out, &err), 0);
    zlb_hist_destroy(out);
    json_object_set_new(j, "clamped", json_integer(5));
    ASSERT_EQ(zlb_hist_from_json(j, &out, &err), -EINVAL);
    ASSERT(strstr(err, "clamped"));
    json_decref(j);

    /* An empty histogram claims nothing else either. */
    static const char *const fields[] = {"sum", "sumsq", "clamped", "min", "max"};
    zlb_hist_reset(h);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(fields); i++) {
        j = zlb_hist_to_json(h);
        ASSERT_EQ(zlb_hist_from_json(j, &out, &err), 0);
        zlb_hist_destroy(out);
        json_object_set_new(j, fields[i], i < 2 ? json_string("1") : json_integer(1));
        ASSERT_EQ(zlb_hist_from_json(j, &out, &err), -EINVAL);
        ASSERT(strstr(err, "empty"));
        json_decref(j);
    }
    zlb_hist_destroy(h);
}

/* ---- summaries
 * ----------------------------------------------------------------------------------- */

static void assert_finite_reals(const json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (strcmp(k, "count") == 0) {
            ASSERT(json_is_integer(v));
            continue;
        }
        if (!json_is_real(v) || !isfinite(json_real_value(v)))
            ZLB_TEST_FAIL("%s is not a finite real", k);
    }
}

static void test_summary_json(void)
{
    static const char *const keys[] = {"count", "min", "mean",  "p50", "p90", "p99",
                                       "p999",  "max", "p9999", "p75", "p0",  "p100"};
    const double extra[] = {99.99, 75, 50, 0, 100};
    zlb_hist_t *h = zlb_hist_create_latency();

    json_t *s = zlb_hist_summary_json(h, extra, ZLB_ARRAY_LEN(extra));
    ASSERT_EQ(json_object_size(s), ZLB_ARRAY_LEN(keys));
    for (size_t i = 0; i < ZLB_ARRAY_LEN(keys); i++) {
        json_t *v = json_object_get(s, keys[i]);
        if (!v)
            ZLB_TEST_FAIL("missing %s", keys[i]);
        ASSERT_CMP_DBL(json_number_value(v), ==, 0.0);
    }
    assert_finite_reals(s);
    json_decref(s);

    for (uint64_t v = 1; v <= 1000; v++)
        zlb_hist_record(h, v * 1000 + 1); /* 1.001 µs .. 1000.001 µs */
    s = zlb_hist_summary_json(h, extra, ZLB_ARRAY_LEN(extra));
    ASSERT_EQ(json_object_size(s), ZLB_ARRAY_LEN(keys));
    assert_finite_reals(s);
    ASSERT_EQ(json_integer_value(json_object_get(s, "count")), 1000);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "min")), ==, 1.001);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "max")), ==, 1000.001);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "mean")), ==, 500.501);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "p9999")), ==,
                   (double)zlb_hist_percentile(h, 99.99) / 1000.0);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "p75")), ==,
                   (double)zlb_hist_percentile(h, 75) / 1000.0);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "p50")), ==,
                   (double)zlb_hist_percentile(h, 50) / 1000.0);
    ASSERT_NEAR(json_real_value(json_object_get(s, "p50")), 500.001, 0.5);
    json_decref(s);

    s = zlb_hist_summary_json(h, NULL, 0);
    ASSERT_EQ(json_object_size(s), 8);
    json_decref(s);

    /* Whole ns, i.e. three decimals of µs: a mean of 1000.33 ns shows as 1.0 µs. */
    zlb_hist_reset(h);
    zlb_hist_record_n(h, 1000, 2);
    zlb_hist_record(h, 1001);
    s = zlb_hist_summary_json(h, NULL, 0);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "mean")), ==, 1.0);
    ASSERT_CMP_DBL(json_real_value(json_object_get(s, "max")), ==, 1.001);
    json_decref(s);
    zlb_hist_destroy(h);
}

/* ---- counters and per-poller stats -------------------------------------------------------------
 */

static const char *const fail_keys[] = {
    "dns",         "refused",          "timeout",  "reset",      "eof",
    "unreachable", "addr_unavailable", "fd_limit", "no_buffers", "tls_handshake",
    "tls_verify",  "protocol",         "other",    "cancelled"};
_Static_assert(ZLB_ARRAY_LEN(fail_keys) == ZLB_FAIL__COUNT, "test lists every reason");

static zlb_counters_t balanced_counters(void)
{
    zlb_counters_t c = {0};
    c.failed_before[ZLB_FAIL_REFUSED] = 3;
    c.failed_before[ZLB_FAIL_TIMEOUT] = 2;
    c.failed_after[ZLB_FAIL_RESET] = 4;
    c.failed_after[ZLB_FAIL_OTHER] = 1;
    c.in_flight = 7;
    c.established = 50;
    c.attempted = 50 + 5 + 7;
    c.closed_by_us = 20;
    c.closed_by_peer = 10;
    c.open = 50 - 20 - 10 - 5;
    return c;
}

static void test_counters(void)
{
    zlb_counters_t c = balanced_counters();
    ASSERT(zlb_counters_balanced(&c));
    ASSERT_UEQ(zlb_counters_failed_before_total(&c), 5);
    ASSERT_UEQ(zlb_counters_failed_after_total(&c), 5);
    ASSERT_UEQ(zlb_counters_failed_total(&c), 10);

    zlb_counters_t z = {0};
    ASSERT(zlb_counters_balanced(&z));
    c.attempted++;
    ASSERT(!zlb_counters_balanced(&c));
    c = balanced_counters();
    c.failed_before[ZLB_FAIL_DNS]++;
    ASSERT(!zlb_counters_balanced(&c));
    c = balanced_counters();
    c.open--;
    ASSERT(!zlb_counters_balanced(&c));
    c = balanced_counters();
    c.failed_after[ZLB_FAIL_EOF]++;
    ASSERT(!zlb_counters_balanced(&c));
    c = balanced_counters();
    c.established++; /* both equations move: attempted no longer covers it either */
    c.open++;
    ASSERT(!zlb_counters_balanced(&c));
    c.attempted++;
    ASSERT(zlb_counters_balanced(&c));

    /* add sums every field: fill both structs field by field (all are uint64_t). */
    zlb_counters_t a, b;
    uint64_t *pa = (uint64_t *)&a, *pb = (uint64_t *)&b;
    ASSERT_EQ(sizeof(a) % sizeof(uint64_t), 0);
    size_t nf = sizeof(a) / sizeof(uint64_t);
    for (size_t i = 0; i < nf; i++) {
        pa[i] = 1000 * i;
        pb[i] = i + 1;
    }
    zlb_counters_add(&a, &b);
    for (size_t i = 0; i < nf; i++)
        if (pa[i] != 1001 * i + 1)
            ZLB_TEST_FAIL("field %zu: %" PRIu64, i, pa[i]);

    for (int f = 0; f < ZLB_FAIL__COUNT; f++)
        ASSERT_STREQ(zlb_fail_name(f), fail_keys[f]);
    ASSERT_STREQ(zlb_fail_name(ZLB_FAIL_ADDR_UNAVAILABLE), "addr_unavailable");
    ASSERT_STREQ(zlb_fail_name(ZLB_FAIL_OTHER), "other");
    ASSERT_STREQ(zlb_lat_name(ZLB_LAT_TLS_RESUMED), "tls_handshake_resumed");
    ASSERT_STREQ(zlb_lat_name(ZLB_LAT_MESSAGE_RT), "message_rt");
    ASSERT_STREQ(zlb_lat_name(ZLB_LAT_CONNECT_SERVICE), "connect_service");
    ASSERT_STREQ(zlb_lat_name(ZLB_LAT_HTTP_SERVICE), "http_service");
    ASSERT_STREQ(zlb_lat_name(ZLB_LAT__COUNT), "unknown");
}

static void assert_fail_object(const json_t *o, const uint64_t *a, const uint64_t *b)
{
    ASSERT(json_is_object(o));
    ASSERT_EQ(json_object_size(o), ZLB_FAIL__COUNT + 1);
    uint64_t total = 0;
    for (int i = 0; i < ZLB_FAIL__COUNT; i++) {
        json_t *v = json_object_get(o, fail_keys[i]);
        if (!json_is_integer(v))
            ZLB_TEST_FAIL("missing reason %s", fail_keys[i]);
        uint64_t want = a[i] + (b ? b[i] : 0);
        ASSERT_UEQ(json_integer_value(v), want);
        total += want;
    }
    ASSERT_UEQ(json_integer_value(json_object_get(o, "total")), total);
}

static void test_counters_json(void)
{
    static const char *const keys[] = {"target",
                                       "attempted",
                                       "established",
                                       "open",
                                       "in_flight",
                                       "closed",
                                       "closed_by_us",
                                       "closed_by_peer",
                                       "stalled",
                                       "failed",
                                       "failed_before_established",
                                       "failed_after_established"};
    zlb_counters_t c = balanced_counters();
    json_t *j = zlb_counters_to_json(&c, 1000);
    ASSERT_EQ(json_object_size(j), ZLB_ARRAY_LEN(keys));
    for (size_t i = 0; i < ZLB_ARRAY_LEN(keys); i++)
        if (!json_object_get(j, keys[i]))
            ZLB_TEST_FAIL("missing %s", keys[i]);
    ASSERT_EQ(json_integer_value(json_object_get(j, "target")), 1000);
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempted")), 62);
    ASSERT_EQ(json_integer_value(json_object_get(j, "established")), 50);
    ASSERT_EQ(json_integer_value(json_object_get(j, "open")), 15);
    ASSERT_EQ(json_integer_value(json_object_get(j, "in_flight")), 7);
    ASSERT_EQ(json_integer_value(json_object_get(j, "closed")), 30);
    ASSERT_EQ(json_integer_value(json_object_get(j, "closed_by_us")), 20);
    ASSERT_EQ(json_integer_value(json_object_get(j, "closed_by_peer")), 10);
    assert_fail_object(json_object_get(j, "failed"), c.failed_before, c.failed_after);
    assert_fail_object(json_object_get(j, "failed_before_established"), c.failed_before, NULL);
    assert_fail_object(json_object_get(j, "failed_after_established"), c.failed_after, NULL);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "failed"), "total")), 10);
    json_decref(j);

    zlb_counters_t z = {0};
    j = zlb_counters_to_json(&z, 0);
    ASSERT_EQ(json_integer_value(json_object_get(j, "target")), 0);
    assert_fail_object(json_object_get(j, "failed"), z.failed_before, z.failed_after);
    json_decref(j);
}

static void test_stats(void)
{
    zlb_stats_t s, snap = {0}, sum;
    zlb_stats_init(&s);
    zlb_stats_init(&sum);
    for (int l = 0; l < ZLB_LAT__COUNT; l++)
        ASSERT(s.lat[l] != NULL);
    s.c = balanced_counters();
    s.c.bytes_in = 100;
    s.c.bytes_out = 200;
    s.c.messages = 3;
    s.c.tls_handshakes = 4;
    s.c.tls_resumed = 2;
    s.c.scheduled = 70;
    zlb_stats_record(&s, ZLB_LAT_CONNECT, 250000);
    zlb_stats_record(&s, ZLB_LAT_CONNECT, 300000);
    zlb_stats_record(&s, ZLB_LAT_MESSAGE_RT, UINT64_MAX);
    ASSERT_UEQ(zlb_hist_clamped(s.lat[ZLB_LAT_MESSAGE_RT]), 1);

    /* copy into zeroed memory creates the histograms. */
    zlb_stats_copy(&snap, &s);
    ASSERT(memcmp(&snap.c, &s.c, sizeof(s.c)) == 0);
    for (int l = 0; l < ZLB_LAT__COUNT; l++)
        assert_same_hist(snap.lat[l], s.lat[l]);
    zlb_stats_add(&sum, &s);
    zlb_stats_add(&sum, &snap);
    ASSERT_UEQ(sum.c.attempted, 2 * s.c.attempted);
    ASSERT_UEQ(sum.c.bytes_out, 400);
    ASSERT(zlb_counters_balanced(&sum.c));
    ASSERT_UEQ(zlb_hist_count(sum.lat[ZLB_LAT_CONNECT]), 4);

    double extra[] = {99.99};
    json_t *lat = zlb_stats_latency_json(&sum, extra, 1);
    ASSERT_EQ(json_object_size(lat), ZLB_LAT__COUNT);
    static const char *const lat_keys[] = {"connect",
                                           "connect_service",
                                           "dns",
                                           "schedule_lag",
                                           "send_lag",
                                           "tls_handshake_full",
                                           "tls_handshake_resumed",
                                           "first_byte",
                                           "message_rt",
                                           "message_service",
                                           "http_first_byte",
                                           "http_response",
                                           "http_service"};
    ASSERT_EQ(ZLB_ARRAY_LEN(lat_keys), ZLB_LAT__COUNT);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(lat_keys); i++) {
        json_t *o = json_object_get(lat, lat_keys[i]);
        if (!json_is_object(o))
            ZLB_TEST_FAIL("latency_json lacks %s", lat_keys[i]);
        ASSERT(json_object_get(o, "p9999") != NULL);
        assert_finite_reals(o);
    }
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(lat, "connect"), "count")), 4);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(lat, "dns"), "count")), 0);
    json_decref(lat);

    json_t *hj = zlb_stats_histograms_json(&sum);
    ASSERT_EQ(json_object_size(hj), ZLB_LAT__COUNT);
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        zlb_hist_t *back;
        const char *err;
        ASSERT_EQ(zlb_hist_from_json(json_object_get(hj, zlb_lat_name(l)), &back, &err), 0);
        assert_same_hist(back, sum.lat[l]);
        zlb_hist_destroy(back);
    }
    json_decref(hj);

    /* Period by subtraction: a later state minus an earlier copy; gauges keep dst's values. */
    zlb_stats_t later, diff = {0};
    zlb_stats_init(&later);
    zlb_stats_copy(&later, &s);
    later.c.attempted += 10;
    later.c.established += 6;
    later.c.failed_before[ZLB_FAIL_CANCELLED] += 4;
    later.c.closed_by_peer += 6;
    later.c.bytes_in += 5;
    later.c.scheduled += 10;
    later.c.open = 99;
    later.c.in_flight = 98;
    zlb_stats_record(&later, ZLB_LAT_DNS, 4242);
    zlb_stats_copy(&diff, &later);
    zlb_stats_sub(&diff, &s);
    ASSERT_UEQ(diff.c.attempted, 10);
    ASSERT_UEQ(diff.c.established, 6);
    ASSERT_UEQ(diff.c.failed_before[ZLB_FAIL_CANCELLED], 4);
    ASSERT_UEQ(zlb_counters_failed_total(&diff.c), 4);
    ASSERT_UEQ(diff.c.closed_by_peer, 6);
    ASSERT_UEQ(diff.c.closed_by_us, 0);
    ASSERT_UEQ(diff.c.bytes_in, 5);
    ASSERT_UEQ(diff.c.bytes_out, 0);
    ASSERT_UEQ(diff.c.scheduled, 10);
    ASSERT_UEQ(diff.c.open, 99);
    ASSERT_UEQ(diff.c.in_flight, 98);
    ASSERT_UEQ(zlb_hist_count(diff.lat[ZLB_LAT_CONNECT]), 0);
    ASSERT_UEQ(zlb_hist_count(diff.lat[ZLB_LAT_MESSAGE_RT]), 0);
    ASSERT_UEQ(zlb_hist_count(diff.lat[ZLB_LAT_DNS]), 1);
    ASSERT_UEQ(zlb_hist_max(diff.lat[ZLB_LAT_DNS]), 4242);
    zlb_stats_dispose(&later);
    zlb_stats_dispose(&diff);

    /* The period restarts, the gauges stay. */
    zlb_stats_reset_period(&s);
    ASSERT_UEQ(s.c.open, 15);
    ASSERT_UEQ(s.c.in_flight, 7);
    zlb_counters_t expect = {0};
    expect.open = 15;
    expect.in_flight = 7;
    ASSERT(memcmp(&s.c, &expect, sizeof(expect)) == 0);
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        ASSERT_UEQ(zlb_hist_count(s.lat[l]), 0);
        ASSERT_UEQ(zlb_hist_clamped(s.lat[l]), 0);
    }
    ASSERT(!zlb_counters_balanced(&s.c));

    zlb_stats_dispose(&s);
    zlb_stats_dispose(&s); /* idempotent */
    zlb_stats_dispose(&snap);
    zlb_stats_dispose(&sum);
}

/* ---- Prometheus
 * ------------------------------------------------------------------------------------ */

/* Parses one rendered histogram back and checks it against the samples. */
static void check_prom(const char *text, const char *name, const char *labels,
                       const uint64_t *sorted, size_t n, double sum_s, size_t nbuckets)
{
    char prefix[128], line[512];
    const char *p = text;
    int buckets = 0, saw_help = 0, saw_type = 0, saw_sum = 0, saw_count = 0;
    double prev_le = -1;
    uint64_t prev_cum = 0, inf = UINT64_MAX;
    snprintf(prefix, sizeof(prefix), "%s_bucket{%s%s", name, labels, labels[0] ? "," : "");

    while (*p) {
        const char *nl = strchr(p, '\n');
        ASSERT(nl != NULL); /* every line ends with a newline */
        size_t len = (size_t)(nl - p);
        ASSERT_CMP_UINT(len, <, sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;

        if (strncmp(line, "# HELP ", 7) == 0) {
            ASSERT(strncmp(line + 7, name, strlen(name)) == 0);
            saw_help++;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char want[160];
            snprintf(want, sizeof(want), "# TYPE %s histogram", name);
            ASSERT_STREQ(line, want);
            saw_type++;
        } else if (strncmp(line, prefix, strlen(prefix)) == 0) {
            char le[32];
            unsigned long long cum;
            ASSERT_EQ(sscanf(line + strlen(prefix), "le=\"%31[^\"]\"} %llu", le, &cum), 2);
            ASSERT(!strcasestr(line, "nan"));
            ASSERT_CMP_UINT(cum, >=, prev_cum);
            prev_cum = cum;
            if (strcmp(le, "+Inf") == 0) {
                inf = cum;
            } else {
                ASSERT_UEQ(inf, UINT64_MAX); /* +Inf comes last */
                double bound = strtod(le, NULL);
                ASSERT_CMP_DBL(bound, >, prev_le);
                prev_le = bound;
                /* Never more than the samples <= le, at most one slot fewer. */
                uint64_t ns = (uint64_t)llround(bound * 1e9);
                size_t exact = 0;
                while (exact < n && sorted[exact] <= ns)
                    exact++;
                ASSERT_CMP_UINT(cum, <=, exact);
                ASSERT_CMP_DBL((double)cum, >=, (double)exact * 0.99 - 50);
            }
            buckets++;
        } else {
            char key[160], rest[64];
            snprintf(key, sizeof(key), labels[0] ? "%s_sum{%s} " : "%s_sum%.0s ", name, labels);
            if (strncmp(line, key, strlen(key)) == 0) {
                snprintf(rest, sizeof(rest), "%s", line + strlen(key));
                char *end;
                double v = strtod(rest, &end);
                ASSERT(*end == '\0' && isfinite(v));
                ASSERT_CMP_DBL(fabs(v - sum_s), <=, 1e-12 * (sum_s > 1 ? sum_s : 1));
                saw_sum++;
                continue;
            }
            snprintf(key, sizeof(key), labels[0] ? "%s_count{%s} " : "%s_count%.0s ", name, labels);
            if (strncmp(line, key, strlen(key)) != 0)
                ZLB_TEST_FAIL("unexpected line: %s", line);
            ASSERT_UEQ(strtoull(line + strlen(key), NULL, 10), n);
            saw_count++;
        }
    }
    ASSERT_EQ(saw_help, 1);
    ASSERT_EQ(saw_type, 1);
    ASSERT_EQ(saw_sum, 1);
    ASSERT_EQ(saw_count, 1);
    ASSERT_UEQ((size_t)buckets, nbuckets + 1);
    ASSERT_UEQ(inf, n);
}

static void test_prom_buckets(void)
{
    zlb_prom_buckets_t bk;
    ASSERT_EQ(zlb_prom_buckets_init(&bk, ZLB_PROM_DEFAULT_MIN_NS, ZLB_PROM_DEFAULT_MAX_NS), 0);
    ASSERT_UEQ(bk.n, 7 * 29 + 1); /* 10 µs .. 100 s: seven decades of 29, then 100 s itself */
    ASSERT_UEQ(bk.ns[0], 10000);
    ASSERT_STREQ(bk.le[0], "0.00001");
    ASSERT_UEQ(bk.ns[1], 11000);
    ASSERT_STREQ(bk.le[1], "0.000011");
    ASSERT_UEQ(bk.ns[bk.n - 1], 100000000000ull);
    ASSERT_STREQ(bk.le[bk.n - 1], "100");
    double worst = 0;
    for (size_t i = 0; i < bk.n; i++) {
        /* Each label is the exact decimal of its bound: no float noise, no trailing zeros. */
        ASSERT_UEQ((uint64_t)llround(strtod(bk.le[i], NULL) * 1e9), bk.ns[i]);
        size_t l = strlen(bk.le[i]);
        ASSERT(bk.le[i][l - 1] != '0' || !strchr(bk.le[i], '.'));
        ASSERT(bk.le[i][l - 1] != '.');
        if (i > 0) {
            double step = (double)bk.ns[i] / (double)bk.ns[i - 1] - 1;
            ASSERT_CMP_DBL(step, >, 0);
            ASSERT_CMP_DBL(step, <=, 0.1 + 1e-12);
            worst = step > worst ? step : worst;
        }
    }
    fprintf(stderr, "   %zu buckets, widest step %.1f %%\n", bk.n, worst * 100);
    /* A range between ladder values starts and ends on the ladder around it. */
    ASSERT_EQ(zlb_prom_buckets_init(&bk, 2500000, 3100000), 0);
    ASSERT_UEQ(bk.n, 4); /* 2.6 2.8 3.0 3.3 ms */
    ASSERT_STREQ(bk.le[0], "0.0026");
    ASSERT_STREQ(bk.le[3], "0.0033");
    ASSERT_EQ(zlb_prom_buckets_init(&bk, 10, 100), 0);
    ASSERT_STREQ(bk.le[0], "0.00000001");
    ASSERT_EQ(zlb_prom_buckets_init(&bk, 9, 100), -EINVAL);
    ASSERT_EQ(zlb_prom_buckets_init(&bk, 100, 100), -EINVAL);
    ASSERT_EQ(zlb_prom_buckets_init(&bk, 10, 10000000000000000000ull), -EINVAL); /* > 10 decades */
    ASSERT_UEQ(bk.n, 0);
}

static void test_prom(void)
{
    const size_t n = 20000;
    uint64_t *x = malloc(n * sizeof(*x));
    ASSERT(x != NULL);
    zlb_hist_t *h = zlb_hist_create_latency();
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = draw(LOGNORMAL);
        sum += (long double)x[i];
        zlb_hist_record(h, x[i]);
    }
    qsort(x, n, sizeof(x[0]), cmp_u64);
    static zlb_prom_buckets_t bk;
    ASSERT_EQ(zlb_prom_buckets_init(&bk, ZLB_PROM_DEFAULT_MIN_NS, ZLB_PROM_DEFAULT_MAX_NS), 0);

    /* The one-walk cumulative counts equal the one-at-a-time ones. */
    uint64_t cum[ZLB_PROM_BUCKETS_MAX];
    zlb_hist_count_le_sorted(h, bk.ns, bk.n, cum);
    for (size_t i = 0; i < bk.n; i++)
        ASSERT_UEQ(cum[i], zlb_hist_count_le(h, bk.ns[i]));

    zlb_buf_t b;
    zlb_buf_init(&b);
    zlb_prom_histogram(&b, "zlb_connect_seconds", "TCP connect latency\\ with\nnewline",
                       "target=\"a\",poller=\"0\"", h, &bk);
    ASSERT(strstr(b.data, "# HELP zlb_connect_seconds TCP connect latency\\\\ with\\nnewline\n"));
    check_prom(b.data, "zlb_connect_seconds", "target=\"a\",poller=\"0\"", x, n,
               (double)(sum / 1e9L), bk.n);
    zlb_buf_dispose(&b);

    zlb_buf_init(&b);
    zlb_prom_histogram(&b, "zlb_rtt_seconds", "Echo round trip", "", h, &bk);
    check_prom(b.data, "zlb_rtt_seconds", "", x, n, (double)(sum / 1e9L), bk.n);
    zlb_buf_dispose(&b);

    zlb_hist_reset(h);
    zlb_buf_init(&b);
    zlb_prom_histogram(&b, "zlb_empty_seconds", "Nothing", "", h, &bk);
    check_prom(b.data, "zlb_empty_seconds", "", x, 0, 0.0, bk.n);
    ASSERT(strstr(b.data, "zlb_empty_seconds_sum 0\n"));
    zlb_buf_dispose(&b);

    char esc[32];
    zlb_prom_label_escape("a\"b\\c\nd", esc, sizeof(esc));
    ASSERT_STREQ(esc, "a\\\"b\\\\c\\nd");
    zlb_prom_label_escape("abcdefgh", esc, 5); /* truncated, terminated */
    ASSERT_UEQ(strlen(esc), 4);
    zlb_hist_destroy(h);
    free(x);
}

/* ---- cost
 * ------------------------------------------------------------------------------------------ */

/* Printed for the record, not asserted: timing is not a unit-test property. */
static void measure_record(void)
{
    enum { N = 1 << 16, ROUNDS = 300 };
    uint64_t *x = malloc(N * sizeof(*x));
    ASSERT(x != NULL);
    for (size_t i = 0; i < N; i++)
        x[i] = draw(LOGNORMAL);
    zlb_hist_t *h = zlb_hist_create_latency();
    uint64_t t0 = zlb_now_ns();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < N; i++)
            zlb_hist_record(h, x[i]);
    uint64_t t1 = zlb_now_ns();
    ASSERT_UEQ(zlb_hist_count(h), (uint64_t)N * ROUNDS);
    fprintf(stderr, "   zlb_hist_record: %.2f ns/record (%d records)\n",
            (double)(t1 - t0) / ((double)N * ROUNDS), N * ROUNDS);
    zlb_hist_destroy(h);
    free(x);
}

int main(void)
{
    RUN_TEST(test_create_args);
    RUN_TEST(test_equivalents);
    RUN_TEST(test_percentiles);
    RUN_TEST(test_empty_and_zero);
    RUN_TEST(test_clamp);
    RUN_TEST(test_count_le);
    RUN_TEST(test_merge);
    RUN_TEST(test_sub);
    RUN_TEST(test_serialise);
    RUN_TEST(test_from_json_rejects);
    RUN_TEST(test_summary_json);
    RUN_TEST(test_counters);
    RUN_TEST(test_counters_json);
    RUN_TEST(test_stats);
    RUN_TEST(test_prom_buckets);
    RUN_TEST(test_prom);
    RUN_TEST(measure_record);
    return 0;
}
