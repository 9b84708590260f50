/* Unit tests for the base and json layers: point ids, names, strict JSON, config, arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ag_arena.h"
#include "ag_config.h"
#include "ag_file.h"
#include "ag_grow.h"
#include "ag_id.h"
#include "auth/ag_root_key.h"
#include "http/ag_http.h"
#include "json/ag_json.h"

static void test_id_roundtrip(void **state)
{
    (void)state;
    ag_point_id_t id, back;
    ag_diag_t d = {{0}};
    json_t *big = json_loads("9007199254740993", JSON_DECODE_ANY, NULL);
    assert_int_equal(ag_id_parse(big, &id, "id", &d), 0);
    assert_int_equal(id.kind, AG_ID_NUM);
    assert_true(id.num == 9007199254740993ULL);
    json_t *out = ag_id_to_json(&id);
    char *text = json_dumps(out, JSON_ENCODE_ANY);
    assert_string_equal(text, "9007199254740993");
    free(text);
    json_decref(out);
    json_decref(big);

    uint8_t key[AG_ID_KEY_LEN];
    ag_id_to_key(&id, key);
    assert_int_equal(ag_id_from_key(key, sizeof(key), &back), 0);
    assert_true(ag_id_equal(&id, &back));

    json_t *s = json_string("550E8400-e29b-41d4-a716-446655440000");
    assert_int_equal(ag_id_parse(s, &id, "id", &d), 0);
    char buf[40];
    ag_id_format(&id, buf, sizeof(buf));
    assert_string_equal(buf, "550e8400-e29b-41d4-a716-446655440000");
    json_decref(s);
}

static void test_id_rejects(void **state)
{
    (void)state;
    ag_point_id_t id;
    ag_diag_t d = {{0}};
    const char *bad[] = {"\"42\"",
                         "-1",
                         "1.5",
                         "null",
                         "true",
                         "[]",
                         "\"550e8400-e29b-41d4-a716\"",
                         "\"zz0e8400-e29b-41d4-a716-446655440000\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        assert_int_equal(ag_id_parse(v, &id, "points[3].id", &d), AG_EINVAL);
        assert_non_null(strstr(d.msg, "points[3].id"));
        json_decref(v);
    }
}

static void test_id_order(void **state)
{
    (void)state;
    ag_point_id_t a = {.kind = AG_ID_NUM, .num = 2}, b = {.kind = AG_ID_NUM, .num = 256};
    ag_point_id_t u = {.kind = AG_ID_UUID};
    uint8_t ka[AG_ID_KEY_LEN], kb[AG_ID_KEY_LEN], ku[AG_ID_KEY_LEN];
    ag_id_to_key(&a, ka);
    ag_id_to_key(&b, kb);
    ag_id_to_key(&u, ku);
    /* Keys sort like ids: numbers ascending, then UUIDs. */
    assert_true(memcmp(ka, kb, AG_ID_KEY_LEN) < 0);
    assert_true(memcmp(kb, ku, AG_ID_KEY_LEN) < 0);
    assert_true(ag_id_cmp(&a, &b) < 0 && ag_id_cmp(&b, &u) < 0);
}

