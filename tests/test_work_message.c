/* test_work_message.c -- the message workload against scripted servers that cut replies at every
 * byte, answer in batches or stall, and against the built-in redis target: framing, prefix,
 * pipelining, the open loop's rate and its latency from the intended send time. */
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "serve/serve.h"
#include "test.h"
#include "test_util.h"
#include "work/work.h"
#include "work/work_internal.h"

/* ---- a scripted server -------------------------------------------------------------------------
 * One thread, poll(), up to 64 connections. Requests are fixed-size (msg_len bytes); each gets
 * `reply` back, written as the mode says. */
enum {
    SRV_CUT,    /* each reply in two writes cut at the next point: 0, 1, ..., reply_len, 0, ... */
    SRV_PIECES, /* each reply in writes of k bytes, k cycling 1, 2, ..., reply_len */
    SRV_BATCH,  /* answer what came once nothing more comes for 3 ms (counts the most pending) */
    SRV_PLAIN,  /* answer at once, in one write; nothing read while `stall` is set */
};

typedef struct msrv {
    int lfd, mode;
    size_t msg_len;
    const char *reply;
    size_t reply_len;
    _Atomic bool stop, stall;
    _Atomic uint64_t requests, replies, max_pending;
    uint64_t next; /* the next cut or piece size (server thread) */
    pthread_t th;
} msrv_t;

static void send_piece(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away: its next read says so */
        p += w;
        n -= (size_t)w;
    }
}

static void answer(msrv_t *sv, int fd, uint64_t owed)
{
    for (uint64_t k = 0; k < owed; k++) {
        /* Counted before its last byte goes: after, the client may count it first. */
        atomic_fetch_add(&sv->replies, 1);
        if (sv->mode == SRV_CUT) {
            size_t cut = sv->next++ % (sv->reply_len + 1);
            send_piece(fd, sv->reply, cut);
            usleep(300); /* so the client reads the two pieces apart */
            send_piece(fd, sv->reply + cut, sv->reply_len - cut);
        } else if (sv->mode == SRV_PIECES) {
            size_t step = 1 + sv->next++ % sv->reply_len;
            for (size_t at = 0; at < sv->reply_len; at += step) {
                send_piece(fd, sv->reply + at, ZLB_MIN(step, sv->reply_len - at));
                usleep(200);
            }
        } else {
            send_piece(fd, sv->reply, sv->reply_len);
        }
    }
}

