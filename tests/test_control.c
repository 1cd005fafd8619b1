/* test_control.c -- the control port over real sockets: routing, auth, publishing, shutdown. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "control/control.h"
#include "control/control_internal.h"
#include "core/core.h"
#include "test.h"

#define IO_TIMEOUT_S 5
#define POLL_LIMIT_NS (5 * ZLB_NS_PER_SEC)

static char tmpdir[256];

/* ---- a minimal HTTP/1.1 client -------------------------------------------------------------- */

typedef struct resp {
    int status;
    char head[8192]; /* status line and headers, NUL-terminated */
    char *body;      /* malloc'd, NUL-terminated */
    size_t body_len;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Connects to the control port; a wildcard bind is reached through loopback. */
static int connect_to(const zlb_control_t *c)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool loopback;
    ASSERT_EQ(zlb_control_parse_listen(zlb_control_address(c), &ss, &len, &loopback), 0);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0)
        ZLB_TEST_FAIL("connect %s: %s", zlb_control_address(c), strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ZLB_TEST_FAIL("send: %s", strerror(errno));
        s += n;
        len -= (size_t)n;
    }
}

static bool header_value(const resp_t *r, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            size_t vlen = end ? (size_t)(end - v) : strlen(v);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = strstr(p, "\r\n");
    }
    return false;
}

/* Reads exactly one response (headers, then Content-Length bytes unless it answers a HEAD), so
 * the connection can be reused. Returns -1 when the peer closed before a full response. */
static int read_response(int fd, bool head_request, resp_t *r)
{
    size_t cap = 16384, len = 0;
    size_t hlen = 0; /* bytes up to and including the blank line, once seen */
    char *buf = malloc(cap);
    ASSERT(buf);
    memset(r, 0, sizeof(*r));
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ASSERT(buf);
        }
        if (!hlen) {
            buf[len] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                hlen = (size_t)(end - buf) + 4;
                ASSERT_LT(hlen - 2, sizeof(r->head));
                memcpy(r->head, buf, hlen - 2);
                r->head[hlen - 2] = '\0';
                ASSERT_EQ(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
            }
        }
        if (hlen) {
            char cl[32];
            size_t want = 0;
            if (!head_request && header_value(r, "Content-Length", cl, sizeof(cl)))
                want = strtoull(cl, NULL, 10);
            size_t have = len - hlen;
            if (have >= want) {
                ASSERT_UEQ(have, want); /* one response at a time: nothing may follow */
                r->body = malloc(want + 1);
                ASSERT(r->body);
                memcpy(r->body, buf + hlen, want);
                r->body[want] = '\0';
                r->body_len = want;
                free(buf);
                return 0;
            }
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            ZLB_TEST_FAIL("response timed out after %d s", IO_TIMEOUT_S);
        if (n <= 0) {
            free(buf);
            return -1;
        }
        len += (size_t)n;
    }
}

/* One request on a fresh connection, answered in full. */
static void http(const zlb_control_t *c, const char *raw, resp_t *r)
{
    int fd = connect_to(c);
    send_all(fd, raw, strlen(raw));
    if (read_response(fd, strncmp(raw, "HEAD ", 5) == 0, r) < 0)
        ZLB_TEST_FAIL("connection closed before a full response to: %.40s", raw);
    close(fd);
}

static void http_simple(const zlb_control_t *c, const char *method, const char *path,
                        const char *extra_headers, resp_t *r)
{
    char raw[1024];
    snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n",
             method, path, extra_headers ? extra_headers : "");
    http(c, raw, r);
}

/* Every response, whatever its status, must say what it is and that it is not cacheable. */
static void assert_common_headers(const resp_t *r)
{
    char v[256];
    ASSERT(header_value(r, "Content-Type", v, sizeof(v)));
    ASSERT(header_value(r, "Cache-Control", v, sizeof(v)));
    ASSERT_STREQ(v, "no-store");
}

