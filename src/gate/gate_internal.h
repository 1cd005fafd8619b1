/* gate_internal.h -- shared between the gate module's files; not a public API. */
#ifndef ZLB_GATE_INTERNAL_H
#define ZLB_GATE_INTERNAL_H

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

#endif
