/* ci.c -- summaries CI systems show natively: JUnit XML (one testcase per threshold and per
 * compare metric) and a markdown table (--summary-md, $GITHUB_STEP_SUMMARY). Both are rendered
 * from the JSON documents a run or a compare already produced, so they say exactly what the
 * report and compare.json say. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "gate/gate_internal.h"

/* ---- escaping ------------------------------------------------------------------------------ */

/* XML 1.0 cannot carry most C0 controls even as character references, so they become '?'
 * (a name from a user's config or a reason from a peer must not make the file unreadable);
 * invalid UTF-8 bytes likewise, since the declaration promises UTF-8. */
void zlb_gate_xml_escape(zlb_buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned char ch = *p;
        size_t n = ch < 0x80         ? 1
                   : (ch >> 5) == 6  ? 2
                   : (ch >> 4) == 14 ? 3
                   : (ch >> 3) == 30 ? 4
                                     : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            zlb_buf_printf(b, "?");
            p++;
            continue;
        }
        if (n > 1) {
            zlb_buf_printf(b, "%.*s", (int)n, (const char *)p);
            p += n;
            continue;
        }
        switch (ch) {
        case '<':
            zlb_buf_printf(b, "&lt;");
            break;
        case '>':
            zlb_buf_printf(b, "&gt;");
            break;
        case '&':
            zlb_buf_printf(b, "&amp;");
            break;
        case '"':
            zlb_buf_printf(b, "&quot;");
            break;
        case '\'':
            zlb_buf_printf(b, "&apos;");
            break;
        case '\t':
        case '\n':
        case '\r':
            zlb_buf_printf(b, "&#%d;", ch);
            break;
        default:
            zlb_buf_printf(b, "%c", ch < 0x20 || ch == 0x7f ? '?' : (char)ch);
        }
        p++;
    }
}

/* Markdown table cells: a '|' would split the cell (GFM takes "\\|" even inside a code span), a
 * newline end the table, a backtick close the code span. Outside code, '<' is escaped so nothing
 * becomes a tag; inside, entities are not read, so it stays as it is. */
static void md_text(zlb_buf_t *b, const char *s, bool code)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '|')
            zlb_buf_printf(b, "\\|");
        else if (*p == '<' && !code)
            zlb_buf_printf(b, "&lt;");
        else if (*p == '`')
            zlb_buf_printf(b, "'");
        else if (*p < 0x20 || *p == 0x7f)
            zlb_buf_printf(b, " ");
        else
            zlb_buf_printf(b, "%c", *p);
    }
}

/* ---- figures ------------------------------------------------------------------------------- */

static void md_cell(zlb_buf_t *b, const char *s)
{
    md_text(b, s, false);
}

static void md_code(zlb_buf_t *b, const char *s)
{
    md_text(b, s, true);
}

/* Figures as a person reads them: integers whole, others to 4 significant digits (at least
 * one decimal); the exact values are in the report. */
static void num(const json_t *v, char *out, size_t len)
{
    double d = json_number_value(v);
    if (json_is_boolean(v))
        snprintf(out, len, "%s", json_is_true(v) ? "true" : "false");
    else if (!json_is_number(v))
        snprintf(out, len, "-");
    else if (d == floor(d) && fabs(d) < 1e15)
        snprintf(out, len, "%.0f", d);
    else if (fabs(d) >= 1000)
        snprintf(out, len, "%.1f", d);
    else
        snprintf(out, len, "%.4g", d);
}

static const json_t *at(const json_t *j, const char *path)
{
    char key[128];
    while (j && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(key, sizeof(key), "%.*s", (int)ZLB_MIN(n, sizeof(key) - 1), path);
        j = json_object_get(j, key);
        path += n + (dot != NULL);
    }
    return j;
}

static void fig(const json_t *j, const char *path, char *out, size_t len)
{
    num(at(j, path), out, len);
}

