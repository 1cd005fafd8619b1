/* test_config_shard.c -- a scenario split over N shards adds back up to itself, exactly. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/core.h"
#include "test.h"
#include "test_config_util.h"

static double rel_err(double got, double want)
{
    return want == 0 ? fabs(got) : fabs(got - want) / want;
}

/* For every N in 1..7 and awkward totals: the shards' values add up to the scenario's. */
static void test_sums_exact(void)
{
    static const uint64_t conns[] = {7, 8, 10, 13, 997, 2000, 9999991};
    static const double rates[] = {0, 1, 5, 7, 1000, 1234.5, 0.3, 999999937};
    int checked = 0;
    for (size_t a = 0; a < ZLB_ARRAY_LEN(conns); a++) {
        for (size_t b = 0; b < ZLB_ARRAY_LEN(rates); b++) {
            double rate = rates[b] > 0 && rates[b] < 0.001 * 7 ? 0.007 : rates[b];
            double start = rate > 0 ? rate / 3 : 0;
            double req = rates[(b + 3) % ZLB_ARRAY_LEN(rates)];
            char text[512];
            snprintf(text, sizeof(text),
                     "{\"embedded_target\": {\"mode\": \"http\"}, \"connections\": %llu, "
                     "\"connect_rate\": %.17g, \"ramp\": {\"duration\": "
                     "\"%s\", \"start_rate\": %.17g}, \"workload\": {\"type\": \"http\", "
                     "\"request_rate\": %.17g}}",
                     (unsigned long long)conns[a], rate, rate > 0 ? "2s" : "0s", start, req);
            zlb_config_t *whole = parse(text);
            char hash[17];
            zlb_config_hash(whole, hash);
            for (uint32_t n = 1; n <= 7; n++) {
                uint64_t sum_c = 0;
                double sum_r = 0, sum_s = 0, sum_q = 0;
                for (uint32_t i = 0; i < n; i++) {
                    zlb_config_t *cfg = parse(text);
                    char err[512], h[17];
                    if (zlb_config_apply_shard(cfg, i, n, err, sizeof(err)) != 0)
                        ZLB_TEST_FAIL("%u/%u of %s: %s", i, n, text, err);
                    sum_c += cfg->connections;
                    sum_r += cfg->connect_rate;
                    sum_s += cfg->ramp.start_rate;
                    sum_q += cfg->workload.request_rate;
                    /* Remainders on the first shards: no shard is more than one above another. */
                    ASSERT_UEQ(cfg->connections,
                               whole->connections / n + (i < whole->connections % n ? 1 : 0));
                    ASSERT_CMP_DBL(cfg->ramp.start_rate, <=, cfg->connect_rate);
                    /* 0 is "unlimited" or "closed loop": it never comes from a split rate. */
                    ASSERT((cfg->connect_rate > 0) == (rate > 0));
                    ASSERT((cfg->workload.request_rate > 0) == (req > 0));
                    zlb_config_hash(cfg, h);
                    ASSERT_STREQ(h, hash);
                    if (n > 1) {
                        ASSERT_UEQ(cfg->shard.index, i);
                        ASSERT_UEQ(cfg->shard.count, n);
                    }
                    zlb_config_destroy(cfg);
                }
                if (sum_c != whole->connections || rel_err(sum_r, whole->connect_rate) > 1e-9 ||
                    rel_err(sum_s, whole->ramp.start_rate) > 1e-9 ||
                    rel_err(sum_q, whole->workload.request_rate) > 1e-9)
                    ZLB_TEST_FAIL("N=%u: sums %llu %.17g %.17g %.17g vs %llu %.17g %.17g %.17g", n,
                                  (unsigned long long)sum_c, sum_r, sum_s, sum_q,
                                  (unsigned long long)whole->connections, whole->connect_rate,
                                  whole->ramp.start_rate, whole->workload.request_rate);
                /* Whole-number rates split as integers: the sum is exact, not just close. */
                if (rate >= n && rate == floor(rate))
                    ASSERT_CMP_DBL(sum_r, ==, rate);
                checked++;
            }
            zlb_config_destroy(whole);
        }
    }
    printf("  %d (scenario, N) pairs add up\n", checked);
    ASSERT_EQ(checked, 7 * 8 * 7);
}

