/* render.c -- turns engine snapshots into the /stats JSON, the pollers table and /metrics. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "core/core.h"
#include "run/run_internal.h"
#include "tls/tls.h"

const char *zlb_state_name(zlb_state_t s)
{
    static const char *const names[] = {"starting", "ramping", "steady", "draining", "done"};
    return (unsigned)s < ZLB_ARRAY_LEN(names) ? names[s] : "unknown";
}

static double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

static json_t *ramp_json(const zlb_view_t *v)
{
    const zlb_engine_snapshot_t *s = v->snap;
    bool reached = s->target_reached_ns != 0;
    double seconds = 0;
    if (reached && s->first_attempt_ns)
        seconds = ns_to_s(s->target_reached_ns - s->first_attempt_ns);
    return json_pack("{s:b, s:o}", "target_reached", reached, "seconds", zlb_json_real(seconds));
}

static json_t *generator_json(const zlb_view_t *v)
{
    json_t *reasons = json_array();
    const zlb_saturation_t *sat = v->saturation;
    for (int i = 0; sat && i < sat->nreasons; i++)
        json_array_append_new(reasons, json_string(sat->reasons[i]));
    return json_pack("{s:b, s:o, s:I}", "saturated", sat && sat->saturated, "reasons", reasons,
                     "scheduler_backlog", (json_int_t)v->snap->scheduler_backlog);
}

json_t *zlb_render_pollers(const zlb_view_t *v)
{
    const zlb_engine_snapshot_t *s = v->snap;
    json_t *arr = json_array();
    for (size_t i = 0; i < s->npollers; i++) {
        const zlb_poller_info_t *in = &s->info[i];
        const zlb_counters_t *c = &s->poller[i].c;
        double cps =
            v->rates && v->rates->poller_connects_per_s ? v->rates->poller_connects_per_s[i] : 0.0;
        json_t *row = json_pack(
            "{s:i, s:i, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:I, s:I, s:I}",
            "id", in->id, "cpu", in->cpu, "policy", in->policy, "priority", in->priority,
            "load_pct", zlb_json_real(in->stats.load_pct), "cpu_pct",
            zlb_json_real(in->stats.cpu_pct), "cpu_time_s",
            zlb_json_real(ns_to_s(in->stats.cpu_time_ns)), "loop_lag_us",
            zlb_json_real((double)in->stats.lag_last_ns / 1e3), "loop_lag_max_us",
            zlb_json_real((double)in->stats.lag_max_ns / 1e3), "open", (json_int_t)c->open,
            "connects", (json_int_t)c->established, "attempted", (json_int_t)c->attempted,
            "connects_per_s", zlb_json_real(cps), "events", (json_int_t)in->stats.events, "tasks",
            (json_int_t)in->stats.tasks, "timers", (json_int_t)in->stats.timers);
        if (in->warning[0])
            json_object_set_new(row, "warning", json_string(in->warning));
        json_array_append_new(arr, row);
    }
    return arr;
}

static json_t *targets_json(const zlb_view_t *v)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < v->ntargets && i < v->snap->ntargets; i++) {
        json_t *row = zlb_counters_to_json(&v->snap->target[i], 0);
        const zlb_tls_config_t *tls = v->targets[i].tls;
        bool on = tls && tls->enabled;
        json_object_set_new(row, "name", json_string(v->targets[i].name));
        json_object_set_new(row, "tls", json_boolean(on));
        /* Verification off must show in every report that relied on it. */
        if (on)
            json_object_set_new(row, "tls_verify", json_boolean(tls->verify));
        json_array_append_new(arr, row);
    }
    return arr;
}

json_t *zlb_render_stats(const zlb_view_t *v)
{
    const zlb_config_t *cfg = v->cfg;
    const zlb_stats_t *t = &v->snap->total;
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string(ZLB_REPORT_SCHEMA));
    json_object_set_new(root, "state", json_string(zlb_state_name(v->state)));
    json_object_set_new(root, "elapsed_s", zlb_json_real(v->elapsed_s));
    json_object_set_new(root, "config_hash", json_string(v->config_hash));
    zlb_report_level_t lv = {.stats = t,
                             .target = cfg->connections,
                             .rates = v->rates,
                             .percentiles = cfg->report.percentiles,
                             .npercentiles = cfg->report.npercentiles,
                             .totals = true};
    zlb_report_put_level(root, &lv);
    json_object_set_new(root, "ramp", ramp_json(v));
    json_object_set_new(root, "pollers", zlb_render_pollers(v));
    json_object_set_new(root, "targets", targets_json(v));
    json_object_set_new(root, "generator", generator_json(v));
    return root;
}

/* ---- /metrics ----------------------------------------------------------------------------- */

static void prom_counter(zlb_buf_t *b, const char *name, const char *help, uint64_t value)
{
    zlb_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                   (unsigned long long)value);
}

static void prom_gauge(zlb_buf_t *b, const char *name, const char *help, double value)
{
    zlb_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name,
                   isfinite(value) ? value : 0.0);
}

