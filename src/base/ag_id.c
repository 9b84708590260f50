#include "ag_id.h"

#include <errno.h>
#include <stdio.h>

void ag_id_to_key(const ag_point_id_t *id, uint8_t key[AG_ID_KEY_LEN])
{
    memset(key, 0, AG_ID_KEY_LEN);
    key[0] = id->kind;
    if (id->kind == AG_ID_NUM) {
        for (int i = 0; i < 8; i++)
            key[1 + i] = (uint8_t)(id->num >> (56 - 8 * i));
    } else {
        memcpy(key + 1, id->uuid, 16);
    }
}

int ag_id_from_key(const uint8_t *key, size_t len, ag_point_id_t *out)
{
    if (len != AG_ID_KEY_LEN || key[0] > AG_ID_UUID)
        return AG_EINVAL;
    memset(out, 0, sizeof(*out));
    out->kind = key[0];
    if (out->kind == AG_ID_NUM) {
        for (int i = 0; i < 8; i++)
            out->num = (out->num << 8) | key[1 + i];
    } else {
        memcpy(out->uuid, key + 1, 16);
    }
    return 0;
}

/* Accepts the hyphenated 8-4-4-4-12 form and the 32-hex-digit simple form. */
static int parse_uuid(const char *s, uint8_t out[16])
{
    size_t len = strlen(s);
    int n = 0;
    if (len == 36) {
        for (size_t i = 0; i < len; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (s[i] != '-')
                    return AG_EINVAL;
                continue;
            }
            if (ag_hex_digit(s[i]) < 0)
                return AG_EINVAL;
        }
    } else if (len == 32) {
        for (size_t i = 0; i < len; i++)
            if (ag_hex_digit(s[i]) < 0)
                return AG_EINVAL;
    } else {
        return AG_EINVAL;
    }
    for (size_t i = 0; i < len && n < 32; i++) {
        if (s[i] == '-')
            continue;
        int v = ag_hex_digit(s[i]);
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 ? 0 : AG_EINVAL;
}

int ag_id_parse(const json_t *v, ag_point_id_t *out, const char *path, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0)
            return ag_fail(diag, AG_EINVAL, "%s: point id must be an unsigned integer or a UUID",
                           path);
        out->kind = AG_ID_NUM;
        out->num = (uint64_t)n;
        return 0;
    }
    if (json_is_string(v) && strncmp(json_string_value(v), "\x01u64:", 5) == 0) {
        /* An integer above INT64_MAX, carried as a marker string by the JSON parser. */
        const char *d = json_string_value(v) + 5;
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(d, &end, 10);
        if (errno || !end || *end || *d < '0' || *d > '9')
            return ag_fail(diag, AG_EINVAL, "%s: point id is out of range", path);
        out->kind = AG_ID_NUM;
        out->num = (uint64_t)n;
        return 0;
    }
    if (json_is_string(v)) {
        if (parse_uuid(json_string_value(v), out->uuid) != 0)
            return ag_fail(diag, AG_EINVAL,
                           "%s: point id must be an unsigned integer or a UUID string", path);
        out->kind = AG_ID_UUID;
        return 0;
    }
    return ag_fail(diag, AG_EINVAL, "%s: point id must be an unsigned integer or a UUID string",
                   path);
}

int ag_id_parse_str(const char *s, ag_point_id_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(s);
    if (len > 0 && len <= 20 && strspn(s, "0123456789") == len) {
        errno = 0;
        char *end = NULL;
        unsigned long long n = strtoull(s, &end, 10);
        if (errno == 0 && end && *end == '\0') {
            out->kind = AG_ID_NUM;
            out->num = (uint64_t)n;
            return 0;
        }
    } else if (parse_uuid(s, out->uuid) == 0) {
        out->kind = AG_ID_UUID;
        return 0;
    }
    return ag_fail(diag, AG_EINVAL, "id: point id must be an unsigned integer or a UUID");
}

void ag_id_format(const ag_point_id_t *id, char *buf, size_t len)
{
    if (id->kind == AG_ID_NUM) {
        snprintf(buf, len, "%llu", (unsigned long long)id->num);
        return;
    }
    const uint8_t *u = id->uuid;
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

json_t *ag_id_to_json(const ag_point_id_t *id)
{
    if (id->kind == AG_ID_NUM && id->num > (uint64_t)INT64_MAX) {
        char buf[32];
        snprintf(buf, sizeof(buf), "\x01u64:%llu", (unsigned long long)id->num);
        return json_string(buf);
    }
    if (id->kind == AG_ID_NUM)
        return json_integer((json_int_t)id->num);
    char buf[40];
    ag_id_format(id, buf, sizeof(buf));
    return json_string(buf);
}

bool ag_id_equal(const ag_point_id_t *a, const ag_point_id_t *b)
{
    if (a->kind != b->kind)
        return false;
    return a->kind == AG_ID_NUM ? a->num == b->num : memcmp(a->uuid, b->uuid, 16) == 0;
}

int ag_id_cmp(const ag_point_id_t *a, const ag_point_id_t *b)
{
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->kind == AG_ID_NUM)
        return a->num < b->num ? -1 : (a->num > b->num ? 1 : 0);
    return memcmp(a->uuid, b->uuid, 16);
}

uint64_t ag_id_hash(const ag_point_id_t *id)
{
    uint64_t h = 1469598103934665603ULL ^ id->kind;
    if (id->kind == AG_ID_NUM) {
        h ^= id->num;
        h *= 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        return h;
    }
    for (int i = 0; i < 16; i++) {
        h ^= id->uuid[i];
        h *= 1099511628211ULL;
    }
    return h;
}