static void assert_header(const resp_t *r, const char *name, const char *want)
{
    char v[256];
    if (!header_value(r, name, v, sizeof(v)))
        ZLB_TEST_FAIL("no %s header in:\n%s", name, r->head);
    ASSERT_STREQ(v, want);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    ASSERT(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void wait_requests(const zlb_control_t *c, unsigned long n)
{
    uint64_t deadline = zlb_now_ns() + POLL_LIMIT_NS;
    while (zlb_control_requests(c) < n) {
        if (zlb_now_ns() > deadline)
            ZLB_TEST_FAIL("requests: %lu, waited for %lu", zlb_control_requests(c), n);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- stop callback ------------------------------------------------------------------------ */

typedef struct stop_probe {
    atomic_int calls;
    atomic_bool signals_blocked; /* SIGINT and SIGTERM blocked on the calling thread */
    atomic_bool client_loopback; /* the client handed over was "127.0.0.1:PORT" */
} stop_probe_t;

static void on_stop(void *arg, const char *client)
{
    stop_probe_t *p = arg;
    atomic_store(&p->client_loopback,
                 client && strncmp(client, "127.0.0.1:", 10) == 0 && atoi(client + 10) > 0);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    atomic_store(&p->signals_blocked,
                 sigismember(&cur, SIGINT) == 1 && sigismember(&cur, SIGTERM) == 1);
    atomic_fetch_add(&p->calls, 1);
}

static zlb_control_t *start_ok(const char *listen, const char *token, const char *address_file,
                               stop_probe_t *probe)
{
    zlb_control_opts_t opts = {.listen = listen,
                               .token = token,
                               .address_file = address_file,
                               .on_stop = on_stop,
                               .arg = probe};
    zlb_control_t *c = NULL;
    char err[512] = "";
    int rc = zlb_control_start(&opts, &c, err, sizeof(err));
    if (rc != 0)
        ZLB_TEST_FAIL("zlb_control_start(%s): %d %s", listen, rc, err);
    ASSERT(c);
    return c;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_parse_listen(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool lo;
    char buf[ZLB_CONTROL_ADDR_MAX];

    ASSERT_EQ(zlb_control_parse_listen("127.0.0.1:8089", &ss, &len, &lo), 0);
    ASSERT(lo);
    zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
    ASSERT_STREQ(buf, "127.0.0.1:8089");
    ASSERT_EQ(zlb_control_parse_listen("127.3.4.5:0", &ss, &len, &lo), 0);
    ASSERT(lo);
    ASSERT_EQ(zlb_control_parse_listen("localhost:80", &ss, &len, &lo), 0);
    ASSERT(lo);
    ASSERT_EQ(zlb_control_parse_listen("[::1]:0", &ss, &len, &lo), 0);
    ASSERT(lo);
    ASSERT_EQ(ss.ss_family, AF_INET6);
    zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
    ASSERT_STREQ(buf, "[::1]:0");
    ASSERT_EQ(zlb_control_parse_listen("[::ffff:127.0.0.1]:1", &ss, &len, &lo), 0);
    ASSERT(lo);
    ASSERT_EQ(zlb_control_parse_listen("0.0.0.0:8089", &ss, &len, &lo), 0);
    ASSERT(!lo);
    ASSERT_EQ(zlb_control_parse_listen("[::]:8089", &ss, &len, &lo), 0);
    ASSERT(!lo);
    ASSERT_EQ(zlb_control_parse_listen("10.1.2.3:65535", &ss, &len, &lo), 0);
    ASSERT(!lo);

    const char *bad[] = {"",          "8089",           ":8089",      "127.0.0.1",   "127.0.0.1:",
                         "1.2.3.4:x", "1.2.3.4:65536",  "::1:8089",   "[::1]8089",   "[::1]:",
                         "[]:1",      "example.com:80", "1.2.3.4:-1", "1.2.3.4: 80", "[::1:80"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        if (zlb_control_parse_listen(bad[i], &ss, &len, &lo) != -EINVAL)
            ZLB_TEST_FAIL("\"%s\" was accepted", bad[i]);
    }
}

static void test_token_helpers(void)
{
    ASSERT(zlb_control_token_equal("abc", 3, "abc", 3));
    ASSERT(!zlb_control_token_equal("abc", 3, "abd", 3));
    ASSERT(!zlb_control_token_equal("abc", 3, "ab", 2));
    ASSERT(!zlb_control_token_equal("abc", 3, "abcd", 4));
    ASSERT(!zlb_control_token_equal("abc", 3, "", 0));
    /* a NUL pad must not make a prefix match */
    ASSERT(!zlb_control_token_equal("ab\0", 3, "ab", 2));
    ASSERT(zlb_control_token_valid("Zm9v-bar_~+/=", 13));
    ASSERT(!zlb_control_token_valid("", 0));
    ASSERT(!zlb_control_token_valid("a b", 3));
    ASSERT(!zlb_control_token_valid("a\tb", 3));
    ASSERT(!zlb_control_token_valid("\xc3\xa9", 2));
}

static void test_routes(void)
{
    char addr_file[512];
    stop_probe_t probe = {0};
    resp_t r;
    snprintf(addr_file, sizeof(addr_file), "%s/control.addr", tmpdir);

    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, addr_file, &probe);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    ASSERT_EQ(sigismember(&before, SIGINT), sigismember(&after, SIGINT)); /* mask restored */
    ASSERT_EQ(sigismember(&after, SIGINT), 0);

    /* The address file holds the kernel-chosen port, never port 0. */
    const char *addr = zlb_control_address(c);
    ASSERT(strncmp(addr, "127.0.0.1:", 10) == 0);
    ASSERT(strcmp(addr, "127.0.0.1:0") != 0);
    char filebuf[128] = "";
    FILE *f = fopen(addr_file, "r");
    ASSERT(f);
    ASSERT(fgets(filebuf, sizeof(filebuf), f));
    fclose(f);
    char want_line[128];
    snprintf(want_line, sizeof(want_line), "%s\n", addr);
    ASSERT_STREQ(filebuf, want_line);

    /* Never published: 404 like any unknown path. */
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 404);
    resp_free(&r);

    const char *doc1 = "{\"run\":1,\"connections\":10}";
    zlb_control_publish(c, "/stats", 200, "application/json", doc1, strlen(doc1));
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, doc1);
    assert_header(&r, "Content-Type", "application/json");
    assert_common_headers(&r);
    resp_free(&r);

    /* The query string is not part of the route. */
    http_simple(c, "GET", "/stats?pretty=1", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, doc1);
    resp_free(&r);

    /* HEAD: same headers, no body. */
    http_simple(c, "HEAD", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_UEQ(r.body_len, 0);
    char cl[32];
    ASSERT(header_value(&r, "Content-Length", cl, sizeof(cl)));
    ASSERT_UEQ(strtoull(cl, NULL, 10), strlen(doc1));
    resp_free(&r);

    const char *doc2 = "{\"run\":1,\"connections\":20000}";
    zlb_control_publish(c, "/stats", 200, "application/json", doc2, strlen(doc2));
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_STREQ(r.body, doc2);
    resp_free(&r);

    /* Status and type travel with the document. */
    const char *metrics = "# TYPE zlb_up gauge\nzlb_up 1\n";
    const char *prom = "text/plain; version=0.0.4; charset=utf-8";
    zlb_control_publish(c, "/metrics", 200, prom, metrics, strlen(metrics));
    zlb_control_publish(c, "/health", 503, "application/json", "{\"ok\":false}", 12);
    http_simple(c, "GET", "/metrics", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, metrics);
    assert_header(&r, "Content-Type", prom);
    resp_free(&r);
    http_simple(c, "GET", "/health", NULL, &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STREQ(r.body, "{\"ok\":false}");
    resp_free(&r);
    zlb_control_publish(c, "/empty", 200, "application/json", "", 0);
    http_simple(c, "GET", "/empty", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_UEQ(r.body_len, 0);
    resp_free(&r);

    http_simple(c, "GET", "/nope", NULL, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STREQ(r.body, "{\"error\":\"not found\",\"path\":\"/nope\"}");
    assert_header(&r, "Content-Type", "application/json");
    assert_common_headers(&r);
    resp_free(&r);
    /* A decoded path with quotes and raw bytes still yields valid JSON. */
    http_simple(c, "GET", "/a%22b%5c%ff", NULL, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STREQ(r.body, "{\"error\":\"not found\",\"path\":\"/a\\\"b\\\\\\ufffd\"}");
    resp_free(&r);
    /* Control bytes, raw or escaped, are refused before routing: "/stats%00" decodes to
     * "/stats" and used to be served. */
    const char *dirty[] = {"/stats%00", "/stats%0a", "/stats%0D%0Ax:y", "/st%7fats",
                           "/stats?a=%01"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(dirty); i++) {
        http_simple(c, "GET", dirty[i], NULL, &r);
        if (r.status != 400)
            ZLB_TEST_FAIL("GET %s: %d, expected 400", dirty[i], r.status);
        assert_common_headers(&r);
        resp_free(&r);
    }

    http_simple(c, "POST", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 405);
    assert_header(&r, "Allow", "GET, HEAD");
    assert_common_headers(&r);
    resp_free(&r);
    http_simple(c, "DELETE", "/metrics", NULL, &r);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    http_simple(c, "GET", "/stop", NULL, &r);
    ASSERT_EQ(r.status, 405);
    assert_header(&r, "Allow", "POST");
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 0);

    /* Bodies are refused, and the refused request changes nothing. */
    http(c,
         "POST /stop HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: "
         "5\r\n\r\n"
         "hello",
         &r);
    ASSERT_EQ(r.status, 413);
    assert_common_headers(&r);
    resp_free(&r);
    http(c,
         "POST /stop HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n",
         &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    http(c, "GET /stats HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc", &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 0);

    /* An explicit empty body is no body. */
    http(c,
         "POST /stop HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
         "Content-Type: application/json\r\n\r\n",
         &r);
    ASSERT_EQ(r.status, 202);
    ASSERT_STREQ(r.body, "{\"stopping\":true}");
    assert_common_headers(&r);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 1);
    ASSERT(atomic_load(&probe.signals_blocked));
    ASSERT(atomic_load(&probe.client_loopback)); /* the run's stop event names who asked */
    http_simple(c, "POST", "/stop", "X-Zlbench-Request: 1\r\n", &r);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 2);

    /* Each answer is counted when queued, before the client can see it: all 23 are in. */
    ASSERT_UEQ(zlb_control_requests(c), 23);
    zlb_control_destroy(c);
    unlink(addr_file);
}

static void test_token_auth(void)
{
    stop_probe_t probe = {0};
    resp_t r;
    zlb_control_t *c = start_ok("127.0.0.1:0", "s3cret-Tok3n", NULL, &probe);
    zlb_control_publish(c, "/stats", 200, "application/json", "{}", 2);

    /* On loopback, reads stay open. */
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);

    const char *wrong[] = {NULL,
                           "Authorization: Bearer nope\r\n",
                           "Authorization: Bearer s3cret-Tok3\r\n",
                           "Authorization: Bearer s3cret-Tok3nn\r\n",
                           "Authorization: Basic czNjcmV0LVRvazNu\r\n",
                           "Authorization: Bearers3cret-Tok3n\r\n",
                           "Authorization: s3cret-Tok3n\r\n"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(wrong); i++) {
        http_simple(c, "POST", "/stop", wrong[i], &r);
        if (r.status != 401)
            ZLB_TEST_FAIL("status %d with %s", r.status, wrong[i] ? wrong[i] : "no header");
        assert_header(&r, "WWW-Authenticate", "Bearer realm=\"zlbench\"");
        assert_common_headers(&r);
        resp_free(&r);
    }
    ASSERT_EQ(atomic_load(&probe.calls), 0);

    http_simple(c, "POST", "/stop", "Authorization: Bearer s3cret-Tok3n\r\n", &r);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 1);
    /* The scheme is case-insensitive (RFC 7235). */
    http_simple(c, "POST", "/stop", "authorization: bearer   s3cret-Tok3n\r\n", &r);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 2);
    zlb_control_destroy(c);
}

static void test_start_refusals(void)
{
    stop_probe_t probe = {0};
    zlb_control_opts_t opts = {.listen = "0.0.0.0:0", .on_stop = on_stop, .arg = &probe};
    zlb_control_t *c = (zlb_control_t *)&probe; /* must be reset to NULL on failure */
    char err[512] = "";

    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -EPERM);
    ASSERT(c == NULL);
    ASSERT(strstr(err, "non-loopback") != NULL);
    ASSERT(strstr(err, "token") != NULL);
    opts.listen = "[::]:0";
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -EPERM);

    opts.listen = "127.0.0.1:http";
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "127.0.0.1:http") != NULL);
    opts.listen = "127.0.0.1:0";
    opts.token = "has space";
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -EINVAL);

    /* An address file that cannot be written fails the start and leaves nothing behind. */
    char bad_file[512];
    snprintf(bad_file, sizeof(bad_file), "%s/missing-dir/addr", tmpdir);
    opts.token = NULL;
    opts.address_file = bad_file;
    int fds_before = count_fds();
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -ENOENT);
    ASSERT(c == NULL);
    ASSERT(strstr(err, "missing-dir") != NULL);
    ASSERT_EQ(count_fds(), fds_before);
    opts.address_file = NULL;

    /* A port already taken fails cleanly with the errno. */
    zlb_control_t *first = start_ok("127.0.0.1:0", NULL, NULL, &probe);
    opts.listen = zlb_control_address(first);
    opts.token = NULL;
    fds_before = count_fds();
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), -EADDRINUSE);
    ASSERT(strstr(err, "bind") != NULL);
    ASSERT_EQ(count_fds(), fds_before);
    zlb_control_destroy(first);
}

