/* gate.h -- the CI gate: thresholds on a report, `compare` of runs, `merge` of reports, and the
 * run-to-run spread of --repeat. Reads and writes reports through the report module; knows
 * nothing of how a run is driven. */
#ifndef ZLB_GATE_H
#define ZLB_GATE_H

#include <stddef.h>

#include <jansson.h>

#include "config/config.h"

/** Evaluates cfg's thresholds against the report's steady figures (the whole run's where the
 * measured window has none); adds "thresholds" (one row per threshold) to the report. Returns
 * the number that failed. */
int zlb_gate_thresholds(const zlb_config_t *cfg, json_t *report);

/** `zlbench compare BASELINE[,..] CURRENT[,..] [--tolerance P%] [--metric PATH[:TOL]]...
 * [--json FILE]`, argv[0] being "compare". Returns ZLB_EXIT_OK, ZLB_EXIT_REGRESSION or
 * ZLB_EXIT_USAGE (an unreadable or inconsistent report included). */
int zlb_gate_compare(int argc, char **argv);

/** `zlbench merge A.json B.json ... -o OUT.json [--allow-mixed]`, argv[0] being "merge": reports
 * of runs made side by side, summed into one. Returns ZLB_EXIT_OK, ZLB_EXIT_USAGE or
 * ZLB_EXIT_INTERNAL (the output could not be written). */
int zlb_gate_merge(int argc, char **argv);

/** Prints (and writes to out_json, if not NULL) the run-to-run spread of the compared metrics
 * over n reports: mean, min, max and (max - min) / mean. Returns 0 or -EINVAL. */
int zlb_gate_spread(char *const *reports, size_t n, const char *out_json);

/* CI-native summaries, written beside the report or compare's table. */
typedef struct zlb_gate_ci_opts {
    const char *junit_file;      /* --junit: JUnit XML, or NULL */
    const char *summary_md_file; /* --summary-md: a markdown table, or NULL */
} zlb_gate_ci_opts_t;

/** Writes the JUnit XML and the markdown summary that o asks for, from a finished run's report
 * (its "thresholds" rows and figures) and/or a compare document ("metrics" rows, as compare
 * --json writes it); either may be NULL. When $GITHUB_STEP_SUMMARY names a file, the markdown
 * is appended there too. Files are written atomically. Returns 0 or the first -errno (each
 * failure is printed on stderr). */
int zlb_gate_ci_write(const zlb_gate_ci_opts_t *o, const json_t *report, const json_t *compare);

#endif
