#include "ag_cli.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "http/ag_http_client.h"

/* The options every subcommand takes. */
typedef struct cli {
    const char *cmd; /* "users", ... */
    ag_http_target_t target;
    const char *key;
    const char *args[32]; /* positional arguments after the subcommand's verb */
    int nargs;
    const char *roles[32]; /* --role, repeatable */
    int nroles;
    const char *perms[32]; /* --permission JSON, repeatable */
    int nperms;
    const char *access; /* --access */
    long long expires_in, batch, start_id;
    const char *create;  /* --create DIM:DISTANCE */
    const char *format;  /* --format */
    const char *cron;    /* --cron, backup schedules */
    long long retention; /* --retention, backup schedules */
    bool has_retention;
} cli_t;

static const char COMMON[] =
    "\nCommon options:\n"
    "  --url URL     the server (default $AEGIS_URL, else http://127.0.0.1:6333); https:// is\n"
    "                verified against the system's trust store, or --ca FILE\n"
    "  --key KEY     the credential sent as api-key (default $AEGIS_API_KEY)\n"
    "  --ca FILE     PEM certificates to trust for https://\n"
    "  --help        this text\n"
    "Exit status: 0 done, 1 the server refused or failed (its message on stderr), 2 bad usage.\n";

static int usage(const char *cmd, bool help)
{
    FILE *f = help ? stdout : stderr;
    if (strcmp(cmd, "users") == 0)
        fprintf(f, "usage: aegis users list\n"
                   "       aegis users show ID\n"
                   "       aegis users create ID [--role ROLE]...   (prints the user's key, once)\n"
                   "       aegis users delete ID\n"
                   "       aegis users activate|deactivate ID\n"
                   "       aegis users rotate-key ID              (prints the new key, once)\n"
                   "       aegis users roles ID --role ROLE...    (assign roles)\n"
                   "\nDatabase users and their keys (docs/SECURITY.md), through /auth/users.\n");
    else if (strcmp(cmd, "roles") == 0)
        fprintf(f, "usage: aegis roles list\n"
                   "       aegis roles show NAME\n"
                   "       aegis roles create NAME --permission JSON [--permission JSON]...\n"
                   "       aegis roles delete NAME\n"
                   "\nCustom roles (docs/PERMISSIONS.md), through /auth/roles. A permission is\n"
                   "a JSON object, e.g. '{\"action\":\"read:data\",\"collection\":\"Sales*\"}'.\n");
    else if (strcmp(cmd, "keys") == 0)
        fprintf(f,
                "usage: aegis keys list\n"
                "       aegis keys create NAME (--access r|m|JSON | --role ROLE...)\n"
                "                         [--expires-in SECONDS]   (prints the key, once)\n"
                "       aegis keys rotate ID                          (prints the new key, once)\n"
                "       aegis keys delete ID\n"
                "\nDatabase API keys (docs/API.md \"Management plane\"), through\n"
                "/auth/api-keys. --access takes the JWT access claim: \"r\", \"m\" or a list\n"
                "like '[{\"collection\":\"docs\",\"access\":\"rw\"}]'.\n");
    else if (strcmp(cmd, "backup") == 0)
        fprintf(
            f,
            "usage: aegis backup list\n"
            "       aegis backup create\n"
            "       aegis backup show ID\n"
            "       aegis backup delete ID\n"
            "       aegis backup restore ID                  (root key only)\n"
            "       aegis backup schedules list\n"
            "       aegis backup schedules create --cron \"MIN HOUR DOM MON DOW\" --retention N\n"
            "       aegis backup schedules show ID\n"
            "       aegis backup schedules delete ID\n"
            "       aegis backup schedules run ID            (a backup now, as scheduled)\n"
            "\nServer-side backups (full snapshots kept by the server; docs/API.md\n"
            "\"Backups\"), through /backups and /backup-schedules. --cron is a five-field\n"
            "cron expression in UTC, e.g. \"0 3 * * *\"; --retention (1 to 1000) how many of\n"
            "the schedule's backups to keep. restore replaces every collection and alias\n"
            "with the backup's, all or nothing.\n");
    else if (strcmp(cmd, "audit") == 0)
        fprintf(f, "usage: aegis audit verify --cluster [--url URL] [--key KEY] [--ca FILE]\n"
                   "\nAsks every node of the cluster to check its own audit chain (see\n"
                   "`aegis audit verify --help`).\n");
    else
        fprintf(f,
                "usage: aegis import COLLECTION FILE [--format jsonl|fvecs] [--batch N]\n"
                "                    [--create DIM:DISTANCE] [--start-id N]\n"
                "\nUploads points from FILE (\"-\" = standard input) in batches of N (default\n"
                "256) with wait=true, showing progress on stderr. jsonl: one point per line,\n"
                "{\"id\": 1, \"vector\": [...], \"payload\": {...}} as PUT .../points takes it.\n"
                "fvecs: little-endian int32 dimension then that many float32, per vector;\n"
                "ids count up from --start-id (default 0), no payload. --create makes the\n"
                "collection first (e.g. 128:Cosine). A bad line stops the import naming it;\n"
                "the batches before it stay.\n");
    fputs(COMMON, f);
    return help ? 0 : 2;
}

