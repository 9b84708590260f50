/*
 * bench_filter — filtered search through a real collection (store, payload indexes, planner),
 * single thread, everything measured in one run.
 *
 *   bench_filter [glove-dir [queries [rounds]]]
 *       defaults: ../shared/datasets/glove-100-angular-100k, 300 queries, 5 rounds
 *
 * GloVe-100 (100k x 100, Cosine) is loaded into a collection (HNSW m 16, ef_construct 100,
 * Qdrant's default full_scan_threshold 10000 KB = 25,600 points at 100 dimensions) with a
 * synthetic payload {"b": bucket, "kw": "k<bucket>"}, bucket uniform in 0..999, and integer /
 * keyword payload indexes on both. A filter `b in [0, m)` selects m / 10 % of the points.
 *
 * 1. Selectivity 0.1 / 1 / 10 / 50 %: q/s and recall@10 against the exact answer (a predicate scan
 *    of every point, computed in the same run) of
 *      candidates — exact scoring of the payload index's candidates;
 *      walk       — the graph walked with the predicate (ef 64), never switching to a scan;
 *      index plan — the graph index's own plan for a predicate (index/ag_hnsw.h: a scan of the
 *                   matching points below 4,096 estimated matches, else the walk);
 *      planner    — what Aegis runs (query/ag_qexec.c): the candidates when the indexes estimate
 *                   at most full_scan_threshold points, else the index plan. It calls the same
 *                   two functions the executor calls (ag_scope_candidates_max with
 *                   ag_coll_full_scan_points).
 * 2. Mixed workload at 1 % and 10 %: the planner's filtered q/s read-only, then with one write in
 *    ten operations (a random point's payload replaced: a new bucket), then the same with every
 *    payload index marked stale after each write — what every write did before indexes were
 *    maintained (the next search rebuilt the index); and, to tell the write's own cost from the
 *    index's, writes that leave every indexed value as it was; and, to tell the write from the
 *    caches it evicts, no write at all but a sweep of a 64 MB buffer in its place. Rounds
 *    interleaved, best of `rounds`.
 *    q/s counts the time spent in searches; ops/s counts everything.
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a loaded machine does not
 * distort the ratios; insert and link times are wall-clock.
 */
#include "ag_base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ag_arena.h"
#include "ag_clock.h"
#include "index/ag_index.h"
#include "query/ag_query.h"
#include "store/ag_payload_index.h"
#include "store/ag_store.h"
#include "store/ag_write.h"

#define K 10
#define EF 64
#define BUCKETS 1000

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* This thread's CPU seconds: the machine is shared, and every search and write here runs on
 * this thread (no worker pool is started), so time spent waiting for a core is not counted. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Reads an .fvecs file (each record: int32 d, then d floats); malloc'd, caller frees. */
static float *read_fvecs(const char *path, uint32_t *n, uint32_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int32_t dd;
    float *data = NULL;
    if (fread(&dd, 4, 1, f) != 1 || dd <= 0 || dd > 4096)
        goto out;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t rec = 4 + 4 * (size_t)dd;
    if (size <= 0 || (size_t)size % rec)
        goto out;
    *n = (uint32_t)((size_t)size / rec);
    *d = (uint32_t)dd;
    data = malloc((size_t)*n * (size_t)dd * 4);
    for (uint32_t i = 0; data && i < *n; i++) {
        int32_t x;
        if (fread(&x, 4, 1, f) != 1 || x != dd ||
            fread(data + (size_t)i * (size_t)dd, 4, (size_t)dd, f) != (size_t)dd) {
            free(data);
            data = NULL;
        }
    }
out:
    fclose(f);
    return data;
}

