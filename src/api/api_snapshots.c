/* Collection and full snapshots: create, list, download, delete, upload, recover
 * (docs/SECURITY.md "Snapshots", docs/API.md). Backups reuse the same machinery (api_backups.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ag_file.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "ag_seal.h"
#include "ag_tar.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots.h"
#include "api/ag_snapshots_int.h"
#include "auth/ag_keystore.h"
#include "auth/ag_principal.h"
#include "auth/ag_root_key.h"
#include "auth/ag_secstore.h"
#include "http/ag_fetch.h"
#include "store/ag_snapshot.h"
#include "json/ag_json.h"

#define SNAP_SUFFIX ".snapshot"
#define CHECKSUM_SUFFIX ".checksum"
#define FORMAT_NAME "aegis-snapshot"
#define FORMAT_VERSION 1

typedef struct job {
    struct job *next;
    int kind; /* JOB_* */
    char collection[AG_MAX_NAME_LEN + 1];
    char name[AG_MAX_NAME_LEN + 1];
} job_t;

enum { JOB_CREATE_COLLECTION, JOB_CREATE_FULL, JOB_DELETE_COLLECTION, JOB_DELETE_FULL };

ag_snapsvc_t ag_snapsvc;
#define S ag_snapsvc

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* ---- files ---------------------------------------------------------------------------------- */

int ag_snap_mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof(buf))
        return AG_EINVAL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return AG_EIO;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? AG_EIO : 0;
}

void ag_snap_coll_dir(char *out, size_t len, const char *collection)
{
    snprintf(out, len, "%s/collections/%s", S.root, collection);
}

void ag_snap_full_dir(char *out, size_t len)
{
    snprintf(out, len, "%s/full", S.root);
}

/* A snapshot file name as a client may give it: a valid name ending in .snapshot, not hidden. */
static bool name_ok(const char *name)
{
    ag_diag_t d;
    size_t n = strlen(name), sl = strlen(SNAP_SUFFIX);
    return n > sl && n <= 250 && name[0] != '.' && strcmp(name + n - sl, SNAP_SUFFIX) == 0 &&
           !strchr(name, '/') && ag_name_check(name, n, "snapshot", &d) == 0;
}

int ag_snap_sha256_fd(int fd, uint64_t off, uint64_t len, char hex[65])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char *buf = malloc(1u << 20);
    if (!buf)
        return AG_ENOMEM;
    while (len > 0) {
        size_t want = (size_t)AG_MIN(len, (uint64_t)(1u << 20));
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            return AG_EIO;
        }
        crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    free(buf);
    unsigned char out[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&st, out);
    sodium_bin2hex(hex, 65, out, sizeof(out));
    return 0;
}

static void iso_time(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

/* {name, creation_time, size, checksum} of dir/name; NULL when it is not a complete snapshot. */
json_t *ag_snap_describe(const char *dir, const char *name)
{
    char path[4096], sum[80] = {0};
    struct stat stt;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (lstat(path, &stt) != 0 || !S_ISREG(stt.st_mode))
        return NULL;
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, CHECKSUM_SUFFIX);
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL; /* written before the rename: a snapshot without one is not complete */
    size_t n = fread(sum, 1, 64, f);
    fclose(f);
    if (n != 64)
        return NULL;
    char when[32];
    iso_time(stt.st_mtime, when, sizeof(when));
    return json_pack("{s:s,s:s,s:I,s:s}", "name", name, "creation_time", when, "size",
                     (json_int_t)stt.st_size, "checksum", sum);
}

static int cmp_names(const void *a, const void *b)
{
    const json_t *const *x = a, *const *y = b;
    return strcmp(json_string_value(json_object_get(*x, "name")),
                  json_string_value(json_object_get(*y, "name")));
}

json_t *ag_snap_list_dir(const char *dir)
{
    json_t *out = json_array();
    DIR *d = opendir(dir);
    if (!d || !out)
        return out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!name_ok(e->d_name))
            continue;
        json_t *desc = ag_snap_describe(dir, e->d_name);
        if (desc)
            json_array_append_new(out, desc);
    }
    closedir(d);
    /* Sorted by name (names carry their creation time). */
    size_t n = json_array_size(out);
    json_t **items = n ? malloc(n * sizeof(*items)) : NULL;
    if (items) {
        for (size_t i = 0; i < n; i++)
            items[i] = json_incref(json_array_get(out, i));
        qsort(items, n, sizeof(*items), cmp_names);
        json_array_clear(out);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, items[i]);
        free(items);
    }
    return out;
}

