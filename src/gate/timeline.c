/* timeline.c -- what the gate reads from a report's timeline: the first interval in which a
 * metric crossed a limit, and the timelines of side-by-side runs added up for `merge`. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gate/gate_internal.h"
#include "report/report.h"

/* ---- first crossing ------------------------------------------------------------------------ */

/* The whole-run rates a row has per interval under the same name (requests are the http
 * workload's messages). */
static const char *row_rate(const char *rate)
{
    static const char *const same[] = {"connects_per_s", "closes_per_s",   "failures_per_s",
                                       "messages_per_s", "bytes_in_per_s", "bytes_out_per_s",
                                       "attempts_per_s"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(same); i++)
        if (strcmp(rate, same[i]) == 0)
            return same[i];
    return strcmp(rate, "requests_per_s") == 0 ? "messages_per_s" : NULL;
}

/* The row's figure for a metric path, or NULL when the row has none (a phase without samples in
 * that interval). `phase`/`stat` or `rate` come from parse_path. */
static const json_t *row_value(const json_t *row, const char *phase, const char *stat,
                               const char *rate)
{
    if (rate)
        return json_object_get(row, rate);
    return json_object_get(json_object_get(json_object_get(row, "latency_us"), phase), stat);
}

int zlb_gate_first_crossing(const json_t *report, const char *path, bool higher_is_better,
                            double limit, bool steady_only, zlb_gate_crossing_t *out)
{
    const json_t *rows = json_object_get(json_object_get(report, "timeline"), "rows");
    if (!json_is_array(rows))
        return -ENOENT;
    long stage = -1;
    if (strncmp(path, "stages.", 7) == 0) {
        char *end;
        stage = strtol(path + 7, &end, 10);
        if (end == path + 7 || *end != '.' || stage < 0)
            return -ENOENT;
        path = end + 1;
    }
    char phase[64] = "", stat[16] = "";
    const char *rate = NULL;
    if (strncmp(path, "latency_us.", 11) == 0) {
        const char *p = path + 11, *dot = strchr(p, '.');
        if (!dot || (size_t)(dot - p) >= sizeof(phase) || strlen(dot + 1) >= sizeof(stat))
            return -ENOENT;
        snprintf(phase, sizeof(phase), "%.*s", (int)(dot - p), p);
        snprintf(stat, sizeof(stat), "%s", dot + 1);
        /* A row has the interval's p50/p90/p99/max only. */
        if (strcmp(stat, "p50") && strcmp(stat, "p90") && strcmp(stat, "p99") &&
            strcmp(stat, "max"))
            return -ENOENT;
    } else if (strncmp(path, "rates.", 6) == 0) {
        rate = row_rate(path + 6);
        if (!rate)
            return -ENOENT;
    } else {
        return -ENOENT;
    }
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        if (stage >= 0 && json_integer_value(json_object_get(row, "stage")) != stage)
            continue;
        if (stage >= 0 && !json_is_integer(json_object_get(row, "stage")))
            continue;
        const char *state = json_string_value(json_object_get(row, "state"));
        if (steady_only && (!state || strcmp(state, "steady") != 0))
            continue;
        const json_t *v = row_value(row, phase, stat, rate);
        if (!json_is_number(v))
            continue;
        double x = json_number_value(v);
        if (higher_is_better ? x < limit : x > limit) {
            *out = (zlb_gate_crossing_t){
                .t_s = json_number_value(json_object_get(row, "t_s")),
                .dt_s = json_number_value(json_object_get(row, "dt_s")),
                .value = x,
                .row = i,
            };
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- merge ---------------------------------------------------------------------------------- */

static void add_number(json_t *dst, const char *key, const json_t *v, bool take_max)
{
    if (!json_is_number(v))
        return;
    json_t *have = json_object_get(dst, key);
    double x = json_number_value(v);
    if (json_is_number(have))
        x = take_max ? fmax(x, json_number_value(have)) : x + json_number_value(have);
    json_object_set_new(dst, key,
                        json_is_integer(v) && (!have || json_is_integer(have))
                            ? json_integer((json_int_t)x)
                            : zlb_json_real(x));
}

/* src's row added into dst's: the runs went side by side, so their counts, levels and rates add;
 * the interval's percentiles are the larger of the two (the merged one lies between); pollers
 * are listed one after the other. */
static void add_row(json_t *dst, const json_t *src)
{
    static const char *const sum[] = {"open",           "target_connections", "attempts",
                                      "connects",       "attempts_per_s",     "connects_per_s",
                                      "failures_per_s", "closes_per_s",       "messages_per_s",
                                      "bytes_in_per_s", "bytes_out_per_s"};
    add_number(dst, "t_s", json_object_get(src, "t_s"), true);
    add_number(dst, "dt_s", json_object_get(src, "dt_s"), true);
    for (size_t k = 0; k < ZLB_ARRAY_LEN(sum); k++)
        add_number(dst, sum[k], json_object_get(src, sum[k]), false);
    const char *key;
    json_t *v;
    json_t *f = json_object_get(dst, "failures");
    json_object_foreach(json_object_get(src, "failures"), key, v) add_number(f, key, v, false);
    json_t *lat = json_object_get(dst, "latency_us");
    json_object_foreach(json_object_get(src, "latency_us"), key, v)
    {
        json_t *ph = json_object_get(lat, key);
        if (!ph) {
            json_object_set_new(lat, key, json_deep_copy(v));
            continue;
        }
        add_number(ph, "count", json_object_get(v, "count"), false);
        static const char *const worst[] = {"p50", "p90", "p99", "max"};
        for (size_t k = 0; k < ZLB_ARRAY_LEN(worst); k++)
            add_number(ph, worst[k], json_object_get(v, worst[k]), true);
    }
    json_array_extend(json_object_get(dst, "pollers"), json_object_get(src, "pollers"));
}

json_t *zlb_gate_merge_timelines(json_t **in, size_t n, const char **why)
{
    *why = NULL;
    const json_t *tl0 = json_object_get(in[0], "timeline");
    double iv = json_number_value(json_object_get(tl0, "interval_s"));
    json_int_t per = json_integer_value(json_object_get(tl0, "intervals_per_row"));
    for (size_t i = 0; i < n; i++) {
        const json_t *tl = json_object_get(in[i], "timeline");
        if (!tl) {
            *why = "a report has no timeline";
            return NULL;
        }
        if (json_number_value(json_object_get(tl, "interval_s")) != iv ||
            json_integer_value(json_object_get(tl, "intervals_per_row")) != per) {
            *why = "the reports' timelines have different intervals";
            return NULL;
        }
    }
    double span = iv * (double)(per > 0 ? per : 1);
    /* Rows meet by the grid cell they start in (their end is a tick after the cell's end, the
     * last partial row's start is the row before's end): within one report each row has its
     * own cell, and rows of side-by-side runs that cover the same cell are added. */
    json_t *byk = json_object();
    json_int_t kmax = -1;
    for (size_t i = 0; i < n; i++) {
        size_t r;
        json_t *row;
        json_array_foreach(json_object_get(json_object_get(in[i], "timeline"), "rows"), r, row)
        {
            double t = json_number_value(json_object_get(row, "t_s"));
            double dt = json_number_value(json_object_get(row, "dt_s"));
            json_int_t k = (json_int_t)floor((t - dt) / span + 1e-6);
            char key[32];
            snprintf(key, sizeof(key), "%lld", (long long)(k < 0 ? 0 : k));
            json_t *have = json_object_get(byk, key);
            if (have)
                add_row(have, row);
            else
                json_object_set_new(byk, key, json_deep_copy(row));
            kmax = ZLB_MAX(kmax, k);
        }
    }
    json_t *rows = json_array();
    double last_t = -1;
    for (json_int_t k = 0; k <= kmax; k++) {
        char key[32];
        snprintf(key, sizeof(key), "%lld", (long long)k);
        json_t *row = json_object_get(byk, key);
        /* Rows keep the report's order rule: strictly increasing t_s. */
        if (row && json_number_value(json_object_get(row, "t_s")) > last_t) {
            last_t = json_number_value(json_object_get(row, "t_s"));
            json_array_append(rows, row);
        } else if (row && json_array_size(rows)) {
            add_row(json_array_get(rows, json_array_size(rows) - 1), row);
        }
    }
    json_decref(byk);
    json_int_t coarsened = 0;
    for (size_t i = 0; i < n; i++)
        coarsened = ZLB_MAX(coarsened, json_integer_value(json_object_get(
                                           json_object_get(in[i], "timeline"), "coarsened")));
    return json_pack("{s:O, s:I, s:I, s:O, s:b, s:o}", "interval_s",
                     json_object_get(tl0, "interval_s"), "intervals_per_row", per, "coarsened",
                     coarsened, "bytes_per_row", json_object_get(tl0, "bytes_per_row"), "merged", 1,
                     "rows", rows);
}
