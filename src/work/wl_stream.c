/* wl_stream.c -- the stream workload: each connection sends (workload.direction "send"),
 * receives ("receive") or both, as fast as the socket takes it or paced at workload.rate bytes/s,
 * after an optional first message sent once per connection; a connection that moves no data
 * for workload.stall_timeout while it wants to is counted as stalled (and, with stall_close,
 * failed as a timeout).
 *
 * Memory: what is sent comes from one read-only chunk of workload.chunk_size bytes made for the
 * whole engine; a connection's send queue only borrows it (segments of the same chunk), capped at
 * four chunks, so a reader that stops reading costs no memory of ours. What arrives is read into
 * the poller's one read buffer (net's) and dropped: no per-connection buffer either way.
 *
 * Pacing is intended-time based: tick k (k = 0, 1, ...) releases one piece at t0 + k * tick, where
 * t0 is the establishment and a piece is rate / PACE_TICKS_PER_S bytes (at least PACE_MIN_PIECE,
 * at most a chunk). A connection held back by a slow peer sends what came due as soon as it has
 * room again, so the average holds to the schedule; a timer that fires late records its lateness as
 * send_lag (a full queue's wait is the target's slowness and records nothing). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "work/work_internal.h"

/* Bytes one connection may queue in one go before the loop serves the others: on loopback a
 * fast reader can keep the socket from ever filling, and edge-triggered I/O would otherwise let
 * one connection write forever. The rest goes on the slot timer at once (the loop's next turn). */
#define PUMP_BUDGET (1u << 20)
/* At most this many paced writes per connection per second below chunk-sized pieces (20 ms
 * granularity), and none smaller than a segment's worth: 10,000 streams of a few kB/s each
 * then cost a timer run per second each, not fifty. */
#define PACE_TICKS_PER_S 50
#define PACE_MIN_PIECE 1448

typedef struct stream_data {
    size_t chunk_len;
    size_t cap;           /* each connection's send queue cap */
    const uint8_t *first; /* borrowed from the config; NULL: no first message */
    size_t first_len;
    double rate;       /* bytes/s per connection; 0: unpaced */
    uint64_t piece;    /* paced: bytes released per tick */
    double tick_ns;    /* paced: time between ticks */
    uint64_t stall_ns; /* 0: not watched */
    bool stall_close;
    bool sends, receives;
    _Alignas(64) uint8_t chunk[]; /* what every connection sends, read-only once made */
} stream_data_t;

typedef struct stream_state {
    zlb_sendq_t sq;
    uint64_t t0;          /* establishment: the pacing schedule's origin */
    uint64_t queued;      /* stream bytes queued since establishment (first message apart) */
    uint64_t last_in_ns;  /* last byte read, or establishment */
    uint64_t last_out_ns; /* last byte written, or when queued bytes started waiting */
    bool pumping;         /* inside pump: a write's sent callback must not pump again */
    bool yield;           /* pump stopped at its budget with room left: resume on the timer */
    bool full;            /* pump stopped for room in the queue: the sent callback resumes */
    bool stalled;         /* this stall is counted already; cleared by any progress */
} stream_state_t;

