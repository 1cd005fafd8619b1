/* ref_util.h -- what the reference programs (ref_*.c) share: a clock and an IPv4 HOST:PORT.
 * They stay free of zlbench's code on purpose, so that they measure the machine, not us. */
#ifndef ZLB_REF_UTIL_H
#define ZLB_REF_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "127.0.0.1:9000" into sin; 0, or -1 when it is not an IPv4 address and a port. */
static inline int parse_addr(const char *s, struct sockaddr_in *sin)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    size_t n;

    if (!colon || (n = (size_t)(colon - s)) == 0 || n >= sizeof(host))
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

#endif
