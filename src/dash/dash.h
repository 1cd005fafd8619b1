/* dash.h -- pictures of a run: the live dashboard's files (served by the control port) and the
 * self-contained HTML report written from a JSON report. */
#ifndef ZLB_DASH_H
#define ZLB_DASH_H

#include <stddef.h>

#include <jansson.h>

#include "control/control.h"

/** The dashboard's static files ("/", "/dash.js", ...) for zlb_control_opts_t.assets: built
 * into the binary, valid for the process's life. *n is set to their number. */
const zlb_control_asset_t *zlb_dash_assets(size_t *n);

/** Writes the HTML report for `report` (a JSON report, borrowed) to `path`, atomically, with
 * `nbase` baseline reports overlaid on its latency plots (may be 0). `name`/`base_names` label
 * them. One file, no external requests: style, script and data inline, the data as JSON that the
 * page renders as text only. 0 or -errno with a message in err. */
int zlb_dash_write_report(const json_t *report, const char *name, const json_t *const *baselines,
                          const char *const *base_names, size_t nbase, const char *path, char *err,
                          size_t errlen);

/** `zlbench report [BASE.json,...] REPORT.json -o OUT.html`. Returns the exit code. */
int zlb_dash_report_main(int argc, char **argv);

#endif
