/* Snapshot archives in and out of the api layer (docs/SECURITY.md "Snapshots"): the sealed
 * security state put into full snapshots, the store's snapshot files bound to the service's
 * directories, recover locations (file:// and allowed http(s):// hosts) and multipart uploads. The
 * file logic itself is store/ag_snapfile.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ag_seal.h"
#include "ag_tar.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots.h"
#include "api/ag_snapshots_int.h"
#include "auth/ag_audit.h"
#include "auth/ag_keystore.h"
#include "auth/ag_root_key.h"
#include "auth/ag_secstore.h"
#include "http/ag_fetch.h"

#define S ag_snapsvc

/* Streams the file at path into a tar entry named name. */
static int file_entry(FILE *f, const char *name, const char *path)
{
    FILE *in = fopen(path, "rbe");
    if (!in)
        return AG_EIO;
    ag_tar_entry_w_t e;
    int rc = ag_tar_begin_entry(f, &e, name, time(NULL));
    char buf[65536];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, f) != n)
            rc = AG_EIO;
    if (rc == 0 && ferror(in))
        rc = AG_EIO;
    fclose(in);
    return rc ? rc : ag_tar_end_entry(f, &e);
}

/* The audit log (a copy that verifies: ag_audit_copy) as audit/<file> entries, and its key as
 * audit.key when it is kept in the storage directory (the default; a key kept elsewhere stays
 * there — docs/SECURITY.md "Snapshots"). */
static int audit_entries(FILE *t, const char *dir, ag_diag_t *diag)
{
    ag_audit_t *audit = ag_guard_audit_log(S.api->guard);
    if (!audit)
        return 0;
    char adir[4300], path[4700], name[300];
    snprintf(adir, sizeof(adir), "%.4200s/audit", dir);
    if (mkdir(adir, 0700) != 0)
        return ag_fail(diag, AG_EIO, "cannot create a temporary directory");
    int rc = ag_audit_copy(audit, adir, diag);
    DIR *d = rc == 0 ? opendir(adir) : NULL;
    if (rc == 0 && !d)
        rc = AG_EIO;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", adir, e->d_name);
        snprintf(name, sizeof(name), "audit/%.200s", e->d_name);
        rc = file_entry(t, name, path);
    }
    if (d)
        closedir(d);
    const char *kf = S.api->cfg->audit_key_file;
    if (rc == 0 && (!kf || !*kf)) {
        snprintf(path, sizeof(path), "%.4000s/%s", S.api->cfg->storage_path, AG_AUDIT_KEY_FILE);
        if (access(path, F_OK) == 0)
            rc = file_entry(t, AG_AUDIT_KEY_FILE, path);
    }
    return rc;
}

/* The security state (roles, users and their key hashes; API keys, management keys, invites,
 * account settings; the root key's hash), copied consistently, put in a tar of its own and sealed
 * under the passphrase as the entry security.sealed (docs/SECURITY.md "Snapshots"). */
static int security_entry(FILE *f, void *ctx, ag_diag_t *diag)
{
    const char *pass = ctx;
    char dir[4200], sub[4400], inner[4400];
    snprintf(dir, sizeof(dir), "%s/sec-XXXXXX", S.tmp);
    if (!mkdtemp(dir))
        return ag_fail(diag, AG_EIO, "cannot create a temporary directory");
    struct ag_secstore *sec = ag_guard_secstore(S.api->guard);
    struct ag_keystore *keys = ag_guard_keystore(S.api->guard);
    int rc = 0;
    snprintf(inner, sizeof(inner), "%s/inner.tar", dir);
    FILE *t = fopen(inner, "w+be");
    if (!t)
        rc = AG_EIO;
    if (rc == 0 && sec) {
        snprintf(sub, sizeof(sub), "%s/security", dir);
        if (mkdir(sub, 0700) != 0 || ag_secstore_copy(sec, sub) != 0)
            rc = AG_EIO;
        snprintf(sub, sizeof(sub), "%s/security/data.mdb", dir);
        if (rc == 0)
            rc = file_entry(t, "security/data.mdb", sub);
    }
    if (rc == 0 && keys) {
        snprintf(sub, sizeof(sub), "%s/mgmt", dir);
        if (mkdir(sub, 0700) != 0 || ag_keystore_copy(keys, sub) != 0)
            rc = AG_EIO;
        snprintf(sub, sizeof(sub), "%s/mgmt/data.mdb", dir);
        if (rc == 0)
            rc = file_entry(t, "security/mgmt/data.mdb", sub);
    }
    snprintf(sub, sizeof(sub), "%.4000s/%s", S.api->cfg->storage_path, AG_ROOT_KEY_FILE);
    if (rc == 0 && access(sub, F_OK) == 0)
        rc = file_entry(t, AG_ROOT_KEY_FILE, sub);
    if (rc == 0)
        rc = audit_entries(t, dir, diag);
    if (rc == 0)
        rc = ag_tar_finish(t);
    long len = rc == 0 && fflush(t) == 0 ? ftell(t) : -1;
    if (rc == 0 && len < 0)
        rc = AG_EIO;
    ag_tar_entry_w_t e;
    if (rc == 0)
        rc = ag_tar_begin_entry(f, &e, "security.sealed", time(NULL));
    if (rc == 0)
        rc = ag_seal_write(f, fileno(t), (uint64_t)len, pass, strlen(pass), diag);
    if (rc == 0)
        rc = ag_tar_end_entry(f, &e);
    if (t)
        fclose(t);
    ag_tar_remove_tree(dir);
    if (rc && !diag->msg[0])
        ag_fail(diag, rc, "cannot write the security state");
    return rc;
}