static void test_names(void **state)
{
    (void)state;
    ag_diag_t d;
    assert_int_equal(ag_name_check("books", 5, "collection", &d), 0);
    assert_int_equal(ag_name_check("日本", strlen("日本"), "collection", &d), 0);
    const char *bad[] = {"", "..", ".", "a/b", "a\\b", "a\x01", "\xff\xfe"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ag_name_check(bad[i], strlen(bad[i]), "collection", &d), AG_EINVAL);
    assert_int_equal(ag_name_check("a\0b", 3, "collection", &d), AG_EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[299] = '\0';
    assert_int_equal(ag_name_check(longname, 299, "collection", &d), AG_EINVAL);
    longname[255] = '\0';
    assert_int_equal(ag_name_check(longname, 255, "collection", &d), 0);
}

static void test_strict_json(void **state)
{
    (void)state;
    json_t *v = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_json_parse_body("{\"a\":1,\"a\":2}", 13, true, &v, &d), AG_EINVAL);
    assert_int_equal(ag_json_parse_body("{\"a\":1} x", 9, true, &v, &d), AG_EINVAL);
    assert_int_equal(ag_json_parse_body("[1]", 3, true, &v, &d), AG_EINVAL);
    assert_int_equal(ag_json_parse_body("{\"a\":NaN}", 9, true, &v, &d), AG_EINVAL);
    assert_int_equal(ag_json_parse_body("{\"a\":1}", 7, true, &v, &d), 0);
    assert_int_equal(AG_JSON_ONLY(v, "body", &d, "b"), AG_EINVAL);
    assert_non_null(strstr(d.msg, "unknown field 'a'"));
    assert_int_equal(AG_JSON_ONLY(v, "body", &d, "a", "b"), 0);
    json_decref(v);

    float *f;
    uint32_t n;
    json_t *arr = json_loads("[1, 2.5, 1e39]", 0, NULL);
    assert_int_equal(ag_json_floats(arr, "vector", &f, &n, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "vector[2]"));
    json_decref(arr);
    arr = json_loads("[1, 2.5, -3]", 0, NULL);
    assert_int_equal(ag_json_floats(arr, "vector", &f, &n, &d), 0);
    assert_int_equal(n, 3);
    assert_true(f[1] == 2.5f && f[2] == -3.0f);
    free(f);
    json_decref(arr);
}

/* The u64 marker is internal: a body string imitating it is refused wherever it sits, real big
 * integers still round-trip, and rendering only turns whole marker strings back into numbers. */
static void test_u64_marker_unforgeable(void **state)
{
    (void)state;
    ag_diag_t d = {{0}};
    json_t *v = NULL;
    static const char *const forged[] = {
        "{\"id\":\"\\u0001u64:5\"}",
        "{\"id\":\"\\u0001u64:18446744073709551000\"}",
        "{\"p\":{\"\\u0001u64:1\":2}}",
        "{\"f\":{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"\\u0001u64:abc\"}}]}}",
        "{\"a\":18446744073709551000,\"b\":\"\\u0001u64:18446744073709551000\"}",
        "{\"k\":\"\\u0001u64:\"}",
    };
    for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
        memset(&d, 0, sizeof(d));
        assert_int_equal(ag_json_parse_body(forged[i], strlen(forged[i]), true, &v, &d), AG_EINVAL);
        assert_null(v);
        assert_non_null(strstr(d.msg, "u64:"));
    }
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_json_parse_body("{\"p\":{\"\\u0001u64:1\":2}}", 23, true, &v, &d),
                     AG_EINVAL);
    assert_non_null(strstr(d.msg, "p."));

    /* Allowed: U+0001 elsewhere in a string, and a real big integer. */
    const char *ok = "{\"a\":\"x\\u0001u64:5\",\"b\":\"\\u0001\",\"c\":18446744073709551000}";
    assert_int_equal(ag_json_parse_body(ok, strlen(ok), true, &v, &d), 0);
    char *text = ag_json_render(v);
    assert_string_equal(text,
                        "{\"a\":\"x\\u0001u64:5\",\"b\":\"\\u0001\",\"c\":18446744073709551000}");
    free(text);
    json_decref(v);

    /* Render: strings that only look like the marker stay strings (valid JSON out). */
    json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "a", "\x01u64:abc\", \"x", "b",
                          "x\"\x01u64:18446744073709551000", "c", "\x01u64:5", "\x01u64:9", 1);
    text = ag_json_render(o);
    json_t *back = json_loads(text, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "a")), "\x01u64:abc\", \"x");
    assert_string_equal(json_string_value(json_object_get(back, "b")),
                        "x\"\x01u64:18446744073709551000");
    assert_string_equal(json_string_value(json_object_get(back, "c")), "\x01u64:5");
    json_decref(back);
    free(text);
    json_decref(o);
}

static void test_percent_decode(void **state)
{
    (void)state;
    size_t len;
    char *s = ag_http_decode("a%2Fb%00c", 9, false, &len);
    assert_non_null(s);
    assert_int_equal(len, 5);
    assert_true(s[1] == '/' && s[3] == '\0');
    free(s);
    assert_null(ag_http_decode("a%2", 3, false, &len));
    assert_null(ag_http_decode("a%zz", 4, false, &len));
    s = ag_http_decode("a+b", 3, true, &len);
    assert_string_equal(s, "a b");
    free(s);
}

