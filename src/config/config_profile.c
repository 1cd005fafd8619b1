/* config_profile.c -- a load profile's arithmetic: the values a list of stages asks for at a time.
 * Pure functions (no clock, no I/O), so that the run's stage driver, the report's stage targets
 * and the tests compute the same figures. */
#include "config/config.h"

/* Nearest integer of a value >= 0 (config links no libm). */
static uint64_t round_u64(double x)
{
    return x <= 0 ? 0 : (uint64_t)(x + 0.5);
}

static double lerp(double a, double b, double f)
{
    return a + (b - a) * f;
}

/* connect_rate, close_rate and a stream's rate: 0 is "unlimited", not a number on the way: a move
 * from or to it takes the stage's value at its start. */
static double limit_move(double from, double to, double f)
{
    return from == 0 || to == 0 ? to : lerp(from, to, f);
}

void zlb_config_stage_move(const zlb_stage_t *st, const zlb_stage_values_t *from, uint64_t into_ns,
                           zlb_stage_values_t *out)
{
    /* A zero-length stage is at its end from the start: a jump. */
    double f = into_ns >= st->duration_ns ? 1.0 : (double)into_ns / (double)st->duration_ns;
    zlb_stage_values_t v = *from;

    if (st->set & ZLB_STAGE_CONNECTIONS) {
        if (f >= 1.0)
            v.connections = st->to.connections; /* exact at the end, whatever the rounding */
        else
            v.connections =
                round_u64(lerp((double)from->connections, (double)st->to.connections, f));
    }
    if (st->set & ZLB_STAGE_CONNECT_RATE)
        v.connect_rate =
            f >= 1.0 ? st->to.connect_rate : limit_move(from->connect_rate, st->to.connect_rate, f);
    if (st->set & ZLB_STAGE_RATE)
        v.rate = f >= 1.0 ? st->to.rate
                 : (st->set & ZLB_STAGE_RATE_ZERO_UNLIMITED)
                     ? limit_move(from->rate, st->to.rate, f)
                     : lerp(from->rate, st->to.rate, f);
    if (st->set & ZLB_STAGE_CLOSE_RATE)
        v.close_rate =
            f >= 1.0 ? st->to.close_rate : limit_move(from->close_rate, st->to.close_rate, f);
    *out = v;
}

size_t zlb_config_stages_at(const zlb_stage_t *st, size_t n, const zlb_stage_values_t *start,
                            uint64_t t_ns, zlb_stage_values_t *out, uint64_t *began_ns)
{
    zlb_stage_values_t from = *start;
    uint64_t t0 = 0;

    for (size_t i = 0; i < n; i++) {
        bool last = i + 1 == n;
        /* Stage i covers [t0, t0 + duration): at its end exactly, the next one is in force. */
        if (t_ns - t0 < st[i].duration_ns || (last && st[i].duration_ns == 0)) {
            zlb_config_stage_move(&st[i], &from, t_ns - t0, out);
            if (began_ns)
                *began_ns = t0;
            return i;
        }
        zlb_config_stage_move(&st[i], &from, st[i].duration_ns, &from);
        t0 += st[i].duration_ns;
    }
    *out = from;
    if (began_ns)
        *began_ns = t0;
    return n;
}

uint64_t zlb_config_stages_length(const zlb_stage_t *st, size_t n, bool *forever)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += st[i].duration_ns;
    *forever = n > 0 && st[n - 1].duration_ns == 0;
    return sum;
}

void zlb_config_stage_start(const zlb_config_t *cfg, zlb_stage_values_t *out)
{
    *out = (zlb_stage_values_t){
        .connections = cfg->connections,
        .connect_rate = cfg->connect_rate,
        .rate = zlb_config_workload_rate(cfg),
        .close_rate = cfg->close_rate,
    };
}

uint64_t zlb_config_peak_connections(const zlb_config_t *cfg)
{
    uint64_t peak = cfg->connections;
    for (size_t i = 0; i < cfg->nstages; i++)
        if ((cfg->stages[i].set & ZLB_STAGE_CONNECTIONS) && cfg->stages[i].to.connections > peak)
            peak = cfg->stages[i].to.connections;
    return peak;
}
