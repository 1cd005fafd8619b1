/* parse.c -- HTTP/1.1 response framing (RFC 9112 section 6.3) as a resumable state machine. */
#include "http/http.h"

#include <string.h>

/* The parser reads only what framing and connection reuse need: the status line, and the values
 * of Content-Length, Transfer-Encoding and Connection. Every other field line is skipped with
 * memchr, bodies and chunk data are skipped by length, so the per-byte work is a few dozen bytes
 * of each response. Where a response is ambiguous it is an error or the connection is not
 * reused: a load generator that guesses hides a broken server. */

enum {
    /* Bounded states: the bytes they consume are counted against max_header (a "unit"). */
    ST_STATUS,       /* "HTTP/1.x ddd", hidx = position */
    ST_STATUS_LF,    /* CR right after the status code */
    ST_REASON,       /* the reason phrase, up to LF */
    ST_HDR_START,    /* start of a field line or of the empty line */
    ST_HNAME,        /* matching an interesting field name */
    ST_HSKIP,        /* a field line we do not read, up to LF */
    ST_HVAL,         /* the value of an interesting field */
    ST_HVAL_LF,      /* CR seen at the end of a value */
    ST_HDR_END_LF,   /* CR of the empty line seen */
    ST_CHUNK_SIZE,   /* hex digits, hidx = how many */
    ST_CHUNK_EXT,    /* extensions after ';' (or BWS), up to LF */
    ST_CHUNK_LF,     /* CR after the chunk size seen */
    ST_TRAILER,      /* start of a trailer line or the final empty line */
    ST_TRAILER_SKIP, /* a trailer field line, up to LF */
    ST_TRAILER_LF,   /* CR of the final empty line seen */
    ST_BOUNDED_END,
    /* Body states: counted against max_body, skipped by length. */
    ST_BODY_CL = ST_BOUNDED_END,
    ST_BODY_CLOSE,
    ST_CHUNK_DATA,
    ST_CHUNK_DATA_CR,
    ST_CHUNK_DATA_LF,
    ST_DONE,
    ST_ERROR,
};

enum { F_HTTP11 = 1, F_CLOSE = 2, F_KEEPALIVE = 4, F_HAS_CL = 8, F_HAS_TE = 16, F_CHUNKED = 32 };

/* Field names we read; a name is matched against one candidate at a time (they share prefixes). */
enum { HN_NONE, HN_OTHER, HN_CL, HN_TE, HN_CONN };
static const char *const hn_text[] = {
    [HN_CL] = "content-length", [HN_TE] = "transfer-encoding", [HN_CONN] = "connection"};
static const uint8_t hn_len[] = {[HN_CL] = 14, [HN_TE] = 17, [HN_CONN] = 10};

/* Value tokens (Transfer-Encoding: chunked; Connection: close, keep-alive) and where we are. */
enum { V_OWS, V_TOK_A, V_TOK_B, V_TOK_OTHER, V_AFTER };
enum { V_DIGITS = 1, V_DIGITS_END = 2 }; /* Content-Length's vstate */

/* What a unit step tells the driver. */
enum { STEP_MORE, STEP_UNIT_END, STEP_ERROR };

static const char *const error_names[ZLB_HTTP_ERR_COUNT] = {
    [ZLB_HTTP_ERR_NONE] = "none",
    [ZLB_HTTP_ERR_MALFORMED_STATUS] = "malformed_status",
    [ZLB_HTTP_ERR_BAD_HEADER] = "bad_header",
    [ZLB_HTTP_ERR_BAD_CONTENT_LENGTH] = "bad_content_length",
    [ZLB_HTTP_ERR_HEADER_TOO_LARGE] = "header_too_large",
    [ZLB_HTTP_ERR_BAD_CHUNK] = "bad_chunk",
    [ZLB_HTTP_ERR_BODY_TOO_LARGE] = "body_too_large",
    [ZLB_HTTP_ERR_TRUNCATED] = "truncated",
};

const char *zlb_http_error_name(zlb_http_error_t e)
{
    return (unsigned)e < ZLB_HTTP_ERR_COUNT ? error_names[e] : "unknown";
}

static inline uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* RFC 9110 tchar: the bytes a field name or a token may hold. */
static bool is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static inline int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void reset_head(zlb_http_parser_t *p)
{
    p->state = ST_STATUS;
    p->flags = 0;
    p->hname = HN_NONE;
    p->hidx = 0;
    p->vstate = 0;
    p->remaining = 0;
    p->cl_value = 0;
    p->unit_bytes = 0;
}

