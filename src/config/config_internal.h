/* config_internal.h -- shared between the config module's files and its tests only. */
#ifndef ZLB_CONFIG_INTERNAL_H
#define ZLB_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "core/core.h"

/* Key paths as they appear in messages: `targets[1].tls.sni`. A key that is not a plain
 * identifier (threshold keys are metric paths with dots) is written `thresholds["a.b"]` so that
 * every path names exactly one place in the file. The buffer grows: no length of key and no depth
 * of nesting loses the path (and with it the line and column). A zeroed struct is an empty path. */
typedef struct zlb_config_path {
    char *buf; /* owned; NULL while empty, else NUL-terminated */
    size_t len, cap;
} zlb_config_path_t;

/** Appends ".key" (or "key" at the root, or ["key"]); returns the length to restore with
 * zlb_config_path_pop. */
size_t zlb_config_path_push_key(zlb_config_path_t *p, const char *key, size_t keylen);
/** Appends "[index]"; returns the length to restore. */
size_t zlb_config_path_push_index(zlb_config_path_t *p, size_t index);
void zlb_config_path_pop(zlb_config_path_t *p, size_t mark);
/** The path as text ("" when empty). */
const char *zlb_config_path_str(const zlb_config_path_t *p);
/** dst becomes a copy of src (dst's old text is released). */
void zlb_config_path_copy(zlb_config_path_t *dst, const zlb_config_path_t *src);
void zlb_config_path_dispose(zlb_config_path_t *p);

/* The most bytes of a key path and of a key that a message shows (the message holds 512). */
#define ZLB_CONFIG_PATH_SHOWN 160
#define ZLB_CONFIG_KEY_SHOWN 96
#define ZLB_CONFIG_VALUE_SHOWN 120

/** For messages: s itself when it has at most `keep` bytes, else its start and end around "..."
 * in buf (cut at UTF-8 character boundaries), so that what follows it in the message survives. */
const char *zlb_config_abbrev(const char *s, size_t keep, char *buf, size_t cap);
/** A value quoted in a message, shortened to ZLB_CONFIG_VALUE_SHOWN bytes; the text lives until
 * the fourth call after (a ring of buffers per thread). */
const char *zlb_config_show(const char *s);

/** Where in `text` the value at `path` starts (want_key false) or, for an object member, where
 * its key starts (want_key true). Lines and columns are 1-based; columns count UTF-8 characters,
 * as jansson's do. Returns 0, or -ENOENT when the path is not in the text. */
int zlb_config_pos_find(const char *text, size_t len, const char *path, bool want_key, int *line,
                        int *col);
/** The first key in document order that repeats a key of the same object: its path (*path, to
 * dispose), the key (*key, malloc'd, to free), line and column. Returns 0, or -ENOENT when there is
 * none (nothing to release then). */
int zlb_config_pos_first_duplicate(const char *text, size_t len, zlb_config_path_t *path,
                                   char **key, int *line, int *col);

/** Optimal-string-alignment (Damerau-Levenshtein) distance, case-insensitive for ASCII. */
size_t zlb_config_edit_distance(const char *a, const char *b);
/** The candidate closest to `word` if it is close enough to be a likely typo, else NULL. */
const char *zlb_config_suggest(const char *word, const char *const *candidates, size_t n);

/* ---- limits shared by the section parsers and the cross-field checks ------------------------ */

#define ZLB_CONFIG_MAX_CONNECTIONS 10000000
/* One a quarter-hour: below that the schedule is meaningless. */
#define ZLB_CONFIG_MIN_CONNECT_RATE 0.001
#define ZLB_CONFIG_MAX_CONNECT_RATE 1e9
#define ZLB_CONFIG_MAX_POLLERS 1024

/* ---- parser context and typed getters (config_get.c) ---------------------------------------- */

/* Everything the parser carries: where the text came from, the path of the value being looked
 * at, and where the first error goes. */
typedef struct zlb_config_ctx {
    const char *name; /* file name for messages */
    const char *text; /* raw text for positions, or NULL (re-checks after overrides) */
    size_t textlen;
    zlb_config_error_t *err;
    zlb_config_path_t path;
    zlb_metric_path_cb validate_path;
} zlb_config_ctx_t;

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

/* One name table per enum, shared by the parser and the printer: names[i] spells value i. */
typedef struct zlb_config_names {
    const char *const *names;
    size_t n;
} zlb_config_names_t;

extern const zlb_config_names_t zlb_config_priority_names, zlb_config_rt_policy_names,
    zlb_config_select_names, zlb_config_mode_names, zlb_config_work_names, zlb_config_family_names,
    zlb_config_close_names, zlb_config_log_level_names, zlb_config_tls_version_names,
    zlb_config_direction_names;
