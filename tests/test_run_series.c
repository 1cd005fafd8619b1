/* test_run_series.c -- the timeline: rows per interval, interval percentiles, coarsening. */
#include <math.h>
#include <stdlib.h>

#include "core/core.h"
#include "run/series.h"
#include "test.h"

#define S ZLB_NS_PER_SEC
#define MS ZLB_NS_PER_MS

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sample a sorted array of n holds at percentile p, as HdrHistogram counts it: the first
 * value with at least p% of the samples at or below it. */
static uint64_t exact_percentile(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    return v[rank ? rank - 1 : 0];
}

/* 10.05 s of 100 ms ticks at a 1 s interval: ten rows on the grid plus the final partial one;
 * the counts of the rows add up to the cumulative counters, and each rate is its count over its
 * own dt. */
static void test_rows_per_interval(void)
{
    zlb_series_t s;
    zlb_series_init(&s, 2, 1 * S, 1000);
    zlb_stats_t cum;
    zlb_stats_init(&cum);
    zlb_series_poller_in_t p[2] = {{.load_pct = 50, .lag_ns = 0}, {.load_pct = 150, .lag_ns = 0}};
    uint64_t t;
    for (t = 100 * MS; t <= 10050 * MS; t += 100 * MS) {
        cum.c.attempted += 7;
        cum.c.established += 7;
        cum.c.open += 7;
        p[0].lag_ns = t == 3300 * MS ? 9 * MS : 1000; /* one late timer inside interval 4 */
        zlb_series_tick(&s, t, &cum, "steady", 1000, p, false);
    }
    size_t on_grid = s.n;
    zlb_series_tick(&s, 10050 * MS, &cum, "draining", 1000, p, true);
    fprintf(stderr, "rows: %zu on the grid over 10.05 s, %zu with the final one\n", on_grid, s.n);
    ASSERT_CMP_UINT(on_grid, ==, 10);
    ASSERT_CMP_UINT(s.n, ==, 11);
    uint64_t attempts = 0;
    for (size_t i = 0; i < s.n; i++) {
        const zlb_series_row_t *r = &s.rows[i];
        attempts += r->attempts;
        if (i < 10) {
            ASSERT_NEAR(r->t_s, (double)(i + 1), 1e-9);
            ASSERT_CMP_UINT(r->attempts, ==, 70);
        }
    }
    ASSERT_NEAR(s.rows[10].dt_s, 0.05, 1e-9);
    ASSERT_CMP_UINT(attempts, ==, cum.c.attempted);
    ASSERT(strcmp(s.rows[10].state, "draining") == 0);
    /* The lag of one tick inside the fourth interval shows in that row only; load is clamped. */
    const zlb_series_poller_t *r3 = zlb_series_row_pollers(&s, 3),
                              *r4 = zlb_series_row_pollers(&s, 4);
    fprintf(stderr, "poller 0 lag: %.1f us in row 3, %.1f us in row 4; loads %.2f %.2f\n",
            r3[0].lag_us, r4[0].lag_us, r3[0].load, r3[1].load);
    ASSERT_NEAR(r3[0].lag_us, 9000.0, 1e-3);
    ASSERT_NEAR(r4[0].lag_us, 1.0, 1e-6);
    ASSERT_NEAR(r3[0].load, 0.5, 1e-6);
    ASSERT_NEAR(r3[1].load, 1.0, 0);
    json_t *row = zlb_series_row_json(&s.rows[2], zlb_series_row_pollers(&s, 2), s.npollers);
    double rate = json_number_value(json_object_get(row, "attempts_per_s"));
    fprintf(stderr, "row 2: attempts_per_s %.3f\n", rate);
    ASSERT_NEAR(rate, 70.0, 1e-6);
    ASSERT(json_is_null(json_object_get(row, "stage")));
    json_decref(row);

    /* A stalled controller: one long row, then back on the grid. */
    zlb_series_tick(&s, 13500 * MS, &cum, "steady", 1000, p, false);
    zlb_series_tick(&s, 14000 * MS, &cum, "steady", 1000, p, false);
    fprintf(stderr, "after a stall: row t %.2f dt %.2f, then t %.2f\n", s.rows[11].t_s,
            s.rows[11].dt_s, s.rows[12].t_s);
    ASSERT_NEAR(s.rows[11].dt_s, 3.45, 1e-9);
    ASSERT_NEAR(s.rows[12].t_s, 14.0, 1e-9);
    zlb_stats_dispose(&cum);
    zlb_series_dispose(&s);
}

