/* config_get.c -- the parser's typed getters and its error messages with exact places. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

/* ---- error messages -------------------------------------------------------------------------- */

/* Messages longer than the buffer end in "..." rather than mid-word without a hint. */
void zlb_config_set_message(zlb_config_error_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(err->message))
        memcpy(err->message + sizeof(err->message) - 4, "...", 4);
}

ZLB_PRINTF(4, 0)
static int vfail_path(zlb_config_ctx_t *c, const char *path, bool at_key, const char *fmt,
                      va_list ap)
{
    char msg[sizeof(c->err->message)];
    char where[64] = "";
    int line, col;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (c->text && path && path[0] &&
        (zlb_config_pos_find(c->text, c->textlen, path, at_key, &line, &col) == 0 ||
         zlb_config_pos_find(c->text, c->textlen, path, !at_key, &line, &col) == 0))
        snprintf(where, sizeof(where), ":%d:%d", line, col);
    /* Without a file name (a config built in memory) the message starts at the key path. */
    const char *name = c->name ? c->name : "";
    const char *sep = c->name ? ": " : "";
    /* A path of any length is found above; in the message a long one is shortened so that what
     * is wrong still fits after it. */
    char shortpath[ZLB_CONFIG_PATH_SHOWN + 8];
    if (path && path[0])
        zlb_config_set_message(
            c->err, "%s%s%s%s: %s", name, where, sep,
            zlb_config_abbrev(path, ZLB_CONFIG_PATH_SHOWN, shortpath, sizeof(shortpath)), msg);
    else
        zlb_config_set_message(c->err, "%s%s%s%s", name, where, sep, msg);
    return -EINVAL;
}

/* At the value of the current path. */
int zlb_config_fail(zlb_config_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, zlb_config_path_str(&c->path), false, fmt, ap);
    va_end(ap);
    return rc;
}

/* At the key of the current path (unknown keys, bad threshold paths). */
int zlb_config_fail_key(zlb_config_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, zlb_config_path_str(&c->path), true, fmt, ap);
    va_end(ap);
    return rc;
}

/* At a named path (cross-field rules). */
int zlb_config_fail_at(zlb_config_ctx_t *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, path, false, fmt, ap);
    va_end(ap);
    return rc;
}

size_t zlb_config_push(zlb_config_ctx_t *c, const char *key)
{
    return zlb_config_path_push_key(&c->path, key, strlen(key));
}

void zlb_config_pop(zlb_config_ctx_t *c, size_t mark)
{
    zlb_config_path_pop(&c->path, mark);
}

/* A file the run will need (a CA, a client certificate) is checked now, so that a typo is a
 * config error before anything starts, not a failure at start-up. */
int zlb_config_check_file(zlb_config_ctx_t *c, const char *key, const char *path, bool dir)
{
    struct stat st;
    if (!path)
        return 0;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        int e = errno;
        size_t mark = zlb_config_push(c, key);
        int rc = zlb_config_fail(c, "cannot read %s: %s", zlb_config_show(path), strerror(e));
        zlb_config_pop(c, mark);
        return rc;
    }
    if (dir ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode)) {
        size_t mark = zlb_config_push(c, key);
        int rc = zlb_config_fail(c, "%s is %s", zlb_config_show(path),
                                 dir ? "not a directory" : "a directory");
        zlb_config_pop(c, mark);
        return rc;
    }
    return 0;
}

const char *zlb_config_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a fractional number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

/* Shortest text that reads back as the same double. */
static void format_double(double d, char *buf, size_t len)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* "got 70000" for numbers (the value is what is wrong), "got a string" for the rest. */
const char *zlb_config_got(const json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        format_double(json_real_value(v), buf, len);
        /* "got 2000" for 2000.0 would hide why it is not an integer. */
        if (!strpbrk(buf, ".eEn") && strlen(buf) + 2 < len)
            strcat(buf, ".0");
        return buf;
    }
    return zlb_config_type_name(v);
}

/* ---- typed getters: absent keys leave *out (the default) alone ----------------------------- */

int zlb_config_check_object(zlb_config_ctx_t *c, const json_t *v)
{
    char g[64];
    if (!json_is_object(v))
        return zlb_config_fail(c, "expected an object, got %s", zlb_config_got(v, g, sizeof(g)));
    return 0;
}

int zlb_config_check_keys(zlb_config_ctx_t *c, const json_t *obj, const char *const *allowed,
                          size_t n)
{
    const char *key;
    json_t *v;

    /* jansson iterates in insertion order, so the first unknown key in the file is reported. */
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i;
        for (i = 0; i < n && strcmp(key, allowed[i]) != 0; i++)
            ;
        if (i < n)
            continue;
        size_t mark = zlb_config_push(c, key);
        const char *hint = zlb_config_suggest(key, allowed, n);
        char shortkey[ZLB_CONFIG_KEY_SHOWN + 8];
        const char *shown =
            zlb_config_abbrev(key, ZLB_CONFIG_KEY_SHOWN, shortkey, sizeof(shortkey));
        int rc = hint ? zlb_config_fail_key(c, "unknown key '%s' (did you mean '%s'?)", shown, hint)
                      : zlb_config_fail_key(c, "unknown key '%s'", shown);
        zlb_config_pop(c, mark);
        return rc;
    }
    return 0;
}

