//! Turns the resources learned over xDS into the one thing a dataplane takes: a complete
//! `static_resources` (Envoy v3 listeners and clusters, with their routes and endpoints inline),
//! laid beside the bootstrap file's own static resources.
//!
//! Warming is decided here, as Envoy does it: an EDS cluster is not used until its endpoints
//! have arrived, nor a listener until its route configuration has and every cluster it sends
//! to is in use. Until then the version that was in use before (if any) stays in use.
//!
//! Validation is the dataplane's own config reader, run here on a view that holds every
//! resource (warming ones with empty endpoints and routes, and stand-ins for clusters nobody
//! has sent yet), so a broken resource is refused the moment it arrives; its error is turned
//! into one that names the resource.

use super::kind::Kind;
use super::routes::rpc_route_config;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::sync::Arc;

/// One accepted resource. Kept as compact JSON text: ten thousand clusters with their
/// endpoints as `serde_json::Value` trees would take several times the memory of the
/// dataplane's own model of them; the trees are built again, briefly, when a snapshot is
/// composed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub version: String,
    pub text: Arc<str>,
    /// Seconds since the Unix epoch at which it was accepted.
    pub last_updated: u64,
    /// The RDS or EDS resource it takes its routes or endpoints from, if any.
    pub needs: Vec<String>,
}

impl Resource {
    pub fn new(kind: Kind, version: String, json: &Value, last_updated: u64) -> Resource {
        let needs = match kind {
            Kind::Cluster => eds_name(json).into_iter().collect(),
            Kind::Listener => rds_names(json),
            Kind::Endpoint | Kind::Route => Vec::new(),
        };
        Resource {
            version,
            text: json.to_string().into(),
            last_updated,
            needs,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).expect("a resource's text is the JSON it was made from")
    }
}

pub type Resources = BTreeMap<Kind, BTreeMap<String, Resource>>;

/// The bootstrap file's own listeners and clusters, which xDS may not replace.
#[derive(Debug, Clone, Default)]
pub struct StaticResources {
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
}

impl StaticResources {
    pub fn from_bootstrap(doc: &Value) -> StaticResources {
        let list = |key: &str| {
            doc.pointer(&format!("/static_resources/{key}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        StaticResources {
            listeners: list("listeners"),
            clusters: list("clusters"),
        }
    }

    fn has(&self, kind: Kind, name: &str) -> bool {
        let list = match kind {
            Kind::Listener => &self.listeners,
            Kind::Cluster => &self.clusters,
            _ => return false,
        };
        list.iter()
            .any(|r| r.get("name").and_then(Value::as_str) == Some(name))
    }
}

/// What a dataplane serves, and what each dynamic resource's state is.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// A hash of the `static_resources` given to the dataplane: whether a new one differs.
    pub fingerprint: u64,
    /// The dynamic listeners and clusters in use, as composed (for keeping them in use while a
    /// newer version warms).
    pub in_use: BTreeMap<(Kind, String), Arc<str>>,
    /// Warming resources and what each waits for.
    pub warming: BTreeMap<(Kind, String), String>,
}

/// A composed snapshot with the document the dataplane is to be given.
pub struct Composed {
    pub snapshot: Snapshot,
    pub static_resources: Value,
}

/// The names of the RDS and EDS resources the accepted listeners and clusters use.
pub fn wanted_names(resources: &Resources, kind: Kind) -> BTreeSet<String> {
    let all = |k: Kind| resources.get(&k).into_iter().flat_map(|m| m.values());
    let users = match kind {
        Kind::Endpoint => Kind::Cluster,
        Kind::Route => Kind::Listener,
        Kind::Cluster | Kind::Listener => return BTreeSet::new(),
    };
    all(users).flat_map(|r| r.needs.iter().cloned()).collect()
}

/// The ClusterLoadAssignment an EDS cluster takes its endpoints from.
pub fn eds_name(cluster: &Value) -> Option<String> {
    if cluster.get("type").and_then(Value::as_str) != Some("EDS") {
        return None;
    }
    let service = cluster
        .pointer("/eds_cluster_config/service_name")
        .and_then(Value::as_str);
    service
        .or_else(|| cluster.get("name").and_then(Value::as_str))
        .map(String::from)
}

/// The filters of a listener, as mutable JSON.
fn filters_mut(listener: &mut Value) -> impl Iterator<Item = &mut Value> {
    listener
        .get_mut("filter_chains")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|chain| chain.get_mut("filters").and_then(Value::as_array_mut))
        .flatten()
}

