/* test_config_util.h -- what the config tests share: a config from a JSON text that must be
 * valid (the test fails with the loader's own message when it is not), and a text that must be
 * refused with a message that says the given words. */
#ifndef ZLB_TEST_CONFIG_UTIL_H
#define ZLB_TEST_CONFIG_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "test.h"

static inline zlb_config_t *parse(const char *text)
{
    zlb_config_t *cfg = NULL;
    zlb_config_error_t err;
    if (zlb_config_parse(text, "t.json", NULL, &cfg, &err) != 0)
        ZLB_TEST_FAIL("%s: %s", text, err.message);
    return cfg;
}

static inline void expect_parse_error(const char *text, const char *want)
{
    zlb_config_t *cfg = NULL;
    zlb_config_error_t err;
    ASSERT_EQ(zlb_config_parse(text, "t.json", NULL, &cfg, &err), -EINVAL);
    printf("  %s\n    -> %s\n", text, err.message);
    if (!strstr(err.message, want))
        ZLB_TEST_FAIL("message \"%s\" lacks \"%s\"", err.message, want);
}

#endif
