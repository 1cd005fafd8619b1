/* http.c -- the target's http mode: a bounded request parser and in-order (delayed) responses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/serve_internal.h"

/* Largest Content-Length accepted; anything bigger is a malformed request to this server. */
#define MAX_CONTENT_LENGTH (1ull << 50)
/* A request head (request line and header fields) longer than this closes the connection: a
 * benchmark target must not grow, or scan forever, for a client that sends garbage. */
#define MAX_REQUEST_HEAD (16u * 1024u)
/* Chunked bodies are sent in chunks of this many bytes. */
#define CHUNK_SIZE 16384u

const char tgt_http_response[] = "HTTP/1.1 200 OK\r\n"
                                 "Content-Length: 2\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "\r\n"
                                 "ok";
const size_t tgt_http_response_len = sizeof(tgt_http_response) - 1;

/* ---- the responses (start) ----------------------------------------------------------------- */

static const char *reason(uint16_t status)
{
    static const struct {
        uint16_t code;
        const char *text;
    } known[] = {{200, "OK"},
                 {201, "Created"},
                 {202, "Accepted"},
                 {204, "No Content"},
                 {206, "Partial Content"},
                 {301, "Moved Permanently"},
                 {302, "Found"},
                 {304, "Not Modified"},
                 {400, "Bad Request"},
                 {401, "Unauthorized"},
                 {403, "Forbidden"},
                 {404, "Not Found"},
                 {429, "Too Many Requests"},
                 {500, "Internal Server Error"},
                 {502, "Bad Gateway"},
                 {503, "Service Unavailable"},
                 {504, "Gateway Timeout"}};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(known); i++)
        if (known[i].code == status)
            return known[i].text;
    return "Status";
}

void tgt_http_free(zlb_serve_t *t)
{
    tgt_http_resp_t *r = &t->http;
    for (int k = 0; k < TGT_HTTP_KINDS; k++) {
        free(r->hdr[k]);
        free(r->rep[k]);
    }
    free(r->body_raw);
    free(r->body_chunked);
    memset(r, 0, sizeof(*r));
}

