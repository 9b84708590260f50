/*
 * bench_payload — a point's payload held as a jansson tree (how Aegis kept it before) against the
 * packed form (json/ag_pack.h, how it keeps it now): heap per payload and filter-match time, both
 * measured in one run on the same payloads.
 *
 *   bench_payload [points [rounds]]      defaults: 100000 points, 5 rounds
 *
 * Payload shapes:
 *   two      {"group": i % 100, "tag": "t<i % 7>"}                  (bench/scale.mjs)
 *   bucket   {"b": bucket, "kw": "k<bucket>"}                       (bench/bench_filter.c)
 *   rich     {"title": 40 chars, "price": real, "tags": [3 strings], "meta": {"author", "year"},
 *             "geo": {"lon", "lat"}, "stock": int}
 * Heap: glibc's in-use bytes (mallinfo2 uordblks, chunk overhead included) before and after
 * building the N payloads, over N. Matching: every filter against every payload, ns per match,
 * this thread's CPU time (the machine is shared), best of the rounds, the two forms interleaved.
 * The jansson column runs the same evaluator (ag_filter.c reads both forms through one value
 * view), so it slightly overstates what the old tree-only evaluator cost.
 * Loading: the stored text of each payload (as the store writes it, compact) packed the way
 * start-up did it (json_loadb, ag_pack_encode, tree freed) and the way it does now
 * (ag_pack_from_text, no tree), ns per payload, interleaved, best of the rounds; the two outputs
 * are compared byte for byte.
 */
#include "ag_base.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/ag_filter.h"
#include "json/ag_pack.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static json_t *make(int shape, uint32_t i)
{
    char buf[64];
    switch (shape) {
    case 0:
        snprintf(buf, sizeof(buf), "t%u", i % 7);
        return json_pack("{s:i,s:s}", "group", (json_int_t)(i % 100), "tag", buf);
    case 1: {
        uint32_t b = rnd(1000);
        snprintf(buf, sizeof(buf), "k%u", b);
        return json_pack("{s:i,s:s}", "b", (json_int_t)b, "kw", buf);
    }
    default: {
        static const char *const TAGS[] = {"red", "green", "blue", "sale", "new", "used"};
        snprintf(buf, sizeof(buf), "Product number %08u with a longer title", i);
        return json_pack("{s:s,s:f,s:[s,s,s],s:{s:s,s:i},s:{s:f,s:f},s:i}", "title", buf, "price",
                         (double)rnd(10000) / 100.0, "tags", TAGS[rnd(6)], TAGS[rnd(6)],
                         TAGS[rnd(6)], "meta", "author", TAGS[rnd(6)], "year",
                         (json_int_t)(1990 + rnd(35)), "geo", "lon", (double)rnd(360) - 180.0,
                         "lat", (double)rnd(180) - 90.0, "stock", (json_int_t)rnd(50));
    }
    }
}

typedef struct fdef {
    int shape;
    const char *name;
    const char *json;
} fdef_t;

