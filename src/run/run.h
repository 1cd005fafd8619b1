/* run.h -- the run controller: phases, signals, live stats, the report and its verdict. */
#ifndef ZLB_RUN_H
#define ZLB_RUN_H

#include <stdbool.h>

#include "config/config.h"
#include "core/core.h" /* ZLB_EXIT_* */

typedef struct zlb_run_opts {
    bool quiet;                  /* -q: no live progress, no summary */
    bool *interrupted;           /* if not NULL, set when a signal or POST /stop ended the run */
    const char *junit_file;      /* --junit: the thresholds as JUnit XML, or NULL */
    const char *summary_md_file; /* --summary-md: a markdown summary, or NULL */
} zlb_run_opts_t;

/** Runs the scenario described by cfg (validated, immutable) to its end: starts the embedded
 * target if any, the pollers, the engine and the control port; handles SIGINT/SIGTERM (first:
 * graceful stop and drain, second: immediate stop); serves live stats; writes the report.
 * The caller must have blocked SIGINT, SIGTERM and SIGPIPE in every thread (main does it
 * before any thread exists). Returns a ZLB_EXIT_* code. Call from main (again for
 * each run of a series). */
int zlb_run(const zlb_config_t *cfg, const zlb_run_opts_t *opts);
/** Where the run writes its HTML report (report.html: a path, or true: beside report.file with
 * .json replaced by .html). False when it writes none. */
bool zlb_run_html_path(const zlb_config_t *cfg, char *out, size_t len);

#endif
