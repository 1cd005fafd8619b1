/* redis.c -- the target's redis mode: answers PING as a Redis server does (RESP array
 * "*1\r\n$4\r\nPING\r\n" or inline "PING\r\n" -> "+PONG\r\n") and every other command with
 * "-ERR unknown command\r\n", so the message workload can be pointed at it the way it would be
 * pointed at a real redis-server. Requests may come pipelined and split anywhere: the parser's
 * state lives in the connection, and the replies of one read go out in one write from a buffer on
 * the stack (no allocation per request; only a peer that stops reading makes its replies wait in
 * the connection's stash, as echo's do). */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "serve/serve_internal.h"

static const char PONG[] = "+PONG\r\n";
static const char UNKNOWN[] = "-ERR unknown command\r\n";
static const char PROTOCOL[] = "-ERR Protocol error\r\n";
static const char PING_RESP[] = "*1\r\n$4\r\nPING\r\n";
static const char PING_INLINE[] = "PING\r\n";

/* Longest request line (inline) or bulk length we read before calling it a protocol error,
 * as redis-server does for inline requests over 64 KiB. */
#define INLINE_MAX (64u * 1024u)
#define NUM_MAX 1000000000LL

enum {
    R_START,     /* a request's first byte */
    R_INLINE,    /* an inline command line, up to LF */
    R_ARR_COUNT, /* "*N\r\n": the digits of N */
    R_BULK_HDR,  /* '$' of the next argument */
    R_BULK_LEN,  /* its length's digits */
    R_BULK_DATA, /* its bytes */
    R_BULK_CRLF, /* the CRLF after them */
    R_NUM_LF,    /* the LF ending a number (array count or bulk length) */
    R_DEAD,      /* a protocol error was answered: the rest is dropped until the close */
};

void tgt_redis_conn_init(tgt_conn_t *c)
{
    memset(&c->redis, 0, sizeof(c->redis));
}

/* Output of one read, gathered on the stack and written when full or at the end. */
typedef struct out {
    char buf[8192];
    size_t n;
} out_t;

static int emit(tgt_conn_t *c, out_t *o, const char *s, size_t len)
{
    if (o->n + len > sizeof(o->buf)) {
        int err = tgt_conn_send(c, o->buf, o->n);
        o->n = 0;
        if (err < 0 && err != -EAGAIN)
            return err;
    }
    memcpy(o->buf + o->n, s, len);
    o->n += len;
    return 0;
}

/* The whole command has been read: answer it. */
static int answer(tgt_conn_t *c, out_t *o)
{
    tgt_redis_t *r = &c->redis;
    bool ping = r->nargs == 1 && r->cmd_len == 4 && strncasecmp(r->cmd, "PING", 4) == 0;
    r->state = R_START;
    return ping ? emit(c, o, PONG, sizeof(PONG) - 1) : emit(c, o, UNKNOWN, sizeof(UNKNOWN) - 1);
}

static int protocol_error(tgt_conn_t *c, out_t *o)
{
    c->redis.state = R_DEAD;
    c->closing = true; /* answered, then closed: redis-server does the same */
    return emit(c, o, PROTOCOL, sizeof(PROTOCOL) - 1);
}

/* Keeps the first bytes of the command name (argument 0, or an inline line's first word). */
static void keep_cmd(tgt_redis_t *r, const char *p, size_t n)
{
    size_t room = sizeof(r->cmd) - r->cmd_len;
    size_t k = n < room ? n : room;
    memcpy(r->cmd + r->cmd_len, p, k);
    r->cmd_len = (uint8_t)(r->cmd_len + k);
    if (n > k)
        r->cmd_len = sizeof(r->cmd); /* longer than any name we know: not PING */
}

