/* run.c -- the run controller: wires target, pollers, engine and control port; phases and stop. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"
#include "run/run_internal.h"
#include "serve/serve.h"

/* The controller ticks at this period: snapshot, publish, phase checks. Fast enough that a
 * poller of /stats sees fresh numbers, slow enough that copying the histograms costs the
 * pollers well under 1 % of their time. */
#define TICK_NS (100 * ZLB_NS_PER_MS)
/* The live line fits a classic 80-column terminal (the cursor takes the last). */
#define ZLB_LIVE_COLUMNS 79
#define PROGRESS_LOG_EVERY_NS (5 * ZLB_NS_PER_SEC)

typedef struct run {
    const zlb_config_t *cfg; /* borrowed */
    zlb_run_opts_t opts;
    char config_hash[17];
    char *config_text; /* owned: the effective config, served at /config and put in the report */

    zlb_serve_t *target;           /* owned, the embedded target or NULL */
    zlb_tls_config_t embedded_tls; /* how the engine speaks to a TLS embedded target */
    char *embedded_ca_tmp;         /* owned: our temporary file of its CA, unlinked at teardown */
    char **target_names;           /* owned strings */
    zlb_work_target_t *targets;
    size_t ntargets;
    zlb_pool_t *pool;
    zlb_work_t *engine;
    zlb_control_t *control;
    char *token;

    int sigfd;  /* SIGINT/SIGTERM, read on this thread only */
    int stopfd; /* eventfd: POST /stop from the control thread */

    zlb_state_t state;
    uint64_t t_start, t_measure_start, t_stop_requested, t_end;
    uint64_t t_start_wall_ns; /* t_start on the wall clock, for zlbench_start_time_seconds */
    zlb_prom_buckets_t buckets;
    bool measuring; /* the warm-up is over: the base snapshot was taken */
    bool ramp_done;
    int signals_seen;
    bool immediate;
    const char *stop_reason;

    zlb_work_snapshot_t snap;
    zlb_work_snapshot_t base; /* at the end of warm-up: steady figures are snap - base */
    zlb_stats_t at_stop;      /* when the stop was asked for, before the drain */
    bool have_at_stop;
    zlb_rates_t rates;        /* whole-run averages */
    zlb_monitor_t mon;        /* last_interval rates, per-poller shares, saturation */
    zlb_mon_poller_in_t *pin; /* npollers: the latest snapshot's per-poller figures */
    uint64_t ramp_end_ns, ramp_established;
    uint64_t last_progress_ns;
    uint64_t last_abort_check_ns;
    bool tty;
} run_t;

/* ---- rates and the generator's self-watch ------------------------------------------------- */

/* Each tick: the whole-run averages (counters over the time since the start) and the monitor's
 * sample (last_interval rates, per-poller busy/CPU/run-queue shares). */
static void monitor_sample(run_t *r)
{
    const zlb_work_snapshot_t *s = &r->snap;
    for (size_t i = 0; i < s->npollers; i++) {
        const zlb_poller_info_t *in = &s->info[i];
        r->pin[i] = (zlb_mon_poller_in_t){
            .established = s->poller[i].c.established,
            /* The kernel's figure is exact at the read; the loop's lags up to a bucket. */
            .cpu_ns = in->run_ns != UINT64_MAX ? in->run_ns : in->stats.cpu_time_ns,
            .runq_wait_ns = in->runq_wait_ns,
            .busy_pct = in->stats.load_pct,
            .lag_max_ns = in->stats.lag_max_ns,
        };
    }
    zlb_monitor_sample(&r->mon, s->taken_ns, &s->total.c, r->pin);
    static const zlb_counters_t zero;
    double secs =
        r->t_start && s->taken_ns > r->t_start ? (double)(s->taken_ns - r->t_start) / 1e9 : 0.0;
    zlb_rates_over(&r->rates, &zero, &s->total.c, secs);
}

/* The generator watches itself while the measured window runs: sustained busy or run-queue
 * wait, a scheduler behind its rate. Lateness and stalls are judged at the end, over the whole
 * run and the measured window (finish), from the scheduled actions themselves: a poller's timer
 * lag is no measure of them, as a timer armed for a deadline already past reads as late. */
static void check_saturation(run_t *r)
{
    if (!r->measuring || r->state == ZLB_STATE_DRAINING)
        return;
    zlb_monitor_check_sustained(&r->mon, r->snap.taken_ns, r->snap.scheduler_backlog,
                                r->cfg->connect_rate > 0);
}

/* Lateness phases not judged in this run: a connect schedule with no rate ("as fast as
 * possible") has every attempt due at the start, so its schedule lag is no lateness. */
static uint32_t lateness_ignored(const run_t *r)
{
    return r->cfg->connect_rate > 0 ? 0 : 1u << ZLB_LAT_SCHEDULE_LAG;
}

/* ---- views and publishing ------------------------------------------------------------------ */

static zlb_view_t make_view(run_t *r)
{
    zlb_view_t v = {
        .cfg = r->cfg,
        .config_hash = r->config_hash,
        .state = r->state,
        .elapsed_s = r->t_start ? (double)(zlb_now_ns() - r->t_start) / 1e9 : 0.0,
        .snap = &r->snap,
        .rates = &r->rates,
        .saturation = &r->mon,
        .ramp_end_ns = r->ramp_end_ns,
        .ramp_established = r->ramp_established,
        .targets = r->targets,
        .ntargets = r->ntargets,
        .started_unix_s = (double)(r->t_start_wall_ns / ZLB_NS_PER_MS) / 1e3,
        .buckets = &r->buckets,
    };
    return v;
}

static void publish_json(run_t *r, const char *path, unsigned status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    if (!text)
        zlb_fatal("json_dumps failed for %s", path);
    zlb_control_publish(r->control, path, status, "application/json", text, strlen(text));
    free(text);
}

static void publish(run_t *r)
{
    if (!r->control)
        return;
    zlb_view_t v = make_view(r);
    publish_json(r, "/stats", 200, zlb_render_stats(&v));
    publish_json(r, "/stats/pollers", 200, zlb_render_pollers(&v));
    bool running = r->state != ZLB_STATE_DONE;
    publish_json(r, "/health", running ? 200 : 503,
                 json_pack("{s:s, s:s}", "status", running ? "ok" : "done", "state",
                           zlb_state_name(r->state)));
    zlb_buf_t b;
    zlb_buf_init(&b);
    zlb_render_metrics(&v, &b);
    zlb_control_publish(r->control, "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8",
                        b.data ? b.data : "", b.len);
    zlb_buf_dispose(&b);
}

