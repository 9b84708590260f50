#include "ag_jwt.h"

#include <sodium.h>
#include <stdio.h>

#include "index/ag_filter.h"

#define MAC_LEN crypto_auth_hmacsha256_BYTES
#define MAX_ACCESS_ENTRIES 256
#define MAX_TOKEN_ROLES 64
#define MAX_VALUE_MATCHES 64

/* --- base64url ------------------------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int ag_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    size_t rem = len % 4;
    if (rem == 1)
        return AG_EINVAL;
    size_t need = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > cap)
        return AG_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        size_t k = AG_MIN((size_t)4, len - i);
        uint32_t acc = 0;
        for (size_t j = 0; j < k; j++) {
            int v = b64_value((unsigned char)in[i + j]);
            if (v < 0)
                return AG_EINVAL;
            acc |= (uint32_t)v << (18 - 6 * j);
        }
        /* A short final group must leave its unused low bits zero (canonical encoding). */
        if ((k == 2 && (acc & 0xFFFF)) || (k == 3 && (acc & 0xFF)))
            return AG_EINVAL;
        out[o++] = (uint8_t)(acc >> 16);
        if (k > 2)
            out[o++] = (uint8_t)(acc >> 8);
        if (k > 3)
            out[o++] = (uint8_t)acc;
    }
    *out_len = o;
    return 0;
}

size_t ag_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void ag_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t k = AG_MIN((size_t)3, n - i);
        uint32_t acc = (uint32_t)in[i] << 16;
        if (k > 1)
            acc |= (uint32_t)in[i + 1] << 8;
        if (k > 2)
            acc |= in[i + 2];
        for (size_t j = 0; j < k + 1; j++)
            out[o++] = b64_alphabet[(acc >> (18 - 6 * j)) & 63];
    }
    out[o] = '\0';
}

/* --- verification ------------------------------------------------------------------------- */

static void hmac_sha256(const char *key, const char *msg, size_t len, uint8_t mac[MAC_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

/* Decodes one segment and parses it as a JSON object (duplicate keys rejected, no NUL in
 * strings, no trailing bytes). Returns a new reference or NULL. */
static json_t *segment_json(const char *seg, size_t len, int *err)
{
    *err = AG_EUNAUTH;
    uint8_t *buf = malloc(len / 4 * 3 + 3);
    if (!buf) {
        *err = AG_ENOMEM;
        return NULL;
    }
    size_t n;
    json_t *v = NULL;
    if (ag_b64url_decode(seg, len, buf, len / 4 * 3 + 3, &n) == 0 && n > 0) {
        json_error_t jerr;
        v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
        if (v && !json_is_object(v)) {
            json_decref(v);
            v = NULL;
        }
    }
    free(buf);
    return v;
}

static int check_header(const json_t *h, ag_diag_t *diag)
{
    json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: only alg HS256 is accepted");
    json_t *typ = json_object_get(h, "typ");
    if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0 ||
                json_string_length(typ) != 3))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: typ must be JWT");
    if (json_object_get(h, "crit"))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: crit header is not supported");
    return 0;
}

