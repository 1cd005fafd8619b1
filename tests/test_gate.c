/* test_gate.c -- the CI gate: metric paths, thresholds, compare verdicts and exit codes, merge. */
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "core/core.h"
#include "gate/gate.h"
#include "gate/gate_internal.h"
#include "report/report.h"
#include "test.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zlb-test-run.XXXXXX");
    ASSERT(mkdtemp(tmpdir) != NULL);
}

/* A report with the fields compare and merge read: connects/s and connect latencies drawn from
 * `lat_us` (every value recorded `reps` times), in the steady object and at the top level. */
static json_t *make_report(double connects_per_s, const uint64_t *lat_us, size_t n, int reps)
{
    zlb_stats_t s;
    zlb_stats_init(&s);
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < reps; r++)
            zlb_stats_record(&s, ZLB_LAT_CONNECT, lat_us[i] * 1000);
    s.c.attempted = s.c.established = s.c.closed_by_us = n * (size_t)reps;
    static const double pcts[] = {50, 90, 99, 99.9};
    zlb_rates_t rates = {.connects_per_s = connects_per_s};
    zlb_report_level_t lv = {.stats = &s,
                             .target = 100,
                             .rates = &rates,
                             .percentiles = pcts,
                             .npercentiles = 4,
                             .histograms = true};
    json_t *steady = json_object();
    json_object_set_new(steady, "seconds", json_real(10));
    zlb_report_put_level(steady, &lv);
    json_t *rep = json_object();
    json_object_set_new(rep, "schema", json_string(ZLB_REPORT_SCHEMA));
    json_object_set_new(rep, "config_hash", json_string("0123456789abcdef"));
    lv.totals = true;
    zlb_report_put_level(rep, &lv);
    json_object_set_new(rep, "steady", steady);
    json_t *target = zlb_counters_to_json(&s.c, 100);
    json_object_set_new(target, "name", json_string("127.0.0.1:7"));
    json_object_set_new(target, "tls", json_false());
    json_object_set_new(rep, "targets", json_pack("[o]", target));
    json_object_set_new(rep, "host", json_pack("{s:s}", "hostname", "test-host"));
    json_object_set_new(rep, "generator", json_pack("{s:b}", "saturated", 0));
    json_object_set_new(rep, "ramp", json_pack("{s:b, s:f}", "target_reached", 1, "seconds", 1.0));
    zlb_stats_dispose(&s);
    return rep;
}

static const char *write_report(const char *name, json_t *rep)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    ASSERT_EQ(json_dump_file(rep, p, 0), 0);
    json_decref(rep);
    return p;
}

static int compare(const char *a, const char *b, const char *extra1, const char *extra2)
{
    const char *args[] = {a, b, extra1, extra2};
    char *argv[8] = {"compare"};
    int argc = 1;
    for (size_t i = 0; i < ZLB_ARRAY_LEN(args); i++)
        if (args[i])
            argv[argc++] = (char *)args[i];
    fflush(stdout);
    return zlb_gate_compare(argc, argv);
}

static void test_metric_paths(void)
{
    ASSERT(zlb_report_metric_valid("latency_us.connect.p99"));
    ASSERT(zlb_report_metric_valid("latency_us.tls_handshake_full.p9999"));
    ASSERT(zlb_report_metric_valid("latency_us.schedule_lag.max"));
    ASSERT(zlb_report_metric_valid("connections.failed.total"));
    ASSERT(zlb_report_metric_valid("connections.failed.refused"));
    ASSERT(zlb_report_metric_valid("rates.connects_per_s"));
    ASSERT(zlb_report_metric_valid("generator.saturated"));
    ASSERT(zlb_report_metric_valid("tls.resumed_ratio"));
    ASSERT(!zlb_report_metric_valid("latency_us.connect.p99x"));
    ASSERT(!zlb_report_metric_valid("latency_us.connectt.p99"));
    ASSERT(!zlb_report_metric_valid("connections.failed.nope"));
    ASSERT(!zlb_report_metric_valid("rates"));
    ASSERT(!zlb_report_metric_valid("bogus.path"));
    ASSERT(!zlb_report_metric_valid(""));
    /* A stage's figures are the same metrics, under stages.N. */
    ASSERT(zlb_report_metric_valid("stages.2.latency_us.connect.p99"));
    ASSERT(zlb_report_metric_valid("stages.0.rates.connects_per_s"));
    ASSERT(zlb_report_metric_better("stages.0.rates.connects_per_s") == ZLB_BETTER_HIGHER);
    ASSERT(zlb_report_metric_better("stages.1.latency_us.connect.p99") == ZLB_BETTER_LOWER);
    ASSERT(!zlb_report_metric_valid("stages.x.latency_us.connect.p99"));
    ASSERT(!zlb_report_metric_valid("stages.2"));
    ASSERT(!zlb_report_metric_valid("stages.2.bogus"));
    ASSERT(!zlb_report_metric_valid("stages..latency_us.connect.p99"));
}

