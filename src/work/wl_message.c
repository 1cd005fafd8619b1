/* wl_message.c -- raw request/response over TCP or TLS (workload.type "message"), and echo,
 * which is this workload with expect "echo". Every connection sends workload.message (bytes made
 * once, at load) and reads a reply framed by workload.expect: as many bytes as the message
 * (echo), a fixed count, or up to a delimiter; with expect_prefix every reply must start with
 * those bytes. Replies come back in order, so up to workload.pipeline messages may be in flight
 * on a connection, each matched to the oldest.
 *
 * Rate, as the http workload's requests. message_rate > 0 is an open loop for the whole run:
 * each connection owns an arithmetic schedule (one message every connections / message_rate
 * seconds, phase spread at random); message_interval > 0 (echo's key) is the same schedule per
 * connection, starting when it is established. A message due while its connection is busy
 * (pipeline full, send queue full) waits as a count: its intended time follows from the
 * schedule. message_rt runs from the intended send time (a stalled target shows as latency, not
 * as fewer samples), message_service from the write; send_lag is the write's lateness against
 * the later of its intended time and the moment its connection had room. Both 0: a closed loop,
 * pipeline messages in flight, the next sent as a reply frees its place.
 *
 * Live rate (set_rate: stages, PATCH /run; message_rate runs only). The interval becomes
 * connections / rate from the change on; a connection whose next send is further off than the
 * new interval is brought forward (a fresh random phase), so a raise shows at once; rate 0 sends
 * nothing new. Pause: nothing is sent while paused (replies to messages in flight are still
 * read and counted); messages queued on a busy connection when it began, and every message that
 * falls due in it, are dropped, never sent; at the resume each schedule starts again (a fresh
 * phase for message_rate, at once for message_interval), so the pause is never latency.
 *
 * Failures: a reply that does not start with expect_prefix, an echo that is not the message,
 * bytes nobody asked for, or a delimited reply longer than max_reply_size is a protocol failure
 * of the connection (failed_after[protocol]); a peer that closes owing replies fails it too
 * (eof). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "work/work_internal.h"

/* Pipelined messages are written from one buffer holding the message this many times at most
 * (fewer when that would pass REP_MAX_BYTES), so a burst is one write, not one per message. */
#define REP_MAX_BYTES (1u << 20)
#define DELIM_MAX 64

typedef struct msg_flight {
    uint64_t intended_ns, sent_ns;
} msg_flight_t;

typedef struct msg_state {
    zlb_sendq_t sq;
    uint64_t gap_ns;  /* open loop: this connection's interval (0: nothing due, rate 0) */
    uint64_t next_ns; /* open loop: intended send time of the next message not yet due */
    uint64_t got;     /* bytes of the oldest reply read so far */
    uint32_t queued;  /* open loop: due, not yet sent (the connection was busy) */
    uint16_t head, n; /* in-flight ring: oldest at head */
    uint8_t match;    /* delimiter: bytes of it matched at the end of what was read */
    bool pumping;     /* inside pump: a write's sent callback must not pump again */
    msg_flight_t fl[];
} msg_state_t;

/* Made once before the run, read-only after (every poller shares it). */
typedef struct msg_data {
    const uint8_t *msg; /* borrowed from the config, or gen */
    size_t len;
    uint8_t *gen; /* owned: the generated message (message_size bytes "abc..."), or NULL */
    uint8_t *rep; /* owned: the message rep_n times over */
    uint32_t rep_n;
    uint32_t pipeline;
    zlb_expect_t expect;
    uint64_t reply_len; /* echo and bytes */
    uint64_t max_reply; /* delimiter */
    const uint8_t *prefix;
    size_t prefix_len;
    uint8_t delim[DELIM_MAX];
    uint8_t fail[DELIM_MAX]; /* KMP: longest proper border of delim[0..i] */
    uint8_t delim_len;
    uint64_t interval_ns; /* message_interval: a connection's fixed gap (when not rate-driven) */
    bool open_loop;       /* message_rate or message_interval: sends follow a schedule */
    bool by_rate; /* message_rate (or a stage sets it): the gap is w->wl_gap_ns, random phases */
} msg_data_t;

#define COUNT(w, s, field, d)                                                                      \
    do {                                                                                           \
        zlb_counters_t *c_[2];                                                                     \
        zlb_wl_counters((w), (s), c_);                                                             \
        c_[0]->field += (uint64_t)(d);                                                             \
        c_[1]->field += (uint64_t)(d);                                                             \
    } while (0)

/* ---- made once ------------------------------------------------------------------------------ */