/* ---- progress ------------------------------------------------------------------------------ */

/* "850us", "12.3ms", "1.23s": a latency in a few columns. */
static void fmt_dur(char *out, size_t len, uint64_t ns)
{
    if (ns < 10 * ZLB_NS_PER_MS && ns < 1000 * 1000)
        snprintf(out, len, "%.0fus", (double)ns / 1e3);
    else if (ns < ZLB_NS_PER_SEC)
        snprintf(out, len, "%.1fms", (double)ns / 1e6);
    else
        snprintf(out, len, "%.2fs", (double)ns / 1e9);
}

/* The live line: at most 79 columns, each figure named. Rates are over the last interval,
 * percentiles over the whole run so far; busy is each poller's wall time outside epoll_wait. */
static void progress(run_t *r, bool final)
{
    if (r->opts.quiet)
        return;
    uint64_t now = zlb_now_ns();
    if (!r->tty && !final && now - r->last_progress_ns < PROGRESS_LOG_EVERY_NS)
        return;
    if (r->tty && !final && now - r->last_progress_ns < ZLB_NS_PER_SEC)
        return;
    r->last_progress_ns = now;
    const zlb_counters_t *c = &r->snap.total.c;
    const zlb_rates_t *li = &r->mon.last_interval;
    char busy[40] = "", lat[16];
    size_t np = r->snap.npollers;
    if (np <= 4) {
        size_t off = 0;
        for (size_t i = 0; i < np && off < sizeof(busy); i++)
            off += (size_t)snprintf(busy + off, sizeof(busy) - off, "%s%.0f%%", i ? "," : "",
                                    r->mon.poller[i].busy_pct);
    } else {
        double max = 0;
        for (size_t i = 0; i < np; i++)
            max = ZLB_MAX(max, r->mon.poller[i].busy_pct);
        snprintf(busy, sizeof(busy), "max %.0f%%", max);
    }
    char line[256];
    int n;
    if (r->cfg->workload.type == ZLB_WORK_HTTP) {
        fmt_dur(lat, sizeof(lat),
                zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_HTTP_RESPONSE], 99));
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu req/s %.0f response p99 %s err %llu busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)r->cfg->connections,
                     li->requests_per_s, lat, (unsigned long long)zlb_counters_failed_total(c),
                     busy);
    } else if (c->messages || r->cfg->workload.type == ZLB_WORK_ECHO) {
        fmt_dur(lat, sizeof(lat), zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_MESSAGE_RT], 99));
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu msg/s %.0f rtt p99 %s err %llu "
                     "busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)r->cfg->connections,
                     li->messages_per_s, lat, (unsigned long long)zlb_counters_failed_total(c),
                     busy);
    } else {
        fmt_dur(lat, sizeof(lat), zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_CONNECT], 99));
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu conn/s %.0f connect p99 %s "
                     "err %llu busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)r->cfg->connections,
                     li->connects_per_s, lat, (unsigned long long)zlb_counters_failed_total(c),
                     busy);
    }
    if (n < 0)
        return;
    line[ZLB_MIN((size_t)n, (size_t)ZLB_LIVE_COLUMNS)] = '\0';
    if (r->tty)
        zlb_log_live(line, final);
    else
        zlb_log_info("%s", line);
}

/* ---- phases -------------------------------------------------------------------------------- */

static int take_snapshot(run_t *r)
{
    int rc = zlb_work_snapshot(r->engine, &r->snap);
    if (rc != 0)
        return rc;
    if (!zlb_counters_balanced(&r->snap.total.c))
        zlb_log_error("accounting invariant broken: attempted %llu established %llu in_flight %llu",
                      (unsigned long long)r->snap.total.c.attempted,
                      (unsigned long long)r->snap.total.c.established,
                      (unsigned long long)r->snap.total.c.in_flight);
    monitor_sample(r);
    return 0;
}

static void begin_measuring(run_t *r)
{
    zlb_stats_copy(&r->base.total, &r->snap.total);
    r->base.taken_ns = r->snap.taken_ns;
    r->t_measure_start = r->snap.taken_ns;
    r->measuring = true;
    for (size_t i = 0; i < r->snap.npollers; i++)
        zlb_loop_reset_lag_max(zlb_pool_loop(r->pool, (int)i));
}

static void request_stop(run_t *r, const char *reason, bool immediate)
{
    if (!r->stop_reason)
        r->stop_reason = reason;
    if (immediate)
        r->immediate = true;
    if (r->state == ZLB_STATE_DRAINING || r->state == ZLB_STATE_DONE)
        return;
    /* The measured window ends here: what the drain closes or cancels is not steady state. */
    if (r->measuring && take_snapshot(r) == 0) {
        zlb_stats_copy(&r->at_stop, &r->snap.total);
        r->have_at_stop = true;
    }
    r->state = ZLB_STATE_DRAINING;
    r->t_stop_requested = zlb_now_ns();
    zlb_work_close_all(r->engine);
    zlb_log_info("stopping (%s): draining for at most %.1f s", reason,
                 (double)r->cfg->drain_timeout_ns / 1e9);
}

static void update_phase(run_t *r)
{
    uint64_t now = zlb_now_ns();
    const zlb_counters_t *c = &r->snap.total.c;
    if (r->state == ZLB_STATE_RAMPING) {
        /* The ramp is over once the target count was open at once, or every initial attempt has
         * had its answer (a target that refuses some never reaches the count). */
        bool all_answered = c->attempted >= r->cfg->connections && c->in_flight == 0 &&
                            r->snap.scheduler_backlog == 0;
        if (r->snap.target_reached_ns || all_answered) {
            r->state = ZLB_STATE_STEADY;
            r->ramp_done = true;
            r->ramp_end_ns =
                r->snap.target_reached_ns ? r->snap.target_reached_ns : r->snap.taken_ns;
            r->ramp_established = r->snap.target_reached_ns ? r->cfg->connections : c->established;
        }
    }
    /* Warm-up runs from the first attempt; the measured window starts when it ends. */
    if (!r->measuring && r->state != ZLB_STATE_DRAINING && now - r->t_start >= r->cfg->warmup_ns)
        begin_measuring(r);
    if (r->cfg->duration_ns && now - r->t_start >= r->cfg->duration_ns)
        request_stop(r, "duration", false);
}

