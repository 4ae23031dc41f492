//! `access_log` with Envoy's file logger (`envoy.access_loggers.file`): Envoy's default format,
//! format strings of command operators (%REQ(X)%, %RESPONSE_CODE%, %RESPONSE_FLAGS%, ...) and
//! `json_format`. Lines are formatted on the worker and written by one thread per file, so a
//! slow disk never blocks a worker: when that thread falls behind by more than
//! [`QUEUE_LINES`], lines are dropped and counted rather than waited for.

use super::message::{RequestHead, ResponseHead};
use super::time_text::rfc3339_millis;
use crate::config::reader::{Node, Result};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

pub const FILE_LOGGER: &str = "envoy.access_loggers.file";
pub const FILE_LOGGER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
pub const STDOUT_LOGGER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Lines one file's writer may be behind before further lines are dropped.
const QUEUE_LINES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Literal(String),
    StartTime,
    /// REQ(main?alternative):max_len
    Req(String, Option<String>, Option<usize>),
    Resp(String, Option<usize>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    RouteName,
    Hostname,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Text(Vec<Operator>),
    /// Keys with their formats, in config order; each value is one operator's text (or a
    /// literal), written as a JSON string (numbers for the numeric operators, as Envoy does).
    Json(Vec<(String, Vec<Operator>)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// A file path; `/dev/stdout` and `/dev/stderr` as they are.
    pub path: String,
    pub format: Format,
}

/// What one finished request leaves for its log line.
pub struct Record<'a> {
    pub start: SystemTime,
    pub request: &'a RequestHead,
    pub response: Option<&'a ResponseHead>,
    pub status: u16,
    pub flags: &'a str,
    pub details: &'a str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<&'a str>,
    /// The trusted client address (x-forwarded-for with xff_num_trusted_hops, else the peer).
    pub peer: SocketAddr,
    /// The connection's peer.
    pub direct_peer: SocketAddr,
    pub route_name: &'a str,
}

pub fn parse_access_logs(node: Node<'_>) -> Result<Vec<AccessLogConfig>> {
    let mut out = Vec::new();
    for item in node.items()? {
        let a = item.node();
        a.expect_fields(&["name", "typed_config"], &["filter"])?;
        let typed = a.require("typed_config")?;
        let typed = typed.node();
        let t = typed.require("@type")?;
        match t.node().as_str()? {
            FILE_LOGGER_TYPE => {
                typed.expect_fields(
                    &["@type", "path", "format", "json_format", "log_format"],
                    &["typed_json_format"],
                )?;
                let path = typed.require("path")?.node().as_str()?.to_string();
                let format = if let Some(f) = typed.get("format") {
                    Format::Text(parse_format(f.node(), f.node().as_str()?)?)
                } else if let Some(j) = typed.get("json_format") {
                    parse_json(j.node())?
                } else if let Some(lf) = typed.get("log_format") {
                    parse_log_format(lf.node())?
                } else {
                    Format::Text(parse_format(typed, DEFAULT_FORMAT)?)
                };
                out.push(AccessLogConfig { path, format });
            }
            STDOUT_LOGGER_TYPE => {
                typed.expect_fields(&["@type", "log_format"], &[])?;
                let format = match typed.get("log_format") {
                    Some(lf) => parse_log_format(lf.node())?,
                    None => Format::Text(parse_format(typed, DEFAULT_FORMAT)?),
                };
                out.push(AccessLogConfig {
                    path: "/dev/stdout".into(),
                    format,
                });
            }
            other => {
                return Err(t.node().error(format!(
                    "access logger type {other} is not supported (supported: {FILE_LOGGER_TYPE}, {STDOUT_LOGGER_TYPE})"
                )))
            }
        }
    }
    Ok(out)
}

/// Envoy's `SubstitutionFormatString`.
fn parse_log_format(node: Node<'_>) -> Result<Format> {
    node.expect_fields(
        &[
            "text_format",
            "text_format_source",
            "json_format",
            "omit_empty_values",
            "content_type",
        ],
        &["formatters"],
    )?;
    if let Some(t) = node.get("text_format") {
        return Ok(Format::Text(parse_format(t.node(), t.node().as_str()?)?));
    }
    if let Some(s) = node.get("text_format_source") {
        let s = s.node();
        s.expect_fields(
            &["inline_string"],
            &["filename", "inline_bytes", "environment_variable"],
        )?;
        let text = s.require("inline_string")?;
        return Ok(Format::Text(parse_format(
            text.node(),
            text.node().as_str()?,
        )?));
    }
    if let Some(j) = node.get("json_format") {
        return parse_json(j.node());
    }
    Err(node.error("give one of text_format, text_format_source, json_format"))
}

fn parse_json(node: Node<'_>) -> Result<Format> {
    let Some(map) = node.value().as_object() else {
        return Err(node.error("expected a mapping of keys to format strings"));
    };
    let mut out = Vec::new();
    for key in map.keys() {
        let v = node.require(key)?;
        let text = v.node().as_str()?;
        out.push((key.clone(), parse_format(v.node(), text)?));
    }
    Ok(Format::Json(out))
}

