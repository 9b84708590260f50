#include "ag_perm.h"

#include <stdio.h>

#include "ag_grow.h"
#include "index/ag_filter.h"
#include "json/ag_json.h"

typedef struct res_info {
    const char *name;
    int parent;
    unsigned scopes;
} res_info_t;

static const res_info_t resources[AG_RES_COUNT] = {[AG_RES_NONE] = {NULL, AG_RES_NONE, 0},
#define AG_RES_INFO(e, name, parent, scopes) [e] = {name, parent, scopes},
                                                   AG_RESOURCES(AG_RES_INFO)
#undef AG_RES_INFO
};

static const char *const scope_names[AG_PSCOPE_COUNT] = {
    [AG_PSCOPE_COLLECTION] = "collection",
    [AG_PSCOPE_TENANT] = "tenant",
    [AG_PSCOPE_ROLE] = "role",
    [AG_PSCOPE_USER] = "user",
    [AG_PSCOPE_VERBOSITY] = "verbosity",
};

static bool res_valid(int res)
{
    return res > AG_RES_NONE && res < AG_RES_COUNT;
}

static bool res_internal(int res)
{
    return res_valid(res) && resources[res].parent != AG_RES_NONE;
}

const char *ag_resource_name(int res)
{
    if (res == AG_RES_ANY)
        return "*";
    return res_valid(res) ? resources[res].name : NULL;
}

int ag_resource_lookup(const char *name)
{
    if (!name)
        return AG_RES_NONE;
    for (int r = AG_RES_NONE + 1; r < AG_RES_COUNT; r++)
        if (!res_internal(r) && strcmp(resources[r].name, name) == 0)
            return r;
    if (strcmp(name, "cluster") == 0) /* the name before the Qdrant Cloud catalog's plural */
        return AG_RES_CLUSTER;
    return AG_RES_NONE;
}

bool ag_resource_is_management(int res)
{
    switch (res) {
    case AG_RES_BACKUPS:
    case AG_RES_BACKUP_SCHEDULES:
    case AG_RES_CLUSTER:
    case AG_RES_NODES:
    case AG_RES_ROLES:
    case AG_RES_USERS:
    case AG_RES_API_KEYS:
    case AG_RES_MANAGEMENT_KEYS:
    case AG_RES_INVITES:
    case AG_RES_ACCOUNT:
    case AG_RES_PROFILE:
    case AG_RES_AUDIT:
    case AG_RES_HYBRID_CLOUD:
    case AG_RES_PAYMENT:
        return true;
    default:
        return false;
    }
}

bool ag_resource_is_data(int res)
{
    return res == AG_RES_DATA || res == AG_RES_POINTS;
}

int ag_resource_public(int res)
{
    return res_internal(res) ? resources[res].parent : res;
}

/* --- verbs ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned verbs;
} verb_words[] = {
    {"read", AG_VERB_READ},     {"create", AG_VERB_CREATE}, {"update", AG_VERB_UPDATE},
    {"delete", AG_VERB_DELETE}, {"write", AG_VERB_WRITE},   {"manage", AG_VERB_MANAGE},
};

static unsigned verb_lookup(const char *s, size_t n)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(verb_words); i++)
        if (strlen(verb_words[i].name) == n && memcmp(verb_words[i].name, s, n) == 0)
            return verb_words[i].verbs;
    return 0;
}

/* --- permissions ------------------------------------------------------------------------- */

void ag_perm_init(ag_perm_t *p, unsigned verbs, int resource)
{
    memset(p, 0, sizeof(*p));
    p->verbs = (uint8_t)((verbs & AG_VERB_MANAGE) | AG_VERB_READ);
    p->resource = (uint8_t)resource;
}

int ag_perm_set_scope(ag_perm_t *p, ag_pscope_t scope, const char *pattern, bool literal)
{
    ag_glob_t g;
    size_t len = pattern ? strlen(pattern) : 0;
    int rc =
        literal ? ag_glob_compile_literal(pattern, len, &g) : ag_glob_compile(pattern, len, &g);
    if (rc < 0)
        return rc;
    ag_glob_release(&p->scope[scope]);
    p->scope[scope] = g;
    return 0;
}

