/* accept.c -- the control port's own accept loop: header deadlines, shedding, quiet logs. */
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

/* ---- connections: our accept loop, deadlines and shedding --------------------------------- */

/* libmicrohttpd 0.9.75 accepts by itself only with a busy wait when the process is out of
 * descriptors (a million log lines in six seconds), has no header deadline (its timeout is an
 * idle one, reset by each byte of a slowloris drip) and no way to make room for a new client.
 * So we accept, hand each socket over with MHD_add_connection, and keep a table of what it
 * holds: which connections still wait for their headers and since when. */

void zlb_control_connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
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

void *zlb_control_acceptor_main(void *arg)
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

/* A library that logs per event must not flood ours: a burst per window is written, the rest
 * counted into the window's summary line. */
__attribute__((format(printf, 2, 0))) void zlb_control_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
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
    zlb_control_name_thread();
    zlb_log_warn("control: libmicrohttpd: %s", buf);
}
