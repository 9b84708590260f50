/*
 * bench_rand.h — the benchmarks' one random source: xorshift64 (shifts 13, 7, 17) over a
 * file-static state, uniform doubles in (0, 1) and Box–Muller normals. A bench defines
 * BENCH_RNG_SEED (its own seed, so each keeps the data it has always generated) and includes this
 * header once; the state is the file's `rng`, which a bench may reseed.
 */
#ifndef BENCH_RAND_H
#define BENCH_RAND_H

#include <math.h>
#include <stdint.h>

#ifndef BENCH_RNG_SEED
#error "define BENCH_RNG_SEED before including bench_rand.h"
#endif

static uint64_t rng = BENCH_RNG_SEED;

static inline uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static inline double unit(void) /* (0, 1) */
{
    return ((double)(next_u64() >> 11) + 0.5) / (double)(UINT64_C(1) << 53);
}

static inline float gauss(void)
{
    return (float)(sqrt(-2.0 * log(unit())) * cos(6.283185307179586 * unit()));
}

#endif