static bool want_value(int argc, char **argv, int i)
{
    return i + 1 < argc && argv[i + 1][0] != '\0';
}

/* Parses argv[2..]; 0, or the exit code to return (usage printed). */
static int parse(cli_t *c, int argc, char **argv, char **envp)
{
    const char *url = NULL;
    const char *ca = NULL;
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "AEGIS_URL=", 10) == 0)
            url = *e + 10;
        else if (strncmp(*e, "AEGIS_API_KEY=", 14) == 0)
            c->key = *e + 14;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(c->cmd, true) == 0 ? -1 : 2;
        bool v = want_value(argc, argv, i);
#define OPT(name) (strcmp(a, name) == 0 && v)
        if (OPT("--url"))
            url = argv[++i];
        else if (OPT("--key"))
            c->key = argv[++i];
        else if (OPT("--ca"))
            ca = argv[++i];
        else if (OPT("--role") && c->nroles < 32)
            c->roles[c->nroles++] = argv[++i];
        else if (OPT("--permission") && c->nperms < 32)
            c->perms[c->nperms++] = argv[++i];
        else if (OPT("--access"))
            c->access = argv[++i];
        else if (OPT("--create"))
            c->create = argv[++i];
        else if (OPT("--format"))
            c->format = argv[++i];
        else if (OPT("--cron"))
            c->cron = argv[++i];
        else if (OPT("--expires-in") || OPT("--batch") || OPT("--start-id") || OPT("--retention")) {
            char *end = NULL;
            errno = 0;
            long long n = strtoll(argv[i + 1], &end, 10);
            if (errno || !end || *end || n < 0) {
                fprintf(stderr, "aegis %s: %s: expected a whole number\n", c->cmd, a);
                return 2;
            }
            if (strcmp(a, "--expires-in") == 0)
                c->expires_in = n;
            else if (strcmp(a, "--batch") == 0)
                c->batch = n;
            else if (strcmp(a, "--retention") == 0) {
                c->retention = n;
                c->has_retention = true;
            } else
                c->start_id = n;
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "aegis %s: unknown option or missing value: %.64s\n", c->cmd, a);
            return usage(c->cmd, false);
        } else if (c->nargs < 32) {
            c->args[c->nargs++] = a;
        }
#undef OPT
    }
    ag_diag_t diag = {{0}};
    if (ag_http_target_parse(url ? url : "http://127.0.0.1:6333", &c->target, &diag) != 0) {
        fprintf(stderr, "aegis %s: %s\n", c->cmd, diag.msg);
        return 2;
    }
    c->target.ca_file = ca;
    if (!c->key || !*c->key) {
        fprintf(stderr, "aegis %s: no key: pass --key or set AEGIS_API_KEY\n", c->cmd);
        return 2;
    }
    return 0;
}

/* ---- calls --------------------------------------------------------------------------------- */

/* One call; prints the server's error on failure. *result (may be NULL) gets a new reference to
 * the envelope's result. Returns 0, or 1 after printing why. */
