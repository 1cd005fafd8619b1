/* ref_tls_handshake.c -- reference: full TLS handshakes as fast as one epoll thread can do them. */

/*
 * A yardstick for zlbench's engine, sharing no code with it: libc and OpenSSL only. One thread
 * keeps K connections in flight; each one connects (non-blocking), does a full handshake with
 * verification on (CA file, host name or IP checked), and is closed with a reset (SO_LINGER 0,
 * so no TIME_WAIT eats the ephemeral ports), then replaced. No session resumption.
 *
 *   gcc -O2 -o /tmp/ref bench/ref_tls_handshake.c -lssl -lcrypto
 *   /tmp/ref HOST PORT CA_FILE [IN_FLIGHT=64] [SECONDS=10] [NAME=HOST]
 *
 * NAME is the name sent as SNI and checked in the certificate (default HOST; an IP literal is
 * checked against IP SANs and sends no SNI). Prints handshakes/s, failures, mean latency.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct slot {
    int fd;
    SSL *ssl;        /* NULL while the TCP connect is in progress */
    uint32_t events; /* epoll interest now registered */
    uint64_t start_ns;
} slot_t;

static struct sockaddr_storage addr;
static socklen_t addr_len;
static SSL_CTX *ctx;
static const char *peer_name;
static int sni_ok; /* peer_name is a DNS name, not an IP literal */
static int epfd;
static uint64_t done, failed, latency_sum_ns;
static char first_error[256];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "ref_tls_handshake: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void note_failure(const char *what)
{
    failed++;
    if (!first_error[0]) {
        unsigned long e = ERR_peek_error();
        if (e)
            ERR_error_string_n(e, first_error, sizeof(first_error));
        else
            snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(errno));
    }
    ERR_clear_error();
}

static void set_interest(slot_t *s, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};

    if (s->events == events)
        return;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0)
        die("epoll_ctl");
    s->events = events;
}

static void slot_close(slot_t *s)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    if (s->ssl)
        SSL_free(s->ssl);
    s->ssl = NULL;
    if (s->fd >= 0) {
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(s->fd); /* also removes it from the epoll set */
    }
    s->fd = -1;
}

static void slot_open(slot_t *s)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};

    s->start_ns = now_ns();
    s->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket");
    if (connect(s->fd, (struct sockaddr *)&addr, addr_len) != 0 && errno != EINPROGRESS)
        die("connect");
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        die("epoll_ctl");
    s->events = EPOLLOUT;
}

static void slot_restart(slot_t *s)
{
    slot_close(s);
    slot_open(s);
}

static void handshake_step(slot_t *s)
{
    int r, err;

    ERR_clear_error();
    r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        done++;
        latency_sum_ns += now_ns() - s->start_ns;
        slot_restart(s);
        return;
    }
    err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        set_interest(s, EPOLLIN);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        set_interest(s, EPOLLOUT);
    } else {
        note_failure("handshake");
        slot_restart(s);
    }
}

static void on_event(slot_t *s)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (s->ssl) {
        handshake_step(s);
        return;
    }
    /* Writable after a non-blocking connect: connected, or failed with SO_ERROR. */
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
        errno = soerr;
        note_failure("connect");
        slot_restart(s);
        return;
    }
    s->ssl = SSL_new(ctx);
    if (!s->ssl || !SSL_set_fd(s->ssl, s->fd) || !SSL_set1_host(s->ssl, peer_name) ||
        (sni_ok && !SSL_set_tlsext_host_name(s->ssl, peer_name)))
        die("SSL set-up");
    SSL_set_connect_state(s->ssl);
    handshake_step(s);
}

static void resolve(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo(host, port, &hints, &res);

    if (r != 0) {
        fprintf(stderr, "ref_tls_handshake: %s:%s: %s\n", host, port, gai_strerror(r));
        exit(1);
    }
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addr_len = res->ai_addrlen;
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    unsigned char ipbuf[sizeof(struct in6_addr)];
    struct epoll_event events[256];
    slot_t *slots;
    long inflight;
    double seconds, elapsed;
    uint64_t start, end;

    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT CA_FILE [IN_FLIGHT=64] [SECONDS=10] [NAME=HOST]\n",
                argv[0]);
        return 2;
    }
    inflight = argc > 4 ? strtol(argv[4], NULL, 10) : 64;
    seconds = argc > 5 ? strtod(argv[5], NULL) : 10;
    peer_name = argc > 6 ? argv[6] : argv[1];
    if (inflight < 1 || !(seconds > 0)) {
        fprintf(stderr, "ref_tls_handshake: IN_FLIGHT and SECONDS must be positive\n");
        return 2;
    }
    sni_ok =
        inet_pton(AF_INET, peer_name, ipbuf) != 1 && inet_pton(AF_INET6, peer_name, ipbuf) != 1;
    signal(SIGPIPE, SIG_IGN); /* OpenSSL's socket BIO writes with write(2) */
    resolve(argv[1], argv[2]);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_load_verify_locations(ctx, argv[3], NULL)) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    slots = calloc((size_t)inflight, sizeof(*slots));
    if (!slots)
        die("calloc");
    start = now_ns();
    end = start + (uint64_t)(seconds * 1e9);
    for (long i = 0; i < inflight; i++)
        slot_open(&slots[i]);
    while (now_ns() < end) {
        int n = epoll_wait(epfd, events, (int)(sizeof(events) / sizeof(events[0])), 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            on_event(events[i].data.ptr);
    }
    elapsed = (double)(now_ns() - start) / 1e9;
    printf("handshakes/s %.0f  handshakes %llu  failed %llu  mean connect+handshake %.3f ms  "
           "(in flight %ld, %.1f s, %s)\n",
           (double)done / elapsed, (unsigned long long)done, (unsigned long long)failed,
           done ? (double)latency_sum_ns / (double)done / 1e6 : 0.0, inflight, elapsed,
           OpenSSL_version(OPENSSL_VERSION));
    if (first_error[0])
        printf("first failure: %s\n", first_error);
    for (long i = 0; i < inflight; i++)
        slot_close(&slots[i]);
    free(slots);
    SSL_CTX_free(ctx);
    close(epfd);
    return done ? 0 : 1;
}
