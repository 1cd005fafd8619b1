/* core.h -- the bottom layer: clock, intrusive list and heap, allocation, fatal errors, logging. */
#ifndef ZLB_CORE_H
#define ZLB_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/* ---- small helpers ---------------------------------------------------------------------- */

#define ZLB_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ZLB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ZLB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ZLB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ZLB_LIKELY(x) __builtin_expect(!!(x), 1)
#define ZLB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ZLB_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Exit codes, shared by every subcommand (run, validate, serve, compare, merge) and documented
 * in --help and the README. Here, below every module, so that each subcommand can return them. */
enum {
    ZLB_EXIT_OK = 0,          /* the run passed (or the command succeeded) */
    ZLB_EXIT_INTERNAL = 1,    /* internal error: something zlbench could not do */
    ZLB_EXIT_USAGE = 2,       /* bad usage, configuration or input file: nothing was started */
    ZLB_EXIT_THRESHOLDS = 3,  /* the run completed but a threshold failed */
    ZLB_EXIT_REGRESSION = 4,  /* `compare` found a regression */
    ZLB_EXIT_INVALID_RUN = 5, /* the generator saturated or the run ended before steady state */
};

#define ZLB_NS_PER_US 1000ull
#define ZLB_NS_PER_MS 1000000ull
#define ZLB_NS_PER_SEC 1000000000ull

/** Aborts with file:line and a message. For broken invariants and small-allocation failure. */
#define zlb_fatal(...) zlb_fatal_at(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void zlb_fatal_at(const char *file, int line, const char *fmt, ...) ZLB_PRINTF(3, 4);

/** malloc/calloc/realloc/strdup that never return NULL (fatal instead). Not for user-sized data. */
void *zlb_xmalloc(size_t size);
void *zlb_xcalloc(size_t n, size_t size);
void *zlb_xrealloc(void *p, size_t size);
char *zlb_xstrdup(const char *s);

/* ---- clock -------------------------------------------------------------------------------- */

/** Monotonic time in ns (vDSO, no syscall). Any thread. */
static inline uint64_t zlb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * ZLB_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/** CPU time consumed by the calling thread, in ns. */
static inline uint64_t zlb_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * ZLB_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/** Wall-clock time in ns since the epoch (for report timestamps only, never for latency). */
static inline uint64_t zlb_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * ZLB_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- intrusive doubly linked list (circular, with a sentinel head) ----------------------- */

typedef struct zlb_list {
    struct zlb_list *prev, *next;
} zlb_list_t;

