/* config.c -- strict JSON config parsing: types, ranges, cross-field rules, exact error places. */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "core/core.h"

#define MAX_FILE_SIZE (64u << 20)
#define MAX_CONNECTIONS 10000000
#define MIN_CONNECT_RATE 0.001 /* one a quarter-hour: below that the schedule is meaningless */
#define MAX_CONNECT_RATE 1e9
#define MAX_POLLERS 1024
#define MAX_CPU 1023 /* CPU_SETSIZE - 1 */
#define MAX_TARGETS 65536
#define MAX_WEIGHT 1000000
#define MAX_PERCENTILES 16
#define MAX_ALPN 32
#define MAX_SOCKBUF 2147483647 /* setsockopt takes an int */
#define MAX_MESSAGE_SIZE (16u << 20)

/* Everything the parser carries: where the text came from, the path of the value being looked
 * at, and where the first error goes. */
typedef struct ctx {
    const char *name; /* file name for messages */
    const char *text; /* raw text for positions, or NULL (re-checks after overrides) */
    size_t textlen;
    zlb_config_error_t *err;
    zlb_config_path_t path;
    zlb_metric_path_cb validate_path;
} ctx_t;

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

/* ---- error messages -------------------------------------------------------------------------- */

/* Messages longer than the buffer end in "..." rather than mid-word without a hint. */
ZLB_PRINTF(2, 3) static void set_message(zlb_config_error_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(err->message))
        memcpy(err->message + sizeof(err->message) - 4, "...", 4);
}

ZLB_PRINTF(4, 0)
static int vfail_path(ctx_t *c, const char *path, bool at_key, const char *fmt, va_list ap)
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
    if (path && path[0])
        set_message(c->err, "%s%s%s%s: %s", name, where, sep, path, msg);
    else
        set_message(c->err, "%s%s%s%s", name, where, sep, msg);
    return -EINVAL;
}

/* At the value of the current path. */
ZLB_PRINTF(2, 3) static int fail(ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, c->path.truncated ? NULL : c->path.buf, false, fmt, ap);
    va_end(ap);
    return rc;
}

/* At the key of the current path (unknown keys, bad threshold paths). */
ZLB_PRINTF(2, 3) static int fail_key(ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, c->path.truncated ? NULL : c->path.buf, true, fmt, ap);
    va_end(ap);
    return rc;
}

/* At a named path (cross-field rules). */
ZLB_PRINTF(3, 4) static int fail_at(ctx_t *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_path(c, path, false, fmt, ap);
    va_end(ap);
    return rc;
}

static size_t push(ctx_t *c, const char *key)
{
    return zlb_config_path_push_key(&c->path, key, strlen(key));
}

static void pop(ctx_t *c, size_t mark)
{
    zlb_config_path_pop(&c->path, mark);
}

/* A file the run will need (a CA, a client certificate) is checked now, so that a typo is a
 * config error before anything starts, not a failure at start-up. */
static int check_file(ctx_t *c, const char *key, const char *path, bool dir)
{
    struct stat st;
    if (!path)
        return 0;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        int e = errno;
        size_t mark = push(c, key);
        int rc = fail(c, "cannot read %s: %s", path, strerror(e));
        pop(c, mark);
        return rc;
    }
    if (dir ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode)) {
        size_t mark = push(c, key);
        int rc = fail(c, "%s is %s", path, dir ? "not a directory" : "a directory");
        pop(c, mark);
        return rc;
    }
    return 0;
}

static const char *type_name(const json_t *v)
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
static const char *got(const json_t *v, char *buf, size_t len)
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
    return type_name(v);
}

/* ---- typed getters: absent keys leave *out (the default) alone ----------------------------- */

static int check_object(ctx_t *c, const json_t *v)
{
    char g[64];
    if (!json_is_object(v))
        return fail(c, "expected an object, got %s", got(v, g, sizeof(g)));
    return 0;
}

static int check_keys(ctx_t *c, const json_t *obj, const char *const *allowed, size_t n)
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
        size_t mark = push(c, key);
        const char *hint = zlb_config_suggest(key, allowed, n);
        int rc = hint ? fail_key(c, "unknown key '%s' (did you mean '%s'?)", key, hint)
                      : fail_key(c, "unknown key '%s'", key);
        pop(c, mark);
        return rc;
    }
    return 0;
}

static int check_int(ctx_t *c, const json_t *v, int64_t min, int64_t max, int64_t *out)
{
    char g[64];
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return fail(c, "expected an integer %" PRId64 "..%" PRId64 ", got %s", min, max,
                    got(v, g, sizeof(g)));
    *out = json_integer_value(v);
    return 0;
}

static int get_int(ctx_t *c, const json_t *obj, const char *key, int64_t min, int64_t max,
                   int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = check_int(c, v, min, max, out);
    pop(c, mark);
    return rc;
}

static int get_bool(ctx_t *c, const json_t *obj, const char *key, bool *out)
{
    char g[64];
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = 0;
    if (json_is_boolean(v))
        *out = json_is_true(v);
    else
        rc = fail(c, "expected a boolean, got %s", got(v, g, sizeof(g)));
    pop(c, mark);
    return rc;
}

/* Numbers where integers and fractions are both fine. `range` is the text for messages. */
static int check_number(ctx_t *c, const json_t *v, double min, double max, bool open_min,
                        bool open_max, const char *range, double *out)
{
    char g[64];
    if (!json_is_number(v))
        return fail(c, "expected a number %s, got %s", range, got(v, g, sizeof(g)));
    double d = json_number_value(v);
    if (!isfinite(d) || (open_min ? d <= min : d < min) || (open_max ? d >= max : d > max))
        return fail(c, "expected a number %s, got %s", range, got(v, g, sizeof(g)));
    *out = d;
    return 0;
}

static int get_number(ctx_t *c, const json_t *obj, const char *key, double min, double max,
                      const char *range, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = check_number(c, v, min, max, false, false, range, out);
    pop(c, mark);
    return rc;
}

static bool looks_numeric(const char *s)
{
    char *end;
    errno = 0;
    (void)strtod(s, &end);
    return end != s && *end == '\0';
}

static int check_duration(ctx_t *c, const json_t *v, uint64_t min_ns, uint64_t *out)
{
    char g[64], buf[32];
    uint64_t ns;

    if (json_is_number(v))
        return fail(c, "expected a duration with a unit, e.g. \"%ss\" or \"500ms\", got %s",
                    got(v, g, sizeof(g)), got(v, g, sizeof(g)));
    if (!json_is_string(v))
        return fail(c, "expected a duration such as \"10s\" or \"500ms\", got %s",
                    got(v, g, sizeof(g)));
    const char *s = json_string_value(v);
    int rc = zlb_parse_duration(s, &ns);
    if (rc == -ERANGE)
        return fail(c, "duration \"%s\" is out of range (at most about 584 years)", s);
    if (rc < 0 && looks_numeric(s))
        return fail(c, "\"%s\" needs a unit (ns, us, ms, s, m, h), e.g. \"%ss\"", s, s);
    if (rc < 0)
        return fail(c,
                    "invalid duration \"%s\" (expected a number and a unit: ns, us, ms, s, m, h; "
                    "e.g. \"500ms\")",
                    s);
    if (ns < min_ns) {
        zlb_format_duration(min_ns, buf, sizeof(buf));
        return fail(c, "\"%s\" is too short (at least %s)", s, buf);
    }
    *out = ns;
    return 0;
}