int ag_snap_open(const char *dir, const char *name, int *fd, uint64_t *size, ag_diag_t *diag)
{
    *fd = -1;
    char path[4096];
    json_t *complete = name_ok(name) ? ag_snap_describe(dir, name) : NULL;
    json_decref(complete);
    if (!complete || (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Snapshot %.100s not found", name);
    int f = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat stt;
    if (f < 0 || fstat(f, &stt) != 0 || !S_ISREG(stt.st_mode)) {
        if (f >= 0)
            close(f);
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Snapshot %.100s not found", name);
    }
    *fd = f;
    *size = (uint64_t)stt.st_size;
    return 0;
}

int ag_snap_remove(const char *dir, const char *name, ag_diag_t *diag)
{
    char path[4096];
    if (!name_ok(name) || (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Snapshot %.100s not found", name);
    if (unlink(path) != 0)
        return ag_fail(diag, errno == ENOENT ? AG_ENOTFOUND : AG_EIO,
                       "Not found: Snapshot %.100s not found", name);
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, CHECKSUM_SUFFIX);
    unlink(path);
    ag_fsync_dir(dir);
    return 0;
}

/* ---- creating ------------------------------------------------------------------------------ */

void ag_snap_make_name(char *out, size_t len, const char *prefix)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned n = atomic_fetch_add(&S.seq, 1);
    snprintf(out, len, "%.180s-%04d-%02d-%02d-%02d-%02d-%02d-%u%04x%s", prefix, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, n,
             (unsigned)(randombytes_random() & 0xffff), SNAP_SUFFIX);
}

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

/* The security state (roles, users and their key hashes; API keys, management keys, invites,
 * account settings; the root key's hash), copied consistently, put in a tar of its own and sealed
 * under the passphrase as the entry security.sealed (docs/SECURITY.md "Snapshots"). */
static int security_entry(FILE *f, const char *pass, ag_diag_t *diag)
{
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
    *desc = NULL;
    char path[4096], sumpath[4200];
    if (ag_snap_mkdirs(dir) != 0)
        return ag_fail(diag, AG_EIO, "cannot create the snapshots directory");
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(sumpath, sizeof(sumpath), "%s%s", path, CHECKSUM_SUFFIX);
    ag_durable_t d;
    if (ag_durable_open(&d, path, 0600) != 0)
        return ag_fail(diag, AG_EIO, "cannot create the snapshot file");
    json_t *names = NULL;
    int rc = ag_store_snapshot_write(S.api->store, collection, d.f, dir, &names, diag);
    if (rc == 0 && passphrase)
        rc = security_entry(d.f, passphrase, diag);
    json_t *manifest = NULL;
    if (rc == 0) {
        manifest = json_pack("{s:s,s:i,s:s,s:s?,s:O,s:I,s:b}", "format", FORMAT_NAME, "version",
                             FORMAT_VERSION, "kind", collection ? "collection" : "full",
                             "collection", collection, "collections", names, "created_at",
                             (json_int_t)time(NULL), "security_sealed", passphrase != NULL);
        char *text = manifest ? json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        rc = text ? ag_tar_put_file(d.f, "manifest.json", text, strlen(text), time(NULL))
                  : AG_ENOMEM;
        free(text);
    }
    if (rc == 0)
        rc = ag_tar_finish(d.f);
    char hex[65];
    if (rc == 0 && fflush(d.f) != 0)
        rc = errno == ENOSPC ? ag_fail(diag, AG_ENOSPACE, "Insufficient storage for the snapshot")
                             : AG_EIO;
    if (rc == 0) {
        long len = ftell(d.f);
        int rfd = open(d.tmp, O_RDONLY | O_CLOEXEC); /* the durable file is write-only */
        rc = len < 0 || rfd < 0 ? AG_EIO : ag_snap_sha256_fd(rfd, 0, (uint64_t)len, hex);
        if (rfd >= 0)
            close(rfd);
    }
    /* The checksum file first: a snapshot is listed only once both exist. */
    if (rc == 0 && ag_file_replace(sumpath, hex, 64, 0600) != 0)
        rc = AG_EIO;
    if (rc == 0 && ag_durable_commit(&d) != 0) {
        unlink(sumpath);
        rc = ag_fail(diag, AG_EIO, "cannot store the snapshot file");
    } else if (rc) {
        ag_durable_abort(&d);
        unlink(sumpath);
    }
    json_decref(names);
    json_decref(manifest);
    if (rc) {
        if (!diag->msg[0])
            ag_fail(diag, rc, "cannot write the snapshot");
        return rc;
    }
    ag_metrics_add(AG_M_SNAPSHOTS, 1); /* /metrics snapshot_created_total */
    *desc = ag_snap_describe(dir, name);
    return *desc ? 0 : AG_EIO;
}

/* ---- restoring ----------------------------------------------------------------------------- */

/* Every name in dir is one of allowed (n of them). */
static int only_entries(const char *dir, const char *const *allowed, size_t n, ag_diag_t *diag)
{
    DIR *d = opendir(dir);
    if (!d)
        return ag_fail(diag, AG_EINVAL, "snapshot: an expected directory is missing");
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = strcmp(e->d_name, allowed[i]) == 0;
        if (!ok)
            rc = ag_fail(diag, AG_EINVAL, "snapshot: unexpected archive entry '%.100s'", e->d_name);
    }
    closedir(d);
    return rc;
}

static json_t *load_json(const char *dir, const char *file)
{
    char path[4400];
    snprintf(path, sizeof(path), "%.4200s/%s", dir, file);
    json_error_t jerr;
    return json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
}

static int restore_extracted(const char *dir, const char *target, ag_diag_t *diag)
{
    static const char *const coll_files[] = {"collection.json", "points.bin", "vectors.bin"};
    json_t *manifest = load_json(dir, "manifest.json");
    const char *kind = json_string_value(json_object_get(manifest, "kind"));
    int rc = 0;
    if (!manifest ||
        strcmp(str_or_empty(json_string_value(json_object_get(manifest, "format"))), FORMAT_NAME) !=
            0 ||
        json_integer_value(json_object_get(manifest, "version")) != FORMAT_VERSION || !kind) {
        json_decref(manifest);
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: not an Aegis snapshot (manifest.json missing or unknown)");
    }
    if (target) {
        static const char *const top[] = {"manifest.json", "collection.json", "points.bin",
                                          "vectors.bin"};
        if (strcmp(kind, "collection") != 0)
            rc = ag_fail(diag, AG_EINVAL, "Bad request: this is not a collection snapshot");
        if (rc == 0)
            rc = only_entries(dir, top, AG_ARRAY_LEN(top), diag);
        ag_restore_item_t item = {target, dir};
        if (rc == 0)
            rc = ag_store_restore(S.api->store, &item, 1, NULL, diag);
        json_decref(manifest);
        return rc;
    }
    /* A full snapshot: every collection the manifest names, and its aliases. */
    json_t *list = json_object_get(manifest, "collections");
    size_t n = json_array_size(list);
    char cdir[4400];
    snprintf(cdir, sizeof(cdir), "%.4200s/collections", dir);
    const char **names = calloc(n + 1, sizeof(*names));
    char **dirs = calloc(n + 1, sizeof(*dirs));
    ag_restore_item_t *items = calloc(n + 1, sizeof(*items));
    /* security.sealed is restored offline (aegis unseal), never by the server. */
    static const char *const top[] = {"manifest.json", "aliases.json", "collections",
                                      "security.sealed"};
    if (strcmp(kind, "full") != 0 || !json_is_array(list))
        rc = ag_fail(diag, AG_EINVAL, "Bad request: this is not a full snapshot");
    if (rc == 0 && (!names || !dirs || !items))
        rc = AG_ENOMEM;
    if (rc == 0)
        rc = only_entries(dir, top, AG_ARRAY_LEN(top), diag);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *name = json_string_value(json_array_get(list, i));
        if (!name || ag_name_check(name, strlen(name), "collection", diag) != 0) {
            rc = ag_fail(diag, AG_EINVAL, "Bad request: snapshot names a bad collection");
            break;
        }
        names[i] = name;
        size_t len = strlen(cdir) + strlen(name) + 2;
        if (!(dirs[i] = malloc(len))) {
            rc = AG_ENOMEM;
            break;
        }
        snprintf(dirs[i], len, "%s/%s", cdir, name);
        rc = only_entries(dirs[i], coll_files, AG_ARRAY_LEN(coll_files), diag);
        items[i].name = name;
        items[i].dir = dirs[i];
    }
    if (rc == 0 && n > 0)
        rc = only_entries(cdir, names, n, diag);
    json_t *aliases = rc == 0 ? load_json(dir, "aliases.json") : NULL;
    if (rc == 0 && !json_is_object(aliases))
        rc = ag_fail(diag, AG_EINVAL, "Bad request: snapshot aliases.json is malformed");
    if (rc == 0)
        rc = ag_store_restore(S.api->store, items, n, aliases, diag);
    json_decref(aliases);
    for (size_t i = 0; dirs && i < n; i++)
        free(dirs[i]);
    free(dirs);
    free(names);
    free(items);
    json_decref(manifest);
    return rc;
}

