/* log.c -- leveled log lines with one write(2) each, repeat suppression, thread names. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/core.h"

#define LOG_LINE_MAX 1024
#define LOG_REPEAT_WINDOW_NS ZLB_NS_PER_SEC
#define THREAD_NAME_MAX 32

zlb_log_level_t zlb_log_level = ZLB_LOG_INFO;
const char *const zlb_log_level_names[ZLB_LOG_OFF + 1] = {"trace", "debug", "info",
                                                          "warn",  "error", "off"};

/* Atomic only so that a late zlb_log_set_fd is not a data race; it is meant to be set once. */
static _Atomic int log_fd = 2;
static uint64_t start_ns;

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"};

/* Repeat suppression state is per thread, so the hot path of a repeated error takes no lock;
 * the price is that repeats are only folded within one thread. */
static _Thread_local struct {
    const char *file;
    int line;
    zlb_log_level_t lvl;
    uint64_t window_start; /* when this text was last actually written */
    uint64_t repeats;      /* identical lines swallowed since */
    size_t len;
    char text[LOG_LINE_MAX];
} last;

static _Thread_local char thread_name[THREAD_NAME_MAX];

__attribute__((constructor)) static void log_init_clock(void)
{
    start_ns = zlb_now_ns();
}

static void write_all(const char *buf, size_t len)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing log */
        }
        buf += n;
        len -= (size_t)n;
    }
}

static size_t format_prefix(char *buf, size_t cap, uint64_t now, zlb_log_level_t lvl)
{
    uint64_t rel = now > start_ns ? now - start_ns : 0;
    int n = snprintf(buf, cap, "%llu.%03llu %s [%s] ", (unsigned long long)(rel / ZLB_NS_PER_SEC),
                     (unsigned long long)(rel % ZLB_NS_PER_SEC / ZLB_NS_PER_MS), level_names[lvl],
                     zlb_thread_name());
    return n < 0 ? 0 : ZLB_MIN((size_t)n, cap - 1);
}

#define LIVE_MAX 256
#define CLEAR_LINE "\r\033[K"
/* The live status line, if one is shown: log lines clear it, print, and draw it again, all in
 * one write under the lock so that two threads' lines cannot interleave with it. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static char live[LIVE_MAX];
static size_t live_len; /* guarded by live_mu; 0: none shown */

static void write_line(uint64_t now, zlb_log_level_t lvl, const char *text, size_t len)
{
    char buf[sizeof(CLEAR_LINE) + LOG_LINE_MAX + 128 + LIVE_MAX];
    pthread_mutex_lock(&live_mu);
    size_t n = 0;
    if (live_len) {
        memcpy(buf, CLEAR_LINE, sizeof(CLEAR_LINE) - 1);
        n = sizeof(CLEAR_LINE) - 1;
    }
    n += format_prefix(buf + n, 128, now, lvl);
    len = ZLB_MIN(len, (size_t)LOG_LINE_MAX);
    memcpy(buf + n, text, len);
    n += len;
    buf[n++] = '\n';
    memcpy(buf + n, live, live_len);
    n += live_len;
    write_all(buf, n);
    pthread_mutex_unlock(&live_mu);
}

void zlb_log_live(const char *line, bool final)
{
    char buf[sizeof(CLEAR_LINE) + LIVE_MAX + 1];
    size_t n = sizeof(CLEAR_LINE) - 1;
    memcpy(buf, CLEAR_LINE, n);
    pthread_mutex_lock(&live_mu);
    size_t len = line ? ZLB_MIN(strlen(line), (size_t)LIVE_MAX - 1) : 0;
    if (!line && !live_len) {
        pthread_mutex_unlock(&live_mu);
        return; /* nothing shown: nothing to clear */
    }
    memcpy(buf + n, line ? line : "", len);
    n += len;
    if (final && line)
        buf[n++] = '\n';
    live_len = final || !line ? 0 : len;
    memcpy(live, line ? line : "", live_len);
    write_all(buf, n);
    pthread_mutex_unlock(&live_mu);
}

static void flush_repeats(uint64_t now)
{
    if (last.repeats == 0)
        return;
    char text[64];
    int n = snprintf(text, sizeof(text), "(last message repeated %llu times)",
                     (unsigned long long)last.repeats);
    write_line(now, last.lvl, text, (size_t)n);
    last.repeats = 0;
}

void zlb_log_write(zlb_log_level_t lvl, const char *file, int line, const char *fmt, ...)
{
    if ((unsigned)lvl >= ZLB_LOG_OFF)
        return;
    char text[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    size_t len = (size_t)r;
    if (len >= sizeof(text)) {
        len = sizeof(text) - 1;
        memcpy(text + len - 3, "...", 3);
    }
    if (len > 0 && text[len - 1] == '\n')
        len--;

    uint64_t now = zlb_now_ns();
    /* file is a string literal per call site, so comparing the pointer is enough. */
    if (last.file == file && last.line == line && last.len == len &&
        memcmp(last.text, text, len) == 0 && now - last.window_start < LOG_REPEAT_WINDOW_NS) {
        last.repeats++;
        return;
    }
    flush_repeats(now);
    write_line(now, lvl, text, len);
    last.file = file;
    last.line = line;
    last.lvl = lvl;
    last.window_start = now;
    last.len = len;
    memcpy(last.text, text, len);
}

void zlb_log_set_fd(int fd)
{
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

int zlb_log_level_parse(const char *name, zlb_log_level_t *out)
{
    for (size_t i = 0; i < ZLB_ARRAY_LEN(zlb_log_level_names); i++) {
        if (strcasecmp(name, zlb_log_level_names[i]) == 0) {
            *out = (zlb_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = ZLB_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void zlb_thread_set_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
    char kname[16]; /* the kernel's limit, NUL included */
    snprintf(kname, sizeof(kname), "%s", name);
    (void)pthread_setname_np(pthread_self(), kname); /* cosmetic: failure changes nothing */
}

/* Unnamed threads other than the main one are told apart by tid rather than all reading "main". */
const char *zlb_thread_name(void)
{
    if (ZLB_UNLIKELY(thread_name[0] == '\0')) {
        pid_t tid = gettid();
        if (tid == getpid())
            snprintf(thread_name, sizeof(thread_name), "main");
        else
            snprintf(thread_name, sizeof(thread_name), "tid-%d", (int)tid);
    }
    return thread_name;
}
