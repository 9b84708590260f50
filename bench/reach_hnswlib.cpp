// reach_hnswlib — bench/bench_graph_reach's self-search count on native hnswlib (Debian's
// libhnswlib-dev headers): the SAME clustered rows as bench_graph_reach.c fill() (xorshift64
// 13/7/17 from 42, 64 centres), Euclid, M=16, ef_construction=100, one thread, inserted in slot
// order; then every stride-th stored vector searched for itself (k=1) at ef and counted as found
// when its own label comes back. The level generator's seed is hnswlib's random_seed (default 100).
//   g++ -std=c++17 -O3 -march=native -DNDEBUG -o build/reach_hnswlib bench/reach_hnswlib.cpp
//   build/reach_hnswlib [n=200000 [dim=128 [ef=512 [stride=20 [seed=100]]]]]
#include <hnswlib/hnswlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

namespace
{

uint64_t rs;

float frand() // bench_graph_reach.c frand(): [0, 1)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)(rs >> 40) / (float)(1u << 24);
}

double cpu_now()
{
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

} // namespace

int main(int argc, char **argv)
{
    const size_t n = argc > 1 ? strtoul(argv[1], nullptr, 10) : 200000;
    const size_t dim = argc > 2 ? strtoul(argv[2], nullptr, 10) : 128;
    const size_t ef = argc > 3 ? strtoul(argv[3], nullptr, 10) : 512;
    const size_t stride = argc > 4 ? strtoul(argv[4], nullptr, 10) : 20;
    const size_t seed = argc > 5 ? strtoul(argv[5], nullptr, 10) : 100;
    const size_t clusters = 64;
    std::vector<float> base(n * dim), cen(clusters * dim);
    rs = 42;
    for (auto &c : cen)
        c = frand() * 2 - 1;
    for (size_t i = 0; i < n; i++) {
        const float *c = &cen[(size_t)(frand() * clusters) * dim];
        for (size_t d = 0; d < dim; d++)
            base[i * dim + d] = c[d] + (frand() + frand() + frand() - 1.5f) * 0.2f;
    }
    hnswlib::L2Space space(dim);
    hnswlib::HierarchicalNSW<float> index(&space, n, 16, 100, seed);
    double t0 = cpu_now();
    for (size_t i = 0; i < n; i++)
        index.addPoint(&base[i * dim], i);
    double build = cpu_now() - t0;
    index.setEf(ef);
    size_t asked = 0, found = 0;
    for (size_t s = 0; s < n; s += stride) {
        auto r = index.searchKnn(&base[s * dim], 1);
        asked++;
        found += !r.empty() && r.top().second == s;
    }
    printf("hnswlib seed %zu n=%zu dim=%zu ef=%zu: build %.2f s CPU  found %zu / %zu  (%.3f %% "
           "unreachable)\n",
           seed, n, dim, ef, build, found, asked, 100.0 * (double)(asked - found) / (double)asked);
    return 0;
}
