/* Unit tests: the management-plane store — API and management keys, their binding to a creator,
 * allowed_ips, invites (exactly once, also under concurrency), account settings, persistence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <ftw.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "auth/ag_auth.h"
#include "auth/ag_decide.h"
#include "auth/ag_keystore.h"

typedef struct fixture {
    char dir[256];
    char ks_dir[300];
    ag_keystore_t *ks;
    /* the user creator the minter hook knows: alive while user_alive */
    bool user_alive;
} fixture_t;

static int minter(void *ctx, const char *user_id, const char *key_id, ag_principal_t **out)
{
    fixture_t *f = ctx;
    *out = NULL;
    if (!f->user_alive || strcmp(user_id, "alice") != 0 || strcmp(key_id, "0123456789ab") != 0)
        return AG_EUNAUTH;
    int rc = ag_principal_new(AG_PRINCIPAL_USER, "alice", out);
    ag_perm_t p;
    ag_perm_init(&p, AG_VERB_READ, AG_RES_DATA);
    if (rc == 0)
        rc = ag_principal_add_perm(*out, &p);
    return rc;
}

static void reopen(fixture_t *f)
{
    ag_keystore_close(f->ks);
    f->ks = NULL;
    ag_diag_t d = {{0}};
    if (ag_keystore_open(f->ks_dir, &f->ks, &d) != 0)
        fail_msg("ag_keystore_open: %s", d.msg);
    ag_keystore_hooks_t h = {NULL, NULL, minter, f};
    ag_keystore_set_hooks(f->ks, &h);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/aegis-keystore-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->ks_dir, sizeof(f->ks_dir), "%s/mgmt", f->dir);
    f->user_alive = true;
    reopen(f);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    AG_UNUSED(sb);
    AG_UNUSED(flag);
    AG_UNUSED(ftw);
    return remove(path);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ag_keystore_close(f->ks);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int64_t now(void)
{
    return (int64_t)time(NULL);
}

/* Creates a key; returns the credential (caller frees) and its id. */
static char *make_key(fixture_t *f, int kind, const char *grant_text, const char *creator_text,
                      int64_t expires_at, const char *ips_text, char id[AG_MKEY_ID_LEN + 1])
{
    json_t *grant = json_loads(grant_text, 0, NULL);
    json_t *creator = json_loads(creator_text, 0, NULL);
    json_t *ips = ips_text ? json_loads(ips_text, 0, NULL) : NULL;
    char *key = NULL;
    json_t *rec = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_keystore_key_create(f->ks, kind, "test", grant, expires_at, ips, creator, &key,
                                    &rec, &d);
    if (rc)
        fail_msg("key_create: %d %s", rc, d.msg);
    snprintf(id, AG_MKEY_ID_LEN + 1, "%s", json_string_value(json_object_get(rec, "id")));
    assert_null(json_object_get(rec, "key_hash"));
    json_decref(grant);
    json_decref(creator);
    json_decref(ips);
    json_decref(rec);
    return key;
}

static int lookup(fixture_t *f, const char *key, ag_principal_t **out)
{
    return ag_keystore_lookup(f->ks, key, strlen(key), now(), out);
}

static bool allows(const ag_principal_t *p, unsigned verbs, int res)
{
    ag_request_action_t a = {.verbs = (uint8_t)verbs, .resource = (uint8_t)res};
    a.collection = "c";
    ag_decision_t d;
    bool ok = ag_auth_decide(p, &a, &d) == 0 && d.allowed;
    ag_decision_release(&d);
    return ok;
}

static void test_key_format_and_lookup(void **state)
{
    fixture_t *f = *state;
    char id[AG_MKEY_ID_LEN + 1];
    char *key = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}",
                         now() + 3600, NULL, id);
    assert_int_equal(strlen(key), AG_MKEY_LEN);
    assert_memory_equal(key, "ag_k", 4);
    char parsed[AG_MKEY_ID_LEN + 1];
    assert_int_equal(ag_mkey_parse(key, strlen(key), 0, parsed), 0);
    assert_string_equal(parsed, id);
    assert_int_equal(ag_mkey_parse(key, strlen(key), 'i', parsed), AG_ENOTFOUND);
    ag_principal_t *p = NULL;
    assert_int_equal(lookup(f, key, &p), 0);
    assert_int_equal(ag_principal_kind(p), AG_PRINCIPAL_API_KEY);
    assert_string_equal(ag_principal_id(p), id);
    assert_true(allows(p, AG_VERB_READ, AG_RES_DATA));
    assert_false(allows(p, AG_VERB_CREATE, AG_RES_DATA));
    ag_principal_unref(p);
    /* a typo fails the checksum; a wrong secret with a right checksum is refused too */
    key[20] = key[20] == 'A' ? 'B' : 'A';
    assert_int_equal(lookup(f, key, &p), AG_EUNAUTH);
    assert_int_equal(lookup(f, "ag_0123456789ab_x", &p), AG_ENOTFOUND);
    ag_keystore_secret_free(key);
}

