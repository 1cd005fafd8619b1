/* addr.c -- the control port's listen address: parsing "host:port", loopback test, printing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "control/control_internal.h"

static int parse_port(const char *s, in_port_t *out)
{
    unsigned long v = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    *out = htons((in_port_t)v);
    return 0;
}

static bool v4_loopback(const struct in_addr *a)
{
    return (ntohl(a->s_addr) >> 24) == 127;
}

static bool v6_loopback(const struct in6_addr *a)
{
    if (IN6_IS_ADDR_LOOPBACK(a))
        return true;
    /* ::ffff:127.x.y.z reaches the IPv4 loopback through a dual-stack socket. */
    if (IN6_IS_ADDR_V4MAPPED(a))
        return a->s6_addr[12] == 127;
    return false;
}

int zlb_control_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                             bool *loopback)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    size_t hlen;

    if (!listen)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        hlen = (size_t)(close - listen - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return -EINVAL;
        memcpy(host, listen + 1, hlen);
        host[hlen] = '\0';
        port = close + 2;

        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -EINVAL;
        if (parse_port(port, &sin6->sin6_port) < 0)
            return -EINVAL;
        *len = sizeof(*sin6);
        *loopback = v6_loopback(&sin6->sin6_addr);
        return 0;
    }

    /* The last colon splits, so a bare IPv6 address without brackets fails in inet_pton
     * rather than being misread. */
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -EINVAL;
    hlen = (size_t)(colon - listen);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    port = colon + 1;

    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    /* "localhost" is the one name accepted: it is what people type, and resolving it through
     * NSS could hand back a non-loopback address. */
    if (strcmp(host, "localhost") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -EINVAL;
    if (parse_port(port, &sin->sin_port) < 0)
        return -EINVAL;
    *len = sizeof(*sin);
    *loopback = v4_loopback(&sin->sin_addr);
    return 0;
}

int zlb_control_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
        return 0;
    }
    return -EAFNOSUPPORT;
}
