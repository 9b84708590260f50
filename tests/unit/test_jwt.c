/* Unit tests: base64url, the JWT HS256 verifier (attack suite), claims → permissions, minting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_principal.h"
#include "index/ag_filter.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define ALT_SECRET "rotation-secret-rotation-secret-rotation"
#define OTHER_SECRET "another-secret-another-secret-another-x"
#define NOW 1700000000
#define LEEWAY 30

static const char *const secrets[] = {SECRET, ALT_SECRET};

/* --- token construction (independent of ag_jwt_mint) --------------------------------------- */

static char *b64(const char *s, size_t n)
{
    char *out = malloc(ag_b64url_encoded_len(n) + 1);
    assert_non_null(out);
    ag_b64url_encode((const uint8_t *)s, n, out);
    return out;
}

/* header.payload.signature over raw JSON texts, signed with secret (NULL: signature "AAAA"). */
static char *token_raw(const char *header, const char *payload, const char *secret)
{
    char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    assert_non_null(signing);
    snprintf(signing, n, "%s.%s", h, p);
    uint8_t mac[32];
    crypto_auth_hmacsha256_state st;
    const char *key = secret ? secret : "unused";
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing, strlen(signing));
    crypto_auth_hmacsha256_final(&st, mac);
    char *sig = secret ? b64((const char *)mac, 32) : strdup("AAAA");
    size_t tn = n + strlen(sig) + 1;
    char *tok = malloc(tn);
    assert_non_null(tok);
    snprintf(tok, tn, "%s.%s", signing, sig);
    free(h);
    free(p);
    free(signing);
    free(sig);
    return tok;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static int verify(const char *tok, json_t **claims, ag_diag_t *d)
{
    memset(d, 0, sizeof(*d));
    return ag_jwt_verify(tok, strlen(tok), secrets, 2, NOW, LEEWAY, claims, d);
}

static void accepted(const char *tok)
{
    json_t *c = NULL;
    ag_diag_t d;
    int rc = verify(tok, &c, &d);
    if (rc != 0)
        fail_msg("token refused (%s): %s", d.msg, tok);
    assert_non_null(c);
    json_decref(c);
}

static void refused(const char *tok, const char *needle)
{
    json_t *c = (json_t *)0x1;
    ag_diag_t d;
    int rc = verify(tok, &c, &d);
    if (rc != AG_EUNAUTH)
        fail_msg("token accepted (rc %d): %s", rc, tok);
    assert_null(c);
    if (needle && !strstr(d.msg, needle))
        fail_msg("diag '%s' does not mention '%s'", d.msg, needle);
}

static void refused_raw(const char *header, const char *payload, const char *secret,
                        const char *needle)
{
    char *t = token_raw(header, payload, secret);
    refused(t, needle);
    free(t);
}

static void accepted_raw(const char *header, const char *payload)
{
    char *t = token_raw(header, payload, SECRET);
    accepted(t);
    free(t);
}

/* Verified principal for claims JSON text (signed with SECRET). */
static ag_principal_t *principal_for(const char *payload, ag_role_resolve_fn resolve, void *ctx)
{
    char *t = token_raw(HS256, payload, SECRET);
    json_t *c = NULL;
    ag_diag_t d;
    int rc = verify(t, &c, &d);
    if (rc != 0)
        fail_msg("verify failed: %s", d.msg);
    free(t);
    ag_principal_t *p = NULL;
    rc = ag_jwt_principal(c, resolve, ctx, &p, &d);
    json_decref(c);
    if (rc != 0)
        fail_msg("claims refused: %s: %s", payload, d.msg);
    assert_int_equal(ag_principal_kind(p), AG_PRINCIPAL_TOKEN);
    return p;
}

