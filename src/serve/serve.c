/* serve.c -- the built-in server's life cycle: listeners, TLS set-up, server threads, stats. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"

#define DEFAULT_BACKLOG 4096
#define MAX_THREADS 1024
/* Accepts per wake-up: enough to drain a burst cheaply, small enough that a connect storm on
 * one listener cannot hold up the I/O of connections already open on the same thread. */
#define DEFAULT_ACCEPT_BUDGET 256
/* Reads per connection per wake-up (each up to the 64 KiB buffer) before it yields. */
#define DEFAULT_READS_PER_EVENT 16
/* Out of fds: how long to leave the listener alone before trying again. */
#define ACCEPT_BACKOFF_NS (50 * ZLB_NS_PER_MS)
/* A client that connects and never completes its handshake holds an fd and an SSL (some
 * 10 KiB) for nothing. Ten seconds is far beyond any real handshake on a loopback or LAN, even
 * on a target saturated by a handshake benchmark, and short enough that a leak of half-open
 * clients cannot pile up over a run. */
#define DEFAULT_HANDSHAKE_TIMEOUT_NS (10 * ZLB_NS_PER_SEC)
#define DAY_S (24 * 3600)

typedef enum { ACCEPT_DRAINED, ACCEPT_MORE, ACCEPT_BACKOFF } accept_result_t;

/* "1.2.3.4:80" or "[::1]:80"; numeric only, because name resolution does not belong in a
 * function that must answer at once and the target only ever serves a known interface. */
