/* Unit tests: scope globs, permission parsing, the decision, anti-escalation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "ag_glob.h"
#include "auth/ag_decide.h"
#include "auth/ag_perm.h"
#include "auth/ag_principal.h"
#include "index/ag_filter.h"

/* --- helpers ------------------------------------------------------------------------------- */

static ag_glob_t glob(const char *pattern)
{
    ag_glob_t g;
    assert_int_equal(ag_glob_compile(pattern, strlen(pattern), &g), 0);
    return g;
}

static bool gm(const char *pattern, const char *s)
{
    ag_glob_t g = glob(pattern);
    bool r = ag_glob_match_str(&g, s);
    ag_glob_release(&g);
    return r;
}

static bool gcovers(const char *outer, const char *inner)
{
    ag_glob_t o = glob(outer), i = glob(inner);
    bool r = ag_glob_covers(&o, &i);
    ag_glob_release(&o);
    ag_glob_release(&i);
    return r;
}

static json_t *js(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!v)
        fail_msg("bad test JSON: %s: %s", text, err.text);
    return v;
}

static int parse(const char *text, ag_perm_t *p, ag_diag_t *d)
{
    json_t *v = js(text);
    memset(d, 0, sizeof(*d));
    int rc = ag_perm_parse(v, "p", p, d);
    json_decref(v);
    return rc;
}

static void parse_fails(const char *text, const char *needle)
{
    ag_perm_t p;
    ag_diag_t d;
    assert_int_equal(parse(text, &p, &d), AG_EINVAL);
    if (!strstr(d.msg, needle))
        fail_msg("diag for %s is '%s', expected it to mention '%s'", text, d.msg, needle);
}

/* A user principal with the permissions in the JSON array text. */
static ag_principal_t *user_with(const char *perms_json)
{
    ag_principal_t *p;
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_USER, "u1", &p), 0);
    json_t *arr = js(perms_json);
    ag_perm_list_t list = {0};
    ag_diag_t d = {{0}};
    int rc = ag_perm_list_parse(arr, "permissions", &list, &d);
    if (rc != 0)
        fail_msg("%s: %s", perms_json, d.msg);
    json_decref(arr);
    assert_int_equal(ag_principal_add_perms(p, &list), 0);
    ag_perm_list_release(&list);
    return p;
}

static ag_principal_t *builtin(int kind, const ag_perm_list_t *role)
{
    ag_principal_t *p;
    assert_int_equal(ag_principal_new(kind, "b", &p), 0);
    assert_int_equal(ag_principal_add_perms(p, role), 0);
    return p;
}

static ag_request_action_t act(unsigned verbs, int res, const char *collection)
{
    ag_request_action_t a;
    ag_action_decl_t d = AG_ACT(0, 0);
    d.verbs = (uint8_t)verbs;
    d.resource = (uint8_t)res;
    ag_request_action_init(&a, &d);
    a.collection = collection;
    return a;
}

static bool allowed(const ag_principal_t *p, ag_request_action_t a)
{
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(p, &a, &d), 0);
    bool ok = d.allowed;
    if (ok)
        assert_null(d.missing);
    else
        assert_non_null(d.missing);
    ag_decision_release(&d);
    return ok;
}

static bool payload_passes(const ag_filter_t *f, const char *payload)
{
    json_t *pl = js(payload);
    ag_filter_subject_t s = {NULL, pl, NULL, NULL};
    bool r = ag_filter_match(f, &s);
    json_decref(pl);
    return r;
}

/* --- globs --------------------------------------------------------------------------------- */

