/* control_internal.h -- control module helpers shared by its own files and its unit test. */
#ifndef ZLB_CONTROL_INTERNAL_H
#define ZLB_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "control/control.h"

/* Longest token accepted from a file or from opts->token. */
#define ZLB_CONTROL_TOKEN_MAX 4096

/* "[ffff:...:ffff]:65535" plus NUL fits with room to spare. */
#define ZLB_CONTROL_ADDR_MAX 64

/** Parses "a.b.c.d:port", "[v6]:port" or "localhost:port" (numeric hosts only otherwise; no
 * DNS) into *ss. *loopback tells whether the host is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
 * 0 or -EINVAL. */
int zlb_control_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                             bool *loopback);
/** Token syntax: 1..ZLB_CONTROL_TOKEN_MAX visible ASCII characters (no spaces or controls), so
 * that it survives an HTTP header unchanged. */
bool zlb_control_token_valid(const char *token, size_t len);
/** Compares two byte strings in time that depends only on their lengths, never on where they
 * first differ. True when equal. */
bool zlb_control_token_equal(const char *a, size_t alen, const char *b, size_t blen);

/* ---- request policy (policy.c): pure functions, fed synthetic requests by tests and fuzzers -- */

typedef struct zlb_control_policy {
    bool exposed;   /* bound beyond loopback: the token guards every request */
    bool has_token; /* a token is configured */
    uint16_t port;  /* the bound port (a Host or Origin naming another port is not us) */
    bool can_pause; /* POST /pause and /resume are routed (an on_pause callback is set) */
    bool can_patch; /* PATCH /run is routed (an on_patch callback is set) */
} zlb_control_policy_t;

/* One request as the policy sees it. Header values are NULL when absent. */
typedef struct zlb_control_req {
    const char *method;
    const char *path; /* percent-decoded, without the query */
    bool uri_clean;   /* zlb_control_uri_clean() of the raw request target */
    bool has_body;
    uint64_t body_len; /* its Content-Length, or UINT64_MAX when unknown (chunked) */
    const char *host, *origin, *content_type, *authorization;
    bool custom_header; /* X-Zlbench-Request present */
    bool authorized;    /* the bearer token matched */
    bool published;     /* a document is published at path */
    bool asset;         /* path names a built-in static file (the dashboard) */
} zlb_control_req_t;

typedef enum {
    ZLB_CONTROL_SERVE,        /* the published document */
    ZLB_CONTROL_ASSET,        /* the built-in static file, with its Content-Security-Policy */
    ZLB_CONTROL_STOP,         /* call on_stop, answer 202 */
    ZLB_CONTROL_PAUSE,        /* call on_pause(true), answer 200 */
    ZLB_CONTROL_RESUME,       /* call on_pause(false), answer 200 */
    ZLB_CONTROL_PATCH,        /* read the body, call on_patch, answer what it says */
    ZLB_CONTROL_NOT_FOUND,    /* 404 */
    ZLB_CONTROL_NOT_ALLOWED,  /* 405, reason is the Allow header */
    ZLB_CONTROL_UNAUTHORIZED, /* 401 with WWW-Authenticate */
    ZLB_CONTROL_REFUSE        /* status with {"error": reason}, connection closed */
} zlb_control_action_t;

typedef struct zlb_control_verdict {
    zlb_control_action_t action;
    unsigned status;
    const char *reason; /* static text */
} zlb_control_verdict_t;

/** Decides the answer to rq. Never fails. */
zlb_control_verdict_t zlb_control_decide(const zlb_control_policy_t *pol,
                                         const zlb_control_req_t *rq);
/** False when the raw request target holds a control byte, raw or %-escaped. */
bool zlb_control_uri_clean(const char *uri);
/** True for "localhost", "*.localhost", 127.0.0.0/8 and [::1], with an optional ":port" that
 * must equal port. */
bool zlb_control_host_is_local(const char *host, uint16_t port);
/** JSON-escapes a decoded path for a 404 body: printable ASCII as is, others as \u escapes
 * (bytes >= 0x80 as U+FFFD), at most ZLB_CONTROL_ECHO_MAX input bytes. */
void zlb_control_json_escape(char *out, size_t cap, const char *in);
#define ZLB_CONTROL_ECHO_MAX 200

/* ---- the server's state, shared by control.c (routing, start/stop) and accept.c ------------ */

#define MAX_PATHS 16
#define PATH_MAX_LEN 64
/* Connections served at once, and one peer's share of them once exposed beyond loopback (on
 * loopback every client is 127.0.0.1). Evicted connections linger in the table until
 * libmicrohttpd closes them, hence twice the limit. */
#define CONN_LIMIT 64u
#define PER_ADDR_EXPOSED 16u
#define TRACK_MAX (2 * CONN_LIMIT)
/* libmicrohttpd's timeout is an idle one, reset by every byte; ours is a deadline for a whole
 * request's headers. A connection younger than EVICT_MIN_WAIT is never evicted to make room:
 * its request may simply not have been sent yet (one whose bytes wait unread is never evicted,
 * whatever its age). Under a drip that reconnects at once, a fresh client waits up to about this
 * floor for a slot: at 1 s, /health took 0.93-1.07 s. The floor cannot go much lower: a request
 * libmicrohttpd has read off the socket but not yet parsed looks like a drip, and at 250 ms a
 * TSan build evicted such a request mid-answer (test_control concurrent_republish). */
