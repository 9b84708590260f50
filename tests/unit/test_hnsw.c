/* HNSW index: recall against the exact index, filtered search, deletes, concurrency,
 * persistence. Seeded and deterministic; sized to stay well under 30 s with ASan. */
#include "ag_base.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_clock.h"

#include "index/ag_hnsw.h"
#include "index/ag_index.h"

#define K 10

/* ---- data ----------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t next_u64(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

static double unit(rng_t *r)
{
    return ((double)(next_u64(r) >> 11) + 0.5) / (double)(UINT64_C(1) << 53);
}

static float gauss(rng_t *r)
{
    return (float)(sqrt(-2.0 * log(unit(r))) * cos(6.283185307179586 * unit(r)));
}

#define CLUSTERS 50

typedef struct dataset {
    uint32_t n, dim, nq;
    float *base;    /* n * dim */
    float *queries; /* nq * dim */
    uint32_t *cluster;
    float *centers;
} dataset_t;

static void point_near(rng_t *r, const dataset_t *d, uint32_t c, float *out)
{
    for (uint32_t j = 0; j < d->dim; j++)
        out[j] = d->centers[(size_t)c * d->dim + j] + 0.8f * gauss(r);
}

static void make_data(dataset_t *d, uint32_t n, uint32_t dim, uint32_t nq, uint64_t seed)
{
    rng_t r = {seed};
    d->n = n;
    d->dim = dim;
    d->nq = nq;
    d->base = malloc((size_t)n * dim * sizeof(float));
    d->queries = malloc((size_t)nq * dim * sizeof(float));
    d->cluster = malloc((size_t)n * sizeof(uint32_t));
    d->centers = malloc((size_t)CLUSTERS * dim * sizeof(float));
    assert_non_null(d->base);
    assert_non_null(d->queries);
    assert_non_null(d->cluster);
    assert_non_null(d->centers);
    for (size_t i = 0; i < (size_t)CLUSTERS * dim; i++)
        d->centers[i] = gauss(&r);
    for (uint32_t i = 0; i < n; i++) {
        d->cluster[i] = (uint32_t)(next_u64(&r) % CLUSTERS);
        point_near(&r, d, d->cluster[i], d->base + (size_t)i * dim);
    }
    for (uint32_t i = 0; i < nq; i++)
        point_near(&r, d, (uint32_t)(next_u64(&r) % CLUSTERS), d->queries + (size_t)i * dim);
}

static void free_data(dataset_t *d)
{
    free(d->base);
    free(d->queries);
    free(d->cluster);
    free(d->centers);
}

/* A store plus both indexes over it. */
typedef struct fixture {
    dataset_t d;
    ag_distance_t dist;
    ag_vecstore_t *vs;
    ag_index_t *hnsw, *exact;
    float *q; /* nq * dim, normalized for Cosine */
} fixture_t;

static void fixture_setup_nq(fixture_t *f, uint32_t n, uint32_t dim, ag_distance_t dist,
                             const ag_hnsw_params_t *p, uint32_t nq)
{
    memset(f, 0, sizeof(*f));
    make_data(&f->d, n, dim, nq, 0x1234567ull + dist);
    f->dist = dist;
    assert_int_equal(ag_vecstore_new(dim, &f->vs), 0);
    assert_int_equal(ag_index_hnsw_new(f->vs, dist, p, &f->hnsw), 0);
    assert_int_equal(ag_index_exact_new(f->vs, dist, &f->exact), 0);
    assert_true(ag_index_is_hnsw(f->hnsw));
    assert_false(ag_index_is_hnsw(f->exact));
    float *tmp = malloc(dim * sizeof(float));
    for (uint32_t i = 0; i < n; i++) {
        memcpy(tmp, f->d.base + (size_t)i * dim, dim * sizeof(float));
        if (dist == AG_DIST_COSINE)
            ag_vector_normalize(tmp, dim);
        assert_int_equal(ag_vecstore_set(f->vs, i, tmp), 0);
        assert_int_equal(ag_index_add(f->hnsw, i), 0);
    }
    free(tmp);
    f->q = malloc((size_t)f->d.nq * dim * sizeof(float));
    memcpy(f->q, f->d.queries, (size_t)f->d.nq * dim * sizeof(float));
    if (dist == AG_DIST_COSINE)
        for (uint32_t i = 0; i < f->d.nq; i++)
            ag_vector_normalize(f->q + (size_t)i * dim, dim);
}

static void fixture_setup(fixture_t *f, uint32_t n, uint32_t dim, ag_distance_t dist,
                          const ag_hnsw_params_t *p)
{
    fixture_setup_nq(f, n, dim, dist, p, 100);
}

