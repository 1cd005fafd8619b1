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
#include "dash/dash.h"
#include "run/run_internal.h"
#include "serve/serve.h"

/* The controller ticks at this period: snapshot, publish, phase checks. Fast enough that a
 * poller of /stats sees fresh numbers, slow enough that copying the histograms costs the
 * pollers well under 1 % of their time. */
#define TICK_NS (100 * ZLB_NS_PER_MS)

/* ---- rates and the generator's self-watch ------------------------------------------------- */

/* Each tick: the whole-run averages (counters over the time since the start) and the monitor's
 * sample (last_interval rates, per-poller busy/CPU/run-queue shares). */
static void monitor_sample(zlb_runner_t *r)
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
static void check_saturation(zlb_runner_t *r)
{
    /* The rate in force: a PATCH or a stage may have made it 0 ("as fast as possible"). */
    zlb_work_live_t v;
    zlb_runner_get_live(r, &v);
    double rate = v.connect_rate;
    r->connects_unlimited |= rate <= 0;
    if (!r->measuring || r->state == ZLB_STATE_DRAINING)
        return;
    zlb_monitor_check_sustained(&r->mon, r->snap.taken_ns, r->snap.scheduler_backlog, rate > 0);
}

/* Lateness phases not judged in this run: a connect schedule with no rate ("as fast as
 * possible", from the config or, for a while, live) has its attempts due at once, so their
 * schedule lag is no lateness. */
static uint32_t lateness_ignored(const zlb_runner_t *r)
{
    return r->cfg->connect_rate > 0 && !r->connects_unlimited ? 0 : 1u << ZLB_LAT_SCHEDULE_LAG;
}

/* ---- the engine, or the processes that stand in for it ---------------------------------- */

/* fresh: a stage boundary, whose figures a source takes of this moment too. */
static int engine_snapshot(zlb_runner_t *r, bool fresh)
{
    if (r->src && fresh && r->src->snapshot_fresh)
        return r->src->snapshot_fresh(r->src->ctx, &r->snap);
    return r->src ? r->src->snapshot(r->src->ctx, &r->snap)
                  : zlb_work_snapshot(r->engine, &r->snap);
}

static void engine_stop_opening(zlb_runner_t *r)
{
    if (r->src)
        r->src->stop_opening(r->src->ctx);
    else
        zlb_work_stop_opening(r->engine);
}

static void engine_close_all(zlb_runner_t *r)
{
    if (r->src)
        r->src->close_all(r->src->ctx);
    else
        zlb_work_close_all(r->engine);
}

static bool engine_idle(zlb_runner_t *r)
{
    return r->src ? r->src->idle(r->src->ctx) : zlb_work_idle(r->engine);
}

/* ---- views and publishing ------------------------------------------------------------------ */

static zlb_view_t make_view(zlb_runner_t *r)
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
        .targets = r->src ? r->src->targets : r->targets,
        .ntargets = r->src ? r->src->ntargets : r->ntargets,
        .started_unix_s = (double)(r->t_start_wall_ns / ZLB_NS_PER_MS) / 1e3,
        .buckets = &r->buckets,
        .poller_process = r->poller_process,
        .target = zlb_runner_stages_target(r),
        .embedded = r->src ? NULL : r->target,
    };
    return v;
}

static void publish_json(zlb_runner_t *r, const char *path, unsigned status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    if (!text)
        zlb_fatal("json_dumps failed for %s", path);
    zlb_control_publish(r->control, path, status, "application/json", text, strlen(text));
    free(text);
}

