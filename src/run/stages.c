/* stages.c -- the stage driver: a load profile's values on the run's clock, handed to the engine
 * (zlb_work_steer) at every tick, and each stage's own figures taken at its boundaries. Run
 * thread only; nothing here runs per connection or per event. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "run/run_internal.h"

static const zlb_stage_values_t *values_of(const zlb_work_live_t *v, zlb_stage_values_t *out)
{
    *out = (zlb_stage_values_t){.connections = v->connections,
                                .connect_rate = v->connect_rate,
                                .rate = v->rate,
                                .close_rate = v->close_rate};
    return out;
}

static json_t *values_json(const zlb_runner_t *r, const zlb_stage_values_t *v, unsigned set)
{
    const char *key = zlb_config_rate_key(r->cfg->workload.type);
    json_t *o = json_object();
    if (set & ZLB_STAGE_CONNECTIONS)
        json_object_set_new(o, "connections", json_integer((json_int_t)v->connections));
    if (set & ZLB_STAGE_CONNECT_RATE)
        json_object_set_new(o, "connect_rate", zlb_json_real(v->connect_rate));
    if ((set & ZLB_STAGE_RATE) && key)
        json_object_set_new(o, key, zlb_json_real(v->rate));
    if (set & ZLB_STAGE_CLOSE_RATE)
        json_object_set_new(o, "close_rate", zlb_json_real(v->close_rate));
    return o;
}

#define ALL_VALUES                                                                                 \
    (ZLB_STAGE_CONNECTIONS | ZLB_STAGE_CONNECT_RATE | ZLB_STAGE_RATE | ZLB_STAGE_CLOSE_RATE)

/* The stage clock: time since the run started, less the pauses (k6's pause stops the profile
 * too: a stage paused half-way resumes half-way, not at its end). */
static uint64_t stage_clock(const zlb_stager_t *s, uint64_t t_start, uint64_t now)
{
    uint64_t at = s->paused_at ? s->paused_at : now;
    uint64_t t = at > t_start ? at - t_start : 0;
    return t > s->paused_ns ? t - s->paused_ns : 0;
}

static bool holds_forever(const zlb_stager_t *s, size_t i)
{
    return i + 1 == s->n && s->st[i].duration_ns == 0;
}

/* Grows the per-stage arrays to n entries (run thread, at set-up and at a PATCH's append). */
static void reserve(zlb_stager_t *s, size_t n)
{
    if (n <= s->cap)
        return;
    size_t cap = ZLB_MAX(n, 2 * s->cap);
    s->st = zlb_xrealloc(s->st, cap * sizeof(*s->st));
    s->start_ns = zlb_xrealloc(s->start_ns, cap * sizeof(*s->start_ns));
    s->end_ns = zlb_xrealloc(s->end_ns, cap * sizeof(*s->end_ns));
    s->entry = zlb_xrealloc(s->entry, cap * sizeof(*s->entry));
    for (size_t i = s->cap; i < cap; i++) {
        s->start_ns[i] = s->end_ns[i] = 0;
        s->entry[i] = NULL;
    }
    s->cap = cap;
}

void zlb_stager_init(zlb_runner_t *r)
{
    zlb_stager_t *s = &r->stager;
    memset(s, 0, sizeof(*s));
    zlb_stats_init(&s->base);
    zlb_stats_init(&s->scratch);
    if (!r->cfg->nstages)
        return;
    reserve(s, r->cfg->nstages);
    memcpy(s->st, r->cfg->stages, r->cfg->nstages * sizeof(*s->st));
    s->n = r->cfg->nstages;
    s->on = true;
    s->ends_run = true;
    zlb_config_stage_start(r->cfg, &s->from);
    s->now = s->from;
}

void zlb_stager_dispose(zlb_stager_t *s)
{
    for (size_t i = 0; i < s->cap; i++)
        json_decref(s->entry[i]);
    free(s->st);
    free(s->start_ns);
    free(s->end_ns);
    free(s->entry);
    zlb_stats_dispose(&s->base);
    zlb_stats_dispose(&s->scratch);
    memset(s, 0, sizeof(*s));
}

/* The stage's report entry from the window between its start and `cum` (the cumulative stats
 * at its end). */
