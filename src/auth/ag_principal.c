#include "ag_principal.h"

#include <stdatomic.h>
#include <stdio.h>

#include "index/ag_filter.h"

#define MAX_ROLES 64

struct ag_principal {
    atomic_int refs;
    int kind;
    char *id;
    char *sub;
    int64_t expires_at;
    ag_perm_list_t perms;
    char **roles;
    size_t n_roles;
    ag_value_exists_t *value_exists;
    ag_principal_t *bound; /* owned reference: the minter, or NULL */
    json_t *claims;        /* owned reference: verified JWT claims, or NULL */
};

const char *ag_principal_kind_name(int kind)
{
    switch (kind) {
    case AG_PRINCIPAL_ANONYMOUS:
        return "anonymous";
    case AG_PRINCIPAL_ROOT:
        return "root";
    case AG_PRINCIPAL_VIEWER:
        return "viewer";
    case AG_PRINCIPAL_TOKEN:
        return "token";
    case AG_PRINCIPAL_USER:
        return "user";
    case AG_PRINCIPAL_API_KEY:
        return "api_key";
    default:
        return "unknown";
    }
}

void ag_value_exists_free(ag_value_exists_t *ve)
{
    if (!ve)
        return;
    free(ve->collection);
    json_decref(ve->matches);
    ag_filter_free(ve->filter);
    free(ve);
}

/* Memory: *out is a new principal with one reference owned by the caller. */
int ag_principal_new(int kind, const char *id, ag_principal_t **out)
{
    *out = NULL;
    ag_principal_t *p = calloc(1, sizeof(*p));
    if (!p)
        return AG_ENOMEM;
    atomic_init(&p->refs, 1);
    p->kind = kind;
    if (id && !(p->id = strdup(id))) {
        free(p);
        return AG_ENOMEM;
    }
    *out = p;
    return 0;
}

