/* test_procs.c -- --processes: the CPU partition, the auto count and the snapshot wire format. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "procs/procs.h"
#include "test.h"

/* Every CPU lands in exactly one block; blocks are contiguous and differ by at most one. */
static void test_cpus_partition(void)
{
    int cpus[7] = {0, 1, 2, 5, 6, 8, 9};
    for (uint32_t n = 1; n <= 7; n++) {
        int seen[7] = {0};
        size_t lo = 7, hi = 0;
        for (uint32_t i = 0; i < n; i++) {
            int out[7];
            bool shared = true;
            size_t k = zlb_procs_cpus(cpus, 7, n, i, out, &shared);
            ASSERT(!shared);
            lo = k < lo ? k : lo;
            hi = k > hi ? k : hi;
            for (size_t j = 0; j < k; j++) {
                size_t at = 0;
                while (at < 7 && cpus[at] != out[j])
                    at++;
                ASSERT_LT(at, 7);
                seen[at]++;
                if (j) /* contiguous, in list order */
                    ASSERT_EQ(out[j - 1], cpus[at - 1]);
            }
        }
        for (int c = 0; c < 7; c++)
            ASSERT_EQ(seen[c], 1);
        ASSERT_LE(hi - lo, 1);
        fprintf(stderr, "   %u processes over 7 CPUs: blocks of %zu..%zu\n", n, lo, hi);
    }
    /* 3 processes on 7 CPUs: 3, 2, 2 in order. */
    int out[7];
    bool shared;
    ASSERT_EQ(zlb_procs_cpus(cpus, 7, 3, 0, out, &shared), 3);
    ASSERT_EQ(out[0], 0);
    ASSERT_EQ(out[2], 2);
    ASSERT_EQ(zlb_procs_cpus(cpus, 7, 3, 1, out, &shared), 2);
    ASSERT_EQ(out[0], 5);
    ASSERT_EQ(zlb_procs_cpus(cpus, 7, 3, 2, out, &shared), 2);
    ASSERT_EQ(out[0], 8);
    ASSERT_EQ(out[1], 9);
    /* Fewer CPUs than processes: one each, round-robin, said. */
    int two[2] = {3, 4};
    for (uint32_t i = 0; i < 5; i++) {
        shared = false;
        ASSERT_EQ(zlb_procs_cpus(two, 2, 5, i, out, &shared), 1);
        ASSERT(shared);
        ASSERT_EQ(out[0], two[i % 2]);
    }
    ASSERT_EQ(zlb_procs_cpus(two, 0, 5, 0, out, &shared), 0);
}

static void test_auto_count(void)
{
    /* 20,000 files: 19,488 per process after the reserve. */
    ASSERT_EQ(zlb_procs_auto_count(1, false, 20000), 1);
    ASSERT_EQ(zlb_procs_auto_count(19488, false, 20000), 1);
    ASSERT_EQ(zlb_procs_auto_count(19489, false, 20000), 2);
    ASSERT_EQ(zlb_procs_auto_count(50000, false, 20000), 3);
    ASSERT_EQ(zlb_procs_auto_count(50000, true, 20000), 6); /* the built-in target's side too */
    ASSERT_EQ(zlb_procs_auto_count(100000, false, 20000), 6);
    ASSERT_EQ(zlb_procs_auto_count(10000000, false, 1024), ZLB_PROCESSES_MAX);
}

static void fill(zlb_work_snapshot_t *s, uint64_t seed)
{
    for (size_t i = 0; i < s->npollers; i++) {
        zlb_stats_t *st = &s->poller[i];
        st->c.attempted = 1000 + seed + i;
        st->c.established = 900 + seed + i;
        st->c.in_flight = 50;
        st->c.failed_before[ZLB_FAIL_REFUSED] = 50;
        st->c.open = 800 + seed + i;
        st->c.closed_by_us = 100;
        st->c.http_status[200] = 7 + i;
        st->c.tls_verify_code[127] = 3;
        for (uint64_t v = 1; v < 5000; v += 7 + seed)
            zlb_hist_record(st->lat[ZLB_LAT_CONNECT], v * 1000 + i);
        zlb_hist_record(st->lat[ZLB_LAT_CONNECT], 1ull << 50); /* clamped */
        zlb_hist_record_n(st->lat[ZLB_LAT_HTTP_RESPONSE], 123456789, 1000000);
        s->info[i].id = (int)i;
        s->info[i].cpu = (int)(i + 3);
        snprintf(s->info[i].policy, sizeof(s->info[i].policy), "other");
        s->info[i].stats.cpu_time_ns = 42 + i;
    }
    for (size_t t = 0; t < s->ntargets; t++)
        s->target[t].attempted = 10 * t + seed;
    s->taken_ns = 111 + seed;
    s->first_attempt_ns = 22;
    s->target_reached_ns = 33;
    s->scheduler_backlog = 4;
}