/* a + b, saturating at INT64_MAX (b >= 0). */
static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int time_claim(const json_t *claims, const char *name, bool *present, int64_t *out,
                      ag_diag_t *diag)
{
    json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: claim %s must be an integer", name);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int check_times(const json_t *claims, int64_t now, int64_t leeway, ag_diag_t *diag)
{
    bool has;
    int64_t t = 0;
    int rc;
    if ((rc = time_claim(claims, "exp", &has, &t, diag)) < 0)
        return rc;
    if (has && now >= add_sat(t, leeway))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: expired");
    if ((rc = time_claim(claims, "nbf", &has, &t, diag)) < 0)
        return rc;
    if (has && add_sat(now, leeway) < t)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: not valid yet (nbf)");
    if ((rc = time_claim(claims, "iat", &has, &t, diag)) < 0)
        return rc;
    if (has && add_sat(now, leeway) < t)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: issued in the future (iat)");
    return 0;
}

/* Memory: on success *claims is a new reference owned by the caller. */
int ag_jwt_verify(const char *token, size_t len, const char *const *secrets, size_t n_secrets,
                  int64_t now, int64_t leeway, json_t **claims, ag_diag_t *diag)
{
    *claims = NULL;
    if (!token || len == 0)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: empty");
    if (len > AG_JWT_MAX_LEN)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: longer than %d bytes", AG_JWT_MAX_LEN);
    if (leeway < 0 || leeway > AG_JWT_MAX_LEEWAY)
        leeway = 0;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: expected three segments");
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen == 0)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: empty segment");

    uint8_t sig[MAC_LEN + 3];
    size_t sig_len;
    if (ag_b64url_decode(d2 + 1, slen, sig, sizeof(sig), &sig_len) < 0 || sig_len != MAC_LEN)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: malformed signature");

    int err;
    json_t *header = segment_json(token, hlen, &err);
    if (!header)
        return err == AG_ENOMEM ? err
                                : ag_fail(diag, AG_EUNAUTH, "invalid token: malformed header");
    int rc = check_header(header, diag);
    json_decref(header);
    if (rc < 0)
        return rc;

    /* Every secret is tried, so timing does not tell which one (if any) matched. */
    bool ok = false;
    for (size_t i = 0; i < n_secrets; i++) {
        if (!secrets[i] || strlen(secrets[i]) < AG_JWT_MIN_SECRET)
            continue;
        uint8_t mac[MAC_LEN];
        hmac_sha256(secrets[i], token, (size_t)(d2 - token), mac);
        ok |= sodium_memcmp(mac, sig, MAC_LEN) == 0;
        sodium_memzero(mac, sizeof(mac));
    }
    if (!ok)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: bad signature");

    json_t *payload = segment_json(d1 + 1, plen, &err);
    if (!payload)
        return err == AG_ENOMEM ? err
                                : ag_fail(diag, AG_EUNAUTH, "invalid token: malformed payload");
    if ((rc = check_times(payload, now, leeway, diag)) < 0) {
        json_decref(payload);
        return rc;
    }
    *claims = payload;
    return 0;
}

/* --- claims → principal ------------------------------------------------------------------- */

bool ag_role_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > AG_ROLE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '@' || c == '-'))
            return false;
    }
    return true;
}

static int bad_claim(ag_diag_t *diag, const char *what)
{
    return ag_fail(diag, AG_EUNAUTH, "invalid token: %s", what);
}

/* Adds a permission on one collection (exact name) to p. */
static int grant(ag_principal_t *p, unsigned verbs, int res, const char *collection,
                 const json_t *filter)
{
    ag_perm_t perm;
    ag_perm_init(&perm, verbs, res);
    int rc = collection ? ag_perm_set_scope(&perm, AG_PSCOPE_COLLECTION, collection, true) : 0;
    if (rc < 0) {
        ag_perm_release(&perm);
        return rc;
    }
    perm.filter = json_incref((json_t *)filter);
    return ag_principal_add_perm(p, &perm);
}