fn rds_names(listener: &Value) -> Vec<String> {
    let mut copy = listener.clone();
    filters_mut(&mut copy)
        .filter_map(|f| {
            f.pointer("/typed_config/rds/route_config_name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

/// Every cluster a listener (or route configuration) sends to.
fn cluster_refs(json: &Value, out: &mut BTreeSet<String>) {
    match json {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("cluster" | "passthrough_cluster", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("weighted_clusters", w) => {
                        for c in w
                            .get("clusters")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(name) = c.get("name").and_then(Value::as_str) {
                                out.insert(name.to_string());
                            }
                        }
                    }
                    _ => cluster_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| cluster_refs(i, out)),
        _ => {}
    }
}

/// Where a path in the composed document came from.
struct Origin {
    kind: Kind,
    name: String,
}

/// Composes the document; with `validation_view`, every resource is in it, warming or not.
struct Composer<'a> {
    resources: &'a Resources,
    statics: &'a StaticResources,
    previous: Option<&'a Snapshot>,
    listeners: Vec<Value>,
    clusters: Vec<Value>,
    listener_origins: Vec<Option<Origin>>,
    cluster_origins: Vec<Option<Origin>>,
    in_use: BTreeMap<(Kind, String), Arc<str>>,
    warming: BTreeMap<(Kind, String), String>,
}

impl<'a> Composer<'a> {
    fn get(&self, kind: Kind, name: &str) -> Option<&'a Resource> {
        self.resources.get(&kind).and_then(|m| m.get(name))
    }

    fn dynamic(&self, kind: Kind) -> impl Iterator<Item = (&'a String, &'a Resource)> {
        self.resources.get(&kind).into_iter().flatten()
    }

    /// An EDS cluster with its endpoints inline; `Err` names what it waits for.
    fn cluster(&self, c: &Value, validation_view: bool) -> Result<Value, String> {
        let Some(service) = eds_name(c) else {
            return Ok(c.clone());
        };
        let mut out = c.clone();
        let map = out.as_object_mut().expect("a cluster is an object");
        map.remove("eds_cluster_config");
        map.insert("type".into(), json!("STATIC"));
        let assignment = match self.get(Kind::Endpoint, &service) {
            Some(cla) => {
                let mut cla = cla.json();
                cla["cluster_name"] = json!(service);
                cla
            }
            None if validation_view => json!({"cluster_name": service}),
            None => {
                return Err(format!(
                    "its endpoints (cluster load assignment \"{service}\")"
                ))
            }
        };
        map.insert("load_assignment".into(), assignment);
        Ok(out)
    }

    /// A listener with its RPC routes inline; `Err` names what it waits for.
    fn listener(&self, l: &Value, validation_view: bool) -> Result<Value, String> {
        let mut out = l.clone();
        for filter in filters_mut(&mut out) {
            let Some(typed) = filter
                .get_mut("typed_config")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let Some(rds) = typed.remove("rds") else {
                continue;
            };
            let name = rds
                .get("route_config_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // HTTP's connection manager reads a RouteConfiguration as it is; the rpc_proxy
            // reads it in its own shape.
            let http = typed.get("@type").and_then(Value::as_str) == Some(HCM_TYPE);
            let routes = match self.get(Kind::Route, &name) {
                Some(r) if http => r.json(),
                Some(r) => rpc_route_config(&r.json())
                    .map_err(|e| format!("route configuration \"{name}\": {e}"))?,
                None if validation_view => json!({"name": name}),
                None => return Err(format!("its routes (route configuration \"{name}\")")),
            };
            typed.insert("route_config".into(), routes);
        }
        Ok(out)
    }
}

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Composes what the dataplane is given. Resources not ready keep their previous version in use.
///
/// A cluster removed while a listener in use still sends to it stays in use (its last version)
/// until that listener changes or goes: servers may remove a cluster before the listener that
/// uses it, and the listener should not close its port meanwhile.
pub fn snapshot(
    resources: &Resources,
    statics: &StaticResources,
    previous: Option<&Snapshot>,
) -> Composed {
    let mut c = Composer::new(resources, statics, previous);
    for (name, r) in c.dynamic(Kind::Cluster) {
        let composed = c.cluster(&r.json(), false);
        c.use_or_keep(Kind::Cluster, name, composed);
    }
    for (name, r) in c.dynamic(Kind::Listener) {
        let composed = c.listener(&r.json(), false);
        let key = (Kind::Listener, name.clone());
        let kept = previous
            .and_then(|p| p.in_use.get(&key))
            .map(|text| parse_kept(text));
        // The new version if it is ready and its clusters are there; else the version in use,
        // if its clusters are still there.
        let chosen = match composed.and_then(|l| c.clusters_for(&l).map(|extra| (l, extra))) {
            Ok(ready) => Some(ready),
            Err(waiting_for) => {
                c.warming
                    .insert(key.clone(), format!("waiting for {waiting_for}"));
                kept.and_then(|l| c.clusters_for(&l).ok().map(|extra| (l, extra)))
            }
        };
        if let Some((json, extra)) = chosen {
            for (cluster, cluster_json) in extra {
                c.in_use.insert(
                    (Kind::Cluster, cluster.clone()),
                    cluster_json.to_string().into(),
                );
                c.push(Kind::Cluster, &cluster, cluster_json);
            }
            c.in_use.insert(key, json.to_string().into());
            c.push(Kind::Listener, name, json);
        }
    }
    c.finish()
}

impl<'a> Composer<'a> {
    fn new(
        resources: &'a Resources,
        statics: &'a StaticResources,
        previous: Option<&'a Snapshot>,
    ) -> Self {
        Composer {
            resources,
            statics,
            previous,
            listeners: statics.listeners.clone(),
            clusters: statics.clusters.clone(),
            listener_origins: statics.listeners.iter().map(|_| None).collect(),
            cluster_origins: statics.clusters.iter().map(|_| None).collect(),
            in_use: BTreeMap::new(),
            warming: BTreeMap::new(),
        }
    }

    fn cluster_names(&self) -> BTreeSet<String> {
        self.clusters
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
            .collect()
    }

    /// The clusters `listener` sends to that are not in the document yet but were in use
    /// before (removed since); `Err` names one that is nowhere.
    fn clusters_for(&self, listener: &Value) -> Result<Vec<(String, Value)>, String> {
        let mut refs = BTreeSet::new();
        cluster_refs(listener, &mut refs);
        let have = self.cluster_names();
        let mut extra = Vec::new();
        for name in refs.difference(&have) {
            let key = (Kind::Cluster, name.clone());
            match self.previous.and_then(|p| p.in_use.get(&key)) {
                Some(text) => extra.push((name.clone(), parse_kept(text))),
                None => return Err(format!("cluster \"{name}\"")),
            }
        }
        Ok(extra)
    }

    fn push(&mut self, kind: Kind, name: &str, json: Value) {
        let origin = Some(Origin {
            kind,
            name: name.to_string(),
        });
        match kind {
            Kind::Listener => {
                self.listeners.push(json);
                self.listener_origins.push(origin);
            }
            _ => {
                self.clusters.push(json);
                self.cluster_origins.push(origin);
            }
        }
    }

    fn use_or_keep(&mut self, kind: Kind, name: &str, composed: Result<Value, String>) {
        let key = (kind, name.to_string());
        let chosen = match composed {
            Ok(json) => Some(json),
            Err(waiting_for) => {
                self.warming
                    .insert(key.clone(), format!("waiting for {waiting_for}"));
                self.previous
                    .and_then(|p| p.in_use.get(&key))
                    .map(|text| parse_kept(text))
            }
        };
        if let Some(json) = chosen {
            self.in_use.insert(key, json.to_string().into());
            self.push(kind, name, json);
        }
    }

    fn finish(self) -> Composed {
        let _ = self.statics;
        let static_resources = json!({"listeners": self.listeners, "clusters": self.clusters});
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(static_resources.to_string().as_bytes());
        Composed {
            snapshot: Snapshot {
                fingerprint: hasher.finish(),
                in_use: self.in_use,
                warming: self.warming,
            },
            static_resources,
        }
    }
}

fn parse_kept(text: &str) -> Value {
    serde_json::from_str(text).expect("a kept resource's text is JSON composed here")
}

/// Checks every resource with the dataplane's config reader; the error names the resource.
pub fn validate(resources: &Resources, statics: &StaticResources) -> Result<(), String> {
    for kind in [Kind::Listener, Kind::Cluster] {
        for (name, _) in resources.get(&kind).into_iter().flatten() {
            if statics.has(kind, name) {
                return Err(format!(
                    "{} \"{name}\": the bootstrap file defines a static {} of that name, which xDS cannot replace",
                    kind.noun(),
                    kind.noun()
                ));
            }
        }
    }
    let mut c = Composer::new(resources, statics, None);
    for (name, r) in c.dynamic(Kind::Cluster) {
        let composed = c.cluster(&r.json(), true)?;
        c.push(Kind::Cluster, name, composed);
    }
    let mut refs = BTreeSet::new();
    for (name, r) in c.dynamic(Kind::Listener) {
        let composed = c
            .listener(&r.json(), true)
            .map_err(|e| format!("listener \"{name}\": {e}"))?;
        cluster_refs(&composed, &mut refs);
        c.push(Kind::Listener, name, composed);
    }
    // Clusters nobody has sent yet are not an error (the listener warms); stand-ins let the
    // reader check the rest of the listener.
    let known = c.cluster_names();
    let stand_ins: Vec<Value> = refs
        .difference(&known)
        .map(|name| json!({"name": name}))
        .collect();
    let stand_in_count = stand_ins.len();
    c.clusters.extend(stand_ins);
    c.cluster_origins.extend((0..stand_in_count).map(|_| None));
    let doc = json!({"static_resources": {"listeners": c.listeners, "clusters": c.clusters}});
    match sluice::config::bootstrap::parse_bootstrap(&doc) {
        Ok(_) => Ok(()),
        Err(e) => Err(blame(&c, &e.to_string())),
    }
}

/// Rewrites `static_resources.clusters[3].lb_policy: ...` as `cluster "web": lb_policy: ...`.
fn blame(c: &Composer<'_>, error: &str) -> String {
    for (list, origins) in [
        ("listeners", &c.listener_origins),
        ("clusters", &c.cluster_origins),
    ] {
        let prefix = format!("static_resources.{list}[");
        let Some(rest) = error.strip_prefix(&prefix) else {
            continue;
        };
        let Some((index, after)) = rest.split_once(']') else {
            continue;
        };
        let Some(Some(origin)) = index.parse::<usize>().ok().and_then(|i| origins.get(i)) else {
            continue;
        };
        let after = after.strip_prefix('.').unwrap_or(after);
        return format!("{} \"{}\": {}", origin.kind.noun(), origin.name, after);
    }
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(kind: Kind, json: Value) -> Resource {
        Resource::new(kind, "1".into(), &json, 0)
    }

    fn set(entries: Vec<(Kind, &str, Value)>) -> Resources {
        let mut r = Resources::new();
        for (k, n, j) in entries {
            r.entry(k).or_default().insert(n.to_string(), res(k, j));
        }
        r
    }

    fn eds_cluster(name: &str) -> Value {
        json!({"name": name, "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}})
    }

    fn tcp_listener(name: &str, port: u16, cluster: &str) -> Value {
        json!({"name": name,
               "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                 "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                  "stat_prefix": name, "cluster": cluster}}]}]})
    }

    fn cla(name: &str, port: u16) -> Value {
        json!({"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]})
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn clusters_wait_for_endpoints_and_listeners_for_clusters() {
        let statics = StaticResources::default();
        let r = set(vec![
            (Kind::Cluster, "web", eds_cluster("web")),
            (Kind::Listener, "in", tcp_listener("in", 8080, "web")),
        ]);
        let s = snapshot(&r, &statics, None);
        assert_eq!(names(&s.static_resources["clusters"]), Vec::<&str>::new());
        assert_eq!(names(&s.static_resources["listeners"]), Vec::<&str>::new());
        assert!(s.snapshot.warming[&(Kind::Cluster, "web".into())]
            .contains("cluster load assignment \"web\""));
        assert!(s.snapshot.warming[&(Kind::Listener, "in".into())].contains("cluster \"web\""));
        validate(&r, &statics).unwrap();

        let mut r2 = r.clone();
        r2.entry(Kind::Endpoint)
            .or_default()
            .insert("web".into(), res(Kind::Endpoint, cla("web", 9000)));
        let s2 = snapshot(&r2, &statics, Some(&s.snapshot));
        assert!(s2.snapshot.warming.is_empty());
        let clusters = &s2.static_resources["clusters"];
        assert_eq!(clusters[0]["type"], "STATIC");
        assert_eq!(
            clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"]["port_value"],
            9000
        );
        assert!(clusters[0].get("eds_cluster_config").is_none());
        assert_eq!(names(&s2.static_resources["listeners"]), vec!["in"]);
        sluice::config::bootstrap::parse_bootstrap(
            &json!({"static_resources": s2.static_resources}),
        )
        .unwrap();

        // A newer version of the cluster that waits for another assignment: the old one serves on.
        let mut r3 = r2.clone();
        let mut moved = eds_cluster("web");
        moved["eds_cluster_config"]["service_name"] = json!("web-v2");
        r3.get_mut(&Kind::Cluster)
            .unwrap()
            .insert("web".into(), res(Kind::Cluster, moved));
        let s3 = snapshot(&r3, &statics, Some(&s2.snapshot));
        assert_eq!(
            s3.static_resources["clusters"],
            s2.static_resources["clusters"]
        );
        assert!(s3
            .snapshot
            .warming
            .contains_key(&(Kind::Cluster, "web".into())));
        assert_eq!(
            wanted_names(&r3, Kind::Endpoint),
            BTreeSet::from(["web-v2".to_string()])
        );
    }

    #[test]
    fn a_cluster_removed_before_its_listener_stays_until_the_listener_goes() {
        let statics = StaticResources::default();
        let r = set(vec![
            (Kind::Cluster, "web", eds_cluster("web")),
            (Kind::Endpoint, "web", cla("web", 9000)),
            (Kind::Listener, "in", tcp_listener("in", 8080, "web")),
        ]);
        let s = snapshot(&r, &statics, None);
        let mut without_cluster = r.clone();
        without_cluster.remove(&Kind::Cluster);
        let s2 = snapshot(&without_cluster, &statics, Some(&s.snapshot));
        assert_eq!(s2.static_resources, s.static_resources);
        sluice::config::bootstrap::parse_bootstrap(
            &json!({"static_resources": s2.static_resources}),
        )
        .unwrap();
        let mut neither = without_cluster.clone();
        neither.remove(&Kind::Listener);
        let s3 = snapshot(&neither, &statics, Some(&s2.snapshot));
        assert_eq!(
            s3.static_resources,
            json!({"listeners": [], "clusters": []})
        );
    }

    #[test]
    fn errors_name_the_resource() {
        let statics = StaticResources::default();
        let mut bad = eds_cluster("web");
        bad["lb_policy"] = json!("CLUSTER_PROVIDED");
        let e = validate(&set(vec![(Kind::Cluster, "web", bad)]), &statics).unwrap_err();
        assert!(e.starts_with("cluster \"web\": lb_policy"), "{e}");

        let mut l = tcp_listener("in", 8080, "web");
        l["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"] = json!("");
        let e = validate(&set(vec![(Kind::Listener, "in", l)]), &statics).unwrap_err();
        assert!(e.starts_with("listener \"in\": filter_chains[0]"), "{e}");

        let statics = StaticResources {
            listeners: vec![],
            clusters: vec![json!({"name": "web"})],
        };
        let e = validate(
            &set(vec![(Kind::Cluster, "web", eds_cluster("web"))]),
            &statics,
        )
        .unwrap_err();
        assert!(e.contains("static cluster of that name"), "{e}");
    }
}
