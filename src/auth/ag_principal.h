/*
 * ag_principal.h — who is calling (docs/SECURITY.md "Who is calling") and the predefined
 * roles; the decision is in ag_decide.h.
 *
 * A principal is built once (by ag_auth_authenticate, a JWT, or a user/key lookup), then shared
 * read-only: it is reference-counted with C11 atomics so a cached principal can be handed to
 * many requests at once. Building functions (ag_principal_set_*, _add_*) may only be called
 * before the first ag_principal_ref.
 */
#ifndef AG_PRINCIPAL_H
#define AG_PRINCIPAL_H

#include "ag_base.h"
#include "ag_perm.h"

#include <jansson.h>

typedef struct ag_filter ag_filter_t;

typedef enum {
    AG_PRINCIPAL_ANONYMOUS = 0, /* --insecure only */
    AG_PRINCIPAL_ROOT,          /* service.api_key / alt_api_key */
    AG_PRINCIPAL_VIEWER,        /* service.read_only_api_key */
    AG_PRINCIPAL_TOKEN,         /* a verified JWT */
    AG_PRINCIPAL_USER,          /* a database user's API key */
    AG_PRINCIPAL_API_KEY,       /* a scoped database API key / management key */
} ag_principal_kind_t;

/* Static lowercase name ("root", "token", …); "unknown" out of range. */
const char *ag_principal_kind_name(int kind);

/*
 * The JWT `value_exists` claim: the token is valid only while a point whose payload has every
 * key = value exists in collection. The store answers it through ag_auth_config_t's callback on
 * every request; filter is that condition, compiled once.
 */
typedef struct ag_value_exists {
    char *collection;    /* owned */
    json_t *matches;     /* owned: array of {"key": string, "value": scalar} as in the token */
    ag_filter_t *filter; /* owned: AND of key = value over matches */
} ag_value_exists_t;
/* Frees ve and what it owns. NULL is a no-op. */
void ag_value_exists_free(ag_value_exists_t *ve);

typedef struct ag_principal ag_principal_t;

/* A new principal of kind with id (copied; may be NULL) and no permissions, reference count 1.
 * AG_ENOMEM. The caller owns the reference (ag_principal_unref). */
int ag_principal_new(int kind, const char *id, ag_principal_t **out);
/* Returns p with one more reference (NULL-safe). Thread-safe. */
ag_principal_t *ag_principal_ref(ag_principal_t *p);
/* Drops one reference; the last one frees p. NULL-safe, thread-safe. */
void ag_principal_unref(ag_principal_t *p);

/* Building (before sharing). Strings are copied. */
int ag_principal_set_sub(ag_principal_t *p, const char *sub);
/* Seconds since the epoch after which the principal is no longer valid; 0 = never. */
void ag_principal_set_expiry(ag_principal_t *p, int64_t expires_at);
/* Takes ownership of perm's contents (perm is left empty), also on failure. */
int ag_principal_add_perm(ag_principal_t *p, ag_perm_t *perm);
/* Appends deep copies of perms. */
int ag_principal_add_perms(ag_principal_t *p, const ag_perm_list_t *perms);
/* Records a role name (for /auth/me and the audit log; does not grant anything by itself). */
int ag_principal_add_role(ag_principal_t *p, const char *role);
/* Takes ownership of ve (freed with p). Replaces any earlier one. */
void ag_principal_set_value_exists(ag_principal_t *p, ag_value_exists_t *ve);
/* The principal that minted p (POST /auth/token), resolved as it stands now: p may never do more
 * than bound (every decision is the AND of p's and bound's, recursively; docs/SECURITY.md
 * "Minted tokens"). Takes ownership of the reference; replaces any earlier one. NULL = unbound. */
void ag_principal_set_bound(ag_principal_t *p, ag_principal_t *bound);
/* The verified JWT claims a token principal was built from (a new reference is taken), so a
 * token that mints can embed them as its minter. */
void ag_principal_set_claims(ag_principal_t *p, const json_t *claims);

/* Reading. Strings and lists are borrowed for the life of p. */
int ag_principal_kind(const ag_principal_t *p);
const char *ag_principal_id(const ag_principal_t *p);  /* NULL if none */
const char *ag_principal_sub(const ag_principal_t *p); /* JWT sub/subject, NULL if none */
int64_t ag_principal_expiry(const ag_principal_t *p);  /* 0 = never */
const ag_perm_list_t *ag_principal_perms(const ag_principal_t *p);
size_t ag_principal_role_count(const ag_principal_t *p);
const char *ag_principal_role(const ag_principal_t *p, size_t i);
const ag_value_exists_t *ag_principal_value_exists(const ag_principal_t *p); /* NULL if none */
const ag_principal_t *ag_principal_bound(const ag_principal_t *p);           /* NULL if none */
const json_t *ag_principal_claims(const ag_principal_t *p);                  /* NULL if none */

/*
 * Predefined roles (static, immutable, never freed):
 *   root   — every verb on every resource (one permission on AG_RES_ANY);
 *   viewer — read on collections, data, tenants, snapshots, cluster, nodes (the data plane);
 *            nothing on roles, users, keys, invites, account, backups or audit.
 */
const ag_perm_list_t *ag_role_root(void);
const ag_perm_list_t *ag_role_viewer(void);
/* "root" / "viewer" → their list; NULL for any other name. */
const ag_perm_list_t *ag_role_builtin(const char *name);

#endif