void ag_perm_release(ag_perm_t *p)
{
    if (!p)
        return;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++)
        ag_glob_release(&p->scope[s]);
    json_decref(p->filter);
    memset(p, 0, sizeof(*p));
}

/* Memory: *dst owns copies of src's patterns and a new reference to its filter. */
int ag_perm_copy(const ag_perm_t *src, ag_perm_t *dst)
{
    memset(dst, 0, sizeof(*dst));
    dst->verbs = src->verbs;
    dst->resource = src->resource;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++) {
        if (ag_glob_copy(&src->scope[s], &dst->scope[s]) < 0) {
            ag_perm_release(dst);
            return AG_ENOMEM;
        }
    }
    dst->filter = json_incref(src->filter);
    return 0;
}

static const char *or_default(const char *path)
{
    return path && *path ? path : "permission";
}

static int parse_action(const json_t *obj, const char *path, ag_perm_t *out, ag_diag_t *diag)
{
    json_t *a = json_object_get(obj, "action");
    if (!a)
        return ag_fail(diag, AG_EINVAL, "%s.action: missing (expected \"<verb>:<resource>\")",
                       path);
    if (!json_is_string(a))
        return ag_fail(diag, AG_EINVAL, "%s.action: expected a string \"<verb>:<resource>\"", path);
    const char *s = json_string_value(a);
    size_t n = json_string_length(a);
    const char *colon = memchr(s, ':', n);
    if (!colon || memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) || strlen(s) != n)
        return ag_fail(diag, AG_EINVAL, "%s.action: expected \"<verb>:<resource>\"", path);
    size_t vlen = (size_t)(colon - s);
    unsigned verbs = verb_lookup(s, vlen);
    if (!verbs)
        return ag_fail(diag, AG_EINVAL,
                       "%s.action: unknown verb '%.*s' (expected read, create, update, delete, "
                       "write or manage)",
                       path, (int)AG_MIN(vlen, 32), s);
    int res = ag_resource_lookup(colon + 1);
    if (res == AG_RES_NONE)
        return ag_fail(diag, AG_EINVAL, "%s.action: unknown resource '%.64s'", path, colon + 1);
    if (res == AG_RES_CLUSTER_DATA && verbs != AG_VERB_READ && verbs != AG_VERB_WRITE)
        return ag_fail(diag, AG_EINVAL, "%s.action: cluster_data takes only read or write", path);
    ag_perm_init(out, verbs, res);
    return 0;
}

static int parse_filter(const json_t *obj, const char *path, ag_perm_t *out, ag_diag_t *diag)
{
    json_t *f = json_object_get(obj, "filter");
    if (!f)
        return 0;
    if (!ag_resource_is_data(out->resource))
        return ag_fail(diag, AG_EINVAL, "%s.filter: only data permissions take a filter", path);
    if (!json_is_object(f))
        return ag_fail(diag, AG_EINVAL, "%s.filter: expected a filter object", path);
    ag_filter_t *compiled = NULL;
    ag_diag_t fd = {{0}};
    int rc = ag_filter_compile(f, &compiled, &fd);
    if (rc < 0)
        return rc == AG_ENOMEM ? rc : ag_fail(diag, rc, "%s.filter: %s", path, fd.msg);
    /* Kept as JSON: the decision compiles a fresh copy into the row restriction it returns, and
     * anti-escalation compares filters structurally. */
    ag_filter_free(compiled);
    out->filter = json_deep_copy(f);
    return out->filter ? 0 : AG_ENOMEM;
}

/* Memory: on success *out owns compiled patterns and a filter copy (ag_perm_release). */
int ag_perm_parse(const json_t *obj, const char *path, ag_perm_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    path = or_default(path);
    if (!json_is_object(obj))
        return ag_fail(diag, AG_EINVAL, "%s: expected a permission object", path);
    int rc = AG_JSON_ONLY(obj, path, diag, "action", "collection", "tenant", "role", "user",
                          "verbosity", "filter");
    if (rc < 0)
        return rc;
    if ((rc = parse_action(obj, path, out, diag)) < 0)
        return rc;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++) {
        json_t *v = json_object_get(obj, scope_names[s]);
        if (!v)
            continue;
        if (!(resources[out->resource].scopes & AG_PSCOPE_BIT(s))) {
            rc = ag_fail(diag, AG_EINVAL, "%s.%s: not a scope of %s", path, scope_names[s],
                         resources[out->resource].name);
            goto fail;
        }
        if (!json_is_string(v)) {
            rc = ag_fail(diag, AG_EINVAL, "%s.%s: expected a string pattern", path, scope_names[s]);
            goto fail;
        }
        rc = ag_glob_compile(json_string_value(v), json_string_length(v), &out->scope[s]);
        if (rc == AG_EINVAL)
            rc = ag_fail(diag, rc, "%s.%s: a pattern must be 1 to %d bytes without NUL", path,
                         scope_names[s], AG_GLOB_MAX_LEN);
        if (rc < 0)
            goto fail;
    }
    if ((rc = parse_filter(obj, path, out, diag)) < 0)
        goto fail;
    return 0;