static void test_config(void **state)
{
    (void)state;
    ag_config_t cfg;
    ag_config_init(&cfg);
    ag_diag_t d = {{0}};
    char path[] = "/tmp/aegis-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml =
        "service:\n  http_port: 7000\n  jwt_rbac: true\nstorage:\n  storage_path: /x\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    assert_int_equal(ag_config_load_file(&cfg, path, &d), 0);
    assert_int_equal(cfg.http_port, 7000);
    assert_true(cfg.jwt_rbac);
    assert_string_equal(cfg.storage_path, "/x");
    char *env[] = {"AEGIS__SERVICE__HTTP_PORT=7100", "OTHER=1", NULL};
    assert_int_equal(ag_config_load_env(&cfg, env, &d), 0);
    assert_int_equal(cfg.http_port, 7100);
    char *bad_env[] = {"AEGIS__SERVICE__NOPE=1", NULL};
    assert_int_equal(ag_config_load_env(&cfg, bad_env, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "service.nope"));
    assert_int_equal(ag_config_set(&cfg, "service.http_port", "70000", &d), AG_ECONFIG);
    assert_int_equal(ag_config_set(&cfg, "service.jwt_rbac", "yes", &d), AG_ECONFIG);
    unlink(path);
    ag_config_release(&cfg);
}

/* cluster.* (docs/CLUSTER.md): defaults leave cluster mode off; a bad or missing value is refused
 * naming its key. */
static void test_config_cluster(void **state)
{
    (void)state;
    ag_config_t cfg;
    ag_config_init(&cfg);
    ag_diag_t d = {{0}};
    assert_false(cfg.cluster_enabled);
    assert_int_equal(cfg.stale_after_ms, 3000);
    assert_int_equal(ag_config_check(&cfg, &d), 0);
    char *env[] = {"AEGIS__CLUSTER__ENABLED=true", NULL};
    assert_int_equal(ag_config_load_env(&cfg, env, &d), 0);
    assert_true(cfg.cluster_enabled);
    assert_int_equal(ag_config_check(&cfg, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "cluster.etcd_endpoints"));
    char *env2[] = {"AEGIS__CLUSTER__ETCD_ENDPOINTS=http://127.0.0.1:2379,http://10.0.0.2:2379",
                    "AEGIS__CLUSTER__STALE_AFTER_MS=1500", NULL};
    assert_int_equal(ag_config_load_env(&cfg, env2, &d), 0);
    assert_int_equal(cfg.stale_after_ms, 1500);
    assert_int_equal(ag_config_check(&cfg, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "cluster.node_id"));
    assert_int_equal(ag_config_set(&cfg, "cluster.node_id", "node-a", &d), 0);
    assert_int_equal(ag_config_check(&cfg, &d), 0);
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"cluster.etcd_endpoints", "127.0.0.1:2379"},
        {"cluster.etcd_endpoints", "http://a:1,,http://b:2"},
        {"cluster.etcd_endpoints", "http://user:pw@a:1"},
        {"cluster.etcd_endpoints", "ftp://a:1"},
        {"cluster.node_id", "has space"},
        {"cluster.node_id", "a/b"},
        {"cluster.advertise_url", "node-a:6333"},
        {"cluster.stale_after_ms", "50"},
    };
    for (size_t i = 0; i < AG_ARRAY_LEN(bad); i++) {
        ag_config_t c;
        ag_config_init(&c);
        assert_int_equal(ag_config_set(&c, "cluster.enabled", "true", &d), 0);
        assert_int_equal(ag_config_set(&c, "cluster.etcd_endpoints", "http://e:2379", &d), 0);
        assert_int_equal(ag_config_set(&c, "cluster.node_id", "n1", &d), 0);
        assert_int_equal(ag_config_set(&c, bad[i].key, bad[i].value, &d), 0);
        assert_int_equal(ag_config_check(&c, &d), AG_ECONFIG);
        assert_non_null(strstr(d.msg, bad[i].key));
        ag_config_release(&c);
    }
    cfg.insecure = true;
    assert_int_equal(ag_config_check(&cfg, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, "cluster.enabled"));
    ag_config_release(&cfg);
}