static void test_expiry_rotate_delete_reopen(void **state)
{
    fixture_t *f = *state;
    char id[AG_MKEY_ID_LEN + 1], id2[AG_MKEY_ID_LEN + 1];
    ag_principal_t *p = NULL;
    char *expired = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}",
                             now() - 1, NULL, id2);
    assert_int_equal(lookup(f, expired, &p), AG_EUNAUTH);
    char *key = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}",
                         now() + 3600, NULL, id);
    reopen(f); /* hashes survive a restart; secrets are not stored */
    assert_int_equal(lookup(f, key, &p), 0);
    ag_principal_unref(p);
    json_t *root = json_pack("{s:s}", "kind", "root");
    char *key2 = NULL;
    json_t *rec = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(
        ag_keystore_key_rotate(f->ks, AG_KEYKIND_MANAGEMENT, id, root, &key2, &rec, &d),
        AG_ENOTFOUND);
    assert_int_equal(ag_keystore_key_rotate(f->ks, AG_KEYKIND_API, id, root, &key2, &rec, &d), 0);
    assert_int_equal(lookup(f, key, &p), AG_EUNAUTH);
    assert_int_equal(lookup(f, key2, &p), 0);
    ag_principal_unref(p);
    assert_int_equal(ag_keystore_key_delete(f->ks, AG_KEYKIND_API, id, &d), 0);
    assert_int_equal(ag_keystore_key_delete(f->ks, AG_KEYKIND_API, id, &d), AG_ENOTFOUND);
    assert_int_equal(lookup(f, key2, &p), AG_EUNAUTH);
    reopen(f);
    assert_int_equal(lookup(f, key2, &p), AG_EUNAUTH);
    json_t *list = ag_keystore_key_list(f->ks, AG_KEYKIND_API);
    assert_int_equal(json_array_size(list), 1); /* only the expired one is left */
    json_decref(list);
    json_decref(rec);
    json_decref(root);
    ag_keystore_secret_free(key);
    ag_keystore_secret_free(key2);
    ag_keystore_secret_free(expired);
}

/* --- through the authenticator's cache, wired as the server wires it (api/ag_guard.c) ------- */

static int cached_lookups;
static int counting_lookup(void *ctx, const char *cred, size_t len, int64_t t, ag_principal_t **out)
{
    cached_lookups++;
    return ag_keystore_lookup(ctx, cred, len, t, out);
}

static void key_used(void *ctx, const ag_principal_t *p, int64_t t)
{
    ag_keystore_key_used(ctx, ag_principal_id(p), t);
}

static void invalidate(void *ctx)
{
    ag_auth_invalidate(ctx);
}

static int auth_key(ag_auth_t *auth, const char *key, int64_t t)
{
    ag_principal_t *p = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_auth_authenticate(auth, key, NULL, t, &p, &d);
    ag_principal_unref(p);
    return rc;
}