static int stream_init(zlb_work_t *e, size_t *state_size)
{
    const zlb_workload_config_t *wc = &e->cfg->workload;
    size_t len = wc->chunk_size;
    stream_data_t *d;

    if (len == 0)
        return -EINVAL;
    if (posix_memalign((void **)&d, 64, sizeof(*d) + len) != 0) {
        zlb_log_error("cannot allocate a %zu-byte stream chunk", len);
        return -ENOMEM;
    }
    memset(d, 0, sizeof(*d));
    d->chunk_len = len;
    for (size_t i = 0; i < len; i++)
        d->chunk[i] = (uint8_t)('a' + i % 26);
    d->first = wc->first_message;
    d->first_len = wc->first_message ? wc->first_message_len : 0;
    /* As many chunks as the queue has segments: one sendmsg then writes up to four chunks
     * (256 KiB of 64 KiB ones), and fewer, larger writes measured faster (bench/run stream_send:
     * 4.4 Gbit/s at 64 KiB a call, 5.6 at 256 KiB, 7.1 at 1 MiB). Only pointers: no memory. */
    d->cap = d->first_len + ZLB_SENDQ_SEGS * len;
    d->sends = wc->direction != ZLB_STREAM_RECEIVE;
    d->receives = wc->direction != ZLB_STREAM_SEND;
    d->rate = d->sends ? wc->rate : 0;
    if (d->rate > 0) {
        double piece = ZLB_MAX(d->rate / PACE_TICKS_PER_S, (double)PACE_MIN_PIECE);
        d->piece = piece > (double)len ? len : (uint64_t)piece;
        d->tick_ns = (double)d->piece * 1e9 / d->rate;
    }
    d->stall_ns = wc->stall_timeout_ns;
    d->stall_close = wc->stall_close;
    e->wl_data = d;
    *state_size = sizeof(stream_state_t);
    return 0;
}

static void stream_dispose(zlb_work_t *e)
{
    free(e->wl_data);
    e->wl_data = NULL;
}

static zlb_sendq_t *stream_slot_init(zlb_work_t *e, zlb_work_slot_t *s)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = e->wl_data;

    zlb_sendq_init(&st->sq, d->cap);
    return &st->sq;
}

/* Paced: bytes the schedule has released by now (tick k releases the (k+1)-th piece at
 * t0 + k * tick). */
static uint64_t released(const stream_data_t *d, const stream_state_t *st, uint64_t now)
{
    double k = now > st->t0 ? (double)(now - st->t0) / d->tick_ns : 0.0;
    return ((uint64_t)k + 1) * d->piece;
}

/* Paced: when the tick that releases bytes beyond those queued is due. */
static uint64_t pace_due(const stream_data_t *d, const stream_state_t *st)
{
    return st->t0 + (uint64_t)((double)(st->queued / d->piece) * d->tick_ns);
}

static bool has_room(const stream_state_t *st, size_t len)
{
    return st->sq.count < ZLB_SENDQ_SEGS && st->sq.bytes + len <= st->sq.cap;
}

/* Queues what the schedule (or, unpaced, the queue's room) allows, at most PUMP_BUDGET bytes.
 * late_from: the paced tick this call was due at, to record the lateness of its first write
 * (0: none). Returns false when a write failed: the slot is the worker's again. */
static bool pump(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t now, uint64_t late_from)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    uint64_t start = st->queued;

    st->pumping = true;
    st->yield = st->full = false;
    for (;;) {
        size_t len = d->chunk_len;
        if (d->rate > 0) {
            uint64_t due = released(d, st, now);
            if (due <= st->queued)
                break;
            len = (size_t)ZLB_MIN(due - st->queued, (uint64_t)d->chunk_len);
        }
        if (!has_room(st, len)) {
            st->full = true; /* the sent callback comes back once the socket took some */
            break;
        }
        if (st->queued - start >= PUMP_BUDGET) {
            st->yield = true;
            break;
        }
        if (late_from) {
            zlb_stats_record(&w->stats, ZLB_LAT_SEND_LAG, now > late_from ? now - late_from : 0);
            late_from = 0;
        }
        if (st->sq.bytes == 0)
            st->last_out_ns = now; /* a wait for the socket starts now, not at the last write */
        st->queued += len;
        if (zlb_wl_send(w, s, d->chunk, len) < 0)
            return false;
        if (zlb_conn_state(&s->conn) != ZLB_CONN_ESTABLISHED)
            return false;
    }
    st->pumping = false;
    return true;
}

/* The next moment the slot timer must look at the connection: a yield, a paced tick (only
 * while the queue has room for it: otherwise the sent callback resumes), the stall deadline. */