static void publish(zlb_runner_t *r)
{
    if (!r->control)
        return;
    zlb_view_t v = make_view(r);
    json_t *stats = zlb_render_stats(&v);
    json_object_set_new(stats, "events", zlb_events_json(&r->events, ZLB_EVENTS_LIVE));
    /* Which processes run and how each stands: what a person watching --processes asks first. */
    if (r->src)
        r->src->report(r->src->ctx, stats);
    publish_json(r, "/stats", 200, stats);
    publish_json(r, "/stats/pollers", 200, zlb_render_pollers(&v));
    if (zlb_runner_steerable(r))
        publish_json(r, "/run", 200, zlb_runner_live_json(r));
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

/* ---- the timeline -------------------------------------------------------------------------- */

/* Every tick feeds the series the pollers' readings; once a row is due (on the grid of stats
 * intervals from the start, at the first tick at or after it), the row is the snapshot minus
 * the previous row's, published for GET /stats/series. `final`: the last, partial row after
 * the pool stopped, so the rows add up to the report's totals exactly. */
static void series_tick(zlb_runner_t *r, bool final)
{
    const zlb_work_snapshot_t *s = &r->snap;
    if (!r->t_start || s->taken_ns <= r->t_start)
        return;
    for (size_t i = 0; i < s->npollers; i++)
        r->sin[i] = (zlb_series_poller_in_t){.load_pct = s->info[i].stats.load_pct,
                                             .lag_ns = s->info[i].stats.lag_last_ns};
    uint64_t t = s->taken_ns - r->t_start;
    if (!zlb_series_tick(&r->series, t, &s->total, zlb_state_name(r->state),
                         zlb_runner_stages_target(r), r->sin, final) ||
        !r->control)
        return;
    json_t *row = zlb_series_row_json(&r->series.fresh, r->series.fresh_pollers, s->npollers);
    /* The key is the t_s a reader sees (rounded), so since=<a row's t_s> excludes that row. */
    double key = json_number_value(json_object_get(row, "t_s"));
    char *text = json_dumps(row, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(row);
    if (!text)
        zlb_fatal("json_dumps failed for a timeline row");
    zlb_control_series_append(r->control, key, text, strlen(text));
    free(text);
}

/* ---- phases -------------------------------------------------------------------------------- */

static int take_snapshot(zlb_runner_t *r, bool fresh)
{
    int rc = engine_snapshot(r, fresh);
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

static void begin_measuring(zlb_runner_t *r)
{
    zlb_stats_copy(&r->base.total, &r->snap.total);
    r->base.taken_ns = r->snap.taken_ns;
    r->t_measure_start = r->snap.taken_ns;
    r->measuring = true;
    if (r->src)
        r->src->reset_lag_max(r->src->ctx);
    for (size_t i = 0; !r->src && i < r->snap.npollers; i++)
        zlb_loop_reset_lag_max(zlb_pool_loop(r->pool, (int)i));
}

static void request_stop(zlb_runner_t *r, const char *reason, bool immediate)
{
    if (!r->stop_reason)
        r->stop_reason = reason;
    if (immediate)
        r->immediate = true;
    if (r->state == ZLB_STATE_DRAINING || r->state == ZLB_STATE_DONE)
        return;
    /* The measured window ends here: what the drain closes or cancels is not steady state,
     * nor the stage in force's. */
    if ((r->measuring || r->stager.on) && take_snapshot(r, true) == 0) {
        if (r->measuring) {
            zlb_stats_copy(&r->at_stop, &r->snap.total);
            r->have_at_stop = true;
        }
        zlb_runner_stages_stop(r);
    }
    zlb_runner_event(r, "drain", json_pack("{s:s}", "state", zlb_state_name(r->state)),
                     json_pack("{s:s, s:s}", "state", "draining", "reason", reason), NULL);
    r->state = ZLB_STATE_DRAINING;
    r->t_stop_requested = zlb_now_ns();
    engine_close_all(r);
    zlb_log_info("stopping (%s): draining for at most %.1f s", reason,
                 (double)r->cfg->drain_timeout_ns / 1e9);
}

static void update_phase(zlb_runner_t *r)
{
    uint64_t now = zlb_now_ns();
    const zlb_counters_t *c = &r->snap.total.c;
    if (r->state == ZLB_STATE_RAMPING && r->cfg->nstages) {
        /* A profile has no ramp to wait for: its stages (each measured on its own) are the
         * shape of the run, so it is steady from the start. */
        r->state = ZLB_STATE_STEADY;
        r->ramp_done = true;
        r->ramp_end_ns = r->snap.taken_ns;
        r->ramp_established = c->established;
    }
    if (r->state == ZLB_STATE_RAMPING) {
        /* The ramp is over once the target count was open at once, or every initial attempt has
         * had its answer (a target that refuses some never reaches the count). */
        bool all_answered = c->attempted >= r->cfg->connections && c->in_flight == 0 &&
                            r->snap.scheduler_backlog == 0;
        if (r->snap.target_reached_ns || all_answered) {
            zlb_runner_event(r, "state", json_pack("{s:s}", "state", "ramping"),
                             json_pack("{s:s}", "state", "steady"), NULL);
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
    /* With stages the profile says when the run ends (its clock stops in a pause). */
    if (!r->cfg->nstages && r->cfg->duration_ns && now - r->t_start >= r->cfg->duration_ns)
        request_stop(r, "duration", false);
}

static json_t *steady_json(zlb_runner_t *r, zlb_stats_t *steady);

/* The measured window's figures: from the end of warm-up to the stop request (or to now). */
static void steady_stats(zlb_runner_t *r, zlb_stats_t *out)
{
    zlb_stats_copy(out, r->have_at_stop ? &r->at_stop : &r->snap.total);
    zlb_stats_sub(out, &r->base.total);
}

/* abort_on_fail: once a second after the grace period, the thresholds are checked against the
 * same steady figures the final report uses, so a run is never aborted for a threshold that its
 * report then says held. */
static void check_abort(zlb_runner_t *r)
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
    if (r->stager.on)
        json_object_set_new(live, "stages", zlb_runner_stages_json(r));
    int failed = zlb_gate_thresholds(cfg, live);
    size_t i;
    json_t *row;
    /* A stage that has not ended has no figures yet: its thresholds are judged at its end (or
     * in the report), never read as failed before. */
    json_array_foreach(json_object_get(live, "thresholds"), i, row)
    {
        if (!json_is_true(json_object_get(row, "passed")) &&
            json_is_null(json_object_get(row, "observed")) &&
            strncmp(json_string_value(json_object_get(row, "path")), "stages.", 7) == 0) {
            json_object_set_new(row, "passed", json_true());
            failed--;
        }
    }
    if (failed) {
        json_t *which = json_array();
        json_array_foreach(json_object_get(live, "thresholds"), i, row)
        {
            if (json_is_true(json_object_get(row, "passed")))
                continue;
            zlb_log_warn("threshold failed: %s %s (observed %g): aborting the run",
                         json_string_value(json_object_get(row, "path")),
                         json_string_value(json_object_get(row, "expr")),
                         json_number_value(json_object_get(row, "observed")));
            /* "O?": a row's observed may be absent (a metric the run never had). */
            json_array_append_new(which, json_pack("{s:O?, s:O?, s:O?}", "path",
                                                   json_object_get(row, "path"), "expr",
                                                   json_object_get(row, "expr"), "observed",
                                                   json_object_get(row, "observed")));
        }
        zlb_runner_event(r, "threshold_abort", NULL, json_pack("{s:o}", "failed", which), NULL);
        request_stop(r, "threshold_failed", false);
    }
    json_decref(live);
}

static void handle_signals(zlb_runner_t *r)
{
    struct signalfd_siginfo si;
    while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        r->signals_seen++;
        const char *name = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
        zlb_runner_event(r, "signal", NULL,
                         json_pack("{s:s, s:s}", "signal", name, "stop",
                                   r->signals_seen == 1 ? "graceful" : "immediate"),
                         NULL);
        if (r->signals_seen == 1) {
            request_stop(r, si.ssi_signo == SIGINT ? "signal_sigint" : "signal_sigterm", false);
            zlb_log_warn("%s: graceful stop; send it again to stop at once", name);
        } else {
            request_stop(r, r->stop_reason, true);
            zlb_log_warn("%s again: stopping now", name);
        }
    }
    uint64_t v;
    if (read(r->stopfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
        if (r->state != ZLB_STATE_DRAINING)
            zlb_runner_take_pause(r);
        zlb_runner_take_patch(r); /* answered 409 while draining */
        if (atomic_exchange(&r->stop_req, false)) {
            char client[ZLB_EVENT_CLIENT_MAX];
            pthread_mutex_lock(&r->mail_lock);
            memcpy(client, r->stop_client, sizeof(client));
            pthread_mutex_unlock(&r->mail_lock);
            zlb_runner_event(r, "stop", json_pack("{s:s}", "state", zlb_state_name(r->state)),
                             json_pack("{s:s}", "state", "draining"), client[0] ? client : NULL);
            request_stop(r, "control_stop", false);
        }
    }
}

/* ---- the final report ---------------------------------------------------------------------- */

static json_t *steady_json(zlb_runner_t *r, zlb_stats_t *steady)
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
static int default_thresholds(zlb_runner_t *r, json_t *report)
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

static int finish(zlb_runner_t *r)
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
    json_object_set_new(report, "timeline", zlb_series_json(&r->series));
    if (r->stager.on)
        json_object_set_new(report, "stages", zlb_runner_stages_json(r));
    json_object_set_new(report, "events", zlb_events_json(&r->events, 0));
    json_object_set_new(report, "events_dropped", json_integer((json_int_t)r->events.dropped));
    json_object_set_new(report, "host", zlb_render_host());
    json_t *cfgj = json_loads(r->config_text, 0, NULL);
    json_object_set_new(report, "config", cfgj ? cfgj : json_object());

    int failed = zlb_gate_thresholds(r->cfg, report);
    failed += default_thresholds(r, report);
    bool reached_steady = r->ramp_done && r->measuring && r->t_stop_requested > r->t_measure_start;
    int code = ZLB_EXIT_OK;
    bool aborted = r->stop_reason && strcmp(r->stop_reason, "threshold_failed") == 0;
    const char *invalid_why = r->src ? r->src->failed(r->src->ctx) : NULL;
    if (r->src)
        r->src->report(r->src->ctx, report);
    if (invalid_why)
        ; /* a process that crashed: its share of the run is missing, whatever else held */
    else if (r->mon.saturated)
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
    /* Beside the report, from the same document: what CI shows without opening the JSON. */
    zlb_gate_ci_opts_t ci = {r->opts.junit_file, r->opts.summary_md_file};
    if (zlb_gate_ci_write(&ci, report, NULL) != 0)
        code = ZLB_EXIT_INTERNAL;
    char html[4096];
    if (zlb_run_html_path(r->cfg, html, sizeof(html))) {
        const char *base = r->cfg->report.file ? strrchr(r->cfg->report.file, '/') : NULL;
        char err[512];
        if (zlb_dash_write_report(report,
                                  base                  ? base + 1
                                  : r->cfg->report.file ? r->cfg->report.file
                                                        : "zlbench run",
                                  NULL, NULL, 0, html, err, sizeof(err)) != 0) {
            zlb_log_error("cannot write the HTML report: %s", err);
            code = ZLB_EXIT_INTERNAL;
        }
    }
    zlb_runner_progress(r, true);
    zlb_runner_print_summary(r, report, &steady, failed, invalid_why);
    zlb_stats_dispose(&steady);
    if (r->control)
        publish_json(r, "/stats", 200, json_incref(report));
    json_decref(report);
    publish(r); /* /health now says done */
    return code;
}

bool zlb_run_html_path(const zlb_config_t *cfg, char *out, size_t len)
{
    const char *file = cfg->report.file;
    if (cfg->report.html) {
        snprintf(out, len, "%s", cfg->report.html);
        return true;
    }
    if (!cfg->report.html_beside || !file)
        return false;
    size_t stem = strlen(file);
    if (stem > 5 && strcmp(file + stem - 5, ".json") == 0)
        stem -= 5;
    snprintf(out, len, "%.*s.html", (int)stem, file);
    return true;
}

int zlb_run(const zlb_config_t *cfg, const zlb_run_opts_t *opts)
{
    zlb_runner_t *r = zlb_xcalloc(1, sizeof(*r));
    r->cfg = cfg;
    r->opts = *opts;
    r->sigfd = r->stopfd = -1;
    r->state = ZLB_STATE_STARTING;
    r->tty = isatty(STDERR_FILENO);
    zlb_runner_mail_init(r);
    zlb_events_init(&r->events, ZLB_EVENTS_MAX);
    zlb_stager_init(r);
    /* The config checked the range. */
    if (zlb_prom_buckets_init(&r->buckets, cfg->control.metrics_bucket_min_ns,
                              cfg->control.metrics_bucket_max_ns) != 0)
        zlb_fatal("bad /metrics bucket range");
    if (cfg->report.file) {
        /* A run killed while writing its report leaves the temporary behind; ours only, and
         * only those older than this run (another writer's is newer). */
        int n = zlb_remove_stale_temps(cfg->report.file, (double)zlb_wall_ns() / 1e9,
                                       zlb_runner_log_removed_temp, NULL);
        if (n < 0 && n != -ENOENT)
            zlb_log_warn("cannot look for stale report temporaries beside %s: %s", cfg->report.file,
                         strerror(-n));
    }
    r->src = opts->source;
    zlb_work_live_from_config(cfg, &r->live); /* with a source: the whole run's */
    /* Client sockets, the embedded target's sockets, and room for the rest (in the processes
     * that hold them, with a source). */
    uint64_t fds = zlb_config_peak_connections(cfg) * (cfg->embedded_target.enabled ? 2 : 1) + 256;
    int rc = r->src ? 0 : zlb_fd_table_reserve((unsigned)ZLB_MIN(fds, (uint64_t)UINT32_MAX));
    if (rc != 0)
        zlb_log_warn("cannot reserve %llu file descriptors: %s", (unsigned long long)fds,
                     strerror(-rc));
    if (!r->src)
        zlb_runner_warn_fd_limit(cfg, fds);
    zlb_config_hash(cfg, r->config_hash);
    json_t *cj = zlb_config_to_json(cfg);
    r->config_text = json_dumps(cj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(cj);
    int code = ZLB_EXIT_INTERNAL;

    if (zlb_runner_open_signal_fds(r) != 0)
        goto out;
    /* An address that is taken or not ours to bind is the configuration's problem (exit 2), as
     * is any setting the libraries refuse; anything else is ours (exit 1). */
    rc = zlb_runner_start_control(r);
    if (rc == 0 && cfg->embedded_target.enabled && !r->src)
        rc = zlb_runner_start_embedded_target(r);
    if (rc != 0) {
        if (rc == -EADDRINUSE || rc == -EADDRNOTAVAIL || rc == -EACCES)
            code = ZLB_EXIT_USAGE;
        goto out;
    }
    if (r->src) {
        r->src->snapshot_init(r->src->ctx, &r->snap, &r->poller_process);
        r->src->snapshot_init(r->src->ctx, &r->base, &r->poller_process);
    } else {
        if (zlb_runner_build_targets(r) != 0 || zlb_runner_make_pool(r) != 0)
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
    }
    zlb_monitor_init(&r->mon, r->snap.npollers, cfg->stats_interval_ns, NULL);
    r->pin = zlb_xcalloc(r->snap.npollers ? r->snap.npollers : 1, sizeof(*r->pin));
    /* Rows come at the controller's ticks: an interval shorter than a tick is a tick. */
    uint64_t row_ns = ZLB_MAX(cfg->stats_interval_ns, TICK_NS);
    zlb_series_init(&r->series, r->snap.npollers, row_ns, ZLB_SERIES_ROWS_MAX);
    r->sin = zlb_xcalloc(r->snap.npollers ? r->snap.npollers : 1, sizeof(*r->sin));
    if (r->control) {
        char head[64];
        snprintf(head, sizeof(head), "\"interval_s\":%.9g", (double)row_ns / 1e9);
        zlb_control_series_start(r->control, "/stats/series", head, ZLB_SERIES_LIVE_ROWS);
    }
    take_snapshot(r, false);
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
    zlb_runner_stages_begin(r); /* the engine starts with stage 0's values */
    rc = r->src ? r->src->start(r->src->ctx) : zlb_work_start(r->engine);
    if (rc != 0) {
        zlb_log_error("cannot start the scheduler: %s", strerror(-rc));
        goto out;
    }
    r->state = ZLB_STATE_RAMPING;
    if (cfg->nstages)
        zlb_log_info("run started: a profile of %zu stage(s) over %zu poller(s), %s", cfg->nstages,
                     r->snap.npollers,
                     cfg->duration_ns ? "until its last stage ends" : "until stopped");
    else
        zlb_log_info("run started: %llu connections at %.0f/s over %zu poller(s), %s",
                     (unsigned long long)cfg->connections, cfg->connect_rate, r->snap.npollers,
                     cfg->duration_ns ? "until the duration ends" : "until stopped");

    uint64_t next_tick = r->t_start + TICK_NS;
    /* The duration ends on its own deadline, not on the next tick: a 1 ms run is 1 ms long. */
    uint64_t t_duration_end =
        cfg->duration_ns && !cfg->nstages ? r->t_start + cfg->duration_ns : UINT64_MAX;
    for (;;) {
        uint64_t now = zlb_now_ns();
        /* Draining: a cheap look each millisecond, so a drain that is done ends the run now. */
        /* A stage boundary is a tick of its own: its window ends at it, not up to a tick late. */
        uint64_t t_stage = zlb_runner_stages_next_ns(r);
        uint64_t wake = r->state == ZLB_STATE_DRAINING
                            ? ZLB_MIN(next_tick, now + ZLB_NS_PER_MS)
                            : ZLB_MIN(ZLB_MIN(next_tick, t_duration_end), t_stage);
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
            engine_stop_opening(r); /* first: the snapshot below takes a while */
        bool drained = r->state == ZLB_STATE_DRAINING && engine_idle(r);
        bool stage_due = r->state != ZLB_STATE_DRAINING && now >= t_stage;
        if (now < next_tick && !r->immediate && !duration_over && !drained && !stage_due)
            continue;
        if (now >= next_tick)
            next_tick += TICK_NS;
        if (next_tick < zlb_now_ns())
            next_tick = zlb_now_ns() + TICK_NS; /* we were stalled: don't burst to catch up */
        if (take_snapshot(r, stage_due) != 0)
            zlb_fatal("snapshot failed");
        if (r->state != ZLB_STATE_DRAINING && zlb_runner_stages_tick(r, zlb_now_ns()))
            request_stop(r, "duration", false);
        update_phase(r);
        series_tick(r, false);
        if (r->src && r->src->failed(r->src->ctx))
            request_stop(r, "process_failed", false);
        check_saturation(r);
        check_abort(r);
        publish(r);
        zlb_runner_progress(r, false);
        if (r->state == ZLB_STATE_DRAINING) {
            /* A process that died keeps its last figures, open connections included. */
            bool idle = r->src ? engine_idle(r)
                               : r->snap.total.c.open == 0 && r->snap.total.c.in_flight == 0;
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
    zlb_runner_close_mail(r); /* the run is over: no change can apply now */
    /* Every poller has answered its last task: a final snapshot after the pool stops sees
     * exactly what each poller recorded. */
    if (r->src)
        r->src->finish(r->src->ctx);
    zlb_pool_stop(r->pool);

    take_snapshot(r, false);
    series_tick(r, true);
    code = finish(r);
    if (opts->interrupted && r->stop_reason && strcmp(r->stop_reason, "duration") != 0 &&
        strcmp(r->stop_reason, "threshold_failed") != 0)
        *opts->interrupted = true; /* a signal or POST /stop: a person wants it to end */
out:
    zlb_runner_teardown(r);
    free(r);
    return code;
}
