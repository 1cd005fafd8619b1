/* addr.c -- zlb_net_addr_t, the compact socket address the connections keep; what an address
 * looks like as text (literals, zones, formatting) is core's one vocabulary (core/addr.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/net.h"

int zlb_net_addr_literal(const char *host, uint16_t port, zlb_net_addr_t *out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(out, 0, sizeof(*out));
    if (zlb_addr_literal(host, port, &ss, &len) != 0)
        return -EINVAL;
    return zlb_net_addr_from_sockaddr((const struct sockaddr *)&ss, len, out);
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
    if (!len)
        return buf;
    if (!a->len || zlb_addr_format(&a->u.sa, buf, len) != 0)
        snprintf(buf, len, "(none)");
    return buf;
}
