/* procs.c -- the parent of --processes: forks the shards, gathers their snapshots, stands in
 * for one engine under the run controller. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "procs/procs.h"
#include "procs/procs_internal.h"

/* How long set-up (the built-in target, the pollers, the engine) may take in a child. */
#define HELLO_TIMEOUT_NS (30 * ZLB_NS_PER_SEC)
/* After FINISH: stopping the pollers and one snapshot; then killed. */
#define FINISH_TIMEOUT_NS (15 * ZLB_NS_PER_SEC)
/* A child that closed its end is exiting: this long to reap it before SIGKILL. */
#define REAP_TIMEOUT_NS (10 * ZLB_NS_PER_SEC)
/* A command waits this long for room in a child's socket (it reads every tick). */
#define CMD_SEND_TIMEOUT_NS (2 * ZLB_NS_PER_SEC)
/* A snapshot asked for at a stage boundary: this long for every process's answer, then the
 * latest of those that did not answer (a child snapshots in milliseconds unless starved). */
#define FRESH_WAIT_NS (250 * ZLB_NS_PER_MS)

typedef struct kid {
    uint32_t index;
    pid_t pid;
    int fd; /* -1 once it is gone */
    int *cpus;
    size_t ncpus;
    size_t npollers, ntargets;
    uint64_t connections; /* its shard's */
    /* reader thread only */
    uint8_t *rx;
    size_t rxlen, rxcap;
    zlb_work_snapshot_t scratch;
    /* under mu */
    zlb_work_snapshot_t latest; /* its last snapshot, kept when it dies */
    bool have, idle, final, gone, killed_by_us;
    uint64_t fresh, fresh_want; /* FRESH frames read; the count a src_snapshot_fresh waits for */
    int status;                 /* waitpid's */
} kid_t;

typedef struct procs {
    zlb_config_t *cfg;
    uint32_t n;
    bool cpus_shared;
    kid_t *kids;
    size_t npollers;
    uint32_t *poller_process;
    zlb_work_target_t *targets;
    char **names;
    zlb_tls_config_t embedded_tls;
    size_t ntargets;

    pthread_t reader;
    bool reader_started;
    int wakefd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;     /* under mu: the reader ends */
    char why[256]; /* under mu: the first process failure, "" if none */
} procs_t;

/* ---- reaping and the facts of an exit -------------------------------------------------------- */

static void describe_exit(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(out, len, "ended with status %#x", status);
}

