/* wl_hold.c -- the hold workload: open the connections and keep them; nothing is sent. The
 * worker does everything (reconnects per workload.reconnect), so the table is empty. */
#include "work/work_internal.h"

const zlb_workload_ops_t zlb_wl_hold = {
    .name = "hold",
};
