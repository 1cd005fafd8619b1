/* render.c -- engine snapshots as the /stats JSON and the pollers table (/metrics: metrics.c). */
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
#include "serve/serve.h"
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

/* The ramp: how long the initial connections took to open, and the rate that achieved (the
 * connections opened over that time), beside the rate the config asked for. While the ramp runs,
 * the figures so far. */
static json_t *ramp_json(const zlb_view_t *v)
{
    const zlb_work_snapshot_t *s = v->snap;
    bool reached = s->target_reached_ns != 0;
    uint64_t end = reached ? s->target_reached_ns : v->ramp_end_ns ? v->ramp_end_ns : s->taken_ns;
    uint64_t n = reached          ? v->cfg->connections
                 : v->ramp_end_ns ? v->ramp_established
                                  : s->total.c.established;
    double seconds =
        s->first_attempt_ns && end > s->first_attempt_ns ? ns_to_s(end - s->first_attempt_ns) : 0.0;
    json_t *o = json_pack("{s:b, s:o, s:I, s:o, s:o}", "target_reached", reached, "seconds",
                          zlb_json_real(seconds), "established", (json_int_t)n, "connects_per_s",
                          zlb_json_real(seconds > 0 ? (double)n / seconds : 0.0),
                          "requested_connects_per_s", zlb_json_real(v->cfg->connect_rate));
    /* A profile has no ramp of its own (its first stage is one): these figures are of the
     * top-level connections, often 0, so a reader is told to look at stages[] instead. */
    if (v->cfg->nstages)
        json_object_set_new(o, "staged", json_true());
    return o;
}

static json_t *generator_json(const zlb_view_t *v)
{
    json_t *reasons = json_array(), *rules = json_array();
    const zlb_monitor_t *m = v->saturation;
    for (int i = 0; m && i < m->nreasons; i++) {
        json_array_append_new(reasons, json_string(m->reasons[i].text));
        json_array_append_new(rules, json_string(zlb_monitor_rule_name(m->reasons[i].rule)));
    }
    return json_pack("{s:b, s:o, s:o, s:I}", "saturated", m && m->saturated, "reasons", reasons,
                     "rules", rules, "scheduler_backlog", (json_int_t)v->snap->scheduler_backlog);
}

/* Rates over the trailing stats interval (the live view; the top-level rates are whole-run
 * averages). */
static json_t *last_interval_json(const zlb_view_t *v)
{
    const zlb_monitor_t *m = v->saturation;
    static const zlb_rates_t zero;
    json_t *j = zlb_report_rates_json(m ? &m->last_interval : &zero);
    json_object_set_new(j, "seconds", zlb_json_real(m ? m->last_interval_s : 0.0));
    return j;
}

json_t *zlb_render_pollers(const zlb_view_t *v)
{
    const zlb_work_snapshot_t *s = v->snap;
    const zlb_monitor_t *m = v->saturation;
    json_t *arr = json_array();
    for (size_t i = 0; i < s->npollers; i++) {
        const zlb_poller_info_t *in = &s->info[i];
        const zlb_counters_t *c = &s->poller[i].c;
        zlb_mon_poller_t mp = {
            .busy_pct = in->stats.load_pct, .cpu_pct = in->stats.cpu_pct, .runq_wait_pct = -1};
        if (m && i < m->npollers)
            mp = m->poller[i];
        /* busy: wall time outside epoll_wait; cpu: thread CPU time; run-queue wait: runnable but
         * not running. Over the trailing interval, each as a share of wall time. */
        json_t *row = json_pack(
            "{s:i, s:i, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:I, s:I, "
            "s:I}",
            "id", in->id, "cpu", in->cpu, "policy", in->policy, "priority", in->priority,
            "busy_pct", zlb_json_real(mp.busy_pct), "load_pct", zlb_json_real(mp.busy_pct),
            "cpu_pct", zlb_json_real(mp.cpu_pct), "runq_wait_pct",
            mp.runq_wait_pct < 0 ? json_null() : zlb_json_real(mp.runq_wait_pct), "cpu_time_s",
            zlb_json_real(ns_to_s(in->stats.cpu_time_ns)), "loop_lag_us",
            zlb_json_real((double)in->stats.lag_last_ns / 1e3), "loop_lag_max_us",
            zlb_json_real((double)in->stats.lag_max_ns / 1e3), "open", (json_int_t)c->open,
            "connects", (json_int_t)c->established, "attempted", (json_int_t)c->attempted,
            "connects_per_s", zlb_json_real(mp.connects_per_s), "events",
            (json_int_t)in->stats.events, "tasks", (json_int_t)in->stats.tasks, "timers",
            (json_int_t)in->stats.timers);
        /* Stream runs read throughput per poller from these (cumulative bytes). */
        json_object_set_new(row, "bytes_in", json_integer((json_int_t)c->bytes_in));
        json_object_set_new(row, "bytes_out", json_integer((json_int_t)c->bytes_out));
        if (in->warning[0])
            json_object_set_new(row, "warning", json_string(in->warning));
        if (v->poller_process)
            json_object_set_new(row, "process", json_integer(v->poller_process[i]));
        json_array_append_new(arr, row);
    }
    return arr;
}

/* The built-in target's own count of the same connections: where the client saw a connection
 * end or fail, the server side says whether it refused, timed out or never accepted it. */
static json_t *embedded_json(const zlb_serve_t *t, bool tls)
{
    zlb_serve_stats_t s;
    zlb_serve_read_stats(t, &s);
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "accepted", (json_int_t)s.accepted,
                          "open", (json_int_t)s.open, "closed", (json_int_t)s.closed, "rejected",
                          (json_int_t)s.rejected, "accept_errors", (json_int_t)s.accept_errors,
                          "bytes_in", (json_int_t)s.bytes_in, "bytes_out", (json_int_t)s.bytes_out);
    if (tls)
        json_object_set_new(o, "tls",
                            json_pack("{s:I, s:I, s:I, s:I}", "handshakes",
                                      (json_int_t)s.tls_handshakes, "resumed",
                                      (json_int_t)s.tls_resumed, "failed", (json_int_t)s.tls_failed,
                                      "timeouts", (json_int_t)s.tls_timeouts));
    return o;
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
        if (i == 0 && v->embedded)
            json_object_set_new(row, "server", embedded_json(v->embedded, on));
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
    /* Which part of the scenario this generator runs: what merge checks a set of shards by. */
    if (cfg->shard.count > 1)
        json_object_set_new(root, "shard",
                            json_pack("{s:I, s:I, s:s}", "index", (json_int_t)cfg->shard.index,
                                      "count", (json_int_t)cfg->shard.count, "config_hash",
                                      v->config_hash));
    zlb_report_level_t lv = {.stats = t,
                             .target = v->target,
                             .rates = v->rates,
                             .percentiles = cfg->report.percentiles,
                             .npercentiles = cfg->report.npercentiles,
                             .totals = true};
    zlb_report_put_level(root, &lv);
    json_object_set_new(root, "last_interval", last_interval_json(v));
    json_object_set_new(root, "ramp", ramp_json(v));
    json_object_set_new(root, "pollers", zlb_render_pollers(v));
    json_object_set_new(root, "targets", targets_json(v));
    json_object_set_new(root, "generator", generator_json(v));
    return root;
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
