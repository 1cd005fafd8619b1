/* control_internal.h -- control module helpers shared by its own files and its unit test. */
#ifndef ZLB_CONTROL_INTERNAL_H
#define ZLB_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
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

#endif
