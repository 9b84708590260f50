/*
 * fuzz_filter.c — libFuzzer target for the filter compiler and evaluator.
 *
 * The input is parsed as JSON and compiled as a filter; a compiled filter is evaluated against a
 * few fixed payloads and against the input itself, and combined with AND / OR. The raw bytes are
 * also tried as a key path. Build (not part of CMake):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     fuzz/fuzz_filter.c src/index/ag_filter.c src/base/ag_id.c src/base/ag_error.c \
 *     src/base/ag_log.c -ljansson -lm -lpthread -o fuzz_filter
 *   ./fuzz_filter fuzz/corpus/filter
 */
#include "index/ag_filter.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const payload_texts[] = {
    "{}",
    "{\"a\":1,\"b\":\"x\",\"c\":[1,2.5,null,\"y\",true],\"d\":{\"e\":[{\"f\":1},{\"f\":[]}]}}",
    ("{\"loc\":{\"lon\":13.4,\"lat\":52.5},\"t\":\"2023-02-08T10:49:00Z\",\"n\":null,"
     "\"l\":[{\"a\":1,\"b\":[{\"c\":\"2024-01-01\"}]},5,[1,[2]]]}"),
};

static bool has_vector(const void *ud, const char *name)
{
    (void)ud;
    return name[0] == '\0' || name[0] == 'v';
}

static void visit(const json_t *v, void *ud)
{
    (void)v;
    (*(size_t *)ud)++;
}

static void evaluate(const ag_filter_t *f, const json_t *self, const ag_point_id_t *id)
{
    for (size_t i = 0; i < sizeof(payload_texts) / sizeof(payload_texts[0]); i++) {
        json_t *p = json_loads(payload_texts[i], 0, NULL);
        ag_filter_subject_t s = {.id = id, .payload = p, .has_vector = has_vector, .ud = NULL};
        (void)ag_filter_match(f, &s);
        json_decref(p);
    }
    ag_filter_subject_t s = {.id = id, .payload = json_is_object(self) ? self : NULL};
    (void)ag_filter_match(f, &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The bytes as a key path. */
    char path[AG_MAX_PATH_LEN + 2];
    size_t n = size < sizeof(path) - 1 ? size : sizeof(path) - 1;
    memcpy(path, data, n);
    path[n] = '\0';
    if (ag_payload_path_check(path, NULL) == 0) {
        json_t *p = json_loads(payload_texts[2], 0, NULL);
        size_t calls = 0;
        size_t got = ag_payload_path_each(p, path, visit, &calls);
        if (got != calls)
            __builtin_trap();
        json_decref(p);
    }

    /* The bytes as a filter. */
    json_t *j = json_loadb((const char *)data, size,
                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!j)
        return 0;
    ag_filter_t *f = NULL;
    ag_diag_t diag;
    int rc = ag_filter_compile(j, &f, &diag);
    if (rc == 0) {
        ag_point_id_t id = {.kind = AG_ID_NUM, .num = 1};
        evaluate(f, j, &id);
        ag_filter_t *g = NULL;
        json_t *v = json_string("x");
        if (ag_filter_match_value("b", v, &g) == 0) {
            int err = 0;
            ag_filter_t *h = NULL;
            (void)ag_filter_match_value("a", v, &h);
            g = ag_filter_or(g, h, &err);
            f = ag_filter_and(f, g, &err);
            evaluate(f, j, NULL);
        }
        json_decref(v);
        ag_filter_free(f);
    } else if (f != NULL || memchr(diag.msg, '\0', sizeof(diag.msg)) == NULL) {
        __builtin_trap();
    }
    json_decref(j);
    return 0;
}
