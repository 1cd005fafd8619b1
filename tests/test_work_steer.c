/* test_work_steer.c -- the engine's live values: connections raised and lowered, connect_rate
 * and request_rate changed, pause and resume, against the built-in targets on loopback. */
#include <math.h>
#include <stdatomic.h>
#include <unistd.h>

#include "config/config.h"
#include "serve/serve.h"
#include "test.h"
#include "test_util.h"
#include "work/work.h"
#include "work/work_internal.h"

typedef struct {
    zlb_serve_t *tgt;
    zlb_work_target_t t;
    zlb_pool_t *pool;
    zlb_work_t *e;
    zlb_work_snapshot_t s;
    zlb_config_t cfg;
} rig_t;

static void dump(const char *what, const zlb_work_snapshot_t *s)
{
    const zlb_counters_t *c = &s->total.c;
    fprintf(stderr,
            "   %s: attempted %llu open %llu in_flight %llu closed_by_us %llu failed %llu; "
            "sent %llu responses %llu queued %llu req_failed %llu\n",
            what, (unsigned long long)c->attempted, (unsigned long long)c->open,
            (unsigned long long)c->in_flight, (unsigned long long)c->closed_by_us,
            (unsigned long long)zlb_counters_failed_total(c), (unsigned long long)c->requests_sent,
            (unsigned long long)c->responses, (unsigned long long)c->requests_queued,
            (unsigned long long)c->requests_failed);
}

/* Every snapshot: the accounting invariant, and no failure of any kind (lowering is graceful). */
static void snap(rig_t *r)
{
    ASSERT_EQ(zlb_work_snapshot(r->e, &r->s), 0);
    if (!zlb_counters_balanced(&r->s.total.c)) {
        dump("unbalanced", &r->s);
        ZLB_TEST_FAIL("accounting invariant broken");
    }
    ASSERT_UEQ(zlb_counters_failed_total(&r->s.total.c), 0);
}

#define WAIT_SNAP(r, cond, ms)                                                                     \
    ({                                                                                             \
        uint64_t dl_ = zlb_now_ns() + (uint64_t)(ms)*ZLB_NS_PER_MS;                                \
        bool ok_ = false;                                                                          \
        for (;;) {                                                                                 \
            snap(r);                                                                               \
            if ((ok_ = (cond)) || zlb_now_ns() > dl_)                                              \
                break;                                                                             \
            sleep_ms(5);                                                                           \
        }                                                                                          \
        ok_;                                                                                       \
    })

static void rig_start(rig_t *r, zlb_serve_mode_t mode, zlb_work_type_t type, uint64_t conns,
                      double connect_rate, double request_rate)
{
    zlb_serve_opts_t o = {.mode = mode, .listen = "127.0.0.1:0", .threads = 1};
    zlb_pool_opts_t po;

    memset(r, 0, sizeof(*r));
    ASSERT_EQ(zlb_serve_start(&o, &r->tgt), 0);
    r->t = (zlb_work_target_t){
        .host = "127.0.0.1", .port = zlb_serve_port(r->tgt), .weight = 1, .name = "t"};
    zlb_config_init_default(&r->cfg);
    r->cfg.embedded_target.enabled = false;
    r->cfg.connections = conns;
    r->cfg.connect_rate = connect_rate;
    r->cfg.workload.type = type;
    r->cfg.workload.request_rate = request_rate;
    zlb_pool_opts_default(&po);
    po.count = 2;
    po.cpu_affinity = false;
    ASSERT_EQ(zlb_pool_create(&po, &r->pool), 0);
    ASSERT_EQ(zlb_work_create(&r->cfg, &r->t, 1, r->pool, &r->e), 0);
    zlb_work_snapshot_init(r->e, &r->s);
    ASSERT_EQ(zlb_work_start(r->e), 0);
}

static void rig_finish(rig_t *r)
{
    uint64_t dl = zlb_now_ns() + 10 * ZLB_NS_PER_SEC;

    zlb_work_close_all(r->e);
    while (!zlb_work_idle(r->e)) {
        ASSERT(zlb_now_ns() < dl);
        sleep_ms(2);
    }
    zlb_pool_stop(r->pool);
    ASSERT_EQ(zlb_work_snapshot(r->e, &r->s), 0);
    ASSERT(zlb_counters_balanced(&r->s.total.c));
    zlb_work_snapshot_dispose(&r->s);
    zlb_work_destroy(r->e);
    zlb_pool_destroy(r->pool);
    zlb_serve_destroy(r->tgt);
    zlb_config_dispose(&r->cfg);
}