/// Splits a format string into literals and command operators.
pub fn parse_format(node: Node<'_>, text: &str) -> Result<Vec<Operator>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut literal = String::new();
    while let Some(i) = rest.find('%') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('%') {
            literal.push('%');
            rest = stripped;
            continue;
        }
        let Some(end) = after.find('%') else {
            return Err(node.error(format!("unterminated command operator in \"{text}\"")));
        };
        if !literal.is_empty() {
            out.push(Operator::Literal(std::mem::take(&mut literal)));
        }
        out.push(parse_operator(node, &after[..end])?);
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Operator::Literal(literal));
    }
    Ok(out)
}

fn parse_operator(node: Node<'_>, op: &str) -> Result<Operator> {
    let (name, arg, max) = match op.find('(') {
        Some(open) => {
            let close = op
                .rfind(')')
                .filter(|c| *c > open)
                .ok_or_else(|| node.error(format!("%{op}%: missing )")))?;
            let max = match op[close + 1..].strip_prefix(':') {
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| node.error(format!("%{op}%: bad length")))?,
                ),
                None => None,
            };
            (&op[..open], Some(&op[open + 1..close]), max)
        }
        None => (op, None, None),
    };
    Ok(match (name, arg) {
        ("START_TIME", None) => Operator::StartTime,
        ("REQ", Some(a)) => {
            let (main, alt) = match a.split_once('?') {
                Some((m, alt)) => (m, Some(alt.to_ascii_lowercase())),
                None => (a, None),
            };
            Operator::Req(main.to_ascii_lowercase(), alt, max)
        }
        ("RESP", Some(a)) => Operator::Resp(a.to_ascii_lowercase(), max),
        ("PROTOCOL", None) => Operator::Protocol,
        ("RESPONSE_CODE", None) => Operator::ResponseCode,
        ("RESPONSE_FLAGS", None) => Operator::ResponseFlags,
        ("RESPONSE_CODE_DETAILS", None) => Operator::ResponseCodeDetails,
        ("BYTES_RECEIVED", None) => Operator::BytesReceived,
        ("BYTES_SENT", None) => Operator::BytesSent,
        ("DURATION", None) => Operator::Duration,
        ("UPSTREAM_HOST", None) => Operator::UpstreamHost,
        ("UPSTREAM_CLUSTER", None) => Operator::UpstreamCluster,
        ("DOWNSTREAM_REMOTE_ADDRESS", None) => Operator::DownstreamRemoteAddress,
        ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", None) => {
            Operator::DownstreamRemoteAddressWithoutPort
        }
        ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS", None) => Operator::DownstreamDirectRemoteAddress,
        ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", None) => {
            Operator::DownstreamDirectRemoteAddressWithoutPort
        }
        ("ROUTE_NAME", None) => Operator::RouteName,
        ("HOSTNAME", None) => Operator::Hostname,
        _ => {
            return Err(node.error(format!(
                "command operator %{op}% is not supported (supported: START_TIME, REQ(), RESP(), PROTOCOL, RESPONSE_CODE, RESPONSE_FLAGS, RESPONSE_CODE_DETAILS, BYTES_RECEIVED, BYTES_SENT, DURATION, UPSTREAM_HOST, UPSTREAM_CLUSTER, DOWNSTREAM_REMOTE_ADDRESS, DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, DOWNSTREAM_DIRECT_REMOTE_ADDRESS, DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT, ROUTE_NAME, HOSTNAME)"
            )))
        }
    })
}

/// The value of one operator; `None` is Envoy's `-` (absent).
fn value(op: &Operator, r: &Record<'_>) -> Option<String> {
    let cut = |s: String, max: &Option<usize>| match max {
        Some(m) if s.len() > *m => s.chars().take(*m).collect(),
        _ => s,
    };
    Some(match op {
        Operator::Literal(s) => s.clone(),
        Operator::StartTime => rfc3339_millis(r.start),
        Operator::Req(main, alt, max) => {
            let v = request_field(r.request, main)
                .or_else(|| alt.as_deref().and_then(|a| request_field(r.request, a)))?;
            cut(v, max)
        }
        Operator::Resp(name, max) => {
            let v = r
                .response?
                .headers
                .get(name.as_str())?
                .to_str()
                .ok()?
                .to_string();
            cut(v, max)
        }
        Operator::Protocol => match r.request.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        }
        .to_string(),
        Operator::ResponseCode => r.status.to_string(),
        Operator::ResponseFlags => {
            if r.flags.is_empty() {
                return None;
            }
            r.flags.to_string()
        }
        Operator::ResponseCodeDetails => {
            if r.details.is_empty() {
                return None;
            }
            r.details.to_string()
        }
        Operator::BytesReceived => r.bytes_received.to_string(),
        Operator::BytesSent => r.bytes_sent.to_string(),
        Operator::Duration => r.duration.as_millis().to_string(),
        Operator::UpstreamHost => r.upstream_host?.to_string(),
        Operator::UpstreamCluster => r.upstream_cluster?.to_string(),
        Operator::DownstreamRemoteAddress => r.peer.to_string(),
        Operator::DownstreamRemoteAddressWithoutPort => r.peer.ip().to_string(),
        Operator::DownstreamDirectRemoteAddress => r.direct_peer.to_string(),
        Operator::DownstreamDirectRemoteAddressWithoutPort => r.direct_peer.ip().to_string(),
        Operator::RouteName => {
            if r.route_name.is_empty() {
                return None;
            }
            r.route_name.to_string()
        }
        Operator::Hostname => hostname(),
    })
}

