/* test_core.c -- unit tests for core: heap, list, parsing, logging, thread names, fatal. */
#include <errno.h>
#include <net/if.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/stat.h>

#include "core/core.h"
#include "test.h"

/* ---- heap ------------------------------------------------------------------------------------ */

typedef struct {
    zlb_heap_node_t node;
    int id; /* insertion order */
    bool in;
} item_t;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void check_heap_invariant(const zlb_heap_t *h)
{
    for (uint32_t i = 0; i < h->size; i++) {
        ASSERT_EQ(h->nodes[i]->index, i);
        if (i > 0) {
            const zlb_heap_node_t *p = h->nodes[(i - 1) / 2], *c = h->nodes[i];
            ASSERT(p->key < c->key || (p->key == c->key && p->seq < c->seq));
        }
    }
}

static item_t *pop(zlb_heap_t *h)
{
    zlb_heap_node_t *top = zlb_heap_top(h);
    if (!top)
        return NULL;
    zlb_heap_remove(h, top);
    ASSERT(!zlb_heap_node_linked(top));
    return ZLB_CONTAINER_OF(top, item_t, node);
}

static void test_heap_order_and_ties(void)
{
    enum { N = 2000 };
    static item_t items[N];
    zlb_heap_t h;
    zlb_heap_init(&h);
    ASSERT(zlb_heap_top(&h) == NULL);
    for (int i = 0; i < N; i++) {
        zlb_heap_node_init(&items[i].node);
        items[i].node.key = rng() % 16; /* many equal keys */
        items[i].id = i;
        zlb_heap_push(&h, &items[i].node);
    }
    ASSERT_EQ(h.size, N);
    check_heap_invariant(&h);
    uint64_t last_key = 0;
    int last_id = -1;
    for (int i = 0; i < N; i++) {
        item_t *it = pop(&h);
        ASSERT(it != NULL);
        ASSERT(it->node.key >= last_key);
        if (it->node.key == last_key)
            ASSERT_GT(it->id, last_id); /* equal keys in insertion order */
        last_key = it->node.key;
        last_id = it->id;
    }
    ASSERT(pop(&h) == NULL);
    zlb_heap_dispose(&h);
}

static int cmp_items(const void *a, const void *b)
{
    const item_t *x = *(item_t *const *)a, *y = *(item_t *const *)b;
    if (x->node.key != y->node.key)
        return x->node.key < y->node.key ? -1 : 1;
    return x->node.seq < y->node.seq ? -1 : x->node.seq > y->node.seq;
}

static void test_heap_random_remove(void)
{
    enum { N = 3000 };
    static item_t items[N];
    static item_t *ref[N];
    zlb_heap_t h;
    zlb_heap_init(&h);
    for (int i = 0; i < N; i++) {
        zlb_heap_node_init(&items[i].node);
        items[i].node.key = rng() % 500;
        items[i].id = i;
        items[i].in = true;
        zlb_heap_push(&h, &items[i].node);
    }
    /* remove a random half, some re-inserted with new keys */
    for (int k = 0; k < N; k++) {
        item_t *it = &items[rng() % N];
        if (it->in) {
            zlb_heap_remove(&h, &it->node);
            it->in = false;
        } else if (rng() % 2) {
            it->node.key = rng() % 500;
            zlb_heap_push(&h, &it->node);
            it->in = true;
        }
        if (k % 97 == 0)
            check_heap_invariant(&h);
    }
    int n = 0;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(zlb_heap_node_linked(&items[i].node), items[i].in);
        if (items[i].in)
            ref[n++] = &items[i];
    }
    ASSERT_EQ(h.size, n);
    qsort(ref, (size_t)n, sizeof(ref[0]), cmp_items);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(pop(&h)->id, ref[i]->id);
    ASSERT_EQ(h.size, 0);
    zlb_heap_dispose(&h);
}

static void test_heap_reserve_and_growth(void)
{
    zlb_heap_t h;
    zlb_heap_init(&h);
    ASSERT_EQ(zlb_heap_reserve(&h, 1000), 0);
    zlb_heap_node_t **before = h.nodes;
    static item_t items[1000];
    for (int i = 0; i < 1000; i++) {
        zlb_heap_node_init(&items[i].node);
        items[i].node.key = (uint64_t)(1000 - i);
        zlb_heap_push(&h, &items[i].node);
    }
    ASSERT(h.nodes == before); /* reserved: no reallocation */
    ASSERT_EQ(h.capacity, 1000);
    item_t extra;
    zlb_heap_node_init(&extra.node);
    extra.node.key = 0;
    zlb_heap_push(&h, &extra.node);
    ASSERT_EQ(h.capacity, 2000); /* doubling */
    ASSERT(zlb_heap_top(&h) == &extra.node);
    zlb_heap_dispose(&h);
}

