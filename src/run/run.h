/* run.h -- the run controller: phases, signals, live stats, the report and its verdict. */
#ifndef ZLB_RUN_H
#define ZLB_RUN_H

#include <stdbool.h>

#include <jansson.h>

#include "config/config.h"
#include "core/core.h" /* ZLB_EXIT_* */
#include "work/work.h"

/* Where a run's connections live when they are not this process's own engine: the shard
 * processes of --processes (src/procs). The run controller keeps every rule (phases, stop,
 * signals, thresholds, the report) and asks the source for what it would ask its engine. All
 * called on the run's thread. */
typedef struct zlb_run_source {
    void *ctx;
    /* The targets as reports name them (borrowed for the run). */
    const zlb_work_target_t *targets;
    size_t ntargets;
    /* Allocates s for the whole (every process's pollers); fills poller_process with each
     * poller row's process index (borrowed for the run, npollers entries). */
    void (*snapshot_init)(void *ctx, zlb_work_snapshot_t *s, const uint32_t **poller_process);
    /* The latest figures of every process, added up exactly. 0 or -errno. */
    int (*snapshot)(void *ctx, zlb_work_snapshot_t *s);
    /* The same, of this moment (each process asked and waited for, boundedly): at a stage
     * boundary. NULL: snapshot. */
    int (*snapshot_fresh)(void *ctx, zlb_work_snapshot_t *s);
    int (*start)(void *ctx);
    void (*stop_opening)(void *ctx);
    void (*close_all)(void *ctx);
    /* True when nothing is open or in flight in any live process. */
    bool (*idle)(void *ctx);
    void (*reset_lag_max)(void *ctx);
    /* The whole run's live values (stages, PATCH /run, pause): the source hands each process
     * its exact share. NULL: the run takes no live values (PATCH /run answers 409). */
    void (*steer)(void *ctx, const zlb_work_live_t *v);
    /* Stops every process's pollers and collects its final figures (the next snapshot is the
     * final one). Never blocks for longer than a bounded wait. */
    void (*finish)(void *ctx);
    /* NULL, or why the run cannot be trusted (a process crashed): checked every tick (a failed
     * process stops the run) and when the verdict is made. */
    const char *(*failed)(void *ctx);
    /* Adds the source's facts to the report and to each /stats (e.g. "processes"). */
    void (*report)(void *ctx, json_t *report);
} zlb_run_source_t;

typedef struct zlb_run_opts {
    bool quiet;                     /* -q: no live progress, no summary */
    bool *interrupted;              /* if not NULL, set when a signal or POST /stop ended the run */
    const char *junit_file;         /* --junit: the thresholds as JUnit XML, or NULL */
    const char *summary_md_file;    /* --summary-md: a markdown summary, or NULL */
    const zlb_run_source_t *source; /* NULL: this process's own engine */
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

/* A run's engine without its controller: the built-in target (if configured), the pollers and
 * the connection engine, for a shard process of --processes whose parent controls the run.
 * No control port, no signals, no report. */
typedef struct zlb_run_engine zlb_run_engine_t;
/** Builds it for cfg (borrowed, must outlive it). 0 or -errno (logged). */
int zlb_run_engine_create(const zlb_config_t *cfg, zlb_run_engine_t **out);
zlb_work_t *zlb_run_engine_work(zlb_run_engine_t *h);
zlb_pool_t *zlb_run_engine_pool(zlb_run_engine_t *h);
/** The targets as the engine was given them (the built-in target's bound address). */
const zlb_work_target_t *zlb_run_engine_targets(zlb_run_engine_t *h, size_t *n);
/** Stops the pollers and frees everything. Accepts NULL. */
void zlb_run_engine_destroy(zlb_run_engine_t *h);

#endif
