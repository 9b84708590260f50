#include "auth/ag_audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ag_log.h"
#include "auth/ag_glob.h"
#include "index/ag_filter.h"

#define HASH_HEX 64
#define HASH_SUFFIX_LEN (sizeof(",\"hash\":\"") - 1 + HASH_HEX + 2) /* ,"hash":"<64>"} */
#define MAX_LINE (64u << 10)
#define MAX_SECRETS 8
#define SYNC_INTERVAL_S 1.0
#define REDACTED "[redacted]"
#define HEAD_FILE "audit.head"
#define HEAD_LEN (3 + 20 + 1 + HASH_HEX + 1) /* "v1 <seq, 20 digits> <hash>\n" */

struct ag_audit {
    pthread_mutex_t mu;
    char dir[3800];
    char path[4096];
    int fd;
    int head_fd;   /* audit.head: seq and hash of the newest record (catches truncation) */
    uint64_t size; /* bytes in the active file */
    uint64_t max_bytes;
    uint64_t seq;            /* last record written */
    uint64_t file_first_seq; /* first record of the active file (0 = empty file) */
    char prev[HASH_HEX + 1]; /* SHA-256 of the last line */
    bool dirty;              /* written but not yet synced */
    double last_sync;
    char *secrets[MAX_SECRETS];
    size_t nsecrets;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sha256_hex(const void *data, size_t len, char out[HASH_HEX + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, HASH_HEX + 1, h, sizeof(h));
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return AG_EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

/* The head file holds the newest record's seq and line hash, overwritten in place on every
 * append, so removing records from the end of the log (which the chain alone cannot show) is
 * detected by ag_audit_verify and at the next start. */
static bool read_head(const char *dir, uint64_t *seq, char hash[HASH_HEX + 1])
{
    char p[4200], buf[HEAD_LEN + 1] = {0};
    snprintf(p, sizeof(p), "%s/%s", dir, HEAD_FILE);
    FILE *f = fopen(p, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, HEAD_LEN, f);
    fclose(f);
    unsigned long long s = 0;
    char h[HASH_HEX + 1] = {0};
    if (n != HEAD_LEN || sscanf(buf, "v1 %20llu %64s", &s, h) != 2 || strlen(h) != HASH_HEX)
        return false;
    *seq = s;
    memcpy(hash, h, HASH_HEX + 1);
    return true;
}

static void write_head(ag_audit_t *a)
{
    if (a->head_fd < 0)
        return;
    char buf[HEAD_LEN + 1];
    snprintf(buf, sizeof(buf), "v1 %020llu %s\n", (unsigned long long)a->seq, a->prev);
    if (pwrite(a->head_fd, buf, HEAD_LEN, 0) != (ssize_t)HEAD_LEN)
        ag_log(AG_LOG_ERROR, "audit log: cannot update %s", HEAD_FILE);
}

/* Reads a whole file (at most limit bytes from the start) into a new buffer. */
static int slurp_fd(int fd, uint64_t limit, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    char *buf = malloc((size_t)limit + 1);
    if (!buf)
        return AG_ENOMEM;
    size_t got = 0;
    while (got < limit) {
        ssize_t n = pread(fd, buf + got, (size_t)(limit - got), (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return AG_EIO;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int slurp(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AG_EIO;
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? slurp_fd(fd, (uint64_t)st.st_size, out, len) : AG_EIO;
    close(fd);
    return rc;
}

/* ---- redaction ----------------------------------------------------------------------------- */

static bool key_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '+' || c == '/' || c == '=';
}

static bool is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        unsigned char c = (unsigned char)s[i];
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

char *ag_audit_redact(const ag_audit_t *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    /* Pass 1: registered secrets become a marker byte run, so the shape rules below see them as
     * already handled. Work on a copy. */
    char *w = strdup(s);
    if (!w)
        return NULL;
    bool *hide = calloc(n + 1, sizeof(bool));
    if (!hide) {
        free(w);
        return NULL;
    }
    for (size_t k = 0; a && k < a->nsecrets; k++) {
        const char *sec = a->secrets[k];
        size_t sl = strlen(sec);
        for (const char *p = w; (p = strstr(p, sec)) != NULL; p += sl)
            for (size_t i = 0; i < sl; i++)
                hide[(size_t)(p - w) + i] = true;
    }
    /* Pass 2: credential shapes. */
    for (size_t i = 0; i < n;) {
        if (strncmp(w + i, "eyJ", 3) == 0) { /* a JWT: base64url segments joined by dots */
            size_t j = i;
            while (j < n && (key_char((unsigned char)w[j]) || w[j] == '.'))
                j++;
            if (j - i >= 10) {
                for (size_t x = i; x < j; x++)
                    hide[x] = true;
                i = j;
                continue;
            }
        }
        if (strncasecmp(w + i, "bearer ", 7) == 0) {
            size_t j = i + 7;
            while (j < n && w[j] != ' ' && w[j] != '"' && w[j] != '\'')
                j++;
            for (size_t x = i + 7; x < j; x++)
                hide[x] = true;
            i = j;
            continue;
        }
        if (key_char((unsigned char)w[i])) {
            size_t j = i;
            while (j < n && key_char((unsigned char)w[j]))
                j++;
            if (j - i >= 32 && !is_uuid(w + i, j - i))
                for (size_t x = i; x < j; x++)
                    hide[x] = true;
            i = j;
            continue;
        }
        i++;
    }
    /* Build the result: each hidden run becomes one marker. */
    size_t cap = n + 1, o = 0;
    for (size_t i = 0; i < n; i++)
        if (hide[i] && (i == 0 || !hide[i - 1]))
            cap += sizeof(REDACTED);
    char *out = malloc(cap);
    if (out) {
        for (size_t i = 0; i < n; i++) {
            if (!hide[i]) {
                out[o++] = w[i];
            } else if (i == 0 || !hide[i - 1]) {
                memcpy(out + o, REDACTED, sizeof(REDACTED) - 1);
                o += sizeof(REDACTED) - 1;
            }
        }
        out[o] = '\0';
    }
    sodium_memzero(w, n);
    free(w);
    free(hide);
    return out;
}

/* Sets key to the redacted copy of v (null when v is NULL). */
static int set_str(const ag_audit_t *a, json_t *obj, const char *key, const char *v, bool optional)
{
    if (!v) {
        if (optional)
            return 0;
        return json_object_set_new(obj, key, json_null()) ? AG_ENOMEM : 0;
    }
    char *r = ag_audit_redact(a, v);
    if (!r)
        return AG_ENOMEM;
    /* Invalid UTF-8 cannot go into JSON; keep the record, lose the text. */
    json_t *s = json_string(r);
    if (!s)
        s = json_string("(not UTF-8)");
    free(r);
    return json_object_set_new(obj, key, s) ? AG_ENOMEM : 0;
}

/* Redacts every string value of a flat resource object. */
static json_t *resource_copy(const ag_audit_t *a, const json_t *res)
{
    json_t *out = json_object();
    if (!out || !json_is_object(res))
        return out;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)res, k, v)
    {
        if (json_is_string(v))
            set_str(a, out, k, json_string_value(v), false);
        else if (json_is_integer(v) || json_is_boolean(v) || json_is_null(v))
            json_object_set(out, k, v);
    }
    return out;
}

/* A deep copy of a detail value with every string redacted (depth-capped; deeper parts are
 * dropped). NULL for anything that cannot be copied. */
static json_t *detail_copy(const ag_audit_t *a, const json_t *v, int depth)
{
    if (depth > 8)
        return json_string("(too deep)");
    if (json_is_string(v)) {
        char *r = ag_audit_redact(a, json_string_value(v));
        json_t *s = r ? json_string(r) : NULL;
        free(r);
        return s ? s : json_string("(not UTF-8)");
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            json_t *c = detail_copy(a, x, depth + 1);
            if (c && out)
                json_object_set_new(out, k, c);
            else
                json_decref(c);
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            json_t *c = detail_copy(a, x, depth + 1);
            if (c && out)
                json_array_append_new(out, c);
            else
                json_decref(c);
        }
        return out;
    }
    return json_deep_copy(v);
}

/* ---- open / close -------------------------------------------------------------------------- */

static int mkdir_0700(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return AG_EIO;
    return 0;
}

/* Reads seq from a line's text ("{\"seq\":N,..."). */
static bool line_seq(const char *line, size_t len, uint64_t *seq)
{
    static const char pre[] = "{\"seq\":";
    if (len < sizeof(pre) || memcmp(line, pre, sizeof(pre) - 1) != 0)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(line + sizeof(pre) - 1, &end, 10);
    if (errno || !end || *end != ',')
        return false;
    *seq = v;
    return true;
}

typedef struct rotated {
    char name[64];
} rotated_t;

static int cmp_rotated(const void *x, const void *y)
{
    return strcmp(((const rotated_t *)x)->name, ((const rotated_t *)y)->name);
}

static bool rotated_name(const char *n)
{
    size_t l = strlen(n);
    if (l != 6 + 20 + 4 || strncmp(n, "audit-", 6) != 0 || strcmp(n + l - 4, ".log") != 0)
        return false;
    for (size_t i = 6; i < 26; i++)
        if (n[i] < '0' || n[i] > '9')
            return false;
    return true;
}

/* Rotated files of dir, sorted oldest first. *out malloc'd (may be NULL when n is 0). */
static int list_rotated(const char *dir, rotated_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return AG_EIO;
    rotated_t *arr = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!rotated_name(e->d_name))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            rotated_t *g = realloc(arr, cap * sizeof(*g));
            if (!g) {
                rc = AG_ENOMEM;
                break;
            }
            arr = g;
        }
        memcpy(arr[cnt++].name, e->d_name, strlen(e->d_name) + 1); /* 30 bytes: checked */
    }
    closedir(d);
    if (rc) {
        free(arr);
        return rc;
    }
    if (cnt)
        qsort(arr, cnt, sizeof(*arr), cmp_rotated);
    *out = arr;
    *n = cnt;
    return 0;
}

