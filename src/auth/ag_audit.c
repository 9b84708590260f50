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

#include "ag_file.h"
#include "ag_glob.h"
#include "ag_grow.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "index/ag_filter.h"

#define HASH_HEX 64
#define HASH_SUFFIX_LEN (sizeof(",\"hash\":\"") - 1 + HASH_HEX + 2) /* ,"hash":"<64>"} */
#define MAX_LINE (64u << 10)
#define MAX_SECRETS 8
#define SYNC_INTERVAL_S 1.0
#define REDACTED "[redacted]"
#define HEAD_FILE AG_AUDIT_HEAD_FILE
#define HEAD1_LEN (3 + 20 + 1 + HASH_HEX + 1)     /* "v1 <seq, 20 digits> <hash>\n" */
#define HEAD2_BODY (3 + 20 + 1 + HASH_HEX)        /* "v2 <seq, 20 digits> <hash>" */
#define HEAD2_LEN (HEAD2_BODY + 1 + HASH_HEX + 1) /* ... " <hmac of the body>\n" */
#define RECORD_VERSION 2
#define KEY_HEX (2 * (size_t)AG_AUDIT_KEY_BYTES) /* the key file: this many hex characters */

static const char genesis[] = "0000000000000000000000000000000000000000000000000000000000000000";

struct ag_audit {
    pthread_mutex_t mu;
    char dir[3800];
    char path[4096];
    int fd;
    int head_fd;   /* audit.head: seq and hash of the newest record (catches truncation) */
    uint64_t size; /* bytes in the active file */
    uint64_t max_bytes;
    uint64_t max_files;      /* rotated files kept (0 = all) */
    uint64_t seq;            /* last record written */
    uint64_t file_first_seq; /* first record of the active file (0 = empty file) */
    char prev[HASH_HEX + 1]; /* what the next record's prev must be */
    bool dirty;              /* written but not yet synced */
    bool retiring;           /* writing retention records: no rotation inside a rotation */
    double last_sync;
    unsigned char key[AG_AUDIT_KEY_BYTES];
    char node[80]; /* cluster mode: the node id every record carries ("" = none) */
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

static void hmac_hex(const unsigned char key[AG_AUDIT_KEY_BYTES], const void *data, size_t len,
                     char out[HASH_HEX + 1])
{
    unsigned char h[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(h, data, len, key);
    sodium_bin2hex(out, HASH_HEX + 1, h, sizeof(h));
}

/* Constant time: a MAC comparison must not tell how many leading characters were right. */
static bool hex_equal(const char *a, const char *b)
{
    return sodium_memcmp(a, b, HASH_HEX) == 0;
}

/* ---- the key ------------------------------------------------------------------------------- */

static int parse_key(const char *text, size_t n, unsigned char key[AG_AUDIT_KEY_BYTES])
{
    if (n == KEY_HEX + 1 && text[n - 1] == '\n')
        n--;
    if (n != KEY_HEX)
        return AG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return AG_EINVAL;
    }
    size_t got = 0;
    if (sodium_hex2bin(key, AG_AUDIT_KEY_BYTES, text, n, NULL, &got, NULL) != 0 ||
        got != AG_AUDIT_KEY_BYTES)
        return AG_EINVAL;
    return 0;
}

/* Writes a new random key to path without ever exposing a partial file there. */
static int create_key(const char *path, ag_diag_t *diag)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
    unsigned char raw[AG_AUDIT_KEY_BYTES];
    char hex[KEY_HEX + 2];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    hex[KEY_HEX] = '\n';
    unlink(tmp); /* a leftover of a crashed start */
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = ag_fail(diag, AG_EIO, "cannot create the audit key '%s': %s", tmp, strerror(errno));
        goto out;
    }
    if (ag_write_all(fd, hex, KEY_HEX + 1) != 0 || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        rc = ag_fail(diag, AG_EIO, "cannot write the audit key '%s'", tmp);
        goto out;
    }
    close(fd);
    /* link, not rename: a key that another process put there first is never replaced. */
    if (link(tmp, path) != 0 && errno != EEXIST)
        rc = ag_fail(diag, AG_EIO, "cannot create the audit key '%s': %s", path, strerror(errno));
    unlink(tmp);
    (void)ag_fsync_dir_of(path);
out:
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

int ag_audit_key_load(const char *path, bool create, unsigned char key[AG_AUDIT_KEY_BYTES],
                      ag_diag_t *diag)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        int rc = create_key(path, diag);
        if (rc)
            return rc;
        ag_log(AG_LOG_INFO,
               "audit log: created a new audit key in %s (keep it; without it the "
               "log cannot be verified)",
               path);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        if (errno == ENOENT)
            return ag_fail(diag, AG_ENOTFOUND, "audit key '%s' does not exist", path);
        return ag_fail(diag, AG_EIO, "cannot open the audit key '%s': %s", path, strerror(errno));
    }
    struct stat st;
    char text[KEY_HEX + 8];
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ag_fail(diag, AG_EINVAL, "audit key '%s' is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = ag_fail(diag, AG_EINVAL,
                     "audit key '%s' is accessible to group or others (mode %o; "
                     "chmod 600 it)",
                     path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    ssize_t n = read(fd, text, sizeof(text));
    if (n < 0 || parse_key(text, (size_t)n, key) != 0)
        rc = ag_fail(diag, AG_EINVAL, "audit key '%s' is not 64 hex characters", path);
out:
    sodium_memzero(text, sizeof(text));
    close(fd);
    return rc;
}

