/* bench_util.h -- helpers the engine benches share: sleeping, an engine on its own pool, and the
 * memory benches' server child, measuring children (RSS and malloc samples) and report. */
#ifndef ZLB_BENCH_UTIL_H
#define ZLB_BENCH_UTIL_H

#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "net/net.h"
#include "serve/serve.h"
#include "work/work.h"

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A pool of `pollers` pollers, not pinned (the server shares the machine: let the kernel place
 * them), and an engine on it for the one target t. On failure *pool and *e are what was made
 * (or NULL) for the caller to destroy. */
static inline int bench_engine_create(const zlb_config_t *cfg, const zlb_work_target_t *t,
                                      int pollers, zlb_pool_t **pool, zlb_work_t **e)
{
    zlb_pool_opts_t po;
    int r;

    zlb_pool_opts_default(&po);
    po.count = pollers;
    po.cpu_affinity = false;
    r = zlb_pool_create(&po, pool);
    if (r < 0)
        return r;
    return zlb_work_create(cfg, t, 1, *pool, e);
}

/* Closes every connection, waits until the engine is idle (at most wait_ms; 0: no limit), then
 * stops the pool. */
static inline void bench_engine_stop(zlb_work_t *e, zlb_pool_t *pool, unsigned wait_ms)
{
    zlb_work_close_all(e);
    for (unsigned waited = 0; (!wait_ms || waited < wait_ms) && !zlb_work_idle(e); waited += 5)
        sleep_ms(5);
    zlb_pool_stop(pool);
}

/* ---- memory benches -------------------------------------------------------------------------- */

/* What a measuring child reports. */
typedef struct {
    uint64_t open;
    uint64_t rss;    /* bytes */
    uint64_t malloc; /* bytes in use: arena + mmapped chunks */
    uint64_t failed;
} bench_mem_sample_t;

static inline uint64_t rss_bytes(void)
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

/* The built-in target in a child process (its sockets would not fit in our fd limit). */
typedef struct {
    pid_t pid;
    int stop_fd; /* closing it stops the server */
    uint16_t port;
} bench_server_t;

static inline int bench_server_child(const zlb_serve_opts_t *o, int wfd, int rfd)
{
    zlb_serve_t *t;
    uint16_t port;
    char c;

    zlb_net_raise_nofile();
    if (zlb_serve_start(o, &t) < 0)
        return 1;
    port = zlb_serve_port(t);
    if (write(wfd, &port, sizeof(port)) != sizeof(port))
        return 1;
    close(wfd);
    while (read(rfd, &c, 1) < 0 && errno == EINTR) /* until the parent closes its end */
        ;
    zlb_serve_destroy(t);
    return 0;
}

/* Forks the server and waits for its port; call it while this process has no threads at all.
 * Returns 0, or -1 when the server did not start. */
static inline int bench_server_start(const zlb_serve_opts_t *o, bench_server_t *srv)
{
    int to_parent[2], to_server[2];

    if (pipe(to_parent) < 0 || pipe(to_server) < 0)
        return -1;
    srv->pid = fork();
    if (srv->pid == 0) {
        close(to_parent[0]);
        close(to_server[1]);
        _exit(bench_server_child(o, to_parent[1], to_server[0]));
    }
    close(to_parent[1]);
    close(to_server[0]);
    srv->stop_fd = to_server[1];
    if (read(to_parent[0], &srv->port, sizeof(srv->port)) != sizeof(srv->port))
        return -1;
    return 0;
}

static inline void bench_server_stop(bench_server_t *srv)
{
    int status;

    close(srv->stop_fd);
    waitpid(srv->pid, &status, 0);
}

/* The measuring child: an engine with `pollers` pollers holds cfg->connections idle connections
 * to t until all are open (with `settled`, or until every attempt has ended) or wait_s seconds
 * pass, idles idle_ms, writes its sample to wfd and closes everything. Returns its exit status. */
static inline int bench_mem_child(int wfd, const zlb_config_t *cfg, const zlb_work_target_t *t,
                                  int pollers, unsigned wait_s, bool settled, unsigned idle_ms)
{
    zlb_pool_t *pool = NULL;
    zlb_work_t *e = NULL;
    zlb_work_snapshot_t s;
    bench_mem_sample_t out = {0};
    uint64_t n = cfg->connections, dl = zlb_now_ns() + wait_s * ZLB_NS_PER_SEC;

    if (bench_engine_create(cfg, t, pollers, &pool, &e) < 0)
        return 1;
    zlb_work_snapshot_init(e, &s);
    if (zlb_work_start(e) < 0)
        return 1;
    do {
        sleep_ms(50);
        zlb_work_snapshot(e, &s);
    } while (s.total.c.open < n && (!settled || s.total.c.attempted - s.total.c.in_flight < n) &&
             zlb_now_ns() < dl);
    /* Idle for a moment: nothing in flight, buffers released, only held connections. */
    sleep_ms(idle_ms);
    zlb_work_snapshot(e, &s);
    struct mallinfo2 mi = mallinfo2();
    out.open = s.total.c.open;
    out.failed = zlb_counters_failed_total(&s.total.c);
    out.rss = rss_bytes();
    out.malloc = mi.uordblks + mi.hblkhd;
    if (write(wfd, &out, sizeof(out)) != sizeof(out))
        return 1;
    bench_engine_stop(e, pool, 0);
    zlb_work_snapshot_dispose(&s);
    zlb_work_destroy(e);
    zlb_pool_destroy(pool);
    return 0;
}

/* Runs bench_mem_child in a child process of its own and reads its sample into *out. */
static inline int bench_mem_run(const zlb_config_t *cfg, const zlb_work_target_t *t, int pollers,
                                unsigned wait_s, bool settled, unsigned idle_ms,
                                bench_mem_sample_t *out)
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
        _exit(bench_mem_child(p[1], cfg, t, pollers, wait_s, settled, idle_ms));
    }
    close(p[1]);
    ssize_t r = read(p[0], out, sizeof(*out));
    close(p[0]);
    waitpid(pid, &status, 0);
    return r == (ssize_t)sizeof(*out) && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* Prints both samples and the per-connection slope between them; returns the RSS slope. */
static inline double bench_mem_print(uint64_t lo, uint64_t hi, const bench_mem_sample_t *a,
                                     const bench_mem_sample_t *b, double budget)
{
    double n = (double)(hi - lo);
    double per_rss = ((double)b->rss - (double)a->rss) / n;
    double per_malloc = ((double)b->malloc - (double)a->malloc) / n;

    printf("  %llu idle: rss %.1f MiB, malloc %.1f MiB\n", (unsigned long long)lo,
           (double)a->rss / 1048576.0, (double)a->malloc / 1048576.0);
    printf("  %llu idle: rss %.1f MiB, malloc %.1f MiB\n", (unsigned long long)hi,
           (double)b->rss / 1048576.0, (double)b->malloc / 1048576.0);
    printf("  per connection: rss %.0f B, malloc %.0f B (budget %.0f B)\n", per_rss, per_malloc,
           budget);
    return per_rss;
}

#endif
