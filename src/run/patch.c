/* patch.c -- PATCH /run: the control thread hands the body to the run thread, which checks it
 * with the config's rules, steers the engine and answers with the new GET /run document. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "run/run_internal.h"

/* How long the control thread waits for the run thread to take a PATCH before answering 503
 * with nothing changed. The run thread wakes for it at once (the stop eventfd); only a run
 * thread stuck in a snapshot of a stalled poller takes longer. */
#define PATCH_TAKE_WAIT_NS (2 * ZLB_NS_PER_SEC)

enum { PATCH_IDLE, PATCH_PENDING, PATCH_TAKEN, PATCH_DONE };

void zlb_runner_mail_init(zlb_runner_t *r)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->mail_lock, NULL);
    pthread_cond_init(&r->patch_cond, &ca);
    pthread_condattr_destroy(&ca);
    r->mail_lock_init = true;
}

void zlb_runner_mail_dispose(zlb_runner_t *r)
{
    if (!r->mail_lock_init)
        return;
    free(r->patch_answer);
    pthread_cond_destroy(&r->patch_cond);
    pthread_mutex_destroy(&r->mail_lock);
    r->mail_lock_init = false;
}

static char *error_doc(const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        zlb_fatal("json_dumps failed for an error answer");
    return text;
}

static char *doc_text(json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    if (!text)
        zlb_fatal("json_dumps failed for GET /run");
    return text;
}

void zlb_runner_get_live(zlb_runner_t *r, zlb_work_live_t *out)
{
    if (r->engine)
        zlb_work_get_live(r->engine, out);
    else if (r->src)
        *out = r->live;
    else
        zlb_work_live_from_config(r->cfg, out);
}

bool zlb_runner_steerable(const zlb_runner_t *r)
{
    return r->engine || (r->src && r->src->steer);
}

void zlb_runner_steer(zlb_runner_t *r, const zlb_work_live_t *v)
{
    if (r->engine) {
        zlb_work_steer(r->engine, v);
    } else if (r->src && r->src->steer) {
        /* The whole run's values stay here (GET /run, the stager, the next PATCH); each
         * process gets its share of them. */
        r->live = *v;
        r->src->steer(r->src->ctx, v);
    }
}

/* The live values a PATCH named, before and after, for the event: only those that changed. */
static void diff_live(const zlb_runner_t *r, const zlb_work_live_t *a, const zlb_work_live_t *b,
                      json_t *from, json_t *to)
{
    const char *key = zlb_config_rate_key(r->cfg->workload.type);
    if (a->connections != b->connections) {
        json_object_set_new(from, "connections", json_integer((json_int_t)a->connections));
        json_object_set_new(to, "connections", json_integer((json_int_t)b->connections));
    }
    if (a->connect_rate != b->connect_rate) {
        json_object_set_new(from, "connect_rate", json_real(a->connect_rate));
        json_object_set_new(to, "connect_rate", json_real(b->connect_rate));
    }
    if (a->close_rate != b->close_rate) {
        json_object_set_new(from, "close_rate", json_real(a->close_rate));
        json_object_set_new(to, "close_rate", json_real(b->close_rate));
    }
    if (key && a->rate != b->rate) {
        json_object_set_new(from, key, json_real(a->rate));
        json_object_set_new(to, key, json_real(b->rate));
    }
    if (a->paused != b->paused) {
        json_object_set_new(from, "paused", json_boolean(a->paused));
        json_object_set_new(to, "paused", json_boolean(b->paused));
    }
}

/* Run thread: checks the body, applies it whole or not at all. Returns the status; *answer is
 * the document to send. */
static unsigned apply_patch(zlb_runner_t *r, const char *body, size_t len, const char *client,
                            char **answer)
{
    char err[600];
    zlb_config_patch_t p;
    zlb_work_live_t old, v;

    if (!zlb_runner_steerable(r) || r->state == ZLB_STATE_DRAINING || r->state == ZLB_STATE_DONE) {
        *answer = error_doc("the run is stopping: nothing changed");
        return 409;
    }
    if (zlb_config_parse_patch(r->cfg, body, len, &p, err, sizeof(err)) != 0) {
        zlb_log_info("PATCH /run by %s refused: %s", client, err);
        *answer = error_doc(err);
        return 400;
    }
    /* Whole or not at all: what would make the append fail is refused before anything
     * changes (zlb_runner_stages_append's own refusals, asked first). */
    const zlb_stager_t *sg = &r->stager;
    if (p.nstages && (sg->stopped || (sg->on && sg->ends_run && sg->index >= sg->n))) {
        zlb_config_patch_dispose(&p);
        *answer = error_doc("stages: the profile has ended: nothing changed");
        return 409;
    }
    if (p.nstages && sg->n + p.nstages > ZLB_CONFIG_MAX_STAGES) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "stages: at most %d in all (%zu now, %zu more asked): nothing "
                 "changed",
                 ZLB_CONFIG_MAX_STAGES, sg->n, p.nstages);
        zlb_config_patch_dispose(&p);
        *answer = error_doc(msg);
        return 400;
    }
    zlb_runner_get_live(r, &old);
    v = old;
    if (p.has_connections)
        v.connections = p.connections;
    if (p.has_connect_rate)
        v.connect_rate = p.connect_rate;
    if (p.has_close_rate)
        v.close_rate = p.close_rate;
    if (p.has_rate)
        v.rate = p.rate;
    if (p.has_paused)
        v.paused = p.paused;

    json_t *from = json_object(), *to = json_object();
    diff_live(r, &old, &v, from, to);
    size_t had = sg->n;
    if (json_object_size(to) > 0) {
        zlb_runner_steer(r, &v);
        r->connects_unlimited |= v.connect_rate <= 0; /* even if changed back before a tick */
        /* Held against the stage in force until its end; the next stage moves from them. */
        zlb_runner_stages_override(r, &v);
    }
    if (p.nstages) {
        json_object_set_new(from, "stages", json_integer((json_int_t)had));
        json_object_set_new(to, "stages", json_integer((json_int_t)(had + p.nstages)));
    }
    /* Recorded before the append, whose first stage event it causes. */
    if (json_object_size(to) > 0) {
        char *t = json_dumps(to, JSON_COMPACT | JSON_REAL_PRECISION(10));
        zlb_log_info("PATCH /run by %s: %s", client, t ? t : "?");
        free(t);
        zlb_runner_event(r, "patch", from, to, client);
    } else {
        json_decref(from); /* the values it named were the values already: no change, no event */
        json_decref(to);
    }
    /* After the direct values: a profile that starts now starts from them. */
    if (p.nstages) {
        int rc = zlb_runner_stages_append(r, p.stages, p.nstages);
        if (rc != 0) /* refused above; cannot happen */
            zlb_fatal("stages_append refused a checked PATCH: %s", strerror(-rc));
    }
    zlb_config_patch_dispose(&p);
    /* GET /run shows the change now, not at the next tick. */
    json_t *doc = zlb_runner_live_json(r);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (text && r->control)
        zlb_control_publish(r->control, "/run", 200, "application/json", text, strlen(text));
    free(text);
    *answer = doc_text(doc);
    return 200;
}