/* Bound beyond loopback with a token: reads need it too, and unknown paths reveal nothing. */
static void test_exposed_requires_token(void)
{
    stop_probe_t probe = {0};
    resp_t r;
    zlb_control_t *c = start_ok("0.0.0.0:0", "tok", NULL, &probe);
    ASSERT(strncmp(zlb_control_address(c), "0.0.0.0:", 8) == 0);
    zlb_control_publish(c, "/stats", 200, "application/json", "{}", 2);
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    http_simple(c, "GET", "/nope", NULL, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    http_simple(c, "GET", "/stats", "Authorization: Bearer tok\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{}");
    resp_free(&r);
    zlb_control_destroy(c);
}

/* The dashboard's files: served without the token even once exposed (they hold no data; the
 * page asks for the token), GET only, each with a Content-Security-Policy that allows nothing
 * from elsewhere. The data endpoints keep their token rule. */
static void test_assets(void)
{
    static const unsigned char page[] = "<!doctype html><p>hi</p>";
    const zlb_control_asset_t assets[] = {
        {"/", "text/html; charset=utf-8", page, sizeof(page) - 1},
    };
    zlb_control_opts_t opts = {
        .listen = "0.0.0.0:0", .token = "tok", .assets = assets, .nassets = 1};
    zlb_control_t *c = NULL;
    char err[512] = "", v[512];
    resp_t r;
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), 0);
    zlb_control_publish(c, "/stats", 200, "application/json", "{}", 2);
    http_simple(c, "GET", "/", NULL, &r);
    printf("  GET / without the token, exposed: %d, %zu bytes\n", r.status, r.body_len);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, (const char *)page);
    assert_common_headers(&r);
    ASSERT(header_value(&r, "Content-Type", v, sizeof(v)));
    ASSERT_STREQ(v, "text/html; charset=utf-8");
    ASSERT(header_value(&r, "Content-Security-Policy", v, sizeof(v)));
    printf("  CSP: %s\n", v);
    ASSERT(strstr(v, "default-src 'none'") != NULL);
    ASSERT(strstr(v, "connect-src 'self'") != NULL);
    ASSERT(strstr(v, "unsafe") == NULL);
    ASSERT(header_value(&r, "X-Content-Type-Options", v, sizeof(v)));
    resp_free(&r);
    http_simple(c, "POST", "/", NULL, &r);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    http_simple(c, "GET", "/stats", NULL, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    http_simple(c, "GET", "/dashboard.js", NULL, &r); /* not an asset here: the token rule */
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    zlb_control_destroy(c);
}

/* GET /stats/series?since=T: the rows after T, oldest first, from the newest `keep`; a bad
 * since is a 400; the token rule is /stats's. The JSON is parsed, not grepped. */
static json_t *series_get(const zlb_control_t *c, const char *query, const char *auth, int want)
{
    resp_t r;
    char path[128];
    snprintf(path, sizeof(path), "/stats/series%s", query);
    http_simple(c, "GET", path, auth, &r);
    if (r.status != want)
        ZLB_TEST_FAIL("GET %s: status %d, expected %d: %s", path, r.status, want, r.body);
    assert_common_headers(&r);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    if (!j)
        ZLB_TEST_FAIL("GET %s: not JSON (%s): %s", path, e.text, r.body);
    resp_free(&r);
    return j;
}