fail:
    ag_perm_release(out);
    return rc;
}

/* --- lists ------------------------------------------------------------------------------- */

/* Memory: the list owns p's contents from here on, also on failure (released then). */
int ag_perm_list_push(ag_perm_list_t *list, ag_perm_t *p)
{
    if (list->n >= AG_PERM_MAX) {
        ag_perm_release(p);
        return AG_EINVAL;
    }
    if (AG_GROW(list->items, list->cap, list->n + 1, 4, AG_PERM_MAX) != 0) {
        ag_perm_release(p);
        return AG_ENOMEM;
    }
    list->items[list->n++] = *p;
    memset(p, 0, sizeof(*p));
    return 0;
}

static void truncate_list(ag_perm_list_t *list, size_t n)
{
    while (list->n > n)
        ag_perm_release(&list->items[--list->n]);
}

/* Memory: appends deep copies owned by list. */
int ag_perm_list_extend(ag_perm_list_t *list, const ag_perm_list_t *src)
{
    size_t n0 = list->n;
    for (size_t i = 0; i < src->n; i++) {
        ag_perm_t p;
        int rc = ag_perm_copy(&src->items[i], &p);
        if (rc == 0)
            rc = ag_perm_list_push(list, &p);
        if (rc < 0) {
            truncate_list(list, n0);
            return rc;
        }
    }
    return 0;
}

/* Memory: appends parsed permissions owned by list. */
int ag_perm_list_parse(const json_t *arr, const char *path, ag_perm_list_t *list, ag_diag_t *diag)
{
    path = path && *path ? path : "permissions";
    if (!json_is_array(arr))
        return ag_fail(diag, AG_EINVAL, "%s: expected an array of permissions", path);
    if (json_array_size(arr) > AG_PERM_MAX - list->n)
        return ag_fail(diag, AG_EINVAL, "%s: more than %d permissions", path, AG_PERM_MAX);
    size_t n0 = list->n;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[300];
        snprintf(sub, sizeof(sub), "%.250s[%zu]", path, i);
        ag_perm_t p;
        int rc = ag_perm_parse(json_array_get(arr, i), sub, &p, diag);
        if (rc == 0)
            rc = ag_perm_list_push(list, &p);
        if (rc < 0) {
            truncate_list(list, n0);
            return rc;
        }
    }
    return 0;
}

void ag_perm_list_release(ag_perm_list_t *list)
{
    if (!list)
        return;
    truncate_list(list, 0);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

/* --- rendering --------------------------------------------------------------------------- */

static int render_one(const ag_perm_t *p, const char *verb, json_t *arr)
{
    char action[64];
    snprintf(action, sizeof(action), "%s:%s", verb, ag_resource_name(p->resource));
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "action", json_string(action)) < 0)
        goto fail;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++) {
        if (p->scope[s].kind == AG_GLOB_ANY)
            continue;
        if (json_object_set_new(o, scope_names[s], json_string(p->scope[s].text)) < 0)
            goto fail;
    }
    if (p->filter && json_object_set(o, "filter", p->filter) < 0)
        goto fail;
    if (json_array_append_new(arr, o) < 0)
        return AG_ENOMEM;
    return 0;
fail:
    json_decref(o);
    return AG_ENOMEM;
}

