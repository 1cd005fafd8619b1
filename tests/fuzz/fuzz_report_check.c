/* fuzz_report_check.c -- libFuzzer: the report reader behind compare and merge. Any bytes are
 * either refused with a "json.path: reason" message or accepted; an accepted report's levels
 * read back into statistics that keep the accounting invariant, and writing the whole level out
 * again and reading that back gives the same counters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_report_check: %s: %s\n", what, err);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!doc)
        return 0;
    char err[512] = "";
    if (zlb_report_check(doc, err, sizeof(err)) != 0) {
        /* Refused: the message names where, as the commands print it. */
        if (!err[0] || !strchr(err, ':'))
            fail("a refusal without \"path: reason\"", err);
        json_decref(doc);
        return 0;
    }

    zlb_stats_t whole, again;
    zlb_stats_init(&whole);
    zlb_stats_init(&again);
    uint64_t target = 0;
    zlb_rates_t rates = {0};
    if (zlb_report_read_level(doc, true, &whole, &target, &rates, err, sizeof(err)) != 0)
        fail("a checked report's top level does not read", err);
    if (!zlb_counters_balanced(&whole.c))
        fail("a checked report's counters break the invariant", "");

    json_t *out = json_object();
    zlb_report_level_t lv = {
        .stats = &whole, .target = target, .rates = &rates, .totals = true, .histograms = true};
    zlb_report_put_level(out, &lv);
    if (zlb_report_read_level(out, true, &again, NULL, NULL, err, sizeof(err)) != 0)
        fail("a level written from a checked report does not read back", err);
    if (memcmp(&again.c, &whole.c, sizeof(whole.c)) != 0)
        fail("counters changed on a write and read back", "");

    json_decref(out);
    zlb_stats_dispose(&again);
    zlb_stats_dispose(&whole);
    json_decref(doc);
    return 0;
}
