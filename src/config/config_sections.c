/* config_sections.c -- one parser per section of the file, each checking its own keys. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

#define MAX_CPU 1023 /* CPU_SETSIZE - 1 */
#define MAX_TARGETS 65536
#define MAX_WEIGHT 1000000
#define MAX_PERCENTILES 16
#define MAX_ALPN 32
#define MAX_SOCKBUF 2147483647 /* setsockopt takes an int */
#define MAX_MESSAGE_SIZE (16u << 20)

static int parse_pollers(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"count",          "cpu_affinity", "cpus",        "priority",
                                       "nice",           "rt_policy",    "rt_priority", "select",
                                       "prefer_current", "load_window"};
    zlb_pollers_config_t *p = &cfg->pollers;
    int64_t x;
    int e;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    x = p->count;
    TRY(zlb_config_get_int(c, o, "count", 0, ZLB_CONFIG_MAX_POLLERS, &x));
    p->count = (int)x;
    TRY(zlb_config_get_bool(c, o, "cpu_affinity", &p->cpu_affinity));

    json_t *cpus = json_object_get(o, "cpus");
    if (cpus && !json_is_null(cpus)) {
        size_t mark = zlb_config_push(c, "cpus");
        char g[64];
        if (!json_is_array(cpus))
            return zlb_config_fail(c, "expected an array of CPU numbers, got %s",
                                   zlb_config_got(cpus, g, sizeof(g)));
        if (json_array_size(cpus) > MAX_CPU + 1)
            return zlb_config_fail(c, "at most %d CPUs", MAX_CPU + 1);
        free(p->cpus);
        p->cpus = NULL;
        p->ncpus = 0;
        if (json_array_size(cpus) > 0)
            p->cpus = zlb_xcalloc(json_array_size(cpus), sizeof(int));
        for (size_t i = 0; i < json_array_size(cpus); i++) {
            size_t m2 = zlb_config_path_push_index(&c->path, i);
            TRY(zlb_config_check_int(c, json_array_get(cpus, i), 0, MAX_CPU, &x));
            for (size_t k = 0; k < p->ncpus; k++)
                if (p->cpus[k] == (int)x)
                    return zlb_config_fail(c, "CPU %d is listed twice", (int)x);
            p->cpus[p->ncpus++] = (int)x;
            zlb_config_pop(c, m2);
        }
        zlb_config_pop(c, mark);
    } else if (cpus) {
        free(p->cpus);
        p->cpus = NULL;
        p->ncpus = 0;
    }

    e = (int)p->priority;
    TRY(zlb_config_get_enum(c, o, "priority", &zlb_config_priority_names, &e));
    p->priority = (zlb_cfg_priority_t)e;
    x = p->nice;
    TRY(zlb_config_get_int(c, o, "nice", -20, 19, &x));
    p->nice = (int)x;
    e = p->rt_policy == SCHED_RR;
    TRY(zlb_config_get_enum(c, o, "rt_policy", &zlb_config_rt_policy_names, &e));
    p->rt_policy = e ? SCHED_RR : SCHED_FIFO;
    /* 0 means "not set", so that the effective config (which spells every key) reads back. */
    x = p->rt_priority;
    TRY(zlb_config_get_int(c, o, "rt_priority", 0, 99, &x));
    p->rt_priority = (int)x;
    e = p->round_robin;
    TRY(zlb_config_get_enum(c, o, "select", &zlb_config_select_names, &e));
    p->round_robin = e == 1;
    TRY(zlb_config_get_bool(c, o, "prefer_current", &p->prefer_current));
    TRY(zlb_config_get_duration(c, o, "load_window", ZLB_NS_PER_MS, &p->load_window_ns));
    return 0;
}

