/* loop.c -- the event loop: edge-triggered epoll, cross-thread tasks, heap timers, load. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop_internal.h"

#define DEFAULT_MAX_EVENTS 1024u
#define MAX_MAX_EVENTS (1u << 20)
#define DEFAULT_MAX_TIMERS 4096u
#define DEFAULT_LOAD_WINDOW_NS ZLB_NS_PER_SEC
#define LOAD_BUCKETS 10
#define LOAD_MARKS (LOAD_BUCKETS + 1) /* 10 buckets lie between 11 boundary marks */
#define TIMER_RESERVE 64
#define CACHE_LINE 64

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define HAVE_EPOLL_PWAIT2 1
#endif

/* State of the thread's CPU clock and of the sleep total at one bucket boundary. */
typedef struct {
    uint64_t t;
    uint64_t slept;
    uint64_t cpu;
} load_mark_t;

struct zlb_loop {
    /* ---- loop thread only ---- */
    int epfd;
    int efd; /* eventfd: posters and zlb_loop_stop ring it */
    int id;
    uint32_t max_events;
    uint32_t max_timers;
    struct epoll_event *events; /* owned, max_events entries */
    int batch_n;                /* events of the batch being handled */
    int batch_next;             /* first of them not yet dispatched */
    bool woken;                 /* the eventfd fired in this iteration */
    uint64_t event_time;        /* when this iteration's epoll_wait returned */
    zlb_watcher_t wake;
    zlb_heap_t timers;
    uint64_t now;
    void *data;        /* borrowed */
    const void *owner; /* borrowed */

    uint64_t n_events, n_tasks, n_discarded, n_timers, n_iter;
    uint64_t lag_last, lag_max, lag_reset_seen;

    uint64_t bucket_ns;
    uint64_t next_boundary;
    uint64_t sleep_total; /* ns spent inside epoll_wait since load_start */
    load_mark_t marks[LOAD_MARKS];
    unsigned mark_head, mark_count;
    bool load_started;

    atomic_bool running;
    atomic_bool stop;

    /* ---- shared with posters: on its own cache line so that posting does not bounce the
     * loop's private state between cores ---- */
    _Alignas(CACHE_LINE) pthread_mutex_t task_mu;
    zlb_list_t tasks;          /* guarded by task_mu */
    atomic_bool tasks_pending; /* written under task_mu, read without it as a hint */
    _Atomic uint64_t wakeups;

    /* ---- published by the loop (single writer, relaxed stores), read by anyone ---- */
    _Alignas(CACHE_LINE) struct {
        _Atomic uint64_t load_bits; /* double */
        _Atomic uint64_t cpu_bits;  /* double */
        _Atomic uint64_t cpu_time;
        _Atomic uint64_t lag_last;
        _Atomic uint64_t lag_max;
        _Atomic uint64_t events;
        _Atomic uint64_t tasks;
        _Atomic uint64_t tasks_discarded;
        _Atomic uint64_t timers;
        _Atomic uint64_t iterations;
        _Atomic uint64_t lag_reset_gen; /* bumped by zlb_loop_reset_lag_max */
    } pub;
};

static _Thread_local zlb_loop_t *current_loop;

#ifdef HAVE_EPOLL_PWAIT2
/* Set once epoll_pwait2 turns out to be unavailable (old kernel, or a seccomp profile that
 * predates it and answers EPERM); from then on timeouts are rounded up to milliseconds. */
static atomic_bool pwait2_missing;
#endif

static inline void store_relaxed(_Atomic uint64_t *p, uint64_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline uint64_t load_relaxed(const _Atomic uint64_t *p)
{
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}

static inline uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static inline double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- watchers --------------------------------------------------------------------------- */

void zlb_watcher_init(zlb_watcher_t *w, int fd, zlb_watcher_cb cb)
{
    w->fd = fd;
    w->events = 0;
    w->cb = cb;
    w->registered = false;
}

int zlb_loop_watch(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    events &= ~(uint32_t)EPOLLET;
    if (w->registered)
        return zlb_loop_rewatch(loop, w, events);
    struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0)
        return -errno;
    w->events = events;
    w->registered = true;
    return 0;
}

