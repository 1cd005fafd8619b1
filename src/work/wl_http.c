/* wl_http.c -- the HTTP/1.1 request workload. Requests are byte strings built once per target
 * before the run (Host, Content-Length, Connection: close); each connection keeps up to
 * workload.pipeline of them in flight and parses the responses with the http module's
 * incremental parser, embedded in the slot's state (no allocation per request or response).
 *
 * Rate. request_rate > 0 is an open loop: each connection owns an arithmetic schedule (one
 * request every connections / request_rate seconds, phase spread at random) and every request
 * has an intended send time from it. A request due while its connection is busy (pipeline full,
 * or the send queue full) waits in the connection's queue: a count, as the queued requests'
 * intended times follow from the schedule. Latency runs from the intended time, so a stalled
 * server shows as latency, never as fewer samples. send_lag says how late each write was against
 * the later of its intended time and the moment its connection had room: the generator's own
 * lateness, not a busy connection's wait (that is the target's, and shows in http_response).
 * request_rate 0 is a closed loop: the next request goes out when a response frees its place.
 *
 * Live rate (set_rate: stages, PATCH /run; open loop only). The interval becomes connections /
 * rate from the change on; a connection whose next send is further off than the new interval is
 * brought forward (a fresh random phase), so a raise shows at once. Rate 0 sends nothing new.
 * Pause: nothing is sent while paused; responses to requests already in flight are still read
 * and counted. The requests that were due but queued on a busy connection when the pause began,
 * and every request that falls due in the pause, are dropped: never sent, never counted (a k6
 * or Gatling pause likewise skips its iterations). At the resume each connection's schedule
 * starts again at a fresh random phase, so latency is measured from intended times after it and
 * the pause never shows as latency or as a burst.
 *
 * Accounting: requests_sent == responses + requests_failed + requests_in_flight at every
 * moment. A request still in flight when its connection ends is failed (by kind: truncated,
 * closed, cancelled at stop); a response for no request is a protocol failure ("unsolicited"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "work/work_internal.h"

/* The workload's own error kinds, after the parser's (report.c names them in this order). */
enum {
    ERR_UNSOLICITED = ZLB_HTTP_ERR_COUNT, /* bytes of a response nobody asked for */
    ERR_CLOSED,                           /* the connection ended with the request unanswered */
    ERR_CANCELLED,                        /* still in flight when the run stopped */
    ERR__END
};
_Static_assert(ERR__END <= ZLB_HTTP_ERRORS_MAX, "zlb_counters_t.http_errors is short");

typedef struct http_req {
    const uint8_t *bytes;
    uint32_t len;
    bool head;
} http_req_t;

typedef struct http_data {
    size_t ntemplates;
    uint64_t total_weight;
    uint64_t *cum;   /* cumulative weights, ntemplates entries */
    http_req_t *req; /* [target * ntemplates + template] */
    uint8_t **bytes; /* owned buffers behind req */
    bool open_loop;  /* request_rate > 0 (or stages set it): the gap is w->wl_gap_ns */
    zlb_http_limits_t lim;
    uint32_t pipeline;
    bool keepalive;
} http_data_t;

typedef struct http_flight {
    uint64_t intended_ns, sent_ns;
    uint16_t tmpl;
} http_flight_t;

typedef struct http_state {
    zlb_sendq_t sq;
    zlb_http_parser_t p;
    uint64_t gap_ns;  /* open loop: this connection's interval (w->wl_gap_ns when it was set) */
    uint64_t next_ns; /* open loop: intended send time of the next request not yet due */
    uint32_t queued;  /* open loop: due, not yet sent (the connection was busy) */
    uint16_t head, n; /* in-flight ring: oldest at head */
    bool first_byte;  /* http_first_byte recorded for the oldest in flight */
    bool no_more;     /* send nothing more on this connection (Connection: close) */
    bool pumping;     /* inside pump: a write's sent callback must not pump again */
    http_flight_t fl[];
} http_state_t;

/* Adds d to a counter of the poller and of the slot's target alike. */
#define COUNT(w, s, field, d)                                                                      \
    do {                                                                                           \
        zlb_counters_t *c_[2];                                                                     \
        zlb_wl_counters((w), (s), c_);                                                             \
        c_[0]->field += (uint64_t)(d);                                                             \
        c_[1]->field += (uint64_t)(d);                                                             \
    } while (0)

/* ---- requests, built once ------------------------------------------------------------------ */

static void put(uint8_t **p, const char *s)
{
    size_t n = strlen(s);
    memcpy(*p, s, n);
    *p += n;
}

