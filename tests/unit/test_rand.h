/*
 * test_rand.h — the quantization tests' random source: xorshift64 (shifts 13, 7, 17) over a
 * file-static state and uniform floats in [-1, 1). A test defines TEST_RNG_SEED (its own seed, so
 * each keeps the data its assertions were written for) and includes this header once; the state
 * is the file's `rng_s`, which a test may reseed.
 */
#ifndef TEST_RAND_H
#define TEST_RAND_H

#include <stdint.h>

#ifndef TEST_RNG_SEED
#error "define TEST_RNG_SEED before including test_rand.h"
#endif

static uint64_t rng_s = TEST_RNG_SEED;

static inline uint64_t next_u64(void)
{
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}

static inline float uni(void) /* [-1, 1) */
{
    return (float)((double)(next_u64() >> 11) / (double)(UINT64_C(1) << 52) - 1.0);
}

#endif
