/* loop.h -- the event loop ("poller") and the pool of pinned poller threads. */
#ifndef ZLB_LOOP_H
#define ZLB_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "core/core.h"

typedef struct zlb_loop zlb_loop_t;

/* ---- fd watchers ---------------------------------------------------------------------------- */

typedef struct zlb_watcher zlb_watcher_t;
/** Called on the loop's thread with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLERR, ...). */
typedef void (*zlb_watcher_cb)(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events);

/* Embedded in its owner (a connection, a listener); epoll_data.ptr points at it, so dispatch is
 * one indirect call with no lookup. The owner's memory must stay valid until the watcher is
 * removed; removal also drops any event for it still pending in the current batch. */
struct zlb_watcher {
    int fd;
    uint32_t events; /* the interest currently registered (EPOLLET is added by the loop) */
    zlb_watcher_cb cb;
    bool registered;
};

/** Prepares a watcher for fd. Does not register it. */
void zlb_watcher_init(zlb_watcher_t *w, int fd, zlb_watcher_cb cb);
/** Registers w with interest `events` (edge-triggered). Loop thread only. 0 or -errno. */
int zlb_loop_watch(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events);
/** Changes the interest; a no-op (no syscall) when it is unchanged. Loop thread only. */
int zlb_loop_rewatch(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events);
/** Unregisters w and invalidates its events still queued in the current batch, so the caller
 * may close the fd and reuse or free the owner right away. Loop thread only. 0 or -errno. */
int zlb_loop_unwatch(zlb_loop_t *loop, zlb_watcher_t *w);

/* ---- cross-thread tasks --------------------------------------------------------------------- */

typedef struct zlb_task zlb_task_t;
/** Runs on the loop's thread. `discarded` is true when the loop was destroyed before the task
 * could run: the callback must then only release what the task owns. */
typedef void (*zlb_task_cb)(zlb_loop_t *loop, zlb_task_t *task, bool discarded);

/* Embedded in the poster's memory: posting allocates nothing. A task may be posted again once
 * its callback has started. */
struct zlb_task {
    zlb_list_t node;
    zlb_task_cb cb;
};

static inline void zlb_task_init(zlb_task_t *t, zlb_task_cb cb)
{
    zlb_list_init(&t->node);
    t->cb = cb;
}

/** Appends the task to the loop's queue. Any thread. The eventfd is written only when the queue
 * goes from empty to non-empty, so a burst of posts costs one wake-up. Never fails. */
void zlb_loop_post(zlb_loop_t *loop, zlb_task_t *task);
/** Like zlb_loop_post, but the task runs before those already queued. */
void zlb_loop_post_first(zlb_loop_t *loop, zlb_task_t *task);
/** Runs the task inline when called on the loop's own thread, else posts it (tail). */
void zlb_loop_run_or_post(zlb_loop_t *loop, zlb_task_t *task);

typedef void (*zlb_fn_cb)(zlb_loop_t *loop, void *arg, bool discarded);
/** Convenience for cold paths (snapshots, control): allocates a task carrying fn(arg). */
void zlb_loop_post_fn(zlb_loop_t *loop, zlb_fn_cb fn, void *arg);

/* ---- timers ------------------------------------------------------------------------------- */

typedef struct zlb_timer zlb_timer_t;
/** Called on the loop's thread. The callback may stop, restart or free its own timer. */
typedef void (*zlb_timer_cb)(zlb_loop_t *loop, zlb_timer_t *t);

struct zlb_timer {
    zlb_heap_node_t node; /* node.key is the deadline in monotonic ns */
    uint64_t period_ns;   /* 0: one-shot */
    zlb_timer_cb cb;
};

void zlb_timer_init(zlb_timer_t *t, zlb_timer_cb cb);
/** Arms t to fire `delay_ns` after the loop's current time, then every period_ns if non-zero
 * (fixed rate: deadline += period, so repeats do not drift). Re-arms if already active.
 * Loop thread only. O(log n). */
void zlb_timer_start(zlb_loop_t *loop, zlb_timer_t *t, uint64_t delay_ns, uint64_t period_ns);
/** Same with an absolute monotonic deadline. */
void zlb_timer_start_at(zlb_loop_t *loop, zlb_timer_t *t, uint64_t deadline_ns, uint64_t period_ns);
/** Disarms t; safe when inactive and from inside any callback. Loop thread only. O(log n). */
void zlb_timer_stop(zlb_loop_t *loop, zlb_timer_t *t);
static inline bool zlb_timer_active(const zlb_timer_t *t)
{
    return zlb_heap_node_linked(&t->node);
}

/* ---- the loop -------------------------------------------------------------------------------- */

typedef struct zlb_loop_opts {
    int id;                       /* shown in reports and the thread name */
    uint64_t load_window_ns;      /* load averaging window, default 1 s */
    uint32_t max_events;          /* per epoll_wait, default 1024 */
    uint32_t max_timers_per_iter; /* default 4096: a timer storm cannot starve I/O */
} zlb_loop_opts_t;

/** Creates a loop (epoll fd, eventfd). opts may be NULL. Returns 0 or -errno. Any thread. */
int zlb_loop_create(const zlb_loop_opts_t *opts, zlb_loop_t **out);
/** Runs the loop on the calling thread until zlb_loop_stop. Returns 0. */
int zlb_loop_run(zlb_loop_t *loop);
/** Asks the loop to return from zlb_loop_run after its current batch. Any thread. */
void zlb_loop_stop(zlb_loop_t *loop);
/** Frees the loop. Tasks still queued are called with discarded=true and counted. The loop must
 * not be running. Accepts NULL. */
void zlb_loop_destroy(zlb_loop_t *loop);

