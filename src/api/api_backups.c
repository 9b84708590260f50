/* Backups and backup schedules (Qdrant Cloud's resources, on one server): a backup is a full
 * snapshot kept under <snapshots>/backups; schedules are five-field cron expressions with a
 * retention count, run by a thread in the server (docs/API.md "Backups", docs/SECURITY.md
 * "Snapshots"). */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ag_cron.h"
#include "ag_file.h"
#include "ag_log.h"
#include "api/ag_guard.h"
#include "api/ag_snapshots_int.h"
#include "auth/ag_audit.h"
#include "json/ag_json.h"

#define S ag_snapsvc

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}
#define MAX_SCHEDULES 100
#define MAX_RETENTION 1000

static struct {
    pthread_mutex_t mu; /* schedules file and backup runs */
    pthread_t thread;
    bool running;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stopping;
} B = {PTHREAD_MUTEX_INITIALIZER, 0,    false, PTHREAD_MUTEX_INITIALIZER,
       PTHREAD_COND_INITIALIZER,  false};

static void backups_dir(char *out, size_t len)
{
    snprintf(out, len, "%s/backups", S.root);
}

static void schedules_path(char *out, size_t len)
{
    snprintf(out, len, "%s/backup-schedules.json", S.root);
}

/* {"schedules": [...]} from disk (a new reference; an empty list when there is none). */
static json_t *load_schedules(void)
{
    char path[4096];
    schedules_path(path, sizeof(path));
    json_error_t jerr;
    json_t *s = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_array(json_object_get(s, "schedules"))) {
        json_decref(s);
        s = json_pack("{s:[]}", "schedules");
    }
    return s;
}

static int save_schedules(const json_t *s)
{
    char path[4096];
    schedules_path(path, sizeof(path));
    char *text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return AG_ENOMEM;
    int rc = ag_file_replace(path, text, strlen(text), 0600);
    free(text);
    return rc;
}

/* The id of a backup is its snapshot file name without ".snapshot". */
static json_t *backup_json(const char *dir, const char *file)
{
    json_t *d = ag_snapfile_describe(dir, file);
    if (!d)
        return NULL;
    char id[AG_MAX_NAME_LEN + 1];
    snprintf(id, sizeof(id), "%.*s", (int)(strlen(file) - strlen(".snapshot")), file);
    char meta[4400];
    snprintf(meta, sizeof(meta), "%s/%s.json", dir, id);
    json_error_t jerr;
    json_t *m = json_load_file(meta, 0, &jerr);
    json_t *sid = json_object_get(m, "schedule_id");
    json_t *out = json_pack("{s:s,s:O,s:O,s:O,s:s,s:O?}", "id", id, "created_at",
                            json_object_get(d, "creation_time"), "size", json_object_get(d, "size"),
                            "checksum", json_object_get(d, "checksum"), "status", "succeeded",
                            "schedule_id", json_is_string(sid) ? sid : NULL);
    json_decref(m);
    json_decref(d);
    return out;
}

/* Writes a new backup (caller holds B.mu). *out a new descriptor. */
static int make_backup(const char *schedule_id, json_t **out, ag_diag_t *diag)
{
    char dir[4096], name[AG_MAX_NAME_LEN + 1];
    backups_dir(dir, sizeof(dir));
    ag_snapfile_make_name(name, sizeof(name), "backup");
    json_t *desc = NULL;
    int rc = ag_snap_create(dir, name, NULL, &desc, diag);
    json_decref(desc);
    if (rc)
        return rc;
    if (schedule_id) {
        char meta[4400];
        snprintf(meta, sizeof(meta), "%s/%.*s.json", dir, (int)(strlen(name) - 9), name);
        json_t *m = json_pack("{s:s}", "schedule_id", schedule_id);
        char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (!text || ag_file_replace(meta, text, strlen(text), 0600) != 0)
            ag_log(AG_LOG_WARN, "backup %s: cannot record its schedule", name);
        free(text);
        json_decref(m);
    }
    *out = backup_json(dir, name);
    return *out ? 0 : AG_EIO;
}

