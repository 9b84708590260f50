/*
 * The answer writer's per-score cost — bench/bench_answer.c
 *
 *   AEGIS_BENCH_CLOCK=cpu ./build/bench_answer [scores=1000000]
 *
 * Prints `scores` score-like float32s (cosine similarities in [-1, 1] and distances up to 4,000,
 * the values a search answer carries) as answer text two ways, interleaved over 5 rounds, best
 * kept: json/ag_jsonw.c's integer way (ag_jw_f32_text, what the server uses) and the printf way it
 * replaced (ag_jw_f32_text_printf: %.{6..9}g + strtof until the text reads back), which is also
 * this run's baseline. Every text is checked to be the same both ways. docs/BENCHMARKS.md
 * "Server CPU per search request".
 */
#include "ag_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "json/ag_jsonw.h"

#define BENCH_RNG_SEED 0x9E3779B97F4A7C15ull
#include "bench_rand.h"

#define ROUNDS 5

static double now(void)
{
    return bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

/* Seconds to print all values one way; *bytes sums the lengths (so the work is not dropped). */
static double run(const float *v, size_t n, bool printf_way, size_t *bytes)
{
    char buf[AG_JW_F32_MAX];
    size_t total = 0;
    double t0 = now();
    for (size_t i = 0; i < n; i++)
        total += printf_way ? ag_jw_f32_text_printf(v[i], buf) : ag_jw_f32_text(v[i], buf);
    double t = now() - t0;
    *bytes = total;
    return t;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    if (n == 0)
        n = 1;
    float *v = malloc(n * sizeof(*v));
    if (!v)
        return 1;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(next_u64() >> 11) / 9007199254740992.0;
        v[i] = i % 4 == 3 ? (float)(u * 4000) : (float)(2 * u - 1);
    }
    for (size_t i = 0; i < n; i++) {
        char a[AG_JW_F32_MAX], b[AG_JW_F32_MAX];
        ag_jw_f32_text(v[i], a);
        ag_jw_f32_text_printf(v[i], b);
        if (strcmp(a, b) != 0) {
            fprintf(stderr, "bench_answer: %.9g printed \"%s\" and \"%s\"\n", (double)v[i], a, b);
            return 1;
        }
    }
    double best_int = 1e300, best_printf = 1e300;
    size_t bytes_int = 0, bytes_printf = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t = run(v, n, true, &bytes_printf);
        best_printf = t < best_printf ? t : best_printf;
        t = run(v, n, false, &bytes_int);
        best_int = t < best_int ? t : best_int;
    }
    printf("score text, %zu score-like float32s (%s clock, best of %d interleaved rounds)\n", n,
           bench_cpu_clock() ? "process CPU" : "monotonic", ROUNDS);
    printf("  printf way (baseline, %%.{6..9}g + strtof)  %7.1f ns/score  (%zu bytes)\n",
           best_printf * 1e9 / (double)n, bytes_printf);
    printf("  integer way (ag_jw_f32_text)              %7.1f ns/score  (%zu bytes)  %.1fx\n",
           best_int * 1e9 / (double)n, bytes_int, best_printf / best_int);
    free(v);
    return 0;
}