/* ---- the head ------------------------------------------------------------------------------ */

typedef struct head {
    int version;             /* 0 = no readable head; 1 = old unkeyed; 2 = keyed */
    bool authentic;          /* v2: the HMAC checks out under the key */
    uint64_t seq;            /* newest record */
    char hash[HASH_HEX + 1]; /* what the record after it would carry as prev */
} head_t;

/* Reads dir/audit.head. Returns false when it does not exist; a file that exists but is not a
 * head gives version 0. key may be NULL (then a v2 head is never authentic). */
static bool read_head(const char *dir, const unsigned char *key, head_t *h)
{
    memset(h, 0, sizeof(*h));
    char p[4200], buf[HEAD2_LEN + 2] = {0};
    snprintf(p, sizeof(p), "%s/%s", dir, HEAD_FILE);
    FILE *f = fopen(p, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    unsigned long long s = 0;
    char hash[HASH_HEX + 1] = {0}, mac[HASH_HEX + 1] = {0};
    if (n == HEAD1_LEN && sscanf(buf, "v1 %20llu %64s", &s, hash) == 2 &&
        strlen(hash) == HASH_HEX && buf[HEAD1_LEN - 1] == '\n') {
        h->version = 1;
    } else if (n == HEAD2_LEN && sscanf(buf, "v2 %20llu %64s %64s", &s, hash, mac) == 3 &&
               strlen(hash) == HASH_HEX && strlen(mac) == HASH_HEX && buf[HEAD2_LEN - 1] == '\n') {
        h->version = 2;
        if (key) {
            char want[HASH_HEX + 1];
            hmac_hex(key, buf, HEAD2_BODY, want);
            h->authentic = hex_equal(want, mac);
        }
    } else {
        return true;
    }
    h->seq = s;
    memcpy(h->hash, hash, HASH_HEX + 1);
    return true;
}

/* Rewrites the head in place (fixed length, one pwrite) for the current seq and prev. */
static void write_head(ag_audit_t *a)
{
    if (a->head_fd < 0)
        return;
    char buf[HEAD2_LEN + 1];
    snprintf(buf, sizeof(buf), "v2 %020llu %s ", (unsigned long long)a->seq, a->prev);
    hmac_hex(a->key, buf, HEAD2_BODY, buf + HEAD2_BODY + 1);
    buf[HEAD2_LEN - 1] = '\n';
    if (pwrite(a->head_fd, buf, HEAD2_LEN, 0) != (ssize_t)HEAD2_LEN)
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
        if (AG_GROW(arr, cap, cnt + 1, 16, SIZE_MAX / sizeof(*arr)) != 0) {
            rc = AG_ENOMEM;
            break;
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

/* ---- reading records ----------------------------------------------------------------------- */

typedef struct line_info {
    uint64_t seq;
    int version;                  /* 1 = plain SHA-256, 2 = HMAC under the key */
    char prev[HASH_HEX + 1];      /* the prev field */
    char next_prev[HASH_HEX + 1]; /* what the following record's prev must be */
    bool hash_ok;                 /* the hash field checks out (v2: only when a key was given) */
    json_t *obj;                  /* the record without its hash; owned by the caller */
} line_info_t;

/* Parses one line (s, n: without its newline) and checks its hash when it can (v2 needs key,
 * which may be NULL). Returns NULL with li->obj set (caller decrefs), or why the line is not a
 * record (li->obj NULL). */
static const char *parse_line(const char *s, size_t n, const unsigned char *key, line_info_t *li)
{
    static const char suffix[] = ",\"hash\":\"";
    memset(li, 0, sizeof(*li));
    if (n < HASH_SUFFIX_LEN + 2 || n > MAX_LINE || s[n - 1] != '}' || s[n - 2] != '"' ||
        memcmp(s + n - HASH_SUFFIX_LEN, suffix, sizeof(suffix) - 1) != 0)
        return "no hash at the end of the line (truncated or edited)";
    size_t body = n - HASH_SUFFIX_LEN;
    char *t = malloc(body + 2);
    if (!t)
        return "out of memory";
    memcpy(t, s, body);
    t[body] = '}';
    t[body + 1] = '\0';
    const char *why = NULL;
    json_error_t err;
    json_t *o = json_loadb(t, body + 1, JSON_REJECT_DUPLICATES, &err);
    json_t *seq = json_object_get(o, "seq"), *prev = json_object_get(o, "prev");
    json_t *ver = json_object_get(o, "v");
    if (!o || !json_is_integer(seq) || json_integer_value(seq) <= 0 || !json_is_string(prev) ||
        json_string_length(prev) != HASH_HEX) {
        why = "not a well-formed audit record";
        goto out;
    }
    if (ver && !(json_is_integer(ver) && json_integer_value(ver) == RECORD_VERSION)) {
        why = "unknown record format version";
        goto out;
    }
    li->seq = (uint64_t)json_integer_value(seq);
    li->version = ver ? RECORD_VERSION : 1;
    memcpy(li->prev, json_string_value(prev), HASH_HEX + 1);
    const char *written = s + n - HASH_HEX - 2;
    char want[HASH_HEX + 1];
    if (li->version == 1) {
        sha256_hex(t, body + 1, want);
        li->hash_ok = hex_equal(want, written);
        sha256_hex(s, n, li->next_prev);
    } else {
        if (key) {
            hmac_hex(key, t, body + 1, want);
            li->hash_ok = hex_equal(want, written);
        }
        memcpy(li->next_prev, written, HASH_HEX);
        li->next_prev[HASH_HEX] = '\0';
    }
    li->obj = o;
    o = NULL;
out:
    json_decref(o);
    free(t);
    return why;
}

/* The last complete line of buf (len bytes, ending in a newline or not). False when empty. */
static bool last_line(const char *buf, size_t len, const char **s, size_t *n)
{
    size_t end = len;
    if (end > 0 && buf[end - 1] == '\n')
        end--;
    if (end == 0)
        return false;
    size_t start = end;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    *s = buf + start;
    *n = end - start;
    return true;
}

/* Seq and prev of the first record of the file at path. */
static int first_record(const char *path, const unsigned char *key, uint64_t *seq,
                        char prev[HASH_HEX + 1])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AG_EIO;
    char *buf;
    size_t len;
    int rc = slurp_fd(fd, MAX_LINE + 1, &buf, &len);
    close(fd);
    if (rc)
        return rc;
    const char *nl = memchr(buf, '\n', len);
    line_info_t li;
    if (!nl || parse_line(buf, (size_t)(nl - buf), key, &li) != NULL) {
        free(buf);
        return AG_EINVAL;
    }
    *seq = li.seq;
    memcpy(prev, li.prev, HASH_HEX + 1);
    json_decref(li.obj);
    free(buf);
    return 0;
}

/* ---- open / close -------------------------------------------------------------------------- */

/* Takes seq and the next prev from the newest record (the last line of buf, from file shown).
 * Fails closed: a newest record that is not a record, or a keyed one that does not verify under
 * the key, stops the server rather than continuing a chain nobody could verify. *v1 is set when
 * that record is unkeyed. */
static int recover_from(ag_audit_t *a, const char *buf, size_t len, const char *shown, bool *v1,
                        ag_diag_t *diag)
{
    const char *s;
    size_t n;
    if (!last_line(buf, len, &s, &n))
        return 0;
    line_info_t li;
    const char *why = parse_line(s, n, a->key, &li);
    if (why)
        return ag_fail(diag, AG_ECONFIG,
                       "audit log: the newest record in '%s' is damaged (%s); run aegis audit "
                       "verify",
                       shown, why);
    json_decref(li.obj);
    if (!li.hash_ok)
        return ag_fail(diag, AG_ECONFIG,
                       "audit log: the newest record (seq %llu in '%s') does not verify under the "
                       "audit key: the wrong key file, or an edited record; run aegis audit verify",
                       (unsigned long long)li.seq, shown);
    a->seq = li.seq;
    memcpy(a->prev, li.next_prev, HASH_HEX + 1);
    *v1 = li.version == 1;
    return 0;
}

static int write_locked(ag_audit_t *a, json_t *body, bool sync);
static json_t *record_body(const ag_audit_t *a, const ag_audit_record_t *r);

int ag_audit_open(const ag_audit_config_t *cfg, ag_audit_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->key)
        return ag_fail(diag, AG_EINVAL, "audit log: a directory and a key are required");
    const char *dir = cfg->dir;
    ag_audit_t *a = calloc(1, sizeof(*a));
    if (!a)
        return AG_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->fd = -1;
    a->head_fd = -1;
    a->max_bytes = cfg->max_bytes ? cfg->max_bytes : AG_AUDIT_DEFAULT_MAX_BYTES;
    a->max_files = cfg->max_files;
    memcpy(a->key, cfg->key, AG_AUDIT_KEY_BYTES);
    if (cfg->node_id)
        snprintf(a->node, sizeof(a->node), "%s", cfg->node_id);
    memcpy(a->prev, genesis, HASH_HEX + 1);
    a->last_sync = mono();
    int rc = 0;
    char *buf = NULL;
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
    bool v1 = false;
    rotated_t *rot = NULL;
    size_t nrot = 0;
    if (list_rotated(dir, &rot, &nrot) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot list the audit log directory '%s'", dir);
    } else if (nrot > 0) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, rot[nrot - 1].name);
        size_t len;
        if (slurp(p, &buf, &len) == 0) {
            rc = recover_from(a, buf, len, p, &v1, diag);
            free(buf);
            buf = NULL;
        } else {
            /* Never restart the chain at seq 1 beside files it cannot read. */
            rc = ag_fail(diag, AG_EIO, "cannot read the audit log '%s'", p);
        }
    }
    free(rot);
    if (rc)
        goto fail;
    struct stat st;
    if (fstat(a->fd, &st) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot stat the audit log");
        goto fail;
    }
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
            rc = ag_fail(diag, AG_EIO, "cannot repair the audit log '%s'", a->path);
            goto fail;
        }
        len = keep;
    }
    if ((rc = recover_from(a, buf, len, a->path, &v1, diag)) != 0)
        goto fail;
    uint64_t first;
    if (len > 0 && line_seq(buf, len, &first))
        a->file_first_seq = first;
    free(buf);
    buf = NULL;
    a->size = len;

    char hp[4200];
    snprintf(hp, sizeof(hp), "%s/%s", dir, HEAD_FILE);
    head_t h;
    bool has_head = read_head(dir, a->key, &h);
    a->head_fd = open(hp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (a->head_fd < 0) {
        rc = ag_fail(diag, AG_EIO, "cannot open '%s': %s", hp, strerror(errno));
        goto fail;
    }
    fchmod(a->head_fd, 0600);
    /* Damage stays evident: records missing from the end make the seq jump past what the head
     * saw, and a record says what happened (verify then names that line). */
    const char *problem = NULL;
    char why[240];
    if (!has_head && a->seq > 0) {
        snprintf(why, sizeof(why),
                 "%s was missing (removed?): records cut from the end before this start cannot "
                 "be ruled out",
                 HEAD_FILE);
        problem = why;
    } else if (has_head && h.version == 0) {
        snprintf(why, sizeof(why), "%s was not a valid head", HEAD_FILE);
        problem = why;
    } else if (has_head && h.version == 2 && !h.authentic) {
        snprintf(why, sizeof(why),
                 "%s did not verify under the audit key (forged, or written under another key)",
                 HEAD_FILE);
        problem = why;
    } else if (has_head && h.seq > a->seq) {
        snprintf(why, sizeof(why),
                 "records %llu..%llu are missing from the end of the log (removed, or lost in a "
                 "crash before they were synced)",
                 (unsigned long long)a->seq + 1, (unsigned long long)h.seq);
        a->seq = h.seq;
        problem = why;
    } else if (has_head && h.seq == a->seq && a->seq > 0 && strcmp(h.hash, a->prev) != 0) {
        snprintf(why, sizeof(why), "record %llu differs from the one written (edited)",
                 (unsigned long long)a->seq);
        problem = why;
    } else if (has_head && h.seq < a->seq) {
        /* Usually a crash between syncing the log and the head; an older head put back looks
         * the same, so it is recorded rather than silently rewritten. */
        snprintf(why, sizeof(why),
                 "%s was behind the log (seq %llu < %llu): a crash before it was synced, or an "
                 "older head put back",
                 HEAD_FILE, (unsigned long long)h.seq, (unsigned long long)a->seq);
        problem = why;
    }
    /* From here the head is keyed and current, even before the first append. */
    write_head(a);
    if (ftruncate(a->head_fd, HEAD2_LEN) != 0 || fdatasync(a->head_fd) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot write '%s': %s", hp, strerror(errno));
        goto fail;
    }
    *out = a;
    if (problem || v1) {
        char up[200];
        if (problem) {
            ag_log(AG_LOG_ERROR, "audit log: %s", problem);
        } else {
            snprintf(up, sizeof(up),
                     "records up to seq %llu are unkeyed (v1); from here every record is an "
                     "HMAC-SHA256 under the audit key",
                     (unsigned long long)a->seq);
            ag_log(AG_LOG_INFO, "audit log: %s", up);
        }
        ag_audit_record_t r = {.principal_kind = "server",
                               .action = problem ? "audit:recover" : "audit:upgrade",
                               .allowed = !problem,
                               .status = 0,
                               .reason = problem ? problem : up,
                               .sync = true};
        ag_audit_append(a, &r);
    }
    return 0;
fail:
    free(buf);
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
    sodium_memzero(a->key, sizeof(a->key));
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

/* Renders everything but seq/v/prev/hash (they are added under the lock). */
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
    if (a->node[0])
        rc |= json_object_set_new(o, "node", json_string(a->node));
    rc |= set_str(a, o, "request_id", r->request_id, false);
    rc |= set_str(a, p, "kind", r->principal_kind ? r->principal_kind : "none", false);
    rc |= set_str(a, p, "id", r->principal_id, false);
    rc |= set_str(a, p, "key_id", r->key_id, true);
    rc |= set_str(a, p, "sub", r->sub, true);
    rc |= json_object_set_new(o, "principal", p);
    rc |= set_str(a, o, "remote", r->remote, false);
    if (r->via_node) {
        json_t *via = json_object();
        rc |= via ? 0 : -1;
        rc |= set_str(a, via, "node", r->via_node, false);
        rc |= set_str(a, via, "remote", r->via_addr, true);
        rc |= json_object_set_new(o, "via", via);
    }
    rc |= set_str(a, o, "method", r->method, false);
    rc |= set_str(a, o, "route", r->route, false);
    rc |= set_str(a, o, "action", r->action, false);
    rc |= json_object_set_new(o, "resource", resource_copy(a, r->resource));
    rc |= json_object_set_new(o, "decision", json_string(r->allowed ? "allow" : "deny"));
    rc |= json_object_set_new(o, "status", json_integer(r->status));
    if (r->count)
        rc |= json_object_set_new(o, "count",
                                  json_integer((json_int_t)AG_MIN(r->count, (uint64_t)INT64_MAX)));
    rc |= set_str(a, o, "reason", r->reason, true);
    if (r->detail)
        rc |= json_object_set_new(o, "detail", detail_copy(a, r->detail, 0));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The next record's line for body: seq, v, body, prev, then its HMAC. *out is a new buffer of
 * *len bytes plus a newline (caller frees); hash receives the HMAC in hex. */
static int build_line(ag_audit_t *a, const json_t *body, char **out, size_t *len,
                      char hash[HASH_HEX + 1])
{
    *out = NULL;
    json_t *o = json_object();
    if (!o)
        return AG_ENOMEM;
    int rc = 0;
    char *text = NULL;
    /* Key order is fixed: seq first (recovery reads it from the line's start), prev last
     * before hash. */
    if (json_object_set_new(o, "seq", json_integer((json_int_t)a->seq + 1)) ||
        json_object_set_new(o, "v", json_integer(RECORD_VERSION)) ||
        json_object_update(o, (json_t *)body) ||
        json_object_set_new(o, "prev", json_string(a->prev))) {
        rc = AG_ENOMEM;
        goto out;
    }
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
    hmac_hex(a->key, text, tl, hash);
    size_t ll = tl - 1 + HASH_SUFFIX_LEN;
    char *line = malloc(ll + 2);
    if (!line) {
        rc = AG_ENOMEM;
        goto out;
    }
    memcpy(line, text, tl - 1);
    snprintf(line + tl - 1, ll + 2 - (tl - 1), ",\"hash\":\"%s\"}\n", hash);
    *out = line;
    *len = ll;
out:
    free(text);
    json_decref(o);
    return rc;
}

static void apply_retention(ag_audit_t *a);

/* Moves audit.log aside, starts a new one and applies retention (caller holds the mutex). */
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
    (void)ag_fsync_dir(a->dir);
    if (a->fd < 0)
        return AG_EIO;
    a->size = 0;
    a->file_first_seq = 0;
    a->dirty = false;
    if (a->max_files > 0)
        apply_retention(a);
    return 0;
}

