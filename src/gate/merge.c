/* merge.c -- `merge`: reports of runs made side by side (several generators against one target)
 * added up into one report, its verdict recomputed on the merged figures. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gate/gate_internal.h"
#include "report/report.h"

static void merge_usage(FILE *f)
{
    fprintf(f,
            "usage: zlbench merge REPORT.json [REPORT.json...] -o MERGED.json [--allow-mixed]\n"
            "                     [--allow-partial]\n"
            "Adds up the reports of runs made side by side (several generators against one\n"
            "target): counters and rates summed, histograms added, percentiles recomputed, the\n"
            "config's thresholds evaluated again on the merged figures. Every report is checked\n"
            "first (schema, accounting invariant, histograms).\n"
            "  -o, --output FILE   where the merged report goes (required)\n"
            "      --allow-mixed   merge reports of different scenarios (config hashes); the\n"
            "                      first report's config and thresholds are used\n"
            "      --allow-partial shard reports (--shard I/N) that are not the whole set: the\n"
            "                      merged report still lists shards.missing but is not marked\n"
            "                      invalid for them\n"
            "  -h, --help          this text\n"
            "Shard reports are checked as a set: one scenario (config hash), one count, each\n"
            "index once (a repeated index is refused), every index present.\n"
            "The merged report's exit_code is the verdict on the merged figures (0, 3 or 5);\n"
            "the command exits 0 when it wrote it, 5 when it wrote it without every shard (and\n"
            "no --allow-partial), 2 on bad usage, an unreadable or inconsistent report or a\n"
            "shard set that cannot be added up, 1 when the output could not be written.\n");
}

/* One level (the whole run, or "steady") of every input added up into dst. The inputs were
 * checked when they were loaded, so a read error here is a bug in that check. */
static int merge_level(json_t **in, char **files, size_t n, bool top, const double *pcts,
                       size_t npcts, json_t *dst)
{
    zlb_stats_t sum;
    zlb_rates_t rates = {0}, one = {0};
    uint64_t target = 0, t = 0;
    double seconds = 0;
    char err[512];
    int rc = 0;

    zlb_stats_init(&sum);
    for (size_t i = 0; i < n; i++) {
        json_t *src = top ? in[i] : json_object_get(in[i], "steady");
        if (zlb_report_read_level(src, top, &sum, &t, &one, err, sizeof(err)) != 0) {
            fprintf(stderr, "zlbench merge: %s: %s\n", files[i], err);
            rc = -EINVAL;
            break;
        }
        /* The runs went side by side: their rates add up, their windows overlap. */
        target += t;
        zlb_rates_add(&rates, &one);
        seconds = fmax(seconds, json_number_value(json_object_get(src, "seconds")));
    }
    if (rc == 0) {
        if (!top)
            json_object_set_new(dst, "seconds", zlb_json_real(seconds));
        zlb_report_level_t lv = {.stats = &sum,
                                 .target = target,
                                 .rates = &rates,
                                 .percentiles = pcts,
                                 .npercentiles = npcts,
                                 .totals = top,
                                 .histograms = true};
        zlb_report_put_level(dst, &lv);
    }
    zlb_stats_dispose(&sum);
    return rc;
}

/* Targets by name: the same target hit from several generators is one row, counters summed. */
static int merge_targets(json_t **in, char **files, size_t n, json_t **out)
{
    json_t *rows = json_array();
    char err[256];
    for (size_t i = 0; i < n; i++) {
        size_t k;
        json_t *row;
        json_array_foreach(json_object_get(in[i], "targets"), k, row)
        {
            const char *name = json_string_value(json_object_get(row, "name"));
            zlb_counters_t c, prev;
            uint64_t t = 0, pt = 0;
            if (!name || zlb_counters_from_json(row, &c, &t, err, sizeof(err)) != 0) {
                fprintf(stderr, "zlbench merge: %s: targets[%zu].%s\n", files[i], k,
                        name ? err : "name: missing");
                json_decref(rows);
                return -EINVAL;
            }
            size_t j;
            json_t *have = NULL, *r;
            json_array_foreach(rows, j, r)
            {
                if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0) {
                    have = r;
                    break;
                }
            }
            bool tls = json_is_true(json_object_get(row, "tls"));
            json_t *verify = json_object_get(row, "tls_verify");
            bool verify_on = !verify || json_is_true(verify);
            if (have) {
                zlb_counters_from_json(have, &prev, &pt, err, sizeof(err));
                zlb_counters_add(&c, &prev);
                t += pt;
                tls |= json_is_true(json_object_get(have, "tls"));
                /* Verification off in any run must show in the merged report. */
                verify_on &= !json_is_false(json_object_get(have, "tls_verify"));
            }
            json_t *merged = zlb_counters_to_json(&c, t);
            json_object_set_new(merged, "name", json_string(name));
            json_object_set_new(merged, "tls", json_boolean(tls));
            if (tls)
                json_object_set_new(merged, "tls_verify", json_boolean(verify_on));
            /* A built-in target's own side belongs to the one process that ran it (its name is
             * that process's own port): kept for a row of one source, dropped when rows of
             * several sources share a name, as no sum of them would be one server's. */
            json_t *server = json_object_get(row, "server");
            if (server && !have)
                json_object_set(merged, "server", server);
            if (have)
                json_array_set_new(rows, j, merged);
            else
                json_array_append_new(rows, merged);
        }
    }
    *out = rows;
    return 0;
}

