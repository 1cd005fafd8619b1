/* test_net.c -- errno taxonomy, addresses, sockets, resolver, connection state machine, TLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "net/net.h"
#include "serve/serve.h"
#include "tls/tls_internal.h"
#include "test.h"
#include "test_util.h"

/* ---- helpers ----------------------------------------------------------------------------------
 */

/* Polls cond() every millisecond until it holds or ms pass; returns whether it held. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    ({                                                                                             \
        uint64_t dl_ = zlb_now_ns() + (uint64_t)(ms)*ZLB_NS_PER_MS;                                \
        bool ok_ = false;                                                                          \
        while (!(ok_ = (cond)) && zlb_now_ns() < dl_)                                              \
            sleep_ms(1);                                                                           \
        ok_;                                                                                       \
    })

/* A loop on its own thread, standing in for a poller. */
typedef struct {
    zlb_loop_t *loop;
    pthread_t th;
} lthread_t;

static void *lthread_main(void *arg)
{
    zlb_loop_run(arg);
    return NULL;
}

static void lthread_start(lthread_t *lt)
{
    ASSERT_EQ(zlb_loop_create(NULL, &lt->loop), 0);
    ASSERT_EQ(pthread_create(&lt->th, NULL, lthread_main, lt->loop), 0);
}

static void lthread_stop(lthread_t *lt)
{
    zlb_loop_stop(lt->loop);
    pthread_join(lt->th, NULL);
    zlb_loop_destroy(lt->loop);
}

/* Runs fn(arg) on the loop's thread and waits for it. */
typedef struct {
    void (*fn)(void *);
    void *arg;
    _Atomic bool done;
} call_t;

static void call_run(zlb_loop_t *loop, void *arg, bool discarded)
{
    call_t *c = arg;
    (void)loop;
    if (!discarded)
        c->fn(c->arg);
    atomic_store(&c->done, true);
}

static void on_loop(lthread_t *lt, void (*fn)(void *), void *arg)
{
    call_t c = {.fn = fn, .arg = arg};
    zlb_loop_post_fn(lt->loop, call_run, &c);
    ASSERT(WAIT_UNTIL(atomic_load(&c.done), 10000));
}

/* What the callbacks saw, readable from the test thread. */
typedef struct tconn {
    zlb_conn_t c;
    zlb_sendq_t sq;
    zlb_tls_conn_t tls;
    _Atomic int established;
    _Atomic int closed;
    _Atomic int why;
    _Atomic int err;
    _Atomic int err_kind; /* zlb_net_err_kind_t */
    _Atomic bool was_established;
    _Atomic uint64_t closed_after_ns; /* from the connect() call */
    _Atomic uint64_t bytes_in, bytes_out;
    char echo[64];
    _Atomic size_t echo_len;
    _Atomic uint64_t rx_hash; /* FNV-1a of every byte received, in order */
    int start_rc;
    int state_after_start;
} tconn_t;

static void cb_established(zlb_conn_t *c)
{
    tconn_t *t = ZLB_CONTAINER_OF(c, tconn_t, c);
    atomic_fetch_add(&t->established, 1);
}

static void cb_data(zlb_conn_t *c, const uint8_t *buf, size_t n)
{
    tconn_t *t = ZLB_CONTAINER_OF(c, tconn_t, c);
    size_t have = atomic_load(&t->echo_len);
    size_t take = ZLB_MIN(n, sizeof(t->echo) - have);
    memcpy(t->echo + have, buf, take);
    atomic_store(&t->echo_len, have + take);
    uint64_t h = atomic_load(&t->rx_hash);
    for (size_t i = 0; i < n; i++)
        h = (h ^ buf[i]) * 0x100000001b3ull;
    atomic_store(&t->rx_hash, h);
    atomic_fetch_add(&t->bytes_in, n);
}

static void cb_sent(zlb_conn_t *c, size_t n)
{
    tconn_t *t = ZLB_CONTAINER_OF(c, tconn_t, c);
    atomic_fetch_add(&t->bytes_out, n);
}

static void cb_closed(zlb_conn_t *c, zlb_fail_t why, zlb_net_err_t err, bool was_established)
{
    tconn_t *t = ZLB_CONTAINER_OF(c, tconn_t, c);
    ASSERT_EQ(zlb_conn_state(c), ZLB_CONN_IDLE);
    atomic_store(&t->closed_after_ns, zlb_now_ns() - c->t_start);
    atomic_store(&t->why, (int)why);
    atomic_store(&t->err, err.code);
    atomic_store(&t->err_kind, (int)err.kind);
    atomic_store(&t->was_established, was_established);
    atomic_fetch_add(&t->closed, 1);
}

static const zlb_conn_ops_t test_ops = {
    .established = cb_established,
    .data = cb_data,
    .sent = cb_sent,
    .closed = cb_closed,
};

/* A net ctx on a loop thread, with its own stats. */
typedef struct {
    lthread_t lt;
    zlb_stats_t stats;
    zlb_net_ctx_t *ctx;
    zlb_resolver_t *res;
} netenv_t;

static void env_start(netenv_t *env, zlb_net_ctx_opts_t *o, bool resolver, uint64_t ttl)
{
    memset(env, 0, sizeof(*env));
    lthread_start(&env->lt);
    zlb_stats_init(&env->stats);
    if (resolver)
        ASSERT_EQ(zlb_resolver_create(2, ttl, &env->res), 0);
    o->loop = env->lt.loop;
    o->ops = &test_ops;
    o->stats = &env->stats;
    o->resolver = env->res;
    ASSERT_EQ(zlb_net_ctx_create(o, &env->ctx), 0);
}

