/* conn.c -- the connection state machine: resolve, connect, TLS, budgeted reads, queued writes. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/net.h"

#define F_WANT_WRITE 0x01 /* the send queue is not empty: EPOLLOUT armed (EPOLLIN if TLS wants) */
#define F_FIRST_BYTE 0x02 /* a byte has arrived since establishment */
#define F_PEER_DONE 0x04  /* FIN/HUP/ERR seen: read to the end, a short read proves nothing */
#define F_TLS 0x08        /* this attempt speaks TLS: c->tls is initialised */
#define F_RD_WANTS_W 0x10 /* TLS: a read must be retried once the socket is writable */
#define F_WR_WANTS_R 0x20 /* TLS: the queued write must be retried once the socket is readable */

#define DEFAULT_CONNECT_TIMEOUT (5 * ZLB_NS_PER_SEC)
#define DEFAULT_SEND_TIMEOUT (10 * ZLB_NS_PER_SEC)
#define DEFAULT_READ_BUF (64 * 1024)
#define DEFAULT_BUDGET_BYTES (256 * 1024)
#define DEFAULT_BUDGET_CALLS 4
#define DEFAULT_HANDSHAKE_TIMEOUT (5 * ZLB_NS_PER_SEC)
#define READ_INTEREST (EPOLLIN | EPOLLRDHUP)
/* One TLS record's worth: what a writev is coalesced into for one SSL_write. */
#define TLS_WRITE_MAX (16 * 1024)
/* conn_read/conn_writev: TLS failed with an error of its own (c->tls->err), not an errno. Far
 * outside the errno range, so it cannot be mistaken for one. */
#define ERR_TLS (-0x10000)

typedef struct dest {
    const char *host; /* borrowed */
    uint16_t port;
    bool literal;
    bool req_busy;         /* req is with the resolver or queued on the loop */
    zlb_net_addr_t addr;   /* empty until resolved */
    uint64_t expires_ns;   /* UINT64_MAX for literals */
    zlb_list_t waiters;    /* RESOLVING connections, via conn.node */
    zlb_resolve_req_t req; /* one lookup per destination and ctx at a time */
    struct zlb_net_ctx *ctx;
    const zlb_tls_client_t *tls;  /* borrowed; NULL: plain TCP */
    zlb_tls_sessions_t *sessions; /* owned; NULL unless tls and resuming */
    uint64_t handshake_timeout_ns;
} dest_t;

struct zlb_net_ctx {
    /* One reference for the owner, one per resolver request or ready task posted and not yet
     * run: a loop stopped with our task still queued calls it (discarded) after the owner may
     * have destroyed the ctx, so the memory the task lives in must outlast the owner. */
    _Atomic uint32_t refs;
    zlb_loop_t *loop;
    const zlb_conn_ops_t *ops;
    zlb_resolver_t *resolver;
    zlb_stats_t *stats;
    zlb_net_sockopts_t sock;
    int family;
    uint64_t connect_timeout_ns, send_timeout_ns;
    uint8_t *rbuf; /* owned, shared by every connection of the ctx */
    size_t rbuf_size;
    size_t budget_bytes;
    unsigned budget_calls;
    zlb_list_t ready; /* connections whose read budget ran out with data maybe left */
    zlb_task_t ready_task;
    bool ready_posted;
    zlb_net_addr_t *sources; /* owned copy */
    size_t nsources, src_next;
    uint8_t *tls_wbuf; /* owned, TLS_WRITE_MAX; NULL when no destination is TLS */
    size_t ndests;
    bool busy_traffic;
    dest_t dests[];
};

static void conn_on_event(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events);
static void conn_on_timer(zlb_loop_t *loop, zlb_timer_t *t);
static void conn_on_readable(zlb_conn_t *c, uint32_t events);

/* Completions are stamped with the time epoll_wait returned, not when their callback got round
 * to them: a slow callback earlier in the batch must not count as the target's latency. The
 * clock is read afresh for what did not come from a later batch's event than `since`'s: a step
 * run inline after `since` was read from the clock (event time before it), or after `since` was
 * itself stamped with this batch's event time (equal). The latter is a TLS handshake that
 * completes inside tls_start's first step (the peer answered while our key share was being
 * made): an fd has one event per batch, so an equal stamp cannot be a second event, and the
 * event time would record the handshake as 0. */
