/*
 * bench_cluster_authz — the cost of authorization on a warm cache in cluster mode
 * (docs/CLUSTER.md "Cost"), beside a baseline measured in the same run:
 *   cached:    a user's cached principal (what a verified JWT resolves to) → decide, single node
 *              and cluster (+ freshness check and pin)
 *   baseline:  a single node's security store (local LMDB): api-key → user key (from the
 *              authenticator's cache; looked up — checksum, keyed hash, key index, cached
 *              principal — when not there) → decide read:data, cycling over users
 *   cluster:   the same against a security store replicated through etcd, plus what the guard
 *              adds in cluster mode: the freshness check (ag_cluster_fresh) and the revision pin
 *   fresh:     the freshness check alone
 * Each row is the best of three alternated passes of iterations / 3.
 * Needs a running etcd: bench_cluster_authz <endpoints> [iterations=1000000]. Writes its records
 * under /aegis/ of that etcd (use a scratch one).
 */
#include "ag_base.h"

#include <ftw.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ag_repl.h"
#include "auth/ag_auth.h"
#include "auth/ag_perm.h"
#include "auth/ag_secstore.h"
#include "bench_clock.h"
#include "cluster/ag_cluster.h"
#include "store/ag_kv.h"

#define N_ROLES 20
#define N_USERS 200

/* AEGIS_BENCH_CLOCK=cpu: this thread's CPU clock (bench_clock.h). */
static double now_s(void)
{
    return bench_seconds(CLOCK_THREAD_CPUTIME_ID);
}

static volatile int sink;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    AG_UNUSED(sb);
    AG_UNUSED(flag);
    AG_UNUSED(ftw);
    return remove(path);
}

/* Roles role-<r> and users user-<u> (3 roles each); keys[u] receives each user's key. */
static int fill(ag_secstore_t *s, char **keys, const char *tag)
{
    ag_diag_t d = {{0}};
    for (int r = 0; r < N_ROLES; r++) {
        char text[512], name[48];
        snprintf(name, sizeof(name), "%s-role-%d", tag, r);
        snprintf(text, sizeof(text),
                 "[{\"action\":\"read:collections\",\"collection\":\"team%d*\"},"
                 "{\"action\":\"write:data\",\"collection\":\"team%d_*\"},"
                 "{\"action\":\"read:data\",\"collection\":\"*-shared-%d\"}]",
                 r, r, r);
        json_t *arr = json_loads(text, 0, NULL);
        ag_perm_list_t perms = {0};
        int rc = ag_perm_list_parse(arr, "permissions", &perms, &d);
        if (rc == 0)
            rc = ag_secstore_role_put(s, name, arr, &perms, true, &d);
        ag_perm_list_release(&perms);
        json_decref(arr);
        if (rc) {
            fprintf(stderr, "role: %s\n", d.msg);
            return 1;
        }
    }
    for (int u = 0; u < N_USERS; u++) {
        char id[48];
        snprintf(id, sizeof(id), "%s-user-%d", tag, u);
        json_t *roles = json_array();
        for (int k = 0; k < 3; k++) {
            char name[48];
            snprintf(name, sizeof(name), "%s-role-%d", tag, (u + k * 7) % N_ROLES);
            json_array_append_new(roles, json_string(name));
        }
        int rc = ag_secstore_user_create(s, id, roles, &keys[u], &d);
        json_decref(roles);
        if (rc) {
            fprintf(stderr, "user: %s\n", d.msg);
            return 1;
        }
    }
    return 0;
}

static void decide_one(const ag_principal_t *p, const char *collection)
{
    ag_action_decl_t decl = AG_ACT(AG_VERB_READ, AG_RES_DATA);
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.collection = collection;
    ag_decision_t d;
    ag_auth_decide(p, &a, &d);
    sink += d.allowed;
    ag_decision_release(&d);
}

/* ns per authorization of a cached principal (the user's principal as the store caches it, what a
 * verified JWT resolves to) → decide; with cl, the freshness check and pin before it. */