static void claims_refused(const char *payload, const char *needle)
{
    json_error_t err;
    json_t *c = json_loads(payload, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(c);
    ag_principal_t *p = (ag_principal_t *)0x1;
    ag_diag_t d = {{0}};
    int rc = ag_jwt_principal(c, NULL, NULL, &p, &d);
    json_decref(c);
    if (rc != AG_EUNAUTH)
        fail_msg("claims accepted (rc %d): %s", rc, payload);
    assert_null(p);
    if (needle && !strstr(d.msg, needle))
        fail_msg("diag '%s' does not mention '%s'", d.msg, needle);
}

static bool can(const ag_principal_t *p, unsigned verbs, int res, const char *collection)
{
    ag_request_action_t a;
    memset(&a, 0, sizeof(a));
    a.verbs = (uint8_t)verbs;
    a.resource = (uint8_t)res;
    a.collection = collection;
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    bool ok = d.allowed;
    ag_decision_release(&d);
    return ok;
}

static bool passes(const ag_filter_t *f, const char *payload)
{
    json_error_t err;
    json_t *pl = json_loads(payload, 0, &err);
    assert_non_null(pl);
    ag_filter_subject_t s = {NULL, pl, NULL, NULL};
    bool r = ag_filter_match(f, &s);
    json_decref(pl);
    return r;
}

/* --- base64url ----------------------------------------------------------------------------- */

static void test_b64url(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t n;
    const char *vectors[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < AG_ARRAY_LEN(vectors); i++) {
        char enc[32];
        ag_b64url_encode((const uint8_t *)vectors[i][0], strlen(vectors[i][0]), enc);
        assert_string_equal(enc, vectors[i][1]);
        assert_int_equal(ag_b64url_encoded_len(strlen(vectors[i][0])), strlen(vectors[i][1]));
        assert_int_equal(ag_b64url_decode(enc, strlen(enc), out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(vectors[i][0]));
        assert_memory_equal(out, vectors[i][0], n);
    }
    const char *bad[] = {"Zg==", "Zg=", "Z",    "Zm9v+A",  "Zm9v/A", "Zm 9v",  "Zm9v\n",
                         "Zh",   "Zm9", "Zm8=", "Zm9vYmF", "Zm9vYh", "Zm\x80v"};
    /* "Zh" and "Zm9" carry non-zero unused bits; "Zm9vYmF" and "Zm9vYh" likewise. */
    for (size_t i = 0; i < AG_ARRAY_LEN(bad); i++)
        if (ag_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n) != AG_EINVAL)
            fail_msg("accepted bad base64url '%s'", bad[i]);
    /* Capacity is respected. */
    assert_int_equal(ag_b64url_decode("Zm9vYmFy", 8, out, 5, &n), AG_EINVAL);
}

/* --- attack suite -------------------------------------------------------------------------- */

static void test_jwt_valid_and_alt_secret(void **state)
{
    (void)state;
    accepted_raw(HS256, "{\"access\":\"r\"}");
    accepted_raw("{\"alg\":\"HS256\"}", "{\"access\":\"r\"}");                /* typ optional */
    accepted_raw("{\"alg\":\"HS256\",\"kid\":\"k1\"}", "{\"access\":\"r\"}"); /* unknown ok */
    char *t = token_raw(HS256, "{\"access\":\"r\"}", ALT_SECRET);
    accepted(t);
    free(t);
    /* A too-short secret in the list is never used. */
    const char *weak[] = {"short"};
    t = token_raw(HS256, "{\"access\":\"r\"}", "short");
    json_t *c = NULL;
    assert_int_equal(ag_jwt_verify(t, strlen(t), weak, 1, NOW, LEEWAY, &c, NULL), AG_EUNAUTH);
    free(t);
}

static void test_jwt_algorithms(void **state)
{
    (void)state;
    const char *payload = "{\"access\":\"m\"}";
    /* alg none, unsigned and signed; other algorithms even when the HS256 MAC is right. */
    refused_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, NULL);
    refused_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, SECRET, "HS256");
    char *t = token_raw("{\"alg\":\"none\"}", payload, SECRET);
    *(strrchr(t, '.') + 1) = '\0'; /* "h.p." — empty signature */
    refused(t, NULL);
    free(t);
    refused_raw("{\"alg\":\"None\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"HS384\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"ES256\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"hs256\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"HS256 \"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":[\"HS256\"]}", payload, SECRET, "HS256");
    refused_raw("{\"typ\":\"JWT\"}", payload, SECRET, "HS256");
    refused_raw("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", payload, SECRET, "typ");
    refused_raw("{\"alg\":\"HS256\",\"typ\":1}", payload, SECRET, "typ");
    refused_raw("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload, SECRET, "crit");
    refused_raw("{\"alg\":\"HS256\",\"alg\":\"none\"}", payload, SECRET, "header");
    refused_raw("{\"alg\":\"none\",\"alg\":\"HS256\"}", payload, SECRET, "header");
    refused_raw("[\"HS256\"]", payload, SECRET, "header");
    accepted_raw("{\"alg\":\"HS256\"} ", payload); /* trailing whitespace is valid JSON */
    refused_raw("{\"alg\":\"HS256\"}x", payload, SECRET, "header");
    refused_raw("", payload, SECRET, NULL);
}

static void test_jwt_signature(void **state)
{
    (void)state;
    refused_raw(HS256, "{\"access\":\"m\"}", OTHER_SECRET, "signature");
    refused_raw(HS256, "{\"access\":\"m\"}", SECRET "x", "signature");

    /* Tampered payload: swap in another payload under the original signature. */
    char *good = token_raw(HS256, "{\"access\":\"r\"}", SECRET);
    char *evil = token_raw(HS256, "{\"access\":\"m\"}", SECRET);
    char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    char *e1 = strchr(evil, '.'), *e2 = strrchr(evil, '.');
    char forged[512];
    snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(d1 - good), good, (int)(e2 - e1), e1, d2);
    refused(forged, "signature");
    /* Tampered header (same alg, extra key) under the original signature. */
    const char *h2_json = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"x\":1}";
    char *h2 = b64(h2_json, strlen(h2_json));
    snprintf(forged, sizeof(forged), "%s%s", h2, d1);
    refused(forged, "signature");
    free(h2);

    /* Truncations and extensions. */
    size_t n = strlen(good);
    char buf[512];
    snprintf(buf, sizeof(buf), "%.*s", (int)(n - 1), good);
    refused(buf, NULL);
    snprintf(buf, sizeof(buf), "%.*s", (int)(n - 4), good);
    refused(buf, NULL);
    snprintf(buf, sizeof(buf), "%.*s", (int)(d2 - good), good); /* two segments */
    refused(buf, "three segments");
    snprintf(buf, sizeof(buf), "%.*s.", (int)(d2 - good), good); /* empty signature */
    refused(buf, NULL);
    snprintf(buf, sizeof(buf), "%sA", good);
    refused(buf, NULL);
    snprintf(buf, sizeof(buf), "%s.", good);
    refused(buf, "three segments");
    snprintf(buf, sizeof(buf), "%s.%s", good, d2 + 1);
    refused(buf, "three segments");
    snprintf(buf, sizeof(buf), ".%s", good);
    refused(buf, NULL);
    refused("..", NULL);
    refused(".", NULL);
    refused("", "empty");
    refused("abc", "three segments");

    /* Non-canonical signature: the last character's two unused bits set — same MAC bytes. */
    snprintf(buf, sizeof(buf), "%s", good);
    char *last = buf + strlen(buf) - 1;
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(alpha, *last) - alpha);
    assert_int_equal(v & 3, 0);
    *last = alpha[v | 1];
    refused(buf, "signature");
    free(good);
    free(evil);
}