static void test_glob_basic(void **state)
{
    (void)state;
    assert_true(gm("abc", "abc"));
    assert_false(gm("abc", "abcd"));
    assert_false(gm("abc", "ab"));
    assert_false(gm("abc", "ABC")); /* case-sensitive */
    assert_true(gm("Cust*", "Cust"));
    assert_true(gm("Cust*", "Customers"));
    assert_false(gm("Cust*", "customers"));
    assert_false(gm("Cust*", "xCust"));
    assert_true(gm("*-prod", "eu-prod"));
    assert_true(gm("*-prod", "-prod"));
    assert_false(gm("*-prod", "eu-prod2"));
    assert_true(gm("*", ""));
    assert_true(gm("**", "anything"));
    assert_true(gm("a*b*c", "abc"));
    assert_true(gm("a*b*c", "aXbYc"));
    assert_true(gm("a*b*c", "acbc"));
    assert_false(gm("a*b*c", "acb"));
    assert_false(gm("ab*ba", "aba")); /* prefix and suffix may not overlap */
    assert_true(gm("ab*ba", "abba"));
    assert_false(gm("*aa*aa*", "aaa"));
    assert_true(gm("*aa*aa*", "aaaa"));
    assert_true(gm("*abab*", "xabaabab"));
    assert_false(gm("*abab*", "xabaaba"));
    /* Nothing but '*' is special: no regex, no '?' or character classes. */
    assert_false(gm("o|*", "anything"));
    assert_true(gm("o|*", "o|x"));
    assert_false(gm("a?c", "abc"));
    assert_false(gm("[ab]", "a"));
    assert_false(gm(".*", "abc"));
    assert_true(gm(".*", ".abc"));
    assert_true(gm("a\\*", "a\\b")); /* backslash is an ordinary character */

    ag_glob_t g;
    assert_int_equal(ag_glob_compile("", 0, &g), AG_EINVAL);
    assert_int_equal(ag_glob_compile("a\0b", 3, &g), AG_EINVAL);
    char big[AG_GLOB_MAX_LEN + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(ag_glob_compile(big, AG_GLOB_MAX_LEN + 1, &g), AG_EINVAL);
    assert_int_equal(ag_glob_compile(big, AG_GLOB_MAX_LEN, &g), 0);
    ag_glob_release(&g);

    /* Literal (JWT collection names): '*' is an ordinary character. */
    assert_int_equal(ag_glob_compile_literal("a*", 2, &g), 0);
    assert_true(ag_glob_match_str(&g, "a*"));
    assert_false(ag_glob_match_str(&g, "ab"));
    ag_glob_release(&g);
}

static void test_glob_pathological(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    char *s = malloc(n + 2);
    assert_non_null(s);
    memset(s, 'a', n);
    s[n] = '\0';
    const char *patterns[] = {"*a*a*a*a*b", "*a*a*a*a*b*", "*aaaaaaaaaaaaaaaaaaab*",
                              "a*a*a*a*a*a*a*a*a*a*a*a*ab", "*aab*aab*"};
    clock_t t0 = clock();
    for (int rep = 0; rep < 5; rep++)
        for (size_t i = 0; i < AG_ARRAY_LEN(patterns); i++)
            assert_false(gm(patterns[i], s));
    /* Hundreds of stars against a megabyte: still one pass. */
    char many[AG_GLOB_MAX_LEN + 1];
    size_t m = 0;
    while (m + 2 < 500) {
        many[m++] = '*';
        many[m++] = 'a';
    }
    many[m++] = '*';
    many[m++] = 'b';
    many[m] = '\0';
    assert_false(gm(many, s));
    s[n] = 'b';
    s[n + 1] = '\0';
    assert_true(gm(many, s));
    assert_true(gm("*a*a*a*a*b", s));
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    /* A backtracking matcher needs hours here; a linear one a few milliseconds. */
    assert_true(secs < 5.0);
    free(s);
}

static void test_glob_covers(void **state)
{
    (void)state;
    assert_true(gcovers("*", "Cust*"));
    assert_true(gcovers("*", "x"));
    assert_true(gcovers("Cust*", "Customer*"));
    assert_true(gcovers("Cust*", "Cust"));
    assert_true(gcovers("Cust*", "Cust*"));
    assert_false(gcovers("Cust*", "Cu*"));
    assert_false(gcovers("Cust*", "*"));
    assert_false(gcovers("x", "*"));
    assert_true(gcovers("*-prod", "eu-*-prod"));
    assert_false(gcovers("a*", "*a"));
    assert_false(gcovers("*ab*", "*a*b*"));
    assert_true(gcovers("*a*b*", "*ab*"));
    assert_true(gcovers("x", "x"));
    assert_false(gcovers("x", "x*"));
    ag_glob_t lit, pat = glob("a*");
    assert_int_equal(ag_glob_compile_literal("a*b", 3, &lit), 0);
    assert_true(ag_glob_covers(&pat, &lit)); /* the name "a*b" starts with "a" */
    assert_false(ag_glob_covers(&lit, &pat));
    ag_glob_release(&lit);
    ag_glob_release(&pat);
}

/* --- parsing ------------------------------------------------------------------------------- */

static void test_perm_parse_ok(void **state)
{
    (void)state;
    ag_perm_t p;
    ag_diag_t d;
    assert_int_equal(parse("{\"action\":\"read:data\",\"collection\":\"Cust*\","
                           "\"filter\":{\"must\":[{\"key\":\"t\",\"match\":{\"value\":\"a\"}}]}}",
                           &p, &d),
                     0);
    assert_int_equal(p.verbs, AG_VERB_READ);
    assert_int_equal(p.resource, AG_RES_DATA);
    assert_int_equal(p.scope[AG_PSCOPE_COLLECTION].kind, AG_GLOB_PATTERN);
    assert_int_equal(p.scope[AG_PSCOPE_TENANT].kind, AG_GLOB_ANY);
    assert_non_null(p.filter);
    ag_perm_release(&p);

    assert_int_equal(parse("{\"action\":\"write:collections\"}", &p, &d), 0);
    assert_int_equal(p.verbs, AG_VERB_READ | AG_VERB_CREATE | AG_VERB_UPDATE);
    ag_perm_release(&p);
    assert_int_equal(parse("{\"action\":\"delete:users\",\"user\":\"bob\"}", &p, &d), 0);
    assert_int_equal(p.verbs, AG_VERB_READ | AG_VERB_DELETE); /* delete implies read */
    assert_int_equal(p.scope[AG_PSCOPE_USER].kind, AG_GLOB_LITERAL);
    ag_perm_release(&p);
    assert_int_equal(parse("{\"action\":\"manage:roles\",\"role\":\"team-*\"}", &p, &d), 0);
    assert_int_equal(p.verbs, AG_VERB_MANAGE);
    ag_perm_release(&p);
    assert_int_equal(parse("{\"action\":\"write:cluster_data\"}", &p, &d), 0);
    ag_perm_release(&p);
    assert_int_equal(parse("{\"action\":\"read:nodes\",\"verbosity\":\"minimal\"}", &p, &d), 0);
    ag_perm_release(&p);
    assert_int_equal(
        parse("{\"action\":\"create:tenants\",\"collection\":\"c\",\"tenant\":\"t*\"}", &p, &d), 0);
    ag_perm_release(&p);

    /* Every resource of docs/PERMISSIONS.md parses. */
    const char *names[] = {"collections",
                           "data",
                           "tenants",
                           "snapshots",
                           "backups",
                           "backup_schedules",
                           "clusters",
                           "nodes",
                           "roles",
                           "users",
                           "api_keys",
                           "management_keys",
                           "invites",
                           "account",
                           "profile",
                           "audit",
                           "hybrid_cloud_environments",
                           "payment_information"};
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"action\":\"manage:%s\"}", names[i]);
        assert_int_equal(parse(buf, &p, &d), 0);
        assert_string_equal(ag_resource_name(p.resource), names[i]);
        ag_perm_release(&p);
    }
    /* the singular name from before the Qdrant Cloud catalog still parses, as clusters */
    assert_int_equal(parse("{\"action\":\"read:cluster\"}", &p, &d), 0);
    assert_string_equal(ag_resource_name(p.resource), "clusters");
    ag_perm_release(&p);
}

