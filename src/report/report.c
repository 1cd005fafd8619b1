/* report.c -- the report's metric table, its rates and levels, and reports read back as inputs. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"
#include "report/report.h"
#include "tls/tls.h"

json_t *zlb_json_real(double x)
{
    return json_real(isfinite(x) ? x : 0.0);
}

/* ---- the metric table ------------------------------------------------------------------------ */

static uint64_t n_established(const zlb_counters_t *c)
{
    return c->established;
}
static uint64_t n_closed(const zlb_counters_t *c)
{
    return c->closed_by_us + c->closed_by_peer;
}
static uint64_t n_failed(const zlb_counters_t *c)
{
    return zlb_counters_failed_total(c);
}
static uint64_t n_bytes_in(const zlb_counters_t *c)
{
    return c->bytes_in;
}
static uint64_t n_bytes_out(const zlb_counters_t *c)
{
    return c->bytes_out;
}
static uint64_t n_messages(const zlb_counters_t *c)
{
    return c->messages;
}
static uint64_t n_responses(const zlb_counters_t *c)
{
    return c->responses;
}

typedef struct metric_row {
    const char *path; /* dotted; a {placeholder} segment stands for a family, see placeholder_ok */
    zlb_better_t better;
    /* Rates only: the counter whose growth per second the rate is, and its zlb_rates_t field. */
    uint64_t (*counter)(const zlb_counters_t *c);
    size_t rate_field;
} metric_row_t;

#define RATE(name, counter, better)                                                                \
    {                                                                                              \
        "rates." #name, better, counter, offsetof(zlb_rates_t, name)                               \
    }

/* Every number of the report that thresholds and `compare` may name, and which way it is better.
 * ADDING A METRIC touches this table only: a rate is a row (plus its zlb_rates_t field) and is
 * then computed, written, read back and path-checked from the row; a latency phase comes from
 * stats' zlb_lat_name table ({phase}) and a connection counter from stats' counter rows
 * ({counter}, {failure}), so adding those to stats adds them here. A section of its own (ramp,
 * generator) is written where it is computed and named here. */
static const metric_row_t metric_rows[] = {
    {"elapsed_s", ZLB_BETTER_HIGHER, NULL, 0},
    {"messages", ZLB_BETTER_HIGHER, NULL, 0},
    {"bytes.in", ZLB_BETTER_HIGHER, NULL, 0},
    {"bytes.out", ZLB_BETTER_HIGHER, NULL, 0},
    {"connections.stalled", ZLB_BETTER_LOWER, NULL, 0}, /* before {counter}: first match wins */
    {"connections.{counter}", ZLB_BETTER_HIGHER, NULL, 0},
    {"connections.{failure}", ZLB_BETTER_LOWER, NULL, 0},
    RATE(connects_per_s, n_established, ZLB_BETTER_HIGHER),
    RATE(closes_per_s, n_closed, ZLB_BETTER_HIGHER),
    RATE(failures_per_s, n_failed, ZLB_BETTER_LOWER),
    RATE(bytes_in_per_s, n_bytes_in, ZLB_BETTER_HIGHER),
    RATE(bytes_out_per_s, n_bytes_out, ZLB_BETTER_HIGHER),
    RATE(messages_per_s, n_messages, ZLB_BETTER_HIGHER),
    RATE(requests_per_s, n_responses, ZLB_BETTER_HIGHER),
    {"latency_us.{phase}.{stat}", ZLB_BETTER_LOWER, NULL, 0},
    {"http.requests.sent", ZLB_BETTER_HIGHER, NULL, 0},
    {"http.requests.responses", ZLB_BETTER_HIGHER, NULL, 0},
    {"http.requests.failed", ZLB_BETTER_LOWER, NULL, 0},
    {"http.requests.in_flight", ZLB_BETTER_LOWER, NULL, 0},
    {"http.requests.queued", ZLB_BETTER_LOWER, NULL, 0},
    {"http.status.{status}", ZLB_BETTER_HIGHER, NULL, 0},
    {"http.errors.{http_error}", ZLB_BETTER_LOWER, NULL, 0},
    {"tls.handshakes", ZLB_BETTER_HIGHER, NULL, 0},
    {"tls.resumed", ZLB_BETTER_HIGHER, NULL, 0},
    {"tls.resumed_ratio", ZLB_BETTER_HIGHER, NULL, 0},
    {"ramp.target_reached", ZLB_BETTER_HIGHER, NULL, 0},
    {"ramp.seconds", ZLB_BETTER_LOWER, NULL, 0},
    {"ramp.established", ZLB_BETTER_HIGHER, NULL, 0},
    {"ramp.connects_per_s", ZLB_BETTER_HIGHER, NULL, 0},
    {"failure_ratio", ZLB_BETTER_LOWER, NULL, 0},
    {"generator.saturated", ZLB_BETTER_LOWER, NULL, 0},
    {"generator.scheduler_backlog", ZLB_BETTER_LOWER, NULL, 0},
};