/* tls_version_names[i] is the protocol version number BASE + i (OpenSSL's TLS1_x_VERSION, spelled
 * out so that config needs no OpenSSL headers). */
#define ZLB_CONFIG_TLS_VERSION_BASE 0x0301

/** t->names[i], or NULL when i is out of range. */
const char *zlb_config_name(const zlb_config_names_t *t, int i);

/** Writes err->message; a message longer than the buffer ends in "...". */
void zlb_config_set_message(zlb_config_error_t *err, const char *fmt, ...) ZLB_PRINTF(2, 3);
/* Each fail returns -EINVAL after writing "FILE:LINE:COLUMN: key.path: message": at the value of
 * the current path, at its key (unknown keys, bad threshold paths), or at a named path
 * (cross-field rules). */
int zlb_config_fail(zlb_config_ctx_t *c, const char *fmt, ...) ZLB_PRINTF(2, 3);
int zlb_config_fail_key(zlb_config_ctx_t *c, const char *fmt, ...) ZLB_PRINTF(2, 3);
int zlb_config_fail_at(zlb_config_ctx_t *c, const char *path, const char *fmt, ...)
    ZLB_PRINTF(3, 4);
/** Pushes a key onto the current path; returns the mark zlb_config_pop restores. */
size_t zlb_config_push(zlb_config_ctx_t *c, const char *key);
void zlb_config_pop(zlb_config_ctx_t *c, size_t mark);

/** "an object", "a string", ... for messages. */
const char *zlb_config_type_name(const json_t *v);
/** "70000" for numbers (the value is what is wrong), the type name for the rest. */
const char *zlb_config_got(const json_t *v, char *buf, size_t len);

/* Getters: absent keys leave *out (the default) alone; check_* take the value itself. */
int zlb_config_check_file(zlb_config_ctx_t *c, const char *key, const char *path, bool dir);
int zlb_config_check_object(zlb_config_ctx_t *c, const json_t *v);
int zlb_config_check_keys(zlb_config_ctx_t *c, const json_t *obj, const char *const *allowed,
                          size_t n);
int zlb_config_check_int(zlb_config_ctx_t *c, const json_t *v, int64_t min, int64_t max,
                         int64_t *out);
int zlb_config_get_int(zlb_config_ctx_t *c, const json_t *obj, const char *key, int64_t min,
                       int64_t max, int64_t *out);
int zlb_config_get_bool(zlb_config_ctx_t *c, const json_t *obj, const char *key, bool *out);
/** Integers and fractions; `range` is the text for messages. */
int zlb_config_check_number(zlb_config_ctx_t *c, const json_t *v, double min, double max,
                            bool open_min, bool open_max, const char *range, double *out);
int zlb_config_get_number(zlb_config_ctx_t *c, const json_t *obj, const char *key, double min,
                          double max, const char *range, double *out);
int zlb_config_check_duration(zlb_config_ctx_t *c, const json_t *v, uint64_t min_ns, uint64_t *out);
int zlb_config_get_duration(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                            uint64_t min_ns, uint64_t *out);
/** A byte count as an integer, or a string with a unit ("64KiB"). */
int zlb_config_get_size(zlb_config_ctx_t *c, const json_t *obj, const char *key, uint64_t min,
                        uint64_t max, uint64_t *out);
/** Non-empty strings; `nullable` ones take null to mean "not set" (*out becomes NULL). */
int zlb_config_get_string(zlb_config_ctx_t *c, const json_t *obj, const char *key, bool nullable,
                          char **out);
int zlb_config_check_enum(zlb_config_ctx_t *c, const json_t *v, const zlb_config_names_t *t,
                          int *out);
int zlb_config_get_enum(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                        const zlb_config_names_t *t, int *out);
/** The one rule for every listen address, at `path`: HOST:PORT where HOST is an IP address or
 * localhost (what the listeners can bind). The address goes to *ss when ss is not NULL. */
int zlb_config_check_listen(zlb_config_ctx_t *c, const char *path, const char *s,
                            struct sockaddr_storage *ss);

typedef int (*zlb_config_section_fn)(zlb_config_ctx_t *c, const json_t *obj, zlb_config_t *cfg);
/** An optional object-valued key: checks its type and hands it to fn under its path. */
int zlb_config_get_section(zlb_config_ctx_t *c, const json_t *obj, const char *key,
                           zlb_config_section_fn fn, zlb_config_t *cfg);

/* ---- sections (config_sections.c) and cross-field rules (config_check.c) -------------------- */