typedef struct {
    netenv_t *env;
    tconn_t *t;
    uint16_t dest;
    bool with_sq;
} start_arg_t;

static void do_start(void *arg)
{
    start_arg_t *a = arg;
    zlb_conn_init(&a->t->c, a->env->ctx, a->with_sq ? &a->t->sq : NULL);
    zlb_conn_set_tls(&a->t->c, &a->t->tls);
    a->t->start_rc = zlb_conn_start(&a->t->c, a->dest, 0);
    a->t->state_after_start = zlb_conn_state(&a->t->c);
}

static void start_conn(netenv_t *env, tconn_t *t, uint16_t dest, bool with_sq, size_t cap)
{
    start_arg_t a = {.env = env, .t = t, .dest = dest, .with_sq = with_sq};
    zlb_sendq_init(&t->sq, cap);
    on_loop(&env->lt, do_start, &a);
}

static void do_close(void *arg)
{
    zlb_conn_close(&((tconn_t *)arg)->c);
}

static void env_stop(netenv_t *env, tconn_t **conns, size_t n)
{
    for (size_t i = 0; i < n; i++)
        on_loop(&env->lt, do_close, conns[i]);
    zlb_loop_stop(env->lt.loop);
    pthread_join(env->lt.th, NULL);
    zlb_resolver_destroy(env->res);
    zlb_net_ctx_destroy(env->ctx);
    zlb_loop_destroy(env->lt.loop);
    zlb_stats_dispose(&env->stats);
}

typedef struct {
    netenv_t *env;
    zlb_lat_t lat;
    uint64_t count;
    uint64_t min, max;
} hist_arg_t;

static void do_hist(void *arg)
{
    hist_arg_t *a = arg;
    a->count = zlb_hist_count(a->env->stats.lat[a->lat]);
    a->min = zlb_hist_min(a->env->stats.lat[a->lat]);
    a->max = zlb_hist_max(a->env->stats.lat[a->lat]);
}

static uint64_t hist_count(netenv_t *env, zlb_lat_t lat)
{
    hist_arg_t a = {.env = env, .lat = lat};
    on_loop(&env->lt, do_hist, &a);
    return a.count;
}

typedef struct {
    tconn_t *t;
    const void *buf;
    size_t len;
    int rc;
} send_arg_t;

static void do_send(void *arg)
{
    send_arg_t *a = arg;
    a->rc = zlb_conn_send(&a->t->c, a->buf, a->len);
}

static int send_on_loop(netenv_t *env, tconn_t *t, const void *buf, size_t len)
{
    send_arg_t a = {.t = t, .buf = buf, .len = len};
    on_loop(&env->lt, do_send, &a);
    return a.rc;
}

static uint16_t closed_port(void)
{
    uint16_t port;
    int fd = listen_tcp(1, &port);
    close(fd);
    return port;
}

/* ---- pure functions ------------------------------------------------------------------------- */

static void test_classify(void)
{
    static const struct {
        int err;
        zlb_fail_t why;
    } table[] = {
        {ECONNREFUSED, ZLB_FAIL_REFUSED},
        {ETIMEDOUT, ZLB_FAIL_TIMEOUT},
        {ECONNRESET, ZLB_FAIL_RESET},
        {EPIPE, ZLB_FAIL_RESET},
        {EHOSTUNREACH, ZLB_FAIL_UNREACHABLE},
        {ENETUNREACH, ZLB_FAIL_UNREACHABLE},
        {EADDRNOTAVAIL, ZLB_FAIL_ADDR_UNAVAILABLE},
        {EADDRINUSE, ZLB_FAIL_ADDR_UNAVAILABLE},
        {EMFILE, ZLB_FAIL_FD_LIMIT},
        {ENFILE, ZLB_FAIL_FD_LIMIT},
        {ENOBUFS, ZLB_FAIL_NO_BUFFERS},
        {ENOMEM, ZLB_FAIL_NO_BUFFERS},
        {EINVAL, ZLB_FAIL_OTHER},
        {EACCES, ZLB_FAIL_OTHER},
        {0, ZLB_FAIL_OTHER},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(table); i++)
        ASSERT_EQ(zlb_net_classify(table[i].err), table[i].why);
    ASSERT(zlb_net_fail_is_local(ZLB_FAIL_FD_LIMIT));
    ASSERT(zlb_net_fail_is_local(ZLB_FAIL_ADDR_UNAVAILABLE));
    ASSERT(zlb_net_fail_is_local(ZLB_FAIL_NO_BUFFERS));
    ASSERT(!zlb_net_fail_is_local(ZLB_FAIL_REFUSED));
    ASSERT(!zlb_net_fail_is_local(ZLB_FAIL_TIMEOUT));
    ASSERT(!zlb_net_fail_is_local(ZLB_FAIL_DNS));
}