static void test_example_split(void)
{
    /* The figures a reader checks by hand: 2000 connections at 5000/s over 3 shards. */
    static const uint64_t want_c[] = {667, 667, 666};
    static const double want_r[] = {1667, 1667, 1666};
    for (uint32_t i = 0; i < 3; i++) {
        zlb_config_t *cfg = parse("{\"connections\": 2000, \"connect_rate\": 5000}");
        char err[256];
        ASSERT_EQ(zlb_config_apply_shard(cfg, i, 3, err, sizeof(err)), 0);
        printf("  shard %u/3: %llu connections, %g/s\n", i, (unsigned long long)cfg->connections,
               cfg->connect_rate);
        ASSERT_UEQ(cfg->connections, want_c[i]);
        ASSERT_CMP_DBL(cfg->connect_rate, ==, want_r[i]);
        zlb_config_destroy(cfg);
    }
}

static uint32_t addr4(const struct sockaddr_storage *ss)
{
    ASSERT_EQ(ss->ss_family, AF_INET);
    return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
}

static void test_sources_partitioned(void)
{
    const char *text = "{\"connections\": 100, \"source_ips\": [\"127.0.0.1-127.0.0.7\", "
                       "\"127.0.1.1-127.0.1.3\"]}";
    for (uint32_t n = 1; n <= 7; n++) {
        uint32_t next = 0;
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            zlb_config_t *cfg = parse(text);
            zlb_config_t *whole = parse(text);
            char err[256];
            ASSERT_EQ(zlb_config_apply_shard(cfg, i, n, err, sizeof(err)), 0);
            /* Contiguous blocks in the pool's order, sizes within one of each other. */
            ASSERT_UEQ(cfg->nsource, 10 / n + (i < 10 % n ? 1 : 0));
            for (size_t k = 0; k < cfg->nsource; k++, next++)
                ASSERT_UEQ(addr4(&cfg->source_addrs[k]), addr4(&whole->source_addrs[next]));
            total += cfg->nsource;
            zlb_config_destroy(cfg);
            zlb_config_destroy(whole);
        }
        ASSERT_UEQ(total, 10);
    }
    /* More shards than addresses: some shard would connect from nothing of its own. */
    zlb_config_t *cfg = parse(text);
    char err[256];
    ASSERT_EQ(zlb_config_apply_shard(cfg, 0, 11, err, sizeof(err)), -EINVAL);
    printf("  11 shards of 10 addresses -> %s\n", err);
    ASSERT(strstr(err, "source_ips has 10 address(es), fewer than the 11 shards"));
    zlb_config_destroy(cfg);
}

static void test_refusals(void)
{
    zlb_config_t *cfg = parse("{\"connections\": 2}");
    char err[256];
    ASSERT_EQ(zlb_config_apply_shard(cfg, 0, 3, err, sizeof(err)), -EINVAL);
    printf("  2 connections over 3 -> %s\n", err);
    ASSERT(strstr(err, "2 connections cannot be split over 3 shards"));
    ASSERT_EQ(zlb_config_apply_shard(cfg, 3, 3, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "index 3 is not below the count 3"));
    ASSERT_UEQ(cfg->connections, 2);
    zlb_config_destroy(cfg);
    /* A rate whose part falls under the minimum is the shard's config error, named. */
    cfg = parse("{\"connections\": 10, \"connect_rate\": 0.002}");
    ASSERT_EQ(zlb_config_apply_shard(cfg, 1, 3, err, sizeof(err)), -EINVAL);
    printf("  connect_rate 0.002 over 3 -> %s\n", err);
    ASSERT(strstr(err, "shard 1/3: connect_rate"));
    zlb_config_destroy(cfg);

    expect_parse_error("{\"shard\": {\"count\": 3}}",
                       "t.json:1:11: shard: missing \"index\" (0..2, or \"env\"");
    expect_parse_error("{\"shard\": {\"index\": 1}}", "t.json:1:11: shard: missing \"count\"");
    expect_parse_error("{\"shard\": {\"index\": 3, \"count\": 3}}", "shard.index: expected");
    expect_parse_error("{\"shard\": {\"index\": 0, \"count\": 3, \"cuont\": 1}}",
                       "unknown key 'cuont'");
    expect_parse_error("{\"shard\": \"3/3\"}", "shard: index 3 is not below the count 3");
    expect_parse_error("{\"shard\": \"1/\"}", "shard: expected \"INDEX/COUNT\"");
    expect_parse_error("{\"shard\": 2}", "shard: expected {\"index\": I, \"count\": N}");
}

