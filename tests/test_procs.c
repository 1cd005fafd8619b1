/* test_procs.c -- --processes: the CPU partition, the auto count, the snapshot wire format, the
 * split of live values over the processes and the parent's command frames. */
#include <errno.h>
#include <stdio.h>
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

/* The shares of a run's live values add up to the whole for every count: connections and whole-
 * number rates exactly (as integers, remainders on the first processes, the same rule as
 * zlb_config_apply_shard), fractional rates and rates below the count within a rounding of the
 * double sum; paused is every process's. */
static void test_live_share_sums(void)
{
    static const zlb_work_live_t sets[] = {
        {.connections = 600, .connect_rate = 1000, .close_rate = 0, .rate = 3000},
        {.connections = 7, .connect_rate = 1001, .close_rate = 500, .rate = 10, .paused = true},
        {.connections = 1, .connect_rate = 0, .close_rate = 1, .rate = 2.5},
        {.connections = 0, .connect_rate = 333.3, .close_rate = 7, .rate = 0},
        {.connections = 10000001, .connect_rate = 5, .close_rate = 1e9, .rate = 999999.75},
        {.connections = 13, .connect_rate = 0.5, .close_rate = 6, .rate = 7},
    };
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        const zlb_work_live_t *w = &sets[s];
        for (uint32_t n = 1; n <= 7; n++) {
            uint64_t conns = 0;
            double cr = 0, clr = 0, rate = 0;
            for (uint32_t i = 0; i < n; i++) {
                zlb_work_live_t p;
                zlb_procs_live_share(ZLB_WORK_ECHO, w, i, n, &p);
                conns += p.connections;
                cr += p.connect_rate;
                clr += p.close_rate;
                rate += p.rate;
                ASSERT(p.paused == w->paused);
                /* Remainders to the first: no share exceeds an earlier one. */
                if (i > 0) {
                    zlb_work_live_t q;
                    zlb_procs_live_share(ZLB_WORK_ECHO, w, i - 1, n, &q);
                    ASSERT(p.connections <= q.connections);
                    ASSERT(p.connect_rate <= q.connect_rate);
                }
                /* 0 means unlimited / as fast as allowed / none: every share keeps it. */
                if (w->connect_rate == 0)
                    ASSERT(p.connect_rate == 0);
                if (w->connect_rate > 0)
                    ASSERT(p.connect_rate > 0);
                if (w->close_rate > 0)
                    ASSERT(p.close_rate > 0);
            }
            if (n == 3 || n == 7)
                printf("  set %zu over %u: connections %llu (whole %llu), connect_rate %.9g "
                       "(%.9g), close_rate %.9g (%.9g), rate %.9g (%.9g)\n",
                       s, n, (unsigned long long)conns, (unsigned long long)w->connections, cr,
                       w->connect_rate, clr, w->close_rate, rate, w->rate);
            ASSERT_UEQ(conns, w->connections);
            double vals[3][2] = {{cr, w->connect_rate}, {clr, w->close_rate}, {rate, w->rate}};
            for (int k = 0; k < 3; k++) {
                double sum = vals[k][0], whole = vals[k][1];
                /* A whole number at least n: integer shares, the sum exact. */
                if (whole >= n && whole == (double)(uint64_t)whole)
                    ASSERT(sum == whole);
                else
                    ASSERT_NEAR(sum, whole, whole * 1e-12);
            }
        }
    }
    /* The worked example of the docs: 1000/s over 3 is 334 + 333 + 333, 600 connections 200
     * each, 7 over 3 is 3 + 2 + 2. */
    zlb_work_live_t p;
    zlb_procs_live_share(ZLB_WORK_HTTP, &sets[0], 0, 3, &p);
    ASSERT(p.connect_rate == 334 && p.connections == 200 && p.rate == 1000);
    zlb_procs_live_share(ZLB_WORK_HTTP, &sets[0], 2, 3, &p);
    ASSERT(p.connect_rate == 333 && p.connections == 200);
    zlb_procs_live_share(ZLB_WORK_HTTP, &sets[1], 0, 3, &p);
    ASSERT(p.connections == 3 && p.connect_rate == 334 && p.close_rate == 167);
    zlb_procs_live_share(ZLB_WORK_HTTP, &sets[1], 1, 3, &p);
    ASSERT(p.connections == 2 && p.connect_rate == 334 && p.close_rate == 167);
    /* A stream's rate is bytes/s per connection: every process keeps it whole, the rest splits. */
    for (uint32_t i = 0; i < 3; i++) {
        zlb_procs_live_share(ZLB_WORK_STREAM, &sets[1], i, 3, &p);
        printf("  stream, process %u of 3: connections %llu, connect_rate %.9g, rate %.9g (whole "
               "%.9g)\n",
               i, (unsigned long long)p.connections, p.connect_rate, p.rate, sets[1].rate);
        ASSERT(p.rate == sets[1].rate && p.connections == (i == 0 ? 3u : 2u) &&
               p.connect_rate == (i < 2 ? 334 : 333));
    }
}