/* Shard reports as a set: *out gets {"count", "merged", "missing", "config_hash"} (NULL when
 * no report is a shard), *nmissing the indices nobody ran. A repeated index would count its
 * connections twice, and shards of different splits do not tile one scenario: refused. */
static int check_shards(json_t **in, char **files, size_t n, bool allow_mixed, json_t **out,
                        size_t *nmissing)
{
    size_t k = 0, first = 0;
    *out = NULL;
    *nmissing = 0;
    for (size_t i = 0; i < n; i++)
        if (json_object_get(in[i], "shard") && k++ == 0)
            first = i;
    if (k == 0)
        return 0;
    json_t *sh0 = json_object_get(in[first], "shard");
    json_int_t count = json_integer_value(json_object_get(sh0, "count"));
    if (count < 2 || count > 65536) {
        fprintf(stderr, "zlbench merge: %s: shard.count: expected 2..65536\n", files[first]);
        return -EINVAL;
    }
    /* Which report ran each index, so that a repeat names both files. */
    size_t *who = zlb_xcalloc((size_t)count, sizeof(*who));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *sh = json_object_get(in[i], "shard");
        json_t *jidx = json_object_get(sh, "index");
        if (!sh) {
            /* A whole run beside parts of one: nothing says which part it stands for. */
            if (allow_mixed)
                continue;
            fprintf(stderr,
                    "zlbench merge: %s is shard %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
                    " of its scenario, %s is not a shard; --allow-mixed merges them anyway\n",
                    files[first], json_integer_value(json_object_get(sh0, "index")), count,
                    files[i]);
            rc = -EINVAL;
        } else if (json_integer_value(json_object_get(sh, "count")) != count) {
            fprintf(stderr,
                    "zlbench merge: %s is one of %" JSON_INTEGER_FORMAT
                    " shards, %s one of %" JSON_INTEGER_FORMAT
                    ": different splits do not add up to one scenario\n",
                    files[first], count, files[i],
                    json_integer_value(json_object_get(sh, "count")));
            rc = -EINVAL;
        } else if (!json_is_integer(jidx) || json_integer_value(jidx) < 0 ||
                   json_integer_value(jidx) >= count) {
            fprintf(stderr,
                    "zlbench merge: %s: shard.index: expected 0..%" JSON_INTEGER_FORMAT "\n",
                    files[i], count - 1);
            rc = -EINVAL;
        } else if (who[json_integer_value(jidx)]) {
            fprintf(stderr,
                    "zlbench merge: shard %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
                    " twice (%s and %s): its connections would count twice\n",
                    json_integer_value(jidx), count, files[who[json_integer_value(jidx)] - 1],
                    files[i]);
            rc = -EINVAL;
        } else {
            who[json_integer_value(jidx)] = i + 1;
        }
    }
    if (rc == 0) {
        json_t *merged = json_array(), *missing = json_array();
        for (json_int_t i = 0; i < count; i++)
            json_array_append_new(who[i] ? merged : missing, json_integer(i));
        *nmissing = json_array_size(missing);
        *out = json_pack("{s:I, s:o, s:o, s:O?}", "count", count, "merged", merged, "missing",
                         missing, "config_hash", json_object_get(sh0, "config_hash"));
    }
    free(who);
    return rc;
}

/* The first report's config, parsed again: its thresholds judge the merged figures. NULL (and
 * a warning) when the report carries none that parses. */
static zlb_config_t *first_config(json_t *report, const char *file)
{
    json_t *cj = json_object_get(report, "config");
    if (!json_is_object(cj))
        return NULL;
    char *text = json_dumps(cj, JSON_COMPACT);
    zlb_config_t *cfg = NULL;
    zlb_config_error_t err;
    if (zlb_config_parse(text, file, zlb_report_metric_valid, &cfg, &err) != 0) {
        fprintf(stderr, "zlbench merge: warning: thresholds not evaluated: %s\n", err.message);
        cfg = NULL;
    }
    free(text);
    return cfg;
}

/* One event of one source, for the merged order. */
typedef struct merged_event {
    double t;
    size_t src, at;
    json_t *e; /* borrowed */
} merged_event_t;