static int remove_backup(const char *id, ag_diag_t *diag)
{
    char dir[4096], file[AG_MAX_NAME_LEN + 16], meta[4400];
    backups_dir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s.snapshot", id);
    int rc = ag_snapfile_remove(dir, file, diag);
    if (rc == AG_ENOTFOUND)
        return ag_fail(diag, rc, "Not found: backup %.100s does not exist", id);
    snprintf(meta, sizeof(meta), "%s/%s.json", dir, id);
    unlink(meta);
    return rc;
}

/* ---- handlers ------------------------------------------------------------------------------ */

static int h_list(ag_call_t *call)
{
    char dir[4096];
    backups_dir(dir, sizeof(dir));
    json_t *snaps = ag_snapfile_list(dir);
    json_t *out = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(snaps, i, s)
    {
        json_t *b = backup_json(dir, json_string_value(json_object_get(s, "name")));
        if (b)
            json_array_append_new(out, b);
    }
    json_decref(snaps);
    call->result = out;
    return out ? 0 : AG_ENOMEM;
}

static int h_create(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "dummy_never_used");
    if (rc)
        return rc;
    pthread_mutex_lock(&B.mu);
    rc = make_backup(NULL, &call->result, &call->diag);
    pthread_mutex_unlock(&B.mu);
    if (rc == 0)
        call->audit_detail = json_pack("{s:O}", "backup", json_object_get(call->result, "id"));
    return rc;
}

static int h_get(ag_call_t *call)
{
    char dir[4096], file[AG_MAX_NAME_LEN + 16];
    backups_dir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s.snapshot", call->params[0]);
    call->result = backup_json(dir, file);
    return call->result ? 0
                        : ag_fail(&call->diag, AG_ENOTFOUND,
                                  "Not found: backup %.100s does not exist", call->params[0]);
}

/* The backup's archive, as a full snapshot download is (docs/API.md "Backups"): read:backups
 * (the root key and management keys), audited — it is a copy of every collection. */
static int h_download(ag_call_t *call)
{
    char dir[4096], file[AG_MAX_NAME_LEN + 16];
    backups_dir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s.snapshot", call->params[0]);
    int fd;
    uint64_t size = 0;
    ag_diag_t ig = {{0}};
    if (strchr(call->params[0], '/') || ag_snapfile_open(dir, file, &fd, &size, &ig) != 0)
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: backup %.100s does not exist",
                       call->params[0]);
    call->audit_detail =
        json_pack("{s:s,s:I}", "downloaded_backup", call->params[0], "size", (json_int_t)size);
    ag_request_respond_file(call->req, 200, "application/octet-stream", fd, size);
    return 0;
}

static int h_delete(ag_call_t *call)
{
    pthread_mutex_lock(&B.mu);
    int rc = remove_backup(call->params[0], &call->diag);
    pthread_mutex_unlock(&B.mu);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "backup", call->params[0]);
    call->result = json_true();
    return 0;
}

static int h_restore(ag_call_t *call)
{
    int rc = ag_snap_need_root(call);
    if (rc)
        return rc;
    char dir[4096], file[AG_MAX_NAME_LEN + 16];
    backups_dir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s.snapshot", call->params[0]);
    int fd;
    uint64_t size;
    if ((rc = ag_snapfile_open(dir, file, &fd, &size, &call->diag)) != 0)
        return ag_fail(&call->diag, rc, "Not found: backup %.100s does not exist", call->params[0]);
    rc = ag_snap_restore_fd(fd, 0, size, NULL, NULL, &call->diag);
    close(fd);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "restored_backup", call->params[0]);
    call->result = json_true();
    return 0;
}

static int h_sched_list(ag_call_t *call)
{
    pthread_mutex_lock(&B.mu);
    json_t *s = load_schedules();
    pthread_mutex_unlock(&B.mu);
    call->result = json_incref(json_object_get(s, "schedules"));
    json_decref(s);
    return call->result ? 0 : AG_ENOMEM;
}

