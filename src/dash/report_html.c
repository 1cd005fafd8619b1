/* report_html.c -- a JSON report as one self-contained HTML page, and `zlbench report`. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "dash/dash.h"
#include "dash/dash_internal.h"
#include "report/report.h"
#include "stats/stats.h"

/* Most points of one percentile curve: HdrHistogram's plot steps five per halving of the
 * remaining tail, so 1 - 0.5^(i/5) reaches 99.9999 % at i = 100. */
#define CURVE_STEPS_PER_HALF 5
#define CURVE_MAX_STEPS 100

/* A histogram's percentile curve, [[percentile, value_us], ...]: where the tail of a latency
 * distribution is read, which the few fixed percentiles of the JSON hide. Stops at the last
 * sample (beyond it every percentile is the max). */
static json_t *curve_json(const zlb_hist_t *h)
{
    json_t *pts = json_array();
    uint64_t n = zlb_hist_count(h);
    for (int i = 0; i <= CURVE_MAX_STEPS; i++) {
        double p = 1.0 - pow(0.5, (double)i / CURVE_STEPS_PER_HALF);
        bool last = p >= 1.0 - 1.0 / (double)n || i == CURVE_MAX_STEPS;
        if (last)
            p = 1.0 - 1.0 / (double)n > 0.0 ? 1.0 - 1.0 / (double)n : p;
        double v = (double)zlb_hist_percentile(h, p * 100.0) / 1000.0;
        json_array_append_new(pts, json_pack("[o, o]", zlb_json_real(p * 100.0), zlb_json_real(v)));
        if (last)
            break;
    }
    return pts;
}

/* {phase: curve} for every histogram of the report with samples. */
static json_t *curves_json(const json_t *report)
{
    json_t *out = json_object();
    const json_t *hs = json_object_get(report, "histograms");
    const char *phase;
    json_t *hj;
    json_object_foreach((json_t *)hs, phase, hj)
    {
        zlb_hist_t *h = NULL;
        const char *why = NULL;
        if (zlb_hist_from_json(hj, &h, &why) != 0)
            continue; /* the report checker accepted it; a phase it cannot read is left out */
        if (zlb_hist_count(h) > 0)
            json_object_set_new(out, phase, curve_json(h));
        zlb_hist_destroy(h);
    }
    return out;
}

/* What the page draws: the report without its encoded histograms (their curves instead). */
static json_t *view_json(const json_t *report, const char *name)
{
    json_t *v = json_deep_copy(report);
    json_object_del(v, "histograms");
    json_object_set_new(v, "curves", curves_json(report));
    json_object_set_new(v, "name", json_string(name));
    return v;
}

/* The figures a baseline adds to the page: its curves and headline numbers. */
static json_t *baseline_json(const json_t *report, const char *name)
{
    json_t *v = json_object();
    static const char *const keep[] = {"latency_us", "rates",       "connections",
                                       "elapsed_s",  "config_hash", "finished_at_unix_s"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(keep); i++) {
        json_t *x = json_object_get(report, keep[i]);
        if (x)
            json_object_set(v, keep[i], x);
    }
    json_object_set_new(v, "curves", curves_json(report));
    json_object_set_new(v, "name", json_string(name));
    return v;
}

/* 'sha256-BASE64' of text, for the page's Content-Security-Policy: only the exact inline script
 * and style written here may run, nothing injected beside them. */
static void csp_hash(const char *text, size_t len, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        zlb_fatal("report html: SHA-256 failed");
    EVP_EncodeBlock(b64, md, (int)mdlen);
    snprintf(out, cap, "'sha256-%s'", (const char *)b64);
}

/* Appends JSON text safe inside a <script> element: '<' never appears raw (no "</script>" or
 * "<!--" can end or bend the element). It occurs only inside JSON strings, where \u003c is the
 * same character. */
static void put_json_text(FILE *f, const char *json)
{
    for (const char *p = json; *p; p++) {
        if (*p == '<')
            fputs("\\u003c", f);
        else
            fputc(*p, f);
    }
}

static void put_html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