static bool hex_equal(const char *a, const char *b)
{
    if (strlen(a) != 64 || strlen(b) != 64)
        return false;
    for (int i = 0; i < 64; i++) {
        char x = a[i] >= 'A' && a[i] <= 'F' ? (char)(a[i] - 'A' + 'a') : a[i];
        if (x != b[i])
            return false;
    }
    return true;
}

bool ag_snap_checksum_ok(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

int ag_snap_restore_fd(int fd, uint64_t off, uint64_t len, const char *checksum, const char *target,
                       ag_diag_t *diag)
{
    if (checksum) {
        char hex[65];
        if (!ag_snap_checksum_ok(checksum))
            return ag_fail(diag, AG_EINVAL, "checksum: expected 64 hexadecimal characters");
        int rc = ag_snap_sha256_fd(fd, off, len, hex);
        if (rc)
            return ag_fail(diag, rc, "cannot read the snapshot");
        if (!hex_equal(checksum, hex))
            return ag_fail(diag, AG_EINVAL,
                           "Bad request: Snapshot checksum mismatch: expected %.64s, got %s",
                           checksum, hex);
    }
    /* Room to extract it and to load it into storage. */
    struct statvfs vfs;
    if (statvfs(S.tmp, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize / 2 < len + (1u << 20))
        return ag_fail(diag, AG_ENOSPACE,
                       "Insufficient storage: restoring this snapshot needs about %llu MB free",
                       (unsigned long long)((2 * len) >> 20) + 1);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/restore-XXXXXX", S.tmp);
    if (!mkdtemp(dir))
        return ag_fail(diag, AG_EIO, "cannot create a temporary directory");
    ag_tar_limits_t lim = {.max_entries = 100000, .max_total_bytes = len};
    int rc = ag_tar_extract(fd, off, len, dir, &lim, diag);
    if (rc) {
        char why[300];
        snprintf(why, sizeof(why), "%.299s", diag->msg);
        rc = ag_fail(diag, rc == AG_EIO ? AG_EIO : AG_EINVAL, "Bad request: snapshot refused: %s",
                     why);
    }
    if (rc == 0)
        rc = restore_extracted(dir, target, diag);
    ag_tar_remove_tree(dir);
    return rc;
}

/* ---- locations ------------------------------------------------------------------------------ */

/* Opens what `location` names (file:// inside the snapshots directory, or http:// from an
 * allowed host, fetched into a temporary file). *fd and *len on success; *tmp_path (owned) is a
 * file to remove afterwards, or NULL. */
static int open_location(const char *location, const char *api_key, int *fd, uint64_t *len,
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
                                .api_key = api_key};
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
static int upload_range(ag_request_t *req, uint64_t *off, uint64_t *len, ag_diag_t *diag)
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

/* ---- authorization helpers ------------------------------------------------------------------- */

/* Listing or downloading a collection's snapshots: read:snapshots on it, or unrestricted
 * read:data (with read:collections, which the route's admission checked) — a snapshot holds
 * nothing more (docs/PERMISSIONS.md). A download is a copy of every row: refused when the
 * caller's data rows are restricted, whatever snapshot permission it holds. */
static int may_read(ag_call_t *call, const char *coll, bool download)
{
    ag_diag_t ig = {{0}};
    ag_filter_t *rows = NULL;
    bool snap = ag_guard_authorize(call, "read:snapshots", coll, NULL, &ig) == 0;
    bool data = ag_guard_authorize(call, "read:data", coll, &rows, &ig) == 0;
    bool restricted = data && rows;
    ag_filter_free(rows);
    if (!snap && (!data || restricted))
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: missing permission read:snapshots on collection '%s'", coll);
    if (download && restricted)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: your access to collection %s is limited to some rows; a "
                       "snapshot holds every row",
                       coll);
    return 0;
}

/* Creating a snapshot exports every row: refused to a row-restricted principal. */
static int whole_rows(ag_call_t *call, const char *coll)
{
    ag_diag_t ig = {{0}};
    ag_filter_t *rows = NULL;
    bool restricted = ag_guard_authorize(call, "read:data", coll, &rows, &ig) == 0 && rows;
    ag_filter_free(rows);
    if (restricted)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: your access to collection %s is limited to some rows; a "
                       "snapshot holds every row",
                       coll);
    return 0;
}