static json_t *steady_json(run_t *r, zlb_stats_t *steady);

/* The measured window's figures: from the end of warm-up to the stop request (or to now). */
static void steady_stats(run_t *r, zlb_stats_t *out)
{
    zlb_stats_copy(out, r->have_at_stop ? &r->at_stop : &r->snap.total);
    zlb_stats_sub(out, &r->base.total);
}

/* abort_on_fail: once a second after the grace period, the thresholds are checked against the
 * same steady figures the final report uses, so a run is never aborted for a threshold that its
 * report then says held. */
static void check_abort(run_t *r)
{
    const zlb_config_t *cfg = r->cfg;
    uint64_t now = zlb_now_ns();
    if (!cfg->abort_on_fail || !cfg->nthresholds || !r->measuring || r->state != ZLB_STATE_STEADY ||
        now - r->t_start < cfg->abort_grace_ns || now - r->last_abort_check_ns < ZLB_NS_PER_SEC)
        return;
    r->last_abort_check_ns = now;
    zlb_view_t v = make_view(r);
    json_t *live = zlb_render_stats(&v);
    zlb_stats_t steady;
    zlb_stats_init(&steady);
    steady_stats(r, &steady);
    json_object_set_new(live, "steady", steady_json(r, &steady));
    zlb_stats_dispose(&steady);
    int failed = zlb_gate_thresholds(cfg, live);
    if (failed) {
        size_t i;
        json_t *row;
        json_array_foreach(json_object_get(live, "thresholds"), i, row)
        {
            if (!json_is_true(json_object_get(row, "passed")))
                zlb_log_warn("threshold failed: %s %s (observed %g): aborting the run",
                             json_string_value(json_object_get(row, "path")),
                             json_string_value(json_object_get(row, "expr")),
                             json_number_value(json_object_get(row, "observed")));
        }
        request_stop(r, "threshold_failed", false);
    }
    json_decref(live);
}

static void handle_signals(run_t *r)
{
    struct signalfd_siginfo si;
    while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        r->signals_seen++;
        const char *name = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
        if (r->signals_seen == 1) {
            request_stop(r, si.ssi_signo == SIGINT ? "signal_sigint" : "signal_sigterm", false);
            zlb_log_warn("%s: graceful stop; send it again to stop at once", name);
        } else {
            request_stop(r, r->stop_reason, true);
            zlb_log_warn("%s again: stopping now", name);
        }
    }
    uint64_t v;
    if (read(r->stopfd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        request_stop(r, "control_stop", false);
}

static void on_control_stop(void *arg)
{
    run_t *r = arg;
    uint64_t one = 1;
    if (write(r->stopfd, &one, sizeof(one)) < 0)
        zlb_log_warn("stop request lost: %s", strerror(errno));
}

/* ---- the final report ---------------------------------------------------------------------- */

static json_t *steady_json(run_t *r, zlb_stats_t *steady)
{
    const zlb_config_t *cfg = r->cfg;
    uint64_t t_end = r->t_stop_requested ? r->t_stop_requested : r->snap.taken_ns;
    double secs = r->measuring && t_end > r->t_measure_start
                      ? (double)(t_end - r->t_measure_start) / 1e9
                      : 0.0;
    /* The window's averages: its counters (a period, from zero) over its length. */
    zlb_counters_t zero = {0};
    zlb_rates_t avg = {0};
    zlb_rates_over(&avg, &zero, &steady->c, secs);
    json_t *j = json_object();
    json_object_set_new(j, "seconds", zlb_json_real(secs));
    zlb_report_level_t lv = {.stats = steady,
                             .target = cfg->connections,
                             .rates = &avg,
                             .percentiles = cfg->report.percentiles,
                             .npercentiles = cfg->report.npercentiles,
                             .histograms = true};
    zlb_report_put_level(j, &lv);
    return j;
}

/* A number as a number: integers without a fraction, others with up to 4 significant
 * decimals, never in exponent form; a boolean threshold's observation as true/false. */
static void fmt_num(char *out, size_t len, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, len, "%.0f", v);
    else if (fabs(v) >= 100)
        snprintf(out, len, "%.1f", v);
    else
        snprintf(out, len, "%.4g", v);
}

static void fmt_bytes_per_s(char *out, size_t len, double v)
{
    if (v >= 1e9)
        snprintf(out, len, "%.2f GB/s", v / 1e9);
    else if (v >= 1e6)
        snprintf(out, len, "%.2f MB/s", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, len, "%.1f kB/s", v / 1e3);
    else
        snprintf(out, len, "%.0f B/s", v);
}

/* "194 connects/s, 194 closes/s, 0 failures/s[, 2500 msgs/s, 1.20 MB/s in, ...]" */
static void print_rates(const char *label, const char *span, const zlb_rates_t *rt, bool data_moved)
{
    printf("  %-12s %s: %.0f connects/s, %.0f closes/s, %.0f failures/s", label, span,
           rt->connects_per_s, rt->closes_per_s, rt->failures_per_s);
    if (data_moved) {
        char in[32], out[32];
        fmt_bytes_per_s(in, sizeof(in), rt->bytes_in_per_s);
        fmt_bytes_per_s(out, sizeof(out), rt->bytes_out_per_s);
        printf(", %.0f messages/s, %.0f requests/s, %s in, %s out", rt->messages_per_s,
               rt->requests_per_s, in, out);
    }
    printf("\n");
}

/* "normal nice 0", "fifo priority 10": the scheduling class a poller got, in words. */
static void fmt_policy(char *out, size_t len, const zlb_poller_info_t *in)
{
    if (strcmp(in->policy, "other") == 0)
        snprintf(out, len, "normal, nice %d", in->priority);
    else
        snprintf(out, len, "%s, priority %d", in->policy, in->priority);
}

