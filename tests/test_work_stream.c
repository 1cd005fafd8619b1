/* test_work_stream.c -- the stream workload against the built-in sink/source targets and raw
 * loopback servers: bytes agree on both sides, partial writes and reads of every size, a reader
 * that stops (queue capped, stall counted, closed with stall_close), a peer that leaves
 * mid-stream, the first message exactly once, pacing. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "serve/serve.h"
#include "serve/serve_internal.h"
#include "test.h"
#include "test_util.h"
#include "work/work.h"
#include "work/work_internal.h"

/* ---- helpers (as test_work.c's) ---------------------------------------------------------------
 */

static void check_snapshot(const zlb_work_snapshot_t *s)
{
    zlb_counters_t sum;

    if (!zlb_counters_balanced(&s->total.c))
        ZLB_TEST_FAIL("accounting invariant broken: attempted %llu established %llu in_flight "
                      "%llu open %llu closed %llu failed_after %llu",
                      (unsigned long long)s->total.c.attempted,
                      (unsigned long long)s->total.c.established,
                      (unsigned long long)s->total.c.in_flight, (unsigned long long)s->total.c.open,
                      (unsigned long long)(s->total.c.closed_by_us + s->total.c.closed_by_peer),
                      (unsigned long long)zlb_counters_failed_after_total(&s->total.c));
    memset(&sum, 0, sizeof(sum));
    for (size_t i = 0; i < s->npollers; i++) {
        ASSERT(zlb_counters_balanced(&s->poller[i].c));
        zlb_counters_add(&sum, &s->poller[i].c);
    }
    ASSERT_UEQ(sum.bytes_in, s->total.c.bytes_in);
    ASSERT_UEQ(sum.bytes_out, s->total.c.bytes_out);
    ASSERT_UEQ(sum.stalled, s->total.c.stalled);
    memset(&sum, 0, sizeof(sum));
    for (size_t t = 0; t < s->ntargets; t++)
        zlb_counters_add(&sum, &s->target[t]);
    ASSERT_UEQ(sum.stalled, s->total.c.stalled);
    ASSERT_UEQ(sum.bytes_out, s->total.c.bytes_out);
}

static void snap(zlb_work_t *e, zlb_work_snapshot_t *s)
{
    ASSERT_EQ(zlb_work_snapshot(e, s), 0);
    check_snapshot(s);
}

#define WAIT_SNAP(e, s, cond, ms, every)                                                           \
    ({                                                                                             \
        uint64_t dl_ = zlb_now_ns() + (uint64_t)(ms)*ZLB_NS_PER_MS;                                \
        bool ok_ = false;                                                                          \
        for (;;) {                                                                                 \
            snap((e), (s));                                                                        \
            if ((ok_ = (cond)) || zlb_now_ns() > dl_)                                              \
                break;                                                                             \
            sleep_ms(every);                                                                       \
        }                                                                                          \
        ok_;                                                                                       \
    })

typedef struct {
    zlb_pool_t *pool;
    zlb_work_t *e;
    zlb_work_snapshot_t s;
} rig_t;

static void rig_start(rig_t *r, const zlb_config_t *cfg, const zlb_work_target_t *t, int pollers)
{
    zlb_pool_opts_t po;

    zlb_pool_opts_default(&po);
    po.count = pollers;
    po.cpu_affinity = false;
    ASSERT_EQ(zlb_pool_create(&po, &r->pool), 0);
    ASSERT_EQ(zlb_work_create(cfg, t, 1, r->pool, &r->e), 0);
    zlb_work_snapshot_init(r->e, &r->s);
    ASSERT_EQ(zlb_work_start(r->e), 0);
}

static void rig_close(rig_t *r)
{
    uint64_t dl = zlb_now_ns() + 10 * ZLB_NS_PER_SEC;

    zlb_work_close_all(r->e);
    while (!zlb_work_idle(r->e)) {
        ASSERT(zlb_now_ns() < dl);
        sleep_ms(2);
    }
    snap(r->e, &r->s);
    ASSERT_UEQ(r->s.total.c.open, 0);
}