static void *msrv_main(void *arg)
{
    msrv_t *sv = arg;
    struct pollfd pf[65];
    size_t partial[65] = {0}; /* bytes of an incomplete request, per connection */
    int n = 1;
    char buf[65536];

    pf[0] = (struct pollfd){.fd = sv->lfd, .events = POLLIN};
    while (!atomic_load(&sv->stop)) {
        if (atomic_load(&sv->stall)) {
            usleep(1000);
            continue;
        }
        if (poll(pf, (nfds_t)n, 10) <= 0)
            continue;
        if ((pf[0].revents & POLLIN) && n < 65) {
            int fd = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                partial[n] = 0;
                pf[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        }
        for (int i = 1; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(pf[i].fd, buf, sizeof(buf));
            if (got <= 0) {
                close(pf[i].fd);
                pf[i] = pf[--n];
                partial[i] = partial[n];
                i--;
                continue;
            }
            size_t bytes = partial[i] + (size_t)got;
            if (sv->mode == SRV_BATCH) {
                /* Gather until the client has sent all it will without an answer. */
                for (;;) {
                    usleep(3000);
                    ssize_t more = recv(pf[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
                    if (more <= 0)
                        break;
                    bytes += (size_t)more;
                }
            }
            uint64_t owed = bytes / sv->msg_len;
            partial[i] = bytes % sv->msg_len;
            atomic_fetch_add(&sv->requests, owed);
            if (owed > atomic_load(&sv->max_pending))
                atomic_store(&sv->max_pending, owed);
            answer(sv, pf[i].fd, owed);
        }
    }
    for (int i = 1; i < n; i++)
        close(pf[i].fd);
    return NULL;
}

static uint16_t msrv_start(msrv_t *sv, int mode, size_t msg_len, const char *reply)
{
    uint16_t port;
    memset(sv, 0, sizeof(*sv));
    sv->mode = mode;
    sv->msg_len = msg_len;
    sv->reply = reply;
    sv->reply_len = strlen(reply);
    sv->lfd = listen_tcp(64, &port);
    ASSERT_EQ(pthread_create(&sv->th, NULL, msrv_main, sv), 0);
    return port;
}

static void msrv_stop(msrv_t *sv)
{
    atomic_store(&sv->stop, true);
    pthread_join(sv->th, NULL);
    close(sv->lfd);
}

/* ---- the engine ---------------------------------------------------------------------------- */

typedef struct {
    zlb_pool_t *pool;
    zlb_work_t *e;
    zlb_work_snapshot_t s;
} rig_t;

static void check(const zlb_work_snapshot_t *s)
{
    const zlb_counters_t *c = &s->total.c;
    if (!zlb_counters_balanced(c))
        ZLB_TEST_FAIL("accounting invariant broken: attempted %llu established %llu",
                      (unsigned long long)c->attempted, (unsigned long long)c->established);
    /* Every reply has both latencies, corrected never below service. */
    ASSERT_UEQ(zlb_hist_count(s->total.lat[ZLB_LAT_MESSAGE_RT]), c->messages);
    ASSERT_UEQ(zlb_hist_count(s->total.lat[ZLB_LAT_MESSAGE_SERVICE]), c->messages);
    ASSERT_CMP_UINT(zlb_hist_max(s->total.lat[ZLB_LAT_MESSAGE_RT]), >=,
                    zlb_hist_max(s->total.lat[ZLB_LAT_MESSAGE_SERVICE]));
    /* Every message written has its lateness recorded. */
    ASSERT_CMP_UINT(zlb_hist_count(s->total.lat[ZLB_LAT_SEND_LAG]), >=, c->messages);
}

static void snap(rig_t *r)
{
    ASSERT_EQ(zlb_work_snapshot(r->e, &r->s), 0);
    check(&r->s);
}

static void print(const char *what, const rig_t *r)
{
    const zlb_counters_t *c = &r->s.total.c;
    const zlb_stats_t *t = &r->s.total;
    fprintf(stderr,
            "   %s: messages %llu, failed_after protocol %llu eof %llu, bytes out %llu in %llu; "
            "rt p50 %.0f us max %.0f us, service max %.0f us, send_lag n=%llu\n",
            what, (unsigned long long)c->messages,
            (unsigned long long)c->failed_after[ZLB_FAIL_PROTOCOL],
            (unsigned long long)c->failed_after[ZLB_FAIL_EOF], (unsigned long long)c->bytes_out,
            (unsigned long long)c->bytes_in,
            (double)zlb_hist_percentile(t->lat[ZLB_LAT_MESSAGE_RT], 50) / 1e3,
            (double)zlb_hist_max(t->lat[ZLB_LAT_MESSAGE_RT]) / 1e3,
            (double)zlb_hist_max(t->lat[ZLB_LAT_MESSAGE_SERVICE]) / 1e3,
            (unsigned long long)zlb_hist_count(t->lat[ZLB_LAT_SEND_LAG]));
}

static uint8_t *dup_bytes(const char *s)
{
    size_t n = strlen(s);
    uint8_t *b = zlb_xmalloc(n + 1);
    memcpy(b, s, n + 1);
    return b;
}

/* A message config: `msg` sent (closed loop unless set after), replies framed by expect. */
static void msg_config(zlb_config_t *cfg, uint64_t conns, const char *msg)
{
    zlb_config_init_default(cfg);
    cfg->embedded_target.enabled = false;
    cfg->connections = conns;
    cfg->connect_rate = 0;
    cfg->workload.type = ZLB_WORK_MESSAGE;
    cfg->workload.message = dup_bytes(msg);
    cfg->workload.message_len = strlen(msg);
    cfg->workload.message_from = ZLB_MESSAGE_TEXT;
    cfg->workload.message_interval_ns = 0;
    cfg->workload.backoff_min_ns = ZLB_NS_PER_MS;
    cfg->workload.backoff_max_ns = 2 * ZLB_NS_PER_MS;
}

static void set_delimiter(zlb_config_t *cfg, const char *d)
{
    cfg->workload.expect = ZLB_EXPECT_DELIMITER;
    cfg->workload.expect_delimiter = dup_bytes(d);
    cfg->workload.expect_delimiter_len = strlen(d);
}

static void set_prefix(zlb_config_t *cfg, const char *p)
{
    cfg->workload.expect_prefix = dup_bytes(p);
    cfg->workload.expect_prefix_len = strlen(p);
}

static void rig_start(rig_t *r, const zlb_config_t *cfg, uint16_t port, int pollers)
{
    static zlb_work_target_t t;
    zlb_pool_opts_t po;

    t = (zlb_work_target_t){.host = "127.0.0.1", .port = port, .weight = 1, .name = "t"};
    zlb_pool_opts_default(&po);
    po.count = pollers;
    po.cpu_affinity = false;
    ASSERT_EQ(zlb_pool_create(&po, &r->pool), 0);
    ASSERT_EQ(zlb_work_create(cfg, &t, 1, r->pool, &r->e), 0);
    zlb_work_snapshot_init(r->e, &r->s);
    ASSERT_EQ(zlb_work_start(r->e), 0);
}

/* close_all, wait for idle, check the end state (copied to *last when not NULL), tear down. */
static void rig_finish(rig_t *r, zlb_counters_t *last)
{
    uint64_t dl = zlb_now_ns() + 10 * ZLB_NS_PER_SEC;
    zlb_work_close_all(r->e);
    while (!zlb_work_idle(r->e)) {
        ASSERT(zlb_now_ns() < dl);
        sleep_ms(2);
    }
    snap(r);
    ASSERT_UEQ(r->s.total.c.open, 0);
    if (last)
        *last = r->s.total.c;
    zlb_pool_stop(r->pool);
    zlb_work_snapshot_dispose(&r->s);
    zlb_work_destroy(r->e);
    zlb_pool_destroy(r->pool);
}

/* Snapshots every 5 ms until cond holds or ms pass. */
#define WAIT_SNAP(r, cond, ms)                                                                     \
    ({                                                                                             \
        uint64_t dl_ = zlb_now_ns() + (uint64_t)(ms)*ZLB_NS_PER_MS;                                \
        bool ok_;                                                                                  \
        for (;;) {                                                                                 \
            snap(r);                                                                               \
            if ((ok_ = (cond)) || zlb_now_ns() > dl_)                                              \
                break;                                                                             \
            sleep_ms(5);                                                                           \
        }                                                                                          \
        ok_;                                                                                       \
    })

/* ---- tests ---------------------------------------------------------------------------------- */

/* Delimited replies cut at every byte, the two pieces read apart: each reply found exactly
 * once, the prefix checked across the cut. The second delimiter overlaps itself ("\r\n\r" then
 * "\r\n\r\n"), which a matcher that restarts from scratch after a partial match misses. */
static void test_delimiter_every_split(void)
{
    static const struct {
        const char *delim, *reply, *prefix;
    } cases[] = {
        {"\r\n", "+PONG\r\n", "+PONG"},
        {"\r\n\r\n", "+OK\r\n\r\r\n\r\n", "+OK\r\n\r\r"},
    };
    for (size_t k = 0; k < ZLB_ARRAY_LEN(cases); k++) {
        msrv_t sv;
        zlb_config_t cfg;
        rig_t r;
        size_t len = strlen(cases[k].reply);
        uint16_t port = msrv_start(&sv, SRV_CUT, 6, cases[k].reply);

        msg_config(&cfg, 1, "PING\r\n");
        set_delimiter(&cfg, cases[k].delim);
        set_prefix(&cfg, cases[k].prefix);
        rig_start(&r, &cfg, port, 1);
        /* Three rounds of every cut point, 0 (whole) .. len (whole, then nothing). */
        ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= 3 * (len + 1), 10000));
        print(cases[k].delim[2] ? "delimiter \\r\\n\\r\\n" : "delimiter \\r\\n", &r);
        ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
        ASSERT_UEQ(r.s.total.c.established, 1);
        /* Every reply the server finished was counted once (one may be on its way): the
         * server's count read on both sides of a snapshot brackets the client's. */
        uint64_t before = atomic_load(&sv.replies);
        snap(&r);
        uint64_t replies = atomic_load(&sv.replies);
        ASSERT_CMP_UINT(r.s.total.c.messages, <=, replies);
        ASSERT_CMP_UINT(r.s.total.c.messages + 1, >=, before);
        rig_finish(&r, NULL);
        msrv_stop(&sv);
        zlb_config_dispose(&cfg);
    }
}

/* expect bytes: a 10-byte reply arriving in pieces of every size 1..10. */
static void test_bytes_every_size(void)
{
    msrv_t sv;
    zlb_config_t cfg;
    rig_t r;
    uint16_t port = msrv_start(&sv, SRV_PIECES, 4, "0123456789");

    msg_config(&cfg, 2, "ask?");
    cfg.workload.expect = ZLB_EXPECT_BYTES;
    cfg.workload.expect_bytes = 10;
    set_prefix(&cfg, "012");
    rig_start(&r, &cfg, port, 1);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= 40, 10000));
    print("bytes 10", &r);
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    ASSERT_UEQ(r.s.total.c.established, 2);
    ASSERT_CMP_UINT(r.s.total.c.bytes_in, >=, r.s.total.c.messages * 10);
    rig_finish(&r, NULL);
    msrv_stop(&sv);
    zlb_config_dispose(&cfg);
}

