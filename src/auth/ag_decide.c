#include "ag_decide.h"

#include <stdio.h>

#include "index/ag_filter.h"

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
        for (size_t i = 0; i < ag_principal_perms(p)->n && !hit; i++) {
            const ag_perm_t *q = &ag_principal_perms(p)->items[i];
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
    for (size_t i = 0; i < ag_principal_perms(p)->n; i++) {
        const ag_perm_t *q = &ag_principal_perms(p)->items[i];
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
        for (const ag_principal_t *q = p; q; q = ag_principal_bound(q)) {
            if (!ag_perm_list_covers(ag_principal_perms(q), &wanted->items[i])) {
                if (first_missing)
                    *first_missing = i;
                return false;
            }
        }
    }
    return true;
}

/* ---- tenants ----------------------------------------------------------------------------------
 */

/* {"key": K, "match": {"any": names}} wrapped in must or must_not; takes names. */
static int tenant_filter(const char *key, json_t *names, bool negate, ag_filter_t **out)
{
    *out = NULL;
    json_t *f = json_pack("{s:[{s:s,s:{s:o}}]}", negate ? "must_not" : "must", "key", key, "match",
                          "any", names);
    if (!f)
        return AG_ENOMEM;
    int rc = ag_filter_compile(f, out, NULL);
    json_decref(f);
    return rc;
}

/*
 * A tenant-scoped data permission on a data route (no tenant in the path) grants rows by the
 * tenant key (AND the permission's own filter), ORed into d's restriction:
 *   - once tenants are declared: the rows of the declared, active tenants its pattern matches
 *     right now, `tenant_key in [those]`; with none matching it grants nothing;
 *   - before any is declared (is_tenant as Qdrant's storage hint): the rows whose tenant value
 *     matches the pattern itself.
 * Fail closed on any error.
 */
static int widen_by_tenants(const ag_principal_t *p, const ag_request_action_t *a,
                            const json_t *tenants, ag_decision_t *d)
{
    const ag_perm_list_t *perms = ag_principal_perms(p);
    for (size_t i = 0; perms && i < perms->n; i++) {
        const ag_perm_t *q = &perms->items[i];
        if (q->scope[AG_PSCOPE_TENANT].kind == AG_GLOB_ANY ||
            !ag_perm_covers_action(q, a->verbs, a->resource))
            continue;
        ag_filter_t *f = NULL, *own = NULL;
        int rc;
        if (json_object_size(tenants) == 0) {
            rc = ag_filter_match_glob(a->tenant_key, &q->scope[AG_PSCOPE_TENANT], &f);
        } else {
            json_t *names = json_array();
            if (!names)
                return AG_ENOMEM;
            const char *t;
            json_t *info;
            json_object_foreach((json_t *)tenants, t, info)
            {
                if (!json_is_true(json_object_get(info, "active")))
                    continue;
                ag_request_action_t at = *a;
                at.tenant = t;
                if (ag_perm_scope_matches(q, &at))
                    json_array_append_new(names, json_string(t));
            }
            if (json_array_size(names) == 0) {
                json_decref(names);
                continue;
            }
            rc = tenant_filter(a->tenant_key, names, false, &f);
        }
        if (rc == 0 && q->filter)
            rc = ag_filter_compile(q->filter, &own, NULL);
        int err = 0;
        if (rc == 0 && own)
            f = ag_filter_and(f, own, &err);
        else
            ag_filter_free(own);
        if (rc || err) {
            ag_filter_free(f);
            return rc ? rc : err;
        }
        if (d->allowed) {
            d->restriction = ag_filter_or(d->restriction, f, &err);
            if (err)
                return err;
        } else {
            d->allowed = true;
            d->missing = NULL;
            d->granted_by = q;
            d->restriction = f;
        }
    }
    return 0;
}

/* Hides the points of inactive tenants from every data action (ANDed into the restriction). */
static int hide_inactive(const char *key, const json_t *tenants, ag_decision_t *d)
{
    json_t *names = json_array();
    if (!names)
        return AG_ENOMEM;
    const char *t;
    json_t *info;
    json_object_foreach((json_t *)tenants, t, info)
    {
        if (!json_is_true(json_object_get(info, "active")))
            json_array_append_new(names, json_string(t));
    }
    if (json_array_size(names) == 0) {
        json_decref(names);
        return 0;
    }
    ag_filter_t *f = NULL;
    int rc = tenant_filter(key, names, true, &f);
    if (rc)
        return rc;
    int err = 0;
    d->restriction = ag_filter_and(d->restriction, f, &err);
    return err;
}

