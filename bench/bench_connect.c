/* bench_connect.c -- connects/s of the engine (hold, unlimited rate), and the server it runs
 * against. */
/*
 * usage: bench_connect serve [LISTEN=127.0.0.1:0] [THREADS=1]
 *            runs the built-in echo server in this process (so its sockets do not count
 *            against the client's fd limit), prints "listening ADDR" and waits for SIGTERM
 *        bench_connect run IPV4:PORT [N=15000] [POLLERS=1]
 *            opens N held connections as fast as possible and prints
 *            "bench_connect: N established in S s with P pollers, F failed: connects_per_sec=R"
 *            where S runs from the first attempt to the moment N were open at once.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static int serve(const char *listen, int threads)
{
    zlb_serve_opts_t o = {
        .mode = ZLB_SERVE_ECHO, .listen = listen, .threads = threads, .backlog = 65535};
    zlb_serve_t *t;
    sigset_t set;
    int sig, r;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server threads inherit the mask */
    zlb_net_raise_nofile();
    r = zlb_serve_start(&o, &t);
    if (r < 0) {
        fprintf(stderr, "bench_connect serve: %s\n", strerror(-r));
        return 1;
    }
    printf("listening %s\n", zlb_serve_address(t));
    fflush(stdout);
    sigwait(&set, &sig);
    zlb_serve_destroy(t);
    return 0;
}

static int run(const char *addr, uint64_t n, int pollers)
{
    char host[64];
    uint16_t port;
    zlb_config_t cfg;
    zlb_pool_t *pool = NULL;
    zlb_work_t *e = NULL;
    zlb_work_snapshot_t s;
    zlb_work_target_t t;
    uint64_t deadline = zlb_now_ns() + 120 * ZLB_NS_PER_SEC;
    int r;

    if (zlb_addr_split(addr, host, sizeof(host), &port) < 0) {
        fprintf(stderr, "bench_connect: bad address %s\n", addr);
        return 2;
    }
    t = (zlb_work_target_t){.host = host, .port = port, .weight = 1, .name = addr};
    zlb_config_init_default(&cfg);
    cfg.embedded_target.enabled = false;
    cfg.connections = n;
    cfg.connect_rate = 0;
    cfg.connect_timeout_ns = 10 * ZLB_NS_PER_SEC;
    cfg.workload.type = ZLB_WORK_HOLD;
    r = bench_engine_create(&cfg, &t, pollers, &pool, &e);
    if (r < 0)
        goto out;
    zlb_work_snapshot_init(e, &s);
    r = zlb_work_start(e);
    if (r < 0)
        goto out_snap;
    /* The timing comes from the engine's own stamps (first attempt, target reached), so the
     * polling interval does not enter the figure. */
    for (;;) {
        sleep_ms(20);
        zlb_work_snapshot(e, &s);
        if (s.target_reached_ns)
            break;
        if (s.total.c.attempted == n && s.total.c.in_flight == 0)
            break; /* some failed: the target cannot be reached */
        if (zlb_now_ns() > deadline)
            break;
    }
    double secs = s.target_reached_ns ? (double)(s.target_reached_ns - s.first_attempt_ns) / 1e9
                                      : (double)(s.taken_ns - s.first_attempt_ns) / 1e9;
    uint64_t failed = zlb_counters_failed_total(&s.total.c);
    printf("bench_connect: %llu established in %.3f s with %d poller%s, %llu failed "
           "(connect p50 %.0f us p99 %.0f us, schedule lag p99 %.0f us): "
           "connects_per_sec=%.0f\n",
           (unsigned long long)s.total.c.established, secs, pollers, pollers > 1 ? "s" : "",
           (unsigned long long)failed,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_CONNECT], 50) / 1e3,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_CONNECT], 99) / 1e3,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_SCHEDULE_LAG], 99) / 1e3,
           (double)s.total.c.established / secs);
    r = s.target_reached_ns ? 0 : -ETIMEDOUT;
    bench_engine_stop(e, pool, 0);
out_snap:
    zlb_work_snapshot_dispose(&s);
out:
    zlb_work_destroy(e);
    zlb_pool_destroy(pool);
    zlb_config_dispose(&cfg);
    if (r < 0)
        fprintf(stderr, "bench_connect: %s\n", strerror(-r));
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    zlb_log_level = ZLB_LOG_WARN;
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc > 2 ? argv[2] : "127.0.0.1:0", argc > 3 ? atoi(argv[3]) : 1);
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return run(argv[2], argc > 3 ? strtoull(argv[3], NULL, 10) : 15000,
                   argc > 4 ? atoi(argv[4]) : 1);
    fprintf(stderr, "usage: bench_connect serve [LISTEN] [THREADS]\n"
                    "       bench_connect run IPV4:PORT [N=15000] [POLLERS=1]\n");
    return 2;
}
