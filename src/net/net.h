/* net.h -- sockets, addresses, errno taxonomy, resolver threads and the connection state machine.
 */
#ifndef ZLB_NET_H
#define ZLB_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "loop/loop.h"
#include "stats/stats.h"
#include "tls/tls.h"

/* ---- errno taxonomy ------------------------------------------------------------------------ */

/** Maps a positive errno to a failure reason: ECONNREFUSED refused, ETIMEDOUT timeout,
 * ECONNRESET/EPIPE reset, EHOSTUNREACH/ENETUNREACH unreachable, EADDRNOTAVAIL/EADDRINUSE
 * addr_unavailable, EMFILE/ENFILE fd_limit, ENOBUFS/ENOMEM no_buffers, anything else other.
 * (EOF and DNS failures have no errno; callers report them directly.) */
zlb_fail_t zlb_net_classify(int err);
/** True for reasons caused by running out of our own resources (fd_limit, addr_unavailable,
 * no_buffers): retrying at once would only spin, so the caller pauses. */
bool zlb_net_fail_is_local(zlb_fail_t f);

/* ---- addresses ----------------------------------------------------------------------------- */

/* An IPv4 or IPv6 socket address in 32 bytes (sockaddr_storage is 128). */
typedef struct zlb_net_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len; /* 0: no address */
} zlb_net_addr_t;

#define ZLB_NET_ADDRSTRLEN 64 /* "[ffff:...:255.255.255.255%4294967295]:65535" fits */

/* Text to address and back follows core's one vocabulary (core.h, zlb_addr_*): these adapt it
 * to the compact type. */
/** Builds an address from an IP literal (zlb_addr_literal's rules) and a port. 0 or -EINVAL. */
int zlb_net_addr_literal(const char *host, uint16_t port, zlb_net_addr_t *out);
/** Copies an AF_INET/AF_INET6 sockaddr. 0 or -EAFNOSUPPORT. */
int zlb_net_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, zlb_net_addr_t *out);
/** AF_INET, AF_INET6, or AF_UNSPEC when empty. */
int zlb_net_addr_family(const zlb_net_addr_t *a);
uint16_t zlb_net_addr_port(const zlb_net_addr_t *a);
void zlb_net_addr_set_port(zlb_net_addr_t *a, uint16_t port);
/** Same family, address and port. */
bool zlb_net_addr_equal(const zlb_net_addr_t *a, const zlb_net_addr_t *b);
/** zlb_addr_format into buf ("(none)" when empty; ZLB_NET_ADDRSTRLEN is enough); returns buf. */
const char *zlb_net_addr_format(const zlb_net_addr_t *a, char *buf, size_t len);

/* ---- sockets ------------------------------------------------------------------------------- */

/* Client socket options, applied to every socket right after it is created. */
typedef struct zlb_net_sockopts {
    bool nodelay;       /* TCP_NODELAY */
    int sndbuf, rcvbuf; /* SO_SNDBUF/SO_RCVBUF when > 0, else kernel autotuning */
    bool close_rst;     /* zlb_conn_close aborts (SO_LINGER {1,0}: RST, no TIME_WAIT) */
    bool keepalive;     /* SO_KEEPALIVE + the three below when > 0 */
    int keepalive_idle_s, keepalive_interval_s, keepalive_count;
} zlb_net_sockopts_t;

/* Descriptors below RLIMIT_NOFILE that client sockets never take: out of descriptors, the
 * control port still answers /health and /stats, the report is still written. */
#define ZLB_NET_FD_RESERVE 32

/** Creates a SOCK_NONBLOCK|SOCK_CLOEXEC TCP socket of `family` with o applied (o may be NULL),
 * or -EMFILE when it would take one of the last ZLB_NET_FD_RESERVE descriptors;
 * bound to src with IP_BIND_ADDRESS_NO_PORT when src is non-NULL (the port is chosen at connect
 * time, so binding reserves nothing). Returns the fd or -errno. */
