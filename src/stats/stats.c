/* stats.c -- connection counters, per-poller statistics and their JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "stats/stats_internal.h"

static const char *const fail_names[] = {
    [ZLB_FAIL_DNS] = "dns",
    [ZLB_FAIL_REFUSED] = "refused",
    [ZLB_FAIL_TIMEOUT] = "timeout",
    [ZLB_FAIL_RESET] = "reset",
    [ZLB_FAIL_EOF] = "eof",
    [ZLB_FAIL_UNREACHABLE] = "unreachable",
    [ZLB_FAIL_ADDR_UNAVAILABLE] = "addr_unavailable",
    [ZLB_FAIL_FD_LIMIT] = "fd_limit",
    [ZLB_FAIL_NO_BUFFERS] = "no_buffers",
    [ZLB_FAIL_TLS_HANDSHAKE] = "tls_handshake",
    [ZLB_FAIL_TLS_VERIFY] = "tls_verify",
    [ZLB_FAIL_PROTOCOL] = "protocol",
    [ZLB_FAIL_OTHER] = "other",
    [ZLB_FAIL_CANCELLED] = "cancelled",
};

static const char *const lat_names[] = {
    [ZLB_LAT_CONNECT] = "connect",
    [ZLB_LAT_CONNECT_SERVICE] = "connect_service",
    [ZLB_LAT_DNS] = "dns",
    [ZLB_LAT_SCHEDULE_LAG] = "schedule_lag",
    [ZLB_LAT_SEND_LAG] = "send_lag",
    [ZLB_LAT_TLS_FULL] = "tls_handshake_full",
    [ZLB_LAT_TLS_RESUMED] = "tls_handshake_resumed",
    [ZLB_LAT_FIRST_BYTE] = "first_byte",
    [ZLB_LAT_MESSAGE_RT] = "message_rt",
    [ZLB_LAT_MESSAGE_SERVICE] = "message_service",
    [ZLB_LAT_HTTP_FIRST_BYTE] = "http_first_byte",
    [ZLB_LAT_HTTP_RESPONSE] = "http_response",
    [ZLB_LAT_HTTP_SERVICE] = "http_service",
};

/* A reason or phase added to the header without a name here fails the build, not a report. */
_Static_assert(ZLB_ARRAY_LEN(fail_names) == ZLB_FAIL__COUNT, "a zlb_fail_t has no name");
_Static_assert(ZLB_ARRAY_LEN(lat_names) == ZLB_LAT__COUNT, "a zlb_lat_t has no name");

const char *zlb_fail_name(zlb_fail_t f)
{
    return (unsigned)f < ZLB_FAIL__COUNT ? fail_names[f] : "unknown";
}

const char *zlb_lat_name(zlb_lat_t l)
{
    return (unsigned)l < ZLB_LAT__COUNT ? lat_names[l] : "unknown";
}

/* ---- counters ----------------------------------------------------------------------------- */

static uint64_t sum_reasons(const uint64_t *a)
{
    uint64_t n = 0;
    for (int i = 0; i < ZLB_FAIL__COUNT; i++)
        n += a[i];
    return n;
}

uint64_t zlb_counters_failed_before_total(const zlb_counters_t *c)
{
    return sum_reasons(c->failed_before);
}

uint64_t zlb_counters_failed_after_total(const zlb_counters_t *c)
{
    return sum_reasons(c->failed_after);
}

uint64_t zlb_counters_failed_total(const zlb_counters_t *c)
{
    return sum_reasons(c->failed_before) + sum_reasons(c->failed_after);
}

static uint64_t sum_array(const uint64_t *a, int n)
{
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += a[i];
    return s;
}

bool zlb_counters_balanced(const zlb_counters_t *c)
{
    return c->attempted == c->established + zlb_counters_failed_before_total(c) + c->in_flight &&
           c->established ==
               c->closed_by_us + c->closed_by_peer + zlb_counters_failed_after_total(c) + c->open &&
           sum_array(c->tls_fail_reason, ZLB_TLS_REASONS_MAX) ==
               c->failed_before[ZLB_FAIL_TLS_HANDSHAKE] + c->failed_after[ZLB_FAIL_TLS_HANDSHAKE] &&
           sum_array(c->tls_verify_code, ZLB_TLS_VERIFY_CODES_MAX) ==
               c->failed_before[ZLB_FAIL_TLS_VERIFY] + c->failed_after[ZLB_FAIL_TLS_VERIFY] &&
           c->requests_sent == c->responses + c->requests_failed + c->requests_in_flight &&
           sum_array(c->http_status, ZLB_HTTP_STATUS_SLOTS) == c->responses;
}

