/*
 * The upsert body parser's cost per vector number — bench/bench_numbers.c
 *
 *   ./build/bench_numbers [points=1000]
 *
 * Builds one record-form upsert body of `points` 128-d points whose values are random float32s
 * printed as their 17-significant-digit double spelling (what JavaScript and Python send), then
 * times json/ag_fastpoints.c parsing it, beside the same run's baseline: strtod on every number
 * token of the body (what the strict path's jansson does per number, before any tree building).
 * Best of 7 interleaved rounds; AEGIS_BENCH_CLOCK=cpu times with the process CPU clock. Every
 * parsed value is checked bit for bit against (float)strtod. docs/BENCHMARKS.md "Ingestion".
 */
#include "ag_base.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "ag_arena.h"
#include "ag_clock.h"
#include "bench_clock.h"
#include "json/ag_fastpoints.h"

#define BENCH_RNG_SEED 0x9E3779B97F4A7C15ull
#include "bench_rand.h"

#define DIM 128
#define ROUNDS 7

static bool cpu_clock; /* AEGIS_BENCH_CLOCK=cpu */

static double now(void)
{
    return bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

int main(int argc, char **argv)
{
    size_t points = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000;
    cpu_clock = bench_cpu_clock();
    if (points == 0 || points > 100000) {
        fprintf(stderr, "points: 1..100000\n");
        return 2;
    }
    size_t nnum = points * DIM, cap = points * (DIM * 26 + 64) + 64;
    char *body = malloc(cap);                   /* owned here */
    float *want = malloc(nnum * 4);             /* owned here */
    size_t *at = malloc(nnum * sizeof(size_t)); /* each number's offset in body; owned here */
    if (!body || !want || !at)
        return 1;
    size_t o = (size_t)snprintf(body, cap, "{\"points\":[");
    for (size_t p = 0; p < points; p++) {
        o += (size_t)snprintf(body + o, cap - o, "%s{\"id\":%zu,\"vector\":[", p ? "," : "", p);
        for (size_t d = 0; d < DIM; d++) {
            float f = (float)((double)(next_u64() >> 11) * 0x1p-52 - 1.0);
            at[p * DIM + d] = o + (d ? 1 : 0);
            o += (size_t)snprintf(body + o, cap - o, "%s%.17g", d ? "," : "", (double)f);
            want[p * DIM + d] = (float)strtod(body + at[p * DIM + d], NULL);
        }
        o += (size_t)snprintf(body + o, cap - o, "],\"payload\":{\"group\":%zu}}", p % 100);
    }
    o += (size_t)snprintf(body + o, cap - o, "]}");

    double best_fast = 1e30, best_strtod = 1e30;
    volatile float sink = 0;
    for (int round = 0; round < ROUNDS; round++) {
        ag_arena_t a;
        ag_arena_init(&a, 0);
        ag_fastpoint_t *pts;
        size_t n;
        double t0 = now();
        if (!ag_fastpoints_parse(body, o, DIM, &a, &pts, &n) || n != points) {
            fprintf(stderr, "the fast parser declined the body\n");
            return 1;
        }
        double t1 = now();
        for (size_t p = 0; p < points; p++)
            if (memcmp(pts[p].vector, want + p * DIM, DIM * sizeof(float)) != 0) {
                fprintf(stderr, "point %zu differs from strtod\n", p);
                return 1;
            }
        ag_fastpoints_release(pts, n);
        ag_arena_release(&a);
        double t2 = now();
        float acc = 0;
        for (size_t i = 0; i < nnum; i++)
            acc += (float)strtod(body + at[i], NULL);
        double t3 = now();
        sink = acc;
        if (t1 - t0 < best_fast)
            best_fast = t1 - t0;
        if (t3 - t2 < best_strtod)
            best_strtod = t3 - t2;
    }
    (void)sink;
    printf("upsert body: %zu points x %d numbers (%.1f bytes per number), best of %d, %s clock\n",
           points, DIM, (double)o / (double)nnum, ROUNDS, cpu_clock ? "cpu" : "wall");
    printf("  fast parser (whole body)   %6.1f ns per number  %6.2f us per point\n",
           best_fast / (double)nnum * 1e9, best_fast / (double)points * 1e6);
    printf("  baseline: strtod per number %6.1f ns per number  %6.2f us per point\n",
           best_strtod / (double)nnum * 1e9, best_strtod / (double)points * 1e6);
    printf("  every value equal to (float)strtod: yes\n");
    free(body);
    free(want);
    free(at);
    return 0;
}