int zlb_config_check_int(zlb_config_ctx_t *c, const json_t *v, int64_t min, int64_t max,
                         int64_t *out)
{
    char g[64];
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return zlb_config_fail(c, "expected an integer %" PRId64 "..%" PRId64 ", got %s", min, max,
                               zlb_config_got(v, g, sizeof(g)));
    *out = json_integer_value(v);
    return 0;
}

int zlb_config_get_int(zlb_config_ctx_t *c, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = zlb_config_check_int(c, v, min, max, out);
    zlb_config_pop(c, mark);
    return rc;
}

int zlb_config_get_bool(zlb_config_ctx_t *c, const json_t *obj, const char *key, bool *out)
{
    char g[64];
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = 0;
    if (json_is_boolean(v))
        *out = json_is_true(v);
    else
        rc = zlb_config_fail(c, "expected a boolean, got %s", zlb_config_got(v, g, sizeof(g)));
    zlb_config_pop(c, mark);
    return rc;
}

/* Numbers where integers and fractions are both fine. `range` is the text for messages. */
int zlb_config_check_number(zlb_config_ctx_t *c, const json_t *v, double min, double max,
                            bool open_min, bool open_max, const char *range, double *out)
{
    char g[64];
    if (!json_is_number(v))
        return zlb_config_fail(c, "expected a number %s, got %s", range,
                               zlb_config_got(v, g, sizeof(g)));
    double d = json_number_value(v);
    if (!isfinite(d) || (open_min ? d <= min : d < min) || (open_max ? d >= max : d > max))
        return zlb_config_fail(c, "expected a number %s, got %s", range,
                               zlb_config_got(v, g, sizeof(g)));
    *out = d;
    return 0;
}

int zlb_config_get_number(zlb_config_ctx_t *c, const json_t *obj, const char *key, double min,
                          double max, const char *range, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = zlb_config_check_number(c, v, min, max, false, false, range, out);
    zlb_config_pop(c, mark);
    return rc;
}

static bool looks_numeric(const char *s)
{
    char *end;
    errno = 0;
    (void)strtod(s, &end);
    return end != s && *end == '\0';
}

int zlb_config_check_duration(zlb_config_ctx_t *c, const json_t *v, uint64_t min_ns, uint64_t *out)
{
    char g[64], buf[32];
    uint64_t ns;

    if (json_is_number(v))
        return zlb_config_fail(c,
                               "expected a duration with a unit, e.g. \"%ss\" or \"500ms\", got %s",
                               zlb_config_got(v, g, sizeof(g)), zlb_config_got(v, g, sizeof(g)));
    if (!json_is_string(v))
        return zlb_config_fail(c, "expected a duration such as \"10s\" or \"500ms\", got %s",
                               zlb_config_got(v, g, sizeof(g)));
    const char *s = json_string_value(v), *shown = zlb_config_show(s);
    int rc = zlb_parse_duration(s, &ns);
    if (rc == -ERANGE)
        return zlb_config_fail(c, "duration \"%s\" is out of range (at most about 584 years)",
                               shown);
    if (rc < 0 && looks_numeric(s))
        return zlb_config_fail(c, "\"%s\" needs a unit (ns, us, ms, s, m, h), e.g. \"%ss\"", shown,
                               shown);
    if (rc < 0)
        return zlb_config_fail(
            c,
            "invalid duration \"%s\" (expected a number and a unit: ns, us, ms, s, m, h; "
            "e.g. \"500ms\")",
            shown);
    if (ns < min_ns) {
        zlb_format_duration(min_ns, buf, sizeof(buf));
        return zlb_config_fail(c, "\"%s\" is too short (at least %s)", shown, buf);
    }
    *out = ns;
    return 0;
}

int zlb_config_get_duration(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                            uint64_t min_ns, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = zlb_config_check_duration(c, v, min_ns, out);
    zlb_config_pop(c, mark);
    return rc;
}

