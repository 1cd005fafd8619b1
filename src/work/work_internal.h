/* work_internal.h -- the engine's structures, shared by its sources and tests. */
#ifndef ZLB_WORK_INTERNAL_H
#define ZLB_WORK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "net/net.h"
#include "work/work.h"

#define ZLB_WORK_BATCH_MAX 64 /* intended times per batch task */
/* Batches in flight per poller. A loop runs every queued task in one iteration, so this also
 * caps the connect() calls between two looks at the sockets' events (late in a big run, with
 * the kernel's port search, one connect() can cost half a millisecond). */
#define ZLB_WORK_RING_LEN 8
#define ZLB_WORK_CHUNK_SLOTS 1024 /* connection slots allocated at a time */
#define ZLB_WORK_SCHED_TICK_NS ZLB_NS_PER_MS
/* The scheduler hands attempts out this far ahead of their intended times and each poller starts
 * them on its own timer, so neither the scheduler's tick nor its thread being descheduled for a
 * few milliseconds shows up as schedule lag: only a poller that is really behind does. */
#define ZLB_WORK_SCHED_LOOKAHEAD_NS (5 * ZLB_NS_PER_MS)

/* A run of attempts handed from the scheduler to one poller: a task with inline intended times,
 * one of a ring preallocated per poller, so issuing attempts allocates nothing. */
typedef struct zlb_work_batch {
    zlb_task_t task;
    struct zlb_worker *w;
    uint32_t n;
    uint64_t t[ZLB_WORK_BATCH_MAX]; /* intended start times, monotonic ns */
} zlb_work_batch_t;

typedef enum {
    ZLB_SLOT_FREE,    /* on the worker's free list */
    ZLB_SLOT_QUEUED,  /* waiting on q_start or q_retry for its attempt */
    ZLB_SLOT_BACKOFF, /* timer running until it may retry */
    ZLB_SLOT_ACTIVE,  /* connection in flight or established */
} zlb_slot_phase_t;

/* One connection's place: allocated once, reused by every reconnect. */
typedef struct zlb_work_slot {
    zlb_conn_t conn;
    zlb_timer_t timer;    /* backoff, else the workload's (zlb_workload_ops_t.timer) */
    zlb_list_t qnode;     /* free list or a start queue */
    uint64_t intended_ns; /* intended start of the attempt it waits for */
    void *ws;             /* the workload's state, borrowed from the chunk; NULL if it has none */
    uint16_t target;
    uint8_t phase;
    uint8_t backoff_exp;
    bool reopen; /* zlb_wl_reopen: the successor is due at intended_ns, no backoff */
} zlb_work_slot_t;

/* Per-poller state. Everything but the atomics is touched only by its poller's thread (or by
 * the destroying thread once the pool has stopped). */
