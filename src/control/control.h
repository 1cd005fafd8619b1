/* control.h -- the HTTP control port (libmicrohttpd): serves published stats, takes /stop. */
#ifndef ZLB_CONTROL_H
#define ZLB_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

/* The control port never touches loop state. The run controller renders each document (stats,
 * pollers, config, metrics, health) on its own thread and publishes it here; requests are served
 * from the latest published copy. Its only way back into the run is the stop callback. */

typedef struct zlb_control zlb_control_t;

/* `client` is the requester's "ip:port" (for the run's events), valid during the call. */
typedef void (*zlb_control_stop_cb)(void *arg, const char *client);
/** POST /pause (paused true) or POST /resume; called on the control thread. */
typedef void (*zlb_control_pause_cb)(void *arg, bool paused, const char *client);

/** PATCH /run with its body (at most ZLB_CONTROL_BODY_MAX bytes, not NUL-terminated); called
 * on the control thread, which it may block briefly (the run applies the change). Returns the
 * HTTP status and sets *answer to a malloc'd JSON document (freed by the control port). */
typedef unsigned (*zlb_control_patch_cb)(void *arg, const char *body, size_t len,
                                         const char *client, char **answer);

/* The largest request body read (PATCH /run only; every other request with a body is refused
 * unread). A longer Content-Length is answered 413 and a chunked body 411, both before any of
 * the body is read. */
#define ZLB_CONTROL_BODY_MAX (64u * 1024u)

/* A static file built into the binary (the dashboard page and its script). Served to anyone,
 * token or not, since it holds no data: the page asks for the token itself, once a data
 * endpoint answers 401. */
typedef struct zlb_control_asset {
    const char *path;         /* "/", "/dash.js" */
    const char *content_type; /* "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
} zlb_control_asset_t;

typedef struct zlb_control_opts {
    const char *listen; /* "127.0.0.1:8089", "[::1]:0"; port 0 lets the kernel pick (borrowed) */
    const char *token;  /* bearer token for mutating endpoints, or NULL (borrowed, copied) */
    const char *address_file;      /* write the bound "host:port" here once listening, or NULL */
    zlb_control_stop_cb on_stop;   /* POST /stop; called on the control thread */
    zlb_control_pause_cb on_pause; /* POST /pause, /resume (same guards as /stop); NULL: 404 */
    zlb_control_patch_cb on_patch; /* PATCH /run (guards of /stop but the content type); NULL:
                                      405 */
    void *arg;
    const zlb_control_asset_t *assets; /* static files, borrowed for the server's life */
    size_t nassets;
} zlb_control_opts_t;

/** Starts the server: an accept thread of ours (header deadlines, the connection limit, room made
 * for new clients, no busy wait when out of descriptors) and libmicrohttpd's polling thread,
 * both created with every signal blocked and no CPU pin inherited from a poller. A non-loopback
 * listen address without a token is refused (-EPERM). Returns 0 or -errno with a message in err.
 * Any thread (main). */
int zlb_control_start(const zlb_control_opts_t *opts, zlb_control_t **out, char *err,
                      size_t errlen);
/** The bound address, e.g. "127.0.0.1:8089" (valid until destroy). */
const char *zlb_control_address(const zlb_control_t *c);
/** Publishes the body served for GET `path` ("/stats", "/stats/pollers", "/config",
 * "/metrics", "/health") with this HTTP status and content type. The body is copied. Any
 * thread. Paths never published answer 404. */
void zlb_control_publish(zlb_control_t *c, const char *path, unsigned status,
                         const char *content_type, const char *body, size_t len);
/** Starts the series served at GET `path` ("/stats/series"): GET path?since=T answers
 * {<head>, "rows": [every kept row with t > T, oldest first]} (no since: every kept row);
 * `head` is the JSON members before "rows" (e.g. "\"interval_s\":1"). The newest `keep` rows
 * are kept. Token rules as for published documents. Call once, before appending. Any thread. */
void zlb_control_series_start(zlb_control_t *c, const char *path, const char *head, size_t keep);
/** Appends one row (a JSON object, copied) with key t, greater than the last row's. Any thread
 * (one writer). */
void zlb_control_series_append(zlb_control_t *c, double t, const char *row, size_t len);
/** Number of requests served (for tests and the stats overhead benchmark). */
unsigned long zlb_control_requests(const zlb_control_t *c);
/** Stops the server thread and frees everything. Accepts NULL. */
void zlb_control_destroy(zlb_control_t *c);

/** Reads a bearer token from a file that must be a regular file with mode 0600 or stricter
 * (no group/other bits); trailing newline stripped; empty is an error. 0 or -errno/-EPERM with
 * a message in err. *token is malloc'd. */
int zlb_control_read_token(const char *path, char **token, char *err, size_t errlen);

#endif
