/* monitor.c -- the generator watching itself: rates, per-poller shares, saturation rules. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "run/monitor.h"

/* The one place a lateness phase is added. send_lag counts only the generator's own lateness:
 * the workloads measure it from the later of the intended time and the moment the connection had
 * room, so a request waiting behind a stalled target is the target's slowness (it shows in
 * http_response / message_rt) and never reads as the generator falling behind. */
const zlb_lat_t zlb_monitor_lateness[] = {ZLB_LAT_SCHEDULE_LAG, ZLB_LAT_SEND_LAG};
const size_t zlb_monitor_nlateness = ZLB_ARRAY_LEN(zlb_monitor_lateness);

void zlb_monitor_limits_default(zlb_mon_limits_t *l)
{
    /* Busy and run-queue shares are judged only when they last: one slow second is noise on a
     * shared machine, three in a row are a generator that cannot keep up. An idle poller on a
     * crowded machine waits for a CPU at each of its few wake-ups (10-20 % of the time seen on
     * a 2-core host running builds) without anything being late; a starved one waits most of
     * the time (65-80 % beside a nice -10 busy loop). A tenth of the actions 20 ms late (over
     * enough actions for a tenth to mean something), or any one 150 ms late, means the figures
     * carry the generator's delay. */
    *l = (zlb_mon_limits_t){
        .busy_pct = 95.0,
        .runq_wait_pct = 50.0,
        .sustain_ns = 3 * ZLB_NS_PER_SEC,
        .backlog_ns = 3 * ZLB_NS_PER_SEC,
        .lateness_p90_ns = 20 * ZLB_NS_PER_MS,
        .lateness_min_count = 100,
        .stall_ns = 150 * ZLB_NS_PER_MS,
    };
}

const char *zlb_monitor_rule_name(zlb_mon_rule_t r)
{
    static const char *const names[] = {"poller_busy", "run_queue_wait", "scheduler_backlog",
                                        "lateness", "stall"};
    return (unsigned)r < ZLB_ARRAY_LEN(names) ? names[r] : "unknown";
}

void zlb_monitor_init(zlb_monitor_t *m, size_t npollers, uint64_t interval_ns,
                      const zlb_mon_limits_t *lim)
{
    memset(m, 0, sizeof(*m));
    if (lim)
        m->lim = *lim;
    else
        zlb_monitor_limits_default(&m->lim);
    m->npollers = npollers;
    m->interval_ns = interval_ns ? interval_ns : ZLB_NS_PER_SEC;
    size_t n = npollers ? npollers : 1;
    for (size_t i = 0; i < ZLB_MON_RING; i++) {
        m->ring[i].established = zlb_xcalloc(n, sizeof(uint64_t));
        m->ring[i].cpu_ns = zlb_xcalloc(n, sizeof(uint64_t));
        m->ring[i].runq_ns = zlb_xcalloc(n, sizeof(uint64_t));
    }
    m->poller = zlb_xcalloc(n, sizeof(*m->poller));
    m->busy_since = zlb_xcalloc(n, sizeof(uint64_t));
    m->runq_since = zlb_xcalloc(n, sizeof(uint64_t));
}

void zlb_monitor_dispose(zlb_monitor_t *m)
{
    for (size_t i = 0; i < ZLB_MON_RING; i++) {
        free(m->ring[i].established);
        free(m->ring[i].cpu_ns);
        free(m->ring[i].runq_ns);
    }
    free(m->poller);
    free(m->busy_since);
    free(m->runq_since);
    memset(m, 0, sizeof(*m));
}

static double share_pct(uint64_t part_then, uint64_t part_now, uint64_t dt_ns)
{
    if (dt_ns == 0 || part_now < part_then)
        return 0.0;
    double pct = 100.0 * (double)(part_now - part_then) / (double)dt_ns;
    return pct > 100.0 ? 100.0 : pct;
}

void zlb_monitor_sample(zlb_monitor_t *m, uint64_t t_ns, const zlb_counters_t *total,
                        const zlb_mon_poller_in_t *pollers)
{
    zlb_mon_sample_t *s = &m->ring[m->ring_next];
    s->t_ns = t_ns;
    s->total = *total;
    for (size_t i = 0; i < m->npollers; i++) {
        s->established[i] = pollers[i].established;
        s->cpu_ns[i] = pollers[i].cpu_ns;
        s->runq_ns[i] = pollers[i].runq_wait_ns;
    }
    m->ring_next = (m->ring_next + 1) % ZLB_MON_RING;
    if (m->ring_count < ZLB_MON_RING)
        m->ring_count++;

    memset(&m->last_interval, 0, sizeof(m->last_interval));
    m->last_interval_s = 0;
    for (size_t i = 0; i < m->npollers; i++) {
        m->poller[i] =
            (zlb_mon_poller_t){.busy_pct = pollers[i].busy_pct,
                               .runq_wait_pct = pollers[i].runq_wait_ns == UINT64_MAX ? -1.0 : 0.0};
    }
    if (m->ring_count < 2)
        return;
    const zlb_mon_sample_t *then = NULL;
    for (size_t k = 1; k < m->ring_count; k++) {
        then = &m->ring[(m->ring_next + ZLB_MON_RING - 1 - k) % ZLB_MON_RING];
        if (t_ns - then->t_ns >= m->interval_ns)
            break;
    }
    uint64_t dt = t_ns - then->t_ns;
    m->last_interval_s = (double)dt / 1e9;
    zlb_rates_over(&m->last_interval, &then->total, total, m->last_interval_s);
    if (dt == 0)
        return;
    for (size_t i = 0; i < m->npollers; i++) {
        zlb_mon_poller_t *p = &m->poller[i];
        p->cpu_pct = share_pct(then->cpu_ns[i], s->cpu_ns[i], dt);
        if (s->runq_ns[i] != UINT64_MAX && then->runq_ns[i] != UINT64_MAX)
            p->runq_wait_pct = share_pct(then->runq_ns[i], s->runq_ns[i], dt);
        p->connects_per_s =
            s->established[i] >= then->established[i]
                ? (double)(s->established[i] - then->established[i]) / ((double)dt / 1e9)
                : 0.0;
    }
}