static int cmp_event(const void *a, const void *b)
{
    const merged_event_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Every source's events in one time order, each naming its source (an index into "sources").
 * t_s is each run's own clock: side-by-side runs start together, within their start-up spread.
 * Ties keep each source's own order. */
static void merge_events(json_t **in, size_t n, json_t *merged)
{
    size_t total = 0, k = 0, i, j;
    json_int_t dropped = 0;
    json_t *e;

    for (i = 0; i < n; i++) {
        total += json_array_size(json_object_get(in[i], "events"));
        dropped += json_integer_value(json_object_get(in[i], "events_dropped"));
    }
    merged_event_t *v = zlb_xcalloc(total ? total : 1, sizeof(*v));
    for (i = 0; i < n; i++) {
        json_array_foreach(json_object_get(in[i], "events"), j, e)
        {
            v[k] = (merged_event_t){json_number_value(json_object_get(e, "t_s")), i, j, e};
            k++;
        }
    }
    qsort(v, k, sizeof(*v), cmp_event);
    json_t *out = json_array();
    for (i = 0; i < k; i++) {
        json_t *c = json_deep_copy(v[i].e);
        json_object_set_new(c, "source", json_integer((json_int_t)v[i].src));
        json_array_append_new(out, c);
    }
    free(v);
    json_object_set_new(merged, "events", out);
    json_object_set_new(merged, "events_dropped", json_integer(dropped));
}

int zlb_gate_merge(int argc, char **argv)
{
    static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
                                             {"allow-mixed", no_argument, NULL, 'x'},
                                             {"allow-partial", no_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *out_path = NULL;
    bool allow_mixed = false, allow_partial = false;
    json_t **in = NULL;
    size_t n = 0;
    int code = ZLB_EXIT_USAGE, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (c == 'o') {
            out_path = optarg;
        } else if (c == 'x') {
            allow_mixed = true;
        } else if (c == 'p') {
            allow_partial = true;
        } else if (c == 'h') {
            merge_usage(stdout);
            return ZLB_EXIT_OK;
        } else {
            merge_usage(stderr);
            return ZLB_EXIT_USAGE;
        }
    }
    char **files = argv + optind;
    size_t nfiles = (size_t)(argc - optind);
    if (!out_path || nfiles < 1) {
        merge_usage(stderr);
        return ZLB_EXIT_USAGE;
    }
    in = zlb_xcalloc(nfiles, sizeof(*in));
    for (n = 0; n < nfiles; n++)
        if (!(in[n] = zlb_report_load(files[n], "merge")))
            goto out;

    const char *hash0 = json_string_value(json_object_get(in[0], "config_hash"));
    bool same_hash = hash0 != NULL;
    uint64_t hash_xor = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h = json_string_value(json_object_get(in[i], "config_hash"));
        same_hash &= h && strcmp(h, hash0) == 0;
        hash_xor ^= h ? strtoull(h, NULL, 16) : 0;
    }
    /* Added-up figures of different scenarios describe none of them. */
    if (!same_hash && !allow_mixed) {
        fprintf(stderr,
                "zlbench merge: the reports are of different scenarios (config hashes differ); "
                "--allow-mixed merges them anyway\n");
        goto out;
    }
    json_t *shards = NULL;
    size_t nmissing = 0;
    if (check_shards(in, files, n, allow_mixed, &shards, &nmissing) != 0)
        goto out;
    /* Percentiles follow the first report's configuration. */
    double pcts[16];
    size_t npcts = 0, idx;
    json_t *v;
    json_array_foreach(
        json_object_get(json_object_get(json_object_get(in[0], "config"), "report"), "percentiles"),
        idx, v)
    {
        if (npcts < ZLB_ARRAY_LEN(pcts))
            pcts[npcts++] = json_number_value(v);
    }
    json_t *merged = json_pack("{s:s, s:s, s:I}", "schema", ZLB_REPORT_SCHEMA, "state", "done",
                               "merged_from", (json_int_t)n);
    json_t *steady = json_object(), *targets = NULL;
    json_t *pollers = json_array(), *sources = json_array();
    bool saturated = false, valid = true, reached = true;
    double elapsed = 0, ramp_s = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_extend(pollers, json_object_get(in[i], "pollers"));
        saturated |=
            json_is_true(json_object_get(json_object_get(in[i], "generator"), "saturated"));
        valid &= !json_is_false(json_object_get(in[i], "valid"));
        elapsed = fmax(elapsed, json_number_value(json_object_get(in[i], "elapsed_s")));
        json_t *ramp = json_object_get(in[i], "ramp");
        reached &= json_is_true(json_object_get(ramp, "target_reached"));
        ramp_s = fmax(ramp_s, json_number_value(json_object_get(ramp, "seconds")));
        json_array_append_new(sources,
                              json_pack("{s:s, s:O?, s:O?, s:O*, s:O?, s:O?}", "file", files[i],
                                        "host", json_object_get(in[i], "host"), "config_hash",
                                        json_object_get(in[i], "config_hash"), "shard",
                                        json_object_get(in[i], "shard"), "valid",
                                        json_object_get(in[i], "valid"), "exit_code",
                                        json_object_get(in[i], "exit_code")));
    }
    int rc = merge_level(in, files, n, true, pcts, npcts, merged);
    if (rc == 0)
        rc = merge_level(in, files, n, false, pcts, npcts, steady);
    if (rc == 0)
        rc = merge_targets(in, files, n, &targets);
    if (rc != 0) {
        json_decref(merged);
        json_decref(steady);
        json_decref(pollers);
        json_decref(sources);
        json_decref(shards);
        goto out;
    }
    json_object_set_new(merged, "elapsed_s", zlb_json_real(elapsed));
    /* The runs went side by side: the merged ramp ended when the slowest one's did. */
    json_object_set_new(
        merged, "ramp",
        json_pack("{s:b, s:o}", "target_reached", reached, "seconds", zlb_json_real(ramp_s)));
    char hash[17];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)hash_xor);
    json_object_set_new(merged, "config_hash", json_string(same_hash ? hash0 : hash));
    json_object_set_new(merged, "steady", steady);
    json_object_set_new(merged, "pollers", pollers);
    json_object_set_new(merged, "targets", targets);
    json_object_set_new(merged, "generator",
                        json_pack("{s:b, s:[]}", "saturated", saturated, "reasons"));
    /* Host facts: the first report's (each report's are under "sources"). */
    json_t *host = json_object_get(in[0], "host");
    if (host)
        json_object_set_new(merged, "host", json_incref(host));
    json_object_set_new(merged, "sources", sources);
    /* The shards' config is the whole scenario's, with the first one's part: the sum is the
     * whole, so its config is the scenario without a part. */
    json_t *mcfg = json_deep_copy(json_object_get(in[0], "config"));
    if (shards) {
        json_object_del(mcfg, "shard");
        json_object_set_new(merged, "shards", shards);
    }
    if (mcfg)
        json_object_set_new(merged, "config", mcfg);
    merge_events(in, n, merged);
    const char *no_timeline;
    json_t *timeline = zlb_gate_merge_timelines(in, n, &no_timeline);
    if (timeline)
        json_object_set_new(merged, "timeline", timeline);
    else
        fprintf(stderr, "zlbench merge: no timeline in the merged report: %s\n", no_timeline);
    zlb_config_t *cfg = first_config(in[0], files[0]);
    bool judged = cfg != NULL;
    int failed = cfg ? zlb_gate_thresholds(cfg, merged) : 0;
    zlb_config_destroy(cfg);
    valid &= !saturated;
    /* Some shards' figures are not the scenario's: the run that was asked for is not all here. */
    bool partial = nmissing > 0 && !allow_partial;
    if (partial) {
        char why[160];
        snprintf(why, sizeof(why),
                 "%zu of %zu shards missing (shards.missing): not the whole "
                 "scenario; --allow-partial accepts a partial set",
                 nmissing, (size_t)json_integer_value(json_object_get(shards, "count")));
        json_object_set_new(merged, "invalid_reason", json_string(why));
    }
    valid &= !partial;
    int verdict = !valid ? ZLB_EXIT_INVALID_RUN : failed ? ZLB_EXIT_THRESHOLDS : ZLB_EXIT_OK;
    json_object_set_new(merged, "valid", json_boolean(valid));
    json_object_set_new(merged, "exit_code", json_integer(verdict));
    char *text = json_dumps(merged, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(merged);
    rc = zlb_write_file_atomic(out_path, text, strlen(text), 0644);
    free(text);
    if (rc != 0) {
        fprintf(stderr, "zlbench merge: cannot write %s: %s\n", out_path, strerror(-rc));
        code = ZLB_EXIT_INTERNAL;
        goto out;
    }
    printf("merged %zu report(s) into %s: %s%s, exit_code %d", n, out_path,
           valid     ? "valid"
           : partial ? "INVALID (shards missing)"
                     : "INVALID (a run saturated)",
           failed ? ", thresholds FAILED" : "", verdict);
    if (nmissing)
        printf(" (%zu shard(s) missing%s)", nmissing, allow_partial ? ", --allow-partial" : "");
    if (!judged && json_object_get(in[0], "config"))
        printf(" (thresholds not evaluated)");
    printf("\n");
    code = partial ? ZLB_EXIT_INVALID_RUN : ZLB_EXIT_OK;
out:
    for (size_t i = 0; i < n && i < nfiles; i++)
        json_decref(in[i]);
    free(in);
    return code;
}
