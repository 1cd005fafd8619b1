/* cli.c -- `zlbench serve`: the built-in target as a standalone process, its flags and signals. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "serve/serve.h"

static void serve_usage(FILE *f)
{
    fprintf(
        f, "usage: zlbench serve [options]\n"
           "Runs the built-in target alone until SIGINT or SIGTERM: a server to point runs at\n"
           "(from this host or others) and to test zlbench itself against.\n"
           "  -l, --listen ADDR         address to listen on (default 127.0.0.1:0: a port the\n"
           "                            kernel picks, printed as \"listening on ADDR\")\n"
           "  -m, --mode MODE           echo: sends every byte back (default); sink: reads and\n"
           "                            discards; source: writes as fast as the client reads\n"
           "                            (and discards what it sends); http: answers each request\n"
           "                            (by default a 200 with the body \"ok\"; see --http-*);\n"
           "                            redis: answers PING with +PONG, anything else with -ERR\n"
           "  -T, --threads N           accepting and serving threads (default 1)\n"
           "  -b, --backlog N           listen backlog (default 4096)\n"
           "  -s, --tls                 speak TLS with a certificate generated at start\n"
           "  -C, --ca-out FILE         write the generated CA certificate there, for clients'\n"
           "                            ca_file (with --tls)\n"
           "  -D, --accept-delay DUR    wait this long before each accept (e.g. 3ms): a slow\n"
           "                            target, for testing a regression gate\n"
           "  -M, --max-conns N         keep at most N connections: newer ones are closed\n"
           "  -A, --address-file FILE   write the bound address there once listening\n"
           "      --http-status N       http: the status of every response (200..599)\n"
           "      --http-body-size SIZE http: body bytes of every response (default 2, max 64MiB)\n"
           "      --http-chunked        http: send bodies with Transfer-Encoding: chunked\n"
           "      --http-delay DUR      http: answer each request this long after reading it\n"
           "      --http-delay-max DUR  http: a random delay between --http-delay and this\n"
           "  -h, --help                this text\n"
           "Exit codes: 0 stopped by a signal, 1 internal error, 2 bad usage or an address that\n"
           "cannot be used.\n");
}

static int write_address(const char *path, const char *addr)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "%s\n", addr);
    return zlb_write_file_atomic(path, line, (size_t)n, 0644);
}

enum { OPT_STATUS = 256, OPT_BODY, OPT_CHUNKED, OPT_DELAY, OPT_DELAY_MAX };

int zlb_serve_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"mode", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 'T'},
        {"backlog", required_argument, NULL, 'b'},
        {"tls", no_argument, NULL, 's'},
        {"ca-out", required_argument, NULL, 'C'},
        {"accept-delay", required_argument, NULL, 'D'},
        {"max-conns", required_argument, NULL, 'M'},
        {"address-file", required_argument, NULL, 'A'},
        {"http-status", required_argument, NULL, OPT_STATUS},
        {"http-body-size", required_argument, NULL, OPT_BODY},
        {"http-chunked", no_argument, NULL, OPT_CHUNKED},
        {"http-delay", required_argument, NULL, OPT_DELAY},
        {"http-delay-max", required_argument, NULL, OPT_DELAY_MAX},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    zlb_serve_opts_t o = {.mode = ZLB_SERVE_ECHO, .listen = "127.0.0.1:0", .threads = 1};
    const char *address_file = NULL;
    zlb_serve_http_opts_t http = ZLB_SERVE_HTTP_DEFAULTS;
    bool http_set = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:m:T:b:sC:D:M:A:h", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = 0;
        switch (c) {
        case 'l':
            o.listen = optarg;
            break;
        case 'm':
            if (zlb_config_serve_mode_parse(optarg, &o.mode) != 0) {
                fprintf(stderr,
                        "zlbench serve: --mode: expected echo, sink, source, http or redis, got "
                        "'%s'\n",
                        optarg);
                return ZLB_EXIT_USAGE;
            }
            break;
        case 'T':
        case 'b':
        case 'M':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || v < 1 || v > 1000000) {
                fprintf(stderr, "zlbench serve: expected an integer 1..1000000, got '%s'\n",
                        optarg);
                return ZLB_EXIT_USAGE;
            }
            if (c == 'T')
                o.threads = (int)v;
            else if (c == 'b')
                o.backlog = (int)v;
            else
                o.max_conns = (uint32_t)v;
            break;
        case 's':
            o.tls = true;
            break;
        case 'C':
            o.ca_out_file = optarg;
            break;
        case 'D':
            if (zlb_parse_duration(optarg, &o.accept_delay_ns) != 0) {
                fprintf(stderr,
                        "zlbench serve: --accept-delay: expected a duration like 10ms, "
                        "got '%s'\n",
                        optarg);
                return ZLB_EXIT_USAGE;
            }
            break;
        case 'A':
            address_file = optarg;
            break;
        case OPT_STATUS:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || v < 200 || v > 599) {
                fprintf(stderr, "zlbench serve: --http-status: expected 200..599, got '%s'\n",
                        optarg);
                return ZLB_EXIT_USAGE;
            }
            http.status = (uint16_t)v;
            http_set = true;
            break;
        case OPT_BODY:
            if (zlb_parse_size(optarg, &http.body_size) != 0 ||
                http.body_size > ZLB_SERVE_HTTP_MAX_BODY) {
                fprintf(stderr,
                        "zlbench serve: --http-body-size: expected a size up to 64MiB like 4096 "
                        "or 16KiB, got '%s'\n",
                        optarg);
                return ZLB_EXIT_USAGE;
            }
            http_set = true;
            break;
        case OPT_CHUNKED:
            http.chunked = true;
            http_set = true;
            break;
        case OPT_DELAY:
        case OPT_DELAY_MAX:
            if (zlb_parse_duration(optarg, c == OPT_DELAY ? &http.delay_ns : &http.delay_max_ns) !=
                0) {
                fprintf(stderr, "zlbench serve: %s: expected a duration like 10ms, got '%s'\n",
                        c == OPT_DELAY ? "--http-delay" : "--http-delay-max", optarg);
                return ZLB_EXIT_USAGE;
            }
            http_set = true;
            break;
        case 'h':
            serve_usage(stdout);
            return ZLB_EXIT_OK;
        default:
            serve_usage(stderr);
            return ZLB_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "zlbench serve: unexpected argument '%s'\n", argv[optind]);
        return ZLB_EXIT_USAGE;
    }
    if (http_set && o.mode != ZLB_SERVE_HTTP) {
        fprintf(stderr, "zlbench serve: the --http-* options need --mode http\n");
        return ZLB_EXIT_USAGE;
    }
    if (http.delay_max_ns && http.delay_max_ns < http.delay_ns) {
        fprintf(stderr, "zlbench serve: --http-delay-max is below --http-delay\n");
        return ZLB_EXIT_USAGE;
    }
    if (o.mode == ZLB_SERVE_HTTP)
        o.http = &http;
    zlb_serve_t *t = NULL;
    int rc = zlb_serve_start(&o, &t);
    if (rc != 0) {
        fprintf(stderr, "zlbench serve: cannot listen on %s: %s\n", o.listen, strerror(-rc));
        return rc == -EINVAL ? ZLB_EXIT_USAGE : ZLB_EXIT_INTERNAL;
    }
    printf("listening on %s\n", zlb_serve_address(t));
    fflush(stdout);
    if (address_file && (rc = write_address(address_file, zlb_serve_address(t))) != 0) {
        fprintf(stderr, "zlbench serve: cannot write %s: %s\n", address_file, strerror(-rc));
        zlb_serve_destroy(t);
        return ZLB_EXIT_INTERNAL;
    }
    /* main blocked these in every thread; wait for one here. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    zlb_serve_stats_t st;
    zlb_serve_read_stats(t, &st);
    zlb_serve_destroy(t);
    fprintf(stderr, "zlbench serve: %s: accepted %llu, bytes in %llu out %llu\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)st.accepted,
            (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
    return ZLB_EXIT_OK;
}