/* Memory: appends new objects owned by arr. */
int ag_perm_to_json(const ag_perm_t *p, json_t *arr)
{
    unsigned v = p->verbs & AG_VERB_MANAGE;
    unsigned rest = v & ~(unsigned)AG_VERB_READ;
    if (rest == 0)
        return render_one(p, "read", arr);
    if (v == AG_VERB_MANAGE)
        return render_one(p, "manage", arr);
    int rc = 0;
    if ((rest & AG_VERB_WRITE) == AG_VERB_WRITE) {
        rc = render_one(p, "write", arr);
        rest &= ~(unsigned)AG_VERB_WRITE;
    }
    if (rc == 0 && (rest & AG_VERB_CREATE))
        rc = render_one(p, "create", arr);
    if (rc == 0 && (rest & AG_VERB_UPDATE))
        rc = render_one(p, "update", arr);
    if (rc == 0 && (rest & AG_VERB_DELETE))
        rc = render_one(p, "delete", arr);
    return rc;
}

/* --- coverage ---------------------------------------------------------------------------- */

static bool cluster_data_covers(unsigned have, unsigned verbs, int res)
{
    switch (res) {
    case AG_RES_COLLECTIONS:
    case AG_RES_PAYLOAD_INDEXES:
        return verbs == AG_VERB_READ;
    case AG_RES_DATA:
    case AG_RES_POINTS:
        return (verbs & ~have) == 0;
    default:
        return false;
    }
}

bool ag_perm_covers_action(const ag_perm_t *p, unsigned verbs, int res)
{
    if (verbs == 0 || (verbs & ~(unsigned)AG_VERB_MANAGE))
        return false;
    if (p->resource == AG_RES_CLUSTER_DATA)
        return cluster_data_covers(p->verbs, verbs, res);
    if ((verbs & ~(unsigned)p->verbs) != 0)
        return false;
    if (p->resource == AG_RES_ANY)
        return true;
    return res_valid(res) && (p->resource == res || p->resource == resources[res].parent);
}

static bool scope_value_matches(const ag_glob_t *g, const char *v, bool list)
{
    if (g->kind == AG_GLOB_ANY)
        return true;
    if (!v)
        return list;
    return ag_glob_match_str(g, v);
}

bool ag_perm_scope_matches(const ag_perm_t *p, const ag_request_action_t *a)
{
    bool list = (a->flags & AG_ACTF_LIST) != 0;
    return scope_value_matches(&p->scope[AG_PSCOPE_COLLECTION], a->collection, list) &&
           scope_value_matches(&p->scope[AG_PSCOPE_TENANT], a->tenant, list) &&
           scope_value_matches(&p->scope[AG_PSCOPE_ROLE], a->role, list) &&
           scope_value_matches(&p->scope[AG_PSCOPE_USER], a->user, list) &&
           scope_value_matches(&p->scope[AG_PSCOPE_VERBOSITY], a->verbosity, list);
}

/* Does q alone cover one verb bit of wanted (resource, scopes, filter)? */
static bool perm_covers_bit(const ag_perm_t *q, unsigned bit, int res, const ag_perm_t *w)
{
    if (!ag_perm_covers_action(q, bit, res))
        return false;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++)
        if (!ag_glob_covers(&q->scope[s], &w->scope[s]))
            return false;
    if (!ag_resource_is_data(res) || !q->filter)
        return true;
    return w->filter && json_equal(q->filter, w->filter);
}

/* Every verb of (verbs, res) with w's scopes is covered, each verb by some held permission.
 * Checking verb by verb is sound: a permission with verbs V grants exactly what one permission
 * per verb in V would. */
static bool list_covers(const ag_perm_list_t *held, unsigned verbs, int res, const ag_perm_t *w)
{
    for (unsigned bit = 1; bit <= AG_VERB_DELETE; bit <<= 1) {
        if (!(verbs & bit))
            continue;
        if (bit == AG_VERB_READ && res == AG_RES_PROFILE)
            continue; /* granted to every principal */
        bool ok = false;
        for (size_t i = 0; i < held->n && !ok; i++)
            ok = perm_covers_bit(&held->items[i], bit, res, w);
        if (!ok)
            return false;
    }
    return true;
}

