/* series.c -- a published series served with ?since=T: the control thread filters rows by their
 * key without ever asking the run for anything. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_internal.h"
#include "core/core.h"

void zlb_control_series_init(series_log_t *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
}

void zlb_control_series_dispose(series_log_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ring[(s->first + i) % s->keep].text);
    free(s->ring);
    free(s->head);
    pthread_mutex_destroy(&s->lock);
}

void zlb_control_series_start(zlb_control_t *c, const char *path, const char *head, size_t keep)
{
    series_log_t *s = &c->series;
    if (!path || path[0] != '/' || strlen(path) >= PATH_MAX_LEN || keep == 0)
        zlb_fatal("control: bad series path \"%s\"", path ? path : "(null)");
    pthread_mutex_lock(&s->lock);
    if (s->path[0])
        zlb_fatal("control: series %s started twice", s->path);
    memcpy(s->path, path, strlen(path) + 1);
    s->head = zlb_xstrdup(head ? head : "");
    s->ring = zlb_xcalloc(keep, sizeof(*s->ring));
    s->keep = keep;
    pthread_mutex_unlock(&s->lock);
}

void zlb_control_series_append(zlb_control_t *c, double t, const char *row, size_t len)
{
    series_log_t *s = &c->series;
    /* The copy is made outside the lock: a reader waits for a pointer swap at most. */
    char *text = zlb_xmalloc(len + 1);
    memcpy(text, row, len);
    text[len] = '\0';
    char *old = NULL;
    pthread_mutex_lock(&s->lock);
    if (!s->keep)
        zlb_fatal("control: series appended to before it was started");
    if (s->n == s->keep) {
        old = s->ring[s->first].text;
        s->first = (s->first + 1) % s->keep;
        s->n--;
    }
    s->ring[(s->first + s->n) % s->keep] = (series_row_t){.t = t, .len = len, .text = text};
    s->n++;
    pthread_mutex_unlock(&s->lock);
    free(old);
}

bool zlb_control_series_match(zlb_control_t *c, const char *path)
{
    series_log_t *s = &c->series;
    pthread_mutex_lock(&s->lock);
    bool m = s->path[0] && strcmp(s->path, path) == 0;
    pthread_mutex_unlock(&s->lock);
    return m;
}

void zlb_control_series_render(zlb_control_t *c, double since, char **body, size_t *len)
{
    series_log_t *s = &c->series;
    zlb_buf_t b;
    zlb_buf_init(&b);
    pthread_mutex_lock(&s->lock);
    zlb_buf_printf(&b, "{%s%s\"rows\":[", s->head ? s->head : "", s->head && *s->head ? "," : "");
    /* Keys ascend: the first row after `since` by bisection, so a poller asking for the last
     * second costs the same whatever the run's length. */
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ring[(s->first + mid) % s->keep].t > since)
            hi = mid;
        else
            lo = mid + 1;
    }
    bool truncated = false;
    size_t rows_bytes = 0;
    for (size_t i = lo; i < s->n; i++) {
        const series_row_t *r = &s->ring[(s->first + i) % s->keep];
        if (rows_bytes + r->len > ZLB_CONTROL_SERIES_BODY_MAX && i > lo) {
            truncated = true;
            break;
        }
        zlb_buf_printf(&b, "%s%.*s", i > lo ? "," : "", (int)r->len, r->text);
        rows_bytes += r->len + 1;
    }
    pthread_mutex_unlock(&s->lock);
    zlb_buf_printf(&b, "],\"truncated\":%s}", truncated ? "true" : "false");
    *body = b.data;
    *len = b.len;
}
