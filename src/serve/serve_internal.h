/* serve_internal.h -- server threads and connections, shared by the target's files and tests. */
#ifndef ZLB_SERVE_INTERNAL_H
#define ZLB_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"
#include "loop/loop.h"
#include "serve/serve.h"
#include "tls/tls.h"

/* ---- for tests ------------------------------------------------------------------------------ */

/* One server thread's view, beyond the totals of zlb_serve_stats_t. */
typedef struct zlb_serve_thread_info {
    zlb_serve_stats_t stats; /* this thread's share of the totals */
    uint64_t blocked;        /* connections now waiting for the peer to read (backpressure) */
    uint64_t cpu_ns;         /* CPU time the thread has used so far */
} zlb_serve_thread_info_t;

/* Knobs the public options leave out; tests turn them down to reach the paths that only a heavy
 * load takes otherwise. 0 leaves the default. */
typedef struct zlb_serve_tuning {
    uint32_t accept_budget;   /* accepts per wake-up before yielding, default 256 */
    uint32_t reads_per_event; /* reads per connection per wake-up before yielding, default 16 */
    uint64_t handshake_timeout_ns; /* TLS: close a connection whose handshake has not completed
                                      this long after accept, default 10 s */
    uint32_t sndbuf; /* SO_SNDBUF of accepted sockets, default the kernel's autotuning */
} zlb_serve_tuning_t;

/** zlb_serve_start with tuning (NULL: defaults). */
int zlb_serve_start_tuned(const zlb_serve_opts_t *opts, const zlb_serve_tuning_t *tuning,
                          zlb_serve_t **out);
/** Number of server threads. */
int zlb_serve_threads(const zlb_serve_t *t);
/** Fills out with thread i's counters (relaxed reads, no lock) and its CPU time. Any thread. */
void zlb_serve_thread_info(const zlb_serve_t *t, int i, zlb_serve_thread_info_t *out);

/* ---- shared by target.c and conn.c ---------------------------------------------------------- */

#define ZLB_TARGET_READ_BUF (64u * 1024u)
#define ZLB_TARGET_SOURCE_BUF (256u * 1024u) /* source mode's shared bytes: one write's worth */
#define ZLB_TARGET_CACHE_LINE 64

/* Counters of one server thread: written by that thread only, with a relaxed load and store
 * (no read-modify-write, so no locked instruction), read by any thread with relaxed loads. */
typedef struct tgt_counters {
    _Atomic uint64_t accepted, open, closed, bytes_in, bytes_out, accept_errors;
    _Atomic uint64_t rejected, blocked;
    _Atomic uint64_t tls_handshakes, tls_resumed, tls_failed, tls_timeouts;
} tgt_counters_t;

