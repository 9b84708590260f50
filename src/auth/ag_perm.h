/*
 * ag_perm.h — the permission model (docs/PERMISSIONS.md): verbs, resources, scope patterns,
 * permissions, and the action every route declares.
 *
 * A permission is `{"action": "<verb>:<resource>", <scope fields>, "filter"?}`. Verbs are bit
 * flags; `write` = create|update, `manage` = all four, and any verb other than read implies read
 * on the same resource and scope (the parser adds it). A scope field left out means `*`.
 *
 * Internal sub-resources. Qdrant's JWT access levels draw two lines that the model's resources
 * cannot express, so two sub-resources exist that only the JWT mapping grants and only routes
 * declare (they are not accepted in permission JSON):
 *   - `payload_indexes` ⊂ `collections`: creating and deleting payload indexes (routes declare
 *     update:payload_indexes for both). JWT `rw` grants it; `prw` and `r` do not; neither grants
 *     collection create/delete/PATCH or alias changes, which need update:collections etc.
 *   - `points` ⊂ `data`: point writes — upsert, delete points, update/delete vectors (routes
 *     declare create/update/delete:points). Payload edits (set, overwrite, delete keys, clear)
 *     declare update:data. JWT `prw` grants points writes but not payload edits; `rw` grants both.
 * A permission on the parent covers every action on its sub-resource with the same verbs, so a
 * custom role never needs to name them, and a 403 names the parent ("update:collections").
 *
 * Shorthand `cluster_data` (only `read` or `write`): read:cluster_data = read on every
 * collection and all data; write:cluster_data = that plus create and update on all data
 * (write = create + update, so not point deletion).
 */
#ifndef AG_PERM_H
#define AG_PERM_H

#include "ag_base.h"
#include "ag_glob.h"

#include <jansson.h>

typedef enum {
    AG_VERB_READ = 1u << 0,
    AG_VERB_CREATE = 1u << 1,
    AG_VERB_UPDATE = 1u << 2,
    AG_VERB_DELETE = 1u << 3,
} ag_verb_t;
#define AG_VERB_WRITE (AG_VERB_CREATE | AG_VERB_UPDATE)
#define AG_VERB_MANAGE (AG_VERB_READ | AG_VERB_CREATE | AG_VERB_UPDATE | AG_VERB_DELETE)

/* Scope fields of a permission (and the matching values of a request). */
typedef enum {
    AG_PSCOPE_COLLECTION = 0,
    AG_PSCOPE_TENANT,
    AG_PSCOPE_ROLE,
    AG_PSCOPE_USER,
    AG_PSCOPE_VERBOSITY,
    AG_PSCOPE_COUNT
} ag_pscope_t;
#define AG_PSCOPE_BIT(s) (1u << (s))
#define AG_PS_COLL AG_PSCOPE_BIT(AG_PSCOPE_COLLECTION)
#define AG_PS_TENANT AG_PSCOPE_BIT(AG_PSCOPE_TENANT)

/*       enum                      name                parent              scope fields */
#define AG_RESOURCES(X)                                                                            \
    X(AG_RES_COLLECTIONS, "collections", AG_RES_NONE, AG_PS_COLL)                                  \
    X(AG_RES_DATA, "data", AG_RES_NONE, AG_PS_COLL | AG_PS_TENANT)                                 \
    X(AG_RES_TENANTS, "tenants", AG_RES_NONE, AG_PS_COLL | AG_PS_TENANT)                           \
    X(AG_RES_SNAPSHOTS, "snapshots", AG_RES_NONE, AG_PS_COLL)                                      \
    X(AG_RES_BACKUPS, "backups", AG_RES_NONE, AG_PS_COLL)                                          \
    X(AG_RES_BACKUP_SCHEDULES, "backup_schedules", AG_RES_NONE, AG_PS_COLL)                        \
    X(AG_RES_CLUSTER, "clusters", AG_RES_NONE, 0)                                                  \
    X(AG_RES_NODES, "nodes", AG_RES_NONE, AG_PSCOPE_BIT(AG_PSCOPE_VERBOSITY))                      \
    X(AG_RES_CLUSTER_DATA, "cluster_data", AG_RES_NONE, 0)                                         \
    X(AG_RES_ROLES, "roles", AG_RES_NONE, AG_PSCOPE_BIT(AG_PSCOPE_ROLE))                           \
    X(AG_RES_USERS, "users", AG_RES_NONE, AG_PSCOPE_BIT(AG_PSCOPE_USER))                           \
    X(AG_RES_API_KEYS, "api_keys", AG_RES_NONE, 0)                                                 \
    X(AG_RES_MANAGEMENT_KEYS, "management_keys", AG_RES_NONE, 0)                                   \
    X(AG_RES_INVITES, "invites", AG_RES_NONE, 0)                                                   \
    X(AG_RES_ACCOUNT, "account", AG_RES_NONE, 0)                                                   \
    X(AG_RES_PROFILE, "profile", AG_RES_NONE, 0)                                                   \
    X(AG_RES_AUDIT, "audit", AG_RES_NONE, 0)                                                       \
    /* accepted for Qdrant Cloud compatibility; nothing behind them on a self-hosted server */     \
    X(AG_RES_HYBRID_CLOUD, "hybrid_cloud_environments", AG_RES_NONE, 0)                            \
    X(AG_RES_PAYMENT, "payment_information", AG_RES_NONE, 0)                                       \
    /* internal sub-resources (see above) */                                                       \
    X(AG_RES_PAYLOAD_INDEXES, "payload_indexes", AG_RES_COLLECTIONS, AG_PS_COLL)                   \
    X(AG_RES_POINTS, "points", AG_RES_DATA, AG_PS_COLL | AG_PS_TENANT)

