// hnswlib_native — the native hnswlib baseline for bench_hnsw's GloVe part (docs/BENCHMARKS.md).
//
//   hnswlib_native [glove-dir [minilm-dir]]   default ../shared/datasets/glove-100-angular-100k
//
// minilm-dir (embeddings.bin, 384-d): every 10th row is a query, the rest the base, exact ground
// truth by brute force; the queries are repeated to about 1,000 (bench_hnsw does the same).
//
// Same files and parameters as bench_hnsw: base.fvecs normalized (cosine = inner product on unit
// vectors), M=16, ef_construction=100, one thread; recall@10 against gt.ivecs and single-thread
// queries/s at ef 16/32/64/128, ONE QUERY PER searchKnn CALL, best of 5 interleaved rounds.
// Header-only hnswlib from Debian's libhnswlib-dev, compiled by bench/compare_hnswlib.sh with
// -O3 -march=native (so hnswlib's AVX kernels are compiled in). Not part of the CMake build: the
// CI machine does not need hnswlib. AEGIS_BENCH_CLOCK=cpu times with the process CPU clock, as
// bench_hnsw does (the time waiting for a core on a shared machine is not counted).
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

namespace
{

constexpr size_t K = 10;
constexpr int ROUNDS = 5;
const size_t EFS[] = {10, 16, 32, 64, 128};

// Reads an .fvecs/.ivecs file (each record: int32 d, then d 4-byte values) into out (n x d).
template <typename T>
bool read_vecs(const std::string &path, std::vector<T> &out, size_t &n, size_t &d)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return false;
    int32_t dd = 0;
    if (!f.read(reinterpret_cast<char *>(&dd), 4) || dd <= 0)
        return false;
    f.seekg(0, std::ios::end);
    size_t size = static_cast<size_t>(f.tellg());
    size_t rec = 4 + 4 * static_cast<size_t>(dd);
    if (size % rec)
        return false;
    n = size / rec;
    d = static_cast<size_t>(dd);
    out.resize(n * d);
    f.seekg(0);
    for (size_t i = 0; i < n; i++) {
        int32_t x;
        if (!f.read(reinterpret_cast<char *>(&x), 4) || x != dd ||
            !f.read(reinterpret_cast<char *>(out.data() + i * d), 4 * d))
            return false;
    }
    return true;
}

void normalize(float *v, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += static_cast<double>(v[j]) * v[j];
    if (s > 0) {
        float inv = static_cast<float>(1.0 / std::sqrt(s));
        for (size_t j = 0; j < d; j++)
            v[j] *= inv;
    }
}

bool cpu_clock; // AEGIS_BENCH_CLOCK=cpu

double now()
{
    if (cpu_clock) {
        timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Builds the index and runs the ef sweep; gt holds dg ids per query.
void run(const char *title, std::vector<float> &base, size_t n, size_t d, const std::vector<float> &qs,
         size_t nq, const std::vector<int32_t> &gt, size_t dg)
{
    hnswlib::InnerProductSpace space(d);
    hnswlib::HierarchicalNSW<float> index(&space, n, 16, 100, 100);
    double t0 = now();
    for (size_t i = 0; i < n; i++)
        index.addPoint(base.data() + i * d, i);
    double build = now() - t0;
    std::printf("hnswlib 0.6.2 native (libhnswlib-dev, -O3 -march=native%s) %s: "
                "n=%zu queries=%zu; %s\n",
#if defined(USE_AVX512)
                ", AVX-512",
#elif defined(USE_AVX)
                ", AVX",
#else
                ", SSE",
#endif
                title, n, nq, cpu_clock ? "process CPU clock" : "wall clock");
    std::printf("build (M=16, ef_construction=100, 1 thread): %.2f s\n", build);

    std::vector<double> best(std::size(EFS), 1e300);
    std::vector<double> recall(std::size(EFS), 0);
    std::vector<size_t> got(nq * K);
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t e = 0; e < std::size(EFS); e++) {
            index.setEf(EFS[e]);
            double s = now();
            for (size_t q = 0; q < nq; q++) {
                auto res = index.searchKnn(qs.data() + q * d, K);
                // The queue pops farthest first; order does not matter for recall.
                for (size_t i = 0; i < K; i++) {
                    got[q * K + i] = res.empty() ? SIZE_MAX : res.top().second;
                    if (!res.empty())
                        res.pop();
                }
            }
            best[e] = std::min(best[e], now() - s);
            size_t hit = 0;
            for (size_t q = 0; q < nq; q++)
                for (size_t i = 0; i < K; i++)
                    for (size_t j = 0; j < K; j++)
                        if (got[q * K + j] == static_cast<size_t>(gt[q * dg + i])) {
                            hit++;
                            break;
                        }
            recall[e] = static_cast<double>(hit) / static_cast<double>(nq * K);
        }
    }
    std::printf("search (1 thread, one query per call)   recall@10   queries/s\n");
    for (size_t e = 0; e < std::size(EFS); e++)
        std::printf("hnswlib ef=%-4zu       %.4f   %10.1f\n", EFS[e], recall[e], nq / best[e]);
}

