/* run_internal.h -- shared between the run module's files and its tests; not a public API. */
#ifndef ZLB_RUN_INTERNAL_H
#define ZLB_RUN_INTERNAL_H

#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "gate/gate.h"
#include "report/report.h"
#include "run/monitor.h"
#include "run/run.h"
#include "stats/stats.h"
#include "work/work.h"

typedef enum {
    ZLB_STATE_STARTING,
    ZLB_STATE_RAMPING,
    ZLB_STATE_STEADY,
    ZLB_STATE_DRAINING,
    ZLB_STATE_DONE
} zlb_state_t;

const char *zlb_state_name(zlb_state_t s);

/* Everything a rendering needs, borrowed. */
typedef struct zlb_view {
    const zlb_config_t *cfg;
    const char *config_hash;
    zlb_state_t state;
    double elapsed_s;
    const zlb_work_snapshot_t *snap;
    const zlb_rates_t *rates; /* whole-run averages: counters over elapsed_s */
    /* The generator watching itself: last_interval rates, per-poller shares, saturation. */
    const zlb_monitor_t *saturation;
    uint64_t ramp_end_ns;      /* when the ramp ended (monotonic), 0 while it runs */
    uint64_t ramp_established; /* connections established by then */
    const zlb_work_target_t *targets;
    size_t ntargets;
    double started_unix_s;             /* wall clock at the run's start (0 before) */
    const zlb_prom_buckets_t *buckets; /* /metrics histogram bounds */
} zlb_view_t;

/** The /stats document. New reference. */
json_t *zlb_render_stats(const zlb_view_t *v);
/** The /stats/pollers document (the "pollers" array). New reference. */
json_t *zlb_render_pollers(const zlb_view_t *v);
/** Prometheus text for /metrics. Caller disposes b. */
void zlb_render_metrics(const zlb_view_t *v, zlb_buf_t *b);
/** Host facts: kernel, CPUs, versions. New reference. */
json_t *zlb_render_host(void);

#endif