static void print_latency(const zlb_stats_t *steady, const zlb_stats_t *whole, double steady_s)
{
    printf("  latency (us), steady window (%.1f s) unless marked\n", steady_s);
    printf("    %-28s %9s %10s %10s %10s %10s %10s\n", "phase", "count", "p50", "p90", "p99",
           "p99.9", "max");
    static const zlb_lat_t shown[] = {
        ZLB_LAT_CONNECT,       ZLB_LAT_CONNECT_SERVICE, ZLB_LAT_DNS,
        ZLB_LAT_TLS_FULL,      ZLB_LAT_TLS_RESUMED,     ZLB_LAT_FIRST_BYTE,
        ZLB_LAT_MESSAGE_RT,    ZLB_LAT_MESSAGE_SERVICE, ZLB_LAT_HTTP_FIRST_BYTE,
        ZLB_LAT_HTTP_RESPONSE, ZLB_LAT_HTTP_SERVICE,    ZLB_LAT_SCHEDULE_LAG,
        ZLB_LAT_SEND_LAG};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(shown); i++) {
        const zlb_hist_t *h = steady->lat[shown[i]];
        const char *mark = "";
        if (!zlb_hist_count(h)) {
            /* None in the measured window (a hold run's connects all happen in a warm-up that
             * covers the ramp): the whole run's, marked, as thresholds read them. */
            h = whole->lat[shown[i]];
            mark = " (whole run)";
        }
        if (!zlb_hist_count(h))
            continue;
        char name[40];
        snprintf(name, sizeof(name), "%s%s", zlb_lat_name(shown[i]), mark);
        printf("    %-28s %9llu %10.1f %10.1f %10.1f %10.1f %10.1f\n", name,
               (unsigned long long)zlb_hist_count(h), zlb_hist_percentile(h, 50) / 1e3,
               zlb_hist_percentile(h, 90) / 1e3, zlb_hist_percentile(h, 99) / 1e3,
               zlb_hist_percentile(h, 99.9) / 1e3, zlb_hist_max(h) / 1e3);
    }
}

static void print_summary(run_t *r, json_t *report, const zlb_stats_t *steady, int failed,
                          const char *invalid_why)
{
    if (r->opts.quiet)
        return;
    const zlb_counters_t *c = &r->snap.total.c;
    double v, steady_s = 0;
    zlb_report_lookup(report, "steady.seconds", &steady_s);
    printf("\nzlbench %s: %s, stopped by %s after %.1f s\n", zlb_version(),
           r->ntargets == 1 ? r->targets[0].name : "several targets", r->stop_reason,
           (double)(r->t_end - r->t_start) / 1e9);
    printf("  connections  attempted %llu  established %llu  failed %llu  closed %llu\n",
           (unsigned long long)c->attempted, (unsigned long long)c->established,
           (unsigned long long)zlb_counters_failed_total(c),
           (unsigned long long)(c->closed_by_us + c->closed_by_peer));
    for (int f = 0; f < ZLB_FAIL__COUNT; f++) {
        uint64_t n = c->failed_before[f] + c->failed_after[f];
        if (n)
            printf("    failed %-16s %llu\n", zlb_fail_name((zlb_fail_t)f), (unsigned long long)n);
    }
    if (c->attempted && !c->established)
        printf("  NO CONNECTION was established: nothing answered at %s\n",
               r->ntargets == 1 ? r->targets[0].name : "any target");
    if (c->tls_handshakes || c->failed_before[ZLB_FAIL_TLS_HANDSHAKE] ||
        c->failed_before[ZLB_FAIL_TLS_VERIFY]) {
        printf("  tls          %llu handshakes, %llu resumed (%.1f%%)\n",
               (unsigned long long)c->tls_handshakes, (unsigned long long)c->tls_resumed,
               c->tls_handshakes ? 100.0 * (double)c->tls_resumed / (double)c->tls_handshakes
                                 : 0.0);
        json_t *fails = json_object_get(json_object_get(report, "tls"), "failures");
        const char *kind, *why;
        json_t *group, *n;
        json_object_foreach(fails, kind, group)
        {
            json_object_foreach(group, why, n)
            {
                printf("    tls %-9s %-24s %lld\n", kind, why, (long long)json_integer_value(n));
            }
        }
    }
    if (c->requests_sent) {
        /* The http workload: requests (invariant's terms), steady rate, status classes and the
         * codes seen, errors by kind. */
        printf("  requests     sent %llu  responses %llu  failed %llu  in flight %llu",
               (unsigned long long)c->requests_sent, (unsigned long long)c->responses,
               (unsigned long long)c->requests_failed, (unsigned long long)c->requests_in_flight);
        printf("\n");
        json_t *http = json_object_get(report, "http");
        const char *key;
        json_t *n;
        printf("    status  ");
        json_object_foreach(json_object_get(http, "status"), key, n)
        {
            if (json_integer_value(n))
                printf(" %s %lld", key, (long long)json_integer_value(n));
        }
        printf("\n");
        json_object_foreach(json_object_get(http, "errors"), key, n)
        {
            if (json_integer_value(n) && strcmp(key, "total") != 0)
                printf("    http error %-16s %lld\n", key, (long long)json_integer_value(n));
        }
    }
    double ramp_s = 0, ramp_cps = 0;
    zlb_report_lookup(report, "ramp.seconds", &ramp_s);
    zlb_report_lookup(report, "ramp.connects_per_s", &ramp_cps);
    char req[48] = "as fast as possible";
    if (r->cfg->connect_rate > 0)
        snprintf(req, sizeof(req), "requested %.0f/s", r->cfg->connect_rate);
    if (r->snap.target_reached_ns)
        printf("  ramp         %llu open after %.3f s: %.0f connects/s (%s)\n",
               (unsigned long long)r->cfg->connections, ramp_s, ramp_cps, req);
    else
        printf("  ramp         target of %llu open connections not reached (%.0f connects/s "
               "over %.3f s, %s)\n",
               (unsigned long long)r->cfg->connections, ramp_cps, ramp_s, req);
    bool data_moved = c->messages || c->bytes_in || c->bytes_out;
    char span[64];
    snprintf(span, sizeof(span), "average over %.1f s", (double)(r->t_end - r->t_start) / 1e9);
    print_rates("whole run", span, &r->rates, data_moved);
    zlb_rates_t st = {0};
    static const zlb_counters_t zero;
    zlb_rates_over(&st, &zero, &steady->c, steady_s);
    snprintf(span, sizeof(span), "average over %.1f s after the warm-up", steady_s);
    print_rates("steady", span, &st, data_moved);
    print_latency(steady, &r->snap.total, steady_s);
    for (size_t i = 0; i < r->snap.npollers; i++) {
        const zlb_poller_info_t *in = &r->snap.info[i];
        const zlb_mon_poller_t *mp = &r->mon.poller[i];
        char pol[48], runq[24] = "unknown";
        fmt_policy(pol, sizeof(pol), in);
        if (mp->runq_wait_pct >= 0)
            snprintf(runq, sizeof(runq), "%.1f%%", mp->runq_wait_pct);
        printf("  poller %-3d   cpu %d (%s): busy %.1f%%, cpu %.1f%%, waiting for a cpu %s, cpu "
               "time %.2f s, timer lag max %.0f us%s%s\n",
               in->id, in->cpu, pol, mp->busy_pct, mp->cpu_pct, runq,
               (double)in->stats.cpu_time_ns / 1e9, (double)in->stats.lag_max_ns / 1e3,
               in->warning[0] ? "; warning: " : "", in->warning);
    }
    if (r->mon.saturated)
        printf("  generator    SATURATED: its figures describe zlbench, not the target\n");
    else
        printf("  generator    not saturated (busy, run-queue wait, backlog, lateness and stall "
               "rules held)\n");
    for (int i = 0; i < r->mon.nreasons; i++)
        printf("    %s: %s\n", zlb_monitor_rule_name(r->mon.reasons[i].rule),
               r->mon.reasons[i].text);
    json_t *th = json_object_get(report, "thresholds");
    size_t idx;
    json_t *row;
    json_array_foreach(th, idx, row)
    {
        const char *expr = json_string_value(json_object_get(row, "expr"));
        json_t *obs = json_object_get(row, "observed");
        char num[40] = "missing";
        if (json_is_number(obs)) {
            v = json_number_value(obs);
            if (expr && (strstr(expr, "true") || strstr(expr, "false")))
                snprintf(num, sizeof(num), "%s", v != 0 ? "true" : "false");
            else
                fmt_num(num, sizeof(num), v);
        }
        printf("  threshold    %-32s %-10s observed %-12s %s%s\n",
               json_string_value(json_object_get(row, "path")), expr, num,
               json_is_true(json_object_get(row, "passed")) ? "pass" : "FAIL",
               json_is_true(json_object_get(row, "default")) ? " (default)" : "");
    }
    if (failed)
        printf("  %d threshold(s) failed\n", failed);
    if (invalid_why)
        printf("  INVALID RUN  %s\n", invalid_why);
    if (r->cfg->report.file)
        printf("  report       %s\n", r->cfg->report.file);
    fflush(stdout);
}

