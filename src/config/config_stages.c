/* config_stages.c -- the live-changeable values: the workload's whole-run rate key, and the
 * "stages" of a load profile (the file's, or a PATCH /run body's) parsed with the file's rules. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

/* One place that says which key is a workload's live rate: a workload that gains one adds its
 * line here and the stages, PATCH /run and the engine's live rate follow. A stream's is per
 * connection (workload.rate, bytes/s), the others' for the whole run. */
const char *zlb_config_rate_key(zlb_work_type_t type)
{
    switch (type) {
    case ZLB_WORK_HTTP:
        return "request_rate";
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        return "message_rate";
    case ZLB_WORK_STREAM:
        return "stream_rate";
    default:
        return NULL;
    }
}

double zlb_config_workload_rate(const zlb_config_t *cfg)
{
    switch (cfg->workload.type) {
    case ZLB_WORK_HTTP:
        return cfg->workload.request_rate;
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        return cfg->workload.message_rate;
    case ZLB_WORK_STREAM:
        return cfg->workload.rate;
    default:
        return 0;
    }
}

void zlb_config_set_workload_rate(zlb_config_t *cfg, double rate)
{
    switch (cfg->workload.type) {
    case ZLB_WORK_HTTP:
        cfg->workload.request_rate = rate;
        break;
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        cfg->workload.message_rate = rate;
        break;
    case ZLB_WORK_STREAM:
        cfg->workload.rate = rate;
        break;
    default:
        break;
    }
}

int zlb_config_get_live_rate(zlb_config_ctx_t *c, const json_t *o, const char *key,
                             const zlb_config_t *cfg, double *out)
{
    if (cfg->workload.type != ZLB_WORK_STREAM)
        return zlb_config_get_number(c, o, key, 0, 1e9, "0..1e9", out);
    TRY(zlb_config_get_number(c, o, key, 0, ZLB_CONFIG_MAX_STREAM_RATE, "0..1e12", out));
    if (*out > 0 && cfg->workload.direction == ZLB_STREAM_RECEIVE) {
        size_t mark = zlb_config_push(c, key);
        int rc = zlb_config_fail(c, ZLB_CONFIG_STREAM_RECEIVE_RATE);
        zlb_config_pop(c, mark);
        return rc;
    }
    return 0;
}

bool zlb_config_rate_is_live(const zlb_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nstages; i++)
        if (cfg->stages[i].set & ZLB_STAGE_RATE)
            return true;
    return false;
}

/* ---- "stages" ----------------------------------------------------------------------------- */

/* The rate keys some workload has: one a stage may not use with another workload is named as
 * what it is, not as an unknown key. */
static const char *const rate_keys[] = {"request_rate", "message_rate", "stream_rate", "rate"};

