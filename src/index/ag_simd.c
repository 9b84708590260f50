#include "ag_base.h"

#include "ag_simd.h"

#include <pthread.h>
#include <stdio.h>

#include "ag_distance.h"
#include "ag_quant.h"

/* docs/ARCHITECTURE.md "SIMD levels". The environment is read once (pthread_once): the level it
 * names, and whether it named a known one. */
_Atomic int ag__simd_cap = -1;

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_level = AG_SIMD_AVX512;
static bool env_bad;
static char env_value[40]; /* the unknown value, cut short, for the message */

static const char *const level_names[] = {
    [AG_SIMD_SCALAR] = "scalar",
    [AG_SIMD_AVX2] = "avx2",
    [AG_SIMD_AVX512] = "avx512",
};

static void read_env(void)
{
    const char *v = getenv("AEGIS_SIMD");
    if (!v || !*v)
        return;
    for (size_t i = 0; i < AG_ARRAY_LEN(level_names); i++) {
        if (strcmp(v, level_names[i]) == 0) {
            env_level = (int)i;
            return;
        }
    }
    env_level = AG_SIMD_SCALAR; /* unknown: the variant every CPU runs */
    env_bad = true;
    snprintf(env_value, sizeof(env_value), "%s", v);
}

ag_simd_t ag__simd_cap_first(void)
{
    pthread_once(&env_once, read_env);
    int expect = -1;
    /* a cap a test set in the meantime wins */
    atomic_compare_exchange_strong_explicit(&ag__simd_cap, &expect, env_level, memory_order_relaxed,
                                            memory_order_relaxed);
    return (ag_simd_t)atomic_load_explicit(&ag__simd_cap, memory_order_relaxed);
}

int ag_simd_env_check(ag_diag_t *diag)
{
    pthread_once(&env_once, read_env);
    if (!env_bad)
        return 0;
    char shown[sizeof(env_value)]; /* control bytes shown as '?' */
    size_t i = 0;
    for (; env_value[i]; i++)
        shown[i] = (unsigned char)env_value[i] < 0x20 || env_value[i] == 0x7f ? '?' : env_value[i];
    shown[i] = '\0';
    return ag_fail(diag, AG_EINVAL,
                   "AEGIS_SIMD: unknown value '%s' (expected avx512, avx2 or scalar; unset means "
                   "the best the CPU has)",
                   shown);
}

void ag_simd_cap_set(int level)
{
    if (level < 0) {
        pthread_once(&env_once, read_env);
        level = env_level;
    }
    if (level > AG_SIMD_AVX512)
        level = AG_SIMD_AVX512;
    atomic_store_explicit(&ag__simd_cap, level, memory_order_relaxed);
}

const char *ag_simd_name(ag_simd_t level)
{
    return (unsigned)level < AG_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

void ag_simd_describe(char *out, size_t n)
{
    if (!out || n == 0)
        return;
    snprintf(out, n,
             "AEGIS_SIMD=%s: int8 kernels %s, Hamming %s, scan helpers %s, rescoring %s; float "
             "kernels chosen by the loader (not capped)",
             ag_simd_name(ag_simd_cap()), ag_u8_dot_kernel(), ag_bits_hamming_kernel(),
             ag_u32_scan_kernel(), ag_dot_f32_rows_batched() ? "four rows a step" : "row by row");
}
