/* config_check.c -- rules across fields, run after parsing and again after command-line overrides.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

/* The family of an IP literal host (core's rules: zones allowed), 0 for a name. */
static int literal_family(const char *h)
{
    if (!h || !zlb_addr_is_ip_literal(h))
        return 0;
    return strchr(h, ':') ? AF_INET6 : AF_INET;
}

int zlb_config_check_cross(zlb_config_ctx_t *c, const zlb_config_t *cfg)
{
    char a[32], b[32];
    char path[64];

    if ((cfg->connections < 1 && !cfg->nstages) || cfg->connections > ZLB_CONFIG_MAX_CONNECTIONS)
        return zlb_config_fail_at(c, "connections", "expected an integer 1..%d, got %" PRIu64,
                                  ZLB_CONFIG_MAX_CONNECTIONS, cfg->connections);
    if (!(cfg->connect_rate >= 0 && cfg->connect_rate <= ZLB_CONFIG_MAX_CONNECT_RATE) ||
        (cfg->connect_rate > 0 && cfg->connect_rate < ZLB_CONFIG_MIN_CONNECT_RATE))
        return zlb_config_fail_at(
            c, "connect_rate",
            "expected 0 (unlimited) or a number 0.001..1e9 connections per second");
    if (cfg->pollers.count < 0 || cfg->pollers.count > ZLB_CONFIG_MAX_POLLERS)
        return zlb_config_fail_at(c, "pollers.count", "expected an integer 0..%d",
                                  ZLB_CONFIG_MAX_POLLERS);
    if (cfg->pollers.priority == ZLB_CFG_PRIO_REALTIME &&
        (cfg->pollers.rt_priority < 1 || cfg->pollers.rt_priority > 99))
        return zlb_config_fail_at(
            c, "pollers.priority",
            "priority \"realtime\" needs pollers.rt_priority set to 1..99 (there is no "
            "default level)");
    if (cfg->duration_ns > 0 && cfg->warmup_ns >= cfg->duration_ns) {
        zlb_format_duration(cfg->warmup_ns, a, sizeof(a));
        zlb_format_duration(cfg->duration_ns, b, sizeof(b));
        return zlb_config_fail_at(c, "warmup", "warmup (%s) must be shorter than %s (%s)", a,
                                  cfg->nstages ? "the stages together" : "duration", b);
    }
    for (size_t i = 0; i < cfg->nstages; i++) {
        /* A workload changed after the stages were read (an override) may lack their rate. */
        if ((cfg->stages[i].set & ZLB_STAGE_RATE) && !zlb_config_rate_key(cfg->workload.type)) {
            snprintf(path, sizeof(path), "stages[%zu]", i);
            return zlb_config_fail_at(
                c, path, "the %s workload has no rate to set",
                zlb_config_name(&zlb_config_work_names, (int)cfg->workload.type));
        }
    }
    if (cfg->nstages && cfg->ramp.duration_ns > 0)
        return zlb_config_fail_at(c, "ramp.duration",
                                  "a run with stages ramps with its stages (a first stage that "
                                  "raises connect_rate or connections); remove ramp");
    if (cfg->ramp.duration_ns > 0 && cfg->connect_rate == 0)
        return zlb_config_fail_at(
            c, "ramp.duration",
            "a ramp needs a connect_rate to rise to (connect_rate is 0: unlimited)");
    if (cfg->ramp.duration_ns > 0 && cfg->ramp.start_rate > cfg->connect_rate)
        return zlb_config_fail_at(c, "ramp.start_rate", "start_rate must not exceed connect_rate");
    if (cfg->workload.backoff_min_ns > cfg->workload.backoff_max_ns)
        return zlb_config_fail_at(c, "workload.backoff_min",
                                  "backoff_min must not exceed backoff_max");

    if (cfg->ntargets > 0 && cfg->embedded_target.enabled)
        return zlb_config_fail_at(c, "embedded_target",
                                  "use either targets or embedded_target, not both");
    if (cfg->ntargets == 0 && !cfg->embedded_target.enabled)
        return zlb_config_fail_at(c, "targets", "no target: give targets or embedded_target");
    if (cfg->embedded_target.enabled && cfg->workload.type == ZLB_WORK_HTTP &&
        cfg->embedded_target.mode != ZLB_SERVE_HTTP)
        return zlb_config_fail_at(
            c, "workload.type",
            "the http workload needs a target that speaks HTTP; embedded_target.mode is \"%s\"",
            zlb_config_name(&zlb_config_mode_names, (int)cfg->embedded_target.mode));
    if (cfg->embedded_target.enabled && cfg->workload.type == ZLB_WORK_ECHO &&
        cfg->embedded_target.mode != ZLB_SERVE_ECHO)
        return zlb_config_fail_at(
            c, "workload.type",
            "the echo workload needs a target that echoes; embedded_target.mode is "
            "\"%s\"",
            zlb_config_name(&zlb_config_mode_names, (int)cfg->embedded_target.mode));
    TRY(zlb_config_check_message(c, cfg));
    if (cfg->embedded_target.enabled && cfg->workload.type == ZLB_WORK_STREAM) {
        zlb_serve_mode_t m = cfg->embedded_target.mode;
        zlb_stream_dir_t d = cfg->workload.direction;
        /* What the built-in target must do for the stream to move: take the bytes we send,
         * send bytes of its own for us to read, or both. */
        bool ok = m != ZLB_SERVE_HTTP && (d == ZLB_STREAM_SEND || m == ZLB_SERVE_SOURCE ||
                                          (d == ZLB_STREAM_BOTH && m == ZLB_SERVE_ECHO));
        if (!ok)
            return zlb_config_fail_at(c, "workload.direction",
                                      "a \"%s\" stream needs embedded_target.mode %s; it is \"%s\"",
                                      zlb_config_name(&zlb_config_direction_names, (int)d),
                                      d == ZLB_STREAM_SEND      ? "\"sink\", \"echo\" or \"source\""
                                      : d == ZLB_STREAM_RECEIVE ? "\"source\""
                                                                : "\"echo\" or \"source\"",
                                      zlb_config_name(&zlb_config_mode_names, (int)m));
    }

    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        const zlb_tls_config_t *tls = &t->tls;
        if (t->port == 0) {
            snprintf(path, sizeof(path), "targets[%zu].port", i);
            return zlb_config_fail_at(c, path, "expected an integer 1..65535, got 0");
        }
        int lf = literal_family(t->host);
        if ((cfg->family == ZLB_FAMILY_IPV4 && lf == AF_INET6) ||
            (cfg->family == ZLB_FAMILY_IPV6 && lf == AF_INET)) {
            snprintf(path, sizeof(path), "targets[%zu].host", i);
            return zlb_config_fail_at(c, path, "address \"%s\" does not match family \"%s\"",
                                      zlb_config_show(t->host),
                                      zlb_config_name(&zlb_config_family_names, (int)cfg->family));
        }
        if (tls->min_version && tls->max_version && tls->min_version > tls->max_version) {
            snprintf(path, sizeof(path), "targets[%zu].tls.min_version", i);
            return zlb_config_fail_at(c, path, "min_version is above max_version");
        }
        if (tls->key_file && !tls->cert_file) {
            snprintf(path, sizeof(path), "targets[%zu].tls.key_file", i);
            return zlb_config_fail_at(c, path, "key_file needs cert_file");
        }
    }

    for (size_t i = 0; i < cfg->nsource; i++) {
        int fam = cfg->source_addrs[i].ss_family;
        if ((cfg->family == ZLB_FAMILY_IPV4 && fam != AF_INET) ||
            (cfg->family == ZLB_FAMILY_IPV6 && fam != AF_INET6)) {
            /* Name the entry as written when the expansion came from the file. */
            size_t entry = 0;
            for (size_t k = 0, seen = 0; k < cfg->nsource_ips; k++) {
                zlb_config_ip_t f, l;
                uint64_t cnt;
                const char *why;
                if (zlb_config_ip_range_parse(cfg->source_ips[k], &f, &l, &cnt, &why) == 0) {
                    if (i < seen + cnt) {
                        entry = k;
                        break;
                    }
                    seen += cnt;
                }
            }
            snprintf(path, sizeof(path), "source_ips[%zu]", entry);
            return zlb_config_fail_at(c, path, "an %s source address does not match family \"%s\"",
                                      fam == AF_INET ? "IPv4" : "IPv6",
                                      zlb_config_name(&zlb_config_family_names, (int)cfg->family));
        }
    }

    /* A source pool that has no address of a literal target's family would be skipped
     * silently for it: the >64k-per-destination spread the user asked for would not happen. */
    for (size_t i = 0; cfg->nsource && i <= cfg->ntargets; i++) {
        char *host = NULL;
        uint16_t port;
        const char *h = NULL;
        if (i < cfg->ntargets)
            h = cfg->targets[i].host;
        else if (cfg->embedded_target.enabled && cfg->embedded_target.listen &&
                 zlb_addr_host_port(cfg->embedded_target.listen, &host, &port) == 0)
            h = host;
        int fam = literal_family(h);
        bool match = !fam;
        for (size_t k = 0; !match && k < cfg->nsource; k++)
            match = cfg->source_addrs[k].ss_family == fam;
        free(host);
        if (!match) {
            if (i < cfg->ntargets)
                snprintf(path, sizeof(path), "targets[%zu].host", i);
            else
                snprintf(path, sizeof(path), "embedded_target.listen");
            return zlb_config_fail_at(
                c, path, "an %s target, but source_ips has no %s address to connect from",
                fam == AF_INET ? "IPv4" : "IPv6", fam == AF_INET ? "IPv4" : "IPv6");
        }
    }

    /* The report is written at the end: a folder that cannot take it is found now, not after
     * the whole run. */
    if (cfg->report.file) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", cfg->report.file);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
        if (access(dir, W_OK | X_OK) != 0)
            return zlb_config_fail_at(c, "report.file", "cannot write a report in %s: %s", dir,
                                      strerror(errno));
    }

    if (cfg->control.enabled && !cfg->control.listen)
        return zlb_config_fail_at(c, "control.listen", "the control port needs a listen address");
    /* Listen addresses may come from the command line too; parse them here as well. */
    if (cfg->control.enabled) {
        struct sockaddr_storage ss;
        TRY(zlb_config_check_listen(c, "control.listen", cfg->control.listen, &ss));
        /* Beyond loopback anyone who reaches the port could read the stats and stop the run:
         * the control port refuses to start that way, so the config is not valid that way. */
        if (!zlb_addr_is_loopback((const struct sockaddr *)&ss) && !cfg->control.token_file)
            return zlb_config_fail_at(c, "control.listen",
                                      "\"%s\" is not a loopback address: the control port needs "
                                      "control.token_file (or %s) to listen there",
                                      cfg->control.listen, ZLB_CONFIG_TOKEN_FILE_ENV);
    }
    if (cfg->embedded_target.enabled && cfg->embedded_target.listen)
        TRY(zlb_config_check_listen(c, "embedded_target.listen", cfg->embedded_target.listen,
                                    NULL));
    /* An enum here, but a config built in memory may hold anything. */
    if ((unsigned)cfg->log_level > ZLB_LOG_OFF)
        return zlb_config_fail_at(c, "log_level",
                                  "expected one of \"trace\", \"debug\", \"info\", \"warn\", "
                                  "\"error\", \"off\"");
    return 0;
}
