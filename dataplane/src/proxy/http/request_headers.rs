//! The request and response headers the router writes: Envoy's edge headers (x-forwarded-for,
//! x-forwarded-proto, x-request-id), the x-envoy-* timing headers, and the header mutations of
//! a route, its virtual host and its route configuration, applied in Envoy's order.

use super::access_log;
use super::config::HcmConfig;
use super::fields::Fields;
use super::message::{RequestHead, ResponseHead};
use super::route_config::{AppendAction, HeaderAdd, HeaderMutations};
use crate::proxy::lb::Rng;
use http::{HeaderName, HeaderValue};
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};

pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_EXPECTED_TIMEOUT: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
pub(super) const X_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
pub(super) const X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
pub(super) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

pub(super) const X_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");

/// Envoy's headers that steer a hop behind it; only a trusted (internal) client may send them.
/// Envoy counts no address as internal without `internal_address_config` (sluice has none), so
/// they are dropped from every request.
const INTERNAL_ONLY: [&str; 15] = [
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Dropped as well at the edge (`use_remote_address`): what only a proxy inside may claim.
const EDGE_ONLY: [&str; 5] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
    "x-envoy-original-host",
];

/// The edge's request headers, as Envoy's connection manager sets them (Envoy 1.40 answering
/// the same requests is the reference: tests/tests/http_request_edits.rs). Returns the downstream
/// address the request is from as far as sluice can trust it: the connection's peer, or the
/// address `xff_num_trusted_hops` picks from x-forwarded-for (with port 0), which the access
/// log's %DOWNSTREAM_REMOTE_ADDRESS% and the source_ip hash policy use.
pub(super) fn edge_headers(
    c: &HcmConfig,
    rng: &RefCell<Rng>,
    head: &mut RequestHead,
    peer: SocketAddr,
    internal_only: &[HeaderName],
) -> SocketAddr {
    let hops = c.xff_num_trusted_hops as usize;
    let remote = if c.use_remote_address {
        // Trusted proxies in front: the client is the last one they name (before this hop).
        let trusted = hops
            .checked_sub(1)
            .and_then(|skip| xff_from_right(head, skip));
        if !c.skip_xff_append {
            // A peer on loopback is named by this machine's address, as Envoy does.
            let ip = if peer.ip().is_loopback() {
                crate::io::local_address::primary()
            } else {
                peer.ip()
            };
            append_xff(head, ip);
        }
        head.headers
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static(head.scheme));
        trusted.map_or(peer, |ip| SocketAddr::new(ip, 0))
    } else {
        if !head.headers.contains_key(&X_FORWARDED_PROTO) {
            head.headers
                .insert(X_FORWARDED_PROTO, HeaderValue::from_static(head.scheme));
        }
        xff_from_right(head, hops).map_or(peer, |ip| SocketAddr::new(ip, 0))
    };
    // One pass to see whether there is anything to drop (usually not) before 20 lookups.
    if head
        .headers
        .iter()
        .any(|(k, _)| k.as_str().starts_with("x-envoy-"))
    {
        for name in INTERNAL_ONLY {
            head.headers.remove(name);
        }
        if c.use_remote_address {
            for name in EDGE_ONLY {
                head.headers.remove(name);
            }
        }
    }
    for name in internal_only {
        head.headers.remove(name);
    }
    if c.use_remote_address {
        if let Ok(v) = HeaderValue::from_str(&remote.ip().to_string()) {
            head.headers.insert(X_EXTERNAL_ADDRESS, v);
        }
    }
    if c.generate_request_id {
        // An edge proxy replaces what a client claims, unless told to keep it.
        let replace = c.use_remote_address && !c.preserve_external_request_id;
        if replace || !head.headers.contains_key(&X_REQUEST_ID) {
            let id = request_id(&mut rng.borrow_mut());
            head.headers.insert(X_REQUEST_ID, id);
        }
    }
    remote
}

/// The address `skip` entries from the right of x-forwarded-for (all its fields, in order), if
/// there are that many and it is an IP address.
fn xff_from_right(head: &RequestHead, skip: usize) -> Option<IpAddr> {
    let mut all: Vec<&str> = Vec::new();
    for v in head.headers.get_all(&X_FORWARDED_FOR) {
        all.extend(v.to_str().ok()?.split(','));
    }
    let entry = all.iter().rev().nth(skip)?.trim();
    entry.parse().ok()
}

fn append_xff(head: &mut RequestHead, ip: IpAddr) {
    let ip = ip.to_string();
    let mut prev: Vec<&str> = Vec::new();
    for v in head.headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            prev.push(s);
        }
    }
    let value = if prev.is_empty() {
        ip
    } else {
        format!("{},{ip}", prev.join(","))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        head.headers.insert(X_FORWARDED_FOR, v);
    }
}

/// A header value for a number of milliseconds, without an allocation for the common ones:
/// values up to 1,023 come from a per-worker table, and the last other value is kept (a
/// route's expected timeout repeats request after request).
pub(super) fn number_header(n: u64) -> HeaderValue {
    thread_local! {
        static SMALL: Vec<HeaderValue> = (0..1024u64).map(HeaderValue::from).collect();
        static LAST: std::cell::RefCell<(u64, HeaderValue)> = std::cell::RefCell::new((0, HeaderValue::from(0u64)));
    }
    if n < 1024 {
        return SMALL.with(|t| t[n as usize].clone());
    }
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != n {
            *l = (n, HeaderValue::from(n));
        }
        l.1.clone()
    })
}

