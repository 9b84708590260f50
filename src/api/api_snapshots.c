/* Collection and full snapshots: create, list, download, delete, upload, recover
 * (docs/SECURITY.md "Snapshots", docs/API.md): routes, parameters, authorization, the background
 * worker (wait=false) and the service's directories. The files themselves are
 * store/ag_snapfile.c; sealing, recover locations and uploads are api_snapshots_io.c. Backups
 * reuse the same machinery (api_backups.c). */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ag_log.h"
#include "ag_tar.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots.h"
#include "api/ag_snapshots_int.h"
#include "auth/ag_principal.h"
#include "http/ag_fetch.h"
#include "json/ag_json.h"

typedef struct job {
    struct job *next;
    int kind; /* JOB_* */
    char collection[AG_MAX_NAME_LEN + 1];
    char name[AG_MAX_NAME_LEN + 1];
} job_t;

enum { JOB_CREATE_COLLECTION, JOB_CREATE_FULL, JOB_DELETE_COLLECTION, JOB_DELETE_FULL };

ag_snapsvc_t ag_snapsvc;
#define S ag_snapsvc

void ag_snap_coll_dir(char *out, size_t len, const char *collection)
{
    snprintf(out, len, "%s/collections/%s", S.root, collection);
}

void ag_snap_full_dir(char *out, size_t len)
{
    snprintf(out, len, "%s/full", S.root);
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
        rc = ag_snapfile_remove(dir, j->name, &diag);
        break;
    case JOB_DELETE_FULL:
        ag_snap_full_dir(dir, sizeof(dir));
        rc = ag_snapfile_remove(dir, j->name, &diag);
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
    call->result = ag_snapfile_list(dir);
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
    ag_snapfile_make_name(name, sizeof(name), coll);
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
    if ((rc = ag_snapfile_open(dir, snap_param(call), &fd, &size, &call->diag)) != 0)
        return rc;
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

/* Deletes snapshot `name` of directory `dir`: 404 when there is none; with wait=false queued as
 * job `kind` (202), else removed now (true). Shared by collection and full snapshots. */
static int delete_snapshot(ag_call_t *call, const char *dir, int kind, const char *coll)
{
    const char *name = snap_param(call);
    int fd;
    uint64_t size = 0;
    int rc = ag_snapfile_open(dir, name, &fd, &size, &call->diag);
    if (rc)
        return rc;
    close(fd);
    const char *w = ag_request_query(call->req, "wait");
    if (w && strcmp(w, "false") == 0) {
        rc = enqueue(kind, coll, name);
        return rc ? rc : ag_snap_accepted(call);
    }
    if ((rc = ag_snapfile_remove(dir, name, &call->diag)) != 0)
        return rc;
    call->result = json_true();
    call->audit_detail = json_pack("{s:s}", "snapshot", name);
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
    return delete_snapshot(call, dir, JOB_DELETE_COLLECTION, coll);
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
    if (sum && !json_is_null(sum) && !ag_snapfile_checksum_ok(json_string_value(sum)))
        return ag_fail(&call->diag, AG_EINVAL, "checksum: expected 64 hexadecimal characters");
    if (key && !json_is_null(key) && !json_is_string(key))
        return ag_fail(&call->diag, AG_EINVAL, "api_key: expected a string");
    int fd;
    uint64_t len;
    char *tmp = NULL;
    rc = ag_snap_open_location(json_string_value(loc), json_string_value(key), &fd, &len, &tmp,
                               &call->diag);
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
    if (sum && !ag_snapfile_checksum_ok(sum))
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
    if ((rc = ag_snap_upload_range(call->req, &off, &len, &call->diag)) != 0)
        return rc;
    rc = ag_snap_restore_fd(call->req->spool_fd, off, len, ag_request_query(call->req, "checksum"),
                            target, &call->diag);
    return rc ? rc : finish_recover(call, target, "upload");
}

/* ---- partial snapshots (docs/SECURITY.md "Partial snapshots") ----------------------------- */

static int h_partial_manifest(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc == 0)
        rc = may_read(call, coll, false);
    if (rc)
        return rc;
    call->result = ag_coll_manifest(call->coll);
    return call->result ? 0 : AG_ENOMEM;
}

/* The recipient's manifest of a partial create: {"<segment id>": {"segment_id": s,
 * "segment_version": n, "file_versions": {path: n or null}}}, every key checked. */
static int check_manifest(ag_call_t *call, const json_t *m)
{
    if (!json_is_object(m))
        return ag_fail(&call->diag, AG_EINVAL,
                       "manifest: expected an object of segments (the recipient's "
                       "snapshot/partial/manifest)");
    const char *id, *path;
    json_t *seg, *v;
    json_object_foreach((json_t *)m, id, seg)
    {
        int rc = AG_JSON_ONLY(seg, "manifest segment", &call->diag, "segment_id", "segment_version",
                              "file_versions");
        if (rc)
            return rc;
        json_t *sid = json_object_get(seg, "segment_id"),
               *ver = json_object_get(seg, "segment_version");
        json_t *files = json_object_get(seg, "file_versions");
        if (!json_is_object(seg) || (sid && !json_is_string(sid)) ||
            (ver && !json_is_null(ver) && !json_is_integer(ver)) || !json_is_object(files))
            return ag_fail(&call->diag, AG_EINVAL,
                           "manifest: segment '%.64s' needs segment_id (string), segment_version "
                           "(integer) and file_versions (object)",
                           id);
        json_object_foreach(files, path, v)
        {
            if (!json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) >= 0))
                return ag_fail(&call->diag, AG_EINVAL,
                               "manifest: file_versions of segment '%.64s': '%.100s' must be a "
                               "non-negative integer or null",
                               id, path);
        }
    }
    return 0;
}

