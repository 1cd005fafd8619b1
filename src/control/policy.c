/* policy.c -- what the control port answers to one request: pure, no sockets, no libmicrohttpd. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "control/control_internal.h"
#include "core/core.h"

/* Only printable ASCII travels in a request target; a %-escape that decodes to a control byte
 * (%00 truncated "/stats%00" to "/stats" after decoding) is refused before anything routes. */
bool zlb_control_uri_clean(const char *uri)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)uri; *p; p++) {
        if (*p < 0x21 || *p == 0x7f)
            return false;
        if (*p == '%' && p[1] && p[2]) {
            const char *h = strchr(hex, p[1] | 0x20), *l = strchr(hex, p[2] | 0x20);
            if (h && l && *h && *l) {
                unsigned v = (unsigned)((h - hex) << 4 | (l - hex));
                if (v < 0x20 || v == 0x7f)
                    return false;
            }
        }
    }
    return true;
}

/* host[:port] of a Host header or an origin's authority: is it a loopback name or literal, and
 * does its port (when given) equal ours? A browser pointed at a rebound name (evil.example
 * resolving to 127.0.0.1) sends that name, which is what this refuses. */
bool zlb_control_host_is_local(const char *host, uint16_t port)
{
    char h[ZLB_CONTROL_ADDR_MAX];
    uint16_t p = 0;
    const char *colon;
    size_t hl;

    if (!host || !*host)
        return false;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end)
            return false;
        hl = (size_t)(end - host) + 1;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            return false;
    } else {
        colon = strchr(host, ':');
        hl = colon ? (size_t)(colon - host) : strlen(host);
    }
    if (hl == 0 || hl >= sizeof(h))
        return false;
    memcpy(h, host, hl);
    h[hl] = '\0';
    if (colon) {
        const char *d = colon + 1;
        unsigned long v = 0;
        if (!*d || strlen(d) > 5)
            return false;
        for (; *d; d++) {
            if (*d < '0' || *d > '9')
                return false;
            v = v * 10 + (unsigned long)(*d - '0');
        }
        if (v > 65535)
            return false;
        p = (uint16_t)v;
        if (p != port)
            return false;
    }
    size_t n = strlen(h);
    if (n && h[n - 1] == '.') /* "localhost." is the same name */
        h[--n] = '\0';
    if (strcasecmp(h, "localhost") == 0 || strcasecmp(h, "[::1]") == 0)
        return true;
    if (n > 10 && strcasecmp(h + n - 10, ".localhost") == 0) /* RFC 6761: loopback by definition */
        return true;
    /* A dotted-quad in 127.0.0.0/8, written plainly (no octal, hex or short forms). */
    unsigned a, b, c, d;
    char tail;
    if (sscanf(h, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
        c < 256 && d < 256 && h[0] == '1') {
        for (const char *q = h; *q; q++)
            if (*q != '.' && (*q < '0' || *q > '9'))
                return false;
        return true;
    }
    return false;
}

/* An Origin is "scheme://authority" (or "null"); local when the authority is. */
static bool origin_is_local(const char *origin, uint16_t port)
{
    const char *sep = strstr(origin, "://");
    if (!sep || strncasecmp(origin, "http", 4) != 0)
        return false;
    const char *auth = sep + 3;
    if (strchr(auth, '/'))
        return false;
    return zlb_control_host_is_local(auth, port);
}

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

static zlb_control_verdict_t verdict(zlb_control_action_t a, unsigned status, const char *why)
{
    zlb_control_verdict_t v = {.action = a, .status = status, .reason = why};
    return v;
}