void zlb_http_parser_init(zlb_http_parser_t *p, const zlb_http_limits_t *lim, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->max_header =
        (lim && lim->max_header_bytes) ? lim->max_header_bytes : ZLB_HTTP_DEFAULT_MAX_HEADER;
    p->body_left = (lim && lim->max_body_bytes) ? lim->max_body_bytes : UINT64_MAX;
    p->head_request = head_request;
    reset_head(p);
}

static int fail(zlb_http_parser_t *p, zlb_http_error_t e)
{
    p->error = (uint8_t)e;
    p->state = ST_ERROR;
    return STEP_ERROR;
}

/* The empty line ended a head: decide how the body is delimited (RFC 9112 section 6.3). */
static int head_done(zlb_http_parser_t *p)
{
    uint16_t st = p->status;
    if (st < 200 && st != 101) { /* interim: the final response follows on the same bytes */
        reset_head(p);
        return STEP_UNIT_END;
    }
    bool http11 = p->flags & F_HTTP11;
    p->keep_alive = !(p->flags & F_CLOSE) && (http11 || (p->flags & F_KEEPALIVE));
    if (st == 101) { /* the connection now speaks another protocol: not ours to reuse */
        p->keep_alive = false;
        p->state = ST_DONE;
    } else if (p->head_request || st == 204 || st == 304) {
        p->state = ST_DONE;
    } else if (p->flags & F_HAS_TE) {
        /* Transfer-Encoding overrides Content-Length, but a message with both may be a smuggling
         * attempt: read it, never reuse the connection after it. */
        if (p->flags & F_HAS_CL)
            p->keep_alive = false;
        if (p->flags & F_CHUNKED) {
            p->state = ST_CHUNK_SIZE;
            p->remaining = 0;
            p->hidx = 0;
        } else { /* chunked is not the final coding: the close delimits the body */
            p->keep_alive = false;
            p->state = ST_BODY_CLOSE;
        }
    } else if (p->flags & F_HAS_CL) {
        if (p->remaining > p->body_left)
            return fail(p, ZLB_HTTP_ERR_BODY_TOO_LARGE);
        p->state = p->remaining ? ST_BODY_CL : ST_DONE;
    } else {
        p->keep_alive = false;
        p->state = ST_BODY_CLOSE;
    }
    return STEP_UNIT_END;
}

/* A Content-Length list element ended: the first value sets the length, later ones must agree. */
static int cl_commit(zlb_http_parser_t *p)
{
    if (p->vstate == V_OWS)
        return fail(p, ZLB_HTTP_ERR_BAD_CONTENT_LENGTH);
    if ((p->flags & F_HAS_CL) && p->remaining != p->cl_value)
        return fail(p, ZLB_HTTP_ERR_BAD_CONTENT_LENGTH);
    p->remaining = p->cl_value;
    p->flags |= F_HAS_CL;
    p->cl_value = 0;
    p->vstate = V_OWS;
    return STEP_MORE;
}

/* A token of Transfer-Encoding or Connection ended: record what it was. For Transfer-Encoding only
 * the last coding counts ("gzip, chunked" is chunked, "chunked, gzip" is not). */
static void token_commit(zlb_http_parser_t *p)
{
    uint8_t v = p->vstate;
    if (p->hname == HN_TE) {
        if (v == V_TOK_A && p->hidx == 7)
            p->flags |= F_CHUNKED;
        else if (v != V_OWS && v != V_AFTER)
            p->flags &= (uint8_t)~F_CHUNKED;
    } else if (v == V_TOK_A && p->hidx == 5) {
        p->flags |= F_CLOSE;
    } else if (v == V_TOK_B && p->hidx == 10) {
        p->flags |= F_KEEPALIVE;
    }
}