static int get_duration(ctx_t *c, const json_t *obj, const char *key, uint64_t min_ns,
                        uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = check_duration(c, v, min_ns, out);
    pop(c, mark);
    return rc;
}

/* Sizes: a byte count as an integer, or a string with a unit ("64KiB"). */
static int get_size(ctx_t *c, const json_t *obj, const char *key, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    char g[64];
    uint64_t bytes = 0;
    int rc = 0;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        bytes = (uint64_t)json_integer_value(v);
    } else if (json_is_string(v)) {
        rc = zlb_parse_size(json_string_value(v), &bytes);
        if (rc == -ERANGE)
            rc = fail(c, "size \"%s\" is too large", json_string_value(v));
        else if (rc < 0)
            rc = fail(c, "invalid size \"%s\" (e.g. 4096, \"64KiB\", \"1MiB\", \"10KB\")",
                      json_string_value(v));
    } else {
        rc = fail(c,
                  "expected a size in bytes (a non-negative integer or a string like "
                  "\"64KiB\"), got %s",
                  got(v, g, sizeof(g)));
    }
    if (rc == 0 && (bytes < min || bytes > max))
        rc = fail(c, "size %" PRIu64 " bytes is out of range %" PRIu64 "..%" PRIu64, bytes, min,
                  max);
    if (rc == 0)
        *out = bytes;
    pop(c, mark);
    return rc;
}

/* Strings are non-empty; `nullable` ones take null to mean "not set" (*out becomes NULL). */
static int get_string(ctx_t *c, const json_t *obj, const char *key, bool nullable, char **out)
{
    char g[64];
    int rc = 0;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    if (nullable && json_is_null(v)) {
        free(*out);
        *out = NULL;
    } else if (!json_is_string(v)) {
        rc = fail(c, "expected a string%s, got %s", nullable ? " or null" : "",
                  got(v, g, sizeof(g)));
    } else if (json_string_length(v) == 0) {
        rc = fail(c, "must not be empty%s", nullable ? " (use null to leave it unset)" : "");
    } else if (strlen(json_string_value(v)) != json_string_length(v)) {
        rc = fail(c, "must not contain NUL characters");
    } else {
        free(*out);
        *out = zlb_xstrdup(json_string_value(v));
    }
    pop(c, mark);
    return rc;
}

/* One of a fixed list of names: *out is the index. */
static int check_enum(ctx_t *c, const json_t *v, const char *const *names, size_t n, int *out)
{
    char list[256] = "", g[64];
    size_t len = 0;

    if (json_is_string(v)) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *out = (int)i;
                return 0;
            }
        }
    }
    for (size_t i = 0; i < n && len < sizeof(list); i++)
        len +=
            (size_t)snprintf(list + len, sizeof(list) - len, "%s\"%s\"", i ? ", " : "", names[i]);
    if (!json_is_string(v))
        return fail(c, "expected one of %s, got %s", list, got(v, g, sizeof(g)));
    const char *hint = zlb_config_suggest(json_string_value(v), names, n);
    if (hint)
        return fail(c, "expected one of %s, got \"%s\" (did you mean \"%s\"?)", list,
                    json_string_value(v), hint);
    return fail(c, "expected one of %s, got \"%s\"", list, json_string_value(v));
}

static int get_enum(ctx_t *c, const json_t *obj, const char *key, const char *const *names,
                    size_t n, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = check_enum(c, v, names, n, out);
    pop(c, mark);
    return rc;
}

typedef int (*section_fn)(ctx_t *c, const json_t *obj, zlb_config_t *cfg);

/* An optional object-valued key: checks its type and hands it to fn under its path. */
static int get_section(ctx_t *c, const json_t *obj, const char *key, section_fn fn,
                       zlb_config_t *cfg)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t mark = push(c, key);
    int rc = check_object(c, v);
    if (rc == 0)
        rc = fn(c, v, cfg);
    pop(c, mark);
    return rc;
}

/* ---- names --------------------------------------------------------------------------------- */

static const char *const priority_names[] = {"normal", "high", "realtime"};
static const char *const rt_policy_names[] = {"fifo", "rr"};
static const char *const select_names[] = {"least_loaded", "round_robin"};
static const char *const mode_names[] = {"echo", "sink", "http"};
static const char *const work_names[] = {"hold", "churn", "echo"};
static const char *const family_names[] = {"any", "ipv4", "ipv6"};
static const char *const close_names[] = {"fin", "rst"};
static const char *const log_level_names[] = {"trace", "debug", "info", "warn", "error", "off"};
static const char *const tls_version_names[] = {"1.0", "1.1", "1.2", "1.3"};
/* OpenSSL's TLS1_x_VERSION values; spelled out so that config needs no OpenSSL headers. */
static const int tls_versions[] = {0x0301, 0x0302, 0x0303, 0x0304};

/* ---- sections ------------------------------------------------------------------------------ */

static int parse_pollers(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"count",          "cpu_affinity", "cpus",        "priority",
                                       "nice",           "rt_policy",    "rt_priority", "select",
                                       "prefer_current", "load_window"};
    zlb_pollers_config_t *p = &cfg->pollers;
    int64_t x;
    int e;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    x = p->count;
    TRY(get_int(c, o, "count", 0, MAX_POLLERS, &x));
    p->count = (int)x;
    TRY(get_bool(c, o, "cpu_affinity", &p->cpu_affinity));

    json_t *cpus = json_object_get(o, "cpus");
    if (cpus && !json_is_null(cpus)) {
        size_t mark = push(c, "cpus");
        char g[64];
        if (!json_is_array(cpus))
            return fail(c, "expected an array of CPU numbers, got %s", got(cpus, g, sizeof(g)));
        if (json_array_size(cpus) > MAX_CPU + 1)
            return fail(c, "at most %d CPUs", MAX_CPU + 1);
        free(p->cpus);
        p->cpus = NULL;
        p->ncpus = 0;
        if (json_array_size(cpus) > 0)
            p->cpus = zlb_xcalloc(json_array_size(cpus), sizeof(int));
        for (size_t i = 0; i < json_array_size(cpus); i++) {
            size_t m2 = zlb_config_path_push_index(&c->path, i);
            TRY(check_int(c, json_array_get(cpus, i), 0, MAX_CPU, &x));
            for (size_t k = 0; k < p->ncpus; k++)
                if (p->cpus[k] == (int)x)
                    return fail(c, "CPU %d is listed twice", (int)x);
            p->cpus[p->ncpus++] = (int)x;
            pop(c, m2);
        }
        pop(c, mark);
    } else if (cpus) {
        free(p->cpus);
        p->cpus = NULL;
        p->ncpus = 0;
    }

    e = (int)p->priority;
    TRY(get_enum(c, o, "priority", priority_names, ZLB_ARRAY_LEN(priority_names), &e));
    p->priority = (zlb_cfg_priority_t)e;
    x = p->nice;
    TRY(get_int(c, o, "nice", -20, 19, &x));
    p->nice = (int)x;
    e = p->rt_policy == SCHED_RR;
    TRY(get_enum(c, o, "rt_policy", rt_policy_names, ZLB_ARRAY_LEN(rt_policy_names), &e));
    p->rt_policy = e ? SCHED_RR : SCHED_FIFO;
    /* 0 means "not set", so that the effective config (which spells every key) reads back. */
    x = p->rt_priority;
    TRY(get_int(c, o, "rt_priority", 0, 99, &x));
    p->rt_priority = (int)x;
    e = p->round_robin;
    TRY(get_enum(c, o, "select", select_names, ZLB_ARRAY_LEN(select_names), &e));
    p->round_robin = e == 1;
    TRY(get_bool(c, o, "prefer_current", &p->prefer_current));
    TRY(get_duration(c, o, "load_window", ZLB_NS_PER_MS, &p->load_window_ns));
    return 0;
}

