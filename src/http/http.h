/* http.h -- an incremental HTTP/1.1 response parser: no allocation, 48 bytes of state. */
#ifndef ZLB_HTTP_H
#define ZLB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a response may weigh before it is an error. */
typedef struct zlb_http_limits {
    uint32_t max_header_bytes; /* status line + header fields (and, apart, the trailer section and
                                  each chunk-size line); 0: ZLB_HTTP_DEFAULT_MAX_HEADER */
    uint64_t max_body_bytes;   /* decoded body bytes; 0: no limit */
} zlb_http_limits_t;

#define ZLB_HTTP_DEFAULT_MAX_HEADER (16u * 1024u)

typedef enum {
    ZLB_HTTP_MORE = 0, /* all input consumed, response not finished */
    ZLB_HTTP_DONE,     /* one final response ended; *used = bytes consumed up to its end */
    ZLB_HTTP_ERROR     /* malformed / too large; p->error says which (zlb_http_error_t) */
} zlb_http_result_t;

typedef enum {
    ZLB_HTTP_ERR_NONE = 0,
    ZLB_HTTP_ERR_MALFORMED_STATUS,   /* not "HTTP/1.x ddd ..." */
    ZLB_HTTP_ERR_BAD_HEADER,         /* a field line that cannot be read safely */
    ZLB_HTTP_ERR_BAD_CONTENT_LENGTH, /* not digits, overflow, or two different values */
    ZLB_HTTP_ERR_HEADER_TOO_LARGE,   /* head or trailer section past max_header_bytes */
    ZLB_HTTP_ERR_BAD_CHUNK,          /* chunk-size line, chunk CRLF or trailer end malformed */
    ZLB_HTTP_ERR_BODY_TOO_LARGE,     /* body past max_body_bytes */
    ZLB_HTTP_ERR_TRUNCATED,          /* the peer closed before the response ended */
    ZLB_HTTP_ERR_COUNT
} zlb_http_error_t;

/* The whole parser: plain values, no pointer to caller memory, so a connection slot can embed it
 * and a response may arrive split at any byte. Fields marked public may be read by the caller. */
typedef struct zlb_http_parser {
    uint64_t remaining;  /* body or chunk bytes left; Content-Length once read */
    uint64_t body_left;  /* body bytes still allowed (UINT64_MAX: no limit) */
    uint64_t cl_value;   /* the Content-Length value being read */
    uint32_t max_header; /* bytes allowed per head, trailer section or chunk-size line */
    uint32_t unit_bytes; /* bytes of the current head / trailer section / chunk-size line */
    uint16_t status;     /* public: the status code, valid once the status line was read */
    uint8_t state;
    uint8_t error;  /* public: a zlb_http_error_t once ZLB_HTTP_ERROR was returned */
    uint8_t flags;  /* what the header fields said (HTTP/1.1, Connection tokens, framing) */
    uint8_t hname;  /* which interesting field name is being matched or read */
    uint8_t hidx;   /* bytes matched of that name, of a value token, or of the status line */
    uint8_t vstate; /* where in a field value */
    bool head_request;
    bool seen_any;   /* public: a byte of this response arrived (time to first byte) */
    bool keep_alive; /* public, after DONE: the connection may carry the next request */
} zlb_http_parser_t;

/** Prepares p for the next response on a connection. lim may be NULL (defaults); head_request:
 * the request was HEAD, so no body follows whatever the header fields say. Any thread. */
void zlb_http_parser_init(zlb_http_parser_t *p, const zlb_http_limits_t *lim, bool head_request);

/** Feeds the next len bytes of the connection. Returns MORE when all were consumed and the
 * response is not finished (*used = len), DONE when a final response ended (*used = the bytes
 * consumed up to its end; call init again and parse buf + *used for a pipelined next one), or
 * ERROR (p->error says why; *used = where). 1xx interim responses other than 101 are consumed
 * and skipped. Any split point of the input gives the same results. */
zlb_http_result_t zlb_http_parse(zlb_http_parser_t *p, const uint8_t *buf, size_t len,
                                 size_t *used);

/** The peer closed the connection: DONE when the body was delimited by the close (keep_alive is
 * then false), DONE again if the response had already ended, else ERROR (truncated). */
zlb_http_result_t zlb_http_parse_eof(zlb_http_parser_t *p);

/** "malformed_status", "header_too_large", ... for a zlb_http_error_t; "none" for 0. */
const char *zlb_http_error_name(zlb_http_error_t e);

#endif
