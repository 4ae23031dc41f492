//! The four resource types sluice subscribes to, in the order Envoy asks for them on ADS.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl Kind {
    /// Clusters first (their endpoints follow), then listeners (their routes follow): what a
    /// listener or route points at is there before it is, as Envoy does it.
    pub const ALL: [Kind; 4] = [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];

    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoint => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn from_type_url(url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// LDS and CDS ask for everything; RDS and EDS for the names listeners and clusters use.
    pub fn is_wildcard(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Listener)
    }

    /// The short name used in stats labels and messages.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Cluster => "cds",
            Kind::Endpoint => "eds",
            Kind::Listener => "lds",
            Kind::Route => "rds",
        }
    }

    /// What a resource of this type is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Endpoint => "cluster load assignment",
            Kind::Listener => "listener",
            Kind::Route => "route configuration",
        }
    }

    /// The name inside a resource's JSON (ClusterLoadAssignment calls it `cluster_name`).
    pub fn name_of(self, json: &serde_json::Value) -> Option<&str> {
        let key = match self {
            Kind::Endpoint => "cluster_name",
            _ => "name",
        };
        json.get(key).and_then(|n| n.as_str())
    }
}