zlb_control_verdict_t zlb_control_decide(const zlb_control_policy_t *pol,
                                         const zlb_control_req_t *rq)
{
    bool patch_run = pol->can_patch && strcmp(rq->path, "/run") == 0;
    bool is_patch = strcmp(rq->method, "PATCH") == 0;

    if (!rq->uri_clean)
        return verdict(ZLB_CONTROL_REFUSE, 400, "control characters in the request target");
    /* A body is read for PATCH /run alone, and never past the bound: one announced as longer
     * is refused before a byte of it is read. */
    if (rq->has_body && !(patch_run && is_patch))
        return verdict(ZLB_CONTROL_REFUSE, 413, "request bodies are not accepted");
    if (rq->has_body && rq->body_len > ZLB_CONTROL_BODY_MAX)
        return rq->body_len == UINT64_MAX
                   /* libmicrohttpd takes no answer in mid-body, so a chunked body could only
                    * be read to its end or cut off unanswered: refused before it starts. */
                   ? verdict(ZLB_CONTROL_REFUSE, 411,
                             "a request body needs a Content-Length (chunked is not read)")
                   : verdict(ZLB_CONTROL_REFUSE, 413, "request body over 65536 bytes");
    /* On loopback the browser is the threat (DNS rebinding, cross-site requests): only a local
     * Host is served. Once exposed, every request needs the token, which a page cannot know. */
    if (!pol->exposed && rq->host && !zlb_control_host_is_local(rq->host, pol->port))
        return verdict(ZLB_CONTROL_REFUSE, 421, "Host is not this control port");

    bool is_get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    bool is_post = strcmp(rq->method, "POST") == 0;
    bool need_token = pol->has_token && !rq->authorized;

    /* The dashboard's files hold no data (the page fetches /stats itself, with the token), so
     * a browser without the token can load the page that asks for it. */
    if (rq->asset)
        return is_get ? verdict(ZLB_CONTROL_ASSET, 200, NULL)
                      : verdict(ZLB_CONTROL_NOT_ALLOWED, 405, "GET, HEAD");

    /* Once exposed, the config and stats documents describe targets and infrastructure: every
     * request needs the token. On loopback only the state change does. */
    if (need_token && pol->exposed)
        return verdict(ZLB_CONTROL_UNAUTHORIZED, 401, "unauthorized");
    /* GET /run is the published document; PATCH changes it, with the guards of POST /stop
     * but the content type's: a browser sends a cross-site PATCH only after a CORS preflight,
     * which this port never answers, so no form can forge one (and `curl -X PATCH -d` works). */
    if (patch_run && !is_get) {
        if (!is_patch)
            return verdict(ZLB_CONTROL_NOT_ALLOWED, 405, "GET, HEAD, PATCH");
        if (rq->origin && !origin_is_local(rq->origin, pol->port))
            return verdict(ZLB_CONTROL_REFUSE, 403, "cross-origin request refused");
        if (need_token)
            return verdict(ZLB_CONTROL_UNAUTHORIZED, 401, "unauthorized");
        return verdict(ZLB_CONTROL_PATCH, 200, NULL);
    }
    bool pause = strcmp(rq->path, "/pause") == 0, resume = strcmp(rq->path, "/resume") == 0;
    if (strcmp(rq->path, "/stop") == 0 || ((pause || resume) && pol->can_pause)) {
        if (!is_post)
            return verdict(ZLB_CONTROL_NOT_ALLOWED, 405, "POST");
        /* The state changes. "null" is what sandboxed frames and file: pages send. */
        if (rq->origin && !origin_is_local(rq->origin, pol->port))
            return verdict(ZLB_CONTROL_REFUSE, 403, "cross-origin request refused");
        if (need_token)
            return verdict(ZLB_CONTROL_UNAUTHORIZED, 401, "unauthorized");
        /* A cross-site form can send neither a JSON content type nor a custom header without a
         * CORS preflight, which this port never answers. */
        if (!rq->authorization && !is_json_type(rq->content_type) && !rq->custom_header)
            return verdict(ZLB_CONTROL_REFUSE, 403,
                           "POST needs Content-Type: application/json, an X-Zlbench-Request "
                           "header or a bearer token");
        if (pause || resume)
            return verdict(pause ? ZLB_CONTROL_PAUSE : ZLB_CONTROL_RESUME, 200, NULL);
        return verdict(ZLB_CONTROL_STOP, 202, NULL);
    }
    if (!rq->published)
        return verdict(ZLB_CONTROL_NOT_FOUND, 404, "not found");
    if (!is_get)
        return verdict(ZLB_CONTROL_NOT_ALLOWED, 405, "GET, HEAD");
    return verdict(ZLB_CONTROL_SERVE, 200, NULL);
}

/* Unknown paths arrive percent-decoded and may hold any byte; only printable ASCII is echoed
 * as is, the rest as \u escapes (bytes >= 0x80 as U+FFFD), so the body is always valid JSON. */
void zlb_control_json_escape(char *out, size_t cap, const char *in)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; in[i] && i < ZLB_CONTROL_ECHO_MAX; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (o + 7 >= cap)
            break;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else if (ch >= 0x80) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
        } else {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[ch >> 4];
            out[o + 5] = hex[ch & 15];
            o += 6;
        }
    }
    out[o] = '\0';
}