static void test_addresses(void)
{
    zlb_net_addr_t a, b;
    char buf[ZLB_NET_ADDRSTRLEN];

    ASSERT_EQ(zlb_net_addr_literal("10.1.2.3", 8080, &a), 0);
    ASSERT_EQ(zlb_net_addr_family(&a), AF_INET);
    ASSERT_EQ(zlb_net_addr_port(&a), 8080);
    ASSERT_STREQ(zlb_net_addr_format(&a, buf, sizeof(buf)), "10.1.2.3:8080");
    ASSERT_EQ(zlb_net_addr_literal("::1", 443, &a), 0);
    ASSERT_EQ(zlb_net_addr_family(&a), AF_INET6);
    ASSERT_STREQ(zlb_net_addr_format(&a, buf, sizeof(buf)), "[::1]:443");
    zlb_net_addr_set_port(&a, 444);
    ASSERT_EQ(zlb_net_addr_port(&a), 444);
    ASSERT_EQ(zlb_net_addr_literal("example.com", 1, &a), -EINVAL);
    ASSERT_EQ(a.len, 0);
    ASSERT_STREQ(zlb_net_addr_format(&a, buf, sizeof(buf)), "(none)");

    /* The adapters keep core's rules (test_core tests the rules themselves): a zone becomes the
     * scope id and prints as its number; equality counts the scope. */
    ASSERT_EQ(zlb_net_addr_literal("fe80::1%1", 80, &a), 0);
    ASSERT_STREQ(zlb_net_addr_format(&a, buf, sizeof(buf)), "[fe80::1%1]:80");
    ASSERT_EQ(zlb_net_addr_literal("fe80::1", 80, &b), 0);
    ASSERT(!zlb_net_addr_equal(&a, &b));
    ASSERT_EQ(zlb_net_addr_literal("localhost", 80, &a), -EINVAL); /* a name, not a literal */
    ASSERT_EQ(zlb_net_addr_literal("[::1]", 80, &a), -EINVAL);
}

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    ASSERT_EQ(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_socket_options(void)
{
    zlb_net_sockopts_t o = {.nodelay = true,
                            .sndbuf = 65536,
                            .keepalive = true,
                            .keepalive_idle_s = 7,
                            .keepalive_interval_s = 3,
                            .keepalive_count = 4};
    zlb_net_addr_t src, got;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd;

    fd = zlb_net_socket(AF_INET, &o, NULL);
    ASSERT(fd >= 0);
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    ASSERT_GE(get_int(fd, SOL_SOCKET, SO_SNDBUF), 65536); /* the kernel doubles it */
    ASSERT_EQ(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 3);
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    ASSERT(fcntl(fd, F_GETFL) & O_NONBLOCK);
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);

    o = (zlb_net_sockopts_t){.nodelay = false};
    fd = zlb_net_socket(AF_INET, &o, NULL);
    ASSERT(fd >= 0);
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    ASSERT_EQ(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    close(fd);

    /* A source address binds without taking a port: getsockname still says port 0. */
    ASSERT_EQ(zlb_net_addr_literal("127.0.0.3", 0, &src), 0);
    fd = zlb_net_socket(AF_INET, NULL, &src);
    ASSERT(fd >= 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    ASSERT_EQ(zlb_net_addr_from_sockaddr((struct sockaddr *)&ss, len, &got), 0);
    ASSERT(zlb_net_addr_equal(&got, &src));
    ASSERT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    close(fd);

    ASSERT_EQ(zlb_net_addr_literal("192.0.2.1", 0, &src), 0); /* not a local address */
    ASSERT_EQ(zlb_net_socket(AF_INET, NULL, &src), -EADDRNOTAVAIL);
    ASSERT_GT(zlb_net_raise_nofile(), 0);
}

/* ---- resolver ------------------------------------------------------------------------------- */

typedef struct {
    zlb_resolve_req_t req;
    _Atomic bool answered;
} rq_t;

static void rq_done(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    (void)loop;
    (void)discarded;
    atomic_store(&ZLB_CONTAINER_OF(t, rq_t, req.task)->answered, true);
}

static void resolve_once(zlb_resolver_t *r, lthread_t *lt, rq_t *q, const char *host, int family)
{
    memset(q, 0, sizeof(*q));
    zlb_task_init(&q->req.task, rq_done);
    q->req.loop = lt->loop;
    q->req.host = host;
    q->req.port = 4242;
    q->req.family = family;
    zlb_resolver_submit(r, &q->req);
    ASSERT(WAIT_UNTIL(atomic_load(&q->answered), 10000));
}

static void test_resolver_cache(void)
{
    lthread_t lt;
    zlb_resolver_t *r;
    zlb_resolver_stats_t st;
    rq_t q;
    char buf[ZLB_NET_ADDRSTRLEN];

    if (!hosts_has_localhost()) {
        TEST_SKIP("/etc/hosts has no localhost entry");
        return;
    }
    lthread_start(&lt);
    ASSERT_EQ(zlb_resolver_create(2, 200 * ZLB_NS_PER_MS, &r), 0);

    resolve_once(r, &lt, &q, "localhost", AF_INET);
    ASSERT_EQ(q.req.status, 0);
    ASSERT(!q.req.cached);
    ASSERT_STREQ(zlb_net_addr_format(&q.req.addr, buf, sizeof(buf)), "127.0.0.1:4242");
    ASSERT_GT(q.req.expires_ns, zlb_now_ns());

    resolve_once(r, &lt, &q, "localhost", AF_INET);
    ASSERT_EQ(q.req.status, 0);
    ASSERT(q.req.cached);
    zlb_resolver_read_stats(r, &st);
    ASSERT_UEQ(st.requests, 2);
    ASSERT_UEQ(st.lookups, 1);
    ASSERT_UEQ(st.hits, 1);

    /* Past the TTL the name is looked up again. */
    sleep_ms(250);
    resolve_once(r, &lt, &q, "localhost", AF_INET);
    ASSERT(!q.req.cached);
    zlb_resolver_read_stats(r, &st);
    ASSERT_UEQ(st.lookups, 2);

    zlb_resolver_destroy(r);
    lthread_stop(&lt);
}

/* ---- connections ------------------------------------------------------------------------------
 */

static zlb_serve_t *start_target(zlb_serve_mode_t mode)
{
    zlb_serve_opts_t o = {.mode = mode, .listen = "127.0.0.1:0"};
    zlb_serve_t *t = NULL;
    ASSERT_EQ(zlb_serve_start(&o, &t), 0);
    return t;
}

static void test_connect_literal_echo(void)
{
    zlb_serve_t *tgt = start_target(ZLB_SERVE_ECHO);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = zlb_serve_port(tgt)};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    zlb_resolver_stats_t st;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, true, ZLB_NS_PER_SEC);
    start_conn(&env, &t, 0, true, 1024);
    ASSERT_EQ(t.start_rc, 0);
    /* A literal goes straight to CONNECTING: no resolver round trip. */
    ASSERT_EQ(t.state_after_start, ZLB_CONN_CONNECTING);
    ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 5000));
    zlb_resolver_read_stats(env.res, &st);
    ASSERT_UEQ(st.requests, 0);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_CONNECT), 1);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_DNS), 0);

    ASSERT_EQ(send_on_loop(&env, &t, "hello", 5), 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.echo_len) == 5, 5000));
    ASSERT(memcmp(t.echo, "hello", 5) == 0);
    ASSERT_UEQ(atomic_load(&t.bytes_out), 5);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_FIRST_BYTE), 1);
    /* The queue's cap is enforced. */
    static char big[2048];
    ASSERT_EQ(send_on_loop(&env, &t, big, sizeof(big)), -ENOBUFS);
    ASSERT_EQ(atomic_load(&t.closed), 0);

    env_stop(&env, all, 1);
    zlb_serve_destroy(tgt);
}

