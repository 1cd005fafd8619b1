/* test_config_live.c -- PATCH /run bodies: the values they set, and every refusal in the config
 * file's words (key path first), with nothing set on error. */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "test.h"

#define HTTP_CFG(extra)                                                                            \
    "{\"embedded_target\": {\"mode\": \"http\"}, \"workload\": {\"type\": \"http\", " extra "}}"

static zlb_config_t *parse_ok(const char *text)
{
    zlb_config_t *cfg;
    zlb_config_error_t err;
    if (zlb_config_parse(text, "cfg.json", NULL, &cfg, &err) != 0)
        ZLB_TEST_FAIL("config refused: %s", err.message);
    return cfg;
}

static void expect_error(const zlb_config_t *cfg, const char *body, const char *want)
{
    zlb_config_patch_t p;
    char err[600] = "";
    memset(&p, 0xab, sizeof(p)); /* whatever it held, an error leaves it zeroed */
    int rc = zlb_config_parse_patch(cfg, body, strlen(body), &p, err, sizeof(err));
    fprintf(stderr, "  %-44s -> %s\n", body, err);
    ASSERT_EQ(rc, -22);
    ASSERT_STREQ(err, want);
    ASSERT(!p.has_connections && !p.has_connect_rate && !p.has_close_rate && !p.has_rate &&
           !p.has_paused);
}

static void test_values(void)
{
    zlb_config_t *cfg = parse_ok(HTTP_CFG("\"request_rate\": 100"));
    zlb_config_patch_t p;
    char err[600] = "";
    const char *body = "{\"connections\": 300, \"connect_rate\": 50.5, \"request_rate\": 0,\n"
                       " \"close_rate\": 10, \"paused\": true}";
    ASSERT_EQ(zlb_config_parse_patch(cfg, body, strlen(body), &p, err, sizeof(err)), 0);
    ASSERT(p.has_connections && p.has_connect_rate && p.has_rate && p.has_close_rate &&
           p.has_paused);
    ASSERT_UEQ(p.connections, 300);
    ASSERT_NEAR(p.connect_rate, 50.5, 1e-12);
    ASSERT_NEAR(p.rate, 0, 0);
    ASSERT_NEAR(p.close_rate, 10, 0);
    ASSERT(p.paused);

    /* Only what it names; {} names nothing. */
    ASSERT_EQ(zlb_config_parse_patch(cfg, "{\"connect_rate\": 0}", 19, &p, err, sizeof(err)), 0);
    ASSERT(p.has_connect_rate && !p.has_connections && !p.has_rate && !p.has_paused);
    ASSERT_NEAR(p.connect_rate, 0, 0);
    ASSERT_EQ(zlb_config_parse_patch(cfg, " {} ", 4, &p, err, sizeof(err)), 0);
    ASSERT(!p.has_connect_rate && !p.has_connections);
    body = "{\"stages\": [{\"duration\": \"2s\", \"connections\": 10}, {\"duration\": \"0s\", "
           "\"request_rate\": 5}]}";
    ASSERT_EQ(zlb_config_parse_patch(cfg, body, strlen(body), &p, err, sizeof(err)), 0);
    ASSERT_UEQ(p.nstages, 2);
    ASSERT_UEQ(p.stages[0].duration_ns, 2000000000ull);
    ASSERT_UEQ(p.stages[0].to.connections, 10);
    ASSERT_NEAR(p.stages[1].to.rate, 5, 0);
    zlb_config_patch_dispose(&p);
    zlb_config_destroy(cfg);
}

