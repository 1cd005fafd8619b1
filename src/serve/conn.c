/* conn.c -- the target's connections: pooled structs, plain and TLS transports, echo/sink/source,
 * and the dispatch to http (http.c) and redis (redis.c). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/serve_internal.h"

/* Connection structs come in blocks of this many and are never freed before the thread ends:
 * after warm-up an accept allocates nothing. Open ones are found for the final clean-up by
 * walking the blocks (fd >= 0), so no list of them is kept on the hot path. */
#define CONNS_PER_CHUNK 256
/* Reads that drain what a closing peer already sent (each up to the 64 KiB buffer). */
#define CLOSE_DRAIN_READS 16
static void conn_run(tgt_conn_t *c);
static void conn_close(tgt_conn_t *c);

/* ---- plain transport ------------------------------------------------------------------------ */

static ssize_t plain_read(tgt_conn_t *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(c->w.fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = EPOLLIN;
            return -EAGAIN;
        }
        return -errno;
    }
}

static ssize_t plain_write(tgt_conn_t *c, const void *buf, size_t len)
{
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away must cost an EPIPE, not the process. */
        ssize_t n = send(c->w.fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = EPOLLOUT;
            return -EAGAIN;
        }
        return -errno;
    }
}

static const tgt_io_t plain_io = {.read = plain_read, .write = plain_write, .dispose = NULL};

/* ---- TLS transport --------------------------------------------------------------------------- */

/* Maps a step's result to the transport's convention. WANT_* names the interest whatever the
 * step was: a read may have to write (a handshake message, a key update) and a write to read. */
static ssize_t tls_result(tgt_conn_t *c, zlb_tls_status_t st, size_t n)
{
    switch (st) {
    case ZLB_TLS_DONE:
        return (ssize_t)n;
    case ZLB_TLS_WANT_READ:
        c->want = EPOLLIN;
        return -EAGAIN;
    case ZLB_TLS_WANT_WRITE:
        c->want = EPOLLOUT;
        return -EAGAIN;
    case ZLB_TLS_EOF:
        return 0;
    case ZLB_TLS_FAILED:
    default:
        if (c->tls.err.kind == ZLB_TLS_ERR_SYSCALL && c->tls.err.code > 0)
            return -c->tls.err.code;
        return -EPROTO;
    }
}

/* The handshake runs inside the first read or write, so the modes never wait for it: the
 * server speaks second, and its first read is due when the ClientHello arrives. 0 once done. */
static ssize_t tls_handshake(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;
    zlb_tls_status_t st = zlb_tls_handshake(&c->tls);

    if (st != ZLB_TLS_DONE)
        return tls_result(c, st, 0);
    zlb_timer_stop(th->loop, &c->hs_timer);
    tgt_count(&th->c.tls_handshakes, 1);
    if (zlb_tls_conn_resumed(&c->tls))
        tgt_count(&th->c.tls_resumed, 1);
    return 0;
}

/* Fills as much of buf as the records already here allow, not one record (16 KiB) per call:
 * the per-event read budget then means the same amount of data as on plain TCP. A failure
 * or EOF behind data is left for the next call, which meets it again. */
static ssize_t tls_read(tgt_conn_t *c, void *buf, size_t len)
{
    size_t total = 0, n = 0;
    zlb_tls_status_t st = ZLB_TLS_DONE;

    if (!c->tls.handshake_done) {
        ssize_t r = tls_handshake(c);
        if (r < 0)
            return r;
    }
    while (total < len) {
        st = zlb_tls_read(&c->tls, (char *)buf + total, len - total, &n);
        if (st != ZLB_TLS_DONE)
            break;
        total += n;
    }
    return total > 0 ? (ssize_t)total : tls_result(c, st, 0);
}

/* After -EAGAIN the callers retry with the same bytes and length (echo keeps them in c->out,
 * http recomputes the same window of its response buffer), as SSL_write requires. */
