/* bench_stream_send.c -- what the stream workload's writes should be: plain send() of 64 KiB
 * against larger writes and against MSG_ZEROCOPY, over loopback TCP into a reader thread that
 * drains with 256 KiB reads. Writer on CPU 0, reader on CPU 1 (when there are two); each mode
 * gets a fresh connection, rounds alternate, the median Gbit/s of each is printed. The last
 * line compares plain 64 KiB (what zlbench does) with MSG_ZEROCOPY 64 KiB.
 *
 * Zero-copy notes: completions are read from the error queue after every send (else the
 * socket's optmem fills and send fails with ENOBUFS); a completion flagged
 * SO_EE_CODE_ZEROCOPY_COPIED says the kernel copied after all (loopback always does). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

#define MAX_CHUNK (1u << 20)
#define ROUNDS 3

typedef struct {
    int fd;
    uint64_t got;
} reader_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof(set), &set);
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    static char buf[256 * 1024];
    ssize_t n;
    pin(1);
    while ((n = read(r->fd, buf, sizeof(buf))) > 0)
        r->got += (uint64_t)n;
    return NULL;
}

/* Drains zero-copy completions; counts those the kernel copied anyway. */
static void drain_errqueue(int fd, uint64_t *done, uint64_t *copied)
{
    for (;;) {
        char control[128];
        struct msghdr msg = {.msg_control = control, .msg_controllen = sizeof(control)};
        if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
            return;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            struct sock_extended_err *ee = (struct sock_extended_err *)CMSG_DATA(cm);
            if (ee->ee_origin != SO_EE_ORIGIN_ZEROCOPY)
                continue;
            *done += ee->ee_data - ee->ee_info + 1;
            if (ee->ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
                *copied += ee->ee_data - ee->ee_info + 1;
        }
    }
}

/* One run: a fresh connection, `secs` seconds of writes of `chunk` bytes; returns Gbit/s as the
 * reader counted them. */
static double run(size_t chunk, bool zerocopy, double secs, bool *all_copied)
{
    static char data[MAX_CHUNK];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0), wfd = socket(AF_INET, SOCK_STREAM, 0);
    uint64_t sends = 0, done = 0, copied = 0;
    reader_t r = {0};
    pthread_t th;

    memset(data, 'a', sizeof(data));
    if (lfd < 0 || wfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
        connect(wfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        (r.fd = accept(lfd, NULL, NULL)) < 0) {
        perror("bench_stream_send: set-up");
        exit(1);
    }
    if (zerocopy && setsockopt(wfd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0) {
        perror("bench_stream_send: SO_ZEROCOPY");
        exit(1);
    }
    pthread_create(&th, NULL, reader_main, &r);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    while (now_ns() < end) {
        ssize_t n = send(wfd, data, chunk, zerocopy ? MSG_ZEROCOPY : 0);
        if (n < 0) {
            if (errno == ENOBUFS && zerocopy) {
                drain_errqueue(wfd, &done, &copied);
                continue;
            }
            perror("bench_stream_send: send");
            exit(1);
        }
        sends++;
        if (zerocopy)
            drain_errqueue(wfd, &done, &copied);
    }
    shutdown(wfd, SHUT_WR);
    pthread_join(th, NULL);
    double el = (double)(now_ns() - t0) / 1e9;
    if (zerocopy) {
        drain_errqueue(wfd, &done, &copied);
        *all_copied = done > 0 && copied == done;
    }
    close(wfd);
    close(r.fd);
    close(lfd);
    return (double)r.got * 8 / el / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        size_t chunk;
        bool zc;
    } modes[] = {
        {"send 64 KiB", 64 << 10, false},
        {"send 256 KiB", 256 << 10, false},
        {"send 1 MiB", 1 << 20, false},
        {"MSG_ZEROCOPY 64 KiB", 64 << 10, true},
        {"MSG_ZEROCOPY 256 KiB", 256 << 10, true},
    };
    enum { NMODES = sizeof(modes) / sizeof(modes[0]) };
    double secs = argc > 1 ? atof(argv[1]) : 2.0, g[NMODES][ROUNDS], med[NMODES];
    bool copied[NMODES] = {0};

    pin(0);
    for (int r = 0; r < ROUNDS; r++)
        for (int m = 0; m < NMODES; m++)
            g[m][r] = run(modes[m].chunk, modes[m].zc, secs, &copied[m]);
    for (int m = 0; m < NMODES; m++) {
        qsort(g[m], ROUNDS, sizeof(double), cmp);
        med[m] = g[m][ROUNDS / 2];
        printf("%-22s %6.2f Gbit/s (median of %d x %.1f s)%s\n", modes[m].name, med[m], ROUNDS,
               secs, modes[m].zc && copied[m] ? "; the kernel copied every send" : "");
    }
    printf("stream_send: zlbench=%.2f reference=%.2f ratio=%.3f unit=Gbit/s (plain 64 KiB vs "
           "MSG_ZEROCOPY 64 KiB)\n",
           med[0], med[3], med[3] > 0 ? med[0] / med[3] : 0);
    return 0;
}