/* "::1" is a literal too: no resolver, straight to CONNECTING. */
static void test_connect_ipv6_literal(void)
{
    zlb_serve_opts_t to = {.mode = ZLB_SERVE_ECHO, .listen = "[::1]:0"};
    zlb_serve_t *tgt = NULL;
    zlb_net_ctx_opts_t o = {.ndests = 1, .family = AF_INET6};
    zlb_resolver_stats_t st;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};
    char buf[ZLB_NET_ADDRSTRLEN];

    if (zlb_serve_start(&to, &tgt) < 0) {
        TEST_SKIP("no IPv6 loopback here");
        return;
    }
    zlb_net_dest_spec_t d = {.host = "::1", .port = zlb_serve_port(tgt)};
    o.dests = &d;
    memset(&t, 0, sizeof(t));
    env_start(&env, &o, true, ZLB_NS_PER_SEC);
    start_conn(&env, &t, 0, false, 0);
    ASSERT_EQ(t.start_rc, 0);
    ASSERT_EQ(t.state_after_start, ZLB_CONN_CONNECTING);
    ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 5000));
    zlb_resolver_read_stats(env.res, &st);
    ASSERT_UEQ(st.requests, 0);
    ASSERT_STREQ(zlb_net_addr_format(zlb_net_ctx_dest_addr(env.ctx, 0), buf, sizeof(buf)),
                 zlb_serve_address(tgt));
    env_stop(&env, all, 1);
    zlb_serve_destroy(tgt);
}

static void test_connect_by_name(void)
{
    zlb_serve_t *tgt;
    zlb_net_dest_spec_t d;
    zlb_net_ctx_opts_t o = {.ndests = 1, .family = AF_INET};
    zlb_resolver_stats_t st;
    netenv_t env;
    static tconn_t t1, t2;
    tconn_t *all[] = {&t1, &t2};

    if (!hosts_has_localhost()) {
        TEST_SKIP("/etc/hosts has no localhost entry");
        return;
    }
    tgt = start_target(ZLB_SERVE_ECHO);
    d = (zlb_net_dest_spec_t){.host = "localhost", .port = zlb_serve_port(tgt)};
    o.dests = &d;
    memset(&t1, 0, sizeof(t1));
    memset(&t2, 0, sizeof(t2));
    env_start(&env, &o, true, 10 * ZLB_NS_PER_SEC);

    start_conn(&env, &t1, 0, false, 0);
    ASSERT_EQ(t1.start_rc, 0);
    ASSERT_EQ(t1.state_after_start, ZLB_CONN_RESOLVING);
    ASSERT(WAIT_UNTIL(atomic_load(&t1.established) == 1, 10000));
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_DNS), 1);

    /* Within the TTL the ctx's copy of the answer is used: no resolver round trip at all. */
    start_conn(&env, &t2, 0, false, 0);
    ASSERT_EQ(t2.state_after_start, ZLB_CONN_CONNECTING);
    ASSERT(WAIT_UNTIL(atomic_load(&t2.established) == 1, 10000));
    zlb_resolver_read_stats(env.res, &st);
    ASSERT_UEQ(st.requests, 1);
    ASSERT_UEQ(st.lookups, 1);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_DNS), 1);

    env_stop(&env, all, 2);
    zlb_serve_destroy(tgt);
}

