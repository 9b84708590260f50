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

/* ---- replication (docs/CLUSTER.md): a fake replicator standing in for etcd ------------------ */

typedef struct fake {
    uint64_t rev;       /* the shared store's revision */
    uint64_t published; /* what the local copy reflects (as the cluster would track it) */
    int commits, conflicts, remote_calls;
    bool unavailable;
    void *sink;
    ag_repl_apply_fn apply;
    size_t last_n;
    char last_key[8][16];
    bool last_del[8];
} fake_t;

static fake_t fake;

static int fake_attach(void *ctx, const char *name, void *sink, ag_repl_apply_fn apply,
                       ag_diag_t *diag)
{
    AG_UNUSED(ctx);
    AG_UNUSED(diag);
    assert_string_equal(name, "replicated-store");
    fake.sink = sink;
    fake.apply = apply;
    ag_repl_change_t seed = {"things", "seed", 4, "1", 1, false};
    fake.rev = fake.published = 5;
    return apply(sink, true, &seed, 1, 5) < 0 ? AG_ESTORAGE : 0;
}

static void fake_detach(void *ctx, void *sink)
{
    AG_UNUSED(ctx);
    assert_ptr_equal(sink, fake.sink);
    fake.sink = NULL;
}

static uint64_t fake_base(void *ctx)
{
    AG_UNUSED(ctx);
    return ag_repl_pinned() ? ag_repl_pinned() : fake.published;
}

static int fake_commit(void *ctx, const char *name, uint64_t base, const ag_repl_change_t *ch,
                       size_t n, uint64_t *rev, ag_diag_t *diag)
{
    AG_UNUSED(ctx);
    assert_string_equal(name, "replicated-store");
    if (fake.unavailable)
        return ag_fail(diag, AG_EUNAVAILABLE, "fake: unreachable");
    if (base != fake.rev) {
        fake.conflicts++;
        return ag_fail(diag, AG_ECONFLICT, "fake: changed since %llu", (unsigned long long)base);
    }
    fake.commits++;
    fake.last_n = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        assert_string_equal(ch[i].table, "things");
        snprintf(fake.last_key[i], sizeof(fake.last_key[i]), "%.*s", (int)ch[i].klen,
                 (const char *)ch[i].key);
        fake.last_del[i] = ch[i].del;
    }
    *rev = ++fake.rev;
    return 0;
}

static void fake_done(void *ctx, uint64_t rev, bool ok)
{
    AG_UNUSED(ctx);
    assert_true(ok);
    fake.published = rev;
}

static void on_remote(void *ctx)
{
    AG_UNUSED(ctx);
    fake.remote_calls++;
}

static int put_one(fixture_t *f, const char *k, const char *v, ag_diag_t *d)
{
    ag_kv_txn_t *txn;
    int rc = ag_kv_begin(f->kv, true, &txn, d);
    if (rc == 0 && (rc = ag_kv_put(txn, f->t, k, strlen(k), v, strlen(v))) != 0)
        ag_kv_abort(txn);
    return rc ? rc : ag_kv_commit(txn, d);
}

static int drop_all(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(ud);
    AG_UNUSED(k);
    AG_UNUSED(v);
    *drop = true;
    return 0;
}

/* Open loads the shared state; a commit goes to the replicator first and is compared against
 * the base (or pinned) revision; a refused commit leaves the local copy unchanged; changes from
 * elsewhere are applied in revision order, older ones skipped, and the owner is told. */
