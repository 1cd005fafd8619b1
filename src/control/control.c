/* control.c -- the HTTP control port: one libmicrohttpd thread serving published documents. */
#include <errno.h>
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
 * its request may simply not have been read yet. */
#define CONN_TIMEOUT_S 10u
#define HEADER_DEADLINE_NS (3 * ZLB_NS_PER_SEC)
#define EVICT_MIN_WAIT_NS (1000 * ZLB_NS_PER_MS)
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
    void *arg;
    atomic_ulong requests;
    char address[ZLB_CONTROL_ADDR_MAX];

    /* Guards the slot table only; held for a lookup or a pointer swap, never for I/O or a
     * copy, and never shared with the pollers. */
    pthread_mutex_t lock;
    unsigned nslots;
    slot_t slots[MAX_PATHS];

    /* Guards tracks, shed and the log window; never held across a libmicrohttpd call. */
    pthread_mutex_t track_lock;
    track_t tracks[TRACK_MAX];
    shed_t shed;
    unsigned lib_lines; /* libmicrohttpd lines written in this window */
    uint64_t window_start_ns;
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
static void name_control_thread(void)
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

/* Markers in *req_cls: the raw request target (before percent-decoding) was clean or not, then
 * "headers seen". The URI callback runs first, once per request. */
static int uri_ok, uri_bad, headers_seen;

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    return zlb_control_uri_clean(uri) ? &uri_ok : &uri_bad;
}

static void request_done_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    (void)req_cls;
    (void)toe;
    /* A kept-alive connection now waits for its next request: the header deadline applies
     * again from here. */
    set_waiting(cls, conn, true);
}

/* MHD calls this once when the headers are in and again when the request is complete. Nothing
 * here takes a body, so every refusal is answered on the first call, before a body is read
 * (MHD then closes the connection). Everything else is answered on the second call: a response
 * queued before MHD knows the request is complete would cost the connection its keep-alive. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    zlb_control_t *c = cls;
    (void)version;
    (void)upload_data;

    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    zlb_control_req_t rq = {
        .method = method,
        .path = url,
        .uri_clean = *req_cls != &uri_bad,
        .has_body = has_body(conn),
        .host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
        .origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization = auth,
        .custom_header =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Zlbench-Request") != NULL,
        .authorized = authorized(c, auth),
        .published = true, /* looked up below, once the request may be served */
    };

    if (*req_cls != &headers_seen) {
        name_control_thread();
        set_waiting(c, conn, false);
        *req_cls = &headers_seen;
        zlb_control_verdict_t v = zlb_control_decide(&c->policy, &rq);
        if (v.action == ZLB_CONTROL_REFUSE)
            return reply_refused(c, conn, v.status, v.reason);
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* Unreachable without a Content-Length or Transfer-Encoding, both refused above. */
        *upload_data_size = 0;
        return MHD_YES;
    }

    blob_t *b = lookup(c, url);
    rq.uri_clean = true; /* checked on the first call */
    rq.published = b != NULL;
    zlb_control_verdict_t v = zlb_control_decide(&c->policy, &rq);
    if (v.action != ZLB_CONTROL_SERVE)
        blob_unref(b);
    switch (v.action) {
    case ZLB_CONTROL_SERVE:
        return reply_document(c, conn, b);
    case ZLB_CONTROL_STOP:
        zlb_log_info("control: stop requested over HTTP");
        /* Called on every POST: the run controller's stop is idempotent, and a second request
         * is its chance to escalate if it wants to. */
        if (c->on_stop)
            c->on_stop(c->arg);
        return send_response(c, conn, MHD_HTTP_ACCEPTED, JSON_TYPE,
                             json_response("{\"stopping\":true}"));
    case ZLB_CONTROL_NOT_FOUND:
        return reply_not_found(c, conn, url);
    case ZLB_CONTROL_NOT_ALLOWED:
        return reply_not_allowed(c, conn, v.reason);
    case ZLB_CONTROL_UNAUTHORIZED:
        return reply_unauthorized(c, conn);
    case ZLB_CONTROL_REFUSE:
        break;
    }
    return reply_refused(c, conn, v.status, v.reason);
}

/* ---- connections: our accept loop, deadlines and shedding --------------------------------- */

/* libmicrohttpd 0.9.75 accepts by itself only with a busy wait when the process is out of
 * descriptors (a million log lines in six seconds), has no header deadline (its timeout is an
 * idle one, reset by each byte of a slowloris drip) and no way to make room for a new client.
 * So we accept, hand each socket over with MHD_add_connection, and keep a table of what it
 * holds: which connections still wait for their headers and since when. */

static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    zlb_control_t *c = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            return;
        pthread_mutex_lock(&c->track_lock);
        for (unsigned i = 0; i < TRACK_MAX; i++) {
            track_t *t = &c->tracks[i];
            if (t->used && !t->conn && t->fd == ci->connect_fd) {
                t->conn = conn;
                *socket_context = t;
                break;
            }
        }
        pthread_mutex_unlock(&c->track_lock);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        track_t *t = *socket_context;
        /* libmicrohttpd closes the socket only after this returns, so the fd number cannot be
         * reused (and shut down by mistake) while the entry still names it. */
        pthread_mutex_lock(&c->track_lock);
        if (t && t->conn == conn)
            t->used = false;
        pthread_mutex_unlock(&c->track_lock);
        *socket_context = NULL;
    }
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