static void test_jwt_encoding(void **state)
{
    (void)state;
    char *good = token_raw(HS256, "{\"access\":\"r\",\"sub\":\"ab?>\"}", SECRET);
    char buf[512];
    /* Padding, standard-alphabet characters and whitespace anywhere. */
    const char *inserts[] = {"=", "+", "/", " ", "\t", "\n", "%", "\\"};
    size_t n = strlen(good);
    for (size_t i = 0; i < AG_ARRAY_LEN(inserts); i++) {
        for (size_t at = 0; at <= n; at += 7) {
            snprintf(buf, sizeof(buf), "%.*s%s%s", (int)at, good, inserts[i], good + at);
            refused(buf, NULL);
        }
    }
    free(good);
    /* A payload whose encoding needs '-' or '_' decodes fine; '+' or '/' in its place not. */
    good = token_raw(HS256, "{\"access\":\"r\",\"sub\":\"\\u00ff\\u00fe?>>\"}", SECRET);
    accepted(good);
    for (char *c = good; *c; c++) {
        if (*c == '-')
            *c = '+';
        else if (*c == '_')
            *c = '/';
    }
    refused(good, NULL);
    free(good);

    /* Over-long tokens are refused before any work; a long valid token under the cap is fine. */
    char *pad = malloc(AG_JWT_MAX_LEN);
    assert_non_null(pad);
    memset(pad, 'x', 5800);
    pad[5800] = '\0';
    char *payload = malloc(6000);
    snprintf(payload, 6000, "{\"access\":\"r\",\"note\":\"%s\"}", pad);
    char *t = token_raw(HS256, payload, SECRET);
    assert_true(strlen(t) <= AG_JWT_MAX_LEN);
    accepted(t);
    free(t);
    memset(pad, 'x', 6200);
    pad[6200] = '\0';
    free(payload);
    payload = malloc(6400);
    snprintf(payload, 6400, "{\"access\":\"r\",\"note\":\"%s\"}", pad);
    t = token_raw(HS256, payload, SECRET);
    assert_true(strlen(t) > AG_JWT_MAX_LEN);
    refused(t, "longer than");
    free(t);
    free(payload);
    free(pad);

    /* Payload JSON: duplicates, trailing garbage, non-objects, NUL, bad UTF-8. */
    refused_raw(HS256, "{\"access\":\"r\",\"access\":\"m\"}", SECRET, "payload");
    refused_raw(HS256,
                "{\"access\":[{\"collection\":\"a\",\"collection\":\"b\",\"access\":\"r\"}]}",
                SECRET, "payload");
    refused_raw(HS256, "{\"access\":\"r\"}{}", SECRET, "payload");
    refused_raw(HS256, "[\"access\"]", SECRET, "payload");
    refused_raw(HS256, "\"r\"", SECRET, "payload");
    refused_raw(HS256, "{\"sub\":\"a\\u0000b\",\"access\":\"r\"}", SECRET, "payload");
    refused_raw(HS256, "{\"sub\":\"\xff\",\"access\":\"r\"}", SECRET, "payload");
    refused_raw(HS256, "{\"exp\":NaN}", SECRET, "payload");
    refused_raw(HS256, "", SECRET, NULL);
}