static void test_replicated(void **state)
{
    AG_UNUSED(state);
    static const ag_repl_t repl = {NULL,      fake_attach, fake_detach,
                                   fake_base, fake_commit, fake_done};
    memset(&fake, 0, sizeof(fake));
    fixture_t f = {0};
    snprintf(f.dir, sizeof(f.dir), "/tmp/aegis-kvr-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    ag_kv_set_repl(&repl);
    ag_diag_t d = {{0}};
    assert_int_equal(ag_kv_open(f.dir, "replicated store", 1 << 20, 4, &f.kv, &d), 0);
    assert_true(ag_kv_replicated(f.kv));
    ag_kv_set_on_remote(f.kv, on_remote, NULL);
    ag_kv_txn_t *txn;
    assert_int_equal(ag_kv_begin(f.kv, true, &txn, &d), 0);
    assert_int_equal(ag_kv_table(txn, "things", &f.t), 0);
    assert_int_equal(ag_kv_commit(txn, &d), 0);
    assert_int_equal(fake.commits, 0); /* nothing changed: nothing sent */
    char buf[16];
    assert_string_equal(get(&f, "seed", buf, sizeof(buf)), "1");

    /* A local write: sent, then committed locally. */
    assert_int_equal(put_one(&f, "a", "x", &d), 0);
    assert_int_equal(fake.commits, 1);
    assert_int_equal(fake.last_n, 1);
    assert_string_equal(fake.last_key[0], "a");
    assert_false(fake.last_del[0]);
    assert_int_equal(fake.published, 6);
    assert_string_equal(get(&f, "a", buf, sizeof(buf)), "x");

    /* Another node's change at revision 7: applied, owner told. An old one is skipped. */
    ag_repl_change_t ch[2] = {{"things", "a", 1, NULL, 0, true}, {"things", "b", 1, "y", 1, false}};
    fake.rev = 7;
    assert_int_equal(fake.apply(fake.sink, false, ch, 2, 7), 0);
    assert_int_equal(fake.remote_calls, 1);
    assert_string_equal(get(&f, "a", buf, sizeof(buf)), "");
    assert_string_equal(get(&f, "b", buf, sizeof(buf)), "y");
    ag_repl_change_t old = {"things", "c", 1, "z", 1, false};
    assert_int_equal(fake.apply(fake.sink, false, &old, 1, 6), 1);
    assert_string_equal(get(&f, "c", buf, sizeof(buf)), "");
    assert_int_equal(fake.remote_calls, 1);

    /* The base (6) is behind the shared revision (7): refused, nothing written locally. */
    assert_int_equal(put_one(&f, "x", "1", &d), AG_ECONFLICT);
    assert_int_equal(fake.conflicts, 1);
    assert_string_equal(get(&f, "x", buf, sizeof(buf)), "");
    /* Pinned at the current revision: accepted. */
    ag_repl_pin(7);
    assert_int_equal(put_one(&f, "x", "1", &d), 0);
    ag_repl_pin(0);
    assert_string_equal(get(&f, "x", buf, sizeof(buf)), "1");
    /* Unreachable: 503-class error, nothing written. */
    fake.unavailable = true;
    assert_int_equal(put_one(&f, "y", "1", &d), AG_EUNAVAILABLE);
    assert_string_equal(get(&f, "y", buf, sizeof(buf)), "");
    fake.unavailable = false;
    /* Deletions by the walk are sent as deletions. */
    assert_int_equal(ag_kv_begin(f.kv, true, &txn, &d), 0);
    assert_int_equal(ag_kv_each(txn, f.t, drop_all, NULL), 0);
    assert_int_equal(ag_kv_commit(txn, &d), 0);
    assert_int_equal(fake.last_n, 3); /* b, seed, x */
    for (size_t i = 0; i < 3; i++)
        assert_true(fake.last_del[i]);
    /* A reset replaces everything. */
    ag_repl_change_t only = {"things", "r", 1, "1", 1, false};
    assert_int_equal(fake.apply(fake.sink, true, &only, 1, 20), 0);
    assert_string_equal(get(&f, "r", buf, sizeof(buf)), "1");
    ag_kv_close(f.kv);
    assert_null(fake.sink);
    ag_kv_set_repl(NULL);
    nftw(f.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_del_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_in_key_order_with_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_map_is_enospace, setup, teardown),
        cmocka_unit_test(test_open_failure_names_the_store),
        cmocka_unit_test(test_replicated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