/* Its end closed: it is exiting (or did). Waits a bounded time, then kills. */
static int reap(pid_t pid, bool *killed)
{
    int status = 0;
    uint64_t t0 = zlb_now_ns();
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return status;
        if (zlb_now_ns() - t0 > REAP_TIMEOUT_NS && !*killed) {
            kill(pid, SIGKILL);
            *killed = true;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Under mu. A child gone before its final snapshot: its last figures stay, the run is void. */
static void mark_gone(procs_t *p, kid_t *k)
{
    char what[96];
    k->gone = true;
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    describe_exit(k->status, what, sizeof(what));
    bool clean = k->final && WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0;
    if (!clean && !p->why[0]) {
        snprintf(p->why, sizeof(p->why),
                 "process %u (pid %d) %s before the run ended: its share of the run is missing "
                 "(its last snapshot is kept)",
                 k->index, (int)k->pid, what);
        zlb_log_error("%s", p->why);
    }
    pthread_cond_broadcast(&p->cv);
}

/* ---- the reader thread: every child's frames ------------------------------------------------- */

static void on_frame(procs_t *p, kid_t *k, uint8_t type, const uint8_t *data, size_t len)
{
    if (type != ZLB_PROCS_SNAP && type != ZLB_PROCS_FINAL && type != ZLB_PROCS_FRESH)
        return;
    bool idle;
    if (zlb_procs_decode(data, len, &k->scratch, &idle) != 0) {
        zlb_log_error("process %u sent a snapshot that does not read back (%zu bytes): ignored",
                      k->index, len);
        return;
    }
    pthread_mutex_lock(&p->mu);
    zlb_work_snapshot_t t = k->latest;
    k->latest = k->scratch;
    k->scratch = t;
    k->have = true;
    k->idle = idle;
    k->final |= type == ZLB_PROCS_FINAL;
    k->fresh += type == ZLB_PROCS_FRESH;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Reads what is there; false at EOF or on an error (the child is gone). */
static bool read_kid(procs_t *p, kid_t *k)
{
    bool open = true;
    while (open) {
        if (k->rxcap - k->rxlen < 65536) {
            k->rxcap = k->rxcap ? k->rxcap * 2 : 262144;
            k->rx = realloc(k->rx, k->rxcap);
            if (!k->rx)
                zlb_fatal("out of memory for process %u's snapshots", k->index);
        }
        ssize_t n = read(k->fd, k->rx + k->rxlen, k->rxcap - k->rxlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            open = false; /* what came before the end still counts: the final snapshot */
        else
            k->rxlen += (size_t)n;
    }
    size_t pos = 0;
    while (k->rxlen - pos >= 5) {
        uint32_t len;
        memcpy(&len, k->rx + pos, 4);
        if (len == 0)
            return false;
        if (k->rxlen - pos - 4 < len)
            break;
        on_frame(p, k, k->rx[pos + 4], k->rx + pos + 5, len - 1);
        pos += 4 + (size_t)len;
    }
    memmove(k->rx, k->rx + pos, k->rxlen - pos);
    k->rxlen -= pos;
    return open;
}

static void *reader_main(void *arg)
{
    procs_t *p = arg;
    zlb_thread_set_name("procs");
    struct pollfd *pfd = zlb_xcalloc(p->n + 1, sizeof(*pfd));
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool quit = p->quit;
        pthread_mutex_unlock(&p->mu);
        if (quit)
            break;
        pfd[0] = (struct pollfd){.fd = p->wakefd, .events = POLLIN};
        for (uint32_t i = 0; i < p->n; i++)
            pfd[i + 1] = (struct pollfd){.fd = p->kids[i].fd, .events = POLLIN};
        if (poll(pfd, p->n + 1, 1000) < 0 && errno != EINTR)
            zlb_fatal("poll: %s", strerror(errno));
        uint64_t v;
        if (pfd[0].revents && read(p->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            zlb_fatal("eventfd: %s", strerror(errno));
        for (uint32_t i = 0; i < p->n; i++) {
            kid_t *k = &p->kids[i];
            if (k->fd < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (read_kid(p, k))
                continue;
            bool killed = false;
            int status = reap(k->pid, &killed);
            pthread_mutex_lock(&p->mu);
            k->status = status;
            k->killed_by_us |= killed;
            mark_gone(p, k);
            pthread_mutex_unlock(&p->mu);
        }
    }
    free(pfd);
    return NULL;
}

/* ---- the source the run controller drives ---------------------------------------------------- */

/* Under mu (the reader closes a gone child's fd under it). Our end is non-blocking for the
 * reader: a command meets a full socket only when the child has not read for a long while, so
 * it waits for room a bounded time rather than leave half a frame. 0 or -errno. */
static int send_cmd(kid_t *k, const uint8_t *b, size_t n)
{
    uint64_t deadline = zlb_now_ns() + CMD_SEND_TIMEOUT_NS;
    while (n) {
        ssize_t w = write(k->fd, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -errno;
        uint64_t now = zlb_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = k->fd, .events = POLLOUT};
        if (poll(&pfd, 1, (int)((deadline - now) / ZLB_NS_PER_MS) + 1) < 0 && errno != EINTR)
            return -errno;
    }
    return 0;
}

static void to_all(procs_t *p, uint8_t cmd)
{
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        /* A child that died between our look and the write: EPIPE, and the reader reports it. */
        if (!k->gone && k->fd >= 0 && send_cmd(k, &cmd, 1) != 0)
            zlb_log_debug("process %u did not take command %c", k->index, cmd);
    }
    pthread_mutex_unlock(&p->mu);
}

/* The run's live values: each process gets its exact share, as zlb_config_apply_shard gave it
 * its share of the config (the shares add up to v). Within a --shard, this parent's values are
 * its own part, split over its processes by index and count here. */
static void src_steer(void *ctx, const zlb_work_live_t *v)
{
    procs_t *p = ctx;
    uint8_t frame[ZLB_PROCS_CMD_FRAME_MAX];
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        zlb_work_live_t share;
        zlb_procs_live_share(p->cfg->workload.type, v, i, p->n, &share);
        k->connections = share.connections; /* its goal from now on (the report's) */
        if (k->gone || k->fd < 0)
            continue;
        size_t len = zlb_procs_live_encode(&share, frame);
        int rc = send_cmd(k, frame, len);
        if (rc != 0) /* gone (the reader says so), or stuck with half a frame: it is lost */
            zlb_log_error("process %u did not take the run's new values: %s", k->index,
                          strerror(-rc));
    }
    pthread_mutex_unlock(&p->mu);
}

static void src_snapshot_init(void *ctx, zlb_work_snapshot_t *s, const uint32_t **poller_process)
{
    procs_t *p = ctx;
    zlb_procs_snapshot_alloc(s, p->npollers, p->ntargets);
    *poller_process = p->poller_process;
}

static int src_snapshot(void *ctx, zlb_work_snapshot_t *s)
{
    procs_t *p = ctx;
    bool all_reached = true;
    uint64_t taken = 0, first = 0, reached = 0, backlog = 0;
    memset(s->target, 0, s->ntargets * sizeof(*s->target));
    pthread_mutex_lock(&p->mu);
    size_t row = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        const zlb_work_snapshot_t *ks = &k->latest;
        if (!k->have) {
            all_reached = false;
            row += k->npollers;
            continue;
        }
        for (size_t j = 0; j < k->npollers; j++, row++) {
            zlb_stats_copy(&s->poller[row], &ks->poller[j]);
            s->info[row] = ks->info[j];
        }
        for (size_t t = 0; t < s->ntargets && t < ks->ntargets; t++)
            zlb_counters_add(&s->target[t], &ks->target[t]);
        taken = ZLB_MAX(taken, ks->taken_ns);
        if (ks->first_attempt_ns && (!first || ks->first_attempt_ns < first))
            first = ks->first_attempt_ns;
        /* The whole count was open once every shard's was (the last one's moment). */
        if (ks->target_reached_ns)
            reached = ZLB_MAX(reached, ks->target_reached_ns);
        else
            all_reached = false;
        backlog += ks->scheduler_backlog;
    }
    pthread_mutex_unlock(&p->mu);
    zlb_stats_copy(&s->total, &s->poller[0]);
    for (size_t i = 1; i < s->npollers; i++)
        zlb_stats_add(&s->total, &s->poller[i]);
    s->taken_ns = taken ? taken : zlb_now_ns();
    s->first_attempt_ns = first;
    s->target_reached_ns = all_reached ? reached : 0;
    s->scheduler_backlog = backlog;
    return 0;
}

/* At a stage boundary: every process's figures of now, not of its last tick (up to 100 ms
 * old), so that a stage's window ends where one process's would. Bounded: a process that does
 * not answer in FRESH_WAIT_NS counts with its latest. */
static int src_snapshot_fresh(void *ctx, zlb_work_snapshot_t *s)
{
    procs_t *p = ctx;
    static const uint8_t cmd = ZLB_PROCS_CMD_SNAP_NOW;
    uint64_t deadline = zlb_now_ns() + FRESH_WAIT_NS;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        k->fresh_want = k->fresh;
        if (!k->gone && k->fd >= 0 && send_cmd(k, &cmd, 1) == 0)
            k->fresh_want = k->fresh + 1;
    }
    for (;;) {
        bool all = true;
        for (uint32_t i = 0; i < p->n; i++)
            all &= p->kids[i].gone || p->kids[i].fresh >= p->kids[i].fresh_want;
        uint64_t now = zlb_now_ns();
        if (all || now >= deadline)
            break;
        uint64_t until = zlb_wall_ns() + ZLB_MIN(deadline - now, 20 * ZLB_NS_PER_MS);
        struct timespec ts = {.tv_sec = (time_t)(until / ZLB_NS_PER_SEC),
                              .tv_nsec = (long)(until % ZLB_NS_PER_SEC)};
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    uint32_t late = 0, first_late = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        const kid_t *k = &p->kids[i];
        if (!k->gone && k->fresh < k->fresh_want && late++ == 0)
            first_late = k->index;
    }
    pthread_mutex_unlock(&p->mu);
    /* Said, not hidden (a boundary is rare: one line per stage at most). */
    if (late)
        zlb_log_warn("%u process(es), process %u first, did not send their figures within %d ms "
                     "of a stage boundary or the stop: the latest they sent count instead",
                     late, first_late, (int)(FRESH_WAIT_NS / ZLB_NS_PER_MS));
    return src_snapshot(ctx, s);
}

static int src_start(void *ctx)
{
    to_all(ctx, ZLB_PROCS_CMD_START);
    return 0;
}

static void src_stop_opening(void *ctx)
{
    to_all(ctx, ZLB_PROCS_CMD_STOP_OPENING);
}

static void src_close_all(void *ctx)
{
    to_all(ctx, ZLB_PROCS_CMD_CLOSE_ALL);
}

static void src_reset_lag_max(void *ctx)
{
    to_all(ctx, ZLB_PROCS_CMD_RESET_LAG);
}

static bool src_idle(void *ctx)
{
    procs_t *p = ctx;
    bool idle = true;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++)
        idle &= p->kids[i].gone || (p->kids[i].have && p->kids[i].idle);
    pthread_mutex_unlock(&p->mu);
    return idle;
}

/* Waits under mu until every child is gone or the deadline passes; true if all are gone. */
static bool wait_all_gone(procs_t *p, uint64_t deadline)
{
    for (;;) {
        bool all = true;
        for (uint32_t i = 0; i < p->n; i++)
            all &= p->kids[i].gone;
        if (all)
            return true;
        uint64_t now = zlb_now_ns();
        if (now >= deadline)
            return false;
        uint64_t until = zlb_wall_ns() + ZLB_MIN(deadline - now, 100 * ZLB_NS_PER_MS);
        struct timespec ts = {.tv_sec = (time_t)(until / ZLB_NS_PER_SEC),
                              .tv_nsec = (long)(until % ZLB_NS_PER_SEC)};
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
}

static void src_finish(void *ctx)
{
    procs_t *p = ctx;
    to_all(p, ZLB_PROCS_CMD_FINISH);
    pthread_mutex_lock(&p->mu);
    if (!wait_all_gone(p, zlb_now_ns() + FINISH_TIMEOUT_NS)) {
        for (uint32_t i = 0; i < p->n; i++) {
            kid_t *k = &p->kids[i];
            if (k->gone)
                continue;
            zlb_log_error("process %u (pid %d) did not finish in %d s: killing it", k->index,
                          (int)k->pid, (int)(FINISH_TIMEOUT_NS / ZLB_NS_PER_SEC));
            k->killed_by_us = true;
            kill(k->pid, SIGKILL);
        }
        wait_all_gone(p, zlb_now_ns() + REAP_TIMEOUT_NS + ZLB_NS_PER_SEC);
    }
    pthread_mutex_unlock(&p->mu);
}

static const char *src_failed(void *ctx)
{
    procs_t *p = ctx;
    pthread_mutex_lock(&p->mu);
    const char *why = p->why[0] ? p->why : NULL;
    pthread_mutex_unlock(&p->mu);
    return why;
}

static void src_report(void *ctx, json_t *report)
{
    procs_t *p = ctx;
    json_t *list = json_array();
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        json_t *cpus = json_array();
        for (size_t c = 0; c < k->ncpus; c++)
            json_array_append_new(cpus, json_integer(k->cpus[c]));
        char what[96] = "running";
        if (k->gone)
            describe_exit(k->status, what, sizeof(what));
        bool ok = k->gone && k->final && WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0;
        json_t *row = json_pack(
            "{s:i, s:i, s:o, s:{s:i, s:i}, s:I, s:I, s:s, s:s, s:b, s:b}", "index", (int)k->index,
            "pid", (int)k->pid, "cpus", cpus, "shard", "index", (int)k->index, "count", (int)p->n,
            "connections_goal", (json_int_t)k->connections, "pollers", (json_int_t)k->npollers,
            "state",
            !k->gone   ? "running"
            : ok       ? "ok"
            : k->final ? "finished_badly"
                       : "failed",
            "exit", what, "final_snapshot", k->final, "killed_by_parent", k->killed_by_us);
        json_object_set_new(row, "exit_status",
                            k->gone && WIFEXITED(k->status) ? json_integer(WEXITSTATUS(k->status))
                                                            : json_null());
        json_object_set_new(row, "signal",
                            k->gone && WIFSIGNALED(k->status) ? json_integer(WTERMSIG(k->status))
                                                              : json_null());
        json_object_set_new(
            row, "connections",
            zlb_counters_to_json(k->have ? &k->latest.total.c : &(zlb_counters_t){0},
                                 k->connections));
        json_array_append_new(list, row);
    }
    json_t *o = json_pack("{s:i, s:b, s:o}", "count", (int)p->n, "cpus_shared", p->cpus_shared,
                          "list", list);
    if (p->why[0])
        json_object_set_new(o, "failure", json_string(p->why));
    pthread_mutex_unlock(&p->mu);
    json_object_set_new(report, "processes", o);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static size_t allowed_cpus(const zlb_config_t *cfg, int **out)
{
    if (cfg->pollers.ncpus) {
        *out = zlb_xcalloc(cfg->pollers.ncpus, sizeof(int));
        memcpy(*out, cfg->pollers.cpus, cfg->pollers.ncpus * sizeof(int));
        return cfg->pollers.ncpus;
    }
    cpu_set_t set;
    size_t n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        CPU_ZERO(&set);
    *out = zlb_xcalloc(CPU_SETSIZE, sizeof(int));
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            (*out)[n++] = c;
    if (n == 0)
        (*out)[n++] = 0;
    return n;
}

/* The targets as the parent's reports name them: the config's, or the built-in target that
 * each process runs for itself. */
static void build_targets(procs_t *p)
{
    const zlb_config_t *cfg = p->cfg;
    p->ntargets = cfg->ntargets ? cfg->ntargets : 1;
    p->targets = zlb_xcalloc(p->ntargets, sizeof(*p->targets));
    p->names = zlb_xcalloc(p->ntargets, sizeof(char *));
    if (!cfg->ntargets) {
        p->names[0] = zlb_xstrdup("built-in target (one per process)");
        p->embedded_tls = (zlb_tls_config_t){.enabled = cfg->embedded_target.tls, .verify = true};
        p->targets[0] = (zlb_work_target_t){
            .host = "127.0.0.1", .weight = 1, .tls = &p->embedded_tls, .name = p->names[0]};
        return;
    }
    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        char name[320];
        snprintf(name, sizeof(name), strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host,
                 (unsigned)t->port);
        p->names[i] = zlb_xstrdup(name);
        p->targets[i] = (zlb_work_target_t){.host = t->host,
                                            .port = t->port,
                                            .weight = t->weight ? t->weight : 1,
                                            .tls = &t->tls,
                                            .name = p->names[i]};
    }
}

/* Waits for every child's HELLO (its set-up is done). 0, or the exit code to end with. */
static int await_hello(procs_t *p)
{
    uint64_t deadline = zlb_now_ns() + HELLO_TIMEOUT_NS;
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        uint8_t buf[5 + 16];
        size_t got = 0;
        while (got < sizeof(buf)) {
            uint64_t now = zlb_now_ns();
            int ms = now < deadline ? (int)((deadline - now) / ZLB_NS_PER_MS) + 1 : 0;
            struct pollfd pfd = {.fd = k->fd, .events = POLLIN};
            int r = poll(&pfd, 1, ms);
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0) {
                zlb_log_error("process %u (pid %d) did not finish its set-up in %d s", k->index,
                              (int)k->pid, (int)(HELLO_TIMEOUT_NS / ZLB_NS_PER_SEC));
                return ZLB_EXIT_INTERNAL;
            }
            ssize_t n = read(k->fd, buf + got, sizeof(buf) - got);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0) {
                bool killed = false;
                int status = reap(k->pid, &killed);
                char what[96];
                describe_exit(status, what, sizeof(what));
                zlb_log_error("process %u (pid %d) %s during its set-up (its log lines above "
                              "say why)",
                              k->index, (int)k->pid, what);
                k->gone = true;
                return WIFEXITED(status) && WEXITSTATUS(status) == ZLB_EXIT_USAGE
                           ? ZLB_EXIT_USAGE
                           : ZLB_EXIT_INTERNAL;
            }
            got += (size_t)n;
        }
        uint32_t len;
        uint64_t hello[2];
        memcpy(&len, buf, 4);
        memcpy(hello, buf + 5, sizeof(hello));
        if (len != 17 || buf[4] != ZLB_PROCS_HELLO || hello[1] != p->ntargets) {
            zlb_log_error("process %u answered its set-up with something else", k->index);
            return ZLB_EXIT_INTERNAL;
        }
        k->npollers = hello[0];
        k->ntargets = hello[1];
    }
    return 0;
}