static void test_cached_revocation(void **state)
{
    fixture_t *f = *state;
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    ag_auth_t *auth = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_auth_new(&cfg, &auth, &d), 0);
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = counting_lookup;
    hooks.lookup_ctx = f->ks;
    hooks.used = key_used;
    hooks.used_ctx = f->ks;
    ag_auth_set_hooks(auth, &hooks);
    ag_keystore_set_on_change(f->ks, invalidate, auth);
    int64_t t = now();
    char id[AG_MKEY_ID_LEN + 1], id2[AG_MKEY_ID_LEN + 1], id3[AG_MKEY_ID_LEN + 1];
    char *key = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}", t + 3600,
                         NULL, id);
    char creator[64];
    snprintf(creator, sizeof(creator), "{\"kind\":\"api_key\",\"id\":\"%s\"}", id);
    char *child = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", creator, t + 3600, NULL, id2);
    cached_lookups = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_key(auth, key, t), 0);
        assert_int_equal(auth_key(auth, child, t), 0);
    }
    assert_int_equal(cached_lookups, 2); /* the rest came from the cache */

    /* last_used still moves on cached uses. */
    assert_int_equal(auth_key(auth, key, t + 5), 0);
    json_t *rec = NULL;
    assert_int_equal(ag_keystore_key_json(f->ks, AG_KEYKIND_API, id, &rec), 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "last_used")), t + 5);
    json_decref(rec);

    /* Rotation: the old secret is refused on the very next request, the new one works. */
    json_t *root = json_pack("{s:s}", "kind", "root");
    char *key2 = NULL;
    assert_int_equal(ag_keystore_key_rotate(f->ks, AG_KEYKIND_API, id, root, &key2, &rec, &d), 0);
    json_decref(rec);
    assert_int_equal(auth_key(auth, key, t), AG_EUNAUTH);
    assert_int_equal(auth_key(auth, key2, t), 0);
    assert_int_equal(auth_key(auth, child, t), 0); /* its creator is still there */

    /* Deletion: the key and everything it created are refused on the very next request. */
    assert_int_equal(auth_key(auth, key2, t), 0);
    assert_int_equal(ag_keystore_key_delete(f->ks, AG_KEYKIND_API, id, &d), 0);
    assert_int_equal(auth_key(auth, key2, t), AG_EUNAUTH);
    assert_int_equal(auth_key(auth, child, t), AG_EUNAUTH);

    /* Expiry: a cached key is refused from the second it expires, with no change at all. */
    char *brief = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}", t + 100,
                           NULL, id3);
    assert_int_equal(auth_key(auth, brief, t), 0);
    int before = cached_lookups;
    assert_int_equal(auth_key(auth, brief, t + 99), 0);
    assert_int_equal(cached_lookups, before);
    assert_int_equal(auth_key(auth, brief, t + 100), AG_EUNAUTH);

    ag_keystore_set_on_change(f->ks, NULL, NULL);
    ag_auth_free(auth);
    json_decref(root);
    ag_keystore_secret_free(key);
    ag_keystore_secret_free(key2);
    ag_keystore_secret_free(child);
    ag_keystore_secret_free(brief);
}

static void test_bound_to_creator(void **state)
{
    fixture_t *f = *state;
    char id[AG_MKEY_ID_LEN + 1], id2[AG_MKEY_ID_LEN + 1];
    const char *alice = "{\"kind\":\"user\",\"id\":\"alice\",\"key_id\":\"0123456789ab\"}";
    /* "m" grants more than alice holds: the key does only what both allow */
    char *key = make_key(f, AG_KEYKIND_API, "{\"access\":\"m\"}", alice, now() + 3600, NULL, id);
    ag_principal_t *p = NULL;
    assert_int_equal(lookup(f, key, &p), 0);
    assert_true(allows(p, AG_VERB_READ, AG_RES_DATA));
    assert_false(allows(p, AG_VERB_DELETE, AG_RES_DATA));
    ag_principal_unref(p);
    /* a key created by that key is bound through it */
    char creator[64];
    snprintf(creator, sizeof(creator), "{\"kind\":\"api_key\",\"id\":\"%s\"}", id);
    char *child =
        make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", creator, now() + 3600, NULL, id2);
    assert_int_equal(lookup(f, child, &p), 0);
    ag_principal_unref(p);
    f->user_alive = false;
    assert_int_equal(lookup(f, key, &p), AG_EUNAUTH);
    assert_int_equal(lookup(f, child, &p), AG_EUNAUTH);
    f->user_alive = true;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_keystore_key_delete(f->ks, AG_KEYKIND_API, id, &d), 0);
    assert_int_equal(lookup(f, child, &p), AG_EUNAUTH);
    ag_keystore_secret_free(key);
    ag_keystore_secret_free(child);
}

