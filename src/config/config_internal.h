/* config_internal.h -- shared between the config module's files and its tests only. */
#ifndef ZLB_CONFIG_INTERNAL_H
#define ZLB_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

/* Key paths as they appear in messages: `targets[1].tls.sni`. A key that is not a plain
 * identifier (threshold keys are metric paths with dots) is written `thresholds["a.b"]` so that
 * every path names exactly one place in the file. */
#define ZLB_CONFIG_PATH_MAX 512

typedef struct zlb_config_path {
    char buf[ZLB_CONFIG_PATH_MAX];
    size_t len;
    bool truncated;       /* a component did not fit: positions are not looked up */
    unsigned trunc_depth; /* pushes since then, so the pop that undoes it is known */
} zlb_config_path_t;

/** Appends ".key" (or "key" at the root, or ["key"]); returns the length to restore with
 * zlb_config_path_pop. */
size_t zlb_config_path_push_key(zlb_config_path_t *p, const char *key, size_t keylen);
/** Appends "[index]"; returns the length to restore. */
size_t zlb_config_path_push_index(zlb_config_path_t *p, size_t index);
void zlb_config_path_pop(zlb_config_path_t *p, size_t mark);

/** Where in `text` the value at `path` starts (want_key false) or, for an object member, where
 * its key starts (want_key true). Lines and columns are 1-based; columns count UTF-8 characters,
 * as jansson's do. Returns 0, or -ENOENT when the path is not in the text. */
int zlb_config_pos_find(const char *text, size_t len, const char *path, bool want_key, int *line,
                        int *col);
/** The first key in document order that repeats a key of the same object: its path, the key
 * (NUL-terminated, cut to keycap - 1 bytes), line and column. Returns 0, or -ENOENT when there is
 * none. */
int zlb_config_pos_first_duplicate(const char *text, size_t len, zlb_config_path_t *path, char *key,
                                   size_t keycap, int *line, int *col);

/** Optimal-string-alignment (Damerau-Levenshtein) distance, case-insensitive for ASCII. */
size_t zlb_config_edit_distance(const char *a, const char *b);
/** The candidate closest to `word` if it is close enough to be a likely typo, else NULL. */
const char *zlb_config_suggest(const char *word, const char *const *candidates, size_t n);

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

#endif
