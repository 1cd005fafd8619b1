/* sched.c -- the open-loop connect scheduler: its own thread hands due attempts to the pollers. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "work/work_internal.h"

/* Attempt i is due at t0 + T(i), where T inverts the cumulative attempt count A(t) of the
 * schedule: during the ramp the rate rises linearly, r(t) = s + (R - s) t / D, so
 * A(t) = s t + (R - s) t^2 / (2 D), and after it A(t) = A(D) + R (t - D). Intended times come
 * from the schedule, never from when the scheduler got round to them, so a scheduler or poller
 * that falls behind shows up as schedule lag. */
uint64_t zlb_sched_offset_ns(const zlb_work_sched_t *s, uint64_t i)
{
    double x = (double)i, t;

    if (s->rebased) {
        t = s->seg_t_s;
        if (s->rate > 0 && i > s->seg_i)
            t += (double)(i - s->seg_i) / s->rate;
        return (uint64_t)(t * 1e9);
    }
    if (s->rate <= 0)
        return 0;
    if (s->ramp_s > 0 && x < s->ramp_n) {
        double a = (s->rate - s->start_rate) / (2 * s->ramp_s);
        if (fabs(a) < 1e-12)
            t = x / s->start_rate;
        else
            t = (-s->start_rate + sqrt(s->start_rate * s->start_rate + 4 * a * x)) / (2 * a);
    } else {
        t = s->ramp_s + (x - s->ramp_n) / s->rate;
    }
    return (uint64_t)(t * 1e9);
}

uint64_t zlb_sched_due(const zlb_work_sched_t *s, uint64_t t_ns)
{
    double t = (double)t_ns / 1e9, a;

    if (s->rate <= 0)
        return s->total;
    if (s->rebased) {
        if (t < s->seg_t_s)
            return ZLB_MIN(s->seg_i, s->total);
        double due = (double)s->seg_i + floor(s->rate * (t - s->seg_t_s) + 1e-9) + 1;
        return due >= (double)s->total ? s->total : (uint64_t)due;
    }
    if (s->ramp_s > 0 && t < s->ramp_s)
        a = s->start_rate * t + (s->rate - s->start_rate) * t * t / (2 * s->ramp_s);
    else
        a = s->ramp_n + s->rate * (t - s->ramp_s);
    /* Attempt 0 is due at t = 0, so A(t) attempts after it: floor(A) + 1 in all. */
    double due = floor(a + 1e-9) + 1;
    return due >= (double)s->total ? s->total : (uint64_t)due;
}

void zlb_sched_rebase(zlb_work_sched_t *s, uint64_t t_ns, double rate)
{
    double now_s = (double)t_ns / 1e9, start = now_s;

    /* The next attempt keeps the share of its wait already behind it: a controller that sets
     * the rate every tick (a stage's linear move) would otherwise issue one at each tick. */
    if (s->rate > 0 && rate > 0 && s->issued < s->total) {
        double old_due = (double)zlb_sched_offset_ns(s, s->issued) / 1e9;
        if (old_due > now_s) {
            double left = (old_due - now_s) * s->rate; /* in attempts */
            start = now_s + (left > 1 ? 1 : left) / rate;
        }
    }
    s->rebased = true;
    s->ramp_s = 0;
    s->seg_t_s = start;
    s->seg_i = s->issued;
    s->rate = rate;
}

static void post_batch(zlb_work_t *e, int p)
{
    zlb_work_sched_t *s = &e->sched;
    zlb_work_batch_t *b = s->open[p];
    zlb_worker_t *w = e->workers[p];

    s->open[p] = NULL;
    s->produced[p]++;
    zlb_worker_ref(w);
    zlb_loop_post(w->loop, &b->task);
}

/* A batch with room on poller p, or NULL when its ring is full (all batches posted and not
 * yet taken). */
static zlb_work_batch_t *batch_for(zlb_work_t *e, int p)
{
    zlb_work_sched_t *s = &e->sched;
    zlb_worker_t *w = e->workers[p];

    if (s->open[p])
        return s->open[p];
    uint64_t consumed = atomic_load_explicit(&w->consumed, memory_order_acquire);
    if (s->produced[p] - consumed >= ZLB_WORK_RING_LEN)
        return NULL;
    zlb_work_batch_t *b = &w->ring[s->produced[p] % ZLB_WORK_RING_LEN];
    b->n = 0;
    s->open[p] = b;
    return b;
}

static int poller_index(zlb_work_t *e, zlb_loop_t *l)
{
    zlb_worker_t *w = l ? zlb_loop_data(l) : NULL;

    for (int i = 0; w && i < e->npollers; i++)
        if (e->workers[i] == w)
            return i;
    /* Not one of ours (cannot happen with our own pool): plain rotation. */
    e->sched.next_poller = (e->sched.next_poller + 1) % e->npollers;
    return e->sched.next_poller;
}

