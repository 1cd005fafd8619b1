/* events.c -- what changed a run and when (stages, PATCH /run, pause, signals, stops): kept in
 * order for the report, the newest shown in /stats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "run/run_internal.h"

void zlb_events_init(zlb_events_t *ev, size_t cap)
{
    memset(ev, 0, sizeof(*ev));
    ev->cap = cap ? cap : 1;
}

static void event_clear(zlb_event_t *e)
{
    json_decref(e->from);
    json_decref(e->to);
    memset(e, 0, sizeof(*e));
}

void zlb_events_dispose(zlb_events_t *ev)
{
    for (size_t i = 0; i < ev->n; i++)
        event_clear(&ev->v[i]);
    free(ev->v);
    memset(ev, 0, sizeof(*ev));
}

/* i-th event in order (0 the oldest kept). Once full the array is a ring starting at head. */
static const zlb_event_t *event_at(const zlb_events_t *ev, size_t i)
{
    return &ev->v[(ev->head + i) % (ev->n ? ev->n : 1)];
}

void zlb_events_add(zlb_events_t *ev, double t_s, const char *what, json_t *from, json_t *to,
                    const char *client)
{
    zlb_event_t *e;

    if (ev->n < ev->cap) {
        if (ev->n == ev->alloc) {
            ev->alloc = ev->alloc ? ZLB_MIN(ev->alloc * 2, ev->cap) : ZLB_MIN(64, ev->cap);
            ev->v = zlb_xrealloc(ev->v, ev->alloc * sizeof(*ev->v));
        }
        e = &ev->v[ev->n++];
    } else {
        /* Full: the oldest goes, so /stats keeps showing what just happened; the report says
         * how many went (events_dropped). */
        e = &ev->v[ev->head];
        event_clear(e);
        ev->head = (ev->head + 1) % ev->n;
        ev->dropped++;
    }
    e->t_s = t_s;
    snprintf(e->what, sizeof(e->what), "%s", what ? what : "");
    e->from = from;
    e->to = to;
    snprintf(e->client, sizeof(e->client), "%s", client ? client : "");
    ev->total++;
}

json_t *zlb_events_json(const zlb_events_t *ev, size_t last)
{
    json_t *a = json_array();
    size_t first = last && ev->n > last ? ev->n - last : 0;

    for (size_t i = first; i < ev->n; i++) {
        const zlb_event_t *e = event_at(ev, i);
        json_array_append_new(a, json_pack("{s:o, s:s, s:O?, s:O?, s:s?}", "t_s",
                                           zlb_json_real(e->t_s), "what", e->what, "from", e->from,
                                           "to", e->to, "client", e->client[0] ? e->client : NULL));
    }
    return a;
}

void zlb_runner_event(zlb_runner_t *r, const char *what, json_t *from, json_t *to,
                      const char *client)
{
    uint64_t now = zlb_now_ns();
    double t_s = r->t_start && now > r->t_start ? (double)(now - r->t_start) / 1e9 : 0.0;

    zlb_events_add(&r->events, t_s, what, from, to, client);
}
