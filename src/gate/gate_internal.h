/* gate_internal.h -- shared between the gate module's files; not a public API. */
#ifndef ZLB_GATE_INTERNAL_H
#define ZLB_GATE_INTERNAL_H

#include <jansson.h>

#include "gate/gate.h"

/** Reads a metric where thresholds and compare read it: the steady figures ("steady.<path>")
 * first, the whole run's when the measured window has none. *src says which ("steady"/"run").
 * 0 or -ENOENT. */
int zlb_gate_lookup_measured(const json_t *report, const char *path, double *out, const char **src);

#endif
