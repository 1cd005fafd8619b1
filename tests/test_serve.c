/* test_serve.c -- the built-in server over real sockets on 127.0.0.1:0, plain and TLS. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "test.h"
#include "serve/serve.h"
#include "serve/serve_internal.h"
#include "http/http.h"

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

static zlb_serve_opts_t opts_for(zlb_serve_mode_t mode)
{
    zlb_serve_opts_t o = {.mode = mode, .listen = "127.0.0.1:0"};
    return o;
}

static zlb_serve_t *start(const zlb_serve_opts_t *o)
{
    zlb_serve_t *t = NULL;
    int err = zlb_serve_start(o, &t);
    ASSERT_EQ(err, 0);
    ASSERT(t != NULL);
    return t;
}

static zlb_serve_stats_t stats(const zlb_serve_t *t)
{
    zlb_serve_stats_t s;
    zlb_serve_read_stats(t, &s);
    return s;
}

static zlb_serve_thread_info_t info(const zlb_serve_t *t, int i)
{
    zlb_serve_thread_info_t in;
    zlb_serve_thread_info(t, i, &in);
    return in;
}

static uint64_t rejected(const zlb_serve_t *t)
{
    uint64_t n = 0;
    for (int i = 0; i < zlb_serve_threads(t); i++)
        n += info(t, i).stats.rejected;
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
static int client(const zlb_serve_t *t)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_serve_port(t));
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

static void test_bad_options(void)
{
    static const char *bad[] = {
        "example.com:0", "127.0.0.1",   "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:8x",
        ":80",           "[::1:80",     "[::1]80",    "[]:80",           "[1.2.3.4]:0",
        "::1:80",        "300.0.0.1:0", "",           "127.0.0.1:-1"};
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_t *t = (zlb_serve_t *)&o; /* must be overwritten with NULL on failure */

    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        o.listen = bad[i];
        int err = zlb_serve_start(&o, &t);
        if (err != -EINVAL)
            ZLB_TEST_FAIL("listen \"%s\": %d, expected -EINVAL", bad[i], err);
        ASSERT(t == NULL);
    }
    o = opts_for(ZLB_SERVE_ECHO);
    o.listen = NULL;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    o = opts_for(ZLB_SERVE_ECHO);
    o.threads = -1;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    o = opts_for((zlb_serve_mode_t)42);
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);

    /* TLS options: only the versions that exist, in order, and only with tls on. */
    static const struct {
        bool tls;
        int kind, min, max;
        bool mtls;
    } bad_tls[] = {
        {true, 0, 0x0302, 0, false}, {true, 0, 0, 0x0305, false},  {true, 0, 0x0304, 0x0303, false},
        {true, 0, 0x0303, 1, false}, {true, 4, 0, 0, false},       {true, -1, 0, 0, false},
        {false, 1, 0, 0, false},     {false, 0, 0x0303, 0, false}, {false, 0, 0, 0x0304, false},
        {false, 0, 0, 0, true},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad_tls); i++) {
        o = opts_for(ZLB_SERVE_HTTP);
        o.tls = bad_tls[i].tls;
        o.tls_cert_kind = (zlb_serve_cert_kind_t)bad_tls[i].kind;
        o.tls_min_version = bad_tls[i].min;
        o.tls_max_version = bad_tls[i].max;
        o.tls_require_client_cert = bad_tls[i].mtls;
        t = (zlb_serve_t *)&o;
        int err = zlb_serve_start(&o, &t);
        if (err != -EINVAL)
            ZLB_TEST_FAIL("bad TLS options #%zu: %d, expected -EINVAL", i, err);
        ASSERT(t == NULL);
    }
    zlb_serve_destroy(NULL);
}

static void test_address_in_use(void)
{
    /* A listener without SO_REUSEPORT owns its port: the target must fail to join it. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    char listen_on[64];
    zlb_serve_t *t = NULL;

    ASSERT(fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", ntohs(a.sin_port));

    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.listen = listen_on;
    o.threads = 3;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EADDRINUSE);
    ASSERT(t == NULL);
    close(fd);
}

static void test_address(void)
{
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 3;
    zlb_serve_t *t = start(&o);
    char want[64];

    ASSERT(zlb_serve_port(t) != 0);
    snprintf(want, sizeof(want), "127.0.0.1:%u", zlb_serve_port(t));
    ASSERT_STREQ(zlb_serve_address(t), want);
    ASSERT(zlb_serve_ca_pem(t) == NULL);
    ASSERT_EQ(zlb_serve_threads(t), 3);
    zlb_serve_destroy(t);
}

static void test_ipv6(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof(a)) != 0) {
        TEST_SKIP("no ::1 here");
        if (probe >= 0)
            close(probe);
        return;
    }
    close(probe);

    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.listen = "[::1]:0";
    zlb_serve_t *t = start(&o);
    char want[64], buf[5];
    snprintf(want, sizeof(want), "[::1]:%u", zlb_serve_port(t));
    ASSERT_STREQ(zlb_serve_address(t), want);

    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    set_timeouts(fd);
    a.sin6_port = htons(zlb_serve_port(t));
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    write_all(fd, "hello", 5);
    read_exact(fd, buf, 5);
    ASSERT(memcmp(buf, "hello", 5) == 0);
    close(fd);
    zlb_serve_destroy(t);
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
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_t *t = start(&o);
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
    zlb_serve_destroy(t);
}

static void test_echo_backpressure(void)
{
    const size_t cap = 256u << 20, chunk = 64u << 10;
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_t *t = start(&o);
    char *buf = malloc(chunk), *in = malloc(chunk);
    size_t sent = 0, got = 0;
    int small = 64 << 10;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_serve_port(t));
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
    zlb_serve_stats_t s = stats(t);
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
    zlb_serve_destroy(t);
}

static void test_sink(void)
{
    const size_t len = (3u << 20) + 12345;
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_SINK);
    o.threads = 2;
    zlb_serve_t *t = start(&o);
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
    zlb_serve_destroy(t);
}

/* One read per wake-up: a connection with more queued must come back by itself, since an
 * edge-triggered socket that still holds data reports nothing new. */
static void test_read_budget(void)
{
    const size_t len = 8u << 20;
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_SINK);
    zlb_serve_tuning_t tune = {.reads_per_event = 1};
    zlb_serve_t *t = NULL;
    char *buf = calloc(1, len);

    ASSERT_EQ(zlb_serve_start_tuned(&o, &tune, &t), 0);
    int a = client(t), b = client(t);
    write_all(a, buf, len);
    write_all(b, buf, len);
    WAIT_FOR(stats(t).bytes_in == 2 * len, 10000);
    close(a);
    close(b);
    WAIT_FOR(stats(t).open == 0, 5000);
    free(buf);
    zlb_serve_destroy(t);
}

/* ---- http ---------------------------------------------------------------------------------- */

static const char resp_close[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: "
                                 "text/plain\r\nConnection: close\r\n\r\nok";
static const char resp_ka10[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: "
                                "text/plain\r\nConnection: keep-alive\r\n\r\nok";

/* Reads exactly the bytes of `want` and compares them, printing both on a difference. */
static void expect_bytes(int fd, const char *want)
{
    size_t len = strlen(want);
    char *buf = malloc(len + 1);
    read_exact(fd, buf, len);
    buf[len] = 0;
    ASSERT_STREQ(buf, want);
    free(buf);
}

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
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_HTTP);
    zlb_serve_t *t = start(&o);
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

    /* Connection: close gets its response, saying so, then the server closes. */
    const char bye[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n";
    write_all(fd, bye, sizeof(bye) - 1);
    expect_bytes(fd, resp_close);
    ASSERT(reads_eof(fd));
    close(fd);

    /* HTTP/1.0 closes unless asked to keep alive, and is told when it may. */
    fd = client(t);
    const char old_ka[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    write_all(fd, old_ka, sizeof(old_ka) - 1);
    expect_bytes(fd, resp_ka10);
    ASSERT(quiet_for(fd, 50));
    const char old[] = "GET / HTTP/1.0\r\n\r\n";
    write_all(fd, old, sizeof(old) - 1);
    expect_bytes(fd, resp_close);
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
    ASSERT_UEQ(stats(t).bytes_out,
               tgt_http_response_len * 3 + 2 * strlen(resp_close) + strlen(resp_ka10));
    zlb_serve_destroy(t);
}

/* Many pipelined requests: the replies outgrow the socket buffers, so the server must hold
 * them back (reading nothing more meanwhile) and finish them later. */
static void test_http_pipeline_backpressure(void)
{
    const int n = 100000;
    const char req[] = "GET / HTTP/1.1\r\n\r\n";
    const size_t rlen = sizeof(req) - 1;
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_HTTP);
    zlb_serve_t *t = start(&o);
    char *buf = malloc(rlen * (size_t)n);
    pthread_t tid;
    int small = 32 << 10;

    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * rlen, req, rlen);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    set_timeouts(fd);
    connect_fd(fd, zlb_serve_port(t));
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
    zlb_serve_destroy(t);
}

