//! Which cluster or clusters a filter or a route sends to, spelled as Envoy spells it in
//! tcp_proxy and in route actions, checked against the clusters the config defines.

use super::cluster_extras::{scalar_map, LB_NAMESPACE};
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
        (None, Some(w)) => TcpRoute::Weighted(parse_weighted(
            w.node(),
            clusters,
            weighted_unsupported,
            &["metadata_match"],
        )?),
        (Some(_), Some(_)) => {
            return Err(node.error("give either cluster or weighted_clusters, not both"))
        }
        (None, None) => return Err(node.error("one of cluster or weighted_clusters is required")),
    })
}

/// `weighted_clusters: {clusters: [{name, weight}]}`: the clusters exist and at least one
/// weight is above 0. `unsupported` / `item_unsupported`: Envoy fields of the map and of its
/// items that exist in this context but sluice does not implement.
pub fn parse_weighted(
    w: Node<'_>,
    clusters: &[ClusterConfig],
    unsupported: &[&str],
    item_unsupported: &[&str],
) -> Result<Vec<WeightedCluster>> {
    w.expect_fields(&["clusters", "total_weight"], unsupported)?;
    let list = w.require("clusters")?;
    let mut out = Vec::new();
    for item in list.node().items()? {
        let item = item.node();
        item.expect_fields(&["name", "weight"], item_unsupported)?;
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
    // The older total_weight must be the weights' sum, as Envoy checks it.
    if let Some(t) = w.get("total_weight") {
        let total = t.node().as_u64()?;
        let sum: u64 = out.iter().map(|c| u64::from(c.weight)).sum();
        if total != sum {
            return Err(t
                .node()
                .error(format!("is {total}, but the weights add up to {sum}")));
        }
    }
    Ok(out)
}

/// A route's `metadata_match`: the endpoint metadata (`filter_metadata["envoy.lb"]`) a host
/// must carry; empty without one.
pub fn parse_metadata_match(route_action: Node<'_>) -> Result<Metadata> {
    let Some(m) = route_action.get("metadata_match") else {
        return Ok(Metadata::new());
    };
    let m = m.node();
    m.expect_fields(&["filter_metadata"], &["typed_filter_metadata"])?;
    let Some(fm) = m.get("filter_metadata") else {
        return Ok(Metadata::new());
    };
    let fm = fm.node();
    fm.expect_fields(&[LB_NAMESPACE], &[])?;
    match fm.get(LB_NAMESPACE) {
        Some(lb) => scalar_map(lb.node()),
        None => Ok(Metadata::new()),
    }
}
