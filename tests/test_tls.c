/* test_tls.c -- the tls module over real sockets: handshakes, failures, resumption, memory, CTX. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "test.h"
#include "core/core.h"
#include "tls/tls.h"
#include "tls/tls_internal.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ---- fixtures: a test PKI written to a temporary directory ----------------------------------- */

static char tmpdir[64];
static char ca_file[128], ca2_file[128];
static char client_crt[128], client_key[128], client2_crt[128], client2_key[128];
static zlb_tls_cert_t *ca, *ca2, *srv_cert, *expired_cert, *wrong_cert, *self_cert;
static zlb_tls_cert_t *client_cert, *client2_cert;

static void path_in_tmp(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void fixtures_create(void)
{
    static const char *const other[] = {"other.example"};
    static const char *const other_ip[] = {"192.0.2.1"};
    zlb_tls_cert_opts_t expired = {.not_before_s = -2 * 86400, .not_after_s = -86400};
    zlb_tls_cert_opts_t wrong = {
        .cn = "other.example", .dns = other, .ndns = 1, .ips = other_ip, .nips = 1};
    zlb_tls_cert_opts_t client = {.cn = "zlbench client", .client = true, .dns = other, .ndns = 1};
    zlb_tls_cert_opts_t ca2_opts = {.cn = "zlbench other CA"};

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/zlb-test-tls-XXXXXX");
    ASSERT(mkdtemp(tmpdir) != NULL);
    ASSERT_EQ(zlb_tls_cert_create_ca(NULL, &ca), 0);
    ASSERT_EQ(zlb_tls_cert_create_ca(&ca2_opts, &ca2), 0);
    ASSERT_EQ(zlb_tls_cert_issue(ca, NULL, &srv_cert), 0);
    ASSERT_EQ(zlb_tls_cert_issue(ca, &expired, &expired_cert), 0);
    ASSERT_EQ(zlb_tls_cert_issue(ca, &wrong, &wrong_cert), 0);
    ASSERT_EQ(zlb_tls_cert_issue(NULL, NULL, &self_cert), 0);
    ASSERT_EQ(zlb_tls_cert_issue(ca, &client, &client_cert), 0);
    ASSERT_EQ(zlb_tls_cert_issue(ca2, &client, &client2_cert), 0);

    path_in_tmp(ca_file, sizeof(ca_file), "ca.pem");
    path_in_tmp(ca2_file, sizeof(ca2_file), "ca2.pem");
    path_in_tmp(client_crt, sizeof(client_crt), "client.pem");
    path_in_tmp(client_key, sizeof(client_key), "client.key");
    path_in_tmp(client2_crt, sizeof(client2_crt), "client2.pem");
    path_in_tmp(client2_key, sizeof(client2_key), "client2.key");
    ASSERT_EQ(zlb_tls_cert_write(ca, ca_file, NULL), 0);
    ASSERT_EQ(zlb_tls_cert_write(ca2, ca2_file, NULL), 0);
    ASSERT_EQ(zlb_tls_cert_write(client_cert, client_crt, client_key), 0);
    ASSERT_EQ(zlb_tls_cert_write(client2_cert, client2_crt, client2_key), 0);
}

static void fixtures_destroy(void)
{
    const char *files[] = {ca_file, ca2_file, client_crt, client_key, client2_crt, client2_key};

    for (size_t i = 0; i < ZLB_ARRAY_LEN(files); i++)
        unlink(files[i]);
    rmdir(tmpdir);
    zlb_tls_cert_destroy(ca);
    zlb_tls_cert_destroy(ca2);
    zlb_tls_cert_destroy(srv_cert);
    zlb_tls_cert_destroy(expired_cert);
    zlb_tls_cert_destroy(wrong_cert);
    zlb_tls_cert_destroy(self_cert);
    zlb_tls_cert_destroy(client_cert);
    zlb_tls_cert_destroy(client2_cert);
}

/* A client config trusting the test CA only. */
static zlb_tls_config_t client_cfg(void)
{
    zlb_tls_config_t cfg = {.enabled = true, .verify = true, .ca_file = ca_file};
    return cfg;
}

static zlb_tls_client_t *client_new(const zlb_tls_config_t *cfg, const char *host)
{
    zlb_tls_client_t *cli = NULL;
    char err[256];
    int r = zlb_tls_client_create(cfg, host, &cli, err, sizeof(err));

    if (r != 0)
        ZLB_TEST_FAIL("zlb_tls_client_create: %d %s", r, err);
    return cli;
}

static zlb_tls_server_t *server_new(const zlb_tls_cert_t *cert, const zlb_tls_cert_t *client_ca,
                                    int min_version, int max_version)
{
    zlb_tls_server_opts_t o = {.cert = cert,
                               .client_ca = client_ca,
                               .min_version = min_version,
                               .max_version = max_version};
    zlb_tls_server_t *srv = NULL;
    char err[256];
    int r = zlb_tls_server_create(&o, &srv, err, sizeof(err));

    if (r != 0)
        ZLB_TEST_FAIL("zlb_tls_server_create: %d %s", r, err);
    return srv;
}

/* ---- sockets and a poll()-driven handshake loop ---------------------------------------------- */

static void unix_pair(int *cfd, int *sfd)
{
    int fds[2];

    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    *cfd = fds[0];
    *sfd = fds[1];
}

static void tcp_pair(int *cfd, int *sfd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    struct pollfd p;
    int l, c, s, soerr = -1;
    socklen_t elen = sizeof(soerr);

    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(l >= 0);
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(l, 4), 0);
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT(c >= 0);
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
        ASSERT_EQ(errno, EINPROGRESS);
    s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT(s >= 0);
    p = (struct pollfd){.fd = c, .events = POLLOUT};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    ASSERT_EQ(getsockopt(c, SOL_SOCKET, SO_ERROR, &soerr, &elen), 0);
    ASSERT_EQ(soerr, 0);
    close(l);
    *cfd = c;
    *sfd = s;
}

static bool pending(zlb_tls_status_t s)
{
    return s == ZLB_TLS_WANT_READ || s == ZLB_TLS_WANT_WRITE;
}

