/* Unit tests: credential handling (keys, bearer tokens, hooks, token cache) and the throttle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <pthread.h>
#include <sodium.h>

#include "auth/ag_auth.h"
#include "auth/ag_throttle.h"
#include "index/ag_filter.h"

#define API_KEY "root-key-0123456789abcdef0123456789"
#define ALT_KEY "alt-key-0123456789abcdef0123456789ab"
#define RO_KEY "read-only-key-0123456789abcdef01234"
#define NOW 1700000000

/*
 * Test seam: this definition replaces libsodium's for the code linked into this executable, so
 * the tests can see that credentials are compared with sodium_memcmp over fixed-size digests.
 * It is itself constant-time.
 */
static _Atomic int memcmp_calls;
static _Atomic size_t memcmp_bad_len;
int sodium_memcmp(const void *const b1_, const void *const b2_, size_t len)
{
    const volatile unsigned char *a = b1_, *b = b2_;
    unsigned char d = 0;
    memcmp_calls++;
    if (len != 32)
        memcmp_bad_len = len;
    for (size_t i = 0; i < len; i++)
        d |= a[i] ^ b[i];
    return d ? -1 : 0;
}

/* The same seam for crypto_verify_16, which compares credential tags. */
static _Atomic int verify16_calls;
int crypto_verify_16(const unsigned char *x, const unsigned char *y)
{
    const volatile unsigned char *a = x, *b = y;
    unsigned char d = 0;
    verify16_calls++;
    for (size_t i = 0; i < 16; i++)
        d |= a[i] ^ b[i];
    return d ? -1 : 0;
}

static ag_auth_t *make_auth(bool jwt)
{
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = API_KEY;
    cfg.alt_api_key = ALT_KEY;
    cfg.read_only_api_key = RO_KEY;
    cfg.jwt_rbac = jwt;
    ag_auth_t *auth = NULL;
    ag_diag_t d = {{0}};
    if (ag_auth_new(&cfg, &auth, &d) != 0)
        fail_msg("ag_auth_new: %s", d.msg);
    return auth;
}

static int auth_as(ag_auth_t *auth, const char *api_key, const char *bearer, int64_t now,
                   ag_principal_t **p, ag_diag_t *d)
{
    memset(d, 0, sizeof(*d));
    *p = NULL;
    return ag_auth_authenticate(auth, api_key, bearer, now, p, d);
}

static int kind_of(ag_auth_t *auth, const char *api_key, const char *authorization)
{
    ag_principal_t *p;
    ag_diag_t d;
    int rc = auth_as(auth, api_key, authorization, NOW, &p, &d);
    if (rc < 0) {
        assert_null(p);
        return rc;
    }
    int k = ag_principal_kind(p);
    ag_principal_unref(p);
    return k;
}

static char *mint(ag_auth_t *auth, const char *claims_json)
{
    json_error_t err;
    json_t *c = json_loads(claims_json, 0, &err);
    assert_non_null(c);
    char *tok = NULL;
    assert_int_equal(ag_auth_mint(auth, c, &tok), 0);
    json_decref(c);
    return tok;
}

static char *bearer(const char *tok)
{
    size_t n = strlen(tok) + 8;
    char *h = malloc(n);
    assert_non_null(h);
    snprintf(h, n, "Bearer %s", tok);
    return h;
}

/* --- configuration ------------------------------------------------------------------------- */