static json_t *find_schedule(json_t *all, const char *id, size_t *index)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(all, "schedules"), i, s)
    {
        if (strcmp(str_or_empty(json_string_value(json_object_get(s, "id"))), id) == 0) {
            if (index)
                *index = i;
            return s;
        }
    }
    return NULL;
}

static int h_sched_create(ag_call_t *call)
{
    json_t *b = call->body;
    int rc = AG_JSON_ONLY(b, "", &call->diag, "schedule", "retention");
    if (rc)
        return rc;
    json_t *sch = json_object_get(b, "schedule"), *ret = json_object_get(b, "retention");
    ag_cron_t cron;
    if (!json_is_string(sch))
        return ag_fail(&call->diag, AG_EINVAL,
                       "schedule: expected a cron expression such as \"0 3 * * *\"");
    if ((rc = ag_cron_parse(json_string_value(sch), &cron, &call->diag)) != 0)
        return rc;
    if (!json_is_integer(ret) || json_integer_value(ret) < 1 ||
        json_integer_value(ret) > MAX_RETENTION)
        return ag_fail(&call->diag, AG_EINVAL,
                       "retention: expected how many backups to keep (1 to %d)", MAX_RETENTION);
    unsigned char rnd[8];
    char id[40], hex[17];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(id, sizeof(id), "sched-%s", hex);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    json_t *entry = json_pack("{s:s,s:O,s:O,s:s,s:n}", "id", id, "schedule", sch, "retention", ret,
                              "created_at", when, "last_run");
    pthread_mutex_lock(&B.mu);
    json_t *all = load_schedules();
    json_t *list = json_object_get(all, "schedules");
    if (json_array_size(list) >= MAX_SCHEDULES)
        rc = ag_fail(&call->diag, AG_EINVAL, "at most %d backup schedules", MAX_SCHEDULES);
    else if (!entry || json_array_append(list, entry) != 0)
        rc = AG_ENOMEM;
    else
        rc = save_schedules(all);
    pthread_mutex_unlock(&B.mu);
    json_decref(all);
    if (rc) {
        json_decref(entry);
        return rc;
    }
    call->result = entry;
    call->audit_detail =
        json_pack("{s:s,s:O,s:O}", "backup_schedule", id, "schedule", sch, "retention", ret);
    return 0;
}

static int h_sched_get(ag_call_t *call)
{
    pthread_mutex_lock(&B.mu);
    json_t *all = load_schedules();
    pthread_mutex_unlock(&B.mu);
    call->result = json_incref(find_schedule(all, call->params[0], NULL));
    json_decref(all);
    return call->result
               ? 0
               : ag_fail(&call->diag, AG_ENOTFOUND,
                         "Not found: backup schedule %.100s does not exist", call->params[0]);
}

static int h_sched_delete(ag_call_t *call)
{
    pthread_mutex_lock(&B.mu);
    json_t *all = load_schedules();
    size_t i = 0;
    int rc = find_schedule(all, call->params[0], &i) ? 0 : AG_ENOTFOUND;
    if (rc == 0) {
        json_array_remove(json_object_get(all, "schedules"), i);
        rc = save_schedules(all);
    }
    pthread_mutex_unlock(&B.mu);
    json_decref(all);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: backup schedule %.100s does not exist",
                       call->params[0]);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s}", "backup_schedule", call->params[0]);
    call->result = json_true();
    return 0;
}

/* ---- the scheduler ------------------------------------------------------------------------- */

static void audit_run(const char *schedule_id, const json_t *detail, bool ok, const char *why)
{
    ag_audit_t *log = ag_guard_audit_log(S.api->guard);
    if (!log)
        return;
    json_t *res = json_pack("{s:s}", "backup_schedule", schedule_id);
    ag_audit_record_t r = {.principal_kind = "system",
                           .principal_id = "backup-scheduler",
                           .method = "RUN",
                           .route = "backup-schedule",
                           .action = "write:backups",
                           .resource = res,
                           .allowed = ok,
                           .status = ok ? 200 : 500,
                           .reason = why,
                           .detail = detail,
                           .sync = true};
    if (ag_audit_append(log, &r) != 0)
        ag_log(AG_LOG_ERROR, "backup schedule %s: the run could not be audited", schedule_id);
    json_decref(res);
}