/* What is not the expected reply is a protocol failure of the connection (failed_after), and
 * counts no message: a wrong prefix (found in the first byte, or after a cut), a delimited reply
 * past max_reply_size, and bytes nobody asked for. */
static void test_protocol_failures(void)
{
    static const struct {
        const char *what, *reply;
        int mode;
        uint64_t max_reply;
    } cases[] = {
        {"wrong first byte", "-ERR unknown\r\n", SRV_PLAIN, 0},
        {"wrong after a cut", "+PANG\r\n", SRV_CUT, 0},
        {"past max_reply_size", "+PONGPONGPONGPONG\r\n", SRV_PLAIN, 8},
        {"unsolicited", "+PONG\r\n+PONG\r\n", SRV_PLAIN, 0},
    };
    for (size_t k = 0; k < ZLB_ARRAY_LEN(cases); k++) {
        msrv_t sv;
        zlb_config_t cfg;
        rig_t r;
        uint16_t port = msrv_start(&sv, cases[k].mode, 6, cases[k].reply);

        msg_config(&cfg, 1, "PING\r\n");
        set_delimiter(&cfg, "\r\n");
        set_prefix(&cfg, "+PONG");
        if (cases[k].max_reply)
            cfg.workload.max_reply_size = cases[k].max_reply;
        rig_start(&r, &cfg, port, 1);
        ASSERT(WAIT_SNAP(&r, r.s.total.c.failed_after[ZLB_FAIL_PROTOCOL] >= 3, 10000));
        print(cases[k].what, &r);
        /* The unsolicited case answers the message first: one counted per connection. */
        if (strcmp(cases[k].what, "unsolicited") == 0)
            ASSERT_CMP_UINT(r.s.total.c.messages, <=, r.s.total.c.established);
        else
            ASSERT_UEQ(r.s.total.c.messages, 0);
        ASSERT_UEQ(zlb_counters_failed_after_total(&r.s.total.c),
                   r.s.total.c.failed_after[ZLB_FAIL_PROTOCOL]);
        rig_finish(&r, NULL);
        msrv_stop(&sv);
        zlb_config_dispose(&cfg);
    }
}

