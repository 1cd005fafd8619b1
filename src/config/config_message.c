/* config_message.c -- the message workload's keys: the message (text with escapes, hex or a
 * file), the reply's framing (expect, expect_prefix, max_reply_size) and message_rate. The bytes
 * are made here, at load, so the workload only copies a pointer and a bad escape is a config
 * error with its place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

#define MAX_MESSAGE (16u << 20)
#define MAX_DELIMITER 64
#define MAX_PREFIX 4096
#define MAX_REPLY (64ull << 20)

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int zlb_config_unescape(const char *s, size_t n, uint8_t **out, size_t *len, char *why,
                        size_t whylen)
{
    uint8_t *b = zlb_xmalloc(n + 1), *p = b;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *p++ = (uint8_t)s[i];
            continue;
        }
        if (i + 1 == n) {
            snprintf(why, whylen, "ends in a lone backslash (write \\\\ for one)");
            goto bad;
        }
        switch (s[++i]) {
        case 'r':
            *p++ = '\r';
            break;
        case 'n':
            *p++ = '\n';
            break;
        case 't':
            *p++ = '\t';
            break;
        case '\\':
            *p++ = '\\';
            break;
        case 'x': {
            int hi = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(why, whylen, "\\x at byte %zu needs two hex digits", i - 1);
                goto bad;
            }
            *p++ = (uint8_t)(hi << 4 | lo);
            i += 2;
            break;
        }
        default:
            snprintf(why, whylen, "unknown escape \\%c at byte %zu (known: \\r \\n \\t \\\\ \\xNN)",
                     s[i] >= 32 && s[i] < 127 ? s[i] : '?', i - 1);
            goto bad;
        }
    }
    *out = b;
    *len = (size_t)(p - b);
    return 0;
bad:
    free(b);
    return -EINVAL;
}

json_t *zlb_config_escape_json(const uint8_t *b, size_t n)
{
    /* The inverse of zlb_config_unescape, readable: CR, LF and tab stay characters (JSON writes
     * them \r \n \t), a backslash doubles, other bytes outside printable ASCII become \xNN. */
    char *s = zlb_xmalloc(4 * n + 1), *p = s;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = b[i];
        if (ch == '\\') {
            *p++ = '\\';
            *p++ = '\\';
        } else if ((ch >= 32 && ch < 127) || ch == '\r' || ch == '\n' || ch == '\t') {
            *p++ = (char)ch;
        } else {
            p += sprintf(p, "\\x%02x", ch);
        }
    }
    json_t *j = json_stringn(s, (size_t)(p - s));
    free(s);
    return j;
}

/* A string key with escapes into bytes (min..max of them). Absent: *out untouched; null (when
 * nullable): cleared. */
static int get_escaped(zlb_config_ctx_t *c, const json_t *o, const char *key, bool nullable,
                       size_t min, size_t max, uint8_t **out, size_t *len)
{
    const json_t *v = json_object_get(o, key);
    char g[64], why[160];
    uint8_t *b;
    size_t n;
    int rc = 0;

    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    if (nullable && json_is_null(v)) {
        free(*out);
        *out = NULL;
        *len = 0;
    } else if (!json_is_string(v)) {
        rc = zlb_config_fail(c, "expected a string%s, got %s", nullable ? " or null" : "",
                             zlb_config_got(v, g, sizeof(g)));
    } else if (zlb_config_unescape(json_string_value(v), json_string_length(v), &b, &n, why,
                                   sizeof(why)) < 0) {
        rc = zlb_config_fail(c, "%s", why);
    } else if (n < min || n > max) {
        free(b);
        rc = zlb_config_fail(c, "must be %zu..%zu bytes after escapes, got %zu", min, max, n);
    } else {
        free(*out);
        *out = b;
        *len = n;
    }
    if (rc == 0)
        zlb_config_pop(c, mark);
    return rc;
}

static int get_hex(zlb_config_ctx_t *c, const json_t *v, uint8_t **out, size_t *len)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), k = 0;
    uint8_t *b;
    int hi = -1;
    char g[64];

    if (!json_is_string(v))
        return zlb_config_fail(c, "expected a string of hex digits, got %s",
                               zlb_config_got(v, g, sizeof(g)));
    b = zlb_xmalloc(n / 2 + 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
            if (hi >= 0)
                break; /* a space inside a byte: reported below */
            continue;
        }
        int d = hexval((unsigned char)s[i]);
        if (d < 0) {
            free(b);
            return zlb_config_fail(c, "not a hex digit at byte %zu ('%c')", i,
                                   s[i] >= 32 && s[i] < 127 ? s[i] : '?');
        }
        if (hi < 0) {
            hi = d;
        } else {
            b[k++] = (uint8_t)(hi << 4 | d);
            hi = -1;
        }
    }
    if (hi >= 0 || k == 0 || k > MAX_MESSAGE) {
        free(b);
        return zlb_config_fail(c,
                               "expected pairs of hex digits (spaces between bytes allowed), "
                               "1..%u bytes",
                               MAX_MESSAGE);
    }
    *out = b;
    *len = k;
    return 0;
}