static short interest(zlb_tls_status_t s)
{
    return s == ZLB_TLS_WANT_READ ? POLLIN : POLLOUT;
}

static void wait_for(int fd1, zlb_tls_status_t s1, int fd2, zlb_tls_status_t s2, uint64_t deadline)
{
    struct pollfd p[2];
    int n = 0;
    uint64_t now = zlb_now_ns();

    if (now >= deadline)
        ZLB_TEST_FAIL("handshake loop timed out (5 s)");
    if (fd1 >= 0 && pending(s1))
        p[n++] = (struct pollfd){.fd = fd1, .events = interest(s1)};
    if (fd2 >= 0 && pending(s2))
        p[n++] = (struct pollfd){.fd = fd2, .events = interest(s2)};
    if (poll(p, (nfds_t)n, (int)((deadline - now) / ZLB_NS_PER_MS) + 1) < 0)
        ASSERT_EQ(errno, EINTR);
}

/* One client and (optionally) one server connection over a socket pair. */
typedef struct pair {
    int cfd, sfd;
    zlb_tls_conn_t cl, sv;
    bool has_server;
    zlb_tls_status_t cst, sst;
} pair_t;

static void pair_open(pair_t *p, bool tcp, const zlb_tls_client_t *cli, zlb_tls_sessions_t *ss,
                      SSL_SESSION *resume, const zlb_tls_server_t *srv)
{
    memset(p, 0, sizeof(*p));
    if (tcp)
        tcp_pair(&p->cfd, &p->sfd);
    else
        unix_pair(&p->cfd, &p->sfd);
    ASSERT_EQ(zlb_tls_conn_init_client(&p->cl, cli, ss, resume, p->cfd), 0);
    if (srv) {
        ASSERT_EQ(zlb_tls_conn_init_server(&p->sv, srv, p->sfd), 0);
        p->has_server = true;
    }
}

/* Steps both handshakes until neither wants anything; each side ends DONE or FAILED. sv may be
 * NULL (a raw peer, or none). */
static void drive(zlb_tls_conn_t *cl, int cfd, zlb_tls_status_t *cst, zlb_tls_conn_t *sv, int sfd,
                  zlb_tls_status_t *sst)
{
    uint64_t deadline = zlb_now_ns() + 5 * ZLB_NS_PER_SEC;

    *cst = ZLB_TLS_WANT_WRITE;
    *sst = sv ? ZLB_TLS_WANT_READ : ZLB_TLS_DONE;
    for (;;) {
        if (pending(*cst))
            *cst = zlb_tls_handshake(cl);
        if (pending(*sst))
            *sst = zlb_tls_handshake(sv);
        if (!pending(*cst) && !pending(*sst))
            return;
        wait_for(cfd, *cst, sfd, *sst, deadline);
    }
}

static void pair_handshake(pair_t *p)
{
    drive(&p->cl, p->cfd, &p->cst, p->has_server ? &p->sv : NULL, p->sfd, &p->sst);
}

/* zlb_tls_poll until it stops asking for input that is already there: returns its status. */
static zlb_tls_status_t poll_conn(zlb_tls_conn_t *c, int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    zlb_tls_status_t st;

    for (;;) {
        st = zlb_tls_poll(c);
        if (st != ZLB_TLS_WANT_READ || poll(&pf, 1, 0) != 1)
            return st;
        /* Readable again: the same edge a poller would see. A socket at EOF stays readable,
         * but then poll returns EOF, not WANT_READ. */
    }
}

static zlb_tls_status_t poll_client(pair_t *p)
{
    return poll_conn(&p->cl, p->cfd);
}

static void pair_close(pair_t *p)
{
    zlb_tls_conn_shutdown(&p->cl);
    zlb_tls_conn_dispose(&p->cl);
    if (p->has_server) {
        zlb_tls_conn_shutdown(&p->sv);
        zlb_tls_conn_dispose(&p->sv);
    }
    close(p->cfd);
    if (p->sfd >= 0)
        close(p->sfd);
}

static void print_error(const char *who, const zlb_tls_conn_t *c)
{
    char buf[256];

    zlb_tls_error_format(&c->err, buf, sizeof(buf));
    fprintf(stderr, "   %s: %s\n", who, buf);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_pki(void)
{
    static const char *const bad[] = {"a,b"};
    zlb_tls_cert_opts_t bad_opts = {.dns = bad, .ndns = 1};
    zlb_tls_cert_t *c = NULL, *loaded = NULL;
    char *pem = zlb_tls_cert_pem(ca, false), *pem2;
    char err[256];
    struct stat st;

    ASSERT(strstr(pem, "-----BEGIN CERTIFICATE-----") != NULL);
    ASSERT(strstr(pem, "PRIVATE KEY") == NULL);
    free(pem);
    pem = zlb_tls_cert_pem(client_cert, true);
    ASSERT(strstr(pem, "-----BEGIN PRIVATE KEY-----") != NULL);
    free(pem);

    /* Files: the key is private, and both load back as the same certificate. */
    ASSERT_EQ(stat(client_key, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(stat(ca_file, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0644);
    ASSERT_EQ(zlb_tls_cert_load(client_crt, client_key, &loaded, err, sizeof(err)), 0);
    pem = zlb_tls_cert_pem(loaded, true);
    pem2 = zlb_tls_cert_pem(client_cert, true);
    ASSERT_STREQ(pem, pem2);
    free(pem);
    free(pem2);
    zlb_tls_cert_destroy(loaded);
    ASSERT_EQ(zlb_tls_cert_load(client_crt, "/nonexistent/key", &loaded, err, sizeof(err)),
              -EINVAL);
    ASSERT(loaded == NULL);
    fprintf(stderr, "   load error: %s\n", err);
    /* A certificate with a key that is not its own is refused. */
    ASSERT_EQ(zlb_tls_cert_load(client_crt, client2_key, &loaded, err, sizeof(err)), -EINVAL);

    ASSERT_EQ(zlb_tls_cert_issue(ca, &bad_opts, &c), -EINVAL);
    ASSERT(c == NULL);
    ASSERT_EQ(zlb_tls_cert_write(ca, "/nonexistent/dir/ca.pem", NULL), -ENOENT);
}

static void test_client_config_errors(void)
{
    static char *bad_alpn[] = {""};
    zlb_tls_client_t *cli = NULL;
    zlb_tls_config_t cfg;
    char err[256];

    cfg = client_cfg();
    cfg.ca_file = "/nonexistent/ca.pem";
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);
    ASSERT(cli == NULL);
    ASSERT(strstr(err, "/nonexistent/ca.pem") != NULL);
    fprintf(stderr, "   %s\n", err);

    cfg = client_cfg();
    cfg.ciphers = "NO-SUCH-CIPHER";
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);
    fprintf(stderr, "   %s\n", err);

    cfg = client_cfg();
    cfg.groups = "nosuchgroup";
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);

    cfg = client_cfg();
    cfg.key_file = client_key;
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);

    cfg = client_cfg();
    cfg.cert_file = client_crt;
    cfg.key_file = client2_key;
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);
    fprintf(stderr, "   %s\n", err);

    cfg = client_cfg();
    cfg.min_version = TLS1_3_VERSION;
    cfg.max_version = TLS1_2_VERSION;
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);

    cfg = client_cfg();
    cfg.alpn = bad_alpn;
    cfg.nalpn = 1;
    ASSERT_EQ(zlb_tls_client_create(&cfg, "localhost", &cli, err, sizeof(err)), -EINVAL);
    ASSERT(cli == NULL);

    /* The system store, for completeness: loading it must work on a stock system. */
    cfg = client_cfg();
    cfg.ca_file = NULL;
    cli = client_new(&cfg, "localhost");
    zlb_tls_client_destroy(cli);
    zlb_tls_client_destroy(NULL);
}

