/* control.c -- the HTTP control port: one libmicrohttpd thread serving published documents. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "control/control_internal.h"
#include "core/core.h"

/* ---- published documents ------------------------------------------------------------------ */

static blob_t *blob_new(unsigned status, const char *content_type, const char *body, size_t len)
{
    size_t ctlen = strlen(content_type);
    blob_t *b = zlb_xmalloc(sizeof(*b) + len + 1 + ctlen + 1);
    atomic_init(&b->refs, 1);
    b->status = status;
    b->len = len;
    if (len)
        memcpy(b->data, body, len);
    b->data[len] = '\0';
    memcpy(b->data + len + 1, content_type, ctlen + 1);
    b->content_type = b->data + len + 1;
    return b;
}

static void blob_ref(blob_t *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

/* acq_rel: the freeing thread must see every earlier reader done with the bytes. */
static void blob_unref(blob_t *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

/* MHD's free callback for a response built on a blob: the response is done with it. */
static void blob_release_cb(void *cls)
{
    blob_unref(cls);
}

void zlb_control_publish(zlb_control_t *c, const char *path, unsigned status,
                         const char *content_type, const char *body, size_t len)
{
    if (!path || path[0] != '/' || strlen(path) >= PATH_MAX_LEN || strcmp(path, "/stop") == 0)
        zlb_fatal("control: bad publish path \"%s\"", path ? path : "(null)");
    if (status < 100 || status > 599)
        zlb_fatal("control: bad HTTP status %u for %s", status, path);
    if (!content_type || !*content_type)
        zlb_fatal("control: no content type for %s", path);

    /* The copy happens outside the lock: readers only ever wait for a pointer swap. */
    blob_t *fresh = blob_new(status, content_type, body, len);
    blob_t *old = NULL;

    pthread_mutex_lock(&c->lock);
    slot_t *s = NULL;
    for (unsigned i = 0; i < c->nslots; i++) {
        if (strcmp(c->slots[i].path, path) == 0) {
            s = &c->slots[i];
            break;
        }
    }
    if (!s) {
        if (c->nslots == MAX_PATHS) {
            pthread_mutex_unlock(&c->lock);
            zlb_fatal("control: more than %d published paths (adding %s)", MAX_PATHS, path);
        }
        s = &c->slots[c->nslots++];
        memcpy(s->path, path, strlen(path) + 1);
    }
    old = s->blob;
    s->blob = fresh;
    pthread_mutex_unlock(&c->lock);

    blob_unref(old);
}

/* Returns a new reference to the document at path, or NULL when it was never published. */
static blob_t *lookup(zlb_control_t *c, const char *path)
{
    blob_t *b = NULL;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->nslots; i++) {
        if (strcmp(c->slots[i].path, path) == 0) {
            b = c->slots[i].blob;
            blob_ref(b);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return b;
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Every response leaves through here, so every one carries a type and forbids caching (a
 * cached /stats would show a stale run as live). Takes over r. */
static enum MHD_Result send_response(zlb_control_t *c, struct MHD_Connection *conn, unsigned status,
                                     const char *content_type, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r); /* MHD keeps its own reference while sending */
    if (ret == MHD_YES)
        atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    return ret;
}

static struct MHD_Response *json_response(const char *json)
{
    return MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result reply_not_found(zlb_control_t *c, struct MHD_Connection *conn,
                                       const char *url)
{
    char esc[ZLB_CONTROL_ECHO_MAX * 6 + 8];
    char body[sizeof(esc) + 64];
    zlb_control_json_escape(esc, sizeof(esc), url);
    snprintf(body, sizeof(body), "{\"error\":\"not found\",\"path\":\"%s\"}", esc);
    return send_response(c, conn, MHD_HTTP_NOT_FOUND, JSON_TYPE, json_response(body));
}

static enum MHD_Result reply_not_allowed(zlb_control_t *c, struct MHD_Connection *conn,
                                         const char *allow)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"error\":\"method not allowed\",\"allow\":\"%s\"}", allow);
    struct MHD_Response *r = json_response(body);
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_METHOD_NOT_ALLOWED, JSON_TYPE, r);
}

/* close: the request's body is left unread (it must not be parsed as the next request). */
static enum MHD_Result reply_unauthorized(zlb_control_t *c, struct MHD_Connection *conn, bool close)
{
    struct MHD_Response *r = json_response("{\"error\":\"unauthorized\"}");
    if (r &&
        (MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"zlbench\"") !=
             MHD_YES ||
         (close && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES))) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_UNAUTHORIZED, JSON_TYPE, r);
}