static uint8_t *build_request(const zlb_http_request_config_t *r, const zlb_work_target_t *t,
                              bool keepalive, uint32_t *len_out)
{
    char host[300], cl[48];
    bool user_host = false, with_length;
    size_t cap;

    for (size_t h = 0; h < r->nheaders; h++)
        if (strcasecmp(r->headers[h].name, "host") == 0)
            user_host = true;
    if (strchr(t->host, ':'))
        snprintf(host, sizeof(host), "[%s]", t->host);
    else
        snprintf(host, sizeof(host), "%s", t->host);
    if (t->port != (t->tls && t->tls->enabled ? 443 : 80))
        snprintf(host + strlen(host), sizeof(host) - strlen(host), ":%u", t->port);
    /* A body always has its length; so do the methods that expect one, even empty. */
    with_length = r->body || strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
                  strcmp(r->method, "PATCH") == 0;
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", r->body_len);

    cap = strlen(r->method) + strlen(r->path) + strlen(host) + 64 + strlen(cl) + r->body_len;
    for (size_t h = 0; h < r->nheaders; h++)
        cap += strlen(r->headers[h].name) + strlen(r->headers[h].value) + 4;
    uint8_t *buf = zlb_xmalloc(cap), *p = buf;
    put(&p, r->method);
    put(&p, " ");
    put(&p, r->path);
    put(&p, " HTTP/1.1\r\n");
    if (!user_host) {
        put(&p, "Host: ");
        put(&p, host);
        put(&p, "\r\n");
    }
    for (size_t h = 0; h < r->nheaders; h++) {
        put(&p, r->headers[h].name);
        put(&p, ": ");
        put(&p, r->headers[h].value);
        put(&p, "\r\n");
    }
    if (with_length)
        put(&p, cl);
    if (!keepalive)
        put(&p, "Connection: close\r\n");
    put(&p, "\r\n");
    if (r->body_len) {
        memcpy(p, r->body, r->body_len);
        p += r->body_len;
    }
    *len_out = (uint32_t)(p - buf);
    return buf;
}

static int http_init(zlb_work_t *e, size_t *state_size)
{
    const zlb_workload_config_t *wl = &e->cfg->workload;
    static zlb_http_request_config_t get_root = {
        .method = (char *)"GET", .path = (char *)"/", .weight = 1};
    const zlb_http_request_config_t *tmpl = wl->nrequests ? wl->requests : &get_root;
    size_t nt = wl->nrequests ? wl->nrequests : 1;
    http_data_t *d = zlb_xcalloc(1, sizeof(*d));
    uint32_t maxlen = 0;

    d->ntemplates = nt;
    d->pipeline = wl->keepalive ? ZLB_MAX(wl->pipeline, 1u) : 1;
    d->keepalive = wl->keepalive;
    d->lim.max_header_bytes = wl->max_header_size;
    d->lim.max_body_bytes = wl->max_response_size;
    d->open_loop = wl->request_rate > 0 || zlb_config_rate_is_live(e->cfg);
    d->cum = zlb_xcalloc(nt, sizeof(*d->cum));
    for (size_t i = 0; i < nt; i++) {
        d->total_weight += tmpl[i].weight ? tmpl[i].weight : 1;
        d->cum[i] = d->total_weight;
    }
    d->req = zlb_xcalloc(e->ntargets * nt, sizeof(*d->req));
    d->bytes = zlb_xcalloc(e->ntargets * nt, sizeof(*d->bytes));
    for (size_t t = 0; t < e->ntargets; t++) {
        for (size_t i = 0; i < nt; i++) {
            http_req_t *r = &d->req[t * nt + i];
            d->bytes[t * nt + i] = build_request(&tmpl[i], &e->targets[t], d->keepalive, &r->len);
            r->bytes = d->bytes[t * nt + i];
            r->head = strcmp(tmpl[i].method, "HEAD") == 0;
            maxlen = ZLB_MAX(maxlen, r->len);
        }
    }
    (void)maxlen;
    e->wl_data = d;
    *state_size = sizeof(http_state_t) + d->pipeline * sizeof(http_flight_t);
    return 0;
}

static void http_dispose(zlb_work_t *e)
{
    http_data_t *d = e->wl_data;
    if (!d)
        return;
    for (size_t i = 0; i < e->ntargets * d->ntemplates; i++)
        free(d->bytes[i]);
    free(d->bytes);
    free(d->req);
    free(d->cum);
    free(d);
    e->wl_data = NULL;
}