static void test_lookup(void)
{
    json_t *j = json_loads("{\"a\":{\"b\":[{\"c\":3.5},{\"c\":true}]},\"s\":\"x\"}", 0, NULL);
    double v = 0;
    ASSERT_EQ(zlb_report_lookup(j, "a.b[0].c", &v), 0);
    ASSERT_NEAR(v, 3.5, 1e-12);
    ASSERT_EQ(zlb_report_lookup(j, "a.b[1].c", &v), 0);
    ASSERT_NEAR(v, 1, 0);
    ASSERT_NE(zlb_report_lookup(j, "a.b[2].c", &v), 0);
    ASSERT_NE(zlb_report_lookup(j, "s", &v), 0); /* strings are not numbers */
    ASSERT_NE(zlb_report_lookup(j, "a.x", &v), 0);
    /* A numeric segment indexes an array ("stages.2.x" as "stages[2].x"). */
    ASSERT_EQ(zlb_report_lookup(j, "a.b.0.c", &v), 0);
    ASSERT_NEAR(v, 3.5, 1e-12);
    ASSERT_NE(zlb_report_lookup(j, "a.b.7.c", &v), 0);
    json_decref(j);
}

/* Every operator, both outcomes, steady figures preferred over whole-run ones. */
static void test_thresholds(void)
{
    const char *text = "{\"thresholds\": {"
                       "\"latency_us.connect.p50\": \"< 1000\","
                       "\"latency_us.connect.max\": \"<= 100\","
                       "\"rates.connects_per_s\": \">500\","
                       "\"connections.established\": \">= 10\","
                       "\"connections.failed.total\": \"== 0\","
                       "\"generator.saturated\": \"!= true\","
                       "\"ramp.seconds\": \"> 5\""
                       "}}";
    zlb_config_t *cfg = NULL;
    zlb_config_error_t err;
    ASSERT_EQ(zlb_config_parse(text, "t.json", zlb_report_metric_valid, &cfg, &err), 0);
    ASSERT_EQ(cfg->nthresholds, 7);
    uint64_t lat[] = {100, 200, 300};
    json_t *rep = make_report(600, lat, 3, 10);
    /* The whole run says 0 connects/s; the steady figure (600) must be the one used. */
    json_object_set_new(json_object_get(rep, "rates"), "connects_per_s", json_real(0));
    int failed = zlb_gate_thresholds(cfg, rep);
    json_t *rows = json_object_get(rep, "thresholds");
    ASSERT_EQ(json_array_size(rows), 7);
    /* p50 ~200 < 1000 pass; max ~300 <= 100 FAIL; 600 > 500 pass; 30 >= 10 pass; 0 == 0 pass;
     * saturated false != true pass; ramp 1 > 5 FAIL */
    ASSERT_EQ(failed, 2);
    size_t i;
    json_t *row;
    int npass = 0;
    json_array_foreach(rows, i, row)
    {
        const char *path = json_string_value(json_object_get(row, "path"));
        bool passed = json_is_true(json_object_get(row, "passed"));
        npass += passed;
        if (strcmp(path, "latency_us.connect.max") == 0 || strcmp(path, "ramp.seconds") == 0)
            ASSERT(!passed);
        if (strcmp(path, "rates.connects_per_s") == 0) {
            ASSERT(passed);
            ASSERT_STREQ(json_string_value(json_object_get(row, "source")), "steady");
            ASSERT_NEAR(json_number_value(json_object_get(row, "observed")), 600, 1e-9);
        }
    }
    ASSERT_EQ(npass, 5);
    json_decref(rep);
    zlb_config_destroy(cfg);

    /* An unknown path is a config error naming the key. */
    ASSERT_NE(zlb_config_parse("{\"thresholds\": {\"latency_us.conect.p99\": \"< 5\"}}", "t.json",
                               zlb_report_metric_valid, &cfg, &err),
              0);
    ASSERT(strstr(err.message, "latency_us.conect.p99") != NULL);
}

