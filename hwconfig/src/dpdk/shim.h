/* The DPDK calls sluice makes, as plain functions: many of DPDK's fast-path calls are static
 * inline in its headers, which bindgen cannot bind, so shim.c wraps them. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp);
void sluice_pktmbuf_free(struct rte_mbuf *m);
void *sluice_mbuf_data(struct rte_mbuf *m);
uint16_t sluice_mbuf_data_len(const struct rte_mbuf *m);
char *sluice_mbuf_append(struct rte_mbuf *m, uint16_t len);
int sluice_errno(void);