typedef struct zlb_worker {
    /* The engine's reference plus one per task of ours posted to the loop and not yet run:
     * tasks still queued when the pool stops are discarded only at pool destroy, after the
     * engine may be gone, and must find their memory. */
    _Atomic uint32_t refs;
    struct zlb_work *e; /* borrowed */
    zlb_loop_t *loop;   /* borrowed */
    int id;
    zlb_net_ctx_t *net; /* owned */
    zlb_stats_t stats;
    zlb_counters_t *tc; /* per target, owned */
    int64_t *swrr;      /* smooth weighted round-robin current weights, owned */

    zlb_work_slot_t **chunks;    /* owned array of owned chunks */
    void **ws_chunks;            /* per chunk, the workloads' state (NULL when it has none) */
    zlb_tls_conn_t **tls_chunks; /* per chunk, only when a target speaks TLS */
    size_t nchunks, chunks_cap;
    zlb_list_t free_slots;

    zlb_list_t q_sched; /* scheduled attempts, in intended-time order, some in the future */
    zlb_list_t q_start; /* churn reopenings: gated by the pause */
    zlb_list_t q_retry; /* retries after backoff: gated by the pause and the token bucket */
    zlb_timer_t gate;   /* wakes the queues when the pause ends or a token is due */
    uint64_t pause_until, pause_ns;
    double tokens, token_rate, token_burst;
    uint64_t tokens_at;
    uint64_t rng;
    bool closing;
    bool first_attempt_seen;
    bool ramp_seen_done;

    /* Live values (zlb_work_steer), the poller's own copy: set by steer_task only. */
    zlb_work_live_t live;
    uint64_t wl_gap_ns; /* an open-loop workload's per-connection interval (its set_rate) */
    zlb_task_t steer_task;
    zlb_timer_t shed_timer; /* closes connections owed to a lowered target, at close_rate */
    size_t shed_cursor;     /* where the last look for one to close stopped */
    double shed_tokens;
    uint64_t shed_at;

    zlb_task_t close_task;
    zlb_task_t snap_task;
    uint64_t snap_gen;  /* the request the next snap_task run answers (under e->snap_mu) */
    uint64_t snap_done; /* the last request answered */

    /* Cross-thread, each on its own line so the poller's writes do not bounce the rest. */
    _Alignas(64) _Atomic uint64_t busy;     /* open + in_flight, for zlb_work_idle */
    _Alignas(64) _Atomic uint64_t consumed; /* batches taken by the poller */
    /* "This embedded task is queued": the task clears it (release) after the loop has unlinked
     * its node, and a poster sets it (acq_rel) before linking the node again, so the relink never
     * races the unlink (TSan caught it with relaxed order on the steer task). */
    _Atomic bool close_queued;
    _Atomic bool snap_queued;
    _Atomic bool steer_queued;
    /* Connections this poller owes a lowered target: added by the scheduler, taken back by it
     * on a raise, counted down here for each one given up. Cold: touched per change and per
     * connection given up only. */
    _Alignas(64) _Atomic int64_t shed;
    _Alignas(64) zlb_work_batch_t ring[ZLB_WORK_RING_LEN];
} zlb_worker_t;

/* The scheduler thread's own state; only that thread touches it once started. */
typedef struct zlb_work_sched {
    zlb_loop_t *loop; /* owned */
    pthread_t thread;
    bool thread_started;
    zlb_task_t start_task;
    zlb_timer_t tick;
    uint64_t t0;
    uint64_t issued, total;
    double rate, start_rate, ramp_s, ramp_n; /* rate 0: unlimited */
    uint64_t *produced;                      /* per poller: batches posted */
    zlb_work_batch_t **open;                 /* per poller: the batch being filled, or NULL */
    int next_poller;
    /* Live changes (zlb_work_steer): after the first, the schedule is a segment at a constant
     * rate: attempt seg_i is due seg_t_s after t0, the next ones 1/rate apart. */
    zlb_task_t steer_task;
    bool started, paused, rebased;
    double seg_t_s;
    uint64_t seg_i;
} zlb_work_sched_t;

struct zlb_work {
    const zlb_config_t *cfg;          /* borrowed */
    const zlb_work_target_t *targets; /* borrowed */
    size_t ntargets;
    zlb_pool_t *pool; /* borrowed */
    int npollers;
    zlb_worker_t **workers;
    zlb_resolver_t *resolver; /* owned, NULL when every target is an IP literal */
    zlb_net_sockopts_t sockopts;
    zlb_net_addr_t *sources;
    size_t nsources;
    zlb_net_dest_spec_t *dests;
    zlb_tls_client_t **tls; /* ntargets entries, owned; NULL for plain targets */
    bool any_tls;
    const struct zlb_workload_ops *wl; /* the workload (workload.c's registry) */
    void *wl_data;                     /* its engine-wide data (ops->init), immutable once made */
    size_t ws_size;                    /* bytes of workload state per slot, 16-aligned */
    int64_t swrr_total;
    zlb_work_sched_t sched;

    _Atomic bool stop_opening;
    _Atomic uint64_t backlog;