static void fixture_teardown(fixture_t *f)
{
    ag_index_free(f->hnsw);
    ag_index_free(f->exact);
    ag_vecstore_free(f->vs);
    free(f->q);
    free_data(&f->d);
}

/* Mean recall@K of hnsw against exact over all queries, with an optional filter. */
static double recall(const fixture_t *f, const ag_index_filter_t *flt, uint32_t ef)
{
    ag_search_params_t sp = {.ef = ef};
    size_t found = 0, wanted = 0;
    for (uint32_t i = 0; i < f->d.nq; i++) {
        const float *q = f->q + (size_t)i * f->d.dim;
        ag_hit_t a[K], b[K];
        size_t na = 0, nb = 0;
        assert_int_equal(ag_index_search(f->hnsw, q, K, flt, &sp, a, &na), 0);
        assert_int_equal(ag_index_search(f->exact, q, K, flt, NULL, b, &nb), 0);
        assert_true(na <= K);
        /* Never fewer hits than the exact answer has. */
        assert_int_equal(na, nb);
        for (size_t x = 0; x < na; x++) {
            if (x > 0) { /* best first */
                if (ag_distance_higher_is_better(f->dist))
                    assert_true(a[x - 1].score >= a[x].score);
                else
                    assert_true(a[x - 1].score <= a[x].score);
            }
            if (flt && flt->accept)
                assert_true(flt->accept(flt->ud, a[x].slot));
            for (size_t y = 0; y < nb; y++)
                if (a[x].slot == b[y].slot) {
                    found++;
                    break;
                }
        }
        wanted += nb;
    }
    return wanted ? (double)found / (double)wanted : 1.0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void recall_for(ag_distance_t dist, uint32_t n)
{
    fixture_t f;
    fixture_setup(&f, n, 16, dist, NULL);
    ag_hnsw_stats_t st;
    ag_hnsw_stats(f.hnsw, &st);
    assert_true(st.built);
    assert_int_equal(st.live, n);
    double r = recall(&f, NULL, 64);
    print_message("  %-9s n=%u recall@10 (ef 64) = %.4f, levels %u, graph %zu KB\n",
                  ag_distance_name(dist), n, r, st.max_level, st.memory / 1024);
    assert_true(r >= 0.95);
    fixture_teardown(&f);
}

static void test_recall_euclid(void **state)
{
    AG_UNUSED(state);
    recall_for(AG_DIST_EUCLID, 10000);
}

static void test_recall_cosine(void **state)
{
    AG_UNUSED(state);
    recall_for(AG_DIST_COSINE, 4000);
}

static void test_recall_dot(void **state)
{
    AG_UNUSED(state);
    recall_for(AG_DIST_DOT, 4000);
}

static void test_recall_manhattan(void **state)
{
    AG_UNUSED(state);
    recall_for(AG_DIST_MANHATTAN, 4000);
}

/* Filters: a pseudo-random subset (one slot in `mod`) and a cluster-correlated subset. */
typedef struct sub {
    uint32_t mod;
    const uint32_t *cluster; /* non-NULL: accept slots whose cluster < mod instead */
} sub_t;

static bool accept_sub(const void *ud, uint32_t slot)
{
    const sub_t *s = ud;
    if (s->cluster)
        return s->cluster[slot] < s->mod;
    uint32_t h = slot * 2654435761u;
    return (h >> 8) % s->mod == 0;
}

static void test_filtered_recall(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup_nq(&f, 18000, 16, AG_DIST_EUCLID, NULL, 40);
    /* 0.1 % .. 100 %: exact path, two-hop traversal, normal traversal. */
    static const uint32_t mods[] = {1000, 200, 50, 10, 4, 2, 1};
    for (size_t i = 0; i < AG_ARRAY_LEN(mods); i++) {
        sub_t s = {mods[i], NULL};
        ag_index_filter_t flt = {.accept = accept_sub, .ud = &s};
        double r = recall(&f, &flt, 64);
        print_message("  random subset 1/%-4u recall@10 = %.4f\n", mods[i], r);
        assert_true(r >= 0.95);
    }
    /* Correlated with the data: only some clusters (mostly far from the query). */
    static const uint32_t nclusters[] = {1, 5, 15, 25};
    for (size_t i = 0; i < AG_ARRAY_LEN(nclusters); i++) {
        sub_t s = {nclusters[i], f.d.cluster};
        ag_index_filter_t flt = {.accept = accept_sub, .ud = &s};
        double r = recall(&f, &flt, 64);
        print_message("  clusters <%-3u      recall@10 = %.4f\n", nclusters[i], r);
        assert_true(r >= 0.95);
    }
    /* A candidate list is scored exactly. */
    uint32_t cand[] = {3, 7, 7, 11, 500, 17999};
    ag_index_filter_t flt = {.candidates = cand, .n_candidates = AG_ARRAY_LEN(cand)};
    ag_hit_t hits[K];
    size_t n = 0;
    assert_int_equal(ag_index_search(f.hnsw, f.q, K, &flt, NULL, hits, &n), 0);
    assert_int_equal(n, 5);
    fixture_teardown(&f);
}

static void test_exact_and_threshold(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 3000, 16, AG_DIST_COSINE, NULL);
    ag_search_params_t ex = {.exact = true};
    for (uint32_t i = 0; i < 20; i++) {
        const float *q = f.q + (size_t)i * f.d.dim;
        ag_hit_t a[K], b[K];
        size_t na, nb;
        assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &ex, a, &na), 0);
        assert_int_equal(ag_index_search(f.exact, q, K, NULL, NULL, b, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(ag_hit_t));
        /* A threshold keeps only hits at least as good. */
        ag_search_params_t th = {.has_threshold = true, .score_threshold = b[4].score};
        assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &th, a, &na), 0);
        assert_true(na <= 5 + 1);
        for (size_t x = 0; x < na; x++)
            assert_true(a[x].score >= b[4].score);
    }
    ag_search_params_t bad = {.has_threshold = true, .score_threshold = NAN};
    ag_hit_t h[K];
    size_t n;
    assert_int_equal(ag_index_search(f.hnsw, f.q, K, NULL, &bad, h, &n), AG_EINVAL);
    assert_int_equal(ag_index_search(f.hnsw, f.q, 0, NULL, NULL, h, &n), 0);
    assert_int_equal(n, 0);
    fixture_teardown(&f);
}

