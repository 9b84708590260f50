/* The benches' clock. By default the monotonic clock; AEGIS_BENCH_CLOCK=cpu switches to a CPU
 * clock, so time spent waiting for a core on a shared machine is not counted (docs/BENCHMARKS.md
 * says which rows use which). Header-only: each bench is a single file. */
#ifndef AG_BENCH_CLOCK_H
#define AG_BENCH_CLOCK_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* True when AEGIS_BENCH_CLOCK=cpu. */
static inline bool bench_cpu_clock(void)
{
    const char *c = getenv("AEGIS_BENCH_CLOCK");
    return c && strcmp(c, "cpu") == 0;
}

/* Seconds on CLOCK_MONOTONIC, or on cpu_id (CLOCK_THREAD_CPUTIME_ID for a one-thread loop,
 * CLOCK_PROCESS_CPUTIME_ID when helper threads' work counts) when AEGIS_BENCH_CLOCK=cpu. */
static inline double bench_seconds(clockid_t cpu_id)
{
    static int cpu = -1;
    if (cpu < 0)
        cpu = bench_cpu_clock();
    struct timespec ts;
    clock_gettime(cpu ? cpu_id : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