/* A threshold's limit is the number after its operator ("<= 0.1" -> 0.1). */
static bool threshold_limit(const char *expr, double *out)
{
    const char *p = expr ? expr : "";
    while (*p == '<' || *p == '>' || *p == '=' || *p == '!' || *p == ' ')
        p++;
    char *end;
    double v = strtod(p, &end);
    if (end != p) {
        *out = v;
        return true;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        *out = p[0] == 't';
        return true;
    }
    return false;
}

/* How far the observed value is from the limit: in % of the limit, or plainly when it is 0. */
static void threshold_change(const json_t *row, char *out, size_t len)
{
    const json_t *obs = json_object_get(row, "observed");
    double limit;
    if (!json_is_number(obs) ||
        !threshold_limit(json_string_value(json_object_get(row, "expr")), &limit)) {
        snprintf(out, len, "-");
        return;
    }
    double o = json_number_value(obs);
    if (limit != 0)
        snprintf(out, len, "%+.1f%% of the limit", (o - limit) / fabs(limit) * 100.0);
    else
        snprintf(out, len, "%+g from the limit", o - limit);
}

static int count_failed_thresholds(const json_t *rows)
{
    int failed = 0;
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row) failed += !json_is_true(json_object_get(row, "passed"));
    return failed;
}

/* ---- JUnit ---------------------------------------------------------------------------------- */

static void junit_case_open(zlb_buf_t *b, const char *cls, const char *name)
{
    zlb_buf_printf(b, "    <testcase classname=\"");
    zlb_gate_xml_escape(b, cls);
    zlb_buf_printf(b, "\" name=\"");
    zlb_gate_xml_escape(b, name);
    zlb_buf_printf(b, "\" time=\"0\">\n");
}

static void junit_failure(zlb_buf_t *b, const char *type, const char *message)
{
    zlb_buf_printf(b, "      <failure type=\"%s\" message=\"", type);
    zlb_gate_xml_escape(b, message);
    zlb_buf_printf(b, "\">");
    zlb_gate_xml_escape(b, message);
    zlb_buf_printf(b, "</failure>\n");
}

static void junit_out(zlb_buf_t *b, const char *text)
{
    zlb_buf_printf(b, "      <system-out>");
    zlb_gate_xml_escape(b, text);
    zlb_buf_printf(b, "</system-out>\n");
}

/* The run's suite: the validity of the run, then every threshold row of the report. */
static void junit_run_suite(zlb_buf_t *b, const json_t *report, int *tests, int *failures)
{
    const json_t *rows = json_object_get(report, "thresholds");
    bool valid = !json_is_false(json_object_get(report, "valid"));
    int n = (int)json_array_size(rows) + 1;
    int f = count_failed_thresholds(rows) + !valid;
    char elapsed[32];
    fig(report, "elapsed_s", elapsed, sizeof(elapsed));
    zlb_buf_printf(b,
                   "  <testsuite name=\"zlbench.thresholds\" tests=\"%d\" failures=\"%d\" "
                   "errors=\"0\" skipped=\"0\" time=\"%s\">\n",
                   n, f, strcmp(elapsed, "-") ? elapsed : "0");
    zlb_buf_printf(b, "    <properties>\n");
    static const char *const props[] = {"config_hash", "stop_reason", "exit_code"};
    for (size_t i = 0; i < ZLB_ARRAY_LEN(props); i++) {
        const json_t *v = json_object_get(report, props[i]);
        char text[64];
        if (json_is_string(v))
            snprintf(text, sizeof(text), "%s", json_string_value(v));
        else
            num(v, text, sizeof(text));
        zlb_buf_printf(b, "      <property name=\"%s\" value=\"", props[i]);
        zlb_gate_xml_escape(b, text);
        zlb_buf_printf(b, "\"/>\n");
    }
    zlb_buf_printf(b, "    </properties>\n");

    /* An invalid run's figures describe the generator, not the target: say it as a test. */
    junit_case_open(b, "zlbench.run", "valid run");
    if (!valid) {
        const char *why = json_string_value(json_object_get(report, "invalid_reason"));
        char msg[512];
        snprintf(msg, sizeof(msg), "invalid run: %s", why ? why : "no reason given");
        junit_failure(b, "invalid_run", msg);
    }
    zlb_buf_printf(b, "    </testcase>\n");

    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *path = json_string_value(json_object_get(row, "path"));
        const char *expr = json_string_value(json_object_get(row, "expr"));
        char name[512], observed[64], change[64], msg[768];
        snprintf(name, sizeof(name), "%s %s", path ? path : "?", expr ? expr : "?");
        num(json_object_get(row, "observed"), observed, sizeof(observed));
        threshold_change(row, change, sizeof(change));
        const char *src = json_string_value(json_object_get(row, "source"));
        snprintf(msg, sizeof(msg), "observed %s, limit %s %s, change %s (%s figures%s)", observed,
                 path ? path : "?", expr ? expr : "?", change,
                 src && strcmp(src, "steady") == 0 ? "steady-state" : "whole-run",
                 json_is_true(json_object_get(row, "default")) ? ", a default threshold" : "");
        junit_case_open(b, "zlbench.thresholds", name);
        if (!json_is_true(json_object_get(row, "passed")))
            junit_failure(b, "threshold", msg);
        else
            junit_out(b, msg);
        zlb_buf_printf(b, "    </testcase>\n");
    }
    zlb_buf_printf(b, "  </testsuite>\n");
    *tests += n;
    *failures += f;
}