int tgt_http_build(zlb_serve_t *t, const zlb_serve_http_opts_t *o)
{
    zlb_serve_http_opts_t d = ZLB_SERVE_HTTP_DEFAULTS;
    tgt_http_resp_t *r = &t->http;

    if (!o)
        o = &d;
    if (o->status < 200 || o->status > 599 || o->body_size > ZLB_SERVE_HTTP_MAX_BODY ||
        (o->delay_max_ns && o->delay_max_ns < o->delay_ns))
        return -EINVAL;
    bool no_body = o->status == 204 || o->status == 304;
    size_t bsize = no_body ? 0 : (size_t)o->body_size;
    r->delay_ns = o->delay_ns;
    r->delay_span_ns = o->delay_max_ns > o->delay_ns ? o->delay_max_ns - o->delay_ns : 0;

    /* The body "okok...": the default 2-byte one reads "ok". */
    r->body_raw = malloc(bsize ? bsize : 1);
    if (!r->body_raw)
        goto nomem;
    for (size_t i = 0; i < bsize; i++)
        r->body_raw[i] = "ok"[i & 1];
    size_t nchunks = (bsize + CHUNK_SIZE - 1) / CHUNK_SIZE;
    size_t chunked_len = 0;
    if (o->chunked && !no_body) {
        r->body_chunked = malloc(bsize + nchunks * 12 + 8);
        if (!r->body_chunked)
            goto nomem;
        for (size_t off = 0; off < bsize; off += CHUNK_SIZE) {
            size_t n = bsize - off < CHUNK_SIZE ? bsize - off : CHUNK_SIZE;
            chunked_len += (size_t)sprintf(r->body_chunked + chunked_len, "%zx\r\n", n);
            memcpy(r->body_chunked + chunked_len, r->body_raw + off, n);
            chunked_len += n;
            memcpy(r->body_chunked + chunked_len, "\r\n", 2);
            chunked_len += 2;
        }
        memcpy(r->body_chunked + chunked_len, "0\r\n\r\n", 5);
        chunked_len += 5;
    }

    for (int k = 0; k < TGT_HTTP_KINDS; k++) {
        bool head = k & TGT_HTTP_KIND_HEAD, close = k & TGT_HTTP_KIND_CLOSE;
        bool http10 = k & TGT_HTTP_KIND_HTTP10;
        /* RFC 9112 7.1: never chunked to an HTTP/1.0 client, which could not read it. */
        bool chunked = o->chunked && !no_body && !http10;
        char framing[64] = "";
        if (chunked)
            snprintf(framing, sizeof(framing), "Transfer-Encoding: chunked\r\n");
        else if (!no_body)
            snprintf(framing, sizeof(framing), "Content-Length: %zu\r\n", bsize);
        /* HTTP/1.0 clients keep a connection only when told so; HTTP/1.1 ones are told when
         * it ends (RFC 9112 9.6). */
        const char *conn =
            close ? "Connection: close\r\n" : (http10 ? "Connection: keep-alive\r\n" : "");
        char hdr[256];
        int hl =
            snprintf(hdr, sizeof(hdr), "HTTP/1.1 %u %s\r\n%sContent-Type: text/plain\r\n%s\r\n",
                     (unsigned)o->status, reason(o->status), framing, conn);
        r->hdr[k] = zlb_xstrdup(hdr);
        r->hdr_len[k] = (size_t)hl;
        size_t blen = 0;
        r->body[k] = NULL;
        if (!head && !no_body) {
            r->body[k] = chunked ? r->body_chunked : r->body_raw;
            blen = chunked ? chunked_len : bsize;
        }
        r->resp_len[k] = (size_t)hl + blen;
        if (r->resp_len[k] <= ZLB_TARGET_READ_BUF / 2) {
            size_t m = ZLB_TARGET_READ_BUF / r->resp_len[k];
            r->rep[k] = malloc(m * r->resp_len[k]);
            if (!r->rep[k])
                goto nomem;
            for (size_t i = 0; i < m; i++) {
                memcpy(r->rep[k] + i * r->resp_len[k], hdr, (size_t)hl);
                if (blen)
                    memcpy(r->rep[k] + i * r->resp_len[k] + hl, r->body[k], blen);
            }
            r->rep_len[k] = m * r->resp_len[k];
        }
    }
    return 0;

nomem:
    tgt_http_free(t);
    return -ENOMEM;
}

/* ---- per connection ------------------------------------------------------------------------ */

static void http_timer_cb(zlb_loop_t *loop, zlb_timer_t *timer)
{
    (void)loop;
    tgt_http_run(ZLB_CONTAINER_OF(timer, tgt_conn_t, http_timer));
}

static void request_reset(tgt_http_t *h)
{
    h->content_len = 0;
    h->head_bytes = 0;
    h->line_len = 0;
    h->tail_len = 0;
    h->first_line = true;
    h->has_cl = h->close = h->keep_alive = h->http10 = h->head = h->in_body = false;
}

void tgt_http_conn_init(tgt_conn_t *c)
{
    memset(&c->http, 0, sizeof(c->http));
    request_reset(&c->http);
    zlb_timer_init(&c->http_timer, http_timer_cb);
}

void tgt_http_conn_dispose(tgt_conn_t *c)
{
    if (c->th && c->th->loop)
        zlb_timer_stop(c->th->loop, &c->http_timer);
    free(c->http.in);
    c->http.in = NULL;
}

static uint64_t next_random(tgt_thread_t *th)
{
    uint64_t x = th->rng ? th->rng : 0x9e3779b97f4a7c15ull + (uint64_t)th->index;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    th->rng = x;
    return x;
}

/* Queues the response to a complete request. False when the queue has no room for it. */
static bool enqueue(tgt_conn_t *c, uint8_t kind)
{
    tgt_http_t *h = &c->http;
    const tgt_http_resp_t *r = &c->th->target->http;
    uint64_t due = 0;

    if (r->delay_ns || r->delay_span_ns) {
        due = zlb_loop_now(c->th->loop) + r->delay_ns;
        if (r->delay_span_ns)
            due += next_random(c->th) % (r->delay_span_ns + 1);
    }
    if (h->q_n > 0) {
        tgt_http_run_t *last = &h->q[(h->q_head + h->q_n - 1) % TGT_HTTP_QUEUE];
        bool started = h->q_n == 1 && h->q_sent > 0; /* partly written: its size is fixed */
        if (last->kind == kind && !started && (last->due == due || h->q_n == TGT_HTTP_QUEUE)) {
            last->count++;
            if (due > last->due)
                last->due = due;
            return true;
        }
    }
    if (h->q_n == TGT_HTTP_QUEUE)
        return false;
    h->q[(h->q_head + h->q_n) % TGT_HTTP_QUEUE] =
        (tgt_http_run_t){.due = due, .count = 1, .kind = kind};
    h->q_n++;
    return true;
}