/* The scheduler's segment arithmetic: a rebase keeps the next attempt's wait already done. */
static void test_rebase_math(void)
{
    zlb_work_sched_t s = {.total = 1000, .rate = 10};

    /* 10/s from 0: attempt 5 due at 0.5 s. At 0.45 s, half its wait (0.05 s of 0.1 s) is
     * left: at 100/s it comes 0.005 s later, not at once and not 0.05 s later. */
    s.issued = 5;
    zlb_sched_rebase(&s, 450 * ZLB_NS_PER_MS, 100);
    fprintf(stderr, "   rebase: next due at %.4f s (want 0.4550)\n",
            (double)zlb_sched_offset_ns(&s, 5) / 1e9);
    ASSERT_NEAR((double)zlb_sched_offset_ns(&s, 5) / 1e9, 0.455, 1e-6);
    ASSERT_NEAR((double)zlb_sched_offset_ns(&s, 105) / 1e9, 1.455, 1e-6);
    ASSERT_UEQ(zlb_sched_due(&s, 454 * ZLB_NS_PER_MS), 5);
    ASSERT_UEQ(zlb_sched_due(&s, 456 * ZLB_NS_PER_MS), 6);
    ASSERT_UEQ(zlb_sched_due(&s, 1456 * ZLB_NS_PER_MS), 106);
    /* Rebasing at the same rate again and again issues nothing early. */
    for (int k = 0; k < 10; k++)
        zlb_sched_rebase(&s, 450 * ZLB_NS_PER_MS + (uint64_t)k * 400000, 100);
    ASSERT_NEAR((double)zlb_sched_offset_ns(&s, 5) / 1e9, 0.455, 1e-6);
    /* The total is a cap. */
    s.total = 6;
    ASSERT_UEQ(zlb_sched_due(&s, 10 * ZLB_NS_PER_SEC), 6);
}

/* Raise 40 -> 120 at 400/s (about 0.2 s), lower 120 -> 30 (closed_by_us, no failure), raise
 * again; connect_rate lowered to 20/s shows in the attempts' pace. */
static void test_connections_live(void)
{
    rig_t r;
    zlb_work_live_t v;

    rig_start(&r, ZLB_SERVE_ECHO, ZLB_WORK_HOLD, 40, 400, 0);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 40, 5000));
    zlb_work_get_live(r.e, &v);
    ASSERT_UEQ(v.connections, 40);
    v.connections = 120;
    uint64_t t0 = zlb_now_ns();
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 120, 5000));
    double up_s = (double)(zlb_now_ns() - t0) / 1e9;
    dump("raised to 120", &r.s);
    fprintf(stderr, "   80 more at 400/s took %.3f s (want >= 0.19)\n", up_s);
    ASSERT_CMP_DBL(up_s, >=, 0.19);
    ASSERT_UEQ(r.s.total.c.attempted, 120);

    v.connections = 30;
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 30, 5000));
    sleep_ms(100);
    snap(&r);
    dump("lowered to 30", &r.s);
    ASSERT_UEQ(r.s.total.c.open, 30);
    ASSERT_UEQ(r.s.total.c.closed_by_us, 90);
    ASSERT_UEQ(r.s.total.c.attempted, 120); /* none reopened */

    /* Slower: 20 more at 20/s take about a second. */
    v.connections = 50;
    v.connect_rate = 20;
    t0 = zlb_now_ns();
    zlb_work_steer(r.e, &v);
    sleep_ms(500);
    snap(&r);
    dump("raising at 20/s, 0.5 s in", &r.s);
    ASSERT_CMP_UINT(r.s.total.c.attempted - 120, <=, 13);
    ASSERT_CMP_UINT(r.s.total.c.attempted - 120, >=, 7);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 50, 5000));
    fprintf(stderr, "   20 more at 20/s took %.3f s\n", (double)(zlb_now_ns() - t0) / 1e9);
    rig_finish(&r);
}

/* close_rate: 100 connections lowered to 0 at 200/s take about half a second. */
static void test_close_rate(void)
{
    rig_t r;
    zlb_work_live_t v;

    rig_start(&r, ZLB_SERVE_ECHO, ZLB_WORK_HOLD, 100, 0, 0);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 100, 5000));
    zlb_work_get_live(r.e, &v);
    v.connections = 0;
    v.close_rate = 200;
    uint64_t t0 = zlb_now_ns();
    zlb_work_steer(r.e, &v);
    sleep_ms(250);
    snap(&r);
    dump("closing at 200/s, 0.25 s in", &r.s);
    ASSERT_CMP_UINT(r.s.total.c.closed_by_us, >=, 30);
    ASSERT_CMP_UINT(r.s.total.c.closed_by_us, <=, 75);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 0, 5000));
    double s = (double)(zlb_now_ns() - t0) / 1e9;
    fprintf(stderr, "   100 closed at 200/s in %.3f s (want 0.4..1.5)\n", s);
    ASSERT_CMP_DBL(s, >=, 0.4);
    ASSERT_UEQ(r.s.total.c.closed_by_us, 100);
    rig_finish(&r);
}