fn request_field(req: &RequestHead, name: &str) -> Option<String> {
    match name {
        ":method" => Some(req.method.as_str().to_string()),
        ":path" => Some(req.path.to_string()),
        ":authority" | "host" => (!req.authority.is_empty()).then(|| req.authority.to_string()),
        ":scheme" => Some(req.scheme.to_string()),
        _ => req.headers.get(name)?.to_str().ok().map(str::to_string),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn is_numeric(op: &Operator) -> bool {
    matches!(
        op,
        Operator::ResponseCode | Operator::BytesReceived | Operator::BytesSent | Operator::Duration
    )
}

/// A header value's operators, as Envoy formats them there: an absent value is empty, not `-`.
pub fn format_header_value(ops: &[Operator], r: &Record<'_>) -> String {
    ops.iter().filter_map(|op| value(op, r)).collect()
}

pub fn format(f: &Format, r: &Record<'_>) -> String {
    match f {
        Format::Text(ops) => {
            let mut line = String::with_capacity(256);
            for op in ops {
                match value(op, r) {
                    Some(v) => line.push_str(&v),
                    None => line.push('-'),
                }
            }
            line
        }
        Format::Json(fields) => {
            let mut map = serde_json::Map::new();
            for (key, ops) in fields {
                let v = match ops.as_slice() {
                    [op] if is_numeric(op) => value(op, r)
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(serde_json::Value::Null, |n| n.into()),
                    [op] if !matches!(op, Operator::Literal(_)) => {
                        value(op, r).map_or(serde_json::Value::Null, serde_json::Value::String)
                    }
                    ops => serde_json::Value::String(
                        ops.iter()
                            .map(|op| value(op, r).unwrap_or_else(|| "-".into()))
                            .collect(),
                    ),
                };
                map.insert(key.clone(), v);
            }
            let mut line = serde_json::Value::Object(map).to_string();
            line.push('\n');
            line
        }
    }
}

/// One file's writer thread, fed without blocking.
pub struct Sink {
    tx: mpsc::SyncSender<String>,
    pub dropped: AtomicU64,
}

impl Sink {
    pub fn write(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static SINKS: Mutex<Option<HashMap<String, Weak<Sink>>>> = Mutex::new(None);

/// The sink for `path`, shared by every worker and config version that logs there; opened
/// (append, created if absent) when first asked for.
pub fn sink(path: &str) -> std::result::Result<Arc<Sink>, String> {
    let mut sinks = SINKS.lock().unwrap_or_else(|p| p.into_inner());
    let map = sinks.get_or_insert_with(HashMap::new);
    if let Some(s) = map.get(path).and_then(Weak::upgrade) {
        return Ok(s);
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("access log {path}: {e}"))?;
    let (tx, rx) = mpsc::sync_channel::<String>(QUEUE_LINES);
    let name = path.to_string();
    std::thread::Builder::new()
        .name("sluice-access-log".into())
        .spawn(move || {
            while let Ok(line) = rx.recv() {
                let mut batch = line.into_bytes();
                while let Ok(more) = rx.try_recv() {
                    batch.extend_from_slice(more.as_bytes());
                    if batch.len() > 256 * 1024 {
                        break;
                    }
                }
                if let Err(e) = file.write_all(&batch) {
                    tracing::warn!(path = %name, "access log write failed: {e}");
                }
            }
        })
        .map_err(|e| format!("access log {path}: cannot start its writer: {e}"))?;
    let s = Arc::new(Sink {
        tx,
        dropped: AtomicU64::new(0),
    });
    map.insert(path.to_string(), Arc::downgrade(&s));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_and_literals() {
        let v = json!("x");
        let ops = parse_format(
            Node::root(&v),
            "100%% [%REQ(:METHOD)%] %REQ(X-A?X-B):3% %DURATION%",
        )
        .unwrap();
        assert_eq!(ops[0], Operator::Literal("100% [".into()));
        assert_eq!(ops[1], Operator::Req(":method".into(), None, None));
        assert_eq!(
            ops[3],
            Operator::Req("x-a".into(), Some("x-b".into()), Some(3))
        );
        let e = parse_format(Node::root(&v), "%NOPE%")
            .unwrap_err()
            .to_string();
        assert!(e.contains("%NOPE% is not supported"), "{e}");
        assert!(parse_format(Node::root(&v), DEFAULT_FORMAT).is_ok());
    }
}
