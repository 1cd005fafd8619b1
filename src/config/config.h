/* config.h -- the run's configuration: strict JSON parsing into an immutable, validated struct. */
#ifndef ZLB_CONFIG_H
#define ZLB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "core/core.h" /* zlb_log_level_t */

/* Every field below is validated and in range once zlb_config_load returns 0. Strings are owned
 * by the config (freed by zlb_config_destroy). After start-up the struct is read-only and may be
 * read from any thread. */

typedef struct zlb_tls_config {
    bool enabled;
    char *sni;     /* NULL: the target host name, unless it is an IP literal */
    bool verify;   /* default true */
    char *ca_file; /* NULL: the system store */
    char *ca_dir;
    char **alpn; /* protocol names, nalpn entries */
    size_t nalpn;
    int min_version; /* TLS1_2_VERSION-style numbers: 0x0303 for "1.2", 0x0304 for "1.3"; 0 =
                        library default */
    int max_version;
    char *ciphers;      /* TLS <= 1.2 cipher list */
    char *ciphersuites; /* TLS 1.3 suites */
    char *groups;
    char *cert_file; /* client certificate (mTLS) */
    char *key_file;
    double resumption; /* 0..1: share of handshakes that try to resume a cached session */
    uint64_t handshake_timeout_ns; /* default 5 s */
} zlb_tls_config_t;

typedef struct zlb_target_config {
    char *host; /* name or IP literal ("::1" without brackets) */
    uint16_t port;
    uint32_t weight; /* default 1 */
    zlb_tls_config_t tls;
} zlb_target_config_t;

/* What the built-in target does with what it reads: one enum for embedded_target.mode and for
 * `zlbench serve --mode`, named by zlb_config_serve_mode_name/parse. The serve module takes it. */
typedef enum {
    ZLB_SERVE_ECHO,
    ZLB_SERVE_SINK,
    ZLB_SERVE_HTTP,
    ZLB_SERVE_REDIS,
    ZLB_SERVE_SOURCE
} zlb_serve_mode_t;

typedef struct zlb_embedded_target_config {
    bool enabled;
    zlb_serve_mode_t mode;
    char *listen; /* "127.0.0.1:0" */
    int backlog;  /* default 4096 */
    int threads;  /* default 1 */
    bool tls;
    char *ca_out_file;        /* where to write the generated CA certificate (PEM), or NULL */
    uint64_t accept_delay_ns; /* artificial delay before each accept (to simulate a slow target) */
    double resumption;        /* with tls: share of zlbench's handshakes that resume (0..1) */
    /* mode http: what every request gets (zlb_serve_http_opts_t) */
    int http_status;            /* default 200 */
    uint64_t http_body_size;    /* default 2 ("ok") */
    bool http_chunked;          /* Transfer-Encoding: chunked */
    uint64_t http_delay_ns;     /* each response waits this long */
    uint64_t http_delay_max_ns; /* above http_delay: a random delay in [http_delay, this] */
} zlb_embedded_target_config_t;

typedef enum { ZLB_CFG_PRIO_NORMAL, ZLB_CFG_PRIO_HIGH, ZLB_CFG_PRIO_REALTIME } zlb_cfg_priority_t;

typedef struct zlb_pollers_config {
    int count;         /* 0: CPUs in the affinity mask */
    bool cpu_affinity; /* default true */
    int *cpus;         /* explicit CPU list, or NULL */
    size_t ncpus;
    zlb_cfg_priority_t priority;
    int nice;                /* for "high", default -10 */
    int rt_policy;           /* SCHED_FIFO (default) or SCHED_RR, for "realtime" */
    int rt_priority;         /* 1..99 for "realtime", required there */
    bool round_robin;        /* "select": "round_robin"; default least_loaded */
    bool prefer_current;     /* default true */
    uint64_t load_window_ns; /* default 1 s */
} zlb_pollers_config_t;

typedef enum {
    ZLB_WORK_HOLD,
    ZLB_WORK_CHURN,
    ZLB_WORK_ECHO,
    ZLB_WORK_HTTP,
    ZLB_WORK_MESSAGE,
    ZLB_WORK_STREAM
} zlb_work_type_t;

