/* engine.c -- a run's engine without its controller, for the shard processes of --processes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "run/run_internal.h"

/* The set-up functions take a runner; a headless engine is a runner whose controller parts
 * (control port, signals, snapshots) are never made. */
struct zlb_run_engine {
    zlb_runner_t r;
};

int zlb_run_engine_create(const zlb_config_t *cfg, zlb_run_engine_t **out)
{
    zlb_run_engine_t *h = zlb_xcalloc(1, sizeof(*h));
    zlb_runner_t *r = &h->r;
    r->cfg = cfg;
    r->sigfd = r->stopfd = -1;
    *out = NULL;
    uint64_t fds = cfg->connections * (cfg->embedded_target.enabled ? 2 : 1) + 256;
    int rc = zlb_fd_table_reserve((unsigned)ZLB_MIN(fds, (uint64_t)UINT32_MAX));
    if (rc != 0)
        zlb_log_warn("cannot reserve %llu file descriptors: %s", (unsigned long long)fds,
                     strerror(-rc));
    zlb_runner_warn_fd_limit(cfg, fds);
    rc = cfg->embedded_target.enabled ? zlb_runner_start_embedded_target(r) : 0;
    if (rc == 0)
        rc = zlb_runner_build_targets(r);
    if (rc == 0)
        rc = zlb_runner_make_pool(r);
    if (rc == 0) {
        rc = zlb_work_create(cfg, r->targets, r->ntargets, r->pool, &r->engine);
        if (rc != 0)
            zlb_log_error("cannot create the connection engine: %s", strerror(-rc));
    }
    if (rc != 0) {
        zlb_run_engine_destroy(h);
        return rc;
    }
    *out = h;
    return 0;
}

zlb_work_t *zlb_run_engine_work(zlb_run_engine_t *h)
{
    return h->r.engine;
}

zlb_pool_t *zlb_run_engine_pool(zlb_run_engine_t *h)
{
    return h->r.pool;
}

const zlb_work_target_t *zlb_run_engine_targets(zlb_run_engine_t *h, size_t *n)
{
    *n = h->r.ntargets;
    return h->r.targets;
}

void zlb_run_engine_destroy(zlb_run_engine_t *h)
{
    if (!h)
        return;
    zlb_runner_teardown(&h->r);
    free(h);
}