static int parse_tls(zlb_config_ctx_t *c, const json_t *o, zlb_tls_config_t *t)
{
    static const char *const keys[] = {
        "enabled", "sni",         "verify",      "ca_file",    "ca_dir",
        "alpn",    "min_version", "max_version", "ciphers",    "ciphersuites",
        "groups",  "cert_file",   "key_file",    "resumption", "handshake_timeout"};
    char g[64];
    int e = 0;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    /* Writing a tls object at all means TLS, unless it says otherwise. */
    t->enabled = true;
    TRY(zlb_config_get_bool(c, o, "enabled", &t->enabled));
    TRY(zlb_config_get_string(c, o, "sni", true, &t->sni));
    TRY(zlb_config_get_bool(c, o, "verify", &t->verify));
    TRY(zlb_config_get_string(c, o, "ca_file", true, &t->ca_file));
    TRY(zlb_config_check_file(c, "ca_file", t->ca_file, false));
    TRY(zlb_config_get_string(c, o, "ca_dir", true, &t->ca_dir));
    TRY(zlb_config_check_file(c, "ca_dir", t->ca_dir, true));

    json_t *alpn = json_object_get(o, "alpn");
    if (alpn && !json_is_null(alpn)) {
        size_t mark = zlb_config_push(c, "alpn");
        if (!json_is_array(alpn))
            return zlb_config_fail(c, "expected an array of protocol names, got %s",
                                   zlb_config_got(alpn, g, sizeof(g)));
        if (json_array_size(alpn) > MAX_ALPN)
            return zlb_config_fail(c, "at most %d protocol names", MAX_ALPN);
        for (size_t i = 0; i < t->nalpn; i++)
            free(t->alpn[i]);
        free(t->alpn);
        t->alpn = NULL;
        t->nalpn = 0;
        if (json_array_size(alpn) > 0)
            t->alpn = zlb_xcalloc(json_array_size(alpn), sizeof(char *));
        for (size_t i = 0; i < json_array_size(alpn); i++) {
            json_t *s = json_array_get(alpn, i);
            size_t m2 = zlb_config_path_push_index(&c->path, i);
            /* ALPN names travel with a one-byte length. */
            if (!json_is_string(s))
                return zlb_config_fail(c, "expected a protocol name, got %s",
                                       zlb_config_got(s, g, sizeof(g)));
            if (json_string_length(s) == 0 || json_string_length(s) > 255 ||
                strlen(json_string_value(s)) != json_string_length(s))
                return zlb_config_fail(c, "a protocol name must be 1..255 bytes without NUL");
            t->alpn[t->nalpn++] = zlb_xstrdup(json_string_value(s));
            zlb_config_pop(c, m2);
        }
        zlb_config_pop(c, mark);
    }

    for (int which = 0; which < 2; which++) {
        const char *key = which ? "max_version" : "min_version";
        int *dst = which ? &t->max_version : &t->min_version;
        json_t *v = json_object_get(o, key);
        if (!v)
            continue;
        if (json_is_null(v)) {
            *dst = 0;
            continue;
        }
        size_t mark = zlb_config_push(c, key);
        TRY(zlb_config_check_enum(c, v, &zlb_config_tls_version_names, &e));
        *dst = ZLB_CONFIG_TLS_VERSION_BASE + e;
        zlb_config_pop(c, mark);
    }
    TRY(zlb_config_get_string(c, o, "ciphers", true, &t->ciphers));
    TRY(zlb_config_get_string(c, o, "ciphersuites", true, &t->ciphersuites));
    TRY(zlb_config_get_string(c, o, "groups", true, &t->groups));
    TRY(zlb_config_get_string(c, o, "cert_file", true, &t->cert_file));
    TRY(zlb_config_check_file(c, "cert_file", t->cert_file, false));
    TRY(zlb_config_get_string(c, o, "key_file", true, &t->key_file));
    TRY(zlb_config_check_file(c, "key_file", t->key_file, false));
    TRY(zlb_config_get_number(c, o, "resumption", 0, 1, "0..1", &t->resumption));
    TRY(zlb_config_get_duration(c, o, "handshake_timeout", 1, &t->handshake_timeout_ns));
    return 0;
}

void zlb_config_tls_defaults(zlb_tls_config_t *t)
{
    memset(t, 0, sizeof(*t));
    t->verify = true;
    t->handshake_timeout_ns = 5 * ZLB_NS_PER_SEC;
}

void zlb_config_tls_dispose(zlb_tls_config_t *t)
{
    free(t->sni);
    free(t->ca_file);
    free(t->ca_dir);
    for (size_t i = 0; i < t->nalpn; i++)
        free(t->alpn[i]);
    free(t->alpn);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->groups);
    free(t->cert_file);
    free(t->key_file);
    memset(t, 0, sizeof(*t));
}