/* How the message workload knows that a reply is complete (workload.expect). */
typedef enum {
    ZLB_EXPECT_ECHO,      /* as many bytes as the message (the echo workload's only framing) */
    ZLB_EXPECT_BYTES,     /* exactly expect_bytes bytes */
    ZLB_EXPECT_DELIMITER, /* up to and including expect_delimiter */
} zlb_expect_t;

/* Where workload.message came from, so the effective config says it the same way. */
typedef enum {
    ZLB_MESSAGE_GENERATED, /* message_size bytes "abc...z" repeated */
    ZLB_MESSAGE_TEXT,      /* "message": text with escapes */
    ZLB_MESSAGE_HEX,       /* "message_hex" */
    ZLB_MESSAGE_FILE,      /* "message_file", read at load */
} zlb_message_from_t;

/* stream: which way the bytes go (workload.direction). */
typedef enum { ZLB_STREAM_SEND, ZLB_STREAM_RECEIVE, ZLB_STREAM_BOTH } zlb_stream_dir_t;

/* One HTTP request template (workload.requests[i]); checked at load, its bytes are built by the
 * http workload before the run (Host and Content-Length there). */
typedef struct zlb_http_header {
    char *name, *value;
} zlb_http_header_t;

typedef struct zlb_http_request_config {
    char *method; /* token (default "GET") */
    char *path;   /* request target, "/..." or "*" (default "/") */
    zlb_http_header_t *headers;
    size_t nheaders;
    uint8_t *body; /* from "body" or "body_file" (read at load); NULL: none */
    size_t body_len;
    char *body_file; /* the file's path, for the effective config; NULL for an inline body */
    uint32_t weight; /* >= 1 (default 1): share of the requests picked at random */
} zlb_http_request_config_t;

typedef struct zlb_workload_config {
    zlb_work_type_t type;
    uint64_t lifetime_ns; /* churn: how long each connection lives (default 1 s) */
    bool reconnect; /* hold/echo: reopen after a failure or a close by the peer (default true) */
    uint64_t backoff_min_ns;      /* first reconnect delay (default 100 ms), doubled per failure */
    uint64_t backoff_max_ns;      /* cap (default 5 s) */
    uint64_t message_size;        /* echo: bytes per message (default 64) */
    uint64_t message_interval_ns; /* echo: per-connection gap between messages (default 1 s; 0 =
                                     back to back) */
    /* message (and echo, which is message with expect echo): the bytes sent, NULL when
     * generated from message_size; message_len is then message_size. */
    uint8_t *message;
    size_t message_len;
    zlb_message_from_t message_from;
    char *message_file; /* its path (ZLB_MESSAGE_FILE) */
    zlb_expect_t expect;
    uint64_t expect_bytes;     /* ZLB_EXPECT_BYTES */
    uint8_t *expect_delimiter; /* ZLB_EXPECT_DELIMITER, 1..64 bytes */
    size_t expect_delimiter_len;
    uint8_t *expect_prefix; /* NULL: any reply; else it must start with these bytes */
    size_t expect_prefix_len;
    uint64_t max_reply_size; /* a longer reply is a protocol failure (default 64 KiB) */
    /* messages/s for the whole run, split over the connections; 0: message_interval per
     * connection (0 too: closed loop, pipeline deep) */
    double message_rate;
    /* http */
    zlb_http_request_config_t *requests; /* templates (default: one GET /) */
    size_t nrequests;
    bool keepalive;             /* default true; false: Connection: close, a connection each */
    uint32_t pipeline;          /* requests/messages in flight per connection (default 1) */
    double request_rate;        /* requests/s for the whole run; 0: closed loop (default 0) */
    uint64_t max_response_size; /* body bytes before a response is a protocol error (64 MiB) */
    uint32_t max_header_size;   /* response head bytes (default 16 KiB) */
    /* stream */
    zlb_stream_dir_t direction; /* default send */
    uint64_t chunk_size;        /* bytes per write from the shared chunk (default 64 KiB) */
    double rate;                /* bytes/s per connection; 0: as fast as the socket takes */
    uint8_t *first_message;     /* sent once after establishment; NULL: none (owned) */
    size_t first_message_len;
    char *first_message_file;  /* its file, for the effective config; NULL for inline text */
    uint64_t stall_timeout_ns; /* no data moved this long: counted stalled (0: not watched) */
    bool stall_close;          /* and closed as a failure (timeout) */
} zlb_workload_config_t;