/* ---- list ------------------------------------------------------------------------------------ */

typedef struct {
    zlb_list_t node;
    int v;
} lnode_t;

static void collect(zlb_list_t *head, int *out, int *n)
{
    zlb_list_t *it;
    *n = 0;
    zlb_list_for_each(it, head) out[(*n)++] = ZLB_CONTAINER_OF(it, lnode_t, node)->v;
}

static void test_list_splice(void)
{
    lnode_t nodes[6];
    zlb_list_t a, b;
    zlb_list_init(&a);
    zlb_list_init(&b);
    for (int i = 0; i < 6; i++) {
        nodes[i].v = i;
        zlb_list_init(&nodes[i].node);
        ASSERT(!zlb_list_linked(&nodes[i].node));
    }
    zlb_list_push_back(&a, &nodes[1].node);
    zlb_list_push_back(&a, &nodes[2].node);
    zlb_list_push_front(&a, &nodes[0].node);
    zlb_list_push_back(&b, &nodes[3].node);
    zlb_list_push_back(&b, &nodes[4].node);
    ASSERT(zlb_list_linked(&nodes[0].node));

    int out[8], n;
    zlb_list_splice_back(&a, &b);
    ASSERT(zlb_list_empty(&b));
    collect(&a, out, &n);
    ASSERT_EQ(n, 5);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(out[i], i);

    zlb_list_splice_back(&a, &b); /* empty source: no change */
    collect(&a, out, &n);
    ASSERT_EQ(n, 5);

    zlb_list_push_back(&b, &nodes[5].node);
    zlb_list_splice_front(&a, &b);
    collect(&a, out, &n);
    ASSERT_EQ(n, 6);
    ASSERT_EQ(out[0], 5);
    ASSERT_EQ(out[5], 4);

    zlb_list_splice_front(&b, &a); /* into an empty list */
    ASSERT(zlb_list_empty(&a));
    collect(&b, out, &n);
    ASSERT_EQ(n, 6);
    ASSERT_EQ(out[0], 5);
    ASSERT_EQ(out[1], 0);

    zlb_list_remove(&nodes[0].node);
    ASSERT(!zlb_list_linked(&nodes[0].node));
    collect(&b, out, &n);
    ASSERT_EQ(n, 5);
    ASSERT_EQ(out[1], 1);
    zlb_list_t *first = zlb_list_pop_front(&b);
    ASSERT(first == &nodes[5].node);
    ASSERT(zlb_list_pop_front(&a) == NULL);
}

/* ---- parsing ------------------------------------------------------------------------------- */

static void test_parse_duration(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t ns;
    } cases[] = {
        {"30s", 0, 30 * ZLB_NS_PER_SEC},
        {"500ms", 0, 500 * ZLB_NS_PER_MS},
        {"2m", 0, 120 * ZLB_NS_PER_SEC},
        {"1h", 0, 3600 * ZLB_NS_PER_SEC},
        {"250us", 0, 250 * ZLB_NS_PER_US},
        {"100ns", 0, 100},
        {"1.5s", 0, 1500 * ZLB_NS_PER_MS},
        {"0.1s", 0, 100 * ZLB_NS_PER_MS},
        {"1.25ms", 0, 1250 * ZLB_NS_PER_US},
        {"0.5h", 0, 1800 * ZLB_NS_PER_SEC},
        {"0s", 0, 0},
        {"007ms", 0, 7 * ZLB_NS_PER_MS},
        {"1.0000000001s", 0, ZLB_NS_PER_SEC}, /* below 1 ns: truncated */
        {"18446744073709551615ns", 0, UINT64_MAX},
        {"18446744073709551616ns", -ERANGE, 0},
        {"18446744074s", -ERANGE, 0},
        {"99999999999999999999999h", -ERANGE, 0},
        {"5124096h", -ERANGE, 0},
        {"", -EINVAL, 0},
        {"s", -EINVAL, 0},
        {"5", -EINVAL, 0},
        {"1.5", -EINVAL, 0},
        {"-1s", -EINVAL, 0},
        {"+1s", -EINVAL, 0},
        {" 1s", -EINVAL, 0},
        {"1s ", -EINVAL, 0},
        {"1 s", -EINVAL, 0},
        {"1sx", -EINVAL, 0},
        {"1.s", -EINVAL, 0},
        {".5s", -EINVAL, 0},
        {"1x", -EINVAL, 0},
        {"1e3s", -EINVAL, 0},
        {"1S", -EINVAL, 0},
        {"1m30s", -EINVAL, 0},
        {"1.2.3s", -EINVAL, 0},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        uint64_t v = 12345;
        int rc = zlb_parse_duration(cases[i].s, &v);
        if (rc != cases[i].rc)
            ZLB_TEST_FAIL("parse_duration(\"%s\") = %d, want %d", cases[i].s, rc, cases[i].rc);
        if (rc == 0 && v != cases[i].ns)
            ZLB_TEST_FAIL("parse_duration(\"%s\") = %llu, want %llu", cases[i].s,
                          (unsigned long long)v, (unsigned long long)cases[i].ns);
        if (rc != 0)
            ASSERT_UEQ(v, 12345); /* untouched on error */
    }
}

