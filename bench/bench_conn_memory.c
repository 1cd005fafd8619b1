/* bench_conn_memory.c -- zlbench's own memory per idle held connection (kernel memory excluded). */
/*
 * usage: bench_conn_memory [LO=5000] [HI=15000] [POLLERS=1]
 *
 * An echo server runs in a child process (its sockets would not fit in our fd limit), and two
 * more children each hold LO and HI idle connections with the same configuration, then report
 * their resident set (/proc/self/statm) and the allocator's bytes in use (mallinfo2). Whatever is
 * fixed (histograms, read buffers, thread stacks, the binary) is the same in both, so the slope
 * (HI - LO) / (HI - LO connections) is the per-connection cost. Kernel socket memory is not in
 * the RSS. The last line is in bench/run's format, with the 512-byte budget as the reference.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "work/work_internal.h"

#define BUDGET 512.0

/* LO or HI held connections to the server, made by one measuring child. */
static int measure(uint16_t port, uint64_t n, int pollers, bench_mem_sample_t *out)
{
    zlb_work_target_t t = {.host = "127.0.0.1", .port = port, .weight = 1, .name = "server"};
    zlb_config_t cfg;
    int r;

    zlb_config_init_default(&cfg);
    cfg.embedded_target.enabled = false;
    cfg.connections = n;
    cfg.connect_rate = 0;
    cfg.workload.type = ZLB_WORK_HOLD;
    cfg.socket.close = ZLB_CLOSE_RST; /* leave no TIME_WAIT behind for the next child */
    r = bench_mem_run(&cfg, &t, pollers, 60, false, 500, out);
    zlb_config_dispose(&cfg);
    return r;
}

int main(int argc, char **argv)
{
    uint64_t lo = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000;
    uint64_t hi = argc > 2 ? strtoull(argv[2], NULL, 10) : 15000;
    int pollers = argc > 3 ? atoi(argv[3]) : 1;
    zlb_serve_opts_t o = {
        .mode = ZLB_SERVE_ECHO, .listen = "127.0.0.1:0", .threads = 2, .backlog = 65535};
    bench_mem_sample_t a, b;
    bench_server_t srv;

    signal(SIGPIPE, SIG_IGN);
    zlb_log_level = ZLB_LOG_WARN;
    if (hi <= lo || pollers < 1) {
        fprintf(stderr, "usage: bench_conn_memory [LO=5000] [HI=15000] [POLLERS=1]\n");
        return 2;
    }
    /* Children are forked while this process has no threads at all. */
    if (bench_server_start(&o, &srv) < 0) {
        fprintf(stderr, "bench_conn_memory: the server did not start\n");
        return 1;
    }
    int ra = measure(srv.port, lo, pollers, &a);
    int rb = measure(srv.port, hi, pollers, &b);
    bench_server_stop(&srv);
    if (ra < 0 || rb < 0 || a.open != lo || b.open != hi) {
        fprintf(stderr, "bench_conn_memory: runs failed (open %llu/%llu, %llu/%llu)\n",
                (unsigned long long)a.open, (unsigned long long)lo, (unsigned long long)b.open,
                (unsigned long long)hi);
        return 1;
    }
    printf("bench_conn_memory: slot %zu B (conn %zu B), %d poller%s\n", sizeof(zlb_work_slot_t),
           sizeof(zlb_conn_t), pollers, pollers > 1 ? "s" : "");
    double per_rss = bench_mem_print(lo, hi, &a, &b, BUDGET);
    printf("conn_memory: zlbench=%.0f reference=%.0f ratio=%.2f unit=bytes/connection\n", per_rss,
           BUDGET, per_rss / BUDGET);
    return per_rss <= BUDGET ? 0 : 1;
}