static void test_compare_verdicts(void)
{
    uint64_t base_lat[] = {100, 110, 120, 130, 140};
    uint64_t slow_lat[] = {300, 330, 360, 390, 420};
    uint64_t fast_lat[] = {50, 55, 60, 65, 70};
    const char *base = write_report("base.json", make_report(1000, base_lat, 5, 20));
    const char *same = write_report("same.json", make_report(1030, base_lat, 5, 20));
    const char *slow = write_report("slow.json", make_report(1000, slow_lat, 5, 20));
    const char *fast = write_report("fast.json", make_report(1500, fast_lat, 5, 20));
    const char *fewer = write_report("fewer.json", make_report(700, base_lat, 5, 20));

    ASSERT_EQ(compare(base, same, NULL, NULL), ZLB_EXIT_OK);          /* within tolerance */
    ASSERT_EQ(compare(base, slow, NULL, NULL), ZLB_EXIT_REGRESSION);  /* latency x3 */
    ASSERT_EQ(compare(base, fast, NULL, NULL), ZLB_EXIT_OK);          /* improvement */
    ASSERT_EQ(compare(base, fewer, NULL, NULL), ZLB_EXIT_REGRESSION); /* -30 % connects/s */
    ASSERT_EQ(compare(base, fewer, "--tolerance", "40%"), ZLB_EXIT_OK);
    /* Direction: slower connects are a regression only for "lower is better" metrics. */
    ASSERT_EQ(compare(slow, base, NULL, NULL), ZLB_EXIT_OK);
    /* Within noise: baselines spread by 40 % absorb a 30 % drop even with 10 % tolerance. */
    const char *b2 = write_report("b2.json", make_report(600, base_lat, 5, 20));
    char side[300];
    snprintf(side, sizeof(side), "%s,%s", base, b2);
    ASSERT_EQ(compare(side, fewer, "--metric", "rates.connects_per_s"), ZLB_EXIT_OK);
    ASSERT_EQ(compare(base, fewer, "--metric", "rates.connects_per_s"), ZLB_EXIT_REGRESSION);
    /* A requested metric missing from a report (no echo round trips recorded) is reported as
     * missing, and is no regression. */
    ASSERT_EQ(compare(base, same, "--metric", "latency_us.message_rt.p99"), ZLB_EXIT_OK);
    char out0[160];
    snprintf(out0, sizeof(out0), "%s/missing.json", tmpdir);
    char *argv0[] = {"compare", (char *)base, (char *)same, "--metric", "latency_us.message_rt.p99",
                     "--json",  out0,         NULL};
    ASSERT_EQ(zlb_gate_compare(7, argv0), ZLB_EXIT_OK);
    json_t *d0 = json_load_file(out0, 0, NULL);
    ASSERT(d0 != NULL);
    ASSERT_STREQ(json_string_value(
                     json_object_get(json_array_get(json_object_get(d0, "metrics"), 0), "verdict")),
                 "missing");
    json_decref(d0);
    /* Usage errors. */
    ASSERT_EQ(compare(base, NULL, NULL, NULL), ZLB_EXIT_USAGE);
    ASSERT_EQ(compare(base, same, "--metric", "no.such.path"), ZLB_EXIT_USAGE);
    ASSERT_EQ(compare(base, same, "--tolerance", "ten"), ZLB_EXIT_USAGE);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/none.json", tmpdir);
    ASSERT_EQ(compare(base, missing, NULL, NULL), ZLB_EXIT_USAGE);

    /* --json writes the table with verdicts and the distribution distance. */
    char out[160];
    snprintf(out, sizeof(out), "%s/cmp.json", tmpdir);
    char *argv[] = {"compare", (char *)base, (char *)slow, "--json", out, NULL};
    ASSERT_EQ(zlb_gate_compare(5, argv), ZLB_EXIT_REGRESSION);
    json_t *doc = json_load_file(out, 0, NULL);
    ASSERT(doc != NULL);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "regressions")), 3); /* p50, p90, p99 */
    size_t i;
    json_t *row;
    bool saw_ks = false;
    json_array_foreach(json_object_get(doc, "metrics"), i, row)
    {
        const char *m = json_string_value(json_object_get(row, "metric"));
        if (strcmp(m, "latency_us.connect.p99") == 0) {
            ASSERT_STREQ(json_string_value(json_object_get(row, "verdict")), "regression");
            /* disjoint distributions: KS distance 1 */
            ASSERT_NEAR(json_number_value(json_object_get(row, "ks_distance")), 1.0, 1e-9);
            saw_ks = true;
        }
    }
    ASSERT(saw_ks);
    json_decref(doc);
}

