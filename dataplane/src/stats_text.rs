//! Envoy's forms of `/stats`: `name: value` lines and `?format=json`, made from the Prometheus
//! exposition (the one rendering of sluice's stats), so the two can never disagree. A series
//! `sluice_cluster_upstream_cx_total{cluster="one"}` is Envoy's `cluster.one.upstream_cx_total`:
//! the family, then the label values in order, then the metric.

use regex::Regex;

/// Families in the order their prefixes are tried (longest first where one contains another).
const FAMILIES: &[&str] = &[
    "stack_worker",
    "listener",
    "cluster",
    "server",
    "worker",
    "stack",
    "host",
    "tcp",
    "rpc",
    "http",
    "xds",
];

/// What `/stats` was asked for.
#[derive(Default)]
pub struct Query {
    /// `?filter=`: only names this regular expression finds something in.
    pub filter: Option<Regex>,
    /// `?usedonly`: only stats that are not zero.
    pub used_only: bool,
}

/// (Envoy-style name, value) of every series in `prometheus`, sorted by name.
pub fn envoy_stats(prometheus: &str, query: &Query) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = prometheus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((envoy_name(series)?, value.parse().ok()?))
        })
        .filter(|(name, v)| {
            (!query.used_only || *v != 0) && query.filter.as_ref().is_none_or(|f| f.is_match(name))
        })
        .collect();
    out.sort();
    out
}

/// Envoy's text form: one `name: value` line each.
pub fn render_text(stats: &[(String, u64)]) -> String {
    let mut out = String::with_capacity(stats.len() * 48);
    for (name, v) in stats {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Envoy's `?format=json`: `{"stats": [{"name": ..., "value": ...}]}`.
pub fn render_json(stats: &[(String, u64)]) -> serde_json::Value {
    serde_json::json!({
        "stats": stats
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect::<Vec<_>>()
    })
}

/// `sluice_<family>_<metric>{k="v",...}` as `<family>.<v>....<metric>`.
fn envoy_name(series: &str) -> Option<String> {
    let rest = series.strip_prefix("sluice_")?;
    let (name, labels) = match rest.split_once('{') {
        Some((n, l)) => (n, l.strip_suffix('}')?),
        None => (rest, ""),
    };
    let (family, metric) = FAMILIES
        .iter()
        .find_map(|f| Some((*f, name.strip_prefix(f)?.strip_prefix('_')?)))
        .unwrap_or(("", name));
    let mut out = String::from(family);
    for value in label_values(labels) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&value);
    }
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(metric);
    Some(out)
}

/// The values of `k="v",k2="v2"`, unescaped.
fn label_values(labels: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = labels;
    while let Some((_, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, e)) => value.push(e),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push(value);
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# TYPE sluice_cluster_upstream_cx_total counter\n\
        sluice_cluster_upstream_cx_total{cluster=\"one\"} 3\n\
        sluice_host_cx_total{cluster=\"one\",address=\"127.0.0.1:80\"} 3\n\
        sluice_server_config_version 2\n\
        sluice_tcp_downstream_cx_total{stat_prefix=\"front\"} 0\n\
        sluice_stack_worker_rx_frames{worker=\"1\"} 7\n\
        sluice_listener_downstream_cx_total{listener=\"a \\\"b\\\"\"} 1\n";

    #[test]
    fn prometheus_series_get_envoy_names() {
        let all = envoy_stats(SAMPLE, &Query::default());
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "cluster.one.upstream_cx_total",
                "host.one.127.0.0.1:80.cx_total",
                "listener.a \"b\".downstream_cx_total",
                "server.config_version",
                "stack_worker.1.rx_frames",
                "tcp.front.downstream_cx_total",
            ]
        );
        assert!(render_text(&all).starts_with("cluster.one.upstream_cx_total: 3\n"));
    }

    #[test]
    fn filter_and_usedonly_select() {
        let q = Query {
            filter: Some(Regex::new("^(tcp|cluster)\\.").unwrap()),
            used_only: true,
        };
        assert_eq!(
            envoy_stats(SAMPLE, &q),
            [("cluster.one.upstream_cx_total".to_string(), 3)]
        );
        let json = render_json(&envoy_stats(SAMPLE, &q));
        assert_eq!(json["stats"][0]["name"], "cluster.one.upstream_cx_total");
        assert_eq!(json["stats"][0]["value"], 3);
    }
}