static uint64_t event_stamp(const zlb_net_ctx_t *ctx, uint64_t since)
{
    uint64_t t = zlb_loop_event_time(ctx->loop);
    return t > since ? t : zlb_now_ns();
}

static void ctx_unref(zlb_net_ctx_t *ctx)
{
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        free(ctx);
}

/* ---- small I/O primitives: plain TCP or TLS ------------------------------------------------ */

/* What an established connection must be woken for now: always reads; writes while the send
 * queue waits for room (unless TLS holds that write until the socket is readable), or while a
 * TLS read waits for room to send (a key update's answer). */
static uint32_t established_interest(const zlb_conn_t *c)
{
    bool out =
        ((c->flags & F_WANT_WRITE) && !(c->flags & F_WR_WANTS_R)) || (c->flags & F_RD_WANTS_W);
    return READ_INTEREST | (out ? EPOLLOUT : 0);
}

/* One epoll_ctl when the interest changed, none otherwise. */
static int conn_rewatch(zlb_conn_t *c)
{
    return zlb_loop_rewatch(c->ctx->loop, &c->w, established_interest(c));
}

/* A failed TLS step as conn_read/conn_writev report it: a socket error as its errno, so it is
 * classified like one of a plain socket, anything else as ERR_TLS. */
static ssize_t tls_failure(zlb_conn_t *c)
{
    if (c->tls->err.kind == ZLB_TLS_ERR_SYSCALL && c->tls->err.code > 0)
        return -c->tls->err.code;
    return ERR_TLS;
}

static ssize_t tls_read(zlb_conn_t *c, void *buf, size_t len)
{
    size_t n = 0;

    switch (zlb_tls_read(c->tls, buf, len, &n)) {
    case ZLB_TLS_DONE:
        return (ssize_t)n;
    case ZLB_TLS_EOF:
        return 0;
    case ZLB_TLS_WANT_READ:
        c->flags &= (uint8_t)~F_RD_WANTS_W;
        return -EAGAIN;
    case ZLB_TLS_WANT_WRITE:
        c->flags |= F_RD_WANTS_W;
        return -EAGAIN;
    default:
        return tls_failure(c);
    }
}

/* SSL_write takes one buffer: the queued segments are coalesced into one record's worth. A
 * retry after WANT_* must offer the same bytes, no fewer: it does, as the queue's head stays
 * put until bytes are reported written and the queue only grows at its tail, so the same
 * prefix comes out again, as long or longer (the buffer may move: ACCEPT_MOVING_WRITE_BUFFER). */
static ssize_t tls_writev(zlb_conn_t *c, const struct iovec *iov, int n)
{
    const void *p = iov[0].iov_base;
    size_t len = iov[0].iov_len, put = 0;

    if (len >= TLS_WRITE_MAX) {
        len = TLS_WRITE_MAX;
    } else if (n > 1) {
        uint8_t *b = c->ctx->tls_wbuf;
        len = 0;
        for (int i = 0; i < n && len < TLS_WRITE_MAX; i++) {
            size_t take = ZLB_MIN(iov[i].iov_len, TLS_WRITE_MAX - len);
            memcpy(b + len, iov[i].iov_base, take);
            len += take;
        }
        p = b;
    }
    switch (zlb_tls_write(c->tls, p, len, &put)) {
    case ZLB_TLS_DONE:
        c->flags &= (uint8_t)~F_WR_WANTS_R;
        return (ssize_t)put;
    case ZLB_TLS_WANT_READ:
        c->flags |= F_WR_WANTS_R;
        return -EAGAIN;
    case ZLB_TLS_WANT_WRITE:
        c->flags &= (uint8_t)~F_WR_WANTS_R;
        return -EAGAIN;
    default:
        return tls_failure(c);
    }
}

