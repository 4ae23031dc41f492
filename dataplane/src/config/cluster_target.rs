//! Which cluster or clusters a filter or a route sends to, spelled as Envoy spells it in
//! tcp_proxy and in route actions, checked against the clusters the config defines.

use super::model::*;
use super::reader::{Node, Result};

/// Checks that a filter or route names a cluster that exists.
pub fn check_cluster(node: Node<'_>, name: &str, clusters: &[ClusterConfig]) -> Result<()> {
    if clusters.iter().any(|c| c.name == name) {
        Ok(())
    } else {
        Err(node.error(format!(
            "unknown cluster \"{name}\" (not in static_resources.clusters)"
        )))
    }
}

/// `cluster: NAME` or `weighted_clusters: {clusters: [{name, weight}]}`, as tcp_proxy and route
/// actions both spell it. `weighted_unsupported` lists Envoy fields of `weighted_clusters` that
/// exist in this context but sluice does not implement.
pub fn parse_cluster_target(
    node: Node<'_>,
    clusters: &[ClusterConfig],
    weighted_unsupported: &[&str],
) -> Result<TcpRoute> {
    Ok(match (node.get("cluster"), node.get("weighted_clusters")) {
        (Some(c), None) => {
            let name = c.node().as_str()?;
            check_cluster(c.node(), name, clusters)?;
            TcpRoute::Cluster(name.to_string())
        }
        (None, Some(w)) => {
            let w = w.node();
            w.expect_fields(&["clusters"], weighted_unsupported)?;
            let list = w.require("clusters")?;
            let mut out = Vec::new();
            for item in list.node().items()? {
                let item = item.node();
                item.expect_fields(&["name", "weight"], &["metadata_match"])?;
                let n = item.require("name")?;
                let name = n.node().as_str()?;
                check_cluster(n.node(), name, clusters)?;
                let weight = match item.get("weight") {
                    Some(x) => x.node().as_u32()?,
                    None => 0,
                };
                out.push(WeightedCluster {
                    name: name.to_string(),
                    weight,
                });
            }
            if out.iter().all(|c| c.weight == 0) {
                return Err(list
                    .node()
                    .error("at least one weighted cluster needs a weight above 0"));
            }
            TcpRoute::Weighted(out)
        }
        (Some(_), Some(_)) => {
            return Err(node.error("give either cluster or weighted_clusters, not both"))
        }
        (None, None) => return Err(node.error("one of cluster or weighted_clusters is required")),
    })
}