/* A full handshake verified against the test CA, then data both ways and the two kinds of EOF. */
static void test_handshake_and_io(void)
{
    const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, 0, 0);

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        zlb_tls_client_t *cli;
        pair_t p;
        char buf[64];
        size_t n;

        cfg.min_version = cfg.max_version = versions[v];
        cli = client_new(&cfg, "localhost");
        pair_open(&p, true, cli, NULL, NULL, srv);
        ASSERT_EQ(zlb_tls_conn_version(&p.cl), 0);
        pair_handshake(&p);
        ASSERT_EQ(p.cst, ZLB_TLS_DONE);
        ASSERT_EQ(p.sst, ZLB_TLS_DONE);
        ASSERT_EQ(zlb_tls_handshake(&p.cl), ZLB_TLS_DONE); /* idempotent */
        ASSERT_EQ(zlb_tls_conn_version(&p.cl), versions[v]);
        ASSERT_EQ(zlb_tls_conn_version(&p.sv), versions[v]);
        ASSERT(!zlb_tls_conn_resumed(&p.cl));
        ASSERT(zlb_tls_conn_cipher(&p.cl)[0] != '\0');
        fprintf(stderr, "   %s %s\n", zlb_tls_version_name(zlb_tls_conn_version(&p.cl)),
                zlb_tls_conn_cipher(&p.cl));

        /* Nothing but (for 1.3) a ticket has arrived: poll consumes it and wants more. */
        ASSERT_EQ(poll_client(&p), ZLB_TLS_WANT_READ);
        ASSERT_EQ(zlb_tls_write(&p.cl, "ping", 4, &n), ZLB_TLS_DONE);
        ASSERT_UEQ(n, 4);
        ASSERT_EQ(zlb_tls_read(&p.sv, buf, sizeof(buf), &n), ZLB_TLS_DONE);
        ASSERT_UEQ(n, 4);
        ASSERT(memcmp(buf, "ping", 4) == 0);
        ASSERT_EQ(zlb_tls_write(&p.sv, "pong!", 5, &n), ZLB_TLS_DONE);
        /* Data waiting: poll says so without eating it. */
        ASSERT_EQ(poll_client(&p), ZLB_TLS_DONE);
        ASSERT_EQ(zlb_tls_read(&p.cl, buf, sizeof(buf), &n), ZLB_TLS_DONE);
        ASSERT_UEQ(n, 5);
        ASSERT(memcmp(buf, "pong!", 5) == 0);
        ASSERT_EQ(zlb_tls_read(&p.cl, buf, sizeof(buf), &n), ZLB_TLS_WANT_READ);
        ASSERT_EQ(zlb_tls_write(&p.cl, buf, 0, &n), ZLB_TLS_DONE);

        /* close_notify: a clean EOF for the server. */
        zlb_tls_conn_shutdown(&p.cl);
        ASSERT_EQ(zlb_tls_read(&p.sv, buf, sizeof(buf), &n), ZLB_TLS_EOF);
        ASSERT(!p.sv.unclean_eof);
        /* The client's socket closes without more: the server's peer-side sees TCP EOF. */
        zlb_tls_conn_dispose(&p.cl);
        zlb_tls_conn_dispose(&p.cl); /* twice is fine */
        close(p.cfd);
        p.cfd = -1;
        zlb_tls_conn_dispose(&p.sv);
        close(p.sfd);
        zlb_tls_client_destroy(cli);
    }

    /* TCP EOF with no close_notify after the handshake: EOF, marked unclean. */
    {
        zlb_tls_client_t *cli = client_new(&cfg, "localhost");
        pair_t p;
        char buf[16];
        size_t n;

        pair_open(&p, false, cli, NULL, NULL, srv);
        pair_handshake(&p);
        ASSERT_EQ(p.cst, ZLB_TLS_DONE);
        zlb_tls_conn_dispose(&p.sv);
        p.has_server = false;
        close(p.sfd);
        p.sfd = -1;
        ASSERT_EQ(zlb_tls_read(&p.cl, buf, sizeof(buf), &n), ZLB_TLS_EOF);
        ASSERT(p.cl.unclean_eof);
        ASSERT(p.cl.failed); /* so shutdown sends nothing */
        pair_close(&p);
        zlb_tls_client_destroy(cli);
    }
    zlb_tls_server_destroy(srv);
}

/* A full socket: write returns WANT_WRITE, and a retry with the same bytes after the peer has
 * read goes on where it stopped. Every byte arrives once, in order. */