static int parse_tls(ctx_t *c, const json_t *o, zlb_tls_config_t *t)
{
    static const char *const keys[] = {
        "enabled", "sni",         "verify",      "ca_file",    "ca_dir",
        "alpn",    "min_version", "max_version", "ciphers",    "ciphersuites",
        "groups",  "cert_file",   "key_file",    "resumption", "handshake_timeout"};
    char g[64];
    int e;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    /* Writing a tls object at all means TLS, unless it says otherwise. */
    t->enabled = true;
    TRY(get_bool(c, o, "enabled", &t->enabled));
    TRY(get_string(c, o, "sni", true, &t->sni));
    TRY(get_bool(c, o, "verify", &t->verify));
    TRY(get_string(c, o, "ca_file", true, &t->ca_file));
    TRY(check_file(c, "ca_file", t->ca_file, false));
    TRY(get_string(c, o, "ca_dir", true, &t->ca_dir));
    TRY(check_file(c, "ca_dir", t->ca_dir, true));

    json_t *alpn = json_object_get(o, "alpn");
    if (alpn && !json_is_null(alpn)) {
        size_t mark = push(c, "alpn");
        if (!json_is_array(alpn))
            return fail(c, "expected an array of protocol names, got %s", got(alpn, g, sizeof(g)));
        if (json_array_size(alpn) > MAX_ALPN)
            return fail(c, "at most %d protocol names", MAX_ALPN);
        for (size_t i = 0; i < t->nalpn; i++)
            free(t->alpn[i]);
        free(t->alpn);
        t->alpn = NULL;
        t->nalpn = 0;
        if (json_array_size(alpn) > 0)
            t->alpn = zlb_xcalloc(json_array_size(alpn), sizeof(char *));
        for (size_t i = 0; i < json_array_size(alpn); i++) {
            json_t *s = json_array_get(alpn, i);
            size_t m2 = zlb_config_path_push_index(&c->path, i);
            /* ALPN names travel with a one-byte length. */
            if (!json_is_string(s))
                return fail(c, "expected a protocol name, got %s", got(s, g, sizeof(g)));
            if (json_string_length(s) == 0 || json_string_length(s) > 255 ||
                strlen(json_string_value(s)) != json_string_length(s))
                return fail(c, "a protocol name must be 1..255 bytes without NUL");
            t->alpn[t->nalpn++] = zlb_xstrdup(json_string_value(s));
            pop(c, m2);
        }
        pop(c, mark);
    }

    for (int which = 0; which < 2; which++) {
        const char *key = which ? "max_version" : "min_version";
        int *dst = which ? &t->max_version : &t->min_version;
        json_t *v = json_object_get(o, key);
        if (!v)
            continue;
        if (json_is_null(v)) {
            *dst = 0;
            continue;
        }
        size_t mark = push(c, key);
        TRY(check_enum(c, v, tls_version_names, ZLB_ARRAY_LEN(tls_version_names), &e));
        *dst = tls_versions[e];
        pop(c, mark);
    }
    TRY(get_string(c, o, "ciphers", true, &t->ciphers));
    TRY(get_string(c, o, "ciphersuites", true, &t->ciphersuites));
    TRY(get_string(c, o, "groups", true, &t->groups));
    TRY(get_string(c, o, "cert_file", true, &t->cert_file));
    TRY(check_file(c, "cert_file", t->cert_file, false));
    TRY(get_string(c, o, "key_file", true, &t->key_file));
    TRY(check_file(c, "key_file", t->key_file, false));
    TRY(get_number(c, o, "resumption", 0, 1, "0..1", &t->resumption));
    TRY(get_duration(c, o, "handshake_timeout", 1, &t->handshake_timeout_ns));
    return 0;
}

static void tls_defaults(zlb_tls_config_t *t)
{
    memset(t, 0, sizeof(*t));
    t->verify = true;
    t->handshake_timeout_ns = 5 * ZLB_NS_PER_SEC;
}

static void tls_dispose(zlb_tls_config_t *t)
{
    free(t->sni);
    free(t->ca_file);
    free(t->ca_dir);
    for (size_t i = 0; i < t->nalpn; i++)
        free(t->alpn[i]);
    free(t->alpn);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->groups);
    free(t->cert_file);
    free(t->key_file);
    memset(t, 0, sizeof(*t));
}

static int parse_host(ctx_t *c, const json_t *v, char **out)
{
    char g[64];
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, "expected a host name or IP address, got %s", got(v, g, sizeof(g)));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    /* "[::1]" is what people copy from URLs; the struct holds the bare literal. */
    bool bracketed = len > 2 && s[0] == '[' && s[len - 1] == ']';
    char *host = zlb_xmalloc(len + 1);
    memcpy(host, s + bracketed, len - 2 * bracketed);
    host[len - 2 * bracketed] = '\0';
    /* zlb_parse_host_port knows what a valid host looks like; reuse it rather than repeat it. */
    size_t n = len + 16;
    char *probe = zlb_xmalloc(n);
    bool v6 = strchr(host, ':') != NULL;
    snprintf(probe, n, v6 ? "[%s]:1" : "%s:1", host);
    char *parsed = NULL;
    uint16_t port;
    int rc = zlb_parse_host_port(probe, &parsed, &port);
    free(probe);
    free(parsed);
    if (rc < 0 || strlen(s) != len || (bracketed && !v6)) {
        free(host);
        return fail(c,
                    "invalid host \"%s\" (expected a name, an IPv4 address or an IPv6 address; "
                    "the port goes in \"port\")",
                    s);
    }
    free(*out);
    *out = host;
    return 0;
}

static int parse_target(ctx_t *c, const json_t *o, zlb_target_config_t *t)
{
    static const char *const keys[] = {"host", "port", "weight", "tls"};
    int64_t x;
    char g[64];

    TRY(check_object(c, o));
    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    json_t *host = json_object_get(o, "host");
    if (!host)
        return fail(c, "missing required key 'host'");
    size_t mark = push(c, "host");
    TRY(parse_host(c, host, &t->host));
    pop(c, mark);
    if (!json_object_get(o, "port"))
        return fail(c, "missing required key 'port'");
    x = 0;
    TRY(get_int(c, o, "port", 1, 65535, &x));
    t->port = (uint16_t)x;
    x = t->weight;
    TRY(get_int(c, o, "weight", 1, MAX_WEIGHT, &x));
    t->weight = (uint32_t)x;

    json_t *tls = json_object_get(o, "tls");
    if (tls) {
        mark = push(c, "tls");
        if (json_is_boolean(tls))
            t->tls.enabled = json_is_true(tls);
        else if (json_is_object(tls))
            TRY(parse_tls(c, tls, &t->tls));
        else
            return fail(c, "expected a boolean or an object, got %s", got(tls, g, sizeof(g)));
        pop(c, mark);
    }
    return 0;
}

