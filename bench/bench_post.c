/* bench_post.c -- cross-thread posts/s into one loop: zlb_loop_post vs a ZLToolKit-style queue. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop/loop.h"

#define PRODUCERS 2
#define ROUNDS 5
#define DEFAULT_POSTS 300000 /* per producer and round */

static long posts_per_producer = DEFAULT_POSTS;

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "bench_post: %s failed: %s\n", what, strerror(errno));
        exit(1);
    }
}

/* ---- zlbench: preallocated intrusive tasks, one eventfd write per burst ------------------- */

static uint64_t z_count, z_total, z_end;

static void z_task_cb(zlb_loop_t *loop, zlb_task_t *task, bool discarded)
{
    (void)task;
    (void)discarded;
    if (++z_count == z_total) {
        z_end = zlb_now_ns();
        zlb_loop_stop(loop);
    }
}

typedef struct {
    zlb_loop_t *loop;
    zlb_task_t *tasks;
    pthread_barrier_t *go;
} z_producer_t;

static void *z_producer(void *arg)
{
    z_producer_t *p = arg;
    pthread_barrier_wait(p->go);
    for (long i = 0; i < posts_per_producer; i++)
        zlb_loop_post(p->loop, &p->tasks[i]);
    return NULL;
}

static void *z_consumer(void *arg)
{
    zlb_loop_run(arg);
    return NULL;
}

static double run_zlbench(void)
{
    zlb_loop_t *loop;
    check(zlb_loop_create(NULL, &loop) == 0, "zlb_loop_create");
    zlb_task_t *tasks = zlb_xmalloc((size_t)(PRODUCERS * posts_per_producer) * sizeof(*tasks));
    for (long i = 0; i < PRODUCERS * posts_per_producer; i++)
        zlb_task_init(&tasks[i], z_task_cb);
    z_count = 0;
    z_total = (uint64_t)(PRODUCERS * posts_per_producer);

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, PRODUCERS + 1);
    pthread_t consumer, producers[PRODUCERS];
    z_producer_t args[PRODUCERS];
    pthread_create(&consumer, NULL, z_consumer, loop);
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (z_producer_t){loop, tasks + i * posts_per_producer, &go};
        pthread_create(&producers[i], NULL, z_producer, &args[i]);
    }
    pthread_barrier_wait(&go);
    uint64_t start = zlb_now_ns();
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(producers[i], NULL);
    pthread_join(consumer, NULL);
    zlb_loop_stats_t st;
    zlb_loop_read_stats(loop, &st);
    fprintf(stderr, "  zlbench:   %.2f Mposts/s (%" PRIu64 " wakeups)\n",
            (double)z_total / ((double)(z_end - start) / 1e9) / 1e6, st.wakeups);

    pthread_barrier_destroy(&go);
    zlb_loop_destroy(loop);
    free(tasks);
    return (double)z_total / ((double)(z_end - start) / 1e9);
}

/* ---- reference: what ZLToolKit's EventPoller::async does ------------------------------------
 * A heap node per task (the std::list node holding the shared_ptr<Task>; ZLToolKit makes two
 * allocations, this makes one), a mutex around the list, and one byte written to a pipe per
 * post. The consumer wakes on the pipe, reads it dry, swaps the list out and runs it. */

typedef struct ref_node {
    struct ref_node *next;
    void (*fn)(void *arg);
    void *arg;
} ref_node_t;

typedef struct {
    pthread_mutex_t mu;
    ref_node_t *head, *tail;
    int pipe[2];
    int epfd;
    bool stop;
    uint64_t count, total, end;
} ref_loop_t;

static void ref_post(ref_loop_t *l, void (*fn)(void *), void *arg)
{
    ref_node_t *n = malloc(sizeof(*n));
    check(n != NULL, "malloc");
    n->next = NULL;
    n->fn = fn;
    n->arg = arg;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    pthread_mutex_unlock(&l->mu);
    ssize_t w = write(l->pipe[1], "", 1); /* EAGAIN when full is ignored, as in ZLToolKit */
    (void)w;
}

static void ref_task(void *arg)
{
    ref_loop_t *l = arg;
    if (++l->count == l->total) {
        l->end = zlb_now_ns();
        l->stop = true;
    }
}

static void *ref_consumer(void *arg)
{
    ref_loop_t *l = arg;
    struct epoll_event evs[1024];
    while (!l->stop) {
        int n = epoll_wait(l->epfd, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            char buf[1024];
            while (read(l->pipe[0], buf, sizeof(buf)) > 0)
                ;
            pthread_mutex_lock(&l->mu);
            ref_node_t *list = l->head;
            l->head = l->tail = NULL;
            pthread_mutex_unlock(&l->mu);
            while (list) {
                ref_node_t *next = list->next;
                list->fn(list->arg);
                free(list);
                list = next;
            }
        }
    }
    return NULL;
}

typedef struct {
    ref_loop_t *loop;
    pthread_barrier_t *go;
} ref_producer_t;

static void *ref_producer(void *arg)
{
    ref_producer_t *p = arg;
    pthread_barrier_wait(p->go);
    for (long i = 0; i < posts_per_producer; i++)
        ref_post(p->loop, ref_task, p->loop);
    return NULL;
}

static double run_reference(void)
{
    ref_loop_t l = {.total = (uint64_t)(PRODUCERS * posts_per_producer)};
    pthread_mutex_init(&l.mu, NULL);
    check(pipe2(l.pipe, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    l.epfd = epoll_create1(EPOLL_CLOEXEC);
    check(l.epfd >= 0, "epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    check(epoll_ctl(l.epfd, EPOLL_CTL_ADD, l.pipe[0], &ev) == 0, "epoll_ctl");

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, PRODUCERS + 1);
    pthread_t consumer, producers[PRODUCERS];
    ref_producer_t args[PRODUCERS];
    pthread_create(&consumer, NULL, ref_consumer, &l);
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (ref_producer_t){&l, &go};
        pthread_create(&producers[i], NULL, ref_producer, &args[i]);
    }
    pthread_barrier_wait(&go);
    uint64_t start = zlb_now_ns();
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(producers[i], NULL);
    pthread_join(consumer, NULL);
    double rate = (double)l.total / ((double)(l.end - start) / 1e9);
    fprintf(stderr, "  reference: %.2f Mposts/s\n", rate / 1e6);

    pthread_barrier_destroy(&go);
    close(l.pipe[0]);
    close(l.pipe[1]);
    close(l.epfd);
    pthread_mutex_destroy(&l.mu);
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

int main(int argc, char **argv)
{
    if (argc > 1)
        posts_per_producer = atol(argv[1]);
    if (posts_per_producer <= 0) {
        fprintf(stderr, "usage: bench_post [posts per producer]\n");
        return 2;
    }
    fprintf(stderr, "post: %d producers x %ld posts into one loop, %d rounds each, alternating\n",
            PRODUCERS, posts_per_producer, ROUNDS);
    double z[ROUNDS], r[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        z[i] = run_zlbench();
        r[i] = run_reference();
    }
    double zm = median(z, ROUNDS), rm = median(r, ROUNDS);
    printf("post: zlbench=%.0f reference=%.0f ratio=%.2f unit=posts/s\n", zm, rm, zm / rm);
    return 0;
}
