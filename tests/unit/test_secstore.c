/* Unit tests: the security store — roles, database users, their keys, persistence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <ftw.h>
#include <sodium.h>
#include <unistd.h>

#include "auth/ag_auth.h"
#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_secstore.h"
#include "index/ag_filter.h"

typedef struct fixture {
    char dir[256];
    char sec[300];
    ag_secstore_t *s;
    int changes;
    ag_auth_t *auth; /* invalidated on every change, as the server does (api/ag_guard.c) */
} fixture_t;

static void on_change(void *ctx)
{
    fixture_t *f = ctx;
    f->changes++;
    if (f->auth)
        ag_auth_invalidate(f->auth);
}

static void reopen(fixture_t *f)
{
    ag_secstore_close(f->s);
    f->s = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_secstore_open(f->sec, &f->s, &d);
    if (rc)
        fail_msg("ag_secstore_open: %s", d.msg);
    ag_secstore_set_on_change(f->s, on_change, f);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/aegis-secstore-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->sec, sizeof(f->sec), "%s/security", f->dir);
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
    ag_secstore_close(f->s);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Creates role name from permission JSON text. */
static int put_role(fixture_t *f, const char *name, const char *perms_text, bool create)
{
    json_t *arr = json_loads(perms_text, 0, NULL);
    assert_non_null(arr);
    ag_perm_list_t perms = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_perm_list_parse(arr, "permissions", &perms, &d), 0);
    int rc = ag_secstore_role_put(f->s, name, arr, &perms, create, &d);
    ag_perm_list_release(&perms);
    json_decref(arr);
    return rc;
}

static char *new_user(fixture_t *f, const char *id, const char *roles_text)
{
    json_t *roles = roles_text ? json_loads(roles_text, 0, NULL) : NULL;
    char *key = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_secstore_user_create(f->s, id, roles, &key, &d);
    json_decref(roles);
    if (rc)
        fail_msg("user_create %s: %s", id, d.msg);
    return key;
}

static int lookup(fixture_t *f, const char *key, ag_principal_t **p)
{
    *p = NULL;
    return ag_secstore_lookup(f->s, key, strlen(key), 0, p);
}

static bool may(const ag_principal_t *p, unsigned verbs, int res, const char *collection)
{
    ag_action_decl_t decl = AG_ACT(verbs, res);
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.collection = collection;
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    bool ok = d.allowed;
    ag_decision_release(&d);
    return ok;
}

static const char *RW = "[{\"action\":\"manage:collections\",\"collection\":\"Target*\"},"
                        "{\"action\":\"write:data\",\"collection\":\"Target*\"}]";

static int cached_lookups;
static int counting_lookup(void *ctx, const char *cred, size_t len, int64_t t, ag_principal_t **out)
{
    cached_lookups++;
    return ag_secstore_lookup(ctx, cred, len, t, out);
}

/* ag_auth_authenticate with the user key; *p (may be NULL) gets the principal. */
static int auth_user(fixture_t *f, const char *key, ag_principal_t **p)
{
    ag_principal_t *q = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_auth_authenticate(f->auth, key, NULL, 1700000000, &q, &d);
    if (p)
        *p = q;
    else
        ag_principal_unref(q);
    return rc;
}

/* The authenticator's cache of accepted keys: every change the store makes reaches it before the
 * change returns, so the very next request sees it. */
