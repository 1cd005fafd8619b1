/* worker.c -- one poller's share of the engine: slots, attempt queues, backoff, workloads,
 * counters. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "work/work_internal.h"

#define PAUSE_MIN_NS (10 * ZLB_NS_PER_MS)
#define PAUSE_MAX_NS ZLB_NS_PER_SEC
#define BACKOFF_EXP_MAX 32

/* The counters index their TLS breakdowns by the tls module's reasons. */
_Static_assert(ZLB_TLS_R_COUNT <= ZLB_TLS_REASONS_MAX, "zlb_counters_t.tls_fail_reason is short");

static void slot_on_timer(zlb_loop_t *loop, zlb_timer_t *t);
static void slot_end(zlb_worker_t *w, zlb_work_slot_t *s);

static inline zlb_worker_t *conn_worker(const zlb_conn_t *c)
{
    return zlb_loop_data(zlb_net_ctx_loop(c->ctx));
}

static inline zlb_work_slot_t *conn_slot(zlb_conn_t *c)
{
    return ZLB_CONTAINER_OF(c, zlb_work_slot_t, conn);
}

uint64_t zlb_wl_rand(zlb_worker_t *w)
{
    /* xorshift64*: jitter only, no need for more */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- counters: every transition in one place, so the invariant holds between events ------- */

static void count_attempt(zlb_worker_t *w, uint16_t t)
{
    w->stats.c.attempted++;
    w->stats.c.in_flight++;
    w->tc[t].attempted++;
    w->tc[t].in_flight++;
    zlb_worker_publish_busy(w);
}

static void count_established(zlb_worker_t *w, uint16_t t)
{
    w->stats.c.in_flight--;
    w->stats.c.established++;
    w->stats.c.open++;
    w->tc[t].in_flight--;
    w->tc[t].established++;
    w->tc[t].open++;
    zlb_worker_publish_busy(w);
}

static void count_failed_before(zlb_worker_t *w, uint16_t t, zlb_fail_t why)
{
    w->stats.c.in_flight--;
    w->stats.c.failed_before[why]++;
    w->tc[t].in_flight--;
    w->tc[t].failed_before[why]++;
    zlb_worker_publish_busy(w);
}

static void count_tls_done(zlb_worker_t *w, uint16_t t, bool resumed)
{
    w->stats.c.tls_handshakes++;
    w->tc[t].tls_handshakes++;
    if (resumed) {
        w->stats.c.tls_resumed++;
        w->tc[t].tls_resumed++;
    }
}

/* The detail of a tls_handshake (err: a zlb_tls_reason_t) or tls_verify failure (err: the X509
 * verify result), before or after establishment. The first of each reason or verify result per
 * poller and target is logged in full; later ones only counted, so a run failing every
 * handshake writes a handful of lines, not one per attempt. */
static void count_tls_failure(zlb_worker_t *w, zlb_work_slot_t *s, zlb_fail_t why,
                              zlb_net_err_t err)
{
    zlb_counters_t *tc = &w->tc[s->target];
    const zlb_work_target_t *t = &w->e->targets[s->target];
    char text[256];
    bool first;
    int k = err.code;

    if (why == ZLB_FAIL_TLS_HANDSHAKE) {
        if (err.kind != ZLB_NET_ERR_TLS || k < 0 || k >= ZLB_TLS_R_COUNT)
            k = ZLB_TLS_R_OTHER;
        first = tc->tls_fail_reason[k] == 0;
        tc->tls_fail_reason[k]++;
        w->stats.c.tls_fail_reason[k]++;
    } else if (why == ZLB_FAIL_TLS_VERIFY) {
        if (err.kind != ZLB_NET_ERR_X509 || k < 0 || k >= ZLB_TLS_VERIFY_CODES_MAX)
            k = ZLB_TLS_VERIFY_CODES_MAX - 1;
        first = tc->tls_verify_code[k] == 0;
        tc->tls_verify_code[k]++;
        w->stats.c.tls_verify_code[k]++;
    } else {
        return;
    }
    if (first && s->conn.tls && zlb_log_level <= ZLB_LOG_WARN) {
        zlb_tls_error_format(&s->conn.tls->err, text, sizeof(text));
        zlb_log_warn("target %s: TLS failed (poller %d; later ones only counted): %s",
                     t->name ? t->name : t->host, w->id, text);
    }
}

static void count_ended(zlb_worker_t *w, uint16_t t, zlb_work_end_t k, zlb_fail_t why)
{
    zlb_counters_t *c[2] = {&w->stats.c, &w->tc[t]};

    for (int i = 0; i < 2; i++) {
        c[i]->open--;
        if (k == ZLB_END_BY_US)
            c[i]->closed_by_us++;
        else if (k == ZLB_END_BY_PEER)
            c[i]->closed_by_peer++;
        else
            c[i]->failed_after[why]++;
    }
    zlb_worker_publish_busy(w);
}

/* ---- target_reached: the single shared atomic, used only until the target is first met ----- */

static void ramp_add(zlb_worker_t *w, int delta)
{
    zlb_work_t *e = w->e;

    if (w->ramp_seen_done)
        return;
    if (atomic_load_explicit(&e->ramp_done, memory_order_acquire)) {
        w->ramp_seen_done = true;
        return;
    }
    if (delta < 0) {
        atomic_fetch_sub_explicit(&e->ramp_open, 1, memory_order_relaxed);
        return;
    }
    uint64_t n = atomic_fetch_add_explicit(&e->ramp_open, 1, memory_order_relaxed) + 1;
    if (n >= e->cfg->connections) {
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&e->target_reached_ns, &zero, zlb_now_ns());
        atomic_store_explicit(&e->ramp_done, true, memory_order_release);
        w->ramp_seen_done = true;
    }
}