static void test_parse_size(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"4096", 0, 4096},
        {"0", 0, 0},
        {"12B", 0, 12},
        {"10KB", 0, 10000},
        {"64KiB", 0, 65536},
        {"1MiB", 0, 1048576},
        {"2MB", 0, 2000000},
        {"3GB", 0, 3000000000ull},
        {"1GiB", 0, 1073741824ull},
        {"1.5KiB", 0, 1536},
        {"1TiB", 0, 1ull << 40},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", -ERANGE, 0},
        {"17179869184GiB", -ERANGE, 0},
        {"", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"1.5", -EINVAL, 0},
        {"10kb", -EINVAL, 0},
        {"10K", -EINVAL, 0},
        {"10 KiB", -EINVAL, 0},
        {"KiB", -EINVAL, 0},
        {"10KiBx", -EINVAL, 0},
        {"0x10", -EINVAL, 0},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        uint64_t v = 777;
        int rc = zlb_parse_size(cases[i].s, &v);
        if (rc != cases[i].rc)
            ZLB_TEST_FAIL("parse_size(\"%s\") = %d, want %d", cases[i].s, rc, cases[i].rc);
        if (rc == 0 && v != cases[i].bytes)
            ZLB_TEST_FAIL("parse_size(\"%s\") = %llu, want %llu", cases[i].s, (unsigned long long)v,
                          (unsigned long long)cases[i].bytes);
    }
}

static void test_format_duration(void)
{
    static const struct {
        uint64_t ns;
        const char *s;
    } cases[] = {
        {0, "0s"},
        {1, "1ns"},
        {1500 * ZLB_NS_PER_MS, "1500ms"},
        {120 * ZLB_NS_PER_SEC, "2m"},
        {30 * ZLB_NS_PER_SEC, "30s"},
        {90 * 60 * ZLB_NS_PER_SEC, "90m"},
        {7200 * ZLB_NS_PER_SEC, "2h"},
        {1001 * ZLB_NS_PER_US, "1001us"},
        {UINT64_MAX, "18446744073709551615ns"},
    };
    char buf[64];
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        zlb_format_duration(cases[i].ns, buf, sizeof(buf));
        ASSERT_STREQ(buf, cases[i].s);
    }
    /* round trip through the parser */
    for (int i = 0; i < 1000; i++) {
        static const uint64_t scales[] = {1, 1000, 1000000, 1000000000, 60000000000};
        uint64_t ns = (rng() % 100000) * scales[rng() % ZLB_ARRAY_LEN(scales)], back = 0;
        zlb_format_duration(ns, buf, sizeof(buf));
        ASSERT_EQ(zlb_parse_duration(buf, &back), 0);
        ASSERT_UEQ(back, ns);
    }
    zlb_format_duration(1500 * ZLB_NS_PER_MS, buf, 4); /* truncates, stays terminated */
    ASSERT_STREQ(buf, "150");
}

/* ---- logging ------------------------------------------------------------------------------- */

static int side_effects;

static int side_effect(void)
{
    return ++side_effects;
}

/* Reads what the log wrote so far (non-blocking pipe). */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

/* Checks "<secs>.<3 digits> <LEVEL> [<thread>] <msg>" and returns a pointer past the line. */
static const char *expect_line(const char *p, const char *level, const char *thread,
                               const char *msg)
{
    const char *q = p;
    ASSERT(*q >= '0' && *q <= '9');
    while (*q >= '0' && *q <= '9')
        q++;
    ASSERT_EQ(*q, '.');
    q++;
    for (int i = 0; i < 3; i++, q++)
        ASSERT(*q >= '0' && *q <= '9');
    char want[512];
    snprintf(want, sizeof(want), " %s [%s] %s\n", level, thread, msg);
    if (strncmp(q, want, strlen(want)) != 0)
        ZLB_TEST_FAIL("log line \"%.*s\" does not end in \"%s\"", (int)strcspn(p, "\n"), p, want);
    return q + strlen(want);
}