/* The command stream as a child reads it: single bytes and live frames, cut anywhere. */
static void test_cmd_frames(void)
{
    zlb_work_live_t a = {.connections = 42, .connect_rate = 1.5, .close_rate = 9, .rate = 77};
    zlb_work_live_t b = {.connections = 0, .paused = true};
    uint8_t stream[3 * ZLB_PROCS_CMD_FRAME_MAX];
    size_t len = 0;
    stream[len++] = 'L';
    len += zlb_procs_live_encode(&a, stream + len);
    stream[len++] = 'S';
    len += zlb_procs_live_encode(&b, stream + len);
    stream[len++] = 'F';
    static const uint8_t want[] = {'L', 'V', 'S', 'V', 'F'};
    /* Fed in pieces of every size from 1 byte to the whole. */
    for (size_t piece = 1; piece <= len; piece++) {
        zlb_procs_cmdbuf_t buf = {.len = 0};
        size_t fed = 0, got = 0;
        int lives = 0;
        while (fed < len || buf.len) {
            size_t take = len - fed < piece ? len - fed : piece;
            memcpy(buf.buf + buf.len, stream + fed, take);
            buf.len += take;
            fed += take;
            uint8_t cmd;
            zlb_work_live_t v;
            int rc;
            while ((rc = zlb_procs_cmd_next(&buf, &cmd, &v)) == 1) {
                ASSERT(got < sizeof(want));
                ASSERT_EQ(cmd, want[got]);
                got++;
                if (cmd == ZLB_PROCS_CMD_LIVE) {
                    const zlb_work_live_t *w = lives++ == 0 ? &a : &b;
                    ASSERT(v.connections == w->connections && v.connect_rate == w->connect_rate &&
                           v.close_rate == w->close_rate && v.rate == w->rate &&
                           v.paused == w->paused);
                }
            }
            ASSERT_EQ(rc, 0);
            if (fed == len)
                ASSERT_UEQ(buf.len, 0);
        }
        ASSERT_UEQ(got, sizeof(want));
    }
    printf("  %zu bytes of commands read back whole in pieces of 1..%zu bytes\n", len, len);

    /* A broken stream is said so, not read on. */
    zlb_procs_cmdbuf_t bad = {.len = 1};
    uint8_t cmd;
    zlb_work_live_t v;
    bad.buf[0] = 'x';
    ASSERT_EQ(zlb_procs_cmd_next(&bad, &cmd, &v), -EPROTO);
    bad.len = zlb_procs_live_encode(&a, bad.buf);
    bad.buf[1] = ZLB_PROCS_LIVE_VERSION + 1;
    ASSERT_EQ(zlb_procs_cmd_next(&bad, &cmd, &v), -EPROTO);
    bad.len = zlb_procs_live_encode(&a, bad.buf);
    uint16_t huge = 60000;
    memcpy(bad.buf + 2, &huge, 2);
    ASSERT_EQ(zlb_procs_cmd_next(&bad, &cmd, &v), -EPROTO);
    /* A header alone is no command yet. */
    bad.len = 3;
    bad.buf[1] = ZLB_PROCS_LIVE_VERSION;
    ASSERT_EQ(zlb_procs_cmd_next(&bad, &cmd, &v), 0);
}

int main(void)
{
    RUN_TEST(test_cpus_partition);
    RUN_TEST(test_auto_count);
    RUN_TEST(test_wire_round_trip);
    RUN_TEST(test_live_share_sums);
    RUN_TEST(test_cmd_frames);
    return TEST_EXIT_CODE();
}
