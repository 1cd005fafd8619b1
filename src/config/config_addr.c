/* config_addr.c -- source address ranges ("source_ips": "A" or "A-B"); every other address rule
 * is core's (core/addr.c). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

/* ---- source address ranges ------------------------------------------------------------------ */

static int parse_ip(const char *s, size_t len, zlb_config_ip_t *ip)
{
    char buf[INET6_ADDRSTRLEN + 1];
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(AF_INET, buf, ip->b) == 1) {
        ip->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, ip->b) == 1) {
        ip->family = AF_INET6;
        return 0;
    }
    return -EINVAL;
}

/* The address as a 128-bit number in two halves (IPv4 uses the low half only). */
static void ip_halves(const zlb_config_ip_t *ip, uint64_t *hi, uint64_t *lo)
{
    size_t n = ip->family == AF_INET ? 4 : 16;
    *hi = *lo = 0;
    for (size_t i = 0; i < n; i++) {
        if (n == 16 && i < 8)
            *hi = *hi << 8 | ip->b[i];
        else
            *lo = *lo << 8 | ip->b[i];
    }
}

int zlb_config_ip_range_parse(const char *s, zlb_config_ip_t *first, zlb_config_ip_t *last,
                              uint64_t *count, const char **why)
{
    const char *dash = strchr(s, '-');
    uint64_t ahi, alo, bhi, blo;

    if (!dash) {
        if (parse_ip(s, strlen(s), first) < 0) {
            *why = "not an IPv4 or IPv6 address";
            return -EINVAL;
        }
        *last = *first;
        *count = 1;
        return 0;
    }
    if (parse_ip(s, (size_t)(dash - s), first) < 0 ||
        parse_ip(dash + 1, strlen(dash + 1), last) < 0) {
        *why = "expected an address or a range \"FIRST-LAST\" of IPv4 or IPv6 addresses";
        return -EINVAL;
    }
    if (first->family != last->family) {
        *why = "both ends of a range must be of the same address family";
        return -EINVAL;
    }
    ip_halves(first, &ahi, &alo);
    ip_halves(last, &bhi, &blo);
    if (ahi > bhi || (ahi == bhi && alo > blo)) {
        *why = "the range is reversed (its first address is greater than its last)";
        return -EINVAL;
    }
    /* last - first, in 128 bits; anything past the cap only needs to be known as too many. */
    uint64_t dlo = blo - alo, dhi = bhi - ahi - (blo < alo);
    if (dhi != 0 || dlo >= ZLB_CONFIG_MAX_SOURCE_ADDRS)
        *count = (uint64_t)ZLB_CONFIG_MAX_SOURCE_ADDRS + 1;
    else
        *count = dlo + 1;
    return 0;
}

void zlb_config_ip_next(zlb_config_ip_t *ip)
{
    int i = ip->family == AF_INET ? 3 : 15;
    for (; i >= 0; i--) {
        if (++ip->b[i] != 0)
            break;
    }
}

void zlb_config_ip_to_sockaddr(const zlb_config_ip_t *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (ip->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, ip->b, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, ip->b, 16);
    }
}