static void rig_finish(rig_t *r)
{
    zlb_pool_stop(r->pool);
    snap(r->e, &r->s);
    zlb_work_snapshot_dispose(&r->s);
    zlb_work_destroy(r->e);
    zlb_pool_destroy(r->pool);
}

static zlb_work_target_t one_target(uint16_t port)
{
    return (zlb_work_target_t){.host = "127.0.0.1", .port = port, .weight = 1, .name = "127.0.0.1"};
}

static void stream_config(zlb_config_t *cfg, uint64_t conns, zlb_stream_dir_t dir)
{
    zlb_config_init_default(cfg);
    cfg->embedded_target.enabled = false;
    cfg->connections = conns;
    cfg->connect_rate = 0;
    cfg->workload.type = ZLB_WORK_STREAM;
    cfg->workload.direction = dir;
    cfg->workload.reconnect = false;
}

static uint64_t serve_bytes_in(zlb_serve_t *t)
{
    zlb_serve_stats_t st;
    zlb_serve_read_stats(t, &st);
    return st.bytes_in;
}

/* Waits until the target has read exactly `want` bytes (it may lag behind the kernel). */
static bool wait_serve_in(zlb_serve_t *t, uint64_t want, unsigned ms)
{
    uint64_t dl = zlb_now_ns() + (uint64_t)ms * ZLB_NS_PER_MS;
    while (serve_bytes_in(t) < want && zlb_now_ns() < dl)
        sleep_ms(5);
    return serve_bytes_in(t) == want;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* ---- a raw server: one connection, scripted reads or writes -----------------------------------
 */

typedef struct {
    int lfd;
    pthread_t th;
    int mode;     /* 0: read in odd sizes and check the bytes; 1: write `total` in odd sizes */
    size_t chunk; /* mode 0: the client's chunk size (the stream is the chunk over and over) */
    const char *first;
    uint64_t total; /* mode 1: bytes to write, then close */
    _Atomic uint64_t got;
    _Atomic bool bad;
    _Atomic bool done;
} raw_t;

/* Read sizes that cross every boundary: 1 byte, odd primes, a page, just around 64 KiB. */
static const size_t odd_sizes[] = {1, 2, 3, 7, 61, 509, 4096, 4097, 65535, 65536, 65537, 200000};

static void *raw_main(void *arg)
{
    raw_t *r = arg;
    int fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
    static uint8_t buf[200000];
    size_t flen = r->first ? strlen(r->first) : 0;
    uint64_t pos = 0;
    unsigned k = 0;

    ASSERT(fd >= 0);
    if (r->mode == 0) {
        for (;;) {
            size_t want = odd_sizes[k++ % ZLB_ARRAY_LEN(odd_sizes)];
            ssize_t n = read(fd, buf, want);
            if (n <= 0)
                break;
            for (ssize_t i = 0; i < n; i++, pos++) {
                uint8_t expect = pos < flen ? (uint8_t)r->first[pos]
                                            : (uint8_t)('a' + ((pos - flen) % r->chunk) % 26);
                if (buf[i] != expect && !atomic_load(&r->bad)) {
                    fprintf(stderr, "   raw: byte %llu is %u, expected %u\n",
                            (unsigned long long)pos, buf[i], expect);
                    atomic_store(&r->bad, true);
                }
            }
            atomic_store(&r->got, pos);
        }
    } else {
        memset(buf, 'x', sizeof(buf));
        while (pos < r->total) {
            size_t want = odd_sizes[k++ % ZLB_ARRAY_LEN(odd_sizes)];
            if (want > r->total - pos)
                want = (size_t)(r->total - pos);
            ssize_t n = write(fd, buf, want);
            ASSERT(n > 0);
            pos += (uint64_t)n;
            /* Small pauses now and then: the client's reads come in every size too. */
            if (k % 5 == 0)
                sleep_ms(1);
        }
        atomic_store(&r->got, pos);
    }
    close(fd);
    atomic_store(&r->done, true);
    return NULL;
}

static uint16_t raw_start(raw_t *r)
{
    uint16_t port;
    r->lfd = listen_tcp(4, &port);
    ASSERT_EQ(pthread_create(&r->th, NULL, raw_main, r), 0);
    return port;
}

static void raw_stop(raw_t *r)
{
    pthread_join(r->th, NULL);
    close(r->lfd);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

/* Send to the built-in sink, then receive from the built-in source: what one side counts, the
 * other counts too, to the byte, once the connections are closed. */
static void test_sink_and_source_agree(void)
{
    zlb_serve_opts_t so = {.mode = ZLB_SERVE_SINK, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt;
    zlb_config_t cfg;
    zlb_serve_stats_t st;
    rig_t r;

    ASSERT_EQ(zlb_serve_start(&so, &tgt), 0);
    zlb_work_target_t t = one_target(zlb_serve_port(tgt));
    stream_config(&cfg, 8, ZLB_STREAM_SEND);
    rig_start(&r, &cfg, &t, 2);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 8 && r.s.total.c.bytes_out > (64u << 20), 10000,
                     10));
    rig_close(&r);
    uint64_t out = r.s.total.c.bytes_out;
    bool agree = wait_serve_in(tgt, out, 5000);
    fprintf(stderr, "   send: zlbench wrote %llu bytes, the sink read %llu\n",
            (unsigned long long)out, (unsigned long long)serve_bytes_in(tgt));
    ASSERT(agree);
    ASSERT_UEQ(r.s.total.c.bytes_in, 0);
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    rig_finish(&r);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);

    /* receive, with a first message: the source reads exactly one per connection */
    so.mode = ZLB_SERVE_SOURCE;
    ASSERT_EQ(zlb_serve_start(&so, &tgt), 0);
    t = one_target(zlb_serve_port(tgt));
    stream_config(&cfg, 8, ZLB_STREAM_RECEIVE);
    cfg.workload.first_message = (uint8_t *)strdup("SUBSCRIBE all\r\n");
    cfg.workload.first_message_len = 15;
    rig_start(&r, &cfg, &t, 2);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 8 && r.s.total.c.bytes_in > (64u << 20), 10000,
                     10));
    sleep_ms(100);
    snap(r.e, &r.s);
    ASSERT_UEQ(r.s.total.c.bytes_out, 8 * 15);
    ASSERT(wait_serve_in(tgt, 8 * 15, 2000));
    rig_close(&r);
    sleep_ms(50);
    zlb_serve_read_stats(tgt, &st);
    fprintf(stderr,
            "   receive: the source wrote %llu bytes (some still in flight at the close), "
            "zlbench read %llu; first messages: %llu bytes in, %llu out\n",
            (unsigned long long)st.bytes_out, (unsigned long long)r.s.total.c.bytes_in,
            (unsigned long long)st.bytes_in, (unsigned long long)r.s.total.c.bytes_out);
    ASSERT_UEQ(st.bytes_in, 8 * 15);
    ASSERT_CMP_UINT(r.s.total.c.bytes_in, <=, st.bytes_out);
    ASSERT_CMP_UINT(r.s.total.c.bytes_in, >, (64u << 20));
    ASSERT_UEQ(zlb_counters_failed_total(&r.s.total.c), 0);
    rig_finish(&r);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);
}