static void test_jwt_times(void **state)
{
    (void)state;
    char p[128];
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"exp\":%d}", NOW - LEEWAY - 1);
    refused_raw(HS256, p, SECRET, "expired");
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"exp\":%d}", NOW - LEEWAY);
    refused_raw(HS256, p, SECRET, "expired");
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"exp\":%d}", NOW - LEEWAY + 1);
    accepted_raw(HS256, p);
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"exp\":%d}", NOW + 3600);
    accepted_raw(HS256, p);
    accepted_raw(HS256, "{\"access\":\"r\",\"exp\":9223372036854775807}");
    refused_raw(HS256, "{\"access\":\"r\",\"exp\":-9223372036854775807}", SECRET, "expired");
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"nbf\":%d}", NOW + LEEWAY + 1);
    refused_raw(HS256, p, SECRET, "nbf");
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"nbf\":%d}", NOW + LEEWAY - 1);
    accepted_raw(HS256, p);
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"iat\":%d}", NOW + 100);
    refused_raw(HS256, p, SECRET, "iat");
    snprintf(p, sizeof(p), "{\"access\":\"r\",\"iat\":%d}", NOW - 100);
    accepted_raw(HS256, p);
    /* Wrong types. */
    refused_raw(HS256, "{\"access\":\"r\",\"exp\":1.9e12}", SECRET, "exp must be an integer");
    refused_raw(HS256, "{\"access\":\"r\",\"exp\":\"1900000000\"}", SECRET, "exp");
    refused_raw(HS256, "{\"access\":\"r\",\"exp\":null}", SECRET, "exp");
    refused_raw(HS256, "{\"access\":\"r\",\"exp\":true}", SECRET, "exp");
    refused_raw(HS256, "{\"access\":\"r\",\"nbf\":1.5}", SECRET, "nbf");
    refused_raw(HS256, "{\"access\":\"r\",\"iat\":[1]}", SECRET, "iat");
}

/* --- claims -------------------------------------------------------------------------------- */