static int parse_host(zlb_config_ctx_t *c, const json_t *v, char **out)
{
    char g[64];
    if (!json_is_string(v) || json_string_length(v) == 0)
        return zlb_config_fail(c, "expected a host name or IP address, got %s",
                               zlb_config_got(v, g, sizeof(g)));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    /* "[::1]" is what people copy from URLs; the struct holds the bare literal. */
    bool bracketed = len > 2 && s[0] == '[' && s[len - 1] == ']';
    char *host = zlb_xmalloc(len + 1);
    memcpy(host, s + bracketed, len - 2 * bracketed);
    host[len - 2 * bracketed] = '\0';
    /* zlb_addr_host_port knows what a valid host looks like; reuse it rather than repeat it. */
    size_t n = len + 16;
    char *probe = zlb_xmalloc(n);
    bool v6 = strchr(host, ':') != NULL;
    snprintf(probe, n, v6 ? "[%s]:1" : "%s:1", host);
    char *parsed = NULL;
    uint16_t port;
    int rc = zlb_addr_host_port(probe, &parsed, &port);
    free(probe);
    free(parsed);
    if (rc < 0 || strlen(s) != len || (bracketed && !v6)) {
        free(host);
        return zlb_config_fail(
            c,
            "invalid host \"%s\" (expected a name, an IPv4 address or an IPv6 address; "
            "the port goes in \"port\")",
            zlb_config_show(s));
    }
    free(*out);
    *out = host;
    return 0;
}

static int parse_target(zlb_config_ctx_t *c, const json_t *o, zlb_target_config_t *t)
{
    static const char *const keys[] = {"host", "port", "weight", "tls"};
    int64_t x;
    char g[64];

    TRY(zlb_config_check_object(c, o));
    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    json_t *host = json_object_get(o, "host");
    if (!host)
        return zlb_config_fail(c, "missing required key 'host'");
    size_t mark = zlb_config_push(c, "host");
    TRY(parse_host(c, host, &t->host));
    zlb_config_pop(c, mark);
    if (!json_object_get(o, "port"))
        return zlb_config_fail(c, "missing required key 'port'");
    x = 0;
    TRY(zlb_config_get_int(c, o, "port", 1, 65535, &x));
    t->port = (uint16_t)x;
    x = t->weight;
    TRY(zlb_config_get_int(c, o, "weight", 1, MAX_WEIGHT, &x));
    t->weight = (uint32_t)x;

    json_t *tls = json_object_get(o, "tls");
    if (tls) {
        mark = zlb_config_push(c, "tls");
        if (json_is_boolean(tls))
            t->tls.enabled = json_is_true(tls);
        else if (json_is_object(tls))
            TRY(parse_tls(c, tls, &t->tls));
        else
            return zlb_config_fail(c, "expected a boolean or an object, got %s",
                                   zlb_config_got(tls, g, sizeof(g)));
        zlb_config_pop(c, mark);
    }
    return 0;
}

static int parse_targets(zlb_config_ctx_t *c, const json_t *v, zlb_config_t *cfg)
{
    char g[64];
    size_t mark = zlb_config_push(c, "targets");

    if (!json_is_array(v))
        return zlb_config_fail(c, "expected an array of targets, got %s",
                               zlb_config_got(v, g, sizeof(g)));
    if (json_array_size(v) == 0)
        return zlb_config_fail(c, "must list at least one target");
    if (json_array_size(v) > MAX_TARGETS)
        return zlb_config_fail(c, "at most %d targets", MAX_TARGETS);
    cfg->targets = zlb_xcalloc(json_array_size(v), sizeof(*cfg->targets));
    for (size_t i = 0; i < json_array_size(v); i++) {
        zlb_target_config_t *t = &cfg->targets[i];
        t->weight = 1;
        zlb_config_tls_defaults(&t->tls);
        cfg->ntargets = i + 1;
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        TRY(parse_target(c, json_array_get(v, i), t));
        zlb_config_pop(c, m2);
    }
    zlb_config_pop(c, mark);
    return 0;
}

