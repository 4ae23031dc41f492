//! A route's policies as they apply to one request: which responses and failures its retry
//! policy retries and how long it waits between tries, the request's deadline (route timeout,
//! max_stream_duration, grpc-timeout), and the hash key of its hash policy.

use super::message::RequestHead;
use super::request_headers::GRPC_TIMEOUT;
use super::route_config::{retry_on, Forward, HashPolicy, RetryPolicy};
use crate::proxy::lb::hash64;
use std::net::SocketAddr;
use std::time::Duration;

/// Whether a response with `status` (and, for gRPC, its grpc-status) is one the policy retries.
pub(super) fn retry_on_response(
    r: &RetryPolicy,
    status: u16,
    headers: &super::fields::Fields,
) -> bool {
    let on = r.retry_on;
    if on & retry_on::FIVE_XX != 0 && status >= 500 {
        return true;
    }
    if on & retry_on::GATEWAY_ERROR != 0 && matches!(status, 502..=504) {
        return true;
    }
    if on & retry_on::RETRIABLE_4XX != 0 && status == 409 {
        return true;
    }
    if on & retry_on::RETRIABLE_STATUS_CODES != 0 && r.retriable_status_codes.contains(&status) {
        return true;
    }
    // A trailers-only gRPC response carries its status in the head.
    let grpc = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match grpc {
        Some(1) => on & retry_on::GRPC_CANCELLED != 0,
        Some(4) => on & retry_on::GRPC_DEADLINE_EXCEEDED != 0,
        Some(8) => on & retry_on::GRPC_RESOURCE_EXHAUSTED != 0,
        Some(13) => on & retry_on::GRPC_INTERNAL != 0,
        Some(14) => on & retry_on::GRPC_UNAVAILABLE != 0,
        _ => false,
    }
}

/// `flag` after Envoy's URX (upstream retry limit exceeded).
pub(super) fn with_retry_limit(flag: &'static str) -> &'static str {
    match flag {
        "UT" => "URX,UT",
        "UF" => "URX,UF",
        "UC" => "URX,UC",
        "UPE" => "URX,UPE",
        _ => "URX",
    }
}

/// The stream's max duration, as Envoy takes it: for gRPC with `grpc_timeout_header_max`
/// set, the client's grpc-timeout capped at it (a max of 0 leaves it uncapped); else the
/// route's max_stream_duration (zero: none); else the connection manager's.
pub(super) fn max_stream_duration(
    forward: &Forward,
    head: &RequestHead,
    from_hcm: Option<Duration>,
) -> Option<Duration> {
    if let Some(max) = forward.grpc_timeout_header_max {
        if let Some(t) = head
            .headers
            .get(&GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        {
            return Some(if max.is_zero() { t } else { t.min(max) });
        }
    }
    match forward.max_stream_duration {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => from_hcm,
    }
}

/// gRPC's `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pub(super) fn hash_key(
    policies: &[HashPolicy],
    head: &RequestHead,
    client: SocketAddr,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let (h, terminal) = match p {
            HashPolicy::Header { name, terminal } => (
                head.headers.get(name).map(|v| hash64(v.as_bytes())),
                *terminal,
            ),
            HashPolicy::Cookie { name, terminal } => {
                (cookie(head, name).map(|v| hash64(v.as_bytes())), *terminal)
            }
            HashPolicy::SourceIp { terminal } => {
                (Some(hash64(client.ip().to_string().as_bytes())), *terminal)
            }
        };
        if let Some(h) = h {
            // Envoy folds several policies' hashes: rotate left by one, then xor.
            hash = Some(hash.map_or(h, |prev| prev.rotate_left(1) ^ h));
            if terminal {
                break;
            }
        }
    }
    hash
}

pub(super) fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.headers.get_all(http::header::COOKIE).find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    })
}

/// The ceiling of Envoy's fully jittered exponential back-off before retry number `n` (from
/// 1): `(2^n - 1) × base_interval`, at most `max_interval`, at least 1 ms.
pub(super) fn backoff_ceiling_ms(r: &RetryPolicy, n: u32) -> u64 {
    let factor = (1u64 << n.min(20)) - 1;
    (r.base_interval.as_millis() as u64 * factor)
        .min(r.max_interval.as_millis() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(
            parse_grpc_timeout(b"100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"5x"), None);
    }
}