/* Reads n responses with the client's own parser (src/http), so framing is checked the way
 * the http workload reads it; fails on bytes beyond them. Returns the bytes read. */
static size_t read_http(int fd, int n, bool head, uint16_t want_status, bool *keep_alive)
{
    static uint8_t buf[1 << 16];
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, NULL, head);
    size_t total = 0;
    int done = 0;
    while (done < n) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            ZLB_TEST_FAIL("read: %zd after %d of %d responses (%s)", r, done, n,
                          r ? strerror(errno) : "EOF");
        total += (size_t)r;
        size_t off = 0;
        while (off < (size_t)r) {
            if (done == n)
                ZLB_TEST_FAIL("%zu bytes beyond %d responses", (size_t)r - off, n);
            size_t used = 0;
            zlb_http_result_t res = zlb_http_parse(&p, buf + off, (size_t)r - off, &used);
            off += used;
            if (res == ZLB_HTTP_ERROR)
                ZLB_TEST_FAIL("response %d: %s", done, zlb_http_error_name(p.error));
            if (res == ZLB_HTTP_DONE) {
                ASSERT_EQ(p.status, want_status);
                if (keep_alive)
                    *keep_alive = p.keep_alive;
                done++;
                zlb_http_parser_init(&p, NULL, head);
            }
        }
    }
    return total;
}

static zlb_serve_t *start_http(const zlb_serve_http_opts_t *h)
{
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_HTTP);
    o.http = h;
    return start(&o);
}

static void test_http_options(void)
{
    /* Out of range: refused at start. */
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_HTTP);
    zlb_serve_t *t = NULL;
    zlb_serve_http_opts_t h = ZLB_SERVE_HTTP_DEFAULTS;
    h.status = 199;
    o.http = &h;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    h = ZLB_SERVE_HTTP_DEFAULTS;
    h.body_size = ZLB_SERVE_HTTP_MAX_BODY + 1;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    h = (zlb_serve_http_opts_t){.status = 200, .delay_ns = 2, .delay_max_ns = 1};
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    o = opts_for(ZLB_SERVE_ECHO);
    o.http = &h;
    ASSERT_EQ(zlb_serve_start(&o, &t), -EINVAL);
    ASSERT(t == NULL);

    /* A status and a body larger than the read buffer (written header, then body). */
    h = (zlb_serve_http_opts_t){.status = 404, .body_size = 100000};
    t = start_http(&h);
    int fd = client(t);
    const char get[] = "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n";
    const char hdr404[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 100000\r\n"
                          "Content-Type: text/plain\r\n\r\n";
    write_all(fd, get, sizeof(get) - 1);
    expect_bytes(fd, hdr404);
    char *body = malloc(100000);
    read_exact(fd, body, 100000);
    for (size_t i = 0; i < 100000; i++)
        if (body[i] != "ok"[i & 1])
            ZLB_TEST_FAIL("body byte %zu is '%c'", i, body[i]);
    free(body);
    char three[3 * sizeof(get)];
    for (int i = 0; i < 3; i++)
        memcpy(three + i * (sizeof(get) - 1), get, sizeof(get) - 1);
    write_all(fd, three, 3 * (sizeof(get) - 1));
    bool ka = false;
    ASSERT_UEQ(read_http(fd, 3, false, 404, &ka), 3 * (sizeof(hdr404) - 1 + 100000));
    ASSERT(ka);
    const char head[] = "HEAD /missing HTTP/1.1\r\n\r\n";
    write_all(fd, head, sizeof(head) - 1);
    expect_bytes(fd, hdr404);
    ASSERT(quiet_for(fd, 50));
    close(fd);
    zlb_serve_destroy(t);

    /* Chunked: exact bytes for a short body, HTTP/1.0 gets Content-Length instead. */
    h = (zlb_serve_http_opts_t){.status = 200, .body_size = 5, .chunked = true};
    t = start_http(&h);
    fd = client(t);
    write_all(fd, get, sizeof(get) - 1);
    expect_bytes(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
                     "\r\n5\r\nokoko\r\n0\r\n\r\n");
    const char get10[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    write_all(fd, get10, sizeof(get10) - 1);
    expect_bytes(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"
                     "Connection: keep-alive\r\n\r\nokoko");
    close(fd);
    zlb_serve_destroy(t);

    /* Chunked, several chunks, pipelined: the client's parser reads them all. */
    h = (zlb_serve_http_opts_t){.status = 201, .body_size = 40000, .chunked = true};
    t = start_http(&h);
    fd = client(t);
    write_all(fd, three, 3 * (sizeof(get) - 1));
    size_t got = read_http(fd, 3, false, 201, &ka);
    fprintf(stderr, "   3 chunked responses of a 40000-byte body: %zu bytes\n", got);
    ASSERT(ka);
    close(fd);
    zlb_serve_destroy(t);

    /* 204 carries no body and no Content-Length. */
    h = (zlb_serve_http_opts_t){.status = 204, .body_size = 10};
    t = start_http(&h);
    fd = client(t);
    write_all(fd, get, sizeof(get) - 1);
    expect_bytes(fd, "HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\n\r\n");
    ASSERT(quiet_for(fd, 50));
    close(fd);
    zlb_serve_destroy(t);
}

/* HEAD gets the header of the response a GET gets, no body, in order among pipelined GETs. */
static void test_http_head_pipelined(void)
{
    zlb_serve_t *t = start_http(NULL);
    int fd = client(t);
    const char reqs[] = "HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nHEAD /x HTTP/1.1\r\n\r\n"
                        "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /dropped HTTP/1.1\r\n\r\n";
    char want[1024];
    size_t hl = tgt_http_response_len - 2;
    snprintf(want, sizeof(want), "%.*s%s%.*s%s", (int)hl, tgt_http_response, tgt_http_response,
             (int)hl, tgt_http_response, resp_close);
    write_all(fd, reqs, sizeof(reqs) - 1);
    expect_bytes(fd, want);
    ASSERT(reads_eof(fd));
    close(fd);
    zlb_serve_destroy(t);
}

static double ms_since(uint64_t t0)
{
    return (double)(zlb_now_ns() - t0) / 1e6;
}

static void test_http_delay(void)
{
    /* Fixed: pipelined requests of one read all wait the delay, then go together. */
    zlb_serve_http_opts_t h = {.status = 200, .body_size = 2, .delay_ns = 50 * ZLB_NS_PER_MS};
    zlb_serve_t *t = start_http(&h);
    int fd = client(t);
    const char get[] = "GET / HTTP/1.1\r\n\r\n";
    const char three[] = "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    uint64_t t0 = zlb_now_ns();
    write_all(fd, three, sizeof(three) - 1);
    expect_responses(fd, 3);
    double ms = ms_since(t0);
    fprintf(stderr, "   3 pipelined with a 50 ms delay: answered after %.1f ms\n", ms);
    ASSERT_CMP_DBL(ms, >=, 49.0);
    ASSERT_CMP_DBL(ms, <, 2000.0);

    /* The peer half-closes after its request: it still gets the (delayed) answer, then EOF. */
    write_all(fd, get, sizeof(get) - 1);
    ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
    t0 = zlb_now_ns();
    expect_responses(fd, 1);
    ASSERT_CMP_DBL(ms_since(t0), >=, 45.0);
    ASSERT(reads_eof(fd));
    close(fd);
    zlb_serve_destroy(t);

    /* Random in [10, 60] ms: every answer inside the range, and spread over it. */
    h = (zlb_serve_http_opts_t){.status = 200,
                                .body_size = 2,
                                .delay_ns = 10 * ZLB_NS_PER_MS,
                                .delay_max_ns = 60 * ZLB_NS_PER_MS};
    t = start_http(&h);
    fd = client(t);
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 30; i++) {
        t0 = zlb_now_ns();
        write_all(fd, get, sizeof(get) - 1);
        expect_responses(fd, 1);
        ms = ms_since(t0);
        lo = ms < lo ? ms : lo;
        hi = ms > hi ? ms : hi;
    }
    fprintf(stderr, "   30 requests with a random 10..60 ms delay: %.1f .. %.1f ms\n", lo, hi);
    ASSERT_CMP_DBL(lo, >=, 9.0);
    ASSERT_CMP_DBL(hi, <, 60.0 + 500.0); /* a loaded test machine may add, never take away */
    ASSERT_CMP_DBL(hi - lo, >=, 10.0);

    /* Pipelined HEAD and GET, alternating, each with its own random delay: more runs than the
     * queue holds, so some wait unread; all come back, in request order. */
    char reqs[64 * 40], want[64 * 80];
    size_t rl = 0, wl = 0, hl = tgt_http_response_len - 2;
    for (int i = 0; i < 40; i++) {
        rl += (size_t)sprintf(reqs + rl, "%s /%d HTTP/1.1\r\n\r\n", i % 2 ? "GET" : "HEAD", i);
        memcpy(want + wl, tgt_http_response, i % 2 ? tgt_http_response_len : hl);
        wl += i % 2 ? tgt_http_response_len : hl;
    }
    want[wl] = 0;
    t0 = zlb_now_ns();
    write_all(fd, reqs, rl);
    expect_bytes(fd, want);
    fprintf(stderr, "   40 pipelined HEAD/GET with random delays: in order after %.1f ms\n",
            ms_since(t0));
    ASSERT(quiet_for(fd, 50));
    close(fd);
    zlb_serve_destroy(t);
}

