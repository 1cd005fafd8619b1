/* fuzz_core_parse.c -- libFuzzer: duration, size and address parsing. What parses formats back to
 * text that parses to the same value; nothing reads past the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';

    uint64_t ns, ns2, bytes;
    if (zlb_parse_duration(s, &ns) == 0) {
        char out[64];
        zlb_format_duration(ns, out, sizeof(out));
        if (zlb_parse_duration(out, &ns2) != 0 || ns2 != ns) {
            fprintf(stderr, "duration \"%s\" = %llu ns -> \"%s\" does not read back\n", s,
                    (unsigned long long)ns, out);
            abort();
        }
    }
    (void)zlb_parse_size(s, &bytes);

    char host[256];
    uint16_t port;
    (void)zlb_addr_split(s, host, sizeof(host), &port);
    struct sockaddr_storage ss, ss2;
    socklen_t len, len2;
    if (zlb_addr_parse(s, &ss, &len) == 0) {
        char text[128];
        if (zlb_addr_format((struct sockaddr *)&ss, text, sizeof(text)) != 0 ||
            zlb_addr_parse(text, &ss2, &len2) != 0 || len != len2 ||
            zlb_addr_port((struct sockaddr *)&ss) != zlb_addr_port((struct sockaddr *)&ss2) ||
            zlb_addr_is_loopback((struct sockaddr *)&ss) !=
                zlb_addr_is_loopback((struct sockaddr *)&ss2)) {
            fprintf(stderr, "address \"%s\" -> \"%s\" does not read back\n", s, text);
            abort();
        }
    }
    double p = 0;
    if (size >= sizeof(p)) {
        memcpy(&p, data, sizeof(p));
        if (p > 0 && p < 100) {
            char key[64];
            zlb_percentile_key(p, key, sizeof(key));
        }
    }
    char num[40];
    double d;
    if (size >= sizeof(d)) {
        memcpy(&d, data, sizeof(d));
        zlb_format_double(d, num, sizeof(num));
        if (d == d && strtod(num, NULL) != d && !(d > 1e308 || d < -1e308))
            abort();
    }
    free(s);
    return 0;
}
