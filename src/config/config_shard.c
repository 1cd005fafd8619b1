/* config_shard.c -- one scenario split over several generators: the "shard" key and the exact
 * split of the scenario's whole-run quantities. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

/* "I/N" in decimal, nothing else: the form of --shard and of the string the key accepts. */
static int parse_slash(const char *s, uint32_t *index, uint32_t *count)
{
    uint64_t v[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        const char *start = s;
        while (*s >= '0' && *s <= '9') {
            v[k] = v[k] * 10 + (uint64_t)(*s++ - '0');
            if (v[k] > ZLB_CONFIG_MAX_SHARDS)
                return -EINVAL;
        }
        if (s == start || (k == 0 && *s++ != '/'))
            return -EINVAL;
    }
    if (*s)
        return -EINVAL;
    *index = (uint32_t)v[0];
    *count = (uint32_t)v[1];
    return 0;
}

/* The Indexed Job's pod index, with the key that asked for it in every message. */
static int index_from_env(zlb_config_ctx_t *c, uint32_t count, uint32_t *out)
{
    const char *s = getenv(ZLB_CONFIG_SHARD_INDEX_ENV);
    if (!s || !s[0])
        return zlb_config_fail(c,
                               "\"env\" takes the index from %s, which is not set (a Kubernetes "
                               "Indexed Job sets it in every pod)",
                               ZLB_CONFIG_SHARD_INDEX_ENV);
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && v <= ZLB_CONFIG_MAX_SHARDS)
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (*p || v >= count)
        return zlb_config_fail(c, "\"env\": %s=\"%s\" is not a shard index 0..%" PRIu32,
                               ZLB_CONFIG_SHARD_INDEX_ENV, zlb_config_show(s), count - 1);
    *out = (uint32_t)v;
    return 0;
}

int zlb_config_parse_shard(zlb_config_ctx_t *c, const json_t *v, zlb_config_t *cfg)
{
    static const char *const keys[] = {"index", "count"};
    zlb_shard_config_t sh = {0};
    char g[64];
    int64_t x;
    size_t mark = zlb_config_push(c, "shard");

    if (json_is_null(v)) {
        /* null: not sharded. */
    } else if (json_is_string(v)) {
        if (parse_slash(json_string_value(v), &sh.index, &sh.count) < 0 || sh.count < 1)
            return zlb_config_fail(c, "expected \"INDEX/COUNT\" (e.g. \"0/3\"), got \"%s\"",
                                   zlb_config_show(json_string_value(v)));
        if (sh.index >= sh.count)
            return zlb_config_fail(c, "index %" PRIu32 " is not below the count %" PRIu32, sh.index,
                                   sh.count);
    } else if (json_is_object(v)) {
        TRY(zlb_config_check_keys(c, v, keys, ZLB_ARRAY_LEN(keys)));
        if (!json_object_get(v, "count"))
            return zlb_config_fail(c, "missing \"count\" (how many shards split the scenario)");
        x = 0;
        TRY(zlb_config_get_int(c, v, "count", 1, ZLB_CONFIG_MAX_SHARDS, &x));
        sh.count = (uint32_t)x;
        json_t *idx = json_object_get(v, "index");
        size_t m2 = zlb_config_push(c, "index");
        if (!idx) {
            zlb_config_pop(c, m2);
            return zlb_config_fail(c, "missing \"index\" (0..%" PRIu32 ", or \"env\" for %s)",
                                   sh.count - 1, ZLB_CONFIG_SHARD_INDEX_ENV);
        }
        if (json_is_string(idx) && strcmp(json_string_value(idx), "env") == 0) {
            sh.index_from_env = true;
            TRY(index_from_env(c, sh.count, &sh.index));
        } else if (json_is_integer(idx)) {
            TRY(zlb_config_check_int(c, idx, 0, (int64_t)sh.count - 1, &x));
            sh.index = (uint32_t)x;
        } else {
            return zlb_config_fail(c, "expected an integer 0..%" PRIu32 " or \"env\", got %s",
                                   sh.count - 1, zlb_config_got(idx, g, sizeof(g)));
        }
        zlb_config_pop(c, m2);
    } else {
        return zlb_config_fail(c, "expected {\"index\": I, \"count\": N} or \"I/N\", got %s",
                               zlb_config_got(v, g, sizeof(g)));
    }
    /* A config that is already a part keeps its split: a second shard key would name a part of
     * the part, which is zlb_config_apply_shard's business, not the parser's. */
    if (cfg->unsharded_json)
        return zlb_config_fail(c,
                               "this config is already shard %" PRIu32 "/%" PRIu32
                               " of its scenario; shard the whole scenario instead",
                               cfg->shard.index, cfg->shard.count);
    cfg->shard = sh;
    zlb_config_pop(c, mark);
    return 0;
}

