/* Snapshot files (docs/SECURITY.md "Snapshots", docs/ARCHITECTURE.md): creating an archive of the
 * store in a snapshots directory with its checksum file; describing, listing, opening and
 * deleting those files; checking, unpacking, validating and restoring an archive into the store.
 * The api layer decides where (directories), who (authorization) and adds the sealed security
 * state through a callback (it lives in auth/, which store/ may not include). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ag_file.h"
#include "ag_metrics.h"
#include "ag_tar.h"
#include "store/ag_snapfile.h"
#include "store/ag_snapshot.h"
#include "json/ag_json.h"

#define SNAP_SUFFIX ".snapshot"
#define CHECKSUM_SUFFIX ".checksum"
#define FORMAT_NAME "aegis-snapshot"
#define FORMAT_VERSION 1

static atomic_uint name_seq; /* makes names unique within one second */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* ---- files ---------------------------------------------------------------------------------- */

int ag_snapfile_mkdirs(const char *path)
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

/* A snapshot file name as a client may give it: a valid name ending in .snapshot, not hidden. */
static bool name_ok(const char *name)
{
    ag_diag_t d;
    size_t n = strlen(name), sl = strlen(SNAP_SUFFIX);
    return n > sl && n <= 250 && name[0] != '.' && strcmp(name + n - sl, SNAP_SUFFIX) == 0 &&
           !strchr(name, '/') && ag_name_check(name, n, "snapshot", &d) == 0;
}

int ag_snapfile_sha256_fd(int fd, uint64_t off, uint64_t len, char hex[65])
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
json_t *ag_snapfile_describe(const char *dir, const char *name)
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

json_t *ag_snapfile_list(const char *dir)
{
    json_t *out = json_array();
    DIR *d = opendir(dir);
    if (!d || !out)
        return out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!name_ok(e->d_name))
            continue;
        json_t *desc = ag_snapfile_describe(dir, e->d_name);
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

int ag_snapfile_open(const char *dir, const char *name, int *fd, uint64_t *size, ag_diag_t *diag)
{
    *fd = -1;
    char path[4096];
    json_t *complete = name_ok(name) ? ag_snapfile_describe(dir, name) : NULL;
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

int ag_snapfile_remove(const char *dir, const char *name, ag_diag_t *diag)
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

void ag_snapfile_make_name(char *out, size_t len, const char *prefix)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned n = atomic_fetch_add(&name_seq, 1);
    snprintf(out, len, "%.180s-%04d-%02d-%02d-%02d-%02d-%02d-%u%04x%s", prefix, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, n,
             (unsigned)(randombytes_random() & 0xffff), SNAP_SUFFIX);
}

/* A partial snapshot's part of manifest.json (NULL: not a partial snapshot). */
typedef struct partial {
    const json_t *segments; /* the source's manifest, read before the data */
    bool with_data;
} partial_t;

static int create_file(ag_store_t *st, const char *dir, const char *name, const char *collection,
                       ag_snapfile_extra_fn extra, void *extra_ctx, const partial_t *partial,
                       json_t **desc, ag_diag_t *diag);

int ag_snapfile_create(ag_store_t *st, const char *dir, const char *name, const char *collection,
                       ag_snapfile_extra_fn extra, void *extra_ctx, json_t **desc, ag_diag_t *diag)
{
    return create_file(st, dir, name, collection, extra, extra_ctx, NULL, desc, diag);
}

int ag_snapfile_create_partial(ag_store_t *st, const char *dir, const char *name,
                               const char *collection, const json_t *manifest, bool with_data,
                               json_t **desc, ag_diag_t *diag)
{
    partial_t p = {manifest, with_data};
    return create_file(st, dir, name, collection, NULL, NULL, &p, desc, diag);
}

