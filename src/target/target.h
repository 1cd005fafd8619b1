/* target.h -- the built-in loopback server (echo, sink, http; plain or TLS) on its own threads. */
#ifndef ZLB_TARGET_H
#define ZLB_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum { ZLB_SERVE_ECHO, ZLB_SERVE_SINK, ZLB_SERVE_HTTP } zlb_serve_mode_t;

typedef struct zlb_target_opts {
    zlb_serve_mode_t mode;
    const char *listen;          /* "127.0.0.1:0", "[::1]:9000" (borrowed) */
    int backlog;                 /* listen(2) backlog, default 4096 when 0 */
    int threads;                 /* server threads (each its own loop, SO_REUSEPORT), default 1 */
    bool tls;                    /* serve TLS with a certificate generated at start */
    const char *ca_out_file;     /* write the generated CA (PEM) here, or NULL (borrowed) */
    uint64_t accept_delay_ns;    /* sleep-free artificial delay before each accept (slow target) */
    uint32_t max_conns;          /* connections kept at once; beyond it new ones are closed. 0: no cap */
} zlb_target_opts_t;

typedef struct zlb_target_stats {
    uint64_t accepted;
    uint64_t open;
    uint64_t closed;
    uint64_t bytes_in, bytes_out;
    uint64_t accept_errors;      /* EMFILE and friends */
    uint64_t tls_handshakes, tls_resumed, tls_failed;
} zlb_target_stats_t;

typedef struct zlb_target zlb_target_t;

/** Binds, listens and starts the server threads ("zlb-target-N"); returns once it accepts.
 * These threads are never pollers and are not pinned. 0 or -errno; on TLS set-up failure
 * -EPROTO. Any thread. */
int zlb_target_start(const zlb_target_opts_t *opts, zlb_target_t **out);
/** The bound address as "127.0.0.1:34567" / "[::1]:34567" (valid until destroy). */
const char *zlb_target_address(const zlb_target_t *t);
/** The bound port. */
uint16_t zlb_target_port(const zlb_target_t *t);
/** PEM of the CA that signed the server certificate (TLS only, else NULL). */
const char *zlb_target_ca_pem(const zlb_target_t *t);
/** Totals over all server threads (read without stopping them). Any thread. */
void zlb_target_read_stats(const zlb_target_t *t, zlb_target_stats_t *out);
/** Stops accepting, closes every connection, joins the threads, frees. Accepts NULL. */
void zlb_target_destroy(zlb_target_t *t);
/** Parses "echo" | "sink" | "http". 0 or -EINVAL. */
int zlb_serve_mode_parse(const char *s, zlb_serve_mode_t *out);

#endif
