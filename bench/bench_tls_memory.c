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
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "net/net.h"
#include "target/target.h"
#include "work/work.h"
#include "work/work_internal.h"

#define BUDGET (24.0 * 1024)

typedef struct {
    uint64_t open;
    uint64_t rss;    /* bytes */
    uint64_t malloc; /* bytes in use: arena + mmapped chunks */
    uint64_t failed;
} sample_t;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int server_child(int wfd, int rfd, const char *ca_file)
{
    zlb_target_opts_t o = {.mode = ZLB_SERVE_ECHO,
                           .listen = "127.0.0.1:0",
                           .threads = 2,
                           .backlog = 65535,
                           .tls = true,
                           .ca_out_file = ca_file};
    zlb_target_t *t;
    uint16_t port;
    char c;

    zlb_net_raise_nofile();
    if (zlb_target_start(&o, &t) < 0)
        return 1;
    port = zlb_target_port(t);
    if (write(wfd, &port, sizeof(port)) != sizeof(port))
        return 1;
    close(wfd);
    while (read(rfd, &c, 1) < 0 && errno == EINTR) /* until the parent closes its end */
        ;
    zlb_target_destroy(t);
    return 0;
}

static int measure_child(int wfd, uint16_t port, const char *ca_file, uint64_t n, int pollers)
{
    zlb_tls_config_t tls = {.enabled = true,
                            .verify = true,
                            .ca_file = (char *)ca_file,
                            .handshake_timeout_ns = 30 * ZLB_NS_PER_SEC};
    zlb_engine_target_t t = {
        .host = "127.0.0.1", .port = port, .weight = 1, .tls = &tls, .name = "server"};
    zlb_config_t cfg;
    zlb_pool_opts_t po;
    zlb_pool_t *pool;
    zlb_engine_t *e;
    zlb_engine_snapshot_t s;
    sample_t out = {0};
    uint64_t dl = zlb_now_ns() + 120 * ZLB_NS_PER_SEC;

    zlb_config_init_default(&cfg);
    cfg.embedded_target.enabled = false;
    cfg.connections = n;
    /* Under what the server handshakes per second, so none waits past its deadline. */
    cfg.connect_rate = 1500;
    cfg.connect_timeout_ns = 30 * ZLB_NS_PER_SEC;
    cfg.workload.type = ZLB_WORK_HOLD;
    cfg.socket.close = ZLB_CLOSE_RST; /* leave no TIME_WAIT behind for the next child */
    zlb_pool_opts_default(&po);
    po.count = pollers;
    po.cpu_affinity = false;
    if (zlb_pool_create(&po, &pool) < 0 || zlb_engine_create(&cfg, &t, 1, pool, &e) < 0)
        return 1;
    zlb_engine_snapshot_init(e, &s);
    if (zlb_engine_start(e) < 0)
        return 1;
    do {
        sleep_ms(50);
        zlb_engine_snapshot(e, &s);
    } while (s.total.c.open < n && s.total.c.attempted - s.total.c.in_flight < n &&
             zlb_now_ns() < dl);
    /* Idle for a moment: tickets read, buffers released, only held connections. */
    sleep_ms(1000);
    zlb_engine_snapshot(e, &s);
    struct mallinfo2 mi = mallinfo2();
    out.open = s.total.c.open;
    out.failed = zlb_counters_failed_total(&s.total.c);
    out.rss = rss_bytes();
    out.malloc = mi.uordblks + mi.hblkhd;
    if (write(wfd, &out, sizeof(out)) != sizeof(out))
        return 1;
    zlb_engine_close_all(e);
    while (!zlb_engine_idle(e))
        sleep_ms(5);
    zlb_pool_stop(pool);
    zlb_engine_mark_stopped(e);
    zlb_engine_snapshot_dispose(&s);
    zlb_engine_destroy(e);
    zlb_pool_destroy(pool);
    zlb_config_dispose(&cfg);
    return 0;
}

static int run_child(uint16_t port, const char *ca_file, uint64_t n, int pollers, sample_t *out)
{
    int p[2], status;
    pid_t pid;

    if (pipe(p) < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(p[0]);
        _exit(measure_child(p[1], port, ca_file, n, pollers));
    }
    close(p[1]);
    ssize_t r = read(p[0], out, sizeof(*out));
    close(p[0]);
    waitpid(pid, &status, 0);
    return r == (ssize_t)sizeof(*out) && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int main(int argc, char **argv)
{
    uint64_t lo = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000;
    uint64_t hi = argc > 2 ? strtoull(argv[2], NULL, 10) : 6000;
    int pollers = argc > 3 ? atoi(argv[3]) : 1;
    int to_parent[2], to_server[2], status;
    char dir[] = "/tmp/zlb-tlsmem.XXXXXX", ca_file[64];
    sample_t a, b;
    uint16_t port;
    pid_t server;

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
    if (pipe(to_parent) < 0 || pipe(to_server) < 0)
        return 1;
    server = fork();
    if (server == 0) {
        close(to_parent[0]);
        close(to_server[1]);
        _exit(server_child(to_parent[1], to_server[0], ca_file));
    }
    close(to_parent[1]);
    close(to_server[0]);
    if (read(to_parent[0], &port, sizeof(port)) != sizeof(port)) {
        fprintf(stderr, "bench_tls_memory: the server did not start\n");
        return 1;
    }
    int ra = run_child(port, ca_file, lo, pollers, &a);
    int rb = run_child(port, ca_file, hi, pollers, &b);
    close(to_server[1]);
    waitpid(server, &status, 0);
    unlink(ca_file);
    rmdir(dir);
    if (ra < 0 || rb < 0 || a.open != lo || b.open != hi) {
        fprintf(stderr,
                "bench_tls_memory: runs failed (open %llu/%llu, %llu/%llu; failed %llu, %llu)\n",
                (unsigned long long)a.open, (unsigned long long)lo, (unsigned long long)b.open,
                (unsigned long long)hi, (unsigned long long)a.failed, (unsigned long long)b.failed);
        return 1;
    }
    double n = (double)(hi - lo);
    double per_rss = ((double)b.rss - (double)a.rss) / n;
    double per_malloc = ((double)b.malloc - (double)a.malloc) / n;
    printf("bench_tls_memory: slot %zu B + TLS state %zu B, %d poller%s\n", sizeof(zlb_work_slot_t),
           sizeof(zlb_tls_conn_t), pollers, pollers > 1 ? "s" : "");
    printf("  %llu idle: rss %.1f MiB, malloc %.1f MiB\n", (unsigned long long)lo,
           (double)a.rss / 1048576.0, (double)a.malloc / 1048576.0);
    printf("  %llu idle: rss %.1f MiB, malloc %.1f MiB\n", (unsigned long long)hi,
           (double)b.rss / 1048576.0, (double)b.malloc / 1048576.0);
    printf("  per connection: rss %.0f B, malloc %.0f B (budget %.0f B)\n", per_rss, per_malloc,
           BUDGET);
    printf("tls_memory: zlbench=%.0f reference=%.0f ratio=%.3f unit=bytes\n", per_rss, BUDGET,
           per_rss / BUDGET);
    return per_rss <= BUDGET ? 0 : 1;
}