static int open_listener(const zlb_serve_t *t, const struct sockaddr_storage *ss, socklen_t len,
                         int *out)
{
    int one = 1, err;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Accepted sockets inherit the listener's send buffer size (and lose autotuning with it),
     * which spares a syscall per accept. */
    if (t->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &t->sndbuf, sizeof(t->sndbuf)) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    /* Every server thread binds its own socket to the same address and the kernel spreads
     * incoming connections over them, so the threads share no accept queue and no lock. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, t->backlog) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

static void format_address(zlb_serve_t *t, const struct sockaddr_storage *ss)
{
    zlb_addr_format((const struct sockaddr *)ss, t->address, sizeof(t->address));
    t->port = zlb_addr_port((const struct sockaddr *)ss);
}

/* ---- accepting (server thread) ----------------------------------------------------------------
 */

static bool accept_error_is_transient(int err)
{
    /* The connection died in the queue, or the peer was refused by a firewall rule: the next
     * one in the queue may be fine, so carry on. */
    return err == ECONNABORTED || err == EPROTO || err == EPERM || err == ENETDOWN ||
           err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
           err == EOPNOTSUPP || err == ENETUNREACH;
}

static accept_result_t accept_batch(tgt_thread_t *th, uint32_t budget)
{
    for (uint32_t n = 0; n < budget;) {
        int fd = accept4(th->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            tgt_conn_accepted(th, fd);
            n++;
            continue;
        }
        int err = errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return ACCEPT_DRAINED;
        tgt_count(&th->c.accept_errors, 1);
        if (accept_error_is_transient(err)) {
            n++;
            continue;
        }
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or something unexpected: retrying now would fail the
         * same way, and with the listener still readable an edge-triggered loop would never
         * sleep. */
        zlb_log_warn("target %d: accept: %s; pausing the listener", th->index, strerror(err));
        return ACCEPT_BACKOFF;
    }
    return ACCEPT_MORE;
}

/* Out of fds, we stop watching the listener and look again after a short timer. The other
 * classic answer, a spare fd closed to accept and drop the connection, was not chosen: for a
 * load generator's target, silently dropping connections would show up at the client as
 * resets or EOFs and be blamed on the wrong side, while connections left in the backlog show
 * the real symptom of an overloaded server (slow connect, then SYN drops once the backlog is
 * full). It would also race with any other thread of the process that opens a file in the
 * window where the spare is closed. */
static void back_off(tgt_thread_t *th)
{
    if (th->listening) {
        int err = zlb_loop_unwatch(th->loop, &th->listener);
        if (err < 0)
            zlb_fatal("target %d: unwatch listener: %s", th->index, strerror(-err));
        th->listening = false;
    }
    th->backed_off = true;
    zlb_timer_start(th->loop, &th->accept_timer, ACCEPT_BACKOFF_NS, 0);
}

static void accept_and_schedule(tgt_thread_t *th)
{
    switch (accept_batch(th, th->target->accept_budget)) {
    case ACCEPT_DRAINED:
        break;
    case ACCEPT_MORE:
        /* The listener is edge-triggered: with connections still queued no new event comes,
         * so come back through the task queue, after the I/O already waiting has run. */
        if (!th->accept_queued) {
            th->accept_queued = true;
            zlb_loop_post(th->loop, &th->accept_task);
        }
        break;
    case ACCEPT_BACKOFF:
        back_off(th);
        break;
    }
}

static void accept_task_cb(zlb_loop_t *loop, zlb_task_t *task, bool discarded)
{
    tgt_thread_t *th = ZLB_CONTAINER_OF(task, tgt_thread_t, accept_task);

    (void)loop;
    th->accept_queued = false;
    if (discarded || th->backed_off)
        return;
    accept_and_schedule(th);
}

/* With accept_delay_ns, each accept waits one tick of the timer, so queued connections are
 * taken one per tick. The backlog stays as configured: the kernel completes handshakes on its
 * own, so clients see the delay as time to first byte (and as connect time only once the
 * backlog is full). Keeping both knobs independent lets a test choose either effect. */
static void accept_delayed(tgt_thread_t *th)
{
    switch (accept_batch(th, 1)) {
    case ACCEPT_DRAINED:
        break; /* the next connection's edge starts the next tick */
    case ACCEPT_MORE:
        zlb_timer_start(th->loop, &th->accept_timer, th->target->accept_delay_ns, 0);
        break;
    case ACCEPT_BACKOFF:
        back_off(th);
        break;
    }
}

static void listener_cb(zlb_loop_t *loop, zlb_watcher_t *w, uint32_t events)
{
    tgt_thread_t *th = ZLB_CONTAINER_OF(w, tgt_thread_t, listener);

    (void)loop;
    (void)events;
    if (th->target->accept_delay_ns) {
        if (!zlb_timer_active(&th->accept_timer))
            zlb_timer_start(th->loop, &th->accept_timer, th->target->accept_delay_ns, 0);
        return;
    }
    accept_and_schedule(th);
}

static int watch_listener(tgt_thread_t *th)
{
    int err = zlb_loop_watch(th->loop, &th->listener, EPOLLIN);
    if (err == 0)
        th->listening = true;
    return err;
}

static void accept_timer_cb(zlb_loop_t *loop, zlb_timer_t *timer)
{
    tgt_thread_t *th = ZLB_CONTAINER_OF(timer, tgt_thread_t, accept_timer);

    (void)loop;
    if (th->backed_off) {
        int err = watch_listener(th);
        if (err < 0) {
            /* Registering needs memory in the kernel, which may be what ran out. */
            tgt_count(&th->c.accept_errors, 1);
            zlb_timer_start(th->loop, &th->accept_timer, ACCEPT_BACKOFF_NS, 0);
            return;
        }
        th->backed_off = false;
    }
    if (th->target->accept_delay_ns)
        accept_delayed(th);
    else
        accept_and_schedule(th);
}

/* ---- server threads ----------------------------------------------------------------------- */

static void report_ready(zlb_serve_t *t, int err)
{
    pthread_mutex_lock(&t->mu);
    t->nready++;
    if (err && !t->start_err)
        t->start_err = err;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

/* Runs as the loop's first task, so that zlb_serve_start returns only once every loop is
 * inside zlb_loop_run: a stop sent after that can never be missed. */
static void thread_setup_cb(zlb_loop_t *loop, void *arg, bool discarded)
{
    tgt_thread_t *th = arg;
    int err = 0;

    if (discarded)
        return;
    err = watch_listener(th);
    if (err == 0 && !th->target->accept_delay_ns)
        accept_and_schedule(th); /* connections queued before the watch came in */
    if (err < 0)
        zlb_loop_stop(loop);
    th->setup_done = true;
    report_ready(th->target, err);
}

static void *thread_main(void *arg)
{
    tgt_thread_t *th = arg;
    char name[16];

    snprintf(name, sizeof(name), "zlb-serve-%d", th->index);
    zlb_thread_set_name(name);
    zlb_loop_post_fn(th->loop, thread_setup_cb, th);
    int err = zlb_loop_run(th->loop);
    if (!th->setup_done) /* the loop gave up before its first task: start must not hang */
        report_ready(th->target, err < 0 ? err : -EIO);
    return NULL;
}

static int thread_init(zlb_serve_t *t, int i, const struct sockaddr_storage *ss, socklen_t len)
{
    tgt_thread_t *th = &t->threads[i];
    zlb_loop_opts_t lopts = {.id = i};
    int err, fd = -1;

    th->target = t;
    th->index = i;
    zlb_watcher_init(&th->listener, -1, listener_cb);
    zlb_task_init(&th->accept_task, accept_task_cb);
    zlb_task_init(&th->ready_task, tgt_ready_task_cb);
    zlb_timer_init(&th->accept_timer, accept_timer_cb);
    zlb_list_init(&th->ready);
    zlb_list_init(&th->free);

    th->rbuf = malloc(ZLB_TARGET_READ_BUF);
    if (!th->rbuf)
        return -ENOMEM;
    th->rng = zlb_now_ns() ^ ((uint64_t)i << 32) ^ 0x9e3779b97f4a7c15ull;
    err = zlb_loop_create(&lopts, &th->loop);
    if (err < 0)
        return err;
    err = open_listener(t, ss, len, &fd);
    if (err < 0)
        return err;
    th->listener.fd = fd;
    return 0;
}

/* Safe on a thread that was never initialised or never started; the thread has stopped. */
static void thread_dispose(tgt_thread_t *th)
{
    /* Tasks still queued are called back as discarded; they point into th, still alive. */
    zlb_loop_destroy(th->loop);
    th->loop = NULL;
    tgt_conns_dispose(th);
    if (th->listener.fd >= 0)
        close(th->listener.fd);
    th->listener.fd = -1;
    free(th->rbuf);
    th->rbuf = NULL;
}

/* ---- TLS set-up ---------------------------------------------------------------------------- */

static bool tls_version_ok(int v)
{
    return v == 0 || v == 0x0303 || v == 0x0304;
}

static int check_tls_opts(const zlb_serve_opts_t *o)
{
    /* A TLS option without TLS is a mistake to report, not a setting to ignore silently. */
    if (!o->tls) {
        if (o->tls_cert_kind || o->tls_require_client_cert || o->tls_min_version ||
            o->tls_max_version)
            return -EINVAL;
        return 0;
    }
    if ((unsigned)o->tls_cert_kind > ZLB_SERVE_CERT_SELF_SIGNED)
        return -EINVAL;
    if (!tls_version_ok(o->tls_min_version) || !tls_version_ok(o->tls_max_version))
        return -EINVAL;
    if (o->tls_min_version && o->tls_max_version && o->tls_min_version > o->tls_max_version)
        return -EINVAL;
    return 0;
}

/* The CA, the server certificate of the kind asked for and the server context. Key generation
 * and signing take a few milliseconds, done once here, never on a server thread. */
static int tls_setup(zlb_serve_t *t, const zlb_serve_opts_t *o)
{
    static const char *const wrong_dns[] = {"wrong.invalid"};
    zlb_tls_cert_opts_t co = {0};
    zlb_tls_server_opts_t so = {0};
    zlb_tls_cert_t *cert = NULL;
    char errbuf[256];
    int err;

    err = zlb_tls_cert_create_ca(NULL, &t->ca);
    if (err < 0)
        return -EPROTO;
    switch (o->tls_cert_kind) {
    case ZLB_SERVE_CERT_VALID:
    case ZLB_SERVE_CERT_SELF_SIGNED:
        break;
    case ZLB_SERVE_CERT_EXPIRED:
        /* Expired by a day, not a second: a client whose clock lags must still see it. */
        co.not_before_s = -2 * DAY_S;
        co.not_after_s = -DAY_S;
        break;
    case ZLB_SERVE_CERT_WRONG_NAME:
        /* No IP SAN either, so a client connecting by address fails as one by name does.
         * ".invalid" (RFC 2606) can never be a name a client legitimately asks for. */
        co.cn = wrong_dns[0];
        co.dns = wrong_dns;
        co.ndns = ZLB_ARRAY_LEN(wrong_dns);
        break;
    }
    err = zlb_tls_cert_issue(o->tls_cert_kind == ZLB_SERVE_CERT_SELF_SIGNED ? NULL : t->ca, &co,
                             &cert);
    if (err < 0) {
        err = -EPROTO;
        goto out;
    }
    so.cert = cert;
    so.client_ca = o->tls_require_client_cert ? t->ca : NULL;
    so.min_version = o->tls_min_version;
    so.max_version = o->tls_max_version;
    err = zlb_tls_server_create(&so, &t->tls_srv, errbuf, sizeof(errbuf));
    if (err < 0) {
        zlb_log_error("target: TLS server context: %s", errbuf);
        err = -EPROTO;
        goto out;
    }
    t->ca_pem = zlb_tls_cert_pem(t->ca, false);
out:
    /* The context holds its own references to the certificate and key. */
    zlb_tls_cert_destroy(cert);
    return err;
}

/* ---- public ------------------------------------------------------------------------------- */

int zlb_serve_start(const zlb_serve_opts_t *opts, zlb_serve_t **out)
{
    return zlb_serve_start_tuned(opts, NULL, out);
}

int zlb_serve_start_tuned(const zlb_serve_opts_t *opts, const zlb_serve_tuning_t *tuning,
                          zlb_serve_t **out)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    zlb_serve_t *t = NULL;
    int err, nthreads;

    *out = NULL;
    if (!opts || opts->threads < 0 || opts->threads > MAX_THREADS || opts->backlog < 0)
        return -EINVAL;
    if (opts->mode != ZLB_SERVE_ECHO && opts->mode != ZLB_SERVE_SINK &&
        opts->mode != ZLB_SERVE_HTTP && opts->mode != ZLB_SERVE_REDIS &&
        opts->mode != ZLB_SERVE_SOURCE)
        return -EINVAL;
    err = check_tls_opts(opts);
    if (err < 0)
        return err;
    if (opts->http && opts->mode != ZLB_SERVE_HTTP)
        return -EINVAL;
    err = zlb_addr_parse(opts->listen, &ss, &len);
    if (err < 0)
        return err;
    nthreads = opts->threads ? opts->threads : 1;

    t = zlb_xcalloc(1, sizeof(*t));
    t->mode = opts->mode;
    t->backlog = opts->backlog ? opts->backlog : DEFAULT_BACKLOG;
    t->accept_delay_ns = opts->accept_delay_ns;
    t->max_conns = opts->max_conns;
    t->accept_budget =
        tuning && tuning->accept_budget ? tuning->accept_budget : DEFAULT_ACCEPT_BUDGET;
    t->reads_per_event =
        tuning && tuning->reads_per_event ? tuning->reads_per_event : DEFAULT_READS_PER_EVENT;
    t->sndbuf = tuning && tuning->sndbuf <= INT_MAX ? (int)tuning->sndbuf : 0;
    t->handshake_timeout_ns = tuning && tuning->handshake_timeout_ns ? tuning->handshake_timeout_ns
                                                                     : DEFAULT_HANDSHAKE_TIMEOUT_NS;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cond, NULL);
    if (t->mode == ZLB_SERVE_HTTP) {
        err = tgt_http_build(t, opts->http);
        if (err < 0)
            goto fail;
    }
    if (t->mode == ZLB_SERVE_SOURCE) {
        t->source = zlb_xmalloc(ZLB_TARGET_SOURCE_BUF);
        for (uint32_t i = 0; i < ZLB_TARGET_SOURCE_BUF; i++)
            t->source[i] = (char)('a' + i % 26);
    }
    /* aligned_alloc: the counters inside are aligned to a cache line (size is a multiple). */
    t->threads = aligned_alloc(ZLB_TARGET_CACHE_LINE, (size_t)nthreads * sizeof(*t->threads));
    if (!t->threads) {
        err = -ENOMEM;
        goto fail;
    }
    memset(t->threads, 0, (size_t)nthreads * sizeof(*t->threads));
    for (int i = 0; i < nthreads; i++)
        t->threads[i].listener.fd = -1;
    t->nthreads = nthreads;
    if (opts->tls) {
        err = tls_setup(t, opts);
        if (err < 0)
            goto fail;
    }

    for (int i = 0; i < nthreads; i++) {
        err = thread_init(t, i, &ss, len);
        if (err < 0)
            goto fail;
        if (i == 0) {
            /* The others must bind the very port the kernel picked for port 0. */
            len = sizeof(ss);
            if (getsockname(t->threads[0].listener.fd, (struct sockaddr *)&ss, &len) < 0) {
                err = -errno;
                goto fail;
            }
            format_address(t, &ss);
            zlb_addr_set_port(&ss, t->port);
        }
    }
    /* Written once the port is certain to be ours (a failed bind leaves no file behind) and
     * before any thread accepts, so a client that waits for the file finds the server up. */
    if (t->ca && opts->ca_out_file) {
        err = zlb_tls_cert_write(t->ca, opts->ca_out_file, NULL);
        if (err < 0) {
            zlb_log_error("target: cannot write the CA to %s: %s", opts->ca_out_file,
                          strerror(-err));
            goto fail;
        }
    }

    int created = 0;
    for (; created < nthreads; created++) {
        err = -pthread_create(&t->threads[created].tid, NULL, thread_main, &t->threads[created]);
        if (err < 0)
            break;
        t->threads[created].created = true;
    }
    /* Even on failure, wait for the threads already created to be inside their loops, so the
     * stop that destroy sends them cannot come too early and be missed. */
    pthread_mutex_lock(&t->mu);
    while (t->nready < created)
        pthread_cond_wait(&t->cond, &t->mu);
    if (err == 0)
        err = t->start_err;
    pthread_mutex_unlock(&t->mu);
    if (err < 0)
        goto fail;

    *out = t;
    return 0;

fail:
    zlb_serve_destroy(t);
    return err;
}

