/* control_internal.h -- control module helpers shared by its own files and its unit test. */
#ifndef ZLB_CONTROL_INTERNAL_H
#define ZLB_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "control/control.h"

/* Longest token accepted from a file or from opts->token. */
#define ZLB_CONTROL_TOKEN_MAX 4096

/* "[ffff:...:ffff]:65535" plus NUL fits with room to spare. */
#define ZLB_CONTROL_ADDR_MAX 64

/** Parses "a.b.c.d:port", "[v6]:port" or "localhost:port" (numeric hosts only otherwise; no
 * DNS) into *ss. *loopback tells whether the host is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
 * 0 or -EINVAL. */
int zlb_control_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                             bool *loopback);
/** Token syntax: 1..ZLB_CONTROL_TOKEN_MAX visible ASCII characters (no spaces or controls), so
 * that it survives an HTTP header unchanged. */
bool zlb_control_token_valid(const char *token, size_t len);
/** Compares two byte strings in time that depends only on their lengths, never on where they
 * first differ. True when equal. */
bool zlb_control_token_equal(const char *a, size_t alen, const char *b, size_t blen);

/* ---- request policy (policy.c): pure functions, fed synthetic requests by tests and fuzzers -- */

typedef struct zlb_control_policy {
    bool exposed;   /* bound beyond loopback: the token guards every request */
    bool has_token; /* a token is configured */
    uint16_t port;  /* the bound port (a Host or Origin naming another port is not us) */
} zlb_control_policy_t;

/* One request as the policy sees it. Header values are NULL when absent. */
typedef struct zlb_control_req {
    const char *method;
    const char *path; /* percent-decoded, without the query */
    bool uri_clean;   /* zlb_control_uri_clean() of the raw request target */
    bool has_body;
    const char *host, *origin, *content_type, *authorization;
    bool custom_header; /* X-Zlbench-Request present */
    bool authorized;    /* the bearer token matched */
    bool published;     /* a document is published at path */
} zlb_control_req_t;

typedef enum {
    ZLB_CONTROL_SERVE,        /* the published document */
    ZLB_CONTROL_STOP,         /* call on_stop, answer 202 */
    ZLB_CONTROL_NOT_FOUND,    /* 404 */
    ZLB_CONTROL_NOT_ALLOWED,  /* 405, reason is the Allow header */
    ZLB_CONTROL_UNAUTHORIZED, /* 401 with WWW-Authenticate */
    ZLB_CONTROL_REFUSE        /* status with {"error": reason}, connection closed */
} zlb_control_action_t;

typedef struct zlb_control_verdict {
    zlb_control_action_t action;
    unsigned status;
    const char *reason; /* static text */
} zlb_control_verdict_t;

/** Decides the answer to rq. Never fails. */
zlb_control_verdict_t zlb_control_decide(const zlb_control_policy_t *pol,
                                         const zlb_control_req_t *rq);
/** False when the raw request target holds a control byte, raw or %-escaped. */
bool zlb_control_uri_clean(const char *uri);
/** True for "localhost", "*.localhost", 127.0.0.0/8 and [::1], with an optional ":port" that
 * must equal port. */
bool zlb_control_host_is_local(const char *host, uint16_t port);
/** JSON-escapes a decoded path for a 404 body: printable ASCII as is, others as \u escapes
 * (bytes >= 0x80 as U+FFFD), at most ZLB_CONTROL_ECHO_MAX input bytes. */
void zlb_control_json_escape(char *out, size_t cap, const char *in);
#define ZLB_CONTROL_ECHO_MAX 200

#endif