static int config_error(const char *api, const char *alt, const char *ro, bool jwt, int64_t leeway,
                        ag_diag_t *d)
{
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = api;
    cfg.alt_api_key = alt;
    cfg.read_only_api_key = ro;
    cfg.jwt_rbac = jwt;
    cfg.jwt_leeway_s = leeway;
    ag_auth_t *auth = NULL;
    memset(d, 0, sizeof(*d));
    int rc = ag_auth_new(&cfg, &auth, d);
    ag_auth_free(auth);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    ag_diag_t d;
    const char *short_key = "short-secret-value-31-chars-xyz";
    assert_int_equal(strlen(short_key), 31);
    assert_int_equal(config_error(short_key, NULL, NULL, false, 30, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "service.api_key"));
    assert_non_null(strstr(d.msg, "32"));
    assert_null(strstr(d.msg, short_key));
    assert_null(strstr(d.msg, "short-secret"));
    assert_int_equal(config_error(API_KEY, NULL, short_key, false, 30, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "read_only_api_key"));
    assert_null(strstr(d.msg, short_key));
    assert_int_equal(config_error(API_KEY, short_key, NULL, false, 30, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "alt_api_key"));
    assert_int_equal(config_error(NULL, NULL, NULL, true, 30, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "jwt_rbac"));
    assert_int_equal(config_error(NULL, ALT_KEY, NULL, false, 30, &d), AG_ECONFIG);
    assert_int_equal(config_error(API_KEY, NULL, API_KEY, false, 30, &d), AG_ECONFIG);
    assert_null(strstr(d.msg, API_KEY));
    assert_int_equal(config_error(API_KEY, NULL, NULL, true, -1, &d), AG_ECONFIG);
    assert_int_equal(config_error(API_KEY, NULL, NULL, true, 100000, &d), AG_ECONFIG);
    assert_int_equal(config_error(API_KEY, NULL, NULL, true, 0, &d), 0);
    assert_int_equal(config_error(NULL, NULL, NULL, false, 30, &d), 0);
    assert_int_equal(config_error("", "", "", false, 30, &d), 0); /* "" means not set */

    /* With no key configured nothing authenticates (not even the empty string). */
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    assert_int_equal(cfg.jwt_leeway_s, 30);
    cfg.api_key = "";
    ag_auth_t *auth = NULL;
    assert_int_equal(ag_auth_new(&cfg, &auth, NULL), 0);
    assert_int_equal(kind_of(auth, "", NULL), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, "anything-at-all-0123456789abcdef", NULL), AG_EUNAUTH);
    char *tok = NULL;
    json_t *empty = json_object();
    assert_int_equal(ag_auth_mint(auth, empty, &tok), AG_ECONFIG);
    json_decref(empty);
    ag_auth_free(auth);
    ag_auth_free(NULL);
}

/* --- API keys ------------------------------------------------------------------------------ */

static void test_keys(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(false);
    assert_int_equal(kind_of(auth, API_KEY, NULL), AG_PRINCIPAL_ROOT);
    assert_int_equal(kind_of(auth, ALT_KEY, NULL), AG_PRINCIPAL_ROOT);
    assert_int_equal(kind_of(auth, RO_KEY, NULL), AG_PRINCIPAL_VIEWER);
    assert_int_equal(kind_of(auth, NULL, "Bearer " API_KEY), AG_PRINCIPAL_ROOT);
    assert_int_equal(kind_of(auth, NULL, "bearer " RO_KEY), AG_PRINCIPAL_VIEWER);
    assert_int_equal(kind_of(auth, NULL, "Bearer   " API_KEY), AG_PRINCIPAL_ROOT);
    assert_int_equal(kind_of(auth, "", "Bearer " API_KEY), AG_PRINCIPAL_ROOT);
    /* The api-key header wins over Authorization. */
    assert_int_equal(kind_of(auth, "wrong", "Bearer " API_KEY), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, RO_KEY, "Bearer " API_KEY), AG_PRINCIPAL_VIEWER);

    const char *bad_keys[] = {API_KEY "x",
                              "x" API_KEY,
                              "root-key-0123456789abcdef012345678",
                              "ROOT-KEY-0123456789ABCDEF0123456789",
                              API_KEY " ",
                              " " API_KEY,
                              "root-key-0123456789abcdef012345678\x01",
                              ""};
    for (size_t i = 0; i < AG_ARRAY_LEN(bad_keys); i++)
        assert_int_equal(kind_of(auth, bad_keys[i], NULL), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, NULL, NULL), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, NULL, "Basic " API_KEY), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, NULL, "Bearer"), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, NULL, "Bearer "), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, NULL, API_KEY), AG_EUNAUTH);
    char *huge = malloc(AG_AUTH_MAX_CREDENTIAL + 10);
    memset(huge, 'k', AG_AUTH_MAX_CREDENTIAL + 9);
    huge[AG_AUTH_MAX_CREDENTIAL + 9] = '\0';
    assert_int_equal(kind_of(auth, huge, NULL), AG_EUNAUTH);
    free(huge);

    /* The diagnostic never echoes the credential. */
    ag_principal_t *p;
    ag_diag_t d;
    const char *guess = "guess-guess-guess-guess-guess-guess";
    assert_int_equal(auth_as(auth, guess, NULL, NOW, &p, &d), AG_EUNAUTH);
    assert_true(d.msg[0] != '\0');
    assert_null(strstr(d.msg, "guess"));
    assert_int_equal(auth_as(auth, NULL, NULL, NOW, &p, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "missing"));

    /* Root and viewer principals carry the predefined roles. */
    assert_int_equal(auth_as(auth, RO_KEY, NULL, NOW, &p, &d), 0);
    assert_true(ag_principal_holds(p, ag_role_viewer(), NULL));
    assert_false(ag_principal_holds(p, ag_role_root(), NULL));
    ag_principal_unref(p);
    assert_int_equal(auth_as(auth, API_KEY, NULL, NOW, &p, &d), 0);
    assert_true(ag_principal_holds(p, ag_role_root(), NULL));
    ag_principal_unref(p);
    ag_auth_free(auth);
}

