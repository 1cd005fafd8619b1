/* test_config.c -- config parsing: error messages and places, defaults, round trips, examples. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"
#include "test.h"

/* Stands in for the run module's report schema. */
static bool fake_metric_path(const char *path)
{
    static const char *const known[] = {"latency_us.connect.p99", "connections.failed.total",
                                        "generator.saturated", "connections.established"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(known); i++)
        if (strcmp(path, known[i]) == 0)
            return true;
    return false;
}

typedef struct bad_case {
    const char *what;
    const char *text;
    const char *expect; /* the whole message, or a part of it when `part` */
    bool part;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* syntax, as jansson reports it */
    {"duplicate key", "{\n  \"connections\": 10,\n  \"connections\": 20\n}",
     "config.json:3:3: connections: duplicate key 'connections'", false},
    {"duplicate key, nested",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1}, {\"host\": \"b\", \"port\": 2, \"port\": 3}]}",
     "config.json:1:65: targets[1].port: duplicate key 'port'", false},
    {"duplicate key after a multi-byte character", "{\"\xc3\xa9\": 1, \"\xc3\xa9\": 2}",
     "config.json:1:10: [\"\xc3\xa9\"]: duplicate key '\xc3\xa9'", false},
    {"trailing garbage", "{\"connections\": 10} x",
     "config.json:1:21: invalid JSON: end of file expected near 'x'", false},
    {"unterminated object", "{\"connections\": 10,\n",
     "config.json:2:0: invalid JSON: string or '}' expected near end of file", false},
    {"integer beyond 64 bits", "{\"connections\": 99999999999999999999}",
     "config.json:1:36: invalid JSON: too big integer", true},
    {"empty", "", "config.json: empty file (expected a JSON object)", false},
    {"whitespace only", " \n\t\r\n", "config.json: empty file (expected a JSON object)", false},
    {"top-level array", "\n  [1, 2]",
     "config.json:2:3: the top level must be an object, got an array", false},
    {"top-level scalar", "42", "config.json:1:2: invalid JSON: '[' or '{' expected near '42'",
     false},

    /* unknown keys */
    {"unknown key with a suggestion", "{\n  \"conections\": 10\n}",
     "config.json:2:3: conections: unknown key 'conections' (did you mean 'connections'?)", false},
    {"unknown key, transposition", "{\"socket\": {\"nodelay\": true, \"sndbfu\": 0}}",
     "config.json:1:30: socket.sndbfu: unknown key 'sndbfu' (did you mean 'sndbuf'?)", false},
    {"unknown key, no suggestion", "{\"xyzzy\": 1}", "config.json:1:2: xyzzy: unknown key 'xyzzy'",
     false},
    {"unknown key in a target's tls",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"verfiy\": false}}]}",
     "config.json:1:47: targets[0].tls.verfiy: unknown key 'verfiy' (did you mean 'verify'?)",
     false},

    /* types and ranges */
    {"wrong type", "{\"socket\": {\"nodelay\": \"yes\"}}",
     "config.json:1:24: socket.nodelay: expected a boolean, got a string", false},
    {"section of the wrong type", "{\"workload\": [1]}",
     "config.json:1:14: workload: expected an object, got an array", false},
    {"port out of range",
     "{\n"
     "  \"targets\": [\n"
     "    {\"host\": \"127.0.0.1\",\n"
     "     \"port\": 9000},\n"
     "    {\n"
     "      \"host\": \"::1\",\n"
     "      \"port\": 70000\n"
     "    }\n"
     "  ]\n"
     "}\n",
     "config.json:7:15: targets[1].port: expected an integer 1..65535, got 70000", false},
    {"port 0", "{\"targets\": [{\"host\": \"a\", \"port\": 0}]}",
     "config.json:1:36: targets[0].port: expected an integer 1..65535, got 0", false},
    {"port as a string", "{\"targets\": [{\"host\": \"a\", \"port\": \"80\"}]}",
     "targets[0].port: expected an integer 1..65535, got a string", true},
    {"missing port", "{\"targets\": [{\"host\": \"a\"}]}",
     "config.json:1:14: targets[0]: missing required key 'port'", false},
    {"host with a port", "{\"targets\": [{\"host\": \"a.example:80\", \"port\": 80}]}",
     "config.json:1:23: targets[0].host: invalid host \"a.example:80\"", true},
    {"no targets", "{\"targets\": []}", "config.json:1:13: targets: must list at least one target",
     false},
    {"2^32+1 in an int field", "{\"embedded_target\": {\"backlog\": 4294967297}}",
     "config.json:1:33: embedded_target.backlog: expected an integer 1..1048576, got 4294967297",
     false},
    {"2^32+1 in a uint32 field",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"weight\": 4294967297}]}",
     "targets[0].weight: expected an integer 1..1000000, got 4294967297", true},
    {"fractional connections", "{\"connections\": 1.5}",
     "config.json:1:17: connections: expected an integer 1..10000000, got 1.5", false},
    {"integral fraction for an integer", "{\"connections\": 2000.0}",
     "connections: expected an integer 1..10000000, got 2000.0", true},
    {"error after a byte order mark", "\xef\xbb\xbf{\"connections\": true}",
     "config.json:1:17: connections: expected an integer 1..10000000, got a boolean", false},
    {"zero connections", "{\"connections\": 0}",
     "connections: expected an integer 1..10000000, got 0", true},
    {"negative rate", "{\"connect_rate\": -1}",
     "config.json:1:18: connect_rate: expected a number 0..1e9 (0 = unlimited), got -1", false},
    {"nice out of range", "{\"pollers\": {\"nice\": -21}}",
     "pollers.nice: expected an integer -20..19, got -21", true},
    {"cpu listed twice", "{\"pollers\": {\"cpus\": [1, 2, 1]}}",
     "config.json:1:29: pollers.cpus[2]: CPU 1 is listed twice", false},
    {"percentile of 100", "{\"report\": {\"percentiles\": [50, 100]}}",
     "config.json:1:33: report.percentiles[1]: expected a number greater than 0 and less than "
     "100, got 100",
     false},
    {"too many percentiles",
     "{\"report\": {\"percentiles\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}",
     "report.percentiles: expected 1..16 percentiles, got 17", true},
    {"html report of the wrong type", "{\"report\": {\"html\": 3}}",
     "report.html: expected true, false, null or a file name, got 3", true},
    {"resumption above 1",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"resumption\": 1.5}}]}",
     "targets[0].tls.resumption: expected a number 0..1, got 1.5", true},
    {"tls of the wrong type", "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": \"yes\"}]}",
     "targets[0].tls: expected a boolean or an object, got a string", true},
    {"bad tls version",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"min_version\": \"1.4\"}}]}",
     "targets[0].tls.min_version: expected one of \"1.0\", \"1.1\", \"1.2\", \"1.3\", got \"1.4\"",
     true},
    {"empty string", "{\"report\": {\"file\": \"\"}}",
     "report.file: must not be empty (use null to leave it unset)", true},
    {"enum typo", "{\"workload\": {\"type\": \"chrun\"}}",
     "config.json:1:23: workload.type: expected one of \"hold\", \"churn\", \"echo\", \"http\", "
     "\"message\", \"stream\", got "
     "\"chrun\" (did you mean \"churn\"?)",
     false},

    /* the message workload */
    {"message: unknown escape",
     "{\"workload\": {\"type\": \"message\",\n \"message\": \"PING\\\\q\"}}",
     "config.json:2:13: workload.message: unknown escape \\q at byte 4 (known: \\r \\n \\t \\\\ "
     "\\xNN)",
     false},
    {"message: short \\x", "{\"workload\": {\"type\": \"message\", \"message\": \"a\\\\x4\"}}",
     "workload.message: \\x at byte 1 needs two hex digits", true},
    {"message and message_hex",
     "{\"workload\": {\"type\": \"message\", \"message\": \"a\", \"message_hex\": \"61\"}}",
     "workload.message_hex: give one of message, message_hex or message_file (message is given "
     "too)",
     true},
    {"message_hex odd", "{\"workload\": {\"type\": \"message\", \"message_hex\": \"2a3\"}}",
     "workload.message_hex: expected pairs of hex digits", true},
    {"message_hex not hex", "{\"workload\": {\"type\": \"message\", \"message_hex\": \"2a zz\"}}",
     "workload.message_hex: not a hex digit at byte 3 ('z')", true},
    {"message_file missing",
     "{\"workload\": {\"type\": \"message\", \"message_file\": \"/nonexistent/m.bin\"}}",
     "workload.message_file: cannot read /nonexistent/m.bin", true},
    {"message with message_size",
     "{\"workload\": {\"type\": \"message\", \"message\": \"a\", \"message_size\": 10}}",
     "workload.message_size: sizes the generated message only", true},
    {"expect: bad string", "{\"workload\": {\"type\": \"message\", \"expect\": \"line\"}}",
     "workload.expect: expected \"echo\", {\"bytes\": N} or {\"delimiter\": \"...\"}, got "
     "\"line\"",
     true},
    {"expect: two framings",
     "{\"workload\": {\"type\": \"message\", \"expect\": {\"bytes\": 1, \"delimiter\": \"x\"}}}",
     "workload.expect: expected \"echo\", {\"bytes\": N} or {\"delimiter\": \"...\"}, got an "
     "object without exactly one of them",
     true},
    {"expect: bytes 0", "{\"workload\": {\"type\": \"message\", \"expect\": {\"bytes\": 0}}}",
     "workload.expect.bytes: ", true},
    {"expect: empty delimiter",
     "{\"workload\": {\"type\": \"message\", \"expect\": {\"delimiter\": \"\"}}}",
     "workload.expect.delimiter: must be 1..64 bytes after escapes, got 0", true},
    {"echo with a delimiter",
     "{\"workload\": {\"type\": \"echo\", \"expect\": {\"delimiter\": \"\\r\\n\"}}}",
     "workload.expect: the echo workload expects the echo; other framings need type \"message\"",
     true},
    {"prefix longer than the reply",
     "{\"workload\": {\"type\": \"message\", \"expect\": {\"bytes\": 2}, \"expect_prefix\": "
     "\"+PONG\"}}",
     "workload.expect_prefix: is 5 bytes, longer than the whole reply (2 bytes)", true},
    {"prefix past the delimiter",
     "{\"workload\": {\"type\": \"message\", \"expect\": {\"delimiter\": \"\\r\\n\"}, "
     "\"expect_prefix\": \"+OK\\r\\n+PONG\"}}",
     "workload.expect_prefix: holds the delimiter before its end", true},
    {"rate and interval",
     "{\"workload\": {\"type\": \"message\", \"message_rate\": 100, \"message_interval\": "
     "\"10ms\"}}",
     "workload.message_interval: give message_rate (for the whole run) or message_interval (per "
     "connection), not both",
     true},
    {"message against a sink",
     "{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"message\"}}",
     "workload.type: the message workload needs a target that replies (echo, redis or http); "
     "embedded_target.mode is \"sink\"",
     true},
    {"bad log level", "{\"log_level\": \"verbose\"}",
     "log_level: expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"off\", got "
     "\"verbose\"",
     true},
    {"negative size", "{\"socket\": {\"sndbuf\": -5}}",
     "socket.sndbuf: expected a size in bytes (a non-negative integer or a string like "
     "\"64KiB\"), got -5",
     true},
    {"bad size unit", "{\"workload\": {\"message_size\": \"64 bytes\"}}",
     "workload.message_size: invalid size \"64 bytes\"", true},
    {"bad listen address", "{\"control\": {\"listen\": \"[::1]\"}}",
     "config.json:1:24: control.listen: invalid address \"[::1]\"", true},
    {"unbracketed IPv6 listen address", "{\"embedded_target\": {\"listen\": \"::1:0\"}}",
     "embedded_target.listen: invalid address \"::1:0\"", true},
    {"listen on a name the listener cannot bind", "{\"embedded_target\": {\"listen\": \"a.b:0\"}}",
     "config.json:1:32: embedded_target.listen: cannot listen on \"a.b:0\": expected an IP "
     "address or localhost",
     true},
    {"control beyond loopback without a token", "{\"control\": {\"listen\": \"0.0.0.0:8089\"}}",
     "config.json:1:24: control.listen: \"0.0.0.0:8089\" is not a loopback address: the control "
     "port needs control.token_file (or ZLB_CONTROL_TOKEN_FILE) to listen there",
     false},
    {"control on a private address without a token", "{\"control\": {\"listen\": \"10.1.2.3:80\"}}",
     "config.json:1:24: control.listen: \"10.1.2.3:80\" is not a loopback address", true},
    {"control on IPv6 any without a token", "{\"control\": {\"listen\": \"[::]:8089\"}}",
     "config.json:1:24: control.listen: \"[::]:8089\" is not a loopback address", true},

    /* durations */
    {"duration as a bare number", "{\"duration\": 10}",
     "config.json:1:14: duration: expected a duration with a unit, e.g. \"10s\" or \"500ms\", "
     "got 10",
     false},
    {"duration string without a unit", "{\"duration\": \"10\"}",
     "config.json:1:14: duration: \"10\" needs a unit (ns, us, ms, s, m, h), e.g. \"10s\"", false},
    {"duration with an unknown unit", "{\"duration\": \"10parsecs\"}",
     "config.json:1:14: duration: invalid duration \"10parsecs\" (expected a number and a unit: "
     "ns, us, ms, s, m, h; e.g. \"500ms\")",
     false},
    {"duration too large", "{\"duration\": \"99999999999999h\"}",
     "duration: duration \"99999999999999h\" is out of range", true},
    {"processes zero", "{\"processes\": 0}", "processes: ", true},
    {"processes unknown word", "{\"processes\": \"many\"}",
     "config.json:1:15: processes: expected an integer 1..256 or \"auto\", got \"many\"", false},
    {"processes too many", "{\"processes\": 257}", "processes: ", true},
    {"duration too short", "{\"stats_interval\": \"1ms\"}",
     "stats_interval: \"1ms\" is too short (at least 10ms)", true},
    {"keepalive below a second", "{\"socket\": {\"keepalive\": {\"idle\": \"500ms\"}}}",
     "socket.keepalive.idle: \"500ms\" is too short (at least 1s)", true},
    {"keepalive not whole seconds", "{\"socket\": {\"keepalive\": {\"interval\": \"1500ms\"}}}",
     "config.json:1:39: socket.keepalive.interval: must be whole seconds, 1s..32767s", false},

    /* source addresses */
    {"reversed range", "{\"source_ips\": [\"127.0.0.1\", \"127.0.0.20-127.0.0.2\"]}",
     "config.json:1:30: source_ips[1]: invalid source address \"127.0.0.20-127.0.0.2\": the "
     "range is reversed (its first address is greater than its last)",
     false},
    {"range of mixed families", "{\"source_ips\": [\"127.0.0.1-::1\"]}",
     "source_ips[0]: invalid source address \"127.0.0.1-::1\": both ends of a range must be of "
     "the same address family",
     true},
    {"range too large", "{\"source_ips\": [\"10.0.0.0-10.1.0.0\"]}",
     "source_ips[0]: range \"10.0.0.0-10.1.0.0\" covers more than 65536 addresses", true},
    {"IPv6 range too large", "{\"source_ips\": [\"fd00::-fd00::1:0:0\"]}",
     "covers more than 65536 addresses", true},
    {"not an address", "{\"source_ips\": [\"127.0.0.300\"]}",
     "source_ips[0]: invalid source address \"127.0.0.300\": not an IPv4 or IPv6 address", true},
    {"overlapping ranges", "{\"source_ips\": [\"10.0.0.1-10.0.0.9\", \"10.0.0.9\"]}",
     "config.json:1:38: source_ips[1]: address 10.0.0.9 is also in source_ips[0]", false},
    {"IPv6 source with family ipv4",
     "{\"family\": \"ipv4\", \"source_ips\": [\"127.0.0.2\", \"::1\"]}",
     "config.json:1:48: source_ips[1]: an IPv6 source address does not match family \"ipv4\"",
     false},
    {"IPv4 target with family ipv6",
     "{\"family\": \"ipv6\", \"targets\": [{\"host\": \"10.1.2.3\", \"port\": 1}]}",
     "targets[0].host: address \"10.1.2.3\" does not match family \"ipv6\"", true},

    /* cross-field rules */
    {"realtime without rt_priority", "{\"pollers\": {\"priority\": \"realtime\"}}",
     "config.json:1:26: pollers.priority: priority \"realtime\" needs pollers.rt_priority set to "
     "1..99",
     true},
    {"warmup as long as duration", "{\"duration\": \"10s\",\n \"warmup\": \"10s\"}",
     "config.json:2:12: warmup: warmup (10s) must be shorter than duration (10s)", false},
    {"warmup longer than the default duration", "{\"warmup\": \"1m\"}",
     "config.json:1:12: warmup: warmup (1m) must be shorter than duration (10s)", false},
    {"targets and embedded_target",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1}], \"embedded_target\": {}}",
     "config.json:1:60: embedded_target: use either targets or embedded_target, not both", false},
    {"ramp to an unlimited rate", "{\"connect_rate\": 0, \"ramp\": {\"duration\": \"2s\"}}",
     "ramp.duration: a ramp needs a connect_rate to rise to", true},
    {"ramp starting above the rate",
     "{\"connect_rate\": 10, \"ramp\": {\"duration\": \"2s\", "
     "\"start_rate\": 20}}",
     "ramp.start_rate: start_rate must not exceed connect_rate", true},
    {"backoff_min above backoff_max", "{\"workload\": {\"backoff_min\": \"10s\"}}",
     "workload.backoff_min: backoff_min must not exceed backoff_max", true},
    {"echo workload on a sink",
     "{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": "
     "{\"type\": \"echo\"}}",
     "workload.type: the echo workload needs a target that echoes; embedded_target.mode is "
     "\"sink\"",
     true},
    {"tls versions reversed",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"min_version\": \"1.3\", "
     "\"max_version\": \"1.2\"}}]}",
     "targets[0].tls.min_version: min_version is above max_version", true},
    {"key without certificate",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"key_file\": \"/dev/null\"}}]}",
     "targets[0].tls.key_file: key_file needs cert_file", true},

    /* thresholds */
    {"threshold without an operator", "{\"thresholds\": {\"connections.failed.total\": \"0\"}}",
     "config.json:1:45: thresholds[\"connections.failed.total\"]: invalid condition \"0\"", true},
    {"threshold with a single =", "{\"thresholds\": {\"connections.failed.total\": \"= 0\"}}",
     "invalid condition \"= 0\"", true},
    {"threshold with trailing text", "{\"thresholds\": {\"connections.failed.total\": \"< 5 ms\"}}",
     "invalid condition \"< 5 ms\"", true},
    {"threshold of nan", "{\"thresholds\": {\"connections.failed.total\": \"< nan\"}}",
     "invalid condition \"< nan\"", true},
    {"threshold as a number", "{\"thresholds\": {\"connections.failed.total\": 0}}",
     "thresholds[\"connections.failed.total\"]: expected a condition string like \"< 5000\" or "
     "\"== false\", got 0",
     true},
    {"missing CA file",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"ca_file\": "
     "\"/nonexistent/ca.pem\"}}]}",
     "config.json:1:58: targets[0].tls.ca_file: cannot read /nonexistent/ca.pem: No such file or "
     "directory",
     true},
    {"ca_dir that is a file",
     "{\"targets\": [{\"host\": \"a\", \"port\": 1, \"tls\": {\"ca_dir\": \"/dev/null\"}}]}",
     "targets[0].tls.ca_dir: /dev/null is not a directory", true},
    {"percentile named like a fixed one", "{\"report\": {\"percentiles\": [9.99]}}",
     "report.percentiles[0]: percentile 9.99 would be reported as p999, the name of 99.9", true},
    {"percentiles named alike", "{\"report\": {\"percentiles\": [12.5, 1.25]}}",
     "report.percentiles[1]: percentile 1.25 would be reported as p125, the name of 12.5", true},
    {"connect_rate too small", "{\"connect_rate\": 1e-300}",
     "connect_rate: expected 0 (unlimited) or a number 0.001..1e9", true},
    {"key path after an empty source_ips", "{\"source_ips\": [], \"connections\": \"x\"}",
     "config.json:1:35: connections: expected an integer", true},
    {"unknown metric path", "{\"thresholds\": {\n  \"latency_us.conect.p99\": \"< 5\"}}",
     "config.json:2:3: thresholds[\"latency_us.conect.p99\"]: unknown metric path "
     "'latency_us.conect.p99'",
     false},
};