ag_principal_t *ag_principal_ref(ag_principal_t *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void ag_principal_unref(ag_principal_t *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(p->id);
    free(p->sub);
    ag_perm_list_release(&p->perms);
    for (size_t i = 0; i < p->n_roles; i++)
        free(p->roles[i]);
    free(p->roles);
    ag_value_exists_free(p->value_exists);
    ag_principal_unref(p->bound);
    json_decref(p->claims);
    free(p);
}

/* Memory: p owns the copy. */
int ag_principal_set_sub(ag_principal_t *p, const char *sub)
{
    char *s = sub ? strdup(sub) : NULL;
    if (sub && !s)
        return AG_ENOMEM;
    free(p->sub);
    p->sub = s;
    return 0;
}

void ag_principal_set_expiry(ag_principal_t *p, int64_t expires_at)
{
    p->expires_at = expires_at;
}

int ag_principal_add_perm(ag_principal_t *p, ag_perm_t *perm)
{
    return ag_perm_list_push(&p->perms, perm);
}

int ag_principal_add_perms(ag_principal_t *p, const ag_perm_list_t *perms)
{
    return ag_perm_list_extend(&p->perms, perms);
}

/* Memory: p owns the copy. */
int ag_principal_add_role(ag_principal_t *p, const char *role)
{
    if (!role)
        return AG_EINVAL;
    if (p->n_roles >= MAX_ROLES)
        return AG_EINVAL;
    char **roles = realloc(p->roles, (p->n_roles + 1) * sizeof(*roles));
    if (!roles)
        return AG_ENOMEM;
    p->roles = roles;
    if (!(roles[p->n_roles] = strdup(role)))
        return AG_ENOMEM;
    p->n_roles++;
    return 0;
}

void ag_principal_set_value_exists(ag_principal_t *p, ag_value_exists_t *ve)
{
    ag_value_exists_free(p->value_exists);
    p->value_exists = ve;
}

void ag_principal_set_bound(ag_principal_t *p, ag_principal_t *bound)
{
    ag_principal_unref(p->bound);
    p->bound = bound;
}

/* Memory: p holds a new reference to claims. */
void ag_principal_set_claims(ag_principal_t *p, const json_t *claims)
{
    json_decref(p->claims);
    p->claims = json_incref((json_t *)claims);
}

const ag_principal_t *ag_principal_bound(const ag_principal_t *p)
{
    return p->bound;
}

const json_t *ag_principal_claims(const ag_principal_t *p)
{
    return p->claims;
}

int ag_principal_kind(const ag_principal_t *p)
{
    return p->kind;
}

const char *ag_principal_id(const ag_principal_t *p)
{
    return p->id;
}

const char *ag_principal_sub(const ag_principal_t *p)
{
    return p->sub;
}

int64_t ag_principal_expiry(const ag_principal_t *p)
{
    return p->expires_at;
}

const ag_perm_list_t *ag_principal_perms(const ag_principal_t *p)
{
    return &p->perms;
}

size_t ag_principal_role_count(const ag_principal_t *p)
{
    return p->n_roles;
}

const char *ag_principal_role(const ag_principal_t *p, size_t i)
{
    return i < p->n_roles ? p->roles[i] : NULL;
}

const ag_value_exists_t *ag_principal_value_exists(const ag_principal_t *p)
{
    return p->value_exists;
}

/* --- predefined roles -------------------------------------------------------------------- */

/* Match-all scopes are zero-initialised globs, so these need no allocation. They are never
 * modified (only handed out as const). */
static ag_perm_t root_items[] = {
    {.verbs = AG_VERB_MANAGE, .resource = AG_RES_ANY},
};
static ag_perm_t viewer_items[] = {
    {.verbs = AG_VERB_READ, .resource = AG_RES_COLLECTIONS},
    {.verbs = AG_VERB_READ, .resource = AG_RES_DATA},
    {.verbs = AG_VERB_READ, .resource = AG_RES_TENANTS},
    {.verbs = AG_VERB_READ, .resource = AG_RES_SNAPSHOTS},
    {.verbs = AG_VERB_READ, .resource = AG_RES_CLUSTER},
    {.verbs = AG_VERB_READ, .resource = AG_RES_NODES},
};
static const ag_perm_list_t root_role = {root_items, AG_ARRAY_LEN(root_items),
                                         AG_ARRAY_LEN(root_items)};
static const ag_perm_list_t viewer_role = {viewer_items, AG_ARRAY_LEN(viewer_items),
                                           AG_ARRAY_LEN(viewer_items)};

const ag_perm_list_t *ag_role_root(void)
{
    return &root_role;
}

const ag_perm_list_t *ag_role_viewer(void)
{
    return &viewer_role;
}

const ag_perm_list_t *ag_role_builtin(const char *name)
{
    if (name && strcmp(name, "root") == 0)
        return &root_role;
    if (name && strcmp(name, "viewer") == 0)
        return &viewer_role;
    return NULL;
}

/* --- decision ---------------------------------------------------------------------------- */

static bool action_valid(const ag_request_action_t *a)
{
    return a->verbs != 0 && (a->verbs & ~(unsigned)AG_VERB_MANAGE) == 0 &&
           a->resource > AG_RES_NONE && a->resource < AG_RES_COUNT &&
           a->resource != AG_RES_CLUSTER_DATA;
}

/* The row restriction one matching data permission contributes (a new filter in *out; NULL
 * when it turns out to match everything). */
static int build_restriction(const ag_perm_t *q, const ag_request_action_t *a, bool tenant_scoped,
                             ag_filter_t **out)
{
    *out = NULL;
    ag_filter_t *f = NULL, *t = NULL;
    int rc = 0;
    if (q->filter && (rc = ag_filter_compile(q->filter, &f, NULL)) < 0)
        return rc;
    if (tenant_scoped) {
        json_t *v = json_string(a->tenant);
        rc = v ? ag_filter_match_value(a->tenant_key, v, &t) : AG_ENOMEM;
        json_decref(v);
        if (rc < 0) {
            ag_filter_free(f);
            return rc;
        }
    }
    int err = 0;
    ag_filter_t *both = ag_filter_and(f, t, &err);
    if (err)
        return err;
    *out = both;
    return 0;
}

/* An action of several verbs (write = create + update) that no single permission covers may
 * still be covered verb by verb, as anti-escalation counts it (a role listing create:data and
 * update:data separately grants what write:data does). Only unrestricted permissions count here:
 * combining row filters across verbs would need their intersection, so with a filter or a tenant
 * scope in play the answer stays deny. Returns the permission covering the first verb, or NULL.
 * Never allocates. */
static const ag_perm_t *split_grant(const ag_principal_t *p, const ag_request_action_t *a)
{
    unsigned verbs = a->verbs;
    if ((verbs & (verbs - 1)) == 0)
        return NULL; /* a single verb: the main loop already answered */
    bool data = ag_resource_is_data(a->resource);
    const ag_perm_t *first = NULL;
    for (unsigned bit = 1; bit <= AG_VERB_DELETE; bit <<= 1) {
        if (!(verbs & bit))
            continue;
        const ag_perm_t *hit = NULL;
        for (size_t i = 0; i < p->perms.n && !hit; i++) {
            const ag_perm_t *q = &p->perms.items[i];
            if (data && (q->filter || q->scope[AG_PSCOPE_TENANT].kind != AG_GLOB_ANY))
                continue;
            if (ag_perm_covers_action(q, bit, a->resource) && ag_perm_scope_matches(q, a))
                hit = q;
        }
        if (!hit)
            return NULL;
        if (!first)
            first = hit;
    }
    return first;
}

/* Memory: on success out->restriction is a new filter owned by the caller (or NULL). */
int ag_auth_decide_self(const ag_principal_t *p, const ag_request_action_t *a, ag_decision_t *out)
{
    if (!out)
        return AG_EINVAL;
    out->allowed = false;
    out->restriction = NULL;
    out->granted_by = NULL;
    out->buf[0] = '\0';
    out->missing = "a valid action";
    if (!p || !a || !action_valid(a))
        return AG_EINVAL;
    if (a->verbs == AG_VERB_READ && a->resource == AG_RES_PROFILE) {
        out->allowed = true;
        out->missing = NULL;
        return 0;
    }

    bool data = ag_resource_is_data(a->resource);
    bool allowed = false, restricted = false;
    ag_filter_t *acc = NULL;
    int rc = 0;
    for (size_t i = 0; i < p->perms.n; i++) {
        const ag_perm_t *q = &p->perms.items[i];
        if (!ag_perm_covers_action(q, a->verbs, a->resource) || !ag_perm_scope_matches(q, a))
            continue;
        bool tenant_scoped = data && q->scope[AG_PSCOPE_TENANT].kind != AG_GLOB_ANY;
        /* A tenant scope is a row restriction on the tenant key; without the key (or a named
         * tenant) it cannot be enforced, so the permission does not apply. */
        if (tenant_scoped && (!a->tenant || !a->tenant_key))
            continue;
        if (!out->granted_by)
            out->granted_by = q;
        allowed = true;
        if (!data || (!q->filter && !tenant_scoped)) {
            restricted = false;
            break;
        }
        ag_filter_t *r = NULL;
        if ((rc = build_restriction(q, a, tenant_scoped, &r)) < 0)
            goto fail;
        if (!r) {
            restricted = false;
            break;
        }
        if (!restricted) {
            acc = r;
            restricted = true;
        } else {
            int err = 0;
            acc = ag_filter_or(acc, r, &err);
            if (err) {
                acc = NULL;
                rc = err;
                goto fail;
            }
        }
    }
    if (!allowed && (out->granted_by = split_grant(p, a)) != NULL)
        allowed = true; /* unrestricted, so acc is NULL */
    if (!allowed) {
        out->missing = ag_action_describe(a, out->buf, sizeof(out->buf));
        out->granted_by = NULL;
        return 0;
    }
    if (restricted) {
        out->restriction = acc;
    } else {
        ag_filter_free(acc);
    }
    out->allowed = true;
    out->missing = NULL;
    return 0;
fail:
    ag_filter_free(acc);
    out->granted_by = NULL;
    out->missing = ag_action_describe(a, out->buf, sizeof(out->buf));
    return rc;
}

/* Memory: on success out->restriction is a new filter owned by the caller (or NULL). */
int ag_auth_decide(const ag_principal_t *p, const ag_request_action_t *a, ag_decision_t *out)
{
    int rc = ag_auth_decide_self(p, a, out);
    for (const ag_principal_t *b = p ? p->bound : NULL; rc == 0 && out->allowed && b;
         b = b->bound) {
        ag_decision_t up;
        rc = ag_auth_decide_self(b, a, &up);
        if (rc == 0 && !up.allowed) {
            ag_decision_release(out);
            snprintf(out->buf, sizeof(out->buf), "%s (beyond what the token's minter may do now)",
                     up.missing ? up.missing : "(unknown)");
            out->missing = out->buf;
            out->granted_by = NULL;
            return 0;
        }
        int err = 0;
        if (rc == 0) {
            out->restriction = ag_filter_and(out->restriction, up.restriction, &err);
            up.restriction = NULL;
        }
        ag_decision_release(&up);
        if (rc == 0 && err)
            rc = err;
    }
    if (rc) {
        ag_decision_release(out);
        out->granted_by = NULL;
    }
    return rc;
}

void ag_decision_release(ag_decision_t *d)
{
    if (!d)
        return;
    ag_filter_free(d->restriction);
    d->restriction = NULL;
    d->allowed = false;
}

bool ag_principal_holds(const ag_principal_t *p, const ag_perm_list_t *wanted,
                        size_t *first_missing)
{
    for (size_t i = 0; i < wanted->n; i++) {
        for (const ag_principal_t *q = p; q; q = q->bound) {
            if (!ag_perm_list_covers(&q->perms, &wanted->items[i])) {
                if (first_missing)
                    *first_missing = i;
                return false;
            }
        }
    }
    return true;
}