/* expect echo: a reply of the message's length that is not the message is a protocol failure
 * and no message (garbage once counted as an echo before the failure); the message itself is an
 * echo, whole or cut anywhere. */
static void test_echo_is_the_message(void)
{
    static const struct {
        const char *reply;
        int mode;
        bool ok;
    } cases[] = {
        {"PING\r\n", SRV_PLAIN, true},
        {"PING\r\n", SRV_CUT, true},
        {"PONG\r\n", SRV_PLAIN, false},
        {"PING\r!", SRV_CUT, false},
    };
    for (size_t k = 0; k < ZLB_ARRAY_LEN(cases); k++) {
        msrv_t sv;
        zlb_config_t cfg;
        rig_t r;
        uint16_t port = msrv_start(&sv, cases[k].mode, 6, cases[k].reply);

        msg_config(&cfg, 2, "PING\r\n");
        cfg.workload.expect = ZLB_EXPECT_ECHO;
        rig_start(&r, &cfg, port, 1);
        if (cases[k].ok)
            ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= 20, 10000));
        else
            ASSERT(WAIT_SNAP(&r, r.s.total.c.failed_after[ZLB_FAIL_PROTOCOL] >= 3, 10000));
        print(cases[k].ok ? "echo: the message" : "echo: other bytes", &r);
        if (cases[k].ok) {
            ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
        } else {
            ASSERT_UEQ(r.s.total.c.messages, 0);
            ASSERT_UEQ(zlb_counters_failed_after_total(&r.s.total.c),
                       r.s.total.c.failed_after[ZLB_FAIL_PROTOCOL]);
        }
        rig_finish(&r, NULL);
        msrv_stop(&sv);
        zlb_config_dispose(&cfg);
    }
}

