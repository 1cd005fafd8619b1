/* work.h -- connection engine: open-loop scheduler, per-poller workers, workloads, snapshots. */
#ifndef ZLB_WORK_H
#define ZLB_WORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "loop/loop.h"
#include "stats/stats.h"

/* One destination as the engine sees it. The run module builds these from the config's targets
 * (or from the embedded target's bound address). All borrowed for the engine's life. */
typedef struct zlb_work_target {
    const char *host; /* name or IP literal (no brackets) */
    uint16_t port;
    uint32_t weight;             /* >= 1 */
    const zlb_tls_config_t *tls; /* NULL or !enabled: plain TCP (see TLS below) */
    const char *name;            /* for reports: "127.0.0.1:9000" */
} zlb_work_target_t;

typedef struct zlb_work zlb_work_t;

/*
 * TLS targets. The engine builds one TLS client context per TLS target, shared by every poller
 * (immutable once built; see tls.h for why one, not one per poller), and each poller keeps its
 * own session cache per target. Every attempt decides on its own whether to offer a cached
 * session, so tls->resumption is the share of handshakes that try to resume.
 *
 * Accounting. A TLS connection counts as `established` only once its handshake is done, and
 * only then do its workload and lifetime start; TCP connect latency is still recorded when TCP
 * is established (latency connect), the handshake's apart (tls_handshake_full or
 * tls_handshake_resumed: from TCP established to handshake done; counters tls_handshakes and
 * tls_resumed). An attempt that fails in its handshake is failed_before: tls_verify when we
 * rejected the certificate (the X509 verify result counted in tls_verify_code), tls_handshake
 * for any other TLS failure, the peer's alerts and a socket error or EOF in mid-handshake
 * included (the reason counted in tls_fail_reason), and timeout when the handshake outlives
 * tls->handshake_timeout_ns (the same reason as a TCP connect that outlives its timeout; the
 * TLS breakdowns do not count it). After establishment, a TLS failure (e.g. a TLS 1.3 server
 * refusing our client certificate, which shows only at the first read) is
 * failed_after[tls_handshake]; a socket error is classified by its errno and a close by the
 * peer, with close_notify or without, is closed_by_peer, as with plain TCP. Established TLS
 * connections are read whenever readable, whatever the workload, which is what feeds the
 * session cache with TLS 1.3 tickets. We close with close_notify, then FIN or RST as set.
 */

/** Creates the engine on an already running pool: one worker per poller (connection slab,
 * read buffer, stats), the resolver threads, the TLS client contexts and the scheduler thread
 * (not started yet). cfg, targets and pool are borrowed and must outlive the engine. Also
 * raises RLIMIT_NOFILE to the hard limit and logs a warning when cfg->connections cannot fit.
 * Returns 0, -EINVAL (a TLS config OpenSSL refuses, e.g. an unreadable ca_file, is logged with
 * the reason), -ENOMEM (with a log line saying what could not be allocated) or -errno. Not on a
 * poller thread. */
int zlb_work_create(const zlb_config_t *cfg, const zlb_work_target_t *targets, size_t ntargets,
                    zlb_pool_t *pool, zlb_work_t **out);

/** Starts the open-loop scheduler: attempts are issued at cfg->connect_rate (after the ramp)
 * until cfg->connections are open (hold/echo) or kept cycling (churn). Not on a poller thread. */
int zlb_work_start(zlb_work_t *e);

/** Stops issuing attempts and reconnects; connections already open stay open. Idempotent. */
void zlb_work_stop_opening(zlb_work_t *e);

/** Closes every open connection (closed_by_us) and cancels attempts still in flight (counted as
 * failed_before[ZLB_FAIL_CANCELLED], so every attempt stays accounted for). Also stops
 * opening. Returns at once; poll zlb_work_idle(). Any non-poller thread. */
void zlb_work_close_all(zlb_work_t *e);

/* Live values: what a run may change while the engine runs (stages, PATCH /run, pause). Each
 * change reaches the scheduler and every poller as a posted task (nobody touches a poller's state
 * from another thread) and takes effect within a few milliseconds.
 * - connections: how many connections the engine keeps (open, opening or waiting to reopen).
 *   Raising it opens the difference at connect_rate. Lowering it first cancels attempts not yet
 *   handed out, then closes open connections at close_rate, idle ones first, counted
 *   closed_by_us (an http request in flight on one is failed as cancelled, as at a stop).
 * - connect_rate: new attempts per second from now on (0: unlimited); also the reconnect bucket.
 * - rate: the workload's live rate (zlb_config_rate_key): an open-loop workload's whole-run
 *   rate (request_rate, message_rate; 0 sends nothing), or a stream's bytes/s per connection
 *   (0: as fast as the socket takes).
 * - paused: no attempt starts (due ones wait for the resume, moved to it: they are not late)
 *   and the workload sends nothing; connections stay open. See the workload for what happens to
 *   its requests due in a pause. */
typedef struct zlb_work_live {
    uint64_t connections;
    double connect_rate;
    double close_rate; /* closes/s when lowering; 0: as fast as allowed */
    double rate;
    bool paused;
} zlb_work_live_t;

/** The live values a config starts with. */
void zlb_work_live_from_config(const zlb_config_t *cfg, zlb_work_live_t *out);
/** Makes v the engine's live values (before or after zlb_work_start). Returns at once; the
 * pollers apply it within milliseconds. Not on a poller thread; one caller thread at a time
 * (the run controller). Ignored after close_all. */
void zlb_work_steer(zlb_work_t *e, const zlb_work_live_t *v);
/** The values last given to zlb_work_steer (or the config's). Same thread as steer. */
void zlb_work_get_live(zlb_work_t *e, zlb_work_live_t *out);

/** True when no connection is open or in flight (after close_all). Any thread; cheap. */
bool zlb_work_idle(zlb_work_t *e);

/* A consistent copy of every poller's statistics, taken by a task posted to each poller. */
typedef struct zlb_work_snapshot {
    uint64_t taken_ns; /* monotonic */
    size_t npollers;
    zlb_stats_t total;       /* merge of every poller */
    zlb_stats_t *poller;     /* npollers entries (histograms included) */
    zlb_poller_info_t *info; /* npollers entries: pinning, priority, loop stats */
    size_t ntargets;
    zlb_counters_t *target;     /* ntargets entries: counters per target, all pollers */
    uint64_t first_attempt_ns;  /* monotonic, 0 before the first attempt */
    uint64_t target_reached_ns; /* when cfg->connections were first open at once, else 0 */
    uint64_t scheduler_backlog; /* attempts due but not yet handed to a poller */
} zlb_work_snapshot_t;

/** Allocates the snapshot's arrays and histograms for this engine. Fatal on OOM. */
void zlb_work_snapshot_init(zlb_work_t *e, zlb_work_snapshot_t *s);
void zlb_work_snapshot_dispose(zlb_work_snapshot_t *s);
/** Fills s: posts a copy task to every poller and waits for all of them (pollers whose loop has
 * returned, e.g. after zlb_pool_stop, are copied directly, as nothing else touches them then).
 * Blocks; never call from a poller thread. 0, or -ETIMEDOUT when a running poller has not
 * answered in 30 s (s is then incomplete). */
int zlb_work_snapshot(zlb_work_t *e, zlb_work_snapshot_t *s);

/** Stops the scheduler and resolver threads, closes every socket, frees. The pool must be
 * stopped first (so no poller touches the engine). Accepts NULL. */
void zlb_work_destroy(zlb_work_t *e);

#endif