/* The connection is closed after a refusal: an unread body would otherwise be parsed as the next
 * request, and a client refused for what it is (wrong Host, cross-origin) gets no second try on
 * the same connection. */
static enum MHD_Result reply_refused(zlb_control_t *c, struct MHD_Connection *conn, unsigned status,
                                     const char *why)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why);
    struct MHD_Response *r = json_response(body);
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, status, JSON_TYPE, r);
}

static enum MHD_Result reply_document(zlb_control_t *c, struct MHD_Connection *conn, blob_t *b)
{
    /* The response borrows the blob's bytes instead of copying up to a few hundred KiB per
     * request; its reference is dropped by MHD through blob_release_cb. */
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback_cls(b->len, b->data, blob_release_cb, b);
    if (!r) {
        blob_unref(b);
        return MHD_NO;
    }
    return send_response(c, conn, b->status, b->content_type, r);
}

/* The dashboard's files load nothing from elsewhere and run no inline code: its script and
 * style come from this port ('self'), its data from this port's JSON documents, and nothing
 * may frame it. A page can then neither be made to leak the token nor to run injected text. */
#define ASSET_CSP                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const zlb_control_asset_t *asset_of(const zlb_control_t *c, const char *path)
{
    for (size_t i = 0; i < c->nassets; i++)
        if (strcmp(c->assets[i].path, path) == 0)
            return &c->assets[i];
    return NULL;
}

static enum MHD_Result reply_asset(zlb_control_t *c, struct MHD_Connection *conn,
                                   const zlb_control_asset_t *a)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (r && (MHD_add_response_header(r, "Content-Security-Policy", ASSET_CSP) != MHD_YES ||
              MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES ||
              MHD_add_response_header(r, "Referrer-Policy", "no-referrer") != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_OK, a->content_type, r);
}

/* GET SERIES?since=T: the rows after T (a number of seconds; absent: all kept rows). */
static enum MHD_Result reply_series(zlb_control_t *c, struct MHD_Connection *conn)
{
    const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "since");
    double since = -INFINITY;
    if (arg) {
        char *end = NULL;
        since = strtod(arg, &end);
        if (!*arg || *end || !isfinite(since))
            return send_response(
                c, conn, MHD_HTTP_BAD_REQUEST, JSON_TYPE,
                json_response(
                    "{\"error\":\"since: expected a number of seconds, e.g. since=12.5\"}"));
    }
    char *body;
    size_t len;
    zlb_control_series_render(c, since, &body, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_OK, JSON_TYPE, r);
}

/* ---- request routing ---------------------------------------------------------------------- */

/* The announced length of the body, UINT64_MAX when it comes chunked (or the header is not a
 * plain number: then has_body says there is one and the length is unknown). */
static uint64_t body_len(struct MHD_Connection *conn)
{
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n = 0;
    if (!cl || !*cl ||
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return UINT64_MAX;
    for (; *cl; cl++) {
        if (*cl < '0' || *cl > '9' || n > UINT64_MAX / 20)
            return UINT64_MAX;
        n = n * 10 + (uint64_t)(*cl - '0');
    }
    return n;
}

static bool has_body(struct MHD_Connection *conn)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return true;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return false;
    /* Anything but a plain run of zeros counts as a body, malformed values included. */
    if (*cl == '\0')
        return true;
    for (; *cl; cl++) {
        if (*cl != '0')
            return true;
    }
    return false;
}

static bool authorized(const zlb_control_t *c, const char *h)
{
    if (!c->token || !h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return false;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t len = strlen(h);
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    return zlb_control_token_equal(c->token, c->token_len, h, len);
}

/* MHD owns the thread, so it is named for the log on its first callback. */
void zlb_control_name_thread(void)
{
    static _Thread_local bool named;
    if (!named) {
        zlb_thread_set_name("control");
        named = true;
    }
}

static track_t *track_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_waiting(zlb_control_t *c, struct MHD_Connection *conn, bool waiting)
{
    track_t *t = track_of(conn);
    if (!t)
        return;
    pthread_mutex_lock(&c->track_lock);
    t->waiting = waiting;
    t->since_ns = zlb_now_ns();
    pthread_mutex_unlock(&c->track_lock);
}

/* The requester as the run's events name it. */
static void client_of(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    buf[0] = '\0';
    if (!ci || !ci->client_addr || zlb_addr_format(ci->client_addr, buf, len) != 0)
        snprintf(buf, len, "unknown");
}

/* Markers in *req_cls: the raw request target (before percent-decoding) was clean or not, then
 * "headers seen". The URI callback runs first, once per request. A PATCH /run's *req_cls is its
 * body (req_body_t) from the headers on, freed when the request ends. */
static int uri_ok, uri_bad, headers_seen;

typedef struct req_body {
    size_t len;
    char data[ZLB_CONTROL_BODY_MAX];
} req_body_t;

static req_body_t *body_of(void *req_cls)
{
    return req_cls && req_cls != &uri_ok && req_cls != &uri_bad && req_cls != &headers_seen
               ? req_cls
               : NULL;
}

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    return zlb_control_uri_clean(uri) ? &uri_ok : &uri_bad;
}