static void test_constant_time_compare(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(false);
    const char *creds[] = {"x", API_KEY, RO_KEY,
                           "a-much-longer-credential-than-any-key-0123456789"};
    for (size_t i = 0; i < AG_ARRAY_LEN(creds); i++) {
        verify16_calls = 0;
        memcmp_calls = 0;
        (void)kind_of(auth, creds[i], NULL);
        /* Every configured key is compared, always, over 16-byte tags whatever the length (and
         * nothing else compares them with an early exit). */
        assert_int_equal(verify16_calls, 3);
        assert_int_equal(memcmp_calls, 0);
    }
    ag_auth_free(auth);

    /* JWT signatures are compared with it too (against both secrets). */
    auth = make_auth(true);
    char *tok = mint(auth, "{\"access\":\"r\"}");
    memcmp_calls = 0;
    memcmp_bad_len = 0; /* (sodium_free itself compares 16-byte canaries) */
    verify16_calls = 0;
    assert_int_equal(kind_of(auth, tok, NULL), AG_PRINCIPAL_TOKEN);
    assert_true(memcmp_calls >= 2);
    assert_int_equal(memcmp_bad_len, 0);
    assert_int_equal(verify16_calls, 3);
    /* Cached now: the tag is compared with the cache entry's too. */
    verify16_calls = 0;
    assert_int_equal(kind_of(auth, tok, NULL), AG_PRINCIPAL_TOKEN);
    assert_int_equal(verify16_calls, 3 + 1);
    free(tok);
    ag_auth_free(auth);
}

/* --- tokens -------------------------------------------------------------------------------- */

static int resolver_calls;
static int resolver(void *ctx, const char *name, ag_perm_list_t *out)
{
    (void)ctx;
    resolver_calls++;
    if (strcmp(name, "writers") != 0)
        return AG_ENOTFOUND;
    ag_perm_t p;
    ag_perm_init(&p, AG_VERB_WRITE, AG_RES_DATA);
    return ag_perm_list_push(out, &p);
}

static bool can_write(const ag_principal_t *p)
{
    ag_request_action_t a;
    memset(&a, 0, sizeof(a));
    a.verbs = AG_VERB_CREATE;
    a.resource = AG_RES_DATA;
    a.collection = "c";
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    bool ok = d.allowed;
    ag_decision_release(&d);
    return ok;
}

static void test_jwt_credentials(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(true);
    char *tok = mint(auth, "{\"sub\":\"svc-1\",\"exp\":1700000100,\"access\":[{\"collection\":"
                           "\"c\",\"access\":\"rw\"}]}");
    char *hdr = bearer(tok);
    ag_principal_t *p, *q;
    ag_diag_t d;
    assert_int_equal(auth_as(auth, NULL, hdr, NOW, &p, &d), 0);
    assert_int_equal(ag_principal_kind(p), AG_PRINCIPAL_TOKEN);
    assert_string_equal(ag_principal_sub(p), "svc-1");
    assert_true(can_write(p));
    /* Second use: served from the cache (same principal). */
    assert_int_equal(auth_as(auth, tok, NULL, NOW + 1, &q, &d), 0);
    assert_ptr_equal(p, q);
    ag_principal_unref(q);
    /* The cache honours exp (+ 30 s leeway). */
    assert_int_equal(auth_as(auth, tok, NULL, 1700000100 + 29, &q, &d), 0);
    ag_principal_unref(q);
    assert_int_equal(auth_as(auth, tok, NULL, 1700000100 + 30, &q, &d), AG_EUNAUTH);
    assert_null(q);
    assert_non_null(strstr(d.msg, "expired"));
    assert_null(strstr(d.msg, tok));
    /* Invalidation drops it: a fresh principal is built. */
    ag_auth_invalidate(auth);
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &q, &d), 0);
    assert_ptr_not_equal(p, q);
    ag_principal_unref(q);
    ag_principal_unref(p);
    free(hdr);

    /* A forged token (signed elsewhere), a tampered one, alg none: 401 without echo. */
    json_t *claims = json_pack("{s:s}", "access", "m");
    char *forged = NULL;
    assert_int_equal(ag_jwt_mint("some-other-secret-some-other-secret!", claims, &forged), 0);
    assert_int_equal(auth_as(auth, forged, NULL, NOW, &p, &d), AG_EUNAUTH);
    assert_null(strstr(d.msg, forged));
    free(forged);
    json_decref(claims);
    char *t2 = strdup(tok);
    t2[strlen(t2) - 2] = t2[strlen(t2) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(kind_of(auth, t2, NULL), AG_EUNAUTH);
    free(t2);
    assert_int_equal(kind_of(auth, "eyJhbGciOiJub25lIn0.eyJhY2Nlc3MiOiJtIn0.", NULL), AG_EUNAUTH);
    ag_auth_free(auth);

    /* With jwt_rbac off, tokens are just unknown credentials. */
    auth = make_auth(false);
    assert_int_equal(kind_of(auth, tok, NULL), AG_EUNAUTH);
    ag_auth_free(auth);
    free(tok);

    /* Tokens signed with alt_api_key are accepted. */
    auth = make_auth(true);
    claims = json_pack("{s:s}", "access", "r");
    assert_int_equal(ag_jwt_mint(ALT_KEY, claims, &tok), 0);
    assert_int_equal(kind_of(auth, tok, NULL), AG_PRINCIPAL_TOKEN);
    free(tok);
    json_decref(claims);
    ag_auth_free(auth);
}

