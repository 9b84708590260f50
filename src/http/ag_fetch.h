/*
 * ag_fetch.h — a deliberately small HTTP/1.1 client for one thing: fetching a snapshot that a
 * recover request names (docs/SECURITY.md "Snapshots"). http:// and https:// (GnuTLS; the
 * certificate chain verified against the system's trust store plus an optional CA file, and the
 * host name against the certificate), GET only, no redirects, no proxies. The host must be in the
 * allowlist (storage.snapshot_recover_hosts), and every address it resolves to is checked:
 * loopback, link-local, private and other special ranges are refused unless the allowlist names
 * that address (or its block) itself; the connection goes to the checked address, never to a second
 * resolution. The body is written to a file and capped.
 */
#ifndef AG_FETCH_H
#define AG_FETCH_H

#include "ag_base.h"

typedef struct ag_fetch_config {
    const char *allowed_hosts; /* comma-separated host names, addresses or CIDR blocks */
    uint64_t max_bytes;        /* the body's cap */
    unsigned timeout_s;        /* whole-transfer deadline */
    const char *api_key;       /* sent as the api-key header when not NULL */
    const char *ca_file;       /* PEM certificates trusted for https:// besides the system's;
                                  NULL = the system's only */
} ag_fetch_config_t;

/* Checks the allowlist's syntax (start-up). */
int ag_fetch_check_hosts(const char *hosts, ag_diag_t *diag);
/* GETs url into fd; *len gets the body's length. AG_EINVAL (400) for a refused or malformed
 * URL and for network errors and non-200 answers (the location the client gave cannot be
 * fetched), AG_EFORBIDDEN for a host or address not allowed, AG_ETOOBIG over the cap, AG_EIO when
 * the file cannot be written. */
int ag_fetch(const char *url, const ag_fetch_config_t *cfg, int fd, uint64_t *len, ag_diag_t *diag);

#endif