static double run_cached(ag_secstore_t *s, const char *tag, ag_cluster_t *cl, long n, int *failures)
{
    char ids[N_USERS][48];
    for (int u = 0; u < N_USERS; u++)
        snprintf(ids[u], sizeof(ids[u]), "%s-user-%d", tag, u);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        int u = (int)(i % N_USERS);
        if (cl) {
            uint64_t rev;
            if (!ag_cluster_fresh(cl, &rev)) {
                (*failures)++;
                continue;
            }
            ag_repl_pin(rev);
        }
        ag_principal_t *q = NULL;
        if (ag_secstore_user_principal(s, ids[u], &q, NULL) != 0) {
            (*failures)++;
            continue;
        }
        char c[64];
        snprintf(c, sizeof(c), "team%d_x", (u + 7) % N_ROLES);
        decide_one(q, c);
        ag_principal_unref(q);
        if (cl)
            ag_repl_pin(0);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static void invalidate(void *ctx)
{
    ag_auth_invalidate(ctx);
}

/* ns per authorization through store s; with cl, the guard's cluster-mode additions too. */
static double run(ag_secstore_t *s, char **keys, ag_cluster_t *cl, long n, int *failures)
{
    ag_auth_config_t cfg;
    ag_auth_config_init(&cfg);
    cfg.api_key = "bench-cluster-root-key-0123456789abcdef";
    ag_auth_t *auth = NULL;
    ag_diag_t d = {{0}};
    if (ag_auth_new(&cfg, &auth, &d) != 0)
        return -1;
    ag_auth_hooks_t hooks = {0};
    hooks.lookup = ag_secstore_lookup;
    hooks.lookup_ctx = s;
    hooks.resolve_role = ag_secstore_resolve_role;
    hooks.resolve_ctx = s;
    ag_auth_set_hooks(auth, &hooks);
    /* As the server: every change to the store, local or arriving through the etcd watch, drops
     * the authenticator's cached principals. */
    ag_secstore_set_on_change(s, invalidate, auth);
    /* Warm: every principal built once. */
    for (int u = 0; u < N_USERS; u++) {
        ag_principal_t *q = NULL;
        if (ag_auth_authenticate(auth, keys[u], NULL, 0, &q, &d) == 0)
            ag_principal_unref(q);
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        int u = (int)(i % N_USERS);
        if (cl) {
            uint64_t rev;
            if (!ag_cluster_fresh(cl, &rev)) {
                (*failures)++;
                continue;
            }
            ag_repl_pin(rev);
        }
        ag_principal_t *q = NULL;
        if (ag_auth_authenticate(auth, keys[u], NULL, 0, &q, &d) != 0) {
            (*failures)++;
            continue;
        }
        char c[64];
        snprintf(c, sizeof(c), "team%d_x", (u + 7) % N_ROLES);
        decide_one(q, c);
        ag_principal_unref(q);
        if (cl)
            ag_repl_pin(0);
    }
    double ns = (now_s() - t0) * 1e9 / (double)n;
    ag_secstore_set_on_change(s, NULL, NULL);
    ag_auth_free(auth);
    return ns;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cluster_authz <etcd endpoints> [iterations]\n");
        return 2;
    }
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000;
    if (n <= 0 || sodium_init() < 0)
        return 2;
    char dir[64];
    snprintf(dir, sizeof(dir), "%s/aegis-bench-cluster-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    char local_dir[128], repl_dir[128];
    snprintf(local_dir, sizeof(local_dir), "%s/local", dir);
    snprintf(repl_dir, sizeof(repl_dir), "%s/replicated", dir);
    char **lkeys = calloc(N_USERS, sizeof(*lkeys)), **rkeys = calloc(N_USERS, sizeof(*rkeys));
    ag_diag_t d = {{0}};
    ag_secstore_t *local = NULL, *repl = NULL;
    ag_cluster_t *cl = NULL;
    int rc = 1;
    if (!lkeys || !rkeys || ag_secstore_open(local_dir, &local, &d) != 0 ||
        fill(local, lkeys, "l") != 0)
        goto out;
    ag_cluster_config_t ccfg = {argv[1], "bench", "http://127.0.0.1:1", 3000};
    if (ag_cluster_new(&ccfg, &cl, &d) != 0) {
        fprintf(stderr, "bench_cluster_authz: %s\n", d.msg);
        goto out;
    }
    ag_kv_set_repl(ag_cluster_repl(cl));
    double t_setup = now_s();
    if (ag_secstore_open(repl_dir, &repl, &d) != 0 || fill(repl, rkeys, "r") != 0 ||
        ag_cluster_start(cl, &d) != 0) {
        fprintf(stderr, "bench_cluster_authz: %s\n", d.msg);
        goto out;
    }
    t_setup = now_s() - t_setup;
    int fl = 0, fr = 0, ff = 0;
    /* Alternated, best of three each: the machine is shared and the first pass warms caches. */
    double cbase = 1e18, cclus = 1e18, base = 1e18, clus = 1e18;
    for (int round = 0; round < 3; round++) {
        cbase = AG_MIN(cbase, run_cached(local, "l", NULL, n / 3, &fl));
        cclus = AG_MIN(cclus, run_cached(repl, "r", cl, n / 3, &fr));
        base = AG_MIN(base, run(local, lkeys, NULL, n / 3, &fl));
        clus = AG_MIN(clus, run(repl, rkeys, cl, n / 3, &fr));
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        uint64_t rev;
        ff += !ag_cluster_fresh(cl, &rev);
        sink += (int)rev;
    }
    double fresh = (now_s() - t0) * 1e9 / (double)n;
    printf("bench_cluster_authz: %d roles, %d users (3 roles each); %.2f s to write them through "
           "etcd; %ld iterations\n",
           N_ROLES + 0, N_USERS, t_setup, n);
    printf("  %-52s %8.1f ns\n", "baseline: single node, cached principal + decide", cbase);
    printf("  %-52s %8.1f ns\n", "cluster: fresh check + pin + cached principal + decide", cclus);
    printf("  %-52s %8.1f ns  (failures %d)\n", "baseline: single node, user key + decide", base,
           fl);
    printf("  %-52s %8.1f ns  (failures %d)\n", "cluster: fresh check + pin + user key + decide",
           clus, fr);
    printf("  %-52s %8.1f ns  (stale answers %d)\n", "cluster: fresh check alone", fresh, ff);
    rc = fl || fr ? 1 : 0;
out:
    ag_secstore_close(repl);
    ag_kv_set_repl(NULL);
    ag_cluster_free(cl);
    ag_secstore_close(local);
    for (int u = 0; u < N_USERS; u++) {
        if (lkeys)
            ag_secstore_key_free(lkeys[u]);
        if (rkeys)
            ag_secstore_key_free(rkeys[u]);
    }
    free(lkeys);
    free(rkeys);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