static void test_claims_wrong_types(void **state)
{
    (void)state;
    claims_refused("{\"access\":5}", "access");
    claims_refused("{\"access\":\"rw\"}", "access");
    claims_refused("{\"access\":\"M\"}", "access");
    claims_refused("{\"access\":{}}", "access");
    claims_refused("{\"access\":null}", "access");
    claims_refused("{\"access\":[\"r\"]}", "access[0]");
    claims_refused("{\"access\":[{\"collection\":1,\"access\":\"r\"}]}", "access[0].collection");
    claims_refused("{\"access\":[{\"collection\":\"\",\"access\":\"r\"}]}", "collection");
    claims_refused("{\"access\":[{\"access\":\"r\"}]}", "collection");
    claims_refused("{\"access\":[{\"collection\":\"c\"}]}", "access[0].access");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"m\"}]}", "access[0].access");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"rww\"}]}", "access");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\",\"x\":1}]}", "'x'");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\",\"payload\":5}]}",
                   "payload");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\",\"payload\":{}}]}",
                   "payload");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\","
                   "\"payload\":{\"k\":{\"a\":1}}}]}",
                   "payload.k");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\","
                   "\"payload\":{\"k\":1.5}}]}",
                   "payload.k");
    claims_refused("{\"access\":[{\"collection\":\"c\",\"access\":\"r\","
                   "\"payload\":{\"k\":null}}]}",
                   "payload.k");
    claims_refused("{\"roles\":\"admin\"}", "roles");
    claims_refused("{\"roles\":[1]}", "roles[0]");
    claims_refused("{\"roles\":[\"bad name\"]}", "roles[0]");
    claims_refused("{\"roles\":[\"\"]}", "roles[0]");
    claims_refused("{\"sub\":5,\"access\":\"r\"}", "sub");
    claims_refused("{\"subject\":[],\"access\":\"r\"}", "sub");
    claims_refused("{\"exp\":1.5,\"access\":\"r\"}", "exp");
    claims_refused("{\"access\":\"r\",\"value_exists\":[]}", "value_exists");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\"}}", "matches");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\",\"matches\":[]}}",
                   "matches");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":1,"
                   "\"matches\":[{\"key\":\"a\",\"value\":1}]}}",
                   "collection");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\","
                   "\"matches\":[{\"key\":\"a\"}]}}",
                   "matches[0]");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\","
                   "\"matches\":[{\"key\":\"a\",\"value\":{}}]}}",
                   "matches[0]");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\","
                   "\"matches\":[{\"key\":\"a\",\"value\":1,\"x\":2}]}}",
                   "matches[0]");
    claims_refused("{\"access\":\"r\",\"value_exists\":{\"collection\":\"u\",\"x\":1,"
                   "\"matches\":[{\"key\":\"a\",\"value\":1}]}}",
                   "'x'");
}

static void test_claims_missing_access(void **state)
{
    (void)state;
    ag_principal_t *p = principal_for("{\"sub\":\"nobody\"}", NULL, NULL);
    assert_int_equal(ag_principal_perms(p)->n, 0);
    assert_false(can(p, AG_VERB_READ, AG_RES_COLLECTIONS, "c"));
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "c"));
    assert_false(can(p, AG_VERB_MANAGE, AG_RES_COLLECTIONS, "c"));
    assert_true(can(p, AG_VERB_READ, AG_RES_PROFILE, NULL));
    assert_string_equal(ag_principal_sub(p), "nobody");
    ag_principal_unref(p);
    p = principal_for("{\"access\":[]}", NULL, NULL);
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "c"));
    ag_principal_unref(p);
}