/* One byte of an interesting value. */
static int value_byte(zlb_http_parser_t *p, uint8_t c)
{
    if (p->hname == HN_CL) {
        if (c >= '0' && c <= '9') {
            if (p->vstate == V_DIGITS_END || p->cl_value > (UINT64_MAX - 9) / 10)
                return fail(p, ZLB_HTTP_ERR_BAD_CONTENT_LENGTH);
            p->cl_value = p->cl_value * 10 + (uint64_t)(c - '0');
            p->vstate = V_DIGITS;
            return STEP_MORE;
        }
        switch (c) {
        case ' ':
        case '\t':
            if (p->vstate == V_DIGITS)
                p->vstate = V_DIGITS_END;
            return STEP_MORE;
        case ',':
            return cl_commit(p);
        case '\r':
        case '\n':
            if (cl_commit(p) != STEP_MORE)
                return STEP_ERROR;
            p->state = c == '\r' ? ST_HVAL_LF : ST_HDR_START;
            return STEP_MORE;
        default:
            return fail(p, ZLB_HTTP_ERR_BAD_CONTENT_LENGTH);
        }
    }
    /* Transfer-Encoding or Connection: a comma-separated list of tokens, each maybe with
     * parameters (";q=1") that we skip. */
    static const char *const tok[][2] = {
        [HN_TE] = {"chunked", NULL}, [HN_CONN] = {"close", "keep-alive"}};
    switch (c) {
    case '\r':
    case '\n':
        token_commit(p);
        p->vstate = V_OWS;
        p->state = c == '\r' ? ST_HVAL_LF : ST_HDR_START;
        return STEP_MORE;
    case ',':
        token_commit(p);
        p->vstate = V_OWS;
        return STEP_MORE;
    case ' ':
    case '\t':
    case ';':
        if (p->vstate != V_OWS && p->vstate != V_AFTER) {
            token_commit(p);
            p->vstate = V_AFTER;
        }
        return STEP_MORE;
    default:
        break;
    }
    uint8_t lc = lower(c);
    switch (p->vstate) {
    case V_OWS: {
        const char *const *t = tok[p->hname];
        p->hidx = 1;
        if (t[0] && lc == (uint8_t)t[0][0])
            p->vstate = V_TOK_A;
        else if (t[1] && lc == (uint8_t)t[1][0])
            p->vstate = V_TOK_B;
        else
            p->vstate = V_TOK_OTHER;
        return STEP_MORE;
    }
    case V_TOK_A:
    case V_TOK_B: {
        const char *t = tok[p->hname][p->vstate - V_TOK_A];
        if (t[p->hidx] != '\0' && lc == (uint8_t)t[p->hidx])
            p->hidx++;
        else
            p->vstate = V_TOK_OTHER;
        return STEP_MORE;
    }
    default: /* V_TOK_OTHER, V_AFTER (a parameter's bytes) */
        return STEP_MORE;
    }
}

/* A byte that does not continue the name being matched: maybe another candidate shares the
 * bytes matched so far ("con" of content-length and connection). */
static bool switch_candidate(zlb_http_parser_t *p, uint8_t lc)
{
    for (uint8_t k = HN_CL; k <= HN_CONN; k++) {
        if (k == p->hname || p->hidx >= hn_len[k])
            continue;
        if (memcmp(hn_text[k], hn_text[p->hname], p->hidx) == 0 &&
            (uint8_t)hn_text[k][p->hidx] == lc) {
            p->hname = k;
            p->hidx++;
            return true;
        }
    }
    return false;
}

/* Runs the bounded states over [*sp, lim). Returns STEP_MORE with *sp == lim, STEP_UNIT_END when
 * a head, chunk-size line or trailer section ended (the driver restarts the byte count), or
 * STEP_ERROR with *sp at the offending byte. */
