/* bench_tls_handshake.c -- full TLS handshakes/s of the engine: one poller, churn, no resuming. */
/*
 * usage: bench_tls_handshake IPV4:PORT CA_FILE [IN_FLIGHT=64] [SECONDS=5] [POLLERS=1]
 *
 * The engine keeps IN_FLIGHT connections cycling as fast as it can: each one connects, does a
 * full TLS 1.3 handshake with verification on (CA_FILE, the IP address checked against the
 * certificate), and is closed (close_notify, then a reset, so no TIME_WAIT eats the ports) as
 * soon as it is established, then replaced. It is bench/ref_tls_handshake.c's loop, run by
 * zlbench's engine, against the same server and with the same OpenSSL settings. The rate is
 * counted over SECONDS after a short warm-up, from two snapshots of the engine's own counters:
 *   "bench_tls_handshake: H handshakes in S s with P poller(s), F failed (...):
 *    handshakes_per_sec=R"
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define WARMUP_MS 500

static int run(const char *addr, const char *ca_file, uint64_t inflight, double seconds,
               int pollers)
{
    char host[64];
    uint16_t port;
    zlb_config_t cfg;
    zlb_tls_config_t tls = {.enabled = true,
                            .verify = true,
                            .ca_file = (char *)ca_file,
                            .handshake_timeout_ns = 10 * ZLB_NS_PER_SEC};
    zlb_pool_t *pool = NULL;
    zlb_work_t *e = NULL;
    zlb_work_snapshot_t s;
    bool snap_ready = false;
    zlb_work_target_t t;
    int r;

    if (zlb_addr_split(addr, host, sizeof(host), &port) < 0) {
        fprintf(stderr, "bench_tls_handshake: bad address %s\n", addr);
        return 2;
    }
    t = (zlb_work_target_t){.host = host, .port = port, .weight = 1, .tls = &tls, .name = addr};
    zlb_config_init_default(&cfg);
    cfg.embedded_target.enabled = false;
    cfg.connections = inflight;
    cfg.connect_rate = 0;
    cfg.connect_timeout_ns = 10 * ZLB_NS_PER_SEC;
    cfg.workload.type = ZLB_WORK_CHURN;
    cfg.workload.lifetime_ns = 1; /* closed as soon as established */
    cfg.socket.close = ZLB_CLOSE_RST;
    r = bench_engine_create(&cfg, &t, pollers, &pool, &e);
    if (r < 0)
        goto out;
    zlb_work_snapshot_init(e, &s);
    snap_ready = true;
    r = zlb_work_start(e);
    if (r < 0)
        goto out;
    sleep_ms(WARMUP_MS);
    zlb_work_snapshot(e, &s);
    uint64_t hs0 = s.total.c.tls_handshakes, f0 = zlb_counters_failed_total(&s.total.c);
    uint64_t t0 = s.taken_ns;
    sleep_ms((unsigned)(seconds * 1000));
    zlb_work_snapshot(e, &s);
    double secs = (double)(s.taken_ns - t0) / 1e9;
    uint64_t hs = s.total.c.tls_handshakes - hs0;
    uint64_t failed = zlb_counters_failed_total(&s.total.c) - f0;
    printf("bench_tls_handshake: %llu handshakes in %.2f s with %d poller%s, %llu failed "
           "(connect p50 %.0f us, handshake p50 %.0f us p99 %.0f us): handshakes_per_sec=%.0f\n",
           (unsigned long long)hs, secs, pollers, pollers > 1 ? "s" : "",
           (unsigned long long)failed,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_CONNECT], 50) / 1e3,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_TLS_FULL], 50) / 1e3,
           (double)zlb_hist_percentile(s.total.lat[ZLB_LAT_TLS_FULL], 99) / 1e3, (double)hs / secs);
    r = hs > 0 ? 0 : -EIO;
    bench_engine_stop(e, pool, 10000); /* at most 10 s */
out:
    if (snap_ready)
        zlb_work_snapshot_dispose(&s);
    zlb_work_destroy(e);
    zlb_pool_destroy(pool);
    zlb_config_dispose(&cfg);
    if (r < 0)
        fprintf(stderr, "bench_tls_handshake: %s\n", strerror(-r));
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    zlb_log_level = ZLB_LOG_WARN;
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tls_handshake IPV4:PORT CA_FILE [IN_FLIGHT=64] "
                        "[SECONDS=5] [POLLERS=1]\n");
        return 2;
    }
    return run(argv[1], argv[2], argc > 3 ? strtoull(argv[3], NULL, 10) : 64,
               argc > 4 ? strtod(argv[4], NULL) : 5.0, argc > 5 ? atoi(argv[5]) : 1);
}
