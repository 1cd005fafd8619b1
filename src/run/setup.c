/* setup.c -- a run's set-up and tear-down: built-in target, targets, control port, pool. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/control.h"
#include "dash/dash.h"
#include "core/core.h"
#include "run/run_internal.h"
#include "serve/serve.h"

static void wake_run(zlb_runner_t *r)
{
    uint64_t one = 1;
    if (write(r->stopfd, &one, sizeof(one)) < 0)
        zlb_log_warn("control request lost: %s", strerror(errno));
}

static void on_control_stop(void *arg, const char *client)
{
    zlb_runner_t *r = arg;
    pthread_mutex_lock(&r->mail_lock);
    if (!r->stop_client[0]) /* the stop that counts is the first */
        snprintf(r->stop_client, sizeof(r->stop_client), "%s", client ? client : "");
    pthread_mutex_unlock(&r->mail_lock);
    atomic_store(&r->stop_req, true);
    wake_run(r);
}

/* The control thread only posts the request: the run thread applies it (zlb_work_steer). The
 * client is stored before the flag, so the run thread that sees the flag finds its client. */
static void on_control_pause(void *arg, bool paused, const char *client)
{
    zlb_runner_t *r = arg;
    pthread_mutex_lock(&r->mail_lock);
    snprintf(r->pause_client, sizeof(r->pause_client), "%s", client ? client : "");
    atomic_store(&r->pause_req, paused ? 1 : 2);
    pthread_mutex_unlock(&r->mail_lock);
    wake_run(r);
}

json_t *zlb_runner_live_json(zlb_runner_t *r)
{
    zlb_work_live_t v;
    const char *key = zlb_config_rate_key(r->cfg->workload.type);

    zlb_runner_get_live(r, &v);
    json_t *j = json_pack("{s:b, s:o, s:I, s:f, s:f}", "paused", v.paused, "stage",
                          zlb_runner_stage_json(r), "connections", (json_int_t)v.connections,
                          "connect_rate", v.connect_rate, "close_rate", v.close_rate);
    if (key)
        json_object_set_new(j, key, json_real(v.rate));
    /* The dashboard shows its rate field where this says PATCH /run is served. */
    json_object_set_new(j, "patch", json_true());
    return j;
}

void zlb_runner_take_pause(zlb_runner_t *r)
{
    char client[ZLB_EVENT_CLIENT_MAX];
    zlb_work_live_t v;

    pthread_mutex_lock(&r->mail_lock);
    int req = atomic_exchange(&r->pause_req, 0);
    memcpy(client, r->pause_client, sizeof(client));
    pthread_mutex_unlock(&r->mail_lock);
    if (!req || !zlb_runner_steerable(r))
        return;
    zlb_runner_get_live(r, &v);
    /* A pause of a paused run changes nothing: no event. */
    if (v.paused == (req == 1))
        return;
    v.paused = req == 1;
    zlb_runner_steer(r, &v);
    zlb_runner_event(r, v.paused ? "pause" : "resume", json_pack("{s:b}", "paused", !v.paused),
                     json_pack("{s:b}", "paused", v.paused), client[0] ? client : NULL);
    zlb_log_info("%s over the control port by %s", v.paused ? "paused" : "resumed",
                 client[0] ? client : "?");
}

/* ---- set-up and tear-down ------------------------------------------------------------------ */

/* A TLS embedded target writes its generated CA to a file, which the engine's client context
 * then trusts like any ca_file: verification stays on. Without a ca_out_file from the user, a
 * private temporary file (0600, removed at teardown). */
static const char *embedded_ca_file(zlb_runner_t *r)
{
    const zlb_embedded_target_config_t *et = &r->cfg->embedded_target;
    char tmpl[] = "/tmp/zlbench-ca.XXXXXX";
    int fd;

    if (!et->tls || et->ca_out_file || r->embedded_ca_tmp)
        return et->ca_out_file ? et->ca_out_file : r->embedded_ca_tmp;
    fd = mkstemp(tmpl);
    if (fd < 0) {
        zlb_log_error("cannot create a temporary file for the built-in target's CA: %s",
                      strerror(errno));
        return NULL;
    }
    close(fd);
    r->embedded_ca_tmp = zlb_xstrdup(tmpl);
    return r->embedded_ca_tmp;
}