static int bounded_step(zlb_http_parser_t *p, const uint8_t **sp, const uint8_t *lim)
{
    const uint8_t *s = *sp;
    int r = STEP_MORE;
    while (s < lim) {
        uint8_t c = *s;
        switch (p->state) {
        case ST_STATUS: {
            static const char prefix[] = "HTTP/1.";
            uint8_t i = p->hidx;
            if (i < 7) {
                if (c != (uint8_t)prefix[i])
                    goto malformed_status;
            } else if (i == 7) {
                if (c < '0' || c > '9')
                    goto malformed_status;
                if (c != '0')
                    p->flags |= F_HTTP11;
            } else if (i == 8) {
                if (c != ' ')
                    goto malformed_status;
                p->status = 0;
            } else if (i < 12) {
                if (c < '0' || c > '9' || (i == 9 && c == '0'))
                    goto malformed_status;
                p->status = (uint16_t)(p->status * 10 + (c - '0'));
            } else {
                p->hname = HN_NONE;
                if (c == ' ')
                    p->state = ST_REASON;
                else if (c == '\r')
                    p->state = ST_STATUS_LF; /* an empty reason without its SP: tolerated */
                else if (c == '\n')
                    p->state = ST_HDR_START;
                else
                    goto malformed_status;
            }
            p->hidx++;
            s++;
            break;
        }
        case ST_REASON:
        case ST_HSKIP:
        case ST_CHUNK_EXT:
        case ST_TRAILER_SKIP: {
            const uint8_t *nl = memchr(s, '\n', (size_t)(lim - s));
            if (!nl) {
                s = lim;
                break;
            }
            s = nl + 1;
            if (p->state == ST_CHUNK_EXT)
                goto chunk_line_end;
            p->state = p->state == ST_TRAILER_SKIP ? ST_TRAILER : ST_HDR_START;
            break;
        }
        case ST_HDR_START:
            s++;
            if (c == '\r') {
                p->state = ST_HDR_END_LF;
            } else if (c == '\n') {
                r = head_done(p);
                goto out;
            } else if (c == ' ' || c == '\t') {
                /* obs-fold: harmless after a field we skip, ambiguous after one we read */
                if (p->hname != HN_NONE && p->hname != HN_OTHER) {
                    s--;
                    r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
                    goto out;
                }
                p->state = ST_HSKIP;
            } else {
                uint8_t lc = lower(c);
                p->hidx = 1;
                p->vstate = V_OWS;
                if (lc == 'c') {
                    p->hname = HN_CL;
                    p->state = ST_HNAME;
                } else if (lc == 't') {
                    p->hname = HN_TE;
                    p->state = ST_HNAME;
                } else if (is_tchar(c)) {
                    p->hname = HN_OTHER;
                    p->state = ST_HSKIP;
                } else {
                    s--;
                    r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
                    goto out;
                }
            }
            break;
        case ST_HNAME: {
            uint8_t lc = lower(c);
            if (c == ':') {
                if (p->hidx == hn_len[p->hname]) {
                    p->state = ST_HVAL;
                    if (p->hname == HN_TE)
                        p->flags |= F_HAS_TE;
                } else {
                    p->hname = HN_OTHER;
                    p->state = ST_HSKIP;
                }
            } else if (p->hidx < hn_len[p->hname] && lc == (uint8_t)hn_text[p->hname][p->hidx]) {
                p->hidx++;
            } else if (!switch_candidate(p, lc)) {
                if (!is_tchar(c)) { /* "Content-Length :" and the like */
                    r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
                    goto out;
                }
                p->hname = HN_OTHER;
                p->state = ST_HSKIP;
            }
            s++;
            break;
        }
        case ST_HVAL:
            if (value_byte(p, c) != STEP_MORE) {
                r = STEP_ERROR;
                goto out;
            }
            s++;
            break;
        case ST_STATUS_LF:
            if (c != '\n')
                goto malformed_status;
            s++;
            p->state = ST_HDR_START;
            break;
        case ST_HVAL_LF:
            if (c != '\n') {
                r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
                goto out;
            }
            s++;
            p->state = ST_HDR_START;
            break;
        case ST_HDR_END_LF:
            if (c != '\n') {
                r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
                goto out;
            }
            s++;
            r = head_done(p);
            goto out;
        case ST_CHUNK_SIZE: {
            int v = hex_value(c);
            if (v >= 0) {
                if (p->hidx == 16) { /* more than 64 bits of size */
                    r = fail(p, ZLB_HTTP_ERR_BAD_CHUNK);
                    goto out;
                }
                p->remaining = (p->remaining << 4) | (uint64_t)v;
                p->hidx++;
                s++;
                break;
            }
            if (p->hidx == 0 || (c != ';' && c != ' ' && c != '\t' && c != '\r' && c != '\n')) {
                r = fail(p, ZLB_HTTP_ERR_BAD_CHUNK);
                goto out;
            }
            s++;
            if (c == '\n')
                goto chunk_line_end;
            p->state = c == '\r' ? ST_CHUNK_LF : ST_CHUNK_EXT;
            break;
        }
        case ST_CHUNK_LF:
            if (c != '\n') {
                r = fail(p, ZLB_HTTP_ERR_BAD_CHUNK);
                goto out;
            }
            s++;
            goto chunk_line_end;
        case ST_TRAILER:
            s++;
            if (c == '\r') {
                p->state = ST_TRAILER_LF;
            } else if (c == '\n') {
                p->state = ST_DONE;
                r = STEP_UNIT_END;
                goto out;
            } else {
                p->state = ST_TRAILER_SKIP;
            }
            break;
        case ST_TRAILER_LF:
            if (c != '\n') {
                r = fail(p, ZLB_HTTP_ERR_BAD_CHUNK);
                goto out;
            }
            s++;
            p->state = ST_DONE;
            r = STEP_UNIT_END;
            goto out;
        default: /* not a bounded state: the driver never calls us there */
            r = fail(p, ZLB_HTTP_ERR_BAD_HEADER);
            goto out;
        }
        continue;

    chunk_line_end:
        if (p->remaining == 0) {
            p->state = ST_TRAILER;
        } else {
            if (p->remaining > p->body_left) {
                r = fail(p, ZLB_HTTP_ERR_BODY_TOO_LARGE);
                goto out;
            }
            p->body_left -= p->remaining;
            p->state = ST_CHUNK_DATA;
        }
        r = STEP_UNIT_END;
        goto out;

    malformed_status:
        r = fail(p, ZLB_HTTP_ERR_MALFORMED_STATUS);
        goto out;
    }
out:
    *sp = s;
    return r;
}