static void test_full_scan_threshold(void **state)
{
    AG_UNUSED(state);
    ag_hnsw_params_t p = {.full_scan_threshold = 1000};
    fixture_t f;
    fixture_setup(&f, 900, 16, AG_DIST_EUCLID, &p);
    ag_hnsw_stats_t st;
    ag_hnsw_stats(f.hnsw, &st);
    assert_false(st.built);
    /* Below the threshold every answer is the exact one. */
    for (uint32_t i = 0; i < 20; i++) {
        const float *q = f.q + (size_t)i * f.d.dim;
        ag_hit_t a[K], b[K];
        size_t na, nb;
        ag_search_params_t sp = {.ef = 1};
        assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &sp, a, &na), 0);
        assert_int_equal(ag_index_search(f.exact, q, K, NULL, NULL, b, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof(ag_hit_t));
    }
    /* Crossing it builds the graph over everything present. */
    rng_t r = {99};
    float v[16];
    for (uint32_t i = 900; i < 1500; i++) {
        point_near(&r, &f.d, i % CLUSTERS, v);
        assert_int_equal(ag_vecstore_set(f.vs, i, v), 0);
        assert_int_equal(ag_index_add(f.hnsw, i), 0);
    }
    ag_hnsw_stats(f.hnsw, &st);
    assert_true(st.built);
    assert_int_equal(st.live, 1500);
    assert_true(recall(&f, NULL, 64) >= 0.95);
    fixture_teardown(&f);
}