static zlb_work_batch_t *pick_batch(zlb_work_t *e, int *pout)
{
    int p = poller_index(e, zlb_pool_select(e->pool));

    /* The chosen poller is full: the next ones in turn, so one slow poller does not hold back
     * attempts the others can take. */
    for (int k = 0; k < e->npollers; k++) {
        int q = (p + k) % e->npollers;
        zlb_work_batch_t *b = batch_for(e, q);
        if (b) {
            *pout = q;
            return b;
        }
    }
    return NULL;
}

static void sched_tick(zlb_loop_t *loop, zlb_timer_t *t)
{
    zlb_work_t *e = ZLB_CONTAINER_OF(t, zlb_work_t, sched.tick);
    zlb_work_sched_t *s = &e->sched;
    uint64_t now = zlb_now_ns();
    bool unlimited = s->rate <= 0;

    if (atomic_load_explicit(&e->stop_opening, memory_order_relaxed)) {
        zlb_timer_stop(loop, &s->tick);
        atomic_store_explicit(&e->backlog, 0, memory_order_relaxed);
        return;
    }
    if (s->paused) {
        /* The resume rebases the schedule: nothing is owed for the pause. */
        zlb_timer_stop(loop, &s->tick);
        atomic_store_explicit(&e->backlog, 0, memory_order_relaxed);
        return;
    }
    while (s->issued < s->total) {
        uint64_t due = unlimited ? now : s->t0 + zlb_sched_offset_ns(s, s->issued);
        int p;
        if (due > now + ZLB_WORK_SCHED_LOOKAHEAD_NS)
            break;
        zlb_work_batch_t *b = pick_batch(e, &p);
        if (!b)
            break; /* every ring is full: the rest waits as backlog */
        b->t[b->n++] = due;
        s->issued++;
        if (b->n == ZLB_WORK_BATCH_MAX)
            post_batch(e, p);
    }
    for (int p = 0; p < e->npollers; p++)
        if (s->open[p] && s->open[p]->n)
            post_batch(e, p);

    uint64_t due_count = zlb_sched_due(s, now - s->t0);
    atomic_store_explicit(&e->backlog, due_count > s->issued ? due_count - s->issued : 0,
                          memory_order_relaxed);
    if (s->issued == s->total)
        zlb_timer_stop(loop, &s->tick);
}

static void sched_begin(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_work_t *e = ZLB_CONTAINER_OF(t, zlb_work_t, sched.start_task);

    if (discarded)
        return;
    e->sched.t0 = zlb_loop_update_time(loop);
    e->sched.started = true;
    zlb_timer_start(loop, &e->sched.tick, 0, ZLB_WORK_SCHED_TICK_NS);
    sched_tick(loop, &e->sched.tick);
}

/* Spreads `cut` connections to give up over the pollers, in proportion to what each has open
 * or opening (largest remainders first), and wakes them. */
static void distribute_cut(zlb_work_t *e, uint64_t cut)
{
    int n = e->npollers;
    uint64_t *busy = zlb_xcalloc((size_t)n, sizeof(*busy)), sum = 0, given = 0;

    for (int i = 0; i < n; i++) {
        busy[i] = atomic_load_explicit(&e->workers[i]->busy, memory_order_relaxed);
        sum += busy[i];
    }
    for (int i = 0; i < n; i++) {
        uint64_t share = sum ? (uint64_t)((double)cut * (double)busy[i] / (double)sum) : 0;
        share = ZLB_MIN(share, cut - given);
        if (share)
            atomic_fetch_add_explicit(&e->workers[i]->shed, (int64_t)share, memory_order_relaxed);
        given += share;
    }
    /* The rounding's rest, one each, to the pollers with connections (or the first). */
    for (int i = 0; given < cut; i = (i + 1) % n) {
        if (busy[i] || !sum) {
            atomic_fetch_add_explicit(&e->workers[i]->shed, 1, memory_order_relaxed);
            given++;
        }
    }
    free(busy);
    for (int i = 0; i < n; i++)
        zlb_worker_post_steer(e->workers[i]);
}

/* A raise first takes back what the pollers still owe a lowering (not closed yet). */
static uint64_t reclaim_cut(zlb_work_t *e, uint64_t want)
{
    uint64_t got = 0;

    for (int i = 0; i < e->npollers && got < want; i++) {
        int64_t x = atomic_exchange_explicit(&e->workers[i]->shed, 0, memory_order_relaxed);
        if (x <= 0)
            continue;
        uint64_t take = ZLB_MIN((uint64_t)x, want - got);
        got += take;
        if ((uint64_t)x > take)
            atomic_fetch_add_explicit(&e->workers[i]->shed, x - (int64_t)take,
                                      memory_order_relaxed);
    }
    return got;
}