static void test_cached_user_keys(void **state)
{
    fixture_t *f = *state;
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    ag_diag_t d = {{0}};
    assert_int_equal(ag_auth_new(&cfg, &f->auth, &d), 0);
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = counting_lookup;
    hooks.lookup_ctx = f->s;
    ag_auth_set_hooks(f->auth, &hooks);
    assert_int_equal(put_role(f, "rw_role", RW, true), 0);
    char *key = new_user(f, "alice", "[\"rw_role\"]");
    char *bob = new_user(f, "bob", "[\"rw_role\"]");
    cached_lookups = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(auth_user(f, key, NULL), 0);
    assert_int_equal(cached_lookups, 1);

    /* A role's permissions change: the next request holds the new ones. */
    ag_principal_t *p = NULL;
    assert_int_equal(auth_user(f, key, &p), 0);
    assert_true(may(p, AG_VERB_CREATE, AG_RES_DATA, "TargetX"));
    ag_principal_unref(p);
    assert_int_equal(put_role(f, "rw_role", "[{\"action\":\"read:data\"}]", false), 0);
    assert_int_equal(auth_user(f, key, &p), 0);
    assert_false(may(p, AG_VERB_CREATE, AG_RES_DATA, "TargetX"));
    ag_principal_unref(p);

    /* Deactivated, then active again. */
    assert_int_equal(ag_secstore_user_set_active(f->s, "alice", false, &d), 0);
    assert_int_equal(auth_user(f, key, NULL), AG_EUNAUTH);
    assert_int_equal(ag_secstore_user_set_active(f->s, "alice", true, &d), 0);
    assert_int_equal(auth_user(f, key, NULL), 0);

    /* Rotated: the old key is refused on the very next request. */
    char *key2 = NULL;
    assert_int_equal(ag_secstore_user_rotate(f->s, "alice", &key2, &d), 0);
    assert_int_equal(auth_user(f, key, NULL), AG_EUNAUTH);
    assert_int_equal(auth_user(f, key2, NULL), 0);

    /* Deleted. */
    assert_int_equal(auth_user(f, bob, NULL), 0);
    assert_int_equal(ag_secstore_user_delete(f->s, "bob", &d), 0);
    assert_int_equal(auth_user(f, bob, NULL), AG_EUNAUTH);

    ag_auth_free(f->auth);
    f->auth = NULL;
    ag_secstore_key_free(key);
    ag_secstore_key_free(key2);
    ag_secstore_key_free(bob);
}

static void test_create_and_lookup(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put_role(f, "rw_role", RW, true), 0);
    assert_int_equal(put_role(f, "rw_role", RW, true), AG_EEXIST);
    char *key = new_user(f, "alice", "[\"rw_role\"]");
    ag_principal_t *p;
    assert_int_equal(lookup(f, key, &p), 0);
    assert_int_equal(ag_principal_kind(p), AG_PRINCIPAL_USER);
    assert_string_equal(ag_principal_id(p), "alice");
    assert_int_equal(ag_principal_role_count(p), 1);
    assert_true(may(p, AG_VERB_CREATE, AG_RES_COLLECTIONS, "TargetX"));
    assert_true(may(p, AG_VERB_CREATE, AG_RES_DATA, "TargetX"));
    assert_false(may(p, AG_VERB_DELETE, AG_RES_DATA, "TargetX"));
    assert_false(may(p, AG_VERB_READ, AG_RES_DATA, "Other"));
    ag_principal_unref(p);

    json_t *u = NULL;
    assert_int_equal(ag_secstore_user_json(f->s, "alice", &u), 0);
    assert_true(json_is_true(json_object_get(u, "active")));
    assert_null(json_object_get(u, "key_hash"));
    json_decref(u);

    ag_diag_t d;
    char *dup = NULL;
    assert_int_equal(ag_secstore_user_create(f->s, "alice", NULL, &dup, &d), AG_EEXIST);
    json_t *unknown = json_loads("[\"nope\"]", 0, NULL);
    assert_int_equal(ag_secstore_user_create(f->s, "bob", unknown, &dup, &d), AG_EINVAL);
    json_decref(unknown);
    assert_int_equal(ag_secstore_user_create(f->s, "bad/id", NULL, &dup, &d), AG_EINVAL);
    assert_true(f->changes >= 2);
    ag_secstore_key_free(key);
}