/* Share of attempts and connections that failed, cancellations at the stop excluded: they are
 * the run's ending, not the target's answer. */
static double failure_ratio(const zlb_counters_t *c)
{
    uint64_t failed = zlb_counters_failed_total(c);
    uint64_t cancelled = c->failed_before[ZLB_FAIL_CANCELLED] + c->failed_after[ZLB_FAIL_CANCELLED];
    failed = failed > cancelled ? failed - cancelled : 0;
    uint64_t attempted = c->attempted > cancelled ? c->attempted - cancelled : 0;
    return attempted ? (double)failed / (double)attempted : 0.0;
}

/* The thresholds every run has unless its config sets one on the same path: a run in which
 * nothing connected, or in which failures dominate, does not pass silently. A fault-injection run
 * opts out by naming the path itself (e.g. "failure_ratio": "<= 1"). Whole-run figures. */
#define DEFAULT_FAILURE_RATIO_MAX 0.1
static int default_thresholds(run_t *r, json_t *report)
{
    const zlb_counters_t *c = &r->snap.total.c;
    struct {
        const char *path, *expr;
        double observed;
        bool passed;
    } rows[] = {
        {"connections.established", "> 0", (double)c->established, c->established > 0},
        {"failure_ratio", "<= 0.1", failure_ratio(c),
         failure_ratio(c) <= DEFAULT_FAILURE_RATIO_MAX},
    };
    json_t *th = json_object_get(report, "thresholds");
    int failed = 0;
    for (size_t i = 0; i < ZLB_ARRAY_LEN(rows); i++) {
        bool overridden = false;
        for (size_t k = 0; k < r->cfg->nthresholds; k++)
            overridden |= strcmp(r->cfg->thresholds[k].path, rows[i].path) == 0;
        if (overridden)
            continue;
        failed += !rows[i].passed;
        json_array_append_new(th, json_pack("{s:s, s:s, s:b, s:s, s:o, s:b}", "path", rows[i].path,
                                            "expr", rows[i].expr, "passed", rows[i].passed,
                                            "source", "run", "observed",
                                            zlb_json_real(rows[i].observed), "default", 1));
    }
    return failed;
}