/* The t_s of every row, "4,5,6" */
static void series_ts(const json_t *doc, char *out, size_t cap)
{
    size_t i, n = 0;
    json_t *row;
    out[0] = '\0';
    json_array_foreach(json_object_get(doc, "rows"), i, row) n += (size_t)snprintf(
        out + n, cap - n, "%s%g", i ? "," : "", json_number_value(json_object_get(row, "t_s")));
}

static void test_series(void)
{
    stop_probe_t probe = {0};
    char ts[256];
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, NULL, &probe);
    resp_t r;
    http_simple(c, "GET", "/stats/series", NULL, &r);
    ASSERT_EQ(r.status, 404); /* not started: no such document */
    resp_free(&r);
    zlb_control_series_start(c, "/stats/series", "\"interval_s\":0.5", 5);
    json_t *j = series_get(c, "", NULL, 200);
    ASSERT_NEAR(json_number_value(json_object_get(j, "interval_s")), 0.5, 0);
    ASSERT_EQ(json_array_size(json_object_get(j, "rows")), 0);
    json_decref(j);
    for (int i = 1; i <= 8; i++) {
        char row[64];
        int n = snprintf(row, sizeof(row), "{\"t_s\":%g,\"x\":%d}", i * 0.5, i);
        zlb_control_series_append(c, i * 0.5, row, (size_t)n);
    }
    struct {
        const char *query, *want;
    } cases[] = {
        {"", "2,2.5,3,3.5,4"}, /* the newest five */
        {"?since=2.5", "3,3.5,4"}, {"?since=2.6", "3,3.5,4"}, {"?since=-1", "2,2.5,3,3.5,4"},
        {"?since=4", ""},          {"?since=100", ""},        {"?since=0&x=1", "2,2.5,3,3.5,4"},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        j = series_get(c, cases[i].query, NULL, 200);
        series_ts(j, ts, sizeof(ts));
        fprintf(stderr, "GET /stats/series%s: rows t_s [%s], expected [%s]\n", cases[i].query, ts,
                cases[i].want);
        ASSERT_STREQ(ts, cases[i].want);
        ASSERT(json_is_false(json_object_get(j, "truncated")));
        json_decref(j);
    }
    const char *bad[] = {"?since=", "?since=abc", "?since=1x", "?since=nan", "?since=inf"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++) {
        j = series_get(c, bad[i], NULL, 400);
        ASSERT(strstr(json_string_value(json_object_get(j, "error")), "since") != NULL);
        json_decref(j);
    }
    http_simple(c, "POST", "/stats/series", "Content-Type: application/json\r\n", &r);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    zlb_control_destroy(c);

    /* Exposed beyond loopback: the token guards the series as it guards /stats. */
    c = start_ok("0.0.0.0:0", "tok", NULL, &probe);
    zlb_control_series_start(c, "/stats/series", "\"interval_s\":1", 10);
    zlb_control_series_append(c, 1, "{\"t_s\":1}", 9);
    http_simple(c, "GET", "/stats/series", NULL, &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    j = series_get(c, "?since=0", "Authorization: Bearer tok\r\n", 200);
    ASSERT_EQ(json_array_size(json_object_get(j, "rows")), 1);
    json_decref(j);
    zlb_control_destroy(c);
}

static void test_ipv6(void)
{
    zlb_control_opts_t opts = {.listen = "[::1]:0"};
    zlb_control_t *c = NULL;
    char err[512];
    int rc = zlb_control_start(&opts, &c, err, sizeof(err));
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        fprintf(stderr, "   (no IPv6 loopback here: %s)\n", err);
        return;
    }
    ASSERT_EQ(rc, 0);
    ASSERT(strncmp(zlb_control_address(c), "[::1]:", 6) == 0);
    zlb_control_publish(c, "/health", 200, "application/json", "{\"ok\":true}", 11);
    resp_t r;
    http_simple(c, "GET", "/health", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"ok\":true}");
    resp_free(&r);
    zlb_control_destroy(c);
}

static void write_file(const char *path, const char *content, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, content, len), (ssize_t)len);
    ASSERT_EQ(fchmod(fd, mode), 0); /* exact mode, whatever the umask */
    close(fd);
}

static void test_read_token(void)
{
    char path[512], err[512];
    char *tok = NULL;
    snprintf(path, sizeof(path), "%s/token", tmpdir);

    write_file(path, "abc123\n", 7, 0644);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EPERM);
    ASSERT(tok == NULL);
    ASSERT(strstr(err, "mode 0644") != NULL);
    ASSERT(strstr(err, "chmod 600") != NULL);
    write_file(path, "abc123\n", 7, 0640);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EPERM);
    write_file(path, "abc123\n", 7, 0604);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EPERM);

    write_file(path, "abc123\n", 7, 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), 0);
    ASSERT_STREQ(tok, "abc123");
    free(tok);
    write_file(path, "abc123 \r\n\n", 10, 0400);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), 0);
    ASSERT_STREQ(tok, "abc123");
    free(tok);

    write_file(path, "", 0, 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "empty") != NULL);
    write_file(path, " \r\n", 3, 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EINVAL);
    write_file(path, "two words\n", 10, 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EINVAL);

    char big[ZLB_CONTROL_TOKEN_MAX + 1];
    memset(big, 'k', sizeof(big));
    write_file(path, big, ZLB_CONTROL_TOKEN_MAX, 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), 0);
    ASSERT_UEQ(strlen(tok), ZLB_CONTROL_TOKEN_MAX);
    free(tok);
    write_file(path, big, sizeof(big), 0600);
    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -EFBIG);
    unlink(path);

    ASSERT_EQ(zlb_control_read_token(path, &tok, err, sizeof(err)), -ENOENT);
    ASSERT(strstr(err, path) != NULL);
    ASSERT_EQ(zlb_control_read_token(tmpdir, &tok, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "regular") != NULL);
    ASSERT(tok == NULL);
}

/* ---- concurrent readers and a republishing writer ----------------------------------------- */

/* Under the connection limit (64) even with closed connections the control thread has not
 * reaped yet: at the limit, a reader starved between connect() and send() for over the eviction
 * floor is a slow client by the port's rule and goes (seen with 50 readers under TSan at load 39).
 * This test is about republishing under readers; eviction has its own tests. */
#define READERS 24
#define MIN_GETS_PER_READER 5
#define REPUBLISHES 1000

/* Version v's document: its own length (10..200 KiB) and filler, so a torn or stale-length
 * response cannot pass for a whole one. */
static size_t make_doc(unsigned v, char *buf, size_t cap)
{
    size_t len = 10 * 1024 + (size_t)(v * 7919u) % (190 * 1024);
    ASSERT_LE(len, cap);
    int n = snprintf(buf, cap, "{\"v\":%08u,\"pad\":\"", v);
    memset(buf + n, 'a' + (char)(v % 26), len - (size_t)n - 2);
    memcpy(buf + len - 2, "\"}", 2);
    return len;
}