static void test_bad_configs(void)
{
    int failures = 0;
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad_cases); i++) {
        const bad_case_t *b = &bad_cases[i];
        zlb_config_t *cfg = (zlb_config_t *)1;
        zlb_config_error_t err;
        int rc = zlb_config_parse(b->text, "config.json", fake_metric_path, &cfg, &err);
        if (rc != -EINVAL || cfg != NULL)
            ZLB_TEST_FAIL("%s: rc %d, expected -EINVAL", b->what, rc);
        /* Report every mismatch before failing: one run shows the whole table's state. */
        if (b->part ? strstr(err.message, b->expect) == NULL
                    : strcmp(err.message, b->expect) != 0) {
            fprintf(stderr, "%s:\n  got      %s\n  expected %s%s\n", b->what, err.message,
                    b->part ? "... " : "", b->expect);
            failures++;
        }
    }
    ASSERT_EQ(failures, 0);
}

static void test_thresholds_unchecked_without_callback(void)
{
    zlb_config_t *cfg;
    zlb_config_error_t err;
    ASSERT_EQ(zlb_config_parse("{\"thresholds\": {\"anything.at.all\": \"< 1\"}}", "t.json", NULL,
                               &cfg, &err),
              0);
    ASSERT_UEQ(cfg->nthresholds, 1);
    ASSERT_STREQ(cfg->thresholds[0].path, "anything.at.all");
    zlb_config_destroy(cfg);
}

