/* report.h -- the report's schema in one place: its metrics (the table thresholds and compare
 * read, with the way each one is better), its rates, the stats-like levels it is made of, and
 * reading a report back as an input that is checked before anything uses it. */
#ifndef ZLB_REPORT_H
#define ZLB_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "stats/stats.h"

#define ZLB_REPORT_SCHEMA "zlbench.stats/1"

/** A JSON real that is never NaN or Inf (jansson refuses those: it would return NULL). */
json_t *zlb_json_real(double x);

/* ---- rates ------------------------------------------------------------------------------- */

/* Per-second figures over an interval: the report's "rates" objects (top level: the trailing
 * stats interval; "steady": the measured window). Each field is a row of the metric table. */
typedef struct zlb_rates {
    double connects_per_s, closes_per_s, failures_per_s, bytes_in_per_s, bytes_out_per_s,
        messages_per_s, requests_per_s;
    double *poller_connects_per_s; /* npollers entries, borrowed; NULL when not computed */
} zlb_rates_t;

/** Fills every rate of out from the counters' growth between `from` and `to` over `seconds`
 * (all 0 when seconds <= 0). Leaves poller_connects_per_s alone. */
void zlb_rates_over(zlb_rates_t *out, const zlb_counters_t *from, const zlb_counters_t *to,
                    double seconds);
/** dst += src, rate by rate (runs made side by side). */
void zlb_rates_add(zlb_rates_t *dst, const zlb_rates_t *src);
/** {"connects_per_s": .., ...}, every rate of the table. New reference. */
json_t *zlb_report_rates_json(const zlb_rates_t *r);

/* ---- metrics ------------------------------------------------------------------------------ */

typedef enum {
    ZLB_BETTER_HIGHER,
    ZLB_BETTER_LOWER,
} zlb_better_t;

/** True when `path` names a numeric or boolean field of the report that thresholds and
 * `compare` understand (e.g. "latency_us.connect.p99"). Fits config's zlb_metric_path_cb. */
bool zlb_report_metric_valid(const char *path);
/** Which way a valid metric is better (a regression is a move the other way). */
zlb_better_t zlb_report_metric_better(const char *path);

/* The metrics `compare` and --repeat look at when none is named. */
typedef struct zlb_report_compared {
    const char *path;
    double tolerance_pct; /* < 0: the command's tolerance */
} zlb_report_compared_t;
extern const zlb_report_compared_t zlb_report_compared[];
extern const size_t zlb_report_ncompared;

/** Looks a dotted path ("latency_us.connect.p99", "pollers[0].load_pct") up in a report and
 * returns its numeric value (true/false as 1/0). 0 or -ENOENT. */
int zlb_report_lookup(const json_t *report, const char *path, double *out);

/* ---- levels: the whole run's figures (top level) and the measured window's ("steady") ------ */

typedef struct zlb_report_level {
    const zlb_stats_t *stats; /* counters and latency histograms */
    uint64_t target;          /* connections the run aims to hold */
    const zlb_rates_t *rates;
    const double *percentiles; /* extra latency percentiles from the config */
    size_t npercentiles;
    bool totals;     /* "messages" and "bytes" (the top level only) */
    bool histograms; /* the serialised histograms (reports, not /stats) */
} zlb_report_level_t;

/** Adds "connections", "rates", "latency_us", ["messages", "bytes"], "tls", "http" and
 * ["histograms"]
 * to dst. */
void zlb_report_put_level(json_t *dst, const zlb_report_level_t *lv);
/** {handshakes, resumed, resumed_ratio, failures: {handshake: {reason: n}, verify: {"62
 * hostname_mismatch": n}}, openssl}. New reference. */
json_t *zlb_report_tls_json(const zlb_counters_t *c);

/** {requests: {sent, responses, failed, in_flight, queued}, status: {"200": n, ..., "2xx": n},
 * errors: {total, <kind>: n}}: the http workload's section (classes and kinds always listed,
 * codes that occurred). New reference. */
json_t *zlb_report_http_json(const zlb_counters_t *c);
/** The name of zlb_counters_t.http_errors[k] ("truncated", "unsolicited", ...), or NULL when k is
 * no kind. */
const char *zlb_report_http_error_name(int k);

/** The inverse of zlb_report_put_level (with histograms): adds one level of a report to out
 * (initialised by the caller), its target to *target and its rates to *rates (either may be
 * NULL). Checks the types, the derived figures and every histogram (count == the sum of its
 * buckets, and the latency summary's count). 0, or -EINVAL with err set to "json.path: what is
 * wrong". */
int zlb_report_read_level(const json_t *level, bool totals, zlb_stats_t *out, uint64_t *target,
                          zlb_rates_t *rates, char *err, size_t errlen);

/** Checks a report read back as an input: schema version, both levels readable and
 * consistent, the accounting invariant on the whole run's counters. 0, or -EINVAL with err set
 * to "json.path: what is wrong". */
int zlb_report_check(const json_t *report, char *err, size_t errlen);

/** Loads and checks a report file. On error prints "zlbench CMD: FILE: json.path: what is
 * wrong" to stderr and returns NULL. New reference. */
json_t *zlb_report_load(const char *file, const char *cmd);

#endif
