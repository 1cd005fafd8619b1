/* loop_internal.h -- what loop.c shares with pool.c and the unit tests, not with other modules. */
#ifndef ZLB_LOOP_INTERNAL_H
#define ZLB_LOOP_INTERNAL_H

#include "loop/loop.h"

/** Runs one iteration (wait at most max_wait_ns, then timers, events, tasks) on the calling
 * thread, which counts as the loop's thread meanwhile. For tests and for embedding. */
void zlb_loop_run_once(zlb_loop_t *loop, uint64_t max_wait_ns);
/** Calls every queued task with discarded=true and counts it; returns how many. The loop must
 * not be running. zlb_loop_destroy does this; tests call it to read the count back. */
uint64_t zlb_loop_discard_tasks(zlb_loop_t *loop);
/** The published load_pct without reading the rest of the statistics. Any thread. */
double zlb_loop_load_pct(const zlb_loop_t *loop);
/** Which pool (or other owner) a loop belongs to; NULL for a free-standing loop. */
void zlb_loop_set_owner(zlb_loop_t *loop, const void *owner);
const void *zlb_loop_owner(const zlb_loop_t *loop);

#endif