static void test_threshold_expressions(void)
{
    static const char *text = "{\"thresholds\": {"
                              "\"latency_us.connect.p99\": \"<5000\","
                              "\"connections.failed.total\": \" == 0 \","
                              "\"generator.saturated\": \"== false\","
                              "\"connections.established\": \">=1.5e3\"}}";
    zlb_config_t *cfg;
    zlb_config_error_t err;
    int rc = zlb_config_parse(text, "t.json", fake_metric_path, &cfg, &err);
    if (rc != 0)
        ZLB_TEST_FAIL("%s", err.message);
    ASSERT_UEQ(cfg->nthresholds, 4);
    ASSERT_STREQ(cfg->thresholds[0].path, "latency_us.connect.p99");
    ASSERT_EQ(cfg->thresholds[0].op, ZLB_OP_LT);
    ASSERT_CMP_DBL(cfg->thresholds[0].value, ==, 5000);
    ASSERT_STREQ(cfg->thresholds[0].expr, "<5000");
    ASSERT_EQ(cfg->thresholds[1].op, ZLB_OP_EQ);
    ASSERT_CMP_DBL(cfg->thresholds[1].value, ==, 0);
    ASSERT_EQ(cfg->thresholds[2].op, ZLB_OP_EQ);
    ASSERT_CMP_DBL(cfg->thresholds[2].value, ==, 0);
    ASSERT_EQ(cfg->thresholds[3].op, ZLB_OP_GE);
    ASSERT_CMP_DBL(cfg->thresholds[3].value, ==, 1500);
    zlb_config_destroy(cfg);

    static const struct {
        const char *expr;
        zlb_op_t op;
        double value;
    } ok[] = {{"<= 1", ZLB_OP_LE, 1},
              {"> -2.5", ZLB_OP_GT, -2.5},
              {"!= true", ZLB_OP_NE, 1},
              {"< .5", ZLB_OP_LT, 0.5}};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(ok); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"thresholds\": {\"generator.saturated\": \"%s\"}}",
                 ok[i].expr);
        rc = zlb_config_parse(buf, "t.json", fake_metric_path, &cfg, &err);
        if (rc != 0)
            ZLB_TEST_FAIL("%s: %s", ok[i].expr, err.message);
        ASSERT_EQ(cfg->thresholds[0].op, ok[i].op);
        ASSERT_CMP_DBL(cfg->thresholds[0].value, ==, ok[i].value);
        zlb_config_destroy(cfg);
    }
}

static void check_defaults(const zlb_config_t *cfg)
{
    ASSERT_EQ(cfg->pollers.count, 0);
    ASSERT(cfg->pollers.cpu_affinity);
    ASSERT(cfg->pollers.cpus == NULL);
    ASSERT_EQ(cfg->pollers.priority, ZLB_CFG_PRIO_NORMAL);
    ASSERT_EQ(cfg->pollers.nice, -10);
    ASSERT_EQ(cfg->pollers.rt_policy, SCHED_FIFO);
    ASSERT_EQ(cfg->pollers.rt_priority, 0);
    ASSERT(!cfg->pollers.round_robin);
    ASSERT(cfg->pollers.prefer_current);
    ASSERT_UEQ(cfg->pollers.load_window_ns, ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->ntargets, 0);
    ASSERT(cfg->embedded_target.enabled);
    ASSERT_EQ(cfg->embedded_target.mode, ZLB_SERVE_ECHO);
    ASSERT_STREQ(cfg->embedded_target.listen, "127.0.0.1:0");
    ASSERT_EQ(cfg->embedded_target.backlog, 4096);
    ASSERT_EQ(cfg->embedded_target.threads, 1);
    ASSERT(!cfg->embedded_target.tls);
    ASSERT(cfg->embedded_target.ca_out_file == NULL);
    ASSERT_UEQ(cfg->embedded_target.accept_delay_ns, 0);
    ASSERT_UEQ(cfg->connections, 2000);
    ASSERT_CMP_DBL(cfg->connect_rate, ==, 5000);
    ASSERT_UEQ(cfg->ramp.duration_ns, 0);
    ASSERT_UEQ(cfg->connect_timeout_ns, 5 * ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->send_timeout_ns, 10 * ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->duration_ns, 10 * ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->warmup_ns, 0);
    ASSERT_UEQ(cfg->drain_timeout_ns, 5 * ZLB_NS_PER_SEC);
    ASSERT_EQ(cfg->workload.type, ZLB_WORK_HOLD);
    ASSERT_UEQ(cfg->workload.lifetime_ns, ZLB_NS_PER_SEC);
    ASSERT(cfg->workload.reconnect);
    ASSERT_UEQ(cfg->workload.backoff_min_ns, 100 * ZLB_NS_PER_MS);
    ASSERT_UEQ(cfg->workload.backoff_max_ns, 5 * ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->workload.message_size, 64);
    ASSERT_UEQ(cfg->workload.message_interval_ns, ZLB_NS_PER_SEC);
    ASSERT_UEQ(cfg->nsource, 0);
    ASSERT_EQ(cfg->family, ZLB_FAMILY_ANY);
    ASSERT_UEQ(cfg->dns_ttl_ns, 60 * ZLB_NS_PER_SEC);
    ASSERT(cfg->socket.nodelay);
    ASSERT_UEQ(cfg->socket.sndbuf, 0);
    ASSERT_UEQ(cfg->socket.rcvbuf, 0);
    ASSERT_EQ(cfg->socket.close, ZLB_CLOSE_FIN);
    ASSERT(!cfg->socket.keepalive);
    ASSERT(cfg->control.enabled);
    ASSERT_STREQ(cfg->control.listen, "127.0.0.1:8089");
    ASSERT(cfg->control.token_file == NULL);
    ASSERT(cfg->control.address_file == NULL);
    ASSERT_STREQ(cfg->report.file, "zlbench-report.json");
    ASSERT_UEQ(cfg->report.npercentiles, 4);
    ASSERT_CMP_DBL(cfg->report.percentiles[3], ==, 99.9);
    ASSERT_UEQ(cfg->nthresholds, 0);
    ASSERT(!cfg->abort_on_fail);
    ASSERT_UEQ(cfg->abort_grace_ns, 0);
    ASSERT_UEQ(cfg->stats_interval_ns, ZLB_NS_PER_SEC);
    ASSERT_EQ(cfg->log_level, ZLB_LOG_INFO);
}

static char *dump(const zlb_config_t *cfg)
{
    json_t *j = zlb_config_to_json(cfg);
    char *s = json_dumps(j, JSON_INDENT(2));
    ASSERT(s != NULL);
    json_decref(j);
    return s;
}