static int msg_init(zlb_work_t *e, size_t *state_size)
{
    const zlb_workload_config_t *wl = &e->cfg->workload;
    msg_data_t *d = calloc(1, sizeof(*d));

    if (!d)
        return -ENOMEM;
    if (wl->message) {
        d->msg = wl->message;
        d->len = wl->message_len;
    } else {
        d->len = wl->message_size;
        if (d->len == 0) {
            free(d);
            return -EINVAL;
        }
        d->gen = malloc(d->len);
        if (!d->gen) {
            zlb_log_error("cannot allocate a %zu-byte message", d->len);
            free(d);
            return -ENOMEM;
        }
        for (size_t i = 0; i < d->len; i++)
            d->gen[i] = (uint8_t)('a' + i % 26);
        d->msg = d->gen;
    }
    d->pipeline = ZLB_MAX(wl->pipeline, 1u);
    d->rep_n = (uint32_t)ZLB_MIN((size_t)d->pipeline, ZLB_MAX(REP_MAX_BYTES / d->len, (size_t)1));
    d->rep = malloc(d->len * d->rep_n);
    if (!d->rep) {
        zlb_log_error("cannot allocate %zu bytes of pipelined messages", d->len * d->rep_n);
        free(d->gen);
        free(d);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < d->rep_n; i++)
        memcpy(d->rep + i * d->len, d->msg, d->len);
    d->expect = wl->expect;
    d->reply_len = wl->expect == ZLB_EXPECT_BYTES ? wl->expect_bytes : d->len;
    d->max_reply = wl->max_reply_size;
    d->prefix = wl->expect_prefix;
    d->prefix_len = wl->expect_prefix ? wl->expect_prefix_len : 0;
    if (wl->expect == ZLB_EXPECT_DELIMITER) {
        d->delim_len = (uint8_t)ZLB_MIN(wl->expect_delimiter_len, (size_t)DELIM_MAX);
        memcpy(d->delim, wl->expect_delimiter, d->delim_len);
        /* The KMP failure function: a delimiter split across reads, or one that overlaps
         * itself ("aab" in "aaab"), is found by one pass over each byte. */
        d->fail[0] = 0;
        for (uint32_t i = 1, k = 0; i < d->delim_len; i++) {
            while (k > 0 && d->delim[i] != d->delim[k])
                k = d->fail[k - 1];
            if (d->delim[i] == d->delim[k])
                k++;
            d->fail[i] = (uint8_t)k;
        }
    }
    /* The rate's gap is derived per poller by set_rate (from the live connections and rate). */
    d->by_rate = wl->message_rate > 0 || zlb_config_rate_is_live(e->cfg);
    d->interval_ns = d->by_rate ? 0 : wl->message_interval_ns;
    d->open_loop = d->by_rate || d->interval_ns > 0;
    e->wl_data = d;
    *state_size = sizeof(msg_state_t) + d->pipeline * sizeof(msg_flight_t);
    return 0;
}

static void msg_dispose(zlb_work_t *e)
{
    msg_data_t *d = e->wl_data;
    if (!d)
        return;
    free(d->rep);
    free(d->gen);
    free(d);
    e->wl_data = NULL;
}

static zlb_sendq_t *msg_slot_init(zlb_work_t *e, zlb_work_slot_t *s)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = e->wl_data;

    /* The queue holds borrowed pointers into d->rep: its cap only bounds what may wait
     * unwritten, a full pipeline. */
    zlb_sendq_init(&st->sq, d->len * d->pipeline);
    return &st->sq;
}

/* ---- sending -------------------------------------------------------------------------------- */

/* Sends k messages in one write, the i-th meant for intended(i); ready_ns: when the connection
 * had room (0: all along). False when the connection failed (the slot is the worker's again). */
static bool send_burst(zlb_worker_t *w, zlb_work_slot_t *s, uint32_t k, uint64_t first_intended,
                       uint64_t step, uint64_t ready_ns, uint64_t now)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;

    for (uint32_t i = 0; i < k; i++) {
        msg_flight_t *f = &st->fl[(st->head + st->n) % d->pipeline];
        uint64_t intended = first_intended + i * step;
        f->intended_ns = intended;
        f->sent_ns = now;
        if (st->n++ == 0) {
            st->got = 0;
            st->match = 0;
        }
        uint64_t from = ready_ns > intended ? ready_ns : intended;
        zlb_stats_record(&w->stats, ZLB_LAT_SEND_LAG, now > from ? now - from : 0);
    }
    return zlb_wl_send(w, s, d->rep, k * d->len) == 0;
}

/* Sends what the connection has room for: queued messages (open loop, oldest first, each with
 * its intended time) or, in a closed loop, new ones due now. */