static ssize_t conn_read(zlb_conn_t *c, void *buf, size_t len)
{
    if (c->flags & F_TLS)
        return tls_read(c, buf, len);
    for (;;) {
        ssize_t n = recv(c->w.fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t conn_writev(zlb_conn_t *c, struct iovec *iov, int n)
{
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};

    if (c->flags & F_TLS)
        return tls_writev(c, iov, n);
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away is an EPIPE to count, not a SIGPIPE. */
        ssize_t w = sendmsg(c->w.fd, &msg, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno != EINTR)
            return -errno;
    }
}

/* ---- teardown ---------------------------------------------------------------------------- */

static void sendq_clear(zlb_sendq_t *q)
{
    if (q) {
        q->head = q->count = 0;
        q->bytes = 0;
    }
}

static void conn_teardown(zlb_conn_t *c, bool rst)
{
    zlb_net_ctx_t *ctx = c->ctx;

    c->state = ZLB_CONN_CLOSING;
    if (zlb_list_linked(&c->node))
        zlb_list_remove(&c->node);
    zlb_timer_stop(ctx->loop, &c->timer);
    if (c->flags & F_TLS) {
        /* close_notify goes first, while the socket is still open; it never waits for the
         * peer's, and does nothing when the handshake did not complete or something failed. */
        zlb_tls_conn_shutdown(c->tls);
        zlb_tls_conn_dispose(c->tls);
    }
    if (c->w.fd >= 0) {
        if (c->w.registered)
            (void)zlb_loop_unwatch(ctx->loop, &c->w);
        zlb_net_close(c->w.fd, rst);
        c->w.fd = -1;
    }
    sendq_clear(c->sq);
    c->flags = 0;
    c->gen++;
    c->state = ZLB_CONN_IDLE;
}

static void conn_fail(zlb_conn_t *c, zlb_fail_t why, zlb_net_err_t err)
{
    bool was_established = c->state == ZLB_CONN_ESTABLISHED;

    conn_teardown(c, false);
    c->ctx->ops->closed(c, why, err, was_established);
}

/* A TLS failure of the tls module's own (not a socket errno), in the handshake or after it. */
static void conn_fail_tls(zlb_conn_t *c)
{
    const zlb_tls_error_t *e = &c->tls->err;

    if (e->kind == ZLB_TLS_ERR_VERIFY)
        conn_fail(c, ZLB_FAIL_TLS_VERIFY, (zlb_net_err_t){ZLB_NET_ERR_X509, e->code});
    else
        conn_fail(c, ZLB_FAIL_TLS_HANDSHAKE, zlb_net_err_tls((int)e->reason));
}

/* r: a negative errno or ERR_TLS. */
static void conn_fail_err(zlb_conn_t *c, int r)
{
    if (r == ERR_TLS)
        conn_fail_tls(c);
    else
        conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
}

/* ---- connecting -------------------------------------------------------------------------- */

static const zlb_net_addr_t *pick_source(zlb_net_ctx_t *ctx, int family)
{
    for (size_t i = 0; i < ctx->nsources; i++) {
        size_t k = (ctx->src_next + i) % ctx->nsources;
        if (zlb_net_addr_family(&ctx->sources[k]) == family) {
            ctx->src_next = k + 1;
            return &ctx->sources[k];
        }
    }
    return NULL; /* no source of this family: let the kernel choose */
}

/* Returns 0 with the connection CONNECTING, or -errno with nothing left open. */
static int conn_connect(zlb_conn_t *c, dest_t *d)
{
    zlb_net_ctx_t *ctx = c->ctx;
    int family = zlb_net_addr_family(&d->addr);
    int fd, r;

    fd = zlb_net_socket(family, &ctx->sock, pick_source(ctx, family));
    if (fd < 0)
        return fd;
    /* Read right here, not the loop's cached time: connect latency starts at the syscall. */
    c->t_start = zlb_now_ns();
    r = zlb_net_connect(fd, &d->addr);
    if (r < 0 && r != -EINPROGRESS) {
        zlb_net_close(fd, false);
        return r;
    }
    /* Even a connect that completed at once is reported through EPOLLOUT, so there is one
     * path to ESTABLISHED and no callback from inside zlb_conn_start. */
    zlb_watcher_init(&c->w, fd, conn_on_event);
    r = zlb_loop_watch(ctx->loop, &c->w, EPOLLOUT | EPOLLRDHUP);
    if (r < 0) {
        zlb_net_close(fd, false);
        c->w.fd = -1;
        return r;
    }
    c->state = ZLB_CONN_CONNECTING;
    zlb_timer_start_at(ctx->loop, &c->timer, c->t_start + ctx->connect_timeout_ns, 0);
    return 0;
}

static void dest_resolved(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_resolve_req_t *q = ZLB_CONTAINER_OF(t, zlb_resolve_req_t, task);
    dest_t *d = ZLB_CONTAINER_OF(q, dest_t, req);
    zlb_net_ctx_t *ctx = d->ctx;
    zlb_list_t waiting, *n;
    uint64_t now;

    if (discarded) {
        ctx_unref(ctx);
        return;
    }
    d->req_busy = false;
    now = zlb_loop_update_time(loop);
    if (q->status == 0) {
        d->addr = q->addr;
        d->expires_ns = q->expires_ns;
    }
    /* Detach the waiters first: callbacks below may start new attempts on this destination. */
    zlb_list_init(&waiting);
    zlb_list_splice_back(&waiting, &d->waiters);
    while ((n = zlb_list_pop_front(&waiting))) {
        zlb_conn_t *c = ZLB_CONTAINER_OF(n, zlb_conn_t, node);
        if (q->status != 0) {
            conn_fail(c, ZLB_FAIL_DNS, (zlb_net_err_t){ZLB_NET_ERR_EAI, q->status});
            continue;
        }
        zlb_stats_record(ctx->stats, ZLB_LAT_DNS, now - c->t_start);
        int r = conn_connect(c, d);
        if (r < 0)
            conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
    }
    ctx_unref(ctx);
}

int zlb_conn_start(zlb_conn_t *c, uint16_t dest, uint64_t intended_ns)
{
    zlb_net_ctx_t *ctx = c->ctx;
    dest_t *d;

    if (c->state != ZLB_CONN_IDLE || dest >= ctx->ndests)
        zlb_fatal("zlb_conn_start: state %d dest %u", c->state, dest);
    d = &ctx->dests[dest];
    c->dest = dest;
    c->flags = 0;
    c->t_intended = intended_ns;
    if (d->expires_ns > zlb_loop_now(ctx->loop))
        return conn_connect(c, d);

    c->state = ZLB_CONN_RESOLVING;
    c->t_start = zlb_now_ns();
    /* A resolver that never answers must not hold the attempt in flight forever: the lookup
     * gets the connect timeout of its own. */
    zlb_timer_start_at(ctx->loop, &c->timer, c->t_start + ctx->connect_timeout_ns, 0);
    zlb_list_push_back(&d->waiters, &c->node);
    if (!d->req_busy) {
        d->req_busy = true;
        d->req.loop = ctx->loop;
        d->req.host = d->host;
        d->req.port = d->port;
        d->req.family = ctx->family;
        atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
        zlb_resolver_submit(ctx->resolver, &d->req);
    }
    return 0;
}

/* ---- established: reading ---------------------------------------------------------------- */

static void ready_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_net_ctx_t *ctx = ZLB_CONTAINER_OF(t, zlb_net_ctx_t, ready_task);
    zlb_list_t batch, *n;

    (void)loop;
    if (discarded) {
        ctx_unref(ctx);
        return;
    }
    ctx->ready_posted = false;
    /* Only the connections queued so far: one that uses up its budget again goes back on the
     * list for the next iteration, so I/O of the others runs in between. */
    zlb_list_init(&batch);
    zlb_list_splice_back(&batch, &ctx->ready);
    while ((n = zlb_list_pop_front(&batch))) {
        zlb_conn_t *c = ZLB_CONTAINER_OF(n, zlb_conn_t, node);
        if (c->state == ZLB_CONN_ESTABLISHED)
            conn_on_readable(c, EPOLLIN);
    }
    ctx_unref(ctx);
}