static void test_key_format(void **state)
{
    fixture_t *f = *state;
    char *key = new_user(f, "k", NULL);
    size_t len = strlen(key);
    assert_int_equal(len, AG_USER_KEY_LEN);
    assert_memory_equal(key, "ag_", 3);
    assert_int_equal(key[3 + AG_KEY_ID_LEN], '_');
    char kid[AG_KEY_ID_LEN + 1];
    assert_int_equal(ag_user_key_parse(key, len, kid), 0);
    json_t *u = NULL;
    assert_int_equal(ag_secstore_user_json(f->s, "k", &u), 0);
    assert_string_equal(json_string_value(json_object_get(u, "key_id")), kid);
    json_decref(u);

    ag_principal_t *p;
    /* A typo anywhere fails the checksum: refused without looking anything up. */
    char typo[AG_USER_KEY_LEN + 1];
    memcpy(typo, key, len + 1);
    typo[20] = typo[20] == 'A' ? 'B' : 'A';
    assert_int_equal(ag_user_key_parse(typo, len, kid), AG_EUNAUTH);
    assert_int_equal(lookup(f, typo, &p), AG_EUNAUTH);
    assert_null(p);
    /* A forged secret with a correct checksum fails the keyed-hash comparison. */
    size_t body = AG_USER_KEY_LEN - AG_KEY_CHECK_LEN;
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), (const unsigned char *)typo, body, NULL, 0);
    char check[AG_KEY_CHECK_LEN + 1];
    sodium_bin2hex(check, sizeof(check), h, AG_KEY_CHECK_LEN / 2);
    memcpy(typo + body, check, AG_KEY_CHECK_LEN);
    assert_int_equal(ag_user_key_parse(typo, len, kid), 0);
    assert_int_equal(lookup(f, typo, &p), AG_EUNAUTH);
    /* Not shaped like a user key at all. */
    assert_int_equal(lookup(f, "some-other-credential", &p), AG_ENOTFOUND);
    assert_int_equal(lookup(f, "ag_root_abc", &p), AG_ENOTFOUND);
    key[len - 1] = '\0';
    assert_int_equal(lookup(f, key, &p), AG_ENOTFOUND);
    ag_secstore_key_free(key);
}

static void test_rotate_deactivate_delete(void **state)
{
    fixture_t *f = *state;
    char *old = new_user(f, "svc", "[\"viewer\"]");
    ag_principal_t *p;
    assert_int_equal(lookup(f, old, &p), 0);
    assert_true(may(p, AG_VERB_READ, AG_RES_DATA, "any"));
    ag_principal_unref(p);

    char *fresh = NULL;
    ag_diag_t d;
    assert_int_equal(ag_secstore_user_rotate(f->s, "svc", &fresh, &d), 0);
    assert_string_not_equal(old, fresh);
    assert_int_not_equal(lookup(f, old, &p), 0);
    assert_int_equal(lookup(f, fresh, &p), 0);
    ag_principal_unref(p);

    assert_int_equal(ag_secstore_user_set_active(f->s, "svc", false, &d), 0);
    assert_int_equal(lookup(f, fresh, &p), AG_EUNAUTH);
    assert_null(p);
    assert_int_equal(ag_secstore_user_set_active(f->s, "svc", true, &d), 0);
    assert_int_equal(lookup(f, fresh, &p), 0);
    ag_principal_unref(p);

    assert_int_equal(ag_secstore_user_delete(f->s, "svc", &d), 0);
    assert_int_equal(lookup(f, fresh, &p), AG_ENOTFOUND);
    assert_int_equal(ag_secstore_user_delete(f->s, "svc", &d), AG_ENOTFOUND);
    assert_int_equal(ag_secstore_user_rotate(f->s, "svc", &old, &d), AG_ENOTFOUND);
    ag_secstore_key_free(fresh);
}