static inline void zlb_list_init(zlb_list_t *head)
{
    head->prev = head->next = head;
}
static inline bool zlb_list_empty(const zlb_list_t *head)
{
    return head->next == head;
}
/** True when the node is linked in some list (nodes are kept self-linked when detached). */
static inline bool zlb_list_linked(const zlb_list_t *node)
{
    return node->next != node && node->next != NULL;
}
static inline void zlb_list_insert_after(zlb_list_t *pos, zlb_list_t *node)
{
    node->prev = pos;
    node->next = pos->next;
    pos->next->prev = node;
    pos->next = node;
}
static inline void zlb_list_push_back(zlb_list_t *head, zlb_list_t *node)
{
    zlb_list_insert_after(head->prev, node);
}
static inline void zlb_list_push_front(zlb_list_t *head, zlb_list_t *node)
{
    zlb_list_insert_after(head, node);
}
static inline void zlb_list_remove(zlb_list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}
static inline zlb_list_t *zlb_list_pop_front(zlb_list_t *head)
{
    zlb_list_t *n = head->next;
    if (n == head)
        return NULL;
    zlb_list_remove(n);
    return n;
}
/** Moves every node of src to the end of dst; src becomes empty. O(1). */
static inline void zlb_list_splice_back(zlb_list_t *dst, zlb_list_t *src)
{
    if (zlb_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    zlb_list_init(src);
}
/** Moves every node of src to the front of dst; src becomes empty. O(1). */
static inline void zlb_list_splice_front(zlb_list_t *dst, zlb_list_t *src)
{
    if (zlb_list_empty(src))
        return;
    src->prev->next = dst->next;
    dst->next->prev = src->prev;
    src->next->prev = dst;
    dst->next = src->next;
    zlb_list_init(src);
}
#define zlb_list_for_each(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)

/* ---- intrusive binary min-heap (timers) --------------------------------------------------- */

/* Ordered by (key, seq): equal keys come out in insertion order. The node remembers its index,
 * so removal of any node is O(log n). The array grows by doubling; reserve up front to keep
 * allocation off the hot path. */
typedef struct zlb_heap_node {
    uint64_t key;
    uint64_t seq;
    uint32_t index; /* position in the heap array, UINT32_MAX when not in a heap */
} zlb_heap_node_t;

typedef struct zlb_heap {
    zlb_heap_node_t **nodes; /* owned array of borrowed nodes */
    uint32_t size, capacity;
    uint64_t next_seq;
} zlb_heap_t;

#define ZLB_HEAP_NONE UINT32_MAX

void zlb_heap_init(zlb_heap_t *h);
void zlb_heap_dispose(zlb_heap_t *h);
/** Makes room for `capacity` nodes; returns 0 or -ENOMEM. */
int zlb_heap_reserve(zlb_heap_t *h, uint32_t capacity);
/** Inserts n with n->key set by the caller. n must not be in a heap. Fatal on OOM. */
void zlb_heap_push(zlb_heap_t *h, zlb_heap_node_t *n);
/** Removes n (which must be in h). */
void zlb_heap_remove(zlb_heap_t *h, zlb_heap_node_t *n);
static inline zlb_heap_node_t *zlb_heap_top(const zlb_heap_t *h)
{
    return h->size ? h->nodes[0] : NULL;
}
static inline void zlb_heap_node_init(zlb_heap_node_t *n)
{
    n->index = ZLB_HEAP_NONE;
}
static inline bool zlb_heap_node_linked(const zlb_heap_node_t *n)
{
    return n->index != ZLB_HEAP_NONE;
}

/* ---- logging -------------------------------------------------------------------------------- */

typedef enum {
    ZLB_LOG_TRACE,
    ZLB_LOG_DEBUG,
    ZLB_LOG_INFO,
    ZLB_LOG_WARN,
    ZLB_LOG_ERROR,
    ZLB_LOG_OFF
} zlb_log_level_t;

/* Read without a lock: set once at start-up, before threads exist. */
extern zlb_log_level_t zlb_log_level;
/* "trace" .. "off", indexed by level: the one name table (the config reads and prints these). */
extern const char *const zlb_log_level_names[ZLB_LOG_OFF + 1];

/* The level is checked before the arguments are even evaluated, so a filtered line costs one
 * compare. Each line: monotonic seconds since start, level, thread name, message; one write(2). */
#define ZLB_LOG(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) >= zlb_log_level)                                                                \
            zlb_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);                                 \
    } while (0)
#define zlb_log_trace(...) ZLB_LOG(ZLB_LOG_TRACE, __VA_ARGS__)
#define zlb_log_debug(...) ZLB_LOG(ZLB_LOG_DEBUG, __VA_ARGS__)
#define zlb_log_info(...) ZLB_LOG(ZLB_LOG_INFO, __VA_ARGS__)
#define zlb_log_warn(...) ZLB_LOG(ZLB_LOG_WARN, __VA_ARGS__)
#define zlb_log_error(...) ZLB_LOG(ZLB_LOG_ERROR, __VA_ARGS__)

/** Formats and writes one line to the log fd. A line identical to the previous one (same
 * file:line and text) within the rate-limit window is counted, not written; the count is
 * written as "(repeated N times)" when a different line comes or the window ends. Any thread. */
void zlb_log_write(zlb_log_level_t lvl, const char *file, int line, const char *fmt, ...)
    ZLB_PRINTF(4, 5);
/** Sets the fd lines go to (default 2). Call before threads start. */
void zlb_log_set_fd(int fd);
/** Shows `line` as the live status line at the bottom of the log's terminal (no newline),
 * replacing the previous one. While one is shown, every log line from any thread first clears
 * it, then is written, then the live line is drawn again, in one write: a log line never glues
 * onto it. `final`: the line is ended with a newline and stops being live. NULL: clears the
 * line from the terminal and stops. Any thread. */
void zlb_log_live(const char *line, bool final);
/** Parses "trace".."error"/"off"; returns 0 or -EINVAL. */
int zlb_log_level_parse(const char *name, zlb_log_level_t *out);
/** Names the calling thread for log lines and for the kernel (pthread_setname_np, 15 chars). */
void zlb_thread_set_name(const char *name);
/** The calling thread's name as set above ("main" by default). */
const char *zlb_thread_name(void);

/* ---- addresses and files ------------------------------------------------------------------ */

/* The one address vocabulary (config, net, control and serve all use these rules):
 * - HOST:PORT: PORT is 0..65535 in at most 5 digits; an IPv6 HOST goes in brackets, brackets hold
 *   IPv6 only, and an unbracketed HOST has no colon.
 * - An IP literal is IPv4 dotted-quad or IPv6, IPv6 with an optional zone ("fe80::1%eth0" or
 *   "fe80::1%2"); a zone name must be an interface that exists when it is turned into an address.
 * - A numeric address (what listeners bind) is an IP literal or "localhost" (127.0.0.1).
 * - Formatted: "1.2.3.4:80", "[::1]:80", "[fe80::1%2]:80" (the zone as its number). */