static bool pump(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t ready_ns)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);
    bool ok = true;

    if (zlb_wl_paused(w))
        return true;
    st->pumping = true;
    while (st->n < d->pipeline && st->sq.count < ZLB_SENDQ_SEGS) {
        uint32_t k = ZLB_MIN(d->pipeline - st->n, d->rep_n);
        uint64_t first;
        if (d->open_loop) {
            if (!st->queued)
                break;
            k = ZLB_MIN(k, st->queued);
            /* The queued messages are the schedule's last `queued` slots before next_ns. */
            first = st->next_ns - (uint64_t)st->queued * st->gap_ns;
            st->queued -= k;
        } else {
            first = now;
        }
        if (!send_burst(w, s, k, first, st->gap_ns, ready_ns, now)) {
            ok = false; /* the slot is the worker's now: touch nothing more */
            break;
        }
    }
    if (ok)
        st->pumping = false;
    return ok;
}

static void msg_established(zlb_worker_t *w, zlb_work_slot_t *s)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);

    st->head = st->n = 0;
    st->queued = 0;
    st->got = 0;
    st->match = 0;
    st->pumping = false;
    st->gap_ns = d->by_rate ? w->wl_gap_ns : d->interval_ns;
    if (!d->open_loop) {
        (void)pump(w, s, 0);
        return;
    }
    if (!st->gap_ns || zlb_wl_paused(w))
        return; /* rate 0 or paused: the next rate or the resume arms the schedule */
    /* message_rate: a random phase, so that connections opened together do not send together.
     * message_interval: the first message is due at establishment, as echo always did. */
    st->next_ns = d->by_rate ? now + zlb_wl_rand(w) % st->gap_ns : s->conn.t_established;
    if (st->next_ns > now) {
        zlb_wl_timer_at(w, s, st->next_ns);
        return;
    }
    st->queued = 1;
    st->next_ns += st->gap_ns;
    if (pump(w, s, 0))
        zlb_wl_timer_at(w, s, st->next_ns);
}

static void msg_rephase(zlb_worker_t *w, zlb_work_slot_t *s)
{
    msg_state_t *st = s->ws;
    zlb_wl_pace_rephase(w, s, &st->gap_ns, &st->next_ns, st->queued);
}

static void msg_set_rate(zlb_worker_t *w, double rate)
{
    const msg_data_t *d = w->e->wl_data;

    if (!d->by_rate)
        return; /* a closed loop or a per-connection interval has no whole-run rate */
    zlb_wl_pace_set_rate(w, rate);
    if (!zlb_wl_paused(w))
        zlb_wl_each_established(w, msg_rephase);
}

static void msg_pause_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    msg_state_t *st = s->ws;
    (void)w;
    st->queued = 0; /* due but never sent: dropped, as what falls due in the pause */
}

static void msg_resume_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;

    if (!d->open_loop) {
        (void)pump(w, s, 0);
        return;
    }
    zlb_timer_stop(w->loop, &s->timer);
    if (d->by_rate) {
        msg_rephase(w, s);
        return;
    }
    /* message_interval: the schedule starts again now. */
    st->gap_ns = d->interval_ns;
    st->next_ns = zlb_loop_update_time(w->loop);
    zlb_wl_timer_at(w, s, st->next_ns);
}

static void msg_pause(zlb_worker_t *w, bool paused)
{
    zlb_wl_each_established(w, paused ? msg_pause_one : msg_resume_one);
}

static bool msg_busy(zlb_worker_t *w, zlb_work_slot_t *s)
{
    const msg_state_t *st = s->ws;
    (void)w;
    return st->n > 0;
}

static void msg_timer(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);

    (void)due_ns;
    /* Paused or rate 0: nothing falls due (the resume or the next rate arms the timer again). */
    if (zlb_wl_paused(w) || (d->by_rate && !w->wl_gap_ns))
        return;
    if (!st->queued && d->by_rate)
        st->gap_ns = w->wl_gap_ns;
    /* Every message whose time has come joins the queue, then what fits goes out. */
    while (st->next_ns <= now) {
        st->queued++;
        st->next_ns += st->gap_ns;
    }
    if (!pump(w, s, 0))
        return;
    zlb_wl_timer_at(w, s, st->next_ns);
}

static void msg_sent(zlb_worker_t *w, zlb_work_slot_t *s, size_t n)
{
    msg_state_t *st = s->ws;
    (void)n;
    /* Room in the send queue again: queued messages may go. Not from inside pump's own write
     * (zlb_conn_send reports what it wrote at once), which would re-enter it. */
    if (st->queued && !st->pumping && zlb_conn_state(&s->conn) == ZLB_CONN_ESTABLISHED)
        (void)pump(w, s, zlb_loop_event_time(w->loop));
}

/* ---- replies -------------------------------------------------------------------------------- */

