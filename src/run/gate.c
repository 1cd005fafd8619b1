/* gate.c -- the CI gate: thresholds on a report, `compare` of two runs, `merge` of several. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "run/run_internal.h"

/* ---- thresholds ---------------------------------------------------------------------------- */

static bool op_holds(zlb_op_t op, double observed, double limit)
{
    switch (op) {
    case ZLB_OP_LT:
        return observed < limit;
    case ZLB_OP_LE:
        return observed <= limit;
    case ZLB_OP_GT:
        return observed > limit;
    case ZLB_OP_GE:
        return observed >= limit;
    case ZLB_OP_EQ:
        return observed == limit;
    case ZLB_OP_NE:
        return observed != limit;
    }
    return false;
}

/* Steady-state figures first ("steady.<path>"); what only the whole run has (ramp, generator,
 * open connections) comes from the top level. */
static int lookup_measured(const json_t *report, const char *path, double *out, const char **src)
{
    char steady[256];
    snprintf(steady, sizeof(steady), "steady.%s", path);
    /* A latency phase the measured window never saw (connects of a hold run all happen in a
     * warm-up that covers the ramp) falls back to the whole run rather than reading as 0. */
    const char *dot = strrchr(path, '.');
    if (strncmp(path, "latency_us.", 11) == 0 && dot) {
        char count[256];
        double n = 0;
        snprintf(count, sizeof(count), "steady.%.*s.count", (int)(dot - path), path);
        if (zlb_report_lookup(report, count, &n) == 0 && n == 0) {
            *src = "run";
            return zlb_report_lookup(report, path, out);
        }
    }
    if (zlb_report_lookup(report, steady, out) == 0) {
        *src = "steady";
        return 0;
    }
    *src = "run";
    return zlb_report_lookup(report, path, out);
}

int zlb_thresholds_evaluate(const zlb_config_t *cfg, json_t *report)
{
    json_t *rows = json_array();
    int failed = 0;
    for (size_t i = 0; i < cfg->nthresholds; i++) {
        const zlb_threshold_t *t = &cfg->thresholds[i];
        double observed = 0;
        const char *src = "run";
        bool found = lookup_measured(report, t->path, &observed, &src) == 0;
        bool passed = found && op_holds(t->op, observed, t->value);
        failed += !passed;
        json_t *row = json_pack("{s:s, s:s, s:b, s:s}", "path", t->path, "expr", t->expr, "passed",
                                passed, "source", src);
        json_object_set_new(row, "observed", found ? zlb_json_real(observed) : json_null());
        json_array_append_new(rows, row);
    }
    json_object_set_new(report, "thresholds", rows);
    return failed;
}

/* ---- report files -------------------------------------------------------------------------- */

