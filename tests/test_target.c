/* test_target.c -- the built-in server over real sockets on 127.0.0.1:0. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "target/target.h"
#include "target/target_internal.h"

#define IO_TIMEOUT_S 10

/* Polls a condition instead of sleeping a guessed time; fails with the condition's text. */
#define WAIT_FOR(cond, ms)                                                                         \
    do {                                                                                           \
        uint64_t dl_ = zlb_now_ns() + (uint64_t)(ms)*ZLB_NS_PER_MS;                                \
        while (!(cond)) {                                                                          \
            if (zlb_now_ns() > dl_)                                                                \
                ZLB_TEST_FAIL("timed out after %d ms waiting for %s", (int)(ms), #cond);           \
            usleep(1000);                                                                          \
        }                                                                                          \
    } while (0)

static zlb_target_opts_t opts_for(zlb_serve_mode_t mode)
{
    zlb_target_opts_t o = {.mode = mode, .listen = "127.0.0.1:0"};
    return o;
}

static zlb_target_t *start(const zlb_target_opts_t *o)
{
    zlb_target_t *t = NULL;
    int err = zlb_target_start(o, &t);
    ASSERT_EQ(err, 0);
    ASSERT(t != NULL);
    return t;
}

static zlb_target_stats_t stats(const zlb_target_t *t)
{
    zlb_target_stats_t s;
    zlb_target_read_stats(t, &s);
    return s;
}

static zlb_target_thread_info_t info(const zlb_target_t *t, int i)
{
    zlb_target_thread_info_t in;
    zlb_target_thread_info(t, i, &in);
    return in;
}

static uint64_t rejected(const zlb_target_t *t)
{
    uint64_t n = 0;
    for (int i = 0; i < zlb_target_threads(t); i++)
        n += info(t, i).rejected;
    return n;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

static void connect_fd(int fd, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (rc != 0)
        ZLB_TEST_FAIL("connect to port %u: %s", port, strerror(errno));
}

/* A blocking client socket whose reads and writes give up after IO_TIMEOUT_S, so a broken
 * server fails the test instead of hanging it. */
static int client(const zlb_target_t *t)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_target_port(t));
    return fd;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ZLB_TEST_FAIL("send: %zd (%s)", n, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ZLB_TEST_FAIL("read: %zd with %zu bytes missing (%s)", n, len,
                          n ? strerror(errno) : "EOF");
        p += n;
        len -= (size_t)n;
    }
}

/* True when the peer closed (EOF or reset) within the I/O timeout, false if data came. */
static bool reads_eof(int fd)
{
    char b;
    ssize_t n = read(fd, &b, 1);
    if (n < 0 && errno != ECONNRESET)
        ZLB_TEST_FAIL("read: %s", strerror(errno));
    return n <= 0;
}

/* True when nothing arrives for ms milliseconds. */
static bool quiet_for(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 0;
}

static void fill_pattern(char *buf, size_t len, size_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i + seed) % 251);
}

/* ---- options and set-up errors ------------------------------------------------------------ */

