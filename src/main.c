/* main.c -- zlbench's command line: arguments, signals, and the subcommands' wiring. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "config/config.h"
#include "core/core.h"
#include "dash/dash.h"
#include "gate/gate.h"
#include "report/report.h"
#include "procs/procs.h"
#include "run/run.h"
#include "serve/serve.h"

static const char usage_text[] =
    "usage: zlbench [run] -c FILE [options]    run a scenario\n"
    "       zlbench validate -c FILE [options]  check a config, print the effective one\n"
    "       zlbench serve [options]             run the built-in target alone\n"
    "       zlbench compare BASE CURRENT [...]  compare two reports (CI regression gate)\n"
    "       zlbench merge A.json B.json... -o OUT.json  add up reports of runs side by side\n"
    "       zlbench report [BASE.json,...] REPORT.json -o OUT.html  a report as an HTML page\n"
    "       zlbench --version | --help\n"
    "Each subcommand describes its own options: zlbench serve --help, compare --help, ...\n"
    "\n"
    "zlbench opens thousands of TCP (and TLS) client connections from CPU-pinned event-loop\n"
    "threads (\"pollers\"), measures every phase of every connection, and serves live JSON\n"
    "stats on a control port (default http://127.0.0.1:8089/stats).\n"
    "\n"
    "Run options (override the config file; the config's rules decide what is valid):\n"
    "  -c, --config FILE        the scenario (JSON; see configs/config.schema.json)\n"
    "  -d, --duration DUR       run time, e.g. 30s, 2m; 0s runs until stopped\n"
    "  -n, --connections N      connections to open and hold\n"
    "  -r, --connect-rate R     new connections per second (0: as fast as possible)\n"
    "  -t, --pollers N          event-loop threads (0: one per allowed CPU)\n"
    "      --control ADDR       control port address, e.g. 127.0.0.1:0; 'off' disables it\n"
    "      --report FILE        where the JSON report goes\n"
    "      --log-level LEVEL    trace, debug, info, warn, error, off\n"
    "      --shard I/N          run part I (0..N-1) of the scenario split over N generators\n"
    "                           (or \"shard\": {\"index\": I|\"env\", \"count\": N} in the\n"
    "                           config; \"env\" reads JOB_COMPLETION_INDEX, as Kubernetes sets "
    "it)\n"
    "      --processes N|auto   split the run into N shard processes under this one (auto:\n"
    "                           enough for the connections under the open-files limit)\n"
    "      --repeat N           run the scenario N times (reports FILE-1.json ... FILE-N.json)\n"
    "                           and print the run-to-run spread of the compared metrics\n"
    "      --junit FILE         the thresholds (and the run's validity) as JUnit XML\n"
    "      --summary-md FILE    a markdown summary: key figures and thresholds (also\n"
    "                           appended to $GITHUB_STEP_SUMMARY when that is set)\n"
    "                           (--repeat numbers both per run, as the reports: a-1.xml ...)\n"
    "  -q, --quiet              no live progress and no summary\n"
    "\n"
    "Control port: GET / (live dashboard), /stats /stats/pollers /metrics /config /health,\n"
    "/stats/series?since=T (one row per stats interval after T s), GET /run (live values),\n"
    "PATCH /run (e.g. {\"connect_rate\": 100}), POST /pause /resume /stop.\n"
    "Signals: SIGINT/SIGTERM stop gracefully (drain, then report); a second one stops at once.\n"
    "The report is written in every case, atomically.\n"
    "\n"
    "Exit codes:\n"
    "  0  the run passed (every threshold held) / the command succeeded\n"
    "  1  internal error\n"
    "  2  bad usage or configuration, or an inconsistent input report (nothing was started)\n"
    "  3  a threshold failed\n"
    "  4  compare found a regression\n"
    "  5  invalid run: the generator saturated, or the run ended before its steady state\n";

static void print_version(void)
{
    printf("zlbench %s (commit %s)\n", zlb_version(), zlb_git_commit());
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  jansson %s\n", JANSSON_VERSION);
    printf("  libmicrohttpd %s\n", MHD_get_version());
}

/* Blocked in every thread before any exists: the run controller reads them from a signalfd,
 * `serve` from sigwait. SIGPIPE is ignored: sockets use MSG_NOSIGNAL, but libraries may not. */
static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int usage_error(const char *fmt, ...) ZLB_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "zlbench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'zlbench --help'.\n");
    return ZLB_EXIT_USAGE;
}

/* Worst outcome first: an internal error, then an invalid run, then failed thresholds. */
static int worse_exit(int a, int b)
{
    static const int rank[] = {
        [ZLB_EXIT_OK] = 0,          [ZLB_EXIT_THRESHOLDS] = 1, [ZLB_EXIT_REGRESSION] = 2,
        [ZLB_EXIT_INVALID_RUN] = 3, [ZLB_EXIT_USAGE] = 4,      [ZLB_EXIT_INTERNAL] = 5};
    return rank[b] > rank[a] ? b : a;
}

