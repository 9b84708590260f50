#include "ag_json.h"

#include <math.h>

/* True when digits[0..n) (no sign) is an integer above INT64_MAX that still fits a u64. */
static bool beyond_i64(const char *d, size_t n)
{
    static const char i64max[] = "9223372036854775807";
    static const char u64max[] = "18446744073709551615";
    if (n < 19 || n > 20 || d[0] == '0')
        return false;
    if (n == 19)
        return memcmp(d, i64max, 19) > 0;
    return memcmp(d, u64max, 20) <= 0;
}

/*
 * jansson holds integers as int64, but Qdrant point ids are u64. Integers between 2^63 and
 * 2^64-1 are rewritten, before parsing, into marker strings (AG_U64_MARKER + digits) that
 * ag_id_parse understands and ag_json_render turns back into bare digits, so they round-trip
 * exactly. Returns a new buffer (caller frees) or NULL when nothing needed rewriting.
 */
static char *rewrite_big_ints(const char *buf, size_t len, size_t *out_len, size_t *n_rewritten)
{
    /* Fast path: no run of 19+ digits anywhere means nothing to rewrite. */
    size_t run = 0;
    bool candidate = false;
    for (size_t i = 0; i < len && !candidate; i++) {
        unsigned char ch = (unsigned char)buf[i];
        run = (ch >= '0' && ch <= '9') ? run + 1 : 0;
        candidate = run >= 19;
    }
    if (!candidate)
        return NULL;
    char *out = NULL;
    size_t o = 0, cap = 0, copied = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
            continue;
        }
        if (ch < '0' || ch > '9')
            continue;
        /* Start of a number token: the previous character must not be part of a number. */
        char prev = i > 0 ? buf[i - 1] : ' ';
        size_t j = i;
        while (j < len && buf[j] >= '0' && buf[j] <= '9')
            j++;
        bool starts = !(prev == '-' || prev == '.' || prev == 'e' || prev == 'E' || prev == '+');
        bool plain = j == len || (buf[j] != '.' && buf[j] != 'e' && buf[j] != 'E');
        if (starts && plain && beyond_i64(buf + i, j - i)) {
            size_t need = o + (i - copied) + (j - i) + sizeof(AG_U64_MARKER_JSON) + 8 + (len - j);
            if (need > cap) {
                cap = need * 2;
                char *g = realloc(out, cap);
                if (!g) {
                    free(out);
                    return NULL;
                }
                out = g;
            }
            memcpy(out + o, buf + copied, i - copied);
            o += i - copied;
            o += (size_t)snprintf(out + o, cap - o, "\"%s%.*s\"", AG_U64_MARKER_JSON, (int)(j - i),
                                  buf + i);
            copied = j;
            (*n_rewritten)++;
        }
        i = j - 1;
    }
    if (!out)
        return NULL;
    if (o + (len - copied) + 1 > cap) {
        char *g = realloc(out, o + (len - copied) + 1);
        if (!g) {
            free(out);
            return NULL;
        }
        out = g;
    }
    memcpy(out + o, buf + copied, len - copied);
    o += len - copied;
    out[o] = '\0';
    *out_len = o;
    return out;
}

char *ag_json_render(const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return NULL;
    static const char needle[] = "\"" AG_U64_MARKER_JSON;
    const size_t nl = sizeof(needle) - 1;
    if (!strstr(text, needle))
        return text;
    /* Drop the quotes and the marker around each big integer, in place (the text shrinks). Only
     * a whole string that is exactly the marker and the digits of a u64 above INT64_MAX is one
     * (docs/SECURITY.md "Big integers"): anything else is left as the string it is. */
    char *w = text, *r = text;
    size_t bs = 0; /* backslashes just before r in the dump: odd means r is escaped */
    while (*r) {
        /* A quote not escaped opens a string here: a closing one is never followed by '\\'. */
        if (bs % 2 == 0 && strncmp(r, needle, nl) == 0) {
            const char *d = r + nl;
            size_t n = strspn(d, "0123456789");
            if (d[n] == '"' && d[n + 1] != ':' && beyond_i64(d, n)) {
                memmove(w, d, n);
                w += n;
                r = (char *)d + n + 1;
                bs = 0;
                continue;
            }
        }
        bs = *r == '\\' ? bs + 1 : 0;
        *w++ = *r++;
    }
    *w = '\0';
    return text;
}

