/* test_config_stages.c -- "stages": parsing with the file's rules, and the profile's arithmetic
 * (linear moves, jumps, lowering, rates reaching 0, a last stage that holds for ever). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/core.h"
#include "test.h"
#include "test_config_util.h"

#define S ZLB_NS_PER_SEC

static void test_parse(void)
{
    zlb_config_t *cfg =
        parse("{\"connect_rate\": 100, \"workload\": {\"type\": \"echo\", "
              "\"message_rate\": 10},\n \"stages\": [\n"
              "  {\"duration\": \"5s\", \"connections\": 50, \"message_rate\": 500},\n"
              "  {\"duration\": \"0s\", \"connect_rate\": 0},\n"
              "  {\"duration\": \"2500ms\", \"close_rate\": 20}]}");
    ASSERT_UEQ(cfg->nstages, 3);
    /* Not written beside stages: the profile starts from no connection. */
    ASSERT_UEQ(cfg->connections, 0);
    ASSERT_UEQ(cfg->stages[0].duration_ns, 5 * S);
    ASSERT_UEQ(cfg->stages[0].set, ZLB_STAGE_CONNECTIONS | ZLB_STAGE_RATE);
    ASSERT_UEQ(cfg->stages[0].to.connections, 50);
    ASSERT_CMP_DBL(cfg->stages[0].to.rate, ==, 500);
    ASSERT_UEQ(cfg->stages[1].set, ZLB_STAGE_CONNECT_RATE);
    ASSERT_UEQ(cfg->stages[2].set, ZLB_STAGE_CLOSE_RATE);
    /* The run lasts the stages. */
    ASSERT_UEQ(cfg->duration_ns, 7500 * ZLB_NS_PER_MS);
    ASSERT(zlb_config_rate_is_live(cfg));
    ASSERT_UEQ(zlb_config_peak_connections(cfg), 50);

    /* The effective config reads back to the same stages (and no "duration"). */
    json_t *j = zlb_config_to_json(cfg);
    ASSERT(json_object_get(j, "duration") == NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    char *shown = json_dumps(json_object_get(j, "stages"), JSON_COMPACT);
    printf("  stages: %s\n", shown);
    free(shown);
    zlb_config_t *back = parse(text);
    ASSERT_UEQ(back->nstages, 3);
    ASSERT(memcmp(back->stages, cfg->stages, 3 * sizeof(zlb_stage_t)) == 0);
    ASSERT_UEQ(back->connections, 0);
    char h1[17], h2[17];
    zlb_config_hash(cfg, h1);
    zlb_config_hash(back, h2);
    ASSERT_STREQ(h1, h2);
    free(text);
    json_decref(j);
    zlb_config_destroy(back);
    zlb_config_destroy(cfg);

    /* A last stage of length 0 holds until stopped: no duration. */
    cfg = parse("{\"connections\": 3, \"stages\": [{\"duration\": \"1s\", \"connections\": 5}, "
                "{\"duration\": \"0s\"}]}");
    ASSERT_UEQ(cfg->connections, 3);
    ASSERT_UEQ(cfg->duration_ns, 0);
    ASSERT(!zlb_config_rate_is_live(cfg));
    zlb_config_destroy(cfg);
}

/* A stream's rate (workload.rate, bytes/s per connection) moves as "stream_rate": the profile
 * starts from workload.rate, and the effective config reads it back under the same key. */
