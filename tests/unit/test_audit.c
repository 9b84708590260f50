/* Unit tests for the audit log: the keyed hash chain verifies, an edited or deleted line is
 * named, the chain must start at seq 1 or where a retention record says, audit.head is required
 * and must name the last record, rotated files must follow on, a chain rebuilt without the key
 * fails, retention removes old files behind a marker, queries filter newest first, and no secret
 * reaches the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth/ag_audit.h"

static char dir[64];
static char logpath[128];
static char headpath[128];
static unsigned char key[AG_AUDIT_KEY_BYTES];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/aegis-audit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(logpath, sizeof(logpath), "%s/audit.log", dir);
    snprintf(headpath, sizeof(headpath), "%s/audit.head", dir);
    randombytes_buf(key, sizeof(key));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ag_audit_t *open_keep(uint64_t max_bytes, uint64_t max_files)
{
    ag_audit_t *a = NULL;
    ag_diag_t d = {{0}};
    ag_audit_config_t cfg = {
        .dir = dir, .max_bytes = max_bytes, .max_files = max_files, .key = key};
    int rc = ag_audit_open(&cfg, &a, &d);
    if (rc)
        print_message("ag_audit_open: %s\n", d.msg);
    assert_int_equal(rc, 0);
    return a;
}

static ag_audit_t *open_log(uint64_t max_bytes)
{
    return open_keep(max_bytes, 0);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.records, 5);
    assert_int_equal(ag_audit_verify(logpath, key, &v), 0);

    /* Reopening continues the chain. */
    a = open_log(0);
    append(a, 5, true, "alice", NULL);
    assert_int_equal(ag_audit_last_seq(a), 6);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
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
    assert_int_equal(ag_audit_verify(logpath, key, &v), AG_EINVAL);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
    assert_int_equal(v.line, 4);
    assert_non_null(strstr(v.why, "missing from the end"));
    /* A restart does not launder it: the next record's seq jumps and says why. */
    a = open_log(0);
    append(a, 9, true, "hank", NULL);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
    assert_int_equal(v.line, 4);
    assert_non_null(strstr(v.why, "missing"));
    buf = read_all(logpath);
    assert_non_null(strstr(buf, "audit:recover"));
    free(buf);
}

static void test_edit_with_recomputed_hash(void **state)
{
    (void)state;
    /* Someone who edits a line and recomputes its hash with plain SHA-256 (all the old format
     * needed) is caught at that very line: the hash is an HMAC under a key they do not have. */
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
    assert_int_equal(ag_audit_verify(logpath, key, &v), AG_EINVAL);
    assert_int_equal(v.line, 1);
    assert_non_null(strstr(v.why, "hash mismatch"));
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
    assert_int_equal(v.line, 1);
    /* And a server does not continue a chain whose newest record fails under its key. */
}

/* ---- helpers for the unkeyed (v1) format and for tampering ---------------------------------- */

/* Appends a v1 line (plain SHA-256, no "v") to text, chaining from prev (updated). */
static void v1_line(char *text, size_t cap, uint64_t seq, char prev[65])
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"seq\":%llu,\"time\":\"2026-01-01T00:00:00.000Z\",\"request_id\":null,"
             "\"principal\":{\"kind\":\"root\",\"id\":\"root\"},\"remote\":null,\"method\":\"PUT\","
             "\"route\":\"/collections/{name}\",\"action\":\"create:collections\",\"resource\":{},"
             "\"decision\":\"allow\",\"status\":200,\"prev\":\"%s\"}",
             (unsigned long long)seq, prev);
    unsigned char h[32];
    crypto_hash_sha256(h, (unsigned char *)body, strlen(body));
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), h, 32);
    char line[700];
    snprintf(line, sizeof(line), "%.*s,\"hash\":\"%s\"}", (int)strlen(body) - 1, body, hex);
    crypto_hash_sha256(h, (unsigned char *)line, strlen(line));
    sodium_bin2hex(prev, 65, h, 32);
    size_t l = strlen(text);
    snprintf(text + l, cap - l, "%s\n", line);
}

