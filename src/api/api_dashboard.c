/*
 * The dashboard (docs/API.md "Dashboard"): its files, embedded at build time (api/ag_web.h), are
 * public — they hold no data and no secret; everything the page shows comes from the API with
 * the signed-in person's own credential, so it can only show and offer what that credential
 * allows. Served under a strict Content-Security-Policy: scripts, styles and connections from
 * this origin only, no inline code, no frames.
 * Also GET /auth/audit/verify: the audit chain's verification status for the audit view.
 */
#include <stdio.h>

#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "api/ag_web.h"
#include "auth/ag_audit.h"

static const char CSP[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                          "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                          "frame-ancestors 'none'";

static int serve(ag_call_t *call, const char *name)
{
    for (size_t i = 0; i < ag_web_assets_len; i++) {
        const ag_web_asset_t *a = &ag_web_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        call->raw = malloc(a->size + 1); /* owned by the call; the asset ends with a NUL */
        if (!call->raw)
            return AG_ENOMEM;
        memcpy(call->raw, a->data, a->size + 1);
        call->raw_type = a->type;
        call->req->csp = CSP;
        return 0;
    }
    return ag_fail(&call->diag, AG_ENOTFOUND, "not found: the dashboard has no file '%s'", name);
}

static int h_index(ag_call_t *call)
{
    return serve(call, "index.html");
}

static int h_file(ag_call_t *call)
{
    return serve(call, call->params[0]);
}

static int h_audit_verify(ag_call_t *call)
{
    ag_audit_t *log = ag_guard_audit_log(call->api->guard);
    if (!log)
        return ag_fail(&call->diag, AG_EUNAVAILABLE, "the audit log is not open");
    ag_audit_verify_t v;
    memset(&v, 0, sizeof(v));
    int rc = ag_audit_check(log, &v);
    if (rc == AG_EIO)
        return ag_fail(&call->diag, AG_EINTERNAL, "the audit log cannot be read: %s", v.why);
    call->result = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I}", "ok", rc == 0, "records",
                             (json_int_t)v.records, "first_seq", (json_int_t)v.first_seq,
                             "last_seq", (json_int_t)v.last_seq, "files", (json_int_t)v.files,
                             "unkeyed", (json_int_t)v.unkeyed, "recovers", (json_int_t)v.recovers,
                             "node", v.node, "node_changes", (json_int_t)v.node_changes);
    if (call->result && rc != 0) {
        /* Where the chain breaks: a file name inside the storage directory and a line. */
        const char *base = strrchr(v.file, '/');
        json_object_set_new(call->result, "problem",
                            json_pack("{s:s,s:I,s:s}", "file", base ? base + 1 : v.file, "line",
                                      (json_int_t)v.line, "why", v.why));
    }
    return call->result ? 0 : AG_ENOMEM;
}

const ag_route_t ag_routes_dashboard[] = {
    {AG_HTTP_GET, "/dashboard", "read:public", AG_SCOPE_NONE, h_index, false, true},
    {AG_HTTP_GET, "/dashboard/{file}", "read:public", AG_SCOPE_NONE, h_file, false, true},
    {AG_HTTP_GET, "/auth/audit/verify", "read:audit", AG_SCOPE_NONE, h_audit_verify, false, false},
};
const size_t ag_routes_dashboard_len = AG_ARRAY_LEN(ag_routes_dashboard);