/* Interval percentiles come from the samples of the interval alone, not from the run so far:
 * checked against samples recorded here and sorted. */
static void test_interval_percentiles(void)
{
    zlb_series_t s;
    zlb_series_init(&s, 0, 1 * S, 1000);
    zlb_stats_t cum;
    zlb_stats_init(&cum);
    enum { N = 5000 };
    static uint64_t v[N];
    srand(42);
    /* Interval 1: fast connects, 50..1000 µs. */
    for (size_t i = 0; i < N; i++) {
        v[i] = (50 + (uint64_t)rand() % 950) * 1000;
        zlb_stats_record(&cum, ZLB_LAT_CONNECT, v[i]);
    }
    zlb_series_tick(&s, 1 * S, &cum, "steady", 0, NULL, false);
    /* Interval 2: slow ones, 20..80 ms, half as many, and a few echo round trips. */
    for (size_t i = 0; i < N / 2; i++) {
        v[i] = (20000 + (uint64_t)rand() % 60000) * 1000;
        zlb_stats_record(&cum, ZLB_LAT_CONNECT, v[i]);
    }
    zlb_stats_record(&cum, ZLB_LAT_MESSAGE_RT, 123000);
    zlb_series_tick(&s, 2 * S, &cum, "steady", 0, NULL, false);
    /* Interval 3: nothing. */
    zlb_series_tick(&s, 3 * S, &cum, "steady", 0, NULL, false);
    ASSERT_CMP_UINT(s.n, ==, 3);

    qsort(v, N / 2, sizeof(v[0]), cmp_u64);
    const zlb_series_phase_t *ph = &s.rows[1].lat[ZLB_LAT_CONNECT];
    double want[4] = {(double)exact_percentile(v, N / 2, 50) / 1e3,
                      (double)exact_percentile(v, N / 2, 90) / 1e3,
                      (double)exact_percentile(v, N / 2, 99) / 1e3, (double)v[N / 2 - 1] / 1e3};
    double got[4] = {ph->p50_us, ph->p90_us, ph->p99_us, ph->max_us};
    const char *names[4] = {"p50", "p90", "p99", "max"};
    ASSERT_CMP_UINT(ph->count, ==, N / 2);
    for (int k = 0; k < 4; k++) {
        fprintf(stderr, "interval 2 connect %s: %.1f us from the row, %.1f us from the samples\n",
                names[k], got[k], want[k]);
        /* 3 significant digits: the bucket's highest value is within 0.1 % above. */
        ASSERT(got[k] >= want[k] * (1 - 1e-6));
        ASSERT(got[k] <= want[k] * 1.001 + 0.001);
    }
    /* The first interval's fast samples would drag a cumulative p50 far below 20 ms. */
    ASSERT(s.rows[1].lat[ZLB_LAT_CONNECT].p50_us > 20000);
    ASSERT(s.rows[0].lat[ZLB_LAT_CONNECT].p99_us < 1001);
    ASSERT(s.rows[1].phases & (1u << ZLB_LAT_MESSAGE_RT));
    ASSERT(!(s.rows[0].phases & (1u << ZLB_LAT_MESSAGE_RT)));
    ASSERT_CMP_UINT(s.rows[2].phases, ==, 0);
    json_t *row = zlb_series_row_json(&s.rows[2], NULL, 0);
    ASSERT_CMP_UINT(json_object_size(json_object_get(row, "latency_us")), ==, 0);
    json_decref(row);
    row = zlb_series_row_json(&s.rows[1], NULL, 0);
    ASSERT_NEAR(json_number_value(json_object_get(
                    json_object_get(json_object_get(row, "latency_us"), "message_rt"), "p50")),
                123.0, 0.1);
    json_decref(row);
    zlb_stats_dispose(&cum);
    zlb_series_dispose(&s);
}

/* At the row limit neighbours merge in pairs and later rows span as long: the counts add up to
 * the same totals, the times stay in order and cover the run without gaps, every row but the
 * last (still filling) spans the same time, and the worst figures survive. The row a tick
 * returns is its own interval's, whatever the storage did with it. */