static zlb_sendq_t *http_slot_init(zlb_work_t *e, zlb_work_slot_t *s)
{
    http_state_t *st = s->ws;
    const http_data_t *d = e->wl_data;
    uint32_t maxlen = 0;

    for (size_t i = 0; i < e->ntargets * d->ntemplates; i++)
        maxlen = ZLB_MAX(maxlen, d->req[i].len);
    /* The queue holds borrowed pointers to the prebuilt requests: its cap only bounds how much
     * may wait unwritten, a full pipeline's worth. */
    zlb_sendq_init(&st->sq, (size_t)maxlen * d->pipeline);
    return &st->sq;
}

/* ---- sending ------------------------------------------------------------------------------- */

static uint16_t pick_template(zlb_worker_t *w, const http_data_t *d)
{
    if (d->ntemplates == 1)
        return 0;
    uint64_t x = zlb_wl_rand(w) % d->total_weight;
    size_t lo = 0, hi = d->ntemplates - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x < d->cum[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint16_t)lo;
}

static bool can_send(const http_state_t *st, const http_data_t *d)
{
    return st->n < d->pipeline && !st->no_more && st->sq.count < ZLB_SENDQ_SEGS;
}

/* Sends one request meant to go out at intended_ns, which could go no earlier than ready_ns (when
 * the connection had room for it: a busy connection is the target's slowness, which the
 * corrected latency shows, not the generator's lateness). False when the connection failed (the
 * slot is the worker's again). */
static bool send_one(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t intended_ns, uint64_t ready_ns,
                     uint64_t now)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;
    uint16_t k = pick_template(w, d);
    const http_req_t *r = &d->req[s->target * d->ntemplates + k];
    http_flight_t *f = &st->fl[(st->head + st->n) % d->pipeline];

    f->intended_ns = intended_ns;
    f->sent_ns = now;
    f->tmpl = k;
    if (st->n++ == 0) {
        zlb_http_parser_init(&st->p, &d->lim, r->head);
        st->first_byte = false;
    }
    if (!d->keepalive)
        st->no_more = true; /* one request per connection */
    uint64_t from = ready_ns > intended_ns ? ready_ns : intended_ns;
    zlb_stats_record(&w->stats, ZLB_LAT_SEND_LAG, now > from ? now - from : 0);
    COUNT(w, s, requests_sent, 1);
    COUNT(w, s, requests_in_flight, 1);
    /* Counted before the write: a write that fails fails the connection, and the closed op
     * then finds this request in flight and counts it failed. */
    return zlb_wl_send(w, s, r->bytes, r->len) == 0;
}

/* Sends what the connection has room for: queued requests (open loop, oldest first, each with
 * its own intended time) or, in a closed loop, new ones due now. ready_ns: when the room
 * appeared (a response seen, the send queue drained; 0: it was there all along). */
static bool pump(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t ready_ns)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);
    bool ok = true;

    if (zlb_wl_paused(w))
        return true;
    st->pumping = true;
    while (can_send(st, d)) {
        uint64_t intended;
        if (d->open_loop) {
            if (!st->queued)
                break;
            /* The queued requests are the schedule's last `queued` slots before next_ns. */
            intended = st->next_ns - (uint64_t)st->queued * st->gap_ns;
            st->queued--;
            COUNT(w, s, requests_queued, -1);
        } else {
            intended = now;
        }
        if (!send_one(w, s, intended, ready_ns, now)) {
            ok = false; /* the slot is the worker's now: touch nothing more */
            break;
        }
    }
    if (ok)
        st->pumping = false;
    return ok;
}

/* Forgets the queue (requests never sent are not requests_sent; the level goes back down). */
static void drop_queue(zlb_worker_t *w, zlb_work_slot_t *s)
{
    http_state_t *st = s->ws;
    if (st->queued) {
        COUNT(w, s, requests_queued, -(int64_t)st->queued);
        st->queued = 0;
    }
}

static void http_established(zlb_worker_t *w, zlb_work_slot_t *s)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;
    uint64_t now = zlb_loop_update_time(w->loop);

    st->head = st->n = 0;
    st->queued = 0;
    st->no_more = false;
    st->first_byte = false;
    st->pumping = false;
    if (!d->keepalive) {
        /* A connection per request: the request was due when its connection was (the attempt's
         * intended start), so connecting is part of its latency, as with ab without -k. */
        if (!zlb_wl_paused(w))
            (void)send_one(w, s, s->intended_ns, 0, now);
        return;
    }
    if (d->open_loop) {
        /* A random phase, so that connections opened together do not send together. */
        st->gap_ns = w->wl_gap_ns;
        if (st->gap_ns) {
            st->next_ns = now + zlb_wl_rand(w) % st->gap_ns;
            zlb_wl_timer_at(w, s, st->next_ns);
        }
        return;
    }
    (void)pump(w, s, 0);
}

