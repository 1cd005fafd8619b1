/* fuzz_http_parse.c -- libFuzzer: the response parser never reads out of bounds, and a stream cut
 * at any point (or fed in small pieces) parses exactly as the whole stream does. */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESP 64

typedef struct outcome {
    int n;
    uint16_t status[MAX_RESP];
    uint8_t keep_alive[MAX_RESP];
    size_t end[MAX_RESP];
    int last;
    int error;
    size_t error_at;
} outcome_t;

/* Feeds data in pieces: the first cut at `cut`, then pieces of `step` bytes (0: the rest at once).
 * A fresh copy of each piece on the heap, so ASan sees any read past the piece's end. */
static void feed(const uint8_t *data, size_t len, size_t cut, size_t step, int eof, int head,
                 const zlb_http_limits_t *lim, outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    zlb_http_parser_t p;
    zlb_http_parser_init(&p, lim, head);
    size_t off = 0;
    while (off < len) {
        size_t stop = len;
        if (off < cut)
            stop = cut;
        else if (step)
            stop = off + step < len ? off + step : len;
        size_t plen = stop - off;
        uint8_t *piece = malloc(plen);
        if (!piece)
            abort();
        memcpy(piece, data + off, plen);
        size_t pos = 0;
        while (pos < plen) {
            size_t used = 0;
            zlb_http_result_t r = zlb_http_parse(&p, piece + pos, plen - pos, &used);
            if (used > plen - pos)
                abort();
            pos += used;
            if (r == ZLB_HTTP_ERROR) {
                o->last = r;
                o->error = p.error;
                o->error_at = off + pos;
                if (p.error == ZLB_HTTP_ERR_NONE || p.error >= ZLB_HTTP_ERR_COUNT)
                    abort();
                free(piece);
                return;
            }
            if (r == ZLB_HTTP_DONE) {
                if (p.status < 100 || p.status > 999 || o->n == MAX_RESP) {
                    free(piece);
                    return; /* the bound on responses recorded, not a bug */
                }
                o->status[o->n] = p.status;
                o->keep_alive[o->n] = p.keep_alive;
                o->end[o->n++] = off + pos;
                zlb_http_parser_init(&p, lim, head);
                continue;
            }
            if (pos != plen) /* MORE consumes all */
                abort();
        }
        free(piece);
        off = stop;
    }
    o->last = ZLB_HTTP_MORE;
    if (eof && p.seen_any) {
        o->last = zlb_http_parse_eof(&p);
        if (o->last == ZLB_HTTP_ERROR)
            o->error = p.error;
    }
}

static void compare(const outcome_t *a, const outcome_t *b, const char *what)
{
    if (memcmp(a, b, sizeof(*a)) != 0) {
        fprintf(stderr, "%s: whole n=%d last=%d error=%d@%zu, split n=%d last=%d error=%d@%zu\n",
                what, a->n, a->last, a->error, a->error_at, b->n, b->last, b->error, b->error_at);
        abort();
    }
}

/* Input: 4 control bytes (cut point, piece size, flags: HEAD, EOF, small limits), then the
 * stream. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t cut = (size_t)data[0] | (size_t)data[1] << 8;
    size_t step = data[2] & 0x0f;
    int head = data[3] & 1, eof = (data[3] >> 1) & 1;
    zlb_http_limits_t lim = {0};
    if (data[3] & 4)
        lim = (zlb_http_limits_t){.max_header_bytes = 64u + (data[2] >> 4) * 8u,
                                  .max_body_bytes = 1u + (data[3] >> 3)};
    data += 4;
    size -= 4;
    if (size)
        cut %= size;
    static outcome_t whole, split;
    feed(data, size, 0, 0, eof, head, &lim, &whole);
    feed(data, size, cut, 0, eof, head, &lim, &split);
    compare(&whole, &split, "one cut");
    if (step) {
        feed(data, size, cut, step, eof, head, &lim, &split);
        compare(&whole, &split, "small pieces");
    }
    return 0;
}