/* pipeline N in a closed loop: N messages in flight per connection, never more. The server
 * answers only once the client has stopped sending, so what it holds is what was in flight. */
static void test_pipeline_depth(void)
{
    static const uint32_t depths[] = {1, 4, 16};
    for (size_t k = 0; k < ZLB_ARRAY_LEN(depths); k++) {
        msrv_t sv;
        zlb_config_t cfg;
        rig_t r;
        uint16_t port = msrv_start(&sv, SRV_BATCH, 6, "+PONG\r\n");

        msg_config(&cfg, 1, "PING\r\n");
        set_delimiter(&cfg, "\r\n");
        cfg.workload.pipeline = depths[k];
        rig_start(&r, &cfg, port, 1);
        ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= 20 * depths[k], 10000));
        print("pipelined", &r);
        fprintf(stderr, "   pipeline %u: the server held at most %llu requests at once\n",
                depths[k], (unsigned long long)atomic_load(&sv.max_pending));
        ASSERT_UEQ(atomic_load(&sv.max_pending), depths[k]);
        ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
        rig_finish(&r, NULL);
        msrv_stop(&sv);
        zlb_config_dispose(&cfg);
    }
}

/* Open loop: message_rate for the whole run, whatever the server does. While the server stalls
 * for 300 ms, the messages that fall due wait in their connections' queues and go out when it
 * is back: their message_rt runs from when they were due (hundreds of ms), their
 * message_service from the write (short). Only the few already in flight at the stall have a
 * long service time. A closed loop would have sent nothing and recorded nothing slow. */