/** Splits "host:port" or "[v6-host]:port" into host (brackets removed) and port (0..65535).
 * An unbracketed host with a colon is refused. 0 or -EINVAL. */
int zlb_addr_split(const char *s, char *host, size_t hostlen, uint16_t *port);
/** HOST:PORT where HOST is a plausible name (no spaces, controls, brackets, '/' or '@') or a
 * bracketed IPv6 literal: *host (malloc'd, brackets removed) and *port. 0 or -EINVAL. */
int zlb_addr_host_port(const char *s, char **host, uint16_t *port);
/** True when host is an IP literal (IPv6 without brackets, zone allowed). */
bool zlb_addr_is_ip_literal(const char *host);
/** An IP literal and a port into a socket address (a zone into sin6_scope_id). No names,
 * no brackets. 0 or -EINVAL. */
int zlb_addr_literal(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
/** Parses a numeric "1.2.3.4:80" / "[::1]:80" / "[fe80::1%eth0]:80" (or "localhost:80", taken as
 * 127.0.0.1) into a socket address. No name resolution. 0 or -EINVAL. */
int zlb_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/** Writes "1.2.3.4:80", "[::1]:80" or "[fe80::1%2]:80". 0 or -EAFNOSUPPORT. */
int zlb_addr_format(const struct sockaddr *sa, char *buf, size_t len);
/** True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool zlb_addr_is_loopback(const struct sockaddr *sa);
uint16_t zlb_addr_port(const struct sockaddr *sa);
void zlb_addr_set_port(struct sockaddr_storage *ss, uint16_t port);
/** Writes a whole file atomically: a temp file beside it (created with `mode`), fsync, rename,
 * fsync of the folder. 0 or -errno. */
int zlb_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/** Removes the temporaries zlb_write_file_atomic left beside `path` when a process writing it
 * was killed: regular files named exactly "<basename>.XXXXXX" (mkostemp's six letters or digits)
 * last modified before before_wall_s (seconds since the epoch). Nothing else is touched. Calls
 * removed(name, arg) for each one removed (may be NULL). Returns how many, or -errno when the
 * folder cannot be read. */
int zlb_remove_stale_temps(const char *path, double before_wall_s,
                           void (*removed)(const char *name, void *arg), void *arg);

/** Raises RLIMIT_NOFILE to its hard limit and grows the process's fd table to hold nfds (or the
 * limit) at once. Call before threads exist. 0 or -errno. */
int zlb_fd_table_reserve(unsigned nfds);

/* ---- text buffers ------------------------------------------------------------------------- */

/* A growable text buffer (cold paths only: it allocates). data is always a NUL-terminated string
 * once anything was printed or after init. */
typedef struct zlb_buf {
    char *data; /* owned */
    size_t len, cap;
} zlb_buf_t;
/** Allocates a small initial buffer holding "". A zeroed, never-initialised buffer works too. */
void zlb_buf_init(zlb_buf_t *b);
/** Frees the data; the buffer may be initialised again. */
void zlb_buf_dispose(zlb_buf_t *b);
/** Appends formatted text, growing as needed (fatal on OOM). */
void zlb_buf_printf(zlb_buf_t *b, const char *fmt, ...) ZLB_PRINTF(2, 3);
/** Writes the shortest %g form of v that reads back as the same double ("6.401296076", not
 * "6.4012960760000004"). */
void zlb_format_double(double v, char *out, size_t len);

/* ---- version -------------------------------------------------------------------------------- */

/** "0.1.0" */
const char *zlb_version(void);
/** The git commit the binary was built from, or "unknown". */
const char *zlb_git_commit(void);

/* ---- strings and numbers --------------------------------------------------------------------- */

/** Parses a duration: "30s", "500ms", "2m", "1h", "250us", "100ns", "1.5s". A bare number is
 * rejected (units are mandatory). Returns 0 or -EINVAL / -ERANGE. */
int zlb_parse_duration(const char *s, uint64_t *ns_out);
/** Parses a size: "64KiB", "1MiB", "4096", "10KB" (KB = 1000). Returns 0 or -EINVAL / -ERANGE. */
int zlb_parse_size(const char *s, uint64_t *bytes_out);
/** The report's name for a percentile: "p" and its digits without the dot (99.99 -> "p9999",
 * 50 -> "p50"). */
void zlb_percentile_key(double p, char *key, size_t len);
/** Writes a duration as the shortest exact form ("1500ms", "2m", "30s"). */
void zlb_format_duration(uint64_t ns, char *buf, size_t len);

#endif