static void test_refused(void)
{
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = closed_port()};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    /* Either at once or through the state machine; both count as refused. */
    if (t.start_rc == 0) {
        ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
        ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_REFUSED);
        ASSERT_EQ(atomic_load(&t.err), ECONNREFUSED);
        ASSERT_EQ(atomic_load(&t.err_kind), ZLB_NET_ERR_ERRNO);
        ASSERT(!atomic_load(&t.was_established));
    } else {
        ASSERT_EQ(t.start_rc, -ECONNREFUSED);
    }
    ASSERT_EQ(atomic_load(&t.established), 0);
    env_stop(&env, all, 1);
}

/* A backlog-0 listener that never accepts, with its accept queue full: Linux drops further
 * SYNs, so a connect neither succeeds nor fails until our timer fires. */
static int full_listener(uint16_t *port, int *fillers, int *nfill)
{
    int l = listen_tcp(0, port);
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(*port)};

    *nfill = 0;
    for (int i = 0; i < 8; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT(s >= 0);
        int r = connect(s, (struct sockaddr *)&sin, sizeof(sin));
        ASSERT(r == 0 || errno == EINPROGRESS);
        struct pollfd p = {.fd = s, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0) {
            close(s);
            return l;
        }
        fillers[(*nfill)++] = s;
    }
    ZLB_TEST_FAIL("the listener kept accepting SYNs with a full backlog");
}

static void test_connect_timeout(void)
{
    uint16_t port;
    int fillers[8], nfill, l = full_listener(&port, fillers, &nfill);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = port};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1, .connect_timeout_ns = 300 * ZLB_NS_PER_MS};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT_EQ(t.start_rc, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_TIMEOUT);
    ASSERT_EQ(atomic_load(&t.err), ETIMEDOUT);
    double ms = (double)atomic_load(&t.closed_after_ns) / 1e6;
    fprintf(stderr, "   connect timeout after %.1f ms (configured 300)\n", ms);
    ASSERT_NEAR(ms, 300, 30);
    env_stop(&env, all, 1);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    close(l);
}

/* A server thread that accepts one connection and then does `action`. */
typedef enum { SRV_FIN, SRV_RST, SRV_FLOOD, SRV_STALL, SRV_HTTP400 } srv_action_t;
typedef struct {
    int lfd;
    srv_action_t action;
    size_t flood;
    _Atomic bool quit;
    pthread_t th;
} srv_t;

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    ASSERT(fd >= 0);
    if (s->action == SRV_RST) {
        /* Late enough for the client to have seen its connection established: a RST before
         * that is a failure of the attempt (ECONNRESET from SO_ERROR), not of a connection. */
        sleep_ms(100);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (s->action == SRV_FLOOD) {
        static char chunk[65536];
        size_t left = s->flood;
        while (left) {
            ssize_t w = write(fd, chunk, ZLB_MIN(left, sizeof(chunk)));
            ASSERT(w > 0);
            left -= (size_t)w;
        }
    } else if (s->action == SRV_STALL) {
        /* Never read: the client's queue must stall. */
        while (!atomic_load(&s->quit))
            sleep_ms(5);
    } else if (s->action == SRV_HTTP400) {
        /* What a plain HTTP server does with a ClientHello: reads it, answers 400 and closes,
         * reading to the end first so its close is a FIN, not a RST over unread bytes. */
        static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        char buf[4096];
        ASSERT(read(fd, buf, sizeof(buf)) > 0);
        ASSERT_EQ(write(fd, resp, sizeof(resp) - 1), (ssize_t)(sizeof(resp) - 1));
        shutdown(fd, SHUT_WR);
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
    }
    close(fd);
    return NULL;
}

static uint16_t srv_start(srv_t *s, srv_action_t action, size_t flood)
{
    uint16_t port;
    memset(s, 0, sizeof(*s));
    s->lfd = listen_tcp(8, &port);
    s->action = action;
    s->flood = flood;
    ASSERT_EQ(pthread_create(&s->th, NULL, srv_main, s), 0);
    return port;
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->quit, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void test_peer_close(srv_action_t action, zlb_fail_t expect)
{
    srv_t srv;
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = srv_start(&srv, action, 0)};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
    ASSERT_EQ(atomic_load(&t.established), 1);
    ASSERT(atomic_load(&t.was_established));
    ASSERT_EQ(atomic_load(&t.why), expect);
    env_stop(&env, all, 1);
    srv_stop(&srv);
}

static void test_eof_and_reset(void)
{
    test_peer_close(SRV_FIN, ZLB_FAIL_EOF);
    test_peer_close(SRV_RST, ZLB_FAIL_RESET);
}

/* One read of 1 KiB per event: 4 MiB only arrive if the connection that ran out of budget is
 * re-queued (the edge it came with will not come again), and the EOF after them is seen. */
static void test_read_budget(void)
{
    const size_t total = 4u << 20;
    srv_t srv;
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = srv_start(&srv, SRV_FLOOD, total)};
    zlb_net_ctx_opts_t o = {
        .dests = &d, .ndests = 1, .read_buf_size = 1024, .read_budget_calls = 1};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 20000));
    ASSERT_UEQ(atomic_load(&t.bytes_in), total);
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_EOF);
    zlb_loop_stats_t ls;
    zlb_loop_read_stats(env.lt.loop, &ls);
    ASSERT_GT(ls.tasks, 100); /* the ready list ran as tasks, many times */
    env_stop(&env, all, 1);
    srv_stop(&srv);
}