static void request_done_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    free(body_of(*req_cls));
    *req_cls = NULL;
    /* A kept-alive connection now waits for its next request: the header deadline applies
     * again from here. */
    set_waiting(cls, conn, true);
}

/* PATCH /run once its body is in: the run thread validates and applies it (on_patch blocks until
 * it has, briefly); its answer goes back as is. */
static enum MHD_Result reply_patch(zlb_control_t *c, struct MHD_Connection *conn,
                                   const req_body_t *body)
{
    char client[ZLB_CONTROL_ADDR_MAX];
    char *answer = NULL;
    client_of(conn, client, sizeof(client));
    unsigned status = c->on_patch(c->arg, body->data, body->len, client, &answer);
    if (!answer || status < 100 || status > 599)
        zlb_fatal("control: PATCH /run answered %u without a document", status);
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(answer), answer, free);
    if (!r) {
        free(answer);
        return MHD_NO;
    }
    return send_response(c, conn, status, JSON_TYPE, r);
}

/* Takes one piece of a PATCH /run body. Its Content-Length was checked against the bound at the
 * headers, and libmicrohttpd hands over no more than that; more would be a broken promise, and
 * the connection is dropped (libmicrohttpd takes no answer in mid-body). */
static enum MHD_Result take_body(req_body_t *body, const char *data, size_t *size)
{
    size_t n = *size;
    *size = 0;
    if (n > ZLB_CONTROL_BODY_MAX - body->len)
        return MHD_NO;
    memcpy(body->data + body->len, data, n);
    body->len += n;
    return MHD_YES;
}