/* Partial writes: a reader taking 1, 2, 3, 7, ... 200000 bytes at a time behind a small send
 * buffer, for chunk sizes around every boundary; every byte arrives, in order, the first
 * message once and first. */
static void test_partial_writes(void)
{
    static const size_t chunks[] = {1, 7, 4096, 65535, 65536, 65537, 1 << 20};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(chunks); i++) {
        raw_t raw = {.mode = 0, .chunk = chunks[i], .first = "HELLO stream\n"};
        zlb_config_t cfg;
        rig_t r;

        zlb_work_target_t t = one_target(raw_start(&raw));
        stream_config(&cfg, 1, ZLB_STREAM_SEND);
        cfg.workload.chunk_size = chunks[i];
        cfg.workload.first_message = (uint8_t *)strdup(raw.first);
        cfg.workload.first_message_len = strlen(raw.first);
        cfg.socket.sndbuf = 4096; /* the kernel doubles it: partial writes from the start */
        rig_start(&r, &cfg, &t, 1);
        uint64_t want = chunks[i] < 4096 ? 200000 : 4u << 20;
        ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.bytes_out > want, 20000, 5));
        rig_close(&r);
        raw_stop(&raw);
        fprintf(stderr, "   chunk %zu: wrote %llu, the reader got %llu, bytes %s\n", chunks[i],
                (unsigned long long)r.s.total.c.bytes_out,
                (unsigned long long)atomic_load(&raw.got),
                atomic_load(&raw.bad) ? "WRONG" : "in order");
        ASSERT_UEQ(atomic_load(&raw.got), r.s.total.c.bytes_out);
        ASSERT(!atomic_load(&raw.bad));
        rig_finish(&r);
        zlb_config_dispose(&cfg);
    }
}

