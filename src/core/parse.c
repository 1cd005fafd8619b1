/* parse.c -- durations and sizes from configuration strings, and durations back to text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

typedef struct {
    const char *name;
    uint64_t scale;
} unit_t;

static const unit_t duration_units[] = {
    {"ns", 1},
    {"us", ZLB_NS_PER_US},
    {"ms", ZLB_NS_PER_MS},
    {"s", ZLB_NS_PER_SEC},
    {"m", 60 * ZLB_NS_PER_SEC},
    {"h", 3600 * ZLB_NS_PER_SEC},
};

static const unit_t size_units[] = {
    {"B", 1},
    {"KB", 1000ull},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses "<digits>[.<digits>]<unit>" in exact integer arithmetic (no double rounding: "0.1s" is
 * exactly 100000000 ns). Fraction digits below the unit's resolution are truncated. A sign,
 * whitespace or a missing digit before the point is -EINVAL. */
static int parse_scaled(const char *s, const unit_t *units, size_t nunits, bool unit_required,
                        uint64_t *out)
{
    if (!s || !is_digit(*s))
        return -EINVAL;

    bool overflow = false;
    uint64_t whole = 0;
    for (; is_digit(*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (whole > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            whole = whole * 10 + d;
    }

    uint64_t frac = 0, frac_div = 1;
    bool has_frac = false;
    if (*s == '.') {
        s++;
        if (!is_digit(*s))
            return -EINVAL;
        has_frac = true;
        for (; is_digit(*s); s++) {
            if (frac_div <= UINT64_MAX / 10 / 10) { /* keep 10^k representable */
                frac = frac * 10 + (uint64_t)(*s - '0');
                frac_div *= 10;
            }
        }
    }

    uint64_t scale = 1;
    if (*s == '\0') {
        if (unit_required || has_frac)
            return -EINVAL;
    } else {
        size_t i;
        for (i = 0; i < nunits; i++)
            if (strcmp(s, units[i].name) == 0)
                break;
        if (i == nunits)
            return -EINVAL;
        scale = units[i].scale;
    }
    if (overflow)
        return -ERANGE;

    unsigned __int128 total = (unsigned __int128)whole * scale;
    total += (unsigned __int128)frac * scale / frac_div;
    if (total > UINT64_MAX)
        return -ERANGE;
    *out = (uint64_t)total;
    return 0;
}

int zlb_parse_duration(const char *s, uint64_t *ns_out)
{
    return parse_scaled(s, duration_units, ZLB_ARRAY_LEN(duration_units), true, ns_out);
}

/* A bare integer is bytes; a fraction needs a unit ("1.5KiB" = 1536). */
int zlb_parse_size(const char *s, uint64_t *bytes_out)
{
    return parse_scaled(s, size_units, ZLB_ARRAY_LEN(size_units), false, bytes_out);
}

void zlb_format_duration(uint64_t ns, char *buf, size_t len)
{
    if (len == 0)
        return;
    if (ns == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    for (size_t i = ZLB_ARRAY_LEN(duration_units); i-- > 0;) {
        const unit_t *u = &duration_units[i];
        if (ns % u->scale == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ns / u->scale), u->name);
            return;
        }
    }
}

void zlb_percentile_key(double p, char *key, size_t len)
{
    char num[32];
    size_t k = 0;
    if (len < 2) {
        if (len)
            key[0] = '\0';
        return;
    }
    snprintf(num, sizeof(num), "%.10g", p);
    key[k++] = 'p';
    for (const char *c = num; *c && k + 1 < len; c++)
        if (*c != '.')
            key[k++] = *c;
    key[k] = '\0';
}