static void test_jwt_roles_and_cache(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(true);
    ag_auth_hooks_t hooks = {0};
    hooks.resolve_role = resolver;
    ag_auth_set_hooks(auth, &hooks);
    char *tok = mint(auth, "{\"roles\":[\"writers\",\"ghost\"]}");
    resolver_calls = 0;
    ag_principal_t *p;
    ag_diag_t d;
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), 0);
    assert_int_equal(resolver_calls, 2);
    assert_true(can_write(p));
    ag_principal_unref(p);
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), 0);
    assert_int_equal(resolver_calls, 2); /* cached */
    ag_principal_unref(p);
    ag_auth_invalidate(auth); /* roles changed */
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), 0);
    assert_int_equal(resolver_calls, 4);
    ag_principal_unref(p);
    free(tok);
    ag_auth_free(auth);

    /* A cache of size 0 works too (every request verifies). */
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = API_KEY;
    cfg.jwt_rbac = true;
    cfg.token_cache_size = 0;
    assert_int_equal(ag_auth_new(&cfg, &auth, NULL), 0);
    ag_auth_set_hooks(auth, &hooks);
    tok = mint(auth, "{\"roles\":[\"writers\"]}");
    resolver_calls = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), 0);
        ag_principal_unref(p);
    }
    assert_int_equal(resolver_calls, 3);
    free(tok);
    ag_auth_free(auth);
}

static int ve_calls;
static int ve_result;
static int value_exists(void *ctx, const ag_value_exists_t *ve)
{
    (void)ctx;
    const char *collection = ve->collection;
    const ag_filter_t *filter = ve->filter;
    ve_calls++;
    assert_string_equal(collection, "users");
    json_t *pl = json_pack("{s:s, s:s}", "username", "john", "role", "developer");
    ag_filter_subject_t s = {NULL, pl, NULL, NULL};
    assert_true(ag_filter_match(filter, &s));
    json_decref(pl);
    return ve_result;
}

static void test_value_exists(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(true);
    char *tok = mint(auth, "{\"access\":\"r\",\"value_exists\":{\"collection\":\"users\","
                           "\"matches\":[{\"key\":\"username\",\"value\":\"john\"},"
                           "{\"key\":\"role\",\"value\":\"developer\"}]}}");
    ag_principal_t *p;
    ag_diag_t d;
    /* Without the store's callback the claim cannot be honoured: refused. */
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), AG_EUNAUTH);
    ag_auth_hooks_t hooks = {0};
    hooks.value_exists = value_exists;
    ag_auth_set_hooks(auth, &hooks);
    ve_calls = 0;
    ve_result = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), 0);
        ag_principal_unref(p);
    }
    assert_int_equal(ve_calls, 3); /* checked on every request, cache or not */
    ve_result = AG_ENOTFOUND;      /* the user's role changed */
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "revoked"));
    assert_null(p);
    ve_result = AG_ESTORAGE; /* fail closed on store errors */
    assert_int_equal(auth_as(auth, tok, NULL, NOW, &p, &d), AG_ESTORAGE);
    assert_null(p);
    free(tok);
    ag_auth_free(auth);
}