static void test_management_keys_keep_only_management(void **state)
{
    fixture_t *f = *state;
    json_t *grant = json_loads("{\"permissions\":[{\"action\":\"read:users\"},"
                               "{\"action\":\"read:data\"},{\"action\":\"read:cluster_data\"}]}",
                               0, NULL);
    ag_principal_t *p = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_keystore_grant_principal(f->ks, AG_KEYKIND_MANAGEMENT, "m1", grant, &p, &d),
                     0);
    assert_int_equal(ag_principal_perms(p)->n, 2); /* read:data dropped, cluster_data kept */
    ag_principal_unref(p);
    json_decref(grant);
    grant = json_loads("{\"permissions\":[{\"action\":\"read:nonsense\"}]}", 0, NULL);
    assert_int_equal(ag_keystore_grant_principal(f->ks, AG_KEYKIND_API, NULL, grant, &p, &d),
                     AG_EINVAL);
    assert_non_null(strstr(d.msg, "permissions[0]"));
    json_decref(grant);
}

static void test_allowed_ips(void **state)
{
    fixture_t *f = *state;
    char id[AG_MKEY_ID_LEN + 1];
    char *key = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}", now() + 60,
                         "[\"10.1.0.0/16\",\"2001:db8::/32\",\"192.0.2.7\"]", id);
    assert_true(ag_keystore_addr_allowed(f->ks, id, "10.1.200.3"));
    assert_false(ag_keystore_addr_allowed(f->ks, id, "10.2.0.1"));
    assert_true(ag_keystore_addr_allowed(f->ks, id, "192.0.2.7"));
    assert_false(ag_keystore_addr_allowed(f->ks, id, "192.0.2.8"));
    assert_true(ag_keystore_addr_allowed(f->ks, id, "2001:db8:1::1"));
    assert_false(ag_keystore_addr_allowed(f->ks, id, "2001:db9::1"));
    assert_false(ag_keystore_addr_allowed(f->ks, id, "not an address"));
    assert_false(ag_keystore_addr_allowed(f->ks, "kffffffffff0", "10.1.0.1"));
    ag_diag_t d = {{0}};
    json_t *bad = json_loads("[\"10.0.0.0/8\",\"10.0.0.0/40\"]", 0, NULL);
    assert_int_equal(ag_keystore_check_ips(bad, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "allowed_ips[1]"));
    json_decref(bad);
    ag_keystore_secret_free(key);
}

typedef struct racer {
    fixture_t *f;
    const char *code;
    int rc;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    json_t *inv = NULL;
    r->rc = ag_keystore_invite_accept(r->f->ks, r->code, strlen(r->code), now(), &inv);
    json_decref(inv);
    return NULL;
}

static void test_invites_once(void **state)
{
    fixture_t *f = *state;
    json_t *roles = json_pack("[s]", "reader");
    json_t *root = json_pack("{s:s}", "kind", "root");
    char *code = NULL, *old = NULL;
    json_t *rec = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(
        ag_keystore_invite_create(f->ks, "bob", roles, now() + 60, root, &code, &rec, &d), 0);
    assert_memory_equal(code, "ag_i", 4);
    json_t *list = ag_keystore_invite_list(f->ks, now());
    assert_int_equal(json_array_size(list), 1);
    assert_null(json_object_get(json_array_get(list, 0), "code_hash"));
    json_decref(list);
    json_decref(rec);
    racer_t r[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (racer_t){f, code, 1};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    int wins = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc == 0)
            wins++;
        else
            assert_int_equal(r[i].rc, AG_EUNAUTH);
    }
    assert_int_equal(wins, 1);
    /* expired and revoked codes are refused like unknown ones */
    assert_int_equal(
        ag_keystore_invite_create(f->ks, "carol", roles, now() - 1, root, &old, &rec, &d), 0);
    json_t *inv = NULL;
    assert_int_equal(ag_keystore_invite_accept(f->ks, old, strlen(old), now(), &inv), AG_EUNAUTH);
    const char *id = json_string_value(json_object_get(rec, "id"));
    assert_int_equal(ag_keystore_invite_delete(f->ks, id, &d), 0);
    assert_int_equal(ag_keystore_invite_delete(f->ks, id, &d), AG_ENOTFOUND);
    assert_int_equal(ag_keystore_invite_accept(f->ks, "junk", 4, now(), &inv), AG_EUNAUTH);
    json_decref(rec);
    json_decref(roles);
    json_decref(root);
    ag_keystore_secret_free(code);
    ag_keystore_secret_free(old);
}