/* 16 MiB to a sink: the socket fills, EPOLLOUT is armed and the queue drains in order. */
static void test_send_queue(void)
{
    const size_t total = 16u << 20;
    zlb_serve_t *tgt = start_target(ZLB_SERVE_SINK);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = zlb_serve_port(tgt)};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};
    uint8_t *payload = zlb_xcalloc(1, total);
    zlb_serve_stats_t ts;

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, true, total);
    ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 5000));
    ASSERT_EQ(send_on_loop(&env, &t, payload, total / 2), 0);
    ASSERT_EQ(send_on_loop(&env, &t, payload + total / 2, total / 2), 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.bytes_out) == total, 20000));
    ASSERT(WAIT_UNTIL((zlb_serve_read_stats(tgt, &ts), ts.bytes_in == total), 20000));
    ASSERT_EQ(atomic_load(&t.closed), 0);
    env_stop(&env, all, 1);
    zlb_serve_destroy(tgt);
    free(payload);
}

static void test_send_timeout(void)
{
    const size_t total = 64u << 20;
    srv_t srv;
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = srv_start(&srv, SRV_STALL, 0)};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1, .send_timeout_ns = 200 * ZLB_NS_PER_MS};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};
    uint8_t *payload = zlb_xcalloc(1, total);

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, true, total);
    ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 5000));
    ASSERT_EQ(send_on_loop(&env, &t, payload, total), 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 10000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_TIMEOUT);
    ASSERT(atomic_load(&t.was_established));
    ASSERT_LT(atomic_load(&t.bytes_out), total);
    env_stop(&env, all, 1);
    srv_stop(&srv);
    free(payload);
}

/* ---- DNS failure without traffic leaving the machine ------------------------------------------
 */

/* ".invalid" never resolves (RFC 6761), but glibc still asks the configured name servers. The
 * check runs in a child inside a new network namespace, where only a down loopback exists and
 * no query can leave; without the privilege for that, it runs only when resolv.conf names no
 * server or loopback ones only, and is skipped otherwise. */
static int dns_failure_body(void)
{
    zlb_net_dest_spec_t d = {.host = "nonexistent.invalid", .port = 80};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    memset(&t, 0, sizeof(t));
    env_start(&env, &o, true, ZLB_NS_PER_SEC);
    start_conn(&env, &t, 0, false, 0);
    ASSERT_EQ(t.start_rc, 0);
    ASSERT_EQ(t.state_after_start, ZLB_CONN_RESOLVING);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 15000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_DNS);
    ASSERT_NE(atomic_load(&t.err), 0);
    ASSERT_EQ(atomic_load(&t.err_kind), ZLB_NET_ERR_EAI);
    ASSERT(!atomic_load(&t.was_established));
    ASSERT_EQ(atomic_load(&t.established), 0);
    fprintf(stderr, "   nonexistent.invalid: %s\n", gai_strerror(atomic_load(&t.err)));
    env_stop(&env, all, 1);
    return 0;
}

static void test_dns_failure(void)
{
    if (!run_in_netns(dns_failure_body, 30, "the DNS failure child"))
        TEST_SKIP("no network namespace and resolv.conf names a remote "
                  "server (the query would leave the machine)");
}

/* ---- TLS ------------------------------------------------------------------------------------ */

/* A TLS target whose CA is written to a file, and a client context trusting that file, as a
 * user's config would set it up. */
typedef struct {
    zlb_serve_t *tgt;
    char dir[64];
    char ca[96];
    zlb_tls_client_t *cli;
} tlsenv_t;

static void tls_target(tlsenv_t *te, zlb_serve_mode_t mode)
{
    memset(te, 0, sizeof(*te));
    snprintf(te->dir, sizeof(te->dir), "/tmp/zlb-tnet.XXXXXX");
    ASSERT(mkdtemp(te->dir) != NULL);
    snprintf(te->ca, sizeof(te->ca), "%s/ca.pem", te->dir);
    zlb_serve_opts_t o = {
        .mode = mode, .listen = "127.0.0.1:0", .tls = true, .ca_out_file = te->ca};
    ASSERT_EQ(zlb_serve_start(&o, &te->tgt), 0);
}

/* verify on against te's CA; sni may be NULL. */
static zlb_tls_client_t *tls_client(tlsenv_t *te, const char *sni, uint64_t hs_timeout)
{
    zlb_tls_config_t cfg = {.enabled = true,
                            .verify = true,
                            .ca_file = te->ca,
                            .sni = (char *)sni,
                            .handshake_timeout_ns = hs_timeout};
    char err[256];
    zlb_tls_client_t *cli = NULL;
    ASSERT_EQ(zlb_tls_client_create(&cfg, "127.0.0.1", &cli, err, sizeof(err)), 0);
    return cli;
}

static void tls_env_done(tlsenv_t *te)
{
    zlb_serve_destroy(te->tgt);
    zlb_tls_client_destroy(te->cli);
    unlink(te->ca);
    rmdir(te->dir);
}

typedef struct {
    tconn_t *t;
    bool tls;
    bool resumed;
    int state;
} tls_query_t;