static void test_write_backpressure(void)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli = client_new(&cfg, "localhost");
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, 0, 0);
    const size_t chunk = 40000, total = 4 * 1024 * 1024;
    unsigned char *out = zlb_xmalloc(chunk), *in = zlb_xmalloc(65536);
    size_t sent = 0, received = 0, n;
    unsigned wants = 0;
    pair_t p;

    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    ASSERT_EQ(p.cst, ZLB_TLS_DONE);
    while (received < total) {
        zlb_tls_status_t st = ZLB_TLS_DONE;

        /* The pattern depends on the stream offset, so a lost or doubled byte shows. */
        while (sent < total) {
            size_t len = ZLB_MIN(chunk, total - sent);
            for (size_t i = 0; i < len; i++)
                out[i] = (unsigned char)((sent + i) * 7 + ((sent + i) >> 16));
            st = zlb_tls_write(&p.cl, out, len, &n);
            if (st != ZLB_TLS_DONE)
                break;
            ASSERT(n > 0 && n <= len);
            sent += n;
        }
        if (sent < total) {
            ASSERT_EQ(st, ZLB_TLS_WANT_WRITE);
            wants++;
        }
        for (;;) {
            st = zlb_tls_read(&p.sv, in, 65536, &n);
            if (st != ZLB_TLS_DONE)
                break;
            for (size_t i = 0; i < n; i++)
                if (in[i] != (unsigned char)((received + i) * 7 + ((received + i) >> 16)))
                    ZLB_TEST_FAIL("byte %zu differs", received + i);
            received += n;
        }
        ASSERT_EQ(st, ZLB_TLS_WANT_READ);
    }
    ASSERT_UEQ(received, total);
    ASSERT_GT(wants, 0); /* the test did fill the socket */
    fprintf(stderr, "   %zu bytes, %u times WANT_WRITE\n", received, wants);
    free(out);
    free(in);
    pair_close(&p);
    zlb_tls_server_destroy(srv);
    zlb_tls_client_destroy(cli);
}

/* Runs one handshake expecting the client to reject the server's certificate with `code`. */
static void expect_verify_failure(const zlb_tls_config_t *cfg, const char *host,
                                  const zlb_tls_cert_t *cert, int code)
{
    zlb_tls_client_t *cli = client_new(cfg, host);
    zlb_tls_server_t *srv = server_new(cert, NULL, 0, 0);
    pair_t p;

    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    print_error("client", &p.cl);
    print_error("server", &p.sv);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.kind, ZLB_TLS_ERR_VERIFY);
    ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_VERIFY_FAILED);
    ASSERT_EQ(p.cl.err.code, code);
    /* The server hears about it as an alert about its certificate. */
    ASSERT_EQ(p.sst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.sv.err.kind, ZLB_TLS_ERR_PROTOCOL);
    ASSERT_EQ(p.sv.err.reason, ZLB_TLS_R_BAD_CERTIFICATE);
    pair_close(&p);
    zlb_tls_server_destroy(srv);
    zlb_tls_client_destroy(cli);
}

static void expect_success(const zlb_tls_config_t *cfg, const char *host,
                           const zlb_tls_cert_t *cert)
{
    zlb_tls_client_t *cli = client_new(cfg, host);
    zlb_tls_server_t *srv = server_new(cert, NULL, 0, 0);
    pair_t p;

    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    if (p.cst != ZLB_TLS_DONE)
        print_error("client", &p.cl);
    ASSERT_EQ(p.cst, ZLB_TLS_DONE);
    ASSERT_EQ(p.sst, ZLB_TLS_DONE);
    pair_close(&p);
    zlb_tls_server_destroy(srv);
    zlb_tls_client_destroy(cli);
}

static void test_verify(void)
{
    zlb_tls_config_t cfg = client_cfg();

    /* The generated server certificate: DNS:localhost, IP:127.0.0.1, IP:::1. */
    expect_success(&cfg, "localhost", srv_cert);
    expect_success(&cfg, "127.0.0.1", srv_cert);
    expect_success(&cfg, "::1", srv_cert);

    expect_verify_failure(&cfg, "localhost", wrong_cert, X509_V_ERR_HOSTNAME_MISMATCH);
    /* An IP literal is checked against IP SANs, not as a DNS name. */
    expect_verify_failure(&cfg, "127.0.0.1", wrong_cert, X509_V_ERR_IP_ADDRESS_MISMATCH);
    expect_verify_failure(&cfg, "localhost", expired_cert, X509_V_ERR_CERT_HAS_EXPIRED);
    /* A self-signed leaf no one trusts: 18. */
    expect_verify_failure(&cfg, "localhost", self_cert, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    /* The server sends its leaf only, so a client trusting another CA cannot find the issuer:
     * 20 (19 would need the server to send the root in its chain). */
    cfg.ca_file = ca2_file;
    expect_verify_failure(&cfg, "localhost", srv_cert,
                          X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

    /* SNI given: the certificate must match the SNI name, whatever the host. */
    cfg = client_cfg();
    cfg.sni = "other.example";
    expect_success(&cfg, "127.0.0.1", wrong_cert);
    expect_verify_failure(&cfg, "127.0.0.1", srv_cert, X509_V_ERR_HOSTNAME_MISMATCH);

    /* The explicit opt-out accepts a wrong name and an unknown issuer. */
    cfg = client_cfg();
    cfg.verify = false;
    expect_success(&cfg, "localhost", wrong_cert);
    cfg.ca_file = ca2_file;
    expect_success(&cfg, "localhost", self_cert);

    ASSERT_STREQ(zlb_tls_verify_name(X509_V_ERR_HOSTNAME_MISMATCH), "hostname_mismatch");
    ASSERT_STREQ(zlb_tls_verify_name(X509_V_ERR_CERT_HAS_EXPIRED), "expired");
    ASSERT_STREQ(zlb_tls_verify_name(12345), "other");
}

/* What the server sees as SNI: the host name, nothing for an IP literal, or the configured one. */
static void expect_sni(const char *host, const char *sni, const char *expect)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli;
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, 0, 0);
    const char *seen;
    pair_t p;

    cfg.sni = (char *)sni;
    cfg.verify = false; /* about the name sent, not the certificate */
    cli = client_new(&cfg, host);
    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    ASSERT_EQ(p.sst, ZLB_TLS_DONE);
    seen = SSL_get_servername(p.sv.ssl, TLSEXT_NAMETYPE_host_name);
    if (expect)
        ASSERT_STREQ(seen, expect);
    else
        ASSERT(seen == NULL);
    pair_close(&p);
    zlb_tls_client_destroy(cli);
    zlb_tls_server_destroy(srv);
}