/* Writes an unkeyed (v1) log of n records and its v1 head, as a server before keys did. */
static void write_v1_log(const char *path_dir, int n)
{
    static char text[1 << 16];
    text[0] = '\0';
    char prev[65];
    memset(prev, '0', 64);
    prev[64] = '\0';
    for (int i = 1; i <= n; i++)
        v1_line(text, sizeof(text), (uint64_t)i, prev);
    char p[200];
    snprintf(p, sizeof(p), "%s/audit.log", path_dir);
    write_all(p, text);
    char head[100];
    snprintf(head, sizeof(head), "v1 %020d %s\n", n, prev);
    snprintf(p, sizeof(p), "%s/audit.head", path_dir);
    write_all(p, head);
}

static void drop_lines(const char *path, int first, int count)
{
    char *buf = read_all(path);
    char *from = line_at(buf, first), *to = line_at(buf, first + count);
    memmove(from, to, strlen(to) + 1);
    write_all(path, buf);
    free(buf);
}

static int count_lines(const char *path)
{
    char *buf = read_all(path);
    int n = 0;
    for (char *p = buf; *p; p++)
        n += *p == '\n';
    free(buf);
    return n;
}

/* Removes the nth (1-based, oldest first) rotated file. */
static int rm_rotated(int nth)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm \"$(ls -d '%s'/audit-*.log | sort | sed -n %dp)\"", dir, nth);
    return system(cmd);
}

static int count_rotated(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "exit $(ls '%s' | grep -c '^audit-.*\\.log$')", dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_fail(const char *path, const char *file_part, uint64_t line, const char *why)
{
    ag_audit_verify_t v;
    int rc = ag_audit_verify(path, key, &v);
    if (rc != AG_EINVAL || !strstr(v.why, why) || !strstr(v.file, file_part) || v.line != line)
        print_message("verify %s: rc %d, %s line %llu: %s\n", path, rc, v.file,
                      (unsigned long long)v.line, v.why);
    assert_int_equal(rc, AG_EINVAL);
    assert_non_null(strstr(v.file, file_part));
    assert_int_equal(v.line, line);
    assert_non_null(strstr(v.why, why));
}

/* ---- the chain's start, its end and its files ---------------------------------------------- */

static void test_first_records_deleted(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 6; i++)
        append(a, i, true, "ivan", NULL);
    ag_audit_close(a);
    drop_lines(logpath, 1, 2); /* records 1 and 2 gone; the rest still chain */
    expect_fail(dir, "audit.log", 1, "starts at seq 3, not 1");
    expect_fail(logpath, "audit.log", 1, "starts at seq 3, not 1");
}

static void test_cut_to_last_five(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 12; i++)
        append(a, i, i % 2 == 0, "judy", NULL);
    ag_audit_close(a);
    drop_lines(logpath, 1, 7); /* records 8..12 remain, and audit.head still names 12 */
    assert_int_equal(count_lines(logpath), 5);
    expect_fail(dir, "audit.log", 1, "starts at seq 8, not 1");
}

static void test_head_removed(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 4; i++)
        append(a, i, true, "kim", NULL);
    ag_audit_close(a);
    assert_int_equal(unlink(headpath), 0);
    expect_fail(dir, "audit.head", 0, "audit.head is missing");
    /* ... and with the head gone, records cut from the end would otherwise pass. */
    drop_lines(logpath, 4, 1);
    expect_fail(dir, "audit.head", 0, "audit.head is missing");
    /* A restart records that the head was gone. */
    a = open_log(0);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    assert_non_null(strstr(buf, "audit:recover"));
    assert_non_null(strstr(buf, "audit.head was missing"));
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.recovers, 1);
    assert_int_equal(v.first_recover, 4);
}