static ssize_t tls_write(tgt_conn_t *c, const void *buf, size_t len)
{
    size_t n = 0;

    if (!c->tls.handshake_done) {
        ssize_t r = tls_handshake(c);
        if (r < 0)
            return r;
    }
    zlb_tls_status_t st = zlb_tls_write(&c->tls, buf, len, &n);
    return tls_result(c, st, n);
}

/* close_notify is sent without waiting for the peer's: the target has nothing more to learn
 * from this connection, and a peer that never answers must not hold it open. */
static void tls_dispose(tgt_conn_t *c)
{
    zlb_tls_conn_shutdown(&c->tls);
    zlb_tls_conn_dispose(&c->tls);
}

static const tgt_io_t tls_io = {.read = tls_read, .write = tls_write, .dispose = tls_dispose};

static void handshake_timeout_cb(zlb_loop_t *loop, zlb_timer_t *timer)
{
    tgt_conn_t *c = ZLB_CONTAINER_OF(timer, tgt_conn_t, hs_timer);

    (void)loop;
    tgt_count(&c->th->c.tls_timeouts, 1);
    conn_close(c);
}

/* ---- pool ------------------------------------------------------------------------------------ */

static int pool_grow(tgt_thread_t *th)
{
    tgt_conn_t *block = calloc(CONNS_PER_CHUNK, sizeof(*block));
    if (!block)
        return -ENOMEM;
    if (th->nchunks == th->chunks_cap) {
        th->chunks_cap = th->chunks_cap ? th->chunks_cap * 2 : 16;
        th->chunks = zlb_xrealloc(th->chunks, th->chunks_cap * sizeof(*th->chunks));
    }
    th->chunks[th->nchunks++] = block;
    for (int i = 0; i < CONNS_PER_CHUNK; i++) {
        tgt_conn_t *c = &block[i];
        zlb_watcher_init(&c->w, -1, NULL);
        zlb_timer_init(&c->hs_timer, handshake_timeout_cb);
        zlb_list_init(&c->ready);
        zlb_list_push_back(&th->free, &c->node);
    }
    return 0;
}

static tgt_conn_t *pool_get(tgt_thread_t *th)
{
    if (zlb_list_empty(&th->free) && pool_grow(th) < 0)
        return NULL;
    return ZLB_CONTAINER_OF(zlb_list_pop_front(&th->free), tgt_conn_t, node);
}

/* ---- life and death -------------------------------------------------------------------------- */

static void set_blocked(tgt_conn_t *c, bool blocked)
{
    if (c->blocked == blocked)
        return;
    c->blocked = blocked;
    if (blocked)
        tgt_count(&c->th->c.blocked, 1);
    else
        tgt_uncount(&c->th->c.blocked, 1);
}

static void conn_close(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;

    if (c->w.registered) {
        int err = zlb_loop_unwatch(th->loop, &c->w);
        if (err < 0)
            zlb_fatal("target: unwatch fd %d: %s", c->w.fd, strerror(-err));
    }
    zlb_timer_stop(th->loop, &c->hs_timer);
    if (th->target->mode == ZLB_SERVE_HTTP)
        tgt_http_conn_dispose(c);
    /* Every TLS connection is counted once: as a handshake when it completes, or here as a
     * failure, whatever ended it first (an error on either side, the peer leaving, the
     * timeout), so that accepted = handshakes + failed + those still in their handshake. */
    if (c->io == &tls_io && !c->tls.handshake_done)
        tgt_count(&th->c.tls_failed, 1);
    if (c->io->dispose)
        c->io->dispose(c);
    close(c->w.fd);
    c->w.fd = -1;
    free(c->out);
    c->out = NULL;
    set_blocked(c, false);
    if (zlb_list_linked(&c->ready))
        zlb_list_remove(&c->ready);
    /* Front: the struct most recently used is the one most likely still in cache. */
    zlb_list_push_front(&th->free, &c->node);

    /* The slot is given back before the close is published, so whoever sees `open` drop
     * and connects again finds room. */
    if (th->target->max_conns)
        atomic_fetch_sub_explicit(&th->target->nopen, 1, memory_order_release);
    th->nopen--;
    tgt_count(&th->c.closed, 1);
    atomic_store_explicit(&th->c.open, th->nopen, memory_order_release);
}