static json_t *load_report(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        fprintf(stderr, "zlbench: %s:%d:%d: %s\n", path, e.line, e.column, e.text);
        return NULL;
    }
    const char *schema = json_string_value(json_object_get(j, "schema"));
    if (!schema || strcmp(schema, ZLB_STATS_SCHEMA) != 0) {
        fprintf(stderr, "zlbench: %s: not a zlbench report (schema '%s', expected '%s')\n", path,
                schema ? schema : "missing", ZLB_STATS_SCHEMA);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- compare ------------------------------------------------------------------------------- */

typedef struct metric {
    const char *path;
    bool higher_is_better;
    double tolerance_pct; /* < 0: use the global tolerance */
} metric_t;

static const metric_t default_metrics[] = {
    {"rates.connects_per_s", true, -1},
    {"rates.messages_per_s", true, -1},
    {"rates.bytes_in_per_s", true, -1},
    {"latency_us.connect.p50", false, -1},
    {"latency_us.connect.p90", false, -1},
    {"latency_us.connect.p99", false, -1},
    {"latency_us.tls_handshake_full.p50", false, -1},
    {"latency_us.tls_handshake_full.p99", false, -1},
    {"latency_us.echo_rtt.p50", false, -1},
    {"latency_us.echo_rtt.p99", false, -1},
    {"connections.failed.total", false, 0},
    {"ramp.seconds", false, -1},
};

static bool lower_is_better(const char *path)
{
    return strncmp(path, "latency_us.", 11) == 0 || strstr(path, "failed") != NULL ||
           strcmp(path, "ramp.seconds") == 0;
}

/* Reads a metric from the steady figures or from the whole run's. */
static int lookup_in(const json_t *report, const char *path, bool steady, double *out)
{
    char full[256];
    snprintf(full, sizeof(full), "%s%s", steady ? "steady." : "", path);
    return zlb_report_lookup(report, full, out);
}

/* Where a metric is read in every report of a comparison: the steady figures when all of them
 * have it, else the whole run's, so that no row compares one report's steady value with
 * another's whole-run value. */
static bool all_steady(json_t **a, size_t na, json_t **b, size_t nb, const char *path)
{
    for (size_t i = 0; i < na + nb; i++) {
        double v;
        const char *src;
        if (lookup_measured(i < na ? a[i] : b[i - na], path, &v, &src) != 0 ||
            strcmp(src, "steady") != 0)
            return false;
    }
    return true;
}

/* Mean and relative spread ((max - min) / mean, in %) of a metric over several reports. */
static int side_value(json_t **reports, size_t n, const char *path, bool steady, double *mean,
                      double *spread_pct)
{
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    char count_path[160];
    const char *last_dot = strrchr(path, '.');
    /* A latency phase that recorded nothing has no figures to compare, only zeros. */
    bool latency = strncmp(path, "latency_us.", 11) == 0 && last_dot;
    if (latency)
        snprintf(count_path, sizeof(count_path), "%.*s.count", (int)(last_dot - path), path);
    for (size_t i = 0; i < n; i++) {
        double v, count;
        if (lookup_in(reports[i], path, steady, &v) != 0)
            return -ENOENT;
        if (latency && (lookup_in(reports[i], count_path, steady, &count) != 0 || count == 0))
            return -ENOENT;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
        sum += v;
    }
    *mean = sum / (double)n;
    *spread_pct = n > 1 && *mean != 0 ? (hi - lo) / fabs(*mean) * 100.0 : 0.0;
    return 0;
}

/* Kolmogorov-Smirnov distance between two latency distributions: the largest gap between their
 * cumulative shares, evaluated at every bucket edge of either. 0 = same shape, 1 = disjoint. */
static double ks_distance(const zlb_hist_t *a, const zlb_hist_t *b)
{
    uint64_t na = zlb_hist_count(a), nb = zlb_hist_count(b);
    if (!na || !nb)
        return 0;
    double worst = 0;
    uint64_t hi = ZLB_MAX(zlb_hist_max(a), zlb_hist_max(b));
    for (uint64_t v = 1; v <= hi;) {
        double fa = (double)zlb_hist_count_le(a, v) / (double)na;
        double fb = (double)zlb_hist_count_le(b, v) / (double)nb;
        worst = fmax(worst, fabs(fa - fb));
        uint64_t next = zlb_hist_highest_equivalent(a, v) + 1;
        if (next <= v)
            break;
        v = next;
    }
    return worst;
}

static zlb_hist_t *merged_hist(json_t **reports, size_t n, const char *phase)
{
    zlb_hist_t *sum = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *hj = json_object_get(
            json_object_get(json_object_get(reports[i], "steady"), "histograms"), phase);
        zlb_hist_t *h = NULL;
        const char *err;
        if (!hj || zlb_hist_from_json(hj, &h, &err) != 0) {
            zlb_hist_destroy(sum);
            return NULL;
        }
        if (!sum)
            sum = h;
        else {
            zlb_hist_add(sum, h);
            zlb_hist_destroy(h);
        }
    }
    return sum;
}

