/* stats.h -- log-linear latency histograms, connection counters, snapshots and their JSON. */
#ifndef ZLB_STATS_H
#define ZLB_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"

/* ---- histogram ------------------------------------------------------------------------------ */

/* HDR-style log-linear histogram of uint64 values (ns). Buckets double in width; each holds a
 * fixed number of linear sub-buckets, so the relative error is bounded by the significant
 * digits at every magnitude. record() is O(1), branch-light and allocation-free. */
typedef struct zlb_hist zlb_hist_t;

/** Creates a histogram tracking 1..highest with `sigfigs` (1..5) significant digits. Values
 * above highest are clamped to highest and counted in `clamped`. 0 or -EINVAL/-ENOMEM. */
int zlb_hist_create(uint64_t highest, int sigfigs, zlb_hist_t **out);
/** The default for latencies: 1 ns .. 2^40 ns (~18 min), 3 significant digits. Fatal on OOM. */
zlb_hist_t *zlb_hist_create_latency(void);
void zlb_hist_destroy(zlb_hist_t *h);
/** Records one value. Owner thread only. Returns false when the value was clamped. */
bool zlb_hist_record(zlb_hist_t *h, uint64_t value);
/** Records `count` occurrences of value. */
bool zlb_hist_record_n(zlb_hist_t *h, uint64_t value, uint64_t count);
void zlb_hist_reset(zlb_hist_t *h);
/** dst += src. Both must have the same layout (highest, sigfigs). 0 or -EINVAL. */
int zlb_hist_add(zlb_hist_t *dst, const zlb_hist_t *src);
/** dst -= src, for "this period" = "now" minus "at the period's start" (src must be an earlier
 * copy of dst: every count <= dst's). min/max stay dst's. 0 or -EINVAL. */
int zlb_hist_sub(zlb_hist_t *dst, const zlb_hist_t *src);
/** Copies src into dst (same layout). */
int zlb_hist_copy(zlb_hist_t *dst, const zlb_hist_t *src);

uint64_t zlb_hist_count(const zlb_hist_t *h);
uint64_t zlb_hist_clamped(const zlb_hist_t *h);
uint64_t zlb_hist_min(const zlb_hist_t *h); /* 0 when empty */
uint64_t zlb_hist_max(const zlb_hist_t *h); /* 0 when empty */
double zlb_hist_mean(const zlb_hist_t *h);  /* 0 when empty */
double zlb_hist_stddev(const zlb_hist_t *h);
/** The value at percentile p (0..100): the highest value equivalent to the bucket where the
 * cumulative count first reaches p% (as HdrHistogram). 0 when empty. */
uint64_t zlb_hist_percentile(const zlb_hist_t *h, double p);
/** Lowest and highest value that land in the same bucket as v. */
uint64_t zlb_hist_lowest_equivalent(const zlb_hist_t *h, uint64_t v);
uint64_t zlb_hist_highest_equivalent(const zlb_hist_t *h, uint64_t v);
/** Number of values <= v (for cumulative Prometheus buckets). */
uint64_t zlb_hist_count_le(const zlb_hist_t *h, uint64_t v);
/** zlb_hist_count_le for each of n ascending values at once, in one walk over the slots. */
void zlb_hist_count_le_sorted(const zlb_hist_t *h, const uint64_t *v, size_t n, uint64_t *out);

/** Compact, exact serialisation: {"v":1,"highest":..,"sigfigs":3,"counts":"<run-length
 * encoded sparse counts>"} ... New reference. */
json_t *zlb_hist_to_json(const zlb_hist_t *h);
/** Rebuilds a histogram from zlb_hist_to_json output. 0 or -EINVAL (with *err set to a static
 * message). */
int zlb_hist_from_json(const json_t *j, zlb_hist_t **out, const char **err);
/** An exact binary image of h for another process of the same build (the --processes
 * children's snapshots): at most zlb_hist_image_max(h) bytes written to out; returns the length.
 * No allocation. */
