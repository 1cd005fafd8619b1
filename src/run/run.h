/* run.h -- the run controller: phases, signals, live stats, the report, thresholds, exit codes. */
#ifndef ZLB_RUN_H
#define ZLB_RUN_H

#include <stdbool.h>

#include "config/config.h"

/* Exit codes, shared by every subcommand and documented in --help and the README. */
enum {
    ZLB_EXIT_OK = 0,          /* the run passed (or the command succeeded) */
    ZLB_EXIT_INTERNAL = 1,    /* internal error: something zlbench could not do */
    ZLB_EXIT_USAGE = 2,       /* bad usage or configuration: nothing was started */
    ZLB_EXIT_THRESHOLDS = 3,  /* the run completed but a threshold failed */
    ZLB_EXIT_REGRESSION = 4,  /* `compare` found a regression */
    ZLB_EXIT_INVALID_RUN = 5, /* the generator saturated or the run ended before steady state */
};

typedef struct zlb_run_opts {
    bool quiet;        /* -q: no live progress, no summary */
    bool *interrupted; /* if not NULL, set when a signal or POST /stop ended the run */
} zlb_run_opts_t;

/** Runs the scenario described by cfg (validated, immutable) to its end: starts the embedded
 * target if any, the pollers, the engine and the control port; handles SIGINT/SIGTERM (first:
 * graceful stop and drain, second: immediate stop); serves live stats; writes the report.
 * The caller must have blocked SIGINT, SIGTERM and SIGPIPE in every thread (main does it
 * before any thread exists). Returns a ZLB_EXIT_* code. Call once, from main. */
int zlb_run(const zlb_config_t *cfg, const zlb_run_opts_t *opts);

/** True when `path` names a numeric or boolean field of the report that thresholds and
 * `compare` understand (e.g. "latency_us.connect.p99"). Used by config validation. */
bool zlb_run_metric_path_valid(const char *path);

/** Runs the built-in target alone (`zlbench serve`) until SIGINT/SIGTERM. argv after "serve".
 * Returns a ZLB_EXIT_* code. */
int zlb_run_serve(int argc, char **argv);

/** `zlbench compare BASELINE CURRENT [--tolerance P%] [--metric PATH:TOL]... [--json FILE]`.
 * Returns ZLB_EXIT_OK, ZLB_EXIT_REGRESSION or ZLB_EXIT_USAGE. */
int zlb_run_compare(int argc, char **argv);

/** Prints (and writes to out_json, if not NULL) the run-to-run spread of the compared metrics
 * over n reports: mean, min, max and (max - min) / mean. Returns 0 or -EINVAL. */
int zlb_run_spread(char *const *reports, size_t n, const char *out_json);

/** `zlbench merge A.json B.json ... -o ALL.json`. */
int zlb_run_merge(int argc, char **argv);

#endif
