#include "ag_net.h"

#include <arpa/inet.h>
#include <stdio.h>

bool ag_net_parse_addr(const char *text, uint8_t out[16])
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return true;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        memcpy(out, &a6, 16);
        return true;
    }
    return false;
}

bool ag_net_parse(const char *text, ag_net_t *out)
{
    char buf[64];
    if (!text || strlen(text) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", text);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        const char *b = slash + 1;
        if (!*b || strlen(b) > 3)
            return false;
        bits = 0;
        for (; *b; b++) {
            if (*b < '0' || *b > '9')
                return false;
            bits = bits * 10 + (*b - '0');
        }
    }
    if (!ag_net_parse_addr(buf, out->addr))
        return false;
    bool v4 = strchr(buf, ':') == NULL;
    if (bits > (v4 ? 32 : 128))
        return false;
    out->bits = (unsigned)(bits < 0 ? 128 : (v4 ? bits + 96 : bits));
    return true;
}

bool ag_net_contains(const ag_net_t *net, const uint8_t addr[16])
{
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (addr[full] & mask);
}
