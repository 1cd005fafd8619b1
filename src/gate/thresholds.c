/* thresholds.c -- a config's thresholds evaluated on a report's figures. */
#include <stdio.h>
#include <string.h>

#include "gate/gate_internal.h"
#include "report/report.h"

static bool op_holds(zlb_op_t op, double observed, double limit)
{
    switch (op) {
    case ZLB_OP_LT:
        return observed < limit;
    case ZLB_OP_LE:
        return observed <= limit;
    case ZLB_OP_GT:
        return observed > limit;
    case ZLB_OP_GE:
        return observed >= limit;
    case ZLB_OP_EQ:
        return observed == limit;
    case ZLB_OP_NE:
        return observed != limit;
    }
    return false;
}

/* Steady-state figures first ("steady.<path>"); what only the whole run has (ramp, generator,
 * open connections) comes from the top level. */
int zlb_gate_lookup_measured(const json_t *report, const char *path, double *out, const char **src)
{
    char steady[256];
    snprintf(steady, sizeof(steady), "steady.%s", path);
    /* A latency phase the measured window never saw (connects of a hold run all happen in a
     * warm-up that covers the ramp) falls back to the whole run rather than reading as 0. */
    const char *dot = strrchr(path, '.');
    if (strncmp(path, "latency_us.", 11) == 0 && dot) {
        char count[256];
        double n = 0;
        snprintf(count, sizeof(count), "steady.%.*s.count", (int)(dot - path), path);
        if (zlb_report_lookup(report, count, &n) == 0 && n == 0) {
            *src = "run";
            return zlb_report_lookup(report, path, out);
        }
    }
    if (zlb_report_lookup(report, steady, out) == 0) {
        *src = "steady";
        return 0;
    }
    *src = "run";
    return zlb_report_lookup(report, path, out);
}

int zlb_gate_thresholds(const zlb_config_t *cfg, json_t *report)
{
    json_t *rows = json_array();
    int failed = 0;
    for (size_t i = 0; i < cfg->nthresholds; i++) {
        const zlb_threshold_t *t = &cfg->thresholds[i];
        double observed = 0;
        const char *src = "run";
        bool found = zlb_gate_lookup_measured(report, t->path, &observed, &src) == 0;
        bool passed = found && op_holds(t->op, observed, t->value);
        failed += !passed;
        json_t *row = json_pack("{s:s, s:s, s:b, s:s}", "path", t->path, "expr", t->expr, "passed",
                                passed, "source", src);
        json_object_set_new(row, "observed", found ? zlb_json_real(observed) : json_null());
        /* Where in the run it went wrong: the first interval beyond the limit, when the figure
         * has one per interval (a "<" limit is crossed upwards, a ">" one downwards). */
        zlb_gate_crossing_t x;
        bool upper = t->op == ZLB_OP_LT || t->op == ZLB_OP_LE;
        bool lower = t->op == ZLB_OP_GT || t->op == ZLB_OP_GE;
        if (found && !passed && (upper || lower) &&
            zlb_gate_first_crossing(report, t->path, lower, t->value, strcmp(src, "steady") == 0,
                                    &x) == 0)
            json_object_set_new(row, "first_crossed",
                                json_pack("{s:o, s:o, s:o}", "t_s", zlb_json_real(x.t_s), "dt_s",
                                          zlb_json_real(x.dt_s), "value", zlb_json_real(x.value)));
        json_array_append_new(rows, row);
    }
    json_object_set_new(report, "thresholds", rows);
    return failed;
}