static void test_open_loop_intended_time(void)
{
    msrv_t sv;
    zlb_config_t cfg;
    rig_t r;
    uint16_t port = msrv_start(&sv, SRV_PLAIN, 6, "+PONG\r\n");
    const uint64_t conns = 20;

    msg_config(&cfg, conns, "PING\r\n");
    set_delimiter(&cfg, "\r\n");
    cfg.workload.message_rate = 1000;
    rig_start(&r, &cfg, port, 2);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == conns && r.s.total.c.messages > 100, 10000));
    uint64_t m0 = r.s.total.c.messages, t0 = r.s.taken_ns;
    sleep_ms(1000);
    snap(&r);
    double rate = (double)(r.s.total.c.messages - m0) * 1e9 / (double)(r.s.taken_ns - t0);
    fprintf(stderr, "   open loop: %.0f messages/s (asked 1000/s)\n", rate);
    ASSERT_GT(rate, 800);
    ASSERT_LT(rate, 1200);

    atomic_store(&sv.stall, true);
    sleep_ms(300);
    atomic_store(&sv.stall, false);
    uint64_t want = r.s.total.c.messages + 400;
    ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= want, 10000));
    print("open loop, 300 ms stall", &r);
    const zlb_stats_t *t = &r.s.total;
    uint64_t n = zlb_hist_count(t->lat[ZLB_LAT_MESSAGE_RT]);
    uint64_t rt_slow = n - zlb_hist_count_le(t->lat[ZLB_LAT_MESSAGE_RT], 150 * ZLB_NS_PER_MS);
    uint64_t svc_slow = n - zlb_hist_count_le(t->lat[ZLB_LAT_MESSAGE_SERVICE], 150 * ZLB_NS_PER_MS);
    fprintf(stderr, "   over 150 ms: %llu corrected (message_rt), %llu service\n",
            (unsigned long long)rt_slow, (unsigned long long)svc_slow);
    /* ~150 messages fell due in the stall's first 150 ms; at most one per connection was
     * already written (20 here), plus whatever a loaded host's own stalls add to a write's
     * wait (30 seen at load 41): far fewer than the corrected figure counts, never as many. */
    ASSERT_CMP_UINT(rt_slow, >=, 60);
    ASSERT_CMP_UINT(svc_slow, <=, ZLB_MAX(conns, rt_slow / 4));
    ASSERT_CMP_UINT(zlb_hist_max(t->lat[ZLB_LAT_MESSAGE_RT]), >=, 250 * ZLB_NS_PER_MS);
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    rig_finish(&r, NULL);
    msrv_stop(&sv);
    zlb_config_dispose(&cfg);
}

/* Against the built-in redis target: RESP PING, +PONG checked, pipelined, closed loop. */
static void test_redis_target(void)
{
    zlb_serve_opts_t o = {.mode = ZLB_SERVE_REDIS, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt = NULL;
    zlb_config_t cfg;
    rig_t r;

    ASSERT_EQ(zlb_serve_start(&o, &tgt), 0);
    msg_config(&cfg, 10, "*1\r\n$4\r\nPING\r\n");
    set_delimiter(&cfg, "\r\n");
    set_prefix(&cfg, "+PONG");
    cfg.workload.pipeline = 8;
    rig_start(&r, &cfg, zlb_serve_port(tgt), 2);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= 5000, 10000));
    print("redis PING", &r);
    fprintf(stderr, "   message state per slot: %zu B (pipeline 8)\n", r.e->ws_size);
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    ASSERT_CMP_UINT(r.s.total.c.bytes_in, >=, r.s.total.c.messages * 7);
    zlb_counters_t last;
    rig_finish(&r, &last);
    /* Whatever we sent the target reads, and it answered at least what we read. */
    zlb_serve_stats_t st;
    uint64_t dl = zlb_now_ns() + 5 * ZLB_NS_PER_SEC;
    do {
        sleep_ms(2);
        zlb_serve_read_stats(tgt, &st);
    } while (st.bytes_in < last.bytes_out && zlb_now_ns() < dl);
    fprintf(stderr, "   target read %llu B (we sent %llu), wrote %llu (we read %llu)\n",
            (unsigned long long)st.bytes_in, (unsigned long long)last.bytes_out,
            (unsigned long long)st.bytes_out, (unsigned long long)last.bytes_in);
    ASSERT_UEQ(st.bytes_in, last.bytes_out);
    ASSERT_CMP_UINT(st.bytes_out, >=, last.bytes_in);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);
}

