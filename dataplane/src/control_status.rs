//! What the control process's xDS client says about itself (`{"status": ...}` on the control
//! socket), kept here so the dataplane's admin endpoint can show it: the dynamic resources with
//! their versions in /config_dump, the update, ACK and NACK counters and the connection state
//! to the xDS server in /stats.

use arc_swap::ArcSwapOption;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

/// The last status the control process gave; empty before it gives one.
#[derive(Default)]
pub struct ControlStatus(ArcSwapOption<Held>);

struct Held {
    /// Everything but the resource list.
    summary: Value,
    /// The resource list as compact JSON text: with tens of thousands of resources, a
    /// `serde_json::Value` of it would weigh more than the clusters themselves.
    resources: String,
}

impl ControlStatus {
    pub fn new() -> Arc<ControlStatus> {
        Arc::new(ControlStatus::default())
    }

    /// Takes a status. Its `resources` (the entries /config_dump shows) may be JSON text in a
    /// string, which is kept as it is: sluice-control sends it so, and ten thousand entries
    /// never become a tree here. `/stats` reads `resource_counts`.
    pub fn set(&self, mut status: Value) {
        let resources = match status.as_object_mut().and_then(|m| m.remove("resources")) {
            Some(Value::String(text)) => text,
            Some(v) => v.to_string(),
            None => "null".into(),
        };
        self.0.store(Some(Arc::new(Held {
            summary: status,
            resources,
        })));
    }

    /// The whole status, for /config_dump.
    pub fn get(&self) -> Option<Value> {
        let held = self.0.load_full()?;
        let mut status = held.summary.clone();
        if let Some(map) = status.as_object_mut() {
            let resources = serde_json::from_str(&held.resources).unwrap_or(Value::Null);
            map.insert("resources".into(), resources);
        }
        Some(status)
    }

    /// The xDS families in Prometheus text; nothing before a control process reported.
    pub fn render_prometheus(&self) -> String {
        let Some(held) = self.0.load_full() else {
            return String::new();
        };
        let status = &held.summary;
        let mut out = String::new();
        let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
        let gauges = [
            (
                "sluice_xds_connected",
                "gauge",
                u64::from(status["connected"] == true),
            ),
            (
                "sluice_xds_initialized",
                "gauge",
                u64::from(status["initialized"] == true),
            ),
            (
                "sluice_xds_connects_total",
                "counter",
                number(status, "connects"),
            ),
            (
                "sluice_xds_disconnects_total",
                "counter",
                number(status, "disconnects"),
            ),
        ];
        for (family, kind, v) in gauges {
            let _ = writeln!(out, "# TYPE {family} {kind}\n{family} {v}");
        }
        let types = status["types"].as_object().cloned().unwrap_or_default();
        for (family, key) in [
            ("sluice_xds_updates_total", "updates"),
            ("sluice_xds_acks_total", "acks"),
            ("sluice_xds_nacks_total", "nacks"),
        ] {
            let _ = writeln!(out, "# TYPE {family} counter");
            for (t, counters) in &types {
                let _ = writeln!(out, "{family}{{type=\"{t}\"}} {}", number(counters, key));
            }
        }
        let _ = writeln!(out, "# TYPE sluice_xds_resources gauge");
        let counts = status["resource_counts"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (t, c) in &counts {
            for state in ["active", "warming"] {
                let n = number(c, state);
                let _ = writeln!(
                    out,
                    "sluice_xds_resources{{type=\"{t}\",state=\"{state}\"}} {n}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_and_resource_states_render() {
        let s = ControlStatus::default();
        assert_eq!(s.render_prometheus(), "");
        s.set(
            json!({"connected": true, "initialized": true, "connects": 2, "disconnects": 1,
            "types": {"cds": {"updates": 3, "acks": 2, "nacks": 1}},
            "resource_counts": {"cds": {"active": 1, "warming": 1}},
            "resources": "{\"cds\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}"}),
        );
        let text = s.render_prometheus();
        assert_eq!(s.get().unwrap()["resources"]["cds"][1]["name"], "b");
        for line in [
            "sluice_xds_connected 1",
            "sluice_xds_disconnects_total 1",
            "sluice_xds_nacks_total{type=\"cds\"} 1",
            "sluice_xds_acks_total{type=\"cds\"} 2",
            "sluice_xds_resources{type=\"cds\",state=\"warming\"} 1",
            "sluice_xds_resources{type=\"cds\",state=\"active\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