/// What a header value's command operators may name, besides the request and response.
pub(super) struct Scope<'a> {
    /// The trusted client address (see `edge_headers`).
    pub peer: SocketAddr,
    pub upstream_host: Option<SocketAddr>,
    pub cluster: Option<&'a str>,
    pub route_name: &'a str,
    pub start: std::time::SystemTime,
}

impl Scope<'_> {
    fn record<'r>(
        &'r self,
        request: &'r RequestHead,
        response: Option<&'r ResponseHead>,
    ) -> access_log::Record<'r> {
        access_log::Record {
            start: self.start,
            request,
            response,
            status: response.map_or(0, |r| r.status),
            flags: "",
            details: "",
            bytes_received: 0,
            bytes_sent: 0,
            duration: self.start.elapsed().unwrap_or_default(),
            upstream_host: self.upstream_host,
            upstream_cluster: self.cluster,
            peer: self.peer,
            direct_peer: self.peer,
            route_name: self.route_name,
        }
    }
}

/// Each add's value for this request: fixed, or formatted now; `None`: nothing to add.
fn values(adds: &[HeaderAdd], record: &access_log::Record<'_>) -> Vec<Option<HeaderValue>> {
    adds.iter()
        .map(|a| match &a.format {
            None => Some(a.value.clone()),
            Some(ops) => HeaderValue::from_str(&access_log::format_header_value(ops, record)).ok(),
        })
        .collect()
}

pub(super) fn apply_request_mutations(
    head: &mut RequestHead,
    levels: &[&HeaderMutations; 3],
    scope: &Scope<'_>,
) {
    for m in levels {
        for name in &m.request_remove {
            head.headers.remove(name);
        }
        if m.formats_request {
            let v = values(&m.request_add, &scope.record(head, None));
            apply_values(&mut head.headers, &m.request_add, v);
        } else {
            apply_adds(&mut head.headers, &m.request_add);
        }
    }
}

/// `request`: the request as forwarded, kept only when a response value has operators.
pub(super) fn apply_response_mutations(
    response: &mut ResponseHead,
    levels: &[&HeaderMutations; 3],
    request: Option<&RequestHead>,
    scope: &Scope<'_>,
) {
    for m in levels {
        for name in &m.response_remove {
            response.headers.remove(name);
        }
        match request {
            Some(req) if m.formats_response => {
                let v = values(&m.response_add, &scope.record(req, Some(response)));
                apply_values(&mut response.headers, &m.response_add, v);
            }
            _ => apply_adds(&mut response.headers, &m.response_add),
        }
    }
}

pub(super) fn apply_adds(h: &mut Fields, adds: &[HeaderAdd]) {
    let v = adds
        .iter()
        .map(|a| a.format.is_none().then(|| a.value.clone()))
        .collect();
    apply_values(h, adds, v);
}

fn apply_values(h: &mut Fields, adds: &[HeaderAdd], values: Vec<Option<HeaderValue>>) {
    for (a, v) in adds.iter().zip(values) {
        let Some(v) = v.filter(|v| !v.is_empty() || a.keep_empty) else {
            continue; // Envoy adds no empty value unless keep_empty_value
        };
        match a.action {
            AppendAction::Append => {
                h.append(a.name.clone(), v);
            }
            AppendAction::AddIfAbsent => {
                if !h.contains_key(&a.name) {
                    h.insert(a.name.clone(), v);
                }
            }
            AppendAction::OverwriteIfExistsOrAdd => {
                h.insert(a.name.clone(), v);
            }
            AppendAction::OverwriteIfExists => {
                if h.contains_key(&a.name) {
                    h.insert(a.name.clone(), v);
                }
            }
        }
    }
}

/// A fresh x-request-id. Its 36 bytes are cut from a block the worker shares between many
/// ids (one allocation per 64 of them instead of one each; a block is freed when the last
/// request holding one of its ids is done).
fn request_id(rng: &mut crate::proxy::lb::Rng) -> HeaderValue {
    const BLOCK: usize = 36 * 64;
    thread_local! {
        static IDS: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    let id = uuid_v4(rng);
    let bytes = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < id.len() {
            *ids = bytes::BytesMut::with_capacity(BLOCK);
        }
        ids.extend_from_slice(&id);
        ids.split().freeze()
    });
    // SAFETY: hex digits and dashes: ASCII, and every byte a header value may hold.
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

/// A random (version 4) UUID in its usual text form, as Envoy's x-request-id.
pub(super) fn uuid_v4(rng: &mut crate::proxy::lb::Rng) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let a = (rng.next_u64() & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (rng.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_version_and_variant() {
        let mut rng = crate::proxy::lb::Rng::new(7);
        let id = String::from_utf8(uuid_v4(&mut rng).to_vec()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[8..9], "-");
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }

    #[test]
    fn request_ids_from_one_block_stay_apart() {
        let mut rng = crate::proxy::lb::Rng::new(7);
        let ids: Vec<HeaderValue> = (0..200).map(|_| request_id(&mut rng)).collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let s = id.to_str().unwrap();
            assert_eq!(s.len(), 36);
            assert_eq!(&s[14..15], "4");
            assert!(seen.insert(s.to_string()), "{s} twice");
        }
    }
}