void zlb_counters_add(zlb_counters_t *dst, const zlb_counters_t *src)
{
    dst->attempted += src->attempted;
    dst->established += src->established;
    dst->in_flight += src->in_flight;
    dst->open += src->open;
    dst->closed_by_us += src->closed_by_us;
    dst->closed_by_peer += src->closed_by_peer;
    for (int i = 0; i < ZLB_FAIL__COUNT; i++) {
        dst->failed_before[i] += src->failed_before[i];
        dst->failed_after[i] += src->failed_after[i];
    }
    dst->bytes_in += src->bytes_in;
    dst->bytes_out += src->bytes_out;
    dst->messages += src->messages;
    dst->tls_handshakes += src->tls_handshakes;
    dst->tls_resumed += src->tls_resumed;
    dst->scheduled += src->scheduled;
    dst->stalled += src->stalled;
    for (int i = 0; i < ZLB_TLS_REASONS_MAX; i++)
        dst->tls_fail_reason[i] += src->tls_fail_reason[i];
    for (int i = 0; i < ZLB_TLS_VERIFY_CODES_MAX; i++)
        dst->tls_verify_code[i] += src->tls_verify_code[i];
    dst->requests_sent += src->requests_sent;
    dst->responses += src->responses;
    dst->requests_failed += src->requests_failed;
    dst->requests_in_flight += src->requests_in_flight;
    dst->requests_queued += src->requests_queued;
    for (int i = 0; i < ZLB_HTTP_STATUS_SLOTS; i++)
        dst->http_status[i] += src->http_status[i];
    for (int i = 0; i < ZLB_HTTP_ERRORS_MAX; i++)
        dst->http_errors[i] += src->http_errors[i];
}

/* ---- per-poller statistics ---------------------------------------------------------------- */

void zlb_stats_init(zlb_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        s->lat[i] = zlb_hist_create_latency();
}

void zlb_stats_dispose(zlb_stats_t *s)
{
    for (int i = 0; i < ZLB_LAT__COUNT; i++) {
        zlb_hist_destroy(s->lat[i]);
        s->lat[i] = NULL;
    }
}

/* open and in_flight are gauges of connections that exist now, not events of the period, so
 * they survive. The price: after a reset, attempted/established count only the period while
 * the gauges still include older connections, so zlb_counters_balanced() holds for cumulative
 * totals but not for period figures. Reports therefore carry both. */
void zlb_stats_reset_period(zlb_stats_t *s)
{
    zlb_counters_t *c = &s->c;
    uint64_t open = c->open, in_flight = c->in_flight;
    uint64_t rq_flight = c->requests_in_flight, rq_queued = c->requests_queued;
    memset(c, 0, sizeof(*c));
    c->open = open;
    c->in_flight = in_flight;
    c->requests_in_flight = rq_flight;
    c->requests_queued = rq_queued;
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        if (s->lat[i])
            zlb_hist_reset(s->lat[i]);
}

/* dst may be zeroed memory instead of an initialised one: missing histograms are created with
 * src's layout, which lets a snapshot be filled without a separate init. */
static zlb_hist_t *hist_like(zlb_hist_t **slot, const zlb_hist_t *src)
{
    if (!*slot && zlb_hist_create(src->highest, src->sigfigs, slot) != 0)
        zlb_fatal("out of memory for a histogram");
    return *slot;
}

void zlb_stats_copy(zlb_stats_t *dst, const zlb_stats_t *src)
{
    if (dst == src)
        return;
    dst->c = src->c;
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        if (zlb_hist_copy(hist_like(&dst->lat[i], src->lat[i]), src->lat[i]) != 0)
            zlb_fatal("histogram layouts differ for %s", lat_names[i]);
}

void zlb_stats_add(zlb_stats_t *dst, const zlb_stats_t *src)
{
    zlb_counters_add(&dst->c, &src->c);
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        if (zlb_hist_add(hist_like(&dst->lat[i], src->lat[i]), src->lat[i]) != 0)
            zlb_fatal("histogram layouts differ for %s", lat_names[i]);
}

static void sub_counter(uint64_t *dst, uint64_t src, const char *what)
{
    if (src > *dst)
        zlb_fatal("counter %s went backwards: %" PRIu64 " < %" PRIu64, what, *dst, src);
    *dst -= src;
}