int tgt_redis_feed(tgt_conn_t *c, const char *buf, size_t len)
{
    tgt_redis_t *r = &c->redis;
    out_t o;
    size_t i = 0;
    int err = 0;

    o.n = 0;
    while (i < len && err == 0) {
        char ch = buf[i];
        switch (r->state) {
        case R_START:
            /* The common requests whole in the buffer, without the byte machine. */
            if (len - i >= sizeof(PING_RESP) - 1 &&
                memcmp(buf + i, PING_RESP, sizeof(PING_RESP) - 1) == 0) {
                err = emit(c, &o, PONG, sizeof(PONG) - 1);
                i += sizeof(PING_RESP) - 1;
                continue;
            }
            if (len - i >= sizeof(PING_INLINE) - 1 &&
                memcmp(buf + i, PING_INLINE, sizeof(PING_INLINE) - 1) == 0) {
                err = emit(c, &o, PONG, sizeof(PONG) - 1);
                i += sizeof(PING_INLINE) - 1;
                continue;
            }
            r->cmd_len = 0;
            r->num = 0;
            r->digits = 0;
            r->line = 0;
            if (ch == '*') {
                r->state = R_ARR_COUNT;
                i++;
            } else {
                r->nargs = 1;
                r->state = R_INLINE;
            }
            break;
        case R_INLINE: {
            const char *lf = memchr(buf + i, '\n', len - i);
            size_t n = lf ? (size_t)(lf - (buf + i)) : len - i;
            keep_cmd(r, buf + i, n);
            r->line += n;
            i += n;
            if (r->line > INLINE_MAX) {
                err = protocol_error(c, &o);
                break;
            }
            if (!lf)
                break;
            i++; /* the LF */
            /* The name is the line less a CR before the LF (and what follows a space: an
             * argument, which makes it a command other than a bare PING). */
            if (r->cmd_len && r->cmd_len < sizeof(r->cmd) && r->cmd[r->cmd_len - 1] == '\r')
                r->cmd_len--;
            if (r->line == 0 || (r->line == 1 && r->cmd_len == 0)) {
                r->state = R_START; /* an empty line: redis-server ignores it */
                break;
            }
            err = answer(c, &o);
            break;
        }
        case R_ARR_COUNT:
        case R_BULK_LEN:
            i++;
            if (ch >= '0' && ch <= '9' && r->num < NUM_MAX) {
                r->num = r->num * 10 + (ch - '0');
                r->digits++;
            } else if (ch == '-' && r->digits == 0 && r->state == R_ARR_COUNT) {
                r->negative = true;
                r->digits++;
            } else if (ch == '\r' && r->digits > 0) {
                r->after_num = r->state;
                r->state = R_NUM_LF;
            } else {
                err = protocol_error(c, &o);
            }
            break;
        case R_NUM_LF:
            i++;
            if (ch != '\n') {
                err = protocol_error(c, &o);
                break;
            }
            if (r->after_num == R_ARR_COUNT) {
                if (r->negative || r->num == 0) { /* "*0", "*-1": no command, no reply */
                    r->negative = false;
                    r->state = R_START;
                    break;
                }
                r->nargs = r->num;
                r->left = r->num;
                r->state = R_BULK_HDR;
            } else {
                r->blen = r->num;
                r->crlf = 0;
                r->state = R_BULK_DATA;
            }
            r->num = 0;
            r->digits = 0;
            break;
        case R_BULK_HDR:
            i++;
            if (ch != '$') {
                err = protocol_error(c, &o);
                break;
            }
            r->state = R_BULK_LEN;
            break;
        case R_BULK_DATA: {
            size_t n = len - i < r->blen ? len - i : (size_t)r->blen;
            if (r->left == r->nargs)
                keep_cmd(r, buf + i, n);
            r->blen -= n;
            i += n;
            if (r->blen == 0)
                r->state = R_BULK_CRLF;
            break;
        }
        case R_BULK_CRLF:
            i++;
            if (ch != (r->crlf == 0 ? '\r' : '\n')) {
                err = protocol_error(c, &o);
                break;
            }
            if (++r->crlf < 2)
                break;
            if (--r->left > 0) {
                r->state = R_BULK_HDR;
                break;
            }
            err = answer(c, &o);
            break;
        case R_DEAD:
        default:
            i = len;
            break;
        }
    }
    if (err == 0 && o.n)
        err = tgt_conn_send(c, o.buf, o.n);
    if ((err == 0 || err == -EAGAIN) && c->out)
        err = -EAGAIN;
    return err;
}
