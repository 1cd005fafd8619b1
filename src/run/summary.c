/* summary.c -- what a person reads: the live line while a run goes, the summary when it ends. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/control.h"
#include "core/core.h"
#include "run/run_internal.h"
#include "serve/serve.h"

/* The live line fits a classic 80-column terminal (the cursor takes the last). */
#define ZLB_LIVE_COLUMNS 79
#define PROGRESS_LOG_EVERY_NS (5 * ZLB_NS_PER_SEC)

/* ---- the live line ------------------------------------------------------------------------------
 */

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
void zlb_runner_progress(zlb_runner_t *r, bool final)
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
                     (unsigned long long)c->open, (unsigned long long)zlb_runner_stages_target(r),
                     li->requests_per_s, lat, (unsigned long long)zlb_counters_failed_total(c),
                     busy);
    } else if (r->cfg->workload.type == ZLB_WORK_STREAM) {
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu out %.2f Gbit/s in %.2f Gbit/s stalled %llu "
                     "err %llu busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)zlb_runner_stages_target(r),
                     li->bytes_out_per_s * 8 / 1e9, li->bytes_in_per_s * 8 / 1e9,
                     (unsigned long long)c->stalled,
                     (unsigned long long)zlb_counters_failed_total(c), busy);
    } else if (c->messages || r->cfg->workload.type == ZLB_WORK_ECHO ||
               r->cfg->workload.type == ZLB_WORK_MESSAGE) {
        fmt_dur(lat, sizeof(lat), zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_MESSAGE_RT], 99));
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu msg/s %.0f rtt p99 %s err %llu "
                     "busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)zlb_runner_stages_target(r),
                     li->messages_per_s, lat, (unsigned long long)zlb_counters_failed_total(c),
                     busy);
    } else {
        fmt_dur(lat, sizeof(lat), zlb_hist_percentile(r->snap.total.lat[ZLB_LAT_CONNECT], 99));
        n = snprintf(line, sizeof(line),
                     "[%5.1fs] %s open %llu/%llu conn/s %.0f connect p99 %s "
                     "err %llu busy %s",
                     (double)(now - r->t_start) / 1e9, zlb_state_name(r->state),
                     (unsigned long long)c->open, (unsigned long long)zlb_runner_stages_target(r),
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

/* ---- the final summary ------------------------------------------------------------------- */

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

void zlb_runner_print_summary(zlb_runner_t *r, json_t *report, const zlb_stats_t *steady,
                              int failed, const char *invalid_why)
{
    if (r->opts.quiet)
        return;
    const zlb_counters_t *c = &r->snap.total.c;
    const zlb_work_target_t *tg = r->src ? r->src->targets : r->targets;
    size_t ntg = r->src ? r->src->ntargets : r->ntargets;
    double v, steady_s = 0;
    zlb_report_lookup(report, "steady.seconds", &steady_s);
    printf("\nzlbench %s: %s, stopped by %s after %.1f s\n", zlb_version(),
           ntg == 1 ? tg[0].name : "several targets", r->stop_reason,
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
               ntg == 1 ? tg[0].name : "any target");
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
    json_t *stages = json_object_get(report, "stages");
    if (json_array_size(stages)) {
        /* A profile has no ramp of its own: one line per stage, from its window. */
        size_t i;
        json_t *sj;
        json_array_foreach(stages, i, sj)
        {
            json_t *start = json_object_get(sj, "start_s"), *end = json_object_get(sj, "end_s");
            if (!json_is_number(start)) {
                printf("  stage %-6zu not reached\n", i);
                continue;
            }
            printf(
                "  stage %-6zu %6.1f-%.1f s%s: open %lld at its end, %.0f connects/s, %.0f "
                "closes/s, %.0f failures/s, %.0f messages/s\n",
                i, json_number_value(start), json_number_value(end),
                json_is_true(json_object_get(sj, "completed")) ? "" : " (cut short)",
                (long long)json_integer_value(
                    json_object_get(json_object_get(sj, "connections"), "open")),
                json_number_value(json_object_get(json_object_get(sj, "rates"), "connects_per_s")),
                json_number_value(json_object_get(json_object_get(sj, "rates"), "closes_per_s")),
                json_number_value(json_object_get(json_object_get(sj, "rates"), "failures_per_s")),
                json_number_value(json_object_get(json_object_get(sj, "rates"), "messages_per_s")));
        }
    } else if (r->snap.target_reached_ns)
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
    if (r->cfg->workload.type == ZLB_WORK_STREAM) {
        double gbit_out = st.bytes_out_per_s * 8 / 1e9, gbit_in = st.bytes_in_per_s * 8 / 1e9;
        double conns = r->cfg->connections ? (double)r->cfg->connections : 1.0;
        printf("  stream       steady: %.3f Gbit/s out, %.3f Gbit/s in (%.1f Mbit/s per "
               "connection); stalled %llu (whole run)\n",
               gbit_out, gbit_in, (gbit_out + gbit_in) * 1e3 / conns,
               (unsigned long long)c->stalled);
    }
    print_latency(steady, &r->snap.total, steady_s);
    for (size_t i = 0; i < r->snap.npollers; i++) {
        const zlb_poller_info_t *in = &r->snap.info[i];
        const zlb_mon_poller_t *mp = &r->mon.poller[i];
        char pol[48], runq[24] = "unknown";
        fmt_policy(pol, sizeof(pol), in);
        if (mp->runq_wait_pct >= 0)
            snprintf(runq, sizeof(runq), "%.1f%%", mp->runq_wait_pct);
        char id[24];
        if (r->poller_process) /* --processes: each process numbers its pollers from 0 */
            snprintf(id, sizeof(id), "%u.%d", (unsigned)r->poller_process[i], in->id);
        else
            snprintf(id, sizeof(id), "%d", in->id);
        printf("  poller %-5s cpu %d (%s): busy %.1f%%, cpu %.1f%%, waiting for a cpu %s, cpu "
               "time %.2f s, timer lag max %.0f us%s%s\n",
               id, in->cpu, pol, mp->busy_pct, mp->cpu_pct, runq,
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
        json_t *x = json_object_get(row, "first_crossed");
        if (x) {
            double t = json_number_value(json_object_get(x, "t_s"));
            printf("    first crossed at t=%.6g s (the interval %.6g-%.6g s: %.6g)\n", t,
                   t - json_number_value(json_object_get(x, "dt_s")), t,
                   json_number_value(json_object_get(x, "value")));
        }
    }
    if (failed)
        printf("  %d threshold(s) failed\n", failed);
    if (invalid_why)
        printf("  INVALID RUN  %s\n", invalid_why);
    if (r->cfg->report.file)
        printf("  report       %s\n", r->cfg->report.file);
    char html[4096];
    if (zlb_run_html_path(r->cfg, html, sizeof(html)))
        printf("  html report  %s\n", html);
    fflush(stdout);
}