static void test_head_mismatched(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 3; i++)
        append(a, i, true, "liam", NULL);
    ag_audit_close(a);
    char *old_head = read_all(headpath);
    a = open_log(0);
    append(a, 3, true, "liam", NULL);
    append(a, 4, true, "liam", NULL);
    ag_audit_close(a);
    char *good_head = read_all(headpath);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);

    /* An older (authentic) head put back over a longer log. */
    write_all(headpath, old_head);
    expect_fail(dir, "audit.head", 0, "names seq 3 but the log goes on to seq 5");
    /* That older head and the log cut back to match it: the log loses records 4..5 without a
     * trace only for someone who kept a copy of the old head. */

    /* A head whose seq was raised by hand no longer verifies. */
    char *forged = strdup(good_head);
    forged[22] = '9'; /* last digit of the seq */
    write_all(headpath, forged);
    expect_fail(dir, "audit.head", 0, "does not verify under the key");
    /* Nor does a head that names another hash. */
    memcpy(forged, good_head, strlen(good_head) + 1);
    forged[30] = forged[30] == 'a' ? 'b' : 'a';
    write_all(headpath, forged);
    expect_fail(dir, "audit.head", 0, "does not verify under the key");
    /* An unkeyed (v1) head in front of a keyed log. */
    char v1head[100];
    snprintf(v1head, sizeof(v1head), "v1 %020d %.64s\n", 5, good_head + 24);
    write_all(headpath, v1head);
    expect_fail(dir, "audit.head", 0, "unkeyed (v1) head");
    /* The genuine head passes again; then the log loses its last record. */
    write_all(headpath, good_head);
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    drop_lines(logpath, 5, 1);
    expect_fail(dir, "audit.log", 5, "records 5..5 are missing from the end");
    free(forged);
    free(old_head);
    free(good_head);
}

static void test_old_head_restart_recorded(void **state)
{
    (void)state;
    /* A restart over an older head rewrites it, and leaves a record saying so. */
    ag_audit_t *a = open_log(0);
    append(a, 1, true, "lena", NULL);
    ag_audit_close(a);
    char *old_head = read_all(headpath);
    a = open_log(0);
    append(a, 2, true, "lena", NULL);
    append(a, 3, true, "lena", NULL);
    ag_audit_close(a);
    write_all(headpath, old_head);
    free(old_head);
    a = open_log(0);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    assert_non_null(strstr(line_at(buf, 4), "audit.head was behind the log (seq 1 < 3)"));
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.recovers, 1);
}

static void test_oldest_rotated_missing(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(2000);
    for (int i = 0; i < 30; i++)
        append(a, i, true, "mia", NULL);
    ag_audit_close(a);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_true(v.files >= 4);
    assert_int_equal(v.first_seq, 1);
    assert_int_equal(v.last_seq, 30);
    assert_int_equal(rm_rotated(1), 0);
    expect_fail(dir, "audit-", 1, "no keyed retention record vouches");
}

static void test_middle_rotated_missing(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(2000);
    for (int i = 0; i < 30; i++)
        append(a, i, true, "noah", NULL);
    ag_audit_close(a);
    assert_int_equal(rm_rotated(2), 0);
    expect_fail(dir, "audit-", 1, "(a rotated file was removed?)");
    /* Removing audit.log itself is named too. */
    assert_int_equal(unlink(logpath), 0);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
}

static void test_rebuilt_without_key(void **state)
{
    (void)state;
    /* Someone who can rewrite the directory replaces the log with a consistent unkeyed chain and
     * head: without the key it would verify; with it, it fails. */
    ag_audit_t *a = open_log(0);
    for (int i = 0; i < 3; i++)
        append(a, i, true, "olga", NULL);
    ag_audit_close(a);
    write_v1_log(dir, 3);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, NULL, &v), 0); /* the old guarantee only */
    assert_int_equal(v.unkeyed, 3);
    expect_fail(dir, "audit.log", 1, "every record is unkeyed (v1) although a key was given");

    /* Or a keyed chain under a key of their own. */
    unsigned char mine[AG_AUDIT_KEY_BYTES];
    memcpy(mine, key, sizeof(mine));
    randombytes_buf(key, sizeof(key));
    assert_int_equal(unlink(logpath), 0);
    assert_int_equal(unlink(headpath), 0);
    a = open_log(0);
    for (int i = 0; i < 3; i++)
        append(a, i, true, "olga", NULL);
    ag_audit_close(a);
    memcpy(key, mine, sizeof(key));
    expect_fail(dir, "audit.log", 1, "not written under this key");
    /* A server given the wrong key refuses to continue the chain. */
    ag_audit_t *b = NULL;
    ag_diag_t d = {{0}};
    ag_audit_config_t cfg = {.dir = dir, .key = key};
    assert_int_equal(ag_audit_open(&cfg, &b, &d), AG_ECONFIG);
    assert_null(b);
    assert_non_null(strstr(d.msg, "does not verify under the audit key"));
    /* Without any key a keyed record is not taken on trust. */
    assert_int_equal(ag_audit_verify(dir, NULL, &v), AG_EINVAL);
    assert_non_null(strstr(v.why, "no key to check it"));
}