/* Garbage and oversized requests close the connection without an answer; long but valid
 * ones are answered. */
static void test_http_garbage(void)
{
    zlb_serve_t *t = start_http(NULL);
    const char *bad[] = {
        "BLAH\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: no name\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        "\x16\x03\x01\x02\x10\x01\x20\x01\xfc\x03\x03 a TLS hello to a plain port\n",
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        int fd = client(t);
        write_all(fd, bad[i], strlen(bad[i]));
        if (!reads_eof(fd))
            ZLB_TEST_FAIL("an answer to garbage %zu: %s", i, bad[i]);
        close(fd);
    }

    /* A head past 16 KiB: closed, even if it never ends. */
    size_t big = 17 * 1024;
    char *req = malloc(big + 64);
    int n = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', big - (size_t)n);
    int fd = client(t);
    write_all(fd, req, big);
    ASSERT(reads_eof(fd));
    close(fd);

    /* 15 KiB of header fields and a 300-byte target, sent a few bytes at a time: answered. */
    n = sprintf(req, "GET /");
    memset(req + n, 'p', 300);
    n += 300;
    n += sprintf(req + n, " HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', 15 * 1024);
    n += 15 * 1024;
    n += sprintf(req + n, "\r\n\r\n");
    fd = client(t);
    for (int off = 0; off < n; off += 997)
        write_all(fd, req + off, (size_t)(n - off < 997 ? n - off : 997));
    expect_responses(fd, 1);
    close(fd);
    free(req);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_serve_destroy(t);
}

/* A pipelined pair (a POST with a body, then a HEAD) cut at every byte boundary, the pieces
 * sent apart: always the same two answers. */
static void test_http_every_split(void)
{
    zlb_serve_t *t = start_http(NULL);
    int fd = client(t);
    int one = 1;
    ASSERT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    const char reqs[] = "POST /p HTTP/1.1\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc"
                        "HEAD /h HTTP/1.1\r\n\r\n";
    char want[256];
    snprintf(want, sizeof(want), "%s%.*s", tgt_http_response, (int)tgt_http_response_len - 2,
             tgt_http_response);
    size_t len = sizeof(reqs) - 1;
    for (size_t cut = 1; cut < len; cut++) {
        write_all(fd, reqs, cut);
        usleep(1000);
        write_all(fd, reqs + cut, len - cut);
        expect_bytes(fd, want);
    }
    ASSERT(quiet_for(fd, 20));
    close(fd);
    zlb_serve_destroy(t);
}

/* Random bytes, some of them shaped like requests, on many connections: the server survives
 * (under ASan: touches nothing it should not), and answers a real request afterwards. */
static void test_http_random_input(void)
{
    zlb_serve_http_opts_t h = {.status = 200,
                               .body_size = 3,
                               .delay_ns = ZLB_NS_PER_MS,
                               .delay_max_ns = 3 * ZLB_NS_PER_MS};
    zlb_serve_t *t = start_http(&h);
    static const char *const pieces[] = {"GET / HTTP/1.1\r\n",
                                         "HEAD /x HTTP/1.0\r\n",
                                         "Content-Length: 3\r\n",
                                         "Connection: close\r\n",
                                         "Connection: keep-alive\r\n",
                                         "\r\n",
                                         "\n",
                                         ":",
                                         "Transfer-Encoding: chunked\r\n",
                                         " ",
                                         "abc"};
    uint64_t x = 0x2545f4914f6cdd1dull;
    char buf[2048];
    for (int conn = 0; conn < 200; conn++) {
        size_t len = 0;
        while (len < sizeof(buf) - 64) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (x % 3) {
                const char *p = pieces[(x >> 8) % ZLB_ARRAY_LEN(pieces)];
                memcpy(buf + len, p, strlen(p));
                len += strlen(p);
            } else {
                buf[len++] = (char)(x >> 16);
            }
        }
        int fd = client(t);
        /* the server may close early (garbage): a reset on the send is fine */
        (void)send(fd, buf, len, MSG_NOSIGNAL);
        if (conn % 2)
            shutdown(fd, SHUT_WR);
        close(fd);
    }
    int fd = client(t);
    const char get[] = "GET / HTTP/1.1\r\n\r\n";
    write_all(fd, get, sizeof(get) - 1);
    bool ka = false;
    read_http(fd, 1, false, 200, &ka);
    ASSERT(ka);
    close(fd);
    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).accepted, 201);
    zlb_serve_destroy(t);
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void test_two_threads(void)
{
    enum { N = 200 };
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2;
    zlb_serve_t *t = start(&o);
    int fds[N];

    for (int i = 0; i < N; i++)
        fds[i] = client(t);
    WAIT_FOR(stats(t).accepted == N, 5000);
    zlb_serve_thread_info_t a = info(t, 0), b = info(t, 1);
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
    zlb_serve_destroy(t);
}

/* One accept per wake-up: a burst must still be taken in full, through the posted task. */
static void test_accept_budget(void)
{
    enum { N = 100 };
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_tuning_t tune = {.accept_budget = 1};
    zlb_serve_t *t = NULL;
    int fds[N];

    ASSERT_EQ(zlb_serve_start_tuned(&o, &tune, &t), 0);
    /* Non-blocking connects in a burst, so that many arrive within one wake-up. */
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT(fds[i] >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(zlb_serve_port(t))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fds[i], (struct sockaddr *)&a, sizeof(a));
        ASSERT(rc == 0 || errno == EINPROGRESS);
    }
    WAIT_FOR(stats(t).accepted == N, 5000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_serve_destroy(t);
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
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_t *t = start(&o);
    int *fds = malloc(N * sizeof(*fds));

    raise_nofile(2 * N + 64);
    for (int i = 0; i < N; i++)
        fds[i] = client(t);
    WAIT_FOR(stats(t).accepted == N && stats(t).open == N, 10000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    WAIT_FOR(stats(t).open == 0, 10000);
    zlb_serve_stats_t s = stats(t);
    ASSERT_UEQ(s.accepted, N);
    ASSERT_UEQ(s.closed, N);
    ASSERT_UEQ(s.accept_errors, 0);
    free(fds);
    zlb_serve_destroy(t);
}

/* Runs in a child: the lowered fd limit and the fds it fills must not leak into the other
 * tests. */
static void emfile_child(void)
{
    enum { N = 64, ROOM = 8 };
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    zlb_serve_t *t = start(&o);
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
        connect_fd(fds[i], zlb_serve_port(t));
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
    zlb_serve_destroy(t);
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
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.accept_delay_ns = 20 * ZLB_NS_PER_MS;
    zlb_serve_t *t = start(&o);
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
    zlb_serve_destroy(t);
}

static void test_max_conns(void)
{
    enum { N = 10, CAP = 5 };
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2; /* the cap holds over all threads together */
    o.max_conns = CAP;
    zlb_serve_t *t = start(&o);
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
    zlb_serve_destroy(t);
}

/* Connections in every state at destroy: idle, backed up with output pending, mid-request.
 * The sanitizer builds check that nothing leaks or races; clients see their connection end. */
static void test_destroy_with_open_connections(void)
{
    enum { N = 30 };
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.threads = 2;
    zlb_serve_t *t = start(&o);
    zlb_serve_opts_t oh = opts_for(ZLB_SERVE_HTTP);
    zlb_serve_t *th = start(&oh);
    int fds[N], hfd;
    const size_t chunk = 256u << 10;
    char *buf = calloc(1, chunk);

    for (int i = 0; i < N; i++) {
        fds[i] = client(t);
        if (i % 3 == 0)
            ASSERT_EQ(fcntl(fds[i], F_SETFL, O_NONBLOCK), 0);
    }
    /* Back every third one up: send until none of them has taken a byte for 1 s, so the server
     * has stopped reading them, not merely lost its CPU for a moment (a 100 ms wait per socket
     * broke off early on a loaded host and the echo never blocked). */
    uint64_t took_at = zlb_now_ns();
    while (zlb_now_ns() - took_at < ZLB_NS_PER_SEC) {
        for (int i = 0; i < N; i += 3)
            while (send(fds[i], buf, chunk, MSG_NOSIGNAL) > 0)
                took_at = zlb_now_ns();
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < N; i += 3)
        ASSERT_EQ(fcntl(fds[i], F_SETFL, 0), 0);
    WAIT_FOR(info(t, 0).blocked + info(t, 1).blocked == (N + 2) / 3, 5000);
    hfd = client(th);
    write_all(hfd, "GET / HTTP/1.1\r\nHo", 18);
    WAIT_FOR(stats(th).bytes_in == 18, 5000);

    zlb_serve_destroy(t);
    zlb_serve_destroy(th);
    for (int i = 0; i < N; i++) {
        if (i % 3 != 0)
            ASSERT(reads_eof(fds[i]));
        close(fds[i]);
    }
    ASSERT(reads_eof(hfd));
    close(hfd);
    free(buf);
}

/* ---- TLS ---------------------------------------------------------------------------------- */

/* The clients below are plain OpenSSL, written here rather than taken from the tls module, so
 * the target is checked against an independent peer with verification on. */

#define TLS_CHUNK (16u << 10)
#define PATTERN_PERIOD 251 /* fill_pattern's */

static zlb_serve_t *start_tls(zlb_serve_mode_t mode, const zlb_serve_tuning_t *tune,
                              void (*edit)(zlb_serve_opts_t *o))
{
    zlb_serve_opts_t o = opts_for(mode);
    zlb_serve_t *t = NULL;

    o.tls = true;
    if (edit)
        edit(&o);
    ASSERT_EQ(zlb_serve_start_tuned(&o, tune, &t), 0);
    ASSERT(zlb_serve_ca_pem(t) != NULL);
    return t;
}

static const char *ssl_err_text(void)
{
    static char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "no OpenSSL error queued";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

static X509 *pem_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    ASSERT(bio != NULL);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!x)
        ZLB_TEST_FAIL("cannot parse the PEM: %s", ssl_err_text());
    return x;
}

