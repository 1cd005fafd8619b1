/* resolve.c -- getaddrinfo on resolver threads, answers posted back to the asking loop, TTL cache.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

/* Destinations are few (the config's targets), so a short list beats a hash table; the cap
 * only guards against a caller resolving an unbounded set of names. */
#define CACHE_MAX 1024

typedef struct cache_entry {
    zlb_list_t node; /* in LRU order: front is the oldest insertion */
    char *host;      /* owned */
    uint16_t port;
    int family;
    zlb_net_addr_t addr;
    uint64_t expires_ns;
} cache_entry_t;

struct zlb_resolver {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    zlb_list_t queue; /* of zlb_resolve_req_t.qnode */
    bool stopping;
    pthread_t *threads;
    int nthreads, started;
    uint64_t ttl_ns;
    zlb_list_t cache;
    size_t ncache;
    zlb_resolver_stats_t st;
};

static cache_entry_t *cache_find(zlb_resolver_t *r, const zlb_resolve_req_t *q)
{
    zlb_list_t *it;

    zlb_list_for_each(it, &r->cache)
    {
        cache_entry_t *ce = ZLB_CONTAINER_OF(it, cache_entry_t, node);
        if (ce->port == q->port && ce->family == q->family && strcmp(ce->host, q->host) == 0)
            return ce;
    }
    return NULL;
}

static void cache_free(cache_entry_t *ce)
{
    zlb_list_remove(&ce->node);
    free(ce->host);
    free(ce);
}

static void cache_store(zlb_resolver_t *r, const zlb_resolve_req_t *q, uint64_t now)
{
    cache_entry_t *ce = cache_find(r, q);
    zlb_list_t *it, *next;

    if (!ce) {
        if (r->ncache >= CACHE_MAX) {
            for (it = r->cache.next; it != &r->cache; it = next) {
                next = it->next;
                cache_entry_t *old = ZLB_CONTAINER_OF(it, cache_entry_t, node);
                if (old->expires_ns <= now) {
                    cache_free(old);
                    r->ncache--;
                }
            }
            if (r->ncache >= CACHE_MAX) {
                cache_free(ZLB_CONTAINER_OF(r->cache.next, cache_entry_t, node));
                r->ncache--;
            }
        }
        ce = zlb_xcalloc(1, sizeof(*ce));
        ce->host = zlb_xstrdup(q->host);
        ce->port = q->port;
        ce->family = q->family;
        zlb_list_init(&ce->node);
        r->ncache++;
    } else {
        zlb_list_remove(&ce->node);
    }
    ce->addr = q->addr;
    ce->expires_ns = q->expires_ns;
    zlb_list_push_back(&r->cache, &ce->node);
}

static void lookup(zlb_resolve_req_t *q)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = q->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", q->port);

    rc = getaddrinfo(q->host, service, &hints, &res);
    q->sys_errno = rc == EAI_SYSTEM ? errno : 0;
    q->status = rc;
    if (rc == 0) {
        q->status = EAI_NONAME;
        for (ai = res; ai; ai = ai->ai_next) {
            if (zlb_net_addr_from_sockaddr(ai->ai_addr, ai->ai_addrlen, &q->addr) == 0) {
                q->status = 0;
                break;
            }
        }
        freeaddrinfo(res);
    }
}

static void *resolver_main(void *arg)
{
    zlb_resolver_t *r = arg;
    char name[16];
    static _Atomic int seq;

    snprintf(name, sizeof(name), "zlb-resolv-%d", atomic_fetch_add(&seq, 1));
    zlb_thread_set_name(name);

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (zlb_list_empty(&r->queue) && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping)
            break;
        zlb_resolve_req_t *q =
            ZLB_CONTAINER_OF(zlb_list_pop_front(&r->queue), zlb_resolve_req_t, qnode);
        uint64_t now = zlb_now_ns();
        cache_entry_t *ce = r->ttl_ns ? cache_find(r, q) : NULL;

        if (ce && ce->expires_ns > now) {
            q->status = 0;
            q->sys_errno = 0;
            q->addr = ce->addr;
            q->expires_ns = ce->expires_ns;
            q->cached = true;
            r->st.hits++;
        } else {
            r->st.lookups++;
            pthread_mutex_unlock(&r->mu);
            lookup(q);
            now = zlb_now_ns();
            q->expires_ns = now + r->ttl_ns;
            q->cached = false;
            pthread_mutex_lock(&r->mu);
            if (q->status != 0)
                r->st.failures++;
            else if (r->ttl_ns)
                cache_store(r, q, now);
        }
        /* After the post the request belongs to its loop again: touch nothing of it. */
        pthread_mutex_unlock(&r->mu);
        zlb_loop_post(q->loop, &q->task);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int zlb_resolver_create(int nthreads, uint64_t ttl_ns, zlb_resolver_t **out)
{
    zlb_resolver_t *r;
    int rc;

    *out = NULL;
    if (nthreads < 1)
        return -EINVAL;
    r = zlb_xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    zlb_list_init(&r->queue);
    zlb_list_init(&r->cache);
    r->ttl_ns = ttl_ns;
    r->threads = zlb_xcalloc((size_t)nthreads, sizeof(pthread_t));
    r->nthreads = nthreads;
    for (int i = 0; i < nthreads; i++) {
        rc = pthread_create(&r->threads[i], NULL, resolver_main, r);
        if (rc != 0) {
            zlb_resolver_destroy(r);
            return -rc;
        }
        r->started++;
    }
    *out = r;
    return 0;
}

void zlb_resolver_submit(zlb_resolver_t *r, zlb_resolve_req_t *req)
{
    req->status = 0;
    req->sys_errno = 0;
    req->cached = false;
    pthread_mutex_lock(&r->mu);
    r->st.requests++;
    zlb_list_push_back(&r->queue, &req->qnode);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void zlb_resolver_read_stats(zlb_resolver_t *r, zlb_resolver_stats_t *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    pthread_mutex_unlock(&r->mu);
}

void zlb_resolver_destroy(zlb_resolver_t *r)
{
    zlb_list_t *n;

    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->started; i++)
        pthread_join(r->threads[i], NULL);
    /* Every request gets its answer, so askers that count their outstanding posts balance. */
    while ((n = zlb_list_pop_front(&r->queue))) {
        zlb_resolve_req_t *q = ZLB_CONTAINER_OF(n, zlb_resolve_req_t, qnode);
        q->status = EAI_CANCELED;
        zlb_loop_post(q->loop, &q->task);
    }
    while (!zlb_list_empty(&r->cache))
        cache_free(ZLB_CONTAINER_OF(r->cache.next, cache_entry_t, node));
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->threads);
    free(r);
}