typedef enum { ZLB_CLOSE_FIN, ZLB_CLOSE_RST } zlb_close_mode_t;

typedef struct zlb_socket_config {
    bool nodelay;    /* default true */
    uint64_t sndbuf; /* 0: kernel autotuning */
    uint64_t rcvbuf;
    zlb_close_mode_t close;
    bool keepalive; /* default false */
    uint64_t keepalive_idle_ns, keepalive_interval_ns;
    int keepalive_count;
} zlb_socket_config_t;

typedef enum { ZLB_FAMILY_ANY, ZLB_FAMILY_IPV4, ZLB_FAMILY_IPV6 } zlb_family_t;

/* When set and not empty at load, names the control token file, over control.token_file. */
#define ZLB_CONFIG_TOKEN_FILE_ENV "ZLB_CONTROL_TOKEN_FILE"

typedef struct zlb_control_config {
    bool enabled;       /* default true; "listen": null disables */
    char *listen;       /* default "127.0.0.1:8089" */
    char *token_file;   /* NULL: no token; ZLB_CONFIG_TOKEN_FILE_ENV overrides */
    char *address_file; /* write the bound address here */
    /* /metrics histogram buckets span this range (default 10 µs .. 100 s, at most 10 decades) */
    uint64_t metrics_bucket_min_ns, metrics_bucket_max_ns;
} zlb_control_config_t;

typedef struct zlb_report_config {
    char *file;          /* default "zlbench-report.json"; NULL: no file */
    double *percentiles; /* default 50, 90, 99, 99.9 */
    size_t npercentiles;
    /* The HTML report: "html": true puts it beside `file` (x.json -> x.html), a string names
     * it; NULL and false: none. */
    bool html_beside;
    char *html;
} zlb_report_config_t;

typedef enum { ZLB_OP_LT, ZLB_OP_LE, ZLB_OP_GT, ZLB_OP_GE, ZLB_OP_EQ, ZLB_OP_NE } zlb_op_t;

typedef struct zlb_threshold {
    char *path; /* report path, e.g. "latency_us.connect.p99" */
    zlb_op_t op;
    double value; /* booleans are 1/0 */
    char *expr;   /* as written, e.g. "< 5000" */
} zlb_threshold_t;

typedef struct zlb_ramp_config {
    uint64_t duration_ns; /* 0: no ramp, the full rate from the start */
    double start_rate;    /* connections/s at t=0, rising linearly to connect_rate */
} zlb_ramp_config_t;

/* Which part of a scenario split over several generators this config runs ("shard" in the file,
 * --shard I/N). count 0 or 1: not sharded. */
typedef struct zlb_shard_config {
    uint32_t index, count;
    bool index_from_env; /* "index": "env": read from ZLB_CONFIG_SHARD_INDEX_ENV at load */
} zlb_shard_config_t;

/* The Kubernetes Indexed Job's variable: each pod's completion index, 0..completions-1. */
#define ZLB_CONFIG_SHARD_INDEX_ENV "JOB_COMPLETION_INDEX"
#define ZLB_CONFIG_MAX_SHARDS 65536u

/* A load profile ("stages" in the file, or appended by PATCH /run), with k6's semantics: each
 * stage moves every value it names linearly from its value at the stage's start (the previous
 * stage's end; the config's top-level value before the first stage) to its own over its
 * duration; a value it does not name is held. A zero-length stage is a jump; a last stage of
 * length 0 holds until the run is stopped. connect_rate and close_rate use 0 for "unlimited",
 * which is no number to move from or to: a move from or to 0 is a jump at the stage's start. */
#define ZLB_STAGE_CONNECTIONS 0x1u
#define ZLB_STAGE_CONNECT_RATE 0x2u
#define ZLB_STAGE_RATE 0x4u /* the workload's live rate (zlb_config_rate_key) */
#define ZLB_STAGE_CLOSE_RATE 0x8u
/* With ZLB_STAGE_RATE: the rate's 0 means "unlimited" (a stream's, as fast as the socket takes),
 * no number on the way: a move from or to it is a jump, as for connect_rate. */
