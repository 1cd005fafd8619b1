/* run.c -- the run controller: wires target, pollers, engine and control port; phases and stop. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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
#define RATE_RING 128
#define HOT_LOAD_PCT 95.0
#define HOT_TICKS_SATURATED 30 /* 3 s in a row */
/* A generator that keeps its schedule starts nearly every attempt on time; a few starts delayed
 * by the OS scheduler on a busy machine are noise, but when a tenth of them are this late the
 * generator is behind its own schedule. */
#define SATURATED_LAG_P90_NS (20 * ZLB_NS_PER_MS)
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
    zlb_rate_sample_t ring[RATE_RING];
    size_t ring_next, ring_count;
    zlb_rates_t rates;
    double *poller_cps;
    zlb_saturation_t sat;
    uint64_t last_progress_ns;
    uint64_t last_abort_check_ns;
    bool tty;
    bool progress_open; /* a live line is on the terminal without its newline */
} run_t;

/* ---- rates -------------------------------------------------------------------------------- */

static void ring_push(run_t *r)
{
    zlb_rate_sample_t *s = &r->ring[r->ring_next];
    s->t_ns = r->snap.taken_ns;
    s->total = r->snap.total.c;
    for (size_t i = 0; i < r->snap.npollers; i++)
        s->poller_established[i] = r->snap.poller[i].c.established;
    r->ring_next = (r->ring_next + 1) % RATE_RING;
    if (r->ring_count < RATE_RING)
        r->ring_count++;
}

/* Rates over the trailing stats interval: the newest sample against the oldest one that is at
 * least that old (or the oldest there is, early in the run). */
static void compute_rates(run_t *r)
{
    memset(&r->rates, 0, sizeof(r->rates));
    r->rates.poller_connects_per_s = r->poller_cps;
    for (size_t i = 0; i < r->snap.npollers; i++)
        r->poller_cps[i] = 0;
    if (r->ring_count < 2)
        return;
    const zlb_rate_sample_t *now = &r->ring[(r->ring_next + RATE_RING - 1) % RATE_RING];
    const zlb_rate_sample_t *then = NULL;
    for (size_t k = 1; k < r->ring_count; k++) {
        const zlb_rate_sample_t *s = &r->ring[(r->ring_next + RATE_RING - 1 - k) % RATE_RING];
        then = s;
        if (now->t_ns - s->t_ns >= r->cfg->stats_interval_ns)
            break;
    }
    double dt = (double)(now->t_ns - then->t_ns) / 1e9;
    if (dt <= 0)
        return;
    zlb_rates_over(&r->rates, &then->total, &now->total, dt);
    for (size_t i = 0; i < r->snap.npollers; i++)
        r->poller_cps[i] = (double)(now->poller_established[i] - then->poller_established[i]) / dt;
}

/* ---- saturation ----------------------------------------------------------------------------- */

static void add_reason(zlb_saturation_t *s, const char *fmt, ...) ZLB_PRINTF(2, 3);
static void add_reason(zlb_saturation_t *s, const char *fmt, ...)
{
    if (s->nreasons >= (int)ZLB_ARRAY_LEN(s->reasons))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->reasons[s->nreasons++], sizeof(s->reasons[0]), fmt, ap);
    va_end(ap);
}

/* The generator watches itself: a poller pegged for seconds, attempts it could not hand out
 * in time, or a schedule it fell behind mean its figures describe zlbench, not the target. */
static void check_saturation(run_t *r)
{
    zlb_saturation_t *s = &r->sat;
    if (!r->measuring || r->state == ZLB_STATE_DRAINING)
        return;
    for (size_t i = 0; i < r->snap.npollers && i < ZLB_ARRAY_LEN(s->hot_ticks); i++) {
        if (r->snap.info[i].stats.load_pct >= HOT_LOAD_PCT)
            s->hot_ticks[i]++;
        else
            s->hot_ticks[i] = 0;
        if (s->hot_ticks[i] == HOT_TICKS_SATURATED) {
            s->saturated = true;
            add_reason(s, "poller %zu busy >= %.0f%% for %d s", i, HOT_LOAD_PCT,
                       HOT_TICKS_SATURATED / 10);
        }
    }
    if (r->snap.scheduler_backlog > 0 && r->cfg->connect_rate > 0) {
        if (++s->backlog_ticks == HOT_TICKS_SATURATED) {
            s->saturated = true;
            add_reason(s, "scheduler could not hand out due attempts for %d s",
                       HOT_TICKS_SATURATED / 10);
        }
    } else {
        s->backlog_ticks = 0;
    }
}

