/* control.c -- the HTTP control port: one libmicrohttpd thread serving published documents. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "control/control_internal.h"
#include "core/core.h"

#define MAX_PATHS 16
#define PATH_MAX_LEN 64
#define CONN_LIMIT 64u
#define PER_IP_LIMIT 16u /* only when exposed beyond loopback, where peers differ */
#define CONN_TIMEOUT_S 10u
#define CONN_MEMORY (32 * 1024)
#define LISTEN_BACKLOG 64
#define ECHO_PATH_MAX 200 /* how much of an unknown path a 404 repeats back */

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

struct zlb_control {
    struct MHD_Daemon *daemon;
    int listen_fd; /* owned; MHD borrows it until quiesced */
    bool exposed;  /* bound beyond loopback: reads need the token too */
    char *token;   /* owned, or NULL */
    size_t token_len;
    zlb_control_stop_cb on_stop;
    void *arg;
    atomic_ulong requests;
    char address[ZLB_CONTROL_ADDR_MAX];

    /* Guards the slot table only; held for a lookup or a pointer swap, never for I/O or a
     * copy, and never shared with the pollers. */
    pthread_mutex_t lock;
    unsigned nslots;
    slot_t slots[MAX_PATHS];
};

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

/* Unknown paths arrive percent-decoded and may hold any byte; only printable ASCII is echoed
 * as is, the rest as \u escapes (bytes >= 0x80 as U+FFFD), so the body is always valid JSON. */
static void json_escape(char *out, size_t cap, const char *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; in[i] && i < ECHO_PATH_MAX; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (o + 7 >= cap)
            break;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else if (ch >= 0x80) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
        } else {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[ch >> 4];
            out[o + 5] = hex[ch & 15];
            o += 6;
        }
    }
    out[o] = '\0';
}

static enum MHD_Result reply_not_found(zlb_control_t *c, struct MHD_Connection *conn,
                                       const char *url)
{
    char esc[ECHO_PATH_MAX * 6 + 8];
    char body[sizeof(esc) + 64];
    json_escape(esc, sizeof(esc), url);
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

static enum MHD_Result reply_unauthorized(zlb_control_t *c, struct MHD_Connection *conn)
{
    struct MHD_Response *r = json_response("{\"error\":\"unauthorized\"}");
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                     "Bearer realm=\"zlbench\"") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_UNAUTHORIZED, JSON_TYPE, r);
}

/* The connection is closed after this answer: the unread body would otherwise be parsed as the
 * next request. */
static enum MHD_Result reply_body_refused(zlb_control_t *c, struct MHD_Connection *conn)
{
    struct MHD_Response *r = json_response("{\"error\":\"request bodies are not accepted\"}");
    if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return send_response(c, conn, MHD_HTTP_CONTENT_TOO_LARGE, JSON_TYPE, r);
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

/* ---- request routing ---------------------------------------------------------------------- */

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

static bool authorized(const zlb_control_t *c, struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
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
static void name_control_thread(void)
{
    static _Thread_local bool named;
    if (!named) {
        zlb_thread_set_name("control");
        named = true;
    }
}

/* MHD calls this once when the headers are in and again when the request is complete. Nothing
 * here takes a body, so one that is announced is refused on the first call, before it is read
 * (MHD then closes the connection). Everything else is answered on the second call: a response
 * queued before MHD knows the request is complete would cost the connection its keep-alive. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    static int headers_seen;
    zlb_control_t *c = cls;
    (void)version;
    (void)upload_data;

    if (!*req_cls) {
        *req_cls = &headers_seen;
        name_control_thread();
        if (has_body(conn))
            return reply_body_refused(c, conn);
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* Unreachable without a Content-Length or Transfer-Encoding, both refused above. */
        *upload_data_size = 0;
        return MHD_YES;
    }

    bool is_get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    bool is_stop = strcmp(url, "/stop") == 0;

    /* On loopback only the mutating endpoint is guarded; once exposed, reads are too, since
     * the config and stats documents describe targets and infrastructure. */
    if (c->token && (c->exposed || (is_stop && is_post)) && !authorized(c, conn))
        return reply_unauthorized(c, conn);

    if (is_stop) {
        if (!is_post)
            return reply_not_allowed(c, conn, "POST");
        zlb_log_info("control: stop requested over HTTP");
        /* Called on every POST: the run controller's stop is idempotent, and a second request
         * is its chance to escalate if it wants to. */
        if (c->on_stop)
            c->on_stop(c->arg);
        return send_response(c, conn, MHD_HTTP_ACCEPTED, JSON_TYPE,
                             json_response("{\"stopping\":true}"));
    }

    blob_t *b = lookup(c, url);
    if (!b)
        return reply_not_found(c, conn, url);
    if (!is_get) {
        blob_unref(b);
        return reply_not_allowed(c, conn, "GET, HEAD");
    }
    return reply_document(c, conn, b);
}

/* ---- start and stop ----------------------------------------------------------------------- */

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    name_control_thread();
    zlb_log_warn("control: libmicrohttpd: %s", buf);
}

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

/* The MHD thread inherits the creator's signal mask and CPU affinity. With every signal
 * blocked here, process-directed signals (SIGINT, SIGTERM) always land on main's sigwait or
 * handler, never on the control thread. Affinity needs no reset: main starts the control port
 * and is never pinned; only poller threads pin themselves. */
static struct MHD_Daemon *start_daemon(zlb_control_t *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    errno = 0;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, handle_request, c, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, c, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)c->listen_fd, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, c->exposed ? PER_IP_LIMIT : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONN_MEMORY, MHD_OPTION_END);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return d;
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
    c->exposed = !loopback;
    c->on_stop = opts->on_stop;
    c->arg = opts->arg;
    atomic_init(&c->requests, 0);
    pthread_mutex_init(&c->lock, NULL);
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

    c->daemon = start_daemon(c);
    if (!c->daemon) {
        rc = errno ? -errno : -EIO;
        snprintf(err, errlen, "control port %s: libmicrohttpd failed to start (see log)",
                 c->address);
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
    if (c->daemon) {
        /* Quiescing takes the listen socket back, so MHD_stop_daemon leaves it to us instead
         * of closing an fd it does not own. If MHD cannot hand it back, stop closes it. */
        if (MHD_quiesce_daemon(c->daemon) != c->listen_fd)
            c->listen_fd = -1;
        /* Joins the thread and closes every connection; each response in flight is destroyed
         * and drops its blob reference before this returns. */
        MHD_stop_daemon(c->daemon);
    }
    /* On a failed start, libmicrohttpd 0.9.75 leaves an application's listen socket open. */
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    for (unsigned i = 0; i < c->nslots; i++)
        blob_unref(c->slots[i].blob);
    if (c->token) {
        explicit_bzero(c->token, c->token_len);
        free(c->token);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}