#define ZLB_STAGE_RATE_ZERO_UNLIMITED 0x10u
#define ZLB_CONFIG_MAX_STAGES 1000

typedef struct zlb_stage_values {
    uint64_t connections;
    double connect_rate; /* 0: unlimited */
    double rate;         /* the workload's whole-run rate */
    double close_rate;   /* 0: as fast as allowed */
} zlb_stage_values_t;

typedef struct zlb_stage {
    uint64_t duration_ns;
    unsigned set;          /* ZLB_STAGE_* bits: the values this stage names */
    zlb_stage_values_t to; /* the named values at the stage's end */
} zlb_stage_t;

typedef struct zlb_config {
    char *source_path; /* the file it came from, or NULL */
    zlb_pollers_config_t pollers;
    zlb_target_config_t *targets;
    size_t ntargets; /* 0 when the embedded target is used */
    zlb_embedded_target_config_t embedded_target;
    uint64_t connections; /* default 2000 */
    double connect_rate;  /* connections/s, default 5000; 0 = unlimited */
    double close_rate;    /* closes/s when connections are lowered live; 0 = as fast as allowed */
    zlb_ramp_config_t ramp;
    uint64_t connect_timeout_ns; /* default 5 s */
    uint64_t send_timeout_ns;    /* default 10 s: a send queue that makes no progress fails */
    uint64_t duration_ns;        /* 0: until stopped */
    uint64_t warmup_ns;
    uint64_t drain_timeout_ns; /* grace period on stop, default 5 s */
    zlb_workload_config_t workload;
    struct sockaddr_storage *source_addrs; /* expanded "source_ips", nsource entries */
    size_t nsource;
    char **source_ips; /* "source_ips" as written (addresses and ranges), nsource_ips entries */
    size_t nsource_ips;
    zlb_family_t family;
    uint64_t dns_ttl_ns; /* default 60 s */
    zlb_socket_config_t socket;
    zlb_control_config_t control;
    zlb_report_config_t report;
    zlb_threshold_t *thresholds;
    size_t nthresholds;
    bool abort_on_fail;
    uint64_t abort_grace_ns;
    uint64_t stats_interval_ns; /* rates and the live line, default 1 s */
    zlb_log_level_t log_level;  /* default ZLB_LOG_INFO */
    zlb_shard_config_t shard;
    /* Set by zlb_config_apply_shard: the whole scenario's effective config (compact JSON), which
     * zlb_config_to_json prints (with "shard") and zlb_config_hash hashes, so that every shard
     * of one scenario names it alike and its effective config reads back to the same shard. */
    char *unsharded_json;
    /* --processes: shard processes under one parent (src/procs). 1 (default): this process
     * alone; ZLB_PROCESSES_AUTO: enough for the connections under the open-files limit. */
    uint32_t processes;
    /* The load profile (owned), nstages entries; none: the top-level values hold for the run.
     * With stages the run lasts their sum (duration_ns is set to it; 0 when the last one holds
     * until stopped) and "duration" may not be written. */
    zlb_stage_t *stages;
    size_t nstages;
} zlb_config_t;

#define ZLB_PROCESSES_AUTO 0u
#define ZLB_PROCESSES_MAX 256u

/** Validates a threshold path against the report schema; provided by the run module. */
typedef bool (*zlb_metric_path_cb)(const char *path);

typedef struct zlb_config_error {
    char message[512]; /* "FILE:LINE:COLUMN: key.path: what is wrong" */
} zlb_config_error_t;

/** Fills cfg with every default (embedded echo target, 2000 connections, ...). Caller's memory;
 * release with zlb_config_dispose. */
void zlb_config_init_default(zlb_config_t *cfg);
/** Parses and validates the file. Rejects duplicate keys, unknown keys (with a "did you mean"
 * for near misses), wrong types, out-of-range values, trailing garbage; integers never silently
 * truncated. The environment's ZLB_CONFIG_TOKEN_FILE_ENV is applied before the cross-field rules.
 * On error returns -EINVAL (or -errno for I/O) and fills err->message with
 * "FILE:LINE:COLUMN: key.path: message". validate_path may be NULL (thresholds then unchecked).
 * On success *out is a new config owned by the caller. */
