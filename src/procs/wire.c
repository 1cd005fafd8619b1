/* wire.c -- a shard process's snapshot as bytes for its parent, and back; the parent's commands
 * (live values included) as bytes for its children, and back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "procs/procs.h"
#include "procs/procs_internal.h"

#define WIRE_MAGIC 0x7a6c6270u /* "zlbp" */

void zlb_procs_bytes_dispose(zlb_procs_bytes_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static void reserve(zlb_procs_bytes_t *b, size_t need)
{
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data)
        zlb_fatal("out of memory for a snapshot image of %zu bytes", cap);
    b->cap = cap;
}

static void put(zlb_procs_bytes_t *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u64(zlb_procs_bytes_t *b, uint64_t v)
{
    put(b, &v, sizeof(v));
}

void zlb_procs_snapshot_alloc(zlb_work_snapshot_t *s, size_t npollers, size_t ntargets)
{
    memset(s, 0, sizeof(*s));
    s->npollers = npollers;
    s->ntargets = ntargets;
    zlb_stats_init(&s->total);
    s->poller = zlb_xcalloc(npollers ? npollers : 1, sizeof(*s->poller));
    for (size_t i = 0; i < npollers; i++)
        zlb_stats_init(&s->poller[i]);
    s->info = zlb_xcalloc(npollers ? npollers : 1, sizeof(*s->info));
    s->target = zlb_xcalloc(ntargets ? ntargets : 1, sizeof(*s->target));
}

/* Layout: magic, taken, first attempt, target reached, backlog, idle, npollers, ntargets; per
 * poller its counters and facts as bytes, then each phase's histogram image (length first);
 * per target its counters. The histograms are the only variable part. */
void zlb_procs_encode(const zlb_work_snapshot_t *s, bool idle, zlb_procs_bytes_t *b)
{
    size_t need = 8 * 8 + s->ntargets * sizeof(zlb_counters_t);
    for (size_t i = 0; i < s->npollers; i++) {
        need += sizeof(zlb_counters_t) + sizeof(zlb_poller_info_t);
        for (int l = 0; l < ZLB_LAT__COUNT; l++)
            need += 8 + zlb_hist_image_max(s->poller[i].lat[l]);
    }
    reserve(b, need);
    b->len = 0;
    put_u64(b, WIRE_MAGIC);
    put_u64(b, s->taken_ns);
    put_u64(b, s->first_attempt_ns);
    put_u64(b, s->target_reached_ns);
    put_u64(b, s->scheduler_backlog);
    put_u64(b, idle);
    put_u64(b, s->npollers);
    put_u64(b, s->ntargets);
    for (size_t i = 0; i < s->npollers; i++) {
        put(b, &s->poller[i].c, sizeof(zlb_counters_t));
        put(b, &s->info[i], sizeof(zlb_poller_info_t));
        for (int l = 0; l < ZLB_LAT__COUNT; l++) {
            size_t at = b->len;
            b->len += 8;
            uint64_t n = zlb_hist_image(s->poller[i].lat[l], b->data + b->len);
            memcpy(b->data + at, &n, 8);
            b->len += n;
        }
    }
    for (size_t t = 0; t < s->ntargets; t++)
        put(b, &s->target[t], sizeof(zlb_counters_t));
}

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
} reader_t;

static bool get(reader_t *r, void *out, size_t n)
{
    if (r->len - r->pos < n)
        return false;
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return true;
}