/* A client context trusting only the target's CA, verification on, pinned to one protocol
 * version when version is not 0. */
static SSL_CTX *client_ctx(const zlb_serve_t *t, int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT(ctx != NULL);
    if (version) {
        ASSERT_EQ(SSL_CTX_set_min_proto_version(ctx, version), 1);
        ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, version), 1);
    }
    X509 *ca = pem_cert(zlb_serve_ca_pem(t));
    ASSERT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca), 1);
    X509_free(ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

typedef struct tcli {
    SSL *ssl;
    int fd;
    long verify; /* SSL_get_verify_result once the handshake has ended */
} tcli_t;

/* Connects (small socket buffers when bufsize is not 0) and runs a blocking handshake that
 * checks the peer is `host` (a name, an IP address, or NULL for no name check). True when
 * it completed; either way tcli_close follows. */
static bool tcli_open(tcli_t *c, SSL_CTX *ctx, const zlb_serve_t *t, const char *host,
                      SSL_SESSION *resume, int bufsize)
{
    unsigned char ip[16];

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(c->fd >= 0);
    if (bufsize) {
        ASSERT_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize)), 0);
        ASSERT_EQ(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize)), 0);
    }
    set_timeouts(c->fd);
    connect_fd(c->fd, zlb_serve_port(t));
    c->ssl = SSL_new(ctx);
    ASSERT(c->ssl != NULL);
    ASSERT_EQ(SSL_set_fd(c->ssl, c->fd), 1);
    if (host && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)) {
        ASSERT_EQ(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host), 1);
    } else if (host) {
        ASSERT_EQ(SSL_set_tlsext_host_name(c->ssl, host), 1);
        ASSERT_EQ(SSL_set1_host(c->ssl, host), 1);
    }
    if (resume)
        ASSERT_EQ(SSL_set_session(c->ssl, resume), 1);
    ERR_clear_error();
    int rc = SSL_connect(c->ssl);
    c->verify = SSL_get_verify_result(c->ssl);
    return rc == 1;
}