int zlb_config_load(const char *path, zlb_metric_path_cb validate_path, zlb_config_t **out,
                    zlb_config_error_t *err);
/** Same from a string; `name` is used in messages in place of a file name. */
int zlb_config_parse(const char *text, const char *name, zlb_metric_path_cb validate_path,
                     zlb_config_t **out, zlb_config_error_t *err);
/** Re-checks cross-field rules after command-line overrides (e.g. warmup < duration). */
int zlb_config_check(const zlb_config_t *cfg, zlb_config_error_t *err);
/** Applies one command-line override to a loaded config: `value` (stolen) goes to key_path
 * ("connections", "pollers.count", "control.listen": the file's layout) through the same
 * parsers and cross-field rules as the file, so one place decides what is valid. On error
 * returns -EINVAL with err->message "ORIGIN: message" (ORIGIN e.g. "--connections"); cfg may
 * then hold the refused value and must not be used. */
int zlb_config_override(zlb_config_t *cfg, const char *origin, const char *key_path, json_t *value,
                        zlb_metric_path_cb validate_path, zlb_config_error_t *err);
/** The effective config as JSON in the file's own key layout (token contents never included).
 * New reference. */
json_t *zlb_config_to_json(const zlb_config_t *cfg);
/** 16 hex digits identifying the scenario: a hash of the effective config's canonical JSON
 * without the settings that only say where output goes (report.file, control, log_level). */
void zlb_config_hash(const zlb_config_t *cfg, char out[17]);
/** Makes cfg this shard's exact part of the scenario: connections, connect_rate, the workload's
 * whole-run rates (request_rate, message_rate) split with remainders spread over the first shards
 * (a rate that is a whole number >= count splits as an integer, so the sum over shards equals the
 * config exactly; other rates split evenly, summing within rounding), ramp.start_rate in proportion
 * to this shard's connect_rate (every shard ramps the same shape); source addresses partitioned in
 * contiguous blocks; targets and everything else unchanged. A config that is already a part
 * (applied before, or a "shard" from the file or --shard not yet applied) becomes part
 * old_index * count + index of old_count * count of the whole scenario, so nesting (shards of
 * a shard, processes of a pod) equals one flat split. count <= 1 with no shard of its own: no
 * change. Apply overrides first: the effective config is the whole scenario's from here on.
 * Returns 0, or -EINVAL with a message in err (cfg unchanged unless the re-check failed, then
 * it must not be used). Main thread, before the run starts. */
int zlb_config_apply_shard(zlb_config_t *cfg, uint32_t index, uint32_t count, char *err,
                           size_t len);
/** Shard `index` of `count` of an integer total: total / count, plus one for the first
 * total % count shards. */
uint64_t zlb_config_shard_u64(uint64_t total, uint32_t index, uint32_t count);
/** Shard `index` of `count` of a rate, by the rule of zlb_config_apply_shard. */
double zlb_config_shard_rate(double total, uint32_t index, uint32_t count);
/** Makes v (a stage's values, or a run's live values) shard `index` of `count` of themselves,
 * by the rule of zlb_config_apply_shard: connections as zlb_config_shard_u64, connect_rate and
 * close_rate as zlb_config_shard_rate, and the workload's rate too when it is a whole-run rate
 * (http, echo, message); a stream's (bytes/s per connection) stays whole: every shard's
 * connections keep it. The sum over the shards of each split value is v's. Pure. */
void zlb_config_shard_values(zlb_work_type_t type, zlb_stage_values_t *v, uint32_t index,
                             uint32_t count);
void zlb_config_dispose(zlb_config_t *cfg);
/** Disposes and frees a config from zlb_config_load. Accepts NULL. */
void zlb_config_destroy(zlb_config_t *cfg);

/** The key of the workload's live rate ("request_rate" for http, "message_rate" for echo and
 * message, both whole-run; "stream_rate" for a stream, its workload.rate in bytes/s per
 * connection), or NULL for a workload without one. Stages and PATCH /run name the rate by this
 * key. Only the whole-run ones split over shards. */