static void http_rephase(zlb_worker_t *w, zlb_work_slot_t *s)
{
    http_state_t *st = s->ws;
    zlb_wl_pace_rephase(w, s, &st->gap_ns, &st->next_ns, st->queued);
}

static void http_set_rate(zlb_worker_t *w, double rate)
{
    const http_data_t *d = w->e->wl_data;

    if (!d->open_loop)
        return; /* a closed loop has no rate */
    zlb_wl_pace_set_rate(w, rate);
    if (d->keepalive && !zlb_wl_paused(w))
        zlb_wl_each_established(w, http_rephase);
}

static void http_pause_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    drop_queue(w, s);
}

static void http_resume_one(zlb_worker_t *w, zlb_work_slot_t *s)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;

    if (!d->keepalive) {
        /* Its one request, held by the pause. */
        if (st->n == 0 && !st->no_more)
            (void)send_one(w, s, zlb_loop_update_time(w->loop), 0, zlb_loop_update_time(w->loop));
        return;
    }
    if (d->open_loop) {
        zlb_timer_stop(w->loop, &s->timer);
        http_rephase(w, s);
        return;
    }
    (void)pump(w, s, 0);
}

static void http_pause(zlb_worker_t *w, bool paused)
{
    zlb_wl_each_established(w, paused ? http_pause_one : http_resume_one);
}

static bool http_busy(zlb_worker_t *w, zlb_work_slot_t *s)
{
    const http_state_t *st = s->ws;
    (void)w;
    return st->n > 0;
}

static void http_timer(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;

    (void)due_ns;
    (void)d;
    /* Paused or rate 0: nothing falls due (the resume or the next rate arms the timer again). */
    if (zlb_wl_paused(w) || !w->wl_gap_ns)
        return;
    /* Every request whose time has come joins the queue, then what fits goes out. */
    uint64_t now = zlb_loop_update_time(w->loop);
    if (!st->queued)
        st->gap_ns = w->wl_gap_ns;
    while (st->next_ns <= now) {
        st->queued++;
        COUNT(w, s, requests_queued, 1);
        st->next_ns += st->gap_ns;
    }
    if (!pump(w, s, 0))
        return;
    zlb_wl_timer_at(w, s, st->next_ns);
}

/* ---- responses ------------------------------------------------------------------------------ */

static void http_error(zlb_worker_t *w, zlb_work_slot_t *s, int kind)
{
    COUNT(w, s, http_errors[kind], 1);
}

/* The oldest request's response ended at t. */
static void complete(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t t)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;
    http_flight_t *f = &st->fl[st->head];
    uint16_t status = st->p.status;

    /* An event time not later than the send means the response was read inline, in the batch
     * that sent the request: only the clock says when (clamping to the send recorded 0 us). */
    if (t <= f->sent_ns)
        t = zlb_now_ns();
    if (!st->first_byte)
        zlb_stats_record(&w->stats, ZLB_LAT_HTTP_FIRST_BYTE, t - f->intended_ns);
    zlb_stats_record(&w->stats, ZLB_LAT_HTTP_RESPONSE, t - f->intended_ns);
    zlb_stats_record(&w->stats, ZLB_LAT_HTTP_SERVICE, t - f->sent_ns);
    COUNT(w, s, responses, 1);
    COUNT(w, s, requests_in_flight, -1);
    COUNT(w, s, messages, 1);
    COUNT(w, s, http_status[status >= 100 && status < ZLB_HTTP_STATUS_SLOTS ? status : 0], 1);
    if (!st->p.keep_alive)
        st->no_more = true;
    st->head = (uint16_t)((st->head + 1) % d->pipeline);
    st->n--;
    st->first_byte = false;
    if (st->n)
        zlb_http_parser_init(&st->p, &d->lim,
                             d->req[s->target * d->ntemplates + st->fl[st->head].tmpl].head);
}

/* Every request still in flight failed, counted under `kind` (< 0: not again, as the protocol
 * error that ended the connection was counted already). */
static void fail_in_flight(zlb_worker_t *w, zlb_work_slot_t *s, int kind)
{
    http_state_t *st = s->ws;
    if (st->n) {
        COUNT(w, s, requests_failed, st->n);
        COUNT(w, s, requests_in_flight, -(int64_t)st->n);
        if (kind >= 0)
            COUNT(w, s, http_errors[kind], st->n);
        st->n = 0;
    }
}