int zlb_loop_rewatch(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    events &= ~(uint32_t)EPOLLET;
    if (!w->registered)
        return zlb_loop_watch(loop, w, events);
    /* Not only a saved syscall: EPOLL_CTL_MOD re-arms the edge, so a redundant MOD would report
     * a readiness the owner has already seen. */
    if (events == w->events)
        return 0;
    struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        return -errno;
    w->events = events;
    return 0;
}

/* epoll reports an fd at most once per wait, so one match is all there can be. */
static void invalidate_pending(zlb_loop_t *loop, const zlb_watcher_t *w)
{
    for (int i = loop->batch_next; i < loop->batch_n; i++) {
        if (loop->events[i].data.ptr == w) {
            loop->events[i].data.ptr = NULL;
            return;
        }
    }
}

int zlb_loop_unwatch(zlb_loop_t *loop, zlb_watcher_t *w)
{
    if (!w->registered)
        return 0;
    int err = epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0 ? -errno : 0;
    /* Even when DEL fails (fd already closed), the owner is about to go away: drop its events. */
    w->registered = false;
    w->events = 0;
    invalidate_pending(loop, w);
    return err;
}

/* ---- tasks -------------------------------------------------------------------------------- */

static void ring(zlb_loop_t *loop)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(loop->efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is saturated: the loop has a wake-up pending anyway. */
}