typedef enum {
    AG_RES_NONE = 0, /* not a resource: an action left undeclared */
#define AG_RES_ENUM(e, name, parent, scopes) e,
    AG_RESOURCES(AG_RES_ENUM)
#undef AG_RES_ENUM
        AG_RES_COUNT,
    AG_RES_ANY = 0xff /* every resource: the predefined root role only; never parsed */
} ag_resource_t;

/* Static name of a resource ("collections"), "*" for AG_RES_ANY, NULL if out of range. */
const char *ag_resource_name(int res);
/* Resource named name among the public ones (internal sub-resources are not accepted; the older
 * singular "cluster" still names clusters); AG_RES_NONE if unknown. */
int ag_resource_lookup(const char *name);
/* True for the management resources (docs/PERMISSIONS.md "Management keys"): roles, users, keys,
 * invites, backups and their schedules, clusters, nodes, account, profile, audit and the
 * compatibility names — not collections, data, tenants, snapshots or cluster_data. */
bool ag_resource_is_management(int res);
/* True for data and its sub-resource: the resources whose permissions carry row filters. */
bool ag_resource_is_data(int res);
/* The public resource that covers res: its parent for a sub-resource, else res itself. */
int ag_resource_public(int res);

/* A permission. Immutable after parsing/copying; safe to read from many threads. */
typedef struct ag_perm {
    uint8_t verbs;                    /* AG_VERB_* mask; read is always set */
    uint8_t resource;                 /* ag_resource_t */
    ag_glob_t scope[AG_PSCOPE_COUNT]; /* match-all for a field left out */
    json_t *filter;                   /* owned reference; NULL = whole collection (data only) */
} ag_perm_t;

/* A growable list of permissions (at most AG_PERM_MAX). Zero-initialised = empty. */
#define AG_PERM_MAX 1024
typedef struct ag_perm_list {
    ag_perm_t *items;
    size_t n, cap;
} ag_perm_list_t;

/*
 * Parses one permission object. Strict: unknown keys, unknown verb or resource, a scope field
 * the resource does not have, a filter on anything but data, a bad pattern or filter → AG_EINVAL
 * with a diag naming the field (path is the JSON path of obj for the message, e.g.
 * "permissions[2]"; may be NULL). On success *out owns new memory (ag_perm_release); on failure
 * *out is empty and needs no release. obj is borrowed.
 */
int ag_perm_parse(const json_t *obj, const char *path, ag_perm_t *out, ag_diag_t *diag);
/* Parses a JSON array of permissions and appends them to list (path as above, e.g.
 * "permissions"). On failure list is left as it was. obj is borrowed. */
int ag_perm_list_parse(const json_t *arr, const char *path, ag_perm_list_t *list, ag_diag_t *diag);

/* Builds a permission in code: verbs (read is always added), resource, all scopes match-all, no
 * filter. Does not allocate. */
void ag_perm_init(ag_perm_t *p, unsigned verbs, int resource);
/* Sets one scope of p to a glob (or an exact name when literal) compiled from pattern. Frees the
 * old one. AG_EINVAL for a bad pattern, AG_ENOMEM. */
int ag_perm_set_scope(ag_perm_t *p, ag_pscope_t scope, const char *pattern, bool literal);
/* Deep copy: *dst owns new memory (filter shared by reference count). AG_ENOMEM leaves *dst
 * empty. */
int ag_perm_copy(const ag_perm_t *src, ag_perm_t *dst);
/* Frees what p owns and leaves it empty. */
void ag_perm_release(ag_perm_t *p);

/* Appends p to list, taking ownership of its contents (p is left empty) — also on failure, when
 * p is released. AG_ENOMEM, or AG_EINVAL past AG_PERM_MAX. */
int ag_perm_list_push(ag_perm_list_t *list, ag_perm_t *p);
/* Appends deep copies of every permission in src. On failure list is left as it was. */
int ag_perm_list_extend(ag_perm_list_t *list, const ag_perm_list_t *src);
/* Frees the permissions and the array; list becomes empty. */
void ag_perm_list_release(ag_perm_list_t *list);

