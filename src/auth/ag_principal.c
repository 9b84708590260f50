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