bool ag_snap_is_root(const ag_call_t *call)
{
    int k = call->principal ? ag_principal_kind(call->principal) : -1;
    return k == AG_PRINCIPAL_ROOT || k == AG_PRINCIPAL_ANONYMOUS;
}

/* ---- background jobs (wait=false) ---------------------------------------------------------- */

static void run_job(job_t *j)
{
    char dir[4096];
    ag_diag_t diag = {{0}};
    json_t *desc = NULL;
    int rc = 0;
    switch (j->kind) {
    case JOB_CREATE_COLLECTION:
        ag_snap_coll_dir(dir, sizeof(dir), j->collection);
        rc = ag_snap_create(dir, j->name, j->collection, &desc, &diag);
        break;
    case JOB_CREATE_FULL:
        ag_snap_full_dir(dir, sizeof(dir));
        rc = ag_snap_create(dir, j->name, NULL, &desc, &diag);
        break;
    case JOB_DELETE_COLLECTION:
        ag_snap_coll_dir(dir, sizeof(dir), j->collection);
        rc = ag_snap_remove(dir, j->name, &diag);
        break;
    case JOB_DELETE_FULL:
        ag_snap_full_dir(dir, sizeof(dir));
        rc = ag_snap_remove(dir, j->name, &diag);
        break;
    default:
        break;
    }
    json_decref(desc);
    if (rc)
        ag_log(AG_LOG_ERROR, "snapshot job for '%s' failed: %s", j->name,
               diag.msg[0] ? diag.msg : ag_strerror(rc));
}

