/* gateway: connections per client address. One address (a /64 for IPv6, which one host
 * holds whole) may hold at most [gateway] max_connections_per_ip sessions, so a single
 * client cannot take every slot of max_connections from everybody else. A small chained
 * hash table of the addresses with sessions, on the loop only. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gateway/session.h"

#define PEER_BUCKETS 4096 /* a power of two */

typedef struct gw_peer {
    struct gw_peer *next;
    uint8_t key[VAULT_IP_BYTES];
    unsigned sessions;
} gw_peer;

static gw_peer **slot(gw_net *net, const uint8_t key[VAULT_IP_BYTES])
{
    uint64_t h = 0;
    /* keyed, so that nobody can choose addresses that share a bucket */
    crypto_shorthash((unsigned char *)&h, key, VAULT_IP_BYTES, net->peer_hash_key);
    gw_peer **pp = &net->peers[h & (PEER_BUCKETS - 1)];
    while (*pp && memcmp((*pp)->key, key, VAULT_IP_BYTES) != 0)
        pp = &(*pp)->next;
    return pp;
}

bool gw_peer_admit(gw_net *net, const uint8_t ip[VAULT_IP_BYTES])
{
    unsigned max = net->cfg->gateway.max_connections_per_ip;
    if (!net->peers) {
        net->peers = calloc(PEER_BUCKETS, sizeof *net->peers);
        if (!net->peers)
            return max == 0;
        crypto_shorthash_keygen(net->peer_hash_key);
    }
    uint8_t key[VAULT_IP_BYTES];
    vault_ip_block(ip, key);
    gw_peer **pp = slot(net, key);
    if (!*pp) {
        gw_peer *p = calloc(1, sizeof *p);
        if (!p)
            return max == 0;
        memcpy(p->key, key, sizeof key);
        *pp = p;
    }
    if (max && (*pp)->sessions >= max)
        return false;
    (*pp)->sessions++;
    return true;
}

void gw_peer_release(gw_net *net, const uint8_t ip[VAULT_IP_BYTES])
{
    if (!net->peers)
        return;
    uint8_t key[VAULT_IP_BYTES];
    vault_ip_block(ip, key);
    gw_peer **pp = slot(net, key), *p = *pp;
    if (!p)
        return;
    if (p->sessions > 1) {
        p->sessions--;
        return;
    }
    *pp = p->next;
    free(p);
}

void gw_peers_free(gw_net *net)
{
    if (!net->peers)
        return;
    for (size_t b = 0; b < PEER_BUCKETS; b++)
        while (net->peers[b]) {
            gw_peer *p = net->peers[b];
            net->peers[b] = p->next;
            free(p);
        }
    free(net->peers);
    net->peers = NULL;
}
