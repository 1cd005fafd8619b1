/* fuzz_config_load.c -- libFuzzer: the config loader and its position finder on any text. A valid
 * config renders back to JSON that loads again to the same hash; an invalid one gets a message;
 * the position finder answers for any path without reading out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "config/config_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {"",
                                    "connections",
                                    "targets[0].host",
                                    "targets[1].tls.ca_file",
                                    "workload.type",
                                    "control.listen",
                                    "thresholds[0].metric",
                                    "report.percentiles[3]",
                                    "a.b.c.d.e.f"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes plus the terminator: ASan sees any read past either. */
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    zlb_config_t *cfg = NULL;
    zlb_config_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = zlb_config_parse(text, "fuzz.json", NULL, &cfg, &err);
    if (rc == 0) {
        if (!cfg)
            abort();
        char h1[17], h2[17];
        zlb_config_hash(cfg, h1);
        json_t *j = zlb_config_to_json(cfg);
        char *again = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!again)
            abort();
        zlb_config_t *cfg2 = NULL;
        zlb_config_error_t err2;
        /* What zlbench prints as the effective config must itself be a valid config, with
         * the same meaning (files it names were readable a moment ago). */
        if (zlb_config_parse(again, "again.json", NULL, &cfg2, &err2) == 0) {
            zlb_config_hash(cfg2, h2);
            if (strcmp(h1, h2) != 0) {
                fprintf(stderr, "hash changed on reload: %s -> %s\n%s\n", h1, h2, again);
                abort();
            }
            zlb_config_destroy(cfg2);
        }
        free(again);
        zlb_config_destroy(cfg);
    } else if (err.message[0] == '\0' || !memchr(err.message, '\0', sizeof(err.message))) {
        abort(); /* every refusal says why */
    }

    int line, col;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        for (int want_key = 0; want_key < 2; want_key++) {
            if (zlb_config_pos_find(text, size, paths[i], want_key, &line, &col) == 0 &&
                (line < 1 || col < 1))
                abort();
        }
    }
    /* The input's first line as a path, too: any bytes, any nesting. */
    const char *nl = memchr(text, '\n', size);
    size_t plen = nl ? (size_t)(nl - text) : size;
    char *path = strndup(text, plen);
    if (path) {
        (void)zlb_config_pos_find(text, size, path, true, &line, &col);
        char *host = NULL;
        uint16_t port;
        if (zlb_addr_host_port(path, &host, &port) == 0 && !host)
            abort();
        free(host);
        free(path);
    }
    zlb_config_path_t dp;
    memset(&dp, 0, sizeof(dp));
    char *key = NULL;
    if (zlb_config_pos_first_duplicate(text, size, &dp, &key, &line, &col) == 0 && !key)
        abort();
    free(key);
    zlb_config_path_dispose(&dp);
    free(text);
    return 0;
}