static void *worker_main(void *arg)
{
    AG_UNUSED(arg);
    pthread_mutex_lock(&S.mu);
    for (;;) {
        while (!S.head && !S.stopping)
            pthread_cond_wait(&S.cv, &S.mu);
        job_t *j = S.head;
        if (!j)
            break;
        S.head = j->next;
        if (!S.head)
            S.tail = NULL;
        pthread_mutex_unlock(&S.mu);
        run_job(j);
        free(j);
        pthread_mutex_lock(&S.mu);
    }
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

static int enqueue(int kind, const char *collection, const char *name)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return AG_ENOMEM;
    j->kind = kind;
    snprintf(j->collection, sizeof(j->collection), "%s", collection ? collection : "");
    snprintf(j->name, sizeof(j->name), "%s", name);
    pthread_mutex_lock(&S.mu);
    if (S.tail)
        S.tail->next = j;
    else
        S.head = j;
    S.tail = j;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
    return 0;
}

int ag_snap_accepted(ag_call_t *call)
{
    call->raw = strdup("{\"status\":\"accepted\",\"time\":0.0}");
    call->raw_type = "application/json";
    call->http_status = 202;
    return call->raw ? 0 : AG_ENOMEM;
}

/* ---- handlers ------------------------------------------------------------------------------ */

/* The collection the route names (resolved through an alias at admission); 404 if none. For
 * shard routes, the shard must be 0 (one local shard). */
static int route_collection(ag_call_t *call, const char **name)
{
    if (!call->coll)
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                       call->params[0]);
    if (strstr(call->route->pattern, "/shards/") && strcmp(call->params[1], "0") != 0)
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Shard %.20s does not exist",
                       call->params[1]);
    *name = ag_coll_name(call->coll);
    return 0;
}

/* The snapshot name parameter: the last path parameter. */
static const char *snap_param(const ag_call_t *call)
{
    return call->params[call->nparams - 1];
}

static int h_list(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc == 0)
        rc = may_read(call, coll, false);
    if (rc)
        return rc;
    char dir[4096];
    ag_snap_coll_dir(dir, sizeof(dir), coll);
    call->result = ag_snap_list_dir(dir);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_create(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc == 0)
        rc = whole_rows(call, coll);
    if (rc)
        return rc;
    char name[AG_MAX_NAME_LEN + 1], dir[4096];
    ag_snap_make_name(name, sizeof(name), coll);
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0) {
        rc = enqueue(JOB_CREATE_COLLECTION, coll, name);
        return rc ? rc : ag_snap_accepted(call);
    }
    ag_snap_coll_dir(dir, sizeof(dir), coll);
    rc = ag_snap_create(dir, name, coll, &call->result, &call->diag);
    if (rc == 0)
        call->audit_detail = json_pack("{s:s}", "snapshot", name);
    return rc;
}

static int h_download(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc == 0)
        rc = may_read(call, coll, true);
    if (rc)
        return rc;
    char dir[4096];
    ag_snap_coll_dir(dir, sizeof(dir), coll);
    int fd;
    uint64_t size = 0;
    if ((rc = ag_snap_open(dir, snap_param(call), &fd, &size, &call->diag)) != 0)
        return rc;
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

static int h_delete(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc)
        return rc;
    char dir[4096];
    ag_snap_coll_dir(dir, sizeof(dir), coll);
    const char *name = snap_param(call);
    int fd;
    uint64_t size = 0;
    if ((rc = ag_snap_open(dir, name, &fd, &size, &call->diag)) != 0)
        return rc;
    close(fd);
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0) {
        rc = enqueue(JOB_DELETE_COLLECTION, coll, name);
        return rc ? rc : ag_snap_accepted(call);
    }
    if ((rc = ag_snap_remove(dir, name, &call->diag)) != 0)
        return rc;
    call->result = json_true();
    call->audit_detail = json_pack("{s:s}", "snapshot", name);
    return 0;
}

