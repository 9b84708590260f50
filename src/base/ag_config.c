#include "ag_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <yaml.h>

#include <sodium.h>

#include "ag_log.h"

typedef enum { T_STR, T_UINT, T_BOOL } ktype_t;

typedef struct key_def {
    const char *name;
    ktype_t type;
    size_t offset;
    uint64_t max;
    bool secret;
} key_def_t;

#define K(name, type, field, max, secret)                                                          \
    {                                                                                              \
        name, type, offsetof(ag_config_t, field), max, secret                                      \
    }

static const key_def_t keys[] = {
    K("service.host", T_STR, host, 0, false),
    K("service.http_port", T_UINT, http_port, 65535, false),
    K("service.grpc_port", T_UINT, grpc_port, 65535, false),
    K("service.max_request_size_mb", T_UINT, max_request_size_mb, 4096, false),
    K("service.max_workers", T_UINT, max_workers, 256, false),
    K("service.api_key", T_STR, api_key, 0, true),
    K("service.alt_api_key", T_STR, alt_api_key, 0, true),
    K("service.read_only_api_key", T_STR, read_only_api_key, 0, true),
    K("service.jwt_rbac", T_BOOL, jwt_rbac, 0, false),
    K("service.jwt_leeway_sec", T_UINT, jwt_leeway_s, 3600, false),
    K("service.enable_tls", T_BOOL, enable_tls, 0, false),
    K("service.verify_https_client_certificate", T_BOOL, verify_https_client_certificate, 0, false),
    K("service.access_log", T_BOOL, access_log, 0, false),
    K("service.inline_answers", T_BOOL, inline_answers, 0, false),
    K("service.max_token_ttl_sec", T_UINT, max_token_ttl_s, 315360000, false),
    K("service.trusted_proxies", T_STR, trusted_proxies, 0, false),
    K("service.enable_cors", T_BOOL, enable_cors, 0, false),
    K("service.cors_allowed_origins", T_STR, cors_allowed_origins, 0, false),
    K("service.max_connections_per_ip", T_UINT, max_connections_per_ip, 1000000, false),
    K("service.max_connections", T_UINT, max_connections, 1000000, false),
    K("service.header_timeout_sec", T_UINT, header_timeout_s, 3600, false),
    K("service.body_timeout_sec", T_UINT, body_timeout_s, 86400, false),
    K("service.auth_max_failures", T_UINT, auth_max_failures, 1000000, false),
    K("service.auth_failure_window_sec", T_UINT, auth_failure_window_s, 86400, false),
    K("service.auth_lockout_sec", T_UINT, auth_lockout_s, 86400, false),
    K("service.max_request_timeout_sec", T_UINT, max_request_timeout_s, 86400, false),
    K("tls.cert", T_STR, tls_cert, 0, false),
    K("tls.key", T_STR, tls_key, 0, false),
    K("tls.ca_cert", T_STR, tls_ca_cert, 0, false),
    K("storage.storage_path", T_STR, storage_path, 0, false),
    K("storage.map_size_gb", T_UINT, map_size_gb, 1 << 20, false),
    K("storage.initial_map_size_mb", T_UINT, initial_map_size_mb, 1 << 30, false),
    K("storage.flush_interval_ms", T_UINT, flush_interval_ms, 3600000, false),
    K("storage.audit_max_mb", T_UINT, audit_max_mb, 1 << 20, false),
    K("storage.audit_max_files", T_UINT, audit_max_files, 1000000, false),
    K("storage.audit_key_file", T_STR, audit_key_file, 0, false),
    K("storage.snapshots_path", T_STR, snapshots_path, 0, false),
    K("storage.snapshot_max_upload_mb", T_UINT, snapshot_max_upload_mb, 1 << 24, false),
    K("storage.snapshot_recover_hosts", T_STR, snapshot_recover_hosts, 0, false),
    K("storage.snapshot_recover_max_mb", T_UINT, snapshot_recover_max_mb, 1 << 24, false),
    K("storage.snapshot_recover_ca_file", T_STR, snapshot_recover_ca_file, 0, false),
    K("cluster.enabled", T_BOOL, cluster_enabled, 0, false),
    K("cluster.etcd_endpoints", T_STR, etcd_endpoints, 0, false),
    K("cluster.node_id", T_STR, node_id, 0, false),
    K("cluster.advertise_url", T_STR, advertise_url, 0, false),
    K("cluster.stale_after_ms", T_UINT, stale_after_ms, 600000, false),
    K("cluster.etcd_ca_file", T_STR, etcd_ca_file, 0, false),
    K("cluster.etcd_cert_file", T_STR, etcd_cert_file, 0, false),
    K("cluster.etcd_key_file", T_STR, etcd_key_file, 0, false),
    K("log_level", T_STR, log_level, 0, false),
};