static void wake_cb(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    (void)events;
    uint64_t v;
    ssize_t n;
    do {
        n = read(w->fd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
    loop->woken = true;
}

static void post(zlb_loop_t *loop, zlb_task_t *task, bool first)
{
    pthread_mutex_lock(&loop->task_mu);
    if (first)
        zlb_list_push_front(&loop->tasks, &task->node);
    else
        zlb_list_push_back(&loop->tasks, &task->node);
    bool was_idle = !atomic_load_explicit(&loop->tasks_pending, memory_order_relaxed);
    if (was_idle)
        atomic_store_explicit(&loop->tasks_pending, true, memory_order_relaxed);
    pthread_mutex_unlock(&loop->task_mu);

    /* Only the post that made the queue non-empty rings; the loop's own thread never needs to,
     * since it looks at tasks_pending before it sleeps. */
    if (was_idle && current_loop != loop) {
        ring(loop);
        atomic_fetch_add_explicit(&loop->wakeups, 1, memory_order_relaxed);
    }
}

void zlb_loop_post(zlb_loop_t *loop, zlb_task_t *task)
{
    post(loop, task, false);
}

/* Successive post_first calls run in reverse order (each goes to the head), and a task can not
 * overtake the batch the loop has already taken out of the queue. */
void zlb_loop_post_first(zlb_loop_t *loop, zlb_task_t *task)
{
    post(loop, task, true);
}

void zlb_loop_run_or_post(zlb_loop_t *loop, zlb_task_t *task)
{
    if (current_loop == loop) {
        loop->n_tasks++;
        task->cb(loop, task, false);
        return;
    }
    post(loop, task, false);
}

typedef struct {
    zlb_task_t task;
    zlb_fn_cb fn;
    void *arg;
} fn_task_t;

static void fn_task_run(zlb_loop_t *loop, zlb_task_t *task, bool discarded)
{
    fn_task_t *f = ZLB_CONTAINER_OF(task, fn_task_t, task);
    f->fn(loop, f->arg, discarded);
    free(f);
}

void zlb_loop_post_fn(zlb_loop_t *loop, zlb_fn_cb fn, void *arg)
{
    fn_task_t *f = zlb_xmalloc(sizeof(*f));
    zlb_task_init(&f->task, fn_task_run);
    f->fn = fn;
    f->arg = arg;
    post(loop, &f->task, false);
}

/* The whole queue is taken in one critical section and run unlocked, so posters never wait
 * for a task to finish, and tasks posted meanwhile wait for the next iteration instead of
 * starving I/O. The lock is taken whenever the eventfd fired, whatever the hint says. */
static void run_tasks(zlb_loop_t *loop)
{
    if (!loop->woken && !atomic_load_explicit(&loop->tasks_pending, memory_order_relaxed))
        return;
    zlb_list_t batch;
    zlb_list_init(&batch);
    pthread_mutex_lock(&loop->task_mu);
    zlb_list_splice_back(&batch, &loop->tasks);
    atomic_store_explicit(&loop->tasks_pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&loop->task_mu);

    zlb_list_t *n;
    while ((n = zlb_list_pop_front(&batch)) != NULL) {
        zlb_task_t *t = ZLB_CONTAINER_OF(n, zlb_task_t, node);
        loop->n_tasks++;
        t->cb(loop, t, false);
    }
}

uint64_t zlb_loop_discard_tasks(zlb_loop_t *loop)
{
    uint64_t count = 0;
    for (;;) {
        zlb_list_t batch;
        zlb_list_init(&batch);
        pthread_mutex_lock(&loop->task_mu);
        zlb_list_splice_back(&batch, &loop->tasks);
        atomic_store_explicit(&loop->tasks_pending, false, memory_order_relaxed);
        pthread_mutex_unlock(&loop->task_mu);
        if (zlb_list_empty(&batch))
            break;
        zlb_list_t *n;
        while ((n = zlb_list_pop_front(&batch)) != NULL) {
            zlb_task_t *t = ZLB_CONTAINER_OF(n, zlb_task_t, node);
            count++;
            t->cb(loop, t, true);
        }
    }
    loop->n_discarded += count;
    store_relaxed(&loop->pub.tasks_discarded, loop->n_discarded);
    return count;
}

/* ---- timers ------------------------------------------------------------------------------- */

void zlb_timer_init(zlb_timer_t *t, zlb_timer_cb cb)
{
    zlb_heap_node_init(&t->node);
    t->node.key = 0;
    t->node.seq = 0;
    t->period_ns = 0;
    t->cb = cb;
}

void zlb_timer_start_at(zlb_loop_t *loop, zlb_timer_t *t, uint64_t deadline_ns, uint64_t period_ns)
{
    if (zlb_heap_node_linked(&t->node))
        zlb_heap_remove(&loop->timers, &t->node);
    t->node.key = deadline_ns;
    t->period_ns = period_ns;
    zlb_heap_push(&loop->timers, &t->node);
}

void zlb_timer_start(zlb_loop_t *loop, zlb_timer_t *t, uint64_t delay_ns, uint64_t period_ns)
{
    zlb_timer_start_at(loop, t, sat_add(loop->now, delay_ns), period_ns);
}

void zlb_timer_stop(zlb_loop_t *loop, zlb_timer_t *t)
{
    if (zlb_heap_node_linked(&t->node))
        zlb_heap_remove(&loop->timers, &t->node);
}

/* Only timers armed before this pass may fire in it (heap seq below the mark): a callback that
 * re-arms itself with no delay runs again next iteration, after I/O, instead of spinning here.
 * A repeating timer is re-inserted before its callback so the callback may stop or restart it
 * (as in libuv; so a repeating timer must be stopped before its memory is freed, a one-shot is
 * already out of the heap); a timer that fell a whole period behind skips to the next future
 * multiple instead of firing a burst of catch-up calls. */
static void run_timers(zlb_loop_t *loop)
{
    uint64_t now = loop->now;
    uint64_t seq_mark = loop->timers.next_seq;
    uint64_t gen = load_relaxed(&loop->pub.lag_reset_gen);
    if (gen != loop->lag_reset_seen) {
        loop->lag_reset_seen = gen;
        loop->lag_max = 0;
    }
    uint32_t budget = loop->max_timers;
    zlb_heap_node_t *top;
    while (budget > 0 && (top = zlb_heap_top(&loop->timers)) != NULL && top->key <= now &&
           top->seq < seq_mark) {
        zlb_timer_t *t = ZLB_CONTAINER_OF(top, zlb_timer_t, node);
        uint64_t deadline = top->key;
        zlb_heap_remove(&loop->timers, top);
        if (t->period_ns) {
            uint64_t p = t->period_ns;
            uint64_t next = sat_add(deadline, p);
            if (next <= now)
                next = sat_add(deadline, ((now - deadline) / p + 1) * p);
            top->key = next;
            zlb_heap_push(&loop->timers, top);
        }
        /* Measured when this callback starts, not when the pass began: after slow callbacks
         * earlier in the pass, later timers really are that much later. */
        uint64_t started = zlb_now_ns();
        uint64_t lag = started > deadline ? started - deadline : 0;
        loop->lag_last = lag;
        if (lag > loop->lag_max)
            loop->lag_max = lag;
        loop->n_timers++;
        budget--;
        t->cb(loop, t);
    }
}

/* ---- load accounting ---------------------------------------------------------------------- */

static void load_start(zlb_loop_t *loop, uint64_t now)
{
    loop->sleep_total = 0;
    loop->marks[0] = (load_mark_t){.t = now, .slept = 0, .cpu = zlb_thread_cpu_ns()};
    loop->mark_head = 0;
    loop->mark_count = 1;
    loop->next_boundary = now + loop->bucket_ns;
    loop->load_started = true;
}

/* Called on the first wake-up past a bucket boundary. The window runs from the mark ten
 * boundaries back (or the start) to now, so a loop stuck in one callback for several buckets is
 * seen as busy for all of them, and both ratios share exactly the same span. */
static void load_boundary(zlb_loop_t *loop, uint64_t now)
{
    uint64_t cpu = zlb_thread_cpu_ns();
    unsigned head = (loop->mark_head + 1) % LOAD_MARKS;
    loop->marks[head] = (load_mark_t){.t = now, .slept = loop->sleep_total, .cpu = cpu};
    loop->mark_head = head;
    if (loop->mark_count < LOAD_MARKS)
        loop->mark_count++;
    const load_mark_t *old =
        &loop->marks[(head + LOAD_MARKS - (loop->mark_count - 1)) % LOAD_MARKS];

    uint64_t span = now - old->t;
    if (span > 0) {
        uint64_t slept = loop->sleep_total - old->slept;
        double load = slept >= span ? 0.0 : 100.0 * (double)(span - slept) / (double)span;
        double cpu_pct = cpu <= old->cpu ? 0.0 : 100.0 * (double)(cpu - old->cpu) / (double)span;
        store_relaxed(&loop->pub.load_bits, double_bits(load));
        store_relaxed(&loop->pub.cpu_bits, double_bits(ZLB_MIN(cpu_pct, 100.0)));
    }
    store_relaxed(&loop->pub.cpu_time, cpu);

    uint64_t next = loop->next_boundary + loop->bucket_ns;
    if (next <= now)
        next += ((now - next) / loop->bucket_ns + 1) * loop->bucket_ns;
    loop->next_boundary = next;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static int wait_events(zlb_loop_t *loop, uint64_t timeout_ns)
{
    int n;
#ifdef HAVE_EPOLL_PWAIT2
    if (!atomic_load_explicit(&pwait2_missing, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = (time_t)(timeout_ns / ZLB_NS_PER_SEC),
                              .tv_nsec = (long)(timeout_ns % ZLB_NS_PER_SEC)};
        n = epoll_pwait2(loop->epfd, loop->events, (int)loop->max_events, &ts, NULL);
        if (n >= 0)
            return n;
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
        atomic_store_explicit(&pwait2_missing, true, memory_order_relaxed);
    }
#endif
    /* Rounded up so that a timer is never woken for before its deadline. */
    uint64_t ms = (timeout_ns + ZLB_NS_PER_MS - 1) / ZLB_NS_PER_MS;
    n = epoll_wait(loop->epfd, loop->events, (int)loop->max_events, (int)ZLB_MIN(ms, INT_MAX));
    return n < 0 ? -errno : n;
}

static uint64_t compute_timeout(const zlb_loop_t *loop, uint64_t now, uint64_t max_wait)
{
    if (atomic_load_explicit(&loop->tasks_pending, memory_order_relaxed))
        return 0;
    /* Never sleep past a bucket boundary, so an idle loop keeps publishing its load. */
    uint64_t t = loop->next_boundary > now ? loop->next_boundary - now : 0;
    t = ZLB_MIN(t, max_wait);
    const zlb_heap_node_t *top = zlb_heap_top(&loop->timers);
    if (top)
        t = top->key <= now ? 0 : ZLB_MIN(t, top->key - now);
    return t;
}

static void publish(zlb_loop_t *loop)
{
    store_relaxed(&loop->pub.lag_last, loop->lag_last);
    store_relaxed(&loop->pub.lag_max, loop->lag_max);
    store_relaxed(&loop->pub.events, loop->n_events);
    store_relaxed(&loop->pub.tasks, loop->n_tasks);
    store_relaxed(&loop->pub.timers, loop->n_timers);
    store_relaxed(&loop->pub.iterations, loop->n_iter);
}

/* Timers run first, with the time just read, so lag is measured before I/O adds to it; the
 * batch is already recorded then, so a timer callback that unwatches an fd also drops its
 * pending event. */
static void iterate(zlb_loop_t *loop, uint64_t max_wait)
{
    uint64_t before = zlb_now_ns();
    int n = wait_events(loop, compute_timeout(loop, before, max_wait));
    uint64_t after = zlb_now_ns();
    loop->now = after;
    loop->event_time = after;
    loop->sleep_total += after - before;
    if (after >= loop->next_boundary)
        load_boundary(loop, after);
    if (n < 0) {
        if (n != -EINTR)
            zlb_fatal("epoll_wait on loop %d: %s", loop->id, strerror(-n));
        n = 0;
    }

    loop->batch_n = n;
    loop->batch_next = 0;
    loop->woken = false;
    run_timers(loop);
    for (int i = 0; i < n; i++) {
        zlb_watcher_t *w = loop->events[i].data.ptr;
        loop->batch_next = i + 1;
        if (!w)
            continue; /* unwatched earlier in this batch */
        if (w != &loop->wake)
            loop->n_events++;
        w->cb(loop, w, loop->events[i].events);
    }
    loop->batch_n = 0;
    loop->batch_next = 0;

    run_tasks(loop);
    loop->n_iter++;
    publish(loop);
}

static void enter(zlb_loop_t *loop)
{
    if (atomic_exchange_explicit(&loop->running, true, memory_order_acquire))
        zlb_fatal("loop %d is already running", loop->id);
}

static void leave(zlb_loop_t *loop)
{
    atomic_store_explicit(&loop->running, false, memory_order_release);
}

int zlb_loop_run(zlb_loop_t *loop)
{
    enter(loop);
    zlb_loop_t *prev = current_loop;
    current_loop = loop;
    loop->now = zlb_now_ns();
    /* The clock marks belong to the running thread: start afresh on every run. */
    load_start(loop, loop->now);
    while (!atomic_load_explicit(&loop->stop, memory_order_acquire))
        iterate(loop, UINT64_MAX);
    atomic_store_explicit(&loop->stop, false, memory_order_relaxed);
    loop->load_started = false;
    current_loop = prev;
    leave(loop);
    return 0;
}

void zlb_loop_run_once(zlb_loop_t *loop, uint64_t max_wait_ns)
{
    enter(loop);
    zlb_loop_t *prev = current_loop;
    current_loop = loop;
    if (!loop->load_started)
        load_start(loop, zlb_now_ns());
    iterate(loop, max_wait_ns);
    current_loop = prev;
    leave(loop);
}

void zlb_loop_stop(zlb_loop_t *loop)
{
    atomic_store_explicit(&loop->stop, true, memory_order_release);
    if (current_loop != loop)
        ring(loop);
}

int zlb_loop_create(const zlb_loop_opts_t *opts, zlb_loop_t **out)
{
    size_t size = (sizeof(zlb_loop_t) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    zlb_loop_t *loop = aligned_alloc(CACHE_LINE, size);
    if (!loop)
        return -ENOMEM;
    memset(loop, 0, sizeof(*loop));
    loop->epfd = loop->efd = -1;
    zlb_list_init(&loop->tasks);
    zlb_heap_init(&loop->timers);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    /* Critical sections are a few stores: spin briefly before sleeping in the kernel. */
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&loop->task_mu, &attr);
    pthread_mutexattr_destroy(&attr);

    int err;
    loop->id = opts ? opts->id : 0;
    loop->max_events = opts && opts->max_events ? opts->max_events : DEFAULT_MAX_EVENTS;
    loop->max_events = ZLB_MIN(loop->max_events, MAX_MAX_EVENTS);
    loop->max_timers =
        opts && opts->max_timers_per_iter ? opts->max_timers_per_iter : DEFAULT_MAX_TIMERS;
    uint64_t window = opts && opts->load_window_ns ? opts->load_window_ns : DEFAULT_LOAD_WINDOW_NS;
    loop->bucket_ns = ZLB_MAX(window / LOAD_BUCKETS, 1);

    loop->events = calloc(loop->max_events, sizeof(*loop->events));
    if (!loop->events) {
        err = -ENOMEM;
        goto fail;
    }
    if ((err = zlb_heap_reserve(&loop->timers, TIMER_RESERVE)) != 0)
        goto fail;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        err = -errno;
        goto fail;
    }
    loop->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->efd < 0) {
        err = -errno;
        goto fail;
    }
    zlb_watcher_init(&loop->wake, loop->efd, wake_cb);
    if ((err = zlb_loop_watch(loop, &loop->wake, EPOLLIN)) != 0)
        goto fail;
    loop->now = zlb_now_ns();
    *out = loop;
    return 0;

fail:
    zlb_loop_destroy(loop);
    return err;
}

void zlb_loop_destroy(zlb_loop_t *loop)
{
    if (!loop)
        return;
    if (atomic_load_explicit(&loop->running, memory_order_acquire))
        zlb_fatal("loop %d destroyed while running", loop->id);
    zlb_loop_discard_tasks(loop);
    if (loop->efd >= 0)
        close(loop->efd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->events);
    zlb_heap_dispose(&loop->timers);
    pthread_mutex_destroy(&loop->task_mu);
    free(loop);
}

/* ---- accessors ---------------------------------------------------------------------------- */

uint64_t zlb_loop_now(const zlb_loop_t *loop)
{
    return loop->now;
}

uint64_t zlb_loop_update_time(zlb_loop_t *loop)
{
    loop->now = zlb_now_ns();
    return loop->now;
}

bool zlb_loop_on_thread(const zlb_loop_t *loop)
{
    return current_loop == loop;
}

zlb_loop_t *zlb_loop_current(void)
{
    return current_loop;
}

int zlb_loop_id(const zlb_loop_t *loop)
{
    return loop->id;
}

void zlb_loop_set_data(zlb_loop_t *loop, void *data)
{
    loop->data = data;
}

void *zlb_loop_data(const zlb_loop_t *loop)
{
    return loop->data;
}

void zlb_loop_set_owner(zlb_loop_t *loop, const void *owner)
{
    loop->owner = owner;
}

const void *zlb_loop_owner(const zlb_loop_t *loop)
{
    return loop->owner;
}

double zlb_loop_load_pct(const zlb_loop_t *loop)
{
    return bits_double(load_relaxed(&loop->pub.load_bits));
}

void zlb_loop_read_stats(const zlb_loop_t *loop, zlb_loop_stats_t *out)
{
    out->load_pct = bits_double(load_relaxed(&loop->pub.load_bits));
    out->cpu_pct = bits_double(load_relaxed(&loop->pub.cpu_bits));
    out->cpu_time_ns = load_relaxed(&loop->pub.cpu_time);
    out->lag_last_ns = load_relaxed(&loop->pub.lag_last);
    out->lag_max_ns = load_relaxed(&loop->pub.lag_max);
    out->events = load_relaxed(&loop->pub.events);
    out->tasks = load_relaxed(&loop->pub.tasks);
    out->tasks_discarded = load_relaxed(&loop->pub.tasks_discarded);
    out->timers = load_relaxed(&loop->pub.timers);
    out->iterations = load_relaxed(&loop->pub.iterations);
    out->wakeups = load_relaxed(&loop->wakeups);
}

/* The loop itself zeroes its private maximum when it sees the generation change; storing 0 here
 * too makes the reset visible at once instead of on the loop's next iteration. */
void zlb_loop_reset_lag_max(zlb_loop_t *loop)
{
    store_relaxed(&loop->pub.lag_max, 0);
    atomic_fetch_add_explicit(&loop->pub.lag_reset_gen, 1, memory_order_relaxed);
}

bool zlb_loop_running(const zlb_loop_t *loop)
{
    return atomic_load_explicit(&((zlb_loop_t *)loop)->running, memory_order_acquire);
}

uint64_t zlb_loop_event_time(const zlb_loop_t *loop)
{
    return loop->event_time;
}