uint64_t zlb_config_shard_u64(uint64_t total, uint32_t index, uint32_t count)
{
    if (count <= 1)
        return total;
    return total / count + (index < total % count ? 1 : 0);
}

double zlb_config_shard_rate(double total, uint32_t index, uint32_t count)
{
    if (count <= 1 || !(total > 0))
        return total;
    /* A whole number splits as one, so that "connect_rate": 1000 over 3 is 334 + 333 + 333
     * exactly, with the extra on the same shards as the extra connections. Below count that
     * would give some shards 0, which means "unlimited": those split evenly. No libm here. */
    if (total >= count && total < 9007199254740992.0 && total == (double)(uint64_t)total)
        return (double)zlb_config_shard_u64((uint64_t)total, index, count);
    return total / count;
}

void zlb_config_shard_values(zlb_work_type_t type, zlb_stage_values_t *v, uint32_t index,
                             uint32_t count)
{
    v->connections = zlb_config_shard_u64(v->connections, index, count);
    v->connect_rate = zlb_config_shard_rate(v->connect_rate, index, count);
    /* A stream's rate is per connection: each shard's connections keep it. */
    if (type != ZLB_WORK_STREAM)
        v->rate = zlb_config_shard_rate(v->rate, index, count);
    v->close_rate = zlb_config_shard_rate(v->close_rate, index, count);
}

/* cfg's split quantities become part `index` of `count` of whole's (whole may be cfg itself:
 * each field is read before it is written). */
static int split_from(zlb_config_t *cfg, const zlb_config_t *whole, uint32_t index, uint32_t count,
                      char *err, size_t len)
{
    /* With stages: at their peak (a profile may start from none). */
    uint64_t peak = zlb_config_peak_connections(whole);
    if (peak < count) {
        snprintf(err, len,
                 "shard: %" PRIu64 " connections cannot be split over %" PRIu32
                 " shards (each needs at least one)",
                 peak, count);
        return -EINVAL;
    }
    if (whole->nsource > 0 && whole->nsource < count) {
        snprintf(err, len,
                 "shard: source_ips has %zu address(es), fewer than the %" PRIu32
                 " shards (each shard takes its own part of them)",
                 whole->nsource, count);
        return -EINVAL;
    }
    double connect_rate = zlb_config_shard_rate(whole->connect_rate, index, count);
    /* The ramp keeps its shape in every shard: start and end rates in the same proportion. */
    double start_rate = whole->connect_rate > 0
                            ? whole->ramp.start_rate * (connect_rate / whole->connect_rate)
                            : zlb_config_shard_rate(whole->ramp.start_rate, index, count);
    cfg->connections = zlb_config_shard_u64(whole->connections, index, count);
    cfg->connect_rate = connect_rate;
    cfg->ramp.start_rate = start_rate;
    cfg->workload.request_rate = zlb_config_shard_rate(whole->workload.request_rate, index, count);
    /* message_interval is per connection: each shard's connections keep it as it is. */
    cfg->workload.message_rate = zlb_config_shard_rate(whole->workload.message_rate, index, count);
    cfg->close_rate = zlb_config_shard_rate(whole->close_rate, index, count);
    /* Each stage's values split as the top-level ones: at every stage's end the shards' values
     * add up to the profile's exactly (between, the moves are linear, so within rounding). */
    if (cfg != whole) {
        free(cfg->stages);
        cfg->stages = NULL;
        cfg->nstages = whole->nstages;
        if (whole->nstages) {
            cfg->stages = zlb_xcalloc(whole->nstages, sizeof(*cfg->stages));
            memcpy(cfg->stages, whole->stages, whole->nstages * sizeof(*cfg->stages));
        }
    }
    for (size_t i = 0; i < cfg->nstages; i++)
        zlb_config_shard_values(whole->workload.type, &cfg->stages[i].to, index, count);

    if (whole->nsource > 0) {
        size_t n = whole->nsource, base = n / count, extra = n % count;
        size_t first = index * base + ZLB_MIN((size_t)index, extra);
        size_t mine = base + (index < extra ? 1 : 0);
        struct sockaddr_storage *part = zlb_xcalloc(mine, sizeof(*part));
        memcpy(part, whole->source_addrs + first, mine * sizeof(*part));
        free(cfg->source_addrs);
        cfg->source_addrs = part;
        cfg->nsource = mine;
        /* The strings named the whole pool; the part is listed address by address. */
        for (size_t i = 0; i < cfg->nsource_ips; i++)
            free(cfg->source_ips[i]);
        free(cfg->source_ips);
        cfg->source_ips = NULL;
        cfg->nsource_ips = 0;
    }
    return 0;
}