static void test_refusals(void)
{
    zlb_config_t *http = parse_ok(HTTP_CFG("\"request_rate\": 100"));
    zlb_config_t *closed = parse_ok(HTTP_CFG("\"keepalive\": true"));
    zlb_config_t *hold = parse_ok("{\"workload\": {\"type\": \"hold\"}}");
    zlb_config_t *stream = parse_ok("{\"workload\": {\"type\": \"stream\", \"rate\": 1000}}");
    zlb_config_t *echo =
        parse_ok("{\"workload\": {\"type\": \"echo\", \"message_rate\": 10, \"message_size\": 8}}");

    /* Wrong types, out of range: the file's messages. */
    expect_error(http, "{\"connect_rate\": \"100\"}",
                 "connect_rate: expected a number 0..1e9 (0 = unlimited), got a string");
    expect_error(http, "{\"connect_rate\": -1}",
                 "connect_rate: expected a number 0..1e9 (0 = unlimited), got -1");
    expect_error(http, "{\"connect_rate\": 0.0001}",
                 "connect_rate: expected 0 (unlimited) or a number 0.001..1e9 connections per "
                 "second");
    expect_error(http, "{\"connections\": -1}",
                 "connections: expected an integer 0..10000000, got -1");
    expect_error(http, "{\"connections\": 1.5}",
                 "connections: expected an integer 0..10000000, got 1.5");
    expect_error(http, "{\"connections\": 20000000}",
                 "connections: expected an integer 0..10000000, got 20000000");
    expect_error(http, "{\"close_rate\": null}",
                 "close_rate: expected a number 0..1e9 (0 = as fast as allowed), got null");
    expect_error(http, "{\"request_rate\": 2e9}",
                 "request_rate: expected a number 0..1e9, got 2e+09");
    expect_error(http, "{\"paused\": 1}", "paused: expected a boolean, got 1");
    /* Unknown keys, with the file's suggestion. */
    expect_error(http, "{\"conections\": 5}",
                 "conections: unknown key 'conections' (did you mean 'connections'?)");
    expect_error(http, "{\"duration\": \"5s\"}", "duration: unknown key 'duration'");
    /* Rate keys: the workload's own only, and only in a run with a rate. */
    expect_error(http, "{\"message_rate\": 5}",
                 "message_rate: the http workload's rate is request_rate, not message_rate");
    expect_error(echo, "{\"request_rate\": 5}",
                 "request_rate: the echo workload's rate is message_rate, not request_rate");
    expect_error(hold, "{\"request_rate\": 5}",
                 "request_rate: the hold workload has no whole-run rate to change");
    expect_error(stream, "{\"rate\": 5}",
                 "rate: the stream workload's rate is stream_rate, not rate");
    expect_error(stream, "{\"request_rate\": 5}",
                 "request_rate: the stream workload's rate is stream_rate, not request_rate");
    expect_error(closed, "{\"request_rate\": 5}",
                 "request_rate: this run is a closed loop (request_rate 0 in its config): only a "
                 "run started with a rate can change it");
    /* Stages: the file's stage rules, paths from "stages". */
    expect_error(http, "{\"stages\": [{\"duration\": \"1s\", \"connections\": -5}]}",
                 "stages[0].connections: expected an integer 0..10000000, got -5");
    expect_error(http, "{\"stages\": {}}", "stages: expected an array of stages, got an object");
    expect_error(http,
                 "{\"connect_rate\": 5, \"stages\": [{\"duration\": \"1s\", \"messages\": 1}]}",
                 "stages[0].messages: unknown key 'messages'");
    /* Not an object, not JSON, nothing at all. */
    expect_error(http, "[1]", "expected a JSON object, got an array");
    expect_error(http, "{\"connections\": 5,\n \"x\": }",
                 "line 2, column 7: invalid JSON: unexpected token near '}'");
    expect_error(http, "{\"connections\": 5, \"connections\": 6}",
                 "line 1, column 32: invalid JSON: duplicate object key near '\"connections\"'");
    expect_error(http, "{} {}", "line 1, column 4: invalid JSON: end of file expected near '{'");
    expect_error(http, "  \n", "empty body (expected a JSON object, e.g. {\"connect_rate\": 100})");

    zlb_config_destroy(http);
    zlb_config_destroy(closed);
    zlb_config_destroy(hold);
    zlb_config_destroy(stream);
    zlb_config_destroy(echo);
}

/* A stream's rate (workload.rate, bytes/s per connection) under "stream_rate": the file's range
 * and words for workload.rate, any value from any (0 is unpaced, not a closed loop). */
static void test_stream_rate(void)
{
    zlb_config_t *unpaced = parse_ok("{\"workload\": {\"type\": \"stream\"}}");
    zlb_config_t *recv =
        parse_ok("{\"embedded_target\": {\"mode\": \"source\"}, \"workload\": {\"type\": "
                 "\"stream\", \"direction\": \"receive\"}}");
    zlb_config_patch_t p;
    char err[600] = "";
    const char *body = "{\"stream_rate\": 2.5e6, \"connections\": 7}";

    ASSERT_EQ(zlb_config_parse_patch(unpaced, body, strlen(body), &p, err, sizeof(err)), 0);
    ASSERT(p.has_rate && p.has_connections);
    ASSERT_NEAR(p.rate, 2.5e6, 0);
    body = "{\"stream_rate\": 0}";
    ASSERT_EQ(zlb_config_parse_patch(unpaced, body, strlen(body), &p, err, sizeof(err)), 0);
    ASSERT(p.has_rate);
    ASSERT_NEAR(p.rate, 0, 0);
    body = "{\"stream_rate\": 1e12}";
    ASSERT_EQ(zlb_config_parse_patch(unpaced, body, strlen(body), &p, err, sizeof(err)), 0);
    ASSERT_NEAR(p.rate, 1e12, 0);
    /* Receiving only: 0 changes nothing and is taken, a rate is refused as in the file. */
    body = "{\"stream_rate\": 0}";
    ASSERT_EQ(zlb_config_parse_patch(recv, body, strlen(body), &p, err, sizeof(err)), 0);

    /* The same words as the file's workload.rate, the key path apart. */
    const char *file_bad[][2] = {
        {"{\"workload\": {\"type\": \"stream\", \"rate\": 2e12}}", "{\"stream_rate\": 2e12}"},
        {"{\"workload\": {\"type\": \"stream\", \"rate\": -1}}", "{\"stream_rate\": -1}"},
        {"{\"workload\": {\"type\": \"stream\", \"rate\": \"fast\"}}",
         "{\"stream_rate\": \"fast\"}"},
        {"{\"workload\": {\"type\": \"stream\", \"rate\": null}}", "{\"stream_rate\": null}"},
        {"{\"workload\": {\"type\": \"stream\", \"direction\": \"receive\", \"rate\": 5}}",
         "{\"stream_rate\": 5}"},
    };
    for (size_t i = 0; i < sizeof(file_bad) / sizeof(file_bad[0]); i++) {
        zlb_config_t *cfg;
        zlb_config_error_t ferr;
        ASSERT_EQ(zlb_config_parse(file_bad[i][0], NULL, NULL, &cfg, &ferr), -22);
        const char *reason = strstr(ferr.message, "workload.rate: ");
        ASSERT(reason != NULL);
        reason += strlen("workload.rate: ");
        char want[600];
        snprintf(want, sizeof(want), "stream_rate: %s", reason);
        expect_error(strstr(file_bad[i][0], "receive") ? recv : unpaced, file_bad[i][1], want);
    }
    zlb_config_destroy(unpaced);
    zlb_config_destroy(recv);
}

int main(void)
{
    test_values();
    test_stream_rate();
    test_refusals();
    fprintf(stderr, "test_config_live: ok\n");
    return 0;
}
