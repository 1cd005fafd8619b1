/* config_pos.c -- key paths, and a small JSON scanner that maps them back to line:column. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "core/core.h"

/* jansson keeps no positions for values it has parsed, so errors found while validating would
 * have none. Rather than keeping a position for every value of every config, the text is scanned
 * again only when an error is reported, and the scan stops at the path being looked up. The
 * scanner trusts that jansson has accepted the text (or, for duplicates, everything before the
 * point where it stopped), so it only has to be safe on bad input, not to diagnose it. */

#define MAX_DEPTH 2048 /* jansson's own nesting limit */

/* ---- key paths ----------------------------------------------------------------------------- */

static bool plain_key(const char *key, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)key[0]) || key[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (!isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

static void reserve(zlb_config_path_t *p, size_t more)
{
    if (p->len + more + 1 <= p->cap)
        return;
    size_t cap = p->cap ? p->cap : 64;
    while (cap < p->len + more + 1)
        cap *= 2;
    p->buf = zlb_xrealloc(p->buf, cap);
    p->cap = cap;
}

static size_t push_component(zlb_config_path_t *p, const char *s, size_t n)
{
    size_t mark = p->len;
    reserve(p, n);
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
    return mark;
}

size_t zlb_config_path_push_key(zlb_config_path_t *p, const char *key, size_t keylen)
{
    size_t mark = p->len;
    if (plain_key(key, keylen)) {
        if (p->len > 0)
            push_component(p, ".", 1);
        push_component(p, key, keylen);
        return mark;
    }
    /* Escaping at most doubles the key, plus [""]. */
    reserve(p, 2 * keylen + 4);
    char *q = p->buf + p->len;
    *q++ = '[';
    *q++ = '"';
    for (size_t i = 0; i < keylen; i++) {
        /* Only needs to be unambiguous and printable, not valid JSON. */
        unsigned char c = (unsigned char)key[i];
        if (c == '"' || c == '\\')
            *q++ = '\\';
        *q++ = c < 0x20 ? '?' : (char)c;
    }
    *q++ = '"';
    *q++ = ']';
    *q = '\0';
    p->len = (size_t)(q - p->buf);
    return mark;
}

size_t zlb_config_path_push_index(zlb_config_path_t *p, size_t index)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "[%zu]", index);
    return push_component(p, tmp, (size_t)n);
}

void zlb_config_path_pop(zlb_config_path_t *p, size_t mark)
{
    if (mark > p->len || !p->buf)
        return;
    p->len = mark;
    p->buf[mark] = '\0';
}

const char *zlb_config_path_str(const zlb_config_path_t *p)
{
    return p->buf ? p->buf : "";
}

void zlb_config_path_copy(zlb_config_path_t *dst, const zlb_config_path_t *src)
{
    dst->len = 0;
    if (dst->buf)
        dst->buf[0] = '\0';
    push_component(dst, zlb_config_path_str(src), src->len);
}

void zlb_config_path_dispose(zlb_config_path_t *p)
{
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

/* Moves i back to the start of the UTF-8 character it is in. */
static size_t char_start(const char *s, size_t i)
{
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    return i;
}

const char *zlb_config_abbrev(const char *s, size_t keep, char *buf, size_t cap)
{
    size_t n = strlen(s);
    if (n <= keep || cap < 8)
        return s;
    size_t half = ZLB_MIN(keep, cap - 4) / 2;
    size_t head = char_start(s, half);
    size_t tail = char_start(s, n - half);
    snprintf(buf, cap, "%.*s...%s", (int)head, s, s + tail);
    return buf;
}

const char *zlb_config_show(const char *s)
{
    /* A few at once: one message may quote a value, a key and a suggestion. */
    static _Thread_local char ring[4][ZLB_CONFIG_VALUE_SHOWN + 8];
    static _Thread_local unsigned next;
    char *buf = ring[next++ % 4];
    return zlb_config_abbrev(s, ZLB_CONFIG_VALUE_SHOWN, buf, ZLB_CONFIG_VALUE_SHOWN + 8);
}

/* ---- scanner ------------------------------------------------------------------------------- */

typedef struct scan {
    const char *s;
    size_t len, i;
    int line, col; /* of s[i] */
    zlb_config_path_t path;
    /* what to look for */
    const char *want_path;
    bool want_key;
    bool find_dup;
    /* result */
    bool found;
    int found_line, found_col;
    zlb_config_path_t found_path;
    char *found_key; /* duplicates: malloc'd */
} scan_t;

static int peek(const scan_t *sc)
{
    return sc->i < sc->len ? (unsigned char)sc->s[sc->i] : -1;
}

static void advance(scan_t *sc)
{
    if (sc->i >= sc->len)
        return;
    char c = sc->s[sc->i++];
    if (c == '\n') {
        sc->line++;
        sc->col = 1;
    } else if (sc->i >= sc->len || ((unsigned char)sc->s[sc->i] & 0xc0) != 0x80) {
        /* Columns count characters: a UTF-8 sequence moves the column once, at its end. */
        sc->col++;
    }
}

static void skip_ws(scan_t *sc)
{
    for (int c = peek(sc); c == ' ' || c == '\t' || c == '\n' || c == '\r'; c = peek(sc))
        advance(sc);
}

static void found_here(scan_t *sc, int line, int col)
{
    sc->found = true;
    sc->found_line = line;
    sc->found_col = col;
    zlb_config_path_copy(&sc->found_path, &sc->path);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(scan_t *sc, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(peek(sc));
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
        advance(sc);
    }
    *out = v;
    return 0;
}

static void put_utf8(char *out, size_t cap, size_t *n, unsigned cp)
{
    char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12);
        b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18);
        b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    for (size_t j = 0; j < k; j++) {
        if (*n < cap)
            out[*n] = b[j];
        (*n)++;
    }
}