/* close_notify (not waiting for the answer), then close. */
static void tcli_close(tcli_t *c)
{
    if (c->ssl) {
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

/* The events that let a failed non-blocking call make progress; anything else fails. */
static short want_events(SSL *ssl, int rc, const char *what)
{
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return POLLIN;
    if (e == SSL_ERROR_WANT_WRITE)
        return POLLOUT;
    ZLB_TEST_FAIL("%s: SSL error %d (%s; errno %s)", what, e, ssl_err_text(), strerror(errno));
}

/* A byte stream sent through a non-blocking TLS client while what comes back is checked, both
 * ways at once, so neither side's buffers need to hold the whole of it. Both directions are
 * periodic (the echo pattern; a request and its response), so any offset is a pointer into a
 * buffer of one chunk plus one period, and a retried write sees the very same bytes. */
typedef struct stream {
    tcli_t *c;
    char *out, *in;               /* owned: periodic data, TLS_CHUNK + one period */
    size_t out_period, in_period; /* bytes */
    size_t send_to;               /* bytes to send in all */
    size_t sent;                  /* taken by SSL_write */
    size_t wlen;                  /* length of the write in progress, retried as is; 0: none */
    size_t expect;                /* bytes to receive in all */
    size_t got;                   /* received and checked */
    bool reading;
} stream_t;

static char *periodic(const char *unit, size_t period)
{
    char *buf = malloc(TLS_CHUNK + period);
    for (size_t i = 0; i < TLS_CHUNK + period; i++)
        buf[i] = unit[i % period];
    return buf;
}

/* Sends `n` copies of `out` (of out_len bytes) and expects `n` copies of `in` back. */
static stream_t *stream_new(tcli_t *c, const char *out, size_t out_len, const char *in,
                            size_t in_len, size_t n)
{
    stream_t *s = calloc(1, sizeof(*s));
    s->c = c;
    s->out = periodic(out, out_len);
    s->in = periodic(in, in_len);
    s->out_period = out_len;
    s->in_period = in_len;
    s->send_to = out_len * n;
    s->expect = in_len * n;
    s->reading = true;
    ASSERT_EQ(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    return s;
}

/* The echo of `len` bytes of fill_pattern. */
static stream_t *stream_echo(tcli_t *c, size_t len)
{
    char pat[PATTERN_PERIOD];
    fill_pattern(pat, sizeof(pat), 0);
    stream_t *s = stream_new(c, pat, sizeof(pat), pat, sizeof(pat), 1);
    s->send_to = s->expect = len;
    return s;
}

static void stream_free(stream_t *s)
{
    free(s->out);
    free(s->in);
    free(s);
}

/* Moves what the socket allows. False when nothing moved and then nothing happened for ms. */
static bool stream_step(stream_t *s, int ms)
{
    SSL *ssl = s->c->ssl;
    short ev = 0;
    bool moved = false;
    size_t n = 0;

    if (s->sent < s->send_to) {
        if (!s->wlen)
            s->wlen = ZLB_MIN(TLS_CHUNK, s->send_to - s->sent);
        ERR_clear_error();
        int rc = SSL_write_ex(ssl, s->out + s->sent % s->out_period, s->wlen, &n);
        if (rc == 1) {
            s->sent += n;
            s->wlen = 0;
            moved = true;
        } else {
            ev |= want_events(ssl, rc, "SSL_write");
        }
    }
    if (s->reading) {
        char buf[TLS_CHUNK];
        ERR_clear_error();
        int rc = SSL_read_ex(ssl, buf, sizeof(buf), &n);
        if (rc == 1) {
            if (s->got + n > s->expect)
                ZLB_TEST_FAIL("got %zu bytes back, expected %zu", s->got + n, s->expect);
            if (memcmp(buf, s->in + s->got % s->in_period, n) != 0)
                ZLB_TEST_FAIL("bytes received differ in [%zu, %zu)", s->got, s->got + n);
            s->got += n;
            moved = true;
        } else {
            ev |= want_events(ssl, rc, "SSL_read");
        }
    }
    if (moved)
        return true;
    struct pollfd p = {.fd = s->c->fd, .events = ev};
    int rc = poll(&p, 1, ms);
    ASSERT(rc >= 0);
    return rc > 0;
}

/* Sends without reading until the peer stops taking more (for 300 ms) or all is sent. */
static void stream_push(stream_t *s)
{
    s->reading = false;
    while (s->sent < s->send_to && stream_step(s, 300))
        ;
    s->reading = true;
}

static void stream_finish(stream_t *s)
{
    while (s->got < s->expect)
        if (!stream_step(s, IO_TIMEOUT_S * 1000))
            ZLB_TEST_FAIL("stalled: sent %zu of %zu, got %zu of %zu", s->sent, s->send_to, s->got,
                          s->expect);
    ASSERT_EQ(fcntl(s->c->fd, F_SETFL, 0), 0);
}

static void tls_roundtrip(tcli_t *c, size_t len)
{
    stream_t *s = stream_echo(c, len);
    stream_finish(s);
    stream_free(s);
}

/* Blocking: the next read ends the stream. True for the server's close_notify, false for a
 * TCP EOF or reset without it. */
static bool tls_reads_close_notify(tcli_t *c)
{
    char b;
    size_t n = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(c->ssl, &b, 1, &n);
    if (rc == 1)
        ZLB_TEST_FAIL("expected the end of the stream, got data");
    int e = SSL_get_error(c->ssl, rc);
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN;
}

/* True when no application data arrives for ms milliseconds (TLS 1.3 tickets do arrive after
 * the handshake: they are read and dropped here). */
static bool tls_quiet_for(tcli_t *c, int ms)
{
    uint64_t deadline = zlb_now_ns() + (uint64_t)ms * ZLB_NS_PER_MS;
    bool quiet = true;
    char b;
    size_t n = 0;

    ASSERT_EQ(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    for (;;) {
        ERR_clear_error();
        int rc = SSL_read_ex(c->ssl, &b, 1, &n);
        if (rc == 1) {
            quiet = false;
            break;
        }
        struct pollfd p = {.fd = c->fd, .events = want_events(c->ssl, rc, "SSL_read")};
        uint64_t now = zlb_now_ns();
        if (now >= deadline || poll(&p, 1, (int)((deadline - now) / ZLB_NS_PER_MS) + 1) == 0)
            break;
    }
    ASSERT_EQ(fcntl(c->fd, F_SETFL, 0), 0);
    return quiet;
}

/* Handshake and a one-byte echo: what a client needs to know it was served. */
static bool tls_served(SSL_CTX *ctx, const zlb_serve_t *t, const char *host, tcli_t *c)
{
    char b = 'x', r = 0;
    size_t n = 0;
    bool ok = tcli_open(c, ctx, t, host, NULL, 0) && SSL_write_ex(c->ssl, &b, 1, &n) == 1 &&
              SSL_read_ex(c->ssl, &r, 1, &n) == 1 && r == b;
    ERR_clear_error();
    return ok;
}

/* Reads whatever comes (a TLS alert, say) until the server closes; fails if it does not. */
static void drain_until_closed(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            ZLB_TEST_FAIL("read: %s (the server should have closed)", strerror(errno));
    }
}

static void test_tls_echo(void)
{
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    const size_t len = 256u << 10;

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, NULL);
        SSL_CTX *ctx = client_ctx(t, versions[v]);
        tcli_t c;

        if (!tcli_open(&c, ctx, t, "localhost", NULL, 0))
            ZLB_TEST_FAIL("%s handshake: %s (verify %ld)", zlb_tls_version_name(versions[v]),
                          ssl_err_text(), c.verify);
        ASSERT_EQ(SSL_version(c.ssl), versions[v]);
        ASSERT_EQ(c.verify, X509_V_OK);
        tls_roundtrip(&c, len);
        WAIT_FOR(stats(t).bytes_out == len, 5000);
        ASSERT_UEQ(stats(t).bytes_in, len);
        tcli_close(&c);

        /* The certificate also names the address. */
        if (!tcli_open(&c, ctx, t, "127.0.0.1", NULL, 0))
            ZLB_TEST_FAIL("handshake checking 127.0.0.1: %s (verify %ld)", ssl_err_text(),
                          c.verify);
        tls_roundtrip(&c, 1000);
        tcli_close(&c);

        WAIT_FOR(stats(t).open == 0, 5000);
        zlb_serve_stats_t s = stats(t);
        ASSERT_UEQ(s.tls_handshakes, 2);
        ASSERT_UEQ(s.tls_resumed, 0);
        ASSERT_UEQ(s.tls_failed, 0);
        ASSERT_UEQ(s.bytes_in, len + 1000);
        ASSERT_UEQ(s.bytes_out, len + 1000);
        SSL_CTX_free(ctx);
        zlb_serve_destroy(t);
    }
}

static void test_tls_resumption(void)
{
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, NULL);
        SSL_CTX *ctx = client_ctx(t, versions[v]);
        tcli_t c;

        ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 0));
        ASSERT_EQ(SSL_session_reused(c.ssl), 0);
        /* TLS 1.3 tickets come after the handshake: a round trip makes sure one was read. */
        tls_roundtrip(&c, 100);
        SSL_SESSION *sess = SSL_get1_session(c.ssl);
        ASSERT(sess != NULL);
        ASSERT_EQ(SSL_SESSION_is_resumable(sess), 1);
        tcli_close(&c);

        if (!tcli_open(&c, ctx, t, "localhost", sess, 0))
            ZLB_TEST_FAIL("resuming handshake: %s", ssl_err_text());
        if (SSL_session_reused(c.ssl) != 1)
            ZLB_TEST_FAIL("%s: the session was not resumed", zlb_tls_version_name(versions[v]));
        tls_roundtrip(&c, 100);
        tcli_close(&c);
        SSL_SESSION_free(sess);

        WAIT_FOR(stats(t).open == 0, 5000);
        ASSERT_UEQ(stats(t).tls_handshakes, 2);
        ASSERT_UEQ(stats(t).tls_resumed, 1);
        ASSERT_UEQ(stats(t).tls_failed, 0);
        SSL_CTX_free(ctx);
        zlb_serve_destroy(t);
    }
}

static void test_tls_not_tls(void)
{
    zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, NULL);
    const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

    /* A plain-TCP client talking HTTP: refused and closed, nothing echoed as data. */
    int fd = client(t);
    write_all(fd, req, sizeof(req) - 1);
    drain_until_closed(fd);
    close(fd);
    WAIT_FOR(stats(t).tls_failed == 1 && stats(t).open == 0, 5000);

    /* A client that leaves before its hello is a failed handshake too. */
    fd = client(t);
    WAIT_FOR(stats(t).accepted == 2, 5000);
    close(fd);
    WAIT_FOR(stats(t).tls_failed == 2 && stats(t).open == 0, 5000);

    /* ... and the target still serves TLS. */
    SSL_CTX *ctx = client_ctx(t, 0);
    tcli_t c;
    ASSERT(tls_served(ctx, t, "localhost", &c));
    tcli_close(&c);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_serve_stats_t s = stats(t);
    ASSERT_UEQ(s.tls_handshakes, 1);
    ASSERT_UEQ(s.tls_failed, 2);
    ASSERT_UEQ(s.bytes_in, 1);
    ASSERT_UEQ(info(t, 0).stats.tls_timeouts, 0);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

static void test_tls_handshake_timeout(void)
{
    zlb_serve_tuning_t tune = {.handshake_timeout_ns = 200 * ZLB_NS_PER_MS};
    zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, &tune, NULL);
    SSL_CTX *ctx = client_ctx(t, 0);
    tcli_t c;

    /* Established first: its timeout, had it not been stopped, would expire before the
     * others'. */
    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 0));
    tls_roundtrip(&c, 10);

    uint64_t t0 = zlb_now_ns();
    int silent = client(t);
    /* Half a record header: started, never finished. */
    int partial = client(t);
    write_all(partial, "\x16\x03\x01", 3);
    /* Closed at once by its failure. Its timer must go with it: nothing else is accepted
     * after it to reuse the slot, so a timer left armed would fire on a free slot. */
    int garbage = client(t);
    write_all(garbage, "GET / HTTP/1.0\r\n\r\n", 18);
    drain_until_closed(garbage);
    uint64_t garbage_closed = zlb_now_ns();
    ASSERT_UEQ(info(t, 0).stats.tls_timeouts, 0);

    drain_until_closed(silent);
    uint64_t took = zlb_now_ns() - t0;
    drain_until_closed(partial);
    ASSERT_CMP_UINT(took, >=, 190 * ZLB_NS_PER_MS);
    ASSERT_CMP_UINT(took, <, 3000 * ZLB_NS_PER_MS);
    WAIT_FOR(info(t, 0).stats.tls_timeouts == 2 && stats(t).open == 1, 5000);

    /* Past the garbage client's deadline (an absence can only be waited for), the established
     * connection still works and nothing else was closed or counted. */
    uint64_t now = zlb_now_ns(), until = garbage_closed + 300 * ZLB_NS_PER_MS;
    if (now < until)
        ASSERT(tls_quiet_for(&c, (int)((until - now) / ZLB_NS_PER_MS) + 1));
    tls_roundtrip(&c, 10);
    zlb_serve_stats_t st = stats(t);
    ASSERT_UEQ(st.open, 1);
    ASSERT_UEQ(st.closed, 3);
    ASSERT_UEQ(st.tls_failed, 3);
    ASSERT_UEQ(info(t, 0).stats.tls_timeouts, 2);
    ASSERT_UEQ(stats(t).tls_timeouts, 2); /* the totals carry them too */
    close(silent);
    close(partial);
    close(garbage);
    tcli_close(&c);
    WAIT_FOR(stats(t).open == 0, 5000);
    st = stats(t);
    ASSERT_UEQ(st.tls_handshakes, 1);
    ASSERT_UEQ(st.tls_failed, 3);
    ASSERT_UEQ(st.accepted, 4);
    ASSERT_UEQ(st.closed, 4);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