static void test_stream_rate(void)
{
    zlb_config_t *cfg =
        parse("{\"workload\": {\"type\": \"stream\", \"rate\": 1000},\n"
              "\"stages\": [{\"duration\": \"2s\", \"connections\": 4, "
              "\"stream_rate\": 3000}, {\"duration\": \"1s\", \"stream_rate\": 0}]}");
    zlb_stage_values_t v0, v;

    ASSERT_STREQ(zlb_config_rate_key(cfg->workload.type), "stream_rate");
    ASSERT_UEQ(cfg->stages[0].set,
               ZLB_STAGE_CONNECTIONS | ZLB_STAGE_RATE | ZLB_STAGE_RATE_ZERO_UNLIMITED);
    ASSERT_CMP_DBL(cfg->stages[0].to.rate, ==, 3000);
    ASSERT_CMP_DBL(cfg->stages[1].to.rate, ==, 0);
    zlb_config_stage_start(cfg, &v0);
    ASSERT_CMP_DBL(v0.rate, ==, 1000);
    /* Half-way through the first stage: half-way from 1000 to 3000. */
    zlb_config_stages_at(cfg->stages, cfg->nstages, &v0, 1 * S, &v, NULL);
    printf("  stream_rate at 1 s: %.17g (want 2000)\n", v.rate);
    ASSERT_NEAR(v.rate, 2000, 1e-6);
    /* 0 is "as fast as the socket takes", no number on the way: to it and from it, a jump at
     * the stage's start (as connect_rate's), where a message_rate of 0 is reached linearly. */
    zlb_config_stages_at(cfg->stages, cfg->nstages, &v0, 2 * S + 1, &v, NULL);
    printf("  stream_rate just into the move to 0: %.17g (want 0)\n", v.rate);
    ASSERT_CMP_DBL(v.rate, ==, 0);
    zlb_config_t *up = parse("{\"workload\": {\"type\": \"stream\"}, \"connections\": 2, "
                             "\"stages\": [{\"duration\": \"2s\", \"stream_rate\": 3000}]}");
    zlb_config_stage_start(up, &v0);
    zlb_config_stages_at(up->stages, up->nstages, &v0, 1, &v, NULL);
    printf("  stream_rate just into the move from 0 to 3000: %.17g (want 3000)\n", v.rate);
    ASSERT_CMP_DBL(v.rate, ==, 3000);
    zlb_config_destroy(up);
    zlb_config_t *echo = parse("{\"workload\": {\"type\": \"echo\", \"message_rate\": 1000}, "
                               "\"stages\": [{\"duration\": \"2s\", \"message_rate\": 0}]}");
    zlb_config_stage_start(echo, &v0);
    zlb_config_stages_at(echo->stages, echo->nstages, &v0, 1 * S, &v, NULL);
    ASSERT_NEAR(v.rate, 500, 1e-9);
    zlb_config_destroy(echo);

    json_t *j = zlb_config_to_json(cfg);
    char *shown = json_dumps(json_object_get(j, "stages"), JSON_COMPACT);
    printf("  stages: %s\n", shown);
    ASSERT(strstr(shown, "\"stream_rate\": 3000") || strstr(shown, "\"stream_rate\":3000"));
    free(shown);
    json_decref(j);
    zlb_config_destroy(cfg);
}