const char *zlb_serve_address(const zlb_serve_t *t)
{
    return t->address;
}

uint16_t zlb_serve_port(const zlb_serve_t *t)
{
    return t->port;
}

const char *zlb_serve_ca_pem(const zlb_serve_t *t)
{
    return t->ca_pem;
}

int zlb_serve_issue_client_cert(const zlb_serve_t *t, const char *cert_path, const char *key_path)
{
    zlb_tls_cert_opts_t co = {.cn = "zlbench client", .client = true};
    zlb_tls_cert_t *cert = NULL;
    int err;

    if (!t || !t->ca || !cert_path || !key_path)
        return -EINVAL;
    /* The CA is read-only once made, so issuing while the server threads verify against it
     * needs no lock. */
    if (zlb_tls_cert_issue(t->ca, &co, &cert) < 0)
        return -EPROTO;
    err = zlb_tls_cert_write(cert, cert_path, key_path);
    zlb_tls_cert_destroy(cert);
    return err;
}

static void read_counters(const tgt_thread_t *th, zlb_serve_stats_t *s)
{
    const tgt_counters_t *c = &th->c;

    s->accepted = atomic_load_explicit(&c->accepted, memory_order_relaxed);
    s->open = atomic_load_explicit(&c->open, memory_order_relaxed);
    s->closed = atomic_load_explicit(&c->closed, memory_order_relaxed);
    s->bytes_in = atomic_load_explicit(&c->bytes_in, memory_order_relaxed);
    s->bytes_out = atomic_load_explicit(&c->bytes_out, memory_order_relaxed);
    s->accept_errors = atomic_load_explicit(&c->accept_errors, memory_order_relaxed);
    s->tls_handshakes = atomic_load_explicit(&c->tls_handshakes, memory_order_relaxed);
    s->tls_resumed = atomic_load_explicit(&c->tls_resumed, memory_order_relaxed);
    s->tls_failed = atomic_load_explicit(&c->tls_failed, memory_order_relaxed);
    s->rejected = atomic_load_explicit(&c->rejected, memory_order_relaxed);
    s->tls_timeouts = atomic_load_explicit(&c->tls_timeouts, memory_order_relaxed);
}

