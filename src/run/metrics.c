/* metrics.c -- the /metrics document: Prometheus text format 0.0.4, base units, _total counters. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/core.h"
#include "run/run_internal.h"
#include "tls/tls.h"

/* Conventions (prometheus.io/docs/practices/naming): base units (seconds, bytes) as suffixes,
 * counters end in _total, one metric never mixes a total with its breakdown. Connection counters
 * carry a `target` label, one series per target, so sum() over targets is the run's total. */

static void header(zlb_buf_t *b, const char *name, const char *type, const char *help)
{
    zlb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(zlb_buf_t *b, const char *name, const char *help, double value)
{
    char num[40];
    zlb_format_double(isfinite(value) ? value : 0.0, num, sizeof(num));
    header(b, name, "gauge", help);
    zlb_buf_printf(b, "%s %s\n", name, num);
}

typedef uint64_t (*counter_fn)(const zlb_counters_t *c);

static uint64_t c_attempted(const zlb_counters_t *c)
{
    return c->attempted;
}
static uint64_t c_established(const zlb_counters_t *c)
{
    return c->established;
}
static uint64_t c_closed(const zlb_counters_t *c)
{
    return c->closed_by_us + c->closed_by_peer;
}
static uint64_t c_open(const zlb_counters_t *c)
{
    return c->open;
}
static uint64_t c_in_flight(const zlb_counters_t *c)
{
    return c->in_flight;
}
static uint64_t c_bytes_in(const zlb_counters_t *c)
{
    return c->bytes_in;
}
static uint64_t c_bytes_out(const zlb_counters_t *c)
{
    return c->bytes_out;
}
static uint64_t c_messages(const zlb_counters_t *c)
{
    return c->messages;
}
static uint64_t c_stalled(const zlb_counters_t *c)
{
    return c->stalled;
}
static uint64_t c_tls_handshakes(const zlb_counters_t *c)
{
    return c->tls_handshakes;
}
static uint64_t c_tls_resumed(const zlb_counters_t *c)
{
    return c->tls_resumed;
}

static uint64_t c_requests_sent(const zlb_counters_t *c)
{
    return c->requests_sent;
}
static uint64_t c_responses(const zlb_counters_t *c)
{
    return c->responses;
}
static uint64_t c_requests_failed(const zlb_counters_t *c)
{
    return c->requests_failed;
}
static uint64_t c_requests_in_flight(const zlb_counters_t *c)
{
    return c->requests_in_flight;
}
static uint64_t c_requests_queued(const zlb_counters_t *c)
{
    return c->requests_queued;
}

static const struct {
    const char *name, *type, *help;
    counter_fn get;
} per_target[] = {
    {"zlbench_connections_attempted_total", "counter", "Connection attempts started.", c_attempted},
    {"zlbench_connections_established_total", "counter", "Connections established.", c_established},
    {"zlbench_connections_closed_total", "counter",
     "Established connections closed cleanly (by zlbench or by the peer).", c_closed},
    {"zlbench_connections_open", "gauge", "Connections open now.", c_open},
    {"zlbench_connections_in_flight", "gauge", "Attempts started and not yet finished.",
     c_in_flight},
    {"zlbench_received_bytes_total", "counter", "Bytes read from the target.", c_bytes_in},
    {"zlbench_sent_bytes_total", "counter", "Bytes written to the target.", c_bytes_out},
    {"zlbench_messages_total", "counter", "Workload round trips completed.", c_messages},
    {"zlbench_stream_stalls_total", "counter",
     "Stream stalls: a connection moved no data for workload.stall_timeout.", c_stalled},
    {"zlbench_tls_handshakes_total", "counter", "TLS handshakes completed (full and resumed).",
     c_tls_handshakes},
    {"zlbench_tls_resumed_handshakes_total", "counter", "TLS handshakes that resumed a session.",
     c_tls_resumed},
    {"zlbench_http_requests_total", "counter",
     "HTTP requests sent (= responses + failed + in flight).", c_requests_sent},
    {"zlbench_http_responses_total", "counter", "HTTP responses received.", c_responses},
    {"zlbench_http_requests_failed_total", "counter",
     "HTTP requests whose connection ended before their response.", c_requests_failed},
    {"zlbench_http_requests_in_flight", "gauge", "HTTP requests sent and not yet answered.",
     c_requests_in_flight},
    {"zlbench_http_requests_queued", "gauge",
     "HTTP requests due by the schedule but waiting for a busy connection.", c_requests_queued},
};

/* Target names come from the config: escaped once per render. */
typedef struct {
    char label[160];
} target_label_t;

static void target_counters(const zlb_view_t *v, zlb_buf_t *b, const target_label_t *tl, size_t nt)
{
    for (size_t m = 0; m < ZLB_ARRAY_LEN(per_target); m++) {
        header(b, per_target[m].name, per_target[m].type, per_target[m].help);
        for (size_t i = 0; i < nt; i++)
            zlb_buf_printf(b, "%s{target=\"%s\"} %llu\n", per_target[m].name, tl[i].label,
                           (unsigned long long)per_target[m].get(&v->snap->target[i]));
    }
    header(b, "zlbench_connections_failed_total", "counter",
           "Failed connections by target, reason and phase (connect: before established).");
    for (size_t i = 0; i < nt; i++) {
        const zlb_counters_t *c = &v->snap->target[i];
        for (int f = 0; f < ZLB_FAIL__COUNT; f++) {
            zlb_buf_printf(b,
                           "zlbench_connections_failed_total{target=\"%s\",reason=\"%s\","
                           "phase=\"connect\"} %llu\n",
                           tl[i].label, zlb_fail_name((zlb_fail_t)f),
                           (unsigned long long)c->failed_before[f]);
            zlb_buf_printf(b,
                           "zlbench_connections_failed_total{target=\"%s\",reason=\"%s\","
                           "phase=\"established\"} %llu\n",
                           tl[i].label, zlb_fail_name((zlb_fail_t)f),
                           (unsigned long long)c->failed_after[f]);
        }
    }
}

/* Responses by status code and protocol errors by kind, codes and kinds that occurred. */
static void http_breakdowns(const zlb_view_t *v, zlb_buf_t *b, const target_label_t *tl, size_t nt)
{
    header(b, "zlbench_http_responses_by_status_total", "counter",
           "HTTP responses by target and status code (code 0: outside 100..599).");
    for (size_t i = 0; i < nt; i++)
        for (int k = 0; k < ZLB_HTTP_STATUS_SLOTS; k++)
            if (v->snap->target[i].http_status[k])
                zlb_buf_printf(b,
                               "zlbench_http_responses_by_status_total{target=\"%s\",code=\"%d\"} "
                               "%llu\n",
                               tl[i].label, k,
                               (unsigned long long)v->snap->target[i].http_status[k]);
    header(b, "zlbench_http_errors_total", "counter",
           "Failed HTTP requests and protocol errors by target and kind.");
    for (size_t i = 0; i < nt; i++)
        for (int k = 1; k < ZLB_HTTP_ERRORS_MAX; k++) {
            const char *name = zlb_report_http_error_name(k);
            if (name && v->snap->target[i].http_errors[k])
                zlb_buf_printf(b, "zlbench_http_errors_total{target=\"%s\",kind=\"%s\"} %llu\n",
                               tl[i].label, name,
                               (unsigned long long)v->snap->target[i].http_errors[k]);
        }
}

static void tls_failures(const zlb_counters_t *c, zlb_buf_t *b)
{
    header(b, "zlbench_tls_failures_total", "counter",
           "TLS handshake failures by OpenSSL reason and certificate verification failures by "
           "X509 verify code.");
    for (int i = 0; i < ZLB_TLS_REASONS_MAX; i++)
        if (c->tls_fail_reason[i])
            zlb_buf_printf(b, "zlbench_tls_failures_total{kind=\"handshake\",reason=\"%s\"} %llu\n",
                           zlb_tls_reason_name((zlb_tls_reason_t)i),
                           (unsigned long long)c->tls_fail_reason[i]);
    for (int i = 0; i < ZLB_TLS_VERIFY_CODES_MAX; i++)
        if (c->tls_verify_code[i])
            zlb_buf_printf(b,
                           "zlbench_tls_failures_total{kind=\"verify\",code=\"%d\",reason=\"%s\"} "
                           "%llu\n",
                           i, zlb_tls_verify_name(i), (unsigned long long)c->tls_verify_code[i]);
}

static void run_facts(const zlb_view_t *v, zlb_buf_t *b)
{
    char ver[64], commit[64], ssl[128];
    zlb_prom_label_escape(zlb_version(), ver, sizeof(ver));
    zlb_prom_label_escape(zlb_git_commit(), commit, sizeof(commit));
    zlb_prom_label_escape(OpenSSL_version(OPENSSL_VERSION), ssl, sizeof(ssl));
    header(b, "zlbench_build_info", "gauge", "Always 1; the labels say which build this is.");
    zlb_buf_printf(b, "zlbench_build_info{version=\"%s\",commit=\"%s\",openssl=\"%s\"} 1\n", ver,
                   commit, ssl);
    header(b, "zlbench_run_info", "gauge",
           "Always 1; config_hash names the scenario (equal hashes: the same configuration); "
           "shard and shard_count which part of it a sharded generator runs.");
    /* The part as labels: a PromQL sum over the shards of one scenario can check that it has
     * all of them (count by (config_hash) (zlbench_run_info) == shard_count). */
    if (v->cfg->shard.count > 1)
        zlb_buf_printf(b,
                       "zlbench_run_info{config_hash=\"%s\",shard=\"%u\",shard_count=\"%u\"} 1\n",
                       v->config_hash, v->cfg->shard.index, v->cfg->shard.count);
    else
        zlb_buf_printf(b, "zlbench_run_info{config_hash=\"%s\"} 1\n", v->config_hash);
    gauge(b, "zlbench_start_time_seconds", "When the run started, in seconds since the epoch.",
          v->started_unix_s);
    gauge(b, "zlbench_elapsed_seconds", "Seconds since the run started.", v->elapsed_s);
    header(b, "zlbench_run_state", "gauge", "1 for the state the run is in, 0 for the others.");
    for (int s = ZLB_STATE_STARTING; s <= ZLB_STATE_DONE; s++)
        zlb_buf_printf(b, "zlbench_run_state{state=\"%s\"} %d\n", zlb_state_name((zlb_state_t)s),
                       v->state == (zlb_state_t)s);
    gauge(b, "zlbench_connections_goal", "Connections the run aims to hold.", (double)v->target);
    gauge(b, "zlbench_generator_saturated",
          "1 when the generator itself is the bottleneck (its figures are suspect).",
          v->saturation && v->saturation->saturated ? 1.0 : 0.0);
}

/* `process="K",poller="ID"` under --processes (each process numbers its pollers from 0). */
static const char *poller_label(const zlb_view_t *v, size_t i, char *out, size_t len)
{
    if (v->poller_process)
        snprintf(out, len, "process=\"%u\",poller=\"%d\"", (unsigned)v->poller_process[i],
                 v->snap->info[i].id);
    else
        snprintf(out, len, "poller=\"%d\"", v->snap->info[i].id);
    return out;
}

static void pollers(const zlb_view_t *v, zlb_buf_t *b)
{
    char num[40], label[64];
    header(b, "zlbench_poller_load_ratio", "gauge",
           "Share of time a poller was busy over its load window.");
    for (size_t i = 0; i < v->snap->npollers; i++) {
        /* Six significant digits: the window's arithmetic is not finer than that. */
        snprintf(num, sizeof(num), "%.6g", v->snap->info[i].stats.load_pct / 100.0);
        zlb_buf_printf(b, "zlbench_poller_load_ratio{%s} %s\n",
                       poller_label(v, i, label, sizeof(label)), num);
    }
    header(b, "zlbench_poller_cpu_seconds_total", "counter", "Thread CPU time of a poller.");
    for (size_t i = 0; i < v->snap->npollers; i++) {
        zlb_format_double((double)v->snap->info[i].stats.cpu_time_ns / 1e9, num, sizeof(num));
        zlb_buf_printf(b, "zlbench_poller_cpu_seconds_total{%s} %s\n",
                       poller_label(v, i, label, sizeof(label)), num);
    }
    /* rate() of this over rate() of wall time is the share of time a poller was runnable but
     * had no CPU: the generator's own saturation, which the load ratio does not show. A kernel
     * without schedstat says nothing, so neither does this. */
    header(b, "zlbench_poller_runqueue_wait_seconds_total", "counter",
           "Time a poller was runnable but waiting for a CPU (kernel schedstat).");
    for (size_t i = 0; i < v->snap->npollers; i++) {
        if (v->snap->info[i].runq_wait_ns == UINT64_MAX)
            continue;
        zlb_format_double((double)v->snap->info[i].runq_wait_ns / 1e9, num, sizeof(num));
        zlb_buf_printf(b, "zlbench_poller_runqueue_wait_seconds_total{%s} %s\n",
                       poller_label(v, i, label, sizeof(label)), num);
    }
    header(b, "zlbench_poller_loop_lag_seconds", "gauge",
           "How late the last timer of a poller fired (its event loop's lag).");
    for (size_t i = 0; i < v->snap->npollers; i++) {
        zlb_format_double((double)v->snap->info[i].stats.lag_last_ns / 1e9, num, sizeof(num));
        zlb_buf_printf(b, "zlbench_poller_loop_lag_seconds{%s} %s\n",
                       poller_label(v, i, label, sizeof(label)), num);
    }
}

void zlb_render_metrics(const zlb_view_t *v, zlb_buf_t *b)
{
    size_t nt = v->ntargets < v->snap->ntargets ? v->ntargets : v->snap->ntargets;
    target_label_t *tl = zlb_xcalloc(nt ? nt : 1, sizeof(*tl));
    for (size_t i = 0; i < nt; i++)
        zlb_prom_label_escape(v->targets[i].name ? v->targets[i].name : "", tl[i].label,
                              sizeof(tl[i].label));

    run_facts(v, b);
    target_counters(v, b, tl, nt);
    http_breakdowns(v, b, tl, nt);
    tls_failures(&v->snap->total.c, b);
    pollers(v, b);
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        char name[96], help[160];
        snprintf(name, sizeof(name), "zlbench_%s_seconds", zlb_lat_name((zlb_lat_t)l));
        snprintf(help, sizeof(help), "Latency of the %s phase.", zlb_lat_name((zlb_lat_t)l));
        zlb_prom_histogram(b, name, help, "", v->snap->total.lat[l], v->buckets);
    }
    free(tl);
}
