/* series.c -- the run's timeline: interval rows from consecutive snapshots, bounded by merging. */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "report/report.h"
#include "run/series.h"

void zlb_series_init(zlb_series_t *s, size_t npollers, uint64_t interval_ns, size_t max_rows)
{
    memset(s, 0, sizeof(*s));
    s->interval_ns = interval_ns ? interval_ns : ZLB_NS_PER_SEC;
    s->npollers = npollers;
    s->max_rows = max_rows < 4 ? 4 : max_rows & ~(size_t)1; /* halves must be even */
    s->stage = ZLB_SERIES_NO_STAGE;
    s->next_row_ns = s->interval_ns;
    zlb_stats_init(&s->prev);
    zlb_stats_init(&s->scratch);
    s->lag_max_ns = zlb_xcalloc(npollers ? npollers : 1, sizeof(*s->lag_max_ns));
    s->fresh_pollers = zlb_xcalloc(npollers ? npollers : 1, sizeof(*s->fresh_pollers));
}

void zlb_series_dispose(zlb_series_t *s)
{
    free(s->rows);
    free(s->pollers);
    free(s->lag_max_ns);
    free(s->fresh_pollers);
    zlb_stats_dispose(&s->prev);
    zlb_stats_dispose(&s->scratch);
    memset(s, 0, sizeof(*s));
}

void zlb_series_set_stage(zlb_series_t *s, int32_t stage)
{
    s->stage = stage;
}

void zlb_series_observe(zlb_series_t *s, const zlb_series_poller_in_t *p)
{
    for (size_t i = 0; i < s->npollers; i++)
        s->lag_max_ns[i] = ZLB_MAX(s->lag_max_ns[i], p[i].lag_ns);
}

const zlb_series_poller_t *zlb_series_row_pollers(const zlb_series_t *s, size_t i)
{
    return &s->pollers[i * s->npollers];
}

size_t zlb_series_bytes_per_row(const zlb_series_t *s)
{
    return sizeof(zlb_series_row_t) + s->npollers * sizeof(zlb_series_poller_t);
}

static uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void zlb_series_merge_rows(zlb_series_row_t *a, zlb_series_poller_t *ap, const zlb_series_row_t *b,
                           const zlb_series_poller_t *bp, size_t npollers)
{
    a->t_s = b->t_s;
    a->dt_s += b->dt_s;
    a->intervals += b->intervals;
    /* Levels are the interval's end: the later row's. */
    a->state = b->state;
    a->open = b->open;
    a->target = b->target;
    if (a->stage != b->stage)
        a->stage = b->stage;
    a->attempts += b->attempts;
    a->connects += b->connects;
    a->failures += b->failures;
    a->closes += b->closes;
    a->messages += b->messages;
    a->bytes_in += b->bytes_in;
    a->bytes_out += b->bytes_out;
    for (int k = 0; k < ZLB_FAIL__COUNT; k++)
        a->failed[k] = sat32((uint64_t)a->failed[k] + b->failed[k]);
    a->phases |= b->phases;
    for (int k = 0; k < ZLB_LAT__COUNT; k++) {
        zlb_series_phase_t *x = &a->lat[k];
        const zlb_series_phase_t *y = &b->lat[k];
        /* The merged percentile lies between the two; the larger never hides a bad interval. */
        x->count = sat32((uint64_t)x->count + y->count);
        x->p50_us = fmaxf(x->p50_us, y->p50_us);
        x->p90_us = fmaxf(x->p90_us, y->p90_us);
        x->p99_us = fmaxf(x->p99_us, y->p99_us);
        x->max_us = fmaxf(x->max_us, y->max_us);
    }
    /* Load averaged over time; lag the worst of the two. */
    double wa = a->dt_s > b->dt_s ? (a->dt_s - b->dt_s) / a->dt_s : 0.5;
    for (size_t i = 0; i < npollers; i++) {
        ap[i].load = (float)(wa * ap[i].load + (1 - wa) * bp[i].load);
        ap[i].lag_us = fmaxf(ap[i].lag_us, bp[i].lag_us);
    }
}

/* Neighbours merged in pairs (an odd last row stays as it is); rows span twice as long. */
static void coarsen(zlb_series_t *s)
{
    size_t np = s->npollers, out = 0;
    for (size_t i = 0; i < s->n; i += 2, out++) {
        zlb_series_row_t merged = s->rows[i];
        if (np)
            memmove(&s->pollers[out * np], &s->pollers[i * np], np * sizeof(*s->pollers));
        if (i + 1 < s->n)
            zlb_series_merge_rows(&merged, &s->pollers[out * np], &s->rows[i + 1],
                                  &s->pollers[(i + 1) * np], np);
        s->rows[out] = merged;
    }
    s->n = out;
    s->level++;
}

