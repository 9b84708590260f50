// scale_hnswlib — the reference graph for bench/scale.mjs's recall: native hnswlib (Debian's
// libhnswlib-dev headers) on the SAME synthetic set scale.mjs serves (bench/lib.mjs clustered():
// the same xorshift stream, 64 centres, seed 42; the same 100 queries, seed 7), Euclid, M=16,
// ef_construction=100, one thread; exact ground truth by brute force here; recall@10 and
// single-thread q/s (process CPU clock, one query per call) per ef. If hnswlib's recall at 1M
// also stays below 0.95 at the ef where Aegis's does, the ceiling is the data, not Aegis's graph.
//   g++ -std=c++17 -O3 -march=native -DNDEBUG -o build/scale_hnswlib bench/scale_hnswlib.cpp
//   build/scale_hnswlib [points=1000000] [queries=100]
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <set>
#include <vector>

namespace
{

struct Xorshift { // bench/lib.mjs xorshift(): uint32 state, value / 2^32
    uint32_t s;
    explicit Xorshift(uint32_t seed) : s(seed ? seed : 1) {}
    double operator()()
    {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        return s / 4294967296.0;
    }
};

double cpu_now()
{
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

} // namespace

int main(int argc, char **argv)
{
    const size_t n = argc > 1 ? strtoul(argv[1], nullptr, 10) : 1000000;
    const size_t nq = argc > 2 ? strtoul(argv[2], nullptr, 10) : 100;
    const size_t dim = 128, k = 10, clusters = 64;
    std::vector<float> base(n * dim);
    {
        Xorshift rnd(42);
        std::vector<float> centres(clusters * dim);
        for (auto &c : centres)
            c = (float)(rnd() * 2 - 1);
        for (size_t i = 0; i < n; i++) {
            const float *c = &centres[(size_t)(rnd() * clusters) * dim];
            for (size_t d = 0; d < dim; d++)
                base[i * dim + d] = (float)(c[d] + (rnd() + rnd() + rnd() - 1.5) * 0.2);
        }
    }
    std::vector<float> q(nq * dim);
    {
        Xorshift rq(7);
        for (size_t i = 0; i < nq; i++) {
            size_t src = (size_t)(rq() * n);
            for (size_t d = 0; d < dim; d++)
                q[i * dim + d] = (float)(base[src * dim + d] + (rq() - 0.5) * 0.1);
        }
    }
    std::vector<std::set<size_t>> truth(nq);
    for (size_t i = 0; i < nq; i++) {
        std::vector<std::pair<double, size_t>> all(n);
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t d = 0; d < dim; d++) {
                double t = (double)base[j * dim + d] - q[i * dim + d];
                s += t * t;
            }
            all[j] = {s, j};
        }
        std::partial_sort(all.begin(), all.begin() + k, all.end());
        for (size_t j = 0; j < k; j++)
            truth[i].insert(all[j].second);
    }
    hnswlib::L2Space space(dim);
    hnswlib::HierarchicalNSW<float> index(&space, n, 16, 100, 100);
    double t0 = cpu_now();
    for (size_t i = 0; i < n; i++)
        index.addPoint(&base[i * dim], i);
    printf("hnswlib %zu x %zu clustered: build %.1f s CPU\n", n, dim, cpu_now() - t0);
    for (size_t ef : {16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048}) {
        index.setEf(ef);
        double best = 0;
        size_t hit = 0;
        for (int round = 0; round < 3; round++) {
            hit = 0;
            double t = cpu_now();
            for (size_t i = 0; i < nq; i++) {
                auto r = index.searchKnn(&q[i * dim], k);
                while (!r.empty()) {
                    hit += truth[i].count(r.top().second);
                    r.pop();
                }
            }
            best = std::max(best, nq / (cpu_now() - t));
        }
        printf("hnswlib ef=%zu recall@10 %.3f q/s %.0f\n", ef, (double)hit / (double)(k * nq), best);
        fflush(stdout);
    }
    return 0;
}