/* The request ended: its response is owed. */
static bool request_done(tgt_conn_t *c)
{
    tgt_http_t *h = &c->http;
    bool close = h->close || (h->http10 && !h->keep_alive);
    uint8_t kind =
        (uint8_t)((h->head ? TGT_HTTP_KIND_HEAD : 0) | (close ? TGT_HTTP_KIND_CLOSE : 0) |
                  (h->http10 ? TGT_HTTP_KIND_HTTP10 : 0));
    if (!enqueue(c, kind))
        return false;
    if (close)
        c->closing = true;
    request_reset(h);
    return true;
}

static const char *trim(const char *s, const char *end, const char **out_end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *out_end = end;
    return s;
}

static bool token_eq(const char *s, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - s) == n && strncasecmp(s, lit, n) == 0;
}

static bool is_tchar(char ch)
{
    unsigned char u = (unsigned char)ch;
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9'))
        return true;
    return u != 0 && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

/* "METHOD SP target SP HTTP/1.x": the method from line[] (kept whole: it comes first), the
 * version from tail[] (the line's last bytes, kept however long the target was). */
static int request_line(tgt_http_t *h, const char *s, const char *end)
{
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    if (!sp || sp == s || h->tail_len < 8)
        return -EPROTO;
    for (const char *p = s; p < sp; p++)
        if (!is_tchar(*p))
            return -EPROTO;
    const char *version = h->tail + h->tail_len - 8;
    if (memcmp(version, "HTTP/1.1", 8) == 0)
        h->http10 = false;
    else if (memcmp(version, "HTTP/1.0", 8) == 0)
        h->http10 = true;
    else
        return -EPROTO;
    /* a target and its spaces between the method and the version */
    if (h->line_len < 96 && (size_t)(end - sp) < 1 + 1 + 1 + 8)
        return -EPROTO;
    h->head = sp - s == 4 && memcmp(s, "HEAD", 4) == 0;
    return 0;
}

/* One complete line (without its "\n"); lines longer than line[] were cut, which loses
 * nothing this parser looks at. 0, 1 when the request ended and the queue was full, or
 * -EPROTO for garbage. */
static int http_line(tgt_conn_t *c)
{
    tgt_http_t *h = &c->http;
    const char *s = h->line, *end = h->line + h->line_len;
    bool cut = h->line_len == sizeof(h->line);

    if (end > s && end[-1] == '\r')
        end--;
    if (h->tail_len > 0 && h->tail[h->tail_len - 1] == '\r')
        h->tail_len--;
    h->line_len = 0;
    if (h->first_line) {
        if (end == s && !cut) {
            h->tail_len = 0;
            return 0; /* RFC 9112 2.2: a server should skip empty lines before a request */
        }
        int err = request_line(h, s, end);
        h->tail_len = 0;
        h->first_line = false;
        return err;
    }
    h->tail_len = 0;
    if (end == s) {
        if (h->content_len > 0) {
            h->in_body = true;
            h->body_left = h->content_len;
            return 0;
        }
        return request_done(c) ? 0 : 1;
    }

    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s)
        return -EPROTO;
    for (const char *p = s; p < colon; p++) /* no space before the colon (RFC 9112 5.1) */
        if (!is_tchar(*p))
            return -EPROTO;
    const char *val_end;
    const char *val = trim(colon + 1, end, &val_end);

    if (token_eq(s, colon, "content-length")) {
        uint64_t v = 0;
        if (val == val_end || cut)
            return -EPROTO;
        for (const char *p = val; p < val_end; p++) {
            if (*p < '0' || *p > '9')
                return -EPROTO;
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > MAX_CONTENT_LENGTH)
                return -EPROTO;
        }
        if (h->has_cl && v != h->content_len) /* a smuggling attempt or a broken client */
            return -EPROTO;
        h->content_len = v;
        h->has_cl = true;
    } else if (token_eq(s, colon, "connection")) {
        while (val < val_end) {
            const char *comma = memchr(val, ',', (size_t)(val_end - val));
            const char *tok_end = comma ? comma : val_end, *t_end;
            const char *tok = trim(val, tok_end, &t_end);
            if (token_eq(tok, t_end, "close"))
                h->close = true;
            else if (token_eq(tok, t_end, "keep-alive"))
                h->keep_alive = true;
            val = comma ? comma + 1 : val_end;
        }
    } else if (token_eq(s, colon, "transfer-encoding")) {
        /* Chunked request bodies are not parsed: answer this request, then close rather than
         * read its body as requests. */
        h->close = true;
    }
    return 0;
}