static void test_arena(void **state)
{
    (void)state;
    ag_arena_t a;
    ag_arena_init(&a, 1 << 20);
    void *p = ag_arena_alloc(&a, 10);
    void *q = ag_arena_alloc(&a, 100000);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_null(ag_arena_alloc(&a, 2 << 20)); /* over the ceiling */
    ag_arena_release(&a);
}

static int budget(const char *text, char *msg, size_t len)
{
    static const ag_json_budget_t b = {
        .max_values = 40, .max_array = 8, .max_match_list = 3, .max_id_list = 5};
    ag_diag_t d = {{0}};
    int rc = ag_json_check_budget(text, strlen(text), &b, &d);
    snprintf(msg, len, "%s", d.msg);
    return rc;
}

/* The raw-text scan that refuses oversized read bodies before they are parsed. */
static void test_json_budget(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(budget("{\"filter\":{\"must\":[{\"key\":\"k\",\"match\":{\"any\":[1,2,3]}}]}}",
                            msg, sizeof(msg)),
                     0);
    assert_int_equal(
        budget("{\"filter\":{\"must\":[{\"key\":\"k\",\"match\":{\"any\":[1,2,3,4]}}]}}", msg,
               sizeof(msg)),
        AG_EINVAL);
    assert_string_equal(msg, "filter.must[0].match.any: at most 3 values");
    assert_int_equal(budget("{\"f\":{\"should\":[{},{\"key\":\"k\",\"match\":{\"except\":[\"a\","
                            "\"b\\\"],\",\"c\",\"d\"]}}]}}",
                            msg, sizeof(msg)),
                     AG_EINVAL);
    assert_string_equal(msg, "f.should[1].match.except: at most 3 values");
    /* "any" outside a match object is an ordinary array */
    assert_int_equal(budget("{\"any\":[1,2,3,4,5]}", msg, sizeof(msg)), 0);
    assert_int_equal(budget("{\"has_id\":[1,2,3,4,5,6]}", msg, sizeof(msg)), AG_EINVAL);
    assert_string_equal(msg, "has_id: at most 5 values");
    assert_int_equal(budget("{\"v\":[[1,2],[1,2,3,4,5,6,7,8,9]]}", msg, sizeof(msg)), AG_EINVAL);
    assert_string_equal(msg, "v[1]: at most 8 values in one array");
    assert_int_equal(budget("[1,2,3,4,5,6,7,8,9]", msg, sizeof(msg)), AG_EINVAL);
    assert_string_equal(msg, "body: at most 8 values in one array");
    /* every value counts, nested or not */
    assert_int_equal(budget("{\"a\":[1,2,3,4,5,6,7,8],\"b\":[1,2,3,4,5,6,7,8],\"c\":[1,2,3,4,5,6,"
                            "7,8],\"d\":[1,2,3,4,5,6,7,8],\"e\":[1,2,3,4,5,6,7,8]}",
                            msg, sizeof(msg)),
                     AG_EINVAL);
    assert_non_null(strstr(msg, "at most 40 JSON values"));
    /* malformed or very deep text is left to the parser */
    assert_int_equal(budget("{\"a\":[1,2", msg, sizeof(msg)), 0);
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    assert_int_equal(ag_json_check_budget(deep, 300,
                                          &(ag_json_budget_t){.max_values = 1000,
                                                              .max_array = 8,
                                                              .max_match_list = 3,
                                                              .max_id_list = 5},
                                          NULL),
                     0);
}

