#include "api/ag_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "auth/ag_auth.h"
#include "auth/ag_perm.h"
#include "auth/ag_throttle.h"

#define MAX_ROUTES 160
#define ROOT_KEY_FILE "root_key.hash"

struct ag_guard {
    bool insecure;
    ag_auth_t *auth;
    ag_throttle_t *throttle;
    ag_store_t *store;
    ag_action_decl_t decls[MAX_ROUTES];
    /* A generated root key: only its salted BLAKE2b-256 hash is kept, in memory and on disk. */
    bool has_generated_root;
    unsigned char root_salt[16];
    unsigned char root_hash[32];
};

/* ---- the generated root key ---------------------------------------------------------------- */

static void hash_key(const unsigned char salt[16], const char *key, size_t len,
                     unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)key, len, salt, 16);
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

/* Loads the stored hash, or generates a key, prints it once and stores its hash (0600, written to
 * a temporary file, fsynced and renamed so a crash never leaves half a file). */
static int root_key_setup(ag_guard_t *g, const char *storage, ag_diag_t *diag)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", storage, ROOT_KEY_FILE);
    FILE *f = fopen(path, "rb");
    if (f) {
        char line[200] = {0};
        bool ok = fgets(line, sizeof(line), f) != NULL;
        fclose(f);
        char salt_hex[33] = {0}, hash_hex[65] = {0};
        size_t bin_len = 0;
        if (!ok || sscanf(line, "v1 %32s %64s", salt_hex, hash_hex) != 2 ||
            sodium_hex2bin(g->root_salt, 16, salt_hex, 32, NULL, &bin_len, NULL) != 0 ||
            bin_len != 16 ||
            sodium_hex2bin(g->root_hash, 32, hash_hex, 64, NULL, &bin_len, NULL) != 0 ||
            bin_len != 32)
            return ag_fail(diag, AG_ECONFIG,
                           "%s is unreadable or corrupt; remove it to generate a new root key, or "
                           "configure service.api_key",
                           path);
        g->has_generated_root = true;
        ag_log(AG_LOG_INFO, "authentication: using the generated root key (hash in %s)", path);
        return 0;
    }
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    char key[96];
    snprintf(key, sizeof(key), "ag_root_%s", b64);
    sodium_memzero(b64, sizeof(b64));
    randombytes_buf(g->root_salt, sizeof(g->root_salt));
    hash_key(g->root_salt, key, strlen(key), g->root_hash);

    char salt_hex[33], hash_hex[65], line[128];
    sodium_bin2hex(salt_hex, sizeof(salt_hex), g->root_salt, 16);
    sodium_bin2hex(hash_hex, sizeof(hash_hex), g->root_hash, 32);
    snprintf(line, sizeof(line), "v1 %s %s\n", salt_hex, hash_hex);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = fd < 0 ? AG_EIO : write_all(fd, line, strlen(line));
    if (rc == 0 && fsync(fd) != 0)
        rc = AG_EIO;
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = AG_EIO;
    if (rc == 0) {
        int dfd = open(storage, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    if (rc) {
        sodium_memzero(key, sizeof(key));
        unlink(tmp);
        return ag_fail(diag, AG_EIO, "cannot store the root key's hash in %s", path);
    }
    g->has_generated_root = true;
    /* Printed once, on stdout only (never in the log); only the hash is kept. */
    printf("\n"
           "  Aegis generated a root API key for this storage directory. It is shown only now:\n"
           "\n"
           "      %s\n"
           "\n"
           "  Send it with every request:  curl -H 'api-key: <key>' http://127.0.0.1:6333/collections\n"
           "  Only its hash is stored (%s). To choose your own key, set service.api_key\n"
           "  (or AEGIS__SERVICE__API_KEY) to at least 32 characters.\n\n",
           key, path);
    fflush(stdout);
    sodium_memzero(key, sizeof(key));
    return 0;
}

static int lookup_hook(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out)
{
    AG_UNUSED(now);
    ag_guard_t *g = ctx;
    if (!g->has_generated_root)
        return AG_ENOTFOUND;
    unsigned char h[32];
    hash_key(g->root_salt, credential, len, h);
    int same = sodium_memcmp(h, g->root_hash, 32) == 0;
    sodium_memzero(h, sizeof(h));
    if (!same)
        return AG_ENOTFOUND;
    int rc = ag_principal_new(AG_PRINCIPAL_ROOT, "root", out);
    if (rc == 0)
        rc = ag_principal_add_perms(*out, ag_role_root());
    if (rc && *out) {
        ag_principal_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* value_exists claim: does any point of the collection satisfy the filter right now? */
static int value_exists_hook(void *ctx, const char *collection, const ag_filter_t *filter)
{
    ag_guard_t *g = ctx;
    ag_collection_t *c;
    if (ag_store_get(g->store, collection, &c, NULL) != 0)
        return AG_ENOTFOUND;
    bool found = false;
    ag_coll_read_begin(c);
    for (uint32_t s = 0; s < c->nslots && !found; s++)
        found = ag_coll_match(c, s, filter);
    ag_coll_read_end(c);
    ag_coll_unref(c);
    return found ? 0 : AG_ENOTFOUND;
}

int ag_guard_new(const ag_guard_config_t *cfg, ag_store_t *store, ag_guard_t **out,
                 ag_diag_t *diag)
{
    ag_guard_t *g = calloc(1, sizeof(*g));
    if (!g)
        return AG_ENOMEM;
    g->insecure = cfg->insecure;
    g->store = store;
    int rc = 0;
    if (!g->insecure) {
        ag_auth_config_t ac;
        ag_auth_config_init(&ac);
        ac.api_key = cfg->api_key;
        ac.alt_api_key = cfg->alt_api_key;
        ac.read_only_api_key = cfg->read_only_api_key;
        ac.jwt_rbac = cfg->jwt_rbac;
        ac.jwt_leeway_s = cfg->jwt_leeway_s;
        bool any_key = (cfg->api_key && *cfg->api_key) ||
                       (cfg->read_only_api_key && *cfg->read_only_api_key);
        if ((rc = ag_auth_new(&ac, &g->auth, diag)) != 0)
            goto fail;
        if (!(cfg->api_key && *cfg->api_key) && (rc = root_key_setup(g, cfg->storage_path, diag)))
            goto fail;
        AG_UNUSED(any_key);
        ag_auth_hooks_t hooks = {0};
        hooks.lookup = lookup_hook;
        hooks.lookup_ctx = g;
        hooks.value_exists = value_exists_hook;
        hooks.value_exists_ctx = g;
        ag_auth_set_hooks(g->auth, &hooks);
        if ((rc = ag_throttle_new(NULL, &g->throttle)) != 0)
            goto fail;
    }
    *out = g;
    return 0;
fail:
    ag_guard_free(g);
    return rc;
}

void ag_guard_free(ag_guard_t *g)
{
    if (!g)
        return;
    ag_auth_free(g->auth);
    ag_throttle_free(g->throttle);
    sodium_memzero(g->root_hash, sizeof(g->root_hash));
    free(g);
}

int ag_guard_check_route(ag_guard_t *g, const ag_route_t *r, size_t i, ag_diag_t *diag)
{
    if (i >= MAX_ROUTES)
        return ag_fail(diag, AG_ECONFIG, "too many routes");
    if (!r->action)
        return ag_fail(diag, AG_ECONFIG, "route %s declares no action", r->pattern);
    int rc = ag_action_decl_parse(r->action, r->pattern, &g->decls[i], diag);
    if (rc)
        return rc;
    bool is_public = (g->decls[i].flags & AG_ACTF_PUBLIC) != 0;
    if (is_public != r->public_route)
        return ag_fail(diag, AG_ECONFIG, "route %s: only public routes use read:public",
                       r->pattern);
    if (r->list_route)
        g->decls[i].flags |= AG_ACTF_LIST;
    return 0;
}

/* ---- admission ----------------------------------------------------------------------------- */

static void label(ag_call_t *call, const ag_principal_t *p)
{
    const char *id = ag_principal_id(p);
    const char *sub = ag_principal_sub(p);
    snprintf(call->req->principal_label, sizeof(call->req->principal_label), "%s:%.40s%s%.32s",
             ag_principal_kind_name(ag_principal_kind(p)), id ? id : "-", sub ? "/sub=" : "",
             sub ? sub : "");
}

static int decide(ag_call_t *call, const ag_action_decl_t *decl, const char *collection,
                  ag_filter_t **restriction, bool quiet, ag_diag_t *diag)
{
    ag_request_action_t a;
    ag_request_action_init(&a, decl);
    char target[AG_MAX_NAME_LEN + 1];
    if (collection) {
        a.collection = collection;
        if (ag_store_alias_target(call->api->store, collection, target, sizeof(target)) == 0)
            a.alias_target = target;
    }
    ag_decision_t d;
    int rc = ag_auth_decide(call->principal, &a, &d);
    if (rc) {
        ag_log(AG_LOG_WARN, "authorization error (%s) for %s %s: denied", ag_strerror(rc),
               call->req->method_name, call->route->pattern);
        ag_decision_release(&d);
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: the permission check failed");
    }
    if (!d.allowed) {
        rc = ag_fail(diag, AG_EFORBIDDEN, "Forbidden: missing permission %s",
                     d.missing ? d.missing : "(unknown)");
        if (!quiet)
            ag_log(AG_LOG_INFO, "denied %s %s for %s: missing %s", call->req->method_name,
                   call->route->pattern, call->req->principal_label,
                   d.missing ? d.missing : "(unknown)");
        ag_decision_release(&d);
        return rc;
    }
    if (restriction) {
        *restriction = d.restriction;
        d.restriction = NULL;
    }
    ag_decision_release(&d);
    return 0;
}

int ag_guard_admit(ag_guard_t *g, ag_call_t *call, size_t i, int *retry_after, ag_diag_t *diag)
{
    const ag_action_decl_t *decl = &g->decls[i];
    ag_request_t *req = call->req;
    if (decl->flags & AG_ACTF_PUBLIC) {
        snprintf(req->principal_label, sizeof(req->principal_label), "public");
        return 0;
    }
    int rc;
    if (g->insecure) {
        if ((rc = ag_auth_anonymous(&call->principal)) != 0)
            return ag_fail(diag, AG_EINTERNAL, "cannot create the anonymous principal");
        snprintf(req->principal_label, sizeof(req->principal_label), "anonymous");
        return 0;
    }
    int64_t now = ag_now_unix();
    int wait_s = 0;
    if (ag_throttle_check(g->throttle, req->remote_addr, now, &wait_s) == AG_ETHROTTLED) {
        *retry_after = wait_s;
        ag_log(AG_LOG_WARN, "throttled %s: too many failed authentications", req->remote_addr);
        return ag_fail(diag, AG_ETHROTTLED,
                       "Too many failed authentication attempts; retry later");
    }
    ag_diag_t adiag = {{0}};
    rc = ag_auth_authenticate(g->auth, req->api_key, req->authorization, now, &call->principal,
                              &adiag);
    if (rc) {
        call->principal = NULL;
        if (ag_throttle_fail(g->throttle, req->remote_addr, now, &wait_s) == AG_ETHROTTLED)
            *retry_after = wait_s;
        ag_log(AG_LOG_WARN, "authentication failed from %s for %s %s: %s", req->remote_addr,
               req->method_name, call->route->pattern, adiag.msg[0] ? adiag.msg : "refused");
        if (rc != AG_EUNAUTH)
            return ag_fail(diag, AG_EUNAUTH, "Unauthorized: the credential could not be checked");
        return ag_fail(diag, AG_EUNAUTH, "%s",
                       adiag.msg[0] ? adiag.msg : "Unauthorized: missing or invalid credential");
    }
    label(call, call->principal);
    const char *collection = call->route->scope == AG_SCOPE_COLLECTION ? call->params[0] : NULL;
    return decide(call, decl, collection, &call->restriction, false, diag);
}

static int authorize(ag_call_t *call, const char *action, const char *collection,
                     ag_filter_t **restriction, bool quiet, ag_diag_t *diag)
{
    if (restriction)
        *restriction = NULL;
    if (!call->principal)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: no principal");
    ag_action_decl_t decl;
    int rc = ag_action_decl_parse(action, call->route->pattern, &decl, diag);
    if (rc)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: unknown action");
    return decide(call, &decl, collection, restriction, quiet, diag);
}

int ag_guard_authorize(ag_call_t *call, const char *action, const char *collection,
                       ag_filter_t **restriction, ag_diag_t *diag)
{
    return authorize(call, action, collection, restriction, false, diag);
}

bool ag_guard_visible(ag_call_t *call, const char *collection)
{
    ag_diag_t d;
    return authorize(call, "read:collections", collection, NULL, true, &d) == 0;
}

void ag_guard_release_principal(ag_call_t *call)
{
    if (call->principal)
        ag_principal_unref(call->principal);
    call->principal = NULL;
}

void ag_guard_audit(ag_call_t *call, int http_status)
{
    AG_UNUSED(call);
    AG_UNUSED(http_status);
}