/* One connection fewer owed to a lowered target, if any is owed. The scheduler may take the
 * debt back at any moment (a raise), hence the compare-and-swap. */
bool zlb_worker_take_debt(zlb_worker_t *w)
{
    int64_t x = atomic_load_explicit(&w->shed, memory_order_relaxed);

    while (x > 0)
        if (atomic_compare_exchange_weak_explicit(&w->shed, &x, x - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* ---- slots --------------------------------------------------------------------------------- */

static zlb_work_slot_t *slot_alloc(zlb_worker_t *w)
{
    zlb_work_t *e = w->e;
    zlb_list_t *n = zlb_list_pop_front(&w->free_slots);

    if (!n) {
        /* A chunk at a time, only when the free list is empty: a worker's memory follows its
         * share of the connections, and no allocation happens per attempt or per event. */
        zlb_work_slot_t *chunk = zlb_xcalloc(ZLB_WORK_CHUNK_SLOTS, sizeof(*chunk));
        uint8_t *ws = e->ws_size ? zlb_xcalloc(ZLB_WORK_CHUNK_SLOTS, e->ws_size) : NULL;
        /* TLS state lives apart from the slots so plain runs do not pay for it. */
        zlb_tls_conn_t *tc = e->any_tls ? zlb_xcalloc(ZLB_WORK_CHUNK_SLOTS, sizeof(*tc)) : NULL;

        if (w->nchunks == w->chunks_cap) {
            w->chunks_cap = w->chunks_cap ? 2 * w->chunks_cap : 8;
            w->chunks = zlb_xrealloc(w->chunks, w->chunks_cap * sizeof(*w->chunks));
            w->ws_chunks = zlb_xrealloc(w->ws_chunks, w->chunks_cap * sizeof(*w->ws_chunks));
            w->tls_chunks = zlb_xrealloc(w->tls_chunks, w->chunks_cap * sizeof(*w->tls_chunks));
        }
        w->chunks[w->nchunks] = chunk;
        w->ws_chunks[w->nchunks] = ws;
        w->tls_chunks[w->nchunks] = tc;
        w->nchunks++;
        for (size_t i = 0; i < ZLB_WORK_CHUNK_SLOTS; i++) {
            zlb_work_slot_t *s = &chunk[i];
            zlb_sendq_t *sq = NULL;
            s->ws = ws ? ws + i * e->ws_size : NULL;
            if (e->wl->slot_init)
                sq = e->wl->slot_init(e, s);
            zlb_conn_init(&s->conn, w->net, sq);
            if (tc)
                zlb_conn_set_tls(&s->conn, &tc[i]);
            zlb_timer_init(&s->timer, slot_on_timer);
            zlb_list_init(&s->qnode);
            s->phase = ZLB_SLOT_FREE;
            zlb_list_push_back(&w->free_slots, &s->qnode);
        }
        n = zlb_list_pop_front(&w->free_slots);
    }
    zlb_work_slot_t *s = ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode);
    s->backoff_exp = 0;
    s->reopen = false;
    return s;
}

void zlb_worker_slot_free(zlb_worker_t *w, zlb_work_slot_t *s)
{
    zlb_timer_stop(w->loop, &s->timer);
    if (zlb_list_linked(&s->qnode))
        zlb_list_remove(&s->qnode);
    s->phase = ZLB_SLOT_FREE;
    zlb_list_push_front(&w->free_slots, &s->qnode);
}

static bool opening_stopped(const zlb_worker_t *w)
{
    return w->closing || atomic_load_explicit(&w->e->stop_opening, memory_order_relaxed);
}

static uint16_t pick_target(zlb_worker_t *w)
{
    zlb_work_t *e = w->e;
    size_t best = 0;

    if (e->ntargets == 1)
        return 0;
    /* Smooth weighted round-robin (nginx): weights 5,1,1 give a a b a c a a, not a a a a a b c. */
    for (size_t i = 0; i < e->ntargets; i++) {
        w->swrr[i] += e->targets[i].weight;
        if (w->swrr[i] > w->swrr[best])
            best = i;
    }
    w->swrr[best] -= e->swrr_total;
    return (uint16_t)best;
}

static void worker_pause(zlb_worker_t *w)
{
    uint64_t now = zlb_loop_now(w->loop);

    /* A burst of failures in one pause window doubles the pause once, not once per failure. */
    if (now < w->pause_until)
        return;
    w->pause_ns = w->pause_ns ? ZLB_MIN(2 * w->pause_ns, PAUSE_MAX_NS) : PAUSE_MIN_NS;
    w->pause_until = now + w->pause_ns;
}

static void gate_at(zlb_worker_t *w, uint64_t when)
{
    if (zlb_timer_active(&w->gate) && w->gate.node.key <= when)
        return;
    zlb_timer_start_at(w->loop, &w->gate, when, 0);
}

/* Failure of an attempt that never got established, synchronous or not. */
static void attempt_failed(zlb_worker_t *w, zlb_work_slot_t *s, zlb_fail_t why)
{
    count_failed_before(w, s->target, why);
    if (zlb_net_fail_is_local(why))
        worker_pause(w);
    slot_end(w, s);
}

static void attempt_start(zlb_worker_t *w, zlb_work_slot_t *s)
{
    zlb_work_t *e = w->e;
    uint64_t now;
    int r;

    if (opening_stopped(w)) {
        zlb_worker_slot_free(w, s);
        return;
    }
    now = zlb_now_ns();
    if (!w->first_attempt_seen) {
        uint64_t zero = 0;
        w->first_attempt_seen = true;
        atomic_compare_exchange_strong(&e->first_attempt_ns, &zero, now);
    }
    s->phase = ZLB_SLOT_ACTIVE;
    s->target = pick_target(w);
    count_attempt(w, s->target);
    zlb_stats_record(&w->stats, ZLB_LAT_SCHEDULE_LAG,
                     now > s->intended_ns ? now - s->intended_ns : 0);
    r = zlb_conn_start(&s->conn, s->target, s->intended_ns);
    if (r < 0)
        attempt_failed(w, s, zlb_net_classify(-r));
}

/* Called when a connection or attempt ended for any reason but our own close: reconnect with
 * backoff where the workload wants it, else release the slot. */
static void slot_end(zlb_worker_t *w, zlb_work_slot_t *s)
{
    const zlb_workload_config_t *wl = &w->e->cfg->workload;
    uint64_t base, delay;

    zlb_timer_stop(w->loop, &s->timer);
    if (zlb_worker_take_debt(w)) {
        /* A lowered target: this one is not replaced. */
        s->reopen = false;
        zlb_worker_slot_free(w, s);
        return;
    }
    if (s->reopen && !opening_stopped(w)) {
        s->reopen = false;
        s->phase = ZLB_SLOT_QUEUED;
        zlb_list_push_back(&w->q_start, &s->qnode);
        zlb_worker_drain(w);
        return;
    }
    s->reopen = false;
    if (opening_stopped(w) || (!w->e->wl->always_reconnect && !wl->reconnect)) {
        zlb_worker_slot_free(w, s);
        return;
    }
    base = wl->backoff_min_ns ? wl->backoff_min_ns : 1;
    for (unsigned i = 0; i < s->backoff_exp && base < wl->backoff_max_ns; i++)
        base *= 2;
    if (wl->backoff_max_ns && base > wl->backoff_max_ns)
        base = wl->backoff_max_ns;
    if (s->backoff_exp < BACKOFF_EXP_MAX)
        s->backoff_exp++;
    /* Equal jitter: at least half the backoff, so a restarted target sees the reconnects of a
     * mass disconnect spread over the other half instead of arriving together. */
    delay = base / 2 + (base > 1 ? zlb_wl_rand(w) % (base - base / 2) : 0);
    s->phase = ZLB_SLOT_BACKOFF;
    s->intended_ns = zlb_loop_now(w->loop) + delay;
    zlb_timer_start_at(w->loop, &s->timer, s->intended_ns, 0);
}

/* Starts what the pause and the token bucket allow; arms the gate for the rest. */
void zlb_worker_drain(zlb_worker_t *w)
{
    zlb_list_t *n;
    uint64_t now = zlb_loop_update_time(w->loop);

    if (opening_stopped(w)) {
        while ((n = zlb_list_pop_front(&w->q_sched)))
            zlb_worker_slot_free(w, ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode));
        while ((n = zlb_list_pop_front(&w->q_start)))
            zlb_worker_slot_free(w, ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode));
        while ((n = zlb_list_pop_front(&w->q_retry)))
            zlb_worker_slot_free(w, ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode));
        return;
    }
    if (w->live.paused)
        return; /* the resume drains */
    while (!zlb_list_empty(&w->q_sched)) {
        zlb_work_slot_t *s = ZLB_CONTAINER_OF(w->q_sched.next, zlb_work_slot_t, qnode);
        if (now < w->pause_until) {
            gate_at(w, w->pause_until);
            return;
        }
        if (s->intended_ns > now) {
            /* Handed out ahead of time: start it on time, not early. */
            gate_at(w, s->intended_ns);
            break;
        }
        zlb_list_remove(&s->qnode);
        attempt_start(w, s);
        now = zlb_loop_update_time(w->loop);
    }
    while (!zlb_list_empty(&w->q_start)) {
        if (now < w->pause_until) {
            gate_at(w, w->pause_until);
            return;
        }
        n = zlb_list_pop_front(&w->q_start);
        attempt_start(w, ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode));
    }
    if (zlb_list_empty(&w->q_retry))
        return;
    w->tokens += (double)(now - w->tokens_at) * w->token_rate / 1e9;
    if (w->tokens > w->token_burst)
        w->tokens = w->token_burst;
    w->tokens_at = now;
    while (!zlb_list_empty(&w->q_retry)) {
        if (now < w->pause_until) {
            gate_at(w, w->pause_until);
            return;
        }
        if (w->tokens < 1.0) {
            gate_at(w, now + (uint64_t)((1.0 - w->tokens) / w->token_rate * 1e9) + 1);
            return;
        }
        n = zlb_list_pop_front(&w->q_retry);
        zlb_work_slot_t *s = ZLB_CONTAINER_OF(n, zlb_work_slot_t, qnode);
        /* A wait for a token is one the configuration asks for (the reconnect rate limit), like
         * the backoff before it: it moves the intended start to when this token came due, so
         * only a poller late beyond it shows as schedule lag. The bucket filled linearly, so
         * the token was there (tokens - 1) / rate before now. */
        uint64_t token_at = now - (uint64_t)((w->tokens - 1.0) / w->token_rate * 1e9);
        if (token_at > s->intended_ns && token_at <= now)
            s->intended_ns = token_at;
        w->tokens -= 1.0;
        attempt_start(w, s);
    }
}