static void test_defaults(void)
{
    zlb_config_t def, *parsed;
    zlb_config_error_t err;
    zlb_config_init_default(&def);
    check_defaults(&def);
    ASSERT_EQ(zlb_config_check(&def, &err), 0);
    ASSERT_EQ(zlb_config_parse("{}", "empty.json", NULL, &parsed, &err), 0);
    check_defaults(parsed);
    ASSERT(parsed->source_path == NULL);

    char *a = dump(&def), *b = dump(parsed);
    ASSERT_STREQ(a, b);
    char ha[17], hb[17];
    zlb_config_hash(&def, ha);
    zlb_config_hash(parsed, hb);
    ASSERT_STREQ(ha, hb);
    ASSERT_UEQ(strlen(ha), 16);
    ASSERT_UEQ(strspn(ha, "0123456789abcdef"), 16);
    free(a);
    free(b);

    /* An embedded_target object alone keeps the embedded target; targets alone turn it off. */
    zlb_config_destroy(parsed);
    ASSERT_EQ(zlb_config_parse("{\"embedded_target\": {\"mode\": \"http\"}}", "e.json", NULL,
                               &parsed, &err),
              0);
    ASSERT(parsed->embedded_target.enabled);
    ASSERT_EQ(parsed->embedded_target.mode, ZLB_SERVE_HTTP);
    zlb_config_destroy(parsed);
    ASSERT_EQ(
        zlb_config_parse("{\"targets\": [{\"host\": \"[::1]\", \"port\": 443, \"tls\": true}]}",
                         "t.json", NULL, &parsed, &err),
        0);
    ASSERT(!parsed->embedded_target.enabled);
    ASSERT_UEQ(parsed->ntargets, 1);
    ASSERT_STREQ(parsed->targets[0].host, "::1");
    ASSERT_EQ(parsed->targets[0].port, 443);
    ASSERT_EQ(parsed->targets[0].weight, 1);
    ASSERT(parsed->targets[0].tls.enabled);
    ASSERT(parsed->targets[0].tls.verify);
    ASSERT_UEQ(parsed->targets[0].tls.handshake_timeout_ns, 5 * ZLB_NS_PER_SEC);
    zlb_config_destroy(parsed);
    zlb_config_dispose(&def);
}

static const char full_config[] =
    "{\n"
    "  \"$schema\": \"config.schema.json\",\n"
    "  \"pollers\": {\"count\": 4, \"cpu_affinity\": false, \"cpus\": [0, 1, 3], \"priority\": "
    "\"realtime\", \"nice\": -5,\n"
    "              \"rt_policy\": \"rr\", \"rt_priority\": 10, \"select\": \"round_robin\", "
    "\"prefer_current\": false, \"load_window\": \"500ms\"},\n"
    "  \"targets\": [{\"host\": \"127.0.0.1\", \"port\": 9000, \"weight\": 3,\n"
    "               \"tls\": {\"enabled\": true, \"sni\": \"example.test\", \"verify\": false, "
    "\"ca_file\": \"/dev/null\", \"ca_dir\": \"/etc\",\n"
    "                       \"alpn\": [\"h2\", \"http/1.1\"], \"min_version\": \"1.2\", "
    "\"max_version\": \"1.3\", \"ciphers\": \"HIGH\",\n"
    "                       \"ciphersuites\": \"TLS_AES_128_GCM_SHA256\", \"groups\": "
    "\"X25519\", \"cert_file\": \"/dev/null\", \"key_file\": \"/dev/null\",\n"
    "                       \"resumption\": 0.9, \"handshake_timeout\": \"2500ms\"}},\n"
    "              {\"host\": \"localhost\", \"port\": 9001}],\n"
    "  \"connections\": 12345,\n"
    "  \"connect_rate\": 2500.5,\n"
    "  \"ramp\": {\"duration\": \"2s\", \"start_rate\": 100},\n"
    "  \"connect_timeout\": \"3s\",\n"
    "  \"send_timeout\": \"750ms\",\n"
    "  \"duration\": \"2m\",\n"
    "  \"warmup\": \"5s\",\n"
    "  \"drain_timeout\": \"1s\",\n"
    "  \"workload\": {\"type\": \"echo\", \"lifetime\": \"750ms\", \"reconnect\": false, "
    "\"backoff_min\": \"50ms\", \"backoff_max\": \"2s\",\n"
    "               \"message_size\": \"1KiB\", \"message_interval\": \"100ms\"},\n"
    "  \"source_ips\": [\"127.0.0.2-127.0.0.20\", \"127.0.0.30\", \"::1\", "
    "\"fe80::ff-fe80::101\"],\n"
    "  \"family\": \"any\",\n"
    "  \"dns_ttl\": \"30s\",\n"
    "  \"socket\": {\"nodelay\": false, \"sndbuf\": \"64KiB\", \"rcvbuf\": 131072, \"close\": "
    "\"rst\",\n"
    "             \"keepalive\": {\"idle\": \"20s\", \"interval\": \"4s\", \"count\": 5}},\n"
    "  \"control\": {\"listen\": \"[::1]:0\", \"token_file\": \"token\", \"address_file\": "
    "\"addr\"},\n"
    "  \"report\": {\"file\": null, \"percentiles\": [50, 99.9, 99.99]},\n"
    "  \"thresholds\": {\"latency_us.connect.p99\": \"< 5000\", \"connections.failed.total\": "
    "\"== 0\", \"generator.saturated\": \"== false\"},\n"
    "  \"abort_on_fail\": true, \"abort_grace\": \"2s\",\n"
    "  \"stats_interval\": \"250ms\",\n"
    "  \"log_level\": \"debug\"\n"
    "}\n";

static zlb_config_t *parse_ok(const char *text)
{
    zlb_config_t *cfg;
    zlb_config_error_t err;
    int rc = zlb_config_parse(text, "full.json", fake_metric_path, &cfg, &err);
    if (rc != 0)
        ZLB_TEST_FAIL("parse failed: %s", err.message);
    return cfg;
}

/* "processes": a count or "auto"; one process by default; not part of the scenario's hash. */
static void test_processes(void)
{
    zlb_config_t *one = parse_ok("{}");
    zlb_config_t *three = parse_ok("{\"processes\": 3}");
    zlb_config_t *autop = parse_ok("{\"processes\": \"auto\"}");
    ASSERT_UEQ(one->processes, 1);
    ASSERT_UEQ(three->processes, 3);
    ASSERT_UEQ(autop->processes, ZLB_PROCESSES_AUTO);
    char h1[17], h3[17];
    zlb_config_hash(one, h1);
    zlb_config_hash(three, h3);
    ASSERT_STREQ(h1, h3);
    json_t *j = zlb_config_to_json(autop);
    ASSERT_STREQ(json_string_value(json_object_get(j, "processes")), "auto");
    json_decref(j);
    zlb_config_destroy(one);
    zlb_config_destroy(three);
    zlb_config_destroy(autop);
}

static void test_full_config(void)
{
    zlb_config_t *cfg = parse_ok(full_config);

    ASSERT_EQ(cfg->pollers.count, 4);
    ASSERT(!cfg->pollers.cpu_affinity);
    ASSERT_UEQ(cfg->pollers.ncpus, 3);
    ASSERT_EQ(cfg->pollers.cpus[2], 3);
    ASSERT_EQ(cfg->pollers.priority, ZLB_CFG_PRIO_REALTIME);
    ASSERT_EQ(cfg->pollers.rt_policy, SCHED_RR);
    ASSERT_EQ(cfg->pollers.rt_priority, 10);
    ASSERT(cfg->pollers.round_robin);
    ASSERT_UEQ(cfg->pollers.load_window_ns, 500 * ZLB_NS_PER_MS);
    ASSERT_UEQ(cfg->send_timeout_ns, 750 * ZLB_NS_PER_MS);
    ASSERT_UEQ(cfg->ntargets, 2);
    const zlb_tls_config_t *tls = &cfg->targets[0].tls;
    ASSERT(tls->enabled);
    ASSERT(!tls->verify);
    ASSERT_STREQ(tls->sni, "example.test");
    ASSERT_UEQ(tls->nalpn, 2);
    ASSERT_STREQ(tls->alpn[1], "http/1.1");
    ASSERT_EQ(tls->min_version, 0x0303);
    ASSERT_EQ(tls->max_version, 0x0304);
    ASSERT_CMP_DBL(tls->resumption, ==, 0.9);
    ASSERT_UEQ(tls->handshake_timeout_ns, 2500 * ZLB_NS_PER_MS);
    ASSERT_EQ(cfg->targets[0].weight, 3);
    ASSERT(!cfg->targets[1].tls.enabled);
    ASSERT(!cfg->embedded_target.enabled);
    ASSERT_UEQ(cfg->connections, 12345);
    ASSERT_CMP_DBL(cfg->connect_rate, ==, 2500.5);
    ASSERT_UEQ(cfg->ramp.duration_ns, 2 * ZLB_NS_PER_SEC);
    ASSERT_CMP_DBL(cfg->ramp.start_rate, ==, 100);
    ASSERT_UEQ(cfg->duration_ns, 120 * ZLB_NS_PER_SEC);
    ASSERT_EQ(cfg->workload.type, ZLB_WORK_ECHO);
    ASSERT_UEQ(cfg->workload.message_size, 1024);
    ASSERT(!cfg->workload.reconnect);

    /* 19 + 1 + 1 + 3 addresses, in the order written, port 0. */
    ASSERT_UEQ(cfg->nsource_ips, 4);
    ASSERT_UEQ(cfg->nsource, 24);
    const struct sockaddr_in *first = (const struct sockaddr_in *)&cfg->source_addrs[0];
    const struct sockaddr_in *last = (const struct sockaddr_in *)&cfg->source_addrs[18];
    ASSERT_EQ(first->sin_family, AF_INET);
    ASSERT_UEQ(ntohl(first->sin_addr.s_addr), 0x7f000002);
    ASSERT_UEQ(ntohl(last->sin_addr.s_addr), 0x7f000014);
    ASSERT_EQ(first->sin_port, 0);
    ASSERT_EQ(cfg->source_addrs[20].ss_family, AF_INET6);
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&cfg->source_addrs[22];
    ASSERT_EQ(v6->sin6_addr.s6_addr[14], 0x01);
    ASSERT_EQ(v6->sin6_addr.s6_addr[15], 0x00);

    ASSERT_UEQ(cfg->socket.sndbuf, 65536);
    ASSERT_UEQ(cfg->socket.rcvbuf, 131072);
    ASSERT_EQ(cfg->socket.close, ZLB_CLOSE_RST);
    ASSERT(cfg->socket.keepalive);
    ASSERT_EQ(cfg->socket.keepalive_count, 5);
    ASSERT_STREQ(cfg->control.listen, "[::1]:0");
    ASSERT(cfg->report.file == NULL);
    ASSERT_UEQ(cfg->report.npercentiles, 3);
    ASSERT_UEQ(cfg->nthresholds, 3);
    ASSERT(cfg->abort_on_fail);
    ASSERT_EQ(cfg->log_level, ZLB_LOG_DEBUG);

    /* to_json -> parse -> to_json is a fixed point, and nothing is lost on the way. */
    char *a = dump(cfg);
    zlb_config_t *again = parse_ok(a);
    char *b = dump(again);
    ASSERT_STREQ(a, b);
    ASSERT(strstr(a, "\"connect_rate\": 2500.5") != NULL);
    ASSERT(strstr(a, "\"connections\": 12345") != NULL);
    ASSERT(strstr(a, "\"handshake_timeout\": \"2500ms\"") != NULL);
    ASSERT(strstr(a, "\"127.0.0.2-127.0.0.20\"") != NULL);
    ASSERT(strstr(a, "\"token_file\": \"token\"") != NULL);
    ASSERT(strstr(a, "\"message_size\": 1024") != NULL);
    ASSERT(strstr(a, "embedded_target") == NULL);

    char h1[17], h2[17], h3[17];
    zlb_config_hash(cfg, h1);
    zlb_config_hash(again, h2);
    ASSERT_STREQ(h1, h2);
    again->connections++;
    zlb_config_hash(again, h3);
    ASSERT(strcmp(h1, h3) != 0);
    again->connections--;
    again->targets[0].tls.resumption = 0.5;
    zlb_config_hash(again, h3);
    ASSERT(strcmp(h1, h3) != 0);

    free(a);
    free(b);
    zlb_config_destroy(again);
    zlb_config_destroy(cfg);
}