static int lookup(void *ctx, const char *cred, size_t len, int64_t now, ag_principal_t **out)
{
    (void)ctx;
    (void)now;
    if (len == 10 && memcmp(cred, "ag_user_ok", 10) == 0)
        return ag_principal_new(AG_PRINCIPAL_USER, "alice", out);
    if (len == 12 && memcmp(cred, "ag_user_dead", 12) == 0)
        return AG_EUNAUTH;
    if (len == 12 && memcmp(cred, "ag_user_boom", 12) == 0)
        return AG_ESTORAGE;
    if (len == 11 && memcmp(cred, "ag_user_old", 11) == 0) {
        int rc = ag_principal_new(AG_PRINCIPAL_API_KEY, "k1", out);
        if (rc == 0)
            ag_principal_set_expiry(*out, NOW - 1);
        return rc;
    }
    return AG_ENOTFOUND;
}

static void test_lookup_hook(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(true);
    assert_int_equal(kind_of(auth, "ag_user_ok", NULL), AG_EUNAUTH); /* no hook yet */
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = lookup;
    ag_auth_set_hooks(auth, &hooks);
    assert_int_equal(kind_of(auth, "ag_user_ok", NULL), AG_PRINCIPAL_USER);
    assert_int_equal(kind_of(auth, NULL, "Bearer ag_user_ok"), AG_PRINCIPAL_USER);
    assert_int_equal(kind_of(auth, "ag_user_nope", NULL), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, "ag_user_dead", NULL), AG_EUNAUTH);
    assert_int_equal(kind_of(auth, "ag_user_boom", NULL), AG_ESTORAGE);
    assert_int_equal(kind_of(auth, "ag_user_old", NULL), AG_EUNAUTH); /* expired key */
    assert_int_equal(kind_of(auth, API_KEY, NULL), AG_PRINCIPAL_ROOT);
    ag_auth_free(auth);

    ag_principal_t *anon;
    assert_int_equal(ag_auth_anonymous(&anon), 0);
    assert_int_equal(ag_principal_kind(anon), AG_PRINCIPAL_ANONYMOUS);
    assert_true(ag_principal_holds(anon, ag_role_root(), NULL));
    ag_principal_unref(anon);
}

/* --- the cache of accepted keys ------------------------------------------------------------ */

/* A key store in miniature: key "ag_key_<n>" is valid while valid[n]; n = 9 expires at NOW + 10.
 * Every lookup is counted; change_during_lookup simulates a change committed while one runs. */
static int kc_lookups;
static bool kc_valid[10];
static int kc_used;
static ag_auth_t *kc_change_during_lookup;

static int kc_lookup(void *ctx, const char *cred, size_t len, int64_t now, ag_principal_t **out)
{
    (void)ctx;
    (void)now;
    kc_lookups++;
    if (kc_change_during_lookup)
        ag_auth_invalidate(kc_change_during_lookup);
    if (len != 9 || memcmp(cred, "ag_key_", 7) != 0 || cred[7] < '0' || cred[7] > '9' ||
        cred[8] != 'x')
        return AG_ENOTFOUND;
    int n = cred[7] - '0';
    if (!kc_valid[n])
        return AG_EUNAUTH;
    char id[8];
    snprintf(id, sizeof(id), "k%d", n);
    int rc = ag_principal_new(AG_PRINCIPAL_API_KEY, id, out);
    if (rc == 0 && n == 9)
        ag_principal_set_expiry(*out, NOW + 10);
    return rc;
}

static void kc_used_hook(void *ctx, const ag_principal_t *p, int64_t now)
{
    (void)ctx;
    (void)now;
    assert_int_equal(ag_principal_kind(p), AG_PRINCIPAL_API_KEY);
    kc_used++;
}

static ag_auth_t *kc_auth(void)
{
    ag_auth_t *auth = make_auth(false);
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = kc_lookup;
    hooks.used = kc_used_hook;
    ag_auth_set_hooks(auth, &hooks);
    for (int i = 0; i < 10; i++)
        kc_valid[i] = true;
    kc_lookups = kc_used = 0;
    kc_change_during_lookup = NULL;
    return auth;
}

static int kc_auth_at(ag_auth_t *auth, const char *key, int64_t now)
{
    ag_principal_t *p;
    ag_diag_t d;
    int rc = auth_as(auth, key, NULL, now, &p, &d);
    if (rc == 0)
        ag_principal_unref(p);
    return rc;
}

