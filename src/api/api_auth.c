/* Placeholder: filled in by the access-management work (issue 5). */
#include "api/ag_api.h"

const ag_route_t ag_routes_auth[] = {
    {AG_HTTP_GET, "/__placeholder_auth", "read:profile", AG_SCOPE_NONE, NULL, false, false},
};
const size_t ag_routes_auth_len = 0;
