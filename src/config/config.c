/* config.c -- strict JSON config loading: the file, its defaults, and the public entry points.
 * The pieces: config_get.c (typed getters, messages), config_sections.c (one parser per section),
 * config_check.c (cross-field rules), config_json.c (back to JSON), config_pos.c (places in the
 * text), config_names.c (the enum name tables), config_addr.c (addresses). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

#define MAX_FILE_SIZE (64u << 20)

static bool all_whitespace(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* Containers hand secrets over as files named in the environment (a mounted secret and a
 * variable naming it); the variable wins over the file's key so that one image and one config
 * serve every deployment. Set and empty counts as unset. */
static void apply_environment(zlb_config_t *cfg)
{
    const char *token_file = getenv(ZLB_CONFIG_TOKEN_FILE_ENV);
    if (token_file && token_file[0]) {
        free(cfg->control.token_file);
        cfg->control.token_file = zlb_xstrdup(token_file);
    }
}

static int parse_text(const char *text, size_t len, const char *name,
                      zlb_metric_path_cb validate_path, zlb_config_t **out, zlb_config_error_t *err)
{
    zlb_config_ctx_t c = {.name = name ? name : "<config>",
                          .text = text,
                          .textlen = len,
                          .err = err,
                          .validate_path = validate_path};
    json_error_t jerr;
    zlb_config_t *cfg = NULL;
    json_t *root = NULL;
    int rc = -EINVAL;

    *out = NULL;
    err->message[0] = '\0';
    /* Some editors start UTF-8 files with a byte order mark; it is not JSON, nor a column. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
        c.text = text;
        c.textlen = len;
    }
    if (all_whitespace(text, len)) {
        zlb_config_set_message(err, "%s: empty file (expected a JSON object)", c.name);
        goto out;
    }
    /* No JSON_DECODE_ANY, no JSON_DISABLE_EOF_CHECK: one object or array, nothing after it. */
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        zlb_config_path_t dup;
        char *key, shortpath[ZLB_CONFIG_PATH_SHOWN + 8], shortkey[ZLB_CONFIG_KEY_SHOWN + 8];
        int line, col;
        if (json_error_code(&jerr) == json_error_duplicate_key &&
            zlb_config_pos_first_duplicate(text, len, &dup, &key, &line, &col) == 0) {
            zlb_config_set_message(
                err, "%s:%d:%d: %s: duplicate key '%s'", c.name, line, col,
                zlb_config_abbrev(zlb_config_path_str(&dup), ZLB_CONFIG_PATH_SHOWN, shortpath,
                                  sizeof(shortpath)),
                zlb_config_abbrev(key, ZLB_CONFIG_KEY_SHOWN, shortkey, sizeof(shortkey)));
            zlb_config_path_dispose(&dup);
            free(key);
        } else {
            zlb_config_set_message(err, "%s:%d:%d: invalid JSON: %s", c.name, jerr.line,
                                   jerr.column, jerr.text);
        }
        goto out;
    }
    if (!json_is_object(root)) {
        int line = 1, col = 1;
        zlb_config_pos_find(text, len, "", false, &line, &col);
        zlb_config_set_message(err, "%s:%d:%d: the top level must be an object, got %s", c.name,
                               line, col, zlb_config_type_name(root));
        goto out;
    }

    cfg = zlb_xmalloc(sizeof(*cfg));
    zlb_config_init_default(cfg);
    rc = zlb_config_parse_root(&c, root, cfg);
    if (rc < 0)
        goto out;
    apply_environment(cfg);
    rc = zlb_config_check_cross(&c, cfg);
    if (rc < 0)
        goto out;
    *out = cfg;
    cfg = NULL;
    rc = 0;
out:
    zlb_config_path_dispose(&c.path);
    zlb_config_destroy(cfg);
    json_decref(root);
    return rc;
}

/* ---- public ------------------------------------------------------------------------------- */