static void gate_fired(zlb_loop_t *loop, zlb_timer_t *t)
{
    (void)loop;
    zlb_worker_drain(ZLB_CONTAINER_OF(t, zlb_worker_t, gate));
}

/* ---- services for workloads ---------------------------------------------------------------- */

/* Our decision to end an established connection (churn lifetime, a protocol error, close_all). */
void zlb_worker_close_established(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                                  zlb_fail_t why)
{
    zlb_timer_stop(w->loop, &s->timer);
    zlb_conn_close(&s->conn);
    count_ended(w, s->target, k, why);
    ramp_add(w, -1);
}

void zlb_wl_fail(zlb_worker_t *w, zlb_work_slot_t *s, zlb_fail_t why)
{
    const zlb_workload_ops_t *ops = w->e->wl;

    if (ops->closed)
        (void)ops->closed(w, s, ZLB_END_FAILED, &why);
    zlb_worker_close_established(w, s, ZLB_END_FAILED, why);
    slot_end(w, s);
}

void zlb_wl_close(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    zlb_worker_close_established(w, s, ZLB_END_BY_US, ZLB_FAIL_OTHER);
    if (opening_stopped(w) || zlb_worker_take_debt(w)) {
        zlb_worker_slot_free(w, s);
        return;
    }
    s->phase = ZLB_SLOT_QUEUED;
    s->intended_ns = due_ns;
    zlb_list_push_back(&w->q_start, &s->qnode);
    zlb_worker_drain(w);
}