/* merge(A, B) has the histogram of A added to B's by hand, and summed counters. */
static void test_merge(void)
{
    uint64_t la[] = {10, 20, 30};
    uint64_t lb[] = {1000, 2000};
    json_t *ra = make_report(100, la, 3, 7), *rb = make_report(200, lb, 2, 5);
    zlb_hist_t *ha = NULL, *hb = NULL;
    const char *err;
    ASSERT_EQ(zlb_hist_from_json(json_object_get(json_object_get(ra, "histograms"), "connect"), &ha,
                                 &err),
              0);
    ASSERT_EQ(zlb_hist_from_json(json_object_get(json_object_get(rb, "histograms"), "connect"), &hb,
                                 &err),
              0);
    ASSERT_EQ(zlb_hist_add(ha, hb), 0);
    const char *a = write_report("ma.json", ra), *b = write_report("mb.json", rb);
    char out[160];
    snprintf(out, sizeof(out), "%s/merged.json", tmpdir);
    char *argv[] = {"merge", (char *)a, (char *)b, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(5, argv), ZLB_EXIT_OK);
    json_t *m = json_load_file(out, 0, NULL);
    ASSERT(m != NULL);
    zlb_hist_t *hm = NULL;
    ASSERT_EQ(
        zlb_hist_from_json(json_object_get(json_object_get(m, "histograms"), "connect"), &hm, &err),
        0);
    ASSERT_UEQ(zlb_hist_count(hm), 3 * 7 + 2 * 5);
    ASSERT_UEQ(zlb_hist_count(hm), zlb_hist_count(ha));
    for (double p = 0; p <= 100; p += 2.5)
        ASSERT_UEQ(zlb_hist_percentile(hm, p), zlb_hist_percentile(ha, p));
    ASSERT_UEQ(zlb_hist_min(hm), zlb_hist_min(ha));
    ASSERT_UEQ(zlb_hist_max(hm), zlb_hist_max(ha));
    ASSERT_NEAR(zlb_hist_mean(hm), zlb_hist_mean(ha), 1e-6);
    double v = 0;
    ASSERT_EQ(zlb_report_lookup(m, "connections.established", &v), 0);
    ASSERT_NEAR(v, 31, 0);
    ASSERT_EQ(zlb_report_lookup(m, "steady.rates.connects_per_s", &v), 0);
    ASSERT_NEAR(v, 300, 1e-9);
    ASSERT_EQ(zlb_report_lookup(m, "steady.latency_us.connect.count", &v), 0);
    ASSERT_NEAR(v, 31, 0);
    json_decref(m);
    zlb_hist_destroy(ha);
    zlb_hist_destroy(hb);
    zlb_hist_destroy(hm);
    /* Not a report: usage error. */
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/bad.json", tmpdir);
    FILE *f = fopen(bad, "w");
    fputs("{\"schema\": \"other\"}", f);
    fclose(f);
    char *argv2[] = {"merge", bad, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(4, argv2), ZLB_EXIT_USAGE);
}

/* Which way each metric is better comes from the one table; bytes.* are metrics too. */
static void test_metric_directions(void)
{
    ASSERT_EQ(zlb_report_metric_better("rates.connects_per_s"), ZLB_BETTER_HIGHER);
    ASSERT_EQ(zlb_report_metric_better("rates.failures_per_s"), ZLB_BETTER_LOWER);
    ASSERT_EQ(zlb_report_metric_better("latency_us.connect.p99"), ZLB_BETTER_LOWER);
    ASSERT_EQ(zlb_report_metric_better("connections.failed.total"), ZLB_BETTER_LOWER);
    ASSERT_EQ(zlb_report_metric_better("connections.failed_after_established.reset"),
              ZLB_BETTER_LOWER);
    ASSERT_EQ(zlb_report_metric_better("connections.established"), ZLB_BETTER_HIGHER);
    ASSERT_EQ(zlb_report_metric_better("ramp.seconds"), ZLB_BETTER_LOWER);
    ASSERT(zlb_report_metric_valid("bytes.in"));
    ASSERT(zlb_report_metric_valid("connections.failed_before_established.total"));
    ASSERT(!zlb_report_metric_valid("connections.failed"));
    ASSERT(!zlb_report_metric_valid("connections.established.total"));
    ASSERT(!zlb_report_metric_valid("rates.connects_per_s.x"));
    /* Every default compared metric is a valid one. */
    for (size_t i = 0; i < zlb_report_ncompared; i++)
        ASSERT(zlb_report_metric_valid(zlb_report_compared[i].path));
}