static void fire(zlb_monitor_t *m, zlb_mon_rule_t rule, const char *fmt, ...) ZLB_PRINTF(3, 4);
static void fire(zlb_monitor_t *m, zlb_mon_rule_t rule, const char *fmt, ...)
{
    m->saturated = true;
    if (m->nreasons >= ZLB_MON_REASONS)
        return;
    zlb_mon_reason_t *r = &m->reasons[m->nreasons++];
    r->rule = rule;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
}

/* Tracks since when a condition holds; true once it has held for `need` ns. */
static bool sustained(uint64_t *since, bool cond, uint64_t now, uint64_t need)
{
    if (!cond) {
        *since = 0;
        return false;
    }
    if (!*since)
        *since = now ? now : 1; /* 0 means "not holding" */
    return now >= *since && now - *since >= need;
}

void zlb_monitor_check_sustained(zlb_monitor_t *m, uint64_t t_ns, uint64_t scheduler_backlog,
                                 bool rate_limited)
{
    const zlb_mon_limits_t *l = &m->lim;
    for (size_t i = 0; i < m->npollers; i++) {
        const zlb_mon_poller_t *p = &m->poller[i];
        if (sustained(&m->busy_since[i], p->busy_pct >= l->busy_pct, t_ns, l->sustain_ns) &&
            !m->fired[ZLB_MON_RULE_BUSY]) {
            m->fired[ZLB_MON_RULE_BUSY] = true;
            fire(m, ZLB_MON_RULE_BUSY, "poller %zu busy %.1f%% >= %.0f%% for %.1f s", i,
                 p->busy_pct, l->busy_pct, (double)l->sustain_ns / 1e9);
        }
        if (sustained(&m->runq_since[i], p->runq_wait_pct >= l->runq_wait_pct, t_ns,
                      l->sustain_ns) &&
            !m->fired[ZLB_MON_RULE_RUNQ]) {
            m->fired[ZLB_MON_RULE_RUNQ] = true;
            fire(m, ZLB_MON_RULE_RUNQ,
                 "poller %zu waited for a CPU %.1f%% of the time (>= %.0f%%) for %.1f s "
                 "(cpu %.1f%%)",
                 i, p->runq_wait_pct, l->runq_wait_pct, (double)l->sustain_ns / 1e9, p->cpu_pct);
        }
    }
    if (sustained(&m->backlog_since, rate_limited && scheduler_backlog > 0, t_ns, l->backlog_ns) &&
        !m->fired[ZLB_MON_RULE_BACKLOG]) {
        m->fired[ZLB_MON_RULE_BACKLOG] = true;
        fire(m, ZLB_MON_RULE_BACKLOG,
             "the scheduler fell behind the requested connect rate: %llu due attempts not "
             "handed out for %.1f s",
             (unsigned long long)scheduler_backlog, (double)l->backlog_ns / 1e9);
    }
}

void zlb_monitor_check_lateness(zlb_monitor_t *m, const zlb_stats_t *s, const char *span,
                                uint32_t ignore)
{
    const zlb_mon_limits_t *l = &m->lim;
    for (size_t k = 0; k < zlb_monitor_nlateness; k++) {
        if (ignore & (1u << zlb_monitor_lateness[k]))
            continue;
        const zlb_hist_t *h = s->lat[zlb_monitor_lateness[k]];
        const char *name = zlb_lat_name(zlb_monitor_lateness[k]);
        if (!zlb_hist_count(h))
            continue;
        uint64_t p90 = zlb_hist_percentile(h, 90), max = zlb_hist_max(h);
        if (p90 > l->lateness_p90_ns && zlb_hist_count(h) >= l->lateness_min_count &&
            !m->fired[ZLB_MON_RULE_LATENESS]) {
            m->fired[ZLB_MON_RULE_LATENESS] = true;
            fire(m, ZLB_MON_RULE_LATENESS, "%s p90 %.1f ms > %.0f ms (%s, %llu actions)", name,
                 (double)p90 / 1e6, (double)l->lateness_p90_ns / 1e6, span,
                 (unsigned long long)zlb_hist_count(h));
        }
        if (max >= l->stall_ns && !m->fired[ZLB_MON_RULE_STALL]) {
            m->fired[ZLB_MON_RULE_STALL] = true;
            fire(m, ZLB_MON_RULE_STALL, "%s max %.1f ms >= %.0f ms (%s): a stall", name,
                 (double)max / 1e6, (double)l->stall_ns / 1e6, span);
        }
    }
}