int zlb_wl_send(zlb_worker_t *w, zlb_work_slot_t *s, const void *buf, size_t len)
{
    int r = zlb_conn_send(&s->conn, buf, len);

    if (r < 0) {
        zlb_tls_conn_t *tls = zlb_conn_tls(&s->conn);
        zlb_fail_t why = r == -ENOBUFS ? ZLB_FAIL_NO_BUFFERS : zlb_net_classify(-r);
        if (r == -EPROTO && tls) {
            /* The TLS layer failed the write (its error, not the socket's). */
            why = ZLB_FAIL_TLS_HANDSHAKE;
            count_tls_failure(w, s, why, zlb_net_err_tls(tls->err.reason));
        }
        zlb_wl_fail(w, s, why);
    }
    return r;
}

void zlb_wl_reopen(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    (void)w;
    s->reopen = true;
    s->intended_ns = due_ns;
}

void zlb_wl_timer_at(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t when_ns)
{
    zlb_timer_start_at(w->loop, &s->timer, when_ns, 0);
}

static void slot_on_timer(zlb_loop_t *loop, zlb_timer_t *t)
{
    zlb_work_slot_t *s = ZLB_CONTAINER_OF(t, zlb_work_slot_t, timer);
    zlb_worker_t *w = zlb_loop_data(loop);

    switch (s->phase) {
    case ZLB_SLOT_BACKOFF:
        s->phase = ZLB_SLOT_QUEUED;
        zlb_list_push_back(&w->q_retry, &s->qnode);
        zlb_worker_drain(w);
        break;
    case ZLB_SLOT_ACTIVE:
        if (zlb_conn_state(&s->conn) == ZLB_CONN_ESTABLISHED && w->e->wl->timer)
            w->e->wl->timer(w, s, t->node.key);
        break;
    default:
        break;
    }
}