/* Overrides applied by main go through zlb_config_check, which has no text to point into. */
static void test_check_after_overrides(void)
{
    zlb_config_t *cfg = parse_ok("{\"duration\": \"30s\"}");
    zlb_config_error_t err;

    ASSERT_EQ(zlb_config_check(cfg, &err), 0);
    cfg->warmup_ns = 30 * ZLB_NS_PER_SEC;
    ASSERT_EQ(zlb_config_check(cfg, &err), -EINVAL);
    ASSERT_STREQ(err.message, "warmup: warmup (30s) must be shorter than duration (30s)");
    cfg->duration_ns = 0; /* until stopped: any warmup is fine */
    ASSERT_EQ(zlb_config_check(cfg, &err), 0);
    cfg->connections = 0;
    ASSERT_EQ(zlb_config_check(cfg, &err), -EINVAL);
    ASSERT_STREQ(err.message, "connections: expected an integer 1..10000000, got 0");
    cfg->connections = 10;
    cfg->source_path = zlb_xstrdup("run.json");
    cfg->pollers.priority = ZLB_CFG_PRIO_REALTIME;
    ASSERT_EQ(zlb_config_check(cfg, &err), -EINVAL);
    ASSERT(strncmp(err.message, "run.json: pollers.priority: ", 28) == 0);
    cfg->pollers.priority = ZLB_CFG_PRIO_NORMAL;
    free(cfg->control.listen);
    cfg->control.listen = zlb_xstrdup("localhost");
    ASSERT_EQ(zlb_config_check(cfg, &err), -EINVAL);
    ASSERT(strncmp(err.message, "run.json: control.listen: invalid address", 41) == 0);
    /* main's "--control 0.0.0.0:0" without a token, then with one */
    free(cfg->control.listen);
    cfg->control.listen = zlb_xstrdup("0.0.0.0:0");
    ASSERT_EQ(zlb_config_check(cfg, &err), -EINVAL);
    ASSERT(strstr(err.message, "run.json: control.listen: \"0.0.0.0:0\" is not a loopback") ==
           err.message);
    cfg->control.token_file = zlb_xstrdup("/run/secrets/token");
    ASSERT_EQ(zlb_config_check(cfg, &err), 0);
    /* main's "--control off" */
    cfg->control.enabled = false;
    free(cfg->control.listen);
    cfg->control.listen = NULL;
    ASSERT_EQ(zlb_config_check(cfg, &err), 0);
    zlb_config_destroy(cfg);
}

/* Loopback binds need no token (localhost, 127.x, ::1, v4-mapped loopback); anything else does,
 * and the token file may come from ZLB_CONTROL_TOKEN_FILE, which wins over the file's key. */
static void test_control_token_rule(void)
{
    static const char *const loopback[] = {"127.0.0.1:0", "127.9.9.9:1", "localhost:8089",
                                           "[::1]:0", "[::ffff:127.0.0.1]:0"};
    char text[256];
    zlb_config_t *cfg;
    zlb_config_error_t err;

    ASSERT_EQ(unsetenv(ZLB_CONFIG_TOKEN_FILE_ENV), 0);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(loopback); i++) {
        snprintf(text, sizeof(text), "{\"control\": {\"listen\": \"%s\"}}", loopback[i]);
        fprintf(stderr, "   %s\n", text);
        cfg = parse_ok(text);
        ASSERT(cfg->control.token_file == NULL);
        zlb_config_destroy(cfg);
    }
    cfg = parse_ok("{\"control\": {\"listen\": \"0.0.0.0:8089\", \"token_file\": \"/t\"}}");
    ASSERT_STREQ(cfg->control.token_file, "/t");
    zlb_config_destroy(cfg);

    /* From the environment: valid without the key, and over the key. */
    ASSERT_EQ(setenv(ZLB_CONFIG_TOKEN_FILE_ENV, "/run/secrets/zlb-token", 1), 0);
    cfg = parse_ok("{\"control\": {\"listen\": \"0.0.0.0:8089\"}}");
    ASSERT_STREQ(cfg->control.token_file, "/run/secrets/zlb-token");
    zlb_config_destroy(cfg);
    cfg = parse_ok("{\"control\": {\"listen\": \"[::]:0\", \"token_file\": \"/t\"}}");
    ASSERT_STREQ(cfg->control.token_file, "/run/secrets/zlb-token");
    json_t *j = zlb_config_to_json(cfg);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(j, "control"), "token_file")),
                 "/run/secrets/zlb-token");
    json_decref(j);
    zlb_config_destroy(cfg);
    /* Set and empty is unset: the rule applies again. */
    ASSERT_EQ(setenv(ZLB_CONFIG_TOKEN_FILE_ENV, "", 1), 0);
    ASSERT_EQ(zlb_config_parse("{\"control\": {\"listen\": \"0.0.0.0:8089\"}}", "c.json", NULL,
                               &cfg, &err),
              -EINVAL);
    fprintf(stderr, "   %s\n", err.message);
    ASSERT(strstr(err.message, "c.json:1:24: control.listen: \"0.0.0.0:8089\" is not a loopback") ==
           err.message);
    ASSERT_EQ(unsetenv(ZLB_CONFIG_TOKEN_FILE_ENV), 0);
}

/* One enum and one name table for the built-in target's modes: the config, `zlbench serve
 * --mode` and the effective config all spell them the same. */