static void test_v1_log_upgraded(void **state)
{
    (void)state;
    /* A log written before keys verifies as unkeyed; a keyed server continues it, and from then on
     * the first keyed record's HMAC binds the unkeyed part. */
    write_v1_log(dir, 3);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, NULL, &v), 0);
    assert_int_equal(v.records, 3);
    assert_int_equal(v.unkeyed, 3);
    ag_audit_t *a = open_log(0);
    append(a, 4, true, "pete", NULL);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.records, 5);
    assert_int_equal(v.unkeyed, 3);
    assert_int_equal(v.first_seq, 1);
    assert_int_equal(v.last_seq, 5);
    char *buf = read_all(logpath);
    assert_non_null(strstr(line_at(buf, 4), "\"action\":\"audit:upgrade\""));
    free(buf);
    /* Rewriting an unkeyed record now breaks the keyed record after the unkeyed part. */
    char *b2 = read_all(logpath);
    char *l2 = line_at(b2, 2);
    char *rt = strstr(l2, "\"status\":200");
    memcpy(rt, "\"status\":201", 12);
    write_all(logpath, b2);
    free(b2);
    expect_fail(dir, "audit.log", 2, "hash mismatch: the record was edited");
}

/* ---- retention ----------------------------------------------------------------------------- */

static void test_retention_marker_accepted(void **state)
{
    (void)state;
    ag_audit_t *a = open_keep(2000, 2);
    for (int i = 0; i < 40; i++)
        append(a, i, i % 3 != 0, "quinn", NULL);
    /* The retention records are queryable like any other. */
    ag_audit_query_t q = {.limit = 1000, .action = "audit:retention"};
    json_t *arr = NULL;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_audit_query(a, &q, &arr, &d), 0);
    assert_true(json_array_size(arr) >= 1);
    json_t *newest = json_object_get(json_array_get(arr, 0), "retention");
    assert_true(json_is_integer(json_object_get(newest, "first_seq")));
    uint64_t kept = (uint64_t)json_integer_value(json_object_get(newest, "first_seq"));
    json_decref(arr);
    ag_audit_close(a);
    assert_int_equal(count_rotated(), 2);
    ag_audit_verify_t v;
    int rc = ag_audit_verify(dir, key, &v);
    if (rc)
        print_message("%s line %llu: %s\n", v.file, (unsigned long long)v.line, v.why);
    assert_int_equal(rc, 0);
    assert_true(v.first_seq > 1);
    assert_true(v.vouched_by > v.first_seq);
    assert_int_equal(v.files, 3);
    assert_int_equal(v.first_seq, kept);
}

static void test_retention_marker_forged_or_absent(void **state)
{
    (void)state;
    ag_audit_t *a = open_keep(2000, 2);
    for (int i = 0; i < 40; i++)
        append(a, i, true, "rita", NULL);
    ag_audit_close(a);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    uint64_t start = v.first_seq;

    /* The marker's first_seq moved to where the attacker would like the chain to start. */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s.bak'", dir, dir);
    assert_int_equal(system(cmd), 0);
    char *buf = read_all(logpath);
    char *m = strstr(buf, "\"first_seq\":");
    assert_non_null(m);
    char *digit = m + strlen("\"first_seq\":");
    *digit = *digit == '9' ? '8' : (char)(*digit + 1);
    write_all(logpath, buf);
    free(buf);
    expect_fail(dir, "audit.log", 1, "hash mismatch");

    /* The genuine marker, but one more old file removed: it vouches for another start. */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mv '%s.bak' '%s'", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rm_rotated(1), 0);
    ag_audit_verify_t w;
    assert_int_equal(ag_audit_verify(dir, key, &w), AG_EINVAL);
    assert_non_null(strstr(w.why, "no keyed retention record vouches"));
    assert_true(start > 1);
}

