/* Unit tests for the audit log: the hash chain verifies, an edited or deleted line is named,
 * rotation keeps the chain, queries filter newest first, and no secret reaches the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth/ag_audit.h"

static char dir[64];
static char logpath[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-audit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(logpath, sizeof(logpath), "%s/audit.log", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ag_audit_t *open_log(uint64_t max_bytes)
{
    ag_audit_t *a = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_audit_open(dir, max_bytes, &a, &d), 0);
    return a;
}

static void append(ag_audit_t *a, int i, bool allowed, const char *principal_id, const char *reason)
{
    char rid[32], coll[32];
    snprintf(rid, sizeof(rid), "req-%d", i);
    snprintf(coll, sizeof(coll), "coll%d", i);
    json_t *res = json_pack("{s:s}", "collection", coll);
    ag_audit_record_t r = {
        .request_id = rid,
        .principal_kind = "user",
        .principal_id = principal_id,
        .remote = "127.0.0.1",
        .method = "PUT",
        .route = "/collections/{name}",
        .action = allowed ? "create:collections" : "delete:collections",
        .resource = res,
        .allowed = allowed,
        .status = allowed ? 200 : 403,
        .reason = reason,
        .sync = allowed,
    };
    assert_int_equal(ag_audit_append(a, &r), 0);
    json_decref(res);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Start of line n (1-based) in buf. */
static char *line_at(char *buf, int n)
{
    char *p = buf;
    for (int i = 1; i < n; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    return p;
}

static void test_append_verify(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 5; i++)
        append(a, i, i % 2 == 0, "alice", NULL);
    assert_int_equal(ag_audit_last_seq(a), 5);
    ag_audit_close(a);

    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), 0);
    assert_int_equal(v.records, 5);
    assert_int_equal(ag_audit_verify(logpath, &v), 0);

    /* Reopening continues the chain. */
    a = open_log(0);
    append(a, 5, true, "alice", NULL);
    assert_int_equal(ag_audit_last_seq(a), 6);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, &v), 0);
    assert_int_equal(v.records, 6);

    struct stat st;
    assert_int_equal(stat(logpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_edit_named(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 5; i++)
        append(a, i, false, "mallory", NULL);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    char *l3 = line_at(buf, 3);
    char *d = strstr(l3, "\"deny\"");
    assert_non_null(d);
    memcpy(d, "\"DENY\"", 6); /* same length: an in-place edit */
    write_all(logpath, buf);
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), AG_EINVAL);
    assert_int_equal(v.line, 3);
    assert_non_null(strstr(v.why, "edited"));
    assert_non_null(strstr(v.file, "audit.log"));
}

static void test_delete_named(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 5; i++)
        append(a, i, true, "bob", NULL);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    char *l2 = line_at(buf, 2), *l3 = line_at(buf, 3);
    memmove(l2, l3, strlen(l3) + 1); /* drop line 2 */
    write_all(logpath, buf);
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(logpath, &v), AG_EINVAL);
    assert_int_equal(v.line, 2);
    assert_non_null(strstr(v.why, "missing"));
}

static void test_truncated_tail(void **state)
{
    (void)state;
    /* The chain alone cannot show records removed from the end; the head file does. */
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 4; i++)
        append(a, i, true, "hank", NULL);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    *line_at(buf, 4) = '\0'; /* drop the last line */
    write_all(logpath, buf);
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), AG_EINVAL);
    assert_int_equal(v.line, 4);
    assert_non_null(strstr(v.why, "missing from the end"));
    /* A restart does not launder it: the next record's seq jumps and says why. */
    a = open_log(0);
    append(a, 9, true, "hank", NULL);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, &v), AG_EINVAL);
    assert_int_equal(v.line, 4);
    assert_non_null(strstr(v.why, "missing"));
    buf = read_all(logpath);
    assert_non_null(strstr(buf, "audit:recover"));
    free(buf);
}

static void test_edit_with_recomputed_hash(void **state)
{
    (void)state;
    /* An attacker who recomputes the edited line's own hash is caught by the next line's prev. */
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 3; i++)
        append(a, i, true, "carol", NULL);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    char *l1 = line_at(buf, 1), *l2 = line_at(buf, 2);
    size_t n = (size_t)(l2 - l1) - 1;
    char *x = strstr(l1, "carol");
    memcpy(x, "carul", 5);
    /* recompute line 1's hash */
    size_t body = n - (9 + 64 + 2);
    char *t = malloc(body + 2);
    memcpy(t, l1, body);
    t[body] = '}';
    unsigned char h[32];
    crypto_hash_sha256(h, (unsigned char *)t, body + 1);
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), h, 32);
    memcpy(l1 + n - 66, hex, 64);
    free(t);
    write_all(logpath, buf);
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(logpath, &v), AG_EINVAL);
    assert_int_equal(v.line, 2);
    assert_non_null(strstr(v.why, "prev"));
}