static void test_mode_parse(void)
{
    zlb_serve_mode_t m = (zlb_serve_mode_t)-1;
    ASSERT_EQ(zlb_serve_mode_parse("echo", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_ECHO);
    ASSERT_EQ(zlb_serve_mode_parse("sink", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_SINK);
    ASSERT_EQ(zlb_serve_mode_parse("http", &m), 0);
    ASSERT_EQ(m, ZLB_SERVE_HTTP);
    ASSERT_EQ(zlb_serve_mode_parse("HTTP", &m), -EINVAL);
    ASSERT_EQ(zlb_serve_mode_parse("", &m), -EINVAL);
    ASSERT_EQ(zlb_serve_mode_parse("echo ", &m), -EINVAL);
    ASSERT_EQ(zlb_serve_mode_parse(NULL, &m), -EINVAL);
}

static void test_bad_options(void)
{
    static const char *bad[] = {
        "localhost:0", "127.0.0.1",   "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:8x",
        ":80",         "[::1:80",     "[::1]80",    "[]:80",           "[1.2.3.4]:0",
        "::1:80",      "300.0.0.1:0", "",           "127.0.0.1:-1"};
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_t *t = (zlb_target_t *)&o; /* must be overwritten with NULL on failure */

    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        o.listen = bad[i];
        int err = zlb_target_start(&o, &t);
        if (err != -EINVAL)
            ZLB_TEST_FAIL("listen \"%s\": %d, expected -EINVAL", bad[i], err);
        ASSERT(t == NULL);
    }
    o = opts_for(ZLB_SERVE_ECHO);
    o.listen = NULL;
    ASSERT_EQ(zlb_target_start(&o, &t), -EINVAL);
    o = opts_for(ZLB_SERVE_ECHO);
    o.threads = -1;
    ASSERT_EQ(zlb_target_start(&o, &t), -EINVAL);
    o = opts_for((zlb_serve_mode_t)42);
    ASSERT_EQ(zlb_target_start(&o, &t), -EINVAL);
    o = opts_for(ZLB_SERVE_HTTP);
    o.tls = true;
    ASSERT_EQ(zlb_target_start(&o, &t), -ENOTSUP);
    ASSERT(t == NULL);
    zlb_target_destroy(NULL);
}

static void test_address_in_use(void)
{
    /* A listener without SO_REUSEPORT owns its port: the target must fail to join it. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    char listen_on[64];
    zlb_target_t *t = NULL;

    ASSERT(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", ntohs(a.sin_port));

    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.listen = listen_on;
    o.threads = 3;
    ASSERT_EQ(zlb_target_start(&o, &t), -EADDRINUSE);
    ASSERT(t == NULL);
    close(fd);
}

static void test_address(void)
{
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 3;
    zlb_target_t *t = start(&o);
    char want[64];

    ASSERT(zlb_target_port(t) != 0);
    snprintf(want, sizeof(want), "127.0.0.1:%u", zlb_target_port(t));
    ASSERT_STREQ(zlb_target_address(t), want);
    ASSERT(zlb_target_ca_pem(t) == NULL);
    ASSERT_EQ(zlb_target_threads(t), 3);
    zlb_target_destroy(t);
}

static void test_ipv6(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, "   skipped: no ::1 here\n");
        if (probe >= 0)
            close(probe);
        return;
    }
    close(probe);

    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.listen = "[::1]:0";
    zlb_target_t *t = start(&o);
    char want[64], buf[5];
    snprintf(want, sizeof(want), "[::1]:%u", zlb_target_port(t));
    ASSERT_STREQ(zlb_target_address(t), want);

    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    set_timeouts(fd);
    a.sin6_port = htons(zlb_target_port(t));
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    write_all(fd, "hello", 5);
    read_exact(fd, buf, 5);
    ASSERT(memcmp(buf, "hello", 5) == 0);
    close(fd);
    zlb_target_destroy(t);
}

/* ---- echo and sink ------------------------------------------------------------------------- */

struct sender {
    int fd;
    const char *buf;
    size_t len;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    write_all(s->fd, s->buf, s->len);
    return NULL;
}

static void test_echo_roundtrip(void)
{
    const size_t len = 1u << 20;
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_t *t = start(&o);
    char *out = malloc(len), *in = malloc(len);
    pthread_t tid;

    fill_pattern(out, len, 7);
    int fd = client(t);
    /* Sending from another thread: a client that writes 1 MiB before reading any of it
     * could deadlock against a server that (rightly) stops reading when it cannot write. */
    struct sender s = {fd, out, len};
    ASSERT_EQ(pthread_create(&tid, NULL, sender_main, &s), 0);
    read_exact(fd, in, len);
    ASSERT_EQ(pthread_join(tid, NULL), 0);
    ASSERT(memcmp(in, out, len) == 0);
    WAIT_FOR(stats(t).bytes_out == len, 5000);
    ASSERT_UEQ(stats(t).bytes_in, len);
    ASSERT_UEQ(stats(t).accepted, 1);
    ASSERT_UEQ(stats(t).open, 1);

    close(fd);
    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).closed, 1);
    free(out);
    free(in);
    zlb_target_destroy(t);
}