static void test_claims_global(void **state)
{
    (void)state;
    ag_principal_t *r = principal_for("{\"access\":\"r\",\"subject\":\"reader\"}", NULL, NULL);
    assert_string_equal(ag_principal_sub(r), "reader");
    assert_true(can(r, AG_VERB_READ, AG_RES_COLLECTIONS, "any"));
    assert_true(can(r, AG_VERB_READ, AG_RES_DATA, "any"));
    assert_true(can(r, AG_VERB_READ, AG_RES_SNAPSHOTS, "any"));
    assert_false(can(r, AG_VERB_CREATE, AG_RES_POINTS, "any"));
    assert_false(can(r, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "any"));
    assert_false(can(r, AG_VERB_READ, AG_RES_USERS, NULL));
    ag_principal_unref(r);

    ag_principal_t *m = principal_for("{\"access\":\"m\",\"exp\":1700003600}", NULL, NULL);
    assert_int_equal(ag_principal_expiry(m), 1700003600);
    assert_true(can(m, AG_VERB_CREATE, AG_RES_COLLECTIONS, "new"));
    assert_true(can(m, AG_VERB_DELETE, AG_RES_COLLECTIONS, "old"));
    assert_true(can(m, AG_VERB_UPDATE, AG_RES_COLLECTIONS, "x"));
    assert_true(can(m, AG_VERB_MANAGE, AG_RES_DATA, "x"));
    assert_true(can(m, AG_VERB_CREATE, AG_RES_SNAPSHOTS, NULL));
    assert_false(can(m, AG_VERB_READ, AG_RES_USERS, NULL));
    assert_false(can(m, AG_VERB_CREATE, AG_RES_ROLES, NULL));
    assert_false(can(m, AG_VERB_READ, AG_RES_AUDIT, NULL));
    assert_false(can(m, AG_VERB_CREATE, AG_RES_API_KEYS, NULL));
    ag_principal_unref(m);
}

static void test_claims_collection_levels(void **state)
{
    (void)state;
    ag_principal_t *p = principal_for(
        "{\"access\":[{\"collection\":\"ro\",\"access\":\"r\"},"
        "{\"collection\":\"rw\",\"access\":\"rw\"},{\"collection\":\"prw\",\"access\":\"prw\"},"
        "{\"collection\":\"star*\",\"access\":\"rw\"}]}",
        NULL, NULL);
    const char *cs[] = {"ro", "rw", "prw"};
    for (size_t i = 0; i < 3; i++) {
        /* Everyone reads info and data; nobody creates, deletes or PATCHes collections. */
        assert_true(can(p, AG_VERB_READ, AG_RES_COLLECTIONS, cs[i]));
        assert_true(can(p, AG_VERB_READ, AG_RES_DATA, cs[i]));
        assert_false(can(p, AG_VERB_CREATE, AG_RES_COLLECTIONS, cs[i]));
        assert_false(can(p, AG_VERB_DELETE, AG_RES_COLLECTIONS, cs[i]));
        assert_false(can(p, AG_VERB_UPDATE, AG_RES_COLLECTIONS, cs[i]));
        assert_false(can(p, AG_VERB_UPDATE, AG_RES_SNAPSHOTS, cs[i])); /* upload/recover */
    }
    /* r: nothing else. */
    assert_false(can(p, AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "ro"));
    assert_false(can(p, AG_VERB_UPDATE, AG_RES_DATA, "ro"));
    assert_false(can(p, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "ro"));
    assert_false(can(p, AG_VERB_READ, AG_RES_SNAPSHOTS, "ro"));
    /* rw: point and payload writes, payload indexes, snapshots. */
    assert_true(can(p, AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "rw"));
    assert_true(can(p, AG_VERB_DELETE, AG_RES_POINTS, "rw"));
    assert_true(can(p, AG_VERB_UPDATE, AG_RES_DATA, "rw"));
    assert_true(can(p, AG_VERB_DELETE, AG_RES_DATA, "rw"));
    assert_true(can(p, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "rw"));
    assert_true(can(p, AG_VERB_CREATE, AG_RES_SNAPSHOTS, "rw"));
    assert_true(can(p, AG_VERB_DELETE, AG_RES_SNAPSHOTS, "rw"));
    assert_true(can(p, AG_VERB_READ, AG_RES_SNAPSHOTS, "rw"));
    /* prw: every point operation, payload edits included; no indexes, no snapshots. */
    assert_true(can(p, AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "prw"));
    assert_true(can(p, AG_VERB_DELETE, AG_RES_POINTS, "prw"));
    assert_true(can(p, AG_VERB_UPDATE, AG_RES_DATA, "prw")); /* payload edits */
    assert_true(can(p, AG_VERB_DELETE, AG_RES_DATA, "prw"));
    assert_false(can(p, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "prw"));
    assert_false(can(p, AG_VERB_READ, AG_RES_SNAPSHOTS, "prw"));
    /* Collection names in tokens are exact, not patterns; other collections are out. */
    assert_true(can(p, AG_VERB_READ, AG_RES_DATA, "star*"));
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "starfish"));
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "other"));
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "RO"));
    ag_principal_unref(p);
}

