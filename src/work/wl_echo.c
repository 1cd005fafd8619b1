/* wl_echo.c -- the echo workload: each connection sends a message of workload.message_size
 * bytes every workload.message_interval (0: as soon as the echo of the last one is in) and
 * reads its echo back. One message is outstanding per connection at a time. */
#include <errno.h>
#include <stdlib.h>

#include "work/work_internal.h"

typedef struct echo_state {
    zlb_sendq_t sq;
    uint64_t intended_ns; /* when the outstanding (or next) message was meant to be sent */
    uint64_t sent_ns;     /* when the outstanding one was written */
    uint64_t received;    /* bytes of its echo read so far */
    bool outstanding;
} echo_state_t;

/* The message, made once and shared read-only by every connection. */
typedef struct echo_data {
    size_t len;
    uint8_t bytes[];
} echo_data_t;

static int echo_init(zlb_work_t *e, size_t *state_size)
{
    size_t len = e->cfg->workload.message_size;
    echo_data_t *d;

    if (len == 0)
        return -EINVAL;
    d = malloc(sizeof(*d) + len);
    if (!d) {
        zlb_log_error("cannot allocate a %zu-byte echo message", len);
        return -ENOMEM;
    }
    d->len = len;
    for (size_t i = 0; i < len; i++)
        d->bytes[i] = (uint8_t)('a' + i % 26);
    e->wl_data = d;
    *state_size = sizeof(echo_state_t);
    return 0;
}

static void echo_dispose(zlb_work_t *e)
{
    free(e->wl_data);
    e->wl_data = NULL;
}

static zlb_sendq_t *echo_slot_init(zlb_work_t *e, zlb_work_slot_t *s)
{
    echo_state_t *st = s->ws;
    const echo_data_t *d = e->wl_data;

    zlb_sendq_init(&st->sq, d->len * ZLB_SENDQ_SEGS);
    return &st->sq;
}

/* ready_ns: when the message could go at the earliest (the previous echo's arrival; 0: at its
 * intended time). */
static void echo_send(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t ready_ns, uint64_t now)
{
    echo_state_t *st = s->ws;
    const echo_data_t *d = w->e->wl_data;

    /* Lateness: a message sent after its intended time by a timer that fired late or a poller
     * that was busy says the generator slipped. Waiting for the previous echo (one message
     * outstanding) is the target's slowness: message_rt shows it, send_lag does not. */
    uint64_t from = ready_ns > st->intended_ns ? ready_ns : st->intended_ns;
    zlb_stats_record(&w->stats, ZLB_LAT_SEND_LAG, now > from ? now - from : 0);
    st->outstanding = true;
    st->received = 0;
    st->sent_ns = now;
    (void)zlb_wl_send(w, s, d->bytes, d->len);
}

/* Sends now if the message is due, else waits for its intended time. */
static void echo_schedule(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t ready_ns)
{
    echo_state_t *st = s->ws;
    uint64_t now = zlb_loop_update_time(w->loop);

    if (st->intended_ns <= now)
        echo_send(w, s, ready_ns, now);
    else
        zlb_wl_timer_at(w, s, st->intended_ns);
}

static void echo_established(zlb_worker_t *w, zlb_work_slot_t *s)
{
    echo_state_t *st = s->ws;

    st->intended_ns = s->conn.t_established;
    st->outstanding = false;
    echo_schedule(w, s, 0);
}

static void echo_timer(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    (void)due_ns;
    echo_send(w, s, 0, zlb_loop_update_time(w->loop));
}

static void echo_data_in(zlb_worker_t *w, zlb_work_slot_t *s, const uint8_t *buf, size_t n)
{
    echo_state_t *st = s->ws;
    const echo_data_t *d = w->e->wl_data;
    uint64_t interval = w->e->cfg->workload.message_interval_ns;
    zlb_counters_t *c[2];
    uint64_t now;

    (void)buf;
    st->received += n;
    if (!st->outstanding || st->received > d->len) {
        /* More than was sent: not an echo server. */
        zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
        return;
    }
    if (st->received < d->len)
        return;
    /* Stamped when epoll saw the reply, not after the callbacks before this one in the batch. */
    now = zlb_loop_event_time(w->loop);
    if (now < st->sent_ns)
        now = zlb_now_ns();
    st->outstanding = false;
    /* From the intended send time (the headline: a generator that falls behind its schedule
     * reports the wait as latency instead of hiding it, i.e. no coordinated omission), and from
     * the actual write (the service time alone). */
    zlb_stats_record(&w->stats, ZLB_LAT_MESSAGE_RT, now - st->intended_ns);
    zlb_stats_record(&w->stats, ZLB_LAT_MESSAGE_SERVICE, now - st->sent_ns);
    zlb_wl_counters(w, s, c);
    c[0]->messages++;
    c[1]->messages++;
    st->intended_ns = interval ? st->intended_ns + interval : now;
    echo_schedule(w, s, now);
}

static zlb_work_end_t echo_closed(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                                  zlb_fail_t *why)
{
    const echo_state_t *st = s->ws;

    (void)w;
    (void)why;
    /* A clean close by the peer owing us an echo is a failure (counted as eof). */
    return k == ZLB_END_BY_PEER && st->outstanding ? ZLB_END_FAILED : k;
}

const zlb_workload_ops_t zlb_wl_echo = {
    .name = "echo",
    .busy_traffic = true,
    .init = echo_init,
    .dispose = echo_dispose,
    .slot_init = echo_slot_init,
    .established = echo_established,
    .data = echo_data_in,
    .timer = echo_timer,
    .closed = echo_closed,
};
