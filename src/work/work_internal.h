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

/* Echo state, allocated with the slots' chunk and only for the echo workload. */
typedef struct zlb_work_echo {
    zlb_sendq_t sq;
    uint64_t intended_ns; /* when the outstanding (or next) message was meant to be sent */
    uint64_t received;    /* bytes of its echo read so far */
    bool outstanding;
} zlb_work_echo_t;

typedef enum {
    ZLB_SLOT_FREE,    /* on the worker's free list */
    ZLB_SLOT_QUEUED,  /* waiting on q_start or q_retry for its attempt */
    ZLB_SLOT_BACKOFF, /* timer running until it may retry */
    ZLB_SLOT_ACTIVE,  /* connection in flight or established */
} zlb_slot_phase_t;

/* One connection's place: allocated once, reused by every reconnect. */
typedef struct zlb_work_slot {
    zlb_conn_t conn;
    zlb_timer_t timer;     /* backoff, churn lifetime or the next echo message */
    zlb_list_t qnode;      /* free list or a start queue */
    uint64_t intended_ns;  /* intended start of the attempt it waits for */
    zlb_work_echo_t *echo; /* borrowed from the chunk; NULL unless echo */
    uint16_t target;
    uint8_t phase;
    uint8_t backoff_exp;
} zlb_work_slot_t;

/* Per-poller state. Everything but the atomics is touched only by its poller's thread (or by
 * the destroying thread once the pool has stopped). */
typedef struct zlb_worker {
    /* The engine's reference plus one per task of ours posted to the loop and not yet run:
     * tasks still queued when the pool stops are discarded only at pool destroy, after the
     * engine may be gone, and must find their memory. */
    _Atomic uint32_t refs;
    struct zlb_engine *e; /* borrowed */
    zlb_loop_t *loop;     /* borrowed */
    int id;
    zlb_net_ctx_t *net; /* owned */
    zlb_stats_t stats;
    zlb_counters_t *tc; /* per target, owned */
    int64_t *swrr;      /* smooth weighted round-robin current weights, owned */

    zlb_work_slot_t **chunks; /* owned array of owned chunks */
    zlb_work_echo_t **echo_chunks;
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
    int last_errno[ZLB_FAIL__COUNT];

    zlb_task_t close_task;
    zlb_task_t snap_task;
    uint64_t snap_gen;  /* the request the next snap_task run answers (under e->snap_mu) */
    uint64_t snap_done; /* the last request answered */

    /* Cross-thread, each on its own line so the poller's writes do not bounce the rest. */
    _Alignas(64) _Atomic uint64_t busy;     /* open + in_flight, for zlb_engine_idle */
    _Alignas(64) _Atomic uint64_t consumed; /* batches taken by the poller */
    _Atomic bool close_queued;
    _Atomic bool snap_queued;
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
} zlb_work_sched_t;

struct zlb_engine {
    const zlb_config_t *cfg;            /* borrowed */
    const zlb_engine_target_t *targets; /* borrowed */
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
    uint8_t *payload; /* echo message, immutable once created */
    size_t payload_len;
    int64_t swrr_total;
    zlb_work_sched_t sched;

    _Atomic bool stop_opening;
    _Atomic bool pool_stopped;
    _Atomic uint64_t backlog;
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
    zlb_engine_snapshot_t *snap_dst;
};

/* worker.c */
int zlb_worker_create(zlb_engine_t *e, int id, zlb_worker_t **out);
/** Closes sockets without the loop and frees all but the shell tasks may still point at. */
void zlb_worker_destroy(zlb_worker_t *w);
void zlb_worker_ref(zlb_worker_t *w);
void zlb_worker_unref(zlb_worker_t *w);
/** Copies the poller's statistics into the snapshot (poller thread, or any once stopped). */
void zlb_worker_copy_stats(zlb_worker_t *w, zlb_engine_snapshot_t *s);
/** Posts the close-all task (idempotent while one is queued). Any thread. */
void zlb_worker_post_close(zlb_worker_t *w);
/** The task run for each batch. */
void zlb_worker_batch_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded);

/* sched.c */
int zlb_sched_init(zlb_engine_t *e);
int zlb_sched_start(zlb_engine_t *e);
void zlb_sched_dispose(zlb_engine_t *e);
/** Offset of attempt i's intended time from the schedule's start, in ns. */
uint64_t zlb_sched_offset_ns(const zlb_work_sched_t *s, uint64_t i);
/** Attempts whose intended time is <= t ns after the start (capped by the total). */
uint64_t zlb_sched_due(const zlb_work_sched_t *s, uint64_t t_ns);

#endif
