/* Unit tests: the record store (store/ag_kv.h) — tables, transactions, the walk, error codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <ftw.h>
#include <unistd.h>

#include "store/ag_kv.h"

typedef struct fixture {
    char dir[256];
    ag_kv_t *kv;
    ag_kv_table_t t;
} fixture_t;

static void open_kv(fixture_t *f, size_t map_size)
{
    ag_diag_t d = {{0}};
    int rc = ag_kv_open(f->dir, "test store", map_size, 4, &f->kv, &d);
    if (rc)
        fail_msg("ag_kv_open: %s", d.msg);
    ag_kv_txn_t *txn;
    assert_int_equal(ag_kv_begin(f->kv, true, &txn, &d), 0);
    assert_int_equal(ag_kv_table(txn, "things", &f->t), 0);
    assert_int_equal(ag_kv_commit(txn, &d), 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/aegis-kv-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    open_kv(f, (size_t)1 << 20);
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
    ag_kv_close(f->kv);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void put(fixture_t *f, const char *k, const char *v)
{
    ag_kv_txn_t *txn;
    assert_int_equal(ag_kv_begin(f->kv, true, &txn, NULL), 0);
    assert_int_equal(ag_kv_put(txn, f->t, k, strlen(k), v, strlen(v)), 0);
    assert_int_equal(ag_kv_commit(txn, NULL), 0);
}

/* The value under k as a string in buf, or "" when there is none. */
static const char *get(fixture_t *f, const char *k, char *buf, size_t len)
{
    ag_kv_txn_t *txn;
    ag_kv_val_t v;
    assert_int_equal(ag_kv_begin(f->kv, false, &txn, NULL), 0);
    int rc = ag_kv_get(txn, f->t, k, strlen(k), &v);
    if (rc == 0)
        snprintf(buf, len, "%.*s", (int)v.len, (const char *)v.data);
    else
        buf[0] = '\0';
    assert_true(rc == 0 || rc == AG_ENOTFOUND);
    ag_kv_abort(txn);
    return buf;
}

static void test_put_get_del_persist(void **state)
{
    fixture_t *f = *state;
    char buf[64];
    put(f, "b", "two");
    put(f, "a", "one");
    put(f, "b", "deux");
    assert_string_equal(get(f, "a", buf, sizeof(buf)), "one");
    assert_string_equal(get(f, "b", buf, sizeof(buf)), "deux");
    assert_string_equal(get(f, "c", buf, sizeof(buf)), "");

    ag_kv_txn_t *txn;
    assert_int_equal(ag_kv_begin(f->kv, true, &txn, NULL), 0);
    assert_int_equal(ag_kv_del(txn, f->t, "a", 1), 0);
    assert_int_equal(ag_kv_del(txn, f->t, "a", 1), AG_ENOTFOUND);
    ag_kv_abort(txn); /* nothing kept */
    assert_string_equal(get(f, "a", buf, sizeof(buf)), "one");

    assert_int_equal(ag_kv_begin(f->kv, true, &txn, NULL), 0);
    assert_int_equal(ag_kv_del(txn, f->t, "a", 1), 0);
    assert_int_equal(ag_kv_commit(txn, NULL), 0);

    ag_kv_close(f->kv);
    open_kv(f, (size_t)1 << 20);
    assert_string_equal(get(f, "a", buf, sizeof(buf)), "");
    assert_string_equal(get(f, "b", buf, sizeof(buf)), "deux");
}

typedef struct walk {
    char seen[64];
    const char *drop_prefix;
} walk_t;

static int visit(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(v);
    walk_t *w = ud;
    strncat(w->seen, k.data, AG_MIN(k.len, sizeof(w->seen) - strlen(w->seen) - 1));
    *drop = w->drop_prefix && k.len > 0 && ((const char *)k.data)[0] == w->drop_prefix[0];
    return 0;
}

static int stop_at_c(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    visit(ud, k, v, drop);
    return ((const char *)k.data)[0] == 'c' ? AG_ECONFLICT : 0;
}

static void test_walk_in_key_order_with_drop(void **state)
{
    fixture_t *f = *state;
    const char *keys[] = {"d", "b", "x1", "a", "x2", "c"};
    for (size_t i = 0; i < AG_ARRAY_LEN(keys); i++)
        put(f, keys[i], "v");
    ag_kv_txn_t *txn;
    size_t n = 0;
    walk_t w = {.drop_prefix = "x"};
    assert_int_equal(ag_kv_begin(f->kv, true, &txn, NULL), 0);
    assert_int_equal(ag_kv_each(txn, f->t, visit, &w), 0);
    assert_string_equal(w.seen, "abcdx1x2");
    assert_int_equal(ag_kv_count(txn, f->t, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ag_kv_commit(txn, NULL), 0);

    walk_t w2 = {0};
    assert_int_equal(ag_kv_begin(f->kv, false, &txn, NULL), 0);
    assert_int_equal(ag_kv_each(txn, f->t, stop_at_c, &w2), AG_ECONFLICT);
    assert_string_equal(w2.seen, "abc");
    ag_kv_abort(txn);
}

/* A full map is AG_ENOSPACE, and the transaction can still be abandoned cleanly. */
static void test_full_map_is_enospace(void **state)
{
    fixture_t *f = *state;
    static char big[8192];
    memset(big, 'z', sizeof(big));
    ag_kv_txn_t *txn;
    assert_int_equal(ag_kv_begin(f->kv, true, &txn, NULL), 0);
    int rc = 0;
    char key[32];
    for (int i = 0; i < 1000 && rc == 0; i++) {
        snprintf(key, sizeof(key), "k%04d", i);
        rc = ag_kv_put(txn, f->t, key, strlen(key), big, sizeof(big));
    }
    assert_int_equal(rc, AG_ENOSPACE);
    ag_kv_abort(txn);
    char buf[8];
    assert_string_equal(get(f, "k0000", buf, sizeof(buf)), "");
}

static void test_open_failure_names_the_store(void **state)
{
    AG_UNUSED(state);
    ag_kv_t *kv = NULL;
    ag_diag_t d = {{0}};
    int rc = ag_kv_open("/nonexistent/aegis-kv", "test store", 1 << 20, 4, &kv, &d);
    assert_int_equal(rc, AG_ESTORAGE);
    assert_null(kv);
    assert_non_null(strstr(d.msg, "cannot open the test store in /nonexistent/aegis-kv"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_del_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_in_key_order_with_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_map_is_enospace, setup, teardown),
        cmocka_unit_test(test_open_failure_names_the_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