int zlb_procs_decode(const uint8_t *p, size_t len, zlb_work_snapshot_t *s, bool *idle)
{
    reader_t r = {.p = p, .len = len};
    uint64_t magic, taken, first, reached, backlog, idl, np, nt;
    if (!get(&r, &magic, 8) || !get(&r, &taken, 8) || !get(&r, &first, 8) ||
        !get(&r, &reached, 8) || !get(&r, &backlog, 8) || !get(&r, &idl, 8) || !get(&r, &np, 8) ||
        !get(&r, &nt, 8))
        return -EINVAL;
    if (magic != WIRE_MAGIC || np != s->npollers || nt != s->ntargets || idl > 1)
        return -EINVAL;
    for (size_t i = 0; i < s->npollers; i++) {
        if (!get(&r, &s->poller[i].c, sizeof(zlb_counters_t)) ||
            !get(&r, &s->info[i], sizeof(zlb_poller_info_t)))
            return -EINVAL;
        for (int l = 0; l < ZLB_LAT__COUNT; l++) {
            uint64_t n;
            size_t used;
            if (!get(&r, &n, 8) || n > r.len - r.pos ||
                zlb_hist_from_image(s->poller[i].lat[l], r.p + r.pos, (size_t)n, &used) != 0 ||
                used != n)
                return -EINVAL;
            r.pos += (size_t)n;
        }
    }
    for (size_t t = 0; t < s->ntargets; t++)
        if (!get(&r, &s->target[t], sizeof(zlb_counters_t)))
            return -EINVAL;
    if (r.pos != r.len)
        return -EINVAL;
    s->taken_ns = taken;
    s->first_attempt_ns = first;
    s->target_reached_ns = reached;
    s->scheduler_backlog = backlog;
    *idle = idl != 0;
    if (s->npollers) {
        zlb_stats_copy(&s->total, &s->poller[0]);
        for (size_t i = 1; i < s->npollers; i++)
            zlb_stats_add(&s->total, &s->poller[i]);
    }
    return 0;
}

/* ---- parent -> child commands ------------------------------------------------------------- */

void zlb_procs_live_share(zlb_work_type_t type, const zlb_work_live_t *whole, uint32_t index,
                          uint32_t count, zlb_work_live_t *out)
{
    *out = *whole;
    zlb_stage_values_t v = {.connections = whole->connections,
                            .connect_rate = whole->connect_rate,
                            .rate = whole->rate,
                            .close_rate = whole->close_rate};
    zlb_config_shard_values(type, &v, index, count);
    out->connections = v.connections;
    out->connect_rate = v.connect_rate;
    out->rate = v.rate;
    out->close_rate = v.close_rate;
}

_Static_assert(sizeof(zlb_work_live_t) <= ZLB_PROCS_CMD_PAYLOAD_MAX,
               "the live values outgrew a command frame");

size_t zlb_procs_live_encode(const zlb_work_live_t *v, uint8_t *out)
{
    uint16_t len = (uint16_t)sizeof(*v);
    out[0] = ZLB_PROCS_CMD_LIVE;
    out[1] = ZLB_PROCS_LIVE_VERSION;
    memcpy(out + 2, &len, sizeof(len));
    memcpy(out + 4, v, sizeof(*v));
    return 4 + sizeof(*v);
}

int zlb_procs_cmd_next(zlb_procs_cmdbuf_t *b, uint8_t *cmd, zlb_work_live_t *live)
{
    if (b->len == 0)
        return 0;
    size_t used = 1;
    switch (b->buf[0]) {
    case ZLB_PROCS_CMD_START:
    case ZLB_PROCS_CMD_STOP_OPENING:
    case ZLB_PROCS_CMD_CLOSE_ALL:
    case ZLB_PROCS_CMD_RESET_LAG:
    case ZLB_PROCS_CMD_FINISH:
    case ZLB_PROCS_CMD_SNAP_NOW:
        break;
    case ZLB_PROCS_CMD_LIVE: {
        if (b->len < 4)
            return 0;
        uint16_t len;
        memcpy(&len, b->buf + 2, sizeof(len));
        /* One build on both sides: any other shape is a broken stream, not a version skew to
         * live with. */
        if (b->buf[1] != ZLB_PROCS_LIVE_VERSION || len != sizeof(*live) ||
            len > ZLB_PROCS_CMD_PAYLOAD_MAX)
            return -EPROTO;
        if (b->len < 4u + len)
            return 0;
        memcpy(live, b->buf + 4, len);
        used = 4u + len;
        break;
    }
    default:
        return -EPROTO;
    }
    *cmd = b->buf[0];
    memmove(b->buf, b->buf + used, b->len - used);
    b->len -= used;
    return 1;
}