/* Keeps the last bytes of the current line in tail[] (the version and a CR), whatever its
 * length and however it was cut into reads. */
static void tail_add(tgt_http_t *h, const char *p, size_t n)
{
    const size_t cap = sizeof(h->tail);
    if (n >= cap) {
        memcpy(h->tail, p + n - cap, cap);
        h->tail_len = (uint8_t)cap;
        return;
    }
    size_t keep = h->tail_len + n > cap ? cap - n : h->tail_len;
    memmove(h->tail, h->tail + h->tail_len - keep, keep);
    memcpy(h->tail + keep, p, n);
    h->tail_len = (uint8_t)(keep + n);
}

/* Parses buf[0, len): each complete request queues its response. Stops after a request that
 * closes the connection (what follows it is dropped), or when the queue is full: the rest is
 * kept in h->in (copied when it lies in the shared read buffer) for tgt_http_run to resume.
 * 0 or -EPROTO. */
static int consume(tgt_conn_t *c, const char *buf, size_t len, bool from_stash)
{
    tgt_http_t *h = &c->http;
    size_t i = 0;
    int err = 0;

    if (h->waiting) { /* a complete request the full queue could not take */
        if (!request_done(c))
            goto stash;
        h->waiting = false;
    }
    while (i < len && !c->closing) {
        if (h->in_body) {
            size_t k = len - i;
            if (k > h->body_left)
                k = (size_t)h->body_left;
            i += k;
            h->body_left -= k;
            if (h->body_left == 0 && !request_done(c))
                goto stash;
            continue;
        }
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t seg = end - i;
        if (seg + (nl ? 1 : 0) > MAX_REQUEST_HEAD - h->head_bytes)
            return -EPROTO;
        h->head_bytes += (uint32_t)(seg + (nl ? 1 : 0));
        size_t room = sizeof(h->line) - h->line_len;
        memcpy(h->line + h->line_len, buf + i, seg < room ? seg : room);
        h->line_len += (uint16_t)(seg < room ? seg : room);
        tail_add(h, buf + i, seg);
        i = end;
        if (!nl)
            break;
        i++;
        err = http_line(c);
        if (err < 0)
            return err;
        if (err == 1)
            goto stash;
    }
    if (from_stash || c->closing) {
        free(h->in);
        h->in = NULL;
    }
    return 0;

stash:
    /* The request that did not fit stays complete in the parser (waiting) and is queued first
     * when parsing resumes; the bytes after it wait in h->in. */
    h->waiting = true;
    if (from_stash) {
        h->in_off += (uint32_t)i;
        if (h->in_off == h->in_len) {
            free(h->in);
            h->in = NULL;
        }
        return 0;
    }
    if (i < len) {
        h->in_len = (uint32_t)(len - i);
        h->in_off = 0;
        h->in = zlb_xmalloc(h->in_len);
        memcpy(h->in, buf + i, h->in_len);
    }
    return 0;
}

/* ---- output and the connection's state machine --------------------------------------------- */

/* Writes the responses that are due, in order. 0 when nothing due is left (the timer is armed
 * for the next one), -EAGAIN (c->want set) or -errno. The bytes offered to a write depend only
 * on the queue, which does not change while a write is blocked (nothing is read meanwhile),
 * so a TLS write retried after WANT_WRITE sees the same bytes, as SSL_write requires. */
