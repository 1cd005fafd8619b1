/* config_json.c -- the effective config back to JSON (every default spelled out), and its hash. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

static json_t *duration(uint64_t ns)
{
    char buf[32];
    zlb_format_duration(ns, buf, sizeof(buf));
    return json_string(buf);
}

/* Whole numbers as integers, so "connect_rate": 5000 reads back as written, not as 5000.0. */
json_t *zlb_config_number_json(double d)
{
    /* Range first: the cast is only defined for values that fit. No libm: config links none. */
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(json_int_t)d)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static json_t *number(double d)
{
    return zlb_config_number_json(d);
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The value's name from its enum's table (the one the parser reads), null if it has none. */
static json_t *name(const zlb_config_names_t *t, int i)
{
    return string_or_null(zlb_config_name(t, i));
}

static json_t *tls_version(int v)
{
    return name(&zlb_config_tls_version_names, v - ZLB_CONFIG_TLS_VERSION_BASE);
}

static json_t *pollers_json(const zlb_pollers_config_t *p)
{
    json_t *o = json_object();
    json_t *cpus = json_array();
    for (size_t i = 0; i < p->ncpus; i++)
        json_array_append_new(cpus, json_integer(p->cpus[i]));
    json_object_set_new(o, "count", json_integer(p->count));
    json_object_set_new(o, "cpu_affinity", json_boolean(p->cpu_affinity));
    json_object_set_new(o, "cpus", cpus);
    json_object_set_new(o, "priority", name(&zlb_config_priority_names, (int)p->priority));
    json_object_set_new(o, "nice", json_integer(p->nice));
    json_object_set_new(o, "rt_policy",
                        name(&zlb_config_rt_policy_names, p->rt_policy == SCHED_RR));
    json_object_set_new(o, "rt_priority", json_integer(p->rt_priority));
    json_object_set_new(o, "select", name(&zlb_config_select_names, p->round_robin));
    json_object_set_new(o, "prefer_current", json_boolean(p->prefer_current));
    json_object_set_new(o, "load_window", duration(p->load_window_ns));
    return o;
}

static json_t *tls_json(const zlb_tls_config_t *t)
{
    json_t *o = json_object();
    json_t *alpn = json_array();
    for (size_t i = 0; i < t->nalpn; i++)
        json_array_append_new(alpn, json_string(t->alpn[i]));
    json_object_set_new(o, "enabled", json_boolean(t->enabled));
    json_object_set_new(o, "sni", string_or_null(t->sni));
    json_object_set_new(o, "verify", json_boolean(t->verify));
    json_object_set_new(o, "ca_file", string_or_null(t->ca_file));
    json_object_set_new(o, "ca_dir", string_or_null(t->ca_dir));
    json_object_set_new(o, "alpn", alpn);
    json_object_set_new(o, "min_version", tls_version(t->min_version));
    json_object_set_new(o, "max_version", tls_version(t->max_version));
    json_object_set_new(o, "ciphers", string_or_null(t->ciphers));
    json_object_set_new(o, "ciphersuites", string_or_null(t->ciphersuites));
    json_object_set_new(o, "groups", string_or_null(t->groups));
    json_object_set_new(o, "cert_file", string_or_null(t->cert_file));
    json_object_set_new(o, "key_file", string_or_null(t->key_file));
    json_object_set_new(o, "resumption", number(t->resumption));
    json_object_set_new(o, "handshake_timeout", duration(t->handshake_timeout_ns));
    return o;
}

static json_t *targets_json(const zlb_config_t *cfg)
{
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        json_t *o = json_object();
        json_object_set_new(o, "host", json_string(t->host));
        json_object_set_new(o, "port", json_integer(t->port));
        json_object_set_new(o, "weight", json_integer(t->weight));
        json_object_set_new(o, "tls", tls_json(&t->tls));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *embedded_json(const zlb_embedded_target_config_t *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "mode", name(&zlb_config_mode_names, (int)e->mode));
    json_object_set_new(o, "listen", string_or_null(e->listen));
    json_object_set_new(o, "backlog", json_integer(e->backlog));
    json_object_set_new(o, "threads", json_integer(e->threads));
    json_object_set_new(o, "tls", json_boolean(e->tls));
    json_object_set_new(o, "ca_out_file", string_or_null(e->ca_out_file));
    json_object_set_new(o, "accept_delay", duration(e->accept_delay_ns));
    json_object_set_new(o, "resumption", number(e->resumption));
    if (e->mode == ZLB_SERVE_HTTP) { /* the keys of mode http are refused elsewhere */
        json_object_set_new(o, "http_status", json_integer(e->http_status));
        json_object_set_new(o, "http_body_size", json_integer((json_int_t)e->http_body_size));
        json_object_set_new(o, "http_chunked", json_boolean(e->http_chunked));
        json_object_set_new(o, "http_delay", duration(e->http_delay_ns));
        json_object_set_new(o, "http_delay_max", duration(e->http_delay_max_ns));
    }
    return o;
}

static json_t *workload_json(const zlb_workload_config_t *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", name(&zlb_config_work_names, (int)w->type));
    json_object_set_new(o, "lifetime", duration(w->lifetime_ns));
    json_object_set_new(o, "reconnect", json_boolean(w->reconnect));
    json_object_set_new(o, "backoff_min", duration(w->backoff_min_ns));
    json_object_set_new(o, "backoff_max", duration(w->backoff_max_ns));
    /* Each said once: a given message has its own size, a rate replaces the interval. */
    if (w->message_from == ZLB_MESSAGE_GENERATED)
        json_object_set_new(o, "message_size", json_integer((json_int_t)w->message_size));
    if (w->message_rate == 0 || (w->type != ZLB_WORK_ECHO && w->type != ZLB_WORK_MESSAGE))
        json_object_set_new(o, "message_interval", duration(w->message_interval_ns));
    if (w->type == ZLB_WORK_ECHO || w->type == ZLB_WORK_MESSAGE)
        zlb_config_message_json(o, w);
    if (w->type == ZLB_WORK_HTTP) {
        json_object_set_new(o, "requests", zlb_config_http_requests_json(w));
        json_object_set_new(o, "keepalive", json_boolean(w->keepalive));
        json_object_set_new(o, "pipeline", json_integer((json_int_t)w->pipeline));
        json_object_set_new(o, "request_rate", json_real(w->request_rate));
        json_object_set_new(o, "max_response_size", json_integer((json_int_t)w->max_response_size));
        json_object_set_new(o, "max_header_size", json_integer((json_int_t)w->max_header_size));
    }
    if (w->type == ZLB_WORK_STREAM) { /* the stream keys are refused with other types */
        json_object_set_new(o, "direction", name(&zlb_config_direction_names, (int)w->direction));
        json_object_set_new(o, "chunk_size", json_integer((json_int_t)w->chunk_size));
        json_object_set_new(o, "rate", number(w->rate));
        if (w->first_message_file)
            json_object_set_new(o, "first_message_file", json_string(w->first_message_file));
        else if (w->first_message)
            json_object_set_new(o, "first_message",
                                json_stringn((const char *)w->first_message, w->first_message_len));
        json_object_set_new(o, "stall_timeout", duration(w->stall_timeout_ns));
        json_object_set_new(o, "stall_close", json_boolean(w->stall_close));
    }
    return o;
}

static json_t *source_ips_json(const zlb_config_t *cfg)
{
    json_t *a = json_array();
    if (cfg->nsource_ips > 0 || cfg->nsource == 0) {
        for (size_t i = 0; i < cfg->nsource_ips; i++)
            json_array_append_new(a, json_string(cfg->source_ips[i]));
        return a;
    }
    /* Addresses set in memory without the strings they came from: list them one by one. */
    for (size_t i = 0; i < cfg->nsource; i++) {
        char buf[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &cfg->source_addrs[i];
        const void *addr = ss->ss_family == AF_INET
                               ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                               : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (inet_ntop(ss->ss_family, addr, buf, sizeof(buf)))
            json_array_append_new(a, json_string(buf));
    }
    return a;
}

static json_t *socket_json(const zlb_socket_config_t *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "nodelay", json_boolean(s->nodelay));
    json_object_set_new(o, "sndbuf", json_integer((json_int_t)s->sndbuf));
    json_object_set_new(o, "rcvbuf", json_integer((json_int_t)s->rcvbuf));
    json_object_set_new(o, "close", name(&zlb_config_close_names, (int)s->close));
    if (s->keepalive) {
        json_t *ka = json_object();
        json_object_set_new(ka, "idle", duration(s->keepalive_idle_ns));
        json_object_set_new(ka, "interval", duration(s->keepalive_interval_ns));
        json_object_set_new(ka, "count", json_integer(s->keepalive_count));
        json_object_set_new(o, "keepalive", ka);
    } else {
        json_object_set_new(o, "keepalive", json_false());
    }
    return o;
}

static json_t *shard_json(const zlb_shard_config_t *sh)
{
    return json_pack("{s:I, s:I}", "index", (json_int_t)sh->index, "count", (json_int_t)sh->count);
}

json_t *zlb_config_to_json(const zlb_config_t *cfg)
{
    json_t *root;
    json_t *o;

    /* A shard prints the scenario it is a part of, and which part: every shard of one scenario
     * then shows (and hashes to) the same config, and its effective config loads back to the
     * same part. The index is the resolved one: "env" would not read back elsewhere. */
    if (cfg->unsharded_json) {
        root = json_loads(cfg->unsharded_json, 0, NULL);
        if (!root)
            zlb_fatal("the stored scenario does not parse back");
        json_object_set_new(root, "shard", shard_json(&cfg->shard));
        return root;
    }
    root = json_object();

    json_object_set_new(root, "pollers", pollers_json(&cfg->pollers));
    /* The file takes one or the other, so the effective config shows only the one in use. */
    if (cfg->ntargets > 0)
        json_object_set_new(root, "targets", targets_json(cfg));
    else
        json_object_set_new(root, "embedded_target", embedded_json(&cfg->embedded_target));
    json_object_set_new(root, "connections", json_integer((json_int_t)cfg->connections));
    json_object_set_new(root, "connect_rate", number(cfg->connect_rate));
    /* Only when set: configs without it keep their hash. */
    if (cfg->close_rate > 0)
        json_object_set_new(root, "close_rate", number(cfg->close_rate));
    o = json_object();
    json_object_set_new(o, "duration", duration(cfg->ramp.duration_ns));
    json_object_set_new(o, "start_rate", number(cfg->ramp.start_rate));
    json_object_set_new(root, "ramp", o);
    json_object_set_new(root, "connect_timeout", duration(cfg->connect_timeout_ns));
    json_object_set_new(root, "send_timeout", duration(cfg->send_timeout_ns));
    /* With stages the run lasts their sum: "duration" beside them is refused at load. */
    if (cfg->nstages)
        json_object_set_new(root, "stages", zlb_config_stages_json(cfg));
    else
        json_object_set_new(root, "duration", duration(cfg->duration_ns));
    json_object_set_new(root, "warmup", duration(cfg->warmup_ns));
    json_object_set_new(root, "drain_timeout", duration(cfg->drain_timeout_ns));
    json_object_set_new(root, "workload", workload_json(&cfg->workload));
    json_object_set_new(root, "source_ips", source_ips_json(cfg));
    json_object_set_new(root, "family", name(&zlb_config_family_names, (int)cfg->family));
    json_object_set_new(root, "dns_ttl", duration(cfg->dns_ttl_ns));
    json_object_set_new(root, "socket", socket_json(&cfg->socket));

    o = json_object();
    json_object_set_new(o, "listen",
                        cfg->control.enabled ? string_or_null(cfg->control.listen) : json_null());
    /* The path only: the token itself is a secret and this JSON is served and archived. */
    json_object_set_new(o, "token_file", string_or_null(cfg->control.token_file));
    json_object_set_new(o, "address_file", string_or_null(cfg->control.address_file));
    json_object_set_new(o, "metrics_bucket_min", duration(cfg->control.metrics_bucket_min_ns));
    json_object_set_new(o, "metrics_bucket_max", duration(cfg->control.metrics_bucket_max_ns));
    json_object_set_new(root, "control", o);

    o = json_object();
    json_t *pct = json_array();
    for (size_t i = 0; i < cfg->report.npercentiles; i++)
        json_array_append_new(pct, number(cfg->report.percentiles[i]));
    json_object_set_new(o, "file", string_or_null(cfg->report.file));
    json_object_set_new(o, "html",
                        cfg->report.html          ? json_string(cfg->report.html)
                        : cfg->report.html_beside ? json_true()
                                                  : json_false());
    json_object_set_new(o, "percentiles", pct);
    json_object_set_new(root, "report", o);

    o = json_object();
    for (size_t i = 0; i < cfg->nthresholds; i++)
        json_object_set_new(o, cfg->thresholds[i].path, json_string(cfg->thresholds[i].expr));
    json_object_set_new(root, "thresholds", o);

    json_object_set_new(root, "abort_on_fail", json_boolean(cfg->abort_on_fail));
    json_object_set_new(root, "abort_grace", duration(cfg->abort_grace_ns));
    json_object_set_new(root, "stats_interval", duration(cfg->stats_interval_ns));
    json_object_set_new(root, "log_level", name(&zlb_config_log_level_names, (int)cfg->log_level));
    if (cfg->shard.count > 1)
        json_object_set_new(root, "shard", shard_json(&cfg->shard));
    json_object_set_new(root, "processes",
                        cfg->processes == ZLB_PROCESSES_AUTO ? json_string("auto")
                                                             : json_integer(cfg->processes));
    return root;
}

void zlb_config_hash(const zlb_config_t *cfg, char out[17])
{
    json_t *j = zlb_config_to_json(cfg);
    /* The scenario, not where its output goes: two generators of one scenario writing different
     * report files (or serving on different control ports) must hash alike, or `merge` and
     * `compare` would call them different scenarios. */
    json_object_del(json_object_get(j, "report"), "file");
    json_object_del(json_object_get(j, "report"), "html");
    json_object_del(j, "control");
    json_object_del(j, "log_level");
    /* Which part a generator runs is not the scenario: every shard hashes as the whole. */
    json_object_del(j, "shard");
    json_object_del(j, "processes"); /* how many processes generate it, not the scenario */
    /* Sorted and compact, so the hash depends on the values only, not on key order or layout. */
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    uint64_t h = 0xcbf29ce484222325ull;

    if (!text)
        zlb_fatal("out of memory serialising the config");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    snprintf(out, 17, "%016" PRIx64, h);
    free(text);
    json_decref(j);
}
