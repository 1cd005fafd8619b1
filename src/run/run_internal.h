/* run_internal.h -- shared between the run module's files and its tests; not a public API. */
#ifndef ZLB_RUN_INTERNAL_H
#define ZLB_RUN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "control/control.h"
#include "serve/serve.h"
#include "gate/gate.h"
#include "report/report.h"
#include "run/monitor.h"
#include "run/run.h"
#include "run/series.h"
#include "stats/stats.h"
#include "work/work.h"

typedef enum {
    ZLB_STATE_STARTING,
    ZLB_STATE_RAMPING,
    ZLB_STATE_STEADY,
    ZLB_STATE_DRAINING,
    ZLB_STATE_DONE
} zlb_state_t;

const char *zlb_state_name(zlb_state_t s);

/* Everything a rendering needs, borrowed. */
typedef struct zlb_view {
    const zlb_config_t *cfg;
    const char *config_hash;
    zlb_state_t state;
    double elapsed_s;
    const zlb_work_snapshot_t *snap;
    const zlb_rates_t *rates; /* whole-run averages: counters over elapsed_s */
    /* The generator watching itself: last_interval rates, per-poller shares, saturation. */
    const zlb_monitor_t *saturation;
    uint64_t ramp_end_ns;      /* when the ramp ended (monotonic), 0 while it runs */
    uint64_t ramp_established; /* connections established by then */
    const zlb_work_target_t *targets;
    size_t ntargets;
    double started_unix_s;             /* wall clock at the run's start (0 before) */
    const zlb_prom_buckets_t *buckets; /* /metrics histogram bounds */
    const uint32_t *poller_process;    /* per poller row: its process (--processes), or NULL */
    uint64_t target; /* connections the run aims for now (stages, PATCH /run move it) */
    /* The built-in target when this process runs it (targets[0]), or NULL: its own side of
     * every connection, read live from its counters. */
    const zlb_serve_t *embedded;
} zlb_view_t;

/** The /stats document. New reference. */
json_t *zlb_render_stats(const zlb_view_t *v);
/** The /stats/pollers document (the "pollers" array). New reference. */
json_t *zlb_render_pollers(const zlb_view_t *v);
/** Prometheus text for /metrics. Caller disposes b. */
void zlb_render_metrics(const zlb_view_t *v, zlb_buf_t *b);
/** Host facts: kernel, CPUs, versions. New reference. */
json_t *zlb_render_host(void);

/* ---- events (events.c) --------------------------------------------------------------------- */

/* Events kept for the report: the newest ZLB_EVENTS_MAX (about 10 MB at that count; a run that
 * changes more often than this is a script, not an operator, and its earliest changes go,
 * counted in the report's events_dropped). /stats shows the newest ZLB_EVENTS_LIVE. */
#define ZLB_EVENTS_MAX 100000
#define ZLB_EVENTS_LIVE 100
#define ZLB_EVENT_CLIENT_MAX 64

typedef struct zlb_event {
    double t_s;                        /* since the run started */
    char what[24];                     /* "stage", "patch", "pause", ... */
    json_t *from;                      /* owned, or NULL */
    json_t *to;                        /* owned, or NULL */
    char client[ZLB_EVENT_CLIENT_MAX]; /* "ip:port" of a control-port client, or "" */
} zlb_event_t;

typedef struct zlb_events {
    zlb_event_t *v; /* owned: alloc entries, n used; once n == cap a ring starting at head */
    size_t n, alloc, cap, head;
    uint64_t total;   /* ever recorded */
    uint64_t dropped; /* the oldest, given up once cap were kept */
} zlb_events_t;

void zlb_events_init(zlb_events_t *ev, size_t cap);
void zlb_events_dispose(zlb_events_t *ev);
/** Appends one event; from and to are stolen (may be NULL), what and client copied. */
void zlb_events_add(zlb_events_t *ev, double t_s, const char *what, json_t *from, json_t *to,
                    const char *client);
/** The newest `last` events (0: all kept), oldest first, as the EVENT objects of /stats and the
 * report. New reference. */
json_t *zlb_events_json(const zlb_events_t *ev, size_t last);

/* ---- the run controller (run.c; set-up in setup.c, what a person reads in summary.c) ----------
 */

/* The stage driver's state (stages.c): the profile on the run's clock. */
typedef struct zlb_stager {
    zlb_stage_t *st; /* owned: the config's stages, then those a PATCH appended */
    size_t n, cap;
    bool on;                     /* the run has a profile */
    bool ends_run;               /* it came from the config: the run ends with its last stage */
    bool stopped;                /* the stop was asked for: the profile is over */
    bool steered;                /* `now` has been handed to the engine */
    size_t index;                /* the stage in force; n once the last one ended */
    uint64_t began_ns;           /* its start on the stage clock (the run's clock less pauses) */
    uint64_t paused_ns;          /* pauses so far */
    uint64_t paused_at;          /* start of the pause in progress (monotonic), or 0 */
    zlb_stage_values_t from;     /* the values at the start of the stage in force */
    zlb_stage_values_t now;      /* the values last handed to the engine */
    unsigned overridden;         /* ZLB_STAGE_* a PATCH set: held until the next boundary */
    zlb_stage_values_t over;     /* their values */
    uint64_t *start_ns, *end_ns; /* cap entries: each stage's window (monotonic; 0: not yet) */
    json_t **entry;              /* cap entries (owned): report entries of the stages ended */
    zlb_stats_t base;            /* cumulative at the start of the stage in force */
    zlb_stats_t scratch;
} zlb_stager_t;