static int parse_targets(ctx_t *c, const json_t *v, zlb_config_t *cfg)
{
    char g[64];
    size_t mark = push(c, "targets");

    if (!json_is_array(v))
        return fail(c, "expected an array of targets, got %s", got(v, g, sizeof(g)));
    if (json_array_size(v) == 0)
        return fail(c, "must list at least one target");
    if (json_array_size(v) > MAX_TARGETS)
        return fail(c, "at most %d targets", MAX_TARGETS);
    cfg->targets = zlb_xcalloc(json_array_size(v), sizeof(*cfg->targets));
    for (size_t i = 0; i < json_array_size(v); i++) {
        zlb_target_config_t *t = &cfg->targets[i];
        t->weight = 1;
        tls_defaults(&t->tls);
        cfg->ntargets = i + 1;
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        TRY(parse_target(c, json_array_get(v, i), t));
        pop(c, m2);
    }
    pop(c, mark);
    return 0;
}

static int parse_embedded(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"mode", "listen",      "backlog",      "threads",
                                       "tls",  "ca_out_file", "accept_delay", "resumption"};
    zlb_embedded_target_config_t *e = &cfg->embedded_target;
    int64_t x;
    int m;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    m = (int)e->mode;
    TRY(get_enum(c, o, "mode", mode_names, ZLB_ARRAY_LEN(mode_names), &m));
    e->mode = (zlb_target_mode_t)m;
    TRY(get_string(c, o, "listen", false, &e->listen));
    if (json_object_get(o, "listen")) {
        char *host = NULL;
        uint16_t port;
        size_t mark = push(c, "listen");
        if (zlb_parse_host_port(e->listen, &host, &port) < 0)
            return fail(c,
                        "invalid address \"%s\" (expected HOST:PORT, e.g. \"127.0.0.1:0\" or "
                        "\"[::1]:9000\")",
                        e->listen);
        free(host);
        pop(c, mark);
    }
    x = e->backlog;
    TRY(get_int(c, o, "backlog", 1, 1 << 20, &x));
    e->backlog = (int)x;
    x = e->threads;
    TRY(get_int(c, o, "threads", 1, MAX_POLLERS, &x));
    e->threads = (int)x;
    TRY(get_bool(c, o, "tls", &e->tls));
    TRY(get_string(c, o, "ca_out_file", true, &e->ca_out_file));
    TRY(get_duration(c, o, "accept_delay", 0, &e->accept_delay_ns));
    TRY(get_number(c, o, "resumption", 0, 1, "0..1", &e->resumption));
    return 0;
}

static int parse_ramp(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"duration", "start_rate"};
    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(get_duration(c, o, "duration", 0, &cfg->ramp.duration_ns));
    TRY(get_number(c, o, "start_rate", 0, MAX_CONNECT_RATE, "0..1e9", &cfg->ramp.start_rate));
    return 0;
}

static int parse_workload(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {
        "type",        "lifetime",     "reconnect",       "backoff_min",
        "backoff_max", "message_size", "message_interval"};
    zlb_workload_config_t *w = &cfg->workload;
    int t = (int)w->type;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(get_enum(c, o, "type", work_names, ZLB_ARRAY_LEN(work_names), &t));
    w->type = (zlb_work_type_t)t;
    TRY(get_duration(c, o, "lifetime", 1, &w->lifetime_ns));
    TRY(get_bool(c, o, "reconnect", &w->reconnect));
    TRY(get_duration(c, o, "backoff_min", 1, &w->backoff_min_ns));
    TRY(get_duration(c, o, "backoff_max", 1, &w->backoff_max_ns));
    TRY(get_size(c, o, "message_size", 1, MAX_MESSAGE_SIZE, &w->message_size));
    TRY(get_duration(c, o, "message_interval", 0, &w->message_interval_ns));
    return 0;
}

static int parse_keepalive(ctx_t *c, const json_t *o, zlb_socket_config_t *s)
{
    static const char *const keys[] = {"idle", "interval", "count"};
    int64_t x = s->keepalive_count;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    s->keepalive = true;
    /* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds, up to 32767. */
    TRY(get_duration(c, o, "idle", ZLB_NS_PER_SEC, &s->keepalive_idle_ns));
    TRY(get_duration(c, o, "interval", ZLB_NS_PER_SEC, &s->keepalive_interval_ns));
    TRY(get_int(c, o, "count", 1, 127, &x));
    s->keepalive_count = (int)x;
    if (s->keepalive_idle_ns % ZLB_NS_PER_SEC || s->keepalive_idle_ns > 32767 * ZLB_NS_PER_SEC)
        return fail_at(c, "socket.keepalive.idle", "must be whole seconds, 1s..32767s");
    if (s->keepalive_interval_ns % ZLB_NS_PER_SEC ||
        s->keepalive_interval_ns > 32767 * ZLB_NS_PER_SEC)
        return fail_at(c, "socket.keepalive.interval", "must be whole seconds, 1s..32767s");
    return 0;
}

static int parse_socket(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"nodelay", "sndbuf", "rcvbuf", "close", "keepalive"};
    zlb_socket_config_t *s = &cfg->socket;
    int e = (int)s->close;
    char g[64];

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(get_bool(c, o, "nodelay", &s->nodelay));
    TRY(get_size(c, o, "sndbuf", 0, MAX_SOCKBUF, &s->sndbuf));
    TRY(get_size(c, o, "rcvbuf", 0, MAX_SOCKBUF, &s->rcvbuf));
    TRY(get_enum(c, o, "close", close_names, ZLB_ARRAY_LEN(close_names), &e));
    s->close = (zlb_close_mode_t)e;
    json_t *ka = json_object_get(o, "keepalive");
    if (ka) {
        size_t mark = push(c, "keepalive");
        if (json_is_boolean(ka))
            s->keepalive = json_is_true(ka); /* true: the default timings */
        else if (json_is_object(ka))
            TRY(parse_keepalive(c, ka, s));
        else
            return fail(c, "expected an object or a boolean, got %s", got(ka, g, sizeof(g)));
        pop(c, mark);
    }
    return 0;
}

static int parse_control(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"listen", "token_file", "address_file"};
    zlb_control_config_t *ctl = &cfg->control;

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(get_string(c, o, "listen", true, &ctl->listen));
    ctl->enabled = ctl->listen != NULL;
    if (ctl->listen) {
        char *host = NULL;
        uint16_t port;
        size_t mark = push(c, "listen");
        if (zlb_parse_host_port(ctl->listen, &host, &port) < 0)
            return fail(c,
                        "invalid address \"%s\" (expected HOST:PORT, e.g. \"127.0.0.1:8089\"; "
                        "null disables the control port)",
                        ctl->listen);
        free(host);
        pop(c, mark);
    }
    TRY(get_string(c, o, "token_file", true, &ctl->token_file));
    TRY(get_string(c, o, "address_file", true, &ctl->address_file));
    return 0;
}