static void test_perm_parse_errors(void **state)
{
    (void)state;
    parse_fails("[]", "expected a permission object");
    parse_fails("{}", "p.action: missing");
    parse_fails("{\"action\":7}", "p.action");
    parse_fails("{\"action\":\"read\"}", "p.action");
    parse_fails("{\"action\":\"read:data:x\"}", "p.action");
    parse_fails("{\"action\":\"destroy:data\"}", "unknown verb 'destroy'");
    parse_fails("{\"action\":\"read:datas\"}", "unknown resource 'datas'");
    parse_fails("{\"action\":\"Read:data\"}", "unknown verb");
    parse_fails("{\"action\":\"read:points\"}", "unknown resource 'points'"); /* internal */
    parse_fails("{\"action\":\"update:payload_indexes\"}", "unknown resource");
    parse_fails("{\"action\":\"manage:*\"}", "unknown resource");
    parse_fails("{\"action\":\"read:data\",\"colection\":\"x\"}", "unknown field 'colection'");
    parse_fails("{\"action\":\"read:roles\",\"collection\":\"x\"}", "p.collection: not a scope");
    parse_fails("{\"action\":\"read:collections\",\"tenant\":\"x\"}", "p.tenant: not a scope");
    parse_fails("{\"action\":\"read:data\",\"collection\":5}", "p.collection: expected a string");
    parse_fails("{\"action\":\"read:data\",\"collection\":\"\"}", "p.collection");
    parse_fails("{\"action\":\"read:collections\",\"filter\":{}}", "p.filter: only data");
    parse_fails("{\"action\":\"read:data\",\"filter\":[]}", "p.filter");
    parse_fails("{\"action\":\"read:data\",\"filter\":{\"must\":[{\"bogus\":1}]}}", "p.filter");
    parse_fails("{\"action\":\"create:cluster_data\"}", "cluster_data takes only read or write");
    parse_fails("{\"action\":\"manage:cluster_data\"}", "cluster_data");

    /* The list parser names the element and leaves the list unchanged on failure. */
    json_t *arr = js("[{\"action\":\"read:data\"},{\"action\":\"read:nope\"}]");
    ag_perm_list_t list = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_perm_list_parse(arr, NULL, &list, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "permissions[1].action"));
    assert_int_equal(list.n, 0);
    json_decref(arr);
    ag_perm_list_release(&list);
}