typedef struct race {
    zlb_control_t *c;
    atomic_int ready;
    atomic_bool go;
    atomic_bool writer_done;
    atomic_ulong gets; /* responses checked by the readers */
    atomic_uint max_seen;
} race_t;

static void wait_go(race_t *rc)
{
    atomic_fetch_add(&rc->ready, 1);
    uint64_t deadline = zlb_now_ns() + POLL_LIMIT_NS;
    while (!atomic_load(&rc->go)) {
        ASSERT(zlb_now_ns() < deadline);
        sched_yield();
    }
}

static void *reader_main(void *arg)
{
    race_t *rc = arg;
    char *want = malloc(200 * 1024);
    ASSERT(want);
    wait_go(rc);
    /* Readers keep going until the last republish, so every republish lands mid-traffic. */
    for (int i = 0; i < MIN_GETS_PER_READER || !atomic_load(&rc->writer_done); i++) {
        resp_t r;
        http_simple(rc->c, "GET", "/stats", NULL, &r);
        ASSERT_EQ(r.status, 200);
        unsigned v = 0;
        ASSERT_EQ(sscanf(r.body, "{\"v\":%u,", &v), 1);
        size_t len = make_doc(v, want, 200 * 1024);
        ASSERT_UEQ(r.body_len, len);
        ASSERT(memcmp(r.body, want, len) == 0);
        unsigned seen = atomic_load(&rc->max_seen);
        while (v > seen && !atomic_compare_exchange_weak(&rc->max_seen, &seen, v))
            ;
        resp_free(&r);
        atomic_fetch_add(&rc->gets, 1);
    }
    free(want);
    return NULL;
}

static void *writer_main(void *arg)
{
    race_t *rc = arg;
    char *doc = malloc(200 * 1024);
    ASSERT(doc);
    wait_go(rc);
    for (unsigned v = 1; v <= REPUBLISHES; v++) {
        size_t len = make_doc(v, doc, 200 * 1024);
        zlb_control_publish(rc->c, "/stats", 200, "application/json", doc, len);
        /* Every tenth version waits for a served request, so the versions are spread over
         * the traffic rather than all published between two responses. */
        if (v % 10 == 0) {
            unsigned long seen = zlb_control_requests(rc->c);
            uint64_t deadline = zlb_now_ns() + POLL_LIMIT_NS;
            while (zlb_control_requests(rc->c) == seen) {
                ASSERT(zlb_now_ns() < deadline);
                sched_yield();
            }
        }
    }
    atomic_store(&rc->writer_done, true);
    free(doc);
    return NULL;
}

static void test_concurrent_republish(void)
{
    race_t rc = {0};
    pthread_t readers[READERS], writer;
    char *doc = malloc(200 * 1024);
    ASSERT(doc);
    rc.c = start_ok("127.0.0.1:0", NULL, NULL, NULL);
    zlb_control_publish(rc.c, "/stats", 200, "application/json", doc, make_doc(0, doc, 200 * 1024));
    free(doc);

    for (int i = 0; i < READERS; i++)
        ASSERT_EQ(pthread_create(&readers[i], NULL, reader_main, &rc), 0);
    ASSERT_EQ(pthread_create(&writer, NULL, writer_main, &rc), 0);
    uint64_t deadline = zlb_now_ns() + POLL_LIMIT_NS;
    while (atomic_load(&rc.ready) < READERS + 1) {
        ASSERT(zlb_now_ns() < deadline);
        sched_yield();
    }
    atomic_store(&rc.go, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(readers[i], NULL);
    pthread_join(writer, NULL);

    ASSERT_CMP_UINT(atomic_load(&rc.gets), >=, READERS * MIN_GETS_PER_READER);
    ASSERT_UEQ(zlb_control_requests(rc.c), atomic_load(&rc.gets));
    /* The single control thread counts a request right after looking its document up, so the
     * request the writer waited for after version 990 was served version 990 or later. */
    ASSERT_CMP_UINT(atomic_load(&rc.max_seen), >=, REPUBLISHES - 10);
    resp_t r;
    http_simple(rc.c, "GET", "/stats", NULL, &r);
    unsigned v = 0;
    ASSERT_EQ(sscanf(r.body, "{\"v\":%u,", &v), 1);
    ASSERT_EQ(v, REPUBLISHES);
    resp_free(&r);
    zlb_control_destroy(rc.c);
}

/* ---- shutdown with clients still connected ------------------------------------------------ */

static void test_destroy_with_idle_keepalive(void)
{
    enum { CONNS = 8 };
    int fds[CONNS];
    char *doc = malloc(200 * 1024);
    ASSERT(doc);
    int fds_before = count_fds();
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, NULL, NULL);
    char addr[ZLB_CONTROL_ADDR_MAX];
    snprintf(addr, sizeof(addr), "%s", zlb_control_address(c));
    zlb_control_publish(c, "/stats", 200, "application/json", doc, make_doc(7, doc, 200 * 1024));

    for (int i = 0; i < CONNS; i++) {
        fds[i] = connect_to(c);
        /* Two requests per connection prove it is kept alive, then it idles. */
        for (int k = 0; k < 2; k++) {
            const char *req = "GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n";
            resp_t r;
            send_all(fds[i], req, strlen(req));
            ASSERT_EQ(read_response(fds[i], false, &r), 0);
            ASSERT_EQ(r.status, 200);
            ASSERT(memcmp(r.body, doc, r.body_len) == 0);
            resp_free(&r);
        }
    }
    /* One more client has sent half a request, another a request whose response is queued. */
    int half = connect_to(c);
    send_all(half, "GET /stats HTTP/1.1\r\nHo", 23);
    int unread = connect_to(c);
    const char *unread_req = "GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n";
    send_all(unread, unread_req, strlen(unread_req));
    wait_requests(c, 2 * CONNS + 1);
    /* The slot's reference goes here; the queued response may still hold one. */
    zlb_control_publish(c, "/stats", 200, "application/json", "{}", 2);

    uint64_t t0 = zlb_now_ns();
    zlb_control_destroy(c);
    ASSERT_CMP_UINT(zlb_now_ns() - t0, <, 2 * ZLB_NS_PER_SEC); /* no waiting on idle clients */

    /* Every connection is closed by the server: EOF (or a reset) after any leftover bytes. */
    for (int i = 0; i < CONNS; i++) {
        char b[64];
        ssize_t n = recv(fds[i], b, sizeof(b), 0);
        if (n != 0 && !(n < 0 && errno == ECONNRESET))
            ZLB_TEST_FAIL("keep-alive connection %d still open after destroy: %zd %s", i, n,
                          strerror(errno));
        close(fds[i]);
    }
    char b[4096];
    ssize_t n;
    while ((n = recv(half, b, sizeof(b), 0)) > 0)
        ;
    ASSERT(n == 0 || errno == ECONNRESET);
    close(half);
    while ((n = recv(unread, b, sizeof(b), 0)) > 0)
        ;
    ASSERT(n == 0 || errno == ECONNRESET);
    close(unread);
    free(doc);

    /* Every descriptor is gone (the listen socket included, exactly once), and the port can be
     * bound again at once. */
    ASSERT_EQ(count_fds(), fds_before);
    c = start_ok(addr, NULL, NULL, NULL);
    ASSERT_STREQ(zlb_control_address(c), addr);
    zlb_control_destroy(c);
    ASSERT_EQ(count_fds(), fds_before);
}