static void test_deletes_and_readds(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 6000, 16, AG_DIST_EUCLID, NULL);
    /* Remove 40 % (the collection removes from the index before clearing the store). */
    rng_t r = {7};
    uint32_t removed = 0;
    for (uint32_t i = 0; i < f.d.n; i++) {
        if (next_u64(&r) % 10 < 4) {
            assert_int_equal(ag_index_remove(f.hnsw, i), 0);
            ag_vecstore_clear(f.vs, i);
            removed++;
        }
    }
    ag_hnsw_stats_t st;
    ag_hnsw_stats(f.hnsw, &st);
    assert_int_equal(st.live, f.d.n - removed);
    /* Repairs ran along the way: tombstones never pile up past the repair fraction. */
    assert_true(st.tombstones <= (st.live + st.tombstones) / 10 + 1);
    double r1 = recall(&f, NULL, 64);
    print_message("  after deleting %u of %u: recall@10 = %.4f (tombstones %u)\n", removed, f.d.n,
                  r1, st.tombstones);
    assert_true(r1 >= 0.95);
    /* No removed slot is ever returned. */
    for (uint32_t i = 0; i < f.d.nq; i++) {
        ag_hit_t a[K];
        size_t na;
        assert_int_equal(ag_index_search(f.hnsw, f.q + (size_t)i * f.d.dim, K, NULL, NULL, a, &na),
                         0);
        for (size_t x = 0; x < na; x++)
            assert_non_null(ag_vecstore_get(f.vs, a[x].slot));
    }
    /* Re-add every free slot with a new vector (slot reuse), and replace some live vectors. */
    float v[16];
    for (uint32_t i = 0; i < f.d.n; i++) {
        bool present = ag_vecstore_get(f.vs, i) != NULL;
        if (present && next_u64(&r) % 8 != 0)
            continue;
        if (present)
            assert_int_equal(ag_index_remove(f.hnsw, i), 0);
        point_near(&r, &f.d, (uint32_t)(next_u64(&r) % CLUSTERS), v);
        assert_int_equal(ag_vecstore_set(f.vs, i, v), 0);
        assert_int_equal(ag_index_add(f.hnsw, i), 0);
    }
    ag_hnsw_stats(f.hnsw, &st);
    assert_int_equal(st.live, f.d.n);
    double r2 = recall(&f, NULL, 64);
    print_message("  after re-adding: recall@10 = %.4f (tombstones %u)\n", r2, st.tombstones);
    assert_true(r2 >= 0.95);
    ag_hnsw_repair(f.hnsw);
    ag_hnsw_stats(f.hnsw, &st);
    assert_int_equal(st.tombstones, 0);
    assert_true(recall(&f, NULL, 64) >= 0.95);
    /* Removing everything leaves an empty, working index. */
    for (uint32_t i = 0; i < f.d.n; i++) {
        assert_int_equal(ag_index_remove(f.hnsw, i), 0);
        ag_vecstore_clear(f.vs, i);
    }
    ag_hit_t a[K];
    size_t na = 1;
    assert_int_equal(ag_index_search(f.hnsw, f.q, K, NULL, NULL, a, &na), 0);
    assert_int_equal(na, 0);
    for (uint32_t i = 0; i < 500; i++) {
        assert_int_equal(ag_vecstore_set(f.vs, i, f.d.base + (size_t)i * f.d.dim), 0);
        assert_int_equal(ag_index_add(f.hnsw, i), 0);
    }
    assert_true(recall(&f, NULL, 64) >= 0.95);
    fixture_teardown(&f);
}

/* Several threads search the same index at once; each must get the single-thread answer. */
typedef struct thread_arg {
    const fixture_t *f;
    const ag_hit_t *expect; /* nq * K */
    const size_t *nexpect;
    int bad;
} thread_arg_t;

static void *search_thread(void *p)
{
    thread_arg_t *a = p;
    sub_t s = {3, NULL};
    ag_index_filter_t flt = {.accept = accept_sub, .ud = &s};
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < a->f->d.nq; i++) {
            ag_hit_t h[K];
            size_t n;
            const ag_index_filter_t *fp = (i % 2) ? &flt : NULL;
            if (ag_index_search(a->f->hnsw, a->f->q + (size_t)i * a->f->d.dim, K, fp, NULL, h,
                                &n) != 0 ||
                n != a->nexpect[i] || memcmp(h, a->expect + (size_t)i * K, n * sizeof(*h)) != 0)
                a->bad++;
        }
    }
    return NULL;
}

static void test_concurrent_search(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 4000, 16, AG_DIST_DOT, NULL);
    ag_hit_t *expect = malloc((size_t)f.d.nq * K * sizeof(ag_hit_t));
    size_t *nexpect = malloc(f.d.nq * sizeof(size_t));
    sub_t s = {3, NULL};
    ag_index_filter_t flt = {.accept = accept_sub, .ud = &s};
    for (uint32_t i = 0; i < f.d.nq; i++)
        assert_int_equal(ag_index_search(f.hnsw, f.q + (size_t)i * f.d.dim, K,
                                         (i % 2) ? &flt : NULL, NULL, expect + (size_t)i * K,
                                         &nexpect[i]),
                         0);
    enum { T = 4 };
    pthread_t th[T];
    thread_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (thread_arg_t){&f, expect, nexpect, 0};
        assert_int_equal(pthread_create(&th[i], NULL, search_thread, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    free(expect);
    free(nexpect);
    fixture_teardown(&f);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, len, "%s/aegis_test_hnsw_%ld_%s", dir ? dir : "/tmp", (long)getpid(), name);
}

