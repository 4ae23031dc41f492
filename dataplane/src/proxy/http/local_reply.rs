//! Local replies as Envoy sends them: the status, a text/plain body and the response flag from
//! the one proxy error; for gRPC requests a trailers-only response (HTTP 200, `grpc-status`
//! mapped from the HTTP status as Envoy maps it, `grpc-message` the body).

use super::message::{Body, Fields, RequestHead, Response, ResponseHead};
use http::HeaderValue;

/// Envoy's HTTP → gRPC status mapping (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_for(http_status: u16) -> u32 {
    match http_status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// A reply sluice makes itself, shaped for the request it answers.
pub fn reply(request: Option<&RequestHead>, status: u16, body: &str) -> Response {
    reply_shaped(request.is_some_and(RequestHead::is_grpc), status, body)
}

/// A local reply as [`reply`] makes it, for a request known only to be gRPC or not.
pub fn reply_shaped(grpc: bool, status: u16, body: &str) -> Response {
    reply_with_grpc_status(grpc, status, body, grpc_status_for(status))
}

/// A local reply whose gRPC form carries `grpc_status` rather than the one `status` maps to
/// (Envoy's max-duration timeout is DEADLINE_EXCEEDED to a gRPC client).
pub fn reply_with_grpc_status(grpc: bool, status: u16, body: &str, grpc_status: u32) -> Response {
    if grpc {
        let mut headers = Fields::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(grpc_status));
        if !body.is_empty() {
            let encoded: String = percent_encode_grpc(body);
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                headers.insert("grpc-message", v);
            }
        }
        return Response {
            head: ResponseHead {
                status: 200,
                headers,
            },
            body: Body::Empty,
            upgrade: None,
        };
    }
    Response::local(status, body)
}

/// gRPC's percent-encoding of grpc-message: bytes outside printable ASCII and `%` itself.
fn percent_encode_grpc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_get_trailers_only_replies() {
        let mut headers = Fields::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        let req = RequestHead {
            method: http::Method::POST,
            scheme: "http",
            authority: "a".into(),
            path: "/pkg.Svc/Call".into(),
            version: http::Version::HTTP_2,
            headers,
            continue_to: None,
        };
        let r = reply(Some(&req), 503, "no healthy upstream");
        assert_eq!(r.head.status, 200);
        assert_eq!(r.head.headers["grpc-status"], "14");
        assert_eq!(r.head.headers["grpc-message"], "no healthy upstream");
        let plain = reply(None, 404, "");
        assert_eq!(plain.head.status, 404);
        assert_eq!(plain.head.headers["content-length"], "0");
        assert_eq!(percent_encode_grpc("50%\n"), "50%25%0A");
    }
}