/* Whether the recipient's manifest already has every part of ours at our version or later. */
static bool covers(const json_t *theirs, const json_t *ours)
{
    const char *id, *path;
    json_t *seg, *v;
    json_object_foreach((json_t *)ours, id, seg)
    {
        json_t *files = json_object_get(json_object_get(theirs, id), "file_versions");
        json_object_foreach(json_object_get(seg, "file_versions"), path, v)
        {
            json_t *t = json_object_get(files, path);
            if (!json_is_integer(t) || json_integer_value(t) < json_integer_value(v))
                return false;
        }
    }
    return true;
}

/* A partial snapshot against the recipient's manifest (the body), answered as the archive
 * itself: the collection's data unless the recipient already has our segment at our versions. */
static int h_partial_create(ag_call_t *call)
{
    const char *coll = NULL;
    int rc = route_collection(call, &coll);
    if (rc == 0)
        rc = may_read(call, coll, true);
    if (rc == 0)
        rc = whole_rows(call, coll);
    if (rc == 0)
        rc = check_manifest(call, call->body);
    if (rc)
        return rc;
    json_t *ours = ag_coll_manifest(call->coll); /* before the data: never claims more */
    if (!ours)
        return AG_ENOMEM;
    bool with_data = !covers(call->body, ours);
    char name[AG_MAX_NAME_LEN + 1];
    ag_snapfile_make_name(name, sizeof(name), "partial");
    json_t *desc = NULL;
    rc = ag_snap_create_partial(S.tmp, name, coll, ours, with_data, &desc, &call->diag);
    json_decref(ours);
    json_decref(desc);
    if (rc)
        return rc;
    int fd;
    uint64_t size = 0;
    rc = ag_snapfile_open(S.tmp, name, &fd, &size, &call->diag);
    ag_diag_t ig = {{0}};
    ag_snapfile_remove(S.tmp, name, &ig); /* the open descriptor keeps it readable */
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s,s:b}", "partial_snapshot", name, "with_data", with_data);
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

/* ---- full snapshots ------------------------------------------------------------------------ */

static int h_full_list(ag_call_t *call)
{
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    call->result = ag_snapfile_list(dir);
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
    ag_snapfile_make_name(name, sizeof(name), "full-snapshot");
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
    int rc = ag_snapfile_open(dir, snap_param(call), &fd, &size, &call->diag);
    if (rc)
        return rc;
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

static int h_full_delete(ag_call_t *call)
{
    char dir[4096];
    ag_snap_full_dir(dir, sizeof(dir));
    return delete_snapshot(call, dir, JOB_DELETE_FULL, NULL);
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
    if ((rc = ag_snapfile_open(dir, name, &fd, &size, &call->diag)) != 0)
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
    if ((rc = ag_snap_upload_range(call->req, &off, &len, &call->diag)) != 0)
        return rc;
    rc = ag_snap_restore_fd(call->req->spool_fd, off, len, ag_request_query(call->req, "checksum"),
                            NULL, &call->diag);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "restored_full_snapshot", "upload");
    call->result = json_true();
    return 0;
}

/* ---- the C API (ag_snapshots.h) ------------------------------------------------------------ */

/* The directory of collection's snapshots (full ones for NULL); false for a name that is not a
 * collection name (never a path outside the snapshots directory). */
static bool dir_for(char *out, size_t len, const char *collection)
{
    ag_diag_t ig = {{0}};
    if (collection && ag_name_check(collection, strlen(collection), "collection", &ig) != 0)
        return false;
    if (collection)
        ag_snap_coll_dir(out, len, collection);
    else
        ag_snap_full_dir(out, len);
    return true;
}

int ag_snapshots_create(const char *collection, json_t **desc, ag_diag_t *diag)
{
    *desc = NULL;
    if (!S.started)
        return ag_fail(diag, AG_EUNAVAILABLE, "snapshots are not available");
    char name[AG_MAX_NAME_LEN + 1], dir[4096];
    if (!dir_for(dir, sizeof(dir), collection))
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Collection doesn't exist!");
    ag_snapfile_make_name(name, sizeof(name), collection ? collection : "full-snapshot");
    return ag_snap_create(dir, name, collection, desc, diag);
}

json_t *ag_snapshots_list(const char *collection)
{
    char dir[4096];
    return S.started && dir_for(dir, sizeof(dir), collection) ? ag_snapfile_list(dir)
                                                              : json_array();
}

int ag_snapshots_delete(const char *collection, const char *name, ag_diag_t *diag)
{
    char dir[4096];
    if (!dir_for(dir, sizeof(dir), collection))
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Snapshot %.100s not found", name);
    return ag_snapfile_remove(dir, name, diag);
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
    if (ag_snapfile_mkdirs(S.tmp) != 0)
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
    /* Partial snapshots (docs/SECURITY.md "Partial snapshots"): Aegis's one segment per
     * collection is sent whole, or not at all when the recipient already has it. */
    {AG_HTTP_GET, "/collections/{name}/shards/{shard}/snapshot/partial/manifest",
     "read:collections", AG_SCOPE_COLLECTION, h_partial_manifest, false, false},
    {AG_HTTP_POST, "/collections/{name}/shards/{shard}/snapshot/partial/create", "create:snapshots",
     AG_SCOPE_COLLECTION, h_partial_create, true, false},
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
