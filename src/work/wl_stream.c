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
 * send_lag (a full queue's wait is the target's slowness and records nothing).
 *
 * Live rate (set_rate: stages, PATCH /run). The rate in force is each poller's own (d->pace[id],
 * written by its steer task only). A change re-times every running connection from the moment
 * of the change (zlb_stream_retime): what the old schedule released stays released (owed bytes of
 * a slow peer stay owed), nothing more is released at once, and the next piece comes when the
 * rest of the piece already out would have lasted at the new rate (at most 1 s or a tick), so a
 * rate moved every 100 ms by a stage neither bursts nor stalls and the bytes follow the integral
 * of the rates. From unpaced (0) to a rate, or at a resume, the schedule starts
 * afresh at a random phase within one tick (what the unpaced stream had queued, at most four
 * chunks, still goes out: queued bytes are not taken back). To 0, the connection fills its queue
 * on the loop's next turn. New connections take the rate in force.
 *
 * Pause: nothing is sent while paused (bytes already queued still drain, what arrives is still
 * read); at the resume each paced connection's schedule starts afresh, so the pause is neither a
 * burst nor send_lag. The first message of a connection established in a pause is still sent
 * (it is the connection's handshake, not load). */
#include <errno.h>
#include <math.h>
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

/* A poller's pacing, on its own cache line: read per write by its connections, written only by
 * its steer task (set_rate). */
typedef struct stream_pace_slot {
    double rate;            /* bytes/s per connection in force here; 0: unpaced */
    zlb_stream_pace_t p;    /* its schedule */
    zlb_stream_pace_t prev; /* the schedule a change re-times from (set_rate only) */
} __attribute__((aligned(64))) stream_pace_slot_t;

typedef struct stream_data {
    size_t chunk_len;
    size_t cap;           /* each connection's send queue cap */
    const uint8_t *first; /* borrowed from the config; NULL: no first message */
    size_t first_len;
    stream_pace_slot_t *pace; /* owned, one per poller (zlb_worker_t.id) */
    uint64_t stall_ns;        /* 0: not watched */
    bool stall_close;
    bool sends, receives;
    _Alignas(64) uint8_t chunk[]; /* what every connection sends, read-only once made */
} stream_data_t;

typedef struct stream_state {
    zlb_sendq_t sq;
    uint64_t t0; /* paced: the schedule's origin (establishment, or its last re-time) */
    /* Stream bytes queued since t0 on the schedule's count (first message apart); negative:
     * bytes an earlier schedule released that are still owed (a slow peer's) */
    int64_t queued;
    uint64_t last_in_ns;  /* last byte read, or establishment */
    uint64_t last_out_ns; /* last byte written, or when queued bytes started waiting */
    bool pumping;         /* inside pump: a write's sent callback must not pump again */
    bool yield;           /* pump stopped at its budget with room left: resume on the timer */
    bool full;            /* pump stopped for room in the queue: the sent callback resumes */
    bool stalled;         /* this stall is counted already; cleared by any progress */
} stream_state_t;

/* ---- the schedule's arithmetic (pure) ------------------------------------------------------ */

void zlb_stream_pace_of(double rate, size_t chunk_len, zlb_stream_pace_t *out)
{
    *out = (zlb_stream_pace_t){0};
    if (!(rate > 0) || chunk_len == 0)
        return;
    double piece = ZLB_MAX(rate / PACE_TICKS_PER_S, (double)PACE_MIN_PIECE);
    out->piece = piece > (double)chunk_len ? chunk_len : (uint64_t)piece;
    out->tick_ns = (double)out->piece * 1e9 / rate;
}

int64_t zlb_stream_released(const zlb_stream_pace_t *p, uint64_t t0, uint64_t now)
{
    if (now < t0)
        return 0;
    double k = (double)(now - t0) / p->tick_ns;
    return ((int64_t)k + 1) * (int64_t)p->piece;
}

uint64_t zlb_stream_due(const zlb_stream_pace_t *p, uint64_t t0, int64_t queued)
{
    if (queued <= 0)
        return t0;
    /* Rounded up: at that moment zlb_stream_released has released it (a timer set a
     * nanosecond early would find nothing and come back at once). */
    return t0 + (uint64_t)ceil((double)((uint64_t)queued / p->piece) * p->tick_ns);
}

void zlb_stream_retime(const zlb_stream_pace_t *from, const zlb_stream_pace_t *to, uint64_t now,
                       uint64_t phase_ns, uint64_t *t0, int64_t *queued)
{
    if (!to->piece)
        return; /* unpaced: the schedule is not looked at */
    if (!from || !from->piece) {
        *t0 = now + phase_ns;
        *queued = 0;
        return;
    }
    /* The piece of the old tick in progress went out whole at its start: the share of it not
     * yet due (its bytes) lasts that long at the new rate before the new schedule's first piece;
     * so the bytes follow the integral of the rates however often they change. At most a second
     * or one new tick: a steep cut (2 MB/s to 1 kB/s leaves 40 s of a 40 kB piece) does not
     * silence the connection for longer than that (the rest is forgiven). */
    double next = (double)*t0;
    if (now >= *t0)
        next = (double)*t0 + (floor((double)(now - *t0) / from->tick_ns) + 1) * from->tick_ns;
    double ahead = (next - (double)now) / from->tick_ns * (double)from->piece;
    double wait = ZLB_MIN(ahead / (double)to->piece * to->tick_ns, ZLB_MAX(to->tick_ns, 1e9));
    *queued -= zlb_stream_released(from, *t0, now);
    *t0 = now + (uint64_t)ZLB_MAX(wait, 0.0);
}

/* ---- the workload -------------------------------------------------------------------------- */

static const zlb_stream_pace_t *pace_of(const zlb_worker_t *w)
{
    return &((const stream_data_t *)w->e->wl_data)->pace[w->id].p;
}

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
    /* Each poller's rate comes from its live values (set_rate, before its loop runs). */
    if (posix_memalign((void **)&d->pace, 64, (size_t)e->npollers * sizeof(*d->pace)) != 0) {
        free(d);
        return -ENOMEM;
    }
    memset(d->pace, 0, (size_t)e->npollers * sizeof(*d->pace));
    d->stall_ns = wc->stall_timeout_ns;
    d->stall_close = wc->stall_close;
    e->wl_data = d;
    *state_size = sizeof(stream_state_t);
    return 0;
}

