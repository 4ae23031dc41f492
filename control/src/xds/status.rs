//! The xDS client's status as the dataplane shows it: the dynamic resources with their versions
//! (its /config_dump) and the counters and connection state (its /stats).

use super::client::Connection;
use super::kind::Kind;
use super::state::{Client, Mode};
use serde_json::{json, Value};

pub fn render(client: &Client, conn: &Connection) -> Value {
    let warming = client.applied().map(|s| &s.warming);
    let mut types = serde_json::Map::new();
    let mut resources = serde_json::Map::new();
    let mut counts = serde_json::Map::new();
    for kind in Kind::ALL {
        let c = client.counters(kind);
        let mut t = json!({
            "version_info": client.version_info(kind),
            "updates": c.updates,
            "acks": c.acks,
            "nacks": c.nacks,
        });
        if let Some((version, error)) = client.last_rejected(kind) {
            t["last_rejected"] = json!({"version_info": version, "error": error});
        }
        types.insert(kind.short().into(), t);
        let list: Vec<Value> = client
            .resources()
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|(name, r)| {
                let waiting = warming.and_then(|w| w.get(&(kind, name.clone())));
                let mut entry = json!({
                    "name": name,
                    "version_info": r.version,
                    "last_updated": r.last_updated,
                    "state": if waiting.is_some() { "warming" } else { "active" },
                });
                if let Some(w) = waiting {
                    entry["warming_reason"] = json!(w);
                }
                entry
            })
            .collect();
        let warming_count = list.iter().filter(|r| r["state"] == "warming").count();
        counts.insert(
            kind.short().into(),
            json!({"active": list.len() - warming_count, "warming": warming_count}),
        );
        resources.insert(kind.short().into(), Value::Array(list));
    }
    json!({
        "server": conn.server,
        "mode": match client.mode() { Mode::StateOfTheWorld => "sotw", Mode::Delta => "delta" },
        "connected": conn.connected,
        "connects": conn.connects,
        "disconnects": conn.disconnects,
        "last_error": conn.last_error,
        "initialized": client.is_initialized(),
        "types": types,
        "resource_counts": counts,
        // As JSON text: the dataplane keeps it as text (see sluice::control_status).
        "resources": Value::Object(resources).to_string(),
    })
}