size_t zlb_hist_image_max(const zlb_hist_t *h);
size_t zlb_hist_image(const zlb_hist_t *h, uint8_t *out);
/** Replaces h's contents (same layout as the image's source) with the image at p (len bytes
 * available); *used says how many it took. 0, or -EINVAL (h left empty) when the image is
 * truncated or inconsistent. */
int zlb_hist_from_image(zlb_hist_t *h, const uint8_t *p, size_t len, size_t *used);
/** Summary object in µs: {count, min, mean, p50, p90, p99, p999, max} plus "p<X>" for each of
 * the extra percentiles given (e.g. 99.99 -> "p9999"). Never NaN/Inf. New reference. */
json_t *zlb_hist_summary_json(const zlb_hist_t *h, const double *percentiles, size_t n);

/* ---- connection counters -------------------------------------------------------------------- */

/* Why an attempt or an established connection failed. Names are the JSON keys. */
typedef enum {
    ZLB_FAIL_DNS,
    ZLB_FAIL_REFUSED,
    ZLB_FAIL_TIMEOUT,
    ZLB_FAIL_RESET,
    ZLB_FAIL_EOF,
    ZLB_FAIL_UNREACHABLE,
    ZLB_FAIL_ADDR_UNAVAILABLE,
    ZLB_FAIL_FD_LIMIT,
    ZLB_FAIL_NO_BUFFERS,
    ZLB_FAIL_TLS_HANDSHAKE,
    ZLB_FAIL_TLS_VERIFY,
    ZLB_FAIL_PROTOCOL,
    ZLB_FAIL_OTHER,
    ZLB_FAIL_CANCELLED, /* an attempt still in flight when the run stopped */
    ZLB_FAIL__COUNT
} zlb_fail_t;

/** "dns", "refused", ... */
const char *zlb_fail_name(zlb_fail_t f);

/* The phases whose latency is recorded, each its own histogram. Scheduled actions come in pairs:
 * the corrected figure from the INTENDED time (the headline, what thresholds and the summary use:
 * a generator or target that falls behind shows as latency, not as fewer samples) and the
 * service figure from the moment the action really started. The lateness phases (schedule_lag,
 * send_lag) are the difference: how late we were. Waits the configuration asks for (a
 * reconnect's backoff, the reconnect token bucket) move the intended time and are not lateness. */
typedef enum {
    ZLB_LAT_CONNECT,         /* attempt's intended start to ESTABLISHED (TCP; TLS apart) */
    ZLB_LAT_CONNECT_SERVICE, /* connect() call to ESTABLISHED (TCP) */
    ZLB_LAT_DNS,             /* resolver request to answer */
    ZLB_LAT_SCHEDULE_LAG,    /* actual start of an attempt minus its intended time */
    ZLB_LAT_SEND_LAG,    /* actual write of a scheduled message/request minus its intended time */
    ZLB_LAT_TLS_FULL,    /* full TLS handshake */
    ZLB_LAT_TLS_RESUMED, /* resumed TLS handshake */
    ZLB_LAT_FIRST_BYTE,  /* established to first byte read */
    ZLB_LAT_MESSAGE_RT,  /* echo: intended send time to the echo fully read */
    ZLB_LAT_MESSAGE_SERVICE, /* echo: actual write to the echo fully read */
    ZLB_LAT_HTTP_FIRST_BYTE, /* http: intended send time to the response's first byte */
    ZLB_LAT_HTTP_RESPONSE,   /* http: intended send time to the response's end */
    ZLB_LAT_HTTP_SERVICE,    /* http: actual write to the response's end */
    ZLB_LAT__COUNT
} zlb_lat_t;

/** "connect", "dns", "schedule_lag", "tls_handshake_full", ... (the latency_us keys) */
const char *zlb_lat_name(zlb_lat_t l);

/* Sizes of the TLS failure breakdowns below. Stats knows nothing of TLS: the indexes are the tls
 * module's reason enum and X509 verify results, and it names them when a report is rendered. */
