/* heap.c -- intrusive binary min-heap ordered by (key, seq), with O(log n) removal by index. */
#include <errno.h>
#include <stdlib.h>

#include "core/core.h"

#define HEAP_MIN_CAPACITY 16

static inline bool less(const zlb_heap_node_t *a, const zlb_heap_node_t *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static inline void place(zlb_heap_t *h, uint32_t i, zlb_heap_node_t *n)
{
    h->nodes[i] = n;
    n->index = i;
}

/* Moves a hole up from i instead of swapping at each level: one store per level. */
static void sift_up(zlb_heap_t *h, uint32_t i, zlb_heap_node_t *n)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!less(n, h->nodes[parent]))
            break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(zlb_heap_t *h, uint32_t i, zlb_heap_node_t *n)
{
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->size)
            break;
        if (child + 1 < h->size && less(h->nodes[child + 1], h->nodes[child]))
            child++;
        if (!less(h->nodes[child], n))
            break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, n);
}

void zlb_heap_init(zlb_heap_t *h)
{
    h->nodes = NULL;
    h->size = h->capacity = 0;
    h->next_seq = 0;
}

/* The nodes are borrowed: their owners may already be gone, so they are not touched here. */
void zlb_heap_dispose(zlb_heap_t *h)
{
    free(h->nodes);
    zlb_heap_init(h);
}

int zlb_heap_reserve(zlb_heap_t *h, uint32_t capacity)
{
    if (capacity <= h->capacity)
        return 0;
    if (capacity >= ZLB_HEAP_NONE)
        return -ENOMEM;
    zlb_heap_node_t **nodes = realloc(h->nodes, (size_t)capacity * sizeof(*nodes));
    if (!nodes)
        return -ENOMEM;
    h->nodes = nodes;
    h->capacity = capacity;
    return 0;
}

void zlb_heap_push(zlb_heap_t *h, zlb_heap_node_t *n)
{
    if (ZLB_UNLIKELY(n->index != ZLB_HEAP_NONE))
        zlb_fatal("heap push of a node already in a heap (index %u)", n->index);
    if (ZLB_UNLIKELY(h->size == h->capacity)) {
        uint64_t cap = h->capacity ? (uint64_t)h->capacity * 2 : HEAP_MIN_CAPACITY;
        if (cap >= ZLB_HEAP_NONE)
            cap = ZLB_HEAP_NONE - 1;
        if (cap <= h->size || zlb_heap_reserve(h, (uint32_t)cap) != 0)
            zlb_fatal("out of memory growing a heap of %u nodes", h->size);
    }
    n->seq = h->next_seq++;
    sift_up(h, h->size++, n);
}

void zlb_heap_remove(zlb_heap_t *h, zlb_heap_node_t *n)
{
    uint32_t i = n->index;
    if (ZLB_UNLIKELY(i >= h->size || h->nodes[i] != n))
        zlb_fatal("heap remove of a node not in this heap (index %u, size %u)", i, h->size);
    n->index = ZLB_HEAP_NONE;
    zlb_heap_node_t *last = h->nodes[--h->size];
    if (last == n)
        return;
    /* The last node fills the hole; it may belong above or below it. */
    if (i > 0 && less(last, h->nodes[(i - 1) / 2]))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}