static int check_priority(ag_call_t *call, const char *p)
{
    if (!p || strcmp(p, "no_sync") == 0 || strcmp(p, "snapshot") == 0 || strcmp(p, "replica") == 0)
        return 0;
    return ag_fail(&call->diag, AG_EINVAL,
                   "priority: expected one of no_sync, snapshot, replica (one node: all restore "
                   "the snapshot)");
}

/* The target of a recover: the path's collection name (an existing collection is replaced). */
static int recover_target(ag_call_t *call, const char **target)
{
    bool shard = strstr(call->route->pattern, "/shards/") != NULL;
    if (shard) {
        const char *c = NULL;
        int rc = route_collection(call, &c);
        if (rc)
            return rc;
        *target = c;
        return 0;
    }
    *target = call->coll ? ag_coll_name(call->coll) : call->params[0];
    return 0;
}

static int finish_recover(ag_call_t *call, const char *target, const char *from)
{
    call->audit_detail = json_pack("{s:s,s:s}", "restored", target, "from", from);
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0)
        return ag_snap_accepted(call); /* restored already: a restore is all or nothing */
    call->result = json_true();
    return 0;
}

static int h_recover(ag_call_t *call)
{
    const char *target;
    int rc = recover_target(call, &target);
    if (rc)
        return rc;
    json_t *b = call->body;
    rc = AG_JSON_ONLY(b, "", &call->diag, "location", "priority", "checksum", "api_key", "wait");
    if (rc)
        return rc;
    json_t *loc = json_object_get(b, "location"), *prio = json_object_get(b, "priority");
    json_t *sum = json_object_get(b, "checksum"), *key = json_object_get(b, "api_key");
    if (!json_is_string(loc))
        return ag_fail(&call->diag, AG_EINVAL, "location: expected a string");
    if (prio && !json_is_null(prio) && !json_is_string(prio))
        return ag_fail(&call->diag, AG_EINVAL, "priority: expected a string");
    if ((rc = check_priority(call, json_string_value(prio))) != 0)
        return rc;
    if (sum && !json_is_null(sum) && !ag_snap_checksum_ok(json_string_value(sum)))
        return ag_fail(&call->diag, AG_EINVAL, "checksum: expected 64 hexadecimal characters");
    if (key && !json_is_null(key) && !json_is_string(key))
        return ag_fail(&call->diag, AG_EINVAL, "api_key: expected a string");
    int fd;
    uint64_t len;
    char *tmp = NULL;
    rc =
        open_location(json_string_value(loc), json_string_value(key), &fd, &len, &tmp, &call->diag);
    if (rc)
        return rc;
    rc = ag_snap_restore_fd(fd, 0, len, json_string_value(sum), target, &call->diag);
    close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    return rc ? rc : finish_recover(call, target, "location");
}

int ag_snapshots_upload_begin(ag_call_t *call, ag_diag_t *diag)
{
    const char *sum = ag_request_query(call->req, "checksum");
    if (sum && !ag_snap_checksum_ok(sum))
        return ag_fail(diag, AG_EUNPROCESSABLE,
                       "invalid_sha256_hash: checksum must be 64 hexadecimal characters");
    const char *prio = ag_request_query(call->req, "priority");
    if (prio && check_priority(call, prio) != 0)
        return ag_fail(diag, AG_EINVAL, "%s", call->diag.msg);
    if (!S.started)
        return ag_fail(diag, AG_EUNAVAILABLE, "snapshots are not available");
    if (ag_request_spool(call->req, S.tmp, S.max_upload) != 0)
        return ag_fail(diag, AG_EIO, "cannot store the upload");
    return 0;
}

static int h_upload(ag_call_t *call)
{
    const char *target;
    int rc = recover_target(call, &target);
    if (rc)
        return rc;
    if (call->req->spool_fd < 0)
        return ag_fail(&call->diag, AG_EINVAL, "snapshot: no upload received");
    uint64_t off, len;
    if ((rc = upload_range(call->req, &off, &len, &call->diag)) != 0)
        return rc;
    rc = ag_snap_restore_fd(call->req->spool_fd, off, len, ag_request_query(call->req, "checksum"),
                            target, &call->diag);
    return rc ? rc : finish_recover(call, target, "upload");
}

/* ---- full snapshots ------------------------------------------------------------------------ */