/* --repeat: the same scenario N times, one report each, then their spread: what a CI job needs
 * to choose a tolerance that run-to-run noise does not cross. */
/* PATH with "-I" before its extension (report.json -> report-3.json, junit -> junit-3). */
static void numbered_path(char *out, size_t len, const char *path, int i)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    size_t stem = dot && dot != (slash ? slash + 1 : path) ? (size_t)(dot - path) : strlen(path);
    snprintf(out, len, "%.*s-%d%s", (int)stem, path, i, path + stem);
}

static int run_repeated(zlb_config_t *cfg, const zlb_run_opts_t *opts, int n)
{
    const char *base = cfg->report.file ? cfg->report.file : "zlbench-report.json";
    size_t stem = strlen(base);
    if (stem > 5 && strcmp(base + stem - 5, ".json") == 0)
        stem -= 5;
    char **files = zlb_xcalloc((size_t)n, sizeof(char *));
    char *original = cfg->report.file;
    int code = ZLB_EXIT_OK, done = 0;
    bool interrupted = false;
    zlb_run_opts_t o = *opts;
    o.interrupted = &interrupted;
    for (int i = 0; i < n && !interrupted; i++) {
        char path[4096], junit[4096], md[4096];
        snprintf(path, sizeof(path), "%.*s-%d.json", (int)stem, base, i + 1);
        files[i] = zlb_xstrdup(path);
        cfg->report.file = files[i];
        /* Each run's verdict files beside its report: one file for all would keep the last run
         * only. ($GITHUB_STEP_SUMMARY is appended to, so it gets every run's section.) */
        if (opts->junit_file) {
            numbered_path(junit, sizeof(junit), opts->junit_file, i + 1);
            o.junit_file = junit;
        }
        if (opts->summary_md_file) {
            numbered_path(md, sizeof(md), opts->summary_md_file, i + 1);
            o.summary_md_file = md;
        }
        zlb_log_info("repeat %d/%d: report %s", i + 1, n, path);
        code = worse_exit(code, zlb_procs_run(cfg, &o));
        done++;
    }
    cfg->report.file = original;
    char summary[4096];
    snprintf(summary, sizeof(summary), "%.*s-repeat.json", (int)stem, base);
    /* An interrupted series has no spread worth trusting: the last run was cut short. */
    if (interrupted)
        zlb_log_warn("repeat interrupted after %d of %d runs: no spread computed", done, n);
    else if (n > 1 && zlb_gate_spread(files, (size_t)n, summary) != 0)
        code = worse_exit(code, ZLB_EXIT_INTERNAL);
    for (int i = 0; i < n; i++)
        free(files[i]);
    free(files);
    return code;
}

/* The run options that override a config key. What a value may be is the config's to say
 * (zlb_config_override): main only maps a flag to its key and a number-like text to a number. */
static const struct override_flag {
    int opt;
    const char *flag;
    const char *key;
    bool numeric;
} override_flags[] = {
    {'d', "--duration", "duration", false},
    {'n', "--connections", "connections", true},
    {'r', "--connect-rate", "connect_rate", true},
    {'t', "--pollers", "pollers.count", true},
    {'C', "--control", "control.listen", false}, /* "off": null, no control port */
    {'R', "--report", "report.file", false},
    {'L', "--log-level", "log_level", false},
    {'S', "--shard", "shard", false}, /* "I/N" */
    {'P', "--processes", "processes", true},
};

typedef struct cli {
    bool validate;
    zlb_run_opts_t opts;
    const char *config_path;
    const char *repeat;
    struct {
        const struct override_flag *f;
        const char *value;
    } overrides[32];
    size_t noverrides;
} cli_t;

