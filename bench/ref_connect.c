/* ref_connect.c -- the reference: one thread, epoll, non-blocking connects as fast as possible. */
/*
 * usage: ref_connect HOST:PORT [N=15000] [MAX_IN_FLIGHT=0] [SOURCE_IP[+COUNT]]
 *
 * The least a connect benchmark has to do: socket, connect, one epoll_ctl to learn the result,
 * SO_ERROR, one epoll_ctl to hold the connection for reading. Connects are issued 64 at a time
 * between epoll_waits (the engine's batch size), so results are collected while issuing. Prints
 *   ref_connect: N established in S s, F failed: connects_per_sec=R
 * where the time runs from the first connect() to the N-th established connection.
 * MAX_IN_FLIGHT > 0 caps the connects awaiting their answer (0: no cap): against a listener
 * whose SYN queue a flood overflows, the dropped SYNs' 1 s, 3 s, 7 s retransmissions, not the
 * client, then set the time. SOURCE_IP+COUNT binds the sockets round-robin to COUNT addresses
 * from SOURCE_IP up, with IP_BIND_ADDRESS_NO_PORT (as zlbench's source_ips): the kernel's
 * search for a free ephemeral port slows down as one source address's range fills.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ref_util.h"

#define BATCH 64
#define MAX_EVENTS 1024

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct rlimit rl;
    struct epoll_event ev, events[MAX_EVENTS];
    long n = argc > 2 ? atol(argv[2]) : 15000;
    long max_in_flight = argc > 3 ? atol(argv[3]) : 0;
    struct sockaddr_in src[64];
    int nsrc = 0;
    if (argc > 4) {
        char ip[64];
        const char *plus = strchr(argv[4], '+');
        size_t len = plus ? (size_t)(plus - argv[4]) : strlen(argv[4]);
        struct in_addr a;
        nsrc = plus ? atoi(plus + 1) : 1;
        if (len >= sizeof(ip) || nsrc < 1 || nsrc > 64) {
            fprintf(stderr, "bad source %s\n", argv[4]);
            return 2;
        }
        memcpy(ip, argv[4], len);
        ip[len] = '\0';
        if (inet_pton(AF_INET, ip, &a) != 1) {
            fprintf(stderr, "bad source %s\n", argv[4]);
            return 2;
        }
        for (int i = 0; i < nsrc; i++) {
            memset(&src[i], 0, sizeof(src[i]));
            src[i].sin_family = AF_INET;
            src[i].sin_addr.s_addr = htonl(ntohl(a.s_addr) + (uint32_t)i);
        }
    }
    long issued = 0, established = 0, failed = 0;
    int *fds, ep;
    double t0 = 0, t1 = 0;

    if (argc < 2 || parse_addr(argv[1], &sin) < 0 || n <= 0) {
        fprintf(stderr,
                "usage: ref_connect IPV4:PORT [N=15000] [MAX_IN_FLIGHT=0] [SOURCE_IP[+COUNT]]\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    fds = calloc((size_t)n, sizeof(*fds));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!fds || ep < 0) {
        perror("setup");
        return 1;
    }

    t0 = now_s();
    while (established + failed < n) {
        for (int k = 0; k < BATCH && issued < n &&
                        (!max_in_flight || issued - established - failed < max_in_flight);
             k++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                perror("socket");
                return 1;
            }
            if (nsrc) {
                int one = 1;
                if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
                    bind(fd, (struct sockaddr *)&src[issued % nsrc], sizeof(src[0])) < 0) {
                    perror("bind");
                    return 1;
                }
            }
            if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
                close(fd);
                failed++;
                issued++;
                continue;
            }
            ev.events = EPOLLOUT | EPOLLRDHUP | EPOLLET;
            ev.data.fd = fd;
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                perror("epoll_ctl");
                return 1;
            }
            fds[issued++] = fd;
        }
        bool can_issue =
            issued < n && (!max_in_flight || issued - established - failed < max_in_flight);
        int m = epoll_wait(ep, events, MAX_EVENTS, can_issue ? 0 : 1000);
        for (int i = 0; i < m; i++) {
            int fd = events[i].data.fd, err = 0;
            socklen_t len = sizeof(err);
            if (!(events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                continue;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                failed++;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                continue;
            }
            ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
            ev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            if (++established == n)
                t1 = now_s();
        }
    }
    if (!t1)
        t1 = now_s();
    printf("ref_connect: %ld established in %.3f s, %ld failed: connects_per_sec=%.0f\n",
           established, t1 - t0, failed, (double)established / (t1 - t0));
    for (long i = 0; i < issued; i++)
        if (fds[i] > 0)
            close(fds[i]);
    close(ep);
    free(fds);
    return failed ? 1 : 0;
}