static void normalize(float *v, uint32_t d)
{
    double s = 0;
    for (uint32_t i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
    for (uint32_t i = 0; i < d; i++)
        v[i] *= inv;
}

static json_t *payload_of(uint32_t bucket)
{
    char kw[16];
    snprintf(kw, sizeof(kw), "k%03u", bucket);
    return json_pack("{s:i,s:s}", "b", (json_int_t)bucket, "kw", kw);
}

static int apply(ag_collection_t *c, ag_mutation_t *m, size_t n)
{
    ag_diag_t d = {{0}};
    int rc = ag_coll_write_begin(c);
    if (rc == 0) {
        rc = ag_coll_apply(c, m, n, false, &d);
        ag_coll_write_end(c);
    }
    if (rc)
        fprintf(stderr, "write failed: %s\n", d.msg);
    return rc;
}

typedef enum { M_TRUTH, M_CAND, M_WALK, M_INDEX, M_PLAN, M_COUNT } mode_t_;

typedef struct qrun {
    mode_t_ mode;
    const float *q;
    const json_t *filter;
    ag_hit_t *out;
    size_t n;
    int plan; /* planner: 1 = candidates, 2 = index */
} qrun_t;

static int run_query(void *ud, ag_collection_t *c)
{
    qrun_t *r = ud;
    ag_scope_t sc;
    ag_diag_t d = {{0}};
    if (ag_scope_init(&sc, c, NULL, r->filter, "filter", &d) != 0)
        return AG_EINVAL;
    ag_dense_info_t vc;
    ag_coll_dense_info(c, 0, &vc);
    ag_index_filter_t f = {.accept = ag_scope_accept, .ud = &sc};
    ag_search_params_t p = {.ef = EF};
    ag_arena_t arena;
    ag_arena_init(&arena, 64u << 20);
    uint32_t *cand;
    size_t ncand;
    int rc = 0;
    r->n = 0;
    switch (r->mode) {
    case M_TRUTH:
        rc = ag_index_score_candidates(vc.vs, vc.dist, r->q, K, &f, NULL, r->out, &r->n);
        break;
    case M_CAND:
        if (!ag_scope_candidates(&sc, &arena, r->filter, &cand, &ncand)) {
            rc = AG_EINVAL;
            break;
        }
        f.candidates = cand;
        f.n_candidates = ncand;
        rc = ag_index_score_candidates(vc.vs, vc.dist, r->q, K, &f, &p, r->out, &r->n);
        break;
    case M_WALK:
        p.walk_only = true;
        rc = ag_index_search(vc.index, r->q, K, &f, &p, r->out, &r->n);
        break;
    case M_INDEX:
        rc = ag_index_search(vc.index, r->q, K, &f, &p, r->out, &r->n);
        break;
    case M_PLAN:
    case M_COUNT:
        if (ag_scope_candidates_max(&sc, &arena, r->filter, ag_coll_full_scan_points(c, 0), &cand,
                                    &ncand)) {
            f.candidates = cand;
            f.n_candidates = ncand;
            r->plan = 1;
            rc = ag_index_score_candidates(vc.vs, vc.dist, r->q, K, &f, &p, r->out, &r->n);
        } else {
            r->plan = 2;
            rc = ag_index_search(vc.index, r->q, K, &f, &p, r->out, &r->n);
        }
        break;
    }
    ag_arena_release(&arena);
    ag_scope_release(&sc);
    return rc;
}

static json_t *filter_for(uint32_t m)
{
    json_t *any = json_array();
    for (uint32_t b = 0; b < m; b++)
        json_array_append_new(any, json_integer(b));
    return json_pack("{s:[{s:s,s:{s:o}}]}", "must", "key", "b", "match", "any", any);
}

/* A random point's payload replaced by a new random bucket (bucket[] follows), or by its own
 * bucket again (same: nothing indexed changes, the write costs the same otherwise). */
static int one_write(ag_collection_t *c, uint32_t npoints, uint32_t *bucket, bool same)
{
    ag_mutation_t m;
    memset(&m, 0, sizeof(m));
    uint32_t id = rnd(npoints);
    if (!same)
        bucket[id] = rnd(BUCKETS);
    m.id = (ag_point_id_t){.kind = AG_ID_NUM, .num = id};
    m.payload = payload_of(bucket[id]);
    int rc = apply(c, &m, 1);
    json_decref(m.payload);
    return rc;
}

/* Instead of a write: every cache line of a buffer larger than the CPU caches read and written,
 * so the searches after it start as cold as after a write, with no write at all. */
static void cache_sweep(void)
{
    enum { SWEEP = 64 << 20 };
    static unsigned char *buf;
    if (!buf && !(buf = calloc(1, SWEEP)))
        return;
    for (size_t i = 0; i < SWEEP; i += 64)
        buf[i]++;
}

static int full_scan(void *ud, ag_collection_t *c)
{
    *(uint32_t *)ud = ag_coll_full_scan_points(c, 0);
    return 0;
}

static int invalidate(void *ud, ag_collection_t *c)
{
    (void)ud;
    ag_payload_index_invalidate(c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *gdir = argc > 1 ? argv[1] : "../shared/datasets/glove-100-angular-100k";
    uint32_t nq_want = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 300;
    int rounds = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 5;
    if (nq_want == 0 || rounds <= 0 || rounds > 100) {
        fprintf(stderr, "usage: %s [glove-dir [queries [rounds]]]\n", argv[0]);
        return 2;
    }
    char path[1024];
    uint32_t n, d, nq, dq;
    snprintf(path, sizeof(path), "%s/base.fvecs", gdir);
    float *base = read_fvecs(path, &n, &d);
    snprintf(path, sizeof(path), "%s/query.fvecs", gdir);
    float *qs = read_fvecs(path, &nq, &dq);
    if (!base || !qs || d != dq) {
        fprintf(stderr, "cannot read GloVe from %s\n", gdir);
        return 1;
    }
    nq = AG_MIN(nq, nq_want);
    for (uint32_t i = 0; i < n; i++)
        normalize(base + (size_t)i * d, d);
    for (uint32_t i = 0; i < nq; i++)
        normalize(qs + (size_t)i * d, d);

    char dir[] = "/tmp/aegis-bench-filter-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    ag_store_config_t cfg = {.path = dir, .map_size = (size_t)4 << 30, .flush_interval_s = 1.0};
    ag_store_t *st = NULL;
    ag_diag_t diag = {{0}};
    if (ag_store_open(&cfg, &st, &diag) != 0) {
        fprintf(stderr, "store: %s\n", diag.msg);
        return 1;
    }
    json_t *body =
               json_pack("{s:{s:i,s:s}}", "vectors", "size", (json_int_t)d, "distance", "Cosine"),
           *params = NULL;
    ag_collection_t *c = NULL;
    if (ag_coll_parse_params(body, &params, &diag) != 0 ||
        ag_store_create(st, "glove", params, &diag) != 0 || ag_store_get(st, "glove", &c, NULL)) {
        fprintf(stderr, "collection: %s\n", diag.msg);
        return 1;
    }
    json_decref(params);
    json_decref(body);
    const char *fields[2][2] = {{"b", "integer"}, {"kw", "keyword"}};
    for (int i = 0; i < 2; i++) {
        if (ag_coll_write_begin(c) != 0 ||
            ag_store_set_index(st, c, fields[i][0], json_pack("{s:s}", "data_type", fields[i][1]),
                               NULL, &diag) != 0)
            return 1;
        ag_coll_write_end(c);
    }

    uint32_t *bucket = malloc(n * sizeof(uint32_t));
    ag_mutation_t *muts = calloc(1000, sizeof(ag_mutation_t));
    if (!bucket || !muts)
        return 1;
    double t0 = ag_now_mono();
    for (uint32_t s = 0; s < n; s += 1000) {
        size_t k = AG_MIN(1000u, n - s);
        memset(muts, 0, k * sizeof(*muts));
        for (size_t i = 0; i < k; i++) {
            uint32_t id = s + (uint32_t)i;
            bucket[id] = rnd(BUCKETS);
            muts[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = id};
            muts[i].payload = payload_of(bucket[id]);
            muts[i].dense_op[0] = AG_VEC_SET;
            muts[i].dense[0] = base + (size_t)id * d;
        }
        int rc = apply(c, muts, k);
        for (size_t i = 0; i < k; i++)
            json_decref(muts[i].payload);
        if (rc)
            return 1;
    }
    double t_ins = ag_now_mono() - t0;
    ag_coll_counts_t cnt;
    do { /* link the graph here too (the store's indexer thread runs at the lowest priority) */
        ag_coll_index_step(c, 2000);
        ag_coll_counts(c, &cnt);
    } while (cnt.queued > 0);
    printf("GloVe-100: %u points x %u (Cosine), %u queries, k=%d, ef=%d, best of %d rounds\n", n, d,
           nq, K, EF, rounds);
    uint32_t fs = 0;
    ag_coll_read(c, full_scan, &fs);
    printf("inserted in %.1f s, graph linked after %.1f s; full_scan_threshold = %u points\n",
           t_ins, ag_now_mono() - t0, fs);

    /* ---- 1. selectivity ------------------------------------------------------------------- */
    static const uint32_t sels[] = {1, 10, 100, 500}; /* buckets: 0.1, 1, 10, 50 % */
    ag_hit_t *truth = malloc((size_t)nq * K * sizeof(ag_hit_t));
    size_t *ntruth = malloc(nq * sizeof(size_t));
    ag_hit_t got[K];
    if (!truth || !ntruth)
        return 1;
    printf("\n%8s %8s | %-22s | %-22s | %-22s | %-22s | %s\n", "select.", "matches",
           "candidates q/s  recall", "walk q/s  recall", "index plan q/s  recall",
           "planner q/s  recall", "planner chose");
    for (size_t si = 0; si < AG_ARRAY_LEN(sels); si++) {
        json_t *filter = filter_for(sels[si]);
        uint32_t matches = 0;
        for (uint32_t i = 0; i < n; i++)
            matches += bucket[i] < sels[si];
        for (uint32_t q = 0; q < nq; q++) {
            qrun_t r = {.mode = M_TRUTH,
                        .q = qs + (size_t)q * d,
                        .filter = filter,
                        .out = truth + (size_t)q * K};
            if (ag_coll_read(c, run_query, &r) != 0)
                return 1;
            ntruth[q] = r.n;
        }
        double best[M_COUNT], recall[M_COUNT];
        int plan_seen = 0;
        for (int m = 0; m < M_COUNT; m++)
            best[m] = INFINITY, recall[m] = 0;
        for (int m = M_CAND; m < M_COUNT; m++) { /* warm-up: the index is built by then */
            qrun_t r = {.mode = (mode_t_)m, .q = qs, .filter = filter, .out = got};
            if (ag_coll_read(c, run_query, &r) != 0)
                return 1;
        }
        for (int round = 0; round < rounds; round++) {
            for (int m = M_CAND; m < M_COUNT; m++) {
                size_t hit = 0, want = 0;
                double t = now();
                for (uint32_t q = 0; q < nq; q++) {
                    qrun_t r = {
                        .mode = (mode_t_)m, .q = qs + (size_t)q * d, .filter = filter, .out = got};
                    if (ag_coll_read(c, run_query, &r) != 0)
                        return 1;
                    plan_seen |= r.plan;
                    want += ntruth[q];
                    for (size_t a = 0; a < ntruth[q]; a++)
                        for (size_t b = 0; b < r.n; b++)
                            hit += truth[(size_t)q * K + a].slot == got[b].slot;
                }
                best[m] = AG_MIN(best[m], now() - t);
                recall[m] = want ? (double)hit / (double)want : 1.0;
            }
        }
        printf("%7.1f%% %8u |", sels[si] / 10.0, matches);
        for (int m = M_CAND; m < M_COUNT; m++)
            printf(" %12.0f  %7.4f |", nq / best[m], recall[m]);
        printf(" %s\n", plan_seen == 1 ? "candidates" : plan_seen == 2 ? "index plan" : "both");
        json_decref(filter);
    }

    /* ---- 2. mixed workload ---------------------------------------------------------------- */
    printf("\nmixed workload (planner; 1 write in 10 operations; q/s = searches / search time)\n");
    printf("%8s | %-14s | %-24s | %-24s | %-24s | %-14s | %s\n", "select.", "read-only q/s",
           "10% writes q/s (ops/s)", "+ rebuild q/s (ops/s)", "same-value writes q/s",
           "cache sweeps", "10% writes / read-only, sweeps / read-only");
    static const uint32_t mixed_sels[] = {10, 100};
    uint32_t block = AG_MAX(nq, 600u); /* searches per variant and round */
    for (size_t si = 0; si < AG_ARRAY_LEN(mixed_sels); si++) {
        json_t *filter = filter_for(mixed_sels[si]);
        double q_best[5] = {0, 0, 0, 0, 0}, ops_best[5] = {0, 0, 0, 0, 0};
        uint64_t builds[5] = {0, 0, 0, 0, 0};
        for (int round = 0; round < rounds; round++) {
            for (int variant = 0; variant < 5; variant++) {
                uint64_t builds0 = ag_payload_index_builds();
                double tq = 0, t_all = now();
                uint32_t searches = 0, ops = block * (variant ? 10u : 9u) / 9u;
                for (uint32_t op = 0; op < ops; op++) {
                    if (variant == 4 && op % 10 == 9) {
                        cache_sweep();
                        continue;
                    }
                    if (variant && op % 10 == 9) {
                        if (one_write(c, n, bucket, variant == 3) != 0)
                            return 1;
                        if (variant == 2)
                            ag_coll_read(c, invalidate, NULL);
                        continue;
                    }
                    qrun_t r = {.mode = M_PLAN,
                                .q = qs + (size_t)(searches % nq) * d,
                                .filter = filter,
                                .out = got};
                    double t = now();
                    if (ag_coll_read(c, run_query, &r) != 0)
                        return 1;
                    tq += now() - t;
                    searches++;
                }
                double all = now() - t_all;
                builds[variant] += ag_payload_index_builds() - builds0;
                q_best[variant] = AG_MAX(q_best[variant], searches / tq);
                ops_best[variant] = AG_MAX(ops_best[variant], ops / all);
            }
        }
        printf("%7.1f%% | %14.0f | %12.0f (%9.0f) | %12.0f (%9.0f) | %12.0f (%9.0f) | %14.0f | "
               "%.2f, %.2f   (index builds: %llu / %llu / %llu / %llu)\n",
               mixed_sels[si] / 10.0, q_best[0], q_best[1], ops_best[1], q_best[2], ops_best[2],
               q_best[3], ops_best[3], q_best[4], q_best[1] / q_best[0], q_best[4] / q_best[0],
               (unsigned long long)builds[0], (unsigned long long)builds[1],
               (unsigned long long)builds[2], (unsigned long long)builds[3]);
        json_decref(filter);
    }

    free(truth);
    free(ntruth);
    free(bucket);
    free(muts);
    free(base);
    free(qs);
    ag_coll_unref(c);
    ag_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
