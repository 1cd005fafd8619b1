/* addr.c -- "host:port" strings and numeric socket addresses, shared by every module. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static int parse_port(const char *s, uint16_t *out)
{
    unsigned long v = 0;
    if (*s == '\0' || strlen(s) > 5)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

int zlb_addr_split(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h, *p;
    size_t n;
    if (!s || !*s)
        return -EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        n = (size_t)(close - h);
        p = close + 2;
    } else {
        /* The last colon splits, so an unbracketed IPv6 address fails later as a bad host
         * instead of being misread as host "::1" port "". */
        const char *colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        h = s;
        n = (size_t)(colon - s);
        p = colon + 1;
        if (memchr(h, ':', n))
            return -EINVAL;
    }
    if (n == 0 || n >= hostlen || parse_port(p, port) != 0)
        return -EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    return 0;
}

void zlb_addr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

uint16_t zlb_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return 0;
}

int zlb_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    if (zlb_addr_split(s, host, sizeof(host), &port) != 0)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return -EINVAL;
        a6->sin6_family = AF_INET6;
        *len = sizeof(*a6);
    } else {
        /* "localhost" is the one name taken: it is what people type, and resolving it could
         * hand back an address that is not loopback. */
        if (strcmp(host, "localhost") == 0)
            a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return -EINVAL;
        a4->sin_family = AF_INET;
        *len = sizeof(*a4);
    }
    zlb_addr_set_port(ss, port);
    return 0;
}

int zlb_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)zlb_addr_port(sa));
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)zlb_addr_port(sa));
        return 0;
    }
    return -EAFNOSUPPORT;
}

bool zlb_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        /* ::ffff:127.x.y.z reaches the IPv4 loopback through a dual-stack socket. */
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}