static void test_refusals(void)
{
    expect_parse_error(
        "{\"stages\": [{\"duration\": \"1s\"}, {\"duration\": \"1s\", \"conections\": 5}]}",
        "t.json:1:52: stages[1].conections: unknown key 'conections' (did you mean "
        "'connections'?)");
    expect_parse_error("{\"stages\": [{\"duration\": \"1s\", \"request_rate\": 5}]}",
                       "stages[0].request_rate: the hold workload has no rate to set");
    expect_parse_error("{\"workload\": {\"type\": \"stream\"}, \"stages\": [{\"duration\": \"1s\", "
                       "\"rate\": 5}]}",
                       "stages[0].rate: the stream workload's rate is stream_rate, not rate");
    expect_parse_error("{\"workload\": {\"type\": \"stream\"}, \"stages\": [{\"duration\": \"1s\", "
                       "\"stream_rate\": 2e12}]}",
                       "stages[0].stream_rate: expected a number 0..1e12, got 2e+12");
    expect_parse_error(
        "{\"workload\": {\"type\": \"stream\", \"direction\": \"receive\"}, "
        "\"stages\": [{\"duration\": \"1s\", \"stream_rate\": 5}]}",
        "stages[0].stream_rate: paces what is sent; direction \"receive\" sends nothing");
    expect_parse_error("{\"workload\": {\"type\": \"echo\"}, \"stages\": [{\"duration\": \"1s\", "
                       "\"request_rate\": 5}]}",
                       "stages[0].request_rate: the echo workload's rate is message_rate, not "
                       "request_rate");
    expect_parse_error("{\"stages\": [{\"duration\": \"1s\"}, {\"connections\": 5}]}",
                       "t.json:1:33: stages[1]: missing \"duration\"");
    expect_parse_error("{\"stages\": [{\"duration\": \"1s\", \"connections\": -1}]}",
                       "stages[0].connections: expected an integer 0..10000000, got -1");
    expect_parse_error("{\"stages\": [{\"duration\": \"1s\", \"connect_rate\": 0.0001}]}",
                       "stages[0].connect_rate: expected 0 (unlimited) or a number 0.001..1e9");
    expect_parse_error("{\"stages\": [{\"duration\": 5}]}",
                       "stages[0].duration: expected a duration with a unit");
    expect_parse_error("{\"stages\": []}", "stages: expected at least one stage");
    expect_parse_error("{\"stages\": {}}", "stages: expected an array of stages, got an object");
    expect_parse_error("{\"stages\": [3]}", "stages[0]: expected a stage object");
    expect_parse_error("{\"duration\": \"10s\", \"stages\": [{\"duration\": \"1s\"}]}",
                       "t.json:1:2: duration: a run with stages lasts as long as its stages");
    expect_parse_error("{\"ramp\": {\"duration\": \"1s\"}, \"stages\": [{\"duration\": \"1s\"}]}",
                       "ramp.duration: a run with stages ramps with its stages");
    expect_parse_error(
        "{\"warmup\": \"3s\", \"stages\": [{\"duration\": \"1s\"}, {\"duration\": \"2s\"}]}",
        "warmup: warmup (3s) must be shorter than the stages together (3s)");
    /* Without stages, 0 connections is still no run. */
    expect_parse_error("{\"connections\": 0}",
                       "connections: expected an integer 1..10000000, got 0");

    /* The command line's --duration meets the same rule. */
    zlb_config_t *cfg = parse("{\"stages\": [{\"duration\": \"1s\", \"connections\": 2}]}");
    zlb_config_error_t err;
    ASSERT_EQ(zlb_config_override(cfg, "--duration", "duration", json_string("5s"), NULL, &err),
              -EINVAL);
    printf("  --duration -> %s\n", err.message);
    ASSERT(strstr(err.message, "--duration: a run with stages lasts") != NULL);
    zlb_config_destroy(cfg);
    /* --processes splits a staged run: the parent's stager hands each process its share. */
    cfg = parse("{\"processes\": 2, \"stages\": [{\"duration\": \"1s\", \"connections\": 4}]}");
    ASSERT_EQ(cfg->processes, 2u);
    zlb_config_destroy(cfg);
    cfg = parse("{\"stages\": [{\"duration\": \"1s\", \"connections\": 2}]}");
    ASSERT_EQ(zlb_config_override(cfg, "--processes", "processes", json_integer(4), NULL, &err), 0);
    ASSERT_EQ(cfg->processes, 4u);
    zlb_config_destroy(cfg);
}

/* PATCH /run's entry point: the same rules, paths under the caller's prefix, no file position. */
static void test_parse_stages_api(void)
{
    zlb_config_t *cfg = parse("{\"embedded_target\": {\"mode\": \"http\"}, \"workload\": "
                              "{\"type\": \"http\"}}");
    char err[256];
    zlb_stage_t *st = NULL;
    size_t n = 0;
    json_t *a = json_loads("[{\"duration\": \"2s\", \"request_rate\": 300}, {\"duration\": \"1s\", "
                           "\"connections\": \"x\"}]",
                           0, NULL);
    ASSERT_EQ(zlb_config_parse_stages(cfg, a, "stages", &st, &n, err, sizeof(err)), -EINVAL);
    printf("  -> %s\n", err);
    ASSERT_STREQ(err, "stages[1].connections: expected an integer 0..10000000, got a string");
    ASSERT(st == NULL);
    json_decref(a);
    a = json_loads("[{\"duration\": \"2s\", \"request_rate\": 300}]", 0, NULL);
    ASSERT_EQ(zlb_config_parse_stages(cfg, a, "stages", &st, &n, err, sizeof(err)), 0);
    ASSERT_UEQ(n, 1);
    ASSERT_UEQ(st[0].set, ZLB_STAGE_RATE);
    ASSERT_CMP_DBL(st[0].to.rate, ==, 300);
    free(st);
    json_decref(a);
    zlb_config_destroy(cfg);
}

static void check_at(const zlb_stage_t *st, size_t n, const zlb_stage_values_t *start, double t_s,
                     size_t want_index, uint64_t want_conns, double want_cr, double want_rate)
{
    zlb_stage_values_t v;
    uint64_t began;
    size_t i = zlb_config_stages_at(st, n, start, (uint64_t)(t_s * 1e9), &v, &began);
    printf("  t=%.3fs: stage %zu, connections %llu, connect_rate %g, rate %g (began %.3fs)\n", t_s,
           i, (unsigned long long)v.connections, v.connect_rate, v.rate, (double)began / 1e9);
    ASSERT_UEQ(i, want_index);
    ASSERT_UEQ(v.connections, want_conns);
    ASSERT_NEAR(v.connect_rate, want_cr, 1e-9);
    ASSERT_NEAR(v.rate, want_rate, 1e-9);
}

