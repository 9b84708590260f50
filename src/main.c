/* aegis — argument parsing, configuration, signals and wiring. Nothing else lives here. */
#include "ag_base.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sodium.h>

#include "ag_clock.h"
#include "ag_config.h"
#include "ag_log.h"
#include "ag_pool.h"
#include "ag_seal.h"
#include "ag_version.h"
#include "api/ag_api.h"
#include "api/ag_grpc_api.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots.h"
#include "auth/ag_audit.h"
#include "auth/ag_token_cli.h"
#include "cli/ag_cli.h"
#include "cluster/ag_cluster.h"
#include "cluster/ag_etcd.h"
#include "http/ag_http.h"
#include "index/ag_simd.h"
#include "store/ag_kv.h"
#include "store/ag_store.h"

extern char **environ;

static void usage(FILE *f)
{
    fprintf(f, "usage: aegis <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve      run the server\n"
               "  token      mint a JWT signed with service.api_key (see aegis token --help)\n"
               "  keygen     print a strong random API key\n"
               "  audit      verify the audit log's hash chain (aegis audit verify --help)\n"
               "  unseal     open a full snapshot's sealed security state: aegis unseal IN OUT\n"
               "             (passphrase from AEGIS_SEAL_PASSPHRASE or the first line of stdin)\n"
               "  users      database users of a running server (aegis users --help)\n"
               "  roles      custom roles of a running server (aegis roles --help)\n"
               "  keys       database API keys of a running server (aegis keys --help)\n"
               "  backup     server-side backups and their schedules (aegis backup --help)\n"
               "  import     upload points from JSONL or fvecs (aegis import --help)\n"
               "  version    print the version\n"
               "\n"
               "aegis serve options:\n"
               "  --config FILE     YAML configuration file\n"
               "  --storage DIR     storage directory (default ./storage)\n"
               "  --host ADDR       bind address (default 127.0.0.1)\n"
               "  --port N          HTTP port (default 6333)\n"
               "  --insecure        run without authentication (loopback only)\n"
               "  --log-level L     debug, info, warn or error\n"
               "\n"
               "Every configuration key can also be set as AEGIS__SECTION__KEY, e.g.\n"
               "AEGIS__SERVICE__HTTP_PORT=6333. Precedence: flags, environment, file, defaults.\n");
}

