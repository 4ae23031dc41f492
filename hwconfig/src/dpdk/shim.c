#include "shim.h"

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

void sluice_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void *sluice_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

uint16_t sluice_mbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }

char *sluice_mbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }

int sluice_errno(void) { return rte_errno; }

void sluice_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n) { rte_pktmbuf_free_bulk(m, n); }

int sluice_port_info(uint16_t port, struct sluice_port_info *out) {
    struct rte_eth_dev_info info;
    int r = rte_eth_dev_info_get(port, &info);
    if (r != 0)
        return r;
    out->max_rx_queues = info.max_rx_queues;
    out->max_tx_queues = info.max_tx_queues;
    out->reta_size = info.reta_size;
    out->hash_key_size = info.hash_key_size;
    out->rss_offloads = info.flow_type_rss_offloads;
    out->min_mtu = info.min_mtu;
    out->max_mtu = info.max_mtu;
    return 0;
}

uint64_t sluice_rss_hf_wanted(void) {
    return RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_IPV6 |
           RTE_ETH_RSS_NONFRAG_IPV6_TCP;
}

int sluice_port_configure(uint16_t port, uint16_t rxq, uint16_t txq, const uint8_t *key,
                          uint8_t key_len, uint64_t rss_hf, uint16_t mtu) {
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rxmode.mtu = mtu;
    if (rss_hf != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = (uint8_t *)key;
        conf.rx_adv_conf.rss_conf.rss_key_len = key_len;
        conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    int r = rte_eth_dev_configure(port, rxq, txq, &conf);
    if (r != 0)
        return r;
    r = rte_eth_dev_set_mtu(port, mtu);
    /* Devices without an MTU setting carry standard frames; anything else is an error. */
    if (r == -ENOTSUP && mtu == RTE_ETHER_MTU)
        r = 0;
    return r;
}

int sluice_port_reta(uint16_t port, uint16_t *reta, uint16_t reta_size) {
    struct rte_eth_rss_reta_entry64 groups[RTE_ETH_RSS_RETA_SIZE_512 / RTE_ETH_RETA_GROUP_SIZE];
    unsigned int n = (reta_size + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE;
    if (n == 0 || n > sizeof(groups) / sizeof(groups[0]))
        return -EINVAL;
    memset(groups, 0, sizeof(groups));
    for (unsigned int g = 0; g < n; g++)
        groups[g].mask = UINT64_MAX;
    int r = rte_eth_dev_rss_reta_query(port, groups, reta_size);
    if (r != 0)
        return r;
    for (unsigned int i = 0; i < reta_size; i++)
        reta[i] = groups[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
    return 0;
}

int sluice_port_rss_key(uint16_t port, uint8_t *key, uint8_t cap) {
    struct rte_eth_rss_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rss_key = key;
    conf.rss_key_len = cap;
    int r = rte_eth_dev_rss_hash_conf_get(port, &conf);
    if (r != 0)
        return r;
    return conf.rss_key_len;
}

int sluice_port_mac(uint16_t port, uint8_t *mac) {
    struct rte_ether_addr a;
    int r = rte_eth_macaddr_get(port, &a);
    if (r != 0)
        return r;
    memcpy(mac, a.addr_bytes, 6);
    return 0;
}

int sluice_port_link(uint16_t port, int *up, uint32_t *speed_mbps) {
    struct rte_eth_link link;
    int r = rte_eth_link_get_nowait(port, &link);
    if (r != 0)
        return r;
    *up = link.link_status;
    *speed_mbps = link.link_speed;
    return 0;
}