static void test_index_from_env(void)
{
    const char *text = "{\"connections\": 10, \"shard\": {\"index\": \"env\", \"count\": 3}}";
    unsetenv(ZLB_CONFIG_SHARD_INDEX_ENV);
    expect_parse_error(text, "t.json:1:40: shard.index: \"env\" takes the index from "
                             "JOB_COMPLETION_INDEX, which is not set");
    static const char *const bad[] = {"3", "-1", "x", "1 ", "99999999999999999999"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        setenv(ZLB_CONFIG_SHARD_INDEX_ENV, bad[i], 1);
        expect_parse_error(text, "shard.index: \"env\": JOB_COMPLETION_INDEX=");
    }
    setenv(ZLB_CONFIG_SHARD_INDEX_ENV, "2", 1);
    zlb_config_t *cfg = parse(text);
    ASSERT(cfg->shard.index_from_env);
    ASSERT_UEQ(cfg->shard.index, 2);
    ASSERT_UEQ(cfg->shard.count, 3);
    /* Parsing records the part; main applies it after the overrides. */
    ASSERT_UEQ(cfg->connections, 10);
    char err[256];
    ASSERT_EQ(zlb_config_apply_shard(cfg, 0, 1, err, sizeof(err)), 0);
    ASSERT_UEQ(cfg->connections, 3);
    /* The effective config names the index, not "env": it reads back without the variable. */
    unsetenv(ZLB_CONFIG_SHARD_INDEX_ENV);
    json_t *j = zlb_config_to_json(cfg);
    char *dump = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    ASSERT(strstr(dump, "\"shard\":{\"count\":3,\"index\":2}"));
    ASSERT(strstr(dump, "\"connections\":10,"));
    zlb_config_t *again = parse(dump);
    ASSERT_EQ(zlb_config_apply_shard(again, 0, 1, err, sizeof(err)), 0);
    ASSERT_UEQ(again->connections, 3);
    char h1[17], h2[17];
    zlb_config_hash(cfg, h1);
    zlb_config_hash(again, h2);
    ASSERT_STREQ(h1, h2);
    free(dump);
    zlb_config_destroy(again);
    zlb_config_destroy(cfg);
}

/* Shards of a shard (processes in a pod) are the flat split: part 1 of 2 of part 1 of 3 is part
 * 3 of 6, the same connections and rates as --shard 3/6. */
static void test_nested_is_flat(void)
{
    const char *text = "{\"connections\": 1001, \"connect_rate\": 997, \"source_ips\": "
                       "[\"127.0.0.1-127.0.0.20\"]}";
    for (uint32_t outer = 0; outer < 3; outer++) {
        for (uint32_t inner = 0; inner < 2; inner++) {
            zlb_config_t *a = parse(text), *b = parse(text);
            char err[256];
            ASSERT_EQ(zlb_config_apply_shard(a, outer, 3, err, sizeof(err)), 0);
            ASSERT_EQ(zlb_config_apply_shard(a, inner, 2, err, sizeof(err)), 0);
            ASSERT_EQ(zlb_config_apply_shard(b, outer * 2 + inner, 6, err, sizeof(err)), 0);
            ASSERT_UEQ(a->shard.index, b->shard.index);
            ASSERT_UEQ(a->shard.count, 6);
            ASSERT_UEQ(a->connections, b->connections);
            ASSERT_CMP_DBL(a->connect_rate, ==, b->connect_rate);
            ASSERT_UEQ(a->nsource, b->nsource);
            ASSERT_EQ(
                memcmp(a->source_addrs, b->source_addrs, a->nsource * sizeof(*a->source_addrs)), 0);
            zlb_config_destroy(a);
            zlb_config_destroy(b);
        }
    }
}

static void test_cli_override(void)
{
    zlb_config_t *cfg = parse("{\"connections\": 10}");
    zlb_config_error_t err;
    ASSERT_EQ(zlb_config_override(cfg, "--shard", "shard", json_string("1/4"), NULL, &err), 0);
    ASSERT_UEQ(cfg->shard.index, 1);
    ASSERT_UEQ(cfg->shard.count, 4);
    ASSERT(!cfg->shard.index_from_env);
    ASSERT_NE(zlb_config_override(cfg, "--shard", "shard", json_string("4/4"), NULL, &err), 0);
    printf("  --shard 4/4 -> %s\n", err.message);
    ASSERT_STREQ(err.message, "--shard: index 4 is not below the count 4");
    zlb_config_destroy(cfg);
    /* A part refuses a second "shard": that would be a part of a part, apply_shard's job. */
    cfg = parse("{\"connections\": 10}");
    char e2[256];
    ASSERT_EQ(zlb_config_apply_shard(cfg, 0, 2, e2, sizeof(e2)), 0);
    ASSERT_NE(zlb_config_override(cfg, "--shard", "shard", json_string("0/3"), NULL, &err), 0);
    printf("  --shard on a part -> %s\n", err.message);
    ASSERT(strstr(err.message, "already shard 0/2"));
    zlb_config_destroy(cfg);
}