/** The loop's cached monotonic time, read once per iteration. Loop thread only. */
uint64_t zlb_loop_now(const zlb_loop_t *loop);
/** Refreshes and returns the cached time (for latency stamps that must be exact). */
uint64_t zlb_loop_update_time(zlb_loop_t *loop);
/** True while a thread is inside zlb_loop_run. Once it reads false (acquire), everything the
 * loop's thread wrote before returning is visible to the caller. Any thread. */
bool zlb_loop_running(const zlb_loop_t *loop);
/** The time the current batch's epoll_wait returned: when the kernel's events were seen, before
 * this iteration's callbacks added their own time. Loop thread only. */
uint64_t zlb_loop_event_time(const zlb_loop_t *loop);
/** True on the loop's own thread. */
bool zlb_loop_on_thread(const zlb_loop_t *loop);
/** The loop running on the calling thread, or NULL. */
zlb_loop_t *zlb_loop_current(void);
int zlb_loop_id(const zlb_loop_t *loop);
/** Per-loop user data (the work layer hangs its per-poller state here). */
void zlb_loop_set_data(zlb_loop_t *loop, void *data);
void *zlb_loop_data(const zlb_loop_t *loop);

/* Published by the loop once per iteration with relaxed stores (single writer, no RMW), read
 * by any thread without a lock. */
typedef struct zlb_loop_stats {
    double load_pct;      /* busy share of the last load window, 0..100 */
    double cpu_pct;       /* thread CPU time over the same window, 0..100 */
    uint64_t cpu_time_ns; /* thread CPU time since start */
    uint64_t lag_last_ns; /* how late the last timer fired */
    uint64_t lag_max_ns;  /* worst since start */
    uint64_t events;      /* fd events dispatched */
    uint64_t tasks;       /* tasks run */
    uint64_t tasks_discarded;
    uint64_t timers; /* timer callbacks run */
    uint64_t iterations;
    uint64_t wakeups; /* eventfd writes by posters (one per burst) */
} zlb_loop_stats_t;

/** Copies the published statistics. Any thread. */
void zlb_loop_read_stats(const zlb_loop_t *loop, zlb_loop_stats_t *out);
/** Resets lag_max (e.g. at the end of warm-up). Any thread. */
void zlb_loop_reset_lag_max(zlb_loop_t *loop);

/* ---- the pool -------------------------------------------------------------------------------- */

typedef enum { ZLB_PRIO_NORMAL, ZLB_PRIO_HIGH, ZLB_PRIO_REALTIME } zlb_priority_t;
typedef enum { ZLB_SELECT_LEAST_LOADED, ZLB_SELECT_ROUND_ROBIN } zlb_select_t;

typedef struct zlb_pool_opts {
    int count;         /* 0: CPUs in the process's affinity mask */
    bool cpu_affinity; /* pin each poller to one allowed CPU */
    const int *cpus;   /* optional explicit CPU list (borrowed), ncpus entries */
    int ncpus;
    zlb_priority_t priority;
    int nice;        /* for HIGH, e.g. -10 */
    int rt_policy;   /* for REALTIME: SCHED_FIFO or SCHED_RR */
    int rt_priority; /* for REALTIME: 1..99, explicit */
    zlb_select_t select;
    bool prefer_current; /* selection from a poller thread returns that poller */
    uint64_t load_window_ns;
} zlb_pool_opts_t;

/** What one poller actually got, read back from the kernel after start. */
typedef struct zlb_poller_info {
    int id;
    int cpu;           /* pinned CPU, -1 when not pinned */
    char policy[16];   /* "other", "fifo", "rr" as read back */
    int priority;      /* nice value for "other", rt priority otherwise */
    char warning[160]; /* why the requested pinning/priority was not applied, or "" */
    int tid;           /* the thread's id (gettid), for /proc/self/task/TID */
    /* From the kernel's schedstat at the time of zlb_pool_info, cumulative; UINT64_MAX when the
     * kernel does not say (no CONFIG_SCHED_INFO). Once the thread has exited, the last values
     * read. */
    uint64_t run_ns;       /* time on a CPU */
    uint64_t runq_wait_ns; /* time runnable but waiting for a CPU */
    zlb_loop_stats_t stats;
} zlb_poller_info_t;

typedef struct zlb_pool zlb_pool_t;

/** Fills opts with defaults (count 0, affinity on, normal priority, least-loaded, prefer
 * current, 1 s window). */
void zlb_pool_opts_default(zlb_pool_opts_t *opts);
/** Creates the loops and starts one thread each ("zlb-poller-N"), all released together by a
 * barrier after pinning and priority are applied. Returns 0 or -errno. */
int zlb_pool_create(const zlb_pool_opts_t *opts, zlb_pool_t **out);
int zlb_pool_size(const zlb_pool_t *pool);
zlb_loop_t *zlb_pool_loop(const zlb_pool_t *pool, int i);
/** Picks a poller for new work: the current poller if prefer_current and called from one;
 * else least load with rotation (ties go round-robin) or plain round-robin. Any thread. */
zlb_loop_t *zlb_pool_select(zlb_pool_t *pool);
/** Fills info[0..size) with what each poller got and its current stats, and reads each thread's
 * CPU and run-queue times from /proc/self/task/TID/schedstat (a file read per poller: call it
 * from a controller thread, never from a poller). Any thread. */
void zlb_pool_info(const zlb_pool_t *pool, zlb_poller_info_t *info);
/** Stops every loop and joins the threads. Idempotent; accepts NULL. */
void zlb_pool_stop(zlb_pool_t *pool);
/** Stops if needed, destroys the loops (discarding queued tasks), frees. Accepts NULL. */
void zlb_pool_destroy(zlb_pool_t *pool);
/** Number of CPUs in the process's affinity mask. */
int zlb_cpus_allowed(void);

#endif