/* Partial reads: a writer sending 1, 2, 3, ... 200000 bytes at a time, then closing: the
 * receiver counts every byte and the close is the peer's. */
static void test_partial_reads(void)
{
    raw_t raw = {.mode = 1, .total = 3000017};
    zlb_config_t cfg;
    rig_t r;

    zlb_work_target_t t = one_target(raw_start(&raw));
    stream_config(&cfg, 1, ZLB_STREAM_RECEIVE);
    rig_start(&r, &cfg, &t, 1);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.closed_by_peer == 1, 20000, 5));
    raw_stop(&raw);
    fprintf(stderr, "   wrote %llu in odd sizes, zlbench read %llu\n",
            (unsigned long long)raw.total, (unsigned long long)r.s.total.c.bytes_in);
    ASSERT_UEQ(r.s.total.c.bytes_in, raw.total);
    ASSERT_UEQ(r.s.total.c.bytes_out, 0);
    rig_close(&r);
    rig_finish(&r);
    zlb_config_dispose(&cfg);
}

/* A reader that stops reading: the send queue stays at its cap (no memory grows while the
 * kernel's buffers are full), each connection's stall is counted once, and with stall_close
 * the stalled connections fail as timeouts. */
typedef struct {
    int lfd, n;
    int fds[64];
    pthread_t th;
} mute_t;

static void *mute_main(void *arg)
{
    mute_t *m = arg;
    for (int i = 0; i < m->n; i++) {
        m->fds[i] = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT(m->fds[i] >= 0);
    }
    return NULL;
}

static void test_slow_reader(void)
{
    for (int close_it = 0; close_it < 2; close_it++) {
        mute_t m = {.n = 16};
        uint16_t port;
        zlb_config_t cfg;
        rig_t r;

        m.lfd = listen_tcp(64, &port);
        ASSERT_EQ(pthread_create(&m.th, NULL, mute_main, &m), 0);
        zlb_work_target_t t = one_target(port);
        stream_config(&cfg, 16, ZLB_STREAM_SEND);
        cfg.workload.stall_timeout_ns = 200 * ZLB_NS_PER_MS;
        cfg.workload.stall_close = close_it;
        cfg.socket.sndbuf = 16384;
        rig_start(&r, &cfg, &t, 2);
        pthread_join(m.th, NULL);
        if (!close_it) {
            ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.stalled == 16, 10000, 10));
            uint64_t out = r.s.total.c.bytes_out;
            long rss0 = rss_kib();
            sleep_ms(700); /* three more stall timeouts: no second count, no more bytes */
            snap(r.e, &r.s);
            long rss1 = rss_kib();
            fprintf(stderr,
                    "   stopped reader: %llu bytes out (the kernel's buffers), stalled %llu, "
                    "RSS %ld -> %ld KiB\n",
                    (unsigned long long)r.s.total.c.bytes_out,
                    (unsigned long long)r.s.total.c.stalled, rss0, rss1);
            ASSERT_UEQ(r.s.total.c.stalled, 16);
            ASSERT_UEQ(r.s.total.c.bytes_out, out);
            ASSERT_UEQ(r.s.total.c.open, 16);
            ASSERT_LT(rss1 - rss0, 1024);
            /* The reader comes back: the data moves again (the stall is over). */
            for (int i = 0; i < m.n; i++) {
                static char buf[65536];
                ssize_t n, got = 0;
                /* Enough to open the window by more than one (64 KiB loopback) segment. */
                while (got < (1 << 20) && (n = recv(m.fds[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                    got += n;
                ASSERT_GT(got, 0);
            }
            ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.bytes_out > out, 5000, 10));
        } else {
            ASSERT(
                WAIT_SNAP(r.e, &r.s, r.s.total.c.failed_after[ZLB_FAIL_TIMEOUT] == 16, 10000, 10));
            fprintf(stderr, "   stall_close: stalled %llu, failed_after.timeout %llu\n",
                    (unsigned long long)r.s.total.c.stalled,
                    (unsigned long long)r.s.total.c.failed_after[ZLB_FAIL_TIMEOUT]);
            ASSERT_UEQ(r.s.total.c.stalled, 16);
            ASSERT_UEQ(r.s.total.c.open, 0);
        }
        rig_close(&r);
        rig_finish(&r);
        for (int i = 0; i < m.n; i++)
            close(m.fds[i]);
        close(m.lfd);
        zlb_config_dispose(&cfg);
    }
}