/* Rates computed from counters over an interval, written and read back by the same rows. */
static void test_rates_round_trip(void)
{
    zlb_counters_t a = {0}, b = {0};
    b.established = 300;
    b.closed_by_peer = 30;
    b.failed_before[ZLB_FAIL_REFUSED] = 6;
    b.bytes_in = 3000;
    b.bytes_out = 1500;
    b.messages = 60;
    b.responses = 30;
    zlb_rates_t r = {0}, back = {0};
    zlb_rates_over(&r, &a, &b, 3.0);
    ASSERT_NEAR(r.connects_per_s, 100, 1e-9);
    ASSERT_NEAR(r.closes_per_s, 10, 1e-9);
    ASSERT_NEAR(r.failures_per_s, 2, 1e-9);
    ASSERT_NEAR(r.bytes_in_per_s, 1000, 1e-9);
    ASSERT_NEAR(r.bytes_out_per_s, 500, 1e-9);
    ASSERT_NEAR(r.messages_per_s, 20, 1e-9);
    zlb_rates_add(&back, &r);
    zlb_rates_add(&back, &r);
    ASSERT_NEAR(back.messages_per_s, 40, 1e-9);
    json_t *j = zlb_report_rates_json(&r);
    ASSERT_EQ(json_object_size(j), 7);
    ASSERT_NEAR(json_number_value(json_object_get(j, "requests_per_s")), 10, 1e-9);
    ASSERT_NEAR(json_number_value(json_object_get(j, "failures_per_s")), 2, 1e-9);
    json_decref(j);
    zlb_rates_over(&r, &a, &b, 0);
    ASSERT_NEAR(r.connects_per_s, 0, 0);
}

/* Counters read back from their JSON are the counters written; derived keys must agree. */
static void test_counters_from_json(void)
{
    zlb_counters_t c = {0}, back;
    c.attempted = 20;
    c.established = 15;
    c.in_flight = 1;
    c.failed_before[ZLB_FAIL_TIMEOUT] = 4;
    c.open = 10;
    c.closed_by_us = 2;
    c.closed_by_peer = 1;
    c.failed_after[ZLB_FAIL_RESET] = 2;
    json_t *j = zlb_counters_to_json(&c, 50);
    uint64_t target = 0;
    char err[256] = "";
    ASSERT_EQ(zlb_counters_from_json(j, &back, &target, err, sizeof(err)), 0);
    ASSERT_UEQ(target, 50);
    ASSERT(memcmp(&back, &c, sizeof(c)) == 0);
    json_object_set_new(j, "closed", json_integer(4));
    ASSERT_NE(zlb_counters_from_json(j, &back, NULL, err, sizeof(err)), 0);
    printf("  closed tampered: %s\n", err);
    ASSERT(strncmp(err, "closed:", 7) == 0);
    json_object_set_new(j, "closed", json_integer(3));
    json_object_set_new(json_object_get(j, "failed"), "reset", json_integer(3));
    ASSERT_NE(zlb_counters_from_json(j, &back, NULL, err, sizeof(err)), 0);
    printf("  failed.reset tampered: %s\n", err);
    ASSERT(strstr(err, "failed.reset") != NULL);
    json_object_set_new(json_object_get(j, "failed"), "reset", json_integer(2));
    json_object_set_new(j, "open", json_string("10"));
    ASSERT_NE(zlb_counters_from_json(j, &back, NULL, err, sizeof(err)), 0);
    ASSERT(strncmp(err, "open:", 5) == 0);
    json_decref(j);
}

/* Expects zlb_report_check to refuse rep with a message that starts with `path`. */
static void expect_refused(json_t *rep, const char *path)
{
    char err[512] = "";
    ASSERT_NE(zlb_report_check(rep, err, sizeof(err)), 0);
    printf("  %-40s -> %s\n", path, err);
    ASSERT(strncmp(err, path, strlen(path)) == 0);
}

static void add_to(json_t *obj, const char *key, json_int_t d)
{
    json_object_set_new(obj, key, json_integer(json_integer_value(json_object_get(obj, key)) + d));
}

