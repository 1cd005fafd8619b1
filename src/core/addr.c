/* addr.c -- the one address vocabulary: "host:port" strings, IP literals (IPv6 zones included)
 * and numeric socket addresses, for every module (config, net, control, serve). */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
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

/* An IPv6 literal with an optional zone ("fe80::1%eth0", "fe80::1%2"): the address into *a and
 * the zone, if any, into zone (cut at `%`). Only that the zone is there is checked here. */
static bool split_ipv6(const char *s, struct in6_addr *a, char *zone, size_t zonecap)
{
    char buf[INET6_ADDRSTRLEN];
    const char *pct = strchr(s, '%');
    size_t n = pct ? (size_t)(pct - s) : strlen(s);

    if (n == 0 || n >= sizeof(buf) || (pct && (pct[1] == '\0' || strlen(pct + 1) >= zonecap)))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET6, buf, a) != 1)
        return false;
    snprintf(zone, zonecap, "%s", pct ? pct + 1 : "");
    return true;
}

bool zlb_addr_is_ip_literal(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char zone[IF_NAMESIZE + 8];
    if (!host)
        return false;
    return inet_pton(AF_INET, host, &a4) == 1 || split_ipv6(host, &a6, zone, sizeof(zone));
}

int zlb_addr_literal(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    char zone[IF_NAMESIZE + 8];

    memset(ss, 0, sizeof(*ss));
    if (!host)
        return -EINVAL;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        *len = sizeof(*a4);
    } else if (split_ipv6(host, &a6->sin6_addr, zone, sizeof(zone))) {
        if (zone[0]) {
            /* A number is the scope id itself; a name is an interface that must exist. */
            char *end;
            unsigned long id = strtoul(zone, &end, 10);
            if (*end != '\0')
                id = if_nametoindex(zone);
            if (id == 0 || id > UINT32_MAX) {
                memset(ss, 0, sizeof(*ss));
                return -EINVAL;
            }
            a6->sin6_scope_id = (uint32_t)id;
        }
        a6->sin6_family = AF_INET6;
        *len = sizeof(*a6);
    } else {
        memset(ss, 0, sizeof(*ss));
        return -EINVAL;
    }
    zlb_addr_set_port(ss, port);
    return 0;
}

static bool valid_host_chars(const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '[' || c == ']' || c == '/' || c == '@' || c == 0x7f)
            return false;
    }
    return s[0] != '\0';
}

int zlb_addr_host_port(const char *s, char **host, uint16_t *port)
{
    char h[1024], zone[IF_NAMESIZE + 8];
    struct in6_addr a6;
    uint16_t p;

    if (!s || zlb_addr_split(s, h, sizeof(h), &p) != 0)
        return -EINVAL;
    /* Brackets promise an IPv6 literal; without them only plausible host characters. */
    if (s[0] == '[' ? !split_ipv6(h, &a6, zone, sizeof(zone)) : !valid_host_chars(h))
        return -EINVAL;
    *host = zlb_xstrdup(h);
    *port = p;
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
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 8];
    uint16_t port;
    memset(ss, 0, sizeof(*ss));
    if (zlb_addr_split(s, host, sizeof(host), &port) != 0)
        return -EINVAL;
    /* Brackets hold IPv6 only; without them an IPv4 literal, or "localhost": it is what people
     * type, and resolving it could hand back an address that is not loopback. */
    if (s[0] == '[') {
        if (!strchr(host, ':'))
            return -EINVAL;
    } else if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    } else if (strchr(host, ':')) {
        return -EINVAL;
    }
    return zlb_addr_literal(host, port, ss, len);
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
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
        /* The scope as a number: it reads back through zlb_addr_parse whatever the names. */
        if (a6->sin6_scope_id)
            snprintf(buf, len, "[%s%%%u]:%u", host, (unsigned)a6->sin6_scope_id,
                     (unsigned)zlb_addr_port(sa));
        else
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