    /* Live values. `live` is the controller's copy; `pub` what the scheduler and the pollers
     * read in their steer tasks, with the connections the scheduler still has to add or cancel
     * (sched_delta), under steer_mu (taken on the cold path only). */
    zlb_work_live_t live;
    pthread_mutex_t steer_mu;
    zlb_work_live_t pub;
    int64_t sched_delta;
    _Atomic bool sched_steer_queued;
    _Atomic uint64_t first_attempt_ns;
    _Atomic uint64_t target_reached_ns;
    /* The one shared counter on the connection path, and only until the target is first
     * reached: after ramp_done is set nobody touches ramp_open again. */
    _Atomic uint64_t ramp_open;
    _Atomic bool ramp_done;

    pthread_mutex_t snap_call; /* one snapshot at a time */
    pthread_mutex_t snap_mu;   /* requester side; pollers take it only in the snapshot task */
    pthread_cond_t snap_cv;
    uint64_t snap_gen;
    size_t snap_count;
    zlb_work_snapshot_t *snap_dst;
};

/* ---- the workload seam ---------------------------------------------------------------------
 *
 * The worker (worker.c) owns slots, attempts, reconnects, the schedule and the connection
 * counters; a workload (one file each, registered in workload.c) owns what happens on an
 * established connection. The worker calls the ops below on the poller's thread; a workload acts
 * through the zlb_wl_* services further down and knows nothing of queues or attempts. A new
 * workload touches its own file, a line in workload.c, its config keys and its report section. */

/* How an established connection ended, as counted. */
typedef enum { ZLB_END_BY_US, ZLB_END_BY_PEER, ZLB_END_FAILED } zlb_work_end_t;

typedef struct zlb_workload_ops {
    const char *name;
    /* Reopens after every end, whatever workload.reconnect says (churn). */
    bool always_reconnect;
    /* Connections carry traffic all the time: TLS keeps its buffers (see net.h). */
    bool busy_traffic;
    /* TLS offers this ALPN protocol when the target's config names none (NULL: none). */
    const char *alpn;
    /** Engine-wide data made once before the run (a message, prebuilt requests), stored in
     * e->wl_data; and the bytes of state each slot needs (0: none). 0 or -errno with a log
     * line. NULL: nothing to make, no state. */
    int (*init)(zlb_work_t *e, size_t *state_size);
    void (*dispose)(zlb_work_t *e);
    /** Once per slot, when its chunk is made (state zeroed): returns the connection's send
     * queue (inside the state), or NULL for a workload that never writes. */
    zlb_sendq_t *(*slot_init)(zlb_work_t *e, zlb_work_slot_t *s);
    /** The connection is established (counted already). */
    void (*established)(zlb_worker_t *w, zlb_work_slot_t *s);
    /** Bytes arrived (buf valid during the call only). */
    void (*data)(zlb_worker_t *w, zlb_work_slot_t *s, const uint8_t *buf, size_t n);
    /** n bytes went to the kernel: the send queue has room again. May be NULL. */
    void (*sent)(zlb_worker_t *w, zlb_work_slot_t *s, size_t n);
    /** The slot's timer (zlb_wl_timer_at) fired; due is when it was set for. */
    void (*timer)(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns);
    /** The connection ended by the peer or a failure (k, why: as it would be counted), or by
     * our close_all (ZLB_END_BY_US). Returns how to count it: a workload that was still owed a
     * reply turns a clean close by the peer into a failure. May be NULL (counted as k). */
    zlb_work_end_t (*closed)(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                             zlb_fail_t *why);
    /** The live whole-run rate (rate) or w->live.connections changed: re-derive the
     * per-connection schedule (an open-loop workload; rate 0 sends nothing). Connections whose
     * next send is further off than the new interval should be brought forward
     * (zlb_wl_each_established), so a change shows within one stats interval. May be NULL. */
    void (*set_rate)(zlb_worker_t *w, double rate);
    /** Pause (paused true: send nothing from now on, connections stay open) or resume. The
     * workload documents what happens to what fell due in the pause. w->live.paused is already
     * set. May be NULL (the workload never sends on its own). */
    void (*pause)(zlb_worker_t *w, bool paused);
    /** True when the connection has work outstanding (a request in flight): lowering the
     * connections closes idle ones first. May be NULL (all idle). */
    bool (*busy)(zlb_worker_t *w, zlb_work_slot_t *s);
} zlb_workload_ops_t;