int zlb_config_apply_shard(zlb_config_t *cfg, uint32_t index, uint32_t count, char *err, size_t len)
{
    err[0] = '\0';
    if (count == 0)
        count = 1;
    if (index >= count) {
        snprintf(err, len, "shard: index %" PRIu32 " is not below the count %" PRIu32, index,
                 count);
        return -EINVAL;
    }
    /* Already a part (or told by its own "shard" which part it is): a part of that part. */
    uint32_t pi = 0, pc = 1;
    if (cfg->shard.count > 1) {
        pi = cfg->shard.index;
        pc = cfg->shard.count;
    }
    if ((uint64_t)pc * count > ZLB_CONFIG_MAX_SHARDS) {
        snprintf(err, len, "shard: %" PRIu32 " x %" PRIu32 " shards is more than %u", pc, count,
                 ZLB_CONFIG_MAX_SHARDS);
        return -EINVAL;
    }
    uint32_t ni = pi * count + index, nc = pc * count;
    if (nc <= 1)
        return 0;

    zlb_config_t *whole = NULL;
    char *unsharded = cfg->unsharded_json;
    if (unsharded) {
        /* The whole scenario again, from its own effective config: the flat split of it, not a
         * split of a split, whose remainders would fall elsewhere. */
        zlb_config_error_t perr;
        if (zlb_config_parse(unsharded, "<scenario>", NULL, &whole, &perr) != 0) {
            snprintf(err, len, "shard: cannot read the whole scenario back: %s", perr.message);
            return -EINVAL;
        }
    } else {
        zlb_shard_config_t own = cfg->shard;
        cfg->shard = (zlb_shard_config_t){0};
        json_t *j = zlb_config_to_json(cfg);
        cfg->shard = own;
        unsharded = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        json_decref(j);
        if (!unsharded)
            zlb_fatal("out of memory serialising the config");
    }
    int rc = split_from(cfg, whole ? whole : cfg, ni, nc, err, len);
    zlb_config_destroy(whole);
    if (rc != 0) {
        if (unsharded != cfg->unsharded_json)
            free(unsharded);
        return rc;
    }
    cfg->unsharded_json = unsharded;
    cfg->shard.index = ni;
    cfg->shard.count = nc;

    /* A part can break a rule the whole kept (a rate below the minimum, a source pool without a
     * target's family): said now, naming the shard. */
    zlb_config_error_t cerr;
    if (zlb_config_check(cfg, &cerr) != 0) {
        snprintf(err, len, "shard %" PRIu32 "/%" PRIu32 ": %s", ni, nc, cerr.message);
        return -EINVAL;
    }
    return 0;
}