/* Recovers seq/prev from the last complete line of buf; first_seq from its first line. */
static void recover_from(ag_audit_t *a, const char *buf, size_t len, bool active)
{
    if (len == 0)
        return;
    size_t end = len;
    if (buf[end - 1] == '\n')
        end--;
    size_t start = end;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    uint64_t seq;
    if (line_seq(buf + start, end - start, &seq)) {
        a->seq = seq;
        sha256_hex(buf + start, end - start, a->prev);
    }
    if (active && line_seq(buf, len, &seq))
        a->file_first_seq = seq;
}

int ag_audit_open(const char *dir, uint64_t max_bytes, ag_audit_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_audit_t *a = calloc(1, sizeof(*a));
    if (!a)
        return AG_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->fd = -1;
    a->head_fd = -1;
    a->max_bytes = max_bytes ? max_bytes : AG_AUDIT_DEFAULT_MAX_BYTES;
    memset(a->prev, '0', HASH_HEX);
    a->prev[HASH_HEX] = '\0';
    a->last_sync = mono();
    int rc = 0;
    if (strlen(dir) >= sizeof(a->dir)) {
        rc = ag_fail(diag, AG_ECONFIG, "audit log directory path is too long");
        goto fail;
    }
    snprintf(a->dir, sizeof(a->dir), "%s", dir);
    snprintf(a->path, sizeof(a->path), "%s/%s", dir, AG_AUDIT_FILE);
    if (mkdir_0700(dir) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot create the audit log directory '%s': %s", dir,
                     strerror(errno));
        goto fail;
    }
    chmod(dir, 0700);
    a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        rc = ag_fail(diag, AG_EIO, "cannot open the audit log '%s': %s", a->path, strerror(errno));
        goto fail;
    }
    fchmod(a->fd, 0600);
    /* The chain continues from the newest record: the active file's last line, or (right after
     * a rotation) the newest rotated file's. */
    rotated_t *rot = NULL;
    size_t nrot = 0;
    if (list_rotated(dir, &rot, &nrot) == 0 && nrot > 0) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, rot[nrot - 1].name);
        char *buf;
        size_t len;
        if (slurp(p, &buf, &len) == 0) {
            recover_from(a, buf, len, false);
            free(buf);
        }
    }
    free(rot);
    struct stat st;
    if (fstat(a->fd, &st) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot stat the audit log");
        goto fail;
    }
    char *buf = NULL;
    size_t len = 0;
    if (st.st_size > 0 && (rc = slurp_fd(a->fd, (uint64_t)st.st_size, &buf, &len)) != 0) {
        rc = ag_fail(diag, rc, "cannot read the audit log '%s'", a->path);
        goto fail;
    }
    if (len > 0 && buf[len - 1] != '\n') {
        /* A torn write from a crash: cut it off so the chain stays verifiable. */
        size_t keep = len;
        while (keep > 0 && buf[keep - 1] != '\n')
            keep--;
        ag_log(AG_LOG_WARN, "audit log: dropping a torn last record (%zu bytes)", len - keep);
        if (ftruncate(a->fd, (off_t)keep) != 0) {
            free(buf);
            rc = ag_fail(diag, AG_EIO, "cannot repair the audit log '%s'", a->path);
            goto fail;
        }
        len = keep;
    }
    recover_from(a, buf, len, true);
    free(buf);
    a->size = len;
    char hp[4200];
    snprintf(hp, sizeof(hp), "%s/%s", dir, HEAD_FILE);
    uint64_t head_seq = 0;
    char head_hash[HASH_HEX + 1];
    bool has_head = read_head(dir, &head_seq, head_hash);
    a->head_fd = open(hp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (a->head_fd < 0) {
        rc = ag_fail(diag, AG_EIO, "cannot open '%s': %s", hp, strerror(errno));
        goto fail;
    }
    /* Records missing from the end, or a rewritten last record, stay evident: the seq jumps
     * past what the head saw and a record says what happened (verify then names that line). */
    const char *problem = NULL;
    char why[200];
    if (has_head && head_seq > a->seq) {
        snprintf(why, sizeof(why),
                 "records %llu..%llu are missing from the end of the log (removed, or lost in a "
                 "crash before they were synced)",
                 (unsigned long long)a->seq + 1, (unsigned long long)head_seq);
        a->seq = head_seq;
        problem = why;
    } else if (has_head && head_seq == a->seq && a->seq > 0 && strcmp(head_hash, a->prev) != 0) {
        snprintf(why, sizeof(why), "record %llu differs from the one written (edited)",
                 (unsigned long long)a->seq);
        problem = why;
    }
    *out = a;
    if (problem) {
        ag_log(AG_LOG_ERROR, "audit log: %s", problem);
        ag_audit_record_t r = {.principal_kind = "server",
                               .action = "audit:recover",
                               .allowed = false,
                               .status = 0,
                               .reason = problem,
                               .sync = true};
        ag_audit_append(a, &r);
    }
    return 0;
fail:
    ag_audit_close(a);
    return rc;
}

