/*
 * ag_net.h — IP addresses and address blocks as settings name them ("192.0.2.7", "10.0.0.0/8",
 * "2001:db8::1", "fd00::/8"): for trusted proxies and for keys' allowed addresses. IPv4 is held
 * as the IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one comparison serves both families.
 */
#ifndef AG_NET_H
#define AG_NET_H

#include "ag_base.h"

typedef struct ag_net {
    uint8_t addr[16];
    unsigned bits; /* prefix length over the 128-bit form */
} ag_net_t;

/* A bare IPv4 or IPv6 address (no port, no brackets) into out. */
bool ag_net_parse_addr(const char *text, uint8_t out[16]);
/* An address or an address/prefix block; false for anything else (a bad prefix included). */
bool ag_net_parse(const char *text, ag_net_t *out);
/* Is addr inside the block? */
bool ag_net_contains(const ag_net_t *net, const uint8_t addr[16]);

/* A list of blocks from a setting ("10.0.0.0/8, 192.0.2.7"): trusted proxies. */
#define AG_NET_LIST_MAX 32
typedef struct ag_net_list {
    ag_net_t net[AG_NET_LIST_MAX];
    size_t n;
} ag_net_list_t;

/* Parses a comma/space separated list (NULL = empty) into *out; AG_ECONFIG naming `setting` and
 * the bad entry otherwise. */
int ag_net_list_parse(ag_net_list_t *out, const char *list, const char *setting, ag_diag_t *diag);
/* Is the address text inside one of the list's blocks? */
bool ag_net_list_has(const ag_net_list_t *l, const char *text);
/* The client behind trusted proxies (docs/SECURITY.md): when peer is in `proxies` and xff (an
 * X-Forwarded-For value, NULL = none) names one, out receives it; out is left alone otherwise. */
void ag_net_client(const ag_net_list_t *proxies, const char *peer, const char *xff, char *out,
                   size_t len);

#endif
