/* ref_pingpong.c -- the reference: one thread, epoll, closed-loop message round trips. */
/*
 * usage: ref_pingpong HOST:PORT [CONNS=100] [SECS=3] [SIZE=64] [WARMUP_S=1]
 *
 * The least a ping-pong benchmark has to do: CONNS connections to an echo server, each with one
 * SIZE-byte message outstanding; edge-triggered epoll, read until EAGAIN, and as soon as a whole
 * echo is in, send the next message with one send(). No timing per message, no statistics: what
 * zlbench does on top of this (latency histograms, counters, the send queue) is its overhead.
 * Prints
 *   ref_pingpong: C connections, N round trips in S s: messages_per_sec=R
 *   ref_pingpong: T round trips in all on C CPU-seconds: round_trips_per_cpu_s=E
 * counting the round trips completed in the SECS after WARMUP_S, then the whole run's per
 * CPU-second of this process (what each round trip costs the client).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ref_util.h"

#define MAX_EVENTS 1024

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct epoll_event ev, events[MAX_EVENTS];
    int conns = argc > 2 ? atoi(argv[2]) : 100;
    double secs = argc > 3 ? atof(argv[3]) : 3;
    size_t size = argc > 4 ? (size_t)atol(argv[4]) : 64;
    double warmup = argc > 5 ? atof(argv[5]) : 1;
    static char rbuf[128 * 1024];
    char *msg;
    size_t *got;
    long count = 0, count0 = 0;
    int ep, one = 1;

    if (argc < 2 || parse_addr(argv[1], &sin) < 0 || conns <= 0 || secs <= 0 || size == 0 ||
        size > sizeof(rbuf)) {
        fprintf(stderr, "usage: ref_pingpong IPV4:PORT [CONNS=100] [SECS=3] [SIZE=64] "
                        "[WARMUP_S=1]\n");
        return 2;
    }
    msg = malloc(size);
    got = calloc((size_t)conns, sizeof(*got));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!msg || !got || ep < 0) {
        perror("setup");
        return 1;
    }
    for (size_t i = 0; i < size; i++)
        msg[i] = (char)('a' + i % 26);
    int *fds = calloc((size_t)conns, sizeof(*fds));
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            perror("connect");
            return 1;
        }
        /* As zlbench's socket.nodelay (default true). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            perror("fcntl");
            return 1;
        }
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.u32 = (uint32_t)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
        fds[i] = fd;
    }
    for (int i = 0; i < conns; i++)
        if (send(fds[i], msg, size, MSG_NOSIGNAL) != (ssize_t)size) {
            perror("send");
            return 1;
        }

    double t_start = now_s(), t_measure = t_start + warmup, t_end = t_measure + secs, t = t_start;
    int measuring = 0;
    while (t < t_end) {
        int m = epoll_wait(ep, events, MAX_EVENTS, 100);
        for (int k = 0; k < m; k++) {
            uint32_t i = events[k].data.u32;
            for (;;) {
                ssize_t n = read(fds[i], rbuf, sizeof(rbuf));
                if (n > 0) {
                    got[i] += (size_t)n;
                    continue;
                }
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                fprintf(stderr, "ref_pingpong: connection %u closed by the server\n", i);
                return 1;
            }
            while (got[i] >= size) {
                got[i] -= size;
                count++;
                if (send(fds[i], msg, size, MSG_NOSIGNAL) != (ssize_t)size) {
                    perror("send");
                    return 1;
                }
            }
        }
        t = now_s();
        if (!measuring && t >= t_measure) {
            measuring = 1;
            count0 = count;
            t_measure = t;
        }
    }
    printf("ref_pingpong: %d connections, %ld round trips in %.3f s: messages_per_sec=%.0f\n",
           conns, count - count0, t - t_measure, (double)(count - count0) / (t - t_measure));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("ref_pingpong: %ld round trips in all on %.3f CPU-seconds: round_trips_per_cpu_s=%.0f\n",
           count, cpu, cpu > 0 ? (double)count / cpu : 0);
    for (int i = 0; i < conns; i++)
        close(fds[i]);
    close(ep);
    free(fds);
    free(got);
    free(msg);
    return 0;
}
