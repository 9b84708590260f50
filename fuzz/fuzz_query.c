/*
 * fuzz_query.c — libFuzzer target for the query layer's request parsers (search, recommend,
 * query, their groups forms, the request-cost budgets, order_by) and, for what parses, a run of
 * the executor over a tiny collection. The input is one JSON request body.
 * Build (not part of CMake; CTest replays the corpus through fuzz/replay.c):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     fuzz/fuzz_query.c build/libaegis_core.a $(pkg-config --libs libmicrohttpd jansson \
 *     libsodium yaml-0.1 gnutls) -llmdb -lm -lpthread -o fuzz_query
 *   ./fuzz_query fuzz/corpus/query
 */
#include "ag_base.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "query/ag_query.h"
#include "store/ag_store.h"
#include "json/ag_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static ag_store_t *store;
static ag_collection_t *coll;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (coll)
        ag_coll_unref(coll);
    if (store)
        ag_store_close(store);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A collection with a 3-d dense vector, a sparse vector "s", an integer index on "n" and a few
 * points, created once in a temporary directory removed at exit. */
static bool init(void)
{
    if (coll)
        return true;
    snprintf(dir, sizeof(dir), "/tmp/aegis-fuzzq-XXXXXX");
    if (!mkdtemp(dir))
        return false;
    atexit(cleanup);
    ag_store_config_t cfg = {dir, (size_t)1 << 26, 1.0};
    ag_diag_t d;
    json_t *body = json_loads("{\"vectors\":{\"size\":3,\"distance\":\"Cosine\"},"
                              "\"sparse_vectors\":{\"s\":{}}}",
                              0, NULL);
    json_t *params = NULL;
    if (ag_store_open(&cfg, &store, &d) != 0 || ag_coll_parse_params(body, &params, &d) != 0 ||
        ag_store_create(store, "c", params, &d) != 0 || ag_store_get(store, "c", &coll, NULL) != 0)
        abort();
    json_decref(params);
    json_decref(body);
    float v[4][3] = {{1, 0, 0}, {0, 1, 0}, {0.6f, 0.8f, 0}, {0, 0, 1}};
    uint32_t si[2] = {1, 5};
    float sv[2] = {0.5f, 2};
    ag_mutation_t m[4];
    memset(m, 0, sizeof(m));
    for (int i = 0; i < 4; i++) {
        m[i].id = (ag_point_id_t){.kind = AG_ID_NUM, .num = (uint64_t)i + 1};
        m[i].payload = json_pack("{s:i,s:s}", "n", i * 3 % 4, "g", i % 2 ? "a" : "b");
        m[i].dense_op[0] = AG_VEC_SET;
        m[i].dense[0] = v[i];
        m[i].sparse_op[0] = i % 2 ? AG_VEC_SET : AG_VEC_KEEP;
        m[i].sparse[0] = (ag_sparse_vec_t){si, sv, 2};
        m[i].replace_vectors = true;
    }
    if (ag_coll_write_begin(coll) != 0 || ag_coll_apply(coll, m, 4, true, &d) != 0 ||
        ag_store_set_index(store, coll, "n", json_pack("{s:s}", "data_type", "integer"), NULL,
                           &d) != 0)
        abort();
    ag_coll_write_end(coll);
    for (int i = 0; i < 4; i++)
        json_decref(m[i].payload);
    return true;
}

static void one(const json_t *body, ag_qapi_t api, bool groups)
{
    ag_arena_t arena;
    ag_diag_t d;
    ag_arena_init(&arena, 1 << 24);
    ag_qctx_t ctx = {&arena, &d, ag_now_mono() + 5, 5, NULL, "c", NULL, NULL};
    ag_query_t q;
    if (ag_query_check_budgets(api, NULL, body, groups, &d) == 0 &&
        ag_query_parse(&q, &ctx, coll, api, groups, body, "") == 0) {
        json_t *out = NULL;
        if (ag_query_run(&q, &out) == 0) {
            char *text = json_dumps(out, JSON_COMPACT);
            free(text);
        }
        json_decref(out);
    }
    ag_query_release(&q);
    ag_arena_release(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!init())
        return 0;
    ag_diag_t d;
    json_t *body = NULL;
    if (ag_json_parse_body((const char *)data, size, false, &body, &d) != 0)
        return 0;
    for (int api = AG_QAPI_SEARCH; api <= AG_QAPI_QUERY; api++) {
        one(body, (ag_qapi_t)api, false);
        one(body, (ag_qapi_t)api, true);
    }
    ag_order_by_t ob;
    if (json_is_object(body))
        ag_order_by_parse(json_object_get(body, "order_by"), &ob, &d);
    json_decref(body);
    return 0;
}