/* A fresh private directory for files a test writes. */
static void temp_dir(char *buf, size_t len)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/zlb-serve-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(buf))
        ZLB_TEST_FAIL("mkdtemp %s: %s", buf, strerror(errno));
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;
    ASSERT(d != NULL);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        ZLB_TEST_FAIL("open %s: %s", path, strerror(errno));
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    ASSERT(n > 0);
    fclose(f);
    return buf;
}

static const char *ca_out_path;
static void set_ca_out(zlb_serve_opts_t *o)
{
    o->ca_out_file = ca_out_path;
}

static void test_tls_ca_out_file(void)
{
    char dir[256], path[320], missing[320];
    zlb_serve_t *t;

    temp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    ca_out_path = path;
    t = start_tls(ZLB_SERVE_ECHO, NULL, set_ca_out);
    char *pem = slurp(path);
    ASSERT_STREQ(pem, zlb_serve_ca_pem(t));
    ASSERT_EQ(dir_entries(dir), 1); /* the temporary file was renamed, not left behind */
    X509 *ca = pem_cert(pem);
    ASSERT_EQ(X509_check_ca(ca), 1);
    X509_free(ca);

    /* The file is the trust anchor a client needs: verify with it alone. */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, path, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    tcli_t c;
    ASSERT(tls_served(ctx, t, "localhost", &c));
    tcli_close(&c);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
    free(pem);

    /* A file that cannot be written fails the start with the write's error. */
    snprintf(missing, sizeof(missing), "%s/no/such/dir/ca.pem", dir);
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.tls = true;
    o.ca_out_file = missing;
    t = (zlb_serve_t *)&o;
    ASSERT_EQ(zlb_serve_start(&o, &t), -ENOENT);
    ASSERT(t == NULL);

    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(rmdir(dir), 0);
}

static void require_client_cert(zlb_serve_opts_t *o)
{
    o->tls_require_client_cert = true;
}

static void test_tls_mtls(void)
{
    zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, require_client_cert);
    char dir[256], cert[320], key[320], other_cert[320], other_key[320];
    tcli_t c;

    temp_dir(dir, sizeof(dir));
    snprintf(cert, sizeof(cert), "%s/client.pem", dir);
    snprintf(key, sizeof(key), "%s/client.key", dir);
    snprintf(other_cert, sizeof(other_cert), "%s/other.pem", dir);
    snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
    ASSERT_EQ(zlb_serve_issue_client_cert(t, cert, key), 0);
    ASSERT_EQ(zlb_serve_issue_client_cert(t, NULL, key), -EINVAL);
    struct stat st;
    ASSERT_EQ(stat(key, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);

    /* A client certificate from some other issuer: self-signed, right names and usage. */
    zlb_tls_cert_opts_t co = {.client = true};
    zlb_tls_cert_t *other = NULL;
    ASSERT_EQ(zlb_tls_cert_issue(NULL, &co, &other), 0);
    ASSERT_EQ(zlb_tls_cert_write(other, other_cert, other_key), 0);
    zlb_tls_cert_destroy(other);

    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    uint64_t failed = 0, ok = 0;
    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        SSL_CTX *ctx = client_ctx(t, versions[v]);
        /* No certificate: refused (TLS 1.3 fails the client at its first read). */
        ASSERT(!tls_served(ctx, t, "localhost", &c));
        tcli_close(&c);
        failed++;
        WAIT_FOR(stats(t).tls_failed == failed && stats(t).open == 0, 5000);

        SSL_CTX *octx = client_ctx(t, versions[v]);
        ASSERT_EQ(SSL_CTX_use_certificate_file(octx, other_cert, SSL_FILETYPE_PEM), 1);
        ASSERT_EQ(SSL_CTX_use_PrivateKey_file(octx, other_key, SSL_FILETYPE_PEM), 1);
        ASSERT(!tls_served(octx, t, "localhost", &c));
        tcli_close(&c);
        failed++;
        WAIT_FOR(stats(t).tls_failed == failed && stats(t).open == 0, 5000);
        SSL_CTX_free(octx);

        ASSERT_EQ(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM), 1);
        ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
        if (!tls_served(ctx, t, "localhost", &c))
            ZLB_TEST_FAIL("%s with the issued certificate: %s", zlb_tls_version_name(versions[v]),
                          ssl_err_text());
        tls_roundtrip(&c, 64u << 10);
        tcli_close(&c);
        ok++;
        WAIT_FOR(stats(t).tls_handshakes == ok && stats(t).open == 0, 5000);
        SSL_CTX_free(ctx);
    }
    ASSERT_UEQ(stats(t).tls_failed, failed);
    zlb_serve_destroy(t);

    /* Without TLS there is no CA to issue from. */
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    t = start(&o);
    ASSERT_EQ(zlb_serve_issue_client_cert(t, cert, key), -EINVAL);
    zlb_serve_destroy(t);
    ASSERT_EQ(unlink(cert), 0);
    ASSERT_EQ(unlink(key), 0);
    ASSERT_EQ(unlink(other_cert), 0);
    ASSERT_EQ(unlink(other_key), 0);
    ASSERT_EQ(rmdir(dir), 0);
}

static zlb_serve_cert_kind_t cert_kind;
static void set_cert_kind(zlb_serve_opts_t *o)
{
    o->tls_cert_kind = cert_kind;
}

/* Each kind fails a verifying client for its own reason, and serves, to a client that does not
 * verify, a certificate that is what it claims. */
static void test_tls_cert_kinds(void)
{
    static const struct {
        zlb_serve_cert_kind_t kind;
        long verify; /* what a client checking "localhost" against the CA gets */
    } kinds[] = {
        {ZLB_SERVE_CERT_VALID, X509_V_OK},
        {ZLB_SERVE_CERT_EXPIRED, X509_V_ERR_CERT_HAS_EXPIRED},
        {ZLB_SERVE_CERT_WRONG_NAME, X509_V_ERR_HOSTNAME_MISMATCH},
        {ZLB_SERVE_CERT_SELF_SIGNED, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
    };

    for (size_t k = 0; k < ZLB_ARRAY_LEN(kinds); k++) {
        cert_kind = kinds[k].kind;
        zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, set_cert_kind);
        SSL_CTX *ctx = client_ctx(t, 0);
        tcli_t c;
        bool ok = tls_served(ctx, t, "localhost", &c);
        if (ok != (kinds[k].verify == X509_V_OK) || c.verify != kinds[k].verify)
            ZLB_TEST_FAIL("kind %d: served %d, verify result %ld, expected %ld", (int)cert_kind, ok,
                          c.verify, kinds[k].verify);
        tcli_close(&c);

        /* Look at what is served, without verifying. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        ASSERT(tls_served(ctx, t, NULL, &c));
        X509 *peer = SSL_get1_peer_certificate(c.ssl);
        ASSERT(peer != NULL);
        tcli_close(&c);
        X509 *ca = pem_cert(zlb_serve_ca_pem(t));
        /* By signature, not X509_check_issued: that one also wants keyCertSign on the issuer,
         * which a self-signed leaf rightly lacks. */
        bool by_ca = X509_verify(peer, X509_get0_pubkey(ca)) == 1 &&
                     X509_NAME_cmp(X509_get_issuer_name(peer), X509_get_subject_name(ca)) == 0;
        bool by_itself =
            X509_verify(peer, X509_get0_pubkey(peer)) == 1 &&
            X509_NAME_cmp(X509_get_issuer_name(peer), X509_get_subject_name(peer)) == 0;
        bool expired = X509_cmp_current_time(X509_get0_notAfter(peer)) < 0;
        bool localhost = X509_check_host(peer, "localhost", 0, 0, NULL) == 1 &&
                         X509_check_ip_asc(peer, "127.0.0.1", 0) == 1 &&
                         X509_check_ip_asc(peer, "::1", 0) == 1;
        bool wrong = X509_check_host(peer, "wrong.invalid", 0, 0, NULL) == 1;
        switch (cert_kind) {
        case ZLB_SERVE_CERT_VALID:
            ASSERT(by_ca && !by_itself && !expired && localhost && !wrong);
            break;
        case ZLB_SERVE_CERT_EXPIRED:
            ASSERT(by_ca && expired && localhost);
            /* Well expired, and it was valid once (not a not-yet-valid certificate). */
            ASSERT(X509_cmp_time(X509_get0_notAfter(peer), &(time_t){time(NULL) - 3600}) < 0);
            ASSERT(X509_cmp_current_time(X509_get0_notBefore(peer)) < 0);
            break;
        case ZLB_SERVE_CERT_WRONG_NAME:
            ASSERT(by_ca && !expired && wrong);
            ASSERT_EQ(X509_check_host(peer, "localhost", 0, 0, NULL), 0);
            ASSERT_EQ(X509_check_ip_asc(peer, "127.0.0.1", 0), 0);
            break;
        case ZLB_SERVE_CERT_SELF_SIGNED:
            ASSERT(by_itself && !by_ca && !expired && localhost);
            break;
        }
        X509_free(ca);
        X509_free(peer);

        if (cert_kind == ZLB_SERVE_CERT_WRONG_NAME) {
            /* The chain itself is fine: only the name is wrong. */
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
            ASSERT(tls_served(ctx, t, "wrong.invalid", &c));
            tcli_close(&c);
        }
        /* Refused by the verifying client (its alert ends the server's handshake). */
        uint64_t want_failed = kinds[k].verify == X509_V_OK ? 0 : 1;
        WAIT_FOR(stats(t).open == 0 && stats(t).tls_failed == want_failed, 5000);
        SSL_CTX_free(ctx);
        zlb_serve_destroy(t);
    }
}