static void test_coarsening_keeps_totals(void)
{
    enum { MAX = 16, ROWS = 1000 };
    zlb_series_t s;
    zlb_series_init(&s, 1, 1 * S, MAX);
    zlb_stats_t cum;
    zlb_stats_init(&cum);
    zlb_series_poller_in_t p = {.load_pct = 10};
    uint64_t worst = 0, failed = 0;
    for (uint64_t i = 1; i <= ROWS; i++) {
        cum.c.attempted += i;
        cum.c.established += i;
        cum.c.open += i;
        cum.c.messages += 3 * i;
        cum.c.failed_after[ZLB_FAIL_RESET] += i % 3;
        cum.c.open -= i % 3;
        failed += i % 3;
        uint64_t lat = (i * 7919 % 1000 + 1) * 1000;
        worst = ZLB_MAX(worst, lat);
        zlb_stats_record(&cum, ZLB_LAT_CONNECT, lat);
        p.lag_ns = i * 1000;
        const zlb_series_row_t *fresh = zlb_series_tick(&s, i * S, &cum, "steady", 5, &p, false);
        ASSERT(fresh != NULL);
        ASSERT_CMP_UINT(fresh->attempts, ==, i);
        ASSERT_NEAR(fresh->dt_s, 1.0, 0);
        ASSERT(s.n <= MAX);
    }
    uint64_t attempts = 0, messages = 0, reset = 0, count = 0;
    double dt = 0, maxlat = 0, prev_t = 0, span = (double)(1u << s.level);
    for (size_t i = 0; i < s.n; i++) {
        const zlb_series_row_t *r = &s.rows[i];
        if (i + 1 < s.n)
            ASSERT_NEAR(r->dt_s, span, 1e-9);
        attempts += r->attempts;
        messages += r->messages;
        reset += r->failed[ZLB_FAIL_RESET];
        count += r->lat[ZLB_LAT_CONNECT].count;
        dt += r->dt_s;
        maxlat = fmax(maxlat, r->lat[ZLB_LAT_CONNECT].max_us);
        ASSERT(r->t_s > prev_t);
        ASSERT_NEAR(r->t_s - r->dt_s, prev_t, 1e-6);
        prev_t = r->t_s;
    }
    json_t *tl = zlb_series_json(&s);
    fprintf(stderr,
            "%d intervals in %zu rows (coarsened %lld, rows of %.0f s, the last %.0f s); attempts "
            "%llu vs %llu, reset %llu vs %llu, connect samples %llu, max %.0f vs %.0f us, "
            "%zu bytes per row\n",
            ROWS, s.n, (long long)json_integer_value(json_object_get(tl, "coarsened")),
            s.rows[0].dt_s, s.rows[s.n - 1].dt_s, (unsigned long long)attempts,
            (unsigned long long)cum.c.attempted, (unsigned long long)reset,
            (unsigned long long)failed, (unsigned long long)count, maxlat, (double)worst / 1e3,
            zlb_series_bytes_per_row(&s));
    ASSERT_CMP_UINT(attempts, ==, cum.c.attempted);
    ASSERT_CMP_UINT(messages, ==, cum.c.messages);
    ASSERT_CMP_UINT(reset, ==, failed);
    ASSERT_CMP_UINT(count, ==, ROWS);
    ASSERT_NEAR(dt, (double)ROWS, 1e-6);
    ASSERT_NEAR(maxlat, (double)worst / 1e3, 1.0);
    ASSERT_CMP_UINT(json_integer_value(json_object_get(tl, "coarsened")), ==, ROWS - s.n);
    ASSERT_CMP_UINT(json_array_size(json_object_get(tl, "rows")), ==, s.n);
    ASSERT_CMP_UINT(json_integer_value(json_object_get(tl, "intervals_per_row")), ==, 64);
    ASSERT_CMP_UINT(s.n, ==, 16); /* 1000 / 64 = 15.6 */
    ASSERT_NEAR(zlb_series_row_pollers(&s, s.n - 1)[0].lag_us, ROWS, 1e-3);
    ASSERT_CMP_UINT(s.rows[s.n - 1].open, ==, cum.c.open);
    json_decref(tl);
    zlb_stats_dispose(&cum);
    zlb_series_dispose(&s);
}