static void test_rotation_keeps_chain(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(2000); /* a few records per file */
    for (int i = 0; i < 40; i++)
        append(a, i, i % 3 != 0, "dave", NULL);
    ag_audit_close(a);
    a = open_log(2000); /* reopen right after a rotation boundary still chains */
    for (int i = 40; i < 45; i++)
        append(a, i, true, "dave", NULL);
    ag_audit_close(a);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test $(ls '%s' | grep -c '^audit-.*\\.log$') -ge 5", dir);
    assert_int_equal(system(cmd), 0);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), 0);
    assert_int_equal(v.records, 45);
    assert_int_equal(v.first_seq, 1);

    /* Deleting a whole rotated file in the middle breaks the chain at the next file. */
    snprintf(cmd, sizeof(cmd), "rm \"$(ls -d '%s'/audit-*.log | sort | sed -n 2p)\"", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(ag_audit_verify(dir, &v), AG_EINVAL);
    assert_int_equal(v.line, 1);
    assert_non_null(strstr(v.why, "missing"));
}

static void test_query(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(3000);
    for (int i = 0; i < 30; i++)
        append(a, i, i % 2 == 0, i % 3 == 0 ? "erin" : "frank", NULL);
    ag_audit_query_t q = {.limit = 1000};
    json_t *arr = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_audit_query(a, &q, &arr, &d), 0);
    assert_int_equal(json_array_size(arr), 30);
    /* newest first, across rotated files */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 30);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 29), "seq")), 1);
    json_decref(arr);

    q.decision = "deny";
    q.principal = "erin";
    assert_int_equal(ag_audit_query(a, &q, &arr, &d), 0);
    /* odd i (deny) and i % 3 == 0 (erin): 3, 9, 15, 21, 27 */
    assert_int_equal(json_array_size(arr), 5);
    json_decref(arr);

    q.decision = NULL;
    q.principal = "user:frank";
    q.action = "create:*";
    q.limit = 3;
    assert_int_equal(ag_audit_query(a, &q, &arr, &d), 0);
    assert_int_equal(json_array_size(arr), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 29);
    json_decref(arr);

    q = (ag_audit_query_t){.limit = 100, .from_us = (int64_t)time(NULL) * 1000000 + 3600000000LL};
    assert_int_equal(ag_audit_query(a, &q, &arr, &d), 0);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    ag_audit_close(a);
}

static void test_no_secret(void **state)
{
    (void)state;
    const char *api_key = "sk-this-is-the-configured-key!!";
    const char *user_key = "ag_k1x2_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";
    const char *jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    ag_audit_t *a = open_log(0);
    assert_int_equal(ag_audit_add_secret(a, api_key), 0);
    char label[300], reason[400];
    snprintf(label, sizeof(label), "%s", user_key);
    snprintf(reason, sizeof(reason), "bad credential %s / Bearer %s / key %s", jwt, jwt, api_key);
    append(a, 1, false, label, reason);
    json_t *res = json_pack("{s:s}", "user", jwt);
    ag_audit_record_t r = {.principal_kind = "token",
                           .sub = api_key,
                           .resource = res,
                           .status = 401,
                           .reason = "Authorization: Bearer abcdefghijkl"};
    assert_int_equal(ag_audit_append(a, &r), 0);
    json_decref(res);
    /* A UUID principal id is not mistaken for a secret. */
    append(a, 2, true, "3f2504e0-4f89-11d3-9a0c-0305e82c3301", NULL);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    assert_null(strstr(buf, api_key));
    assert_null(strstr(buf, "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"));
    assert_null(strstr(buf, "eyJhbGciOiJIUzI1NiJ9"));
    assert_null(strstr(buf, "c2lnbmF0dXJl"));
    assert_null(strstr(buf, "abcdefghijkl"));
    assert_non_null(strstr(buf, "[redacted]"));
    assert_non_null(strstr(buf, "3f2504e0-4f89-11d3-9a0c-0305e82c3301"));
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), 0);
}

static void test_torn_tail_repaired(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    append(a, 1, true, "gina", NULL);
    append(a, 2, true, "gina", NULL);
    ag_audit_close(a);
    FILE *f = fopen(logpath, "ab");
    fputs("{\"seq\":3,\"time\":\"20", f); /* a crash mid-write */
    fclose(f);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, &v), AG_EINVAL);
    assert_int_equal(v.line, 3);
    a = open_log(0);
    append(a, 3, true, "gina", NULL);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, &v), 0);
    assert_int_equal(v.records, 3);
}

static void test_sync_cost(void **state)
{
    (void)state;
    /* Not a pass/fail benchmark: prints what a synced and an unsynced record cost here. */
    ag_audit_t *a = open_log(0);
    struct timespec t0, t1;
    for (int mode = 0; mode < 2; mode++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 50; i++) {
            ag_audit_record_t r = {.principal_kind = "root",
                                   .principal_id = "root",
                                   .action = "create:collections",
                                   .allowed = true,
                                   .status = 200,
                                   .sync = mode == 1};
            assert_int_equal(ag_audit_append(a, &r), 0);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us =
            ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / 50;
        printf("audit append %s: %.1f us/record\n", mode ? "with fdatasync" : "batched sync", us);
    }
    ag_audit_close(a);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_with_recomputed_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_repaired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