static int call(const cli_t *c, const char *method, const char *path, json_t *body, json_t **result)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    ag_http_reply_t r;
    ag_diag_t diag = {{0}};
    int rc =
        ag_http_call(&c->target, method, path, c->key, text, text ? strlen(text) : 0, &r, &diag);
    free(text);
    if (rc) {
        fprintf(stderr, "aegis %s: %s\n", c->cmd, diag.msg[0] ? diag.msg : ag_strerror(rc));
        return 1;
    }
    json_t *env = json_loadb(r.body, r.len, 0, NULL);
    int out = 0;
    if (r.status < 200 || r.status > 299) {
        const char *msg =
            json_string_value(json_object_get(json_object_get(env, "status"), "error"));
        fprintf(stderr, "aegis %s: %d: %s\n", c->cmd, r.status, msg ? msg : r.body);
        out = 1;
    } else if (result) {
        *result = json_incref(json_object_get(env, "result"));
    }
    json_decref(env);
    free(r.body);
    return out;
}

static void print(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s)
        printf("%s\n", s);
    free(s);
}

/* Runs a call and prints its result. */
static int run_print(const cli_t *c, const char *method, const char *path, json_t *body)
{
    json_t *res = NULL;
    int rc = call(c, method, path, body, &res);
    json_decref(body);
    if (rc == 0)
        print(res);
    json_decref(res);
    return rc;
}

/* A path segment percent-encoded into buf (names may hold any character but '/'). */
static const char *seg(const char *name, char *buf, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < len; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            buf[o++] = (char)*p;
        } else {
            buf[o++] = '%';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        }
    }
    buf[o] = '\0';
    return buf;
}

static json_t *role_array(const cli_t *c)
{
    json_t *a = json_array();
    for (int i = 0; a && i < c->nroles; i++)
        json_array_append_new(a, json_string(c->roles[i]));
    return a;
}

static int need_args(const cli_t *c, int n)
{
    if (c->nargs == n)
        return 0;
    fprintf(stderr, "aegis %s %s: expected %d argument(s)\n", c->cmd, c->nargs ? c->args[0] : "",
            n - 1);
    return usage(c->cmd, false);
}

static int users(const cli_t *c)
{
    const char *verb = c->nargs ? c->args[0] : "";
    char path[1024], id[700];
    if (strcmp(verb, "list") == 0 && need_args(c, 1) == 0)
        return run_print(c, "GET", "/auth/users", NULL);
    if (c->nargs != 2)
        return need_args(c, 2);
    seg(c->args[1], id, sizeof(id));
    if (strcmp(verb, "show") == 0) {
        snprintf(path, sizeof(path), "/auth/users/%s", id);
        return run_print(c, "GET", path, NULL);
    }
    if (strcmp(verb, "create") == 0) {
        snprintf(path, sizeof(path), "/auth/users/%s", id);
        return run_print(c, "POST", path, json_pack("{s:o}", "roles", role_array(c)));
    }
    if (strcmp(verb, "delete") == 0) {
        snprintf(path, sizeof(path), "/auth/users/%s", id);
        return run_print(c, "DELETE", path, NULL);
    }
    if (strcmp(verb, "activate") == 0 || strcmp(verb, "deactivate") == 0 ||
        strcmp(verb, "rotate-key") == 0) {
        snprintf(path, sizeof(path), "/auth/users/%s/%s", id, verb);
        return run_print(c, "POST", path, json_object());
    }
    if (strcmp(verb, "roles") == 0) {
        snprintf(path, sizeof(path), "/auth/users/%s/roles", id);
        return run_print(c, "POST", path, json_pack("{s:o}", "roles", role_array(c)));
    }
    fprintf(stderr, "aegis users: unknown action '%.64s'\n", verb);
    return usage(c->cmd, false);
}

static int roles(const cli_t *c)
{
    const char *verb = c->nargs ? c->args[0] : "";
    char path[1024], name[700];
    if (strcmp(verb, "list") == 0 && need_args(c, 1) == 0)
        return run_print(c, "GET", "/auth/roles", NULL);
    if (c->nargs != 2)
        return need_args(c, 2);
    snprintf(path, sizeof(path), "/auth/roles/%s", seg(c->args[1], name, sizeof(name)));
    if (strcmp(verb, "show") == 0)
        return run_print(c, "GET", path, NULL);
    if (strcmp(verb, "delete") == 0)
        return run_print(c, "DELETE", path, NULL);
    if (strcmp(verb, "create") == 0) {
        json_t *perms = json_array();
        for (int i = 0; i < c->nperms; i++) {
            json_error_t err;
            json_t *p = json_loads(c->perms[i], 0, &err);
            if (!json_is_object(p)) {
                fprintf(stderr, "aegis roles: --permission %d: expected a JSON object (%s)\n",
                        i + 1, err.text);
                json_decref(p);
                json_decref(perms);
                return 2;
            }
            json_array_append_new(perms, p);
        }
        return run_print(c, "POST", "/auth/roles",
                         json_pack("{s:s,s:o}", "name", c->args[1], "permissions", perms));
    }
    fprintf(stderr, "aegis roles: unknown action '%.64s'\n", verb);
    return usage(c->cmd, false);
}