/** Parses every key of the top-level object into cfg (cross-field rules come after). */
int zlb_config_parse_root(zlb_config_ctx_t *c, const json_t *root, zlb_config_t *cfg);
/** Target TLS defaults (verify on, 5 s handshake timeout) and their release. */
void zlb_config_tls_defaults(zlb_tls_config_t *t);
void zlb_config_tls_dispose(zlb_tls_config_t *t);
/** The http workload's keys of the workload object (config_http.c). */
int zlb_config_parse_http(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w);
/** Reads a whole file given at `path` in the config (at most max bytes); failures name it at
 * the current key path. *out is malloc'd. */
int zlb_config_read_file(zlb_config_ctx_t *c, const char *path, uint64_t max, uint8_t **out,
                         size_t *len);
/** The message workload's keys of the workload object (config_message.c). */
int zlb_config_parse_message(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w);
/** Its cross-field rules (framing against the message, the embedded target's mode). */
int zlb_config_check_message(zlb_config_ctx_t *c, const zlb_config_t *cfg);
/** Adds the message keys to the effective config's workload object. */
void zlb_config_message_json(json_t *o, const zlb_workload_config_t *w);
void zlb_config_message_dispose(zlb_workload_config_t *w);
/** Text with the escapes \r \n \t \\ \xNN into bytes (*out malloc'd). 0, or -EINVAL
 * with why filled ("unknown escape \q at byte 3 ..."). */
int zlb_config_unescape(const char *s, size_t n, uint8_t **out, size_t *len, char *why,
                        size_t whylen);
/** Bytes as a JSON string that zlb_config_unescape reads back to the same bytes. New ref. */
json_t *zlb_config_escape_json(const uint8_t *b, size_t n);
/* config_stream.c: the stream workload's keys (refused with another workload type). */
int zlb_config_parse_stream(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w);
/** workload.requests as the effective config prints them. New reference. */
json_t *zlb_config_http_requests_json(const zlb_workload_config_t *w);
/** "shard": {"index": I|"env", "count": N}, "I/N" or null (config_shard.c). */
int zlb_config_parse_shard(zlb_config_ctx_t *c, const json_t *v, zlb_config_t *cfg);
/** "stages" of the top-level object (config_stages.c): parsed after the workload (whose rate key
 * a stage may name); refuses "duration" beside stages and sets duration_ns to their length. */
int zlb_config_parse_root_stages(zlb_config_ctx_t *c, const json_t *root, zlb_config_t *cfg);
/** The stages as the file writes them. New reference. */
json_t *zlb_config_stages_json(const zlb_config_t *cfg);
/** A number as the effective config prints it: whole numbers as integers. New reference. */
json_t *zlb_config_number_json(double d);
/** Rules across fields, also run after command-line overrides (ctx without text). */
int zlb_config_check_cross(zlb_config_ctx_t *c, const zlb_config_t *cfg);

/* ---- source address ranges ------------------------------------------------------------------ */

/** The most addresses one "source_ips" list may expand to (and so one range may cover). */
#define ZLB_CONFIG_MAX_SOURCE_ADDRS 65536u

typedef struct zlb_config_ip {
    int family;    /* AF_INET or AF_INET6 */
    uint8_t b[16]; /* network order; 4 bytes used for AF_INET */
} zlb_config_ip_t;

/** Parses "a" or an inclusive range "a-b" (whitespace around the dash allowed). *count is the
 * number of addresses, capped at ZLB_CONFIG_MAX_SOURCE_ADDRS + 1 for anything larger. Returns 0,
 * or -EINVAL with *why pointing at a static explanation. */
int zlb_config_ip_range_parse(const char *s, zlb_config_ip_t *first, zlb_config_ip_t *last,
                              uint64_t *count, const char **why);
/** Moves ip to the next address (wrapping is the caller's business: ranges are checked). */
void zlb_config_ip_next(zlb_config_ip_t *ip);
/** Fills ss with ip and port 0. */
void zlb_config_ip_to_sockaddr(const zlb_config_ip_t *ip, struct sockaddr_storage *ss);

/** A stream's rate (workload.rate, bytes/s per connection): the file's ceiling, 8 Tbit/s, far
 * above any socket. */
#define ZLB_CONFIG_MAX_STREAM_RATE 1e12
/** Why a stream receiving only takes no rate (the file's words, and a stage's or PATCH's). */
#define ZLB_CONFIG_STREAM_RECEIVE_RATE "paces what is sent; direction \"receive\" sends nothing"
/** The workload's live rate under `key` (zlb_config_rate_key) in o, with the file's range and
 * words for that workload's rate: a stream's is the file's workload.rate (0..1e12, and none with
 * direction "receive"), the others' 0..1e9. 0 or -EINVAL with the key path. */
int zlb_config_get_live_rate(zlb_config_ctx_t *c, const json_t *o, const char *key,
                             const zlb_config_t *cfg, double *out);

#endif