static int parse_embedded(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {
        "mode",         "listen",       "backlog",       "threads",     "tls",
        "ca_out_file",  "accept_delay", "resumption",    "http_status", "http_body_size",
        "http_chunked", "http_delay",   "http_delay_max"};
    static const char *const http_keys[] = {"http_status", "http_body_size", "http_chunked",
                                            "http_delay", "http_delay_max"};
    zlb_embedded_target_config_t *e = &cfg->embedded_target;
    int64_t x;
    int m;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    m = (int)e->mode;
    TRY(zlb_config_get_enum(c, o, "mode", &zlb_config_mode_names, &m));
    e->mode = (zlb_serve_mode_t)m;
    TRY(zlb_config_get_string(c, o, "listen", false, &e->listen));
    if (json_object_get(o, "listen"))
        TRY(zlb_config_check_listen(c, "embedded_target.listen", e->listen, NULL));
    x = e->backlog;
    TRY(zlb_config_get_int(c, o, "backlog", 1, 1 << 20, &x));
    e->backlog = (int)x;
    x = e->threads;
    TRY(zlb_config_get_int(c, o, "threads", 1, ZLB_CONFIG_MAX_POLLERS, &x));
    e->threads = (int)x;
    TRY(zlb_config_get_bool(c, o, "tls", &e->tls));
    TRY(zlb_config_get_string(c, o, "ca_out_file", true, &e->ca_out_file));
    TRY(zlb_config_get_duration(c, o, "accept_delay", 0, &e->accept_delay_ns));
    TRY(zlb_config_get_number(c, o, "resumption", 0, 1, "0..1", &e->resumption));
    for (size_t i = 0; i < ZLB_ARRAY_LEN(http_keys); i++) {
        if (json_object_get(o, http_keys[i]) && e->mode != ZLB_SERVE_HTTP) {
            char path[64];
            snprintf(path, sizeof(path), "embedded_target.%s", http_keys[i]);
            return zlb_config_fail_at(c, path, "applies to mode \"http\" only");
        }
    }
    x = e->http_status;
    TRY(zlb_config_get_int(c, o, "http_status", 200, 599, &x));
    e->http_status = (int)x;
    /* The target builds each response whole at start: the cap bounds that memory. */
    TRY(zlb_config_get_size(c, o, "http_body_size", 0, 64ull << 20, &e->http_body_size));
    TRY(zlb_config_get_bool(c, o, "http_chunked", &e->http_chunked));
    TRY(zlb_config_get_duration(c, o, "http_delay", 0, &e->http_delay_ns));
    TRY(zlb_config_get_duration(c, o, "http_delay_max", 0, &e->http_delay_max_ns));
    if (e->http_delay_max_ns && e->http_delay_max_ns < e->http_delay_ns)
        return zlb_config_fail_at(c, "embedded_target.http_delay_max",
                                  "is below http_delay (the random delay is drawn between them)");
    return 0;
}

static int parse_ramp(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"duration", "start_rate"};
    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_duration(c, o, "duration", 0, &cfg->ramp.duration_ns));
    TRY(zlb_config_get_number(c, o, "start_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE, "0..1e9",
                              &cfg->ramp.start_rate));
    return 0;
}

static int parse_workload(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"type",
                                       "lifetime",
                                       "reconnect",
                                       "backoff_min",
                                       "backoff_max",
                                       "message_size",
                                       "message_interval",
                                       "requests",
                                       "keepalive",
                                       "pipeline",
                                       "request_rate",
                                       "max_response_size",
                                       "max_header_size",
                                       "message",
                                       "message_hex",
                                       "message_file",
                                       "expect",
                                       "expect_prefix",
                                       "max_reply_size",
                                       "message_rate",
                                       "direction",
                                       "chunk_size",
                                       "rate",
                                       "first_message",
                                       "first_message_file",
                                       "stall_timeout",
                                       "stall_close"};
    zlb_workload_config_t *w = &cfg->workload;
    int t = (int)w->type;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_enum(c, o, "type", &zlb_config_work_names, &t));
    w->type = (zlb_work_type_t)t;
    TRY(zlb_config_get_duration(c, o, "lifetime", 1, &w->lifetime_ns));
    TRY(zlb_config_get_bool(c, o, "reconnect", &w->reconnect));
    TRY(zlb_config_get_duration(c, o, "backoff_min", 1, &w->backoff_min_ns));
    TRY(zlb_config_get_duration(c, o, "backoff_max", 1, &w->backoff_max_ns));
    TRY(zlb_config_get_size(c, o, "message_size", 1, MAX_MESSAGE_SIZE, &w->message_size));
    TRY(zlb_config_get_duration(c, o, "message_interval", 0, &w->message_interval_ns));
    TRY(zlb_config_parse_http(c, o, w));
    TRY(zlb_config_parse_message(c, o, w));
    TRY(zlb_config_parse_stream(c, o, w));
    return 0;
}

static int parse_keepalive(zlb_config_ctx_t *c, const json_t *o, zlb_socket_config_t *s)
{
    static const char *const keys[] = {"idle", "interval", "count"};
    int64_t x = s->keepalive_count;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    s->keepalive = true;
    /* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds, up to 32767. */
    TRY(zlb_config_get_duration(c, o, "idle", ZLB_NS_PER_SEC, &s->keepalive_idle_ns));
    TRY(zlb_config_get_duration(c, o, "interval", ZLB_NS_PER_SEC, &s->keepalive_interval_ns));
    TRY(zlb_config_get_int(c, o, "count", 1, 127, &x));
    s->keepalive_count = (int)x;
    if (s->keepalive_idle_ns % ZLB_NS_PER_SEC || s->keepalive_idle_ns > 32767 * ZLB_NS_PER_SEC)
        return zlb_config_fail_at(c, "socket.keepalive.idle", "must be whole seconds, 1s..32767s");
    if (s->keepalive_interval_ns % ZLB_NS_PER_SEC ||
        s->keepalive_interval_ns > 32767 * ZLB_NS_PER_SEC)
        return zlb_config_fail_at(c, "socket.keepalive.interval",
                                  "must be whole seconds, 1s..32767s");
    return 0;
}

