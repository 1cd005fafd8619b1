/* stats_internal.h -- histogram layout and helpers shared by the stats sources and their tests. */
#ifndef ZLB_STATS_INTERNAL_H
#define ZLB_STATS_INTERNAL_H

#include "core/core.h"
#include "stats/stats.h"

typedef unsigned __int128 zlb_u128;

/* Slots are numbered so that slot order is value order:
 *   bucket 0 holds 0 .. 2^sub_bits - 1 at unit width (slot = value);
 *   bucket b >= 1 holds 2^(sub_bits-1+b) .. 2^(sub_bits+b) - 1 in 2^(sub_bits-1) slots of
 *   width 2^b, at slot b * 2^(sub_bits-1) + (value >> b).
 * A slot's width is at most 1/2^(sub_bits-1) of its lowest value, and 2^(sub_bits-1) >= 10^sigfigs,
 * which is the significant-digits guarantee. Every non-zero slot lies between slot_of(min) and
 * slot_of(max), so reset/add/walks touch only that range (and untouched pages stay unfaulted). */
struct zlb_hist {
    uint64_t highest;
    int sigfigs;
    unsigned sub_bits; /* log2 of the sub-buckets in bucket 0 */
    uint64_t sub_mask; /* 2^sub_bits - 1 */
    size_t len;        /* slots: slot_of(highest) + 1 */
    uint64_t total;
    uint64_t clamped;
    uint64_t min; /* UINT64_MAX when empty */
    uint64_t max;
    zlb_u128 sum;   /* of recorded values after clamping; exact (mod 2^128) */
    zlb_u128 sumsq; /* of their squares; exact (mod 2^128) */
    uint64_t counts[];
};

/* Sets o[key] = v (stealing v); a NULL from a jansson constructor means it ran out of memory. */
static inline void zlb_stats_put(json_t *o, const char *key, json_t *v)
{
    if (!o || json_object_set_new(o, key, v) != 0)
        zlb_fatal("out of memory building JSON");
}

#endif