static void conn_cb(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    tgt_conn_t *c = ZLB_CONTAINER_OF(w, tgt_conn_t, w);

    (void)loop;
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    /* Events are only hints here: conn_run works out from the connection's own state whether
     * to flush, read or close, so a stale or spurious event costs one EAGAIN at most. */
    conn_run(c);
}

void tgt_conn_accepted(tgt_thread_t *th, int fd)
{
    zlb_serve_t *t = th->target;
    tgt_conn_t *c;
    int one = 1, err;

    /* A shared count only when a cap is set: it is the one way to enforce a cap over threads
     * exactly, and it is touched per accept and close, never per read or write. */
    if (t->max_conns &&
        atomic_fetch_add_explicit(&t->nopen, 1, memory_order_relaxed) >= t->max_conns) {
        atomic_fetch_sub_explicit(&t->nopen, 1, memory_order_relaxed);
        close(fd);
        tgt_count(&th->c.rejected, 1);
        return;
    }
    c = pool_get(th);
    if (!c) {
        err = -ENOMEM;
        goto refuse;
    }
    /* Replies are small and often pipelined: without this, Nagle holds the second one back
     * until the client's delayed ACK of the first, some 40 ms later. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        err = -errno;
        zlb_list_push_front(&th->free, &c->node);
        goto refuse;
    }

    c->th = th;
    c->io = &plain_io;
    if (t->tls_srv) {
        err = zlb_tls_conn_init_server(&c->tls, t->tls_srv, fd);
        if (err < 0) {
            zlb_list_push_front(&th->free, &c->node);
            goto refuse;
        }
        c->io = &tls_io;
    }
    c->want = 0;
    c->blocked = false;
    c->closing = false;
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (t->mode == ZLB_SERVE_HTTP)
        tgt_http_conn_init(c);
    if (t->mode == ZLB_SERVE_REDIS)
        tgt_redis_conn_init(c);
    zlb_watcher_init(&c->w, fd, conn_cb);
    /* Registering a socket that already holds data reports it at once: nothing to read here.
     * A source writes whenever the socket has room, so it watches both ways for good. */
    err =
        zlb_loop_watch(th->loop, &c->w, t->mode == ZLB_SERVE_SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN);
    if (err < 0) {
        c->w.fd = -1;
        zlb_tls_conn_dispose(&c->tls);
        zlb_list_push_front(&th->free, &c->node);
        goto refuse;
    }
    if (c->io == &tls_io)
        zlb_timer_start(th->loop, &c->hs_timer, t->handshake_timeout_ns, 0);
    th->nopen++;
    tgt_count(&th->c.accepted, 1);
    atomic_store_explicit(&th->c.open, th->nopen, memory_order_relaxed);
    return;

refuse:
    zlb_log_warn("target %d: cannot serve a connection: %s", th->index, strerror(-err));
    close(fd);
    tgt_count(&th->c.accept_errors, 1);
    if (t->max_conns)
        atomic_fetch_sub_explicit(&t->nopen, 1, memory_order_relaxed);
}

void tgt_conns_dispose(tgt_thread_t *th)
{
    for (uint32_t i = 0; i < th->nchunks; i++) {
        tgt_conn_t *block = th->chunks[i];
        for (int k = 0; k < CONNS_PER_CHUNK; k++) {
            tgt_conn_t *c = &block[k];
            if (c->w.fd < 0)
                continue;
            if (c->io->dispose)
                c->io->dispose(c);
            close(c->w.fd);
            c->w.fd = -1;
            free(c->out);
            c->out = NULL;
            free(c->http.in);
            c->http.in = NULL;
        }
        free(block);
    }
    free(th->chunks);
    th->chunks = NULL;
    th->nchunks = th->chunks_cap = 0;
    th->nopen = 0;
    atomic_store_explicit(&th->c.open, 0, memory_order_relaxed);
    atomic_store_explicit(&th->c.blocked, 0, memory_order_relaxed);
}