static int parse_expect(zlb_config_ctx_t *c, const json_t *v, zlb_workload_config_t *w)
{
    char g[64];

    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "echo") != 0)
            return zlb_config_fail(c,
                                   "expected \"echo\", {\"bytes\": N} or {\"delimiter\": \"...\"}, "
                                   "got \"%s\"",
                                   zlb_config_show(json_string_value(v)));
        w->expect = ZLB_EXPECT_ECHO;
        return 0;
    }
    if (!json_is_object(v) || json_object_size(v) != 1)
        return zlb_config_fail(c,
                               "expected \"echo\", {\"bytes\": N} or {\"delimiter\": \"...\"}, "
                               "got %s",
                               json_is_object(v) ? "an object without exactly one of them"
                                                 : zlb_config_got(v, g, sizeof(g)));
    static const char *const keys[] = {"bytes", "delimiter"};
    TRY(zlb_config_check_keys(c, v, keys, ZLB_ARRAY_LEN(keys)));
    if (json_object_get(v, "bytes")) {
        TRY(zlb_config_get_size(c, v, "bytes", 1, MAX_REPLY, &w->expect_bytes));
        w->expect = ZLB_EXPECT_BYTES;
        return 0;
    }
    TRY(get_escaped(c, v, "delimiter", false, 1, MAX_DELIMITER, &w->expect_delimiter,
                    &w->expect_delimiter_len));
    w->expect = ZLB_EXPECT_DELIMITER;
    return 0;
}

int zlb_config_parse_message(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w)
{
    static const char *const srcs[] = {"message", "message_hex", "message_file"};
    const char *given = NULL;
    json_t *v;

    for (size_t i = 0; i < ZLB_ARRAY_LEN(srcs); i++) {
        if (!json_object_get(o, srcs[i]))
            continue;
        if (given) {
            size_t mark = zlb_config_push(c, srcs[i]);
            int rc = zlb_config_fail_key(c,
                                         "give one of message, message_hex or message_file "
                                         "(%s is given too)",
                                         given);
            zlb_config_pop(c, mark);
            return rc;
        }
        given = srcs[i];
    }
    if (given) {
        uint8_t *b = NULL;
        size_t n = 0;
        char *file = NULL;
        zlb_message_from_t from;
        if (strcmp(given, "message") == 0) {
            TRY(get_escaped(c, o, "message", false, 1, MAX_MESSAGE, &b, &n));
            from = ZLB_MESSAGE_TEXT;
        } else if (strcmp(given, "message_hex") == 0) {
            size_t mark = zlb_config_push(c, given);
            TRY(get_hex(c, json_object_get(o, given), &b, &n));
            zlb_config_pop(c, mark);
            from = ZLB_MESSAGE_HEX;
        } else {
            TRY(zlb_config_get_string(c, o, "message_file", false, &file));
            size_t mark = zlb_config_push(c, given);
            int rc = zlb_config_read_file(c, file, MAX_MESSAGE, &b, &n);
            if (rc == 0 && n == 0)
                rc = zlb_config_fail(c, "%s is empty", file);
            if (rc < 0) {
                free(file);
                free(b);
                return rc;
            }
            zlb_config_pop(c, mark);
            from = ZLB_MESSAGE_FILE;
        }
        free(w->message);
        free(w->message_file);
        w->message = b;
        w->message_len = n;
        w->message_file = file;
        w->message_from = from;
    }
    if (json_object_get(o, "message_size") && w->message_from != ZLB_MESSAGE_GENERATED) {
        size_t mark = zlb_config_push(c, "message_size");
        int rc = zlb_config_fail_key(c, "sizes the generated message only; the message given "
                                        "has its own length (leave message_size out)");
        zlb_config_pop(c, mark);
        return rc;
    }
    if (w->message_from == ZLB_MESSAGE_GENERATED)
        w->message_len = w->message_size;

    if ((v = json_object_get(o, "expect"))) {
        size_t mark = zlb_config_push(c, "expect");
        TRY(parse_expect(c, v, w));
        zlb_config_pop(c, mark);
    }
    TRY(get_escaped(c, o, "expect_prefix", true, 1, MAX_PREFIX, &w->expect_prefix,
                    &w->expect_prefix_len));
    TRY(zlb_config_get_size(c, o, "max_reply_size", 1, MAX_REPLY, &w->max_reply_size));
    TRY(zlb_config_get_number(c, o, "message_rate", 0, 1e9, "0..1e9", &w->message_rate));
    if (w->message_rate > 0 && json_object_get(o, "message_rate") &&
        json_object_get(o, "message_interval")) {
        size_t mark = zlb_config_push(c, "message_interval");
        int rc = zlb_config_fail_key(c, "give message_rate (for the whole run) or "
                                        "message_interval (per connection), not both");
        zlb_config_pop(c, mark);
        return rc;
    }
    return 0;
}