#define ZLB_TLS_REASONS_MAX 16       /* >= the tls module's reason count (checked there) */
#define ZLB_TLS_VERIFY_CODES_MAX 128 /* verify results >= 127 are counted at 127 ("other") */

/* HTTP breakdowns (stats knows nothing of HTTP: the http workload fills them and the report names
 * them). Status codes by value, 100..599 (anything else at 0); errors by kind: the http
 * module's zlb_http_error_t, then the workload's own kinds from ZLB_HTTP_ERR_COUNT on. */
#define ZLB_HTTP_STATUS_SLOTS 600
#define ZLB_HTTP_ERRORS_MAX 16

/* Counters of one poller (or a merge of several). Plain integers: each poller owns its copy
 * and only its thread writes it; readers get copies through snapshots. */
typedef struct zlb_counters {
    uint64_t attempted; /* connect() calls made (incl. ones that failed synchronously) */
    uint64_t established;
    uint64_t in_flight; /* attempted, not yet established nor failed */
    uint64_t open;      /* established and not yet closed */
    uint64_t closed_by_us;
    uint64_t closed_by_peer;
    uint64_t failed_before[ZLB_FAIL__COUNT]; /* failed before being established */
    uint64_t failed_after[ZLB_FAIL__COUNT];  /* established, then failed */
    uint64_t bytes_in, bytes_out;
    uint64_t messages;       /* workload round trips / requests completed */
    uint64_t tls_handshakes; /* completed */
    uint64_t tls_resumed;
    uint64_t scheduled; /* attempts handed to this poller by the scheduler */
    uint64_t stalled;   /* stream: stalls (no data moved for the stall timeout), each once */
    /* Why TLS failed, before or after establishment: sum(tls_fail_reason) ==
     * failed_before[tls_handshake] + failed_after[tls_handshake] and sum(tls_verify_code) ==
     * failed_before[tls_verify] + failed_after[tls_verify]. */
    uint64_t tls_fail_reason[ZLB_TLS_REASONS_MAX];      /* by zlb_tls_reason_t */
    uint64_t tls_verify_code[ZLB_TLS_VERIFY_CODES_MAX]; /* by X509_V_ERR_* (127: 127 and up) */
    /* Requests (the http workload): requests_sent == responses + requests_failed +
     * requests_in_flight at every moment. requests_queued: due by the schedule but waiting for
     * a busy connection (a level, like in_flight; not yet sent). */
    uint64_t requests_sent, responses, requests_failed, requests_in_flight, requests_queued;
    uint64_t http_status[ZLB_HTTP_STATUS_SLOTS]; /* responses by status code */
    uint64_t http_errors[ZLB_HTTP_ERRORS_MAX];   /* failed requests and protocol errors by kind */
} zlb_counters_t;

uint64_t zlb_counters_failed_total(const zlb_counters_t *c);
uint64_t zlb_counters_failed_before_total(const zlb_counters_t *c);
uint64_t zlb_counters_failed_after_total(const zlb_counters_t *c);
/** attempted == established + failed_before + in_flight and
 * established == closed_by_us + closed_by_peer + failed_after + open, the TLS breakdowns
 * add up to their failure counts, and requests_sent == responses + requests_failed +
 * requests_in_flight (see zlb_counters_t). */
bool zlb_counters_balanced(const zlb_counters_t *c);
void zlb_counters_add(zlb_counters_t *dst, const zlb_counters_t *src);

/* ---- per-poller statistics and snapshots ----------------------------------------------------- */

typedef struct zlb_stats {
    zlb_counters_t c;
    zlb_hist_t *lat[ZLB_LAT__COUNT]; /* owned */
} zlb_stats_t;

