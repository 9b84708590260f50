/*
 * ag_config.h — server configuration: defaults, then a YAML file (--config), then environment
 * variables AEGIS__SECTION__KEY, then command-line flags. Every key is declared once in the
 * table inside ag_config.c; an unknown key or a bad value stops start-up with a message naming it.
 */
#ifndef AG_CONFIG_H
#define AG_CONFIG_H

#include "ag_base.h"

typedef struct ag_config {
    /* service */
    char *host;
    uint64_t http_port;
    uint64_t grpc_port; /* 0 = no gRPC listener */
    uint64_t max_request_size_mb;
    uint64_t max_workers;
    char *api_key;
    char *alt_api_key;
    char *read_only_api_key;
    bool jwt_rbac;
    uint64_t jwt_leeway_s;
    bool enable_tls;
    bool verify_https_client_certificate;
    bool access_log;
    bool inline_answers; /* cheap requests answered on the network thread (docs/ARCHITECTURE.md) */
    uint64_t max_token_ttl_s;        /* POST /auth/token: longest lifetime of a minted token */
    char *trusted_proxies;           /* addresses whose X-Forwarded-For is believed */
    bool enable_cors;                /* answer browsers from other origins (docs/API.md "CORS") */
    char *cors_allowed_origins;      /* comma-separated origins; NULL = any (with enable_cors) */
    uint64_t max_connections_per_ip; /* 0 = no limit */
    uint64_t max_connections;        /* at once; past it requests get 503 */
    uint64_t header_timeout_s;       /* request line + headers must arrive within this */
    uint64_t body_timeout_s;         /* a body (and taking a response) within this */
    uint64_t auth_max_failures;      /* failed authentications per window before a lockout */
    uint64_t auth_failure_window_s;
    uint64_t auth_lockout_s;
    uint64_t max_request_timeout_s; /* cap (and default) of a request's deadline */
    /* tls */
    char *tls_cert;
    char *tls_key;
    char *tls_ca_cert;
    /* storage */
    char *storage_path;
    uint64_t map_size_gb;
    uint64_t initial_map_size_mb; /* the LMDB map starts here and grows to map_size_gb */
    uint64_t flush_interval_ms;
    uint64_t audit_max_mb;    /* audit log rotation size */
    uint64_t audit_max_files; /* rotated audit files kept; 0 = all */
    char *audit_key_file;     /* NULL = <storage_path>/audit.key */
    /* snapshots (docs/SECURITY.md "Snapshots") */
    char *snapshots_path;            /* NULL = <storage_path>/snapshots */
    uint64_t snapshot_max_upload_mb; /* largest snapshot upload accepted */
    char *snapshot_recover_hosts;    /* http:// hosts recover may fetch from; NULL = none */
    char *snapshot_recover_ca_file; /* PEM CAs trusted for https:// recover, besides the system's */
    uint64_t snapshot_recover_max_mb; /* largest snapshot fetched from such a host */
    /* cluster (docs/CLUSTER.md) */
    bool cluster_enabled;
    char *etcd_endpoints;    /* comma-separated http:// URLs of etcd members */
    char *node_id;           /* this node's name in the cluster */
    char *advertise_url;     /* how other nodes reach this one; NULL = from host and port */
    uint64_t stale_after_ms; /* T_stale: fail closed when the cache is not confirmed within */
    char *etcd_ca_file;      /* PEM CAs trusted for https:// etcd members (NULL = system's) */
    char *etcd_cert_file;    /* this node's client certificate for etcd (PEM) ... */
    char *etcd_key_file;     /* ... and its key */
    /* log */
    char *log_level;
    /* not a config key: set by --insecure */
    bool insecure;
} ag_config_t;

/* Fills defaults. */
void ag_config_init(ag_config_t *cfg);
/* Loads a YAML file over the current values. */
int ag_config_load_file(ag_config_t *cfg, const char *path, ag_diag_t *diag);
/* Applies AEGIS__SECTION__KEY variables from envp (NULL-terminated). Unknown AEGIS__ keys fail. */
int ag_config_load_env(ag_config_t *cfg, char *const *envp, ag_diag_t *diag);
/* Sets one key by its dotted name ("service.http_port") from text. */
int ag_config_set(ag_config_t *cfg, const char *key, const char *value, ag_diag_t *diag);
/* Checks settings that depend on each other or have a format (cluster.*): AG_ECONFIG naming the
 * key. Run once after every source of settings has been applied. */
int ag_config_check(const ag_config_t *cfg, ag_diag_t *diag);
/* Frees owned strings (wiping secrets). */
void ag_config_release(ag_config_t *cfg);

#endif