static void rearm(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t now)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    uint64_t next = UINT64_MAX;

    if (st->yield)
        next = now;
    else if (d->rate > 0 && !st->full)
        next = pace_due(d, st);
    if (d->stall_ns) {
        uint64_t t = UINT64_MAX;
        if (st->stalled)
            t = now + d->stall_ns; /* look again for the progress that ends this stall */
        else {
            if (st->sq.bytes)
                t = st->last_out_ns + d->stall_ns;
            if (d->receives)
                t = ZLB_MIN(t, st->last_in_ns + d->stall_ns);
        }
        next = ZLB_MIN(next, t);
    }
    /* Only ever earlier: a deadline pushed back by progress is found when the timer fires,
     * which costs one timer run per stall_timeout instead of a heap update per write. */
    if (next != UINT64_MAX && (!zlb_timer_active(&s->timer) || s->timer.node.key > next))
        zlb_wl_timer_at(w, s, next);
}

/* Counts a stall once; with stall_close fails the connection (then returns false). */
static bool check_stall(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t now)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    zlb_counters_t *c[2];

    if (!d->stall_ns || st->stalled)
        return true;
    bool out = st->sq.bytes && now - st->last_out_ns >= d->stall_ns;
    bool in = d->receives && now - st->last_in_ns >= d->stall_ns;
    if (!out && !in)
        return true;
    st->stalled = true;
    zlb_wl_counters(w, s, c);
    c[0]->stalled++;
    c[1]->stalled++;
    if (d->stall_close) {
        zlb_wl_fail(w, s, ZLB_FAIL_TIMEOUT);
        return false;
    }
    return true;
}

static void stream_established(zlb_worker_t *w, zlb_work_slot_t *s)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);

    st->t0 = now;
    st->queued = 0;
    st->last_in_ns = st->last_out_ns = now;
    st->pumping = st->yield = st->full = st->stalled = false;
    if (d->first) {
        /* Once per connection, ahead of the stream: a subscription or a protocol's hello. */
        st->pumping = true;
        if (zlb_wl_send(w, s, d->first, d->first_len) < 0)
            return;
        st->pumping = false;
    }
    if (d->sends && !pump(w, s, now, 0))
        return;
    rearm(w, s, now);
}

static void stream_timer(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);

    if (!check_stall(w, s, now))
        return;
    if (d->sends) {
        /* Lateness only for a tick that found room: one fired for a yield or a stall check
         * is nobody's schedule. */
        uint64_t late =
            d->rate > 0 && !st->yield && !st->full && due_ns >= pace_due(d, st) ? due_ns : 0;
        if (!pump(w, s, now, late))
            return;
    }
    rearm(w, s, now);
}

static void stream_data_in(zlb_worker_t *w, zlb_work_slot_t *s, const uint8_t *buf, size_t n)
{
    stream_state_t *st = s->ws;

    (void)buf;
    (void)n;
    st->last_in_ns = zlb_loop_now(w->loop);
    st->stalled = false;
}

static void stream_sent(zlb_worker_t *w, zlb_work_slot_t *s, size_t n)
{
    stream_state_t *st = s->ws;
    uint64_t now = zlb_loop_now(w->loop);

    (void)n;
    st->last_out_ns = now;
    st->stalled = false;
    /* Room in the queue again. Not from inside pump's own write (it goes on by itself). */
    if (st->pumping || !((const stream_data_t *)w->e->wl_data)->sends)
        return;
    if (pump(w, s, now, 0))
        rearm(w, s, now);
}

const zlb_workload_ops_t zlb_wl_stream = {
    .name = "stream",
    .busy_traffic = true,
    .init = stream_init,
    .dispose = stream_dispose,
    .slot_init = stream_slot_init,
    .established = stream_established,
    .data = stream_data_in,
    .sent = stream_sent,
    .timer = stream_timer,
};