/* What goes over the socketpair reads back exactly: counters, facts, every histogram's counts,
 * sums and extremes, and the total is the sum of the pollers. */
static void test_wire_round_trip(void)
{
    zlb_work_snapshot_t a, b;
    zlb_procs_snapshot_alloc(&a, 3, 2);
    zlb_procs_snapshot_alloc(&b, 3, 2);
    fill(&a, 5);
    zlb_procs_bytes_t bytes = {0};
    zlb_procs_encode(&a, true, &bytes);
    size_t cap = bytes.cap;
    bool idle = false;
    ASSERT_EQ(zlb_procs_decode(bytes.data, bytes.len, &b, &idle), 0);
    fprintf(stderr, "   3 pollers, 2 targets: %zu bytes\n", bytes.len);
    ASSERT(idle);
    ASSERT_UEQ(b.taken_ns, a.taken_ns);
    ASSERT_UEQ(b.first_attempt_ns, 22);
    ASSERT_UEQ(b.target_reached_ns, 33);
    ASSERT_UEQ(b.scheduler_backlog, 4);
    zlb_stats_t sum;
    zlb_stats_init(&sum);
    for (size_t i = 0; i < 3; i++) {
        ASSERT(memcmp(&a.poller[i].c, &b.poller[i].c, sizeof(zlb_counters_t)) == 0);
        ASSERT(memcmp(&a.info[i], &b.info[i], sizeof(zlb_poller_info_t)) == 0);
        for (int l = 0; l < ZLB_LAT__COUNT; l++) {
            const zlb_hist_t *x = a.poller[i].lat[l], *y = b.poller[i].lat[l];
            ASSERT_UEQ(zlb_hist_count(y), zlb_hist_count(x));
            ASSERT_UEQ(zlb_hist_clamped(y), zlb_hist_clamped(x));
            ASSERT_UEQ(zlb_hist_min(y), zlb_hist_min(x));
            ASSERT_UEQ(zlb_hist_max(y), zlb_hist_max(x));
            ASSERT_CMP_DBL(zlb_hist_mean(y), ==, zlb_hist_mean(x));
            ASSERT_CMP_DBL(zlb_hist_stddev(y), ==, zlb_hist_stddev(x));
            for (double p = 0; p <= 100; p += 0.5)
                ASSERT_UEQ(zlb_hist_percentile(y, p), zlb_hist_percentile(x, p));
        }
        zlb_stats_add(&sum, &a.poller[i]);
    }
    ASSERT(memcmp(&sum.c, &b.total.c, sizeof(zlb_counters_t)) == 0);
    ASSERT_UEQ(zlb_hist_count(b.total.lat[ZLB_LAT_CONNECT]),
               zlb_hist_count(sum.lat[ZLB_LAT_CONNECT]));
    for (size_t t = 0; t < 2; t++)
        ASSERT_UEQ(b.target[t].attempted, a.target[t].attempted);

    /* A second image of the same size reuses the buffer. */
    fill(&a, 5);
    zlb_procs_encode(&a, false, &bytes);
    ASSERT_UEQ(bytes.cap, cap);

    /* Every truncation is refused, never read past; so is another shape. */
    for (size_t cut = 0; cut < bytes.len; cut += 1 + cut / 8)
        ASSERT_EQ(zlb_procs_decode(bytes.data, cut, &b, &idle), -EINVAL);
    zlb_work_snapshot_t other;
    zlb_procs_snapshot_alloc(&other, 2, 2);
    ASSERT_EQ(zlb_procs_decode(bytes.data, bytes.len, &other, &idle), -EINVAL);
    /* An empty poller (nothing recorded yet) reads back empty. */
    zlb_work_snapshot_t empty;
    zlb_procs_snapshot_alloc(&empty, 1, 0);
    zlb_procs_encode(&empty, false, &bytes);
    ASSERT_EQ(zlb_procs_decode(bytes.data, bytes.len, &empty, &idle), 0);
    ASSERT_UEQ(zlb_hist_count(empty.total.lat[ZLB_LAT_CONNECT]), 0);

    zlb_stats_dispose(&sum);
    zlb_procs_bytes_dispose(&bytes);
    zlb_work_snapshot_dispose(&a);
    zlb_work_snapshot_dispose(&b);
    zlb_work_snapshot_dispose(&other);
    zlb_work_snapshot_dispose(&empty);
}

int main(void)
{
    RUN_TEST(test_cpus_partition);
    RUN_TEST(test_auto_count);
    RUN_TEST(test_wire_round_trip);
    return TEST_EXIT_CODE();
}