static int parse_socket(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"nodelay", "sndbuf", "rcvbuf", "close", "keepalive"};
    zlb_socket_config_t *s = &cfg->socket;
    int e = (int)s->close;
    char g[64];

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_bool(c, o, "nodelay", &s->nodelay));
    TRY(zlb_config_get_size(c, o, "sndbuf", 0, MAX_SOCKBUF, &s->sndbuf));
    TRY(zlb_config_get_size(c, o, "rcvbuf", 0, MAX_SOCKBUF, &s->rcvbuf));
    TRY(zlb_config_get_enum(c, o, "close", &zlb_config_close_names, &e));
    s->close = (zlb_close_mode_t)e;
    json_t *ka = json_object_get(o, "keepalive");
    if (ka) {
        size_t mark = zlb_config_push(c, "keepalive");
        if (json_is_boolean(ka))
            s->keepalive = json_is_true(ka); /* true: the default timings */
        else if (json_is_object(ka))
            TRY(parse_keepalive(c, ka, s));
        else
            return zlb_config_fail(c, "expected an object or a boolean, got %s",
                                   zlb_config_got(ka, g, sizeof(g)));
        zlb_config_pop(c, mark);
    }
    return 0;
}

static int parse_control(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"listen", "token_file", "address_file", "metrics_bucket_min",
                                       "metrics_bucket_max"};
    zlb_control_config_t *ctl = &cfg->control;

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_string(c, o, "listen", true, &ctl->listen));
    ctl->enabled = ctl->listen != NULL;
    if (ctl->listen)
        TRY(zlb_config_check_listen(c, "control.listen", ctl->listen, NULL));
    TRY(zlb_config_get_string(c, o, "token_file", true, &ctl->token_file));
    TRY(zlb_config_get_string(c, o, "address_file", true, &ctl->address_file));
    TRY(zlb_config_get_duration(c, o, "metrics_bucket_min", 10, &ctl->metrics_bucket_min_ns));
    TRY(zlb_config_get_duration(c, o, "metrics_bucket_max", 10, &ctl->metrics_bucket_max_ns));
    /* The bucket ladder holds at most ten decades (zlb_prom_buckets_init). */
    if (ctl->metrics_bucket_max_ns <= ctl->metrics_bucket_min_ns ||
        ctl->metrics_bucket_max_ns / ctl->metrics_bucket_min_ns >= 10000000000ull)
        return zlb_config_fail_at(c, "control.metrics_bucket_max",
                                  "must be above control.metrics_bucket_min and within ten "
                                  "decades of it");
    return 0;
}

static int parse_report(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"file", "percentiles", "html"};
    zlb_report_config_t *r = &cfg->report;
    char g[64];

    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_string(c, o, "file", true, &r->file));
    json_t *hv = json_object_get(o, "html");
    if (json_is_boolean(hv)) {
        r->html_beside = json_is_true(hv);
        free(r->html);
        r->html = NULL;
    } else if (hv) {
        if (!json_is_string(hv) && !json_is_null(hv)) {
            size_t m = zlb_config_push(c, "html");
            int rc = zlb_config_fail(c, "expected true, false, null or a file name, got %s",
                                     zlb_config_got(hv, g, sizeof(g)));
            zlb_config_pop(c, m);
            return rc;
        }
        r->html_beside = false;
        TRY(zlb_config_get_string(c, o, "html", true, &r->html));
    }
    json_t *pv = json_object_get(o, "percentiles");
    if (!pv)
        return 0;
    size_t mark = zlb_config_push(c, "percentiles");
    if (!json_is_array(pv))
        return zlb_config_fail(c, "expected an array of numbers, got %s",
                               zlb_config_got(pv, g, sizeof(g)));
    size_t n = json_array_size(pv);
    if (n == 0 || n > MAX_PERCENTILES)
        return zlb_config_fail(c, "expected 1..%d percentiles, got %zu", MAX_PERCENTILES, n);
    double *p = zlb_xcalloc(n, sizeof(double));
    free(r->percentiles);
    r->percentiles = p;
    r->npercentiles = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        TRY(zlb_config_check_number(c, json_array_get(pv, i), 0, 100, true, true,
                                    "greater than 0 and less than 100", &p[i]));
        for (size_t k = 0; k < i; k++)
            if (p[k] == p[i])
                return zlb_config_fail(c, "percentile %s is listed twice",
                                       zlb_config_got(json_array_get(pv, i), g, sizeof(g)));
        /* Reports name a percentile by its digits without the dot (99.9 -> p999): two values
         * with the same digits, or one that takes a fixed key's name, would overwrite each other.
         */
        static const double fixed[] = {50, 90, 99, 99.9};
        char ki[32], kk[32];
        zlb_percentile_key(p[i], ki, sizeof(ki));
        for (size_t k = 0; k < ZLB_ARRAY_LEN(fixed) + i; k++) {
            double other = k < ZLB_ARRAY_LEN(fixed) ? fixed[k] : p[k - ZLB_ARRAY_LEN(fixed)];
            zlb_percentile_key(other, kk, sizeof(kk));
            if (other != p[i] && strcmp(ki, kk) == 0)
                return zlb_config_fail(c, "percentile %g would be reported as %s, the name of %g",
                                       p[i], ki, other);
        }
        r->npercentiles = i + 1;
        zlb_config_pop(c, m2);
    }
    zlb_config_pop(c, mark);
    return 0;
}