int zlb_net_socket(int family, const zlb_net_sockopts_t *o, const zlb_net_addr_t *src);
/** Non-blocking connect: 0 when connected at once, -EINPROGRESS when pending, else -errno. */
int zlb_net_connect(int fd, const zlb_net_addr_t *dst);
/** Reads (and so clears) SO_ERROR: 0 or a positive errno. */
int zlb_net_socket_error(int fd);
/** Closes fd; with rst an abortive close (SO_LINGER {1,0}): the peer gets a RST and no
 * TIME_WAIT stays here. */
void zlb_net_close(int fd, bool rst);
/** Raises the RLIMIT_NOFILE soft limit to the hard limit. Returns the soft limit now in force,
 * or -errno. */
long zlb_net_raise_nofile(void);

/* ---- resolver threads ---------------------------------------------------------------------- */

/* getaddrinfo runs on resolver threads only, never on a poller. The answer is the first result
 * in getaddrinfo order (RFC 6724 / gai.conf) asked with AI_ADDRCONFIG, so "any" family takes
 * what the system prefers and no IPv6 address comes back where no IPv6 is configured. Answers
 * are cached per (host, port, family) for the TTL; failures are not cached. */
typedef struct zlb_resolver zlb_resolver_t;

/* A lookup request, embedded in the asker's memory. When answered it is posted to `loop` as
 * its task (set task.cb with zlb_task_init before submitting). At most one submission at a
 * time per request. */
typedef struct zlb_resolve_req {
    zlb_task_t task;
    zlb_loop_t *loop; /* where the answer is posted (borrowed) */
    const char *host; /* borrowed until the answer */
    uint16_t port;
    int family; /* AF_UNSPEC, AF_INET or AF_INET6 */
    /* out */
    int status;    /* 0, or an EAI_* code (EAI_CANCELED when the resolver was destroyed) */
    int sys_errno; /* errno when status is EAI_SYSTEM */
    zlb_net_addr_t addr;
    uint64_t expires_ns; /* monotonic time the answer stops being valid */
    bool cached;         /* answered from the cache without a lookup */
    /* private */
    zlb_list_t qnode;
} zlb_resolve_req_t;

typedef struct zlb_resolver_stats {
    uint64_t requests; /* submitted */
    uint64_t hits;     /* answered from the cache */
    uint64_t lookups;  /* getaddrinfo calls */
    uint64_t failures; /* lookups that failed */
} zlb_resolver_stats_t;

/** Starts nthreads (>= 1) threads "zlb-resolv-N". ttl_ns 0 disables the cache. 0 or -errno. */
int zlb_resolver_create(int nthreads, uint64_t ttl_ns, zlb_resolver_t **out);
/** Queues req. Any thread. Never fails; the answer is always posted, even on destroy. */
void zlb_resolver_submit(zlb_resolver_t *r, zlb_resolve_req_t *req);
void zlb_resolver_read_stats(zlb_resolver_t *r, zlb_resolver_stats_t *out);
/** Joins the threads; requests still queued are posted with EAI_CANCELED. The loops they go to
 * must still exist. Accepts NULL. */
void zlb_resolver_destroy(zlb_resolver_t *r);

/* ---- connections ----------------------------------------------------------------------------- */