static void test_sni(void)
{
    expect_sni("localhost", NULL, "localhost");
    expect_sni("127.0.0.1", NULL, NULL);
    expect_sni("::1", NULL, NULL);
    expect_sni("127.0.0.1", "svc.example", "svc.example");
}

static void test_version_mismatch(void)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli;
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, TLS1_3_VERSION, 0);
    pair_t p;

    cfg.max_version = TLS1_2_VERSION;
    cli = client_new(&cfg, "localhost");
    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    print_error("client", &p.cl);
    print_error("server", &p.sv);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.kind, ZLB_TLS_ERR_PROTOCOL);
    ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_PROTOCOL_VERSION);
    ASSERT_EQ(p.sst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.sv.err.reason, ZLB_TLS_R_PROTOCOL_VERSION);
    ASSERT_STREQ(zlb_tls_reason_name(p.cl.err.reason), "protocol_version");
    pair_close(&p);
    zlb_tls_client_destroy(cli);
    zlb_tls_server_destroy(srv);
}

/* Peers that are not TLS servers, over real TCP. */
static void test_not_tls_peer(void)
{
    static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli = client_new(&cfg, "localhost");
    pair_t p;

    pair_open(&p, true, cli, NULL, NULL, NULL);
    ASSERT_EQ(write(p.sfd, http, sizeof(http) - 1), (ssize_t)sizeof(http) - 1);
    pair_handshake(&p);
    print_error("client (HTTP peer)", &p.cl);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.kind, ZLB_TLS_ERR_PROTOCOL);
    ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_WRONG_VERSION_NUMBER);
    pair_close(&p);

    /* The peer accepts and closes at once. */
    pair_open(&p, true, cli, NULL, NULL, NULL);
    close(p.sfd);
    p.sfd = -1;
    pair_handshake(&p);
    print_error("client (peer closed)", &p.cl);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_UNEXPECTED_EOF);
    pair_close(&p);

    /* The peer resets the connection: a socket error with errno. */
    pair_open(&p, true, cli, NULL, NULL, NULL);
    {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        ASSERT_EQ(setsockopt(p.sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    }
    /* Let the ClientHello reach the peer first, so its close is a reset, not a plain FIN. */
    ASSERT_EQ(zlb_tls_handshake(&p.cl), ZLB_TLS_WANT_READ);
    close(p.sfd);
    p.sfd = -1;
    pair_handshake(&p);
    print_error("client (peer reset)", &p.cl);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.kind, ZLB_TLS_ERR_SYSCALL);
    ASSERT_EQ(p.cl.err.code, ECONNRESET);
    pair_close(&p);
    zlb_tls_client_destroy(cli);
}

static void test_alpn(void)
{
    static char *client_protos[] = {"h2", "http/1.1"};
    static const char *const server_protos[] = {"http/1.1", "h2"};
    static const char *const other_protos[] = {"x-other"};
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_server_opts_t so = {.cert = srv_cert, .alpn = server_protos, .nalpn = 2};
    zlb_tls_client_t *cli;
    zlb_tls_server_t *srv;
    const uint8_t *proto;
    size_t len;
    pair_t p;

    cfg.alpn = client_protos;
    cfg.nalpn = 2;
    cli = client_new(&cfg, "localhost");
    ASSERT_EQ(zlb_tls_server_create(&so, &srv, NULL, 0), 0);
    pair_open(&p, false, cli, NULL, NULL, srv);
    proto = zlb_tls_conn_alpn(&p.cl, &len);
    ASSERT_UEQ(len, 0);
    pair_handshake(&p);
    ASSERT_EQ(p.cst, ZLB_TLS_DONE);
    proto = zlb_tls_conn_alpn(&p.cl, &len);
    ASSERT_UEQ(len, 8);
    ASSERT(memcmp(proto, "http/1.1", 8) == 0); /* the server's preference */
    pair_close(&p);
    zlb_tls_server_destroy(srv);

    so.alpn = other_protos;
    so.nalpn = 1;
    ASSERT_EQ(zlb_tls_server_create(&so, &srv, NULL, 0), 0);
    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    print_error("client", &p.cl);
    ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_NO_APPLICATION_PROTOCOL);
    ASSERT_EQ(p.sv.err.reason, ZLB_TLS_R_NO_APPLICATION_PROTOCOL);
    pair_close(&p);
    zlb_tls_server_destroy(srv);
    zlb_tls_client_destroy(cli);
}

/* mTLS. With TLS 1.3 the client's handshake is complete before the server has looked at the
 * client's certificate, so the client learns of a refusal only at its next read (here: poll).
 * With TLS 1.2 the server's alert arrives during the client's handshake. */