static void same_answers(const fixture_t *f, const ag_index_t *a, const ag_index_t *b)
{
    for (uint32_t i = 0; i < f->d.nq; i++) {
        ag_hit_t ha[K], hb[K];
        size_t na, nb;
        const float *q = f->q + (size_t)i * f->d.dim;
        assert_int_equal(ag_index_search(a, q, K, NULL, NULL, ha, &na), 0);
        assert_int_equal(ag_index_search(b, q, K, NULL, NULL, hb, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(ha, hb, na * sizeof(ag_hit_t));
    }
}

static double recall_of_index(const fixture_t *f, const ag_index_t *ix)
{
    size_t found = 0, wanted = 0;
    for (uint32_t i = 0; i < f->d.nq; i++) {
        const float *q = f->q + (size_t)i * f->d.dim;
        ag_hit_t a[K], b[K];
        size_t na, nb;
        assert_int_equal(ag_index_search(ix, q, K, NULL, NULL, a, &na), 0);
        assert_int_equal(ag_index_search(f->exact, q, K, NULL, NULL, b, &nb), 0);
        for (size_t x = 0; x < na; x++)
            for (size_t y = 0; y < nb; y++)
                found += a[x].slot == b[y].slot;
        wanted += nb;
    }
    return wanted ? (double)found / (double)wanted : 1.0;
}

static void rewrite(const char *path, const uint8_t *bytes, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    fclose(fp);
}

/* Every stored vector is found by a search for itself, and nothing absent is returned. */
static void all_findable(const ag_vecstore_t *vs, const ag_index_t *ix)
{
    ag_vecstore_view_t v;
    ag_vecstore_view(vs, &v);
    for (uint32_t s = 0; s < v.capacity; s++) {
        const float *row = ag_vecstore_get(vs, s);
        if (!row)
            continue;
        ag_hit_t hits[K];
        size_t n = 0;
        assert_int_equal(ag_index_search(ix, row, K, NULL, NULL, hits, &n), 0);
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            assert_non_null(ag_vecstore_get(vs, hits[i].slot));
            found |= hits[i].slot == s;
        }
        assert_true(found);
    }
}

static void test_persistence(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 4000, 16, AG_DIST_EUCLID, NULL);
    char path[512];
    tmp_path(path, sizeof(path), "graph.hnsw");
    assert_true(ag_hnsw_dirty(f.hnsw));
    assert_int_equal(ag_hnsw_save(f.hnsw, path, NULL, NULL, 0), 0);
    assert_false(ag_hnsw_dirty(f.hnsw));

    /* Round trip: the resumed graph answers exactly like the saved one. */
    ag_index_t *loaded;
    ag_hnsw_resume_t rs;
    assert_int_equal(ag_index_hnsw_new(f.vs, AG_DIST_EUCLID, NULL, &loaded), 0);
    assert_int_equal(ag_hnsw_resume(loaded, path, NULL, NULL, 0, &rs), 0);
    assert_true(rs.built);
    assert_int_equal(rs.kept, 4000);
    assert_int_equal(rs.dropped + rs.relinked, 0);
    assert_false(ag_hnsw_dirty(loaded));
    ag_hnsw_stats_t s1, s2;
    ag_hnsw_stats(f.hnsw, &s1);
    ag_hnsw_stats(loaded, &s2);
    assert_int_equal(s1.live, s2.live);
    assert_int_equal(s1.max_level, s2.max_level);
    same_answers(&f, f.hnsw, loaded);
    /* Wrong parameters, or another key length: refused, the index untouched. */
    ag_index_t *wrong;
    ag_hnsw_params_t p8 = {.m = 8};
    assert_int_equal(ag_index_hnsw_new(f.vs, AG_DIST_EUCLID, &p8, &wrong), 0);
    assert_int_equal(ag_hnsw_resume(wrong, path, NULL, NULL, 0, &rs), AG_EINVAL);
    ag_index_free(wrong);

    /* Changes after the checkpoint: 100 points removed, 50 vectors changed. Resuming from the old
     * file keeps every other node, drops those 150, and links the 50 changed ones again. */
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(ag_index_remove(f.hnsw, i * 7), 0);
        ag_vecstore_clear(f.vs, i * 7);
    }
    float vec[16];
    for (uint32_t i = 0; i < 50; i++) {
        uint32_t s = i * 7 + 3;
        for (uint32_t d = 0; d < 16; d++)
            vec[d] = (float)((i * 31 + d * 17) % 101) / 10.0f;
        assert_int_equal(ag_index_remove(f.hnsw, s), 0);
        assert_int_equal(ag_vecstore_set(f.vs, s, vec), 0);
        assert_int_equal(ag_index_add(f.hnsw, s), 0);
    }
    ag_index_t *other;
    assert_int_equal(ag_index_hnsw_new(f.vs, AG_DIST_EUCLID, NULL, &other), 0);
    assert_int_equal(ag_hnsw_resume(other, path, NULL, NULL, 0, &rs), 0);
    assert_int_equal(rs.kept, 3850);
    assert_int_equal(rs.dropped, 150);
    assert_int_equal(rs.relinked, 50);
    assert_true(ag_hnsw_dirty(other)); /* the next checkpoint is due */
    ag_hnsw_stats(other, &s2);
    assert_int_equal(s2.tombstones, 0);
    assert_int_equal(s2.live, 3900);
    assert_true(recall_of_index(&f, other) >= 0.95);
    all_findable(f.vs, other);

    /* A graph saved with tombstones: they are dropped on resume and recall holds. */
    assert_int_equal(ag_hnsw_save(f.hnsw, path, NULL, NULL, 0), 0);
    assert_int_equal(ag_hnsw_resume(other, path, NULL, NULL, 0, &rs), 0);
    assert_int_equal(rs.relinked, 0);
    ag_hnsw_stats(other, &s2);
    assert_int_equal(s2.tombstones, 0);
    assert_int_equal(s2.live, 3900);
    assert_true(recall_of_index(&f, other) >= 0.95);

    /* Corruption: flip one byte anywhere, or truncate; each is detected, the index untouched. */
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size);
    assert_int_equal(fread(bytes, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    static const double where[] = {0.0, 0.02, 0.05, 0.3, 0.5, 0.99};
    for (size_t i = 0; i < AG_ARRAY_LEN(where); i++) {
        size_t at = (size_t)(where[i] * (double)(size - 1));
        bytes[at] ^= 0x5a;
        rewrite(path, bytes, (size_t)size);
        assert_int_equal(ag_hnsw_resume(other, path, NULL, NULL, 0, &rs), AG_EINVAL);
        bytes[at] ^= 0x5a;
    }
    rewrite(path, bytes, (size_t)size / 2);
    assert_int_equal(ag_hnsw_resume(other, path, NULL, NULL, 0, &rs), AG_EINVAL);
    ag_hnsw_stats(other, &s2);
    assert_int_equal(s2.live, 3900);
    assert_true(recall_of_index(&f, other) >= 0.95);

    /* Start-up: deferred adds, then finish from an intact file, a corrupt one, or none. */
    rewrite(path, bytes, (size_t)size);
    ag_index_t *boot;
    assert_int_equal(ag_index_hnsw_new(f.vs, AG_DIST_EUCLID, NULL, &boot), 0);
    ag_hnsw_defer(boot);
    for (uint32_t i = 0; i < f.d.n; i++)
        if (ag_vecstore_get(f.vs, i))
            assert_int_equal(ag_index_add(boot, i), 0);
    assert_int_equal(ag_hnsw_finish(boot, path, NULL, NULL, 0), 0);
    ag_hnsw_stats(boot, &s2);
    assert_int_equal(s2.live, 3900);
    same_answers(&f, other, boot);
    bytes[size / 3] ^= 1;
    rewrite(path, bytes, (size_t)size);
    ag_hnsw_defer(boot);
    assert_int_equal(ag_hnsw_finish(boot, path, NULL, NULL, 0), 0); /* corrupt: rebuilt */
    ag_hnsw_stats(boot, &s2);
    assert_true(s2.built);
    assert_int_equal(s2.live, 3900);
    assert_true(recall_of_index(&f, boot) >= 0.95);
    free(bytes);
    unlink(path);
    assert_int_equal(ag_hnsw_resume(other, path, NULL, NULL, 0, &rs), AG_ENOTFOUND);
    ag_hnsw_defer(boot);
    assert_int_equal(ag_hnsw_finish(boot, path, NULL, NULL, 0), 0); /* missing: rebuilt */
    assert_true(recall_of_index(&f, boot) >= 0.95);
    ag_index_free(boot);
    ag_index_free(other);
    ag_index_free(loaded);
    fixture_teardown(&f);
}

/* A restart assigns slots afresh: the checkpoint's keys (here a point number) map each node to
 * its point's new slot. perm[] is the new slot of point i, UINT32_MAX once it is deleted. */
typedef struct remap {
    const uint32_t *slot_of_point;
    uint32_t n;
} remap_t;

static void point_key(void *ud, uint32_t slot, uint8_t *key)
{
    AG_UNUSED(ud);
    memcpy(key, &slot, 4); /* before the restart, point i sits in slot i */
}

static uint32_t point_slot(void *ud, const uint8_t *key)
{
    const remap_t *r = ud;
    uint32_t p;
    memcpy(&p, key, 4);
    return p < r->n ? r->slot_of_point[p] : UINT32_MAX;
}

static void test_resume_remapped(void **state)
{
    AG_UNUSED(state);
    enum { N = 3000, DIM = 16 };
    fixture_t f;
    fixture_setup(&f, N, DIM, AG_DIST_EUCLID, NULL);
    char path[512];
    tmp_path(path, sizeof(path), "remap.hnsw");
    assert_int_equal(ag_hnsw_save(f.hnsw, path, point_key, NULL, 4), 0);
    /* After the "restart": the points live in other slots (reversed, with a gap of 7), a tenth
     * is gone, and 200 new points were written after the checkpoint. */
    uint32_t *perm = malloc(N * sizeof(uint32_t));
    ag_vecstore_t *vs2;
    assert_int_equal(ag_vecstore_new(DIM, &vs2), 0);
    for (uint32_t i = 0; i < N; i++) {
        perm[i] = i % 10 == 4 ? UINT32_MAX : 7 + (N - 1 - i);
        if (perm[i] != UINT32_MAX)
            assert_int_equal(ag_vecstore_set(vs2, perm[i], ag_vecstore_get(f.vs, i)), 0);
    }
    float vec[DIM];
    for (uint32_t i = 0; i < 200; i++) {
        for (uint32_t d = 0; d < DIM; d++)
            vec[d] = (float)((i * 13 + d * 5) % 97) / 9.0f;
        assert_int_equal(ag_vecstore_set(vs2, N + 7 + i, vec), 0);
    }
    ag_hnsw_params_t bg = {.background = true};
    ag_index_t *ix;
    assert_int_equal(ag_index_hnsw_new(vs2, AG_DIST_EUCLID, &bg, &ix), 0);
    ag_hnsw_defer(ix);
    remap_t rm = {perm, N};
    /* A key length other than the file's is refused. */
    ag_hnsw_resume_t rs;
    assert_int_equal(ag_hnsw_resume(ix, path, point_slot, &rm, 8, &rs), AG_EINVAL);
    assert_int_equal(ag_hnsw_finish(ix, path, point_slot, &rm, 4), 0);
    ag_hnsw_stats_t st;
    ag_hnsw_stats(ix, &st);
    assert_true(st.built);
    assert_int_equal(st.live, N - N / 10);
    assert_int_equal(st.pending, 200); /* only the new points wait for the linker */
    all_findable(vs2, ix);             /* queued points are scored exactly meanwhile */
    while (ag_hnsw_link_pending(ix, 64) > 0) {
    }
    ag_hnsw_stats(ix, &st);
    assert_int_equal(st.live, N - N / 10 + 200);
    assert_int_equal(st.tombstones, 0);
    all_findable(vs2, ix);
    /* Recall against an exact scan of the new store. */
    ag_index_t *ex;
    assert_int_equal(ag_index_exact_new(vs2, AG_DIST_EUCLID, &ex), 0);
    size_t found = 0, wanted = 0;
    for (uint32_t i = 0; i < f.d.nq; i++) {
        const float *q = f.q + (size_t)i * DIM;
        ag_hit_t a[K], b[K];
        size_t na, nb;
        assert_int_equal(ag_index_search(ix, q, K, NULL, NULL, a, &na), 0);
        assert_int_equal(ag_index_search(ex, q, K, NULL, NULL, b, &nb), 0);
        for (size_t x = 0; x < na; x++)
            for (size_t y = 0; y < nb; y++)
                found += a[x].slot == b[y].slot;
        wanted += nb;
    }
    assert_true((double)found / (double)wanted >= 0.95);
    unlink(path);
    ag_index_free(ex);
    ag_index_free(ix);
    ag_vecstore_free(vs2);
    free(perm);
    fixture_teardown(&f);
}

/* A file whose checksum is right but whose contents are not (a bug, or a hand-made file): random
 * bytes of the body changed and the CRC recomputed. Resume must refuse it or produce a usable
 * index — never read out of bounds (ASan) — and searches must only return stored points. */
static uint32_t test_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void test_resume_garbage_with_good_crc(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 1500, 8, AG_DIST_EUCLID, NULL);
    char path[512];
    tmp_path(path, sizeof(path), "garbage.hnsw");
    assert_int_equal(ag_hnsw_save(f.hnsw, path, NULL, NULL, 0), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    size_t size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *orig = malloc(size), *bytes = malloc(size);
    assert_int_equal(fread(orig, 1, size, fp), size);
    fclose(fp);
    enum { HEADER = 64, CRC_AT = 48 };
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int accepted = 0, refused = 0;
    for (int round = 0; round < 120; round++) {
        memcpy(bytes, orig, size);
        int flips = 1 + round % 4;
        for (int i = 0; i < flips; i++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            size_t at = HEADER + (size_t)(seed % (size - HEADER));
            bytes[at] ^= (uint8_t)(1u << (seed >> 60 & 7));
        }
        uint32_t crc = test_crc32(bytes + HEADER, size - HEADER);
        memcpy(bytes + CRC_AT, &crc, 4);
        rewrite(path, bytes, size);
        ag_index_t *ix;
        ag_hnsw_resume_t rs;
        assert_int_equal(ag_index_hnsw_new(f.vs, AG_DIST_EUCLID, NULL, &ix), 0);
        int rc = ag_hnsw_resume(ix, path, NULL, NULL, 0, &rs);
        assert_true(rc == 0 || rc == AG_EINVAL);
        if (rc == 0) {
            accepted++;
            for (uint32_t q = 0; q < 5; q++) {
                ag_hit_t hits[K];
                size_t n = 0;
                assert_int_equal(
                    ag_index_search(ix, f.q + (size_t)q * f.d.dim, K, NULL, NULL, hits, &n), 0);
                for (size_t h = 0; h < n; h++)
                    assert_non_null(ag_vecstore_get(f.vs, hits[h].slot));
            }
        } else {
            refused++;
        }
        ag_index_free(ix);
    }
    assert_true(accepted > 0 && refused > 0); /* both paths were taken */
    unlink(path);
    free(orig);
    free(bytes);
    fixture_teardown(&f);
}

static void test_bad_args(void **state)
{
    AG_UNUSED(state);
    ag_vecstore_t *vs;
    ag_index_t *ix;
    assert_int_equal(ag_vecstore_new(4, &vs), 0);
    ag_hnsw_params_t p1 = {.m = 1};
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, &p1, &ix), AG_EINVAL);
    assert_int_equal(ag_index_hnsw_new(NULL, AG_DIST_EUCLID, NULL, &ix), AG_EINVAL);
    assert_int_equal(ag_index_hnsw_new(vs, (ag_distance_t)9, NULL, &ix), AG_EINVAL);
    assert_int_equal(ag_index_hnsw_new(vs, AG_DIST_EUCLID, NULL, &ix), 0);
    assert_int_equal(ag_index_add(ix, 3), AG_ENOTFOUND);
    assert_int_equal(ag_index_remove(ix, 3), 0);
    float q[4] = {1, 2, 3, 4};
    ag_hit_t h[2];
    size_t n = 9;
    assert_int_equal(ag_index_search(ix, q, 2, NULL, NULL, h, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ag_vecstore_set(vs, 3, q), 0);
    assert_int_equal(ag_index_add(ix, 3), 0);
    assert_int_equal(ag_index_search(ix, q, 2, NULL, NULL, h, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].slot, 3);
    ag_index_free(ix);
    ag_vecstore_free(vs);
}