static int h_full_list(ag_call_t *call)
{
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    call->result = ag_snap_list_dir(dir);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_full_create(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "passphrase");
    if (rc)
        return rc;
    /* The security state goes in only for the root key, and only sealed (docs/SECURITY.md). */
    json_t *pp = json_object_get(call->body, "passphrase");
    const char *pass = NULL;
    if (pp && !json_is_null(pp)) {
        if (!json_is_string(pp) || json_string_length(pp) < 12 || json_string_length(pp) > 1024)
            return ag_fail(&call->diag, AG_EINVAL,
                           "passphrase: expected a string of 12 to 1024 characters");
        if (!ag_snap_is_root(call))
            return ag_fail(&call->diag, AG_EFORBIDDEN,
                           "Forbidden: only the root key may put the security state in a "
                           "snapshot");
        pass = json_string_value(pp);
    }
    char name[AG_MAX_NAME_LEN + 1], dir[4096];
    ag_snap_make_name(name, sizeof(name), "full-snapshot");
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0 && !pass) { /* a passphrase is never queued */
        rc = enqueue(JOB_CREATE_FULL, NULL, name);
        return rc ? rc : ag_snap_accepted(call);
    }
    ag_snap_full_dir(dir, sizeof(dir));
    rc = ag_snap_create_sealed(dir, name, NULL, pass, &call->result, &call->diag);
    if (rc == 0)
        call->audit_detail = json_pack("{s:s}", "snapshot", name);
    return rc;
}

static int h_full_download(ag_call_t *call)
{
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    int fd;
    uint64_t size = 0;
    int rc = ag_snap_open(dir, snap_param(call), &fd, &size, &call->diag);
    if (rc)
        return rc;
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

static int h_full_delete(ag_call_t *call)
{
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    const char *name = snap_param(call);
    int fd;
    uint64_t size = 0;
    int rc = ag_snap_open(dir, name, &fd, &size, &call->diag);
    if (rc)
        return rc;
    close(fd);
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0) {
        rc = enqueue(JOB_DELETE_FULL, NULL, name);
        return rc ? rc : ag_snap_accepted(call);
    }
    if ((rc = ag_snap_remove(dir, name, &call->diag)) != 0)
        return rc;
    call->result = json_true();
    call->audit_detail = json_pack("{s:s}", "snapshot", name);
    return 0;
}

int ag_snap_need_root(ag_call_t *call)
{
    if (ag_snap_is_root(call))
        return 0;
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: restoring a full snapshot or a backup needs the root key "
                   "(service.api_key)");
}

static int h_full_restore(ag_call_t *call)
{
    int rc = ag_snap_need_root(call);
    if (rc)
        return rc;
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    int fd;
    uint64_t size = 0;
    const char *name = snap_param(call);
    if ((rc = ag_snap_open(dir, name, &fd, &size, &call->diag)) != 0)
        return rc;
    rc = ag_snap_restore_fd(fd, 0, size, NULL, NULL, &call->diag);
    close(fd);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "restored_full_snapshot", name);
    call->result = json_true();
    return 0;
}

static int h_full_upload(ag_call_t *call)
{
    int rc = ag_snap_need_root(call);
    if (rc)
        return rc;
    if (call->req->spool_fd < 0)
        return ag_fail(&call->diag, AG_EINVAL, "snapshot: no upload received");
    uint64_t off, len;
    if ((rc = upload_range(call->req, &off, &len, &call->diag)) != 0)
        return rc;
    rc = ag_snap_restore_fd(call->req->spool_fd, off, len, ag_request_query(call->req, "checksum"),
                            NULL, &call->diag);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "restored_full_snapshot", "upload");
    call->result = json_true();
    return 0;
}

/* ---- service ------------------------------------------------------------------------------- */

int ag_snapshots_start(ag_api_t *api, ag_diag_t *diag)
{
    if (S.started)
        return 0;
    const ag_config_t *cfg = api->cfg;
    S.api = api;
    if (cfg->snapshots_path && *cfg->snapshots_path)
        snprintf(S.root, sizeof(S.root), "%s", cfg->snapshots_path);
    else
        snprintf(S.root, sizeof(S.root), "%s/snapshots", cfg->storage_path);
    snprintf(S.tmp, sizeof(S.tmp), "%s/.tmp", S.root);
    if (ag_snap_mkdirs(S.tmp) != 0)
        return ag_fail(diag, AG_ECONFIG, "storage.snapshots_path: cannot create '%s'", S.root);
    /* What a crash left behind: half-extracted archives, spooled uploads, downloads. */
    DIR *d = opendir(S.tmp);
    if (d) {
        struct dirent *e;
        char path[4400];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", S.tmp, e->d_name);
            ag_tar_remove_tree(path);
        }
        closedir(d);
    }
    S.max_upload = (cfg->snapshot_max_upload_mb ? cfg->snapshot_max_upload_mb : 16384) << 20;
    S.recover_max = (cfg->snapshot_recover_max_mb ? cfg->snapshot_recover_max_mb : 16384) << 20;
    S.recover_hosts = cfg->snapshot_recover_hosts;
    if (S.recover_hosts && *S.recover_hosts && ag_fetch_check_hosts(S.recover_hosts, diag) != 0)
        return ag_fail(diag, AG_ECONFIG, "storage.snapshot_recover_hosts: %s", diag->msg);
    pthread_mutex_init(&S.mu, NULL);
    pthread_cond_init(&S.cv, NULL);
    if (pthread_create(&S.worker, NULL, worker_main, NULL) != 0)
        return ag_fail(diag, AG_EINTERNAL, "cannot start the snapshot worker");
    S.started = true;
    return ag_backups_start(diag);
}