static int load_side(const char *arg, json_t ***out, size_t *n)
{
    /* One report, or several separated by commas: a side's own run-to-run spread. */
    char *copy = zlb_xstrdup(arg), *save = NULL;
    json_t **arr = NULL;
    size_t count = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        json_t *j = load_report(tok);
        if (!j) {
            for (size_t i = 0; i < count; i++)
                json_decref(arr[i]);
            free(arr);
            free(copy);
            return -EINVAL;
        }
        arr = zlb_xrealloc(arr, (count + 1) * sizeof(*arr));
        arr[count++] = j;
    }
    free(copy);
    if (!count)
        return -EINVAL;
    *out = arr;
    *n = count;
    return 0;
}

static int parse_pct(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || (*end && strcmp(end, "%") != 0) || !(v >= 0) || v > 1000)
        return -EINVAL;
    *out = v;
    return 0;
}

static void compare_usage(FILE *f)
{
    fprintf(f, "usage: zlbench compare BASELINE[,BASELINE...] CURRENT[,CURRENT...]\n"
               "                       [--tolerance PCT] [--metric PATH[:PCT]]... [--json FILE]\n"
               "Compares steady-state figures metric by metric. Exit 0: no regression, 4: a\n"
               "regression beyond the tolerance and beyond the run-to-run spread, 2: bad usage.\n");
}