/* Merged percentiles are the larger of the two (never understated); the stage is the later's. */
static void test_merge_rows(void)
{
    zlb_series_row_t a = {.t_s = 1, .dt_s = 1, .stage = 0, .phases = 1u << ZLB_LAT_CONNECT};
    zlb_series_row_t b = {.t_s = 2, .dt_s = 1, .stage = 1, .phases = 1u << ZLB_LAT_DNS};
    a.lat[ZLB_LAT_CONNECT] = (zlb_series_phase_t){10, 100, 200, 300, 400};
    b.lat[ZLB_LAT_CONNECT] = (zlb_series_phase_t){10, 150, 180, 500, 450};
    zlb_series_poller_t ap = {.load = 0.2f, .lag_us = 5}, bp = {.load = 0.6f, .lag_us = 3};
    zlb_series_merge_rows(&a, &ap, &b, &bp, 1);
    zlb_series_phase_t *m = &a.lat[ZLB_LAT_CONNECT];
    fprintf(stderr, "merged: count %u p50 %.0f p90 %.0f p99 %.0f max %.0f load %.2f lag %.0f\n",
            m->count, m->p50_us, m->p90_us, m->p99_us, m->max_us, ap.load, ap.lag_us);
    ASSERT_CMP_UINT(m->count, ==, 20);
    ASSERT_NEAR(m->p50_us, 150, 0);
    ASSERT_NEAR(m->p90_us, 200, 0);
    ASSERT_NEAR(m->p99_us, 500, 0);
    ASSERT_NEAR(m->max_us, 450, 0);
    ASSERT_NEAR(a.dt_s, 2, 0);
    ASSERT_NEAR(a.t_s, 2, 0);
    ASSERT_CMP_INT(a.stage, ==, 1);
    ASSERT_CMP_UINT(a.phases, ==, (1u << ZLB_LAT_CONNECT) | (1u << ZLB_LAT_DNS));
    ASSERT_NEAR(ap.load, 0.4, 1e-6);
    ASSERT_NEAR(ap.lag_us, 5, 0);
}

/* What a row costs the run's thread (not the pollers: they never see the series): the interval
 * histograms' copy and difference, the percentiles, and the row's JSON for /stats/series. Printed
 * for the record, not asserted (machines differ). */
static void test_cost(void)
{
    enum { ROWS = 200, POLLERS = 16 };
    zlb_series_t s;
    zlb_series_init(&s, POLLERS, 1 * S, ZLB_SERIES_ROWS_MAX);
    zlb_stats_t cum;
    zlb_stats_init(&cum);
    zlb_series_poller_in_t p[POLLERS] = {{0}};
    uint64_t append_ns = 0, json_ns = 0;
    size_t text_bytes = 0;
    for (uint64_t i = 1; i <= ROWS; i++) {
        for (int k = 0; k < ZLB_LAT__COUNT; k++)
            for (uint64_t v = 0; v < 500; v++)
                zlb_stats_record(&cum, (zlb_lat_t)k, 1000 + (v * 7919 + i * 104729) % 50000000);
        cum.c.attempted += 100;
        cum.c.established += 100;
        cum.c.open += 100;
        uint64_t t0 = zlb_now_ns();
        zlb_series_tick(&s, i * S, &cum, "steady", 100000, p, false);
        uint64_t t1 = zlb_now_ns();
        json_t *row = zlb_series_row_json(&s.fresh, s.fresh_pollers, POLLERS);
        char *text = json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(10));
        append_ns += t1 - t0;
        json_ns += zlb_now_ns() - t1;
        text_bytes += strlen(text);
        free(text);
        json_decref(row);
    }
    fprintf(stderr,
            "cost per row (every phase with samples, %d pollers): %.1f us to build, %.1f us to "
            "render, %zu bytes of JSON, %zu bytes in memory\n",
            POLLERS, (double)append_ns / ROWS / 1e3, (double)json_ns / ROWS / 1e3,
            text_bytes / ROWS, zlb_series_bytes_per_row(&s));
    ASSERT_CMP_UINT(s.n, ==, ROWS);
    zlb_stats_dispose(&cum);
    zlb_series_dispose(&s);
}

int main(void)
{
    test_rows_per_interval();
    test_interval_percentiles();
    test_coarsening_keeps_totals();
    test_merge_rows();
    test_cost();
    fprintf(stderr, "test_run_series: ok\n");
    return 0;
}