static json_t *entry_json(zlb_runner_t *r, size_t i, const zlb_stats_t *cum, bool completed)
{
    zlb_stager_t *s = &r->stager;
    const zlb_stage_t *st = &s->st[i];
    uint64_t start = s->start_ns[i], end = s->end_ns[i];
    double secs = end > start ? (double)(end - start) / 1e9 : 0.0;
    zlb_stats_copy(&s->scratch, cum);
    zlb_stats_sub(&s->scratch, &s->base);
    static const zlb_counters_t zero;
    zlb_rates_t avg = {0};
    zlb_rates_over(&avg, &zero, &s->scratch.c, secs);

    json_t *j = json_object();
    json_object_set_new(j, "index", json_integer((json_int_t)i));
    json_object_set_new(j, "start_s", zlb_json_real((double)(start - r->t_start) / 1e9));
    json_object_set_new(j, "end_s", zlb_json_real((double)(end - r->t_start) / 1e9));
    json_object_set_new(j, "duration_s", zlb_json_real((double)st->duration_ns / 1e9));
    json_object_set_new(j, "seconds", zlb_json_real(secs));
    json_object_set_new(j, "completed", json_boolean(completed));
    json_object_set_new(j, "targets", values_json(r, &st->to, st->set));
    zlb_report_level_t lv = {.stats = &s->scratch,
                             .target = (st->set & ZLB_STAGE_CONNECTIONS) ? st->to.connections
                                                                         : s->now.connections,
                             .rates = &avg,
                             .percentiles = r->cfg->report.percentiles,
                             .npercentiles = r->cfg->report.npercentiles};
    zlb_report_put_level(j, &lv);
    return j;
}

/* Stage i ends now (at the snapshot just taken): its figures, then the next one's window. */
static void end_stage(zlb_runner_t *r, size_t i, bool completed)
{
    zlb_stager_t *s = &r->stager;
    s->end_ns[i] = r->snap.taken_ns;
    json_decref(s->entry[i]);
    s->entry[i] = entry_json(r, i, &r->snap.total, completed);
    zlb_stats_copy(&s->base, &r->snap.total);
}

static void begin_stage(zlb_runner_t *r, size_t i, const char *client)
{
    zlb_stager_t *s = &r->stager;
    s->start_ns[i] = r->snap.taken_ns > r->t_start ? r->snap.taken_ns : r->t_start;
    zlb_series_set_stage(&r->series, (int32_t)i);
    json_t *to = values_json(r, &s->st[i].to, s->st[i].set);
    json_object_set_new(to, "index", json_integer((json_int_t)i));
    json_object_set_new(to, "duration_s", zlb_json_real((double)s->st[i].duration_ns / 1e9));
    json_t *from = i > 0 ? json_pack("{s:I}", "index", (json_int_t)(i - 1)) : NULL;
    if (from)
        json_object_set_new(from, "values", values_json(r, &s->from, ALL_VALUES));
    zlb_runner_event(r, "stage", from, to, client);
}

/* The values the profile asks for now, a PATCH's overrides applied. */
static void values_now(const zlb_stager_t *s, uint64_t clock, zlb_stage_values_t *out)
{
    if (s->index >= s->n) {
        *out = s->from;
    } else {
        zlb_config_stage_move(&s->st[s->index], &s->from, clock - s->began_ns, out);
    }
    if (s->overridden & ZLB_STAGE_CONNECTIONS)
        out->connections = s->over.connections;
    if (s->overridden & ZLB_STAGE_CONNECT_RATE)
        out->connect_rate = s->over.connect_rate;
    if (s->overridden & ZLB_STAGE_RATE)
        out->rate = s->over.rate;
    if (s->overridden & ZLB_STAGE_CLOSE_RATE)
        out->close_rate = s->over.close_rate;
}

static void steer(zlb_runner_t *r, const zlb_stage_values_t *v)
{
    zlb_stager_t *s = &r->stager;
    if (!memcmp(v, &s->now, sizeof(*v)) && s->steered)
        return;
    s->now = *v;
    s->steered = true;
    if (!zlb_runner_steerable(r))
        return;
    zlb_work_live_t live;
    zlb_runner_get_live(r, &live); /* keeps paused as the control port left it */
    live.connections = v->connections;
    live.connect_rate = v->connect_rate;
    live.rate = v->rate;
    live.close_rate = v->close_rate;
    zlb_runner_steer(r, &live);
}