/* Counts the strings (values and object keys) in v that begin with the marker; stops early past
 * `limit`. *bad_path names the first one that no rewrite could have produced (a key, or a value
 * other than the marker and a big integer's digits), or stays empty. */
static size_t count_markers(const json_t *v, size_t limit, int depth, char *path, size_t cap,
                            char *bad_path, size_t bad_cap)
{
    static const size_t ml = sizeof(AG_U64_MARKER) - 1;
    size_t n = 0;
    size_t plen = strlen(path);
    if (depth > 4096)
        return n;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len >= ml && memcmp(s, AG_U64_MARKER, ml) == 0) {
            n++;
            size_t dn = strspn(s + ml, "0123456789");
            if ((ml + dn != len || !beyond_i64(s + ml, dn)) && !bad_path[0])
                snprintf(bad_path, bad_cap, "%s", plen ? path : "body");
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", k);
            if (strncmp(k, AG_U64_MARKER, ml) == 0) {
                n++;
                if (!bad_path[0])
                    snprintf(bad_path, bad_cap, "%s", path);
            }
            n += count_markers(x, limit, depth + 1, path, cap, bad_path, bad_cap);
            path[plen] = '\0';
            if (n > limit)
                break;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && n <= limit; i++) {
            snprintf(path + plen, cap - plen, "[%zu]", i);
            n +=
                count_markers(json_array_get(v, i), limit, depth + 1, path, cap, bad_path, bad_cap);
            path[plen] = '\0';
        }
    }
    return n;
}

int ag_json_parse_body(const char *buf, size_t len, bool want_object, json_t **out, ag_diag_t *diag)
{
    json_error_t err;
    *out = NULL;
    if (len == 0 || !buf)
        return ag_fail(diag, AG_EINVAL, "request body is empty, a JSON object is expected");
    size_t rlen = 0, n_big = 0;
    /* A client string can only hold U+0001 written as the escape \u0001 (the parser refuses raw
     * control characters), so without that text no string can imitate the marker. */
    bool may_forge = memmem(buf, len, "\\u0001", 6) != NULL;
    char *rewritten = rewrite_big_ints(buf, len, &rlen, &n_big);
    if (rewritten) {
        buf = rewritten;
        len = rlen;
    }
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    free(rewritten);
    if (!v)
        return ag_fail(diag, AG_EINVAL, "invalid JSON at line %d column %d: %s", err.line,
                       err.column, err.text);
    if (may_forge) {
        /* The marker is internal: a string of the body that begins with it would read as a big
         * integer (an id, a filter value) or corrupt a rendered response. Every marker in the
         * tree must be one the rewrite put there (docs/SECURITY.md "Big integers"). */
        char path[512] = "", bad[512] = "";
        if (count_markers(v, n_big, 0, path, sizeof(path), bad, sizeof(bad)) > n_big || bad[0]) {
            json_decref(v);
            return ag_fail(diag, AG_EINVAL,
                           "%s: a string may not begin with U+0001 followed by \"u64:\" (reserved "
                           "for integers above 2^63)",
                           bad[0] ? bad : "body");
        }
    }
    if (want_object && !json_is_object(v)) {
        json_decref(v);
        return ag_fail(diag, AG_EINVAL, "request body must be a JSON object");
    }
    *out = v;
    return 0;
}

/* ---- budget scan ------------------------------------------------------------------------- */

#define SCAN_DEPTH 64

typedef struct scan_frame {
    bool array;
    const char *key; /* the key this container sits under in an object (raw text), or NULL */
    size_t key_len;
    size_t count; /* array: elements started so far */
    size_t cap;
} scan_frame_t;

static bool key_is(const scan_frame_t *f, const char *name)
{
    return f->key && f->key_len == strlen(name) && memcmp(f->key, name, f->key_len) == 0;
}