/* ---- request policy (pure) ---------------------------------------------------------------- */

static zlb_control_verdict_t decide(bool exposed, bool token, const char *method, const char *path,
                                    const char *host, const char *origin, const char *ctype,
                                    bool custom, bool authorized)
{
    zlb_control_policy_t pol = {.exposed = exposed, .has_token = token, .port = 8089};
    zlb_control_req_t rq = {.method = method,
                            .path = path,
                            .uri_clean = true,
                            .host = host,
                            .origin = origin,
                            .content_type = ctype,
                            .authorization = authorized ? "Bearer t" : NULL,
                            .custom_header = custom,
                            .authorized = authorized,
                            .published = strcmp(path, "/stats") == 0};
    return zlb_control_decide(&pol, &rq);
}

static void test_policy(void)
{
    /* Hosts: loopback names and literals, with our port or none. */
    const char *local[] = {"localhost", "LOCALHOST:8089", "localhost.", "a.localhost",
                           "127.0.0.1", "127.1.2.3:8089", "[::1]",      "[::1]:8089"};
    const char *foreign[] = {"evil.com",       "evil.com:8089",    "localhost:8090", "127.0.0.1:80",
                             "127.0.0.1.evil", "0x7f.0.0.1",       "[::1]x",         "",
                             "localhost:",     "127.0.0.1:99999",  "128.0.0.1",      "[::2]:8089",
                             "localhost.evil", "127.0.0.1:8089:1", "1.2.3.4",        " localhost"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(local); i++)
        if (!zlb_control_host_is_local(local[i], 8089))
            ZLB_TEST_FAIL("\"%s\" should be local", local[i]);
    for (size_t i = 0; i < ZLB_ARRAY_LEN(foreign); i++)
        if (zlb_control_host_is_local(foreign[i], 8089))
            ZLB_TEST_FAIL("\"%s\" should not be local", foreign[i]);

    /* Request targets. */
    ASSERT(zlb_control_uri_clean("/stats?x=%20y%2F"));
    ASSERT(!zlb_control_uri_clean("/stats%00"));
    ASSERT(!zlb_control_uri_clean("/stats%1F"));
    ASSERT(!zlb_control_uri_clean("/stats%7f"));
    ASSERT(!zlb_control_uri_clean("/st ats"));
    ASSERT(!zlb_control_uri_clean("/st\tats"));
    ASSERT(zlb_control_uri_clean("/stats%"));  /* a lone % is not a control byte */
    ASSERT(zlb_control_uri_clean("/stats%0")); /* nor a truncated escape */

    /* Loopback, no token: reads open, foreign Host refused, state change needs a header. */
    ASSERT_EQ(
        decide(false, false, "GET", "/stats", "localhost:8089", NULL, NULL, false, false).status,
        200);
    ASSERT_EQ(decide(false, false, "GET", "/stats", NULL, NULL, NULL, false, false).status, 200);
    ASSERT_EQ(decide(false, false, "GET", "/stats", "evil.com", NULL, NULL, false, false).status,
              421);
    ASSERT_EQ(decide(false, false, "GET", "/nope", "localhost", NULL, NULL, false, false).status,
              404);
    ASSERT_EQ(decide(false, false, "POST", "/stats", "localhost", NULL, NULL, false, false).status,
              405);
    ASSERT_EQ(decide(false, false, "GET", "/stop", "localhost", NULL, NULL, false, false).status,
              405);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", NULL, NULL, false, false).status,
              403);
    ASSERT_EQ(
        decide(false, false, "POST", "/stop", "localhost", NULL, "text/plain", false, false).status,
        403);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", NULL,
                     "application/x-www-form-urlencoded", false, false)
                  .status,
              403);
    ASSERT_EQ(
        decide(false, false, "POST", "/stop", "localhost", NULL, "application/jsonx", false, false)
            .status,
        403);
    ASSERT_EQ(
        decide(false, false, "POST", "/stop", "localhost", NULL, "application/json", false, false)
            .status,
        202);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", NULL,
                     "Application/JSON; charset=utf-8", false, false)
                  .status,
              202);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", NULL, NULL, true, false).status,
              202);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", "http://localhost:8089", NULL,
                     true, false)
                  .status,
              202);
    ASSERT_EQ(
        decide(false, false, "POST", "/stop", "localhost", "http://evil.com", NULL, true, false)
            .status,
        403);
    ASSERT_EQ(
        decide(false, false, "POST", "/stop", "localhost", "null", "application/json", false, false)
            .status,
        403);
    ASSERT_EQ(decide(false, false, "POST", "/stop", "localhost", "http://localhost:9999", NULL,
                     true, false)
                  .status,
              403);
    /* Loopback with a token: /stop needs it (401 before the header rule), reads do not. */
    ASSERT_EQ(decide(false, true, "POST", "/stop", "localhost", NULL, NULL, false, false).status,
              401);
    ASSERT_EQ(decide(false, true, "POST", "/stop", "localhost", NULL, NULL, false, true).status,
              202);
    ASSERT_EQ(
        decide(false, true, "POST", "/stop", "localhost", "http://evil.com", NULL, false, true)
            .status,
        403);
    ASSERT_EQ(decide(false, true, "GET", "/stats", "localhost", NULL, NULL, false, false).status,
              200);
    /* Exposed: the token guards everything; Host names are not ours to know. */
    ASSERT_EQ(
        decide(true, true, "GET", "/stats", "zlb.example:8089", NULL, NULL, false, false).status,
        401);
    ASSERT_EQ(
        decide(true, true, "GET", "/stats", "zlb.example:8089", NULL, NULL, false, true).status,
        200);
    ASSERT_EQ(decide(true, true, "GET", "/stop", "zlb.example", NULL, NULL, false, false).status,
              401);

    /* A built-in static file (the dashboard) needs no token, exposed or not; GET/HEAD only. The
     * Host rule still holds on loopback. */
    zlb_control_policy_t apol = {.exposed = true, .has_token = true, .port = 8089};
    zlb_control_req_t arq = {.method = "GET", .path = "/", .uri_clean = true, .asset = true};
    ASSERT_EQ(zlb_control_decide(&apol, &arq).action, ZLB_CONTROL_ASSET);
    arq.method = "HEAD";
    ASSERT_EQ(zlb_control_decide(&apol, &arq).action, ZLB_CONTROL_ASSET);
    arq.method = "POST";
    ASSERT_EQ(zlb_control_decide(&apol, &arq).status, 405);
    apol.exposed = false;
    arq.method = "GET";
    arq.host = "evil.com";
    ASSERT_EQ(zlb_control_decide(&apol, &arq).status, 421);

    zlb_control_req_t rq = {
        .method = "GET", .path = "/stats", .uri_clean = false, .published = true};
    zlb_control_policy_t pol = {.port = 1};
    ASSERT_EQ(zlb_control_decide(&pol, &rq).status, 400);
    rq.uri_clean = true;
    rq.has_body = true;
    ASSERT_EQ(zlb_control_decide(&pol, &rq).status, 413);

    /* POST /pause and /resume: routed only with a pause callback, under /stop's guards. */
    zlb_control_policy_t ppol = {.has_token = true, .port = 8089, .can_pause = true};
    zlb_control_req_t prq = {.method = "POST",
                             .path = "/pause",
                             .uri_clean = true,
                             .host = "127.0.0.1:8089",
                             .authorization = "Bearer t",
                             .authorized = true};
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).action, ZLB_CONTROL_PAUSE);
    prq.path = "/resume";
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).action, ZLB_CONTROL_RESUME);
    prq.authorized = false;
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).status, 401);
    prq.authorized = true;
    prq.origin = "http://evil.com";
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).status, 403);
    prq.origin = NULL;
    prq.method = "GET";
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).status, 405);
    ppol.can_pause = false;
    prq.method = "POST";
    ASSERT_EQ(zlb_control_decide(&ppol, &prq).status, 404);

    /* PATCH /run: a body within the bound, the guards of /stop but the content type's. */
    zlb_control_policy_t tpol = {.port = 8089, .can_patch = true};
    zlb_control_req_t trq = {.method = "PATCH",
                             .path = "/run",
                             .uri_clean = true,
                             .has_body = true,
                             .body_len = ZLB_CONTROL_BODY_MAX,
                             .host = "localhost:8089",
                             .published = true};
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).action, ZLB_CONTROL_PATCH);
    trq.body_len = ZLB_CONTROL_BODY_MAX + 1;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 413);
    trq.body_len = UINT64_MAX;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 411);
    trq.body_len = 10;
    trq.origin = "http://localhost:8089";
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).action, ZLB_CONTROL_PATCH);
    trq.origin = "http://localhost:8090";
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 403);
    trq.origin = NULL;
    tpol.has_token = true;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 401);
    trq.authorized = true;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).action, ZLB_CONTROL_PATCH);
    trq.method = "POST";
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 413); /* a body, not PATCH /run's */
    trq.has_body = false;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 405);
    trq.method = "GET";
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).action, ZLB_CONTROL_SERVE);
    trq.method = "PATCH";
    tpol.can_patch = false;
    ASSERT_EQ(zlb_control_decide(&tpol, &trq).status, 405);
}