/* Reads a whole file into a new NUL-terminated buffer (caller frees). */
static char *read_file(const char *path, ag_diag_t *diag, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ag_fail(diag, AG_ECONFIG, "%s: cannot open '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 24)) {
                ag_fail(diag, AG_ECONFIG, "%s: '%s' is too large", what, path);
                free(buf);
                fclose(f);
                return NULL;
            }
            char *g = realloc(buf, cap);
            if (!g) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = g;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err || len == 0) {
        ag_fail(diag, AG_ECONFIG, "%s: cannot read '%s'", what, path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Checks that the PEM material parses, so a bad file is reported by its setting's name rather
 * than as a failure to listen. */
static int check_tls_material(const char *cert, const char *key, const char *ca, ag_diag_t *diag)
{
    gnutls_x509_crt_t crt[8];
    unsigned int ncrt = 8;
    gnutls_datum_t d = {(unsigned char *)(uintptr_t)cert, (unsigned int)strlen(cert)};
    if (gnutls_x509_crt_list_import(crt, &ncrt, &d, GNUTLS_X509_FMT_PEM, 0) < 0 || ncrt == 0)
        return ag_fail(diag, AG_ECONFIG, "tls.cert: not a PEM certificate");
    for (unsigned int i = 0; i < ncrt; i++)
        gnutls_x509_crt_deinit(crt[i]);
    gnutls_x509_privkey_t pk;
    gnutls_x509_privkey_init(&pk);
    gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, (unsigned int)strlen(key)};
    int rc = gnutls_x509_privkey_import(pk, &k, GNUTLS_X509_FMT_PEM);
    gnutls_x509_privkey_deinit(pk);
    if (rc < 0)
        return ag_fail(diag, AG_ECONFIG, "tls.key: not a PEM private key");
    gnutls_certificate_credentials_t cred;
    gnutls_certificate_allocate_credentials(&cred);
    rc = gnutls_certificate_set_x509_key_mem(cred, &d, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (rc < 0)
        return ag_fail(diag, AG_ECONFIG, "tls.key: does not belong to the certificate in tls.cert");
    if (ca) {
        ncrt = 8;
        gnutls_datum_t c = {(unsigned char *)(uintptr_t)ca, (unsigned int)strlen(ca)};
        if (gnutls_x509_crt_list_import(crt, &ncrt, &c, GNUTLS_X509_FMT_PEM, 0) < 0 || ncrt == 0)
            return ag_fail(diag, AG_ECONFIG, "tls.ca_cert: not a PEM certificate");
        for (unsigned int i = 0; i < ncrt; i++)
            gnutls_x509_crt_deinit(crt[i]);
    }
    return 0;
}

/* Resident set size of the process, for the start-up report (0 when /proc is unavailable). */
static double resident_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, rss = 0;
    if (!f)
        return 0.0;
    if (fscanf(f, "%lu %lu", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static int parse_serve_args(int argc, char **argv, ag_config_t *cfg, ag_diag_t *diag)
{
    const char *config_file = NULL;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_file = argv[i + 1];
    int rc = 0;
    if (config_file && (rc = ag_config_load_file(cfg, config_file, diag)) != 0)
        return rc;
    if ((rc = ag_config_load_env(cfg, environ, diag)) != 0)
        return rc;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--insecure") == 0) {
            cfg->insecure = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *key = NULL;
        if (strcmp(a, "--config") == 0)
            key = "";
        else if (strcmp(a, "--storage") == 0)
            key = "storage.storage_path";
        else if (strcmp(a, "--host") == 0)
            key = "service.host";
        else if (strcmp(a, "--port") == 0)
            key = "service.http_port";
        else if (strcmp(a, "--log-level") == 0)
            key = "log_level";
        else
            return ag_fail(diag, AG_ECONFIG, "unknown option '%.64s' (see aegis serve --help)", a);
        if (!next)
            return ag_fail(diag, AG_ECONFIG, "option %s needs a value", a);
        i++;
        if (*key && (rc = ag_config_set(cfg, key, next, diag)) != 0)
            return rc;
    }
    return 0;
}

static int serve(int argc, char **argv)
{
    ag_config_t cfg;
    ag_config_init(&cfg);
    ag_diag_t diag = {{0}};
    ag_store_t *store = NULL;
    ag_http_t *http = NULL;
    ag_grpc_t *grpc = NULL;
    ag_guard_t *guard = NULL;
    ag_audit_t *audit = NULL;
    ag_cluster_t *cluster = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;
    int exit_code = 1;

    int rc = parse_serve_args(argc, argv, &cfg, &diag);
    ag_log_level_t level;
    if (rc == 0 && ag_log_parse_level(cfg.log_level, &level) != 0)
        rc = ag_fail(&diag, AG_ECONFIG, "log_level: expected debug, info, warn or error");
    if (rc == 0)
        rc = ag_config_check(&cfg, &diag);
    if (rc == 0 && cfg.max_request_timeout_s == 0)
        rc = ag_fail(&diag, AG_ECONFIG,
                     "service.max_request_timeout_sec: expected an integer from 1 to 86400");
    if (rc == 0)
        rc = ag_simd_env_check(&diag); /* a mistyped AEGIS_SIMD would silently run scalar */
    if (rc) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    ag_log_set_level(level);
    char simd[256];
    ag_simd_describe(simd, sizeof(simd));
    ag_log(AG_LOG_INFO, "%s", simd);
    /* Settings whose zero (or tiny value) would mean something nobody wants are refused, not
     * reinterpreted. */
    const struct {
        uint64_t value, min;
        const char *name;
    } floors[] = {
        {cfg.max_token_ttl_s, 60, "service.max_token_ttl_sec"},
        {cfg.auth_max_failures, 1, "service.auth_max_failures"},
        {cfg.auth_failure_window_s, 1, "service.auth_failure_window_sec"},
        {cfg.auth_lockout_s, 1, "service.auth_lockout_sec"},
        {cfg.max_connections, 1, "service.max_connections"},
        {cfg.header_timeout_s, 1, "service.header_timeout_sec"},
        {cfg.body_timeout_s, 1, "service.body_timeout_sec"},
        {cfg.map_size_gb, 1, "storage.map_size_gb"},
        {cfg.initial_map_size_mb, 1, "storage.initial_map_size_mb"},
    };
    for (size_t i = 0; i < AG_ARRAY_LEN(floors); i++) {
        if (floors[i].value < floors[i].min) {
            fprintf(stderr, "aegis: %s: expected at least %llu\n", floors[i].name,
                    (unsigned long long)floors[i].min);
            goto out;
        }
    }

    if (cfg.initial_map_size_mb > cfg.map_size_gb * 1024) {
        fprintf(
            stderr,
            "aegis: storage.initial_map_size_mb (%llu) is above storage.map_size_gb (%llu GiB), "
            "the ceiling the map grows to\n",
            (unsigned long long)cfg.initial_map_size_mb, (unsigned long long)cfg.map_size_gb);
        goto out;
    }

    if (cfg.insecure) {
        if (strcmp(cfg.host, "127.0.0.1") != 0 && strcmp(cfg.host, "::1") != 0) {
            fprintf(stderr, "aegis: --insecure binds to loopback only (service.host is %s)\n",
                    cfg.host);
            goto out;
        }
        ag_log(AG_LOG_WARN, "running with --insecure: every request is allowed without a "
                            "credential; do not use this outside a development machine");
    }
    if (!cfg.enable_cors && cfg.cors_allowed_origins && *cfg.cors_allowed_origins) {
        fprintf(stderr, "aegis: service.cors_allowed_origins is set but service.enable_cors is "
                        "false; enable CORS or drop the list\n");
        goto out;
    }
    if (cfg.enable_tls) {
        if (!cfg.tls_cert || !cfg.tls_key) {
            fprintf(stderr, "aegis: service.enable_tls needs tls.cert and tls.key\n");
            goto out;
        }
        if (!(cert = read_file(cfg.tls_cert, &diag, "tls.cert")) ||
            !(key = read_file(cfg.tls_key, &diag, "tls.key"))) {
            fprintf(stderr, "aegis: %s\n", diag.msg);
            goto out;
        }
        if (cfg.verify_https_client_certificate) {
            if (!cfg.tls_ca_cert) {
                fprintf(stderr, "aegis: service.verify_https_client_certificate needs "
                                "tls.ca_cert\n");
                goto out;
            }
            if (!(ca = read_file(cfg.tls_ca_cert, &diag, "tls.ca_cert"))) {
                fprintf(stderr, "aegis: %s\n", diag.msg);
                goto out;
            }
        }
        if (check_tls_material(cert, key, ca, &diag) != 0) {
            fprintf(stderr, "aegis: %s\n", diag.msg);
            goto out;
        }
    }

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    ag_pool_init(0);
    ag_store_config_t scfg = {cfg.storage_path, (size_t)cfg.initial_map_size_mb << 20,
                              (double)cfg.flush_interval_ms / 1000.0,
                              (size_t)cfg.map_size_gb << 30};
    double t0 = ag_now_mono();
    if ((rc = ag_store_open(&scfg, &store, &diag)) != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    ag_log(AG_LOG_INFO, "storage %s opened in %.2fs, resident memory %.1f MB", cfg.storage_path,
           ag_now_mono() - t0, resident_mb());

    /* Cluster mode (docs/CLUSTER.md): the security stores become local copies of the state in
     * etcd, so the replicator is installed before the guard opens them. */
    if (cfg.cluster_enabled) {
        char adv[600];
        if (cfg.advertise_url)
            snprintf(adv, sizeof(adv), "%s", cfg.advertise_url);
        else
            snprintf(adv, sizeof(adv), "%s://%s:%u", cfg.enable_tls ? "https" : "http", cfg.host,
                     (unsigned)cfg.http_port);
        ag_cluster_config_t ccfg = {cfg.etcd_endpoints, cfg.node_id, adv, cfg.stale_after_ms};
        if ((rc = ag_etcd_set_tls(cfg.etcd_ca_file, cfg.etcd_cert_file, cfg.etcd_key_file,
                                  &diag)) != 0 ||
            (rc = ag_cluster_new(&ccfg, &cluster, &diag)) != 0) {
            fprintf(stderr, "aegis: %s\n", diag.msg);
            goto out;
        }
        ag_kv_set_repl(ag_cluster_repl(cluster));
    }
    ag_guard_config_t gcfg = {
        .insecure = cfg.insecure,
        .api_key = cfg.api_key,
        .alt_api_key = cfg.alt_api_key,
        .read_only_api_key = cfg.read_only_api_key,
        .jwt_rbac = cfg.jwt_rbac,
        .jwt_leeway_s = (int64_t)cfg.jwt_leeway_s,
        .storage_path = cfg.storage_path,
        .auth_max_failures = (unsigned)cfg.auth_max_failures,
        .auth_failure_window_s = (unsigned)cfg.auth_failure_window_s,
        .auth_lockout_s = (unsigned)cfg.auth_lockout_s,
        .cluster = cluster,
    };
    if ((rc = ag_guard_new(&gcfg, store, &guard, &diag)) != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    if (cluster && (rc = ag_cluster_start(cluster, &diag)) != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    char audit_dir[4096], audit_key_path[4096];
    snprintf(audit_dir, sizeof(audit_dir), "%s/audit", cfg.storage_path);
    /* The key lives outside the audit directory, so rewriting that directory is not enough to
     * rebuild a chain that verifies. */
    if (cfg.audit_key_file)
        snprintf(audit_key_path, sizeof(audit_key_path), "%s", cfg.audit_key_file);
    else
        snprintf(audit_key_path, sizeof(audit_key_path), "%s/%s", cfg.storage_path,
                 AG_AUDIT_KEY_FILE);
    unsigned char audit_key[AG_AUDIT_KEY_BYTES];
    if ((rc = ag_audit_key_load(audit_key_path, true, audit_key, &diag)) != 0) {
        fprintf(stderr, "aegis: storage.audit_key_file: %s\n", diag.msg);
        goto out;
    }
    ag_audit_config_t acfg = {.dir = audit_dir,
                              .max_bytes = cfg.audit_max_mb << 20,
                              .max_files = cfg.audit_max_files,
                              .key = audit_key,
                              .node_id = cfg.cluster_enabled ? cfg.node_id : NULL};
    rc = ag_audit_open(&acfg, &audit, &diag);
    sodium_memzero(audit_key, sizeof(audit_key));
    if (rc != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    ag_audit_add_secret(audit, cfg.api_key);
    ag_audit_add_secret(audit, cfg.alt_api_key);
    ag_audit_add_secret(audit, cfg.read_only_api_key);
    ag_guard_set_audit(guard, audit);
    static ag_api_t api;
    if ((rc = ag_api_init(&api, &cfg, store, guard, &diag)) != 0 ||
        (rc = ag_shard_start(&api, &diag)) != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ag_http_config_t hcfg = {
        .host = cfg.host,
        .port = (uint16_t)cfg.http_port,
        .threads = cfg.max_workers ? (unsigned)cfg.max_workers
                                   : (unsigned)AG_MAX(4, ncpu > 0 ? 2 * ncpu : 4),
        .max_body = (size_t)cfg.max_request_size_mb << 20,
        .conn_timeout = 60,
        .max_connections = (unsigned)cfg.max_connections,
        .header_timeout = (unsigned)cfg.header_timeout_s,
        .body_timeout = (unsigned)cfg.body_timeout_s,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .tls_ca_pem = ca,
        .verify_client = cfg.verify_https_client_certificate,
        .access_log = cfg.access_log,
        .trusted_proxies = cfg.trusted_proxies,
        .max_connections_per_ip = (unsigned)cfg.max_connections_per_ip,
        .cors = cfg.enable_cors,
        .cors_origins = cfg.cors_allowed_origins,
        .cheap = ag_api_cheap,
    };
    if ((rc = ag_http_start(&hcfg, ag_api_begin, ag_api_handle, &api, &http, &diag)) != 0) {
        fprintf(stderr, "aegis: %s\n", diag.msg);
        goto out;
    }
    atomic_store(&api.http, http);
    if (cfg.grpc_port) {
        ag_grpc_config_t grpc_cfg = {
            .host = cfg.host,
            .port = (uint16_t)cfg.grpc_port,
            .threads = hcfg.threads,
            .max_msg = hcfg.max_body,
            .max_connections = (unsigned)cfg.max_connections,
            .max_connections_per_ip = (unsigned)cfg.max_connections_per_ip,
            .trusted_proxies = cfg.trusted_proxies,
            .idle_s = (unsigned)cfg.header_timeout_s,
            .body_s = (unsigned)cfg.body_timeout_s,
            .tls_cert_pem = cert,
            .tls_key_pem = key,
            .tls_ca_pem = ca,
            .verify_client = cfg.verify_https_client_certificate,
        };
        if ((rc = ag_grpc_api_init(&api, &diag)) != 0 ||
            (rc = ag_grpc_start(&grpc_cfg, ag_grpc_api_lookup, ag_grpc_api_handle, &api, &grpc,
                                &diag)) != 0) {
            fprintf(stderr, "aegis: %s\n", diag.msg);
            goto out;
        }
        ag_log(AG_LOG_INFO, "aegis gRPC listening on %s:%u (%s)", cfg.host,
               (unsigned)ag_grpc_port(grpc),
               !cert                                 ? "h2c, no TLS"
               : cfg.verify_https_client_certificate ? "h2, TLS 1.2+, client certificates"
                                                     : "h2, TLS 1.2+");
    }
    ag_log(AG_LOG_INFO, "aegis %s listening on %s://%s:%u%s", AG_VERSION, cert ? "https" : "http",
           cfg.host, (unsigned)ag_http_port(http),
           !cert ? " (no TLS)"
           : cfg.verify_https_client_certificate
               ? " (TLS 1.2+, client certificates required from tls.ca_cert)"
               : " (TLS 1.2+)");

    int sig = 0;
    sigwait(&sigs, &sig);
    ag_log(AG_LOG_INFO, "signal %d: finishing in-flight requests", sig);
    ag_grpc_stop(grpc, 30.0);
    grpc = NULL;
    ag_http_stop(http, 30.0);
    http = NULL;
    exit_code = 0;
out:
    if (grpc)
        ag_grpc_stop(grpc, 5.0);
    if (http)
        ag_http_stop(http, 5.0);
    ag_cluster_meta_stop(cluster); /* it creates and drops collections in the store */
    ag_snapshots_stop();           /* a running snapshot job finishes before the store closes */
    ag_guard_free(guard);
    ag_kv_set_repl(NULL);
    ag_cluster_free(cluster); /* after the stores it feeds are closed */
    ag_audit_close(audit);
    ag_store_close(store);
    ag_pool_shutdown();
    if (store)
        ag_log(AG_LOG_INFO, "storage closed");
    free(cert);
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    free(ca);
    ag_config_release(&cfg);
    return exit_code;
}

/* Verifies one chain (a storage directory's audit log, or one FILE) and prints its line, prefixed
 * with the directory when several are checked. Returns the exit code for it: 0, 1 or 2; *v gets
 * the result (its node, for the cross-chain check). */
static int verify_chain(const char *storage, const char *file, const char *key_file,
                        bool allow_unkeyed, bool prefix, ag_audit_verify_t *v)
{
    char path[4096], keypath[4096] = "";
    if (file)
        snprintf(path, sizeof(path), "%s", file);
    else
        snprintf(path, sizeof(path), "%s/audit", storage);
    if (key_file)
        snprintf(keypath, sizeof(keypath), "%s", key_file);
    else if (!file)
        snprintf(keypath, sizeof(keypath), "%s/%s", storage, AG_AUDIT_KEY_FILE);
    if (prefix)
        printf("%s: ", file ? file : storage);
    memset(v, 0, sizeof(*v));
    unsigned char key[AG_AUDIT_KEY_BYTES];
    bool have_key = false;
    if (keypath[0]) {
        ag_diag_t diag = {{0}};
        int krc = ag_audit_key_load(keypath, false, key, &diag);
        if (krc == 0) {
            have_key = true;
        } else if (krc != AG_ENOTFOUND || key_file) {
            printf("cannot check\n");
            fprintf(stderr, "aegis audit verify: %s\n", diag.msg);
            return 2;
        }
    }
    /* Fail closed: without the key nothing but an unkeyed chain can be checked, and that only
     * when asked for. */
    if (!have_key && !allow_unkeyed) {
        printf("FAILED: %s line 0: no audit key (%s): the log cannot be verified without it "
               "(--key-file K; --allow-unkeyed accepts a log written before keys on its plain "
               "SHA-256 chain)\n",
               path, keypath[0] ? keypath : "a single FILE needs --key-file");
        return 1;
    }
    int rc = ag_audit_verify(path, have_key ? key : NULL, v);
    sodium_memzero(key, sizeof(key));
    if (rc == AG_EIO) {
        printf("cannot check\n");
        fprintf(stderr, "aegis audit verify: %s: %s\n", v->file[0] ? v->file : path, v->why);
        return 2;
    }
    if (rc != 0) {
        printf("FAILED: %s line %llu: %s (%llu records before it verified)\n", v->file,
               (unsigned long long)v->line, v->why, (unsigned long long)v->records);
        return 1;
    }
    if (v->records == 0)
        printf("ok: no records (%llu file%s)", (unsigned long long)v->files,
               v->files == 1 ? "" : "s");
    else
        printf("ok: records %llu..%llu (%llu record%s, %llu file%s)",
               (unsigned long long)v->first_seq, (unsigned long long)v->last_seq,
               (unsigned long long)v->records, v->records == 1 ? "" : "s",
               (unsigned long long)v->files, v->files == 1 ? "" : "s");
    if (v->vouched_by)
        printf("; records before %llu removed by retention (record %llu)",
               (unsigned long long)v->first_seq, (unsigned long long)v->vouched_by);
    if (v->records > 0 && v->unkeyed == v->records)
        printf(", unkeyed (v1)");
    else if (v->unkeyed)
        printf("; the first %llu unkeyed (v1), bound by the keyed records after them",
               (unsigned long long)v->unkeyed);
    if (v->node[0])
        printf("; node %s", v->node);
    printf("\n");
    if (v->records > 0 && v->unkeyed == v->records)
        fprintf(stderr, "aegis audit verify: warning: the log is unkeyed (v1): its plain SHA-256 "
                        "chain shows edits, but anyone who can write the directory could have "
                        "rebuilt it\n");
    if (v->recovers)
        fprintf(stderr,
                "aegis audit verify: warning: %llu audit:recover record(s), the first "
                "at seq %llu: the server found damage at start and recorded it\n",
                (unsigned long long)v->recovers, (unsigned long long)v->first_recover);
    if (v->node_changes)
        fprintf(stderr,
                "aegis audit verify: warning: %llu record(s) name a different node than the "
                "record before them: this storage directory served under more than one "
                "cluster.node_id\n",
                (unsigned long long)v->node_changes);
    return 0;
}

#define AUDIT_MAX_CHAINS 64

static int audit_cmd(int argc, char **argv, char **envp)
{
    bool help = argc >= 3 && strcmp(argv[argc - 1], "--help") == 0;
    if (argc < 3 || strcmp(argv[2], "verify") != 0 || help) {
        fprintf(
            help ? stdout : stderr,
            "usage: aegis audit verify [--storage DIR]... [FILE] [--key-file K] [--allow-unkeyed]\n"
            "       aegis audit verify --cluster [--url URL] [--key KEY] [--ca FILE]\n"
            "\n"
            "Checks the audit log: every rotated file of DIR/audit, oldest first, then\n"
            "audit.log and audit.head (default DIR ./storage), or one FILE. Each record's\n"
            "HMAC is checked under the audit key (DIR/audit.key unless --key-file; a FILE\n"
            "needs --key-file), the chain must start at seq 1 or where a retention record\n"
            "says, files must follow on without a gap, and audit.head must name the last\n"
            "record. Prints \"ok: records A..B (N records, F files)\" and exits 0, or\n"
            "names the first bad file and line and exits 1 (2: cannot read).\n"
            "--allow-unkeyed: with no key, accept a log written before keys (v1) on its\n"
            "plain SHA-256 chain alone, which anyone who can write the directory could\n"
            "have rebuilt; without it a missing key is a failure.\n"
            "Several --storage DIR (the directories of a cluster's nodes, each with its own\n"
            "chain and key) are each checked; the exit code is the worst of them, and two\n"
            "chains that name the same node are a failure.\n"
            "--cluster: asks every node the server at URL lists in GET /cluster to check its\n"
            "own chain (GET /auth/audit/verify, needs read:audit; --key or $AEGIS_API_KEY)\n"
            "and checks that each chain names the node that holds it. A node that cannot\n"
            "be reached is a failure.\n");
        return help ? 0 : 2;
    }
    const char *dirs[AUDIT_MAX_CHAINS];
    size_t ndirs = 0;
    const char *file = NULL, *key_file = NULL;
    bool allow_unkeyed = false;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--cluster") == 0)
            return ag_cli_audit_cluster(argc, argv, envp);
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--allow-unkeyed") == 0) {
            allow_unkeyed = true;
        } else if (strcmp(argv[i], "--storage") == 0 && i + 1 < argc) {
            if (ndirs == AUDIT_MAX_CHAINS) {
                fprintf(stderr, "aegis audit verify: at most %d --storage directories\n",
                        AUDIT_MAX_CHAINS);
                return 2;
            }
            dirs[ndirs++] = argv[++i];
        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            key_file = argv[++i];
        } else if (argv[i][0] != '-' && !file) {
            file = argv[i];
        } else {
            fprintf(stderr, "aegis audit verify: unknown option '%.64s'\n", argv[i]);
            return 2;
        }
    }
    if (file && ndirs) {
        fprintf(stderr, "aegis audit verify: give either FILE or --storage DIR, not both\n");
        return 2;
    }
    if (file || ndirs <= 1) {
        ag_audit_verify_t v;
        return verify_chain(ndirs ? dirs[0] : "./storage", file, key_file, allow_unkeyed, false,
                            &v);
    }
    if (key_file) {
        /* Each node has its own audit key: one key for several chains is a mistake. */
        fprintf(stderr, "aegis audit verify: --key-file applies to one chain; with several "
                        "--storage each directory's audit.key is used\n");
        return 2;
    }
    static ag_audit_verify_t v[AUDIT_MAX_CHAINS];
    int worst = 0;
    for (size_t i = 0; i < ndirs; i++) {
        int rc = verify_chain(dirs[i], NULL, NULL, allow_unkeyed, true, &v[i]);
        if (rc > worst)
            worst = rc;
    }
    for (size_t i = 0; i < ndirs; i++)
        for (size_t j = i + 1; j < ndirs; j++)
            if (v[i].node[0] && strcmp(v[i].node, v[j].node) == 0) {
                printf("FAILED: %s and %s both hold node %s's chain (a copy, or two nodes "
                       "sharing a cluster.node_id)\n",
                       dirs[i], dirs[j], v[i].node);
                if (worst < 1)
                    worst = 1;
            }
    printf("%s: %zu chains\n", worst == 0 ? "ok" : "FAILED", ndirs);
    return worst;
}

static int keygen(int argc, char **argv)
{
    if (argc > 2) {
        bool help = strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "usage: aegis keygen\n\nPrints a strong random key (32 random bytes, base64url) "
                "for service.api_key,\nservice.alt_api_key or service.read_only_api_key.\n");
        return help ? 0 : 2;
    }
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    char out[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(out, sizeof(out), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    printf("%s\n", out);
    return 0;
}

/* aegis unseal IN OUT: the security.sealed entry of a full snapshot (extracted with tar) back
 * into the tar of the security state (docs/SECURITY.md "Snapshots"). */
static int unseal_cmd(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: aegis unseal SEALED_FILE OUT_FILE\n"
                        "passphrase from AEGIS_SEAL_PASSPHRASE or the first line of stdin\n");
        return 2;
    }
    char pass[1100];
    const char *env = getenv("AEGIS_SEAL_PASSPHRASE");
    if (env) {
        snprintf(pass, sizeof(pass), "%s", env);
    } else if (!fgets(pass, sizeof(pass), stdin)) {
        fprintf(stderr, "aegis unseal: no passphrase\n");
        return 2;
    }
    pass[strcspn(pass, "\r\n")] = '\0';
    FILE *in = fopen(argv[2], "rb");
    int out = open(argv[3], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ag_diag_t diag = {{0}};
    int rc = in && out >= 0 ? ag_seal_read(in, out, pass, strlen(pass), &diag) : AG_EIO;
    sodium_memzero(pass, sizeof(pass));
    if (in)
        fclose(in);
    if (out >= 0)
        close(out);
    if (rc) {
        if (out >= 0)
            unlink(argv[3]);
        fprintf(stderr, "aegis unseal: %s\n", diag.msg[0] ? diag.msg : "cannot open the files");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "aegis: libsodium failed to initialise\n");
        return 1;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return serve(argc, argv);
    if (strcmp(cmd, "keygen") == 0)
        return keygen(argc, argv);
    if (ag_cli_handles(cmd))
        return ag_cli_main(argc, argv, environ);
    if (strcmp(cmd, "audit") == 0)
        return audit_cmd(argc, argv, environ);
    if (strcmp(cmd, "token") == 0)
        return ag_token_cli(argc, argv, environ);
    if (strcmp(cmd, "unseal") == 0)
        return unseal_cmd(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("aegis %s (%s)\n", AG_VERSION, AG_COMMIT);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "aegis: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
