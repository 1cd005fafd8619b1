/* config_override.c -- command-line overrides applied with the file's own rules and messages. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"

int zlb_config_override(zlb_config_t *cfg, const char *origin, const char *key_path, json_t *value,
                        zlb_metric_path_cb validate_path, zlb_config_error_t *err)
{
    /* "pollers.count" = 4 becomes {"pollers": {"count": 4}}: a patch in the file's layout, read
     * by the same section parsers (absent keys keep their values), then every cross-field rule
     * (parse_root leaves those to its caller). */
    json_t *patch = value;
    char key[128];
    const char *end = key_path + strlen(key_path);
    while (end > key_path) {
        const char *start = end;
        while (start > key_path && start[-1] != '.')
            start--;
        snprintf(key, sizeof(key), "%.*s", (int)(end - start), start);
        json_t *o = json_object();
        json_object_set_new(o, key, patch);
        patch = o;
        end = start > key_path ? start - 1 : start;
    }
    /* No name and no text: messages start at the key path and claim no line:column. */
    zlb_config_ctx_t c = {.err = err, .validate_path = validate_path};
    err->message[0] = '\0';
    int rc = zlb_config_parse_root(&c, patch, cfg);
    if (rc == 0)
        rc = zlb_config_check_cross(&c, cfg);
    zlb_config_path_dispose(&c.path); /* the key path's buffer grows as it goes */
    json_decref(patch);
    if (rc == 0)
        return 0;
    /* A value the key's own parser refused never reached cfg, which then still passes the
     * cross-field rules: that message reads "--connections: expected an integer ...". A rule
     * across fields that the new value broke keeps the key it names ("--duration: warmup: ..."). */
    char msg[sizeof(err->message)];
    memcpy(msg, err->message, sizeof(msg));
    zlb_config_error_t again;
    zlb_config_ctx_t c2 = {.err = &again, .validate_path = validate_path};
    size_t n = strlen(key_path);
    const char *rest = msg;
    bool cross_ok = zlb_config_check_cross(&c2, cfg) == 0;
    zlb_config_path_dispose(&c2.path);
    if (cross_ok && strncmp(rest, key_path, n) == 0 && strncmp(rest + n, ": ", 2) == 0)
        rest += n + 2;
    zlb_config_set_message(err, "%s: %s", origin, rest);
    return rc < 0 ? rc : -EINVAL;
}