/* Called once at the end with the steady-state schedule lag. */
static void check_final_saturation(run_t *r, const zlb_stats_t *steady)
{
    if (r->cfg->connect_rate <= 0)
        return; /* as fast as possible: there is no schedule to lag behind */
    uint64_t p90 = zlb_hist_percentile(steady->lat[ZLB_LAT_SCHEDULE_LAG], 90);
    if (p90 > SATURATED_LAG_P90_NS) {
        r->sat.saturated = true;
        add_reason(&r->sat, "schedule lag p90 %.1f ms > %.0f ms", (double)p90 / 1e6,
                   (double)SATURATED_LAG_P90_NS / 1e6);
    }
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
        .saturation = &r->sat,
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
    char loads[128] = "";
    size_t off = 0;
    for (size_t i = 0; i < r->snap.npollers && off < sizeof(loads) - 8; i++)
        off += (size_t)snprintf(loads + off, sizeof(loads) - off, "%s%.0f%%", i ? " " : "",
                                r->snap.info[i].stats.load_pct);
    double p99 = (double)zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_CONNECT], 99) / 1e3;
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "[%6.1fs] %-8s open %llu/%llu  conn/s %.0f  errors %llu  p99 connect "
                     "%.0fus  load %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)r->cfg->connections,
                     r->rates.connects_per_s, (unsigned long long)zlb_counters_failed_total(c), p99,
                     loads);
    if (n < 0)
        return;
    if (r->tty) {
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
        r->progress_open = !final;
    } else
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
    ring_push(r);
    compute_rates(r);
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