/* http open loop at 500/s on 20 connections; the rate raised to 2000/s shows within a
 * second; paused: not one request sent and the responses flat (in-flight ones answered);
 * resumed: requests flow again; the request invariant in every snapshot. */
static void test_http_rate_pause(void)
{
    rig_t r;
    zlb_work_live_t v;

    rig_start(&r, ZLB_SERVE_HTTP, ZLB_WORK_HTTP, 20, 0, 500);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 20, 5000));
    sleep_ms(200);
    snap(&r);
    uint64_t n0 = r.s.total.c.responses, t0 = r.s.taken_ns;
    sleep_ms(500);
    snap(&r);
    double rate1 = (double)(r.s.total.c.responses - n0) * 1e9 / (double)(r.s.taken_ns - t0);
    zlb_work_get_live(r.e, &v);
    v.rate = 2000;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    snap(&r);
    n0 = r.s.total.c.responses;
    t0 = r.s.taken_ns;
    sleep_ms(500);
    snap(&r);
    double rate2 = (double)(r.s.total.c.responses - n0) * 1e9 / (double)(r.s.taken_ns - t0);
    fprintf(stderr, "   responses/s at 500: %.0f, at 2000: %.0f\n", rate1, rate2);
    ASSERT_CMP_DBL(rate1, >, 350);
    ASSERT_CMP_DBL(rate1, <, 650);
    ASSERT_CMP_DBL(rate2, >, 1500);
    ASSERT_CMP_DBL(rate2, <, 2500);

    v.paused = true;
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.requests_in_flight == 0, 2000));
    uint64_t sent = r.s.total.c.requests_sent, resp = r.s.total.c.responses;
    sleep_ms(400);
    snap(&r);
    dump("paused 0.4 s", &r.s);
    ASSERT_UEQ(r.s.total.c.requests_sent, sent);
    ASSERT_UEQ(r.s.total.c.responses, resp);
    ASSERT_UEQ(r.s.total.c.requests_queued, 0);
    ASSERT_UEQ(r.s.total.c.open, 20); /* connections stay open */

    v.paused = false;
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.responses >= resp + 200, 3000));
    dump("resumed", &r.s);
    /* The pause is no latency: requests are timed from intended times after it. */
    uint64_t p99 = zlb_hist_percentile(r.s.total.lat[ZLB_LAT_HTTP_RESPONSE], 99);
    fprintf(stderr, "   response p99 after the pause: %.0f us (want < 200 ms)\n",
            (double)p99 / 1e3);
    ASSERT_CMP_UINT(p99, <, 200 * ZLB_NS_PER_MS);

    /* Rate 0: nothing new is sent. */
    v.rate = 0;
    zlb_work_steer(r.e, &v);
    sleep_ms(100);
    snap(&r);
    sent = r.s.total.c.requests_sent;
    sleep_ms(300);
    snap(&r);
    ASSERT_UEQ(r.s.total.c.requests_sent, sent);
    ASSERT_UEQ(r.s.total.c.requests_failed, 0);
    rig_finish(&r);
}

/* Pause during the ramp: no attempt starts while paused; the resume carries on without the
 * pause showing as schedule lag. */
static void test_pause_ramp(void)
{
    rig_t r;
    zlb_work_live_t v;

    rig_start(&r, ZLB_SERVE_ECHO, ZLB_WORK_HOLD, 200, 200, 0);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open >= 40, 5000));
    zlb_work_get_live(r.e, &v);
    v.paused = true;
    zlb_work_steer(r.e, &v);
    sleep_ms(50);
    snap(&r);
    uint64_t a = r.s.total.c.attempted;
    sleep_ms(750);
    snap(&r);
    dump("paused in the ramp", &r.s);
    ASSERT_UEQ(r.s.total.c.attempted, a);
    v.paused = false;
    zlb_work_steer(r.e, &v);
    ASSERT(WAIT_SNAP(&r, r.s.total.c.open == 200, 5000));
    uint64_t lag = zlb_hist_max(r.s.total.lat[ZLB_LAT_SCHEDULE_LAG]);
    /* Counted, the 800 ms pause would show as at least that much lag; half of it leaves room
     * for a loaded host's own stalls (142 ms seen at load 20). */
    fprintf(stderr, "   schedule lag max %.1f ms (want < 400: the pause was 800)\n",
            (double)lag / 1e6);
    ASSERT_CMP_UINT(lag, <, 400 * ZLB_NS_PER_MS);
    rig_finish(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_rebase_math);
    RUN_TEST(test_connections_live);
    RUN_TEST(test_close_rate);
    RUN_TEST(test_http_rate_pause);
    RUN_TEST(test_pause_ramp);
    return 0;
}