static void test_claims_payload_restriction(void **state)
{
    (void)state;
    ag_principal_t *p = principal_for("{\"access\":[{\"collection\":\"docs\",\"access\":\"rw\","
                                      "\"payload\":{\"user_id\":\"user_123456\",\"level\":3}}]}",
                                      NULL, NULL);
    ag_request_action_t a;
    memset(&a, 0, sizeof(a));
    a.verbs = AG_VERB_READ;
    a.resource = AG_RES_DATA;
    a.collection = "docs";
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    assert_true(d.allowed);
    assert_non_null(d.restriction);
    assert_true(passes(d.restriction, "{\"user_id\":\"user_123456\",\"level\":3}"));
    assert_true(passes(d.restriction, "{\"user_id\":\"user_123456\",\"level\":3,\"x\":1}"));
    assert_false(passes(d.restriction, "{\"user_id\":\"user_123456\",\"level\":4}"));
    assert_false(passes(d.restriction, "{\"user_id\":\"user_000000\",\"level\":3}"));
    assert_false(passes(d.restriction, "{\"level\":3}"));
    assert_false(passes(d.restriction, "{}"));
    ag_decision_release(&d);
    /* Writes carry the same restriction. */
    a.verbs = AG_VERB_CREATE | AG_VERB_UPDATE;
    a.resource = AG_RES_POINTS;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    assert_true(d.allowed);
    assert_non_null(d.restriction);
    assert_false(passes(d.restriction, "{\"user_id\":\"x\",\"level\":3}"));
    ag_decision_release(&d);
    /* Restricted rw gets no schema changes and no whole-collection snapshots. */
    assert_false(can(p, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "docs"));
    assert_false(can(p, AG_VERB_READ, AG_RES_SNAPSHOTS, "docs"));
    /* Collection info is not row data: unrestricted. */
    a.verbs = AG_VERB_READ;
    a.resource = AG_RES_COLLECTIONS;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    ag_principal_unref(p);

    /* Two entries for one collection: union of their scopes. */
    p = principal_for("{\"access\":[{\"collection\":\"c\",\"access\":\"r\","
                      "\"payload\":{\"team\":\"red\"}},{\"collection\":\"c\",\"access\":\"r\","
                      "\"payload\":{\"team\":\"blue\"}}]}",
                      NULL, NULL);
    a.resource = AG_RES_DATA;
    a.collection = "c";
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    assert_true(passes(d.restriction, "{\"team\":\"red\"}"));
    assert_true(passes(d.restriction, "{\"team\":\"blue\"}"));
    assert_false(passes(d.restriction, "{\"team\":\"green\"}"));
    ag_decision_release(&d);
    ag_principal_unref(p);
}

static int resolve_calls;
static int test_resolver(void *ctx, const char *name, ag_perm_list_t *out)
{
    (void)ctx;
    resolve_calls++;
    if (strcmp(name, "editors") == 0) {
        ag_perm_t p;
        ag_perm_init(&p, AG_VERB_WRITE, AG_RES_DATA);
        return ag_perm_list_push(out, &p);
    }
    if (strcmp(name, "broken") == 0)
        return AG_ESTORAGE;
    return AG_ENOTFOUND;
}

