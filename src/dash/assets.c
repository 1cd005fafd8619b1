/* assets.c -- the live dashboard's files, as the control port serves them. */
#include <pthread.h>
#include <string.h>

#include "core/core.h"
#include "dash/dash.h"
#include "dash/dash_internal.h"

const zlb_embed_file_t *zlb_dash_file(const char *name)
{
    for (size_t i = 0; i < zlb_dash_files_n; i++)
        if (strcmp(zlb_dash_files[i].name, name) == 0)
            return &zlb_dash_files[i];
    zlb_fatal("dash: no embedded file %s", name);
}

/* The URL of each file and its type. The page is a static shell: the data comes from /stats,
 * /stats/series and /run, fetched by the script with the token when one is needed. */
static const struct {
    const char *path, *file, *type;
} routes[] = {
    {"/", "dashboard.html", "text/html; charset=utf-8"},
    {"/dash.css", "dash.css", "text/css; charset=utf-8"},
    {"/charts.js", "charts.js", "text/javascript; charset=utf-8"},
    {"/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"},
};

static zlb_control_asset_t assets[ZLB_ARRAY_LEN(routes)];

static void fill_assets(void)
{
    for (size_t i = 0; i < ZLB_ARRAY_LEN(routes); i++) {
        const zlb_embed_file_t *f = zlb_dash_file(routes[i].file);
        assets[i] = (zlb_control_asset_t){routes[i].path, routes[i].type, f->data, f->len};
    }
}

const zlb_control_asset_t *zlb_dash_assets(size_t *n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_assets);
    *n = ZLB_ARRAY_LEN(routes);
    return assets;
}