/* The per-connection state machine. One zlb_net_ctx per poller holds what its connections share:
 * the destinations (with their resolved addresses and, for TLS ones, the poller's session
 * cache), the read buffer, the list of connections whose read budget ran out, the source
 * addresses and the socket options. A connection belongs to one ctx and is only touched on that
 * ctx's loop thread.
 *
 *   IDLE --start--> RESOLVING --answer--> CONNECTING --writable, SO_ERROR 0--> ESTABLISHED
 *                   (skipped for IP literals and      |                          ^
 *                    fresh cache entries)             +--> TLS_HANDSHAKE --done--+
 *                                                          (TLS destinations)
 * Any failure, a timeout or EOF closes the socket, returns the connection to IDLE and calls
 * ops->closed. zlb_conn_close (by the owner) returns it to IDLE without a callback. CLOSING is
 * the short window inside a close while callbacks may still see the connection.
 *
 * TLS. The handshake starts as soon as TCP is established and is driven by epoll like the
 * rest: whichever interest OpenSSL asks for (WANT_READ/WANT_WRITE, from any operation) is the
 * one armed, with one epoll_ctl per change. Its deadline (the destination's handshake timeout)
 * runs from TCP establishment, apart from the connect timeout. Latencies: ZLB_LAT_CONNECT (from
 * the intended start) and ZLB_LAT_CONNECT_SERVICE (from the connect() call) at TCP
 * establishment, then ZLB_LAT_TLS_FULL or ZLB_LAT_TLS_RESUMED at the handshake's end, and
 * only then is the connection ESTABLISHED (ops->established). Once established, the socket is
 * read whenever it is readable, whatever the workload: that is what processes TLS 1.3 session
 * tickets (feeding the session cache), key updates and alerts, and drains data the peer pushes.
 * Closing sends close_notify (when the handshake completed and nothing failed), then closes. */
typedef enum {
    ZLB_CONN_IDLE,
    ZLB_CONN_RESOLVING,
    ZLB_CONN_CONNECTING,
    ZLB_CONN_TLS_HANDSHAKE, /* TCP established, TLS handshake in progress */
    ZLB_CONN_ESTABLISHED,
    ZLB_CONN_CLOSING,
} zlb_conn_state_t;

typedef struct zlb_conn zlb_conn_t;
typedef struct zlb_net_ctx zlb_net_ctx_t;

/* The detail of a failure: one code, tagged with the vocabulary it belongs to. */
typedef enum {
    ZLB_NET_ERR_ERRNO, /* a positive errno; 0 for EOF */
    ZLB_NET_ERR_EAI,   /* getaddrinfo's EAI_* code (a DNS failure) */
    ZLB_NET_ERR_X509,  /* the X509 verify result, X509_V_ERR_* (tls_verify) */
    ZLB_NET_ERR_TLS,   /* the tls module's zlb_tls_reason_t (tls_handshake) */
} zlb_net_err_kind_t;

typedef struct zlb_net_err {
    zlb_net_err_kind_t kind;
    int code;
} zlb_net_err_t;

static inline zlb_net_err_t zlb_net_err_errno(int e)
{
    return (zlb_net_err_t){ZLB_NET_ERR_ERRNO, e};
}
static inline zlb_net_err_t zlb_net_err_tls(int reason)
{
    return (zlb_net_err_t){ZLB_NET_ERR_TLS, reason};
}

/* The owner's callbacks, on the loop thread. Inside any of them the owner may close the
 * connection and even start it again; the state machine notices (generation counter). */
typedef struct zlb_conn_ops {
    /** The connection is established: TCP connected, and for TLS the handshake done. */
    void (*established)(zlb_conn_t *c);
    /** n bytes arrived (buf is the ctx's shared read buffer, valid during the call only). */
    void (*data)(zlb_conn_t *c, const uint8_t *buf, size_t n);
    /** n bytes were handed to the kernel. */
    void (*sent)(zlb_conn_t *c, size_t n);
    /** The state machine closed the connection: why, and its detail (err.kind says which
     * vocabulary: an errno, 0 for EOF and ETIMEDOUT for a lookup that timed out; the EAI_* code
     * of a failed lookup; for tls_verify the X509 verify result; for tls_handshake the tls
     * module's zlb_tls_reason_t, with c->tls->err keeping the whole error until the next
     * attempt). A handshake that outlives its deadline is a timeout (ETIMEDOUT);
     * every other failure during the handshake, a socket error included, is tls_handshake or
     * tls_verify. After establishment a TLS failure (an alert, e.g. a TLS 1.3 server refusing
     * our client certificate) is tls_handshake, a socket error is classified by its errno and
     * a close by the peer (close_notify or not) is eof. was_established tells failed-before
     * from failed-after. c is IDLE again. */
    void (*closed)(zlb_conn_t *c, zlb_fail_t why, zlb_net_err_t err, bool was_established);
} zlb_conn_ops_t;