static int parse_report(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    static const char *const keys[] = {"file", "percentiles"};
    zlb_report_config_t *r = &cfg->report;
    char g[64];

    TRY(check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(get_string(c, o, "file", true, &r->file));
    json_t *pv = json_object_get(o, "percentiles");
    if (!pv)
        return 0;
    size_t mark = push(c, "percentiles");
    if (!json_is_array(pv))
        return fail(c, "expected an array of numbers, got %s", got(pv, g, sizeof(g)));
    size_t n = json_array_size(pv);
    if (n == 0 || n > MAX_PERCENTILES)
        return fail(c, "expected 1..%d percentiles, got %zu", MAX_PERCENTILES, n);
    double *p = zlb_xcalloc(n, sizeof(double));
    free(r->percentiles);
    r->percentiles = p;
    r->npercentiles = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        TRY(check_number(c, json_array_get(pv, i), 0, 100, true, true,
                         "greater than 0 and less than 100", &p[i]));
        for (size_t k = 0; k < i; k++)
            if (p[k] == p[i])
                return fail(c, "percentile %s is listed twice",
                            got(json_array_get(pv, i), g, sizeof(g)));
        /* Reports name a percentile by its digits without the dot (99.9 -> p999): two values
         * with the same digits, or one that takes a fixed key's name, would overwrite each other.
         */
        static const double fixed[] = {50, 90, 99, 99.9};
        char ki[32], kk[32];
        zlb_percentile_key(p[i], ki, sizeof(ki));
        for (size_t k = 0; k < ZLB_ARRAY_LEN(fixed) + i; k++) {
            double other = k < ZLB_ARRAY_LEN(fixed) ? fixed[k] : p[k - ZLB_ARRAY_LEN(fixed)];
            zlb_percentile_key(other, kk, sizeof(kk));
            if (other != p[i] && strcmp(ki, kk) == 0)
                return fail(c, "percentile %g would be reported as %s, the name of %g", p[i], ki,
                            other);
        }
        r->npercentiles = i + 1;
        pop(c, m2);
    }
    pop(c, mark);
    return 0;
}

