/* config_http.c -- the http workload's keys: request templates, keep-alive, pipelining, rate and
 * response limits. Bodies are read here, at load, so a missing file is a config error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

#define MAX_REQUESTS 256
#define MAX_HEADERS 64
#define MAX_BODY (64ull << 20)
#define MAX_PIPELINE 256

/* RFC 9110 tchar: what a method and a field name are made of. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!(ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch)))
            return false;
    }
    return true;
}

/* A field value or request target: visible characters (and, in values, spaces/tabs), no CR/LF,
 * so that no configured string can split a request. */
static bool is_field_text(const char *s, bool spaces)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\r' || ch == '\n' || ch == 127 || (ch < 32 && !(spaces && ch == '\t')) ||
            (ch == ' ' && !spaces))
            return false;
    }
    return true;
}

int zlb_config_read_file(zlb_config_ctx_t *c, const char *path, uint64_t max, uint8_t **out,
                         size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;

    if (!f)
        return zlb_config_fail(c, "cannot read %s: %s", path, strerror(errno));
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = zlb_xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > max) {
            fclose(f);
            free(buf);
            return zlb_config_fail(c, "%s is larger than %llu bytes", path,
                                   (unsigned long long)max);
        }
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return zlb_config_fail(c, "cannot read %s", path);
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int parse_headers(zlb_config_ctx_t *c, const json_t *o, zlb_http_request_config_t *r)
{
    const char *key;
    json_t *v;
    char g[64];

    TRY(zlb_config_check_object(c, o));
    if (json_object_size(o) > MAX_HEADERS)
        return zlb_config_fail(c, "at most %d headers", MAX_HEADERS);
    r->headers = zlb_xcalloc(json_object_size(o) + 1, sizeof(*r->headers));
    json_object_foreach((json_t *)o, key, v)
    {
        size_t mark = zlb_config_push(c, key);
        if (!is_token(key))
            return zlb_config_fail_key(c, "not a valid header name");
        if (strcasecmp(key, "content-length") == 0 || strcasecmp(key, "transfer-encoding") == 0)
            return zlb_config_fail_key(c, "set from the body; leave it out");
        if (strcasecmp(key, "connection") == 0)
            return zlb_config_fail_key(c, "set from workload.keepalive; leave it out");
        if (!json_is_string(v))
            return zlb_config_fail(c, "expected a string, got %s", zlb_config_got(v, g, sizeof(g)));
        if (!is_field_text(json_string_value(v), true) ||
            strlen(json_string_value(v)) != json_string_length(v))
            return zlb_config_fail(c, "must not contain CR, LF or control characters");
        r->headers[r->nheaders].name = zlb_xstrdup(key);
        r->headers[r->nheaders].value = zlb_xstrdup(json_string_value(v));
        r->nheaders++;
        zlb_config_pop(c, mark);
    }
    return 0;
}

static int parse_request(zlb_config_ctx_t *c, const json_t *o, zlb_http_request_config_t *r)
{
    static const char *const keys[] = {"method", "path", "headers", "body", "body_file", "weight"};
    int64_t weight = 1;
    json_t *v;

    TRY(zlb_config_check_object(c, o));
    TRY(zlb_config_check_keys(c, o, keys, ZLB_ARRAY_LEN(keys)));
    TRY(zlb_config_get_string(c, o, "method", false, &r->method));
    if (!is_token(r->method)) {
        size_t mark = zlb_config_push(c, "method");
        int rc = zlb_config_fail(c, "not a valid method token");
        zlb_config_pop(c, mark);
        return rc;
    }
    TRY(zlb_config_get_string(c, o, "path", false, &r->path));
    if (!is_field_text(r->path, false) ||
        (r->path[0] != '/' && strcmp(r->path, "*") != 0 && strncmp(r->path, "http://", 7) != 0 &&
         strncmp(r->path, "https://", 8) != 0)) {
        size_t mark = zlb_config_push(c, "path");
        int rc = zlb_config_fail(c, "a request target: \"/...\", \"*\" or an absolute URI, "
                                    "without spaces or control characters");
        zlb_config_pop(c, mark);
        return rc;
    }
    if ((v = json_object_get(o, "headers"))) {
        size_t mark = zlb_config_push(c, "headers");
        TRY(parse_headers(c, v, r));
        zlb_config_pop(c, mark);
    }
    if (json_object_get(o, "body") && json_object_get(o, "body_file")) {
        size_t mark = zlb_config_push(c, "body_file");
        int rc = zlb_config_fail_key(c, "give either body or body_file, not both");
        zlb_config_pop(c, mark);
        return rc;
    }
    if ((v = json_object_get(o, "body"))) {
        char g[64];
        size_t mark = zlb_config_push(c, "body");
        if (!json_is_string(v))
            return zlb_config_fail(c, "expected a string, got %s", zlb_config_got(v, g, sizeof(g)));
        r->body_len = json_string_length(v);
        r->body = zlb_xmalloc(r->body_len + 1);
        memcpy(r->body, json_string_value(v), r->body_len);
        zlb_config_pop(c, mark);
    }
    TRY(zlb_config_get_string(c, o, "body_file", false, &r->body_file));
    if (r->body_file) {
        size_t mark = zlb_config_push(c, "body_file");
        TRY(zlb_config_read_file(c, r->body_file, MAX_BODY, &r->body, &r->body_len));
        zlb_config_pop(c, mark);
    }
    TRY(zlb_config_get_int(c, o, "weight", 1, 1000000, &weight));
    r->weight = (uint32_t)weight;
    return 0;
}