/* A send queue of borrowed segments with a byte cap (the owner keeps each segment's memory
 * valid until it is sent; workloads send immutable payloads). Allocated only for connections
 * that write. */
#define ZLB_SENDQ_SEGS 4
typedef struct zlb_sendq {
    struct iovec seg[ZLB_SENDQ_SEGS];
    uint32_t head, count; /* ring of segments */
    size_t bytes;         /* queued, not yet written */
    size_t cap;           /* zlb_conn_send refuses to go past it */
} zlb_sendq_t;

/** Prepares an empty queue holding at most cap bytes. */
void zlb_sendq_init(zlb_sendq_t *q, size_t cap);

/* Embedded in the owner's per-connection slot: about 130 bytes, no buffers. Fields are the
 * state machine's; the owner reads state, tls and t_* only. */
struct zlb_conn {
    zlb_watcher_t w;        /* w.fd is -1 when there is no socket */
    zlb_timer_t timer;      /* connect timeout, then handshake timeout, then send timeout */
    zlb_list_t node;        /* on the destination's waiters or the ctx's ready list */
    zlb_net_ctx_t *ctx;     /* borrowed */
    zlb_sendq_t *sq;        /* borrowed; NULL when the connection never writes */
    zlb_tls_conn_t *tls;    /* borrowed (zlb_conn_set_tls); NULL when it never speaks TLS */
    uint64_t t_intended;    /* when the attempt was meant to start (zlb_conn_start) */
    uint64_t t_start;       /* resolve start, then the connect() call (monotonic ns) */
    uint64_t t_established; /* TCP established; for TLS then the handshake's end */
    uint32_t gen;           /* bumped at every close, so callbacks can tell reuse */
    uint16_t dest;          /* index of the destination */
    uint8_t state;          /* zlb_conn_state_t */
    uint8_t flags;          /* private */
};

typedef struct zlb_net_dest_spec {
    const char *host; /* name or IP literal, borrowed for the ctx's life */
    uint16_t port;
    const zlb_tls_client_t *tls;       /* NULL: plain TCP; else borrowed for the ctx's life */
    uint64_t tls_handshake_timeout_ns; /* 0: 5 s */
} zlb_net_dest_spec_t;

typedef struct zlb_net_ctx_opts {
    zlb_loop_t *loop;               /* the poller that owns the ctx (borrowed) */
    const zlb_conn_ops_t *ops;      /* borrowed */
    zlb_resolver_t *resolver;       /* borrowed; may be NULL when every host is a literal */
    zlb_stats_t *stats;             /* dns/connect/first-byte latencies go here (borrowed) */
    const zlb_net_sockopts_t *sock; /* borrowed; NULL: TCP_NODELAY only */
    int family;                     /* AF_UNSPEC, AF_INET or AF_INET6 */
    uint64_t connect_timeout_ns;    /* 0: 5 s */
    uint64_t send_timeout_ns;       /* 0: 10 s; a queue that makes no progress that long fails */
    size_t read_buf_size;           /* 0: 64 KiB, shared by the ctx's connections */
    size_t read_budget_bytes;       /* 0: 256 KiB per event */
    unsigned read_budget_calls;     /* 0: 4 reads per event */
    const zlb_net_dest_spec_t *dests;
    size_t ndests;                 /* <= 65535 */
    const zlb_net_addr_t *sources; /* source addresses, used round-robin; borrowed */
    size_t nsources;
    size_t source_offset; /* where the round-robin starts (e.g. the poller id) */
    bool busy_traffic;    /* connections carry messages all the time: TLS keeps its buffers */
} zlb_net_ctx_opts_t;