static int pin_version;
static void pin_versions(zlb_serve_opts_t *o)
{
    o->tls_min_version = o->tls_max_version = pin_version;
}

static void test_tls_versions(void)
{
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        pin_version = versions[v];
        zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, pin_versions);
        int other = versions[v] == TLS1_3_VERSION ? TLS1_2_VERSION : TLS1_3_VERSION;
        tcli_t c;

        SSL_CTX *ctx = client_ctx(t, other);
        ASSERT(!tls_served(ctx, t, "localhost", &c));
        tcli_close(&c);
        SSL_CTX_free(ctx);
        WAIT_FOR(stats(t).tls_failed == 1 && stats(t).open == 0, 5000);

        ctx = client_ctx(t, 0); /* offers both: gets the pinned one */
        ASSERT(tls_served(ctx, t, "localhost", &c));
        ASSERT_EQ(SSL_version(c.ssl), versions[v]);
        tcli_close(&c);
        SSL_CTX_free(ctx);
        WAIT_FOR(stats(t).tls_handshakes == 1 && stats(t).open == 0, 5000);
        zlb_serve_destroy(t);
    }
}

static void tls_write_all(tcli_t *c, const void *buf, size_t len)
{
    size_t n = 0;
    if (SSL_write_ex(c->ssl, buf, len, &n) != 1 || n != len)
        ZLB_TEST_FAIL("SSL_write: %s", ssl_err_text());
}

static void tls_read_exact(tcli_t *c, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        size_t n = 0;
        if (SSL_read_ex(c->ssl, p, len, &n) != 1)
            ZLB_TEST_FAIL("SSL_read with %zu bytes missing: %s", len, ssl_err_text());
        p += n;
        len -= n;
    }
}

static void test_tls_http(void)
{
    zlb_serve_t *t = start_tls(ZLB_SERVE_HTTP, NULL, NULL);
    SSL_CTX *ctx = client_ctx(t, 0);
    const size_t rlen = tgt_http_response_len, clen = strlen(resp_close);
    char *buf = malloc(rlen * 3);
    tcli_t c;

    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 0));
    const char two[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                       "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    tls_write_all(&c, two, sizeof(two) - 1);
    tls_read_exact(&c, buf, rlen * 2);
    ASSERT(memcmp(buf, tgt_http_response, rlen) == 0);
    ASSERT(memcmp(buf + rlen, tgt_http_response, rlen) == 0);

    /* Connection: close gets its response, then close_notify rather than a bare TCP close. */
    const char bye[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    tls_write_all(&c, bye, sizeof(bye) - 1);
    tls_read_exact(&c, buf, clen);
    ASSERT(memcmp(buf, resp_close, clen) == 0);
    ASSERT(tls_reads_close_notify(&c));
    tcli_close(&c);

    /* Many pipelined requests whose responses back up behind a small receive buffer: the
     * server stops reading, and its TLS writes hit WANT_WRITE and are retried later. */
    enum { N = 100000 };
    const char req[] = "GET / HTTP/1.1\r\n\r\n";
    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 32 << 10));
    stream_t *s = stream_new(&c, req, sizeof(req) - 1, tgt_http_response, rlen, N);
    stream_push(s);
    WAIT_FOR(info(t, 0).blocked == 1, 5000);
    stream_finish(s);
    WAIT_FOR(info(t, 0).blocked == 0, 5000);
    stream_free(s);
    tcli_close(&c);

    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).bytes_out, rlen * (2 + N) + clen);
    ASSERT_UEQ(stats(t).tls_handshakes, 2);
    free(buf);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

static void test_tls_sink(void)
{
    const size_t len = (1u << 20) + 777;
    zlb_serve_t *t = start_tls(ZLB_SERVE_SINK, NULL, NULL);
    SSL_CTX *ctx = client_ctx(t, 0);
    char *buf = malloc(len);
    tcli_t c;

    fill_pattern(buf, len, 3);
    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 0));
    tls_write_all(&c, buf, len);
    WAIT_FOR(stats(t).bytes_in == len, 5000);
    ASSERT(tls_quiet_for(&c, 50));
    ASSERT_UEQ(stats(t).bytes_out, 0);
    tcli_close(&c);
    WAIT_FOR(stats(t).open == 0, 5000);
    free(buf);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

/* As test_echo_backpressure, through TLS: the server's echo writes hit WANT_WRITE, it stops
 * reading, holds at most one read's worth, and finishes once the client reads. */
static void test_tls_echo_backpressure(void)
{
    zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, NULL);
    SSL_CTX *ctx = client_ctx(t, 0);
    tcli_t c;

    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 64 << 10));
    stream_t *s = stream_echo(&c, 64u << 20);
    stream_push(s);
    if (s->sent >= s->send_to)
        ZLB_TEST_FAIL("sent %zu bytes without the server pushing back", s->sent);
    WAIT_FOR(info(t, 0).blocked == 1, 5000);
    zlb_serve_stats_t st = stats(t);
    ASSERT_CMP_UINT(st.bytes_in - st.bytes_out, <=, ZLB_TARGET_READ_BUF);
    ASSERT_CMP_UINT(st.bytes_in, <, s->sent);

    s->send_to = s->expect = s->sent + s->wlen; /* finish the write in progress, no other */
    stream_finish(s);
    /* The last bytes can reach the client before the server has counted them. */
    WAIT_FOR(stats(t).bytes_out == s->send_to, 5000);
    WAIT_FOR(info(t, 0).blocked == 0, 5000);
    tcli_close(&c);
    WAIT_FOR(stats(t).open == 0, 5000);
    stream_free(s);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

/* A TLS 1.3 KeyUpdate that asks for one back makes the server write inside its read. The
 * client sends one before every byte and reads nothing, until the server's socket is full: its
 * read then needs EPOLLOUT to go on, and must get it once the client reads (edge-triggered:
 * no readable edge will come, since the client sends nothing more). */
