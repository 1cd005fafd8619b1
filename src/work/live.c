/* live.c -- a poller's side of the live values (zlb_work_steer): the steer task, pause and
 * resume, raising and shedding connections at close_rate. Split from worker.c, whose slots and
 * counters it uses through the zlb_worker_* functions in work_internal.h. */
#include "work/work_internal.h"

#define SHED_BATCH 256 /* closes per loop turn when close_rate is unlimited */
#define SHED_RETRY_NS (10 * ZLB_NS_PER_MS)

/* Gives up one slot: a queued or backing-off one is simply freed (it is no connection), an
 * established one closed by us. */
static void shed_slot(zlb_worker_t *w, zlb_work_slot_t *s)
{
    if (s->phase == ZLB_SLOT_ACTIVE) {
        zlb_fail_t why = ZLB_FAIL_OTHER;
        if (w->e->wl->closed)
            (void)w->e->wl->closed(w, s, ZLB_END_BY_US, &why);
        zlb_worker_close_established(w, s, ZLB_END_BY_US, ZLB_FAIL_OTHER);
    }
    zlb_worker_slot_free(w, s);
}

/* Up to n slots given up, from the cursor on: those that are no connection and idle connections
 * in a first pass, busy ones (a request in flight) only when the first found too few. Attempts
 * in flight are left to finish. Returns how many; *any_left says whether one is in flight. */
static uint64_t shed_some(zlb_worker_t *w, uint64_t n, bool *in_flight)
{
    size_t total = w->nchunks * ZLB_WORK_CHUNK_SLOTS;
    uint64_t done = 0;

    *in_flight = false;
    for (int pass = 0; pass < 2 && done < n; pass++) {
        for (size_t k = 0; k < total && done < n; k++) {
            size_t at = (w->shed_cursor + k) % total;
            zlb_work_slot_t *s = &w->chunks[at / ZLB_WORK_CHUNK_SLOTS][at % ZLB_WORK_CHUNK_SLOTS];
            if (s->phase == ZLB_SLOT_FREE)
                continue;
            if (s->phase == ZLB_SLOT_ACTIVE) {
                if (zlb_conn_state(&s->conn) != ZLB_CONN_ESTABLISHED) {
                    *in_flight = true;
                    continue;
                }
                if (pass == 0 && w->e->wl->busy && w->e->wl->busy(w, s))
                    continue;
            }
            if (!zlb_worker_take_debt(w))
                return done;
            shed_slot(w, s);
            done++;
            w->shed_cursor = at + 1;
        }
    }
    return done;
}

static void shed_step(zlb_worker_t *w)
{
    double per = w->live.close_rate / w->e->npollers;
    uint64_t now = zlb_loop_update_time(w->loop), budget = SHED_BATCH;
    int64_t owed = atomic_load_explicit(&w->shed, memory_order_relaxed);
    bool in_flight;

    if (owed <= 0 || w->closing) {
        zlb_timer_stop(w->loop, &w->shed_timer);
        return;
    }
    if (per > 0) {
        /* A bucket as for reconnects: close_rate is a ceiling, a tenth of a second's burst. */
        if (w->shed_at == 0)
            w->shed_tokens = 1;
        else
            w->shed_tokens += (double)(now - w->shed_at) * per / 1e9;
        w->shed_tokens = ZLB_MIN(w->shed_tokens, ZLB_MAX(per / 10, 1.0));
        w->shed_at = now;
        budget = (uint64_t)w->shed_tokens;
        if (budget == 0) {
            zlb_timer_start_at(w->loop, &w->shed_timer,
                               now + (uint64_t)((1.0 - w->shed_tokens) / per * 1e9) + 1, 0);
            return;
        }
    }
    uint64_t done = shed_some(w, ZLB_MIN(budget, (uint64_t)owed), &in_flight);
    if (per > 0)
        w->shed_tokens -= (double)done;
    zlb_worker_publish_busy(w);
    if (atomic_load_explicit(&w->shed, memory_order_relaxed) <= 0)
        return;
    if (done == 0 && !in_flight)
        return; /* nothing left to give up here: the debt waits (a raise takes it back) */
    uint64_t next = now + (done == 0 ? SHED_RETRY_NS : 0);
    if (per > 0 && done > 0)
        next = now + (uint64_t)(1.0 / per * 1e9);
    zlb_timer_start_at(w->loop, &w->shed_timer, next, 0);
}