/* workload.c: the registry, indexed by zlb_work_type_t. */
const zlb_workload_ops_t *zlb_workload_ops(zlb_work_type_t type);

/* Services for workloads (worker.c), poller thread. After zlb_wl_fail, zlb_wl_close or a
 * zlb_wl_send that failed, the slot belongs to the worker again: return at once. */
/** Fails the established connection (counted failed_after[why]) and reconnects per policy. */
void zlb_wl_fail(zlb_worker_t *w, zlb_work_slot_t *s, zlb_fail_t why);
/** Closes the established connection by our decision and queues its successor, due at due_ns
 * (an attempt's intended start: a poller running late shows it as schedule lag). */
void zlb_wl_close(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns);
/** zlb_conn_send, with a failure counted and the connection failed (then returns < 0). */
int zlb_wl_send(zlb_worker_t *w, zlb_work_slot_t *s, const void *buf, size_t len);
/** Asks that the connection, when its end comes (the peer's close the workload expected), be
 * followed by a successor due at due_ns, without the reconnect backoff. */
void zlb_wl_reopen(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns);
/** A pseudo-random number (xorshift64*), per poller: jitter and weighted choices. */
uint64_t zlb_wl_rand(zlb_worker_t *w);
/** Arms the slot's timer for the workload (replacing any). */
void zlb_wl_timer_at(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t when_ns);
/** Calls fn for each established connection of this poller (cold path: a rate change, a
 * resume; a walk over every slot). fn may close or fail the connection it is given. */
void zlb_wl_each_established(zlb_worker_t *w, void (*fn)(zlb_worker_t *w, zlb_work_slot_t *s));
/* Open-loop pacing shared by the http and message workloads (their set_rate and resume). */
/** The poller's per-connection interval for a whole-run rate shared by its live connections,
 * into w->wl_gap_ns (0: rate 0, nothing is due). */
void zlb_wl_pace_set_rate(zlb_worker_t *w, double rate);
/** A new interval (or the resume) for one connection whose schedule is *gap_ns and *next_ns:
 * unless it is behind (queued sends follow the old interval until its queue is empty), it takes
 * w->wl_gap_ns and starts again at a random phase when its next send is further off than that,
 * or nothing is armed. */
void zlb_wl_pace_rephase(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t *gap_ns, uint64_t *next_ns,
                         uint32_t queued);
/* wl_stream.c: a stream's pacing schedule, pure (tested apart). Tick k (k = 0, 1, ...) releases
 * one piece at t0 + k * tick_ns. */
typedef struct zlb_stream_pace {
    uint64_t piece; /* bytes per tick; 0: unpaced (as fast as the socket takes) */
    double tick_ns;
} zlb_stream_pace_t;
/** The schedule of `rate` bytes/s (0: unpaced) sent from chunks of chunk_len bytes: pieces of
 * rate / 50 bytes, at least 1448 (a segment), at most a chunk. */
void zlb_stream_pace_of(double rate, size_t chunk_len, zlb_stream_pace_t *out);
/** Bytes the paced schedule from t0 has released by now (0 before t0). */
int64_t zlb_stream_released(const zlb_stream_pace_t *p, uint64_t t0, uint64_t now);
/** When the tick that releases bytes beyond `queued` is due (t0 while bytes are owed). */
uint64_t zlb_stream_due(const zlb_stream_pace_t *p, uint64_t t0, int64_t queued);
/** Re-times a connection's schedule (*t0, *queued: bytes queued on its count) at `now` from
 * `from` to `to`. From a paced schedule: what it released by now stays released (*queued
 * becomes minus what is still owed), none more at once, and the next piece comes once the part
 * of `from`'s current piece not yet due would have gone out at `to`'s rate (at most 1 s or one
 * tick of `to`): the bytes follow the integral of the rates however often they change. From none
 * (NULL or unpaced: a change from 0, or a resume): afresh, the first piece at now + phase_ns. To
 * unpaced: unchanged. */