static int grant_global(ag_principal_t *p, const char *level, ag_diag_t *diag)
{
    static const int data_plane[] = {AG_RES_COLLECTIONS, AG_RES_DATA,    AG_RES_TENANTS,
                                     AG_RES_SNAPSHOTS,   AG_RES_CLUSTER, AG_RES_NODES};
    if (strcmp(level, "r") == 0)
        return ag_principal_add_perms(p, ag_role_viewer());
    if (strcmp(level, "m") != 0)
        return bad_claim(diag, "access must be \"r\", \"m\" or a list");
    for (size_t i = 0; i < AG_ARRAY_LEN(data_plane); i++) {
        int rc = grant(p, AG_VERB_MANAGE, data_plane[i], NULL, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* {"must":[{"key":k,"match":{"value":v}}, …]} from a payload claim; each pair is checked with
 * the filter engine's own exact-match builder. Returns a new reference or NULL (*rc set). */
static json_t *payload_filter(const json_t *payload, const char *where, int *rc, ag_diag_t *diag)
{
    if (!json_is_object(payload) || json_object_size(payload) == 0) {
        *rc = ag_fail(diag, AG_EUNAUTH, "invalid token: %s.payload must be a non-empty object",
                      where);
        return NULL;
    }
    json_t *must = json_array();
    json_t *f = json_pack("{s:o}", "must", must);
    if (!f) {
        *rc = AG_ENOMEM;
        return NULL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)payload, key, val)
    {
        ag_filter_t *check = NULL;
        int r = ag_filter_match_value(key, val, &check);
        ag_filter_free(check);
        if (r < 0) {
            *rc = r == AG_ENOMEM ? r
                                 : ag_fail(diag, AG_EUNAUTH,
                                           "invalid token: %s.payload.%.64s: expected a string, "
                                           "integer or boolean under a valid key",
                                           where, key);
            json_decref(f);
            return NULL;
        }
        json_t *cond = json_pack("{s:s, s:{s:O}}", "key", key, "match", "value", val);
        if (!cond || json_array_append_new(must, cond) < 0) {
            *rc = AG_ENOMEM;
            json_decref(f);
            return NULL;
        }
    }
    *rc = 0;
    return f;
}

static int access_entry(ag_principal_t *p, const json_t *e, size_t idx, ag_diag_t *diag)
{
    char where[32];
    snprintf(where, sizeof(where), "access[%zu]", idx);
    if (!json_is_object(e))
        return ag_fail(diag, AG_EUNAUTH, "invalid token: %s must be an object", where);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)e, k, v)
    {
        if (strcmp(k, "collection") != 0 && strcmp(k, "access") != 0 && strcmp(k, "payload") != 0)
            return ag_fail(diag, AG_EUNAUTH, "invalid token: %s: unknown field '%.64s'", where, k);
    }
    json_t *coll = json_object_get(e, "collection");
    if (!json_is_string(coll) || json_string_length(coll) == 0 ||
        json_string_length(coll) > AG_MAX_NAME_LEN)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: %s.collection must be a collection name",
                       where);
    json_t *acc = json_object_get(e, "access");
    const char *level = json_is_string(acc) ? json_string_value(acc) : "";
    const char *c = json_string_value(coll);
    int rc = 0;
    json_t *filter = NULL;
    json_t *payload = json_object_get(e, "payload");
    if (payload && !(filter = payload_filter(payload, where, &rc, diag)))
        return rc;

    if (strcmp(level, "r") == 0) {
        if ((rc = grant(p, AG_VERB_READ, AG_RES_COLLECTIONS, c, NULL)) == 0)
            rc = grant(p, AG_VERB_READ, AG_RES_DATA, c, filter);
    } else if (strcmp(level, "rw") == 0) {
        if ((rc = grant(p, AG_VERB_READ, AG_RES_COLLECTIONS, c, NULL)) == 0)
            rc = grant(p, AG_VERB_MANAGE, AG_RES_DATA, c, filter);
        /* Schema and whole-collection copies are not row-scoped: only unrestricted entries. */
        if (rc == 0 && !filter)
            rc = grant(p, AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES, c, NULL);
        if (rc == 0 && !filter)
            rc = grant(p, AG_VERB_CREATE | AG_VERB_DELETE, AG_RES_SNAPSHOTS, c, NULL);
    } else if (strcmp(level, "prw") == 0) {
        /* Qdrant's "points read-write": every point operation — upserts, deletes, vector and
         * payload edits and batches of them — but no payload indexes and no snapshots. */
        if ((rc = grant(p, AG_VERB_READ, AG_RES_COLLECTIONS, c, NULL)) == 0)
            rc = grant(p, AG_VERB_MANAGE, AG_RES_DATA, c, filter);
    } else {
        rc = ag_fail(diag, AG_EUNAUTH, "invalid token: %s.access must be \"r\", \"rw\" or \"prw\"",
                     where);
    }
    json_decref(filter);
    return rc;
}

