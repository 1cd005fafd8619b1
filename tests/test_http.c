/* test_http.c -- the response parser: framing, pipelining, every split point, errors, limits. */
#include "http/http.h"
#include "test.h"

#include <stdbool.h>

/* What a connection's reader saw from a byte stream: each response that ended (status,
 * keep-alive, offset of its end) and how the stream ended. */
#define MAX_RESP 16
typedef struct outcome {
    int n;
    uint16_t status[MAX_RESP];
    bool keep_alive[MAX_RESP];
    size_t end[MAX_RESP];
    zlb_http_result_t last; /* MORE (stream ended mid-response), DONE (clean) or ERROR */
    zlb_http_error_t error; /* when ERROR */
    size_t error_at;        /* offset of the error in the stream */
} outcome_t;

/* Feeds buf to the parser as a reader would, in pieces cut at the given offsets (sorted, each in
 * (0, len)); eof: the peer closes after the last byte. head: every request was HEAD. */
static void feed(const char *buf, size_t len, const size_t *cuts, int ncuts, bool eof, bool head,
                 const zlb_http_limits_t *lim, outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, lim, head);
    size_t off = 0;
    o->last = ZLB_HTTP_DONE;
    for (int k = 0; k <= ncuts; k++) {
        size_t stop = k < ncuts ? cuts[k] : len;
        while (off < stop) {
            size_t used = 0;
            zlb_http_result_t r = zlb_http_parse(&p, (const uint8_t *)buf + off, stop - off, &used);
            ASSERT(used <= stop - off);
            off += used;
            if (r == ZLB_HTTP_ERROR) {
                o->last = r;
                o->error = (zlb_http_error_t)p.error;
                o->error_at = off;
                return;
            }
            if (r == ZLB_HTTP_DONE) {
                ASSERT_LT(o->n, MAX_RESP);
                o->status[o->n] = p.status;
                o->keep_alive[o->n] = p.keep_alive;
                o->end[o->n++] = off;
                zlb_http_parser_init(&p, lim, head);
                o->last = ZLB_HTTP_DONE;
                continue;
            }
            ASSERT_UEQ(off, stop); /* MORE consumes everything */
            o->last = ZLB_HTTP_MORE;
        }
    }
    if (!p.seen_any)
        o->last = ZLB_HTTP_DONE;
    if (eof && p.seen_any) {
        zlb_http_result_t r = zlb_http_parse_eof(&p);
        if (r == ZLB_HTTP_DONE) {
            o->status[o->n] = p.status;
            o->keep_alive[o->n] = p.keep_alive;
            o->end[o->n++] = len;
        } else {
            o->error = (zlb_http_error_t)p.error;
            o->error_at = len;
        }
        o->last = r;
    }
}

static void same_outcome(const outcome_t *a, const outcome_t *b, const char *what)
{
    if (a->n != b->n || a->last != b->last || a->error != b->error || a->error_at != b->error_at) {
        ZLB_TEST_FAIL("%s: whole n=%d last=%d error=%s@%zu, split n=%d last=%d error=%s@%zu", what,
                      a->n, a->last, zlb_http_error_name(a->error), a->error_at, b->n, b->last,
                      zlb_http_error_name(b->error), b->error_at);
    }
    for (int i = 0; i < a->n; i++) {
        ASSERT_EQ(a->status[i], b->status[i]);
        ASSERT_EQ(a->keep_alive[i], b->keep_alive[i]);
        ASSERT_UEQ(a->end[i], b->end[i]);
    }
}

/* The whole stream at once, then cut at every byte boundary, then one byte per read: all the
 * same. Returns the whole-buffer outcome. */
static outcome_t check_splits(const char *buf, bool eof, bool head, const zlb_http_limits_t *lim)
{
    size_t len = strlen(buf);
    outcome_t whole, split;
    feed(buf, len, NULL, 0, eof, head, lim, &whole);
    for (size_t c = 1; c < len; c++) {
        feed(buf, len, &c, 1, eof, head, lim, &split);
        same_outcome(&whole, &split, "one cut");
    }
    size_t *cuts = malloc(len * sizeof(*cuts));
    ASSERT(cuts != NULL);
    for (size_t c = 1; c < len; c++)
        cuts[c - 1] = c;
    feed(buf, len, cuts, len > 0 ? (int)(len - 1) : 0, eof, head, lim, &split);
    same_outcome(&whole, &split, "byte by byte");
    free(cuts);
    return whole;
}