static void test_grow(void **state)
{
    (void)state;
    int *a = NULL;
    uint32_t cap = 0;
    assert_int_equal(AG_GROW(a, cap, 1, 4, 100), 0);
    assert_int_equal(cap, 4);
    a[3] = 7;
    assert_int_equal(AG_GROW(a, cap, 4, 4, 100), 0); /* enough room: nothing happens */
    assert_int_equal(cap, 4);
    assert_int_equal(AG_GROW(a, cap, 9, 4, 100), 0); /* doubles until it fits */
    assert_int_equal(cap, 16);
    assert_int_equal(a[3], 7);                        /* contents kept */
    assert_int_equal(AG_GROW(a, cap, 70, 4, 100), 0); /* the ceiling caps the doubling */
    assert_int_equal(cap, 100);
    int *before = a;
    assert_int_equal(AG_GROW(a, cap, 101, 4, 100), AG_ETOOBIG); /* past the ceiling: refused */
    assert_int_equal(cap, 100);
    assert_ptr_equal(a, before);
    free(a);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_durable_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/aegis-file-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], tmp[300];
    snprintf(path, sizeof(path), "%s/f", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(ag_file_replace(path, "one", 3, 0600), 0);
    assert_string_equal(slurp(path), "one");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_not_equal(access(tmp, F_OK), 0); /* no temporary file left */
    /* An aborted replacement leaves the old content and no temporary file. */
    ag_durable_t d;
    assert_int_equal(ag_durable_open(&d, path, 0600), 0);
    fputs("half", d.f);
    ag_durable_abort(&d);
    assert_string_equal(slurp(path), "one");
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(ag_file_replace(path, "two", 3, 0600), 0);
    assert_string_equal(slurp(path), "two");
    /* A directory that does not exist is an error, not a crash. */
    char bad[300];
    snprintf(bad, sizeof(bad), "%s/missing/f", dir);
    assert_int_equal(ag_file_replace(bad, "x", 1, 0600), AG_EIO);
    unlink(path);
    rmdir(dir);
}

static void test_root_key(void **state)
{
    (void)state;
    char dir[] = "/tmp/aegis-rootkey-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[256], hashfile[256];
    snprintf(out, sizeof(out), "%s/stdout", dir);
    snprintf(hashfile, sizeof(hashfile), "%s/%s", dir, AG_ROOT_KEY_FILE);
    /* The key is printed once on stdout: capture it. */
    fflush(stdout);
    int saved = dup(1);
    FILE *cap = fopen(out, "w");
    assert_non_null(cap);
    dup2(fileno(cap), 1);
    ag_root_key_t rk;
    ag_diag_t d = {{0}};
    int rc = ag_root_key_setup(dir, &rk, &d);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(cap);
    assert_int_equal(rc, 0);
    const char *printed = strstr(slurp(out), "ag_root_");
    assert_non_null(printed);
    char key[64] = {0};
    assert_int_equal(sscanf(printed, "%60s", key), 1);
    assert_int_equal(strlen(key), 8 + 43);
    assert_true(ag_root_key_matches(&rk, key, strlen(key)));
    assert_false(ag_root_key_matches(&rk, key, strlen(key) - 1));
    /* Only the hash is stored; a second start loads it and accepts the same key. */
    const char *stored = slurp(hashfile);
    assert_non_null(stored);
    assert_null(strstr(stored, key));
    assert_int_equal(strncmp(stored, "v1 ", 3), 0);
    ag_root_key_t again;
    assert_int_equal(ag_root_key_setup(dir, &again, &d), 0);
    assert_true(ag_root_key_matches(&again, key, strlen(key)));
    ag_root_key_wipe(&again);
    assert_false(ag_root_key_matches(&again, key, strlen(key)));
    /* A corrupt file stops start-up naming it. */
    assert_int_equal(ag_file_replace(hashfile, "v1 zz\n", 6, 0600), 0);
    assert_int_equal(ag_root_key_setup(dir, &again, &d), AG_ECONFIG);
    assert_non_null(strstr(d.msg, AG_ROOT_KEY_FILE));
    ag_root_key_wipe(&rk);
    unlink(hashfile);
    unlink(out);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_roundtrip),   cmocka_unit_test(test_id_rejects),
        cmocka_unit_test(test_id_order),       cmocka_unit_test(test_names),
        cmocka_unit_test(test_strict_json),    cmocka_unit_test(test_u64_marker_unforgeable),
        cmocka_unit_test(test_percent_decode), cmocka_unit_test(test_config),
        cmocka_unit_test(test_config_cluster), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_json_budget),    cmocka_unit_test(test_durable_file),
        cmocka_unit_test(test_root_key),       cmocka_unit_test(test_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