int zlb_run_compare(int argc, char **argv)
{
    static const struct option longopts[] = {{"tolerance", required_argument, NULL, 't'},
                                             {"metric", required_argument, NULL, 'm'},
                                             {"json", required_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    double tolerance = 10.0;
    metric_t *metrics = NULL;
    size_t nmetrics = 0;
    char **metric_paths = NULL;
    const char *json_out = NULL;
    int code = ZLB_EXIT_USAGE, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:m:j:h", longopts, NULL)) != -1) {
        if (c == 't') {
            if (parse_pct(optarg, &tolerance) != 0) {
                fprintf(stderr,
                        "zlbench compare: --tolerance: expected a percentage like 10%%, "
                        "got '%s'\n",
                        optarg);
                goto out;
            }
        } else if (c == 'm') {
            char *path = zlb_xstrdup(optarg);
            char *colon = strrchr(path, ':');
            double tol = -1;
            if (colon) {
                *colon = '\0';
                if (parse_pct(colon + 1, &tol) != 0) {
                    fprintf(stderr, "zlbench compare: --metric %s: bad tolerance '%s'\n", path,
                            colon + 1);
                    free(path);
                    goto out;
                }
            }
            if (!zlb_run_metric_path_valid(path)) {
                fprintf(stderr, "zlbench compare: --metric: unknown report path '%s'\n", path);
                free(path);
                goto out;
            }
            metrics = zlb_xrealloc(metrics, (nmetrics + 1) * sizeof(*metrics));
            metric_paths = zlb_xrealloc(metric_paths, (nmetrics + 1) * sizeof(char *));
            metric_paths[nmetrics] = path;
            metrics[nmetrics++] = (metric_t){path, !lower_is_better(path), tol};
        } else if (c == 'j') {
            json_out = optarg;
        } else if (c == 'h') {
            compare_usage(stdout);
            code = ZLB_EXIT_OK;
            goto out;
        } else {
            compare_usage(stderr);
            goto out;
        }
    }
    if (argc - optind != 2) {
        compare_usage(stderr);
        goto out;
    }
    json_t **base = NULL, **cur = NULL;
    size_t nbase = 0, ncur = 0;
    if (load_side(argv[optind], &base, &nbase) != 0 ||
        load_side(argv[optind + 1], &cur, &ncur) != 0) {
        for (size_t i = 0; i < nbase; i++)
            json_decref(base[i]);
        free(base);
        goto out;
    }
    const metric_t *list = metrics ? metrics : default_metrics;
    size_t nlist = metrics ? nmetrics : ZLB_ARRAY_LEN(default_metrics);
    json_t *rows = json_array();
    int regressions = 0;
    printf("%-36s %14s %14s %9s %8s  %s\n", "metric", "baseline", "current", "change", "noise",
           "verdict");
    for (size_t i = 0; i < nlist; i++) {
        const metric_t *m = &list[i];
        double b, bs, cv, cs;
        bool steady = all_steady(base, nbase, cur, ncur, m->path);
        bool hb = side_value(base, nbase, m->path, steady, &b, &bs) == 0;
        bool hc = side_value(cur, ncur, m->path, steady, &cv, &cs) == 0;
        json_t *row = json_pack("{s:s, s:s}", "metric", m->path, "better",
                                m->higher_is_better ? "higher" : "lower");
        const char *verdict;
        double change = 0, noise = fmax(bs, cs);
        double tol = m->tolerance_pct >= 0 ? m->tolerance_pct : tolerance;
        if (!hb || !hc) {
            /* Only an explicitly requested metric that is missing is worth a line. */
            if (!metrics) {
                json_decref(row);
                continue;
            }
            verdict = "missing";
        } else {
            change = b != 0 ? (cv - b) / fabs(b) * 100.0 : (cv == 0 ? 0.0 : INFINITY);
            double worse = m->higher_is_better ? -change : change;
            double allowed = fmax(tol, noise);
            if (worse > allowed) {
                verdict = "regression";
                regressions++;
            } else if (-worse > allowed) {
                verdict = "improvement";
            } else {
                verdict = "unchanged";
            }
            json_object_set_new(row, "baseline", zlb_json_real(b));
            json_object_set_new(row, "current", zlb_json_real(cv));
            json_object_set_new(row, "change_pct", zlb_json_real(isfinite(change) ? change : 1e9));
        }
        json_object_set_new(row, "tolerance_pct", zlb_json_real(tol));
        json_object_set_new(row, "noise_pct", zlb_json_real(noise));
        json_object_set_new(row, "verdict", json_string(verdict));
        /* Latency rows also compare whole distributions from the serialised histograms. */
        if (hb && hc && strncmp(m->path, "latency_us.", 11) == 0) {
            char phase[64];
            const char *p = m->path + 11, *dot = strchr(p, '.');
            snprintf(phase, sizeof(phase), "%.*s", (int)(dot ? dot - p : (long)strlen(p)), p);
            zlb_hist_t *hb_ = merged_hist(base, nbase, phase), *hc_ = merged_hist(cur, ncur, phase);
            if (hb_ && hc_)
                json_object_set_new(row, "ks_distance", zlb_json_real(ks_distance(hb_, hc_)));
            zlb_hist_destroy(hb_);
            zlb_hist_destroy(hc_);
        }
        if (!hb || !hc)
            printf("%-36s %14s %14s %9s %8s  %s\n", m->path, hb ? "" : "-", hc ? "" : "-", "", "",
                   verdict);
        else
            printf("%-36s %14.2f %14.2f %+8.1f%% %7.1f%%  %s\n", m->path, b, cv,
                   isfinite(change) ? change : 999.9, noise, verdict);
        json_array_append_new(rows, row);
    }
    code = regressions ? ZLB_EXIT_REGRESSION : ZLB_EXIT_OK;
    printf("%d regression(s) (tolerance %.1f%%, %zu baseline and %zu current report(s))\n",
           regressions, tolerance, nbase, ncur);
    if (json_out) {
        json_t *doc = json_pack("{s:s, s:o, s:i, s:o, s:i}", "schema", "zlbench.compare/1",
                                "tolerance_pct", zlb_json_real(tolerance), "regressions",
                                regressions, "metrics", rows, "exit_code", code);
        char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        json_decref(doc);
        int rc = zlb_write_file_atomic(json_out, text, strlen(text), 0644);
        free(text);
        if (rc != 0) {
            fprintf(stderr, "zlbench compare: cannot write %s: %s\n", json_out, strerror(-rc));
            code = ZLB_EXIT_INTERNAL;
        }
    } else {
        json_decref(rows);
    }
    for (size_t i = 0; i < nbase; i++)
        json_decref(base[i]);
    for (size_t i = 0; i < ncur; i++)
        json_decref(cur[i]);
    free(base);
    free(cur);
out:
    for (size_t i = 0; i < nmetrics; i++)
        free(metric_paths[i]);
    free(metric_paths);
    free(metrics);
    return code;
}

int zlb_run_spread(char *const *paths, size_t n, const char *out_json)
{
    json_t **reports = zlb_xcalloc(n, sizeof(*reports));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!(reports[i] = load_report(paths[i])))
            rc = -EINVAL;
    json_t *rows = json_array();
    if (rc == 0) {
        printf("\nrun-to-run spread over %zu runs\n%-36s %12s %12s %12s %8s\n", n, "metric", "mean",
               "min", "max", "spread");
        for (size_t m = 0; m < ZLB_ARRAY_LEN(default_metrics); m++) {
            const char *path = default_metrics[m].path;
            double mean, spread, lo = INFINITY, hi = -INFINITY, v;
            bool steady = all_steady(reports, n, NULL, 0, path);
            if (side_value(reports, n, path, steady, &mean, &spread) != 0)
                continue;
            for (size_t i = 0; i < n; i++)
                if (lookup_in(reports[i], path, steady, &v) == 0) {
                    lo = fmin(lo, v);
                    hi = fmax(hi, v);
                }
            printf("%-36s %12.2f %12.2f %12.2f %7.1f%%\n", path, mean, lo, hi, spread);
            json_array_append_new(rows, json_pack("{s:s, s:o, s:o, s:o, s:o}", "metric", path,
                                                  "mean", zlb_json_real(mean), "min",
                                                  zlb_json_real(lo), "max", zlb_json_real(hi),
                                                  "spread_pct", zlb_json_real(spread)));
        }
    }
    if (rc == 0 && out_json) {
        json_t *files = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(files, json_string(paths[i]));
        json_t *doc = json_pack("{s:s, s:I, s:o, s:O}", "schema", "zlbench.repeat/1", "runs",
                                (json_int_t)n, "reports", files, "metrics", rows);
        char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        json_decref(doc);
        rc = zlb_write_file_atomic(out_json, text, strlen(text), 0644);
        free(text);
    }
    json_decref(rows);
    for (size_t i = 0; i < n; i++)
        json_decref(reports[i]);
    free(reports);
    return rc;
}