/* "filter.must[0].match.any" from the open containers (at most 400 bytes). */
static void scan_path(const scan_frame_t *st, int depth, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < depth && o + 1 < cap; i++) {
        int w = 0;
        if (st[i].key)
            w = snprintf(out + o, cap - o, "%s%.*s", o ? "." : "", (int)AG_MIN(st[i].key_len, 64),
                         st[i].key);
        if (w > 0)
            o = AG_MIN(o + (size_t)w, cap - 1);
        if (st[i].array && i + 1 < depth && o + 1 < cap) {
            w = snprintf(out + o, cap - o, "[%zu]", st[i].count ? st[i].count - 1 : 0);
            if (w > 0)
                o = AG_MIN(o + (size_t)w, cap - 1);
        }
    }
    if (!out[0])
        snprintf(out, cap, "body");
}

/* The bytes that end a bare scalar in the scan below (NUL too, as strchr matched it). */
static inline bool ends_scalar(char c)
{
    switch (c) {
    case ',':
    case ']':
    case '}':
    case ' ':
    case '\t':
    case '\r':
    case '\n':
    case '\0':
        return true;
    default:
        return false;
    }
}

int ag_json_check_budget(const char *buf, size_t len, const ag_json_budget_t *b, ag_diag_t *diag)
{
    scan_frame_t st[SCAN_DEPTH];
    int depth = 0, hidden = 0; /* hidden: containers opened beyond SCAN_DEPTH */
    size_t values = 0;
    const char *key = NULL; /* last string seen in key position, pending its value */
    size_t key_len = 0;
    bool want_key = false;
    char path[400];
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ':')
            continue;
        if (ch == ',') {
            want_key = depth > 0 && !hidden && !st[depth - 1].array;
            continue;
        }
        if (ch == '}' || ch == ']') {
            if (hidden)
                hidden--;
            else if (depth > 0)
                depth--;
            want_key = false;
            continue;
        }
        if (ch == '"' && want_key) {
            size_t start = ++i;
            while (i < len && buf[i] != '"')
                i += buf[i] == '\\' ? 2 : 1;
            key = buf + start;
            key_len = AG_MIN(i, len) - start;
            want_key = false;
            continue;
        }
        /* A value starts here: count it, and count it in its array. */
        if (++values > b->max_values)
            return ag_fail(diag, AG_EINVAL,
                           "body: at most %zu JSON values in one request of this kind",
                           b->max_values);
        if (depth > 0 && !hidden && st[depth - 1].array) {
            scan_frame_t *f = &st[depth - 1];
            if (++f->count > f->cap) {
                scan_path(st, depth, path, sizeof(path));
                return ag_fail(diag, AG_EINVAL, "%s: at most %zu values%s", path, f->cap,
                               f->cap == b->max_array ? " in one array" : "");
            }
        }
        bool in_object = depth > 0 && !hidden && !st[depth - 1].array;
        if (ch == '{' || ch == '[') {
            if (hidden || depth == SCAN_DEPTH) {
                hidden++;
            } else {
                scan_frame_t *f = &st[depth];
                memset(f, 0, sizeof(*f));
                f->array = ch == '[';
                if (in_object) {
                    f->key = key;
                    f->key_len = key_len;
                }
                f->cap = b->max_array;
                if (f->array && depth > 0 && key_is(&st[depth - 1], "match") &&
                    (key_is(f, "any") || key_is(f, "except")))
                    f->cap = AG_MIN(f->cap, b->max_match_list);
                else if (f->array && key_is(f, "has_id"))
                    f->cap = AG_MIN(f->cap, b->max_id_list);
                depth++;
            }
            want_key = ch == '{';
            continue;
        }
        if (ch == '"') {
            while (++i < len && buf[i] != '"')
                if (buf[i] == '\\')
                    i++;
            continue;
        }
        /* number, true, false, null: skip to the next delimiter (a switch, not strchr per
         * byte: this loop reads every digit of a search body's vector) */
        while (i + 1 < len && !ends_scalar(buf[i + 1]))
            i++;
    }
    return 0;
}

int ag_json_only(const json_t *obj, const char *path, const char *const *allowed, ag_diag_t *diag)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok)
            return ag_fail(diag, AG_EINVAL, "%s%sunknown field '%.64s'", path ? path : "",
                           path && *path ? ": " : "", key);
    }
    return 0;
}