static void test_arithmetic(void)
{
    /* up 0 -> 100 over 10 s, a jump to 300 (and the rate to 0), hold 5 s, down to 20 over 4 s */
    zlb_stage_t st[] = {
        {10 * S, ZLB_STAGE_CONNECTIONS | ZLB_STAGE_RATE, {.connections = 100, .rate = 1000}},
        {0, ZLB_STAGE_CONNECTIONS | ZLB_STAGE_RATE, {.connections = 300, .rate = 0}},
        {5 * S, 0, {0}},
        {4 * S,
         ZLB_STAGE_CONNECTIONS | ZLB_STAGE_CONNECT_RATE,
         {.connections = 20, .connect_rate = 100}},
    };
    zlb_stage_values_t start = {.connections = 0, .connect_rate = 500, .rate = 0};
    check_at(st, 4, &start, 0, 0, 0, 500, 0);
    check_at(st, 4, &start, 2.5, 0, 25, 500, 250);
    check_at(st, 4, &start, 9.999, 0, 100, 500, 999.9); /* 99.99 rounds to 100 */
    check_at(st, 4, &start, 5.004, 0, 50, 500, 500.4);  /* 50.04: nearest */
    check_at(st, 4, &start, 0.006, 0, 0, 500, 0.6);     /* 0.06 rounds down */
    /* At 10 s exactly the zero-length stage has jumped: stage 2 holds 300 and rate 0. */
    check_at(st, 4, &start, 10, 2, 300, 500, 0);
    check_at(st, 4, &start, 14.9, 2, 300, 500, 0);
    /* Lowering connections, with connect_rate moving 500 -> 100 beside it. */
    check_at(st, 4, &start, 15, 3, 300, 500, 0);
    check_at(st, 4, &start, 17, 3, 160, 300, 0);
    /* Over: the last values hold, index n. */
    check_at(st, 4, &start, 19, 4, 20, 100, 0);
    check_at(st, 4, &start, 1000, 4, 20, 100, 0);
    bool forever;
    ASSERT_UEQ(zlb_config_stages_length(st, 4, &forever), 19 * S);
    ASSERT(!forever);

    /* A rate reaching 0 linearly; connect_rate from unlimited (0) is a jump. */
    zlb_stage_t down[] = {
        {4 * S, ZLB_STAGE_RATE | ZLB_STAGE_CONNECT_RATE, {.rate = 0, .connect_rate = 200}},
        {0, ZLB_STAGE_CONNECTIONS, {.connections = 7}},
    };
    zlb_stage_values_t s2 = {.connections = 10, .connect_rate = 0, .rate = 400};
    check_at(down, 2, &s2, 0, 0, 10, 200, 400);
    check_at(down, 2, &s2, 3, 0, 10, 200, 100);
    /* The last stage has length 0: it holds for ever from 4 s on. */
    check_at(down, 2, &s2, 4, 1, 7, 200, 0);
    check_at(down, 2, &s2, 1e6, 1, 7, 200, 0);
    ASSERT_UEQ(zlb_config_stages_length(down, 2, &forever), 4 * S);
    ASSERT(forever);
    /* A move to unlimited jumps at the stage's start too. */
    zlb_stage_t unl = {2 * S,
                       ZLB_STAGE_CONNECT_RATE | ZLB_STAGE_CLOSE_RATE,
                       {.connect_rate = 0, .close_rate = 50}};
    zlb_stage_values_t from = {.connect_rate = 300, .close_rate = 10}, v;
    zlb_config_stage_move(&unl, &from, S, &v);
    ASSERT_CMP_DBL(v.connect_rate, ==, 0);
    ASSERT_NEAR(v.close_rate, 30, 1e-9);
}

int main(void)
{
    zlb_log_level = ZLB_LOG_WARN;
    RUN_TEST(test_parse);
    RUN_TEST(test_stream_rate);
    RUN_TEST(test_refusals);
    RUN_TEST(test_parse_stages_api);
    RUN_TEST(test_arithmetic);
    return TEST_EXIT_CODE();
}