static int finish(run_t *r)
{
    r->state = ZLB_STATE_DONE;
    r->t_end = zlb_now_ns();
    if (!r->measuring)
        begin_measuring(r); /* a run stopped inside its warm-up: measure nothing, honestly */
    zlb_stats_t steady;
    zlb_stats_init(&steady);
    steady_stats(r, &steady);
    /* Lateness over both spans: with a warm-up that covers the ramp, the measured window has no
     * connect attempt at all, and the ramp's lateness is judged over the whole run. */
    zlb_monitor_check_lateness(&r->mon, &r->snap.total, "whole run", lateness_ignored(r));
    zlb_monitor_check_lateness(&r->mon, &steady, "steady window", lateness_ignored(r));

    zlb_view_t v = make_view(r);
    v.elapsed_s = (double)(r->t_end - r->t_start) / 1e9;
    static const zlb_counters_t zero;
    zlb_rates_over(&r->rates, &zero, &r->snap.total.c, v.elapsed_s);
    json_t *report = zlb_render_stats(&v);
    json_object_set_new(report, "stop_reason", json_string(r->stop_reason));
    json_object_set_new(report, "finished_at_unix_s", zlb_json_real((double)zlb_wall_ns() / 1e9));
    json_object_set_new(report, "failure_ratio", zlb_json_real(failure_ratio(&r->snap.total.c)));
    json_object_set_new(report, "steady", steady_json(r, &steady));
    json_object_set_new(report, "histograms", zlb_stats_histograms_json(&r->snap.total));
    json_object_set_new(report, "host", zlb_render_host());
    json_t *cfgj = json_loads(r->config_text, 0, NULL);
    json_object_set_new(report, "config", cfgj ? cfgj : json_object());

    int failed = zlb_gate_thresholds(r->cfg, report);
    failed += default_thresholds(r, report);
    bool reached_steady = r->ramp_done && r->measuring && r->t_stop_requested > r->t_measure_start;
    int code = ZLB_EXIT_OK;
    bool aborted = r->stop_reason && strcmp(r->stop_reason, "threshold_failed") == 0;
    const char *invalid_why = NULL;
    if (r->mon.saturated)
        invalid_why = "the generator saturated (see generator above): its figures describe "
                      "zlbench, not the target";
    /* A threshold that failed and stopped the run is its verdict (3), wherever it came. */
    else if (!aborted && !r->ramp_done)
        invalid_why = "the run stopped before its ramp ended: no steady state was measured";
    else if (!aborted && !reached_steady)
        invalid_why = "the run stopped before its warm-up ended: no steady state was measured";
    if (invalid_why)
        code = ZLB_EXIT_INVALID_RUN;
    else if (failed || aborted)
        code = ZLB_EXIT_THRESHOLDS;
    json_object_set_new(report, "valid", json_boolean(!invalid_why));
    if (invalid_why)
        json_object_set_new(report, "invalid_reason", json_string(invalid_why));
    json_object_set_new(report, "exit_code", json_integer(code));

    if (r->cfg->report.file) {
        char *text = json_dumps(report, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        int rc =
            text ? zlb_write_file_atomic(r->cfg->report.file, text, strlen(text), 0644) : -ENOMEM;
        free(text);
        if (rc != 0) {
            zlb_log_error("cannot write the report to %s: %s", r->cfg->report.file, strerror(-rc));
            code = ZLB_EXIT_INTERNAL;
        }
    }
    progress(r, true);
    print_summary(r, report, &steady, failed, invalid_why);
    zlb_stats_dispose(&steady);
    if (r->control)
        publish_json(r, "/stats", 200, json_incref(report));
    json_decref(report);
    publish(r); /* /health now says done */
    return code;
}

/* ---- set-up and tear-down ------------------------------------------------------------------ */

/* A TLS embedded target writes its generated CA to a file, which the engine's client context
 * then trusts like any ca_file: verification stays on. Without a ca_out_file from the user, a
 * private temporary file (0600, removed at teardown). */
static const char *embedded_ca_file(run_t *r)
{
    const zlb_embedded_target_config_t *et = &r->cfg->embedded_target;
    char tmpl[] = "/tmp/zlbench-ca.XXXXXX";
    int fd;

    if (!et->tls || et->ca_out_file || r->embedded_ca_tmp)
        return et->ca_out_file ? et->ca_out_file : r->embedded_ca_tmp;
    fd = mkstemp(tmpl);
    if (fd < 0) {
        zlb_log_error("cannot create a temporary file for the built-in target's CA: %s",
                      strerror(errno));
        return NULL;
    }
    close(fd);
    r->embedded_ca_tmp = zlb_xstrdup(tmpl);
    return r->embedded_ca_tmp;
}

static int start_embedded_target(run_t *r)
{
    const zlb_embedded_target_config_t *et = &r->cfg->embedded_target;
    const char *ca_file = embedded_ca_file(r);
    if (et->tls && !ca_file)
        return -EIO;
    zlb_serve_opts_t o = {
        .mode = et->mode,
        .listen = et->listen,
        .backlog = et->backlog,
        .threads = et->threads,
        .tls = et->tls,
        .ca_out_file = ca_file,
        .accept_delay_ns = et->accept_delay_ns,
    };
    zlb_serve_http_opts_t http = {.status = (uint16_t)et->http_status,
                                  .body_size = et->http_body_size,
                                  .chunked = et->http_chunked,
                                  .delay_ns = et->http_delay_ns,
                                  .delay_max_ns = et->http_delay_max_ns};
    if (o.mode == ZLB_SERVE_HTTP)
        o.http = &http;
    int rc = zlb_serve_start(&o, &r->target);
    if (rc != 0) {
        zlb_log_error("cannot start the built-in target on %s: %s", et->listen, strerror(-rc));
        return rc;
    }
    zlb_log_info("built-in %s target listening on %s", et->tls ? "TLS" : "TCP",
                 zlb_serve_address(r->target));
    return 0;
}

static int build_targets(run_t *r)
{
    const zlb_config_t *cfg = r->cfg;
    if (cfg->ntargets == 0) {
        r->ntargets = 1;
        r->targets = zlb_xcalloc(1, sizeof(*r->targets));
        r->target_names = zlb_xcalloc(1, sizeof(char *));
        r->target_names[0] = zlb_xstrdup(zlb_serve_address(r->target));
        /* "127.0.0.1:PORT" or "[::1]:PORT" -> host without brackets */
        char *host;
        uint16_t port;
        if (zlb_addr_host_port(r->target_names[0], &host, &port) != 0)
            return -EINVAL;
        r->targets[0].host = host; /* freed with target_names below */
        r->targets[0].port = port;
        r->targets[0].weight = 1;
        r->targets[0].name = r->target_names[0];
        if (cfg->embedded_target.tls) {
            /* Host 127.0.0.1 and no SNI: the certificate's IP SAN is what is checked. */
            r->embedded_tls = (zlb_tls_config_t){
                .enabled = true,
                .verify = true,
                .ca_file = (char *)embedded_ca_file(r),
                .handshake_timeout_ns = 5 * ZLB_NS_PER_SEC, /* the config's default */
                .resumption = cfg->embedded_target.resumption,
            };
            r->targets[0].tls = &r->embedded_tls;
        }
        return 0;
    }
    r->ntargets = cfg->ntargets;
    r->targets = zlb_xcalloc(cfg->ntargets, sizeof(*r->targets));
    r->target_names = zlb_xcalloc(cfg->ntargets, sizeof(char *));
    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        char name[320];
        snprintf(name, sizeof(name), strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host,
                 (unsigned)t->port);
        r->target_names[i] = zlb_xstrdup(name);
        r->targets[i].host = t->host;
        r->targets[i].port = t->port;
        r->targets[i].weight = t->weight ? t->weight : 1;
        r->targets[i].tls = &t->tls;
        r->targets[i].name = r->target_names[i];
    }
    return 0;
}