static const char *sep(const char *path)
{
    return path && *path ? "." : "";
}

int ag_json_get_bool(const json_t *obj, const char *key, const char *path, bool *out,
                     ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return ag_fail(diag, AG_EINVAL, "%s%s%s: expected a boolean", path ? path : "", sep(path),
                       key);
    *out = json_is_true(v);
    return 0;
}

int ag_json_get_uint(const json_t *obj, const char *key, const char *path, uint64_t max,
                     uint64_t *out, ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return ag_fail(diag, AG_EINVAL, "%s%s%s: expected an integer between 0 and %llu",
                       path ? path : "", sep(path), key, (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int ag_json_get_float(const json_t *obj, const char *key, const char *path, double *out,
                      ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return ag_fail(diag, AG_EINVAL, "%s%s%s: expected a number", path ? path : "", sep(path),
                       key);
    *out = json_number_value(v);
    return 0;
}

int ag_json_get_str(const json_t *obj, const char *key, const char *path, const char **out,
                    ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return ag_fail(diag, AG_EINVAL, "%s%s%s: expected a string", path ? path : "", sep(path),
                       key);
    *out = json_string_value(v);
    return 0;
}

int ag_json_get_obj(const json_t *obj, const char *key, const char *path, const json_t **out,
                    ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return ag_fail(diag, AG_EINVAL, "%s%s%s: expected an object", path ? path : "", sep(path),
                       key);
    *out = v;
    return 0;
}

int ag_json_floats(const json_t *arr, const char *path, float **out, uint32_t *n_out,
                   ag_diag_t *diag)
{
    *out = NULL;
    *n_out = 0;
    if (!json_is_array(arr))
        return ag_fail(diag, AG_EINVAL, "%s: expected an array of numbers", path);
    size_t n = json_array_size(arr);
    if (n == 0)
        return ag_fail(diag, AG_EINVAL,
                       "Validation error in JSON body: [%s: dense vector must not be empty]", path);
    if (n > AG_MAX_DIM)
        return ag_fail(diag, AG_EINVAL, "%s: vector has %zu numbers, the maximum is %d", path, n,
                       AG_MAX_DIM);
    float *f = malloc(n * sizeof(float));
    if (!f)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(arr, i);
        if (!json_is_number(x)) {
            free(f);
            return ag_fail(diag, AG_EINVAL, "%s[%zu]: expected a number", path, i);
        }
        double d = json_number_value(x);
        float v = (float)d;
        if (!isfinite(d) || !isfinite(v)) {
            free(f);
            return ag_fail(diag, AG_EINVAL, "%s[%zu]: value is not a finite float32", path, i);
        }
        f[i] = v;
    }
    *out = f;
    *n_out = (uint32_t)n;
    return 0;
}

static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

int ag_name_check(const char *name, size_t len, const char *what, ag_diag_t *diag)
{
    if (len == 0)
        return ag_fail(diag, AG_EINVAL, "%s name must not be empty", what);
    if (len > AG_MAX_NAME_LEN)
        return ag_fail(diag, AG_EINVAL, "%s name is longer than %d bytes", what, AG_MAX_NAME_LEN);
    if (strlen(name) != len)
        return ag_fail(diag, AG_EINVAL, "%s name must not contain NUL", what);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return ag_fail(diag, AG_EINVAL, "%s name must not contain control characters", what);
        if (c == '/' || c == '\\')
            return ag_fail(diag, AG_EINVAL, "%s name must not contain '/' or '\\'", what);
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ag_fail(diag, AG_EINVAL, "%s name must not be '.' or '..'", what);
    if (!utf8_valid((const unsigned char *)name, len))
        return ag_fail(diag, AG_EINVAL, "%s name is not valid UTF-8", what);
    return 0;
}

json_t *ag_json_f32(float f)
{
    if (!isfinite(f))
        return json_real((double)f);
    char buf[32];
    for (int prec = 6; prec < 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            return json_real(strtod(buf, NULL));
    }
    return json_real((double)f); /* 9 digits always round-trip: the exact value is as short */
}

char *ag_json_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}