static void compare_row_text(const json_t *row, char *msg, size_t len)
{
    char base[64], cur[64], tol[32], noise[32];
    const char *verdict = json_string_value(json_object_get(row, "verdict"));
    const char *better = json_string_value(json_object_get(row, "better"));
    num(json_object_get(row, "baseline"), base, sizeof(base));
    num(json_object_get(row, "current"), cur, sizeof(cur));
    num(json_object_get(row, "tolerance_pct"), tol, sizeof(tol));
    num(json_object_get(row, "noise_pct"), noise, sizeof(noise));
    const json_t *ch = json_object_get(row, "change_pct");
    char change[32] = "-";
    if (json_is_number(ch))
        snprintf(change, sizeof(change), "%+.1f%%", json_number_value(ch));
    snprintf(msg, len,
             "%s: baseline %s, current %s, change %s, limit %s%% (tolerance) or %s%% (noise), "
             "%s is better",
             verdict ? verdict : "?", base, cur, change, tol, noise, better ? better : "?");
}

static void junit_compare_suite(zlb_buf_t *b, const json_t *cmp, int *tests, int *failures)
{
    const json_t *rows = json_object_get(cmp, "metrics");
    int n = (int)json_array_size(rows), f = 0, skipped = 0;
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *v = json_string_value(json_object_get(row, "verdict"));
        f += v && strcmp(v, "regression") == 0;
        skipped += v && strcmp(v, "missing") == 0;
    }
    zlb_buf_printf(b,
                   "  <testsuite name=\"zlbench.compare\" tests=\"%d\" failures=\"%d\" "
                   "errors=\"0\" skipped=\"%d\" time=\"0\">\n",
                   n, f, skipped);
    json_array_foreach(rows, i, row)
    {
        const char *metric = json_string_value(json_object_get(row, "metric"));
        const char *v = json_string_value(json_object_get(row, "verdict"));
        char msg[512];
        compare_row_text(row, msg, sizeof(msg));
        junit_case_open(b, "zlbench.compare", metric);
        if (v && strcmp(v, "regression") == 0) {
            junit_failure(b, "regression", msg);
        } else if (v && strcmp(v, "missing") == 0) {
            zlb_buf_printf(b, "      <skipped message=\"");
            zlb_gate_xml_escape(b, "missing in a baseline or current report");
            zlb_buf_printf(b, "\"/>\n");
        } else {
            junit_out(b, msg);
        }
        zlb_buf_printf(b, "    </testcase>\n");
    }
    zlb_buf_printf(b, "  </testsuite>\n");
    *tests += n;
    *failures += f;
}

