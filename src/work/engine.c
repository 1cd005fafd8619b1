/* engine.c -- the engine's public face: create/start/stop/close_all/snapshot/destroy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "work/work_internal.h"

#define FD_MARGIN 64
#define SNAPSHOT_WAIT_NS (100 * ZLB_NS_PER_MS)
#define SNAPSHOT_GIVE_UP_NS (30 * ZLB_NS_PER_SEC)

static int clamp_int(uint64_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int)v;
}

static int ns_to_s(uint64_t ns)
{
    /* The kernel's keepalive knobs are whole seconds; a non-zero setting never rounds to 0. */
    return ns ? ZLB_MAX(1, clamp_int(ns / ZLB_NS_PER_SEC)) : 0;
}

static void snap_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded);

static void fill_sockopts(const zlb_config_t *cfg, zlb_net_sockopts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->nodelay = cfg->socket.nodelay;
    o->sndbuf = clamp_int(cfg->socket.sndbuf);
    o->rcvbuf = clamp_int(cfg->socket.rcvbuf);
    o->close_rst = cfg->socket.close == ZLB_CLOSE_RST;
    o->keepalive = cfg->socket.keepalive;
    o->keepalive_idle_s = ns_to_s(cfg->socket.keepalive_idle_ns);
    o->keepalive_interval_s = ns_to_s(cfg->socket.keepalive_interval_ns);
    o->keepalive_count = cfg->socket.keepalive_count;
}

/* One client context per TLS target, built here, off the pollers: loading a CA store is file
 * I/O and parsing, and a config OpenSSL refuses is a start-up error, not a failure per
 * connection. */
static int make_tls_clients(zlb_work_t *e)
{
    char err[256];
    int r;

    e->tls = zlb_xcalloc(e->ntargets, sizeof(*e->tls));
    for (size_t i = 0; i < e->ntargets; i++) {
        const zlb_work_target_t *t = &e->targets[i];
        const char *name = t->name ? t->name : t->host;

        if (!t->tls || !t->tls->enabled)
            continue;
        zlb_tls_config_t tc = *t->tls;
        char *alpn[1] = {(char *)e->wl->alpn};
        if (!tc.nalpn && e->wl->alpn) {
            /* The workload's protocol, offered unless the config names its own. */
            tc.alpn = alpn;
            tc.nalpn = 1;
        }
        r = zlb_tls_client_create(&tc, t->host, &e->tls[i], err, sizeof(err));
        if (r < 0) {
            zlb_log_error("target %s: TLS: %s", name, err[0] ? err : strerror(-r));
            return r == -ENOMEM ? r : -EINVAL;
        }
        if (!t->tls->verify)
            zlb_log_warn("target %s: TLS certificate verification is off: the peer is not "
                         "authenticated",
                         name);
        e->dests[i].tls = e->tls[i];
        e->dests[i].tls_handshake_timeout_ns = t->tls->handshake_timeout_ns;
        e->any_tls = true;
    }
    return 0;
}

static void raise_fd_limit(const zlb_config_t *cfg)
{
    long lim = zlb_net_raise_nofile();

    if (lim < 0)
        zlb_log_warn("could not raise RLIMIT_NOFILE: %s", strerror((int)-lim));
    else if (zlb_config_peak_connections(cfg) + FD_MARGIN > (uint64_t)lim)
        zlb_log_warn("%llu connections need more file descriptors than RLIMIT_NOFILE allows "
                     "(%ld); expect fd_limit failures (raise the hard limit: ulimit -Hn)",
                     (unsigned long long)zlb_config_peak_connections(cfg), lim);
}