/* Reads a string at s[i] == '"'. With out != NULL the decoded bytes go there (up to cap; *outlen
 * is the full length, so a caller can tell when it did not fit). */
static int scan_string(scan_t *sc, char *out, size_t cap, size_t *outlen)
{
    size_t n = 0;
    advance(sc); /* opening quote */
    for (;;) {
        int c = peek(sc);
        if (c < 0)
            return -1;
        if (c == '"') {
            advance(sc);
            break;
        }
        if (c != '\\') {
            if (out && n < cap)
                out[n] = (char)c;
            n++;
            advance(sc);
            continue;
        }
        advance(sc);
        c = peek(sc);
        if (c < 0)
            return -1;
        advance(sc);
        unsigned cp;
        switch (c) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (read_hex4(sc, &cp) < 0)
                return -1;
            if (cp >= 0xd800 && cp < 0xdc00 && peek(sc) == '\\') {
                unsigned lo;
                advance(sc);
                if (peek(sc) != 'u')
                    return -1;
                advance(sc);
                if (read_hex4(sc, &lo) < 0)
                    return -1;
                if (lo >= 0xdc00 && lo < 0xe000)
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default:
            cp = (unsigned)c; /* \" \\ \/ */
            break;
        }
        put_utf8(out, out ? cap : 0, &n, cp);
    }
    if (outlen)
        *outlen = n;
    return 0;
}

static int scan_value(scan_t *sc, int depth);

static bool path_is_wanted(const scan_t *sc)
{
    return sc->want_path && strcmp(zlb_config_path_str(&sc->path), sc->want_path) == 0;
}

typedef struct seen_key {
    char *key;
    size_t len;
} seen_key_t;

static int scan_object(scan_t *sc, int depth)
{
    seen_key_t *seen = NULL;
    size_t nseen = 0, capseen = 0;
    int rc = -1;

    advance(sc); /* '{' */
    skip_ws(sc);
    if (peek(sc) == '}') {
        advance(sc);
        return 0;
    }
    for (;;) {
        char keybuf[256];
        size_t keylen;
        skip_ws(sc);
        if (peek(sc) != '"')
            goto out;
        int kline = sc->line, kcol = sc->col;
        size_t kstart = sc->i;
        if (scan_string(sc, keybuf, sizeof(keybuf), &keylen) < 0)
            goto out;
        char *key = keybuf;
        char *bigkey = NULL;
        if (keylen > sizeof(keybuf)) {
            /* Rare: decode again into a buffer of the right size. */
            scan_t again = *sc;
            again.i = kstart;
            bigkey = zlb_xmalloc(keylen + 1);
            scan_string(&again, bigkey, keylen, NULL);
            key = bigkey;
        }
        size_t mark = zlb_config_path_push_key(&sc->path, key, keylen);
        if (sc->find_dup) {
            for (size_t k = 0; k < nseen; k++) {
                if (seen[k].len == keylen && memcmp(seen[k].key, key, keylen) == 0) {
                    found_here(sc, kline, kcol);
                    sc->found_key = zlb_xmalloc(keylen + 1);
                    memcpy(sc->found_key, key, keylen);
                    sc->found_key[keylen] = '\0';
                    free(bigkey);
                    rc = 0;
                    goto out;
                }
            }
            if (nseen == capseen) {
                capseen = capseen ? capseen * 2 : 8;
                seen = zlb_xrealloc(seen, capseen * sizeof(*seen));
            }
            seen[nseen].key = zlb_xmalloc(keylen ? keylen : 1);
            memcpy(seen[nseen].key, key, keylen);
            seen[nseen].len = keylen;
            nseen++;
        }
        free(bigkey);
        if (sc->want_key && path_is_wanted(sc)) {
            found_here(sc, kline, kcol);
            rc = 0;
            goto out;
        }
        skip_ws(sc);
        if (peek(sc) != ':')
            goto out;
        advance(sc);
        if (scan_value(sc, depth + 1) < 0 || sc->found) {
            rc = sc->found ? 0 : -1;
            goto out;
        }
        zlb_config_path_pop(&sc->path, mark);
        skip_ws(sc);
        if (peek(sc) == ',') {
            advance(sc);
            continue;
        }
        if (peek(sc) == '}') {
            advance(sc);
            rc = 0;
        }
        goto out;
    }
out:
    for (size_t k = 0; k < nseen; k++)
        free(seen[k].key);
    free(seen);
    return rc;
}