static int keys(const cli_t *c)
{
    const char *verb = c->nargs ? c->args[0] : "";
    char path[1024], id[700];
    if (strcmp(verb, "list") == 0 && need_args(c, 1) == 0)
        return run_print(c, "GET", "/auth/api-keys", NULL);
    if (c->nargs != 2)
        return need_args(c, 2);
    seg(c->args[1], id, sizeof(id));
    if (strcmp(verb, "delete") == 0) {
        snprintf(path, sizeof(path), "/auth/api-keys/%s", id);
        return run_print(c, "DELETE", path, NULL);
    }
    if (strcmp(verb, "rotate") == 0) {
        snprintf(path, sizeof(path), "/auth/api-keys/%s/rotate", id);
        return run_print(c, "POST", path, json_object());
    }
    if (strcmp(verb, "create") == 0) {
        if (!c->access == !c->nroles) {
            fprintf(stderr, "aegis keys create: give exactly one of --access and --role\n");
            return 2;
        }
        json_t *body = json_pack("{s:s}", "name", c->args[1]);
        if (c->access) {
            json_t *a = strcmp(c->access, "r") == 0 || strcmp(c->access, "m") == 0
                            ? json_string(c->access)
                            : json_loads(c->access, 0, NULL);
            if (!a) {
                fprintf(stderr, "aegis keys create: --access: expected r, m or a JSON list\n");
                json_decref(body);
                return 2;
            }
            json_object_set_new(body, "access", a);
        } else {
            json_object_set_new(body, "roles", role_array(c));
        }
        if (c->expires_in)
            json_object_set_new(body, "expires_at",
                                json_integer((json_int_t)(time(NULL) + c->expires_in)));
        return run_print(c, "POST", "/auth/api-keys", body);
    }
    fprintf(stderr, "aegis keys: unknown action '%.64s'\n", verb);
    return usage(c->cmd, false);
}

/* aegis backup schedules ...: args are "schedules", verb[, ID]. */
static int backup_schedules(const cli_t *c)
{
    const char *verb = c->nargs > 1 ? c->args[1] : "";
    char path[1024], id[700];
    if (strcmp(verb, "list") == 0 && c->nargs == 2)
        return run_print(c, "GET", "/backup-schedules", NULL);
    if (strcmp(verb, "create") == 0 && c->nargs == 2) {
        if (!c->cron || !c->has_retention) {
            fprintf(stderr, "aegis backup schedules create: give --cron and --retention\n");
            return usage(c->cmd, false);
        }
        return run_print(
            c, "POST", "/backup-schedules",
            json_pack("{s:s,s:I}", "schedule", c->cron, "retention", (json_int_t)c->retention));
    }
    bool known =
        strcmp(verb, "delete") == 0 || strcmp(verb, "run") == 0 || strcmp(verb, "show") == 0;
    if (!known && strcmp(verb, "list") != 0 && strcmp(verb, "create") != 0) {
        fprintf(stderr, "aegis backup schedules: unknown action '%.64s'\n", verb);
        return usage(c->cmd, false);
    }
    if (!known || c->nargs != 3) {
        fprintf(stderr, "aegis backup schedules %s: expected %d argument(s)\n", verb,
                known ? 1 : 0);
        return usage(c->cmd, false);
    }
    snprintf(path, sizeof(path), "/backup-schedules/%s%s", seg(c->args[2], id, sizeof(id)),
             strcmp(verb, "run") == 0 ? "/run" : "");
    if (strcmp(verb, "run") == 0)
        return run_print(c, "POST", path, json_object());
    return run_print(c, strcmp(verb, "delete") == 0 ? "DELETE" : "GET", path, NULL);
}