/* Bytes the client sent that libmicrohttpd has not read yet: then the wait is ours (a loaded
 * machine, a sanitizer build), not the client's, and the connection is neither evicted nor timed
 * out. A slowloris drip is read byte by byte as it arrives, so it never has any pending. Locked
 * (the fd stays open while its entry is in use). */
static bool server_behind(const track_t *t)
{
    int pending = 0;
    return ioctl(t->fd, FIONREAD, &pending) == 0 && pending > 0;
}

/* Shuts a tracked connection down: libmicrohttpd sees end-of-file and closes it. Locked. */
static void evict(track_t *t)
{
    shutdown(t->fd, SHUT_RDWR);
    t->evicted = true;
}

/* The connection that has waited longest for its headers, if it has waited at least
 * EVICT_MIN_WAIT_NS (a client whose request is merely not read yet is never the one to go), among
 * those from ss's address when ss is given. Locked. */
static track_t *oldest_waiting(zlb_control_t *c, const struct sockaddr_storage *ss, uint64_t now)
{
    track_t *oldest = NULL;
    for (unsigned i = 0; i < TRACK_MAX; i++) {
        track_t *t = &c->tracks[i];
        /* since_ns may be a moment after now: stamped by the other thread meanwhile. */
        if (!t->used || t->evicted || !t->waiting || now < t->since_ns + EVICT_MIN_WAIT_NS ||
            server_behind(t))
            continue;
        if (ss && !same_addr(&t->addr, ss))
            continue;
        if (!oldest || t->since_ns < oldest->since_ns)
            oldest = t;
    }
    return oldest;
}

/* Before an accept: true when one more connection fits, after making room if needed. At the
 * limit, the connection that has waited longest for its headers goes (slow clients lose to fresh
 * ones, never the reverse). With no such connection the newcomer waits in the backlog. */
static bool make_room(zlb_control_t *c)
{
    uint64_t now = zlb_now_ns();
    unsigned live = 0, used = 0;
    pthread_mutex_lock(&c->track_lock);
    for (unsigned i = 0; i < TRACK_MAX; i++) {
        used += c->tracks[i].used;
        live += c->tracks[i].used && !c->tracks[i].evicted;
    }
    bool ok = used < TRACK_MAX && live < CONN_LIMIT;
    if (used < TRACK_MAX && !ok) {
        track_t *victim = oldest_waiting(c, NULL, now);
        if (victim) {
            evict(victim);
            c->shed.evicted++;
            ok = true;
        }
    }
    pthread_mutex_unlock(&c->track_lock);
    return ok;
}

/* After an accept: one address may hold only its share of the limit once exposed (on loopback
 * every client is 127.0.0.1 and the share is the whole limit). Over it, that address's slowest
 * connection makes room, or the newcomer is refused. Then fd goes to libmicrohttpd. */
static void admit(zlb_control_t *c, int fd, const struct sockaddr_storage *ss, socklen_t sslen)
{
    uint64_t now = zlb_now_ns();
    unsigned same = 0;
    track_t *slot = NULL;
    unsigned share = c->exposed ? PER_ADDR_EXPOSED : CONN_LIMIT;

    pthread_mutex_lock(&c->track_lock);
    for (unsigned i = 0; i < TRACK_MAX; i++) {
        track_t *t = &c->tracks[i];
        if (!t->used)
            slot = slot ? slot : t;
        else if (!t->evicted && same_addr(&t->addr, ss))
            same++;
    }
    if (slot && same >= share) {
        track_t *victim = oldest_waiting(c, ss, now);
        if (victim) {
            evict(victim);
            c->shed.evicted++;
        } else {
            slot = NULL;
        }
    }
    if (!slot) {
        c->shed.refused++;
        pthread_mutex_unlock(&c->track_lock);
        close(fd);
        return;
    }
    *slot = (track_t){.used = true, .waiting = true, .fd = fd, .since_ns = now};
    memcpy(&slot->addr, ss, sizeof(*ss));
    pthread_mutex_unlock(&c->track_lock);

    /* Not under the lock: libmicrohttpd may call connection_cb from here. */
    if (MHD_add_connection(c->daemon, fd, (const struct sockaddr *)ss, sslen) != MHD_YES) {
        /* It closed fd; the entry goes before the next accept can reuse the number. */
        pthread_mutex_lock(&c->track_lock);
        if (slot->used && slot->fd == fd && !slot->conn)
            slot->used = false;
        c->shed.refused++;
        pthread_mutex_unlock(&c->track_lock);
    }
}

