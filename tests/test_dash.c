/* test_dash.c -- the dashboard's files and the HTML report writer: hostile report text stays
 * data, the page's CSP hashes are those of its inline script and style, the percentile curves
 * come from the histograms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "dash/dash.h"
#include "stats/stats.h"
#include "test.h"

#define HOSTILE "</script><script>alert(1)</script><!--"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ASSERT(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* 'sha256-...' of the bytes between open (its end) and the next close. */
static void hash_between(const char *html, const char *open, const char *close, char *out)
{
    const char *a = strstr(html, open);
    ASSERT(a);
    a += strlen(open);
    const char *b = strstr(a, close);
    ASSERT(b);
    unsigned char md[32], b64[64];
    unsigned int len = 0;
    ASSERT(EVP_Digest(a, (size_t)(b - a), md, &len, EVP_sha256(), NULL) == 1);
    EVP_EncodeBlock(b64, md, (int)len);
    sprintf(out, "'sha256-%s'", (const char *)b64);
}

static void test_report_page(void)
{
    /* A report whose strings try to close the data element and run a script. */
    zlb_hist_t *h = zlb_hist_create_latency();
    for (uint64_t v = 1; v <= 10000; v++)
        zlb_hist_record(h, v * 1000); /* 1 us .. 10 ms, uniform */
    json_t *hj = zlb_hist_to_json(h);
    json_t *report = json_pack("{s:s, s:{s:o}, s:[{s:s}], s:{s:s}}", "state", "done", "histograms",
                               "connect", hj, "targets", "name", HOSTILE, "config", "x", HOSTILE);
    char path[] = "/tmp/test_dash.XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    char err[256] = "";
    ASSERT_EQ(zlb_dash_write_report(report, HOSTILE, NULL, NULL, 0, path, err, sizeof(err)), 0);
    char *html = slurp(path);
    printf("  page: %zu bytes\n", strlen(html));

    /* The hostile text appears only escaped: in the title as entities, in the data as \u003c. */
    ASSERT(strstr(html, "<script>alert") == NULL);
    ASSERT_EQ(count(html, "</script>"), 2); /* the data element's and the script's own */
    ASSERT_EQ(count(html, "<script"), 2);
    ASSERT(strstr(html, "&lt;/script&gt;&lt;script&gt;alert(1)") != NULL);
    ASSERT(strstr(html, "\\u003c/script>\\u003cscript>alert(1)") != NULL);

    /* The CSP names exactly the inline script and style, nothing else may run or load. */
    char sh[128], st[128];
    hash_between(html, "<script>", "</script>", sh);
    hash_between(html, "<style>", "</style>", st);
    printf("  script %s, style %s\n", sh, st);
    ASSERT(strstr(html, sh) != NULL);
    ASSERT(strstr(html, st) != NULL);
    ASSERT(strstr(html, "default-src 'none'") != NULL);
    ASSERT(strstr(html, "unsafe-inline") == NULL);
    /* (The SVG namespace URI is a name, not a request.) */
    ASSERT(strstr(html, "src=") == NULL);
    ASSERT(count(html, "href=") == 1); /* the favicon, data: */
    ASSERT(strstr(html, "href=\"data:,\"") != NULL);

    /* The connect curve: p50 of 1..10000 us is about 5000 us, the last point near 10 ms. */
    const char *cv = strstr(html, "\"curves\":{\"connect\":[[");
    ASSERT(cv);
    double p = 0, v = 0;
    const char *mid = strstr(cv, "[50.0,");
    ASSERT(mid);
    ASSERT(sscanf(mid, "[%lf,%lf]", &p, &v) == 2);
    printf("  curve point p%.1f = %.1f us (uniform 1..10000 us)\n", p, v);
    ASSERT(v > 4900 && v < 5100);

    free(html);
    unlink(path);
    json_decref(report);
    zlb_hist_destroy(h);
}

static void test_assets(void)
{
    size_t n = 0;
    const zlb_control_asset_t *a = zlb_dash_assets(&n);
    ASSERT(n >= 4);
    ASSERT_STREQ(a[0].path, "/");
    for (size_t i = 0; i < n; i++) {
        printf("  %-14s %-32s %zu bytes\n", a[i].path, a[i].content_type, a[i].len);
        ASSERT(a[i].len > 100);
        ASSERT_EQ(strlen((const char *)a[i].data), a[i].len); /* NUL-terminated, no NUL inside */
    }
    /* The page loads only files of this port: no scheme-relative or absolute URLs. */
    ASSERT(strstr((const char *)a[0].data, "http") == NULL);
}

int main(void)
{
    RUN_TEST(test_assets);
    RUN_TEST(test_report_page);
    return 0;
}