// MiniLM-384 from embeddings.bin: the split and the exact ground truth (inner product).
bool minilm(const std::string &dir)
{
    const size_t d = 384;
    std::ifstream f(dir + "/embeddings.bin", std::ios::binary);
    if (!f)
        return false;
    f.seekg(0, std::ios::end);
    size_t size = static_cast<size_t>(f.tellg());
    if (size == 0 || size % (d * 4))
        return false;
    size_t rows = size / (d * 4);
    std::vector<float> all(rows * d), base, qs;
    f.seekg(0);
    if (!f.read(reinterpret_cast<char *>(all.data()), static_cast<std::streamsize>(size)))
        return false;
    for (size_t i = 0; i < rows; i++) {
        normalize(all.data() + i * d, d);
        auto &dst = i % 10 == 9 ? qs : base;
        dst.insert(dst.end(), all.begin() + i * d, all.begin() + (i + 1) * d);
    }
    size_t n = base.size() / d, nq1 = qs.size() / d, reps = 1000 / (nq1 + 1) + 1;
    std::vector<float> q1 = qs;
    for (size_t r = 1; r < reps; r++)
        qs.insert(qs.end(), q1.begin(), q1.end());
    size_t nq = std::min(nq1 * reps, static_cast<size_t>(1000));
    std::vector<int32_t> gt(nq * K);
    for (size_t q = 0; q < nq; q++) {
        std::vector<std::pair<float, int32_t>> sc(n);
        for (size_t i = 0; i < n; i++) {
            float s = 0;
            for (size_t j = 0; j < d; j++)
                s += qs[q * d + j] * base[i * d + j];
            sc[i] = {-s, static_cast<int32_t>(i)};
        }
        std::partial_sort(sc.begin(), sc.begin() + K, sc.end());
        for (size_t i = 0; i < K; i++)
            gt[q * K + i] = sc[i].second;
    }
    std::printf("\n");
    run("MiniLM-384", base, n, d, qs, nq, gt, K);
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    const char *clk = std::getenv("AEGIS_BENCH_CLOCK");
    cpu_clock = clk && std::strcmp(clk, "cpu") == 0;
    std::string dir = argc > 1 ? argv[1] : "../shared/datasets/glove-100-angular-100k";
    std::vector<float> base, qs;
    std::vector<int32_t> gt;
    size_t n = 0, d = 0, nq = 0, dq = 0, ng = 0, dg = 0;
    if (!read_vecs(dir + "/base.fvecs", base, n, d) ||
        !read_vecs(dir + "/query.fvecs", qs, nq, dq) || !read_vecs(dir + "/gt.ivecs", gt, ng, dg) ||
        d != dq || ng != nq || dg < K) {
        std::fprintf(stderr, "hnswlib_native: cannot read %s\n", dir.c_str());
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        normalize(base.data() + i * d, d);
    for (size_t i = 0; i < nq; i++)
        normalize(qs.data() + i * d, d);
    run("GloVe-100 angular", base, n, d, qs, nq, gt, dg);
    if (argc > 2 && !minilm(argv[2])) {
        std::fprintf(stderr, "hnswlib_native: cannot read %s/embeddings.bin\n", argv[2]);
        return 1;
    }
    return 0;
}