static void stream_dispose(zlb_work_t *e)
{
    stream_data_t *d = e->wl_data;

    if (d)
        free(d->pace);
    free(d);
    e->wl_data = NULL;
}

static zlb_sendq_t *stream_slot_init(zlb_work_t *e, zlb_work_slot_t *s)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = e->wl_data;

    zlb_sendq_init(&st->sq, d->cap);
    return &st->sq;
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
    const zlb_stream_pace_t *p = pace_of(w);
    int64_t start = st->queued;

    st->pumping = true;
    st->yield = st->full = false;
    for (;;) {
        size_t len = d->chunk_len;
        if (zlb_wl_paused(w))
            break;
        if (p->piece) {
            int64_t due = zlb_stream_released(p, st->t0, now);
            if (due <= st->queued)
                break;
            len = (size_t)ZLB_MIN((uint64_t)(due - st->queued), (uint64_t)d->chunk_len);
        }
        if (!has_room(st, len)) {
            st->full = true; /* the sent callback comes back once the socket took some */
            break;
        }
        if (st->queued - start >= (int64_t)PUMP_BUDGET) {
            st->yield = true;
            break;
        }
        if (late_from) {
            zlb_stats_record(&w->stats, ZLB_LAT_SEND_LAG, now > late_from ? now - late_from : 0);
            late_from = 0;
        }
        if (st->sq.bytes == 0)
            st->last_out_ns = now; /* a wait for the socket starts now, not at the last write */
        st->queued += (int64_t)len;
        if (zlb_wl_send(w, s, d->chunk, len) < 0)
            return false;
        if (zlb_conn_state(&s->conn) != ZLB_CONN_ESTABLISHED)
            return false;
    }
    st->pumping = false;
    return true;
}

/* The next moment the slot timer must look at the connection: a yield, a paced tick (only
 * while the queue has room for it: otherwise the sent callback resumes; never in a pause: the
 * resume re-times), the stall deadline. */
static void rearm(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t now)
{
    stream_state_t *st = s->ws;
    const stream_data_t *d = w->e->wl_data;
    const zlb_stream_pace_t *p = pace_of(w);
    uint64_t next = UINT64_MAX;

    if (st->yield)
        next = now;
    else if (p->piece && !st->full && !zlb_wl_paused(w))
        next = zlb_stream_due(p, st->t0, st->queued);
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
    const zlb_stream_pace_t *p = pace_of(w);
    uint64_t now = zlb_loop_update_time(w->loop);

    if (!check_stall(w, s, now))
        return;
    if (d->sends) {
        /* Lateness only for a tick that found room: one fired for a yield or a stall check
         * is nobody's schedule. */
        uint64_t late =
            p->piece && !st->yield && !st->full && due_ns >= zlb_stream_due(p, st->t0, st->queued)
                ? due_ns
                : 0;
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

/* A rate change (from->to) or the resume (from NULL) for one running connection: re-timed from
 * now (the loop's time of this turn, which the steer task runs in); whatever is due then (owed
 * bytes, or all it may queue when unpaced) goes out on the loop's next turn, not inside this walk
 * over every connection. */
static void retime_one(zlb_worker_t *w, zlb_work_slot_t *s, const zlb_stream_pace_t *from)
{
    stream_state_t *st = s->ws;
    const zlb_stream_pace_t *p = pace_of(w);
    uint64_t now = zlb_loop_now(w->loop);
    uint64_t phase = p->piece ? zlb_wl_rand(w) % ZLB_MAX((uint64_t)p->tick_ns, 1) : 0;

    zlb_stream_retime(from, p, now, phase, &st->t0, &st->queued);
    if (!st->full && (!p->piece || zlb_stream_released(p, st->t0, now) > st->queued))
        st->yield = true;
    rearm(w, s, now);
}

static void rate_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    const stream_data_t *d = w->e->wl_data;
    retime_one(w, s, &d->pace[w->id].prev);
}

static void resume_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    retime_one(w, s, NULL);
}

static void stream_set_rate(zlb_worker_t *w, double rate)
{
    stream_data_t *d = w->e->wl_data;
    stream_pace_slot_t *ps = &d->pace[w->id];

    /* Also called when only the connections changed: a stream's rate is per connection. */
    if (!d->sends || rate == ps->rate)
        return;
    ps->prev = ps->p;
    ps->rate = rate;
    zlb_stream_pace_of(rate, d->chunk_len, &ps->p);
    /* Also called once before the loop runs, from the creating thread, with no connection to
     * walk: nothing of the loop's is touched then. */
    if (!zlb_wl_paused(w)) /* paused: the resume re-times every connection anyway */
        zlb_wl_each_established(w, rate_one);
}

static void stream_pause(zlb_worker_t *w, bool paused)
{
    const stream_data_t *d = w->e->wl_data;

    /* Pausing needs nothing here: pump sends nothing and rearm arms no tick while paused. */
    if (paused || !d->sends)
        return;
    zlb_loop_update_time(w->loop);
    zlb_wl_each_established(w, resume_one);
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
    .set_rate = stream_set_rate,
    .pause = stream_pause,
};