static void set_str(char **slot, const char *v)
{
    if (*slot) {
        sodium_memzero(*slot, strlen(*slot));
        free(*slot);
    }
    *slot = v ? strdup(v) : NULL;
}

void ag_config_init(ag_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    set_str(&cfg->host, "127.0.0.1");
    cfg->http_port = 6333;
    cfg->max_request_size_mb = 32;
    cfg->max_workers = 0;
    cfg->jwt_leeway_s = 30;
    cfg->access_log = true;
    cfg->inline_answers = true;
    cfg->enable_cors = true; /* as Qdrant */
    cfg->max_token_ttl_s = 86400;
    cfg->max_connections_per_ip = 256;
    cfg->max_connections = 4096;
    cfg->header_timeout_s = 30;
    cfg->body_timeout_s = 60;
    cfg->auth_max_failures = 10;
    cfg->auth_failure_window_s = 60;
    cfg->auth_lockout_s = 60;
    cfg->max_request_timeout_s = 30;
    set_str(&cfg->storage_path, "./storage");
    cfg->map_size_gb = 256;
    cfg->initial_map_size_mb = 1024;
    cfg->flush_interval_ms = 1000;
    cfg->audit_max_mb = 64;
    cfg->snapshot_max_upload_mb = 16384;
    cfg->snapshot_recover_max_mb = 16384;
    cfg->stale_after_ms = 3000;
    set_str(&cfg->log_level, "info");
}

void ag_config_release(ag_config_t *cfg)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(keys); i++)
        if (keys[i].type == T_STR)
            set_str((char **)((char *)cfg + keys[i].offset), NULL);
}

int ag_config_set(ag_config_t *cfg, const char *key, const char *value, ag_diag_t *diag)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(keys); i++) {
        const key_def_t *k = &keys[i];
        if (strcmp(k->name, key) != 0)
            continue;
        void *field = (char *)cfg + k->offset;
        switch (k->type) {
        case T_STR:
            set_str(field, value);
            if (!*(char **)field)
                return AG_ENOMEM;
            return 0;
        case T_BOOL:
            if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
                *(bool *)field = true;
            else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
                *(bool *)field = false;
            else
                return ag_fail(diag, AG_ECONFIG, "%s: expected true or false", key);
            return 0;
        case T_UINT: {
            /* Qdrant's config.yaml turns gRPC off with `grpc_port: null`. */
            if (strcmp(key, "service.grpc_port") == 0 &&
                (!*value || strcmp(value, "null") == 0 || strcmp(value, "~") == 0)) {
                *(uint64_t *)field = 0;
                return 0;
            }
            errno = 0;
            char *end = NULL;
            unsigned long long v = strtoull(value, &end, 10);
            if (!*value || errno || !end || *end || value[0] == '-' || v > k->max)
                return ag_fail(diag, AG_ECONFIG, "%s: expected an integer from 0 to %llu", key,
                               (unsigned long long)k->max);
            *(uint64_t *)field = v;
            return 0;
        }
        }
    }
    return ag_fail(diag, AG_ECONFIG, "unknown configuration key '%s'", key);
}

/* Settings of Qdrant's config.yaml that have no counterpart in Aegis (docs/COMPATIBILITY.md
 * "Configuration file"): a Qdrant configuration loads, and these are listed in one warning. A
 * name covers its whole subtree. Keys Aegis knows (above) are looked up first. */
static const char *const qdrant_only[] = {
    "logger",
    "service.hardware_reporting",
    "service.static_content_dir",
    "service.enable_static_content",
    "service.max_search_threads",
    "storage.snapshots_config",
    "storage.temp_path",
    "storage.on_disk_payload",
    "storage.update_concurrency",
    "storage.update_queue_size",
    "storage.wal",
    "storage.node_type",
    "storage.performance",
    "storage.optimizers",
    "storage.hnsw_index",
    "storage.shard_transfer_method",
    "storage.collection",
    "storage.max_collections",
    "storage.sparse_vectors",
    "storage.async_scorer",
    "cluster.p2p",
    "cluster.consensus",
    "cluster.resharding_enabled",
    "telemetry_disabled",
    "tls.cert_ttl",
    "gpu",
    "inference",
    "audit",
    "feature_flags",
    "debugger",
};