int zlb_work_create(const zlb_config_t *cfg, const zlb_work_target_t *targets, size_t ntargets,
                    zlb_pool_t *pool, zlb_work_t **out)
{
    zlb_work_t *e;
    bool need_resolver = false;
    int r;

    *out = NULL;
    if (!cfg || !targets || !ntargets || ntargets > UINT16_MAX || !pool || zlb_pool_size(pool) < 1)
        return -EINVAL;
    for (size_t i = 0; i < ntargets; i++) {
        if (!targets[i].host || !targets[i].weight)
            return -EINVAL;
        /* The same test the connection layer makes (zlb_net_addr_literal): a zone naming no
         * interface goes to the resolver like a name. */
        struct sockaddr_storage ss;
        socklen_t sslen;
        if (zlb_addr_literal(targets[i].host, 0, &ss, &sslen) != 0)
            need_resolver = true;
    }
    if (!zlb_workload_ops(cfg->workload.type))
        return -EINVAL;

    e = zlb_xcalloc(1, sizeof(*e));
    e->cfg = cfg;
    e->targets = targets;
    e->ntargets = ntargets;
    e->pool = pool;
    e->npollers = zlb_pool_size(pool);
    e->wl = zlb_workload_ops(cfg->workload.type);
    pthread_mutex_init(&e->snap_call, NULL);
    pthread_mutex_init(&e->steer_mu, NULL);
    zlb_work_live_from_config(cfg, &e->live);
    e->pub = e->live;
    pthread_mutex_init(&e->snap_mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&e->snap_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    raise_fd_limit(cfg);
    fill_sockopts(cfg, &e->sockopts);

    e->dests = zlb_xcalloc(ntargets, sizeof(*e->dests));
    for (size_t i = 0; i < ntargets; i++) {
        e->dests[i].host = targets[i].host;
        e->dests[i].port = targets[i].port;
        e->swrr_total += targets[i].weight;
    }
    r = make_tls_clients(e);
    if (r < 0)
        goto fail;
    if (cfg->nsource) {
        e->sources = zlb_xcalloc(cfg->nsource, sizeof(*e->sources));
        for (size_t i = 0; i < cfg->nsource; i++) {
            r = zlb_net_addr_from_sockaddr((const struct sockaddr *)&cfg->source_addrs[i],
                                           sizeof(cfg->source_addrs[i]), &e->sources[i]);
            if (r < 0) {
                zlb_log_error("source address %zu is neither IPv4 nor IPv6", i);
                goto fail;
            }
            /* The port is picked at connect time (IP_BIND_ADDRESS_NO_PORT). */
            zlb_net_addr_set_port(&e->sources[i], 0);
        }
        e->nsources = cfg->nsource;
    }
    if (e->wl->init) {
        size_t size = 0;
        r = e->wl->init(e, &size);
        if (r < 0)
            goto fail;
        e->ws_size = (size + 15) & ~(size_t)15;
    }
    if (need_resolver) {
        r = zlb_resolver_create(2, cfg->dns_ttl_ns, &e->resolver);
        if (r < 0) {
            zlb_log_error("cannot start the resolver threads: %s", strerror(-r));
            goto fail;
        }
    }
    e->workers = zlb_xcalloc((size_t)e->npollers, sizeof(*e->workers));
    for (int i = 0; i < e->npollers; i++) {
        r = zlb_worker_create(e, i, &e->workers[i]);
        if (r < 0)
            goto fail;
        zlb_task_init(&e->workers[i]->snap_task, snap_run);
        zlb_loop_set_data(e->workers[i]->loop, e->workers[i]);
    }
    r = zlb_sched_init(e);
    if (r < 0) {
        zlb_log_error("cannot create the scheduler loop: %s", strerror(-r));
        goto fail;
    }
    *out = e;
    return 0;
fail:
    zlb_work_destroy(e);
    return r;
}

int zlb_work_start(zlb_work_t *e)
{
    return zlb_sched_start(e);
}

void zlb_work_live_from_config(const zlb_config_t *cfg, zlb_work_live_t *out)
{
    *out = (zlb_work_live_t){
        .connections = cfg->connections,
        .connect_rate = cfg->connect_rate,
        .close_rate = cfg->close_rate,
        .rate = zlb_config_workload_rate(cfg),
        .paused = false,
    };
}

void zlb_work_get_live(zlb_work_t *e, zlb_work_live_t *out)
{
    *out = e->live;
}

void zlb_work_steer(zlb_work_t *e, const zlb_work_live_t *v)
{
    if (atomic_load_explicit(&e->stop_opening, memory_order_relaxed))
        return;
    pthread_mutex_lock(&e->steer_mu);
    e->sched_delta += (int64_t)v->connections - (int64_t)e->live.connections;
    e->pub = *v;
    pthread_mutex_unlock(&e->steer_mu);
    e->live = *v;
    zlb_sched_post_steer(e);
    for (int i = 0; i < e->npollers; i++)
        zlb_worker_post_steer(e->workers[i]);
}

void zlb_work_stop_opening(zlb_work_t *e)
{
    atomic_store_explicit(&e->stop_opening, true, memory_order_relaxed);
}

void zlb_work_close_all(zlb_work_t *e)
{
    zlb_work_stop_opening(e);
    for (int i = 0; i < e->npollers; i++)
        zlb_worker_post_close(e->workers[i]);
}

bool zlb_work_idle(zlb_work_t *e)
{
    for (int i = 0; i < e->npollers; i++)
        if (atomic_load_explicit(&e->workers[i]->busy, memory_order_relaxed))
            return false;
    return true;
}

void zlb_work_snapshot_init(zlb_work_t *e, zlb_work_snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    s->npollers = (size_t)e->npollers;
    s->ntargets = e->ntargets;
    zlb_stats_init(&s->total);
    s->poller = zlb_xcalloc(s->npollers, sizeof(*s->poller));
    for (size_t i = 0; i < s->npollers; i++)
        zlb_stats_init(&s->poller[i]);
    s->info = zlb_xcalloc(s->npollers, sizeof(*s->info));
    s->target = zlb_xcalloc(s->ntargets, sizeof(*s->target));
}

void zlb_work_snapshot_dispose(zlb_work_snapshot_t *s)
{
    if (!s)
        return;
    zlb_stats_dispose(&s->total);
    for (size_t i = 0; s->poller && i < s->npollers; i++)
        zlb_stats_dispose(&s->poller[i]);
    free(s->poller);
    free(s->info);
    free(s->target);
    memset(s, 0, sizeof(*s));
}

static void snap_run(zlb_loop_t *loop, zlb_task_t *t, bool discarded)
{
    zlb_worker_t *w = ZLB_CONTAINER_OF(t, zlb_worker_t, snap_task);
    zlb_work_t *e;

    (void)loop;
    atomic_store_explicit(&w->snap_queued, false, memory_order_release);
    if (!discarded) {
        e = w->e;
        /* The requester's lock, taken here only: this is the cold path. A request that gave up
         * waiting (gen moved on, or no destination) is ignored. */
        pthread_mutex_lock(&e->snap_mu);
        if (e->snap_dst && w->snap_gen == e->snap_gen && w->snap_done != e->snap_gen) {
            zlb_worker_copy_stats(w, e->snap_dst);
            w->snap_done = e->snap_gen;
            e->snap_count++;
            pthread_cond_broadcast(&e->snap_cv);
        }
        pthread_mutex_unlock(&e->snap_mu);
    }
    zlb_worker_unref(w);
}

int zlb_work_snapshot(zlb_work_t *e, zlb_work_snapshot_t *s)
{
    struct timespec deadline;
    uint64_t dl;
    int rc = 0;

    if (s->npollers != (size_t)e->npollers || s->ntargets != e->ntargets)
        return -EINVAL;
    pthread_mutex_lock(&e->snap_call);
    pthread_mutex_lock(&e->snap_mu);
    e->snap_gen++;
    e->snap_dst = s;
    e->snap_count = 0;
    memset(s->target, 0, s->ntargets * sizeof(*s->target));
    for (int i = 0; i < e->npollers; i++) {
        zlb_worker_t *w = e->workers[i];
        if (!zlb_loop_running(w->loop)) {
            /* Nothing runs on a stopped poller (the pool was stopped): its state is ours to
             * read, and a task posted to it would never run. */
            zlb_worker_copy_stats(w, s);
            w->snap_done = e->snap_gen;
            e->snap_count++;
            continue;
        }
        w->snap_gen = e->snap_gen;
        /* A task still queued from a request that timed out answers this one instead. */
        if (!atomic_exchange_explicit(&w->snap_queued, true, memory_order_acq_rel)) {
            zlb_worker_ref(w);
            zlb_loop_post(w->loop, &w->snap_task);
        }
    }
    /* Wait in slices. A poller whose loop returned after the look above runs nothing any more:
     * its state is read directly. A poller that is merely slow (one long close_all, thousands of
     * handshake steps in one batch) is waited for, up to a limit. */
    for (uint64_t waited = 0; e->snap_count < (size_t)e->npollers; waited += SNAPSHOT_WAIT_NS) {
        if (waited >= SNAPSHOT_GIVE_UP_NS) {
            zlb_log_warn("a poller did not answer the snapshot in %llu s",
                         (unsigned long long)(SNAPSHOT_GIVE_UP_NS / ZLB_NS_PER_SEC));
            rc = -ETIMEDOUT;
            break;
        }
        dl = zlb_now_ns() + SNAPSHOT_WAIT_NS;
        deadline.tv_sec = (time_t)(dl / ZLB_NS_PER_SEC);
        deadline.tv_nsec = (long)(dl % ZLB_NS_PER_SEC);
        while (e->snap_count < (size_t)e->npollers) {
            if (pthread_cond_timedwait(&e->snap_cv, &e->snap_mu, &deadline) == ETIMEDOUT)
                break;
        }
        for (int i = 0; i < e->npollers; i++) {
            zlb_worker_t *w = e->workers[i];
            if (w->snap_done == e->snap_gen || zlb_loop_running(w->loop))
                continue;
            zlb_log_debug("poller %d is not running: snapshot read directly", i);
            zlb_worker_copy_stats(w, s);
            w->snap_done = e->snap_gen;
            e->snap_count++;
        }
    }
    e->snap_dst = NULL;
    pthread_mutex_unlock(&e->snap_mu);

    zlb_stats_copy(&s->total, &s->poller[0]);
    for (size_t i = 1; i < s->npollers; i++)
        zlb_stats_add(&s->total, &s->poller[i]);
    zlb_pool_info(e->pool, s->info);
    s->taken_ns = zlb_now_ns();
    s->first_attempt_ns = atomic_load_explicit(&e->first_attempt_ns, memory_order_relaxed);
    s->target_reached_ns = atomic_load_explicit(&e->target_reached_ns, memory_order_relaxed);
    s->scheduler_backlog = atomic_load_explicit(&e->backlog, memory_order_relaxed);
    pthread_mutex_unlock(&e->snap_call);
    return rc;
}

void zlb_work_destroy(zlb_work_t *e)
{
    if (!e)
        return;
    zlb_work_stop_opening(e);
    zlb_sched_dispose(e);
    /* Joined before the workers go: a lookup finishing now still posts to a live loop. */
    zlb_resolver_destroy(e->resolver);
    for (int i = 0; e->workers && i < e->npollers; i++) {
        if (!e->workers[i])
            continue;
        if (zlb_loop_data(e->workers[i]->loop) == e->workers[i])
            zlb_loop_set_data(e->workers[i]->loop, NULL);
        zlb_worker_destroy(e->workers[i]);
    }
    free(e->workers);
    /* After the workers: every SSL and session cache made from these is gone. */
    for (size_t i = 0; e->tls && i < e->ntargets; i++)
        zlb_tls_client_destroy(e->tls[i]);
    free(e->tls);
    free(e->sources);
    free(e->dests);
    if (e->wl && e->wl->dispose)
        e->wl->dispose(e);
    pthread_mutex_destroy(&e->snap_call);
    pthread_mutex_destroy(&e->steer_mu);
    pthread_mutex_destroy(&e->snap_mu);
    pthread_cond_destroy(&e->snap_cv);
    free(e);
}
