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

#endif