const char *zlb_config_rate_key(zlb_work_type_t type);
/** The workload's live rate as configured (0 when it has none). */
double zlb_config_workload_rate(const zlb_config_t *cfg);
/** True when a stage sets the workload's rate: an http or message run is then an open loop even
 * if its rate starts at 0. */
bool zlb_config_rate_is_live(const zlb_config_t *cfg);
/** Sets the workload's live rate (no-op for a workload without one). */
void zlb_config_set_workload_rate(zlb_config_t *cfg, double rate);

/** Parses a JSON array of stages (the config's "stages" or a PATCH body's) with the config
 * file's rules: unknown keys refused, a rate key the workload does not have refused naming the
 * one it has, values in the top-level keys' ranges. Key paths in err start with `path` (e.g.
 * "stages[2].connections: expected an integer 0..10000000, got -1"). On success *out (malloc'd,
 * the caller frees it) holds *n >= 1 stages. 0 or -EINVAL. Any thread; cfg is only read. */
int zlb_config_parse_stages(const zlb_config_t *cfg, json_t *arr, const char *path,
                            zlb_stage_t **out, size_t *n, char *err, size_t errlen);
/** The values before the first stage: the config's top-level ones. */
void zlb_config_stage_start(const zlb_config_t *cfg, zlb_stage_values_t *out);
/** The values `into_ns` after the start of stage st, which starts from `from` (pure). From the
 * stage's end on (into_ns >= its duration) they are its end values. Connections are rounded to
 * the nearest integer. */
void zlb_config_stage_move(const zlb_stage_t *st, const zlb_stage_values_t *from, uint64_t into_ns,
                           zlb_stage_values_t *out);
/** The stage in force `t_ns` after the profile's start (from `start`): its index (n once every
 * stage has ended; a zero-length stage is never in force, except a last one, which holds for
 * ever), the values then (*out) and, when not NULL, when that stage started (*began_ns). Pure. */
size_t zlb_config_stages_at(const zlb_stage_t *st, size_t n, const zlb_stage_values_t *start,
                            uint64_t t_ns, zlb_stage_values_t *out, uint64_t *began_ns);
/** The profile's length (the sum of the durations); *forever: the last stage holds until the run
 * is stopped. */
uint64_t zlb_config_stages_length(const zlb_stage_t *st, size_t n, bool *forever);
/** The most connections the run asks for at any time (the top level and every stage's). */
uint64_t zlb_config_peak_connections(const zlb_config_t *cfg);

/* A PATCH /run body: the live values it sets (has_* says which keys it named). */
typedef struct zlb_config_patch {
    bool has_connections, has_connect_rate, has_close_rate, has_rate, has_paused;
    uint64_t connections;
    double connect_rate, close_rate;
    double rate; /* the workload's live rate, under zlb_config_rate_key */
    bool paused;
    zlb_stage_t *stages; /* owned: stages to append (nstages >= 1), or NULL */
    size_t nstages;
} zlb_config_patch_t;

/** Parses and checks a PATCH /run body against cfg (the run's config, read only) with the
 * config file's rules and words: keys connections, connect_rate, close_rate, paused, stages
 * (zlb_config_parse_stages) and the workload's rate key (another workload's, or its own in a
 * closed loop, is refused by name). 0 (release *out with zlb_config_patch_dispose), or -EINVAL
 * with err "key.path: reason" ("line L, column C: invalid JSON: ..." for bad JSON) and *out
 * zeroed. Any thread. */
int zlb_config_parse_patch(const zlb_config_t *cfg, const char *text, size_t len,
                           zlb_config_patch_t *out, char *err, size_t errlen);
void zlb_config_patch_dispose(zlb_config_patch_t *p);

/** "echo", "sink", "http", "redis" (NULL for a value out of range); the config's own name table. */
const char *zlb_config_serve_mode_name(zlb_serve_mode_t mode);
/** Exact (case-sensitive) names as above. 0 or -EINVAL. */
int zlb_config_serve_mode_parse(const char *s, zlb_serve_mode_t *out);

#endif