static void test_serve_mode_names(void)
{
    zlb_serve_mode_t m = (zlb_serve_mode_t)-1;
    ASSERT_EQ(zlb_config_serve_mode_parse("echo", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_ECHO);
    ASSERT_EQ(zlb_config_serve_mode_parse("sink", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_SINK);
    ASSERT_EQ(zlb_config_serve_mode_parse("http", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_HTTP);
    ASSERT_EQ(zlb_config_serve_mode_parse("HTTP", &m), -EINVAL);
    ASSERT_EQ(zlb_config_serve_mode_parse("", &m), -EINVAL);
    ASSERT_EQ(zlb_config_serve_mode_parse("echo ", &m), -EINVAL);
    ASSERT_EQ(zlb_config_serve_mode_parse(NULL, &m), -EINVAL);
    ASSERT_EQ(zlb_config_serve_mode_parse("redis", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_REDIS);
    ASSERT_EQ(zlb_config_serve_mode_parse("source", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_SOURCE);
    ASSERT(zlb_config_serve_mode_name((zlb_serve_mode_t)99) == NULL);
    int modes = 0;
    for (int i = ZLB_SERVE_ECHO; zlb_config_serve_mode_name((zlb_serve_mode_t)i); i++, modes++) {
        char text[128];
        const char *name = zlb_config_serve_mode_name((zlb_serve_mode_t)i);
        ASSERT_EQ(zlb_config_serve_mode_parse(name, &m), 0);
        ASSERT_EQ(m, i);
        snprintf(text, sizeof(text), "{\"embedded_target\": {\"mode\": \"%s\"}}", name);
        zlb_config_t *cfg = parse_ok(text);
        ASSERT_EQ(cfg->embedded_target.mode, i);
        json_t *j = zlb_config_to_json(cfg);
        ASSERT_STREQ(
            json_string_value(json_object_get(json_object_get(j, "embedded_target"), "mode")),
            name);
        json_decref(j);
        zlb_config_destroy(cfg);
    }
    ASSERT_GE(modes, 4); /* echo, sink, http, redis at least */
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    ASSERT_UEQ(fwrite(text, 1, strlen(text), f), strlen(text));
    ASSERT_EQ(fclose(f), 0);
}

static void test_load_files(void)
{
    zlb_config_t *cfg = (zlb_config_t *)1;
    zlb_config_error_t err;
    char dir[] = "/tmp/zlb-test-config-XXXXXX";
    char path[128];

    ASSERT_EQ(zlb_config_load("/nonexistent/zlbench.json", NULL, &cfg, &err), -ENOENT);
    ASSERT(cfg == NULL);
    ASSERT_STREQ(err.message, "/nonexistent/zlbench.json: cannot open: No such file or directory");

    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_EQ(zlb_config_load(dir, NULL, &cfg, &err), -EISDIR);

    snprintf(path, sizeof(path), "%s/empty.json", dir);
    write_file(path, "\n\n");
    ASSERT_EQ(zlb_config_load(path, NULL, &cfg, &err), -EINVAL);
    ASSERT(strstr(err.message, "empty.json: empty file") != NULL);
    unlink(path);

    snprintf(path, sizeof(path), "%s/bad.json", dir);
    write_file(path, "{\n  \"connections\": 100,\n  \"duration\": true\n}\n");
    ASSERT_EQ(zlb_config_load(path, NULL, &cfg, &err), -EINVAL);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "%s:3:15: duration: expected a duration such as \"10s\" or \"500ms\", got a boolean",
             path);
    ASSERT_STREQ(err.message, expect);
    unlink(path);

    snprintf(path, sizeof(path), "%s/good.json", dir);
    write_file(path, "{\"connections\": 100}");
    ASSERT_EQ(zlb_config_load(path, NULL, &cfg, &err), 0);
    ASSERT_STREQ(cfg->source_path, path);
    ASSERT_UEQ(cfg->connections, 100);
    zlb_config_destroy(cfg);
    unlink(path);
    ASSERT_EQ(rmdir(dir), 0);
}

/* Every example scenario shipped in configs/ must load. */
static void test_example_configs(void)
{
    char root[1024], dirpath[1200];
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/test_config.c");
    size_t n = tail ? (size_t)(tail - self) : 0;
    ASSERT(n < sizeof(root));
    memcpy(root, self, n);
    root[n] = '\0';
    snprintf(dirpath, sizeof(dirpath), "%sconfigs", n ? root : "../");

    DIR *d = opendir(dirpath);
    if (!d)
        ZLB_TEST_FAIL("cannot open %s: %s", dirpath, strerror(errno));
    int loaded = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0 ||
            strstr(de->d_name, ".schema.json"))
            continue;
        char path[1500];
        zlb_config_t *cfg;
        zlb_config_error_t err;
        snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
        if (zlb_config_load(path, NULL, &cfg, &err) != 0)
            ZLB_TEST_FAIL("%s", err.message);
        /* The effective config of each example reads back unchanged too (threshold paths are
         * the run module's to check: it_config.sh validates these files with the binary). */
        char *a = dump(cfg);
        zlb_config_t *again = NULL;
        if (zlb_config_parse(a, "again.json", NULL, &again, &err) != 0)
            ZLB_TEST_FAIL("%s: %s", de->d_name, err.message);
        char *b = dump(again);
        ASSERT_STREQ(a, b);
        free(a);
        free(b);
        zlb_config_destroy(again);
        zlb_config_destroy(cfg);
        loaded++;
    }
    closedir(d);
    ASSERT_GE(loaded, 4);
}

static void test_example_scenarios(void)
{
    char path[1200];
    const char *tail = strstr(__FILE__, "tests/test_config.c");
    int n = tail ? (int)(tail - __FILE__) : 0;
    zlb_config_t *cfg;
    zlb_config_error_t err;

    snprintf(path, sizeof(path), "%.*sconfigs/default.json", n, n ? __FILE__ : "../");
    ASSERT_EQ(zlb_config_load(path, NULL, &cfg, &err), 0);
    ASSERT(cfg->embedded_target.enabled);
    ASSERT_STREQ(cfg->embedded_target.listen, "127.0.0.1:0");
    ASSERT_UEQ(cfg->connections, 2000);
    ASSERT_CMP_DBL(cfg->connect_rate, ==, 5000);
    ASSERT_UEQ(cfg->duration_ns, 10 * ZLB_NS_PER_SEC);
    ASSERT_EQ(cfg->workload.type, ZLB_WORK_HOLD);
    ASSERT_STREQ(cfg->control.listen, "127.0.0.1:8089");
    ASSERT_STREQ(cfg->report.file, "zlbench-report.json");
    zlb_config_destroy(cfg);

    snprintf(path, sizeof(path), "%.*sconfigs/source_ips.json", n, n ? __FILE__ : "../");
    ASSERT_EQ(zlb_config_load(path, NULL, &cfg, &err), 0);
    ASSERT_UEQ(cfg->nsource, 19);
    ASSERT_UEQ(cfg->connections, 5000);
    zlb_config_destroy(cfg);
}

static void test_positions(void)
{
    const char *text = "{\n"
                       "  \"a\": [1, {\"b\\u00e9\": \"x\"}],\n"
                       "  \"\xc3\xa9t\xc3\xa9\": {\"k\": true}\n"
                       "}";
    int line = 0, col = 0;
    size_t len = strlen(text);

    ASSERT_EQ(zlb_config_pos_find(text, len, "", false, &line, &col), 0);
    ASSERT_EQ(line, 1);
    ASSERT_EQ(col, 1);
    ASSERT_EQ(zlb_config_pos_find(text, len, "a", true, &line, &col), 0);
    ASSERT_EQ(line, 2);
    ASSERT_EQ(col, 3);
    ASSERT_EQ(zlb_config_pos_find(text, len, "a[1]", false, &line, &col), 0);
    ASSERT_EQ(col, 12);
    /* the escaped key decodes to the same bytes jansson gives */
    ASSERT_EQ(zlb_config_pos_find(text, len, "a[1][\"b\xc3\xa9\"]", false, &line, &col), 0);
    ASSERT_EQ(col, 24);
    ASSERT_EQ(zlb_config_pos_find(text, len, "[\"\xc3\xa9t\xc3\xa9\"].k", false, &line, &col), 0);
    ASSERT_EQ(line, 3);
    ASSERT_EQ(col, 16);
    ASSERT_EQ(zlb_config_pos_find(text, len, "a[2]", false, &line, &col), -ENOENT);
    ASSERT_EQ(zlb_config_pos_find(text, len, "b", false, &line, &col), -ENOENT);

    zlb_config_path_t p = {.len = 0};
    size_t m1 = zlb_config_path_push_key(&p, "targets", 7);
    size_t m2 = zlb_config_path_push_index(&p, 3);
    zlb_config_path_push_key(&p, "tls", 3);
    ASSERT_STREQ(p.buf, "targets[3].tls");
    zlb_config_path_pop(&p, m2);
    ASSERT_STREQ(p.buf, "targets");
    zlb_config_path_pop(&p, m1);
    ASSERT_STREQ(p.buf, "");
    zlb_config_path_push_key(&p, "a\"b", 3);
    ASSERT_STREQ(p.buf, "[\"a\\\"b\"]");
    zlb_config_path_dispose(&p);
}

/* Builds a string of n copies of c (caller frees). */
static char *repeat_char(char c, size_t n)
{
    char *s = zlb_xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Parses text expecting -EINVAL and a message that starts with `prefix` and contains `part`
 * (unless NULL), and that was not cut (no "..." added at its end). */
static void expect_error(const char *what, const char *text, const char *prefix, const char *part)
{
    zlb_config_t *cfg = (zlb_config_t *)1;
    zlb_config_error_t err;
    int rc = zlb_config_parse(text, "config.json", fake_metric_path, &cfg, &err);
    fprintf(stderr, "   %s: %.200s%s\n", what, err.message, strlen(err.message) > 200 ? "..." : "");
    ASSERT_EQ(rc, -EINVAL);
    ASSERT(cfg == NULL);
    if (strncmp(err.message, prefix, strlen(prefix)) != 0)
        ZLB_TEST_FAIL("%s: message \"%s\" does not start with \"%s\"", what, err.message, prefix);
    if (part && !strstr(err.message, part))
        ZLB_TEST_FAIL("%s: message \"%s\" lacks \"%s\"", what, err.message, part);
    size_t n = strlen(err.message);
    if (n >= 3 && strcmp(err.message + n - 3, "...") == 0)
        ZLB_TEST_FAIL("%s: message \"%s\" was cut", what, err.message);
}

/* No length of key, string or nesting loses LINE:COLUMN or the key path; a long path or key is
 * shortened in the message (start...end) so that what is wrong still shows. */
static void test_long_keys_and_deep_nesting(void)
{
    static const size_t lens[] = {251, 252, 253, 255, 256, 257, 511, 512, 1000, 100000};
    size_t cap = 300000;
    char *text = zlb_xmalloc(cap);

    for (size_t i = 0; i < ZLB_ARRAY_LEN(lens); i++) {
        char *k = repeat_char('k', lens[i]);
        /* an unknown key of that length, at the root and nested */
        snprintf(text, cap, "{\n  \"%s\": 1}", k);
        expect_error("long unknown key", text, "config.json:2:3: kkkkkkkkkk",
                     "kkkkkkkkkk: unknown key 'kkkkkkkkkk");
        ASSERT(strstr(text, "unknown") == NULL); /* the message's words are ours, not the text's */
        snprintf(text, cap, "{\"socket\": {\"nodelay\": true,\n \"%s\": 1}}", k);
        expect_error("long unknown key, nested", text, "config.json:2:2: socket.kkkkkkkk",
                     ": unknown key 'kkk");
        /* a duplicate key of that length */
        snprintf(text, cap, "{\"a\": {\"%s\": 1,\n \"%s\": 2}}", k, k);
        expect_error("long duplicate key", text, "config.json:2:2: a.kkkkkkkk",
                     ": duplicate key 'k");
        /* a key with characters that need quoting: the path escapes it as ["..."] */
        k[0] = ' ';
        snprintf(text, cap, "{\"thresholds\": {\"%s\": \"< 1\"}}", k);
        expect_error("long threshold path", text, "config.json:1:17: thresholds[\" kkkk",
                     ": unknown metric path ' kkk");
        /* a string value of that length */
        snprintf(text, cap, "{\"workload\": {\n  \"lifetime\": \"%s\"}}", k + 1);
        expect_error("long string", text, "config.json:2:15: workload.lifetime: invalid duration",
                     NULL);
        free(k);
    }

    /* Nesting as deep as jansson takes (2048): the duplicate's path is 6000 bytes long. */
    for (size_t depth = 100; depth <= 2000; depth += 950) {
        size_t n = 0;
        n += (size_t)snprintf(text + n, cap - n, "{\"x\": ");
        for (size_t d = 0; d < depth; d++)
            text[n++] = '[';
        n += (size_t)snprintf(text + n, cap - n, "\n{\"a\": 1, \"a\": 2}");
        for (size_t d = 0; d < depth; d++)
            text[n++] = ']';
        snprintf(text + n, cap - n, "}");
        expect_error("deep duplicate", text, "config.json:2:10: x[0][0][0]",
                     "[0][0].a: duplicate key 'a'");
    }
    free(text);
}

static void test_suggestions(void)
{
    static const char *const keys[] = {"connections", "connect_rate", "connect_timeout", "duration",
                                       "warmup"};
    ASSERT_UEQ(zlb_config_edit_distance("abc", "abc"), 0);
    ASSERT_UEQ(zlb_config_edit_distance("abc", "acb"), 1);
    ASSERT_UEQ(zlb_config_edit_distance("", "abc"), 3);
    ASSERT_UEQ(zlb_config_edit_distance("Duration", "duration"), 0);
    ASSERT_STREQ(zlb_config_suggest("conections", keys, 5), "connections");
    ASSERT_STREQ(zlb_config_suggest("conect_rate", keys, 5), "connect_rate");
    ASSERT_STREQ(zlb_config_suggest("durtaion", keys, 5), "duration");
    ASSERT_STREQ(zlb_config_suggest("connect_timeot", keys, 5), "connect_timeout");
    ASSERT(zlb_config_suggest("rate", keys, 5) == NULL);
    ASSERT(zlb_config_suggest("xy", keys, 5) == NULL);
}

static void test_large_range(void)
{
    zlb_config_t *cfg = parse_ok("{\"source_ips\": [\"10.0.0.0-10.0.255.255\"]}");
    ASSERT_UEQ(cfg->nsource, 65536);
    const struct sockaddr_in *last = (const struct sockaddr_in *)&cfg->source_addrs[65535];
    ASSERT_UEQ(ntohl(last->sin_addr.s_addr), 0x0a00ffff);
    zlb_config_destroy(cfg);
}

/* Every prefix and many one-byte changes of a full config: never a crash (the sanitizer build
 * watches the scanner), always 0 or -EINVAL with a message naming the file. */
static void test_damaged_configs(void)
{
    static const char junk[] = "\"{}[],:0a-.\\ \n\x80\xc3";
    size_t len = strlen(full_config);
    char *buf = zlb_xmalloc(len + 1);
    unsigned seed = 12345;

    for (size_t cut = 0; cut <= len; cut++) {
        for (int variant = 0; variant < 4; variant++) {
            memcpy(buf, full_config, len + 1);
            if (variant == 0) {
                buf[cut] = '\0';
            } else if (cut < len) {
                seed = seed * 1103515245u + 12345u;
                buf[cut] = junk[(seed >> 16) % (sizeof(junk) - 1)];
            }
            zlb_config_t *cfg;
            zlb_config_error_t err;
            int rc = zlb_config_parse(buf, "damaged.json", fake_metric_path, &cfg, &err);
            if (rc == 0) {
                zlb_config_destroy(cfg);
                continue;
            }
            ASSERT_EQ(rc, -EINVAL);
            if (strncmp(err.message, "damaged.json", 12) != 0)
                ZLB_TEST_FAIL("cut %zu variant %d: %s", cut, variant, err.message);
        }
    }
    free(buf);
}

/* The built-in target's http keys: read in mode http, refused elsewhere and out of range. */
/* report.html: true (beside the JSON), a path, or false/null; not part of the config hash (it
 * only says where output goes). */
static void test_report_html(void)
{
    char h0[17], h1[17];
    zlb_config_t *cfg = parse_ok("{\"report\": {\"file\": \"x.json\"}}");
    ASSERT(!cfg->report.html_beside && !cfg->report.html);
    zlb_config_hash(cfg, h0);
    zlb_config_destroy(cfg);
    cfg = parse_ok("{\"report\": {\"file\": \"x.json\", \"html\": true}}");
    ASSERT(cfg->report.html_beside && !cfg->report.html);
    zlb_config_hash(cfg, h1);
    ASSERT_STREQ(h0, h1);
    json_t *j = zlb_config_to_json(cfg);
    ASSERT(json_is_true(json_object_get(json_object_get(j, "report"), "html")));
    json_decref(j);
    zlb_config_destroy(cfg);
    cfg = parse_ok("{\"report\": {\"html\": \"r.html\"}}");
    ASSERT(!cfg->report.html_beside);
    ASSERT_STREQ(cfg->report.html, "r.html");
    zlb_config_destroy(cfg);
    cfg = parse_ok("{\"report\": {\"html\": null}}");
    ASSERT(!cfg->report.html_beside && !cfg->report.html);
    zlb_config_destroy(cfg);
}

static void test_embedded_http(void)
{
    zlb_config_t *cfg = parse_ok(
        "{\"embedded_target\": {\"mode\": \"http\", \"http_status\": 503, \"http_body_size\": "
        "\"16KiB\", \"http_chunked\": true, \"http_delay\": \"5ms\", \"http_delay_max\": "
        "\"20ms\"}}");
    ASSERT_EQ(cfg->embedded_target.http_status, 503);
    ASSERT_UEQ(cfg->embedded_target.http_body_size, 16384);
    ASSERT(cfg->embedded_target.http_chunked);
    ASSERT_UEQ(cfg->embedded_target.http_delay_ns, 5 * ZLB_NS_PER_MS);
    ASSERT_UEQ(cfg->embedded_target.http_delay_max_ns, 20 * ZLB_NS_PER_MS);
    zlb_config_destroy(cfg);
    cfg = parse_ok("{\"embedded_target\": {\"mode\": \"http\"}}");
    ASSERT_EQ(cfg->embedded_target.http_status, 200);
    ASSERT_UEQ(cfg->embedded_target.http_body_size, 2);
    zlb_config_destroy(cfg);

    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"{\"embedded_target\": {\"http_status\": 404}}", "applies to mode \"http\" only"},
        {"{\"embedded_target\": {\"mode\": \"http\", \"http_status\": 99}}", "99"},
        {"{\"embedded_target\": {\"mode\": \"http\", \"http_body_size\": \"65MiB\"}}",
         "out of range"},
        {"{\"embedded_target\": {\"mode\": \"http\", \"http_delay\": \"9ms\", "
         "\"http_delay_max\": \"5ms\"}}",
         "below http_delay"},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        zlb_config_error_t err;
        int rc = zlb_config_parse(bad[i].text, "config.json", fake_metric_path, &cfg, &err);
        ASSERT_EQ(rc, -EINVAL);
        fprintf(stderr, "   %s\n", err.message);
        if (!strstr(err.message, bad[i].expect))
            ZLB_TEST_FAIL("%s: \"%s\" lacks \"%s\"", bad[i].text, err.message, bad[i].expect);
    }
}

/* Parses text, checks that its effective config reads back to the same effective config, and
 * returns the first parse. */
static zlb_config_t *parse_round_trip(const char *text)
{
    zlb_config_t *cfg = parse_ok(text), *again;
    zlb_config_error_t err;
    char *a = dump(cfg);
    if (zlb_config_parse(a, "again.json", fake_metric_path, &again, &err) != 0)
        ZLB_TEST_FAIL("effective config does not read back: %s\n%s", err.message, a);
    char *b = dump(again);
    ASSERT_STREQ(a, b);
    free(a);
    free(b);
    zlb_config_destroy(again);
    return cfg;
}

static void assert_bytes(const char *what, const uint8_t *got, size_t got_len, const void *want,
                         size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, want_len) != 0) {
        fprintf(stderr, "%s: got %zu bytes:", what, got_len);
        for (size_t i = 0; i < got_len; i++)
            fprintf(stderr, " %02x", got[i]);
        fprintf(stderr, "\n  want %zu bytes:", want_len);
        for (size_t i = 0; i < want_len; i++)
            fprintf(stderr, " %02x", ((const uint8_t *)want)[i]);
        fprintf(stderr, "\n");
        ZLB_TEST_FAIL("%s differs", what);
    }
}

