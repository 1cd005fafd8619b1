/* fuzz_control_request.c -- libFuzzer: the control port's request handling fed synthetic requests
 * (no sockets): the policy's verdict, the raw-target check, the Host/Origin check, the 404 body's
 * escaping and the token helpers. The answer must be one the port can give, a request it refuses
 * must change nothing, and every 404 body must be valid JSON. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/control_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fields separated by '\n': method, raw target, Host, Origin, Content-Type, Authorization,
 * token. The first byte's bits: exposed, has_token, custom header, field presence. */
#define NFIELDS 7

static void percent_decode(const char *in, char *out)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && in[i] != '?'; i++) {
        unsigned v;
        if (in[i] == '%' && in[i + 1] && in[i + 2] && sscanf(in + i + 1, "%2x", &v) == 1) {
            out[o++] = (char)v; /* a NUL here ends the path, as libmicrohttpd's decoding does */
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t bits = data[0];
    char *buf = malloc(size);
    if (!buf)
        abort();
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';

    char *field[NFIELDS] = {0};
    char *p = buf;
    for (int i = 0; i < NFIELDS; i++) {
        field[i] = p;
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl)
            *nl = '\0';
        p = nl ? nl + 1 : NULL;
        if (!p)
            break;
    }
    const char *method = field[0] ? field[0] : "GET";
    const char *target = field[1] ? field[1] : "/";
    char *path = malloc(strlen(target) + 1);
    if (!path)
        abort();
    percent_decode(target, path);

    zlb_control_policy_t pol = {.exposed = bits & 1,
                                .has_token = bits & 2,
                                .port = (uint16_t)(8000 + (bits >> 7)),
                                .can_pause = bits & 64};
    const char *token = field[6] && *field[6] ? field[6] : "s3cret";
    const char *auth = (bits & 32) ? field[5] : NULL;
    bool authorized = false;
    if (auth && strncmp(auth, "Bearer ", 7) == 0 && pol.has_token)
        authorized = zlb_control_token_equal(token, strlen(token), auth + 7, strlen(auth + 7));
    zlb_control_req_t rq = {
        .method = method,
        .path = path,
        .uri_clean = zlb_control_uri_clean(target),
        .has_body = false,
        .host = (bits & 8) ? field[2] : NULL,
        .origin = (bits & 16) ? field[3] : NULL,
        .content_type = field[4],
        .authorization = auth,
        .custom_header = bits & 4,
        .authorized = authorized,
        .published = strcmp(path, "/stats") == 0 || strcmp(path, "/health") == 0,
    };
    zlb_control_verdict_t v = zlb_control_decide(&pol, &rq);

    switch (v.status) {
    case 200:
    case 202:
    case 400:
    case 401:
    case 403:
    case 404:
    case 405:
    case 413:
    case 421:
        break;
    default:
        abort();
    }
    if (!rq.uri_clean && v.status != 400)
        abort();
    /* The state changes happen only for POST /stop, /pause, /resume that passed every guard. */
    if (v.action == ZLB_CONTROL_STOP || v.action == ZLB_CONTROL_PAUSE ||
        v.action == ZLB_CONTROL_RESUME) {
        const char *want = v.action == ZLB_CONTROL_STOP    ? "/stop"
                           : v.action == ZLB_CONTROL_PAUSE ? "/pause"
                                                           : "/resume";
        if (strcmp(method, "POST") != 0 || strcmp(path, want) != 0 || !rq.uri_clean)
            abort();
        if (v.action != ZLB_CONTROL_STOP && !pol.can_pause)
            abort();
        if (pol.has_token && !authorized)
            abort();
        if (!pol.exposed && rq.host && !zlb_control_host_is_local(rq.host, pol.port))
            abort();
        if (!rq.authorization && !rq.custom_header && !rq.content_type)
            abort();
    }
    if (v.action == ZLB_CONTROL_SERVE &&
        (!rq.published || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)))
        abort();
    if (pol.exposed && pol.has_token && !authorized &&
        (v.action == ZLB_CONTROL_SERVE || v.action == ZLB_CONTROL_STOP ||
         v.action == ZLB_CONTROL_PAUSE || v.action == ZLB_CONTROL_RESUME))
        abort();
    if ((v.action == ZLB_CONTROL_REFUSE || v.action == ZLB_CONTROL_NOT_ALLOWED) && !v.reason)
        abort();

    /* The 404 body echoes the decoded path: always valid JSON. */
    char esc[ZLB_CONTROL_ECHO_MAX * 6 + 8];
    char body[sizeof(esc) + 32];
    zlb_control_json_escape(esc, sizeof(esc), path);
    snprintf(body, sizeof(body), "{\"path\":\"%s\"}", esc);
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (!j) {
        fprintf(stderr, "404 body is not JSON: %s (%s)\n", body, jerr.text);
        abort();
    }
    json_decref(j);

    if (field[2])
        (void)zlb_control_host_is_local(field[2], pol.port);
    (void)zlb_control_token_valid(token, strlen(token));
    struct sockaddr_storage ss;
    socklen_t sslen;
    bool loopback;
    (void)zlb_control_parse_listen(field[2] ? field[2] : "", &ss, &sslen, &loopback);
    free(path);
    free(buf);
    return 0;
}