/* Keeps the newest `keep` backups made by schedule id (names sort by creation time). */
static json_t *prune(const char *id, json_int_t keep)
{
    char dir[4096];
    backups_dir(dir, sizeof(dir));
    json_t *snaps = ag_snapfile_list(dir);
    json_t *mine = json_array(), *removed = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(snaps, i, s)
    {
        json_t *b = backup_json(dir, json_string_value(json_object_get(s, "name")));
        if (b &&
            strcmp(str_or_empty(json_string_value(json_object_get(b, "schedule_id"))), id) == 0)
            json_array_append(mine, json_object_get(b, "id"));
        json_decref(b);
    }
    for (size_t k = 0; (json_int_t)json_array_size(mine) - (json_int_t)k > keep; k++) {
        ag_diag_t d = {{0}};
        const char *victim = json_string_value(json_array_get(mine, k));
        if (remove_backup(victim, &d) == 0)
            json_array_append_new(removed, json_string(victim));
    }
    json_decref(mine);
    json_decref(snaps);
    return removed;
}

/* One run of schedule s (caller holds B.mu): a backup, the schedule's old backups beyond its
 * retention removed, the run audited and logged, last_run set to minute. *out (may be NULL) gets
 * a new {backup, removed}. */
static int run_schedule(json_t *s, const char *minute, json_t **out, ag_diag_t *d)
{
    const char *id = json_string_value(json_object_get(s, "id"));
    json_t *b = NULL;
    int rc = make_backup(id, &b, d);
    json_t *removed =
        rc == 0 ? prune(id, json_integer_value(json_object_get(s, "retention"))) : NULL;
    json_t *detail =
        json_pack("{s:O?,s:O?}", "backup", b ? json_object_get(b, "id") : NULL, "removed", removed);
    audit_run(id, detail, rc == 0, rc ? d->msg : NULL);
    if (rc)
        ag_log(AG_LOG_ERROR, "backup schedule %s failed: %s", id, d->msg);
    else
        ag_log(AG_LOG_INFO, "backup schedule %s: made %s", id,
               json_string_value(json_object_get(b, "id")));
    if (out)
        *out = json_incref(detail);
    json_decref(detail);
    json_decref(removed);
    json_decref(b);
    json_object_set_new(s, "last_run", json_string(minute));
    return rc;
}

static void minute_of(time_t now, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M", &tm);
}

static void run_due(time_t now)
{
    pthread_mutex_lock(&B.mu);
    json_t *all = load_schedules();
    bool changed = false;
    size_t i;
    json_t *s;
    char minute[32];
    minute_of(now, minute, sizeof(minute));
    json_array_foreach(json_object_get(all, "schedules"), i, s)
    {
        ag_cron_t cron;
        ag_diag_t d = {{0}};
        const char *id = json_string_value(json_object_get(s, "id"));
        const char *last = json_string_value(json_object_get(s, "last_run"));
        if (!id || ag_cron_parse(json_string_value(json_object_get(s, "schedule")), &cron, &d) ||
            !ag_cron_matches(&cron, now) || (last && strncmp(last, minute, strlen(minute)) == 0))
            continue;
        run_schedule(s, minute, NULL, &d);
        changed = true;
    }
    if (changed && save_schedules(all) != 0)
        ag_log(AG_LOG_ERROR, "cannot record the backup schedules' last runs");
    pthread_mutex_unlock(&B.mu);
    json_decref(all);
}

/* POST /backup-schedules/{id}/run: runs the schedule now, as the scheduler would (a backup, the
 * retention applied, the run audited). */
