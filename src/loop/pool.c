/* pool.c -- the pool of poller threads: one loop each, pinned, prioritised, selected by load. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loop/loop_internal.h"

typedef struct poller {
    zlb_pool_t *pool; /* borrowed */
    int index;
    zlb_loop_t *loop; /* owned */
    pthread_t thread;
    bool started;
    bool pin; /* false: leave the affinity alone */
    int want_cpu;
    zlb_poller_info_t info; /* written by the thread before the start gate, then immutable */
    /* The last schedstat read, kept for when the thread has exited and its file is gone. */
    _Atomic uint64_t last_run_ns, last_runq_ns;
} poller_t;

struct zlb_pool {
    zlb_pool_opts_t opts;
    int n;
    poller_t *pollers; /* owned, n entries */

    /* Start gate. A pthread barrier would do for the happy path, but cannot be cancelled when a
     * later pthread_create fails and the threads already waiting must be sent home. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int ready; /* threads that applied their settings */
    int go;    /* 0: wait, 1: run, -1: exit */

    _Atomic uint32_t rr; /* rotation for selection */

    pthread_mutex_t stop_mu;
    bool stopped;
};

int zlb_cpus_allowed(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The CPUs this process may run on, ascending. Returns the count. */
static int allowed_cpus(int *cpus, int max)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

void zlb_pool_opts_default(zlb_pool_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->count = 0;
    opts->cpu_affinity = true;
    opts->priority = ZLB_PRIO_NORMAL;
    opts->rt_policy = SCHED_FIFO;
    opts->select = ZLB_SELECT_LEAST_LOADED;
    opts->prefer_current = true;
    opts->load_window_ns = ZLB_NS_PER_SEC;
}

static void warn(poller_t *p, const char *fmt, ...) ZLB_PRINTF(2, 3);
static void warn(poller_t *p, const char *fmt, ...)
{
    char msg[sizeof(p->info.warning)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t used = strlen(p->info.warning);
    snprintf(p->info.warning + used, sizeof(p->info.warning) - used, "%s%s", used ? "; " : "", msg);
    zlb_log_warn("poller %d: %s", p->index, msg);
}

static void apply_affinity(poller_t *p)
{
    if (!p->pin)
        return;
    if (p->want_cpu < 0 || p->want_cpu >= CPU_SETSIZE) {
        warn(p, "cannot pin to CPU %d: not a valid CPU number", p->want_cpu);
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->want_cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0)
        warn(p, "pinning to CPU %d failed: %s", p->want_cpu, strerror(rc));
}

static void apply_priority(poller_t *p)
{
    const zlb_pool_opts_t *o = &p->pool->opts;
    if (o->priority == ZLB_PRIO_HIGH) {
        if (setpriority(PRIO_PROCESS, (id_t)gettid(), o->nice) != 0)
            warn(p, "setting nice %d failed: %s", o->nice, strerror(errno));
    } else if (o->priority == ZLB_PRIO_REALTIME) {
        if (o->rt_policy != SCHED_FIFO && o->rt_policy != SCHED_RR) {
            warn(p, "realtime policy %d is neither SCHED_FIFO nor SCHED_RR", o->rt_policy);
            return;
        }
        int lo = sched_get_priority_min(o->rt_policy), hi = sched_get_priority_max(o->rt_policy);
        if (o->rt_priority < lo || o->rt_priority > hi) {
            warn(p, "realtime priority %d outside %d..%d", o->rt_priority, lo, hi);
            return;
        }
        struct sched_param sp = {.sched_priority = o->rt_priority};
        int rc = pthread_setschedparam(pthread_self(), o->rt_policy, &sp);
        if (rc != 0)
            warn(p, "setting %s priority %d failed: %s", o->rt_policy == SCHED_FIFO ? "fifo" : "rr",
                 o->rt_priority, strerror(rc));
    }
}

static const char *policy_name(int policy)
{
    switch (policy) {
    case SCHED_OTHER:
        return "other";
    case SCHED_FIFO:
        return "fifo";
    case SCHED_RR:
        return "rr";
    case SCHED_BATCH:
        return "batch";
    case SCHED_IDLE:
        return "idle";
    default:
        return "unknown";
    }
}

/* What the kernel says we got, which is what gets reported, whatever was asked for. */
static void read_back(poller_t *p)
{
    const zlb_pool_opts_t *o = &p->pool->opts;
    zlb_poller_info_t *info = &p->info;

    cpu_set_t set;
    CPU_ZERO(&set);
    info->cpu = -1;
    int rc = pthread_getaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0) {
        warn(p, "reading affinity failed: %s", strerror(rc));
    } else if (CPU_COUNT(&set) == 1) {
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set))
                info->cpu = c;
    }
    if (p->pin && info->cpu != p->want_cpu && info->warning[0] == '\0')
        warn(p, "asked for CPU %d, running on %d", p->want_cpu, info->cpu);

    pid_t tid = gettid();
    info->tid = (int)tid;
    int policy = sched_getscheduler(tid);
    if (policy < 0) {
        warn(p, "reading the scheduling policy failed: %s", strerror(errno));
        snprintf(info->policy, sizeof(info->policy), "unknown");
        return;
    }
    policy &= ~SCHED_RESET_ON_FORK;
    snprintf(info->policy, sizeof(info->policy), "%s", policy_name(policy));
    if (policy == SCHED_FIFO || policy == SCHED_RR) {
        struct sched_param sp;
        if (sched_getparam(tid, &sp) == 0)
            info->priority = sp.sched_priority;
    } else {
        errno = 0;
        int nice_value = getpriority(PRIO_PROCESS, (id_t)tid);
        if (nice_value == -1 && errno != 0)
            warn(p, "reading the nice value failed: %s", strerror(errno));
        else
            info->priority = nice_value;
    }
    if (info->warning[0] != '\0')
        return; /* the failure is already explained */
    if (o->priority == ZLB_PRIO_HIGH && info->priority != o->nice)
        warn(p, "asked for nice %d, got %d", o->nice, info->priority);
    if (o->priority == ZLB_PRIO_REALTIME &&
        (policy != o->rt_policy || info->priority != o->rt_priority))
        warn(p, "asked for realtime priority %d, got %s %d", o->rt_priority, info->policy,
             info->priority);
}