/* ---- output ---------------------------------------------------------------------------------- */

static bool has_output(const tgt_conn_t *c)
{
    return c->out != NULL;
}

/* Writes what is pending. 0 when all of it went, -EAGAIN (conn->want set), or -errno. */
static int flush(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;

    while (c->out) {
        ssize_t n = c->io->write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n <= 0)
            return n < 0 ? (int)n : -EIO;
        tgt_count(&th->c.bytes_out, (uint64_t)n);
        c->out_off += (uint32_t)n;
        if (c->out_off == c->out_len) {
            /* Freed at once: a connection holds this memory only while its peer lags. */
            free(c->out);
            c->out = NULL;
            c->out_len = c->out_off = 0;
        }
    }
    return 0;
}

/* Echoes bytes that live in the shared read buffer: what the socket will not take now is
 * copied out, because the buffer belongs to the next read of any connection. */
static int echo(tgt_conn_t *c, const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = c->io->write(c, buf + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            tgt_count(&c->th->c.bytes_out, (uint64_t)n);
            continue;
        }
        if (n == -EAGAIN) {
            c->out_len = (uint32_t)(len - off);
            c->out_off = 0;
            c->out = zlb_xmalloc(c->out_len);
            memcpy(c->out, buf + off, c->out_len);
            return -EAGAIN;
        }
        return n < 0 ? (int)n : -EIO;
    }
    return 0;
}

/* ---- the state machine ----------------------------------------------------------------------- */

static int arm(tgt_conn_t *c, uint32_t events)
{
    return zlb_loop_rewatch(c->th->loop, &c->w, events);
}

/* After a "Connection: close" reply has gone: drop what the peer already sent before
 * closing, because close() on a socket with unread data sends a RST, and a RST can make the
 * peer's kernel throw away the reply it has not read yet. A peer still sending after that
 * gets the RST it asked for. */
static void close_after_reply(tgt_conn_t *c)
{
    for (int i = 0; i < CLOSE_DRAIN_READS; i++) {
        ssize_t n = c->io->read(c, c->th->rbuf, ZLB_TARGET_READ_BUF);
        if (n <= 0)
            break;
        tgt_count(&c->th->c.bytes_in, (uint64_t)n);
    }
    conn_close(c);
}

static void queue_ready(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;

    if (!zlb_list_linked(&c->ready))
        zlb_list_push_back(&th->ready, &c->ready);
    if (!th->ready_queued) {
        th->ready_queued = true;
        zlb_loop_post(th->loop, &th->ready_task);
    }
}

void tgt_ready_task_cb(zlb_loop_t *loop, zlb_task_t *task, bool discarded)
{
    tgt_thread_t *th = ZLB_CONTAINER_OF(task, tgt_thread_t, ready_task);
    zlb_list_t batch;
    zlb_list_t *n;

    (void)loop;
    th->ready_queued = false;
    if (discarded)
        return;
    /* A connection that uses its budget again goes back on th->ready, for the next round. */
    zlb_list_init(&batch);
    zlb_list_splice_back(&batch, &th->ready);
    while ((n = zlb_list_pop_front(&batch)) != NULL)
        conn_run(ZLB_CONTAINER_OF(n, tgt_conn_t, ready));
}

/* Source: drops what the peer sends, then writes the shared buffer round and round while the
 * socket takes it. Both interests stay armed (edge-triggered), so an EAGAIN either way is
 * followed by an event; a budget used up without one goes on the ready list instead. After
 * EAGAIN the next write offers the same bytes (out_off has not moved), as TLS requires. */
