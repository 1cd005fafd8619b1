/* child.c -- a shard process: its engine, driven by the parent's commands, its snapshots pushed. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/core.h"
#include "procs/procs.h"
#include "procs/procs_internal.h"

int zlb_procs_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int zlb_procs_send(int fd, uint8_t type, const void *payload, size_t n)
{
    uint8_t head[5];
    uint32_t len = (uint32_t)n + 1;
    memcpy(head, &len, 4);
    head[4] = type;
    int rc = zlb_procs_write_all(fd, head, sizeof(head));
    return rc ? rc : zlb_procs_write_all(fd, payload, n);
}

typedef struct child {
    uint32_t index;
    int fd;
    zlb_run_engine_t *h;
    zlb_work_t *e;
    zlb_work_snapshot_t snap;
    zlb_procs_bytes_t out; /* grown once, then reused: no allocation per push */
    zlb_procs_cmdbuf_t in; /* the parent's commands: a fixed buffer */
    bool start, draining, finishing;
} child_t;

static _Noreturn void die(child_t *c, int code)
{
    zlb_run_engine_destroy(c->h);
    _exit(code);
}

static void push(child_t *c, uint8_t type)
{
    if (zlb_work_snapshot(c->e, &c->snap) != 0)
        zlb_log_warn("process %u: a snapshot was incomplete", c->index);
    zlb_procs_encode(&c->snap, zlb_work_idle(c->e), &c->out);
    /* The parent gone: nothing to report to; PDEATHSIG ends us too. */
    if (zlb_procs_send(c->fd, type, c->out.data, c->out.len) != 0)
        die(c, ZLB_EXIT_INTERNAL);
}

static void apply(child_t *c, uint8_t cmd, const zlb_work_live_t *live)
{
    switch (cmd) {
    case ZLB_PROCS_CMD_START:
        c->start = true;
        break;
    case ZLB_PROCS_CMD_LIVE:
        /* Its share of the run's values, applied as the one-process runner applies the whole
         * (before or after the start; ignored once closing). */
        zlb_work_steer(c->e, live);
        break;
    case ZLB_PROCS_CMD_STOP_OPENING:
        zlb_work_stop_opening(c->e);
        break;
    case ZLB_PROCS_CMD_CLOSE_ALL:
        zlb_work_close_all(c->e);
        c->draining = true;
        break;
    case ZLB_PROCS_CMD_RESET_LAG: {
        zlb_pool_t *pool = zlb_run_engine_pool(c->h);
        for (int k = 0; k < zlb_pool_size(pool); k++)
            zlb_loop_reset_lag_max(zlb_pool_loop(pool, k));
        break;
    }
    case ZLB_PROCS_CMD_FINISH:
        c->finishing = true;
        break;
    case ZLB_PROCS_CMD_SNAP_NOW: /* a stage boundary: the parent waits for this one */
        push(c, ZLB_PROCS_FRESH);
        break;
    default:
        break;
    }
}

/* Applies the whole commands buffered, in order, up to FINISH; and up to START while the engine
 * has not started (the caller starts it before what follows, as the parent sent them). */
static void apply_buffered(child_t *c)
{
    uint8_t cmd;
    zlb_work_live_t live;
    int rc = 0;
    while (!c->finishing && (rc = zlb_procs_cmd_next(&c->in, &cmd, &live)) > 0) {
        bool was_started = c->start;
        apply(c, cmd, &live);
        if (!was_started && c->start)
            return;
    }
    if (!c->finishing && rc < 0) {
        zlb_log_error("process %u: the parent's commands do not read (%s): stopping", c->index,
                      strerror(-rc));
        die(c, ZLB_EXIT_INTERNAL);
    }
}

/* Reads what the parent sent and applies it. */
static void commands(child_t *c)
{
    /* What stays after apply_buffered is less than a frame (the buffer holds two), so there is
     * room; none would be a broken stream. */
    size_t room = sizeof(c->in.buf) - c->in.len;
    if (room == 0)
        die(c, ZLB_EXIT_INTERNAL);
    ssize_t n = read(c->fd, c->in.buf + c->in.len, room);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) /* the parent is gone (or broke the protocol): stop without a word */
        die(c, ZLB_EXIT_INTERNAL);
    c->in.len += (size_t)n;
    apply_buffered(c);
}

static int apply_cpus(const int *cpus, size_t ncpus)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (size_t i = 0; i < ncpus; i++)
        CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