/* The target goes away mid-stream: every connection's end is counted (a FIN the peer's
 * close, a RST a reset), none twice, and the invariant holds throughout. */
static void test_peer_closes_mid_stream(void)
{
    zlb_serve_opts_t so = {.mode = ZLB_SERVE_SINK, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt;
    zlb_config_t cfg;
    rig_t r;

    ASSERT_EQ(zlb_serve_start(&so, &tgt), 0);
    zlb_work_target_t t = one_target(zlb_serve_port(tgt));
    stream_config(&cfg, 10, ZLB_STREAM_SEND);
    rig_start(&r, &cfg, &t, 2);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 10 && r.s.total.c.bytes_out > (8u << 20), 10000,
                     5));
    zlb_serve_destroy(tgt);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 0, 10000, 5));
    const zlb_counters_t *c = &r.s.total.c;
    fprintf(
        stderr, "   target gone: closed_by_peer %llu, reset %llu, other failures %llu\n",
        (unsigned long long)c->closed_by_peer, (unsigned long long)c->failed_after[ZLB_FAIL_RESET],
        (unsigned long long)(zlb_counters_failed_after_total(c) - c->failed_after[ZLB_FAIL_RESET]));
    ASSERT_UEQ(c->established, 10);
    ASSERT_UEQ(c->closed_by_peer + zlb_counters_failed_after_total(c), 10);
    ASSERT_UEQ(c->closed_by_us, 0);
    rig_close(&r);
    rig_finish(&r);
    zlb_config_dispose(&cfg);
}

/* bytes_out per second over ms, from a snapshot taken now. */
static double measure_out(rig_t *r, unsigned ms)
{
    snap(r->e, &r->s);
    uint64_t b0 = r->s.total.c.bytes_out, t0 = zlb_now_ns();
    sleep_ms(ms);
    snap(r->e, &r->s);
    return (double)(r->s.total.c.bytes_out - b0) / ((double)(zlb_now_ns() - t0) / 1e9);
}

/* Pacing: 4 connections at 250 kB/s each send 1 MB/s together, within 10 % over 2 s, and the
 * paced writes record their lateness. */
static void test_rate_pacing(void)
{
    zlb_serve_opts_t so = {.mode = ZLB_SERVE_SINK, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt;
    zlb_config_t cfg;
    rig_t r;

    ASSERT_EQ(zlb_serve_start(&so, &tgt), 0);
    zlb_work_target_t t = one_target(zlb_serve_port(tgt));
    stream_config(&cfg, 4, ZLB_STREAM_SEND);
    cfg.workload.rate = 250000;
    cfg.workload.chunk_size = 16384;
    rig_start(&r, &cfg, &t, 2);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 4, 10000, 5));
    sleep_ms(200);
    double rate = measure_out(&r, 2000);
    uint64_t lag_n = zlb_hist_count(r.s.total.lat[ZLB_LAT_SEND_LAG]);
    fprintf(stderr, "   paced: %.0f B/s over 2 s (want 1000000), send_lag n=%llu p99 %.0f us\n",
            rate, (unsigned long long)lag_n,
            (double)zlb_hist_percentile(r.s.total.lat[ZLB_LAT_SEND_LAG], 99) / 1e3);
    ASSERT_NEAR(rate, 1e6, 1e5);
    /* 50 ticks per second per connection, 4 connections, 2.2 s: about 440 */
    ASSERT_GT(lag_n, 100); /* fewer when a late timer catches up several ticks at once */
    ASSERT_LT(lag_n, 600);
    ASSERT_UEQ(r.s.total.c.stalled, 0);
    rig_close(&r);
    rig_finish(&r);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);
}