/* Reports are inputs (issue 13): a report edited so that its figures no longer add up is refused
 * by merge and compare (exit 2) before anything uses it, with the JSON path in the message. */
static void test_reports_checked(void)
{
    uint64_t lat[] = {100, 200, 300};
    char err[512] = "";
    json_t *good = make_report(500, lat, 3, 10);
    ASSERT_EQ(zlb_report_check(good, err, sizeof(err)), 0);
    const char *ok = write_report("ok.json", json_deep_copy(good));

    json_t *r = json_deep_copy(good);
    add_to(json_object_get(r, "connections"), "attempted", 5);
    expect_refused(r, "connections.attempted");
    const char *raised = write_report("raised.json", r);
    char out[160];
    snprintf(out, sizeof(out), "%s/raised-merged.json", tmpdir);
    char *argv[] = {"merge", (char *)ok, (char *)raised, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(5, argv), ZLB_EXIT_USAGE);
    ASSERT(access(out, F_OK) != 0); /* nothing written */
    ASSERT_EQ(compare(ok, raised, NULL, NULL), ZLB_EXIT_USAGE);
    ASSERT_EQ(compare(raised, ok, NULL, NULL), ZLB_EXIT_USAGE);

    r = json_deep_copy(good);
    add_to(json_object_get(r, "connections"), "open", 1);
    expect_refused(r, "connections.established");
    json_decref(r);

    r = json_deep_copy(good);
    add_to(json_object_get(json_object_get(json_object_get(r, "steady"), "histograms"), "connect"),
           "count", 1);
    expect_refused(r, "steady.histograms.connect");
    json_decref(r);

    r = json_deep_copy(good);
    add_to(json_object_get(json_object_get(r, "latency_us"), "connect"), "count", 1);
    expect_refused(r, "latency_us.connect.count");
    json_decref(r);

    r = json_deep_copy(good);
    add_to(json_object_get(json_object_get(r, "steady"), "connections"), "closed", 1);
    expect_refused(r, "steady.connections.closed");
    json_decref(r);

    r = json_deep_copy(good);
    json_object_set_new(json_object_get(r, "rates"), "messages_per_s", json_string("fast"));
    expect_refused(r, "rates.messages_per_s");
    json_decref(r);

    r = json_deep_copy(good);
    json_object_set_new(r, "schema", json_string("zlbench.stats/2"));
    expect_refused(r, "schema");
    json_decref(r);

    r = json_deep_copy(good);
    json_object_del(r, "histograms");
    expect_refused(r, "histograms.connect");
    json_decref(r);
    json_decref(good);
}

/* merge: scenarios must match unless told; the output carries its verdict, hosts and targets,
 * and the first config's thresholds judged on the merged figures. */
static void test_merge_scenarios(void)
{
    uint64_t la[] = {10, 20, 30};
    json_t *ra = make_report(100, la, 3, 7), *rb = make_report(200, la, 3, 5);
    zlb_config_t *cfg = NULL;
    zlb_config_error_t cerr;
    ASSERT_EQ(zlb_config_parse("{\"thresholds\": {\"connections.established\": \">= 40\"}}",
                               "t.json", zlb_report_metric_valid, &cfg, &cerr),
              0);
    json_object_set_new(ra, "config", zlb_config_to_json(cfg));
    json_object_set_new(rb, "config", zlb_config_to_json(cfg));
    zlb_config_destroy(cfg);
    json_t *rc = json_deep_copy(rb);
    json_object_set_new(rc, "config_hash", json_string("fedcba9876543210"));
    const char *a = write_report("sa.json", ra), *b = write_report("sb.json", rb),
               *other = write_report("sc.json", rc);
    char out[160];
    snprintf(out, sizeof(out), "%s/scen.json", tmpdir);

    char *mixed[] = {"merge", (char *)a, (char *)other, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(5, mixed), ZLB_EXIT_USAGE);
    char *allowed[] = {"merge", "--allow-mixed", (char *)a, (char *)other, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(6, allowed), ZLB_EXIT_OK);

    char *same[] = {"merge", (char *)a, (char *)b, "-o", out, NULL};
    ASSERT_EQ(zlb_gate_merge(5, same), ZLB_EXIT_OK);
    json_t *m = json_load_file(out, 0, NULL);
    ASSERT(m != NULL);
    char err[512] = "";
    ASSERT_EQ(zlb_report_check(m, err, sizeof(err)), 0); /* a merged report is a valid input */
    /* 21 + 15 established < 40: the merged figures fail the threshold, exit_code 3. */
    ASSERT_EQ(json_integer_value(json_object_get(m, "exit_code")), ZLB_EXIT_THRESHOLDS);
    json_t *row = json_array_get(json_object_get(m, "thresholds"), 0);
    ASSERT(json_is_false(json_object_get(row, "passed")));
    ASSERT_NEAR(json_number_value(json_object_get(row, "observed")), 36, 0);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(m, "host"), "hostname")),
                 "test-host");
    ASSERT_EQ(json_array_size(json_object_get(m, "sources")), 2);
    json_t *targets = json_object_get(m, "targets");
    ASSERT_EQ(json_array_size(targets), 1); /* the same target from both: one row */
    ASSERT_NEAR(json_number_value(json_object_get(json_array_get(targets, 0), "established")), 36,
                0);
    ASSERT_NEAR(json_number_value(json_object_get(json_array_get(targets, 0), "target")), 200, 0);
    json_decref(m);

    char *help[] = {"merge", "--help", NULL};
    ASSERT_EQ(zlb_gate_merge(2, help), ZLB_EXIT_OK);
    char *chelp[] = {"compare", "--help", NULL};
    ASSERT_EQ(zlb_gate_compare(2, chelp), ZLB_EXIT_OK);
    char *noout[] = {"merge", (char *)a, NULL};
    ASSERT_EQ(zlb_gate_merge(2, noout), ZLB_EXIT_USAGE);
}