static int start_control(run_t *r)
{
    const zlb_control_config_t *cc = &r->cfg->control;
    if (!cc->enabled)
        return 0;
    char err[256] = "";
    if (cc->token_file) {
        int rc = zlb_control_read_token(cc->token_file, &r->token, err, sizeof(err));
        if (rc != 0) {
            zlb_log_error("%s", err);
            return rc;
        }
    }
    zlb_control_opts_t o = {
        .listen = cc->listen,
        .token = r->token,
        .address_file = NULL, /* written once /stats has something to serve: see zlb_run */
        .on_stop = on_control_stop,
        .arg = r,
    };
    int rc = zlb_control_start(&o, &r->control, err, sizeof(err));
    if (rc != 0) {
        zlb_log_error("%s", err);
        return rc;
    }
    zlb_control_publish(r->control, "/config", 200, "application/json", r->config_text,
                        strlen(r->config_text));
    return 0;
}

static int make_pool(run_t *r)
{
    const zlb_pollers_config_t *pc = &r->cfg->pollers;
    zlb_pool_opts_t o;
    zlb_pool_opts_default(&o);
    o.count = pc->count;
    o.cpu_affinity = pc->cpu_affinity;
    o.cpus = pc->cpus;
    o.ncpus = (int)pc->ncpus;
    o.priority = pc->priority == ZLB_CFG_PRIO_HIGH       ? ZLB_PRIO_HIGH
                 : pc->priority == ZLB_CFG_PRIO_REALTIME ? ZLB_PRIO_REALTIME
                                                         : ZLB_PRIO_NORMAL;
    o.nice = pc->nice;
    o.rt_policy = pc->rt_policy;
    o.rt_priority = pc->rt_priority;
    o.select = pc->round_robin ? ZLB_SELECT_ROUND_ROBIN : ZLB_SELECT_LEAST_LOADED;
    o.prefer_current = pc->prefer_current;
    o.load_window_ns = pc->load_window_ns;
    int rc = zlb_pool_create(&o, &r->pool);
    if (rc != 0)
        zlb_log_error("cannot start the pollers: %s", strerror(-rc));
    return rc;
}

static int open_signal_fds(run_t *r)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    r->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->sigfd < 0 || r->stopfd < 0)
        return -errno;
    return 0;
}

static void teardown(run_t *r)
{
    zlb_control_destroy(r->control);
    zlb_pool_stop(r->pool);
    zlb_work_snapshot_dispose(&r->snap);
    zlb_work_snapshot_dispose(&r->base);
    zlb_stats_dispose(&r->at_stop);
    zlb_work_destroy(r->engine);
    zlb_pool_destroy(r->pool);
    zlb_serve_destroy(r->target);
    if (r->embedded_ca_tmp) {
        unlink(r->embedded_ca_tmp);
        free(r->embedded_ca_tmp);
    }
    if (r->pin)
        zlb_monitor_dispose(&r->mon);
    free(r->pin);
    if (r->target_names) {
        if (r->cfg->ntargets == 0 && r->targets)
            free((char *)r->targets[0].host);
        for (size_t i = 0; i < r->ntargets; i++)
            free(r->target_names[i]);
    }
    free(r->target_names);
    free(r->targets);
    free(r->token);
    free(r->config_text);
    if (r->sigfd >= 0)
        close(r->sigfd);
    if (r->stopfd >= 0)
        close(r->stopfd);
}

/* Says so at start when the run cannot hold its connections within the open-files limit: the
 * built-in target's accepted sockets live in this process too. */
static void warn_fd_limit(const zlb_config_t *cfg, uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
        return;
    if (cfg->embedded_target.enabled)
        zlb_log_warn("%llu connections need about %llu open files (%llu client sockets, %llu for "
                     "the built-in target in this process, 256 more), but the limit is %llu: "
                     "expect fd_limit failures (raise ulimit -n, or run `zlbench serve` apart)",
                     (unsigned long long)cfg->connections, (unsigned long long)need,
                     (unsigned long long)cfg->connections, (unsigned long long)cfg->connections,
                     (unsigned long long)rl.rlim_cur);
    else
        zlb_log_warn("%llu connections need about %llu open files, but the limit is %llu: expect "
                     "fd_limit failures (raise ulimit -n)",
                     (unsigned long long)cfg->connections, (unsigned long long)need,
                     (unsigned long long)rl.rlim_cur);
}

static void log_removed_temp(const char *name, void *arg)
{
    (void)arg;
    zlb_log_info("removed %s, a report temporary left by an earlier run that was killed", name);
}