/* ---- net callbacks ------------------------------------------------------------------------- */

static void on_established(zlb_conn_t *c)
{
    zlb_worker_t *w = conn_worker(c);
    zlb_work_slot_t *s = conn_slot(c);

    count_established(w, s->target);
    if (zlb_conn_tls(c))
        count_tls_done(w, s->target, zlb_tls_conn_resumed(zlb_conn_tls(c)));
    w->pause_ns = 0;
    s->backoff_exp = 0;
    ramp_add(w, +1);
    if (w->e->wl->established)
        w->e->wl->established(w, s);
}

static void on_data(zlb_conn_t *c, const uint8_t *buf, size_t n)
{
    zlb_worker_t *w = conn_worker(c);
    zlb_work_slot_t *s = conn_slot(c);

    w->stats.c.bytes_in += n;
    w->tc[s->target].bytes_in += n;
    if (w->e->wl->data)
        w->e->wl->data(w, s, buf, n);
}

static void on_sent(zlb_conn_t *c, size_t n)
{
    zlb_worker_t *w = conn_worker(c);
    zlb_work_slot_t *s = conn_slot(c);

    w->stats.c.bytes_out += n;
    w->tc[s->target].bytes_out += n;
    if (w->e->wl->sent)
        w->e->wl->sent(w, s, n);
}