/* ---- merge --------------------------------------------------------------------------------- */

static uint64_t get_u64(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void counters_from_json(const json_t *conns, zlb_counters_t *c)
{
    memset(c, 0, sizeof(*c));
    c->attempted = get_u64(conns, "attempted");
    c->established = get_u64(conns, "established");
    c->open = get_u64(conns, "open");
    c->in_flight = get_u64(conns, "in_flight");
    c->closed_by_us = get_u64(conns, "closed_by_us");
    c->closed_by_peer = get_u64(conns, "closed_by_peer");
    const json_t *fb = json_object_get(conns, "failed_before_established");
    const json_t *fa = json_object_get(conns, "failed_after_established");
    for (int f = 0; f < ZLB_FAIL__COUNT; f++) {
        c->failed_before[f] = get_u64(fb, zlb_fail_name((zlb_fail_t)f));
        c->failed_after[f] = get_u64(fa, zlb_fail_name((zlb_fail_t)f));
    }
}

/* Merges one "stats-like" level (the report's top level or its "steady" object) of several
 * reports: counters summed, histograms added, summaries recomputed from the merged
 * histograms, rates summed (the runs happened side by side). */
static int merge_level(json_t **in, size_t n, const char *level, const double *pcts, size_t npcts,
                       json_t *dst)
{
    zlb_stats_t sum;
    zlb_stats_init(&sum);
    json_t *rates = json_object();
    double seconds = 0;
    uint64_t target = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *src = level ? json_object_get(in[i], level) : in[i];
        json_t *hists = json_object_get(src, "histograms");
        if (!src || !hists) {
            fprintf(stderr, "zlbench merge: report %zu has no %s histograms\n", i + 1,
                    level ? level : "top-level");
            rc = -EINVAL;
            break;
        }
        zlb_stats_t one;
        zlb_stats_init(&one);
        counters_from_json(json_object_get(src, "connections"), &one.c);
        const json_t *top = in[i];
        json_t *bytes = json_object_get(top, "bytes");
        if (!level) {
            one.c.bytes_in = get_u64(bytes, "in");
            one.c.bytes_out = get_u64(bytes, "out");
            one.c.messages = get_u64(top, "messages");
        }
        json_t *tls = json_object_get(src, "tls");
        one.c.tls_handshakes = get_u64(tls, "handshakes");
        one.c.tls_resumed = get_u64(tls, "resumed");
        target += get_u64(json_object_get(src, "connections"), "target");
        for (int l = 0; l < ZLB_LAT__COUNT && rc == 0; l++) {
            json_t *hj = json_object_get(hists, zlb_lat_name((zlb_lat_t)l));
            zlb_hist_t *h = NULL;
            const char *err = "missing";
            if (!hj || zlb_hist_from_json(hj, &h, &err) != 0 || zlb_hist_add(one.lat[l], h) != 0) {
                fprintf(stderr, "zlbench merge: report %zu: histogram %s: %s\n", i + 1,
                        zlb_lat_name((zlb_lat_t)l), err);
                rc = -EINVAL;
            }
            zlb_hist_destroy(h);
        }
        zlb_stats_add(&sum, &one);
        zlb_stats_dispose(&one);
        const char *key;
        json_t *val;
        json_object_foreach(json_object_get(src, "rates"), key, val)
        {
            double prev = json_number_value(json_object_get(rates, key));
            json_object_set_new(rates, key, zlb_json_real(prev + json_number_value(val)));
        }
        double s = json_number_value(json_object_get(src, "seconds"));
        seconds = fmax(seconds, s);
    }
    if (rc == 0) {
        json_object_set_new(dst, "connections", zlb_counters_to_json(&sum.c, target));
        json_object_set_new(dst, "rates", json_incref(rates));
        json_object_set_new(dst, "latency_us", zlb_stats_latency_json(&sum, pcts, npcts));
        double ratio =
            sum.c.tls_handshakes ? (double)sum.c.tls_resumed / (double)sum.c.tls_handshakes : 0.0;
        json_object_set_new(
            dst, "tls",
            json_pack("{s:I, s:I, s:o}", "handshakes", (json_int_t)sum.c.tls_handshakes, "resumed",
                      (json_int_t)sum.c.tls_resumed, "resumed_ratio", zlb_json_real(ratio)));
        json_object_set_new(dst, "histograms", zlb_stats_histograms_json(&sum));
        if (level) {
            json_object_set_new(dst, "seconds", zlb_json_real(seconds));
        } else {
            json_object_set_new(dst, "messages", json_integer((json_int_t)sum.c.messages));
            json_object_set_new(dst, "bytes",
                                json_pack("{s:I, s:I}", "in", (json_int_t)sum.c.bytes_in, "out",
                                          (json_int_t)sum.c.bytes_out));
        }
    }
    json_decref(rates);
    zlb_stats_dispose(&sum);
    return rc;
}