static bool qdrant_only_key(const char *key)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(qdrant_only); i++) {
        size_t n = strlen(qdrant_only[i]);
        if (strncmp(key, qdrant_only[i], n) == 0 && (key[n] == '\0' || key[n] == '.'))
            return true;
    }
    return false;
}

static bool known_key(const char *key)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].name, key) == 0)
            return true;
    return false;
}

/* An http:// or https:// URL with a host, no spaces, no credentials, no query. */
static bool url_ok(const char *u, size_t n)
{
    size_t skip = n >= 7 && strncmp(u, "http://", 7) == 0    ? 7
                  : n >= 8 && strncmp(u, "https://", 8) == 0 ? 8
                                                             : 0;
    if (!skip || n == skip || n > 512)
        return false;
    for (size_t i = skip; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c <= ' ' || c >= 0x7f || c == '@' || c == '?' || c == '#' || c == ',')
            return false;
    }
    return u[skip] != '/' && u[skip] != ':';
}

int ag_config_check(const ag_config_t *cfg, ag_diag_t *diag)
{
    size_t https = 0, count = 0;
    if (cfg->etcd_endpoints) {
        const char *p = cfg->etcd_endpoints;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (!url_ok(p, n))
                return ag_fail(diag, AG_ECONFIG,
                               "cluster.etcd_endpoints: expected comma-separated http:// or "
                               "https:// URLs (entry %zu is not one)",
                               count + 1);
            if (n >= 8 && strncasecmp(p, "https://", 8) == 0)
                https++;
            if (++count > 16)
                return ag_fail(diag, AG_ECONFIG, "cluster.etcd_endpoints: at most 16 endpoints");
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    /* TLS to etcd is all or nothing, and its settings are refused where they would be ignored. */
    if (https && https != count)
        return ag_fail(diag, AG_ECONFIG,
                       "cluster.etcd_endpoints: mixes http:// and https:// members (the security "
                       "state would travel in clear to some)");
    if (!https && (cfg->etcd_ca_file || cfg->etcd_cert_file || cfg->etcd_key_file))
        return ag_fail(diag, AG_ECONFIG,
                       "%s: set, but cluster.etcd_endpoints has no https:// member to use it with",
                       cfg->etcd_ca_file     ? "cluster.etcd_ca_file"
                       : cfg->etcd_cert_file ? "cluster.etcd_cert_file"
                                             : "cluster.etcd_key_file");
    if (!cfg->etcd_cert_file != !cfg->etcd_key_file)
        return ag_fail(diag, AG_ECONFIG,
                       "%s: required with %s (a client certificate needs its key)",
                       cfg->etcd_cert_file ? "cluster.etcd_key_file" : "cluster.etcd_cert_file",
                       cfg->etcd_cert_file ? "cluster.etcd_cert_file" : "cluster.etcd_key_file");
    if (cfg->node_id) {
        size_t n = strlen(cfg->node_id);
        bool ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++) {
            unsigned char c = (unsigned char)cfg->node_id[i];
            ok = isalnum(c) || c == '-' || c == '_' || c == '.';
        }
        if (!ok)
            return ag_fail(diag, AG_ECONFIG,
                           "cluster.node_id: 1 to 64 letters, digits, '-', '_' or '.'");
    }
    if (cfg->advertise_url && !url_ok(cfg->advertise_url, strlen(cfg->advertise_url)))
        return ag_fail(diag, AG_ECONFIG,
                       "cluster.advertise_url: expected an http:// or https:// URL");
    if (cfg->stale_after_ms < 100)
        return ag_fail(diag, AG_ECONFIG, "cluster.stale_after_ms: expected at least 100");
    if (cfg->cluster_enabled) {
        if (!cfg->etcd_endpoints)
            return ag_fail(diag, AG_ECONFIG,
                           "cluster.etcd_endpoints: required when cluster.enabled is true");
        if (!cfg->node_id)
            return ag_fail(diag, AG_ECONFIG,
                           "cluster.node_id: required when cluster.enabled is true");
        if (cfg->insecure)
            return ag_fail(diag, AG_ECONFIG,
                           "cluster.enabled: not with --insecure (a cluster's nodes authenticate "
                           "every caller)");
    }
    return 0;
}

