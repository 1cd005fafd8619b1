/* test_run_monitor.c -- rates over named spans, per-poller shares and the saturation rules. */
#include "core/core.h"
#include "run/monitor.h"
#include "test.h"

#define S ZLB_NS_PER_SEC
#define MS ZLB_NS_PER_MS

/* last_interval is the newest sample against the oldest one at least interval old: a burst of
 * connects in the first 0.4 s is not spread over the second that follows. */
static void test_last_interval_and_shares(void)
{
    zlb_monitor_t m;
    zlb_monitor_init(&m, 2, 1 * S, NULL);
    zlb_counters_t c = {0};
    zlb_mon_poller_in_t p[2] = {{0}, {0}};
    for (int tick = 0; tick <= 20; tick++) {
        uint64_t t = (uint64_t)tick * 100 * MS;
        c.established = tick <= 4 ? (uint64_t)tick * 500 : 2000; /* 2000 in 0.4 s, then none */
        p[0].established = c.established;
        p[0].cpu_ns = t / 10;           /* 10 % CPU */
        p[0].runq_wait_ns = t / 2;      /* 50 % waiting for a CPU */
        p[1].runq_wait_ns = UINT64_MAX; /* the kernel does not say */
        p[0].busy_pct = 60;
        zlb_monitor_sample(&m, t, &c, p);
        if (tick == 4) {
            fprintf(stderr, "at 0.4 s: %.0f connects/s over %.2f s\n",
                    m.last_interval.connects_per_s, m.last_interval_s);
            ASSERT_NEAR(m.last_interval.connects_per_s, 5000.0, 1e-6);
            ASSERT_NEAR(m.last_interval_s, 0.4, 1e-9);
        }
    }
    fprintf(stderr, "at 2.0 s: %.0f connects/s over %.2f s, cpu %.1f%% runq %.1f%% / %.1f%%\n",
            m.last_interval.connects_per_s, m.last_interval_s, m.poller[0].cpu_pct,
            m.poller[0].runq_wait_pct, m.poller[1].runq_wait_pct);
    ASSERT_NEAR(m.last_interval.connects_per_s, 0.0, 0);
    ASSERT_NEAR(m.last_interval_s, 1.0, 1e-9);
    ASSERT_NEAR(m.poller[0].cpu_pct, 10.0, 1e-6);
    ASSERT_NEAR(m.poller[0].runq_wait_pct, 50.0, 1e-6);
    ASSERT_NEAR(m.poller[0].busy_pct, 60.0, 0);
    ASSERT_NEAR(m.poller[1].runq_wait_pct, -1.0, 0);
    zlb_monitor_dispose(&m);
}

/* Feeds `secs` of ticks at 100 ms with fixed shares; returns whether the monitor saturated. */
static bool run_sustained(double busy, double runq_pct, uint64_t backlog, bool limited, double secs)
{
    zlb_monitor_t m;
    zlb_monitor_init(&m, 1, 1 * S, NULL);
    zlb_counters_t c = {0};
    zlb_mon_poller_in_t p = {.busy_pct = busy};
    for (uint64_t t = 0; t <= (uint64_t)(secs * 1e9); t += 100 * MS) {
        p.runq_wait_ns = (uint64_t)((double)t * runq_pct / 100.0);
        p.cpu_ns = t / 20;
        zlb_monitor_sample(&m, t, &c, &p);
        zlb_monitor_check_sustained(&m, t, backlog, limited);
    }
    bool sat = m.saturated;
    fprintf(stderr, "busy %.0f runq %.0f backlog %llu for %.1f s: %s %s\n", busy, runq_pct,
            (unsigned long long)backlog, secs, sat ? "SATURATED" : "ok",
            m.nreasons ? m.reasons[0].text : "");
    if (sat)
        ASSERT(strstr(m.reasons[0].text, "poller 0") || strstr(m.reasons[0].text, "scheduler"));
    zlb_monitor_dispose(&m);
    return sat;
}

static void test_sustained_rules(void)
{
    ASSERT(!run_sustained(50, 5, 0, true, 10));  /* a healthy poller */
    ASSERT(!run_sustained(99, 0, 0, true, 2.5)); /* busy, but not for 3 s */
    ASSERT(run_sustained(99, 0, 0, true, 4));    /* pegged */
    /* The starved poller of the issue: 84 % "load" but 8.7 % CPU: the rest waited for a CPU. */
    ASSERT(run_sustained(84, 75, 0, true, 4));
    ASSERT(!run_sustained(10, 10, 0, true, 10));
    ASSERT(!run_sustained(10, 20, 0, true, 10)); /* an idle poller on a crowded machine */
    ASSERT(run_sustained(10, 0, 5, true, 4));    /* attempts due and not handed out */
    ASSERT(!run_sustained(10, 0, 5, false, 4));  /* as fast as possible: no schedule */
}