void zlb_stream_retime(const zlb_stream_pace_t *from, const zlb_stream_pace_t *to, uint64_t now,
                       uint64_t phase_ns, uint64_t *t0, int64_t *queued);
/** True while the run is paused: send nothing. */
static inline bool zlb_wl_paused(const zlb_worker_t *w)
{
    return w->live.paused;
}
/** Counter pointers of the whole poller and the slot's target, for workload counters. */
static inline void zlb_wl_counters(zlb_worker_t *w, zlb_work_slot_t *s, zlb_counters_t *c[2])
{
    c[0] = &w->stats.c;
    c[1] = &w->tc[s->target];
}

/* worker.c */
/** Publishes open + in_flight for zlb_work_idle (poller thread; on every count change). */
static inline void zlb_worker_publish_busy(zlb_worker_t *w)
{
    atomic_store_explicit(&w->busy, w->stats.c.open + w->stats.c.in_flight, memory_order_relaxed);
}
/* Shared with live.c, poller thread: */
/** Returns a slot that holds no connection to the free list. */
void zlb_worker_slot_free(zlb_worker_t *w, zlb_work_slot_t *s);
/** Takes one unit of the poller's share of connections to shed, if any is owed. */
bool zlb_worker_take_debt(zlb_worker_t *w);
/** Starts queued attempts as far as the pause and the token bucket allow. */
void zlb_worker_drain(zlb_worker_t *w);
/** Closes an established connection, counted as k (why for a failure). */
void zlb_worker_close_established(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                                  zlb_fail_t why);
int zlb_worker_create(zlb_work_t *e, int id, zlb_worker_t **out);
/** Closes sockets without the loop and frees all but the shell tasks may still point at. */
void zlb_worker_destroy(zlb_worker_t *w);
void zlb_worker_ref(zlb_worker_t *w);
void zlb_worker_unref(zlb_worker_t *w);
/** Copies the poller's statistics into the snapshot (poller thread, or any once stopped). */
void zlb_worker_copy_stats(zlb_worker_t *w, zlb_work_snapshot_t *s);
/** Posts the close-all task (idempotent while one is queued). Any thread. */
void zlb_worker_post_close(zlb_worker_t *w);
/** Posts the steer task: the poller takes e->pub (idempotent while one is queued). Any thread. */
void zlb_worker_post_steer(zlb_worker_t *w);
/** The task run for each batch. */
void zlb_worker_batch_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded);

/* live.c: the steer task, the shedding timer and the connect token bucket's rate. */
void zlb_worker_steer_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded);
void zlb_worker_shed_fired(zlb_loop_t *loop, zlb_timer_t *t);
void zlb_worker_set_token_rate(zlb_worker_t *w, double connect_rate);

/* sched.c */
int zlb_sched_init(zlb_work_t *e);
int zlb_sched_start(zlb_work_t *e);
void zlb_sched_dispose(zlb_work_t *e);
/** Offset of attempt i's intended time from the schedule's start, in ns. */
uint64_t zlb_sched_offset_ns(const zlb_work_sched_t *s, uint64_t i);
/** Attempts whose intended time is <= t ns after the start (capped by the total). */
uint64_t zlb_sched_due(const zlb_work_sched_t *s, uint64_t t_ns);
/** Starts a new segment at t_ns (after t0) at rate (0: unlimited): the next attempt (number
 * `issued`) keeps the part of its wait already done, so a rate set again and again does not
 * issue early. Pure: the schedule's arithmetic. */
void zlb_sched_rebase(zlb_work_sched_t *s, uint64_t t_ns, double rate);
/** Posts the scheduler's steer task (idempotent while one is queued). */
void zlb_sched_post_steer(zlb_work_t *e);

#endif