void zlb_runner_stages_begin(zlb_runner_t *r)
{
    zlb_stager_t *s = &r->stager;
    if (!s->on)
        return;
    zlb_stats_copy(&s->base, &r->snap.total);
    s->index = 0;
    s->began_ns = 0;
    begin_stage(r, 0, NULL);
    zlb_runner_stages_tick(r, r->t_start);
}

bool zlb_runner_stages_tick(zlb_runner_t *r, uint64_t now)
{
    zlb_stager_t *s = &r->stager;
    if (!s->on || s->stopped)
        return false;
    bool paused = false;
    if (zlb_runner_steerable(r)) {
        zlb_work_live_t live;
        zlb_runner_get_live(r, &live);
        paused = live.paused;
    }
    if (paused && !s->paused_at)
        s->paused_at = now;
    else if (!paused && s->paused_at) {
        s->paused_ns += now - s->paused_at;
        s->paused_at = 0;
    }
    uint64_t clock = stage_clock(s, r->t_start, now);
    /* Every boundary passed since the last tick, zero-length stages included (each a jump, with
     * its event and its empty window). */
    while (s->index < s->n && !holds_forever(s, s->index) &&
           clock - s->began_ns >= s->st[s->index].duration_ns) {
        size_t i = s->index;
        /* A PATCH during the stage held its values to here; the next move starts from them. */
        zlb_config_stage_move(&s->st[i], &s->from, s->st[i].duration_ns, &s->from);
        if (s->overridden & ZLB_STAGE_CONNECTIONS)
            s->from.connections = s->over.connections;
        if (s->overridden & ZLB_STAGE_CONNECT_RATE)
            s->from.connect_rate = s->over.connect_rate;
        if (s->overridden & ZLB_STAGE_RATE)
            s->from.rate = s->over.rate;
        if (s->overridden & ZLB_STAGE_CLOSE_RATE)
            s->from.close_rate = s->over.close_rate;
        s->overridden = 0;
        end_stage(r, i, true);
        s->began_ns += s->st[i].duration_ns;
        s->index++;
        if (s->index < s->n)
            begin_stage(r, s->index, NULL);
    }
    zlb_stage_values_t v;
    values_now(s, clock, &v);
    steer(r, &v);
    return s->index >= s->n && s->ends_run;
}

uint64_t zlb_runner_stages_next_ns(const zlb_runner_t *r)
{
    const zlb_stager_t *s = &r->stager;
    if (!s->on || s->stopped || s->paused_at || s->index >= s->n || holds_forever(s, s->index))
        return UINT64_MAX;
    return r->t_start + s->paused_ns + s->began_ns + s->st[s->index].duration_ns;
}

void zlb_runner_stages_stop(zlb_runner_t *r)
{
    zlb_stager_t *s = &r->stager;
    if (!s->on || s->stopped)
        return;
    s->stopped = true;
    /* The stage in force ends with the measured window: what the drain closes is no stage's. */
    if (s->index < s->n)
        end_stage(r, s->index, false);
}

json_t *zlb_runner_stages_json(zlb_runner_t *r)
{
    zlb_stager_t *s = &r->stager;
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++) {
        if (s->entry[i]) {
            json_array_append(a, s->entry[i]);
            continue;
        }
        /* In force (its figures come at its end) or never reached (the run stopped first): its
         * plan, no figures, so that a threshold on it finds nothing rather than a zero. */
        json_t *j = json_object();
        json_object_set_new(j, "index", json_integer((json_int_t)i));
        json_object_set_new(j, "start_s",
                            s->start_ns[i]
                                ? zlb_json_real((double)(s->start_ns[i] - r->t_start) / 1e9)
                                : json_null());
        json_object_set_new(j, "end_s", json_null());
        json_object_set_new(j, "duration_s", zlb_json_real((double)s->st[i].duration_ns / 1e9));
        json_object_set_new(j, "completed", json_false());
        json_object_set_new(j, "targets", values_json(r, &s->st[i].to, s->st[i].set));
        json_array_append_new(a, j);
    }
    return a;
}