/* close_rate is a whole-run rate too: the shards' close rates add up to it. */
static void test_close_rate_split(void)
{
    zlb_config_t *whole = parse("{\"embedded_target\": {}, \"connections\": 100, "
                                "\"close_rate\": 1001}");
    ASSERT_CMP_DBL(whole->close_rate, ==, 1001);
    for (uint32_t n = 1; n <= 7; n++) {
        double sum = 0;
        for (uint32_t i = 0; i < n; i++) {
            zlb_config_t *cfg = parse("{\"embedded_target\": {}, \"connections\": 100, "
                                      "\"close_rate\": 1001}");
            char err[512];
            if (zlb_config_apply_shard(cfg, i, n, err, sizeof(err)) != 0)
                ZLB_TEST_FAIL("%u/%u: %s", i, n, err);
            sum += cfg->close_rate;
            zlb_config_destroy(cfg);
        }
        printf("  close_rate 1001 over %u shards sums to %.17g\n", n, sum);
        ASSERT_CMP_DBL(sum, ==, 1001);
    }
    zlb_config_destroy(whole);
}

/* message_rate is a whole-run rate: the shards' rates add up to it (exactly for whole numbers,
 * the extra on the first shards), and each shard's connections keep the per-connection gap. The
 * message itself, escapes and all, survives the round trip through the whole scenario's JSON
 * that a nested split reads back. */
static void test_message_rate_split(void)
{
    static const double rates[] = {1, 7, 1000, 1234.5, 20001, 999999937};
    for (size_t b = 0; b < ZLB_ARRAY_LEN(rates); b++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"embedded_target\": {\"mode\": \"redis\"}, \"connections\": 1003, "
                 "\"workload\": {\"type\": \"message\", \"message\": "
                 "\"*1\\r\\n$4\\r\\nPING\\r\\n\\\\x00\", \"expect\": {\"delimiter\": \"\\r\\n\"}, "
                 "\"message_rate\": %.17g}}",
                 rates[b]);
        zlb_config_t *whole = parse(text);
        for (uint32_t n = 1; n <= 7; n++) {
            double sum = 0;
            for (uint32_t i = 0; i < n; i++) {
                zlb_config_t *cfg = parse(text);
                char err[512];
                if (zlb_config_apply_shard(cfg, i, n, err, sizeof(err)) != 0)
                    ZLB_TEST_FAIL("%u/%u of %s: %s", i, n, text, err);
                sum += cfg->workload.message_rate;
                ASSERT(cfg->workload.message_rate > 0);
                if (rates[b] >= n && rates[b] == floor(rates[b]))
                    ASSERT_CMP_DBL(
                        cfg->workload.message_rate, ==,
                        (double)((uint64_t)rates[b] / n + (i < (uint64_t)rates[b] % n ? 1 : 0)));
                /* A part of this part reads the whole scenario back from its JSON. */
                if (n == 3 && i == 1) {
                    if (zlb_config_apply_shard(cfg, 1, 2, err, sizeof(err)) != 0)
                        ZLB_TEST_FAIL("nested: %s", err);
                    ASSERT_UEQ(cfg->shard.index, 3);
                    ASSERT_UEQ(cfg->shard.count, 6);
                    ASSERT_UEQ(cfg->workload.message_len, whole->workload.message_len);
                    ASSERT(memcmp(cfg->workload.message, whole->workload.message,
                                  whole->workload.message_len) == 0);
                }
                zlb_config_destroy(cfg);
            }
            if (rel_err(sum, whole->workload.message_rate) > 1e-9)
                ZLB_TEST_FAIL("N=%u: message_rate sums to %.17g, not %.17g", n, sum,
                              whole->workload.message_rate);
            if (rates[b] >= n && rates[b] == floor(rates[b]))
                ASSERT_CMP_DBL(sum, ==, rates[b]);
        }
        printf("  message_rate %.17g: shards of 1..7 add up\n", rates[b]);
        zlb_config_destroy(whole);
    }
}