static int h_sched_run(ag_call_t *call)
{
    pthread_mutex_lock(&B.mu);
    json_t *all = load_schedules();
    json_t *s = find_schedule(all, call->params[0], NULL);
    char minute[32];
    minute_of(time(NULL), minute, sizeof(minute));
    int rc = s ? run_schedule(s, minute, &call->result, &call->diag) : AG_ENOTFOUND;
    if (s && save_schedules(all) != 0)
        ag_log(AG_LOG_ERROR, "cannot record the backup schedules' last runs");
    pthread_mutex_unlock(&B.mu);
    json_decref(all);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: backup schedule %.100s does not exist",
                       call->params[0]);
    return rc;
}

static void *scheduler_main(void *arg)
{
    AG_UNUSED(arg);
    pthread_mutex_lock(&B.stop_mu);
    while (!B.stopping) {
        /* Wake at the next minute boundary (and no later than a minute from now). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 60 - ts.tv_sec % 60;
        ts.tv_nsec = 50 * 1000 * 1000;
        pthread_cond_timedwait(&B.stop_cv, &B.stop_mu, &ts);
        if (B.stopping)
            break;
        pthread_mutex_unlock(&B.stop_mu);
        run_due(time(NULL));
        pthread_mutex_lock(&B.stop_mu);
    }
    pthread_mutex_unlock(&B.stop_mu);
    return NULL;
}

int ag_backups_start(ag_diag_t *diag)
{
    char dir[4096];
    backups_dir(dir, sizeof(dir));
    if (ag_snapfile_mkdirs(dir) != 0)
        return ag_fail(diag, AG_ECONFIG, "storage.snapshots_path: cannot create '%s'", dir);
    B.stopping = false;
    if (pthread_create(&B.thread, NULL, scheduler_main, NULL) != 0)
        return ag_fail(diag, AG_EINTERNAL, "cannot start the backup scheduler");
    B.running = true;
    return 0;
}

void ag_backups_stop(void)
{
    if (!B.running)
        return;
    pthread_mutex_lock(&B.stop_mu);
    B.stopping = true;
    pthread_cond_broadcast(&B.stop_cv);
    pthread_mutex_unlock(&B.stop_mu);
    pthread_join(B.thread, NULL);
    B.running = false;
}

const ag_route_t ag_routes_backups[] = {
    {AG_HTTP_GET, "/backups", "read:backups", AG_SCOPE_NONE, h_list, false, false},
    {AG_HTTP_POST, "/backups", "write:backups", AG_SCOPE_NONE, h_create, true, false},
    {AG_HTTP_GET, "/backups/{backup}", "read:backups", AG_SCOPE_NONE, h_get, false, false},
    {AG_HTTP_DELETE, "/backups/{backup}", "delete:backups", AG_SCOPE_NONE, h_delete, false, false},
    {AG_HTTP_GET, "/backups/{backup}/download", "read:backups", AG_SCOPE_NONE, h_download, false,
     false},
    /* Restoring replaces every collection in the backup: the root key only, audited. */
    {AG_HTTP_POST, "/backups/{backup}/restore", "write:backups", AG_SCOPE_NONE, h_restore, false,
     false},
    {AG_HTTP_GET, "/backup-schedules", "read:backup_schedules", AG_SCOPE_NONE, h_sched_list, false,
     false},
    {AG_HTTP_POST, "/backup-schedules", "write:backup_schedules", AG_SCOPE_NONE, h_sched_create,
     true, false},
    {AG_HTTP_POST, "/backup-schedules/{schedule}/run", "write:backups", AG_SCOPE_NONE, h_sched_run,
     false, false},
    {AG_HTTP_GET, "/backup-schedules/{schedule}", "read:backup_schedules", AG_SCOPE_NONE,
     h_sched_get, false, false},
    {AG_HTTP_DELETE, "/backup-schedules/{schedule}", "delete:backup_schedules", AG_SCOPE_NONE,
     h_sched_delete, false, false},
};
const size_t ag_routes_backups_len = AG_ARRAY_LEN(ag_routes_backups);