static void on_closed(zlb_conn_t *c, zlb_fail_t why, zlb_net_err_t err, bool was_established)
{
    zlb_worker_t *w = conn_worker(c);
    zlb_work_slot_t *s = conn_slot(c);
    zlb_work_end_t k;

    count_tls_failure(w, s, why, err);
    if (!was_established) {
        attempt_failed(w, s, why);
        return;
    }
    /* A clean FIN is the peer's decision, unless the workload was still owed a reply. */
    k = why == ZLB_FAIL_EOF ? ZLB_END_BY_PEER : ZLB_END_FAILED;
    if (w->e->wl->closed)
        k = w->e->wl->closed(w, s, k, &why);
    count_ended(w, s->target, k, why);
    ramp_add(w, -1);
    slot_end(w, s);
}

static const zlb_conn_ops_t conn_ops = {
    .established = on_established,
    .data = on_data,
    .sent = on_sent,
    .closed = on_closed,
};

/* ---- tasks from other threads -------------------------------------------------------------- */

void zlb_worker_ref(zlb_worker_t *w)
{
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
}

void zlb_worker_unref(zlb_worker_t *w)
{
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1)
        free(w);
}

void zlb_worker_batch_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_work_batch_t *b = ZLB_CONTAINER_OF(t, zlb_work_batch_t, task);
    zlb_worker_t *w = b->w;
    uint32_t n = b->n;
    uint64_t intended[ZLB_WORK_BATCH_MAX];

    (void)loop;
    if (discarded) {
        zlb_worker_unref(w);
        return;
    }
    memcpy(intended, b->t, n * sizeof(intended[0]));
    /* The batch goes back to the scheduler before any attempt starts. */
    atomic_fetch_add_explicit(&w->consumed, 1, memory_order_release);
    w->stats.c.scheduled += n;
    if (!opening_stopped(w)) {
        for (uint32_t i = 0; i < n; i++) {
            zlb_work_slot_t *s = slot_alloc(w);
            s->intended_ns = intended[i];
            s->phase = ZLB_SLOT_QUEUED;
            zlb_list_push_back(&w->q_sched, &s->qnode);
        }
        zlb_worker_drain(w);
    }
    zlb_worker_unref(w);
}

static void close_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_worker_t *w = ZLB_CONTAINER_OF(t, zlb_worker_t, close_task);

    (void)loop;
    atomic_store_explicit(&w->close_queued, false, memory_order_release);
    if (discarded) {
        zlb_worker_unref(w);
        return;
    }
    w->closing = true;
    zlb_timer_stop(w->loop, &w->gate);
    zlb_timer_stop(w->loop, &w->shed_timer);
    for (size_t k = 0; k < w->nchunks; k++) {
        for (size_t i = 0; i < ZLB_WORK_CHUNK_SLOTS; i++) {
            zlb_work_slot_t *s = &w->chunks[k][i];
            zlb_conn_state_t st = zlb_conn_state(&s->conn);
            if (s->phase == ZLB_SLOT_FREE)
                continue;
            if (zlb_conn_in_flight(&s->conn)) {
                zlb_conn_close(&s->conn);
                count_failed_before(w, s->target, ZLB_FAIL_CANCELLED);
            } else if (st == ZLB_CONN_ESTABLISHED) {
                zlb_fail_t why = ZLB_FAIL_OTHER;
                if (w->e->wl->closed)
                    (void)w->e->wl->closed(w, s, ZLB_END_BY_US, &why);
                zlb_worker_close_established(w, s, ZLB_END_BY_US, ZLB_FAIL_OTHER);
            }
            zlb_worker_slot_free(w, s);
        }
    }
    zlb_worker_publish_busy(w);
    zlb_worker_unref(w);
}

void zlb_worker_post_close(zlb_worker_t *w)
{
    if (atomic_exchange_explicit(&w->close_queued, true, memory_order_acq_rel))
        return;
    zlb_worker_ref(w);
    zlb_loop_post(w->loop, &w->close_task);
}