/* The rate steered live (stages and PATCH /run reach the engine as zlb_work_steer): 4 streams
 * on 2 pollers at 250 kB/s each, then 500 kB/s, then unpaced, then 250 kB/s again, each within
 * 10 % after a settling moment; paused, nothing is sent (what was queued drains first); resumed,
 * the rate again, with no burst for the pause. */
static void test_rate_steer(void)
{
    zlb_serve_opts_t so = {.mode = ZLB_SERVE_SINK, .listen = "127.0.0.1:0"};
    zlb_serve_t *tgt;
    zlb_config_t cfg;
    zlb_work_live_t v;
    rig_t r;
    double got;

    ASSERT_EQ(zlb_serve_start(&so, &tgt), 0);
    zlb_work_target_t t = one_target(zlb_serve_port(tgt));
    stream_config(&cfg, 4, ZLB_STREAM_SEND);
    cfg.workload.rate = 250000;
    cfg.workload.chunk_size = 16384;
    rig_start(&r, &cfg, &t, 2);
    ASSERT(WAIT_SNAP(r.e, &r.s, r.s.total.c.open == 4, 10000, 5));
    sleep_ms(100);
    got = measure_out(&r, 1000);
    fprintf(stderr, "   250 kB/s each: %.0f B/s (want 1000000)\n", got);
    ASSERT_NEAR(got, 1e6, 1e5);

    zlb_work_get_live(r.e, &v);
    ASSERT_CMP_DBL(v.rate, ==, 250000);
    v.rate = 500000;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    got = measure_out(&r, 1000);
    fprintf(stderr, "   500 kB/s each: %.0f B/s (want 2000000)\n", got);
    ASSERT_NEAR(got, 2e6, 2e5);

    v.rate = 0;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    got = measure_out(&r, 300);
    fprintf(stderr, "   unpaced: %.0f B/s (want far above 2000000)\n", got);
    ASSERT_CMP_DBL(got, >, 2e7);

    v.rate = 250000;
    zlb_work_steer(r.e, &v);
    sleep_ms(300); /* what the unpaced queues held (4 chunks each) drains */
    got = measure_out(&r, 1000);
    fprintf(stderr, "   250 kB/s each again: %.0f B/s (want 1000000)\n", got);
    ASSERT_NEAR(got, 1e6, 1e5);

    v.paused = true;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    got = measure_out(&r, 500);
    fprintf(stderr, "   paused: %.0f B/s (want 0)\n", got);
    ASSERT_CMP_DBL(got, ==, 0);
    v.paused = false;
    zlb_work_steer(r.e, &v);
    got = measure_out(&r, 1000);
    fprintf(stderr, "   resumed: %.0f B/s (want 1000000, no burst for the pause)\n", got);
    ASSERT_NEAR(got, 1e6, 1e5);
    ASSERT_UEQ(r.s.total.c.stalled, 0);
    ASSERT_UEQ(zlb_counters_failed_after_total(&r.s.total.c), 0);
    rig_close(&r);
    rig_finish(&r);
    zlb_serve_destroy(tgt);
    zlb_config_dispose(&cfg);
}

/* ---- live rate: the re-timing arithmetic, then the engine steered --------------------------- */

typedef struct {
    double (*rate_at)(double t_s); /* the rate in force from t (applied at each change) */
    uint64_t change_ns, end_ns;
    bool retime; /* false: the naive restart (a fresh schedule at each change), for contrast */
} sim_t;

/* One connection on a socket that takes everything (the workload's pump at every tick due):
 * every change_ns the rate moves to rate_at(now). Returns the bytes sent by end_ns; *want: the
 * integral of the rates in force, *max_piece the largest piece seen. */
