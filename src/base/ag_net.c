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

int ag_net_list_parse(ag_net_list_t *out, const char *list, const char *setting, ag_diag_t *diag)
{
    out->n = 0;
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ");
        char item[64];
        if (len >= sizeof(item) || out->n == AG_NET_LIST_MAX)
            return ag_fail(diag, AG_ECONFIG,
                           "%s: at most %d entries of addresses or CIDR "
                           "blocks",
                           setting, AG_NET_LIST_MAX);
        memcpy(item, p, len);
        item[len] = '\0';
        if (!ag_net_parse(item, &out->net[out->n]))
            return ag_fail(diag, AG_ECONFIG, "%s: '%s' is not an IP address or CIDR block", setting,
                           item);
        out->n++;
        p += len;
    }
    return 0;
}

bool ag_net_list_has(const ag_net_list_t *l, const char *text)
{
    uint8_t addr[16];
    if (!l->n || !ag_net_parse_addr(text, addr))
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (ag_net_contains(&l->net[i], addr))
            return true;
    return false;
}

/*
 * X-Forwarded-For is read from the right (each proxy appends the address it saw), skipping
 * trusted proxies; the first other address is the client. Entries left of it were written by
 * the client and are never believed. Without the header, or when an entry is not an address, the
 * peer itself is the client.
 */
void ag_net_client(const ag_net_list_t *proxies, const char *peer, const char *xff, char *out,
                   size_t len)
{
    if (!xff || !ag_net_list_has(proxies, peer))
        return;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", xff);
    size_t n = strlen(buf);
    while (n > 0) {
        size_t end = n;
        while (end > 0 && (buf[end - 1] == ' ' || buf[end - 1] == '\t'))
            end--;
        size_t start = end;
        while (start > 0 && buf[start - 1] != ',')
            start--;
        n = start > 0 ? start - 1 : 0;
        while (start < end && (buf[start] == ' ' || buf[start] == '\t'))
            start++;
        buf[end] = '\0';
        const char *entry = buf + start;
        uint8_t addr[16];
        if (!ag_net_parse_addr(entry, addr))
            return; /* not an address: keep the peer */
        bool trusted = ag_net_list_has(proxies, entry);
        if (!trusted || n == 0) {
            snprintf(out, len, "%s", entry);
            if (!trusted)
                return;
        }
    }
}