static int create_file(ag_store_t *st, const char *dir, const char *name, const char *collection,
                       ag_snapfile_extra_fn extra, void *extra_ctx, const partial_t *partial,
                       json_t **desc, ag_diag_t *diag)
{
    *desc = NULL;
    char path[4096], sumpath[4200];
    if (ag_snapfile_mkdirs(dir) != 0)
        return ag_fail(diag, AG_EIO, "cannot create the snapshots directory");
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(sumpath, sizeof(sumpath), "%s%s", path, CHECKSUM_SUFFIX);
    ag_durable_t d;
    if (ag_durable_open(&d, path, 0600) != 0)
        return ag_fail(diag, AG_EIO, "cannot create the snapshot file");
    json_t *names = NULL;
    int rc = 0;
    if (!partial || partial->with_data)
        rc = ag_store_snapshot_write(st, collection, d.f, dir, &names, diag);
    else if (!(names = json_pack("[s]", collection)))
        rc = AG_ENOMEM;
    if (rc == 0 && extra)
        rc = extra(d.f, extra_ctx, diag);
    json_t *manifest = NULL;
    if (rc == 0) {
        manifest = json_pack("{s:s,s:i,s:s,s:s?,s:O,s:I,s:b}", "format", FORMAT_NAME, "version",
                             FORMAT_VERSION, "kind", collection ? "collection" : "full",
                             "collection", collection, "collections", names, "created_at",
                             (json_int_t)time(NULL), "security_sealed", extra != NULL);
        if (manifest && partial &&
            (json_object_set_new(manifest, "kind", json_string("partial")) != 0 ||
             json_object_set_new(manifest, "segments", json_deep_copy(partial->segments)) != 0 ||
             json_object_set_new(manifest, "with_data", json_boolean(partial->with_data)) != 0)) {
            json_decref(manifest);
            manifest = NULL;
        }
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
        rc = len < 0 || rfd < 0 ? AG_EIO : ag_snapfile_sha256_fd(rfd, 0, (uint64_t)len, hex);
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
    *desc = ag_snapfile_describe(dir, name);
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

/* A partial snapshot (docs/SECURITY.md "Partial snapshots"): with data, the collection is
 * replaced and takes the source's identity; without, it must already be at the source's state
 * (its manifest equal to the one the archive carries), and nothing changes. */
static int restore_partial(ag_store_t *st, const char *dir, const json_t *manifest,
                           const char *target, ag_diag_t *diag)
{
    static const char *const data[] = {"manifest.json", "collection.json", "points.bin",
                                       "vectors.bin"};
    const json_t *segments = json_object_get(manifest, "segments");
    json_t *with = json_object_get(manifest, "with_data");
    if (!json_is_object(segments) || json_object_size(segments) != 1 || !json_is_boolean(with))
        return ag_fail(diag, AG_EINVAL, "Bad request: partial snapshot manifest is malformed");
    int rc = only_entries(dir, data, json_is_true(with) ? AG_ARRAY_LEN(data) : 1, diag);
    if (rc)
        return rc;
    if (json_is_true(with)) {
        ag_restore_item_t item = {target, dir, segments};
        return ag_store_restore(st, &item, 1, NULL, diag);
    }
    ag_collection_t *c = NULL;
    if (ag_store_get(st, target, &c, NULL) != 0)
        return ag_fail(diag, AG_ENOTFOUND,
                       "Not found: Collection `%.64s` doesn't exist! A partial snapshot without "
                       "data applies only to the collection it was made against",
                       target);
    json_t *mine = ag_coll_manifest(c);
    bool same = mine && json_equal(mine, segments);
    json_decref(mine);
    ag_coll_unref(c);
    if (!same)
        return ag_fail(diag, AG_ECONFLICT,
                       "Conflict: the partial snapshot holds no data and collection `%.64s` is "
                       "not at the state it was made against; create a partial snapshot from "
                       "its current manifest",
                       target);
    return 0;
}

static int restore_extracted(ag_store_t *st, const char *dir, const char *target, ag_diag_t *diag)
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
    if (target && strcmp(kind, "partial") == 0) {
        rc = restore_partial(st, dir, manifest, target, diag);
        json_decref(manifest);
        return rc;
    }
    if (target) {
        static const char *const top[] = {"manifest.json", "collection.json", "points.bin",
                                          "vectors.bin"};
        if (strcmp(kind, "collection") != 0)
            rc = ag_fail(diag, AG_EINVAL, "Bad request: this is not a collection snapshot");
        if (rc == 0)
            rc = only_entries(dir, top, AG_ARRAY_LEN(top), diag);
        ag_restore_item_t item = {target, dir, NULL};
        if (rc == 0)
            rc = ag_store_restore(st, &item, 1, NULL, diag);
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
        rc = ag_store_restore(st, items, n, aliases, diag);
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

bool ag_snapfile_checksum_ok(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

int ag_snapfile_restore(ag_store_t *st, const char *tmp_dir, int fd, uint64_t off, uint64_t len,
                        const char *checksum, const char *target, ag_diag_t *diag)
{
    if (checksum) {
        char hex[65];
        if (!ag_snapfile_checksum_ok(checksum))
            return ag_fail(diag, AG_EINVAL, "checksum: expected 64 hexadecimal characters");
        int rc = ag_snapfile_sha256_fd(fd, off, len, hex);
        if (rc)
            return ag_fail(diag, rc, "cannot read the snapshot");
        if (!hex_equal(checksum, hex))
            return ag_fail(diag, AG_EINVAL,
                           "Bad request: Snapshot checksum mismatch: expected %.64s, got %s",
                           checksum, hex);
    }
    /* Room to extract it and to load it into storage. */
    struct statvfs vfs;
    if (statvfs(tmp_dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize / 2 < len + (1u << 20))
        return ag_fail(diag, AG_ENOSPACE,
                       "Insufficient storage: restoring this snapshot needs about %llu MB free",
                       (unsigned long long)((2 * len) >> 20) + 1);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/restore-XXXXXX", tmp_dir);
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
        rc = restore_extracted(st, dir, target, diag);
    ag_tar_remove_tree(dir);
    return rc;
}