/** Creates a ctx. IP literal destinations are parsed here (a literal of the wrong family is
 * -EINVAL with a log line); names need a resolver. Each TLS destination whose client resumes
 * sessions gets a session cache of this ctx's own (one poller's, so no lock). 0, -EINVAL or
 * -ENOMEM. Any thread. */
int zlb_net_ctx_create(const zlb_net_ctx_opts_t *o, zlb_net_ctx_t **out);
/** Frees the ctx. Its loop must not be running and every connection must be closed or
 * disposed. Memory that a posted resolver answer still points at lives until that answer is
 * run or discarded. Accepts NULL. */
void zlb_net_ctx_destroy(zlb_net_ctx_t *ctx);
zlb_loop_t *zlb_net_ctx_loop(const zlb_net_ctx_t *ctx);
/** The destination's current address (empty before the first answer). Loop thread. */
const zlb_net_addr_t *zlb_net_ctx_dest_addr(const zlb_net_ctx_t *ctx, uint16_t dest);

/** Binds c to ctx, IDLE, no socket. sq may be NULL. Once per slot. */
void zlb_conn_init(zlb_conn_t *c, zlb_net_ctx_t *ctx, zlb_sendq_t *sq);
/** Gives c the memory of its TLS state (borrowed, must not move while c lives), needed before
 * starting an attempt to a TLS destination. IDLE only. */
void zlb_conn_set_tls(zlb_conn_t *c, zlb_tls_conn_t *tls);
/** The TLS connection of the current attempt (from the handshake's start to the close), else
 * NULL (plain TCP, or IDLE). */
zlb_tls_conn_t *zlb_conn_tls(const zlb_conn_t *c);
/** Starts an attempt to destination `dest` from IDLE: resolves it (cache or resolver thread)
 * unless it is a literal, then connects. intended_ns is when the owner meant it to start (0:
 * now): ZLB_LAT_CONNECT runs from it, ZLB_LAT_CONNECT_SERVICE from the connect() call. Returns 0
 * when the attempt is under way (its end comes through ops), or -errno when it failed at once (c is
 * IDLE, no callback; classify with zlb_net_classify). Loop thread. */
int zlb_conn_start(zlb_conn_t *c, uint16_t dest, uint64_t intended_ns);
/** Queues len bytes of buf (borrowed until written) and writes what the socket takes now;
 * the rest goes out on EPOLLOUT, under the send timeout. ESTABLISHED only. Returns 0,
 * -ENOBUFS when the queue's cap would be passed, or -errno when the socket failed: the
 * connection is left as it is and the caller closes it (no callback from here, so a caller
 * inside a callback never sees itself re-entered). Loop thread. */
int zlb_conn_send(zlb_conn_t *c, const void *buf, size_t len);
/** Closes c by the owner's decision (FIN, or RST when the socket options say so; TLS sends
 * close_notify first when established), in any state; no callback. Loop thread. */
void zlb_conn_close(zlb_conn_t *c);
/** Frees c's TLS state and closes its socket without touching the loop (for teardown after the
 * loop has stopped). */
void zlb_conn_dispose(zlb_conn_t *c);

static inline zlb_conn_state_t zlb_conn_state(const zlb_conn_t *c)
{
    return (zlb_conn_state_t)c->state;
}
/** RESOLVING, CONNECTING or TLS_HANDSHAKE: attempted, not yet established nor failed. */
static inline bool zlb_conn_in_flight(const zlb_conn_t *c)
{
    return c->state == ZLB_CONN_RESOLVING || c->state == ZLB_CONN_CONNECTING ||
           c->state == ZLB_CONN_TLS_HANDSHAKE;
}

#endif