static const fdef_t FILTERS[] = {
    {0, "group == 7", "{\"must\":[{\"key\":\"group\",\"match\":{\"value\":7}}]}"},
    {0, "tag == t3 and group < 50",
     "{\"must\":[{\"key\":\"tag\",\"match\":{\"value\":\"t3\"}},{\"key\":\"group\",\"range\":{"
     "\"lt\":50}}]}"},
    {1, "b in [0,10)", "{\"must\":[{\"key\":\"b\",\"match\":{\"any\":[0,1,2,3,4,5,6,7,8,9]}}]}"},
    {1, "kw == k7 (2nd key)", "{\"must\":[{\"key\":\"kw\",\"match\":{\"value\":\"k7\"}}]}"},
    {1, "missing key", "{\"must\":[{\"key\":\"nope\",\"match\":{\"value\":1}}]}"},
    {2, "stock > 25 (last key)", "{\"must\":[{\"key\":\"stock\",\"range\":{\"gt\":25}}]}"},
    {2, "tags any [sale,new]",
     "{\"must\":[{\"key\":\"tags\",\"match\":{\"any\":[\"sale\",\"new\"]}}]}"},
    {2, "meta.year >= 2010, not blue",
     "{\"must\":[{\"key\":\"meta.year\",\"range\":{\"gte\":2010}}],\"must_not\":[{\"key\":"
     "\"tags\",\"match\":{\"value\":\"blue\"}}]}"},
    {2, "geo radius",
     "{\"must\":[{\"key\":\"geo\",\"geo_radius\":{\"center\":{\"lon\":0,\"lat\":0},\"radius\":"
     "3000000}}]}"},
};
#define NFILTERS (sizeof(FILTERS) / sizeof(FILTERS[0]))

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 100000;
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
    if (n == 0 || rounds <= 0)
        return 2;
    static const char *const SHAPES[] = {"two", "bucket", "rich"};
    json_t **js[3];
    const uint8_t **ps[3];
    printf("bench_payload: %u payloads per shape, best of %d rounds (thread CPU time)\n\n", n,
           rounds);
    printf(" shape  | jansson B/point | packed B/point | packed bytes (exact) | ratio | "
           "encode ns | decode ns\n");
    for (int sh = 0; sh < 3; sh++) {
        js[sh] = malloc(sizeof(json_t *) * n);
        ps[sh] = malloc(sizeof(uint8_t *) * n);
        if (!js[sh] || !ps[sh])
            return 1;
        size_t h0 = heap_used();
        for (uint32_t i = 0; i < n; i++)
            if (!(js[sh][i] = make(sh, i)))
                return 1;
        size_t h1 = heap_used();
        double t0 = now();
        size_t exact = 0;
        for (uint32_t i = 0; i < n; i++) {
            size_t len;
            if (ag_pack_encode(js[sh][i], &ps[sh][i], &len) != 0)
                return 1;
            exact += len;
        }
        double t1 = now();
        size_t h2 = heap_used();
        double t2 = now();
        for (uint32_t i = 0; i < n; i++)
            json_decref(ag_pack_decode(ps[sh][i]));
        double t3 = now();
        double jb = (double)(h1 - h0) / n, pb = (double)(h2 - h1) / n;
        printf(" %-6s | %15.1f | %14.1f | %20.1f | %5.1f | %9.0f | %9.0f\n", SHAPES[sh], jb, pb,
               (double)exact / n, jb / pb, (t1 - t0) * 1e9 / n, (t3 - t2) * 1e9 / n);
    }

    printf("\n load   | jansson + pack ns | direct ns | direct/jansson\n");
    for (int sh = 0; sh < 3; sh++) {
        char **texts = malloc(sizeof(char *) * n);
        if (!texts)
            return 1;
        for (uint32_t i = 0; i < n; i++)
            if (!(texts[i] = json_dumps(js[sh][i], JSON_COMPACT)))
                return 1;
        double best[2] = {1e30, 1e30};
        for (int r = 0; r < rounds; r++) {
            for (int way = 0; way < 2; way++) {
                double t0 = now();
                for (uint32_t i = 0; i < n; i++) {
                    size_t len = strlen(texts[i]), plen;
                    const uint8_t *p = NULL;
                    if (way == 0) {
                        json_t *v = json_loadb(texts[i], len, JSON_ALLOW_NUL, NULL);
                        if (!v || ag_pack_encode(v, &p, &plen) != 0)
                            return 1;
                        json_decref(v);
                    } else if (ag_pack_from_text(texts[i], len, &p, &plen) != 0) {
                        fprintf(stderr, "%s: the direct encoder declined %s\n", SHAPES[sh],
                                texts[i]);
                        return 1;
                    }
                    if (r == 0 &&
                        (plen != ag_pack_size(ps[sh][i]) || memcmp(p, ps[sh][i], plen) != 0)) {
                        fprintf(stderr, "%s: packed bytes differ for %s\n", SHAPES[sh], texts[i]);
                        return 1;
                    }
                    ag_pack_free(p);
                }
                double t = now() - t0;
                if (t < best[way])
                    best[way] = t;
            }
        }
        printf(" %-6s | %17.0f | %9.0f | %5.2f\n", SHAPES[sh], best[0] * 1e9 / n, best[1] * 1e9 / n,
               best[1] / best[0]);
        for (uint32_t i = 0; i < n; i++)
            free(texts[i]);
        free(texts);
    }

    printf("\n filter                         | matches | jansson ns/match | packed ns/match | "
           "packed/jansson\n");
    for (size_t fi = 0; fi < NFILTERS; fi++) {
        const fdef_t *fd = &FILTERS[fi];
        json_t *fj = json_loads(fd->json, 0, NULL);
        ag_filter_t *f = NULL;
        ag_diag_t d;
        if (!fj || ag_filter_compile(fj, &f, &d) != 0) {
            fprintf(stderr, "bad filter %s\n", fd->json);
            return 1;
        }
        double best[2] = {1e30, 1e30};
        size_t hits[2] = {0, 0};
        for (int r = 0; r < rounds; r++) {
            for (int form = 0; form < 2; form++) {
                size_t h = 0;
                double t0 = now();
                for (uint32_t i = 0; i < n; i++) {
                    ag_filter_subject_t s = {0};
                    if (form == 0)
                        s.payload = js[fd->shape][i];
                    else
                        s.packed = ps[fd->shape][i];
                    h += ag_filter_match(f, &s);
                }
                double t = now() - t0;
                if (t < best[form])
                    best[form] = t;
                hits[form] = h;
            }
        }
        if (hits[0] != hits[1]) {
            fprintf(stderr, "%s: the forms disagree (%zu vs %zu)\n", fd->name, hits[0], hits[1]);
            return 1;
        }
        printf(" %-30s | %7zu | %16.1f | %15.1f | %5.2f\n", fd->name, hits[0], best[0] * 1e9 / n,
               best[1] * 1e9 / n, best[1] / best[0]);
        ag_filter_free(f);
        json_decref(fj);
    }
    for (int sh = 0; sh < 3; sh++) {
        for (uint32_t i = 0; i < n; i++) {
            json_decref(js[sh][i]);
            ag_pack_free(ps[sh][i]);
        }
        free(js[sh]);
        free(ps[sh]);
    }
    return 0;
}