static int parse_threshold_expr(const char *s, zlb_op_t *op, double *value)
{
    static const struct {
        const char *text;
        zlb_op_t op;
    } ops[] = {{"<=", ZLB_OP_LE}, {">=", ZLB_OP_GE}, {"==", ZLB_OP_EQ},
               {"!=", ZLB_OP_NE}, {"<", ZLB_OP_LT},  {">", ZLB_OP_GT}};
    size_t i;

    while (*s == ' ' || *s == '\t')
        s++;
    for (i = 0; i < ZLB_ARRAY_LEN(ops); i++) {
        size_t n = strlen(ops[i].text);
        if (strncmp(s, ops[i].text, n) == 0) {
            *op = ops[i].op;
            s += n;
            break;
        }
    }
    if (i == ZLB_ARRAY_LEN(ops))
        return -EINVAL;
    while (*s == ' ' || *s == '\t')
        s++;
    const char *end;
    if (strncmp(s, "true", 4) == 0) {
        *value = 1;
        end = s + 4;
    } else if (strncmp(s, "false", 5) == 0) {
        *value = 0;
        end = s + 5;
    } else {
        /* strtod would also take "inf", "nan" and hex; a threshold is a plain decimal. */
        if (!(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9')))
            return -EINVAL;
        for (const char *q = s; *q && *q != ' ' && *q != '\t'; q++)
            if (*q == 'x' || *q == 'X')
                return -EINVAL;
        char *e;
        *value = strtod(s, &e);
        if (e == s || !isfinite(*value))
            return -EINVAL;
        end = e;
    }
    while (*end == ' ' || *end == '\t')
        end++;
    return *end == '\0' ? 0 : -EINVAL;
}

static int parse_thresholds(zlb_config_ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    const char *key;
    json_t *v;
    char g[64];
    size_t n = json_object_size(o);

    if (n == 0)
        return 0;
    cfg->thresholds = zlb_xcalloc(n, sizeof(*cfg->thresholds));
    json_object_foreach((json_t *)o, key, v)
    {
        zlb_threshold_t *t = &cfg->thresholds[cfg->nthresholds];
        size_t mark = zlb_config_push(c, key);
        if (key[0] == '\0')
            return zlb_config_fail_key(c, "empty metric path");
        if (c->validate_path && !c->validate_path(key))
            return zlb_config_fail_key(c, "unknown metric path '%s'", zlb_config_show(key));
        if (!json_is_string(v))
            return zlb_config_fail(
                c, "expected a condition string like \"< 5000\" or \"== false\", got %s",
                zlb_config_got(v, g, sizeof(g)));
        if (parse_threshold_expr(json_string_value(v), &t->op, &t->value) < 0)
            return zlb_config_fail(
                c,
                "invalid condition \"%s\" (expected \"OP VALUE\": OP one of < <= > >= "
                "== !=, VALUE a number, true or false)",
                zlb_config_show(json_string_value(v)));
        t->path = zlb_xstrdup(key);
        t->expr = zlb_xstrdup(json_string_value(v));
        cfg->nthresholds++;
        zlb_config_pop(c, mark);
    }
    return 0;
}

/* Expands source_ips into addresses, rejecting overlaps so no address gets twice the load. */
typedef struct src_entry {
    zlb_config_ip_t ip;
    size_t entry; /* index in source_ips, to name the later of two overlapping entries */
} src_entry_t;

static int cmp_src(const void *a, const void *b)
{
    const src_entry_t *x = a, *y = b;
    if (x->ip.family != y->ip.family)
        return x->ip.family < y->ip.family ? -1 : 1;
    int d = memcmp(x->ip.b, y->ip.b, sizeof(x->ip.b));
    if (d)
        return d;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

static int parse_source_ips(zlb_config_ctx_t *c, const json_t *v, zlb_config_t *cfg)
{
    char g[64];
    uint64_t total = 0;
    src_entry_t *all = NULL;
    int rc = 0;
    size_t mark = zlb_config_push(c, "source_ips");

    if (!json_is_array(v))
        return zlb_config_fail(c, "expected an array of addresses or ranges (\"A-B\"), got %s",
                               zlb_config_got(v, g, sizeof(g)));
    size_t n = json_array_size(v);
    if (n == 0) {
        zlb_config_pop(c, mark);
        return 0;
    }
    cfg->source_ips = zlb_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        zlb_config_ip_t first, last;
        uint64_t count;
        const char *why;
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        if (!json_is_string(s))
            return zlb_config_fail(c, "expected an address or a range \"A-B\", got %s",
                                   zlb_config_got(s, g, sizeof(g)));
        if (zlb_config_ip_range_parse(json_string_value(s), &first, &last, &count, &why) < 0)
            return zlb_config_fail(c, "invalid source address \"%s\": %s",
                                   zlb_config_show(json_string_value(s)), why);
        if (count > ZLB_CONFIG_MAX_SOURCE_ADDRS)
            return zlb_config_fail(c, "range \"%s\" covers more than %u addresses",
                                   zlb_config_show(json_string_value(s)),
                                   ZLB_CONFIG_MAX_SOURCE_ADDRS);
        total += count;
        if (total > ZLB_CONFIG_MAX_SOURCE_ADDRS)
            return zlb_config_fail(c, "source_ips expand to more than %u addresses",
                                   ZLB_CONFIG_MAX_SOURCE_ADDRS);
        cfg->source_ips[cfg->nsource_ips++] = zlb_xstrdup(json_string_value(s));
        zlb_config_pop(c, m2);
    }

    all = zlb_xcalloc((size_t)total, sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        zlb_config_ip_t first, last;
        uint64_t count;
        const char *why;
        zlb_config_ip_range_parse(cfg->source_ips[i], &first, &last, &count, &why);
        for (uint64_t j = 0; j < count; j++, k++) {
            all[k].ip = first;
            all[k].entry = i;
            zlb_config_ip_next(&first);
        }
    }
    cfg->source_addrs = zlb_xcalloc((size_t)total, sizeof(*cfg->source_addrs));
    for (k = 0; k < total; k++)
        zlb_config_ip_to_sockaddr(&all[k].ip, &cfg->source_addrs[k]);
    cfg->nsource = (size_t)total;

    qsort(all, (size_t)total, sizeof(*all), cmp_src);
    for (k = 1; k < total; k++) {
        if (all[k].ip.family == all[k - 1].ip.family &&
            memcmp(all[k].ip.b, all[k - 1].ip.b, sizeof(all[k].ip.b)) == 0) {
            char addr[INET6_ADDRSTRLEN];
            size_t m2 = zlb_config_path_push_index(&c->path, all[k].entry);
            inet_ntop(all[k].ip.family, all[k].ip.b, addr, sizeof(addr));
            rc =
                zlb_config_fail(c, "address %s is also in source_ips[%zu]", addr, all[k - 1].entry);
            zlb_config_pop(c, m2);
            break;
        }
    }
    free(all);
    zlb_config_pop(c, mark);
    return rc;
}

/* "processes": N (1..ZLB_PROCESSES_MAX) or "auto". */
static int parse_processes(zlb_config_ctx_t *c, const json_t *root, zlb_config_t *cfg)
{
    const json_t *v = json_object_get(root, "processes");
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, "processes");
    int rc = 0;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "auto") == 0)
            cfg->processes = ZLB_PROCESSES_AUTO;
        else
            rc = zlb_config_fail(c, "expected an integer 1..%u or \"auto\", got \"%s\"",
                                 ZLB_PROCESSES_MAX, json_string_value(v));
    } else {
        int64_t x;
        rc = zlb_config_check_int(c, v, 1, ZLB_PROCESSES_MAX, &x);
        if (rc == 0)
            cfg->processes = (uint32_t)x;
    }
    zlb_config_pop(c, mark);
    return rc;
}

