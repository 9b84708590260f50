/*
 * bench_auth — what authentication and authorization add to a request, measured in one run:
 *   baseline: an empty loop with the same bookkeeping (no auth at all)
 *   api key:  resolve `api-key` (hash + constant-time compare) + decide read:data
 *   JWT, cached: a token already verified once (cache hit) + decide
 *   JWT, fresh: a different token every time (base64url, HMAC-SHA256, claims) + decide
 *   restricted: cached JWT with a payload restriction + decide (compiles the row filter)
 * Usage: bench_auth [iterations=200000]
 */
#include "ag_base.h"

#include <stdio.h>
#include <time.h>

#include <sodium.h>

#include "auth/ag_auth.h"
#include "auth/ag_perm.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *KEY = "bench-key-0123456789abcdef0123456789";

static volatile int sink;

/* One request's auth work: authenticate, then decide read:data on collection "books". */
static int one(ag_auth_t *auth, const char *api_key, const char *bearer)
{
    ag_principal_t *p = NULL;
    ag_diag_t d;
    int rc = ag_auth_authenticate(auth, api_key, bearer, (int64_t)time(NULL), &p, &d);
    if (rc)
        return rc;
    ag_action_decl_t decl = AG_ACT(AG_VERB_READ, AG_RES_DATA);
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.collection = "books";
    ag_decision_t dec;
    rc = ag_auth_decide(p, &a, &dec);
    sink += dec.allowed;
    ag_decision_release(&dec);
    ag_principal_unref(p);
    return rc;
}

static char *mint(ag_auth_t *auth, const char *claims_text)
{
    json_t *claims = json_loads(claims_text, 0, NULL);
    json_object_set_new(claims, "exp", json_integer((json_int_t)time(NULL) + 3600));
    char *tok = NULL;
    if (ag_auth_mint(auth, claims, &tok) != 0)
        tok = NULL;
    json_decref(claims);
    return tok;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    if (n <= 0 || sodium_init() < 0)
        return 2;
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = KEY;
    cfg.jwt_rbac = true;
    ag_auth_t *auth = NULL;
    ag_diag_t d;
    if (ag_auth_new(&cfg, &auth, &d) != 0) {
        fprintf(stderr, "auth: %s\n", d.msg);
        return 1;
    }
    char *tok = mint(auth, "{\"access\":[{\"collection\":\"books\",\"access\":\"r\"}]}");
    char *rtok = mint(auth, "{\"access\":[{\"collection\":\"books\",\"access\":\"r\","
                            "\"payload\":{\"tenant\":\"acme\"}}]}");
    char bearer[4096], rbearer[4096];
    snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
    snprintf(rbearer, sizeof(rbearer), "Bearer %s", rtok);
    long nfresh = n / 20 > 1000 ? n / 20 : 1000;
    char **fresh = calloc((size_t)nfresh, sizeof(char *));
    for (long i = 0; i < nfresh; i++) {
        char claims[160], *t;
        snprintf(claims, sizeof(claims),
                 "{\"sub\":\"u%ld\",\"access\":[{\"collection\":\"books\",\"access\":\"r\"}]}", i);
        t = mint(auth, claims);
        fresh[i] = malloc(strlen(t) + 8);
        snprintf(fresh[i], strlen(t) + 8, "Bearer %s", t);
        free(t);
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        sink += (int)(i & 1);
    double base = (now_s() - t0) / (double)n;

    t0 = now_s();
    for (long i = 0; i < n; i++)
        if (one(auth, KEY, NULL) != 0)
            return 1;
    double key = (now_s() - t0) / (double)n;

    one(auth, NULL, bearer);
    t0 = now_s();
    for (long i = 0; i < n; i++)
        if (one(auth, NULL, bearer) != 0)
            return 1;
    double cached = (now_s() - t0) / (double)n;

    one(auth, NULL, rbearer);
    t0 = now_s();
    for (long i = 0; i < n; i++)
        if (one(auth, NULL, rbearer) != 0)
            return 1;
    double restricted = (now_s() - t0) / (double)n;

    cfg.token_cache_size = 0; /* a fresh verify every time */
    ag_auth_t *nocache = NULL;
    ag_auth_new(&cfg, &nocache, &d);
    t0 = now_s();
    for (long i = 0; i < nfresh; i++)
        if (one(nocache, NULL, fresh[i]) != 0)
            return 1;
    double fresh_t = (now_s() - t0) / (double)nfresh;

    printf("bench_auth: per request, authenticate + authorize read:data (%ld iterations)\n", n);
    printf("  %-34s %9.3f us\n", "baseline (no auth)", base * 1e6);
    printf("  %-34s %9.3f us\n", "api key", key * 1e6);
    printf("  %-34s %9.3f us\n", "JWT, cached", cached * 1e6);
    printf("  %-34s %9.3f us\n", "JWT, cached, payload restriction", restricted * 1e6);
    printf("  %-34s %9.3f us   (%ld distinct tokens)\n", "JWT, fresh (verify every time)",
           fresh_t * 1e6, nfresh);
    printf("  target: under 2 us once the principal is resolved (docs/BENCHMARKS.md)\n");
    for (long i = 0; i < nfresh; i++)
        free(fresh[i]);
    free(fresh);
    free(tok);
    free(rtok);
    ag_auth_free(nocache);
    ag_auth_free(auth);
    return 0;
}