/* src must be an earlier state of dst (a period start): anything else is a broken invariant. */
void zlb_stats_sub(zlb_stats_t *dst, const zlb_stats_t *src)
{
    zlb_counters_t *d = &dst->c;
    const zlb_counters_t *s = &src->c;
    sub_counter(&d->attempted, s->attempted, "attempted");
    sub_counter(&d->established, s->established, "established");
    sub_counter(&d->closed_by_us, s->closed_by_us, "closed_by_us");
    sub_counter(&d->closed_by_peer, s->closed_by_peer, "closed_by_peer");
    for (int i = 0; i < ZLB_FAIL__COUNT; i++) {
        sub_counter(&d->failed_before[i], s->failed_before[i], fail_names[i]);
        sub_counter(&d->failed_after[i], s->failed_after[i], fail_names[i]);
    }
    sub_counter(&d->bytes_in, s->bytes_in, "bytes_in");
    sub_counter(&d->bytes_out, s->bytes_out, "bytes_out");
    sub_counter(&d->messages, s->messages, "messages");
    sub_counter(&d->tls_handshakes, s->tls_handshakes, "tls_handshakes");
    sub_counter(&d->tls_resumed, s->tls_resumed, "tls_resumed");
    sub_counter(&d->scheduled, s->scheduled, "scheduled");
    sub_counter(&d->stalled, s->stalled, "stalled");
    for (int i = 0; i < ZLB_TLS_REASONS_MAX; i++)
        sub_counter(&d->tls_fail_reason[i], s->tls_fail_reason[i], "tls_fail_reason");
    for (int i = 0; i < ZLB_TLS_VERIFY_CODES_MAX; i++)
        sub_counter(&d->tls_verify_code[i], s->tls_verify_code[i], "tls_verify_code");
    sub_counter(&d->requests_sent, s->requests_sent, "requests_sent");
    sub_counter(&d->responses, s->responses, "responses");
    sub_counter(&d->requests_failed, s->requests_failed, "requests_failed");
    for (int i = 0; i < ZLB_HTTP_STATUS_SLOTS; i++)
        sub_counter(&d->http_status[i], s->http_status[i], "http_status");
    for (int i = 0; i < ZLB_HTTP_ERRORS_MAX; i++)
        sub_counter(&d->http_errors[i], s->http_errors[i], "http_errors");
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        if (zlb_hist_sub(hist_like(&dst->lat[i], src->lat[i]), src->lat[i]) != 0)
            zlb_fatal("histogram %s is not an earlier state of the one subtracted from",
                      lat_names[i]);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static json_t *u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* Every reason is listed, zeros included, so consumers can rely on the keys. b may be NULL. */
static json_t *fail_object(const uint64_t *a, const uint64_t *b)
{
    json_t *o = json_object();
    zlb_stats_put(o, "total", u64(sum_reasons(a) + (b ? sum_reasons(b) : 0)));
    for (int i = 0; i < ZLB_FAIL__COUNT; i++)
        zlb_stats_put(o, fail_names[i], u64(a[i] + (b ? b[i] : 0)));
    return o;
}

/* The report's "connections" object, one row per scalar key in the order it is written. Writing,
 * reading back and checking a threshold path all walk these rows: a counter added to the report
 * is a row here (and a field of zlb_counters_t). Negative offsets are the keys that are not a
 * field: the run's target and "closed", the sum of the two closed counters. */
enum { KEY_TARGET = -1, KEY_CLOSED = -2 };
static const struct counter_key {
    const char *key;
    long off;
    bool optional; /* read back as 0 when absent: a key added after reports were written */
} counter_keys[] = {
    {"target", KEY_TARGET, false},
    {"attempted", offsetof(zlb_counters_t, attempted), false},
    {"established", offsetof(zlb_counters_t, established), false},
    {"open", offsetof(zlb_counters_t, open), false},
    {"in_flight", offsetof(zlb_counters_t, in_flight), false},
    {"closed", KEY_CLOSED, false},
    {"closed_by_us", offsetof(zlb_counters_t, closed_by_us), false},
    {"closed_by_peer", offsetof(zlb_counters_t, closed_by_peer), false},
    {"stalled", offsetof(zlb_counters_t, stalled), true},
};

/* The failure breakdowns: both phases together, then each alone. */
static const char *const fail_groups[] = {"failed", "failed_before_established",
                                          "failed_after_established"};

static uint64_t *counter_field(zlb_counters_t *c, long off)
{
    return (uint64_t *)((char *)c + off);
}

json_t *zlb_counters_to_json(const zlb_counters_t *c, uint64_t target)
{
    json_t *o = json_object();
    for (size_t i = 0; i < ZLB_ARRAY_LEN(counter_keys); i++) {
        long off = counter_keys[i].off;
        uint64_t v = off == KEY_TARGET   ? target
                     : off == KEY_CLOSED ? c->closed_by_us + c->closed_by_peer
                                         : *counter_field((zlb_counters_t *)c, off);
        zlb_stats_put(o, counter_keys[i].key, u64(v));
    }
    zlb_stats_put(o, fail_groups[0], fail_object(c->failed_before, c->failed_after));
    zlb_stats_put(o, fail_groups[1], fail_object(c->failed_before, NULL));
    zlb_stats_put(o, fail_groups[2], fail_object(c->failed_after, NULL));
    return o;
}

static int read_u64(const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EINVAL;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Reads one failure breakdown into a (b == NULL) or checks it against a + b; its total must be
 * the sum of its reasons either way. */
static int read_fail_object(const json_t *o, const char *group, uint64_t *a, const uint64_t *b,
                            char *err, size_t errlen)
{
    uint64_t total, v, sum = 0;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: missing or not an object", group);
        return -EINVAL;
    }
    for (int i = 0; i < ZLB_FAIL__COUNT; i++) {
        if (read_u64(o, fail_names[i], &v) != 0) {
            snprintf(err, errlen, "%s.%s: missing or not a non-negative integer", group,
                     fail_names[i]);
            return -EINVAL;
        }
        if (b && v != a[i] + b[i]) {
            snprintf(err, errlen, "%s.%s: %llu, but before + after established is %llu", group,
                     fail_names[i], (unsigned long long)v, (unsigned long long)(a[i] + b[i]));
            return -EINVAL;
        }
        if (!b)
            a[i] = v;
        sum += v;
    }
    if (read_u64(o, "total", &total) != 0 || total != sum) {
        snprintf(err, errlen, "%s.total: not the sum of its reasons (%llu)", group,
                 (unsigned long long)sum);
        return -EINVAL;
    }
    return 0;
}

int zlb_counters_from_json(const json_t *o, zlb_counters_t *c, uint64_t *target, char *err,
                           size_t errlen)
{
    uint64_t closed = 0, v;
    memset(c, 0, sizeof(*c));
    if (!json_is_object(o)) {
        snprintf(err, errlen, "missing or not an object");
        return -EINVAL;
    }
    for (size_t i = 0; i < ZLB_ARRAY_LEN(counter_keys); i++) {
        long off = counter_keys[i].off;
        if (counter_keys[i].optional && !json_object_get(o, counter_keys[i].key))
            continue;
        if (read_u64(o, counter_keys[i].key, &v) != 0) {
            snprintf(err, errlen, "%s: missing or not a non-negative integer", counter_keys[i].key);
            return -EINVAL;
        }
        if (off == KEY_TARGET) {
            if (target)
                *target = v;
        } else if (off == KEY_CLOSED) {
            closed = v;
        } else {
            *counter_field(c, off) = v;
        }
    }
    if (closed != c->closed_by_us + c->closed_by_peer) {
        snprintf(err, errlen, "closed: %llu, but closed_by_us + closed_by_peer is %llu",
                 (unsigned long long)closed,
                 (unsigned long long)(c->closed_by_us + c->closed_by_peer));
        return -EINVAL;
    }
    if (read_fail_object(json_object_get(o, fail_groups[1]), fail_groups[1], c->failed_before, NULL,
                         err, errlen) != 0 ||
        read_fail_object(json_object_get(o, fail_groups[2]), fail_groups[2], c->failed_after, NULL,
                         err, errlen) != 0 ||
        read_fail_object(json_object_get(o, fail_groups[0]), fail_groups[0], c->failed_before,
                         c->failed_after, err, errlen) != 0)
        return -EINVAL;
    return 0;
}

bool zlb_counters_json_path_valid(const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot) {
        for (size_t i = 0; i < ZLB_ARRAY_LEN(counter_keys); i++)
            if (strcmp(path, counter_keys[i].key) == 0)
                return true;
        return false;
    }
    bool group = false;
    for (size_t i = 0; i < ZLB_ARRAY_LEN(fail_groups); i++)
        group |= strlen(fail_groups[i]) == (size_t)(dot - path) &&
                 strncmp(path, fail_groups[i], (size_t)(dot - path)) == 0;
    if (!group)
        return false;
    if (strcmp(dot + 1, "total") == 0)
        return true;
    for (int f = 0; f < ZLB_FAIL__COUNT; f++)
        if (strcmp(dot + 1, fail_names[f]) == 0)
            return true;
    return false;
}

json_t *zlb_stats_latency_json(const zlb_stats_t *s, const double *percentiles, size_t n)
{
    json_t *o = json_object();
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        zlb_stats_put(o, lat_names[i], zlb_hist_summary_json(s->lat[i], percentiles, n));
    return o;
}

json_t *zlb_stats_histograms_json(const zlb_stats_t *s)
{
    json_t *o = json_object();
    for (int i = 0; i < ZLB_LAT__COUNT; i++)
        zlb_stats_put(o, lat_names[i], zlb_hist_to_json(s->lat[i]));
    return o;
}
