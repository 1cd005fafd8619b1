/* bench_tls_memory.c -- zlbench's own memory per idle held TLS connection (kernel excluded). */
/*
 * usage: bench_tls_memory [LO=2000] [HI=6000] [POLLERS=1]
 *
 * A TLS echo server (the built-in target, its CA written to a file) runs in a child process,
 * and two more children each hold LO and HI idle TLS connections (full TLS 1.3 handshakes,
 * verification on, no resumption: each connection keeps its own session and peer certificate,
 * the costlier case) with the same configuration, then report their resident set (/proc/self/statm)
 * and the allocator's bytes in use (mallinfo2). Whatever is fixed (histograms, read buffers, the
 * SSL_CTX and its trust store, thread stacks, the binary) is the same in both, so the slope (HI -
 * LO) / (HI - LO connections) is the per-connection cost: the slot, the SSL, the peer's
 * certificate, the record layer state that stays after the handshake. Kernel socket memory is not
 * in the RSS. The last line is in bench/run's format, with the 24 KiB budget as the reference.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "work/work_internal.h"

#define BUDGET (24.0 * 1024)

/* LO or HI held TLS connections to the server, made by one measuring child. */
static int measure(uint16_t port, const char *ca_file, uint64_t n, int pollers,
                   bench_mem_sample_t *out)
{
    zlb_tls_config_t tls = {.enabled = true,
                            .verify = true,
                            .ca_file = (char *)ca_file,
                            .handshake_timeout_ns = 30 * ZLB_NS_PER_SEC};
    zlb_work_target_t t = {
        .host = "127.0.0.1", .port = port, .weight = 1, .tls = &tls, .name = "server"};
    zlb_config_t cfg;
    int r;

    zlb_config_init_default(&cfg);
    cfg.embedded_target.enabled = false;
    cfg.connections = n;
    /* Under what the server handshakes per second, so none waits past its deadline. */
    cfg.connect_rate = 1500;
    cfg.connect_timeout_ns = 30 * ZLB_NS_PER_SEC;
    cfg.workload.type = ZLB_WORK_HOLD;
    cfg.socket.close = ZLB_CLOSE_RST; /* leave no TIME_WAIT behind for the next child */
    /* Until every attempt has ended; then idle for tickets to be read and buffers released. */
    r = bench_mem_run(&cfg, &t, pollers, 120, true, 1000, out);
    zlb_config_dispose(&cfg);
    return r;
}

int main(int argc, char **argv)
{
    uint64_t lo = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000;
    uint64_t hi = argc > 2 ? strtoull(argv[2], NULL, 10) : 6000;
    int pollers = argc > 3 ? atoi(argv[3]) : 1;
    char dir[] = "/tmp/zlb-tlsmem.XXXXXX", ca_file[64];
    zlb_serve_opts_t o = {.mode = ZLB_SERVE_ECHO,
                          .listen = "127.0.0.1:0",
                          .threads = 2,
                          .backlog = 65535,
                          .tls = true,
                          .ca_out_file = ca_file};
    bench_mem_sample_t a, b;
    bench_server_t srv;

    signal(SIGPIPE, SIG_IGN);
    zlb_log_level = ZLB_LOG_WARN;
    if (hi <= lo || pollers < 1) {
        fprintf(stderr, "usage: bench_tls_memory [LO=2000] [HI=6000] [POLLERS=1]\n");
        return 2;
    }
    if (!mkdtemp(dir))
        return 1;
    snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", dir);
    /* Children are forked while this process has no threads at all. */
    if (bench_server_start(&o, &srv) < 0) {
        fprintf(stderr, "bench_tls_memory: the server did not start\n");
        return 1;
    }
    int ra = measure(srv.port, ca_file, lo, pollers, &a);
    int rb = measure(srv.port, ca_file, hi, pollers, &b);
    bench_server_stop(&srv);
    unlink(ca_file);
    rmdir(dir);
    if (ra < 0 || rb < 0 || a.open != lo || b.open != hi) {
        fprintf(stderr,
                "bench_tls_memory: runs failed (open %llu/%llu, %llu/%llu; failed %llu, %llu)\n",
                (unsigned long long)a.open, (unsigned long long)lo, (unsigned long long)b.open,
                (unsigned long long)hi, (unsigned long long)a.failed, (unsigned long long)b.failed);
        return 1;
    }
    printf("bench_tls_memory: slot %zu B + TLS state %zu B, %d poller%s\n", sizeof(zlb_work_slot_t),
           sizeof(zlb_tls_conn_t), pollers, pollers > 1 ? "s" : "");
    double per_rss = bench_mem_print(lo, hi, &a, &b, BUDGET);
    printf("tls_memory: zlbench=%.0f reference=%.0f ratio=%.3f unit=bytes\n", per_rss, BUDGET,
           per_rss / BUDGET);
    return per_rss <= BUDGET ? 0 : 1;
}
