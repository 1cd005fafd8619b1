/* test_run_stages.c -- the stage driver on a runner without an engine: boundaries at their
 * times (zero-length stages included), each stage's window figures, a PATCH's override held to
 * the next boundary and moved from there, a stop inside a stage, appends (after a stage that
 * holds for ever, and to a run without stages). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/run_internal.h"
#include "test.h"
#include "test_config_util.h"

#define S ZLB_NS_PER_SEC
#define T0 (1000 * S) /* the run's start on the fake monotonic clock */

static void runner_init(zlb_runner_t *r, const zlb_config_t *cfg)
{
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    r->t_start = T0;
    zlb_events_init(&r->events, ZLB_EVENTS_MAX);
    zlb_series_init(&r->series, 1, S, 64);
    zlb_stats_init(&r->snap.total);
    r->snap.taken_ns = T0;
    zlb_stager_init(r);
}

static void runner_dispose(zlb_runner_t *r)
{
    zlb_stager_dispose(&r->stager);
    zlb_stats_dispose(&r->snap.total);
    zlb_series_dispose(&r->series);
    zlb_events_dispose(&r->events);
    zlb_config_destroy((zlb_config_t *)r->cfg);
}

/* A tick at t seconds with `established` connections so far (the snapshot the tick follows). */
static bool tick(zlb_runner_t *r, double t, uint64_t established)
{
    uint64_t now = T0 + (uint64_t)(t * 1e9);
    r->snap.taken_ns = now;
    r->snap.total.c.attempted = r->snap.total.c.established = established;
    r->snap.total.c.open = established;
    bool over = zlb_runner_stages_tick(r, now);
    printf("   t=%.3fs: stage %zu/%zu, connections %llu, connect_rate %g%s\n", t, r->stager.index,
           r->stager.n, (unsigned long long)r->stager.now.connections, r->stager.now.connect_rate,
           over ? " (over)" : "");
    return over;
}

static void test_boundaries_and_windows(void)
{
    zlb_runner_t r;
    runner_init(&r, parse("{\"connect_rate\": 100, \"stages\": ["
                          "{\"duration\": \"10s\", \"connections\": 100},"
                          "{\"duration\": \"5s\"},"
                          "{\"duration\": \"0s\", \"connections\": 300, \"connect_rate\": 50},"
                          "{\"duration\": \"4s\", \"connections\": 100}]}"));
    zlb_runner_stages_begin(&r);
    ASSERT_UEQ(r.stager.now.connections, 0);
    ASSERT_EQ(r.series.stage, 0);
    ASSERT_UEQ(zlb_runner_stages_next_ns(&r), T0 + 10 * S);
    ASSERT(!tick(&r, 2.5, 20));
    ASSERT_UEQ(r.stager.now.connections, 25);
    /* The tick after the boundary (woken at it): stage 0's window is 0..10.05 s. */
    ASSERT(!tick(&r, 10.05, 100));
    ASSERT_UEQ(r.stager.index, 1);
    ASSERT_EQ(r.series.stage, 1);
    ASSERT_UEQ(r.stager.now.connections, 100);
    ASSERT_UEQ(zlb_runner_stages_next_ns(&r), T0 + 15 * S);
    ASSERT(!tick(&r, 12, 100));
    /* At 15 s exactly: the hold ends, the jump (stage 2) happens, stage 3 moves 300 -> 100. */
    ASSERT(!tick(&r, 15, 110));
    ASSERT_UEQ(r.stager.index, 3);
    ASSERT_UEQ(r.stager.now.connections, 300);
    ASSERT_CMP_DBL(r.stager.now.connect_rate, ==, 50);
    ASSERT(!tick(&r, 17, 300));
    ASSERT_UEQ(r.stager.now.connections, 200);
    json_t *now = zlb_runner_stage_json(&r); /* GET /run's "stage" */
    ASSERT_EQ(json_integer_value(json_object_get(now, "index")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(now, "count")), 4);
    ASSERT_NEAR(json_number_value(json_object_get(now, "duration_s")), 4, 1e-9);
    json_decref(now);
    ASSERT(tick(&r, 19.001, 300));
    ASSERT_UEQ(r.stager.index, 4);
    ASSERT_UEQ(zlb_runner_stages_next_ns(&r), UINT64_MAX);

    json_t *st = zlb_runner_stages_json(&r);
    char *text = json_dumps(st, JSON_COMPACT);
    printf("   %.600s...\n", text);
    free(text);
    ASSERT_UEQ(json_array_size(st), 4);
    static const double start[] = {0, 10.05, 15, 15}, end[] = {10.05, 15, 15, 19.001};
    static const long long est[] = {100, 10, 0, 190};
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(st, i);
        ASSERT_NEAR(json_number_value(json_object_get(e, "start_s")), start[i], 1e-6);
        ASSERT_NEAR(json_number_value(json_object_get(e, "end_s")), end[i], 1e-6);
        ASSERT(json_is_true(json_object_get(e, "completed")));
        ASSERT_EQ(
            json_integer_value(json_object_get(json_object_get(e, "connections"), "established")),
            est[i]);
    }
    /* The jump's window is empty; its targets are what it names. */
    json_t *jump = json_array_get(st, 2);
    ASSERT_NEAR(json_number_value(json_object_get(jump, "seconds")), 0, 1e-9);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(jump, "targets"), "connections")),
              300);
    ASSERT(json_object_get(json_object_get(jump, "targets"), "message_rate") == NULL);
    json_decref(st);
    /* One "stage" event per stage, in order. */
    json_t *ev = zlb_events_json(&r.events, 0);
    ASSERT_UEQ(json_array_size(ev), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(ev, i);
        ASSERT_STREQ(json_string_value(json_object_get(e, "what")), "stage");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(e, "to"), "index")), (long)i);
    }
    json_decref(ev);
    runner_dispose(&r);
}