/* Renders a permission as JSON objects in the parse format, appending to arr (a new reference
 * per element). A verb mask no single action word expresses (e.g. create+delete) is split into
 * several objects. The internal sub-resources render under their own names and root's
 * every-resource permission as "manage:*" — shown by /auth/me, but not accepted back by the
 * parser. A literal scope (JWT collection name) renders as its text. AG_ENOMEM. */
int ag_perm_to_json(const ag_perm_t *p, json_t *arr);

/*
 * Anti-escalation: true if the permissions in held (plus the implicit read:profile) together
 * include wanted — some held permission covers the verbs and resource (directly, through a parent
 * resource, through cluster_data or root's every-resource permission), each of its scope patterns
 * includes the wanted one, and its filter is absent or equal to wanted's.
 */
bool ag_perm_list_covers(const ag_perm_list_t *held, const ag_perm_t *wanted);

/* --- Actions ----------------------------------------------------------------------------- */

typedef enum {
    AG_ACTF_PUBLIC = 1u << 0, /* no credential needed (health checks, invite acceptance) */
    AG_ACTF_LIST = 1u << 1,   /* a listing: a scope value left NULL matches every pattern and the
                                 handler must check each listed item with ag_auth_decide */
} ag_action_flag_t;

/* What a route declares: the verbs (all required from one permission) and the resource. */
typedef struct ag_action_decl {
    uint8_t verbs;
    uint8_t resource;
    uint8_t flags; /* ag_action_flag_t */
} ag_action_decl_t;

/* Initialisers for a route table, e.g.
 *   { AG_HTTP_GET, "/collections/{collection}", get_collection,
 *     AG_ACT(AG_VERB_READ, AG_RES_COLLECTIONS) },
 *   { AG_HTTP_GET, "/collections", list_collections, AG_ACT_LIST(AG_VERB_READ, AG_RES_COLLECTIONS)
 * }, { AG_HTTP_GET, "/healthz", healthz, AG_ACT_PUBLIC }, A route whose action is left zero fails
 * ag_action_decl_check. */
#define AG_ACT(verb, res)                                                                          \
    {                                                                                              \
        .verbs = (verb), .resource = (res), .flags = 0                                             \
    }
#define AG_ACT_LIST(verb, res)                                                                     \
    {                                                                                              \
        .verbs = (verb), .resource = (res), .flags = AG_ACTF_LIST                                  \
    }
#define AG_ACT_PUBLIC                                                                              \
    {                                                                                              \
        .verbs = 0, .resource = AG_RES_NONE, .flags = AG_ACTF_PUBLIC                               \
    }

/*
 * Parses a route table's action string "<verb>:<resource>" into *out. Unlike permission JSON it
 * accepts the internal sub-resources (routes are where they are used), and "read:public" for a
 * route that needs no credential (→ AG_ACT_PUBLIC). Then ag_action_decl_check. AG_ECONFIG naming
 * route on failure.
 */
int ag_action_decl_parse(const char *action, const char *route, ag_action_decl_t *out,
                         ag_diag_t *diag);

/* 0 if d is a usable declaration: either exactly AG_ACT_PUBLIC, or non-empty known verbs on a
 * concrete resource (not cluster_data, not AG_RES_ANY). Otherwise AG_ECONFIG naming route (for
 * the message; may be NULL). The server refuses to start on failure. */
int ag_action_decl_check(const ag_action_decl_t *d, const char *route, ag_diag_t *diag);

/*
 * One request's action, filled by the router from the route's declaration and the request.
 * Scope values are borrowed for the decision; NULL means the request names none (then only a
 * match-all pattern covers it, unless AG_ACTF_LIST).
 */
typedef struct ag_request_action {
    uint8_t verbs;
    uint8_t resource;
    uint8_t flags;
    const char *collection; /* the collection itself: an alias is resolved before deciding, since
                               aliases are names, not security boundaries (docs/SECURITY.md) */
    const char *tenant;
    const char *tenant_key; /* payload key of the collection's is_tenant index, or NULL; needed
                               to turn a tenant-scoped data permission into a row restriction */
    const char *role;
    const char *user;
    const char *verbosity; /* nodes: "minimal" / "verbose" */
} ag_request_action_t;

/* Starts a request action from a declaration (all scope values NULL). */
void ag_request_action_init(ag_request_action_t *a, const ag_action_decl_t *d);

/* Building blocks of the decision (ag_auth_decide in ag_principal.h), never allocating:
 * does p's action cover all of verbs on res (directly, through the parent resource, through
 * cluster_data or AG_RES_ANY), and do p's scope patterns match a's scope values? The
 * tenant_key rule is the decider's. */
bool ag_perm_covers_action(const ag_perm_t *p, unsigned verbs, int res);
bool ag_perm_scope_matches(const ag_perm_t *p, const ag_request_action_t *a);

/* Renders "read:data on collection 'x', tenant 't'" (the 403 message) into buf; a sub-resource
 * is named by its public parent. Returns buf. Never fails (truncates). */
const char *ag_action_describe(const ag_request_action_t *a, char *buf, size_t len);

#endif