static void test_perm_render_roundtrip(void **state)
{
    (void)state;
    const char *src = "[{\"action\":\"read:data\",\"collection\":\"Cust*\",\"tenant\":\"t\","
                      "\"filter\":{\"must\":[{\"key\":\"k\",\"match\":{\"value\":1}}]}},"
                      "{\"action\":\"write:collections\",\"collection\":\"x\"},"
                      "{\"action\":\"manage:users\"},{\"action\":\"delete:roles\"}]";
    json_t *arr = js(src);
    ag_perm_list_t list = {0};
    assert_int_equal(ag_perm_list_parse(arr, NULL, &list, NULL), 0);
    json_t *out = json_array();
    for (size_t i = 0; i < list.n; i++)
        assert_int_equal(ag_perm_to_json(&list.items[i], out), 0);
    assert_true(json_equal(arr, out));
    json_decref(out);
    json_decref(arr);

    /* A mask no single word names is split. */
    ag_perm_t p;
    ag_perm_init(&p, AG_VERB_CREATE | AG_VERB_DELETE, AG_RES_SNAPSHOTS);
    out = json_array();
    assert_int_equal(ag_perm_to_json(&p, out), 0);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "action")),
                        "create:snapshots");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "action")),
                        "delete:snapshots");
    json_decref(out);
    ag_perm_list_release(&list);
}

/* --- actions and decisions ----------------------------------------------------------------- */

static void test_action_decl(void **state)
{
    (void)state;
    ag_action_decl_t ok = AG_ACT(AG_VERB_READ, AG_RES_COLLECTIONS);
    ag_action_decl_t list = AG_ACT_LIST(AG_VERB_READ, AG_RES_COLLECTIONS);
    ag_action_decl_t pub = AG_ACT_PUBLIC;
    ag_action_decl_t sub = AG_ACT(AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES);
    ag_action_decl_t none = {0};
    ag_action_decl_t no_res = AG_ACT(AG_VERB_READ, AG_RES_NONE);
    ag_action_decl_t shorthand = AG_ACT(AG_VERB_READ, AG_RES_CLUSTER_DATA);
    ag_action_decl_t any = AG_ACT(AG_VERB_READ, AG_RES_ANY);
    ag_action_decl_t bad_verb = AG_ACT(0x10, AG_RES_DATA);
    ag_action_decl_t pub_plus = {AG_VERB_READ, AG_RES_DATA, AG_ACTF_PUBLIC};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_action_decl_check(&ok, "GET /collections/{c}", &d), 0);
    assert_int_equal(ag_action_decl_check(&list, "GET /collections", &d), 0);
    assert_int_equal(ag_action_decl_check(&pub, "GET /healthz", &d), 0);
    assert_int_equal(ag_action_decl_check(&sub, "PUT /collections/{c}/index", &d), 0);
    assert_int_equal(ag_action_decl_check(&none, "GET /oops", &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "GET /oops"));
    assert_int_equal(ag_action_decl_check(&no_res, "r", &d), AG_ECONFIG);
    assert_int_equal(ag_action_decl_check(&shorthand, "r", &d), AG_ECONFIG);
    assert_int_equal(ag_action_decl_check(&any, "r", &d), AG_ECONFIG);
    assert_int_equal(ag_action_decl_check(&bad_verb, "r", &d), AG_ECONFIG);
    assert_int_equal(ag_action_decl_check(&pub_plus, "r", &d), AG_ECONFIG);

    /* The route table's string form. */
    ag_action_decl_t out;
    assert_int_equal(ag_action_decl_parse("write:data", "PUT /points", &out, &d), 0);
    assert_int_equal(out.verbs, AG_VERB_CREATE | AG_VERB_UPDATE);
    assert_int_equal(out.resource, AG_RES_DATA);
    assert_int_equal(ag_action_decl_parse("update:payload_indexes", "r", &out, &d), 0);
    assert_int_equal(out.resource, AG_RES_PAYLOAD_INDEXES);
    assert_int_equal(ag_action_decl_parse("delete:points", "r", &out, &d), 0);
    assert_int_equal(out.resource, AG_RES_POINTS);
    assert_int_equal(ag_action_decl_parse("read:public", "GET /healthz", &out, &d), 0);
    assert_int_equal(out.flags, AG_ACTF_PUBLIC);
    assert_int_equal(ag_action_decl_check(&out, "GET /healthz", &d), 0);
    const char *bad[] = {NULL,          "",
                         "read",        "read:",
                         ":data",       "read:cluster_data",
                         "read:*",      "read:public2",
                         "Read:data",   "read:data:x",
                         "write:public"};
    for (size_t i = 0; i < AG_ARRAY_LEN(bad); i++) {
        memset(&d, 0, sizeof(d));
        assert_int_equal(ag_action_decl_parse(bad[i], "GET /x", &out, &d), AG_ECONFIG);
        assert_non_null(strstr(d.msg, "GET /x"));
    }
}