static void test_mtls(void)
{
    const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    zlb_tls_server_t *srv = server_new(srv_cert, ca, 0, 0);

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        bool tls13 = versions[v] == TLS1_3_VERSION;
        zlb_tls_config_t cfg = client_cfg();
        zlb_tls_client_t *cli;
        pair_t p;

        fprintf(stderr, "   %s\n", zlb_tls_version_name(versions[v]));
        cfg.min_version = cfg.max_version = versions[v];

        /* No client certificate. */
        cli = client_new(&cfg, "localhost");
        pair_open(&p, false, cli, NULL, NULL, srv);
        pair_handshake(&p);
        print_error("server (no client cert)", &p.sv);
        ASSERT_EQ(p.sst, ZLB_TLS_FAILED);
        ASSERT_EQ(p.sv.err.reason, ZLB_TLS_R_CERTIFICATE_REQUIRED);
        if (tls13) {
            ASSERT_EQ(p.cst, ZLB_TLS_DONE);
            ASSERT_EQ(poll_client(&p), ZLB_TLS_FAILED);
            ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_CERTIFICATE_REQUIRED);
        } else {
            ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
            ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_HANDSHAKE_FAILURE);
        }
        print_error("client (no client cert)", &p.cl);
        pair_close(&p);
        zlb_tls_client_destroy(cli);

        /* A certificate from the CA the server trusts. */
        cfg.cert_file = client_crt;
        cfg.key_file = client_key;
        cli = client_new(&cfg, "localhost");
        pair_open(&p, false, cli, NULL, NULL, srv);
        pair_handshake(&p);
        ASSERT_EQ(p.cst, ZLB_TLS_DONE);
        ASSERT_EQ(p.sst, ZLB_TLS_DONE);
        ASSERT_EQ(poll_client(&p), ZLB_TLS_WANT_READ);
        pair_close(&p);
        zlb_tls_client_destroy(cli);

        /* A certificate from another CA: the server's verification fails (20), the client
         * gets an unknown_ca alert. */
        cfg.cert_file = client2_crt;
        cfg.key_file = client2_key;
        cli = client_new(&cfg, "localhost");
        pair_open(&p, false, cli, NULL, NULL, srv);
        pair_handshake(&p);
        print_error("server (foreign client cert)", &p.sv);
        ASSERT_EQ(p.sst, ZLB_TLS_FAILED);
        ASSERT_EQ(p.sv.err.kind, ZLB_TLS_ERR_VERIFY);
        ASSERT_EQ(p.sv.err.code, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        if (tls13) {
            ASSERT_EQ(p.cst, ZLB_TLS_DONE);
            ASSERT_EQ(poll_client(&p), ZLB_TLS_FAILED);
        } else {
            ASSERT_EQ(p.cst, ZLB_TLS_FAILED);
        }
        print_error("client (foreign client cert)", &p.cl);
        ASSERT_EQ(p.cl.err.reason, ZLB_TLS_R_BAD_CERTIFICATE);
        pair_close(&p);
        zlb_tls_client_destroy(cli);
    }
    zlb_tls_server_destroy(srv);
}

/* The accumulator alone, on sessions made by hand: exact shares, eviction, expiry. */
static void test_session_pick(void)
{
    const double ratios[] = {1.0, 0.9, 0.5, 0.3, 0.0};
    zlb_tls_config_t cfg = client_cfg();

    for (size_t r = 0; r < ZLB_ARRAY_LEN(ratios); r++) {
        zlb_tls_client_t *cli;
        zlb_tls_sessions_t *s;
        SSL_SESSION *sess;
        unsigned hits = 0;

        cfg.resumption = ratios[r];
        cli = client_new(&cfg, "localhost");
        ASSERT_NEAR(zlb_tls_client_resumption(cli), ratios[r], 1e-9);
        s = zlb_tls_sessions_create(cli, 0);
        ASSERT(zlb_tls_sessions_pick(s) == NULL); /* empty: no decision taken */
        for (int i = 0; i < 6; i++) {
            sess = SSL_SESSION_new();
            ASSERT(sess != NULL);
            SSL_SESSION_set_time(sess, (long)time(NULL));
            SSL_SESSION_set_timeout(sess, 300);
            zlb_tls_sessions_add(s, sess);
        }
        ASSERT_EQ(zlb_tls_sessions_count(s), ZLB_TLS_SESSIONS_DEFAULT);
        for (int i = 0; i < 1000; i++) {
            SSL_SESSION *got = zlb_tls_sessions_pick(s);
            hits += got != NULL;
            if (i % 10 == 9) /* every window of 10 is exact, not just the total */
                ASSERT_EQ(hits, (unsigned)((i + 1) * ratios[r] + 0.5));
        }
        ASSERT_EQ(hits, (unsigned)(1000 * ratios[r] + 0.5));

        /* An expired newest session empties the cache and is never offered. */
        sess = SSL_SESSION_new();
        SSL_SESSION_set_time(sess, (long)time(NULL) - 100);
        SSL_SESSION_set_timeout(sess, 10);
        zlb_tls_sessions_add(s, sess);
        ASSERT(zlb_tls_sessions_pick(s) == NULL);
        ASSERT_EQ(zlb_tls_sessions_count(s), ratios[r] > 0 ? 0 : ZLB_TLS_SESSIONS_DEFAULT);
        zlb_tls_sessions_destroy(s);
        zlb_tls_client_destroy(cli);
    }
    zlb_tls_sessions_destroy(NULL);
}

/* Real resumption: one full handshake, then `rounds` handshakes resuming per the ratio. */
static void resume_run(int version, double ratio, unsigned rounds, unsigned expect_resumed)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, version, version);
    zlb_tls_client_t *cli;
    zlb_tls_sessions_t *cache;
    unsigned resumed = 0, offered = 0;

    cfg.resumption = ratio;
    cli = client_new(&cfg, "localhost");
    cache = zlb_tls_sessions_create(cli, 0);
    for (unsigned i = 0; i <= rounds; i++) {
        SSL_SESSION *sess = zlb_tls_sessions_pick(cache);
        pair_t p;

        if (i == 0)
            ASSERT(sess == NULL);
        offered += sess != NULL;
        pair_open(&p, false, cli, cache, sess, srv);
        pair_handshake(&p);
        ASSERT_EQ(p.cst, ZLB_TLS_DONE);
        ASSERT_EQ(p.sst, ZLB_TLS_DONE);
        ASSERT_EQ(zlb_tls_conn_resumed(&p.cl), zlb_tls_conn_resumed(&p.sv));
        ASSERT_EQ(zlb_tls_conn_resumed(&p.cl), sess != NULL);
        resumed += zlb_tls_conn_resumed(&p.cl);
        /* TLS 1.3 tickets come after the handshake: the poller reads them when readable. */
        ASSERT_EQ(poll_client(&p), ZLB_TLS_WANT_READ);
        if (ratio > 0)
            ASSERT_GT(zlb_tls_sessions_count(cache), 0);
        else
            ASSERT_EQ(zlb_tls_sessions_count(cache), 0);
        pair_close(&p);
    }
    fprintf(stderr, "   %s ratio %.1f: %u of %u resumed (%u sessions cached)\n",
            zlb_tls_version_name(version), ratio, resumed, rounds, zlb_tls_sessions_count(cache));
    ASSERT_EQ(resumed, expect_resumed);
    ASSERT_EQ(offered, expect_resumed);
    zlb_tls_sessions_destroy(cache);
    zlb_tls_client_destroy(cli);
    zlb_tls_server_destroy(srv);
}