void ag_snapshots_stop(void)
{
    if (!S.started)
        return;
    ag_backups_stop();
    pthread_mutex_lock(&S.mu);
    S.stopping = true;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    pthread_join(S.worker, NULL);
    S.started = false;
}

/* The snapshot name (last parameter) of these routes is checked by the handlers, which answer
 * 404 for anything that is not a snapshot file name. */
const ag_route_t ag_routes_snapshots[] = {
    {AG_HTTP_GET, "/collections/{name}/snapshots", "read:collections", AG_SCOPE_COLLECTION, h_list,
     false, false},
    {AG_HTTP_POST, "/collections/{name}/snapshots", "create:snapshots", AG_SCOPE_COLLECTION,
     h_create, false, false},
    {AG_HTTP_POST, "/collections/{name}/snapshots/upload", "manage:snapshots", AG_SCOPE_COLLECTION,
     h_upload, false, false, .upload = true},
    {AG_HTTP_PUT, "/collections/{name}/snapshots/recover", "manage:snapshots", AG_SCOPE_COLLECTION,
     h_recover, true, false},
    {AG_HTTP_GET, "/collections/{name}/snapshots/{snapshot}", "read:collections",
     AG_SCOPE_COLLECTION, h_download, false, false},
    {AG_HTTP_DELETE, "/collections/{name}/snapshots/{snapshot}", "delete:snapshots",
     AG_SCOPE_COLLECTION, h_delete, false, false},
    /* One local shard (0): the shard routes answer as the collection's. */
    {AG_HTTP_GET, "/collections/{name}/shards/{shard}/snapshots", "read:collections",
     AG_SCOPE_COLLECTION, h_list, false, false},
    {AG_HTTP_POST, "/collections/{name}/shards/{shard}/snapshots", "create:snapshots",
     AG_SCOPE_COLLECTION, h_create, false, false},
    {AG_HTTP_POST, "/collections/{name}/shards/{shard}/snapshots/upload", "manage:snapshots",
     AG_SCOPE_COLLECTION, h_upload, false, false, .upload = true},
    {AG_HTTP_PUT, "/collections/{name}/shards/{shard}/snapshots/recover", "manage:snapshots",
     AG_SCOPE_COLLECTION, h_recover, true, false},
    /* A partial (incremental) snapshot is recovered as a whole one: the archive holds the
     * shard's full state. */
    {AG_HTTP_POST, "/collections/{name}/shards/{shard}/snapshot/partial/recover",
     "manage:snapshots", AG_SCOPE_COLLECTION, h_upload, false, false, .upload = true},
    {AG_HTTP_GET, "/collections/{name}/shards/{shard}/snapshots/{snapshot}", "read:collections",
     AG_SCOPE_COLLECTION, h_download, false, false},
    {AG_HTTP_DELETE, "/collections/{name}/shards/{shard}/snapshots/{snapshot}", "delete:snapshots",
     AG_SCOPE_COLLECTION, h_delete, false, false},
    /* Full snapshots: global read lists and downloads; creating, deleting and restoring them
     * need global manage, restoring also the root key. */
    {AG_HTTP_GET, "/snapshots", "read:snapshots", AG_SCOPE_NONE, h_full_list, false, false},
    {AG_HTTP_POST, "/snapshots", "manage:snapshots", AG_SCOPE_NONE, h_full_create, true, false},
    {AG_HTTP_POST, "/snapshots/upload", "manage:snapshots", AG_SCOPE_NONE, h_full_upload, false,
     false, .upload = true},
    {AG_HTTP_GET, "/snapshots/{snapshot}", "read:snapshots", AG_SCOPE_NONE, h_full_download, false,
     false},
    {AG_HTTP_DELETE, "/snapshots/{snapshot}", "manage:snapshots", AG_SCOPE_NONE, h_full_delete,
     false, false},
    {AG_HTTP_POST, "/snapshots/{snapshot}/restore", "manage:snapshots", AG_SCOPE_NONE,
     h_full_restore, false, false},
};
const size_t ag_routes_snapshots_len = AG_ARRAY_LEN(ag_routes_snapshots);