void zlb_worker_copy_stats(zlb_worker_t *w, zlb_work_snapshot_t *s)
{
    zlb_stats_copy(&s->poller[w->id], &w->stats);
    for (size_t t = 0; t < w->e->ntargets; t++)
        zlb_counters_add(&s->target[t], &w->tc[t]);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int zlb_worker_create(zlb_work_t *e, int id, zlb_worker_t **out)
{
    const zlb_config_t *cfg = e->cfg;
    zlb_net_ctx_opts_t no;
    zlb_worker_t *w;
    int r;

    *out = NULL;
    if (posix_memalign((void **)&w, 64, sizeof(*w)) != 0)
        return -ENOMEM;
    memset(w, 0, sizeof(*w));
    atomic_init(&w->refs, 1);
    w->e = e;
    w->id = id;
    w->loop = zlb_pool_loop(e->pool, id);
    zlb_stats_init(&w->stats);
    w->tc = zlb_xcalloc(e->ntargets, sizeof(*w->tc));
    w->swrr = zlb_xcalloc(e->ntargets, sizeof(*w->swrr));
    zlb_list_init(&w->free_slots);
    zlb_list_init(&w->q_sched);
    zlb_list_init(&w->q_start);
    zlb_list_init(&w->q_retry);
    zlb_timer_init(&w->gate, gate_fired);
    zlb_task_init(&w->close_task, close_run);
    for (int i = 0; i < ZLB_WORK_RING_LEN; i++) {
        zlb_task_init(&w->ring[i].task, zlb_worker_batch_run);
        w->ring[i].w = w;
    }
    w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ull) ^ zlb_now_ns();
    if (!w->rng)
        w->rng = 1;
    w->live = e->live;
    zlb_timer_init(&w->shed_timer, zlb_worker_shed_fired);
    zlb_task_init(&w->steer_task, zlb_worker_steer_run);
    w->tokens = 1e300; /* capped to the burst */
    zlb_worker_set_token_rate(w, cfg->connect_rate);
    w->tokens_at = zlb_now_ns();

    memset(&no, 0, sizeof(no));
    no.loop = w->loop;
    no.ops = &conn_ops;
    no.resolver = e->resolver;
    no.stats = &w->stats;
    no.sock = &e->sockopts;
    no.family = cfg->family == ZLB_FAMILY_IPV4   ? AF_INET
                : cfg->family == ZLB_FAMILY_IPV6 ? AF_INET6
                                                 : AF_UNSPEC;
    no.connect_timeout_ns = cfg->connect_timeout_ns;
    no.send_timeout_ns = cfg->send_timeout_ns;
    no.dests = e->dests;
    no.ndests = e->ntargets;
    no.sources = e->sources;
    no.nsources = e->nsources;
    no.source_offset = (size_t)id;
    no.busy_traffic = e->wl->busy_traffic;
    r = zlb_net_ctx_create(&no, &w->net);
    if (r < 0) {
        zlb_worker_destroy(w);
        return r;
    }
    /* Before the loop runs any of ours: the workload derives its per-connection schedule. */
    if (e->wl->set_rate)
        e->wl->set_rate(w, w->live.rate);
    *out = w;
    return 0;
}

void zlb_worker_destroy(zlb_worker_t *w)
{
    if (!w)
        return;
    for (size_t k = 0; k < w->nchunks; k++) {
        for (size_t i = 0; i < ZLB_WORK_CHUNK_SLOTS; i++)
            zlb_conn_dispose(&w->chunks[k][i].conn);
        free(w->chunks[k]);
        free(w->ws_chunks[k]);
        free(w->tls_chunks[k]);
    }
    free(w->chunks);
    free(w->ws_chunks);
    free(w->tls_chunks);
    zlb_net_ctx_destroy(w->net);
    zlb_stats_dispose(&w->stats);
    free(w->tc);
    free(w->swrr);
    w->chunks = NULL;
    w->ws_chunks = NULL;
    w->tls_chunks = NULL;
    w->nchunks = 0;
    w->net = NULL;
    w->tc = NULL;
    w->swrr = NULL;
    zlb_worker_unref(w);
}