static void do_tls_query(void *arg)
{
    tls_query_t *q = arg;
    zlb_tls_conn_t *tc = zlb_conn_tls(&q->t->c);
    q->tls = tc != NULL;
    q->resumed = tc && zlb_tls_conn_resumed(tc);
    q->state = zlb_conn_state(&q->t->c);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

typedef struct {
    tconn_t *t;
    const void *seg[4];
    size_t len[4];
    int rc[4];
} send_many_t;

/* Queues the segments in one go: nothing is flushed by an event in between. */
static void do_send_many(void *arg)
{
    send_many_t *a = arg;
    for (int i = 0; i < 4; i++)
        a->rc[i] = zlb_conn_send(&a->t->c, a->seg[i], a->len[i]);
}

/* A full handshake with verification, then bytes both ways through SSL_read/SSL_write: small
 * ones, then megabytes queued at once, more than small socket buffers and the echo server can
 * hold, so writes block mid-record (WANT_WRITE, retried with the same bytes) and segments
 * queued behind are coalesced with the end of the one before (its size is no multiple of a
 * record); the echo must come back whole and in order. */
static void test_tls_echo(void)
{
    const size_t big = (12u << 20) + 5000;
    tlsenv_t te;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};
    uint8_t *payload = zlb_xcalloc(1, 2 * big);
    static const char tail1[] = "tail-one", tail2[] = "tail-two!";
    tls_query_t q = {.t = &t};

    for (size_t i = 0; i < 2 * big; i++)
        payload[i] = (uint8_t)(i * 31 + 7 + (i >> 13));
    tls_target(&te, ZLB_SERVE_ECHO);
    te.cli = tls_client(&te, NULL, 0);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = zlb_serve_port(te.tgt), .tls = te.cli};
    zlb_net_sockopts_t so = {.nodelay = true, .sndbuf = 64 * 1024, .rcvbuf = 64 * 1024};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1, .sock = &so};
    memset(&t, 0, sizeof(t));
    atomic_store(&t.rx_hash, 0xcbf29ce484222325ull);
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, true, 4 * big);
    ASSERT_EQ(t.start_rc, 0);
    ASSERT_EQ(t.state_after_start, ZLB_CONN_CONNECTING);
    ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 10000));
    ASSERT_EQ(atomic_load(&t.closed), 0);
    on_loop(&env.lt, do_tls_query, &q);
    ASSERT(q.tls);
    ASSERT(!q.resumed);
    ASSERT_EQ(q.state, ZLB_CONN_ESTABLISHED);
    /* TCP connect and the handshake are recorded apart. */
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_CONNECT), 1);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_TLS_FULL), 1);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_TLS_RESUMED), 0);

    ASSERT_EQ(send_on_loop(&env, &t, "hello", 5), 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.echo_len) == 5, 5000));
    ASSERT(memcmp(t.echo, "hello", 5) == 0);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_FIRST_BYTE), 1);

    send_many_t m = {.t = &t,
                     .seg = {payload, payload + big, tail1, tail2},
                     .len = {big, big, sizeof(tail1), sizeof(tail2)}};
    on_loop(&env.lt, do_send_many, &m);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(m.rc[i], 0);
    size_t total = 5 + 2 * big + sizeof(tail1) + sizeof(tail2);
    uint64_t h = fnv(0xcbf29ce484222325ull, (const uint8_t *)"hello", 5);
    h = fnv(h, payload, 2 * big);
    h = fnv(h, (const uint8_t *)tail1, sizeof(tail1));
    h = fnv(h, (const uint8_t *)tail2, sizeof(tail2));
    ASSERT(WAIT_UNTIL(atomic_load(&t.bytes_in) == total, 30000));
    ASSERT_UEQ(atomic_load(&t.bytes_out), total);
    ASSERT_UEQ(atomic_load(&t.rx_hash), h);
    ASSERT_EQ(atomic_load(&t.closed), 0);

    env_stop(&env, all, 1);
    tls_env_done(&te);
    free(payload);
}

/* Holds the client inside its first handshake step, after the ClientHello went out, until the
 * server's flight is in the socket and HOLD_NS more have passed: the step then reads it and
 * completes the handshake inline, in the batch whose event time stamped the connect. */
#define HOLD_NS (3 * ZLB_NS_PER_MS)
static _Atomic unsigned held;

static int held_idx = -1; /* SSL ex_data: the hold is done (the callback comes twice) */

static void hold_after_hello(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if (!(where & SSL_CB_CONNECT_LOOP) || SSL_get_state(ssl) != TLS_ST_CW_CLNT_HELLO ||
        SSL_get_ex_data(ssl, held_idx))
        return;
    SSL_set_ex_data((SSL *)ssl, held_idx, (void *)1);
    BIO_flush(SSL_get_wbio(ssl)); /* the ClientHello may still sit in the handshake buffer */
    struct pollfd p = {.fd = SSL_get_fd(ssl), .events = POLLIN};
    if (poll(&p, 1, 2000) == 1)
        atomic_fetch_add(&held, 1);
    struct timespec ts = {0, HOLD_NS};
    nanosleep(&ts, NULL);
}

/* A handshake that completes inside tls_start's own step (the peer answered while the step
 * ran) took that step's time, never 0: it was once stamped with the connect's event time. */
static void test_tls_handshake_inline(void)
{
    enum { N = 4 };
    tlsenv_t te;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    tls_target(&te, ZLB_SERVE_ECHO);
    te.cli = tls_client(&te, NULL, 0);
    held_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ASSERT(held_idx >= 0);
    SSL_CTX_set_info_callback(te.cli->ctx, hold_after_hello);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1", .port = zlb_serve_port(te.tgt), .tls = te.cli};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    env_start(&env, &o, false, 0);
    for (int i = 0; i < N; i++) {
        memset(&t, 0, sizeof(t));
        start_conn(&env, &t, 0, false, 0);
        ASSERT(WAIT_UNTIL(atomic_load(&t.established) == 1, 5000));
        on_loop(&env.lt, do_close, &t); /* a close of our own: no ops->closed */
    }
    hist_arg_t h = {.env = &env, .lat = ZLB_LAT_TLS_FULL};
    on_loop(&env.lt, do_hist, &h);
    fprintf(stderr,
            "   %u of %d handshakes held until the server's flight was in; full handshake "
            "min %.3f ms max %.3f ms (each >= the %.1f ms hold)\n",
            atomic_load(&held), N, (double)h.min / 1e6, (double)h.max / 1e6, (double)HOLD_NS / 1e6);
    ASSERT_UEQ(atomic_load(&held), N);
    ASSERT_UEQ(h.count, N);
    ASSERT(h.min >= HOLD_NS);
    env_stop(&env, all, 1);
    tls_env_done(&te);
}