int ag_snap_create(const char *dir, const char *name, const char *collection, json_t **desc,
                   ag_diag_t *diag)
{
    return ag_snap_create_sealed(dir, name, collection, NULL, desc, diag);
}

int ag_snap_create_sealed(const char *dir, const char *name, const char *collection,
                          const char *passphrase, json_t **desc, ag_diag_t *diag)
{
    return ag_snapfile_create(S.api->store, dir, name, collection,
                              passphrase ? security_entry : NULL, (void *)passphrase, desc, diag);
}
int ag_snap_create_partial(const char *dir, const char *name, const char *collection,
                           const json_t *manifest, bool with_data, json_t **desc, ag_diag_t *diag)
{
    return ag_snapfile_create_partial(S.api->store, dir, name, collection, manifest, with_data,
                                      desc, diag);
}

int ag_snap_restore_fd(int fd, uint64_t off, uint64_t len, const char *checksum, const char *target,
                       ag_diag_t *diag)
{
    return ag_snapfile_restore(S.api->store, S.tmp, fd, off, len, checksum, target, diag);
}
/* ---- locations ------------------------------------------------------------------------------ */

/* Opens what `location` names (file:// inside the snapshots directory, or http:// from an
 * allowed host, fetched into a temporary file). *fd and *len on success; *tmp_path (owned) is a
 * file to remove afterwards, or NULL. */
int ag_snap_open_location(const char *location, const char *api_key, int *fd, uint64_t *len,
                          char **tmp_path, ag_diag_t *diag)
{
    *fd = -1;
    *tmp_path = NULL;
    if (strncmp(location, "file://", 7) == 0) {
        const char *rest = location + 7;
        const char *path;
        if (rest[0] == '/')
            path = rest;
        else if (strncmp(rest, "localhost/", 10) == 0)
            path = rest + 9;
        else
            return ag_fail(diag, AG_EINVAL,
                           "Bad request: Invalid snapshot URI, file path must be absolute or on "
                           "localhost");
        char real[PATH_MAX], root[PATH_MAX];
        if (!realpath(path, real))
            return ag_fail(diag, AG_EINVAL, "Bad request: Snapshot file \"%.300s\" does not exist",
                           path);
        size_t rl = realpath(S.root, root) ? strlen(root) : 0;
        if (rl == 0 || strncmp(real, root, rl) != 0 || real[rl] != '/')
            return ag_fail(diag, AG_EFORBIDDEN,
                           "Forbidden: Snapshot file path must be inside the snapshots directory "
                           "(storage.snapshots_path)");
        int f = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat stt;
        if (f < 0 || fstat(f, &stt) != 0 || !S_ISREG(stt.st_mode)) {
            if (f >= 0)
                close(f);
            return ag_fail(diag, AG_EINVAL, "Bad request: Snapshot file \"%.300s\" is not a file",
                           path);
        }
        *fd = f;
        *len = (uint64_t)stt.st_size;
        return 0;
    }
    if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0) {
        if (!S.recover_hosts || !*S.recover_hosts)
            return ag_fail(diag, AG_EINVAL,
                           "Bad request: recovering a snapshot from a URL is disabled; allow "
                           "hosts with storage.snapshot_recover_hosts");
        char path[4200];
        snprintf(path, sizeof(path), "%s/download-XXXXXX", S.tmp);
        int f = mkostemp(path, O_CLOEXEC);
        if (f < 0)
            return ag_fail(diag, AG_EIO, "cannot create a temporary file");
        ag_fetch_config_t fc = {.allowed_hosts = S.recover_hosts,
                                .max_bytes = S.recover_max,
                                .timeout_s = 300,
                                .api_key = api_key,
                                .ca_file = S.api->cfg->snapshot_recover_ca_file};
        uint64_t got = 0;
        int rc = ag_fetch(location, &fc, f, &got, diag);
        if (rc) {
            close(f);
            unlink(path);
            return rc;
        }
        *fd = f;
        *len = got;
        *tmp_path = strdup(path);
        if (!*tmp_path) {
            close(f);
            unlink(path);
            *fd = -1;
            return AG_ENOMEM;
        }
        return 0;
    }
    return ag_fail(diag, AG_EINVAL, "location: expected a file:// or http(s):// URL of a snapshot");
}