/* The oldest message's reply ended at t. */
static void complete(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t t)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;
    const msg_flight_t *f = &st->fl[st->head];

    /* An event time not later than the write means the reply was read in the batch that sent
     * the message: only the clock says when. */
    if (t <= f->sent_ns)
        t = zlb_now_ns();
    zlb_stats_record(&w->stats, ZLB_LAT_MESSAGE_RT, t - f->intended_ns);
    zlb_stats_record(&w->stats, ZLB_LAT_MESSAGE_SERVICE, t - f->sent_ns);
    COUNT(w, s, messages, 1);
    st->head = (uint16_t)((st->head + 1) % d->pipeline);
    st->n--;
    st->got = 0;
    st->match = 0;
}

/* Bytes of the delimiter-framed reply in buf[0..n): how many belong to it (the delimiter
 * included, when found: then *done). */
static size_t scan_delimiter(const msg_data_t *d, msg_state_t *st, const uint8_t *buf, size_t n,
                             bool *done)
{
    uint32_t m = st->match;
    size_t i = 0;

    *done = false;
    while (i < n) {
        if (m == 0) {
            /* Most bytes are not the delimiter's first: skip to the next that is. */
            const uint8_t *p = memchr(buf + i, d->delim[0], n - i);
            if (!p) {
                i = n;
                break;
            }
            i = (size_t)(p - buf);
        }
        while (m > 0 && buf[i] != d->delim[m])
            m = d->fail[m - 1];
        if (buf[i] == d->delim[m])
            m++;
        i++;
        if (m == d->delim_len) {
            *done = true;
            m = 0;
            break;
        }
    }
    st->match = (uint8_t)m;
    return i;
}

static void msg_data_in(zlb_worker_t *w, zlb_work_slot_t *s, const uint8_t *buf, size_t n)
{
    msg_state_t *st = s->ws;
    const msg_data_t *d = w->e->wl_data;
    /* Stamped when epoll saw the bytes, not after the callbacks before this one. */
    uint64_t t = zlb_loop_event_time(w->loop);

    while (n > 0) {
        size_t used;
        bool done;
        if (st->n == 0) {
            /* Bytes nobody asked for: not the peer we were told it is. */
            zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
            return;
        }
        if (d->expect == ZLB_EXPECT_DELIMITER) {
            used = scan_delimiter(d, st, buf, n, &done);
            if (st->got + used > d->max_reply) {
                zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
                return;
            }
        } else {
            used = (size_t)ZLB_MIN((uint64_t)n, d->reply_len - st->got);
            done = st->got + used == d->reply_len;
            /* An echo is the message itself: other bytes are a peer that is not an echo server,
             * not a reply (64 bytes of garbage once counted as a message before the failure). */
            if (d->expect == ZLB_EXPECT_ECHO && memcmp(buf, d->msg + st->got, used) != 0) {
                zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
                return;
            }
        }
        if (st->got < d->prefix_len) {
            size_t k = (size_t)ZLB_MIN((uint64_t)used, d->prefix_len - st->got);
            if (memcmp(buf, d->prefix + st->got, k) != 0 ||
                (done && st->got + used < d->prefix_len)) {
                zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
                return;
            }
        }
        st->got += used;
        buf += used;
        n -= used;
        if (done)
            complete(w, s, t);
    }
    (void)pump(w, s, t);
}

static zlb_work_end_t msg_closed(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                                 zlb_fail_t *why)
{
    const msg_state_t *st = s->ws;

    (void)w;
    (void)why;
    /* A clean close by the peer owing us a reply is a failure (counted as eof). */
    return k == ZLB_END_BY_PEER && st->n ? ZLB_END_FAILED : k;
}

const zlb_workload_ops_t zlb_wl_message = {
    .name = "message",
    .busy_traffic = true,
    .init = msg_init,
    .dispose = msg_dispose,
    .slot_init = msg_slot_init,
    .established = msg_established,
    .data = msg_data_in,
    .sent = msg_sent,
    .timer = msg_timer,
    .closed = msg_closed,
    .set_rate = msg_set_rate,
    .pause = msg_pause,
    .busy = msg_busy,
};

/* echo is the same workload under its own name (its config allows expect "echo" only). */
const zlb_workload_ops_t zlb_wl_echo = {
    .name = "echo",
    .busy_traffic = true,
    .init = msg_init,
    .dispose = msg_dispose,
    .slot_init = msg_slot_init,
    .established = msg_established,
    .data = msg_data_in,
    .sent = msg_sent,
    .timer = msg_timer,
    .closed = msg_closed,
    .set_rate = msg_set_rate,
    .pause = msg_pause,
    .busy = msg_busy,
};