static void test_role_changes_apply(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put_role(f, "analyst", "[{\"action\":\"read:data\"}]", true), 0);
    char *key = new_user(f, "ann", "[\"analyst\"]");
    ag_principal_t *p;
    assert_int_equal(lookup(f, key, &p), 0);
    assert_true(may(p, AG_VERB_READ, AG_RES_DATA, "x"));
    assert_false(may(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    ag_principal_unref(p);

    uint64_t gen = ag_secstore_generation(f->s);
    assert_int_equal(put_role(f, "analyst", "[{\"action\":\"write:data\"}]", false), 0);
    assert_true(ag_secstore_generation(f->s) > gen);
    assert_int_equal(lookup(f, key, &p), 0);
    assert_true(may(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    ag_principal_unref(p);

    ag_perm_list_t resolved = {0};
    assert_int_equal(ag_secstore_resolve_role(f->s, "analyst", &resolved), 0);
    assert_int_equal(resolved.n, 1);
    ag_perm_list_release(&resolved);
    assert_int_equal(ag_secstore_resolve_role(f->s, "root", &resolved), 0);
    ag_perm_list_release(&resolved);
    assert_int_equal(ag_secstore_resolve_role(f->s, "ghost", &resolved), AG_ENOTFOUND);

    ag_diag_t d;
    json_t *roles = json_loads("[\"viewer\"]", 0, NULL);
    assert_int_equal(ag_secstore_user_roles(f->s, "ann", roles, true, &d), 0);
    size_t holders = 0;
    assert_int_equal(ag_secstore_role_delete(f->s, "analyst", &holders, &d), 0);
    assert_int_equal(holders, 1);
    assert_false(ag_secstore_role_exists(f->s, "analyst"));
    json_t *u = NULL;
    assert_int_equal(ag_secstore_user_json(f->s, "ann", &u), 0);
    assert_int_equal(json_array_size(json_object_get(u, "roles")), 1);
    json_decref(u);
    assert_int_equal(lookup(f, key, &p), 0);
    assert_false(may(p, AG_VERB_CREATE, AG_RES_DATA, "x"));
    assert_true(may(p, AG_VERB_READ, AG_RES_DATA, "x"));
    ag_principal_unref(p);
    assert_int_equal(ag_secstore_user_roles(f->s, "ann", roles, false, &d), 0);
    assert_int_equal(lookup(f, key, &p), 0);
    assert_false(may(p, AG_VERB_READ, AG_RES_DATA, "x"));
    ag_principal_unref(p);
    json_decref(roles);

    /* Predefined roles are immutable and undeletable. */
    assert_int_equal(put_role(f, "root", "[]", false), AG_EFORBIDDEN);
    assert_int_equal(put_role(f, "viewer", "[]", true), AG_EEXIST);
    assert_int_equal(ag_secstore_role_delete(f->s, "viewer", NULL, &d), AG_EFORBIDDEN);
    assert_int_equal(ag_secstore_role_delete(f->s, "nope", NULL, &d), AG_ENOTFOUND);
    ag_secstore_key_free(key);
}

static bool file_contains(const char *path, const void *needle, size_t n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    bool found = false;
    for (size_t i = 0; i + n <= got && !found; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

static void test_hash_only_and_reopen(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put_role(f, "rw_role", RW, true), 0);
    char *key = new_user(f, "persist", "[\"rw_role\"]");
    char *copy = strdup(key);
    ag_secstore_key_free(key);
    char mdb[400];
    snprintf(mdb, sizeof(mdb), "%s/data.mdb", f->sec);
    /* Neither the key, its secret text, nor the secret's bytes are on disk. */
    const char *secret = copy + 4 + AG_KEY_ID_LEN;
    uint8_t raw[32];
    size_t n = 0;
    assert_int_equal(ag_b64url_decode(secret, AG_KEY_SECRET_LEN, raw, sizeof(raw), &n), 0);
    assert_false(file_contains(mdb, copy, strlen(copy)));
    assert_false(file_contains(mdb, secret, 16));
    assert_false(file_contains(mdb, raw, 16));
    /* The key id (not a secret) is. */
    assert_true(file_contains(mdb, copy + 3, AG_KEY_ID_LEN));

    reopen(f);
    ag_principal_t *p;
    assert_int_equal(lookup(f, copy, &p), 0);
    assert_string_equal(ag_principal_id(p), "persist");
    assert_true(may(p, AG_VERB_UPDATE, AG_RES_COLLECTIONS, "TargetY"));
    ag_principal_unref(p);
    json_t *role = NULL;
    assert_int_equal(ag_secstore_role_json(f->s, "rw_role", &role), 0);
    assert_int_equal(json_array_size(json_object_get(role, "permissions")), 2);
    assert_int_equal(json_array_size(json_object_get(role, "users")), 1);
    json_decref(role);
    json_t *names = ag_secstore_role_names(f->s);
    assert_int_equal(json_array_size(names), 3);
    json_decref(names);

    /* Deactivation and deletion persist too. */
    ag_diag_t d;
    assert_int_equal(ag_secstore_user_set_active(f->s, "persist", false, &d), 0);
    reopen(f);
    assert_int_equal(lookup(f, copy, &p), AG_EUNAUTH);
    assert_int_equal(ag_secstore_user_delete(f->s, "persist", &d), 0);
    reopen(f);
    assert_int_equal(lookup(f, copy, &p), AG_ENOTFOUND);
    json_t *ids = ag_secstore_user_ids(f->s);
    assert_int_equal(json_array_size(ids), 0);
    json_decref(ids);
    sodium_memzero(copy, strlen(copy));
    free(copy);
}

/* A multi-verb action (write = create + update) is covered verb by verb; with row filters the
 * action is allowed on the rows every verb allows (the AND of the per-verb restrictions). */
static void test_split_verbs(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put_role(f, "split",
                              "[{\"action\":\"create:data\",\"collection\":\"T*\"},"
                              "{\"action\":\"update:data\",\"collection\":\"T*\"}]",
                              true),
                     0);
    assert_int_equal(put_role(f, "split-filtered",
                              "[{\"action\":\"create:data\",\"filter\":{\"must\":[{\"key\":\"a\","
                              "\"match\":{\"value\":1}}]}},{\"action\":\"update:data\"}]",
                              true),
                     0);
    char *k1 = new_user(f, "s1", "[\"split\"]");
    char *k2 = new_user(f, "s2", "[\"split-filtered\"]");
    ag_principal_t *p;
    assert_int_equal(lookup(f, k1, &p), 0);
    assert_true(may(p, AG_VERB_WRITE, AG_RES_POINTS, "Tx"));
    assert_false(may(p, AG_VERB_WRITE, AG_RES_POINTS, "Ux"));
    assert_false(may(p, AG_VERB_CREATE | AG_VERB_DELETE, AG_RES_DATA, "Tx"));
    ag_principal_unref(p);
    assert_int_equal(lookup(f, k2, &p), 0);
    assert_true(may(p, AG_VERB_UPDATE, AG_RES_DATA, "any"));
    {
        ag_action_decl_t decl = AG_ACT(AG_VERB_WRITE, AG_RES_POINTS);
        ag_request_action_t a;
        ag_request_action_init(&a, &decl);
        a.collection = "any";
        ag_decision_t d;
        assert_int_equal(ag_auth_decide(p, &a, &d), 0);
        assert_true(d.allowed);
        /* Only the rows create may touch: a = 1. */
        json_t *in = json_pack("{s:i}", "a", 1), *out = json_pack("{s:i}", "a", 2);
        ag_point_id_t id = {0};
        ag_filter_subject_t s_in = {&id, in, NULL, NULL}, s_out = {&id, out, NULL, NULL};
        assert_non_null(d.restriction);
        assert_true(ag_filter_match(d.restriction, &s_in));
        assert_false(ag_filter_match(d.restriction, &s_out));
        json_decref(in);
        json_decref(out);
        ag_decision_release(&d);
    }
    ag_principal_unref(p);
    ag_secstore_key_free(k1);
    ag_secstore_key_free(k2);
}

static void test_many_users(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(put_role(f, "r", "[{\"action\":\"read:data\"}]", true), 0);
    char *keys[300];
    for (int i = 0; i < 300; i++) {
        char id[32];
        snprintf(id, sizeof(id), "user-%d", i);
        keys[i] = new_user(f, id, "[\"r\"]");
    }
    ag_diag_t d;
    for (int i = 0; i < 300; i += 2) {
        char id[32];
        snprintf(id, sizeof(id), "user-%d", i);
        assert_int_equal(ag_secstore_user_delete(f->s, id, &d), 0);
    }
    for (int i = 0; i < 300; i++) {
        ag_principal_t *p;
        int rc = lookup(f, keys[i], &p);
        assert_int_equal(rc, i % 2 ? 0 : AG_ENOTFOUND);
        ag_principal_unref(p);
        ag_secstore_key_free(keys[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_user_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_deactivate_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_changes_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_only_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_verbs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_users, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