static void *poller_main(void *arg)
{
    poller_t *p = arg;
    zlb_pool_t *pool = p->pool;
    char name[32];
    snprintf(name, sizeof(name), "zlb-poller-%d", p->index);
    zlb_thread_set_name(name);
    apply_affinity(p);
    apply_priority(p);
    read_back(p);

    pthread_mutex_lock(&pool->gate_mu);
    pool->ready++;
    pthread_cond_broadcast(&pool->gate_cv);
    while (pool->go == 0)
        pthread_cond_wait(&pool->gate_cv, &pool->gate_mu);
    int go = pool->go;
    pthread_mutex_unlock(&pool->gate_mu);

    if (go > 0)
        zlb_loop_run(p->loop);
    return NULL;
}

static void open_gate(zlb_pool_t *pool, int go)
{
    pthread_mutex_lock(&pool->gate_mu);
    pool->go = go;
    pthread_cond_broadcast(&pool->gate_cv);
    pthread_mutex_unlock(&pool->gate_mu);
}

static void join_all(zlb_pool_t *pool)
{
    for (int i = 0; i < pool->n; i++) {
        if (pool->pollers[i].started) {
            pthread_join(pool->pollers[i].thread, NULL);
            pool->pollers[i].started = false;
        }
    }
}

int zlb_pool_create(const zlb_pool_opts_t *opts, zlb_pool_t **out)
{
    zlb_pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    if (opts)
        pool->opts = *opts;
    else
        zlb_pool_opts_default(&pool->opts);
    pool->opts.cpus = NULL; /* borrowed only for the duration of this call */
    pthread_mutex_init(&pool->gate_mu, NULL);
    pthread_cond_init(&pool->gate_cv, NULL);
    pthread_mutex_init(&pool->stop_mu, NULL);

    int err = 0;
    int *cpus = NULL;
    pool->n = pool->opts.count > 0 ? pool->opts.count : zlb_cpus_allowed();
    pool->pollers = calloc((size_t)pool->n, sizeof(*pool->pollers));
    if (!pool->pollers) {
        err = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < pool->n; i++) {
        atomic_init(&pool->pollers[i].last_run_ns, UINT64_MAX); /* unknown until read */
        atomic_init(&pool->pollers[i].last_runq_ns, UINT64_MAX);
    }

    int ncpus = 0;
    if (pool->opts.cpu_affinity) {
        if (opts && opts->cpus && opts->ncpus > 0) {
            ncpus = opts->ncpus;
            cpus = malloc((size_t)ncpus * sizeof(*cpus));
            if (cpus)
                memcpy(cpus, opts->cpus, (size_t)ncpus * sizeof(*cpus));
        } else {
            cpus = malloc(CPU_SETSIZE * sizeof(*cpus));
            if (cpus)
                ncpus = allowed_cpus(cpus, CPU_SETSIZE);
        }
        if (!cpus) {
            err = -ENOMEM;
            goto fail;
        }
    }

    for (int i = 0; i < pool->n; i++) {
        poller_t *p = &pool->pollers[i];
        p->pool = pool;
        p->index = i;
        p->info.id = i;
        p->pin = ncpus > 0;
        p->want_cpu = p->pin ? cpus[i % ncpus] : -1;
        zlb_loop_opts_t lo = {.id = i, .load_window_ns = pool->opts.load_window_ns};
        if ((err = zlb_loop_create(&lo, &p->loop)) != 0)
            goto fail;
        zlb_loop_set_owner(p->loop, pool);
    }
    for (int i = 0; i < pool->n; i++) {
        int rc = pthread_create(&pool->pollers[i].thread, NULL, poller_main, &pool->pollers[i]);
        if (rc != 0) {
            err = -rc;
            goto fail;
        }
        pool->pollers[i].started = true;
    }

    pthread_mutex_lock(&pool->gate_mu);
    while (pool->ready < pool->n)
        pthread_cond_wait(&pool->gate_cv, &pool->gate_mu);
    pthread_mutex_unlock(&pool->gate_mu);
    open_gate(pool, 1);
    free(cpus);
    *out = pool;
    return 0;

fail:
    open_gate(pool, -1);
    join_all(pool);
    free(cpus);
    zlb_pool_destroy(pool);
    return err;
}