/* When the successor of a finished connection is due: with a connection per request in an open
 * loop, at the next request's intended time (the last one's plus the gap); else at once. */
static uint64_t successor_due(zlb_worker_t *w, zlb_work_slot_t *s)
{
    const http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;

    if (!d->keepalive && d->open_loop && w->wl_gap_ns)
        return st->fl[0].intended_ns + w->wl_gap_ns; /* pipeline is 1 without keep-alive */
    return zlb_loop_now(w->loop);
}

/* The connection carries nothing more (keepalive false, or the server said close): close it
 * and open its successor. */
static void finish_connection(zlb_worker_t *w, zlb_work_slot_t *s)
{
    drop_queue(w, s);
    zlb_wl_close(w, s, successor_due(w, s));
}

static void http_data_in(zlb_worker_t *w, zlb_work_slot_t *s, const uint8_t *buf, size_t n)
{
    http_state_t *st = s->ws;
    /* Stamped when epoll saw the bytes, not after the callbacks before this one. */
    uint64_t t = zlb_loop_event_time(w->loop);

    while (n > 0) {
        size_t used = 0;
        if (st->n == 0) {
            http_error(w, s, ERR_UNSOLICITED);
            zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
            return;
        }
        zlb_http_result_t r = zlb_http_parse(&st->p, buf, n, &used);
        if (!st->first_byte && st->p.seen_any) {
            const http_flight_t *f = &st->fl[st->head];
            zlb_stats_record(&w->stats, ZLB_LAT_HTTP_FIRST_BYTE,
                             (t > f->sent_ns ? t : zlb_now_ns()) - f->intended_ns);
            st->first_byte = true;
        }
        if (r == ZLB_HTTP_MORE)
            break;
        if (r == ZLB_HTTP_ERROR) {
            http_error(w, s, st->p.error < ZLB_HTTP_ERR_COUNT ? st->p.error : 0);
            zlb_wl_fail(w, s, ZLB_FAIL_PROTOCOL);
            return;
        }
        complete(w, s, t);
        buf += used;
        n -= used;
    }
    if (st->no_more) {
        if (st->n == 0)
            finish_connection(w, s);
        return;
    }
    (void)pump(w, s, t);
}

static void http_sent(zlb_worker_t *w, zlb_work_slot_t *s, size_t n)
{
    http_state_t *st = s->ws;
    (void)n;
    /* Room in the send queue again: queued requests may go. Not from inside pump's own write
     * (zlb_conn_send reports what it wrote at once), which would re-enter it. */
    if (st->queued && !st->pumping && zlb_conn_state(&s->conn) == ZLB_CONN_ESTABLISHED)
        (void)pump(w, s, zlb_loop_event_time(w->loop));
}

static zlb_work_end_t http_closed(zlb_worker_t *w, zlb_work_slot_t *s, zlb_work_end_t k,
                                  zlb_fail_t *why)
{
    http_state_t *st = s->ws;
    const http_data_t *d = w->e->wl_data;

    drop_queue(w, s);
    if (k == ZLB_END_BY_PEER && st->n) {
        /* A body delimited by the close ends here. */
        if (zlb_http_parse_eof(&st->p) == ZLB_HTTP_DONE)
            complete(w, s, zlb_loop_update_time(w->loop));
        if (st->n) {
            fail_in_flight(w, s, st->p.seen_any ? ZLB_HTTP_ERR_TRUNCATED : ERR_CLOSED);
            return ZLB_END_FAILED; /* the peer closed owing us a response (counted as eof) */
        }
    }
    if (k == ZLB_END_BY_PEER && (st->no_more || !d->keepalive)) {
        /* The close the last response announced: the successor is due at once, no backoff. */
        zlb_wl_reopen(w, s, successor_due(w, s));
        return k;
    }
    fail_in_flight(w, s,
                   k == ZLB_END_BY_US          ? ERR_CANCELLED
                   : *why == ZLB_FAIL_PROTOCOL ? -1
                                               : ERR_CLOSED);
    return k;
}

const zlb_workload_ops_t zlb_wl_http = {
    .name = "http",
    .busy_traffic = true,
    .alpn = "http/1.1",
    .init = http_init,
    .dispose = http_dispose,
    .slot_init = http_slot_init,
    .established = http_established,
    .data = http_data_in,
    .sent = http_sent,
    .timer = http_timer,
    .closed = http_closed,
    .set_rate = http_set_rate,
    .pause = http_pause,
    .busy = http_busy,
};