static void ready_push(zlb_conn_t *c)
{
    zlb_net_ctx_t *ctx = c->ctx;

    if (zlb_list_linked(&c->node))
        return;
    zlb_list_push_back(&ctx->ready, &c->node);
    if (!ctx->ready_posted) {
        ctx->ready_posted = true;
        atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
        zlb_loop_post(ctx->loop, &ctx->ready_task);
    }
}

/* Edge-triggered: the edge that brought us here will not come again, so either the socket is
 * read until it is empty or the connection goes on the ready list to continue later. */
static void conn_on_readable(zlb_conn_t *c, uint32_t events)
{
    zlb_net_ctx_t *ctx = c->ctx;
    uint32_t gen = c->gen;
    size_t total = 0;
    unsigned calls = 0;

    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->flags |= F_PEER_DONE;
    for (;;) {
        if (calls == ctx->budget_calls || total >= ctx->budget_bytes) {
            ready_push(c);
            return;
        }
        ssize_t n = conn_read(c, ctx->rbuf, ctx->rbuf_size);
        calls++;
        if (n > 0) {
            total += (size_t)n;
            if (!(c->flags & F_FIRST_BYTE)) {
                c->flags |= F_FIRST_BYTE;
                zlb_stats_record(ctx->stats, ZLB_LAT_FIRST_BYTE,
                                 event_stamp(ctx, c->t_established) - c->t_established);
            }
            ctx->ops->data(c, ctx->rbuf, (size_t)n);
            if (c->gen != gen || c->state != ZLB_CONN_ESTABLISHED)
                return;
            /* A short read emptied the socket; more data would raise a new edge. Not so with
             * TLS: a read returns one record, and the socket may hold more. */
            if ((size_t)n < ctx->rbuf_size && !(c->flags & (F_PEER_DONE | F_TLS)))
                return;
            continue;
        }
        if (n == 0) {
            conn_fail(c, ZLB_FAIL_EOF, zlb_net_err_errno(0));
            return;
        }
        if (n == -EAGAIN) {
            int r = (c->flags & F_TLS) ? conn_rewatch(c) : 0;
            if (r < 0)
                conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
            return;
        }
        conn_fail_err(c, (int)n);
        return;
    }
}

