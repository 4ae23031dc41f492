/* The DPDK calls sluice makes, as plain functions: many of DPDK's fast-path calls are static
 * inline in its headers, which bindgen cannot bind, so shim.c wraps them. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <string.h>
#include <errno.h>

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp);
void sluice_pktmbuf_free(struct rte_mbuf *m);
void *sluice_mbuf_data(struct rte_mbuf *m);
uint16_t sluice_mbuf_data_len(const struct rte_mbuf *m);
char *sluice_mbuf_append(struct rte_mbuf *m, uint16_t len);
int sluice_errno(void);
void sluice_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n);

/* What a device offers, in the few fields sluice reads. */
struct sluice_port_info {
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint16_t reta_size;
    uint8_t hash_key_size;
    uint64_t rss_offloads;
    uint16_t min_mtu;
    uint16_t max_mtu;
};
int sluice_port_info(uint16_t port, struct sluice_port_info *out);
/* Configures `port`: with rss_hf != 0, RSS over those hash types with `key`; sets the MTU.
 * Returns 0 or a negative errno. */
int sluice_port_configure(uint16_t port, uint16_t rxq, uint16_t txq, const uint8_t *key,
                          uint8_t key_len, uint64_t rss_hf, uint16_t mtu);
/* The hash types sluice asks for: IPv4/IPv6 and their TCP flows. */
uint64_t sluice_rss_hf_wanted(void);
/* The redirection table as the device has it: fills `reta` (reta_size entries). */
int sluice_port_reta(uint16_t port, uint16_t *reta, uint16_t reta_size);
/* The RSS key in use; returns its length or a negative errno. */
int sluice_port_rss_key(uint16_t port, uint8_t *key, uint8_t cap);
int sluice_port_mac(uint16_t port, uint8_t *mac);
int sluice_port_link(uint16_t port, int *up, uint32_t *speed_mbps);