static void test_claims_roles(void **state)
{
    (void)state;
    ag_principal_t *p = principal_for("{\"roles\":[\"viewer\",\"ghost\"]}", NULL, NULL);
    assert_int_equal(ag_principal_role_count(p), 2);
    assert_string_equal(ag_principal_role(p, 1), "ghost");
    assert_true(can(p, AG_VERB_READ, AG_RES_DATA, "x"));
    assert_false(can(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    ag_principal_unref(p);

    p = principal_for("{\"roles\":[\"root\"]}", NULL, NULL);
    assert_true(can(p, AG_VERB_MANAGE, AG_RES_USERS, NULL));
    ag_principal_unref(p);

    resolve_calls = 0;
    p = principal_for("{\"roles\":[\"editors\",\"nobody\"]}", test_resolver, NULL);
    assert_int_equal(resolve_calls, 2);
    assert_true(can(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    assert_false(can(p, AG_VERB_DELETE, AG_RES_DATA, "x"));
    ag_principal_unref(p);

    /* Without a resolver a custom role grants nothing. */
    p = principal_for("{\"roles\":[\"editors\"]}", NULL, NULL);
    assert_false(can(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    ag_principal_unref(p);

    /* A resolver error fails the token. */
    json_t *c = json_pack("{s:[s]}", "roles", "broken");
    assert_int_equal(ag_jwt_principal(c, test_resolver, NULL, &p, NULL), AG_ESTORAGE);
    assert_null(p);
    json_decref(c);
}

static void test_claims_value_exists(void **state)
{
    (void)state;
    ag_principal_t *p = principal_for(
        "{\"exp\":1690995200000,\"value_exists\":{\"collection\":\"users\",\"matches\":["
        "{\"key\":\"username\",\"value\":\"john\"},{\"key\":\"role\",\"value\":\"developer\"}]}}",
        NULL, NULL);
    const ag_value_exists_t *ve = ag_principal_value_exists(p);
    assert_non_null(ve);
    assert_string_equal(ve->collection, "users");
    assert_int_equal(json_array_size(ve->matches), 2);
    assert_true(passes(ve->filter, "{\"username\":\"john\",\"role\":\"developer\"}"));
    assert_false(passes(ve->filter, "{\"username\":\"john\",\"role\":\"revoked\"}"));
    assert_false(passes(ve->filter, "{\"username\":\"jane\",\"role\":\"developer\"}"));
    /* No access claim: grants nothing even with value_exists. */
    assert_false(can(p, AG_VERB_READ, AG_RES_DATA, "users"));
    ag_principal_unref(p);
}

/* --- minting ------------------------------------------------------------------------------- */

static void test_mint(void **state)
{
    (void)state;
    json_t *claims = json_pack("{s:s, s:I, s:[{s:s, s:s}]}", "sub", "svc", "exp",
                               (json_int_t)NOW + 60, "access", "collection", "c", "access", "rw");
    char *tok = NULL;
    assert_int_equal(ag_jwt_mint(SECRET, claims, &tok), 0);
    assert_non_null(tok);
    assert_int_equal(strncmp(tok, "eyJ", 3), 0);
    json_t *back = NULL;
    ag_diag_t d;
    assert_int_equal(verify(tok, &back, &d), 0);
    assert_true(json_equal(back, claims));
    json_decref(back);
    /* The minted header is exactly HS256/JWT. */
    uint8_t hdr[64];
    size_t n;
    assert_int_equal(ag_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), hdr, sizeof(hdr), &n),
                     0);
    assert_int_equal(n, strlen(HS256));
    assert_memory_equal(hdr, HS256, n);
    free(tok);

    /* Signed by a secret the server does not have → refused. */
    assert_int_equal(ag_jwt_mint(OTHER_SECRET, claims, &tok), 0);
    refused(tok, "signature");
    free(tok);

    assert_int_equal(ag_jwt_mint("short", claims, &tok), AG_EINVAL);
    assert_null(tok);
    json_t *arr = json_array();
    assert_int_equal(ag_jwt_mint(SECRET, arr, &tok), AG_EINVAL);
    json_decref(arr);
    json_t *big = json_object();
    char *pad = calloc(1, 9000);
    memset(pad, 'y', 8999);
    json_object_set_new(big, "pad", json_string(pad));
    assert_int_equal(ag_jwt_mint(SECRET, big, &tok), AG_ETOOBIG);
    free(pad);
    json_decref(big);
    json_decref(claims);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_jwt_valid_and_alt_secret),
        cmocka_unit_test(test_jwt_algorithms),
        cmocka_unit_test(test_jwt_signature),
        cmocka_unit_test(test_jwt_encoding),
        cmocka_unit_test(test_jwt_times),
        cmocka_unit_test(test_claims_wrong_types),
        cmocka_unit_test(test_claims_missing_access),
        cmocka_unit_test(test_claims_global),
        cmocka_unit_test(test_claims_collection_levels),
        cmocka_unit_test(test_claims_payload_restriction),
        cmocka_unit_test(test_claims_roles),
        cmocka_unit_test(test_claims_value_exists),
        cmocka_unit_test(test_mint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