static void test_browser_guards(void)
{
    stop_probe_t probe = {0};
    resp_t r;
    char raw[512];
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, NULL, &probe);
    zlb_control_publish(c, "/config", 200, "application/json", "{}", 2);
    const char *port = strrchr(zlb_control_address(c), ':') + 1;

    /* DNS rebinding: a page on evil.com resolved to 127.0.0.1 sends its own name. */
    http(c, "GET /config HTTP/1.1\r\nHost: evil.com\r\nConnection: close\r\n\r\n", &r);
    ASSERT_EQ(r.status, 421);
    assert_common_headers(&r);
    resp_free(&r);
    snprintf(raw, sizeof(raw), "GET /config HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n", port);
    http(c, raw, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* A cross-site form: no custom header, a form content type, a foreign Origin. */
    snprintf(raw, sizeof(raw),
             "POST /stop HTTP/1.1\r\nHost: localhost:%s\r\nOrigin: http://evil.com\r\n"
             "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n",
             port);
    http(c, raw, &r);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    http(c,
         "POST /stop HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
         "application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n",
         &r);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 0);
    snprintf(raw, sizeof(raw),
             "POST /stop HTTP/1.1\r\nHost: localhost:%s\r\nOrigin: http://localhost:%s\r\n"
             "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n",
             port, port);
    http(c, raw, &r);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&probe.calls), 1);
    zlb_control_destroy(c);
}

/* What PATCH /run's callback was given; it answers {"len": N}. */
typedef struct patch_probe {
    atomic_int calls;
    size_t len;
    char *body; /* malloc'd copy */
    char client[64];
} patch_probe_t;

static unsigned on_patch(void *arg, const char *body, size_t len, const char *client, char **answer)
{
    patch_probe_t *p = arg;
    free(p->body);
    p->body = malloc(len + 1);
    memcpy(p->body, body, len);
    p->body[len] = '\0';
    p->len = len;
    snprintf(p->client, sizeof(p->client), "%s", client);
    atomic_fetch_add(&p->calls, 1);
    *answer = malloc(64);
    snprintf(*answer, 64, "{\"len\":%zu}", len);
    return 200;
}

/* "PATCH /run ... Content-Length: n" with n bytes of body ('x' after a leading '{'), or only
 * the headers when send_body is false; extra headers go before the blank line. */
static char *patch_request(size_t n, bool send_body, const char *extra)
{
    size_t cap = 512 + (send_body ? n : 0);
    char *raw = malloc(cap);
    int h = snprintf(raw, cap,
                     "PATCH /run HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n",
                     extra ? extra : "", n);
    if (send_body) {
        memset(raw + h, 'x', n);
        if (n)
            raw[h] = '{';
        raw[h + (int)n] = '\0';
    }
    return raw;
}

/* PATCH /run: the one request whose body is read. The body arrives whole up to the bound (64
 * KiB) and is refused past it before a byte is read (the 1 MiB request sends only its headers
 * and still gets its 413); a chunked body is refused (411); every other route keeps refusing
 * bodies; the guards of POST /stop hold, the content type aside (curl -X PATCH -d sends a form
 * type); the callback runs only for a request that passed them, and learns the client. */