/* Sizes: a byte count as an integer, or a string with a unit ("64KiB"). */
int zlb_config_get_size(zlb_config_ctx_t *c, const json_t *obj, const char *key, uint64_t min,
                        uint64_t max, uint64_t *out)
{
    char g[64];
    uint64_t bytes = 0;
    int rc = 0;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        bytes = (uint64_t)json_integer_value(v);
    } else if (json_is_string(v)) {
        rc = zlb_parse_size(json_string_value(v), &bytes);
        if (rc == -ERANGE)
            rc = zlb_config_fail(c, "size \"%s\" is too large",
                                 zlb_config_show(json_string_value(v)));
        else if (rc < 0)
            rc =
                zlb_config_fail(c, "invalid size \"%s\" (e.g. 4096, \"64KiB\", \"1MiB\", \"10KB\")",
                                zlb_config_show(json_string_value(v)));
    } else {
        rc = zlb_config_fail(c,
                             "expected a size in bytes (a non-negative integer or a string like "
                             "\"64KiB\"), got %s",
                             zlb_config_got(v, g, sizeof(g)));
    }
    if (rc == 0 && (bytes < min || bytes > max))
        rc = zlb_config_fail(c, "size %" PRIu64 " bytes is out of range %" PRIu64 "..%" PRIu64,
                             bytes, min, max);
    if (rc == 0)
        *out = bytes;
    zlb_config_pop(c, mark);
    return rc;
}

/* Strings are non-empty; `nullable` ones take null to mean "not set" (*out becomes NULL). */
int zlb_config_get_string(zlb_config_ctx_t *c, const json_t *obj, const char *key, bool nullable,
                          char **out)
{
    char g[64];
    int rc = 0;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    if (nullable && json_is_null(v)) {
        free(*out);
        *out = NULL;
    } else if (!json_is_string(v)) {
        rc = zlb_config_fail(c, "expected a string%s, got %s", nullable ? " or null" : "",
                             zlb_config_got(v, g, sizeof(g)));
    } else if (json_string_length(v) == 0) {
        rc = zlb_config_fail(c, "must not be empty%s",
                             nullable ? " (use null to leave it unset)" : "");
    } else if (strlen(json_string_value(v)) != json_string_length(v)) {
        rc = zlb_config_fail(c, "must not contain NUL characters");
    } else {
        free(*out);
        *out = zlb_xstrdup(json_string_value(v));
    }
    zlb_config_pop(c, mark);
    return rc;
}

/* One of a fixed list of names: *out is the index, which is the enum's value. */
int zlb_config_check_enum(zlb_config_ctx_t *c, const json_t *v, const zlb_config_names_t *t,
                          int *out)
{
    char list[256] = "", g[64];
    size_t len = 0;

    if (json_is_string(v)) {
        for (size_t i = 0; i < t->n; i++) {
            if (strcmp(json_string_value(v), t->names[i]) == 0) {
                *out = (int)i;
                return 0;
            }
        }
    }
    for (size_t i = 0; i < t->n && len < sizeof(list); i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\"%s\"", i ? ", " : "",
                                t->names[i]);
    if (!json_is_string(v))
        return zlb_config_fail(c, "expected one of %s, got %s", list,
                               zlb_config_got(v, g, sizeof(g)));
    const char *hint = zlb_config_suggest(json_string_value(v), t->names, t->n);
    if (hint)
        return zlb_config_fail(c, "expected one of %s, got \"%s\" (did you mean \"%s\"?)", list,
                               zlb_config_show(json_string_value(v)), hint);
    return zlb_config_fail(c, "expected one of %s, got \"%s\"", list,
                           zlb_config_show(json_string_value(v)));
}

int zlb_config_get_enum(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                        const zlb_config_names_t *t, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = zlb_config_check_enum(c, v, t, out);
    zlb_config_pop(c, mark);
    return rc;
}

/* An optional object-valued key: checks its type and hands it to fn under its path. */
int zlb_config_get_section(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                           zlb_config_section_fn fn, zlb_config_t *cfg)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = zlb_config_push(c, key);
    int rc = zlb_config_check_object(c, v);
    if (rc == 0)
        rc = fn(c, v, cfg);
    zlb_config_pop(c, mark);
    return rc;
}

int zlb_config_check_listen(zlb_config_ctx_t *c, const char *path, const char *s,
                            struct sockaddr_storage *ss)
{
    struct sockaddr_storage tmp;
    socklen_t len;
    char *host = NULL;
    uint16_t port;

    if (zlb_addr_host_port(s, &host, &port) != 0)
        return zlb_config_fail_at(
            c, path,
            "invalid address \"%s\" (expected HOST:PORT, e.g. "
            "\"127.0.0.1:8089\" or \"[::1]:0\"%s)",
            zlb_config_show(s),
            strcmp(path, "control.listen") == 0 ? "; null disables the control port" : "");
    free(host);
    /* What the listeners bind (zlb_addr_parse): a name other than localhost would pass the
     * syntax and fail only at start. */
    if (zlb_addr_parse(s, ss ? ss : &tmp, &len) != 0)
        return zlb_config_fail_at(c, path,
                                  "cannot listen on \"%s\": expected an IP address or localhost, "
                                  "e.g. \"127.0.0.1:8089\" or \"[::1]:0\"",
                                  zlb_config_show(s));
    return 0;
}