/* A PATCH during a stage holds its value to the boundary; the next stage moves from it. */
static void test_override(void)
{
    zlb_runner_t r;
    runner_init(&r, parse("{\"connections\": 100, \"stages\": ["
                          "{\"duration\": \"5s\"},"
                          "{\"duration\": \"4s\", \"connections\": 10}]}"));
    zlb_runner_stages_begin(&r);
    ASSERT(!tick(&r, 1, 100));
    zlb_work_live_t v = {.connections = 70,
                         .connect_rate = r.stager.now.connect_rate,
                         .rate = r.stager.now.rate,
                         .close_rate = r.stager.now.close_rate};
    zlb_runner_stages_override(&r, &v);
    ASSERT_UEQ(r.stager.overridden, ZLB_STAGE_CONNECTIONS);
    ASSERT(!tick(&r, 4.9, 100));
    ASSERT_UEQ(r.stager.now.connections, 70);
    ASSERT(!tick(&r, 5, 100));
    ASSERT_UEQ(r.stager.index, 1);
    ASSERT_UEQ(r.stager.overridden, 0);
    ASSERT_UEQ(r.stager.now.connections, 70); /* the move starts from the PATCHed value */
    ASSERT(!tick(&r, 7, 100));
    ASSERT_UEQ(r.stager.now.connections, 40);
    ASSERT(tick(&r, 9, 100));
    ASSERT_UEQ(r.stager.now.connections, 10);
    runner_dispose(&r);
}

/* Stopped inside stage 1 of 3: stage 1 ends at the stop (not completed), stage 2 has its plan
 * only (no figures for a threshold to read as zero). */
static void test_stop_inside(void)
{
    zlb_runner_t r;
    runner_init(&r, parse("{\"stages\": [{\"duration\": \"1s\", \"connections\": 10},"
                          "{\"duration\": \"5s\"}, {\"duration\": \"5s\", \"connections\": 0}]}"));
    zlb_runner_stages_begin(&r);
    ASSERT(!tick(&r, 1.5, 10));
    r.snap.taken_ns = T0 + 3 * S;
    zlb_runner_stages_stop(&r);
    ASSERT(!tick(&r, 20, 10)); /* nothing moves after the stop */
    ASSERT_UEQ(r.stager.index, 1);
    json_t *st = zlb_runner_stages_json(&r);
    json_t *s1 = json_array_get(st, 1), *s2 = json_array_get(st, 2);
    ASSERT(json_is_false(json_object_get(s1, "completed")));
    ASSERT_NEAR(json_number_value(json_object_get(s1, "end_s")), 3, 1e-9);
    ASSERT(json_is_null(json_object_get(s2, "start_s")));
    ASSERT(json_object_get(s2, "latency_us") == NULL);
    double x;
    json_t *report = json_pack("{s:O}", "stages", st);
    ASSERT_EQ(zlb_report_lookup(report, "stages.1.rates.connects_per_s", &x), 0);
    ASSERT_EQ(zlb_report_lookup(report, "stages.2.rates.connects_per_s", &x), -ENOENT);
    json_decref(report);
    json_decref(st);
    runner_dispose(&r);
}