static void test_tls_read_wants_write(void)
{
    /* Small buffers on both sides, so a few hundred key updates fill them. */
    zlb_serve_tuning_t tune = {.sndbuf = 4096};
    zlb_serve_t *t = start_tls(ZLB_SERVE_SINK, &tune, NULL);
    SSL_CTX *ctx = client_ctx(t, TLS1_3_VERSION);
    size_t sent = 0, n = 0;
    bool pending = false, stalled = false;
    tcli_t c;

    ASSERT(tcli_open(&c, ctx, t, "localhost", NULL, 4096));
    ASSERT_EQ(fcntl(c.fd, F_SETFL, O_NONBLOCK), 0);
    while (sent < 1000000) {
        if (!pending)
            ASSERT_EQ(SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
        ERR_clear_error();
        int rc = SSL_write_ex(c.ssl, "k", 1, &n);
        if (rc == 1) {
            sent++;
            pending = false;
            continue;
        }
        pending = true; /* retried as is, without another key update */
        struct pollfd p = {.fd = c.fd, .events = want_events(c.ssl, rc, "SSL_write")};
        if (poll(&p, 1, 300) == 0) {
            stalled = true;
            break;
        }
    }
    if (!stalled)
        ZLB_TEST_FAIL("sent %zu key updates without the server pushing back", sent);
    /* The server stopped reading: its key update could not go out. */
    ASSERT_CMP_UINT(stats(t).bytes_in, <, sent);

    /* Drain the socket raw and finish the write in progress. Not SSL_read: with a key update
     * of its own still queued, OpenSSL's read would first want to write it, which cannot go
     * until the server reads, which it cannot until this client reads. Nothing is read
     * through the SSL after this; what is skipped holds only the server's key updates. */
    uint64_t deadline = zlb_now_ns() + 10 * ZLB_NS_PER_SEC;
    while (pending || stats(t).bytes_in < sent) {
        short ev = POLLIN;
        char buf[4096];
        if (pending) {
            ERR_clear_error();
            int rc = SSL_write_ex(c.ssl, "k", 1, &n);
            if (rc == 1) {
                sent++;
                pending = false;
            } else {
                ev |= want_events(c.ssl, rc, "SSL_write");
            }
        }
        while (read(c.fd, buf, sizeof(buf)) > 0)
            ;
        if (zlb_now_ns() > deadline)
            ZLB_TEST_FAIL("the server read %" PRIu64 " of %zu bytes", stats(t).bytes_in, sent);
        struct pollfd p = {.fd = c.fd, .events = ev};
        poll(&p, 1, 10);
    }
    ASSERT_UEQ(stats(t).bytes_in, sent);
    tcli_close(&c);
    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).tls_failed, 0);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

static void test_tls_threads(void)
{
    enum { N = 40 };
    zlb_serve_t *t = NULL;
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_ECHO);
    o.tls = true;
    o.threads = 2;
    ASSERT_EQ(zlb_serve_start(&o, &t), 0);
    SSL_CTX *ctx = client_ctx(t, 0);
    tcli_t c[N];

    for (int i = 0; i < N; i++)
        ASSERT(tls_served(ctx, t, "localhost", &c[i]));
    WAIT_FOR(stats(t).tls_handshakes == N, 5000);
    ASSERT_CMP_UINT(info(t, 0).stats.tls_handshakes, >, 0);
    ASSERT_CMP_UINT(info(t, 1).stats.tls_handshakes, >, 0);
    for (int i = 0; i < N; i++)
        tcli_close(&c[i]);
    WAIT_FOR(stats(t).open == 0, 5000);
    ASSERT_UEQ(stats(t).tls_failed, 0);
    SSL_CTX_free(ctx);
    zlb_serve_destroy(t);
}

/* Destroy with connections mid-handshake, idle, and backed up: established ones get a
 * close_notify; the sanitizer builds check that no SSL leaks. */
static void test_tls_destroy_with_open_connections(void)
{
    zlb_serve_t *t = start_tls(ZLB_SERVE_ECHO, NULL, NULL);
    SSL_CTX *ctx = client_ctx(t, 0);
    tcli_t idle, busy;

    int silent = client(t);
    ASSERT(tls_served(ctx, t, "localhost", &idle));
    ASSERT(tcli_open(&busy, ctx, t, "localhost", NULL, 64 << 10));
    stream_t *s = stream_echo(&busy, 64u << 20);
    stream_push(s);
    WAIT_FOR(info(t, 0).blocked == 1 && stats(t).open == 3, 5000);

    zlb_serve_destroy(t);
    ASSERT(tls_reads_close_notify(&idle));
    drain_until_closed(silent);
    close(silent);
    tcli_close(&idle);
    tcli_close(&busy);
    stream_free(s);
    SSL_CTX_free(ctx);
}

/* ---- redis mode ----------------------------------------------------------------------------- */

/* A pipelined mix (RESP PING, inline PING, lower case, an unknown command, PING with an
 * argument, an empty line, an empty array) cut at every byte boundary and sent in two pieces,
 * then byte by byte: always the same answers, in order. */
static void test_redis_every_split(void)
{
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_REDIS);
    zlb_serve_t *t = start(&o);
    int fd = client(t);
    int one = 1;
    ASSERT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    static const char reqs[] = "*1\r\n$4\r\nPING\r\n"
                               "PING\r\n"
                               "*1\r\n$4\r\nping\r\n"
                               "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                               "\r\n"
                               "*0\r\n"
                               "*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n"
                               "ping\n"
                               "PING x\r\n"
                               "*1\r\n$0\r\n\r\n"
                               "*1\r\n$4\r\nPING\r\n";
    static const char want[] = "+PONG\r\n+PONG\r\n+PONG\r\n-ERR unknown command\r\n"
                               "-ERR unknown command\r\n+PONG\r\n-ERR unknown command\r\n"
                               "-ERR unknown command\r\n+PONG\r\n";
    size_t len = sizeof(reqs) - 1;
    for (size_t cut = 0; cut < len; cut++) {
        write_all(fd, reqs, cut);
        if (cut)
            usleep(300);
        write_all(fd, reqs + cut, len - cut);
        expect_bytes(fd, want);
    }
    for (size_t i = 0; i < len; i++) {
        write_all(fd, reqs + i, 1);
        if (i % 7 == 0)
            usleep(100);
    }
    expect_bytes(fd, want);
    ASSERT(quiet_for(fd, 20));
    close(fd);
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_serve_destroy(t);
}

/* 20,000 PINGs written at once: every one answered, in order, with nothing lost while the
 * client does not read (the replies wait in the connection's stash). */
static void test_redis_pipelined_bulk(void)
{
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_REDIS);
    zlb_serve_t *t = start(&o);
    int fd = client(t);
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    enum { N = 20000 };
    size_t len = (sizeof(ping) - 1) * N;
    char *req = malloc(len), *got = malloc(7 * N);
    for (size_t i = 0; i < N; i++)
        memcpy(req + i * (sizeof(ping) - 1), ping, sizeof(ping) - 1);
    write_all(fd, req, len);
    read_exact(fd, got, 7 * N);
    for (size_t i = 0; i < N; i++)
        if (memcmp(got + 7 * i, "+PONG\r\n", 7) != 0)
            ZLB_TEST_FAIL("reply %zu of %d: \"%.7s\"", i, N, got + 7 * i);
    ASSERT(quiet_for(fd, 20));
    zlb_serve_stats_t st = stats(t);
    fprintf(stderr, "   redis: %d pipelined PINGs, %llu bytes in, %llu out\n", N,
            (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
    ASSERT_UEQ(st.bytes_in, len);
    ASSERT_UEQ(st.bytes_out, 7 * N);
    close(fd);
    free(req);
    free(got);
    zlb_serve_destroy(t);
}

/* What RESP cannot parse gets "-ERR Protocol error" and the close, as from redis-server. */
static void test_redis_protocol_error(void)
{
    zlb_serve_opts_t o = opts_for(ZLB_SERVE_REDIS);
    zlb_serve_t *t = start(&o);
    const char *bad[] = {"*x\r\n", "*1\r\n:4\r\n", "*1\r\n$4\r\nPINGxx", "*1\r\n$z\r\n", "*1\rX"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        int fd = client(t);
        write_all(fd, "PING\r\n", 6);
        write_all(fd, bad[i], strlen(bad[i]));
        expect_bytes(fd, "+PONG\r\n-ERR Protocol error\r\n");
        if (!reads_eof(fd))
            ZLB_TEST_FAIL("not closed after the protocol error in case %zu", i);
        close(fd);
    }
    WAIT_FOR(stats(t).open == 0, 5000);
    zlb_serve_destroy(t);
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
    RUN(test_http_options);
    RUN(test_http_head_pipelined);
    RUN(test_http_delay);
    RUN(test_http_garbage);
    RUN(test_http_every_split);
    RUN(test_http_random_input);
    RUN(test_redis_every_split);
    RUN(test_redis_pipelined_bulk);
    RUN(test_redis_protocol_error);
    RUN(test_accept_budget);
    RUN(test_two_threads);
    RUN(test_thousand);
    RUN(test_accept_delay);
    RUN(test_max_conns);
    RUN(test_destroy_with_open_connections);
    RUN(test_tls_echo);
    RUN(test_tls_resumption);
    RUN(test_tls_not_tls);
    RUN(test_tls_handshake_timeout);
    RUN(test_tls_ca_out_file);
    RUN(test_tls_mtls);
    RUN(test_tls_cert_kinds);
    RUN(test_tls_versions);
    RUN(test_tls_http);
    RUN(test_tls_sink);
    RUN(test_tls_echo_backpressure);
    RUN(test_tls_read_wants_write);
    RUN(test_tls_threads);
    RUN(test_tls_destroy_with_open_connections);
    fprintf(stderr, "all target tests passed\n");
    return TEST_EXIT_CODE();
}