static void test_key_cache_revocation(void **state)
{
    (void)state;
    ag_auth_t *auth = kc_auth();
    /* Looked up once, then from the cache. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW), 0);
    assert_int_equal(kc_lookups, 1);
    /* The used hook: not for the lookup itself (the store saw that use), then once a second. */
    assert_int_equal(kc_used, 0);
    assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW + 1), 0);
    assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW + 1), 0);
    assert_int_equal(kc_used, 1);

    /* Revoked (deleted, rotated, user deactivated …): the store's change invalidates, and the
     * very next request is looked up again and refused. */
    kc_valid[1] = false;
    ag_auth_invalidate(auth);
    assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW + 1), AG_EUNAUTH);
    assert_int_equal(kc_lookups, 2);
    /* A refused key is never cached: every attempt asks the store (and so is throttled and
     * audited by the caller, as any failure). */
    assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW + 1), AG_EUNAUTH);
    assert_int_equal(kc_lookups, 3);
    /* Rotation: the old secret is a revoked key, the new one another credential. */
    assert_int_equal(kc_auth_at(auth, "ag_key_2x", NOW + 1), 0);
    assert_int_equal(kc_lookups, 4);

    /* Expiry: cached, and refused from the second it expires with no invalidation at all. */
    assert_int_equal(kc_auth_at(auth, "ag_key_9x", NOW), 0);
    assert_int_equal(kc_auth_at(auth, "ag_key_9x", NOW + 9), 0);
    assert_int_equal(kc_lookups, 5);
    assert_int_equal(kc_auth_at(auth, "ag_key_9x", NOW + 10), AG_EUNAUTH);

    /* A change committed while a lookup runs: its (possibly old) result is not cached. */
    kc_change_during_lookup = auth;
    assert_int_equal(kc_auth_at(auth, "ag_key_3x", NOW), 0);
    kc_change_during_lookup = NULL;
    int before = kc_lookups;
    assert_int_equal(kc_auth_at(auth, "ag_key_3x", NOW), 0);
    assert_int_equal(kc_lookups, before + 1);
    assert_int_equal(kc_auth_at(auth, "ag_key_3x", NOW), 0);
    assert_int_equal(kc_lookups, before + 1);

    /* Configured keys never reach the store or the cache. */
    before = kc_lookups;
    assert_int_equal(kind_of(auth, API_KEY, NULL), AG_PRINCIPAL_ROOT);
    assert_int_equal(kc_lookups, before);
    ag_auth_free(auth);
}

static void test_key_cache_flood(void **state)
{
    (void)state;
    ag_auth_t *auth = kc_auth();
    const char *valid[] = {"ag_key_0x", "ag_key_4x", "ag_key_5x", "ag_key_6x"};
    for (size_t i = 0; i < AG_ARRAY_LEN(valid); i++)
        assert_int_equal(kc_auth_at(auth, valid[i], NOW), 0);
    assert_int_equal(kc_lookups, 4);
    /* 50,000 distinct invalid credentials (more than the cache has slots, many times over),
     * unknown keys and refused ones alike: none takes a slot, so none evicts a valid key. */
    kc_valid[7] = false;
    for (int i = 0; i < 50000; i++) {
        char cred[48];
        if (i % 2)
            snprintf(cred, sizeof(cred), "ag_key_%dx-garbage-%d", i % 10, i);
        else
            snprintf(cred, sizeof(cred), "ag_key_7x");
        assert_int_equal(kc_auth_at(auth, cred, NOW), AG_EUNAUTH);
    }
    assert_int_equal(kc_lookups, 4 + 50000);
    for (size_t i = 0; i < AG_ARRAY_LEN(valid); i++)
        assert_int_equal(kc_auth_at(auth, valid[i], NOW), 0);
    assert_int_equal(kc_lookups, 4 + 50000); /* all four still cached */
    ag_auth_free(auth);

    /* Bounded: with a cache of 2 entries (one bucket), valid keys evict each other (a miss costs a
     * lookup, never a wrong answer), and the table never grows. */
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = API_KEY;
    cfg.token_cache_size = 2;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_auth_new(&cfg, &auth, &d), 0);
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = kc_lookup;
    ag_auth_set_hooks(auth, &hooks);
    kc_lookups = 0;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 7; i++) {
            char cred[16];
            snprintf(cred, sizeof(cred), "ag_key_%dx", i);
            assert_int_equal(kc_auth_at(auth, cred, NOW), 0);
        }
    assert_true(kc_lookups >= 7 + 2 * (7 - 2));
    /* Two keys fit one bucket; a third evicts the less recently used of them. */
    ag_auth_invalidate(auth);
    kc_lookups = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(kc_auth_at(auth, "ag_key_0x", NOW), 0);
        assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW), 0);
    }
    assert_int_equal(kc_lookups, 2);
    assert_int_equal(kc_auth_at(auth, "ag_key_0x", NOW), 0); /* 1 is now the older */
    assert_int_equal(kc_auth_at(auth, "ag_key_2x", NOW), 0);
    assert_int_equal(kc_lookups, 3);
    assert_int_equal(kc_auth_at(auth, "ag_key_0x", NOW), 0); /* still cached */
    assert_int_equal(kc_lookups, 3);
    assert_int_equal(kc_auth_at(auth, "ag_key_1x", NOW), 0); /* evicted */
    assert_int_equal(kc_lookups, 4);
    ag_auth_free(auth);
}