static void test_append(void)
{
    zlb_runner_t r;
    /* After a last stage that holds for ever: it ends at the append. */
    runner_init(&r, parse("{\"stages\": [{\"duration\": \"2s\", \"connections\": 10}, "
                          "{\"duration\": \"0s\"}]}"));
    zlb_runner_stages_begin(&r);
    ASSERT(!tick(&r, 3, 10));
    ASSERT_UEQ(r.stager.index, 1);
    ASSERT_UEQ(zlb_runner_stages_next_ns(&r), UINT64_MAX); /* holds */
    ASSERT(!tick(&r, 50, 10));
    zlb_stage_t more = {2 * S, ZLB_STAGE_CONNECTIONS, {.connections = 20}};
    r.snap.taken_ns = T0 + 50 * S;
    ASSERT_EQ(zlb_runner_stages_append_at(&r, &more, 1, T0 + 50 * S), 0);
    ASSERT_UEQ(r.stager.st[1].duration_ns, 48 * S);
    ASSERT(!tick(&r, 51, 10));
    ASSERT_UEQ(r.stager.index, 2);
    ASSERT_UEQ(r.stager.now.connections, 15);
    ASSERT(tick(&r, 52, 15)); /* a profile from the config ends the run */
    runner_dispose(&r);

    /* To a run without stages: a profile starts now from the values in force; the run keeps
     * its own length. */
    runner_init(&r, parse("{\"connections\": 40, \"duration\": \"30s\"}"));
    ASSERT(!tick(&r, 1, 40));
    r.snap.taken_ns = T0 + 2 * S;
    ASSERT_EQ(zlb_runner_stages_append_at(&r, &more, 1, T0 + 2 * S), 0);
    ASSERT(!tick(&r, 3, 40));
    ASSERT_UEQ(r.stager.now.connections, 30);
    ASSERT(!tick(&r, 5, 40)); /* over, but it does not end the run */
    ASSERT_UEQ(r.stager.index, 1);
    ASSERT_UEQ(r.stager.now.connections, 20);
    /* Once that profile is over, another append starts again from the values in force. */
    r.snap.taken_ns = T0 + 6 * S;
    ASSERT_EQ(zlb_runner_stages_append_at(&r, &more, 1, T0 + 6 * S), 0);
    ASSERT_UEQ(r.stager.index, 1);
    ASSERT(!tick(&r, 7, 40));
    ASSERT_UEQ(r.stager.now.connections, 20);
    r.stager.st[1].to.connections = 40; /* (the copy is the driver's own) */
    ASSERT_CMP_DBL((double)more.to.connections, ==, 20);
    ASSERT(!tick(&r, 7.5, 40));
    ASSERT_UEQ(r.stager.now.connections, 35);
    json_t *st = zlb_runner_stages_json(&r);
    ASSERT_UEQ(json_array_size(st), 2);
    ASSERT_NEAR(json_number_value(json_object_get(json_array_get(st, 1), "start_s")), 6, 1e-9);
    json_decref(st);
    runner_dispose(&r);

    /* A profile from the config that has ended has ended the run: nothing to append to. */
    runner_init(&r, parse("{\"stages\": [{\"duration\": \"1s\", \"connections\": 3}]}"));
    zlb_runner_stages_begin(&r);
    ASSERT(tick(&r, 1, 3));
    ASSERT_EQ(zlb_runner_stages_append_at(&r, &more, 1, T0 + 2 * S), -ESRCH);
    runner_dispose(&r);
}

int main(void)
{
    zlb_log_level = ZLB_LOG_WARN;
    RUN_TEST(test_boundaries_and_windows);
    RUN_TEST(test_override);
    RUN_TEST(test_stop_inside);
    RUN_TEST(test_append);
    return TEST_EXIT_CODE();
}
