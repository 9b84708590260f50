#!/usr/bin/python3
"""The hnswlib baseline for bench_hnsw's GloVe part: same files, same parameters (M=16,
ef_construction=100, cosine, one thread), recall@10 against the shipped gt.ivecs and
single-thread queries/s at ef 16/32/64/128. Uses Debian's python3-hnswlib (0.6.2) and numpy.
Usage: bench/hnswlib_glove.py [glove-dir]   (run by bench/compare_hnswlib.sh)"""
import sys
import time

import hnswlib
import numpy as np

K = 10


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return rows.view(dtype) if dtype != np.int32 else rows


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/glove-100-angular-100k"
    base = np.ascontiguousarray(read_vecs(f"{d}/base.fvecs", np.float32))
    queries = np.ascontiguousarray(read_vecs(f"{d}/query.fvecs", np.float32))
    gt = read_vecs(f"{d}/gt.ivecs", np.int32)[:, :K]
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], M=16, ef_construction=100, random_seed=100)
    index.set_num_threads(1)
    t0 = time.perf_counter()
    index.add_items(base, np.arange(base.shape[0]), num_threads=1)
    build = time.perf_counter() - t0
    print(f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else '0.6.2'} "
          f"GloVe-100 angular: n={base.shape[0]} queries={queries.shape[0]}")
    print(f"build (M=16, ef_construction=100, 1 thread): {build:.2f} s")
    # All queries in one call on one thread: no Python overhead per query, hnswlib's best case.
    print("search (1 thread)   recall@10   queries/s")
    for ef in (16, 32, 64, 128):
        index.set_ef(ef)
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            labels, _ = index.knn_query(queries, k=K, num_threads=1)
            best = max(best, len(queries) / (time.perf_counter() - t0))
        recall = np.mean([len(set(labels[i]) & set(gt[i])) / K for i in range(len(queries))])
        print(f"hnswlib ef={ef:<4}       {recall:.4f}   {best:10.1f}")


if __name__ == "__main__":
    main()