static void test_patch_body(void)
{
    patch_probe_t pp = {0};
    resp_t r;
    zlb_control_opts_t opts = {.listen = "127.0.0.1:0", .on_patch = on_patch, .arg = &pp};
    zlb_control_t *c = NULL;
    char err[256];
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), 0);
    zlb_control_publish(c, "/run", 200, "application/json", "{\"paused\":false}", 16);

    char *raw = patch_request(ZLB_CONTROL_BODY_MAX, true, NULL);
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"len\":65536}");
    resp_free(&r);
    ASSERT_UEQ(pp.len, ZLB_CONTROL_BODY_MAX);
    ASSERT_EQ(pp.body[0], '{');
    ASSERT_UEQ(strspn(pp.body + 1, "x"), ZLB_CONTROL_BODY_MAX - 1);
    ASSERT(strncmp(pp.client, "127.0.0.1:", 10) == 0);

    raw = patch_request(ZLB_CONTROL_BODY_MAX + 1, true, NULL);
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    raw = patch_request(1u << 20, false, NULL); /* the body is never sent: answered anyway */
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 413);
    ASSERT_STREQ(r.body, "{\"error\":\"request body over 65536 bytes\"}");
    resp_free(&r);
    http(c,
         "PATCH /run HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         "2\r\n{}\r\n0\r\n\r\n",
         &r);
    ASSERT_EQ(r.status, 411);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 1);

    /* A form content type and no custom header: still PATCHed (no browser sends that
     * cross-site without a preflight); a foreign Origin is refused. */
    raw = patch_request(2, true, "Content-Type: application/x-www-form-urlencoded\r\n");
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 2);
    raw = patch_request(2, true, "Origin: http://evil.com\r\n");
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 403);
    resp_free(&r);
    raw = patch_request(0, true, NULL); /* no body: the callback says what that means */
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"len\":0}");
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 3);

    /* Bodies elsewhere, other methods on /run. */
    http(c, "PATCH /stats HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}", &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    http(c, "GET /run HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}", &r);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    http_simple(c, "PUT", "/run", NULL, &r);
    ASSERT_EQ(r.status, 405);
    assert_header(&r, "Allow", "GET, HEAD, PATCH");
    resp_free(&r);
    http_simple(c, "GET", "/run", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"paused\":false}");
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 3);
    zlb_control_destroy(c);

    /* With a token: 401 without it, before the body is read; 200 with it. */
    opts.token = "patch-tok";
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), 0);
    raw = patch_request(1000, true, NULL);
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    raw = patch_request(1000, true, "Authorization: Bearer wrong\r\n");
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 3);
    raw = patch_request(1000, true, "Authorization: Bearer patch-tok\r\n");
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"len\":1000}");
    resp_free(&r);
    ASSERT_EQ(atomic_load(&pp.calls), 4);
    zlb_control_destroy(c);

    /* Without an on_patch, PATCH /run is not routed: a body is refused, none gets 405. */
    opts.token = NULL;
    opts.on_patch = NULL;
    ASSERT_EQ(zlb_control_start(&opts, &c, err, sizeof(err)), 0);
    zlb_control_publish(c, "/run", 200, "application/json", "{}", 2);
    raw = patch_request(2, true, NULL);
    http(c, raw, &r);
    free(raw);
    ASSERT_EQ(r.status, 413);
    resp_free(&r);
    http_simple(c, "PATCH", "/run", NULL, &r);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    zlb_control_destroy(c);
    free(pp.body);
}

/* Slowloris: more clients than the limit each hold half a request. A fresh request still gets
 * its answer within a second, and each half request is cut off at the header deadline. */
static void test_slow_headers(void)
{
    enum { SLOW = 100 };
    int slow[SLOW];
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, NULL, NULL);
    zlb_control_publish(c, "/health", 200, "application/json", "{}", 2);
    for (int i = 0; i < SLOW; i++) {
        slow[i] = connect_to(c); /* the kernel backlog takes those beyond the limit */
        send_all(slow[i], "GET /health HTTP/1.1\r\nHo", 24);
    }
    struct timespec ts = {1, 100 * 1000000L}; /* older than the eviction floor */
    nanosleep(&ts, NULL);
    for (int k = 0; k < 3; k++) {
        resp_t r;
        uint64_t t0 = zlb_now_ns();
        http_simple(c, "GET", "/health", NULL, &r);
        uint64_t took = zlb_now_ns() - t0;
        fprintf(stderr, "   /health under %d slow clients: %d in %.1f ms\n", SLOW, r.status,
                (double)took / 1e6);
        ASSERT_EQ(r.status, 200);
        ASSERT_CMP_UINT(took, <, ZLB_NS_PER_SEC);
        resp_free(&r);
    }
    /* Every slow client is closed by the server within deadline + sweep (or at once when it
     * made room), never served. */
    uint64_t t0 = zlb_now_ns();
    for (int i = 0; i < SLOW; i++) {
        char b[256];
        ssize_t n = recv(slow[i], b, sizeof(b), 0);
        if (n != 0 && !(n < 0 && errno == ECONNRESET))
            ZLB_TEST_FAIL("slow client %d: recv %zd (%s)", i, n, n < 0 ? strerror(errno) : "data");
        close(slow[i]);
    }
    double waited = (double)(zlb_now_ns() - t0) / 1e9;
    fprintf(stderr, "   all %d slow clients cut off within %.2f s more\n", SLOW, waited);
    ASSERT_CMP_DBL(waited, <, 4.5);
    zlb_control_destroy(c);
}

/* Clients that reset while a large response is being written, with SIGPIPE at its default
 * disposition (which kills): libmicrohttpd must write with MSG_NOSIGNAL (it says so through
 * MHD_FEATURE_AUTOSUPPRESS_SIGPIPE), so the process lives and the port keeps answering. */
static void test_reset_mid_response(void)
{
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    ASSERT_EQ(MHD_is_feature_supported(MHD_FEATURE_AUTOSUPPRESS_SIGPIPE), MHD_YES);
    stop_probe_t probe = {0};
    zlb_control_t *c = start_ok("127.0.0.1:0", NULL, NULL, &probe);
    const size_t big = 4u << 20; /* more than the socket buffers hold: writes wait for room */
    char *doc = zlb_xmalloc(big);
    memset(doc, ' ', big);
    doc[0] = '{';
    doc[big - 1] = '}';
    zlb_control_publish(c, "/stats", 200, "application/json", doc, big);
    free(doc);
    static const char req[] = "GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n";
    int resets = 0;
    for (int i = 0; i < 20; i++) {
        int fd = connect_to(c);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        for (int k = 0; k < 4; k++) /* pipelined: more writes are due after the reset */
            send_all(fd, req, sizeof(req) - 1);
        char b;
        if (recv(fd, &b, 1, 0) == 1)
            resets++;
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    resp_t r;
    http_simple(c, "GET", "/health", NULL, &r);
    fprintf(stderr, "   %d clients reset mid-response (4 MiB each, pipelined x4); /health %d\n",
            resets, r.status);
    ASSERT_EQ(resets, 20);
    ASSERT_EQ(r.status, 404); /* never published here: the port answers for itself */
    resp_free(&r);
    zlb_control_destroy(c);
    signal(SIGPIPE, old);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_control.XXXXXX");
    ASSERT(mkdtemp(tmpdir) != NULL);
    zlb_log_level = ZLB_LOG_WARN;

    RUN_TEST(test_parse_listen);
    RUN_TEST(test_token_helpers);
    RUN_TEST(test_routes);
    RUN_TEST(test_token_auth);
    RUN_TEST(test_policy);
    RUN_TEST(test_browser_guards);
    RUN_TEST(test_patch_body);
    RUN_TEST(test_slow_headers);
    RUN_TEST(test_start_refusals);
    RUN_TEST(test_exposed_requires_token);
    RUN_TEST(test_assets);
    RUN_TEST(test_series);
    RUN_TEST(test_ipv6);
    RUN_TEST(test_read_token);
    RUN_TEST(test_concurrent_republish);
    RUN_TEST(test_destroy_with_idle_keepalive);
    RUN_TEST(test_reset_mid_response);

    rmdir(tmpdir);
    return 0;
}