/* Problems and ignored settings found while loading a file, all reported at once. */
typedef struct load_ctx {
    ag_config_t *cfg;
    yaml_document_t *doc;
    char errors[400];
    size_t nerrors;
    bool truncated; /* some problems did not fit in errors */
    char ignored[1024];
    size_t nignored;
} load_ctx_t;

static void note(char *buf, size_t cap, size_t *count, const char *text)
{
    size_t used = strlen(buf);
    if (used + strlen(text) + 3 < cap)
        snprintf(buf + used, cap - used, "%s%s", *count ? ", " : "", text);
    (*count)++;
}

static void problem(load_ctx_t *lc, const char *text)
{
    size_t used = strlen(lc->errors);
    if (used + strlen(text) + 3 < sizeof(lc->errors))
        snprintf(lc->errors + used, sizeof(lc->errors) - used, "%s%s", lc->nerrors ? "; " : "",
                 text);
    else
        lc->truncated = true;
    lc->nerrors++;
}

/* Walks a YAML mapping, building dotted key names; scalars are passed to ag_config_set. */
static void walk(load_ctx_t *lc, yaml_node_t *node, const char *prefix)
{
    ag_diag_t d;
    if (*prefix && !known_key(prefix) && qdrant_only_key(prefix)) {
        note(lc->ignored, sizeof(lc->ignored), &lc->nignored, prefix);
        return;
    }
    if (node->type == YAML_SCALAR_NODE) {
        if (!*prefix) {
            problem(lc, "configuration file must be a mapping");
            return;
        }
        const char *v = (const char *)node->data.scalar.value;
        if (strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || v[0] == '\0')
            return;
        if (ag_config_set(lc->cfg, prefix, v, &d) != 0)
            problem(lc, d.msg);
        return;
    }
    if (node->type != YAML_MAPPING_NODE) {
        snprintf(d.msg, sizeof(d.msg), "%s: lists are not valid here", *prefix ? prefix : "(top)");
        problem(lc, d.msg);
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) {
            problem(lc, "configuration keys must be plain names");
            continue;
        }
        char name[256];
        int n = snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "",
                         (const char *)k->data.scalar.value);
        if (n < 0 || (size_t)n >= sizeof(name)) {
            problem(lc, "configuration key too long");
            continue;
        }
        walk(lc, v, name);
    }
}

int ag_config_load_file(ag_config_t *cfg, const char *path, ag_diag_t *diag)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ag_fail(diag, AG_ECONFIG, "cannot open configuration file '%s': %s", path,
                       strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = ag_fail(diag, AG_ECONFIG, "%s: YAML error at line %zu: %s", path,
                     parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
    } else {
        load_ctx_t *lc = calloc(1, sizeof(*lc));
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!lc) {
            rc = AG_ENOMEM;
        } else if (root) {
            lc->cfg = cfg;
            lc->doc = &doc;
            walk(lc, root, "");
            if (lc->nerrors)
                rc = ag_fail(diag, AG_ECONFIG, "%s: %zu problem%s: %s%s", path, lc->nerrors,
                             lc->nerrors == 1 ? "" : "s", lc->errors,
                             lc->truncated ? "; and more" : "");
            else if (lc->nignored)
                ag_log(AG_LOG_WARN,
                       "%s: ignoring %zu setting%s of Qdrant's configuration that do not apply "
                       "to Aegis (docs/COMPATIBILITY.md): %s",
                       path, lc->nignored, lc->nignored == 1 ? "" : "s", lc->ignored);
        }
        free(lc);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int ag_config_load_env(ag_config_t *cfg, char *const *envp, ag_diag_t *diag)
{
    static const char prefix[] = "AEGIS__";
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *e = envp[i];
        if (strncmp(e, prefix, sizeof(prefix) - 1) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (!eq)
            continue;
        char key[256];
        size_t o = 0;
        for (const char *p = e + sizeof(prefix) - 1; p < eq && o + 1 < sizeof(key); p++) {
            if (p[0] == '_' && p[1] == '_' && p + 1 < eq) {
                key[o++] = '.';
                p++;
            } else {
                key[o++] = (char)tolower((unsigned char)*p);
            }
        }
        key[o] = '\0';
        int rc = ag_config_set(cfg, key, eq + 1, diag);
        if (rc)
            return rc;
    }
    return 0;
}