static int64_t simulate(const sim_t *sm, double *want, uint64_t *max_piece)
{
    zlb_stream_pace_t p;
    uint64_t t0 = 0, now = 0, next_change = sm->change_ns, last_change = 0;
    int64_t queued = 0, total = 0;
    double rate = sm->rate_at(0);

    zlb_stream_pace_of(rate, 65536, &p);
    *want = 0;
    *max_piece = p.piece;
    for (;;) {
        int64_t rel = zlb_stream_released(&p, t0, now);
        if (p.piece && rel > queued) {
            total += rel - queued;
            queued = rel;
        }
        uint64_t due = p.piece ? zlb_stream_due(&p, t0, queued) : UINT64_MAX;
        if (due <= now)
            ZLB_TEST_FAIL("due %llu is not after now %llu", (unsigned long long)due,
                          (unsigned long long)now);
        now = ZLB_MIN(due, next_change);
        if (now >= sm->end_ns)
            break;
        if (now == next_change) {
            zlb_stream_pace_t from = p;
            *want += rate * (double)(now - last_change) / 1e9;
            last_change = now;
            rate = sm->rate_at((double)now / 1e9);
            zlb_stream_pace_of(rate, 65536, &p);
            *max_piece = ZLB_MAX(*max_piece, p.piece);
            if (sm->retime) {
                zlb_stream_retime(&from, &p, now, 0, &t0, &queued);
                /* Nothing released at once: the next piece comes on the new tick. */
                ASSERT(zlb_stream_released(&p, t0, now) <= ZLB_MAX(queued, 0));
            } else {
                t0 = now;
                queued = 0;
            }
            next_change += sm->change_ns;
        }
    }
    *want += rate * (double)(sm->end_ns - last_change) / 1e9;
    return total;
}

static double ramp_up(double t)
{
    return 1e5 + (2e6 - 1e5) * t / 10.0; /* 100 kB/s to 2 MB/s over 10 s */
}

static double steps(double t)
{
    return ((int)(t / 0.35)) % 2 ? 3e5 : 7e5; /* 300 and 700 kB/s, turn about */
}