int zlb_runner_start_embedded_target(zlb_runner_t *r)
{
    const zlb_embedded_target_config_t *et = &r->cfg->embedded_target;
    const char *ca_file = embedded_ca_file(r);
    if (et->tls && !ca_file)
        return -EIO;
    zlb_serve_opts_t o = {
        .mode = et->mode,
        .listen = et->listen,
        .backlog = et->backlog,
        .threads = et->threads,
        .tls = et->tls,
        .ca_out_file = ca_file,
        .accept_delay_ns = et->accept_delay_ns,
    };
    zlb_serve_http_opts_t http = {.status = (uint16_t)et->http_status,
                                  .body_size = et->http_body_size,
                                  .chunked = et->http_chunked,
                                  .delay_ns = et->http_delay_ns,
                                  .delay_max_ns = et->http_delay_max_ns};
    if (o.mode == ZLB_SERVE_HTTP)
        o.http = &http;
    int rc = zlb_serve_start(&o, &r->target);
    if (rc != 0) {
        zlb_log_error("cannot start the built-in target on %s: %s", et->listen, strerror(-rc));
        return rc;
    }
    zlb_log_info("built-in %s target listening on %s", et->tls ? "TLS" : "TCP",
                 zlb_serve_address(r->target));
    return 0;
}

int zlb_runner_build_targets(zlb_runner_t *r)
{
    const zlb_config_t *cfg = r->cfg;
    if (cfg->ntargets == 0) {
        r->ntargets = 1;
        r->targets = zlb_xcalloc(1, sizeof(*r->targets));
        r->target_names = zlb_xcalloc(1, sizeof(char *));
        r->target_names[0] = zlb_xstrdup(zlb_serve_address(r->target));
        /* "127.0.0.1:PORT" or "[::1]:PORT" -> host without brackets */
        char *host;
        uint16_t port;
        if (zlb_addr_host_port(r->target_names[0], &host, &port) != 0)
            return -EINVAL;
        r->targets[0].host = host; /* freed with target_names below */
        r->targets[0].port = port;
        r->targets[0].weight = 1;
        r->targets[0].name = r->target_names[0];
        if (cfg->embedded_target.tls) {
            /* Host 127.0.0.1 and no SNI: the certificate's IP SAN is what is checked. */
            r->embedded_tls = (zlb_tls_config_t){
                .enabled = true,
                .verify = true,
                .ca_file = (char *)embedded_ca_file(r),
                .handshake_timeout_ns = 5 * ZLB_NS_PER_SEC, /* the config's default */
                .resumption = cfg->embedded_target.resumption,
            };
            r->targets[0].tls = &r->embedded_tls;
        }
        return 0;
    }
    r->ntargets = cfg->ntargets;
    r->targets = zlb_xcalloc(cfg->ntargets, sizeof(*r->targets));
    r->target_names = zlb_xcalloc(cfg->ntargets, sizeof(char *));
    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        char name[320];
        snprintf(name, sizeof(name), strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host,
                 (unsigned)t->port);
        r->target_names[i] = zlb_xstrdup(name);
        r->targets[i].host = t->host;
        r->targets[i].port = t->port;
        r->targets[i].weight = t->weight ? t->weight : 1;
        r->targets[i].tls = &t->tls;
        r->targets[i].name = r->target_names[i];
    }
    return 0;
}

int zlb_runner_start_control(zlb_runner_t *r)
{
    const zlb_control_config_t *cc = &r->cfg->control;
    if (!cc->enabled)
        return 0;
    char err[256] = "";
    if (cc->token_file) {
        int rc = zlb_control_read_token(cc->token_file, &r->token, err, sizeof(err));
        if (rc != 0) {
            zlb_log_error("%s", err);
            return rc;
        }
    }
    zlb_control_opts_t o = {
        .listen = cc->listen,
        .token = r->token,
        .address_file = NULL, /* written once /stats has something to serve: see zlb_run */
        .on_stop = on_control_stop,
        .on_pause = on_control_pause,
        .on_patch = zlb_runner_on_patch,
        .arg = r,
    };
    o.assets = zlb_dash_assets(&o.nassets);
    int rc = zlb_control_start(&o, &r->control, err, sizeof(err));
    if (rc != 0) {
        zlb_log_error("%s", err);
        return rc;
    }
    zlb_control_publish(r->control, "/config", 200, "application/json", r->config_text,
                        strlen(r->config_text));
    return 0;
}