/* Shuts down connections whose headers missed their deadline. */
static void sweep(zlb_control_t *c, uint64_t now)
{
    pthread_mutex_lock(&c->track_lock);
    for (unsigned i = 0; i < TRACK_MAX; i++) {
        track_t *t = &c->tracks[i];
        if (t->used && !t->evicted && t->waiting && now > t->since_ns + HEADER_DEADLINE_NS &&
            !server_behind(t)) {
            evict(t);
            c->shed.timed_out++;
        }
    }
    pthread_mutex_unlock(&c->track_lock);
}

/* One line per window, only when something was shed: under abuse the log says what happened
 * and how often, in a few lines a minute instead of one per event. */
static void summarise(zlb_control_t *c, uint64_t now)
{
    pthread_mutex_lock(&c->track_lock);
    if (now - c->window_start_ns < SUMMARY_EVERY_NS) {
        pthread_mutex_unlock(&c->track_lock);
        return;
    }
    shed_t s = c->shed;
    memset(&c->shed, 0, sizeof(c->shed));
    c->window_start_ns = now;
    c->lib_lines = 0;
    pthread_mutex_unlock(&c->track_lock);
    if (s.refused || s.evicted || s.timed_out || s.no_fds || s.lib_suppressed)
        zlb_log_warn("control port, last %llu s: %lu connections refused at the limit, %lu made "
                     "room for newer ones, %lu missed the %llu s header deadline, %lu accepts "
                     "failed for lack of descriptors, %lu libmicrohttpd messages not shown",
                     (unsigned long long)(SUMMARY_EVERY_NS / ZLB_NS_PER_SEC), s.refused, s.evicted,
                     s.timed_out, (unsigned long long)(HEADER_DEADLINE_NS / ZLB_NS_PER_SEC),
                     s.no_fds, s.lib_suppressed);
}

typedef enum { ACCEPT_DRAINED, ACCEPT_FULL, ACCEPT_NO_FDS } accept_result_t;

/* Accepts what is queued, as long as there is room. ACCEPT_NO_FDS when the process is out of
 * descriptors (or memory) and ACCEPT_FULL at the limit: the caller then leaves the listener
 * alone for a while instead of spinning on it. */
static accept_result_t accept_some(zlb_control_t *c)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (!make_room(c))
            return ACCEPT_FULL;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(c->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(c, fd, &ss, len);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
            continue;
        case EAGAIN:
            return ACCEPT_DRAINED;
        default:
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the backlog and is
             * served once a descriptor frees up (the engine keeps a few in reserve for us). */
            pthread_mutex_lock(&c->track_lock);
            c->shed.no_fds++;
            pthread_mutex_unlock(&c->track_lock);
            return ACCEPT_NO_FDS;
        }
    }
    return ACCEPT_DRAINED;
}

static void *acceptor_main(void *arg)
{
    zlb_control_t *c = arg;
    uint64_t paused_until = 0, backoff = BACKOFF_MIN_NS;
    zlb_thread_set_name("control-accept");
    while (!atomic_load_explicit(&c->quit, memory_order_acquire)) {
        uint64_t now = zlb_now_ns();
        struct pollfd p[2] = {{.fd = c->wake_fd, .events = POLLIN},
                              {.fd = c->listen_fd, .events = POLLIN}};
        nfds_t n = now < paused_until ? 1 : 2;
        if (poll(p, n, SWEEP_MS) < 0 && errno != EINTR)
            zlb_fatal("control: poll: %s", strerror(errno));
        now = zlb_now_ns();
        sweep(c, now);
        if (n == 2 && (p[1].revents & POLLIN)) {
            switch (accept_some(c)) {
            case ACCEPT_DRAINED:
                backoff = BACKOFF_MIN_NS;
                break;
            case ACCEPT_FULL: /* room comes from closes or the next sweep */
                paused_until = now + (uint64_t)SWEEP_MS * ZLB_NS_PER_MS / 2;
                break;
            case ACCEPT_NO_FDS:
                paused_until = now + backoff;
                backoff = ZLB_MIN(backoff * 2, BACKOFF_MAX_NS);
                break;
            }
        }
        summarise(c, now);
    }
    return NULL;
}

/* ---- start and stop ----------------------------------------------------------------------- */

/* A library that logs per event must not flood ours: a burst per window is written, the rest
 * counted into the window's summary line. */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    zlb_control_t *c = cls;
    char buf[512];
    pthread_mutex_lock(&c->track_lock);
    bool show = c->lib_lines < LIB_LOG_BURST;
    if (show)
        c->lib_lines++;
    else
        c->shed.lib_suppressed++;
    pthread_mutex_unlock(&c->track_lock);
    if (!show)
        return;
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
        0, NULL, NULL, handle_request, c, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, c,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, c, MHD_OPTION_NOTIFY_COMPLETED, request_done_cb, c,
        MHD_OPTION_NOTIFY_CONNECTION, connection_cb, c, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)TRACK_MAX, MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_END);
    int rc = c->daemon ? 0 : (errno ? -errno : -EIO);
    if (rc == 0) {
        rc = -pthread_create(&c->acceptor, NULL, acceptor_main, c);
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
    atomic_init(&c->quit, false);
    pthread_mutex_init(&c->track_lock, NULL);
    c->window_start_ns = zlb_now_ns();
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
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->track_lock);
    free(c);
}