static void test_retime_arithmetic(void)
{
    zlb_stream_pace_t a, b, z;
    uint64_t t0 = 1000;
    int64_t queued;

    /* Pieces of rate/50, at least a segment, at most a chunk. */
    zlb_stream_pace_of(1e6, 65536, &a);
    ASSERT_UEQ(a.piece, 20000);
    ASSERT_NEAR(a.tick_ns, 20e6, 1e-3);
    zlb_stream_pace_of(1000, 65536, &z);
    ASSERT_UEQ(z.piece, 1448);
    zlb_stream_pace_of(1e9, 65536, &z);
    ASSERT_UEQ(z.piece, 65536);
    zlb_stream_pace_of(0, 65536, &z);
    ASSERT_UEQ(z.piece, 0);
    ASSERT_EQ(zlb_stream_released(&a, t0, t0 - 1), 0);
    ASSERT_EQ(zlb_stream_released(&a, t0, t0), 20000);
    ASSERT_EQ(zlb_stream_released(&a, t0, t0 + 20000000 - 1), 20000);
    ASSERT_EQ(zlb_stream_released(&a, t0, t0 + 20000000), 40000);
    ASSERT_UEQ(zlb_stream_due(&a, t0, 40000), t0 + 40000000);

    /* 1 MB/s to 2 MB/s 2.5 ticks in, on schedule (3 pieces out): none owed, none more now, and
     * the next piece once the half piece still ahead (10,000 bytes) has lasted at 2 MB/s: 5 ms. */
    zlb_stream_pace_of(2e6, 65536, &b);
    queued = 60000;
    uint64_t now = t0 + 50000000;
    zlb_stream_retime(&a, &b, now, 777, &t0, &queued);
    fprintf(stderr, "   1 -> 2 MB/s at 2.5 ticks: queued %lld, next piece %.3f ms on\n",
            (long long)queued, (double)(t0 - now) / 1e6);
    ASSERT_EQ(queued, 0);
    ASSERT_UEQ(t0, now + 5000000);
    ASSERT_EQ(zlb_stream_released(&b, t0, now), 0);
    ASSERT_EQ(zlb_stream_released(&b, t0, t0), 40000);

    /* Behind (a slow peer took 1 of 3 pieces): the 2 owed stay owed, nothing more. */
    t0 = 1000;
    queued = 20000;
    zlb_stream_retime(&a, &b, now, 0, &t0, &queued);
    ASSERT_EQ(queued, -40000);
    ASSERT_EQ(zlb_stream_released(&b, t0, now) - queued, 40000);
    /* A steep cut (2 MB/s to 1 kB/s, a 1448-byte piece every 1.448 s) waits at most its tick,
     * not the 40 s that a 40,000-byte piece lasts at 1 kB/s; to 100 kB/s at most a second. */
    zlb_stream_pace_t slow;
    zlb_stream_pace_of(1000, 65536, &slow);
    t0 = now - 1;
    queued = 40000;
    zlb_stream_retime(&b, &slow, now, 0, &t0, &queued);
    ASSERT_UEQ(t0, now + 1448000000ull);
    zlb_stream_pace_of(1e5, 65536, &slow);
    t0 = now - 1;
    queued = 40000;
    zlb_stream_retime(&b, &slow, now, 0, &t0, &queued);
    fprintf(stderr, "   2 MB/s -> 100 kB/s just after a tick: next piece %.3f ms on (want 400)\n",
            (double)(t0 - now) / 1e6);
    ASSERT_NEAR((double)(t0 - now), 400e6, 1e3);

    /* From unpaced (a change from 0, or the resume): afresh at the phase given. */
    queued = 123456789;
    zlb_stream_retime(&z, &a, now, 777, &t0, &queued);
    ASSERT_EQ(queued, 0);
    ASSERT_UEQ(t0, now + 777);
    zlb_stream_retime(NULL, &a, now, 0, &t0, &queued);
    ASSERT_UEQ(t0, now);
    /* To unpaced: the schedule is left as it is (nobody reads it). */
    zlb_stream_retime(&a, &z, now + 5, 0, &t0, &queued);
    ASSERT_UEQ(t0, now);
    ASSERT_EQ(queued, 0);

    /* A stage's linear move (a new rate every 100 ms for 10 s) and a rate turned about every
     * 350 ms: the bytes are the integral of the rates in force to within two pieces (the one
     * each schedule releases at its tick's start); restarting the schedule at each change
     * instead releases one piece too many per change. */
    const sim_t sims[] = {{ramp_up, 100000000, 10000000000ull, true},
                          {steps, 350000000, 7000000000ull, true},
                          {steps, 350000000, 7000000000ull, false}};
    for (size_t i = 0; i < 3; i++) {
        double want;
        uint64_t piece;
        int64_t got = simulate(&sims[i], &want, &piece);
        double off = (double)got - want;
        fprintf(stderr,
                "   %s%s: sent %lld bytes, rates integrate to %.0f: off by %.0f (%.2f of the "
                "largest piece, %llu)\n",
                sims[i].rate_at == ramp_up ? "ramp 0.1 -> 2 MB/s" : "300/700 kB/s steps",
                sims[i].retime ? "" : " (naive restart)", (long long)got, want, off,
                off / (double)piece, (unsigned long long)piece);
        if (sims[i].retime) {
            ASSERT_CMP_DBL(fabs(off), <=, 2.0 * (double)piece);
        } else {
            ASSERT_CMP_DBL(off, >, 5.0 * (double)piece); /* the contrast is real */
        }
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    zlb_log_level = ZLB_LOG_ERROR;
    RUN_TEST(test_sink_and_source_agree);
    RUN_TEST(test_partial_writes);
    RUN_TEST(test_partial_reads);
    RUN_TEST(test_slow_reader);
    RUN_TEST(test_peer_closes_mid_stream);
    RUN_TEST(test_rate_pacing);
    RUN_TEST(test_retime_arithmetic);
    RUN_TEST(test_rate_steer);
    fprintf(stderr, "test_work_stream: all passed\n");
    return TEST_EXIT_CODE();
}
