/* monitor.h -- the generator watching itself: rates over named spans, per-poller busy/CPU/
 * run-queue shares, and the saturation rules. Internal to the run module and its tests.
 *
 * Pure: every function takes numbers the caller sampled (counters, histograms, cumulative thread
 * times) and returns numbers and verdicts. No clock, no I/O, no threads, so each rule is unit
 * tested with made-up samples (tests/test_run_monitor.c). */
#ifndef ZLB_RUN_MONITOR_H
#define ZLB_RUN_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "report/report.h"
#include "stats/stats.h"

/* ---- per-poller samples ---------------------------------------------------------------------- */

/* What the caller reads for one poller at one tick. Cumulative figures only: the monitor takes
 * differences, so every share is over exactly the span between two samples. */
typedef struct zlb_mon_poller_in {
    uint64_t established;  /* connections established by this poller, cumulative */
    uint64_t cpu_ns;       /* thread CPU time, cumulative */
    uint64_t runq_wait_ns; /* time runnable but waiting for a CPU (schedstat), cumulative;
                              UINT64_MAX when the kernel does not say */
    double busy_pct;       /* wall time outside epoll_wait over the loop's own window */
    uint64_t lag_max_ns;   /* timer lateness since the measured window began (shown, not judged) */
} zlb_mon_poller_in_t;

/* One poller's figures over the trailing interval. */
typedef struct zlb_mon_poller {
    double busy_pct;      /* wall time outside epoll_wait (callbacks, syscalls, waits for CPU) */
    double cpu_pct;       /* thread CPU time / wall time */
    double runq_wait_pct; /* runnable but not running / wall time; -1: unknown */
    double connects_per_s;
} zlb_mon_poller_t;

/* ---- saturation --------------------------------------------------------------------------------
 */

/* The phases whose histograms measure lateness: how late a scheduled action (a connect attempt,
 * a message, a request) started against its intended time. Waits the configuration asks for
 * (a rate limit, a backoff) move the intended time and are never in them. Saturation judges
 * every phase listed here, so a workload's new lateness phase is added to this list only. */
extern const zlb_lat_t zlb_monitor_lateness[];
extern const size_t zlb_monitor_nlateness;

typedef struct zlb_mon_limits {
    double busy_pct;          /* a poller this busy ... */
    double runq_wait_pct;     /* ... or waiting this much of the time for a CPU ... */
    uint64_t sustain_ns;      /* ... for this long in a row */
    uint64_t backlog_ns;      /* the scheduler had due attempts it could not hand out this long */
    uint64_t lateness_p90_ns; /* a tenth of the scheduled actions later than this ... */
    uint64_t lateness_min_count; /* ... judged once a span has this many (fewer: noise) */
    uint64_t stall_ns;           /* any scheduled action this late */
} zlb_mon_limits_t;

/** The defaults: busy 95 %, run-queue wait 50 %, sustained 3 s; backlog 3 s; lateness p90
 * 20 ms over at least 100 actions; stall 150 ms. */
void zlb_monitor_limits_default(zlb_mon_limits_t *l);

#define ZLB_MON_REASONS 8
#define ZLB_MON_REASON_LEN 160
#define ZLB_MON_RING 128

/* Which rule fired. Stable names, shown in the report beside the sentence. */
typedef enum {
    ZLB_MON_RULE_BUSY,
    ZLB_MON_RULE_RUNQ,
    ZLB_MON_RULE_BACKLOG,
    ZLB_MON_RULE_LATENESS,
    ZLB_MON_RULE_STALL,
    ZLB_MON_RULE__COUNT
} zlb_mon_rule_t;

/** "poller_busy", "run_queue_wait", "scheduler_backlog", "lateness", "stall". */
const char *zlb_monitor_rule_name(zlb_mon_rule_t r);

typedef struct zlb_mon_reason {
    zlb_mon_rule_t rule;
    char text[ZLB_MON_REASON_LEN]; /* the rule with its numbers, e.g. "schedule_lag p90 ..." */
} zlb_mon_reason_t;

typedef struct zlb_mon_sample {
    uint64_t t_ns;
    zlb_counters_t total;
    uint64_t *established; /* npollers */
    uint64_t *cpu_ns;
    uint64_t *runq_ns;
} zlb_mon_sample_t;

/* The monitor's state, in the caller's memory (init/dispose). */
typedef struct zlb_monitor {
    zlb_mon_limits_t lim;
    size_t npollers;
    uint64_t interval_ns; /* the trailing interval of last_interval and the poller shares */
    zlb_mon_sample_t ring[ZLB_MON_RING];
    size_t ring_next, ring_count;

    /* outputs, refreshed by zlb_monitor_sample */
    zlb_rates_t last_interval; /* over the trailing interval (poller_connects_per_s unused) */
    double last_interval_s;    /* its actual length */
    zlb_mon_poller_t *poller;  /* npollers */

    /* saturation */
    bool saturated;
    zlb_mon_reason_t reasons[ZLB_MON_REASONS];
    int nreasons;
    bool fired[ZLB_MON_RULE__COUNT];   /* each rule reports once */
    uint64_t *busy_since, *runq_since; /* per poller: 0, or when the condition began */
    uint64_t backlog_since;
} zlb_monitor_t;

/** Prepares m for npollers pollers, rates over interval_ns (the stats interval). lim may be NULL
 * (defaults). Fatal on OOM (small). */
void zlb_monitor_init(zlb_monitor_t *m, size_t npollers, uint64_t interval_ns,
                      const zlb_mon_limits_t *lim);
void zlb_monitor_dispose(zlb_monitor_t *m);

/** Takes one tick's sample: total counters and each poller's cumulative figures at t_ns.
 * Refreshes last_interval and the per-poller shares over the trailing interval (the newest
 * sample against the oldest one at least interval_ns older, or the oldest there is). */
void zlb_monitor_sample(zlb_monitor_t *m, uint64_t t_ns, const zlb_counters_t *total,
                        const zlb_mon_poller_in_t *pollers);

/** The sustained rules, once per tick while the measured window runs: a poller busy or waiting
 * for a CPU beyond its limit for sustain_ns, or scheduler_backlog attempts due but not handed
 * out for backlog_ns (only with a connect rate: as fast as possible has no schedule). Uses the
 * shares of the latest zlb_monitor_sample. */
void zlb_monitor_check_sustained(zlb_monitor_t *m, uint64_t t_ns, uint64_t scheduler_backlog,
                                 bool rate_limited);

/** The lateness rules over one span ("whole run", "steady window"): any lateness phase whose
 * p90 exceeds lateness_p90_ns, or whose max reaches stall_ns. An empty histogram says
 * nothing; phases whose bit (1 << zlb_lat_t) is set in `ignore` are not judged (a schedule with
 * no rate has nothing to be late against). Call with every span the report describes. */
void zlb_monitor_check_lateness(zlb_monitor_t *m, const zlb_stats_t *s, const char *span,
                                uint32_t ignore);

#endif