/* --- concurrency --------------------------------------------------------------------------- */

static int tfail(ag_throttle_t *t, const char *addr, int64_t now, int *retry)
{
    ag_throttle_verdict_t v;
    int rc = ag_throttle_fail(t, addr, now, &v);
    *retry = v.retry_after;
    return rc;
}

typedef struct worker {
    ag_auth_t *auth;
    ag_throttle_t *throttle;
    const char *tok;
    int failures;
} worker_t;

static void *work(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 500; i++) {
        ag_principal_t *p = NULL;
        const char *creds[] = {API_KEY, RO_KEY, w->tok, "nope", "ag_user_ok", "ag_user_dead"};
        int rc = ag_auth_authenticate(w->auth, creds[i % 6], NULL, NOW, &p, NULL);
        if ((rc == 0) != (i % 6 != 3 && i % 6 != 5))
            w->failures++;
        ag_principal_unref(p);
        if (i % 50 == 0)
            ag_auth_invalidate(w->auth);
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.0.%d", i % 7);
        int retry;
        (void)tfail(w->throttle, addr, NOW + i, &retry);
        (void)ag_throttle_check(w->throttle, addr, NOW + i, &retry);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    ag_auth_t *auth = make_auth(true);
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = lookup; /* keys cached and invalidated concurrently too */
    ag_auth_set_hooks(auth, &hooks);
    ag_throttle_t *t;
    assert_int_equal(ag_throttle_new(NULL, &t), 0);
    char *tok = mint(auth, "{\"access\":\"r\"}");
    pthread_t th[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){auth, t, tok, 0};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    free(tok);
    ag_throttle_free(t);
    ag_auth_free(auth);
}

/* --- throttle ------------------------------------------------------------------------------ */

typedef struct reported {
    char addr[AG_THROTTLE_ADDR_LEN];
    uint64_t count;
    int calls;
} reported_t;

static void on_report(void *ctx, const char *addr, uint64_t count)
{
    reported_t *r = ctx;
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    r->count += count;
    r->calls++;
}

static void test_throttle_aggregates(void **state)
{
    (void)state;
    ag_throttle_config_t cfg = {3, 10, 100, 0};
    ag_throttle_t *t;
    assert_int_equal(ag_throttle_new(&cfg, &t), 0);
    ag_throttle_verdict_t v;
    assert_int_equal(ag_throttle_fail(t, "a", NOW, &v), 0);
    assert_false(v.quiet);
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 1, &v), 0);
    /* The failure that locks is answered 429 but recorded on its own. */
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 2, &v), AG_ETHROTTLED);
    assert_true(v.locked);
    assert_false(v.quiet);
    assert_int_equal(v.report, 0);
    /* Failures while locked are quiet until a window has passed: then one report for all. */
    for (int i = 3; i < 12; i++) {
        assert_int_equal(ag_throttle_fail(t, "a", NOW + i, &v), AG_ETHROTTLED);
        assert_true(v.quiet);
        assert_int_equal(v.report, 0);
    }
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 12, &v), AG_ETHROTTLED);
    assert_true(v.quiet);
    assert_int_equal(v.report, 10);
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 13, &v), AG_ETHROTTLED);
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 14, &v), AG_ETHROTTLED);
    assert_int_equal(v.report, 0);
    /* A silent address's pending count is drained once due, and only once. */
    reported_t r = {{0}, 0, 0};
    (void)ag_throttle_drain(t, NOW + 15, false, on_report, &r);
    assert_int_equal(r.calls, 0);
    int64_t next = ag_throttle_drain(t, NOW + 22, false, on_report, &r);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.addr, "a");
    assert_true(next > NOW + 22);
    (void)ag_throttle_drain(t, NOW + 23, true, on_report, &r);
    assert_int_equal(r.calls, 1);
    /* After the lock, a pending count is reported with the next failure. */
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 25, &v), AG_ETHROTTLED);
    assert_int_equal(v.report, 0);
    assert_int_equal(ag_throttle_fail(t, "a", NOW + 103, &v), 0);
    assert_int_equal(v.report, 1);
    ag_throttle_free(t);
}

