//! HTTP protocol options shared by listeners (the connection manager) and clusters (the
//! upstream protocol): Envoy's `http2_protocol_options` with its defaults, and the cluster's
//! `typed_extension_protocol_options` for `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`.

use super::duration::parse_duration;
use super::reader::{Node, Result};
use std::time::Duration;

pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_PROTOCOL_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// `http2_protocol_options`, with Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Options {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_concurrent_streams: 2_147_483_647,
            initial_stream_window_size: 268_435_456,
            initial_connection_window_size: 268_435_456,
        }
    }
}

/// Which protocol a cluster's upstream connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    /// The downstream request's own protocol.
    UseDownstream,
}

/// A cluster's HTTP upstream settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamHttpOptions {
    pub protocol: UpstreamProtocol,
    pub http2: Http2Options,
    /// An idle pooled connection is closed after this long (Envoy's default 1 h).
    pub idle_timeout: Option<Duration>,
    /// A connection is retired after carrying this many requests.
    pub max_requests_per_connection: Option<u32>,
}

impl Default for UpstreamHttpOptions {
    fn default() -> Self {
        UpstreamHttpOptions {
            protocol: UpstreamProtocol::Http1,
            http2: Http2Options::default(),
            idle_timeout: Some(Duration::from_secs(3600)),
            max_requests_per_connection: None,
        }
    }
}

/// A protobuf `BoolValue` may be written as `true` or `{value: true}`.
pub fn wrapped_bool(node: Node<'_>, key: &str, default: bool) -> Result<bool> {
    Ok(match node.get(key) {
        Some(v) => {
            let v = v.node();
            match v.get("value") {
                Some(inner) => inner.node().as_bool()?,
                None => v.as_bool()?,
            }
        }
        None => default,
    })
}

pub fn wrapped_u32(node: Node<'_>, key: &str) -> Result<Option<u32>> {
    Ok(match node.get(key) {
        Some(v) => {
            let v = v.node();
            Some(match v.get("value") {
                Some(inner) => inner.node().as_u32()?,
                None => v.as_u32()?,
            })
        }
        None => None,
    })
}

pub fn parse_http2_options(node: Node<'_>) -> Result<Http2Options> {
    node.expect_fields(
        &[
            "max_concurrent_streams",
            "initial_stream_window_size",
            "initial_connection_window_size",
            "hpack_table_size",
            "allow_connect",
            "max_outbound_frames",
            "max_outbound_control_frames",
            "max_consecutive_inbound_frames_with_empty_payload",
            "max_inbound_priority_frames_per_stream",
            "max_inbound_window_update_frames_per_data_frame_sent",
            "stream_error_on_invalid_http_messaging",
            "override_stream_error_on_invalid_http_message",
            "connection_keepalive",
        ],
        &[
            "allow_metadata",
            "custom_settings_parameters",
            "use_oghttp2_codec",
            "max_metadata_size",
        ],
    )?;
    let mut o = Http2Options::default();
    if let Some(v) = wrapped_u32(node, "max_concurrent_streams")? {
        if v == 0 {
            return Err(node.error("max_concurrent_streams must be at least 1"));
        }
        o.max_concurrent_streams = v;
    }
    if let Some(v) = wrapped_u32(node, "initial_stream_window_size")? {
        if !(65_535..=2_147_483_647).contains(&v) {
            return Err(node.error("initial_stream_window_size must be 65535 to 2147483647"));
        }
        o.initial_stream_window_size = v;
    }
    if let Some(v) = wrapped_u32(node, "initial_connection_window_size")? {
        if !(65_535..=2_147_483_647).contains(&v) {
            return Err(node.error("initial_connection_window_size must be 65535 to 2147483647"));
        }
        o.initial_connection_window_size = v;
    }
    Ok(o)
}

/// The cluster's HTTP options from `typed_extension_protocol_options`, the older cluster-level
/// `http2_protocol_options`, and `max_requests_per_connection`.
pub fn parse_upstream_http(cluster: Node<'_>) -> Result<UpstreamHttpOptions> {
    let mut o = UpstreamHttpOptions::default();
    if let Some(h2) = cluster.get("http2_protocol_options") {
        o.protocol = UpstreamProtocol::Http2;
        o.http2 = parse_http2_options(h2.node())?;
    }
    if let Some(m) = wrapped_u32(cluster, "max_requests_per_connection")? {
        o.max_requests_per_connection = (m > 0).then_some(m);
    }
    let Some(typed) = cluster.get("typed_extension_protocol_options") else {
        return Ok(o);
    };
    let typed = typed.node();
    typed.expect_fields(&[HTTP_PROTOCOL_OPTIONS], &[])?;
    let Some(hpo) = typed.get(HTTP_PROTOCOL_OPTIONS) else {
        return Ok(o);
    };
    let hpo = hpo.node();
    hpo.expect_fields(
        &[
            "@type",
            "explicit_http_config",
            "use_downstream_protocol_config",
            "common_http_protocol_options",
            "upstream_http_protocol_options",
        ],
        &[
            "auto_config",
            "http_filters",
            "header_validation_config",
            "http_protocol_options",
        ],
    )?;
    let t = hpo.require("@type")?;
    if t.node().as_str()? != HTTP_PROTOCOL_OPTIONS_TYPE {
        return Err(t
            .node()
            .error(format!("expected {HTTP_PROTOCOL_OPTIONS_TYPE}")));
    }
    match (
        hpo.get("explicit_http_config"),
        hpo.get("use_downstream_protocol_config"),
    ) {
        (Some(e), None) => {
            let e = e.node();
            e.expect_fields(
                &["http_protocol_options", "http2_protocol_options"],
                &["http3_protocol_options"],
            )?;
            match (
                e.get("http_protocol_options"),
                e.get("http2_protocol_options"),
            ) {
                (Some(_), None) => o.protocol = UpstreamProtocol::Http1,
                (None, Some(h2)) => {
                    o.protocol = UpstreamProtocol::Http2;
                    o.http2 = parse_http2_options(h2.node())?;
                }
                _ => {
                    return Err(
                        e.error("give one of http_protocol_options or http2_protocol_options")
                    )
                }
            }
        }
        (None, Some(d)) => {
            let d = d.node();
            d.expect_fields(
                &["http_protocol_options", "http2_protocol_options"],
                &["http3_protocol_options"],
            )?;
            if let Some(h2) = d.get("http2_protocol_options") {
                o.http2 = parse_http2_options(h2.node())?;
            }
            o.protocol = UpstreamProtocol::UseDownstream;
        }
        (Some(_), Some(_)) => {
            return Err(
                hpo.error("give explicit_http_config or use_downstream_protocol_config, not both")
            )
        }
        (None, None) => {}
    }
    if let Some(c) = hpo.get("common_http_protocol_options") {
        let c = c.node();
        c.expect_fields(
            &["idle_timeout", "max_requests_per_connection"],
            &[
                "max_connection_duration",
                "max_headers_count",
                "max_stream_duration",
                "headers_with_underscores_action",
                "max_response_headers_kb",
            ],
        )?;
        if let Some(t) = c.get("idle_timeout") {
            let d = parse_duration(t.node())?;
            o.idle_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(m) = wrapped_u32(c, "max_requests_per_connection")? {
            o.max_requests_per_connection = (m > 0).then_some(m);
        }
    }
    Ok(o)
}