/* ---- multipart uploads --------------------------------------------------------------------- */

/* The boundary of a multipart/form-data content type, or NULL. */
static bool boundary_of(const char *ctype, char *out, size_t len)
{
    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) != 0)
        return false;
    const char *b = strcasestr(ctype, "boundary=");
    if (!b)
        return false;
    b += 9;
    bool quoted = *b == '"';
    b += quoted;
    size_t n = 0;
    while (b[n] && b[n] != (quoted ? '"' : ';') && !(!quoted && (b[n] == ' ' || b[n] == '\t')))
        n++;
    if (n == 0 || n > 70 || n + 1 > len)
        return false;
    memcpy(out, b, n);
    out[n] = '\0';
    return true;
}

/* Finds needle in fd[from, end); its offset or UINT64_MAX. */
static uint64_t find_in_file(int fd, uint64_t from, uint64_t end, const char *needle, size_t nl)
{
    enum { CHUNK = 1u << 20 };
    char *buf = malloc(CHUNK + 128);
    if (!buf)
        return UINT64_MAX;
    uint64_t pos = from;
    while (pos < end) {
        size_t want = (size_t)AG_MIN((uint64_t)CHUNK + nl, end - pos);
        ssize_t n = pread(fd, buf, want, (off_t)pos);
        if (n <= 0)
            break;
        const char *hit = memmem(buf, (size_t)n, needle, nl);
        if (hit) {
            uint64_t at = pos + (uint64_t)(hit - buf);
            free(buf);
            return at;
        }
        if ((size_t)n < nl || pos + (uint64_t)n >= end)
            break;
        pos += (uint64_t)n - nl + 1;
    }
    free(buf);
    return UINT64_MAX;
}

/* The snapshot inside an upload: the one part of a multipart/form-data body (field "snapshot"),
 * or the whole body when it is not multipart. */
int ag_snap_upload_range(ag_request_t *req, uint64_t *off, uint64_t *len, ag_diag_t *diag)
{
    char boundary[80], delim[90];
    if (!boundary_of(req->content_type, boundary, sizeof(boundary))) {
        *off = 0;
        *len = req->spool_len;
        return 0;
    }
    snprintf(delim, sizeof(delim), "--%s\r\n", boundary);
    size_t dl = strlen(delim);
    char head[8192];
    ssize_t n = pread(req->spool_fd, head, sizeof(head) - 1, 0);
    if (n < (ssize_t)dl || memcmp(head, delim, dl) != 0)
        return ag_fail(diag, AG_EINVAL, "snapshot: malformed multipart body");
    head[n] = '\0';
    char *hdr_end = strstr(head + dl, "\r\n\r\n");
    if (!hdr_end)
        return ag_fail(diag, AG_EINVAL, "snapshot: malformed multipart part headers");
    *hdr_end = '\0';
    if (!strcasestr(head + dl, "name=\"snapshot\""))
        return ag_fail(diag, AG_EINVAL, "snapshot: the form field must be named \"snapshot\"");
    uint64_t start = (uint64_t)(hdr_end - head) + 4;
    snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
    uint64_t end = find_in_file(req->spool_fd, start, req->spool_len, delim, strlen(delim));
    if (end == UINT64_MAX)
        return ag_fail(diag, AG_EINVAL, "snapshot: multipart body has no closing boundary");
    char tail[2];
    if (pread(req->spool_fd, tail, 2, (off_t)(end + strlen(delim))) != 2 ||
        memcmp(tail, "--", 2) != 0)
        return ag_fail(diag, AG_EINVAL, "snapshot: only one form field (snapshot) is accepted");
    *off = start;
    *len = end - start;
    return 0;
}