/* MHD calls this once when the headers are in, then once per piece of a body, and once more when
 * the request is complete. Only PATCH /run takes a body, so every refusal is answered on the
 * first call, before a body is read (MHD then closes the connection). Everything else is
 * answered on the last call: a response queued before MHD knows the request is complete would
 * cost the connection its keep-alive. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    zlb_control_t *c = cls;
    (void)version;

    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    zlb_control_req_t rq = {
        .method = method,
        .path = url,
        .uri_clean = *req_cls != &uri_bad,
        .has_body = has_body(conn),
        .body_len = body_len(conn),
        .host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
        .origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization = auth,
        .custom_header =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Zlbench-Request") != NULL,
        .authorized = authorized(c, auth),
        .published = true, /* looked up below, once the request may be served */
        .asset = asset_of(c, url) != NULL,
    };
    req_body_t *body = body_of(*req_cls);

    if (*req_cls != &headers_seen && !body) {
        zlb_control_name_thread();
        set_waiting(c, conn, false);
        *req_cls = &headers_seen;
        zlb_control_verdict_t v = zlb_control_decide(&c->policy, &rq);
        if (v.action == ZLB_CONTROL_REFUSE)
            return reply_refused(c, conn, v.status, v.reason);
        /* A body that will not be read: refused now, not read and thrown away. */
        if (v.action == ZLB_CONTROL_UNAUTHORIZED && rq.has_body)
            return reply_unauthorized(c, conn, true);
        if (v.action == ZLB_CONTROL_PATCH) {
            body = zlb_xmalloc(sizeof(*body));
            body->len = 0;
            *req_cls = body;
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (body)
            return take_body(body, upload_data, upload_data_size);
        /* Unreachable: a body is refused above unless it is a PATCH /run's. */
        *upload_data_size = 0;
        return MHD_YES;
    }

    blob_t *b = lookup(c, url);
    bool series = !b && zlb_control_series_match(c, url);
    rq.uri_clean = true; /* checked on the first call */
    rq.published = b != NULL || series;
    zlb_control_verdict_t v = zlb_control_decide(&c->policy, &rq);
    if (v.action != ZLB_CONTROL_SERVE)
        blob_unref(b);
    switch (v.action) {
    case ZLB_CONTROL_SERVE:
        return series ? reply_series(c, conn) : reply_document(c, conn, b);
    case ZLB_CONTROL_ASSET:
        return reply_asset(c, conn, asset_of(c, url));
    case ZLB_CONTROL_STOP: {
        char client[ZLB_CONTROL_ADDR_MAX];
        client_of(conn, client, sizeof(client));
        zlb_log_info("control: stop requested over HTTP by %s", client);
        /* Called on every POST: the run controller's stop is idempotent, and a second request
         * is its chance to escalate if it wants to. */
        if (c->on_stop)
            c->on_stop(c->arg, client);
        return send_response(c, conn, MHD_HTTP_ACCEPTED, JSON_TYPE,
                             json_response("{\"stopping\":true}"));
    }
    case ZLB_CONTROL_PAUSE:
    case ZLB_CONTROL_RESUME: {
        bool paused = v.action == ZLB_CONTROL_PAUSE;
        char client[ZLB_CONTROL_ADDR_MAX];
        client_of(conn, client, sizeof(client));
        zlb_log_info("control: %s requested over HTTP by %s", paused ? "pause" : "resume", client);
        c->on_pause(c->arg, paused, client);
        return send_response(c, conn, MHD_HTTP_OK, JSON_TYPE,
                             json_response(paused ? "{\"paused\":true}" : "{\"paused\":false}"));
    }
    case ZLB_CONTROL_PATCH:
        if (!body) /* decided PATCH now but not at the headers: cannot be (same inputs) */
            return reply_refused(c, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "no body context");
        return reply_patch(c, conn, body);
    case ZLB_CONTROL_NOT_FOUND:
        return reply_not_found(c, conn, url);
    case ZLB_CONTROL_NOT_ALLOWED:
        return reply_not_allowed(c, conn, v.reason);
    case ZLB_CONTROL_UNAUTHORIZED:
        return reply_unauthorized(c, conn, false);
    case ZLB_CONTROL_REFUSE:
        break;
    }
    return reply_refused(c, conn, v.status, v.reason);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static int open_listener(const struct sockaddr_storage *ss, socklen_t sslen, const char *spec,
                         char *err, size_t errlen)
{
    int one = 1;
    int rc;
    /* Non-blocking: with epoll, MHD may find the backlog empty when it accepts. */
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port %s: socket: %s", spec, strerror(-rc));
        return rc;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port %s: SO_REUSEADDR: %s", spec, strerror(-rc));
        goto fail;
    }
    /* "[::]" means IPv6 only; whether it would also take IPv4 must not depend on a sysctl. */
    if (ss->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port %s: IPV6_V6ONLY: %s", spec, strerror(-rc));
        goto fail;
    }
    if (bind(fd, (const struct sockaddr *)ss, sslen) < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port: cannot bind %s: %s", spec, strerror(-rc));
        goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port %s: listen: %s", spec, strerror(-rc));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

/* Readers polling for the file see either nothing or the whole address, never a prefix. */
static int write_address_file(const char *path, const char *address, char *err, size_t errlen)
{
    char line[ZLB_CONTROL_ADDR_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s\n", address);
    int rc = zlb_write_file_atomic(path, line, (size_t)n, 0644);
    if (rc < 0)
        snprintf(err, errlen, "cannot write the control address file %s: %s", path, strerror(-rc));
    return rc;
}

int zlb_control_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                             bool *loopback)
{
    if (!listen || zlb_addr_parse(listen, ss, len) != 0)
        return -EINVAL;
    *loopback = zlb_addr_is_loopback((const struct sockaddr *)ss);
    return 0;
}

/* The MHD thread and the acceptor inherit the creator's signal mask and CPU affinity. With
 * every signal blocked here, process-directed signals (SIGINT, SIGTERM) always land on main's
 * sigwait or handler, never on a control thread. Affinity needs no reset: main starts the
 * control port and is never pinned; only poller threads pin themselves. */
static int start_threads(zlb_control_t *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    errno = 0;
    /* The per-address share and the connection limit are ours (admit); libmicrohttpd's limit
     * only has to leave room for evicted connections it has not closed yet. */
    c->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL, handle_request, c, MHD_OPTION_EXTERNAL_LOGGER, zlb_control_mhd_log, c,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, c, MHD_OPTION_NOTIFY_COMPLETED, request_done_cb, c,
        MHD_OPTION_NOTIFY_CONNECTION, zlb_control_connection_cb, c, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)TRACK_MAX, MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_END);
    int rc = c->daemon ? 0 : (errno ? -errno : -EIO);
    if (rc == 0) {
        rc = -pthread_create(&c->acceptor, NULL, zlb_control_acceptor_main, c);
        c->acceptor_started = rc == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int zlb_control_start(const zlb_control_opts_t *opts, zlb_control_t **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    bool loopback = false;
    zlb_control_t *c = NULL;
    int rc;

    *out = NULL;
    if (!opts || !opts->listen) {
        snprintf(err, errlen, "control port: no listen address");
        return -EINVAL;
    }
    if (zlb_control_parse_listen(opts->listen, &ss, &sslen, &loopback) < 0) {
        snprintf(err, errlen,
                 "control port: bad listen address \"%s\" (expected HOST:PORT with a numeric "
                 "host, e.g. 127.0.0.1:8089 or [::1]:8089)",
                 opts->listen);
        return -EINVAL;
    }
    if (opts->token && !zlb_control_token_valid(opts->token, strlen(opts->token))) {
        snprintf(err, errlen,
                 "control port: the token must be 1..%d visible ASCII characters without spaces",
                 ZLB_CONTROL_TOKEN_MAX);
        return -EINVAL;
    }
    if (!loopback && !opts->token) {
        snprintf(err, errlen,
                 "control port: refusing to listen on non-loopback address %s without a bearer "
                 "token (set a token file, or listen on 127.0.0.1 / [::1])",
                 opts->listen);
        return -EPERM;
    }

    c = zlb_xcalloc(1, sizeof(*c));
    c->listen_fd = -1;
    c->wake_fd = -1;
    c->exposed = !loopback;
    c->policy.exposed = !loopback;
    c->policy.has_token = opts->token != NULL;
    c->policy.can_pause = opts->on_pause != NULL;
    c->policy.can_patch = opts->on_patch != NULL;
    atomic_init(&c->quit, false);
    pthread_mutex_init(&c->track_lock, NULL);
    c->window_start_ns = zlb_now_ns();
    c->on_stop = opts->on_stop;
    c->on_pause = opts->on_pause;
    c->on_patch = opts->on_patch;
    c->arg = opts->arg;
    c->assets = opts->assets;
    c->nassets = opts->nassets;
    atomic_init(&c->requests, 0);
    pthread_mutex_init(&c->lock, NULL);
    zlb_control_series_init(&c->series);
    if (opts->token) {
        c->token = zlb_xstrdup(opts->token);
        c->token_len = strlen(c->token);
    }

    rc = open_listener(&ss, sslen, opts->listen, err, errlen);
    if (rc < 0)
        goto fail;
    c->listen_fd = rc;

    /* Port 0 is resolved only now, by the kernel. */
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(c->listen_fd, (struct sockaddr *)&bound, &blen) < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port %s: getsockname: %s", opts->listen, strerror(-rc));
        goto fail;
    }
    zlb_addr_format((struct sockaddr *)&bound, c->address, sizeof(c->address));

    c->policy.port = zlb_addr_port((struct sockaddr *)&bound);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "control port: eventfd: %s", strerror(-rc));
        goto fail;
    }
    rc = start_threads(c);
    if (rc < 0) {
        snprintf(err, errlen, "control port %s: cannot start its threads: %s (see log)", c->address,
                 strerror(-rc));
        goto fail;
    }
    if (opts->address_file) {
        rc = write_address_file(opts->address_file, c->address, err, errlen);
        if (rc < 0)
            goto fail;
    }
    zlb_log_info("control port listening on %s%s", c->address,
                 c->token ? (c->exposed ? " (token required)" : " (token required for /stop)")
                          : "");
    *out = c;
    return 0;
fail:
    zlb_control_destroy(c);
    return rc;
}

const char *zlb_control_address(const zlb_control_t *c)
{
    return c->address;
}

unsigned long zlb_control_requests(const zlb_control_t *c)
{
    return atomic_load_explicit(&c->requests, memory_order_relaxed);
}

void zlb_control_destroy(zlb_control_t *c)
{
    if (!c)
        return;
    if (c->acceptor_started) {
        uint64_t one = 1;
        atomic_store_explicit(&c->quit, true, memory_order_release);
        if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            zlb_fatal("control: wake the acceptor: %s", strerror(errno));
        pthread_join(c->acceptor, NULL);
    }
    /* Joins the thread and closes every connection; each response in flight is destroyed and
     * drops its blob reference before this returns. */
    if (c->daemon)
        MHD_stop_daemon(c->daemon);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    for (unsigned i = 0; i < c->nslots; i++)
        blob_unref(c->slots[i].blob);
    if (c->token) {
        explicit_bzero(c->token, c->token_len);
        free(c->token);
    }
    zlb_control_series_dispose(&c->series);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->track_lock);
    free(c);
}
