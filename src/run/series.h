/* series.h -- the run's timeline: one small fixed row per stats interval, built on the run's
 * thread from the difference of consecutive cumulative snapshots. Internal to the run module
 * and its tests.
 *
 * Nothing here runs on a poller: the pollers keep their cumulative counters and histograms as
 * they always did; a row is "snapshot now" minus "snapshot at the previous row", so interval
 * percentiles are exact within the histogram's resolution.
 *
 * Bounded memory: at most max_rows rows. When a row would exceed it, every pair of neighbours is
 * merged (counts add; a merged row's p50/p90/p99 are the larger of the two rows', an upper bound
 * of the true figure, which lies between the two; max is exact) and from then on a row spans
 * twice as many intervals, so the rows stay evenly spaced: a chart of the whole run keeps one
 * resolution, never a collapsed past. ZLB_SERIES_ROWS_MAX rows at 1 s is 4.5 h before anything
 * is merged; 24 h at 1 s ends with rows of 8 s. (GET /stats/series serves each interval's own
 * row as it was made, whatever happens here later.) */
#ifndef ZLB_RUN_SERIES_H
#define ZLB_RUN_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "stats/stats.h"

#define ZLB_SERIES_ROWS_MAX 16384
#define ZLB_SERIES_NO_STAGE (-1)
/* Rows GET /stats/series keeps for live readers (the report has them all): an hour at 1 s. */
#define ZLB_SERIES_LIVE_ROWS 3600

/* One phase's figures within one row (µs; float keeps the histogram's 3 digits). */
typedef struct zlb_series_phase {
    uint32_t count; /* samples in the interval (saturates at UINT32_MAX) */
    float p50_us, p90_us, p99_us, max_us;
} zlb_series_phase_t;

/* One poller within one row. */
typedef struct zlb_series_poller {
    float load;   /* 0..1: the loop's busy share at the row's end */
    float lag_us; /* worst timer lateness seen at the 100 ms ticks of the interval */
} zlb_series_poller_t;

/* One interval. Counts are the interval's own (rates are count / dt_s), so merging two rows adds
 * them exactly. */
typedef struct zlb_series_row {
    double t_s;        /* end of the interval, seconds since the run started */
    double dt_s;       /* its length */
    const char *state; /* static name: "ramping", "steady", "draining" */
    uint64_t open, target;
    uint64_t attempts, connects, failures, closes, messages, bytes_in, bytes_out;
    uint32_t failed[ZLB_FAIL__COUNT]; /* failures by reason, before and after establishment */
    int32_t stage;                    /* ZLB_SERIES_NO_STAGE or the stage's index */
    uint32_t intervals;               /* stats intervals merged into this row (1: its own) */
    uint32_t phases;                  /* bit (1 << zlb_lat_t): the phase had samples */
    zlb_series_phase_t lat[ZLB_LAT__COUNT];
} zlb_series_row_t;

/* What the caller samples for one poller at one tick. */
typedef struct zlb_series_poller_in {
    double load_pct; /* 0..100 */
    uint64_t lag_ns; /* how late its last timer fired */
} zlb_series_poller_in_t;

typedef struct zlb_series {
    uint64_t interval_ns;
    size_t npollers, max_rows;
    zlb_series_row_t *rows;       /* owned, cap entries */
    zlb_series_poller_t *pollers; /* owned, cap * npollers: row i's at [i * npollers] */
    size_t n, cap;
    uint64_t recorded;                  /* intervals ever appended (n + merged away) */
    unsigned level;                     /* rows span up to 2^level intervals */
    zlb_series_row_t fresh;             /* the latest interval's own row */
    zlb_series_poller_t *fresh_pollers; /* owned, npollers */
    int32_t stage;                      /* stamped on the next row */
    uint64_t last_t_ns;                 /* end of the last row, since the run started */
    uint64_t next_row_ns;               /* the grid: rows are due at k * interval_ns */
    zlb_stats_t prev;                   /* cumulative at the last row */
    zlb_stats_t scratch;
    uint64_t *lag_max_ns; /* npollers: worst lag seen since the last row */
} zlb_series_t;

/** Prepares s for npollers pollers and rows every interval_ns, at most max_rows (>= 4) rows.
 * The baseline is all zero at t = 0 (the run's start). Fatal on OOM. */
void zlb_series_init(zlb_series_t *s, size_t npollers, uint64_t interval_ns, size_t max_rows);
void zlb_series_dispose(zlb_series_t *s);
/** The stage stamped on rows from now on (ZLB_SERIES_NO_STAGE: none). */
void zlb_series_set_stage(zlb_series_t *s, int32_t stage);
/** Folds one tick's per-poller readings (npollers entries) into the row being built. */
void zlb_series_observe(zlb_series_t *s, const zlb_series_poller_in_t *p);
/** Appends the row that ends at t_ns (since the run started, > the last row's end) from the
 * cumulative stats `cum` (counters and histograms only ever grow between rows), the run's state
 * name (static), the target connection count and the pollers' readings at t_ns. Coarsens when
 * full. Returns the interval's own row, s->fresh (its pollers: s->fresh_pollers), valid until
 * the next append: the stored row may be a merge. */
const zlb_series_row_t *zlb_series_append(zlb_series_t *s, uint64_t t_ns, const zlb_stats_t *cum,
                                          const char *state, uint64_t target,
                                          const zlb_series_poller_in_t *p);
/** One tick of the run controller at t_ns (since the run started): observes the pollers and,
 * when a row is due (the first tick at or after the next multiple of interval_ns) or `final`
 * (the run's last snapshot: a partial row, so the rows add up to the totals), appends it.
 * Returns the new row or NULL. */
const zlb_series_row_t *zlb_series_tick(zlb_series_t *s, uint64_t t_ns, const zlb_stats_t *cum,
                                        const char *state, uint64_t target,
                                        const zlb_series_poller_in_t *p, bool final);
/** Row i's pollers (npollers entries). */
const zlb_series_poller_t *zlb_series_row_pollers(const zlb_series_t *s, size_t i);
/** Merges row b (the later) into row a, pollers included (npollers entries each). */
void zlb_series_merge_rows(zlb_series_row_t *a, zlb_series_poller_t *ap, const zlb_series_row_t *b,
                           const zlb_series_poller_t *bp, size_t npollers);
/** The memory one row takes, pollers included. */
size_t zlb_series_bytes_per_row(const zlb_series_t *s);
/** A row as the contract's ROW object (p: npollers entries). New reference. */
json_t *zlb_series_row_json(const zlb_series_row_t *r, const zlb_series_poller_t *p,
                            size_t npollers);
/** The report's "timeline": {interval_s, intervals_per_row, coarsened, bytes_per_row, rows}.
 * New reference. */
json_t *zlb_series_json(const zlb_series_t *s);

#endif