const zlb_report_compared_t zlb_report_compared[] = {
    {"rates.connects_per_s", -1},
    {"rates.messages_per_s", -1},
    {"rates.bytes_in_per_s", -1},
    {"latency_us.connect.p50", -1},
    {"latency_us.connect.p90", -1},
    {"latency_us.connect.p99", -1},
    {"latency_us.tls_handshake_full.p50", -1},
    {"latency_us.tls_handshake_full.p99", -1},
    {"latency_us.message_rt.p50", -1},
    {"latency_us.message_rt.p99", -1},
    {"connections.failed.total", 0},
    {"ramp.seconds", -1},
};
const size_t zlb_report_ncompared = ZLB_ARRAY_LEN(zlb_report_compared);

static bool is_phase(const char *s, size_t n)
{
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        const char *name = zlb_lat_name((zlb_lat_t)l);
        if (strlen(name) == n && strncmp(s, name, n) == 0)
            return true;
    }
    return false;
}

/* count, min, mean, max, or pNN, pNNN...: a percentile spelled without its dot, as
 * zlb_hist_summary_json writes them. */
static bool is_stat(const char *s, size_t n)
{
    static const char *const fixed[] = {"count", "min", "mean", "max"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(fixed); i++)
        if (strlen(fixed[i]) == n && strncmp(s, fixed[i], n) == 0)
            return true;
    if (n < 2 || s[0] != 'p')
        return false;
    for (size_t i = 1; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* ---- the http section: status codes and error kinds ------------------------------------------ */

/* zlb_counters_t.http_errors: the parser's kinds by zlb_http_error_t, then the http workload's
 * own (work/wl_http.c, in this order). */
static const char *const http_extra_errors[] = {"unsolicited", "closed", "cancelled"};
#define HTTP_ERROR_KINDS (ZLB_HTTP_ERR_COUNT + (int)ZLB_ARRAY_LEN(http_extra_errors))
_Static_assert(ZLB_HTTP_ERR_COUNT + 3 <= ZLB_HTTP_ERRORS_MAX, "http_errors is short");

const char *zlb_report_http_error_name(int k)
{
    if (k >= ZLB_HTTP_ERR_COUNT && k < HTTP_ERROR_KINDS)
        return http_extra_errors[k - ZLB_HTTP_ERR_COUNT];
    return k > 0 && k < ZLB_HTTP_ERR_COUNT ? zlb_http_error_name((zlb_http_error_t)k) : NULL;
}

static int http_error_index(const char *s, size_t n)
{
    for (int k = 1; k < HTTP_ERROR_KINDS; k++) {
        const char *name = zlb_report_http_error_name(k);
        if (name && strlen(name) == n && strncmp(s, name, n) == 0)
            return k;
    }
    return -1;
}

/* "200" (100..599) or a class "2xx" (1xx..5xx); 0 when neither. The class is returned as its
 * digit (1..5), a code as itself. */
static int http_status_key(const char *s, size_t n)
{
    if (n != 3 || s[0] < '1' || s[0] > '5')
        return 0;
    if (s[1] == 'x' && s[2] == 'x')
        return s[0] - '0';
    if (s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        return 0;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

static bool placeholder_ok(const char *ph, size_t pn, const char *s, size_t sn)
{
    char seg[64];
    if (pn == 8 && strncmp(ph, "{status}", 8) == 0)
        return http_status_key(s, sn) != 0;
    if (pn == 12 && strncmp(ph, "{http_error}", 12) == 0)
        return (sn == 5 && strncmp(s, "total", 5) == 0) || http_error_index(s, sn) > 0;
    if (pn == 7 && strncmp(ph, "{phase}", 7) == 0)
        return is_phase(s, sn);
    if (pn == 6 && strncmp(ph, "{stat}", 6) == 0)
        return is_stat(s, sn);
    if (pn == 9 && strncmp(ph, "{counter}", 9) == 0 && sn < sizeof(seg)) {
        memcpy(seg, s, sn);
        seg[sn] = '\0';
        return zlb_counters_json_path_valid(seg);
    }
    return false;
}

static bool row_matches(const char *pattern, const char *path)
{
    const char *p = pattern, *s = path;
    for (;;) {
        size_t pn = strcspn(p, "."), sn = strcspn(s, ".");
        /* A failure breakdown is two segments deep ("failed.refused"): it takes the rest. */
        if (pn == 9 && strncmp(p, "{failure}", 9) == 0)
            return strchr(s, '.') && zlb_counters_json_path_valid(s);
        if (*p == '{') {
            if (!placeholder_ok(p, pn, s, sn))
                return false;
        } else if (pn != sn || strncmp(p, s, pn) != 0) {
            return false;
        }
        p += pn;
        s += sn;
        if (!*p || !*s)
            return !*p && !*s;
        p++;
        s++;
    }
}

/* "stages.N.<metric>": a stage's figures are the same metrics as the measured window's, so a
 * stage's path is valid, and better the same way, whenever the rest is. */
static const char *strip_stage(const char *path)
{
    if (strncmp(path, "stages.", 7) != 0)
        return path;
    const char *p = path + 7;
    size_t digits = strspn(p, "0123456789");
    return digits && digits < 6 && p[digits] == '.' ? p + digits + 1 : path;
}

static const metric_row_t *find_row(const char *path)
{
    path = strip_stage(path);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(metric_rows); i++)
        if (row_matches(metric_rows[i].path, path))
            return &metric_rows[i];
    return NULL;
}

bool zlb_report_metric_valid(const char *path)
{
    return find_row(path) != NULL;
}

zlb_better_t zlb_report_metric_better(const char *path)
{
    const metric_row_t *row = find_row(path);
    return row ? row->better : ZLB_BETTER_HIGHER;
}

/* ---- rates ----------------------------------------------------------------------------------- */

static double *rate_slot(zlb_rates_t *r, const metric_row_t *row)
{
    return (double *)((char *)r + row->rate_field);
}

void zlb_rates_over(zlb_rates_t *out, const zlb_counters_t *from, const zlb_counters_t *to,
                    double seconds)
{
    for (size_t i = 0; i < ZLB_ARRAY_LEN(metric_rows); i++) {
        const metric_row_t *row = &metric_rows[i];
        if (row->counter)
            *rate_slot(out, row) =
                seconds > 0 ? (double)(row->counter(to) - row->counter(from)) / seconds : 0.0;
    }
}

void zlb_rates_add(zlb_rates_t *dst, const zlb_rates_t *src)
{
    for (size_t i = 0; i < ZLB_ARRAY_LEN(metric_rows); i++)
        if (metric_rows[i].counter)
            *rate_slot(dst, &metric_rows[i]) += *rate_slot((zlb_rates_t *)src, &metric_rows[i]);
}

json_t *zlb_report_rates_json(const zlb_rates_t *r)
{
    json_t *o = json_object();
    for (size_t i = 0; i < ZLB_ARRAY_LEN(metric_rows); i++) {
        const metric_row_t *row = &metric_rows[i];
        if (row->counter)
            json_object_set_new(o, row->path + strlen("rates."),
                                zlb_json_real(*rate_slot((zlb_rates_t *)r, row)));
    }
    return o;
}

/* ---- levels ---------------------------------------------------------------------------------- */

/* Failure details, non-zero entries only: {"handshake": {"<reason>": n}, "verify": {"<code>
 * <name>": n}}. The code leads the verify keys because the names group several codes. */
static json_t *tls_failures_json(const zlb_counters_t *c)
{
    json_t *hs = json_object(), *vf = json_object();
    char key[64];

    for (int i = 0; i < ZLB_TLS_REASONS_MAX; i++)
        if (c->tls_fail_reason[i])
            json_object_set_new(hs, zlb_tls_reason_name((zlb_tls_reason_t)i),
                                json_integer((json_int_t)c->tls_fail_reason[i]));
    for (int i = 0; i < ZLB_TLS_VERIFY_CODES_MAX; i++) {
        if (!c->tls_verify_code[i])
            continue;
        if (i == ZLB_TLS_VERIFY_CODES_MAX - 1)
            snprintf(key, sizeof(key), "%d+ other", i); /* the slot of every larger code */
        else
            snprintf(key, sizeof(key), "%d %s", i, zlb_tls_verify_name(i));
        json_object_set_new(vf, key, json_integer((json_int_t)c->tls_verify_code[i]));
    }
    return json_pack("{s:o, s:o}", "handshake", hs, "verify", vf);
}

json_t *zlb_report_tls_json(const zlb_counters_t *c)
{
    double ratio = c->tls_handshakes ? (double)c->tls_resumed / (double)c->tls_handshakes : 0;
    return json_pack("{s:I, s:I, s:o, s:o, s:s}", "handshakes", (json_int_t)c->tls_handshakes,
                     "resumed", (json_int_t)c->tls_resumed, "resumed_ratio", zlb_json_real(ratio),
                     "failures", tls_failures_json(c), "openssl", zlb_tls_library_version());
}

json_t *zlb_report_http_json(const zlb_counters_t *c)
{
    json_t *status = json_object(), *errors = json_object();
    uint64_t cls[6] = {0}, nerr = 0;
    char key[16];

    for (int i = 0; i < ZLB_HTTP_STATUS_SLOTS; i++) {
        if (!c->http_status[i])
            continue;
        cls[i / 100] += c->http_status[i];
        snprintf(key, sizeof(key), "%d", i ? i : 0);
        json_object_set_new(status, i ? key : "other", json_integer((json_int_t)c->http_status[i]));
    }
    for (int k = 1; k <= 5; k++) {
        snprintf(key, sizeof(key), "%dxx", k);
        json_object_set_new(status, key, json_integer((json_int_t)cls[k]));
    }
    /* Requests cut off by our own stop are not the target's errors: listed, not in the total. */
    for (int k = 1; k < HTTP_ERROR_KINDS; k++)
        if (strcmp(zlb_report_http_error_name(k), "cancelled") != 0)
            nerr += c->http_errors[k];
    json_object_set_new(errors, "total", json_integer((json_int_t)nerr));
    for (int k = 1; k < HTTP_ERROR_KINDS; k++)
        json_object_set_new(errors, zlb_report_http_error_name(k),
                            json_integer((json_int_t)c->http_errors[k]));
    return json_pack("{s:{s:I, s:I, s:I, s:I, s:I}, s:o, s:o}", "requests", "sent",
                     (json_int_t)c->requests_sent, "responses", (json_int_t)c->responses, "failed",
                     (json_int_t)c->requests_failed, "in_flight", (json_int_t)c->requests_in_flight,
                     "queued", (json_int_t)c->requests_queued, "status", status, "errors", errors);
}

void zlb_report_put_level(json_t *dst, const zlb_report_level_t *lv)
{
    const zlb_counters_t *c = &lv->stats->c;
    json_object_set_new(dst, "connections", zlb_counters_to_json(c, lv->target));
    json_object_set_new(dst, "rates", zlb_report_rates_json(lv->rates));
    json_object_set_new(dst, "latency_us",
                        zlb_stats_latency_json(lv->stats, lv->percentiles, lv->npercentiles));
    if (lv->totals) {
        json_object_set_new(dst, "messages", json_integer((json_int_t)c->messages));
        json_object_set_new(dst, "bytes",
                            json_pack("{s:I, s:I}", "in", (json_int_t)c->bytes_in, "out",
                                      (json_int_t)c->bytes_out));
    }
    json_object_set_new(dst, "tls", zlb_report_tls_json(c));
    json_object_set_new(dst, "http", zlb_report_http_json(c));
    if (lv->histograms)
        json_object_set_new(dst, "histograms", zlb_stats_histograms_json(lv->stats));
}

/* ---- reading a report back ------------------------------------------------------------------- */

static int bad(char *err, size_t len, const char *fmt, ...) ZLB_PRINTF(3, 4);
static int bad(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool get_count(const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int read_http(const json_t *h, const char *where, zlb_counters_t *c, char *err, size_t len)
{
    const json_t *rq = json_object_get(h, "requests"), *st = json_object_get(h, "status"),
                 *er = json_object_get(h, "errors");
    const char *key;
    json_t *v;

    if (!h)
        return 0; /* a report from before the http workload */
    if (!get_count(rq, "sent", &c->requests_sent) || !get_count(rq, "responses", &c->responses) ||
        !get_count(rq, "failed", &c->requests_failed) ||
        !get_count(rq, "in_flight", &c->requests_in_flight) ||
        !get_count(rq, "queued", &c->requests_queued))
        return bad(err, len, "%shttp.requests: missing or not non-negative integers", where);
    if (c->requests_sent != c->responses + c->requests_failed + c->requests_in_flight)
        return bad(err, len,
                   "%shttp.requests.sent: not responses + failed + in_flight (the request "
                   "invariant)",
                   where);
    if (!json_is_object(st) || !json_is_object(er))
        return bad(err, len, "%shttp.status/errors: missing objects", where);
    json_object_foreach((json_t *)st, key, v)
    {
        int code = strcmp(key, "other") == 0 ? -1 : http_status_key(key, strlen(key));
        if (code >= 1 && code <= 5)
            continue; /* classes are sums of the codes */
        if (code == 0 || !get_count(st, key, &c->http_status[code < 0 ? 0 : code]))
            return bad(err, len, "%shttp.status.%s: not a status code with a count", where, key);
    }
    json_object_foreach((json_t *)er, key, v)
    {
        if (strcmp(key, "total") == 0)
            continue;
        int k = http_error_index(key, strlen(key));
        if (k <= 0 || !get_count(er, key, &c->http_errors[k]))
            return bad(err, len, "%shttp.errors.%s: unknown kind or not a count", where, key);
    }
    return 0;
}

static int read_tls(const json_t *tls, const char *where, zlb_counters_t *c, char *err, size_t len)
{
    if (!get_count(tls, "handshakes", &c->tls_handshakes) ||
        !get_count(tls, "resumed", &c->tls_resumed))
        return bad(err, len, "%stls.handshakes/resumed: missing or not non-negative integers",
                   where);
    if (c->tls_resumed > c->tls_handshakes)
        return bad(err, len, "%stls.resumed: more than its handshakes", where);
    const json_t *fails = json_object_get(tls, "failures");
    const json_t *hs = json_object_get(fails, "handshake"), *vf = json_object_get(fails, "verify");
    if (!json_is_object(hs) || !json_is_object(vf))
        return bad(err, len, "%stls.failures: missing handshake or verify object", where);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)hs, key, v)
    {
        int i = 0;
        while (i < ZLB_TLS_REASONS_MAX && strcmp(key, zlb_tls_reason_name((zlb_tls_reason_t)i)))
            i++;
        if (i == ZLB_TLS_REASONS_MAX || !get_count(hs, key, &c->tls_fail_reason[i]))
            return bad(err, len, "%stls.failures.handshake.%s: unknown reason or not a count",
                       where, key);
    }
    json_object_foreach((json_t *)vf, key, v)
    {
        char *end;
        long code = strtol(key, &end, 10);
        if (end == key || code < 0 || code >= ZLB_TLS_VERIFY_CODES_MAX ||
            !get_count(vf, key, &c->tls_verify_code[code]))
            return bad(err, len, "%stls.failures.verify.%s: unknown code or not a count", where,
                       key);
    }
    return 0;
}

static int read_rates(const json_t *o, const char *where, zlb_rates_t *r, char *err, size_t len)
{
    for (size_t i = 0; i < ZLB_ARRAY_LEN(metric_rows); i++) {
        const metric_row_t *row = &metric_rows[i];
        if (!row->counter)
            continue;
        const json_t *v = json_object_get(o, row->path + strlen("rates."));
        if (!json_is_number(v) || !(json_number_value(v) >= 0))
            return bad(err, len, "%s%s: missing or not a non-negative number", where, row->path);
        if (r)
            *rate_slot(r, row) = json_number_value(v);
    }
    return 0;
}

int zlb_report_read_level(const json_t *level, bool totals, zlb_stats_t *out, uint64_t *target,
                          zlb_rates_t *rates, char *err, size_t errlen)
{
    const char *where = totals ? "" : "steady.";
    char why[200];
    zlb_stats_t one;
    int rc = -EINVAL;

    if (!json_is_object(level))
        return bad(err, errlen, "%s: missing or not an object", totals ? "(top level)" : "steady");
    zlb_stats_init(&one);
    if (zlb_counters_from_json(json_object_get(level, "connections"), &one.c, target, why,
                               sizeof(why)) != 0) {
        /* why is "key: reason" for a field, or a bare reason for the object itself. */
        if (strchr(why, ':'))
            bad(err, errlen, "%sconnections.%s", where, why);
        else
            bad(err, errlen, "%sconnections: %s", where, why);
        goto out;
    }
    if (totals && (!get_count(level, "messages", &one.c.messages) ||
                   !get_count(json_object_get(level, "bytes"), "in", &one.c.bytes_in) ||
                   !get_count(json_object_get(level, "bytes"), "out", &one.c.bytes_out))) {
        bad(err, errlen, "messages/bytes: missing or not non-negative integers");
        goto out;
    }
    if (read_tls(json_object_get(level, "tls"), where, &one.c, err, errlen) != 0 ||
        read_http(json_object_get(level, "http"), where, &one.c, err, errlen) != 0 ||
        read_rates(json_object_get(level, "rates"), where, rates, err, errlen) != 0)
        goto out;
    const json_t *hists = json_object_get(level, "histograms");
    const json_t *lat = json_object_get(level, "latency_us");
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        const char *name = zlb_lat_name((zlb_lat_t)l);
        zlb_hist_t *h = NULL;
        const char *e = "missing";
        uint64_t summary_count;
        if (!json_object_get(hists, name) ||
            zlb_hist_from_json(json_object_get(hists, name), &h, &e) != 0) {
            bad(err, errlen, "%shistograms.%s: %s", where, name, e);
            goto out;
        }
        if (!get_count(json_object_get(lat, name), "count", &summary_count) ||
            summary_count != zlb_hist_count(h)) {
            bad(err, errlen, "%slatency_us.%s.count: missing or not its histogram's count (%llu)",
                where, name, (unsigned long long)zlb_hist_count(h));
            zlb_hist_destroy(h);
            goto out;
        }
        int added = zlb_hist_add(one.lat[l], h);
        zlb_hist_destroy(h);
        if (added != 0) {
            bad(err, errlen, "%shistograms.%s: not a latency histogram's layout", where, name);
            goto out;
        }
    }
    zlb_stats_add(out, &one);
    rc = 0;
out:
    zlb_stats_dispose(&one);
    return rc;
}

/* The accounting invariant of zlb_counters_balanced, equation by equation, so that the message
 * names the figure that does not add up. */
static int check_balanced(const zlb_counters_t *c, char *err, size_t len)
{
    uint64_t fb = zlb_counters_failed_before_total(c), fa = zlb_counters_failed_after_total(c);
    if (c->attempted != c->established + fb + c->in_flight)
        return bad(err, len,
                   "connections.attempted: %llu, but established %llu + "
                   "failed_before_established.total %llu + in_flight %llu = %llu (the accounting "
                   "invariant)",
                   (unsigned long long)c->attempted, (unsigned long long)c->established,
                   (unsigned long long)fb, (unsigned long long)c->in_flight,
                   (unsigned long long)(c->established + fb + c->in_flight));
    if (c->established != c->closed_by_us + c->closed_by_peer + fa + c->open)
        return bad(err, len,
                   "connections.established: %llu, but closed %llu + "
                   "failed_after_established.total %llu + open %llu = %llu (the accounting "
                   "invariant)",
                   (unsigned long long)c->established,
                   (unsigned long long)(c->closed_by_us + c->closed_by_peer),
                   (unsigned long long)fa, (unsigned long long)c->open,
                   (unsigned long long)(c->closed_by_us + c->closed_by_peer + fa + c->open));
    if (!zlb_counters_balanced(c))
        return bad(err, len,
                   "tls.failures: the breakdown does not add up to the TLS failures in "
                   "connections.failed");
    return 0;
}

/* The timeline, when there is one (reports before it have none): rows in time order, each
 * with its interval, so compare's "first crossed at t=" and merge's alignment can trust t_s. */
static int check_timeline(const json_t *tl, char *err, size_t len)
{
    if (!json_is_object(tl))
        return bad(err, len, "timeline: not an object");
    const json_t *iv = json_object_get(tl, "interval_s");
    if (!json_is_number(iv) || json_number_value(iv) <= 0)
        return bad(err, len, "timeline.interval_s: missing or not a positive number");
    const json_t *rows = json_object_get(tl, "rows");
    if (!json_is_array(rows))
        return bad(err, len, "timeline.rows: missing or not an array");
    double last = -1;
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        const json_t *t = json_object_get(row, "t_s"), *dt = json_object_get(row, "dt_s");
        if (!json_is_object(row) || !json_is_number(t) || !json_is_number(dt) ||
            json_number_value(dt) < 0)
            return bad(err, len, "timeline.rows[%zu]: needs numbers t_s and dt_s >= 0", i);
        if (json_number_value(t) <= last)
            return bad(err, len, "timeline.rows[%zu].t_s: %g, not after the row before (%g)", i,
                       json_number_value(t), last);
        last = json_number_value(t);
        if (!json_is_object(json_object_get(row, "latency_us")))
            return bad(err, len, "timeline.rows[%zu].latency_us: missing or not an object", i);
    }
    return 0;
}

int zlb_report_check(const json_t *report, char *err, size_t errlen)
{
    const char *schema = json_string_value(json_object_get(report, "schema"));
    if (!schema || strcmp(schema, ZLB_REPORT_SCHEMA) != 0)
        return bad(err, errlen, "schema: '%s', expected '%s' (not a zlbench report)",
                   schema ? schema : "missing", ZLB_REPORT_SCHEMA);
    zlb_stats_t s;
    zlb_stats_init(&s);
    int rc = zlb_report_read_level(report, true, &s, NULL, NULL, err, errlen);
    if (rc == 0)
        rc = check_balanced(&s.c, err, errlen);
    zlb_stats_dispose(&s);
    if (rc != 0)
        return rc;
    /* The measured window is a period: its counters need not balance (connections opened
     * before it closed inside it), but each must be a readable, consistent level. */
    zlb_stats_init(&s);
    rc = zlb_report_read_level(json_object_get(report, "steady"), false, &s, NULL, NULL, err,
                               errlen);
    zlb_stats_dispose(&s);
    const json_t *tl = json_object_get(report, "timeline");
    if (rc == 0 && tl)
        rc = check_timeline(tl, err, errlen);
    return rc;
}

json_t *zlb_report_load(const char *file, const char *cmd)
{
    json_error_t e;
    char err[512];
    json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        fprintf(stderr, "zlbench %s: %s:%d:%d: %s\n", cmd, file, e.line, e.column, e.text);
        return NULL;
    }
    if (zlb_report_check(j, err, sizeof(err)) != 0) {
        fprintf(stderr, "zlbench %s: %s: %s\n", cmd, file, err);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- paths ----------------------------------------------------------------------------------- */

int zlb_report_lookup(const json_t *report, const char *path, double *out)
{
    const json_t *cur = report;
    char key[128];
    const char *p = path;
    while (*p && cur) {
        size_t n = strcspn(p, ".[");
        if (n >= sizeof(key))
            return -ENOENT;
        if (n) {
            memcpy(key, p, n);
            key[n] = '\0';
            /* "stages.2.x" reads an array element as "stages[2].x" does. */
            if (json_is_array(cur) && strspn(key, "0123456789") == n)
                cur = json_array_get(cur, strtoul(key, NULL, 10));
            else
                cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
            p += n;
        }
        if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (*end != ']' || !json_is_array(cur))
                return -ENOENT;
            cur = json_array_get(cur, idx);
            p = end + 1;
        }
        if (*p == '.')
            p++;
    }
    if (!cur)
        return -ENOENT;
    if (json_is_number(cur))
        *out = json_number_value(cur);
    else if (json_is_boolean(cur))
        *out = json_is_true(cur) ? 1.0 : 0.0;
    else
        return -ENOENT;
    return 0;
}