static void test_decide_builtin_roles(void **state)
{
    (void)state;
    ag_principal_t *root = builtin(AG_PRINCIPAL_ROOT, ag_role_root());
    ag_principal_t *viewer = builtin(AG_PRINCIPAL_VIEWER, ag_role_viewer());
    ag_principal_t *anon = NULL;
    ag_principal_t *nobody = NULL;
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_TOKEN, "t", &nobody), 0);
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_ANONYMOUS, NULL, &anon), 0);

    for (int r = AG_RES_NONE + 1; r < AG_RES_COUNT; r++) {
        if (r == AG_RES_CLUSTER_DATA)
            continue;
        assert_true(allowed(root, act(AG_VERB_MANAGE, r, "c")));
        assert_true(allowed(root, act(AG_VERB_DELETE, r, NULL)));
    }
    /* Root's data access is unrestricted. */
    ag_request_action_t a = act(AG_VERB_READ, AG_RES_DATA, "c");
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(root, &a, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    ag_decision_release(&d);

    const int viewer_reads[] = {AG_RES_COLLECTIONS,     AG_RES_DATA,  AG_RES_SNAPSHOTS,
                                AG_RES_CLUSTER,         AG_RES_NODES, AG_RES_TENANTS,
                                AG_RES_PAYLOAD_INDEXES, AG_RES_POINTS};
    for (size_t i = 0; i < AG_ARRAY_LEN(viewer_reads); i++) {
        assert_true(allowed(viewer, act(AG_VERB_READ, viewer_reads[i], "c")));
        assert_false(allowed(viewer, act(AG_VERB_CREATE, viewer_reads[i], "c")));
        assert_false(allowed(viewer, act(AG_VERB_UPDATE, viewer_reads[i], "c")));
        assert_false(allowed(viewer, act(AG_VERB_DELETE, viewer_reads[i], "c")));
    }
    const int viewer_never[] = {AG_RES_ROLES,           AG_RES_USERS,   AG_RES_API_KEYS,
                                AG_RES_MANAGEMENT_KEYS, AG_RES_INVITES, AG_RES_AUDIT,
                                AG_RES_ACCOUNT,         AG_RES_BACKUPS, AG_RES_BACKUP_SCHEDULES};
    for (size_t i = 0; i < AG_ARRAY_LEN(viewer_never); i++)
        assert_false(allowed(viewer, act(AG_VERB_READ, viewer_never[i], NULL)));

    /* read:profile is granted to everyone, including a principal with nothing; nothing else. */
    ag_principal_t *all[] = {root, viewer, nobody, anon};
    for (size_t i = 0; i < AG_ARRAY_LEN(all); i++)
        assert_true(allowed(all[i], act(AG_VERB_READ, AG_RES_PROFILE, NULL)));
    assert_false(allowed(nobody, act(AG_VERB_UPDATE, AG_RES_PROFILE, NULL)));
    assert_false(allowed(nobody, act(AG_VERB_READ, AG_RES_COLLECTIONS, "c")));
    assert_false(allowed(anon, act(AG_VERB_READ, AG_RES_COLLECTIONS, "c")));

    /* The 403 message names the missing permission, a sub-resource by its public parent. */
    a = act(AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "docs");
    assert_int_equal(ag_auth_decide(viewer, &a, &d), 0);
    assert_false(d.allowed);
    assert_string_equal(d.missing, "write:data on collection 'docs'");
    a = act(AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "docs");
    assert_int_equal(ag_auth_decide(viewer, &a, &d), 0);
    assert_string_equal(d.missing, "update:collections on collection 'docs'");
    a = act(AG_VERB_READ, AG_RES_AUDIT, NULL);
    assert_int_equal(ag_auth_decide(viewer, &a, &d), 0);
    assert_string_equal(d.missing, "read:audit");
    a = act(AG_VERB_READ, AG_RES_DATA, "c");
    a.tenant = "acme";
    assert_int_equal(ag_auth_decide(nobody, &a, &d), 0);
    assert_string_equal(d.missing, "read:data on collection 'c', tenant 'acme'");

    /* Bad input fails closed. */
    a = act(0, AG_RES_DATA, "c");
    assert_true(ag_auth_decide(root, &a, &d) < 0);
    assert_false(d.allowed);
    a = act(AG_VERB_READ, AG_RES_CLUSTER_DATA, "c");
    assert_true(ag_auth_decide(root, &a, &d) < 0);
    assert_false(d.allowed);
    a = act(AG_VERB_READ, AG_RES_DATA, "c");
    assert_true(ag_auth_decide(NULL, &a, &d) < 0);
    assert_false(d.allowed);

    ag_principal_unref(root);
    ag_principal_unref(viewer);
    ag_principal_unref(nobody);
    ag_principal_unref(anon);
}

