/* config_live.c -- a PATCH /run body: the live values it changes, checked by the config file's
 * own getters and rules, so that a value the file would refuse is refused live with the same
 * words. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"

/* Every workload's whole-run rate key, for the message that names the one a workload lacks. */
static const char *const rate_keys[] = {"request_rate", "message_rate", "stream_rate", "rate"};

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* A rate key this run cannot take: another workload's, or its own in a closed loop (the engine
 * builds an open loop's schedule at start, so a run without one cannot gain it live). A stream
 * has no closed loop: its rate 0 is "as fast as the socket takes", and any rate follows it. */
static int check_rate_keys(zlb_config_ctx_t *c, const json_t *root, const zlb_config_t *cfg,
                           const char *mine)
{
    const char *wl = zlb_config_name(&zlb_config_work_names, (int)cfg->workload.type);

    for (size_t i = 0; i < ZLB_ARRAY_LEN(rate_keys); i++) {
        const char *k = rate_keys[i];
        if (!json_object_get(root, k))
            continue;
        size_t mark = zlb_config_push(c, k);
        int rc = 0;
        if (!mine)
            rc = zlb_config_fail_key(c, "the %s workload has no whole-run rate to change", wl);
        else if (strcmp(k, mine) != 0)
            rc = zlb_config_fail_key(c, "the %s workload's rate is %s, not %s", wl, mine, k);
        else if (cfg->workload.type != ZLB_WORK_STREAM && !(zlb_config_workload_rate(cfg) > 0) &&
                 !zlb_config_rate_is_live(cfg))
            rc = zlb_config_fail_key(c,
                                     "this run is a closed loop (%s 0 in its config): only a "
                                     "run started with a rate can change it",
                                     k);
        zlb_config_pop(c, mark);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_root(zlb_config_ctx_t *c, const json_t *root, const zlb_config_t *cfg,
                      zlb_config_patch_t *p)
{
    const char *mine = zlb_config_rate_key(cfg->workload.type);
    const char *allowed[] = {"connections", "connect_rate", "close_rate",
                             "paused",      "stages",       mine ? mine : "connections"};

    if (!json_is_object(root))
        return zlb_config_fail(c, "expected a JSON object, got %s", zlb_config_type_name(root));
    TRY(check_rate_keys(c, root, cfg, mine));
    TRY(zlb_config_check_keys(c, root, allowed, ZLB_ARRAY_LEN(allowed)));

    /* 0 as a stage may: the run goes on with none open (and a later change opens them). */
    int64_t n = 0;
    TRY(zlb_config_get_int(c, root, "connections", 0, ZLB_CONFIG_MAX_CONNECTIONS, &n));
    p->has_connections = json_object_get(root, "connections") != NULL;
    p->connections = (uint64_t)n;

    p->has_connect_rate = json_object_get(root, "connect_rate") != NULL;
    TRY(zlb_config_get_number(c, root, "connect_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                              "0..1e9 (0 = unlimited)", &p->connect_rate));
    /* The file's cross-field rule, in its words (config_check.c). */
    if (p->connect_rate > 0 && p->connect_rate < ZLB_CONFIG_MIN_CONNECT_RATE)
        return zlb_config_fail_at(
            c, "connect_rate",
            "expected 0 (unlimited) or a number 0.001..1e9 connections per second");

    p->has_close_rate = json_object_get(root, "close_rate") != NULL;
    TRY(zlb_config_get_number(c, root, "close_rate", 0, ZLB_CONFIG_MAX_CONNECT_RATE,
                              "0..1e9 (0 = as fast as allowed)", &p->close_rate));

    if (mine && json_object_get(root, mine)) {
        p->has_rate = true;
        TRY(zlb_config_get_live_rate(c, root, mine, cfg, &p->rate));
    }

    p->has_paused = json_object_get(root, "paused") != NULL;
    TRY(zlb_config_get_bool(c, root, "paused", &p->paused));

    json_t *st = json_object_get(root, "stages");
    if (st) {
        /* The config file's stage rules and messages ("stages[1].duration: ..."). */
        char msg[sizeof(c->err->message)];
        if (zlb_config_parse_stages(cfg, st, "stages", &p->stages, &p->nstages, msg, sizeof(msg)) !=
            0) {
            zlb_config_set_message(c->err, "%s", msg);
            return -EINVAL;
        }
    }
    return 0;
}

int zlb_config_parse_patch(const zlb_config_t *cfg, const char *text, size_t len,
                           zlb_config_patch_t *out, char *err, size_t errlen)
{
    zlb_config_error_t e = {.message = ""};
    /* No name and no text: messages start at the key path ("connect_rate: expected ..."), as
     * an HTTP answer has no file to point into. */
    zlb_config_ctx_t c = {.name = NULL, .text = NULL, .textlen = 0, .err = &e};
    json_error_t jerr;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (!text || all_space(text, len)) {
        snprintf(err, errlen, "empty body (expected a JSON object, e.g. {\"connect_rate\": 100})");
        return -EINVAL;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "line %d, column %d: invalid JSON: %s", jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    rc = parse_root(&c, root, cfg, out);
    if (rc != 0) {
        snprintf(err, errlen, "%s", e.message);
        zlb_config_patch_dispose(out);
    }
    zlb_config_path_dispose(&c.path);
    json_decref(root);
    return rc;
}

void zlb_config_patch_dispose(zlb_config_patch_t *p)
{
    free(p->stages);
    memset(p, 0, sizeof(*p));
}