static int parse_threshold_expr(const char *s, zlb_op_t *op, double *value)
{
    static const struct {
        const char *text;
        zlb_op_t op;
    } ops[] = {{"<=", ZLB_OP_LE}, {">=", ZLB_OP_GE}, {"==", ZLB_OP_EQ},
               {"!=", ZLB_OP_NE}, {"<", ZLB_OP_LT},  {">", ZLB_OP_GT}};
    size_t i;

    while (*s == ' ' || *s == '\t')
        s++;
    for (i = 0; i < ZLB_ARRAY_LEN(ops); i++) {
        size_t n = strlen(ops[i].text);
        if (strncmp(s, ops[i].text, n) == 0) {
            *op = ops[i].op;
            s += n;
            break;
        }
    }
    if (i == ZLB_ARRAY_LEN(ops))
        return -EINVAL;
    while (*s == ' ' || *s == '\t')
        s++;
    const char *end;
    if (strncmp(s, "true", 4) == 0) {
        *value = 1;
        end = s + 4;
    } else if (strncmp(s, "false", 5) == 0) {
        *value = 0;
        end = s + 5;
    } else {
        /* strtod would also take "inf", "nan" and hex; a threshold is a plain decimal. */
        if (!(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9')))
            return -EINVAL;
        for (const char *q = s; *q && *q != ' ' && *q != '\t'; q++)
            if (*q == 'x' || *q == 'X')
                return -EINVAL;
        char *e;
        *value = strtod(s, &e);
        if (e == s || !isfinite(*value))
            return -EINVAL;
        end = e;
    }
    while (*end == ' ' || *end == '\t')
        end++;
    return *end == '\0' ? 0 : -EINVAL;
}

static int parse_thresholds(ctx_t *c, const json_t *o, zlb_config_t *cfg)
{
    const char *key;
    json_t *v;
    char g[64];
    size_t n = json_object_size(o);

    if (n == 0)
        return 0;
    cfg->thresholds = zlb_xcalloc(n, sizeof(*cfg->thresholds));
    json_object_foreach((json_t *)o, key, v)
    {
        zlb_threshold_t *t = &cfg->thresholds[cfg->nthresholds];
        size_t mark = push(c, key);
        if (key[0] == '\0')
            return fail_key(c, "empty metric path");
        if (c->validate_path && !c->validate_path(key))
            return fail_key(c, "unknown metric path '%s'", key);
        if (!json_is_string(v))
            return fail(c, "expected a condition string like \"< 5000\" or \"== false\", got %s",
                        got(v, g, sizeof(g)));
        if (parse_threshold_expr(json_string_value(v), &t->op, &t->value) < 0)
            return fail(c,
                        "invalid condition \"%s\" (expected \"OP VALUE\": OP one of < <= > >= "
                        "== !=, VALUE a number, true or false)",
                        json_string_value(v));
        t->path = zlb_xstrdup(key);
        t->expr = zlb_xstrdup(json_string_value(v));
        cfg->nthresholds++;
        pop(c, mark);
    }
    return 0;
}

/* Expands source_ips into addresses, rejecting overlaps so no address gets twice the load. */
typedef struct src_entry {
    zlb_config_ip_t ip;
    size_t entry; /* index in source_ips, to name the later of two overlapping entries */
} src_entry_t;

static int cmp_src(const void *a, const void *b)
{
    const src_entry_t *x = a, *y = b;
    if (x->ip.family != y->ip.family)
        return x->ip.family < y->ip.family ? -1 : 1;
    int d = memcmp(x->ip.b, y->ip.b, sizeof(x->ip.b));
    if (d)
        return d;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

static int parse_source_ips(ctx_t *c, const json_t *v, zlb_config_t *cfg)
{
    char g[64];
    uint64_t total = 0;
    src_entry_t *all = NULL;
    int rc = 0;
    size_t mark = push(c, "source_ips");

    if (!json_is_array(v))
        return fail(c, "expected an array of addresses or ranges (\"A-B\"), got %s",
                    got(v, g, sizeof(g)));
    size_t n = json_array_size(v);
    if (n == 0) {
        pop(c, mark);
        return 0;
    }
    cfg->source_ips = zlb_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        zlb_config_ip_t first, last;
        uint64_t count;
        const char *why;
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        if (!json_is_string(s))
            return fail(c, "expected an address or a range \"A-B\", got %s", got(s, g, sizeof(g)));
        if (zlb_config_ip_range_parse(json_string_value(s), &first, &last, &count, &why) < 0)
            return fail(c, "invalid source address \"%s\": %s", json_string_value(s), why);
        if (count > ZLB_CONFIG_MAX_SOURCE_ADDRS)
            return fail(c, "range \"%s\" covers more than %u addresses", json_string_value(s),
                        ZLB_CONFIG_MAX_SOURCE_ADDRS);
        total += count;
        if (total > ZLB_CONFIG_MAX_SOURCE_ADDRS)
            return fail(c, "source_ips expand to more than %u addresses",
                        ZLB_CONFIG_MAX_SOURCE_ADDRS);
        cfg->source_ips[cfg->nsource_ips++] = zlb_xstrdup(json_string_value(s));
        pop(c, m2);
    }

    all = zlb_xcalloc((size_t)total, sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        zlb_config_ip_t first, last;
        uint64_t count;
        const char *why;
        zlb_config_ip_range_parse(cfg->source_ips[i], &first, &last, &count, &why);
        for (uint64_t j = 0; j < count; j++, k++) {
            all[k].ip = first;
            all[k].entry = i;
            zlb_config_ip_next(&first);
        }
    }
    cfg->source_addrs = zlb_xcalloc((size_t)total, sizeof(*cfg->source_addrs));
    for (k = 0; k < total; k++)
        zlb_config_ip_to_sockaddr(&all[k].ip, &cfg->source_addrs[k]);
    cfg->nsource = (size_t)total;

    qsort(all, (size_t)total, sizeof(*all), cmp_src);
    for (k = 1; k < total; k++) {
        if (all[k].ip.family == all[k - 1].ip.family &&
            memcmp(all[k].ip.b, all[k - 1].ip.b, sizeof(all[k].ip.b)) == 0) {
            char addr[INET6_ADDRSTRLEN];
            size_t m2 = zlb_config_path_push_index(&c->path, all[k].entry);
            inet_ntop(all[k].ip.family, all[k].ip.b, addr, sizeof(addr));
            rc = fail(c, "address %s is also in source_ips[%zu]", addr, all[k - 1].entry);
            pop(c, m2);
            break;
        }
    }
    free(all);
    pop(c, mark);
    return rc;
}

/* ---- cross-field rules (also after command-line overrides) ------------------------------- */

static bool host_is_ipv6_literal(const char *h)
{
    return strchr(h, ':') != NULL;
}

static bool host_is_ipv4_literal(const char *h)
{
    unsigned char b[4];
    char tmp[INET_ADDRSTRLEN + 1];
    size_t n = strlen(h);
    if (n >= sizeof(tmp))
        return false;
    memcpy(tmp, h, n + 1);
    return inet_pton(AF_INET, tmp, b) == 1;
}

static int check_cross(ctx_t *c, const zlb_config_t *cfg)
{
    char a[32], b[32];
    char path[64];

    if (cfg->connections < 1 || cfg->connections > MAX_CONNECTIONS)
        return fail_at(c, "connections", "expected an integer 1..%d, got %" PRIu64, MAX_CONNECTIONS,
                       cfg->connections);
    if (!(cfg->connect_rate >= 0 && cfg->connect_rate <= MAX_CONNECT_RATE) ||
        (cfg->connect_rate > 0 && cfg->connect_rate < MIN_CONNECT_RATE))
        return fail_at(c, "connect_rate",
                       "expected 0 (unlimited) or a number 0.001..1e9 connections per second");
    if (cfg->pollers.count < 0 || cfg->pollers.count > MAX_POLLERS)
        return fail_at(c, "pollers.count", "expected an integer 0..%d", MAX_POLLERS);
    if (cfg->pollers.priority == ZLB_CFG_PRIO_REALTIME &&
        (cfg->pollers.rt_priority < 1 || cfg->pollers.rt_priority > 99))
        return fail_at(c, "pollers.priority",
                       "priority \"realtime\" needs pollers.rt_priority set to 1..99 (there is no "
                       "default level)");
    if (cfg->duration_ns > 0 && cfg->warmup_ns >= cfg->duration_ns) {
        zlb_format_duration(cfg->warmup_ns, a, sizeof(a));
        zlb_format_duration(cfg->duration_ns, b, sizeof(b));
        return fail_at(c, "warmup", "warmup (%s) must be shorter than duration (%s)", a, b);
    }
    if (cfg->ramp.duration_ns > 0 && cfg->connect_rate == 0)
        return fail_at(c, "ramp.duration",
                       "a ramp needs a connect_rate to rise to (connect_rate is 0: unlimited)");
    if (cfg->ramp.duration_ns > 0 && cfg->ramp.start_rate > cfg->connect_rate)
        return fail_at(c, "ramp.start_rate", "start_rate must not exceed connect_rate");
    if (cfg->workload.backoff_min_ns > cfg->workload.backoff_max_ns)
        return fail_at(c, "workload.backoff_min", "backoff_min must not exceed backoff_max");

    if (cfg->ntargets > 0 && cfg->embedded_target.enabled)
        return fail_at(c, "embedded_target", "use either targets or embedded_target, not both");
    if (cfg->ntargets == 0 && !cfg->embedded_target.enabled)
        return fail_at(c, "targets", "no target: give targets or embedded_target");
    if (cfg->embedded_target.enabled && cfg->workload.type == ZLB_WORK_ECHO &&
        cfg->embedded_target.mode != ZLB_TARGET_MODE_ECHO)
        return fail_at(c, "workload.type",
                       "the echo workload needs a target that echoes; embedded_target.mode is "
                       "\"%s\"",
                       mode_names[cfg->embedded_target.mode]);

    for (size_t i = 0; i < cfg->ntargets; i++) {
        const zlb_target_config_t *t = &cfg->targets[i];
        const zlb_tls_config_t *tls = &t->tls;
        if (t->port == 0) {
            snprintf(path, sizeof(path), "targets[%zu].port", i);
            return fail_at(c, path, "expected an integer 1..65535, got 0");
        }
        if ((cfg->family == ZLB_FAMILY_IPV4 && host_is_ipv6_literal(t->host)) ||
            (cfg->family == ZLB_FAMILY_IPV6 && host_is_ipv4_literal(t->host))) {
            snprintf(path, sizeof(path), "targets[%zu].host", i);
            return fail_at(c, path, "address \"%s\" does not match family \"%s\"", t->host,
                           family_names[cfg->family]);
        }
        if (tls->min_version && tls->max_version && tls->min_version > tls->max_version) {
            snprintf(path, sizeof(path), "targets[%zu].tls.min_version", i);
            return fail_at(c, path, "min_version is above max_version");
        }
        if (tls->key_file && !tls->cert_file) {
            snprintf(path, sizeof(path), "targets[%zu].tls.key_file", i);
            return fail_at(c, path, "key_file needs cert_file");
        }
    }

    for (size_t i = 0; i < cfg->nsource; i++) {
        int fam = cfg->source_addrs[i].ss_family;
        if ((cfg->family == ZLB_FAMILY_IPV4 && fam != AF_INET) ||
            (cfg->family == ZLB_FAMILY_IPV6 && fam != AF_INET6)) {
            /* Name the entry as written when the expansion came from the file. */
            size_t entry = 0;
            for (size_t k = 0, seen = 0; k < cfg->nsource_ips; k++) {
                zlb_config_ip_t f, l;
                uint64_t cnt;
                const char *why;
                if (zlb_config_ip_range_parse(cfg->source_ips[k], &f, &l, &cnt, &why) == 0) {
                    if (i < seen + cnt) {
                        entry = k;
                        break;
                    }
                    seen += cnt;
                }
            }
            snprintf(path, sizeof(path), "source_ips[%zu]", entry);
            return fail_at(c, path, "an %s source address does not match family \"%s\"",
                           fam == AF_INET ? "IPv4" : "IPv6", family_names[cfg->family]);
        }
    }

    /* A source pool that has no address of a literal target's family would be skipped
     * silently for it: the >64k-per-destination spread the user asked for would not happen. */
    for (size_t i = 0; cfg->nsource && i <= cfg->ntargets; i++) {
        char *host = NULL;
        uint16_t port;
        const char *h = NULL;
        if (i < cfg->ntargets)
            h = cfg->targets[i].host;
        else if (cfg->embedded_target.enabled && cfg->embedded_target.listen &&
                 zlb_parse_host_port(cfg->embedded_target.listen, &host, &port) == 0)
            h = host;
        unsigned char buf[sizeof(struct in6_addr)];
        int fam = !h                                 ? 0
                  : inet_pton(AF_INET, h, buf) == 1  ? AF_INET
                  : inet_pton(AF_INET6, h, buf) == 1 ? AF_INET6
                                                     : 0;
        bool match = !fam;
        for (size_t k = 0; !match && k < cfg->nsource; k++)
            match = cfg->source_addrs[k].ss_family == fam;
        free(host);
        if (!match) {
            if (i < cfg->ntargets)
                snprintf(path, sizeof(path), "targets[%zu].host", i);
            else
                snprintf(path, sizeof(path), "embedded_target.listen");
            return fail_at(c, path,
                           "an %s target, but source_ips has no %s address to connect from",
                           fam == AF_INET ? "IPv4" : "IPv6", fam == AF_INET ? "IPv4" : "IPv6");
        }
    }

    /* The report is written at the end: a folder that cannot take it is found now, not after
     * the whole run. */
    if (cfg->report.file) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", cfg->report.file);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
        if (access(dir, W_OK | X_OK) != 0)
            return fail_at(c, "report.file", "cannot write a report in %s: %s", dir,
                           strerror(errno));
    }

    if (cfg->control.enabled && !cfg->control.listen)
        return fail_at(c, "control.listen", "the control port needs a listen address");
    /* Listen addresses may come from the command line too; parse them here as well. */
    const char *listens[2] = {cfg->control.enabled ? cfg->control.listen : NULL,
                              cfg->embedded_target.enabled ? cfg->embedded_target.listen : NULL};
    for (int i = 0; i < 2; i++) {
        char *host = NULL;
        uint16_t port;
        if (!listens[i])
            continue;
        if (zlb_parse_host_port(listens[i], &host, &port) < 0)
            return fail_at(c, i ? "embedded_target.listen" : "control.listen",
                           "invalid address \"%s\" (expected HOST:PORT, e.g. \"127.0.0.1:8089\" "
                           "or \"[::1]:0\")",
                           listens[i]);
        free(host);
    }
    bool level_ok = false;
    for (size_t i = 0; cfg->log_level && i < ZLB_ARRAY_LEN(log_level_names); i++)
        level_ok |= strcmp(cfg->log_level, log_level_names[i]) == 0;
    if (!level_ok)
        return fail_at(c, "log_level",
                       "expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", "
                       "\"off\"");
    return 0;
}

/* ---- the whole file ------------------------------------------------------------------------ */

static int parse_root(ctx_t *c, const json_t *root, zlb_config_t *cfg)
{
    static const char *const keys[] = {
        "$schema",       "pollers",        "targets",         "embedded_target", "connections",
        "connect_rate",  "ramp",           "connect_timeout", "duration",        "warmup",
        "drain_timeout", "workload",       "source_ips",      "family",          "dns_ttl",
        "socket",        "control",        "report",          "thresholds",      "abort_on_fail",
        "abort_grace",   "stats_interval", "log_level"};
    int64_t x;
    int e;

    TRY(check_keys(c, root, keys, ZLB_ARRAY_LEN(keys)));
    json_t *schema = json_object_get(root, "$schema");
    if (schema && !json_is_string(schema)) {
        size_t mark = push(c, "$schema");
        char g[64];
        int rc = fail(c, "expected a string, got %s", got(schema, g, sizeof(g)));
        pop(c, mark);
        return rc;
    }
    TRY(get_section(c, root, "pollers", parse_pollers, cfg));

    json_t *targets = json_object_get(root, "targets");
    if (targets) {
        TRY(parse_targets(c, targets, cfg));
        cfg->embedded_target.enabled = false;
    }
    if (json_object_get(root, "embedded_target")) {
        cfg->embedded_target.enabled = true;
        TRY(get_section(c, root, "embedded_target", parse_embedded, cfg));
    }

    x = (int64_t)cfg->connections;
    TRY(get_int(c, root, "connections", 1, MAX_CONNECTIONS, &x));
    cfg->connections = (uint64_t)x;
    TRY(get_number(c, root, "connect_rate", 0, MAX_CONNECT_RATE, "0..1e9 (0 = unlimited)",
                   &cfg->connect_rate));
    TRY(get_section(c, root, "ramp", parse_ramp, cfg));
    TRY(get_duration(c, root, "connect_timeout", ZLB_NS_PER_MS, &cfg->connect_timeout_ns));
    TRY(get_duration(c, root, "duration", 0, &cfg->duration_ns));
    TRY(get_duration(c, root, "warmup", 0, &cfg->warmup_ns));
    TRY(get_duration(c, root, "drain_timeout", 0, &cfg->drain_timeout_ns));
    TRY(get_section(c, root, "workload", parse_workload, cfg));
    json_t *src = json_object_get(root, "source_ips");
    if (src)
        TRY(parse_source_ips(c, src, cfg));
    e = (int)cfg->family;
    TRY(get_enum(c, root, "family", family_names, ZLB_ARRAY_LEN(family_names), &e));
    cfg->family = (zlb_family_t)e;
    TRY(get_duration(c, root, "dns_ttl", 0, &cfg->dns_ttl_ns));
    TRY(get_section(c, root, "socket", parse_socket, cfg));
    TRY(get_section(c, root, "control", parse_control, cfg));
    TRY(get_section(c, root, "report", parse_report, cfg));
    TRY(get_section(c, root, "thresholds", parse_thresholds, cfg));
    TRY(get_bool(c, root, "abort_on_fail", &cfg->abort_on_fail));
    TRY(get_duration(c, root, "abort_grace", 0, &cfg->abort_grace_ns));
    TRY(get_duration(c, root, "stats_interval", 10 * ZLB_NS_PER_MS, &cfg->stats_interval_ns));
    if (json_object_get(root, "log_level")) {
        e = 0;
        TRY(get_enum(c, root, "log_level", log_level_names, ZLB_ARRAY_LEN(log_level_names), &e));
        free(cfg->log_level);
        cfg->log_level = zlb_xstrdup(log_level_names[e]);
    }
    return check_cross(c, cfg);
}

static bool all_whitespace(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

static int parse_text(const char *text, size_t len, const char *name,
                      zlb_metric_path_cb validate_path, zlb_config_t **out, zlb_config_error_t *err)
{
    ctx_t c = {.name = name ? name : "<config>",
               .text = text,
               .textlen = len,
               .err = err,
               .validate_path = validate_path};
    json_error_t jerr;
    zlb_config_t *cfg = NULL;
    json_t *root = NULL;
    int rc = -EINVAL;

    *out = NULL;
    err->message[0] = '\0';
    /* Some editors start UTF-8 files with a byte order mark; it is not JSON, nor a column. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
        c.text = text;
        c.textlen = len;
    }
    if (all_whitespace(text, len)) {
        set_message(err, "%s: empty file (expected a JSON object)", c.name);
        goto out;
    }
    /* No JSON_DECODE_ANY, no JSON_DISABLE_EOF_CHECK: one object or array, nothing after it. */
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        zlb_config_path_t dup;
        char key[128];
        int line, col;
        if (json_error_code(&jerr) == json_error_duplicate_key &&
            zlb_config_pos_first_duplicate(text, len, &dup, key, sizeof(key), &line, &col) == 0) {
            set_message(err, "%s:%d:%d: %s: duplicate key '%s'", c.name, line, col,
                        dup.truncated ? "(path too long)" : dup.buf, key);
        } else {
            set_message(err, "%s:%d:%d: invalid JSON: %s", c.name, jerr.line, jerr.column,
                        jerr.text);
        }
        goto out;
    }
    if (!json_is_object(root)) {
        int line = 1, col = 1;
        zlb_config_pos_find(text, len, "", false, &line, &col);
        set_message(err, "%s:%d:%d: the top level must be an object, got %s", c.name, line, col,
                    type_name(root));
        goto out;
    }

    cfg = zlb_xmalloc(sizeof(*cfg));
    zlb_config_init_default(cfg);
    rc = parse_root(&c, root, cfg);
    if (rc < 0)
        goto out;
    *out = cfg;
    cfg = NULL;
    rc = 0;
out:
    zlb_config_destroy(cfg);
    json_decref(root);
    return rc;
}

/* ---- public ------------------------------------------------------------------------------- */

void zlb_config_init_default(zlb_config_t *cfg)
{
    static const double percentiles[] = {50, 90, 99, 99.9};

    memset(cfg, 0, sizeof(*cfg));
    cfg->pollers.cpu_affinity = true;
    cfg->pollers.priority = ZLB_CFG_PRIO_NORMAL;
    cfg->pollers.nice = -10;
    cfg->pollers.rt_policy = SCHED_FIFO;
    cfg->pollers.prefer_current = true;
    cfg->pollers.load_window_ns = ZLB_NS_PER_SEC;

    cfg->embedded_target.enabled = true;
    cfg->embedded_target.mode = ZLB_TARGET_MODE_ECHO;
    cfg->embedded_target.listen = zlb_xstrdup("127.0.0.1:0");
    cfg->embedded_target.backlog = 4096;
    cfg->embedded_target.threads = 1;

    cfg->connections = 2000;
    cfg->connect_rate = 5000;
    cfg->connect_timeout_ns = 5 * ZLB_NS_PER_SEC;
    cfg->duration_ns = 10 * ZLB_NS_PER_SEC;
    cfg->drain_timeout_ns = 5 * ZLB_NS_PER_SEC;

    cfg->workload.type = ZLB_WORK_HOLD;
    cfg->workload.lifetime_ns = ZLB_NS_PER_SEC;
    cfg->workload.reconnect = true;
    cfg->workload.backoff_min_ns = 100 * ZLB_NS_PER_MS;
    cfg->workload.backoff_max_ns = 5 * ZLB_NS_PER_SEC;
    cfg->workload.message_size = 64;
    cfg->workload.message_interval_ns = ZLB_NS_PER_SEC;

    cfg->family = ZLB_FAMILY_ANY;
    cfg->dns_ttl_ns = 60 * ZLB_NS_PER_SEC;

    cfg->socket.nodelay = true;
    cfg->socket.close = ZLB_CLOSE_FIN;
    cfg->socket.keepalive_idle_ns = 30 * ZLB_NS_PER_SEC;
    cfg->socket.keepalive_interval_ns = 5 * ZLB_NS_PER_SEC;
    cfg->socket.keepalive_count = 3;

    cfg->control.enabled = true;
    cfg->control.listen = zlb_xstrdup("127.0.0.1:8089");

    cfg->report.file = zlb_xstrdup("zlbench-report.json");
    cfg->report.percentiles = zlb_xmalloc(sizeof(percentiles));
    memcpy(cfg->report.percentiles, percentiles, sizeof(percentiles));
    cfg->report.npercentiles = ZLB_ARRAY_LEN(percentiles);

    cfg->stats_interval_ns = ZLB_NS_PER_SEC;
    cfg->log_level = zlb_xstrdup("info");
}

int zlb_config_parse(const char *text, const char *name, zlb_metric_path_cb validate_path,
                     zlb_config_t **out, zlb_config_error_t *err)
{
    return parse_text(text, strlen(text), name, validate_path, out, err);
}

int zlb_config_load(const char *path, zlb_metric_path_cb validate_path, zlb_config_t **out,
                    zlb_config_error_t *err)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    int rc, fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        set_message(err, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        set_message(err, "%s: cannot stat: %s", path, strerror(-rc));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        set_message(err, "%s: cannot read: %s", path, strerror(-rc));
        goto out;
    }
    /* Size from reading, not from stat: pipes and /proc files report 0. */
    size_t cap = 4096;
    text = zlb_xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_SIZE) {
                rc = -EFBIG;
                set_message(err, "%s: file too large (over %u MiB)", path, MAX_FILE_SIZE >> 20);
                goto out;
            }
            cap *= 2;
            text = zlb_xrealloc(text, cap + 1);
        }
        ssize_t n = read(fd, text + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            set_message(err, "%s: cannot read: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    rc = parse_text(text, len, path, validate_path, out, err);
    if (rc == 0)
        (*out)->source_path = zlb_xstrdup(path);
out:
    free(text);
    close(fd);
    return rc;
}

int zlb_config_check(const zlb_config_t *cfg, zlb_config_error_t *err)
{
    /* No text here: values may come from the command line, so no line:column is claimed. */
    ctx_t c = {.name = cfg->source_path, .err = err};
    err->message[0] = '\0';
    return check_cross(&c, cfg);
}

void zlb_config_dispose(zlb_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->source_path);
    free(cfg->pollers.cpus);
    for (size_t i = 0; i < cfg->ntargets; i++) {
        free(cfg->targets[i].host);
        tls_dispose(&cfg->targets[i].tls);
    }
    free(cfg->targets);
    free(cfg->embedded_target.listen);
    free(cfg->embedded_target.ca_out_file);
    free(cfg->source_addrs);
    for (size_t i = 0; i < cfg->nsource_ips; i++)
        free(cfg->source_ips[i]);
    free(cfg->source_ips);
    free(cfg->control.listen);
    free(cfg->control.token_file);
    free(cfg->control.address_file);
    free(cfg->report.file);
    free(cfg->report.percentiles);
    for (size_t i = 0; i < cfg->nthresholds; i++) {
        free(cfg->thresholds[i].path);
        free(cfg->thresholds[i].expr);
    }
    free(cfg->thresholds);
    free(cfg->log_level);
    memset(cfg, 0, sizeof(*cfg));
}

void zlb_config_destroy(zlb_config_t *cfg)
{
    if (!cfg)
        return;
    zlb_config_dispose(cfg);
    free(cfg);
}