/* A peer that accepts and never answers: the handshake fails as a timeout at its own deadline,
 * not the connect timeout's. */
static void test_tls_handshake_timeout(void)
{
    tlsenv_t te;
    srv_t srv;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    tls_target(&te, ZLB_SERVE_ECHO); /* only for its CA */
    te.cli = tls_client(&te, NULL, 400 * ZLB_NS_PER_MS);
    zlb_net_dest_spec_t d = {.host = "127.0.0.1",
                             .port = srv_start(&srv, SRV_STALL, 0),
                             .tls = te.cli,
                             .tls_handshake_timeout_ns = 400 * ZLB_NS_PER_MS};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1, .connect_timeout_ns = 5 * ZLB_NS_PER_SEC};
    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_TIMEOUT);
    ASSERT_EQ(atomic_load(&t.err), ETIMEDOUT);
    ASSERT(!atomic_load(&t.was_established));
    ASSERT_EQ(atomic_load(&t.established), 0);
    double ms = (double)atomic_load(&t.closed_after_ns) / 1e6;
    fprintf(stderr, "   handshake timeout after %.1f ms (configured 400)\n", ms);
    ASSERT_NEAR(ms, 400, 40);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_CONNECT), 1);
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_TLS_FULL), 0);
    env_stop(&env, all, 1);
    srv_stop(&srv);
    tls_env_done(&te);
}

/* Failures during the handshake reach ops->closed with their detail: a plain HTTP server
 * (wrong_version_number) and a certificate for another name (verify result 62). */
static void test_tls_handshake_failures(void)
{
    tlsenv_t te;
    srv_t srv;
    netenv_t env;
    static tconn_t t;
    tconn_t *all[] = {&t};

    tls_target(&te, ZLB_SERVE_ECHO);
    te.cli = tls_client(&te, NULL, 0);
    zlb_net_dest_spec_t d = {
        .host = "127.0.0.1", .port = srv_start(&srv, SRV_HTTP400, 0), .tls = te.cli};
    zlb_net_ctx_opts_t o = {.dests = &d, .ndests = 1};
    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_TLS_HANDSHAKE);
    ASSERT_EQ(atomic_load(&t.err), ZLB_TLS_R_WRONG_VERSION_NUMBER);
    ASSERT_EQ(atomic_load(&t.err_kind), ZLB_NET_ERR_TLS);
    ASSERT(!atomic_load(&t.was_established));
    ASSERT_EQ(t.tls.err.kind, ZLB_TLS_ERR_PROTOCOL);
    env_stop(&env, all, 1);
    srv_stop(&srv);
    zlb_tls_client_destroy(te.cli);

    /* The target's certificate names 127.0.0.1 and localhost; we ask for another name. */
    te.cli = tls_client(&te, "wrong.example", 0);
    d = (zlb_net_dest_spec_t){.host = "127.0.0.1", .port = zlb_serve_port(te.tgt), .tls = te.cli};
    memset(&t, 0, sizeof(t));
    env_start(&env, &o, false, 0);
    start_conn(&env, &t, 0, false, 0);
    ASSERT(WAIT_UNTIL(atomic_load(&t.closed) == 1, 5000));
    ASSERT_EQ(atomic_load(&t.why), ZLB_FAIL_TLS_VERIFY);
    ASSERT_EQ(atomic_load(&t.err), 62); /* X509_V_ERR_HOSTNAME_MISMATCH */
    ASSERT_EQ(atomic_load(&t.err_kind), ZLB_NET_ERR_X509);
    ASSERT(!atomic_load(&t.was_established));
    ASSERT_UEQ(hist_count(&env, ZLB_LAT_TLS_FULL), 0);
    env_stop(&env, all, 1);
    tls_env_done(&te);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* Before any thread exists: the child of a fork must not inherit held locks. */
    RUN_TEST(test_dns_failure);
    RUN_TEST(test_classify);
    RUN_TEST(test_addresses);
    RUN_TEST(test_socket_options);
    RUN_TEST(test_resolver_cache);
    RUN_TEST(test_connect_literal_echo);
    RUN_TEST(test_connect_ipv6_literal);
    RUN_TEST(test_connect_by_name);
    RUN_TEST(test_refused);
    RUN_TEST(test_connect_timeout);
    RUN_TEST(test_eof_and_reset);
    RUN_TEST(test_read_budget);
    RUN_TEST(test_send_queue);
    RUN_TEST(test_send_timeout);
    RUN_TEST(test_tls_echo);
    RUN_TEST(test_tls_handshake_inline);
    RUN_TEST(test_tls_handshake_timeout);
    RUN_TEST(test_tls_handshake_failures);
    fprintf(stderr, "test_net: all passed\n");
    return TEST_EXIT_CODE();
}