static void test_decide_scopes(void **state)
{
    (void)state;
    ag_principal_t *u = user_with("[{\"action\":\"read:data\",\"collection\":\"Cust*\"},"
                                  "{\"action\":\"write:collections\",\"collection\":\"*-dev\"},"
                                  "{\"action\":\"update:users\",\"user\":\"bob\"},"
                                  "{\"action\":\"read:roles\"}]");
    assert_true(allowed(u, act(AG_VERB_READ, AG_RES_DATA, "Customers")));
    assert_true(allowed(u, act(AG_VERB_READ, AG_RES_DATA, "Cust")));
    assert_false(allowed(u, act(AG_VERB_READ, AG_RES_DATA, "customers")));
    assert_false(allowed(u, act(AG_VERB_READ, AG_RES_DATA, NULL)));
    assert_false(allowed(u, act(AG_VERB_CREATE, AG_RES_DATA, "Customers")));
    assert_false(allowed(u, act(AG_VERB_READ, AG_RES_COLLECTIONS, "Customers")));
    /* write implies read; sub-resource covered by the parent; delete not included. */
    assert_true(allowed(u, act(AG_VERB_READ, AG_RES_COLLECTIONS, "a-dev")));
    assert_true(allowed(u, act(AG_VERB_CREATE, AG_RES_COLLECTIONS, "a-dev")));
    assert_true(allowed(u, act(AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "a-dev")));
    assert_false(allowed(u, act(AG_VERB_DELETE, AG_RES_COLLECTIONS, "a-dev")));
    assert_false(allowed(u, act(AG_VERB_CREATE, AG_RES_COLLECTIONS, "a-prod")));
    /* Verbs are all required from one permission. */
    assert_true(allowed(u, act(AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_COLLECTIONS, "x-dev")));

    /* Aliases are resolved before deciding: only the collection's own name is matched. */
    ag_request_action_t a = act(AG_VERB_READ, AG_RES_DATA, "current");
    assert_false(allowed(u, a));
    a = act(AG_VERB_READ, AG_RES_DATA, "Customers_v2");
    assert_true(allowed(u, a));
    a = act(AG_VERB_READ, AG_RES_DATA, "secret");
    assert_false(allowed(u, a));

    /* Other scope fields. */
    a = act(AG_VERB_UPDATE, AG_RES_USERS, NULL);
    a.user = "bob";
    assert_true(allowed(u, a));
    a.user = "bobby";
    assert_false(allowed(u, a));
    a.user = NULL;
    assert_false(allowed(u, a));
    a = act(AG_VERB_READ, AG_RES_ROLES, NULL);
    a.role = "anything";
    assert_true(allowed(u, a));

    /* A listing passes the route check with any pattern; items are then checked one by one. */
    ag_action_decl_t ld = AG_ACT_LIST(AG_VERB_READ, AG_RES_DATA);
    ag_request_action_init(&a, &ld);
    assert_true(allowed(u, a));
    ag_action_decl_t lc = AG_ACT_LIST(AG_VERB_READ, AG_RES_SNAPSHOTS);
    ag_request_action_init(&a, &lc);
    assert_false(allowed(u, a)); /* no snapshot permission at all */
    ag_principal_unref(u);
}

static void test_decide_restrictions(void **state)
{
    (void)state;
    ag_principal_t *u =
        user_with("[{\"action\":\"read:data\",\"collection\":\"c\","
                  "\"filter\":{\"must\":[{\"key\":\"team\",\"match\":{\"value\":\"red\"}}]}},"
                  "{\"action\":\"manage:data\",\"collection\":\"c\","
                  "\"filter\":{\"must\":[{\"key\":\"owner\",\"match\":{\"value\":\"u1\"}}]}},"
                  "{\"action\":\"read:data\",\"collection\":\"open\"}]");
    ag_request_action_t a = act(AG_VERB_READ, AG_RES_DATA, "c");
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_non_null(d.restriction);
    /* Union of both matching scopes. */
    assert_true(payload_passes(d.restriction, "{\"team\":\"red\"}"));
    assert_true(payload_passes(d.restriction, "{\"owner\":\"u1\"}"));
    assert_false(payload_passes(d.restriction, "{\"team\":\"blue\",\"owner\":\"u2\"}"));
    assert_false(payload_passes(d.restriction, "{}"));
    ag_decision_release(&d);
    assert_null(d.restriction);

    /* Writes only through the owner-scoped permission (points is data's sub-resource). */
    a = act(AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "c");
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_true(payload_passes(d.restriction, "{\"owner\":\"u1\"}"));
    assert_false(payload_passes(d.restriction, "{\"team\":\"red\"}"));
    ag_decision_release(&d);

    /* An unrestricted matching permission lifts the restriction. */
    a = act(AG_VERB_READ, AG_RES_DATA, "open");
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    ag_decision_release(&d);
    ag_principal_unref(u);

    u = user_with("[{\"action\":\"read:data\",\"collection\":\"c\","
                  "\"filter\":{\"must\":[{\"key\":\"team\",\"match\":{\"value\":\"red\"}}]}},"
                  "{\"action\":\"read:data\"}]");
    a = act(AG_VERB_READ, AG_RES_DATA, "c");
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    ag_decision_release(&d);
    ag_principal_unref(u);

    /* A restriction never applies to non-data resources. */
    u = user_with("[{\"action\":\"read:collections\"}]");
    a = act(AG_VERB_READ, AG_RES_COLLECTIONS, "c");
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_null(d.restriction);
    assert_non_null(d.granted_by);
    ag_principal_unref(u);
}