/* Ends the live line so that a log line does not land in the middle of it. */
static void progress_break(run_t *r)
{
    if (r->progress_open) {
        fputc('\n', stderr);
        r->progress_open = false;
    }
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
    progress_break(r);
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
        progress_break(r);
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
        progress_break(r);
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

static void print_summary(run_t *r, json_t *report, int failed_thresholds)
{
    if (r->opts.quiet)
        return;
    const zlb_counters_t *c = &r->snap.total.c;
    double v;
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
    if (zlb_report_lookup(report, "ramp.seconds", &v) == 0 && r->snap.target_reached_ns)
        printf("  ramp         %llu open after %.3f s\n", (unsigned long long)r->cfg->connections,
               v);
    else
        printf("  ramp         target of %llu open connections not reached\n",
               (unsigned long long)r->cfg->connections);
    if (zlb_report_lookup(report, "steady.rates.connects_per_s", &v) == 0)
        printf("  steady       %.0f connects/s", v);
    if (zlb_report_lookup(report, "steady.seconds", &v) == 0)
        printf(" over %.1f s\n", v);
    printf(
        "  latency (us)          count        p50        p90        p99      p99.9        max\n");
    static const zlb_lat_t shown[] = {
        ZLB_LAT_CONNECT,       ZLB_LAT_CONNECT_SERVICE, ZLB_LAT_DNS,
        ZLB_LAT_TLS_FULL,      ZLB_LAT_TLS_RESUMED,     ZLB_LAT_FIRST_BYTE,
        ZLB_LAT_MESSAGE_RT,    ZLB_LAT_MESSAGE_SERVICE, ZLB_LAT_HTTP_FIRST_BYTE,
        ZLB_LAT_HTTP_RESPONSE, ZLB_LAT_HTTP_SERVICE,    ZLB_LAT_SCHEDULE_LAG,
        ZLB_LAT_SEND_LAG};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(shown); i++) {
        const zlb_hist_t *h = r->snap.total.lat[shown[i]];
        if (!zlb_hist_count(h))
            continue;
        printf("    %-16s %10llu %10.1f %10.1f %10.1f %10.1f %10.1f\n", zlb_lat_name(shown[i]),
               (unsigned long long)zlb_hist_count(h), zlb_hist_percentile(h, 50) / 1e3,
               zlb_hist_percentile(h, 90) / 1e3, zlb_hist_percentile(h, 99) / 1e3,
               zlb_hist_percentile(h, 99.9) / 1e3, zlb_hist_max(h) / 1e3);
    }
    for (size_t i = 0; i < r->snap.npollers; i++) {
        const zlb_poller_info_t *in = &r->snap.info[i];
        printf(
            "  poller %-3d   cpu %-3d %s/%d  load %5.1f%%  cpu time %.2f s  lag max %.0f us%s%s\n",
            in->id, in->cpu, in->policy, in->priority, in->stats.load_pct,
            (double)in->stats.cpu_time_ns / 1e9, (double)in->stats.lag_max_ns / 1e3,
            in->warning[0] ? "  warning: " : "", in->warning);
    }
    printf("  generator    %s\n",
           r->sat.saturated ? "SATURATED (figures describe zlbench)" : "not saturated");
    for (int i = 0; i < r->sat.nreasons; i++)
        printf("    %s\n", r->sat.reasons[i]);
    json_t *th = json_object_get(report, "thresholds");
    size_t idx;
    json_t *row;
    json_array_foreach(th, idx, row)
    {
        printf("  threshold    %-32s %-10s observed %-12g %s\n",
               json_string_value(json_object_get(row, "path")),
               json_string_value(json_object_get(row, "expr")),
               json_number_value(json_object_get(row, "observed")),
               json_is_true(json_object_get(row, "passed")) ? "pass" : "FAIL");
    }
    if (failed_thresholds)
        printf("  %d threshold(s) failed\n", failed_thresholds);
    if (r->cfg->report.file)
        printf("  report       %s\n", r->cfg->report.file);
    fflush(stdout);
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
    check_final_saturation(r, &steady);

    zlb_view_t v = make_view(r);
    v.elapsed_s = (double)(r->t_end - r->t_start) / 1e9;
    json_t *report = zlb_render_stats(&v);
    json_object_set_new(report, "stop_reason", json_string(r->stop_reason));
    json_object_set_new(report, "finished_at_unix_s", zlb_json_real((double)zlb_wall_ns() / 1e9));
    json_object_set_new(report, "steady", steady_json(r, &steady));
    json_object_set_new(report, "histograms", zlb_stats_histograms_json(&r->snap.total));
    json_object_set_new(report, "host", zlb_render_host());
    json_t *cfgj = json_loads(r->config_text, 0, NULL);
    json_object_set_new(report, "config", cfgj ? cfgj : json_object());
    zlb_stats_dispose(&steady);

    int failed = zlb_gate_thresholds(r->cfg, report);
    bool reached_steady = r->ramp_done && r->measuring && r->t_stop_requested > r->t_measure_start;
    int code = ZLB_EXIT_OK;
    bool aborted = r->stop_reason && strcmp(r->stop_reason, "threshold_failed") == 0;
    if (r->sat.saturated || !reached_steady)
        code = ZLB_EXIT_INVALID_RUN;
    else if (failed || aborted)
        code = ZLB_EXIT_THRESHOLDS;
    json_object_set_new(report, "valid", json_boolean(!r->sat.saturated && reached_steady));
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
    print_summary(r, report, failed);
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
    for (size_t i = 0; i < RATE_RING; i++)
        free(r->ring[i].poller_established);
    free(r->poller_cps);
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
    zlb_config_hash(cfg, r->config_hash);
    json_t *cj = zlb_config_to_json(cfg);
    r->config_text = json_dumps(cj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(cj);
    int code = ZLB_EXIT_INTERNAL;

    if (open_signal_fds(r) != 0 || start_control(r) != 0)
        goto out;
    if (cfg->embedded_target.enabled && start_embedded_target(r) != 0)
        goto out;
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
    r->poller_cps = zlb_xcalloc(r->snap.npollers, sizeof(double));
    for (size_t i = 0; i < RATE_RING; i++)
        r->ring[i].poller_established = zlb_xcalloc(r->snap.npollers, sizeof(uint64_t));
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
