/*
 * fuzz_request.c — libFuzzer target for the request-side parsers: the strict body parser (with
 * the u64 rewrite), collection params, point ids, vectors, names and percent-decoding of paths.
 * Build (not part of CMake; CTest replays the corpus through fuzz/replay.c):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     fuzz/fuzz_request.c build/libaegis_core.a $(pkg-config --libs libmicrohttpd jansson \
 *     libsodium yaml-0.1 gnutls) -llmdb -lm -lpthread -o fuzz_request
 */
#include "ag_base.h"

#include <stdio.h>

#include "ag_id.h"
#include "http/ag_http.h"
#include "store/ag_collection.h"
#include "json/ag_fastpoints.h"
#include "json/ag_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ag_diag_t d;
    const char *text = (const char *)data;
    size_t len = 0;
    char *decoded = ag_http_decode(text, size, size % 2 == 0, &len);
    if (decoded) {
        ag_name_check(decoded, len, "collection", &d);
        ag_point_id_t id;
        if (strlen(decoded) == len)
            ag_id_parse_str(decoded, &id, &d);
        free(decoded);
    }
    /* The upsert fast path must never crash, and what it accepts the strict parser accepts. */
    ag_arena_t arena;
    ag_arena_init(&arena, 1 << 24);
    ag_fastpoint_t *pts;
    size_t npts;
    bool fast = ag_fastpoints_parse(text, size, 3, &arena, &pts, &npts);
    if (fast)
        ag_fastpoints_release(pts, npts);
    /* The same for named vectors and the column form, and the search body reader. */
    ag_fastcols_t cols = {2, {"a", "b"}, {3, 2}};
    if (ag_fastpoints_parse_cols(text, size, &cols, &arena, &pts, &npts)) {
        ag_fastpoints_release(pts, npts);
        fast = true;
    }
    ag_fastsearch_t fs;
    bool fast_search = ag_fastsearch_parse(text, size, "vector", 3, &arena, &fs);
    fast = fast || fast_search;
    float sv[3] = {0};
    if (fast_search)
        memcpy(sv, fs.vec, sizeof(sv));
    ag_arena_release(&arena);
    json_t *body = NULL;
    if (ag_json_parse_body(text, size, false, &body, &d) != 0) {
        if (fast)
            abort();
        return 0;
    }
    if (fast_search) {
        /* What the search reader took is what the strict parser reads: the same floats. */
        float *sf = NULL;
        uint32_t sn = 0;
        if (ag_json_floats(json_object_get(body, "vector"), "vector", &sf, &sn, &d) != 0 ||
            sn != 3 || memcmp(sf, sv, sizeof(sv)) != 0)
            abort();
        free(sf);
    }
    json_t *params = NULL;
    if (json_is_object(body) && ag_coll_parse_params(body, &params, &d) == 0)
        json_decref(params);
    ag_point_id_t id;
    if (ag_id_parse(body, &id, "id", &d) == 0) {
        json_t *back = ag_id_to_json(&id);
        json_decref(back);
    }
    float *f = NULL;
    uint32_t n = 0;
    if (ag_json_floats(body, "vector", &f, &n, &d) == 0)
        free(f);
    char *out = ag_json_render(body);
    free(out);
    json_decref(body);
    return 0;
}
