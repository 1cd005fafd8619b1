/* test_run.c -- the CI gate: metric paths, thresholds, compare verdicts and exit codes, merge. */
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "run/run_internal.h"
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
    json_t *steady = json_object();
    json_object_set_new(steady, "seconds", json_real(10));
    json_object_set_new(steady, "connections", zlb_counters_to_json(&s.c, 100));
    json_object_set_new(steady, "rates", json_pack("{s:f}", "connects_per_s", connects_per_s));
    json_object_set_new(steady, "latency_us", zlb_stats_latency_json(&s, pcts, 4));
    json_object_set_new(steady, "histograms", zlb_stats_histograms_json(&s));
    json_t *rep = json_object();
    json_object_set_new(rep, "schema", json_string(ZLB_STATS_SCHEMA));
    json_object_set_new(rep, "connections", zlb_counters_to_json(&s.c, 100));
    json_object_set_new(rep, "rates", json_pack("{s:f}", "connects_per_s", connects_per_s));
    json_object_set_new(rep, "latency_us", zlb_stats_latency_json(&s, pcts, 4));
    json_object_set_new(rep, "histograms", zlb_stats_histograms_json(&s));
    json_object_set_new(rep, "steady", steady);
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
    return zlb_run_compare(argc, argv);
}

static void test_metric_paths(void)
{
    ASSERT(zlb_run_metric_path_valid("latency_us.connect.p99"));
    ASSERT(zlb_run_metric_path_valid("latency_us.tls_handshake_full.p9999"));
    ASSERT(zlb_run_metric_path_valid("latency_us.schedule_lag.max"));
    ASSERT(zlb_run_metric_path_valid("connections.failed.total"));
    ASSERT(zlb_run_metric_path_valid("connections.failed.refused"));
    ASSERT(zlb_run_metric_path_valid("rates.connects_per_s"));
    ASSERT(zlb_run_metric_path_valid("generator.saturated"));
    ASSERT(zlb_run_metric_path_valid("tls.resumed_ratio"));
    ASSERT(!zlb_run_metric_path_valid("latency_us.connect.p99x"));
    ASSERT(!zlb_run_metric_path_valid("latency_us.connectt.p99"));
    ASSERT(!zlb_run_metric_path_valid("connections.failed.nope"));
    ASSERT(!zlb_run_metric_path_valid("rates"));
    ASSERT(!zlb_run_metric_path_valid("bogus.path"));
    ASSERT(!zlb_run_metric_path_valid(""));
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
    ASSERT_EQ(zlb_config_parse(text, "t.json", zlb_run_metric_path_valid, &cfg, &err), 0);
    ASSERT_EQ(cfg->nthresholds, 7);
    uint64_t lat[] = {100, 200, 300};
    json_t *rep = make_report(600, lat, 3, 10);
    /* The whole run says 0 connects/s; the steady figure (600) must be the one used. */
    json_object_set_new(json_object_get(rep, "rates"), "connects_per_s", json_real(0));
    int failed = zlb_thresholds_evaluate(cfg, rep);
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
                               zlb_run_metric_path_valid, &cfg, &err),
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
    ASSERT_EQ(compare(base, same, "--metric", "latency_us.echo_rtt.p99"), ZLB_EXIT_OK);
    char out0[160];
    snprintf(out0, sizeof(out0), "%s/missing.json", tmpdir);
    char *argv0[] = {"compare", (char *)base, (char *)same, "--metric", "latency_us.echo_rtt.p99",
                     "--json",  out0,         NULL};
    ASSERT_EQ(zlb_run_compare(7, argv0), ZLB_EXIT_OK);
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
    ASSERT_EQ(zlb_run_compare(5, argv), ZLB_EXIT_REGRESSION);
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
    ASSERT_EQ(zlb_run_merge(5, argv), ZLB_EXIT_OK);
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
    ASSERT_EQ(zlb_run_merge(4, argv2), ZLB_EXIT_USAGE);
}

int main(void)
{
    make_tmpdir();
    RUN_TEST(test_metric_paths);
    RUN_TEST(test_lookup);
    RUN_TEST(test_thresholds);
    RUN_TEST(test_compare_verdicts);
    RUN_TEST(test_merge);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    fprintf(stderr, "all run tests passed\n");
    return 0;
}