/* The run controller's state: one per run, touched only by the thread that called zlb_run
 * (the control thread reaches it through the stop eventfd alone). */
typedef struct zlb_runner {
    const zlb_config_t *cfg; /* borrowed */
    zlb_run_opts_t opts;
    char config_hash[17];
    char *config_text; /* owned: the effective config, served at /config and put in the report */

    zlb_serve_t *target;           /* owned, the embedded target or NULL */
    zlb_tls_config_t embedded_tls; /* how the engine speaks to a TLS embedded target */
    char *embedded_ca_tmp;         /* owned: our temporary file of its CA, unlinked at teardown */
    char **target_names;           /* owned strings */
    zlb_work_target_t *targets;
    size_t ntargets;
    zlb_pool_t *pool;
    zlb_work_t *engine;
    const zlb_run_source_t *src;    /* borrowed: the processes that hold the connections, or
                                       NULL (engine above) */
    const uint32_t *poller_process; /* borrowed from src */
    zlb_work_live_t live;           /* with src: the whole run's live values, as last steered */
    zlb_control_t *control;
    char *token;

    int sigfd;             /* SIGINT/SIGTERM, read on this thread only */
    int stopfd;            /* eventfd: wakes the run for the control thread's mailbox below */
    _Atomic bool stop_req; /* POST /stop */
    _Atomic int pause_req; /* 0 none, 1 POST /pause, 2 POST /resume (the latest wins) */
    /* The control thread's requests that carry more than a flag: who asked (for the events)
     * and PATCH /run's exchange. Not a hot path: a mutex. */
    pthread_mutex_t mail_lock;
    bool mail_lock_init;
    char pause_client[ZLB_EVENT_CLIENT_MAX]; /* the latest pause/resume's client */
    char stop_client[ZLB_EVENT_CLIENT_MAX];  /* the first POST /stop's client */
    /* PATCH /run (patch.c): the control thread posts the body (borrowed: it waits until the
     * answer is made) and waits on patch_cond; the run thread takes it, answers, signals. */
    pthread_cond_t patch_cond;
    int patch_state;
    bool mail_closed; /* the run loop is over: a PATCH is answered 409 at once */
    const char *patch_body;
    size_t patch_len;
    char patch_client[ZLB_EVENT_CLIENT_MAX];
    unsigned patch_status;
    char *patch_answer; /* owned until the control thread takes it */

    zlb_state_t state;
    uint64_t t_start, t_measure_start, t_stop_requested, t_end;
    uint64_t t_start_wall_ns; /* t_start on the wall clock, for zlbench_start_time_seconds */
    zlb_prom_buckets_t buckets;
    bool measuring; /* the warm-up is over: the base snapshot was taken */
    bool ramp_done;
    bool connects_unlimited; /* the live connect_rate was 0 at some time (a PATCH, a stage) */
    int signals_seen;
    bool immediate;
    const char *stop_reason;

    zlb_work_snapshot_t snap;
    zlb_work_snapshot_t base; /* at the end of warm-up: steady figures are snap - base */
    zlb_stats_t at_stop;      /* when the stop was asked for, before the drain */
    bool have_at_stop;
    zlb_rates_t rates;        /* whole-run averages */
    zlb_monitor_t mon;        /* last_interval rates, per-poller shares, saturation */
    zlb_mon_poller_in_t *pin; /* npollers: the latest snapshot's per-poller figures */
    uint64_t ramp_end_ns, ramp_established;
    zlb_series_t series;         /* the timeline: one row per stats interval */
    zlb_series_poller_in_t *sin; /* npollers: this tick's readings for it */
    uint64_t next_row_ns;        /* since t_start: when the next row is due */
    zlb_events_t events;
    zlb_stager_t stager;
    uint64_t last_progress_ns;
    uint64_t last_abort_check_ns;
    bool tty;
} zlb_runner_t;

/* setup.c, on the run's thread. The int ones return 0 or -errno, having logged why. */
void zlb_runner_warn_fd_limit(const zlb_config_t *cfg, uint64_t need);
void zlb_runner_log_removed_temp(const char *name, void *arg);
int zlb_runner_open_signal_fds(zlb_runner_t *r);
int zlb_runner_start_control(zlb_runner_t *r);
int zlb_runner_start_embedded_target(zlb_runner_t *r);
int zlb_runner_build_targets(zlb_runner_t *r);
int zlb_runner_make_pool(zlb_runner_t *r);
/** Stops and frees everything set-up made, in reverse order; safe on a half-built run. */
void zlb_runner_teardown(zlb_runner_t *r);