static int parse_stage(zlb_config_ctx_t *c, const zlb_config_t *cfg, const json_t *o,
                       zlb_stage_t *st)
{
    const char *rate_key = zlb_config_rate_key(cfg->workload.type);
    const char *keys[] = {"duration", "connections", "connect_rate", "close_rate", rate_key};
    size_t nkeys = rate_key ? 5 : 4;
    const char *wl = zlb_config_name(&zlb_config_work_names, (int)cfg->workload.type);
    char g[64];
    int64_t x;

    if (!json_is_object(o))
        return zlb_config_fail(c, "expected a stage object ({\"duration\": \"30s\", ...}), got %s",
                               zlb_config_got(o, g, sizeof(g)));
    for (size_t k = 0; k < ZLB_ARRAY_LEN(rate_keys); k++) {
        if (!json_object_get(o, rate_keys[k]) || (rate_key && !strcmp(rate_key, rate_keys[k])))
            continue;
        size_t mark = zlb_config_push(c, rate_keys[k]);
        int rc = rate_key ? zlb_config_fail_key(c, "the %s workload's rate is %s, not %s", wl,
                                                rate_key, rate_keys[k])
                          : zlb_config_fail_key(c, "the %s workload has no rate to set", wl);
        zlb_config_pop(c, mark);
        return rc;
    }
    TRY(zlb_config_check_keys(c, o, keys, nkeys));
    *st = (zlb_stage_t){0};
    if (!json_object_get(o, "duration"))
        return zlb_config_fail(c, "missing \"duration\" (how long the stage moves its values; "
                                  "\"0s\" for a jump)");
    TRY(zlb_config_get_duration(c, o, "duration", 0, &st->duration_ns));
    if (json_object_get(o, "connections")) {
        TRY(zlb_config_get_int(c, o, "connections", 0, ZLB_CONFIG_MAX_CONNECTIONS, &x));
        st->to.connections = (uint64_t)x;
        st->set |= ZLB_STAGE_CONNECTIONS;
    }
    if (json_object_get(o, "connect_rate")) {
        TRY(zlb_config_get_number(c, o, "connect_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                                  "0..1e9 (0 = unlimited)", &st->to.connect_rate));
        if (st->to.connect_rate > 0 && st->to.connect_rate < ZLB_CONFIG_MIN_CONNECT_RATE) {
            size_t mark = zlb_config_push(c, "connect_rate");
            int rc = zlb_config_fail(
                c, "expected 0 (unlimited) or a number 0.001..1e9 connections per second");
            zlb_config_pop(c, mark);
            return rc;
        }
        st->set |= ZLB_STAGE_CONNECT_RATE;
    }
    if (json_object_get(o, "close_rate")) {
        TRY(zlb_config_get_number(c, o, "close_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                                  "0..1e9 (0 = as fast as allowed)", &st->to.close_rate));
        st->set |= ZLB_STAGE_CLOSE_RATE;
    }
    if (rate_key && json_object_get(o, rate_key)) {
        TRY(zlb_config_get_live_rate(c, o, rate_key, cfg, &st->to.rate));
        st->set |= ZLB_STAGE_RATE;
        if (cfg->workload.type == ZLB_WORK_STREAM)
            st->set |= ZLB_STAGE_RATE_ZERO_UNLIMITED;
    }
    return 0;
}

/* The array at the current path into *out (malloc'd, *n entries). */
static int parse_stage_array(zlb_config_ctx_t *c, const zlb_config_t *cfg, const json_t *arr,
                             zlb_stage_t **out, size_t *n)
{
    char g[64];
    uint64_t total = 0;

    *out = NULL;
    *n = 0;
    if (!json_is_array(arr))
        return zlb_config_fail(c, "expected an array of stages, got %s",
                               zlb_config_got(arr, g, sizeof(g)));
    size_t len = json_array_size(arr);
    if (len == 0)
        return zlb_config_fail(c, "expected at least one stage (leave \"stages\" out for none)");
    if (len > ZLB_CONFIG_MAX_STAGES)
        return zlb_config_fail(c, "at most %d stages, got %zu", ZLB_CONFIG_MAX_STAGES, len);
    zlb_stage_t *st = zlb_xcalloc(len, sizeof(*st));
    for (size_t i = 0; i < len; i++) {
        size_t mark = zlb_config_path_push_index(&c->path, i);
        int rc = parse_stage(c, cfg, json_array_get(arr, i), &st[i]);
        /* Sums of stage lengths are times on the run's clock: keep them far from wrapping. */
        if (rc == 0 && st[i].duration_ns > UINT64_MAX / 4 - total)
            rc = zlb_config_fail(c, "the stages together last too long");
        zlb_config_pop(c, mark);
        if (rc < 0) {
            free(st);
            return rc;
        }
        total += st[i].duration_ns;
    }
    *out = st;
    *n = len;
    return 0;
}

int zlb_config_parse_stages(const zlb_config_t *cfg, json_t *arr, const char *path,
                            zlb_stage_t **out, size_t *n, char *err, size_t errlen)
{
    zlb_config_error_t e;
    /* No name and no text (a request body): messages start at the key path. */
    zlb_config_ctx_t c = {.err = &e};
    e.message[0] = '\0';
    if (path && path[0])
        zlb_config_path_push_key(&c.path, path, strlen(path));
    int rc = parse_stage_array(&c, cfg, arr, out, n);
    zlb_config_path_dispose(&c.path);
    if (rc < 0)
        snprintf(err, errlen, "%s", e.message);
    return rc;
}

int zlb_config_parse_root_stages(zlb_config_ctx_t *c, const json_t *root, zlb_config_t *cfg)
{
    const json_t *arr = json_object_get(root, "stages");
    zlb_stage_t *st;
    size_t n;
    bool forever;

    if (arr && !json_is_null(arr)) {
        size_t mark = zlb_config_push(c, "stages");
        int rc = parse_stage_array(c, cfg, arr, &st, &n);
        zlb_config_pop(c, mark);
        if (rc < 0)
            return rc;
        free(cfg->stages);
        cfg->stages = st;
        cfg->nstages = n;
    } else if (arr) {
        free(cfg->stages);
        cfg->stages = NULL;
        cfg->nstages = 0;
    }
    if (!cfg->nstages)
        return 0;
    /* Two lengths for one run would contradict each other; the stages say it. */
    if (json_object_get(root, "duration")) {
        size_t mark = zlb_config_push(c, "duration");
        int rc = zlb_config_fail_key(c, "a run with stages lasts as long as its stages (give the "
                                        "last stage \"duration\": \"0s\" to hold until stopped); "
                                        "remove duration");
        zlb_config_pop(c, mark);
        return rc;
    }
    cfg->duration_ns = zlb_config_stages_length(cfg->stages, cfg->nstages, &forever);
    if (forever)
        cfg->duration_ns = 0;
    return 0;
}

json_t *zlb_config_stages_json(const zlb_config_t *cfg)
{
    const char *rate_key = zlb_config_rate_key(cfg->workload.type);
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->nstages; i++) {
        const zlb_stage_t *st = &cfg->stages[i];
        char d[32];
        json_t *o = json_object();
        zlb_format_duration(st->duration_ns, d, sizeof(d));
        json_object_set_new(o, "duration", json_string(d));
        if (st->set & ZLB_STAGE_CONNECTIONS)
            json_object_set_new(o, "connections", json_integer((json_int_t)st->to.connections));
        if (st->set & ZLB_STAGE_CONNECT_RATE)
            json_object_set_new(o, "connect_rate", zlb_config_number_json(st->to.connect_rate));
        if ((st->set & ZLB_STAGE_RATE) && rate_key)
            json_object_set_new(o, rate_key, zlb_config_number_json(st->to.rate));
        if (st->set & ZLB_STAGE_CLOSE_RATE)
            json_object_set_new(o, "close_rate", zlb_config_number_json(st->to.close_rate));
        json_array_append_new(a, o);
    }
    return a;
}