void zlb_runner_take_patch(zlb_runner_t *r)
{
    char client[ZLB_EVENT_CLIENT_MAX];
    const char *body;
    size_t len;

    pthread_mutex_lock(&r->mail_lock);
    if (r->patch_state != PATCH_PENDING) {
        pthread_mutex_unlock(&r->mail_lock);
        return;
    }
    r->patch_state = PATCH_TAKEN; /* from here the control thread waits for the answer */
    body = r->patch_body;
    len = r->patch_len;
    memcpy(client, r->patch_client, sizeof(client));
    pthread_mutex_unlock(&r->mail_lock);

    char *answer = NULL;
    unsigned status = apply_patch(r, body, len, client, &answer);

    pthread_mutex_lock(&r->mail_lock);
    r->patch_status = status;
    r->patch_answer = answer;
    r->patch_state = PATCH_DONE;
    pthread_cond_broadcast(&r->patch_cond);
    pthread_mutex_unlock(&r->mail_lock);
}

void zlb_runner_close_mail(zlb_runner_t *r)
{
    pthread_mutex_lock(&r->mail_lock);
    r->mail_closed = true;
    if (r->patch_state == PATCH_PENDING) {
        r->patch_status = 409;
        r->patch_answer = error_doc("the run is over: nothing changed");
        r->patch_state = PATCH_DONE;
        pthread_cond_broadcast(&r->patch_cond);
    }
    pthread_mutex_unlock(&r->mail_lock);
}

unsigned zlb_runner_on_patch(void *arg, const char *body, size_t len, const char *client,
                             char **answer)
{
    zlb_runner_t *r = arg;
    struct timespec dl;
    uint64_t one = 1;
    unsigned status;

    pthread_mutex_lock(&r->mail_lock);
    if (r->mail_closed || r->patch_state != PATCH_IDLE) {
        /* libmicrohttpd has one thread, so one PATCH at a time reaches here; a second means
         * the first is still being answered. */
        bool closed = r->mail_closed;
        pthread_mutex_unlock(&r->mail_lock);
        *answer = error_doc(closed ? "the run is over: nothing changed"
                                   : "another PATCH /run is being applied: nothing changed");
        return 409;
    }
    r->patch_body = body;
    r->patch_len = len;
    snprintf(r->patch_client, sizeof(r->patch_client), "%s", client ? client : "");
    r->patch_state = PATCH_PENDING;
    pthread_mutex_unlock(&r->mail_lock);
    if (write(r->stopfd, &one, sizeof(one)) < 0)
        zlb_log_warn("control request lost: %s", strerror(errno));

    uint64_t deadline = zlb_now_ns() + PATCH_TAKE_WAIT_NS;
    dl.tv_sec = (time_t)(deadline / ZLB_NS_PER_SEC);
    dl.tv_nsec = (long)(deadline % ZLB_NS_PER_SEC);
    pthread_mutex_lock(&r->mail_lock);
    while (r->patch_state != PATCH_DONE) {
        if (r->patch_state == PATCH_PENDING) {
            if (pthread_cond_timedwait(&r->patch_cond, &r->mail_lock, &dl) == ETIMEDOUT &&
                r->patch_state == PATCH_PENDING) {
                /* Withdrawn before the run thread saw it: the body it borrowed is never
                 * read, and nothing changed. */
                r->patch_state = PATCH_IDLE;
                pthread_mutex_unlock(&r->mail_lock);
                *answer = error_doc("the run did not take the change within 2 s: nothing "
                                    "changed; try again");
                return 503;
            }
        } else {
            /* Taken: the run thread is applying it, which takes no time worth a deadline. */
            pthread_cond_wait(&r->patch_cond, &r->mail_lock);
        }
    }
    status = r->patch_status;
    *answer = r->patch_answer;
    r->patch_answer = NULL;
    r->patch_state = PATCH_IDLE;
    pthread_mutex_unlock(&r->mail_lock);
    return status;
}
