/* workload.c -- the registry of workloads: one line each, indexed by the config's type. */
#include "work/work_internal.h"

extern const zlb_workload_ops_t zlb_wl_hold, zlb_wl_churn, zlb_wl_echo, zlb_wl_http, zlb_wl_message,
    zlb_wl_stream;

static const zlb_workload_ops_t *const registry[] = {
    [ZLB_WORK_HOLD] = &zlb_wl_hold,       [ZLB_WORK_CHURN] = &zlb_wl_churn,
    [ZLB_WORK_ECHO] = &zlb_wl_echo,       [ZLB_WORK_HTTP] = &zlb_wl_http,
    [ZLB_WORK_MESSAGE] = &zlb_wl_message, /* echo too, with expect echo: wl_message.c */
    [ZLB_WORK_STREAM] = &zlb_wl_stream,
};

const zlb_workload_ops_t *zlb_workload_ops(zlb_work_type_t type)
{
    return (unsigned)type < ZLB_ARRAY_LEN(registry) ? registry[type] : NULL;
}