static int flush(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;
    tgt_http_t *h = &c->http;
    const tgt_http_resp_t *r = &th->target->http;

    while (h->q_n > 0) {
        tgt_http_run_t *run = &h->q[h->q_head];
        if (run->due && run->due > zlb_loop_now(th->loop)) {
            zlb_timer_start_at(th->loop, &c->http_timer, run->due, 0);
            return 0;
        }
        uint8_t k = run->kind;
        uint64_t rlen = r->resp_len[k], total = (uint64_t)run->count * rlen;
        while (h->q_sent < total) {
            size_t off = (size_t)(h->q_sent % rlen), len;
            const char *p;
            if (r->rep[k]) { /* whole responses back to back: several go in one write */
                p = r->rep[k] + off;
                len = r->rep_len[k] - off;
                if (len > total - h->q_sent)
                    len = (size_t)(total - h->q_sent);
            } else if (off < r->hdr_len[k]) {
                p = r->hdr[k] + off;
                len = r->hdr_len[k] - off;
            } else {
                p = r->body[k] + (off - r->hdr_len[k]);
                len = (size_t)rlen - off;
            }
            ssize_t n = c->io->write(c, p, len);
            if (n <= 0)
                return n < 0 ? (int)n : -EIO;
            tgt_count(&th->c.bytes_out, (uint64_t)n);
            h->q_sent += (uint64_t)n;
        }
        h->q_sent = 0;
        h->q_head = (uint8_t)((h->q_head + 1) % TGT_HTTP_QUEUE);
        h->q_n--;
    }
    return 0;
}

/* Makes all the progress the socket and the clock allow: responses that are due first (while
 * one is blocked the peer is not keeping up, so reading more would only grow the queue), then
 * input the full queue left unparsed, then new requests, then the close. Called on socket
 * events, by the delay timer and by the ready task. */
void tgt_http_run(tgt_conn_t *c)
{
    tgt_thread_t *th = c->th;
    tgt_http_t *h = &c->http;
    uint32_t reads = 0;

    for (;;) {
        int err = flush(c);
        if (err == -EAGAIN) {
            tgt_conn_set_blocked(c, true);
            if (tgt_conn_arm(c, c->want) < 0)
                tgt_conn_close(c);
            return;
        }
        if (err < 0) {
            tgt_conn_close(c);
            return;
        }
        tgt_conn_set_blocked(c, false);
        if (h->waiting || h->in) {
            if (h->q_n == TGT_HTTP_QUEUE)
                return; /* the timer of the first response owed brings us back */
            err = h->in ? consume(c, h->in + h->in_off, h->in_len - h->in_off, true)
                        : consume(c, NULL, 0, true);
            if (err < 0) {
                tgt_conn_close(c);
                return;
            }
            continue;
        }
        if (c->closing) {
            if (h->q_n > 0)
                return; /* a delayed response is still owed: its timer brings us back */
            if (h->peer_eof)
                tgt_conn_close(c);
            else
                tgt_conn_close_after_reply(c);
            return;
        }
        if (tgt_conn_arm(c, EPOLLIN) < 0) {
            tgt_conn_close(c);
            return;
        }
        if (reads++ == th->target->reads_per_event) {
            /* Still readable (edge-triggered: no new event will say so); others run first. */
            tgt_conn_queue_ready(c);
            return;
        }
        ssize_t n = c->io->read(c, th->rbuf, ZLB_TARGET_READ_BUF);
        if (n == -EAGAIN) {
            if (c->want != EPOLLIN && tgt_conn_arm(c, c->want) < 0)
                tgt_conn_close(c);
            return;
        }
        if (n == 0 && h->q_n > 0) { /* the peer is done sending: answer, then close */
            h->peer_eof = true;
            c->closing = true;
            continue;
        }
        if (n <= 0) {
            tgt_conn_close(c);
            return;
        }
        tgt_count(&th->c.bytes_in, (uint64_t)n);
        if (consume(c, th->rbuf, (size_t)n, false) < 0) {
            tgt_conn_close(c);
            return;
        }
    }
}