static void sched_steer(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_work_t *e = ZLB_CONTAINER_OF(t, zlb_work_t, sched.steer_task);
    zlb_work_sched_t *s = &e->sched;
    zlb_work_live_t v;
    int64_t delta;

    atomic_store_explicit(&e->sched_steer_queued, false, memory_order_release);
    if (discarded)
        return;
    pthread_mutex_lock(&e->steer_mu);
    v = e->pub;
    delta = e->sched_delta;
    e->sched_delta = 0;
    pthread_mutex_unlock(&e->steer_mu);
    if (atomic_load_explicit(&e->stop_opening, memory_order_relaxed))
        return;

    double rate = v.connect_rate > 0 ? v.connect_rate : 0;
    bool was_paused = s->paused;
    if (delta > 0) {
        uint64_t add = (uint64_t)delta;
        add -= reclaim_cut(e, add);
        s->total += add;
    } else if (delta < 0) {
        uint64_t cut = (uint64_t)-delta, take = ZLB_MIN(cut, s->total - s->issued);
        s->total -= take; /* not handed out yet: simply never issued */
        if (cut > take)
            distribute_cut(e, cut - take);
    }
    s->paused = v.paused;
    if (!s->started) {
        /* Before the start: the run begins with these values (a config ramp gives way). */
        s->rebased = true;
        s->ramp_s = 0;
        s->seg_t_s = 0;
        s->seg_i = 0;
        s->rate = rate;
        return;
    }
    uint64_t now = zlb_loop_update_time(loop);
    if (rate != s->rate || was_paused != s->paused || delta != 0)
        zlb_sched_rebase(s, now - s->t0, rate);
    if (!s->paused && s->issued < s->total && !zlb_timer_active(&s->tick))
        zlb_timer_start(loop, &s->tick, 0, ZLB_WORK_SCHED_TICK_NS);
}

void zlb_sched_post_steer(zlb_work_t *e)
{
    if (atomic_exchange_explicit(&e->sched_steer_queued, true, memory_order_acq_rel))
        return;
    zlb_loop_post(e->sched.loop, &e->sched.steer_task);
}

static void *sched_main(void *arg)
{
    zlb_work_t *e = arg;

    /* Not a poller and not pinned: it only computes times and posts batches. */
    zlb_thread_set_name("zlb-sched");
    zlb_loop_run(e->sched.loop);
    return NULL;
}

int zlb_sched_init(zlb_work_t *e)
{
    zlb_work_sched_t *s = &e->sched;
    const zlb_config_t *cfg = e->cfg;
    zlb_loop_opts_t lo = {.id = -1};
    int r;

    s->total = cfg->connections;
    s->rate = cfg->connect_rate > 0 ? cfg->connect_rate : 0;
    if (s->rate > 0 && cfg->ramp.duration_ns > 0) {
        s->ramp_s = (double)cfg->ramp.duration_ns / 1e9;
        s->start_rate = cfg->ramp.start_rate > 0 ? cfg->ramp.start_rate : 0;
        s->ramp_n = (s->start_rate + s->rate) / 2 * s->ramp_s;
    }
    s->produced = zlb_xcalloc((size_t)e->npollers, sizeof(*s->produced));
    s->open = zlb_xcalloc((size_t)e->npollers, sizeof(*s->open));
    zlb_timer_init(&s->tick, sched_tick);
    zlb_task_init(&s->start_task, sched_begin);
    zlb_task_init(&s->steer_task, sched_steer);
    r = zlb_loop_create(&lo, &s->loop);
    if (r < 0)
        s->loop = NULL;
    return r;
}

int zlb_sched_start(zlb_work_t *e)
{
    zlb_work_sched_t *s = &e->sched;
    int r;

    if (s->thread_started)
        return -EALREADY;
    r = pthread_create(&s->thread, NULL, sched_main, e);
    if (r != 0)
        return -r;
    s->thread_started = true;
    zlb_loop_post(s->loop, &s->start_task);
    return 0;
}

void zlb_sched_dispose(zlb_work_t *e)
{
    zlb_work_sched_t *s = &e->sched;

    if (s->thread_started) {
        zlb_loop_stop(s->loop);
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    zlb_loop_destroy(s->loop);
    s->loop = NULL;
    free(s->produced);
    free(s->open);
    s->produced = NULL;
    s->open = NULL;
}