/* An expired invite can never be accepted; making a new one drops it. */
static void test_expired_invites_purged(void **state)
{
    fixture_t *f = *state;
    json_t *roles = json_array();
    json_t *root = json_pack("{s:s}", "kind", "root");
    char *c1 = NULL, *c2 = NULL;
    json_t *r1 = NULL, *r2 = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_keystore_invite_create(f->ks, "old", roles, now() - 5, root, &c1, &r1, &d),
                     0);
    assert_int_equal(ag_keystore_invite_create(f->ks, "new", roles, now() + 60, root, &c2, &r2, &d),
                     0);
    const char *id1 = json_string_value(json_object_get(r1, "id"));
    assert_int_equal(ag_keystore_invite_delete(f->ks, id1, &d), AG_ENOTFOUND);
    const char *id2 = json_string_value(json_object_get(r2, "id"));
    assert_int_equal(ag_keystore_invite_delete(f->ks, id2, &d), 0);
    json_decref(r1);
    json_decref(r2);
    json_decref(roles);
    json_decref(root);
    ag_keystore_secret_free(c1);
    ag_keystore_secret_free(c2);
}

static void test_account_settings(void **state)
{
    fixture_t *f = *state;
    ag_diag_t d = {{0}};
    json_t *patch = json_loads("{\"max_key_ttl_sec\":100,\"name\":\"acme\"}", 0, NULL);
    assert_int_equal(ag_keystore_account_patch(f->ks, patch, &d), 0);
    json_decref(patch);
    patch = json_loads("{\"max_key_tl\":1}", 0, NULL);
    assert_int_equal(ag_keystore_account_patch(f->ks, patch, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "max_key_tl"));
    json_decref(patch);
    reopen(f);
    ag_account_limits_t lim;
    ag_keystore_account_limits(f->ks, &lim);
    assert_int_equal(lim.max_key_ttl_s, 100);
    assert_int_equal(lim.default_key_ttl_s, 0);
    json_t *a = ag_keystore_account_json(f->ks);
    assert_string_equal(json_string_value(json_object_get(a, "name")), "acme");
    json_decref(a);
}

typedef struct reader {
    fixture_t *f;
    const char *key;
    _Atomic int *stop;
    int failures, done;
} reader_t;

static void *read_loop(void *arg)
{
    reader_t *r = arg;
    while (!atomic_load(r->stop)) {
        ag_principal_t *p = NULL;
        if (ag_keystore_lookup(r->f->ks, r->key, strlen(r->key), now(), &p) != 0)
            r->failures++;
        ag_principal_unref(p);
        r->done++;
    }
    return NULL;
}

/* Lookups run while other keys are created, rotated and deleted: none of them fails, and (under
 * the sanitizers) none reads freed memory. */
static void test_lookups_during_changes(void **state)
{
    fixture_t *f = *state;
    char id[AG_MKEY_ID_LEN + 1];
    char *stable = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}",
                            now() + 3600, "[\"10.0.0.0/8\"]", id);
    _Atomic int stop = 0;
    reader_t r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (reader_t){f, stable, &stop, 0, 0};
        pthread_create(&t[i], NULL, read_loop, &r[i]);
    }
    json_t *root = json_pack("{s:s}", "kind", "root");
    ag_diag_t d = {{0}};
    for (int i = 0; i < 40; i++) {
        char other[AG_MKEY_ID_LEN + 1];
        char *k = make_key(f, AG_KEYKIND_API, "{\"access\":\"r\"}", "{\"kind\":\"root\"}",
                           now() + 60, NULL, other);
        char *k2 = NULL;
        json_t *rec = NULL;
        assert_int_equal(ag_keystore_key_rotate(f->ks, AG_KEYKIND_API, other, root, &k2, &rec, &d),
                         0);
        assert_int_equal(ag_keystore_key_delete(f->ks, AG_KEYKIND_API, other, &d), 0);
        assert_true(ag_keystore_addr_allowed(f->ks, id, "10.9.8.7"));
        json_decref(rec);
        ag_keystore_secret_free(k);
        ag_keystore_secret_free(k2);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].failures, 0);
        assert_true(r[i].done > 0);
    }
    json_decref(root);
    ag_keystore_secret_free(stable);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_format_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_rotate_delete_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_creator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_management_keys_keep_only_management, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowed_ips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invites_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_invites_purged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookups_during_changes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
