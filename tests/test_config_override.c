/* test_config_override.c -- command-line overrides meet the file's rules and messages. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/core.h"
#include "test.h"
#include "test_config_util.h"

static void expect_refused(zlb_config_t *cfg, const char *origin, const char *key, json_t *v,
                           const char *want)
{
    zlb_config_error_t err;
    ASSERT_NE(zlb_config_override(cfg, origin, key, v, NULL, &err), 0);
    printf("  %-14s -> %s\n", origin, err.message);
    ASSERT_STREQ(err.message, want);
}

static void test_values_applied(void)
{
    zlb_config_t *cfg = parse("{\"connections\": 10, \"pollers\": {\"count\": 1, \"nice\": 3}}");
    zlb_config_error_t err;
    ASSERT_EQ(
        zlb_config_override(cfg, "--connections", "connections", json_integer(500), NULL, &err), 0);
    ASSERT_UEQ(cfg->connections, 500);
    ASSERT_EQ(zlb_config_override(cfg, "--pollers", "pollers.count", json_integer(3), NULL, &err),
              0);
    ASSERT_EQ(cfg->pollers.count, 3);
    ASSERT_EQ(cfg->pollers.nice, 3); /* the rest of the section is kept */
    ASSERT_EQ(zlb_config_override(cfg, "--duration", "duration", json_string("2m"), NULL, &err), 0);
    ASSERT_UEQ(cfg->duration_ns, 120 * ZLB_NS_PER_SEC);
    ASSERT_EQ(zlb_config_override(cfg, "--control", "control.listen", json_null(), NULL, &err), 0);
    ASSERT(!cfg->control.enabled);
    ASSERT_EQ(zlb_config_override(cfg, "--control", "control.listen", json_string("127.0.0.1:0"),
                                  NULL, &err),
              0);
    ASSERT(cfg->control.enabled);
    ASSERT_STREQ(cfg->control.listen, "127.0.0.1:0");
    ASSERT_EQ(
        zlb_config_override(cfg, "--log-level", "log_level", json_string("debug"), NULL, &err), 0);
    ASSERT_EQ(cfg->log_level, ZLB_LOG_DEBUG);
    zlb_config_destroy(cfg);
}

/* The ranges are the file's: the same limits and words, with the flag named first. */
static void test_values_refused(void)
{
    zlb_config_t *cfg = parse("{\"warmup\": \"5s\", \"duration\": \"10s\"}");
    expect_refused(cfg, "--connections", "connections", json_integer(0),
                   "--connections: expected an integer 1..10000000, got 0");
    expect_refused(cfg, "--connections", "connections", json_string("abc"),
                   "--connections: expected an integer 1..10000000, got a string");
    expect_refused(cfg, "--pollers", "pollers.count", json_integer(2000),
                   "--pollers: expected an integer 0..1024, got 2000");
    /* A rule across fields keeps the key it names. */
    expect_refused(cfg, "--duration", "duration", json_string("3s"),
                   "--duration: warmup: warmup (5s) must be shorter than duration (3s)");
    zlb_config_destroy(cfg);
    cfg = parse("{}");
    zlb_config_error_t err;
    ASSERT_NE(zlb_config_override(cfg, "--connect-rate", "connect_rate", json_real(-1), NULL, &err),
              0);
    ASSERT(strncmp(err.message, "--connect-rate: expected a number 0..1e9", 40) == 0);
    ASSERT_NE(zlb_config_override(cfg, "--log-level", "log_level", json_string("loud"), NULL, &err),
              0);
    ASSERT(strncmp(err.message, "--log-level: expected one of", 28) == 0);
    zlb_config_destroy(cfg);
}

/* The config hash names the scenario: where its output goes does not change it. */
static void test_hash_is_the_scenario(void)
{
    zlb_config_t *a = parse("{\"connections\": 10}");
    zlb_config_t *b =
        parse("{\"connections\": 10, \"report\": {\"file\": \"/tmp/other.json\"}, "
              "\"control\": {\"listen\": \"127.0.0.1:9999\"}, \"log_level\": \"warn\"}");
    zlb_config_t *c = parse("{\"connections\": 11}");
    char ha[17], hb[17], hc[17];
    zlb_config_hash(a, ha);
    zlb_config_hash(b, hb);
    zlb_config_hash(c, hc);
    printf("  %s %s %s\n", ha, hb, hc);
    ASSERT_STREQ(ha, hb);
    ASSERT(strcmp(ha, hc) != 0);
    zlb_config_destroy(a);
    zlb_config_destroy(b);
    zlb_config_destroy(c);
}

int main(void)
{
    RUN_TEST(test_values_applied);
    RUN_TEST(test_values_refused);
    RUN_TEST(test_hash_is_the_scenario);
    fprintf(stderr, "all config override tests passed\n");
    return 0;
}