static void test_throttle_lockout(void **state)
{
    (void)state;
    ag_throttle_t *t;
    assert_int_equal(ag_throttle_new(NULL, &t), 0); /* 10 failures / 60 s → 60 s lock */
    int retry = -1;
    for (int i = 0; i < 9; i++) {
        assert_int_equal(ag_throttle_check(t, "192.0.2.1", NOW + i, &retry), 0);
        assert_int_equal(tfail(t, "192.0.2.1", NOW + i, &retry), 0);
    }
    assert_int_equal(tfail(t, "192.0.2.1", NOW + 9, &retry), AG_ETHROTTLED);
    assert_int_equal(retry, 60);
    assert_int_equal(ag_throttle_check(t, "192.0.2.1", NOW + 20, &retry), AG_ETHROTTLED);
    assert_int_equal(retry, 49);
    assert_int_equal(ag_http_status(AG_ETHROTTLED), 429);
    /* Other addresses are unaffected. */
    assert_int_equal(ag_throttle_check(t, "192.0.2.2", NOW + 20, &retry), 0);
    assert_int_equal(ag_throttle_check(t, "2001:db8::1", NOW + 20, &retry), 0);
    /* Failing while locked keeps it locked (no extension). */
    assert_int_equal(tfail(t, "192.0.2.1", NOW + 30, &retry), AG_ETHROTTLED);
    assert_int_equal(retry, 39);
    /* The lock ends. */
    assert_int_equal(ag_throttle_check(t, "192.0.2.1", NOW + 69, &retry), 0);
    assert_int_equal(tfail(t, "192.0.2.1", NOW + 69, &retry), 0);
    ag_throttle_free(t);
}

static void test_throttle_window(void **state)
{
    (void)state;
    ag_throttle_config_t cfg = {3, 10, 100, 0};
    ag_throttle_t *t;
    assert_int_equal(ag_throttle_new(&cfg, &t), 0);
    int retry;
    /* 2 failures per window never lock. */
    for (int w = 0; w < 5; w++) {
        assert_int_equal(tfail(t, "a", NOW + w * 10, &retry), 0);
        assert_int_equal(tfail(t, "a", NOW + w * 10 + 1, &retry), 0);
    }
    assert_int_equal(ag_throttle_check(t, "a", NOW + 60, &retry), 0);
    assert_int_equal(tfail(t, "a", NOW + 60, &retry), 0);
    assert_int_equal(tfail(t, "a", NOW + 61, &retry), 0);
    assert_int_equal(tfail(t, "a", NOW + 62, &retry), AG_ETHROTTLED);
    assert_int_equal(retry, 100);
    assert_int_equal(ag_throttle_check(t, NULL, NOW, &retry), 0);
    ag_throttle_free(t);
}

static void test_throttle_bounded(void **state)
{
    (void)state;
    ag_throttle_config_t cfg = {2, 60, 300, 8};
    ag_throttle_t *t;
    assert_int_equal(ag_throttle_new(&cfg, &t), 0);
    int retry;
    assert_int_equal(tfail(t, "attacker", NOW, &retry), 0);
    assert_int_equal(tfail(t, "attacker", NOW, &retry), AG_ETHROTTLED);
    /* A flood of other addresses fills the 8-entry table but does not evict the lock. */
    for (int i = 0; i < 10000; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "198.51.100.%d", i);
        (void)tfail(t, addr, NOW + 1, &retry);
    }
    assert_int_equal(ag_throttle_check(t, "attacker", NOW + 2, &retry), AG_ETHROTTLED);
    assert_int_equal(retry, 298);
    ag_throttle_free(t);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_constant_time_compare),
        cmocka_unit_test(test_jwt_credentials),
        cmocka_unit_test(test_jwt_roles_and_cache),
        cmocka_unit_test(test_value_exists),
        cmocka_unit_test(test_lookup_hook),
        cmocka_unit_test(test_key_cache_revocation),
        cmocka_unit_test(test_key_cache_flood),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_throttle_lockout),
        cmocka_unit_test(test_throttle_aggregates),
        cmocka_unit_test(test_throttle_window),
        cmocka_unit_test(test_throttle_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
