/* The request decision of auth/ag_decide.h without a server: tenant scopes widened to declared
 * active tenants, inactive tenants hidden, minters bounding the tokens they minted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <jansson.h>

#include "auth/ag_decide.h"
#include "auth/ag_perm.h"
#include "auth/ag_principal.h"
#include "index/ag_filter.h"

static json_t *js(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    assert_non_null(v);
    return v;
}

/* A principal of kind user holding the permissions in perms_json. Caller unrefs. */
static ag_principal_t *holder(const char *perms_json)
{
    ag_principal_t *p = NULL;
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_USER, "u", &p), 0);
    json_t *arr = js(perms_json);
    ag_perm_list_t perms = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_perm_list_parse(arr, "permissions", &perms, &d), 0);
    assert_int_equal(ag_principal_add_perms(p, &perms), 0);
    ag_perm_list_release(&perms);
    json_decref(arr);
    return p;
}

static ag_request_action_t action(const char *text, const char *collection, const char *key)
{
    ag_action_decl_t decl;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_action_decl_parse(text, "/test", &decl, &d), 0);
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.collection = collection;
    a.tenant_key = key;
    return a;
}

/* Does a point with this payload pass the decision's restriction? */
static bool sees(const ag_decision_t *d, const char *payload_json)
{
    json_t *payload = js(payload_json);
    ag_point_id_t id = {0};
    ag_filter_subject_t s = {&id, payload, NULL, NULL};
    bool ok = ag_filter_match(d->restriction, &s);
    json_decref(payload);
    return ok;
}

static const char *TENANTS = "{\"acme\": {\"active\": true}, \"acme-old\": {\"active\": false},"
                             " \"beta\": {\"active\": true}}";

static void test_tenant_scope_widens_to_active_matches(void **state)
{
    (void)state;
    ag_principal_t *p =
        holder("[{\"action\": \"read:data\", \"collection\": \"c\", \"tenant\": \"acme*\"}]");
    json_t *tenants = js(TENANTS);
    ag_request_action_t a = action("read:data", "c", "tenant");
    ag_decision_t d;
    assert_int_equal(ag_decide_request(p, &a, true, tenants, &d), 0);
    assert_true(d.allowed);
    assert_non_null(d.restriction);
    assert_true(sees(&d, "{\"tenant\": \"acme\"}"));
    assert_false(sees(&d, "{\"tenant\": \"acme-old\"}")); /* inactive: hidden */
    assert_false(sees(&d, "{\"tenant\": \"beta\"}"));     /* not matched by the pattern */
    assert_false(sees(&d, "{}"));
    ag_decision_release(&d);

    /* Before any tenant is declared, the pattern itself is the row filter (a glob). */
    json_t *undeclared = js("{}");
    assert_int_equal(ag_decide_request(p, &a, true, undeclared, &d), 0);
    assert_true(d.allowed);
    assert_true(sees(&d, "{\"tenant\": \"acme-anything\"}"));
    assert_true(sees(&d, "{\"tenant\": \"acme\"}"));
    assert_false(sees(&d, "{\"tenant\": \"beta\"}"));
    ag_decision_release(&d);
    json_decref(undeclared);

    /* No declared tenant matches: nothing is granted (fail closed). */
    json_t *none = js("{\"zeta\": {\"active\": true}}");
    assert_int_equal(ag_decide_request(p, &a, true, none, &d), 0);
    assert_false(d.allowed);
    ag_decision_release(&d);
    /* Not a multi-tenant collection: a tenant-scoped permission grants nothing. */
    ag_request_action_t plain = action("read:data", "c", NULL);
    assert_int_equal(ag_decide_request(p, &plain, true, NULL, &d), 0);
    assert_false(d.allowed);
    ag_decision_release(&d);
    json_decref(none);
    json_decref(tenants);
    ag_principal_unref(p);
}

static void test_inactive_hidden_even_for_unrestricted(void **state)
{
    (void)state;
    ag_principal_t *p = holder("[{\"action\": \"manage:data\"}]");
    json_t *tenants = js(TENANTS);
    ag_request_action_t a = action("read:data", "c", "tenant");
    ag_decision_t d;
    assert_int_equal(ag_decide_request(p, &a, true, tenants, &d), 0);
    assert_true(d.allowed);
    assert_true(sees(&d, "{\"tenant\": \"beta\"}"));
    assert_false(sees(&d, "{\"tenant\": \"acme-old\"}"));
    ag_decision_release(&d);
    /* Schema actions are not data: no restriction at all. */
    ag_principal_t *admin = holder("[{\"action\": \"manage:collections\"}]");
    ag_request_action_t s = action("update:collections", "c", NULL);
    assert_int_equal(ag_decide_request(admin, &s, false, tenants, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    ag_decision_release(&d);
    ag_principal_unref(admin);
    json_decref(tenants);
    ag_principal_unref(p);
}

static void test_minter_bounds_token(void **state)
{
    (void)state;
    /* The token's own permissions are broad; its minter may read only collection pub, and only
     * rows with team = red. */
    ag_principal_t *tok = holder("[{\"action\": \"read:data\"}]");
    ag_principal_t *minter =
        holder("[{\"action\": \"read:data\", \"collection\": \"pub\", \"filter\": "
               "{\"must\": [{\"key\": \"team\", \"match\": {\"value\": \"red\"}}]}}]");
    ag_principal_set_bound(tok, minter); /* tok owns the reference now */
    ag_decision_t d;
    ag_request_action_t secret = action("read:data", "secret", NULL);
    assert_int_equal(ag_decide_request(tok, &secret, true, NULL, &d), 0);
    assert_false(d.allowed);
    assert_non_null(strstr(d.missing, "minter"));
    ag_decision_release(&d);
    assert_int_equal(ag_auth_decide(tok, &secret, &d), 0);
    assert_false(d.allowed);
    ag_decision_release(&d);

    ag_request_action_t pub = action("read:data", "pub", NULL);
    assert_int_equal(ag_decide_request(tok, &pub, true, NULL, &d), 0);
    assert_true(d.allowed);
    assert_true(sees(&d, "{\"team\": \"red\"}"));
    assert_false(sees(&d, "{\"team\": \"blue\"}")); /* the minter's row filter applies */
    ag_decision_release(&d);

    /* Anti-escalation counts the bound too. */
    json_t *arr = js("[{\"action\": \"read:data\", \"collection\": \"secret\"}]");
    ag_perm_list_t want = {0};
    ag_diag_t dg = {{0}};
    assert_int_equal(ag_perm_list_parse(arr, "permissions", &want, &dg), 0);
    assert_false(ag_principal_holds(tok, &want, NULL));
    ag_perm_list_release(&want);
    json_decref(arr);
    ag_principal_unref(tok);
}

static void test_fail_closed_on_bad_input(void **state)
{
    (void)state;
    ag_decision_t d;
    ag_request_action_t a = action("read:data", "c", NULL);
    assert_true(ag_decide_request(NULL, &a, true, NULL, &d) < 0);
    assert_false(d.allowed);
    assert_true(ag_auth_decide(NULL, &a, &d) < 0);
    assert_false(d.allowed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_scope_widens_to_active_matches),
        cmocka_unit_test(test_inactive_hidden_even_for_unrestricted),
        cmocka_unit_test(test_minter_bounds_token),
        cmocka_unit_test(test_fail_closed_on_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