static void grow(zlb_series_t *s)
{
    size_t cap = s->cap ? ZLB_MIN(s->cap * 2, s->max_rows) : ZLB_MIN((size_t)64, s->max_rows);
    s->rows = zlb_xrealloc(s->rows, cap * sizeof(*s->rows));
    if (s->npollers)
        s->pollers = zlb_xrealloc(s->pollers, cap * s->npollers * sizeof(*s->pollers));
    s->cap = cap;
}

static float us(uint64_t ns)
{
    return (float)((double)ns / 1e3);
}

const zlb_series_row_t *zlb_series_append(zlb_series_t *s, uint64_t t_ns, const zlb_stats_t *cum,
                                          const char *state, uint64_t target,
                                          const zlb_series_poller_in_t *p)
{
    zlb_stats_t *d = &s->scratch;
    zlb_stats_copy(d, cum);
    zlb_stats_sub(d, &s->prev);
    const zlb_counters_t *c = &d->c;

    zlb_series_row_t *r = &s->fresh;
    memset(r, 0, sizeof(*r));
    r->intervals = 1;
    r->t_s = (double)t_ns / 1e9;
    r->dt_s = t_ns > s->last_t_ns ? (double)(t_ns - s->last_t_ns) / 1e9 : 0.0;
    r->state = state;
    r->stage = s->stage;
    r->open = cum->c.open;
    r->target = target;
    r->attempts = c->attempted;
    r->connects = c->established;
    r->failures = zlb_counters_failed_total(c);
    r->closes = c->closed_by_us + c->closed_by_peer;
    r->messages = c->messages;
    r->bytes_in = c->bytes_in;
    r->bytes_out = c->bytes_out;
    for (int k = 0; k < ZLB_FAIL__COUNT; k++)
        r->failed[k] = sat32(c->failed_before[k] + c->failed_after[k]);
    for (int k = 0; k < ZLB_LAT__COUNT; k++) {
        const zlb_hist_t *h = d->lat[k];
        uint64_t count = zlb_hist_count(h);
        if (!count)
            continue;
        r->phases |= 1u << k;
        r->lat[k] = (zlb_series_phase_t){
            .count = sat32(count),
            .p50_us = us(zlb_hist_percentile(h, 50)),
            .p90_us = us(zlb_hist_percentile(h, 90)),
            .p99_us = us(zlb_hist_percentile(h, 99)),
            .max_us = us(zlb_hist_max(h)),
        };
    }
    zlb_series_poller_t *rp = s->fresh_pollers;
    for (size_t i = 0; i < s->npollers; i++) {
        uint64_t lag = ZLB_MAX(s->lag_max_ns[i], p[i].lag_ns);
        double load = p[i].load_pct / 100.0;
        rp[i] = (zlb_series_poller_t){.load = (float)(load < 0   ? 0
                                                      : load > 1 ? 1
                                                                 : load),
                                      .lag_us = us(lag)};
        s->lag_max_ns[i] = 0;
    }
    zlb_stats_copy(&s->prev, cum);
    s->last_t_ns = t_ns;
    s->recorded++;

    /* Stored: into the last row while it spans fewer than 2^level intervals, else a new row. */
    size_t np = s->npollers;
    if (s->n && s->rows[s->n - 1].intervals < (1u << s->level)) {
        zlb_series_merge_rows(&s->rows[s->n - 1], &s->pollers[(s->n - 1) * np], r, rp, np);
        return r;
    }
    if (s->n == s->max_rows)
        coarsen(s);
    if (s->n == s->cap)
        grow(s);
    s->rows[s->n] = *r;
    if (np)
        memcpy(&s->pollers[s->n * np], rp, np * sizeof(*rp));
    s->n++;
    return r;
}