/* The message workload's keys: JSON escapes and our own (\\r \\n \\t \\\\ \\xNN) give the
 * same bytes, hex and files too, and the effective config says each back the same way. */
static void test_message_keys(void)
{
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    zlb_config_t *cfg;

    /* JSON's own escapes. */
    cfg = parse_round_trip("{\"workload\": {\"type\": \"message\", \"message\": "
                           "\"*1\\r\\n$4\\r\\nPING\\r\\n\", \"expect\": {\"delimiter\": "
                           "\"\\r\\n\"}, \"expect_prefix\": \"+PONG\", \"pipeline\": 8, "
                           "\"message_rate\": 5000}}");
    ASSERT_EQ(cfg->workload.type, ZLB_WORK_MESSAGE);
    ASSERT_EQ(cfg->workload.message_from, ZLB_MESSAGE_TEXT);
    assert_bytes("message", cfg->workload.message, cfg->workload.message_len, ping,
                 sizeof(ping) - 1);
    ASSERT_EQ(cfg->workload.expect, ZLB_EXPECT_DELIMITER);
    assert_bytes("delimiter", cfg->workload.expect_delimiter, cfg->workload.expect_delimiter_len,
                 "\r\n", 2);
    assert_bytes("prefix", cfg->workload.expect_prefix, cfg->workload.expect_prefix_len, "+PONG",
                 5);
    ASSERT_UEQ(cfg->workload.pipeline, 8);
    ASSERT(cfg->workload.message_rate == 5000);
    ASSERT_UEQ(cfg->workload.max_reply_size, 64 * 1024);
    zlb_config_destroy(cfg);

    /* Ours, written with doubled backslashes in JSON, and every byte value. */
    cfg =
        parse_round_trip("{\"workload\": {\"type\": \"message\", \"message\": "
                         "\"*1\\\\r\\\\n$4\\\\r\\\\nPING\\\\r\\\\n\\\\t\\\\\\\\\\\\x00\\\\xfF\"}}");
    assert_bytes("message, our escapes", cfg->workload.message, cfg->workload.message_len,
                 "*1\r\n$4\r\nPING\r\n\t\\\x00\xff", sizeof(ping) - 1 + 4);
    ASSERT_EQ(cfg->workload.expect, ZLB_EXPECT_ECHO);
    char *text = dump(cfg);
    const char *line = strstr(text, "\"message\":");
    ASSERT(line != NULL);
    fprintf(stderr, "   effective: %.*s\n", (int)strcspn(line, "\n"), line);
    free(text);
    zlb_config_destroy(cfg);

    /* Hex with spaces between bytes, a byte count framing, max_reply_size as a size. */
    cfg = parse_round_trip("{\"workload\": {\"type\": \"message\", \"message_hex\": "
                           "\"2a 31 0D0a\", \"expect\": {\"bytes\": \"1KiB\"}, \"max_reply_size\": "
                           "\"2KiB\"}}");
    ASSERT_EQ(cfg->workload.message_from, ZLB_MESSAGE_HEX);
    assert_bytes("message_hex", cfg->workload.message, cfg->workload.message_len, "*1\r\n", 4);
    ASSERT_EQ(cfg->workload.expect, ZLB_EXPECT_BYTES);
    ASSERT_UEQ(cfg->workload.expect_bytes, 1024);
    ASSERT_UEQ(cfg->workload.max_reply_size, 2048);
    zlb_config_destroy(cfg);

    /* A file, read at load, binary as it is. */
    char path[] = "/tmp/zlb-message-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "\x00\x01PING\r\n", 8), 8);
    close(fd);
    char conf[256];
    snprintf(conf, sizeof(conf),
             "{\"workload\": {\"type\": \"message\", \"message_file\": \"%s\"}}", path);
    cfg = parse_round_trip(conf);
    ASSERT_EQ(cfg->workload.message_from, ZLB_MESSAGE_FILE);
    assert_bytes("message_file", cfg->workload.message, cfg->workload.message_len,
                 "\x00\x01PING\r\n", 8);
    ASSERT_STREQ(cfg->workload.message_file, path);
    zlb_config_destroy(cfg);
    unlink(path);

    /* Echo keeps its keys: a generated message of message_size bytes, expect echo. */
    cfg = parse_round_trip("{\"workload\": {\"type\": \"echo\", \"message_size\": 100, "
                           "\"message_interval\": \"10ms\"}}");
    ASSERT_EQ(cfg->workload.message_from, ZLB_MESSAGE_GENERATED);
    ASSERT(cfg->workload.message == NULL);
    ASSERT_UEQ(cfg->workload.message_len, 100);
    ASSERT_EQ(cfg->workload.expect, ZLB_EXPECT_ECHO);
    ASSERT_UEQ(cfg->workload.message_interval_ns, 10 * ZLB_NS_PER_MS);
    zlb_config_destroy(cfg);

    /* message_rate alone: the effective config leaves the interval out (not both). */
    cfg = parse_round_trip("{\"workload\": {\"type\": \"message\", \"message_rate\": 250.5}}");
    text = dump(cfg);
    ASSERT(strstr(text, "\"message_interval\"") == NULL);
    free(text);
    zlb_config_destroy(cfg);
}