static int open_log_pipe(int fds[2])
{
    ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    zlb_log_set_fd(fds[1]);
    return fds[0];
}

static void test_log_filtering(void)
{
    int fds[2];
    int rd = open_log_pipe(fds);
    char buf[4096];
    zlb_log_level = ZLB_LOG_WARN;
    side_effects = 0;

    zlb_log_info("info %d", side_effect());
    zlb_log_debug("debug %d", side_effect());
    ASSERT_EQ(side_effects, 0); /* filtered: arguments never evaluated */
    ASSERT_EQ(drain(rd, buf, sizeof(buf)), 0);

    zlb_log_warn("warn %d", side_effect());
    ASSERT_EQ(side_effects, 1);
    zlb_log_error("error %s\n", "with newline");
    drain(rd, buf, sizeof(buf));
    const char *p = expect_line(buf, "WARN", "main", "warn 1");
    p = expect_line(p, "ERROR", "main", "error with newline");
    ASSERT_EQ(*p, '\0');

    zlb_log_level = ZLB_LOG_OFF;
    zlb_log_error("off %d", side_effect());
    ASSERT_EQ(side_effects, 1);
    ASSERT_EQ(drain(rd, buf, sizeof(buf)), 0);

    /* an over-long message is cut, still one line */
    zlb_log_level = ZLB_LOG_INFO;
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    zlb_log_info("%s", big);
    size_t n = drain(rd, buf, sizeof(buf));
    ASSERT_GT(n, 1000);
    ASSERT_LT(n, 1200);
    ASSERT_EQ(buf[n - 1], '\n');
    ASSERT(strchr(buf, '\n') == buf + n - 1);
    ASSERT(strstr(buf, "...\n") != NULL);

    zlb_log_set_fd(2);
    close(fds[0]);
    close(fds[1]);
}

static void log_same(int i)
{
    (void)i;
    zlb_log_warn("connect failed: %s", "refused");
}

static void test_log_repeat_suppression(void)
{
    int fds[2];
    int rd = open_log_pipe(fds);
    char buf[4096];
    zlb_log_level = ZLB_LOG_INFO;

    for (int i = 0; i < 5; i++)
        log_same(i);
    drain(rd, buf, sizeof(buf));
    const char *p = expect_line(buf, "WARN", "main", "connect failed: refused");
    ASSERT_EQ(*p, '\0'); /* four repeats swallowed */

    zlb_log_warn("connect failed: %s", "refused"); /* same text, another call site */
    zlb_log_info("different");
    drain(rd, buf, sizeof(buf));
    p = expect_line(buf, "WARN", "main", "(last message repeated 4 times)");
    p = expect_line(p, "WARN", "main", "connect failed: refused");
    p = expect_line(p, "INFO", "main", "different");
    ASSERT_EQ(*p, '\0');

    /* after the 1 s window the same line is written again, preceded by the count */
    log_same(0);
    drain(rd, buf, sizeof(buf));
    int swallowed = 0;
    uint64_t deadline = zlb_now_ns() + 5 * ZLB_NS_PER_SEC;
    size_t n = 0;
    while (n == 0 && zlb_now_ns() < deadline) {
        usleep(20000);
        log_same(0);
        n = drain(rd, buf, sizeof(buf));
        if (n == 0)
            swallowed++;
    }
    ASSERT_GT(n, 0);
    ASSERT_GT(swallowed, 10);
    char msg[64];
    snprintf(msg, sizeof(msg), "(last message repeated %d times)", swallowed);
    p = expect_line(buf, "WARN", "main", msg);
    p = expect_line(p, "WARN", "main", "connect failed: refused");
    ASSERT_EQ(*p, '\0');

    zlb_log_set_fd(2);
    close(fds[0]);
    close(fds[1]);
}

typedef struct {
    int fd;
    char text[512];
} thread_log_t;

static void *named_logger(void *arg)
{
    thread_log_t *t = arg;
    zlb_thread_set_name("a-rather-long-thread-name");
    zlb_log_info("from thread");
    char kname[32] = "";
    pthread_getname_np(pthread_self(), kname, sizeof(kname));
    snprintf(t->text, sizeof(t->text), "%s|%s", zlb_thread_name(), kname);
    return NULL;
}