static int backup(const cli_t *c)
{
    const char *verb = c->nargs ? c->args[0] : "";
    char path[1024], id[700];
    if (strcmp(verb, "schedules") == 0)
        return backup_schedules(c);
    if (strcmp(verb, "list") == 0 && need_args(c, 1) == 0)
        return run_print(c, "GET", "/backups", NULL);
    if (strcmp(verb, "create") == 0 && need_args(c, 1) == 0)
        return run_print(c, "POST", "/backups", json_object());
    if (strcmp(verb, "list") == 0 || strcmp(verb, "create") == 0)
        return 2; /* need_args printed the usage */
    if (strcmp(verb, "show") != 0 && strcmp(verb, "delete") != 0 && strcmp(verb, "restore") != 0) {
        fprintf(stderr, "aegis backup: unknown action '%.64s'\n", verb);
        return usage(c->cmd, false);
    }
    if (c->nargs != 2)
        return need_args(c, 2);
    snprintf(path, sizeof(path), "/backups/%s", seg(c->args[1], id, sizeof(id)));
    if (strcmp(verb, "show") == 0)
        return run_print(c, "GET", path, NULL);
    if (strcmp(verb, "restore") == 0) {
        snprintf(path, sizeof(path), "/backups/%s/restore", id);
        return run_print(c, "POST", path, json_object());
    }
    return run_print(c, "DELETE", path, NULL);
}

/* ---- import -------------------------------------------------------------------------------- */

typedef struct progress {
    bool tty;
    uint64_t total_bytes; /* 0 = unknown (a pipe) */
    uint64_t bytes, points;
    double t0, last;
    int last_decile;
} progress_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void show_progress(progress_t *p, bool done)
{
    double t = now_s();
    double rate = t > p->t0 ? (double)p->points / (t - p->t0) : 0.0;
    int pct = p->total_bytes ? (int)(100.0 * (double)p->bytes / (double)p->total_bytes) : -1;
    if (p->tty) {
        if (!done && t - p->last < 0.1)
            return;
        p->last = t;
        char bar[31];
        int fill = pct < 0 ? 0 : pct * 30 / 100;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : (pct < 0 ? '?' : '.');
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %llu points, %.0f/s%s", bar, pct < 0 ? 0 : pct,
                (unsigned long long)p->points, rate, done ? "\n" : "");
        return;
    }
    int decile = pct < 0 ? 0 : pct / 10;
    if (done || decile > p->last_decile) {
        p->last_decile = decile;
        fprintf(stderr, "import: %d%% %llu points, %.0f/s%s\n", pct < 0 ? 0 : pct,
                (unsigned long long)p->points, rate, done ? " — done" : "");
    }
}

static int flush_batch(const cli_t *c, const char *path, json_t *batch, uint64_t first_line)
{
    if (json_array_size(batch) == 0)
        return 0;
    json_t *body = json_pack("{s:O}", "points", batch);
    int rc = call(c, "PUT", path, body, NULL);
    json_decref(body);
    if (rc)
        fprintf(stderr,
                "aegis import: the batch starting at point %llu was refused; the batches "
                "before it are stored\n",
                (unsigned long long)first_line);
    json_array_clear(batch);
    return rc;
}

static int create_collection(const cli_t *c, const char *coll)
{
    char *colon = strchr(c->create, ':');
    char *end = NULL;
    long dim = strtol(c->create, &end, 10);
    if (!colon || end != colon || dim < 1) {
        fprintf(stderr, "aegis import: --create: expected DIM:DISTANCE, e.g. 128:Cosine\n");
        return 2;
    }
    char path[1024], name[700];
    snprintf(path, sizeof(path), "/collections/%s", seg(coll, name, sizeof(name)));
    json_t *body = json_pack("{s:{s:i,s:s}}", "vectors", "size", (int)dim, "distance", colon + 1);
    int rc = call(c, "PUT", path, body, NULL);
    json_decref(body);
    return rc;
}