static char *escaped(const char *in)
{
    zlb_buf_t b;
    zlb_buf_init(&b);
    zlb_gate_xml_escape(&b, in);
    return b.data;
}

/* Names a user or a peer chose, made safe for XML: the five entities, line breaks kept as
 * character references, controls XML 1.0 cannot hold and broken UTF-8 replaced, valid UTF-8
 * kept. */
static void test_xml_escape(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain.path_1", "plain.path_1"},
        {"a<b>&\"c'd", "a&lt;b&gt;&amp;&quot;c&apos;d"},
        {"&lt;", "&amp;lt;"},
        {"tab\there\nnl\rcr", "tab&#9;here&#10;nl&#13;cr"},
        {"bell\x07nul-less\x1b[31m\x7f", "bell?nul-less?[31m?"},
        {"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"},
        {"bad \xc3( \xff \xe2\x9c", "bad ?( ? ??"},
        {"]]>", "]]&gt;"},
        {"", ""},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        char *got = escaped(cases[i].in);
        ASSERT_STREQ(got, cases[i].out);
        free(got);
    }
    char *null_in = escaped(NULL);
    ASSERT_STREQ(null_in, "");
    free(null_in);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* JUnit and markdown of a run's thresholds and of a compare: one testcase per row, counts on
 * both levels, failure messages with observed, limit and change, odd names escaped. */