int zlb_dash_write_report(const json_t *report, const char *name, const json_t *const *baselines,
                          const char *const *base_names, size_t nbase, const char *path, char *err,
                          size_t errlen)
{
    json_t *data = json_object();
    json_object_set_new(data, "report", view_json(report, name));
    json_t *bases = json_array();
    for (size_t i = 0; i < nbase; i++)
        json_array_append_new(bases, baseline_json(baselines[i], base_names[i]));
    json_object_set_new(data, "baselines", bases);
    json_object_set_new(data, "generated_unix_s", json_integer((json_int_t)time(NULL)));
    char *text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(data);
    if (!text) {
        snprintf(err, errlen, "cannot render the report's data");
        return -ENOMEM;
    }

    const zlb_embed_file_t *css = zlb_dash_file("dash.css");
    const zlb_embed_file_t *charts = zlb_dash_file("charts.js");
    const zlb_embed_file_t *page = zlb_dash_file("report.js");
    /* The inline script is both files with a newline between; its hash covers exactly that. */
    size_t slen = charts->len + 1 + page->len;
    char *script = zlb_xmalloc(slen + 1);
    memcpy(script, charts->data, charts->len);
    script[charts->len] = '\n';
    memcpy(script + charts->len + 1, page->data, page->len + 1);
    char script_hash[128], style_hash[128];
    csp_hash(script, slen, script_hash, sizeof(script_hash));
    csp_hash((const char *)css->data, css->len, style_hash, sizeof(style_hash));

    char *html = NULL;
    size_t hlen = 0;
    FILE *f = open_memstream(&html, &hlen);
    if (!f)
        zlb_fatal("report html: open_memstream: %s", strerror(errno));
    fputs("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
    fprintf(f,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; script-src %s; style-src %s; base-uri 'none'; form-action 'none'\">\n",
            script_hash, style_hash);
    fputs("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<link rel=\"icon\" href=\"data:,\">\n<title>zlbench report: ",
          f);
    put_html_text(f, name);
    fputs("</title>\n<style>", f);
    fwrite(css->data, 1, css->len, f);
    fputs("</style>\n</head>\n<body>\n<div id=\"app\"></div>\n"
          "<script type=\"application/json\" id=\"zlb-data\">",
          f);
    put_json_text(f, text);
    fputs("</script>\n<script>", f);
    fwrite(script, 1, slen, f);
    fputs("</script>\n</body>\n</html>\n", f);
    free(text);
    free(script);
    if (fclose(f) != 0)
        zlb_fatal("report html: cannot build the page in memory");

    int rc = zlb_write_file_atomic(path, html, hlen, 0644);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
    free(html);
    return rc;
}

/* ---- zlbench report ------------------------------------------------------------------------ */

static const char report_usage[] =
    "usage: zlbench report [BASE.json[,BASE2.json...]] REPORT.json -o OUT.html\n"
    "Writes REPORT.json as one self-contained HTML page (no external requests): the summary,\n"
    "thresholds and verdicts, latency percentile plots, the timeline, pollers, failures, the\n"
    "effective config and host facts. With baselines, their latency curves are drawn over the\n"
    "report's (dashed) and their headline figures shown beside it.\n"
    "  -o, --output FILE   the HTML file to write (required)\n";

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int zlb_dash_report_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (c == 'o') {
            out = optarg;
        } else if (c == 'h') {
            fputs(report_usage, stdout);
            return ZLB_EXIT_OK;
        } else {
            fputs(report_usage, stderr);
            return ZLB_EXIT_USAGE;
        }
    }
    int npos = argc - optind;
    if (!out || npos < 1 || npos > 2) {
        fprintf(stderr, "zlbench report: %s\n%s",
                !out ? "an output file is required: -o OUT.html"
                     : "expected REPORT.json, or BASE.json[,...] REPORT.json",
                report_usage);
        return ZLB_EXIT_USAGE;
    }
    const char *cur_path = argv[argc - 1];
    json_t *cur = zlb_report_load(cur_path, "report");
    if (!cur)
        return ZLB_EXIT_USAGE;

    json_t *bases[16];
    const char *names[16];
    char *list = npos == 2 ? zlb_xstrdup(argv[optind]) : NULL;
    size_t nbase = 0;
    int code = ZLB_EXIT_OK;
    for (char *save = NULL, *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (nbase == ZLB_ARRAY_LEN(bases)) {
            fprintf(stderr, "zlbench report: at most %zu baselines\n", ZLB_ARRAY_LEN(bases));
            code = ZLB_EXIT_USAGE;
            break;
        }
        bases[nbase] = zlb_report_load(tok, "report");
        if (!bases[nbase]) {
            code = ZLB_EXIT_USAGE;
            break;
        }
        names[nbase++] = base_name(tok);
    }
    if (code == ZLB_EXIT_OK) {
        char err[512];
        if (zlb_dash_write_report(cur, base_name(cur_path), (const json_t *const *)bases, names,
                                  nbase, out, err, sizeof(err)) != 0) {
            fprintf(stderr, "zlbench report: %s\n", err);
            code = ZLB_EXIT_INTERNAL;
        } else {
            fprintf(stderr, "zlbench report: wrote %s\n", out);
        }
    }
    for (size_t i = 0; i < nbase; i++)
        json_decref(bases[i]);
    free(list);
    json_decref(cur);
    return code;
}
