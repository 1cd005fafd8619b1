/* bench_timers.c -- timer insert+fire+cancel per second: zlbench's heap vs a sorted list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop/loop.h"

/* One operation = cancel an outstanding timer and re-arm it at a random deadline (the
 * connect/idle timeout pattern), plus arm a timer that is already due and fire it. The
 * outstanding timers keep the structure at OUTSTANDING entries. Both sides run the same
 * sequence from the same seed, OPS_PER_PASS operations per loop iteration, for ROUND_NS.
 * The due timers get decreasing deadlines: each goes to the head of the sorted list in O(1)
 * (equal deadlines would make the list walk past the earlier ones, quadratic in the pass size,
 * which is not the cost being compared) and sifts all the way up the heap (its worst case). */
#define OUTSTANDING 10000
#define OPS_PER_PASS 1000
#define ROUNDS 5
#define ROUND_NS (300 * ZLB_NS_PER_MS)
#define FAR_NS (3600 * ZLB_NS_PER_SEC)

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t far_deadline(uint64_t now)
{
    return now + FAR_NS + rng() % FAR_NS;
}

/* ---- zlbench: zlb_timer_* on a running zlb_loop ------------------------------------------ */

static struct {
    zlb_timer_t outstanding[OUTSTANDING];
    zlb_timer_t due[OPS_PER_PASS];
    zlb_timer_t driver;
    uint64_t fired, ops, start;
} z;

static void z_fire_cb(zlb_loop_t *loop, zlb_timer_t *t)
{
    (void)loop;
    (void)t;
    z.fired++;
}

static void z_never_cb(zlb_loop_t *loop, zlb_timer_t *t)
{
    (void)loop;
    (void)t;
    abort();
}

static void z_driver_cb(zlb_loop_t *loop, zlb_timer_t *t)
{
    uint64_t now = zlb_loop_now(loop);
    if (now - z.start >= ROUND_NS) {
        zlb_loop_stop(loop);
        return;
    }
    for (int i = 0; i < OPS_PER_PASS; i++) {
        zlb_timer_t *o = &z.outstanding[rng() % OUTSTANDING];
        zlb_timer_stop(loop, o);
        zlb_timer_start_at(loop, o, far_deadline(now), 0);
        zlb_timer_start_at(loop, &z.due[i], now - (uint64_t)i, 0);
    }
    z.ops += OPS_PER_PASS;
    zlb_timer_start_at(loop, t, now, 0); /* after the due ones: runs once they fired */
}

static double run_zlbench(uint64_t seed)
{
    zlb_loop_t *loop;
    if (zlb_loop_create(NULL, &loop) != 0)
        abort();
    rng_state = seed;
    memset(&z, 0, sizeof(z));
    uint64_t now = zlb_loop_update_time(loop);
    for (int i = 0; i < OUTSTANDING; i++) {
        zlb_timer_init(&z.outstanding[i], z_never_cb);
        zlb_timer_start_at(loop, &z.outstanding[i], far_deadline(now), 0);
    }
    for (int i = 0; i < OPS_PER_PASS; i++)
        zlb_timer_init(&z.due[i], z_fire_cb);
    zlb_timer_init(&z.driver, z_driver_cb);
    z.start = now;
    zlb_timer_start_at(loop, &z.driver, now, 0);
    zlb_loop_run(loop);
    uint64_t elapsed = zlb_now_ns() - z.start;
    zlb_loop_destroy(loop);
    uint64_t done = ZLB_MIN(z.ops, z.fired); /* ops whose due timer has fired */
    double rate = (double)done / ((double)elapsed / 1e9);
    fprintf(stderr, "  zlbench:   %.0f ops/s\n", rate);
    return rate;
}

/* ---- reference: timers in a list sorted by deadline, scanned from the head on insert ------ */

typedef struct ref_timer {
    struct ref_timer *prev, *next;
    uint64_t deadline;
    bool linked;
    void (*cb)(struct ref_timer *t);
} ref_timer_t;