static int import(const cli_t *c)
{
    if (c->nargs != 2)
        return need_args(c, 2);
    const char *coll = c->args[0], *file = c->args[1];
    bool fvecs = c->format && strcmp(c->format, "fvecs") == 0;
    if (c->format && !fvecs && strcmp(c->format, "jsonl") != 0) {
        fprintf(stderr, "aegis import: --format: expected jsonl or fvecs\n");
        return 2;
    }
    size_t batch_n = c->batch ? (size_t)c->batch : 256;
    if (batch_n > 10000) {
        fprintf(stderr, "aegis import: --batch: at most 10000\n");
        return 2;
    }
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "aegis import: cannot open %s: %s\n", file, strerror(errno));
        return 2;
    }
    progress_t p = {.tty = isatty(2) == 1, .t0 = now_s()};
    struct stat st;
    if (f != stdin && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
        p.total_bytes = (uint64_t)st.st_size;
    int rc = c->create ? create_collection(c, coll) : 0;
    char path[1024], name[700];
    snprintf(path, sizeof(path), "/collections/%s/points?wait=true", seg(coll, name, sizeof(name)));
    json_t *batch = json_array();
    uint64_t line = 0, first = 1;
    char *buf = NULL;
    size_t cap = 0;
    while (rc == 0 && batch) {
        json_t *point = NULL;
        if (fvecs) {
            int32_t dim;
            if (fread(&dim, 4, 1, f) != 1)
                break;
            line++;
            if (dim < 1 || dim > 65536) {
                fprintf(stderr, "aegis import: %s: vector %llu: bad dimension %d\n", file,
                        (unsigned long long)line, dim);
                rc = 2;
                break;
            }
            static float v[65536];
            if (fread(v, 4, (size_t)dim, f) != (size_t)dim) {
                fprintf(stderr, "aegis import: %s: vector %llu is cut short\n", file,
                        (unsigned long long)line);
                rc = 2;
                break;
            }
            p.bytes += 4 + 4 * (uint64_t)dim;
            json_t *vec = json_array();
            for (int32_t i = 0; i < dim; i++)
                json_array_append_new(vec, json_real(v[i]));
            point = json_pack("{s:I,s:o}", "id", (json_int_t)(c->start_id + (long long)line - 1),
                              "vector", vec);
        } else {
            ssize_t n = getline(&buf, &cap, f);
            if (n < 0)
                break;
            line++;
            p.bytes += (uint64_t)n;
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
            if (n == 0)
                continue;
            json_error_t err;
            point = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &err);
            if (!json_is_object(point)) {
                fprintf(stderr,
                        "aegis import: %s line %llu: expected a JSON object per line (%s)\n", file,
                        (unsigned long long)line, point ? "not an object" : err.text);
                json_decref(point);
                rc = 2;
                break;
            }
        }
        if (json_array_size(batch) == 0)
            first = line;
        json_array_append_new(batch, point);
        p.points++;
        if (json_array_size(batch) >= batch_n) {
            rc = flush_batch(c, path, batch, first);
            show_progress(&p, false);
        }
    }
    if (rc == 0)
        rc = flush_batch(c, path, batch, first);
    if (rc == 0)
        show_progress(&p, true);
    else if (p.tty)
        fputc('\n', stderr);
    json_decref(batch);
    free(buf);
    if (f != stdin)
        fclose(f);
    return rc;
}

/* ---- entry --------------------------------------------------------------------------------- */

bool ag_cli_handles(const char *cmd)
{
    return strcmp(cmd, "users") == 0 || strcmp(cmd, "roles") == 0 || strcmp(cmd, "keys") == 0 ||
           strcmp(cmd, "backup") == 0 || strcmp(cmd, "import") == 0;
}

/* ---- audit verify --cluster (docs/CLUSTER.md "Audit") ------------------------------------- */

/* One node's chain, checked by that node (GET /auth/audit/verify) and printed as one line. id is
 * the node id the cluster lists ("" outside cluster mode). Returns 0 ok, 1 failed/unreachable. */