void ag_audit_close(ag_audit_t *a)
{
    if (!a)
        return;
    if (a->fd >= 0) {
        if (a->dirty)
            fdatasync(a->fd);
        close(a->fd);
    }
    if (a->head_fd >= 0) {
        fdatasync(a->head_fd);
        close(a->head_fd);
    }
    for (size_t i = 0; i < a->nsecrets; i++) {
        sodium_memzero(a->secrets[i], strlen(a->secrets[i]));
        free(a->secrets[i]);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int ag_audit_add_secret(ag_audit_t *a, const char *secret)
{
    if (!a || !secret || strlen(secret) < 8)
        return 0;
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    if (a->nsecrets < MAX_SECRETS) {
        char *c = strdup(secret);
        if (c)
            a->secrets[a->nsecrets++] = c;
        else
            rc = AG_ENOMEM;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

uint64_t ag_audit_last_seq(ag_audit_t *a)
{
    pthread_mutex_lock(&a->mu);
    uint64_t s = a->seq;
    pthread_mutex_unlock(&a->mu);
    return s;
}

/* ---- append -------------------------------------------------------------------------------- */

static void format_time(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = (int)(ts.tv_nsec / 1000000L) % 1000; /* 0..999: three digits */
    snprintf(buf, len, "%.24s.%03dZ", base, ms);
}

/* Renders everything but seq/prev/hash (they are added under the lock). */
static json_t *record_body(const ag_audit_t *a, const ag_audit_record_t *r)
{
    json_t *o = json_object();
    json_t *p = json_object();
    if (!o || !p) {
        json_decref(o);
        json_decref(p);
        return NULL;
    }
    char t[40];
    format_time(t, sizeof(t));
    int rc = 0;
    rc |= json_object_set_new(o, "time", json_string(t));
    rc |= set_str(a, o, "request_id", r->request_id, false);
    rc |= set_str(a, p, "kind", r->principal_kind ? r->principal_kind : "none", false);
    rc |= set_str(a, p, "id", r->principal_id, false);
    rc |= set_str(a, p, "key_id", r->key_id, true);
    rc |= set_str(a, p, "sub", r->sub, true);
    rc |= json_object_set_new(o, "principal", p);
    rc |= set_str(a, o, "remote", r->remote, false);
    rc |= set_str(a, o, "method", r->method, false);
    rc |= set_str(a, o, "route", r->route, false);
    rc |= set_str(a, o, "action", r->action, false);
    rc |= json_object_set_new(o, "resource", resource_copy(a, r->resource));
    rc |= json_object_set_new(o, "decision", json_string(r->allowed ? "allow" : "deny"));
    rc |= json_object_set_new(o, "status", json_integer(r->status));
    rc |= set_str(a, o, "reason", r->reason, true);
    if (r->count)
        rc |= json_object_set_new(o, "count", json_integer((json_int_t)r->count));
    if (r->detail)
        rc |= json_object_set_new(o, "detail", detail_copy(a, r->detail, 0));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Moves audit.log aside and starts a new one (caller holds the mutex). */
static int rotate(ag_audit_t *a)
{
    char to[4200];
    snprintf(to, sizeof(to), "%s/audit-%020llu.log", a->dir,
             (unsigned long long)(a->file_first_seq ? a->file_first_seq : a->seq));
    if (fdatasync(a->fd) != 0)
        return AG_EIO;
    if (rename(a->path, to) != 0)
        return AG_EIO;
    close(a->fd);
    a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    fsync_dir(a->dir);
    if (a->fd < 0)
        return AG_EIO;
    a->size = 0;
    a->file_first_seq = 0;
    a->dirty = false;
    return 0;
}

int ag_audit_append(ag_audit_t *a, const ag_audit_record_t *r)
{
    if (!a || !r)
        return AG_EINVAL;
    json_t *body = record_body(a, r);
    if (!body)
        return AG_ENOMEM;
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    char *text = NULL, *line = NULL;
    json_t *o = json_object();
    if (!o) {
        rc = AG_ENOMEM;
        goto out;
    }
    /* Key order is fixed: seq first (ag_audit_verify and recovery read it from the line's
     * start), prev last before hash. */
    json_object_set_new(o, "seq", json_integer((json_int_t)a->seq + 1));
    json_object_update(o, body);
    json_object_set_new(o, "prev", json_string(a->prev));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (!text) {
        rc = AG_ENOMEM;
        goto out;
    }
    size_t tl = strlen(text);
    if (tl < 2 || tl + HASH_SUFFIX_LEN + 1 > MAX_LINE) {
        rc = AG_EINVAL;
        goto out;
    }
    char h[HASH_HEX + 1];
    sha256_hex(text, tl, h);
    size_t ll = tl - 1 + HASH_SUFFIX_LEN;
    line = malloc(ll + 2);
    if (!line) {
        rc = AG_ENOMEM;
        goto out;
    }
    memcpy(line, text, tl - 1);
    snprintf(line + tl - 1, ll + 2 - (tl - 1), ",\"hash\":\"%s\"}\n", h);
    if (a->fd < 0) {
        rc = AG_EIO;
        goto out;
    }
    if (a->size > 0 && a->size + ll + 1 > a->max_bytes && (rc = rotate(a)) != 0) {
        ag_log(AG_LOG_ERROR, "audit log: rotation failed: %s", strerror(errno));
        goto out;
    }
    off_t before = (off_t)a->size;
    if ((rc = write_all(a->fd, line, ll + 1)) != 0) {
        /* Never leave half a record: cut back to where this one started. */
        if (ftruncate(a->fd, before) != 0)
            ag_log(AG_LOG_ERROR, "audit log: cannot undo a partial write");
        ag_log(AG_LOG_ERROR, "audit log: write failed: %s", strerror(errno));
        goto out;
    }
    a->size += ll + 1;
    a->seq++;
    if (a->file_first_seq == 0)
        a->file_first_seq = a->seq;
    sha256_hex(line, ll, a->prev);
    write_head(a);
    a->dirty = true;
    double now = mono();
    if (r->sync || now - a->last_sync >= SYNC_INTERVAL_S) {
        /* Only the log: a head that lags after a crash is accepted (verify and open tolerate
         * head < log); syncing it too would double the cost of every change. */
        if (fdatasync(a->fd) != 0) {
            rc = AG_EIO;
            ag_log(AG_LOG_ERROR, "audit log: fdatasync failed: %s", strerror(errno));
        } else {
            a->dirty = false;
            a->last_sync = now;
        }
    }
out:
    pthread_mutex_unlock(&a->mu);
    free(text);
    free(line);
    json_decref(o);
    json_decref(body);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------------- */

typedef struct chain {
    bool started;
    uint64_t seq;
    char prev[HASH_HEX + 1]; /* SHA-256 of the last good line */
} chain_t;

static int bad(ag_audit_verify_t *res, const char *file, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(ag_audit_verify_t *res, const char *file, uint64_t line, const char *fmt, ...)
{
    snprintf(res->file, sizeof(res->file), "%s", file);
    res->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->why, sizeof(res->why), fmt, ap);
    va_end(ap);
    return AG_EINVAL;
}

/* Checks one line against itself and the chain. */
static int check_line(chain_t *ch, const char *s, size_t n, const char *file, uint64_t lineno,
                      ag_audit_verify_t *res)
{
    static const char suffix[] = ",\"hash\":\"";
    if (n < HASH_SUFFIX_LEN + 2 || s[n - 1] != '}' || s[n - 2] != '"' ||
        memcmp(s + n - HASH_SUFFIX_LEN, suffix, sizeof(suffix) - 1) != 0)
        return bad(res, file, lineno, "no hash at the end of the line (truncated or edited)");
    size_t body = n - HASH_SUFFIX_LEN;
    char *t = malloc(body + 2);
    if (!t)
        return bad(res, file, lineno, "out of memory");
    memcpy(t, s, body);
    t[body] = '}';
    t[body + 1] = '\0';
    char h[HASH_HEX + 1];
    sha256_hex(t, body + 1, h);
    int rc = 0;
    if (memcmp(h, s + n - HASH_HEX - 2, HASH_HEX) != 0) {
        rc = bad(res, file, lineno, "hash mismatch: the record was edited");
        goto out;
    }
    json_error_t err;
    json_t *o = json_loadb(t, body + 1, JSON_REJECT_DUPLICATES, &err);
    json_t *seq = json_object_get(o, "seq"), *prev = json_object_get(o, "prev");
    if (!o || !json_is_integer(seq) || json_integer_value(seq) <= 0 || !json_is_string(prev) ||
        json_string_length(prev) != HASH_HEX) {
        json_decref(o);
        rc = bad(res, file, lineno, "not a well-formed audit record");
        goto out;
    }
    uint64_t sq = (uint64_t)json_integer_value(seq);
    const char *pv = json_string_value(prev);
    static const char genesis[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    if (!ch->started) {
        if (sq == 1 && strcmp(pv, genesis) != 0)
            rc = bad(res, file, lineno, "record 1 does not start from the genesis hash");
        res->first_seq = sq;
    } else if (sq != ch->seq + 1) {
        rc = bad(res, file, lineno, "seq %llu follows seq %llu: %s", (unsigned long long)sq,
                 (unsigned long long)ch->seq,
                 sq > ch->seq + 1 ? "records are missing (deleted lines)"
                                  : "records are out of order or duplicated");
    } else if (strcmp(pv, ch->prev) != 0) {
        rc = bad(res, file, lineno,
                 "prev does not match the previous line: that line was changed or replaced");
    }
    json_decref(o);
    if (rc == 0) {
        ch->started = true;
        ch->seq = sq;
        sha256_hex(s, n, ch->prev);
        res->records++;
    }
out:
    free(t);
    return rc;
}

static int verify_file(chain_t *ch, const char *path, const char *shown, ag_audit_verify_t *res)
{
    char *buf;
    size_t len;
    if (slurp(path, &buf, &len) != 0) {
        bad(res, shown, 0, "cannot read the file");
        return AG_EIO;
    }
    int rc = 0;
    uint64_t lineno = 0;
    size_t i = 0;
    while (i < len && rc == 0) {
        const char *nl = memchr(buf + i, '\n', len - i);
        lineno++;
        if (!nl) {
            rc = bad(res, shown, lineno, "the last line is incomplete (no newline)");
            break;
        }
        rc = check_line(ch, buf + i, (size_t)(nl - (buf + i)), shown, lineno, res);
        i = (size_t)(nl - buf) + 1;
    }
    free(buf);
    return rc;
}

int ag_audit_verify(const char *path, ag_audit_verify_t *res)
{
    memset(res, 0, sizeof(*res));
    chain_t ch = {0};
    struct stat st;
    if (stat(path, &st) != 0) {
        bad(res, path, 0, "cannot open: %s", strerror(errno));
        return AG_EIO;
    }
    if (!S_ISDIR(st.st_mode))
        return verify_file(&ch, path, path, res);
    rotated_t *rot = NULL;
    size_t nrot = 0;
    if (list_rotated(path, &rot, &nrot) != 0) {
        bad(res, path, 0, "cannot list the directory");
        return AG_EIO;
    }
    int rc = 0;
    char p[4200];
    for (size_t i = 0; i < nrot && rc == 0; i++) {
        snprintf(p, sizeof(p), "%s/%s", path, rot[i].name);
        rc = verify_file(&ch, p, p, res);
    }
    free(rot);
    uint64_t lines = 0;
    if (rc == 0) {
        snprintf(p, sizeof(p), "%s/%s", path, AG_AUDIT_FILE);
        uint64_t before = res->records;
        if (access(p, F_OK) == 0 || nrot == 0)
            rc = verify_file(&ch, p, p, res);
        lines = res->records - before;
    }
    uint64_t head_seq;
    char head_hash[HASH_HEX + 1];
    if (rc == 0 && read_head(path, &head_seq, head_hash)) {
        if (head_seq > ch.seq)
            rc = bad(res, p, lines + 1,
                     "records %llu..%llu are missing from the end (the head recorded seq %llu)",
                     (unsigned long long)ch.seq + 1, (unsigned long long)head_seq,
                     (unsigned long long)head_seq);
        else if (head_seq == ch.seq && ch.seq > 0 && strcmp(head_hash, ch.prev) != 0)
            rc = bad(res, p, lines, "the last record is not the one written (the head differs)");
    }
    return rc;
}

/* ---- query --------------------------------------------------------------------------------- */

static bool matches(const ag_audit_query_t *q, const ag_glob_t *action, json_t *o)
{
    if (q->decision) {
        const char *d = json_string_value(json_object_get(o, "decision"));
        if (!d || strcmp(q->decision, d) != 0)
            return false;
    }
    if (action) {
        const char *act = json_string_value(json_object_get(o, "action"));
        if (!act || !ag_glob_match_str(action, act))
            return false;
    }
    if (q->principal) {
        json_t *p = json_object_get(o, "principal");
        const char *kind = json_string_value(json_object_get(p, "kind"));
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *sub = json_string_value(json_object_get(p, "sub"));
        char both[600];
        snprintf(both, sizeof(both), "%s:%s", kind ? kind : "", id ? id : "");
        if (!(id && strcmp(id, q->principal) == 0) && !(sub && strcmp(sub, q->principal) == 0) &&
            strcmp(both, q->principal) != 0 && !(kind && !id && strcmp(kind, q->principal) == 0))
            return false;
    }
    if (q->from_us || q->to_us) {
        const char *t = json_string_value(json_object_get(o, "time"));
        int64_t us;
        if (!t || ag_datetime_parse(t, strlen(t), &us) != 0)
            return false;
        if (q->from_us && us < q->from_us)
            return false;
        if (q->to_us && us > q->to_us)
            return false;
    }
    return true;
}

/* Scans buf's lines newest first, appending matches to arr until limit. */
static void scan(const ag_audit_query_t *q, const ag_glob_t *action, const char *buf, size_t len,
                 json_t *arr)
{
    size_t end = len;
    while (end > 0 && json_array_size(arr) < q->limit) {
        if (buf[end - 1] == '\n')
            end--;
        size_t start = end;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (end > start) {
            json_error_t err;
            json_t *o = json_loadb(buf + start, end - start, 0, &err);
            if (o && matches(q, action, o))
                json_array_append(arr, o);
            json_decref(o);
        }
        end = start;
    }
}

int ag_audit_query(ag_audit_t *a, const ag_audit_query_t *q, json_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_glob_t action = {0};
    bool has_action = q->action && *q->action;
    if (has_action && ag_glob_compile(q->action, strlen(q->action), &action) != 0)
        return ag_fail(diag, AG_EINVAL, "action: not a valid pattern");
    json_t *arr = json_array();
    if (!arr) {
        if (has_action)
            ag_glob_release(&action);
        return AG_ENOMEM;
    }
    /* Snapshot the active file's length under the lock: later appends are simply not seen. */
    pthread_mutex_lock(&a->mu);
    int fd = a->fd >= 0 ? dup(a->fd) : -1;
    uint64_t size = a->size;
    pthread_mutex_unlock(&a->mu);
    int rc = 0;
    if (fd >= 0) {
        char *buf;
        size_t len;
        rc = slurp_fd(fd, size, &buf, &len);
        close(fd);
        if (rc == 0) {
            scan(q, has_action ? &action : NULL, buf, len, arr);
            free(buf);
        }
    }
    rotated_t *rot = NULL;
    size_t nrot = 0;
    if (rc == 0 && json_array_size(arr) < q->limit && list_rotated(a->dir, &rot, &nrot) == 0) {
        for (size_t i = nrot; i-- > 0 && json_array_size(arr) < q->limit;) {
            char p[4200];
            snprintf(p, sizeof(p), "%s/%s", a->dir, rot[i].name);
            char *buf;
            size_t len;
            if (slurp(p, &buf, &len) == 0) {
                scan(q, has_action ? &action : NULL, buf, len, arr);
                free(buf);
            }
        }
    }
    free(rot);
    if (has_action)
        ag_glob_release(&action);
    if (rc) {
        json_decref(arr);
        return ag_fail(diag, rc, "cannot read the audit log");
    }
    *out = arr;
    return 0;
}