static void test_echo_backpressure(void)
{
    const size_t cap = 256u << 20, chunk = 64u << 10;
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_t *t = start(&o);
    char *buf = malloc(chunk), *in = malloc(chunk);
    size_t sent = 0, got = 0;
    int small = 64 << 10;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_target_port(t));
    ASSERT_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);

    /* Send without reading until nothing more goes for a while: only a server that stops
     * reading when its replies back up lets that happen before the cap. */
    while (sent < cap) {
        fill_pattern(buf, chunk, sent);
        ssize_t n = send(fd, buf, chunk, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        ASSERT(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 300) == 0)
            break;
    }
    if (sent >= cap)
        ZLB_TEST_FAIL("sent %zu bytes without the server pushing back", sent);
    WAIT_FOR(info(t, 0).blocked == 1, 5000);

    /* What the server holds for this peer is what it read and could not write yet: at most
     * one read's worth, however much the client pushed. */
    zlb_target_stats_t s = stats(t);
    ASSERT_CMP_UINT(s.bytes_in - s.bytes_out, <=, ZLB_TARGET_READ_BUF);
    ASSERT_CMP_UINT(s.bytes_in, <, sent);

    ASSERT_EQ(fcntl(fd, F_SETFL, 0), 0);
    while (got < sent) {
        size_t want = ZLB_MIN(chunk, sent - got);
        read_exact(fd, in, want);
        /* fill_pattern is periodic in 251, so the expected bytes at any offset are known */
        fill_pattern(buf, want, got);
        if (memcmp(in, buf, want) != 0)
            ZLB_TEST_FAIL("echoed bytes differ in [%zu, %zu)", got, got + want);
        got += want;
    }
    WAIT_FOR(info(t, 0).blocked == 0, 5000);
    ASSERT_UEQ(stats(t).bytes_out, sent);
    close(fd);
    free(buf);
    free(in);
    zlb_target_destroy(t);
}

static void test_sink(void)
{
    const size_t len = (3u << 20) + 12345;
    zlb_target_opts_t o = opts_for(ZLB_SERVE_SINK);
    o.threads = 2;
    zlb_target_t *t = start(&o);
    char *buf = malloc(len);
    int a = client(t), b = client(t);

    fill_pattern(buf, len, 0);
    write_all(a, buf, len);
    write_all(b, buf, 1000);
    WAIT_FOR(stats(t).bytes_in >= len + 1000, 5000);
    ASSERT(quiet_for(a, 50)); /* nothing comes back */
    ASSERT_UEQ(stats(t).bytes_in, len + 1000);
    ASSERT_UEQ(stats(t).bytes_out, 0);
    close(a);
    close(b);
    WAIT_FOR(stats(t).closed == 2, 5000);
    ASSERT_UEQ(stats(t).open, 0);
    free(buf);
    zlb_target_destroy(t);
}

/* One read per wake-up: a connection with more queued must come back by itself, since an
 * edge-triggered socket that still holds data reports nothing new. */
static void test_read_budget(void)
{
    const size_t len = 8u << 20;
    zlb_target_opts_t o = opts_for(ZLB_SERVE_SINK);
    zlb_target_tuning_t tune = {.reads_per_event = 1};
    zlb_target_t *t = NULL;
    char *buf = calloc(1, len);

    ASSERT_EQ(zlb_target_start_tuned(&o, &tune, &t), 0);
    int a = client(t), b = client(t);
    write_all(a, buf, len);
    write_all(b, buf, len);
    WAIT_FOR(stats(t).bytes_in == 2 * len, 10000);
    close(a);
    close(b);
    WAIT_FOR(stats(t).open == 0, 5000);
    free(buf);
    zlb_target_destroy(t);
}

/* ---- http ---------------------------------------------------------------------------------- */

static void expect_responses(int fd, int n)
{
    size_t len = tgt_http_response_len * (size_t)n;
    char *buf = malloc(len);
    read_exact(fd, buf, len);
    for (int i = 0; i < n; i++)
        if (memcmp(buf + (size_t)i * tgt_http_response_len, tgt_http_response,
                   tgt_http_response_len) != 0)
            ZLB_TEST_FAIL("response %d of %d differs: \"%.*s\"", i, n, (int)tgt_http_response_len,
                          buf + (size_t)i * tgt_http_response_len);
    free(buf);
}