/* Live rate and pause (zlb_work_steer) on message_rate against the redis target: 500/s on 20
 * connections raised to 2000/s shows within a second; paused, nothing is written (bytes out
 * flat) and every connection stays open; resumed, messages flow and the pause is no latency;
 * rate 0 sends nothing new. */
static void test_live_rate_pause(void)
{
    zlb_serve_opts_t o = {.mode = ZLB_SERVE_REDIS, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt = NULL;
    zlb_config_t cfg;
    zlb_work_live_t v;
    rig_t r;

    ASSERT_EQ(zlb_serve_start(&o, &tgt), 0);
    msg_config(&cfg, 20, "*1\r\n$4\r\nPING\r\n");
    set_delimiter(&cfg, "\r\n");
    set_prefix(&cfg, "+PONG");
    cfg.workload.message_rate = 500;
    rig_start(&r, &cfg, zlb_serve_port(tgt), 2);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 20, 5000));
    sleep_ms(200);
    snap(&r);
    uint64_t n0 = r.s.total.c.messages, t0 = r.s.taken_ns;
    sleep_ms(500);
    snap(&r);
    double rate1 = (double)(r.s.total.c.messages - n0) * 1e9 / (double)(r.s.taken_ns - t0);
    zlb_work_get_live(r.e, &v);
    v.rate = 2000;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    snap(&r);
    n0 = r.s.total.c.messages;
    t0 = r.s.taken_ns;
    sleep_ms(500);
    snap(&r);
    double rate2 = (double)(r.s.total.c.messages - n0) * 1e9 / (double)(r.s.taken_ns - t0);
    fprintf(stderr, "   messages/s at 500: %.0f, at 2000: %.0f\n", rate1, rate2);
    ASSERT_CMP_DBL(rate1, >, 350);
    ASSERT_CMP_DBL(rate1, <, 650);
    ASSERT_CMP_DBL(rate2, >, 1500);
    ASSERT_CMP_DBL(rate2, <, 2500);

    v.paused = true;
    zlb_work_steer(r.e, &v);
    sleep_ms(100); /* replies to what was in flight come in */
    snap(&r);
    uint64_t out = r.s.total.c.bytes_out, msgs = r.s.total.c.messages;
    sleep_ms(400);
    snap(&r);
    print("paused 0.4 s", &r);
    ASSERT_UEQ(r.s.total.c.bytes_out, out);
    ASSERT_UEQ(r.s.total.c.messages, msgs);
    ASSERT_UEQ(r.s.total.c.open, 20);

    v.paused = false;
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.messages >= msgs + 200, 3000));
    uint64_t p99 = zlb_hist_percentile(r.s.total.lat[ZLB_LAT_MESSAGE_RT], 99);
    fprintf(stderr, "   message_rt p99 after the pause: %.0f us (want < 200 ms)\n",
            (double)p99 / 1e3);
    ASSERT_CMP_UINT(p99, <, 200 * ZLB_NS_PER_MS);

    v.rate = 0;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    snap(&r);
    out = r.s.total.c.bytes_out;
    sleep_ms(300);
    snap(&r);
    ASSERT_UEQ(r.s.total.c.bytes_out, out);
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    rig_finish(&r, NULL);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_delimiter_every_split);
    RUN_TEST(test_bytes_every_size);
    RUN_TEST(test_protocol_failures);
    RUN_TEST(test_echo_is_the_message);
    RUN_TEST(test_pipeline_depth);
    RUN_TEST(test_open_loop_intended_time);
    RUN_TEST(test_redis_target);
    RUN_TEST(test_live_rate_pause);
    fprintf(stderr, "all message workload tests passed\n");
    return TEST_EXIT_CODE();
}