char *zlb_gate_junit_render(const json_t *report, const json_t *compare)
{
    zlb_buf_t suites, b;
    int tests = 0, failures = 0;
    zlb_buf_init(&suites);
    if (report)
        junit_run_suite(&suites, report, &tests, &failures);
    if (compare)
        junit_compare_suite(&suites, compare, &tests, &failures);
    zlb_buf_init(&b);
    zlb_buf_printf(&b,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<testsuites name=\"zlbench\" tests=\"%d\" failures=\"%d\" errors=\"0\">\n%s"
                   "</testsuites>\n",
                   tests, failures, suites.data);
    zlb_buf_dispose(&suites);
    return b.data;
}

/* ---- markdown ------------------------------------------------------------------------------- */

static void md_run(zlb_buf_t *b, const json_t *r)
{
    const json_t *targets = json_object_get(r, "targets");
    const char *target = json_string_value(json_object_get(json_array_get(targets, 0), "name"));
    const char *stop = json_string_value(json_object_get(r, "stop_reason"));
    bool valid = !json_is_false(json_object_get(r, "valid"));
    int failed = count_failed_thresholds(json_object_get(r, "thresholds"));
    char code[16], elapsed[32];
    fig(r, "exit_code", code, sizeof(code));
    snprintf(elapsed, sizeof(elapsed), "%.1f", json_number_value(json_object_get(r, "elapsed_s")));
    const char *verdict = !valid ? "INVALID RUN" : failed ? "FAILED" : "passed";
    zlb_buf_printf(b, "### zlbench run: %s (exit %s)\n\n", verdict, code);
    zlb_buf_printf(b, "Target `");
    md_code(b, target ? target : "?");
    if (json_array_size(targets) > 1)
        zlb_buf_printf(b, "` and %zu more", json_array_size(targets) - 1);
    else
        zlb_buf_printf(b, "`");
    zlb_buf_printf(b, ", stopped by %s after %s s.", stop ? stop : "?", elapsed);
    if (!valid) {
        zlb_buf_printf(b, " Invalid: ");
        md_cell(b, json_string_value(json_object_get(r, "invalid_reason")));
        zlb_buf_printf(b, ".");
    }
    zlb_buf_printf(b, "\n\n| figure | value |\n|---|---|\n");
    static const struct {
        const char *label, *path;
        bool only_nonzero;
    } rows[] = {
        {"connections attempted", "connections.attempted", false},
        {"connections established", "connections.established", false},
        {"connections failed", "connections.failed.total", false},
        {"connects/s (steady)", "steady.rates.connects_per_s", false},
        {"messages/s (steady)", "steady.rates.messages_per_s", true},
        {"requests/s (steady)", "steady.rates.requests_per_s", true},
        {"connect p50 (us)", "steady.latency_us.connect.p50", false},
        {"connect p99 (us)", "steady.latency_us.connect.p99", false},
        {"message round trip p99 (us)", "steady.latency_us.message_rt.p99", true},
        {"http response p99 (us)", "steady.latency_us.http_response.p99", true},
        {"failure ratio", "failure_ratio", false},
        {"generator saturated", "generator.saturated", false},
    };
    for (size_t i = 0; i < ZLB_ARRAY_LEN(rows); i++) {
        const json_t *v = at(r, rows[i].path);
        if (!v || (rows[i].only_nonzero && json_is_number(v) && json_number_value(v) == 0))
            continue;
        char text[64];
        num(v, text, sizeof(text));
        zlb_buf_printf(b, "| %s | %s |\n", rows[i].label, text);
    }
    const json_t *th = json_object_get(r, "thresholds");
    if (json_array_size(th)) {
        zlb_buf_printf(b, "\n| threshold | observed | verdict |\n|---|---|---|\n");
        size_t i;
        const json_t *row;
        json_array_foreach(th, i, row)
        {
            char observed[64];
            num(json_object_get(row, "observed"), observed, sizeof(observed));
            zlb_buf_printf(b, "| `");
            md_code(b, json_string_value(json_object_get(row, "path")));
            zlb_buf_printf(b, " ");
            md_code(b, json_string_value(json_object_get(row, "expr")));
            zlb_buf_printf(b, "`%s | %s | %s |\n",
                           json_is_true(json_object_get(row, "default")) ? " (default)" : "",
                           observed,
                           json_is_true(json_object_get(row, "passed")) ? "pass" : "**FAIL**");
        }
    }
    zlb_buf_printf(b, "\n");
}