int zlb_pool_size(const zlb_pool_t *pool)
{
    return pool->n;
}

zlb_loop_t *zlb_pool_loop(const zlb_pool_t *pool, int i)
{
    return i >= 0 && i < pool->n ? pool->pollers[i].loop : NULL;
}

static int whole_percent(const zlb_loop_t *loop)
{
    return (int)(zlb_loop_load_pct(loop) + 0.5);
}

/* Loads are compared in whole percent: pollers a fraction of a point apart are equally loaded,
 * and rotating among them spreads a burst of new work instead of piling it on whichever poller
 * published the lowest figure last. The scan starts at a rotating offset, so ties go
 * round-robin. */
zlb_loop_t *zlb_pool_select(zlb_pool_t *pool)
{
    if (pool->opts.prefer_current) {
        zlb_loop_t *cur = zlb_loop_current();
        if (cur && zlb_loop_owner(cur) == pool)
            return cur;
    }
    uint32_t n = (uint32_t)pool->n;
    uint32_t start = atomic_fetch_add_explicit(&pool->rr, 1, memory_order_relaxed) % n;
    if (pool->opts.select == ZLB_SELECT_ROUND_ROBIN)
        return pool->pollers[start].loop;

    uint32_t best = start;
    int best_load = whole_percent(pool->pollers[start].loop);
    for (uint32_t i = 1; i < n && best_load > 0; i++) {
        uint32_t idx = (start + i) % n;
        int load = whole_percent(pool->pollers[idx].loop);
        if (load < best_load) {
            best_load = load;
            best = idx;
        }
    }
    return pool->pollers[best].loop;
}

/* "RUN_NS WAIT_NS SLICES\n": the kernel's own account of the thread's time on a CPU and in the
 * run queue. 0 or -errno. */
static int read_schedstat(int tid, uint64_t *run_ns, uint64_t *wait_ns)
{
    char path[64], buf[96];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (n <= 0)
        return err ? err : -EIO;
    buf[n] = '\0';
    unsigned long long r, w;
    if (sscanf(buf, "%llu %llu", &r, &w) != 2)
        return -EIO;
    *run_ns = r;
    *wait_ns = w;
    return 0;
}

void zlb_pool_info(const zlb_pool_t *pool, zlb_poller_info_t *info)
{
    for (int i = 0; i < pool->n; i++) {
        poller_t *p = &pool->pollers[i];
        info[i] = p->info;
        zlb_loop_read_stats(p->loop, &info[i].stats);
        uint64_t run, wait;
        /* Only while its loop runs: once the thread is gone its TID may name another thread. */
        if (zlb_loop_running(p->loop) && info[i].tid > 0 &&
            read_schedstat(info[i].tid, &run, &wait) == 0) {
            atomic_store_explicit(&p->last_run_ns, run, memory_order_relaxed);
            atomic_store_explicit(&p->last_runq_ns, wait, memory_order_relaxed);
        }
        info[i].run_ns = atomic_load_explicit(&p->last_run_ns, memory_order_relaxed);
        info[i].runq_wait_ns = atomic_load_explicit(&p->last_runq_ns, memory_order_relaxed);
    }
}

void zlb_pool_stop(zlb_pool_t *pool)
{
    if (!pool)
        return;
    zlb_loop_t *cur = zlb_loop_current();
    if (cur && zlb_loop_owner(cur) == pool)
        zlb_fatal("zlb_pool_stop called from poller %d, which cannot join itself",
                  zlb_loop_id(cur));
    pthread_mutex_lock(&pool->stop_mu);
    if (!pool->stopped) {
        for (int i = 0; i < pool->n; i++)
            if (pool->pollers[i].started)
                zlb_loop_stop(pool->pollers[i].loop);
        join_all(pool);
        pool->stopped = true;
    }
    pthread_mutex_unlock(&pool->stop_mu);
}

void zlb_pool_destroy(zlb_pool_t *pool)
{
    if (!pool)
        return;
    if (pool->pollers) {
        zlb_pool_stop(pool);
        for (int i = 0; i < pool->n; i++)
            zlb_loop_destroy(pool->pollers[i].loop);
        free(pool->pollers);
    }
    pthread_mutex_destroy(&pool->stop_mu);
    pthread_cond_destroy(&pool->gate_cv);
    pthread_mutex_destroy(&pool->gate_mu);
    free(pool);
}