/* Parses `zlbench [run|validate] ...`. Returns -1 to go on, or the exit code to end with. */
static int parse_cli(int argc, char **argv, int argi, cli_t *cli)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"connections", required_argument, NULL, 'n'},
        {"connect-rate", required_argument, NULL, 'r'},
        {"pollers", required_argument, NULL, 't'},
        {"control", required_argument, NULL, 'C'},
        {"report", required_argument, NULL, 'R'},
        {"log-level", required_argument, NULL, 'L'},
        {"shard", required_argument, NULL, 'S'},
        {"processes", required_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"repeat", required_argument, NULL, 'N'},
        {"junit", required_argument, NULL, 'J'},
        {"summary-md", required_argument, NULL, 'M'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = argi;
    while ((c = getopt_long(argc, argv, "c:d:n:r:t:qVh", longopts, NULL)) != -1) {
        const struct override_flag *f = NULL;
        for (size_t i = 0; i < ZLB_ARRAY_LEN(override_flags); i++)
            if (override_flags[i].opt == c)
                f = &override_flags[i];
        if (f) {
            if (cli->noverrides == ZLB_ARRAY_LEN(cli->overrides))
                return usage_error("too many options");
            cli->overrides[cli->noverrides].f = f;
            cli->overrides[cli->noverrides++].value = optarg;
            continue;
        }
        switch (c) {
        case 'c':
            cli->config_path = optarg;
            break;
        case 'q':
            cli->opts.quiet = true;
            break;
        case 'N':
            cli->repeat = optarg;
            break;
        case 'J':
            cli->opts.junit_file = optarg;
            break;
        case 'M':
            cli->opts.summary_md_file = optarg;
            break;
        case 'V':
            print_version();
            return ZLB_EXIT_OK;
        case 'h':
            fputs(usage_text, stdout);
            return ZLB_EXIT_OK;
        default:
            fputs(usage_text, stderr);
            return ZLB_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!cli->config_path)
        return usage_error("%s", "a config file is required: -c FILE");
    return -1;
}

/* A flag's text as the JSON value a config file would hold there. */
static json_t *flag_value(const struct override_flag *f, const char *text)
{
    if (strcmp(f->key, "control.listen") == 0 && strcmp(text, "off") == 0)
        return json_null();
    if (f->numeric) {
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        if (json_is_number(v))
            return v;
        json_decref(v);
    }
    return json_string(text);
}

/* The config file, then the command line's overrides in the order given. */
static int load_config(const cli_t *cli, zlb_config_t **out)
{
    zlb_config_t *cfg = NULL;
    zlb_config_error_t err = {{0}};
    if (zlb_config_load(cli->config_path, zlb_report_metric_valid, &cfg, &err) != 0)
        goto fail;
    for (size_t i = 0; i < cli->noverrides; i++) {
        const struct override_flag *f = cli->overrides[i].f;
        if (zlb_config_override(cfg, f->flag, f->key, flag_value(f, cli->overrides[i].value),
                                zlb_report_metric_valid, &err) != 0)
            goto fail;
    }
    /* The split comes last, so that an override changes the whole scenario, not one part. */
    if (cfg->shard.count > 1) {
        if (zlb_config_apply_shard(cfg, 0, 1, err.message, sizeof(err.message)) != 0)
            goto fail;
    }
    *out = cfg;
    return 0;
fail:
    fprintf(stderr, "zlbench: %s\n", err.message);
    zlb_config_destroy(cfg);
    return -EINVAL;
}

static int print_effective(const zlb_config_t *cfg, const char *path)
{
    json_t *j = zlb_config_to_json(cfg);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    char hash[17];
    zlb_config_hash(cfg, hash);
    printf("%s\n", text);
    fprintf(stderr, "zlbench: %s: valid (config hash %s)\n", path, hash);
    free(text);
    return ZLB_EXIT_OK;
}

int main(int argc, char **argv)
{
    zlb_thread_set_name("main");
    block_signals();

    cli_t cli = {0};
    int argi = 1;
    if (argc > 1) {
        const char *cmd = argv[1];
        if (strcmp(cmd, "serve") == 0)
            return zlb_serve_main(argc - 1, argv + 1);
        if (strcmp(cmd, "compare") == 0)
            return zlb_gate_compare(argc - 1, argv + 1);
        if (strcmp(cmd, "merge") == 0)
            return zlb_gate_merge(argc - 1, argv + 1);
        if (strcmp(cmd, "report") == 0)
            return zlb_dash_report_main(argc - 1, argv + 1);
        if (strcmp(cmd, "validate") == 0 || strcmp(cmd, "run") == 0) {
            cli.validate = cmd[0] == 'v';
            argi = 2;
        }
    }
    int code = parse_cli(argc, argv, argi, &cli);
    if (code >= 0)
        return code;
    int repeat = 1;
    if (cli.repeat) {
        char *end;
        errno = 0;
        long v = strtol(cli.repeat, &end, 10);
        if (errno || end == cli.repeat || *end || v < 1 || v > 100)
            return usage_error("--repeat: expected an integer 1..100, got '%s'", cli.repeat);
        repeat = (int)v;
    }
    zlb_config_t *cfg = NULL;
    if (load_config(&cli, &cfg) != 0)
        return ZLB_EXIT_USAGE;
    zlb_log_level = cli.opts.quiet && cfg->log_level < ZLB_LOG_WARN ? ZLB_LOG_WARN : cfg->log_level;
    if (cfg->shard.count > 1)
        zlb_log_info("shard %u/%u of the scenario: %llu connections, connect_rate %g",
                     cfg->shard.index, cfg->shard.count, (unsigned long long)cfg->connections,
                     cfg->connect_rate);

    if (cli.validate)
        code = print_effective(cfg, cli.config_path);
    else if (cli.repeat)
        code = run_repeated(cfg, &cli.opts, repeat);
    else
        code = zlb_procs_run(cfg, &cli.opts);
    zlb_config_destroy(cfg);
    return code;
}