int zlb_runner_make_pool(zlb_runner_t *r)
{
    const zlb_pollers_config_t *pc = &r->cfg->pollers;
    zlb_pool_opts_t o;
    zlb_pool_opts_default(&o);
    o.count = pc->count;
    o.cpu_affinity = pc->cpu_affinity;
    o.cpus = pc->cpus;
    o.ncpus = (int)pc->ncpus;
    o.priority = pc->priority == ZLB_CFG_PRIO_HIGH       ? ZLB_PRIO_HIGH
                 : pc->priority == ZLB_CFG_PRIO_REALTIME ? ZLB_PRIO_REALTIME
                                                         : ZLB_PRIO_NORMAL;
    o.nice = pc->nice;
    o.rt_policy = pc->rt_policy;
    o.rt_priority = pc->rt_priority;
    o.select = pc->round_robin ? ZLB_SELECT_ROUND_ROBIN : ZLB_SELECT_LEAST_LOADED;
    o.prefer_current = pc->prefer_current;
    o.load_window_ns = pc->load_window_ns;
    int rc = zlb_pool_create(&o, &r->pool);
    if (rc != 0)
        zlb_log_error("cannot start the pollers: %s", strerror(-rc));
    return rc;
}

int zlb_runner_open_signal_fds(zlb_runner_t *r)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    r->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->sigfd < 0 || r->stopfd < 0)
        return -errno;
    return 0;
}

void zlb_runner_teardown(zlb_runner_t *r)
{
    /* A PATCH waiting for this thread is answered now rather than after its 2 s wait, which
     * destroying the control port would sit through. */
    if (r->mail_lock_init)
        zlb_runner_close_mail(r);
    zlb_control_destroy(r->control); /* first: no control thread posts to the mailbox after */
    r->control = NULL;
    zlb_pool_stop(r->pool);
    zlb_work_snapshot_dispose(&r->snap);
    zlb_work_snapshot_dispose(&r->base);
    zlb_stats_dispose(&r->at_stop);
    zlb_work_destroy(r->engine);
    zlb_pool_destroy(r->pool);
    zlb_serve_destroy(r->target);
    if (r->embedded_ca_tmp) {
        unlink(r->embedded_ca_tmp);
        free(r->embedded_ca_tmp);
    }
    if (r->pin)
        zlb_monitor_dispose(&r->mon);
    free(r->pin);
    if (r->sin)
        zlb_series_dispose(&r->series);
    free(r->sin);
    if (r->target_names) {
        if (r->cfg->ntargets == 0 && r->targets)
            free((char *)r->targets[0].host);
        for (size_t i = 0; i < r->ntargets; i++)
            free(r->target_names[i]);
    }
    free(r->target_names);
    free(r->targets);
    free(r->token);
    free(r->config_text);
    if (r->sigfd >= 0)
        close(r->sigfd);
    if (r->stopfd >= 0)
        close(r->stopfd);
    zlb_events_dispose(&r->events);
    zlb_stager_dispose(&r->stager);
    zlb_runner_mail_dispose(r);
}

/* Says so at start when the run cannot hold its connections within the open-files limit: the
 * built-in target's accepted sockets live in this process too. */
void zlb_runner_warn_fd_limit(const zlb_config_t *cfg, uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
        return;
    if (cfg->embedded_target.enabled)
        zlb_log_warn("%llu connections need about %llu open files (%llu client sockets, %llu for "
                     "the built-in target in this process, 256 more), but the limit is %llu: "
                     "expect fd_limit failures (raise ulimit -n, or run `zlbench serve` apart)",
                     (unsigned long long)cfg->connections, (unsigned long long)need,
                     (unsigned long long)cfg->connections, (unsigned long long)cfg->connections,
                     (unsigned long long)rl.rlim_cur);
    else
        zlb_log_warn("%llu connections need about %llu open files, but the limit is %llu: expect "
                     "fd_limit failures (raise ulimit -n)",
                     (unsigned long long)cfg->connections, (unsigned long long)need,
                     (unsigned long long)rl.rlim_cur);
}

void zlb_runner_log_removed_temp(const char *name, void *arg)
{
    (void)arg;
    zlb_log_info("removed %s, a report temporary left by an earlier run that was killed", name);
}
