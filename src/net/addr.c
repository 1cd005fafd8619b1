/* addr.c -- IPv4/IPv6 socket addresses: literals, host:port splitting, formatting. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/net.h"

bool zlb_net_is_ip_literal(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (!host)
        return false;
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

int zlb_net_addr_literal(const char *host, uint16_t port, zlb_net_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!host)
        return -EINVAL;
    if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return -EINVAL;
}

int zlb_net_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, zlb_net_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(&out->u.in4, sa, sizeof(out->u.in4));
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        memcpy(&out->u.in6, sa, sizeof(out->u.in6));
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return -EAFNOSUPPORT;
}

int zlb_net_addr_family(const zlb_net_addr_t *a)
{
    return a->len ? a->u.sa.sa_family : AF_UNSPEC;
}

uint16_t zlb_net_addr_port(const zlb_net_addr_t *a)
{
    if (!a->len)
        return 0;
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in4.sin_port : a->u.in6.sin6_port);
}

void zlb_net_addr_set_port(zlb_net_addr_t *a, uint16_t port)
{
    if (a->u.sa.sa_family == AF_INET)
        a->u.in4.sin_port = htons(port);
    else if (a->u.sa.sa_family == AF_INET6)
        a->u.in6.sin6_port = htons(port);
}

bool zlb_net_addr_equal(const zlb_net_addr_t *a, const zlb_net_addr_t *b)
{
    if (a->len != b->len || zlb_net_addr_family(a) != zlb_net_addr_family(b))
        return false;
    if (!a->len)
        return true;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    return a->u.in6.sin6_port == b->u.in6.sin6_port &&
           a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(struct in6_addr)) == 0;
}

const char *zlb_net_addr_format(const zlb_net_addr_t *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (!len)
        return buf;
    if (!a->len) {
        snprintf(buf, len, "(none)");
    } else if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(a->u.in4.sin_port));
    } else {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        if (a->u.in6.sin6_scope_id)
            snprintf(buf, len, "[%s%%%u]:%u", ip, a->u.in6.sin6_scope_id,
                     ntohs(a->u.in6.sin6_port));
        else
            snprintf(buf, len, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
    }
    return buf;
}

int zlb_net_addr_parse(const char *s, zlb_net_addr_t *out)
{
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    int r = zlb_addr_split(s, host, sizeof(host), &port);

    if (r < 0)
        return -EINVAL;
    return zlb_net_addr_literal(host, port, out);
}
