/* gate_internal.h -- shared between the gate module's files; not a public API. */
#ifndef ZLB_GATE_INTERNAL_H
#define ZLB_GATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/core.h"
#include "gate/gate.h"

/** Reads a metric where thresholds and compare read it: the steady figures ("steady.<path>")
 * first, the whole run's when the measured window has none. *src says which ("steady"/"run").
 * 0 or -ENOENT. */
int zlb_gate_lookup_measured(const json_t *report, const char *path, double *out, const char **src);

/** XML text/attribute escaping of s appended to b: the five entities, tab/newline/CR as
 * character references, other controls and invalid UTF-8 as '?'. */
void zlb_gate_xml_escape(zlb_buf_t *b, const char *s);
/** The JUnit XML / markdown of a run's report and/or a compare document (either NULL).
 * malloc'd, the caller frees. */
char *zlb_gate_junit_render(const json_t *report, const json_t *compare);
char *zlb_gate_summary_md_render(const json_t *report, const json_t *compare);

/* timeline.c */
typedef struct zlb_gate_crossing {
    double t_s, dt_s; /* the row's end and length */
    double value;     /* its figure */
    size_t row;       /* its index in timeline.rows */
} zlb_gate_crossing_t;

/** The first row of the report's timeline in which the metric at `path` is worse than `limit`
 * (above it, or below it when higher is better). Paths with a per-interval figure:
 * latency_us.PHASE.{p50,p90,p99,max}, rates.X_per_s, and either under "stages.N." (rows of that
 * stage only). steady_only: rows in the steady state only (what compare's steady figures
 * cover). 0, or -ENOENT when no row crosses or the path has no per-interval figure. */
int zlb_gate_first_crossing(const json_t *report, const char *path, bool higher_is_better,
                            double limit, bool steady_only, zlb_gate_crossing_t *out);
/** The timelines of reports of side-by-side runs added up: rows meet by the interval they
 * start in; counts, levels and rates add, percentiles take the larger (an upper bound), pollers
 * are concatenated; "merged": true. NULL with *why set when a report has none or the
 * intervals differ. New reference. */
json_t *zlb_gate_merge_timelines(json_t **in, size_t n, const char **why);

#endif