/* The stream workload's keys: read, checked with their key path, printed and read back. */
static void test_stream_keys(void)
{
    char path[] = "/tmp/zlb-test-first-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "HELLO\r\n", 7), 7);
    close(fd);

    zlb_config_t *cfg = parse_ok(
        "{\"embedded_target\": {\"mode\": \"source\"}, \"workload\": {\"type\": \"stream\", "
        "\"direction\": \"both\", \"chunk_size\": \"256KiB\", \"rate\": 1250000, "
        "\"first_message\": \"SUB a\\n\", \"stall_timeout\": \"3s\", \"stall_close\": true}}");
    const zlb_workload_config_t *w = &cfg->workload;
    ASSERT_EQ(w->type, ZLB_WORK_STREAM);
    ASSERT_EQ(w->direction, ZLB_STREAM_BOTH);
    ASSERT_UEQ(w->chunk_size, 256 * 1024);
    ASSERT_CMP_DBL(w->rate, ==, 1250000);
    ASSERT_UEQ(w->first_message_len, 6);
    ASSERT(memcmp(w->first_message, "SUB a\n", 6) == 0);
    ASSERT_UEQ(w->stall_timeout_ns, 3 * ZLB_NS_PER_SEC);
    ASSERT(w->stall_close);
    char *a = dump(cfg);
    zlb_config_t *again = parse_ok(a);
    char *b = dump(again);
    ASSERT_STREQ(a, b);
    ASSERT(strstr(a, "\"direction\": \"both\""));
    free(a);
    free(b);
    zlb_config_destroy(again);
    zlb_config_destroy(cfg);

    /* defaults, and the first message from a file */
    char text[512];
    snprintf(text, sizeof(text),
             "{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": "
             "\"stream\", \"first_message_file\": \"%s\"}}",
             path);
    cfg = parse_ok(text);
    ASSERT_EQ(cfg->workload.direction, ZLB_STREAM_SEND);
    ASSERT_UEQ(cfg->workload.chunk_size, 64 * 1024);
    ASSERT_CMP_DBL(cfg->workload.rate, ==, 0);
    ASSERT_UEQ(cfg->workload.stall_timeout_ns, 0);
    ASSERT_UEQ(cfg->workload.first_message_len, 7);
    ASSERT_STREQ(cfg->workload.first_message_file, path);
    a = dump(cfg);
    ASSERT(strstr(a, "first_message_file"));
    free(a);
    zlb_config_destroy(cfg);
    unlink(path);

    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"{\"workload\": {\"type\": \"echo\", \"chunk_size\": 10}}",
         "config.json:1:31: workload.chunk_size: applies to workload type \"stream\" only"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"direction\": \"up\"}}",
         "workload.direction: expected one of \"send\", \"receive\", \"both\", got \"up\""},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"chunk_size\": 0}}",
         "workload.chunk_size"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"rate\": -1}}",
         "workload.rate"},
        {"{\"embedded_target\": {\"mode\": \"source\"}, \"workload\": {\"type\": "
         "\"stream\", \"direction\": \"receive\", \"rate\": 10}}",
         "workload.rate: paces what is sent; direction \"receive\" sends nothing"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"stall_close\": true}}",
         "workload.stall_close: needs a stall_timeout"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"first_message\": \"a\", \"first_message_file\": \"/etc/hostname\"}}",
         "workload.first_message_file: give either first_message or first_message_file"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"first_message_file\": \"/nonexistent/x\"}}",
         "workload.first_message_file: cannot read /nonexistent/x"},
        {"{\"embedded_target\": {\"mode\": \"sink\"}, \"workload\": {\"type\": \"stream\", "
         "\"direction\": \"receive\"}}",
         "workload.direction: a \"receive\" stream needs embedded_target.mode \"source\"; it "
         "is "
         "\"sink\""},
        {"{\"embedded_target\": {\"mode\": \"http\"}, \"workload\": {\"type\": \"stream\"}}",
         "workload.direction: a \"send\" stream needs embedded_target.mode"},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        zlb_config_error_t err;
        int rc = zlb_config_parse(bad[i].text, "config.json", fake_metric_path, &cfg, &err);
        ASSERT_EQ(rc, -EINVAL);
        fprintf(stderr, "   %s\n", err.message);
        if (!strstr(err.message, bad[i].expect))
            ZLB_TEST_FAIL("%s: \"%s\" lacks \"%s\"", bad[i].text, err.message, bad[i].expect);
    }
}

int main(void)
{
    RUN_TEST(test_bad_configs);
    RUN_TEST(test_thresholds_unchecked_without_callback);
    RUN_TEST(test_threshold_expressions);
    RUN_TEST(test_defaults);
    RUN_TEST(test_full_config);
    RUN_TEST(test_processes);
    RUN_TEST(test_check_after_overrides);
    RUN_TEST(test_control_token_rule);
    RUN_TEST(test_serve_mode_names);
    RUN_TEST(test_load_files);
    RUN_TEST(test_example_configs);
    RUN_TEST(test_example_scenarios);
    RUN_TEST(test_positions);
    RUN_TEST(test_long_keys_and_deep_nesting);
    RUN_TEST(test_suggestions);
    RUN_TEST(test_large_range);
    RUN_TEST(test_damaged_configs);
    RUN_TEST(test_embedded_http);
    RUN_TEST(test_message_keys);
    RUN_TEST(test_stream_keys);
    RUN_TEST(test_report_html);
    fprintf(stderr, "all config tests passed\n");
    return 0;
}
