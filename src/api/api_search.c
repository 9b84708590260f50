/* Search, query, recommend and groups. */
#include "api/ag_points.h"

const ag_route_t ag_routes_search[] = {
    {AG_HTTP_GET, "/__search_placeholder", "read:data", AG_SCOPE_NONE, NULL, false, false},
};
const size_t ag_routes_search_len = 0;