int zlb_config_parse_root(zlb_config_ctx_t *c, const json_t *root, zlb_config_t *cfg)
{
    static const char *const keys[] = {
        "$schema",       "pollers",        "targets",         "embedded_target", "connections",
        "connect_rate",  "ramp",           "connect_timeout", "duration",        "warmup",
        "drain_timeout", "workload",       "source_ips",      "family",          "dns_ttl",
        "socket",        "control",        "report",          "thresholds",      "abort_on_fail",
        "abort_grace",   "stats_interval", "log_level",       "shard",           "send_timeout",
        "close_rate",    "processes",      "stages"};
    int64_t x;
    int e;

    TRY(zlb_config_check_keys(c, root, keys, ZLB_ARRAY_LEN(keys)));
    json_t *schema = json_object_get(root, "$schema");
    if (schema && !json_is_string(schema)) {
        size_t mark = zlb_config_push(c, "$schema");
        char g[64];
        int rc =
            zlb_config_fail(c, "expected a string, got %s", zlb_config_got(schema, g, sizeof(g)));
        zlb_config_pop(c, mark);
        return rc;
    }
    TRY(zlb_config_get_section(c, root, "pollers", parse_pollers, cfg));

    json_t *targets = json_object_get(root, "targets");
    if (targets) {
        TRY(parse_targets(c, targets, cfg));
        cfg->embedded_target.enabled = false;
    }
    if (json_object_get(root, "embedded_target")) {
        cfg->embedded_target.enabled = true;
        TRY(zlb_config_get_section(c, root, "embedded_target", parse_embedded, cfg));
    }

    /* With stages the top-level connections are where the first stage starts: 0 (the default
     * there) starts from none, as a k6 profile does. */
    bool staged = json_object_get(root, "stages") || cfg->nstages;
    if (json_object_get(root, "stages") && !json_object_get(root, "connections"))
        cfg->connections = 0;
    x = (int64_t)cfg->connections;
    TRY(zlb_config_get_int(c, root, "connections", staged ? 0 : 1, ZLB_CONFIG_MAX_CONNECTIONS, &x));
    cfg->connections = (uint64_t)x;
    TRY(zlb_config_get_number(c, root, "connect_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                              "0..1e9 (0 = unlimited)", &cfg->connect_rate));
    TRY(zlb_config_get_number(c, root, "close_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                              "0..1e9 (0 = as fast as allowed)", &cfg->close_rate));
    TRY(zlb_config_get_section(c, root, "ramp", parse_ramp, cfg));
    TRY(zlb_config_get_duration(c, root, "connect_timeout", ZLB_NS_PER_MS,
                                &cfg->connect_timeout_ns));
    TRY(zlb_config_get_duration(c, root, "send_timeout", ZLB_NS_PER_MS, &cfg->send_timeout_ns));
    TRY(zlb_config_get_duration(c, root, "duration", 0, &cfg->duration_ns));
    TRY(zlb_config_get_duration(c, root, "warmup", 0, &cfg->warmup_ns));
    TRY(zlb_config_get_duration(c, root, "drain_timeout", 0, &cfg->drain_timeout_ns));
    TRY(zlb_config_get_section(c, root, "workload", parse_workload, cfg));
    TRY(zlb_config_parse_root_stages(c, root, cfg));
    json_t *src = json_object_get(root, "source_ips");
    if (src)
        TRY(parse_source_ips(c, src, cfg));
    e = (int)cfg->family;
    TRY(zlb_config_get_enum(c, root, "family", &zlb_config_family_names, &e));
    cfg->family = (zlb_family_t)e;
    TRY(zlb_config_get_duration(c, root, "dns_ttl", 0, &cfg->dns_ttl_ns));
    TRY(zlb_config_get_section(c, root, "socket", parse_socket, cfg));
    TRY(zlb_config_get_section(c, root, "control", parse_control, cfg));
    TRY(zlb_config_get_section(c, root, "report", parse_report, cfg));
    TRY(zlb_config_get_section(c, root, "thresholds", parse_thresholds, cfg));
    TRY(zlb_config_get_bool(c, root, "abort_on_fail", &cfg->abort_on_fail));
    TRY(zlb_config_get_duration(c, root, "abort_grace", 0, &cfg->abort_grace_ns));
    TRY(zlb_config_get_duration(c, root, "stats_interval", 10 * ZLB_NS_PER_MS,
                                &cfg->stats_interval_ns));
    e = (int)cfg->log_level;
    TRY(zlb_config_get_enum(c, root, "log_level", &zlb_config_log_level_names, &e));
    cfg->log_level = (zlb_log_level_t)e;
    json_t *shard = json_object_get(root, "shard");
    if (shard)
        TRY(zlb_config_parse_shard(c, shard, cfg));
    TRY(parse_processes(c, root, cfg));
    return 0;
}
