#include "ag_metrics.h"

#include <stdatomic.h>

const int ag_metrics_status_codes[AG_METRICS_STATUSES] = {200, 201, 202, 204, 206, 304, 400, 401,
                                                          403, 404, 405, 406, 408, 409, 411, 413,
                                                          415, 422, 429, 500, 501, 503, 504, 0};

const double ag_metrics_bucket_bounds[AG_METRICS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0};

typedef struct route_cells {
    _Atomic uint64_t status[AG_METRICS_STATUSES];
    _Atomic uint64_t buckets[AG_METRICS_BUCKETS + 1];
    _Atomic uint64_t sum_us;
    _Atomic uint64_t allowed, denied;
} route_cells_t;

/* One stripe: a thread's own copy of every counter (threads past AG_METRICS_STRIPES share). */
typedef struct stripe {
    _Alignas(64) _Atomic uint64_t scalar[AG_M_COUNT];
    route_cells_t route[AG_METRICS_ROUTES];
} stripe_t;

static stripe_t stripes[AG_METRICS_STRIPES];
/* Extremes are kept once (updated only when a new one is seen, which soon becomes rare). */
static _Atomic uint64_t min_us[AG_METRICS_ROUTES], max_us[AG_METRICS_ROUTES];
static atomic_uint next_stripe;
static _Thread_local int my_stripe = -1;

static stripe_t *mine(void)
{
    if (my_stripe < 0)
        my_stripe = (int)(atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
                          AG_METRICS_STRIPES);
    return &stripes[my_stripe];
}

static void bump(_Atomic uint64_t *cell, uint64_t n)
{
    atomic_fetch_add_explicit(cell, n, memory_order_relaxed);
}

void ag_metrics_add(ag_metric_t m, uint64_t n)
{
    if ((unsigned)m < AG_M_COUNT && n)
        bump(&mine()->scalar[m], n);
}

uint64_t ag_metrics_get(ag_metric_t m)
{
    uint64_t sum = 0;
    if ((unsigned)m >= AG_M_COUNT)
        return 0;
    for (int s = 0; s < AG_METRICS_STRIPES; s++)
        sum += atomic_load_explicit(&stripes[s].scalar[m], memory_order_relaxed);
    return sum;
}

static unsigned status_index(int status)
{
    for (unsigned i = 0; i + 1 < AG_METRICS_STATUSES; i++)
        if (ag_metrics_status_codes[i] == status)
            return i;
    return AG_METRICS_STATUSES - 1;
}

void ag_metrics_request(unsigned slot, int status, double seconds)
{
    if (slot >= AG_METRICS_ROUTES)
        slot = AG_METRICS_NO_ROUTE;
    if (!(seconds >= 0.0)) /* also NaN */
        seconds = 0.0;
    route_cells_t *r = &mine()->route[slot];
    bump(&r->status[status_index(status)], 1);
    unsigned b = 0;
    while (b < AG_METRICS_BUCKETS && seconds > ag_metrics_bucket_bounds[b])
        b++;
    bump(&r->buckets[b], 1);
    uint64_t us = seconds > 1e6 ? (uint64_t)1e12 : (uint64_t)(seconds * 1e6);
    bump(&r->sum_us, us);
    /* Stored as us + 1 so that 0 means "none yet". */
    uint64_t v = us + 1;
    uint64_t cur = atomic_load_explicit(&max_us[slot], memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak(&max_us[slot], &cur, v))
        ;
    cur = atomic_load_explicit(&min_us[slot], memory_order_relaxed);
    while ((cur == 0 || v < cur) && !atomic_compare_exchange_weak(&min_us[slot], &cur, v))
        ;
}

void ag_metrics_decision(unsigned slot, bool allowed)
{
    if (slot >= AG_METRICS_ROUTES)
        slot = AG_METRICS_NO_ROUTE;
    route_cells_t *r = &mine()->route[slot];
    bump(allowed ? &r->allowed : &r->denied, 1);
}

void ag_metrics_route(unsigned slot, ag_metrics_route_t *out)
{
    memset(out, 0, sizeof(*out));
    if (slot >= AG_METRICS_ROUTES)
        return;
    uint64_t sum_us = 0;
    for (int s = 0; s < AG_METRICS_STRIPES; s++) {
        const route_cells_t *r = &stripes[s].route[slot];
        for (int i = 0; i < AG_METRICS_STATUSES; i++) {
            uint64_t n = atomic_load_explicit(&r->status[i], memory_order_relaxed);
            out->status[i] += n;
            out->count += n;
        }
        for (int i = 0; i <= AG_METRICS_BUCKETS; i++)
            out->buckets[i] += atomic_load_explicit(&r->buckets[i], memory_order_relaxed);
        sum_us += atomic_load_explicit(&r->sum_us, memory_order_relaxed);
        out->allowed += atomic_load_explicit(&r->allowed, memory_order_relaxed);
        out->denied += atomic_load_explicit(&r->denied, memory_order_relaxed);
    }
    out->sum_s = (double)sum_us / 1e6;
    uint64_t lo = atomic_load(&min_us[slot]), hi = atomic_load(&max_us[slot]);
    out->min_s = lo ? (double)(lo - 1) / 1e6 : 0.0;
    out->max_s = hi ? (double)(hi - 1) / 1e6 : 0.0;
}
