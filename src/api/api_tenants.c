/* Placeholder: filled in by the access-management work (issue 5). */
#include "api/ag_api.h"

const ag_route_t ag_routes_tenants[] = {
    {AG_HTTP_GET, "/__placeholder_tenants", "read:profile", AG_SCOPE_NONE, NULL, false, false},
};
const size_t ag_routes_tenants_len = 0;