static int claim_access(ag_principal_t *p, const json_t *access, ag_diag_t *diag)
{
    if (json_is_string(access))
        return grant_global(p, json_string_value(access), diag);
    if (!json_is_array(access))
        return bad_claim(diag, "access must be \"r\", \"m\" or a list");
    if (json_array_size(access) > MAX_ACCESS_ENTRIES)
        return bad_claim(diag, "access has too many entries");
    for (size_t i = 0; i < json_array_size(access); i++) {
        int rc = access_entry(p, json_array_get(access, i), i, diag);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int claim_roles(ag_principal_t *p, const json_t *roles, ag_role_resolve_fn resolve,
                       void *ctx, ag_diag_t *diag)
{
    if (!json_is_array(roles) || json_array_size(roles) > MAX_TOKEN_ROLES)
        return bad_claim(diag, "roles must be a list of at most 64 role names");
    for (size_t i = 0; i < json_array_size(roles); i++) {
        json_t *r = json_array_get(roles, i);
        if (!json_is_string(r) || !ag_role_name_valid(json_string_value(r), json_string_length(r)))
            return ag_fail(diag, AG_EUNAUTH, "invalid token: roles[%zu] is not a role name", i);
        const char *name = json_string_value(r);
        int rc = ag_principal_add_role(p, name);
        if (rc < 0)
            return rc;
        const ag_perm_list_t *builtin = ag_role_builtin(name);
        if (builtin) {
            rc = ag_principal_add_perms(p, builtin);
        } else if (resolve) {
            ag_perm_list_t perms = {0};
            rc = resolve(ctx, name, &perms);
            if (rc == 0)
                rc = ag_principal_add_perms(p, &perms);
            else if (rc == AG_ENOTFOUND)
                rc = 0; /* an unknown role grants nothing */
            ag_perm_list_release(&perms);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int claim_value_exists(ag_principal_t *p, const json_t *ve_json, ag_diag_t *diag)
{
    if (!json_is_object(ve_json))
        return bad_claim(diag, "value_exists must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)ve_json, k, v)
    {
        if (strcmp(k, "collection") != 0 && strcmp(k, "matches") != 0)
            return ag_fail(diag, AG_EUNAUTH, "invalid token: value_exists: unknown field '%.64s'",
                           k);
    }
    json_t *coll = json_object_get(ve_json, "collection");
    json_t *matches = json_object_get(ve_json, "matches");
    if (!json_is_string(coll) || json_string_length(coll) == 0 ||
        json_string_length(coll) > AG_MAX_NAME_LEN)
        return bad_claim(diag, "value_exists.collection must be a collection name");
    if (!json_is_array(matches) || json_array_size(matches) == 0 ||
        json_array_size(matches) > MAX_VALUE_MATCHES)
        return bad_claim(diag, "value_exists.matches must be a non-empty list");

    ag_value_exists_t *ve = calloc(1, sizeof(*ve));
    if (!ve)
        return AG_ENOMEM;
    int rc = AG_ENOMEM;
    if (!(ve->collection = strdup(json_string_value(coll))) ||
        !(ve->matches = json_deep_copy(matches)))
        goto fail;
    for (size_t i = 0; i < json_array_size(matches); i++) {
        json_t *m = json_array_get(matches, i);
        json_t *key = json_object_get(m, "key"), *val = json_object_get(m, "value");
        if (!json_is_object(m) || json_object_size(m) != 2 || !json_is_string(key) || !val) {
            rc = ag_fail(diag, AG_EUNAUTH,
                         "invalid token: value_exists.matches[%zu] must be {key, value}", i);
            goto fail;
        }
        ag_filter_t *one = NULL;
        rc = ag_filter_match_value(json_string_value(key), val, &one);
        if (rc < 0) {
            if (rc != AG_ENOMEM)
                rc = ag_fail(diag, AG_EUNAUTH,
                             "invalid token: value_exists.matches[%zu]: bad key or value", i);
            goto fail;
        }
        int err = 0;
        ve->filter = ag_filter_and(ve->filter, one, &err);
        if (err) {
            rc = err;
            goto fail;
        }
    }
    ag_principal_set_value_exists(p, ve);
    return 0;
fail:
    ag_value_exists_free(ve);
    return rc;
}

/* Memory: on success *out is a new principal reference owned by the caller. */
int ag_jwt_principal(const json_t *claims, ag_role_resolve_fn resolve, void *resolve_ctx,
                     ag_principal_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (!json_is_object(claims))
        return bad_claim(diag, "claims must be an object");
    json_t *sub = json_object_get(claims, "sub");
    if (!sub)
        sub = json_object_get(claims, "subject");
    if (sub && (!json_is_string(sub) || json_string_length(sub) > AG_MAX_NAME_LEN))
        return bad_claim(diag, "sub must be a string of at most 255 bytes");
    /* sub reaches logs and the audit log: control characters (a newline forging a log line)
     * and embedded NULs are refused, not escaped. */
    for (size_t i = 0; sub && i < json_string_length(sub); i++) {
        unsigned char ch = (unsigned char)json_string_value(sub)[i];
        if (ch < 0x20 || ch == 0x7f)
            return bad_claim(diag, "sub must not contain control characters");
    }
    json_t *exp = json_object_get(claims, "exp");
    if (exp && !json_is_integer(exp))
        return bad_claim(diag, "claim exp must be an integer");

    ag_principal_t *p = NULL;
    int rc = ag_principal_new(AG_PRINCIPAL_TOKEN, sub ? json_string_value(sub) : "token", &p);
    if (rc < 0)
        return rc;
    if (sub && (rc = ag_principal_set_sub(p, json_string_value(sub))) < 0)
        goto fail;
    if (exp)
        ag_principal_set_expiry(p, (int64_t)json_integer_value(exp));
    json_t *access = json_object_get(claims, "access");
    if (access && (rc = claim_access(p, access, diag)) < 0)
        goto fail;
    json_t *roles = json_object_get(claims, "roles");
    if (roles && (rc = claim_roles(p, roles, resolve, resolve_ctx, diag)) < 0)
        goto fail;
    json_t *ve = json_object_get(claims, "value_exists");
    if (ve && (rc = claim_value_exists(p, ve, diag)) < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    ag_principal_unref(p);
    return rc == AG_EINVAL ? bad_claim(diag, "too many permissions") : rc;
}

/* --- minting ------------------------------------------------------------------------------ */

/* Memory: *out is a new malloc'd string owned by the caller. */
int ag_jwt_mint(const char *secret, const json_t *claims, char **out)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    *out = NULL;
    if (!secret || strlen(secret) < AG_JWT_MIN_SECRET || !json_is_object(claims))
        return AG_EINVAL;
    char *payload = json_dumps(claims, JSON_COMPACT);
    if (!payload)
        return AG_ENOMEM;
    size_t plen = strlen(payload);
    size_t hl = ag_b64url_encoded_len(sizeof(header) - 1), pl = ag_b64url_encoded_len(plen);
    size_t sl = ag_b64url_encoded_len(MAC_LEN);
    size_t total = hl + 1 + pl + 1 + sl;
    if (total > AG_JWT_MAX_LEN) {
        free(payload);
        return AG_ETOOBIG;
    }
    char *tok = malloc(total + 1);
    if (!tok) {
        free(payload);
        return AG_ENOMEM;
    }
    ag_b64url_encode((const uint8_t *)header, sizeof(header) - 1, tok);
    tok[hl] = '.';
    ag_b64url_encode((const uint8_t *)payload, plen, tok + hl + 1);
    free(payload);
    tok[hl + 1 + pl] = '.';
    uint8_t mac[MAC_LEN];
    hmac_sha256(secret, tok, hl + 1 + pl, mac);
    ag_b64url_encode(mac, MAC_LEN, tok + hl + 1 + pl + 1);
    sodium_memzero(mac, sizeof(mac));
    *out = tok;
    return 0;
}