/* A profile split over shards adds up to itself at every stage's end, exactly. */
static void test_stages_split(void)
{
    const char *text =
        "{\"connections\": 10, \"connect_rate\": 1000, \"workload\": {\"type\": "
        "\"echo\", \"message_rate\": 7},"
        "\"stages\": [{\"duration\": \"2s\", \"connections\": 1001, \"connect_rate\": "
        "2001, \"message_rate\": 10000.5, \"close_rate\": 5},"
        "{\"duration\": \"0s\", \"connections\": 0}]}";
    zlb_config_t *whole = parse(text);
    for (uint32_t n = 1; n <= 7; n++) {
        uint64_t c0 = 0, c1 = 0;
        double cr = 0, mr = 0, cl = 0;
        for (uint32_t i = 0; i < n; i++) {
            zlb_config_t *cfg = parse(text);
            char err[256];
            if (zlb_config_apply_shard(cfg, i, n, err, sizeof(err)) != 0)
                ZLB_TEST_FAIL("%u/%u: %s", i, n, err);
            ASSERT_UEQ(cfg->nstages, 2);
            c0 += cfg->stages[0].to.connections;
            c1 += cfg->stages[1].to.connections;
            cr += cfg->stages[0].to.connect_rate;
            mr += cfg->stages[0].to.rate;
            cl += cfg->stages[0].to.close_rate;
            ASSERT_UEQ(cfg->stages[0].set, whole->stages[0].set);
            /* Shards of shards: the flat split, stages included. */
            if (n == 2) {
                zlb_config_t *sub = parse(text);
                ASSERT_EQ(zlb_config_apply_shard(sub, i, 2, err, sizeof(err)), 0);
                ASSERT_EQ(zlb_config_apply_shard(sub, 1, 3, err, sizeof(err)), 0);
                zlb_config_t *flat = parse(text);
                ASSERT_EQ(zlb_config_apply_shard(flat, i * 3 + 1, 6, err, sizeof(err)), 0);
                ASSERT(memcmp(sub->stages, flat->stages, 2 * sizeof(zlb_stage_t)) == 0);
                zlb_config_destroy(sub);
                zlb_config_destroy(flat);
            }
            zlb_config_destroy(cfg);
        }
        printf("  %u shards: connections %llu, connect_rate %.17g, message_rate %.17g, close_rate "
               "%.17g\n",
               n, (unsigned long long)c0, cr, mr, cl);
        ASSERT_UEQ(c0, 1001);
        ASSERT_UEQ(c1, 0);
        ASSERT_CMP_DBL(cr, ==, 2001);
        ASSERT_NEAR(mr, 10000.5, 1e-6);
        ASSERT_NEAR(cl, 5, 1e-9);
    }
    /* A stream's rate is per connection: every shard's stages keep it whole (its connections
     * split as any). */
    zlb_config_t *st = parse("{\"workload\": {\"type\": \"stream\", \"rate\": 1000}, "
                             "\"stages\": [{\"duration\": \"1s\", \"connections\": 10, "
                             "\"stream_rate\": 250000.5}]}");
    for (uint32_t i = 0; i < 3; i++) {
        zlb_config_t *cfg = parse("{\"workload\": {\"type\": \"stream\", \"rate\": 1000}, "
                                  "\"stages\": [{\"duration\": \"1s\", \"connections\": 10, "
                                  "\"stream_rate\": 250000.5}]}");
        char e2[256];
        ASSERT_EQ(zlb_config_apply_shard(cfg, i, 3, e2, sizeof(e2)), 0);
        printf("  stream shard %u/3: connections %llu, stream_rate %.17g, workload.rate %.17g\n", i,
               (unsigned long long)cfg->stages[0].to.connections, cfg->stages[0].to.rate,
               cfg->workload.rate);
        ASSERT_UEQ(cfg->stages[0].to.connections, i == 0 ? 4 : 3);
        ASSERT_CMP_DBL(cfg->stages[0].to.rate, ==, st->stages[0].to.rate);
        ASSERT_CMP_DBL(cfg->workload.rate, ==, 1000);
        zlb_config_destroy(cfg);
    }
    zlb_config_destroy(st);

    /* The peak decides whether every shard gets a connection. */
    zlb_config_t *cfg = parse("{\"stages\": [{\"duration\": \"1s\", \"connections\": 2}]}");
    char err[256];
    ASSERT_EQ(zlb_config_apply_shard(cfg, 0, 3, err, sizeof(err)), -EINVAL);
    printf("  -> %s\n", err);
    ASSERT(strstr(err, "2 connections cannot be split over 3 shards") != NULL);
    zlb_config_destroy(cfg);
    zlb_config_destroy(whole);
}

int main(void)
{
    zlb_log_level = ZLB_LOG_WARN;
    RUN_TEST(test_sums_exact);
    RUN_TEST(test_example_split);
    RUN_TEST(test_message_rate_split);
    RUN_TEST(test_close_rate_split);
    RUN_TEST(test_sources_partitioned);
    RUN_TEST(test_refusals);
    RUN_TEST(test_index_from_env);
    RUN_TEST(test_nested_is_flat);
    RUN_TEST(test_cli_override);
    RUN_TEST(test_stages_split);
    return TEST_EXIT_CODE();
}