void zlb_render_metrics(const zlb_view_t *v, zlb_buf_t *b)
{
    const zlb_stats_t *t = &v->snap->total;
    const zlb_counters_t *c = &t->c;
    prom_counter(b, "zlbench_connections_attempted_total", "Connection attempts started.",
                 c->attempted);
    prom_counter(b, "zlbench_connections_established_total", "Connections established.",
                 c->established);
    prom_counter(b, "zlbench_connections_closed_total",
                 "Established connections closed cleanly (by zlbench or by the peer).",
                 c->closed_by_us + c->closed_by_peer);
    zlb_buf_printf(b, "# HELP zlbench_connections_failed_total Failed connections by reason and "
                      "phase.\n# TYPE zlbench_connections_failed_total counter\n");
    for (int f = 0; f < ZLB_FAIL__COUNT; f++) {
        zlb_buf_printf(b,
                       "zlbench_connections_failed_total{reason=\"%s\",phase=\"connect\"} %llu\n",
                       zlb_fail_name((zlb_fail_t)f), (unsigned long long)c->failed_before[f]);
        zlb_buf_printf(b,
                       "zlbench_connections_failed_total{reason=\"%s\",phase=\"established\"} "
                       "%llu\n",
                       zlb_fail_name((zlb_fail_t)f), (unsigned long long)c->failed_after[f]);
    }
    prom_gauge(b, "zlbench_connections_open", "Connections open now.", (double)c->open);
    prom_gauge(b, "zlbench_connections_in_flight", "Attempts started and not yet finished.",
               (double)c->in_flight);
    prom_gauge(b, "zlbench_connections_target", "Connections the run aims to hold.",
               (double)v->cfg->connections);
    prom_counter(b, "zlbench_bytes_received_total", "Bytes read from targets.", c->bytes_in);
    prom_counter(b, "zlbench_bytes_sent_total", "Bytes written to targets.", c->bytes_out);
    prom_counter(b, "zlbench_messages_total", "Workload round trips completed.", c->messages);
    prom_counter(b, "zlbench_tls_handshakes_total", "TLS handshakes completed.", c->tls_handshakes);
    prom_counter(b, "zlbench_tls_resumed_total", "TLS handshakes that resumed a session.",
                 c->tls_resumed);
    zlb_buf_printf(b, "# HELP zlbench_tls_failures_total TLS handshake failures by OpenSSL reason "
                      "and certificate verification failures by X509 verify code.\n"
                      "# TYPE zlbench_tls_failures_total counter\n");
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
    prom_gauge(b, "zlbench_elapsed_seconds", "Seconds since the run started.", v->elapsed_s);
    prom_gauge(b, "zlbench_generator_saturated",
               "1 when the generator itself is the bottleneck (its figures are suspect).",
               v->saturation && v->saturation->saturated ? 1.0 : 0.0);
    zlb_buf_printf(b, "# HELP zlbench_poller_load_ratio Share of time a poller was busy over its "
                      "load window.\n# TYPE zlbench_poller_load_ratio gauge\n");
    for (size_t i = 0; i < v->snap->npollers; i++)
        zlb_buf_printf(b, "zlbench_poller_load_ratio{poller=\"%d\"} %.6f\n", v->snap->info[i].id,
                       v->snap->info[i].stats.load_pct / 100.0);
    zlb_buf_printf(b, "# HELP zlbench_poller_cpu_seconds_total Thread CPU time of a poller.\n"
                      "# TYPE zlbench_poller_cpu_seconds_total counter\n");
    for (size_t i = 0; i < v->snap->npollers; i++)
        zlb_buf_printf(b, "zlbench_poller_cpu_seconds_total{poller=\"%d\"} %.9f\n",
                       v->snap->info[i].id, ns_to_s(v->snap->info[i].stats.cpu_time_ns));
    for (int l = 0; l < ZLB_LAT__COUNT; l++) {
        char name[96], help[160];
        snprintf(name, sizeof(name), "zlbench_%s_seconds", zlb_lat_name((zlb_lat_t)l));
        snprintf(help, sizeof(help), "Latency of the %s phase.", zlb_lat_name((zlb_lat_t)l));
        zlb_prom_histogram(b, name, help, "", t->lat[l]);
    }
}

/* ---- host facts --------------------------------------------------------------------------- */

json_t *zlb_render_host(void)
{
    struct utsname u;
    char host[256] = "";
    if (uname(&u) != 0)
        memset(&u, 0, sizeof(u));
    gethostname(host, sizeof(host) - 1);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:{s:s, s:s, s:s, s:s, s:s}}", "hostname",
                     host, "kernel", u.release, "machine", u.machine, "os", u.sysname,
                     "cpus_online", (int)sysconf(_SC_NPROCESSORS_ONLN), "cpus_allowed",
                     zlb_cpus_allowed(), "versions", "zlbench", zlb_version(), "commit",
                     zlb_git_commit(), "openssl", OpenSSL_version(OPENSSL_VERSION), "jansson",
                     JANSSON_VERSION, "libmicrohttpd", MHD_get_version());
}