const zlb_series_row_t *zlb_series_tick(zlb_series_t *s, uint64_t t_ns, const zlb_stats_t *cum,
                                        const char *state, uint64_t target,
                                        const zlb_series_poller_in_t *p, bool final)
{
    zlb_series_observe(s, p);
    if (t_ns <= s->last_t_ns || (t_ns < s->next_row_ns && !final))
        return NULL;
    const zlb_series_row_t *r = zlb_series_append(s, t_ns, cum, state, target, p);
    /* A stalled controller makes one longer row, not a burst of empty ones. */
    while (s->next_row_ns <= t_ns)
        s->next_row_ns += s->interval_ns;
    return r;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

/* Rounded to what the figures mean (µs to 0.1, rates to 0.001/s): shorter rows, no float noise
 * from the float storage. */
static json_t *num(double x, double step)
{
    /* Divided by the exact integer 1/step: the nearest double to the decimal, so a reader's
     * parse of the text gives back this very value (since=<t_s> compares equal). */
    double inv = round(1.0 / step);
    return zlb_json_real(round(x * inv) / inv);
}

static json_t *rate(uint64_t count, double dt)
{
    return num(dt > 0 ? (double)count / dt : 0.0, 1e-3);
}

json_t *zlb_series_row_json(const zlb_series_row_t *r, const zlb_series_poller_t *rp,
                            size_t npollers)
{
    json_t *j = json_object();
    json_object_set_new(j, "t_s", num(r->t_s, 1e-3));
    json_object_set_new(j, "dt_s", num(r->dt_s, 1e-3));
    if (r->intervals > 1)
        json_object_set_new(j, "intervals", json_integer(r->intervals));
    json_object_set_new(j, "state", json_string(r->state ? r->state : "unknown"));
    json_object_set_new(j, "stage",
                        r->stage == ZLB_SERIES_NO_STAGE ? json_null() : json_integer(r->stage));
    json_object_set_new(j, "open", json_integer((json_int_t)r->open));
    json_object_set_new(j, "target_connections", json_integer((json_int_t)r->target));
    json_object_set_new(j, "attempts", json_integer((json_int_t)r->attempts));
    json_object_set_new(j, "connects", json_integer((json_int_t)r->connects));
    json_object_set_new(j, "attempts_per_s", rate(r->attempts, r->dt_s));
    json_object_set_new(j, "connects_per_s", rate(r->connects, r->dt_s));
    json_object_set_new(j, "failures_per_s", rate(r->failures, r->dt_s));
    json_object_set_new(j, "closes_per_s", rate(r->closes, r->dt_s));
    json_object_set_new(j, "messages_per_s", rate(r->messages, r->dt_s));
    json_object_set_new(j, "bytes_in_per_s", rate(r->bytes_in, r->dt_s));
    json_object_set_new(j, "bytes_out_per_s", rate(r->bytes_out, r->dt_s));
    json_t *f = json_object();
    for (int k = 0; k < ZLB_FAIL__COUNT; k++)
        if (r->failed[k])
            json_object_set_new(f, zlb_fail_name((zlb_fail_t)k), json_integer(r->failed[k]));
    json_object_set_new(j, "failures", f);
    json_t *lat = json_object();
    for (int k = 0; k < ZLB_LAT__COUNT; k++) {
        if (!(r->phases & (1u << k)))
            continue;
        const zlb_series_phase_t *ph = &r->lat[k];
        json_object_set_new(lat, zlb_lat_name((zlb_lat_t)k),
                            json_pack("{s:I, s:o, s:o, s:o, s:o}", "count", (json_int_t)ph->count,
                                      "p50", num(ph->p50_us, 0.1), "p90", num(ph->p90_us, 0.1),
                                      "p99", num(ph->p99_us, 0.1), "max", num(ph->max_us, 0.1)));
    }
    json_object_set_new(j, "latency_us", lat);
    json_t *pa = json_array();
    for (size_t k = 0; k < npollers; k++)
        json_array_append_new(pa, json_pack("{s:o, s:o}", "load", num(rp[k].load, 1e-3),
                                            "loop_lag_us", num(rp[k].lag_us, 0.1)));
    json_object_set_new(j, "pollers", pa);
    if (!j || !f || !lat || !pa)
        zlb_fatal("out of memory building a timeline row");
    return j;
}

json_t *zlb_series_json(const zlb_series_t *s)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(
            rows, zlb_series_row_json(
                      &s->rows[i], s->npollers ? zlb_series_row_pollers(s, i) : NULL, s->npollers));
    json_t *j = json_pack("{s:o, s:I, s:I, s:I, s:o}", "interval_s",
                          zlb_json_real((double)s->interval_ns / 1e9), "intervals_per_row",
                          (json_int_t)1 << s->level, "coarsened", (json_int_t)(s->recorded - s->n),
                          "bytes_per_row", (json_int_t)zlb_series_bytes_per_row(s), "rows", rows);
    if (!j)
        zlb_fatal("out of memory building the timeline");
    return j;
}