void zlb_serve_read_stats(const zlb_serve_t *t, zlb_serve_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < t->nthreads; i++) {
        zlb_serve_stats_t s;
        read_counters(&t->threads[i], &s);
        out->accepted += s.accepted;
        out->open += s.open;
        out->closed += s.closed;
        out->bytes_in += s.bytes_in;
        out->bytes_out += s.bytes_out;
        out->accept_errors += s.accept_errors;
        out->tls_handshakes += s.tls_handshakes;
        out->tls_resumed += s.tls_resumed;
        out->tls_failed += s.tls_failed;
        out->rejected += s.rejected;
        out->tls_timeouts += s.tls_timeouts;
    }
}

int zlb_serve_threads(const zlb_serve_t *t)
{
    return t->nthreads;
}

void zlb_serve_thread_info(const zlb_serve_t *t, int i, zlb_serve_thread_info_t *out)
{
    const tgt_thread_t *th = &t->threads[i];
    clockid_t cid;
    struct timespec ts;

    memset(out, 0, sizeof(*out));
    read_counters(th, &out->stats);
    out->blocked = atomic_load_explicit(&th->c.blocked, memory_order_relaxed);
    if (th->created && pthread_getcpuclockid(th->tid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
        out->cpu_ns = (uint64_t)ts.tv_sec * ZLB_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void zlb_serve_destroy(zlb_serve_t *t)
{
    if (!t)
        return;
    /* Stop them all first so they wind down in parallel, then join. */
    for (int i = 0; i < t->nthreads; i++)
        if (t->threads[i].created)
            zlb_loop_stop(t->threads[i].loop);
    for (int i = 0; i < t->nthreads; i++) {
        if (t->threads[i].created)
            pthread_join(t->threads[i].tid, NULL);
        t->threads[i].created = false;
    }
    for (int i = 0; i < t->nthreads; i++)
        thread_dispose(&t->threads[i]);
    free(t->threads);
    /* After the connections: every SSL made from the context is gone. */
    zlb_tls_server_destroy(t->tls_srv);
    zlb_tls_cert_destroy(t->ca);
    free(t->ca_pem);
    tgt_http_free(t);
    free(t->source);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