bool ag_perm_list_covers(const ag_perm_list_t *held, const ag_perm_t *wanted)
{
    if (wanted->resource == AG_RES_ANY) {
        /* Only root's every-resource permission holds root's every-resource permission. */
        for (size_t i = 0; i < held->n; i++)
            if (held->items[i].resource == AG_RES_ANY &&
                (wanted->verbs & ~(unsigned)held->items[i].verbs) == 0)
                return true;
        return false;
    }
    if (wanted->resource == AG_RES_CLUSTER_DATA)
        return list_covers(held, AG_VERB_READ, AG_RES_COLLECTIONS, wanted) &&
               list_covers(held, wanted->verbs, AG_RES_DATA, wanted);
    if (!res_valid(wanted->resource))
        return false;
    return list_covers(held, wanted->verbs, wanted->resource, wanted);
}

/* --- actions ----------------------------------------------------------------------------- */

int ag_action_decl_check(const ag_action_decl_t *d, const char *route, ag_diag_t *diag)
{
    route = route ? route : "route";
    if (d->flags & AG_ACTF_PUBLIC) {
        if (d->verbs != 0 || d->resource != AG_RES_NONE || d->flags != AG_ACTF_PUBLIC)
            return ag_fail(diag, AG_ECONFIG, "%.200s: a public route declares no action", route);
        return 0;
    }
    if (d->verbs == 0 || (d->verbs & ~(unsigned)AG_VERB_MANAGE))
        return ag_fail(diag, AG_ECONFIG, "%.200s: route declares no valid verb", route);
    if (!res_valid(d->resource) || d->resource == AG_RES_CLUSTER_DATA)
        return ag_fail(diag, AG_ECONFIG, "%.200s: route declares no valid resource", route);
    if (d->flags & ~(unsigned)AG_ACTF_LIST)
        return ag_fail(diag, AG_ECONFIG, "%.200s: route declares unknown flags", route);
    return 0;
}

int ag_action_decl_parse(const char *action, const char *route, ag_action_decl_t *out,
                         ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    route = route ? route : "route";
    const char *colon = action ? strchr(action, ':') : NULL;
    if (!colon)
        return ag_fail(diag, AG_ECONFIG, "%.200s declares no action", route);
    if (strcmp(action, "read:public") == 0) {
        out->flags = AG_ACTF_PUBLIC;
        return 0;
    }
    unsigned verbs = verb_lookup(action, (size_t)(colon - action));
    int res = AG_RES_NONE;
    for (int r = AG_RES_NONE + 1; r < AG_RES_COUNT; r++)
        if (strcmp(resources[r].name, colon + 1) == 0)
            res = r;
    if (!verbs || res == AG_RES_NONE)
        return ag_fail(diag, AG_ECONFIG, "%.200s declares a malformed action '%.64s'", route,
                       action);
    out->verbs = (uint8_t)verbs;
    out->resource = (uint8_t)res;
    return ag_action_decl_check(out, route, diag);
}

void ag_request_action_init(ag_request_action_t *a, const ag_action_decl_t *d)
{
    memset(a, 0, sizeof(*a));
    a->verbs = d->verbs;
    a->resource = d->resource;
    a->flags = d->flags;
}

static const char *verbs_word(unsigned v)
{
    unsigned rest = v & ~(unsigned)AG_VERB_READ;
    if (rest == 0)
        return "read";
    if ((v & AG_VERB_MANAGE) == AG_VERB_MANAGE)
        return "manage";
    if (rest == AG_VERB_WRITE)
        return "write";
    if (rest == AG_VERB_CREATE)
        return "create";
    if (rest == AG_VERB_UPDATE)
        return "update";
    if (rest == AG_VERB_DELETE)
        return "delete";
    return "manage"; /* a combination only manage names in one word */
}

const char *ag_action_describe(const ag_request_action_t *a, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
    const char *res = ag_resource_name(ag_resource_public(a->resource));
    int n = snprintf(buf, len, "%s:%s", verbs_word(a->verbs), res ? res : "?");
    const struct {
        const char *label;
        const char *value;
    } parts[] = {
        {"collection", a->collection}, {"tenant", a->tenant}, {"role", a->role}, {"user", a->user},
        {"verbosity", a->verbosity},
    };
    bool first = true;
    for (size_t i = 0; i < AG_ARRAY_LEN(parts); i++) {
        if (!parts[i].value || n < 0 || (size_t)n >= len)
            continue;
        n += snprintf(buf + n, len - (size_t)n, "%s%s '%.255s'", first ? " on " : ", ",
                      parts[i].label, parts[i].value);
        first = false;
    }
    return buf;
}