_Noreturn void zlb_procs_child(zlb_config_t *cfg, uint32_t index, uint32_t count, int fd,
                               const int *cpus, size_t ncpus, pid_t parent)
{
    child_t c = {.index = index, .fd = fd};
    /* Dies with the parent; and if the parent died before the line above took effect, the
     * check after it sees us adopted. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(ZLB_EXIT_INTERNAL);
    char name[16];
    snprintf(name, sizeof(name), "proc%u", index);
    zlb_thread_set_name(name);
    /* The parent says what a person needs; a child speaks up when something is wrong. */
    if (zlb_log_level < ZLB_LOG_WARN)
        zlb_log_level = ZLB_LOG_WARN;

    /* Every thread made from here on (pollers, target, resolver) inherits the mask; the pollers
     * pin themselves to CPUs of it (or of the list given). */
    int rc = apply_cpus(cpus, ncpus);
    if (rc != 0)
        zlb_log_warn("process %u: cannot restrict it to its CPUs: %s", index, strerror(-rc));
    if (cfg->pollers.ncpus) {
        cfg->pollers.cpus = (int *)cpus; /* this process's copy; never freed: we _exit */
        cfg->pollers.ncpus = ncpus;
    }
    char err[256] = "";
    rc = zlb_config_apply_shard(cfg, index, count, err, sizeof(err));
    if (rc != 0) {
        zlb_log_error("process %u: cannot take shard %u/%u: %s", index, index, count, err);
        _exit(ZLB_EXIT_USAGE);
    }
    /* The parent owns the port, the report, the clock and the verdict. */
    cfg->control.enabled = false;
    cfg->report.file = NULL;
    cfg->duration_ns = 0;
    cfg->nthresholds = 0;
    cfg->abort_on_fail = false;

    rc = zlb_run_engine_create(cfg, &c.h);
    if (rc != 0)
        _exit(rc == -EINVAL || rc == -EADDRINUSE || rc == -EADDRNOTAVAIL || rc == -EACCES
                  ? ZLB_EXIT_USAGE
                  : ZLB_EXIT_INTERNAL);
    c.e = zlb_run_engine_work(c.h);
    size_t nt;
    (void)zlb_run_engine_targets(c.h, &nt);
    zlb_work_snapshot_init(c.e, &c.snap);
    uint64_t hello[2] = {c.snap.npollers, nt};
    if (zlb_procs_send(fd, ZLB_PROCS_HELLO, hello, sizeof(hello)) != 0)
        die(&c, ZLB_EXIT_INTERNAL);

    /* Before START the parent may reset the lag figures (a run with no warm-up measures from
     * the start), hand over the first stage's values, or end a run that never started. */
    while (!c.start && !c.finishing) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            die(&c, ZLB_EXIT_INTERNAL);
        if (pfd.revents)
            commands(&c);
    }
    bool told_idle = false;
    rc = c.finishing ? 0 : zlb_work_start(c.e);
    if (rc != 0) {
        zlb_log_error("process %u: cannot start the scheduler: %s", index, strerror(-rc));
        die(&c, ZLB_EXIT_INTERNAL);
    }
    apply_buffered(&c); /* what came in the same read as START */

    uint64_t next = zlb_now_ns() + ZLB_PROCS_TICK_NS;
    while (!c.finishing) {
        uint64_t now = zlb_now_ns();
        int wait_ms = c.draining ? 1 : (int)((next > now ? next - now : 0) / ZLB_NS_PER_MS);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
            die(&c, ZLB_EXIT_INTERNAL);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            commands(&c);
        if (c.finishing)
            break;
        /* A drain that is over shows at once, not at the next tick: the parent ends the run on
         * it, as one process does on its own look. */
        bool idle_now = c.draining && !told_idle && zlb_work_idle(c.e);
        now = zlb_now_ns();
        if (now < next && !idle_now)
            continue;
        told_idle |= idle_now;
        next = now + ZLB_PROCS_TICK_NS;
        push(&c, ZLB_PROCS_SNAP);
    }
    /* Every poller has answered its last task: this snapshot is exactly what they recorded. */
    zlb_pool_stop(zlb_run_engine_pool(c.h));
    push(&c, ZLB_PROCS_FINAL);
    close(fd);
    zlb_work_snapshot_dispose(&c.snap);
    zlb_procs_bytes_dispose(&c.out);
    die(&c, ZLB_EXIT_OK);
}
