/* config_stream.c -- the stream workload's keys: direction, chunk size, per-connection rate,
 * first message and stall watch. The first message's file is read here, at load, so a missing
 * file is a config error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

#define MIN_CHUNK 1
#define MAX_CHUNK (64ull << 20)
#define MAX_FIRST_MESSAGE (1ull << 20)

static const char *const stream_keys[] = {"direction",     "chunk_size",         "rate",
                                          "first_message", "first_message_file", "stall_timeout",
                                          "stall_close"};

static int read_file(zlb_config_ctx_t *c, const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = zlb_xmalloc(MAX_FIRST_MESSAGE + 1);
    size_t n = 0, r;

    if (!f) {
        free(buf);
        return zlb_config_fail(c, "cannot read %s: %s", path, strerror(errno));
    }
    while ((r = fread(buf + n, 1, MAX_FIRST_MESSAGE + 1 - n, f)) > 0 && n <= MAX_FIRST_MESSAGE)
        n += r;
    bool failed = ferror(f);
    fclose(f);
    if (failed || n > MAX_FIRST_MESSAGE || n == 0) {
        free(buf);
        return failed ? zlb_config_fail(c, "cannot read %s", path)
               : n    ? zlb_config_fail(c, "%s is larger than %llu bytes", path,
                                        (unsigned long long)MAX_FIRST_MESSAGE)
                      : zlb_config_fail(c, "%s is empty", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

int zlb_config_parse_stream(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w)
{
    int d = (int)w->direction;
    json_t *v;
    char g[64];

    if (w->type != ZLB_WORK_STREAM) {
        for (size_t i = 0; i < ZLB_ARRAY_LEN(stream_keys); i++) {
            if (json_object_get(o, stream_keys[i])) {
                size_t mark = zlb_config_push(c, stream_keys[i]);
                int rc = zlb_config_fail_key(c, "applies to workload type \"stream\" only");
                zlb_config_pop(c, mark);
                return rc;
            }
        }
        return 0;
    }
    TRY(zlb_config_get_enum(c, o, "direction", &zlb_config_direction_names, &d));
    w->direction = (zlb_stream_dir_t)d;
    TRY(zlb_config_get_size(c, o, "chunk_size", MIN_CHUNK, MAX_CHUNK, &w->chunk_size));
    TRY(zlb_config_get_number(c, o, "rate", 0, ZLB_CONFIG_MAX_STREAM_RATE, "0..1e12", &w->rate));
    if (w->rate > 0 && w->direction == ZLB_STREAM_RECEIVE) {
        size_t mark = zlb_config_push(c, "rate");
        int rc = zlb_config_fail(c, ZLB_CONFIG_STREAM_RECEIVE_RATE);
        zlb_config_pop(c, mark);
        return rc;
    }
    TRY(zlb_config_get_duration(c, o, "stall_timeout", 0, &w->stall_timeout_ns));
    TRY(zlb_config_get_bool(c, o, "stall_close", &w->stall_close));
    if (w->stall_close && w->stall_timeout_ns == 0) {
        size_t mark = zlb_config_push(c, "stall_close");
        int rc = zlb_config_fail(c, "needs a stall_timeout (a stall is only seen with one)");
        zlb_config_pop(c, mark);
        return rc;
    }
    if (json_object_get(o, "first_message") && json_object_get(o, "first_message_file")) {
        size_t mark = zlb_config_push(c, "first_message_file");
        int rc =
            zlb_config_fail_key(c, "give either first_message or first_message_file, not both");
        zlb_config_pop(c, mark);
        return rc;
    }
    if ((v = json_object_get(o, "first_message"))) {
        size_t mark = zlb_config_push(c, "first_message");
        if (!json_is_string(v))
            return zlb_config_fail(c, "expected a string, got %s", zlb_config_got(v, g, sizeof(g)));
        if (json_string_length(v) == 0)
            return zlb_config_fail(c, "is empty (leave it out for none)");
        if (json_string_length(v) > MAX_FIRST_MESSAGE)
            return zlb_config_fail(c, "longer than %llu bytes (use first_message_file?)",
                                   (unsigned long long)MAX_FIRST_MESSAGE);
        free(w->first_message);
        free(w->first_message_file);
        w->first_message_file = NULL;
        w->first_message_len = json_string_length(v);
        w->first_message = zlb_xmalloc(w->first_message_len + 1);
        memcpy(w->first_message, json_string_value(v), w->first_message_len);
        zlb_config_pop(c, mark);
    }
    if ((v = json_object_get(o, "first_message_file"))) {
        size_t mark = zlb_config_push(c, "first_message_file");
        uint8_t *buf = NULL;
        size_t len = 0;
        if (!json_is_string(v))
            return zlb_config_fail(c, "expected a string, got %s", zlb_config_got(v, g, sizeof(g)));
        TRY(read_file(c, json_string_value(v), &buf, &len));
        free(w->first_message);
        free(w->first_message_file);
        w->first_message = buf;
        w->first_message_len = len;
        w->first_message_file = zlb_xstrdup(json_string_value(v));
        zlb_config_pop(c, mark);
    }
    return 0;
}
