//! The `envoy.filters.network.http_connection_manager` network filter's config, read from its
//! typed_config with Envoy's defaults, and built per worker into an [`super::Hcm`].

use super::access_log::{parse_access_logs, AccessLogConfig};
use super::filters::{parse_http_filters, HttpFilters};
use super::path_normalize::PathOptions;
use super::route_config::{parse_route_config, HttpRouteConfig};
use crate::config::duration::parse_duration;
use crate::config::http_options::{parse_http2_options, wrapped_bool, wrapped_u32, Http2Options};
use crate::config::reader::{Node, Result};
use crate::config::ClusterConfig;
use crate::protocol::http1::Limits;
use crate::proxy::network_filter::{
    BuildContext, ConnectionHandler, FilterConfig, NetworkFilterConfig, NetworkFilterFactory,
    ParseContext,
};
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    /// HTTP/2 if the connection starts with its preface, else HTTP/1.1.
    Auto,
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoresAction {
    Allow,
    RejectRequest,
    DropHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

#[derive(Debug, Clone)]
pub struct HcmConfig {
    pub stat_prefix: String,
    pub codec: CodecType,
    pub route_config: Arc<HttpRouteConfig>,
    pub filters: HttpFilters,
    pub limits: Limits,
    /// A connection with no stream for this long is closed (default 1 h; `None`: never).
    pub idle_timeout: Option<Duration>,
    /// A stream with no activity for this long is ended (default 5 min).
    pub stream_idle_timeout: Option<Duration>,
    /// The whole request must have arrived within this long.
    pub request_timeout: Option<Duration>,
    /// The request's head must have arrived within this long of its first byte.
    pub request_headers_timeout: Option<Duration>,
    pub max_stream_duration: Option<Duration>,
    /// How long a draining HTTP/2 connection gets between its two GOAWAYs.
    pub drain_timeout: Duration,
    pub headers_with_underscores: UnderscoresAction,
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    pub skip_xff_append: bool,
    pub server_name: String,
    pub server_header: ServerHeader,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    pub always_set_request_id_in_response: bool,
    /// normalize_path, merge_slashes, path_with_escaped_slashes_action.
    pub paths: PathOptions,
    pub accept_http_10: bool,
    pub default_host_for_http_10: Option<String>,
    pub proxy_100_continue: bool,
    pub http2: Http2Options,
    /// Upgrades any route may take (`websocket`), from `upgrade_configs`.
    pub upgrades: Vec<String>,
    pub access_log: Vec<AccessLogConfig>,
}

pub struct Factory;

impl NetworkFilterFactory for Factory {
    fn name(&self) -> &'static str {
        HCM_NAME
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["envoy.http_connection_manager"]
    }
    fn type_url(&self) -> &'static str {
        HCM_TYPE
    }
    fn parse(&self, typed_config: Node<'_>, ctx: &ParseContext<'_>) -> Result<NetworkFilterConfig> {
        Ok(Arc::new(parse_hcm(typed_config, ctx.clusters)?))
    }
}

