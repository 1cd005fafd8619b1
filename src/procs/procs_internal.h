/* procs_internal.h -- the parent/child protocol, shared by the module's files only. */
#ifndef ZLB_PROCS_INTERNAL_H
#define ZLB_PROCS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Child -> parent: frames of [u32 length of what follows][u8 type][payload]. */
enum {
    ZLB_PROCS_HELLO = 1, /* u64 npollers, u64 ntargets: set-up done, waiting for START */
    ZLB_PROCS_SNAP = 2,  /* a zlb_procs_encode image */
    ZLB_PROCS_FINAL = 3, /* the image after the pollers stopped; the child exits next */
    ZLB_PROCS_FRESH = 4, /* a SNAP image taken on ZLB_PROCS_CMD_SNAP_NOW: one per ask, in order */
};

/* Parent -> child: one byte each; and ZLB_PROCS_CMD_LIVE's frame (procs.h). */
enum {
    ZLB_PROCS_CMD_START = 'S',
    ZLB_PROCS_CMD_STOP_OPENING = 'O',
    ZLB_PROCS_CMD_CLOSE_ALL = 'C',
    ZLB_PROCS_CMD_RESET_LAG = 'L',
    ZLB_PROCS_CMD_FINISH = 'F',
    ZLB_PROCS_CMD_SNAP_NOW = 'P', /* push a snapshot now (a ZLB_PROCS_FRESH frame) */
};

/* A child pushes its snapshot at the run controller's tick, so the parent's phases (ramp end,
 * drain) see what one process would. */
#define ZLB_PROCS_TICK_NS (100 * ZLB_NS_PER_MS)

/** Writes all n bytes to a blocking fd (EINTR retried). 0 or -errno. */
int zlb_procs_write_all(int fd, const void *p, size_t n);
/** Sends one frame. 0 or -errno. */
int zlb_procs_send(int fd, uint8_t type, const void *payload, size_t n);

/** The child's whole life after fork: shard index of count, pinned to cpus[0..ncpus), talking
 * to the parent on fd. Never returns (_exit). */
_Noreturn void zlb_procs_child(zlb_config_t *cfg, uint32_t index, uint32_t count, int fd,
                               const int *cpus, size_t ncpus, pid_t parent);

#endif