static void test_decide_tenants(void **state)
{
    (void)state;
    ag_principal_t *u =
        user_with("[{\"action\":\"read:data\",\"collection\":\"mt\",\"tenant\":\"acme*\"},"
                  "{\"action\":\"manage:tenants\",\"collection\":\"mt\",\"tenant\":\"acme*\"}]");
    ag_request_action_t a = act(AG_VERB_READ, AG_RES_DATA, "mt");
    assert_false(allowed(u, a)); /* no tenant named */
    a.tenant = "acme-1";
    assert_false(allowed(u, a)); /* tenant key unknown: cannot be enforced */
    a.tenant_key = "org";
    ag_decision_t d;
    assert_int_equal(ag_auth_decide(u, &a, &d), 0);
    assert_true(d.allowed);
    assert_non_null(d.restriction);
    assert_true(payload_passes(d.restriction, "{\"org\":\"acme-1\"}"));
    assert_false(payload_passes(d.restriction, "{\"org\":\"acme-2\"}"));
    assert_false(payload_passes(d.restriction, "{}"));
    ag_decision_release(&d);
    a.tenant = "other";
    assert_false(allowed(u, a));

    a = act(AG_VERB_DELETE, AG_RES_TENANTS, "mt");
    a.tenant = "acme-9";
    assert_true(allowed(u, a));
    a.tenant = "zeta";
    assert_false(allowed(u, a));
    ag_principal_unref(u);
}

static void test_decide_cluster_data(void **state)
{
    (void)state;
    ag_principal_t *r = user_with("[{\"action\":\"read:cluster_data\"}]");
    ag_principal_t *w = user_with("[{\"action\":\"write:cluster_data\"}]");
    assert_true(allowed(r, act(AG_VERB_READ, AG_RES_COLLECTIONS, "x")));
    assert_true(allowed(r, act(AG_VERB_READ, AG_RES_DATA, "x")));
    assert_false(allowed(r, act(AG_VERB_CREATE, AG_RES_DATA, "x")));
    assert_false(allowed(r, act(AG_VERB_READ, AG_RES_SNAPSHOTS, "x")));
    assert_false(allowed(r, act(AG_VERB_READ, AG_RES_USERS, NULL)));
    assert_true(allowed(w, act(AG_VERB_READ, AG_RES_COLLECTIONS, "x")));
    assert_true(allowed(w, act(AG_VERB_CREATE | AG_VERB_UPDATE, AG_RES_POINTS, "x")));
    assert_true(allowed(w, act(AG_VERB_UPDATE, AG_RES_DATA, "x")));
    assert_false(allowed(w, act(AG_VERB_DELETE, AG_RES_DATA, "x")));
    assert_false(allowed(w, act(AG_VERB_UPDATE, AG_RES_COLLECTIONS, "x")));
    assert_false(allowed(w, act(AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, "x")));
    ag_principal_unref(r);
    ag_principal_unref(w);
}

/* --- anti-escalation ----------------------------------------------------------------------- */

static bool holds(const ag_principal_t *p, const char *wanted_json, size_t *missing)
{
    json_t *arr = js(wanted_json);
    ag_perm_list_t list = {0};
    ag_diag_t d = {{0}};
    if (ag_perm_list_parse(arr, NULL, &list, &d) != 0)
        fail_msg("%s: %s", wanted_json, d.msg);
    bool r = ag_principal_holds(p, &list, missing);
    ag_perm_list_release(&list);
    json_decref(arr);
    return r;
}

