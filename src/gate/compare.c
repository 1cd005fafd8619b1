/* compare.c -- `compare` of two runs (each side one report or several) and the spread of a
 * --repeat series. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gate/gate_internal.h"
#include "report/report.h"

/* ---- compare ------------------------------------------------------------------------------- */

typedef struct metric {
    const char *path;
    bool higher_is_better;
    double tolerance_pct; /* < 0: use the global tolerance */
} metric_t;

/* The report module's default list, with each metric's direction from its table. */
static metric_t *default_metrics(size_t *n)
{
    metric_t *list = zlb_xcalloc(zlb_report_ncompared, sizeof(*list));
    for (size_t i = 0; i < zlb_report_ncompared; i++)
        list[i] =
            (metric_t){zlb_report_compared[i].path,
                       zlb_report_metric_better(zlb_report_compared[i].path) == ZLB_BETTER_HIGHER,
                       zlb_report_compared[i].tolerance_pct};
    *n = zlb_report_ncompared;
    return list;
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
        if (zlb_gate_lookup_measured(i < na ? a[i] : b[i - na], path, &v, &src) != 0 ||
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
    bool latency =
        (strncmp(path, "latency_us.", 11) == 0 || strstr(path, ".latency_us.")) && last_dot;
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
        json_t *j = zlb_report_load(tok, "compare");
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

/* Two sides of a comparison should be the same scenario: a different config (connections,
 * rates, workload, target) moves every figure, and a "regression" then says nothing about the
 * code. Said, not refused: comparing two scenarios on purpose is legitimate. */
static void warn_mixed(json_t **base, size_t nbase, json_t **cur, size_t ncur)
{
    const char *first = json_string_value(json_object_get(base[0], "config_hash"));
    for (size_t i = 1; i < nbase + ncur; i++) {
        const char *h =
            json_string_value(json_object_get(i < nbase ? base[i] : cur[i - nbase], "config_hash"));
        if (!first || !h || strcmp(first, h) != 0) {
            fprintf(stderr,
                    "zlbench compare: warning: the reports are of different scenarios (config "
                    "hash %s vs %s): differences may come from the configs, not the code\n",
                    first ? first : "missing", h ? h : "missing");
            return;
        }
    }
}

/* When a regression shows in the current run's timeline: the first interval in which the
 * metric was beyond what the comparison allows (the baseline moved by the allowed change), so a
 * person knows where in the run to look. Read from the first current report. */
static void print_first_crossing(const json_t *cur, const metric_t *m, double base,
                                 double allowed_pct, bool steady, json_t *row)
{
    double limit = base * (m->higher_is_better ? 1 - allowed_pct / 100 : 1 + allowed_pct / 100);
    zlb_gate_crossing_t x;
    if (zlb_gate_first_crossing(cur, m->path, m->higher_is_better, limit, steady, &x) != 0)
        return;
    bool latency = strstr(m->path, "latency_us.") != NULL;
    printf("    %s first %s %.6g%s at t=%.6g s (the interval %.6g-%.6g s: %.6g)\n", m->path,
           m->higher_is_better ? "below" : "above", limit, latency ? " us" : "", x.t_s,
           x.t_s - x.dt_s, x.t_s, x.value);
    json_object_set_new(row, "first_crossed",
                        json_pack("{s:o, s:o, s:o, s:o}", "limit", zlb_json_real(limit), "t_s",
                                  zlb_json_real(x.t_s), "dt_s", zlb_json_real(x.dt_s), "value",
                                  zlb_json_real(x.value)));
}

static void compare_usage(FILE *f)
{
    fprintf(f,
            "usage: zlbench compare BASELINE[,BASELINE...] CURRENT[,CURRENT...] [options]\n"
            "Compares two runs' steady-state figures metric by metric. A side may be several\n"
            "reports separated by commas: their run-to-run spread then widens the tolerance.\n"
            "Every report is checked first (schema, accounting invariant, histograms).\n"
            "A metric may name a stage's figures (stages.N.latency_us.connect.p99). For a\n"
            "regression, the first interval of the current run's timeline beyond the allowed\n"
            "change is printed (\"first above 5500 us at t=12 s\").\n"
            "  -t, --tolerance PCT      change allowed before it is a regression (default 10%%)\n"
            "  -m, --metric PATH[:PCT]  compare this report path instead of the default list,\n"
            "                           with its own tolerance (repeatable)\n"
            "  -j, --json FILE          also write the table, verdicts included, as JSON\n"
            "      --junit FILE         JUnit XML: one testcase per metric, a regression fails\n"
            "      --summary-md FILE    a markdown table of the verdicts (also appended to\n"
            "                           $GITHUB_STEP_SUMMARY when that is set)\n"
            "  -h, --help               this text\n"
            "Exit codes: 0 no regression, 4 a regression beyond the tolerance and the spread,\n"
            "2 bad usage or an unreadable or inconsistent report, 1 internal error.\n");
}

int zlb_gate_compare(int argc, char **argv)
{
    static const struct option longopts[] = {{"tolerance", required_argument, NULL, 't'},
                                             {"metric", required_argument, NULL, 'm'},
                                             {"json", required_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"junit", required_argument, NULL, 'J'},
                                             {"summary-md", required_argument, NULL, 'M'},
                                             {NULL, 0, NULL, 0}};
    zlb_gate_ci_opts_t ci = {0};
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
            if (!zlb_report_metric_valid(path)) {
                fprintf(stderr, "zlbench compare: --metric: unknown report path '%s'\n", path);
                free(path);
                goto out;
            }
            metrics = zlb_xrealloc(metrics, (nmetrics + 1) * sizeof(*metrics));
            metric_paths = zlb_xrealloc(metric_paths, (nmetrics + 1) * sizeof(char *));
            metric_paths[nmetrics] = path;
            metrics[nmetrics++] =
                (metric_t){path, zlb_report_metric_better(path) == ZLB_BETTER_HIGHER, tol};
        } else if (c == 'j') {
            json_out = optarg;
        } else if (c == 'J') {
            ci.junit_file = optarg;
        } else if (c == 'M') {
            ci.summary_md_file = optarg;
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
    warn_mixed(base, nbase, cur, ncur);
    size_t ndefaults = 0;
    metric_t *defaults = default_metrics(&ndefaults);
    const metric_t *list = metrics ? metrics : defaults;
    size_t nlist = metrics ? nmetrics : ndefaults;
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
        if (hb && hc && strcmp(verdict, "regression") == 0)
            print_first_crossing(cur[0], m, b, fmax(tol, noise), steady, row);
        json_array_append_new(rows, row);
    }
    code = regressions ? ZLB_EXIT_REGRESSION : ZLB_EXIT_OK;
    printf("%d regression(s) (tolerance %.1f%%, %zu baseline and %zu current report(s))\n",
           regressions, tolerance, nbase, ncur);
    json_t *doc = json_pack("{s:s, s:o, s:i, s:o, s:i}", "schema", "zlbench.compare/1",
                            "tolerance_pct", zlb_json_real(tolerance), "regressions", regressions,
                            "metrics", rows, "exit_code", code);
    if (json_out) {
        char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        int rc = zlb_write_file_atomic(json_out, text, strlen(text), 0644);
        free(text);
        if (rc != 0) {
            fprintf(stderr, "zlbench compare: cannot write %s: %s\n", json_out, strerror(-rc));
            code = ZLB_EXIT_INTERNAL;
        }
    }
    if (zlb_gate_ci_write(&ci, NULL, doc) != 0)
        code = ZLB_EXIT_INTERNAL;
    json_decref(doc);
    for (size_t i = 0; i < nbase; i++)
        json_decref(base[i]);
    for (size_t i = 0; i < ncur; i++)
        json_decref(cur[i]);
    free(base);
    free(cur);
    free(defaults);
out:
    for (size_t i = 0; i < nmetrics; i++)
        free(metric_paths[i]);
    free(metric_paths);
    free(metrics);
    return code;
}

int zlb_gate_spread(char *const *paths, size_t n, const char *out_json)
{
    json_t **reports = zlb_xcalloc(n, sizeof(*reports));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!(reports[i] = zlb_report_load(paths[i], "repeat")))
            rc = -EINVAL;
    json_t *rows = json_array();
    if (rc == 0) {
        printf("\nrun-to-run spread over %zu runs\n%-36s %12s %12s %12s %8s\n", n, "metric", "mean",
               "min", "max", "spread");
        for (size_t m = 0; m < zlb_report_ncompared; m++) {
            const char *path = zlb_report_compared[m].path;
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