static void expect_error(const char *buf, zlb_http_error_t e, const zlb_http_limits_t *lim)
{
    outcome_t o = check_splits(buf, true, false, lim);
    if (o.last != ZLB_HTTP_ERROR || o.error != e)
        ZLB_TEST_FAIL("expected %s, got last=%d error=%s for:\n%s", zlb_http_error_name(e), o.last,
                      zlb_http_error_name(o.error), buf);
    char shown[48];
    size_t i = 0;
    for (; buf[i] && i < sizeof(shown) - 1; i++)
        shown[i] = (buf[i] == '\r' || buf[i] == '\n') ? '|' : buf[i];
    shown[i] = '\0';
    fprintf(stderr, "   %-18s at %3zu: %s\n", zlb_http_error_name(o.error), o.error_at, shown);
}

static void test_state_size(void)
{
    fprintf(stderr, "   sizeof(zlb_http_parser_t) = %zu (contract: <= 48)\n",
            sizeof(zlb_http_parser_t));
    ASSERT_LE(sizeof(zlb_http_parser_t), 48);
}

static void test_content_length(void)
{
    const char *r = "HTTP/1.1 200 OK\r\nServer: x\r\ncontent-LENGTH: 5\r\n"
                    "Content-Type: text/plain\r\n\r\nhello";
    outcome_t o = check_splits(r, false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.status[0], 200);
    ASSERT(o.keep_alive[0]);
    ASSERT_UEQ(o.end[0], strlen(r));
    ASSERT_EQ(o.last, ZLB_HTTP_DONE);

    /* Content-Length 0, repeated identical values and an identical list are one length. */
    o = check_splits("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.status[0], 404);
    o = check_splits("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length:3 \r\n\r\nabc", false,
                     false, NULL);
    ASSERT_EQ(o.n, 1);
    const char *list = "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc";
    o = check_splits(list, false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_UEQ(o.end[0], strlen(list));

    /* Bare LF line endings are read too. */
    o = check_splits("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.last, ZLB_HTTP_DONE);
}

static void test_chunked(void)
{
    const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;name=value;q=\"x\"\r\nhello\r\n"
                    "A \r\n0123456789\r\n"
                    "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                    "0;last\r\nExpires: never\r\nX-Checksum: 1234\r\n\r\n";
    outcome_t o = check_splits(r, false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.status[0], 200);
    ASSERT(o.keep_alive[0]);
    ASSERT_UEQ(o.end[0], strlen(r));

    /* Only the final coding counts; "gzip, chunked" is chunked, case-insensitively. */
    o = check_splits("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n"
                     "\r\n3\r\nabc\r\n0\r\n\r\n",
                     false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT(o.keep_alive[0]);

    /* "chunked, gzip": chunked is not last, so the close delimits the body. */
    o = check_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n",
                     true, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT(!o.keep_alive[0]);

    /* Transfer-Encoding overrides Content-Length (RFC 9112 6.3), and the connection is not
     * reused after such a message. */
    const char *both =
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhi\r\n0\r\n\r\n";
    o = check_splits(both, false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT(!o.keep_alive[0]);
    ASSERT_UEQ(o.end[0], strlen(both));
}

static void test_close_delimited(void)
{
    const char *r = "HTTP/1.1 200 OK\r\nServer: old\r\n\r\nthe body runs to the close";
    outcome_t o = check_splits(r, false, false, NULL);
    ASSERT_EQ(o.n, 0);
    ASSERT_EQ(o.last, ZLB_HTTP_MORE);
    o = check_splits(r, true, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.last, ZLB_HTTP_DONE);
    ASSERT(!o.keep_alive[0]);
    ASSERT_UEQ(o.end[0], strlen(r));
}

static void test_head_and_no_body(void)
{
    /* HEAD: the header fields describe the body a GET would get; none follows. */
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    outcome_t o = check_splits(r, false, true, NULL);
    ASSERT_EQ(o.n, 2);
    ASSERT_UEQ(o.end[0], strlen("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
    ASSERT_UEQ(o.end[1], strlen(r));
    ASSERT(o.keep_alive[1]);

    /* 204 and 304 carry no body whatever they say; the next response follows at once. */
    r = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    o = check_splits(r, false, false, NULL);
    ASSERT_EQ(o.n, 3);
    ASSERT_EQ(o.status[0], 204);
    ASSERT_EQ(o.status[1], 304);
    ASSERT_EQ(o.status[2], 200);
    ASSERT_UEQ(o.end[2], strlen(r));
}

static void test_interim(void)
{
    const char *r = "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                    "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    outcome_t o = check_splits(r, false, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.status[0], 201);
    ASSERT_UEQ(o.end[0], strlen(r));

    /* 101 ends HTTP on the connection: a final response, never reused. */
    o = check_splits("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, false,
                     NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT_EQ(o.status[0], 101);
    ASSERT(!o.keep_alive[0]);
}

static void test_keep_alive(void)
{
    outcome_t o = check_splits("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                               false, false, NULL);
    ASSERT(!o.keep_alive[0]);
    o = check_splits("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n",
                     false, false, NULL);
    ASSERT(!o.keep_alive[0]);
    o = check_splits("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", false,
                     false, NULL);
    ASSERT(o.keep_alive[0]);
    o = check_splits("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, NULL);
    ASSERT(!o.keep_alive[0]);
    o = check_splits("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                     false, false, NULL);
    ASSERT(o.keep_alive[0]);
    /* keep-alive with a body delimited by the close cannot be kept. */
    o = check_splits("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nxyz", true, false, NULL);
    ASSERT_EQ(o.n, 1);
    ASSERT(!o.keep_alive[0]);
}

/* Several responses in one stream, every framing, cut at every boundary. */
static void test_pipelined(void)
{
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                    "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n"
                    "Trailer-A: 1\r\n\r\n"
                    "HTTP/1.1 204 No Content\r\n\r\n"
                    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
                    "HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n"
                    "HTTP/1.0 200 OK\r\n\r\nclose-delimited tail";
    outcome_t o = check_splits(r, true, false, NULL);
    ASSERT_EQ(o.n, 6);
    uint16_t want[] = {200, 500, 204, 304, 302, 200};
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(o.status[i], want[i]);
    ASSERT(!o.keep_alive[5]);
    ASSERT_UEQ(o.end[5], strlen(r));
    fprintf(stderr, "   6 responses, %zu bytes, same result at every cut and byte by byte\n",
            strlen(r));

    /* Two cuts at every pair of points over a shorter stream. */
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    size_t len = strlen(s);
    outcome_t whole, split;
    feed(s, len, NULL, 0, false, false, NULL, &whole);
    ASSERT_EQ(whole.n, 2);
    for (size_t i = 1; i < len; i++) {
        for (size_t j = i + 1; j < len; j++) {
            size_t cuts[2] = {i, j};
            feed(s, len, cuts, 2, false, false, NULL, &split);
            same_outcome(&whole, &split, "two cuts");
        }
    }
}

static void test_malformed(void)
{
    expect_error("HTTP/2 200 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("http/1.1 200 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1 20 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1 099 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1 2000 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1  200 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1 200\rX\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("\r\nHTTP/1.1 200 OK\r\n\r\n", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("garbage", ZLB_HTTP_ERR_MALFORMED_STATUS, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", ZLB_HTTP_ERR_BAD_HEADER,
                 NULL);
    expect_error("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", ZLB_HTTP_ERR_BAD_HEADER, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n folded\r\n\r\nhello",
                 ZLB_HTTP_ERR_BAD_HEADER, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\rX\r\n\r\n", ZLB_HTTP_ERR_BAD_HEADER, NULL);
    expect_error("HTTP/1.1 200 OK\r\n\rX", ZLB_HTTP_ERR_BAD_HEADER, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\nhello",
                 ZLB_HTTP_ERR_BAD_CONTENT_LENGTH, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ZLB_HTTP_ERR_BAD_CONTENT_LENGTH,
                 NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", ZLB_HTTP_ERR_BAD_CONTENT_LENGTH,
                 NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", ZLB_HTTP_ERR_BAD_CONTENT_LENGTH,
                 NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
                 ZLB_HTTP_ERR_BAD_CONTENT_LENGTH, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                 ZLB_HTTP_ERR_BAD_CONTENT_LENGTH, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                 ZLB_HTTP_ERR_BAD_CONTENT_LENGTH, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rX",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "10000000000000000\r\n",
                 ZLB_HTTP_ERR_BAD_CHUNK, NULL);
}

static void test_limits(void)
{
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"; /* 38 bytes */
    size_t hl = strlen(head);
    zlb_http_limits_t lim = {.max_header_bytes = (uint32_t)hl, .max_body_bytes = 4};
    outcome_t o = check_splits(head, false, false, &lim);
    ASSERT_EQ(o.n, 1);
    lim.max_header_bytes = (uint32_t)hl - 1;
    expect_error(head, ZLB_HTTP_ERR_HEADER_TOO_LARGE, &lim);
    o = check_splits(head, false, false, &lim);
    ASSERT_UEQ(o.error_at, hl - 1); /* fails at the first byte past the limit */

    lim.max_header_bytes = 0; /* the default */
    o = check_splits("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", false, false, &lim);
    ASSERT_EQ(o.n, 1);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde", ZLB_HTTP_ERR_BODY_TOO_LARGE,
                 &lim);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\nabc\r\n",
                 ZLB_HTTP_ERR_BODY_TOO_LARGE, &lim);
    o = check_splits("HTTP/1.1 200 OK\r\n\r\nabcd", true, false, &lim);
    ASSERT_EQ(o.n, 1);
    expect_error("HTTP/1.1 200 OK\r\n\r\nabcde", ZLB_HTTP_ERR_BODY_TOO_LARGE, &lim);

    /* Trailers and chunk extensions are bounded too (each by max_header_bytes). */
    lim = (zlb_http_limits_t){.max_header_bytes = 64};
    char big[512];
    snprintf(big, sizeof(big),
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: %080d\r\n\r\n", 0);
    expect_error(big, ZLB_HTTP_ERR_HEADER_TOO_LARGE, &lim);
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;%080d\r\n",
             0);
    expect_error(big, ZLB_HTTP_ERR_BAD_CHUNK, &lim);
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Long: %080d\r\n\r\n", 0);
    expect_error(big, ZLB_HTTP_ERR_HEADER_TOO_LARGE, &lim);
}

static void test_truncated(void)
{
    expect_error("HTTP/1.1 200 OK\r\nContent-Len", ZLB_HTTP_ERR_TRUNCATED, NULL);
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ZLB_HTTP_ERR_TRUNCATED, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                 ZLB_HTTP_ERR_TRUNCATED, NULL);
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
                 ZLB_HTTP_ERR_TRUNCATED, NULL);
    expect_error("HTTP/1.1 100 Continue\r\n\r\n", ZLB_HTTP_ERR_TRUNCATED, NULL);
    expect_error("H", ZLB_HTTP_ERR_TRUNCATED, NULL);

    /* The close before any byte of a response is for the reader to judge: seen_any stays false. */
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, NULL, false);
    ASSERT(!p.seen_any);
    ASSERT_EQ(zlb_http_parse_eof(&p), ZLB_HTTP_ERROR);
    ASSERT_EQ(p.error, ZLB_HTTP_ERR_TRUNCATED);
    ASSERT_STREQ(zlb_http_error_name(ZLB_HTTP_ERR_TRUNCATED), "truncated");
}

/* After DONE or ERROR the parser consumes nothing more until init. */
static void test_after_end(void)
{
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, NULL, false);
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1";
    size_t used = 0;
    ASSERT_EQ(zlb_http_parse(&p, (const uint8_t *)r, strlen(r), &used), ZLB_HTTP_DONE);
    ASSERT_UEQ(used, strlen(r) - 8);
    ASSERT_EQ(zlb_http_parse(&p, (const uint8_t *)r + used, 8, &used), ZLB_HTTP_DONE);
    ASSERT_UEQ(used, 0);
    ASSERT_EQ(zlb_http_parse_eof(&p), ZLB_HTTP_DONE);
    zlb_http_parser_init(&p, NULL, false);
    ASSERT_EQ(zlb_http_parse(&p, (const uint8_t *)"X", 1, &used), ZLB_HTTP_ERROR);
    ASSERT_EQ(zlb_http_parse(&p, (const uint8_t *)"HTTP", 4, &used), ZLB_HTTP_ERROR);
    ASSERT_UEQ(used, 0);
    ASSERT_EQ(zlb_http_parse_eof(&p), ZLB_HTTP_ERROR);
    ASSERT_EQ(p.error, ZLB_HTTP_ERR_MALFORMED_STATUS);
}

int main(void)
{
    RUN_TEST(test_state_size);
    RUN_TEST(test_content_length);
    RUN_TEST(test_chunked);
    RUN_TEST(test_close_delimited);
    RUN_TEST(test_head_and_no_body);
    RUN_TEST(test_interim);
    RUN_TEST(test_keep_alive);
    RUN_TEST(test_pipelined);
    RUN_TEST(test_malformed);
    RUN_TEST(test_limits);
    RUN_TEST(test_truncated);
    RUN_TEST(test_after_end);
    return 0;
}