static void test_ci_render(void)
{
    json_t *rep =
        json_pack("{s:s, s:s, s:i, s:f, s:b, s:s, s:[{s:s}], s:{s:i, s:i, s:{s:i}},"
                  " s:[{s:s, s:s, s:b, s:s, s:f}, {s:s, s:s, s:b, s:s, s:f, s:b}]}",
                  "config_hash", "0123456789abcdef", "stop_reason", "duration", "exit_code", 3,
                  "elapsed_s", 2.5, "valid", 1, "schema", ZLB_REPORT_SCHEMA, "targets", "name",
                  "host|<x>&:1", "connections", "attempted", 10, "established", 9, "failed",
                  "total", 1, "thresholds", "path", "latency_us.connect.p99", "expr", "< 2000",
                  "passed", 0, "source", "steady", "observed", 2500.0, "path", "failure_ratio",
                  "expr", "<= 0.1", "passed", 1, "source", "run", "observed", 0.1, "default", 1);
    json_t *cmp = json_pack(
        "{s:s, s:f, s:i, s:[{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:s},"
        " {s:s, s:s, s:f, s:f, s:s}, {s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:s}]}",
        "schema", "zlbench.compare/1", "tolerance_pct", 10.0, "regressions", 1, "metrics", "metric",
        "rates.connects_per_s", "better", "higher", "baseline", 1000.0, "current", 800.0,
        "change_pct", -20.0, "tolerance_pct", 10.0, "noise_pct", 3.0, "verdict", "regression",
        "metric", "latency_us.tls_handshake_full.p99", "better", "lower", "tolerance_pct", 10.0,
        "noise_pct", 0.0, "verdict", "missing", "metric", "latency_us.connect.p50", "better",
        "lower", "baseline", 100.0, "current", 95.0, "change_pct", -5.0, "tolerance_pct", 10.0,
        "noise_pct", 1.0, "verdict", "unchanged");
    ASSERT(rep && cmp);

    char *xml = zlb_gate_junit_render(rep, cmp);
    fprintf(stderr, "%s", xml);
    ASSERT(strncmp(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites ", 50) == 0);
    /* valid run + 2 thresholds + 3 metrics; 1 threshold and 1 regression failed */
    ASSERT(strstr(xml, "<testsuites name=\"zlbench\" tests=\"6\" failures=\"2\"") != NULL);
    ASSERT(strstr(xml, "name=\"zlbench.thresholds\" tests=\"3\" failures=\"1\"") != NULL);
    ASSERT(strstr(xml, "name=\"zlbench.compare\" tests=\"3\" failures=\"1\" errors=\"0\" "
                       "skipped=\"1\"") != NULL);
    ASSERT_EQ(count_of(xml, "<testcase "), 6);
    ASSERT_EQ(count_of(xml, "</testcase>"), 6);
    ASSERT_EQ(count_of(xml, "<failure "), 2);
    ASSERT_EQ(count_of(xml, "<skipped "), 1);
    ASSERT(strstr(xml, "name=\"latency_us.connect.p99 &lt; 2000\"") != NULL);
    ASSERT(strstr(xml, "message=\"observed 2500, limit latency_us.connect.p99 &lt; 2000, change "
                       "+25.0% of the limit (steady-state figures)\"") != NULL);
    ASSERT(strstr(xml, "message=\"regression: baseline 1000, current 800, change -20.0%, limit "
                       "10% (tolerance) or 3% (noise), higher is better\"") != NULL);
    free(xml);

    /* An invalid run fails its "valid run" case with the reason. */
    json_object_set_new(rep, "valid", json_false());
    json_object_set_new(rep, "invalid_reason", json_string("the generator saturated <here>"));
    xml = zlb_gate_junit_render(rep, NULL);
    ASSERT(strstr(xml, "tests=\"3\" failures=\"2\"") != NULL);
    ASSERT(strstr(xml, "message=\"invalid run: the generator saturated &lt;here&gt;\"") != NULL);
    ASSERT(strstr(xml, "zlbench.compare") == NULL);
    free(xml);

    char *md = zlb_gate_summary_md_render(rep, cmp);
    fprintf(stderr, "%s", md);
    ASSERT(strstr(md, "### zlbench run: INVALID RUN (exit 3)") != NULL);
    ASSERT(strstr(md, "Target `host\\|<x>&:1`") != NULL); /* '|' cannot split a cell */
    ASSERT(strstr(md, "| threshold | observed | verdict |\n|---|---|---|\n") != NULL);
    ASSERT(strstr(md, "| `latency_us.connect.p99 < 2000` | 2500 | **FAIL** |\n") != NULL);
    ASSERT(strstr(md, "| `failure_ratio <= 0.1` (default) | 0.1 | pass |\n") != NULL);
    ASSERT(strstr(md, "### zlbench compare: REGRESSION (1 regression(s), tolerance 10%)") != NULL);
    ASSERT(strstr(md, "| `rates.connects_per_s` | 1000 | 800 | -20.0% | **regression** |\n") !=
           NULL);
    ASSERT(strstr(md, "| `latency_us.tls_handshake_full.p99` | - | - | - | missing |\n") != NULL);
    free(md);
    json_decref(rep);
    json_decref(cmp);
}

int main(void)
{
    make_tmpdir();
    RUN_TEST(test_metric_paths);
    RUN_TEST(test_lookup);
    RUN_TEST(test_thresholds);
    RUN_TEST(test_compare_verdicts);
    RUN_TEST(test_merge);
    RUN_TEST(test_metric_directions);
    RUN_TEST(test_rates_round_trip);
    RUN_TEST(test_counters_from_json);
    RUN_TEST(test_reports_checked);
    RUN_TEST(test_merge_scenarios);
    RUN_TEST(test_xml_escape);
    RUN_TEST(test_ci_render);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    fprintf(stderr, "all gate tests passed\n");
    return 0;
}