/* Removes rotated file `gone` after a synced retention record vouching for the start it leaves:
 * the first record of `next` (the file after it, or audit.log). Caller holds the mutex. */
static int retire_file(ag_audit_t *a, const char *gone, const char *next)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", a->dir, next);
    uint64_t first = 0;
    char first_prev[HASH_HEX + 1];
    if (first_record(p, a->key, &first, first_prev) != 0) {
        ag_log(AG_LOG_ERROR,
               "audit log: retention: cannot read the first record of %s; keeping "
               "%s",
               next, gone);
        return AG_EIO;
    }
    char reason[200];
    snprintf(reason, sizeof(reason),
             "retention (storage.audit_max_files %llu): removed %s, records %.20s..%llu",
             (unsigned long long)a->max_files, gone, gone + 6 /* "audit-" */,
             (unsigned long long)first - 1);
    ag_audit_record_t r = {.principal_kind = "server",
                           .action = "audit:retention",
                           .allowed = true,
                           .reason = reason,
                           .sync = true};
    json_t *body = record_body(a, &r);
    json_t *ret = json_pack("{s:I,s:s}", "first_seq", (json_int_t)first, "first_prev", first_prev);
    int rc = body && ret && json_object_set_new(body, "retention", ret) == 0 ? 0 : AG_ENOMEM;
    if (rc == 0)
        rc = write_locked(a, body, true);
    else if (!body)
        json_decref(ret);
    json_decref(body);
    if (rc) {
        ag_log(AG_LOG_ERROR,
               "audit log: retention: cannot write the retention record; keeping "
               "%s",
               gone);
        return rc;
    }
    snprintf(p, sizeof(p), "%s/%s", a->dir, gone);
    if (unlink(p) != 0) {
        ag_log(AG_LOG_ERROR, "audit log: retention: cannot remove %s: %s", gone, strerror(errno));
        return AG_EIO;
    }
    (void)ag_fsync_dir(a->dir);
    return 0;
}

