/* procs.h -- --processes: a run split into shard processes under one parent that owns the
 * control port and the report. */
#ifndef ZLB_PROCS_H
#define ZLB_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "run/run.h"

/** Runs cfg as cfg->processes shard processes (ZLB_PROCESSES_AUTO: zlb_procs_auto_count's
 * figure): forks one child per shard (zlb_config_apply_shard), each with its pollers pinned in
 * its own part of the allowed CPUs, no control port and no report; the parent runs the run
 * controller (zlb_run) over their snapshots: one /stats, /stats/pollers, /metrics and one report
 * that are the exact sum of the children, with per-process facts. A child that crashes or exits
 * early stops the run and makes it invalid (exit 5). With one process, plain zlb_run. Call from
 * main with SIGINT/SIGTERM blocked and before any thread exists (it forks). cfg is modified
 * (processes resolved). Returns a ZLB_EXIT_* code. */
int zlb_procs_run(zlb_config_t *cfg, const zlb_run_opts_t *opts);

/** Processes needed for `connections` under an open-files limit of fd_limit per process: each
 * connection needs a client socket, and one more for the built-in target's side when embedded,
 * plus a fixed reserve per process. At least 1, at most ZLB_PROCESSES_MAX. */
uint32_t zlb_procs_auto_count(uint64_t connections, bool embedded, uint64_t fd_limit);

/** Process `index` of `nprocs`'s CPUs out of cpus[0..ncpus): with at least as many CPUs as
 * processes, a contiguous block (the first ncpus % nprocs blocks one larger); with fewer, one
 * CPU each, round-robin, and *shared set. Writes out (room for ncpus entries); returns its
 * count (0 when ncpus or nprocs is 0). Pure. */
size_t zlb_procs_cpus(const int *cpus, size_t ncpus, uint32_t nprocs, uint32_t index, int *out,
                      bool *shared);

/* ---- live values (stages, PATCH /run, pause) split over the processes ------------------------ */

/** Process `index` of `count`'s exact share of the whole run's live values for a `type`
 * workload: connections, connect_rate, close_rate and a whole-run workload rate split by
 * zlb_config_apply_shard's rule (zlb_config_shard_values: remainders to the first processes,
 * whole-number rates as integers), so that the shares add up to `whole`; everything else
 * (paused, a stream's per-connection rate) as it is. Pure. */
void zlb_procs_live_share(zlb_work_type_t type, const zlb_work_live_t *whole, uint32_t index,
                          uint32_t count, zlb_work_live_t *out);

/* Parent -> child commands: one byte each, except a live-values frame: ZLB_PROCS_CMD_LIVE, a
 * version byte, a u16 payload length, the payload (a zlb_work_live_t image: same build on both
 * sides). A child reads them into a fixed buffer: no allocation per command. */
#define ZLB_PROCS_CMD_LIVE 'V'
#define ZLB_PROCS_LIVE_VERSION 1
#define ZLB_PROCS_CMD_PAYLOAD_MAX 256 /* the longest payload a child accepts */
#define ZLB_PROCS_CMD_FRAME_MAX (4 + ZLB_PROCS_CMD_PAYLOAD_MAX)

typedef struct zlb_procs_cmdbuf {
    uint8_t buf[2 * ZLB_PROCS_CMD_FRAME_MAX];
    size_t len;
} zlb_procs_cmdbuf_t;

/** Writes v's live-values frame to out (room for ZLB_PROCS_CMD_FRAME_MAX). Returns its length. */
size_t zlb_procs_live_encode(const zlb_work_live_t *v, uint8_t *out);
/** Takes the first whole command out of b: 1 with *cmd (and *live for ZLB_PROCS_CMD_LIVE),
 * 0 when b holds only part of one (read more), -EPROTO for an unknown command, version or
 * length (the stream cannot be read on). */
int zlb_procs_cmd_next(zlb_procs_cmdbuf_t *b, uint8_t *cmd, zlb_work_live_t *live);

/* ---- the snapshot wire format (child -> parent), for the module and its tests ---------------- */

typedef struct zlb_procs_bytes {
    uint8_t *data; /* owned */
    size_t len, cap;
} zlb_procs_bytes_t;

void zlb_procs_bytes_dispose(zlb_procs_bytes_t *b);

/** Allocates s for npollers pollers and ntargets targets (as zlb_work_snapshot_init does for an
 * engine). Release with zlb_work_snapshot_dispose. */
void zlb_procs_snapshot_alloc(zlb_work_snapshot_t *s, size_t npollers, size_t ntargets);

/** Replaces b's contents with s's exact image (counters, poller facts, histograms, per-target
 * counters, the scheduler's figures) and `idle`. Grows b only when it is too small: no
 * allocation in the steady state. Same build on both sides (structs are copied as bytes). */
void zlb_procs_encode(const zlb_work_snapshot_t *s, bool idle, zlb_procs_bytes_t *b);
/** Reads an image into s (allocated with the same npollers and ntargets; total recomputed as the
 * sum of the pollers). 0, or -EINVAL when it is truncated, inconsistent or of another shape. */
int zlb_procs_decode(const uint8_t *p, size_t len, zlb_work_snapshot_t *s, bool *idle);

#endif