#define CONN_TIMEOUT_S 10u
#define HEADER_DEADLINE_NS (3 * ZLB_NS_PER_SEC)
#define EVICT_MIN_WAIT_NS (500 * ZLB_NS_PER_MS)
#define SWEEP_MS 100
#define ACCEPT_BATCH 32
#define BACKOFF_MIN_NS (50 * ZLB_NS_PER_MS) /* out of descriptors: stop accepting this long */
#define BACKOFF_MAX_NS (800 * ZLB_NS_PER_MS)
#define SUMMARY_EVERY_NS (10 * ZLB_NS_PER_SEC)
#define LIB_LOG_BURST 5 /* libmicrohttpd lines written per summary window, the rest counted */
#define CONN_MEMORY (32 * 1024)
#define LISTEN_BACKLOG 64

#define JSON_TYPE "application/json"

/* An immutable published document. The slot holds one reference, each response in flight one
 * more; the last release frees it, so a republish never waits for slow readers. */
typedef struct blob {
    atomic_uint refs;
    unsigned status;
    size_t len;
    const char *content_type; /* points into data, after the body */
    char data[];              /* body, NUL, content type, NUL */
} blob_t;

typedef struct slot {
    char path[PATH_MAX_LEN];
    blob_t *blob; /* owned reference, never NULL once the slot is in use */
} slot_t;

/* One accepted connection, from accept until libmicrohttpd reports it closed. `waiting` is the
 * time a slow client can hold a slot for free: from accept, or from the end of the previous
 * request on a kept-alive connection, until its next request's headers are complete. */
typedef struct track {
    bool used;
    bool waiting;
    bool evicted; /* shut down by us; libmicrohttpd closes it on its next turn */
    int fd;
    struct MHD_Connection *conn; /* set when libmicrohttpd starts it */
    uint64_t since_ns;
    struct sockaddr_storage addr;
} track_t;

/* The series served at one path with ?since=T (series.c): the newest `keep` rows as the run's
 * thread rendered them, oldest first, each with its key. Its own lock, held to append one row or
 * to copy the rows of one answer, never across a libmicrohttpd call. */
typedef struct series_row {
    double t;
    size_t len;
    char *text; /* owned */
} series_row_t;

typedef struct series_log {
    pthread_mutex_t lock;
    char path[PATH_MAX_LEN]; /* "" until started */
    char *head;              /* owned: the fields before "rows", e.g. "\"interval_s\":1" */
    series_row_t *ring;      /* owned, keep entries */
    size_t keep, first, n;
} series_log_t;

/* Counted on the control threads, written out as one summary line per window. */
typedef struct shed {
    unsigned long refused, evicted, timed_out, no_fds, lib_suppressed;
} shed_t;

struct zlb_control {
    struct MHD_Daemon *daemon;
    int listen_fd; /* owned; accepted on our acceptor thread, never by libmicrohttpd */
    int wake_fd;   /* owned eventfd: wakes the acceptor to quit */
    pthread_t acceptor;
    bool acceptor_started;
    atomic_bool quit;
    bool exposed; /* bound beyond loopback: reads need the token too */
    zlb_control_policy_t policy;
    char *token; /* owned, or NULL */
    size_t token_len;
    zlb_control_stop_cb on_stop;
    zlb_control_pause_cb on_pause;
    zlb_control_patch_cb on_patch;
    void *arg;
    const zlb_control_asset_t *assets; /* borrowed */
    size_t nassets;
    atomic_ulong requests;
    char address[ZLB_CONTROL_ADDR_MAX];

    /* Guards the slot table only; held for a lookup or a pointer swap, never for I/O or a
     * copy, and never shared with the pollers. */
    pthread_mutex_t lock;
    unsigned nslots;
    slot_t slots[MAX_PATHS];

    series_log_t series;

    /* Guards tracks, shed and the log window; never held across a libmicrohttpd call. */
    pthread_mutex_t track_lock;
    track_t tracks[TRACK_MAX];
    shed_t shed;
    unsigned lib_lines; /* libmicrohttpd lines written in this window */
    uint64_t window_start_ns;
};

/* series.c */
void zlb_control_series_init(series_log_t *s);
void zlb_control_series_dispose(series_log_t *s);
/** True when path is the started series' path. Any thread. */
bool zlb_control_series_match(zlb_control_t *c, const char *path);
/** The answer for rows with t > since: a malloc'd JSON document in *body (length *len), at most
 * ZLB_CONTROL_SERIES_BODY_MAX bytes of rows (then "truncated": true: ask again from the last
 * row's t_s). */
void zlb_control_series_render(zlb_control_t *c, double since, char **body, size_t *len);
#define ZLB_CONTROL_SERIES_BODY_MAX (4u << 20)

/* accept.c */
/** libmicrohttpd's connection notifications: keeps the track table in step. Its thread. */
void zlb_control_connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe);
/** The acceptor thread: accepts, admits or sheds, sweeps deadlines, writes the summary. */
void *zlb_control_acceptor_main(void *arg);
/** libmicrohttpd's log lines, a burst per window, the rest counted into the summary. */
__attribute__((format(printf, 2, 0))) void zlb_control_mhd_log(void *cls, const char *fmt,
                                                               va_list ap);
/** Names the calling libmicrohttpd thread once ("zlb-control"). */
void zlb_control_name_thread(void);

#endif