/*
 * One principal's decision, tenant scopes widened (see widen_by_tenants); *d as from
 * ag_auth_decide_self. Returns 0 or an internal error (d then denies).
 */
static int decide_one(const ag_principal_t *p, const ag_request_action_t *a, bool data,
                      const json_t *tenants, ag_decision_t *d)
{
    int rc = ag_auth_decide_self(p, a, d);
    if (rc == 0 && data && a->tenant_key && !a->tenant && !(d->allowed && !d->restriction))
        rc = widen_by_tenants(p, a, tenants, d);
    return rc;
}

/*
 * One principal's decision. Verbs add up across permissions (docs/PERMISSIONS.md): when no single
 * permission grants an action of several verbs outright, each verb is decided on its own and the
 * rows the action may touch are those every verb allows — the AND of the per-verb restrictions
 * (each the union of the permissions granting that verb). So `create:data` on tenant acme plus
 * `update:data` on tenant acme grant `write:data` on acme's rows.
 */
static int decide_level(const ag_principal_t *p, const ag_request_action_t *a, bool data,
                        const json_t *tenants, ag_decision_t *d)
{
    int rc = decide_one(p, a, data, tenants, d);
    unsigned verbs = a->verbs & ~(unsigned)AG_VERB_READ;
    if (rc || (d->allowed && !d->restriction) || (verbs & (verbs - 1)) == 0)
        return rc;
    ag_filter_t *rows = NULL;
    bool all = true;
    const ag_perm_t *first = NULL;
    for (unsigned bit = AG_VERB_CREATE; bit <= AG_VERB_DELETE && all && rc == 0; bit <<= 1) {
        if (!(verbs & bit))
            continue;
        ag_request_action_t one = *a;
        one.verbs = (uint8_t)bit; /* read is implied by every other verb */
        ag_decision_t v;
        rc = decide_one(p, &one, data, tenants, &v);
        if (rc == 0 && v.allowed) {
            int err = 0;
            rows = ag_filter_and(rows, v.restriction, &err);
            v.restriction = NULL;
            rc = err;
            if (!first)
                first = v.granted_by;
        } else {
            all = false;
        }
        ag_decision_release(&v);
    }
    if (rc || !all) {
        ag_filter_free(rows);
        return rc; /* d keeps the combined decision (a denial, or the narrower allow) */
    }
    /* Per verb is never narrower than one permission granting all verbs: it replaces it. */
    ag_decision_release(d);
    d->allowed = true;
    d->missing = NULL;
    d->granted_by = first;
    d->restriction = rows;
    return 0;
}

/* The decision for the caller and every minter up its bound chain (docs/SECURITY.md "Minted
 * tokens"): allowed only when each allows; restrictions ANDed. */
static int decide_chain(const ag_principal_t *p, const ag_request_action_t *a, bool data,
                        const json_t *tenants, ag_decision_t *d)
{
    int rc = decide_level(p, a, data, tenants, d);
    for (const ag_principal_t *b = p ? ag_principal_bound(p) : NULL; rc == 0 && d->allowed && b;
         b = ag_principal_bound(b)) {
        ag_decision_t up;
        rc = decide_level(b, a, data, tenants, &up);
        if (rc == 0 && !up.allowed) {
            ag_decision_release(d);
            snprintf(d->buf, sizeof(d->buf), "%.600s (beyond what the token's minter may do now)",
                     up.missing ? up.missing : "(unknown)");
            d->missing = d->buf;
            d->granted_by = NULL;
        } else if (rc == 0) {
            int err = 0;
            d->restriction = ag_filter_and(d->restriction, up.restriction, &err);
            up.restriction = NULL;
            rc = err;
        }
        ag_decision_release(&up);
    }
    return rc;
}

/* Memory: on success out->restriction is a new filter owned by the caller (or NULL). */
int ag_auth_decide(const ag_principal_t *p, const ag_request_action_t *a, ag_decision_t *out)
{
    int rc = decide_chain(p, a, false, NULL, out);
    if (rc) {
        ag_decision_release(out);
        out->granted_by = NULL;
    }
    return rc;
}

/* Memory: on success d->restriction is a new filter owned by the caller (or NULL). */
int ag_decide_request(const ag_principal_t *p, const ag_request_action_t *a, bool data,
                      const json_t *tenants, ag_decision_t *d)
{
    int rc = decide_chain(p, a, data, tenants, d);
    if (rc == 0 && data && a->tenant_key && d->allowed)
        rc = hide_inactive(a->tenant_key, tenants, d);
    if (rc) {
        ag_decision_release(d);
        d->granted_by = NULL;
    }
    return rc;
}