static void test_thread_names(void)
{
    ASSERT_STREQ(zlb_thread_name(), "main");
    int fds[2];
    int rd = open_log_pipe(fds);
    zlb_log_level = ZLB_LOG_INFO;
    thread_log_t t = {.fd = fds[1]};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, named_logger, &t), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    /* full name for logs, 15 characters for the kernel */
    ASSERT_STREQ(t.text, "a-rather-long-thread-name|a-rather-long-t");
    char buf[1024];
    drain(rd, buf, sizeof(buf));
    expect_line(buf, "INFO", "a-rather-long-thread-name", "from thread");
    ASSERT_STREQ(zlb_thread_name(), "main"); /* thread-local */
    zlb_log_set_fd(2);
    close(fds[0]);
    close(fds[1]);
}

static void test_log_level_parse(void)
{
    zlb_log_level_t l = ZLB_LOG_OFF;
    ASSERT_EQ(zlb_log_level_parse("trace", &l), 0);
    ASSERT_EQ(l, ZLB_LOG_TRACE);
    ASSERT_EQ(zlb_log_level_parse("WARN", &l), 0);
    ASSERT_EQ(l, ZLB_LOG_WARN);
    ASSERT_EQ(zlb_log_level_parse("error", &l), 0);
    ASSERT_EQ(l, ZLB_LOG_ERROR);
    ASSERT_EQ(zlb_log_level_parse("off", &l), 0);
    ASSERT_EQ(l, ZLB_LOG_OFF);
    ASSERT_EQ(zlb_log_level_parse("verbose", &l), -EINVAL);
    ASSERT_EQ(l, ZLB_LOG_OFF);
    ASSERT_EQ(zlb_log_level_parse("", &l), -EINVAL);
}

/* ---- misc ---------------------------------------------------------------------------------- */

static void test_version_and_alloc(void)
{
    ASSERT(strlen(zlb_version()) > 0);
    ASSERT(strchr(zlb_version(), '.') != NULL);
    ASSERT(strlen(zlb_git_commit()) > 0);

    char *s = zlb_xstrdup("hello");
    ASSERT_STREQ(s, "hello");
    s = zlb_xrealloc(s, 100);
    ASSERT_STREQ(s, "hello");
    free(s);
    int *z = zlb_xcalloc(64, sizeof(int));
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(z[i], 0);
    free(z);
    free(zlb_xmalloc(0));
}

static void test_fatal(void)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        signal(SIGABRT, SIG_DFL);
        zlb_fatal("broken invariant %d", 42);
    }
    close(fds[1]);
    char buf[1024];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGABRT);
    ASSERT(strstr(buf, "test_core.c:") != NULL);
    ASSERT(strstr(buf, "broken invariant 42\n") != NULL);
}

static void test_addr_host_port(void)
{
    static const struct {
        const char *in;
        const char *host;
        int port;
    } cases[] = {
        {"127.0.0.1:8089", "127.0.0.1", 8089},
        {"[::1]:0", "::1", 0},
        {"localhost:80", "localhost", 80},
        {"[fe80::1%eth0]:443", "fe80::1%eth0", 443}, /* a zone: only its presence is checked */
        {"[fe80::1%]:443", NULL, 0},                 /* an empty zone */
        {"[127.0.0.1]:80", NULL, 0},                 /* brackets are for IPv6 only */
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"::1:80", NULL, 0},       /* IPv6 literals need brackets when a port follows */
        {"[::1]", NULL, 0},        /* no port */
        {"[::1]80", NULL, 0},      /* no colon */
        {"[example]:80", NULL, 0}, /* brackets are for IPv6 only */
        {"host:65536", NULL, 0},   /* out of range */
        {"host:", NULL, 0},        /* empty port */
        {":80", NULL, 0},          /* empty host */
        {"host:-1", NULL, 0},      /* sign */
        {"host:080x", NULL, 0},    /* trailing junk */
        {"host:000080", NULL, 0},  /* too many digits */
        {"a b:80", NULL, 0},       /* whitespace */
        {"localhost", NULL, 0},    /* no port */
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(cases); i++) {
        char *host = NULL;
        uint16_t port = 1234;
        int rc = zlb_addr_host_port(cases[i].in, &host, &port);
        if (!cases[i].host) {
            if (rc != -EINVAL)
                ZLB_TEST_FAIL("\"%s\": rc %d, expected -EINVAL", cases[i].in, rc);
            ASSERT(host == NULL);
            continue;
        }
        if (rc != 0)
            ZLB_TEST_FAIL("\"%s\": rc %d", cases[i].in, rc);
        ASSERT_STREQ(host, cases[i].host);
        ASSERT_EQ(port, cases[i].port);
        free(host);
    }
    char *host = NULL;
    uint16_t port;
    ASSERT_EQ(zlb_addr_host_port(NULL, &host, &port), -EINVAL);
}

