/* serve.h -- the built-in loopback server (echo, sink, http, redis; plain or TLS) on its own
 * threads. */
#ifndef ZLB_SERVE_H
#define ZLB_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h" /* zlb_serve_mode_t: one enum and one name table with the config */

/* Which server certificate a TLS target serves. Every kind is generated at start next to the
 * same CA (zlb_serve_ca_pem), so a client trusting that CA can test its own verification:
 * only VALID passes it. */
typedef enum {
    ZLB_SERVE_CERT_VALID,       /* issued by the CA for localhost, 127.0.0.1 and ::1 */
    ZLB_SERVE_CERT_EXPIRED,     /* the same names and issuer, expired a day ago */
    ZLB_SERVE_CERT_WRONG_NAME,  /* issued by the CA for "wrong.invalid" only */
    ZLB_SERVE_CERT_SELF_SIGNED, /* localhost, 127.0.0.1 and ::1, signed by its own key */
} zlb_serve_cert_kind_t;

/* What the http mode answers: the same response to every request, in request order (pipelined
 * requests are answered in order, those of one read in one write). */
typedef struct zlb_serve_http_opts {
    uint16_t status;       /* 200..599; 204 and 304 carry no body (and no Content-Length) */
    uint64_t body_size;    /* body bytes ("okok..."), at most ZLB_SERVE_HTTP_MAX_BODY */
    bool chunked;          /* Transfer-Encoding: chunked (HTTP/1.0 requests get Content-Length) */
    uint64_t delay_ns;     /* each response waits this long after its request was read */
    uint64_t delay_max_ns; /* above delay_ns: a uniform random delay in [delay_ns, delay_max_ns] */
} zlb_serve_http_opts_t;

#define ZLB_SERVE_HTTP_MAX_BODY (64ull << 20)
/* What http mode answers without options: "HTTP/1.1 200 OK" and the 2-byte body "ok". */
#define ZLB_SERVE_HTTP_DEFAULTS ((zlb_serve_http_opts_t){.status = 200, .body_size = 2})

typedef struct zlb_serve_opts {
    zlb_serve_mode_t mode;
    const char *listen;       /* "127.0.0.1:0", "[::1]:9000" (borrowed) */
    int backlog;              /* listen(2) backlog, default 4096 when 0 */
    int threads;              /* server threads (each its own loop, SO_REUSEPORT), default 1 */
    bool tls;                 /* serve TLS with a certificate generated at start */
    const char *ca_out_file;  /* write the generated CA (PEM) here, or NULL (borrowed) */
    uint64_t accept_delay_ns; /* sleep-free artificial delay before each accept (slow target) */
    uint32_t max_conns; /* connections kept at once; beyond it new ones are closed. 0: no cap */
    /* http mode's responses; NULL: ZLB_SERVE_HTTP_DEFAULTS. Borrowed, read by start only. Start
     * returns -EINVAL for a status or body size out of range, or with another mode. */
    const zlb_serve_http_opts_t *http;
    /* TLS only (each must keep its zero value without tls, else start returns -EINVAL): */
    zlb_serve_cert_kind_t tls_cert_kind; /* default VALID */
    bool tls_require_client_cert;        /* mTLS: refuse clients without a certificate issued by the
                                            generated CA (see zlb_serve_issue_client_cert) */
    int tls_min_version;                 /* 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3); 0: TLS 1.2 */
    int tls_max_version;                 /* 0x0303 or 0x0304; 0: the library's newest (TLS 1.3) */
} zlb_serve_opts_t;

typedef struct zlb_serve_stats {
    uint64_t accepted;
    uint64_t open;
    uint64_t closed;
    uint64_t bytes_in, bytes_out;
    uint64_t accept_errors; /* EMFILE and friends */
    uint64_t rejected;      /* accepted and closed at once because max_conns was reached */
    /* TLS: handshakes completed (tls_resumed of them resumed a session), and connections closed
     * before theirs completed (a failure on either side, the peer leaving, the handshake
     * timeout: tls_timeouts of them). bytes_in and bytes_out count application bytes, not TLS
     * records. */
    uint64_t tls_handshakes, tls_resumed, tls_failed, tls_timeouts;
} zlb_serve_stats_t;

typedef struct zlb_serve zlb_serve_t;

/** Binds, listens and starts the server threads ("zlb-serve-N"); returns once it accepts.
 * These threads are never pollers and are not pinned. 0 or -errno; on TLS set-up failure
 * -EPROTO; when ca_out_file cannot be written, that write's -errno. With tls, the CA file is
 * in place before it returns. Any thread. */
int zlb_serve_start(const zlb_serve_opts_t *opts, zlb_serve_t **out);
/** The bound address as "127.0.0.1:34567" / "[::1]:34567" (valid until destroy). */
const char *zlb_serve_address(const zlb_serve_t *t);
/** The bound port. */
uint16_t zlb_serve_port(const zlb_serve_t *t);
/** PEM of the CA generated at start, the one that signed the server certificate (unless
 * tls_cert_kind is SELF_SIGNED); NULL without TLS. Owned by t, valid until destroy. */
const char *zlb_serve_ca_pem(const zlb_serve_t *t);
/** Issues a client certificate (clientAuth, CN "zlbench client") from the target's CA, as
 * tls_require_client_cert accepts, and writes it to cert_path and its key to key_path (PEM,
 * each replaced atomically, the key mode 0600). 0, -EINVAL without TLS or a path, -EPROTO when
 * generating fails, or -errno of the write. Blocking file I/O: any thread but a loop's. */
int zlb_serve_issue_client_cert(const zlb_serve_t *t, const char *cert_path, const char *key_path);
/** Totals over all server threads (read without stopping them). Any thread. */
void zlb_serve_read_stats(const zlb_serve_t *t, zlb_serve_stats_t *out);
/** Stops accepting, closes every connection, joins the threads, frees. Accepts NULL. */
void zlb_serve_destroy(zlb_serve_t *t);

/** `zlbench serve [options]` (argv[0] being "serve"): runs the target alone until SIGINT or
 * SIGTERM, which the caller must have blocked in every thread. Returns a ZLB_EXIT_* code. Call
 * from main only. */
int zlb_serve_main(int argc, char **argv);

#endif