/* Request cost: a search past its deadline gives up with AG_ETIMEOUT (graph traversal and exact
 * paths alike); a huge hnsw_ef is clamped to the graph's size instead of sizing a beam by it. */
static void test_deadline_and_huge_ef(void **state)
{
    AG_UNUSED(state);
    fixture_t f;
    fixture_setup(&f, 3000, 16, AG_DIST_EUCLID, NULL);
    const float *q = f.q;
    ag_hit_t a[K], b[K];
    size_t na = 99, nb = 0;
    ag_search_params_t late = {.ef = 2000, .deadline = ag_now_mono() - 1.0};
    assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &late, a, &na), AG_ETIMEOUT);
    ag_search_params_t late_exact = {.exact = true, .deadline = ag_now_mono() - 1.0};
    assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &late_exact, a, &na), AG_ETIMEOUT);
    ag_search_params_t huge = {.ef = UINT32_MAX, .deadline = ag_now_mono() + 3600.0};
    assert_int_equal(ag_index_search(f.hnsw, q, K, NULL, &huge, a, &na), 0);
    assert_int_equal(ag_index_search(f.exact, q, K, NULL, NULL, b, &nb), 0);
    assert_int_equal(na, nb);
    /* A beam as wide as the graph is exact. */
    for (size_t i = 0; i < na; i++)
        assert_true(a[i].score == b[i].score);
    fixture_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_recall_euclid),
        cmocka_unit_test(test_recall_cosine),
        cmocka_unit_test(test_recall_dot),
        cmocka_unit_test(test_recall_manhattan),
        cmocka_unit_test(test_filtered_recall),
        cmocka_unit_test(test_exact_and_threshold),
        cmocka_unit_test(test_full_scan_threshold),
        cmocka_unit_test(test_deletes_and_readds),
        cmocka_unit_test(test_concurrent_search),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_resume_remapped),
        cmocka_unit_test(test_resume_garbage_with_good_crc),
        cmocka_unit_test(test_deadline_and_huge_ef),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ag_hnsw_thread_release();
    return rc;
}