static void test_lateness_rules(void)
{
    zlb_stats_t s;
    zlb_monitor_t m;

    /* An empty histogram (warm-up >= ramp: no attempt in the steady window) says nothing, and
     * the whole-run span still judges the ramp. */
    zlb_stats_init(&s);
    zlb_monitor_init(&m, 1, S, NULL);
    zlb_monitor_check_lateness(&m, &s, "steady window", 0);
    ASSERT(!m.saturated);
    for (int i = 0; i < 1000; i++)
        zlb_stats_record(&s, ZLB_LAT_SCHEDULE_LAG, i < 850 ? 200 * 1000 : 30 * MS);
    zlb_monitor_check_lateness(&m, &s, "whole run", 0);
    fprintf(stderr, "15%% at 30 ms: %s\n", m.nreasons ? m.reasons[0].text : "not saturated");
    ASSERT(m.saturated);
    ASSERT_EQ(m.reasons[0].rule, ZLB_MON_RULE_LATENESS);
    ASSERT(strstr(m.reasons[0].text, "schedule_lag p90 30.0 ms > 20 ms (whole run"));
    zlb_monitor_dispose(&m);
    zlb_stats_dispose(&s);

    /* Ten attempts are too few for a percentile: all of them 30 ms late says nothing yet. */
    zlb_stats_init(&s);
    zlb_monitor_init(&m, 1, S, NULL);
    for (int i = 0; i < 10; i++)
        zlb_stats_record(&s, ZLB_LAT_SCHEDULE_LAG, 30 * MS);
    zlb_monitor_check_lateness(&m, &s, "whole run", 0);
    ASSERT(!m.saturated);
    zlb_monitor_dispose(&m);
    zlb_stats_dispose(&s);

    /* A freeze: 2 % of the attempts up to 700 ms late. p90 is fine; the stall is not. */
    zlb_stats_init(&s);
    zlb_monitor_init(&m, 1, S, NULL);
    for (int i = 0; i < 1000; i++)
        zlb_stats_record(&s, ZLB_LAT_SCHEDULE_LAG,
                         i < 980 ? 300 * 1000 : (uint64_t)i * MS - 280 * MS);
    zlb_monitor_check_lateness(&m, &s, "steady window", 1u << ZLB_LAT_SCHEDULE_LAG);
    ASSERT(!m.saturated); /* a schedule with no rate: its lag is no lateness */
    zlb_monitor_check_lateness(&m, &s, "steady window", 0);
    fprintf(stderr, "freeze: %s\n", m.nreasons ? m.reasons[0].text : "not saturated");
    ASSERT(m.saturated);
    ASSERT_EQ(m.reasons[0].rule, ZLB_MON_RULE_STALL);
    zlb_monitor_dispose(&m);
    zlb_stats_dispose(&s);

    /* On time: nothing fires. */
    zlb_stats_init(&s);
    zlb_monitor_init(&m, 1, S, NULL);
    for (int i = 0; i < 1000; i++)
        zlb_stats_record(&s, ZLB_LAT_SCHEDULE_LAG, (uint64_t)(i % 50) * 100 * 1000);
    zlb_monitor_check_lateness(&m, &s, "whole run", 0);
    ASSERT(!m.saturated);
    zlb_monitor_dispose(&m);
    zlb_stats_dispose(&s);
}

static void test_lateness_list(void)
{
    /* schedule_lag is judged; latency phases that include the target's time never are. */
    bool has_lag = false;
    for (size_t i = 0; i < zlb_monitor_nlateness; i++) {
        ASSERT(zlb_monitor_lateness[i] != ZLB_LAT_CONNECT);
        has_lag |= zlb_monitor_lateness[i] == ZLB_LAT_SCHEDULE_LAG;
    }
    ASSERT(has_lag);
    ASSERT_STREQ(zlb_monitor_rule_name(ZLB_MON_RULE_RUNQ), "run_queue_wait");
}

int main(void)
{
    RUN_TEST(test_last_interval_and_shares);
    RUN_TEST(test_sustained_rules);
    RUN_TEST(test_lateness_rules);
    RUN_TEST(test_lateness_list);
    return 0;
}