/* ---- established: writing --------------------------------------------------------------- */

void zlb_sendq_init(zlb_sendq_t *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    q->cap = cap;
}

static void sendq_consume(zlb_sendq_t *q, size_t n)
{
    q->bytes -= n;
    while (n) {
        struct iovec *s = &q->seg[q->head];
        if (n < s->iov_len) {
            s->iov_base = (char *)s->iov_base + n;
            s->iov_len -= n;
            return;
        }
        n -= s->iov_len;
        q->head = (q->head + 1) % ZLB_SENDQ_SEGS;
        q->count--;
    }
}

/* Writes until the queue is empty or the socket is full (then EPOLLOUT is armed, never left
 * unarmed while bytes wait). Returns 0 or -errno; *written gets what went out. */
static int sendq_flush(zlb_conn_t *c, size_t *written)
{
    zlb_net_ctx_t *ctx = c->ctx;
    zlb_sendq_t *q = c->sq;
    struct iovec iov[ZLB_SENDQ_SEGS];
    int r;

    *written = 0;
    while (q->bytes) {
        for (uint32_t i = 0; i < q->count; i++)
            iov[i] = q->seg[(q->head + i) % ZLB_SENDQ_SEGS];
        ssize_t w = conn_writev(c, iov, (int)q->count);
        if (w == -EAGAIN)
            break;
        if (w < 0)
            return (int)w;
        sendq_consume(q, (size_t)w);
        *written += (size_t)w;
    }
    if (q->bytes) {
        c->flags |= F_WANT_WRITE;
        r = conn_rewatch(c);
        if (r < 0)
            return r;
        /* The timeout measures a stall, so progress pushes it back. */
        if (*written || !zlb_timer_active(&c->timer))
            zlb_timer_start(ctx->loop, &c->timer, ctx->send_timeout_ns, 0);
    } else if (c->flags & F_WANT_WRITE) {
        c->flags &= (uint8_t) ~(F_WANT_WRITE | F_WR_WANTS_R);
        zlb_timer_stop(ctx->loop, &c->timer);
        r = conn_rewatch(c);
        if (r < 0)
            return r;
    }
    return 0;
}

int zlb_conn_send(zlb_conn_t *c, const void *buf, size_t len)
{
    zlb_sendq_t *q = c->sq;
    size_t written;
    int r;

    if (c->state != ZLB_CONN_ESTABLISHED || !q)
        return -ENOTCONN;
    if (len == 0)
        return 0;
    if (q->bytes + len > q->cap || q->count == ZLB_SENDQ_SEGS)
        return -ENOBUFS;
    q->seg[(q->head + q->count) % ZLB_SENDQ_SEGS] =
        (struct iovec){.iov_base = (void *)buf, .iov_len = len};
    q->count++;
    q->bytes += len;
    if (c->flags & F_WANT_WRITE)
        return 0; /* EPOLLOUT is armed and will flush in order */
    r = sendq_flush(c, &written);
    if (written)
        c->ctx->ops->sent(c, written);
    return r == ERR_TLS ? -EPROTO : r;
}

/* ---- events ------------------------------------------------------------------------------ */

