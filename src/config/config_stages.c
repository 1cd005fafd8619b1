/* config_stages.c -- the live-changeable values: the workload's whole-run rate, close_rate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"

/* One place that says which key is a workload's whole-run rate: a workload that gains one
 * (message_rate, stream_rate) adds its line here and the stages, PATCH /run and the engine's
 * live rate follow. */
const char *zlb_config_rate_key(zlb_work_type_t type)
{
    switch (type) {
    case ZLB_WORK_HTTP:
        return "request_rate";
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        return "message_rate";
    default:
        return NULL;
    }
}

double zlb_config_workload_rate(const zlb_config_t *cfg)
{
    switch (cfg->workload.type) {
    case ZLB_WORK_HTTP:
        return cfg->workload.request_rate;
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        return cfg->workload.message_rate;
    default:
        return 0;
    }
}

void zlb_config_set_workload_rate(zlb_config_t *cfg, double rate)
{
    switch (cfg->workload.type) {
    case ZLB_WORK_HTTP:
        cfg->workload.request_rate = rate;
        break;
    case ZLB_WORK_ECHO:
    case ZLB_WORK_MESSAGE:
        cfg->workload.message_rate = rate;
        break;
    default:
        break;
    }
}

bool zlb_config_rate_is_live(const zlb_config_t *cfg)
{
    (void)cfg;
    return false;
}
