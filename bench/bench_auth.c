/*
 * bench_auth — what authentication and authorization add to a request, measured in one run:
 *   baseline: an empty loop with the same bookkeeping (no auth at all)
 *   api key:  resolve `api-key` (hash + constant-time compare) + decide read:data
 *   JWT, cached: a token already verified once (cache hit) + decide
 *   JWT, fresh: a different token every time (base64url, HMAC-SHA256, claims) + decide
 *   restricted: cached JWT with a payload restriction + decide (compiles the row filter)
 *   user key:   a database user's key (ag_secstore), wired as the server wires it: from the
 *               authenticator's cache, and with the cache off (every request looked up: checksum,
 *               keyed BLAKE2b of the secret, key index, the user's cached principal)
 *   API key:    a database API key (ag_keystore, access "r", created by root): cached, and looked
 *               up every time (checksum, keyed BLAKE2b, binary search, grant and creator resolved)
 * Each key row is the best of three passes of iterations / 3, the two variants alternated.
 * Usage: bench_auth [iterations=200000]
 */
#include "ag_base.h"

#include <ftw.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "auth/ag_auth.h"
#include "auth/ag_keystore.h"
#include "auth/ag_perm.h"
#include "auth/ag_secstore.h"
#include "bench_clock.h"

/* AEGIS_BENCH_CLOCK=cpu: this thread's CPU clock (bench_clock.h). */
static double now_s(void)
{
    return bench_seconds(CLOCK_THREAD_CPUTIME_ID);
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

/* The stores behind the lookup hook, as api/ag_guard.c composes them. */
typedef struct stores {
    ag_secstore_t *sec;
    ag_keystore_t *keys;
} stores_t;

static int lookup(void *ctx, const char *cred, size_t len, int64_t now, ag_principal_t **out)
{
    stores_t *st = ctx;
    int rc = ag_keystore_lookup(st->keys, cred, len, now, out);
    return rc != AG_ENOTFOUND ? rc : ag_secstore_lookup(st->sec, cred, len, now, out);
}

static void used(void *ctx, const ag_principal_t *p, int64_t now)
{
    stores_t *st = ctx;
    if (ag_principal_kind(p) == AG_PRINCIPAL_API_KEY)
        ag_keystore_key_used(st->keys, ag_principal_id(p), now);
}

static void invalidate(void *ctx)
{
    ag_auth_invalidate(ctx);
}

/* A new authenticator over st; cache_size 0 = every key looked up. NULL on failure. */
static ag_auth_t *keyed_auth(stores_t *st, size_t cache_size)
{
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = "bench-root-key-0123456789abcdef0123456789";
    cfg.token_cache_size = cache_size;
    ag_auth_t *auth = NULL;
    ag_diag_t d;
    if (ag_auth_new(&cfg, &auth, &d) != 0)
        return NULL;
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = lookup;
    hooks.lookup_ctx = st;
    hooks.used = used;
    hooks.used_ctx = st;
    hooks.resolve_role = ag_secstore_resolve_role;
    hooks.resolve_ctx = st->sec;
    ag_auth_set_hooks(auth, &hooks);
    return auth;
}

/* s per request of one(auth, key) over n requests; < 0 on a refusal. */
static double time_key(ag_auth_t *auth, const char *key, long n)
{
    if (one(auth, key, NULL) != 0)
        return -1;
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        if (one(auth, key, NULL) != 0)
            return -1;
    return (now_s() - t0) / (double)n;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    AG_UNUSED(sb);
    AG_UNUSED(flag);
    AG_UNUSED(ftw);
    return remove(path);
}

/* Rows "user key" and "API key", cached and not; 0 or 1. */
static int key_rows(long n)
{
    char dir[64], sec_dir[96], mgmt_dir[128];
    snprintf(dir, sizeof(dir), "%s/aegis-bench-auth-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    snprintf(sec_dir, sizeof(sec_dir), "%s/security", dir);
    snprintf(mgmt_dir, sizeof(mgmt_dir), "%s/mgmt", sec_dir);
    stores_t st = {0};
    ag_auth_t *cached = NULL, *uncached = NULL;
    char *ukey = NULL, *akey = NULL;
    json_t *roles = json_pack("[s]", "viewer"), *grant = json_pack("{s:s}", "access", "r");
    json_t *root = json_pack("{s:s}", "kind", "root"), *rec = NULL;
    ag_diag_t d = {{0}};
    int rc = 1;
    if (ag_secstore_open(sec_dir, &st.sec, &d) != 0 ||
        ag_keystore_open(mgmt_dir, &st.keys, &d) != 0 ||
        ag_secstore_user_create(st.sec, "bench-user", roles, &ukey, &d) != 0 ||
        ag_keystore_key_create(st.keys, AG_KEYKIND_API, "bench", grant, (int64_t)time(NULL) + 86400,
                               NULL, root, &akey, &rec, &d) != 0) {
        fprintf(stderr, "bench_auth: stores: %s\n", d.msg);
        goto out;
    }
    ag_keystore_hooks_t kh = {ag_secstore_resolve_role, st.sec, ag_secstore_minter, st.sec};
    ag_keystore_set_hooks(st.keys, &kh);
    if (!(cached = keyed_auth(&st, AG_AUTH_DEFAULT_CACHE)) || !(uncached = keyed_auth(&st, 0)))
        goto out;
    ag_secstore_set_on_change(st.sec, invalidate, cached);
    ag_keystore_set_on_change(st.keys, invalidate, cached);
    double u_c = 1e9, u_n = 1e9, a_c = 1e9, a_n = 1e9;
    for (int round = 0; round < 3; round++) {
        u_c = AG_MIN(u_c, time_key(cached, ukey, n / 3));
        u_n = AG_MIN(u_n, time_key(uncached, ukey, n / 3));
        a_c = AG_MIN(a_c, time_key(cached, akey, n / 3));
        a_n = AG_MIN(a_n, time_key(uncached, akey, n / 3));
    }
    if (u_c < 0 || u_n < 0 || a_c < 0 || a_n < 0) {
        fprintf(stderr, "bench_auth: a key was refused\n");
        goto out;
    }
    printf("  %-34s %9.3f us\n", "user key, cached", u_c * 1e6);
    printf("  %-34s %9.3f us\n", "user key, looked up every time", u_n * 1e6);
    printf("  %-34s %9.3f us\n", "API key (key store), cached", a_c * 1e6);
    printf("  %-34s %9.3f us\n", "API key, looked up every time", a_n * 1e6);
    rc = 0;
out:
    if (st.sec)
        ag_secstore_set_on_change(st.sec, NULL, NULL);
    if (st.keys)
        ag_keystore_set_on_change(st.keys, NULL, NULL);
    ag_auth_free(cached);
    ag_auth_free(uncached);
    ag_secstore_key_free(ukey);
    ag_keystore_secret_free(akey);
    json_decref(roles);
    json_decref(grant);
    json_decref(root);
    json_decref(rec);
    ag_keystore_close(st.keys);
    ag_secstore_close(st.sec);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
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
    int krc = key_rows(n);
    printf("  target: under 2 us once the principal is resolved (docs/BENCHMARKS.md)\n");
    for (long i = 0; i < nfresh; i++)
        free(fresh[i]);
    free(fresh);
    free(tok);
    free(rtok);
    ag_auth_free(nocache);
    ag_auth_free(auth);
    return krc;
}
