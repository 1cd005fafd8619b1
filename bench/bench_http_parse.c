/* bench_http_parse.c -- responses/s of zlbench's response parser vs libhttp-parser (the parser wrk
 * is built on), over the same buffers of pipelined responses read in 16 KiB pieces. */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ZLB_HAVE_HTTP_PARSER
#include <http_parser.h>
#endif

#define READ_SIZE 16384

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* What a server sends: nginx's answer for its 612-byte index.html (the wrk reference), a small
 * API-style chunked answer with a trailer, and a 204. */
static const char nginx_resp[] = "HTTP/1.1 200 OK\r\n"
                                 "Server: nginx/1.22.1\r\n"
                                 "Date: Sat, 05 Dec 2026 08:00:00 GMT\r\n"
                                 "Content-Type: text/html\r\n"
                                 "Content-Length: 612\r\n"
                                 "Last-Modified: Tue, 11 Apr 2023 01:45:34 GMT\r\n"
                                 "Connection: keep-alive\r\n"
                                 "ETag: \"6434bbbe-264\"\r\n"
                                 "Accept-Ranges: bytes\r\n"
                                 "\r\n";
static const char chunked_resp[] = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "Cache-Control: no-store\r\n"
                                   "\r\n"
                                   "19\r\n{\"id\":12345,\"name\":\"abc\"}\r\n"
                                   "10;ext=1\r\n,\"tags\":[1,2,3]}\r\n"
                                   "0\r\nX-Trace: 77\r\n\r\n";
static const char empty_resp[] = "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";

static size_t build(char *buf, size_t cap, int kind, long *count)
{
    size_t len = 0;
    long n = 0;
    char body[612];
    memset(body, 'x', sizeof(body));
    for (;;) {
        const char *h = kind == 0 ? nginx_resp : (n % 3 == 0 ? empty_resp : chunked_resp);
        size_t hl = strlen(h), bl = kind == 0 ? sizeof(body) : 0;
        if (len + hl + bl > cap)
            break;
        memcpy(buf + len, h, hl);
        memcpy(buf + len + hl, body, bl);
        len += hl + bl;
        n++;
    }
    *count = n;
    return len;
}

static long run_zlb(const char *buf, size_t len)
{
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, NULL, false);
    long done = 0;
    for (size_t off = 0; off < len; off += READ_SIZE) {
        const uint8_t *piece = (const uint8_t *)buf + off;
        size_t plen = len - off < READ_SIZE ? len - off : READ_SIZE, pos = 0;
        while (pos < plen) {
            size_t used;
            zlb_http_result_t r = zlb_http_parse(&p, piece + pos, plen - pos, &used);
            pos += used;
            if (r == ZLB_HTTP_DONE) {
                done++;
                zlb_http_parser_init(&p, NULL, false);
            } else if (r == ZLB_HTTP_ERROR) {
                fprintf(stderr, "zlb parser error %s\n", zlb_http_error_name(p.error));
                exit(1);
            }
        }
    }
    return done;
}

#ifdef ZLB_HAVE_HTTP_PARSER
static long ref_done;
static int on_complete(http_parser *hp)
{
    (void)hp;
    ref_done++;
    return 0;
}

/* The least work libhttp-parser can be asked for: one callback, at the end of each message. */
static long run_ref(const char *buf, size_t len)
{
    http_parser hp;
    http_parser_settings s;
    memset(&s, 0, sizeof(s));
    s.on_message_complete = on_complete;
    http_parser_init(&hp, HTTP_RESPONSE);
    ref_done = 0;
    for (size_t off = 0; off < len; off += READ_SIZE) {
        size_t plen = len - off < READ_SIZE ? len - off : READ_SIZE;
        size_t n = http_parser_execute(&hp, &s, buf + off, plen);
        if (n != plen || HTTP_PARSER_ERRNO(&hp) != HPE_OK) {
            fprintf(stderr, "http_parser error %s\n", http_errno_name(HTTP_PARSER_ERRNO(&hp)));
            exit(1);
        }
    }
    return ref_done;
}
#endif

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 64)
        rounds = 5;
#ifndef ZLB_HAVE_HTTP_PARSER
    (void)argv;
    printf("http_parse: skipped (libhttp-parser-dev is not installed: no reference to compare)\n");
    return 0;
#else
    size_t cap = 256u << 10; /* fits L2, like a read buffer the kernel just filled */
    char *buf = malloc(cap);
    if (!buf)
        return 1;
    const char *kinds[] = {"nginx 612 B static file", "chunked json + 204 mix"};
    double head_z = 0, head_r = 0;
    for (int kind = 0; kind < 2; kind++) {
        long count;
        size_t len = build(buf, cap, kind, &count);
        double z[64], r[64];
        for (int i = 0; i < rounds; i++) {
            /* alternate, several passes per round so one round lasts ~0.1 s or more */
            int passes = 400;
            double t0 = now_s();
            for (int k = 0; k < passes; k++)
                if (run_ref(buf, len) != count)
                    return fprintf(stderr, "reference counted wrong\n"), 1;
            double t1 = now_s();
            for (int k = 0; k < passes; k++)
                if (run_zlb(buf, len) != count)
                    return fprintf(stderr, "zlbench counted wrong\n"), 1;
            double t2 = now_s();
            r[i] = passes * count / (t1 - t0);
            z[i] = passes * count / (t2 - t1);
        }
        qsort(z, (size_t)rounds, sizeof(double), cmp_dbl);
        qsort(r, (size_t)rounds, sizeof(double), cmp_dbl);
        double zm = z[rounds / 2], rm = r[rounds / 2];
        printf("http_parse, %s (%ld responses, %zu bytes): zlbench=%.0f reference=%.0f "
               "ratio=%.3f unit=responses/s\n",
               kinds[kind], count, len, zm, rm, zm / rm);
        if (kind == 0) { /* the headline: what bench/run http's parser sees from nginx */
            head_z = zm;
            head_r = rm;
        }
    }
    free(buf);
    printf("http_parse: zlbench=%.0f reference=%.0f ratio=%.3f unit=responses/s\n", head_z, head_r,
           head_z / head_r);
    return 0;
#endif
}