impl FilterConfig for HcmConfig {
    fn filter_name(&self) -> &'static str {
        HCM_NAME
    }

    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> std::result::Result<Rc<dyn ConnectionHandler>, String> {
        Ok(Rc::new(super::Hcm::new(Arc::new(self.clone()), ctx)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn optional(node: Node<'_>, key: &str, default: Option<Duration>) -> Result<Option<Duration>> {
    Ok(match node.get(key) {
        Some(t) => {
            let d = parse_duration(t.node())?;
            (!d.is_zero()).then_some(d)
        }
        None => default,
    })
}

fn flag(node: Node<'_>, key: &str, default: bool) -> Result<bool> {
    Ok(match node.get(key) {
        Some(v) => v.node().as_bool()?,
        None => default,
    })
}

fn enum_value<T: Copy>(node: Node<'_>, key: &str, names: &[(&str, T)], default: T) -> Result<T> {
    let Some(v) = node.get(key) else {
        return Ok(default);
    };
    let v = v.node();
    let text = match v.value() {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    names
        .iter()
        .enumerate()
        .find(|(i, (n, _))| *n == text || i.to_string() == text)
        .map(|(_, (_, t))| *t)
        .ok_or_else(|| {
            v.error(format!(
                "expected one of {}",
                names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
}

pub fn parse_hcm(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<HcmConfig> {
    node.expect_fields(
        &[
            "@type",
            "stat_prefix",
            "codec_type",
            "route_config",
            "rds",
            "http_filters",
            "common_http_protocol_options",
            "http_protocol_options",
            "http2_protocol_options",
            "stream_idle_timeout",
            "request_timeout",
            "request_headers_timeout",
            "drain_timeout",
            "delayed_close_timeout",
            "use_remote_address",
            "xff_num_trusted_hops",
            "skip_xff_append",
            "server_name",
            "server_header_transformation",
            "generate_request_id",
            "preserve_external_request_id",
            "always_set_request_id_in_response",
            "normalize_path",
            "merge_slashes",
            "path_with_escaped_slashes_action",
            "max_request_headers_kb",
            "proxy_100_continue",
            "upgrade_configs",
            "access_log",
            "tracing",
            "via",
            "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
        ],
        &[
            "scoped_routes",
            "add_user_agent",
            "internal_address_config",
            "forward_client_cert_details",
            "set_current_client_cert_details",
            "local_reply_config",
            "request_id_extension",
            "original_ip_detection_extensions",
            "early_header_mutation_extensions",
            "strip_matching_host_port",
            "strip_any_host_port",
            "stream_error_on_invalid_http_message",
            "http3_protocol_options",
            "scheme_header_transformation",
            "access_log_options",
            "proxy_status_config",
            "typed_header_validation_config",
            "append_x_forwarded_port",
            "append_local_overload",
            "add_proxy_protocol_connection_state",
            "strip_trailing_host_dot",
            "map_to_ipv4_mapped_ipv6",
        ],
    )?;
    let sp = node.require("stat_prefix")?;
    let stat_prefix = sp.node().as_str()?.to_string();
    if stat_prefix.is_empty() {
        return Err(sp.node().error("must not be empty"));
    }
    let codec = enum_value(
        node,
        "codec_type",
        &[
            ("AUTO", CodecType::Auto),
            ("HTTP1", CodecType::Http1),
            ("HTTP2", CodecType::Http2),
        ],
        CodecType::Auto,
    )?;
    let route_config = match (node.get("route_config"), node.get("rds")) {
        (Some(rc), None) => parse_route_config(rc.node(), clusters)?,
        (None, Some(rds)) => {
            return Err(rds.node().error(
                "routes by RDS come through sluice-control: run `sluice-control` with this bootstrap, which gives the dataplane the route configuration inline",
            ))
        }
        (Some(_), Some(_)) => return Err(node.error("give route_config or rds, not both")),
        (None, None) => return Err(node.error("one of route_config or rds is required")),
    };
    let filters = match node.get("http_filters") {
        Some(f) => parse_http_filters(f.node())?,
        None => return Err(node.error("http_filters: give at least envoy.filters.http.router")),
    };
    let mut limits = Limits::default();
    let mut idle_timeout = Some(Duration::from_secs(3600));
    let mut max_stream_duration = None;
    let mut headers_with_underscores = UnderscoresAction::Allow;
    if let Some(c) = node.get("common_http_protocol_options") {
        let c = c.node();
        c.expect_fields(
            &[
                "idle_timeout",
                "max_headers_count",
                "max_stream_duration",
                "headers_with_underscores_action",
                "max_connection_duration",
                "max_requests_per_connection",
                "max_response_headers_kb",
            ],
            &[],
        )?;
        idle_timeout = optional(c, "idle_timeout", idle_timeout)?;
        if let Some(n) = wrapped_u32(c, "max_headers_count")? {
            if n == 0 {
                return Err(c.error("max_headers_count must be at least 1"));
            }
            limits.max_headers = n as usize;
        }
        max_stream_duration = optional(c, "max_stream_duration", None)?;
        headers_with_underscores = enum_value(
            c,
            "headers_with_underscores_action",
            &[
                ("ALLOW", UnderscoresAction::Allow),
                ("REJECT_REQUEST", UnderscoresAction::RejectRequest),
                ("DROP_HEADER", UnderscoresAction::DropHeader),
            ],
            UnderscoresAction::Allow,
        )?;
        for unsupported in [
            "max_connection_duration",
            "max_requests_per_connection",
            "max_response_headers_kb",
        ] {
            if let Some(u) = c.get(unsupported) {
                return Err(u.node().error("not supported by sluice yet"));
            }
        }
    }
    if let Some(kb) = wrapped_u32(node, "max_request_headers_kb")? {
        if !(1..=8192).contains(&kb) {
            return Err(node.error("max_request_headers_kb must be 1 to 8192"));
        }
        limits.max_head_bytes = kb as usize * 1024;
    }
    let (mut accept_http_10, mut default_host_for_http_10) = (false, None);
    if let Some(h) = node.get("http_protocol_options") {
        let h = h.node();
        h.expect_fields(
            &[
                "accept_http_10",
                "default_host_for_http_10",
                "allow_absolute_url",
                "enable_trailers",
            ],
            &[
                "header_key_format",
                "allow_chunked_length",
                "override_stream_error_on_invalid_http_message",
                "send_fully_qualified_url",
                "use_balsa_parser",
                "allow_custom_methods",
                "ignore_http_11_upgrade",
            ],
        )?;
        accept_http_10 = flag(h, "accept_http_10", false)?;
        default_host_for_http_10 = match h.get("default_host_for_http_10") {
            Some(d) => Some(d.node().as_str()?.to_string()),
            None => None,
        };
    }
    let http2 = match node.get("http2_protocol_options") {
        Some(h) => parse_http2_options(h.node())?,
        None => Http2Options::default(),
    };
    let mut upgrades = Vec::new();
    if let Some(u) = node.get("upgrade_configs") {
        for item in u.node().items()? {
            let item = item.node();
            item.expect_fields(&["upgrade_type", "enabled"], &["filters"])?;
            let t = item.require("upgrade_type")?;
            let t_name = t.node().as_str()?.to_ascii_lowercase();
            if t_name == "connect" {
                return Err(t.node().error("CONNECT upgrades are not supported yet"));
            }
            if flag(item, "enabled", true)? {
                upgrades.push(t_name);
            }
        }
    }
    let server_header = enum_value(
        node,
        "server_header_transformation",
        &[
            ("OVERWRITE", ServerHeader::Overwrite),
            ("APPEND_IF_ABSENT", ServerHeader::AppendIfAbsent),
            ("PASS_THROUGH", ServerHeader::PassThrough),
        ],
        ServerHeader::Overwrite,
    )?;
    let escaped_slashes = enum_value(
        node,
        "path_with_escaped_slashes_action",
        &[
            (
                "IMPLEMENTATION_SPECIFIC_DEFAULT",
                EscapedSlashes::KeepUnchanged,
            ),
            ("KEEP_UNCHANGED", EscapedSlashes::KeepUnchanged),
            ("REJECT_REQUEST", EscapedSlashes::RejectRequest),
            ("UNESCAPE_AND_REDIRECT", EscapedSlashes::UnescapeAndRedirect),
            ("UNESCAPE_AND_FORWARD", EscapedSlashes::UnescapeAndForward),
        ],
        EscapedSlashes::KeepUnchanged,
    )?;
    if let Some(t) = node.get("tracing") {
        return Err(t.node().error("tracing is not supported yet"));
    }
    if let Some(v) = node.get("via") {
        return Err(v.node().error("via is not supported yet"));
    }
    Ok(HcmConfig {
        stat_prefix,
        codec,
        route_config: Arc::new(route_config),
        filters,
        limits,
        idle_timeout,
        stream_idle_timeout: optional(node, "stream_idle_timeout", Some(Duration::from_secs(300)))?,
        request_timeout: optional(node, "request_timeout", None)?,
        request_headers_timeout: optional(node, "request_headers_timeout", None)?,
        max_stream_duration,
        drain_timeout: optional(node, "drain_timeout", Some(Duration::from_secs(5)))?
            .unwrap_or(Duration::from_secs(5)),
        headers_with_underscores,
        use_remote_address: wrapped_bool(node, "use_remote_address", false)?,
        xff_num_trusted_hops: match node.get("xff_num_trusted_hops") {
            Some(n) => n.node().as_u32()?,
            None => 0,
        },
        skip_xff_append: flag(node, "skip_xff_append", false)?,
        server_name: match node.get("server_name") {
            Some(s) => s.node().as_str()?.to_string(),
            None => "envoy".to_string(),
        },
        server_header,
        generate_request_id: wrapped_bool(node, "generate_request_id", true)?,
        preserve_external_request_id: flag(node, "preserve_external_request_id", false)?,
        always_set_request_id_in_response: flag(node, "always_set_request_id_in_response", false)?,
        paths: PathOptions {
            normalize: wrapped_bool(node, "normalize_path", false)?,
            merge_slashes: flag(node, "merge_slashes", false)?,
            escaped_slashes,
        },
        accept_http_10,
        default_host_for_http_10,
        proxy_100_continue: flag(node, "proxy_100_continue", false)?,
        http2,
        upgrades,
        access_log: match node.get("access_log") {
            Some(a) => parse_access_logs(a.node())?,
            None => Vec::new(),
        },
    })
}