void zlb_config_init_default(zlb_config_t *cfg)
{
    static const double percentiles[] = {50, 90, 99, 99.9};

    memset(cfg, 0, sizeof(*cfg));
    cfg->pollers.cpu_affinity = true;
    cfg->pollers.priority = ZLB_CFG_PRIO_NORMAL;
    cfg->pollers.nice = -10;
    cfg->pollers.rt_policy = SCHED_FIFO;
    cfg->pollers.prefer_current = true;
    cfg->pollers.load_window_ns = ZLB_NS_PER_SEC;

    cfg->embedded_target.enabled = true;
    cfg->embedded_target.mode = ZLB_SERVE_ECHO;
    cfg->embedded_target.listen = zlb_xstrdup("127.0.0.1:0");
    cfg->embedded_target.backlog = 4096;
    cfg->embedded_target.threads = 1;
    cfg->embedded_target.http_status = 200;
    cfg->embedded_target.http_body_size = 2;

    cfg->connections = 2000;
    cfg->connect_rate = 5000;
    cfg->connect_timeout_ns = 5 * ZLB_NS_PER_SEC;
    cfg->send_timeout_ns = 10 * ZLB_NS_PER_SEC;
    cfg->duration_ns = 10 * ZLB_NS_PER_SEC;
    cfg->drain_timeout_ns = 5 * ZLB_NS_PER_SEC;

    cfg->workload.type = ZLB_WORK_HOLD;
    cfg->workload.lifetime_ns = ZLB_NS_PER_SEC;
    cfg->workload.reconnect = true;
    cfg->workload.backoff_min_ns = 100 * ZLB_NS_PER_MS;
    cfg->workload.backoff_max_ns = 5 * ZLB_NS_PER_SEC;
    cfg->workload.message_size = 64;
    cfg->workload.message_interval_ns = ZLB_NS_PER_SEC;
    cfg->workload.message_len = 64;
    cfg->workload.expect = ZLB_EXPECT_ECHO;
    cfg->workload.max_reply_size = 64 * 1024;
    cfg->workload.keepalive = true;
    cfg->workload.pipeline = 1;
    cfg->workload.max_response_size = 64ull << 20;
    cfg->workload.max_header_size = 16 * 1024;
    cfg->workload.direction = ZLB_STREAM_SEND;
    cfg->workload.chunk_size = 64 * 1024;

    cfg->family = ZLB_FAMILY_ANY;
    cfg->dns_ttl_ns = 60 * ZLB_NS_PER_SEC;

    cfg->socket.nodelay = true;
    cfg->socket.close = ZLB_CLOSE_FIN;
    cfg->socket.keepalive_idle_ns = 30 * ZLB_NS_PER_SEC;
    cfg->socket.keepalive_interval_ns = 5 * ZLB_NS_PER_SEC;
    cfg->socket.keepalive_count = 3;

    cfg->control.enabled = true;
    cfg->control.listen = zlb_xstrdup("127.0.0.1:8089");
    cfg->control.metrics_bucket_min_ns = 10 * ZLB_NS_PER_US;
    cfg->control.metrics_bucket_max_ns = 100 * ZLB_NS_PER_SEC;

    cfg->report.file = zlb_xstrdup("zlbench-report.json");
    cfg->report.percentiles = zlb_xmalloc(sizeof(percentiles));
    memcpy(cfg->report.percentiles, percentiles, sizeof(percentiles));
    cfg->report.npercentiles = ZLB_ARRAY_LEN(percentiles);

    cfg->stats_interval_ns = ZLB_NS_PER_SEC;
    cfg->processes = 1;
    cfg->log_level = ZLB_LOG_INFO;
}

int zlb_config_parse(const char *text, const char *name, zlb_metric_path_cb validate_path,
                     zlb_config_t **out, zlb_config_error_t *err)
{
    return parse_text(text, strlen(text), name, validate_path, out, err);
}

int zlb_config_load(const char *path, zlb_metric_path_cb validate_path, zlb_config_t **out,
                    zlb_config_error_t *err)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    int rc, fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        zlb_config_set_message(err, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        zlb_config_set_message(err, "%s: cannot stat: %s", path, strerror(-rc));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        zlb_config_set_message(err, "%s: cannot read: %s", path, strerror(-rc));
        goto out;
    }
    /* Size from reading, not from stat: pipes and /proc files report 0. */
    size_t cap = 4096;
    text = zlb_xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_SIZE) {
                rc = -EFBIG;
                zlb_config_set_message(err, "%s: file too large (over %u MiB)", path,
                                       MAX_FILE_SIZE >> 20);
                goto out;
            }
            cap *= 2;
            text = zlb_xrealloc(text, cap + 1);
        }
        ssize_t n = read(fd, text + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            zlb_config_set_message(err, "%s: cannot read: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    rc = parse_text(text, len, path, validate_path, out, err);
    if (rc == 0)
        (*out)->source_path = zlb_xstrdup(path);
out:
    free(text);
    close(fd);
    return rc;
}

int zlb_config_check(const zlb_config_t *cfg, zlb_config_error_t *err)
{
    /* No text here: values may come from the command line, so no line:column is claimed. */
    zlb_config_ctx_t c = {.name = cfg->source_path, .err = err};
    err->message[0] = '\0';
    int rc = zlb_config_check_cross(&c, cfg);
    zlb_config_path_dispose(&c.path);
    return rc;
}

void zlb_config_dispose(zlb_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->source_path);
    free(cfg->pollers.cpus);
    for (size_t i = 0; i < cfg->ntargets; i++) {
        free(cfg->targets[i].host);
        zlb_config_tls_dispose(&cfg->targets[i].tls);
    }
    free(cfg->targets);
    for (size_t i = 0; i < cfg->workload.nrequests; i++) {
        zlb_http_request_config_t *r = &cfg->workload.requests[i];
        free(r->method);
        free(r->path);
        for (size_t h = 0; h < r->nheaders; h++) {
            free(r->headers[h].name);
            free(r->headers[h].value);
        }
        free(r->headers);
        free(r->body);
        free(r->body_file);
    }
    free(cfg->workload.requests);
    zlb_config_message_dispose(&cfg->workload);
    free(cfg->workload.first_message);
    free(cfg->workload.first_message_file);
    free(cfg->embedded_target.listen);
    free(cfg->embedded_target.ca_out_file);
    free(cfg->source_addrs);
    for (size_t i = 0; i < cfg->nsource_ips; i++)
        free(cfg->source_ips[i]);
    free(cfg->source_ips);
    free(cfg->control.listen);
    free(cfg->control.token_file);
    free(cfg->control.address_file);
    free(cfg->report.file);
    free(cfg->report.html);
    free(cfg->report.percentiles);
    for (size_t i = 0; i < cfg->nthresholds; i++) {
        free(cfg->thresholds[i].path);
        free(cfg->thresholds[i].expr);
    }
    free(cfg->thresholds);
    free(cfg->unsharded_json);
    free(cfg->stages);
    memset(cfg, 0, sizeof(*cfg));
}

void zlb_config_destroy(zlb_config_t *cfg)
{
    if (!cfg)
        return;
    zlb_config_dispose(cfg);
    free(cfg);
}