/* The merged rules: what net took (IPv6 zones, scope ids printed) and what core took
 * ("localhost" for listeners) hold for every caller now. */
static void test_addr_one_vocabulary(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[128];

    ASSERT(zlb_addr_is_ip_literal("127.0.0.1"));
    ASSERT(zlb_addr_is_ip_literal("::1"));
    ASSERT(zlb_addr_is_ip_literal("2001:db8::5"));
    ASSERT(zlb_addr_is_ip_literal("fe80::1%eth0"));
    ASSERT(!zlb_addr_is_ip_literal("fe80::1%"));
    ASSERT(!zlb_addr_is_ip_literal("127.0.0.1%1"));
    ASSERT(!zlb_addr_is_ip_literal("localhost"));
    ASSERT(!zlb_addr_is_ip_literal("[::1]"));
    ASSERT(!zlb_addr_is_ip_literal("1.2.3"));
    ASSERT(!zlb_addr_is_ip_literal(""));
    ASSERT(!zlb_addr_is_ip_literal(NULL));

    /* literals: no names, no brackets; a zone by number or by an existing interface's name */
    ASSERT_EQ(zlb_addr_literal("10.1.2.3", 8080, &ss, &len), 0);
    ASSERT_EQ(len, sizeof(struct sockaddr_in));
    ASSERT_EQ(zlb_addr_port((struct sockaddr *)&ss), 8080);
    ASSERT_EQ(zlb_addr_literal("localhost", 1, &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_literal("[::1]", 1, &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_literal("fe80::1%7", 443, &ss, &len), 0);
    ASSERT_EQ(len, sizeof(struct sockaddr_in6));
    ASSERT_EQ(((struct sockaddr_in6 *)&ss)->sin6_scope_id, 7);
    ASSERT_EQ(zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
    ASSERT_STREQ(buf, "[fe80::1%7]:443");
    unsigned lo = if_nametoindex("lo");
    if (lo) {
        ASSERT_EQ(zlb_addr_literal("fe80::1%lo", 1, &ss, &len), 0);
        ASSERT_EQ(((struct sockaddr_in6 *)&ss)->sin6_scope_id, lo);
    }
    ASSERT_EQ(zlb_addr_literal("fe80::1%no-such-if0", 1, &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_literal("fe80::1%0", 1, &ss, &len), -EINVAL);

    /* parse: what listeners bind; formatted text reads back to the same address */
    static const char *const round[] = {"127.0.0.1:8089", "[::1]:0", "[fe80::1%3]:80",
                                        "[::ffff:10.0.0.1]:1", "0.0.0.0:65535"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(round); i++) {
        ASSERT_EQ(zlb_addr_parse(round[i], &ss, &len), 0);
        ASSERT_EQ(zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
        ASSERT_STREQ(buf, round[i]);
    }
    ASSERT_EQ(zlb_addr_parse("localhost:80", &ss, &len), 0);
    ASSERT_EQ(zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
    ASSERT_STREQ(buf, "127.0.0.1:80");
    ASSERT_EQ(zlb_addr_parse("[localhost]:80", &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_parse("[127.0.0.1]:9000", &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_parse("::1:80", &ss, &len), -EINVAL);
    ASSERT_EQ(zlb_addr_parse("example.test:80", &ss, &len), -EINVAL);
}

static void test_addr(void)
{
    char host[64], buf[64];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    socklen_t len;

    ASSERT_EQ(zlb_addr_split("example.test:443", host, sizeof(host), &port), 0);
    ASSERT_STREQ(host, "example.test");
    ASSERT_EQ(port, 443);
    ASSERT_EQ(zlb_addr_split("[::1]:0", host, sizeof(host), &port), 0);
    ASSERT_STREQ(host, "::1");
    ASSERT_EQ(port, 0);
    static const char *bad[] = {"",       "host",    "host:",   ":80",   "h:65536", "h:8x",
                                "::1:80", "[::1]80", "[::1:80", "[]:80", "h:-1",    "h:123456"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(bad); i++)
        if (zlb_addr_split(bad[i], host, sizeof(host), &port) != -EINVAL)
            ZLB_TEST_FAIL("\"%s\" accepted", bad[i]);
    ASSERT_EQ(zlb_addr_split("a-very-long-host-name:1", host, 8, &port), -EINVAL);

    ASSERT_EQ(zlb_addr_parse("127.0.0.2:8089", &ss, &len), 0);
    ASSERT_EQ(len, sizeof(struct sockaddr_in));
    ASSERT_EQ(zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
    ASSERT_STREQ(buf, "127.0.0.2:8089");
    ASSERT(zlb_addr_is_loopback((struct sockaddr *)&ss));
    ASSERT_EQ(zlb_addr_parse("[::1]:9", &ss, &len), 0);
    ASSERT_EQ(zlb_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
    ASSERT_STREQ(buf, "[::1]:9");
    ASSERT(zlb_addr_is_loopback((struct sockaddr *)&ss));
    zlb_addr_set_port(&ss, 1234);
    ASSERT_EQ(zlb_addr_port((struct sockaddr *)&ss), 1234);
    ASSERT_EQ(zlb_addr_parse("localhost:80", &ss, &len), 0);
    ASSERT(zlb_addr_is_loopback((struct sockaddr *)&ss));
    ASSERT_EQ(zlb_addr_parse("[::ffff:127.0.0.1]:1", &ss, &len), 0);
    ASSERT(zlb_addr_is_loopback((struct sockaddr *)&ss));
    ASSERT_EQ(zlb_addr_parse("10.0.0.1:80", &ss, &len), 0);
    ASSERT(!zlb_addr_is_loopback((struct sockaddr *)&ss));
    ASSERT_EQ(zlb_addr_parse("[::]:80", &ss, &len), 0);
    ASSERT(!zlb_addr_is_loopback((struct sockaddr *)&ss));
    ASSERT_EQ(zlb_addr_parse("example.test:80", &ss, &len), -EINVAL); /* no resolution */
    ASSERT_EQ(zlb_addr_parse("[127.0.0.1]:80", &ss, &len), -EINVAL);
}

static void test_write_file_atomic(void)
{
    char dir[] = "/tmp/zlb-core-XXXXXX", path[128];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/f.txt", dir);
    ASSERT_EQ(zlb_write_file_atomic(path, "first", 5, 0600), 0);
    ASSERT_EQ(zlb_write_file_atomic(path, "second\n", 7, 0640), 0);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0640); /* the mode asked for, whatever the umask */
    ASSERT_EQ(st.st_size, 7);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls %s | wc -l) -eq 1", dir); /* no temp file left */
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(zlb_write_file_atomic("/nonexistent-dir/x", "x", 1, 0644), -ENOENT);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

static void test_buf(void)
{
    zlb_buf_t b;
    zlb_buf_init(&b);
    ASSERT_STREQ(b.data, "");
    size_t expect = 0;
    for (int i = 0; i < 5000; i++) {
        zlb_buf_printf(&b, "%d,", i);
        expect += (size_t)snprintf(NULL, 0, "%d,", i);
    }
    ASSERT_UEQ(b.len, expect);
    ASSERT_UEQ(strlen(b.data), expect);
    ASSERT(strncmp(b.data, "0,1,2,", 6) == 0);
    ASSERT(strcmp(b.data + b.len - 5, "4999,") == 0);
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    zlb_buf_printf(&b, "%s", big);
    ASSERT_UEQ(b.len, expect + sizeof(big) - 1);
    zlb_buf_dispose(&b);

    zlb_buf_t z = {0}; /* never initialised */
    zlb_buf_printf(&z, "%s-%d", "a", 1);
    ASSERT_STREQ(z.data, "a-1");
    zlb_buf_dispose(&z);

    zlb_buf_init(&z); /* one append far larger than the initial capacity */
    zlb_buf_printf(&z, "<%s>", big);
    ASSERT_UEQ(z.len, sizeof(big) + 1);
    ASSERT_UEQ(strlen(z.data), z.len);
    ASSERT(z.data[0] == '<' && z.data[z.len - 1] == '>' && z.data[z.len - 2] == 'x');
    zlb_buf_dispose(&z);
}

static void test_format_double(void)
{
    char out[40];
    zlb_format_double(6.401296076, out, sizeof(out)); /* %.17g: 6.4012960760000004 */
    ASSERT_STREQ(out, "6.401296076");
    zlb_format_double(0.1, out, sizeof(out));
    ASSERT_STREQ(out, "0.1");
    zlb_format_double(0, out, sizeof(out));
    ASSERT_STREQ(out, "0");
    zlb_format_double(200, out, sizeof(out));
    ASSERT_STREQ(out, "200");
    zlb_format_double(-3, out, sizeof(out));
    ASSERT_STREQ(out, "-3");
    zlb_format_double(1e21, out, sizeof(out));
    ASSERT_STREQ(out, "1e+21");
    zlb_format_double(1.0 / 3, out, sizeof(out));
    ASSERT(strtod(out, NULL) == 1.0 / 3);
}

/* A report writer killed between mkostemp and rename leaves "<report>.XXXXXX": the next run
 * removes exactly those, and only when older than itself. */
static void test_remove_stale_temps(void)
{
    char dir[] = "/tmp/zlb-core-XXXXXX", path[128], p[192];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/report.json", dir);
    static const char *const names[] = {
        "report.json.aB3dE9", "report.json.zzzzzz", "report.json.abc",    "report.json.ab-d_f",
        "report.json",        "other.json.aB3dE9",  "report.json.aB3dE9x"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(names); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "w");
        ASSERT(f != NULL);
        fclose(f);
    }
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(names); i++) {
        if (i == 1)
            continue; /* "zzzzzz" stays new: a writer of this run */
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        ASSERT_EQ(utimensat(AT_FDCWD, p, old, 0), 0);
    }
    double now = (double)zlb_wall_ns() / 1e9;
    int n = zlb_remove_stale_temps(path, now - 1, NULL, NULL);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls %s | tr '\\n' ' ' >&2; echo >&2", dir);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(n, 1);
    snprintf(p, sizeof(p), "%s/report.json.aB3dE9", dir);
    ASSERT(access(p, F_OK) != 0);
    for (size_t i = 1; i < ZLB_ARRAY_LEN(names); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        ASSERT(access(p, F_OK) == 0);
    }
    ASSERT_EQ(zlb_remove_stale_temps("/nonexistent-dir/x", now, NULL, NULL), -ENOENT);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* A log line written while a live status line is shown clears it, prints, and draws it again,
 * so the two never share a terminal line. */
static void test_log_live_line(void)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    zlb_log_set_fd(fds[1]);
    zlb_log_live("[ 1.0s] live one", false);
    zlb_log_warn("from a thread: %d", 42);
    zlb_log_live("[ 2.0s] live two", false);
    zlb_log_live("[ 3.0s] last", true);
    zlb_log_info("after the end");
    zlb_log_set_fd(2);
    close(fds[1]);
    char buf[1024];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    fprintf(stderr, "written: ");
    for (ssize_t i = 0; i < n; i++)
        fprintf(stderr, buf[i] == '\r' ? "\\r" : buf[i] == '\033' ? "\\e" : "%c", buf[i]);
    fprintf(stderr, "\n");
    static const char head[] = "\r\033[K[ 1.0s] live one\r\033[K";
    ASSERT(strncmp(buf, head, strlen(head)) == 0); /* cleared before the log line */
    char *warn = strstr(buf, "WARN");
    ASSERT(warn != NULL);
    char *eol = strchr(warn, '\n');
    ASSERT(eol != NULL);
    ASSERT(strstr(warn, "from a thread: 42\n") == eol - 17);
    static const char redraw[] = "[ 1.0s] live one\r\033[K[ 2.0s] live two";
    ASSERT(strncmp(eol + 1, redraw, strlen(redraw)) == 0); /* redrawn after it */
    ASSERT(strstr(buf, "[ 3.0s] last\n") != NULL);
    char *after = strstr(buf, "after the end");
    ASSERT(after != NULL);
    ASSERT(strstr(buf, "last\n") < after && !strstr(after, "\r")); /* no live line any more */
}

int main(void)
{
    RUN_TEST(test_addr);
    RUN_TEST(test_addr_host_port);
    RUN_TEST(test_addr_one_vocabulary);
    RUN_TEST(test_buf);
    RUN_TEST(test_format_double);
    RUN_TEST(test_write_file_atomic);
    RUN_TEST(test_remove_stale_temps);
    RUN_TEST(test_log_live_line);
    RUN_TEST(test_heap_order_and_ties);
    RUN_TEST(test_heap_random_remove);
    RUN_TEST(test_heap_reserve_and_growth);
    RUN_TEST(test_list_splice);
    RUN_TEST(test_parse_duration);
    RUN_TEST(test_parse_size);
    RUN_TEST(test_format_duration);
    RUN_TEST(test_log_filtering);
    RUN_TEST(test_log_repeat_suppression);
    RUN_TEST(test_thread_names);
    RUN_TEST(test_log_level_parse);
    RUN_TEST(test_version_and_alloc);
    RUN_TEST(test_fatal);
    return 0;
}