static void source_run(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;
    const char *src = th->target->source;
    uint32_t budget = th->target->reads_per_event;
    bool more = false;
    uint32_t i;

    for (i = 0; i < budget; i++) {
        ssize_t n = c->io->read(c, th->rbuf, ZLB_TARGET_READ_BUF);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        tgt_count(&th->c.bytes_in, (uint64_t)n);
    }
    more |= i == budget;
    for (i = 0; i < budget; i++) {
        ssize_t n = c->io->write(c, src + c->out_off, ZLB_TARGET_SOURCE_BUF - c->out_off);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        tgt_count(&th->c.bytes_out, (uint64_t)n);
        c->out_off = (uint32_t)((c->out_off + (size_t)n) % ZLB_TARGET_SOURCE_BUF);
    }
    set_blocked(c, i < budget);
    if (more || i == budget)
        queue_ready(c);
}

/* Echo, sink and redis (http has its own, tgt_http_run): makes all the progress the socket allows:
 * output first (while any is pending the peer is
 * not keeping up, so reading more would only grow it), then requests, then close. */
static void conn_run(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;
    zlb_serve_mode_t mode = th->target->mode;
    int err;

    if (mode == ZLB_SERVE_HTTP) {
        tgt_http_run(c);
        return;
    }
    if (mode == ZLB_SERVE_SOURCE) {
        source_run(c);
        return;
    }
    if (has_output(c)) {
        err = flush(c);
        if (err == -EAGAIN) {
            set_blocked(c, true);
            if (arm(c, c->want) < 0)
                conn_close(c);
            return;
        }
        if (err < 0) {
            conn_close(c);
            return;
        }
        set_blocked(c, false);
    }
    if (c->closing) {
        close_after_reply(c);
        return;
    }
    if (arm(c, EPOLLIN) < 0) {
        conn_close(c);
        return;
    }

    for (uint32_t i = 0; i < th->target->reads_per_event; i++) {
        ssize_t n = c->io->read(c, th->rbuf, ZLB_TARGET_READ_BUF);
        if (n == -EAGAIN) {
            if (c->want != EPOLLIN && arm(c, c->want) < 0)
                conn_close(c);
            return;
        }
        if (n <= 0) { /* end of stream or error: either way the peer is gone */
            conn_close(c);
            return;
        }
        tgt_count(&th->c.bytes_in, (uint64_t)n);

        err = 0;
        if (mode == ZLB_SERVE_ECHO)
            err = echo(c, th->rbuf, (size_t)n);
        else if (mode == ZLB_SERVE_REDIS)
            err = tgt_redis_feed(c, th->rbuf, (size_t)n);
        if (err == -EAGAIN) {
            set_blocked(c, true);
            if (arm(c, c->want) < 0)
                conn_close(c);
            return;
        }
        if (err < 0) {
            conn_close(c);
            return;
        }
        if (c->closing) {
            close_after_reply(c);
            return;
        }
    }
    /* Still readable (edge-triggered: no new event will say so); let the others run first. */
    queue_ready(c);
}

/* ---- for http.c -------------------------------------------------------------------------- */

void tgt_conn_close(tgt_conn_t *c)
{
    conn_close(c);
}

int tgt_conn_arm(tgt_conn_t *c, uint32_t events)
{
    return arm(c, events);
}

void tgt_conn_set_blocked(tgt_conn_t *c, bool blocked)
{
    set_blocked(c, blocked);
}

void tgt_conn_close_after_reply(tgt_conn_t *c)
{
    close_after_reply(c);
}

void tgt_conn_queue_ready(tgt_conn_t *c)
{
    queue_ready(c);
}

int tgt_conn_send(tgt_conn_t *c, const char *buf, size_t len)
{
    if (len == 0)
        return c->out ? -EAGAIN : 0;
    if (!c->out)
        return echo(c, buf, len);
    /* Behind replies the peer has not taken: in order, after them. Bounded by what one read
     * can ask for, as nothing more is read while a stash waits. */
    c->out = zlb_xrealloc(c->out, c->out_len + len);
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += (uint32_t)len;
    return -EAGAIN;
}