static void test_resumption(void)
{
    const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

    for (size_t v = 0; v < ZLB_ARRAY_LEN(versions); v++) {
        resume_run(versions[v], 1.0, 10, 10);
        resume_run(versions[v], 0.5, 10, 5);
        resume_run(versions[v], 0.0, 10, 0);
    }
    resume_run(TLS1_3_VERSION, 0.9, 20, 18);
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static unsigned raise_fd_limit(unsigned want)
{
    struct rlimit rl;

    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < want + 64 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < want + 64 ? rl.rlim_max : want + 64;
        ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    return rl.rlim_cur >= want + 64 ? want : (unsigned)(rl.rlim_cur - 64);
}

/* Own memory of idle established client connections: mallinfo2 deltas over n connections with
 * the server side freed (its SSL_CTX included), so only what the client keeps is counted. */
static size_t idle_memory(int version, unsigned n)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli;
    zlb_tls_server_t *srv;
    zlb_tls_conn_t *conns;
    int *fds;
    size_t before, after;
    pair_t p;

    cfg.min_version = cfg.max_version = version;
    cli = client_new(&cfg, "localhost");
    fds = zlb_xcalloc(n, sizeof(*fds));
    /* One connection first, so OpenSSL's lazily built tables are not charged to the rest. */
    srv = server_new(srv_cert, NULL, 0, 0);
    pair_open(&p, false, cli, NULL, NULL, srv);
    pair_handshake(&p);
    poll_client(&p);
    pair_close(&p);
    zlb_tls_server_destroy(srv);

    before = heap_in_use();
    conns = zlb_xcalloc(n, sizeof(*conns));
    srv = server_new(srv_cert, NULL, 0, 0);
    for (unsigned i = 0; i < n; i++) {
        zlb_tls_conn_t sv;
        zlb_tls_status_t cst, sst;
        int sfd;

        unix_pair(&fds[i], &sfd);
        ASSERT_EQ(zlb_tls_conn_init_client(&conns[i], cli, NULL, NULL, fds[i]), 0);
        ASSERT_EQ(zlb_tls_conn_init_server(&sv, srv, sfd), 0);
        drive(&conns[i], fds[i], &cst, &sv, sfd, &sst);
        ASSERT_EQ(cst, ZLB_TLS_DONE);
        ASSERT_EQ(sst, ZLB_TLS_DONE);
        ASSERT_EQ(poll_conn(&conns[i], fds[i]), ZLB_TLS_WANT_READ);
        zlb_tls_conn_dispose(&sv);
        close(sfd);
    }
    zlb_tls_server_destroy(srv);
    after = heap_in_use();

    for (unsigned i = 0; i < n; i++) {
        zlb_tls_conn_dispose(&conns[i]);
        close(fds[i]);
    }
    free(conns);
    free(fds);
    zlb_tls_client_destroy(cli);
    return after > before ? (after - before) / n : 0;
}

static void test_idle_memory(void)
{
    unsigned n = raise_fd_limit(2 * 1000) / 2;
    size_t per13, per12;

    if (n < 100) {
        TEST_SKIP("file descriptor limit too low");
        return;
    }
    per13 = idle_memory(TLS1_3_VERSION, n);
    per12 = idle_memory(TLS1_2_VERSION, n);
    if (SANITIZED) {
        /* The sanitizer's allocator is not glibc's: mallinfo2 sees nothing. */
        fprintf(stderr, "   %u idle connections each way; no heap figures in a sanitizer build\n",
                n);
        return;
    }
    fprintf(stderr,
            "   idle client connection, own heap: TLSv1.3 %zu bytes, TLSv1.2 %zu bytes "
            "(%u connections, sizeof(zlb_tls_conn_t) %zu)\n",
            per13, per12, n, sizeof(zlb_tls_conn_t));
    ASSERT_LE(per13, 24 * 1024);
    ASSERT_LE(per12, 24 * 1024);
    ASSERT_GT(per13, 1024); /* a measurement that saw nothing would be a broken test */
}

/* ---- shared vs per-thread SSL_CTX: handshake throughput with two threads --------------------- */

typedef struct bench_thread {
    pthread_t tid;
    zlb_tls_client_t *shared; /* NULL: the thread makes its own client */
    uint64_t duration_ns;
    unsigned handshakes;
    uint64_t cpu_ns;
} bench_thread_t;

static void *bench_main(void *arg)
{
    bench_thread_t *t = arg;
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli = t->shared ? t->shared : client_new(&cfg, "localhost");
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, 0, 0);
    uint64_t cpu0 = zlb_thread_cpu_ns(), end = zlb_now_ns() + t->duration_ns;

    while (zlb_now_ns() < end) {
        pair_t p;
        pair_open(&p, false, cli, NULL, NULL, srv);
        pair_handshake(&p);
        ASSERT_EQ(p.cst, ZLB_TLS_DONE);
        ASSERT_EQ(p.sst, ZLB_TLS_DONE);
        pair_close(&p);
        t->handshakes++;
    }
    t->cpu_ns = zlb_thread_cpu_ns() - cpu0;
    zlb_tls_server_destroy(srv);
    if (!t->shared)
        zlb_tls_client_destroy(cli);
    return NULL;
}

typedef struct bench_result {
    double per_s;  /* handshakes per wall-clock second, all threads */
    double cpu_us; /* thread CPU time per handshake (client and server side) */
} bench_result_t;