static void kill_all(procs_t *p)
{
    for (uint32_t i = 0; i < p->n; i++) {
        kid_t *k = &p->kids[i];
        if (k->pid > 0 && !k->gone) {
            kill(k->pid, SIGKILL);
            bool killed = true;
            k->status = reap(k->pid, &killed);
            k->gone = true;
        }
    }
}

static void destroy(procs_t *p)
{
    if (p->reader_started) {
        pthread_mutex_lock(&p->mu);
        p->quit = true;
        pthread_mutex_unlock(&p->mu);
        uint64_t one = 1;
        if (write(p->wakefd, &one, sizeof(one)) < 0)
            zlb_log_warn("cannot wake the snapshot reader: %s", strerror(errno));
        pthread_join(p->reader, NULL);
    }
    kill_all(p);
    for (uint32_t i = 0; p->kids && i < p->n; i++) {
        kid_t *k = &p->kids[i];
        if (k->fd >= 0)
            close(k->fd);
        free(k->cpus);
        free(k->rx);
        zlb_work_snapshot_dispose(&k->latest);
        zlb_work_snapshot_dispose(&k->scratch);
    }
    free(p->kids);
    free(p->poller_process);
    for (size_t i = 0; p->names && i < p->ntargets; i++)
        free(p->names[i]);
    free(p->names);
    free(p->targets);
    if (p->wakefd >= 0)
        close(p->wakefd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

static uint32_t resolve_count(zlb_config_t *cfg)
{
    uint32_t n = cfg->processes;
    if (n == ZLB_PROCESSES_AUTO) {
        struct rlimit rl;
        uint64_t limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY
                             ? (uint64_t)rl.rlim_max
                             : 1048576;
        n = zlb_procs_auto_count(cfg->connections, cfg->embedded_target.enabled, limit);
        zlb_log_info("processes auto: %u process%s for %llu connections (%s per connection, an "
                     "open-files limit of %llu per process)",
                     n, n == 1 ? "" : "es", (unsigned long long)cfg->connections,
                     cfg->embedded_target.enabled ? "2 files: client and built-in target"
                                                  : "1 file",
                     (unsigned long long)limit);
    }
    /* A staged run may start from no connection: its peak is what gets split. */
    uint64_t conns = zlb_config_peak_connections(cfg);
    if (n > conns) {
        zlb_log_warn("%u processes for %llu connections: using %llu (one connection each)", n,
                     (unsigned long long)conns, (unsigned long long)conns);
        n = (uint32_t)conns;
    }
    return n ? n : 1;
}

int zlb_procs_run(zlb_config_t *cfg, const zlb_run_opts_t *opts)
{
    uint32_t n = resolve_count(cfg);
    if (n <= 1)
        return zlb_run(cfg, opts);
    if (cfg->embedded_target.enabled && !strstr(cfg->embedded_target.listen, ":0"))
        zlb_log_warn("each process runs its own built-in target on %s: with a fixed port only "
                     "one can bind it (use port 0)",
                     cfg->embedded_target.listen);
    procs_t p = {.cfg = cfg, .n = n, .wakefd = -1};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    p.kids = zlb_xcalloc(n, sizeof(*p.kids));
    int *all;
    size_t nall = allowed_cpus(cfg, &all);
    build_targets(&p);
    int code = ZLB_EXIT_INTERNAL;

    fflush(NULL); /* nothing buffered is written twice */
    pid_t parent = getpid();
    for (uint32_t i = 0; i < n; i++) {
        kid_t *k = &p.kids[i];
        k->index = i;
        k->fd = -1;
        k->cpus = zlb_xcalloc(nall, sizeof(int));
        bool shared;
        k->ncpus = zlb_procs_cpus(all, nall, n, i, k->cpus, &shared);
        p.cpus_shared |= shared;
        k->connections = zlb_config_shard_u64(cfg->connections, i, n);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            zlb_log_error("socketpair: %s", strerror(errno));
            goto out;
        }
        pid_t pid = fork();
        if (pid < 0) {
            zlb_log_error("cannot start process %u: fork: %s", i, strerror(errno));
            close(sv[0]);
            close(sv[1]);
            goto out;
        }
        if (pid == 0) {
            close(sv[0]);
            for (uint32_t j = 0; j < i; j++)
                close(p.kids[j].fd);
            zlb_procs_child(cfg, i, n, sv[1], k->cpus, k->ncpus, parent);
        }
        close(sv[1]);
        k->pid = pid;
        k->fd = sv[0];
    }
    if (p.cpus_shared)
        zlb_log_warn("%u processes share %zu CPU%s round-robin: their pollers compete for them", n,
                     nall, nall == 1 ? "" : "s");
    code = await_hello(&p);
    if (code != 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        kid_t *k = &p.kids[i];
        zlb_procs_snapshot_alloc(&k->latest, k->npollers, k->ntargets);
        zlb_procs_snapshot_alloc(&k->scratch, k->npollers, k->ntargets);
        p.npollers += k->npollers;
        char cpus[256] = "";
        size_t at = 0;
        for (size_t c = 0; c < k->ncpus && at < sizeof(cpus) - 12; c++)
            at += (size_t)snprintf(cpus + at, sizeof(cpus) - at, "%s%d", c ? "," : "", k->cpus[c]);
        zlb_log_info("process %u: pid %d, shard %u/%u, %llu connections, %zu poller%s on CPU %s", i,
                     (int)k->pid, i, n, (unsigned long long)k->connections, k->npollers,
                     k->npollers == 1 ? "" : "s", cpus);
    }
    p.poller_process = zlb_xcalloc(p.npollers ? p.npollers : 1, sizeof(uint32_t));
    for (uint32_t i = 0, row = 0; i < n; i++)
        for (size_t j = 0; j < p.kids[i].npollers; j++)
            p.poller_process[row++] = i;
    p.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p.wakefd < 0) {
        zlb_log_error("eventfd: %s", strerror(errno));
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        int fl = fcntl(p.kids[i].fd, F_GETFL);
        fcntl(p.kids[i].fd, F_SETFL, fl | O_NONBLOCK);
    }
    if (pthread_create(&p.reader, NULL, reader_main, &p) != 0) {
        zlb_log_error("cannot start the snapshot reader");
        goto out;
    }
    p.reader_started = true;

    zlb_run_source_t src = {
        .ctx = &p,
        .targets = p.targets,
        .ntargets = p.ntargets,
        .snapshot_init = src_snapshot_init,
        .snapshot = src_snapshot,
        .snapshot_fresh = src_snapshot_fresh,
        .start = src_start,
        .stop_opening = src_stop_opening,
        .close_all = src_close_all,
        .idle = src_idle,
        .reset_lag_max = src_reset_lag_max,
        .steer = src_steer,
        .finish = src_finish,
        .failed = src_failed,
        .report = src_report,
    };
    zlb_run_opts_t o = *opts;
    o.source = &src;
    code = zlb_run(cfg, &o);
out:
    destroy(&p);
    free(all);
    return code;
}