/* How many bytes a reply has when its framing fixes the length (0: it does not). */
static uint64_t fixed_reply_len(const zlb_workload_config_t *w)
{
    if (w->expect == ZLB_EXPECT_ECHO)
        return w->message_len;
    if (w->expect == ZLB_EXPECT_BYTES)
        return w->expect_bytes;
    return 0;
}

int zlb_config_check_message(zlb_config_ctx_t *c, const zlb_config_t *cfg)
{
    const zlb_workload_config_t *w = &cfg->workload;
    uint64_t fixed = fixed_reply_len(w);

    if (w->type != ZLB_WORK_ECHO && w->type != ZLB_WORK_MESSAGE)
        return 0;
    if (w->type == ZLB_WORK_ECHO && w->expect != ZLB_EXPECT_ECHO)
        return zlb_config_fail_at(c, "workload.expect",
                                  "the echo workload expects the echo; other framings need "
                                  "type \"message\"");
    if (w->expect_prefix && fixed && w->expect_prefix_len > fixed)
        return zlb_config_fail_at(c, "workload.expect_prefix",
                                  "is %zu bytes, longer than the whole reply (%llu bytes)",
                                  w->expect_prefix_len, (unsigned long long)fixed);
    if (w->expect == ZLB_EXPECT_DELIMITER && w->expect_prefix &&
        w->expect_prefix_len > w->max_reply_size)
        return zlb_config_fail_at(c, "workload.expect_prefix", "is longer than max_reply_size");
    /* A reply ends at its first delimiter: one inside the prefix, before its last byte, would
     * end every reply before the prefix could match. */
    if (w->expect == ZLB_EXPECT_DELIMITER && w->expect_prefix && w->expect_prefix_len > 1 &&
        memmem(w->expect_prefix, w->expect_prefix_len - 1, w->expect_delimiter,
               w->expect_delimiter_len))
        return zlb_config_fail_at(c, "workload.expect_prefix",
                                  "holds the delimiter before its end: every reply would end "
                                  "there, short of the prefix");
    if (cfg->embedded_target.enabled && w->type == ZLB_WORK_MESSAGE &&
        cfg->embedded_target.mode != ZLB_SERVE_ECHO &&
        cfg->embedded_target.mode != ZLB_SERVE_REDIS && cfg->embedded_target.mode != ZLB_SERVE_HTTP)
        return zlb_config_fail_at(
            c, "workload.type",
            "the message workload needs a target that replies (echo, redis or http); "
            "embedded_target.mode is \"%s\"",
            zlb_config_name(&zlb_config_mode_names, (int)cfg->embedded_target.mode));
    return 0;
}

void zlb_config_message_json(json_t *o, const zlb_workload_config_t *w)
{
    switch (w->message_from) {
    case ZLB_MESSAGE_GENERATED:
        break;
    case ZLB_MESSAGE_TEXT:
        json_object_set_new(o, "message", zlb_config_escape_json(w->message, w->message_len));
        break;
    case ZLB_MESSAGE_HEX: {
        char *s = zlb_xmalloc(2 * w->message_len + 1);
        for (size_t i = 0; i < w->message_len; i++)
            sprintf(s + 2 * i, "%02x", w->message[i]);
        json_object_set_new(o, "message_hex", json_stringn(s, 2 * w->message_len));
        free(s);
        break;
    }
    case ZLB_MESSAGE_FILE:
        json_object_set_new(o, "message_file", json_string(w->message_file));
        break;
    }
    if (w->expect == ZLB_EXPECT_ECHO)
        json_object_set_new(o, "expect", json_string("echo"));
    else if (w->expect == ZLB_EXPECT_BYTES)
        json_object_set_new(o, "expect", json_pack("{s:I}", "bytes", (json_int_t)w->expect_bytes));
    else
        json_object_set_new(
            o, "expect",
            json_pack("{s:o}", "delimiter",
                      zlb_config_escape_json(w->expect_delimiter, w->expect_delimiter_len)));
    json_object_set_new(o, "expect_prefix",
                        w->expect_prefix
                            ? zlb_config_escape_json(w->expect_prefix, w->expect_prefix_len)
                            : json_null());
    json_object_set_new(o, "max_reply_size", json_integer((json_int_t)w->max_reply_size));
    json_object_set_new(o, "message_rate", json_real(w->message_rate));
    json_object_set_new(o, "pipeline", json_integer((json_int_t)w->pipeline));
}

void zlb_config_message_dispose(zlb_workload_config_t *w)
{
    free(w->message);
    free(w->message_file);
    free(w->expect_delimiter);
    free(w->expect_prefix);
}