static inline void tgt_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void tgt_uncount(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

typedef struct tgt_conn tgt_conn_t;
typedef struct tgt_thread tgt_thread_t;

/* The byte transport under a connection: plain TCP, or TLS over the tls module (which runs the
 * handshake inside the first read or write, so the modes above never see which one they talk
 * through). Both return bytes moved, 0 for end of stream (read), or -errno; on -EAGAIN they set
 * conn->want to the epoll event that lets them make progress, because TLS may need to read in
 * order to write and the other way round. */
typedef struct tgt_io {
    ssize_t (*read)(tgt_conn_t *c, void *buf, size_t len);
    ssize_t (*write)(tgt_conn_t *c, const void *buf, size_t len);
    /* Ends the layer's session (close_notify) and releases its per-connection state; the fd is
     * closed by the caller. NULL: nothing to release. */
    void (*dispose)(tgt_conn_t *c);
} tgt_io_t;

/* The http mode's responses, built at start and read-only after (the threads share them). A
 * kind is one variant of the response: bit 0 a HEAD request's (no body), bits 1-2 the
 * connection: 0 HTTP/1.1 kept, 1 HTTP/1.1 "Connection: close", 2 HTTP/1.0 "Connection:
 * keep-alive", 3 HTTP/1.0 "Connection: close" (HTTP/1.0 ones never chunked). */
#define TGT_HTTP_KINDS 8
#define TGT_HTTP_KIND_HEAD 1
#define TGT_HTTP_KIND_CLOSE 2
#define TGT_HTTP_KIND_HTTP10 4
typedef struct tgt_http_resp {
    char *hdr[TGT_HTTP_KINDS]; /* owned: status line and header fields, through the CRLF CRLF */
    size_t hdr_len[TGT_HTTP_KINDS];
    const char *body[TGT_HTTP_KINDS]; /* borrowed from body_raw / body_chunked, NULL: none */
    size_t resp_len[TGT_HTTP_KINDS];  /* header + body */
    /* owned: whole responses repeated to fill the read buffer, so pipelined answers go in one
     * write; NULL when one response is larger than half of it */
    char *rep[TGT_HTTP_KINDS];
    size_t rep_len[TGT_HTTP_KINDS];
    char *body_raw, *body_chunked;    /* owned */
    uint64_t delay_ns, delay_span_ns; /* delay of each response: delay_ns + [0, delay_span_ns] */
} tgt_http_resp_t;

/* Responses owed on one connection, in request order: runs of requests that want the same kind
 * at the same time. Beyond TGT_HTTP_QUEUE runs, a request joins the last run of its kind (its
 * response then waits for the latest of their times); a request that cannot join waits, unread,
 * in `in`. */
#define TGT_HTTP_QUEUE 16
typedef struct tgt_http_run {
    uint64_t due; /* when the run's responses may go (0: now) */
    uint32_t count;
    uint8_t kind;
} tgt_http_run_t;

/* The http mode's state of one connection: the request parser, kept across reads (requests may
 * arrive a byte at a time), and the queue of responses owed. */
typedef struct tgt_http {
    uint64_t body_left;   /* Content-Length bytes of the current request still to skip */
    uint64_t content_len; /* of the request whose headers are being read */
    uint32_t head_bytes;  /* bytes of the current request head, bounded */
    uint16_t line_len;    /* bytes kept in line[] (a longer line is truncated, never grown) */
    uint8_t tail_len;
    bool in_body;
    bool first_line; /* the request line, not a header */
    bool has_cl;     /* a Content-Length was read */
    bool close;      /* the current request asked for Connection: close */
    bool keep_alive; /* the current request asked for Connection: keep-alive */
    bool http10;     /* the current request is HTTP/1.0 (closes unless keep-alive) */
    bool head;       /* the current request is HEAD */
    bool peer_eof;   /* the peer sent its last byte: answer what it asked, then close */
    bool waiting;    /* a complete request waits for room in the queue */
    char tail[9];    /* the last bytes of the current line (the request line's version) */
    char line[96];
    /* the queue */
    uint8_t q_head, q_n;
    uint64_t q_sent; /* bytes of the first run already written */
    char *in;        /* owned: input not parsed yet because the queue was full */
    uint32_t in_len, in_off;
    tgt_http_run_t q[TGT_HTTP_QUEUE];
} tgt_http_t;

/* The redis mode's parser state of one connection (redis.c): requests may arrive a byte at a
 * time. */
typedef struct tgt_redis {
    uint8_t state, after_num, crlf, cmd_len;
    bool negative;
    char cmd[8];   /* the command name's first bytes (cmd_len 8: longer, or more than a name) */
    uint32_t line; /* inline: bytes of the line so far */
    uint32_t digits;
    uint64_t num, nargs, left, blen;
} tgt_redis_t;

struct tgt_conn {
    zlb_watcher_t w;    /* w.fd is the socket (owned) */
    zlb_list_t node;    /* in the thread's free list while unused */
    zlb_list_t ready;   /* in the thread's ready list when reading stopped at the budget */
    tgt_thread_t *th;   /* borrowed: the thread that owns this connection */
    const tgt_io_t *io; /* borrowed, static */
    /* TLS state, used when io is the TLS transport (tls.ssl NULL for plain). Embedded rather
     * than allocated per accept: the struct is pooled and never moves, as the SSL requires. */
    zlb_tls_conn_t tls;
    zlb_timer_t hs_timer; /* TLS: armed from accept until the handshake completes */
    uint32_t want;        /* set by io on -EAGAIN */
    bool blocked;         /* output pending: not reading until the peer takes it */
    bool closing;         /* stop reading requests; close once the output is flushed */
    /* echo: bytes read that the peer would not take yet (owned, allocated only then); source:
     * out stays NULL and out_off is where the next write starts in the shared buffer */
    char *out;
    uint32_t out_len, out_off;
    /* http: the parser and the responses owed; the timer fires when a delayed one is due */
    zlb_timer_t http_timer;
    tgt_http_t http;
    tgt_redis_t redis;
};

struct tgt_thread {
    zlb_serve_t *target; /* borrowed */
    int index;
    pthread_t tid;
    bool created;             /* tid is a live or joinable thread */
    bool setup_done;          /* its loop ran the set-up task and reported to start */
    zlb_loop_t *loop;         /* owned */
    zlb_watcher_t listener;   /* listener.fd owned, -1 when none */
    bool listening;           /* listener registered with the loop */
    bool backed_off;          /* out of fds: not watching the listener until the timer fires */
    bool accept_queued;       /* accept_task is posted and has not run yet */
    zlb_task_t accept_task;   /* resumes accepting after a budget-limited batch */
    zlb_timer_t accept_timer; /* accept delay ticks and the out-of-fds back-off */
    bool ready_queued;
    zlb_task_t ready_task; /* resumes connections that hit the read budget */
    zlb_list_t ready;      /* of tgt_conn_t.ready */
    zlb_list_t free;       /* of tgt_conn_t.node */
    tgt_conn_t **chunks;   /* owned array of owned blocks of CONNS_PER_CHUNK */
    uint32_t nchunks, chunks_cap;
    uint32_t nopen;
    char *rbuf;   /* owned, ZLB_TARGET_READ_BUF: shared by every connection */
    uint64_t rng; /* xorshift state for random response delays */
    /* On its own cache line: a reader summing the stats must not bounce the line holding
     * this thread's hot state, nor its neighbour's in the array. */
    _Alignas(ZLB_TARGET_CACHE_LINE) tgt_counters_t c;
};

struct zlb_serve {
    zlb_serve_mode_t mode;
    tgt_http_resp_t http; /* http mode only */
    /* source mode: the bytes every connection writes, over and over (owned, read-only once the
     * threads run: one buffer for all, none per connection) */
    char *source;
    int backlog;
    uint64_t accept_delay_ns;
    uint32_t max_conns;
    uint32_t accept_budget;
    uint32_t reads_per_event;
    uint64_t handshake_timeout_ns;
    int sndbuf; /* 0: autotuned */
    /* TLS (all NULL for plain): created before the threads start and read-only after, so the
     * threads share them without a lock. */
    zlb_tls_server_t *tls_srv; /* owned */
    zlb_tls_cert_t *ca;        /* owned: signs the server certificate and clients' ones */
    char *ca_pem;              /* owned */
    _Atomic uint32_t nopen;    /* across threads; only maintained when max_conns is set */
    int nthreads;
    tgt_thread_t *threads; /* owned array */
    char address[64];
    uint16_t port;
    /* start-up handshake with the server threads */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int nready;
    int start_err;
};

/** Takes a freshly accepted socket into service (or refuses it at max_conns). Loop thread. */
void tgt_conn_accepted(tgt_thread_t *th, int fd);
/** Closes every connection of th and frees the pool. After the thread has stopped. */
void tgt_conns_dispose(tgt_thread_t *th);
/** Resumes connections whose reads stopped at the per-event budget. */
void tgt_ready_task_cb(zlb_loop_t *loop, zlb_task_t *task, bool discarded);
/** The response every HTTP request gets by default (ZLB_SERVE_HTTP_DEFAULTS, HTTP/1.1 kept). */
extern const char tgt_http_response[];
extern const size_t tgt_http_response_len;

/* conn.c, for http.c */
void tgt_conn_close(tgt_conn_t *c);
int tgt_conn_arm(tgt_conn_t *c, uint32_t events);
void tgt_conn_set_blocked(tgt_conn_t *c, bool blocked);
void tgt_conn_close_after_reply(tgt_conn_t *c);
void tgt_conn_queue_ready(tgt_conn_t *c);
/** Writes buf, or as much as the socket takes with the rest kept in the connection's stash
 * (appended when one is already waiting): 0, -EAGAIN (stashed; want set) or -errno. */
int tgt_conn_send(tgt_conn_t *c, const char *buf, size_t len);

/* redis.c */
void tgt_redis_conn_init(tgt_conn_t *c);
/** Answers the requests in buf (the parser's state carried over from the last call). 0,
 * -EAGAIN when replies wait for the peer to read (c->out), or -errno; a protocol error is
 * answered and sets c->closing. */
int tgt_redis_feed(tgt_conn_t *c, const char *buf, size_t len);

/* http.c */
/** Builds t->http from o (NULL: defaults). 0, -EINVAL for values out of range, -ENOMEM. */
int tgt_http_build(zlb_serve_t *t, const zlb_serve_http_opts_t *o);
/** Frees what tgt_http_build made. Idempotent. */
void tgt_http_free(zlb_serve_t *t);
/** A new connection's http state. Loop thread. */
void tgt_http_conn_init(tgt_conn_t *c);
/** Releases a connection's http state (stash, timer). Loop thread, or after the loop stopped. */
void tgt_http_conn_dispose(tgt_conn_t *c);
/** Makes all the progress the socket and the clock allow on an http connection. Loop thread. */
void tgt_http_run(tgt_conn_t *c);

#endif
