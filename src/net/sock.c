/* sock.c -- client sockets: creation with options, source binding, connect, errno taxonomy. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

zlb_fail_t zlb_net_classify(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return ZLB_FAIL_REFUSED;
    case ETIMEDOUT:
        return ZLB_FAIL_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return ZLB_FAIL_RESET;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
        return ZLB_FAIL_UNREACHABLE;
    case EADDRNOTAVAIL:
    case EADDRINUSE:
        return ZLB_FAIL_ADDR_UNAVAILABLE;
    case EMFILE:
    case ENFILE:
        return ZLB_FAIL_FD_LIMIT;
    case ENOBUFS:
    case ENOMEM:
        return ZLB_FAIL_NO_BUFFERS;
    default:
        return ZLB_FAIL_OTHER;
    }
}

bool zlb_net_fail_is_local(zlb_fail_t f)
{
    return f == ZLB_FAIL_FD_LIMIT || f == ZLB_FAIL_ADDR_UNAVAILABLE || f == ZLB_FAIL_NO_BUFFERS;
}

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

static int apply_opts(int fd, const zlb_net_sockopts_t *o)
{
    int r = 0;

    if (!o)
        return set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (o->nodelay && (r = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)) < 0)
        return r;
    /* Left alone unless asked: forcing buffer sizes turns off the kernel's autotuning. */
    if (o->sndbuf > 0 && (r = set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf)) < 0)
        return r;
    if (o->rcvbuf > 0 && (r = set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf)) < 0)
        return r;
    if (o->keepalive) {
        if ((r = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) < 0)
            return r;
        if (o->keepalive_idle_s > 0 &&
            (r = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, o->keepalive_idle_s)) < 0)
            return r;
        if (o->keepalive_interval_s > 0 &&
            (r = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, o->keepalive_interval_s)) < 0)
            return r;
        if (o->keepalive_count > 0 &&
            (r = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, o->keepalive_count)) < 0)
            return r;
    }
    return 0;
}

static int fd_ceiling = INT_MAX;
static pthread_once_t fd_ceiling_once = PTHREAD_ONCE_INIT;

/* Read once, at the first socket: main raises the soft limit before any poller starts. */
static void fd_ceiling_init(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur > 2 * ZLB_NET_FD_RESERVE && rl.rlim_cur < (rlim_t)INT_MAX)
        fd_ceiling = (int)(rl.rlim_cur - ZLB_NET_FD_RESERVE);
}

int zlb_net_socket(int family, const zlb_net_sockopts_t *o, const zlb_net_addr_t *src)
{
    int fd, r;

    pthread_once(&fd_ceiling_once, fd_ceiling_init);
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    /* The kernel hands out the lowest free number, so fd >= ceiling means every number below
     * it is taken: the last few are the control port's, the report's and the resolver's.
     * Counted as fd_limit like a real EMFILE, so the run says what happened. */
    if (fd >= fd_ceiling) {
        close(fd);
        return -EMFILE;
    }
    r = apply_opts(fd, o);
    if (r < 0)
        goto fail;
    if (src && src->len) {
        /* Without IP_BIND_ADDRESS_NO_PORT, bind() picks a port for the address alone, and
         * ports run out at ~28k per source IP whatever the destination. */
        r = set_int(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
        if (r < 0)
            goto fail;
        if (bind(fd, &src->u.sa, src->len) < 0) {
            r = -errno;
            goto fail;
        }
    }
    return fd;
fail:
    close(fd);
    return r;
}

int zlb_net_connect(int fd, const zlb_net_addr_t *dst)
{
    for (;;) {
        if (connect(fd, &dst->u.sa, dst->len) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        /* EAGAIN from a unix-style connect does not apply to TCP; EINPROGRESS is the norm. */
        return -errno;
    }
}

int zlb_net_socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

void zlb_net_close(int fd, bool rst)
{
    if (fd < 0)
        return;
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    /* Linux releases the fd even when close reports EINTR: never retry. */
    (void)close(fd);
}

long zlb_net_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -errno;
    }
    return rl.rlim_cur == RLIM_INFINITY ? (long)INT32_MAX : (long)rl.rlim_cur;
}
