/* config_names.c -- the name of every enum value, one table per enum, for the parser and the
 * printer alike. Index i spells the enum's value i. */
#include <errno.h>
#include <string.h>

#include "config/config_internal.h"

#define TABLE(var, ...)                                                                            \
    static const char *const var##_list[] = {__VA_ARGS__};                                         \
    const zlb_config_names_t var = {var##_list, ZLB_ARRAY_LEN(var##_list)}

TABLE(zlb_config_priority_names, "normal", "high", "realtime");
TABLE(zlb_config_rt_policy_names, "fifo", "rr"); /* SCHED_FIFO, SCHED_RR */
TABLE(zlb_config_select_names, "least_loaded", "round_robin");
TABLE(zlb_config_mode_names, "echo", "sink", "http", "redis", "source"); /* zlb_serve_mode_t */
TABLE(zlb_config_work_names, "hold", "churn", "echo", "http", "message", "stream");
TABLE(zlb_config_direction_names, "send", "receive", "both"); /* zlb_stream_dir_t */
TABLE(zlb_config_family_names, "any", "ipv4", "ipv6");
TABLE(zlb_config_close_names, "fin", "rst");
const zlb_config_names_t zlb_config_log_level_names = {zlb_log_level_names,
                                                       ZLB_ARRAY_LEN(zlb_log_level_names)};
TABLE(zlb_config_tls_version_names, "1.0", "1.1", "1.2", "1.3");

const char *zlb_config_name(const zlb_config_names_t *t, int i)
{
    return i >= 0 && (size_t)i < t->n ? t->names[i] : NULL;
}

const char *zlb_config_serve_mode_name(zlb_serve_mode_t mode)
{
    return zlb_config_name(&zlb_config_mode_names, (int)mode);
}

int zlb_config_serve_mode_parse(const char *s, zlb_serve_mode_t *out)
{
    for (size_t i = 0; s && i < zlb_config_mode_names.n; i++) {
        if (strcmp(s, zlb_config_mode_names.names[i]) == 0) {
            *out = (zlb_serve_mode_t)i;
            return 0;
        }
    }
    return -EINVAL;
}