static int audit_node(const cli_t *c, const char *id, const char *uri)
{
    cli_t one = *c;
    ag_diag_t diag = {{0}};
    printf("node %s (%s): ", id[0] ? id : "-", uri);
    fflush(stdout);
    if (ag_http_target_parse(uri, &one.target, &diag) != 0) {
        printf("FAILED: its address cannot be used: %s\n", diag.msg);
        return 1;
    }
    one.target.ca_file = c->target.ca_file;
    json_t *v = NULL;
    if (call(&one, "GET", "/auth/audit/verify", NULL, &v) != 0 || !json_is_object(v)) {
        printf("FAILED: no answer (above)\n");
        json_decref(v);
        return 1;
    }
    json_t *problem = json_object_get(v, "problem");
    const char *node = json_string_value(json_object_get(v, "node"));
    long long records = (long long)json_integer_value(json_object_get(v, "records"));
    int out = 0;
    if (!json_is_true(json_object_get(v, "ok"))) {
        printf("FAILED: %s line %lld: %s\n",
               json_string_value(json_object_get(problem, "file"))
                   ? json_string_value(json_object_get(problem, "file"))
                   : "?",
               (long long)json_integer_value(json_object_get(problem, "line")),
               json_string_value(json_object_get(problem, "why"))
                   ? json_string_value(json_object_get(problem, "why"))
                   : "?");
        out = 1;
    } else if (id[0] && records > 0 && (!node || strcmp(node, id) != 0)) {
        /* A node answering for a chain that is not its own (a copied directory, a wrong
         * cluster.node_id) would hide its real chain. */
        printf("FAILED: the chain's last record names node '%s', not '%s'\n", node ? node : "", id);
        out = 1;
    } else {
        printf("ok: records %lld..%lld (%lld records, %lld files)\n",
               (long long)json_integer_value(json_object_get(v, "first_seq")),
               (long long)json_integer_value(json_object_get(v, "last_seq")), records,
               (long long)json_integer_value(json_object_get(v, "files")));
        if (json_integer_value(json_object_get(v, "node_changes")) > 0)
            fprintf(stderr,
                    "aegis audit verify: warning: node %s's chain has records of more than "
                    "one node id\n",
                    id);
    }
    json_decref(v);
    return out;
}

int ag_cli_audit_cluster(int argc, char **argv, char **envp)
{
    static cli_t c; /* one per process */
    memset(&c, 0, sizeof(c));
    c.cmd = "audit";
    char *av[64];
    int ac = 0;
    av[ac++] = argv[0];
    av[ac++] = argv[1];
    for (int i = 3; i < argc && ac < 64; i++)
        if (strcmp(argv[i], "--cluster") != 0)
            av[ac++] = argv[i];
    int rc = parse(&c, ac, av, envp);
    if (rc == -1)
        return 0;
    if (rc)
        return rc;
    if (c.nargs) {
        fprintf(stderr, "aegis audit verify --cluster: unexpected argument '%.64s'\n", c.args[0]);
        return 2;
    }
    json_t *cl = NULL;
    if (call(&c, "GET", "/cluster", NULL, &cl) != 0)
        return 1;
    char self[300];
    snprintf(self, sizeof(self), "%s://%s:%u", c.target.tls ? "https" : "http", c.target.host,
             (unsigned)c.target.port);
    int worst = 0;
    size_t n = 0;
    const char *status = json_string_value(json_object_get(cl, "status"));
    if (!status || strcmp(status, "enabled") != 0) {
        /* Not a cluster: the one server's chain. */
        worst = audit_node(&c, "", self);
        n = 1;
    } else {
        const char *id;
        json_t *peer;
        json_object_foreach(json_object_get(cl, "peers"), id, peer)
        {
            const char *uri = json_string_value(json_object_get(peer, "uri"));
            if (audit_node(&c, id, uri ? uri : "") != 0)
                worst = 1;
            n++;
        }
        if (n == 0) {
            printf("FAILED: the cluster lists no nodes\n");
            worst = 1;
        }
    }
    json_decref(cl);
    printf("%s: %zu chain%s\n", worst ? "FAILED" : "ok", n, n == 1 ? "" : "s");
    return worst;
}

int ag_cli_main(int argc, char **argv, char **envp)
{
    static cli_t c; /* one per process */
    memset(&c, 0, sizeof(c));
    c.cmd = argv[1];
    int rc = parse(&c, argc, argv, envp);
    if (rc == -1)
        return 0; /* --help */
    if (rc)
        return rc;
    if (strcmp(c.cmd, "users") == 0)
        return users(&c);
    if (strcmp(c.cmd, "roles") == 0)
        return roles(&c);
    if (strcmp(c.cmd, "keys") == 0)
        return keys(&c);
    if (strcmp(c.cmd, "backup") == 0)
        return backup(&c);
    return import(&c);
}