static void md_compare(zlb_buf_t *b, const json_t *cmp)
{
    char regressions[16], tol[32];
    fig(cmp, "regressions", regressions, sizeof(regressions));
    fig(cmp, "tolerance_pct", tol, sizeof(tol));
    bool regressed = json_integer_value(json_object_get(cmp, "regressions")) > 0;
    zlb_buf_printf(b, "### zlbench compare: %s (%s regression(s), tolerance %s%%)\n\n",
                   regressed ? "REGRESSION" : "no regression", regressions, tol);
    zlb_buf_printf(b,
                   "| metric | baseline | current | change | verdict |\n|---|---|---|---|---|\n");
    size_t i;
    const json_t *row;
    json_array_foreach(json_object_get(cmp, "metrics"), i, row)
    {
        char base[64], cur[64], change[32] = "-";
        num(json_object_get(row, "baseline"), base, sizeof(base));
        num(json_object_get(row, "current"), cur, sizeof(cur));
        const json_t *ch = json_object_get(row, "change_pct");
        if (json_is_number(ch))
            snprintf(change, sizeof(change), "%+.1f%%", json_number_value(ch));
        const char *v = json_string_value(json_object_get(row, "verdict"));
        zlb_buf_printf(b, "| `");
        md_code(b, json_string_value(json_object_get(row, "metric")));
        zlb_buf_printf(b, "` | %s | %s | %s | %s |\n", base, cur, change,
                       v && strcmp(v, "regression") == 0 ? "**regression**"
                       : v                               ? v
                                                         : "?");
    }
    zlb_buf_printf(b, "\n");
}

char *zlb_gate_summary_md_render(const json_t *report, const json_t *compare)
{
    zlb_buf_t b;
    zlb_buf_init(&b);
    if (report)
        md_run(&b, report);
    if (compare)
        md_compare(&b, compare);
    return b.data;
}

/* ---- files ---------------------------------------------------------------------------------- */

/* $GITHUB_STEP_SUMMARY is shared by every step of a job: appended to, never replaced. */
static int append_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text), off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int zlb_gate_ci_write(const zlb_gate_ci_opts_t *o, const json_t *report, const json_t *compare)
{
    const char *gh = getenv("GITHUB_STEP_SUMMARY");
    int rc = 0;
    if (o && o->junit_file) {
        char *xml = zlb_gate_junit_render(report, compare);
        int r = zlb_write_file_atomic(o->junit_file, xml, strlen(xml), 0644);
        free(xml);
        if (r != 0) {
            fprintf(stderr, "zlbench: cannot write the JUnit file %s: %s\n", o->junit_file,
                    strerror(-r));
            rc = r;
        }
    }
    if ((o && o->summary_md_file) || (gh && *gh)) {
        char *md = zlb_gate_summary_md_render(report, compare);
        if (o && o->summary_md_file) {
            int r = zlb_write_file_atomic(o->summary_md_file, md, strlen(md), 0644);
            if (r != 0) {
                fprintf(stderr, "zlbench: cannot write the summary %s: %s\n", o->summary_md_file,
                        strerror(-r));
                rc = r;
            }
        }
        if (gh && *gh) {
            int r = append_file(gh, md);
            if (r != 0) {
                fprintf(stderr, "zlbench: cannot append to GITHUB_STEP_SUMMARY (%s): %s\n", gh,
                        strerror(-r));
                rc = r;
            }
        }
        free(md);
    }
    return rc;
}