static int parse_requests(zlb_config_ctx_t *c, const json_t *v, zlb_workload_config_t *w)
{
    char g[64];
    size_t mark = zlb_config_push(c, "requests");

    if (!json_is_array(v))
        return zlb_config_fail(c, "expected an array of requests, got %s",
                               zlb_config_got(v, g, sizeof(g)));
    if (json_array_size(v) == 0 || json_array_size(v) > MAX_REQUESTS)
        return zlb_config_fail(c, "must list 1..%d requests", MAX_REQUESTS);
    w->requests = zlb_xcalloc(json_array_size(v), sizeof(*w->requests));
    for (size_t i = 0; i < json_array_size(v); i++) {
        zlb_http_request_config_t *r = &w->requests[i];
        r->method = zlb_xstrdup("GET");
        r->path = zlb_xstrdup("/");
        r->weight = 1;
        w->nrequests = i + 1;
        size_t m2 = zlb_config_path_push_index(&c->path, i);
        TRY(parse_request(c, json_array_get(v, i), r));
        zlb_config_pop(c, m2);
    }
    zlb_config_pop(c, mark);
    return 0;
}

int zlb_config_parse_http(zlb_config_ctx_t *c, const json_t *o, zlb_workload_config_t *w)
{
    int64_t x;
    json_t *v;

    if ((v = json_object_get(o, "requests")))
        TRY(parse_requests(c, v, w));
    TRY(zlb_config_get_bool(c, o, "keepalive", &w->keepalive));
    x = w->pipeline;
    TRY(zlb_config_get_int(c, o, "pipeline", 1, MAX_PIPELINE, &x));
    w->pipeline = (uint32_t)x;
    TRY(zlb_config_get_number(c, o, "request_rate", 0, 1e9, "0..1e9", &w->request_rate));
    TRY(zlb_config_get_size(c, o, "max_response_size", 0, 1ull << 40, &w->max_response_size));
    uint64_t hs = w->max_header_size;
    TRY(zlb_config_get_size(c, o, "max_header_size", 256, 1u << 24, &hs));
    w->max_header_size = (uint32_t)hs;
    if (!w->keepalive && w->pipeline > 1) {
        size_t mark = zlb_config_push(c, "pipeline");
        int rc = zlb_config_fail(c, "pipelining needs keepalive (one request per connection "
                                    "without it)");
        zlb_config_pop(c, mark);
        return rc;
    }
    return 0;
}

/* The effective config's view of the templates. */
json_t *zlb_config_http_requests_json(const zlb_workload_config_t *w)
{
    json_t *a = json_array();
    for (size_t i = 0; i < w->nrequests; i++) {
        const zlb_http_request_config_t *r = &w->requests[i];
        json_t *h = json_object();
        for (size_t k = 0; k < r->nheaders; k++)
            json_object_set_new(h, r->headers[k].name, json_string(r->headers[k].value));
        json_t *o = json_pack("{s:s, s:s, s:o, s:I}", "method", r->method, "path", r->path,
                              "headers", h, "weight", (json_int_t)r->weight);
        if (r->body_file)
            json_object_set_new(o, "body_file", json_string(r->body_file));
        else if (r->body)
            json_object_set_new(o, "body", json_stringn((const char *)r->body, r->body_len));
        json_array_append_new(a, o);
    }
    return a;
}