static int scan_array(scan_t *sc, int depth)
{
    advance(sc); /* '[' */
    skip_ws(sc);
    if (peek(sc) == ']') {
        advance(sc);
        return 0;
    }
    for (size_t idx = 0;; idx++) {
        size_t mark = zlb_config_path_push_index(&sc->path, idx);
        if (scan_value(sc, depth + 1) < 0)
            return -1;
        if (sc->found)
            return 0;
        zlb_config_path_pop(&sc->path, mark);
        skip_ws(sc);
        if (peek(sc) == ',') {
            advance(sc);
            continue;
        }
        if (peek(sc) == ']') {
            advance(sc);
            return 0;
        }
        return -1;
    }
}

static int scan_value(scan_t *sc, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    skip_ws(sc);
    if (!sc->want_key && path_is_wanted(sc)) {
        found_here(sc, sc->line, sc->col);
        return 0;
    }
    int c = peek(sc);
    if (c == '{')
        return scan_object(sc, depth);
    if (c == '[')
        return scan_array(sc, depth);
    if (c == '"')
        return scan_string(sc, NULL, 0, NULL);
    if (c == '-' || c == '+' || c == '.' || isalnum(c)) {
        /* numbers and literals: jansson has judged them already */
        while ((c = peek(sc)) == '-' || c == '+' || c == '.' || isalnum(c))
            advance(sc);
        return 0;
    }
    return -1;
}

static void scan_init(scan_t *sc, const char *text, size_t len)
{
    memset(sc, 0, sizeof(*sc));
    sc->s = text;
    sc->len = len;
    sc->line = 1;
    sc->col = 1;
}

static void scan_dispose(scan_t *sc)
{
    zlb_config_path_dispose(&sc->path);
    zlb_config_path_dispose(&sc->found_path);
    free(sc->found_key);
}

int zlb_config_pos_find(const char *text, size_t len, const char *path, bool want_key, int *line,
                        int *col)
{
    scan_t sc;
    if (!text)
        return -ENOENT;
    scan_init(&sc, text, len);
    sc.want_path = path;
    sc.want_key = want_key;
    scan_value(&sc, 0);
    bool found = sc.found;
    if (found) {
        *line = sc.found_line;
        *col = sc.found_col;
    }
    scan_dispose(&sc);
    return found ? 0 : -ENOENT;
}

int zlb_config_pos_first_duplicate(const char *text, size_t len, zlb_config_path_t *path,
                                   char **key, int *line, int *col)
{
    scan_t sc;
    scan_init(&sc, text, len);
    sc.find_dup = true;
    scan_value(&sc, 0);
    if (!sc.found) {
        scan_dispose(&sc);
        return -ENOENT;
    }
    *path = sc.found_path; /* moved out */
    sc.found_path = (zlb_config_path_t){0};
    *key = sc.found_key;
    sc.found_key = NULL;
    *line = sc.found_line;
    *col = sc.found_col;
    scan_dispose(&sc);
    return 0;
}

/* ---- "did you mean" ------------------------------------------------------------------------ */

size_t zlb_config_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) /* not a typo of any key we know; keep the table small */
        return n > m ? n : m;
    size_t d[65][65];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[n][m];
}

const char *zlb_config_suggest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = strlen(word);
    size_t limit = len / 3 > 2 ? len / 3 : 2;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = zlb_config_edit_distance(word, candidates[i]);
        /* A 2-letter word is within distance 2 of everything: demand it share something. */
        if (d <= limit && d < strlen(candidates[i]) && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}