static void conn_established(zlb_conn_t *c, uint32_t events)
{
    zlb_net_ctx_t *ctx = c->ctx;
    uint32_t gen = c->gen;
    int r;

    /* The one epoll_ctl of this state change: from connect interest to read interest. It comes
     * before the state does, so that its failure is an attempt that failed, never an established
     * connection that was not counted as one. */
    r = zlb_loop_rewatch(ctx->loop, &c->w, READ_INTEREST);
    if (r < 0) {
        conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
        return;
    }
    c->state = ZLB_CONN_ESTABLISHED;
    ctx->ops->established(c);
    if (c->gen != gen || c->state != ZLB_CONN_ESTABLISHED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
        conn_on_readable(c, events);
}

/* ---- TLS handshake ------------------------------------------------------------------------ */

static void tls_established(zlb_conn_t *c)
{
    zlb_net_ctx_t *ctx = c->ctx;
    uint64_t now = event_stamp(ctx, c->t_established);

    zlb_timer_stop(ctx->loop, &c->timer);
    zlb_stats_record(ctx->stats,
                     zlb_tls_conn_resumed(c->tls) ? ZLB_LAT_TLS_RESUMED : ZLB_LAT_TLS_FULL,
                     now - c->t_established);
    c->t_established = now;
    /* Read at once whatever the event was: records the server sent right behind its Finished
     * (TLS 1.3 session tickets, early data) may already sit in the socket, and with
     * edge-triggered epoll no new edge would announce them. */
    conn_established(c, EPOLLIN);
}

/* Advances the handshake; arms the interest OpenSSL asks for, whichever it is. */
static void tls_step(zlb_conn_t *c)
{
    int r;

    switch (zlb_tls_handshake(c->tls)) {
    case ZLB_TLS_DONE:
        tls_established(c);
        return;
    case ZLB_TLS_WANT_READ:
        r = zlb_loop_rewatch(c->ctx->loop, &c->w, READ_INTEREST);
        break;
    case ZLB_TLS_WANT_WRITE:
        r = zlb_loop_rewatch(c->ctx->loop, &c->w, EPOLLOUT | EPOLLRDHUP);
        break;
    default:
        conn_fail_tls(c);
        return;
    }
    if (r < 0)
        conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
}

static void tls_start(zlb_conn_t *c)
{
    zlb_net_ctx_t *ctx = c->ctx;
    dest_t *d = &ctx->dests[c->dest];
    int r;

    if (!c->tls)
        zlb_fatal("TLS destination %u and no TLS state for the connection", c->dest);
    /* The resumption decision is made per attempt, from this poller's cache. */
    struct ssl_session_st *resume = d->sessions ? zlb_tls_sessions_pick(d->sessions) : NULL;
    r = zlb_tls_conn_init_client(c->tls, d->tls, d->sessions, resume, c->w.fd);
    if (r < 0) {
        conn_fail(c, zlb_net_classify(-r), zlb_net_err_errno(-r));
        return;
    }
    if (ctx->busy_traffic)
        zlb_tls_conn_keep_buffers(c->tls);
    c->flags |= F_TLS;
    c->state = ZLB_CONN_TLS_HANDSHAKE;
    zlb_timer_start_at(ctx->loop, &c->timer, c->t_established + d->handshake_timeout_ns, 0);
    /* The socket is writable: the ClientHello goes out now, not on the next event. */
    tls_step(c);
}

/* ---- events: connect completion, dispatch, timers ------------------------------------------ */

static void on_connect_event(zlb_conn_t *c, uint32_t events)
{
    zlb_net_ctx_t *ctx = c->ctx;
    uint64_t now;
    int err;

    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return;
    err = zlb_net_socket_error(c->w.fd);
    if (err == 0 && !(events & EPOLLOUT))
        err = ECONNRESET; /* hung up without ever being writable */
    if (err) {
        conn_fail(c, zlb_net_classify(err), zlb_net_err_errno(err));
        return;
    }
    now = event_stamp(ctx, c->t_start);
    zlb_timer_stop(ctx->loop, &c->timer);
    c->t_established = now;
    zlb_stats_record(ctx->stats, ZLB_LAT_CONNECT_SERVICE, now - c->t_start);
    zlb_stats_record(
        ctx->stats, ZLB_LAT_CONNECT,
        now - (c->t_intended && c->t_intended < c->t_start ? c->t_intended : c->t_start));
    if (ctx->dests[c->dest].tls)
        tls_start(c);
    else
        conn_established(c, events);
}

static void conn_on_event(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    zlb_conn_t *c = ZLB_CONTAINER_OF(w, zlb_conn_t, w);
    uint32_t gen = c->gen;

    (void)loop;
    if (c->state == ZLB_CONN_CONNECTING) {
        on_connect_event(c, events);
        return;
    }
    if (c->state == ZLB_CONN_TLS_HANDSHAKE) {
        /* Whatever woke us (the interest asked for, an error, a hang-up), the next step says
         * what it means. */
        tls_step(c);
        return;
    }
    if (c->state != ZLB_CONN_ESTABLISHED)
        return;
    bool out = events & (EPOLLOUT | EPOLLERR);
    bool in = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    bool read_now = in;
    if (out && (c->flags & F_RD_WANTS_W)) {
        c->flags &= (uint8_t)~F_RD_WANTS_W; /* set again if the read still cannot go on */
        read_now = true;
    }
    if ((c->flags & F_WANT_WRITE) && (out || (in && (c->flags & F_WR_WANTS_R)))) {
        size_t written;
        int r = sendq_flush(c, &written);
        if (r < 0) {
            conn_fail_err(c, r);
            return;
        }
        if (written)
            c->ctx->ops->sent(c, written);
        if (c->gen != gen || c->state != ZLB_CONN_ESTABLISHED)
            return;
    }
    if (read_now)
        conn_on_readable(c, events);
}

static void conn_on_timer(zlb_loop_t *loop, zlb_timer_t *t)
{
    zlb_conn_t *c = ZLB_CONTAINER_OF(t, zlb_conn_t, timer);

    (void)loop;
    /* Lookup timeout, connect timeout, handshake timeout, or a send queue that made no progress
     * for the send timeout. */
    if (c->state == ZLB_CONN_RESOLVING)
        conn_fail(c, ZLB_FAIL_DNS, zlb_net_err_errno(ETIMEDOUT));
    else if (c->state == ZLB_CONN_CONNECTING || c->state == ZLB_CONN_TLS_HANDSHAKE ||
             (c->state == ZLB_CONN_ESTABLISHED && (c->flags & F_WANT_WRITE)))
        conn_fail(c, ZLB_FAIL_TIMEOUT, zlb_net_err_errno(ETIMEDOUT));
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void zlb_conn_init(zlb_conn_t *c, zlb_net_ctx_t *ctx, zlb_sendq_t *sq)
{
    memset(c, 0, sizeof(*c));
    zlb_watcher_init(&c->w, -1, conn_on_event);
    zlb_timer_init(&c->timer, conn_on_timer);
    zlb_list_init(&c->node);
    c->ctx = ctx;
    c->sq = sq;
    c->state = ZLB_CONN_IDLE;
}

void zlb_conn_set_tls(zlb_conn_t *c, zlb_tls_conn_t *tls)
{
    if (c->state != ZLB_CONN_IDLE)
        zlb_fatal("zlb_conn_set_tls: state %d", c->state);
    memset(tls, 0, sizeof(*tls));
    c->tls = tls;
}

zlb_tls_conn_t *zlb_conn_tls(const zlb_conn_t *c)
{
    return (c->flags & F_TLS) ? c->tls : NULL;
}

void zlb_conn_close(zlb_conn_t *c)
{
    if (c->state == ZLB_CONN_IDLE)
        return;
    conn_teardown(c, c->state == ZLB_CONN_ESTABLISHED && c->ctx->sock.close_rst);
}

void zlb_conn_dispose(zlb_conn_t *c)
{
    if (c->flags & F_TLS)
        zlb_tls_conn_dispose(c->tls);
    c->flags = 0;
    if (c->w.fd >= 0)
        zlb_net_close(c->w.fd, false);
    c->w.fd = -1;
    c->state = ZLB_CONN_IDLE;
}

int zlb_net_ctx_create(const zlb_net_ctx_opts_t *o, zlb_net_ctx_t **out)
{
    zlb_net_ctx_t *ctx;
    char buf[ZLB_NET_ADDRSTRLEN];

    *out = NULL;
    if (!o->loop || !o->ops || !o->stats || o->ndests > UINT16_MAX ||
        (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6))
        return -EINVAL;
    ctx = calloc(1, sizeof(*ctx) + o->ndests * sizeof(dest_t));
    if (!ctx)
        return -ENOMEM;
    atomic_init(&ctx->refs, 1);
    ctx->loop = o->loop;
    ctx->ops = o->ops;
    ctx->resolver = o->resolver;
    ctx->stats = o->stats;
    if (o->sock)
        ctx->sock = *o->sock;
    else
        ctx->sock.nodelay = true;
    ctx->family = o->family;
    ctx->connect_timeout_ns =
        o->connect_timeout_ns ? o->connect_timeout_ns : DEFAULT_CONNECT_TIMEOUT;
    ctx->send_timeout_ns = o->send_timeout_ns ? o->send_timeout_ns : DEFAULT_SEND_TIMEOUT;
    ctx->rbuf_size = o->read_buf_size ? o->read_buf_size : DEFAULT_READ_BUF;
    ctx->budget_bytes = o->read_budget_bytes ? o->read_budget_bytes : DEFAULT_BUDGET_BYTES;
    ctx->budget_calls = o->read_budget_calls ? o->read_budget_calls : DEFAULT_BUDGET_CALLS;
    zlb_list_init(&ctx->ready);
    zlb_task_init(&ctx->ready_task, ready_run);
    ctx->ndests = o->ndests;
    ctx->rbuf = malloc(ctx->rbuf_size);
    if (!ctx->rbuf)
        goto nomem;
    ctx->busy_traffic = o->busy_traffic;
    if (o->nsources) {
        ctx->sources = calloc(o->nsources, sizeof(*ctx->sources));
        if (!ctx->sources)
            goto nomem;
        memcpy(ctx->sources, o->sources, o->nsources * sizeof(*ctx->sources));
        ctx->nsources = o->nsources;
        ctx->src_next = o->source_offset % o->nsources;
    }
    for (size_t i = 0; i < o->ndests; i++) {
        dest_t *d = &ctx->dests[i];
        d->host = o->dests[i].host;
        d->port = o->dests[i].port;
        d->ctx = ctx;
        d->tls = o->dests[i].tls;
        d->handshake_timeout_ns = o->dests[i].tls_handshake_timeout_ns
                                      ? o->dests[i].tls_handshake_timeout_ns
                                      : DEFAULT_HANDSHAKE_TIMEOUT;
        if (d->tls && zlb_tls_client_resumption(d->tls) > 0)
            d->sessions = zlb_tls_sessions_create(d->tls, 0);
        if (d->tls && !ctx->tls_wbuf) {
            ctx->tls_wbuf = malloc(TLS_WRITE_MAX);
            if (!ctx->tls_wbuf)
                goto nomem;
        }
        zlb_list_init(&d->waiters);
        zlb_task_init(&d->req.task, dest_resolved);
        if (zlb_net_addr_literal(d->host, d->port, &d->addr) == 0) {
            d->literal = true;
            d->expires_ns = UINT64_MAX;
            if (ctx->family != AF_UNSPEC && zlb_net_addr_family(&d->addr) != ctx->family) {
                zlb_log_error("target %s is not of the configured address family",
                              zlb_net_addr_format(&d->addr, buf, sizeof(buf)));
                zlb_net_ctx_destroy(ctx);
                return -EINVAL;
            }
        } else if (!ctx->resolver || !d->host || !*d->host) {
            zlb_log_error("target \"%s\" needs a resolver", d->host ? d->host : "");
            zlb_net_ctx_destroy(ctx);
            return -EINVAL;
        }
    }
    *out = ctx;
    return 0;
nomem:
    zlb_net_ctx_destroy(ctx);
    return -ENOMEM;
}

void zlb_net_ctx_destroy(zlb_net_ctx_t *ctx)
{
    if (!ctx)
        return;
    free(ctx->rbuf);
    ctx->rbuf = NULL;
    free(ctx->sources);
    ctx->sources = NULL;
    free(ctx->tls_wbuf);
    ctx->tls_wbuf = NULL;
    /* Every connection is gone (the caller's promise), so no SSL refers to these caches. */
    for (size_t i = 0; i < ctx->ndests; i++) {
        zlb_tls_sessions_destroy(ctx->dests[i].sessions);
        ctx->dests[i].sessions = NULL;
    }
    ctx_unref(ctx);
}

zlb_loop_t *zlb_net_ctx_loop(const zlb_net_ctx_t *ctx)
{
    return ctx->loop;
}

const zlb_net_addr_t *zlb_net_ctx_dest_addr(const zlb_net_ctx_t *ctx, uint16_t dest)
{
    return &ctx->dests[dest].addr;
}