int zlb_run(const zlb_config_t *cfg, const zlb_run_opts_t *opts)
{
    run_t *r = zlb_xcalloc(1, sizeof(*r));
    r->cfg = cfg;
    r->opts = *opts;
    r->sigfd = r->stopfd = -1;
    r->state = ZLB_STATE_STARTING;
    r->tty = isatty(STDERR_FILENO);
    /* The config checked the range. */
    if (zlb_prom_buckets_init(&r->buckets, cfg->control.metrics_bucket_min_ns,
                              cfg->control.metrics_bucket_max_ns) != 0)
        zlb_fatal("bad /metrics bucket range");
    if (cfg->report.file) {
        /* A run killed while writing its report leaves the temporary behind; ours only, and
         * only those older than this run (another writer's is newer). */
        int n = zlb_remove_stale_temps(cfg->report.file, (double)zlb_wall_ns() / 1e9,
                                       log_removed_temp, NULL);
        if (n < 0 && n != -ENOENT)
            zlb_log_warn("cannot look for stale report temporaries beside %s: %s", cfg->report.file,
                         strerror(-n));
    }
    /* Client sockets, the embedded target's sockets, and room for the rest. */
    uint64_t fds = cfg->connections * (cfg->embedded_target.enabled ? 2 : 1) + 256;
    int rc = zlb_fd_table_reserve((unsigned)ZLB_MIN(fds, (uint64_t)UINT32_MAX));
    if (rc != 0)
        zlb_log_warn("cannot reserve %llu file descriptors: %s", (unsigned long long)fds,
                     strerror(-rc));
    warn_fd_limit(cfg, fds);
    zlb_config_hash(cfg, r->config_hash);
    json_t *cj = zlb_config_to_json(cfg);
    r->config_text = json_dumps(cj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(cj);
    int code = ZLB_EXIT_INTERNAL;

    if (open_signal_fds(r) != 0)
        goto out;
    /* An address that is taken or not ours to bind is the configuration's problem (exit 2), as
     * is any setting the libraries refuse; anything else is ours (exit 1). */
    rc = start_control(r);
    if (rc == 0 && cfg->embedded_target.enabled)
        rc = start_embedded_target(r);
    if (rc != 0) {
        if (rc == -EADDRINUSE || rc == -EADDRNOTAVAIL || rc == -EACCES)
            code = ZLB_EXIT_USAGE;
        goto out;
    }
    if (build_targets(r) != 0 || make_pool(r) != 0)
        goto out;
    rc = zlb_work_create(cfg, r->targets, r->ntargets, r->pool, &r->engine);
    if (rc != 0) {
        zlb_log_error("cannot create the connection engine: %s", strerror(-rc));
        if (rc == -EINVAL)
            code = ZLB_EXIT_USAGE; /* a target or TLS setting the libraries refused */
        goto out;
    }
    zlb_work_snapshot_init(r->engine, &r->snap);
    zlb_work_snapshot_init(r->engine, &r->base);
    zlb_monitor_init(&r->mon, r->snap.npollers, cfg->stats_interval_ns, NULL);
    r->pin = zlb_xcalloc(r->snap.npollers ? r->snap.npollers : 1, sizeof(*r->pin));
    take_snapshot(r);
    publish(r);
    /* Whoever polls for the address file finds /stats answering once it exists. */
    if (r->control && cfg->control.address_file) {
        char line[128];
        int n = snprintf(line, sizeof(line), "%s\n", zlb_control_address(r->control));
        rc = zlb_write_file_atomic(cfg->control.address_file, line, (size_t)n, 0644);
        if (rc != 0) {
            zlb_log_error("cannot write the control address file %s: %s", cfg->control.address_file,
                          strerror(-rc));
            goto out;
        }
    }

    r->t_start = zlb_now_ns();
    r->t_start_wall_ns = zlb_wall_ns();
    if (cfg->warmup_ns == 0)
        begin_measuring(r); /* the all-zero snapshot above is the base: measure from the start */
    rc = zlb_work_start(r->engine);
    if (rc != 0) {
        zlb_log_error("cannot start the scheduler: %s", strerror(-rc));
        goto out;
    }
    r->state = ZLB_STATE_RAMPING;
    zlb_log_info("run started: %llu connections at %.0f/s over %zu poller(s), %s",
                 (unsigned long long)cfg->connections, cfg->connect_rate, r->snap.npollers,
                 cfg->duration_ns ? "until the duration ends" : "until stopped");

    uint64_t next_tick = r->t_start + TICK_NS;
    /* The duration ends on its own deadline, not on the next tick: a 1 ms run is 1 ms long. */
    uint64_t t_duration_end = cfg->duration_ns ? r->t_start + cfg->duration_ns : UINT64_MAX;
    for (;;) {
        uint64_t now = zlb_now_ns();
        /* Draining: a cheap look each millisecond, so a drain that is done ends the run now. */
        uint64_t wake = r->state == ZLB_STATE_DRAINING ? ZLB_MIN(next_tick, now + ZLB_NS_PER_MS)
                                                       : ZLB_MIN(next_tick, t_duration_end);
        uint64_t wait_ns = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait_ns / ZLB_NS_PER_SEC),
                              .tv_nsec = (long)(wait_ns % ZLB_NS_PER_SEC)};
        struct pollfd pfd[2] = {{.fd = r->sigfd, .events = POLLIN},
                                {.fd = r->stopfd, .events = POLLIN}};
        if (ppoll(pfd, 2, &ts, NULL) < 0 && errno != EINTR)
            zlb_fatal("ppoll: %s", strerror(errno));
        handle_signals(r);
        now = zlb_now_ns();
        bool duration_over = r->state != ZLB_STATE_DRAINING && now >= t_duration_end;
        if (duration_over)
            zlb_work_stop_opening(r->engine); /* first: the snapshot below takes a while */
        bool drained = r->state == ZLB_STATE_DRAINING && zlb_work_idle(r->engine);
        if (now < next_tick && !r->immediate && !duration_over && !drained)
            continue;
        next_tick += TICK_NS;
        if (next_tick < zlb_now_ns())
            next_tick = zlb_now_ns() + TICK_NS; /* we were stalled: don't burst to catch up */
        if (take_snapshot(r) != 0)
            zlb_fatal("snapshot failed");
        update_phase(r);
        check_saturation(r);
        check_abort(r);
        publish(r);
        progress(r, false);
        if (r->state == ZLB_STATE_DRAINING) {
            bool idle = r->snap.total.c.open == 0 && r->snap.total.c.in_flight == 0;
            bool late = zlb_now_ns() - r->t_stop_requested >= r->cfg->drain_timeout_ns;
            if (idle || late || r->immediate) {
                if (!idle)
                    zlb_log_warn("drain ended with %llu open and %llu in flight",
                                 (unsigned long long)r->snap.total.c.open,
                                 (unsigned long long)r->snap.total.c.in_flight);
                break;
            }
        }
    }
    /* Every poller has answered its last task: a final snapshot after the pool stops sees
     * exactly what each poller recorded. */
    zlb_pool_stop(r->pool);

    take_snapshot(r);
    code = finish(r);
    if (opts->interrupted && r->stop_reason && strcmp(r->stop_reason, "duration") != 0 &&
        strcmp(r->stop_reason, "threshold_failed") != 0)
        *opts->interrupted = true; /* a signal or POST /stop: a person wants it to end */
out:
    teardown(r);
    free(r);
    return code;
}