static void test_retention_several_files_crash_safe(void **state)
{
    (void)state;
    /* Retention turned on over five rotated files removes four at the next rotation, each behind
     * its own retention record, so a crash after any of the removals still verifies. */
    ag_audit_t *a = open_log(2000);
    for (int i = 0; i < 30; i++)
        append(a, i, true, "sam", NULL);
    ag_audit_close(a);
    int before = count_rotated();
    assert_true(before >= 4);
    char cmd[400];
    a = open_keep(2000, 1);
    /* Keep a copy of the directory as it was just before the append that rotates. */
    while (count_rotated() != 1) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s.bak' && cp -a '%s' '%s.bak'", dir, dir, dir);
        assert_int_equal(system(cmd), 0);
        append(a, 99, true, "sam", NULL);
    }
    ag_audit_close(a);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_true(v.first_seq > 1);
    /* As if the process died after removing only the oldest file(s): put the later ones back. */
    for (int keep_from = 2; keep_from <= before; keep_from++) {
        snprintf(cmd, sizeof(cmd),
                 "for f in $(ls '%s.bak' | grep '^audit-' | sort | tail -n +%d); do "
                 "cp -a '%s.bak'/$f '%s'/; done",
                 dir, keep_from, dir, dir);
        assert_int_equal(system(cmd), 0);
        int rc = ag_audit_verify(dir, key, &v);
        if (rc)
            print_message("keep_from %d: %s line %llu: %s\n", keep_from, v.file,
                          (unsigned long long)v.line, v.why);
        assert_int_equal(rc, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s.bak'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_count_rendered(void **state)
{
    (void)state;
    ag_audit_t *a = open_log(0);
    ag_audit_record_t r = {.principal_kind = "none",
                           .remote = "10.1.2.3",
                           .action = "authenticate",
                           .status = 429,
                           .count = 37,
                           .reason = "throttled: too many failed authentications"};
    assert_int_equal(ag_audit_append(a, &r), 0);
    r.count = 0;
    assert_int_equal(ag_audit_append(a, &r), 0);
    ag_audit_close(a);
    char *buf = read_all(logpath);
    char *l2 = line_at(buf, 2);
    assert_non_null(strstr(buf, "\"status\":429,\"count\":37,"));
    assert_true(strstr(buf, "\"count\"") < l2);
    assert_null(strstr(l2, "\"count\""));
    free(buf);
    ag_audit_verify_t v;
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.records, 2);
}

static void test_key_file(void **state)
{
    (void)state;
    char kp[160];
    snprintf(kp, sizeof(kp), "%s/k/audit.key", dir);
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/k", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    unsigned char k1[AG_AUDIT_KEY_BYTES], k2[AG_AUDIT_KEY_BYTES];
    ag_diag_t d = {{0}};
    assert_int_equal(ag_audit_key_load(kp, false, k1, &d), AG_ENOTFOUND);
    assert_int_equal(ag_audit_key_load(kp, true, k1, &d), 0);
    assert_int_equal(ag_audit_key_load(kp, false, k2, &d), 0);
    assert_memory_equal(k1, k2, sizeof(k1));
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65);
    /* create does not replace an existing key */
    assert_int_equal(ag_audit_key_load(kp, true, k2, &d), 0);
    assert_memory_equal(k1, k2, sizeof(k1));
    assert_int_equal(chmod(kp, 0644), 0);
    assert_int_equal(ag_audit_key_load(kp, false, k2, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "chmod 600"));
    assert_int_equal(chmod(kp, 0600), 0);
    write_all(kp, "not a key\n");
    assert_int_equal(ag_audit_key_load(kp, false, k2, &d), AG_EINVAL);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
    assert_int_equal(v.records, 45);
    assert_int_equal(v.first_seq, 1);

    /* Deleting a whole rotated file in the middle breaks the chain at the next file. */
    snprintf(cmd, sizeof(cmd), "rm \"$(ls -d '%s'/audit-*.log | sort | sed -n 2p)\"", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
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
    assert_int_equal(ag_audit_verify(dir, key, &v), AG_EINVAL);
    assert_int_equal(v.line, 3);
    a = open_log(0);
    append(a, 3, true, "gina", NULL);
    ag_audit_close(a);
    assert_int_equal(ag_audit_verify(dir, key, &v), 0);
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
        cmocka_unit_test_setup_teardown(test_first_records_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_to_last_five, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_mismatched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_head_restart_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_rotated_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middle_rotated_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuilt_without_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_log_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_marker_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_marker_forged_or_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_several_files_crash_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_rendered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