void zlb_worker_shed_fired(zlb_loop_t *loop, zlb_timer_t *t)
{
    (void)loop;
    shed_step(ZLB_CONTAINER_OF(t, zlb_worker_t, shed_timer));
}

/* Attempts that came due in the pause start at the resume, as due then: the pause was the
 * run's decision, not lateness. */
static void resume_queues(zlb_worker_t *w)
{
    uint64_t now = zlb_loop_update_time(w->loop);
    zlb_list_t *qs[2] = {&w->q_sched, &w->q_start};

    for (int q = 0; q < 2; q++) {
        for (zlb_list_t *n = qs[q]->next; n != qs[q]; n = n->next) {
            zlb_work_slot_t *s = ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode);
            if (s->intended_ns < now)
                s->intended_ns = now;
        }
    }
}

void zlb_worker_set_token_rate(zlb_worker_t *w, double connect_rate)
{
    /* Reconnects after failures share a per-poller bucket: a restarted target sees at most
     * this rate from us, however many connections dropped at once. */
    double per_poller = connect_rate > 0 ? connect_rate / w->e->npollers : 1000.0;
    w->token_rate = ZLB_MAX(per_poller, 50.0);
    w->token_burst = ZLB_MAX(w->token_rate / 10.0, 1.0);
    if (w->tokens > w->token_burst)
        w->tokens = w->token_burst;
}

void zlb_worker_steer_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_worker_t *w = ZLB_CONTAINER_OF(t, zlb_worker_t, steer_task);
    const zlb_workload_ops_t *ops;
    zlb_work_live_t v, old;

    (void)loop;
    atomic_store_explicit(&w->steer_queued, false, memory_order_release);
    if (discarded || w->closing) {
        zlb_worker_unref(w);
        return;
    }
    ops = w->e->wl;
    pthread_mutex_lock(&w->e->steer_mu);
    v = w->e->pub;
    pthread_mutex_unlock(&w->e->steer_mu);
    old = w->live;
    w->live = v;
    if (v.connect_rate != old.connect_rate)
        zlb_worker_set_token_rate(w, v.connect_rate);
    if (ops->set_rate && (v.rate != old.rate || v.connections != old.connections))
        ops->set_rate(w, v.rate);
    if (v.paused != old.paused) {
        if (ops->pause)
            ops->pause(w, v.paused);
        if (!v.paused) {
            resume_queues(w);
            zlb_worker_drain(w);
        }
    }
    shed_step(w);
    zlb_worker_unref(w);
}

void zlb_wl_pace_set_rate(zlb_worker_t *w, double rate)
{
    w->wl_gap_ns = 0;
    if (rate > 0) {
        double gap = (double)ZLB_MAX(w->live.connections, 1) / rate * 1e9;
        w->wl_gap_ns = gap < 1 ? 1 : gap > 1e18 ? (uint64_t)1e18 : (uint64_t)gap;
    }
}

void zlb_wl_pace_rephase(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t *gap_ns, uint64_t *next_ns,
                         uint32_t queued)
{
    uint64_t now = zlb_loop_update_time(w->loop), gap = w->wl_gap_ns;

    if (!gap)
        return; /* rate 0: the timer, when it fires, arms nothing more */
    if (queued)
        return; /* behind already: the queue's intended times follow its old interval, and the
                   new one applies once the queue is empty (the workload's timer) */
    *gap_ns = gap;
    if (!zlb_timer_active(&s->timer) || *next_ns > now + gap) {
        *next_ns = now + zlb_wl_rand(w) % gap;
        zlb_wl_timer_at(w, s, *next_ns);
    }
}

void zlb_worker_post_steer(zlb_worker_t *w)
{
    if (atomic_exchange_explicit(&w->steer_queued, true, memory_order_acq_rel))
        return;
    zlb_worker_ref(w);
    zlb_loop_post(w->loop, &w->steer_task);
}

void zlb_wl_each_established(zlb_worker_t *w, void (*fn)(zlb_worker_t *w, zlb_work_slot_t *s))
{
    for (size_t k = 0; k < w->nchunks; k++) {
        for (size_t i = 0; i < ZLB_WORK_CHUNK_SLOTS; i++) {
            zlb_work_slot_t *s = &w->chunks[k][i];
            if (s->phase == ZLB_SLOT_ACTIVE && zlb_conn_state(&s->conn) == ZLB_CONN_ESTABLISHED)
                fn(w, s);
        }
    }
}