static void test_http(void)
{
    zlb_target_opts_t o = opts_for(ZLB_SERVE_HTTP);
    zlb_target_t *t = start(&o);
    int fd = client(t);

    ASSERT_STREQ(tgt_http_response,
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok");

    /* Two pipelined requests in one segment, the second with a body that is itself a
     * request: exactly two responses, and the connection stays open. */
    const char two[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                       "POST /x HTTP/1.1\r\nHost: a\r\ncontent-length:  19 \r\n\r\n"
                       "GET /b HTTP/1.1\r\n\r\n";
    write_all(fd, two, sizeof(two) - 1);
    expect_responses(fd, 2);
    ASSERT(quiet_for(fd, 100));

    /* A request trickling in one byte at a time. */
    const char slow[] = "GET /slow HTTP/1.1\r\nHost: a\r\nX-Long: "
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        "\r\n\r\n";
    for (size_t i = 0; i < sizeof(slow) - 1; i++)
        write_all(fd, slow + i, 1);
    expect_responses(fd, 1);
    ASSERT(quiet_for(fd, 50));

    /* Connection: close gets its response, then the server closes. */
    const char bye[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n";
    write_all(fd, bye, sizeof(bye) - 1);
    expect_responses(fd, 1);
    ASSERT(reads_eof(fd));
    close(fd);

    /* HTTP/1.0 closes unless asked to keep alive. */
    fd = client(t);
    const char old_ka[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    write_all(fd, old_ka, sizeof(old_ka) - 1);
    expect_responses(fd, 1);
    ASSERT(quiet_for(fd, 50));
    const char old[] = "GET / HTTP/1.0\r\n\r\n";
    write_all(fd, old, sizeof(old) - 1);
    expect_responses(fd, 1);
    ASSERT(reads_eof(fd));
    close(fd);

    /* A malformed Content-Length closes without a response. */
    fd = client(t);
    const char bad[] = "POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n";
    write_all(fd, bad, sizeof(bad) - 1);
    ASSERT(reads_eof(fd));
    close(fd);

    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).accepted, 3);
    ASSERT_UEQ(stats(t).bytes_out, tgt_http_response_len * 6);
    zlb_target_destroy(t);
}

/* Many pipelined requests: the replies outgrow the socket buffers, so the server must hold
 * them back (reading nothing more meanwhile) and finish them later. */
static void test_http_pipeline_backpressure(void)
{
    const int n = 100000;
    const char req[] = "GET / HTTP/1.1\r\n\r\n";
    const size_t rlen = sizeof(req) - 1;
    zlb_target_opts_t o = opts_for(ZLB_SERVE_HTTP);
    zlb_target_t *t = start(&o);
    char *buf = malloc(rlen * (size_t)n);
    pthread_t tid;
    int small = 32 << 10;

    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * rlen, req, rlen);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_target_port(t));
    struct sender s = {fd, buf, rlen * (size_t)n};
    ASSERT_EQ(pthread_create(&tid, NULL, sender_main, &s), 0);
    WAIT_FOR(info(t, 0).blocked == 1, 5000);
    expect_responses(fd, n);
    ASSERT_EQ(pthread_join(tid, NULL), 0);
    ASSERT(quiet_for(fd, 50));
    ASSERT_UEQ(stats(t).bytes_out, tgt_http_response_len * (size_t)n);
    WAIT_FOR(info(t, 0).blocked == 0, 5000);
    close(fd);
    free(buf);
    zlb_target_destroy(t);
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void test_two_threads(void)
{
    enum { N = 200 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2;
    zlb_target_t *t = start(&o);
    int fds[N];

    for (int i = 0; i < N; i++)
        fds[i] = client(t);
    WAIT_FOR(stats(t).accepted == N, 5000);
    zlb_target_thread_info_t a = info(t, 0), b = info(t, 1);
    /* SO_REUSEPORT spreads connections by hash of the 4-tuple: all 200 on one listener
     * would be a 2^-199 chance, or a listener that never accepts. */
    ASSERT_CMP_UINT(a.stats.accepted, >, 0);
    ASSERT_CMP_UINT(b.stats.accepted, >, 0);
    ASSERT_UEQ(a.stats.accepted + b.stats.accepted, N);
    for (int i = 0; i < N; i++) {
        char c = (char)i, r;
        write_all(fds[i], &c, 1);
        read_exact(fds[i], &r, 1);
        ASSERT_EQ(r, c);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_target_destroy(t);
}

/* One accept per wake-up: a burst must still be taken in full, through the posted task. */
static void test_accept_budget(void)
{
    enum { N = 100 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_tuning_t tune = {.accept_budget = 1};
    zlb_target_t *t = NULL;
    int fds[N];

    ASSERT_EQ(zlb_target_start_tuned(&o, &tune, &t), 0);
    /* Non-blocking connects in a burst, so that many arrive within one wake-up. */
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT(fds[i] >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(zlb_target_port(t))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fds[i], (struct sockaddr *)&a, sizeof(a));
        ASSERT(rc == 0 || errno == EINPROGRESS);
    }
    WAIT_FOR(stats(t).accepted == N, 5000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_target_destroy(t);
}

static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = ZLB_MIN(want, rl.rlim_max);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void test_thousand(void)
{
    enum { N = 1000 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_t *t = start(&o);
    int *fds = malloc(N * sizeof(*fds));

    raise_nofile(2 * N + 64);
    for (int i = 0; i < N; i++)
        fds[i] = client(t);
    WAIT_FOR(stats(t).accepted == N && stats(t).open == N, 10000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 10000);
    zlb_target_stats_t s = stats(t);
    ASSERT_UEQ(s.accepted, N);
    ASSERT_UEQ(s.closed, N);
    ASSERT_UEQ(s.accept_errors, 0);
    free(fds);
    zlb_target_destroy(t);
}

/* Runs in a child: the lowered fd limit and the fds it fills must not leak into the other
 * tests. */
static void emfile_child(void)
{
    enum { N = 64, ROOM = 8 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_target_t *t = start(&o);
    int fds[N], top = 0;

    /* Sockets made before the limit drops; connect needs no new fd. */
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT(fds[i] >= 0);
        set_timeouts(fds[i]);
        top = ZLB_MAX(top, fds[i]);
    }
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = (rlim_t)top + 1 + ROOM;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);

    for (int i = 0; i < N; i++)
        connect_fd(fds[i], zlb_target_port(t));
    WAIT_FOR(stats(t).accept_errors > 0, 5000);
    ASSERT_CMP_UINT(stats(t).accepted, <, N);

    /* Still out of fds: the thread must sleep between attempts, not spin on the listener. */
    uint64_t cpu0 = info(t, 0).cpu_ns, w0 = zlb_now_ns();
    usleep(1000 * 1000);
    uint64_t cpu = info(t, 0).cpu_ns - cpu0, wall = zlb_now_ns() - w0;
    ASSERT_CMP_UINT(cpu, <, wall * 3 / 10);
    ASSERT_CMP_UINT(stats(t).accepted, <, N);
    uint64_t errors = stats(t).accept_errors;
    /* ... and it keeps trying: a retry every 50 ms fails again while nothing is freed. */
    ASSERT_CMP_UINT(errors, >=, 2);

    /* Fds come back: the connections left in the backlog are accepted (and, closed by
     * their clients, closed in turn). */
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).accepted == N && stats(t).open == 0, 10000);
    zlb_target_destroy(t);
}

static void test_emfile(void)
{
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        emfile_child();
        _exit(0);
    }
    int status = 0;
    uint64_t deadline = zlb_now_ns() + 20 * ZLB_NS_PER_SEC;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        ASSERT(r >= 0);
        if (r == pid)
            break;
        if (zlb_now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ZLB_TEST_FAIL("the EMFILE child did not finish in 20 s");
        }
        usleep(10000);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ZLB_TEST_FAIL("the EMFILE child failed (status 0x%x)", status);
}

static void test_accept_delay(void)
{
    enum { N = 10 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.accept_delay_ns = 20 * ZLB_NS_PER_MS;
    zlb_target_t *t = start(&o);
    int fds[N];

    uint64_t t0 = zlb_now_ns();
    for (int i = 0; i < N; i++)
        fds[i] = client(t); /* the kernel completes the handshake: connect does not wait */
    WAIT_FOR(stats(t).accepted == N, 5000);
    uint64_t took = zlb_now_ns() - t0;
    ASSERT_CMP_UINT(took, >=, 180 * ZLB_NS_PER_MS);
    ASSERT_CMP_UINT(took, <, 2000 * ZLB_NS_PER_MS);

    /* Served normally once accepted; a late connection waits one tick again. */
    char c = 'x', r;
    write_all(fds[0], &c, 1);
    read_exact(fds[0], &r, 1);
    ASSERT_EQ(r, c);
    t0 = zlb_now_ns();
    int late = client(t);
    WAIT_FOR(stats(t).accepted == N + 1, 5000);
    ASSERT_CMP_UINT(zlb_now_ns() - t0, >=, 15 * ZLB_NS_PER_MS);
    close(late);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_target_destroy(t);
}

static void test_max_conns(void)
{
    enum { N = 10, CAP = 5 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2; /* the cap holds over all threads together */
    o.max_conns = CAP;
    zlb_target_t *t = start(&o);
    int fds[N], kept = -1, nkept = 0, nrefused = 0;

    for (int i = 0; i < N; i++)
        fds[i] = client(t);
    WAIT_FOR(stats(t).accepted + rejected(t) == N, 5000);
    ASSERT_UEQ(stats(t).accepted, CAP);
    ASSERT_UEQ(stats(t).open, CAP);
    ASSERT_UEQ(rejected(t), N - CAP);

    for (int i = 0; i < N; i++) {
        char c = 'a', r;
        write_all(fds[i], &c, 1);
        ssize_t n = read(fds[i], &r, 1);
        if (n == 1) {
            ASSERT_EQ(r, c);
            nkept++;
            kept = i;
        } else {
            if (n < 0 && errno != ECONNRESET)
                ZLB_TEST_FAIL("read: %s", strerror(errno));
            nrefused++;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    ASSERT_EQ(nkept, CAP);
    ASSERT_EQ(nrefused, N - CAP);

    /* A freed slot takes a new connection. */
    close(fds[kept]);
    fds[kept] = -1;
    WAIT_FOR(stats(t).open == CAP - 1, 5000);
    int fd = client(t);
    char c = 'b', r;
    write_all(fd, &c, 1);
    read_exact(fd, &r, 1);
    ASSERT_EQ(r, c);
    ASSERT_UEQ(stats(t).accepted, CAP + 1);
    close(fd);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_target_destroy(t);
}

/* Connections in every state at destroy: idle, backed up with output pending, mid-request.
 * The sanitizer builds check that nothing leaks or races; clients see their connection end. */
static void test_destroy_with_open_connections(void)
{
    enum { N = 30 };
    zlb_target_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2;
    zlb_target_t *t = start(&o);
    zlb_target_opts_t oh = opts_for(ZLB_SERVE_HTTP);
    zlb_target_t *th = start(&oh);
    int fds[N], hfd;
    const size_t chunk = 256u << 10;
    char *buf = calloc(1, chunk);

    for (int i = 0; i < N; i++) {
        fds[i] = client(t);
        if (i % 3 == 0) {
            /* back up: send until the server stops taking it */
            ASSERT_EQ(fcntl(fds[i], F_SETFL, O_NONBLOCK), 0);
            for (;;) {
                ssize_t n = send(fds[i], buf, chunk, MSG_NOSIGNAL);
                if (n > 0)
                    continue;
                struct pollfd p = {.fd = fds[i], .events = POLLOUT};
                if (poll(&p, 1, 100) == 0)
                    break;
            }
            ASSERT_EQ(fcntl(fds[i], F_SETFL, 0), 0);
        }
    }
    WAIT_FOR(info(t, 0).blocked + info(t, 1).blocked == (N + 2) / 3, 5000);
    hfd = client(th);
    write_all(hfd, "GET / HTTP/1.1\r\nHo", 18);
    WAIT_FOR(stats(th).bytes_in == 18, 5000);

    zlb_target_destroy(t);
    zlb_target_destroy(th);
    for (int i = 0; i < N; i++) {
        if (i % 3 != 0)
            ASSERT(reads_eof(fds[i]));
        close(fds[i]);
    }
    ASSERT(reads_eof(hfd));
    close(hfd);
    free(buf);
}

/* An argument runs only the tests whose name contains it (for debugging one). */
#define RUN(fn)                                                                                    \
    do {                                                                                           \
        if (argc < 2 || strstr(#fn, argv[1]))                                                      \
            RUN_TEST(fn);                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* First, while this process has no other threads: fork() copies only the caller. */
    RUN(test_emfile);
    RUN(test_mode_parse);
    RUN(test_bad_options);
    RUN(test_address_in_use);
    RUN(test_address);
    RUN(test_ipv6);
    RUN(test_echo_roundtrip);
    RUN(test_echo_backpressure);
    RUN(test_sink);
    RUN(test_read_budget);
    RUN(test_http);
    RUN(test_http_pipeline_backpressure);
    RUN(test_accept_budget);
    RUN(test_two_threads);
    RUN(test_thousand);
    RUN(test_accept_delay);
    RUN(test_max_conns);
    RUN(test_destroy_with_open_connections);
    fprintf(stderr, "all target tests passed\n");
    return 0;
}