static void bench_run(int nthreads, bool shared, uint64_t duration_ns, bench_result_t *acc)
{
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli = shared ? client_new(&cfg, "localhost") : NULL;
    bench_thread_t th[2];
    unsigned total = 0;
    uint64_t cpu = 0;

    ASSERT(nthreads <= 2);
    for (int i = 0; i < nthreads; i++) {
        th[i] = (bench_thread_t){.shared = cli, .duration_ns = duration_ns};
        ASSERT_EQ(pthread_create(&th[i].tid, NULL, bench_main, &th[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) {
        ASSERT_EQ(pthread_join(th[i].tid, NULL), 0);
        total += th[i].handshakes;
        cpu += th[i].cpu_ns;
    }
    zlb_tls_client_destroy(cli);
    acc->per_s += total / ((double)duration_ns / ZLB_NS_PER_SEC);
    acc->cpu_us += total ? (double)cpu / total / ZLB_NS_PER_US : 0;
}

/* Each handshake here costs client and server work on the same thread; only the client's
 * context differs between the variants, so a difference is the sharing's cost. Runs alternate,
 * so a change in the machine's load hits both alike; CPU time per handshake is printed too, as
 * it does not depend on what else the machine runs. No assertion: figures only.
 * ZLB_TLS_BENCH_MS sets the length of one run (default 500 ms, 100 ms under sanitizers). */
static void test_ctx_sharing(void)
{
    const char *env = getenv("ZLB_TLS_BENCH_MS");
    uint64_t ms = env ? strtoull(env, NULL, 10) : SANITIZED ? 100 : 500;
    const int rounds = 3;
    bench_result_t one = {0}, shared = {0}, own = {0};

    bench_run(1, true, ms * ZLB_NS_PER_MS, &one);
    for (int round = 0; round < rounds; round++) {
        bench_run(2, true, ms * ZLB_NS_PER_MS, &shared);
        bench_run(2, false, ms * ZLB_NS_PER_MS, &own);
    }
    fprintf(stderr,
            "   ctx_sharing (full TLS 1.3 handshakes, client and server on each thread):\n"
            "     1 thread:                        %7.0f/s  %6.0f us CPU each\n"
            "     2 threads, one shared SSL_CTX:   %7.0f/s  %6.0f us CPU each\n"
            "     2 threads, one SSL_CTX each:     %7.0f/s  %6.0f us CPU each\n"
            "     shared / per-thread: throughput %.3f, CPU per handshake %.3f\n",
            one.per_s, one.cpu_us, shared.per_s / rounds, shared.cpu_us / rounds,
            own.per_s / rounds, own.cpu_us / rounds, own.per_s > 0 ? shared.per_s / own.per_s : 0,
            own.cpu_us > 0 ? shared.cpu_us / own.cpu_us : 0);
}

/* A peer that went away while we write: with SIGPIPE at its default disposition (which kills),
 * TLS writes into the closed connection must come back as a failure with EPIPE, never
 * a signal: OpenSSL's own socket BIO would write(2) and die here; ours sends with MSG_NOSIGNAL. */
static void test_write_to_closed_peer(void)
{
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    zlb_tls_config_t cfg = client_cfg();
    zlb_tls_client_t *cli = client_new(&cfg, "localhost");
    zlb_tls_server_t *srv = server_new(srv_cert, NULL, 0, 0);
    static unsigned char out[16384];
    size_t n, written = 0;
    zlb_tls_status_t st = ZLB_TLS_DONE;
    pair_t p;

    pair_open(&p, true, cli, NULL, NULL, srv);
    pair_handshake(&p);
    ASSERT_EQ(p.cst, ZLB_TLS_DONE);
    /* The server end goes away with nothing read: an RST, and EPIPE for every write after. */
    struct linger lg = {1, 0};
    ASSERT_EQ(setsockopt(p.sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    zlb_tls_conn_dispose(&p.sv);
    p.has_server = false;
    close(p.sfd);
    p.sfd = -1;
    /* Take the RST's ECONNRESET off the socket first: a send then meets EPIPE, the error that
     * raises SIGPIPE without MSG_NOSIGNAL (ECONNRESET alone would prove nothing). */
    struct pollfd pf = {.fd = p.cfd, .events = POLLIN};
    ASSERT_EQ(poll(&pf, 1, 5000), 1);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    ASSERT_EQ(getsockopt(p.cfd, SOL_SOCKET, SO_ERROR, &soerr, &sl), 0);
    ASSERT_EQ(soerr, ECONNRESET);
    for (int i = 0; i < 1000 && st == ZLB_TLS_DONE; i++) {
        st = zlb_tls_write(&p.cl, out, sizeof(out), &n);
        if (st == ZLB_TLS_DONE)
            written += n;
        else if (st == ZLB_TLS_WANT_WRITE)
            st = ZLB_TLS_DONE; /* a full socket before the RST came: try again */
    }
    print_error("client", &p.cl);
    fprintf(stderr, "   %zu bytes written before the failure\n", written);
    ASSERT_EQ(st, ZLB_TLS_FAILED);
    ASSERT_EQ(p.cl.err.kind, ZLB_TLS_ERR_SYSCALL);
    ASSERT_EQ(p.cl.err.code, EPIPE);
    pair_close(&p);
    zlb_tls_server_destroy(srv);
    zlb_tls_client_destroy(cli);
    signal(SIGPIPE, old);
}

int main(void)
{
    fprintf(stderr, "   %s\n", zlb_tls_library_version());
    ASSERT_STREQ(zlb_tls_version_name(TLS1_3_VERSION), "TLSv1.3");
    ASSERT_STREQ(zlb_tls_reason_name(ZLB_TLS_R_WRONG_VERSION_NUMBER), "wrong_version_number");
    ASSERT_STREQ(zlb_tls_reason_name(ZLB_TLS_R_COUNT), "other");
    fixtures_create();
    RUN_TEST(test_pki);
    RUN_TEST(test_client_config_errors);
    RUN_TEST(test_handshake_and_io);
    RUN_TEST(test_write_backpressure);
    RUN_TEST(test_write_to_closed_peer);
    RUN_TEST(test_verify);
    RUN_TEST(test_sni);
    RUN_TEST(test_version_mismatch);
    RUN_TEST(test_not_tls_peer);
    RUN_TEST(test_alpn);
    RUN_TEST(test_mtls);
    RUN_TEST(test_session_pick);
    RUN_TEST(test_resumption);
    RUN_TEST(test_idle_memory);
    RUN_TEST(test_ctx_sharing);
    fixtures_destroy();
    fprintf(stderr, "test_tls: all passed\n");
    return TEST_EXIT_CODE();
}