/** Records an event (run thread only): t_s now, what ("stage", "patch", "pause", "resume",
 *  "signal", "stop", "threshold_abort", ...), from/to (stolen references, may be NULL),
 *  client ("ip:port" or NULL). /stats shows the last 100, the report all, in order. */
void zlb_runner_event(zlb_runner_t *r, const char *what, json_t *from, json_t *to,
                      const char *client);

/* stages.c, on the run's thread: the stage driver. */
void zlb_stager_init(zlb_runner_t *r);
void zlb_stager_dispose(zlb_stager_t *s);
/** Starts the profile at the run's start (stage 0's event and window, its first values). */
void zlb_runner_stages_begin(zlb_runner_t *r);
/** One tick, after the snapshot: closes every stage whose end has passed (its figures from the
 * snapshot, the next one's event), then hands the values in force to the engine when they
 * changed. True once the last stage of a profile from the config has ended (the run ends). */
bool zlb_runner_stages_tick(zlb_runner_t *r, uint64_t now);
/** When the next stage boundary falls (monotonic), or UINT64_MAX (none, or paused). */
uint64_t zlb_runner_stages_next_ns(const zlb_runner_t *r);
/** The stop was asked for (after the at_stop snapshot): the stage in force ends there. */
void zlb_runner_stages_stop(zlb_runner_t *r);
/** The report's "stages": one entry per stage (never reached: its plan only). New reference. */
json_t *zlb_runner_stages_json(zlb_runner_t *r);
/** GET /run's "stage": {index, count, elapsed_s, duration_s, hold} or null. New reference. */
json_t *zlb_runner_stage_json(zlb_runner_t *r);
/** The connection count the run aims for now (the timeline's target_connections). */
uint64_t zlb_runner_stages_target(const zlb_runner_t *r);
/** Appends stages to the running profile (a PATCH): they start after the last one (a last stage
 * that holds until stopped ends now); a run without a profile starts one now, from the values
 * in force, and keeps its own length. 0, -ESRCH (the run is ending), -E2BIG (more than
 * ZLB_CONFIG_MAX_STAGES in all) or -EINVAL (n == 0). st is copied. */
int zlb_runner_stages_append(zlb_runner_t *r, const zlb_stage_t *st, size_t n);
/** The same at a given monotonic time (tests drive the clock). */
int zlb_runner_stages_append_at(zlb_runner_t *r, const zlb_stage_t *st, size_t n, uint64_t now);
/** A PATCH set live values directly (call after zlb_work_steer with them): each value that
 * differs from the profile's holds until the next stage boundary, whose move starts from it. */
void zlb_runner_stages_override(zlb_runner_t *r, const zlb_work_live_t *now);

/* patch.c: PATCH /run's mailbox. */
void zlb_runner_mail_init(zlb_runner_t *r);
/** Frees the mailbox; after the control port is destroyed. Accepts a runner without one. */
void zlb_runner_mail_dispose(zlb_runner_t *r);
/** The control port's on_patch (control thread): posts the body, waits for the run thread's
 * answer (or 503 with nothing changed when it did not take it within 2 s). */
unsigned zlb_runner_on_patch(void *arg, const char *body, size_t len, const char *client,
                             char **answer);
/** Applies a posted PATCH, if any, and answers it. Run thread. */
void zlb_runner_take_patch(zlb_runner_t *r);
/** The run takes no more changes: a PATCH posted or to come is answered 409. Any thread. */
void zlb_runner_close_mail(zlb_runner_t *r);

/** The run's live values now: its engine's, or with a source the whole run's last steered
 * (the config's before any). Run thread. */
void zlb_runner_get_live(zlb_runner_t *r, zlb_work_live_t *out);
/** True when the run takes live values (its engine, or a source that steers). */
bool zlb_runner_steerable(const zlb_runner_t *r);
/** Makes v the run's live values: zlb_work_steer on its engine, or the source's steer, which
 * hands each process its share. No-op when not steerable. Run thread. */
void zlb_runner_steer(zlb_runner_t *r, const zlb_work_live_t *v);

/** Applies a pause or resume posted by the control thread (pause_req), if any. Run thread. */
void zlb_runner_take_pause(zlb_runner_t *r);
/** The GET /run document: the engine's live values now. New reference. Run thread. */
json_t *zlb_runner_live_json(zlb_runner_t *r);

/* summary.c, on the run's thread. */
/** The live line (a TTY: redrawn each second; else a log line every 5 s); final: the last one. */
void zlb_runner_progress(zlb_runner_t *r, bool final);
/** The final summary on stdout, from the report just built. */
void zlb_runner_print_summary(zlb_runner_t *r, json_t *report, const zlb_stats_t *steady,
                              int failed, const char *invalid_why);

#endif