json_t *zlb_runner_stage_json(zlb_runner_t *r)
{
    zlb_stager_t *s = &r->stager;
    if (!s->on || s->index >= s->n)
        return json_null();
    uint64_t clock = stage_clock(s, r->t_start, zlb_now_ns());
    uint64_t into = clock > s->began_ns ? clock - s->began_ns : 0;
    return json_pack("{s:I, s:I, s:o, s:o, s:b}", "index", (json_int_t)s->index, "count",
                     (json_int_t)s->n, "elapsed_s", zlb_json_real((double)into / 1e9), "duration_s",
                     zlb_json_real((double)s->st[s->index].duration_ns / 1e9), "hold",
                     holds_forever(s, s->index));
}

uint64_t zlb_runner_stages_target(const zlb_runner_t *r)
{
    if (r->stager.on && r->stager.steered)
        return r->stager.now.connections;
    if (r->engine) {
        zlb_work_live_t live;
        zlb_work_get_live(r->engine, &live);
        return live.connections;
    }
    if (r->src) /* the whole run's, as last handed to the processes */
        return r->live.connections;
    return r->cfg->connections;
}

void zlb_runner_stages_override(zlb_runner_t *r, const zlb_work_live_t *now)
{
    zlb_stager_t *s = &r->stager;
    zlb_stage_values_t v;
    if (!s->on)
        return;
    values_of(now, &v);
    if (v.connections != s->now.connections)
        s->overridden |= ZLB_STAGE_CONNECTIONS;
    if (v.connect_rate != s->now.connect_rate)
        s->overridden |= ZLB_STAGE_CONNECT_RATE;
    if (v.rate != s->now.rate)
        s->overridden |= ZLB_STAGE_RATE;
    if (v.close_rate != s->now.close_rate)
        s->overridden |= ZLB_STAGE_CLOSE_RATE;
    s->over = v;
    s->now = v;
}

int zlb_runner_stages_append(zlb_runner_t *r, const zlb_stage_t *st, size_t n)
{
    return zlb_runner_stages_append_at(r, st, n, zlb_now_ns());
}

int zlb_runner_stages_append_at(zlb_runner_t *r, const zlb_stage_t *st, size_t n, uint64_t now)
{
    zlb_stager_t *s = &r->stager;
    if (n == 0)
        return -EINVAL;
    /* A profile from the config that has ended has ended the run. */
    if (s->stopped || r->state == ZLB_STATE_DRAINING || r->state == ZLB_STATE_DONE ||
        (s->on && s->ends_run && s->index >= s->n))
        return -ESRCH;
    if (s->n + n > ZLB_CONFIG_MAX_STAGES)
        return -E2BIG;
    /* No profile running (none yet, or one a PATCH appended that has ended): the new stages
     * start now, from the values in force, and the run keeps its own length. */
    bool fresh = !s->on || s->index >= s->n;
    reserve(s, s->n + n);
    /* A last stage that holds until stopped, in force, ends now: the new ones follow it (one
     * not reached yet becomes a jump). */
    if (!fresh && s->index == s->n - 1 && holds_forever(s, s->n - 1)) {
        uint64_t clock = stage_clock(s, r->t_start, now);
        s->st[s->n - 1].duration_ns = clock > s->began_ns ? clock - s->began_ns : 0;
    }
    memcpy(s->st + s->n, st, n * sizeof(*st));
    size_t first = s->n;
    s->n += n;
    if (!fresh)
        return 0;
    if (!s->on) {
        zlb_work_live_t live;
        if (zlb_runner_steerable(r)) {
            zlb_runner_get_live(r, &live);
            values_of(&live, &s->now);
        } else {
            zlb_config_stage_start(r->cfg, &s->now);
        }
        s->steered = true;
        s->on = true;
    }
    s->from = s->now; /* what was handed to the engine last, a PATCH's values included */
    s->overridden = 0;
    s->began_ns = stage_clock(s, r->t_start, now);
    s->index = first;
    zlb_stats_copy(&s->base, &r->snap.total);
    begin_stage(r, first, NULL);
    return 0;
}