/** Allocates the histograms. Fatal on OOM (fixed, small). */
void zlb_stats_init(zlb_stats_t *s);
void zlb_stats_dispose(zlb_stats_t *s);
/** Zeroes counters that describe a period (not open/in_flight) and all histograms. */
void zlb_stats_reset_period(zlb_stats_t *s);
void zlb_stats_copy(zlb_stats_t *dst, const zlb_stats_t *src);
void zlb_stats_add(zlb_stats_t *dst, const zlb_stats_t *src);
/** dst -= src for the period counters and histograms (open/in_flight keep dst's values). */
void zlb_stats_sub(zlb_stats_t *dst, const zlb_stats_t *src);
/** Records a latency; clamps silently (the clamp count is kept in the histogram). */
static inline void zlb_stats_record(zlb_stats_t *s, zlb_lat_t l, uint64_t ns)
{
    zlb_hist_record(s->lat[l], ns);
}

/** {"target":..,"attempted":..,"established":..,"open":..,"in_flight":..,"closed":..,
 * "closed_by_us":..,"closed_by_peer":..,"failed":{"total":..,"<reason>":n,...},
 * "failed_before_established":{...},"failed_after_established":{...}}. target may be 0. */
json_t *zlb_counters_to_json(const zlb_counters_t *c, uint64_t target);
/** The inverse of zlb_counters_to_json: reads a report's "connections" object into c (and its
 * "target" into *target, if not NULL), checking that every key is there as a non-negative
 * integer and that the derived keys (closed, failed.*, the totals) agree with the others.
 * 0, or -EINVAL with err set to "key: what is wrong". Does not check zlb_counters_balanced. */
int zlb_counters_from_json(const json_t *o, zlb_counters_t *c, uint64_t *target, char *err,
                           size_t errlen);
/** True when path names a number that zlb_counters_to_json writes, relative to the object
 * ("established", "failed.refused", "failed_after_established.total"). */
bool zlb_counters_json_path_valid(const char *path);
/** {"connect":{summary},...} for every phase (empty phases included, count 0). */
json_t *zlb_stats_latency_json(const zlb_stats_t *s, const double *percentiles, size_t n);
/** {"connect":<serialised>,...}: the full histograms for reports. */
json_t *zlb_stats_histograms_json(const zlb_stats_t *s);

/* ---- Prometheus text format 0.0.4 ------------------------------------------------------------ */

/* Bucket bounds (`le`, seconds) for exposed histograms: a log-linear ladder of two-digit
 * mantissas per decade (10, 11, .., 19, 20, 22, .., 86, 94) whose steps are each at most 10 %
 * wide, so histogram_quantile's interpolation inside a bucket is off by less than that. The
 * labels are exact decimals of the ns bounds (no float noise). */
#define ZLB_PROM_BUCKETS_MAX 320
#define ZLB_PROM_DEFAULT_MIN_NS 10000ull        /* 10 µs */
#define ZLB_PROM_DEFAULT_MAX_NS 100000000000ull /* 100 s */
typedef struct zlb_prom_buckets {
    size_t n;
    uint64_t ns[ZLB_PROM_BUCKETS_MAX]; /* ascending */
    char le[ZLB_PROM_BUCKETS_MAX][24];
} zlb_prom_buckets_t;

/** Fills b with the ladder from the first bound >= min_ns to the first bound >= max_ns
 * (min_ns >= 10 ns, max_ns > min_ns, at most ZLB_PROM_BUCKETS_MAX bounds: 10 decades).
 * 0 or -EINVAL. */
int zlb_prom_buckets_init(zlb_prom_buckets_t *b, uint64_t min_ns, uint64_t max_ns);

/** Appends `# HELP`/`# TYPE histogram` and cumulative `_bucket{le="..."}` lines (seconds) with
 * `_sum` and `_count` for h. `labels` is either "" or `key="v",...` without braces. */
void zlb_prom_histogram(zlb_buf_t *b, const char *name, const char *help, const char *labels,
                        const zlb_hist_t *h, const zlb_prom_buckets_t *buckets);
/** Escapes a label value (backslash, quote, newline) into out (always terminated). */
void zlb_prom_label_escape(const char *in, char *out, size_t len);

#endif