/* Removes the oldest rotated files beyond max_files (caller holds the mutex, active file just
 * started), oldest first, one retention record per file written and synced before that file
 * goes. A crash at any point leaves a chain whose start some retention record vouches for (or
 * one file too many). Failures are logged and the remaining files kept. */
static void apply_retention(ag_audit_t *a)
{
    rotated_t *rot = NULL;
    size_t nrot = 0;
    if (list_rotated(a->dir, &rot, &nrot) == 0 && nrot > a->max_files) {
        size_t drop = nrot - (size_t)a->max_files;
        a->retiring = true; /* the records may take the new file a little past max_bytes */
        for (size_t i = 0; i < drop; i++)
            if (retire_file(a, rot[i].name, rot[i + 1].name) != 0)
                break;
        a->retiring = false;
    }
    free(rot);
}

/* Appends one record made of body (caller holds the mutex). */
static int write_locked(ag_audit_t *a, json_t *body, bool sync)
{
    char *line = NULL, h[HASH_HEX + 1];
    size_t ll = 0;
    int rc = build_line(a, body, &line, &ll, h);
    if (rc)
        return rc;
    if (a->fd < 0) {
        rc = AG_EIO;
        goto out;
    }
    if (a->size > 0 && a->size + ll + 1 > a->max_bytes && !a->retiring) {
        if ((rc = rotate(a)) != 0) {
            ag_log(AG_LOG_ERROR, "audit log: rotation failed: %s", strerror(errno));
            goto out;
        }
        /* Retention may have written a record: seq and prev moved on. */
        free(line);
        line = NULL;
        if ((rc = build_line(a, body, &line, &ll, h)) != 0)
            goto out;
    }
    off_t before = (off_t)a->size;
    if ((rc = ag_write_all(a->fd, line, ll + 1)) != 0) {
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
    memcpy(a->prev, h, HASH_HEX + 1);
    write_head(a);
    a->dirty = true;
    double now = mono();
    if (sync || now - a->last_sync >= SYNC_INTERVAL_S) {
        /* The log first, then the head: after a crash between the two the head lags, which the
         * next start repairs; it never names a record the log does not have. */
        if (fdatasync(a->fd) != 0 || (a->head_fd >= 0 && fdatasync(a->head_fd) != 0)) {
            rc = AG_EIO;
            ag_log(AG_LOG_ERROR, "audit log: fdatasync failed: %s", strerror(errno));
        } else {
            a->dirty = false;
            a->last_sync = now;
        }
    }
out:
    free(line);
    return rc;
}

int ag_audit_append(ag_audit_t *a, const ag_audit_record_t *r)
{
    if (!a || !r)
        return AG_EINVAL;
    json_t *body = record_body(a, r);
    if (!body)
        return AG_ENOMEM;
    pthread_mutex_lock(&a->mu);
    int rc = write_locked(a, body, r->sync);
    pthread_mutex_unlock(&a->mu);
    json_decref(body);
    ag_metrics_add(rc ? AG_M_AUDIT_FAILURES : AG_M_AUDIT_RECORDS, 1);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------------- */

typedef struct chain {
    const unsigned char *key; /* NULL: keyed records cannot be checked */
    bool started;
    bool keyed_seen;
    bool pending; /* starts past seq 1 and no retention record vouched for it yet */
    uint64_t seq;
    char prev[HASH_HEX + 1]; /* what the next record's prev must be */
    uint64_t start_seq;
    char start_prev[HASH_HEX + 1];
    char start_file[512];
    char last_file[512]; /* file of the last good record */
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

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A keyed retention record that names exactly the chain's start settles it. */
static void note_record(chain_t *ch, const line_info_t *li, ag_audit_verify_t *res)
{
    const char *node = json_string_value(json_object_get(li->obj, "node"));
    if (!node)
        node = "";
    if (res->records > 1 && strcmp(node, res->node) != 0)
        res->node_changes++;
    snprintf(res->node, sizeof(res->node), "%s", node);
    const char *action = json_string_value(json_object_get(li->obj, "action"));
    if (!action)
        return;
    if (strcmp(action, "audit:recover") == 0 && res->recovers++ == 0)
        res->first_recover = li->seq;
    if (li->version != RECORD_VERSION || !ch->pending || strcmp(action, "audit:retention") != 0)
        return;
    json_t *ret = json_object_get(li->obj, "retention");
    json_t *fs = json_object_get(ret, "first_seq"), *fp = json_object_get(ret, "first_prev");
    if (json_is_integer(fs) && json_integer_value(fs) > 0 &&
        (uint64_t)json_integer_value(fs) == ch->start_seq && json_is_string(fp) &&
        json_string_length(fp) == HASH_HEX && hex_equal(json_string_value(fp), ch->start_prev)) {
        ch->pending = false;
        res->vouched_by = li->seq;
    }
}

/* Checks one line against itself and the chain. */
static int check_line(chain_t *ch, const char *s, size_t n, const char *file, uint64_t lineno,
                      ag_audit_verify_t *res)
{
    line_info_t li;
    const char *why = parse_line(s, n, ch->key, &li);
    if (why)
        return bad(res, file, lineno, "%s", why);
    int rc = 0;
    bool new_file = strcmp(ch->last_file, file) != 0;
    if (li.version == RECORD_VERSION && !ch->key) {
        rc = bad(res, file, lineno,
                 "a keyed (v2) record and no key to check it (give --key-file, or keep audit.key "
                 "in the storage directory)");
    } else if (!li.hash_ok) {
        rc = bad(res, file, lineno,
                 li.version == 1 ? "hash mismatch: the record was edited"
                                 : "hash mismatch: the record was edited, or not written under "
                                   "this key");
    } else if (li.version == 1 && ch->keyed_seen) {
        rc = bad(res, file, lineno,
                 "an unkeyed (v1) record after keyed ones: the log was rewritten");
    } else if (!ch->started) {
        if (li.seq == 1 && strcmp(li.prev, genesis) != 0) {
            rc = bad(res, file, lineno, "record 1 does not start from the genesis hash");
        } else if (li.seq > 1) {
            ch->pending = true;
            ch->start_seq = li.seq;
            memcpy(ch->start_prev, li.prev, HASH_HEX + 1);
            snprintf(ch->start_file, sizeof(ch->start_file), "%s", file);
        } else {
            snprintf(ch->start_file, sizeof(ch->start_file), "%s", file);
        }
        res->first_seq = li.seq;
    } else if (li.seq != ch->seq + 1) {
        if (li.seq > ch->seq + 1 && new_file)
            rc = bad(res, file, lineno,
                     "seq %llu follows seq %llu at the end of %s: records %llu..%llu are missing "
                     "(a rotated file was removed?)",
                     (unsigned long long)li.seq, (unsigned long long)ch->seq,
                     base_name(ch->last_file), (unsigned long long)ch->seq + 1,
                     (unsigned long long)li.seq - 1);
        else
            rc = bad(res, file, lineno, "seq %llu follows seq %llu: %s", (unsigned long long)li.seq,
                     (unsigned long long)ch->seq,
                     li.seq > ch->seq + 1 ? "records are missing (deleted lines)"
                                          : "records are out of order or duplicated");
    } else if (!hex_equal(li.prev, ch->prev)) {
        rc = bad(res, file, lineno,
                 new_file ? "prev does not match the last record of the previous file: a file "
                            "was replaced"
                          : "prev does not match the previous line: that line was changed or "
                            "replaced");
    }
    if (rc == 0) {
        ch->started = true;
        ch->seq = li.seq;
        memcpy(ch->prev, li.next_prev, HASH_HEX + 1);
        if (li.version == RECORD_VERSION)
            ch->keyed_seen = true;
        else
            res->unkeyed++;
        snprintf(ch->last_file, sizeof(ch->last_file), "%s", file);
        res->records++;
        res->last_seq = li.seq;
        note_record(ch, &li, res);
    }
    json_decref(li.obj);
    return rc;
}

/* Checks every line of one file; *first receives the seq of its first record (0 = empty). */
static int verify_file(chain_t *ch, const char *path, ag_audit_verify_t *res, uint64_t *first)
{
    *first = 0;
    char *buf;
    size_t len;
    if (slurp(path, &buf, &len) != 0) {
        bad(res, path, 0, "cannot read the file");
        return AG_EIO;
    }
    res->files++;
    int rc = 0;
    uint64_t lineno = 0, before = res->records;
    size_t i = 0;
    while (i < len && rc == 0) {
        const char *nl = memchr(buf + i, '\n', len - i);
        lineno++;
        if (!nl) {
            rc = bad(res, path, lineno, "the last line is incomplete (no newline)");
            break;
        }
        rc = check_line(ch, buf + i, (size_t)(nl - (buf + i)), path, lineno, res);
        if (rc == 0 && res->records == before + 1)
            *first = ch->seq;
        i = (size_t)(nl - buf) + 1;
    }
    free(buf);
    return rc;
}

/* What only the whole chain shows: where it starts, and that a key found keyed records. */
static int finish_chain(const chain_t *ch, ag_audit_verify_t *res)
{
    if (ch->pending)
        return bad(res, ch->start_file, 1,
                   "the chain starts at seq %llu, not 1, and no keyed retention record vouches "
                   "for that start: earlier records were removed",
                   (unsigned long long)ch->start_seq);
    if (ch->key && res->records > 0 && !ch->keyed_seen)
        return bad(res, ch->start_file, 1,
                   "every record is unkeyed (v1) although a key was given: a keyed server would "
                   "have written keyed records, so the log was rewritten without the key");
    return 0;
}

/* The head must be there, be authentic and name the last record. */
static int check_head(const char *dir, const chain_t *ch, const char *logpath, uint64_t log_lines,
                      ag_audit_verify_t *res)
{
    char hp[4200];
    snprintf(hp, sizeof(hp), "%s/%s", dir, HEAD_FILE);
    head_t h;
    if (!read_head(dir, ch->key, &h))
        return bad(res, hp, 0,
                   "%s is missing: it names the newest record, and without it records cut from "
                   "the end go unnoticed",
                   HEAD_FILE);
    if (h.version == 0)
        return bad(res, hp, 0, "not a valid head");
    if (h.version == 2 && !ch->key)
        return bad(res, hp, 0, "a keyed (v2) head and no key to check it");
    if (h.version == 2 && !h.authentic)
        return bad(res, hp, 0,
                   "the head does not verify under the key: forged, or written under "
                   "another key");
    if (h.version == 1 && ch->keyed_seen)
        return bad(res, hp, 0, "an unkeyed (v1) head beside keyed records: the head was replaced");
    if (h.seq > ch->seq)
        return bad(res, logpath, log_lines + 1,
                   "records %llu..%llu are missing from the end (%s names seq %llu)",
                   (unsigned long long)ch->seq + 1, (unsigned long long)h.seq, HEAD_FILE,
                   (unsigned long long)h.seq);
    if (h.seq < ch->seq)
        return bad(res, hp, 0,
                   "the head names seq %llu but the log goes on to seq %llu: an older head was "
                   "put back, or a crash came before the head was synced (a restart rewrites it)",
                   (unsigned long long)h.seq, (unsigned long long)ch->seq);
    if (ch->seq > 0 && !hex_equal(h.hash, ch->prev))
        return bad(res, logpath, log_lines,
                   "the last record is not the one written (%s names another)", HEAD_FILE);
    return 0;
}

int ag_audit_verify(const char *path, const unsigned char *key, ag_audit_verify_t *res)
{
    memset(res, 0, sizeof(*res));
    chain_t ch = {.key = key};
    uint64_t first;
    struct stat st;
    if (stat(path, &st) != 0) {
        bad(res, path, 0, "cannot open: %s", strerror(errno));
        return AG_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        int rc = verify_file(&ch, path, res, &first);
        return rc ? rc : finish_chain(&ch, res);
    }
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
        if ((rc = verify_file(&ch, p, res, &first)) != 0)
            break;
        unsigned long long named = strtoull(rot[i].name + 6, NULL, 10);
        if (first == 0)
            rc = bad(res, p, 0, "a rotated file with no records");
        else if (first != named)
            rc = bad(res, p, 1, "the file is named for seq %llu but starts at seq %llu", named,
                     (unsigned long long)first);
    }
    free(rot);
    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s/%s", path, AG_AUDIT_FILE);
    if (access(p, F_OK) != 0)
        return bad(res, p, 0, "%s is missing", AG_AUDIT_FILE);
    uint64_t before = res->records;
    if ((rc = verify_file(&ch, p, res, &first)) != 0)
        return rc;
    if ((rc = finish_chain(&ch, res)) != 0)
        return rc;
    return check_head(path, &ch, p, res->records - before, res);
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

int ag_audit_check(ag_audit_t *a, ag_audit_verify_t *res)
{
    pthread_mutex_lock(&a->mu);
    int rc = ag_audit_verify(a->dir, a->key, res);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* ---- copying (full snapshots; docs/SECURITY.md "Snapshots") -------------------------------- */

/* Copies fd[0, len) to dest (created 0600, fsynced). Closes fd. */
static int copy_prefix(int fd, uint64_t len, const char *dest)
{
    int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc = out < 0 ? AG_EIO : 0;
    char buf[65536];
    uint64_t off = 0;
    while (rc == 0 && off < len) {
        size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0 || write(out, buf, (size_t)n) != n)
            rc = AG_EIO;
        off += n > 0 ? (uint64_t)n : 0;
    }
    if (rc == 0 && fsync(out) != 0)
        rc = AG_EIO;
    if (out >= 0)
        close(out);
    close(fd);
    return rc;
}

int ag_audit_copy(ag_audit_t *a, const char *dest_dir, ag_diag_t *diag)
{
    rotated_t *rot = NULL;
    size_t nrot = 0;
    char path[4200], head[HEAD2_LEN + 1];
    pthread_mutex_lock(&a->mu);
    /* Under the lock: what was written is synced, every file opened (retention may remove a
     * rotated one afterwards; the descriptor keeps it) and the active file's length and the
     * head taken together, so the copy ends exactly at the record the head names. */
    if (a->dirty && fdatasync(a->fd) == 0)
        a->dirty = false;
    int rc = list_rotated(a->dir, &rot, &nrot);
    int *fds = rc == 0 ? calloc(nrot + 1, sizeof(*fds)) : NULL;
    uint64_t *lens = rc == 0 ? calloc(nrot + 1, sizeof(*lens)) : NULL;
    if (rc == 0 && (!fds || !lens))
        rc = AG_ENOMEM;
    for (size_t i = 0; rc == 0 && i <= nrot; i++) {
        struct stat st;
        if (i < nrot)
            snprintf(path, sizeof(path), "%.3800s/%s", a->dir, rot[i].name);
        else
            snprintf(path, sizeof(path), "%s", a->path);
        fds[i] = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fds[i] < 0 || fstat(fds[i], &st) != 0) {
            rc = AG_EIO;
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = -1;
            for (size_t j = 0; j < i; j++)
                close(fds[j]);
            break;
        }
        lens[i] = i < nrot ? (uint64_t)st.st_size : a->size;
    }
    if (rc == 0) {
        snprintf(head, sizeof(head), "v2 %020llu %s ", (unsigned long long)a->seq, a->prev);
        hmac_hex(a->key, head, HEAD2_BODY, head + HEAD2_BODY + 1);
        head[HEAD2_LEN - 1] = '\n';
    }
    pthread_mutex_unlock(&a->mu);
    for (size_t i = 0; rc == 0 && i <= nrot; i++) {
        if (i < nrot)
            snprintf(path, sizeof(path), "%.4000s/%s", dest_dir, rot[i].name);
        else
            snprintf(path, sizeof(path), "%.4000s/%s", dest_dir, AG_AUDIT_FILE);
        rc = copy_prefix(fds[i], lens[i], path);
        fds[i] = -1;
        if (rc)
            for (size_t j = i + 1; j <= nrot; j++)
                close(fds[j]);
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%.4000s/%s", dest_dir, HEAD_FILE);
        rc = ag_file_replace(path, head, HEAD2_LEN, 0600) == 0 ? 0 : AG_EIO;
    }
    free(fds);
    free(lens);
    free(rot);
    return rc ? ag_fail(diag, rc, "cannot copy the audit log") : 0;
}