int zlb_run_merge(int argc, char **argv)
{
    const char *out_path = NULL;
    json_t **in = NULL;
    size_t n = 0;
    int code = ZLB_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
            if (++i >= argc)
                break;
            out_path = argv[i];
            continue;
        }
        json_t *j = load_report(argv[i]);
        if (!j)
            goto out;
        in = zlb_xrealloc(in, (n + 1) * sizeof(*in));
        in[n++] = j;
    }
    if (!out_path || n < 1) {
        fprintf(stderr, "usage: zlbench merge REPORT.json [REPORT.json...] -o MERGED.json\n");
        goto out;
    }
    /* Percentiles follow the first report's configuration. */
    double pcts[16];
    size_t npcts = 0;
    json_t *pj =
        json_object_get(json_object_get(json_object_get(in[0], "config"), "report"), "percentiles");
    size_t idx;
    json_t *v;
    json_array_foreach(pj, idx, v)
    {
        if (npcts < ZLB_ARRAY_LEN(pcts))
            pcts[npcts++] = json_number_value(v);
    }
    json_t *merged = json_pack("{s:s, s:s, s:I}", "schema", ZLB_STATS_SCHEMA, "state", "done",
                               "merged_from", (json_int_t)n);
    json_t *steady = json_object();
    json_t *pollers = json_array(), *sources = json_array();
    bool saturated = false, valid = true, reached = true;
    double elapsed = 0, ramp_s = 0;
    uint64_t hash_xor = 0;
    const char *hash0 = json_string_value(json_object_get(in[0], "config_hash"));
    bool same_hash = hash0 != NULL;
    for (size_t i = 0; i < n; i++) {
        json_array_extend(pollers, json_object_get(in[i], "pollers"));
        saturated |=
            json_is_true(json_object_get(json_object_get(in[i], "generator"), "saturated"));
        valid &= !json_is_false(json_object_get(in[i], "valid"));
        elapsed = fmax(elapsed, json_number_value(json_object_get(in[i], "elapsed_s")));
        json_t *ramp = json_object_get(in[i], "ramp");
        reached &= json_is_true(json_object_get(ramp, "target_reached"));
        ramp_s = fmax(ramp_s, json_number_value(json_object_get(ramp, "seconds")));
        const char *h = json_string_value(json_object_get(in[i], "config_hash"));
        same_hash &= h && hash0 && strcmp(h, hash0) == 0;
        hash_xor ^= h ? strtoull(h, NULL, 16) : 0;
        json_array_append_new(sources,
                              json_pack("{s:O?, s:O?}", "host", json_object_get(in[i], "host"),
                                        "config_hash", json_object_get(in[i], "config_hash")));
    }
    int rc = merge_level(in, n, NULL, pcts, npcts, merged);
    if (rc == 0)
        rc = merge_level(in, n, "steady", pcts, npcts, steady);
    if (rc != 0) {
        json_decref(merged);
        json_decref(steady);
        json_decref(pollers);
        json_decref(sources);
        goto out;
    }
    json_object_set_new(merged, "elapsed_s", zlb_json_real(elapsed));
    /* The runs went side by side: the merged ramp ended when the slowest one's did. */
    json_object_set_new(
        merged, "ramp",
        json_pack("{s:b, s:o}", "target_reached", reached, "seconds", zlb_json_real(ramp_s)));
    char hash[17];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)hash_xor);
    json_object_set_new(merged, "config_hash", json_string(same_hash ? hash0 : hash));
    json_object_set_new(merged, "steady", steady);
    json_object_set_new(merged, "pollers", pollers);
    json_object_set_new(merged, "sources", sources);
    json_object_set_new(merged, "valid", json_boolean(valid && !saturated));
    json_object_set_new(merged, "generator",
                        json_pack("{s:b, s:[]}", "saturated", saturated, "reasons"));
    json_object_set_new(merged, "config", json_incref(json_object_get(in[0], "config")));
    char *text = json_dumps(merged, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(merged);
    rc = zlb_write_file_atomic(out_path, text, strlen(text), 0644);
    free(text);
    if (rc != 0) {
        fprintf(stderr, "zlbench merge: cannot write %s: %s\n", out_path, strerror(-rc));
        code = ZLB_EXIT_INTERNAL;
        goto out;
    }
    printf("merged %zu report(s) into %s\n", n, out_path);
    code = ZLB_EXIT_OK;
out:
    for (size_t i = 0; i < n; i++)
        json_decref(in[i]);
    free(in);
    return code;
}