zlb_http_result_t zlb_http_parse(zlb_http_parser_t *p, const uint8_t *buf, size_t len, size_t *used)
{
    const uint8_t *s = buf, *end = buf + len;
    if (len > 0 && p->state < ST_DONE)
        p->seen_any = true;
    while (s < end) {
        uint8_t st = p->state;
        if (st < ST_BOUNDED_END) {
            /* Parse at most the bytes the unit may still take, so a unit too large fails at the
             * same byte whatever the reads' sizes were. */
            size_t room = p->max_header - p->unit_bytes;
            const uint8_t *lim = (size_t)(end - s) > room ? s + room : end;
            const uint8_t *from = s;
            int r = bounded_step(p, &s, lim);
            p->unit_bytes += (uint32_t)(s - from);
            if (r == STEP_ERROR)
                break;
            if (r == STEP_UNIT_END) {
                p->unit_bytes = 0;
                continue;
            }
            if (lim < end) {
                p->error = p->state >= ST_CHUNK_SIZE && p->state <= ST_CHUNK_LF
                               ? ZLB_HTTP_ERR_BAD_CHUNK
                               : ZLB_HTTP_ERR_HEADER_TOO_LARGE;
                p->state = ST_ERROR;
                break;
            }
            continue;
        }
        switch (st) {
        case ST_BODY_CL:
        case ST_CHUNK_DATA: {
            size_t n = (size_t)(end - s);
            if (n > p->remaining)
                n = (size_t)p->remaining;
            s += n;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = st == ST_BODY_CL ? ST_DONE : ST_CHUNK_DATA_CR;
            break;
        }
        case ST_BODY_CLOSE: {
            size_t n = (size_t)(end - s);
            if (n > p->body_left) {
                s += p->body_left;
                p->error = ZLB_HTTP_ERR_BODY_TOO_LARGE;
                p->state = ST_ERROR;
                break;
            }
            p->body_left -= n;
            s = end;
            break;
        }
        case ST_CHUNK_DATA_CR:
        case ST_CHUNK_DATA_LF:
            if (*s == '\n') {
                p->state = ST_CHUNK_SIZE;
                p->hidx = 0;
                p->unit_bytes = 0;
            } else if (*s == '\r' && st == ST_CHUNK_DATA_CR) {
                p->state = ST_CHUNK_DATA_LF;
            } else {
                p->error = ZLB_HTTP_ERR_BAD_CHUNK;
                p->state = ST_ERROR;
                break;
            }
            s++;
            break;
        default: /* ST_DONE, ST_ERROR */
            goto finish;
        }
    }
finish:
    *used = (size_t)(s - buf);
    if (p->state == ST_DONE)
        return ZLB_HTTP_DONE;
    if (p->state == ST_ERROR)
        return ZLB_HTTP_ERROR;
    return ZLB_HTTP_MORE;
}

zlb_http_result_t zlb_http_parse_eof(zlb_http_parser_t *p)
{
    if (p->state == ST_BODY_CLOSE)
        p->state = ST_DONE;
    if (p->state == ST_DONE)
        return ZLB_HTTP_DONE;
    if (p->state != ST_ERROR) {
        p->error = ZLB_HTTP_ERR_TRUNCATED;
        p->state = ST_ERROR;
    }
    return ZLB_HTTP_ERROR;
}