static void test_holds(void **state)
{
    (void)state;
    ag_principal_t *root = builtin(AG_PRINCIPAL_ROOT, ag_role_root());
    ag_principal_t *viewer = builtin(AG_PRINCIPAL_VIEWER, ag_role_viewer());
    ag_principal_t *u =
        user_with("[{\"action\":\"read:data\",\"collection\":\"Cust*\"},"
                  "{\"action\":\"create:data\",\"collection\":\"x\"},"
                  "{\"action\":\"update:data\",\"collection\":\"x\"},"
                  "{\"action\":\"read:data\",\"collection\":\"f\","
                  "\"filter\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}},"
                  "{\"action\":\"manage:roles\",\"role\":\"team-*\"}]");
    size_t miss = 99;

    assert_true(holds(root,
                      "[{\"action\":\"manage:audit\"},{\"action\":\"write:cluster_data\"},"
                      "{\"action\":\"manage:data\",\"collection\":\"q\",\"tenant\":\"t\"}]",
                      NULL));
    assert_true(ag_principal_holds(root, ag_role_root(), NULL));
    assert_true(ag_principal_holds(root, ag_role_viewer(), NULL));
    assert_true(ag_principal_holds(viewer, ag_role_viewer(), NULL));
    assert_false(ag_principal_holds(viewer, ag_role_root(), NULL));
    assert_false(ag_principal_holds(u, ag_role_root(), NULL));
    assert_true(holds(viewer, "[{\"action\":\"read:cluster_data\"}]", NULL));
    assert_false(holds(viewer, "[{\"action\":\"write:cluster_data\"}]", NULL));
    assert_false(holds(viewer, "[{\"action\":\"read:users\"}]", NULL));
    assert_true(holds(viewer, "[{\"action\":\"read:profile\"}]", NULL));

    assert_true(holds(u, "[{\"action\":\"read:data\",\"collection\":\"Customer*\"}]", NULL));
    assert_true(
        holds(u, "[{\"action\":\"read:data\",\"collection\":\"Cust\",\"tenant\":\"z*\"}]", NULL));
    assert_false(holds(u, "[{\"action\":\"read:data\"}]", &miss));
    assert_int_equal(miss, 0);
    assert_false(holds(u, "[{\"action\":\"read:data\",\"collection\":\"Cu*\"}]", NULL));
    /* Verb by verb from different permissions. */
    assert_true(holds(u, "[{\"action\":\"write:data\",\"collection\":\"x\"}]", NULL));
    assert_false(holds(u, "[{\"action\":\"manage:data\",\"collection\":\"x\"}]", NULL));
    /* Filters: a restricted permission does not hold an unrestricted one. */
    assert_false(holds(u, "[{\"action\":\"read:data\",\"collection\":\"f\"}]", NULL));
    assert_true(holds(u,
                      "[{\"action\":\"read:data\",\"collection\":\"f\","
                      "\"filter\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}}]",
                      NULL));
    assert_false(holds(u,
                       "[{\"action\":\"read:data\",\"collection\":\"f\","
                       "\"filter\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":2}}]}}]",
                       NULL));
    /* An unrestricted permission holds a restricted one. */
    assert_true(holds(u,
                      "[{\"action\":\"read:data\",\"collection\":\"Cust1\","
                      "\"filter\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":2}}]}}]",
                      NULL));
    assert_true(holds(u, "[{\"action\":\"update:roles\",\"role\":\"team-a\"}]", NULL));
    assert_false(holds(u, "[{\"action\":\"update:roles\"}]", NULL));
    assert_false(holds(u, "[{\"action\":\"read:profile\"},{\"action\":\"read:audit\"}]", &miss));
    assert_int_equal(miss, 1);

    ag_principal_unref(root);
    ag_principal_unref(viewer);
    ag_principal_unref(u);
}

static void test_principal_refcount(void **state)
{
    (void)state;
    ag_principal_t *p;
    assert_int_equal(ag_principal_new(AG_PRINCIPAL_USER, "alice", &p), 0);
    assert_int_equal(ag_principal_set_sub(p, "sub-1"), 0);
    assert_int_equal(ag_principal_add_role(p, "editors"), 0);
    ag_principal_set_expiry(p, 1234);
    assert_ptr_equal(ag_principal_ref(p), p);
    ag_principal_unref(p);
    assert_string_equal(ag_principal_id(p), "alice");
    assert_string_equal(ag_principal_sub(p), "sub-1");
    assert_int_equal(ag_principal_role_count(p), 1);
    assert_string_equal(ag_principal_role(p, 0), "editors");
    assert_null(ag_principal_role(p, 1));
    assert_int_equal(ag_principal_expiry(p), 1234);
    assert_string_equal(ag_principal_kind_name(ag_principal_kind(p)), "user");
    ag_principal_unref(p); /* ASan reports a leak if this does not free */
    ag_principal_unref(NULL);
    assert_null(ag_principal_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob_basic),
        cmocka_unit_test(test_glob_pathological),
        cmocka_unit_test(test_glob_covers),
        cmocka_unit_test(test_perm_parse_ok),
        cmocka_unit_test(test_perm_parse_errors),
        cmocka_unit_test(test_perm_render_roundtrip),
        cmocka_unit_test(test_action_decl),
        cmocka_unit_test(test_decide_builtin_roles),
        cmocka_unit_test(test_decide_scopes),
        cmocka_unit_test(test_decide_restrictions),
        cmocka_unit_test(test_decide_tenants),
        cmocka_unit_test(test_decide_cluster_data),
        cmocka_unit_test(test_holds),
        cmocka_unit_test(test_principal_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