static struct {
    ref_timer_t head; /* sentinel */
    ref_timer_t outstanding[OUTSTANDING];
    ref_timer_t due[OPS_PER_PASS];
    ref_timer_t driver;
    uint64_t fired, ops, start, now;
    bool stop;
} r;

static void ref_stop(ref_timer_t *t)
{
    if (!t->linked)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->linked = false;
}

/* O(n): walks to the first later deadline; equal deadlines stay in insertion order. */
static void ref_start_at(ref_timer_t *t, uint64_t deadline)
{
    ref_stop(t);
    t->deadline = deadline;
    ref_timer_t *pos = r.head.next;
    while (pos != &r.head && pos->deadline <= deadline)
        pos = pos->next;
    t->next = pos;
    t->prev = pos->prev;
    pos->prev->next = t;
    pos->prev = t;
    t->linked = true;
}

static void ref_fire_cb(ref_timer_t *t)
{
    (void)t;
    r.fired++;
}

static void ref_never_cb(ref_timer_t *t)
{
    (void)t;
    abort();
}

static void ref_driver_cb(ref_timer_t *t)
{
    uint64_t now = r.now;
    if (now - r.start >= ROUND_NS) {
        r.stop = true;
        return;
    }
    for (int i = 0; i < OPS_PER_PASS; i++) {
        ref_timer_t *o = &r.outstanding[rng() % OUTSTANDING];
        ref_stop(o);
        ref_start_at(o, far_deadline(now));
        ref_start_at(&r.due[i], now - (uint64_t)i);
    }
    r.ops += OPS_PER_PASS;
    ref_start_at(t, now);
}

static double run_reference(uint64_t seed)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        abort();
    rng_state = seed;
    memset(&r, 0, sizeof(r));
    r.head.next = r.head.prev = &r.head;
    r.now = zlb_now_ns();
    for (int i = 0; i < OUTSTANDING; i++) {
        r.outstanding[i].cb = ref_never_cb;
        ref_start_at(&r.outstanding[i], far_deadline(r.now));
    }
    for (int i = 0; i < OPS_PER_PASS; i++)
        r.due[i].cb = ref_fire_cb;
    r.driver.cb = ref_driver_cb;
    r.start = r.now;
    ref_start_at(&r.driver, r.now);
    /* the same loop shape as zlbench's: one (non-blocking) epoll wait per pass, then timers */
    struct epoll_event evs[16];
    while (!r.stop) {
        int n = epoll_wait(epfd, evs, 16, 0);
        (void)n;
        r.now = zlb_now_ns();
        uint64_t mark = r.now;
        while (r.head.next != &r.head && r.head.next->deadline <= mark && !r.stop) {
            ref_timer_t *t = r.head.next;
            ref_stop(t);
            t->cb(t);
            if (t == &r.driver)
                break; /* armed again for now: next pass, as in zlbench */
        }
    }
    uint64_t elapsed = zlb_now_ns() - r.start;
    close(epfd);
    uint64_t done = ZLB_MIN(r.ops, r.fired);
    double rate = (double)done / ((double)elapsed / 1e9);
    fprintf(stderr, "  reference: %.0f ops/s\n", rate);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(void)
{
    fprintf(stderr,
            "timers: %d outstanding, %d ops per pass, %d rounds of %llu ms each, alternating\n",
            OUTSTANDING, OPS_PER_PASS, ROUNDS, (unsigned long long)(ROUND_NS / ZLB_NS_PER_MS));
    double zr[ROUNDS], rr[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t seed = 0x9E3779B97F4A7C15ull + (uint64_t)i;
        zr[i] = run_zlbench(seed);
        rr[i] = run_reference(seed);
    }
    double zm = median(zr, ROUNDS), rm = median(rr, ROUNDS);
    printf("timers: zlbench=%.0f reference=%.0f ratio=%.2f unit=ops/s\n", zm, rm, zm / rm);
    return 0;
}
