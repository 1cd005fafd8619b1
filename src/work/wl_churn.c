/* wl_churn.c -- the churn workload: each connection lives workload.lifetime from its
 * establishment, then closes (closed_by_us) and its successor is due at once. */
#include "work/work_internal.h"

static void churn_established(zlb_worker_t *w, zlb_work_slot_t *s)
{
    zlb_wl_timer_at(w, s, s->conn.t_established + w->e->cfg->workload.lifetime_ns);
}

static void churn_timer(zlb_worker_t *w, zlb_work_slot_t *s, uint64_t due_ns)
{
    /* Due when the lifetime ended, not when this callback ran: a poller running late shows it
     * as schedule lag. */
    zlb_wl_close(w, s, due_ns);
}

const zlb_workload_ops_t zlb_wl_churn = {
    .name = "churn",
    .always_reconnect = true,
    .established = churn_established,
    .timer = churn_timer,
};
